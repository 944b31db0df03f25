//! Matchmakers: who is grouped with whom.
//!
//! Re-creates the original framework's `Matchmaker` family (`FIFOMatchmaker`,
//! `LatencyFIFOMatchmaker`) with its semantics, and fixes its blind spot for groups larger than
//! two: the original checked only arriving-versus-candidate, so two candidates in one group were
//! never checked against each other. Here every pair of a group passes the pre-filter.
//!
//! Two-stage latency filtering (the original's design):
//! 1. a cheap pre-filter in [`Matchmaker::find_match`] on server RTTs — the sum of two
//!    participants' RTTs to the server estimates their peer-to-peer RTT
//!    (`max_server_rtt_ms`);
//! 2. a real WebRTC probe per pair of a proposed group, judged against the scene's
//!    `max_p2p_rtt_ms` by the probe coordinator ([`super::probe`]), not by the matchmaker.

use super::Pid;
use crate::config::{MatchmakerKind, SceneConfig};

/// A participant as the matchmaker sees them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The core's handle for the participant (opaque to the matchmaker).
    pub id: Pid,
    /// Median server RTT, ms; `None` when unknown.
    pub rtt_ms: Option<f64>,
}

/// Decides which waiting participants form a group. Implementations are pure: the waitroom
/// owns the waiting set and calls these with its current state.
pub trait Matchmaker: Send {
    /// The name used in the config and the research record (`fifo`, `latency_fifo`).
    fn name(&self) -> &'static str;

    /// Whether `a` and `b` may be in one group by this matchmaker's pre-filter.
    fn pair_passes(&self, a: &Candidate, b: &Candidate) -> bool;

    /// The waiting candidates the arriving one may be grouped with, best first, as indices into
    /// `waiting` (which is in arrival order). Default: FIFO among those passing
    /// [`Matchmaker::pair_passes`].
    fn rank_candidates(&self, arriving: &Candidate, waiting: &[Candidate]) -> Vec<usize> {
        (0..waiting.len())
            .filter(|&i| self.pair_passes(arriving, &waiting[i]))
            .collect()
    }

    /// Proposes a group of `group_size`: `arriving` first, then members taken greedily in rank
    /// order, each of which passes the pre-filter with every member already taken and is
    /// `allowed` with each of them (the waitroom's rule: pairs whose probe failed are never grouped
    /// again). Returns the chosen members' ids, `arriving` first; `None` when no full group
    /// forms.
    ///
    /// `waiting` yields the other waiting participants in arrival order; it is consumed lazily,
    /// so a match near the front of a long waitroom costs little.
    fn find_match(
        &self,
        arriving: &Candidate,
        waiting: &mut dyn Iterator<Item = Candidate>,
        group_size: usize,
        allowed: &dyn Fn(Pid, Pid) -> bool,
    ) -> Option<Vec<Pid>> {
        greedy_group(self, arriving, waiting, group_size, allowed)
    }
}

fn greedy_group<M: Matchmaker + ?Sized>(
    mm: &M,
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

/// `FIFOMatchmaker`: the first `group_size − 1` waiting, in arrival order, plus the arriving
/// one. No latency filter.
#[derive(Debug, Clone, Default)]
pub struct FifoMatchmaker;

impl Matchmaker for FifoMatchmaker {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn pair_passes(&self, _: &Candidate, _: &Candidate) -> bool {
        true
    }
}

/// `LatencyFIFOMatchmaker`: a candidate passes when `rtt(a) + rtt(b) <= max_server_rtt_ms`;
/// an unknown RTT passes (the original's rule: don't punish a missing measurement at the
/// pre-filter, the probe will judge); FIFO order among those that pass.
#[derive(Debug, Clone)]
pub struct LatencyFifoMatchmaker {
    /// Pre-filter on the sum of two server RTTs, ms.
    pub max_server_rtt_ms: f64,
}

impl Matchmaker for LatencyFifoMatchmaker {
    fn name(&self) -> &'static str {
        "latency_fifo"
    }
    fn pair_passes(&self, a: &Candidate, b: &Candidate) -> bool {
        match (a.rtt_ms, b.rtt_ms) {
            (Some(x), Some(y)) => x + y <= self.max_server_rtt_ms,
            _ => true,
        }
    }
}

/// The matchmaker a scene asks for.
pub fn for_scene(scene: &SceneConfig) -> Box<dyn Matchmaker> {
    match scene.matchmaker {
        MatchmakerKind::Fifo => Box::new(FifoMatchmaker),
        MatchmakerKind::LatencyFifo => Box::new(LatencyFifoMatchmaker {
            // Config validation requires it for latency_fifo; infinity keeps the rule total.
            max_server_rtt_ms: scene.max_server_rtt_ms.unwrap_or(f64::INFINITY),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, rtt: Option<f64>) -> Candidate {
        Candidate {
            id: Pid::new(id),
            rtt_ms: rtt,
        }
    }
    fn any(_: Pid, _: Pid) -> bool {
        true
    }
    fn pids(ids: &[u64]) -> Option<Vec<Pid>> {
        Some(ids.iter().copied().map(Pid::new).collect())
    }
    fn find(
        mm: &dyn Matchmaker,
        arriving: Candidate,
        waiting: &[Candidate],
        n: usize,
    ) -> Option<Vec<Pid>> {
        mm.find_match(&arriving, &mut waiting.iter().copied(), n, &any)
    }
    /// Excludes the pair `{a, b}`.
    fn not(a: u64, b: u64) -> impl Fn(Pid, Pid) -> bool {
        move |x, y| {
            let (lo, hi) = (x.min(y).get(), x.max(y).get());
            (lo, hi) != (a.min(b), a.max(b))
        }
    }

    #[test]
    fn fifo_takes_first_in_arrival_order() {
        let mm = FifoMatchmaker;
        let w = [c(1, Some(500.0)), c(2, None), c(3, Some(1.0))];
        assert_eq!(find(&mm, c(9, Some(1.0)), &w, 2), pids(&[9, 1]));
        assert_eq!(find(&mm, c(9, None), &w, 3), pids(&[9, 1, 2]));
        assert_eq!(find(&mm, c(9, None), &w, 4), pids(&[9, 1, 2, 3]));
        assert_eq!(find(&mm, c(9, None), &w, 5), None, "not enough waiting");
        assert_eq!(find(&mm, c(9, None), &[], 2), None);
    }

    #[test]
    fn latency_fifo_boundary_is_inclusive() {
        let mm = LatencyFifoMatchmaker {
            max_server_rtt_ms: 200.0,
        };
        // 120 + 80 = 200 passes; 120 + 80.5 does not.
        assert_eq!(
            find(
                &mm,
                c(9, Some(120.0)),
                &[c(1, Some(80.5)), c(2, Some(80.0))],
                2
            ),
            pids(&[9, 2])
        );
        assert_eq!(find(&mm, c(9, Some(120.0)), &[c(1, Some(80.5))], 2), None);
    }

    #[test]
    fn latency_fifo_unknown_rtt_passes_and_order_is_fifo() {
        let mm = LatencyFifoMatchmaker {
            max_server_rtt_ms: 100.0,
        };
        let w = [c(1, Some(90.0)), c(2, None), c(3, Some(10.0))];
        assert_eq!(
            find(&mm, c(9, Some(50.0)), &w, 2),
            pids(&[9, 2]),
            "unknown passes, FIFO"
        );
        assert_eq!(
            find(&mm, c(9, None), &w, 2),
            pids(&[9, 1]),
            "arriving unknown passes"
        );
        assert_eq!(mm.rank_candidates(&c(9, Some(50.0)), &w), vec![1, 2]);
    }

    #[test]
    fn groups_of_three_check_every_pair() {
        let mm = LatencyFifoMatchmaker {
            max_server_rtt_ms: 100.0,
        };
        // Arriving (10) passes with 1 (80) and 2 (80), but 1 + 2 = 160 fails: the original
        // would have grouped 9, 1, 2. Here 2 is skipped and 3 (20) completes the group.
        let w = [c(1, Some(80.0)), c(2, Some(80.0)), c(3, Some(20.0))];
        assert_eq!(find(&mm, c(9, Some(10.0)), &w, 3), pids(&[9, 1, 3]));
        assert_eq!(find(&mm, c(9, Some(10.0)), &w[..2], 3), None);
    }

    #[test]
    fn allowed_excludes_failed_pairs() {
        let mm = FifoMatchmaker;
        let w = [c(1, None), c(2, None), c(3, None)];
        assert_eq!(
            mm.find_match(&c(9, None), &mut w.iter().copied(), 2, &not(9, 1)),
            pids(&[9, 2])
        );
        // In a group of three, 1 is excluded with 9 but also each pair among the others counts.
        assert_eq!(
            mm.find_match(&c(9, None), &mut w.iter().copied(), 3, &not(2, 3)),
            pids(&[9, 1, 2])
        );
        assert_eq!(
            mm.find_match(&c(9, None), &mut w.iter().copied(), 3, &not(1, 2)),
            pids(&[9, 1, 3])
        );
    }

    #[test]
    fn arriving_is_never_its_own_candidate() {
        let mm = FifoMatchmaker;
        assert_eq!(find(&mm, c(1, None), &[c(1, None)], 2), None);
    }
}
