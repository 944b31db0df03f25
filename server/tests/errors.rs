//! Every error code of PROTOCOL.md's table over a real WebSocket, with whether the connection
//! stays open or is closed; frames over 64 KiB (close 1009); binary frames.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use pairlab_shared::{ErrorCode, ServerMessage, SignalPayload, SignalType, MAX_FRAME_BYTES};
use tokio_tungstenite::tungstenite::Message;

/// A welcomed client in the `trio` scene (it waits, nothing else happens).
async fn welcomed(server: &TestServer, subject: &str) -> Client {
    let (c, _) = server.join(subject, "trio").await;
    c
}

// --- bad_message: stays open ------------------------------------------------------------

#[tokio::test]
async fn bad_message_stays_open() {
    let server = TestServer::start().await;
    let mut c = welcomed(&server, "alice").await;
    for frame in [
        "this is not json",
        "[1, 2, 3]",
        "\"a string\"",
        "{\"no_type\": 1}",
        "{\"type\": 7}",
        "{\"type\":\"probe_ready\"}",
        "{\"type\":\"probe_result\",\"probe_session_id\":\"x\",\"success\":\"yes\",\"rtt_ms\":1,\"samples_ms\":[],\"stats_rtt_ms\":null}",
        "{\"type\":\"pong\"}",
    ] {
        c.send_text(frame).await;
        let e = c.expect_error(ErrorCode::BadMessage).await;
        assert!(!e.message.is_empty(), "{frame}");
    }
    // A binary frame is not JSON: bad_message too.
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    c.expect_error(ErrorCode::BadMessage).await;
    c.expect_open().await;
}

// --- unknown_type: stays open -----------------------------------------------------------

#[tokio::test]
async fn unknown_type_stays_open() {
    let server = TestServer::start().await;
    let mut c = welcomed(&server, "alice").await;
    c.send_text("{\"type\":\"dance\",\"style\":\"tango\"}")
        .await;
    c.expect_error(ErrorCode::UnknownType).await;
    c.expect_open().await;
}

// --- hello_required: closed -------------------------------------------------------------

#[tokio::test]
async fn hello_required_when_the_first_frame_is_not_hello() {
    let server = TestServer::start().await;
    for first in [
        "{\"type\":\"leave\"}",
        "{\"type\":\"pong\",\"seq\":1}",
        "{\"type\":\"probe_ready\",\"probe_session_id\":\"x\"}",
        "{\"type\":\"dance\"}",
        "not json at all",
        "[]",
    ] {
        let mut c = server.connect().await;
        c.name = format!("first frame {first}");
        c.send_text(first).await;
        c.expect_error(ErrorCode::HelloRequired).await;
        let (closed, rest) = c.expect_closed().await;
        assert_eq!(closed, NORMAL_CLOSE, "{first}");
        assert!(rest.is_empty(), "nothing after the error: {rest:?}");
    }
    // A binary first frame.
    let mut c = server.connect().await;
    c.ws.send(Message::binary(vec![0u8; 10])).await.unwrap();
    c.expect_error(ErrorCode::HelloRequired).await;
    assert_eq!(c.expect_closed().await.0, NORMAL_CLOSE);
}

#[tokio::test]
async fn hello_required_for_a_second_hello() {
    let server = TestServer::start().await;
    let mut c = welcomed(&server, "alice").await;
    c.send(&hello("alice", Some("trio"), None)).await;
    c.expect_error(ErrorCode::HelloRequired).await;
    assert_eq!(c.expect_closed().await.0, NORMAL_CLOSE);
}

// --- invalid_subject_id: closed ---------------------------------------------------------

#[tokio::test]
async fn invalid_subject_id_closes() {
    let server = TestServer::start().await;
    let too_long = format!(
        "{{\"type\":\"hello\",\"subject_id\":\"{}\"}}",
        "x".repeat(129)
    );
    for frame in [
        "{\"type\":\"hello\"}",
        "{\"type\":\"hello\",\"subject_id\":42}",
        "{\"type\":\"hello\",\"subject_id\":\"\"}",
        "{\"type\":\"hello\",\"subject_id\":\"has space\"}",
        "{\"type\":\"hello\",\"subject_id\":\"../etc\"}",
        too_long.as_str(),
    ] {
        let mut c = server.connect().await;
        c.name = frame.chars().take(60).collect();
        c.send_text(frame).await;
        c.expect_error(ErrorCode::InvalidSubjectId).await;
        assert_eq!(c.expect_closed().await.0, NORMAL_CLOSE, "{frame}");
    }
}

// --- unknown_scene: closed --------------------------------------------------------------

#[tokio::test]
async fn unknown_scene_closes() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    c.send(&hello("alice", Some("nope"), None)).await;
    c.expect_error(ErrorCode::UnknownScene).await;
    assert_eq!(c.expect_closed().await.0, NORMAL_CLOSE);
}

// --- id_in_use: closed, the first connection unharmed ----------------------------------

#[tokio::test]
async fn id_in_use_closes_the_second_connection_only() {
    let server = TestServer::start().await;
    let mut first = welcomed(&server, "alice").await;
    let mut second = server.connect().await;
    second.send(&hello("alice", Some("trio"), None)).await;
    second.expect_error(ErrorCode::IdInUse).await;
    assert_eq!(second.expect_closed().await.0, NORMAL_CLOSE);
    first.expect_open().await;
    // The same subject in another scene is a different session.
    let mut other = server.connect().await;
    other.hello("alice", Some("noprobe"), None).await;
}

// --- id_in_use after leave: closed, and the same answer as for a connected id ------------

#[tokio::test]
async fn id_in_use_after_leave_is_answered_as_for_a_connected_id() {
    let server = TestServer::start().await;
    let mut c = welcomed(&server, "alice").await;
    c.send(&pairlab_shared::ClientMessage::Leave).await;
    assert_eq!(c.expect_closed().await.0, NORMAL_CLOSE);
    let mut again = server.connect().await;
    again.send(&hello("alice", Some("trio"), None)).await;
    let done = again.expect_error(ErrorCode::IdInUse).await;
    assert_eq!(again.expect_closed().await.0, NORMAL_CLOSE);
    // A connected id gets the very same frame: a hello cannot tell the two apart.
    let _bob = welcomed(&server, "bob").await;
    let mut probe = server.connect().await;
    probe.send(&hello("bob", Some("trio"), None)).await;
    let connected = probe.expect_error(ErrorCode::IdInUse).await;
    assert_eq!(done, connected);
}

// --- not_a_member: stays open, nothing relayed ------------------------------------------

#[tokio::test]
async fn not_a_member_for_unknown_probe_ids() {
    let server = TestServer::start().await;
    let mut c = welcomed(&server, "alice").await;
    let bogus = pairlab_shared::ProbeSessionId::from_string("no-such-probe");
    c.send(&ready(&bogus)).await;
    c.expect_error(ErrorCode::NotAMember).await;
    c.send(&signal(&bogus, 1, SignalType::IceCandidate, None))
        .await;
    c.expect_error(ErrorCode::NotAMember).await;
    c.send(&result(&bogus, true, Some(3.0))).await;
    c.expect_error(ErrorCode::NotAMember).await;
    c.expect_open().await;
}

#[tokio::test]
async fn not_a_member_for_outsiders_and_outside_targets() {
    let server = TestServer::start().await;
    let (mut a, mut b, id) = server.probe_pair().await;
    // carol waits in the same scene but is in no probe (a and b are busy with theirs).
    let (mut c, _) = server.join("carol", "probe").await;

    // An outsider cannot touch the probe.
    c.send(&ready(&id)).await;
    c.expect_error(ErrorCode::NotAMember).await;
    let sdp = SignalPayload::Description { sdp: "v=0".into() };
    c.send(&signal(&id, 0, SignalType::Offer, Some(sdp.clone())))
        .await;
    c.expect_error(ErrorCode::NotAMember).await;
    c.send(&result(&id, true, Some(1.0))).await;
    c.expect_error(ErrorCode::NotAMember).await;
    c.expect_open().await;

    // A member cannot aim a signal outside the probe (or at themself).
    a.send(&ready(&id)).await;
    b.send(&ready(&id)).await;
    a.expect_probe_start().await;
    b.expect_probe_start().await;
    a.send(&signal(&id, 2, SignalType::Offer, Some(sdp.clone())))
        .await;
    a.expect_error(ErrorCode::NotAMember).await;
    a.send(&signal(&id, 0, SignalType::Offer, Some(sdp.clone())))
        .await;
    a.expect_error(ErrorCode::NotAMember).await;

    // Nothing of the above reached anyone: alice and bob got no relayed signal, carol nothing.
    c.expect_quiet(QUIET).await;
    b.expect_quiet(Duration::from_millis(50)).await;
    // The probe itself is unharmed: a proper signal still goes through.
    a.send(&signal(&id, 1, SignalType::Offer, Some(sdp.clone())))
        .await;
    let got = b.expect_probe_signal().await;
    assert_eq!(got.from_index, 0);
    a.expect_open().await;
}

// --- rate_limited: closed ---------------------------------------------------------------

#[tokio::test]
async fn rate_limited_closes_a_flood() {
    let server = TestServer::start().await;
    let mut c = welcomed(&server, "alice").await;
    // Stale pongs are answered by the shell without a reply, so the flood produces no
    // responses of its own; it only counts against the limit.
    let flood = "{\"type\":\"pong\",\"seq\":999999}";
    for _ in 0..3000 {
        if c.ws.feed(Message::text(flood)).await.is_err() {
            break;
        }
    }
    let _ = c.ws.flush().await;
    let (closed, seen) = c.expect_closed().await;
    assert!(
        seen.iter().any(|m| matches!(
            m,
            ServerMessage::Error(e) if e.code == ErrorCode::RateLimited
        )),
        "no rate_limited error before the close: {seen:?}"
    );
    assert_eq!(closed, Closed::Code(1008));

    // An honest client at a few frames a second is never limited.
    let mut ok = welcomed(&server, "bob").await;
    for _ in 0..20 {
        ok.send_text(flood).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ok.expect_open().await;
}

// --- frames over 64 KiB: close 1009 -----------------------------------------------------

fn padded(len: usize) -> String {
    let head = "{\"type\":\"dance\",\"pad\":\"";
    let tail = "\"}";
    format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
}

#[tokio::test]
async fn frame_over_64_kib_closes_with_1009() {
    let server = TestServer::start().await;

    // Exactly the limit is a frame like any other.
    let mut c = welcomed(&server, "alice").await;
    let at_limit = padded(MAX_FRAME_BYTES);
    assert_eq!(at_limit.len(), MAX_FRAME_BYTES);
    c.send_text(&at_limit).await;
    c.expect_error(ErrorCode::UnknownType).await;
    c.expect_open().await;

    // One byte more closes with 1009, after hello ...
    c.send_text(&padded(MAX_FRAME_BYTES + 1)).await;
    let (closed, seen) = c.expect_closed().await;
    assert_eq!(closed, Closed::Code(1009), "{seen:?}");

    // ... and before it, and far over it.
    for len in [70_000, 1_000_000] {
        let mut c = server.connect().await;
        c.name = format!("{len} bytes");
        let _ = c.ws.send(Message::text(padded(len))).await;
        let (closed, seen) = c.expect_closed().await;
        assert_eq!(closed, Closed::Code(1009), "{len}: {seen:?}");
    }

    // The server is fine.
    let mut d = welcomed(&server, "dave").await;
    d.expect_open().await;
}

#[tokio::test]
async fn errors_never_reach_other_participants() {
    let server = TestServer::start().await;
    let mut quiet = welcomed(&server, "bystander").await;
    let mut noisy = welcomed(&server, "noisy").await;
    for frame in [
        "garbage",
        "{\"type\":\"dance\"}",
        "{\"type\":\"probe_ready\"}",
    ] {
        noisy.send_text(frame).await;
    }
    noisy.send(&hello("noisy", None, None)).await;
    let _ = noisy.expect_closed().await;
    quiet.expect_quiet(QUIET).await;
    quiet.expect_open().await;
}
