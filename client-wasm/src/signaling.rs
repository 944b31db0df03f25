//! The WebSocket to the pairlab server: typed send of [`ClientMessage`], typed receive of
//! [`ServerMessage`], and the server's RTT pings answered on the spot.
//!
//! One [`Signaling`] is one connection (PROTOCOL.md, Transport: `GET /ws` on the page's
//! origin, JSON text frames). Everything the socket reports arrives as a [`SignalingEvent`] on
//! the receiver that [`Signaling::connect`] returns, in order. The struct owns every listener it
//! gives the browser (`gloo_events::EventListener`); dropping it removes them and closes the
//! socket. [`Outbox`] is how the rest of the client sends: a function of one
//! [`ClientMessage`], so probes and game connections run against the socket or a test's loop.
//!
//! `ping` is special: the server measures its RTT to this participant from `ping` → `pong`
//! (PROTOCOL.md, Session), so the `onmessage` handler sends the `pong` itself, synchronously,
//! before anything else runs. A `pong` that waited for the async app loop would add the page's
//! scheduling delay to the measurement. Pings are therefore not forwarded as events.

use std::rc::Rc;

use futures::channel::mpsc;
use gloo_events::EventListener;
use pairlab_shared::{ClientMessage, Pong, ServerMessage};
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use crate::util::{js_error_text, warn};

/// Why the WebSocket could not be opened or written to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalingError {
    /// `new WebSocket(url)` threw (a malformed URL, or a blocked port).
    #[error("could not open the WebSocket to {url}: {detail}")]
    Open {
        /// The URL tried.
        url: String,
        /// The browser's exception text.
        detail: String,
    },
    /// The socket is not open (still connecting, closing or closed).
    #[error("the connection to the server is not open")]
    NotOpen,
    /// `WebSocket.send` threw.
    #[error("could not send to the server: {0}")]
    Send(String),
}

/// What the socket reports, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalingEvent {
    /// The socket is open; the first frame to send is `hello`.
    Open,
    /// A message from the server (never a `ping`: those are answered inside the handler).
    Message(ServerMessage),
    /// A frame that is not a valid server message. The connection stays usable.
    Undecodable {
        /// The decoder's complaint.
        error: String,
        /// The start of the frame (at most 200 characters), for the console.
        frame_start: String,
    },
    /// The socket reported an error; a [`SignalingEvent::Closed`] follows.
    Error,
    /// The socket is closed (by either side, or the connection was lost).
    Closed {
        /// The WebSocket close code (RFC 6455 §7.4; 1006 when the connection just dropped).
        code: u16,
        /// The close reason the server gave, possibly empty.
        reason: String,
        /// Whether the closing handshake completed.
        was_clean: bool,
    },
}

/// The WebSocket URL of the pairlab endpoint for a page served at `protocol` (`location.protocol`,
/// e.g. `"https:"`) and `host` (`location.host`, with port): `wss://host/ws` for `https:`,
/// `ws://host/ws` otherwise.
pub fn ws_url(protocol: &str, host: &str) -> String {
    let scheme = if protocol.eq_ignore_ascii_case("https:") {
        "wss"
    } else {
        "ws"
    };
    format!("{scheme}://{host}/ws")
}

/// Decodes one text frame from the server.
///
/// # Errors
/// serde_json's message when the frame is not a known [`ServerMessage`].
pub fn decode_server_frame(text: &str) -> Result<ServerMessage, String> {
    serde_json::from_str::<ServerMessage>(text).map_err(|e| e.to_string())
}

/// Sends one client message: to the server through the page's [`Signaling`], or to a test's
/// in-memory loop. The probes and the game connections take one.
pub type Outbox = Rc<dyn Fn(ClientMessage)>;

/// One WebSocket connection to the server, with the browser listeners it owns.
pub struct Signaling {
    ws: WebSocket,
    /// `open`, `message`, `error`, `close`; each removed when dropped.
    listeners: Vec<EventListener>,
}

impl Signaling {
    /// Opens a WebSocket to `url` and returns it with the receiver of its events.
    ///
    /// # Errors
    /// [`SignalingError::Open`] when the browser refuses the URL.
    pub fn connect(
        url: &str,
    ) -> Result<(Self, mpsc::UnboundedReceiver<SignalingEvent>), SignalingError> {
        let ws = WebSocket::new(url).map_err(|e| SignalingError::Open {
            url: url.to_owned(),
            detail: js_error_text(&e),
        })?;
        let (tx, rx) = mpsc::unbounded();

        let on_open = {
            let tx = tx.clone();
            EventListener::new(&ws, "open", move |_| {
                let _ = tx.unbounded_send(SignalingEvent::Open);
            })
        };
        let on_message = {
            let (tx, ws_ref) = (tx.clone(), ws.clone());
            EventListener::new(&ws, "message", move |ev| {
                let Some(text) = ev.unchecked_ref::<MessageEvent>().data().as_string() else {
                    let _ = tx.unbounded_send(SignalingEvent::Undecodable {
                        error: "a binary frame; the protocol uses text frames only".into(),
                        frame_start: String::new(),
                    });
                    return;
                };
                match decode_server_frame(&text) {
                    Ok(ServerMessage::Ping(ping)) => {
                        // Answer first: the server's RTT clock is running.
                        let pong = ClientMessage::Pong(Pong { seq: ping.seq }).to_json();
                        if let Err(e) = ws_ref.send_with_str(&pong) {
                            warn(&format!(
                                "could not answer ping {}: {}",
                                ping.seq,
                                js_error_text(&e)
                            ));
                        }
                    }
                    Ok(msg) => {
                        let _ = tx.unbounded_send(SignalingEvent::Message(msg));
                    }
                    Err(error) => {
                        let _ = tx.unbounded_send(SignalingEvent::Undecodable {
                            error,
                            frame_start: text.chars().take(200).collect(),
                        });
                    }
                }
            })
        };
        let on_error = {
            let tx = tx.clone();
            EventListener::new(&ws, "error", move |_| {
                let _ = tx.unbounded_send(SignalingEvent::Error);
            })
        };
        let on_close = EventListener::new(&ws, "close", move |ev| {
            let ev = ev.unchecked_ref::<CloseEvent>();
            let _ = tx.unbounded_send(SignalingEvent::Closed {
                code: ev.code(),
                reason: ev.reason(),
                was_clean: ev.was_clean(),
            });
        });

        Ok((
            Self {
                ws,
                listeners: vec![on_open, on_message, on_error, on_close],
            },
            rx,
        ))
    }

    /// Sends one message as a JSON text frame.
    ///
    /// # Errors
    /// [`SignalingError::NotOpen`] before `open` or after close; [`SignalingError::Send`] when
    /// the browser throws.
    pub fn send(&self, msg: &ClientMessage) -> Result<(), SignalingError> {
        if self.ws.ready_state() != WebSocket::OPEN {
            return Err(SignalingError::NotOpen);
        }
        self.ws
            .send_with_str(&msg.to_json())
            .map_err(|e| SignalingError::Send(js_error_text(&e)))
    }

    /// Whether the socket is open now.
    pub fn is_open(&self) -> bool {
        self.ws.ready_state() == WebSocket::OPEN
    }

    /// The underlying browser object (diagnostics).
    pub fn raw(&self) -> &WebSocket {
        &self.ws
    }
}

impl Drop for Signaling {
    fn drop(&mut self) {
        // Listeners first: the `close` event that closing queues must find nobody.
        self.listeners.clear();
        let state = self.ws.ready_state();
        if state == WebSocket::CONNECTING || state == WebSocket::OPEN {
            // 1000: normal closure (RFC 6455 §7.4.1).
            if let Err(e) = self.ws.close_with_code(1000) {
                warn(&format!(
                    "closing the WebSocket failed: {}",
                    js_error_text(&e)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_follows_page_scheme() {
        assert_eq!(ws_url("https:", "example.org"), "wss://example.org/ws");
        assert_eq!(ws_url("http:", "127.0.0.1:8080"), "ws://127.0.0.1:8080/ws");
        assert_eq!(ws_url("HTTPS:", "a:1"), "wss://a:1/ws");
    }

    #[test]
    fn decodes_server_frames_and_reports_junk() {
        assert_eq!(
            decode_server_frame(r#"{"type":"ping","seq":7}"#),
            Ok(ServerMessage::Ping(pairlab_shared::Ping { seq: 7 }))
        );
        assert!(decode_server_frame("not json").is_err());
        assert!(decode_server_frame(r#"{"type":"nope"}"#).is_err());
    }
}
