//! The game: the verified connections to every other member, the researcher's messages over
//! them, and the built-in lockstep loop.
//!
//! At `game_start` the session builds a [`Game`]: one [`WebRtcManager`] per other member (see
//! [`connection`], timed by [`policy`]) — the pair's probe connection when the server handed
//! it over and this side still has it, else a fresh one ([`GamePaths`] from
//! [`crate::probe::ProbeManager::hand_over`]) —, whose events a task turns into [`GameEvent`]s for the
//! page (every connection open, connection type, quality, ICE restarts, failure, a peer's
//! message). [`Game::send`] sends a researcher's string or bytes to one member or to all, on
//! the reliable `control` channel or the unordered `inputs` one, framed as [`framing`] says so
//! that they never mix with the loop's own packets.
//!
//! [`Game::play`] runs the built-in loop for a researcher's [`GameLogic`]:
//! - once every connection is open, it tells every peer it is ready ([`framing::Frame::Ready`])
//!   and waits for theirs, so that pages that call `play` at different times still start
//!   episode 1 together;
//! - each tick (every [`GameConfig::tick_ms`]) it reads the local input, schedules it
//!   [`GameConfig::input_delay_frames`] frames ahead, sends it on the unordered `inputs`
//!   channel together with the previous [`GameConfig::redundancy`]` − 1` inputs (so one lost
//!   packet costs nothing; receivers de-duplicate by frame number), and calls
//!   [`GameLogic::step`] with every player's input for the frame (a peer's input that has not
//!   arrived yet is taken to be its latest one);
//! - an episode lasts [`GameConfig::episode_ms`]; at its end `episode_summary` goes to the
//!   server (frames, inputs sent, per-peer [`PeerMetrics`], the time the page was hidden from
//!   the session's [`HiddenLog`]); after [`GameConfig::episodes`] episodes `play` resolves.
//!   The connections stay open (the page may still exchange messages) until the session
//!   closes the game: `game_ended`, the participant's `outcome`, or [`Game::close`].
//!
//! The loop's pure parts are in [`logic`]; the settings come from `game_start.game`
//! ([`GameConfig::from_settings`]).

pub mod connection;
pub mod framing;
pub mod logic;
pub mod policy;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use futures::channel::oneshot;
use futures::future;
use futures::stream::{self, SelectAll, StreamExt};
use gloo_timers::future::TimeoutFuture;
use pairlab_shared::{
    ClientMessage, ConnectionInfo, ConnectionSetup, EpisodeSummary, GameId, GameSettings,
    GameStart, IceRestartOutcome, PeerMetrics, PlayerIndex, QualityChange, QualityLevel,
    ServerMessage,
};
use web_sys::RtcPeerConnection;

pub use connection::{ConnectionEvent, ConnectionSpec, WebRtcManager};
use framing::Frame;
use logic::{rtt_summary, HiddenLog, InputReceiver, InputSender};
pub use policy::ConnectionTuning;

use crate::handover::{GamePath, GamePaths};
use crate::peer::{ChannelData, PeerError};
use crate::signaling::Outbox;
use crate::util::{log, now_ms, warn};

/// What a researcher implements for [`Game::play`]: the game itself. Inputs are `u32`s (e.g.
/// a bit mask of the keys held); players are `0..game_start.player_count`, this one
/// `game_start.player_index`.
pub trait GameLogic {
    /// Episode `episode` (1-based) begins: reset the state.
    fn episode_start(&mut self, episode: u32);
    /// This participant's input now (called once per frame).
    fn read_input(&mut self) -> u32;
    /// Advance the state by one frame with every player's input for it (by player index),
    /// and draw.
    fn step(&mut self, frame: u32, inputs: &[u32]);
    /// Episode `episode` is over.
    fn episode_end(&mut self, _episode: u32) {}
}

/// The game loop's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GameConfig {
    /// Frame period, ms (33 ≈ 30 Hz).
    pub tick_ms: u32,
    /// Episode length, ms.
    pub episode_ms: u32,
    /// Episodes per game.
    pub episodes: u32,
    /// Input delay, frames.
    pub input_delay_frames: u32,
    /// Inputs per packet (the newest and the ones before it).
    pub redundancy: usize,
    /// The connections' timings and thresholds.
    pub tuning: ConnectionTuning,
}

impl Default for GameConfig {
    fn default() -> Self {
        Self::from_settings(&GameSettings::default(), |_| None)
    }
}

/// The URL parameters that override [`GameSettings`] when the scene allows it
/// (`url_overrides`), in the order of [`GameConfig::from_settings`].
pub const URL_OVERRIDES: [&str; 9] = [
    "episode_ms",
    "episodes",
    "tick_ms",
    "input_delay",
    "quality_interval_ms",
    "warning_ms",
    "critical_ms",
    "disconnect_grace_ms",
    "restart_timeout_ms",
];

impl GameConfig {
    /// Frames per episode (at least 1).
    pub fn frames_per_episode(&self) -> u32 {
        (self.episode_ms / self.tick_ms.max(1)).max(1)
    }

    /// The loop's settings from `game_start.game`. Only when `settings.url_overrides` is set
    /// (a scene in test mode) are the page's URL parameters ([`URL_OVERRIDES`], looked up
    /// with `url`) applied on top: whole numbers, above 0 (`input_delay` may be 0);
    /// unparsable values are ignored.
    pub fn from_settings(settings: &GameSettings, url: impl Fn(&str) -> Option<String>) -> Self {
        let mut c = Self {
            tick_ms: settings.tick_ms.max(1),
            episode_ms: settings.episode_ms,
            episodes: settings.episodes,
            input_delay_frames: settings.input_delay_frames,
            redundancy: 3,
            tuning: ConnectionTuning {
                quality_interval_ms: settings.quality_interval_ms,
                thresholds: policy::QualityThresholds {
                    warning_above_ms: f64::from(settings.warning_rtt_ms),
                    critical_above_ms: f64::from(settings.critical_rtt_ms),
                },
                disconnect_grace_ms: settings.disconnect_grace_ms,
                restart_timeout_ms: settings.restart_timeout_ms,
                ..ConnectionTuning::default()
            },
        };
        if !settings.url_overrides {
            return c;
        }
        let whole = |k: &str| url(k).and_then(|v| v.trim().parse::<u32>().ok());
        let num = |k: &str| whole(k).filter(|v| *v > 0);
        if let Some(v) = num("episode_ms") {
            c.episode_ms = v;
        }
        if let Some(v) = num("episodes") {
            c.episodes = v;
        }
        if let Some(v) = num("tick_ms") {
            c.tick_ms = v;
        }
        if let Some(v) = whole("input_delay") {
            c.input_delay_frames = v;
        }
        if let Some(v) = num("quality_interval_ms") {
            c.tuning.quality_interval_ms = v;
        }
        if let Some(v) = num("warning_ms") {
            c.tuning.thresholds.warning_above_ms = f64::from(v);
        }
        if let Some(v) = num("critical_ms") {
            c.tuning.thresholds.critical_above_ms = f64::from(v);
        }
        if let Some(v) = num("disconnect_grace_ms") {
            c.tuning.disconnect_grace_ms = v;
        }
        if let Some(v) = num("restart_timeout_ms") {
            c.tuning.restart_timeout_ms = v;
        }
        c
    }
}

/// Where the game stands (the built-in page's `body[data-game-phase]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GamePhase {
    /// Opening the connections (and, in `play`, waiting for every peer to be ready).
    Connecting,
    /// `play`'s episodes running.
    Playing,
    /// An ICE restart is under way while playing.
    Restarting,
    /// `play` played every episode.
    Finished,
    /// The server ended the game (`game_ended`), or a connection failed for good.
    Ended,
}

impl GamePhase {
    /// The phase's name (`data-game-phase`).
    pub fn as_str(self) -> &'static str {
        match self {
            GamePhase::Connecting => "connecting",
            GamePhase::Playing => "playing",
            GamePhase::Restarting => "restarting",
            GamePhase::Finished => "finished",
            GamePhase::Ended => "ended",
        }
    }
}

/// What the game reports to the session, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum GameEvent {
    /// The phase changed.
    Phase(GamePhase),
    /// The connection to every peer is open (once).
    Open,
    /// How the connection to `peer` is made (once open, and again when a restart changed it).
    ConnectionType {
        /// The peer.
        peer: PlayerIndex,
        /// The selected candidate pair.
        info: ConnectionInfo,
        /// The probe's connection adopted, or a new one.
        setup: ConnectionSetup,
        /// Whether the path is the one the pair's probe measured; `None` when unknown.
        same_path_as_probe: Option<bool>,
    },
    /// The quality of the connection to `peer` changed.
    Quality {
        /// The peer.
        peer: PlayerIndex,
        /// The new level.
        level: QualityLevel,
        /// The RTT sample that changed it, ms.
        rtt_ms: f64,
    },
    /// An ICE restart of the connection to `peer` began or ended.
    IceRestart {
        /// The peer.
        peer: PlayerIndex,
        /// 1-based attempt.
        attempt: u32,
        /// Where it stands.
        outcome: IceRestartOutcome,
    },
    /// The connection to `peer` failed for good (`p2p_connection_failed` was sent).
    ConnectionFailed {
        /// The peer.
        peer: PlayerIndex,
        /// ICE restarts tried.
        attempts: u32,
    },
    /// `peer` closed its game connection on purpose.
    PeerClosed {
        /// The peer.
        peer: PlayerIndex,
    },
    /// A researcher's message from `from`.
    Message {
        /// The sender.
        from: PlayerIndex,
        /// The string or bytes as sent.
        data: ChannelData,
        /// Whether it came on the reliable channel.
        reliable: bool,
    },
    /// `play` finished an episode and sent its `episode_summary`.
    EpisodeSummary(EpisodeSummary),
}

/// Reports [`GameEvent`]s to the session.
pub type GameEvents = Rc<dyn Fn(GameEvent)>;

/// Who a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// One other member, by player index.
    Player(PlayerIndex),
    /// Every other member.
    All,
}

/// Why [`Game::send`] did not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The player index is this participant's own, or not in the game.
    #[error("player {0} is not another member of this game")]
    NoSuchPeer(PlayerIndex),
    /// The game's connections are closed (the game ended).
    #[error("the game's connections are closed")]
    Closed,
    /// The connection to `peer` could not send (not open yet, or the browser refused).
    #[error("could not send to player {peer}: {error}")]
    Peer {
        /// The peer.
        peer: PlayerIndex,
        /// What the connection said.
        error: PeerError,
    },
}

/// Why [`Game::play`] stopped before its last episode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayError {
    /// `play` was called a second time for this game.
    #[error("this game is being played already (play runs once per game)")]
    AlreadyPlaying,
    /// The game ended (`game_ended`, a failed connection, or the session closed it) after
    /// `episodes_done` episodes.
    #[error("the game ended after {episodes_done} finished episode(s)")]
    Ended {
        /// Episodes played to their end.
        episodes_done: u32,
    },
}

/// How often `play` checks whether every peer is open and ready, ms.
const WAIT_POLL_MS: u32 = 5;

struct PeerState {
    player_index: PlayerIndex,
    manager: WebRtcManager,
    inputs: InputReceiver,
    open: bool,
    ready: bool,
    level: QualityLevel,
    restarting: bool,
}

struct Inner {
    game_id: GameId,
    local_index: PlayerIndex,
    player_count: u32,
    peers: RefCell<Vec<PeerState>>,
    phase: Cell<GamePhase>,
    events: GameEvents,
    out: Outbox,
    hidden: Rc<RefCell<HiddenLog>>,
    play_started: Cell<bool>,
    /// Stops the event task; `None` once closed.
    cancel: RefCell<Option<oneshot::Sender<()>>>,
}

impl Inner {
    fn set_phase(&self, phase: GamePhase) {
        if self.phase.replace(phase) != phase {
            (self.events)(GameEvent::Phase(phase));
        }
    }

    fn is_closed(&self) -> bool {
        self.cancel.borrow().is_none() || self.phase.get() == GamePhase::Ended
    }

    fn close(&self) {
        for p in self.peers.borrow_mut().iter_mut() {
            p.manager.close();
        }
        self.cancel.borrow_mut().take();
    }
}

/// A game's connections and, once [`Game::play`] runs, its loop. See the module docs.
/// Dropping it closes every connection.
pub struct Game {
    inner: Rc<Inner>,
}

impl Game {
    /// Opens a connection to every other player of `start` (as player `start.player_index`)
    /// with `tuning`, as `paths` says per peer (adopting a handed-over probe connection, or
    /// fresh; a peer not in `paths`: fresh); the phase is [`GamePhase::Connecting`] (not
    /// reported). Messages for the server go through `out`, what happens to `events`;
    /// `hidden` is the session's record of when the page was hidden (for the summaries).
    pub fn start(
        start: &GameStart,
        tuning: ConnectionTuning,
        mut paths: GamePaths,
        out: Outbox,
        events: GameEvents,
        hidden: Rc<RefCell<HiddenLog>>,
    ) -> Self {
        let started_at_ms = now_ms();
        let mut peers = Vec::new();
        let mut receivers = SelectAll::new();
        for index in (0..start.player_count).filter(|&i| i != start.player_index) {
            let mut spec = ConnectionSpec {
                game_id: start.game_id.clone(),
                local_index: start.player_index,
                peer_index: index,
                ice_servers: start.ice_servers.clone(),
                force_relay: start.force_relay,
                started_at_ms,
                tuning,
                probe_path: None,
                offer_anyway: false,
            };
            let manager = match paths.remove(&index) {
                Some(GamePath::Adopt(parked)) => {
                    spec.probe_path = parked.measured.info;
                    Ok(WebRtcManager::adopt(spec, parked, Rc::clone(&out)))
                }
                Some(GamePath::Fresh {
                    offer_anyway,
                    probe,
                }) => {
                    spec.offer_anyway = offer_anyway;
                    spec.probe_path = probe;
                    WebRtcManager::start(spec, Rc::clone(&out))
                }
                None => WebRtcManager::start(spec, Rc::clone(&out)),
            };
            match manager {
                Ok((manager, rx)) => {
                    let slot = peers.len();
                    receivers.push(rx.map(move |ev| (slot, ev)).boxed_local());
                    peers.push(PeerState {
                        player_index: index,
                        manager,
                        inputs: InputReceiver::default(),
                        open: false,
                        ready: false,
                        level: QualityLevel::Ok,
                        restarting: false,
                    });
                }
                Err(e) => warn(&format!("game {}: {e}", start.game_id)),
            }
        }
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        let inner = Rc::new(Inner {
            game_id: start.game_id.clone(),
            local_index: start.player_index,
            player_count: start.player_count,
            peers: RefCell::new(peers),
            phase: Cell::new(GamePhase::Connecting),
            events,
            out,
            hidden,
            play_started: Cell::new(false),
            cancel: RefCell::new(Some(cancel_tx)),
        });
        let weak = Rc::downgrade(&inner);
        wasm_bindgen_futures::spawn_local(async move {
            let _ = future::select(cancel_rx, Box::pin(follow_connections(weak, receivers))).await;
        });
        Self { inner }
    }

    /// The game's id.
    pub fn id(&self) -> &GameId {
        &self.inner.game_id
    }

    /// The phase now.
    pub fn phase(&self) -> GamePhase {
        self.inner.phase.get()
    }

    /// Takes a server message: a `webrtc_signal` of this game goes to its connection. Returns
    /// whether the message concerned this game.
    pub fn handle(&self, msg: &ServerMessage) -> bool {
        let ServerMessage::WebrtcSignal(s) = msg else {
            return false;
        };
        if s.game_id != self.inner.game_id {
            return false;
        }
        let peers = self.inner.peers.borrow();
        match peers.iter().find(|p| p.player_index == s.from_index) {
            Some(p) => p.manager.handle_signal(s.signal_type, s.payload.clone()),
            None => warn(&format!(
                "game {}: a signal from player {}, who is not a peer; ignored",
                s.game_id, s.from_index
            )),
        }
        true
    }

    /// Sends a researcher's message (`data`: a string, or bytes) to `to`, on the reliable
    /// `control` channel when `reliable`, else on the unordered `inputs` one.
    ///
    /// # Errors
    /// [`SendError::NoSuchPeer`] for an index that is not another member;
    /// [`SendError::Closed`] after the game ended; [`SendError::Peer`] when a connection
    /// cannot send (for [`Recipient::All`], the first such; the others were still sent to).
    pub fn send(&self, to: Recipient, data: ChannelData, reliable: bool) -> Result<(), SendError> {
        if self.inner.is_closed() {
            return Err(SendError::Closed);
        }
        let frame = match data {
            ChannelData::Text(text) => Frame::Text(text),
            ChannelData::Binary(bytes) => Frame::Bytes(bytes),
        };
        let peers = self.inner.peers.borrow();
        let mut first_error = None;
        let mut sent_to_any = false;
        for p in peers.iter() {
            if to != Recipient::All && to != Recipient::Player(p.player_index) {
                continue;
            }
            sent_to_any = true;
            if let Err(error) = p.manager.send(&frame, reliable) {
                first_error.get_or_insert(SendError::Peer {
                    peer: p.player_index,
                    error,
                });
            }
        }
        match (to, sent_to_any, first_error) {
            (Recipient::Player(i), false, _) => Err(SendError::NoSuchPeer(i)),
            (_, _, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Runs the built-in loop with `logic` (see the module docs); resolves to the number of
    /// episodes played once the last one ended.
    ///
    /// # Errors
    /// [`PlayError::AlreadyPlaying`] on a second call; [`PlayError::Ended`] when the game ends
    /// first.
    pub fn play(
        &self,
        config: GameConfig,
        logic: Box<dyn GameLogic>,
    ) -> impl std::future::Future<Output = Result<u32, PlayError>> {
        run_loop(Rc::clone(&self.inner), config, logic)
    }

    /// The server ended the game (`game_ended`): closes every connection; the phase becomes
    /// [`GamePhase::Ended`] (a running `play` stops).
    pub fn end(&self) {
        self.inner.close();
        self.inner.set_phase(GamePhase::Ended);
    }

    /// Closes every connection (a `bye` to each peer first) and stops a running `play`.
    /// Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    /// The browser connections (tests check they are closed afterwards).
    pub fn peer_connections(&self) -> Vec<RtcPeerConnection> {
        self.inner
            .peers
            .borrow()
            .iter()
            .map(|p| p.manager.raw())
            .collect()
    }
}

impl Drop for Game {
    fn drop(&mut self) {
        self.close();
    }
}

type Events = SelectAll<stream::LocalBoxStream<'static, (usize, ConnectionEvent)>>;

/// The game's event task: keeps each peer's state and reports [`GameEvent`]s. Events are
/// reported after the peers' state is released, so a listener may call [`Game::send`].
async fn follow_connections(inner: Weak<Inner>, mut events: Events) {
    let mut announced_open = false;
    while let Some((slot, ev)) = events.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut report = Vec::new();
        let mut phase = None;
        {
            let mut peers = inner.peers.borrow_mut();
            let Some(peer) = peers.get_mut(slot) else {
                continue;
            };
            let from = peer.player_index;
            match ev {
                ConnectionEvent::Input(packet) => {
                    peer.ready = true;
                    peer.inputs.take(&packet);
                }
                ConnectionEvent::Ready => peer.ready = true,
                ConnectionEvent::Message { data, reliable } => report.push(GameEvent::Message {
                    from,
                    data,
                    reliable,
                }),
                ConnectionEvent::Open { .. } => {
                    peer.open = true;
                    if !announced_open && peers.iter().all(|p| p.open) {
                        announced_open = true;
                        report.push(GameEvent::Open);
                    }
                }
                ConnectionEvent::Info {
                    info,
                    setup,
                    same_path_as_probe,
                } => {
                    report.push(GameEvent::ConnectionType {
                        peer: from,
                        info,
                        setup,
                        same_path_as_probe,
                    });
                }
                ConnectionEvent::Quality { level, rtt_ms } => {
                    peer.level = level;
                    report.push(GameEvent::Quality {
                        peer: from,
                        level,
                        rtt_ms,
                    });
                }
                ConnectionEvent::Restart { attempt, outcome } => {
                    peer.restarting = outcome == IceRestartOutcome::Started;
                    let restarting = peers.iter().any(|p| p.restarting);
                    phase = match inner.phase.get() {
                        GamePhase::Playing if restarting => Some(GamePhase::Restarting),
                        GamePhase::Restarting if !restarting => Some(GamePhase::Playing),
                        _ => None,
                    };
                    report.push(GameEvent::IceRestart {
                        peer: from,
                        attempt,
                        outcome,
                    });
                }
                ConnectionEvent::Failed { attempts } => {
                    // The server answers p2p_connection_failed with game_ended.
                    phase = Some(GamePhase::Ended);
                    report.push(GameEvent::ConnectionFailed {
                        peer: from,
                        attempts,
                    });
                }
                ConnectionEvent::PeerClosed => {
                    log(&format!(
                        "game {}: player {from} closed the connection",
                        inner.game_id
                    ));
                    report.push(GameEvent::PeerClosed { peer: from });
                }
            }
        }
        for ev in report {
            (inner.events)(ev);
        }
        if let Some(phase) = phase {
            inner.set_phase(phase);
        }
    }
}

/// Waits until `ready` holds for every peer; `Err` when the game closes first.
async fn wait_for_peers(
    inner: &Inner,
    ready: impl Fn(&PeerState) -> bool,
    episodes_done: u32,
) -> Result<(), PlayError> {
    loop {
        if inner.is_closed() {
            return Err(PlayError::Ended { episodes_done });
        }
        if inner.peers.borrow().iter().all(&ready) {
            return Ok(());
        }
        TimeoutFuture::new(WAIT_POLL_MS).await;
    }
}

/// The game loop; see the module docs.
async fn run_loop(
    inner: Rc<Inner>,
    config: GameConfig,
    mut logic: Box<dyn GameLogic>,
) -> Result<u32, PlayError> {
    if inner.play_started.replace(true) {
        return Err(PlayError::AlreadyPlaying);
    }
    wait_for_peers(&inner, |p| p.open, 0).await?;
    // Inputs of episode 1 may overtake a peer's `ready` (another channel): keep them.
    for p in inner.peers.borrow_mut().iter_mut() {
        p.inputs.start_episode(1);
        if let Err(e) = p.manager.send(&Frame::Ready, true) {
            warn(&format!(
                "game {}: ready to player {}: {e}",
                inner.game_id, p.player_index
            ));
        }
    }
    wait_for_peers(&inner, |p| p.ready, 0).await?;

    let frames_per_episode = config.frames_per_episode();
    let mut sender = InputSender::new(config.input_delay_frames, config.redundancy);
    let mut local = InputReceiver::default();
    let player_count = inner.player_count as usize;
    let local_index = inner.local_index as usize;
    let mut episode = 1u32;
    let mut frame = 0u32;
    let mut episode_started_ms = now_ms();
    let mut next_tick_ms = episode_started_ms;
    sender.start_episode(episode);
    local.start_episode(episode);
    logic.episode_start(episode);
    inner.set_phase(GamePhase::Playing);
    log(&format!(
        "game {}: playing {} episodes of {} ms, a frame every {} ms, input delay {} frames",
        inner.game_id,
        config.episodes,
        config.episode_ms,
        config.tick_ms,
        config.input_delay_frames
    ));

    loop {
        let wait_ms = (next_tick_ms - now_ms()).max(0.0);
        TimeoutFuture::new(wait_ms as u32).await;
        if inner.is_closed() {
            return Err(PlayError::Ended {
                episodes_done: episode - 1,
            });
        }
        // One frame.
        let input = logic.read_input();
        let (_, packet) = sender.push(frame, input);
        local.take(&packet);
        let wire = Frame::Inputs(packet);
        let mut inputs = vec![0u32; player_count];
        {
            let mut peers = inner.peers.borrow_mut();
            for p in peers.iter_mut() {
                if let Err(e) = p.manager.send(&wire, false) {
                    if inner.phase.get() == GamePhase::Playing {
                        warn(&format!(
                            "game {}: input to player {}: {e}",
                            inner.game_id, p.player_index
                        ));
                    }
                }
                if let Some(slot) = inputs.get_mut(p.player_index as usize) {
                    *slot = p.inputs.input_at(frame);
                }
            }
        }
        if let Some(slot) = inputs.get_mut(local_index) {
            *slot = local.input_at(frame);
        }
        logic.step(frame, &inputs);
        frame += 1;
        next_tick_ms += f64::from(config.tick_ms);
        if frame < frames_per_episode {
            continue;
        }
        let summary = summarize(&inner, episode, frame, sender.sent(), episode_started_ms);
        (inner.out)(ClientMessage::EpisodeSummary(summary.clone()));
        (inner.events)(GameEvent::EpisodeSummary(summary));
        logic.episode_end(episode);
        if episode >= config.episodes {
            inner.set_phase(GamePhase::Finished);
            return Ok(episode);
        }
        episode += 1;
        frame = 0;
        episode_started_ms = now_ms();
        sender.start_episode(episode);
        local.start_episode(episode);
        for p in inner.peers.borrow_mut().iter_mut() {
            p.inputs.start_episode(episode);
        }
        logic.episode_start(episode);
    }
}

/// The `episode_summary` of the episode that began at `started_ms` and ends now.
fn summarize(
    inner: &Inner,
    episode: u32,
    frames: u32,
    inputs_sent: u64,
    started_ms: f64,
) -> EpisodeSummary {
    let peers = inner
        .peers
        .borrow()
        .iter()
        .map(|p| {
            let obs = p.manager.observations();
            let samples: Vec<f64> = obs
                .rtt_samples
                .iter()
                .filter(|(at, _)| *at >= started_ms)
                .map(|(_, rtt)| *rtt)
                .collect();
            PeerMetrics {
                peer_index: p.player_index,
                inputs_received: p.inputs.received(),
                connection: obs.info,
                rtt_ms: rtt_summary(&samples),
                quality_changes: obs
                    .quality_changes
                    .iter()
                    .filter(|(at, _)| *at >= started_ms)
                    .map(|(at, level)| QualityChange {
                        level: *level,
                        at_ms: at - started_ms,
                    })
                    .collect(),
                ice_restarts: u32::try_from(
                    obs.restarts.iter().filter(|at| **at >= started_ms).count(),
                )
                .unwrap_or(u32::MAX),
                setup: obs.setup,
                same_path_as_probe: obs.same_path_as_probe,
            }
        })
        .collect();
    let (hidden_count, hidden_ms) = inner.hidden.borrow().within(started_ms, now_ms());
    EpisodeSummary {
        game_id: inner.game_id.clone(),
        episode,
        frames,
        inputs_sent,
        peers,
        hidden_count,
        hidden_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_decide_unless_the_scene_allows_url_overrides() {
        let url = |k: &str| match k {
            "episode_ms" => Some("3000".into()),
            "quality_interval_ms" => Some("250".into()),
            "disconnect_grace_ms" => Some("x".into()),
            "input_delay" => Some("0".into()),
            "episodes" => Some("0".into()),
            _ => None,
        };
        let mut settings = GameSettings {
            episode_ms: 6000,
            warning_rtt_ms: 100,
            ..GameSettings::default()
        };
        let c = GameConfig::from_settings(&settings, url);
        assert_eq!(c.episode_ms, 6000, "the URL is ignored in a study");
        assert_eq!(c.input_delay_frames, 2);
        assert_eq!(c.tuning.thresholds.warning_above_ms, 100.0);
        assert_eq!(c.tuning.quality_interval_ms, 2000);

        settings.url_overrides = true;
        let c = GameConfig::from_settings(&settings, url);
        assert_eq!(c.episode_ms, 3000);
        assert_eq!(c.tuning.quality_interval_ms, 250);
        assert_eq!(c.tuning.disconnect_grace_ms, 5000, "unparsable: ignored");
        assert_eq!(c.input_delay_frames, 0, "an input delay of 0 is allowed");
        assert_eq!(c.episodes, 3, "0 episodes is not");
        assert_eq!(c.frames_per_episode(), 3000 / 33);
    }

    #[test]
    fn defaults_are_the_settings_defaults() {
        let c = GameConfig::default();
        assert_eq!(
            (c.tick_ms, c.episode_ms, c.episodes, c.input_delay_frames),
            (33, 10_000, 3, 2)
        );
        assert_eq!(c.tuning, ConnectionTuning::default());
    }
}
