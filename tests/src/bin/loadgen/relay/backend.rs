//! How a relay's clients speak: pairlab's `probe_signal` between the two members of a probe,
//! `matchbox_server`'s `Signal` requests and events, and python-socketio's `signal` events
//! ([`Backend`]); the frame each sends ([`outgoing`]) and what each received text means
//! ([`incoming`]); and how each relay's server is started ([`start_backend`]).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pairlab_shared::{
    ClientMessage, PlayerIndex, Pong, ProbeReady, ProbeSessionId, ProbeSignalOut, ServerMessage,
    SignalPayload, SignalType,
};
use pairlab_tests::{free_port, target_dir, WorkDir};
use tokio_tungstenite::tungstenite::Message;

use super::{RelayArgs, RelayShared, RELAY_SCENE};
use crate::client::{client_config, Ws, CONNECT_TIMEOUT};
use crate::hold::{read_monitor_stream, scrape_metrics, METRICS_TOKEN, MONITOR_TOKEN};
use crate::server::{start_pairlab, RelayServer, LOADGEN_SERVER_TABLE};
use crate::Result;

/// The candidate line of a frame: a plausible host candidate (about the size of a real one)
/// whose fields carry the step and the send time.
pub(crate) fn candidate(step: usize, sent_ns: u64) -> String {
    format!(
        "candidate:{step} 1 udp 2122260223 127.0.0.1 9 typ host generation 0 ufrag lg ts {sent_ns}"
    )
}

pub(crate) fn parse_candidate(c: &str) -> Option<(usize, u64)> {
    let mut words = c.split_whitespace();
    let step = words.next()?.strip_prefix("candidate:")?.parse().ok()?;
    let mut ts = None;
    while let Some(w) = words.next() {
        if w == "ts" {
            ts = words.next().and_then(|t| t.parse().ok());
        }
    }
    Some((step, ts?))
}

/// A relay `compare` may run (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CompareWhat {
    /// pairlab (`<target>/release/pairlab` or --server-bin).
    Pairlab,
    /// `<target>/bench-tools/bin/matchbox_server`.
    Matchbox,
    /// `bench/socketio_relay.py` in `<target>/bench-venv`.
    Socketio,
}

impl CompareWhat {
    pub(crate) fn backend(self) -> Backend {
        match self {
            CompareWhat::Pairlab => Backend::Pairlab,
            CompareWhat::Matchbox => Backend::Matchbox,
            CompareWhat::Socketio => Backend::SocketIo,
        }
    }
}

/// The relay a `relay` or `compare` run drives, and how its clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// pairlab: `probe_signal` between the two members of a probe (PROTOCOL.md).
    Pairlab,
    /// `matchbox_server` (crates.io): `ws://HOST/<room>`, `{"IdAssigned":id}`, requests
    /// `{"Signal":{"receiver":id,"data":…}}`, events `{"Signal":{"sender":id,"data":…}}`
    /// (`matchbox_protocol` 0.15 `PeerRequest`/`PeerEvent`). One room per pair.
    Matchbox,
    /// python-socketio (`bench/socketio_relay.py`): Engine.IO v4 / Socket.IO v5 over a
    /// WebSocket; event `signal` `{target, data}` relayed as `{from, data}` to the target sid.
    SocketIo,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Pairlab => "pairlab",
            Backend::Matchbox => "matchbox_server",
            Backend::SocketIo => "python-socketio",
        }
    }
}

/// The `data` the alternatives relay: the same signal a pairlab `probe_signal` carries.
pub(crate) fn signal_data(step: usize, sent_ns: u64) -> serde_json::Value {
    serde_json::json!({
        "signal_type": "ice_candidate",
        "payload": {
            "candidate": candidate(step, sent_ns),
            "sdp_mid": "0",
            "sdp_m_line_index": 0,
        }
    })
}

/// The candidate string of a relayed `data` (see [`signal_data`]).
pub(crate) fn data_candidate(data: &serde_json::Value) -> Option<&str> {
    data.get("payload")?.get("candidate")?.as_str()
}

/// Where a client sends its frames, once known.
pub(crate) enum Link {
    /// pairlab: the probe and the peer's player index, from `probe_prepare`; `started` after
    /// `probe_start`.
    Pairlab {
        probe: Option<(ProbeSessionId, PlayerIndex)>,
        started: bool,
    },
    /// An alternative: the peer's id on that server.
    Peer(String),
}

impl Link {
    /// Whether frames may be sent (see [`outgoing`]).
    pub(crate) fn ready(&self) -> bool {
        matches!(
            self,
            Link::Pairlab {
                probe: Some(_),
                started: true
            } | Link::Peer(_)
        )
    }
}

/// What one received text frame means to a relay client.
pub(crate) enum Incoming {
    /// A relayed frame: its step and send time.
    Frame(usize, u64),
    /// Send this text back (a pong, a `probe_ready`).
    Reply(String),
    /// pairlab's probe started: frames may flow.
    Started,
    Nothing,
}

/// Connects an alternative's client, learns its own id from the server, publishes it in
/// `shared.ids`, and waits for its pair partner's (index ^ 1): peers meet through the load
/// generator, as a real app's lobby would introduce them.
pub(crate) async fn join_alternative(
    shared: &RelayShared,
    index: usize,
) -> std::result::Result<(Ws, String), String> {
    let url = match shared.backend {
        Backend::Matchbox => format!("ws://127.0.0.1:{}/pair{}", shared.port, index / 2),
        _ => format!(
            "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
            shared.port
        ),
    };
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(client_config()), true)
            .await
            .map_err(|e| format!("connect: {e}"))?;
    if shared.backend == Backend::SocketIo {
        // Engine.IO `0{…}` open comes first; then the Socket.IO CONNECT to the main namespace.
        ws.send(Message::text("40"))
            .await
            .map_err(|e| format!("send 40: {e}"))?;
    }
    let own = loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("read: {e}")),
            None => return Err("closed before an id".into()),
        };
        let id = match shared.backend {
            Backend::Matchbox => serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("IdAssigned")?.as_str().map(str::to_owned)),
            _ => text
                .strip_prefix("40")
                .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
                .and_then(|v| v.get("sid")?.as_str().map(str::to_owned)),
        };
        if let Some(id) = id {
            break id;
        }
    };
    {
        let mut ids = shared.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids[index] = Some(own);
    }
    let t = Instant::now();
    loop {
        let peer = shared.ids.lock().unwrap_or_else(|p| p.into_inner())[index ^ 1].clone();
        if let Some(peer) = peer {
            return Ok((ws, peer));
        }
        if t.elapsed() > CONNECT_TIMEOUT {
            return Err("the pair partner never got an id".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What one text frame from the server means, per backend.
pub(crate) fn incoming(
    backend: Backend,
    link: &mut Link,
    text: &str,
) -> std::result::Result<Incoming, String> {
    let frame = |c: Option<&str>| {
        c.and_then(parse_candidate)
            .map_or(Incoming::Nothing, |(step, ts)| Incoming::Frame(step, ts))
    };
    match backend {
        Backend::Pairlab => {
            let Link::Pairlab { probe, started } = link else {
                return Ok(Incoming::Nothing);
            };
            Ok(match serde_json::from_str::<ServerMessage>(text) {
                Ok(ServerMessage::ProbeSignal(sig)) => match &sig.payload {
                    Some(SignalPayload::Candidate { candidate, .. }) => frame(Some(candidate)),
                    _ => Incoming::Nothing,
                },
                Ok(ServerMessage::Ping(p)) => {
                    Incoming::Reply(ClientMessage::Pong(Pong { seq: p.seq }).to_json())
                }
                Ok(ServerMessage::ProbePrepare(p)) => {
                    let ready = ClientMessage::ProbeReady(ProbeReady {
                        probe_session_id: p.probe_session_id.clone(),
                    });
                    *probe = Some((p.probe_session_id, p.peer_index));
                    Incoming::Reply(ready.to_json())
                }
                Ok(ServerMessage::ProbeStart(_)) if !*started => {
                    *started = true;
                    Incoming::Started
                }
                Ok(ServerMessage::Error(e)) => {
                    return Err(format!("error {:?}: {}", e.code, e.message))
                }
                Ok(ServerMessage::GameStart(_)) => return Err("game_start: the probe ended".into()),
                _ => Incoming::Nothing,
            })
        }
        Backend::Matchbox => {
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            Ok(frame(
                v.get("Signal")
                    .and_then(|s| s.get("data"))
                    .and_then(data_candidate),
            ))
        }
        Backend::SocketIo => {
            if text == "2" {
                // Engine.IO ping: answer with pong.
                return Ok(Incoming::Reply("3".into()));
            }
            let Some(event) = text.strip_prefix("42") else {
                return Ok(Incoming::Nothing);
            };
            let v: serde_json::Value = serde_json::from_str(event).unwrap_or_default();
            Ok(frame(
                v.get(1)
                    .and_then(|m| m.get("data"))
                    .and_then(data_candidate),
            ))
        }
    }
}

/// The text of one relayed frame to the peer, `None` until the link is ready.
pub(crate) fn outgoing(backend: Backend, link: &Link, step: usize, sent_ns: u64) -> Option<String> {
    match (backend, link) {
        (
            Backend::Pairlab,
            Link::Pairlab {
                probe: Some((probe_id, peer)),
                started: true,
            },
        ) => Some(
            ClientMessage::ProbeSignal(ProbeSignalOut {
                probe_session_id: probe_id.clone(),
                target_index: *peer,
                signal_type: SignalType::IceCandidate,
                payload: Some(SignalPayload::Candidate {
                    candidate: candidate(step, sent_ns),
                    sdp_mid: Some("0".into()),
                    sdp_m_line_index: Some(0),
                }),
            })
            .to_json(),
        ),
        (Backend::Matchbox, Link::Peer(peer)) => Some(
            serde_json::json!({"Signal": {"receiver": peer, "data": signal_data(step, sent_ns)}})
                .to_string(),
        ),
        (Backend::SocketIo, Link::Peer(peer)) => Some(format!(
            "42{}",
            serde_json::json!(["signal", {"target": peer, "data": signal_data(step, sent_ns)}])
        )),
        _ => None,
    }
}

/// Starts `backend`'s server in `work`.
pub(crate) async fn start_backend(
    args: &RelayArgs,
    backend: Backend,
    work: &WorkDir,
) -> Result<RelayServer> {
    match backend {
        Backend::Pairlab if args.observed => {
            let scene = format!(
                "{RELAY_SCENE}{LOADGEN_SERVER_TABLE}metrics_token = \"{METRICS_TOKEN}\"\nmonitor_token = \"{MONITOR_TOKEN}\"\n"
            );
            let server = start_pairlab(&args.bin, &args.log, work, &scene).await?;
            // Both run until the process ends; their failures only show in their own counts.
            let port = server.port();
            tokio::spawn(scrape_metrics(
                port,
                Duration::from_secs(1),
                Default::default(),
            ));
            tokio::spawn(read_monitor_stream(port, Default::default()));
            Ok(RelayServer::Pairlab(server))
        }
        Backend::Pairlab => Ok(RelayServer::Pairlab(
            start_pairlab(&args.bin, &args.log, work, RELAY_SCENE).await?,
        )),
        Backend::Matchbox => {
            let bin = target_dir()
                .join("bench-tools")
                .join("bin")
                .join("matchbox_server");
            let port = free_port()?;
            RelayServer::start_external(
                backend.name(),
                &bin,
                &[format!("127.0.0.1:{port}")],
                &args.log,
                work,
                port,
                "run scripts/bench-setup.sh",
            )
            .await
        }
        Backend::SocketIo => {
            let python = target_dir().join("bench-venv").join("bin").join("python");
            let script = pairlab_tests::workspace_root()
                .join("bench")
                .join("socketio_relay.py");
            let port = free_port()?;
            RelayServer::start_external(
                backend.name(),
                &python,
                &[
                    script.display().to_string(),
                    "--port".into(),
                    port.to_string(),
                ],
                &args.log,
                work,
                port,
                "run scripts/bench-setup.sh",
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_round_trips_step_and_time() {
        assert_eq!(
            parse_candidate(&candidate(3, 123_456_789)),
            Some((3, 123_456_789))
        );
        assert_eq!(
            parse_candidate("candidate:1 1 udp 1 127.0.0.1 9 typ host"),
            None
        );
    }

    #[test]
    fn alternatives_frames_carry_the_candidate_both_ways() {
        // matchbox: what we send is a PeerRequest::Signal; the server turns it into a
        // PeerEvent::Signal with the same data.
        let link = Link::Peer("peer-1".into());
        let out = outgoing(Backend::Matchbox, &link, 2, 77).expect("ready");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["Signal"]["receiver"], "peer-1");
        let event = serde_json::json!({"Signal": {"sender": "x", "data": v["Signal"]["data"]}});
        let mut link = Link::Peer("x".into());
        assert!(matches!(
            incoming(Backend::Matchbox, &mut link, &event.to_string()),
            Ok(Incoming::Frame(2, 77))
        ));
        // Socket.IO: 42["signal",{target,data}] out, 42["signal",{from,data}] in; 2 → 3.
        let out = outgoing(Backend::SocketIo, &link, 3, 99).expect("ready");
        let v: serde_json::Value =
            serde_json::from_str(out.strip_prefix("42").expect("42")).expect("json");
        assert_eq!(v[0], "signal");
        assert_eq!(v[1]["target"], "x");
        let event = format!(
            "42{}",
            serde_json::json!(["signal", {"from": "y", "data": v[1]["data"]}])
        );
        assert!(matches!(
            incoming(Backend::SocketIo, &mut link, &event),
            Ok(Incoming::Frame(3, 99))
        ));
        assert!(matches!(
            incoming(Backend::SocketIo, &mut link, "2"),
            Ok(Incoming::Reply(r)) if r == "3"
        ));
    }
}
