//! The events a session reports to JavaScript (`session.on(name, fn)`), with their names and
//! details ([`Field`]s, camelCase names; `session::api` makes them JavaScript objects). Pure:
//! tested natively. docs/CLIENT_API.md lists them
//! for researchers; this enum is where they are made.
//!
//! A `message` event's `data` (a string or a `Uint8Array`) is not JSON: its detail here has
//! `from` and `reliable`, and `session::api` adds `data`.

use pairlab_shared::{
    ConnectionInfo, ConnectionSetup, GameEnded, GameSettings, GameStart, Outcome, Waitroom,
    WaitroomTimeout, Welcome,
};

use crate::game::{GameConfig, GameEvent};
use crate::peer::ChannelData;

/// One event of a session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// `connecting`: opening the WebSocket (`attempt` 0 the first time, then each reconnect).
    Connecting {
        /// 0 for the first connection, then 1, 2, … for reconnects.
        attempt: u32,
    },
    /// `welcome`: the server accepted the `hello`.
    Welcome(Welcome),
    /// `waitroom`: the participant waits (sent again when the count changes).
    Waitroom(Waitroom),
    /// `probing`: a probe to a proposed partner began.
    Probing {
        /// The partner, by player index in the proposed group.
        peer_index: u32,
    },
    /// `matched`: `game_start`, with the loop's effective settings.
    Matched {
        /// The message.
        start: GameStart,
        /// The settings `play` uses (`game_start.game`, with URL overrides when allowed).
        config: GameConfig,
    },
    /// A game event: `phase`, `open`, `connection_type`, `quality`, `ice_restart`,
    /// `connection_failed`, `peer_closed`, `message`, `episode_summary`.
    Game(GameEvent),
    /// `ended`: the server ended the game (`game_ended`).
    Ended(GameEnded),
    /// `timeout`: the waitroom deadline passed (`waitroom_timeout`).
    Timeout(WaitroomTimeout),
    /// `outcome`: how the participant's part ended.
    Outcome(Outcome),
    /// `error`: the server refused something (`fatal`: it closes the connection), or the
    /// session cannot go on (`code` `invalid_link_id`, `lost`).
    Error {
        /// The protocol's error code, or the session's own.
        code: String,
        /// One sentence.
        message: String,
        /// Whether the session is over.
        fatal: bool,
    },
    /// `attention`: the page was hidden, or shown again.
    Attention {
        /// Hidden now.
        hidden: bool,
        /// When shown again: how long it was hidden, ms.
        hidden_ms: Option<f64>,
    },
    /// `closed`: the connection to the server is closed for good (the session is over).
    Closed {
        /// Whether it was lost unexpectedly (the reconnects failed).
        lost: bool,
        /// Whether the server was ever reached (`welcome`).
        welcomed: bool,
        /// What closed it, for the console.
        detail: String,
    },
}

/// One field's value in an event's detail: JSON's shapes, without `serde_json::Value` (whose
/// building code is large in the wasm); `Json` is JSON text taken as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<Field>),
    /// An object, in field order.
    Obj(Vec<(&'static str, Field)>),
    /// JSON text (a wire enum's name, the researcher's settings).
    Json(String),
}

impl From<bool> for Field {
    fn from(v: bool) -> Self {
        Field::Bool(v)
    }
}
impl From<u32> for Field {
    fn from(v: u32) -> Self {
        Field::Num(f64::from(v))
    }
}
impl From<u64> for Field {
    fn from(v: u64) -> Self {
        // Counts and durations far below 2^53.
        Field::Num(v as f64)
    }
}
impl From<f64> for Field {
    fn from(v: f64) -> Self {
        Field::Num(v)
    }
}
impl From<&str> for Field {
    fn from(v: &str) -> Self {
        Field::Str(v.to_owned())
    }
}
impl<T: Into<Field>> From<Option<T>> for Field {
    fn from(v: Option<T>) -> Self {
        v.map_or(Field::Null, Into::into)
    }
}

/// A value of the wire protocol (an enum's snake_case name, a map) as its JSON.
fn wire<T: serde::Serialize>(value: &T) -> Field {
    Field::Json(serde_json::to_string(value).unwrap_or_else(|_| "null".into()))
}

fn connection_info(
    peer: u32,
    info: &ConnectionInfo,
    setup: ConnectionSetup,
    same_path_as_probe: Option<bool>,
) -> Field {
    Field::Obj(vec![
        ("peer", peer.into()),
        ("type", wire(&info.connection_type)),
        ("localCandidateType", wire(&info.local_candidate_type)),
        ("remoteCandidateType", wire(&info.remote_candidate_type)),
        ("protocol", wire(&info.protocol)),
        ("relayProtocol", wire(&info.relay_protocol)),
        ("setup", wire(&setup)),
        ("samePathAsProbe", wire(&same_path_as_probe)),
    ])
}

fn settings(c: &GameConfig, s: &GameSettings) -> Field {
    Field::Obj(vec![
        ("tickMs", c.tick_ms.into()),
        ("episodeMs", c.episode_ms.into()),
        ("episodes", c.episodes.into()),
        ("inputDelayFrames", c.input_delay_frames.into()),
        ("qualityIntervalMs", c.tuning.quality_interval_ms.into()),
        ("warningRttMs", c.tuning.thresholds.warning_above_ms.into()),
        (
            "criticalRttMs",
            c.tuning.thresholds.critical_above_ms.into(),
        ),
        ("disconnectGraceMs", c.tuning.disconnect_grace_ms.into()),
        ("restartTimeoutMs", c.tuning.restart_timeout_ms.into()),
        ("maxHiddenMs", s.max_hidden_ms.into()),
        ("urlOverrides", s.url_overrides.into()),
    ])
}

impl SessionEvent {
    /// The event's name for `session.on`.
    pub fn name(&self) -> &'static str {
        match self {
            SessionEvent::Connecting { .. } => "connecting",
            SessionEvent::Welcome(_) => "welcome",
            SessionEvent::Waitroom(_) => "waitroom",
            SessionEvent::Probing { .. } => "probing",
            SessionEvent::Matched { .. } => "matched",
            SessionEvent::Game(g) => match g {
                GameEvent::Phase(_) => "phase",
                GameEvent::Open => "open",
                GameEvent::ConnectionType { .. } => "connection_type",
                GameEvent::Quality { .. } => "quality",
                GameEvent::IceRestart { .. } => "ice_restart",
                GameEvent::ConnectionFailed { .. } => "connection_failed",
                GameEvent::PeerClosed { .. } => "peer_closed",
                GameEvent::Message { .. } => "message",
                GameEvent::EpisodeSummary(_) => "episode_summary",
            },
            SessionEvent::Ended(_) => "ended",
            SessionEvent::Timeout(_) => "timeout",
            SessionEvent::Outcome(_) => "outcome",
            SessionEvent::Error { .. } => "error",
            SessionEvent::Attention { .. } => "attention",
            SessionEvent::Closed { .. } => "closed",
        }
    }

    /// The event's detail, an object ([`Field::Obj`]).
    pub fn detail(&self) -> Field {
        Field::Obj(match self {
            SessionEvent::Connecting { attempt } => vec![("attempt", (*attempt).into())],
            SessionEvent::Welcome(w) => vec![
                ("subjectId", w.subject_id.as_str().into()),
                ("sceneId", w.scene_id.as_str().into()),
                ("groupSize", w.group_size.into()),
                ("hideLobbyCount", w.hide_lobby_count.into()),
                ("waitroomTimeoutMs", w.waitroom_timeout_ms.into()),
                ("leaveButtonAfterMs", w.leave_button_after_ms.into()),
            ],
            SessionEvent::Waitroom(w) => vec![
                ("waiting", w.waiting.into()),
                ("groupSize", w.group_size.into()),
                ("remainingMs", w.remaining_ms.into()),
            ],
            SessionEvent::Probing { peer_index } => vec![("peerIndex", (*peer_index).into())],
            SessionEvent::Matched { start, config } => vec![
                ("gameId", start.game_id.as_str().into()),
                ("playerIndex", start.player_index.into()),
                ("groupSize", start.player_count.into()),
                (
                    "members",
                    Field::List((0..start.player_count).map(Field::from).collect()),
                ),
                (
                    "pairRtts",
                    Field::List(
                        start
                            .pair_rtts
                            .iter()
                            .map(|p| {
                                Field::Obj(vec![
                                    ("a", p.a.into()),
                                    ("b", p.b.into()),
                                    ("rttMs", p.rtt_ms.into()),
                                ])
                            })
                            .collect(),
                    ),
                ),
                ("forceRelay", start.force_relay.into()),
                ("game", settings(config, &start.game)),
                ("settings", wire(&start.game.settings)),
            ],
            SessionEvent::Game(g) => return game_detail(g),
            SessionEvent::Ended(e) => vec![
                ("gameId", e.game_id.as_str().into()),
                ("reason", wire(&e.reason)),
                ("message", e.message.as_str().into()),
            ],
            SessionEvent::Timeout(t) => vec![
                ("message", t.message.as_str().into()),
                ("redirectUrl", t.redirect_url.as_deref().into()),
            ],
            SessionEvent::Outcome(o) => vec![
                ("outcome", o.outcome.as_str().into()),
                ("completionCode", o.completion_code.as_deref().into()),
                ("redirectUrl", o.redirect_url.as_deref().into()),
                ("message", o.message.as_str().into()),
            ],
            SessionEvent::Error {
                code,
                message,
                fatal,
            } => vec![
                ("code", code.as_str().into()),
                ("message", message.as_str().into()),
                ("fatal", (*fatal).into()),
            ],
            SessionEvent::Attention { hidden, hidden_ms } => vec![
                ("hidden", (*hidden).into()),
                ("hiddenMs", (*hidden_ms).into()),
            ],
            SessionEvent::Closed {
                lost,
                welcomed,
                detail,
            } => vec![
                ("lost", (*lost).into()),
                ("welcomed", (*welcomed).into()),
                ("detail", detail.as_str().into()),
            ],
        })
    }
}

fn game_detail(g: &GameEvent) -> Field {
    Field::Obj(match g {
        GameEvent::Phase(p) => vec![("phase", p.as_str().into())],
        GameEvent::Open => vec![],
        GameEvent::ConnectionType {
            peer,
            info,
            setup,
            same_path_as_probe,
        } => return connection_info(*peer, info, *setup, *same_path_as_probe),
        GameEvent::Quality {
            peer,
            level,
            rtt_ms,
        } => vec![
            ("peer", (*peer).into()),
            ("level", wire(level)),
            ("rttMs", (*rtt_ms).into()),
        ],
        GameEvent::IceRestart {
            peer,
            attempt,
            outcome,
        } => vec![
            ("peer", (*peer).into()),
            ("attempt", (*attempt).into()),
            ("outcome", wire(outcome)),
        ],
        GameEvent::ConnectionFailed { peer, attempts } => {
            vec![("peer", (*peer).into()), ("attempts", (*attempts).into())]
        }
        GameEvent::PeerClosed { peer } => vec![("peer", (*peer).into())],
        GameEvent::Message {
            from,
            data,
            reliable,
        } => vec![
            ("from", (*from).into()),
            ("reliable", (*reliable).into()),
            ("binary", matches!(data, ChannelData::Binary(_)).into()),
        ],
        GameEvent::EpisodeSummary(s) => vec![
            ("episode", s.episode.into()),
            ("frames", s.frames.into()),
            ("inputsSent", s.inputs_sent.into()),
            ("hiddenCount", s.hidden_count.into()),
            ("hiddenMs", s.hidden_ms.into()),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    impl Field {
        fn to_json(&self) -> Value {
            match self {
                Field::Null => Value::Null,
                Field::Bool(b) => json!(b),
                // As JavaScript has it: 1 and 1.0 are one number.
                Field::Num(n) if n.fract() == 0.0 => json!(*n as i64),
                Field::Num(n) => json!(n),
                Field::Str(s) => json!(s),
                Field::List(l) => Value::Array(l.iter().map(Field::to_json).collect()),
                Field::Obj(o) => Value::Object(
                    o.iter()
                        .map(|(k, v)| ((*k).to_owned(), v.to_json()))
                        .collect(),
                ),
                Field::Json(j) => serde_json::from_str(j).expect("valid JSON"),
            }
        }
    }

    fn detail(ev: &SessionEvent) -> Value {
        ev.detail().to_json()
    }
    use pairlab_shared::{
        CandidateType, ConnectionKind, GameId, IceProtocol, PairRtt, QualityLevel, SubjectId,
    };

    #[test]
    fn matched_carries_members_rtts_and_settings() {
        let mut game = GameSettings {
            url_overrides: false,
            ..GameSettings::default()
        };
        game.settings.insert("difficulty".into(), json!("hard"));
        let start = GameStart {
            game_id: GameId::from_string("g-1"),
            player_index: 1,
            player_count: 3,
            ice_servers: vec![],
            force_relay: false,
            pair_rtts: vec![PairRtt {
                a: 0,
                b: 1,
                rtt_ms: 12.5,
            }],
            game: Box::new(game.clone()),
            probes: Vec::new(),
        };
        let ev = SessionEvent::Matched {
            config: GameConfig::from_settings(&game, |_| None),
            start,
        };
        assert_eq!(ev.name(), "matched");
        let d = detail(&ev);
        assert_eq!(d["gameId"], "g-1");
        assert_eq!(d["playerIndex"], 1);
        assert_eq!(d["groupSize"], 3);
        assert_eq!(d["members"], json!([0, 1, 2]));
        assert_eq!(d["pairRtts"], json!([{ "a": 0, "b": 1, "rttMs": 12.5 }]));
        assert_eq!(d["game"]["tickMs"], 33);
        assert_eq!(d["game"]["maxHiddenMs"], Value::Null);
        assert_eq!(d["settings"], json!({ "difficulty": "hard" }));
    }

    #[test]
    fn game_events_use_the_wire_names() {
        let info = ConnectionInfo {
            connection_type: ConnectionKind::Relay,
            local_candidate_type: CandidateType::Relay,
            remote_candidate_type: CandidateType::Srflx,
            protocol: IceProtocol::Udp,
            relay_protocol: None,
        };
        let ev = SessionEvent::Game(GameEvent::ConnectionType {
            peer: 0,
            info,
            setup: ConnectionSetup::Handover,
            same_path_as_probe: Some(true),
        });
        assert_eq!(ev.name(), "connection_type");
        assert_eq!(
            detail(&ev),
            json!({ "peer": 0, "type": "relay", "localCandidateType": "relay",
                    "remoteCandidateType": "srflx", "protocol": "udp", "relayProtocol": null,
                    "setup": "handover", "samePathAsProbe": true })
        );
        let ev = SessionEvent::Game(GameEvent::ConnectionType {
            peer: 0,
            info,
            setup: ConnectionSetup::Fresh,
            same_path_as_probe: None,
        });
        assert_eq!(detail(&ev)["setup"], "fresh");
        assert_eq!(detail(&ev)["samePathAsProbe"], Value::Null);
        let ev = SessionEvent::Game(GameEvent::Quality {
            peer: 2,
            level: QualityLevel::Critical,
            rtt_ms: 400.0,
        });
        assert_eq!(
            detail(&ev),
            json!({ "peer": 2, "level": "critical", "rttMs": 400 })
        );
        let ev = SessionEvent::Game(GameEvent::Message {
            from: 1,
            data: ChannelData::Binary(vec![1]),
            reliable: false,
        });
        assert_eq!(ev.name(), "message");
        assert_eq!(
            detail(&ev),
            json!({ "from": 1, "reliable": false, "binary": true })
        );
    }

    #[test]
    fn session_events_have_camel_case_details() {
        let w = Welcome {
            subject_id: SubjectId::parse("s-1").expect("valid"),
            scene_id: "demo".into(),
            resume_token: "secret".into(),
            group_size: 2,
            hide_lobby_count: false,
            waitroom_timeout_ms: 60_000,
            leave_button_after_ms: Some(30_000),
        };
        let d = detail(&SessionEvent::Welcome(w));
        assert_eq!(d["leaveButtonAfterMs"], 30_000);
        assert_eq!(d["subjectId"], "s-1");
        assert!(d.get("resumeToken").is_none(), "the token stays inside");
        let d = detail(&SessionEvent::Outcome(Outcome {
            outcome: "completed".into(),
            completion_code: Some("C0DE".into()),
            redirect_url: None,
            message: "Thanks".into(),
        }));
        assert_eq!(
            d,
            json!({ "outcome": "completed", "completionCode": "C0DE",
                    "redirectUrl": null, "message": "Thanks" })
        );
        let d = detail(&SessionEvent::Attention {
            hidden: false,
            hidden_ms: Some(1500.0),
        });
        assert_eq!(d, json!({ "hidden": false, "hiddenMs": 1500 }));
    }
}
