//! The game's WebRTC connection to one peer: [`WebRtcManager`] (issue 3, "The connection").
//!
//! One manager per other member of the group, built at `game_start`:
//! - ICE servers and `force_relay` (`iceTransportPolicy: "relay"`) from `game_start`; the
//!   initiator is the member with the smaller subject id in byte order (as for probes).
//! - Signalling as `webrtc_signal` (offer, answer, trickled candidates; remote candidates that
//!   arrive before the remote description are buffered).
//! - Two DataChannels, created by the initiator: [`INPUTS_LABEL`] unordered with
//!   `maxRetransmits: 0` (a late input is useless; the sender repeats the last few instead),
//!   and [`CONTROL_LABEL`] reliable and ordered.
//! - Once both channels are open: `getStats` → selected pair → `p2p_connection_type`, with
//!   `connect_ms` from `game_start` (the spec's `started_at_ms`) to both channels open.
//! - The quality monitor: every [`ConnectionTuning::quality_interval_ms`] the selected pair's
//!   `currentRoundTripTime` is sampled; a level change is sent as `p2p_quality`.
//! - ICE restart (RFC 8445 §2.4, W3C WebRTC 1.0 `restartIce()`): on `iceConnectionState`
//!   `failed` at once, on `disconnected` after [`ConnectionTuning::disconnect_grace_ms`];
//!   at most [`ConnectionTuning::max_restarts`] attempts, each reported as `p2p_ice_restart`
//!   (`started`, then `succeeded` once the state is back to `connected`/`completed` after the
//!   new offer/answer, or `failed` after [`ConnectionTuning::restart_timeout_ms`]). Only the
//!   initiator offers (no glare); the other side answers. After the last failed attempt:
//!   `p2p_connection_failed`, and the connection stops.
//!
//! Everything the browser calls back into is a `Closure` owned by the connection's task and
//! dropped with it; [`WebRtcManager::close`] (or dropping the manager) closes the
//! `RTCPeerConnection` at once and ends the task.

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either, FutureExt};
use futures::{pin_mut, select, StreamExt};
use gloo_timers::future::TimeoutFuture;
use js_sys::{Function, Reflect};
use pairlab_shared::{
    ClientMessage, ConnectionInfo, GameId, IceRestartOutcome, IceRestartTrigger, IceServer,
    P2pConnectionFailed, P2pConnectionType, P2pIceRestart, P2pQuality, QualityLevel, SignalPayload,
    SignalType, SubjectId, WebrtcSignalOut,
};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Event, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit, RtcDataChannelState,
    RtcIceCandidateInit, RtcIceConnectionState, RtcOfferOptions, RtcPeerConnection,
    RtcPeerConnectionIceEvent, RtcSdpType,
};

use super::logic::{is_initiator, QualityThresholds, QualityTracker};
use crate::peer::{
    js_err, remote_candidate_init, rtc_configuration, sdp_of, set_local_description,
    set_remote_description, AttachedChannel, ChannelCallbacks, PeerConfig, PeerError,
};
use crate::probe::Outbox;
use crate::stats;
use crate::util::{js_error_text, log, now_ms, warn};

/// Label of the unordered, unreliable inputs channel.
pub const INPUTS_LABEL: &str = "inputs";
/// Label of the reliable, ordered control channel.
pub const CONTROL_LABEL: &str = "control";
/// Sent on the control channel by a side that closes the game on purpose, so that the other
/// side does not try to restart a connection that was ended deliberately.
pub const BYE: &str = "{\"bye\":true}";

/// While an ICE restart runs, how often its state is checked, ms.
const RESTART_CHECK_MS: f64 = 100.0;
/// Reading the connection type right after open: attempts and spacing (ms).
const INFO_ATTEMPTS: u32 = 40;
const INFO_RETRY_MS: u32 = 25;

/// The connection's timings and thresholds; fields so tests (and the page's URL parameters)
/// can shorten them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionTuning {
    /// How often the quality monitor reads `getStats`, ms (default 2000).
    pub quality_interval_ms: u32,
    /// The quality levels' RTT thresholds (default 150 / 300 ms).
    pub thresholds: QualityThresholds,
    /// How long `iceConnectionState` may stay `disconnected` before an ICE restart, ms
    /// (default 5000).
    pub disconnect_grace_ms: u32,
    /// ICE restart attempts before giving up (default 3).
    pub max_restarts: u32,
    /// How long one restart attempt may take to reconnect, ms (default 10000).
    pub restart_timeout_ms: u32,
}

impl Default for ConnectionTuning {
    fn default() -> Self {
        Self {
            quality_interval_ms: 2000,
            thresholds: QualityThresholds::default(),
            disconnect_grace_ms: 5000,
            max_restarts: 3,
            restart_timeout_ms: 10_000,
        }
    }
}

/// What a game connection is, from `game_start`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionSpec {
    /// The game.
    pub game_id: GameId,
    /// This participant.
    pub local_subject_id: SubjectId,
    /// The peer.
    pub peer_subject_id: SubjectId,
    /// STUN/TURN servers.
    pub ice_servers: Vec<IceServer>,
    /// TURN relay only (`iceTransportPolicy: "relay"`).
    pub force_relay: bool,
    /// `performance.now()` when `game_start` arrived, ms (the origin of `connect_ms`).
    pub started_at_ms: f64,
    /// Timings and thresholds.
    pub tuning: ConnectionTuning,
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
    Info(ConnectionInfo),
    /// A packet arrived on the inputs channel.
    Input(String),
    /// A message arrived on the control channel.
    Control(String),
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
    /// `(at_ms, rtt_ms)` samples of the quality monitor.
    pub rtt_samples: Vec<(f64, f64)>,
    /// `(at_ms, level)` level changes.
    pub quality_changes: Vec<(f64, QualityLevel)>,
    /// Start times of ICE restart attempts.
    pub restarts: Vec<f64>,
    /// The current level (`None` before the first sample).
    pub level: Option<QualityLevel>,
}

struct Shared {
    inputs: Option<RtcDataChannel>,
    control: Option<RtcDataChannel>,
    obs: Observations,
}

/// What the manager tells its task.
enum Command {
    Signal(SignalType, Option<SignalPayload>),
    Restart(IceRestartTrigger),
}

/// The game connection to one peer. See the module docs.
pub struct WebRtcManager {
    peer_subject_id: SubjectId,
    pc: RtcPeerConnection,
    shared: Rc<RefCell<Shared>>,
    commands: mpsc::UnboundedSender<Command>,
    cancel: Option<oneshot::Sender<()>>,
}

impl WebRtcManager {
    /// Builds the connection for `spec` and starts its task: the initiator creates both
    /// channels and sends the offer at once. Messages for the server go through `out`; what
    /// the game needs arrives on the returned receiver.
    ///
    /// # Errors
    /// [`PeerError::Create`] when the browser refuses the ICE configuration.
    pub fn start(
        spec: ConnectionSpec,
        out: Outbox,
    ) -> Result<(Self, mpsc::UnboundedReceiver<ConnectionEvent>), PeerError> {
        let config = PeerConfig {
            ice_servers: spec.ice_servers.clone(),
            relay_only: spec.force_relay,
            // The offer follows at once; a pool would only gather the same candidates twice.
            ice_candidate_pool_size: 0,
        };
        let pc = RtcPeerConnection::new_with_configuration(&rtc_configuration(&config))
            .map_err(|e| PeerError::Create(js_error_text(&e)))?;
        let shared = Rc::new(RefCell::new(Shared {
            inputs: None,
            control: None,
            obs: Observations::default(),
        }));
        let (events_tx, events_rx) = mpsc::unbounded();
        let (cmd_tx, cmd_rx) = mpsc::unbounded();
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        let peer_subject_id = spec.peer_subject_id.clone();
        let (conn, raw_rx) = Conn::new(spec, pc.clone(), Rc::clone(&shared), out, events_tx);
        wasm_bindgen_futures::spawn_local(async move {
            let run = Box::pin(conn.run(cmd_rx, raw_rx));
            // Either way the connection (and every closure) is dropped when this returns.
            let _ = future::select(cancel_rx, run).await;
        });
        Ok((
            Self {
                peer_subject_id,
                pc,
                shared,
                commands: cmd_tx,
                cancel: Some(cancel_tx),
            },
            events_rx,
        ))
    }

    /// The peer.
    pub fn peer_subject_id(&self) -> &SubjectId {
        &self.peer_subject_id
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

    fn send_on(&self, which: &str, text: &str) -> Result<(), PeerError> {
        let shared = self.shared.borrow();
        let dc = if which == INPUTS_LABEL {
            shared.inputs.as_ref()
        } else {
            shared.control.as_ref()
        };
        match dc {
            Some(dc) if dc.ready_state() == RtcDataChannelState::Open => dc
                .send_with_str(text)
                .map_err(js_err("RTCDataChannel.send")),
            _ => Err(PeerError::ChannelNotOpen),
        }
    }

    /// Sends on the unordered inputs channel.
    ///
    /// # Errors
    /// [`PeerError::ChannelNotOpen`] before open or after close; [`PeerError::Js`] when `send`
    /// throws.
    pub fn send_input(&self, text: &str) -> Result<(), PeerError> {
        self.send_on(INPUTS_LABEL, text)
    }

    /// Sends on the reliable control channel.
    ///
    /// # Errors
    /// As [`WebRtcManager::send_input`].
    pub fn send_control(&self, text: &str) -> Result<(), PeerError> {
        self.send_on(CONTROL_LABEL, text)
    }

    /// Whether both channels are open now.
    pub fn is_open(&self) -> bool {
        let s = self.shared.borrow();
        let open = |dc: &Option<RtcDataChannel>| {
            dc.as_ref()
                .is_some_and(|d| d.ready_state() == RtcDataChannelState::Open)
        };
        open(&s.inputs) && open(&s.control)
    }

    /// A copy of what the connection saw so far.
    pub fn observations(&self) -> Observations {
        self.shared.borrow().obs.clone()
    }

    /// The browser connection (tests check its state after close).
    pub fn raw(&self) -> &RtcPeerConnection {
        &self.pc
    }

    /// Says goodbye on the control channel, closes the `RTCPeerConnection` at once and ends
    /// the task (which frees every closure). Idempotent; also run by `Drop`.
    pub fn close(&mut self) {
        if self.cancel.is_none() {
            return;
        }
        let _ = self.send_control(BYE);
        {
            let mut s = self.shared.borrow_mut();
            s.inputs = None;
            s.control = None;
        }
        self.pc.close();
        self.cancel = None;
    }
}

impl Drop for WebRtcManager {
    fn drop(&mut self) {
        self.close();
    }
}

/// What the browser's callbacks report to the task.
enum Raw {
    Candidate(Option<SignalPayload>),
    IceState(RtcIceConnectionState),
    Announced(RtcDataChannel),
    ChannelOpen(String),
    ChannelClosed(String),
    Control(String),
}

/// Attaches the game's handlers to one of its two channels: `open`/`close` and control
/// messages go to the connection's own loop (`raw`), inputs straight to the game (`events`),
/// with no extra hop for the time-critical channel.
fn attach_channel(
    dc: RtcDataChannel,
    raw: &mpsc::UnboundedSender<Raw>,
    events: &mpsc::UnboundedSender<ConnectionEvent>,
) -> AttachedChannel {
    let label = dc.label();
    let is_inputs = label == INPUTS_LABEL;
    let (open_raw, message_raw, close_raw) = (raw.clone(), raw.clone(), raw.clone());
    let events = events.clone();
    let open_label = label.clone();
    AttachedChannel::attach(
        dc,
        ChannelCallbacks {
            on_open: Box::new(move || {
                let _ = open_raw.unbounded_send(Raw::ChannelOpen(open_label.clone()));
            }),
            on_message: Box::new(move |text, _received_at_ms| {
                if is_inputs {
                    let _ = events.unbounded_send(ConnectionEvent::Input(text));
                } else {
                    let _ = message_raw.unbounded_send(Raw::Control(text));
                }
            }),
            on_close: Box::new(move || {
                let _ = close_raw.unbounded_send(Raw::ChannelClosed(label.clone()));
            }),
            // A channel error is followed by its `close`, which the loop acts on.
            on_error: Box::new(|_| {}),
        },
    )
}

/// The connection-level handlers.
struct Handlers {
    _on_ice_candidate: Closure<dyn FnMut(RtcPeerConnectionIceEvent)>,
    _on_ice_state: Closure<dyn FnMut(Event)>,
    _on_data_channel: Closure<dyn FnMut(RtcDataChannelEvent)>,
}

/// One ICE restart attempt in progress.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    number: u32,
    trigger: IceRestartTrigger,
    started_at_ms: f64,
    /// The new offer/answer exchange is complete on this side.
    negotiated: bool,
}

/// The task's state.
struct Conn {
    spec: ConnectionSpec,
    initiator: bool,
    pc: RtcPeerConnection,
    shared: Rc<RefCell<Shared>>,
    out: Outbox,
    events: mpsc::UnboundedSender<ConnectionEvent>,
    raw_tx: mpsc::UnboundedSender<Raw>,
    handlers: Option<Handlers>,
    channels: Vec<AttachedChannel>,
    remote_set: bool,
    pending: Vec<Option<RtcIceCandidateInit>>,
    open_labels: Vec<String>,
    opened: bool,
    peer_closed: bool,
    quality: QualityTracker,
    next_poll_ms: Option<f64>,
    disconnected_since_ms: Option<f64>,
    restart: Option<Attempt>,
    attempts: u32,
    recheck_info: bool,
    done: bool,
}

impl Conn {
    fn new(
        spec: ConnectionSpec,
        pc: RtcPeerConnection,
        shared: Rc<RefCell<Shared>>,
        out: Outbox,
        events: mpsc::UnboundedSender<ConnectionEvent>,
    ) -> (Self, mpsc::UnboundedReceiver<Raw>) {
        let (raw_tx, raw_rx) = mpsc::unbounded();
        let on_ice_candidate = {
            let tx = raw_tx.clone();
            Closure::<dyn FnMut(RtcPeerConnectionIceEvent)>::new(
                move |ev: RtcPeerConnectionIceEvent| {
                    if let Some(payload) = crate::peer::candidate_signal(&ev) {
                        let _ = tx.unbounded_send(Raw::Candidate(payload));
                    }
                },
            )
        };
        let on_ice_state = {
            let tx = raw_tx.clone();
            let pc = pc.clone();
            Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                let _ = tx.unbounded_send(Raw::IceState(pc.ice_connection_state()));
            })
        };
        let on_data_channel = {
            let tx = raw_tx.clone();
            Closure::<dyn FnMut(RtcDataChannelEvent)>::new(move |ev: RtcDataChannelEvent| {
                let _ = tx.unbounded_send(Raw::Announced(ev.channel()));
            })
        };
        pc.set_onicecandidate(Some(on_ice_candidate.as_ref().unchecked_ref()));
        pc.set_oniceconnectionstatechange(Some(on_ice_state.as_ref().unchecked_ref()));
        pc.set_ondatachannel(Some(on_data_channel.as_ref().unchecked_ref()));
        let initiator = is_initiator(
            spec.local_subject_id.as_str(),
            spec.peer_subject_id.as_str(),
        );
        let quality = QualityTracker::new(spec.tuning.thresholds);
        (
            Self {
                spec,
                initiator,
                pc,
                shared,
                out,
                events,
                raw_tx,
                handlers: Some(Handlers {
                    _on_ice_candidate: on_ice_candidate,
                    _on_ice_state: on_ice_state,
                    _on_data_channel: on_data_channel,
                }),
                channels: Vec::new(),
                remote_set: false,
                pending: Vec::new(),
                open_labels: Vec::new(),
                opened: false,
                peer_closed: false,
                quality,
                next_poll_ms: None,
                disconnected_since_ms: None,
                restart: None,
                attempts: 0,
                recheck_info: false,
                done: false,
            },
            raw_rx,
        )
    }

    fn name(&self) -> String {
        format!("game {} → {}", self.spec.game_id, self.spec.peer_subject_id)
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
            target_subject_id: self.spec.peer_subject_id.clone(),
            signal_type,
            payload,
        }));
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut raw: mpsc::UnboundedReceiver<Raw>,
    ) {
        if self.initiator {
            if let Err(e) = self.open_as_initiator().await {
                warn(&format!("{}: could not start: {e}", self.name()));
            }
        }
        while !self.done {
            let wait_ms = self.next_deadline().map(|d| (d - now_ms()).max(0.0));
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
                r = raw.next() => Either::Right(Either::Left(r)),
                () = timer => Either::Right(Either::Right(())),
            };
            match step {
                Either::Left(None) | Either::Right(Either::Left(None)) => return,
                Either::Left(Some(c)) => self.on_command(c).await,
                Either::Right(Either::Left(Some(r))) => self.on_raw(r).await,
                Either::Right(Either::Right(())) => self.on_timer().await,
            }
        }
    }

    fn create_channels(&mut self) {
        let inputs_init = RtcDataChannelInit::new();
        inputs_init.set_ordered(false);
        inputs_init.set_max_retransmits(0);
        let inputs = self
            .pc
            .create_data_channel_with_data_channel_dict(INPUTS_LABEL, &inputs_init);
        let control = self.pc.create_data_channel(CONTROL_LABEL);
        for dc in [inputs, control] {
            self.adopt(dc);
        }
    }

    fn adopt(&mut self, dc: RtcDataChannel) {
        let label = dc.label();
        if label != INPUTS_LABEL && label != CONTROL_LABEL
            || self.channels.iter().any(|c| c.dc.label() == label)
        {
            dc.close();
            return;
        }
        {
            let mut s = self.shared.borrow_mut();
            if label == INPUTS_LABEL {
                s.inputs = Some(dc.clone());
            } else {
                s.control = Some(dc.clone());
            }
        }
        let already_open = dc.ready_state() == RtcDataChannelState::Open;
        self.channels
            .push(attach_channel(dc, &self.raw_tx, &self.events));
        // An announced channel reaches this loop through `Raw::Announced`, after the
        // `datachannel` callback returned, so its `open` event (dispatched right after that
        // callback, W3C WebRTC 1.0 §6.2) may have gone unheard. Its `readyState` says so;
        // `Raw::ChannelOpen` twice for one label is harmless.
        if already_open {
            let _ = self.raw_tx.unbounded_send(Raw::ChannelOpen(label));
        }
    }

    async fn open_as_initiator(&mut self) -> Result<(), PeerError> {
        self.create_channels();
        let sdp = self.offer(false).await?;
        self.signal(SignalType::Offer, Some(SignalPayload::Description { sdp }));
        Ok(())
    }

    async fn offer(&self, ice_restart: bool) -> Result<String, PeerError> {
        let promise = if ice_restart {
            // `restartIce()` where the browser has it (it marks the next offer as a restart);
            // the offer option below does the same in older browsers.
            if let Ok(f) = Reflect::get(&self.pc, &JsValue::from_str("restartIce")) {
                if let Some(f) = f.dyn_ref::<Function>() {
                    let _ = f.call0(&self.pc);
                }
            }
            let opts = RtcOfferOptions::new();
            opts.set_ice_restart(true);
            self.pc.create_offer_with_rtc_offer_options(&opts)
        } else {
            self.pc.create_offer()
        };
        let offer = JsFuture::from(promise)
            .await
            .map_err(js_err("createOffer"))?;
        let sdp = sdp_of(&offer, "createOffer")?;
        self.set_local(RtcSdpType::Offer, &sdp).await?;
        Ok(sdp)
    }

    async fn set_local(&self, kind: RtcSdpType, sdp: &str) -> Result<(), PeerError> {
        set_local_description(&self.pc, kind, sdp).await
    }

    async fn set_remote(&mut self, kind: RtcSdpType, sdp: &str) -> Result<(), PeerError> {
        set_remote_description(&self.pc, kind, sdp).await?;
        self.remote_set = true;
        for init in std::mem::take(&mut self.pending) {
            self.add_candidate(init).await;
        }
        Ok(())
    }

    async fn add_candidate(&self, init: Option<RtcIceCandidateInit>) {
        let promise = self
            .pc
            .add_ice_candidate_with_opt_rtc_ice_candidate_init(init.as_ref());
        if let Err(e) = JsFuture::from(promise).await {
            if init.is_some() {
                warn(&format!(
                    "{}: a remote candidate was refused: {}",
                    self.name(),
                    js_error_text(&e)
                ));
            }
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Restart(trigger) => {
                if self.restart.is_none() {
                    self.begin_restart(trigger).await;
                }
            }
            Command::Signal(SignalType::Offer, Some(SignalPayload::Description { sdp })) => {
                if let Err(e) = self.answer(&sdp).await {
                    warn(&format!("{}: could not answer: {e}", self.name()));
                }
            }
            Command::Signal(SignalType::Answer, Some(SignalPayload::Description { sdp })) => {
                match self.set_remote(RtcSdpType::Answer, &sdp).await {
                    Ok(()) => {
                        if let Some(a) = self.restart.as_mut() {
                            a.negotiated = true;
                        }
                        self.check_restart_success();
                    }
                    Err(e) => warn(&format!("{}: the answer was refused: {e}", self.name())),
                }
            }
            Command::Signal(SignalType::IceCandidate, payload) => {
                let init = remote_candidate_init(payload.as_ref());
                if self.remote_set {
                    self.add_candidate(init).await;
                } else {
                    self.pending.push(init);
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
        self.set_remote(RtcSdpType::Offer, sdp).await?;
        let answer = JsFuture::from(self.pc.create_answer())
            .await
            .map_err(js_err("createAnswer"))?;
        let answer_sdp = sdp_of(&answer, "createAnswer")?;
        self.set_local(RtcSdpType::Answer, &answer_sdp).await?;
        self.signal(
            SignalType::Answer,
            Some(SignalPayload::Description { sdp: answer_sdp }),
        );
        if let Some(a) = self.restart.as_mut() {
            a.negotiated = true;
        }
        self.check_restart_success();
        Ok(())
    }

    async fn on_raw(&mut self, raw: Raw) {
        match raw {
            Raw::Candidate(payload) => self.signal(SignalType::IceCandidate, payload),
            Raw::Announced(dc) => self.adopt(dc),
            Raw::ChannelOpen(label) => {
                if !self.open_labels.contains(&label) {
                    self.open_labels.push(label);
                }
                if !self.opened && self.open_labels.len() == 2 {
                    self.opened = true;
                    let connect_ms = now_ms() - self.spec.started_at_ms;
                    log(&format!(
                        "{}: both channels open {connect_ms:.1} ms after game_start",
                        self.name()
                    ));
                    self.emit(ConnectionEvent::Open { connect_ms });
                    self.next_poll_ms = Some(now_ms());
                    self.report_info(Some(connect_ms)).await;
                }
            }
            Raw::ChannelClosed(label) => {
                let ice = self.pc.ice_connection_state();
                // A close over a working path is the peer's doing (network trouble leaves
                // the channels open while ICE tries again).
                if label == CONTROL_LABEL
                    && self.opened
                    && !self.peer_closed
                    && matches!(
                        ice,
                        RtcIceConnectionState::Connected | RtcIceConnectionState::Completed
                    )
                {
                    self.peer_gone();
                }
            }
            Raw::Control(text) => {
                if text == BYE {
                    self.peer_gone();
                } else {
                    self.emit(ConnectionEvent::Control(text));
                }
            }
            Raw::IceState(state) => self.on_ice_state(state).await,
        }
    }

    fn peer_gone(&mut self) {
        if self.peer_closed {
            return;
        }
        self.peer_closed = true;
        self.restart = None;
        self.disconnected_since_ms = None;
        self.next_poll_ms = None;
        self.emit(ConnectionEvent::PeerClosed);
    }

    async fn on_ice_state(&mut self, state: RtcIceConnectionState) {
        if self.peer_closed {
            return;
        }
        match state {
            RtcIceConnectionState::Connected | RtcIceConnectionState::Completed => {
                self.disconnected_since_ms = None;
                self.check_restart_success();
            }
            RtcIceConnectionState::Disconnected if self.disconnected_since_ms.is_none() => {
                self.disconnected_since_ms = Some(now_ms());
            }
            RtcIceConnectionState::Failed if self.restart.is_none() => {
                self.begin_restart(IceRestartTrigger::Failed).await;
            }
            RtcIceConnectionState::Closed => self.done = true,
            _ => {}
        }
    }

    fn next_deadline(&self) -> Option<f64> {
        let mut d: Option<f64> = self.next_poll_ms;
        let mut min = |t: f64| d = Some(d.map_or(t, |x: f64| x.min(t)));
        if let Some(a) = self.restart {
            min(a.started_at_ms + f64::from(self.spec.tuning.restart_timeout_ms));
            min(now_ms() + RESTART_CHECK_MS);
        } else if let Some(since) = self.disconnected_since_ms {
            min(since + f64::from(self.spec.tuning.disconnect_grace_ms));
        }
        d
    }

    async fn on_timer(&mut self) {
        let now = now_ms();
        if self.next_poll_ms.is_some_and(|t| t <= now) {
            self.next_poll_ms = Some(now + f64::from(self.spec.tuning.quality_interval_ms));
            self.poll_quality().await;
            if std::mem::take(&mut self.recheck_info) {
                self.report_info(None).await;
            }
        }
        let now = now_ms();
        if let Some(a) = self.restart {
            self.check_restart_success();
            if self.restart.is_some()
                && now - a.started_at_ms >= f64::from(self.spec.tuning.restart_timeout_ms)
            {
                self.end_attempt(IceRestartOutcome::Failed);
                if self.attempts >= self.spec.tuning.max_restarts {
                    self.give_up();
                } else {
                    self.begin_restart(a.trigger).await;
                }
            }
        } else if self
            .disconnected_since_ms
            .is_some_and(|since| now - since >= f64::from(self.spec.tuning.disconnect_grace_ms))
        {
            self.disconnected_since_ms = None;
            self.begin_restart(IceRestartTrigger::Disconnected).await;
        }
    }

    async fn poll_quality(&mut self) {
        let pair = match stats::selected_pair(&self.pc).await {
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
        let change = self.quality.observe(rtt);
        {
            let mut s = self.shared.borrow_mut();
            s.obs.rtt_samples.push((at, rtt));
            s.obs.level = Some(self.quality.level());
            if let Some(level) = change {
                s.obs.quality_changes.push((at, level));
            }
        }
        if let Some(level) = change {
            log(&format!(
                "{}: quality {level:?} at {rtt:.1} ms",
                self.name()
            ));
            self.send(ClientMessage::P2pQuality(P2pQuality {
                game_id: self.spec.game_id.clone(),
                peer_subject_id: self.spec.peer_subject_id.clone(),
                level,
                rtt_ms: Some(rtt),
            }));
            self.emit(ConnectionEvent::Quality { level, rtt_ms: rtt });
        }
    }

    /// Reads the selected pair (retrying briefly while its candidates are not in the report
    /// yet) and sends `p2p_connection_type` when it is new.
    async fn report_info(&mut self, connect_ms: Option<f64>) {
        let mut info = None;
        for attempt in 0..INFO_ATTEMPTS {
            if attempt > 0 {
                TimeoutFuture::new(INFO_RETRY_MS).await;
            }
            match stats::selected_pair(&self.pc).await {
                Ok(Some(pair)) => {
                    info = pair.connection_info();
                    if info.is_some() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    warn(&format!("{}: {e}", self.name()));
                    return;
                }
            }
        }
        let Some(info) = info else {
            warn(&format!(
                "{}: no selected candidate pair in getStats",
                self.name()
            ));
            return;
        };
        let old = self.shared.borrow_mut().obs.info.replace(info);
        if old == Some(info) {
            return;
        }
        self.send(ClientMessage::P2pConnectionType(P2pConnectionType {
            game_id: self.spec.game_id.clone(),
            peer_subject_id: self.spec.peer_subject_id.clone(),
            info,
            connect_ms,
        }));
        self.emit(ConnectionEvent::Info(info));
    }

    async fn begin_restart(&mut self, trigger: IceRestartTrigger) {
        if self.peer_closed || self.done {
            return;
        }
        if self.attempts >= self.spec.tuning.max_restarts {
            self.give_up();
            return;
        }
        self.attempts += 1;
        let now = now_ms();
        let attempt = Attempt {
            number: self.attempts,
            trigger,
            started_at_ms: now,
            // Only the initiator sends a restart offer. The answering side cannot negotiate by
            // itself, and it may well have answered the initiator's restart offer before its
            // own grace ran out; its attempt succeeds as soon as ICE is connected again (which,
            // after `failed`, only an ICE restart can bring about).
            negotiated: !self.initiator,
        };
        self.restart = Some(attempt);
        self.shared.borrow_mut().obs.restarts.push(now);
        log(&format!(
            "{}: ICE restart {} ({trigger:?})",
            self.name(),
            attempt.number
        ));
        self.report_restart(attempt, IceRestartOutcome::Started, None);
        self.check_restart_success();
        if self.initiator {
            match self.offer(true).await {
                Ok(sdp) => self.signal(SignalType::Offer, Some(SignalPayload::Description { sdp })),
                Err(e) => warn(&format!("{}: restart offer failed: {e}", self.name())),
            }
        }
    }

    fn report_restart(&self, a: Attempt, outcome: IceRestartOutcome, duration_ms: Option<f64>) {
        self.send(ClientMessage::P2pIceRestart(P2pIceRestart {
            game_id: self.spec.game_id.clone(),
            peer_subject_id: self.spec.peer_subject_id.clone(),
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

    fn end_attempt(&mut self, outcome: IceRestartOutcome) {
        if let Some(a) = self.restart.take() {
            let took = now_ms() - a.started_at_ms;
            log(&format!(
                "{}: ICE restart {} {outcome:?} after {took:.1} ms",
                self.name(),
                a.number
            ));
            self.report_restart(a, outcome, Some(took));
        }
    }

    fn check_restart_success(&mut self) {
        let Some(a) = self.restart else {
            return;
        };
        let up = matches!(
            self.pc.ice_connection_state(),
            RtcIceConnectionState::Connected | RtcIceConnectionState::Completed
        );
        if a.negotiated && up {
            self.end_attempt(IceRestartOutcome::Succeeded);
            self.attempts = 0;
            self.disconnected_since_ms = None;
            // The pair may have changed: the next timer turn re-reads it.
            self.next_poll_ms = Some(now_ms());
            self.recheck_info = true;
        }
    }

    fn give_up(&mut self) {
        let attempts = self.attempts;
        warn(&format!(
            "{}: the connection failed for good after {attempts} ICE restarts",
            self.name()
        ));
        self.send(ClientMessage::P2pConnectionFailed(P2pConnectionFailed {
            game_id: self.spec.game_id.clone(),
            peer_subject_id: self.spec.peer_subject_id.clone(),
            attempts,
        }));
        self.emit(ConnectionEvent::Failed { attempts });
        self.done = true;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.channels.clear();
        {
            let mut s = self.shared.borrow_mut();
            s.inputs = None;
            s.control = None;
        }
        self.pc.set_onicecandidate(None);
        self.pc.set_oniceconnectionstatechange(None);
        self.pc.set_ondatachannel(None);
        self.pc.close();
        self.handlers = None;
    }
}
