//! What the research record holds: one [`ResearchEvent`] per line of
//! `<data-dir>/<scene_id>/events.jsonl`.
//!
//! The core emits events without a wall-clock time; the record writer adds `ts` (RFC 3339 UTC,
//! milliseconds) and `scene_id`, so a line reads
//! `{"ts":"2026-11-22T01:16:43.123Z","event":"probe_result","scene_id":"s1",…}`.

use pairlab_shared::{
    ConnectionInfo, ConnectionSetup, GameEndReason, GameId, IceRestartOutcome, IceRestartTrigger,
    PeerMetrics, PlayerIndex, ProbeSessionId, QualityLevel, RecruiterParams, SubjectId,
};
use serde::Serialize;

/// One peer's metrics in an `episode_summary` line: the client's [`PeerMetrics`] (which names
/// the peer by player index, as the wire does) with the peer's `subject_id` beside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerReport {
    /// The peer's id.
    pub peer_subject_id: SubjectId,
    /// The metrics as reported.
    #[serde(flatten)]
    pub metrics: PeerMetrics,
}

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
        /// The recruiter's URL parameters of the link (`hello.recruiter`: `PROLIFIC_PID`,
        /// `STUDY_ID`, `SESSION_ID`, `workerId`, `assignmentId`, `hitId`); absent when none.
        #[serde(skip_serializing_if = "Option::is_none")]
        recruiter: Option<Box<RecruiterParams>>,
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
        /// Each pair's probe and whether the server offered its connection to the game
        /// (`game_start.probes[].handover`), in pair order (empty without probing).
        probes: Vec<PairProbe>,
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
        /// How the connection was set up: the probe's handed over, or a fresh one (`null`: the
        /// client did not say).
        setup: Option<ConnectionSetup>,
        /// Whether its selected candidate pair is the path the probe measured (`null`:
        /// unknown, or not said).
        same_path_as_probe: Option<bool>,
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
        peers: Vec<PeerReport>,
        /// Times the reporter's page was hidden during the episode (`visibilitychange`, focus
        /// loss).
        hidden_count: u32,
        /// How long it was hidden in total during the episode, ms (the page's clock).
        hidden_ms: f64,
    },
    /// The server ended a game and told every member still playing (`game_ended`), or every
    /// member has finished (`finished`, nobody is told).
    GameEnded {
        /// The game.
        game_id: GameId,
        /// Why.
        reason: GameEndCause,
        /// The member whose connection failed, who left, who was hidden, or who was the last
        /// to finish or go.
        subject_id: SubjectId,
    },
    /// How a participant's part ended (`outcome`, sent once per participant).
    ParticipantOutcome {
        /// Who.
        subject_id: SubjectId,
        /// The outcome's name (`completed`, `partner_lost`, `waitroom_timeout`, `left`,
        /// `entry_refused`, or the scene's own).
        outcome: String,
        /// The completion code sent with it, if the scene has one.
        completion_code: Option<String>,
        /// Their game, when they were in one.
        game_id: Option<GameId>,
        /// Their player index in it.
        player_index: Option<PlayerIndex>,
    },
    /// The scene's entry rules refused a participant (`entry_refused`).
    ParticipantRefused {
        /// Who.
        subject_id: SubjectId,
        /// Which rule.
        reason: RefusalReason,
        /// With `server_rtt`: the median of the first server-RTT samples, ms.
        server_rtt_median_ms: Option<f64>,
        /// With `server_rtt`: the scene's `max_entry_server_rtt_ms`.
        max_entry_server_rtt_ms: Option<f64>,
    },
    /// A researcher's own event (`record`), with the server's time in `ts`.
    Custom {
        /// Who sent it.
        subject_id: SubjectId,
        /// Their game, when in one.
        game_id: Option<GameId>,
        /// Their player index in it.
        player_index: Option<PlayerIndex>,
        /// The event's name, as sent (`record.event`; the line's own `event` is `custom`).
        name: String,
        /// The fields, as sent.
        fields: serde_json::Map<String, serde_json::Value>,
    },
    /// The participant's page was hidden or shown again (`attention`).
    Attention {
        /// Who.
        subject_id: SubjectId,
        /// Their game, when in one.
        game_id: Option<GameId>,
        /// Their player index in it.
        player_index: Option<PlayerIndex>,
        /// `true`: hidden now; `false`: visible again.
        hidden: bool,
        /// With `hidden: false`: how long it was hidden by the page's clock, ms.
        hidden_ms: Option<f64>,
    },
    /// A participant is gone from the scene for good.
    ParticipantLeft {
        /// Who.
        subject_id: SubjectId,
        /// `leave` (they quit), `grace_expired` (dropped and did not come back in time) or
        /// `server_shutdown` (the server stopped while their session was live).
        reason: LeaveReason,
    },
    /// The server started: the first line of every scene's record for this run of the server
    /// (written before any connection is accepted).
    ServerStarted {
        /// The server's version (`pairlab --version`).
        version: &'static str,
        /// SHA-256 (lower-case hex) of the validated configuration's canonical form (its Rust
        /// `Debug` rendering): equal for two runs with the same effective options, whatever
        /// the TOML's comments, spacing or key order; different when any option differs.
        config_sha256: String,
    },
    /// The server began shutting down (SIGTERM, Ctrl-C). Followed, in the same record, by one
    /// `participant_left` with reason `server_shutdown` for each of the scene's live sessions,
    /// and by nothing else: a run whose record has `server_started` but no `server_stopping`
    /// ended in a crash.
    ServerStopping {
        /// The scene's live sessions (connected or in their reconnect grace), that is how many
        /// `participant_left` lines follow.
        live_participants: usize,
    },
}

impl ResearchEvent {
    /// The `server_started` line for a server running `config`.
    pub fn server_started(config: &crate::config::Config) -> ResearchEvent {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("{config:?}").as_bytes());
        ResearchEvent::ServerStarted {
            version: env!("CARGO_PKG_VERSION"),
            config_sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
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
    /// The path measured: the probe connection's selected candidate pair (the shape of
    /// `p2p_connection_type`); `null` when the client did not know it.
    pub connection: Option<ConnectionInfo>,
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
    /// The server shut down while their session was live.
    ServerShutdown,
    /// They sent `finish` (their outcome is in the `participant_outcome` line before).
    Finished,
    /// The scene's entry rules refused them.
    EntryRefused,
}

/// Why a game ended, in the record: the wire's [`GameEndReason`]s and `finished`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GameEndCause {
    /// A member's connection to a peer failed for good.
    ConnectionFailed,
    /// A member left while others were still playing.
    PeerLeft,
    /// A member's page was hidden longer than `max_hidden_ms`.
    MemberHidden,
    /// Every member finished (`finish`) or, having finished, was gone.
    Finished,
}

impl From<GameEndReason> for GameEndCause {
    fn from(r: GameEndReason) -> Self {
        match r {
            GameEndReason::ConnectionFailed => GameEndCause::ConnectionFailed,
            GameEndReason::PeerLeft => GameEndCause::PeerLeft,
            GameEndReason::MemberHidden => GameEndCause::MemberHidden,
        }
    }
}

/// Which entry rule refused a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// Their first server-RTT median was above `max_entry_server_rtt_ms`.
    ServerRtt,
    /// `hello.browser` said the browser cannot open a WebRTC DataChannel.
    Browser,
}

/// A pair of a new game: the probe that verified it, and whether the server offered that
/// probe's connection to the game (`handover`, PROTOCOL.md "Handover").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairProbe {
    /// The two members, initiator first (as in `probe_started`).
    pub members: [SubjectId; 2],
    /// The probe.
    pub probe_session_id: ProbeSessionId,
    /// Whether `game_start` told both members to adopt the probe's connection.
    pub handover: bool,
}

/// A pair's probe RTT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairRtt {
    /// The two members.
    pub members: [SubjectId; 2],
    /// The decided RTT, ms.
    pub rtt_ms: f64,
}

/// Which [`ResearchEvent`] a record line is, without its fields: the `event` name of a line
/// (`probe_result`, …) as a type. Readers of the record (the end-to-end harness, analyses)
/// match on it instead of on name strings, so the names have one home: this enum's serde
/// names, which equal [`ResearchEvent`]'s `event` tags (checked by a unit test below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResearchEventKind {
    /// [`ResearchEvent::ParticipantJoined`].
    ParticipantJoined,
    /// [`ResearchEvent::ServerRtt`].
    ServerRtt,
    /// [`ResearchEvent::MatchProposed`].
    MatchProposed,
    /// [`ResearchEvent::ProbeStarted`].
    ProbeStarted,
    /// [`ResearchEvent::ProbeResult`].
    ProbeResult,
    /// [`ResearchEvent::MatchRejected`].
    MatchRejected,
    /// [`ResearchEvent::GameCreated`].
    GameCreated,
    /// [`ResearchEvent::WaitroomTimeout`].
    WaitroomTimeout,
    /// [`ResearchEvent::ParticipantDropped`].
    ParticipantDropped,
    /// [`ResearchEvent::P2pConnectionType`].
    P2pConnectionType,
    /// [`ResearchEvent::P2pQuality`].
    P2pQuality,
    /// [`ResearchEvent::P2pIceRestart`].
    P2pIceRestart,
    /// [`ResearchEvent::P2pConnectionFailed`].
    P2pConnectionFailed,
    /// [`ResearchEvent::EpisodeSummary`].
    EpisodeSummary,
    /// [`ResearchEvent::GameEnded`].
    GameEnded,
    /// [`ResearchEvent::ParticipantLeft`].
    ParticipantLeft,
    /// [`ResearchEvent::ServerStarted`].
    ServerStarted,
    /// [`ResearchEvent::ServerStopping`].
    ServerStopping,
    /// [`ResearchEvent::ParticipantOutcome`].
    ParticipantOutcome,
    /// [`ResearchEvent::ParticipantRefused`].
    ParticipantRefused,
    /// [`ResearchEvent::Custom`].
    Custom,
    /// [`ResearchEvent::Attention`].
    Attention,
}

impl ResearchEventKind {
    /// The `event` name of a record line of this kind (`probe_result`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            ResearchEventKind::ParticipantJoined => "participant_joined",
            ResearchEventKind::ServerRtt => "server_rtt",
            ResearchEventKind::MatchProposed => "match_proposed",
            ResearchEventKind::ProbeStarted => "probe_started",
            ResearchEventKind::ProbeResult => "probe_result",
            ResearchEventKind::MatchRejected => "match_rejected",
            ResearchEventKind::GameCreated => "game_created",
            ResearchEventKind::WaitroomTimeout => "waitroom_timeout",
            ResearchEventKind::ParticipantDropped => "participant_dropped",
            ResearchEventKind::P2pConnectionType => "p2p_connection_type",
            ResearchEventKind::P2pQuality => "p2p_quality",
            ResearchEventKind::P2pIceRestart => "p2p_ice_restart",
            ResearchEventKind::P2pConnectionFailed => "p2p_connection_failed",
            ResearchEventKind::EpisodeSummary => "episode_summary",
            ResearchEventKind::GameEnded => "game_ended",
            ResearchEventKind::ParticipantLeft => "participant_left",
            ResearchEventKind::ServerStarted => "server_started",
            ResearchEventKind::ServerStopping => "server_stopping",
            ResearchEventKind::ParticipantOutcome => "participant_outcome",
            ResearchEventKind::ParticipantRefused => "participant_refused",
            ResearchEventKind::Custom => "custom",
            ResearchEventKind::Attention => "attention",
        }
    }
}

impl std::fmt::Display for ResearchEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ResearchEvent {
    /// This event's [`ResearchEventKind`] (its `event` tag).
    pub fn kind(&self) -> ResearchEventKind {
        match self {
            ResearchEvent::ParticipantJoined { .. } => ResearchEventKind::ParticipantJoined,
            ResearchEvent::ServerRtt { .. } => ResearchEventKind::ServerRtt,
            ResearchEvent::MatchProposed { .. } => ResearchEventKind::MatchProposed,
            ResearchEvent::ProbeStarted { .. } => ResearchEventKind::ProbeStarted,
            ResearchEvent::ProbeResult { .. } => ResearchEventKind::ProbeResult,
            ResearchEvent::MatchRejected { .. } => ResearchEventKind::MatchRejected,
            ResearchEvent::GameCreated { .. } => ResearchEventKind::GameCreated,
            ResearchEvent::WaitroomTimeout { .. } => ResearchEventKind::WaitroomTimeout,
            ResearchEvent::ParticipantDropped { .. } => ResearchEventKind::ParticipantDropped,
            ResearchEvent::P2pConnectionType { .. } => ResearchEventKind::P2pConnectionType,
            ResearchEvent::P2pQuality { .. } => ResearchEventKind::P2pQuality,
            ResearchEvent::P2pIceRestart { .. } => ResearchEventKind::P2pIceRestart,
            ResearchEvent::P2pConnectionFailed { .. } => ResearchEventKind::P2pConnectionFailed,
            ResearchEvent::EpisodeSummary { .. } => ResearchEventKind::EpisodeSummary,
            ResearchEvent::GameEnded { .. } => ResearchEventKind::GameEnded,
            ResearchEvent::ParticipantLeft { .. } => ResearchEventKind::ParticipantLeft,
            ResearchEvent::ServerStarted { .. } => ResearchEventKind::ServerStarted,
            ResearchEvent::ServerStopping { .. } => ResearchEventKind::ServerStopping,
            ResearchEvent::ParticipantOutcome { .. } => ResearchEventKind::ParticipantOutcome,
            ResearchEvent::ParticipantRefused { .. } => ResearchEventKind::ParticipantRefused,
            ResearchEvent::Custom { .. } => ResearchEventKind::Custom,
            ResearchEvent::Attention { .. } => ResearchEventKind::Attention,
        }
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    /// One event of each variant (a new variant fails to compile in [`ResearchEvent::kind`]
    /// and must be added here).
    fn one_of_each() -> Vec<ResearchEvent> {
        let a = SubjectId::parse("A").expect("valid id");
        let b = SubjectId::parse("B").expect("valid id");
        let game_id = GameId::from_string("g");
        let probe_session_id = ProbeSessionId::from_string("p");
        let connection: ConnectionInfo = serde_json::from_value(serde_json::json!({
            "connection_type": "relay",
            "local_candidate_type": "relay",
            "remote_candidate_type": "host",
            "protocol": "udp",
            "relay_protocol": "udp",
        }))
        .expect("a ConnectionInfo");
        vec![
            ResearchEvent::ParticipantJoined {
                subject_id: a.clone(),
                resumed: false,
                recruiter: None,
            },
            ResearchEvent::ServerRtt {
                subject_id: a.clone(),
                median_ms: 1.0,
                samples_ms: vec![1.0],
            },
            ResearchEvent::MatchProposed {
                members: vec![a.clone(), b.clone()],
                server_rtts_ms: vec![None, Some(1.0)],
                matchmaker: "fifo",
                probe: true,
            },
            ResearchEvent::ProbeStarted {
                probe_session_id: probe_session_id.clone(),
                members: [a.clone(), b.clone()],
                timeout_ms: 1,
            },
            ResearchEvent::ProbeResult {
                probe_session_id: probe_session_id.clone(),
                members: [a.clone(), b.clone()],
                reports: [None, None],
                accepted: false,
                rtt_ms: None,
                max_p2p_rtt_ms: 1.0,
                reason: Some(ProbeFailure::Timeout),
                ready_ms: None,
                duration_ms: 1.0,
            },
            ResearchEvent::MatchRejected {
                members: vec![a.clone(), b.clone()],
                reason: ProbeFailure::RttTooHigh,
                failed_pairs: vec![[a.clone(), b.clone()]],
            },
            ResearchEvent::GameCreated {
                game_id: game_id.clone(),
                players: vec![a.clone(), b.clone()],
                p2p_rtts_ms: Vec::new(),
                probes: vec![PairProbe {
                    members: [a.clone(), b.clone()],
                    probe_session_id,
                    handover: true,
                }],
            },
            ResearchEvent::WaitroomTimeout {
                subject_id: a.clone(),
                waited_ms: 1.0,
            },
            ResearchEvent::ParticipantDropped {
                subject_id: a.clone(),
                reconnect_grace_ms: 1,
            },
            ResearchEvent::P2pConnectionType {
                game_id: game_id.clone(),
                subject_id: a.clone(),
                peer_subject_id: b.clone(),
                connection,
                connect_ms: None,
                setup: Some(ConnectionSetup::Handover),
                same_path_as_probe: Some(true),
            },
            ResearchEvent::P2pQuality {
                game_id: game_id.clone(),
                subject_id: a.clone(),
                peer_subject_id: b.clone(),
                level: QualityLevel::Warning,
                rtt_ms: None,
            },
            ResearchEvent::P2pIceRestart {
                game_id: game_id.clone(),
                subject_id: a.clone(),
                peer_subject_id: b.clone(),
                attempt: 1,
                trigger: IceRestartTrigger::Failed,
                outcome: IceRestartOutcome::Started,
                duration_ms: None,
            },
            ResearchEvent::P2pConnectionFailed {
                game_id: game_id.clone(),
                subject_id: a.clone(),
                peer_subject_id: b.clone(),
                attempts: 1,
            },
            ResearchEvent::EpisodeSummary {
                game_id: game_id.clone(),
                subject_id: a.clone(),
                episode: 1,
                frames: 1,
                inputs_sent: 1,
                peers: Vec::new(),
                hidden_count: 1,
                hidden_ms: 250.0,
            },
            ResearchEvent::GameEnded {
                game_id: game_id.clone(),
                reason: GameEndReason::PeerLeft.into(),
                subject_id: a.clone(),
            },
            ResearchEvent::ParticipantOutcome {
                subject_id: a.clone(),
                outcome: "completed".into(),
                completion_code: None,
                game_id: Some(game_id.clone()),
                player_index: Some(0),
            },
            ResearchEvent::ParticipantRefused {
                subject_id: a.clone(),
                reason: RefusalReason::ServerRtt,
                server_rtt_median_ms: Some(1.0),
                max_entry_server_rtt_ms: Some(1.0),
            },
            ResearchEvent::Custom {
                subject_id: a.clone(),
                game_id: None,
                player_index: None,
                name: "trial".into(),
                fields: serde_json::Map::new(),
            },
            ResearchEvent::Attention {
                subject_id: a.clone(),
                game_id: Some(game_id),
                player_index: Some(1),
                hidden: true,
                hidden_ms: None,
            },
            ResearchEvent::ParticipantLeft {
                subject_id: a,
                reason: LeaveReason::ServerShutdown,
            },
            ResearchEvent::ServerStarted {
                version: "0.1.0",
                config_sha256: "00".into(),
            },
            ResearchEvent::ServerStopping {
                live_participants: 2,
            },
        ]
    }

    #[test]
    fn kind_names_equal_the_serialized_event_tags() {
        let events = one_of_each();
        let mut kinds = std::collections::HashSet::new();
        for event in &events {
            let value = serde_json::to_value(event).expect("serializable");
            let kind = event.kind();
            assert_eq!(value["event"], kind.as_str(), "{event:?}");
            assert_eq!(
                serde_json::to_value(kind).expect("serializable"),
                value["event"]
            );
            assert_eq!(
                serde_json::from_value::<ResearchEventKind>(value["event"].clone()).ok(),
                Some(kind)
            );
            kinds.insert(kind);
        }
        assert_eq!(kinds.len(), events.len(), "one event of each kind");
    }

    /// `server_started` carries the crate's version and a hash of the effective config: the
    /// same for equal configs, different when an option changes.
    #[test]
    fn server_started_hashes_the_config() {
        use crate::config::Config;
        let config = |group_size: u32| {
            let toml = format!(
                "[[scene]]\nid = \"s\"\ngroup_size = {group_size}\nmatchmaker = \"fifo\"\n"
            );
            Config::from_toml_str(&toml).expect("a valid config")
        };
        let hash = |c: &Config| match ResearchEvent::server_started(c) {
            ResearchEvent::ServerStarted {
                version,
                config_sha256,
            } => {
                assert_eq!(version, env!("CARGO_PKG_VERSION"));
                config_sha256
            }
            other => panic!("{other:?}"),
        };
        let h2 = hash(&config(2));
        assert_eq!(h2.len(), 64);
        assert!(h2
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(h2, hash(&config(2)));
        assert_ne!(h2, hash(&config(3)));
        let line = serde_json::to_value(ResearchEvent::server_started(&config(2))).unwrap();
        assert_eq!(line["event"], "server_started");
        assert_eq!(line["config_sha256"], h2.as_str());
    }
}
