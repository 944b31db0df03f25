//! `getStats()` → the selected ICE candidate pair, as a typed [`SelectedPair`]: read once
//! ([`selected_pair`]), or until it has what the caller needs ([`selected_pair_where`]).
//!
//! The path through the report (W3C "Identifiers for WebRTC's Statistics API"):
//! the `transport` entry's `selectedCandidatePairId` → that `candidate-pair` entry →
//! its `localCandidateId` / `remoteCandidateId` → the `local-candidate` / `remote-candidate`
//! entries' `candidateType` (`host`, `srflx`, `prflx`, `relay`). The pair's
//! `currentRoundTripTime` (seconds, from STUN consent checks, RFC 7675) is reported here in ms.
//! Firefox has no `selectedCandidatePairId`; there the pair with `selected: true` is used, and
//! as a last resort a `nominated` pair in state `succeeded`.
//!
//! The browser's report is turned into JSON (`JSON.stringify` of each entry) and read by pure
//! Rust ([`select_pair`]), so the selection logic is tested natively.

use std::collections::HashMap;

use gloo_timers::future::TimeoutFuture;
use pairlab_shared::{CandidateType, ConnectionInfo, ConnectionKind, IceProtocol, RelayProtocol};
use serde_json::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RtcPeerConnection, RtcStatsReport};

use crate::util::js_error_text;

/// Why reading the stats failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// `getStats()` was rejected (e.g. the connection is closed).
    #[error("getStats failed: {0}")]
    GetStats(String),
    /// The report could not be read.
    #[error("could not read the stats report: {0}")]
    Read(String),
}

/// The selected ICE candidate pair of a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedPair {
    /// The `candidate-pair` stats id.
    pub pair_id: String,
    /// The pair's `state` (`succeeded` once it carries traffic).
    pub state: Option<String>,
    /// `candidateType` of the local candidate: `host`, `srflx`, `prflx` or `relay`.
    pub local_candidate_type: Option<String>,
    /// `candidateType` of the remote candidate.
    pub remote_candidate_type: Option<String>,
    /// Transport protocol of the local candidate (`udp` or `tcp`).
    pub protocol: Option<String>,
    /// `relayProtocol` of a local relay candidate: how the browser reaches its TURN server
    /// (`udp`, `tcp` or `tls`); `None` for other candidates.
    pub relay_protocol: Option<String>,
    /// `currentRoundTripTime` of the pair, converted from seconds to ms; `None` before the
    /// first STUN check came back.
    pub current_round_trip_time_ms: Option<f64>,
}

/// Reads `getStats()` of `pc` and picks the selected candidate pair; `Ok(None)` when no pair
/// is selected yet.
///
/// # Errors
/// [`StatsError`] when `getStats` is rejected or its report cannot be read.
pub async fn selected_pair(pc: &RtcPeerConnection) -> Result<Option<SelectedPair>, StatsError> {
    let report = JsFuture::from(pc.get_stats())
        .await
        .map_err(|e| StatsError::GetStats(js_error_text(&e)))?;
    let report: RtcStatsReport = report.unchecked_into();
    let mut entries = Vec::new();
    let values = report.values();
    for value in values.into_iter() {
        let value = value.map_err(|e| StatsError::Read(js_error_text(&e)))?;
        let json =
            js_sys::JSON::stringify(&value).map_err(|e| StatsError::Read(js_error_text(&e)))?;
        let json = String::from(json);
        let parsed: Value =
            serde_json::from_str(&json).map_err(|e| StatsError::Read(e.to_string()))?;
        entries.push(parsed);
    }
    Ok(select_pair(&entries))
}

/// The selected candidate pair of `pc` once `want` accepts it: [`selected_pair`] up to
/// `attempts` times, `retry_ms` apart; `Ok(None)` when no read had it.
///
/// # Errors
/// [`StatsError`] as soon as one read fails.
pub async fn selected_pair_where(
    pc: &RtcPeerConnection,
    attempts: u32,
    retry_ms: u32,
    want: impl Fn(&SelectedPair) -> bool,
) -> Result<Option<SelectedPair>, StatsError> {
    for attempt in 0..attempts {
        if attempt > 0 {
            TimeoutFuture::new(retry_ms).await;
        }
        if let Some(pair) = selected_pair(pc).await? {
            if want(&pair) {
                return Ok(Some(pair));
            }
        }
    }
    Ok(None)
}

/// Picks the selected candidate pair from the entries of a stats report (each an object
/// with at least `id` and `type`). Pure: see the module docs for the path it follows.
pub fn select_pair(entries: &[Value]) -> Option<SelectedPair> {
    let by_id: HashMap<&str, &Value> = entries
        .iter()
        .filter_map(|e| Some((e.get("id")?.as_str()?, e)))
        .collect();
    let of_type = |t: &'static str| {
        entries
            .iter()
            .filter(move |e| e.get("type").and_then(Value::as_str) == Some(t))
    };
    let str_field = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);

    let from_transport = of_type("transport")
        .filter_map(|t| t.get("selectedCandidatePairId")?.as_str())
        .find_map(|id| by_id.get(id).copied());
    let pair = from_transport
        .or_else(|| {
            of_type("candidate-pair")
                .find(|p| p.get("selected").and_then(Value::as_bool) == Some(true))
        })
        .or_else(|| {
            of_type("candidate-pair").find(|p| {
                p.get("nominated").and_then(Value::as_bool) == Some(true)
                    && p.get("state").and_then(Value::as_str) == Some("succeeded")
            })
        })?;

    let candidate = |key: &str| {
        pair.get(key)
            .and_then(Value::as_str)
            .and_then(|id| by_id.get(id).copied())
    };
    let local = candidate("localCandidateId");
    let remote = candidate("remoteCandidateId");
    Some(SelectedPair {
        pair_id: str_field(pair, "id").unwrap_or_default(),
        state: str_field(pair, "state"),
        local_candidate_type: local.and_then(|c| str_field(c, "candidateType")),
        remote_candidate_type: remote.and_then(|c| str_field(c, "candidateType")),
        protocol: local.and_then(|c| str_field(c, "protocol")),
        relay_protocol: local.and_then(|c| str_field(c, "relayProtocol")),
        current_round_trip_time_ms: pair
            .get("currentRoundTripTime")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| s * 1000.0),
    })
}

impl SelectedPair {
    /// The pair as the protocol's [`ConnectionInfo`] (PROTOCOL.md, `p2p_connection_type`):
    /// `relay` when either candidate is a relay candidate, else `direct`. `None` while a
    /// candidate type or the protocol is unknown (e.g. right after the pair was selected).
    pub fn connection_info(&self) -> Option<ConnectionInfo> {
        let local = candidate_type(self.local_candidate_type.as_deref()?)?;
        let remote = candidate_type(self.remote_candidate_type.as_deref()?)?;
        let protocol = match self.protocol.as_deref()? {
            "udp" => IceProtocol::Udp,
            "tcp" => IceProtocol::Tcp,
            _ => return None,
        };
        let relay_protocol = if local == CandidateType::Relay {
            match self.relay_protocol.as_deref() {
                Some("udp") => Some(RelayProtocol::Udp),
                Some("tcp") => Some(RelayProtocol::Tcp),
                Some("tls") => Some(RelayProtocol::Tls),
                _ => None,
            }
        } else {
            None
        };
        let connection_type = if local == CandidateType::Relay || remote == CandidateType::Relay {
            ConnectionKind::Relay
        } else {
            ConnectionKind::Direct
        };
        Some(ConnectionInfo {
            connection_type,
            local_candidate_type: local,
            remote_candidate_type: remote,
            protocol,
            relay_protocol,
        })
    }
}

/// `RTCIceCandidateType` (RFC 8445 §5.1.1) from its stats string.
fn candidate_type(s: &str) -> Option<CandidateType> {
    match s {
        "host" => Some(CandidateType::Host),
        "srflx" => Some(CandidateType::Srflx),
        "prflx" => Some(CandidateType::Prflx),
        "relay" => Some(CandidateType::Relay),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chrome_like(rtt_s: Option<f64>) -> Vec<Value> {
        let mut pair = json!({"id": "CPa_b", "type": "candidate-pair", "state": "succeeded",
            "nominated": true, "localCandidateId": "Ia", "remoteCandidateId": "Ib"});
        if let Some(r) = rtt_s {
            pair["currentRoundTripTime"] = json!(r);
        }
        vec![
            json!({"id": "CPx_y", "type": "candidate-pair", "state": "waiting",
                "localCandidateId": "Ix", "remoteCandidateId": "Iy", "currentRoundTripTime": 9.0}),
            pair,
            json!({"id": "Ia", "type": "local-candidate", "candidateType": "host", "protocol": "udp"}),
            json!({"id": "Ib", "type": "remote-candidate", "candidateType": "prflx", "protocol": "udp"}),
            json!({"id": "T01", "type": "transport", "selectedCandidatePairId": "CPa_b"}),
        ]
    }

    #[test]
    fn follows_transport_to_selected_pair() {
        let p = select_pair(&chrome_like(Some(0.003))).expect("a selected pair");
        assert_eq!(p.pair_id, "CPa_b");
        assert_eq!(p.local_candidate_type.as_deref(), Some("host"));
        assert_eq!(p.remote_candidate_type.as_deref(), Some("prflx"));
        assert_eq!(p.protocol.as_deref(), Some("udp"));
        let rtt = p.current_round_trip_time_ms.expect("rtt");
        assert!((rtt - 3.0).abs() < 1e-9, "{rtt}");
    }

    #[test]
    fn missing_rtt_is_none_not_zero() {
        let p = select_pair(&chrome_like(None)).expect("a selected pair");
        assert_eq!(p.current_round_trip_time_ms, None);
    }

    #[test]
    fn no_selected_pair_yet() {
        let entries = vec![
            json!({"id": "T01", "type": "transport"}),
            json!({"id": "CP1", "type": "candidate-pair", "state": "in-progress"}),
        ];
        assert_eq!(select_pair(&entries), None);
    }

    #[test]
    fn firefox_selected_flag() {
        let entries = vec![
            json!({"id": "p1", "type": "candidate-pair", "selected": false, "currentRoundTripTime": 1.0}),
            json!({"id": "p2", "type": "candidate-pair", "selected": true, "currentRoundTripTime": 0.05,
                "localCandidateId": "l", "remoteCandidateId": "r"}),
            json!({"id": "l", "type": "local-candidate", "candidateType": "relay"}),
            json!({"id": "r", "type": "remote-candidate", "candidateType": "relay"}),
        ];
        let p = select_pair(&entries).expect("a selected pair");
        assert_eq!(p.pair_id, "p2");
        assert_eq!(p.local_candidate_type.as_deref(), Some("relay"));
        assert_eq!(p.current_round_trip_time_ms, Some(50.0));
    }

    #[test]
    fn connection_info_direct_and_relay() {
        let p = select_pair(&chrome_like(Some(0.001))).expect("a selected pair");
        let info = p.connection_info().expect("info");
        assert_eq!(info.connection_type, ConnectionKind::Direct);
        assert_eq!(info.local_candidate_type, CandidateType::Host);
        assert_eq!(info.remote_candidate_type, CandidateType::Prflx);
        assert_eq!(info.protocol, IceProtocol::Udp);
        assert_eq!(info.relay_protocol, None);

        let entries = vec![
            json!({"id": "T", "type": "transport", "selectedCandidatePairId": "P"}),
            json!({"id": "P", "type": "candidate-pair", "localCandidateId": "L", "remoteCandidateId": "R"}),
            json!({"id": "L", "type": "local-candidate", "candidateType": "relay", "protocol": "udp", "relayProtocol": "tcp"}),
            json!({"id": "R", "type": "remote-candidate", "candidateType": "host", "protocol": "udp"}),
        ];
        let info = select_pair(&entries)
            .and_then(|p| p.connection_info())
            .expect("info");
        assert_eq!(info.connection_type, ConnectionKind::Relay);
        assert_eq!(info.relay_protocol, Some(RelayProtocol::Tcp));
    }

    #[test]
    fn connection_info_unknown_while_candidates_missing() {
        let entries = vec![
            json!({"id": "T", "type": "transport", "selectedCandidatePairId": "P"}),
            json!({"id": "P", "type": "candidate-pair", "localCandidateId": "L", "remoteCandidateId": "R"}),
        ];
        let p = select_pair(&entries).expect("pair");
        assert_eq!(p.connection_info(), None);
    }
}
