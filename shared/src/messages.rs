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
    /// A researcher's own event for the research record (the page's `session.record`).
    Record(RecordEvent),
    /// The participant is done: the page's `session.finish({ outcome })`. The server answers
    /// with `outcome` and closes.
    Finish(Finish),
    /// The page was hidden or shown again (`visibilitychange`, focus), for the record and the
    /// scene's `max_hidden_ms` rule.
    Attention(Attention),
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
    /// The recruiter's URL parameters of the participant's link (Prolific, MTurk), for the
    /// research record's `participant_joined`. Absent: none were in the link. Boxed: six
    /// optional strings would make every [`ClientMessage`] (and every queued frame) 150 bytes
    /// larger for a field only `hello` has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recruiter: Option<Box<RecruiterParams>>,
    /// What the page found about this browser before joining. Absent: not checked (an older
    /// page), taken as capable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<BrowserCheck>,
}

/// Most characters in one recruiter parameter value; longer values are a `bad_message`.
pub const RECRUITER_PARAM_MAX_LEN: usize = 128;

/// The recruiting platforms' URL parameters, kept as they came in the participant's link.
/// Names on the wire are the platforms' own: Prolific's `PROLIFIC_PID`, `STUDY_ID`,
/// `SESSION_ID` (Prolific help centre, "Recording Prolific IDs via URL parameters") and
/// MTurk's ExternalQuestion parameters `workerId`, `assignmentId`, `hitId`. Each value is at
/// most [`RECRUITER_PARAM_MAX_LEN`] characters. These are personal data: they go to the
/// research record, never to another participant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecruiterParams {
    /// Prolific's participant id.
    #[serde(
        rename = "PROLIFIC_PID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prolific_pid: Option<String>,
    /// Prolific's study id (the `{study_id}` placeholder of outcome URLs).
    #[serde(rename = "STUDY_ID", default, skip_serializing_if = "Option::is_none")]
    pub study_id: Option<String>,
    /// Prolific's session id (the `{session_id}` placeholder of outcome URLs).
    #[serde(
        rename = "SESSION_ID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub session_id: Option<String>,
    /// MTurk's worker id.
    #[serde(rename = "workerId", default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// MTurk's assignment id.
    #[serde(
        rename = "assignmentId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub assignment_id: Option<String>,
    /// MTurk's HIT id.
    #[serde(rename = "hitId", default, skip_serializing_if = "Option::is_none")]
    pub hit_id: Option<String>,
}

impl RecruiterParams {
    /// The URL parameter names, in wire order.
    pub const NAMES: [&'static str; 6] = [
        "PROLIFIC_PID",
        "STUDY_ID",
        "SESSION_ID",
        "workerId",
        "assignmentId",
        "hitId",
    ];

    /// Builds them from a lookup of URL parameters (empty values are left out); `None` when
    /// the link has none of them.
    pub fn from_params(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let take = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let p = Self {
            prolific_pid: take("PROLIFIC_PID"),
            study_id: take("STUDY_ID"),
            session_id: take("SESSION_ID"),
            worker_id: take("workerId"),
            assignment_id: take("assignmentId"),
            hit_id: take("hitId"),
        };
        (p != Self::default()).then_some(p)
    }

    /// Every value, for checks.
    pub fn values(&self) -> impl Iterator<Item = &String> {
        [
            &self.prolific_pid,
            &self.study_id,
            &self.session_id,
            &self.worker_id,
            &self.assignment_id,
            &self.hit_id,
        ]
        .into_iter()
        .flatten()
    }
}

/// What the page checked about the browser before joining: a participant whose browser cannot
/// open a WebRTC DataChannel can neither be probed nor play, and is refused at entry
/// (`entry_refused`, reason `browser`) instead of waiting for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowserCheck {
    /// `RTCPeerConnection` exists and could be constructed.
    pub webrtc: bool,
    /// `RTCPeerConnection.createDataChannel` exists.
    pub data_channel: bool,
}

impl BrowserCheck {
    /// Whether the browser can take part.
    pub fn capable(&self) -> bool {
        self.webrtc && self.data_channel
    }
}

/// Most bytes of a `record` message's `fields`, as JSON.
pub const RECORD_FIELDS_MAX_BYTES: usize = 8_192;
/// Most characters of a `record` message's `event` name.
pub const RECORD_EVENT_MAX_LEN: usize = 64;

/// `record`: a researcher's own event. The server writes it to the scene's research record as
/// a `custom` line, attributed to the participant (and their game and player index, when in
/// one), with the server's time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordEvent {
    /// The event's name: 1 to [`RECORD_EVENT_MAX_LEN`] characters from `a-z 0-9 _ . -`
    /// (a name a researcher can filter on).
    pub event: String,
    /// Whatever the researcher wants kept: a JSON object of at most
    /// [`RECORD_FIELDS_MAX_BYTES`] bytes.
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl RecordEvent {
    /// Whether `name` is a valid event (or outcome) name: 1 to [`RECORD_EVENT_MAX_LEN`]
    /// characters from `a-z 0-9 _ . -`.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= RECORD_EVENT_MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
    }
}

/// `finish`: this participant is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finish {
    /// Which outcome: [`Outcome::COMPLETED`] (the default) or another outcome the scene
    /// defines in `[scene.outcomes]`. The outcomes the server decides (`partner_lost`,
    /// `waitroom_timeout`, `left`, `entry_refused`) cannot be claimed.
    #[serde(default = "Outcome::completed")]
    pub outcome: String,
}

/// `attention`: the page's visibility changed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Attention {
    /// `true`: the page was just hidden (another tab, a minimised window) or lost focus;
    /// `false`: it is visible and focused again.
    pub hidden: bool,
    /// With `hidden: false`: how long it was hidden, ms (the page's own clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_ms: Option<f64>,
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
    /// The path measured: the probe connection's selected candidate pair from `getStats()`, in
    /// the shape of `p2p_connection_type`; absent when the pair was not known (no connection,
    /// or an older client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionInfo>,
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
    /// Close a probe connection (running or kept for a game); the server will not adopt it.
    ProbeClose(ProbeClose),
    /// The group was accepted: the game begins. Boxed, so that every [`ServerMessage`] a
    /// connection queues stays small.
    GameStart(Box<GameStart>),
    /// A signalling message from a game peer.
    WebrtcSignal(WebrtcSignalIn),
    /// The game is over for everyone (e.g. a member's connection failed for good).
    GameEnded(GameEnded),
    /// How this participant's part ended and where the page goes next.
    Outcome(Outcome),
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
    /// When the waitroom's "leave" button appears, ms after entering the waitroom (the
    /// scene's `leave_button_after_ms`); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leave_button_after_ms: Option<u64>,
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
    /// The scene's `force_relay`: the probe connection, like the game's, uses TURN relay
    /// candidates only (`iceTransportPolicy: "relay"`), so that it measures the game's path.
    /// Absent: `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_relay: bool,
    /// Keep the probe connection for a game: how long after its `probe_result` the browser
    /// keeps the connection open (parked) so that a `game_start` can adopt it, ms. With it,
    /// both sides create the game's DataChannels on the probe connection before the offer, as
    /// negotiated channels with fixed ids ([`GAME_INPUTS_CHANNEL_ID`], [`GAME_CONTROL_CHANNEL_ID`];
    /// W3C WebRTC §6.2 `negotiated`/`id`, RFC 8832 not used), so that adopting it needs no new
    /// ICE, DTLS or SCTP handshake. A parked connection is closed by `probe_close`, by a
    /// `game_start` that does not adopt it, by `waitroom_timeout`, or when `keep_ms` has passed.
    /// Absent: the connection closes once the result is sent (a client that does not know the
    /// field behaves so, and its games open fresh connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_ms: Option<u64>,
}

/// The SCTP stream id of the game's `inputs` DataChannel (unordered, `maxRetransmits: 0`) when
/// it is created as a negotiated channel on a probe connection kept for a game.
pub const GAME_INPUTS_CHANNEL_ID: u16 = 1;
/// The SCTP stream id of the game's `control` DataChannel (reliable, ordered) when it is
/// created as a negotiated channel on a probe connection kept for a game.
pub const GAME_CONTROL_CHANNEL_ID: u16 = 2;

/// `probe_close`: the server will not hand this probe's connection to a game (the pair or
/// group was rejected, a member left, the measurement expired): close it now. Also ends a
/// probe still running, without a result. Unknown or closed ids are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeClose {
    /// The probe.
    pub probe_session_id: ProbeSessionId,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The P2P RTTs the probe measured and the group was accepted on, one per pair of
    /// members (empty when the scene has no probe).
    #[serde(default)]
    pub pair_rtts: Vec<PairRtt>,
    /// The scene's game settings (`[scene.game]`). Boxed, so that every [`ServerMessage`] a
    /// connection queues stays small.
    #[serde(default)]
    pub game: Box<GameSettings>,
    /// The probe that verified each pair this member belongs to, by the peer's player index,
    /// and whether its connection becomes the game connection to that peer (`handover`).
    /// A peer not listed, or listed with `handover: false`, gets a fresh connection. Empty when
    /// the scene has no probe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<PeerProbe>,
}

/// In `game_start`: the probe that verified the pair (this member, `peer_index`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProbe {
    /// The peer, by player index in the game.
    pub peer_index: PlayerIndex,
    /// The probe, as in its `probe_prepare`.
    pub probe_session_id: ProbeSessionId,
    /// `true`: the probe's connection (kept since the probe, `keep_ms`) becomes the game
    /// connection to this peer; the server says so only when both members are still on the
    /// signalling connections that ran the probe and both reported success. If the browser
    /// no longer has it open, it opens a fresh connection and sends the offer itself, whatever
    /// the initiator rule; a member holding the handed-over connection that receives an offer
    /// whose DTLS fingerprint (`a=fingerprint`) differs from the current remote description's
    /// replaces it with a fresh connection and answers. `false`: a fresh connection, as for a
    /// peer not listed.
    pub handover: bool,
}

/// One pair's measured P2P RTT, by player index (`a < b`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairRtt {
    /// The lower player index.
    pub a: PlayerIndex,
    /// The higher player index.
    pub b: PlayerIndex,
    /// The RTT the verdict used, ms (the larger of the pair's two reports).
    pub rtt_ms: f64,
}

/// The game's settings, from the scene's `[scene.game]` table, delivered in `game_start` so
/// that a participant cannot change them by editing the link. The defaults are the original
/// demo's (33 ms ≈ 30 Hz, three episodes of 10 s, input delay 2 frames; quality thresholds
/// 150/300 ms; ICE restart after 5 s disconnected, 10 s per attempt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GameSettings {
    /// Frame period, ms.
    pub tick_ms: u32,
    /// Episode length, ms.
    pub episode_ms: u32,
    /// Episodes per game.
    pub episodes: u32,
    /// Input delay, frames.
    pub input_delay_frames: u32,
    /// How often the quality monitor reads `getStats`, ms.
    pub quality_interval_ms: u32,
    /// RTT above which the quality is `warning`, ms.
    pub warning_rtt_ms: u32,
    /// RTT above which the quality is `critical`, ms.
    pub critical_rtt_ms: u32,
    /// How long ICE may stay `disconnected` before an ICE restart, ms.
    pub disconnect_grace_ms: u32,
    /// How long one ICE restart attempt may take, ms.
    pub restart_timeout_ms: u32,
    /// The scene's attention rule: a game ends (`member_hidden`) when a member's page stays
    /// hidden longer than this, ms. Absent: hidden pages are only recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_hidden_ms: Option<u64>,
    /// Test mode (`[scene.game] url_overrides = true`): the page may take the settings above
    /// from its URL parameters. Off in a study.
    pub url_overrides: bool,
    /// The researcher's own settings (`[scene.game.settings]`), passed to the page as they are.
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl Default for GameSettings {
    fn default() -> Self {
        Self {
            tick_ms: 33,
            episode_ms: 10_000,
            episodes: 3,
            input_delay_frames: 2,
            quality_interval_ms: 2_000,
            warning_rtt_ms: 150,
            critical_rtt_ms: 300,
            disconnect_grace_ms: 5_000,
            restart_timeout_ms: 10_000,
            max_hidden_ms: None,
            url_overrides: false,
            settings: serde_json::Map::new(),
        }
    }
}

/// `outcome`: how this participant's part in the study ended, and where the page sends them
/// next. Sent once per participant, before the server closes the connection (for a finished
/// game: on `finish`, or with `game_ended`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Which outcome (see the constants on [`Outcome`], or a researcher's own from `finish`).
    pub outcome: String,
    /// The scene's completion code for it (e.g. Prolific's), if it has one.
    pub completion_code: Option<String>,
    /// The scene's URL for it with the placeholders filled in, if it has one: the page goes
    /// there (`location.assign`).
    pub redirect_url: Option<String>,
    /// One sentence for the participant.
    pub message: String,
}

impl Outcome {
    /// The participant finished (`finish`).
    pub const COMPLETED: &'static str = "completed";
    /// Their game ended because a partner left, failed or was hidden (`game_ended`).
    pub const PARTNER_LOST: &'static str = "partner_lost";
    /// Their waitroom deadline passed.
    pub const WAITROOM_TIMEOUT: &'static str = "waitroom_timeout";
    /// They left (`leave`, the waitroom's leave button).
    pub const LEFT: &'static str = "left";
    /// They were refused at entry (server RTT, browser, already took part).
    pub const ENTRY_REFUSED: &'static str = "entry_refused";
    /// The outcomes only the server decides; `finish` cannot name them.
    pub const SERVER_DECIDED: [&'static str; 4] = [
        Self::PARTNER_LOST,
        Self::WAITROOM_TIMEOUT,
        Self::LEFT,
        Self::ENTRY_REFUSED,
    ];

    /// `"completed"`, the default of [`Finish::outcome`].
    pub fn completed() -> String {
        Self::COMPLETED.to_owned()
    }
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
    /// How the game connection was set up: the probe's connection handed over, or a fresh
    /// one. Absent from clients that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<ConnectionSetup>,
    /// Whether the game connection's selected candidate pair is the path the probe measured:
    /// on a handed-over connection, the same candidate pair id; on a fresh one, the same
    /// local and remote candidate types, protocol and relay protocol. `null` when no probe
    /// measured this pair or its path was not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_path_as_probe: Option<bool>,
}

/// How a game connection to a peer was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionSetup {
    /// The accepted probe's `RTCPeerConnection` became the game connection (`game_start`
    /// `probes[].handover`): no new ICE, DTLS or SCTP handshake.
    Handover,
    /// A new `RTCPeerConnection` was negotiated after `game_start`.
    Fresh,
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
    /// How the game connection to this peer was set up; absent from clients that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<ConnectionSetup>,
    /// Whether the connection's path during the episode was the path the probe measured (as
    /// in `p2p_connection_type`); `null` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_path_as_probe: Option<bool>,
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
    /// Times this participant's page was hidden during the episode.
    #[serde(default)]
    pub hidden_count: u32,
    /// How long it was hidden in total during the episode, ms.
    #[serde(default)]
    pub hidden_ms: f64,
}

/// Why a game ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GameEndReason {
    /// A member's connection to a peer failed for good.
    ConnectionFailed,
    /// A member left.
    PeerLeft,
    /// A member's page was hidden longer than the scene's `max_hidden_ms`.
    MemberHidden,
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
    /// The scene's entry rules refused this participant (server RTT above
    /// `max_entry_server_rtt_ms`, a browser without WebRTC); an `outcome` precedes it. Closed.
    EntryRefused,
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
            ErrorCode::EntryRefused => "entry_refused",
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
