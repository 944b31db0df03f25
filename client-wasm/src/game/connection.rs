//! The game's WebRTC connection to one peer: [`WebRtcManager`].
//!
//! One manager per other member of the group, built at `game_start`, on a [`Peer`] that is
//! either the accepted probe's connection handed over ([`WebRtcManager::adopt`]; PROTOCOL.md
//! "Handover": its channels are open already, `setup: handover`) or a fresh one
//! ([`WebRtcManager::start`], `setup: fresh`):
//! - ICE servers and `force_relay` (`iceTransportPolicy: "relay"`) from `game_start`; the
//!   initiator is the member with the smaller player index ([`pairlab_shared::is_initiator`],
//!   as for probes); peers are addressed by player index, never by `subject_id`. A page
//!   without the pair's probe connection (a reload) offers whatever the rule
//!   ([`ConnectionSpec::offer_anyway`]). Offers from the peer follow
//!   [`super::policy::on_offer`]: while its own first offer is unanswered, a side ignores a
//!   crossing offer if it is the initiator and otherwise drops its own attempt for a fresh
//!   connection that answers (W3C "perfect negotiation", the non-initiator being the polite
//!   peer); on a connection with a remote description (handed over, or negotiated), an offer
//!   whose DTLS fingerprint differs from that description's comes from a new page of the peer
//!   (a reload) and is answered by a fresh connection that replaces it, while one with the
//!   same fingerprint is an ICE restart, answered on the same connection.
//! - Signalling as `webrtc_signal` (offer, answer, trickled candidates; the [`Peer`] buffers
//!   remote candidates that arrive before the remote description).
//! - Two DataChannels, created by the initiator: [`INPUTS_LABEL`] unordered with
//!   `maxRetransmits: 0` (a late input is useless; the sender repeats the last few instead),
//!   and [`CONTROL_LABEL`] reliable and ordered. Both carry [`Frame`]s
//!   ([`super::framing`]): the game loop's inputs, the researcher's strings and bytes, and
//!   pairlab's control frames. Everything but a `bye` goes from the channel's `message` event
//!   straight to the game (no hop through this connection's loop).
//! - Once both channels are open: `getStats` → selected pair → `p2p_connection_type`, with
//!   `connect_ms` from `game_start` (the spec's `started_at_ms`) to both channels open (to
//!   the adoption, for a handed-over connection), `setup`, and `same_path_as_probe`: the
//!   same candidate pair id as the probe measured (handover), or the same candidate types
//!   and protocols ([`ConnectionSpec::probe_path`], fresh).
//! - The quality monitor (`p2p_quality`) and ICE restarts (`p2p_ice_restart`, then
//!   `p2p_connection_failed` and the end of the connection when every attempt failed), timed
//!   by [`ConnectionPolicy`] (see [`super::policy`] for the rules). Only the initiator offers
//!   a restart (no glare); the other side answers.
//!
//! The connection's task owns the [`Peer`] (and with it every browser listener);
//! [`WebRtcManager::close`] (or dropping the manager) closes the `RTCPeerConnection` at once
//! and ends the task, which drops the [`Peer`].

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either, FutureExt};
use futures::{pin_mut, select, StreamExt};
use gloo_timers::future::TimeoutFuture;
use pairlab_shared::{
    ClientMessage, ConnectionInfo, ConnectionSetup, GameId, IceRestartOutcome, IceRestartTrigger,
    IceServer, P2pConnectionFailed, P2pConnectionType, P2pIceRestart, P2pQuality, PlayerIndex,
    QualityLevel, SignalPayload, SignalType, WebrtcSignalOut,
};
use web_sys::{RtcIceConnectionState, RtcPeerConnection};

use super::framing::Frame;
use super::logic::InputPacket;
use super::policy::{
    on_offer, Action, Attempt, ConnectionPolicy, ConnectionTuning, IceState, OfferDecision,
};
use crate::handover::{dtls_fingerprints, is_game_channel, ParkedPeer, GAME_CHANNELS};
pub use crate::handover::{CONTROL_LABEL, INPUTS_LABEL};
use crate::peer::{
    Announced, ChannelData, Channels, Hooked, MessageHook, Peer, PeerConfig, PeerError, PeerEvent,
};
use crate::signaling::Outbox;
use crate::util::{log, ms_text, now_ms, warn};

/// Reading the connection type right after open: attempts and spacing (ms).
const INFO_ATTEMPTS: u32 = 40;
const INFO_RETRY_MS: u32 = 25;

/// What a game connection is, from `game_start`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionSpec {
    /// The game.
    pub game_id: GameId,
    /// This participant's player index (`game_start.player_index`).
    pub local_index: PlayerIndex,
    /// The peer's player index (peers never see each other's `subject_id`).
    pub peer_index: PlayerIndex,
    /// STUN/TURN servers.
    pub ice_servers: Vec<IceServer>,
    /// TURN relay only (`iceTransportPolicy: "relay"`).
    pub force_relay: bool,
    /// `performance.now()` when `game_start` arrived, ms (the origin of `connect_ms`).
    pub started_at_ms: f64,
    /// Timings and thresholds.
    pub tuning: ConnectionTuning,
    /// The path the pair's probe measured, when known: a fresh connection's
    /// `same_path_as_probe` compares its selected pair with it.
    pub probe_path: Option<ConnectionInfo>,
    /// Send the first offer whatever the initiator rule: `game_start` handed over a probe
    /// connection that this side no longer has (PROTOCOL.md "Handover", fallbacks).
    pub offer_anyway: bool,
}

/// What the connection reports to the game, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionEvent {
    /// Both DataChannels are open (the first time): `connect_ms` from `game_start`.
    Open {
        /// ms from `game_start` to both channels open.
        connect_ms: f64,
    },
    /// The selected candidate pair is known (after open, and again when a restart changed it).
    Info {
        /// The pair's candidate types and protocols.
        info: ConnectionInfo,
        /// The probe's connection adopted, or a new one.
        setup: ConnectionSetup,
        /// Whether it is the path the probe measured; `None` when unknown.
        same_path_as_probe: Option<bool>,
    },
    /// An input packet of the game loop arrived.
    Input(InputPacket),
    /// The peer's game loop is ready to start ([`Frame::Ready`]).
    Ready,
    /// A researcher's message arrived: text, or the bytes after the tag byte.
    Message {
        /// The message as sent.
        data: ChannelData,
        /// Whether it came on the reliable `control` channel (else on `inputs`).
        reliable: bool,
    },
    /// The quality level changed.
    Quality {
        /// The new level.
        level: QualityLevel,
        /// The sample that changed it, ms.
        rtt_ms: f64,
    },
    /// An ICE restart attempt began or ended.
    Restart {
        /// 1-based attempt.
        attempt: u32,
        /// Where it stands.
        outcome: IceRestartOutcome,
    },
    /// The peer closed the game connection on purpose.
    PeerClosed,
    /// Every ICE restart failed; `p2p_connection_failed` was sent and the connection stopped.
    Failed {
        /// Attempts made.
        attempts: u32,
    },
}

/// What the connection saw, with `performance.now()` times (ms), for the episode summaries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// The selected pair, once known.
    pub info: Option<ConnectionInfo>,
    /// How the connection was set up (once the pair is known).
    pub setup: Option<ConnectionSetup>,
    /// Whether its path is the one the probe measured, when known.
    pub same_path_as_probe: Option<bool>,
    /// `(at_ms, rtt_ms)` samples of the quality monitor.
    pub rtt_samples: Vec<(f64, f64)>,
    /// `(at_ms, level)` level changes.
    pub quality_changes: Vec<(f64, QualityLevel)>,
    /// Start times of ICE restart attempts.
    pub restarts: Vec<f64>,
    /// The current level (`None` before the first sample).
    pub level: Option<QualityLevel>,
}

/// What the manager tells its task.
enum Command {
    Signal(SignalType, Option<SignalPayload>),
    Restart(IceRestartTrigger),
}

/// The browser connection a manager works on now (a fresh one may replace a handed-over one).
struct Current {
    pc: RtcPeerConnection,
    channels: Channels,
}

impl Current {
    fn of(peer: &Peer) -> Self {
        Self {
            pc: peer.raw().clone(),
            channels: peer.channels(),
        }
    }
}

/// The game connection to one peer. See the module docs.
pub struct WebRtcManager {
    peer_index: PlayerIndex,
    current: Rc<RefCell<Current>>,
    observations: Rc<RefCell<Observations>>,
    commands: mpsc::UnboundedSender<Command>,
    cancel: Option<oneshot::Sender<()>>,
}

impl WebRtcManager {
    /// Builds a fresh connection for `spec` and starts its task: the initiator (or, with
    /// [`ConnectionSpec::offer_anyway`], this side whatever the rule) creates both channels
    /// and sends the offer at once. Messages for the server go through `out`; what the game
    /// needs arrives on the returned receiver.
    ///
    /// # Errors
    /// [`PeerError::Create`] when the browser refuses the ICE configuration.
    pub fn start(
        spec: ConnectionSpec,
        out: Outbox,
    ) -> Result<(Self, mpsc::UnboundedReceiver<ConnectionEvent>), PeerError> {
        let (events_tx, events_rx) = mpsc::unbounded();
        let hook = game_hook(events_tx.clone());
        let (peer, peer_events) = Peer::new(&fresh_config(&spec), Some(Rc::clone(&hook)))?;
        let launch = Launch {
            spec,
            out,
            events_tx,
            hook,
            peer,
            peer_events,
            backlog: Vec::new(),
            setup: ConnectionSetup::Fresh,
            probe_pair_id: None,
            adopted_at_ms: None,
        };
        Ok((launch.run(), events_rx))
    }

    /// Makes the parked probe connection `parked` the game connection for `spec`
    /// (PROTOCOL.md "Handover"): its channels are open already, so `Open` follows at once,
    /// without a new ICE, DTLS or SCTP handshake. The game's decoder replaces the probe's
    /// hook, the probe's own channel is closed, and what arrived while it was parked is
    /// handled first, in order (the game's messages of a peer that adopted it earlier).
    pub fn adopt(
        spec: ConnectionSpec,
        parked: ParkedPeer,
        out: Outbox,
    ) -> (Self, mpsc::UnboundedReceiver<ConnectionEvent>) {
        // Its channels are open now: `connect_ms` counts to here.
        let adopted_at_ms = now_ms();
        let (events_tx, events_rx) = mpsc::unbounded();
        let hook = game_hook(events_tx.clone());
        let ParkedPeer {
            peer,
            mut events,
            measured,
        } = parked;
        // Synchronously, so nothing can come between: the waiting messages through the
        // game's decoder in order, then the decoder in place for the next ones.
        let mut backlog = Vec::new();
        while let Ok(ev) = events.try_recv() {
            match ev {
                PeerEvent::ChannelMessage { label, text, .. } => {
                    deliver(&hook, &label, ChannelData::Text(text), &mut backlog);
                }
                PeerEvent::ChannelBinary { label, bytes, .. } => {
                    deliver(&hook, &label, ChannelData::Binary(bytes), &mut backlog);
                }
                other => backlog.push(other),
            }
        }
        peer.set_hook(Some(Rc::clone(&hook)));
        peer.channels().retain(is_game_channel);
        let launch = Launch {
            spec,
            out,
            events_tx,
            hook,
            peer,
            peer_events: events,
            backlog,
            setup: ConnectionSetup::Handover,
            probe_pair_id: measured.pair_id,
            adopted_at_ms: Some(adopted_at_ms),
        };
        (launch.run(), events_rx)
    }

    /// The peer's player index.
    pub fn peer_index(&self) -> PlayerIndex {
        self.peer_index
    }

    /// Takes a `webrtc_signal` from the peer.
    pub fn handle_signal(&self, signal_type: SignalType, payload: Option<SignalPayload>) {
        let _ = self
            .commands
            .unbounded_send(Command::Signal(signal_type, payload));
    }

    /// Starts an ICE restart attempt now (what a `failed` or a long `disconnected` state
    /// does by itself; tests call it directly).
    pub fn restart(&self, trigger: IceRestartTrigger) {
        let _ = self.commands.unbounded_send(Command::Restart(trigger));
    }

    /// Sends one frame: on the reliable, ordered `control` channel when `reliable`, else on
    /// the unordered `inputs` channel.
    ///
    /// # Errors
    /// [`PeerError::ChannelNotOpen`] before open or after close; [`PeerError::Js`] when `send`
    /// throws.
    pub fn send(&self, frame: &Frame, reliable: bool) -> Result<(), PeerError> {
        let label = if reliable {
            CONTROL_LABEL
        } else {
            INPUTS_LABEL
        };
        let channels = &self.current.borrow().channels;
        match frame.encode() {
            ChannelData::Text(text) => channels.send(label, &text),
            ChannelData::Binary(bytes) => channels.send_bytes(label, &bytes),
        }
    }

    /// Whether both channels are open now.
    pub fn is_open(&self) -> bool {
        let channels = &self.current.borrow().channels;
        channels.is_open(INPUTS_LABEL) && channels.is_open(CONTROL_LABEL)
    }

    /// A copy of what the connection saw so far.
    pub fn observations(&self) -> Observations {
        self.observations.borrow().clone()
    }

    /// The browser connection now (tests check its state after close).
    pub fn raw(&self) -> RtcPeerConnection {
        self.current.borrow().pc.clone()
    }

    /// Says goodbye on the control channel, closes the `RTCPeerConnection` at once and ends
    /// the task (which drops the [`Peer`] and every listener). Idempotent; also run by `Drop`.
    pub fn close(&mut self) {
        if self.cancel.is_none() {
            return;
        }
        let _ = self.send(&Frame::Bye, true);
        let current = self.current.borrow();
        current.pc.close();
        current.channels.clear();
        drop(current);
        self.cancel = None;
    }
}

impl Drop for WebRtcManager {
    fn drop(&mut self) {
        self.close();
    }
}

/// The configuration of a fresh game connection for `spec`.
fn fresh_config(spec: &ConnectionSpec) -> PeerConfig {
    PeerConfig {
        ice_servers: spec.ice_servers.clone(),
        relay_only: spec.force_relay,
        // The offer follows at once; a pool would only gather the same candidates twice.
        ice_candidate_pool_size: 0,
        announced: Announced::Only(&[INPUTS_LABEL, CONTROL_LABEL]),
    }
}

/// The game's [`MessageHook`]: every frame on a game channel is decoded inside `onmessage`
/// and goes to `events` at once; only a `bye` goes on to the connection's task. Messages on
/// other channels (a handed-over probe's late `done` or pings) are dropped.
fn game_hook(events: mpsc::UnboundedSender<ConnectionEvent>) -> MessageHook {
    Rc::new(move |label, data| {
        if !is_game_channel(label) {
            return Hooked::Taken;
        }
        let event = match Frame::decode(data) {
            Ok(Frame::Bye) => return Hooked::PassOn(Frame::Bye.encode()),
            Ok(Frame::Ready) => ConnectionEvent::Ready,
            Ok(Frame::Inputs(packet)) => ConnectionEvent::Input(packet),
            Ok(Frame::Text(text)) => ConnectionEvent::Message {
                data: ChannelData::Text(text),
                reliable: label == CONTROL_LABEL,
            },
            Ok(Frame::Bytes(bytes)) => ConnectionEvent::Message {
                data: ChannelData::Binary(bytes),
                reliable: label == CONTROL_LABEL,
            },
            Err(e) => {
                warn(&format!("game connection, {label}: {e}; dropped"));
                return Hooked::Taken;
            }
        };
        let _ = events.unbounded_send(event);
        Hooked::Taken
    })
}

/// A message that waited on a parked connection, through the game's `hook` as if it had
/// just arrived; what the hook passes on (a `bye`) joins the `backlog` of the task.
fn deliver(hook: &MessageHook, label: &str, data: ChannelData, backlog: &mut Vec<PeerEvent>) {
    let received_at_ms = now_ms();
    match hook(label, data) {
        Hooked::PassOn(ChannelData::Text(text)) => backlog.push(PeerEvent::ChannelMessage {
            label: label.to_owned(),
            text,
            received_at_ms,
        }),
        Hooked::PassOn(ChannelData::Binary(bytes)) => backlog.push(PeerEvent::ChannelBinary {
            label: label.to_owned(),
            bytes,
            received_at_ms,
        }),
        Hooked::Taken | Hooked::Reply(_) => {}
    }
}

/// Everything a manager's task starts from.
struct Launch {
    spec: ConnectionSpec,
    out: Outbox,
    events_tx: mpsc::UnboundedSender<ConnectionEvent>,
    hook: MessageHook,
    peer: Peer,
    peer_events: mpsc::UnboundedReceiver<PeerEvent>,
    backlog: Vec<PeerEvent>,
    setup: ConnectionSetup,
    probe_pair_id: Option<String>,
    adopted_at_ms: Option<f64>,
}

impl Launch {
    /// Starts the connection's task and returns its manager.
    fn run(self) -> WebRtcManager {
        let current = Rc::new(RefCell::new(Current::of(&self.peer)));
        let observations = Rc::new(RefCell::new(Observations::default()));
        let (cmd_tx, cmd_rx) = mpsc::unbounded();
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        let peer_index = self.spec.peer_index;
        let conn = Conn {
            policy: ConnectionPolicy::new(
                self.spec.tuning,
                pairlab_shared::is_initiator(self.spec.local_index, self.spec.peer_index),
            ),
            spec: self.spec,
            peer: self.peer,
            peer_events: self.peer_events,
            hook: self.hook,
            current: Rc::clone(&current),
            observations: Rc::clone(&observations),
            out: self.out,
            events: self.events_tx,
            opened: false,
            setup: self.setup,
            probe_pair_id: self.probe_pair_id,
            adopted_at_ms: self.adopted_at_ms,
            offer_pending: false,
        };
        let backlog = self.backlog;
        wasm_bindgen_futures::spawn_local(async move {
            let run = Box::pin(conn.run(cmd_rx, backlog));
            // Either way the connection (and every listener) is dropped when this returns.
            let _ = future::select(cancel_rx, run).await;
        });
        WebRtcManager {
            peer_index,
            current,
            observations,
            commands: cmd_tx,
            cancel: Some(cancel_tx),
        }
    }
}

/// The browser's `iceConnectionState` as the policy sees it.
fn ice_state(state: RtcIceConnectionState) -> IceState {
    match state {
        RtcIceConnectionState::Checking => IceState::Checking,
        RtcIceConnectionState::Connected => IceState::Connected,
        RtcIceConnectionState::Completed => IceState::Completed,
        RtcIceConnectionState::Disconnected => IceState::Disconnected,
        RtcIceConnectionState::Failed => IceState::Failed,
        RtcIceConnectionState::Closed => IceState::Closed,
        _ => IceState::New,
    }
}

/// The task's state.
struct Conn {
    spec: ConnectionSpec,
    policy: ConnectionPolicy,
    peer: Peer,
    peer_events: mpsc::UnboundedReceiver<PeerEvent>,
    /// The game's decoder, for a fresh connection that replaces this one.
    hook: MessageHook,
    /// What the manager sends on and closes.
    current: Rc<RefCell<Current>>,
    observations: Rc<RefCell<Observations>>,
    out: Outbox,
    events: mpsc::UnboundedSender<ConnectionEvent>,
    opened: bool,
    setup: ConnectionSetup,
    /// The candidate pair id the probe measured (handover).
    probe_pair_id: Option<String>,
    /// When the handed-over connection was adopted, its channels open (`performance.now()`).
    adopted_at_ms: Option<f64>,
    /// This side's first offer is out and unanswered.
    offer_pending: bool,
}

impl Conn {
    fn name(&self) -> String {
        format!(
            "game {} → player {}",
            self.spec.game_id, self.spec.peer_index
        )
    }

    fn send(&self, msg: ClientMessage) {
        (self.out)(msg);
    }

    fn emit(&self, ev: ConnectionEvent) {
        let _ = self.events.unbounded_send(ev);
    }

    fn signal(&self, signal_type: SignalType, payload: Option<SignalPayload>) {
        self.send(ClientMessage::WebrtcSignal(WebrtcSignalOut {
            game_id: self.spec.game_id.clone(),
            target_index: self.spec.peer_index,
            signal_type,
            payload,
        }));
    }

    /// Whether ICE reads `connected`/`completed` now.
    fn ice_up(&self) -> bool {
        ice_state(self.peer.ice_connection_state()).is_up()
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        backlog: Vec<PeerEvent>,
    ) {
        match self.setup {
            ConnectionSetup::Handover => {
                for ev in backlog {
                    self.on_peer_event(ev).await;
                }
                // Open already: the connection is up now.
                self.check_open().await;
            }
            ConnectionSetup::Fresh if self.policy.is_initiator() || self.spec.offer_anyway => {
                if let Err(e) = self.open_as_offerer().await {
                    warn(&format!("{}: could not start: {e}", self.name()));
                }
            }
            ConnectionSetup::Fresh => {}
        }
        while !self.policy.is_done() {
            let now = now_ms();
            let wait_ms = self
                .policy
                .next_deadline_ms(now)
                .map(|d| (d - now).max(0.0));
            let timer = async move {
                match wait_ms {
                    Some(ms) => TimeoutFuture::new(ms.min(f64::from(u32::MAX)) as u32).await,
                    None => future::pending::<()>().await,
                }
            }
            .fuse();
            pin_mut!(timer);
            let step = select! {
                c = commands.next() => Either::Left(c),
                e = self.peer_events.next() => Either::Right(Either::Left(e)),
                () = timer => Either::Right(Either::Right(())),
            };
            match step {
                Either::Left(None) | Either::Right(Either::Left(None)) => return,
                Either::Left(Some(c)) => self.on_command(c).await,
                Either::Right(Either::Left(Some(e))) => self.on_peer_event(e).await,
                Either::Right(Either::Right(())) => self.on_timer().await,
            }
        }
    }

    async fn open_as_offerer(&mut self) -> Result<(), PeerError> {
        for (label, delivery, _) in GAME_CHANNELS {
            self.peer.create_data_channel(label, delivery)?;
        }
        let sdp = self.peer.create_offer().await?;
        self.offer_pending = true;
        self.signal(SignalType::Offer, Some(SignalPayload::Description { sdp }));
        Ok(())
    }

    /// Drops the connection for a fresh one with no channels and no offer (the one that
    /// answers an offer from a new page of the peer, or the polite side's of two first
    /// offers): a new [`Peer`] with the game's decoder, a new policy, and the pair reported
    /// again once open.
    fn replace_peer(&mut self, why: &str) -> Result<(), PeerError> {
        let (peer, events) = Peer::new(&fresh_config(&self.spec), Some(Rc::clone(&self.hook)))?;
        log(&format!("{}: a fresh connection ({why})", self.name()));
        *self.current.borrow_mut() = Current::of(&peer);
        // The old connection closes as it is dropped.
        self.peer = peer;
        self.peer_events = events;
        self.setup = ConnectionSetup::Fresh;
        self.opened = false;
        self.offer_pending = false;
        self.policy = ConnectionPolicy::new(self.spec.tuning, self.policy.is_initiator());
        self.observations.borrow_mut().info = None;
        Ok(())
    }

    /// What to do with an offer from the peer ([`on_offer`]).
    fn offer_decision(&self, sdp: &str) -> OfferDecision {
        let remote = self.peer.raw().remote_description().map(|d| d.sdp());
        let same_fingerprint = remote.map(|r| dtls_fingerprints(&r) == dtls_fingerprints(sdp));
        on_offer(
            same_fingerprint,
            self.offer_pending,
            self.policy.is_initiator(),
        )
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Restart(trigger) => {
                let actions = self
                    .policy
                    .on_restart_requested(trigger, self.ice_up(), now_ms());
                self.carry_out(actions).await;
            }
            Command::Signal(SignalType::Offer, Some(SignalPayload::Description { sdp })) => {
                match self.offer_decision(&sdp) {
                    OfferDecision::Answer => {}
                    OfferDecision::Ignore => {
                        log(&format!(
                            "{}: ignored the peer's offer: this side's own is pending",
                            self.name()
                        ));
                        return;
                    }
                    OfferDecision::ReplaceAndAnswer { why } => {
                        if let Err(e) = self.replace_peer(why) {
                            warn(&format!(
                                "{}: could not replace the connection: {e}",
                                self.name()
                            ));
                            return;
                        }
                    }
                }
                if let Err(e) = self.answer(&sdp).await {
                    warn(&format!("{}: could not answer: {e}", self.name()));
                }
            }
            Command::Signal(SignalType::Answer, Some(SignalPayload::Description { sdp })) => {
                match self.peer.accept_answer(&sdp).await {
                    Ok(()) => {
                        self.offer_pending = false;
                        self.negotiated().await;
                    }
                    Err(e) => warn(&format!("{}: the answer was refused: {e}", self.name())),
                }
            }
            Command::Signal(SignalType::IceCandidate, payload) => {
                let outcome = match self.peer.add_remote_candidate(payload.as_ref()) {
                    Ok(added) => added.await,
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    warn(&format!(
                        "{}: a remote candidate was refused: {e}",
                        self.name()
                    ));
                }
            }
            Command::Signal(t, _) => {
                warn(&format!(
                    "{}: ignored a {t:?} signal without an SDP",
                    self.name()
                ));
            }
        }
    }

    async fn answer(&mut self, sdp: &str) -> Result<(), PeerError> {
        let answer_sdp = self.peer.accept_offer(sdp).await?;
        self.signal(
            SignalType::Answer,
            Some(SignalPayload::Description { sdp: answer_sdp }),
        );
        self.negotiated().await;
        Ok(())
    }

    /// This side completed an offer/answer exchange.
    async fn negotiated(&mut self) {
        let actions = self.policy.on_negotiated(self.ice_up(), now_ms());
        self.carry_out(actions).await;
    }

    async fn on_peer_event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::LocalCandidate(payload) => self.signal(SignalType::IceCandidate, payload),
            PeerEvent::ChannelOpen { .. } => self.check_open().await,
            PeerEvent::ChannelClosed { label } => {
                // A close over a working path is the peer's doing (network trouble leaves
                // the channels open while ICE tries again).
                if label == CONTROL_LABEL && self.opened && self.ice_up() {
                    self.peer_gone();
                }
            }
            // The hook passes on only a `bye`.
            PeerEvent::ChannelBinary { .. } => self.peer_gone(),
            PeerEvent::IceConnectionState(state) => {
                let actions = self
                    .policy
                    .on_ice_state(ice_state(state), self.ice_up(), now_ms());
                self.carry_out(actions).await;
            }
            // Inputs go to the game from the hook; a channel error is followed by its
            // `close`; `connectionState` follows from `iceConnectionState`.
            PeerEvent::ChannelMessage { .. }
            | PeerEvent::ChannelError { .. }
            | PeerEvent::ConnectionState(_) => {}
        }
    }

    /// Once both game channels read open (the first time on this connection): `Open`, the
    /// quality monitor, and `p2p_connection_type`.
    async fn check_open(&mut self) {
        let both = GAME_CHANNELS
            .iter()
            .all(|(label, _, _)| self.peer.is_channel_open(label));
        if self.opened || !both {
            return;
        }
        self.opened = true;
        // Handed over: up since its adoption, whenever this task got to look.
        let open_at_ms = match self.setup {
            ConnectionSetup::Handover => self.adopted_at_ms.unwrap_or_else(now_ms),
            ConnectionSetup::Fresh => now_ms(),
        };
        let connect_ms = open_at_ms - self.spec.started_at_ms;
        log(&format!(
            "{}: both channels open {} ms after game_start ({:?})",
            self.name(),
            ms_text(connect_ms),
            self.setup
        ));
        self.emit(ConnectionEvent::Open { connect_ms });
        self.policy.on_open(now_ms());
        self.report_info(Some(connect_ms)).await;
    }

    fn peer_gone(&mut self) {
        if self.policy.on_peer_closed() {
            self.emit(ConnectionEvent::PeerClosed);
        }
    }

    async fn on_timer(&mut self) {
        if self.policy.take_poll_due(now_ms()) {
            self.poll_quality().await;
            if self.policy.take_recheck_info() {
                self.report_info(None).await;
            }
        }
        let actions = self.policy.on_timer(self.ice_up(), now_ms());
        self.carry_out(actions).await;
    }

    /// Does what the policy decided, in order.
    async fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::RestartStarted(attempt) => {
                    self.observations
                        .borrow_mut()
                        .restarts
                        .push(attempt.started_at_ms);
                    log(&format!(
                        "{}: ICE restart {} ({:?})",
                        self.name(),
                        attempt.number,
                        attempt.trigger
                    ));
                    self.report_restart(attempt, IceRestartOutcome::Started, None);
                    if self.policy.is_initiator() {
                        match self.peer.create_restart_offer().await {
                            Ok(sdp) => self.signal(
                                SignalType::Offer,
                                Some(SignalPayload::Description { sdp }),
                            ),
                            Err(e) => warn(&format!("{}: restart offer failed: {e}", self.name())),
                        }
                    }
                }
                Action::RestartEnded {
                    attempt,
                    outcome,
                    duration_ms,
                } => {
                    log(&format!(
                        "{}: ICE restart {} {outcome:?} after {} ms",
                        self.name(),
                        attempt.number,
                        ms_text(duration_ms)
                    ));
                    self.report_restart(attempt, outcome, Some(duration_ms));
                }
                Action::GaveUp { attempts } => {
                    warn(&format!(
                        "{}: the connection failed for good after {attempts} ICE restarts",
                        self.name()
                    ));
                    self.send(ClientMessage::P2pConnectionFailed(P2pConnectionFailed {
                        game_id: self.spec.game_id.clone(),
                        peer_index: self.spec.peer_index,
                        attempts,
                    }));
                    self.emit(ConnectionEvent::Failed { attempts });
                }
            }
        }
    }

    async fn poll_quality(&mut self) {
        let pair = match self.peer.selected_pair().await {
            Ok(p) => p,
            Err(e) => {
                warn(&format!("{}: {e}", self.name()));
                return;
            }
        };
        let Some(rtt) = pair.and_then(|p| p.current_round_trip_time_ms) else {
            return;
        };
        let at = now_ms();
        let change = self.policy.on_rtt_sample(rtt);
        {
            let mut obs = self.observations.borrow_mut();
            obs.rtt_samples.push((at, rtt));
            obs.level = Some(self.policy.level());
            if let Some(level) = change {
                obs.quality_changes.push((at, level));
            }
        }
        if let Some(level) = change {
            log(&format!(
                "{}: quality {level:?} at {} ms",
                self.name(),
                ms_text(rtt)
            ));
            self.send(ClientMessage::P2pQuality(P2pQuality {
                game_id: self.spec.game_id.clone(),
                peer_index: self.spec.peer_index,
                level,
                rtt_ms: Some(rtt),
            }));
            self.emit(ConnectionEvent::Quality { level, rtt_ms: rtt });
        }
    }

    /// Reads the selected pair (retrying briefly while its candidates are not in the report
    /// yet) and sends `p2p_connection_type` when it is new.
    async fn report_info(&mut self, connect_ms: Option<f64>) {
        let pair = self
            .peer
            .selected_pair_where(INFO_ATTEMPTS, INFO_RETRY_MS, |p| {
                p.connection_info().is_some()
            })
            .await;
        let pair = match pair {
            Ok(pair) => pair,
            Err(e) => {
                warn(&format!("{}: {e}", self.name()));
                return;
            }
        };
        let Some((info, pair_id)) = pair.and_then(|p| Some((p.connection_info()?, p.pair_id)))
        else {
            warn(&format!(
                "{}: no selected candidate pair in getStats",
                self.name()
            ));
            return;
        };
        let same_path_as_probe = match self.setup {
            ConnectionSetup::Handover => self.probe_pair_id.as_ref().map(|id| *id == pair_id),
            ConnectionSetup::Fresh => self.spec.probe_path.map(|p| p == info),
        };
        let setup = self.setup;
        {
            let mut obs = self.observations.borrow_mut();
            let unchanged = obs.info == Some(info)
                && obs.setup == Some(setup)
                && obs.same_path_as_probe == same_path_as_probe;
            obs.info = Some(info);
            obs.setup = Some(setup);
            obs.same_path_as_probe = same_path_as_probe;
            if unchanged {
                return;
            }
        }
        self.send(ClientMessage::P2pConnectionType(P2pConnectionType {
            game_id: self.spec.game_id.clone(),
            peer_index: self.spec.peer_index,
            info,
            connect_ms,
            setup: Some(setup),
            same_path_as_probe,
        }));
        self.emit(ConnectionEvent::Info {
            info,
            setup,
            same_path_as_probe,
        });
    }

    fn report_restart(&self, a: Attempt, outcome: IceRestartOutcome, duration_ms: Option<f64>) {
        self.send(ClientMessage::P2pIceRestart(P2pIceRestart {
            game_id: self.spec.game_id.clone(),
            peer_index: self.spec.peer_index,
            attempt: a.number,
            trigger: a.trigger,
            outcome,
            duration_ms,
        }));
        self.emit(ConnectionEvent::Restart {
            attempt: a.number,
            outcome,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_game_hook_decodes_game_channels_and_drops_the_probe_channel() {
        let (tx, mut rx) = mpsc::unbounded();
        let hook = game_hook(tx);
        // A handed-over probe's late `done` (or a ping) on its own channel: dropped.
        assert_eq!(
            hook("pairlab-probe", ChannelData::Text("d".into())),
            Hooked::Taken
        );
        assert!(rx.try_recv().is_err(), "nothing reaches the game");
        // The game's channels: decoded at once; only a `bye` goes on to the task.
        assert_eq!(
            hook(CONTROL_LABEL, ChannelData::Text("hi".into())),
            Hooked::Taken
        );
        assert_eq!(
            rx.try_recv().ok(),
            Some(ConnectionEvent::Message {
                data: ChannelData::Text("hi".into()),
                reliable: true
            })
        );
        assert_eq!(hook(INPUTS_LABEL, Frame::Ready.encode()), Hooked::Taken);
        assert_eq!(rx.try_recv().ok(), Some(ConnectionEvent::Ready));
        assert_eq!(
            hook(CONTROL_LABEL, Frame::Bye.encode()),
            Hooked::PassOn(Frame::Bye.encode())
        );
        assert!(rx.try_recv().is_err());
    }
}
