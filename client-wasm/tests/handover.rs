//! Browser tests of a probe kept for the game (`probe_prepare.keep_ms`): the connection
//! parks after both results, `game_start` hands it over (the same `RTCPeerConnection`
//! becomes the game's), and everything that must close it does (`probe_close`, `keep_ms`, a
//! `game_start` that does not adopt it, `waitroom_timeout`), while `waitroom` does not. Two
//! members in one headless Chromium page, the server's part in memory
//! ([`common::kept::KeptProbe`]). The game on a handed-over connection, and the fallbacks to a
//! fresh one, are in `game.rs`.
//!
//! Run from the workspace root: `wasm-pack test --headless --chrome --mode no-install
//! client-wasm --test handover`.

#![cfg(target_arch = "wasm32")]
// Both sides of a pair are indexed alike (managers, connections, results).
#![allow(clippy::needless_range_loop)]

use gloo_timers::future::TimeoutFuture;
use pairlab_client::handover::{GamePath, CONTROL_LABEL, INPUTS_LABEL};
use pairlab_client::probe::ProbeManager;
use pairlab_shared::{
    ClientMessage, ConnectionKind, ProbeClose, ProbePrepare, ProbeSessionId, ProbeStart,
    ServerMessage, Waitroom, WaitroomTimeout,
};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{RtcPeerConnection, RtcPeerConnectionState};

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::kept::{KeptProbe, KeptSpec};
use common::within;

fn assert_closed(pc: &RtcPeerConnection, who: &str) {
    assert_eq!(
        pc.connection_state(),
        RtcPeerConnectionState::Closed,
        "{who}: connectionState"
    );
}

/// Both sides' probe connections of a parked probe (checked to be the parked ones).
fn connections(probe: &KeptProbe) -> [RtcPeerConnection; 2] {
    [0, 1].map(|i| {
        let parked = probe.managers[i]
            .peer_connection(&probe.id)
            .expect("a parked connection");
        assert!(js_sys::Object::is(&parked, &probe.connections[i]));
        parked
    })
}

fn waitroom() -> ServerMessage {
    ServerMessage::Waitroom(Waitroom {
        waiting: Some(3),
        group_size: 2,
        remaining_ms: 60_000,
    })
}

#[wasm_bindgen_test]
async fn kept_probe_parks_with_the_game_channels_open_and_is_handed_over() {
    let probe = KeptProbe::run("6a000000-0000-4000-8000-000000000001", KeptSpec::default()).await;
    let pcs = connections(&probe);
    for i in 0..2 {
        let r = probe.results[i].as_ref().expect("a result");
        assert!(r.success && r.rtt_ms.is_some(), "side {i}: {r:?}");
        assert!(
            probe.managers[i].active().is_empty(),
            "side {i}: no probe runs"
        );
        assert_eq!(probe.managers[i].parked(), vec![probe.id.clone()]);
        assert_eq!(
            pcs[i].connection_state(),
            RtcPeerConnectionState::Connected,
            "side {i}: parked, not closed"
        );
    }
    // A waitroom update while parked changes nothing.
    for m in &probe.managers {
        m.handle(&waitroom());
    }
    TimeoutFuture::new(20).await;
    for (i, m) in probe.managers.iter().enumerate() {
        assert_eq!(
            m.parked(),
            vec![probe.id.clone()],
            "side {i} after waitroom"
        );
    }

    for i in 0..2 {
        let (_, mut paths) = probe.hand_over(i, "g-handover", true);
        let Some(GamePath::Adopt(parked)) = paths.remove(&(1 - i as u32)) else {
            panic!("side {i}: the parked connection is handed over");
        };
        // The same browser connection, with both game channels open already.
        assert!(
            js_sys::Object::is(parked.peer.raw(), &pcs[i]),
            "side {i}: the probe's RTCPeerConnection itself"
        );
        assert!(parked.peer.is_channel_open(INPUTS_LABEL));
        assert!(parked.peer.is_channel_open(CONTROL_LABEL));
        let measured = &parked.measured;
        assert!(measured.pair_id.is_some(), "side {i}: the measured pair id");
        assert_eq!(
            measured.info.map(|c| c.connection_type),
            Some(ConnectionKind::Direct)
        );
        assert_eq!(
            measured.info,
            probe.results[i].as_ref().and_then(|r| r.connection)
        );
        // Taken out of the manager: its game_start closed nothing of it.
        assert!(probe.managers[i].parked().is_empty());
        assert_eq!(pcs[i].connection_state(), RtcPeerConnectionState::Connected);
        drop(parked);
        assert_closed(&pcs[i], &format!("side {i}, dropped"));
    }
}

#[wasm_bindgen_test]
async fn probe_close_closes_a_parked_connection() {
    let probe = KeptProbe::run("6a000000-0000-4000-8000-000000000002", KeptSpec::default()).await;
    let pcs = connections(&probe);
    for i in 0..2 {
        probe.managers[i].handle(&ServerMessage::ProbeClose(ProbeClose {
            probe_session_id: probe.id.clone(),
        }));
        assert!(probe.managers[i].parked().is_empty());
        assert_closed(&pcs[i], &format!("side {i}"));
        // A second close, or one for an unknown probe, is ignored.
        probe.managers[i].handle(&ServerMessage::ProbeClose(ProbeClose {
            probe_session_id: probe.id.clone(),
        }));
    }
}

#[wasm_bindgen_test]
async fn keep_ms_passing_closes_a_parked_connection() {
    let spec = KeptSpec {
        keep_ms: Some(300),
        ..KeptSpec::default()
    };
    let probe = KeptProbe::run("6a000000-0000-4000-8000-000000000003", spec).await;
    let pcs = connections(&probe);
    within(3_000, "keep_ms to pass", async {
        while probe.managers.iter().any(|m| !m.parked().is_empty()) {
            TimeoutFuture::new(10).await;
        }
    })
    .await;
    for (i, pc) in pcs.iter().enumerate() {
        assert_closed(pc, &format!("side {i}"));
    }
}

#[wasm_bindgen_test]
async fn game_start_that_does_not_adopt_closes_and_keeps_the_measured_path() {
    let probe = KeptProbe::run("6a000000-0000-4000-8000-000000000004", KeptSpec::default()).await;
    let pcs = connections(&probe);
    for i in 0..2 {
        let (_, mut paths) = probe.hand_over(i, "g-fresh", false);
        match paths.remove(&(1 - i as u32)) {
            Some(GamePath::Fresh {
                offer_anyway: false,
                probe: Some(info),
            }) => assert_eq!(
                Some(info),
                probe.results[i].as_ref().and_then(|r| r.connection)
            ),
            _ => panic!("side {i}: handover false → fresh, with the probe's path"),
        }
        assert!(probe.managers[i].parked().is_empty());
        assert_closed(&pcs[i], &format!("side {i}"));
    }
}

#[wasm_bindgen_test]
async fn waitroom_timeout_and_outcome_close_parked_connections() {
    let probe = KeptProbe::run("6a000000-0000-4000-8000-000000000005", KeptSpec::default()).await;
    let pcs = connections(&probe);
    probe.managers[0].handle(&ServerMessage::WaitroomTimeout(WaitroomTimeout {
        message: "Sorry.".into(),
        redirect_url: None,
    }));
    assert_closed(&pcs[0], "waitroom_timeout");
    // Dropping the manager (the session's signalling connection ended) closes too.
    let [_, m1] = probe.managers;
    drop(m1);
    assert_closed(&pcs[1], "manager dropped");
}

#[wasm_bindgen_test]
async fn waitroom_closes_running_probes_without_keep_ms_only() {
    let (tx, _rx) = futures::channel::mpsc::unbounded::<ClientMessage>();
    let alice = ProbeManager::new(move |m| {
        let _ = tx.unbounded_send(m);
    });
    let prepare = |id: &ProbeSessionId, keep_ms: Option<u64>| {
        ServerMessage::ProbePrepare(ProbePrepare {
            probe_session_id: id.clone(),
            peer_index: 1,
            ice_servers: vec![],
            timeout_ms: 10_000,
            force_relay: false,
            keep_ms,
        })
    };
    let kept = ProbeSessionId::from_string("6a000000-0000-4000-8000-000000000006");
    let plain = ProbeSessionId::from_string("6a000000-0000-4000-8000-000000000007");
    alice.handle(&prepare(&kept, Some(30_000)));
    alice.handle(&prepare(&plain, None));
    let pc_kept = alice.peer_connection(&kept).expect("kept");
    let pc_plain = alice.peer_connection(&plain).expect("plain");
    for id in [&kept, &plain] {
        alice.handle(&ServerMessage::ProbeStart(ProbeStart {
            probe_session_id: id.clone(),
            initiator: true,
        }));
    }
    TimeoutFuture::new(20).await;
    alice.handle(&waitroom());
    assert_eq!(alice.active(), vec![kept.clone()], "the kept probe runs on");
    assert_closed(&pc_plain, "the probe without keep_ms");
    assert_ne!(pc_kept.connection_state(), RtcPeerConnectionState::Closed);
    // The server closes the kept one with probe_close.
    alice.handle(&ServerMessage::ProbeClose(ProbeClose {
        probe_session_id: kept.clone(),
    }));
    assert!(alice.active().is_empty());
    assert_closed(&pc_kept, "the kept probe after probe_close");
}

/// 50 probes through one page, one after the other, half of them kept and parked; each kept
/// one ends a different way (probe_close, keep_ms, a game_start that does not adopt it, a
/// handover whose connection is then dropped). Every connection is closed afterwards and the
/// managers hold nothing.
#[wasm_bindgen_test]
async fn soak_fifty_probes_every_connection_closed() {
    let t0 = js_sys::Date::now();
    let mut closed = 0;
    for n in 0..50u32 {
        let id = format!("6b000000-0000-4000-8000-{n:012}");
        let keep_ms = match n % 10 {
            1 | 3 | 5 | 7 | 9 => None,
            2 => Some(50),
            _ => Some(30_000),
        };
        let spec = KeptSpec {
            keep_ms,
            ..KeptSpec::default()
        };
        let probe = KeptProbe::run(&id, spec).await;
        if keep_ms.is_none() {
            // A plain probe closes by itself once both are done.
            for pc in &probe.connections {
                assert_closed(pc, &id);
            }
            closed += 2;
            continue;
        }
        let pcs = connections(&probe);
        match n % 10 {
            0 => {
                for m in &probe.managers {
                    m.handle(&ServerMessage::ProbeClose(ProbeClose {
                        probe_session_id: probe.id.clone(),
                    }));
                }
            }
            // keep_ms of 50 ms.
            2 => {
                within(2_000, "keep_ms", async {
                    while probe.managers.iter().any(|m| !m.parked().is_empty()) {
                        TimeoutFuture::new(5).await;
                    }
                })
                .await;
            }
            // game_start without adoption.
            4 => {
                for i in 0..2 {
                    probe.hand_over(i, "g-soak", false);
                }
            }
            // Handed over, then the game's side drops it.
            6 => {
                for i in 0..2 {
                    let (_, paths) = probe.hand_over(i, "g-soak", true);
                    assert!(matches!(
                        paths.get(&(1 - i as u32)),
                        Some(GamePath::Adopt(_))
                    ));
                    drop(paths);
                }
            }
            // The session's signalling connection ends.
            _ => drop(probe.managers),
        }
        for pc in &pcs {
            assert_closed(pc, &id);
        }
        closed += 2;
    }
    console_log!(
        "soak: 50 probes, {closed} connections closed, {:.0} ms",
        js_sys::Date::now() - t0
    );
}
