//! The probe's own DataChannel messages and the arithmetic of a measurement. Pure Rust, no
//! browser: tested natively.
//!
//! Both sides of a probe measure. Each sends its own pings, one at a time, the next as soon as
//! the previous pong is back; each echoes the other's pings at once. Text messages:
//!
//! | message | text | meaning |
//! |---|---|---|
//! | ping | `p <seq> <sent_at_ms>` | a ping; `sent_at_ms` is the sender's `performance.now()` |
//! | pong | `q <seq> <sent_at_ms>` | the echo of a ping, fields unchanged |
//! | done | `d` | the sender has all its samples and has reported; it may close |
//!
//! Carrying the send time in the ping keeps the measuring side stateless: RTT = arrival time of
//! the pong − the `sent_at_ms` it carries, both on the sender's own clock. The `seq` lets the
//! sender ignore a pong that is not the one it waits for.

/// RTT samples each side takes: back to back, on loopback ~0.5 ms each.
pub const SAMPLE_COUNT: usize = 10;

/// A probe DataChannel message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProbeWire {
    /// A ping to echo.
    Ping {
        /// The sender's sequence number.
        seq: u32,
        /// The sender's `performance.now()` at sending, ms.
        sent_at_ms: f64,
    },
    /// The echo of a [`ProbeWire::Ping`].
    Pong {
        /// The ping's `seq`.
        seq: u32,
        /// The ping's `sent_at_ms`.
        sent_at_ms: f64,
    },
    /// The sender has finished measuring and reported its result.
    Done,
}

impl ProbeWire {
    /// The message as DataChannel text.
    pub fn encode(&self) -> String {
        match self {
            ProbeWire::Ping { seq, sent_at_ms } => format!("p {seq} {sent_at_ms}"),
            ProbeWire::Pong { seq, sent_at_ms } => format!("q {seq} {sent_at_ms}"),
            ProbeWire::Done => "d".to_owned(),
        }
    }

    /// Parses DataChannel text; `None` for anything that is not exactly one of the three
    /// messages (with a finite time).
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let kind = parts.next()?;
        if kind == "d" {
            return parts.next().is_none().then_some(ProbeWire::Done);
        }
        let seq = parts.next()?.parse::<u32>().ok()?;
        let sent_at_ms = parts
            .next()?
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite())?;
        if parts.next().is_some() {
            return None;
        }
        match kind {
            "p" => Some(ProbeWire::Ping { seq, sent_at_ms }),
            "q" => Some(ProbeWire::Pong { seq, sent_at_ms }),
            _ => None,
        }
    }
}

/// The echo for a received message: the pong text for a ping, else `None`. Runs inside the
/// DataChannel's `onmessage`.
pub fn echo(text: &str) -> Option<String> {
    match ProbeWire::decode(text)? {
        ProbeWire::Ping { seq, sent_at_ms } => Some(ProbeWire::Pong { seq, sent_at_ms }.encode()),
        _ => None,
    }
}

/// The median of `samples` (the mean of the two middle values for an even count); `None`
/// when empty.
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// The client's own deadline for a probe, ms after `probe_prepare`, given the server's
/// `timeout_ms` (PROTOCOL.md, Probe: the server's deadline counts from `probe_prepare`).
///
/// The client gives up a little earlier so that its `probe_result` with `success: false`
/// reaches the server before the server's deadline: 500 ms earlier, or 10 % earlier for
/// timeouts under 5 s.
pub fn client_deadline_ms(timeout_ms: u64) -> u64 {
    timeout_ms - (timeout_ms / 10).min(500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            ProbeWire::Ping {
                seq: 0,
                sent_at_ms: 0.0,
            },
            ProbeWire::Ping {
                seq: 7,
                sent_at_ms: 12345.678901,
            },
            ProbeWire::Pong {
                seq: u32::MAX,
                sent_at_ms: 0.1 + 0.2,
            },
            ProbeWire::Done,
        ] {
            assert_eq!(ProbeWire::decode(&m.encode()), Some(m), "{}", m.encode());
        }
        assert_eq!(
            ProbeWire::Ping {
                seq: 3,
                sent_at_ms: 1.5
            }
            .encode(),
            "p 3 1.5"
        );
    }

    #[test]
    fn junk_is_rejected() {
        for junk in [
            "", "p", "p 1", "p x 1", "p 1 x", "p 1 2 3", "x 1 2", "d 1", "p -1 2", "p 1 NaN",
            "p 1 inf",
        ] {
            assert_eq!(ProbeWire::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn echo_answers_pings_only() {
        assert_eq!(echo("p 4 10.25").as_deref(), Some("q 4 10.25"));
        assert_eq!(echo("q 4 10.25"), None);
        assert_eq!(echo("d"), None);
        assert_eq!(echo("hello"), None);
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[0.5, 0.4, 9.0, 0.6, 0.5]), Some(0.5));
    }

    #[test]
    fn client_deadline_is_before_server_deadline() {
        assert_eq!(client_deadline_ms(10_000), 9_500);
        assert_eq!(client_deadline_ms(5_000), 4_500);
        assert_eq!(client_deadline_ms(1_000), 900);
        assert_eq!(client_deadline_ms(0), 0);
        for t in [1, 9, 10, 999, 4_999, 60_000] {
            let d = client_deadline_ms(t);
            assert!(d <= t && d >= t * 9 / 10, "{t} -> {d}");
        }
    }
}
