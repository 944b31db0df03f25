//! The DataChannels of a [`Peer`](super::Peer): each one's browser listeners, owned and
//! removed when the channel is dropped, and [`Channels`], the handle that sends on them.
//!
//! A channel reports `open`, `message`, `close` and `error` into its peer's event stream as
//! [`PeerEvent`]s, labelled. A [`MessageHook`] sees every message first (text, or binary as
//! [`ChannelData::Binary`]; `binaryType` is `arraybuffer`), inside the browser's `message`
//! event: the probe answers pings there (so the other side's RTT samples do not include this
//! page's task scheduling), and the game decodes its frames there
//! ([`crate::game::framing`]) and hands them straight to the game (no extra hop through the
//! connection's own loop for the time-critical channel).

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::mpsc;
use gloo_events::EventListener;
use js_sys::{ArrayBuffer, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{MessageEvent, RtcDataChannel, RtcDataChannelState, RtcDataChannelType};

use super::{js_err, PeerError, PeerEvent};
use crate::util::{js_error_text, now_ms, warn};

/// One DataChannel message as it came: a text frame or a binary one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelData {
    /// A text frame (`send(string)`).
    Text(String),
    /// A binary frame (`send(ArrayBuffer)`), its bytes.
    Binary(Vec<u8>),
}

/// What a [`MessageHook`] did with a DataChannel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hooked {
    /// Send this text reply on the same channel at once; the message goes no further.
    Reply(String),
    /// The hook took the message; it goes no further.
    Taken,
    /// Not the hook's: the message goes on as a [`PeerEvent::ChannelMessage`] (text) or
    /// [`PeerEvent::ChannelBinary`] (binary).
    PassOn(ChannelData),
}

/// Sees every DataChannel message first, synchronously inside the browser's `message`
/// event: called with the channel's label and the message. Without a hook, every message
/// is passed on.
pub type MessageHook = Rc<dyn Fn(&str, ChannelData) -> Hooked>;

/// Where a peer's channels find their [`MessageHook`]: shared by the peer and every channel's
/// `message` listener, read at each message, so that [`Peer::set_hook`](super::Peer::set_hook)
/// changes it for every channel at once (a probe's connection handed to the game swaps the
/// probe's echo for the game's decoder).
pub(super) type HookSlot = Rc<RefCell<Option<MessageHook>>>;

/// One DataChannel with its four listeners. Dropping it removes the listeners and closes the
/// channel, so the closures live exactly as long as the channel is in use (probes and games
/// build and drop channels again and again, and nothing is leaked).
///
/// The `open` event is reported when it fires. A channel announced through `ondatachannel`
/// reads "open" already, and its `open` event is dispatched right after that callback (W3C
/// WebRTC 1.0 §6.2, "announce the data channel as open"); [`Peer`](super::Peer) attaches
/// inside the callback, so the event is never missed. (Chromium 156 was seen to lose the
/// answering side's first message whether it went before or after this event; the probe
/// copes, see `crate::probe::wire::PingPacer`.)
struct Channel {
    dc: RtcDataChannel,
    label: String,
    listeners: Vec<EventListener>,
}

impl Channel {
    /// Attaches the listeners of `dc`: events into `events`, messages through `hook` first.
    fn attach(
        dc: RtcDataChannel,
        events: &mpsc::UnboundedSender<PeerEvent>,
        hook: HookSlot,
    ) -> Self {
        let label = dc.label();
        // Binary messages as ArrayBuffers (not Blobs), which can be read synchronously.
        dc.set_binary_type(RtcDataChannelType::Arraybuffer);
        let on_open = report(&dc, "open", events, &label, |label| {
            PeerEvent::ChannelOpen { label }
        });
        let on_message = {
            let (tx, label, reply_dc) = (events.clone(), label.clone(), dc.clone());
            EventListener::new(&dc, "message", move |ev| {
                let received_at_ms = now_ms();
                let raw = ev.unchecked_ref::<MessageEvent>().data();
                let data = match raw.as_string() {
                    Some(text) => ChannelData::Text(text),
                    None => match raw.dyn_ref::<ArrayBuffer>() {
                        Some(buf) => ChannelData::Binary(Uint8Array::new(buf).to_vec()),
                        // A Blob cannot arrive with `binaryType` arraybuffer.
                        None => return,
                    },
                };
                // Out of the slot first: the hook may replace itself.
                let current = hook.borrow().clone();
                let data = match current {
                    None => data,
                    Some(hook) => match hook(&label, data) {
                        Hooked::PassOn(data) => data,
                        Hooked::Taken => return,
                        Hooked::Reply(reply) => {
                            if let Err(e) = reply_dc.send_with_str(&reply) {
                                warn(&format!("DataChannel reply failed: {}", js_error_text(&e)));
                            }
                            return;
                        }
                    },
                };
                let _ = tx.unbounded_send(match data {
                    ChannelData::Text(text) => PeerEvent::ChannelMessage {
                        label: label.clone(),
                        text,
                        received_at_ms,
                    },
                    ChannelData::Binary(bytes) => PeerEvent::ChannelBinary {
                        label: label.clone(),
                        bytes,
                        received_at_ms,
                    },
                });
            })
        };
        let on_close = report(&dc, "close", events, &label, |label| {
            PeerEvent::ChannelClosed { label }
        });
        let on_error = {
            let (tx, label) = (events.clone(), label.clone());
            EventListener::new(&dc, "error", move |ev| {
                // RTCErrorEvent.error.message when present.
                let detail = Reflect::get(ev, &JsValue::from_str("error"))
                    .ok()
                    .filter(|e| !e.is_undefined() && !e.is_null())
                    .map(|e| js_error_text(&e))
                    .unwrap_or_else(|| "DataChannel error".to_owned());
                let _ = tx.unbounded_send(PeerEvent::ChannelError {
                    label: label.clone(),
                    detail,
                });
            })
        };
        Self {
            dc,
            label,
            listeners: vec![on_open, on_message, on_close, on_error],
        }
    }

    fn is_open(&self) -> bool {
        self.dc.ready_state() == RtcDataChannelState::Open
    }
}

/// A listener that reports each `event_type` event of `dc` as the [`PeerEvent`] `make` builds
/// from the channel's label.
fn report(
    dc: &RtcDataChannel,
    event_type: &'static str,
    events: &mpsc::UnboundedSender<PeerEvent>,
    label: &str,
    make: fn(String) -> PeerEvent,
) -> EventListener {
    let (tx, label) = (events.clone(), label.to_owned());
    EventListener::new(dc, event_type, move |_| {
        let _ = tx.unbounded_send(make(label.clone()));
    })
}

impl Drop for Channel {
    fn drop(&mut self) {
        // Listeners first: the `close` event that `close()` queues must find nobody.
        self.listeners.clear();
        self.dc.close();
    }
}

/// The channels of one [`Peer`](super::Peer), shared by the peer and whoever sends on them
/// from outside the peer's task (a clone is a second handle to the same channels). At most
/// one channel per label.
#[derive(Clone, Default)]
pub struct Channels {
    inner: Rc<RefCell<Vec<Channel>>>,
}

impl Channels {
    /// Attaches `dc` (see [`Channel`]) and keeps it, unless a channel with its label is kept
    /// already or a listener is running right now; then `dc` is closed. Returns whether it
    /// was kept.
    pub(super) fn adopt(
        &self,
        dc: RtcDataChannel,
        events: &mpsc::UnboundedSender<PeerEvent>,
        hook: HookSlot,
    ) -> bool {
        let Ok(mut channels) = self.inner.try_borrow_mut() else {
            dc.close();
            return false;
        };
        let label = dc.label();
        if channels.iter().any(|c| c.label == label) {
            dc.close();
            return false;
        }
        channels.push(Channel::attach(dc, events, hook));
        true
    }

    /// Whether the channel labelled `label` is open now.
    pub fn is_open(&self, label: &str) -> bool {
        self.inner
            .borrow()
            .iter()
            .any(|c| c.label == label && c.is_open())
    }

    /// Sends a text message on the channel labelled `label`.
    ///
    /// # Errors
    /// [`PeerError::ChannelNotOpen`] when that channel is missing or not open;
    /// [`PeerError::Js`] when `send` throws.
    pub fn send(&self, label: &str, text: &str) -> Result<(), PeerError> {
        self.with_open(label, |dc| dc.send_with_str(text))
    }

    /// Sends a binary message (the bytes as one frame) on the channel labelled `label`.
    ///
    /// # Errors
    /// As [`Channels::send`].
    pub fn send_bytes(&self, label: &str, bytes: &[u8]) -> Result<(), PeerError> {
        self.with_open(label, |dc| dc.send_with_u8_array(bytes))
    }

    fn with_open(
        &self,
        label: &str,
        send: impl FnOnce(&RtcDataChannel) -> Result<(), JsValue>,
    ) -> Result<(), PeerError> {
        let channels = self.inner.borrow();
        match channels.iter().find(|c| c.label == label) {
            Some(c) if c.is_open() => send(&c.dc).map_err(js_err("RTCDataChannel.send")),
            _ => Err(PeerError::ChannelNotOpen),
        }
    }

    /// Drops every channel whose label `keep` refuses (listeners removed, channel closed).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let dropped: Vec<Channel> = {
            let mut channels = self.inner.borrow_mut();
            let (kept, dropped) = std::mem::take(&mut *channels)
                .into_iter()
                .partition(|c| keep(&c.label));
            *channels = kept;
            dropped
        };
        drop(dropped);
    }

    /// Drops every channel: their listeners are removed and the channels closed.
    pub fn clear(&self) {
        let channels = std::mem::take(&mut *self.inner.borrow_mut());
        drop(channels);
    }
}
