//! The game API: a fixed-rate loop of frames, inputs exchanged with every peer over the game
//! connections, and episodes with their research summaries.
//!
//! A researcher writes a [`GameLogic`] (read this participant's input, step the shared state
//! with everyone's inputs, draw) and the page hands it to [`Game::start`] at `game_start`.
//! [`Game`] does the rest:
//! - one [`WebRtcManager`] per other member (see [`connection`], timed by [`policy`]);
//! - once every connection is open, episode 1 begins; each tick (every
//!   [`GameConfig::tick_ms`]) it reads the local input, schedules it
//!   [`GameConfig::input_delay_frames`] frames ahead, sends it on the unordered `inputs`
//!   channel together with the previous [`GameConfig::redundancy`]` − 1` inputs (so one lost
//!   packet costs nothing; receivers de-duplicate by frame number), and calls
//!   [`GameLogic::step`] with every player's input for the frame (a peer's input that has not
//!   arrived yet is taken to be its latest one);
//! - an episode lasts [`GameConfig::episode_ms`]; at its end `episode_summary` goes to the
//!   server (frames, inputs sent, per-peer [`PeerMetrics`]); after [`GameConfig::episodes`]
//!   episodes the game is finished and its connections are closed;
//! - `game_ended` from the server, or [`Game::close`], closes every connection.
//!
//! What the page shows is reported as [`GameUpdate`]s.

pub mod connection;
pub mod demo;
pub mod logic;
pub mod policy;

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::{self, FutureExt};
use futures::stream::{self, SelectAll, StreamExt};
use futures::{pin_mut, select};
use gloo_timers::future::TimeoutFuture;
use pairlab_shared::{
    ClientMessage, ConnectionKind, EpisodeSummary, GameId, GameStart, IceRestartOutcome,
    PeerMetrics, PlayerIndex, QualityChange, QualityLevel, ServerMessage,
};
use web_sys::RtcPeerConnection;

pub use connection::{ConnectionEvent, ConnectionSpec, WebRtcManager};
use logic::{rtt_summary, InputPacket, InputReceiver, InputSender};
pub use policy::ConnectionTuning;

use crate::signaling::Outbox;
use crate::util::{log, now_ms, warn};

/// What a researcher implements: the game itself. Inputs are `u32`s (e.g. a bit mask of the
/// keys held); players are `0..game_start.player_count`, this one `game_start.player_index`.
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
        Self {
            tick_ms: 33,
            episode_ms: 10_000,
            episodes: 3,
            input_delay_frames: 2,
            redundancy: 3,
            tuning: ConnectionTuning::default(),
        }
    }
}

impl GameConfig {
    /// Frames per episode (at least 1).
    pub fn frames_per_episode(&self) -> u32 {
        (self.episode_ms / self.tick_ms.max(1)).max(1)
    }
}

/// Where the game stands (`body[data-game-phase]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GamePhase {
    /// Opening the connections.
    Connecting,
    /// Episodes running.
    Playing,
    /// An ICE restart is under way.
    Restarting,
    /// Every episode was played.
    Finished,
    /// The server ended the game (`game_ended`), or a connection failed for good.
    Ended,
}

impl GamePhase {
    /// The `data-game-phase` value.
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

/// What the page shows, as it changes.
#[derive(Debug, Clone, PartialEq)]
pub enum GameUpdate {
    /// The phase changed.
    Phase(GamePhase),
    /// A connection's type became known (the page shows the worst: relay over direct).
    ConnectionType(ConnectionKind),
    /// The worst quality level over the connections changed.
    Quality(QualityLevel),
    /// Episode `n` began.
    Episode(u32),
    /// Frames played in the current episode.
    Frames(u32),
    /// A sentence for the participant (the `game_ended` message).
    Message(String),
    /// An episode summary was sent.
    Summary(EpisodeSummary),
}

/// Reports [`GameUpdate`]s to the page.
pub type Updates = Rc<dyn Fn(GameUpdate)>;

struct Peer {
    player_index: PlayerIndex,
    manager: WebRtcManager,
    inputs: InputReceiver,
    open: bool,
    level: QualityLevel,
    restarting: bool,
}

struct Inner {
    game_id: GameId,
    peers: RefCell<Vec<Peer>>,
    cancel: RefCell<Option<oneshot::Sender<()>>>,
    updates: Updates,
}

/// A running game. See the module docs. Dropping it closes every connection.
pub struct Game {
    inner: Rc<Inner>,
}

impl Game {
    /// Starts the game of `start` for its player `start.player_index`: opens a connection to
    /// every other player and runs the loop in a task. Messages for the server go through
    /// `out`.
    pub fn start(
        start: &GameStart,
        config: GameConfig,
        out: Outbox,
        logic: Box<dyn GameLogic>,
        updates: Updates,
    ) -> Self {
        let started_at_ms = now_ms();
        let mut peers = Vec::new();
        let mut receivers = SelectAll::new();
        for index in (0..start.player_count).filter(|&i| i != start.player_index) {
            let spec = ConnectionSpec {
                game_id: start.game_id.clone(),
                local_index: start.player_index,
                peer_index: index,
                ice_servers: start.ice_servers.clone(),
                force_relay: start.force_relay,
                started_at_ms,
                tuning: config.tuning,
            };
            match WebRtcManager::start(spec, Rc::clone(&out)) {
                Ok((manager, rx)) => {
                    let slot = peers.len();
                    receivers.push(rx.map(move |ev| (slot, ev)).boxed_local());
                    peers.push(Peer {
                        player_index: index,
                        manager,
                        inputs: InputReceiver::default(),
                        open: false,
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
            peers: RefCell::new(peers),
            cancel: RefCell::new(Some(cancel_tx)),
            updates,
        });
        let local_index = start.player_index as usize;
        let player_count = start.player_count as usize;
        let weak = Rc::downgrade(&inner);
        (inner.updates)(GameUpdate::Phase(GamePhase::Connecting));
        wasm_bindgen_futures::spawn_local(async move {
            let run = Box::pin(run_loop(
                weak,
                config,
                out,
                logic,
                receivers,
                local_index,
                player_count,
            ));
            let _ = future::select(cancel_rx, run).await;
        });
        Self { inner }
    }

    /// The game's id.
    pub fn id(&self) -> &GameId {
        &self.inner.game_id
    }

    /// Takes a server message: `webrtc_signal` goes to its connection, `game_ended` closes
    /// the game. Returns whether the message concerned this game.
    pub fn handle(&self, msg: &ServerMessage) -> bool {
        match msg {
            ServerMessage::WebrtcSignal(s) if s.game_id == self.inner.game_id => {
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
            ServerMessage::GameEnded(e) if e.game_id == self.inner.game_id => {
                self.close();
                (self.inner.updates)(GameUpdate::Message(e.message.clone()));
                (self.inner.updates)(GameUpdate::Phase(GamePhase::Ended));
                true
            }
            _ => false,
        }
    }

    /// Closes every connection and stops the loop. Idempotent.
    pub fn close(&self) {
        close_inner(&self.inner);
    }

    /// The browser connections (tests check they are closed afterwards).
    pub fn peer_connections(&self) -> Vec<RtcPeerConnection> {
        self.inner
            .peers
            .borrow()
            .iter()
            .map(|p| p.manager.raw().clone())
            .collect()
    }
}

impl Drop for Game {
    fn drop(&mut self) {
        self.close();
    }
}

fn close_inner(inner: &Inner) {
    for p in inner.peers.borrow_mut().iter_mut() {
        p.manager.close();
    }
    inner.cancel.borrow_mut().take();
}

type Events = SelectAll<stream::LocalBoxStream<'static, (usize, ConnectionEvent)>>;

/// The game loop; see the module docs.
async fn run_loop(
    inner: std::rc::Weak<Inner>,
    config: GameConfig,
    out: Outbox,
    mut logic: Box<dyn GameLogic>,
    mut events: Events,
    local_index: usize,
    player_count: usize,
) {
    let frames_per_episode = config.frames_per_episode();
    let mut sender = InputSender::new(config.input_delay_frames, config.redundancy);
    let mut local = InputReceiver::default();
    let mut episode = 0u32;
    let mut frame = 0u32;
    let mut episode_started_ms = 0.0;
    let mut next_tick_ms: Option<f64> = None;
    let mut shown_kind: Option<ConnectionKind> = None;
    let mut shown_level = QualityLevel::Ok;
    let mut phase = GamePhase::Connecting;

    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let wait = next_tick_ms.map(|t| (t - now_ms()).max(0.0));
        let timer = async move {
            match wait {
                Some(ms) => TimeoutFuture::new(ms as u32).await,
                None => future::pending::<()>().await,
            }
        }
        .fuse();
        pin_mut!(timer);
        let ev = select! {
            ev = events.next() => Some(ev),
            () = timer => None,
        };
        let update = |u: GameUpdate| (inner.updates)(u);
        match ev {
            Some(None) => return,
            Some(Some((slot, ev))) => {
                let mut peers = inner.peers.borrow_mut();
                let Some(peer) = peers.get_mut(slot) else {
                    continue;
                };
                match ev {
                    ConnectionEvent::Input(text) => {
                        if let Some(packet) = InputPacket::decode(&text) {
                            peer.inputs.take(&packet);
                        }
                    }
                    ConnectionEvent::Open { .. } => {
                        peer.open = true;
                        if episode == 0 && peers.iter().all(|p| p.open) {
                            episode = 1;
                            frame = 0;
                            episode_started_ms = now_ms();
                            sender.start_episode(episode);
                            local.start_episode(episode);
                            for p in peers.iter_mut() {
                                p.inputs.start_episode(episode);
                            }
                            drop(peers);
                            logic.episode_start(episode);
                            next_tick_ms = Some(now_ms());
                            phase = GamePhase::Playing;
                            update(GameUpdate::Phase(phase));
                            update(GameUpdate::Episode(episode));
                        }
                    }
                    ConnectionEvent::Info(info) => {
                        let kind = match shown_kind {
                            Some(ConnectionKind::Relay) => ConnectionKind::Relay,
                            _ => info.connection_type,
                        };
                        if shown_kind != Some(kind) {
                            shown_kind = Some(kind);
                            update(GameUpdate::ConnectionType(kind));
                        }
                    }
                    ConnectionEvent::Quality { level, .. } => {
                        peer.level = level;
                        let worst = peers.iter().map(|p| p.level).max().unwrap_or(level);
                        if worst != shown_level {
                            shown_level = worst;
                            update(GameUpdate::Quality(worst));
                        }
                    }
                    ConnectionEvent::Restart { outcome, .. } => {
                        peer.restarting = outcome == IceRestartOutcome::Started;
                        let restarting = peers.iter().any(|p| p.restarting);
                        let want = match phase {
                            GamePhase::Playing if restarting => GamePhase::Restarting,
                            GamePhase::Restarting if !restarting => GamePhase::Playing,
                            p => p,
                        };
                        if want != phase {
                            phase = want;
                            update(GameUpdate::Phase(phase));
                        }
                    }
                    ConnectionEvent::Failed { .. } => {
                        // The server answers p2p_connection_failed with game_ended; until then
                        // the page says the connection is lost.
                        drop(peers);
                        phase = GamePhase::Ended;
                        next_tick_ms = None;
                        update(GameUpdate::Phase(phase));
                        update(GameUpdate::Message(
                            "The connection to your partner was lost.".into(),
                        ));
                    }
                    ConnectionEvent::PeerClosed => {
                        log(&format!(
                            "game {}: player {} closed the connection",
                            inner.game_id, peer.player_index
                        ));
                    }
                    ConnectionEvent::Control(_) => {}
                }
            }
            None => {
                // One frame.
                let input = logic.read_input();
                let (_, packet) = sender.push(frame, input);
                local.take(&packet);
                let text = packet.encode();
                let mut inputs = vec![0u32; player_count];
                {
                    let mut peers = inner.peers.borrow_mut();
                    for p in peers.iter_mut() {
                        if let Err(e) = p.manager.send_input(&text) {
                            if phase == GamePhase::Playing {
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
                update(GameUpdate::Frames(frame));
                next_tick_ms = next_tick_ms.map(|t| t + f64::from(config.tick_ms));
                if frame >= frames_per_episode {
                    let summary =
                        summarize(&inner, episode, frame, sender.sent(), episode_started_ms);
                    out(ClientMessage::EpisodeSummary(summary.clone()));
                    update(GameUpdate::Summary(summary));
                    logic.episode_end(episode);
                    if episode >= config.episodes {
                        phase = GamePhase::Finished;
                        update(GameUpdate::Phase(phase));
                        close_inner(&inner);
                        return;
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
                    update(GameUpdate::Episode(episode));
                    update(GameUpdate::Frames(0));
                }
            }
        }
    }
}

/// The `episode_summary` of the episode that began at `started_ms`.
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
            }
        })
        .collect();
    EpisodeSummary {
        game_id: inner.game_id.clone(),
        episode,
        frames,
        inputs_sent,
        peers,
        hidden_count: 0,
        hidden_ms: 0.0,
    }
}

/// Reads [`GameConfig`] overrides from URL parameters (`episode_ms`, `episodes`, `tick_ms`,
/// `input_delay`, `quality_interval_ms`, `disconnect_grace_ms`, `restart_timeout_ms`,
/// `warning_ms`, `critical_ms`), looked up with `get`; unparsable values are ignored.
pub fn config_from_params(get: impl Fn(&str) -> Option<String>) -> GameConfig {
    let mut c = GameConfig::default();
    let num = |k: &str| {
        get(k)
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|v| *v > 0)
    };
    if let Some(v) = num("episode_ms") {
        c.episode_ms = v;
    }
    if let Some(v) = num("episodes") {
        c.episodes = v;
    }
    if let Some(v) = num("tick_ms") {
        c.tick_ms = v;
    }
    if let Some(v) = get("input_delay").and_then(|v| v.trim().parse::<u32>().ok()) {
        c.input_delay_frames = v;
    }
    if let Some(v) = num("quality_interval_ms") {
        c.tuning.quality_interval_ms = v;
    }
    if let Some(v) = num("disconnect_grace_ms") {
        c.tuning.disconnect_grace_ms = v;
    }
    if let Some(v) = num("restart_timeout_ms") {
        c.tuning.restart_timeout_ms = v;
    }
    if let Some(v) = num("warning_ms") {
        c.tuning.thresholds.warning_above_ms = f64::from(v);
    }
    if let Some(v) = num("critical_ms") {
        c.tuning.thresholds.critical_above_ms = f64::from(v);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_override_defaults() {
        let c = config_from_params(|k| match k {
            "episode_ms" => Some("3000".into()),
            "quality_interval_ms" => Some("250".into()),
            "disconnect_grace_ms" => Some("x".into()),
            "input_delay" => Some("0".into()),
            _ => None,
        });
        assert_eq!(c.episode_ms, 3000);
        assert_eq!(c.tuning.quality_interval_ms, 250);
        assert_eq!(c.tuning.disconnect_grace_ms, 5000);
        assert_eq!(c.input_delay_frames, 0);
        assert_eq!(c.frames_per_episode(), 3000 / 33);
    }
}
