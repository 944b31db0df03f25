//! Unit tests of the core with a clock passed in: no sockets, no sleeping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pairlab_shared::*;

use super::research::{LeaveReason, ProbeFailure, ResearchEvent, ResearchEventKind};
use super::*;
use crate::config::{Config, MatchmakerKind, SceneConfig};

/// The Unix time, s, the simulated clock starts at.
const UNIX_T0_S: u64 = 1_700_000_000;

struct H {
    core: Core,
    t0: Instant,
    now: Instant,
    records: Vec<ResearchEvent>,
    /// Every action the core returned, in order.
    log: Vec<Action>,
}

fn sid(s: &str) -> SubjectId {
    SubjectId::parse(s).unwrap()
}

fn latency_scene(max_p2p: Option<f64>) -> SceneConfig {
    let mut s = SceneConfig::with_defaults("s", 2, MatchmakerKind::LatencyFifo);
    s.max_server_rtt_ms = Some(200.0);
    s.max_p2p_rtt_ms = max_p2p;
    s.waitroom_timeout_ms = 60_000;
    s.probe_timeout_ms = 5_000;
    s.reconnect_grace_ms = 3_000;
    s
}

impl H {
    fn new(scene: SceneConfig) -> Self {
        Self::seeded(vec![scene], 1)
    }
    fn with_scenes(scenes: Vec<SceneConfig>) -> Self {
        Self::seeded(scenes, 1)
    }
    /// A core for `scenes` without ICE servers, whose ids come from `seed`.
    fn seeded(scenes: Vec<SceneConfig>, seed: u64) -> Self {
        Self::with_config(
            Config {
                scenes,
                ice_servers: vec![],
                turn: None,
                server: Default::default(),
            },
            seed,
        )
    }
    /// A core for `config` whose ids come from `seed`, on a simulated clock starting now.
    fn with_config(config: Config, seed: u64) -> Self {
        let t0 = Instant::now();
        let clock = CoreClock {
            origin: t0,
            origin_unix_s: UNIX_T0_S,
        };
        H {
            core: Core::new(Arc::new(config), clock, Box::new(SeededIds::new(seed))),
            t0,
            now: t0,
            records: vec![],
            log: vec![],
        }
    }
    fn at(&mut self, ms: u64) {
        self.now = self.t0 + Duration::from_millis(ms);
    }
    fn ev(&mut self, e: Event) -> Vec<Action> {
        let mut out = vec![];
        self.core.handle(self.now, e, &mut out);
        if let Err(e) = self.core.check_invariants() {
            panic!("invariant broken: {e}");
        }
        for a in &out {
            if let Action::Record { event, .. } = a {
                self.records.push(event.clone());
            }
        }
        self.log.extend(out.iter().cloned());
        out
    }
    fn msg(&mut self, conn: u64, msg: ClientMessage) -> Vec<Action> {
        self.ev(Event::Message {
            conn: ConnId::new(conn),
            msg,
        })
    }
    /// A new connection `conn` (no frame yet).
    fn connect(&mut self, conn: u64) -> Vec<Action> {
        self.ev(Event::Connected {
            conn: ConnId::new(conn),
        })
    }
    /// `conn` sends `text`, a frame that does not decode as a client message.
    fn malformed(&mut self, conn: u64, text: &str) -> Vec<Action> {
        let error = match ClientMessage::decode(text) {
            Ok(msg) => panic!("{text} decodes as {msg:?}"),
            Err(error) => error,
        };
        self.ev(Event::Malformed {
            conn: ConnId::new(conn),
            error,
        })
    }
    fn tick_at(&mut self, ms: u64) -> Vec<Action> {
        self.at(ms);
        self.ev(Event::Tick)
    }
    /// Connects, says hello, and delivers three RTT samples of `rtt` ms. Returns everything sent.
    fn join(&mut self, n: u64, subject: &str, rtt: f64) -> Vec<Action> {
        let conn = ConnId::new(n);
        let mut all = self.ev(Event::Connected { conn });
        all.extend(self.hello(n, subject, None));
        for _ in 0..3 {
            all.extend(self.ev(Event::RttSample { conn, rtt_ms: rtt }));
        }
        all.extend(self.ev(Event::Tick));
        all
    }
    fn hello(&mut self, conn: u64, subject: &str, token: Option<String>) -> Vec<Action> {
        self.msg(
            conn,
            ClientMessage::Hello(Hello {
                subject_id: sid(subject),
                scene_id: None,
                resume_token: token,
                link_signature: None,
                recruiter: None,
                browser: None,
            }),
        )
    }
    /// The players of the latest `game_created` line, in player order.
    fn game_players(&self) -> Vec<SubjectId> {
        self.game_created()
            .map(|(players, _)| players.clone())
            .unwrap_or_default()
    }
    /// The latest `game_created` line's players and probes.
    fn game_created(&self) -> Option<(&Vec<SubjectId>, &Vec<research::PairProbe>)> {
        self.records.iter().rev().find_map(|r| match r {
            ResearchEvent::GameCreated {
                players, probes, ..
            } => Some((players, probes)),
            _ => None,
        })
    }
    /// How many research events of `kind` the core has recorded.
    fn count(&self, kind: ResearchEventKind) -> usize {
        self.records.iter().filter(|r| r.kind() == kind).count()
    }
}

fn sent(actions: &[Action], to: u64) -> Vec<ServerMessage> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn, msg } if conn.get() == to => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

fn closed(actions: &[Action], c: u64) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Close { conn } if conn.get() == c))
}

fn error_code(actions: &[Action], to: u64) -> Option<ErrorCode> {
    sent(actions, to).into_iter().find_map(|m| match m {
        ServerMessage::Error(e) => Some(e.code),
        _ => None,
    })
}

fn prepare(actions: &[Action], to: u64) -> Option<ProbePrepare> {
    sent(actions, to).into_iter().find_map(|m| match m {
        ServerMessage::ProbePrepare(p) => Some(p),
        _ => None,
    })
}

fn game(actions: &[Action], to: u64) -> Option<GameStart> {
    sent(actions, to).into_iter().find_map(|m| match m {
        ServerMessage::GameStart(g) => Some(*g),
        _ => None,
    })
}

fn waitroom(actions: &[Action], to: u64) -> Option<Waitroom> {
    sent(actions, to).into_iter().find_map(|m| match m {
        ServerMessage::Waitroom(w) => Some(w),
        _ => None,
    })
}

fn token(actions: &[Action], to: u64) -> String {
    sent(actions, to)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Welcome(w) => Some(w.resume_token),
            _ => None,
        })
        .expect("welcome")
}

fn ready(id: &ProbeSessionId) -> ClientMessage {
    ClientMessage::ProbeReady(ProbeReady {
        probe_session_id: id.clone(),
    })
}

fn result(id: &ProbeSessionId, rtt: Option<f64>) -> ClientMessage {
    ClientMessage::ProbeResult(ProbeResult {
        probe_session_id: id.clone(),
        success: rtt.is_some(),
        rtt_ms: rtt,
        samples_ms: rtt.into_iter().collect(),
        stats_rtt_ms: rtt,
        connection: None,
    })
}

/// A and B join and get a probe; returns its id.
fn probe_pair(h: &mut H) -> ProbeSessionId {
    h.join(1, "A", 10.0);
    let a = h.join(2, "B", 10.0);
    let p1 = prepare(&a, 1).expect("prepare to A");
    let p2 = prepare(&a, 2).expect("prepare to B");
    assert_eq!(p1.probe_session_id, p2.probe_session_id);
    assert_eq!(p1.peer_index, 1, "A knows B as player 1");
    assert_eq!(p2.peer_index, 0, "B knows A as player 0");
    assert_eq!(p1.timeout_ms, 5_000);
    p1.probe_session_id
}

#[test]
fn fifo_without_probe_starts_game_at_once() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    let a = h.join(1, "A", 500.0);
    assert!(matches!(sent(&a, 1)[0], ServerMessage::Welcome(_)));
    assert_eq!(waitroom(&a, 1).map(|w| w.waiting), Some(Some(1)));
    let b = h.join(2, "B", 500.0);
    let (ga, gb) = (game(&b, 1).unwrap(), game(&b, 2).unwrap());
    assert_eq!(ga.game_id, gb.game_id);
    assert_eq!(ga.player_count, 2);
    assert_eq!(h.game_players(), vec![sid("A"), sid("B")], "arrival order");
    assert_eq!((ga.player_index, gb.player_index), (0, 1));
    assert!(prepare(&b, 1).is_none());
    assert_eq!(h.count(ResearchEventKind::GameCreated), 1);
    assert_eq!(h.count(ResearchEventKind::MatchProposed), 1);
}

#[test]
fn waits_for_entry_samples_or_time() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    h.connect(1);
    h.hello(1, "A", None);
    let a = h.ev(Event::RttSample {
        conn: ConnId::new(1),
        rtt_ms: 5.0,
    });
    assert!(
        waitroom(&a, 1).is_none(),
        "one sample is not yet an estimate"
    );
    h.at(400);
    let a = h.ev(Event::RttSample {
        conn: ConnId::new(1),
        rtt_ms: 5.0,
    });
    assert!(
        waitroom(&a, 1).is_some(),
        "after ENTRY_MAX_WAIT a sample is enough"
    );
}

#[test]
fn latency_prefilter_sums_server_rtts() {
    let mut h = H::new(latency_scene(None));
    h.join(1, "A", 150.0);
    let b = h.join(2, "B", 100.0);
    assert!(game(&b, 2).is_none(), "150 + 100 > 200");
    let c = h.join(3, "C", 50.0);
    game(&c, 3).expect("150 + 50 <= 200: A and C");
    assert_eq!(h.game_players(), vec![sid("A"), sid("C")]);
    assert!(game(&c, 2).is_none());
}

#[test]
fn probe_accept_full_life_cycle() {
    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    assert_eq!(h.count(ResearchEventKind::ProbeStarted), 1);
    // Ready counts once per member.
    assert!(sent(&h.msg(1, ready(&id)), 1).is_empty());
    assert!(sent(&h.msg(1, ready(&id)), 1).is_empty(), "duplicate ready");
    h.at(30);
    let a = h.msg(2, ready(&id));
    let starts: Vec<_> = [1, 2]
        .iter()
        .map(|&c| match &sent(&a, c)[..] {
            [ServerMessage::ProbeStart(s)] => s.initiator,
            other => panic!("expected one probe_start, got {other:?}"),
        })
        .collect();
    assert_eq!(starts, vec![true, false], "A < B: A initiates");
    assert!(sent(&h.msg(1, ready(&id)), 1).is_empty(), "no second start");
    // Signals go to the other member only.
    let offer = ProbeSignalOut {
        probe_session_id: id.clone(),
        target_index: 1,
        signal_type: SignalType::Offer,
        payload: Some(SignalPayload::Description { sdp: "v=0".into() }),
    };
    let a = h.msg(1, ClientMessage::ProbeSignal(offer.clone()));
    match &sent(&a, 2)[..] {
        [ServerMessage::ProbeSignal(s)] => {
            assert_eq!(s.from_index, 0);
            assert_eq!(s.payload, offer.payload);
        }
        other => panic!("{other:?}"),
    }
    assert!(sent(&a, 1).is_empty());
    // Results: accepted when max(rtt) <= 150.
    h.at(80);
    assert!(game(&h.msg(1, result(&id, Some(40.0))), 1).is_none());
    let a = h.msg(2, result(&id, Some(150.0)));
    let (ga, gb) = (game(&a, 1).unwrap(), game(&a, 2).unwrap());
    assert_eq!(ga.game_id, gb.game_id);
    let rec = h.records.iter().find_map(|r| match r {
        ResearchEvent::ProbeResult {
            accepted,
            rtt_ms,
            reports,
            duration_ms,
            ready_ms,
            ..
        } => Some((*accepted, *rtt_ms, reports.clone(), *duration_ms, *ready_ms)),
        _ => None,
    });
    let (accepted, rtt, reports, duration, ready_ms) = rec.unwrap();
    assert!(accepted);
    assert_eq!(rtt, Some(150.0));
    assert_eq!(reports[0].as_ref().unwrap().rtt_ms, Some(40.0));
    assert_eq!(reports[1].as_ref().unwrap().rtt_ms, Some(150.0));
    assert_eq!(duration, 80.0);
    assert_eq!(ready_ms, Some(30.0));
    // Late messages from members of the ended probe are ignored, not errors.
    assert!(h.msg(1, ClientMessage::ProbeSignal(offer)).is_empty());
    assert!(h.msg(2, result(&id, Some(1.0))).is_empty());
}

/// A path through TURN relays on both sides, over UDP.
fn relayed_path() -> ConnectionInfo {
    ConnectionInfo {
        connection_type: ConnectionKind::Relay,
        local_candidate_type: CandidateType::Relay,
        remote_candidate_type: CandidateType::Relay,
        protocol: IceProtocol::Udp,
        relay_protocol: Some(RelayProtocol::Udp),
    }
}

/// A `force_relay` scene probes on relay candidates only (`probe_prepare.force_relay`), as its
/// game will; a scene without it says nothing (absent = `false`). Each report's measured path
/// (`probe_result.connection`) is kept in the record line, per member.
#[test]
fn force_relay_reaches_the_probe_and_the_measured_path_is_recorded() {
    let mut plain = H::new(latency_scene(Some(150.0)));
    plain.join(1, "A", 10.0);
    let a = plain.join(2, "B", 10.0);
    assert!(!prepare(&a, 1).expect("prepare to A").force_relay);

    let mut scene = latency_scene(Some(150.0));
    scene.force_relay = true;
    let mut h = H::new(scene);
    h.join(1, "A", 10.0);
    let a = h.join(2, "B", 10.0);
    let (p1, p2) = (prepare(&a, 1).unwrap(), prepare(&a, 2).unwrap());
    assert!(p1.force_relay && p2.force_relay);
    let id = p1.probe_session_id;
    let relayed = relayed_path();
    let with_path = |rtt: f64, connection: Option<ConnectionInfo>| {
        ClientMessage::ProbeResult(ProbeResult {
            probe_session_id: id.clone(),
            success: true,
            rtt_ms: Some(rtt),
            samples_ms: vec![rtt],
            stats_rtt_ms: Some(rtt),
            connection,
        })
    };
    h.msg(1, with_path(101.0, Some(relayed)));
    h.msg(2, with_path(102.0, None));
    let reports = h
        .records
        .iter()
        .find_map(|r| match r {
            ResearchEvent::ProbeResult { reports, .. } => Some(reports.clone()),
            _ => None,
        })
        .expect("a probe_result line");
    assert_eq!(reports[0].as_ref().unwrap().connection, Some(relayed));
    assert_eq!(reports[1].as_ref().unwrap().connection, None);
}

#[test]
fn non_members_are_refused_and_nothing_is_relayed() {
    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    h.join(3, "C", 10.0);
    let signal = |target_index: u32| {
        ClientMessage::ProbeSignal(ProbeSignalOut {
            probe_session_id: id.clone(),
            target_index,
            signal_type: SignalType::IceCandidate,
            payload: None,
        })
    };
    let a = h.msg(3, signal(0));
    assert_eq!(error_code(&a, 3), Some(ErrorCode::NotAMember));
    assert!(!closed(&a, 3), "not_a_member keeps the connection");
    assert!(sent(&a, 1).is_empty() && sent(&a, 2).is_empty());
    let a = h.msg(1, signal(2));
    assert_eq!(
        error_code(&a, 1),
        Some(ErrorCode::NotAMember),
        "target outside the probe"
    );
    assert!(sent(&a, 3).is_empty());
    let a = h.msg(1, signal(0));
    assert_eq!(
        error_code(&a, 1),
        Some(ErrorCode::NotAMember),
        "target is the sender"
    );
    let other = ProbeSessionId::from_string("no-such-probe");
    assert_eq!(
        error_code(&h.msg(1, ready(&other)), 1),
        Some(ErrorCode::NotAMember)
    );
    assert_eq!(
        error_code(&h.msg(3, ready(&id)), 3),
        Some(ErrorCode::NotAMember)
    );
    assert_eq!(
        error_code(&h.msg(3, result(&id, Some(1.0))), 3),
        Some(ErrorCode::NotAMember)
    );
}

#[test]
fn rejected_pair_returns_and_next_candidate_is_probed_never_the_same_pair() {
    let mut h = H::new(latency_scene(Some(50.0)));
    let id = probe_pair(&mut h);
    h.at(1_000);
    h.msg(1, result(&id, Some(80.0)));
    let a = h.msg(2, result(&id, Some(80.0)));
    let (wa, wb) = (waitroom(&a, 1).unwrap(), waitroom(&a, 2).unwrap());
    assert_eq!(wa.waiting, Some(2));
    assert_eq!(wa.remaining_ms, 59_000, "the deadline is not reset");
    assert_eq!(wb.remaining_ms, 59_000);
    assert!(
        prepare(&a, 1).is_none(),
        "the failed pair is not probed again"
    );
    assert_eq!(h.count(ResearchEventKind::MatchRejected), 1);
    let c = h.join(3, "C", 10.0);
    let p = prepare(&c, 3).expect("C is probed");
    assert_eq!(
        p.peer_index, 0,
        "FIFO: A waited longest (player 0, C is player 1)"
    );
    assert!(prepare(&c, 2).is_none());
    assert_eq!(h.core.stats().waiting, 1, "B waits");
}

#[test]
fn probe_deadline_is_enforced() {
    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    h.msg(1, result(&id, Some(10.0)));
    assert!(h.core.next_deadline().unwrap() <= h.t0 + Duration::from_millis(5_000));
    assert!(waitroom(&h.tick_at(4_999), 1).is_none());
    let a = h.tick_at(5_000);
    assert!(waitroom(&a, 1).is_some() && waitroom(&a, 2).is_some());
    assert!(h.records.iter().any(|r| matches!(
        r,
        ResearchEvent::ProbeResult {
            reason: Some(ProbeFailure::Timeout),
            accepted: false,
            ..
        }
    )));
    assert_eq!(h.core.stats().probes, 0);
}

#[test]
fn failed_measurement_and_null_rtt_reject() {
    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    h.msg(1, result(&id, Some(10.0)));
    h.msg(2, result(&id, None));
    assert!(h.records.iter().any(|r| matches!(
        r,
        ResearchEvent::ProbeResult {
            reason: Some(ProbeFailure::MeasurementFailed),
            ..
        }
    )));
}

#[test]
fn duplicate_result_keeps_the_first() {
    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    h.msg(1, result(&id, Some(500.0)));
    h.msg(1, result(&id, Some(1.0)));
    let a = h.msg(2, result(&id, Some(1.0)));
    assert!(game(&a, 1).is_none(), "the first report (500 ms) stands");
}

#[test]
fn disconnect_during_probe_fails_it_at_once_without_blaming_the_pair() {
    let mut h = H::new(latency_scene(Some(150.0)));
    h.join(1, "A", 10.0);
    let b = h.join(2, "B", 10.0);
    let tok_b = token(&b, 2);
    assert!(prepare(&b, 1).is_some());
    let a = h.ev(Event::Disconnected {
        conn: ConnId::new(2),
    });
    assert!(waitroom(&a, 1).is_some(), "A returns at once");
    assert_eq!(h.core.stats().probes, 0);
    assert!(h.records.iter().any(|r| matches!(
        r,
        ResearchEvent::MatchRejected {
            reason: ProbeFailure::Disconnected,
            ..
        }
    )));
    // B reloads and resumes: the pair may be probed again (a disconnect is not a verdict).
    h.connect(3);
    let r = h.hello(3, "B", Some(tok_b));
    assert!(prepare(&r, 1).is_some() && prepare(&r, 3).is_some());
}

#[test]
fn resume_keeps_place_and_duplicate_is_refused() {
    let mut h = H::new(latency_scene(Some(150.0)));
    let a = h.join(1, "A", 10.0);
    let tok = token(&a, 1);
    h.connect(5);
    let dup = h.hello(5, "A", None);
    assert_eq!(error_code(&dup, 5), Some(ErrorCode::IdInUse));
    assert!(closed(&dup, 5));
    // Drop, then resume within the grace with the token.
    h.at(1_000);
    h.ev(Event::Disconnected {
        conn: ConnId::new(1),
    });
    assert_eq!(
        h.core.stats().waiting,
        0,
        "a dropped participant is not matchable"
    );
    h.connect(6);
    assert_eq!(
        error_code(&h.hello(6, "A", None), 6),
        Some(ErrorCode::IdInUse),
        "during the grace a hello without the token is refused"
    );
    h.at(2_000);
    h.connect(7);
    let r = h.hello(7, "A", Some(tok.clone()));
    let new_tok = token(&r, 7);
    assert_ne!(new_tok, tok, "the token changes at each welcome");
    assert_eq!(
        waitroom(&r, 7).unwrap().remaining_ms,
        58_000,
        "deadline kept"
    );
    // B arrives: matched with A on the new connection.
    let b = h.join(2, "B", 10.0);
    assert!(prepare(&b, 7).is_some());
}

#[test]
fn takeover_of_a_live_session_closes_the_old_socket() {
    let mut h = H::new(latency_scene(None));
    let a = h.join(1, "A", 10.0);
    let tok = token(&a, 1);
    h.connect(2);
    let r = h.hello(2, "A", Some(tok));
    assert!(closed(&r, 1));
    assert!(waitroom(&r, 2).is_some());
    let b = h.join(3, "B", 10.0);
    assert!(game(&b, 2).is_some() && game(&b, 1).is_none());
}

/// The answer to a `hello` on a fresh connection `conn` for `subject`, with `token` and
/// `signature`: everything sent to it, whether it was closed, and everything else the core did
/// (to other connections, and the record).
fn hello_answer(
    h: &mut H,
    conn: u64,
    subject: &str,
    token: Option<String>,
    signature: Option<String>,
) -> (Vec<ServerMessage>, bool, Vec<Action>) {
    h.ev(Event::Connected {
        conn: ConnId::new(conn),
    });
    let out = h.msg(
        conn,
        ClientMessage::Hello(Hello {
            subject_id: sid(subject),
            scene_id: None,
            resume_token: token,
            link_signature: signature,
            recruiter: None,
            browser: None,
        }),
    );
    let others = out
        .iter()
        .filter(|a| !matches!(a, Action::Send { conn: c, .. } | Action::Close { conn: c } if c.get() == conn))
        .cloned()
        .collect();
    (sent(&out, conn), closed(&out, conn), others)
}

/// Without signed links, a `hello` without the session's token cannot tell a connected id, an id
/// in its grace and a done id apart (one answer, `id_in_use`), and it changes nothing for the
/// id's owner: no takeover, no end of the session, no line in the record.
#[test]
fn hello_without_token_answers_uniformly_and_changes_nothing() {
    let mut h = H::new(latency_scene(None));
    let a = h.join(1, "A", 10.0);
    let tok_a = token(&a, 1);
    let b = h.join(2, "B", 500.0);
    let tok_b = token(&b, 2);
    h.ev(Event::Disconnected {
        conn: ConnId::new(2),
    });
    h.join(3, "C", 500.0);
    h.msg(3, ClientMessage::Leave);
    let mut answers = Vec::new();
    for (conn, subject, token) in [
        (10, "A", None),                         // connected
        (11, "A", Some("not-the-token".into())), // connected, wrong token
        (12, "B", None),                         // in its grace
        (13, "C", None),                         // done
    ] {
        let (to_it, closed, others) = hello_answer(&mut h, conn, subject, token, None);
        assert!(closed, "{subject}: the stranger's socket closes");
        assert!(
            others.is_empty(),
            "{subject}: nothing else happens: {others:?}"
        );
        answers.push(to_it);
    }
    assert!(
        matches!(&answers[0][..], [ServerMessage::Error(e)] if e.code == ErrorCode::IdInUse),
        "{answers:?}"
    );
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    // The owners are untouched: A still resumes with their token, B within the grace.
    let (to_a, ..) = hello_answer(&mut h, 20, "A", Some(tok_a), None);
    assert!(matches!(to_a[0], ServerMessage::Welcome(_)), "{to_a:?}");
    let (to_b, ..) = hello_answer(&mut h, 21, "B", Some(tok_b), None);
    assert!(matches!(to_b[0], ServerMessage::Welcome(_)), "{to_b:?}");
}

fn signed_config(scene: SceneConfig) -> Config {
    Config {
        scenes: vec![scene],
        ice_servers: vec![],
        turn: None,
        server: crate::config::ServerOptions {
            link_secret: Some("sixteen-or-more-characters".into()),
        },
    }
}

/// With signed links, a `hello` without its id's signature is refused (`invalid_link`) before
/// the id is looked at: it cannot take the id, end it by `leave`, or learn whether it is in
/// use; the real participant, with their link, is unaffected.
#[test]
fn signed_links_refuse_squatters_before_looking_at_the_id() {
    let config = signed_config(latency_scene(None));
    let signer = link::LinkSigner::new("sixteen-or-more-characters");
    let mut h = H::with_config(config, 1);
    let sig = |s: &str| Some(signer.sign(&sid(s)));
    // A squatter with someone else's id (not yet in use): no signature, a wrong one, another
    // id's.
    for (conn, signature) in [(1, None), (2, Some("AAAA".to_owned())), (3, sig("B"))] {
        let (to_it, closed, others) = hello_answer(&mut h, conn, "A", None, signature);
        assert!(closed && others.is_empty(), "{others:?}");
        assert!(
            matches!(&to_it[..], [ServerMessage::Error(e)] if e.code == ErrorCode::InvalidLink
                && e.message.contains("link")),
            "{to_it:?}"
        );
    }
    assert_eq!(h.core.stats().participants, 0, "no session was made");
    // The real A, with their link, joins; a squatter cannot tell A is in use.
    let (to_a, ..) = hello_answer(&mut h, 4, "A", None, sig("A"));
    assert!(matches!(to_a[0], ServerMessage::Welcome(_)), "{to_a:?}");
    let (probe, ..) = hello_answer(&mut h, 5, "A", None, None);
    let (fresh, ..) = hello_answer(&mut h, 6, "Z", None, None);
    assert_eq!(
        probe, fresh,
        "in use or not, the answer without a link is the same"
    );
    // A leaves and is done; only someone with A's link learns that.
    h.msg(4, ClientMessage::Leave);
    let (again, ..) = hello_answer(&mut h, 7, "A", None, sig("A"));
    assert_eq!(error_code_of(&again), Some(ErrorCode::IdInUse));
}

fn error_code_of(msgs: &[ServerMessage]) -> Option<ErrorCode> {
    msgs.iter().find_map(|m| match m {
        ServerMessage::Error(e) => Some(e.code),
        _ => None,
    })
}

#[test]
fn session_is_gone_after_the_grace() {
    let mut h = H::new(latency_scene(None));
    let a = h.join(1, "A", 10.0);
    let tok = token(&a, 1);
    h.ev(Event::Disconnected {
        conn: ConnId::new(1),
    });
    h.tick_at(3_000);
    assert_eq!(h.count(ResearchEventKind::ParticipantLeft), 1);
    h.connect(2);
    let r = h.hello(2, "A", Some(tok));
    assert!(
        error_code(&r, 2).is_none(),
        "a new session, not already_done"
    );
    assert!(sent(&r, 2)
        .iter()
        .any(|m| matches!(m, ServerMessage::Welcome(_))));
}

/// `reconnect_grace_ms = 0`: the session ends at the drop (its grace timer is due at once).
/// A waiting participant who comes back starts over: a new session, a new place at the back
/// and a fresh waitroom deadline. One who was in a game is done.
#[test]
fn zero_grace_ends_the_session_at_the_drop() {
    let mut s = latency_scene(None);
    s.reconnect_grace_ms = 0;
    let mut h = H::new(s);
    let a = h.join(1, "A", 10.0);
    let tok = token(&a, 1);
    h.at(5_000);
    h.ev(Event::Disconnected {
        conn: ConnId::new(1),
    });
    h.tick_at(5_000);
    assert!(h.records.iter().any(|r| matches!(
        r,
        ResearchEvent::ParticipantLeft {
            reason: LeaveReason::GraceExpired,
            ..
        }
    )));
    let back = h.join(2, "A", 10.0);
    assert!(error_code(&back, 2).is_none(), "not already_done");
    assert_eq!(
        waitroom(&back, 2).map(|w| w.remaining_ms),
        Some(60_000),
        "a fresh deadline, not the 55 000 ms left of the first session"
    );
    assert_ne!(token(&back, 2), tok);
    assert_eq!(h.count(ResearchEventKind::ParticipantJoined), 2);
    // In a game, a drop with no grace ends the game for the partner and the dropped one is done.
    let b = h.join(3, "B", 10.0);
    assert!(game(&b, 2).is_some());
    h.ev(Event::Disconnected {
        conn: ConnId::new(3),
    });
    let ended = h.tick_at(5_000);
    assert!(sent(&ended, 2)
        .iter()
        .any(|m| matches!(m, ServerMessage::GameEnded(_))));
    // Done in this scene: a token-less hello for the id gets the one answer for an id in use.
    h.connect(4);
    assert_eq!(
        error_code(&h.hello(4, "B", None), 4),
        Some(ErrorCode::IdInUse)
    );
}

#[test]
fn waitroom_timeout_is_enforced_and_final() {
    let mut s = latency_scene(None);
    s.waitroom_timeout_ms = 2_000;
    s.timeout_redirect_url = Some("https://example.org/done".into());
    let mut h = H::new(s);
    h.join(1, "A", 10.0);
    assert!(sent(&h.tick_at(1_999), 1).is_empty());
    let a = h.tick_at(2_000);
    match &sent(&a, 1)[..] {
        [ServerMessage::WaitroomTimeout(t), ServerMessage::Outcome(o)] => {
            assert_eq!(t.redirect_url.as_deref(), Some("https://example.org/done"));
            assert!(t.message.contains("partner"));
            assert_eq!(o.outcome, Outcome::WAITROOM_TIMEOUT);
            assert_eq!(
                o.redirect_url, t.redirect_url,
                "timeout_redirect_url is its url"
            );
            assert_eq!(o.message, t.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.count(ResearchEventKind::ParticipantOutcome), 1);
    assert!(closed(&a, 1));
    assert_eq!(h.count(ResearchEventKind::WaitroomTimeout), 1);
    h.connect(2);
    let r = h.hello(2, "A", None);
    assert_eq!(error_code(&r, 2), Some(ErrorCode::IdInUse));
    assert!(closed(&r, 2));
}

#[test]
fn member_past_deadline_times_out_when_the_probe_fails() {
    let mut s = latency_scene(Some(10.0));
    s.waitroom_timeout_ms = 1_000;
    let mut h = H::new(s);
    let id = probe_pair(&mut h);
    h.tick_at(1_500);
    h.msg(1, result(&id, Some(50.0)));
    let a = h.msg(2, result(&id, Some(50.0)));
    assert!(sent(&a, 1)
        .iter()
        .any(|m| matches!(m, ServerMessage::WaitroomTimeout(_))));
    assert!(closed(&a, 1) && closed(&a, 2));
}

#[test]
fn leave_is_final_and_frees_the_partner() {
    let mut h = H::new(latency_scene(Some(150.0)));
    probe_pair(&mut h);
    let a = h.msg(2, ClientMessage::Leave);
    assert!(closed(&a, 2));
    assert!(waitroom(&a, 1).is_some());
    h.connect(3);
    assert_eq!(
        error_code(&h.hello(3, "B", None), 3),
        Some(ErrorCode::IdInUse)
    );
}

/// A groups-of-three latency scene (P2P RTT limit 100 ms) with A, B and C joined on
/// connections 1 to 3: the harness, and what C's join sent (the three probes' prepares).
fn trio_in_probes() -> (H, Vec<Action>) {
    let mut s = latency_scene(Some(100.0));
    s.group_size = 3;
    let mut h = H::new(s);
    h.join(1, "A", 10.0);
    h.join(2, "B", 10.0);
    let a = h.join(3, "C", 10.0);
    (h, a)
}

#[test]
fn groups_of_three_probe_every_pair_in_parallel() {
    let (mut h, a) = trio_in_probes();
    let ids: Vec<ProbeSessionId> = [1, 2, 3]
        .iter()
        .flat_map(|&c| {
            sent(&a, c).into_iter().filter_map(|m| match m {
                ServerMessage::ProbePrepare(p) => Some(p.probe_session_id),
                _ => None,
            })
        })
        .collect();
    assert_eq!(ids.len(), 6, "three probes, two prepares each");
    assert_eq!(h.core.stats().probes, 3);
    // Every member reports for each of their probes.
    let mut last = vec![];
    for (conn, _) in [(1, "A"), (2, "B"), (3, "C")] {
        for m in sent(&a, conn) {
            if let ServerMessage::ProbePrepare(p) = m {
                last = h.msg(conn, result(&p.probe_session_id, Some(20.0)));
            }
        }
    }
    let g = game(&last, 1).expect("all three pairs passed");
    assert_eq!(g.player_count, 3);
    assert!(game(&last, 3).is_some());
}

#[test]
fn group_of_three_with_one_bad_pair_returns_everyone() {
    let (mut h, a) = trio_in_probes();
    let mut last = vec![];
    for conn in [1, 2, 3] {
        for m in sent(&a, conn) {
            if let ServerMessage::ProbePrepare(p) = m {
                // Players A, B, C are 0, 1, 2: the pair B–C is bad.
                let bad = p.peer_index == 2 && conn == 2 || p.peer_index == 1 && conn == 3;
                let rtt = if bad { 300.0 } else { 20.0 };
                last.extend(h.msg(conn, result(&p.probe_session_id, Some(rtt))));
            }
        }
    }
    assert!(game(&last, 1).is_none());
    assert!([1, 2, 3].iter().all(|&c| waitroom(&last, c).is_some()));
    let rejected = h.records.iter().find_map(|r| match r {
        ResearchEvent::MatchRejected { failed_pairs, .. } => Some(failed_pairs.clone()),
        _ => None,
    });
    assert_eq!(rejected, Some(vec![[sid("B"), sid("C")]]));
    // With D, B and C cannot be together: A, B, D or A, C, D.
    let d = h.join(4, "D", 10.0);
    let probed: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|&c| prepare(&d, c).is_some())
        .collect();
    assert_eq!(probed, vec![1, 2, 4], "A, B (earliest compatible), D");
}

#[test]
fn hello_rules() {
    let mut h = H::with_scenes(vec![latency_scene(None)]);
    h.connect(1);
    let a = h.msg(1, ClientMessage::Leave);
    assert_eq!(error_code(&a, 1), Some(ErrorCode::HelloRequired));
    assert!(closed(&a, 1));
    h.connect(2);
    let a = h.malformed(2, "nonsense");
    assert_eq!(error_code(&a, 2), Some(ErrorCode::HelloRequired));
    h.connect(3);
    let a = h.malformed(3, r#"{"type":"hello","subject_id":"a b"}"#);
    assert_eq!(error_code(&a, 3), Some(ErrorCode::InvalidSubjectId));
    assert!(closed(&a, 3));
    h.connect(4);
    let a = h.msg(
        4,
        ClientMessage::Hello(Hello {
            subject_id: sid("A"),
            scene_id: Some("nope".into()),
            resume_token: None,
            link_signature: None,
            recruiter: None,
            browser: None,
        }),
    );
    assert_eq!(error_code(&a, 4), Some(ErrorCode::UnknownScene));
    h.join(5, "A", 10.0);
    let a = h.hello(5, "A", None);
    assert_eq!(
        error_code(&a, 5),
        Some(ErrorCode::HelloRequired),
        "hello twice"
    );
    assert!(closed(&a, 5));
    h.join(6, "B", 10.0);
    let a = h.malformed(6, r#"{"type":"dance"}"#);
    assert_eq!(error_code(&a, 6), Some(ErrorCode::UnknownType));
    assert!(!closed(&a, 6));
    // A first hello with a valid subject id but a mistyped optional field: bad_message, the
    // connection stays open and still awaits its hello.
    h.connect(7);
    for frame in [
        r#"{"type":"hello","subject_id":"C","scene_id":5}"#,
        r#"{"type":"hello","subject_id":"C","resume_token":[]}"#,
    ] {
        let a = h.malformed(7, frame);
        assert_eq!(error_code(&a, 7), Some(ErrorCode::BadMessage), "{frame}");
        assert!(!closed(&a, 7), "{frame}");
    }
    let a = h.hello(7, "C", None);
    assert!(sent(&a, 7)
        .iter()
        .any(|m| matches!(m, ServerMessage::Welcome(_))));
}

#[test]
fn waitroom_counts_are_coalesced_to_one_a_second() {
    let mut s = latency_scene(None);
    s.group_size = 10;
    let mut h = H::new(s);
    h.join(1, "A", 10.0);
    h.at(100);
    let a = h.join(2, "B", 10.0);
    assert_eq!(waitroom(&a, 2).unwrap().waiting, Some(2));
    assert!(
        waitroom(&a, 1).is_none(),
        "A was told less than a second ago (on entry)"
    );
    h.at(200);
    let a = h.join(3, "C", 10.0);
    assert!(waitroom(&a, 1).is_none());
    assert!(waitroom(&h.tick_at(999), 1).is_none());
    let a = h.tick_at(1_000);
    assert_eq!(
        waitroom(&a, 1).unwrap().waiting,
        Some(3),
        "A: a second after entry"
    );
    assert!(waitroom(&a, 2).is_none(), "B was told at 100 ms");
    assert!(waitroom(&a, 3).is_none(), "C already knows 3");
    assert!(waitroom(&h.tick_at(1_999), 2).is_none());
    let a = h.tick_at(2_000);
    assert_eq!(waitroom(&a, 2).unwrap().waiting, Some(3));
    assert!(waitroom(&a, 1).is_none() && waitroom(&a, 3).is_none());
}

#[test]
fn hidden_lobby_count_is_null_and_not_broadcast() {
    let mut s = latency_scene(None);
    s.group_size = 10;
    s.hide_lobby_count = true;
    let mut h = H::new(s);
    let a = h.join(1, "A", 10.0);
    assert_eq!(waitroom(&a, 1).unwrap().waiting, None);
    let a = h.join(2, "B", 10.0);
    assert!(waitroom(&a, 1).is_none());
    assert!(
        h.core.next_deadline().is_some_and(|t| t > h.now),
        "only the deadlines remain"
    );
}

#[test]
fn malformed_after_hello_keeps_connection() {
    let mut h = H::new(latency_scene(None));
    h.join(1, "A", 10.0);
    let a = h.malformed(1, r#"{"type":"probe_ready"}"#);
    assert_eq!(error_code(&a, 1), Some(ErrorCode::BadMessage));
    assert!(!closed(&a, 1));
}

/// Random event sequences (a small deterministic generator, so failures reproduce): the
/// invariants hold after every event, and nothing panics.
#[test]
fn random_event_sequences_keep_invariants() {
    for seed in 1..=20u64 {
        let h = fuzz(seed, 1);
        assert_eq!(h.core.stats().probes, 0, "every probe ends by its deadline");
        assert_eq!(h.core.stats().waiting, 0, "every wait ends by its deadline");
    }
}

/// A small deterministic generator (xorshift64) from `seed`: `rnd(n)` is in `0..n` (0 for
/// `n == 0`), so failures reproduce.
fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n.max(1)
    }
}

/// One random event sequence of [`random_event_sequences_keep_invariants`]: 600 events drawn
/// from `seed`, then a tick two minutes later, through a core whose ids come from `ids_seed`.
fn fuzz(seed: u64, ids_seed: u64) -> H {
    let mut rnd = xorshift(seed);
    let mut s = latency_scene(Some(100.0));
    s.group_size = 2 + (seed % 3) as u32;
    s.waitroom_timeout_ms = 20_000;
    let mut h = H::seeded(vec![s], ids_seed);
    let mut t = 0;
    let mut probes: Vec<ProbeSessionId> = vec![];
    for _ in 0..600 {
        t += rnd(400);
        h.at(t);
        let conn = 1 + rnd(12);
        let subject = format!("S{}", rnd(15));
        let out = match rnd(10) {
            0 => h.ev(Event::Connected {
                conn: ConnId::new(conn),
            }),
            1 => h.hello(conn, &subject, None),
            2 => h.ev(Event::RttSample {
                conn: ConnId::new(conn),
                rtt_ms: rnd(150) as f64,
            }),
            3 => h.ev(Event::Disconnected {
                conn: ConnId::new(conn),
            }),
            4 if !probes.is_empty() => {
                let id = probes[rnd(probes.len() as u64) as usize].clone();
                h.msg(conn, ready(&id))
            }
            5 if !probes.is_empty() => {
                let id = probes[rnd(probes.len() as u64) as usize].clone();
                let rtt = (rnd(3) > 0).then(|| rnd(200) as f64);
                h.msg(conn, result(&id, rtt))
            }
            6 => h.msg(conn, ClientMessage::Leave),
            _ => h.ev(Event::Tick),
        };
        for a in &out {
            if let Action::Send {
                msg: ServerMessage::ProbePrepare(p),
                ..
            } = a
            {
                probes.push(p.probe_session_id.clone());
            }
        }
    }
    h.at(t + 120_000);
    h.ev(Event::Tick);
    h
}

/// The core is deterministic given its inputs: the same events at the same simulated times,
/// through two cores with the same id seed, give identical actions; another seed changes the
/// ids (probe sessions, games, resume tokens) and nothing else of the story.
#[test]
fn same_events_and_seed_give_the_same_actions() {
    let a = story(7);
    assert_eq!(a.log, story(7).log);
    let b = story(8);
    assert_ne!(a.log, b.log, "other ids");
    assert_eq!(a.records.len(), b.records.len());
    for kind in [
        ResearchEventKind::ProbeResult,
        ResearchEventKind::GameCreated,
        ResearchEventKind::MatchRejected,
        ResearchEventKind::P2pQuality,
        ResearchEventKind::ParticipantDropped,
        ResearchEventKind::WaitroomTimeout,
        ResearchEventKind::GameEnded,
    ] {
        assert!(a.count(kind) >= 1, "the story covers {kind}");
    }
    // Probes that end at one tick are decided in a fixed order (a group of three whose
    // three probes all miss their deadline).
    let trio = |seed| {
        let mut scene = latency_scene(Some(150.0));
        scene.group_size = 3;
        let mut h = H::seeded(vec![scene], seed);
        for (conn, subject) in [(1, "A"), (2, "B"), (3, "C")] {
            h.join(conn, subject, 10.0);
        }
        h.tick_at(6_000);
        assert_eq!(h.count(ResearchEventKind::ProbeResult), 3);
        h.log
    };
    assert_eq!(trio(7), trio(7));
    // The same holds for long random sequences (probes of groups of two to four, drops,
    // resumes, leaves, games, deadlines).
    for seed in [3, 4, 5] {
        let (x, y) = (fuzz(seed, 11), fuzz(seed, 11));
        assert_eq!(x.log, y.log, "random sequence {seed}");
        assert!(!x.log.is_empty());
        let (x, y) = (cooperative(seed, 11), cooperative(seed, 11));
        assert_eq!(x.log, y.log, "cooperative sequence {seed}");
        assert_ne!(x.log, cooperative(seed, 12).log, "other ids");
    }
}

/// Random sequences of clients that follow the protocol (they answer their own probes, sometimes
/// with a failure or not at all, resume with their token, report on their games): the
/// invariants hold after every event, and every probe and wait ends by its deadline.
#[test]
fn cooperative_clients_keep_invariants() {
    let (mut games, mut rejected) = (0, 0);
    for seed in 1..=12u64 {
        let h = cooperative(seed, 1);
        assert_eq!(h.core.stats().probes, 0, "every probe ends by its deadline");
        assert_eq!(h.core.stats().waiting, 0, "every wait ends by its deadline");
        games += h.count(ResearchEventKind::GameCreated);
        rejected += h.count(ResearchEventKind::MatchRejected);
    }
    assert!(
        games > 0 && rejected > 0,
        "{games} games, {rejected} rejections"
    );
}

/// One sequence of [`cooperative_clients_keep_invariants`]: 900 steps drawn from `seed`, then a
/// tick two minutes later, through a core whose ids come from `ids_seed`.
fn cooperative(seed: u64, ids_seed: u64) -> H {
    let mut rnd = xorshift(seed);
    let mut s = latency_scene(Some(100.0));
    s.group_size = 2 + (seed % 3) as u32;
    s.waitroom_timeout_ms = 15_000;
    s.probe_timeout_ms = 3_000;
    s.reconnect_grace_ms = 2_000;
    s.hide_lobby_count = seed % 5 == 0;
    let mut h = H::seeded(vec![s], ids_seed);
    let mut t = 0;
    // Conn → (subject, resume token); live conns; dropped sessions; probes to answer; games.
    let mut who: std::collections::HashMap<u64, (String, String)> = Default::default();
    let mut live: Vec<u64> = vec![];
    let mut dropped: Vec<(String, String)> = vec![];
    let mut prepared: Vec<(u64, ProbeSessionId)> = vec![];
    let mut readied: Vec<(u64, ProbeSessionId)> = vec![];
    let mut games: Vec<(u64, GameId, u32)> = vec![];
    let mut next_conn = 1u64;
    let pick = |rnd: &mut dyn FnMut(u64) -> u64, len: usize| rnd(len as u64) as usize;
    for _ in 0..900 {
        t += rnd(250);
        h.at(t);
        let out = match rnd(14) {
            0 | 1 => {
                next_conn += 1;
                let subject = format!("S{}", rnd(60));
                h.join(next_conn, &subject, rnd(120) as f64)
            }
            2 | 3 if !prepared.is_empty() => {
                let (c, id) = prepared.remove(pick(&mut rnd, prepared.len()));
                readied.push((c, id.clone()));
                h.msg(c, ready(&id))
            }
            4 | 5 if !readied.is_empty() => {
                let (c, id) = readied.remove(pick(&mut rnd, readied.len()));
                let rtt = (rnd(5) > 0).then(|| rnd(140) as f64);
                h.msg(c, result(&id, rtt))
            }
            6 if !live.is_empty() => {
                let c = live.remove(pick(&mut rnd, live.len()));
                dropped.extend(who.get(&c).cloned());
                h.ev(Event::Disconnected {
                    conn: ConnId::new(c),
                })
            }
            7 if !dropped.is_empty() => {
                let (subject, token) = dropped.remove(pick(&mut rnd, dropped.len()));
                next_conn += 1;
                let mut out = h.ev(Event::Connected {
                    conn: ConnId::new(next_conn),
                });
                out.extend(h.hello(next_conn, &subject, Some(token)));
                out
            }
            8 if !live.is_empty() => {
                let c = live[pick(&mut rnd, live.len())];
                h.msg(c, ClientMessage::Leave)
            }
            9 if !games.is_empty() => {
                let (c, game_id, peer) = games[pick(&mut rnd, games.len())].clone();
                let msg = if rnd(4) == 0 {
                    ClientMessage::P2pConnectionFailed(P2pConnectionFailed {
                        game_id,
                        peer_index: peer,
                        attempts: 3,
                    })
                } else {
                    ClientMessage::P2pQuality(P2pQuality {
                        game_id,
                        peer_index: peer,
                        level: QualityLevel::Warning,
                        rtt_ms: Some(rnd(200) as f64),
                    })
                };
                h.msg(c, msg)
            }
            10 if !live.is_empty() => {
                let c = live[pick(&mut rnd, live.len())];
                h.ev(Event::RttSample {
                    conn: ConnId::new(c),
                    rtt_ms: rnd(150) as f64,
                })
            }
            _ => h.ev(Event::Tick),
        };
        for a in &out {
            match a {
                Action::Send { conn, msg } => match msg {
                    ServerMessage::Welcome(w) => {
                        let entry = (w.subject_id.to_string(), w.resume_token.clone());
                        who.insert(conn.get(), entry);
                        if !live.contains(&conn.get()) {
                            live.push(conn.get());
                        }
                    }
                    // One probe in six is never answered: it ends at its deadline.
                    ServerMessage::ProbePrepare(p) if rnd(6) > 0 => {
                        prepared.push((conn.get(), p.probe_session_id.clone()));
                    }
                    ServerMessage::GameStart(g) => {
                        for peer in (0..g.player_count).filter(|&p| p != g.player_index) {
                            games.push((conn.get(), g.game_id.clone(), peer));
                        }
                    }
                    _ => {}
                },
                Action::Close { conn } => live.retain(|&l| l != conn.get()),
                Action::Record { .. } => {}
            }
        }
    }
    h.at(t + 120_000);
    h.ev(Event::Tick);
    h
}

/// A fixed story on simulated time, with ids from `seed`: A and B are probed, accepted and
/// play (a quality report, then B leaves); C and D are probed, C's report is missing at the
/// deadline, so they are rejected, may not be paired again, D drops and resumes, and both time
/// out of the waitroom.
fn story(seed: u64) -> H {
    let mut scene = latency_scene(Some(150.0));
    scene.waitroom_timeout_ms = 10_000;
    let mut h = H::seeded(vec![scene], seed);
    // Two arrivals, 100 ms apart, who are then probed together; the second one's actions.
    let pair = |h: &mut H, at_ms: u64, [(c1, s1), (c2, s2)]: [(u64, &str); 2]| {
        h.at(at_ms);
        h.join(c1, s1, 10.0);
        h.at(at_ms + 100);
        let joined = h.join(c2, s2, 20.0);
        let id = prepare(&joined, c1).expect("probed").probe_session_id;
        (id, joined)
    };
    let (ab, _) = pair(&mut h, 0, [(1, "A"), (2, "B")]);
    let (cd, joined) = pair(&mut h, 200, [(3, "C"), (4, "D")]);
    h.at(400);
    for conn in [1, 2] {
        h.msg(conn, ready(&ab));
    }
    for conn in [3, 4] {
        h.msg(conn, ready(&cd));
    }
    h.at(900);
    h.msg(1, result(&ab, Some(40.0)));
    let started = h.msg(2, result(&ab, Some(45.0)));
    let game_id = game(&started, 1).expect("A and B play").game_id;
    h.msg(4, result(&cd, Some(50.0)));
    h.at(1_500);
    h.msg(
        1,
        ClientMessage::P2pQuality(P2pQuality {
            game_id,
            peer_index: 1,
            level: QualityLevel::Warning,
            rtt_ms: Some(120.0),
        }),
    );
    h.tick_at(5_300);
    let d_token = token(&joined, 4);
    h.at(6_000);
    h.ev(Event::Disconnected {
        conn: ConnId::new(4),
    });
    h.at(6_500);
    h.connect(5);
    h.hello(5, "D", Some(d_token));
    h.tick_at(7_000);
    h.msg(2, ClientMessage::Leave);
    h.tick_at(11_000);
    h.tick_at(20_000);
    h
}

// ---------------------------------------------------------------------------------------------
// Games: signalling, reports, endings, TURN credentials
// ---------------------------------------------------------------------------------------------

/// A and B (conns 1, 2) in a game of a FIFO scene without probe; C (conn 3) waits elsewhere.
fn game_pair(h: &mut H) -> GameId {
    h.join(1, "A", 10.0);
    let b = h.join(2, "B", 10.0);
    game(&b, 1).expect("game").game_id
}

#[test]
fn webrtc_signals_go_to_game_members_only() {
    let mut s = SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo);
    s.force_relay = true;
    let mut h = H::new(s);
    h.join(1, "A", 10.0);
    let b = h.join(2, "B", 10.0);
    let g = game(&b, 1).unwrap();
    assert!(g.force_relay, "the scene's force_relay reaches game_start");
    h.join(3, "C", 10.0);
    h.join(4, "D", 10.0);
    let signal = |game_id: &GameId, target_index: u32| {
        ClientMessage::WebrtcSignal(WebrtcSignalOut {
            game_id: game_id.clone(),
            target_index,
            signal_type: SignalType::Answer,
            payload: Some(SignalPayload::Description { sdp: "v=0".into() }),
        })
    };
    let a = h.msg(1, signal(&g.game_id, 1));
    match &sent(&a, 2)[..] {
        [ServerMessage::WebrtcSignal(s)] => assert_eq!(s.from_index, 0),
        other => panic!("{other:?}"),
    }
    let a = h.msg(3, signal(&g.game_id, 1));
    assert_eq!(error_code(&a, 3), Some(ErrorCode::NotAMember));
    assert!(sent(&a, 2).is_empty(), "nothing relayed for an outsider");
    let a = h.msg(1, signal(&g.game_id, 2));
    assert_eq!(
        error_code(&a, 1),
        Some(ErrorCode::NotAMember),
        "target outside the game"
    );
    assert!(sent(&a, 3).is_empty());
    let a = h.msg(1, signal(&GameId::from_string("nope"), 1));
    assert_eq!(error_code(&a, 1), Some(ErrorCode::NotAMember));
}

#[test]
fn game_reports_are_recorded_and_connection_failure_ends_the_game_for_all() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    let game_id = game_pair(&mut h);
    let info = ConnectionInfo {
        connection_type: ConnectionKind::Direct,
        local_candidate_type: CandidateType::Host,
        remote_candidate_type: CandidateType::Host,
        protocol: IceProtocol::Udp,
        relay_protocol: None,
    };
    h.msg(
        1,
        ClientMessage::P2pConnectionType(P2pConnectionType {
            game_id: game_id.clone(),
            peer_index: 1,
            info,
            connect_ms: Some(80.0),
            setup: None,
            same_path_as_probe: None,
        }),
    );
    h.msg(
        2,
        ClientMessage::P2pQuality(P2pQuality {
            game_id: game_id.clone(),
            peer_index: 0,
            level: QualityLevel::Warning,
            rtt_ms: Some(170.0),
        }),
    );
    assert_eq!(h.count(ResearchEventKind::P2pConnectionType), 1);
    assert_eq!(h.count(ResearchEventKind::P2pQuality), 1);
    let line = serde_json::to_value(
        h.records
            .iter()
            .find(|r| matches!(r, ResearchEvent::P2pConnectionType { .. }))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["subject_id"], "A");
    assert_eq!(
        line["peer_subject_id"], "B",
        "the record names the peer by id"
    );
    assert_eq!(
        line["connection_type"], "direct",
        "connection info is flattened into the line"
    );
    // A report naming a peer outside the game is refused and not recorded.
    h.join(3, "C", 10.0);
    let a = h.msg(
        1,
        ClientMessage::P2pQuality(P2pQuality {
            game_id: game_id.clone(),
            peer_index: 2,
            level: QualityLevel::Critical,
            rtt_ms: None,
        }),
    );
    assert_eq!(error_code(&a, 1), Some(ErrorCode::NotAMember));
    assert_eq!(h.count(ResearchEventKind::P2pQuality), 1);
    let fail = ClientMessage::P2pConnectionFailed(P2pConnectionFailed {
        game_id: game_id.clone(),
        peer_index: 1,
        attempts: 3,
    });
    let a = h.msg(1, fail.clone());
    for c in [1, 2] {
        match &sent(&a, c)[..] {
            [ServerMessage::GameEnded(e), ServerMessage::Outcome(o)] => {
                assert_eq!(e.reason, GameEndReason::ConnectionFailed);
                assert!(!e.message.is_empty());
                assert_eq!(o.outcome, Outcome::PARTNER_LOST);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(h.count(ResearchEventKind::GameEnded), 1);
    let fail_b = ClientMessage::P2pConnectionFailed(P2pConnectionFailed {
        game_id: game_id.clone(),
        peer_index: 0,
        attempts: 3,
    });
    let a = h.msg(2, fail_b);
    assert!(
        sent(&a, 1).is_empty() && sent(&a, 2).is_empty(),
        "ended once"
    );
    assert_eq!(
        error_code(&h.msg(2, fail), 2),
        Some(ErrorCode::NotAMember),
        "peer is self"
    );
    assert_eq!(h.count(ResearchEventKind::GameEnded), 1);
    assert_eq!(
        h.count(ResearchEventKind::P2pConnectionFailed),
        1,
        "a report after the game ended is dropped, not recorded"
    );
}

#[test]
fn a_member_leaving_ends_the_game_for_the_others() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    game_pair(&mut h);
    let a = h.msg(2, ClientMessage::Leave);
    match &sent(&a, 1)[..] {
        [ServerMessage::GameEnded(e), ServerMessage::Outcome(o)] => {
            assert_eq!(e.reason, GameEndReason::PeerLeft);
            assert_eq!(o.outcome, Outcome::PARTNER_LOST);
        }
        other => panic!("{other:?}"),
    }
    match &sent(&a, 2)[..] {
        [ServerMessage::Outcome(o)] => assert_eq!(o.outcome, Outcome::LEFT),
        other => panic!("{other:?}"),
    }
    assert!(closed(&a, 2));
}

/// One scene, and a `[turn]` server whose credentials are minted from the secret
/// `pairlab-secret` and last 600 s.
fn turn_secret_config(scene: SceneConfig) -> Config {
    Config {
        scenes: vec![scene],
        ice_servers: vec![],
        turn: Some(crate::config::TurnConfig {
            urls: vec!["turn:127.0.0.1:3478".into()],
            auth: crate::config::TurnAuth::Secret {
                static_auth_secret: "pairlab-secret".into(),
                credential_ttl_s: 600,
            },
        }),
        server: Default::default(),
    }
}

#[test]
fn turn_credentials_are_minted_per_participant() {
    // Vector computed independently: python3 -c "import hmac,hashlib,base64;
    // print(base64.b64encode(hmac.new(b'pairlab-secret', b'1700003600:subject-42', hashlib.sha1).digest()))"
    assert_eq!(
        super::ice::turn_rest_credentials("pairlab-secret", "subject-42", 1_700_003_600),
        (
            "1700003600:subject-42".to_owned(),
            "DoLkkL4OreOEcQRubrM6U6gkLU4=".to_owned()
        )
    );
    let scene = SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo);
    let mut h = H::with_config(turn_secret_config(scene), 1);
    h.at(3_000);
    h.join(1, "A", 10.0);
    let b = h.join(2, "B", 10.0);
    let ice = |c| game(&b, c).unwrap().ice_servers;
    let (a, bb) = (ice(1), ice(2));
    assert_eq!(a[0].urls, vec!["turn:127.0.0.1:3478".to_owned()]);
    assert_eq!(
        a[0].username.as_deref(),
        Some("1700000603:A"),
        "expiry = now + ttl"
    );
    assert_eq!(bb[0].username.as_deref(), Some("1700000603:B"));
    let expect = super::ice::turn_rest_credentials("pairlab-secret", "A", 1_700_000_603).1;
    assert_eq!(a[0].credential.as_deref(), Some(expect.as_str()));
}

// ---------------------------------------------------------------------------------------------
// The record's order and the server's lifecycle
// ---------------------------------------------------------------------------------------------

/// Where `game_created` and the first `game_start` are among `actions`.
fn created_and_first_start(actions: &[Action]) -> (usize, usize) {
    let created = actions
        .iter()
        .position(|a| {
            matches!(
                a,
                Action::Record {
                    event: ResearchEvent::GameCreated { .. },
                    ..
                }
            )
        })
        .expect("a game_created line");
    let start = actions
        .iter()
        .position(|a| {
            matches!(
                a,
                Action::Send {
                    msg: ServerMessage::GameStart(_),
                    ..
                }
            )
        })
        .expect("a game_start");
    (created, start)
}

/// `game_created` is recorded before any `game_start` is sent, with or without a probe: the
/// shell carries actions out in order and the record writer is FIFO.
#[test]
fn game_created_is_recorded_before_game_start_is_sent() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    h.join(1, "A", 10.0);
    let (created, start) = created_and_first_start(&h.join(2, "B", 10.0));
    assert!(created < start, "without probe: {created} vs {start}");

    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    h.msg(1, result(&id, Some(40.0)));
    let (created, start) = created_and_first_start(&h.msg(2, result(&id, Some(50.0))));
    assert!(created < start, "after a probe: {created} vs {start}");
}

/// At shutdown every live session (waiting, in a game, in its grace) gets `participant_left`
/// with reason `server_shutdown` as its last line, after its scene's `server_stopping`; the
/// core then ignores the shutdown's disconnects (no `participant_dropped`) and everything else.
#[test]
fn shutdown_ends_every_live_session_as_server_shutdown() {
    let other = SceneConfig::with_defaults("t", 2, MatchmakerKind::Fifo);
    let mut h = H::with_scenes(vec![
        SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo),
        other,
    ]);
    h.join(1, "A", 10.0);
    h.join(2, "B", 10.0); // A and B play
    h.join(3, "C", 10.0); // C waits
    h.join(4, "D", 10.0); // D plays with C
    h.join(5, "E", 10.0);
    h.ev(Event::Disconnected {
        conn: ConnId::new(5),
    }); // E is in their grace
    h.ev(Event::Connected {
        conn: ConnId::new(6),
    }); // never says hello
    let dropped_before = h.count(ResearchEventKind::ParticipantDropped);
    let first = h.records.len();
    h.at(1_000);
    let out = h.ev(Event::Shutdown);
    assert!(
        out.iter().all(|a| matches!(a, Action::Record { .. })),
        "{out:?}"
    );
    let lines: Vec<(String, ResearchEvent)> = out
        .into_iter()
        .filter_map(|a| match a {
            Action::Record { scene_id, event } => Some((scene_id, event)),
            _ => None,
        })
        .collect();
    let left = |s: &str| ResearchEvent::ParticipantLeft {
        subject_id: sid(s),
        reason: research::LeaveReason::ServerShutdown,
    };
    let expected: Vec<(String, ResearchEvent)> = vec![
        (
            "s".into(),
            ResearchEvent::ServerStopping {
                live_participants: 5,
            },
        ),
        ("s".into(), left("A")),
        ("s".into(), left("B")),
        ("s".into(), left("C")),
        ("s".into(), left("D")),
        ("s".into(), left("E")),
        (
            "t".into(),
            ResearchEvent::ServerStopping {
                live_participants: 0,
            },
        ),
    ];
    assert_eq!(lines, expected);
    assert_eq!(h.records.len(), first + expected.len());
    assert_eq!(
        h.core.next_deadline(),
        None,
        "a stopped core has no deadline"
    );
    // The sockets close, time passes, someone new arrives: nothing more happens.
    for conn in 1..=6 {
        assert!(h
            .ev(Event::Disconnected {
                conn: ConnId::new(conn)
            })
            .is_empty());
    }
    h.at(60_000);
    assert!(h.ev(Event::Tick).is_empty());
    assert!(h
        .ev(Event::Connected {
            conn: ConnId::new(7)
        })
        .is_empty());
    assert!(h.hello(7, "F", None).is_empty());
    assert!(
        h.ev(Event::Shutdown).is_empty(),
        "a second shutdown adds nothing"
    );
    assert_eq!(
        h.count(ResearchEventKind::ParticipantDropped),
        dropped_before
    );
}

// ---------------------------------------------------------------------------------------------
// Bounds: game reports, memory, restart, TURN credentials
// ---------------------------------------------------------------------------------------------

/// An `episode_summary` naming `peers` by player index (in these tests A is player 0, B 1 and
/// C 2).
fn summary(
    game_id: &GameId,
    episode: u32,
    peers: &[PlayerIndex],
    quality_changes: usize,
) -> ClientMessage {
    ClientMessage::EpisodeSummary(EpisodeSummary {
        game_id: game_id.clone(),
        episode,
        frames: 600,
        inputs_sent: 600,
        hidden_count: 0,
        hidden_ms: 0.0,
        peers: peers
            .iter()
            .map(|&peer_index| PeerMetrics {
                peer_index,
                inputs_received: 598,
                connection: None,
                rtt_ms: None,
                quality_changes: vec![
                    QualityChange {
                        level: QualityLevel::Warning,
                        at_ms: 1.0,
                    };
                    quality_changes
                ],
                ice_restarts: 0,
                setup: None,
                same_path_as_probe: None,
            })
            .collect(),
    })
}

/// A `p2p_quality` about player `peer_index`.
fn quality(game_id: &GameId, peer_index: PlayerIndex) -> ClientMessage {
    ClientMessage::P2pQuality(P2pQuality {
        game_id: game_id.clone(),
        peer_index,
        level: QualityLevel::Warning,
        rtt_ms: Some(170.0),
    })
}

/// One `episode_summary` per member per episode, each partner named once, quality changes no
/// more than the monitor can produce; a refusal is `bad_message` (the connection stays open)
/// and nothing is recorded; after `game_ended`, reports are dropped quietly.
#[test]
fn episode_summaries_are_accepted_once_per_member_and_episode() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    let g = game_pair(&mut h);
    h.at(10_000);
    assert!(sent(&h.msg(1, summary(&g, 1, &[1], 1)), 1).is_empty());
    assert!(
        sent(&h.msg(2, summary(&g, 1, &[0], 1)), 2).is_empty(),
        "B's own episode 1"
    );
    assert_eq!(h.count(ResearchEventKind::EpisodeSummary), 2);
    for (episode, why) in [(1, "a repeat"), (0, "an older episode")] {
        let a = h.msg(1, summary(&g, episode, &[1], 1));
        assert_eq!(error_code(&a, 1), Some(ErrorCode::BadMessage), "{why}");
        assert!(!closed(&a, 1), "bad_message keeps the connection");
    }
    let a = h.msg(1, summary(&g, 2, &[1, 1], 1));
    assert_eq!(
        error_code(&a, 1),
        Some(ErrorCode::BadMessage),
        "a partner twice"
    );
    // 10 s into the game: at most 30 + 5 quality changes per partner.
    let a = h.msg(1, summary(&g, 2, &[1], 36));
    assert_eq!(
        error_code(&a, 1),
        Some(ErrorCode::BadMessage),
        "too many changes"
    );
    assert_eq!(
        h.count(ResearchEventKind::EpisodeSummary),
        2,
        "no refused summary is recorded"
    );
    assert!(sent(&h.msg(1, summary(&g, 2, &[1], 35)), 1).is_empty());
    assert!(
        sent(&h.msg(1, summary(&g, 5, &[1], 0)), 1).is_empty(),
        "a gap is fine"
    );
    assert_eq!(h.count(ResearchEventKind::EpisodeSummary), 4);
    // At most 10 summaries at once (A has sent 3), then one a second.
    for episode in 6..=12 {
        assert!(sent(&h.msg(1, summary(&g, episode, &[1], 0)), 1).is_empty());
    }
    let a = h.msg(1, summary(&g, 13, &[1], 0));
    assert_eq!(error_code(&a, 1), Some(ErrorCode::BadMessage), "too often");
    h.at(11_000);
    assert!(sent(&h.msg(1, summary(&g, 13, &[1], 0)), 1).is_empty());
    assert_eq!(h.count(ResearchEventKind::EpisodeSummary), 12);

    // The game ends: every report after it is dropped without a word and not recorded.
    h.msg(2, ClientMessage::Leave);
    assert_eq!(h.count(ResearchEventKind::GameEnded), 1);
    let lines = h.records.len();
    for msg in [summary(&g, 14, &[1], 0), quality(&g, 1)] {
        let a = h.msg(1, msg);
        assert!(sent(&a, 1).is_empty(), "{a:?}");
    }
    assert_eq!(h.records.len(), lines, "nothing recorded after game_ended");
    // An outsider is still told they are not a member.
    h.join(3, "C", 10.0);
    assert_eq!(
        error_code(&h.msg(3, summary(&g, 1, &[0], 0)), 3),
        Some(ErrorCode::NotAMember)
    );
}

/// `p2p_quality`: 30 changes at once per partner, then one every 2 s (30 a minute); the
/// excess is refused with `bad_message` and not recorded. An honest monitor (one change per
/// 2 s sample) is never refused.
#[test]
fn quality_changes_are_bounded_per_minute_and_partner() {
    let mut h = H::new(SceneConfig::with_defaults("s", 3, MatchmakerKind::Fifo));
    h.join(1, "A", 10.0);
    h.join(2, "B", 10.0);
    let g = game(&h.join(3, "C", 10.0), 1).expect("game").game_id;
    h.at(1_000);
    for _ in 0..30 {
        assert!(sent(&h.msg(1, quality(&g, 1)), 1).is_empty());
    }
    let a = h.msg(1, quality(&g, 1));
    assert_eq!(error_code(&a, 1), Some(ErrorCode::BadMessage));
    assert!(!closed(&a, 1));
    assert!(
        sent(&h.msg(1, quality(&g, 2)), 1).is_empty(),
        "each partner has its own bound"
    );
    assert!(
        sent(&h.msg(2, quality(&g, 0)), 2).is_empty(),
        "and each member"
    );
    assert_eq!(h.count(ResearchEventKind::P2pQuality), 32);
    // Two seconds later, one more.
    h.at(3_000);
    assert!(sent(&h.msg(1, quality(&g, 1)), 1).is_empty());
    assert_eq!(
        error_code(&h.msg(1, quality(&g, 1)), 1),
        Some(ErrorCode::BadMessage)
    );
    assert_eq!(h.count(ResearchEventKind::P2pQuality), 33);
    // An honest monitor: one change per 2 s sample for ten minutes.
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    let g = game_pair(&mut h);
    for i in 1..=300 {
        h.at(i * 2_000);
        assert!(sent(&h.msg(1, quality(&g, 1)), 1).is_empty(), "sample {i}");
    }
    assert_eq!(h.count(ResearchEventKind::P2pQuality), 300);
}

/// `p2p_ice_restart` and `p2p_connection_type` share a bound of their own: 30 at once per
/// partner, then 30 a minute; the excess is refused with `bad_message` and not recorded.
#[test]
fn connection_reports_are_bounded_per_minute_and_partner() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    let g = game_pair(&mut h);
    let restart = ClientMessage::P2pIceRestart(P2pIceRestart {
        game_id: g.clone(),
        peer_index: 1,
        attempt: 1,
        trigger: IceRestartTrigger::Disconnected,
        outcome: IceRestartOutcome::Started,
        duration_ms: None,
    });
    for _ in 0..30 {
        assert!(sent(&h.msg(1, restart.clone()), 1).is_empty());
    }
    let a = h.msg(1, restart.clone());
    assert_eq!(error_code(&a, 1), Some(ErrorCode::BadMessage));
    assert!(!closed(&a, 1));
    assert!(
        sent(&h.msg(1, quality(&g, 1)), 1).is_empty(),
        "quality has its own"
    );
    assert_eq!(h.count(ResearchEventKind::P2pIceRestart), 30);
    h.at(2_000);
    assert!(sent(&h.msg(1, restart), 1).is_empty(), "one more after 2 s");
    assert_eq!(h.count(ResearchEventKind::P2pIceRestart), 31);
}

/// Tombstones are swept, not queued: games ending 300 ms apart (one member of each still
/// there) are forgotten at most [`TOMBSTONE_SWEEP_SPACING`] late, one sweep for those that
/// come due within it; a game whose members are all gone leaves no tombstone at all.
#[test]
fn tombstones_are_swept_at_most_once_a_second() {
    use super::games::{GAME_TOMBSTONE_TTL, TOMBSTONE_SWEEP_SPACING};
    let mut s = SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo);
    s.reconnect_grace_ms = 600_000;
    let mut h = H::new(s);
    for (i, at) in [(0u64, 0u64), (1, 300), (2, 600)] {
        h.at(at);
        h.join(10 * i + 1, &format!("a{i}"), 10.0);
        h.join(10 * i + 2, &format!("b{i}"), 10.0);
        h.msg(10 * i + 2, ClientMessage::Leave);
    }
    assert_eq!(h.core.memory_stats().game_tombstones, 3);
    // Both members of a fourth game leave: nothing is kept of it.
    h.at(900);
    h.join(41, "a3", 10.0);
    h.join(42, "b3", 10.0);
    h.msg(41, ClientMessage::Leave);
    h.msg(42, ClientMessage::Leave);
    assert_eq!(h.core.memory_stats().game_tombstones, 3);
    let ttl = GAME_TOMBSTONE_TTL.as_millis() as u64;
    h.tick_at(ttl - 1);
    assert_eq!(h.core.memory_stats().game_tombstones, 3);
    h.tick_at(ttl);
    assert_eq!(
        h.core.memory_stats().game_tombstones,
        2,
        "the first, on time"
    );
    h.tick_at(ttl + 300);
    assert_eq!(
        h.core.memory_stats().game_tombstones,
        2,
        "the second is due but the next sweep is a second after the last"
    );
    h.tick_at(ttl + TOMBSTONE_SWEEP_SPACING.as_millis() as u64);
    let m = h.core.memory_stats();
    assert_eq!((m.games, m.game_tombstones), (0, 0), "{m:?}");
}

/// An ended game is forgotten [`GAME_TOMBSTONE_TTL`] after its end: late reports are ignored
/// quietly until then, answered with `not_a_member` after; a member who resumes later still
/// learns that the game ended.
#[test]
fn ended_games_are_forgotten_after_their_tombstone() {
    use super::games::GAME_TOMBSTONE_TTL;
    let mut s = SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo);
    s.reconnect_grace_ms = 600_000;
    let mut h = H::new(s);
    let joined = {
        h.join(1, "A", 10.0);
        h.join(2, "B", 10.0)
    };
    let g = game(&joined, 1).expect("game").game_id;
    let token_a = token(&h.log.clone(), 1);
    h.at(1_000);
    h.msg(2, ClientMessage::Leave);
    h.tick_at(1_000); // (the count broadcast of the leave)
    let m = h.core.memory_stats();
    assert_eq!(m.games, 1, "kept as a tombstone");
    assert_eq!(
        m.game_tombstones, 1,
        "in the small form: its members' handles only"
    );
    assert_eq!(
        error_code(&h.msg(1, quality(&g, 0)), 1),
        Some(ErrorCode::NotAMember),
        "an ended game's member naming themself is still refused"
    );
    let ttl_ms = GAME_TOMBSTONE_TTL.as_millis() as u64;
    assert_eq!(
        h.core.next_deadline(),
        Some(h.t0 + Duration::from_millis(1_000 + ttl_ms)),
        "the core wakes to forget it"
    );
    h.at(1_000 + ttl_ms - 1);
    assert!(sent(&h.msg(1, quality(&g, 1)), 1).is_empty(), "late: quiet");
    h.tick_at(1_000 + ttl_ms);
    let m = h.core.memory_stats();
    assert_eq!((m.games, m.game_tombstones), (0, 0), "forgotten");
    assert_eq!(
        error_code(&h.msg(1, quality(&g, 1)), 1),
        Some(ErrorCode::NotAMember)
    );
    // A drops and resumes: game_start again, and game_ended, though the game is forgotten.
    h.ev(Event::Disconnected {
        conn: ConnId::new(1),
    });
    h.ev(Event::Connected {
        conn: ConnId::new(5),
    });
    let a = h.hello(5, "A", Some(token_a));
    assert!(matches!(
        &sent(&a, 5)[..],
        [
            ServerMessage::Welcome(_),
            ServerMessage::GameStart(_),
            ServerMessage::GameEnded(_)
        ]
    ));
}

/// Plays `games` games of two through a probe scene without checking invariants per event
/// (for speed): every tenth pair's probe fails (too slow); those two then leave from the
/// waitroom; everyone else plays and leaves. Returns the core and the time after the last.
fn play_through(games: u64) -> (Core, Instant) {
    let mut scene = latency_scene(Some(100.0));
    scene.id = "s".into();
    let config = Config {
        scenes: vec![scene],
        ice_servers: vec![],
        turn: None,
        server: Default::default(),
    };
    let t0 = Instant::now();
    let clock = CoreClock {
        origin: t0,
        origin_unix_s: UNIX_T0_S,
    };
    let mut core = Core::new(Arc::new(config), clock, Box::new(SeededIds::new(3)));
    let mut out = Vec::new();
    let mut now = t0;
    // Each event's actions replace the previous ones (no log: it would hold millions).
    let handle = |core: &mut Core, now: Instant, e: Event, out: &mut Vec<Action>| {
        out.clear();
        core.handle(now, e, out);
    };
    let say = |core: &mut Core, now: Instant, conn: ConnId, msg, out: &mut Vec<Action>| {
        handle(core, now, Event::Message { conn, msg }, out);
    };
    for g in 0..games {
        now += Duration::from_millis(10);
        let (a, b) = (ConnId::new(2 * g + 1), ConnId::new(2 * g + 2));
        for (conn, subject) in [(a, format!("a{g}")), (b, format!("b{g}"))] {
            handle(&mut core, now, Event::Connected { conn }, &mut out);
            let hello = ClientMessage::Hello(Hello {
                subject_id: sid(&subject),
                scene_id: None,
                resume_token: None,
                link_signature: None,
                recruiter: None,
                browser: None,
            });
            say(&mut core, now, conn, hello, &mut out);
            for _ in 0..3 {
                let e = Event::RttSample { conn, rtt_ms: 10.0 };
                handle(&mut core, now, e, &mut out);
            }
        }
        let id = prepare(&out, a.get()).expect("probed").probe_session_id;
        let rtt = if g % 10 == 0 { 500.0 } else { 20.0 };
        for msg in [ready(&id), result(&id, Some(rtt)), ClientMessage::Leave] {
            for conn in [a, b] {
                say(&mut core, now, conn, msg.clone(), &mut out);
            }
        }
        for conn in [a, b] {
            handle(&mut core, now, Event::Disconnected { conn }, &mut out);
        }
        handle(&mut core, now, Event::Tick, &mut out);
    }
    (core, now)
}

/// 100,000 games played through, then everyone gone: once the last deadlines have passed,
/// nothing is left of them but the scene's compact memory (200,000 done subjects, 10,000
/// failed pairs, both within their bounds).
#[test]
fn a_hundred_thousand_games_leave_only_the_bounded_memory() {
    use super::remembered::{DONE_CAP, FAILED_PAIRS_CAP};
    let games = 100_000;
    let (mut core, now) = play_through(games);
    let mut out = Vec::new();
    // Past every waitroom deadline, grace, and tombstone.
    core.handle(now + Duration::from_secs(3_600), Event::Tick, &mut out);
    core.check_invariants().expect("invariants");
    let m = core.memory_stats();
    assert_eq!(
        (m.connections, m.participants, m.probes, m.games, m.timers),
        (0, 0, 0, 0, 0),
        "{m:?}"
    );
    let s = m.scenes[0];
    assert_eq!((s.places, s.waiting, s.sessions), (0, 0, 0), "{s:?}");
    assert_eq!(s.done, (2 * games as usize).min(DONE_CAP));
    assert_eq!(s.failed_pairs, (games as usize / 10).min(FAILED_PAIRS_CAP));
    assert_eq!(core.next_deadline(), None, "nothing left to wake for");
}

/// A burst of games, everyone gone: their waitroom deadlines go with their sessions (not kept
/// until their time, which may be an hour away), and once the ended games are forgotten the
/// core's maps give back the room the burst took; the done set stays within its stated heap
/// (3.6–4.2 bytes a subject in its eras, 8 for the newest, not yet merged).
#[test]
fn a_burst_of_games_leaves_no_timers_and_gives_its_room_back() {
    use super::capacity::SPARE_FLOOR;
    use super::games::GAME_TOMBSTONE_TTL;
    let games = 20_000;
    let (mut core, now) = play_through(games);
    let mut out = Vec::new();
    core.handle(now, Event::Tick, &mut out);
    let m = core.memory_stats();
    assert_eq!(m.participants, 0, "{m:?}");
    assert!(m.timers <= 1, "at most the scene's count broadcast: {m:?}");
    // Every member of every game is gone for good: no tombstone is needed any more.
    assert_eq!(m.game_tombstones, 0, "{m:?}");
    core.handle(now + GAME_TOMBSTONE_TTL, Event::Tick, &mut out);
    core.check_invariants().expect("invariants");
    let m = core.memory_stats();
    assert_eq!((m.probes, m.games, m.timers), (0, 0, 0), "{m:?}");
    assert!(
        m.room <= 10 * SPARE_FLOOR,
        "room kept after the burst: {m:?}"
    );
    let s = m.scenes[0];
    assert_eq!(s.done, 2 * games as usize);
    use super::fingerprint_set::{ERA_BYTES_PER_VALUE_MAX, SEAL_AT};
    let (num, den) = ERA_BYTES_PER_VALUE_MAX;
    let eras_and_newest = s.done * num / den + 8 * SEAL_AT + 1024;
    assert!(s.done_bytes <= eras_and_newest, "{s:?}");
}

/// A crowd in the waitroom at once, then everyone gone: the waitroom's maps give back the room
/// the crowd took (measured before: 1.8 MB of places and sessions kept after a load test of
/// 100,000 games with nobody left, BENCHMARKS.md "100,000 games").
#[test]
fn a_crowd_that_leaves_gives_the_waitrooms_room_back() {
    use super::capacity::SPARE_FLOOR;
    let mut h = H::new(latency_scene(None));
    let crowd = 1_000;
    // 150 ms each: no two pass the 200 ms pre-filter, so all of them wait.
    for n in 1..=crowd {
        h.join(n, &format!("p{n}"), 150.0);
    }
    let s = h.core.memory_stats().scenes[0];
    assert_eq!(
        (s.places, s.waiting),
        (crowd as usize, crowd as usize),
        "{s:?}"
    );
    for n in 1..=crowd {
        h.msg(n, ClientMessage::Leave);
    }
    let s = h.core.memory_stats().scenes[0];
    assert_eq!((s.places, s.waiting, s.sessions), (0, 0, 0), "{s:?}");
    assert!(
        s.room <= 4 * SPARE_FLOOR,
        "room kept after the crowd: {s:?}"
    );
}

/// The done set and the failed pairs rebuilt from the record: a done subject's `hello` is
/// refused with `id_in_use`; a failed pair is not grouped again; anyone else plays.
#[test]
fn restored_done_set_and_failed_pairs_hold_after_a_restart() {
    let record = concat!(
        r#"{"ts":"t","event":"participant_left","scene_id":"s","subject_id":"L","reason":"leave"}"#,
        "\n",
        r#"{"ts":"t","event":"match_rejected","scene_id":"s","members":["A","B"],"reason":"rtt_too_high","failed_pairs":[["A","B"]]}"#,
        "\n",
        r#"{"ts":"t","event":"participant_left","#,
    );
    let state = DoneState::from_lines(record.as_bytes().split(|b| *b == b'\n'));
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    assert!(h.core.restore("s", &state));
    assert!(!h.core.restore("nope", &state), "no such scene");
    h.ev(Event::Connected {
        conn: ConnId::new(1),
    });
    let a = h.hello(1, "L", None);
    assert_eq!(error_code(&a, 1), Some(ErrorCode::IdInUse));
    assert!(closed(&a, 1));
    h.join(2, "A", 10.0);
    let b = h.join(3, "B", 10.0);
    assert!(
        game(&b, 2).is_none(),
        "the failed pair is not grouped again"
    );
    let c = h.join(4, "C", 10.0);
    assert!(game(&c, 2).is_some(), "A plays with someone else");
}

/// TURN credentials are minted only for participants in a probe or a game: nothing sent to a
/// participant who waits and times out, or to anyone before `probe_prepare`, carries one; the
/// ones minted name their recipient.
#[test]
fn turn_credentials_reach_only_probe_and_game_members() {
    let mut scene = latency_scene(Some(100.0));
    scene.waitroom_timeout_ms = 5_000;
    let mut h = H::with_config(turn_secret_config(scene), 1);
    h.join(1, "A", 10.0);
    h.join(2, "W", 500.0); // Too slow for A: waits alone, then times out.
    let id = prepare(&h.join(3, "B", 10.0), 1)
        .expect("A and B are probed")
        .probe_session_id;
    h.at(100);
    for c in [1, 3] {
        h.msg(c, ready(&id));
    }
    for c in [1, 3] {
        h.msg(c, result(&id, Some(20.0)));
    }
    h.tick_at(6_000);
    assert_eq!(
        h.count(ResearchEventKind::WaitroomTimeout),
        1,
        "W timed out"
    );
    let mut minted = 0;
    for action in &h.log {
        let Action::Send { conn, msg } = action else {
            continue;
        };
        let ice = match msg {
            ServerMessage::ProbePrepare(p) => &p.ice_servers,
            ServerMessage::GameStart(g) => &g.ice_servers,
            other => {
                let json = serde_json::to_string(other).unwrap();
                assert!(!json.contains("credential"), "{json}");
                continue;
            }
        };
        assert_ne!(conn.get(), 2, "W is never given TURN credentials");
        let who = if conn.get() == 1 { "A" } else { "B" };
        let username = ice[0].username.as_deref().unwrap();
        assert!(username.ends_with(&format!(":{who}")), "{username}");
        minted += 1;
    }
    assert_eq!(minted, 4, "probe_prepare and game_start, to A and to B");
}

// ---------------------------------------------------------------------------------------------
// The researcher's own experiment: outcomes, finish, record, attention, entry rules
// ---------------------------------------------------------------------------------------------

/// A scene of two, no probe, with `completed` and a researcher's own `screened_out` outcome.
fn study_scene() -> SceneConfig {
    use crate::config::outcome::UrlTemplate;
    use crate::config::OutcomeConfig;
    let mut s = SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo);
    let url = |t: &str| Some(UrlTemplate::parse(t).expect("a valid template"));
    s.outcomes.insert(
        Outcome::COMPLETED.into(),
        OutcomeConfig {
            url: url("https://app.prolific.com/submissions/complete?cc={completion_code}&p={subject_id}&i={player_index}"),
            code: Some("C1A2".into()),
            message: Some("Thanks!".into()),
        },
    );
    s.outcomes.insert(
        "screened_out".into(),
        OutcomeConfig {
            code: Some("SCR".into()),
            ..OutcomeConfig::default()
        },
    );
    s
}

fn outcome_of(actions: &[Action], to: u64) -> Option<pairlab_shared::Outcome> {
    sent(actions, to).into_iter().find_map(|m| match m {
        ServerMessage::Outcome(o) => Some(o),
        _ => None,
    })
}

fn finish(outcome: &str) -> ClientMessage {
    ClientMessage::Finish(Finish {
        outcome: outcome.into(),
    })
}

/// A member who finishes gets their outcome (code, URL filled for them), their connection
/// closes, and the game goes on for the partner: neither the finish nor the closed socket
/// tells the partner anything. The game ends as `finished` once both are done; nobody is told.
#[test]
fn finishing_does_not_end_the_game_for_the_partner() {
    let mut h = H::new(study_scene());
    let g = game_pair(&mut h);
    h.at(5_000);
    let a = h.msg(1, finish(Outcome::COMPLETED));
    let o = outcome_of(&a, 1).expect("an outcome");
    assert_eq!(o.outcome, Outcome::COMPLETED);
    assert_eq!(o.completion_code.as_deref(), Some("C1A2"));
    assert_eq!(
        o.redirect_url.as_deref(),
        Some("https://app.prolific.com/submissions/complete?cc=C1A2&p=A&i=0")
    );
    assert_eq!(o.message, "Thanks!");
    assert!(closed(&a, 1));
    assert!(sent(&a, 2).is_empty(), "the partner is told nothing: {a:?}");
    let a = h.ev(Event::Disconnected {
        conn: ConnId::new(1),
    });
    assert!(sent(&a, 2).is_empty(), "nor when the socket closes: {a:?}");
    assert_eq!(h.count(ResearchEventKind::GameEnded), 0);
    // The partner plays on: their reports are still recorded.
    assert!(sent(&h.msg(2, quality(&g, 0)), 2).is_empty());
    assert_eq!(h.count(ResearchEventKind::P2pQuality), 1);
    let a = h.msg(2, finish(Outcome::COMPLETED));
    assert_eq!(
        outcome_of(&a, 2).and_then(|o| o.redirect_url).as_deref(),
        Some("https://app.prolific.com/submissions/complete?cc=C1A2&p=B&i=1")
    );
    assert!(!sent(&a, 2)
        .iter()
        .any(|m| matches!(m, ServerMessage::GameEnded(_))));
    let ended: Vec<_> = h
        .records
        .iter()
        .filter_map(|r| match r {
            ResearchEvent::GameEnded { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(ended, vec![research::GameEndCause::Finished]);
    assert_eq!(h.count(ResearchEventKind::ParticipantOutcome), 2);
    // Both are done in the scene.
    h.connect(7);
    assert_eq!(
        error_code(&h.hello(7, "A", None), 7),
        Some(ErrorCode::IdInUse)
    );
}

/// A member who goes after the partner finished ends the game as `finished`, and the finished
/// partner is not told; one who goes while the partner still plays ends it as `peer_left`.
#[test]
fn going_after_the_partner_finished_ends_the_game_quietly() {
    let mut h = H::new(study_scene());
    game_pair(&mut h);
    h.msg(1, finish("screened_out"));
    let a = h.msg(2, ClientMessage::Leave);
    assert_eq!(
        sent(&a, 2)
            .iter()
            .filter(|m| matches!(m, ServerMessage::Outcome(_)))
            .count(),
        1
    );
    assert!(!a.iter().any(|x| matches!(
        x,
        Action::Send {
            msg: ServerMessage::GameEnded(_),
            ..
        }
    )));
    assert!(h.records.iter().any(|r| matches!(
        r,
        ResearchEvent::GameEnded {
            reason: research::GameEndCause::Finished,
            ..
        }
    )));
}

/// `finish` with an outcome the scene does not define, or one only the server decides, is a
/// `bad_message`; the connection stays open and nothing is recorded. `completed` is always
/// allowed, without code or URL when the scene does not configure it.
#[test]
fn finish_names_only_allowed_outcomes() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    h.join(1, "A", 10.0);
    for name in ["nope", Outcome::PARTNER_LOST, Outcome::ENTRY_REFUSED] {
        let a = h.msg(1, finish(name));
        assert_eq!(error_code(&a, 1), Some(ErrorCode::BadMessage), "{name}");
        assert!(!closed(&a, 1));
    }
    assert_eq!(h.count(ResearchEventKind::ParticipantOutcome), 0);
    let a = h.msg(1, finish(Outcome::COMPLETED));
    let o = outcome_of(&a, 1).expect("an outcome");
    assert_eq!((o.completion_code, o.redirect_url), (None, None));
    assert!(closed(&a, 1));
    assert_eq!(h.core.stats().waiting, 0, "out of the waitroom");
}

/// The outcome goes once: after `partner_lost`, a `leave` closes without a second one.
#[test]
fn an_outcome_goes_once() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    game_pair(&mut h);
    let a = h.msg(2, ClientMessage::Leave);
    assert_eq!(
        outcome_of(&a, 1).map(|o| o.outcome).as_deref(),
        Some(Outcome::PARTNER_LOST)
    );
    let a = h.msg(1, ClientMessage::Leave);
    assert!(outcome_of(&a, 1).is_none(), "{a:?}");
    assert!(closed(&a, 1));
    assert_eq!(h.count(ResearchEventKind::ParticipantOutcome), 2);
}

fn attention(hidden: bool) -> ClientMessage {
    ClientMessage::Attention(Attention {
        hidden,
        hidden_ms: (!hidden).then_some(100.0),
    })
}

/// `[scene.game] max_hidden_ms`: a member hidden that long ends the game (`member_hidden`):
/// `game_ended` to both, then `left` to the hidden one and `partner_lost` to the other. Shown
/// again before the deadline cancels it. Every change is an `attention` line.
#[test]
fn a_member_hidden_too_long_ends_the_game() {
    let mut s = SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo);
    s.game.max_hidden_ms = Some(1_000);
    let mut h = H::new(s);
    game_pair(&mut h);
    h.at(100);
    h.msg(1, attention(true));
    h.at(600);
    h.msg(1, attention(false));
    assert!(
        h.tick_at(1_100)
            .iter()
            .all(|a| !matches!(a, Action::Send { .. })),
        "cancelled"
    );
    h.at(2_000);
    h.msg(2, attention(true));
    assert!(sent(&h.tick_at(2_999), 1).is_empty());
    let a = h.tick_at(3_000);
    for (conn, outcome) in [(2, Outcome::LEFT), (1, Outcome::PARTNER_LOST)] {
        match &sent(&a, conn)[..] {
            [ServerMessage::GameEnded(e), ServerMessage::Outcome(o)] => {
                assert_eq!(e.reason, GameEndReason::MemberHidden);
                assert_eq!(o.outcome, outcome);
            }
            other => panic!("{conn}: {other:?}"),
        }
    }
    assert_eq!(h.count(ResearchEventKind::Attention), 3);
    assert!(h.records.iter().any(|r| matches!(
        r,
        ResearchEvent::GameEnded {
            reason: research::GameEndCause::MemberHidden,
            subject_id,
            ..
        } if subject_id.as_str() == "B"
    )));
}

/// Without `max_hidden_ms`, hidden pages are only recorded.
#[test]
fn without_max_hidden_ms_hidden_pages_are_only_recorded() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    game_pair(&mut h);
    h.msg(1, attention(true));
    assert!(sent(&h.tick_at(3_600_000), 1).is_empty());
    assert_eq!(h.count(ResearchEventKind::Attention), 1);
    assert_eq!(h.count(ResearchEventKind::GameEnded), 0);
}

/// `record` becomes a `custom` line with the game and player index; more than the bucket
/// allows (100 at once, then 10 a second) is a `bad_message` that keeps the connection, counted.
#[test]
fn record_events_are_recorded_within_their_rate() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    let g = game_pair(&mut h);
    let event = |n: i64| {
        let mut fields = serde_json::Map::new();
        fields.insert("n".into(), n.into());
        ClientMessage::Record(RecordEvent {
            event: "trial.end".into(),
            fields,
        })
    };
    for n in 0..100 {
        assert!(sent(&h.msg(2, event(n)), 2).is_empty());
    }
    let a = h.msg(2, event(100));
    assert_eq!(error_code(&a, 2), Some(ErrorCode::BadMessage));
    assert!(!closed(&a, 2));
    assert_eq!(h.core.stats().record_events_refused, 1);
    h.at(1_000);
    assert!(sent(&h.msg(2, event(101)), 2).is_empty(), "refilled");
    assert_eq!(h.count(ResearchEventKind::Custom), 101);
    match h.records.last() {
        Some(ResearchEvent::Custom {
            subject_id,
            game_id,
            player_index,
            name,
            fields,
        }) => {
            assert_eq!(subject_id.as_str(), "B");
            assert_eq!(game_id.as_ref(), Some(&g));
            assert_eq!(*player_index, Some(1));
            assert_eq!(name, "trial.end");
            assert_eq!(fields["n"], 101);
        }
        other => panic!("{other:?}"),
    }
}

/// Entry rule `max_entry_server_rtt_ms`: a first median above it refuses the participant
/// (`outcome entry_refused`, then `error entry_refused`, closed; a `participant_refused` line
/// with the median); they are not done and may try again. At the limit they enter.
#[test]
fn a_slow_first_server_rtt_refuses_entry() {
    let mut s = SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo);
    s.max_entry_server_rtt_ms = Some(100.0);
    let mut h = H::new(s);
    let a = h.join(1, "A", 150.0);
    match &sent(&a, 1)[1..] {
        [ServerMessage::Outcome(o), ServerMessage::Error(e)] => {
            assert_eq!(o.outcome, Outcome::ENTRY_REFUSED);
            assert_eq!(e.code, ErrorCode::EntryRefused);
        }
        other => panic!("{other:?}"),
    }
    assert!(closed(&a, 1));
    assert!(h.records.iter().any(|r| matches!(
        r,
        ResearchEvent::ParticipantRefused {
            reason: research::RefusalReason::ServerRtt,
            server_rtt_median_ms: Some(m),
            ..
        } if *m == 150.0
    )));
    assert_eq!(h.core.stats().participants, 0);
    let a = h.join(2, "A", 100.0);
    assert!(waitroom(&a, 2).is_some(), "may try again: {a:?}");
}

/// A `hello` for the default scene with recruiter parameters and a browser check.
fn study_hello(
    subject: &str,
    recruiter: Option<RecruiterParams>,
    browser: Option<BrowserCheck>,
) -> ClientMessage {
    ClientMessage::Hello(Hello {
        subject_id: sid(subject),
        scene_id: None,
        resume_token: None,
        link_signature: None,
        recruiter: recruiter.map(Box::new),
        browser,
    })
}

/// Entry rule `hello.browser`: a browser without WebRTC is refused at once, without a session.
#[test]
fn an_incapable_browser_is_refused_at_hello() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    h.connect(1);
    let no_dc = BrowserCheck {
        webrtc: true,
        data_channel: false,
    };
    let a = h.msg(1, study_hello("A", None, Some(no_dc)));
    match &sent(&a, 1)[..] {
        [ServerMessage::Outcome(o), ServerMessage::Error(e)] => {
            assert_eq!(o.outcome, Outcome::ENTRY_REFUSED);
            assert_eq!(e.code, ErrorCode::EntryRefused);
        }
        other => panic!("{other:?}"),
    }
    assert!(closed(&a, 1));
    assert_eq!(h.count(ResearchEventKind::ParticipantRefused), 1);
    assert_eq!(h.core.stats().participants, 0);
}

/// `welcome` carries the scene's `leave_button_after_ms`, `game_start` its `[scene.game]`;
/// `participant_joined` keeps `hello.recruiter`.
#[test]
fn scene_options_reach_welcome_game_start_and_the_record() {
    let mut s = SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo);
    s.leave_button_after_ms = Some(60_000);
    s.game.tick_ms = 50;
    s.game.settings.insert("arena".into(), "forest".into());
    let mut h = H::new(s.clone());
    h.connect(1);
    let recruiter = RecruiterParams {
        prolific_pid: Some("P1".into()),
        study_id: Some("S1".into()),
        ..RecruiterParams::default()
    };
    let capable = BrowserCheck {
        webrtc: true,
        data_channel: true,
    };
    let a = h.msg(1, study_hello("A", Some(recruiter.clone()), Some(capable)));
    match &sent(&a, 1)[..] {
        [ServerMessage::Welcome(w)] => assert_eq!(w.leave_button_after_ms, Some(60_000)),
        other => panic!("{other:?}"),
    }
    assert!(h.records.iter().any(|r| matches!(
        r,
        ResearchEvent::ParticipantJoined { recruiter: Some(r), .. } if **r == recruiter
    )));
    for _ in 0..3 {
        h.ev(Event::RttSample {
            conn: ConnId::new(1),
            rtt_ms: 10.0,
        });
    }
    let b = h.join(2, "B", 10.0);
    let g = game(&b, 1).expect("game");
    assert_eq!(*g.game, s.game);
    assert!(g.pair_rtts.is_empty(), "no probe, no pair RTTs");
}

/// A member in their reconnect grace when the game ends under them gets `partner_lost` when
/// they resume, after `game_start` and `game_ended`; it is recorded once, when decided.
#[test]
fn an_outcome_decided_during_the_grace_is_sent_on_resume() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    let joined = h.join(1, "A", 10.0);
    h.join(2, "B", 10.0);
    let token_a = sent(&joined, 1)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Welcome(w) => Some(w.resume_token),
            _ => None,
        })
        .expect("A's welcome");
    h.ev(Event::Disconnected {
        conn: ConnId::new(1),
    });
    h.msg(2, ClientMessage::Leave);
    assert_eq!(h.count(ResearchEventKind::ParticipantOutcome), 2);
    h.connect(3);
    let a = h.hello(3, "A", Some(token_a));
    match &sent(&a, 3)[..] {
        [ServerMessage::Welcome(_), ServerMessage::GameStart(_), ServerMessage::GameEnded(_), ServerMessage::Outcome(o)] =>
        {
            assert_eq!(o.outcome, Outcome::PARTNER_LOST)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.count(ResearchEventKind::ParticipantOutcome),
        2,
        "recorded once"
    );
}

// ---------------------------------------------------------------------------------------------
// Handover: the probe's connection becomes the game's (PROTOCOL.md, "Handover")
// ---------------------------------------------------------------------------------------------

/// The `probe_close`s sent to connection `to`, in order.
fn closes(actions: &[Action], to: u64) -> Vec<ProbeSessionId> {
    sent(actions, to)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::ProbeClose(c) => Some(c.probe_session_id),
            _ => None,
        })
        .collect()
}

/// Whether any `probe_close` went anywhere.
fn any_close(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        matches!(
            a,
            Action::Send {
                msg: ServerMessage::ProbeClose(_),
                ..
            }
        )
    })
}

/// The probe whose `probe_prepare` went to connection `to`, naming the peer `peer_index`.
fn probe_to(actions: &[Action], to: u64, peer_index: PlayerIndex) -> ProbeSessionId {
    sent(actions, to)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::ProbePrepare(p) if p.peer_index == peer_index => {
                Some(p.probe_session_id)
            }
            _ => None,
        })
        .expect("a probe_prepare to that member for that peer")
}

fn peer_probe(peer_index: PlayerIndex, id: &ProbeSessionId, handover: bool) -> PeerProbe {
    PeerProbe {
        peer_index,
        probe_session_id: id.clone(),
        handover,
    }
}

/// The `probes` of the latest `game_created` line.
fn created_probes(h: &H) -> Vec<research::PairProbe> {
    h.game_created().expect("a game_created line").1.clone()
}

/// With `probe_handover` (the default), each `probe_prepare` asks the browsers to keep the
/// connection for `probe_timeout_ms` + the margin; an accepted pair's `game_start` names the
/// same probe on both sides with `handover: true`, nothing is closed, and the record says the
/// server offered the handover.
#[test]
fn accepted_pair_hands_its_probe_connection_to_the_game() {
    let mut h = H::new(latency_scene(Some(150.0)));
    h.join(1, "A", 10.0);
    let a = h.join(2, "B", 10.0);
    let (pa, pb) = (prepare(&a, 1).unwrap(), prepare(&a, 2).unwrap());
    let keep_ms = 5_000 + crate::config::PROBE_KEEP_MARGIN_MS;
    assert_eq!((pa.keep_ms, pb.keep_ms), (Some(keep_ms), Some(keep_ms)));
    assert_eq!(keep_ms, 10_000, "probe_timeout_ms 5000 + 5000");
    let id = pa.probe_session_id;
    h.msg(1, result(&id, Some(20.0)));
    let a = h.msg(2, result(&id, Some(30.0)));
    let (ga, gb) = (game(&a, 1).unwrap(), game(&a, 2).unwrap());
    assert_eq!(ga.probes, vec![peer_probe(1, &id, true)]);
    assert_eq!(gb.probes, vec![peer_probe(0, &id, true)]);
    assert!(!any_close(&a), "a handed-over probe is not closed");
    assert_eq!(
        created_probes(&h),
        vec![research::PairProbe {
            members: [sid("A"), sid("B")],
            probe_session_id: id,
            handover: true,
        }]
    );
}

/// A member who reconnected between their probes and the game (a new page: no probe
/// connection) gets `handover: false` for their pairs, and so do their peers, whose kept
/// connections to them are closed; the pair of the two others still hands over.
#[test]
fn a_member_on_a_new_connection_gets_fresh_game_connections() {
    let (mut h, a) = trio_in_probes();
    let (ab, ac, bc) = (probe_to(&a, 1, 1), probe_to(&a, 1, 2), probe_to(&a, 2, 2));
    h.msg(1, result(&ab, Some(20.0)));
    h.msg(2, result(&ab, Some(20.0)));
    h.msg(1, result(&ac, Some(20.0)));
    h.msg(3, result(&ac, Some(20.0)));
    // A's probes are done; B–C still runs. A's page reloads and resumes.
    let token_a = token(&h.log, 1);
    h.ev(Event::Disconnected {
        conn: ConnId::new(1),
    });
    h.connect(4);
    h.hello(4, "A", Some(token_a));
    h.msg(2, result(&bc, Some(20.0)));
    let a = h.msg(3, result(&bc, Some(20.0)));
    let ga = game(&a, 4).expect("A's game_start on the new connection");
    assert_eq!(
        ga.probes,
        vec![peer_probe(1, &ab, false), peer_probe(2, &ac, false)]
    );
    let gb = game(&a, 2).unwrap();
    assert_eq!(
        gb.probes,
        vec![peer_probe(0, &ab, false), peer_probe(2, &bc, true)]
    );
    let gc = game(&a, 3).unwrap();
    assert_eq!(
        gc.probes,
        vec![peer_probe(0, &ac, false), peer_probe(1, &bc, true)]
    );
    assert_eq!(closes(&a, 2), vec![ab.clone()]);
    assert_eq!(closes(&a, 3), vec![ac.clone()]);
    assert_eq!(closes(&a, 4), vec![ab.clone(), ac.clone()]);
    let offered: Vec<(ProbeSessionId, bool)> = created_probes(&h)
        .into_iter()
        .map(|p| (p.probe_session_id, p.handover))
        .collect();
    assert_eq!(offered, vec![(ab, false), (ac, false), (bc, true)]);
}

/// A member who resumes into a running game gets its `game_start` again, with every pair
/// `handover: false` (their page is new), also on a second resume; the others' are unchanged.
#[test]
fn a_member_resuming_into_the_game_gets_no_handover() {
    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    h.msg(1, result(&id, Some(20.0)));
    let a = h.msg(2, result(&id, Some(20.0)));
    assert_eq!(game(&a, 1).unwrap().probes, vec![peer_probe(1, &id, true)]);
    for (old, new) in [(1, 3), (3, 4)] {
        let token_a = token(&h.log, old);
        h.ev(Event::Disconnected {
            conn: ConnId::new(old),
        });
        h.connect(new);
        let a = h.hello(new, "A", Some(token_a));
        let again = game(&a, new).expect("game_start again");
        assert_eq!(again.probes, vec![peer_probe(1, &id, false)]);
        assert!(sent(&a, 2).is_empty(), "B is not told anything");
    }
}

/// A rejected pair's kept connections are closed: too high an RTT or a failed measurement
/// (both members told), a missing result at the deadline (both), a member who dropped or left
/// (the one still connected). Late messages of the closed probe are still ignored quietly.
#[test]
fn a_rejected_pair_gets_probe_close() {
    // RTT too high.
    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    h.msg(1, result(&id, Some(20.0)));
    let a = h.msg(2, result(&id, Some(300.0)));
    assert_eq!(closes(&a, 1), vec![id.clone()]);
    assert_eq!(closes(&a, 2), vec![id.clone()]);
    let first = |c: u64| match sent(&a, c).first() {
        Some(ServerMessage::ProbeClose(_)) => true,
        other => panic!("expected probe_close first, got {other:?}"),
    };
    assert!(first(1) && first(2), "closed before the waitroom count");
    let late = ClientMessage::ProbeSignal(ProbeSignalOut {
        probe_session_id: id.clone(),
        target_index: 1,
        signal_type: SignalType::IceCandidate,
        payload: None,
    });
    assert!(h.msg(1, late).is_empty(), "the tombstone still holds");

    // A failed measurement.
    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    h.msg(1, result(&id, None));
    let a = h.msg(2, result(&id, Some(20.0)));
    assert_eq!((closes(&a, 1), closes(&a, 2)), (vec![id.clone()], vec![id]));

    // The deadline, with one result missing.
    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    h.msg(1, result(&id, Some(20.0)));
    let a = h.tick_at(5_000);
    assert_eq!((closes(&a, 1), closes(&a, 2)), (vec![id.clone()], vec![id]));

    // A member dropped: the other is told.
    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    let a = h.ev(Event::Disconnected {
        conn: ConnId::new(2),
    });
    assert_eq!(closes(&a, 1), vec![id]);
    assert!(sent(&a, 2).is_empty());

    // A member left.
    let mut h = H::new(latency_scene(Some(150.0)));
    let id = probe_pair(&mut h);
    let a = h.msg(1, ClientMessage::Leave);
    assert_eq!(closes(&a, 2), vec![id]);
    assert!(closes(&a, 1).is_empty());
}

/// In a group of three rejected for one pair, every probe of the round is closed, the
/// accepted pairs' included; when a member drops, the probes still running are closed too.
#[test]
fn a_rejected_group_closes_every_probe_of_its_round() {
    let (mut h, a) = trio_in_probes();
    let (ab, ac, bc) = (probe_to(&a, 1, 1), probe_to(&a, 1, 2), probe_to(&a, 2, 2));
    let mut last = vec![];
    for (conn, id, rtt) in [
        (1, &ab, 20.0),
        (2, &ab, 20.0),
        (1, &ac, 20.0),
        (3, &ac, 20.0),
        (2, &bc, 300.0),
        (3, &bc, 20.0),
    ] {
        last = h.msg(conn, result(id, Some(rtt)));
    }
    assert_eq!(closes(&last, 1), vec![ab.clone(), ac.clone()]);
    assert_eq!(closes(&last, 2), vec![ab.clone(), bc.clone()]);
    assert_eq!(closes(&last, 3), vec![ac.clone(), bc.clone()]);

    let (mut h, a) = trio_in_probes();
    let (ab, ac, bc) = (probe_to(&a, 1, 1), probe_to(&a, 1, 2), probe_to(&a, 2, 2));
    let a = h.ev(Event::Disconnected {
        conn: ConnId::new(1),
    });
    assert_eq!(closes(&a, 2), vec![ab.clone(), bc.clone()]);
    assert_eq!(closes(&a, 3), vec![ac.clone(), bc.clone()]);
}

/// `probe_handover = false`: no `keep_ms`, `game_start` names each pair's probe with
/// `handover: false`, and a probe both members finished is not closed (their browsers closed
/// it after the result); only a probe cut short, which a browser may still be running, is.
#[test]
fn without_probe_handover_probes_are_not_kept() {
    let mut scene = latency_scene(Some(150.0));
    scene.probe_handover = false;
    let mut h = H::new(scene.clone());
    h.join(1, "A", 10.0);
    let a = h.join(2, "B", 10.0);
    let (pa, pb) = (prepare(&a, 1).unwrap(), prepare(&a, 2).unwrap());
    assert_eq!((pa.keep_ms, pb.keep_ms), (None, None));
    let id = pa.probe_session_id;
    h.msg(1, result(&id, Some(20.0)));
    let a = h.msg(2, result(&id, Some(30.0)));
    assert_eq!(game(&a, 1).unwrap().probes, vec![peer_probe(1, &id, false)]);
    assert_eq!(game(&a, 2).unwrap().probes, vec![peer_probe(0, &id, false)]);
    assert!(!any_close(&a));
    assert!(created_probes(&h).iter().all(|p| !p.handover));

    let mut h = H::new(scene.clone());
    let id = probe_pair(&mut h);
    h.msg(1, result(&id, Some(20.0)));
    let a = h.msg(2, result(&id, Some(300.0)));
    assert!(waitroom(&a, 1).is_some(), "rejected");
    assert!(!any_close(&a), "both finished: nothing left open");

    let mut h = H::new(scene);
    let id = probe_pair(&mut h);
    let a = h.ev(Event::Disconnected {
        conn: ConnId::new(2),
    });
    assert_eq!(closes(&a, 1), vec![id], "A's probe was still running");
}

/// A scene without a probe has no probes to name in `game_start`.
#[test]
fn without_a_probe_game_start_names_no_probes() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    h.join(1, "A", 10.0);
    let a = h.join(2, "B", 10.0);
    assert!(game(&a, 1).unwrap().probes.is_empty());
    assert!(created_probes(&h).is_empty());
}

/// How a game connection was set up, and whether it runs on the probe's path, reach the
/// record as the member said: in `p2p_connection_type` lines (`null` when not said) and in
/// `episode_summary`'s peers.
#[test]
fn connection_setup_and_probe_path_are_recorded() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    let game_id = game_pair(&mut h);
    let info = relayed_path();
    let report = |peer_index, setup, same_path_as_probe| {
        ClientMessage::P2pConnectionType(P2pConnectionType {
            game_id: game_id.clone(),
            peer_index,
            info,
            connect_ms: Some(0.5),
            setup,
            same_path_as_probe,
        })
    };
    h.msg(1, report(1, Some(ConnectionSetup::Handover), Some(true)));
    h.msg(2, report(0, None, None));
    let lines: Vec<serde_json::Value> = h
        .records
        .iter()
        .filter(|r| r.kind() == ResearchEventKind::P2pConnectionType)
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["setup"], "handover");
    assert_eq!(lines[0]["same_path_as_probe"], true);
    assert!(lines[1]["setup"].is_null() && lines[1]["same_path_as_probe"].is_null());

    let ClientMessage::EpisodeSummary(mut s) = summary(&game_id, 1, &[1], 0) else {
        unreachable!("summary builds an episode_summary")
    };
    s.peers[0].setup = Some(ConnectionSetup::Fresh);
    s.peers[0].same_path_as_probe = Some(false);
    h.msg(1, ClientMessage::EpisodeSummary(s));
    let line = h
        .records
        .iter()
        .find(|r| r.kind() == ResearchEventKind::EpisodeSummary)
        .map(|r| serde_json::to_value(r).unwrap())
        .expect("an episode_summary line");
    assert_eq!(line["peers"][0]["setup"], "fresh");
    assert_eq!(line["peers"][0]["same_path_as_probe"], false);
    assert_eq!(line["peers"][0]["peer_subject_id"], "B");
}

mod matrix;
