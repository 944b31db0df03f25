//! Participants' sessions: `hello` → `welcome`, resuming with the `resume_token`, server-RTT
//! samples (and entry to the waitroom once the estimate is ready), `leave`, drops and the
//! reconnect grace. A session ends for good by `leave`, by its grace running out, or by its
//! waitroom deadline (see [`super::matching`]).
//!
//! Who may speak for a `subject_id` (PROTOCOL.md, Session):
//! 1. With `[server] link_secret`, only a `hello` carrying the id's link signature is looked at
//!    at all; any other is refused `invalid_link`, whatever the id's state. Nobody without the
//!    link can take an id, end it with `leave`, or learn whether it is in use.
//! 2. A `hello` with the live session's current `resume_token` takes the session over.
//! 3. Any other `hello` for an id that has a session (connected or in its grace) or has taken
//!    part already gets one answer, `id_in_use`, and changes nothing: it neither takes over nor
//!    ends the session, and does not tell which of the two the id is in.
//! 4. Otherwise a new session starts. Without signed links an id is claimed by whoever says
//!    `hello` with it first (so use signed links where ids are known to others).

use std::time::{Duration, Instant};

use pairlab_shared::{
    ErrorCode, GameEndReason, GameEnded, Hello, Outcome, ServerMessage, SubjectId, Welcome,
};

use super::{ConnState, Core, PState, Participant, Removed, Timer, ENTRY_MAX_WAIT};
use crate::core::ids::{ConnId, Pid};
use crate::core::ratelimit::RateLimiter;
use crate::core::research::{LeaveReason, ResearchEvent};
use crate::core::rtt::{RttEstimator, ENTRY_PINGS};

use super::study::{RECORD_EVENTS_BURST, RECORD_EVENTS_PER_S};
use crate::core::Action;

impl Core {
    /// The first `hello` of a connection: refused (invalid link, unknown scene, id in use), a
    /// resume (matching `resume_token`), or a new session that starts measuring its server
    /// RTT; the rule is in the module docs.
    pub(super) fn on_hello(
        &mut self,
        now: Instant,
        conn: ConnId,
        hello: Hello,
        out: &mut Vec<Action>,
    ) {
        if let Some(link) = &self.link {
            if let Err(e) = link.verify(&hello.subject_id, hello.link_signature.as_deref()) {
                return self.refuse(now, conn, ErrorCode::InvalidLink, e.to_string(), out);
            }
        }
        let scene = match &hello.scene_id {
            None => 0,
            Some(id) => match self.scenes.iter().position(|s| &s.cfg().id == id) {
                Some(i) => i,
                None => {
                    let m = format!("There is no scene {id:?} on this server.");
                    return self.refuse(now, conn, ErrorCode::UnknownScene, m, out);
                }
            },
        };
        let s = &self.scenes[scene];
        let session = s.session(&hello.subject_id);
        let owner = session.filter(|pid| {
            self.participants
                .get(pid)
                .is_some_and(|p| hello.resume_token.as_deref() == Some(p.resume_token.as_str()))
        });
        if let Some(pid) = owner {
            return self.resume(now, conn, pid, out);
        }
        if session.is_some() || s.is_done(&hello.subject_id) {
            // One answer for "connected", "in its grace" and "done" (module docs, rule 3).
            let m = "This participant id is already in use: the study is open in another tab \
                     or window, or this id has already taken part. If it is open elsewhere, go \
                     back there; otherwise please contact the researcher.";
            return self.refuse(now, conn, ErrorCode::IdInUse, m, out);
        }
        if hello.browser.is_some_and(|b| !b.capable()) {
            return self.refuse_browser(now, conn, scene, &hello, out);
        }
        let pid = Pid::new(self.next_pid);
        self.next_pid += 1;
        self.participants.insert(
            pid,
            Participant {
                scene,
                subject_id: hello.subject_id.clone(),
                conn: Some(conn),
                resume_token: self.ids.resume_token(),
                rtt: RttEstimator::default(),
                welcomed_at: now,
                state: PState::Measuring,
                grace_until: None,
                recruiter: hello.recruiter.clone(),
                outcome_given: false,
                undelivered: None,
                hidden_since: None,
                records: RateLimiter::new(now, RECORD_EVENTS_PER_S, RECORD_EVENTS_BURST),
                timers: Vec::new(),
            },
        );
        self.scenes[scene].add_session(hello.subject_id.clone(), pid);
        self.conns.insert(conn, ConnState::Bound(pid));
        self.welcome(pid, out);
        let event = ResearchEvent::ParticipantJoined {
            subject_id: hello.subject_id,
            resumed: false,
            recruiter: hello.recruiter,
        };
        self.record(scene, event, out);
    }

    /// Sends `welcome` with the session's current `resume_token`.
    pub(super) fn welcome(&self, pid: Pid, out: &mut Vec<Action>) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        let cfg = self.scenes[p.scene].cfg();
        let msg = ServerMessage::Welcome(Welcome {
            subject_id: p.subject_id.clone(),
            scene_id: cfg.id.clone(),
            resume_token: p.resume_token.clone(),
            group_size: cfg.group_size,
            hide_lobby_count: cfg.hide_lobby_count,
            waitroom_timeout_ms: cfg.waitroom_timeout_ms,
            leave_button_after_ms: cfg.leave_button_after_ms,
        });
        self.send(pid, msg, out);
    }

    /// A `hello` with the session's `resume_token`: the new connection takes the session over.
    pub(super) fn resume(&mut self, now: Instant, conn: ConnId, pid: Pid, out: &mut Vec<Action>) {
        let old = self.participants.get(&pid).and_then(|p| p.conn);
        if let Some(old) = old {
            // Taking over a live connection: the old socket is closed, and whatever it was
            // doing (a probe) ends as for a drop.
            self.conns.remove(&old);
            out.push(Action::Close { conn: old });
            self.on_drop(now, pid, out);
        }
        if !self.participants.contains_key(&pid) {
            // The drop ended the session (its waitroom time was up).
            let m = "Your time in the waitroom is over; thank you for waiting.";
            return self.refuse(now, conn, ErrorCode::AlreadyDone, m, out);
        }
        let token = self.ids.resume_token();
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        p.conn = Some(conn);
        p.grace_until = None;
        p.resume_token = token;
        p.welcomed_at = now;
        let scene = p.scene;
        let subject_id = p.subject_id.clone();
        let state = p.state.clone();
        self.conns.insert(conn, ConnState::Bound(pid));
        self.welcome(pid, out);
        self.record(
            scene,
            ResearchEvent::ParticipantJoined {
                subject_id,
                resumed: true,
                recruiter: None,
            },
            out,
        );
        match state {
            PState::Waiting => {
                self.join_waiting(now, pid, out);
                self.try_match(now, pid, out);
            }
            PState::InGame(mut start) => {
                // The new connection is a new page: it holds none of the probes' connections,
                // so every pair of this member gets a fresh game connection (the peers' pages
                // replace theirs when its offer comes, PROTOCOL.md "Handover").
                for probe in &mut start.probes {
                    probe.handover = false;
                }
                if let Some(p) = self.participants.get_mut(&pid) {
                    p.state = PState::InGame(start.clone());
                }
                let ended = self.games.is_ended(&start.game_id);
                let game_id = start.game_id.clone();
                self.send(pid, ServerMessage::GameStart(start), out);
                if ended {
                    let msg = ServerMessage::GameEnded(GameEnded {
                        game_id,
                        reason: GameEndReason::PeerLeft,
                        message: "This game has ended.".to_owned(),
                    });
                    self.send(pid, msg, out);
                }
            }
            // Measuring: the new connection's pings bring the first estimate.
            // InGroup cannot happen: a drop takes the participant out of their group.
            PState::Measuring | PState::InGroup(_) => {}
        }
        if let Some(outcome) = self
            .participants
            .get_mut(&pid)
            .and_then(|p| p.undelivered.take())
        {
            self.send(pid, ServerMessage::Outcome(outcome), out);
        }
    }

    /// One server-RTT sample: updates the median (and the waiting set's copy); enters the
    /// waitroom once the estimate is ready ([`ENTRY_PINGS`] samples, or [`ENTRY_MAX_WAIT`]).
    pub(super) fn on_rtt(
        &mut self,
        now: Instant,
        conn: ConnId,
        rtt_ms: f64,
        out: &mut Vec<Action>,
    ) {
        let Some(ConnState::Bound(pid)) = self.conns.get(&conn).copied() else {
            return;
        };
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        p.rtt.push(rtt_ms);
        if p.state == PState::Waiting {
            self.scenes[p.scene].update_rtt(pid, p.rtt.median_ms());
        }
        let ready = p.rtt.len() >= ENTRY_PINGS as usize
            || now.saturating_duration_since(p.welcomed_at) >= ENTRY_MAX_WAIT;
        if p.state == PState::Measuring && ready && !p.rtt.is_empty() {
            let limit = self.scenes[p.scene].cfg().max_entry_server_rtt_ms;
            match (p.rtt.median_ms(), limit) {
                (Some(median), Some(max)) if median > max => {
                    self.refuse_server_rtt(now, conn, pid, median, max, out);
                }
                _ => self.enter_waitroom(now, pid, out),
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Leaving, dropping
    // -----------------------------------------------------------------------------------------

    /// `leave`: final. The socket closes, the session ends, a game ends for the others, a
    /// probe fails at once.
    pub(super) fn on_leave(&mut self, now: Instant, conn: ConnId, pid: Pid, out: &mut Vec<Action>) {
        self.give_outcome(pid, Outcome::LEFT, out);
        self.conns.remove(&conn);
        out.push(Action::Close { conn });
        let Some(Removed { participant: p, .. }) = self.remove_participant(now, pid) else {
            return;
        };
        self.scenes[p.scene].mark_done(p.subject_id.clone());
        self.member_gone(now, pid, &p.state, &p.subject_id, out);
        let event = ResearchEvent::ParticipantLeft {
            subject_id: p.subject_id,
            reason: LeaveReason::Leave,
        };
        self.record(p.scene, event, out);
        let judged = self.probes.fail_member(now, pid);
        self.act_on_probes(now, judged, out);
        self.retry_if_groups(now, p.scene, out);
    }

    /// The participant's connection is gone (closed by the peer, or by us). They keep their
    /// session for `reconnect_grace_ms`.
    pub(super) fn on_drop(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        self.leave_waiting(now, pid);
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        p.conn = None;
        let grace = Duration::from_millis(self.scenes[p.scene].cfg().reconnect_grace_ms);
        let until = now + grace;
        p.grace_until = Some(until);
        let (scene, in_group) = (p.scene, matches!(p.state, PState::InGroup(_)));
        let event = ResearchEvent::ParticipantDropped {
            subject_id: p.subject_id.clone(),
            reconnect_grace_ms: grace.as_millis() as u64,
        };
        self.record(scene, event, out);
        self.schedule(until, Timer::Grace(pid));
        if in_group {
            let judged = self.probes.fail_member(now, pid);
            self.act_on_probes(now, judged, out);
        }
        self.retry_if_groups(now, scene, out);
    }

    pub(super) fn grace_expired(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        let expired = self
            .participants
            .get(&pid)
            .is_some_and(|p| p.conn.is_none() && p.grace_until.is_some_and(|t| t <= now));
        if !expired {
            return;
        }
        let Some(Removed { participant: p, .. }) = self.remove_participant(now, pid) else {
            return;
        };
        if matches!(p.state, PState::InGame(_)) {
            // Matched into a game: their part in this scene is done.
            self.scenes[p.scene].mark_done(p.subject_id.clone());
        }
        self.member_gone(now, pid, &p.state, &p.subject_id, out);
        let event = ResearchEvent::ParticipantLeft {
            subject_id: p.subject_id,
            reason: LeaveReason::GraceExpired,
        };
        self.record(p.scene, event, out);
    }

    /// A member of a game is gone for good: the game ends for the others.
    pub(super) fn member_gone(
        &mut self,
        now: Instant,
        pid: Pid,
        state: &PState,
        subject: &SubjectId,
        out: &mut Vec<Action>,
    ) {
        if let PState::InGame(start) = state {
            let mut effects = Vec::new();
            self.games
                .member_gone(now, &start.game_id, pid, subject.clone(), &mut effects);
            self.apply(effects, None, out);
        }
    }

    /// [`Event::Shutdown`](crate::core::Event::Shutdown): per scene, `server_stopping`, then
    /// `participant_left` (`server_shutdown`) for each live session in the order they began;
    /// the core stops (every later event is ignored). Games and probes in progress end with the
    /// server: they get no `game_ended` or `probe_result` line.
    pub(super) fn on_shutdown(&mut self, out: &mut Vec<Action>) {
        self.stopped = true;
        let mut live: Vec<(Pid, usize, SubjectId)> = self
            .participants
            .iter()
            .map(|(pid, p)| (*pid, p.scene, p.subject_id.clone()))
            .collect();
        live.sort_by_key(|(pid, ..)| *pid);
        for scene in 0..self.scenes.len() {
            let live_participants = live.iter().filter(|(_, s, _)| *s == scene).count();
            self.record(
                scene,
                ResearchEvent::ServerStopping { live_participants },
                out,
            );
            for (_, _, subject_id) in live.iter().filter(|(_, s, _)| *s == scene) {
                let event = ResearchEvent::ParticipantLeft {
                    subject_id: subject_id.clone(),
                    reason: LeaveReason::ServerShutdown,
                };
                self.record(scene, event, out);
            }
        }
    }

    /// Removes a participant from every index (not from a probe: callers fail those).
    pub(super) fn remove_participant(&mut self, now: Instant, pid: Pid) -> Option<Removed> {
        let participant = self.participants.remove(&pid)?;
        for key in &participant.timers {
            self.timers.remove(key);
        }
        let scene = participant.scene;
        let departure = self.scenes[scene].end_session(now, pid, &participant.subject_id);
        if let Some(at) = departure.broadcast_at {
            self.schedule(at, Timer::Broadcast(scene));
        }
        Some(Removed {
            participant,
            entered_at: departure.entered_at,
        })
    }
}
