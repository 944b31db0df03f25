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
//! 2. a real WebRTC probe per pair, judged by [`Matchmaker::should_reject_for_rtt`]
//!    (`max_p2p_rtt_ms`).

use crate::config::{MatchmakerKind, SceneConfig};

/// A participant as the matchmaker sees them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The lobby's handle for the participant (opaque to the matchmaker).
    pub id: u64,
    /// Median server RTT, ms; `None` when unknown.
    pub rtt_ms: Option<f64>,
}

/// Decides which waiting participants form a group. Implementations are pure: the lobby owns
/// the waitroom and calls these with its current state.
pub trait Matchmaker: Send {
    /// The name used in the config and the research record (`fifo`, `latency_fifo`).
    fn name(&self) -> &'static str;

    /// The probe threshold, ms: `Some` when proposed groups must be verified by a probe.
    fn max_p2p_rtt_ms(&self) -> Option<f64>;

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
    /// `allowed` with each of them (the lobby's rule: pairs whose probe failed are never grouped
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
        allowed: &dyn Fn(u64, u64) -> bool,
    ) -> Option<Vec<u64>> {
        greedy_group(self, arriving, waiting, group_size, allowed)
    }

    /// The probe's verdict on a measured peer-to-peer RTT, ms (the original's
    /// `should_reject_for_rtt`): no threshold → accept; no measurement → reject;
    /// `measured > max_p2p_rtt_ms` → reject (equal is accepted).
    fn should_reject_for_rtt(&self, measured_ms: Option<f64>) -> bool {
        match (self.max_p2p_rtt_ms(), measured_ms) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(max), Some(m)) => m.is_nan() || m > max,
        }
    }
}

fn greedy_group<M: Matchmaker + ?Sized>(
    mm: &M,
    arriving: &Candidate,
    waiting: &mut dyn Iterator<Item = Candidate>,
    group_size: usize,
    allowed: &dyn Fn(u64, u64) -> bool,
) -> Option<Vec<u64>> {
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
pub struct FifoMatchmaker {
    /// Probe threshold, ms; `None`: no probe.
    pub max_p2p_rtt_ms: Option<f64>,
}

impl Matchmaker for FifoMatchmaker {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn max_p2p_rtt_ms(&self) -> Option<f64> {
        self.max_p2p_rtt_ms
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
    /// Probe threshold, ms; `None`: no probe.
    pub max_p2p_rtt_ms: Option<f64>,
}

impl Matchmaker for LatencyFifoMatchmaker {
    fn name(&self) -> &'static str {
        "latency_fifo"
    }
    fn max_p2p_rtt_ms(&self) -> Option<f64> {
        self.max_p2p_rtt_ms
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
        MatchmakerKind::Fifo => Box::new(FifoMatchmaker {
            max_p2p_rtt_ms: scene.max_p2p_rtt_ms,
        }),
        MatchmakerKind::LatencyFifo => Box::new(LatencyFifoMatchmaker {
            // Config validation requires it for latency_fifo; infinity keeps the rule total.
            max_server_rtt_ms: scene.max_server_rtt_ms.unwrap_or(f64::INFINITY),
            max_p2p_rtt_ms: scene.max_p2p_rtt_ms,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, rtt: Option<f64>) -> Candidate {
        Candidate { id, rtt_ms: rtt }
    }
    fn any(_: u64, _: u64) -> bool {
        true
    }
    fn find(
        mm: &dyn Matchmaker,
        arriving: Candidate,
        waiting: &[Candidate],
        n: usize,
    ) -> Option<Vec<u64>> {
        mm.find_match(&arriving, &mut waiting.iter().copied(), n, &any)
    }

    #[test]
    fn fifo_takes_first_in_arrival_order() {
        let mm = FifoMatchmaker::default();
        let w = [c(1, Some(500.0)), c(2, None), c(3, Some(1.0))];
        assert_eq!(find(&mm, c(9, Some(1.0)), &w, 2), Some(vec![9, 1]));
        assert_eq!(find(&mm, c(9, None), &w, 3), Some(vec![9, 1, 2]));
        assert_eq!(find(&mm, c(9, None), &w, 4), Some(vec![9, 1, 2, 3]));
        assert_eq!(find(&mm, c(9, None), &w, 5), None, "not enough waiting");
        assert_eq!(find(&mm, c(9, None), &[], 2), None);
    }

    #[test]
    fn latency_fifo_boundary_is_inclusive() {
        let mm = LatencyFifoMatchmaker {
            max_server_rtt_ms: 200.0,
            max_p2p_rtt_ms: None,
        };
        // 120 + 80 = 200 passes; 120 + 80.5 does not.
        assert_eq!(
            find(
                &mm,
                c(9, Some(120.0)),
                &[c(1, Some(80.5)), c(2, Some(80.0))],
                2
            ),
            Some(vec![9, 2])
        );
        assert_eq!(find(&mm, c(9, Some(120.0)), &[c(1, Some(80.5))], 2), None);
    }

    #[test]
    fn latency_fifo_unknown_rtt_passes_and_order_is_fifo() {
        let mm = LatencyFifoMatchmaker {
            max_server_rtt_ms: 100.0,
            max_p2p_rtt_ms: None,
        };
        let w = [c(1, Some(90.0)), c(2, None), c(3, Some(10.0))];
        assert_eq!(
            find(&mm, c(9, Some(50.0)), &w, 2),
            Some(vec![9, 2]),
            "unknown passes, FIFO"
        );
        assert_eq!(
            find(&mm, c(9, None), &w, 2),
            Some(vec![9, 1]),
            "arriving unknown passes"
        );
        assert_eq!(mm.rank_candidates(&c(9, Some(50.0)), &w), vec![1, 2]);
    }

    #[test]
    fn groups_of_three_check_every_pair() {
        let mm = LatencyFifoMatchmaker {
            max_server_rtt_ms: 100.0,
            max_p2p_rtt_ms: None,
        };
        // Arriving (10) passes with 1 (80) and 2 (80), but 1 + 2 = 160 fails: the original
        // would have grouped 9, 1, 2. Here 2 is skipped and 3 (20) completes the group.
        let w = [c(1, Some(80.0)), c(2, Some(80.0)), c(3, Some(20.0))];
        assert_eq!(find(&mm, c(9, Some(10.0)), &w, 3), Some(vec![9, 1, 3]));
        assert_eq!(find(&mm, c(9, Some(10.0)), &w[..2], 3), None);
    }

    #[test]
    fn allowed_excludes_failed_pairs() {
        let mm = FifoMatchmaker::default();
        let w = [c(1, None), c(2, None), c(3, None)];
        let not_9_1 = |a: u64, b: u64| !matches!((a.min(b), a.max(b)), (1, 9));
        assert_eq!(
            mm.find_match(&c(9, None), &mut w.iter().copied(), 2, &not_9_1),
            Some(vec![9, 2])
        );
        // In a group of three, 1 is excluded with 9 but also each pair among the others counts.
        let not_2_3 = |a: u64, b: u64| !matches!((a.min(b), a.max(b)), (2, 3));
        assert_eq!(
            mm.find_match(&c(9, None), &mut w.iter().copied(), 3, &not_2_3),
            Some(vec![9, 1, 2])
        );
        let not_1_2 = |a: u64, b: u64| !matches!((a.min(b), a.max(b)), (1, 2));
        assert_eq!(
            mm.find_match(&c(9, None), &mut w.iter().copied(), 3, &not_1_2),
            Some(vec![9, 1, 3])
        );
    }

    #[test]
    fn arriving_is_never_its_own_candidate() {
        let mm = FifoMatchmaker::default();
        assert_eq!(find(&mm, c(1, None), &[c(1, None)], 2), None);
    }

    #[test]
    fn should_reject_for_rtt_rule() {
        let none = FifoMatchmaker {
            max_p2p_rtt_ms: None,
        };
        assert!(!none.should_reject_for_rtt(None), "no threshold accepts");
        assert!(!none.should_reject_for_rtt(Some(1e9)));
        let mm = LatencyFifoMatchmaker {
            max_server_rtt_ms: 200.0,
            max_p2p_rtt_ms: Some(150.0),
        };
        assert!(
            mm.should_reject_for_rtt(None),
            "missing measurement rejects"
        );
        assert!(!mm.should_reject_for_rtt(Some(100.0)));
        assert!(!mm.should_reject_for_rtt(Some(150.0)), "equal is accepted");
        assert!(mm.should_reject_for_rtt(Some(150.001)));
        assert!(mm.should_reject_for_rtt(Some(f64::NAN)));
        let zero = FifoMatchmaker {
            max_p2p_rtt_ms: Some(0.0),
        };
        assert!(!zero.should_reject_for_rtt(Some(0.0)));
        assert!(zero.should_reject_for_rtt(Some(0.1)));
    }
}
