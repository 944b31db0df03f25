//! Browser tests of the probe: real `RTCPeerConnection`s in one headless Chromium page, joined
//! by an in-memory signalling loop that plays the server's part (no server, no network beyond
//! the machine's own address).
//!
//! Run from the workspace root: `wasm-pack test --headless --chrome client-wasm --test probe`.

#![cfg(target_arch = "wasm32")]

use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::mpsc;
use futures::stream::{self, StreamExt};
use gloo_timers::future::TimeoutFuture;
use pairlab_client::handover::GamePath;
use pairlab_client::peer::{ChannelData, Delivery, Hooked, Peer, PeerConfig, PeerError, PeerEvent};
use pairlab_client::probe::wire::{path_rtt_ms, MAX_SAMPLES, SAMPLE_COUNT};
use pairlab_client::probe::ProbeManager;
use pairlab_client::util::now_ms;
use pairlab_shared::{
    ClientMessage, GameId, GameStart, PeerProbe, ProbePrepare, ProbeResult, ProbeSessionId,
    ProbeSignalIn, ProbeStart, ServerMessage, SignalPayload, SignalType, Waitroom,
};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{RtcPeerConnection, RtcPeerConnectionState, RtcSignalingState};

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::within;

/// Lets queued tasks run (promise callbacks, the probe tasks).
async fn settle(ms: u32) {
    TimeoutFuture::new(ms).await;
}

fn assert_closed(pc: &RtcPeerConnection, who: &str) {
    assert_eq!(
        pc.signaling_state(),
        RtcSignalingState::Closed,
        "{who}: signalingState after close"
    );
    assert_eq!(
        pc.connection_state(),
        RtcPeerConnectionState::Closed,
        "{who}: connectionState after close"
    );
}

/// `probe_prepare` naming the peer by its player index.
fn prepare(id: &ProbeSessionId, peer_index: u32, timeout_ms: u64) -> ServerMessage {
    prepare_kept(id, peer_index, timeout_ms, None)
}

/// `probe_prepare` with `keep_ms`.
fn prepare_kept(
    id: &ProbeSessionId,
    peer_index: u32,
    timeout_ms: u64,
    keep_ms: Option<u64>,
) -> ServerMessage {
    ServerMessage::ProbePrepare(ProbePrepare {
        probe_session_id: id.clone(),
        peer_index,
        ice_servers: vec![],
        timeout_ms,
        force_relay: false,
        keep_ms,
    })
}

/// One participant: a [`ProbeManager`] whose outgoing messages land in a channel.
struct Member {
    manager: ProbeManager,
}

fn member() -> (Member, mpsc::UnboundedReceiver<ClientMessage>) {
    let (tx, rx) = mpsc::unbounded();
    let manager = ProbeManager::new(move |m| {
        let _ = tx.unbounded_send(m);
    });
    (Member { manager }, rx)
}

/// What the fake server saw of one probe.
struct ProbeRecord {
    members: [usize; 2],
    ready: [bool; 2],
    prepared_at_ms: f64,
    started_at_ms: Option<f64>,
    results: [Option<(ProbeResult, f64)>; 2],
    connections: [RtcPeerConnection; 2],
}

/// The server's part, in memory: prepares probes between members, starts them when both are
/// ready (initiator: the smaller player index, as PROTOCOL.md says), relays signals (checking
/// the target), and collects results. A member's player index is its place in `members`.
struct FakeServer {
    members: Vec<Member>,
    inbox: stream::SelectAll<stream::BoxStream<'static, (usize, ClientMessage)>>,
    probes: HashMap<ProbeSessionId, ProbeRecord>,
    relayed: usize,
    /// `keep_ms` of the probes it prepares.
    keep_ms: Option<u64>,
}

impl FakeServer {
    /// One member per name (the names only make the tests readable), in player order.
    fn new(names: &[&str]) -> Self {
        let mut members = Vec::new();
        let mut inbox = stream::SelectAll::new();
        for i in 0..names.len() {
            let (m, rx) = member();
            members.push(m);
            inbox.push(rx.map(move |msg| (i, msg)).boxed());
        }
        Self {
            members,
            inbox,
            probes: HashMap::new(),
            relayed: 0,
            keep_ms: None,
        }
    }

    fn prepare(&mut self, id: &str, a: usize, b: usize, timeout_ms: u64) -> ProbeSessionId {
        let id = ProbeSessionId::from_string(id);
        let prepared_at_ms = now_ms();
        assert!(self.members[a].manager.handle(&prepare_kept(
            &id,
            b as u32,
            timeout_ms,
            self.keep_ms
        )));
        assert!(self.members[b].manager.handle(&prepare_kept(
            &id,
            a as u32,
            timeout_ms,
            self.keep_ms
        )));
        let ca = self.members[a]
            .manager
            .peer_connection(&id)
            .expect("a connection right after probe_prepare");
        let cb = self.members[b]
            .manager
            .peer_connection(&id)
            .expect("a connection right after probe_prepare");
        self.probes.insert(
            id.clone(),
            ProbeRecord {
                members: [a, b],
                ready: [false; 2],
                prepared_at_ms,
                started_at_ms: None,
                results: [None, None],
                connections: [ca, cb],
            },
        );
        id
    }

    fn all_reported(&self) -> bool {
        self.probes
            .values()
            .all(|p| p.results.iter().all(Option::is_some))
    }

    /// Relays until every probe has both results.
    async fn run_until_reported(&mut self) {
        while !self.all_reported() {
            let Some((from, msg)) = self.inbox.next().await else {
                panic!("every member's outbox closed before all results came");
            };
            self.on_message(from, msg);
        }
    }

    fn on_message(&mut self, from: usize, msg: ClientMessage) {
        match msg {
            ClientMessage::ProbeReady(r) => {
                let rec = self
                    .probes
                    .get_mut(&r.probe_session_id)
                    .expect("probe_ready for a known probe");
                let side = rec
                    .members
                    .iter()
                    .position(|&m| m == from)
                    .expect("a member");
                assert!(!rec.ready[side], "probe_ready sent twice");
                rec.ready[side] = true;
                if rec.ready == [true, true] {
                    rec.started_at_ms = Some(now_ms());
                    let [a, b] = rec.members;
                    let a_first = pairlab_shared::is_initiator(a as u32, b as u32);
                    for (m, initiator) in [(a, a_first), (b, !a_first)] {
                        self.members[m]
                            .manager
                            .handle(&ServerMessage::ProbeStart(ProbeStart {
                                probe_session_id: r.probe_session_id.clone(),
                                initiator,
                            }));
                    }
                }
            }
            ClientMessage::ProbeSignal(s) => {
                let rec = self
                    .probes
                    .get(&s.probe_session_id)
                    .expect("probe_signal for a known probe");
                let side = rec
                    .members
                    .iter()
                    .position(|&m| m == from)
                    .expect("a member");
                let to = rec.members[1 - side];
                assert_eq!(
                    s.target_index, to as u32,
                    "a signal must target the probe's other member"
                );
                if let Some(SignalPayload::Description { sdp }) = &s.payload {
                    assert!(!sdp.is_empty(), "an empty SDP");
                }
                self.relayed += 1;
                let msg = ServerMessage::ProbeSignal(ProbeSignalIn {
                    probe_session_id: s.probe_session_id,
                    from_index: from as u32,
                    signal_type: s.signal_type,
                    payload: s.payload,
                });
                self.members[to].manager.handle(&msg);
            }
            ClientMessage::ProbeResult(r) => {
                let rec = self
                    .probes
                    .get_mut(&r.probe_session_id)
                    .expect("probe_result for a known probe");
                let side = rec
                    .members
                    .iter()
                    .position(|&m| m == from)
                    .expect("a member");
                assert!(rec.results[side].is_none(), "probe_result sent twice");
                rec.results[side] = Some((r, now_ms()));
            }
            other => panic!("unexpected client message {other:?}"),
        }
    }
}

/// Checks a successful result: full samples, all finite, `rtt_ms` the smallest, a getStats
/// RTT, and the measured path (direct: these probes have no ICE servers and no relay).
fn check_success(r: &ProbeResult, who: &str) {
    assert!(r.success, "{who}: success, got {r:?}");
    assert!(
        (SAMPLE_COUNT..=MAX_SAMPLES).contains(&r.samples_ms.len()),
        "{who}: sample count {}",
        r.samples_ms.len()
    );
    for s in &r.samples_ms {
        assert!(s.is_finite() && *s >= 0.0, "{who}: sample {s}");
        // Loopback in one page: anything near a second means the measurement is wrong.
        assert!(*s < 1000.0, "{who}: sample {s} ms on loopback");
    }
    let rtt = r.rtt_ms.expect("rtt_ms on success");
    assert_eq!(
        Some(rtt),
        path_rtt_ms(&r.samples_ms),
        "{who}: rtt_ms is the path RTT of the samples"
    );
    assert!(
        r.samples_ms.iter().all(|s| rtt <= *s),
        "{who}: rtt_ms {rtt} is the smallest sample of {:?}",
        r.samples_ms
    );
    let path = r.connection.expect("the measured candidate pair");
    assert_eq!(
        path.connection_type,
        pairlab_shared::ConnectionKind::Direct,
        "{who}: no ICE servers, so a direct pair: {path:?}"
    );
    let stats = r.stats_rtt_ms.expect("stats_rtt_ms from getStats");
    assert!(
        stats.is_finite() && (0.0..1000.0).contains(&stats),
        "{who}: stats {stats}"
    );
}

#[wasm_bindgen_test]
async fn two_peers_measure_report_and_close() {
    let mut server = FakeServer::new(&["alice", "bob"]);
    let mut outcomes = server.members[0].manager.outcomes();
    let id = server.prepare("2f0b7e4c-0000-4000-8000-000000000001", 0, 1, 10_000);

    within(15_000, "the two-peer probe", server.run_until_reported()).await;

    let rec = &server.probes[&id];
    let started = rec.started_at_ms.expect("probe_start was sent");
    for (side, who) in [(0, "alice"), (1, "bob")] {
        let (r, at) = rec.results[side].as_ref().expect("a result");
        check_success(r, who);
        console_log!(
            "{who}: probe_start → probe_result {:.1} ms, probe_prepare → probe_result {:.1} ms; \
             rtt_ms {:.3}, stats_rtt_ms {:?}, samples_ms {:?}",
            at - started,
            at - rec.prepared_at_ms,
            r.rtt_ms.unwrap_or(f64::NAN),
            r.stats_rtt_ms,
            r.samples_ms
        );
    }
    let decided = rec
        .results
        .iter()
        .flatten()
        .map(|(_, at)| *at)
        .fold(0.0, f64::max);
    console_log!(
        "probe_prepare → both results {:.1} ms ({} signals relayed)",
        decided - rec.prepared_at_ms,
        server.relayed
    );
    // Loopback in one page: the whole probe in well under a second (typically ~50 ms).
    assert!(
        decided - rec.prepared_at_ms < 3000.0,
        "the probe took too long"
    );

    // Both sides close once both are done: no connection stays open.
    let connections = rec.connections.clone();
    within(3_000, "both probes closing", async {
        while !server.members.iter().all(|m| m.manager.active().is_empty()) {
            settle(5).await;
        }
    })
    .await;
    assert_closed(&connections[0], "alice");
    assert_closed(&connections[1], "bob");

    let outcome = within(1_000, "alice's outcome", outcomes.next())
        .await
        .expect("an outcome");
    assert_eq!(outcome.failure, None);
    assert!(outcome.closed_after_ms >= outcome.reported_after_ms);
    console_log!(
        "alice: reported {:.1} ms and closed {:.1} ms after probe_prepare",
        outcome.reported_after_ms,
        outcome.closed_after_ms
    );
}

#[wasm_bindgen_test]
async fn group_of_three_runs_three_probes_at_once() {
    let mut server = FakeServer::new(&["m1", "m2", "m3"]);
    let t0 = now_ms();
    server.prepare("2f0b7e4c-0000-4000-8000-000000000012", 0, 1, 10_000);
    server.prepare("2f0b7e4c-0000-4000-8000-000000000013", 0, 2, 10_000);
    server.prepare("2f0b7e4c-0000-4000-8000-000000000023", 1, 2, 10_000);
    for m in &server.members {
        assert_eq!(
            m.manager.active().len(),
            2,
            "each member is in two probes at once"
        );
    }

    within(
        20_000,
        "three concurrent probes",
        server.run_until_reported(),
    )
    .await;
    let t1 = now_ms();

    for (id, rec) in &server.probes {
        for (side, (r, _)) in rec.results.iter().flatten().enumerate() {
            check_success(r, &format!("{id} side {side}"));
        }
    }
    console_log!(
        "three concurrent probes: prepare → all six results {:.1} ms",
        t1 - t0
    );

    within(3_000, "all probes closing", async {
        while !server.members.iter().all(|m| m.manager.active().is_empty()) {
            settle(5).await;
        }
    })
    .await;
    for (id, rec) in &server.probes {
        assert_closed(&rec.connections[0], id.as_str());
        assert_closed(&rec.connections[1], id.as_str());
    }
}

#[wasm_bindgen_test]
async fn unanswered_probe_fails_on_the_client_deadline() {
    let (alice, mut outbox) = member();
    let id = ProbeSessionId::from_string("2f0b7e4c-0000-4000-8000-000000000002");
    let prepared_at = now_ms();
    alice.manager.handle(&prepare(&id, 1, 1_000));
    let pc = alice.manager.peer_connection(&id).expect("a connection");
    alice.manager.handle(&ServerMessage::ProbeStart(ProbeStart {
        probe_session_id: id.clone(),
        initiator: true,
    }));

    // The offer and candidates go nowhere: bob never answers.
    let mut saw_ready = false;
    let mut saw_offer = false;
    let result = within(5_000, "the failed result", async {
        loop {
            match outbox.next().await.expect("alice's outbox open") {
                ClientMessage::ProbeReady(_) => saw_ready = true,
                ClientMessage::ProbeSignal(s) => {
                    saw_offer |= s.signal_type == SignalType::Offer;
                }
                ClientMessage::ProbeResult(r) => return r,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    let elapsed = now_ms() - prepared_at;
    console_log!("unanswered probe (timeout_ms 1000): failed result after {elapsed:.1} ms");
    assert!(
        saw_ready && saw_offer,
        "probe_ready and an offer went out first"
    );
    assert_eq!(result.probe_session_id, id);
    assert!(!result.success);
    assert_eq!(result.rtt_ms, None);
    assert!(result.samples_ms.is_empty());
    assert_eq!(result.stats_rtt_ms, None);
    // The client deadline is 900 ms for a 1000 ms server timeout: before the server's.
    assert!(elapsed >= 895.0, "gave up early: {elapsed} ms");
    assert!(
        elapsed < 1_000.0,
        "gave up after the server's deadline: {elapsed} ms"
    );

    assert!(alice.manager.active().is_empty());
    assert_closed(&pc, "alice");
    // Nothing after the result.
    settle(50).await;
    if let Ok(m) = outbox.try_recv() {
        panic!("a message after the result: {m:?}");
    }
}

#[wasm_bindgen_test]
async fn server_moving_on_closes_probes_and_late_messages_are_ignored() {
    let (alice, mut outbox) = member();
    let (bob, carol) = (1, 2);
    let p1 = ProbeSessionId::from_string("2f0b7e4c-0000-4000-8000-000000000003");
    let p2 = ProbeSessionId::from_string("2f0b7e4c-0000-4000-8000-000000000004");
    alice.manager.handle(&prepare(&p1, bob, 10_000));
    alice.manager.handle(&prepare(&p2, carol, 10_000));
    let pc1 = alice.manager.peer_connection(&p1).expect("p1");
    let pc2 = alice.manager.peer_connection(&p2).expect("p2");
    alice.manager.handle(&ServerMessage::ProbeStart(ProbeStart {
        probe_session_id: p1.clone(),
        initiator: true,
    }));
    settle(20).await;

    // The server returned alice to the waitroom: every probe closes at once, no result.
    alice.manager.handle(&ServerMessage::Waitroom(Waitroom {
        waiting: Some(1),
        group_size: 2,
        remaining_ms: 60_000,
    }));
    assert!(alice.manager.active().is_empty());
    assert_closed(&pc1, "p1");
    assert_closed(&pc2, "p2");

    // Late messages for the closed probes are ignored.
    alice.manager.handle(&ServerMessage::ProbeStart(ProbeStart {
        probe_session_id: p2.clone(),
        initiator: true,
    }));
    alice
        .manager
        .handle(&ServerMessage::ProbeSignal(ProbeSignalIn {
            probe_session_id: p1.clone(),
            from_index: bob,
            signal_type: SignalType::IceCandidate,
            payload: None,
        }));
    settle(50).await;
    let mut sent = Vec::new();
    while let Ok(m) = outbox.try_recv() {
        sent.push(m);
    }
    assert!(
        sent.iter()
            .all(|m| !matches!(m, ClientMessage::ProbeResult(_))),
        "no result for a probe the server ended: {sent:?}"
    );
    assert_eq!(
        sent.iter()
            .filter(|m| matches!(m, ClientMessage::ProbeReady(_)))
            .count(),
        2
    );

    // game_start ends probes too.
    let p3 = ProbeSessionId::from_string("2f0b7e4c-0000-4000-8000-000000000005");
    alice.manager.handle(&prepare(&p3, bob, 10_000));
    let pc3 = alice.manager.peer_connection(&p3).expect("p3");
    alice
        .manager
        .handle(&ServerMessage::GameStart(Box::new(GameStart {
            game_id: GameId::from_string("g"),
            player_index: 0,
            player_count: 3,
            ice_servers: vec![],
            force_relay: false,
            pair_rtts: vec![],
            game: Default::default(),
            probes: Vec::new(),
        })));
    assert_closed(&pc3, "p3");
}

#[wasm_bindgen_test]
async fn peer_buffers_early_candidates_and_closes_cleanly() {
    let config = PeerConfig::default();
    let (mut a, mut ev_a) = Peer::new(&config, None).expect("peer a");
    let (mut b, mut ev_b) = Peer::new(
        &config,
        Some(Rc::new(|_label: &str, d: ChannelData| {
            if d == ChannelData::Text("ping".into()) {
                Hooked::Reply("pong".to_owned())
            } else {
                Hooked::PassOn(d)
            }
        })),
    )
    .expect("peer b");

    a.create_data_channel("test", Delivery::Reliable)
        .expect("channel");
    let offer = a.create_offer().await.expect("offer");

    // Gather all of a's candidates first (only a test waits for this), and hand them to b
    // before b has the offer: they must be buffered.
    let candidates: Vec<Option<SignalPayload>> = within(5_000, "a's gathering", async {
        let mut all = Vec::new();
        while let Some(ev) = ev_a.next().await {
            if let PeerEvent::LocalCandidate(c) = ev {
                let end = c.is_none();
                all.push(c);
                if end {
                    break;
                }
            }
        }
        all
    })
    .await;
    assert!(
        candidates.len() >= 2,
        "at least one candidate and the end: {candidates:?}"
    );
    for c in &candidates {
        b.add_remote_candidate(c.as_ref())
            .expect("buffered")
            .await
            .expect("buffering cannot fail");
    }
    assert_eq!(b.pending_candidates(), candidates.len());
    assert!(!b.has_remote_description());

    let answer = b.accept_offer(&offer).await.expect("answer");
    assert_eq!(b.pending_candidates(), 0, "flushed once the offer is set");
    a.accept_answer(&answer).await.expect("answer accepted");

    // Trickle b's candidates to a until a's channel opens.
    within(5_000, "the DataChannel opening", async {
        loop {
            futures::select! {
                e = ev_a.next() => match e {
                    Some(PeerEvent::ChannelOpen { .. }) => break,
                    Some(PeerEvent::ConnectionState(RtcPeerConnectionState::Failed)) => {
                        panic!("a failed")
                    }
                    Some(_) => {}
                    None => panic!("a's events ended"),
                },
                e = ev_b.next() => if let Some(PeerEvent::LocalCandidate(c)) = e {
                    a.add_remote_candidate(c.as_ref())
                        .expect("a is open")
                        .await
                        .expect("candidate for a");
                },
            }
        }
    })
    .await;

    // b answers inside onmessage (the auto-reply); a gets the reply as an event.
    let sent_at = now_ms();
    a.send("test", "ping").expect("send");
    let (text, received_at) = within(2_000, "the reply", async {
        loop {
            if let Some(PeerEvent::ChannelMessage {
                text,
                received_at_ms,
                ..
            }) = ev_a.next().await
            {
                return (text, received_at_ms);
            }
        }
    })
    .await;
    assert_eq!(text, "pong");
    assert!(received_at >= sent_at);

    let pair = a
        .selected_pair()
        .await
        .expect("getStats")
        .expect("a selected pair once open");
    console_log!("selected pair: {pair:?}");
    let kinds = ["host", "srflx", "prflx", "relay"];
    assert!(pair
        .local_candidate_type
        .as_deref()
        .is_some_and(|t| kinds.contains(&t)));
    assert!(pair
        .remote_candidate_type
        .as_deref()
        .is_some_and(|t| kinds.contains(&t)));
    assert!(pair
        .current_round_trip_time_ms
        .is_some_and(|r| r.is_finite() && r >= 0.0));

    // close() and Drop both leave nothing open.
    let raw_a = a.raw().clone();
    let raw_b = b.raw().clone();
    b.close();
    assert!(b.is_closed());
    assert_eq!(b.send("test", "x"), Err(PeerError::Closed));
    assert_eq!(b.add_remote_candidate(None).err(), Some(PeerError::Closed));
    assert_closed(&raw_b, "b after close()");
    drop(a);
    assert_closed(&raw_a, "a after drop");
}

/// A group of three with kept probes: every member parks both its connections, and
/// `game_start` hands over every pair's (PROTOCOL.md "Handover": groups larger than two hand
/// over each pair's probe connection).
#[wasm_bindgen_test]
async fn group_of_three_parks_and_hands_over_every_pair() {
    let mut server = FakeServer::new(&["m1", "m2", "m3"]);
    server.keep_ms = Some(30_000);
    let pairs = [(0, 1, "12"), (0, 2, "13"), (1, 2, "23")];
    let ids: Vec<ProbeSessionId> = pairs
        .iter()
        .map(|(a, b, n)| {
            server.prepare(
                &format!("2f0b7e4c-0000-4000-8000-0000000001{n}"),
                *a,
                *b,
                10_000,
            )
        })
        .collect();
    within(20_000, "three kept probes", server.run_until_reported()).await;
    within(3_000, "every connection parked", async {
        while !server.members.iter().all(|m| m.manager.parked().len() == 2) {
            settle(5).await;
        }
    })
    .await;
    for (m, member) in server.members.iter().enumerate() {
        let probes = pairs
            .iter()
            .zip(&ids)
            .filter(|((a, b, _), _)| *a == m || *b == m)
            .map(|((a, b, _), id)| PeerProbe {
                peer_index: if *a == m { *b } else { *a } as u32,
                probe_session_id: id.clone(),
                handover: true,
            })
            .collect();
        let start = GameStart {
            game_id: GameId::from_string("g3"),
            player_index: m as u32,
            player_count: 3,
            ice_servers: vec![],
            force_relay: false,
            pair_rtts: vec![],
            game: Default::default(),
            probes,
        };
        let mut paths = member.manager.hand_over(&start);
        member
            .manager
            .handle(&ServerMessage::GameStart(Box::new(start)));
        for peer in (0..3u32).filter(|p| *p != m as u32) {
            let Some(GamePath::Adopt(parked)) = paths.remove(&peer) else {
                panic!("member {m}: the connection to {peer} is handed over");
            };
            assert_eq!(
                parked.peer.raw().connection_state(),
                RtcPeerConnectionState::Connected
            );
        }
        assert!(member.manager.parked().is_empty());
    }
}
