//! What a scene remembers of subjects who are no longer connected, in a compact form with a
//! fixed bound, and how that memory is rebuilt from the research record when the server starts.
//!
//! A scene remembers two things beyond its live sessions (see [`super::waitroom`]):
//! - the **done set**: subjects whose part in the scene is over; their `hello` is refused with
//!   `id_in_use` (the one answer for an id in use);
//! - the **failed pairs**: pairs whose probe failed; they are never grouped again.
//!
//! Both are kept as keyed 64-bit fingerprints of subject ids ([`SubjectHasher`]: HMAC-SHA1
//! under a key drawn from the core's [`IdSource`] at start, truncated to 64 bits), so a
//! remembered subject costs a few bytes whatever the length of their id, and nobody who does
//! not know the key can craft two ids with the same fingerprint. A failed pair is one 64-bit
//! value mixed from its members' fingerprints ([`mix_pair`]). Each is a [`FingerprintSet`]: the
//! newest [`DONE_CAP`] subjects and the newest [`FAILED_PAIRS_CAP`] pairs per scene, kept as
//! their top 43 bits in Elias–Fano eras at 3.6–4.2 bytes a value (≤ 1.25 MB per set when full),
//! the oldest era forgotten beyond the cap.
//!
//! The price of the compact form is a stated false-positive rate: a subject never seen is
//! refused as done, or a pair never probed is kept apart, with probability at most
//! `len / 2⁴³` per question (`len` the set's size): with 200,000 done subjects
//! 2.3 × 10⁻⁸ per `hello` (one newcomer wrongly refused in ~44 million), with a full done set
//! 3.6 × 10⁻⁸. A remembered subject or pair is always found (no false negatives).
//!
//! At start, the shell replays each scene's `events.jsonl` through [`DoneState::read_line`]
//! and hands the result to [`super::Core::restore`], so a restart keeps both sets. A subject is
//! done after a restart when the record has (see [`DoneState::read_line`]):
//! - `participant_left` with reason `leave` (they quit: final, as in a live server),
//! - `waitroom_timeout` (their waitroom time ran out: final),
//! - `game_created` naming them (they were matched into a game; the game does not survive a
//!   restart, and a live server marks them done when their session ends);
//! - `participant_outcome` with any outcome but `entry_refused` (they finished, left, timed
//!   out or lost their partner; a refused participant may try again);
//!
//! and a pair is failed when a `match_rejected` line lists it in `failed_pairs`. Lines that are
//! not JSON objects of that shape (a torn last line, another kind of event) are skipped.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

use hmac::Mac as _;
use pairlab_shared::SubjectId;

#[cfg(doc)]
use super::fingerprint_set::{FingerprintSet, ERA_VALUES};
use super::ids::IdSource;
use super::research::{LeaveReason, ResearchEventKind};

/// The subjects a scene's done set keeps at least (the newest; up to [`ERA_VALUES`] more);
/// beyond it the oldest are forgotten (and could take part again). Sized for the largest
/// studies run on one server: 250,000 participants (1.25 MB at most, see [`FingerprintSet`]).
pub const DONE_CAP: usize = 250_000;

/// The failed pairs a scene remembers at least (the newest; up to [`ERA_VALUES`] more);
/// beyond it the oldest are forgotten (and could be probed again).
pub const FAILED_PAIRS_CAP: usize = 250_000;

/// A keyed 64-bit fingerprint of subject ids: the first 8 bytes of HMAC-SHA1(key, id). The
/// key is drawn once per server process from the core's [`IdSource`].
#[derive(Clone)]
pub struct SubjectHasher {
    /// The MAC already keyed; cloned for each fingerprint.
    mac: hmac::Hmac<sha1::Sha1>,
}

impl std::fmt::Debug for SubjectHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.write_str("SubjectHasher(..)")
    }
}

impl SubjectHasher {
    /// A hasher with a fresh 128-bit key from `ids`.
    pub fn from_ids(ids: &mut dyn IdSource) -> Self {
        Self::with_key(ids.next_uuid().as_bytes())
    }

    /// A hasher keyed with `key`.
    pub fn with_key(key: &[u8]) -> Self {
        Self {
            // HMAC accepts keys of any length, so this cannot fail.
            mac: hmac::Hmac::<sha1::Sha1>::new_from_slice(key)
                .expect("HMAC takes keys of any length"),
        }
    }

    /// The fingerprint of `subject`.
    pub fn fingerprint(&self, subject: &SubjectId) -> u64 {
        let mut mac = self.mac.clone();
        mac.update(subject.as_str().as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }

    /// The fingerprint of a pair, the same in either order: the members' fingerprints, smaller
    /// first, mixed into one 64-bit value ([`mix_pair`]).
    pub fn pair(&self, a: &SubjectId, b: &SubjectId) -> u64 {
        mix_pair(self.fingerprint(a), self.fingerprint(b))
    }
}

/// One 64-bit value for the unordered pair of fingerprints `x` and `y`:
/// `mix(min + mix(max))`, where `mix` is the SplitMix64 finaliser (a bijection of `u64` that
/// spreads every input bit over the output). For keyed, unpredictable member fingerprints the
/// result is as uniform as they are, so two different pairs share it with probability about
/// 2⁻⁶⁴; pairs with the same smaller member never do.
pub fn mix_pair(x: u64, y: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    mix(x.min(y).wrapping_add(mix(x.max(y))))
}

/// A set that holds at most `cap` values: inserting a new value beyond that forgets the oldest
/// (insertion order; inserting a value already held changes nothing).
#[derive(Debug, Clone)]
pub struct BoundedSet<T> {
    order: VecDeque<T>,
    members: HashSet<T>,
    cap: usize,
}

impl<T: Clone + Eq + Hash> BoundedSet<T> {
    /// An empty set holding at most `cap` values.
    pub fn new(cap: usize) -> Self {
        Self {
            order: VecDeque::new(),
            members: HashSet::new(),
            cap,
        }
    }

    /// Adds `value`; forgets the oldest value when the set is then over its bound.
    pub fn insert(&mut self, value: T) {
        if self.cap == 0 || !self.members.insert(value.clone()) {
            return;
        }
        self.order.push_back(value);
        if self.order.len() > self.cap {
            if let Some(oldest) = self.order.pop_front() {
                self.members.remove(&oldest);
            }
        }
    }

    /// Whether `value` is held.
    pub fn contains(&self, value: &T) -> bool {
        self.members.contains(value)
    }

    /// How many values are held (≤ [`BoundedSet::cap`]).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The bound.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The values, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.order.iter()
    }
}

/// A scene's done set and failed pairs as the research record tells them, in record order,
/// for [`super::Core::restore`]. Built line by line with [`DoneState::read_line`]; holds at
/// most [`DONE_CAP`] subjects and [`FAILED_PAIRS_CAP`] pairs (the newest), so reading a long
/// record takes bounded memory.
#[derive(Debug, Clone)]
pub struct DoneState {
    /// Subjects whose part in the scene is over, oldest first.
    pub done: BoundedSet<SubjectId>,
    /// Pairs whose probe failed (smaller id first), oldest first.
    pub failed_pairs: BoundedSet<[SubjectId; 2]>,
    /// Lines that could not be read (not JSON, or a torn line).
    pub unreadable_lines: usize,
}

impl Default for DoneState {
    fn default() -> Self {
        Self {
            done: BoundedSet::new(DONE_CAP),
            failed_pairs: BoundedSet::new(FAILED_PAIRS_CAP),
            unreadable_lines: 0,
        }
    }
}

/// The fields of a record line that [`DoneState`] reads; the others are ignored.
#[derive(serde::Deserialize)]
struct RecordLine {
    event: String,
    #[serde(default)]
    subject_id: Option<SubjectId>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    players: Vec<SubjectId>,
    #[serde(default)]
    failed_pairs: Vec<[SubjectId; 2]>,
    #[serde(default)]
    outcome: Option<String>,
}

impl DoneState {
    /// The state a whole record gives (its lines, without their line ends).
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut state = Self::default();
        for line in lines {
            state.read_line(line);
        }
        state
    }

    /// Takes one line of `events.jsonl` into account (see the module docs for which lines
    /// count). Empty lines are skipped; a line that is not a JSON object of the record's shape
    /// is counted in [`DoneState::unreadable_lines`] and skipped.
    pub fn read_line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Ok(line) = serde_json::from_slice::<RecordLine>(line) else {
            self.unreadable_lines += 1;
            return;
        };
        let leave = serde_json::to_value(LeaveReason::Leave).ok();
        let is = |kind: ResearchEventKind| line.event == kind.as_str();
        let final_outcome = is(ResearchEventKind::ParticipantOutcome)
            && line
                .outcome
                .as_deref()
                .is_some_and(|o| o != pairlab_shared::Outcome::ENTRY_REFUSED);
        if final_outcome
            || is(ResearchEventKind::WaitroomTimeout)
            || (is(ResearchEventKind::ParticipantLeft)
                && line.reason.map(serde_json::Value::String) == leave)
        {
            if let Some(subject) = line.subject_id {
                self.done.insert(subject);
            }
        } else if is(ResearchEventKind::GameCreated) {
            for player in line.players {
                self.done.insert(player);
            }
        } else if is(ResearchEventKind::MatchRejected) {
            for [a, b] in line.failed_pairs {
                let pair = if a <= b { [a, b] } else { [b, a] };
                self.failed_pairs.insert(pair);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::SeededIds;

    fn sid(s: &str) -> SubjectId {
        SubjectId::parse(s).expect("valid id")
    }

    #[test]
    fn bounded_set_forgets_the_oldest_beyond_its_cap() {
        let mut s = BoundedSet::new(3);
        for v in [1, 2, 2, 3, 4] {
            s.insert(v);
        }
        assert_eq!(s.len(), 3);
        assert!(!s.contains(&1), "the oldest is forgotten");
        assert!(s.contains(&2) && s.contains(&3) && s.contains(&4));
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
        let mut none = BoundedSet::new(0);
        none.insert(1);
        assert!(none.is_empty());
    }

    #[test]
    fn fingerprints_depend_on_the_key_and_pairs_on_no_order() {
        let a = SubjectHasher::from_ids(&mut SeededIds::new(1));
        let b = SubjectHasher::from_ids(&mut SeededIds::new(2));
        let same = SubjectHasher::from_ids(&mut SeededIds::new(1));
        let x = sid("5f1a2b3c4d5e6f7a8b9c0d1e");
        assert_eq!(a.fingerprint(&x), same.fingerprint(&x));
        assert_ne!(a.fingerprint(&x), b.fingerprint(&x));
        assert_ne!(a.fingerprint(&x), a.fingerprint(&sid("other")));
        assert_eq!(a.pair(&x, &sid("y")), a.pair(&sid("y"), &x));
        assert_ne!(a.pair(&x, &sid("y")), a.pair(&x, &sid("z")));
        assert_ne!(a.pair(&x, &sid("y")), a.fingerprint(&x));
    }

    /// Which record lines make a subject done or a pair failed; a torn line and other events
    /// are skipped.
    #[test]
    fn the_record_gives_the_done_set_and_the_failed_pairs() {
        let record = concat!(
            r#"{"ts":"t","event":"participant_joined","scene_id":"s","subject_id":"J","resumed":false}"#,
            "\n",
            r#"{"ts":"t","event":"participant_left","scene_id":"s","subject_id":"L","reason":"leave"}"#,
            "\n",
            r#"{"ts":"t","event":"participant_left","scene_id":"s","subject_id":"G","reason":"grace_expired"}"#,
            "\n",
            r#"{"ts":"t","event":"waitroom_timeout","scene_id":"s","subject_id":"T","waited_ms":1.0}"#,
            "\n",
            r#"{"ts":"t","event":"game_created","scene_id":"s","game_id":"g","players":["P","Q"],"p2p_rtts_ms":[]}"#,
            "\n",
            r#"{"ts":"t","event":"match_rejected","scene_id":"s","members":["Y","X"],"reason":"rtt_too_high","failed_pairs":[["Y","X"]]}"#,
            "\n",
            r#"{"ts":"t","event":"participant_outcome","scene_id":"s","subject_id":"F","outcome":"completed"}"#,
            "\n",
            r#"{"ts":"t","event":"participant_outcome","scene_id":"s","subject_id":"R","outcome":"entry_refused"}"#,
            "\n\n",
            r#"{"ts":"t","event":"participant_left","scene_id":"s","subj"#,
        );
        let state = DoneState::from_lines(record.as_bytes().split(|b| *b == b'\n'));
        let done: Vec<&str> = state.done.iter().map(SubjectId::as_str).collect();
        assert_eq!(done, vec!["L", "T", "P", "Q", "F"], "finished, not refused");
        let pairs: Vec<[&str; 2]> = state
            .failed_pairs
            .iter()
            .map(|[a, b]| [a.as_str(), b.as_str()])
            .collect();
        assert_eq!(pairs, vec![["X", "Y"]], "smaller id first");
        assert_eq!(state.unreadable_lines, 1, "the torn last line");
    }
}
