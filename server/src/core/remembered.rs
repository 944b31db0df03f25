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
//! newest [`DONE_CAP`] subjects and the newest [`FAILED_PAIRS_CAP`] pairs per scene, kept in
//! sealed blocks of 43-bit quotients at 4.25 bytes a value (1.3 MB per set when full), the oldest
//! block forgotten beyond the cap.
//!
//! The price of the compact form is a stated false-positive rate: a subject never seen is
//! refused as done, or a pair never probed is kept apart, with probability at most
//! `len / 2⁴³` per question (`len` the set's size): with 200,000 done subjects
//! 2.3 × 10⁻⁸ per `hello` (one newcomer wrongly refused in ~44 million), with a full done set
//! 3.0 × 10⁻⁸. A remembered subject or pair is always found (no false negatives).
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

use super::ids::IdSource;
use super::research::{LeaveReason, ResearchEventKind};

/// The subjects a scene's done set keeps at least (the newest; up to [`FINGERPRINT_BLOCK`]
/// more); beyond it the oldest are forgotten (and could take part again). Sized for the largest
/// studies run on one server: 250,000 participants (1.3 MB at most, see [`FingerprintSet`]).
pub const DONE_CAP: usize = 250_000;

/// The failed pairs a scene remembers at least (the newest; up to [`FINGERPRINT_BLOCK`] more);
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

/// Fingerprints a [`FingerprintSet`] gathers (sorted, 8 bytes each) before it seals them into a
/// compact block: 16,384.
pub const FINGERPRINT_BLOCK: usize = 16_384;

/// A sealed block's buckets are named by a fingerprint's top `BUCKET_BITS` bits: 2,048 buckets
/// of 8 fingerprints on average in a full block.
pub const BUCKET_BITS: u32 = 11;

/// The bits of a fingerprint that a sealed block keeps: the bucket's [`BUCKET_BITS`] (implicit)
/// and the next 32 (stored): 43. Two fingerprints equal in their top 43 bits are the same to a
/// sealed block.
pub const KEPT_BITS: u32 = BUCKET_BITS + 32;

const BUCKETS: usize = 1 << BUCKET_BITS;

// A block's bucket starts are `u16`s.
const _: () = assert!(FINGERPRINT_BLOCK <= u16::MAX as usize);

/// A sealed block of a [`FingerprintSet`]: its fingerprints' top [`KEPT_BITS`] bits, as a
/// quotient filter without slack. The top [`BUCKET_BITS`] name the bucket (implicit, by
/// position); the next 32 are stored, sorted within the bucket.
#[derive(Debug, Clone)]
struct Block {
    /// Bucket `b` is `remainders[starts[b]..starts[b + 1]]` (`BUCKETS + 1` entries).
    starts: Box<[u16]>,
    /// The 32 bits after the bucket's, bucket by bucket, sorted within each.
    remainders: Box<[u32]>,
}

/// The bucket of `value` in a sealed block: its top [`BUCKET_BITS`] bits.
fn bucket(value: u64) -> usize {
    (value >> (64 - BUCKET_BITS)) as usize
}

/// What a sealed block stores of `value`: the 32 bits after its bucket's.
fn remainder(value: u64) -> u32 {
    // Truncation keeps exactly the 32 bits wanted.
    (value >> (64 - KEPT_BITS)) as u32
}

impl Block {
    /// The block of `sorted` (ascending, at most [`FINGERPRINT_BLOCK`] values).
    fn seal(sorted: &[u64]) -> Self {
        let mut starts = vec![0u16; BUCKETS + 1].into_boxed_slice();
        for &value in sorted {
            starts[bucket(value) + 1] += 1;
        }
        for b in 1..=BUCKETS {
            starts[b] += starts[b - 1];
        }
        Self {
            starts,
            // Ascending values are ascending by (bucket, remainder) too.
            remainders: sorted.iter().map(|&v| remainder(v)).collect(),
        }
    }

    /// Whether a value with the top [`KEPT_BITS`] bits of `value` was sealed here.
    fn contains(&self, value: u64) -> bool {
        let b = bucket(value);
        let range = usize::from(self.starts[b])..usize::from(self.starts[b + 1]);
        self.remainders[range]
            .binary_search(&remainder(value))
            .is_ok()
    }

    fn len(&self) -> usize {
        self.remainders.len()
    }

    fn heap_bytes(&self) -> usize {
        self.starts.len() * std::mem::size_of::<u16>()
            + self.remainders.len() * std::mem::size_of::<u32>()
    }
}

/// A set of 64-bit fingerprints (random-looking values such as [`SubjectHasher::fingerprint`])
/// that holds at least the newest `cap` values in about 4.25 bytes each, at the price of a
/// small, stated false-positive rate.
///
/// The newest values (fewer than [`FINGERPRINT_BLOCK`]) are kept whole, sorted; once there are
/// [`FINGERPRINT_BLOCK`] they are sealed into a block that keeps only their top [`KEPT_BITS`]
/// (43) bits: 2,048 implicit buckets by the top 11 bits, and the next 32 bits stored as a `u32`,
/// plus a `u16` bucket start per 8 values: 4.25 bytes a value. Beyond `cap` the oldest *block* is
/// forgotten once the newest `cap` values lie in the others, so the set holds between `cap` and
/// `cap + FINGERPRINT_BLOCK` values when full. Its heap is at most
/// `4.25 × (cap + FINGERPRINT_BLOCK) + 8 × FINGERPRINT_BLOCK` bytes plus the block list (1.3 MB
/// for a cap of 250,000); [`FingerprintSet::heap_bytes`] says what it holds now.
///
/// **No false negatives**: every value among the newest `cap` inserted is found.
/// **False positives**: a value never inserted is found when its top 43 bits equal those of a
/// sealed value. For uniformly random fingerprints that has probability at most
/// `len / 2⁴³` per lookup (`len` = [`FingerprintSet::len`]): 2.3 × 10⁻⁸ with 200,000 values,
/// 3.0 × 10⁻⁸ when a cap of 250,000 is full — about one wrong answer in 33 million lookups.
///
/// A lookup is a binary search of the newest values and, per block (at most 17 for a cap of
/// 250,000), one bucket of 8 values on average: well under a microsecond. An insert moves up to
/// 128 KiB of newest values. Inserting a value already found changes nothing.
#[derive(Debug, Clone)]
pub struct FingerprintSet {
    /// Sealed blocks, oldest first.
    blocks: VecDeque<Block>,
    /// The newest values, whole, ascending, fewer than [`FINGERPRINT_BLOCK`].
    newest: Vec<u64>,
    /// Values held, in all.
    len: usize,
    cap: usize,
}

impl FingerprintSet {
    /// An empty set that keeps at least the newest `cap` values.
    pub fn new(cap: usize) -> Self {
        Self {
            blocks: VecDeque::new(),
            newest: Vec::new(),
            len: 0,
            cap,
        }
    }

    /// Adds `value`; forgets the oldest block when the newest `cap` values lie in the others.
    pub fn insert(&mut self, value: u64) {
        if self.cap == 0 || self.blocks.iter().any(|b| b.contains(value)) {
            return;
        }
        let Err(at) = self.newest.binary_search(&value) else {
            return;
        };
        self.newest.insert(at, value);
        self.len += 1;
        if self.newest.len() >= FINGERPRINT_BLOCK {
            let newest = std::mem::take(&mut self.newest);
            self.blocks.push_back(Block::seal(&newest));
        }
        while let Some(oldest) = self.blocks.front() {
            if self.len - oldest.len() < self.cap {
                break;
            }
            self.len -= oldest.len();
            self.blocks.pop_front();
        }
    }

    /// Whether `value` is held: always when it is among the newest `cap` inserted; for a value
    /// never inserted, with the probability stated on [`FingerprintSet`].
    pub fn contains(&self, value: u64) -> bool {
        self.newest.binary_search(&value).is_ok()
            || self.blocks.iter().rev().any(|b| b.contains(value))
    }

    /// How many values are held (between `cap` and `cap + FINGERPRINT_BLOCK` when full).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The heap the set holds, bytes: its blocks, the newest values and the block list.
    pub fn heap_bytes(&self) -> usize {
        self.blocks.iter().map(Block::heap_bytes).sum::<usize>()
            + self.blocks.capacity() * std::mem::size_of::<Block>()
            + self.newest.capacity() * std::mem::size_of::<u64>()
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

    /// Random-looking distinct 64-bit values (SplitMix64 of `i`, a bijection).
    fn value(i: u64) -> u64 {
        mix_pair(i, i)
    }

    #[test]
    fn fingerprint_set_keeps_the_newest_cap_values_in_a_bounded_heap() {
        let cap = 3 * FINGERPRINT_BLOCK + 10;
        let mut s = FingerprintSet::new(cap);
        for i in 0..cap as u64 {
            s.insert(value(i));
            s.insert(value(i / 2)); // already held: nothing changes
        }
        assert_eq!(s.len(), cap);
        assert!(
            (0..cap as u64).all(|i| s.contains(value(i))),
            "no false negatives"
        );
        // 4.25 bytes a sealed value, 8 a newest one, and the block list.
        let bound = |len: usize| len * 17 / 4 + FINGERPRINT_BLOCK * 8 + 1024;
        assert!(s.heap_bytes() <= bound(cap), "{}", s.heap_bytes());
        // One more block's worth: the oldest block goes, the newest `cap` stay.
        let more = cap as u64 + FINGERPRINT_BLOCK as u64;
        for i in cap as u64..more {
            s.insert(value(i));
        }
        assert!(
            s.len() >= cap && s.len() <= cap + FINGERPRINT_BLOCK,
            "{}",
            s.len()
        );
        assert!((more - cap as u64..more).all(|i| s.contains(value(i))));
        assert!(!s.contains(value(0)), "the oldest block is forgotten");
        assert!(s.heap_bytes() <= bound(s.len()), "{}", s.heap_bytes());
        let mut none = FingerprintSet::new(0);
        none.insert(1);
        assert!(none.is_empty() && !none.contains(1));
    }

    /// A full done set stays within the bound its docs state (1.3 MB), and answers as they
    /// say: every value held is found, and values never inserted almost never are.
    #[test]
    fn a_full_done_set_holds_its_bound_and_false_positive_rate() {
        let mut s = FingerprintSet::new(DONE_CAP);
        for i in 0..DONE_CAP as u64 + 40_000 {
            s.insert(value(i));
        }
        assert!(
            s.len() >= DONE_CAP && s.len() <= DONE_CAP + FINGERPRINT_BLOCK,
            "{}",
            s.len()
        );
        assert!(s.heap_bytes() <= 1_300_000, "{}", s.heap_bytes());
        let first = DONE_CAP as u64 + 40_000 - DONE_CAP as u64;
        assert!((first..first + DONE_CAP as u64).all(|i| s.contains(value(i))));
        // 1,000,000 values never inserted: ≤ len / 2⁴³ each, ~0.03 expected in all.
        let wrong = (0..1_000_000u64)
            .filter(|i| s.contains(value(u64::MAX - i)))
            .count();
        assert!(wrong <= 1, "{wrong} false positives");
    }

    /// A sealed block keeps exactly the top 43 bits: a value equal to a sealed one in them is
    /// found (the stated false positive), one that differs in the 43rd bit is not; the newest
    /// values, not yet sealed, are compared whole.
    #[test]
    fn sealed_blocks_keep_the_top_43_bits() {
        let mut s = FingerprintSet::new(4 * FINGERPRINT_BLOCK);
        let base = value(7);
        s.insert(base);
        let below = 1u64 << (64 - KEPT_BITS); // the highest bit not kept
        assert!(!s.contains(base ^ below), "not sealed yet: whole values");
        for i in 100..100 + FINGERPRINT_BLOCK as u64 {
            s.insert(value(i));
        }
        assert_eq!(s.len(), FINGERPRINT_BLOCK + 1);
        assert!(s.contains(base));
        assert!(
            s.contains(base ^ (below - 1)),
            "the low 21 bits are not kept"
        );
        assert!(!s.contains(base ^ below), "bit 21 is");
        assert!(!s.contains(base ^ (1 << 63)), "so is the bucket's");
        assert!(
            !s.contains(base ^ (1 << (64 - BUCKET_BITS))),
            "and the bucket's lowest"
        );
        assert!(
            !s.contains(base ^ (1 << (63 - BUCKET_BITS))),
            "and the remainder's top"
        );
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
