//! The [`Core`]: owns connections and participants, routes each [`Event`] to the component whose
//! job it is, and carries out what the components decide.
//!
//! This file holds the `Core` itself, the dispatch of events and frames, the timers and the
//! invariants; the participants' transitions live in two submodules:
//! - `sessions`: `hello` → `welcome`, resume, server-RTT samples, `leave`, drops, the grace;
//! - `matching`: the waiting set, count updates, waitroom timeouts, the matchmaker's proposals,
//!   and acting on the probe coordinator's verdicts (start the game, or return to waiting).
//! - `study`: the researcher's part: each participant's one `outcome`, `finish`, `record`,
//!   `attention` and the `max_hidden_ms` rule, and the entry rules.
//!
//! A participant's life in a scene (PROTOCOL.md, Session and Waitroom):
//!
//! ```text
//! hello ─► Measuring ─(server RTT known)─► Waiting ─(matchmaker)─► InGroup ─(verdict: accepted)─► InGame
//!                                            ▲                        │
//!                                            └──(verdict: rejected)───┘
//! ```
//!
//! Out of every state: `leave` and `finish` (final), an entry rule (from `Measuring`), a drop (the socket closed: the participant keeps their
//! place for `reconnect_grace_ms` and can resume with the `resume_token`), and in `Waiting` the
//! waitroom deadline. Only `Waiting` participants with a live connection can be matched.
//!
//! Matching is retried whenever someone arrives, returns from a rejected group, leaves or drops:
//! each arriving or returning participant is the "arriving" side of the greedy search
//! ([`super::candidates::WaitingSet::find_group`]) against everyone waiting, in arrival order. For
//! groups of two this guarantees that no participant waits while an untried compatible partner
//! waits too; for larger groups the greedy search is retried from every waiting participant when
//! someone leaves, unless the waiting set proves that no group can pass the pre-filter
//! ([`super::candidates::WaitingSet::may_form_group`]).
//!
//! Probe messages go to the [`ProbeCoordinator`], which decides; the router then acts on each
//! [`PairJudged`](super::probe::PairJudged) in order: it writes the `probe_result` line and, when the judgement completed a
//! group's [`Verdict`](super::probe::Verdict), starts the game or returns the members to the waitroom (which remembers
//! the failed pairs).

mod background;
mod matching;
mod sessions;
mod study;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pairlab_shared::{
    ClientMessage, DecodeError, ErrorCode, GameStart, Outcome, RecruiterParams, ServerMessage,
    SubjectId,
};

use super::capacity::ShrinkWhenSparse;
use super::games::Games;
use super::ice::IceServers;
use super::ids::{ConnId, GroupId, IdSource, Pid};
use super::link::LinkSigner;
use super::probe::{Handled, ProbeCoordinator};
use super::ratelimit::RateLimiter;
use super::remembered::{DoneState, SubjectHasher};
use super::research::ResearchEvent;
use super::rtt::RttEstimator;
use super::waitroom::{SceneWaitroom, Waiter, WaitroomSizes};
use super::{Action, CoreClock, Effect, Event};
use crate::config::Config;

/// A participant enters matchmaking after [`ENTRY_PINGS`](super::rtt::ENTRY_PINGS) server-RTT samples, or after the first
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
    grace_until: Option<Instant>,
    /// `hello.recruiter` of the hello that began the session.
    recruiter: Option<Box<RecruiterParams>>,
    /// Whether their `outcome` was decided (it goes once).
    outcome_given: bool,
    /// An outcome decided while they had no connection (their game ended during their
    /// reconnect grace): sent when they resume.
    undelivered: Option<Outcome>,
    /// Since when their page is hidden (`attention`), by the server's clock.
    hidden_since: Option<Instant>,
    /// Their `record` token bucket.
    records: RateLimiter,
    /// The keys of this participant's own timers (waitroom deadline, grace) not yet fired:
    /// cancelled when the session ends, so a deadline an hour away is not kept for nobody.
    timers: Vec<TimerKey>,
}

/// A timer's place in [`Core`]'s schedule: when, then the order of scheduling.
type TimerKey = (Instant, u64);

/// A participant removed from every index, and when they had entered the waitroom.
struct Removed {
    participant: Participant,
    entered_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Waitroom(Pid),
    Grace(Pid),
    Broadcast(usize),
    /// The attention rule: the member's page may have been hidden too long.
    Hidden(Pid),
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
    /// `record` and `attention` messages refused by the per-participant rate limit since
    /// start.
    pub record_events_refused: u64,
}

/// How much the core holds, for tests and benchmarks of its memory: the maps that follow the
/// live sessions (empty once everyone is gone and the last deadlines have passed) and the
/// bounded memory of each scene ([`WaitroomSizes::done`], [`WaitroomSizes::failed_pairs`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStats {
    /// Connections known to the core.
    pub connections: usize,
    /// Participants (sessions).
    pub participants: usize,
    /// Live probes and ended ones still remembered (their tombstones).
    pub probes: usize,
    /// Games held: live, and ended within [`GAME_TOMBSTONE_TTL`](super::games::GAME_TOMBSTONE_TTL).
    pub games: usize,
    /// Of [`MemoryStats::games`], the ended ones: kept as tombstones (their members' handles
    /// only) until [`GAME_TOMBSTONE_TTL`](super::games::GAME_TOMBSTONE_TTL) after their end.
    pub game_tombstones: usize,
    /// Scheduled timers (waitroom deadlines, graces, count broadcasts).
    pub timers: usize,
    /// Entries the maps and queues of connections, sessions, probes and games have room for
    /// (their capacity, summed): allocated even when they are empty, given back once sparse
    /// ([`super::capacity`]), so it follows what is held, not the busiest moment.
    pub room: usize,
    /// Each scene's waitroom, in config order.
    pub scenes: Vec<WaitroomSizes>,
}

/// The whole matchmaking state of one server: every scene's waitroom, sessions, probes and
/// games. Driven by [`Core::handle`]; see the module docs of [`crate::core`].
pub struct Core {
    ice: IceServers,
    /// With `[server] link_secret`: every `hello` must carry its link's signature.
    link: Option<LinkSigner>,
    ids: Box<dyn IdSource>,
    conns: HashMap<ConnId, ConnState>,
    participants: HashMap<Pid, Participant>,
    scenes: Vec<SceneWaitroom>,
    probes: ProbeCoordinator,
    games: Games,
    timers: BTreeMap<TimerKey, Timer>,
    next_timer: u64,
    next_pid: u64,
    next_group: u64,
    /// Set by [`Event::Shutdown`]: every later event is ignored.
    stopped: bool,
    /// `record`/`attention` messages refused by the rate limit ([`CoreStats`]).
    record_events_refused: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Core {
    /// A core for `config`, with nobody connected. `clock` says which Unix time the monotonic
    /// origin stands for (it dates TURN credentials; the core reads no clock itself: every
    /// event comes with its time). `ids` mints probe session ids, game ids and resume tokens:
    /// [`super::RandomIds`] for a server, [`super::SeededIds`] for reproducible runs.
    /// The key of the fingerprints by which scenes remember done subjects and failed pairs is
    /// the first id drawn from `ids`.
    pub fn new(config: Arc<Config>, clock: CoreClock, mut ids: Box<dyn IdSource>) -> Self {
        let hasher = SubjectHasher::from_ids(&mut *ids);
        Core {
            ice: IceServers::new(&config, clock),
            link: config.server.link_secret.as_deref().map(LinkSigner::new),
            ids,
            conns: HashMap::new(),
            participants: HashMap::new(),
            scenes: config
                .scenes
                .iter()
                .map(|cfg| SceneWaitroom::new(cfg, hasher.clone()))
                .collect(),
            probes: ProbeCoordinator::new(),
            games: Games::default(),
            timers: BTreeMap::new(),
            next_timer: 0,
            next_pid: 1,
            next_group: 1,
            stopped: false,
            record_events_refused: 0,
        }
    }

    /// Applies one event that happened at `now` and appends what to do to `out`, in order.
    pub fn handle(&mut self, now: Instant, event: Event, out: &mut Vec<Action>) {
        if self.stopped {
            return;
        }
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
            Event::Shutdown => return self.on_shutdown(out),
        }
        // p2p_matrix: the background probes and groups this event made due.
        self.run_background(now, out);
    }

    /// The earliest time at which [`Event::Tick`] has work to do; `None` when nothing is
    /// scheduled. (A deadline may turn out to have nothing to do; ticking early is harmless.)
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        let timer = self.timers.first_key_value().map(|((t, _), _)| *t);
        [
            timer,
            self.probes.next_deadline(),
            self.games.next_deadline(),
            self.background_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Adds what the research record of scene `scene_id` remembers (its done set and failed
    /// pairs, see [`DoneState`]) to the scene's memory; the shell calls it at start for every
    /// scene whose record exists. `false` when no scene has that id.
    pub fn restore(&mut self, scene_id: &str, state: &DoneState) -> bool {
        match self.scenes.iter_mut().find(|s| s.cfg().id == scene_id) {
            Some(scene) => {
                scene.restore(state);
                true
            }
            None => false,
        }
    }

    /// How much the core holds (see [`MemoryStats`]).
    pub fn memory_stats(&self) -> MemoryStats {
        MemoryStats {
            connections: self.conns.len(),
            participants: self.participants.len(),
            probes: self.probes.len() + self.probes.tombstones(),
            games: self.games.len(),
            game_tombstones: self.games.tombstones(),
            timers: self.timers.len(),
            room: self.conns.capacity()
                + self.participants.capacity()
                + self.probes.room()
                + self.games.room(),
            scenes: self.scenes.iter().map(SceneWaitroom::sizes).collect(),
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
            record_events_refused: self.record_events_refused,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing
    // -----------------------------------------------------------------------------------------

    /// Fires `timer` at the first tick at or after `at`.
    fn schedule(&mut self, at: Instant, timer: Timer) {
        self.next_timer += 1;
        let key = (at, self.next_timer);
        if let Timer::Waitroom(pid) | Timer::Grace(pid) | Timer::Hidden(pid) = timer {
            if let Some(p) = self.participants.get_mut(&pid) {
                p.timers.retain(|k| self.timers.contains_key(k));
                p.timers.push(key);
            }
        }
        self.timers.insert(key, timer);
    }

    /// Sends `msg` to the participant's connection; dropped when they have none.
    fn send(&self, pid: Pid, msg: ServerMessage, out: &mut Vec<Action>) {
        if let Some(conn) = self.participants.get(&pid).and_then(|p| p.conn) {
            out.push(Action::Send { conn, msg });
        }
    }

    /// Appends a line to the research record of `scene`.
    fn record(&self, scene: usize, event: ResearchEvent, out: &mut Vec<Action>) {
        out.push(Action::Record {
            scene_id: self.scenes[scene].cfg().id.clone(),
            event,
        });
    }

    /// Carries out a component's effects, in order. A member told `game_ended` then gets
    /// their outcome: `partner_lost`, or `left` for `hidden`, the member whose hidden page
    /// ended the game.
    fn apply(&mut self, effects: Vec<Effect>, hidden: Option<Pid>, out: &mut Vec<Action>) {
        for effect in effects {
            match effect {
                Effect::Send(pid, msg) => {
                    let ended = matches!(&msg, ServerMessage::GameEnded(_));
                    self.send(pid, msg, out);
                    if ended {
                        let name = if Some(pid) == hidden {
                            Outcome::LEFT
                        } else {
                            Outcome::PARTNER_LOST
                        };
                        self.give_outcome(pid, name, out);
                    }
                }
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

    /// A frame that did not decode: the error code depends on whether `hello` came first.
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

    /// A decoded message: `hello` first, then each message to the component whose job it is.
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
            ClientMessage::Record(r) => self.on_record(now, conn, pid, r, out),
            ClientMessage::Finish(f) => self.on_finish(now, conn, pid, f, out),
            ClientMessage::Attention(a) => self.on_attention(now, conn, pid, a, out),
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
                match self.games.handle(now, pid, game, &mut effects) {
                    Ok(()) => self.apply(effects, None, out),
                    Err(e) => self.refuse(now, conn, e.code(), e.to_string(), out),
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Time
    // -----------------------------------------------------------------------------------------

    /// Fires every probe deadline and timer at or before `now`, and forgets the games that
    /// ended long enough ago.
    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.conns.shrink_when_sparse();
        self.participants.shrink_when_sparse();
        self.games.expire(now);
        let judged = self.probes.expire(now);
        self.act_on_probes(now, judged, out);
        self.expire_background(now);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Timer::Waitroom(pid) => self.waitroom_deadline(now, pid, out),
                Timer::Grace(pid) => self.grace_expired(now, pid, out),
                Timer::Broadcast(scene) => self.broadcast(now, scene, out),
                Timer::Hidden(pid) => self.hidden_too_long(now, pid, out),
            }
        }
    }

    /// Checks the core's invariants; `Err` names the first one broken. For tests and fuzzing:
    /// nobody is in two groups, the waiting set holds exactly the connected `Waiting`
    /// participants, every group member is `InGroup` of that group, every live probe has a
    /// deadline and a round, every bound connection belongs to its participant.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, s) in self.scenes.iter().enumerate() {
            s.check_matrix()?;
            for (seq, Waiter { pid, .. }) in s.entries() {
                let p = self
                    .participants
                    .get(pid)
                    .ok_or(format!("waiting {pid} is gone"))?;
                if p.state != PState::Waiting
                    || p.conn.is_none()
                    || s.arrival_seq(*pid) != Some(seq)
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
            if self.is_background_round(gid) {
                continue;
            }
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
                let in_set = self.scenes[p.scene]
                    .waiter(*pid)
                    .is_some_and(|w| w.rtt_ms == p.rtt.median_ms());
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
