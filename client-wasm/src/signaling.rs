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
use pairlab_shared::{
    ClientMessage, GameId, Pong, ProbeSessionId, ProbeSignalIn, ServerMessage, SignalPayload,
    SignalType, WebrtcSignalIn,
};
use serde_json::{from_value, Value};
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
/// The frame is read as a `serde_json::Value` first and each message's own struct is taken
/// from that by its `type`, instead of through `ServerMessage`'s derived `Deserialize`: serde
/// decodes an internally tagged enum (`#[serde(tag = "type")]`) and an untagged one
/// ([`SignalPayload`]) by buffering into its generic `Content`, whose code made up about a
/// sixth of the page's WebAssembly. The result is the same message (the tests below compare it
/// with the server's own encoding of each).
///
/// # Errors
/// A sentence saying what is wrong when the frame is not a known [`ServerMessage`].
pub fn decode_server_frame(text: &str) -> Result<ServerMessage, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Value::Object(mut fields) = value else {
        return Err("a frame that is not a JSON object".into());
    };
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => return Err("a frame without a string `type`".into()),
    };
    let value = Value::Object(fields);
    let err = |e: serde_json::Error| format!("{kind}: {e}");
    Ok(match kind.as_str() {
        "welcome" => ServerMessage::Welcome(from_value(value).map_err(err)?),
        "ping" => ServerMessage::Ping(from_value(value).map_err(err)?),
        "waitroom" => ServerMessage::Waitroom(from_value(value).map_err(err)?),
        "waitroom_timeout" => ServerMessage::WaitroomTimeout(from_value(value).map_err(err)?),
        "probe_prepare" => ServerMessage::ProbePrepare(from_value(value).map_err(err)?),
        "probe_start" => ServerMessage::ProbeStart(from_value(value).map_err(err)?),
        "probe_close" => ServerMessage::ProbeClose(from_value(value).map_err(err)?),
        "game_start" => ServerMessage::GameStart(from_value(value).map_err(err)?),
        "game_ended" => ServerMessage::GameEnded(from_value(value).map_err(err)?),
        "outcome" => ServerMessage::Outcome(from_value(value).map_err(err)?),
        "error" => ServerMessage::Error(from_value(value).map_err(err)?),
        "probe_signal" | "webrtc_signal" => {
            let Value::Object(mut fields) = value else {
                unreachable!("built as an object above")
            };
            let mut text = |key: &str| match fields.remove(key) {
                Some(Value::String(s)) => Ok(s),
                _ => Err(format!("{kind}: `{key}` is not a string")),
            };
            let id = text(if kind == "probe_signal" {
                "probe_session_id"
            } else {
                "game_id"
            })?;
            let from_index = fields
                .get("from_index")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("{kind}: `from_index` is not a player index"))?;
            let signal_type: SignalType =
                from_value(fields.remove("signal_type").unwrap_or(Value::Null)).map_err(err)?;
            let payload = signal_payload(fields.remove("payload").unwrap_or(Value::Null))
                .map_err(|e| format!("{kind}: {e}"))?;
            if kind == "probe_signal" {
                ServerMessage::ProbeSignal(ProbeSignalIn {
                    probe_session_id: ProbeSessionId::from_string(id),
                    from_index,
                    signal_type,
                    payload,
                })
            } else {
                ServerMessage::WebrtcSignal(WebrtcSignalIn {
                    game_id: GameId::from_string(id),
                    from_index,
                    signal_type,
                    payload,
                })
            }
        }
        other => return Err(format!("unknown message type {other:?}")),
    })
}

/// A signal's `payload` as [`SignalPayload`]'s untagged `Deserialize` reads it: `null` →
/// `None`; an object with a string `sdp` → a description; else an object with a string
/// `candidate` (and optional `sdp_mid`, `sdp_m_line_index`) → a candidate.
fn signal_payload(value: Value) -> Result<Option<SignalPayload>, String> {
    let mut fields = match value {
        Value::Null => return Ok(None),
        Value::Object(fields) => fields,
        _ => return Err("`payload` is neither an object nor null".into()),
    };
    if let Some(Value::String(sdp)) = fields.remove("sdp") {
        return Ok(Some(SignalPayload::Description { sdp }));
    }
    let Some(Value::String(candidate)) = fields.remove("candidate") else {
        return Err("`payload` has neither an `sdp` nor a `candidate` string".into());
    };
    let sdp_mid = match fields.remove("sdp_mid") {
        None | Some(Value::Null) => None,
        Some(Value::String(mid)) => Some(mid),
        Some(_) => return Err("`sdp_mid` is not a string".into()),
    };
    let sdp_m_line_index = match fields.get("sdp_m_line_index") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or("`sdp_m_line_index` is not an m-line index")?,
        ),
    };
    Ok(Some(SignalPayload::Candidate {
        candidate,
        sdp_mid,
        sdp_m_line_index,
    }))
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
        assert!(decode_server_frame(r#"{"seq":7}"#).is_err());
        assert!(decode_server_frame(r#"{"type":"ping"}"#).is_err());
        assert!(decode_server_frame("[1]").is_err());
    }

    /// Every server message, as the server encodes it (`ServerMessage::to_json`), decodes to
    /// itself.
    #[test]
    fn decodes_what_the_server_encodes() {
        use pairlab_shared::*;
        let settings = GameSettings {
            max_hidden_ms: Some(5000),
            url_overrides: true,
            settings: serde_json::from_str(r#"{"level":2,"names":["a"]}"#).expect("json"),
            ..GameSettings::default()
        };
        let payloads = [
            None,
            Some(SignalPayload::Description { sdp: "v=0".into() }),
            Some(SignalPayload::Candidate {
                candidate: "candidate:1 1 udp 1 10.0.0.1 9 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
            }),
            Some(SignalPayload::Candidate {
                candidate: "candidate:2".into(),
                sdp_mid: None,
                sdp_m_line_index: None,
            }),
        ];
        let mut messages = vec![
            ServerMessage::Welcome(Welcome {
                subject_id: SubjectId::parse("s-1").expect("id"),
                scene_id: "default".into(),
                resume_token: "t".into(),
                group_size: 2,
                hide_lobby_count: true,
                waitroom_timeout_ms: 1000,
                leave_button_after_ms: Some(500),
            }),
            ServerMessage::Ping(Ping { seq: 9 }),
            ServerMessage::Waitroom(Waitroom {
                waiting: None,
                group_size: 3,
                remaining_ms: 12,
            }),
            ServerMessage::WaitroomTimeout(WaitroomTimeout {
                message: "over".into(),
                redirect_url: Some("https://x".into()),
            }),
            ServerMessage::ProbePrepare(ProbePrepare {
                probe_session_id: ProbeSessionId::from_string("p-1"),
                peer_index: 1,
                ice_servers: vec![IceServer {
                    urls: vec!["turn:a".into()],
                    username: Some("u".into()),
                    credential: None,
                }],
                timeout_ms: 3000,
                force_relay: true,
                keep_ms: None,
            }),
            ServerMessage::ProbeStart(ProbeStart {
                probe_session_id: ProbeSessionId::from_string("p-1"),
                initiator: true,
            }),
            ServerMessage::GameStart(Box::new(GameStart {
                game_id: GameId::from_string("g-1"),
                player_index: 0,
                player_count: 2,
                ice_servers: vec![],
                force_relay: true,
                pair_rtts: vec![PairRtt {
                    a: 0,
                    b: 1,
                    rtt_ms: 20.5,
                }],
                game: Box::new(settings),
                probes: Vec::new(),
            })),
            ServerMessage::GameEnded(GameEnded {
                game_id: GameId::from_string("g-1"),
                reason: GameEndReason::MemberHidden,
                message: "hidden".into(),
            }),
            ServerMessage::Outcome(Outcome {
                outcome: "completed".into(),
                completion_code: None,
                redirect_url: Some("https://y".into()),
                message: "done".into(),
            }),
            ServerMessage::error(ErrorCode::EntryRefused, "no"),
        ];
        for payload in payloads {
            messages.push(ServerMessage::ProbeSignal(ProbeSignalIn {
                probe_session_id: ProbeSessionId::from_string("p-2"),
                from_index: 1,
                signal_type: SignalType::IceCandidate,
                payload: payload.clone(),
            }));
            messages.push(ServerMessage::WebrtcSignal(WebrtcSignalIn {
                game_id: GameId::from_string("g-2"),
                from_index: 0,
                signal_type: SignalType::Offer,
                payload,
            }));
        }
        for m in messages {
            let json = m.to_json();
            assert_eq!(decode_server_frame(&json), Ok(m), "{json}");
        }
        // The server's older `game_start` (no pair_rtts, no game) still decodes.
        let old = r#"{"type":"game_start","game_id":"g","player_index":1,"player_count":2,"ice_servers":[],"force_relay":false}"#;
        assert!(matches!(
            decode_server_frame(old),
            Ok(ServerMessage::GameStart(_))
        ));
    }
}
