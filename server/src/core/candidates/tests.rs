//! The differential test: the plain greedy scan and "retry everyone on a leave" (the matching
//! of the waitroom before it was indexed, kept here as the oracle) against the waitroom's
//! indexed search and its `may_form_group` gate, on random event sequences. Both sides must
//! propose the same groups, in the same order, with the members in the same order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::config::{MatchmakerKind, SceneConfig};
use crate::core::matchmaker::{FifoMatchmaker, LatencyFifoMatchmaker};
use crate::core::remembered::SubjectHasher;
use crate::core::waitroom::SceneWaitroom;
use pairlab_shared::SubjectId;

/// The oracle: the greedy scan as it was — every waiting candidate in arrival order, taken when
/// it passes the pre-filter and is allowed with every member already taken.
fn greedy_group(
    mm: &dyn Matchmaker,
    arriving: &Candidate,
    waiting: &mut dyn Iterator<Item = Candidate>,
    group_size: usize,
    allowed: &dyn Fn(Pid, Pid) -> bool,
) -> Option<Vec<Pid>> {
    if group_size < 2 {
        return None;
    }
    let mut group: Vec<Candidate> = Vec::with_capacity(group_size);
    group.push(*arriving);
    for c in waiting {
        if c.id == arriving.id {
            continue;
        }
        let fits = group
            .iter()
            .all(|m| mm.pair_passes(m, &c) && allowed(m.id, c.id));
        if fits {
            group.push(c);
            if group.len() == group_size {
                return Some(group.iter().map(|m| m.id).collect());
            }
        }
    }
    None
}

/// The oracle's waitroom: the waiting set in arrival order, the failed pairs, and the router's
/// old rules (an arrival tries itself; a leave in a scene of groups larger than two retries
/// everyone waiting, in arrival order).
struct Oracle {
    mm: Box<dyn Matchmaker>,
    group_size: usize,
    waiting: BTreeMap<u64, Candidate>,
    failed: HashSet<(u64, u64)>,
}

impl Oracle {
    fn allowed(&self, a: Pid, b: Pid) -> bool {
        let (x, y) = (a.get().min(b.get()), a.get().max(b.get()));
        !self.failed.contains(&(x, y))
    }

    /// The waiting participant at index `i` (modulo how many wait), in arrival order.
    fn nth_waiting(&self, i: usize) -> Pid {
        let i = i % self.waiting.len().max(1);
        self.waiting.values().nth(i).expect("in range").id
    }

    /// The group the plain scan finds for `anchor`, who waits.
    fn find(&self, anchor: Pid, seq_of: &HashMap<Pid, u64>) -> Option<Vec<Pid>> {
        let arriving = *self.waiting.get(seq_of.get(&anchor)?)?;
        greedy_group(
            &*self.mm,
            &arriving,
            &mut self.waiting.values().copied(),
            self.group_size,
            &|a, b| self.allowed(a, b),
        )
    }

    fn try_match(&mut self, anchor: Pid, seq_of: &HashMap<Pid, u64>) -> Option<Vec<Pid>> {
        let group = self.find(anchor, seq_of)?;
        for pid in &group {
            self.waiting.remove(&seq_of[pid]);
        }
        Some(group)
    }

    fn retry_all(&mut self, seq_of: &HashMap<Pid, u64>, out: &mut Vec<Vec<Pid>>) {
        if self.group_size > 2 {
            let pids: Vec<Pid> = self.waiting.values().map(|c| c.id).collect();
            for pid in pids {
                out.extend(self.try_match(pid, seq_of));
            }
        }
    }
}

/// The waitroom under test, driven as the router drives it.
struct Indexed {
    wr: SceneWaitroom,
    subjects: HashMap<Pid, SubjectId>,
}

impl Indexed {
    fn try_match(&mut self, now: Instant, anchor: Pid) -> Option<Vec<Pid>> {
        let w = *self.wr.waiter(anchor)?;
        let arriving = Candidate {
            id: anchor,
            rtt_ms: w.rtt_ms,
        };
        let subjects = &self.subjects;
        let group = self.wr.find_match(&arriving, &|p| subjects.get(&p))?;
        for &pid in &group {
            self.wr.remove(now, pid);
        }
        Some(group)
    }

    fn retry_if_groups(&mut self, now: Instant, out: &mut Vec<Vec<Pid>>) {
        if self.wr.cfg().group_size > 2 && self.wr.may_form_group() {
            for pid in self.wr.waiting_pids() {
                out.extend(self.try_match(now, pid));
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A new participant enters with this server RTT and is matched.
    Arrive(Option<f64>),
    /// A member of an earlier proposed group returns to waiting (their place kept) and is
    /// matched, as after a rejected probe.
    Return(usize),
    /// Someone waiting leaves (or drops, or times out): retry if groups are larger than two.
    Leave(usize),
    /// Someone waiting gets a new server-RTT median (no matching).
    Rtt(usize, Option<f64>),
    /// A pair's probe failed: never grouped again.
    Fail(usize, usize),
}

fn rtt() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        1 => Just(None),
        1 => prop::sample::select(vec![
            0.0, 3.999, 4.0, 8.0, 49.0, 50.0, 50.5, 51.0, 99.0, 100.0, 101.0, 150.0, 199.0,
            200.0, 4100.0, 1e9, f64::NAN, f64::INFINITY, -1.0,
        ]).prop_map(Some),
        4 => (0.0f64..250.0).prop_map(Some),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => rtt().prop_map(Op::Arrive),
        1 => any::<usize>().prop_map(Op::Return),
        3 => any::<usize>().prop_map(Op::Leave),
        2 => (any::<usize>(), rtt()).prop_map(|(i, r)| Op::Rtt(i, r)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Fail(a, b)),
    ]
}

fn run(kind: MatchmakerKind, max_server_rtt_ms: f64, group_size: u32, ops: &[Op]) {
    let mut cfg = SceneConfig::with_defaults("diff", group_size, kind);
    cfg.max_server_rtt_ms = Some(max_server_rtt_ms);
    cfg.hide_lobby_count = true;
    let mm: Box<dyn Matchmaker> = match kind {
        MatchmakerKind::Fifo => Box::new(FifoMatchmaker),
        MatchmakerKind::LatencyFifo => Box::new(LatencyFifoMatchmaker { max_server_rtt_ms }),
        // Its waiting set's search is the same as latency_fifo's (the differential test runs
        // the two others only; p2p_matrix groups on measurements, core::matrix).
        MatchmakerKind::P2pMatrix => Box::new(LatencyFifoMatchmaker { max_server_rtt_ms }),
    };
    let now = Instant::now();
    let hasher = SubjectHasher::with_key(b"differential test key 0123456789");
    let mut oracle = Oracle {
        mm,
        group_size: group_size as usize,
        waiting: BTreeMap::new(),
        failed: HashSet::new(),
    };
    let mut indexed = Indexed {
        wr: SceneWaitroom::new(&cfg, hasher),
        subjects: HashMap::new(),
    };
    let mut seq_of: HashMap<Pid, u64> = HashMap::new();
    let mut rtt_of: HashMap<Pid, Option<f64>> = HashMap::new();
    let mut everyone: Vec<Pid> = Vec::new();
    let mut proposed: Vec<Pid> = Vec::new();
    let (mut want, mut got) = (Vec::new(), Vec::new());
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Arrive(rtt_ms) => {
                let pid = Pid::new(everyone.len() as u64 + 1);
                everyone.push(pid);
                let subject = SubjectId::parse(format!("s{}", pid.get())).expect("valid id");
                indexed.subjects.insert(pid, subject);
                indexed.wr.admit(now, pid);
                let seq = indexed.wr.arrival_seq(pid).expect("admitted");
                seq_of.insert(pid, seq);
                rtt_of.insert(pid, rtt_ms);
                oracle.waiting.insert(seq, Candidate { id: pid, rtt_ms });
                indexed.wr.insert(now, pid, rtt_ms);
                want.extend(oracle.try_match(pid, &seq_of));
                got.extend(indexed.try_match(now, pid));
            }
            Op::Return(i) if !proposed.is_empty() => {
                let pid = proposed.swap_remove(i % proposed.len());
                let rtt_ms = rtt_of[&pid];
                oracle
                    .waiting
                    .insert(seq_of[&pid], Candidate { id: pid, rtt_ms });
                indexed.wr.insert(now, pid, rtt_ms);
                want.extend(oracle.try_match(pid, &seq_of));
                got.extend(indexed.try_match(now, pid));
            }
            Op::Leave(i) if !oracle.waiting.is_empty() => {
                let pid = oracle.nth_waiting(i);
                oracle.waiting.remove(&seq_of[&pid]);
                indexed.wr.remove(now, pid);
                oracle.retry_all(&seq_of, &mut want);
                indexed.retry_if_groups(now, &mut got);
            }
            Op::Rtt(i, rtt_ms) if !oracle.waiting.is_empty() => {
                let pid = oracle.nth_waiting(i);
                rtt_of.insert(pid, rtt_ms);
                if let Some(c) = oracle.waiting.get_mut(&seq_of[&pid]) {
                    c.rtt_ms = rtt_ms;
                }
                indexed.wr.update_rtt(pid, rtt_ms);
            }
            Op::Fail(a, b) if everyone.len() >= 2 => {
                let (a, b) = (everyone[a % everyone.len()], everyone[b % everyone.len()]);
                if a != b {
                    oracle
                        .failed
                        .insert((a.get().min(b.get()), a.get().max(b.get())));
                    let pair = [indexed.subjects[&a].clone(), indexed.subjects[&b].clone()];
                    indexed.wr.remember_failed_pair(&pair);
                }
            }
            _ => {}
        }
        assert_eq!(got, want, "step {step}: {op:?}");
        proposed.extend(got.drain(..).flatten());
        want.clear();
        // The gate is sound on its own: when it says no group can form, the oracle finds none
        // for anyone waiting.
        if !indexed.wr.may_form_group() {
            let pids: Vec<Pid> = oracle.waiting.values().map(|c| c.id).collect();
            for pid in pids {
                let arriving = oracle.waiting[&seq_of[&pid]];
                let found = greedy_group(
                    &*oracle.mm,
                    &arriving,
                    &mut oracle.waiting.values().copied(),
                    oracle.group_size,
                    &|x, y| oracle.allowed(x, y),
                );
                assert_eq!(
                    found, None,
                    "step {step}: the gate missed a group for {pid}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn latency_fifo_matches_the_plain_scan(
        group_size in 2u32..6,
        max in prop::sample::select(vec![0.001, 100.0, 200.0, 250.5, 1e12]),
        ops in prop::collection::vec(op(), 0..160),
    ) {
        run(MatchmakerKind::LatencyFifo, max, group_size, &ops);
    }

    #[test]
    fn fifo_matches_the_plain_scan(
        group_size in 2u32..8,
        ops in prop::collection::vec(op(), 0..160),
    ) {
        run(MatchmakerKind::Fifo, f64::INFINITY, group_size, &ops);
    }
}

#[test]
fn buckets_count_and_skip_only_who_cannot_pass() {
    let mm = LatencyFifoMatchmaker {
        max_server_rtt_ms: 100.0,
    };
    let mut set = WaitingSet::new();
    for (seq, rtt) in [(0, 90.0), (1, 95.0), (2, 49.0), (3, 50.0)] {
        set.insert(
            seq,
            Waiter {
                pid: Pid::new(seq + 1),
                rtt_ms: Some(rtt),
            },
        );
    }
    let arriving = Candidate {
        id: Pid::new(9),
        rtt_ms: Some(50.0),
    };
    let any = |_: Pid, _: Pid| true;
    // 50 + 49 and 50 + 50 pass; 90 and 95 are skipped by their buckets.
    assert_eq!(
        set.find_group(&mm, &arriving, None, 3, &any),
        Some(vec![Pid::new(9), Pid::new(3), Pid::new(4)])
    );
    assert_eq!(set.find_group(&mm, &arriving, None, 4, &any), None);
    assert!(set.may_form_group(&mm, 2), "49 + 50 ≤ 100");
    set.update_rtt(2, Some(60.0));
    assert!(
        !set.may_form_group(&mm, 2),
        "the smallest two now sum to 110"
    );
    assert_eq!(
        set.find_group(&mm, &arriving, None, 2, &any),
        Some(vec![Pid::new(9), Pid::new(4)]),
        "the arriving one (50) is not in the set: 50 + 50 passes"
    );
    let far = Candidate {
        id: Pid::new(9),
        rtt_ms: Some(51.0),
    };
    assert_eq!(set.find_group(&mm, &far, None, 2, &any), None);
    set.remove(3);
    set.insert(
        3,
        Waiter {
            pid: Pid::new(4),
            rtt_ms: None,
        },
    );
    assert!(
        set.may_form_group(&mm, 2),
        "an unknown RTT passes with anyone"
    );
    assert_eq!(set.len(), 4);
}

#[test]
fn the_order_statistic_gate_sees_what_buckets_cannot() {
    // Everyone within one bucket and far under the bucket slack: a crowd that can never
    // match (0.1 + 0.1 > 0.001), which the buckets alone cannot prove.
    let tiny = LatencyFifoMatchmaker {
        max_server_rtt_ms: 0.001,
    };
    let mut set = WaitingSet::new();
    for seq in 0..50 {
        set.insert(
            seq,
            Waiter {
                pid: Pid::new(seq + 1),
                rtt_ms: Some(0.1 + seq as f64 * 1e-3),
            },
        );
    }
    let any = |_: Pid, _: Pid| true;
    for g in [2, 3, 5] {
        assert!(!set.may_form_group(&tiny, g), "nobody passes, g = {g}");
    }
    let arriving = Candidate {
        id: Pid::new(99),
        rtt_ms: Some(0.0),
    };
    assert_eq!(set.find_group(&tiny, &arriving, None, 3, &any), None);
    // Where a group exists the gate lets it through: 10, 20, 30 pass pairwise under 100, the
    // 96 does not matter.
    let mm = LatencyFifoMatchmaker {
        max_server_rtt_ms: 100.0,
    };
    let mut set = WaitingSet::new();
    for (seq, rtt) in [(0, 96.0), (1, 30.0), (2, 20.0), (3, 10.0)] {
        set.insert(
            seq,
            Waiter {
                pid: Pid::new(seq + 1),
                rtt_ms: Some(rtt),
            },
        );
    }
    assert!(set.may_form_group(&mm, 3));
    assert!(!set.may_form_group(&mm, 4), "96 + 30 > 100");
    // An unknown RTT passes everyone under latency_fifo: the gate steps aside.
    set.insert(
        9,
        Waiter {
            pid: Pid::new(10),
            rtt_ms: None,
        },
    );
    assert!(set.may_form_group(&mm, 4), "10, 20, 30 and the unknown");
    // The gate follows RTT changes: 10 → 75 leaves 20 + 30 + 75 (75 + 30 > 100).
    set.remove(9);
    set.update_rtt(3, Some(75.0));
    assert!(!set.may_form_group(&mm, 3));
    assert_eq!(
        set.find_group(
            &mm,
            &Candidate {
                id: Pid::new(20),
                rtt_ms: Some(5.0),
            },
            None,
            3,
            &any
        ),
        Some(vec![Pid::new(20), Pid::new(2), Pid::new(3)]),
        "an arriving 5 makes 5, 30, 20 possible (5 + 96 > 100 skips the first)"
    );
}
