//! The pure parts of the game loop, tested natively: RTT summaries, the inputs with their
//! redundant copies, de-duplication, and the episode's hidden time. (The connection's pure part, its restart and
//! quality timing, is [`super::policy`].)

use std::collections::BTreeMap;

use pairlab_shared::RttSummary;

/// Min / median / max of `samples_ms` (non-finite samples are skipped); `None` when empty.
/// The median is [`pairlab_shared::stats::median`] (of an even count, the mean of the two
/// middle samples).
pub fn rtt_summary(samples_ms: &[f64]) -> Option<RttSummary> {
    let finite = samples_ms.iter().copied().filter(|s| s.is_finite());
    let median = pairlab_shared::stats::median(finite.clone())?;
    let (min, max, n) = finite.fold(
        (f64::INFINITY, f64::NEG_INFINITY, 0usize),
        |(lo, hi, n), s| (lo.min(s), hi.max(s), n + 1),
    );
    Some(RttSummary {
        min,
        median,
        max,
        samples: u32::try_from(n).unwrap_or(u32::MAX),
    })
}

/// One packet on the unordered `inputs` channel: the sender's inputs for the latest frames,
/// newest last, each `[frame, input]`. Frames are numbered within the episode `e`. On the
/// wire it is a binary frame ([`super::framing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPacket {
    /// 1-based episode number.
    pub e: u32,
    /// `[frame, input]` pairs.
    pub i: Vec<(u32, u32)>,
}

/// The local side's inputs: schedules each tick's input `delay_frames` ahead, and builds the
/// packet that repeats the last `redundancy` inputs (as the original framework did) so that
/// one lost packet loses nothing.
#[derive(Debug, Clone)]
pub struct InputSender {
    /// Input delay, frames: the input read at frame `f` is applied at frame `f + delay`.
    pub delay_frames: u32,
    /// How many inputs each packet carries (the newest and the ones before it).
    pub redundancy: usize,
    episode: u32,
    history: Vec<(u32, u32)>,
    sent: u64,
}

impl InputSender {
    /// A sender for episode 1.
    pub fn new(delay_frames: u32, redundancy: usize) -> Self {
        Self {
            delay_frames,
            redundancy: redundancy.max(1),
            episode: 1,
            history: Vec::new(),
            sent: 0,
        }
    }

    /// Starts episode `episode`: clears the history and the count.
    pub fn start_episode(&mut self, episode: u32) {
        self.episode = episode;
        self.history.clear();
        self.sent = 0;
    }

    /// Records the input read at `frame` (for frame `frame + delay`) and returns the frame it
    /// applies to and the packet to send.
    pub fn push(&mut self, frame: u32, input: u32) -> (u32, InputPacket) {
        let target = frame.saturating_add(self.delay_frames);
        self.history.push((target, input));
        self.sent += 1;
        let from = self.history.len().saturating_sub(self.redundancy);
        self.history.drain(..from);
        (
            target,
            InputPacket {
                e: self.episode,
                i: self.history.clone(),
            },
        )
    }

    /// Inputs sent in this episode (each once, not counting the redundant copies).
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

/// A peer's inputs, de-duplicated by frame number.
#[derive(Debug, Clone, Default)]
pub struct InputReceiver {
    episode: u32,
    inputs: BTreeMap<u32, u32>,
    received: u64,
    last: u32,
}

impl InputReceiver {
    /// Starts episode `episode`: clears earlier inputs and the count.
    pub fn start_episode(&mut self, episode: u32) {
        self.episode = episode;
        self.inputs.clear();
        self.received = 0;
        self.last = 0;
    }

    /// Takes one packet; returns how many new inputs it brought (packets of another episode
    /// and frames seen already bring none).
    pub fn take(&mut self, packet: &InputPacket) -> usize {
        if packet.e != self.episode {
            return 0;
        }
        let mut new = 0;
        for &(frame, input) in &packet.i {
            if let std::collections::btree_map::Entry::Vacant(v) = self.inputs.entry(frame) {
                v.insert(input);
                new += 1;
            }
        }
        self.received += new as u64;
        new
    }

    /// The peer's input for `frame`: the one it sent for that frame, else (not there yet) the
    /// latest one before it, else 0. Remembers the answer as the latest known input.
    pub fn input_at(&mut self, frame: u32) -> u32 {
        let v = match self.inputs.get(&frame) {
            Some(v) => *v,
            None => self
                .inputs
                .range(..frame)
                .next_back()
                .map_or(self.last, |(_, v)| *v),
        };
        self.last = v;
        v
    }

    /// Distinct inputs received in this episode.
    pub fn received(&self) -> u64 {
        self.received
    }
}

/// Most hidden spans a [`HiddenLog`] keeps (older ones are forgotten first).
const HIDDEN_SPANS_MAX: usize = 1_000;

/// When the page was hidden (another tab, a minimised window, focus elsewhere), as spans of
/// the page clock (ms): what `attention` reports and each `episode_summary` counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HiddenLog {
    /// `(from_ms, until_ms)`; `None`: still hidden. Oldest first.
    spans: Vec<(f64, Option<f64>)>,
}

impl HiddenLog {
    /// Whether the page is hidden now.
    pub fn is_hidden(&self) -> bool {
        matches!(self.spans.last(), Some((_, None)))
    }

    /// The page is `hidden` (or not) at `now_ms`; returns the `attention` message to send when
    /// that is a change (`hidden_ms` of the span that ended, when shown again).
    pub fn set(&mut self, hidden: bool, now_ms: f64) -> Option<pairlab_shared::Attention> {
        if hidden == self.is_hidden() {
            return None;
        }
        if hidden {
            if self.spans.len() >= HIDDEN_SPANS_MAX {
                self.spans.remove(0);
            }
            self.spans.push((now_ms, None));
            return Some(pairlab_shared::Attention {
                hidden: true,
                hidden_ms: None,
            });
        }
        let last = self.spans.last_mut()?;
        last.1 = Some(now_ms);
        Some(pairlab_shared::Attention {
            hidden: false,
            hidden_ms: Some((now_ms - last.0).max(0.0)),
        })
    }

    /// The spans that overlap `from_ms..until_ms` (a span still open counts up to `until_ms`):
    /// how many, and their total time within it, ms.
    pub fn within(&self, from_ms: f64, until_ms: f64) -> (u32, f64) {
        let mut count = 0u32;
        let mut total_ms = 0.0;
        for &(start, end) in &self.spans {
            let end = end.unwrap_or(until_ms);
            let overlap = end.min(until_ms) - start.max(from_ms);
            if overlap > 0.0 || (start >= from_ms && start < until_ms) {
                count = count.saturating_add(1);
                total_ms += overlap.max(0.0);
            }
        }
        (count, total_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary() {
        assert_eq!(rtt_summary(&[]), None);
        let s = rtt_summary(&[5.0, 1.0, 3.0, f64::NAN]).expect("summary");
        assert_eq!((s.min, s.median, s.max, s.samples), (1.0, 3.0, 5.0, 3));
        let s = rtt_summary(&[4.0, 1.0, 2.0, 3.0]).expect("summary");
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn redundant_packets_survive_losses() {
        let mut tx = InputSender::new(2, 3);
        let mut rx = InputReceiver::default();
        rx.start_episode(1);
        let mut packets = Vec::new();
        for f in 0..6 {
            let (target, p) = tx.push(f, 100 + f);
            assert_eq!(target, f + 2);
            packets.push(p);
        }
        assert_eq!(packets[5].i, vec![(5, 103), (6, 104), (7, 105)]);
        // Packets 1, 2 and 4 are lost: 0, 3 and 5 still carry every input.
        assert_eq!(rx.take(&packets[0]), 1);
        assert_eq!(rx.take(&packets[3]), 3);
        assert_eq!(rx.take(&packets[5]), 2);
        assert_eq!(rx.take(&packets[5]), 0, "duplicates are not counted");
        assert_eq!(rx.received(), 6);
        assert_eq!(tx.sent(), 6);
        for f in 2..8 {
            assert_eq!(rx.input_at(f), 100 + f - 2);
        }
        assert_eq!(
            rx.input_at(9),
            105,
            "missing frames repeat the latest input"
        );
    }

    #[test]
    fn hidden_spans_are_reported_and_counted_per_window() {
        let mut log = HiddenLog::default();
        assert_eq!(log.set(false, 0.0), None, "shown at start is no change");
        let hide = log.set(true, 100.0).expect("a change");
        assert!(hide.hidden && hide.hidden_ms.is_none());
        assert_eq!(log.set(true, 150.0), None, "hidden twice is one span");
        let show = log.set(false, 400.0).expect("a change");
        assert_eq!((show.hidden, show.hidden_ms), (false, Some(300.0)));
        log.set(true, 900.0);
        assert!(log.is_hidden());
        // Window 0..1000: both spans, 300 + 100 ms (the open one counts up to the end).
        assert_eq!(log.within(0.0, 1000.0), (2, 400.0));
        // Window 200..500: only the part of the first span inside it.
        assert_eq!(log.within(200.0, 500.0), (1, 200.0));
        // A window with no hidden time.
        assert_eq!(log.within(500.0, 800.0), (0, 0.0));
    }

    #[test]
    fn other_episodes_are_ignored() {
        let mut tx = InputSender::new(0, 3);
        let mut rx = InputReceiver::default();
        rx.start_episode(2);
        let (_, p) = tx.push(0, 1);
        assert_eq!(rx.take(&p), 0);
        tx.start_episode(2);
        let (_, p) = tx.push(0, 1);
        assert_eq!(rx.take(&p), 1);
    }
}
