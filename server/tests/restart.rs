//! A restart keeps each scene's memory: the done set and the failed pairs are rebuilt from the
//! research record when the server starts on the same data dir.

mod common;

use common::*;
use pairlab_shared::{ClientMessage, ErrorCode};

/// A subject who left is refused (`id_in_use`, the one answer for an id that has taken part) by
/// the next server on the same data dir; someone new is welcome.
#[tokio::test]
async fn a_subject_who_left_is_still_done_after_a_restart() {
    let mut server = TestServer::start().await;
    let (mut alice, _) = server.join("alice", "noprobe").await;
    alice.send(&ClientMessage::Leave).await;
    alice.expect_closed().await;
    server
        .wait_for_event("noprobe", ResearchEventKind::ParticipantLeft)
        .await;

    server.restart().await;
    let mut again = server.connect().await;
    again.send(&hello("alice", Some("noprobe"), None)).await;
    again.expect_error(ErrorCode::IdInUse).await;
    again.expect_closed().await;
    let (_bob, _) = server.join("bob", "noprobe").await;
    server.stop().await;
}

/// A pair whose probe failed is not probed again after a restart; each of them is probed with
/// someone new.
#[tokio::test]
async fn a_failed_pair_stays_failed_after_a_restart() {
    let mut server = TestServer::start().await;
    let (mut a, _) = server.join("pa", "probe").await;
    let (mut b, _) = server.join("pb", "probe").await;
    let id = a.expect_probe_prepare().await.probe_session_id;
    b.expect_probe_prepare().await;
    for c in [&mut a, &mut b] {
        c.send(&ready(&id)).await;
    }
    for c in [&mut a, &mut b] {
        c.send(&result(&id, true, Some(400.0))).await;
    }
    server
        .wait_for_event("probe", ResearchEventKind::MatchRejected)
        .await;
    drop((a, b));

    server.restart().await;
    let (mut a, _) = server.join("pa", "probe").await;
    let (mut b, _) = server.join("pb", "probe").await;
    a.expect_quiet(QUIET).await;
    b.expect_quiet(QUIET).await;
    let (mut c, _) = server.join("pc", "probe").await;
    c.expect_probe_prepare().await;
    a.expect_probe_prepare().await; // pa, first in line, is probed with pc
    b.expect_quiet(QUIET).await;
    server.stop().await;
}
