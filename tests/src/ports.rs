//! Ports for the processes the harness starts (`pairlab`, chromedriver, coturn and its relay
//! ports), chosen at run time **below the kernel's ephemeral range**.
//!
//! A port the harness finds free and hands to a child is free only until someone binds it.
//! Inside the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, by default
//! 32768–60999) the kernel hands ports to every socket bound to port 0 and to every outgoing
//! connection — the browsers' ICE sockets, the delay proxy's upstream sockets, other builds
//! and tests on the machine — so a port picked there can be taken before the child binds it.
//! Below the range the kernel never hands one out by itself: only another program that picks
//! ports as this module does can collide, and two harnesses start their search at different
//! places (see [`free_block`]).
//!
//! - [`ephemeral_range`]: the kernel's range, read at run time.
//! - [`free_port`]: one TCP port (a server, chromedriver).
//! - [`free_block`]: `len` consecutive ports free now for the given protocols (coturn's
//!   listening port: UDP and TCP; its relay ports: UDP).

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{HarnessError, Result};

/// Where the kernel's ephemeral ports are read from.
pub const EPHEMERAL_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// Linux's default ephemeral range, used when [`EPHEMERAL_RANGE_FILE`] cannot be read.
pub const DEFAULT_EPHEMERAL: (u16, u16) = (32_768, 60_999);

/// The lowest port the harness picks: above the registered ports services commonly use.
pub const LOWEST: u16 = 10_000;

/// Which protocols a port must be free for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    /// Free for a UDP socket on 127.0.0.1.
    pub udp: bool,
    /// Free for a TCP listener on 127.0.0.1.
    pub tcp: bool,
}

impl Protocols {
    /// TCP only (an HTTP server).
    pub const TCP: Protocols = Protocols {
        udp: false,
        tcp: true,
    };
    /// UDP only (TURN relay ports).
    pub const UDP: Protocols = Protocols {
        udp: true,
        tcp: false,
    };
    /// Both (coturn's listening port).
    pub const BOTH: Protocols = Protocols {
        udp: true,
        tcp: true,
    };
}

/// The kernel's ephemeral port range `(low, high)`, inclusive, from
/// [`EPHEMERAL_RANGE_FILE`]; [`DEFAULT_EPHEMERAL`] when it cannot be read or parsed.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string(EPHEMERAL_RANGE_FILE)
        .ok()
        .and_then(|text| parse_range(&text))
        .unwrap_or(DEFAULT_EPHEMERAL)
}

/// `"32768\t60999\n"` → `(32768, 60999)`.
fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(low)), Some(Ok(high))) = (parts.next(), parts.next()) else {
        return None;
    };
    (low <= high).then_some((low, high))
}

/// The ports the harness may pick: `[LOWEST, ephemeral low)`, or `[1024, low)` when the
/// range starts lower than [`LOWEST`] + 1000.
fn pickable() -> (u16, u16) {
    let (low, _) = ephemeral_range();
    let first = if low > LOWEST + 1000 { LOWEST } else { 1024 };
    (first, low.saturating_sub(1))
}

/// Whether `port` of 127.0.0.1 can be bound now for `protocols` (the sockets are closed at
/// once).
fn is_free(port: u16, protocols: Protocols) -> bool {
    (!protocols.udp || UdpSocket::bind(("127.0.0.1", port)).is_ok())
        && (!protocols.tcp || TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// A start that differs per process and per call (PID, time, a counter), so two harnesses
/// running at once search from different places.
fn spread() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (std::process::id() ^ nanos ^ NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919))
        .wrapping_mul(2_654_435_761)
}

/// `len` consecutive ports of 127.0.0.1, all free now for `protocols`, below the ephemeral
/// range: the first of them. The search starts at a place of its own ([`spread`]) and walks
/// the aligned blocks of the range once.
///
/// # Errors
/// [`HarnessError::Io`] (`AddrInUse`) when no such block is free, or `len` is 0 or larger
/// than the ports below the ephemeral range.
pub fn free_block(len: u16, protocols: Protocols) -> Result<u16> {
    let (first, last) = pickable();
    let span = u32::from(last.saturating_sub(first)) + 1;
    let slots = if len == 0 { 0 } else { span / u32::from(len) };
    let start = if slots == 0 { 0 } else { spread() % slots };
    for i in 0..slots {
        let slot = (start + i) % slots;
        let Ok(min) = u16::try_from(u32::from(first) + slot * u32::from(len)) else {
            continue;
        };
        let Some(max) = min.checked_add(len - 1) else {
            continue;
        };
        if (min..=max).all(|p| is_free(p, protocols)) {
            return Ok(min);
        }
    }
    Err(HarnessError::Io {
        what: format!(
            "find {len} consecutive free ports of 127.0.0.1 in {first}..={last} (below the \
             ephemeral range of {EPHEMERAL_RANGE_FILE})"
        ),
        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    })
}

/// A TCP port of 127.0.0.1 free now, below the ephemeral range, for a child to listen on.
///
/// # Errors
/// As [`free_block`].
pub fn free_port() -> Result<u16> {
    free_block(1, Protocols::TCP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_range_parses_and_nonsense_does_not() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32_768, 60_999)));
        assert_eq!(parse_range("1024 65535"), Some((1024, 65_535)));
        assert_eq!(parse_range("60999 32768"), None);
        assert_eq!(parse_range("abc"), None);
        assert_eq!(parse_range(""), None);
    }

    #[test]
    fn picked_ports_are_free_and_below_the_ephemeral_range() {
        let (low, _) = ephemeral_range();
        let port = free_port().expect("a free port");
        assert!(port < low && port >= 1024, "{port} vs ephemeral {low}");
        let _listener = TcpListener::bind(("127.0.0.1", port)).expect("it is free");
        let min = free_block(32, Protocols::BOTH).expect("a free block");
        assert!(u32::from(min) + 32 <= u32::from(low), "{min}+32 vs {low}");
        for p in min..min + 32 {
            let _udp = UdpSocket::bind(("127.0.0.1", p)).expect("udp free");
        }
        assert!(free_block(0, Protocols::UDP).is_err());
    }
}
