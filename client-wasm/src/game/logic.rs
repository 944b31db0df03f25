//! The pure parts of the game loop, tested natively: RTT summaries, the input wire format with
//! its redundant copies, and de-duplication. (The connection's pure part, its restart and
//! quality timing, is [`super::policy`].)

use std::collections::BTreeMap;

use pairlab_shared::RttSummary;
use serde::{Deserialize, Serialize};

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
/// newest last, each `[frame, input]`. Frames are numbered within the episode `e`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputPacket {
    /// 1-based episode number.
    pub e: u32,
    /// `[frame, input]` pairs.
    pub i: Vec<(u32, u32)>,
}

impl InputPacket {
    /// The packet as JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a packet; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
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
        assert_eq!(
            InputPacket::decode(&packets[5].encode()),
            Some(packets[5].clone())
        );
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
