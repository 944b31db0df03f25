//! Server RTT: the per-connection ping schedule and the median estimate.
//!
//! The server measures every participant's RTT itself, from `ping` → `pong` on its own
//! monotonic clock (PROTOCOL.md, Session); it never trusts an RTT a client reports about itself
//! (the original framework did). Each connection's [`super::connection::Connection`] owns a
//! [`PingSchedule`], so the timing is not delayed by the core's queue; the core keeps an
//! [`RttEstimator`] per session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many samples the median is taken over: the most recent ones.
pub const RTT_WINDOW: usize = 9;

/// Pings sent back to back after `welcome` (each as soon as the previous pong arrives), so
/// matchmaking can start well under a second in.
pub const ENTRY_PINGS: u32 = 3;
/// Gap between later pings.
pub const PERIODIC_PING_GAP: Duration = Duration::from_secs(5);
/// A ping without a pong after this long counts as lost; the next one is sent.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// When to ping one connection and how to match pongs to pings. Pure: the caller passes the
/// time and does the sending.
#[derive(Debug, Clone)]
pub struct PingSchedule {
    next_seq: u64,
    outstanding: Option<(u64, Instant)>,
    sent: u32,
    next_at: Instant,
}

impl PingSchedule {
    /// A schedule whose first ping is due at `now` (call after `welcome` is written).
    pub fn new(now: Instant) -> Self {
        PingSchedule {
            next_seq: 1,
            outstanding: None,
            sent: 0,
            next_at: now,
        }
    }

    /// When the next ping is due.
    pub fn next_at(&self) -> Instant {
        self.next_at
    }

    /// If a ping is due at `now`, returns its `seq` and records it as sent at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<u64> {
        if now < self.next_at {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sent += 1;
        self.outstanding = Some((seq, now));
        self.next_at = now + PING_TIMEOUT;
        Some(seq)
    }

    /// A `pong` arrived at `now`. Returns the RTT in ms when it answers the outstanding ping;
    /// `None` for a stale or unknown `seq` (ignored).
    pub fn on_pong(&mut self, seq: u64, now: Instant) -> Option<f64> {
        let (expected, sent_at) = self.outstanding?;
        if seq != expected {
            return None;
        }
        self.outstanding = None;
        // Entry pings go back to back; after them, one every PERIODIC_PING_GAP.
        self.next_at = if self.sent < ENTRY_PINGS {
            now
        } else {
            sent_at + PERIODIC_PING_GAP
        };
        Some(now.saturating_duration_since(sent_at).as_secs_f64() * 1000.0)
    }
}

/// The most recent [`RTT_WINDOW`] samples of one participant and their median.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RttEstimator {
    samples_ms: VecDeque<f64>,
    median_ms: Option<f64>,
}

impl RttEstimator {
    /// Adds a sample, ms; negative or non-finite samples are ignored.
    pub fn push(&mut self, rtt_ms: f64) {
        if !rtt_ms.is_finite() || rtt_ms < 0.0 {
            return;
        }
        if self.samples_ms.len() == RTT_WINDOW {
            self.samples_ms.pop_front();
        }
        self.samples_ms.push_back(rtt_ms);
        self.median_ms = median(self.samples_ms.iter().copied());
    }

    /// The median of the window, ms (mean of the two middle samples for an even count);
    /// `None` before the first sample. Kept up to date by [`RttEstimator::push`], so reading it
    /// is free (the matchmaker reads it for every candidate).
    pub fn median_ms(&self) -> Option<f64> {
        self.median_ms
    }

    /// Number of samples in the window.
    pub fn len(&self) -> usize {
        self.samples_ms.len()
    }

    /// Whether no sample has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.samples_ms.is_empty()
    }

    /// The samples, oldest first.
    pub fn samples_ms(&self) -> Vec<f64> {
        self.samples_ms.iter().copied().collect()
    }
}

/// The median of RTT samples: one definition for server and browser ([`pairlab_shared::stats::median`]).
pub use pairlab_shared::stats::median;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimator_keeps_a_window() {
        let mut e = RttEstimator::default();
        assert_eq!(e.median_ms(), None);
        for i in 0..20 {
            e.push(i as f64);
        }
        e.push(f64::NAN);
        e.push(-1.0);
        assert_eq!(e.samples_ms().len(), RTT_WINDOW);
        assert_eq!(e.median_ms(), Some(15.0));
    }

    #[test]
    fn entry_pings_back_to_back_then_periodic() {
        let t0 = Instant::now();
        let mut s = PingSchedule::new(t0);
        let ms = |n| Duration::from_millis(n);
        assert_eq!(s.poll(t0), Some(1));
        assert_eq!(s.poll(t0 + ms(1)), None, "one ping outstanding at a time");
        assert_eq!(s.on_pong(1, t0 + ms(2)), Some(2.0));
        assert_eq!(s.poll(t0 + ms(2)), Some(2), "entry pings go back to back");
        assert_eq!(s.on_pong(7, t0 + ms(3)), None, "unknown seq is ignored");
        assert!(s.on_pong(2, t0 + ms(4)).is_some());
        assert_eq!(s.poll(t0 + ms(4)), Some(3));
        assert!(s.on_pong(3, t0 + ms(6)).is_some());
        assert_eq!(s.poll(t0 + ms(7)), None, "after the entry pings, wait");
        assert_eq!(s.next_at(), t0 + ms(4) + PERIODIC_PING_GAP);
        assert_eq!(s.poll(s.next_at()), Some(4));
    }

    #[test]
    fn lost_pong_times_out() {
        let t0 = Instant::now();
        let mut s = PingSchedule::new(t0);
        assert_eq!(s.poll(t0), Some(1));
        assert_eq!(s.poll(t0 + PING_TIMEOUT), Some(2));
        assert_eq!(
            s.on_pong(1, t0 + PING_TIMEOUT),
            None,
            "the lost ping's pong is stale"
        );
    }
}
