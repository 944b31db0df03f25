//! The researcher's own study on top of matchmaking: outcomes, `finish`, the researcher's
//! `record` events, `attention` and the scene's attention rule (`max_hidden_ms`), and the entry
//! rules (`max_entry_server_rtt_ms`, `hello.browser`).
//!
//! Outcomes (PROTOCOL.md, Outcomes). Every participant gets one `outcome`, at most, and its
//! `participant_outcome` line: `completed` or the scene's own on `finish`; `left` on `leave`;
//! `waitroom_timeout` with the waitroom deadline; `partner_lost` after `game_ended` (and `left`
//! for the member whose hidden page ended the game); `entry_refused` when an entry rule
//! refuses them. What each says is [`crate::core::outcomes`]'s part.
//!
//! A member who finishes leaves their game without ending it for the others: the game ends
//! (`finished`, told to nobody) once every member has finished, or when one goes for good
//! while others still play (`peer_left`, as before).

use std::time::{Duration, Instant};

use pairlab_shared::{
    Attention, ErrorCode, Finish, GameEndReason, GameId, Hello, Outcome, PlayerIndex, RecordEvent,
    ServerMessage, SubjectId,
};

use super::{Core, PState, Removed, Timer};
use crate::core::ids::{ConnId, Pid};
use crate::core::outcomes::{check_finish, outcome_message, Recipient};
use crate::core::research::{LeaveReason, RefusalReason, ResearchEvent};
use crate::core::Action;

/// Sustained `record` (and `attention`) messages a participant may send, per second.
pub const RECORD_EVENTS_PER_S: f64 = 10.0;
/// `record` (and `attention`) messages a participant may send at once.
pub const RECORD_EVENTS_BURST: f64 = 100.0;

/// Who a researcher's line is about: the scene, the participant, and their game and player
/// index while they are in one.
struct Attribution {
    scene: usize,
    subject_id: SubjectId,
    game_id: Option<GameId>,
    player_index: Option<PlayerIndex>,
}

impl Core {
    /// The attribution of a line about `pid`.
    fn attribution(&self, pid: Pid) -> Option<Attribution> {
        let p = self.participants.get(&pid)?;
        let game = self.game_of(pid);
        Some(Attribution {
            scene: p.scene,
            subject_id: p.subject_id.clone(),
            game_id: game.as_ref().map(|(g, _)| g.clone()),
            player_index: game.map(|(_, i)| i),
        })
    }

    /// The participant's game and player index, while they are in one.
    fn game_of(&self, pid: Pid) -> Option<(GameId, PlayerIndex)> {
        match &self.participants.get(&pid)?.state {
            PState::InGame(start) => Some((start.game_id.clone(), start.player_index)),
            _ => None,
        }
    }

    /// Sends the participant their `outcome` `name` and writes its `participant_outcome`
    /// line, unless they had one already (an outcome goes once). Without a connection (in
    /// their reconnect grace) it is kept and sent when they resume.
    pub(super) fn give_outcome(&mut self, pid: Pid, name: &str, out: &mut Vec<Action>) {
        let game = self.game_of(pid);
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        if p.outcome_given {
            return;
        }
        p.outcome_given = true;
        let scene = p.scene;
        let msg = outcome_message(
            self.scenes[scene].cfg(),
            name,
            Recipient {
                subject_id: &p.subject_id,
                recruiter: p.recruiter.as_deref(),
                game: game.as_ref().map(|(g, i)| (g, *i)),
            },
        );
        let event = ResearchEvent::ParticipantOutcome {
            subject_id: p.subject_id.clone(),
            outcome: msg.outcome.clone(),
            completion_code: msg.completion_code.clone(),
            game_id: game.as_ref().map(|(g, _)| g.clone()),
            player_index: game.map(|(_, i)| i),
        };
        self.record(scene, event, out);
        match self.participants.get_mut(&pid) {
            Some(p) if p.conn.is_none() => p.undelivered = Some(msg),
            _ => self.send(pid, ServerMessage::Outcome(msg), out),
        }
    }

    /// `finish`: the participant's outcome (`completed`, or one of the scene's own), then the
    /// connection closes and they are done in the scene. Their game goes on for the others.
    /// An outcome the page may not claim is a `bad_message` (the connection stays open).
    pub(super) fn on_finish(
        &mut self,
        now: Instant,
        conn: ConnId,
        pid: Pid,
        finish: Finish,
        out: &mut Vec<Action>,
    ) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        if let Err(e) = check_finish(self.scenes[p.scene].cfg(), &finish.outcome) {
            return self.refuse(now, conn, ErrorCode::BadMessage, e.to_string(), out);
        }
        self.give_outcome(pid, &finish.outcome, out);
        self.conns.remove(&conn);
        out.push(Action::Close { conn });
        let Some(Removed { participant: p, .. }) = self.remove_participant(now, pid) else {
            return;
        };
        self.scenes[p.scene].mark_done(p.subject_id.clone());
        match &p.state {
            PState::InGame(start) => {
                let mut effects = Vec::new();
                self.games.finish_member(
                    now,
                    &start.game_id,
                    pid,
                    p.subject_id.clone(),
                    &mut effects,
                );
                self.apply(effects, None, out);
            }
            PState::InGroup(_) => {
                let judged = self.probes.fail_member(now, pid);
                self.act_on_probes(now, judged, out);
            }
            PState::Measuring | PState::Waiting => {}
        }
        let event = ResearchEvent::ParticipantLeft {
            subject_id: p.subject_id,
            reason: LeaveReason::Finished,
        };
        self.record(p.scene, event, out);
        self.retry_if_groups(now, p.scene, out);
    }

    /// Takes one token from the participant's `record`/`attention` bucket; `false` (and the
    /// `bad_message` sent, the refusal counted) when it is empty.
    fn allow_record(
        &mut self,
        now: Instant,
        conn: ConnId,
        pid: Pid,
        out: &mut Vec<Action>,
    ) -> bool {
        let allowed = self
            .participants
            .get_mut(&pid)
            .is_some_and(|p| p.records.allow(now));
        if !allowed {
            self.record_events_refused += 1;
            let m = format!(
                "Too many record events: at most {RECORD_EVENTS_PER_S} a second, in bursts of \
                 {RECORD_EVENTS_BURST}."
            );
            self.refuse(now, conn, ErrorCode::BadMessage, m, out);
        }
        allowed
    }

    /// The attribution of a `record` or `attention` from `pid`, once its rate allows it
    /// (`None`: over the rate, already answered, or no longer a participant).
    fn allowed_attribution(
        &mut self,
        now: Instant,
        conn: ConnId,
        pid: Pid,
        out: &mut Vec<Action>,
    ) -> Option<Attribution> {
        if !self.allow_record(now, conn, pid, out) {
            return None;
        }
        self.attribution(pid)
    }

    /// `record`: a researcher's own event, written as a `custom` line (name and size were
    /// checked when the frame was decoded; the rate here).
    pub(super) fn on_record(
        &mut self,
        now: Instant,
        conn: ConnId,
        pid: Pid,
        event: RecordEvent,
        out: &mut Vec<Action>,
    ) {
        let Some(Attribution {
            scene,
            subject_id,
            game_id,
            player_index,
        }) = self.allowed_attribution(now, conn, pid, out)
        else {
            return;
        };
        let line = ResearchEvent::Custom {
            subject_id,
            game_id,
            player_index,
            name: event.event,
            fields: event.fields,
        };
        self.record(scene, line, out);
    }

    /// `attention`: an `attention` line; a hidden page starts the scene's attention rule
    /// (`[scene.game] max_hidden_ms`: a timer, cancelled by `hidden: false`).
    pub(super) fn on_attention(
        &mut self,
        now: Instant,
        conn: ConnId,
        pid: Pid,
        attention: Attention,
        out: &mut Vec<Action>,
    ) {
        let Some(Attribution {
            scene,
            subject_id,
            game_id,
            player_index,
        }) = self.allowed_attribution(now, conn, pid, out)
        else {
            return;
        };
        let line = ResearchEvent::Attention {
            subject_id,
            game_id,
            player_index,
            hidden: attention.hidden,
            hidden_ms: attention.hidden_ms,
        };
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        let max_hidden_ms = self.scenes[scene].cfg().game.max_hidden_ms;
        let mut due = None;
        if !attention.hidden {
            p.hidden_since = None;
        } else if p.hidden_since.is_none() {
            p.hidden_since = Some(now);
            due = max_hidden_ms.map(|ms| now + Duration::from_millis(ms));
        }
        self.record(scene, line, out);
        if let Some(at) = due {
            self.schedule(at, Timer::Hidden(pid));
        }
    }

    /// A game starts with `pid` in it: if their page is hidden already, the attention rule
    /// counts from the game's start.
    pub(super) fn watch_hidden_at_start(&mut self, now: Instant, pid: Pid) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        let max = self.scenes[p.scene].cfg().game.max_hidden_ms;
        if let (Some(_), Some(ms)) = (p.hidden_since, max) {
            self.schedule(now + Duration::from_millis(ms), Timer::Hidden(pid));
        }
    }

    /// The attention timer of `pid` fired: if their page has been hidden `max_hidden_ms` or
    /// longer while they play, their game ends (`member_hidden`): `game_ended` to every member
    /// still playing, then `partner_lost` to the others and `left` to them.
    pub(super) fn hidden_too_long(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        let (Some(since), Some(max)) = (
            p.hidden_since,
            self.scenes[p.scene].cfg().game.max_hidden_ms,
        ) else {
            return;
        };
        let PState::InGame(start) = &p.state else {
            return;
        };
        if since + Duration::from_millis(max) > now
            || self.games.playing(&start.game_id, pid).is_none()
        {
            return;
        }
        let (game_id, subject) = (start.game_id.clone(), p.subject_id.clone());
        let mut effects = Vec::new();
        self.games.end(
            now,
            &game_id,
            GameEndReason::MemberHidden,
            subject,
            &mut effects,
        );
        self.apply(effects, Some(pid), out);
    }

    /// Entry rule: `hello.browser` says this browser cannot open a WebRTC DataChannel. The
    /// `outcome` (`entry_refused`) and then `error entry_refused`, which closes; no session
    /// begins, so the participant may come back with another browser.
    pub(super) fn refuse_browser(
        &mut self,
        now: Instant,
        conn: ConnId,
        scene: usize,
        hello: &Hello,
        out: &mut Vec<Action>,
    ) {
        let msg = outcome_message(
            self.scenes[scene].cfg(),
            Outcome::ENTRY_REFUSED,
            Recipient {
                subject_id: &hello.subject_id,
                recruiter: hello.recruiter.as_deref(),
                game: None,
            },
        );
        let refused = ResearchEvent::ParticipantRefused {
            subject_id: hello.subject_id.clone(),
            reason: RefusalReason::Browser,
            server_rtt_median_ms: None,
            max_entry_server_rtt_ms: None,
        };
        self.record(scene, refused, out);
        let outcome = ResearchEvent::ParticipantOutcome {
            subject_id: hello.subject_id.clone(),
            outcome: msg.outcome.clone(),
            completion_code: msg.completion_code.clone(),
            game_id: None,
            player_index: None,
        };
        self.record(scene, outcome, out);
        out.push(Action::Send {
            conn,
            msg: ServerMessage::Outcome(msg),
        });
        let m = "This browser cannot open WebRTC connections, which this study needs; please \
                 try a current Chrome, Firefox, Edge or Safari.";
        self.refuse(now, conn, ErrorCode::EntryRefused, m, out);
    }

    /// Entry rule: the first server-RTT median of a new participant is above the scene's
    /// `max_entry_server_rtt_ms`. The `outcome` (`entry_refused`), `error entry_refused`, the
    /// connection closes and the session ends (they are not done: they may try again from a
    /// better connection).
    pub(super) fn refuse_server_rtt(
        &mut self,
        now: Instant,
        conn: ConnId,
        pid: Pid,
        median_ms: f64,
        max_ms: f64,
        out: &mut Vec<Action>,
    ) {
        self.give_outcome(pid, Outcome::ENTRY_REFUSED, out);
        let m = format!(
            "Your connection to the server is too slow for this study (round trip \
             {median_ms:.0} ms, at most {max_ms:.0} ms), so you cannot take part."
        );
        out.push(Action::Send {
            conn,
            msg: ServerMessage::error(ErrorCode::EntryRefused, m),
        });
        out.push(Action::Close { conn });
        self.conns.remove(&conn);
        let Some(Removed { participant: p, .. }) = self.remove_participant(now, pid) else {
            return;
        };
        let refused = ResearchEvent::ParticipantRefused {
            subject_id: p.subject_id.clone(),
            reason: RefusalReason::ServerRtt,
            server_rtt_median_ms: Some(median_ms),
            max_entry_server_rtt_ms: Some(max_ms),
        };
        self.record(p.scene, refused, out);
        let left = ResearchEvent::ParticipantLeft {
            subject_id: p.subject_id,
            reason: LeaveReason::EntryRefused,
        };
        self.record(p.scene, left, out);
    }
}
