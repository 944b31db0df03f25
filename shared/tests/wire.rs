//! Pins the exact JSON of every protocol message, both directions: a literal string per
//! message, decoded into the Rust value and encoded back byte for byte.

use pairlab_shared::*;

fn sid(s: &str) -> SubjectId {
    SubjectId::parse(s).unwrap()
}

fn pin_client(json: &str, msg: ClientMessage) {
    assert_eq!(ClientMessage::decode(json).unwrap(), msg, "decode {json}");
    assert_eq!(msg.to_json(), json, "encode");
}

fn pin_server(json: &str, msg: ServerMessage) {
    assert_eq!(
        serde_json::from_str::<ServerMessage>(json).unwrap(),
        msg,
        "decode {json}"
    );
    assert_eq!(msg.to_json(), json, "encode");
}

fn probe_id() -> ProbeSessionId {
    ProbeSessionId::from_string("0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60")
}

#[test]
fn client_messages() {
    pin_client(
        r#"{"type":"hello","subject_id":"P1"}"#,
        ClientMessage::Hello(Hello {
            subject_id: sid("P1"),
            scene_id: None,
            resume_token: None,
            link_signature: None,
        }),
    );
    pin_client(
        r#"{"type":"hello","subject_id":"P1","scene_id":"s1","resume_token":"tok","link_signature":"c2ln"}"#,
        ClientMessage::Hello(Hello {
            subject_id: sid("P1"),
            scene_id: Some("s1".into()),
            resume_token: Some("tok".into()),
            link_signature: Some("c2ln".into()),
        }),
    );
    pin_client(
        r#"{"type":"pong","seq":7}"#,
        ClientMessage::Pong(Pong { seq: 7 }),
    );
    pin_client(r#"{"type":"leave"}"#, ClientMessage::Leave);
    pin_client(
        r#"{"type":"probe_ready","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60"}"#,
        ClientMessage::ProbeReady(ProbeReady {
            probe_session_id: probe_id(),
        }),
    );
    pin_client(
        r#"{"type":"probe_signal","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","target_index":1,"signal_type":"offer","payload":{"sdp":"v=0\r\n"}}"#,
        ClientMessage::ProbeSignal(ProbeSignalOut {
            probe_session_id: probe_id(),
            target_index: 1,
            signal_type: SignalType::Offer,
            payload: Some(SignalPayload::Description {
                sdp: "v=0\r\n".into(),
            }),
        }),
    );
    pin_client(
        r#"{"type":"probe_signal","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","target_index":1,"signal_type":"answer","payload":{"sdp":"v=0"}}"#,
        ClientMessage::ProbeSignal(ProbeSignalOut {
            probe_session_id: probe_id(),
            target_index: 1,
            signal_type: SignalType::Answer,
            payload: Some(SignalPayload::Description { sdp: "v=0".into() }),
        }),
    );
    pin_client(
        r#"{"type":"probe_signal","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","target_index":1,"signal_type":"ice_candidate","payload":{"candidate":"candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host","sdp_mid":"0","sdp_m_line_index":0}}"#,
        ClientMessage::ProbeSignal(ProbeSignalOut {
            probe_session_id: probe_id(),
            target_index: 1,
            signal_type: SignalType::IceCandidate,
            payload: Some(SignalPayload::Candidate {
                candidate: "candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
            }),
        }),
    );
    pin_client(
        r#"{"type":"probe_signal","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","target_index":1,"signal_type":"ice_candidate","payload":null}"#,
        ClientMessage::ProbeSignal(ProbeSignalOut {
            probe_session_id: probe_id(),
            target_index: 1,
            signal_type: SignalType::IceCandidate,
            payload: None,
        }),
    );
    pin_client(
        r#"{"type":"probe_result","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","success":true,"rtt_ms":1.25,"samples_ms":[1.5,1.25,1.0],"stats_rtt_ms":1.0}"#,
        ClientMessage::ProbeResult(ProbeResult {
            probe_session_id: probe_id(),
            success: true,
            rtt_ms: Some(1.25),
            samples_ms: vec![1.5, 1.25, 1.0],
            stats_rtt_ms: Some(1.0),
        }),
    );
    pin_client(
        r#"{"type":"probe_result","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","success":false,"rtt_ms":null,"samples_ms":[],"stats_rtt_ms":null}"#,
        ClientMessage::ProbeResult(ProbeResult {
            probe_session_id: probe_id(),
            success: false,
            rtt_ms: None,
            samples_ms: vec![],
            stats_rtt_ms: None,
        }),
    );
}

#[test]
fn server_messages() {
    pin_server(
        r#"{"type":"welcome","subject_id":"P1","scene_id":"s1","resume_token":"tok","group_size":2,"hide_lobby_count":false,"waitroom_timeout_ms":300000}"#,
        ServerMessage::Welcome(Welcome {
            subject_id: sid("P1"),
            scene_id: "s1".into(),
            resume_token: "tok".into(),
            group_size: 2,
            hide_lobby_count: false,
            waitroom_timeout_ms: 300_000,
        }),
    );
    pin_server(
        r#"{"type":"ping","seq":3}"#,
        ServerMessage::Ping(Ping { seq: 3 }),
    );
    pin_server(
        r#"{"type":"waitroom","waiting":4,"group_size":2,"remaining_ms":29500}"#,
        ServerMessage::Waitroom(Waitroom {
            waiting: Some(4),
            group_size: 2,
            remaining_ms: 29_500,
        }),
    );
    pin_server(
        r#"{"type":"waitroom","waiting":null,"group_size":3,"remaining_ms":0}"#,
        ServerMessage::Waitroom(Waitroom {
            waiting: None,
            group_size: 3,
            remaining_ms: 0,
        }),
    );
    pin_server(
        r#"{"type":"waitroom_timeout","message":"Sorry.","redirect_url":"https://app.prolific.com/submissions/complete?cc=X"}"#,
        ServerMessage::WaitroomTimeout(WaitroomTimeout {
            message: "Sorry.".into(),
            redirect_url: Some("https://app.prolific.com/submissions/complete?cc=X".into()),
        }),
    );
    pin_server(
        r#"{"type":"waitroom_timeout","message":"Sorry.","redirect_url":null}"#,
        ServerMessage::WaitroomTimeout(WaitroomTimeout {
            message: "Sorry.".into(),
            redirect_url: None,
        }),
    );
    pin_server(
        r#"{"type":"probe_prepare","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","peer_index":1,"ice_servers":[{"urls":["stun:stun.example.org:3478"]},{"urls":["turn:turn.example.org:3478?transport=udp"],"username":"u","credential":"c"}],"timeout_ms":10000}"#,
        ServerMessage::ProbePrepare(ProbePrepare {
            probe_session_id: probe_id(),
            peer_index: 1,
            ice_servers: vec![
                IceServer {
                    urls: vec!["stun:stun.example.org:3478".into()],
                    username: None,
                    credential: None,
                },
                IceServer {
                    urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
                    username: Some("u".into()),
                    credential: Some("c".into()),
                },
            ],
            timeout_ms: 10_000,
        }),
    );
    pin_server(
        r#"{"type":"probe_start","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","initiator":true}"#,
        ServerMessage::ProbeStart(ProbeStart {
            probe_session_id: probe_id(),
            initiator: true,
        }),
    );
    pin_server(
        r#"{"type":"probe_signal","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","from_index":0,"signal_type":"answer","payload":{"sdp":"v=0"}}"#,
        ServerMessage::ProbeSignal(ProbeSignalIn {
            probe_session_id: probe_id(),
            from_index: 0,
            signal_type: SignalType::Answer,
            payload: Some(SignalPayload::Description { sdp: "v=0".into() }),
        }),
    );
    pin_server(
        r#"{"type":"game_start","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","player_index":1,"player_count":2,"ice_servers":[],"force_relay":false}"#,
        ServerMessage::GameStart(GameStart {
            game_id: GameId::from_string("5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f"),
            player_index: 1,
            player_count: 2,
            ice_servers: vec![],
            force_relay: false,
        }),
    );
    for (code, text) in [
        (ErrorCode::BadMessage, "bad_message"),
        (ErrorCode::UnknownType, "unknown_type"),
        (ErrorCode::HelloRequired, "hello_required"),
        (ErrorCode::InvalidSubjectId, "invalid_subject_id"),
        (ErrorCode::UnknownScene, "unknown_scene"),
        (ErrorCode::IdInUse, "id_in_use"),
        (ErrorCode::AlreadyDone, "already_done"),
        (ErrorCode::InvalidLink, "invalid_link"),
        (ErrorCode::NotAMember, "not_a_member"),
        (ErrorCode::RateLimited, "rate_limited"),
    ] {
        pin_server(
            &format!(r#"{{"type":"error","code":"{text}","message":"Why."}}"#),
            ServerMessage::error(code, "Why."),
        );
        assert_eq!(code.as_str(), text);
    }
}

#[test]
fn decode_errors_map_to_codes() {
    let code = |s: &str| ClientMessage::decode(s).unwrap_err().code();
    assert_eq!(code("not json"), ErrorCode::BadMessage);
    assert_eq!(code("[1,2]"), ErrorCode::BadMessage);
    assert_eq!(code(r#"{"seq":1}"#), ErrorCode::BadMessage);
    assert_eq!(code(r#"{"type":7}"#), ErrorCode::BadMessage);
    assert_eq!(code(r#"{"type":"teleport"}"#), ErrorCode::UnknownType);
    assert_eq!(code(r#"{"type":"pong"}"#), ErrorCode::BadMessage);
    assert_eq!(code(r#"{"type":"pong","seq":"x"}"#), ErrorCode::BadMessage);
    assert_eq!(code(r#"{"type":"hello"}"#), ErrorCode::InvalidSubjectId);
    assert_eq!(
        code(r#"{"type":"hello","subject_id":5}"#),
        ErrorCode::InvalidSubjectId
    );
    assert_eq!(
        code(r#"{"type":"hello","subject_id":"has space"}"#),
        ErrorCode::InvalidSubjectId
    );
    assert_eq!(
        code(r#"{"type":"hello","subject_id":""}"#),
        ErrorCode::InvalidSubjectId
    );
    let e =
        ClientMessage::decode(r#"{"type":"hello","subject_id":"ok","scene_id":3}"#).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadMessage);
    assert!(e.is_hello());
    // Payload must fit the signal type.
    assert_eq!(
        code(
            r#"{"type":"probe_signal","probe_session_id":"x","target_index":1,"signal_type":"offer","payload":null}"#
        ),
        ErrorCode::BadMessage
    );
    assert_eq!(
        code(
            r#"{"type":"probe_signal","probe_session_id":"x","target_index":1,"signal_type":"ice_candidate","payload":{"sdp":"v=0"}}"#
        ),
        ErrorCode::BadMessage
    );
    // Measured values must be finite and non-negative.
    assert_eq!(
        code(
            r#"{"type":"probe_result","probe_session_id":"x","success":true,"rtt_ms":-1,"samples_ms":[],"stats_rtt_ms":null}"#
        ),
        ErrorCode::BadMessage
    );
    let many = format!(
        r#"{{"type":"probe_result","probe_session_id":"x","success":true,"rtt_ms":1,"samples_ms":[{}],"stats_rtt_ms":null}}"#,
        vec!["1"; MAX_PROBE_SAMPLES + 1].join(",")
    );
    assert_eq!(code(&many), ErrorCode::BadMessage);
}

#[test]
fn closing_codes_follow_the_table() {
    use ErrorCode::*;
    for c in [BadMessage, UnknownType, NotAMember] {
        assert!(!c.closes_connection(), "{c}");
    }
    for c in [
        HelloRequired,
        InvalidSubjectId,
        UnknownScene,
        IdInUse,
        AlreadyDone,
        InvalidLink,
        RateLimited,
    ] {
        assert!(c.closes_connection(), "{c}");
    }
}

fn game_id() -> GameId {
    GameId::from_string("5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f")
}

#[test]
fn game_connection_messages() {
    pin_client(
        r#"{"type":"webrtc_signal","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","target_index":1,"signal_type":"offer","payload":{"sdp":"v=0"}}"#,
        ClientMessage::WebrtcSignal(WebrtcSignalOut {
            game_id: game_id(),
            target_index: 1,
            signal_type: SignalType::Offer,
            payload: Some(SignalPayload::Description { sdp: "v=0".into() }),
        }),
    );
    pin_server(
        r#"{"type":"webrtc_signal","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","from_index":0,"signal_type":"ice_candidate","payload":null}"#,
        ServerMessage::WebrtcSignal(WebrtcSignalIn {
            game_id: game_id(),
            from_index: 0,
            signal_type: SignalType::IceCandidate,
            payload: None,
        }),
    );
    let info = ConnectionInfo {
        connection_type: ConnectionKind::Relay,
        local_candidate_type: CandidateType::Relay,
        remote_candidate_type: CandidateType::Srflx,
        protocol: IceProtocol::Udp,
        relay_protocol: Some(RelayProtocol::Udp),
    };
    pin_client(
        r#"{"type":"p2p_connection_type","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","peer_index":1,"connection_type":"relay","local_candidate_type":"relay","remote_candidate_type":"srflx","protocol":"udp","relay_protocol":"udp","connect_ms":152.5}"#,
        ClientMessage::P2pConnectionType(P2pConnectionType {
            game_id: game_id(),
            peer_index: 1,
            info,
            connect_ms: Some(152.5),
        }),
    );
    pin_client(
        r#"{"type":"p2p_quality","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","peer_index":1,"level":"warning","rtt_ms":182.0}"#,
        ClientMessage::P2pQuality(P2pQuality {
            game_id: game_id(),
            peer_index: 1,
            level: QualityLevel::Warning,
            rtt_ms: Some(182.0),
        }),
    );
    pin_client(
        r#"{"type":"p2p_ice_restart","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","peer_index":1,"attempt":1,"trigger":"disconnected","outcome":"succeeded","duration_ms":840.0}"#,
        ClientMessage::P2pIceRestart(P2pIceRestart {
            game_id: game_id(),
            peer_index: 1,
            attempt: 1,
            trigger: IceRestartTrigger::Disconnected,
            outcome: IceRestartOutcome::Succeeded,
            duration_ms: Some(840.0),
        }),
    );
    pin_client(
        r#"{"type":"p2p_connection_failed","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","peer_index":1,"attempts":3}"#,
        ClientMessage::P2pConnectionFailed(P2pConnectionFailed {
            game_id: game_id(),
            peer_index: 1,
            attempts: 3,
        }),
    );
    pin_client(
        r#"{"type":"episode_summary","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","episode":1,"frames":600,"inputs_sent":600,"peers":[{"peer_index":1,"inputs_received":598,"connection":{"connection_type":"relay","local_candidate_type":"relay","remote_candidate_type":"srflx","protocol":"udp","relay_protocol":"udp"},"rtt_ms":{"min":1.0,"median":2.0,"max":9.0,"samples":5},"quality_changes":[{"level":"warning","at_ms":1200.0}],"ice_restarts":0}]}"#,
        ClientMessage::EpisodeSummary(EpisodeSummary {
            game_id: game_id(),
            episode: 1,
            frames: 600,
            inputs_sent: 600,
            peers: vec![PeerMetrics {
                peer_index: 1,
                inputs_received: 598,
                connection: Some(info),
                rtt_ms: Some(RttSummary {
                    min: 1.0,
                    median: 2.0,
                    max: 9.0,
                    samples: 5,
                }),
                quality_changes: vec![QualityChange {
                    level: QualityLevel::Warning,
                    at_ms: 1200.0,
                }],
                ice_restarts: 0,
            }],
        }),
    );
    pin_server(
        r#"{"type":"game_ended","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","reason":"connection_failed","message":"The connection to your partner was lost."}"#,
        ServerMessage::GameEnded(GameEnded {
            game_id: game_id(),
            reason: GameEndReason::ConnectionFailed,
            message: "The connection to your partner was lost.".into(),
        }),
    );
    // Sanity checks on what clients report.
    let bad = |s: &str| ClientMessage::decode(s).unwrap_err().code();
    assert_eq!(
        bad(
            r#"{"type":"p2p_ice_restart","game_id":"g","peer_index":1,"attempt":0,"trigger":"failed","outcome":"started","duration_ms":null}"#
        ),
        ErrorCode::BadMessage
    );
    assert_eq!(
        bad(r#"{"type":"p2p_quality","game_id":"g","peer_index":1,"level":"dire","rtt_ms":1}"#),
        ErrorCode::BadMessage
    );
    assert_eq!(
        bad(
            r#"{"type":"episode_summary","game_id":"g","episode":1,"frames":1,"inputs_sent":1,"peers":[{"peer_index":1,"inputs_received":1,"connection":null,"rtt_ms":{"min":5,"median":2,"max":9,"samples":3},"quality_changes":[],"ice_restarts":0}]}"#
        ),
        ErrorCode::BadMessage
    );
}
