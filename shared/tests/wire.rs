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
            recruiter: None,
            browser: None,
        }),
    );
    pin_client(
        r#"{"type":"hello","subject_id":"P1","scene_id":"s1","resume_token":"tok","link_signature":"c2ln"}"#,
        ClientMessage::Hello(Hello {
            subject_id: sid("P1"),
            scene_id: Some("s1".into()),
            resume_token: Some("tok".into()),
            link_signature: Some("c2ln".into()),
            recruiter: None,
            browser: None,
        }),
    );
    pin_client(
        r#"{"type":"pong","seq":7}"#,
        ClientMessage::Pong(Pong { seq: 7 }),
    );
    pin_client(r#"{"type":"leave"}"#, ClientMessage::Leave);
    pin_client(
        r#"{"type":"hello","subject_id":"P1","recruiter":{"PROLIFIC_PID":"P1","STUDY_ID":"st","SESSION_ID":"se","workerId":"w","assignmentId":"a","hitId":"h"},"browser":{"webrtc":true,"data_channel":false}}"#,
        ClientMessage::Hello(Hello {
            subject_id: sid("P1"),
            scene_id: None,
            resume_token: None,
            link_signature: None,
            recruiter: Some(Box::new(RecruiterParams {
                prolific_pid: Some("P1".into()),
                study_id: Some("st".into()),
                session_id: Some("se".into()),
                worker_id: Some("w".into()),
                assignment_id: Some("a".into()),
                hit_id: Some("h".into()),
            })),
            browser: Some(BrowserCheck {
                webrtc: true,
                data_channel: false,
            }),
        }),
    );
    let mut fields = serde_json::Map::new();
    fields.insert("move".into(), serde_json::json!(4));
    pin_client(
        r#"{"type":"record","event":"move_made","fields":{"move":4}}"#,
        ClientMessage::Record(RecordEvent {
            event: "move_made".into(),
            fields,
        }),
    );
    pin_client(
        r#"{"type":"finish","outcome":"completed"}"#,
        ClientMessage::Finish(Finish {
            outcome: "completed".into(),
        }),
    );
    assert_eq!(
        ClientMessage::decode(r#"{"type":"finish"}"#).unwrap(),
        ClientMessage::Finish(Finish {
            outcome: "completed".into()
        }),
        "finish without an outcome is completed"
    );
    pin_client(
        r#"{"type":"attention","hidden":true}"#,
        ClientMessage::Attention(Attention {
            hidden: true,
            hidden_ms: None,
        }),
    );
    pin_client(
        r#"{"type":"attention","hidden":false,"hidden_ms":1250.5}"#,
        ClientMessage::Attention(Attention {
            hidden: false,
            hidden_ms: Some(1250.5),
        }),
    );
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
            connection: None,
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
            connection: None,
        }),
    );
    // With the path measured: the selected pair, in the shape of `p2p_connection_type`.
    pin_client(
        r#"{"type":"probe_result","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","success":true,"rtt_ms":101.5,"samples_ms":[101.5],"stats_rtt_ms":101.0,"connection":{"connection_type":"relay","local_candidate_type":"relay","remote_candidate_type":"relay","protocol":"udp","relay_protocol":"udp"}}"#,
        ClientMessage::ProbeResult(ProbeResult {
            probe_session_id: probe_id(),
            success: true,
            rtt_ms: Some(101.5),
            samples_ms: vec![101.5],
            stats_rtt_ms: Some(101.0),
            connection: Some(ConnectionInfo {
                connection_type: ConnectionKind::Relay,
                local_candidate_type: CandidateType::Relay,
                remote_candidate_type: CandidateType::Relay,
                protocol: IceProtocol::Udp,
                relay_protocol: Some(RelayProtocol::Udp),
            }),
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
            leave_button_after_ms: None,
        }),
    );
    pin_server(
        r#"{"type":"welcome","subject_id":"P1","scene_id":"s1","resume_token":"tok","group_size":2,"hide_lobby_count":false,"waitroom_timeout_ms":300000,"leave_button_after_ms":60000}"#,
        ServerMessage::Welcome(Welcome {
            subject_id: sid("P1"),
            scene_id: "s1".into(),
            resume_token: "tok".into(),
            group_size: 2,
            hide_lobby_count: false,
            waitroom_timeout_ms: 300_000,
            leave_button_after_ms: Some(60_000),
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
            force_relay: false,
            keep_ms: None,
        }),
    );
    // A `force_relay` scene: the probe uses relay candidates only, as the game will.
    pin_server(
        r#"{"type":"probe_prepare","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","peer_index":0,"ice_servers":[],"timeout_ms":5000,"force_relay":true}"#,
        ServerMessage::ProbePrepare(ProbePrepare {
            probe_session_id: probe_id(),
            peer_index: 0,
            ice_servers: vec![],
            timeout_ms: 5_000,
            force_relay: true,
            keep_ms: None,
        }),
    );
    // A probe whose connection is kept for the game (negotiated game channels, parked 30 s).
    pin_server(
        r#"{"type":"probe_prepare","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","peer_index":1,"ice_servers":[],"timeout_ms":5000,"keep_ms":30000}"#,
        ServerMessage::ProbePrepare(ProbePrepare {
            probe_session_id: probe_id(),
            peer_index: 1,
            ice_servers: vec![],
            timeout_ms: 5_000,
            force_relay: false,
            keep_ms: Some(30_000),
        }),
    );
    pin_server(
        r#"{"type":"probe_close","probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60"}"#,
        ServerMessage::ProbeClose(ProbeClose {
            probe_session_id: probe_id(),
        }),
    );
    // A game whose pair's probe connection is handed over.
    pin_server(
        r#"{"type":"game_start","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","player_index":0,"player_count":2,"ice_servers":[],"force_relay":false,"pair_rtts":[{"a":0,"b":1,"rtt_ms":12.5}],"game":{"tick_ms":33,"episode_ms":10000,"episodes":3,"input_delay_frames":2,"quality_interval_ms":2000,"warning_rtt_ms":150,"critical_rtt_ms":300,"disconnect_grace_ms":5000,"restart_timeout_ms":10000,"url_overrides":false,"settings":{}},"probes":[{"peer_index":1,"probe_session_id":"0b7e4a8e-3c1d-4f6e-9a52-1d2c3b4a5f60","handover":true}]}"#,
        ServerMessage::GameStart(Box::new(GameStart {
            game_id: GameId::from_string("5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f"),
            player_index: 0,
            player_count: 2,
            ice_servers: vec![],
            force_relay: false,
            pair_rtts: vec![PairRtt {
                a: 0,
                b: 1,
                rtt_ms: 12.5,
            }],
            game: Box::new(GameSettings::default()),
            probes: vec![PeerProbe {
                peer_index: 1,
                probe_session_id: probe_id(),
                handover: true,
            }],
        })),
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
        r#"{"type":"game_start","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","player_index":1,"player_count":2,"ice_servers":[],"force_relay":false,"pair_rtts":[{"a":0,"b":1,"rtt_ms":12.5}],"game":{"tick_ms":33,"episode_ms":10000,"episodes":3,"input_delay_frames":2,"quality_interval_ms":2000,"warning_rtt_ms":150,"critical_rtt_ms":300,"disconnect_grace_ms":5000,"restart_timeout_ms":10000,"url_overrides":false,"settings":{}}}"#,
        ServerMessage::GameStart(Box::new(GameStart {
            game_id: GameId::from_string("5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f"),
            player_index: 1,
            player_count: 2,
            ice_servers: vec![],
            force_relay: false,
            pair_rtts: vec![PairRtt {
                a: 0,
                b: 1,
                rtt_ms: 12.5,
            }],
            game: Box::new(GameSettings::default()),
            probes: Vec::new(),
        })),
    );
    let mut settings = serde_json::Map::new();
    settings.insert("board".into(), serde_json::json!([3, 3]));
    pin_server(
        r#"{"type":"game_start","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","player_index":0,"player_count":2,"ice_servers":[],"force_relay":true,"pair_rtts":[],"game":{"tick_ms":50,"episode_ms":2000,"episodes":1,"input_delay_frames":0,"quality_interval_ms":500,"warning_rtt_ms":100,"critical_rtt_ms":200,"disconnect_grace_ms":1000,"restart_timeout_ms":3000,"max_hidden_ms":15000,"url_overrides":true,"settings":{"board":[3,3]}}}"#,
        ServerMessage::GameStart(Box::new(GameStart {
            game_id: GameId::from_string("5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f"),
            player_index: 0,
            player_count: 2,
            ice_servers: vec![],
            force_relay: true,
            pair_rtts: vec![],
            game: Box::new(GameSettings {
                tick_ms: 50,
                episode_ms: 2_000,
                episodes: 1,
                input_delay_frames: 0,
                quality_interval_ms: 500,
                warning_rtt_ms: 100,
                critical_rtt_ms: 200,
                disconnect_grace_ms: 1_000,
                restart_timeout_ms: 3_000,
                max_hidden_ms: Some(15_000),
                url_overrides: true,
                settings,
            }),
            probes: Vec::new(),
        })),
    );
    pin_server(
        r#"{"type":"outcome","outcome":"completed","completion_code":"C0DE","redirect_url":"https://app.prolific.com/submissions/complete?cc=C0DE","message":"Thank you!"}"#,
        ServerMessage::Outcome(Outcome {
            outcome: Outcome::COMPLETED.into(),
            completion_code: Some("C0DE".into()),
            redirect_url: Some("https://app.prolific.com/submissions/complete?cc=C0DE".into()),
            message: "Thank you!".into(),
        }),
    );
    pin_server(
        r#"{"type":"outcome","outcome":"entry_refused","completion_code":null,"redirect_url":null,"message":"Your connection is too slow for this study."}"#,
        ServerMessage::Outcome(Outcome {
            outcome: Outcome::ENTRY_REFUSED.into(),
            completion_code: None,
            redirect_url: None,
            message: "Your connection is too slow for this study.".into(),
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
        (ErrorCode::EntryRefused, "entry_refused"),
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
    // A researcher's event: a name a researcher can filter on, and bounded fields.
    assert_eq!(
        code(r#"{"type":"record","event":"Bad Name","fields":{}}"#),
        ErrorCode::BadMessage
    );
    assert_eq!(
        code(r#"{"type":"record","event":"","fields":{}}"#),
        ErrorCode::BadMessage
    );
    assert_eq!(
        code(r#"{"type":"record","event":"x","fields":[1]}"#),
        ErrorCode::BadMessage
    );
    let big = format!(
        r#"{{"type":"record","event":"x","fields":{{"a":"{}"}}}}"#,
        "y".repeat(RECORD_FIELDS_MAX_BYTES)
    );
    assert_eq!(code(&big), ErrorCode::BadMessage);
    let fits = format!(
        r#"{{"type":"record","event":"x","fields":{{"a":"{}"}}}}"#,
        "y".repeat(RECORD_FIELDS_MAX_BYTES - 8)
    );
    assert!(ClientMessage::decode(&fits).is_ok(), "8 KiB of fields fit");
    // finish cannot claim an outcome the server decides.
    for o in Outcome::SERVER_DECIDED {
        assert_eq!(
            code(&format!(r#"{{"type":"finish","outcome":"{o}"}}"#)),
            ErrorCode::BadMessage,
            "{o}"
        );
    }
    assert!(ClientMessage::decode(r#"{"type":"finish","outcome":"failed_check"}"#).is_ok());
    assert_eq!(
        code(r#"{"type":"attention","hidden":false,"hidden_ms":-5}"#),
        ErrorCode::BadMessage
    );
    let long = format!(
        r#"{{"type":"hello","subject_id":"P1","recruiter":{{"STUDY_ID":"{}"}}}}"#,
        "s".repeat(RECRUITER_PARAM_MAX_LEN + 1)
    );
    let e = ClientMessage::decode(&long).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadMessage);
    assert!(e.is_hello());
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
            setup: None,
            same_path_as_probe: None,
        }),
    );
    pin_client(
        r#"{"type":"p2p_connection_type","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","peer_index":1,"connection_type":"relay","local_candidate_type":"relay","remote_candidate_type":"srflx","protocol":"udp","relay_protocol":"udp","connect_ms":0.5,"setup":"handover","same_path_as_probe":true}"#,
        ClientMessage::P2pConnectionType(P2pConnectionType {
            game_id: game_id(),
            peer_index: 1,
            info,
            connect_ms: Some(0.5),
            setup: Some(ConnectionSetup::Handover),
            same_path_as_probe: Some(true),
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
        r#"{"type":"episode_summary","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","episode":1,"frames":600,"inputs_sent":600,"peers":[{"peer_index":1,"inputs_received":598,"connection":{"connection_type":"relay","local_candidate_type":"relay","remote_candidate_type":"srflx","protocol":"udp","relay_protocol":"udp"},"rtt_ms":{"min":1.0,"median":2.0,"max":9.0,"samples":5},"quality_changes":[{"level":"warning","at_ms":1200.0}],"ice_restarts":0}],"hidden_count":0,"hidden_ms":0.0}"#,
        ClientMessage::EpisodeSummary(EpisodeSummary {
            game_id: game_id(),
            episode: 1,
            frames: 600,
            inputs_sent: 600,
            hidden_count: 0,
            hidden_ms: 0.0,
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
                setup: None,
                same_path_as_probe: None,
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
    pin_server(
        r#"{"type":"game_ended","game_id":"5d6c1a9e-2b3f-4c8d-8e7f-6a5b4c3d2e1f","reason":"member_hidden","message":"Hidden too long."}"#,
        ServerMessage::GameEnded(GameEnded {
            game_id: game_id(),
            reason: GameEndReason::MemberHidden,
            message: "Hidden too long.".into(),
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

/// Every connection queues messages of these types, so their size is memory per connection:
/// a field only one message has (hello's recruiter parameters, game_start's settings) is
/// boxed rather than making every message larger.
#[test]
fn messages_stay_small() {
    let client = std::mem::size_of::<ClientMessage>();
    let server = std::mem::size_of::<ServerMessage>();
    assert!(client <= 112, "ClientMessage is {client} bytes");
    assert!(server <= 104, "ServerMessage is {server} bytes");
}
