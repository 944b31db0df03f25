//! Browser tests of the game connection and the game loop: real `RTCPeerConnection`s in one
//! headless Chromium page, joined by an in-memory signalling loop that plays the server's part.
//! The connection, loop and message tests run twice: on fresh connections, and on the
//! connection of a probe kept for the game and handed over (`*_handed_over`).
//!
//! Run from the workspace root: `wasm-pack test --headless --chrome --mode no-install
//! client-wasm --test game`. The relay test needs a TURN server, given at COMPILE time:
//! `eval "$(scripts/coturn-test.sh start)"` exports `PAIRLAB_TEST_TURN_URL`,
//! `PAIRLAB_TEST_TURN_USER` and `PAIRLAB_TEST_TURN_PASS`; `scripts/coturn-test.sh stop` stops it.

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::mpsc;
use futures::future::{self, Either};
use futures::stream::{self, SelectAll, StreamExt};
use gloo_timers::future::TimeoutFuture;
use pairlab_client::game::connection::{ConnectionEvent, ConnectionSpec};
use pairlab_client::game::framing::Frame;
use pairlab_client::game::logic::HiddenLog;
use pairlab_client::game::{
    ConnectionTuning, Game, GameConfig, GameEvent, GameLogic, GamePhase, PlayError, Recipient,
    SendError, WebRtcManager,
};
use pairlab_client::handover::{GamePath, GamePaths};
use pairlab_client::peer::ChannelData;
use pairlab_client::probe::ProbeManager;
use pairlab_client::signaling::Outbox;
use pairlab_client::util::now_ms;
use pairlab_shared::{
    CandidateType, ClientMessage, ConnectionKind, ConnectionSetup, GameId, IceRestartOutcome,
    IceRestartTrigger, IceServer, RelayProtocol, ServerMessage, WebrtcSignalIn,
};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{RtcPeerConnection, RtcPeerConnectionState};

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::kept::{game_start, game_start_with_probe, KeptProbe, KeptSpec};
use common::within;

/// How the tests' game connections are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// Fresh connections negotiated at `game_start`.
    Fresh,
    /// The connection of a probe kept for the game (`keep_ms`), handed over.
    Handover,
}

impl Setup {
    fn wire(self) -> ConnectionSetup {
        match self {
            Setup::Fresh => ConnectionSetup::Fresh,
            Setup::Handover => ConnectionSetup::Handover,
        }
    }
}

/// Both sides' game paths for game `game_id`: none (fresh), or a kept probe's connection
/// handed over.
async fn paths(setup: Setup, game_id: &str) -> [GamePaths; 2] {
    match setup {
        Setup::Fresh => Default::default(),
        Setup::Handover => kept_paths(KeptSpec::default(), game_id).await,
    }
}

/// Both sides' game paths for game `game_id`: a probe kept as `spec` says, handed over.
async fn kept_paths(spec: KeptSpec, game_id: &str) -> [GamePaths; 2] {
    let probe = KeptProbe::run(&format!("kept-{game_id}"), spec).await;
    [0, 1].map(|i| probe.hand_over(i, game_id, true).1)
}

fn assert_closed(pc: &RtcPeerConnection, who: &str) {
    assert_eq!(
        pc.connection_state(),
        RtcPeerConnectionState::Closed,
        "{who}: connectionState after close"
    );
}

#[wasm_bindgen_test]
async fn unanswered_restarts_time_out_and_end_in_connection_failed() {
    let mut pair = Pair::with_tuning(
        vec![],
        false,
        ConnectionTuning {
            restart_timeout_ms: 300,
            max_restarts: 3,
            ..tuning()
        },
    );
    pair.connect(10_000).await;
    // The signalling path breaks: restart offers never reach the peer.
    pair.route_signals = false;
    let t0 = now_ms();
    pair.managers[0].restart(IceRestartTrigger::Failed);
    pair.pump_until(5000, "p2p_connection_failed", |p| {
        p.sent[0]
            .iter()
            .any(|m| matches!(m, ClientMessage::P2pConnectionFailed(_)))
    })
    .await;
    let took = now_ms() - t0;
    let mut expected = Vec::new();
    for attempt in 1..=3 {
        expected.push(format!("restart {attempt} Started"));
        expected.push(format!("restart {attempt} Failed"));
    }
    expected.push("connection_failed 3".to_owned());
    let got: Vec<String> = pair.sent[0]
        .iter()
        .filter_map(|m| match m {
            ClientMessage::P2pIceRestart(r) => {
                assert_eq!(r.trigger, IceRestartTrigger::Failed);
                if r.outcome == IceRestartOutcome::Failed {
                    let d = r.duration_ms.expect("duration of a failed attempt");
                    assert!((290.0..2000.0).contains(&d), "attempt took {d} ms");
                }
                Some(format!("restart {} {:?}", r.attempt, r.outcome))
            }
            ClientMessage::P2pConnectionFailed(f) => {
                assert_eq!(f.peer_index, 1);
                Some(format!("connection_failed {}", f.attempts))
            }
            _ => None,
        })
        .collect();
    assert_eq!(got, expected);
    assert!(took >= 900.0, "three attempts of 300 ms took {took} ms");
    pair.pump_until(1000, "the Failed event", |p| {
        p.seen[0].contains(&ConnectionEvent::Failed { attempts: 3 })
    })
    .await;
    pair.close_and_check();
}

/// The `a=ice-ufrag` of the local description.
fn ice_ufrag(pc: &RtcPeerConnection) -> Option<String> {
    let sdp = pc.local_description()?.sdp();
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .map(str::to_owned)
}

type Inbox = SelectAll<stream::LocalBoxStream<'static, (usize, ClientMessage)>>;

fn outbox(i: usize, inbox: &mut Inbox) -> Outbox {
    let (tx, rx) = mpsc::unbounded();
    inbox.push(rx.map(move |m| (i, m)).boxed_local());
    Rc::new(move |m| {
        let _ = tx.unbounded_send(m);
    })
}

/// Two managers, players 0 and 1 (player 0 initiates: the smaller index), and the server's
/// part in memory. Side `i` is player `i`.
struct Pair {
    managers: [WebRtcManager; 2],
    events: [mpsc::UnboundedReceiver<ConnectionEvent>; 2],
    inbox: Inbox,
    /// Everything but signals, per side, in order.
    sent: [Vec<ClientMessage>; 2],
    seen: [Vec<ConnectionEvent>; 2],
    started_at_ms: f64,
    /// Whether signals are relayed (false: the server part drops them).
    route_signals: bool,
    /// Signals relayed so far.
    signals: usize,
}

fn tuning() -> ConnectionTuning {
    ConnectionTuning {
        quality_interval_ms: 200,
        ..ConnectionTuning::default()
    }
}

impl Pair {
    fn new(ice_servers: Vec<IceServer>, force_relay: bool) -> Self {
        Self::with_tuning(ice_servers, force_relay, tuning())
    }

    fn with_tuning(
        ice_servers: Vec<IceServer>,
        force_relay: bool,
        tuning: ConnectionTuning,
    ) -> Self {
        Self::build(ice_servers, force_relay, tuning, Default::default())
    }

    /// Two managers on a kept probe's connection, handed over.
    async fn handed_over(tuning: ConnectionTuning) -> Self {
        let paths = paths(Setup::Handover, "g-test").await;
        Self::build(vec![], false, tuning, paths)
    }

    /// Two managers on the connection of a probe kept as `spec` says (its ICE servers and
    /// relay policy also the game's), handed over.
    async fn handed_over_with(spec: KeptSpec, tuning: ConnectionTuning) -> Self {
        let (servers, relay) = (spec.ice_servers.clone(), spec.force_relay);
        let paths = kept_paths(spec, "g-test").await;
        Self::build(servers, relay, tuning, paths)
    }

    fn build(
        ice_servers: Vec<IceServer>,
        force_relay: bool,
        tuning: ConnectionTuning,
        mut paths: [GamePaths; 2],
    ) -> Self {
        let game_id = GameId::from_string("g-test");
        let mut inbox = SelectAll::new();
        let started_at_ms = now_ms();
        let mut make = |i: usize| {
            let spec = ConnectionSpec {
                game_id: game_id.clone(),
                local_index: i as u32,
                peer_index: 1 - i as u32,
                ice_servers: ice_servers.clone(),
                force_relay,
                started_at_ms,
                tuning,
                probe_path: None,
                offer_anyway: false,
            };
            match paths[i].remove(&(1 - i as u32)) {
                Some(GamePath::Adopt(parked)) => {
                    WebRtcManager::adopt(spec, parked, outbox(i, &mut inbox))
                }
                _ => WebRtcManager::start(spec, outbox(i, &mut inbox)).expect("manager"),
            }
        };
        let (a, ea) = make(0);
        let (b, eb) = make(1);
        Self {
            managers: [a, b],
            events: [ea, eb],
            inbox,
            sent: [Vec::new(), Vec::new()],
            seen: [Vec::new(), Vec::new()],
            started_at_ms,
            route_signals: true,
            signals: 0,
        }
    }

    /// Routes messages and collects events until `done` holds (checked after each one).
    async fn pump_until(&mut self, ms: u32, what: &str, done: impl Fn(&Self) -> bool) {
        assert!(self.pump(ms, done).await, "{what}: not within {ms} ms");
    }

    /// Routes messages and collects events for `ms`, or until `done` holds; says whether
    /// it held.
    async fn pump(&mut self, ms: u32, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = now_ms() + f64::from(ms);
        loop {
            if done(self) {
                return true;
            }
            if now_ms() >= deadline {
                return false;
            }
            let [ea, eb] = &mut self.events;
            let step = futures::select! {
                m = self.inbox.next() => Some(Either::Left(m)),
                e = ea.next() => Some(Either::Right((0, e))),
                e = eb.next() => Some(Either::Right((1, e))),
                () = futures::FutureExt::fuse(TimeoutFuture::new(50)) => None,
            };
            match step {
                Some(Either::Left(Some((_, ClientMessage::WebrtcSignal(_)))))
                    if !self.route_signals => {}
                Some(Either::Left(Some((from, ClientMessage::WebrtcSignal(s))))) => {
                    assert_eq!(s.target_index, 1 - from as u32, "signal target");
                    self.signals += 1;
                    self.managers[1 - from].handle_signal(s.signal_type, s.payload);
                }
                Some(Either::Left(Some((from, m)))) => self.sent[from].push(m),
                Some(Either::Right((i, Some(e)))) => self.seen[i].push(e),
                _ => {}
            }
        }
    }

    fn opened(&self, i: usize) -> Option<f64> {
        self.seen[i].iter().find_map(|e| match e {
            ConnectionEvent::Open { connect_ms } => Some(*connect_ms),
            _ => None,
        })
    }

    fn connection_type(&self, i: usize) -> Option<pairlab_shared::P2pConnectionType> {
        self.sent[i].iter().find_map(|m| match m {
            ClientMessage::P2pConnectionType(t) => Some(t.clone()),
            _ => None,
        })
    }

    /// The researcher's messages side `i` received on the unreliable (`reliable` false) or
    /// the reliable channel.
    fn messages(&self, i: usize, reliable: bool) -> Vec<ChannelData> {
        self.seen[i]
            .iter()
            .filter_map(|e| match e {
                ConnectionEvent::Message { data, reliable: r } if *r == reliable => {
                    Some(data.clone())
                }
                _ => None,
            })
            .collect()
    }

    async fn connect(&mut self, ms: u32) -> [f64; 2] {
        self.pump_until(ms, "both sides open and typed", |p| {
            (0..2).all(|i| p.opened(i).is_some() && p.connection_type(i).is_some())
        })
        .await;
        [0, 1].map(|i| self.opened(i).unwrap_or(f64::NAN))
    }

    /// Unreliable strings both ways (a few may be lost: sent until one arrives).
    async fn exchange_inputs(&mut self) {
        for round in 0..20 {
            for i in 0..2 {
                let _ = self.managers[i].send(&Frame::Text(format!("in-{i}-{round}")), false);
            }
            self.pump(100, |_| false).await;
            if (0..2).all(|i| !self.messages(i, false).is_empty()) {
                break;
            }
        }
        for i in 0..2 {
            let got = self.messages(i, false);
            assert!(
                got.iter().any(|d| matches!(
                    d,
                    ChannelData::Text(t) if t.starts_with(&format!("in-{}-", 1 - i))
                )),
                "side {i} got the peer's inputs: {got:?}"
            );
        }
    }

    fn close_and_check(&mut self) {
        for m in &mut self.managers {
            m.close();
        }
        for (i, m) in self.managers.iter().enumerate() {
            assert_closed(&m.raw(), &format!("side {i}"));
            assert!(!m.is_open(), "side {i}: channels after close");
        }
    }
}

#[wasm_bindgen_test]
async fn direct_connection_channels_inputs_and_close() {
    direct_connection(Setup::Fresh).await;
}

#[wasm_bindgen_test]
async fn direct_connection_channels_inputs_and_close_handed_over() {
    direct_connection(Setup::Handover).await;
}

async fn direct_connection(setup: Setup) {
    let mut pair = match setup {
        Setup::Fresh => Pair::new(vec![], false),
        Setup::Handover => Pair::handed_over(tuning()).await,
    };
    let connect = pair.connect(10_000).await;
    console_log!(
        "direct ({setup:?}): both channels open {:.1} / {:.1} ms after game_start, {} signals",
        connect[0],
        connect[1],
        pair.signals
    );
    for i in 0..2 {
        assert!(pair.managers[i].is_open(), "side {i}: channels open");
        let t = pair.connection_type(i).expect("p2p_connection_type");
        assert_eq!(t.peer_index, 1 - i as u32);
        assert_eq!(t.info.connection_type, ConnectionKind::Direct, "side {i}");
        assert_eq!(t.info.local_candidate_type, CandidateType::Host, "side {i}");
        assert_eq!(t.info.relay_protocol, None);
        let ms = t.connect_ms.expect("connect_ms");
        // Fresh: a handshake takes time; handed over: up at once, maybe within the same ms.
        let floor_ok = match setup {
            Setup::Fresh => ms > 0.0,
            Setup::Handover => ms >= 0.0,
        };
        assert!(floor_ok && ms < 10_000.0, "connect_ms {ms}");
        assert_eq!(t.setup, Some(setup.wire()), "side {i}");
        match setup {
            // The probe's own candidate pair carries the game.
            Setup::Handover => assert_eq!(t.same_path_as_probe, Some(true), "side {i}"),
            // No probe here.
            Setup::Fresh => assert_eq!(t.same_path_as_probe, None, "side {i}"),
        }
    }
    if setup == Setup::Handover {
        assert_eq!(
            pair.signals, 0,
            "a handed-over connection needs no negotiation"
        );
    }
    pair.exchange_inputs().await;
    // Control channel: reliable, both ways.
    pair.managers[0]
        .send(&Frame::Text("hello".into()), true)
        .expect("control a");
    pair.managers[1]
        .send(&Frame::Bytes(vec![0, 1, 2]), true)
        .expect("control b");
    pair.pump_until(3000, "control messages", |p| {
        (0..2).all(|i| !p.messages(i, true).is_empty())
    })
    .await;
    assert_eq!(
        pair.messages(1, true),
        vec![ChannelData::Text("hello".into())]
    );
    assert_eq!(
        pair.messages(0, true),
        vec![ChannelData::Binary(vec![0, 1, 2])]
    );
    // The quality monitor samples at 200 ms here, and nothing is slow on loopback.
    pair.pump_until(3000, "rtt samples", |p| {
        p.managers
            .iter()
            .all(|m| m.observations().rtt_samples.len() >= 2)
    })
    .await;
    assert!(pair
        .sent
        .iter()
        .flatten()
        .all(|m| !matches!(m, ClientMessage::P2pQuality(_))));
    let _ = pair.started_at_ms;
    pair.close_and_check();
}

#[wasm_bindgen_test]
async fn relay_connection_through_coturn() {
    relay_connection(Setup::Fresh).await;
}

/// The case: a `force_relay` scene's probe measures the relayed path, and that very
/// connection (its relay allocations, its candidate pair) carries the game.
#[wasm_bindgen_test]
async fn relay_connection_through_coturn_handed_over() {
    relay_connection(Setup::Handover).await;
}

async fn relay_connection(setup: Setup) {
    let (Some(url), Some(user), Some(pass)) = (
        option_env!("PAIRLAB_TEST_TURN_URL"),
        option_env!("PAIRLAB_TEST_TURN_USER"),
        option_env!("PAIRLAB_TEST_TURN_PASS"),
    ) else {
        panic!(
            "the relay test needs a TURN server at compile time: run \
             `eval \"$(scripts/coturn-test.sh start)\"` from the workspace root, then \
             `wasm-pack test --headless --chrome --mode no-install client-wasm --test game`, \
             then `scripts/coturn-test.sh stop`"
        );
    };
    let servers = vec![IceServer {
        urls: vec![url.to_owned()],
        username: Some(user.to_owned()),
        credential: Some(pass.to_owned()),
    }];
    let mut pair = match setup {
        Setup::Fresh => Pair::new(servers, true),
        Setup::Handover => {
            let spec = KeptSpec {
                ice_servers: servers,
                force_relay: true,
                ..KeptSpec::default()
            };
            Pair::handed_over_with(spec, tuning()).await
        }
    };
    let connect = pair.connect(15_000).await;
    console_log!(
        "relay ({setup:?}): both channels open {:.1} / {:.1} ms after game_start",
        connect[0],
        connect[1]
    );
    for i in 0..2 {
        let t = pair.connection_type(i).expect("p2p_connection_type");
        assert_eq!(t.info.connection_type, ConnectionKind::Relay, "side {i}");
        assert_eq!(
            t.info.local_candidate_type,
            CandidateType::Relay,
            "side {i}"
        );
        assert_eq!(t.info.relay_protocol, Some(RelayProtocol::Udp), "side {i}");
        assert_eq!(t.setup, Some(setup.wire()), "side {i}");
        if setup == Setup::Handover {
            assert_eq!(
                t.same_path_as_probe,
                Some(true),
                "side {i}: the probe's relayed pair"
            );
        }
    }
    if setup == Setup::Handover {
        assert_eq!(
            pair.signals, 0,
            "a handed-over connection needs no negotiation"
        );
    }
    pair.exchange_inputs().await;
    pair.close_and_check();
}

#[wasm_bindgen_test]
async fn ice_restart_of_a_connected_pair_succeeds() {
    ice_restart(Setup::Fresh).await;
}

#[wasm_bindgen_test]
async fn ice_restart_of_a_handed_over_pair_succeeds() {
    ice_restart(Setup::Handover).await;
}

async fn ice_restart(setup: Setup) {
    let mut pair = match setup {
        Setup::Fresh => Pair::new(vec![], false),
        Setup::Handover => Pair::handed_over(tuning()).await,
    };
    pair.connect(10_000).await;
    let ufrags_before = [0, 1].map(|i| ice_ufrag(&pair.managers[i].raw()));
    let t0 = now_ms();
    pair.managers[0].restart(IceRestartTrigger::Disconnected);
    let restarts = |p: &Pair| -> Vec<(u32, IceRestartOutcome, Option<f64>)> {
        p.sent[0]
            .iter()
            .filter_map(|m| match m {
                ClientMessage::P2pIceRestart(r) => Some((r.attempt, r.outcome, r.duration_ms)),
                _ => None,
            })
            .collect()
    };
    pair.pump_until(10_000, "the restart's outcome", |p| restarts(p).len() >= 2)
        .await;
    let r = restarts(&pair);
    assert_eq!(r[0].0, 1);
    assert_eq!(r[0].1, IceRestartOutcome::Started);
    assert_eq!(r[0].2, None);
    assert_eq!(r[1].1, IceRestartOutcome::Succeeded, "{r:?}");
    let took = r[1].2.expect("duration");
    console_log!(
        "ICE restart ({setup:?}) succeeded in {took:.1} ms ({:.1} ms wall)",
        now_ms() - t0
    );
    assert!(pair.managers[0].observations().restarts.len() == 1);
    // A real restart: both sides use new ICE credentials (RFC 8445 §9).
    for (i, before) in ufrags_before.iter().enumerate() {
        let after = ice_ufrag(&pair.managers[i].raw());
        assert!(after.is_some(), "side {i}: an ice-ufrag after the restart");
        assert_ne!(&after, before, "side {i}: ice-ufrag changed");
    }
    // Still usable afterwards.
    pair.exchange_inputs().await;
    pair.close_and_check();
}

/// `(frame, inputs by player)` of every step.
type StepLog = Rc<RefCell<Vec<(u32, Vec<u32>)>>>;

/// A tiny game: counts frames and the peer's inputs.
struct Counter {
    me: usize,
    log: StepLog,
}

impl GameLogic for Counter {
    fn episode_start(&mut self, _episode: u32) {}
    fn read_input(&mut self) -> u32 {
        10 + self.me as u32
    }
    fn step(&mut self, frame: u32, inputs: &[u32]) {
        self.log.borrow_mut().push((frame, inputs.to_vec()));
    }
}

/// Two games (players 0 and 1) joined by the server's part in memory; their events and their
/// other messages are collected.
struct Games {
    games: Vec<Game>,
    inbox: Inbox,
    events: [Rc<RefCell<Vec<GameEvent>>>; 2],
    sent: [Vec<ClientMessage>; 2],
    /// Each side's record of when its page was hidden.
    hidden: [Rc<RefCell<HiddenLog>>; 2],
}

impl Games {
    async fn start(id: &str, tuning: ConnectionTuning, setup: Setup) -> Self {
        Self::with_paths(id, tuning, paths(setup, id).await)
    }

    /// The two games, with each side's connection set up as `paths` says.
    fn with_paths(id: &str, tuning: ConnectionTuning, paths: [GamePaths; 2]) -> Self {
        let mut inbox: Inbox = SelectAll::new();
        let events: [Rc<RefCell<Vec<GameEvent>>>; 2] = Default::default();
        let hidden: [Rc<RefCell<HiddenLog>>; 2] = Default::default();
        let mut paths = paths.into_iter();
        let games = (0..2)
            .map(|i| {
                let ev = Rc::clone(&events[i]);
                Game::start(
                    &game_start(id, i as u32, Vec::new()),
                    tuning,
                    paths.next().unwrap_or_default(),
                    outbox(i, &mut inbox),
                    Rc::new(move |e| ev.borrow_mut().push(e)),
                    Rc::clone(&hidden[i]),
                )
            })
            .collect();
        Self {
            games,
            inbox,
            events,
            sent: Default::default(),
            hidden,
        }
    }

    /// Relays signals and collects messages until `done` holds.
    async fn pump_until(&mut self, ms: u32, what: &str, done: impl Fn(&Self) -> bool) {
        within(ms, what, async {
            while !done(self) {
                let step = future::select(self.inbox.next(), TimeoutFuture::new(20)).await;
                match step {
                    Either::Left((Some((from, ClientMessage::WebrtcSignal(s))), _)) => {
                        let msg = ServerMessage::WebrtcSignal(WebrtcSignalIn {
                            game_id: s.game_id,
                            from_index: from as u32,
                            signal_type: s.signal_type,
                            payload: s.payload,
                        });
                        assert!(self.games[1 - from].handle(&msg));
                    }
                    Either::Left((Some((from, m)), _)) => self.sent[from].push(m),
                    _ => {}
                }
            }
        })
        .await;
    }

    fn saw(&self, i: usize, want: &GameEvent) -> bool {
        self.events[i].borrow().contains(want)
    }

    /// The researcher's messages side `i` received, as `(from, data, reliable)`.
    fn messages(&self, i: usize) -> Vec<(u32, ChannelData, bool)> {
        self.events[i]
            .borrow()
            .iter()
            .filter_map(|e| match e {
                GameEvent::Message {
                    from,
                    data,
                    reliable,
                } => Some((*from, data.clone(), *reliable)),
                _ => None,
            })
            .collect()
    }
}

#[wasm_bindgen_test]
async fn game_plays_episodes_sends_summaries_and_closes() {
    game_plays(Setup::Fresh).await;
}

#[wasm_bindgen_test]
async fn game_plays_episodes_sends_summaries_and_closes_handed_over() {
    game_plays(Setup::Handover).await;
}

async fn game_plays(setup: Setup) {
    let config = GameConfig {
        tick_ms: 20,
        episode_ms: 600,
        episodes: 2,
        input_delay_frames: 2,
        redundancy: 3,
        tuning: tuning(),
    };
    let mut g = Games::start("g-loop", config.tuning, setup).await;
    // Side 0's page is hidden from before the game to its end; side 1's never.
    g.hidden[0].borrow_mut().set(true, now_ms());
    let logs: [StepLog; 2] = Default::default();
    let results: Rc<RefCell<Vec<Result<u32, PlayError>>>> = Rc::default();
    for (i, log) in logs.iter().enumerate() {
        let play = g.games[i].play(
            config,
            Box::new(Counter {
                me: i,
                log: Rc::clone(log),
            }),
        );
        let results = Rc::clone(&results);
        wasm_bindgen_futures::spawn_local(async move {
            let r = play.await;
            results.borrow_mut().push(r);
        });
    }
    g.pump_until(15_000, "two episodes on both sides", |g| {
        g.sent.iter().all(|s| {
            s.iter()
                .filter(|m| matches!(m, ClientMessage::EpisodeSummary(_)))
                .count()
                >= 2
        }) && results.borrow().len() == 2
    })
    .await;
    assert_eq!(
        *results.borrow(),
        vec![Ok(2), Ok(2)],
        "play resolves to the episodes"
    );
    let frames = config.frames_per_episode();
    for (i, sent) in g.sent.iter().enumerate() {
        let summaries: Vec<_> = sent
            .iter()
            .filter_map(|m| match m {
                ClientMessage::EpisodeSummary(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(summaries.len(), 2);
        for (n, e) in summaries.iter().enumerate() {
            assert_eq!(e.episode, n as u32 + 1);
            assert_eq!(e.frames, frames);
            assert_eq!(e.inputs_sent, u64::from(frames));
            if i == 0 {
                assert_eq!(e.hidden_count, 1, "one hidden span in episode {n}");
                assert!(
                    e.hidden_ms >= f64::from(config.episode_ms) * 0.8,
                    "hidden the whole episode {n}: {} ms",
                    e.hidden_ms
                );
            } else {
                assert_eq!((e.hidden_count, e.hidden_ms), (0, 0.0), "never hidden");
            }
            assert_eq!(e.peers.len(), 1);
            let p = &e.peers[0];
            assert_eq!(p.peer_index, 1 - i as u32);
            assert!(
                p.inputs_received > u64::from(frames) / 2,
                "side {i} ep {n}: {p:?}"
            );
            assert!(
                p.inputs_received <= u64::from(frames),
                "de-duplicated: {p:?}"
            );
            assert_eq!(
                p.connection.map(|c| c.connection_type),
                Some(ConnectionKind::Direct)
            );
            assert!(p.rtt_ms.is_some(), "rtt samples in episode {n}: {p:?}");
            assert_eq!(p.setup, Some(setup.wire()), "side {i} ep {n}");
            let same = (setup == Setup::Handover).then_some(true);
            assert_eq!(p.same_path_as_probe, same, "side {i} ep {n}");
        }
        let log = logs[i].borrow();
        // Late in each episode both players' inputs are the real ones (delay 2 frames).
        let last = log.last().expect("frames were stepped");
        assert_eq!(last.1, vec![10, 11], "side {i}: inputs by player index");
        // The loop's packets never surface as the researcher's messages.
        assert!(g.messages(i).is_empty(), "side {i}: {:?}", g.messages(i));
        assert!(g.saw(i, &GameEvent::Open));
        assert!(g.saw(i, &GameEvent::Phase(GamePhase::Playing)));
        assert!(g.saw(i, &GameEvent::Phase(GamePhase::Finished)));
        assert_eq!(g.games[i].phase(), GamePhase::Finished);
    }
    // A second play of the same game is refused.
    let again = g.games[0].play(
        config,
        Box::new(Counter {
            me: 0,
            log: Rc::default(),
        }),
    );
    assert_eq!(again.await, Err(PlayError::AlreadyPlaying));
    // Finished: the connections stay open for messages until the game is closed.
    let pcs: Vec<RtcPeerConnection> = g.games.iter().flat_map(|g| g.peer_connections()).collect();
    assert_eq!(pcs.len(), 2);
    for pc in &pcs {
        assert_eq!(pc.connection_state(), RtcPeerConnectionState::Connected);
    }
    for game in &g.games {
        game.close();
    }
    for (i, pc) in pcs.iter().enumerate() {
        assert_closed(pc, &format!("game side {i}"));
    }
}

#[wasm_bindgen_test]
async fn researcher_messages_go_both_ways_reliable_and_not_strings_and_bytes() {
    researcher_messages(Setup::Fresh).await;
}

#[wasm_bindgen_test]
async fn researcher_messages_go_both_ways_handed_over() {
    researcher_messages(Setup::Handover).await;
}

async fn researcher_messages(setup: Setup) {
    let mut g = Games::start("g-msg", tuning(), setup).await;
    g.pump_until(10_000, "open on both sides", |g| {
        (0..2).all(|i| g.saw(i, &GameEvent::Open))
    })
    .await;
    // Reliable: every message arrives, in order, strings and bytes as sent (bytes that look
    // like pairlab's own packets included).
    let reliable = vec![
        ChannelData::Text("first".into()),
        ChannelData::Binary(vec![1, 1, 0, 0, 0]),
        ChannelData::Text(String::new()),
        ChannelData::Binary(vec![]),
        ChannelData::Binary((0..=255).collect()),
        ChannelData::Text("{\"bye\":true}".into()),
    ];
    for d in &reliable {
        g.games[0]
            .send(Recipient::Player(1), d.clone(), true)
            .expect("send 0 → 1");
        g.games[1]
            .send(Recipient::All, d.clone(), true)
            .expect("send 1 → all");
    }
    g.pump_until(5000, "every reliable message", |g| {
        (0..2).all(|i| g.messages(i).len() >= reliable.len())
    })
    .await;
    for i in 0..2 {
        let from = 1 - i as u32;
        let want: Vec<_> = reliable.iter().map(|d| (from, d.clone(), true)).collect();
        assert_eq!(g.messages(i), want, "side {i}");
    }
    // Unreliable: some arrive (none are lost on loopback, but order is not promised).
    for round in 0..20u8 {
        g.games[0]
            .send(Recipient::All, ChannelData::Binary(vec![round]), false)
            .expect("unreliable bytes");
        g.games[1]
            .send(
                Recipient::Player(0),
                ChannelData::Text(format!("u{round}")),
                false,
            )
            .expect("unreliable text");
    }
    g.pump_until(5000, "unreliable messages", |g| {
        (0..2).all(|i| g.messages(i).iter().any(|(_, _, reliable)| !reliable))
    })
    .await;
    assert!(g
        .messages(1)
        .iter()
        .all(|(from, d, r)| *r
            || (*from == 0 && matches!(d, ChannelData::Binary(b) if b.len() == 1))));
    assert!(g.messages(0).iter().all(|(from, d, r)| *r
        || (*from == 1 && matches!(d, ChannelData::Text(t) if t.starts_with('u')))));
    // Nobody else: this player's own index, and an index outside the game.
    assert_eq!(
        g.games[0].send(Recipient::Player(0), ChannelData::Text("me".into()), true),
        Err(SendError::NoSuchPeer(0))
    );
    assert_eq!(
        g.games[0].send(Recipient::Player(7), ChannelData::Text("x".into()), true),
        Err(SendError::NoSuchPeer(7))
    );
    // After the end nothing is sent, and the peer hears the goodbye.
    g.games[0].end();
    assert_eq!(g.games[0].phase(), GamePhase::Ended);
    assert_eq!(
        g.games[0].send(Recipient::All, ChannelData::Text("late".into()), true),
        Err(SendError::Closed)
    );
    g.pump_until(5000, "the peer's goodbye", |g| {
        g.saw(1, &GameEvent::PeerClosed { peer: 0 })
    })
    .await;
    for pc in g.games[0].peer_connections() {
        assert_closed(&pc, "ended side");
    }
}

#[wasm_bindgen_test]
async fn game_ended_stops_play_and_closes_every_connection() {
    game_ended(Setup::Fresh).await;
}

#[wasm_bindgen_test]
async fn game_ended_stops_play_and_closes_every_connection_handed_over() {
    game_ended(Setup::Handover).await;
}

async fn game_ended(setup: Setup) {
    let mut g = Games::start("g-end", tuning(), setup).await;
    let pcs: Vec<RtcPeerConnection> = g.games.iter().flat_map(|g| g.peer_connections()).collect();
    let play = g.games[0].play(
        GameConfig::default(),
        Box::new(Counter {
            me: 0,
            log: Rc::default(),
        }),
    );
    let result: Rc<RefCell<Option<Result<u32, PlayError>>>> = Rc::default();
    {
        let result = Rc::clone(&result);
        wasm_bindgen_futures::spawn_local(async move {
            *result.borrow_mut() = Some(play.await);
        });
    }
    g.pump_until(10_000, "connected", |_| {
        pcs.iter()
            .all(|pc| pc.connection_state() == RtcPeerConnectionState::Connected)
    })
    .await;
    g.games[0].end();
    assert_closed(&pcs[0], "ended side");
    within(2000, "play to stop", async {
        while result.borrow().is_none() {
            TimeoutFuture::new(10).await;
        }
    })
    .await;
    assert_eq!(
        *result.borrow(),
        Some(Err(PlayError::Ended { episodes_done: 0 }))
    );
    assert!(g.saw(0, &GameEvent::Phase(GamePhase::Ended)));
    drop(g);
    for pc in &pcs {
        assert_closed(pc, "after the games are dropped");
    }
}

/// The latest `p2p_connection_type` of side `i`.
fn latest_connection_type(g: &Games, i: usize) -> Option<pairlab_shared::P2pConnectionType> {
    g.sent[i].iter().rev().find_map(|m| match m {
        ClientMessage::P2pConnectionType(t) => Some(t.clone()),
        _ => None,
    })
}

/// `game_start` hands over a kept probe's connection, but the sides in `lost` no longer have
/// it (a reload, an expiry): each opens a fresh connection and offers whatever the initiator
/// rule; a side still holding its handed-over connection replaces it when the offer's DTLS
/// fingerprint is another's (`adopted_first`: it adopted before the peer's loss, so that
/// path is taken for sure); two crossing offers resolve to the initiator's. Either way the
/// game connects fresh on both sides and carries messages both ways.
async fn handover_lost(game_id: &str, lost: &[usize], adopted_first: Option<usize>) {
    let probe = KeptProbe::run(&format!("kept-{game_id}"), KeptSpec::default()).await;
    let mut paths: [GamePaths; 2] = Default::default();
    if let Some(i) = adopted_first {
        paths[i] = probe.hand_over(i, game_id, true).1;
        assert!(matches!(
            paths[i].get(&(1 - i as u32)),
            Some(GamePath::Adopt(_))
        ));
    }
    for &i in lost {
        probe.managers[i].close(&probe.id);
    }
    for i in (0..2).filter(|i| Some(*i) != adopted_first) {
        paths[i] = probe.hand_over(i, game_id, true).1;
    }
    for &i in lost {
        assert!(
            matches!(
                paths[i].get(&(1 - i as u32)),
                Some(GamePath::Fresh {
                    offer_anyway: true,
                    ..
                })
            ),
            "side {i}: lost → fresh, offering"
        );
    }
    // The probe's measured path is remembered on both sides.
    fresh_game_on_both_sides(game_id, paths, [true, true]).await;
}

/// Runs the game of `paths` until both sides report a fresh connection (direct on loopback,
/// saying whether it is the probe's path where `knows_probe`), and a reliable message has
/// gone each way on it.
async fn fresh_game_on_both_sides(game_id: &str, paths: [GamePaths; 2], knows_probe: [bool; 2]) {
    let mut g = Games::with_paths(game_id, tuning(), paths);
    g.pump_until(10_000, "fresh connections on both sides", |g| {
        (0..2).all(|i| {
            latest_connection_type(g, i).is_some_and(|t| t.setup == Some(ConnectionSetup::Fresh))
        })
    })
    .await;
    for (i, knows) in knows_probe.into_iter().enumerate() {
        let t = latest_connection_type(&g, i).expect("p2p_connection_type");
        assert_eq!(t.same_path_as_probe.is_some(), knows, "side {i}: {t:?}");
        assert_eq!(t.info.connection_type, ConnectionKind::Direct);
    }
    for i in 0..2 {
        g.games[i]
            .send(Recipient::All, ChannelData::Text(format!("from {i}")), true)
            .expect("reliable send on the fresh connection");
    }
    g.pump_until(5_000, "a message each way", |g| {
        (0..2).all(|i| {
            g.messages(i).contains(&(
                1 - i as u32,
                ChannelData::Text(format!("from {}", 1 - i)),
                true,
            ))
        })
    })
    .await;
    for game in &g.games {
        game.close();
    }
}

#[wasm_bindgen_test]
async fn handover_lost_by_the_initiator_falls_back_to_fresh() {
    handover_lost("g-lost-0", &[0], Some(1)).await;
}

#[wasm_bindgen_test]
async fn handover_lost_by_the_other_side_falls_back_to_fresh() {
    handover_lost("g-lost-1", &[1], Some(0)).await;
}

#[wasm_bindgen_test]
async fn handover_lost_on_both_sides_crossing_offers_resolve() {
    handover_lost("g-lost-both", &[0, 1], None).await;
}

/// A page reloaded after `game_start` resumes and gets `game_start` again with
/// `handover: false` (the server's rule for a member on a new signalling connection): it never
/// ran the named probe, so it offers although it may not be the initiator, and the peer,
/// holding the handed-over connection, replaces it on that offer's other fingerprint.
async fn reloaded_after_game_start(game_id: &str, reloaded: usize) {
    let probe = KeptProbe::run(&format!("kept-{game_id}"), KeptSpec::default()).await;
    let kept = 1 - reloaded;
    let mut paths: [GamePaths; 2] = Default::default();
    paths[kept] = probe.hand_over(kept, game_id, true).1;
    assert!(matches!(
        paths[kept].get(&(reloaded as u32)),
        Some(GamePath::Adopt(_))
    ));
    // The old page goes, with its probe manager and its side of the connection.
    probe.managers[reloaded].close_all();
    let new_page = ProbeManager::new(|_| {});
    let start = game_start_with_probe(game_id, reloaded as u32, &probe.id, false);
    paths[reloaded] = new_page.hand_over(&start);
    assert!(
        matches!(
            paths[reloaded].get(&(kept as u32)),
            Some(GamePath::Fresh {
                offer_anyway: true,
                probe: None
            })
        ),
        "a page that did not run the probe offers a fresh connection"
    );
    let mut knows_probe = [true; 2];
    knows_probe[reloaded] = false;
    fresh_game_on_both_sides(game_id, paths, knows_probe).await;
}

#[wasm_bindgen_test]
async fn reload_of_the_other_side_after_game_start_goes_fresh() {
    reloaded_after_game_start("g-reload-1", 1).await;
}

#[wasm_bindgen_test]
async fn reload_of_the_initiator_after_game_start_goes_fresh() {
    reloaded_after_game_start("g-reload-0", 0).await;
}
