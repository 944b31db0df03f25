//! The matchmaking flows of PROTOCOL.md over real WebSockets against the real server:
//! match → probe → game; rejection → next candidate; no probe; waitroom timeout; resume.

mod common;

use std::time::Duration;

use common::*;
use pairlab_server::record::{event_names, events_of, position_of};
use pairlab_shared::{ProbeSessionId, ServerMessage, SignalPayload, SignalType};
use ResearchEventKind as Ev;

#[tokio::test]
async fn match_probe_accept_game_start() {
    let mut server = TestServer::start().await;
    let (mut a, wa) = server.join("alice", "probe").await;
    assert_eq!(wa.group_size, 2);
    assert_eq!(wa.waiting, Some(1));
    assert!(
        wa.remaining_ms > 59_000 && wa.remaining_ms <= 60_000,
        "{wa:?}"
    );
    let (mut b, _) = server.join("bob", "probe").await;

    // Both are asked to prepare the same probe, each naming the other by player index.
    let pa = a.expect_probe_prepare().await;
    let pb = b.expect_probe_prepare().await;
    assert_eq!(pa.probe_session_id, pb.probe_session_id);
    assert_eq!(pa.peer_index, 1, "alice knows bob as player 1");
    assert_eq!(pb.peer_index, 0, "bob knows alice as player 0");
    assert_eq!(pa.timeout_ms, 3000);
    assert_eq!(pa.ice_servers, server.config.ice_servers);
    // probe_handover (default): kept for the game, probe_timeout_ms + 5000 ms.
    assert_eq!((pa.keep_ms, pb.keep_ms), (Some(8000), Some(8000)));
    let id = pa.probe_session_id.clone();

    // probe_start only once both are ready.
    a.send(&ready(&id)).await;
    a.expect_quiet(Duration::from_millis(200)).await;
    b.send(&ready(&id)).await;
    let sa = a.expect_probe_start().await;
    let sb = b.expect_probe_start().await;
    assert_eq!(sa.probe_session_id, id);
    assert!(
        sa.initiator,
        "alice is player 0, bob player 1: alice sends the offer"
    );
    assert!(!sb.initiator);

    // Signals are relayed unchanged to the other member only.
    let offer = SignalPayload::Description {
        sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n".into(),
    };
    a.send(&signal(&id, 1, SignalType::Offer, Some(offer.clone())))
        .await;
    let got = b.expect_probe_signal().await;
    assert_eq!(got.probe_session_id, id);
    assert_eq!(got.from_index, 0);
    assert_eq!(got.signal_type, SignalType::Offer);
    assert_eq!(got.payload, Some(offer));
    let cand = SignalPayload::Candidate {
        candidate: "candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    };
    b.send(&signal(
        &id,
        0,
        SignalType::IceCandidate,
        Some(cand.clone()),
    ))
    .await;
    b.send(&signal(&id, 0, SignalType::IceCandidate, None))
        .await;
    let got = a.expect_probe_signal().await;
    assert_eq!(got.from_index, 1);
    assert_eq!(got.payload, Some(cand));
    let got = a.expect_probe_signal().await;
    assert_eq!(got.signal_type, SignalType::IceCandidate);
    assert_eq!(got.payload, None, "end of candidates is relayed as null");

    // Both report an RTT under the threshold (50): the group becomes a game.
    a.send(&result(&id, true, Some(12.5))).await;
    b.send(&result(&id, true, Some(14.0))).await;
    let ga = a.expect_game_start().await;
    let gb = b.expect_game_start().await;
    assert_eq!(ga.game_id, gb.game_id);
    assert_eq!((ga.player_count, gb.player_count), (2, 2));
    assert_eq!((ga.player_index, gb.player_index), (0, 1));
    assert_eq!(ga.ice_servers, server.config.ice_servers);
    assert!(!ga.force_relay);
    // The probe's connection becomes the game's, on both sides.
    let handed = |peer_index| {
        vec![pairlab_shared::PeerProbe {
            peer_index,
            probe_session_id: id.clone(),
            handover: true,
        }]
    };
    assert_eq!(
        (ga.probes.clone(), gb.probes.clone()),
        (handed(1), handed(0))
    );

    // The research record, in order.
    let events = server.wait_for_event("probe", Ev::GameCreated).await;
    drop((a, b)); // clients that do not read would hold up the close handshake
    server.stop().await;
    let events = {
        let after = server.events("probe");
        assert!(after.len() >= events.len());
        after
    };
    for e in &events {
        assert_eq!(e["scene_id"], "probe");
        let ts = e["ts"].as_str().expect("ts");
        assert!(ts.ends_with('Z') && ts.contains('.'), "{ts}");
    }
    let n = event_names(&events);
    let pos = |kind: Ev| position_of(&events, kind).unwrap_or_else(|| panic!("no {kind} in {n:?}"));
    assert_eq!(events_of(&events, Ev::ParticipantJoined).len(), 2, "{n:?}");
    assert_eq!(events_of(&events, Ev::ServerRtt).len(), 2, "{n:?}");
    assert!(pos(Ev::ParticipantJoined) < pos(Ev::ServerRtt));
    assert!(pos(Ev::ServerRtt) < pos(Ev::MatchProposed));
    assert!(pos(Ev::MatchProposed) < pos(Ev::ProbeStarted));
    assert!(pos(Ev::ProbeStarted) < pos(Ev::ProbeResult));
    assert!(pos(Ev::ProbeResult) < pos(Ev::GameCreated));

    let rtt = events_of(&events, Ev::ServerRtt)[0];
    let median = rtt["median_ms"].as_f64().expect("median_ms");
    assert!((0.0..1000.0).contains(&median), "{rtt}");
    assert!(!rtt["samples_ms"].as_array().expect("samples").is_empty());

    let mp = events_of(&events, Ev::MatchProposed)[0];
    assert_eq!(mp["members"], serde_json::json!(["alice", "bob"]));
    assert_eq!(mp["matchmaker"], "latency_fifo");
    assert_eq!(mp["probe"], true);
    assert_eq!(mp["server_rtts_ms"].as_array().map(Vec::len), Some(2));

    let ps = events_of(&events, Ev::ProbeStarted)[0];
    assert_eq!(ps["probe_session_id"], id.as_str());
    assert_eq!(ps["members"], serde_json::json!(["alice", "bob"]));

    let pr = events_of(&events, Ev::ProbeResult)[0];
    assert_eq!(pr["probe_session_id"], id.as_str());
    assert_eq!(pr["accepted"], true);
    assert_eq!(pr["rtt_ms"], 14.0, "the largest reported rtt decides");
    assert_eq!(pr["max_p2p_rtt_ms"], 50.0);
    let reports = pr["reports"].as_array().expect("reports");
    assert_eq!(reports.len(), 2);
    assert_eq!(
        reports[0]["rtt_ms"], 12.5,
        "alice's report first (initiator)"
    );
    assert_eq!(reports[1]["rtt_ms"], 14.0);
    assert_eq!(
        reports[0]["samples_ms"],
        serde_json::json!([12.5, 13.5, 12.0])
    );
    assert_eq!(reports[0]["stats_rtt_ms"], 11.5);
    let duration = pr["duration_ms"].as_f64().expect("duration_ms");
    assert!(duration > 0.0 && duration < 3000.0, "{pr}");

    let gc = events_of(&events, Ev::GameCreated)[0];
    assert_eq!(gc["game_id"], ga.game_id.as_str());
    assert_eq!(gc["players"], serde_json::json!(["alice", "bob"]));
    assert_eq!(
        gc["probes"],
        serde_json::json!([{"members": ["alice", "bob"], "probe_session_id": id.as_str(), "handover": true}])
    );
}

/// Runs a probe between two clients to its result: prepare → ready → start → results.
/// Returns the probe.
async fn run_probe(
    x: &mut Client,
    y: &mut Client,
    rtt_x: Option<f64>,
    rtt_y: Option<f64>,
) -> ProbeSessionId {
    let px = x.expect_probe_prepare().await;
    let py = y.expect_probe_prepare().await;
    assert_eq!(px.probe_session_id, py.probe_session_id);
    assert_eq!(
        (px.peer_index, py.peer_index),
        (1, 0),
        "x waited longer: player 0"
    );
    let id = px.probe_session_id;
    x.send(&ready(&id)).await;
    y.send(&ready(&id)).await;
    x.expect_probe_start().await;
    y.expect_probe_start().await;
    x.send(&result(&id, rtt_x.is_some(), rtt_x)).await;
    y.send(&result(&id, rtt_y.is_some(), rtt_y)).await;
    id
}

#[tokio::test]
async fn rejection_returns_both_and_the_next_candidate_is_probed() {
    let mut server = TestServer::start().await;
    let (mut a, _) = server.join("alice", "probe").await;
    let (mut b, _) = server.join("bob", "probe").await;

    // 80 ms > max_p2p_rtt_ms = 50: rejected; the kept probe connections are closed first.
    let id = run_probe(&mut a, &mut b, Some(80.0), Some(79.0)).await;
    for x in [&mut a, &mut b] {
        let closed = x
            .until("probe_close", |m| match m {
                ServerMessage::ProbeClose(c) => Some(c.probe_session_id.clone()),
                ServerMessage::Waitroom(_) => panic!("waitroom before probe_close"),
                _ => None,
            })
            .await;
        assert_eq!(closed, id);
    }
    let wa = a.expect_waitroom().await;
    let wb = b.expect_waitroom().await;
    assert_eq!(wa.group_size, 2);
    assert!(wa.remaining_ms < 60_000 && wb.remaining_ms < 60_000);
    // The failed pair is not probed again, although both wait.
    a.expect_quiet(QUIET).await;
    b.expect_quiet(Duration::from_millis(50)).await;

    // A third participant: the first in line (alice) is probed with carol; bob waits.
    let (mut c, _) = server.join("carol", "probe").await;
    run_probe(&mut a, &mut c, Some(10.0), Some(11.0)).await;
    let ga = a.expect_game_start().await;
    let gc = c.expect_game_start().await;
    assert_eq!(ga.game_id, gc.game_id);
    assert_eq!((ga.player_index, gc.player_index), (0, 1));
    b.expect_quiet(Duration::from_millis(100)).await;

    // A fourth: bob's untried partner.
    let (mut d, _) = server.join("dave", "probe").await;
    run_probe(&mut b, &mut d, Some(5.0), Some(6.0)).await;
    let gb = b.expect_game_start().await;
    d.expect_game_start().await;
    assert_eq!(gb.player_index, 0);

    server.wait_for_event("probe", Ev::GameCreated).await;
    drop((a, b, c, d));
    server.stop().await;
    let events = server.events("probe");
    let rejected = events_of(&events, Ev::MatchRejected);
    assert_eq!(rejected.len(), 1, "{:?}", event_names(&events));
    assert_eq!(rejected[0]["reason"], "rtt_too_high");
    assert_eq!(
        rejected[0]["failed_pairs"],
        serde_json::json!([["alice", "bob"]])
    );
    let results = events_of(&events, Ev::ProbeResult);
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["accepted"], false);
    assert_eq!(results[0]["reason"], "rtt_too_high");
    assert_eq!(results[0]["rtt_ms"], 80.0);
    // Never the same pair twice.
    let mut pairs: Vec<String> = events_of(&events, Ev::ProbeStarted)
        .iter()
        .map(|e| e["members"].to_string())
        .collect();
    let total = pairs.len();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), total, "a pair was probed twice: {pairs:?}");
    assert_eq!(events_of(&events, Ev::GameCreated).len(), 2);
}

#[tokio::test]
async fn failed_measurement_is_a_rejection() {
    let server = TestServer::start().await;
    let (mut a, _) = server.join("alice", "probe").await;
    let (mut b, _) = server.join("bob", "probe").await;
    // success: false with a null RTT from one side.
    run_probe(&mut a, &mut b, Some(3.0), None).await;
    a.expect_waitroom().await;
    b.expect_waitroom().await;
    let events = server.wait_for_event("probe", Ev::MatchRejected).await;
    let r = events_of(&events, Ev::MatchRejected)[0];
    assert_eq!(r["reason"], "measurement_failed");
}

#[tokio::test]
async fn without_max_p2p_rtt_the_game_starts_at_once() {
    let mut server = TestServer::start().await;
    let (mut a, _) = server.join("alice", "noprobe").await;
    let (mut b, _) = server.join("bob", "noprobe").await;
    let ga = a.expect_game_start().await;
    let gb = b.expect_game_start().await;
    assert_eq!(ga.game_id, gb.game_id);
    assert_eq!(ga.player_count, 2);
    assert_eq!((ga.player_index, gb.player_index), (0, 1));
    server.wait_for_event("noprobe", Ev::GameCreated).await;
    drop((a, b));
    server.stop().await;
    let events = server.events("noprobe");
    let mp = events_of(&events, Ev::MatchProposed);
    assert_eq!(mp.len(), 1);
    assert_eq!(mp[0]["probe"], false);
    assert_eq!(mp[0]["matchmaker"], "fifo");
    assert!(events_of(&events, Ev::ProbeStarted).is_empty());
}

#[tokio::test]
async fn waitroom_timeout_sends_message_and_redirect_then_closes() {
    let server = TestServer::start().await;
    let (mut a, w) = server.join("alice", "short").await;
    assert!(w.remaining_ms <= 400, "{w:?}");
    let (closed, seen) = a.expect_closed().await;
    let timeout = seen
        .iter()
        .find_map(|m| match m {
            ServerMessage::WaitroomTimeout(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no waitroom_timeout before the close: {seen:?}"));
    assert_eq!(timeout.message, "No partner this time. Thank you!");
    assert_eq!(
        timeout.redirect_url.as_deref(),
        Some("https://example.org/done?cc=1")
    );
    // waitroom_timeout, then its outcome (with the same URL), and nothing after them.
    assert!(
        matches!(
            &seen[seen.len().saturating_sub(2)..],
            [ServerMessage::WaitroomTimeout(_), ServerMessage::Outcome(o)]
                if o.outcome == pairlab_shared::Outcome::WAITROOM_TIMEOUT
                    && o.redirect_url == timeout.redirect_url
        ),
        "waitroom_timeout and its outcome are the last messages: {seen:?}"
    );
    assert_eq!(closed, NORMAL_CLOSE);

    let events = server.wait_for_event("short", Ev::WaitroomTimeout).await;
    let t = events_of(&events, Ev::WaitroomTimeout)[0];
    assert_eq!(t["subject_id"], "alice");
    let waited = t["waited_ms"].as_f64().expect("waited_ms");
    assert!((350.0..5000.0).contains(&waited), "{t}");

    // Done in that scene: coming back is refused (with the one answer for an id in use).
    let mut again = server.connect().await;
    again.send(&hello("alice", Some("short"), None)).await;
    again.expect_error(pairlab_shared::ErrorCode::IdInUse).await;
    assert_eq!(again.expect_closed().await.0, NORMAL_CLOSE);
}

#[tokio::test]
async fn hidden_lobby_count_is_null() {
    let server = TestServer::start().await;
    let mut a = server.connect().await;
    let w = a.hello("alice", Some("hidden"), None).await;
    assert!(w.hide_lobby_count);
    let wr = a.expect_waitroom().await;
    assert_eq!(wr.waiting, None);
}

#[tokio::test]
async fn hello_without_scene_joins_the_first_scene() {
    let server = TestServer::start().await;
    let mut a = server.connect().await;
    let w = a.hello("alice", None, None).await;
    assert_eq!(w.scene_id, "probe");
    assert_eq!(w.group_size, 2);
    assert_eq!(w.waitroom_timeout_ms, 60_000);
    assert!(!w.hide_lobby_count);
    assert!(!w.resume_token.is_empty());
}

#[tokio::test]
async fn waitroom_count_reaches_everyone_waiting() {
    let server = TestServer::start().await;
    let (mut a, w1) = server.join("alice", "trio").await;
    assert_eq!(w1.waiting, Some(1));
    let (_b, w2) = server.join("bob", "trio").await;
    assert_eq!(w2.waiting, Some(2), "the count includes the recipient");
    let w = a
        .until("waitroom with 2", |m| match m {
            ServerMessage::Waitroom(w) if w.waiting == Some(2) => Some(*w),
            _ => None,
        })
        .await;
    assert_eq!(w.group_size, 3);
}

#[tokio::test]
async fn reconnect_with_resume_token_keeps_place_and_deadline() {
    let mut server = TestServer::start().await;
    let (a, wa) = server.join("alice", "trio").await;
    let token = a.resume_token();
    let (b, _) = server.join("bob", "trio").await;

    // alice drops (no leave) and comes back within the grace with her token.
    a.close().await;
    server.wait_for_event("trio", Ev::ParticipantDropped).await;

    // Without the token, during the grace: refused.
    let mut thief = server.connect().await;
    thief.send(&hello("alice", Some("trio"), None)).await;
    thief.expect_error(pairlab_shared::ErrorCode::IdInUse).await;
    assert_eq!(thief.expect_closed().await.0, NORMAL_CLOSE);
    // With a wrong token: refused too.
    let mut thief = server.connect().await;
    thief
        .send(&hello("alice", Some("trio"), Some("not-the-token")))
        .await;
    thief.expect_error(pairlab_shared::ErrorCode::IdInUse).await;

    let mut a2 = server.connect().await;
    let w = a2.hello("alice", Some("trio"), Some(&token)).await;
    assert_eq!(w.subject_id.as_str(), "alice");
    let wr = a2.expect_waitroom().await;
    assert!(
        wr.remaining_ms <= wa.remaining_ms,
        "the deadline is kept, not reset: {wr:?} after {wa:?}"
    );

    // carol arrives: alice is still first in line, before bob.
    let (mut c, _) = server.join("carol", "trio").await;
    let g = a2.expect_game_start().await;
    assert_eq!(g.player_count, 3);
    assert_eq!(g.player_index, 0);
    assert_eq!(c.expect_game_start().await.player_index, 2);

    drop((a2, b, c, thief));
    server.stop().await;
    let events = server.events("trio");
    let joined = events_of(&events, Ev::ParticipantJoined);
    assert!(
        joined
            .iter()
            .any(|e| e["subject_id"] == "alice" && e["resumed"] == true),
        "{joined:?}"
    );
}

#[tokio::test]
async fn resume_token_takes_over_a_live_connection() {
    let server = TestServer::start().await;
    let (mut a, _) = server.join("alice", "trio").await;
    let token = a.resume_token();
    let mut a2 = server.connect().await;
    let w = a2.hello("alice", Some("trio"), Some(&token)).await;
    assert_eq!(w.subject_id.as_str(), "alice");
    a2.expect_waitroom().await;
    // The old socket is closed.
    let (closed, _) = a.expect_closed().await;
    assert_eq!(closed, NORMAL_CLOSE);
    a2.expect_open().await;
}

#[tokio::test]
async fn disconnect_during_probe_returns_the_other_member() {
    let server = TestServer::start().await;
    let (mut a, b, id) = server.probe_pair().await;
    a.send(&ready(&id)).await;
    b.close().await;
    // alice goes back to the waitroom at once, not at the probe deadline (3 s), told first to
    // close the probe.
    let t0 = std::time::Instant::now();
    let closed = a
        .until("probe_close", |m| match m {
            ServerMessage::ProbeClose(c) => Some(c.probe_session_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(closed, id);
    a.expect_waitroom().await;
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    let events = server.wait_for_event("probe", Ev::MatchRejected).await;
    assert_eq!(
        events_of(&events, Ev::MatchRejected)[0]["reason"],
        "disconnected"
    );
}

#[tokio::test]
async fn leave_is_final() {
    let server = TestServer::start().await;
    let (mut a, _) = server.join("alice", "noprobe").await;
    a.send(&pairlab_shared::ClientMessage::Leave).await;
    assert_eq!(a.expect_closed().await.0, NORMAL_CLOSE);
    let events = server.wait_for_event("noprobe", Ev::ParticipantLeft).await;
    assert_eq!(
        events_of(&events, Ev::ParticipantLeft)[0]["reason"],
        "leave"
    );
    // bob does not get matched with the departed alice.
    let (mut b, _) = server.join("bob", "noprobe").await;
    b.expect_quiet(QUIET).await;
}

/// The first `ping` goes out right after `welcome`. With Nagle's algorithm on, it would wait
/// for the client's delayed ACK of the welcome (40 ms on Linux) and inflate the first server-RTT
/// sample; on loopback every sample is well under a millisecond.
#[tokio::test]
async fn first_server_rtt_sample_is_not_delayed_by_nagle() {
    let server = TestServer::start().await;
    let mut clients = Vec::new();
    for name in ["n1", "n2", "n3"] {
        clients.push(server.join(name, "trio").await.0);
    }
    let events = server.wait_for_event("trio", Ev::ServerRtt).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut events = events;
    while events_of(&events, Ev::ServerRtt).len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        events = server.events("trio");
    }
    let rtts = events_of(&events, Ev::ServerRtt);
    assert_eq!(rtts.len(), 3);
    for e in rtts {
        let first = e["samples_ms"][0].as_f64().expect("a first sample");
        assert!(
            first < 35.0,
            "first sample {first} ms: TCP_NODELAY missing? {e}"
        );
    }
}

/// Ids that cannot turn up in a frame by accident.
const ALICE: &str = "PID-alice-5f8a2c1d9e";
const BOB: &str = "PID-bob-60b7e4d2c9";

/// Partners never see each other's `subject_id`: over a whole probe (prepare, start, signals
/// both ways, results), `game_start`, game signals both ways and `game_ended`, no frame a
/// member receives holds the other's id; the research record still names both.
#[tokio::test]
async fn partners_never_see_each_others_subject_id() {
    let mut server = TestServer::start().await;
    let (mut a, _) = server.join(ALICE, "probe").await;
    let (mut b, _) = server.join(BOB, "probe").await;
    let id = a.expect_probe_prepare().await.probe_session_id;
    b.expect_probe_prepare().await;
    a.send(&ready(&id)).await;
    b.send(&ready(&id)).await;
    a.expect_probe_start().await;
    b.expect_probe_start().await;
    let sdp = SignalPayload::Description { sdp: "v=0".into() };
    a.send(&signal(&id, 1, SignalType::Offer, Some(sdp.clone())))
        .await;
    b.send(&signal(&id, 0, SignalType::Answer, Some(sdp.clone())))
        .await;
    let relayed = |m: &ServerMessage| matches!(m, ServerMessage::ProbeSignal(_)).then_some(());
    b.until("probe_signal", relayed).await;
    a.until("probe_signal", relayed).await;
    a.send(&result(&id, true, Some(10.0))).await;
    b.send(&result(&id, true, Some(11.0))).await;
    let game_id = a.expect_game_start().await.game_id;
    b.expect_game_start().await;
    for (from, target) in [(&mut a, 1), (&mut b, 0)] {
        let msg = pairlab_shared::ClientMessage::WebrtcSignal(pairlab_shared::WebrtcSignalOut {
            game_id: game_id.clone(),
            target_index: target,
            signal_type: SignalType::Offer,
            payload: Some(sdp.clone()),
        });
        from.send(&msg).await;
    }
    let relayed = |m: &ServerMessage| match m {
        ServerMessage::WebrtcSignal(s) => Some(s.from_index),
        _ => None,
    };
    assert_eq!(b.until("webrtc_signal", relayed).await, 0);
    assert_eq!(a.until("webrtc_signal", relayed).await, 1);
    let failed =
        pairlab_shared::ClientMessage::P2pConnectionFailed(pairlab_shared::P2pConnectionFailed {
            game_id: game_id.clone(),
            peer_index: 1,
            attempts: 3,
        });
    a.send(&failed).await;
    let ended = |m: &ServerMessage| matches!(m, ServerMessage::GameEnded(_)).then_some(());
    a.until("game_ended", ended).await;
    b.until("game_ended", ended).await;

    for (member, peer) in [(&a, BOB), (&b, ALICE)] {
        assert!(member.received.len() >= 6, "{:?}", member.received);
        for frame in &member.received {
            assert!(
                !frame.contains(peer),
                "{} received its partner's id: {frame}",
                member.name
            );
        }
    }
    server
        .wait_for_event("probe", Ev::P2pConnectionFailed)
        .await;
    drop((a, b));
    server.stop().await;
    let events = server.events("probe");
    let gc = events_of(&events, Ev::GameCreated)[0];
    assert_eq!(gc["players"], serde_json::json!([ALICE, BOB]));
    let f = events_of(&events, Ev::P2pConnectionFailed)[0];
    assert_eq!(
        (&f["subject_id"], &f["peer_subject_id"]),
        (&ALICE.into(), &BOB.into())
    );
}

/// With `[server] link_secret`, `hello` as someone else's id followed by `leave` cannot make the
/// real participant refused: the squatter is refused at `hello` (`invalid_link`), and the
/// real participant, with their signed link, joins.
#[tokio::test]
async fn signed_links_stop_squatting_by_hello_and_leave() {
    use pairlab_server::core::link::LinkSigner;
    use tokio_tungstenite::tungstenite::Message;
    const SECRET: &str = "a-test-secret-of-32-characters!!";
    let config = format!("{TEST_CONFIG}\n[server]\nlink_secret = \"{SECRET}\"\n");
    let server = TestServer::with_config(&config).await;
    let signer = LinkSigner::new(SECRET);
    let signed = |subject: &str, signature: Option<String>| {
        pairlab_shared::ClientMessage::Hello(pairlab_shared::Hello {
            subject_id: sid(subject),
            scene_id: Some("noprobe".into()),
            resume_token: None,
            link_signature: signature,
            recruiter: None,
            browser: None,
        })
    };
    // The squatter: no signature, then another id's signature; each time hello and leave
    // at once.
    for signature in [None, Some(signer.sign(&sid("mallory")))] {
        let mut squatter = server.connect().await;
        for frame in [
            signed(ALICE, signature).to_json(),
            "{\"type\":\"leave\"}".into(),
        ] {
            // (The second frame may meet a socket the server has closed already.)
            let _ = futures_util::SinkExt::send(&mut squatter.ws, Message::text(frame)).await;
        }
        let e = squatter
            .expect_error(pairlab_shared::ErrorCode::InvalidLink)
            .await;
        assert!(e.message.contains("link"), "{e:?}");
        assert_eq!(squatter.expect_closed().await.0, NORMAL_CLOSE);
    }
    // The real alice, with her link.
    let mut alice = server.connect().await;
    alice
        .send(&signed(ALICE, Some(signer.sign(&sid(ALICE)))))
        .await;
    match alice.recv().await {
        ServerMessage::Welcome(w) => assert_eq!(w.subject_id.as_str(), ALICE),
        other => panic!("expected welcome, got {other:?}"),
    }
    alice.expect_waitroom().await;
    let events = server.events("noprobe");
    assert_eq!(
        events_of(&events, Ev::ParticipantLeft).len(),
        0,
        "{events:?}"
    );
}
