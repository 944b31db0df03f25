//! Who may hold a connection that is not (yet) a WebSocket: the total cap and the per-IP cap
//! of `[server]` ([`ServerConfig::max_http_connections`],
//! [`ServerConfig::max_http_connections_per_ip`]), and which IP address a request counts
//! against ([`client_ip`]: the TCP peer, or behind a trusted proxy the `X-Forwarded-For` hop
//! it vouches for).
//!
//! A [`Permit`] is one counted place; dropping it gives the place back. The accept loop
//! (`accept.rs`) takes one per TCP connection and drops it when the connection ends or
//! becomes a WebSocket. A connection from a trusted proxy counts against the total only; each
//! of its requests then takes a per-IP place for the client it names (`accept.rs` holds it
//! until the connection's next request, end or upgrade).
//!
//! [`ServerConfig::max_http_connections`]: crate::config::ServerConfig::max_http_connections
//! [`ServerConfig::max_http_connections_per_ip`]: crate::config::ServerConfig::max_http_connections_per_ip

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;
use warp::http::HeaderMap;

/// The counted places.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Connections holding a place in the total.
    pub(super) total: usize,
    /// Places held per client IP address (entries at 0 are removed).
    per_ip: HashMap<IpAddr, usize>,
}

/// The caps and what is counted against them; `watch` so that shutdown can wait for the
/// total to reach 0.
#[derive(Debug)]
pub(super) struct Gate {
    max_total: usize,
    max_per_ip: usize,
    counts: watch::Sender<Counts>,
}

/// Why a place was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// All [`Gate`] places are taken.
    Total,
    /// This IP address holds all its places.
    PerIp,
}

impl Gate {
    /// A gate with these caps.
    pub(super) fn new(max_total: usize, max_per_ip: usize) -> Arc<Gate> {
        Arc::new(Gate {
            max_total,
            max_per_ip,
            counts: watch::Sender::new(Counts::default()),
        })
    }

    /// A place for a new connection: in the total, and for `ip` in its own count (`None`: a
    /// trusted proxy, whose requests are counted one by one with [`Gate::admit_request`]).
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
        let mut verdict = Ok(());
        self.counts.send_if_modified(|c| {
            if total && c.total >= self.max_total {
                verdict = Err(Refused::Total);
                return false;
            }
            if let Some(ip) = ip {
                let n = c.per_ip.entry(ip).or_default();
                if *n >= self.max_per_ip {
                    verdict = Err(Refused::PerIp);
                    return false;
                }
                *n += 1;
            }
            if total {
                c.total += 1;
            }
            true
        });
        verdict.map(|()| Permit {
            gate: self.clone(),
            total,
            ip,
        })
    }

    /// The number of connections holding a place in the total.
    pub(super) fn total(&self) -> usize {
        self.counts.borrow().total
    }

    /// Waits until no connection holds a place.
    pub(super) async fn wait_empty(&self) {
        let mut rx = self.counts.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = rx.wait_for(|c| c.total == 0).await;
    }
}

/// One counted place; given back on drop.
#[derive(Debug)]
pub(super) struct Permit {
    gate: Arc<Gate>,
    total: bool,
    ip: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.counts.send_modify(|c| {
            if self.total {
                c.total -= 1;
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

    #[test]
    fn caps_count_total_and_per_ip_and_permits_give_back() {
        let gate = Gate::new(3, 2);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let a1 = gate.admit_connection(Some(a)).unwrap();
        let a2 = gate.admit_connection(Some(a)).unwrap();
        assert_eq!(gate.admit_connection(Some(a)).unwrap_err(), Refused::PerIp);
        let b1 = gate.admit_connection(Some(b)).unwrap();
        assert_eq!(gate.admit_connection(None).unwrap_err(), Refused::Total);
        assert_eq!(gate.total(), 3);
        drop(a1);
        let proxied = gate.admit_connection(None).unwrap();
        // A proxied request for `a` takes a per-IP place, not a total one.
        let r = gate.admit_request(a).unwrap();
        assert_eq!(gate.admit_request(a).unwrap_err(), Refused::PerIp);
        assert_eq!(gate.total(), 3);
        drop((a2, b1, proxied, r));
        assert_eq!(gate.total(), 0);
        assert!(gate.counts.borrow().per_ip.is_empty());
    }
}
