//! The probe's own DataChannel messages and the arithmetic of a measurement. Pure Rust, no
//! browser: tested natively.
//!
//! Both sides of a probe measure. Each sends its own pings, paced by a [`PingPacer`]: the next
//! ping goes as soon as the latest one's pong is back, or [`PING_SPACING_MS`] after the latest
//! ping, whichever comes first; at least [`SAMPLE_COUNT`] of them, and more while the
//! [`SAMPLING_WINDOW_MS`] since the first ping lasts (up to [`MAX_SAMPLES`]). On a fast path
//! that is back to back (a relayed path at 5 ms: ~20 samples in the window); on a slow one the
//! pings overlap, so the sampling takes the window + 1 RTT instead of 10 RTT (at a 300 ms RTT:
//! ~0.35 s, not 3 s). A ping found lost is replaced (see [`PingPacer`]). Each side echoes the
//! other's pings at once. Text messages:
//!
//! | message | text | meaning |
//! |---|---|---|
//! | ping | `p <seq> <sent_at_ms>` | a ping; `sent_at_ms` is the sender's `performance.now()` |
//! | pong | `q <seq> <sent_at_ms>` | the echo of a ping, fields unchanged |
//! | done | `d` | the sender has all its samples and has reported; it may close |
//!
//! Carrying the send time in the ping keeps the measuring side stateless: RTT = arrival time of
//! the pong − the `sent_at_ms` it carries, both on the sender's own clock. The `seq` tells
//! the sender which ping a pong answers, and reveals a lost ping (its later neighbour's pong
//! comes back first on the ordered channel).

/// RTT samples each side takes at least (one per ping).
pub const SAMPLE_COUNT: usize = 10;

/// How long a side keeps sending pings after its first, ms, once it has [`SAMPLE_COUNT`] on
/// their way: on a short path the window adds samples at no cost in round trips, on a long one
/// (an RTT above the window) its pings overlap, so more samples cost ~30 ms, not more RTTs.
///
/// Why: the probe's `rtt_ms` is the smallest sample ([`path_rtt_ms`]), and what the browsers
/// add to a round trip is a spread of a few ms whatever the path (their threads, DTLS, SCTP).
/// On a relayed path at D = 0 (a ~4 ms truth, so a 2.1 ms tolerance) the smallest of 10
/// samples taken within ~30 ms was within of the relay echo in 17 of 20 pairs on an idle
/// machine (BENCHMARKS.md §1, handover run at `9a71199`); the misses were pairs in which one
/// side's 10 samples all sat 2–3 ms above the path. More samples over a longer moment make
/// such a side rarer: the chance that none of n samples is near the floor falls as pⁿ.
/// 50 ms is ~20 samples there, ~35 ms more sampling than 10; on a long path the window's
/// pings overlap and come back about one RTT after they went, so ~25 samples cost ~30 ms more
/// than 10 (see [`PingPacer`] for when a side stops waiting).
pub const SAMPLING_WINDOW_MS: f64 = 50.0;

/// The most samples one side takes (pings answered or in flight), whatever the window.
pub const MAX_SAMPLES: usize = 30;

/// The longest wait between two pings of one side, ms, while the latest is unanswered.
///
/// Not 0: ten pings sent in one burst were measured at ~8 ms each on loopback (one page, both
/// ends) against ~0.6 ms one at a time, as each echo queued behind the burst. At 2 ms apart
/// the median error stayed within ±1.1 ms at every setting bench-probe measures, and the
/// sampling of a relayed probe at D = 0 took 30 ms, which brings it under its target; but a
/// side's ten samples then fall within ~30 ms, and 3 reports in 840 (all at a 5 ms relayed
/// RTT) were lifted 3–5 ms by a transient (hence also [`SAMPLING_WINDOW_MS`]). At 5 ms apart:
/// no such miss, 55 ms of sampling, and the D = 0 probe 10–20 ms over its target
/// (BENCHMARKS.md §1). Browsers clamp timeouts nested more than 5 deep to ≥ 4 ms (HTML, timer
/// initialisation steps), so later gaps of a long run may be 4 ms. In a hidden tab, where
/// timers slow to 1 s, the pong-driven rule still sends the next ping at once: never slower
/// than one at a time.
pub const PING_SPACING_MS: f64 = 2.0;

/// The most pings one side sends in a probe: [`MAX_SAMPLES`] plus [`SAMPLE_COUNT`]
/// replacements for pings found lost.
pub const MAX_PINGS: usize = MAX_SAMPLES + SAMPLE_COUNT;

/// What a [`PingPacer`] makes of a pong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PongVerdict {
    /// Not a pong we wait for (unknown, answered, or given up as lost): ignore it.
    Ignore,
    /// A new sample. `send_next`: no ping is in flight now and samples are still missing, so
    /// send the next one at once.
    Sample {
        /// Send the next ping now.
        send_next: bool,
    },
}

/// Where one ping is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PingState {
    InFlight,
    Answered,
    Lost,
}

/// One ping sent: where it is, and when it went out (`performance.now()` ms).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ping {
    state: PingState,
    sent_at_ms: f64,
}

/// One side's ping schedule: which pings went out, which came back, which were lost, and when
/// the next is due. Pure state, driven by the probe connection with `performance.now()` times
/// (ms).
///
/// **How many.** Pings go out while fewer than [`SAMPLE_COUNT`] are answered or in flight, and
/// beyond that while the [`SAMPLING_WINDOW_MS`] after the first ping lasts, up to
/// [`MAX_SAMPLES`]. The side is [`complete`](PingPacer::complete) once it has
/// [`SAMPLE_COUNT`] samples, wants no more, and no ping in flight can still lower the
/// smallest sample: a ping out for longer than the smallest RTT seen can only bring a larger
/// one, so it is not waited for (nor is a lost one). On a 300 ms path that is ~25 samples for
/// ~30 ms more than 10; on a 5 ms one, ~20 samples by ~55 ms after the first ping.
///
/// **Lost pings.** The probe's DataChannel is reliable and ordered, and pongs are echoed in
/// order, so a pong for ping `j` means every earlier ping still in flight will never be
/// answered. Such pings count as lost and are replaced, up to [`MAX_PINGS`] in all. This is
/// not hypothetical: in Chromium 156, relayed, the answering side's first message was
/// sometimes never delivered (bench-probe, 4 to 5 of 40 probes at D = 0 ms); before, that one
/// lost ping stalled the probe until its deadline. A loss among the first [`SAMPLE_COUNT`]
/// that no later pong reveals (the last ping in flight) still ends at the deadline; one during
/// the window does not: once it has [`SAMPLE_COUNT`] samples, a side waits for a ping no
/// longer than the smallest RTT seen.
#[derive(Debug, Clone, PartialEq)]
pub struct PingPacer {
    /// The pings sent, by `seq`.
    pings: Vec<Ping>,
    answered: usize,
    in_flight: usize,
    /// The smallest RTT so far, by the pacer's own send times (∞ before the first pong).
    best_rtt_ms: f64,
}

impl Default for PingPacer {
    fn default() -> Self {
        Self::new()
    }
}

impl PingPacer {
    /// No ping sent yet.
    pub fn new() -> Self {
        Self {
            pings: Vec::with_capacity(MAX_PINGS),
            answered: 0,
            in_flight: 0,
            best_rtt_ms: f64::INFINITY,
        }
    }

    /// When the sampling window closes (`performance.now()` ms); meaningless before the first
    /// ping.
    fn window_end_ms(&self) -> f64 {
        self.pings.first().map_or(0.0, |p| p.sent_at_ms) + SAMPLING_WINDOW_MS
    }

    /// Whether another ping is wanted at `now_ms`: the [`MAX_PINGS`] budget is not spent, and
    /// fewer than [`SAMPLE_COUNT`] are answered or in flight, or fewer than [`MAX_SAMPLES`]
    /// while the window lasts.
    fn wants_more(&self, now_ms: f64) -> bool {
        if self.pings.len() >= MAX_PINGS {
            return false;
        }
        let taken = self.answered + self.in_flight;
        taken < SAMPLE_COUNT
            || (taken < MAX_SAMPLES && (self.pings.is_empty() || now_ms < self.window_end_ms()))
    }

    /// Takes the next ping's `seq` and notes that it goes out at `now_ms`; `None` when no
    /// ping is wanted (enough in flight or answered, the window over, or the budget spent).
    pub fn send(&mut self, now_ms: f64) -> Option<u32> {
        if !self.wants_more(now_ms) {
            return None;
        }
        let seq = self.pings.len() as u32;
        self.pings.push(Ping {
            state: PingState::InFlight,
            sent_at_ms: now_ms,
        });
        self.in_flight += 1;
        Some(seq)
    }

    /// A pong carrying `seq` arrived at `now_ms`.
    pub fn on_pong(&mut self, seq: u32, now_ms: f64) -> PongVerdict {
        let i = seq as usize;
        let Some(ping) = self
            .pings
            .get_mut(i)
            .filter(|p| p.state == PingState::InFlight)
        else {
            return PongVerdict::Ignore;
        };
        ping.state = PingState::Answered;
        self.best_rtt_ms = self.best_rtt_ms.min(now_ms - ping.sent_at_ms);
        self.answered += 1;
        self.in_flight -= 1;
        // Ordered and reliable: an earlier ping still in flight is lost.
        for ping in &mut self.pings[..i] {
            if ping.state == PingState::InFlight {
                ping.state = PingState::Lost;
                self.in_flight -= 1;
            }
        }
        PongVerdict::Sample {
            send_next: self.in_flight == 0 && self.wants_more(now_ms),
        }
    }

    /// When the pacer next needs a turn (`performance.now()` ms), given that it is `now_ms`:
    /// the next ping by the spacing rule, or, with [`SAMPLE_COUNT`] on their way, the window's
    /// end if that comes first; once no more pings are wanted, with [`SAMPLE_COUNT`] samples
    /// and pings in flight, when those can no longer lower the smallest sample (the side is
    /// complete then, even if one was lost). `None` before the first ping and otherwise.
    pub fn next_due_ms(&self, now_ms: f64) -> Option<f64> {
        if self.pings.is_empty() {
            return None;
        }
        if self.wants_more(now_ms) {
            let due = self.last_sent_at_ms() + PING_SPACING_MS;
            return Some(if self.answered + self.in_flight < SAMPLE_COUNT {
                due
            } else {
                due.min(self.window_end_ms())
            });
        }
        (self.answered >= SAMPLE_COUNT && self.in_flight > 0).then_some(self.useless_after_ms())
    }

    /// When the latest ping went out (0 before the first).
    fn last_sent_at_ms(&self) -> f64 {
        self.pings.last().map_or(0.0, |p| p.sent_at_ms)
    }

    /// From when no ping in flight can lower the smallest sample: the latest ping (in flight
    /// ones are the latest: a pong reveals every earlier one lost) plus the smallest RTT.
    fn useless_after_ms(&self) -> f64 {
        self.last_sent_at_ms() + self.best_rtt_ms
    }

    /// How many pings went out.
    pub fn sent(&self) -> usize {
        self.pings.len()
    }

    /// How many pings were found lost.
    pub fn lost(&self) -> usize {
        self.pings
            .iter()
            .filter(|p| p.state == PingState::Lost)
            .count()
    }

    /// Whether the side is done at `now_ms`: [`SAMPLE_COUNT`] pings have their pongs, no
    /// more are wanted, and no ping in flight can still lower the smallest sample.
    pub fn complete(&self, now_ms: f64) -> bool {
        self.answered >= SAMPLE_COUNT
            && !self.wants_more(now_ms)
            && (self.in_flight == 0 || now_ms >= self.useless_after_ms())
    }
}

/// A probe DataChannel message. On the wire (DataChannel text): `p <seq> <µs>` (ping),
/// `q <seq> <µs>` (its echo), `d` (done); the sending time is whole microseconds of the
/// sender's page clock, so neither end formats or parses a float (Rust's float formatting
/// would add ~15 KB to the wasm every participant downloads; `performance.now()` is no finer
/// than 5 µs anyway).
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
            ProbeWire::Ping { seq, sent_at_ms } => format!("p {seq} {}", micros(*sent_at_ms)),
            ProbeWire::Pong { seq, sent_at_ms } => format!("q {seq} {}", micros(*sent_at_ms)),
            ProbeWire::Done => "d".to_owned(),
        }
    }

    /// Parses DataChannel text; `None` for anything that is not exactly one of the three
    /// messages (with a time in whole microseconds).
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let kind = parts.next()?;
        if kind == "d" {
            return parts.next().is_none().then_some(ProbeWire::Done);
        }
        let seq = parts.next()?.parse::<u32>().ok()?;
        let sent_at_ms = parts.next()?.parse::<u64>().ok()? as f64 / 1000.0;
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

/// `ms` as whole microseconds (0 for a negative or non-finite time, which a page clock never
/// gives).
fn micros(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        (ms * 1000.0).round() as u64
    } else {
        0
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

/// The path's RTT from one side's samples, ms: the smallest finite sample (`None` without
/// one). This is the probe's `rtt_ms`.
///
/// Why the minimum and not the median: every sample is the path's RTT plus what the two
/// browsers added on the way (a fresh SCTP association, a page still starting up, a busy
/// moment of either renderer), and those additions are never negative, so the smallest sample
/// is the closest to the path. Measured (BENCHMARKS.md §1, "The estimator"): against the delay
/// proxy's truth at D = 0, 5, 25, 75 ms relayed and direct, the minimum of the 10 samples was
/// within 2 ms + 3 % in 118 of 120 reports, the median of the same samples in 89, and dropping
/// the first 5, 10 or 20 samples before taking a median in 86–97: the error is a spread of
/// late samples throughout the probe, not only a warm-up at its start, so waiting for it to
/// settle costs time without removing it. The raw samples still go in `samples_ms`.
pub fn path_rtt_ms(samples: &[f64]) -> Option<f64> {
    samples
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .reduce(f64::min)
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
                sent_at_ms: 12345.678,
            },
            ProbeWire::Pong {
                seq: u32::MAX,
                sent_at_ms: 0.3,
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
            "p 3 1500"
        );
        // A page clock finer than a microsecond is rounded to one.
        let fine = ProbeWire::Ping {
            seq: 1,
            sent_at_ms: 0.1 + 0.2,
        };
        assert_eq!(fine.encode(), "p 1 300");
    }

    #[test]
    fn junk_is_rejected() {
        for junk in [
            "", "p", "p 1", "p x 1", "p 1 x", "p 1 2 3", "x 1 2", "d 1", "p -1 2", "p 1 NaN",
            "p 1 inf", "p 1 1.5", "p 1 -2",
        ] {
            assert_eq!(ProbeWire::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn echo_answers_pings_only() {
        assert_eq!(echo("p 4 10250").as_deref(), Some("q 4 10250"));
        assert_eq!(echo("q 4 10250"), None);
        assert_eq!(echo("d"), None);
        assert_eq!(echo("hello"), None);
    }

    /// Drives a pacer over a path with a constant `rtt_ms` and no loss, as the probe
    /// connection does (a pong may send the next ping; a due turn sends one, then the side
    /// may be complete). Returns (pings sent, samples, when the side completed, ms after the
    /// first ping).
    fn run_over(rtt_ms: f64) -> (usize, usize, f64) {
        let mut p = PingPacer::new();
        let mut pongs = std::collections::VecDeque::new();
        let mut now = 0.0;
        pongs.push_back((now + rtt_ms, p.send(now).expect("first")));
        let mut samples = 0;
        loop {
            let due = p.next_due_ms(now);
            let pong_at = pongs.front().map(|&(at, _)| at);
            match (due, pong_at) {
                (Some(due), pong) if pong.is_none_or(|at| due < at) => {
                    now = due.max(now);
                    if let Some(seq) = p.send(now) {
                        pongs.push_back((now + rtt_ms, seq));
                    }
                }
                (_, Some(at)) => {
                    now = at;
                    let (_, seq) = pongs.pop_front().expect("a pong");
                    if let PongVerdict::Sample { send_next } = p.on_pong(seq, now) {
                        samples += 1;
                        if send_next {
                            let seq = p.send(now).expect("wanted");
                            pongs.push_back((now + rtt_ms, seq));
                        }
                    }
                }
                (None, None) => panic!("stalled at {now} ms: {p:?}"),
                (Some(_), None) => unreachable!(),
            }
            if p.complete(now) {
                return (p.sent(), samples, now);
            }
        }
    }

    #[test]
    fn pacer_goes_back_to_back_when_pongs_are_fast() {
        let mut p = PingPacer::new();
        assert_eq!(
            p.next_due_ms(0.0),
            None,
            "nothing is due before the first ping"
        );
        let mut now = 100.0;
        let mut seq = p.send(now).expect("first");
        for _ in 1..MAX_SAMPLES {
            now += 0.5;
            assert_eq!(p.on_pong(seq, now), PongVerdict::Sample { send_next: true });
            assert!(!p.complete(now), "the window is open");
            seq = p.send(now).expect("next");
        }
        assert_eq!(seq as usize, MAX_SAMPLES - 1);
        assert_eq!(p.send(now), None, "only MAX_SAMPLES pings");
        assert_eq!(
            p.next_due_ms(now),
            Some(now + 0.5),
            "the last is waited for as long as it could lower the smallest sample"
        );
        assert!(!p.complete(now));
        assert_eq!(
            p.on_pong(seq, now),
            PongVerdict::Sample { send_next: false }
        );
        assert!(p.complete(now));
    }

    #[test]
    fn pacer_takes_more_samples_on_a_short_path_within_the_window() {
        // A relayed path at D = 0 (~5 ms): the window, not SAMPLE_COUNT, ends the sampling.
        let (sent, samples, done_at) = run_over(5.0);
        assert!(samples > 2 * SAMPLE_COUNT, "{samples} samples");
        assert!(samples <= MAX_SAMPLES);
        assert!(sent <= MAX_SAMPLES, "{sent} pings, none lost");
        assert!(
            (SAMPLING_WINDOW_MS..=SAMPLING_WINDOW_MS + 5.0).contains(&done_at),
            "complete {done_at} ms after the first ping"
        );
    }

    #[test]
    fn pacer_overlaps_pings_on_a_slow_path() {
        // RTT ~100 ms: pings go PING_SPACING_MS apart until the window closes, all before the
        // first pong; the side waits for the rest only while they could lower its minimum.
        let mut p = PingPacer::new();
        let mut now = 0.0;
        p.send(now).expect("first");
        while let Some(due) = p.next_due_ms(now) {
            now = due;
            let _ = p.send(now);
        }
        let in_window = (SAMPLING_WINDOW_MS / PING_SPACING_MS) as usize;
        assert_eq!(
            p.sent(),
            in_window,
            "a ping every PING_SPACING_MS in the window"
        );
        assert_eq!(now, SAMPLING_WINDOW_MS, "the last turn is the window's end");
        // Pongs at 100 ms + seq: RTTs 100 − seq ms, the smallest 91 ms after ten.
        for seq in 0..SAMPLE_COUNT as u32 {
            assert!(!p.complete(100.0 + f64::from(seq)));
            assert_eq!(
                p.on_pong(seq, 100.0 + f64::from(seq)),
                PongVerdict::Sample { send_next: false }
            );
        }
        let last_sent = PING_SPACING_MS * (in_window - 1) as f64;
        assert!(!p.complete(110.0), "later pings may still come back faster");
        assert_eq!(p.next_due_ms(110.0), Some(last_sent + 91.0));
        assert!(p.complete(last_sent + 91.0), "none can beat 91 ms now");
        // Through the driver at a constant 100 ms: every ping comes back, the last one RTT
        // after it went.
        let (_, samples, done_at) = run_over(100.0);
        assert_eq!(samples, in_window);
        assert_eq!(done_at, 100.0 + last_sent);
    }

    #[test]
    fn pacer_sends_at_once_only_when_the_latest_ping_is_answered() {
        let mut p = PingPacer::new();
        p.send(0.0);
        p.send(5.0);
        // The older ping's pong: a sample, but ping 1 is still in flight.
        assert_eq!(p.on_pong(0, 6.0), PongVerdict::Sample { send_next: false });
        assert_eq!(p.on_pong(1, 7.0), PongVerdict::Sample { send_next: true });
    }

    #[test]
    fn pacer_ignores_unknown_and_repeated_pongs() {
        let mut p = PingPacer::new();
        assert_eq!(p.on_pong(0, 0.0), PongVerdict::Ignore, "nothing sent yet");
        p.send(0.0);
        assert_eq!(p.on_pong(1, 1.0), PongVerdict::Ignore, "never sent");
        assert_eq!(p.on_pong(u32::MAX, 1.0), PongVerdict::Ignore);
        assert_eq!(p.on_pong(0, 1.0), PongVerdict::Sample { send_next: true });
        assert_eq!(p.on_pong(0, 1.0), PongVerdict::Ignore, "answered already");
        assert!(!p.complete(1.0));
    }

    #[test]
    fn pacer_replaces_a_ping_found_lost() {
        // The first ping is lost: the pong of the second reveals it, and a replacement goes.
        // (After the window, so that only SAMPLE_COUNT samples are wanted.)
        let mut p = PingPacer::new();
        assert_eq!(p.send(0.0), Some(0));
        assert_eq!(p.send(5.0), Some(1));
        let late = SAMPLING_WINDOW_MS + 10.0;
        assert_eq!(p.on_pong(1, late), PongVerdict::Sample { send_next: true });
        assert_eq!(p.lost(), 1);
        assert_eq!(
            p.on_pong(0, late),
            PongVerdict::Ignore,
            "a lost ping's late pong is ignored"
        );
        let mut seqs = Vec::new();
        while let Some(seq) = p.send(late) {
            seqs.push(seq);
            assert_eq!(
                p.on_pong(seq, late),
                PongVerdict::Sample {
                    send_next: seqs.len() < SAMPLE_COUNT - 1
                }
            );
        }
        assert_eq!(seqs.first(), Some(&2));
        assert_eq!(p.sent(), SAMPLE_COUNT + 1, "one replacement");
        assert!(p.complete(late));
        assert_eq!(p.next_due_ms(late), None);
    }

    #[test]
    fn pacer_waits_while_the_missing_samples_are_in_flight() {
        // Every even ping lost: each odd pong reveals one loss. After 19 pings, 9 samples are
        // in and ping 18 is in flight: nothing more is due until its pong.
        let mut p = PingPacer::new();
        let mut now = 0.0;
        while let Some(seq) = p.send(now) {
            now += 10.0;
            if seq % 2 == 1 {
                p.on_pong(seq, now);
            }
        }
        assert_eq!(p.sent(), 2 * SAMPLE_COUNT - 1);
        assert_eq!(p.lost(), SAMPLE_COUNT - 1);
        assert_eq!(
            p.next_due_ms(now),
            None,
            "the last missing sample is in flight"
        );
        assert!(!p.complete(now));
        assert_eq!(p.on_pong(18, now), PongVerdict::Sample { send_next: false });
        assert!(p.complete(now));
    }

    #[test]
    fn pacer_completes_with_a_ping_lost_in_the_window() {
        // A 2 ms path; the last ping of the window is lost and nothing reveals it: the side
        // completes once that ping could no longer beat 2 ms, not at the deadline.
        let mut p = PingPacer::new();
        let mut now = 0.0;
        let mut seq = p.send(now).expect("first");
        while now + PING_SPACING_MS < SAMPLING_WINDOW_MS {
            now += PING_SPACING_MS;
            p.on_pong(seq, now);
            seq = p.send(now).expect("in the window");
        }
        assert!(!p.complete(now), "ping {seq} in flight, the window open");
        let due = p.next_due_ms(now).expect("the window's end is due");
        assert_eq!(due, SAMPLING_WINDOW_MS);
        assert_eq!(p.send(due), None);
        assert!(p.complete(due), "the lost ping could no longer beat 2 ms");
    }

    #[test]
    fn pacer_gives_up_after_max_pings() {
        // Each round, every ping in flight but the latest is lost: answered + in flight stays
        // under SAMPLE_COUNT, so the budget runs out before SAMPLE_COUNT samples.
        let mut p = PingPacer::new();
        p.send(0.0);
        let late = SAMPLING_WINDOW_MS + 1.0;
        loop {
            let mut last = None;
            while let Some(seq) = p.send(late) {
                last = Some(seq);
            }
            let Some(last) = last else { break };
            assert!(matches!(p.on_pong(last, late), PongVerdict::Sample { .. }));
        }
        assert_eq!(p.sent(), MAX_PINGS);
        assert_eq!(p.send(late), None, "budget spent");
        assert_eq!(p.next_due_ms(late), None);
        assert!(!p.complete(late));
    }

    #[test]
    fn path_rtt_is_the_smallest_finite_sample() {
        assert_eq!(path_rtt_ms(&[]), None);
        assert_eq!(path_rtt_ms(&[f64::NAN]), None);
        assert_eq!(path_rtt_ms(&[3.0]), Some(3.0));
        // A warm-up that falls towards the path (seen: getStats 1–2 ms, median 6.6 ms).
        let warm_up = [16.7, 15.9, 11.4, 10.7, 8.0, 5.2, 4.1, 3.3, 2.9, 2.7];
        assert_eq!(path_rtt_ms(&warm_up), Some(2.7));
        assert_eq!(path_rtt_ms(&[5.0, f64::NAN, 1.0, f64::INFINITY]), Some(1.0));
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
