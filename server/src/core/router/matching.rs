//! From the waitroom to a game: entering the waiting set, count updates, waitroom timeouts,
//! running the matchmaker, proposing a group (probed, or started at once without a
//! `max_p2p_rtt_ms`), and acting on the probe coordinator's verdicts: an accepted group
//! becomes a game, a rejected one returns to waiting; either way, each probe's connection is
//! handed to the game or closed (`probe_close`), by the rules of
//! [`RoundProbe`](crate::core::probe::RoundProbe).

use std::time::Instant;

use pairlab_shared::{Outcome, ServerMessage, SubjectId, WaitroomTimeout};

use super::{ms, Core, PState, Removed, Timer};
use crate::core::games::{GameMember, NewGame, StartedGame};
use crate::core::ids::{GroupId, Pid};
use crate::core::matchmaker::Candidate;
use crate::core::outcomes::{outcome_message, Recipient};
use crate::core::probe::{GroupVerdict, NewRound, PairJudged, ProbeMember, RoundProbe, Verdict};
use crate::core::research::{PairProbe, PairRtt, ProbeFailure, ResearchEvent};
use crate::core::waitroom::Broadcast;
use crate::core::Action;

impl Core {
    /// The server-RTT estimate is ready: the participant enters the waitroom (keeping their place
    /// if they had one), is told the count and is matched.
    pub(super) fn enter_waitroom(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        let deadline = self.scenes[p.scene].admit(now, pid);
        p.state = PState::Waiting;
        let scene = p.scene;
        let event = ResearchEvent::ServerRtt {
            subject_id: p.subject_id.clone(),
            median_ms: p.rtt.median_ms().unwrap_or(f64::NAN),
            samples_ms: p.rtt.samples_ms(),
        };
        self.record(scene, event, out);
        self.schedule(deadline, Timer::Waitroom(pid));
        self.join_waiting(now, pid, out);
        self.try_match(now, pid, out);
    }

    /// Puts a connected `Waiting` participant into the matchable set and tells them so.
    pub(super) fn join_waiting(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        if self.insert_waiting(now, pid) {
            self.send_waitroom(now, pid, out);
        }
    }

    /// Puts a connected `Waiting` participant into the matchable set; `false` if they cannot be
    /// (disconnected, or never entered).
    pub(super) fn insert_waiting(&mut self, now: Instant, pid: Pid) -> bool {
        let Some(p) = self.participants.get(&pid) else {
            return false;
        };
        let scene = p.scene;
        if p.conn.is_none() || !self.scenes[scene].has_place(pid) {
            return false;
        }
        if let Some(at) = self.scenes[scene].insert(now, pid, p.rtt.median_ms()) {
            self.schedule(at, Timer::Broadcast(scene));
        }
        true
    }

    /// Takes a participant out of the matchable set (they keep their place).
    pub(super) fn leave_waiting(&mut self, now: Instant, pid: Pid) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        let scene = p.scene;
        if let Some(at) = self.scenes[scene].remove(now, pid) {
            self.schedule(at, Timer::Broadcast(scene));
        }
    }

    /// Sends a participant their `waitroom` (count, time left).
    pub(super) fn send_waitroom(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        let msg = self.scenes[p.scene].waitroom_message(now, pid);
        self.send(pid, ServerMessage::Waitroom(msg), out);
    }

    /// The coalesced count broadcast of `scene` is due.
    pub(super) fn broadcast(&mut self, now: Instant, scene: usize, out: &mut Vec<Action>) {
        let Broadcast { sends, again_at } = self.scenes[scene].broadcast(now);
        for (pid, msg) in sends {
            self.send(pid, ServerMessage::Waitroom(msg), out);
        }
        if let Some(at) = again_at {
            self.schedule(at, Timer::Broadcast(scene));
        }
    }

    /// A participant's waitroom deadline timer fired.
    pub(super) fn waitroom_deadline(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        if p.state == PState::Waiting && self.scenes[p.scene].deadline_passed(pid, now) {
            self.time_out(now, pid, out);
        }
        // InGroup: decided when the group ends (a rejected group's members who are past their
        // deadline time out instead of returning). InGame: matched in time.
    }

    /// The waitroom deadline passed while waiting: `waitroom_timeout`, the socket closes, and the
    /// participant is done with the scene.
    pub(super) fn time_out(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        let Some(Removed {
            participant: p,
            entered_at,
        }) = self.remove_participant(now, pid)
        else {
            return;
        };
        if let Some(conn) = p.conn {
            let cfg = self.scenes[p.scene].cfg();
            let outcome = outcome_message(
                cfg,
                Outcome::WAITROOM_TIMEOUT,
                Recipient {
                    subject_id: &p.subject_id,
                    recruiter: p.recruiter.as_deref(),
                    game: None,
                },
            );
            let msg = ServerMessage::WaitroomTimeout(WaitroomTimeout {
                message: cfg.timeout_message.clone(),
                redirect_url: outcome.redirect_url.clone(),
            });
            out.push(Action::Send { conn, msg });
            if !p.outcome_given {
                let event = ResearchEvent::ParticipantOutcome {
                    subject_id: p.subject_id.clone(),
                    outcome: outcome.outcome.clone(),
                    completion_code: outcome.completion_code.clone(),
                    game_id: None,
                    player_index: None,
                };
                self.record(p.scene, event, out);
                let msg = ServerMessage::Outcome(outcome);
                out.push(Action::Send { conn, msg });
            }
            out.push(Action::Close { conn });
            self.conns.remove(&conn);
        }
        let waited_ms = entered_at.map_or(0.0, |t| ms(now.saturating_duration_since(t)));
        self.scenes[p.scene].mark_done(p.subject_id.clone());
        let event = ResearchEvent::WaitroomTimeout {
            subject_id: p.subject_id,
            waited_ms,
        };
        self.record(p.scene, event, out);
        self.retry_if_groups(now, p.scene, out);
    }

    // -----------------------------------------------------------------------------------------
    // Matching, probing, starting games
    // -----------------------------------------------------------------------------------------

    /// Someone left the waitroom. With groups of two that cannot make a new match; with larger
    /// groups the greedy search may now succeed where it failed, so retry everyone, in arrival
    /// order — unless the waiting set proves that no group can pass the pre-filter (too few
    /// waiting, or too few within each other's RTT limits), which it does in O(log).
    pub(super) fn retry_if_groups(&mut self, now: Instant, scene: usize, out: &mut Vec<Action>) {
        let s = &self.scenes[scene];
        if s.cfg().group_size > 2 && s.may_form_group() {
            for pid in self.scenes[scene].waiting_pids() {
                self.try_match(now, pid, out);
            }
        }
    }

    /// Runs the scene's matchmaker with `anchor` as the arriving participant; proposes the
    /// group it finds.
    pub(super) fn try_match(&mut self, now: Instant, anchor: Pid, out: &mut Vec<Action>) {
        let Some(p) = self.participants.get(&anchor) else {
            return;
        };
        if p.state != PState::Waiting || p.conn.is_none() {
            return;
        }
        let scene = p.scene;
        let arriving = Candidate {
            id: anchor,
            rtt_ms: p.rtt.median_ms(),
        };
        let participants = &self.participants;
        let subject_of = |pid: Pid| participants.get(&pid).map(|p| &p.subject_id);
        if let Some(members) = self.scenes[scene].find_match(&arriving, &subject_of) {
            self.propose_group(now, scene, members, out);
        }
    }

    /// The matchmaker proposed `members`: they leave the waitroom and are probed, or, in a
    /// scene without `max_p2p_rtt_ms`, start a game at once.
    pub(super) fn propose_group(
        &mut self,
        now: Instant,
        scene: usize,
        mut members: Vec<Pid>,
        out: &mut Vec<Action>,
    ) {
        members.sort_by_key(|&pid| self.scenes[scene].arrival_seq(pid));
        let group = GroupId::new(self.next_group);
        self.next_group += 1;
        for &pid in &members {
            self.leave_waiting(now, pid);
            if let Some(p) = self.participants.get_mut(&pid) {
                p.state = PState::InGroup(group);
            }
        }
        // Each member's alias is their place in player order, here and in the game.
        let probe_members: Vec<ProbeMember> = members
            .iter()
            .zip(0..)
            .filter_map(|(&pid, index)| {
                self.participants.get(&pid).map(|p| ProbeMember {
                    pid,
                    subject_id: p.subject_id.clone(),
                    index,
                    conn: p.conn,
                })
            })
            .collect();
        let server_rtts_ms = members
            .iter()
            .map(|pid| self.participants.get(pid).and_then(|p| p.rtt.median_ms()))
            .collect();
        let s = &self.scenes[scene];
        let cfg = s.cfg();
        let (max_p2p_rtt_ms, timeout_ms, force_relay, keep_ms) = (
            cfg.max_p2p_rtt_ms,
            cfg.probe_timeout_ms,
            cfg.force_relay,
            cfg.probe_keep_ms(),
        );
        let event = ResearchEvent::MatchProposed {
            members: probe_members.iter().map(|m| m.subject_id.clone()).collect(),
            server_rtts_ms,
            matchmaker: s.matchmaker_name(),
            probe: max_p2p_rtt_ms.is_some(),
        };
        self.record(scene, event, out);
        let Some(max_p2p_rtt_ms) = max_p2p_rtt_ms else {
            return self.start_game(now, scene, &members, Vec::new(), Vec::new(), out);
        };
        let round = NewRound {
            group,
            scene,
            members: probe_members,
            max_p2p_rtt_ms,
            timeout_ms,
            force_relay,
            keep_ms,
        };
        let ice = &self.ice;
        let ice_servers_for = |subject: &SubjectId| ice.for_subject(subject, now);
        let started = self
            .probes
            .start_round(now, &mut *self.ids, round, &ice_servers_for);
        for probe in started {
            for (to, m) in probe.prepares {
                self.send(to, m, out);
            }
            self.record(scene, probe.record, out);
        }
    }

    /// Acts on the coordinator's judgements, in order: the `probe_result` line, then, when the
    /// judgement decided a group, its verdict.
    pub(super) fn act_on_probes(
        &mut self,
        now: Instant,
        judged: impl IntoIterator<Item = PairJudged>,
        out: &mut Vec<Action>,
    ) {
        for j in judged {
            self.record(j.scene, j.record, out);
            let Some(GroupVerdict {
                scene,
                members,
                verdict,
                probes,
                ..
            }) = j.verdict
            else {
                continue;
            };
            match verdict {
                Verdict::Accepted { pair_rtts } => {
                    let probes = self.settle_probe_connections(probes, true, out);
                    self.start_game(now, scene, &members, pair_rtts, probes, out);
                }
                Verdict::Rejected {
                    reason,
                    failed_pairs,
                } => {
                    self.settle_probe_connections(probes, false, out);
                    self.reject_group(now, scene, &members, reason, failed_pairs, out);
                }
            }
        }
    }

    /// What becomes of a decided round's probe connections (PROTOCOL.md, "Handover"). In an
    /// `accepted` group each probe is handed over when [`RoundProbe::handover`] says so (kept,
    /// both members still on the signalling connections that ran it); every probe that is not
    /// handed over and that a browser may still hold open ([`RoundProbe::may_be_open`]) gets
    /// `probe_close` to its members (those still connected). Returns, for an accepted group,
    /// each pair's probe and whether it is handed over, for `game_start`; else nothing.
    fn settle_probe_connections(
        &self,
        probes: Vec<RoundProbe>,
        accepted: bool,
        out: &mut Vec<Action>,
    ) -> Vec<PairProbe> {
        let conn_of = |pid: Pid| self.participants.get(&pid).and_then(|p| p.conn);
        let mut pairs = Vec::new();
        for probe in probes {
            let handover = accepted && probe.handover(conn_of);
            if !handover && probe.may_be_open() {
                for (to, m) in probe.closes() {
                    self.send(to, m, out);
                }
            }
            if accepted {
                pairs.push(PairProbe {
                    members: probe.members.map(|m| m.subject_id),
                    probe_session_id: probe.probe_session_id,
                    handover,
                });
            }
        }
        pairs
    }

    /// A rejected group: the waitroom remembers its failed pairs, and its members return to
    /// waiting (or time out, when their waitroom deadline passed during the probe).
    pub(super) fn reject_group(
        &mut self,
        now: Instant,
        scene: usize,
        members: &[Pid],
        reason: ProbeFailure,
        failed_pairs: Vec<[SubjectId; 2]>,
        out: &mut Vec<Action>,
    ) {
        for pair in &failed_pairs {
            self.scenes[scene].remember_failed_pair(pair);
        }
        let subjects: Vec<SubjectId> = members
            .iter()
            .filter_map(|pid| self.participants.get(pid).map(|p| p.subject_id.clone()))
            .collect();
        let event = ResearchEvent::MatchRejected {
            members: subjects,
            reason,
            failed_pairs,
        };
        self.record(scene, event, out);
        let mut returned = Vec::new();
        for &pid in members {
            let Some(p) = self.participants.get_mut(&pid) else {
                continue;
            };
            p.state = PState::Waiting;
            if self.scenes[scene].deadline_passed(pid, now) {
                self.time_out(now, pid, out);
                continue;
            }
            if self.insert_waiting(now, pid) {
                returned.push(pid);
            }
        }
        // Everyone is back before anyone is told the count.
        for &pid in &returned {
            // (A timeout above may already have regrouped someone in a larger scene.)
            if self
                .participants
                .get(&pid)
                .is_some_and(|p| p.state == PState::Waiting)
            {
                self.send_waitroom(now, pid, out);
            }
        }
        for pid in returned {
            self.try_match(now, pid, out);
        }
    }

    /// An accepted group becomes a game: its `game_created` line, then `game_start` to every
    /// member (with `probes`: each pair's probe and whether it is handed over), who are then
    /// `InGame`.
    pub(super) fn start_game(
        &mut self,
        now: Instant,
        scene: usize,
        members: &[Pid],
        pair_rtts: Vec<PairRtt>,
        probes: Vec<PairProbe>,
        out: &mut Vec<Action>,
    ) {
        let game = NewGame {
            game_id: self.ids.game_id(),
            scene,
            members: members
                .iter()
                .filter_map(|&pid| {
                    self.participants.get(&pid).map(|p| GameMember {
                        pid,
                        subject_id: p.subject_id.clone(),
                    })
                })
                .collect(),
            pair_rtts,
            probes,
            force_relay: self.scenes[scene].cfg().force_relay,
            settings: self.scenes[scene].cfg().game.clone(),
        };
        let ice = &self.ice;
        let ice_servers_for = |subject: &SubjectId, now| ice.for_subject(subject, now);
        let StartedGame { starts, record } = self.games.start(game, now, &ice_servers_for);
        // `game_created` goes to the record before any `game_start` goes out: the shell queues
        // actions in order, and the record writer is FIFO (see `crate::record`).
        self.record(scene, record, out);
        for (pid, start) in starts {
            self.send(pid, ServerMessage::GameStart(Box::new(start.clone())), out);
            if let Some(p) = self.participants.get_mut(&pid) {
                p.state = PState::InGame(Box::new(start));
            }
            self.watch_hidden_at_start(now, pid);
        }
    }
}
