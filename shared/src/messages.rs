//! Every message of the wire protocol (PROTOCOL.md), as serde types.
//!
//! A frame is one JSON object whose `"type"` field names the message in snake_case; the other
//! fields are the message's own. [`ClientMessage`] is everything a browser sends (C→S),
//! [`ServerMessage`] everything the server sends (S→C). Each message with fields has its own
//! struct, so code can pass one message around by type.
//!
//! Peers are named by their [`PlayerIndex`] in the group (`*_index` fields), never by
//! `subject_id`: a participant's id goes only between them and the server.
//!
//! Durations and RTTs are milliseconds (`_ms`) as JSON numbers; measured values may have
//! fractions, configured ones are whole numbers.

use serde::{Deserialize, Serialize};

use crate::ids::{GameId, PlayerIndex, ProbeSessionId, SubjectId};

/// One STUN or TURN server for the browser, in the shape of WebRTC's `RTCIceServer` dictionary
/// (W3C WebRTC 1.0, §4.2.4): `{ "urls": [string], "username"?: string, "credential"?: string }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs (RFC 7064, RFC 7065).
    pub urls: Vec<String>,
    /// TURN username; absent for STUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential (password); absent for STUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Client → server
// ---------------------------------------------------------------------------------------------

/// Everything a client may send. Decode untrusted text with [`ClientMessage::decode`], which
/// classifies failures into the protocol's error codes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The first frame of every connection.
    Hello(Hello),
    /// The answer to a [`ServerMessage::Ping`], sent at once.
    Pong(Pong),
    /// The participant quits: a final disconnect, the subject is done in the scene.
    Leave,
    /// This side built its probe `RTCPeerConnection` and can start.
    ProbeReady(ProbeReady),
    /// An SDP offer/answer or ICE candidate for the probe peer, relayed by the server.
    ProbeSignal(ProbeSignalOut),
    /// This side's measurement of the probe.
    ProbeResult(ProbeResult),
    /// An SDP offer/answer or ICE candidate for a game peer, relayed by the server.
    WebrtcSignal(WebrtcSignalOut),
    /// How the game connection to a peer was made (from `getStats`).
    P2pConnectionType(P2pConnectionType),
    /// The game connection's quality level changed.
    P2pQuality(P2pQuality),
    /// An ICE restart attempt began or ended.
    P2pIceRestart(P2pIceRestart),
    /// The game connection to a peer is lost for good (every ICE restart failed).
    P2pConnectionFailed(P2pConnectionFailed),
    /// One episode of the game is over: frames and connection metrics.
    EpisodeSummary(EpisodeSummary),
}

/// The participant page's URL parameter that carries a signed link's signature, which the page
/// sends as [`Hello::link_signature`].
pub const LINK_SIGNATURE_PARAM: &str = "sig";

/// `hello`: who this is, which scene, and the token that resumes an earlier session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The participant's id; see [`SubjectId`] for the rule.
    pub subject_id: SubjectId,
    /// The scene to join; absent means the first scene of the server's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene_id: Option<String>,
    /// The `resume_token` of the latest `welcome`, to take an existing session over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    /// The signature of `subject_id` from the participant's link (its `sig` URL parameter):
    /// base64url without padding of HMAC-SHA256(`link_secret`, `subject_id`). Required when the
    /// server's config sets `[server] link_secret`; ignored otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_signature: Option<String>,
}

/// `pong`: echoes a ping's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The `seq` of the ping being answered, unchanged.
    pub seq: u64,
}

/// `probe_ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReady {
    /// The probe from `probe_prepare`.
    pub probe_session_id: ProbeSessionId,
}

/// What a WebRTC signalling message carries (PROTOCOL.md, Probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalType {
    /// An SDP offer (RFC 8829, JSEP): payload `{ "sdp": … }`.
    Offer,
    /// An SDP answer: payload `{ "sdp": … }`.
    Answer,
    /// A trickled ICE candidate (RFC 8838): payload a [`SignalPayload::Candidate`], or `null`
    /// for the end of candidates.
    IceCandidate,
}

/// The body of a signalling message. `null` on the wire (`None` around it) is the end of
/// candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SignalPayload {
    /// An SDP offer or answer.
    Description {
        /// The session description, as `RTCSessionDescription.sdp`.
        sdp: String,
    },
    /// One ICE candidate, as the fields of `RTCIceCandidate`.
    Candidate {
        /// The `candidate-attribute` line (RFC 8839), e.g. `candidate:1 1 udp 2122260223 …`.
        candidate: String,
        /// The media stream id the candidate belongs to.
        sdp_mid: Option<String>,
        /// The m-line index the candidate belongs to.
        sdp_m_line_index: Option<u16>,
    },
}

/// Checks that a payload fits its signal type: a description for an offer or an answer, a
/// candidate or `null` for an ICE candidate.
///
/// # Errors
/// A sentence for a person saying what does not fit.
pub fn check_signal(
    signal_type: SignalType,
    payload: Option<&SignalPayload>,
) -> Result<(), &'static str> {
    match (signal_type, payload) {
        (SignalType::Offer | SignalType::Answer, Some(SignalPayload::Description { .. })) => Ok(()),
        (SignalType::Offer | SignalType::Answer, _) => {
            Err("an offer or an answer needs a payload of the form {\"sdp\": string}")
        }
        (SignalType::IceCandidate, Some(SignalPayload::Candidate { .. }) | None) => Ok(()),
        (SignalType::IceCandidate, _) => Err(
            "an ice_candidate needs a payload of the form {\"candidate\", \"sdp_mid\", \"sdp_m_line_index\"} or null",
        ),
    }
}

/// `probe_signal` from a client: aimed at the other member of the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSignalOut {
    /// The probe this signal belongs to.
    pub probe_session_id: ProbeSessionId,
    /// The peer it is for, by player index; must be the other member of the probe.
    pub target_index: PlayerIndex,
    /// What `payload` is.
    pub signal_type: SignalType,
    /// The SDP or candidate; `null` ends the candidates.
    pub payload: Option<SignalPayload>,
}

/// `probe_result`: one side's measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The probe measured.
    pub probe_session_id: ProbeSessionId,
    /// Whether the DataChannel opened and RTT samples came back.
    pub success: bool,
    /// Median RTT over the probe's DataChannel, ms; `null` when nothing was measured.
    pub rtt_ms: Option<f64>,
    /// The individual DataChannel ping/pong RTTs, ms.
    #[serde(default)]
    pub samples_ms: Vec<f64>,
    /// `currentRoundTripTime` of the selected ICE candidate pair from `getStats()`
    /// (W3C webrtc-stats, `RTCIceCandidatePairStats`), converted to ms; `null` when absent.
    pub stats_rtt_ms: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Server → client
// ---------------------------------------------------------------------------------------------

/// Everything the server may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to `hello`.
    Welcome(Welcome),
    /// Server RTT measurement; the client answers with `pong` at once.
    Ping(Ping),
    /// The participant is in the waitroom.
    Waitroom(Waitroom),
    /// The waitroom deadline passed; the server closes the socket after this.
    WaitroomTimeout(WaitroomTimeout),
    /// Build a probe connection to the peer `peer_index` and answer `probe_ready`.
    ProbePrepare(ProbePrepare),
    /// Both sides are ready; the initiator sends the offer.
    ProbeStart(ProbeStart),
    /// A signalling message from the probe peer.
    ProbeSignal(ProbeSignalIn),
    /// The group was accepted: the game begins.
    GameStart(GameStart),
    /// A signalling message from a game peer.
    WebrtcSignal(WebrtcSignalIn),
    /// The game is over for everyone (e.g. a member's connection failed for good).
    GameEnded(GameEnded),
    /// Something the client sent was refused.
    Error(ErrorMessage),
}

/// `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The participant's id, as accepted.
    pub subject_id: SubjectId,
    /// The scene joined.
    pub scene_id: String,
    /// Presents this in a later `hello` to resume the session; keep the latest.
    pub resume_token: String,
    /// Participants per game in this scene (≥ 2).
    pub group_size: u32,
    /// Whether `waitroom.waiting` is hidden (`null`).
    pub hide_lobby_count: bool,
    /// The scene's waitroom timeout, ms.
    pub waitroom_timeout_ms: u64,
}

/// `ping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// An opaque id to echo in `pong`: random (not a counter), at most 2^53 − 1 so a
    /// JavaScript number holds it exactly.
    pub seq: u64,
}

/// `waitroom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waitroom {
    /// Everyone waiting in the scene, the recipient included; `null` when the scene hides it.
    pub waiting: Option<u32>,
    /// Participants per game.
    pub group_size: u32,
    /// What is left of this participant's own waitroom deadline, ms.
    pub remaining_ms: u64,
}

/// `waitroom_timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitroomTimeout {
    /// The scene's `timeout_message`, for the participant.
    pub message: String,
    /// Where the page sends the participant next (e.g. the platform's completion URL).
    pub redirect_url: Option<String>,
}

/// `probe_prepare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbePrepare {
    /// The probe's id.
    pub probe_session_id: ProbeSessionId,
    /// The other member, by player index in the proposed group.
    pub peer_index: PlayerIndex,
    /// STUN/TURN servers for the probe connection.
    pub ice_servers: Vec<IceServer>,
    /// The server's deadline, ms from this message.
    pub timeout_ms: u64,
}

/// `probe_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStart {
    /// The probe.
    pub probe_session_id: ProbeSessionId,
    /// Whether this side creates the DataChannel and sends the offer.
    pub initiator: bool,
}

/// `probe_signal` to a client: relayed from the other member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSignalIn {
    /// The probe.
    pub probe_session_id: ProbeSessionId,
    /// Who sent it, by player index.
    pub from_index: PlayerIndex,
    /// What `payload` is.
    pub signal_type: SignalType,
    /// Unchanged from the sender.
    pub payload: Option<SignalPayload>,
}

/// `game_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameStart {
    /// The game's id.
    pub game_id: GameId,
    /// This participant's [`PlayerIndex`]: 0-based, in player order.
    pub player_index: PlayerIndex,
    /// Players in the game; their indices are `0..player_count`.
    pub player_count: u32,
    /// STUN/TURN servers for the game connection.
    pub ice_servers: Vec<IceServer>,
    /// Whether the game connection must use TURN relay only (`iceTransportPolicy: "relay"`).
    pub force_relay: bool,
}

// ---------------------------------------------------------------------------------------------
// Game connection (after `game_start`)
// ---------------------------------------------------------------------------------------------

/// `webrtc_signal` from a client: for another member of the game.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebrtcSignalOut {
    /// The game.
    pub game_id: GameId,
    /// The member it is for, by player index; must be another member of the game.
    pub target_index: PlayerIndex,
    /// What `payload` is.
    pub signal_type: SignalType,
    /// The SDP or candidate; `null` ends the candidates.
    pub payload: Option<SignalPayload>,
}

/// `webrtc_signal` to a client: relayed from another member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebrtcSignalIn {
    /// The game.
    pub game_id: GameId,
    /// Who sent it, by player index.
    pub from_index: PlayerIndex,
    /// What `payload` is.
    pub signal_type: SignalType,
    /// Unchanged from the sender.
    pub payload: Option<SignalPayload>,
}

/// Whether the selected ICE candidate pair goes through a TURN relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// Neither candidate is a relay candidate (host, srflx or prflx on both sides).
    Direct,
    /// The local or the remote candidate is a TURN relay candidate.
    Relay,
}

/// An ICE candidate's type (RFC 8445 §5.1.1; `RTCIceCandidateType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateType {
    /// The host's own address.
    Host,
    /// Server reflexive: the address a STUN server saw (behind NAT).
    Srflx,
    /// Peer reflexive: learned from the peer's connectivity checks.
    Prflx,
    /// Allocated on a TURN server.
    Relay,
}

/// Transport protocol of a candidate (`RTCIceProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IceProtocol {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// Protocol between the browser and its TURN server (`RTCIceServerTransportProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayProtocol {
    /// TURN over UDP.
    Udp,
    /// TURN over TCP.
    Tcp,
    /// TURN over TLS (`turns:`).
    Tls,
}

/// How a game connection is made: the selected candidate pair from `getStats()`
/// (`transport.selectedCandidatePairId` → `candidate-pair` → local and remote candidates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// `relay` when either candidate is a relay candidate.
    pub connection_type: ConnectionKind,
    /// The local candidate's type.
    pub local_candidate_type: CandidateType,
    /// The remote candidate's type.
    pub remote_candidate_type: CandidateType,
    /// The local candidate's transport.
    pub protocol: IceProtocol,
    /// For a local relay candidate, how the browser reaches its TURN server; else `null`.
    pub relay_protocol: Option<RelayProtocol>,
}

/// `p2p_connection_type`: sent once a game connection to a peer is up (and again after an ICE
/// restart changes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct P2pConnectionType {
    /// The game.
    pub game_id: GameId,
    /// The peer this connection goes to, by player index.
    pub peer_index: PlayerIndex,
    /// The selected candidate pair.
    #[serde(flatten)]
    pub info: ConnectionInfo,
    /// From `game_start` to the connection being up (DataChannels open), ms.
    pub connect_ms: Option<f64>,
}

/// Quality of a game connection, from the selected pair's `currentRoundTripTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityLevel {
    /// RTT at or below the warning threshold.
    Ok,
    /// RTT above the warning threshold (default 150 ms).
    Warning,
    /// RTT above the critical threshold (default 300 ms).
    Critical,
}

/// `p2p_quality`: the level changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct P2pQuality {
    /// The game.
    pub game_id: GameId,
    /// The peer, by player index.
    pub peer_index: PlayerIndex,
    /// The new level.
    pub level: QualityLevel,
    /// The RTT that changed it, ms.
    pub rtt_ms: Option<f64>,
}

/// What started an ICE restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IceRestartTrigger {
    /// `iceConnectionState` became `failed` (restart at once).
    Failed,
    /// `iceConnectionState` stayed `disconnected` past the grace (default 5 s).
    Disconnected,
}

/// Where an ICE restart attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IceRestartOutcome {
    /// The attempt began (the initiator sent an offer with `iceRestart: true`).
    Started,
    /// The connection came back.
    Succeeded,
    /// The attempt timed out or failed.
    Failed,
}

/// `p2p_ice_restart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct P2pIceRestart {
    /// The game.
    pub game_id: GameId,
    /// The peer, by player index.
    pub peer_index: PlayerIndex,
    /// 1-based attempt number (at most 3 by default).
    pub attempt: u32,
    /// What started it.
    pub trigger: IceRestartTrigger,
    /// Where it stands.
    pub outcome: IceRestartOutcome,
    /// From the attempt's start to this outcome, ms (`null` for `started`).
    pub duration_ms: Option<f64>,
}

/// `p2p_connection_failed`: every ICE restart failed; the server ends the game.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct P2pConnectionFailed {
    /// The game.
    pub game_id: GameId,
    /// The peer that cannot be reached, by player index.
    pub peer_index: PlayerIndex,
    /// ICE restarts tried.
    pub attempts: u32,
}

/// Min / median / max of RTT samples, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RttSummary {
    /// Smallest sample, ms.
    pub min: f64,
    /// Median sample, ms.
    pub median: f64,
    /// Largest sample, ms.
    pub max: f64,
    /// Number of samples.
    pub samples: u32,
}

/// One quality level change, for the episode summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualityChange {
    /// The new level.
    pub level: QualityLevel,
    /// When, ms after the episode began.
    pub at_ms: f64,
}

/// Connection metrics toward one peer over one episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerMetrics {
    /// The peer, by player index.
    pub peer_index: PlayerIndex,
    /// Inputs received from this peer (after de-duplication of the redundant copies).
    pub inputs_received: u64,
    /// How the connection is made, if known.
    pub connection: Option<ConnectionInfo>,
    /// The selected pair's `currentRoundTripTime` samples, ms.
    pub rtt_ms: Option<RttSummary>,
    /// Quality level changes.
    pub quality_changes: Vec<QualityChange>,
    /// ICE restarts attempted.
    pub ice_restarts: u32,
}

/// `episode_summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeSummary {
    /// The game.
    pub game_id: GameId,
    /// 1-based episode number.
    pub episode: u32,
    /// Frames (ticks) played in the episode.
    pub frames: u32,
    /// Local inputs sent (each once, not counting redundant copies).
    pub inputs_sent: u64,
    /// Per peer.
    pub peers: Vec<PeerMetrics>,
}

/// Why a game ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GameEndReason {
    /// A member's connection to a peer failed for good.
    ConnectionFailed,
    /// A member left.
    PeerLeft,
}

/// `game_ended`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameEnded {
    /// The game.
    pub game_id: GameId,
    /// Why.
    pub reason: GameEndReason,
    /// One sentence for the participant.
    pub message: String,
}

/// `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// What went wrong, as a code a program can act on.
    pub code: ErrorCode,
    /// One sentence for a person.
    pub message: String,
}

/// The protocol's error codes (PROTOCOL.md, Errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing or mistyped field. Connection stays open.
    BadMessage,
    /// A `type` the server does not know. Connection stays open.
    UnknownType,
    /// The first frame is not a `hello`, or `hello` came twice. Connection closed.
    HelloRequired,
    /// `subject_id` missing, not a string, or against the rule. Connection closed.
    InvalidSubjectId,
    /// `scene_id` names no scene. Connection closed.
    UnknownScene,
    /// The `subject_id` has a session in this scene (connected, or in its reconnect grace) or
    /// has taken part already, and the `hello` carried no valid `resume_token`. One answer for
    /// both, so that a `hello` does not tell a stranger which of the two it is. Closed.
    IdInUse,
    /// The session's own `resume_token` came back after the session ended (its waitroom time
    /// was up). Closed.
    AlreadyDone,
    /// The server requires signed participant links (`[server] link_secret`) and the `hello`'s
    /// `link_signature` is missing or is not the signature of its `subject_id`. Closed.
    InvalidLink,
    /// A probe or game message for something this subject is not in. Stays open.
    NotAMember,
    /// Too many frames. Closed.
    RateLimited,
}

impl ErrorCode {
    /// Whether the server closes the connection after this error (PROTOCOL.md's table).
    pub fn closes_connection(self) -> bool {
        !matches!(
            self,
            ErrorCode::BadMessage | ErrorCode::UnknownType | ErrorCode::NotAMember
        )
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::InvalidSubjectId => "invalid_subject_id",
            ErrorCode::UnknownScene => "unknown_scene",
            ErrorCode::IdInUse => "id_in_use",
            ErrorCode::AlreadyDone => "already_done",
            ErrorCode::InvalidLink => "invalid_link",
            ErrorCode::NotAMember => "not_a_member",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ServerMessage {
    /// An `error` message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error(ErrorMessage {
            code,
            message: message.into(),
        })
    }

    /// The message as one JSON text frame.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl ClientMessage {
    /// The message as one JSON text frame.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

fn to_json<T: Serialize>(msg: &T) -> String {
    // Cannot fail: these are plain derived types with string keys, and serde_json writes
    // non-finite floats as null instead of failing.
    serde_json::to_string(msg).expect("protocol messages always serialize")
}
