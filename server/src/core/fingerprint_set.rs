//! A compact, bounded set of 64-bit fingerprints: the form a scene's done set and failed pairs
//! are kept in (see [`super::remembered`] for what they hold and how the record rebuilds them).
//!
//! How its parts fit. A value is kept as its top [`KEPT_BITS`] (43) bits, its *prefix*: two
//! values with the same prefix are the same to the set (the stated false positive below).
//! - the newest prefixes, fewer than [`SEAL_AT`] (4,096), are a sorted `Vec<u64>`;
//! - every [`SEAL_AT`] inserts they are merged into the newest *era*: an Elias–Fano encoding
//!   ([`vers_vecs::EliasFanoVec`]) of up to [`ERA_VALUES`] (65,536) sorted prefixes. A full era
//!   is closed and the next insert opens a new one;
//! - beyond the cap, the oldest era is forgotten once the newest `cap` values lie in the others.
//!
//! Why Elias–Fano (Elias 1974, Fano 1971): `n` sorted values from a universe `u` take
//! `n·⌈log₂(u/n)⌉ + 2n` bits plus a rank/select index, and a membership question is one
//! predecessor query. For a full era of 43-bit prefixes that is 3.64 bytes a value (measured:
//! vers' index included), against 4.25 for the sealed blocks of 32-bit bucket remainders it
//! replaced (BENCHMARKS.md, `churn`), and within 9 % of the least any exact set of 65,536 such
//! prefixes can take (`log₂ C(2⁴³, n) / n` ≈ 3.35 bytes). Larger eras would be smaller still
//! (3.43 bytes at 200,000) but would forget in coarser steps and rebuild more at a time.

use std::collections::VecDeque;

use vers_vecs::EliasFanoVec;

/// The bits of a fingerprint the set keeps: its top 43. Two fingerprints equal in them are the
/// same to the set (the false positive stated on [`FingerprintSet`]).
pub const KEPT_BITS: u32 = 43;

/// Newest prefixes gathered (sorted, 8 bytes each) before they are merged into the newest era:
/// 4,096 (32 KiB at most).
pub const SEAL_AT: usize = 4_096;

/// The prefixes an era holds when it is closed: 65,536 (16 merges of [`SEAL_AT`]). The set
/// forgets an era at a time, so it holds up to this many values beyond its cap.
pub const ERA_VALUES: usize = 16 * SEAL_AT;

/// Heap bytes a value costs at most, in any era, as a fraction: 4.2 (an era of one merge, 4,096
/// prefixes, takes 4.16 bytes each; a full era 3.64). The newest, not yet merged, take 8.
pub const ERA_BYTES_PER_VALUE_MAX: (usize, usize) = (42, 10);

/// Heap bytes a value costs at most in a full era, as a fraction: 3.7 (3.64 measured).
pub const FULL_ERA_BYTES_PER_VALUE_MAX: (usize, usize) = (37, 10);

/// What the set keeps of `value`: its top [`KEPT_BITS`] bits.
fn prefix(value: u64) -> u64 {
    value >> (64 - KEPT_BITS)
}

/// A set of 64-bit fingerprints (random-looking values such as
/// [`super::remembered::SubjectHasher::fingerprint`]) that holds at least the newest `cap`
/// values in 3.6–4.2 bytes each, at the price of a small, stated false-positive rate.
///
/// **Shape and bound**: see the module docs. When full it holds between `cap` and
/// `cap + ERA_VALUES` values; its heap is at most
/// `3.7 × (cap + ERA_VALUES) + 0.5 × ERA_VALUES + 8 × SEAL_AT` bytes plus the era list
/// (1.25 MB for a cap of 250,000, [`FingerprintSet::heap_bound`]);
/// [`FingerprintSet::heap_bytes`] says what it holds now.
///
/// **No false negatives**: every value among the newest `cap` inserted is found.
/// **False positives**: a value never inserted is found when its top 43 bits equal those of a
/// held value. For uniformly random fingerprints that has probability at most
/// `len / 2⁴³` per lookup (`len` = [`FingerprintSet::len`]): 2.3 × 10⁻⁸ with 200,000 values,
/// 3.6 × 10⁻⁸ when a cap of 250,000 is full — about one wrong answer in 28 million lookups.
///
/// **Cost** (release build, this project's machine): a lookup is a binary search of the newest
/// and one predecessor query per era (at most 5 for a cap of 250,000): 0.5 µs with 5 eras. Every
/// [`SEAL_AT`]-th insert rebuilds the newest era from its prefixes and the newest (≤ 65,536
/// values: at most 3 ms); the others insert into a sorted vector of at most 4,096. 300,000
/// inserts took 0.23 s in all (0.8 µs each).
#[derive(Debug, Clone)]
pub struct FingerprintSet {
    /// Eras, oldest first; the last is open while it holds fewer than [`ERA_VALUES`].
    eras: VecDeque<EliasFanoVec>,
    /// The newest prefixes, ascending, fewer than [`SEAL_AT`].
    newest: Vec<u64>,
    /// Values held, in all.
    len: usize,
    cap: usize,
}

impl FingerprintSet {
    /// An empty set that keeps at least the newest `cap` values.
    pub fn new(cap: usize) -> Self {
        Self {
            eras: VecDeque::new(),
            newest: Vec::new(),
            len: 0,
            cap,
        }
    }

    /// The most heap a set of this `cap` holds, bytes: `cap + ERA_VALUES` values in full eras
    /// ([`FULL_ERA_BYTES_PER_VALUE_MAX`]), the open era's extra ([`ERA_BYTES_PER_VALUE_MAX`] for
    /// up to [`ERA_VALUES`]), the newest at 8 bytes, and the era list.
    pub fn heap_bound(cap: usize) -> usize {
        let (full, den) = FULL_ERA_BYTES_PER_VALUE_MAX;
        let (any, _) = ERA_BYTES_PER_VALUE_MAX;
        let eras = (cap + ERA_VALUES).div_ceil(ERA_VALUES) + 1;
        (cap + ERA_VALUES) * full / den
            + ERA_VALUES * (any - full) / den
            + SEAL_AT * std::mem::size_of::<u64>()
            + eras.next_power_of_two() * std::mem::size_of::<EliasFanoVec>()
    }

    /// Adds `value`; forgets the oldest era when the newest `cap` values lie in the others.
    pub fn insert(&mut self, value: u64) {
        let prefix = prefix(value);
        if self.cap == 0 || self.in_eras(prefix) {
            return;
        }
        let Err(at) = self.newest.binary_search(&prefix) else {
            return;
        };
        self.newest.insert(at, prefix);
        self.len += 1;
        if self.newest.len() >= SEAL_AT {
            self.seal();
        }
        while let Some(oldest) = self.eras.front() {
            if self.len - oldest.len() < self.cap {
                break;
            }
            self.len -= oldest.len();
            self.eras.pop_front();
        }
    }

    /// Merges the newest into the open era, or opens a new era with them.
    fn seal(&mut self) {
        let newest = std::mem::take(&mut self.newest);
        let era = match self.eras.back() {
            Some(open) if open.len() + newest.len() <= ERA_VALUES => {
                // The two are disjoint (an insert checks the eras first) and each ascending.
                let mut merged = Vec::with_capacity(open.len() + newest.len());
                let mut held = open.iter().peekable();
                for &new in &newest {
                    while let Some(old) = held.next_if(|&old| old < new) {
                        merged.push(old);
                    }
                    merged.push(new);
                }
                merged.extend(held);
                self.eras.pop_back();
                merged
            }
            _ => newest,
        };
        // The encoder grows its index vectors by pushing; a clone allocates each at its length
        // (up to 8 % less heap for some sizes, measured).
        self.eras.push_back(EliasFanoVec::from_slice(&era).clone());
    }

    /// Whether a held era has `prefix`.
    fn in_eras(&self, prefix: u64) -> bool {
        self.eras
            .iter()
            .rev()
            .any(|era| era.predecessor(prefix) == Some(prefix))
    }

    /// Whether `value` is held: always when it is among the newest `cap` inserted; for a value
    /// never inserted, with the probability stated on [`FingerprintSet`].
    pub fn contains(&self, value: u64) -> bool {
        let prefix = prefix(value);
        self.newest.binary_search(&prefix).is_ok() || self.in_eras(prefix)
    }

    /// How many values are held (between `cap` and `cap + ERA_VALUES` when full).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The heap the set holds, bytes: its eras, the newest values and the era list.
    pub fn heap_bytes(&self) -> usize {
        self.eras.iter().map(EliasFanoVec::heap_size).sum::<usize>()
            + self.eras.capacity() * std::mem::size_of::<EliasFanoVec>()
            + self.newest.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::remembered::{mix_pair, DONE_CAP};
    use std::collections::BTreeSet;

    /// Random-looking distinct 64-bit values (SplitMix64 of `i`, a bijection).
    fn value(i: u64) -> u64 {
        mix_pair(i, i)
    }

    #[test]
    fn keeps_the_newest_cap_values_in_a_bounded_heap() {
        let cap = 3 * ERA_VALUES + 10;
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
        assert!(s.heap_bytes() <= FingerprintSet::heap_bound(cap));
        // One more era's worth: the oldest era goes, the newest `cap` stay.
        let more = cap as u64 + ERA_VALUES as u64;
        for i in cap as u64..more {
            s.insert(value(i));
        }
        assert!(s.len() >= cap && s.len() <= cap + ERA_VALUES, "{}", s.len());
        assert!((more - cap as u64..more).all(|i| s.contains(value(i))));
        assert!(!s.contains(value(0)), "the oldest era is forgotten");
        assert!(s.heap_bytes() <= FingerprintSet::heap_bound(cap));
        let mut none = FingerprintSet::new(0);
        none.insert(1);
        assert!(none.is_empty() && !none.contains(1));
    }

    /// Every size an era goes through stays within the stated bytes a value, and a full era
    /// takes the 3.64 the module docs state.
    #[test]
    fn every_era_size_is_within_its_bytes_per_value() {
        let (num, den) = ERA_BYTES_PER_VALUE_MAX;
        let mut s = FingerprintSet::new(usize::MAX);
        let mut i = 0u64;
        for merges in 1..=16 {
            while s.len() < merges * SEAL_AT {
                s.insert(value(i));
                i += 1;
            }
            assert!(s.newest.is_empty() && s.eras.len() == 1);
            let era_bytes = s.eras[0].heap_size();
            assert!(
                era_bytes * den <= s.len() * num,
                "{merges} merges: {era_bytes} bytes for {}",
                s.len()
            );
        }
        let (num, den) = FULL_ERA_BYTES_PER_VALUE_MAX;
        let full = s.eras[0].heap_size();
        assert!(full * den <= ERA_VALUES * num, "{full} bytes, full");
        assert!(
            full * 100 >= ERA_VALUES * 360,
            "{full} bytes: the docs say 3.64 a value"
        );
    }

    /// A full done set stays within the bound its docs state (1.25 MB), and answers as they
    /// say: every value held is found, and values never inserted almost never are.
    #[test]
    fn a_full_done_set_holds_its_bound_and_false_positive_rate() {
        let mut s = FingerprintSet::new(DONE_CAP);
        let inserted = DONE_CAP as u64 + 90_000;
        for i in 0..inserted {
            s.insert(value(i));
        }
        assert!(
            s.len() >= DONE_CAP && s.len() <= DONE_CAP + ERA_VALUES,
            "{}",
            s.len()
        );
        assert!(FingerprintSet::heap_bound(DONE_CAP) <= 1_250_000);
        assert!(
            s.heap_bytes() <= FingerprintSet::heap_bound(DONE_CAP),
            "{}",
            s.heap_bytes()
        );
        let first = inserted - DONE_CAP as u64;
        assert!((first..inserted).all(|i| s.contains(value(i))));
        // 1,000,000 values never inserted: ≤ len / 2⁴³ each, ~0.04 expected in all.
        let wrong = (0..1_000_000u64)
            .filter(|i| s.contains(value(u64::MAX - i)))
            .count();
        assert!(wrong <= 1, "{wrong} false positives");
    }

    /// The set keeps exactly the top 43 bits of a value, before and after it is merged into an
    /// era: a value equal to a held one in them is found (the stated false positive), one that
    /// differs in the 43rd bit is not.
    #[test]
    fn keeps_the_top_43_bits() {
        let base = value(7);
        let below = 1u64 << (64 - KEPT_BITS); // the highest bit not kept
        let check = |s: &FingerprintSet| {
            assert!(s.contains(base));
            assert!(
                s.contains(base ^ (below - 1)),
                "the low 21 bits are not kept"
            );
            assert!(!s.contains(base ^ below), "bit 21 is");
            assert!(!s.contains(base ^ (1 << 63)), "so is the top bit");
        };
        let mut s = FingerprintSet::new(4 * ERA_VALUES);
        s.insert(base);
        check(&s);
        for i in 100..100 + SEAL_AT as u64 {
            s.insert(value(i));
        }
        assert_eq!((s.len(), s.newest.len()), (SEAL_AT + 1, 1));
        check(&s);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Against a plain set of the same prefixes: the same length and the same answer for
        /// every value, held or not, across merges into the open era (forgetting is the test
        /// above's: it needs more than one full era).
        #[test]
        fn answers_as_a_plain_set_of_prefixes_does(
            seeds in proptest::collection::vec(0u64..40_000, 1..12_000),
        ) {
            let mut s = FingerprintSet::new(usize::MAX);
            let mut plain = BTreeSet::new();
            for &seed in &seeds {
                s.insert(value(seed));
                plain.insert(prefix(value(seed)));
            }
            proptest::prop_assert_eq!(s.len(), plain.len());
            for seed in 0..40_000u64 {
                let v = value(seed);
                proptest::prop_assert_eq!(s.contains(v), plain.contains(&prefix(v)), "{}", seed);
            }
        }
    }
}
