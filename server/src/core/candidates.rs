//! The waiting set of one scene, indexed so that matching work per event is bounded.
//!
//! The waiting participants are kept in arrival order ([`WaitingSet::entries`]) and, beside
//! that, by server RTT: participants with a known, finite, non-negative RTT in buckets of
//! [`RTT_BUCKET_MS`] (each bucket an ordered set of arrival positions, plus a Fenwick tree of
//! the buckets' sizes), everyone else (unknown RTT; non-finite or negative ones) in two sets
//! that every search visits. With the matchmaker's [`Matchmaker::max_partner_rtt_ms`] that gives, per event:
//!
//! - a necessary condition for a group, in O(log) ([`WaitingSet::find_group`] returns at once
//!   when fewer than `group_size − 1` waiting participants could pass with the arriving one;
//!   [`WaitingSet::may_form_group`] says whether any group at all could pass the pre-filter,
//!   which is what a leave asks);
//! - when every RTT waiting is known, an exact necessary condition on the smallest RTTs, in
//!   O(log n + group size) (`order_gate`, over an ordered set of the RTTs): the buckets are
//!   4 ms wide, so a crowd whose RTTs sit within one bucket of the pre-filter's limit would
//!   otherwise look matchable to every leave, and each leave would re-check everyone;
//! - the greedy search itself, which visits only the participants whose bucket can still pass
//!   with every member taken so far, in arrival order.
//!
//! The search takes exactly the group the plain greedy scan takes (each candidate in arrival
//! order, taken when it passes the pre-filter and the failed-pairs rule with every member taken
//! so far): a participant is skipped without a check only when their bucket proves they fail
//! the pre-filter with a member. The differential test in this module's tests runs the plain
//! scan (kept there as the oracle) against this one on random event sequences.

use std::collections::{BTreeMap, BTreeSet};

use super::matchmaker::{Candidate, Matchmaker};
use super::Pid;

/// Width of one server-RTT bucket, ms.
pub const RTT_BUCKET_MS: f64 = 4.0;
/// Number of buckets: `[0, 4)`, `[4, 8)`, …; the last one holds every RTT from
/// `(RTT_BUCKETS − 1) × RTT_BUCKET_MS` (about 4 s) up.
pub const RTT_BUCKETS: usize = 1024;
/// A bucket is skipped only when its lower bound exceeds the limit by more than this, ms, so
/// floating-point rounding in a limit never skips a participant who passes.
const LIMIT_SLACK_MS: f64 = 1.0;
/// The rounding allowed when a limit is compared with one exact RTT (the order-statistic gate,
/// [`WaitingSet::may_form_group`]), ms: far above the rounding of a sum or difference of RTTs
/// (about 1e-12 ms for RTTs below an hour), far below any RTT that matters.
const EXACT_SLACK_MS: f64 = 1e-6;

/// An entry of a scene's waiting set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waiter {
    /// Who.
    pub pid: Pid,
    /// Their current server-RTT median, ms (`None`: unknown).
    pub rtt_ms: Option<f64>,
}

/// The bucket of a server RTT; `None` for an unknown, non-finite or negative one. Every RTT in bucket `b` is at least `b × RTT_BUCKET_MS` (up to rounding).
fn bucket_of(rtt_ms: Option<f64>) -> Option<usize> {
    match rtt_ms {
        Some(x) if x.is_finite() && x >= 0.0 => {
            Some(((x / RTT_BUCKET_MS) as usize).min(RTT_BUCKETS - 1))
        }
        _ => None,
    }
}

/// The last bucket whose participants may pass under `limit_ms` (`None`: none may); a NaN
/// limit is treated as −∞.
fn last_bucket_within(limit_ms: f64) -> Option<usize> {
    let reach = limit_ms + LIMIT_SLACK_MS;
    if reach.is_nan() || reach < 0.0 {
        return None;
    }
    let last = reach / RTT_BUCKET_MS;
    Some(if last >= (RTT_BUCKETS - 1) as f64 {
        RTT_BUCKETS - 1
    } else {
        last as usize
    })
}

/// The tighter of two limits, a NaN counting as −∞.
fn tighter(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NEG_INFINITY
    } else {
        a.min(b)
    }
}

/// Sizes of the buckets, with prefix sums in O(log [`RTT_BUCKETS`]) (a Fenwick tree).
#[derive(Clone)]
struct BucketCounts(Vec<u32>);

impl BucketCounts {
    fn new() -> Self {
        Self(vec![0; RTT_BUCKETS + 1])
    }

    fn add(&mut self, bucket: usize, delta: i32) {
        let mut i = bucket + 1;
        while i <= RTT_BUCKETS {
            self.0[i] = self.0[i].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// Participants in buckets `0..=last`.
    fn up_to(&self, last: usize) -> usize {
        let mut i = last.min(RTT_BUCKETS - 1) + 1;
        let mut sum = 0usize;
        while i > 0 {
            sum += self.0[i] as usize;
            i -= i & i.wrapping_neg();
        }
        sum
    }
}

/// The waiting set of one scene: by arrival position, and by server RTT (module docs).
#[derive(Clone)]
pub struct WaitingSet {
    by_seq: BTreeMap<u64, Waiter>,
    /// Arrival positions by RTT bucket; only non-empty buckets are present.
    buckets: BTreeMap<usize, BTreeSet<u64>>,
    counts: BucketCounts,
    /// Arrival positions of those whose RTT is unknown.
    unknown: BTreeSet<u64>,
    /// Arrival positions of those whose RTT is non-finite or negative (none in practice).
    unusual: BTreeSet<u64>,
    /// The bucketed (known, finite, non-negative) RTTs in ascending order, as
    /// `(f64::to_bits, arrival position)`: for non-negative floats the bits order as the
    /// values do. Gives the smallest RTTs waiting in O(log n + k) (the order-statistic gate).
    by_rtt: BTreeSet<(u64, u64)>,
}

/// The key of a bucketed RTT in [`WaitingSet::by_rtt`] (`-0.0` counted as `0.0`).
fn rtt_key(rtt_ms: f64) -> u64 {
    (rtt_ms + 0.0).to_bits()
}

impl Default for WaitingSet {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitingSet {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            by_seq: BTreeMap::new(),
            buckets: BTreeMap::new(),
            counts: BucketCounts::new(),
            unknown: BTreeSet::new(),
            unusual: BTreeSet::new(),
            by_rtt: BTreeSet::new(),
        }
    }

    /// Number of participants waiting.
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// The entry at arrival position `seq`.
    pub fn get(&self, seq: u64) -> Option<&Waiter> {
        self.by_seq.get(&seq)
    }

    /// Everyone waiting, in arrival order, with their arrival positions.
    pub fn entries(&self) -> impl Iterator<Item = (u64, &Waiter)> {
        self.by_seq.iter().map(|(seq, w)| (*seq, w))
    }

    fn index(&mut self, seq: u64, rtt_ms: Option<f64>) {
        match bucket_of(rtt_ms) {
            Some(b) => {
                self.buckets.entry(b).or_default().insert(seq);
                self.counts.add(b, 1);
                if let Some(x) = rtt_ms {
                    self.by_rtt.insert((rtt_key(x), seq));
                }
            }
            None if rtt_ms.is_none() => {
                self.unknown.insert(seq);
            }
            None => {
                self.unusual.insert(seq);
            }
        }
    }

    fn unindex(&mut self, seq: u64, rtt_ms: Option<f64>) {
        match bucket_of(rtt_ms) {
            Some(b) => {
                if let Some(set) = self.buckets.get_mut(&b) {
                    if set.remove(&seq) {
                        self.counts.add(b, -1);
                    }
                    if set.is_empty() {
                        self.buckets.remove(&b);
                    }
                }
                if let Some(x) = rtt_ms {
                    self.by_rtt.remove(&(rtt_key(x), seq));
                }
            }
            None if rtt_ms.is_none() => {
                self.unknown.remove(&seq);
            }
            None => {
                self.unusual.remove(&seq);
            }
        }
    }

    /// Puts `waiter` at arrival position `seq` (replacing whoever was there).
    pub fn insert(&mut self, seq: u64, waiter: Waiter) {
        self.remove(seq);
        self.index(seq, waiter.rtt_ms);
        self.by_seq.insert(seq, waiter);
    }

    /// Takes out whoever is at arrival position `seq`.
    pub fn remove(&mut self, seq: u64) -> Option<Waiter> {
        let w = self.by_seq.remove(&seq)?;
        self.unindex(seq, w.rtt_ms);
        Some(w)
    }

    /// The server RTT of the participant at `seq` changed.
    pub fn update_rtt(&mut self, seq: u64, rtt_ms: Option<f64>) {
        let Some(old) = self.by_seq.get(&seq).map(|w| w.rtt_ms) else {
            return;
        };
        // Re-indexed whenever it changes: the bucket, the unknown/unusual sets and the exact
        // order of `by_rtt` all depend on it.
        if old.map(f64::to_bits) != rtt_ms.map(f64::to_bits) {
            self.unindex(seq, old);
            self.index(seq, rtt_ms);
        }
        if let Some(w) = self.by_seq.get_mut(&seq) {
            w.rtt_ms = rtt_ms;
        }
    }

    /// How many participants may pass under `limit_ms` (all without a bucket, and the buckets
    /// the limit reaches): an upper bound on those who pass.
    fn count_within(&self, limit_ms: f64) -> usize {
        self.unknown.len()
            + self.unusual.len()
            + last_bucket_within(limit_ms).map_or(0, |b| self.counts.up_to(b))
    }

    /// Whether the participant at `seq` is counted by [`Self::count_within`] under `limit_ms`.
    fn within(&self, seq: u64, limit_ms: f64) -> bool {
        let Some(w) = self.by_seq.get(&seq) else {
            return false;
        };
        match bucket_of(w.rtt_ms) {
            None => true,
            Some(b) => last_bucket_within(limit_ms).is_some_and(|last| b <= last),
        }
    }

    /// The first participant after arrival position `after` (from the start when `None`) who
    /// may pass under `limit_ms`, in arrival order.
    fn next_within(&self, after: Option<u64>, limit_ms: f64) -> Option<(u64, Waiter)> {
        let from = after.map_or(0, |s| s.saturating_add(1));
        if after == Some(u64::MAX) {
            return None;
        }
        let last = last_bucket_within(limit_ms);
        if last == Some(RTT_BUCKETS - 1) {
            // Every bucket is reached: plain arrival order.
            return self.by_seq.range(from..).next().map(|(s, w)| (*s, *w));
        }
        let mut best = None;
        for set in [&self.unknown, &self.unusual] {
            if let Some(&s) = set.range(from..).next() {
                best = Some(best.map_or(s, |b: u64| b.min(s)));
            }
        }
        if let Some(last) = last {
            for set in self.buckets.range(..=last).map(|(_, set)| set) {
                if let Some(&s) = set.range(from..).next() {
                    best = Some(best.map_or(s, |b| b.min(s)));
                }
            }
        }
        best.and_then(|s| self.by_seq.get(&s).map(|w| (s, *w)))
    }

    /// Proposes a group of `group_size` for `arriving` (at arrival position `arriving_seq` if
    /// they wait): `arriving` first, then the waiting participants taken greedily in arrival
    /// order, each of which passes `mm`'s pre-filter with every member already taken and is
    /// `allowed` with each of them (pairs whose probe failed are never grouped again). Returns
    /// the chosen members' ids, `arriving` first; `None` when no full group forms.
    ///
    /// Work: O(log) when fewer than `group_size − 1` could pass with `arriving`; otherwise one
    /// ordered-set step per bucket the members' limits reach for each participant checked, and
    /// only participants who may pass are checked.
    pub fn find_group(
        &self,
        mm: &dyn Matchmaker,
        arriving: &Candidate,
        arriving_seq: Option<u64>,
        group_size: usize,
        allowed: &dyn Fn(Pid, Pid) -> bool,
    ) -> Option<Vec<Pid>> {
        if group_size < 2 {
            return None;
        }
        let mut limit = tighter(mm.max_partner_rtt_ms(arriving), f64::INFINITY);
        let arriving_counted = arriving_seq.is_some_and(|s| {
            self.by_seq.get(&s).is_some_and(|w| w.pid == arriving.id) && self.within(s, limit)
        });
        if self.count_within(limit) - usize::from(arriving_counted) < group_size - 1 {
            return None;
        }
        if let Some(x) = arriving
            .rtt_ms
            .filter(|_| bucket_of(arriving.rtt_ms).is_some())
        {
            // With everyone's RTT known: the arriving one with the `group_size − 1` smallest
            // RTTs of the others must pass the order-statistic gate.
            if self.unknown.is_empty() && self.unusual.is_empty() {
                let own_seq = arriving_seq
                    .filter(|s| self.by_seq.get(s).is_some_and(|w| w.pid == arriving.id));
                let mut rtts: Vec<f64> = self
                    .by_rtt
                    .iter()
                    .filter(|&&(_, seq)| Some(seq) != own_seq)
                    .take(group_size - 1)
                    .map(|&(bits, _)| f64::from_bits(bits))
                    .collect();
                rtts.push(x);
                rtts.sort_by(f64::total_cmp);
                if !order_gate(mm, &rtts) {
                    return None;
                }
            }
        }
        let mut group: Vec<Candidate> = Vec::with_capacity(group_size);
        group.push(*arriving);
        let mut cursor = None;
        while let Some((seq, w)) = self.next_within(cursor, limit) {
            cursor = Some(seq);
            if w.pid == arriving.id {
                continue;
            }
            let c = Candidate {
                id: w.pid,
                rtt_ms: w.rtt_ms,
            };
            let fits = group
                .iter()
                .all(|m| mm.pair_passes(m, &c) && allowed(m.id, c.id));
            if fits {
                group.push(c);
                if group.len() == group_size {
                    return Some(group.iter().map(|m| m.id).collect());
                }
                limit = tighter(limit, mm.max_partner_rtt_ms(&c));
            }
        }
        None
    }

    /// Whether some group of `group_size` waiting participants could pass `mm`'s pre-filter:
    /// `false` proves that [`Self::find_group`] finds nothing for anyone waiting, in O(log)
    /// (plus one step per waiting participant with an unusual RTT: non-finite or negative).
    ///
    /// Why it is enough: a group found for `a` has `group_size − 1` members besides `a` who pass
    /// with `a`, and `a` passes with one of them, so all `group_size` are within the largest
    /// limit anyone waiting has; [`Matchmaker::max_partner_rtt_ms`] does not grow with a
    /// known RTT, so that largest limit is the one of someone with an unknown or unusual RTT,
    /// or of the smallest known one.
    pub fn may_form_group(&self, mm: &dyn Matchmaker, group_size: usize) -> bool {
        if group_size < 2 || self.by_seq.len() < group_size {
            return false;
        }
        let limit_of = |rtt_ms: Option<f64>| {
            let l = mm.max_partner_rtt_ms(&Candidate {
                id: Pid::new(0),
                rtt_ms,
            });
            if l.is_nan() {
                f64::NEG_INFINITY
            } else {
                l
            }
        };
        let mut best = f64::NEG_INFINITY;
        if !self.unknown.is_empty() {
            best = best.max(limit_of(None));
        }
        for seq in &self.unusual {
            if let Some(w) = self.by_seq.get(seq) {
                best = best.max(limit_of(w.rtt_ms));
            }
        }
        // The smallest known RTT is at least its bucket's lower bound, whose limit is at least
        // as large (up to rounding, which the slack covers).
        if let Some(&b) = self.buckets.keys().next() {
            best = best.max(limit_of(Some(b as f64 * RTT_BUCKET_MS)));
        }
        if self.count_within(best) < group_size {
            return false;
        }
        if !(self.unknown.is_empty() && self.unusual.is_empty()) {
            return true;
        }
        // Everyone's RTT is known: the exact order-statistic gate on the smallest RTTs.
        let rtts: Vec<f64> = self
            .by_rtt
            .iter()
            .take(group_size)
            .map(|&(bits, _)| f64::from_bits(bits))
            .collect();
        order_gate(mm, &rtts)
    }
}

/// The order-statistic gate: `rtts_ms` are the `g` smallest known RTTs among those who could
/// form a group (ascending, `g ≥ 2`); `false` proves no group of `g` of them passes `mm`'s
/// pre-filter. Why: sort a group that passes as `s₁ ≤ … ≤ s_g`; its pair `(s_{g−1}, s_g)`
/// passes, so `s_g ≤ L(s_{g−1})` with `L` = [`Matchmaker::max_partner_rtt_ms`]; the `i`-th
/// smallest of a subset is at least the `i`-th smallest of all (`s_i ≥ r_i`) and `L` does not
/// grow with the RTT, so `r_g ≤ s_g ≤ L(s_{g−1}) ≤ L(r_{g−1})`. O(1) once the RTTs are taken.
fn order_gate(mm: &dyn Matchmaker, rtts_ms: &[f64]) -> bool {
    let [.., second_largest, largest] = rtts_ms else {
        return true;
    };
    let limit = mm.max_partner_rtt_ms(&Candidate {
        id: Pid::new(0),
        rtt_ms: Some(*second_largest),
    });
    if limit.is_nan() {
        return false;
    }
    *largest <= limit + EXACT_SLACK_MS
}

#[cfg(test)]
mod tests;
