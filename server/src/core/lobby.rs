//! Sessions, waitrooms, proposed groups and games: the [`Core`] state machine.
//!
//! A participant's life in a scene (PROTOCOL.md, Session and Waitroom):
//!
//! ```text
//! hello ─► Measuring ─(server RTT known)─► Waiting ─(matchmaker)─► InGroup ─(all probes pass)─► InGame
//!                                            ▲                        │
//!                                            └──(a probe failed)──────┘
//! ```
//!
//! Out of every state: `leave` (final), a drop (the socket closed: the participant keeps their
//! place for `reconnect_grace_ms` and can resume with the `resume_token`), and in `Waiting` the
//! waitroom deadline. Only `Waiting` participants with a live connection can be matched.
//!
//! Matching is retried whenever someone arrives, returns from a failed probe, leaves or drops:
//! each arriving or returning participant is the "arriving" side of
//! [`Matchmaker::find_match`] against everyone waiting, in arrival order. For groups of two this
//! guarantees that no participant waits while an untried compatible partner waits too; for
//! larger groups the matchmaker's greedy search is retried from every waiting participant when
//! someone leaves.
//!
//! Every pair whose probe failed (RTT too high, measurement failed, no report by the deadline) is
//! remembered per scene by subject id and never grouped again. A probe cut short by a disconnect
//! is not held against the pair: a reload should not cost a participant their partner.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pairlab_shared::{
    ClientMessage, DecodeError, ErrorCode, GameEndReason, GameEnded, GameId, GameStart, Hello,
    IceServer, ServerMessage, SubjectId, Waitroom, WaitroomTimeout, WebrtcSignalIn, Welcome,
};

use super::matchmaker::{self, Candidate, Matchmaker};
use super::probe::{Handled, ProbeCoordinator, ProbeMember, ProbeOutcome};
use super::research::{LeaveReason, PairRtt, ProbeFailure, ResearchEvent};
use super::rtt::{RttEstimator, ENTRY_PINGS};
use super::{Action, ConnId, Event};
use crate::config::{Config, SceneConfig, TurnAuth, TurnConfig};

/// A participant enters matchmaking after [`ENTRY_PINGS`] server-RTT samples, or after the first
/// sample that arrives this long after `welcome` (a slow or lossy link should not wait for
/// three round trips).
pub const ENTRY_MAX_WAIT: Duration = Duration::from_millis(300);

/// The coalescing window of `waitroom` count updates: at most one per participant per this
/// (PROTOCOL.md, Waitroom).
pub const WAITROOM_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

type Pid = u64;
type GroupId = u64;

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

struct SceneState {
    cfg: SceneConfig,
    mm: Box<dyn Matchmaker>,
    /// Connected participants in `Waiting`, by arrival sequence, with their current server-RTT
    /// median: the matchmaker scans this alone, without a lookup per candidate.
    waiting: BTreeMap<u64, Waiter>,
    next_seq: u64,
    by_subject: HashMap<SubjectId, Pid>,
    done: HashSet<SubjectId>,
    failed_with: HashMap<SubjectId, HashSet<SubjectId>>,
    broadcast_at: Option<Instant>,
    last_broadcast: Option<Instant>,
}

impl SceneState {
    fn pair_failed(&self, a: &SubjectId, b: &SubjectId) -> bool {
        self.failed_with.get(a).is_some_and(|s| s.contains(b))
    }
    fn count(&self) -> Option<u32> {
        (!self.cfg.hide_lobby_count).then(|| self.waiting.len().min(u32::MAX as usize) as u32)
    }
}

/// An entry of a scene's waiting set.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Waiter {
    pid: Pid,
    rtt_ms: Option<f64>,
}

#[derive(Debug)]
struct Group {
    scene: usize,
    /// In player order (arrival order).
    members: Vec<Pid>,
    probes_pending: usize,
    failure: Option<ProbeFailure>,
    failed_pairs: Vec<[SubjectId; 2]>,
    pair_rtts: Vec<PairRtt>,
    probe_ids: Vec<pairlab_shared::ProbeSessionId>,
}

/// A started game: who is in it, and whether the server has ended it.
#[derive(Debug)]
struct GameRoom {
    scene: usize,
    /// In player order.
    members: Vec<(Pid, SubjectId)>,
    ended: bool,
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
    ice_servers: Vec<IceServer>,
    turn: Option<TurnConfig>,
    /// The clock's origin: an `Instant` and the Unix time (s) it stands for, so that TURN
    /// credentials can carry a wall-clock expiry while the core only sees `Instant`s.
    clock_origin: (Instant, u64),
    games: HashMap<GameId, GameRoom>,
    conns: HashMap<ConnId, ConnState>,
    participants: HashMap<Pid, Participant>,
    scenes: Vec<SceneState>,
    groups: HashMap<GroupId, Group>,
    probes: ProbeCoordinator,
    timers: BTreeMap<(Instant, u64), Timer>,
    next_timer: u64,
    next_pid: Pid,
    next_group: GroupId,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Core {
    /// A core for `config`, with nobody connected, whose clock starts now.
    pub fn new(config: Arc<Config>) -> Self {
        let unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::with_clock(config, Instant::now(), unix_s)
    }

    /// A core whose monotonic `origin` stands for Unix time `origin_unix_s` (seconds). The
    /// core reads no clock itself; this only dates the expiry of minted TURN credentials.
    pub fn with_clock(config: Arc<Config>, origin: Instant, origin_unix_s: u64) -> Self {
        let scenes = config
            .scenes
            .iter()
            .map(|cfg| SceneState {
                mm: matchmaker::for_scene(cfg),
                cfg: cfg.clone(),
                waiting: BTreeMap::new(),
                next_seq: 0,
                by_subject: HashMap::new(),
                done: HashSet::new(),
                failed_with: HashMap::new(),
                broadcast_at: None,
                last_broadcast: None,
            })
            .collect();
        Core {
            ice_servers: config.ice_servers.clone(),
            turn: config.turn.clone(),
            clock_origin: (origin, origin_unix_s),
            games: HashMap::new(),
            conns: HashMap::new(),
            participants: HashMap::new(),
            scenes,
            groups: HashMap::new(),
            probes: ProbeCoordinator::new(),
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
            waiting: self.scenes.iter().map(|s| s.waiting.len()).sum(),
            probes: self.probes.len(),
            groups: self.groups.len(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing
    // -----------------------------------------------------------------------------------------

    /// The ICE servers for one participant: the configured `[[ice_servers]]`, plus the `[turn]`
    /// server with its static credentials or credentials minted for this participant.
    fn ice_servers_for(&self, subject: &SubjectId, now: Instant) -> Vec<IceServer> {
        let mut list = self.ice_servers.clone();
        if let Some(turn) = &self.turn {
            let (username, credential) = match &turn.auth {
                TurnAuth::Static {
                    username,
                    credential,
                } => (username.clone(), credential.clone()),
                TurnAuth::Secret {
                    static_auth_secret,
                    credential_ttl_s,
                } => {
                    let (origin, origin_unix) = self.clock_origin;
                    let unix_now = origin_unix + now.saturating_duration_since(origin).as_secs();
                    turn_rest_credentials(
                        static_auth_secret,
                        subject.as_str(),
                        unix_now + credential_ttl_s,
                    )
                }
            };
            list.push(IceServer {
                urls: turn.urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        list
    }

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
            scene_id: self.scenes[scene].cfg.id.clone(),
            event,
        });
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
                Ok(Handled::Applied(Some(outcome))) => self.on_probe_outcome(now, outcome, out),
                Ok(_) => {}
                Err(e) => self.refuse(now, conn, ErrorCode::NotAMember, e.to_string(), out),
            },
            game @ (ClientMessage::WebrtcSignal(_)
            | ClientMessage::P2pConnectionType(_)
            | ClientMessage::P2pQuality(_)
            | ClientMessage::P2pIceRestart(_)
            | ClientMessage::P2pConnectionFailed(_)
            | ClientMessage::EpisodeSummary(_)) => self.on_game_message(now, conn, pid, game, out),
        }
    }

    fn on_hello(&mut self, now: Instant, conn: ConnId, hello: Hello, out: &mut Vec<Action>) {
        let scene = match &hello.scene_id {
            None => 0,
            Some(id) => match self.scenes.iter().position(|s| &s.cfg.id == id) {
                Some(i) => i,
                None => {
                    let m = format!("There is no scene {id:?} on this server.");
                    return self.refuse(now, conn, ErrorCode::UnknownScene, m, out);
                }
            },
        };
        let s = &self.scenes[scene];
        if s.done.contains(&hello.subject_id) {
            let m = "You have already taken part in this session; thank you.";
            return self.refuse(now, conn, ErrorCode::AlreadyDone, m, out);
        }
        if let Some(&pid) = s.by_subject.get(&hello.subject_id) {
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
        let pid = self.next_pid;
        self.next_pid += 1;
        self.participants.insert(
            pid,
            Participant {
                scene,
                subject_id: hello.subject_id.clone(),
                conn: Some(conn),
                resume_token: new_token(),
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
        self.scenes[scene]
            .by_subject
            .insert(hello.subject_id.clone(), pid);
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
        let cfg = &self.scenes[p.scene].cfg;
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
        let Some(p) = self.participants.get_mut(&pid) else {
            // The drop ended the session (its waitroom time was up).
            let m = "Your time in the waitroom is over; thank you for waiting.";
            return self.refuse(now, conn, ErrorCode::AlreadyDone, m, out);
        };
        p.conn = Some(conn);
        p.grace_until = None;
        p.resume_token = new_token();
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
                let ended = self.games.get(&start.game_id).is_some_and(|g| g.ended);
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
            if let Some(w) = self.scenes[p.scene].waiting.get_mut(&seq) {
                w.rtt_ms = p.rtt.median_ms();
            }
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
        let scene = &mut self.scenes[p.scene];
        if p.arrival_seq.is_none() {
            p.arrival_seq = Some(scene.next_seq);
            scene.next_seq += 1;
            p.entered_at = Some(now);
            p.deadline = Some(now + Duration::from_millis(scene.cfg.waitroom_timeout_ms));
        }
        p.state = PState::Waiting;
        let (scene_idx, deadline) = (p.scene, p.deadline);
        let event = ResearchEvent::ServerRtt {
            subject_id: p.subject_id.clone(),
            median_ms: p.rtt.median_ms().unwrap_or(f64::NAN),
            samples_ms: p.rtt.samples_ms(),
        };
        self.record(scene_idx, event, out);
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
        let rtt_ms = p.rtt.median_ms();
        self.scenes[scene]
            .waiting
            .insert(seq, Waiter { pid, rtt_ms });
        self.count_changed(now, scene);
        true
    }

    fn leave_waiting(&mut self, now: Instant, pid: Pid) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        let scene = p.scene;
        if let Some(seq) = p.arrival_seq {
            if self.scenes[scene].waiting.remove(&seq).is_some() {
                self.count_changed(now, scene);
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
            group_size: scene.cfg.group_size,
            remaining_ms,
        });
        self.send(pid, msg, out);
        if let Some(p) = self.participants.get_mut(&pid) {
            p.last_waitroom = Some((now, waiting));
        }
    }

    /// The waiting count of `scene` changed: schedule a coalesced broadcast.
    fn count_changed(&mut self, now: Instant, scene: usize) {
        let s = &mut self.scenes[scene];
        if s.cfg.hide_lobby_count || s.broadcast_at.is_some() {
            return;
        }
        let at = s
            .last_broadcast
            .map_or(now, |t| (t + WAITROOM_UPDATE_INTERVAL).max(now));
        s.broadcast_at = Some(at);
        self.schedule(at, Timer::Broadcast(scene));
    }

    fn broadcast(&mut self, now: Instant, scene: usize, out: &mut Vec<Action>) {
        let s = &mut self.scenes[scene];
        if s.broadcast_at.is_none_or(|t| t > now) {
            return;
        }
        s.broadcast_at = None;
        s.last_broadcast = Some(now);
        let count = s.count();
        let mut deferred = false;
        let pids: Vec<Pid> = s.waiting.values().map(|w| w.pid).collect();
        for pid in pids {
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
            self.count_changed(now, scene);
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
        let cfg = &self.scenes[p.scene].cfg;
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
        self.scenes[p.scene].done.insert(p.subject_id.clone());
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
        self.scenes[p.scene].by_subject.remove(&p.subject_id);
        Some(p)
    }

    // -----------------------------------------------------------------------------------------
    // Leaving, dropping, resuming
    // -----------------------------------------------------------------------------------------

    fn on_leave(&mut self, now: Instant, conn: ConnId, pid: Pid, out: &mut Vec<Action>) {
        self.conns.remove(&conn);
        out.push(Action::Close { conn });
        let Some(p) = self.remove_participant(now, pid) else {
            return;
        };
        self.scenes[p.scene].done.insert(p.subject_id.clone());
        self.member_gone(&p.state, &p.subject_id, out);
        let event = ResearchEvent::ParticipantLeft {
            subject_id: p.subject_id,
            reason: LeaveReason::Leave,
        };
        self.record(p.scene, event, out);
        for outcome in self.probes.fail_member(now, pid) {
            self.on_probe_outcome(now, outcome, out);
        }
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
        let grace = Duration::from_millis(self.scenes[p.scene].cfg.reconnect_grace_ms);
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
            for outcome in self.probes.fail_member(now, pid) {
                self.on_probe_outcome(now, outcome, out);
            }
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
            self.scenes[p.scene].done.insert(p.subject_id.clone());
        }
        self.member_gone(&p.state, &p.subject_id, out);
        let event = ResearchEvent::ParticipantLeft {
            subject_id: p.subject_id,
            reason: LeaveReason::GraceExpired,
        };
        self.record(p.scene, event, out);
    }

    // -----------------------------------------------------------------------------------------
    // Matching
    // -----------------------------------------------------------------------------------------

    /// Someone left the waitroom. With groups of two that cannot make a new match; with larger
    /// groups the greedy search may now succeed where it failed, so retry everyone.
    fn retry_if_groups(&mut self, now: Instant, scene: usize, out: &mut Vec<Action>) {
        if self.scenes[scene].cfg.group_size > 2 {
            self.retry_all(now, scene, out);
        }
    }

    fn retry_all(&mut self, now: Instant, scene: usize, out: &mut Vec<Action>) {
        let pids: Vec<Pid> = self.scenes[scene].waiting.values().map(|w| w.pid).collect();
        for pid in pids {
            self.try_match(now, pid, out);
        }
    }

    /// Runs the scene's matchmaker with `anchor` as the arriving participant; proposes the
    /// group it finds. Returns whether a group was proposed.
    fn try_match(&mut self, now: Instant, anchor: Pid, out: &mut Vec<Action>) -> bool {
        let Some(p) = self.participants.get(&anchor) else {
            return false;
        };
        if p.state != PState::Waiting || p.conn.is_none() {
            return false;
        }
        let scene_idx = p.scene;
        let scene = &self.scenes[scene_idx];
        let participants = &self.participants;
        let arriving = Candidate {
            id: anchor,
            rtt_ms: p.rtt.median_ms(),
        };
        let mut waiting = scene.waiting.values().map(|w| Candidate {
            id: w.pid,
            rtt_ms: w.rtt_ms,
        });
        let allowed = |a: u64, b: u64| match (participants.get(&a), participants.get(&b)) {
            (Some(x), Some(y)) => !scene.pair_failed(&x.subject_id, &y.subject_id),
            _ => false,
        };
        let group_size = scene.cfg.group_size as usize;
        let Some(members) = scene
            .mm
            .find_match(&arriving, &mut waiting, group_size, &allowed)
        else {
            return false;
        };
        self.propose_group(now, scene_idx, members, out);
        true
    }

    fn propose_group(
        &mut self,
        now: Instant,
        scene: usize,
        mut members: Vec<Pid>,
        out: &mut Vec<Action>,
    ) {
        members.sort_by_key(|pid| self.participants.get(pid).and_then(|p| p.arrival_seq));
        let gid = self.next_group;
        self.next_group += 1;
        for &pid in &members {
            self.leave_waiting(now, pid);
            if let Some(p) = self.participants.get_mut(&pid) {
                p.state = PState::InGroup(gid);
            }
        }
        let subjects: Vec<SubjectId> = members
            .iter()
            .filter_map(|pid| self.participants.get(pid).map(|p| p.subject_id.clone()))
            .collect();
        let server_rtts_ms = members
            .iter()
            .map(|pid| self.participants.get(pid).and_then(|p| p.rtt.median_ms()))
            .collect();
        let mm = &self.scenes[scene].mm;
        let probe = mm.max_p2p_rtt_ms().is_some();
        let event = ResearchEvent::MatchProposed {
            members: subjects,
            server_rtts_ms,
            matchmaker: mm.name(),
            probe,
        };
        self.record(scene, event, out);
        let mut group = Group {
            scene,
            members: members.clone(),
            probes_pending: 0,
            failure: None,
            failed_pairs: Vec::new(),
            pair_rtts: Vec::new(),
            probe_ids: Vec::new(),
        };
        if !probe {
            return self.start_game(now, group, out);
        }
        // Every pair of the group is probed, in parallel.
        let timeout_ms = self.scenes[scene].cfg.probe_timeout_ms;
        for i in 0..members.len() {
            for j in i + 1..members.len() {
                let member = |pid: Pid| {
                    self.participants.get(&pid).map(|p| ProbeMember {
                        pid,
                        subject_id: p.subject_id.clone(),
                    })
                };
                let (Some(a), Some(b)) = (member(members[i]), member(members[j])) else {
                    continue;
                };
                let (ice_a, ice_b) = (
                    self.ice_servers_for(&a.subject_id, now),
                    self.ice_servers_for(&b.subject_id, now),
                );
                let a_pid = a.pid;
                let ice = |m: &ProbeMember| {
                    if m.pid == a_pid {
                        ice_a.clone()
                    } else {
                        ice_b.clone()
                    }
                };
                let (id, pair, msgs) = self.probes.create_probe(now, gid, a, b, &ice, timeout_ms);
                for (to, m) in msgs {
                    self.send(to, m, out);
                }
                let event = ResearchEvent::ProbeStarted {
                    probe_session_id: id.clone(),
                    members: [pair[0].subject_id.clone(), pair[1].subject_id.clone()],
                    timeout_ms,
                };
                self.record(scene, event, out);
                group.probe_ids.push(id);
                group.probes_pending += 1;
            }
        }
        self.groups.insert(gid, group);
    }

    fn on_probe_outcome(&mut self, now: Instant, outcome: ProbeOutcome, out: &mut Vec<Action>) {
        let Some(group) = self.groups.get(&outcome.group) else {
            return;
        };
        let scene = group.scene;
        let mm = &self.scenes[scene].mm;
        let rejected_by_rtt = outcome.failure.is_none() && mm.should_reject_for_rtt(outcome.rtt_ms);
        let reason = outcome
            .failure
            .or(rejected_by_rtt.then_some(ProbeFailure::RttTooHigh));
        let accepted = reason.is_none();
        let pair = [
            outcome.members[0].subject_id.clone(),
            outcome.members[1].subject_id.clone(),
        ];
        let event = ResearchEvent::ProbeResult {
            probe_session_id: outcome.probe_session_id.clone(),
            members: pair.clone(),
            reports: outcome.reports.clone(),
            accepted,
            rtt_ms: outcome.rtt_ms,
            max_p2p_rtt_ms: mm.max_p2p_rtt_ms().unwrap_or(f64::INFINITY),
            reason,
            ready_ms: outcome.ready_ms,
            duration_ms: outcome.duration_ms,
        };
        self.record(scene, event, out);

        let Some(group) = self.groups.get_mut(&outcome.group) else {
            return;
        };
        group.probes_pending = group.probes_pending.saturating_sub(1);
        match (reason, outcome.rtt_ms) {
            (None, Some(rtt_ms)) => group.pair_rtts.push(PairRtt {
                members: pair,
                rtt_ms,
            }),
            (None, None) => {}
            (Some(ProbeFailure::Disconnected), _) => {
                group.failure = Some(ProbeFailure::Disconnected);
            }
            (Some(r), _) => {
                group.failure.get_or_insert(r);
                group.failed_pairs.push(pair.clone());
                let s = &mut self.scenes[scene];
                s.failed_with
                    .entry(pair[0].clone())
                    .or_default()
                    .insert(pair[1].clone());
                s.failed_with
                    .entry(pair[1].clone())
                    .or_default()
                    .insert(pair[0].clone());
            }
        }
        let disconnected = reason == Some(ProbeFailure::Disconnected);
        if !(disconnected || group.probes_pending == 0) {
            return;
        }
        let Some(group) = self.groups.remove(&outcome.group) else {
            return;
        };
        if disconnected {
            // A member is gone: the group cannot be; its other probes end now.
            for id in &group.probe_ids {
                self.probes.cancel(now, id);
            }
        }
        match group.failure {
            None => self.start_game(now, group, out),
            Some(reason) => self.reject_group(now, group, reason, out),
        }
    }

    fn reject_group(
        &mut self,
        now: Instant,
        group: Group,
        reason: ProbeFailure,
        out: &mut Vec<Action>,
    ) {
        let members: Vec<SubjectId> = group
            .members
            .iter()
            .filter_map(|pid| self.participants.get(pid).map(|p| p.subject_id.clone()))
            .collect();
        let event = ResearchEvent::MatchRejected {
            members,
            reason,
            failed_pairs: group.failed_pairs.clone(),
        };
        self.record(group.scene, event, out);
        let mut returned = Vec::new();
        for &pid in &group.members {
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

    fn start_game(&mut self, now: Instant, group: Group, out: &mut Vec<Action>) {
        let game_id = GameId::new_v4();
        let members: Vec<(Pid, SubjectId)> = group
            .members
            .iter()
            .filter_map(|&pid| {
                self.participants
                    .get(&pid)
                    .map(|p| (pid, p.subject_id.clone()))
            })
            .collect();
        let players: Vec<SubjectId> = members.iter().map(|(_, s)| s.clone()).collect();
        let force_relay = self.scenes[group.scene].cfg.force_relay;
        for (i, (pid, subject)) in members.iter().enumerate() {
            let start = GameStart {
                game_id: game_id.clone(),
                player_index: i as u32,
                players: players.clone(),
                ice_servers: self.ice_servers_for(subject, now),
                force_relay,
            };
            self.send(*pid, ServerMessage::GameStart(start.clone()), out);
            if let Some(p) = self.participants.get_mut(pid) {
                p.state = PState::InGame(Box::new(start));
            }
        }
        self.games.insert(
            game_id.clone(),
            GameRoom {
                scene: group.scene,
                members,
                ended: false,
            },
        );
        let event = ResearchEvent::GameCreated {
            game_id,
            players,
            p2p_rtts_ms: group.pair_rtts,
        };
        self.record(group.scene, event, out);
    }

    // -----------------------------------------------------------------------------------------
    // Games
    // -----------------------------------------------------------------------------------------

    /// Checks that `pid` is a member of `game_id` and `peer` another member. Returns the room's
    /// scene, whether it has ended, the sender's subject id and the peer's handle.
    fn game_peer(
        &self,
        game_id: &GameId,
        pid: Pid,
        peer: &SubjectId,
    ) -> Option<(usize, bool, SubjectId, Pid)> {
        let room = self.games.get(game_id)?;
        let (_, me) = room.members.iter().find(|(p, _)| *p == pid)?;
        let (to, _) = room.members.iter().find(|(p, s)| s == peer && *p != pid)?;
        Some((room.scene, room.ended, me.clone(), *to))
    }

    /// Who may report on a game: a member, about other members. Returns the game's scene and
    /// the reporter's subject id; `None` when the reporter or a named peer is not in the game.
    fn check_report(
        &self,
        game_id: &GameId,
        pid: Pid,
        peers: &[&SubjectId],
    ) -> Option<(usize, SubjectId)> {
        let room = self.games.get(game_id)?;
        let (_, me) = room.members.iter().find(|(p, _)| *p == pid)?;
        let all_peers = peers
            .iter()
            .all(|peer| room.members.iter().any(|(p, s)| s == *peer && *p != pid));
        all_peers.then(|| (room.scene, me.clone()))
    }

    /// Answers `not_a_member` for a refused report; passes an accepted one on.
    fn accept_report(
        &mut self,
        now: Instant,
        conn: ConnId,
        checked: Option<(usize, SubjectId)>,
        out: &mut Vec<Action>,
    ) -> Option<(usize, SubjectId)> {
        if checked.is_none() {
            let m = "You are not in that game, or that participant is not your partner.";
            self.refuse(now, conn, ErrorCode::NotAMember, m, out);
        }
        checked
    }

    /// Ends a game for everyone in it (once): `game_ended` to every connected member.
    fn end_game(
        &mut self,
        game_id: &GameId,
        reason: GameEndReason,
        by: SubjectId,
        out: &mut Vec<Action>,
    ) {
        let Some(room) = self.games.get_mut(game_id) else {
            return;
        };
        if room.ended {
            return;
        }
        room.ended = true;
        let (scene, pids): (usize, Vec<Pid>) =
            (room.scene, room.members.iter().map(|(p, _)| *p).collect());
        let message = match reason {
            GameEndReason::ConnectionFailed => {
                "The connection between you and your partner was lost and could not be restored, so the game has ended."
            }
            GameEndReason::PeerLeft => "Your partner has left, so the game has ended.",
        };
        for pid in pids {
            let msg = ServerMessage::GameEnded(GameEnded {
                game_id: game_id.clone(),
                reason,
                message: message.to_owned(),
            });
            self.send(pid, msg, out);
        }
        let event = ResearchEvent::GameEnded {
            game_id: game_id.clone(),
            reason,
            subject_id: by,
        };
        self.record(scene, event, out);
    }

    fn on_game_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        pid: Pid,
        msg: ClientMessage,
        out: &mut Vec<Action>,
    ) {
        match msg {
            ClientMessage::WebrtcSignal(s) => {
                match self.game_peer(&s.game_id, pid, &s.target_subject_id) {
                    // Late signals of an ended game go nowhere, quietly.
                    Some((_, true, _, _)) => {}
                    Some((_, false, from, to)) => {
                        let msg = ServerMessage::WebrtcSignal(WebrtcSignalIn {
                            game_id: s.game_id,
                            from_subject_id: from,
                            signal_type: s.signal_type,
                            payload: s.payload,
                        });
                        self.send(to, msg, out);
                    }
                    None => {
                        let m =
                            "You are not in that game, or that participant is not your partner.";
                        self.refuse(now, conn, ErrorCode::NotAMember, m, out);
                    }
                }
            }
            ClientMessage::P2pConnectionType(m) => {
                let checked = self.check_report(&m.game_id, pid, &[&m.peer_subject_id]);
                if let Some((scene, subject_id)) = self.accept_report(now, conn, checked, out) {
                    let event = ResearchEvent::P2pConnectionType {
                        game_id: m.game_id,
                        subject_id,
                        peer_subject_id: m.peer_subject_id,
                        connection: m.info,
                        connect_ms: m.connect_ms,
                    };
                    self.record(scene, event, out);
                }
            }
            ClientMessage::P2pQuality(m) => {
                let checked = self.check_report(&m.game_id, pid, &[&m.peer_subject_id]);
                if let Some((scene, subject_id)) = self.accept_report(now, conn, checked, out) {
                    let event = ResearchEvent::P2pQuality {
                        game_id: m.game_id,
                        subject_id,
                        peer_subject_id: m.peer_subject_id,
                        level: m.level,
                        rtt_ms: m.rtt_ms,
                    };
                    self.record(scene, event, out);
                }
            }
            ClientMessage::P2pIceRestart(m) => {
                let checked = self.check_report(&m.game_id, pid, &[&m.peer_subject_id]);
                if let Some((scene, subject_id)) = self.accept_report(now, conn, checked, out) {
                    let event = ResearchEvent::P2pIceRestart {
                        game_id: m.game_id,
                        subject_id,
                        peer_subject_id: m.peer_subject_id,
                        attempt: m.attempt,
                        trigger: m.trigger,
                        outcome: m.outcome,
                        duration_ms: m.duration_ms,
                    };
                    self.record(scene, event, out);
                }
            }
            ClientMessage::P2pConnectionFailed(m) => {
                let checked = self.check_report(&m.game_id, pid, &[&m.peer_subject_id]);
                if let Some((scene, subject_id)) = self.accept_report(now, conn, checked, out) {
                    let game_id = m.game_id.clone();
                    let event = ResearchEvent::P2pConnectionFailed {
                        game_id: m.game_id,
                        subject_id: subject_id.clone(),
                        peer_subject_id: m.peer_subject_id,
                        attempts: m.attempts,
                    };
                    self.record(scene, event, out);
                    self.end_game(&game_id, GameEndReason::ConnectionFailed, subject_id, out);
                }
            }
            ClientMessage::EpisodeSummary(e) => {
                let peers: Vec<&SubjectId> = e.peers.iter().map(|p| &p.peer_subject_id).collect();
                let checked = self.check_report(&e.game_id, pid, &peers);
                if let Some((scene, subject_id)) = self.accept_report(now, conn, checked, out) {
                    let event = ResearchEvent::EpisodeSummary {
                        game_id: e.game_id,
                        subject_id,
                        episode: e.episode,
                        frames: e.frames,
                        inputs_sent: e.inputs_sent,
                        peers: e.peers,
                    };
                    self.record(scene, event, out);
                }
            }
            _ => {}
        }
    }

    /// A member of a game is gone for good: the game ends for the others.
    fn member_gone(&mut self, state: &PState, subject: &SubjectId, out: &mut Vec<Action>) {
        if let PState::InGame(start) = state {
            self.end_game(
                &start.game_id,
                GameEndReason::PeerLeft,
                subject.clone(),
                out,
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Time
    // -----------------------------------------------------------------------------------------

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        for outcome in self.probes.expire(now) {
            self.on_probe_outcome(now, outcome, out);
        }
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
    /// deadline, every bound connection belongs to its participant.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, s) in self.scenes.iter().enumerate() {
            for (&seq, Waiter { pid, .. }) in &s.waiting {
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
        for (gid, g) in &self.groups {
            for pid in &g.members {
                if !seen.insert(*pid) {
                    return Err(format!("participant {pid} is in two groups"));
                }
                if let Some(p) = self.participants.get(pid) {
                    if p.state != PState::InGroup(*gid) {
                        return Err(format!("member {pid} of group {gid} is {:?}", p.state));
                    }
                }
            }
        }
        for (pid, p) in &self.participants {
            if let PState::InGroup(g) = p.state {
                if !self.groups.get(&g).is_some_and(|g| g.members.contains(pid)) {
                    return Err(format!(
                        "participant {pid} claims group {g} that does not hold them"
                    ));
                }
            }
            if p.state == PState::Waiting && p.conn.is_some() {
                let in_set = p
                    .arrival_seq
                    .and_then(|s| self.scenes[p.scene].waiting.get(&s))
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
        Ok(())
    }
}

/// coturn's REST API credentials (draft-uberti-behave-turn-rest-00, coturn's
/// `--use-auth-secret`): username `"<unix-expiry>:<id>"`, credential
/// `base64(HMAC-SHA1(secret, username))`. The TURN server recomputes the credential from its
/// copy of the secret and refuses it after the expiry.
pub fn turn_rest_credentials(secret: &str, id: &str, expiry_unix_s: u64) -> (String, String) {
    use base64::Engine as _;
    use hmac::Mac as _;
    let username = format!("{expiry_unix_s}:{id}");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}
