//! Matchmakers: who is grouped with whom.
//!
//! Re-creates the original framework's `Matchmaker` family (`FIFOMatchmaker`,
//! `LatencyFIFOMatchmaker`) with its semantics, and fixes its blind spot for groups larger than
//! two: the original checked only arriving-versus-candidate, so two candidates in one group were
//! never checked against each other. Here every pair of a group passes the pre-filter.
//!
//! Two-stage latency filtering (the original's design):
//! 1. a cheap pre-filter ([`Matchmaker::pair_passes`]) on server RTTs — the sum of two
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

/// Decides which waiting participants may form a group. Implementations are pure: the
/// waitroom owns the waiting set and runs the greedy search
/// ([`super::candidates::WaitingSet::find_group`]) with these rules.
pub trait Matchmaker: Send {
    /// The name used in the config and the research record (`fifo`, `latency_fifo`).
    fn name(&self) -> &'static str;

    /// Whether `a` and `b` may be in one group by this matchmaker's pre-filter. Symmetric.
    fn pair_passes(&self, a: &Candidate, b: &Candidate) -> bool;

    /// The largest server RTT, ms, a partner of `member` may have: for every candidate `c`
    /// whose RTT is known, finite and non-negative, `pair_passes(member, c)` implies
    /// `c.rtt_ms ≤` this (up to floating-point rounding: the waiting set allows 1e-6 ms when
    /// it compares this limit with one exact RTT, and 1 ms when with a bucket). Must not
    /// grow as `member`'s known RTT grows. `f64::INFINITY`: no limit (the default); NaN counts
    /// as −∞. The waiting set uses it to skip, by RTT bucket, participants who cannot pass.
    fn max_partner_rtt_ms(&self, member: &Candidate) -> f64 {
        let _ = member;
        f64::INFINITY
    }
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
    fn max_partner_rtt_ms(&self, member: &Candidate) -> f64 {
        match member.rtt_ms {
            // `x + y ≤ max` ⇒ `y ≤ max − x`; an infinite `max` has no limit.
            Some(x) if self.max_server_rtt_ms.is_finite() => self.max_server_rtt_ms - x,
            _ => f64::INFINITY,
        }
    }
}

/// `p2p_matrix`'s pre-filter, which only orders its background probes (pairs passing first):
/// the sum of two server RTTs against `max_server_rtt_ms` when the scene sets it (as
/// `latency_fifo`), else every pair passes. Its grouping reads measured pair RTTs
/// ([`super::matrix`]), not this.
#[derive(Debug, Clone)]
pub struct P2pMatrixMatchmaker {
    /// The same rule as `latency_fifo`'s (infinite: no pre-filter).
    pub prefilter: LatencyFifoMatchmaker,
}

impl Matchmaker for P2pMatrixMatchmaker {
    fn name(&self) -> &'static str {
        "p2p_matrix"
    }
    fn pair_passes(&self, a: &Candidate, b: &Candidate) -> bool {
        self.prefilter.pair_passes(a, b)
    }
    fn max_partner_rtt_ms(&self, member: &Candidate) -> f64 {
        self.prefilter.max_partner_rtt_ms(member)
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
        MatchmakerKind::P2pMatrix => Box::new(P2pMatrixMatchmaker {
            prefilter: LatencyFifoMatchmaker {
                max_server_rtt_ms: scene.max_server_rtt_ms.unwrap_or(f64::INFINITY),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::candidates::{Waiter, WaitingSet};

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
    /// The group the waitroom's search finds for `arriving` among `waiting` (in arrival
    /// order), excluding the pairs `allowed` refuses.
    fn find_with(
        mm: &dyn Matchmaker,
        arriving: Candidate,
        waiting: &[Candidate],
        n: usize,
        allowed: &dyn Fn(Pid, Pid) -> bool,
    ) -> Option<Vec<Pid>> {
        let mut set = WaitingSet::new();
        for (seq, w) in (0..).zip(waiting) {
            set.insert(
                seq,
                Waiter {
                    pid: w.id,
                    rtt_ms: w.rtt_ms,
                },
            );
        }
        set.find_group(mm, &arriving, None, n, allowed)
    }
    fn find(
        mm: &dyn Matchmaker,
        arriving: Candidate,
        waiting: &[Candidate],
        n: usize,
    ) -> Option<Vec<Pid>> {
        find_with(mm, arriving, waiting, n, &any)
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
        assert_eq!(find(&mm, c(9, Some(50.0)), &w, 3), pids(&[9, 2, 3]));
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
        assert_eq!(find_with(&mm, c(9, None), &w, 2, &not(9, 1)), pids(&[9, 2]));
        // In a group of three, 1 is excluded with 9 but also each pair among the others counts.
        assert_eq!(
            find_with(&mm, c(9, None), &w, 3, &not(2, 3)),
            pids(&[9, 1, 2])
        );
        assert_eq!(
            find_with(&mm, c(9, None), &w, 3, &not(1, 2)),
            pids(&[9, 1, 3])
        );
    }

    #[test]
    fn arriving_is_never_its_own_candidate() {
        let mm = FifoMatchmaker;
        assert_eq!(find(&mm, c(1, None), &[c(1, None)], 2), None);
    }
}
