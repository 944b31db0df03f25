//! The server's lifecycle in the research record: `server_started` first in every scene's
//! record, and at shutdown `server_stopping` followed by a final `participant_left` with reason
//! `server_shutdown` for every live session — waiting, playing or in the reconnect grace —
//! instead of the `participant_dropped` the closing sockets would otherwise cause.

mod common;

use common::*;
use pairlab_server::record::kind_of;
use ResearchEventKind as Ev;

/// The events of `events` that are about `subject` (`subject_id`), in order.
fn about<'a>(events: &'a [serde_json::Value], subject: &str) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| e["subject_id"] == subject)
        .collect()
}

#[tokio::test]
async fn shutdown_gives_every_live_participant_a_last_participant_left() {
    let mut server = TestServer::start().await;
    // Waiting in a scene of three.
    let (mut alice, _) = server.join("alice", "trio").await;
    let (mut bob, _) = server.join("bob", "trio").await;
    // Playing (a scene without probe starts the game at once).
    let (mut carol, _) = server.join("carol", "noprobe").await;
    let (mut dave, _) = server.join("dave", "noprobe").await;
    carol.expect_game_start().await;
    dave.expect_game_start().await;
    // Dropped, in their reconnect grace.
    let (eve, _) = server.join("eve", "hidden").await;
    eve.close().await;
    server
        .wait_for_event("hidden", Ev::ParticipantDropped)
        .await;

    let stop = server.stop();
    let (ra, rb, rc, rd, ()) = tokio::join!(
        alice.expect_closed(),
        bob.expect_closed(),
        carol.expect_closed(),
        dave.expect_closed(),
        stop
    );
    for (closed, _) in [ra, rb, rc, rd] {
        assert_eq!(closed, Closed::Code(1001));
    }

    let mut config_hashes = Vec::new();
    for (scene, live) in [
        ("trio", vec!["alice", "bob"]),
        ("noprobe", vec!["carol", "dave"]),
        ("hidden", vec!["eve"]),
        ("probe", vec![]),
        ("short", vec![]),
    ] {
        let events = server.events(scene);
        let names: Vec<Option<Ev>> = events.iter().map(kind_of).collect();
        assert_eq!(
            names.first(),
            Some(&Some(Ev::ServerStarted)),
            "{scene}: {names:?}"
        );
        assert_eq!(events[0]["version"], env!("CARGO_PKG_VERSION"));
        let hash = events[0]["config_sha256"].as_str().expect("config_sha256");
        assert_eq!(hash.len(), 64, "{hash}");
        config_hashes.push(hash.to_owned());

        // The tail: server_stopping, then one participant_left per live session, and nothing else.
        let stopping = names
            .iter()
            .position(|n| *n == Some(Ev::ServerStopping))
            .unwrap_or_else(|| panic!("{scene}: no server_stopping in {names:?}"));
        assert_eq!(events[stopping]["live_participants"], live.len(), "{scene}");
        let tail = &events[stopping + 1..];
        assert_eq!(tail.len(), live.len(), "{scene}: {names:?}");
        for e in tail {
            assert_eq!(kind_of(e), Some(Ev::ParticipantLeft), "{scene}: {e}");
            assert_eq!(e["reason"], "server_shutdown", "{scene}: {e}");
        }
        for subject in live {
            let last = *about(&events, subject).last().expect("recorded");
            assert_eq!(
                kind_of(last),
                Some(Ev::ParticipantLeft),
                "{subject}: {last}"
            );
            assert_eq!(last["reason"], "server_shutdown", "{subject}: {last}");
        }
        let dropped = names
            .iter()
            .filter(|n| **n == Some(Ev::ParticipantDropped))
            .count();
        assert_eq!(
            dropped,
            usize::from(scene == "hidden"),
            "{scene}: only eve's own drop, none at shutdown: {names:?}"
        );
    }
    config_hashes.dedup();
    assert_eq!(config_hashes.len(), 1, "one config, one hash");
}
