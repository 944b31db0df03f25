//! Adversarial event sequences through the sans-IO core, shared by the proptest suite
//! (`tests/fuzz_core.rs`) and the libFuzzer target (`fuzz/fuzz_targets/core_sequence.rs`),
//! which include this file by path.
//!
//! Bytes become a list of [`Op`]s (through `arbitrary`, so both drivers mean the same by the
//! same bytes); each op is one or a few [`Event`]s at a simulated time, through a [`Core`] with
//! [`SeededIds`]. Half the ops are honest clients ([`Honest`]: joining, answering their probes,
//! reporting on their games, resuming), so sequences reach probes and games; three in ten are
//! hostile ([`Hostile`]): hellos as any of 24 subjects with their own token, another's, a
//! made-up one or none, to real and unknown scenes; probe and game messages for real and
//! made-up probes and games, from members and strangers, addressed to members and strangers,
//! in any order and repeated (duplicated reports); floods of signals; malformed frames; drops,
//! leaves and messages on closed connections at every point. The rest move the clock
//! ([`Clock`]), also to one millisecond before, at or after the next deadline.
//!
//! The property, [`check_sequence`]: nothing panics; [`Core::check_invariants`] holds after
//! every event; nothing is sent to, or closed on, a connection that is not open; every record
//! line names a configured scene; ten minutes after the last op no probe, group or waiting
//! participant is left; and the same bytes give the same actions twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use pairlab_server::config::Config;
use pairlab_server::core::{Action, ConnId, Core, CoreClock, Event, SeededIds};
use pairlab_shared::*;

/// The server the sequences run against: a probed scene of pairs (the default), an unprobed
/// scene of three, a `p2p_matrix` scene of three (background probes, groups on
/// measurements), and a TURN server minting credentials.
const CONFIG: &str = r#"
[[scene]]
id = "pairs"
group_size = 2
matchmaker = "latency_fifo"
max_server_rtt_ms = 200
max_p2p_rtt_ms = 100
probe_timeout_ms = 3000
waitroom_timeout_ms = 15000
reconnect_grace_ms = 2000
max_entry_server_rtt_ms = 150

[scene.game]
max_hidden_ms = 500

[scene.outcomes.screened_out]
url = "https://example.org/done?cc={completion_code}&p={subject_id}"
code = "SCR"

[[scene]]
id = "trios"
group_size = 3
matchmaker = "fifo"
waitroom_timeout_ms = 20000
reconnect_grace_ms = 1000
hide_lobby_count = true

[[scene]]
id = "matrix"
group_size = 3
matchmaker = "p2p_matrix"
max_p2p_rtt_ms = 100
probe_timeout_ms = 3000
waitroom_timeout_ms = 15000
reconnect_grace_ms = 2000
probe_concurrency = 2
pair_max_age_ms = 4000
max_probe_connections = 3

[turn]
urls = ["turn:127.0.0.1:3478"]
static_auth_secret = "fuzz"
credential_ttl_s = 600
"#;

/// How many different subjects the ops speak as.
const SUBJECTS: u8 = 24;

/// Which scene a `hello` names.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum SceneChoice {
    /// None: the default scene.
    Default,
    /// The unprobed scene of three.
    Trios,
    /// The `p2p_matrix` scene of three.
    Matrix,
    /// A scene that does not exist.
    Unknown,
}

/// Which real scene an honest client joins.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum JoinScene {
    /// The default, probed scene of pairs.
    Pairs,
    /// The unprobed scene of three.
    Trios,
    /// The `p2p_matrix` scene of three.
    Matrix,
}

/// Which `resume_token` a `hello` carries.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum TokenChoice {
    /// None.
    None,
    /// The latest one this subject was welcomed with.
    Own,
    /// The latest one another subject was welcomed with.
    Other(u8),
    /// A made-up one.
    Junk,
}

/// A report about a game connection.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Report {
    /// `p2p_connection_type`.
    ConnectionType,
    /// `p2p_quality` at a level.
    Quality(u8),
    /// `p2p_ice_restart`, attempt 1 to 100.
    IceRestart(u8),
    /// `p2p_connection_failed`.
    Failed,
    /// `episode_summary` of an episode.
    Episode(u8),
}

/// One step of a sequence: half of them honest, three in ten hostile, two in ten the clock.
#[derive(Debug, Clone)]
pub enum Op {
    /// What a client following the protocol does.
    Honest(Honest),
    /// What a client may do against the protocol, or at the wrong time.
    Hostile(Hostile),
    /// Time passes.
    Clock(Clock),
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=9)? {
            0..=4 => Op::Honest(u.arbitrary()?),
            5..=7 => Op::Hostile(u.arbitrary()?),
            _ => Op::Clock(u.arbitrary()?),
        })
    }
}

/// A client following the protocol. `pick` chooses among what the open connections were
/// told (their probes, their games and peers).
#[derive(Debug, Clone, Arbitrary)]
pub enum Honest {
    /// A new connection says hello (to the default scene, the scene of three or the
    /// `p2p_matrix` scene) and answers three pings.
    Join {
        subject: u8,
        scene: JoinScene,
        rtt_ms: u16,
    },
    /// Both members of a probe some connection was prepared for answer it: `probe_ready`
    /// from each, then `probe_result` from each (an RTT, or a failure).
    Answer { pick: u8, rtt_ms: Option<u16> },
    /// `probe_ready` for a probe this connection was prepared for.
    Ready { pick: u8 },
    /// `probe_result` for a probe this connection was prepared for: an RTT, or a failure.
    Result { pick: u8, rtt_ms: Option<u16> },
    /// A report about the game connection to a peer of this connection's game.
    Report { pick: u8, report: Report },
    /// Up to 64 `webrtc_signal`s in a row to a peer of this connection's game.
    Signals { pick: u8, count: u8 },
    /// The socket closes and the subject comes back on a new one with their latest token.
    Resume { conn: u8 },
    /// A server-RTT sample.
    Rtt { conn: u8, rtt_ms: u16 },
}

/// A client against the protocol. `conn` picks an open connection (or, for some values, one
/// that is closed or never existed); `probe` and `game` pick a probe or game some connection
/// was told of, or a made-up one; `subject` and `peer` pick any of the subjects.
#[derive(Debug, Clone, Arbitrary)]
pub enum Hostile {
    /// A new connection that says nothing yet.
    Connect,
    /// A `hello` on a connection (a second one, or the first of a silent one).
    Hello {
        conn: u8,
        subject: u8,
        scene: SceneChoice,
        token: TokenChoice,
    },
    /// The socket closes.
    Disconnect { conn: u8 },
    /// `leave`.
    Leave { conn: u8 },
    /// A `pong` reaching the core.
    Pong { conn: u8, seq: u64 },
    /// A frame that does not decode.
    Malformed { conn: u8, frame: u8 },
    /// `probe_ready`.
    ProbeReady { conn: u8, probe: u8 },
    /// `probe_signal` to a subject.
    ProbeSignal { conn: u8, probe: u8, peer: u8 },
    /// `probe_result`, a success with an RTT or a failure.
    ProbeResult {
        conn: u8,
        probe: u8,
        rtt_ms: Option<u16>,
    },
    /// A report about the game connection to a subject.
    Game {
        conn: u8,
        game: u8,
        peer: u8,
        report: Report,
    },
    /// Up to 64 `webrtc_signal`s in a row to a subject.
    Flood {
        conn: u8,
        game: u8,
        peer: u8,
        count: u8,
    },
    /// One of the last 16 messages sent, again on the same connection.
    Repeat { back: u8 },
    /// `finish` with `completed`, the scene's own outcome, one the server decides, or an
    /// unknown one.
    Finish { conn: u8, outcome: u8 },
    /// `record`.
    Record { conn: u8 },
    /// `attention`.
    Attention { conn: u8, hidden: bool },
}

/// The simulated clock.
#[derive(Debug, Clone, Arbitrary)]
pub enum Clock {
    /// Time passes, up to 2 s, without a tick.
    Advance { ms: u16 },
    /// The clock moves to one millisecond before, at or after the next deadline (`offset`
    /// modulo 3), without a tick.
    ToDeadline { offset: i8 },
    /// A tick.
    Tick,
}

/// The ops `data` stands for: one after another until the bytes run out.
pub fn ops(data: &[u8]) -> Vec<Op> {
    let mut u = Unstructured::new(data);
    let mut ops = vec![];
    while !u.is_empty() {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// Checks the core's property on the ops `data` stands for; `Err` says what broke, at which
/// op.
pub fn check_sequence(data: &[u8]) -> Result<(), String> {
    let ops = ops(data);
    let first = run(&ops)?;
    let second = run(&ops)?;
    if first != second {
        return Err(format!("the same ops gave other actions: {ops:?}"));
    }
    Ok(())
}

/// Runs `ops` through a fresh core; the actions, in order.
pub fn run(ops: &[Op]) -> Result<Vec<Action>, String> {
    let mut h = Harness::new();
    for (i, op) in ops.iter().enumerate() {
        h.op(op)
            .map_err(|e| format!("op {i} of {}: {op:?}: {e}\nops: {ops:?}", ops.len()))?;
    }
    h.advance(600_000);
    h.event(Event::Tick)
        .map_err(|e| format!("the final tick: {e}\nops: {ops:?}"))?;
    let stats = h.core.stats();
    if stats.probes != 0 || stats.groups != 0 || stats.waiting != 0 {
        return Err(format!("left over at the end: {stats:?}\nops: {ops:?}"));
    }
    Ok(h.log)
}

/// The shell's side: the core, the simulated clock, and what a client could know.
struct Harness {
    core: Core,
    now: Instant,
    next_conn: u64,
    /// Connections the shell holds open, in opening order.
    open: Vec<ConnId>,
    /// Connections that closed.
    closed: Vec<ConnId>,
    /// The subject each connection was welcomed as.
    subject_of: HashMap<ConnId, String>,
    /// Each subject's latest `resume_token`.
    tokens: HashMap<String, String>,
    /// The scene each connection said hello to, when not the default.
    scene_of: HashMap<ConnId, String>,
    /// Every probe any connection was prepared for.
    probes: Vec<ProbeSessionId>,
    /// Every game any connection was told of.
    games: Vec<GameId>,
    /// The probes each connection was prepared for.
    prepared: Vec<(ConnId, ProbeSessionId)>,
    /// The games each connection plays.
    /// Who plays which game, as which player.
    playing: Vec<(ConnId, (GameId, PlayerIndex))>,
    /// The last messages sent, with their connection.
    sent: Vec<(ConnId, ClientMessage)>,
    scenes: HashSet<String>,
    log: Vec<Action>,
}

impl Harness {
    fn new() -> Self {
        let config = match Config::from_toml_str(CONFIG) {
            Ok(c) => c,
            Err(e) => panic!("the fuzz config is valid: {e}"),
        };
        let scenes = config.scenes.iter().map(|s| s.id.clone()).collect();
        let now = Instant::now();
        let clock = CoreClock {
            origin: now,
            origin_unix_s: 1_700_000_000,
        };
        Harness {
            core: Core::new(Arc::new(config), clock, Box::new(SeededIds::new(9))),
            now,
            next_conn: 0,
            open: vec![],
            closed: vec![],
            subject_of: HashMap::new(),
            tokens: HashMap::new(),
            scene_of: HashMap::new(),
            probes: vec![],
            games: vec![],
            prepared: vec![],
            playing: vec![],
            sent: vec![],
            scenes,
            log: vec![],
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    /// An open connection, or for one `pick` in eight (or when none is open) a closed one or
    /// one that never existed.
    fn conn(&self, pick: u8) -> ConnId {
        if pick % 8 == 7 || self.open.is_empty() {
            let i = usize::from(pick / 8);
            return self
                .closed
                .get(i)
                .copied()
                .unwrap_or(ConnId::new(1_000_000));
        }
        self.open[usize::from(pick) % self.open.len()]
    }

    /// A peer's player index as a hostile client names it: often a real one (groups hold 2 or
    /// 3), sometimes its own, sometimes one no group has.
    fn player(pick: u8) -> PlayerIndex {
        PlayerIndex::from(pick % 5)
    }

    fn subject(pick: u8) -> SubjectId {
        match SubjectId::parse(format!("S{}", pick % SUBJECTS)) {
            Ok(s) => s,
            Err(e) => panic!("S0, S1, … are valid subject ids: {e}"),
        }
    }

    fn pick<T: Clone>(known: &[T], pick: u8, made_up: impl FnOnce() -> T) -> T {
        match known.get(usize::from(pick) % (known.len() + 1)) {
            Some(id) => id.clone(),
            None => made_up(),
        }
    }

    fn probe(&self, pick: u8) -> ProbeSessionId {
        Self::pick(&self.probes, pick, || {
            ProbeSessionId::from_string("00000000-0000-4000-8000-000000000000")
        })
    }

    fn game(&self, pick: u8) -> GameId {
        Self::pick(&self.games, pick, || {
            GameId::from_string("00000000-0000-4000-8000-000000000001")
        })
    }

    fn hello(&self, subject: u8, scene: SceneChoice, token: TokenChoice) -> ClientMessage {
        let subject_id = Self::subject(subject);
        let resume_token = match token {
            TokenChoice::None => None,
            TokenChoice::Own => self.tokens.get(subject_id.as_str()).cloned(),
            TokenChoice::Other(other) => {
                let other = Self::subject(other);
                self.tokens.get(other.as_str()).cloned()
            }
            TokenChoice::Junk => Some("0123456789abcdef0123456789abcdef".to_owned()),
        };
        let scene_id = match scene {
            SceneChoice::Default => None,
            SceneChoice::Trios => Some("trios".to_owned()),
            SceneChoice::Matrix => Some("matrix".to_owned()),
            SceneChoice::Unknown => Some("nowhere".to_owned()),
        };
        ClientMessage::Hello(Hello {
            subject_id,
            scene_id,
            resume_token,
            link_signature: None,
            recruiter: None,
            browser: None,
        })
    }

    fn connect(&mut self) -> Result<ConnId, String> {
        self.next_conn += 1;
        let conn = ConnId::new(self.next_conn);
        self.open.push(conn);
        self.event(Event::Connected { conn })?;
        Ok(conn)
    }

    fn message(&mut self, conn: ConnId, msg: ClientMessage) -> Result<(), String> {
        if let ClientMessage::Hello(Hello {
            scene_id: Some(scene),
            ..
        }) = &msg
        {
            self.scene_of.insert(conn, scene.clone());
        }
        self.sent.push((conn, msg.clone()));
        if self.sent.len() > 16 {
            self.sent.remove(0);
        }
        self.event(Event::Message { conn, msg })
    }

    fn op(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Honest(op) => self.honest(op),
            Op::Hostile(op) => self.hostile(op),
            Op::Clock(op) => self.clock(op),
        }
    }

    /// The entry of `list` at `pick` among those of open connections.
    fn own<T: Clone>(&self, list: &[(ConnId, T)], pick: u8) -> Option<(ConnId, T)> {
        let mine: Vec<_> = list.iter().filter(|(c, _)| self.open.contains(c)).collect();
        (!mine.is_empty()).then(|| mine[usize::from(pick) % mine.len()].clone())
    }

    /// A game an open connection plays, and one of its peers there, by player index.
    fn own_game(&self, pick: u8) -> Option<(ConnId, GameId, PlayerIndex)> {
        let (conn, (game, me)) = self.own(&self.playing, pick)?;
        let mut peers: Vec<PlayerIndex> = (self.playing.iter())
            .filter(|(_, (g, index))| *g == game && *index != me)
            .map(|(_, (_, index))| *index)
            .collect();
        peers.sort_unstable();
        peers.dedup();
        let peer = *peers.get(usize::from(pick) % peers.len().max(1))?;
        Some((conn, game, peer))
    }

    fn honest(&mut self, op: &Honest) -> Result<(), String> {
        match *op {
            Honest::Join {
                subject,
                scene,
                rtt_ms,
            } => {
                let conn = self.connect()?;
                let scene = match scene {
                    JoinScene::Pairs => SceneChoice::Default,
                    JoinScene::Trios => SceneChoice::Trios,
                    JoinScene::Matrix => SceneChoice::Matrix,
                };
                self.message(conn, self.hello(subject, scene, TokenChoice::None))?;
                for _ in 0..3 {
                    let rtt_ms = f64::from(rtt_ms % 300);
                    self.event(Event::RttSample { conn, rtt_ms })?;
                }
                self.event(Event::Tick)
            }
            Honest::Answer { pick, rtt_ms } => {
                let Some((_, probe)) = self.own(&self.prepared, pick) else {
                    return Ok(());
                };
                let members: Vec<ConnId> = (self.prepared.iter())
                    .filter(|(c, p)| *p == probe && self.open.contains(c))
                    .map(|(c, _)| *c)
                    .collect();
                for &conn in &members {
                    let msg = ClientMessage::ProbeReady(ProbeReady {
                        probe_session_id: probe.clone(),
                    });
                    self.message(conn, msg)?;
                }
                for &conn in &members {
                    self.message(conn, Self::probe_result(probe.clone(), rtt_ms))?;
                }
                Ok(())
            }
            Honest::Ready { pick } => match self.own(&self.prepared, pick) {
                Some((conn, probe_session_id)) => {
                    let msg = ClientMessage::ProbeReady(ProbeReady { probe_session_id });
                    self.message(conn, msg)
                }
                None => Ok(()),
            },
            Honest::Result { pick, rtt_ms } => match self.own(&self.prepared, pick) {
                Some((conn, probe_session_id)) => {
                    let msg = Self::probe_result(probe_session_id, rtt_ms);
                    self.message(conn, msg)
                }
                None => Ok(()),
            },
            Honest::Report { pick, report } => match self.own_game(pick) {
                Some((conn, game, peer)) => self.message(conn, Self::report(game, peer, report)),
                None => Ok(()),
            },
            Honest::Signals { pick, count } => match self.own_game(pick) {
                Some((conn, game, peer)) => self.signals(conn, game, peer, count),
                None => Ok(()),
            },
            Honest::Resume { conn } => {
                let old = self.conn(conn);
                let subject = self.subject_of.get(&old).cloned();
                self.event(Event::Disconnected { conn: old })?;
                let new = self.connect()?;
                let Some(subject) = subject else {
                    return Ok(());
                };
                let resume_token = self.tokens.get(&subject).cloned();
                let msg = ClientMessage::Hello(Hello {
                    subject_id: SubjectId::parse(subject).map_err(|e| e.to_string())?,
                    scene_id: self.scene_of.get(&old).cloned(),
                    resume_token,
                    link_signature: None,
                    recruiter: None,
                    browser: None,
                });
                self.message(new, msg)
            }
            Honest::Rtt { conn, rtt_ms } => self.event(Event::RttSample {
                conn: self.conn(conn),
                rtt_ms: f64::from(rtt_ms),
            }),
        }
    }

    fn hostile(&mut self, op: &Hostile) -> Result<(), String> {
        match *op {
            Hostile::Connect => self.connect().map(|_| ()),
            Hostile::Hello {
                conn,
                subject,
                scene,
                token,
            } => self.message(self.conn(conn), self.hello(subject, scene, token)),
            Hostile::Disconnect { conn } => {
                let conn = self.conn(conn);
                self.event(Event::Disconnected { conn })
            }
            Hostile::Leave { conn } => self.message(self.conn(conn), ClientMessage::Leave),
            Hostile::Finish { conn, outcome } => {
                let names = ["completed", "screened_out", "partner_lost", "nope"];
                let outcome = names[usize::from(outcome) % names.len()].to_owned();
                self.message(self.conn(conn), ClientMessage::Finish(Finish { outcome }))
            }
            Hostile::Record { conn } => {
                let event = RecordEvent {
                    event: "trial".into(),
                    fields: serde_json::Map::new(),
                };
                self.message(self.conn(conn), ClientMessage::Record(event))
            }
            Hostile::Attention { conn, hidden } => {
                let attention = Attention {
                    hidden,
                    hidden_ms: None,
                };
                self.message(self.conn(conn), ClientMessage::Attention(attention))
            }
            Hostile::Pong { conn, seq } => {
                self.message(self.conn(conn), ClientMessage::Pong(Pong { seq }))
            }
            Hostile::Malformed { conn, frame } => {
                let frames = [
                    "",
                    "[]",
                    "{\"type\":\"nope\"}",
                    "{\"type\":\"hello\"}",
                    "{\"type\":\"hello\",\"subject_id\":\"a b\"}",
                    "{\"type\":\"hello\",\"subject_id\":\"S1\",\"scene_id\":7}",
                    "{\"type\":\"probe_ready\"}",
                    "{\"type\":\"episode_summary\",\"episode\":0}",
                ];
                let text = frames[usize::from(frame) % frames.len()];
                let error = match ClientMessage::decode(text) {
                    Err(error) => error,
                    Ok(msg) => return Err(format!("{text:?} decoded to {msg:?}")),
                };
                let conn = self.conn(conn);
                self.event(Event::Malformed { conn, error })
            }
            Hostile::ProbeReady { conn, probe } => {
                let probe_session_id = self.probe(probe);
                let msg = ClientMessage::ProbeReady(ProbeReady { probe_session_id });
                self.message(self.conn(conn), msg)
            }
            Hostile::ProbeSignal { conn, probe, peer } => {
                let msg = ClientMessage::ProbeSignal(ProbeSignalOut {
                    probe_session_id: self.probe(probe),
                    target_index: Self::player(peer),
                    signal_type: SignalType::IceCandidate,
                    payload: None,
                });
                self.message(self.conn(conn), msg)
            }
            Hostile::ProbeResult {
                conn,
                probe,
                rtt_ms,
            } => {
                let msg = Self::probe_result(self.probe(probe), rtt_ms);
                self.message(self.conn(conn), msg)
            }
            Hostile::Game {
                conn,
                game,
                peer,
                report,
            } => {
                let msg = Self::report(self.game(game), Self::player(peer), report);
                self.message(self.conn(conn), msg)
            }
            Hostile::Flood {
                conn,
                game,
                peer,
                count,
            } => self.signals(self.conn(conn), self.game(game), Self::player(peer), count),
            Hostile::Repeat { back } => {
                let Some(i) = self
                    .sent
                    .len()
                    .checked_sub(1 + usize::from(back) % self.sent.len().max(1))
                else {
                    return Ok(());
                };
                let (conn, msg) = self.sent[i].clone();
                self.message(conn, msg)
            }
        }
    }

    fn clock(&mut self, op: &Clock) -> Result<(), String> {
        match *op {
            Clock::Advance { ms } => {
                self.advance(u64::from(ms % 2_000));
                Ok(())
            }
            Clock::ToDeadline { offset } => {
                if let Some(deadline) = self.core.next_deadline() {
                    let at = match offset.rem_euclid(3) {
                        0 => deadline.checked_sub(Duration::from_millis(1)),
                        1 => Some(deadline),
                        _ => deadline.checked_add(Duration::from_millis(1)),
                    };
                    self.now = at.map_or(self.now, |at| at.max(self.now));
                }
                Ok(())
            }
            Clock::Tick => self.event(Event::Tick),
        }
    }

    /// `count % 65` offers in a row.
    fn signals(
        &mut self,
        conn: ConnId,
        game_id: GameId,
        target_index: PlayerIndex,
        count: u8,
    ) -> Result<(), String> {
        for _ in 0..count % 65 {
            let msg = ClientMessage::WebrtcSignal(WebrtcSignalOut {
                game_id: game_id.clone(),
                target_index,
                signal_type: SignalType::Offer,
                payload: Some(SignalPayload::Description { sdp: "v=0".into() }),
            });
            self.message(conn, msg)?;
        }
        Ok(())
    }

    fn probe_result(probe_session_id: ProbeSessionId, rtt_ms: Option<u16>) -> ClientMessage {
        let rtt_ms = rtt_ms.map(|ms| f64::from(ms % 150));
        ClientMessage::ProbeResult(ProbeResult {
            probe_session_id,
            success: rtt_ms.is_some(),
            rtt_ms,
            samples_ms: rtt_ms.into_iter().collect(),
            stats_rtt_ms: rtt_ms,
            connection: None,
        })
    }

    fn report(game_id: GameId, peer_index: PlayerIndex, report: Report) -> ClientMessage {
        match report {
            Report::ConnectionType => ClientMessage::P2pConnectionType(P2pConnectionType {
                game_id,
                peer_index,
                info: ConnectionInfo {
                    connection_type: ConnectionKind::Relay,
                    local_candidate_type: CandidateType::Relay,
                    remote_candidate_type: CandidateType::Srflx,
                    protocol: IceProtocol::Udp,
                    relay_protocol: Some(RelayProtocol::Tcp),
                },
                connect_ms: Some(850.0),
                setup: None,
                same_path_as_probe: None,
            }),
            Report::Quality(level) => ClientMessage::P2pQuality(P2pQuality {
                game_id,
                peer_index,
                level: [
                    QualityLevel::Ok,
                    QualityLevel::Warning,
                    QualityLevel::Critical,
                ][usize::from(level % 3)],
                rtt_ms: Some(f64::from(level)),
            }),
            Report::IceRestart(attempt) => ClientMessage::P2pIceRestart(P2pIceRestart {
                game_id,
                peer_index,
                attempt: 1 + u32::from(attempt % 100),
                trigger: IceRestartTrigger::Disconnected,
                outcome: IceRestartOutcome::Started,
                duration_ms: None,
            }),
            Report::Failed => ClientMessage::P2pConnectionFailed(P2pConnectionFailed {
                game_id,
                peer_index,
                attempts: 3,
            }),
            Report::Episode(episode) => ClientMessage::EpisodeSummary(EpisodeSummary {
                game_id,
                episode: 1 + u32::from(episode % 4),
                frames: 600,
                inputs_sent: 600,
                hidden_count: 0,
                hidden_ms: 0.0,
                peers: vec![PeerMetrics {
                    peer_index,
                    inputs_received: 598,
                    connection: None,
                    rtt_ms: None,
                    quality_changes: vec![],
                    ice_restarts: 0,
                    setup: None,
                    same_path_as_probe: None,
                }],
            }),
        }
    }

    /// One event at the current time: the core handles it, the invariants are checked, and
    /// its actions are checked against the open connections and carried out as the shell
    /// would (a closed connection reports its close).
    fn event(&mut self, event: Event) -> Result<(), String> {
        let mut out = vec![];
        self.core.handle(self.now, event.clone(), &mut out);
        self.core
            .check_invariants()
            .map_err(|e| format!("after {event:?}: invariant broken: {e}"))?;
        let mut to_close = vec![];
        for action in &out {
            match action {
                Action::Send { conn, msg } => {
                    if !self.open.contains(conn) || to_close.contains(conn) {
                        return Err(format!("after {event:?}: {msg:?} sent to {conn}, not open"));
                    }
                    self.learn(*conn, msg);
                }
                Action::Close { conn } => {
                    if !self.open.contains(conn) || to_close.contains(conn) {
                        return Err(format!("after {event:?}: closes {conn}, not open"));
                    }
                    to_close.push(*conn);
                }
                Action::Record { scene_id, event } => {
                    if !self.scenes.contains(scene_id) {
                        return Err(format!("{event:?} recorded for unknown scene {scene_id}"));
                    }
                }
            }
        }
        self.log.extend(out);
        if let Event::Disconnected { conn } = event {
            self.close(conn);
        }
        for conn in to_close {
            self.close(conn);
            self.event(Event::Disconnected { conn })?;
        }
        Ok(())
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(i) = self.open.iter().position(|&c| c == conn) {
            self.open.remove(i);
            self.closed.push(conn);
        }
    }

    /// What a client learns from a message: its token, probes and games.
    fn learn(&mut self, conn: ConnId, msg: &ServerMessage) {
        match msg {
            ServerMessage::Welcome(w) => {
                let subject = w.subject_id.as_str().to_owned();
                self.tokens.insert(subject.clone(), w.resume_token.clone());
                self.subject_of.insert(conn, subject);
            }
            ServerMessage::ProbePrepare(p) => {
                if !self.probes.contains(&p.probe_session_id) {
                    self.probes.push(p.probe_session_id.clone());
                }
                self.prepared.push((conn, p.probe_session_id.clone()));
            }
            ServerMessage::GameStart(g) => {
                if !self.games.contains(&g.game_id) {
                    self.games.push(g.game_id.clone());
                }
                self.playing
                    .push((conn, (g.game_id.clone(), g.player_index)));
            }
            _ => {}
        }
    }
}
