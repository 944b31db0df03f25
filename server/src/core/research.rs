//! What the research record holds: one [`ResearchEvent`] per line of
//! `<data-dir>/<scene_id>/events.jsonl`.
//!
//! The core emits events without a wall-clock time; the record writer adds `ts` (RFC 3339 UTC,
//! milliseconds) and `scene_id`, so a line reads
//! `{"ts":"2026-11-22T01:16:43.123Z","event":"probe_result","scene_id":"s1",…}`.

use pairlab_shared::{
    ConnectionInfo, GameEndReason, GameId, IceRestartOutcome, IceRestartTrigger, PeerMetrics,
    ProbeSessionId, QualityLevel, SubjectId,
};
use serde::Serialize;

/// One line of the research record, before `ts` and `scene_id` are added.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ResearchEvent {
    /// A participant said `hello` and got `welcome` (first time, or resumed with the token).
    ParticipantJoined {
        /// Who.
        subject_id: SubjectId,
        /// Whether this took over an existing session with its `resume_token`.
        resumed: bool,
    },
    /// The server's own RTT estimate for a participant, when they enter matchmaking.
    ServerRtt {
        /// Who.
        subject_id: SubjectId,
        /// Median of `samples_ms`.
        median_ms: f64,
        /// The ping→pong samples the median is taken over, ms, oldest first.
        samples_ms: Vec<f64>,
    },
    /// A matchmaker proposed a group.
    MatchProposed {
        /// The members, in player order (arrival order).
        members: Vec<SubjectId>,
        /// Each member's server RTT median at proposal, ms (`null`: unknown).
        server_rtts_ms: Vec<Option<f64>>,
        /// `fifo` or `latency_fifo`.
        matchmaker: &'static str,
        /// Whether the group will be probed (the scene has `max_p2p_rtt_ms`).
        probe: bool,
    },
    /// A probe began: `probe_prepare` went to both members.
    ProbeStarted {
        /// The probe.
        probe_session_id: ProbeSessionId,
        /// Its two members; the first is the initiator (smaller subject_id).
        members: [SubjectId; 2],
        /// The server's deadline, ms from `probe_prepare`.
        timeout_ms: u64,
    },
    /// A probe was decided.
    ProbeResult {
        /// The probe.
        probe_session_id: ProbeSessionId,
        /// Its two members, initiator first.
        members: [SubjectId; 2],
        /// Each member's report, in `members` order; `null` for a member who sent none.
        reports: [Option<ProbeReport>; 2],
        /// Whether the pair passed `max_p2p_rtt_ms`.
        accepted: bool,
        /// The RTT the decision used: the largest reported `rtt_ms`, ms.
        rtt_ms: Option<f64>,
        /// The scene's threshold, ms.
        max_p2p_rtt_ms: f64,
        /// Why it was rejected, if it was.
        reason: Option<ProbeFailure>,
        /// From `probe_prepare` to both `probe_ready`s, ms (`null` if they never came).
        ready_ms: Option<f64>,
        /// From `probe_prepare` to the decision, ms.
        duration_ms: f64,
    },
    /// A proposed group did not become a game; its members went back to the waitroom.
    MatchRejected {
        /// The members.
        members: Vec<SubjectId>,
        /// Why.
        reason: ProbeFailure,
        /// The pairs that failed and will not be probed again in this scene.
        failed_pairs: Vec<[SubjectId; 2]>,
    },
    /// A group was accepted and got `game_start`.
    GameCreated {
        /// The game.
        game_id: GameId,
        /// Members in player order.
        players: Vec<SubjectId>,
        /// Each pair's decided probe RTT, ms (empty without probing).
        p2p_rtts_ms: Vec<PairRtt>,
    },
    /// A participant's waitroom deadline passed.
    WaitroomTimeout {
        /// Who.
        subject_id: SubjectId,
        /// How long they had been in the waitroom, ms.
        waited_ms: f64,
    },
    /// A participant's socket closed without `leave`; their reconnect grace begins.
    ParticipantDropped {
        /// Who.
        subject_id: SubjectId,
        /// The grace, ms.
        reconnect_grace_ms: u64,
    },
    /// A member's game connection to a peer is up: how it was made (`p2p_connection_type`).
    P2pConnectionType {
        /// The game.
        game_id: GameId,
        /// Who reported it.
        subject_id: SubjectId,
        /// The peer the connection goes to.
        peer_subject_id: SubjectId,
        /// The selected candidate pair.
        #[serde(flatten)]
        connection: ConnectionInfo,
        /// From `game_start` to the connection being up, ms.
        connect_ms: Option<f64>,
    },
    /// A game connection's quality level changed (`p2p_quality`).
    P2pQuality {
        /// The game.
        game_id: GameId,
        /// Who reported it.
        subject_id: SubjectId,
        /// The peer.
        peer_subject_id: SubjectId,
        /// The new level.
        level: QualityLevel,
        /// The RTT that changed it, ms.
        rtt_ms: Option<f64>,
    },
    /// An ICE restart attempt began or ended (`p2p_ice_restart`).
    P2pIceRestart {
        /// The game.
        game_id: GameId,
        /// Who reported it.
        subject_id: SubjectId,
        /// The peer.
        peer_subject_id: SubjectId,
        /// 1-based attempt.
        attempt: u32,
        /// What started it.
        trigger: IceRestartTrigger,
        /// Where it stands.
        outcome: IceRestartOutcome,
        /// From the attempt's start to this outcome, ms.
        duration_ms: Option<f64>,
    },
    /// A member's connection to a peer failed for good (`p2p_connection_failed`).
    P2pConnectionFailed {
        /// The game.
        game_id: GameId,
        /// Who reported it.
        subject_id: SubjectId,
        /// The unreachable peer.
        peer_subject_id: SubjectId,
        /// ICE restarts tried.
        attempts: u32,
    },
    /// A member's summary of one episode (`episode_summary`).
    EpisodeSummary {
        /// The game.
        game_id: GameId,
        /// Who reported it.
        subject_id: SubjectId,
        /// 1-based episode number.
        episode: u32,
        /// Frames played.
        frames: u32,
        /// Inputs sent.
        inputs_sent: u64,
        /// Per-peer connection metrics.
        peers: Vec<PeerMetrics>,
    },
    /// The server ended a game and told every member (`game_ended`).
    GameEnded {
        /// The game.
        game_id: GameId,
        /// Why.
        reason: GameEndReason,
        /// The member whose connection failed or who left.
        subject_id: SubjectId,
    },
    /// A participant is gone from the scene for good.
    ParticipantLeft {
        /// Who.
        subject_id: SubjectId,
        /// `leave` (they quit) or `grace_expired` (dropped and did not come back in time).
        reason: LeaveReason,
    },
}

/// One member's `probe_result`, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// Whether the DataChannel opened and RTTs came back.
    pub success: bool,
    /// Median DataChannel RTT, ms.
    pub rtt_ms: Option<f64>,
    /// Individual DataChannel RTTs, ms.
    pub samples_ms: Vec<f64>,
    /// `currentRoundTripTime` of the selected candidate pair, ms.
    pub stats_rtt_ms: Option<f64>,
    /// When it arrived, ms after `probe_prepare`.
    pub received_ms: f64,
}

/// Why a probe or a proposed group failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeFailure {
    /// The measured RTT exceeded `max_p2p_rtt_ms`.
    RttTooHigh,
    /// A member reported `success: false` or a `null` RTT.
    MeasurementFailed,
    /// A report was missing at the deadline.
    Timeout,
    /// A member disconnected or left during the probe.
    Disconnected,
}

/// Why a participant left for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// They sent `leave`.
    Leave,
    /// They dropped and did not reconnect within `reconnect_grace_ms`.
    GraceExpired,
}

/// A pair's probe RTT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairRtt {
    /// The two members.
    pub members: [SubjectId; 2],
    /// The decided RTT, ms.
    pub rtt_ms: f64,
}
