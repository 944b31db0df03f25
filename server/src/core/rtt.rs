//! Server RTT: the per-connection ping schedule, its ping ids, and the median estimate.
//!
//! The server measures every participant's RTT itself, from `ping` → `pong` on its own
//! monotonic clock (PROTOCOL.md, Session); it never trusts an RTT a client reports about itself
//! (the original framework did). Each connection's [`super::connection::Connection`] owns a
//! [`PingSchedule`] and its [`PingIds`], so the timing is not delayed by the core's queue; the
//! core keeps an [`RttEstimator`] per session.
//!
//! An RTT nobody can fake:
//! - **Ping ids are unpredictable.** Each `ping` carries a fresh random id ([`PingIds`], a
//!   ChaCha8 stream the shell seeds from the operating system), not a counter. A client can
//!   only echo an id after it has read the ping, so every sample is at least the real path:
//!   a client can delay its `pong`s (and only raise its RTT), never answer ahead of time.
//! - **A `pong` is judged** ([`PongOutcome`]): it gives a sample only when it carries the id of
//!   the one outstanding ping. A `pong` for an id this connection never sent
//!   ([`PongOutcome::Unsent`]) or one sooner than [`MIN_PLAUSIBLE_RTT`] after its ping
//!   ([`PongOutcome::TooFast`]) is ignored and counted by the connection; a late `pong` for a
//!   recent ping that timed out or was answered already ([`PongOutcome::Late`]) is ignored.
//! - **Entry pings stay back to back** (each right after the previous `pong`): with
//!   unpredictable ids answering early is impossible however the pings are spaced, so spacing
//!   them would only delay the entry decision (3 samples, or
//!   [`super::router::ENTRY_MAX_WAIT`]). A client that delays `pong`s selectively only raises
//!   its own median.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};

/// How many samples the median is taken over: the most recent ones.
pub const RTT_WINDOW: usize = 9;

/// Pings sent back to back after `welcome` (each as soon as the previous pong arrives), so
/// matchmaking can start well under a second in.
pub const ENTRY_PINGS: u32 = 3;
/// Gap between later pings.
pub const PERIODIC_PING_GAP: Duration = Duration::from_secs(5);
/// A ping without a pong after this long counts as lost; the next one is sent.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest ping id, 2^53 − 1: the largest integer a JavaScript number holds exactly, so a
/// client written in JavaScript echoes every id unchanged. Ids are uniform in
/// `0..=MAX_PING_ID` (53 random bits).
pub const MAX_PING_ID: u64 = (1 << 53) - 1;

/// A `pong` that arrives sooner than this after its ping was sent is ignored as too fast.
///
/// The floor is a backstop, not the defence: with unpredictable ids a `pong` carrying the
/// outstanding id was written after the client read the ping, so it cannot arrive before the
/// real round trip. Honest samples on loopback, with the client in the same process, measured
/// 10–25 µs at the least (`server/tests`), and any client across a network is slower; 1 µs is
/// far under that, while two socket transfers and a wake-up cannot happen in it. A sample under
/// it can only come from a guessed id or from a pong stamped before its ping was written.
pub const MIN_PLAUSIBLE_RTT: Duration = Duration::from_micros(1);

/// How many recent ping ids (answered or timed out) a schedule remembers, so that a `pong`
/// that comes after its ping timed out is [`PongOutcome::Late`], not [`PongOutcome::Unsent`].
pub const REMEMBERED_PINGS: usize = 4;

/// The ids of one connection's pings: 53-bit values from ChaCha8 (`rand_chacha`, the core's
/// seedable RNG). The server seeds it with 32 bytes from the operating system
/// ([`PingIds::from_seed`]), so the ids cannot be predicted from the ones seen; tests and
/// simulations use [`PingIds::seeded`] and replay the same ids.
#[derive(Clone)]
pub struct PingIds {
    rng: rand_chacha::ChaCha8Rng,
}

impl PingIds {
    /// Ids from a 256-bit seed; unpredictable when the seed is (the server's, from the OS).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        PingIds {
            rng: rand_chacha::ChaCha8Rng::from_seed(seed),
        }
    }

    /// Reproducible ids for tests and simulations: the same `seed` gives the same ids. Not for
    /// production (64 bits of seed).
    pub fn seeded(seed: u64) -> Self {
        PingIds {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next id, in `0..=MAX_PING_ID`.
    pub fn next_id(&mut self) -> u64 {
        self.rng.next_u64() & MAX_PING_ID
    }
}

impl fmt::Debug for PingIds {
    /// Never the RNG's state: it would predict every later id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PingIds(..)")
    }
}

/// What a `pong` turned out to be ([`PingSchedule::on_pong`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PongOutcome {
    /// It answers the outstanding ping: an RTT sample, ms.
    Sample(f64),
    /// It answers one of the [`REMEMBERED_PINGS`] recent pings that timed out or was answered
    /// already: ignored (an honest client's pong can come after its ping timed out).
    Late,
    /// It carries an id this connection did not send (or not recently): ignored, and suspect:
    /// a guessed id.
    Unsent,
    /// It carries the outstanding id but came sooner than [`MIN_PLAUSIBLE_RTT`] after the ping:
    /// ignored, and suspect. The ping stays outstanding, so its real pong still counts.
    TooFast,
}

/// The `pong`s one connection ignored, by kind ([`PongOutcome`]), since it opened. Counts
/// saturate at `u32::MAX`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IgnoredPongs {
    /// [`PongOutcome::Late`]: answers to pings that timed out or were answered (not suspect).
    pub late: u32,
    /// [`PongOutcome::Unsent`]: ids never sent (suspect: guessed).
    pub unsent: u32,
    /// [`PongOutcome::TooFast`]: the outstanding id sooner than [`MIN_PLAUSIBLE_RTT`] (suspect).
    pub too_fast: u32,
}

impl IgnoredPongs {
    /// Counts `outcome` if it is ignored; a [`PongOutcome::Sample`] is not counted.
    pub fn count(&mut self, outcome: PongOutcome) {
        let counter = match outcome {
            PongOutcome::Sample(_) => return,
            PongOutcome::Late => &mut self.late,
            PongOutcome::Unsent => &mut self.unsent,
            PongOutcome::TooFast => &mut self.too_fast,
        };
        *counter = counter.saturating_add(1);
    }

    /// The suspect ones: [`IgnoredPongs::unsent`] + [`IgnoredPongs::too_fast`].
    pub fn suspect(&self) -> u32 {
        self.unsent.saturating_add(self.too_fast)
    }
}

/// When to ping one connection and how to match pongs to pings. Pure: the caller passes the
/// time and the ids, and does the sending.
#[derive(Debug, Clone)]
pub struct PingSchedule {
    /// The ping awaiting its pong: its id and when it was sent.
    outstanding: Option<(u64, Instant)>,
    /// The ids of the most recent earlier pings, oldest first (at most [`REMEMBERED_PINGS`]).
    recent: VecDeque<u64>,
    /// Pings sent so far.
    sent: u32,
    /// When the next ping is due.
    next_at: Instant,
}

impl PingSchedule {
    /// A schedule whose first ping is due at `now` (call after `welcome` is written).
    pub fn new(now: Instant) -> Self {
        PingSchedule {
            outstanding: None,
            recent: VecDeque::with_capacity(REMEMBERED_PINGS),
            sent: 0,
            next_at: now,
        }
    }

    /// When the next ping is due.
    pub fn next_at(&self) -> Instant {
        self.next_at
    }

    /// If a ping is due at `now`, returns its id (the next of `ids`) and records it as sent at
    /// `now`; an unanswered ping before it counts as lost.
    pub fn poll(&mut self, now: Instant, ids: &mut PingIds) -> Option<u64> {
        if now < self.next_at {
            return None;
        }
        if let Some((lost, _)) = self.outstanding.take() {
            self.remember(lost);
        }
        let id = ids.next_id();
        self.sent += 1;
        self.outstanding = Some((id, now));
        self.next_at = now + PING_TIMEOUT;
        Some(id)
    }

    /// A `pong` carrying `id` arrived at `now`: a sample when it answers the outstanding ping
    /// no sooner than [`MIN_PLAUSIBLE_RTT`]; otherwise why it is ignored.
    pub fn on_pong(&mut self, id: u64, now: Instant) -> PongOutcome {
        let Some((expected, sent_at)) = self.outstanding.filter(|&(expected, _)| expected == id)
        else {
            return if self.recent.contains(&id) {
                PongOutcome::Late
            } else {
                PongOutcome::Unsent
            };
        };
        let rtt = now.saturating_duration_since(sent_at);
        if rtt < MIN_PLAUSIBLE_RTT {
            return PongOutcome::TooFast;
        }
        self.outstanding = None;
        self.remember(expected);
        // Entry pings go back to back; after them, one every PERIODIC_PING_GAP.
        self.next_at = if self.sent < ENTRY_PINGS {
            now
        } else {
            sent_at + PERIODIC_PING_GAP
        };
        PongOutcome::Sample(rtt.as_secs_f64() * 1000.0)
    }

    fn remember(&mut self, id: u64) {
        if self.recent.len() == REMEMBERED_PINGS {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A schedule that sent its first ping at the returned time, with ids seeded by `seed`:
    /// (sent at, schedule, ids, the ping's id).
    fn one_ping(seed: u64) -> (Instant, PingSchedule, PingIds, u64) {
        let t0 = Instant::now();
        let mut s = PingSchedule::new(t0);
        let mut ids = PingIds::seeded(seed);
        let id = s.poll(t0, &mut ids).expect("due at once");
        (t0, s, ids, id)
    }

    #[test]
    fn entry_pings_back_to_back_then_periodic() {
        let t0 = Instant::now();
        let mut s = PingSchedule::new(t0);
        let (mut ids, mut expected) = (PingIds::seeded(1), PingIds::seeded(1));
        let first = s.poll(t0, &mut ids).expect("due at once");
        assert_eq!(first, expected.next_id());
        assert_eq!(
            s.poll(t0 + ms(1), &mut ids),
            None,
            "one ping outstanding at a time"
        );
        assert_eq!(s.on_pong(first, t0 + ms(2)), PongOutcome::Sample(2.0));
        let second = s
            .poll(t0 + ms(2), &mut ids)
            .expect("entry pings go back to back");
        assert_eq!(second, expected.next_id());
        assert_eq!(s.on_pong(second + 1, t0 + ms(3)), PongOutcome::Unsent);
        assert!(matches!(
            s.on_pong(second, t0 + ms(4)),
            PongOutcome::Sample(_)
        ));
        let third = s.poll(t0 + ms(4), &mut ids).expect("third entry ping");
        assert!(matches!(
            s.on_pong(third, t0 + ms(6)),
            PongOutcome::Sample(_)
        ));
        assert_eq!(
            s.poll(t0 + ms(7), &mut ids),
            None,
            "after the entry pings, wait"
        );
        assert_eq!(s.next_at(), t0 + ms(4) + PERIODIC_PING_GAP);
        assert!(s.poll(s.next_at(), &mut ids).is_some());
    }

    #[test]
    fn ping_ids_are_random_53_bit_values_replayed_per_seed() {
        let draw = |seed| {
            let mut ids = PingIds::seeded(seed);
            (0..1000).map(|_| ids.next_id()).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7), "same seed, same ids");
        assert_ne!(a, draw(8));
        assert!(a.iter().all(|&id| id <= MAX_PING_ID));
        assert!(a.iter().any(|&id| id > 1 << 52), "the high bits are used");
        let counted = (1..=1000).collect::<Vec<u64>>();
        assert!(a.iter().all(|id| !counted.contains(id)), "not a counter");
        let seeded = PingIds::from_seed([9; 32]).next_id();
        assert_eq!(seeded, PingIds::from_seed([9; 32]).next_id());
        assert_eq!(format!("{:?}", PingIds::seeded(7)), "PingIds(..)");
    }

    #[test]
    fn a_pong_for_a_predicted_counter_value_is_unsent() {
        let (t0, mut s, _, id) = one_ping(3);
        for guess in [0, 1, 2, 3, id.wrapping_add(1), id ^ 1] {
            assert_eq!(s.on_pong(guess, t0 + ms(5)), PongOutcome::Unsent, "{guess}");
        }
        assert_eq!(
            s.on_pong(id, t0 + ms(150)),
            PongOutcome::Sample(150.0),
            "guesses leave the ping outstanding"
        );
    }

    #[test]
    fn a_pong_sooner_than_the_floor_is_too_fast_and_the_ping_stays_outstanding() {
        let (t0, mut s, _, id) = one_ping(4);
        assert_eq!(s.on_pong(id, t0), PongOutcome::TooFast);
        let just_under = t0 + MIN_PLAUSIBLE_RTT - Duration::from_nanos(1);
        assert_eq!(s.on_pong(id, just_under), PongOutcome::TooFast);
        assert_eq!(
            s.on_pong(id, t0 + MIN_PLAUSIBLE_RTT),
            PongOutcome::Sample(MIN_PLAUSIBLE_RTT.as_secs_f64() * 1000.0)
        );
        assert_eq!(
            s.on_pong(id, t0 + ms(1)),
            PongOutcome::Late,
            "answered already"
        );
    }

    #[test]
    fn ignored_pongs_are_counted_by_kind() {
        let mut counts = IgnoredPongs::default();
        for outcome in [
            PongOutcome::Sample(1.0),
            PongOutcome::Late,
            PongOutcome::Unsent,
            PongOutcome::Unsent,
            PongOutcome::TooFast,
        ] {
            counts.count(outcome);
        }
        let expected = IgnoredPongs {
            late: 1,
            unsent: 2,
            too_fast: 1,
        };
        assert_eq!(counts, expected);
        assert_eq!(counts.suspect(), 3);
        let mut full = IgnoredPongs {
            unsent: u32::MAX,
            ..IgnoredPongs::default()
        };
        full.count(PongOutcome::Unsent);
        assert_eq!(full.suspect(), u32::MAX, "saturates");
    }

    #[test]
    fn lost_pong_times_out() {
        let (t0, mut s, mut ids, lost) = one_ping(5);
        let next = s
            .poll(t0 + PING_TIMEOUT, &mut ids)
            .expect("the next after the timeout");
        assert_eq!(
            s.on_pong(lost, t0 + PING_TIMEOUT),
            PongOutcome::Late,
            "the lost ping's pong is late, not a sample"
        );
        assert!(matches!(
            s.on_pong(next, t0 + PING_TIMEOUT + ms(1)),
            PongOutcome::Sample(_)
        ));
        for _ in 0..REMEMBERED_PINGS {
            let id = s.poll(s.next_at(), &mut ids).expect("due");
            let _ = s.on_pong(id, s.next_at() - PING_TIMEOUT + ms(1));
        }
        assert_eq!(
            s.on_pong(lost, t0 + ms(99_000)),
            PongOutcome::Unsent,
            "forgotten"
        );
    }
}
