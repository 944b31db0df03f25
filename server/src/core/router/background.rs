//! `p2p_matrix` in the router: carries out what the scenes' pair matrices
//! ([`crate::core::matrix`]) queue — background probes started through the probe coordinator
//! (one round per pair, `probe_prepare` with `keep_ms` and the game's ICE servers), their
//! results written (`probe_result`, then `pair_measured`) and fed back, `probe_close`s, and
//! groups formed from measurements with no probe at match time (`match_proposed` with the
//! pair RTTs used, then `game_start` naming each pair's kept probe, `handover: true` when it can
//! be adopted).
//!
//! Entry points, each a one-line hook elsewhere in the router: [`Core::run_background`] at the
//! end of every event, [`Core::on_background_judged`] first in `act_on_probes`,
//! [`Core::expire_background`] in the tick, [`Core::take_game_probes`] in `start_game`,
//! [`Core::is_background_round`] in the invariants.

use std::time::Instant;

use pairlab_shared::{ConnectionKind, ProbeClose, ServerMessage, SubjectId};

use super::{Core, PState};
use crate::core::ids::{GroupId, Pid};
use crate::core::matrix::{GroupPair, ProbeEnd, Todo};
use crate::core::probe::{NewRound, PairJudged, ProbeMember, Verdict};
use crate::core::research::{PairProbe, PairRtt, ProbeFailure, ResearchEvent};
use crate::core::Action;

impl Core {
    /// Carries out every scene matrix's queued work until none is left: closes, abandoned
    /// rounds, group searches (groups formed at once), then new probes for those whose slots
    /// freed, oldest waiter first.
    pub(super) fn run_background(&mut self, now: Instant, out: &mut Vec<Action>) {
        for scene in 0..self.scenes.len() {
            while let Some(todo) = self.scenes[scene]
                .matrix_mut()
                .map(|m| m.drain())
                .filter(|t| !t.is_empty())
            {
                let mut refill = Vec::new();
                for t in todo {
                    match t {
                        Todo::Close(pid, probe_session_id) => {
                            let msg = ServerMessage::ProbeClose(ProbeClose { probe_session_id });
                            self.send(pid, msg, out);
                        }
                        Todo::Abandon(group) => {
                            for line in self.probes.abandon_round(now, group) {
                                self.record(scene, line, out);
                            }
                            if let Some(m) = self.scenes[scene].matrix_mut() {
                                m.forget_round(group);
                            }
                        }
                        Todo::Match(seed) => self.match_on_measurements(now, scene, &seed, out),
                        Todo::Refill(pid) => refill.push(pid),
                    }
                }
                refill.sort_by_key(|&pid| (self.scenes[scene].arrival_seq(pid), pid));
                refill.dedup();
                for pid in refill {
                    self.start_background_probes(now, scene, pid, out);
                }
            }
        }
    }

    /// The earliest time a matrix has timed work (a measurement going stale, a member's
    /// deadline window).
    pub(super) fn background_deadline(&self) -> Option<Instant> {
        self.scenes
            .iter()
            .filter_map(|s| s.matrix().and_then(|m| m.next_due()))
            .min()
    }

    /// The tick: queues every matrix's timed work due at `now`.
    pub(super) fn expire_background(&mut self, now: Instant) {
        for s in &mut self.scenes {
            if let Some(m) = s.matrix_mut() {
                m.expire(now);
            }
        }
    }

    /// Whether `group` is a background probe round of some scene's matrix.
    pub(super) fn is_background_round(&self, group: GroupId) -> bool {
        self.scenes
            .iter()
            .any(|s| s.matrix().is_some_and(|m| m.owns(group)))
    }

    /// Starts background probes for `pid` while their slots and the scheduler allow.
    fn start_background_probes(
        &mut self,
        now: Instant,
        scene: usize,
        pid: Pid,
        out: &mut Vec<Action>,
    ) {
        loop {
            let participants = &self.participants;
            let subject_of = |p: Pid| participants.get(&p).map(|p| &p.subject_id);
            let Some(partner) = self.scenes[scene].next_probe_partner(now, pid, &subject_of) else {
                return;
            };
            if !self.start_background_probe(now, scene, pid, partner, out) {
                return;
            }
        }
    }

    /// One background probe between `a` and `b` (the earlier arrival is player 0 of the
    /// probe). `false` when either is not a connected participant.
    fn start_background_probe(
        &mut self,
        now: Instant,
        scene: usize,
        a: Pid,
        b: Pid,
        out: &mut Vec<Action>,
    ) -> bool {
        let s = &self.scenes[scene];
        let (first, second) = if s.arrival_seq(a) <= s.arrival_seq(b) {
            (a, b)
        } else {
            (b, a)
        };
        let (Some(pf), Some(ps)) = (
            self.participants.get(&first),
            self.participants.get(&second),
        ) else {
            return false;
        };
        let conns = [pf.conn, ps.conn];
        let members = vec![
            ProbeMember {
                pid: first,
                subject_id: pf.subject_id.clone(),
                index: 0,
                conn: pf.conn,
            },
            ProbeMember {
                pid: second,
                subject_id: ps.subject_id.clone(),
                index: 1,
                conn: ps.conn,
            },
        ];
        let cfg = s.cfg();
        let Some(keep_ms) = s.matrix().map(|m| m.keep_ms()) else {
            return false;
        };
        let group = GroupId::new(self.next_group);
        self.next_group += 1;
        let round = NewRound {
            group,
            scene,
            members,
            max_p2p_rtt_ms: cfg.max_p2p_rtt_ms.unwrap_or(f64::INFINITY),
            timeout_ms: cfg.probe_timeout_ms,
            force_relay: cfg.force_relay,
            keep_ms: Some(keep_ms),
        };
        for id in self.launch_round(now, round, out) {
            if let Some(m) = self.scenes[scene].matrix_mut() {
                m.started(first, second, group, id, conns);
            }
        }
        true
    }

    /// A judged probe of a background round: its `probe_result` line, then `pair_measured`
    /// when an RTT was measured; a failed or too-slow pair is remembered as failed; the matrix
    /// learns the outcome. `false` when the probe is not a background one.
    pub(super) fn on_background_judged(
        &mut self,
        now: Instant,
        j: &PairJudged,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(v) = &j.verdict else {
            return false;
        };
        let (scene, group) = (v.scene, v.group);
        if !self.scenes[scene].matrix().is_some_and(|m| m.owns(group)) {
            return false;
        }
        self.record(scene, j.record.clone(), out);
        let ResearchEvent::ProbeResult {
            probe_session_id,
            members,
            reports,
            rtt_ms,
            ..
        } = &j.record
        else {
            return true;
        };
        let path: Option<ConnectionKind> = reports
            .iter()
            .flatten()
            .find_map(|r| r.connection.as_ref().map(|c| c.connection_type));
        let end = match &v.verdict {
            Verdict::Accepted { pair_rtts } => match pair_rtts.first() {
                Some(p) => ProbeEnd::Measured {
                    rtt_ms: p.rtt_ms,
                    path,
                },
                None => ProbeEnd::Gone,
            },
            Verdict::Rejected {
                reason: ProbeFailure::Disconnected | ProbeFailure::Withdrawn,
                ..
            } => ProbeEnd::Gone,
            Verdict::Rejected { failed_pairs, .. } => {
                for pair in failed_pairs {
                    self.scenes[scene].remember_failed_pair(pair);
                }
                ProbeEnd::Failed
            }
        };
        let ended = self.scenes[scene]
            .matrix_mut()
            .and_then(|m| m.probe_ended(now, group, end));
        if let (Some(ended), Some(rtt_ms)) = (ended, *rtt_ms) {
            if end != ProbeEnd::Gone {
                let event = ResearchEvent::PairMeasured {
                    probe_session_id: probe_session_id.clone(),
                    members: members.clone(),
                    rtt_ms,
                    path,
                    usable: matches!(end, ProbeEnd::Measured { .. }),
                    previous_age_ms: ended.previous_age_ms,
                };
                self.record(scene, event, out);
            }
        }
        true
    }

    /// Looks for the best valid group containing `seed` and forms it.
    fn match_on_measurements(
        &mut self,
        now: Instant,
        scene: usize,
        seed: &[Pid],
        out: &mut Vec<Action>,
    ) {
        let size = self.scenes[scene].cfg().group_size as usize;
        let Some(members) = self.scenes[scene]
            .matrix()
            .and_then(|m| m.best_group(now, seed, size))
        else {
            return;
        };
        let all_waiting = members.iter().all(|pid| {
            self.participants
                .get(pid)
                .is_some_and(|p| p.state == PState::Waiting && p.conn.is_some())
        });
        if all_waiting {
            self.form_measured_group(now, scene, members, out);
        }
    }

    /// A valid group (arrival order) becomes a game at once: `match_proposed` with the pair
    /// RTTs used, the pairs' probes handed to the game, the members out of the waitroom (their
    /// other probes closed), then `game_created` and `game_start`.
    fn form_measured_group(
        &mut self,
        now: Instant,
        scene: usize,
        members: Vec<Pid>,
        out: &mut Vec<Action>,
    ) {
        let participants = &self.participants;
        let conn_of = |pid: Pid| participants.get(&pid).and_then(|p| p.conn);
        let Some(pairs): Option<Vec<GroupPair>> = self.scenes[scene]
            .matrix()
            .map(|m| m.group_pairs(now, &members, &conn_of))
        else {
            return;
        };
        let subject = |pid: Pid| self.participants.get(&pid).map(|p| p.subject_id.clone());
        let subjects: Vec<SubjectId> = members.iter().filter_map(|&p| subject(p)).collect();
        if subjects.len() != members.len() {
            return;
        }
        let pair_rtts: Vec<PairRtt> = pairs
            .iter()
            .map(|p| PairRtt {
                members: [subjects[p.a].clone(), subjects[p.b].clone()],
                rtt_ms: p.measurement.rtt_ms,
            })
            .collect();
        let server_rtts_ms = members
            .iter()
            .map(|pid| self.participants.get(pid).and_then(|p| p.rtt.median_ms()))
            .collect();
        // Each pair's kept probe connection, named in `game_start.probes` and `game_created`.
        let probes: Vec<PairProbe> = pairs
            .iter()
            .map(|p| PairProbe {
                members: [subjects[p.a].clone(), subjects[p.b].clone()],
                probe_session_id: p.measurement.probe_session_id.clone(),
                handover: p.handover,
            })
            .collect();
        let event = ResearchEvent::MatchProposed {
            members: subjects,
            server_rtts_ms,
            matchmaker: self.scenes[scene].matchmaker_name(),
            probe: false,
            pair_rtts: pair_rtts.clone(),
        };
        self.record(scene, event, out);
        if let Some(m) = self.scenes[scene].matrix_mut() {
            m.hand_over(&members, &pairs);
        }
        for &pid in &members {
            self.leave_waiting(now, pid);
        }
        self.start_game(now, scene, &members, pair_rtts, probes, out);
    }
}

#[cfg(test)]
impl Core {
    /// The pair matrix of scene `scene` (tests).
    pub(crate) fn scene_matrix(&self, scene: usize) -> Option<&crate::core::matrix::PairMatrix> {
        self.scenes.get(scene)?.matrix()
    }

    /// The participant bound to connection `conn` (tests).
    pub(crate) fn pid_of_conn(&self, conn: crate::core::ids::ConnId) -> Option<Pid> {
        match self.conns.get(&conn)? {
            super::ConnState::Bound(pid) => Some(*pid),
            super::ConnState::AwaitingHello => None,
        }
    }
}
