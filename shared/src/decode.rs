//! Decoding untrusted client frames into [`ClientMessage`], with failures sorted into the
//! protocol's error codes.

use serde::Deserialize;

use crate::ids::SubjectId;
use crate::messages::{
    check_signal, ClientMessage, ErrorCode, Outcome, RecordEvent, RECORD_FIELDS_MAX_BYTES,
    RECRUITER_PARAM_MAX_LEN,
};

/// The `type` names a client may send (PROTOCOL.md).
pub const CLIENT_MESSAGE_TYPES: &[&str] = &[
    "hello",
    "pong",
    "leave",
    "probe_ready",
    "probe_signal",
    "probe_result",
    "webrtc_signal",
    "p2p_connection_type",
    "p2p_quality",
    "p2p_ice_restart",
    "p2p_connection_failed",
    "episode_summary",
    "record",
    "finish",
    "attention",
];

/// Most quality changes accepted per peer in one `episode_summary`.
pub const MAX_QUALITY_CHANGES: usize = 1000;
/// Most peers accepted in one `episode_summary`.
pub const MAX_PEERS: usize = 64;
/// Most ICE restart attempts a client may report.
pub const MAX_ICE_RESTART_ATTEMPTS: u32 = 100;

/// Largest accepted `samples_ms` array in a `probe_result`.
pub const MAX_PROBE_SAMPLES: usize = 1000;

/// Why a frame is not a valid client message. Each maps to one [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is not JSON.
    #[error("the frame is not JSON: {0}")]
    NotJson(String),
    /// The frame is JSON but not an object.
    #[error("the frame is not a JSON object")]
    NotObject,
    /// The object has no string `type` field.
    #[error("the message has no string \"type\" field")]
    MissingType,
    /// The `type` is not one this server knows.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A known `type` with a missing, mistyped or out-of-range field.
    #[error("bad {message_type} message: {detail}")]
    BadField {
        /// The message's `type`.
        message_type: String,
        /// What is wrong, from the decoder.
        detail: String,
    },
    /// A `hello` whose `subject_id` is missing, not a string, or against the rule.
    #[error("{0}")]
    InvalidSubjectId(String),
}

impl DecodeError {
    /// The protocol error code this failure is answered with, once the connection has said
    /// `hello`. (Before `hello`, every failure is `hello_required`, except a `hello` with a bad
    /// `subject_id`, which is `invalid_subject_id`.)
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnknownType(_) => ErrorCode::UnknownType,
            DecodeError::InvalidSubjectId(_) => ErrorCode::InvalidSubjectId,
            _ => ErrorCode::BadMessage,
        }
    }

    /// Whether the frame claimed to be a `hello`.
    pub fn is_hello(&self) -> bool {
        match self {
            DecodeError::InvalidSubjectId(_) => true,
            DecodeError::BadField { message_type, .. } => message_type == "hello",
            _ => false,
        }
    }
}

#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    message_type: Option<serde_json::Value>,
    subject_id: Option<serde_json::Value>,
}

impl ClientMessage {
    /// Decodes one text frame from a client and checks what serde alone cannot: numbers that
    /// must be finite and non-negative, the `samples_ms` length, and that a signal's payload
    /// fits its `signal_type`.
    ///
    /// # Errors
    /// A [`DecodeError`] saying what is wrong; [`DecodeError::code`] gives the error code.
    pub fn decode(text: &str) -> Result<ClientMessage, DecodeError> {
        match serde_json::from_str::<ClientMessage>(text) {
            Ok(msg) => {
                msg.check().map_err(|detail| DecodeError::BadField {
                    message_type: msg.type_name().to_owned(),
                    detail: detail.to_owned(),
                })?;
                Ok(msg)
            }
            Err(err) => Err(classify(text, err)),
        }
    }

    /// The message's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Hello(_) => "hello",
            ClientMessage::Pong(_) => "pong",
            ClientMessage::Leave => "leave",
            ClientMessage::ProbeReady(_) => "probe_ready",
            ClientMessage::ProbeSignal(_) => "probe_signal",
            ClientMessage::ProbeResult(_) => "probe_result",
            ClientMessage::WebrtcSignal(_) => "webrtc_signal",
            ClientMessage::P2pConnectionType(_) => "p2p_connection_type",
            ClientMessage::P2pQuality(_) => "p2p_quality",
            ClientMessage::P2pIceRestart(_) => "p2p_ice_restart",
            ClientMessage::P2pConnectionFailed(_) => "p2p_connection_failed",
            ClientMessage::EpisodeSummary(_) => "episode_summary",
            ClientMessage::Record(_) => "record",
            ClientMessage::Finish(_) => "finish",
            ClientMessage::Attention(_) => "attention",
        }
    }

    fn check(&self) -> Result<(), &'static str> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        let ok_opt = |v: Option<f64>| v.is_none_or(ok);
        match self {
            ClientMessage::ProbeSignal(s) => check_signal(s.signal_type, s.payload.as_ref()),
            ClientMessage::WebrtcSignal(s) => check_signal(s.signal_type, s.payload.as_ref()),
            ClientMessage::P2pConnectionType(c) if !ok_opt(c.connect_ms) => {
                Err("connect_ms must be a finite, non-negative number or null")
            }
            ClientMessage::P2pQuality(q) if !ok_opt(q.rtt_ms) => {
                Err("rtt_ms must be a finite, non-negative number or null")
            }
            ClientMessage::P2pIceRestart(r) => {
                if r.attempt == 0 || r.attempt > MAX_ICE_RESTART_ATTEMPTS {
                    return Err("attempt must be between 1 and 100");
                }
                if !ok_opt(r.duration_ms) {
                    return Err("duration_ms must be a finite, non-negative number or null");
                }
                Ok(())
            }
            ClientMessage::P2pConnectionFailed(f) if f.attempts > MAX_ICE_RESTART_ATTEMPTS => {
                Err("attempts must be at most 100")
            }
            ClientMessage::EpisodeSummary(e) => {
                if !ok(e.hidden_ms) {
                    return Err("hidden_ms must be finite and non-negative");
                }
                if e.episode == 0 {
                    return Err("episode numbers start at 1");
                }
                if e.peers.len() > MAX_PEERS {
                    return Err("peers has more than 64 entries");
                }
                for p in &e.peers {
                    if p.quality_changes.len() > MAX_QUALITY_CHANGES {
                        return Err("quality_changes has more than 1000 entries");
                    }
                    if p.quality_changes.iter().any(|c| !ok(c.at_ms)) {
                        return Err("quality_changes[].at_ms must be finite and non-negative");
                    }
                    if let Some(r) = p.rtt_ms {
                        if !(ok(r.min)
                            && ok(r.median)
                            && ok(r.max)
                            && r.min <= r.median
                            && r.median <= r.max)
                        {
                            return Err("rtt_ms must hold finite min <= median <= max");
                        }
                    }
                }
                Ok(())
            }
            ClientMessage::Hello(h) => match &h.recruiter {
                Some(r)
                    if r.values()
                        .any(|v| v.chars().count() > RECRUITER_PARAM_MAX_LEN) =>
                {
                    Err("recruiter parameter values are at most 128 characters")
                }
                _ => Ok(()),
            },
            ClientMessage::Record(r) => {
                if !RecordEvent::valid_name(&r.event) {
                    return Err("event must be 1 to 64 characters from a-z 0-9 _ . -");
                }
                let bytes = serde_json::to_string(&r.fields).map_or(usize::MAX, |t| t.len());
                if bytes > RECORD_FIELDS_MAX_BYTES {
                    return Err("fields must be at most 8192 bytes of JSON");
                }
                Ok(())
            }
            ClientMessage::Finish(f) => {
                if !RecordEvent::valid_name(&f.outcome) {
                    return Err("outcome must be 1 to 64 characters from a-z 0-9 _ . -");
                }
                if Outcome::SERVER_DECIDED.contains(&f.outcome.as_str()) {
                    return Err("that outcome is decided by the server, not by finish");
                }
                Ok(())
            }
            ClientMessage::Attention(a) if !ok_opt(a.hidden_ms) => {
                Err("hidden_ms must be a finite, non-negative number or null")
            }
            ClientMessage::ProbeResult(r) => {
                if r.rtt_ms.is_some_and(|v| !ok(v)) || r.stats_rtt_ms.is_some_and(|v| !ok(v)) {
                    return Err(
                        "rtt_ms and stats_rtt_ms must be finite, non-negative numbers or null",
                    );
                }
                if r.samples_ms.len() > MAX_PROBE_SAMPLES {
                    return Err("samples_ms has more than 1000 entries");
                }
                if r.samples_ms.iter().any(|&v| !ok(v)) {
                    return Err("samples_ms must hold finite, non-negative numbers");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn classify(text: &str, err: serde_json::Error) -> DecodeError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return DecodeError::NotJson(e.to_string()),
    };
    if !value.is_object() {
        return DecodeError::NotObject;
    }
    let Ok(probe) = serde_json::from_value::<TypeOnly>(value) else {
        return DecodeError::NotObject;
    };
    let Some(serde_json::Value::String(message_type)) = probe.message_type else {
        return DecodeError::MissingType;
    };
    if !CLIENT_MESSAGE_TYPES.contains(&message_type.as_str()) {
        return DecodeError::UnknownType(message_type);
    }
    if message_type == "hello" {
        match probe.subject_id {
            None => return DecodeError::InvalidSubjectId("hello needs a subject_id".into()),
            Some(serde_json::Value::String(s)) => {
                if let Err(e) = SubjectId::parse(s) {
                    return DecodeError::InvalidSubjectId(e.to_string());
                }
            }
            Some(_) => {
                return DecodeError::InvalidSubjectId("subject_id must be a string".into());
            }
        }
    }
    DecodeError::BadField {
        message_type,
        detail: err.to_string(),
    }
}
