//! The [`Core`]: owns connections and participants, routes each [`Event`] to the component whose
//! job it is, and carries out what the components decide.
//!
//! A participant's life in a scene (PROTOCOL.md, Session and Waitroom):
//!
//! ```text
//! hello ─► Measuring ─(server RTT known)─► Waiting ─(matchmaker)─► InGroup ─(verdict: accepted)─► InGame
//!                                            ▲                        │
//!                                            └──(verdict: rejected)───┘
//! ```
//!
//! Out of every state: `leave` (final), a drop (the socket closed: the participant keeps their
//! place for `reconnect_grace_ms` and can resume with the `resume_token`), and in `Waiting` the
//! waitroom deadline. Only `Waiting` participants with a live connection can be matched.
//!
//! Matching is retried whenever someone arrives, returns from a rejected group, leaves or drops:
//! each arriving or returning participant is the "arriving" side of
//! [`super::matchmaker::Matchmaker::find_match`] against everyone waiting, in arrival order. For
//! groups of two this guarantees that no participant waits while an untried compatible partner
//! waits too; for larger groups the matchmaker's greedy search is retried from every waiting
//! participant when someone leaves.
//!
//! Probe messages go to the [`ProbeCoordinator`], which decides; the router then acts on each
//! [`PairJudged`] in order: it writes the `probe_result` line and, when the judgement completed a
//! group's [`Verdict`], starts the game or returns the members to the waitroom (which remembers
//! the failed pairs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pairlab_shared::{
    ClientMessage, DecodeError, ErrorCode, GameEndReason, GameEnded, GameStart, Hello,
    ServerMessage, SubjectId, Waitroom, WaitroomTimeout, Welcome,
};

use super::games::{GameMember, Games, NewGame};
use super::ice::IceServers;
use super::ids::{ConnId, GroupId, IdSource, Pid};
use super::matchmaker::Candidate;
use super::probe::{
    GroupVerdict, Handled, NewRound, PairJudged, ProbeCoordinator, ProbeMember, Verdict,
};
use super::research::{LeaveReason, PairRtt, ProbeFailure, ResearchEvent};
use super::rtt::{RttEstimator, ENTRY_PINGS};
use super::waitroom::{SceneWaitroom, Waiter, WAITROOM_UPDATE_INTERVAL};
use super::{Action, CoreClock, Effect, Event};
use crate::config::Config;

/// A participant enters matchmaking after [`ENTRY_PINGS`] server-RTT samples, or after the first
/// sample that arrives this long after `welcome` (a slow or lossy link should not wait for
/// three round trips).
pub const ENTRY_MAX_WAIT: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    AwaitingHello,
    Bound(Pid),
}

#[derive(Debug, Clone, PartialEq)]
enum PState {
    Measuring,
    Waiting,
    InGroup(GroupId),
    InGame(Box<GameStart>),
}

#[derive(Debug)]
struct Participant {
    scene: usize,
    subject_id: SubjectId,
    conn: Option<ConnId>,
    resume_token: String,
    rtt: RttEstimator,
    welcomed_at: Instant,
    state: PState,
    /// FIFO position, assigned at first entry to the waitroom and kept for good.
    arrival_seq: Option<u64>,
    entered_at: Option<Instant>,
    deadline: Option<Instant>,
    grace_until: Option<Instant>,
    /// When the last `waitroom` went out and the count it carried.
    last_waitroom: Option<(Instant, Option<u32>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Waitroom(Pid),
    Grace(Pid),
    Broadcast(usize),
}

/// Counts for `/healthz` and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CoreStats {
    /// Open WebSocket connections.
    pub connections: usize,
    /// Sessions (connected or in their reconnect grace).
    pub participants: usize,
    /// Participants waiting to be matched, all scenes.
    pub waiting: usize,
    /// Live probes.
    pub probes: usize,
    /// Proposed groups being probed.
    pub groups: usize,
}

/// The whole matchmaking state of one server: every scene's waitroom, sessions, probes and
/// games. Driven by [`Core::handle`]; see the module docs of [`crate::core`].
pub struct Core {
    ice: IceServers,
    ids: Box<dyn IdSource>,
    conns: HashMap<ConnId, ConnState>,
    participants: HashMap<Pid, Participant>,
    scenes: Vec<SceneWaitroom>,
    probes: ProbeCoordinator,
    games: Games,
    timers: BTreeMap<(Instant, u64), Timer>,
    next_timer: u64,
    next_pid: u64,
    next_group: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Core {
    /// A core for `config`, with nobody connected. `clock` says which Unix time the monotonic
    /// origin stands for (it dates TURN credentials; the core reads no clock itself: every
    /// event comes with its time). `ids` mints probe session ids, game ids and resume tokens:
    /// [`super::RandomIds`] for a server, [`super::SeededIds`] for reproducible runs.
    pub fn new(config: Arc<Config>, clock: CoreClock, ids: Box<dyn IdSource>) -> Self {
        Core {
            ice: IceServers::new(&config, clock),
            ids,
            conns: HashMap::new(),
            participants: HashMap::new(),
            scenes: config.scenes.iter().map(SceneWaitroom::new).collect(),
            probes: ProbeCoordinator::new(),
            games: Games::default(),
            timers: BTreeMap::new(),
            next_timer: 0,
            next_pid: 1,
            next_group: 1,
        }
    }

    /// Applies one event that happened at `now` and appends what to do to `out`, in order.
    pub fn handle(&mut self, now: Instant, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::Connected { conn } => {
                // Ids are never reused by the shell; should one be, the old socket is gone.
                if let Some(ConnState::Bound(pid)) =
                    self.conns.insert(conn, ConnState::AwaitingHello)
                {
                    if let Some(p) = self.participants.get_mut(&pid) {
                        p.conn = None;
                    }
                    self.on_drop(now, pid, out);
                }
            }
            Event::Message { conn, msg } => self.on_message(now, conn, msg, out),
            Event::Malformed { conn, error } => self.on_malformed(now, conn, error, out),
            Event::RttSample { conn, rtt_ms } => self.on_rtt(now, conn, rtt_ms, out),
            Event::Disconnected { conn } => {
                if let Some(ConnState::Bound(pid)) = self.conns.remove(&conn) {
                    self.on_drop(now, pid, out);
                }
            }
            Event::Tick => self.on_tick(now, out),
        }
    }

    /// The earliest time at which [`Event::Tick`] has work to do; `None` when nothing is
    /// scheduled. (A deadline may turn out to have nothing to do; ticking early is harmless.)
    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.first_key_value().map(|((t, _), _)| *t);
        match (timer, self.probes.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Current counts.
    pub fn stats(&self) -> CoreStats {
        CoreStats {
            connections: self.conns.len(),
            participants: self.participants.len(),
            waiting: self.scenes.iter().map(SceneWaitroom::num_waiting).sum(),
            probes: self.probes.len(),
            groups: self.probes.rounds(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing
    // -----------------------------------------------------------------------------------------

    fn schedule(&mut self, at: Instant, timer: Timer) {
        self.next_timer += 1;
        self.timers.insert((at, self.next_timer), timer);
    }

    fn send(&self, pid: Pid, msg: ServerMessage, out: &mut Vec<Action>) {
        if let Some(conn) = self.participants.get(&pid).and_then(|p| p.conn) {
            out.push(Action::Send { conn, msg });
        }
    }

    fn record(&self, scene: usize, event: ResearchEvent, out: &mut Vec<Action>) {
        out.push(Action::Record {
            scene_id: self.scenes[scene].cfg().id.clone(),
            event,
        });
    }

    /// Carries out a component's effects, in order.
    fn apply(&self, effects: Vec<Effect>, out: &mut Vec<Action>) {
        for effect in effects {
            match effect {
                Effect::Send(pid, msg) => self.send(pid, msg, out),
                Effect::Record(scene, event) => self.record(scene, event, out),
            }
        }
    }

    /// Sends `error` and closes the connection. A bound participant is treated as dropped.
    fn refuse(
        &mut self,
        now: Instant,
        conn: ConnId,
        code: ErrorCode,
        message: impl Into<String>,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Send {
            conn,
            msg: ServerMessage::error(code, message),
        });
        if code.closes_connection() {
            out.push(Action::Close { conn });
            if let Some(ConnState::Bound(pid)) = self.conns.remove(&conn) {
                self.on_drop(now, pid, out);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Frames
    // -----------------------------------------------------------------------------------------

    fn on_malformed(
        &mut self,
        now: Instant,
        conn: ConnId,
        error: DecodeError,
        out: &mut Vec<Action>,
    ) {
        let Some(state) = self.conns.get(&conn).copied() else {
            return;
        };
        let (code, message) = match state {
            ConnState::AwaitingHello if error.code() == ErrorCode::InvalidSubjectId => {
                (ErrorCode::InvalidSubjectId, error.to_string())
            }
            // A hello with a mistyped optional field is still a hello: say what is wrong and
            // let the client try again.
            ConnState::AwaitingHello if error.is_hello() => {
                (ErrorCode::BadMessage, error.to_string())
            }
            ConnState::AwaitingHello => (
                ErrorCode::HelloRequired,
                format!("The first message must be a hello ({error})."),
            ),
            ConnState::Bound(_) if error.is_hello() => (
                ErrorCode::HelloRequired,
                "hello may be sent only once per connection.".to_owned(),
            ),
            ConnState::Bound(_) => (error.code(), error.to_string()),
        };
        self.refuse(now, conn, code, message, out);
    }

    fn on_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: ClientMessage,
        out: &mut Vec<Action>,
    ) {
        let Some(state) = self.conns.get(&conn).copied() else {
            return;
        };
        let (pid, msg) = match (state, msg) {
            (ConnState::AwaitingHello, ClientMessage::Hello(hello)) => {
                return self.on_hello(now, conn, hello, out);
            }
            (ConnState::AwaitingHello, other) => {
                let m = format!(
                    "The first message must be a hello, not {}.",
                    other.type_name()
                );
                return self.refuse(now, conn, ErrorCode::HelloRequired, m, out);
            }
            (ConnState::Bound(_), ClientMessage::Hello(_)) => {
                let m = "hello may be sent only once per connection.";
                return self.refuse(now, conn, ErrorCode::HelloRequired, m, out);
            }
            (ConnState::Bound(pid), msg) => (pid, msg),
        };
        match msg {
            ClientMessage::Hello(_) => {}
            // The shell answers pongs itself (RttSample); one reaching the core is stale.
            ClientMessage::Pong(_) => {}
            ClientMessage::Leave => self.on_leave(now, conn, pid, out),
            ClientMessage::ProbeReady(r) => {
                match self.probes.handle_ready(now, &r.probe_session_id, pid) {
                    Ok(Handled::Applied(msgs)) => {
                        for (to, m) in msgs {
                            self.send(to, m, out);
                        }
                    }
                    Ok(Handled::Late) => {}
                    Err(e) => self.refuse(now, conn, ErrorCode::NotAMember, e.to_string(), out),
                }
            }
            ClientMessage::ProbeSignal(s) => match self.probes.handle_signal(pid, s) {
                Ok(Handled::Applied((to, m))) => self.send(to, m, out),
                Ok(Handled::Late) => {}
                Err(e) => self.refuse(now, conn, ErrorCode::NotAMember, e.to_string(), out),
            },
            ClientMessage::ProbeResult(r) => match self.probes.handle_result(now, pid, r) {
                Ok(Handled::Applied(judged)) => self.act_on_probes(now, judged, out),
                Ok(Handled::Late) => {}
                Err(e) => self.refuse(now, conn, ErrorCode::NotAMember, e.to_string(), out),
            },
            game @ (ClientMessage::WebrtcSignal(_)
            | ClientMessage::P2pConnectionType(_)
            | ClientMessage::P2pQuality(_)
            | ClientMessage::P2pIceRestart(_)
            | ClientMessage::P2pConnectionFailed(_)
            | ClientMessage::EpisodeSummary(_)) => {
                let mut effects = Vec::new();
                match self.games.handle(pid, game, &mut effects) {
                    Ok(()) => self.apply(effects, out),
                    Err(e) => self.refuse(now, conn, ErrorCode::NotAMember, e.to_string(), out),
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sessions: hello, resume, server RTT
    // -----------------------------------------------------------------------------------------

    fn on_hello(&mut self, now: Instant, conn: ConnId, hello: Hello, out: &mut Vec<Action>) {
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
        if s.is_done(&hello.subject_id) {
            let m = "You have already taken part in this session; thank you.";
            return self.refuse(now, conn, ErrorCode::AlreadyDone, m, out);
        }
        if let Some(pid) = s.session(&hello.subject_id) {
            let token_ok = self
                .participants
                .get(&pid)
                .is_some_and(|p| hello.resume_token.as_deref() == Some(p.resume_token.as_str()));
            if token_ok {
                return self.resume(now, conn, pid, out);
            }
            let m = "This participant is already connected (another tab or window?).";
            return self.refuse(now, conn, ErrorCode::DuplicateSession, m, out);
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
                arrival_seq: None,
                entered_at: None,
                deadline: None,
                grace_until: None,
                last_waitroom: None,
            },
        );
        self.scenes[scene].add_session(hello.subject_id.clone(), pid);
        self.conns.insert(conn, ConnState::Bound(pid));
        self.welcome(pid, out);
        let event = ResearchEvent::ParticipantJoined {
            subject_id: hello.subject_id,
            resumed: false,
        };
        self.record(scene, event, out);
    }

    fn welcome(&self, pid: Pid, out: &mut Vec<Action>) {
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
        });
        self.send(pid, msg, out);
    }

    /// A `hello` with the session's `resume_token`: the new connection takes the session over.
    fn resume(&mut self, now: Instant, conn: ConnId, pid: Pid, out: &mut Vec<Action>) {
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
            },
            out,
        );
        match state {
            PState::Waiting => {
                self.join_waiting(now, pid, out);
                self.try_match(now, pid, out);
            }
            PState::InGame(start) => {
                let ended = self.games.is_ended(&start.game_id);
                let game_id = start.game_id.clone();
                self.send(pid, ServerMessage::GameStart(*start), out);
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
    }

    fn on_rtt(&mut self, now: Instant, conn: ConnId, rtt_ms: f64, out: &mut Vec<Action>) {
        let Some(ConnState::Bound(pid)) = self.conns.get(&conn).copied() else {
            return;
        };
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        p.rtt.push(rtt_ms);
        if let (PState::Waiting, Some(seq)) = (&p.state, p.arrival_seq) {
            self.scenes[p.scene].update_rtt(seq, p.rtt.median_ms());
        }
        let ready = p.rtt.len() >= ENTRY_PINGS as usize
            || now.saturating_duration_since(p.welcomed_at) >= ENTRY_MAX_WAIT;
        if p.state == PState::Measuring && ready && !p.rtt.is_empty() {
            self.enter_waitroom(now, pid, out);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Waitroom
    // -----------------------------------------------------------------------------------------

    fn enter_waitroom(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        if p.arrival_seq.is_none() {
            let (seq, deadline) = self.scenes[p.scene].admit(now);
            p.arrival_seq = Some(seq);
            p.entered_at = Some(now);
            p.deadline = Some(deadline);
        }
        p.state = PState::Waiting;
        let (scene, deadline) = (p.scene, p.deadline);
        let event = ResearchEvent::ServerRtt {
            subject_id: p.subject_id.clone(),
            median_ms: p.rtt.median_ms().unwrap_or(f64::NAN),
            samples_ms: p.rtt.samples_ms(),
        };
        self.record(scene, event, out);
        if let Some(deadline) = deadline {
            self.schedule(deadline, Timer::Waitroom(pid));
        }
        self.join_waiting(now, pid, out);
        self.try_match(now, pid, out);
    }

    /// Puts a connected `Waiting` participant into the matchable set and tells them so.
    fn join_waiting(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        if self.insert_waiting(now, pid) {
            self.send_waitroom(now, pid, out);
        }
    }

    /// Puts a connected `Waiting` participant into the matchable set; `false` if they cannot be
    /// (disconnected, or never entered).
    fn insert_waiting(&mut self, now: Instant, pid: Pid) -> bool {
        let Some(p) = self.participants.get(&pid) else {
            return false;
        };
        let (Some(seq), Some(_)) = (p.arrival_seq, p.conn) else {
            return false;
        };
        let scene = p.scene;
        let waiter = Waiter {
            pid,
            rtt_ms: p.rtt.median_ms(),
        };
        if let Some(at) = self.scenes[scene].insert(now, seq, waiter) {
            self.schedule(at, Timer::Broadcast(scene));
        }
        true
    }

    fn leave_waiting(&mut self, now: Instant, pid: Pid) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        let scene = p.scene;
        if let Some(seq) = p.arrival_seq {
            if let Some(at) = self.scenes[scene].remove(now, seq) {
                self.schedule(at, Timer::Broadcast(scene));
            }
        }
    }

    fn send_waitroom(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        let scene = &self.scenes[p.scene];
        let waiting = scene.count();
        let remaining_ms = p
            .deadline
            .map(|d| d.saturating_duration_since(now).as_millis() as u64)
            .unwrap_or(0);
        let msg = ServerMessage::Waitroom(Waitroom {
            waiting,
            group_size: scene.cfg().group_size,
            remaining_ms,
        });
        self.send(pid, msg, out);
        if let Some(p) = self.participants.get_mut(&pid) {
            p.last_waitroom = Some((now, waiting));
        }
    }

    /// The coalesced count broadcast of `scene`: everyone waiting whose last `waitroom` carried
    /// another count gets the new one, unless they got one within the last second (then the
    /// broadcast is scheduled again for them).
    fn broadcast(&mut self, now: Instant, scene: usize, out: &mut Vec<Action>) {
        let Some(count) = self.scenes[scene].take_broadcast(now) else {
            return;
        };
        let mut deferred = false;
        for pid in self.scenes[scene].waiting_pids() {
            let Some(p) = self.participants.get(&pid) else {
                continue;
            };
            match p.last_waitroom {
                Some((_, c)) if c == count => {}
                Some((at, _)) if now < at + WAITROOM_UPDATE_INTERVAL => deferred = true,
                _ => self.send_waitroom(now, pid, out),
            }
        }
        if deferred {
            if let Some(at) = self.scenes[scene].count_changed(now) {
                self.schedule(at, Timer::Broadcast(scene));
            }
        }
    }

    fn waitroom_deadline(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        if p.state == PState::Waiting && p.deadline.is_some_and(|d| d <= now) {
            self.time_out(now, pid, out);
        }
        // InGroup: decided when the group ends (a rejected group's members who are past their
        // deadline time out instead of returning). InGame: matched in time.
    }

    fn time_out(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        let Some(p) = self.remove_participant(now, pid) else {
            return;
        };
        let cfg = self.scenes[p.scene].cfg();
        if let Some(conn) = p.conn {
            let msg = ServerMessage::WaitroomTimeout(WaitroomTimeout {
                message: cfg.timeout_message.clone(),
                redirect_url: cfg.timeout_redirect_url.clone(),
            });
            out.push(Action::Send { conn, msg });
            out.push(Action::Close { conn });
            self.conns.remove(&conn);
        }
        let waited_ms = p
            .entered_at
            .map_or(0.0, |t| ms(now.saturating_duration_since(t)));
        self.scenes[p.scene].mark_done(p.subject_id.clone());
        let event = ResearchEvent::WaitroomTimeout {
            subject_id: p.subject_id,
            waited_ms,
        };
        self.record(p.scene, event, out);
        self.retry_if_groups(now, p.scene, out);
    }

    /// Removes a participant from every index (not from a probe: callers fail those).
    fn remove_participant(&mut self, now: Instant, pid: Pid) -> Option<Participant> {
        self.leave_waiting(now, pid);
        let p = self.participants.remove(&pid)?;
        self.scenes[p.scene].remove_session(&p.subject_id);
        Some(p)
    }

    // -----------------------------------------------------------------------------------------
    // Leaving, dropping
    // -----------------------------------------------------------------------------------------

    fn on_leave(&mut self, now: Instant, conn: ConnId, pid: Pid, out: &mut Vec<Action>) {
        self.conns.remove(&conn);
        out.push(Action::Close { conn });
        let Some(p) = self.remove_participant(now, pid) else {
            return;
        };
        self.scenes[p.scene].mark_done(p.subject_id.clone());
        self.member_gone(&p.state, &p.subject_id, out);
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
    fn on_drop(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
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

    fn grace_expired(&mut self, now: Instant, pid: Pid, out: &mut Vec<Action>) {
        let expired = self
            .participants
            .get(&pid)
            .is_some_and(|p| p.conn.is_none() && p.grace_until.is_some_and(|t| t <= now));
        if !expired {
            return;
        }
        let Some(p) = self.remove_participant(now, pid) else {
            return;
        };
        if matches!(p.state, PState::InGame(_)) {
            // Matched into a game: their part in this scene is done.
            self.scenes[p.scene].mark_done(p.subject_id.clone());
        }
        self.member_gone(&p.state, &p.subject_id, out);
        let event = ResearchEvent::ParticipantLeft {
            subject_id: p.subject_id,
            reason: LeaveReason::GraceExpired,
        };
        self.record(p.scene, event, out);
    }

    /// A member of a game is gone for good: the game ends for the others.
    fn member_gone(&mut self, state: &PState, subject: &SubjectId, out: &mut Vec<Action>) {
        if let PState::InGame(start) = state {
            let mut effects = Vec::new();
            self.games.end(
                &start.game_id,
                GameEndReason::PeerLeft,
                subject.clone(),
                &mut effects,
            );
            self.apply(effects, out);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Matching, probing, starting games
    // -----------------------------------------------------------------------------------------

    /// Someone left the waitroom. With groups of two that cannot make a new match; with larger
    /// groups the greedy search may now succeed where it failed, so retry everyone.
    fn retry_if_groups(&mut self, now: Instant, scene: usize, out: &mut Vec<Action>) {
        if self.scenes[scene].cfg().group_size > 2 {
            for pid in self.scenes[scene].waiting_pids() {
                self.try_match(now, pid, out);
            }
        }
    }

    /// Runs the scene's matchmaker with `anchor` as the arriving participant; proposes the
    /// group it finds.
    fn try_match(&mut self, now: Instant, anchor: Pid, out: &mut Vec<Action>) {
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
    fn propose_group(
        &mut self,
        now: Instant,
        scene: usize,
        mut members: Vec<Pid>,
        out: &mut Vec<Action>,
    ) {
        members.sort_by_key(|pid| self.participants.get(pid).and_then(|p| p.arrival_seq));
        let group = GroupId::new(self.next_group);
        self.next_group += 1;
        for &pid in &members {
            self.leave_waiting(now, pid);
            if let Some(p) = self.participants.get_mut(&pid) {
                p.state = PState::InGroup(group);
            }
        }
        let probe_members: Vec<ProbeMember> = members
            .iter()
            .filter_map(|&pid| {
                self.participants.get(&pid).map(|p| ProbeMember {
                    pid,
                    subject_id: p.subject_id.clone(),
                })
            })
            .collect();
        let server_rtts_ms = members
            .iter()
            .map(|pid| self.participants.get(pid).and_then(|p| p.rtt.median_ms()))
            .collect();
        let s = &self.scenes[scene];
        let cfg = s.cfg();
        let (max_p2p_rtt_ms, timeout_ms) = (cfg.max_p2p_rtt_ms, cfg.probe_timeout_ms);
        let event = ResearchEvent::MatchProposed {
            members: probe_members.iter().map(|m| m.subject_id.clone()).collect(),
            server_rtts_ms,
            matchmaker: s.matchmaker_name(),
            probe: max_p2p_rtt_ms.is_some(),
        };
        self.record(scene, event, out);
        let Some(max_p2p_rtt_ms) = max_p2p_rtt_ms else {
            return self.start_game(now, scene, &members, Vec::new(), out);
        };
        let round = NewRound {
            group,
            scene,
            members: probe_members,
            max_p2p_rtt_ms,
            timeout_ms,
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
    fn act_on_probes(
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
                ..
            }) = j.verdict
            else {
                continue;
            };
            match verdict {
                Verdict::Accepted { pair_rtts } => {
                    self.start_game(now, scene, &members, pair_rtts, out);
                }
                Verdict::Rejected {
                    reason,
                    failed_pairs,
                } => self.reject_group(now, scene, &members, reason, failed_pairs, out),
            }
        }
    }

    /// A rejected group: the waitroom remembers its failed pairs, and its members return to
    /// waiting (or time out, when their waitroom deadline passed during the probe).
    fn reject_group(
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
            if p.deadline.is_some_and(|d| d <= now) {
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

    /// An accepted group becomes a game: `game_start` to every member, who are then `InGame`.
    fn start_game(
        &mut self,
        now: Instant,
        scene: usize,
        members: &[Pid],
        pair_rtts: Vec<PairRtt>,
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
            force_relay: self.scenes[scene].cfg().force_relay,
        };
        let ice = &self.ice;
        let ice_servers_for = |subject: &SubjectId, now| ice.for_subject(subject, now);
        let (starts, record) = self.games.start(game, now, &ice_servers_for);
        for (pid, start) in starts {
            self.send(pid, ServerMessage::GameStart(start.clone()), out);
            if let Some(p) = self.participants.get_mut(&pid) {
                p.state = PState::InGame(Box::new(start));
            }
        }
        self.record(scene, record, out);
    }

    // -----------------------------------------------------------------------------------------
    // Time
    // -----------------------------------------------------------------------------------------

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        let judged = self.probes.expire(now);
        self.act_on_probes(now, judged, out);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Timer::Waitroom(pid) => self.waitroom_deadline(now, pid, out),
                Timer::Grace(pid) => self.grace_expired(now, pid, out),
                Timer::Broadcast(scene) => self.broadcast(now, scene, out),
            }
        }
    }

    /// Checks the core's invariants; `Err` names the first one broken. For tests and fuzzing:
    /// nobody is in two groups, the waiting set holds exactly the connected `Waiting`
    /// participants, every group member is `InGroup` of that group, every live probe has a
    /// deadline and a round, every bound connection belongs to its participant.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, s) in self.scenes.iter().enumerate() {
            for (seq, Waiter { pid, .. }) in s.entries() {
                let p = self
                    .participants
                    .get(pid)
                    .ok_or(format!("waiting {pid} is gone"))?;
                if p.state != PState::Waiting
                    || p.conn.is_none()
                    || p.arrival_seq != Some(seq)
                    || p.scene != i
                {
                    return Err(format!(
                        "waiting {pid} is not a connected Waiting participant"
                    ));
                }
            }
        }
        let mut seen = HashSet::new();
        for (gid, members) in self.probes.round_members() {
            for pid in members {
                if !seen.insert(*pid) {
                    return Err(format!("participant {pid} is in two groups"));
                }
                if let Some(p) = self.participants.get(pid) {
                    if p.state != PState::InGroup(gid) {
                        return Err(format!("member {pid} of group {gid} is {:?}", p.state));
                    }
                }
            }
        }
        for (pid, p) in &self.participants {
            if let PState::InGroup(g) = p.state {
                if !self.probes.round_holds(g, *pid) {
                    return Err(format!(
                        "participant {pid} claims group {g} that does not hold them"
                    ));
                }
            }
            if p.state == PState::Waiting && p.conn.is_some() {
                let in_set = p
                    .arrival_seq
                    .and_then(|s| self.scenes[p.scene].get(s))
                    .is_some_and(|w| w.pid == *pid && w.rtt_ms == p.rtt.median_ms());
                if !in_set {
                    return Err(format!(
                        "connected Waiting participant {pid} is not in the waiting set"
                    ));
                }
            }
            if let Some(conn) = p.conn {
                if self.conns.get(&conn) != Some(&ConnState::Bound(*pid)) {
                    return Err(format!(
                        "participant {pid}'s connection {conn} is not bound to them"
                    ));
                }
            }
        }
        if !self.probes.is_empty() && self.probes.next_deadline().is_none() {
            return Err("a live probe has no deadline".into());
        }
        self.probes.check_invariants()
    }
}
