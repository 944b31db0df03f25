//! Unit tests of the core with a clock passed in: no sockets, no sleeping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pairlab_shared::*;

use super::research::{ProbeFailure, ResearchEvent};
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
            }),
        )
    }
    /// The players of the latest `game_created` line, in player order.
    fn game_players(&self) -> Vec<SubjectId> {
        self.records
            .iter()
            .rev()
            .find_map(|r| match r {
                ResearchEvent::GameCreated { players, .. } => Some(players.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
    fn count(&self, name: &str) -> usize {
        self.records
            .iter()
            .filter(|r| serde_json::to_value(r).unwrap()["event"] == name)
            .count()
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
        ServerMessage::GameStart(g) => Some(g),
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
    assert_eq!(h.count("game_created"), 1);
    assert_eq!(h.count("match_proposed"), 1);
}

#[test]
fn waits_for_entry_samples_or_time() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    h.ev(Event::Connected {
        conn: ConnId::new(1),
    });
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
    assert_eq!(h.count("probe_started"), 1);
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
    assert_eq!(h.count("match_rejected"), 1);
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
    h.ev(Event::Connected {
        conn: ConnId::new(3),
    });
    let r = h.hello(3, "B", Some(tok_b));
    assert!(prepare(&r, 1).is_some() && prepare(&r, 3).is_some());
}

#[test]
fn resume_keeps_place_and_duplicate_is_refused() {
    let mut h = H::new(latency_scene(Some(150.0)));
    let a = h.join(1, "A", 10.0);
    let tok = token(&a, 1);
    h.ev(Event::Connected {
        conn: ConnId::new(5),
    });
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
    h.ev(Event::Connected {
        conn: ConnId::new(6),
    });
    assert_eq!(
        error_code(&h.hello(6, "A", None), 6),
        Some(ErrorCode::IdInUse),
        "during the grace a hello without the token is refused"
    );
    h.at(2_000);
    h.ev(Event::Connected {
        conn: ConnId::new(7),
    });
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
    h.ev(Event::Connected {
        conn: ConnId::new(2),
    });
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
    assert_eq!(h.count("participant_left"), 1);
    h.ev(Event::Connected {
        conn: ConnId::new(2),
    });
    let r = h.hello(2, "A", Some(tok));
    assert!(
        error_code(&r, 2).is_none(),
        "a new session, not already_done"
    );
    assert!(sent(&r, 2)
        .iter()
        .any(|m| matches!(m, ServerMessage::Welcome(_))));
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
        [ServerMessage::WaitroomTimeout(t)] => {
            assert_eq!(t.redirect_url.as_deref(), Some("https://example.org/done"));
            assert!(t.message.contains("partner"));
        }
        other => panic!("{other:?}"),
    }
    assert!(closed(&a, 1));
    assert_eq!(h.count("waitroom_timeout"), 1);
    h.ev(Event::Connected {
        conn: ConnId::new(2),
    });
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
    h.ev(Event::Connected {
        conn: ConnId::new(3),
    });
    assert_eq!(
        error_code(&h.hello(3, "B", None), 3),
        Some(ErrorCode::IdInUse)
    );
}

#[test]
fn groups_of_three_probe_every_pair_in_parallel() {
    let mut s = latency_scene(Some(100.0));
    s.group_size = 3;
    let mut h = H::new(s);
    h.join(1, "A", 10.0);
    h.join(2, "B", 10.0);
    let a = h.join(3, "C", 10.0);
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
    let mut s = latency_scene(Some(100.0));
    s.group_size = 3;
    let mut h = H::new(s);
    h.join(1, "A", 10.0);
    h.join(2, "B", 10.0);
    let a = h.join(3, "C", 10.0);
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
    h.ev(Event::Connected {
        conn: ConnId::new(1),
    });
    let a = h.msg(1, ClientMessage::Leave);
    assert_eq!(error_code(&a, 1), Some(ErrorCode::HelloRequired));
    assert!(closed(&a, 1));
    h.ev(Event::Connected {
        conn: ConnId::new(2),
    });
    let a = h.ev(Event::Malformed {
        conn: ConnId::new(2),
        error: ClientMessage::decode("nonsense").unwrap_err(),
    });
    assert_eq!(error_code(&a, 2), Some(ErrorCode::HelloRequired));
    h.ev(Event::Connected {
        conn: ConnId::new(3),
    });
    let a = h.ev(Event::Malformed {
        conn: ConnId::new(3),
        error: ClientMessage::decode(r#"{"type":"hello","subject_id":"a b"}"#).unwrap_err(),
    });
    assert_eq!(error_code(&a, 3), Some(ErrorCode::InvalidSubjectId));
    assert!(closed(&a, 3));
    h.ev(Event::Connected {
        conn: ConnId::new(4),
    });
    let a = h.msg(
        4,
        ClientMessage::Hello(Hello {
            subject_id: sid("A"),
            scene_id: Some("nope".into()),
            resume_token: None,
            link_signature: None,
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
    let a = h.ev(Event::Malformed {
        conn: ConnId::new(6),
        error: ClientMessage::decode(r#"{"type":"dance"}"#).unwrap_err(),
    });
    assert_eq!(error_code(&a, 6), Some(ErrorCode::UnknownType));
    assert!(!closed(&a, 6));
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
    let a = h.ev(Event::Malformed {
        conn: ConnId::new(1),
        error: ClientMessage::decode(r#"{"type":"probe_ready"}"#).unwrap_err(),
    });
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
    for name in [
        "probe_result",
        "game_created",
        "match_rejected",
        "p2p_quality",
        "participant_dropped",
        "waitroom_timeout",
        "game_ended",
    ] {
        assert!(a.count(name) >= 1, "the story covers {name}");
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
        assert_eq!(h.count("probe_result"), 3);
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
        games += h.count("game_created");
        rejected += h.count("match_rejected");
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
    h.ev(Event::Connected {
        conn: ConnId::new(5),
    });
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
    assert_eq!(h.count("p2p_connection_type"), 1);
    assert_eq!(h.count("p2p_quality"), 1);
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
    assert_eq!(h.count("p2p_quality"), 1);
    let fail = ClientMessage::P2pConnectionFailed(P2pConnectionFailed {
        game_id: game_id.clone(),
        peer_index: 1,
        attempts: 3,
    });
    let a = h.msg(1, fail.clone());
    for c in [1, 2] {
        match &sent(&a, c)[..] {
            [ServerMessage::GameEnded(e)] => {
                assert_eq!(e.reason, GameEndReason::ConnectionFailed);
                assert!(!e.message.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(h.count("game_ended"), 1);
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
    assert_eq!(h.count("game_ended"), 1);
    assert_eq!(h.count("p2p_connection_failed"), 2, "both reports are kept");
}

#[test]
fn a_member_leaving_ends_the_game_for_the_others() {
    let mut h = H::new(SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo));
    game_pair(&mut h);
    let a = h.msg(2, ClientMessage::Leave);
    match &sent(&a, 1)[..] {
        [ServerMessage::GameEnded(e)] => assert_eq!(e.reason, GameEndReason::PeerLeft),
        other => panic!("{other:?}"),
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
    let config = Config {
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
    };
    let mut h = H::with_config(config, 1);
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
