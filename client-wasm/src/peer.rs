//! A WebRTC peer connection with one DataChannel, wrapped so that Rust owns everything the
//! browser calls back into.
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
//! - One DataChannel: created by the offerer ([`Peer::create_data_channel`]) or announced by
//!   the browser on the answerer's side (`ondatachannel`). An optional [`AutoReply`] answers
//!   incoming DataChannel messages synchronously inside `onmessage` (the probe echoes pings
//!   there, so the peer's RTT samples do not include this page's task scheduling).
//!
//! Every callback flows into async Rust through one `futures::channel::mpsc` receiver of
//! [`PeerEvent`]s. The [`Peer`] owns every `Closure` it hands to the browser (nothing is
//! leaked: probes are built and torn down again and again), and
//! [`Peer::close`] — or dropping the `Peer` — detaches the handlers, closes the DataChannel and
//! the connection, and frees the closures.

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::mpsc;
use futures::future::{self, LocalBoxFuture};
use js_sys::{Array, Reflect};
use pairlab_shared::{IceServer, SignalPayload};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Event, MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent,
    RtcDataChannelState, RtcIceCandidateInit, RtcIceServer, RtcIceTransportPolicy,
    RtcPeerConnection, RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcSdpType,
    RtcSessionDescriptionInit,
};

use crate::stats::{self, SelectedPair, StatsError};
use crate::util::{js_error_text, now_ms, warn};

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
}

/// Answers a DataChannel text message synchronously, inside `onmessage`: return the reply to
/// send at once, or `None` to pass the message on as a [`PeerEvent::ChannelMessage`].
pub type AutoReply = Rc<dyn Fn(&str) -> Option<String>>;

/// What the connection and its DataChannel report, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// A local ICE candidate to send to the other side now, in the wire shape of
    /// PROTOCOL.md's `ice_candidate` payload; `None` is the end of candidates.
    LocalCandidate(Option<SignalPayload>),
    /// `connectionState` changed (`new`, `connecting`, `connected`, `disconnected`, `failed`,
    /// `closed`).
    ConnectionState(RtcPeerConnectionState),
    /// The DataChannel is open.
    ChannelOpen,
    /// A text message arrived on the DataChannel (one the [`AutoReply`] did not answer).
    ChannelMessage {
        /// The message.
        text: String,
        /// `performance.now()` in the `onmessage` handler, ms.
        received_at_ms: f64,
    },
    /// The DataChannel closed (the other side closed it, or the connection went away).
    ChannelClosed,
    /// The DataChannel reported an error (e.g. an SCTP abort).
    ChannelError(String),
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
    /// There is no open DataChannel to send on.
    #[error("the DataChannel is not open")]
    ChannelNotOpen,
}

pub(crate) fn js_err(op: &'static str) -> impl Fn(JsValue) -> PeerError {
    move |e| PeerError::Js {
        op,
        detail: js_error_text(&e),
    }
}

/// The browser `RTCConfiguration` for `config`.
pub(crate) fn rtc_configuration(config: &PeerConfig) -> RtcConfiguration {
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

/// What a DataChannel's events do; each runs inside the browser's event callback.
pub(crate) struct ChannelCallbacks {
    /// The `open` event.
    pub(crate) on_open: Box<dyn FnMut()>,
    /// A text message, with its arrival time (`performance.now()`, ms, read first thing in
    /// the callback). Binary messages are not part of any pairlab exchange and are dropped.
    pub(crate) on_message: Box<dyn FnMut(String, f64)>,
    /// The `close` event.
    pub(crate) on_close: Box<dyn FnMut()>,
    /// The `error` event, with `RTCErrorEvent.error`'s text when there is one.
    pub(crate) on_error: Box<dyn FnMut(String)>,
}

/// A DataChannel with handlers attached; they are detached and the channel closed when this
/// is dropped, so the closures live exactly as long as the channel is in use (probes and
/// games build and drop channels again and again, and nothing is leaked).
/// Used by [`Peer`] and by the game connection.
///
/// `on_open` runs on the `open` event only. A channel announced through `ondatachannel` reads
/// "open" already, and its `open` event is dispatched right after that callback (W3C WebRTC
/// 1.0 §6.2, "announce the data channel as open"): attached inside the callback, as [`Peer`]
/// does, the event is never missed; attached later, as the game connection does from its
/// loop, the caller checks `readyState` itself. (Chromium 156 was seen to lose the answering
/// side's first message whether it went before or after this event; the probe copes, see
/// `crate::probe::wire::PingPacer`.)
pub(crate) struct AttachedChannel {
    /// The browser channel.
    pub(crate) dc: RtcDataChannel,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(Event)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl AttachedChannel {
    /// Attaches `callbacks` to `dc`.
    pub(crate) fn attach(dc: RtcDataChannel, callbacks: ChannelCallbacks) -> Self {
        let ChannelCallbacks {
            mut on_open,
            mut on_message,
            mut on_close,
            mut on_error,
        } = callbacks;
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| on_open());
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let received_at_ms = now_ms();
            if let Some(text) = ev.data().as_string() {
                on_message(text, received_at_ms);
            }
        });
        let on_close = Closure::<dyn FnMut(Event)>::new(move |_: Event| on_close());
        let on_error = Closure::<dyn FnMut(Event)>::new(move |ev: Event| {
            // RTCErrorEvent.error.message when present.
            let detail = Reflect::get(&ev, &JsValue::from_str("error"))
                .ok()
                .filter(|e| !e.is_undefined() && !e.is_null())
                .map(|e| js_error_text(&e))
                .unwrap_or_else(|| "DataChannel error".to_owned());
            on_error(detail);
        });
        dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        dc.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Self {
            dc,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
        }
    }
}

impl Drop for AttachedChannel {
    fn drop(&mut self) {
        self.dc.set_onopen(None);
        self.dc.set_onmessage(None);
        self.dc.set_onclose(None);
        self.dc.set_onerror(None);
        self.dc.close();
    }
}

/// The probe's channel: events into `tx`; pings answered by `auto_reply` inside `onmessage`.
fn attach_channel(
    dc: RtcDataChannel,
    tx: &mpsc::UnboundedSender<PeerEvent>,
    auto_reply: Option<AutoReply>,
) -> AttachedChannel {
    let reply_dc = dc.clone();
    let (open_tx, message_tx, close_tx, error_tx) =
        (tx.clone(), tx.clone(), tx.clone(), tx.clone());
    AttachedChannel::attach(
        dc,
        ChannelCallbacks {
            on_open: Box::new(move || {
                let _ = open_tx.unbounded_send(PeerEvent::ChannelOpen);
            }),
            on_message: Box::new(move |text, received_at_ms| {
                if let Some(reply) = auto_reply.as_ref().and_then(|f| f(&text)) {
                    if let Err(e) = reply_dc.send_with_str(&reply) {
                        warn(&format!("DataChannel reply failed: {}", js_error_text(&e)));
                    }
                    return;
                }
                let _ = message_tx.unbounded_send(PeerEvent::ChannelMessage {
                    text,
                    received_at_ms,
                });
            }),
            on_close: Box::new(move || {
                let _ = close_tx.unbounded_send(PeerEvent::ChannelClosed);
            }),
            on_error: Box::new(move |detail| {
                let _ = error_tx.unbounded_send(PeerEvent::ChannelError(detail));
            }),
        },
    )
}

/// The connection-level handlers; dropped on close.
struct Handlers {
    _on_ice_candidate: Closure<dyn FnMut(RtcPeerConnectionIceEvent)>,
    _on_connection_state: Closure<dyn FnMut(Event)>,
    _on_data_channel: Closure<dyn FnMut(RtcDataChannelEvent)>,
}

/// A buffered remote candidate (`None`: end of candidates).
type RemoteCandidate = Option<RtcIceCandidateInit>;

/// The outcome of one `addIceCandidate` call that has been made already
/// ([`Peer::add_remote_candidate`]). Dropping it loses only the outcome.
pub type CandidateAdded = LocalBoxFuture<'static, Result<(), PeerError>>;

/// One `RTCPeerConnection` with at most one DataChannel. See the module docs.
pub struct Peer {
    pc: RtcPeerConnection,
    channel: Rc<RefCell<Option<AttachedChannel>>>,
    handlers: Option<Handlers>,
    events_tx: mpsc::UnboundedSender<PeerEvent>,
    auto_reply: Option<AutoReply>,
    remote_description_set: bool,
    pending: Vec<RemoteCandidate>,
    closed: bool,
}

impl Peer {
    /// Creates the connection (no network activity yet) and returns it with the receiver of
    /// its events. `auto_reply`, when given, answers DataChannel messages inside `onmessage`.
    ///
    /// # Errors
    /// [`PeerError::Create`] when the browser refuses the configuration.
    pub fn new(
        config: &PeerConfig,
        auto_reply: Option<AutoReply>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<PeerEvent>), PeerError> {
        let pc = RtcPeerConnection::new_with_configuration(&rtc_configuration(config))
            .map_err(|e| PeerError::Create(js_error_text(&e)))?;
        let (tx, rx) = mpsc::unbounded();
        let channel: Rc<RefCell<Option<AttachedChannel>>> = Rc::new(RefCell::new(None));

        let on_ice_candidate = {
            let tx = tx.clone();
            Closure::<dyn FnMut(RtcPeerConnectionIceEvent)>::new(
                move |ev: RtcPeerConnectionIceEvent| {
                    if let Some(payload) = candidate_signal(&ev) {
                        let _ = tx.unbounded_send(PeerEvent::LocalCandidate(payload));
                    }
                },
            )
        };
        let on_connection_state = {
            let tx = tx.clone();
            let pc = pc.clone();
            Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                let _ = tx.unbounded_send(PeerEvent::ConnectionState(pc.connection_state()));
            })
        };
        let on_data_channel = {
            let tx = tx.clone();
            let slot = Rc::clone(&channel);
            let auto_reply = auto_reply.clone();
            Closure::<dyn FnMut(RtcDataChannelEvent)>::new(move |ev: RtcDataChannelEvent| {
                let dc = ev.channel();
                let Ok(mut slot) = slot.try_borrow_mut() else {
                    dc.close();
                    return;
                };
                if slot.is_some() {
                    // One channel per peer: a second one is not part of any pairlab exchange.
                    dc.close();
                    return;
                }
                *slot = Some(attach_channel(dc, &tx, auto_reply.clone()));
            })
        };
        pc.set_onicecandidate(Some(on_ice_candidate.as_ref().unchecked_ref()));
        pc.set_onconnectionstatechange(Some(on_connection_state.as_ref().unchecked_ref()));
        pc.set_ondatachannel(Some(on_data_channel.as_ref().unchecked_ref()));

        Ok((
            Self {
                pc,
                channel,
                handlers: Some(Handlers {
                    _on_ice_candidate: on_ice_candidate,
                    _on_connection_state: on_connection_state,
                    _on_data_channel: on_data_channel,
                }),
                events_tx: tx,
                auto_reply,
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

    /// Creates the DataChannel (offerer side; before [`Peer::create_offer`], so the offer
    /// carries the SCTP m-line). Reliable and ordered, the default.
    ///
    /// # Errors
    /// [`PeerError::Closed`] after close.
    pub fn create_data_channel(&mut self, label: &str) -> Result<(), PeerError> {
        self.check_open()?;
        let dc = self.pc.create_data_channel(label);
        let old = self.channel.borrow_mut().replace(attach_channel(
            dc,
            &self.events_tx,
            self.auto_reply.clone(),
        ));
        drop(old);
        Ok(())
    }

    /// `createOffer` + `setLocalDescription`; returns the offer's SDP to send. ICE gathering
    /// starts here, and candidates trickle out as [`PeerEvent::LocalCandidate`].
    ///
    /// # Errors
    /// [`PeerError::Js`] when the browser rejects a step; [`PeerError::Closed`] after close.
    pub async fn create_offer(&mut self) -> Result<String, PeerError> {
        self.check_open()?;
        let offer = JsFuture::from(self.pc.create_offer())
            .await
            .map_err(js_err("createOffer"))?;
        let sdp = sdp_of(&offer, "createOffer")?;
        self.set_local(RtcSdpType::Offer, &sdp).await?;
        Ok(sdp)
    }

    /// Takes the other side's offer (`setRemoteDescription`, then the buffered candidates),
    /// and answers it (`createAnswer` + `setLocalDescription`); returns the answer's SDP.
    ///
    /// # Errors
    /// [`PeerError::Js`] when the browser rejects a step; [`PeerError::Closed`] after close.
    pub async fn accept_offer(&mut self, sdp: &str) -> Result<String, PeerError> {
        self.check_open()?;
        self.set_remote(RtcSdpType::Offer, sdp).await?;
        let answer = JsFuture::from(self.pc.create_answer())
            .await
            .map_err(js_err("createAnswer"))?;
        let answer_sdp = sdp_of(&answer, "createAnswer")?;
        self.set_local(RtcSdpType::Answer, &answer_sdp).await?;
        Ok(answer_sdp)
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

    async fn set_local(&self, kind: RtcSdpType, sdp: &str) -> Result<(), PeerError> {
        set_local_description(&self.pc, kind, sdp).await
    }

    async fn set_remote(&mut self, kind: RtcSdpType, sdp: &str) -> Result<(), PeerError> {
        set_remote_description(&self.pc, kind, sdp).await?;
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

    /// Whether the DataChannel is open now.
    pub fn is_channel_open(&self) -> bool {
        self.channel
            .borrow()
            .as_ref()
            .is_some_and(|c| c.dc.ready_state() == RtcDataChannelState::Open)
    }

    /// Sends a text message on the DataChannel.
    ///
    /// # Errors
    /// [`PeerError::ChannelNotOpen`] without an open channel; [`PeerError::Js`] when `send`
    /// throws.
    pub fn send(&self, text: &str) -> Result<(), PeerError> {
        self.check_open()?;
        let slot = self.channel.borrow();
        let dc = match slot.as_ref() {
            Some(c) if c.dc.ready_state() == RtcDataChannelState::Open => &c.dc,
            _ => return Err(PeerError::ChannelNotOpen),
        };
        dc.send_with_str(text)
            .map_err(js_err("RTCDataChannel.send"))
    }

    /// The selected candidate pair from `getStats()`; see [`stats::selected_pair`].
    ///
    /// # Errors
    /// [`StatsError`] when `getStats` fails.
    pub async fn selected_pair(&self) -> Result<Option<SelectedPair>, StatsError> {
        stats::selected_pair(&self.pc).await
    }

    /// The browser object (tests check its `connectionState` after close).
    pub fn raw(&self) -> &RtcPeerConnection {
        &self.pc
    }

    /// Whether [`Peer::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Detaches every handler, closes the DataChannel and the connection, and frees the
    /// closures. Idempotent; also run by `Drop`.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.pending.clear();
        let channel = self.channel.borrow_mut().take();
        drop(channel);
        self.pc.set_onicecandidate(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.set_ondatachannel(None);
        self.pc.close();
        self.handlers = None;
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.close();
    }
}

/// The `sdp` field of what `createOffer`/`createAnswer` resolved to.
/// `setLocalDescription` with an SDP of `kind`.
///
/// # Errors
/// [`PeerError::Js`] when the browser rejects it.
pub(crate) async fn set_local_description(
    pc: &RtcPeerConnection,
    kind: RtcSdpType,
    sdp: &str,
) -> Result<(), PeerError> {
    JsFuture::from(pc.set_local_description(&description(kind, sdp)))
        .await
        .map(drop)
        .map_err(js_err("setLocalDescription"))
}

/// `setRemoteDescription` with an SDP of `kind`.
///
/// # Errors
/// [`PeerError::Js`] when the browser rejects it.
pub(crate) async fn set_remote_description(
    pc: &RtcPeerConnection,
    kind: RtcSdpType,
    sdp: &str,
) -> Result<(), PeerError> {
    JsFuture::from(pc.set_remote_description(&description(kind, sdp)))
        .await
        .map(drop)
        .map_err(js_err("setRemoteDescription"))
}

/// An `RTCSessionDescriptionInit` of `kind` carrying `sdp`.
fn description(kind: RtcSdpType, sdp: &str) -> RtcSessionDescriptionInit {
    let desc = RtcSessionDescriptionInit::new(kind);
    desc.set_sdp(sdp);
    desc
}

/// The browser's `RTCIceCandidateInit` for a remote candidate signal; `None` (end of
/// candidates) for `None` or a payload that is not a candidate.
pub(crate) fn remote_candidate_init(
    payload: Option<&SignalPayload>,
) -> Option<RtcIceCandidateInit> {
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

pub(crate) fn sdp_of(desc: &JsValue, op: &'static str) -> Result<String, PeerError> {
    Reflect::get(desc, &JsValue::from_str("sdp"))
        .ok()
        .and_then(|v| v.as_string())
        .ok_or(PeerError::Missing { op, field: "sdp" })
}

/// What to signal for an `icecandidate` event: `Some(Some(candidate))` for a candidate,
/// `Some(None)` for the end of candidates (the `null` candidate), `None` for nothing (some
/// browsers mark the end of a generation with an empty candidate; the `null` event that follows
/// is the end we report).
pub(crate) fn candidate_signal(ev: &RtcPeerConnectionIceEvent) -> Option<Option<SignalPayload>> {
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
