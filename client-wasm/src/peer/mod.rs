//! The one wrapper of a WebRTC peer connection, used by the probes and by the game: Rust
//! owns everything the browser calls back into.
//!
//! [`Peer`] wraps an `RTCPeerConnection` (W3C WebRTC 1.0):
//! - ICE servers come from the server's message (`urls`, `username`, `credential`: the shape
//!   of `RTCIceServer`); `relay_only` sets `iceTransportPolicy: "relay"` (TURN only).
//! - Trickle ICE (RFC 8838): every local candidate is reported as a
//!   [`PeerEvent::LocalCandidate`] as soon as the browser gathers it, to be sent to the other
//!   side at once; nobody waits for gathering to complete (that costs ~125 ms on loopback).
//!   `None` is the end of candidates.
//! - Remote candidates that arrive before the remote description is set are buffered and
//!   added right after it is set (`addIceCandidate` needs a remote description).
//! - Offer/answer, and the ICE restart offer (RFC 8445 §2.4, `restartIce()`).
//! - `connectionState` and `iceConnectionState` changes, as events.
//! - Several DataChannels, one per label ([`channel`]): created by the offerer
//!   ([`Peer::create_data_channel`]) or announced by the browser on the answerer's side
//!   (`ondatachannel`, accepted per [`PeerConfig::announced`]). An optional [`MessageHook`]
//!   sees every incoming message first, inside `onmessage`.
//! - `getStats()` → the selected candidate pair ([`stats`]).
//!
//! Every callback flows into async Rust through one `futures::channel::mpsc` receiver of
//! [`PeerEvent`]s. Every browser listener is a `gloo_events::EventListener` owned by the
//! [`Peer`] or its channels, removed when dropped (nothing is leaked: probes are built and
//! torn down again and again), and [`Peer::close`] — or dropping the `Peer` — removes the
//! listeners, closes the DataChannels and the connection.

pub mod channel;
pub mod stats;

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::mpsc;
use futures::future::{self, LocalBoxFuture};
use gloo_events::EventListener;
use js_sys::{Array, Function, Promise, Reflect};
use pairlab_shared::{IceServer, SignalPayload};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    RtcConfiguration, RtcDataChannelEvent, RtcDataChannelInit, RtcIceCandidateInit,
    RtcIceConnectionState, RtcIceServer, RtcIceTransportPolicy, RtcOfferOptions, RtcPeerConnection,
    RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcSdpType, RtcSessionDescriptionInit,
};

use channel::HookSlot;
pub use channel::{ChannelData, Channels, Hooked, MessageHook};
use stats::{SelectedPair, StatsError};

use crate::util::{js_error_text, warn};

/// Which DataChannels the other side may announce (`ondatachannel`); any other is closed at
/// once, as is a second channel with a label already in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Announced {
    /// Any label.
    #[default]
    Any,
    /// Only these labels.
    Only(&'static [&'static str]),
}

impl Announced {
    fn accepts(self, label: &str) -> bool {
        match self {
            Announced::Any => true,
            Announced::Only(labels) => labels.contains(&label),
        }
    }
}

/// How a [`Peer`] connects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerConfig {
    /// STUN/TURN servers, as the server sent them. Empty: host candidates only.
    pub ice_servers: Vec<IceServer>,
    /// Only relayed (TURN) candidates: `iceTransportPolicy: "relay"` (W3C WebRTC 1.0 §4.2.1).
    pub relay_only: bool,
    /// `iceCandidatePoolSize` (W3C WebRTC 1.0 §4.2.1, RFC 8829 §3.5.4): how many ICE
    /// candidate sets the browser gathers as soon as the connection exists, before any offer.
    /// `1` starts host, STUN and TURN gathering (the TURN allocation is the slow part,
    /// ~1 RTT to the TURN server + its own work) while signalling is still going on; `0`, the
    /// browser's default, gathers only at `setLocalDescription`.
    pub ice_candidate_pool_size: u8,
    /// The DataChannels the answering side takes from the other side.
    pub announced: Announced,
}

/// How a DataChannel delivers (W3C WebRTC 1.0 §6.1, `RTCDataChannelInit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Reliable and ordered, the default.
    Reliable,
    /// `ordered: false` with `maxRetransmits`: a message may be lost or overtaken.
    Unordered {
        /// How often a lost message is sent again (`0`: never).
        max_retransmits: u16,
    },
}

/// What the connection and its DataChannels report, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// A local ICE candidate to send to the other side now, in the wire shape of
    /// PROTOCOL.md's `ice_candidate` payload; `None` is the end of candidates.
    LocalCandidate(Option<SignalPayload>),
    /// `connectionState` changed (`new`, `connecting`, `connected`, `disconnected`, `failed`,
    /// `closed`).
    ConnectionState(RtcPeerConnectionState),
    /// `iceConnectionState` changed (`new`, `checking`, `connected`, `completed`,
    /// `disconnected`, `failed`, `closed`).
    IceConnectionState(RtcIceConnectionState),
    /// A DataChannel is open.
    ChannelOpen {
        /// The channel's label.
        label: String,
    },
    /// A text message arrived on a DataChannel (one the [`MessageHook`] passed on).
    ChannelMessage {
        /// The channel's label.
        label: String,
        /// The message.
        text: String,
        /// `performance.now()` in the `onmessage` handler, ms.
        received_at_ms: f64,
    },
    /// A binary message arrived on a DataChannel (one the [`MessageHook`] passed on).
    ChannelBinary {
        /// The channel's label.
        label: String,
        /// The message's bytes.
        bytes: Vec<u8>,
        /// `performance.now()` in the `onmessage` handler, ms.
        received_at_ms: f64,
    },
    /// A DataChannel closed (the other side closed it, or the connection went away).
    ChannelClosed {
        /// The channel's label.
        label: String,
    },
    /// A DataChannel reported an error (e.g. an SCTP abort).
    ChannelError {
        /// The channel's label.
        label: String,
        /// `RTCErrorEvent.error`'s text, when there is one.
        detail: String,
    },
}

/// Why a [`Peer`] operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// `new RTCPeerConnection(config)` threw (e.g. a malformed ICE server URL).
    #[error("could not create the RTCPeerConnection: {0}")]
    Create(String),
    /// A WebRTC call threw or its promise was rejected.
    #[error("{op} failed: {detail}")]
    Js {
        /// The call, e.g. `createOffer`.
        op: &'static str,
        /// The browser's message.
        detail: String,
    },
    /// The browser returned something without the expected field.
    #[error("{op} returned no {field}")]
    Missing {
        /// The call.
        op: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// The peer was closed.
    #[error("the peer connection is closed")]
    Closed,
    /// There is no open DataChannel with that label to send on.
    #[error("the DataChannel is not open")]
    ChannelNotOpen,
}

/// Turns a JavaScript exception of the call `op` into a [`PeerError::Js`].
fn js_err(op: &'static str) -> impl Fn(JsValue) -> PeerError {
    move |e| PeerError::Js {
        op,
        detail: js_error_text(&e),
    }
}

/// A buffered remote candidate (`None`: end of candidates).
type RemoteCandidate = Option<RtcIceCandidateInit>;

/// The outcome of one `addIceCandidate` call that has been made already
/// ([`Peer::add_remote_candidate`]). Dropping it loses only the outcome.
pub type CandidateAdded = LocalBoxFuture<'static, Result<(), PeerError>>;

/// One `RTCPeerConnection` with its DataChannels. See the module docs.
pub struct Peer {
    pc: RtcPeerConnection,
    channels: Channels,
    /// The connection-level listeners; emptied on close.
    listeners: Vec<EventListener>,
    events_tx: mpsc::UnboundedSender<PeerEvent>,
    hook: HookSlot,
    remote_description_set: bool,
    pending: Vec<RemoteCandidate>,
    closed: bool,
}

impl Peer {
    /// Creates the connection (no network activity yet) and returns it with the receiver of
    /// its events. `hook`, when given, sees every DataChannel message first.
    ///
    /// # Errors
    /// [`PeerError::Create`] when the browser refuses the configuration.
    pub fn new(
        config: &PeerConfig,
        hook: Option<MessageHook>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<PeerEvent>), PeerError> {
        let pc = RtcPeerConnection::new_with_configuration(&rtc_configuration(config))
            .map_err(|e| PeerError::Create(js_error_text(&e)))?;
        let (tx, rx) = mpsc::unbounded();
        let channels = Channels::default();
        let hook: HookSlot = Rc::new(RefCell::new(hook));

        let on_ice_candidate = {
            let tx = tx.clone();
            EventListener::new(&pc, "icecandidate", move |ev| {
                if let Some(payload) = candidate_signal(ev.unchecked_ref()) {
                    let _ = tx.unbounded_send(PeerEvent::LocalCandidate(payload));
                }
            })
        };
        let on_connection_state = {
            let (tx, pc_ref) = (tx.clone(), pc.clone());
            EventListener::new(&pc, "connectionstatechange", move |_| {
                let _ = tx.unbounded_send(PeerEvent::ConnectionState(pc_ref.connection_state()));
            })
        };
        let on_ice_state = {
            let (tx, pc_ref) = (tx.clone(), pc.clone());
            EventListener::new(&pc, "iceconnectionstatechange", move |_| {
                let state = pc_ref.ice_connection_state();
                let _ = tx.unbounded_send(PeerEvent::IceConnectionState(state));
            })
        };
        let on_data_channel = {
            let (tx, channels, hook) = (tx.clone(), channels.clone(), hook.clone());
            let announced = config.announced;
            EventListener::new(&pc, "datachannel", move |ev| {
                let dc = ev.unchecked_ref::<RtcDataChannelEvent>().channel();
                if announced.accepts(&dc.label()) {
                    channels.adopt(dc, &tx, Rc::clone(&hook));
                } else {
                    dc.close();
                }
            })
        };

        Ok((
            Self {
                pc,
                channels,
                listeners: vec![
                    on_ice_candidate,
                    on_connection_state,
                    on_ice_state,
                    on_data_channel,
                ],
                events_tx: tx,
                hook,
                remote_description_set: false,
                pending: Vec::new(),
                closed: false,
            },
            rx,
        ))
    }

    fn check_open(&self) -> Result<(), PeerError> {
        if self.closed {
            Err(PeerError::Closed)
        } else {
            Ok(())
        }
    }

    /// Creates a DataChannel labelled `label` (offerer side; before [`Peer::create_offer`],
    /// so the offer carries the SCTP m-line). A channel with that label already there is
    /// kept, and the new one closed.
    ///
    /// # Errors
    /// [`PeerError::Closed`] after close.
    pub fn create_data_channel(
        &mut self,
        label: &str,
        delivery: Delivery,
    ) -> Result<(), PeerError> {
        self.check_open()?;
        let dc = match delivery {
            Delivery::Reliable => self.pc.create_data_channel(label),
            Delivery::Unordered { max_retransmits } => {
                let init = RtcDataChannelInit::new();
                init.set_ordered(false);
                init.set_max_retransmits(max_retransmits);
                self.pc
                    .create_data_channel_with_data_channel_dict(label, &init)
            }
        };
        self.channels
            .adopt(dc, &self.events_tx, Rc::clone(&self.hook));
        Ok(())
    }

    /// Creates a negotiated DataChannel (W3C WebRTC 1.0 §6.2, `negotiated: true` with a fixed
    /// SCTP stream `id`): both sides create it with the same label, delivery and id, before or
    /// after the offer, and it opens with the SCTP association, without an in-band
    /// announcement (no `ondatachannel`). A channel with that label already there is kept,
    /// and the new one closed.
    ///
    /// # Errors
    /// [`PeerError::Closed`] after close; [`PeerError::Js`] when the browser refuses the id.
    pub fn create_negotiated_channel(
        &mut self,
        label: &str,
        delivery: Delivery,
        id: u16,
    ) -> Result<(), PeerError> {
        self.check_open()?;
        let init = RtcDataChannelInit::new();
        init.set_negotiated(true);
        init.set_id(id);
        if let Delivery::Unordered { max_retransmits } = delivery {
            init.set_ordered(false);
            init.set_max_retransmits(max_retransmits);
        }
        // `createDataChannel` throws for a negotiated id out of range or in use.
        let create = Reflect::get(&self.pc, &JsValue::from_str("createDataChannel"))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or(PeerError::Missing {
                op: "RTCPeerConnection",
                field: "createDataChannel",
            })?;
        let dc = create
            .call2(&self.pc, &JsValue::from_str(label), &init)
            .map_err(js_err("createDataChannel"))?
            .unchecked_into();
        self.channels
            .adopt(dc, &self.events_tx, Rc::clone(&self.hook));
        Ok(())
    }

    /// Replaces the [`MessageHook`] that every DataChannel's messages meet first, for the
    /// channels there now and those to come (`None`: every message is passed on as an event).
    pub fn set_hook(&self, hook: Option<MessageHook>) {
        *self.hook.borrow_mut() = hook;
    }

    /// `createOffer` + `setLocalDescription`; returns the offer's SDP to send. ICE gathering
    /// starts here, and candidates trickle out as [`PeerEvent::LocalCandidate`].
    ///
    /// # Errors
    /// [`PeerError::Js`] when the browser rejects a step; [`PeerError::Closed`] after close.
    pub async fn create_offer(&mut self) -> Result<String, PeerError> {
        self.offer(false).await
    }

    /// An ICE restart offer (RFC 8445 §2.4): `restartIce()` where the browser has it (it marks
    /// the next offer as a restart), and `createOffer({iceRestart: true})`, which does the
    /// same in older browsers; then `setLocalDescription`. Returns the offer's SDP.
    ///
    /// # Errors
    /// As [`Peer::create_offer`].
    pub async fn create_restart_offer(&mut self) -> Result<String, PeerError> {
        self.offer(true).await
    }

    async fn offer(&mut self, ice_restart: bool) -> Result<String, PeerError> {
        self.check_open()?;
        let promise = if ice_restart {
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
        self.set_local_from(promise, "createOffer", RtcSdpType::Offer)
            .await
    }

    /// Takes the other side's offer (`setRemoteDescription`, then the buffered candidates),
    /// and answers it (`createAnswer` + `setLocalDescription`); returns the answer's SDP.
    ///
    /// # Errors
    /// [`PeerError::Js`] when the browser rejects a step; [`PeerError::Closed`] after close.
    pub async fn accept_offer(&mut self, sdp: &str) -> Result<String, PeerError> {
        self.check_open()?;
        self.set_remote(RtcSdpType::Offer, sdp).await?;
        self.set_local_from(self.pc.create_answer(), "createAnswer", RtcSdpType::Answer)
            .await
    }

    /// Awaits the description that `created` (the promise of `createOffer` or
    /// `createAnswer`, named `op`) resolves to, and sets it as the local description of
    /// `kind`; returns its SDP.
    async fn set_local_from(
        &self,
        created: Promise,
        op: &'static str,
        kind: RtcSdpType,
    ) -> Result<String, PeerError> {
        let desc = JsFuture::from(created).await.map_err(js_err(op))?;
        let sdp = sdp_of(&desc, op)?;
        self.set_description(Side::Local, kind, &sdp).await?;
        Ok(sdp)
    }

    /// Takes the other side's answer (`setRemoteDescription`, then the buffered candidates).
    ///
    /// # Errors
    /// [`PeerError::Js`] when the browser rejects it; [`PeerError::Closed`] after close.
    pub async fn accept_answer(&mut self, sdp: &str) -> Result<(), PeerError> {
        self.check_open()?;
        self.set_remote(RtcSdpType::Answer, sdp).await
    }

    /// Adds a remote ICE candidate, or buffers it until the remote description is set.
    /// `None` (or a payload that is not a candidate) is the end of candidates.
    ///
    /// The browser call is made before this returns (its operations chain keeps candidates
    /// in order, W3C WebRTC 1.0 §4.4.1.2); the returned [`CandidateAdded`] only reports its
    /// outcome. A caller with other work, such as a probe's event loop, can poll it alongside
    /// instead of waiting on it, so a slow or never-settling `addIceCandidate` promise cannot
    /// hold up the measurement.
    ///
    /// # Errors
    /// [`PeerError::Closed`] after close. The returned future resolves to [`PeerError::Js`]
    /// when the browser rejects the candidate (the connection may still succeed through
    /// others).
    pub fn add_remote_candidate(
        &mut self,
        payload: Option<&SignalPayload>,
    ) -> Result<CandidateAdded, PeerError> {
        self.check_open()?;
        let init = remote_candidate_init(payload);
        if !self.remote_description_set {
            self.pending.push(init);
            return Ok(Box::pin(future::ready(Ok(()))));
        }
        Ok(self.add_candidate_now(init))
    }

    /// How many remote candidates wait for the remote description.
    pub fn pending_candidates(&self) -> usize {
        self.pending.len()
    }

    /// Whether the remote description has been set.
    pub fn has_remote_description(&self) -> bool {
        self.remote_description_set
    }

    /// Calls `addIceCandidate` now; the future reports the browser's answer.
    fn add_candidate_now(&self, init: RemoteCandidate) -> CandidateAdded {
        let end_of_candidates = init.is_none();
        let promise = JsFuture::from(
            self.pc
                .add_ice_candidate_with_opt_rtc_ice_candidate_init(init.as_ref()),
        );
        Box::pin(async move {
            match promise.await {
                Ok(_) => Ok(()),
                // End of candidates is a hint; browsers differ in how they take it, so a
                // refusal does not matter.
                Err(_) if end_of_candidates => Ok(()),
                Err(e) => Err(js_err("addIceCandidate")(e)),
            }
        })
    }

    /// `setLocalDescription` / `setRemoteDescription` with an SDP of `kind`.
    async fn set_description(
        &self,
        side: Side,
        kind: RtcSdpType,
        sdp: &str,
    ) -> Result<(), PeerError> {
        let desc = RtcSessionDescriptionInit::new(kind);
        desc.set_sdp(sdp);
        let (promise, op) = match side {
            Side::Local => (self.pc.set_local_description(&desc), "setLocalDescription"),
            Side::Remote => (
                self.pc.set_remote_description(&desc),
                "setRemoteDescription",
            ),
        };
        JsFuture::from(promise).await.map(drop).map_err(js_err(op))
    }

    async fn set_remote(&mut self, kind: RtcSdpType, sdp: &str) -> Result<(), PeerError> {
        self.set_description(Side::Remote, kind, sdp).await?;
        self.remote_description_set = true;
        // Every buffered candidate goes to the browser at once, in order; then their answers.
        let adds: Vec<CandidateAdded> = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|init| self.add_candidate_now(init))
            .collect();
        for outcome in future::join_all(adds).await {
            if let Err(e) = outcome {
                warn(&format!("a buffered remote candidate was refused: {e}"));
            }
        }
        Ok(())
    }

    /// The DataChannels, as a handle that can send from elsewhere (e.g. from the game loop
    /// while the connection's own task owns the `Peer`).
    pub fn channels(&self) -> Channels {
        self.channels.clone()
    }

    /// Whether the DataChannel labelled `label` is open now.
    pub fn is_channel_open(&self, label: &str) -> bool {
        self.channels.is_open(label)
    }

    /// Sends a text message on the DataChannel labelled `label`.
    ///
    /// # Errors
    /// [`PeerError::Closed`] after close; [`PeerError::ChannelNotOpen`] without that open
    /// channel; [`PeerError::Js`] when `send` throws.
    pub fn send(&self, label: &str, text: &str) -> Result<(), PeerError> {
        self.check_open()?;
        self.channels.send(label, text)
    }

    /// `iceConnectionState` now.
    pub fn ice_connection_state(&self) -> RtcIceConnectionState {
        self.pc.ice_connection_state()
    }

    /// The selected candidate pair from `getStats()`; see [`stats::selected_pair`].
    ///
    /// # Errors
    /// [`StatsError`] when `getStats` fails.
    pub async fn selected_pair(&self) -> Result<Option<SelectedPair>, StatsError> {
        stats::selected_pair(&self.pc).await
    }

    /// The selected candidate pair once it is what `want` asks for (right after the channels
    /// open, its candidates or its RTT may not be in the report yet): `getStats()` up to
    /// `attempts` times, `retry_ms` apart; `Ok(None)` when no read had it.
    ///
    /// # Errors
    /// [`StatsError`] as soon as one `getStats` fails.
    pub async fn selected_pair_where(
        &self,
        attempts: u32,
        retry_ms: u32,
        want: impl Fn(&SelectedPair) -> bool,
    ) -> Result<Option<SelectedPair>, StatsError> {
        stats::selected_pair_where(&self.pc, attempts, retry_ms, want).await
    }

    /// The browser object (tests check its `connectionState` after close).
    pub fn raw(&self) -> &RtcPeerConnection {
        &self.pc
    }

    /// Whether [`Peer::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Removes every listener, closes the DataChannels and the connection. Idempotent; also
    /// run by `Drop`.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.pending.clear();
        self.channels.clear();
        self.listeners.clear();
        self.pc.close();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Which description [`Peer::set_description`] sets.
#[derive(Debug, Clone, Copy)]
enum Side {
    Local,
    Remote,
}

/// The browser `RTCConfiguration` for `config`.
fn rtc_configuration(config: &PeerConfig) -> RtcConfiguration {
    let servers = Array::new();
    for s in &config.ice_servers {
        let server = RtcIceServer::new();
        let urls: Array = s.urls.iter().map(|u| JsValue::from_str(u)).collect();
        server.set_urls(&urls);
        if let Some(user) = &s.username {
            server.set_username(user);
        }
        if let Some(cred) = &s.credential {
            server.set_credential(cred);
        }
        servers.push(&server);
    }
    let rtc = RtcConfiguration::new();
    rtc.set_ice_servers(&servers);
    if config.relay_only {
        rtc.set_ice_transport_policy(RtcIceTransportPolicy::Relay);
    }
    if config.ice_candidate_pool_size > 0 {
        // web-sys has no setter for this member; the dictionary is a plain object. Setting a
        // property on a fresh object cannot fail, and a browser that does not know the member
        // ignores it (WebIDL dictionaries skip unknown keys).
        let _ = Reflect::set(
            &rtc,
            &JsValue::from_str("iceCandidatePoolSize"),
            &JsValue::from(config.ice_candidate_pool_size),
        );
    }
    rtc
}

/// The browser's `RTCIceCandidateInit` for a remote candidate signal; `None` (end of
/// candidates) for `None` or a payload that is not a candidate.
fn remote_candidate_init(payload: Option<&SignalPayload>) -> Option<RtcIceCandidateInit> {
    match payload {
        Some(SignalPayload::Candidate {
            candidate,
            sdp_mid,
            sdp_m_line_index,
        }) => {
            let init = RtcIceCandidateInit::new(candidate);
            init.set_sdp_mid(sdp_mid.as_deref());
            init.set_sdp_m_line_index(*sdp_m_line_index);
            Some(init)
        }
        _ => None,
    }
}

/// The `sdp` field of what `createOffer`/`createAnswer` resolved to.
fn sdp_of(desc: &JsValue, op: &'static str) -> Result<String, PeerError> {
    Reflect::get(desc, &JsValue::from_str("sdp"))
        .ok()
        .and_then(|v| v.as_string())
        .ok_or(PeerError::Missing { op, field: "sdp" })
}

/// What to signal for an `icecandidate` event: `Some(Some(candidate))` for a candidate,
/// `Some(None)` for the end of candidates (the `null` candidate), `None` for nothing (some
/// browsers mark the end of a generation with an empty candidate; the `null` event that follows
/// is the end we report).
fn candidate_signal(ev: &RtcPeerConnectionIceEvent) -> Option<Option<SignalPayload>> {
    match ev.candidate() {
        None => Some(None),
        Some(c) if c.candidate().is_empty() => None,
        Some(c) => Some(Some(SignalPayload::Candidate {
            candidate: c.candidate(),
            sdp_mid: c.sdp_mid(),
            sdp_m_line_index: c.sdp_m_line_index(),
        })),
    }
}
