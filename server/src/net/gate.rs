//! Who may hold a connection that is not (yet) a WebSocket: the total cap and the per-IP cap
//! of `[server]` ([`ServerConfig::max_http_connections`],
//! [`ServerConfig::max_http_connections_per_ip`]), which connection gives its place up when
//! the total is full, and which IP address a request counts against ([`client_ip`]: the TCP
//! peer, or behind a trusted proxy the `X-Forwarded-For` hop it vouches for).
//!
//! A [`Permit`] is one counted place; dropping it gives the place back. The accept loop
//! (`accept.rs`) takes one per TCP connection and drops it when the connection ends or
//! becomes a WebSocket. A connection from a trusted proxy counts against the total only; each
//! of its requests then takes a per-IP place for the client it names (`accept.rs` holds it
//! until the connection's next request, end or upgrade).
//!
//! Eviction: when a new connection finds the total full, the place of the connection that
//! has waited longest for a request head — one that has not completed one since it opened,
//! or since its last response was written (kept alive, idle) — is taken from it and its
//! [`Permit::evicted`] token cancelled, so that its task closes it; the newcomer gets the
//! place. An honest client sends its head within milliseconds of connecting, so the
//! connections that wait are idle or sending slowly ([`oldest_idle`]). A connection is busy
//! from the moment its head has been read until its response has been written
//! ([`Permit::busy`]); only when every place is busy is the newcomer refused (503). The
//! per-IP cap is never lifted by eviction (429).
//!
//! [`ServerConfig::max_http_connections`]: crate::config::ServerConfig::max_http_connections
//! [`ServerConfig::max_http_connections_per_ip`]: crate::config::ServerConfig::max_http_connections_per_ip

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use warp::http::HeaderMap;

/// One connection holding a place in the total.
#[derive(Debug)]
pub(super) struct Slot {
    /// Since when it has been waiting for a request head (admission, or the end of its last
    /// response); `None` while a request is being served.
    idle_since: Option<Instant>,
    /// Cancelled when the place is taken from it.
    evict: CancellationToken,
    /// Set while its writes wait on a peer that does not read (busy with a response).
    write_blocked: Arc<AtomicBool>,
}

/// The counted places.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Connections holding a place in the total, by [`Permit`] id.
    slots: HashMap<u64, Slot>,
    /// Places held per client IP address (entries at 0 are removed).
    per_ip: HashMap<IpAddr, usize>,
    /// The next [`Permit`] id.
    next_id: u64,
}

/// The caps and what is counted against them; `watch` so that shutdown can wait for the
/// total to reach 0.
#[derive(Debug)]
pub(super) struct Gate {
    max_total: usize,
    max_per_ip: usize,
    counts: watch::Sender<Counts>,
    /// Connections evicted since the gate was made (shared with `/healthz`).
    evictions: Arc<AtomicU64>,
}

/// Why a place was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// All [`Gate`] places are taken, and every holder is busy with a request.
    Total,
    /// This IP address holds all its places.
    PerIp,
}

/// The connection that has waited longest for a request head: the smallest waiting-since
/// (`None`: busy) among `(id, waiting since)`; `None` when every one is busy (or there is
/// none).
pub(super) fn oldest_idle(slots: impl IntoIterator<Item = (u64, Option<Instant>)>) -> Option<u64> {
    slots
        .into_iter()
        .filter_map(|(id, since)| since.map(|since| (since, id)))
        .min()
        .map(|(_, id)| id)
}

impl Gate {
    /// A gate with these caps, counting evictions in `evictions`.
    pub(super) fn new(max_total: usize, max_per_ip: usize, evictions: Arc<AtomicU64>) -> Arc<Gate> {
        Arc::new(Gate {
            max_total,
            max_per_ip,
            counts: watch::Sender::new(Counts::default()),
            evictions,
        })
    }

    /// A place for a new connection: in the total (evicting the connection that has waited
    /// longest for a request head if the total is full), and for `ip` in its own count
    /// (`None`: a trusted proxy, whose requests are counted one by one with
    /// [`Gate::admit_request`]).
    pub(super) fn admit_connection(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
    ) -> Result<Permit, Refused> {
        self.admit(true, ip)
    }

    /// A per-IP place, not in the total, for a request a trusted proxy forwarded for `ip`.
    pub(super) fn admit_request(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        self.admit(false, Some(ip))
    }

    fn admit(self: &Arc<Self>, total: bool, ip: Option<IpAddr>) -> Result<Permit, Refused> {
        let mut verdict = Err(Refused::Total);
        let mut evicted = None;
        self.counts.send_if_modified(|c| {
            if let Some(ip) = ip {
                if c.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
                    verdict = Err(Refused::PerIp);
                    return false;
                }
            }
            let mut slot = None;
            if total {
                if c.slots.len() >= self.max_total {
                    let idle = c.slots.iter().map(|(id, s)| {
                        let blocked = s.write_blocked.load(Ordering::Relaxed);
                        (*id, s.idle_since.filter(|_| !blocked))
                    });
                    let Some(victim) = oldest_idle(idle).and_then(|id| c.slots.remove(&id)) else {
                        return false;
                    };
                    victim.evict.cancel();
                    evicted = victim.idle_since;
                }
                let id = c.next_id;
                c.next_id += 1;
                let evict = CancellationToken::new();
                let write_blocked = Arc::<AtomicBool>::default();
                c.slots.insert(
                    id,
                    Slot {
                        idle_since: Some(Instant::now()),
                        evict: evict.clone(),
                        write_blocked: write_blocked.clone(),
                    },
                );
                slot = Some(Place {
                    id,
                    evict,
                    write_blocked,
                });
            }
            if let Some(ip) = ip {
                *c.per_ip.entry(ip).or_default() += 1;
            }
            verdict = Ok(slot);
            true
        });
        if let Some(since) = evicted {
            self.evictions.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                waited_ms = since.elapsed().as_millis(),
                "total connection cap reached: evicted the longest-waiting connection"
            );
        }
        verdict.map(|slot| Permit {
            gate: self.clone(),
            slot,
            ip,
        })
    }

    /// The number of connections holding a place in the total.
    pub(super) fn total(&self) -> usize {
        self.counts.borrow().slots.len()
    }

    /// Waits until no connection holds a place.
    pub(super) async fn wait_empty(&self) {
        let mut rx = self.counts.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = rx.wait_for(|c| c.slots.is_empty()).await;
    }

    /// Marks place `id` busy (`true`) or waiting for a head since now (`false`); nothing if
    /// it has been evicted.
    fn set_busy(&self, id: u64, busy: bool) {
        self.counts.send_if_modified(|c| {
            if let Some(slot) = c.slots.get_mut(&id) {
                slot.idle_since = (!busy).then(Instant::now);
            }
            false
        });
    }
}

/// A [`Permit`]'s place in the total: its id and its [`Slot`]'s shared parts.
#[derive(Debug)]
struct Place {
    id: u64,
    evict: CancellationToken,
    write_blocked: Arc<AtomicBool>,
}

/// One counted place; given back on drop.
#[derive(Debug)]
pub(super) struct Permit {
    gate: Arc<Gate>,
    /// The place in the total, if it holds one.
    slot: Option<Place>,
    ip: Option<IpAddr>,
}

impl Permit {
    /// Cancelled when this connection's place is given to a newcomer (never, for a permit
    /// without a place in the total).
    pub(super) fn evicted(&self) -> CancellationToken {
        self.slot
            .as_ref()
            .map_or_else(CancellationToken::new, |p| p.evict.clone())
    }

    /// The flag the connection's writer sets while its writes wait on the peer (which makes
    /// the connection busy); a fresh one for a permit without a place in the total.
    pub(super) fn write_blocked(&self) -> Arc<AtomicBool> {
        self.slot
            .as_ref()
            .map_or_else(Arc::default, |p| p.write_blocked.clone())
    }

    /// Marks the connection busy with a request (not evictable) until the returned guard is
    /// dropped; from then on it is waiting for its next head.
    pub(super) fn busy(&self) -> Busy {
        let id = self.slot.as_ref().map(|p| p.id);
        if let Some(id) = id {
            self.gate.set_busy(id, true);
        }
        Busy {
            gate: self.gate.clone(),
            id,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.counts.send_modify(|c| {
            if let Some(place) = &self.slot {
                // Already gone if evicted.
                c.slots.remove(&place.id);
            }
            if let Some(ip) = self.ip {
                if let Some(n) = c.per_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        c.per_ip.remove(&ip);
                    }
                }
            }
        });
    }
}

/// A connection busy with a request ([`Permit::busy`]); dropping it marks the connection
/// waiting for its next head.
#[derive(Debug)]
pub(super) struct Busy {
    gate: Arc<Gate>,
    id: Option<u64>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.gate.set_busy(id, false);
        }
    }
}

/// The client's address for the per-IP cap. For a connection from one of `trusted_proxies`,
/// the `X-Forwarded-For` entries are read from the right (the hop the proxy itself added) and
/// the first that is not a trusted proxy is the client (entries to its left were written by
/// whoever the client is, so they prove nothing). Without a usable entry, the peer itself.
/// Addresses are compared in canonical form (`::ffff:a.b.c.d` is `a.b.c.d`).
pub(super) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|t| t.to_canonical() == *ip);
    if !trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // Garbage at this hop: nothing to its left can be believed.
            return peer;
        };
        if !trusted(&ip) {
            return ip;
        }
    }
    peer
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`,
/// `[::1]:5`), canonical.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let proxy = ip("127.0.0.1");
        let headers = xff(&["6.6.6.6, 1.2.3.4"]);
        // Not trusted: the header is ignored.
        assert_eq!(client_ip(ip("9.9.9.9"), &headers, &[proxy]), ip("9.9.9.9"));
        assert_eq!(client_ip(proxy, &headers, &[]), proxy);
        // Trusted: the rightmost hop that is not a trusted proxy; the spoofable left is not read.
        assert_eq!(client_ip(proxy, &headers, &[proxy]), ip("1.2.3.4"));
        let chain = xff(&["6.6.6.6", "1.2.3.4, 10.0.0.2"]);
        assert_eq!(
            client_ip(proxy, &chain, &[proxy, ip("10.0.0.2")]),
            ip("1.2.3.4")
        );
        // Mapped IPv6 peers, ports, garbage, nothing.
        let mapped = ip("::ffff:127.0.0.1");
        assert_eq!(
            client_ip(mapped, &xff(&["[2001:db8::1]:443"]), &[proxy]),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(proxy, &xff(&["1.2.3.4:80"]), &[proxy]),
            ip("1.2.3.4")
        );
        assert_eq!(client_ip(proxy, &xff(&["1.2.3.4, junk"]), &[proxy]), proxy);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &[proxy]), proxy);
        assert_eq!(client_ip(proxy, &xff(&["127.0.0.1"]), &[proxy]), proxy);
    }

    fn gate(max_total: usize, max_per_ip: usize) -> Arc<Gate> {
        Gate::new(max_total, max_per_ip, Arc::default())
    }

    #[test]
    fn caps_count_total_and_per_ip_and_permits_give_back() {
        let gate = gate(3, 2);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let a1 = gate.admit_connection(Some(a)).unwrap();
        let a2 = gate.admit_connection(Some(a)).unwrap();
        assert_eq!(gate.admit_connection(Some(a)).unwrap_err(), Refused::PerIp);
        let b1 = gate.admit_connection(Some(b)).unwrap();
        // Every holder busy with a request: nobody to evict.
        let busy = [a1.busy(), a2.busy(), b1.busy()];
        assert_eq!(gate.admit_connection(None).unwrap_err(), Refused::Total);
        assert_eq!(gate.total(), 3);
        drop(a1);
        let proxied = gate.admit_connection(None).unwrap();
        // A proxied request for `a` takes a per-IP place, not a total one.
        let r = gate.admit_request(a).unwrap();
        assert_eq!(gate.admit_request(a).unwrap_err(), Refused::PerIp);
        assert_eq!(gate.total(), 3);
        drop((a2, b1, proxied, r, busy));
        assert_eq!(gate.total(), 0);
        assert!(gate.counts.borrow().per_ip.is_empty());
        assert_eq!(gate.evictions.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_total_evicts_the_longest_waiting_idle_connection() {
        let gate = gate(3, 2);
        let a = ip("10.0.0.1");
        let first = gate.admit_connection(Some(a)).unwrap();
        let second = gate.admit_connection(Some(a)).unwrap();
        let third = gate.admit_connection(Some(ip("10.0.0.2"))).unwrap();
        // The oldest is busy; after its response it waits again, now the newest idle.
        let busy = first.busy();
        let newcomer = gate.admit_connection(Some(ip("10.0.0.3"))).unwrap();
        assert!(second.evicted().is_cancelled());
        assert!(!first.evicted().is_cancelled() && !third.evicted().is_cancelled());
        assert_eq!(gate.total(), 3);
        drop(busy);
        let next = gate.admit_connection(None).unwrap();
        assert!(third.evicted().is_cancelled());
        assert!(!first.evicted().is_cancelled() && !newcomer.evicted().is_cancelled());
        assert_eq!(gate.evictions.load(Ordering::Relaxed), 2);
        // A connection whose writes wait on its peer is busy too.
        newcomer.write_blocked().store(true, Ordering::Relaxed);
        first.write_blocked().store(true, Ordering::Relaxed);
        let last = gate.admit_connection(None).unwrap();
        assert!(next.evicted().is_cancelled());
        let _serving = last.busy();
        assert_eq!(gate.admit_connection(None).unwrap_err(), Refused::Total);
        // The evicted keep their per-IP place until their connection ends.
        assert_eq!(gate.admit_connection(Some(a)).unwrap_err(), Refused::PerIp);
        drop(second);
        assert!(gate.counts.borrow().per_ip.get(&a) == Some(&1));
        assert_eq!(gate.total(), 3);
    }

    #[test]
    fn oldest_idle_skips_busy_connections() {
        let now = Instant::now();
        let later = now + std::time::Duration::from_millis(5);
        assert_eq!(
            oldest_idle([(1, Some(later)), (2, None), (3, Some(now))]),
            Some(3)
        );
        assert_eq!(oldest_idle([(2, None)]), None);
    }
}
