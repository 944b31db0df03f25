//! The monitor's unit tests: what the page shows after each kind of record line, aliases
//! and their forgetting, the waiting counts.

use std::time::Duration;

use super::*;
use crate::core::research::{LeaveReason, PairRtt, ProbeFailure};
use pairlab_shared::{GameId, ProbeSessionId, RecruiterParams};

fn sid(s: &str) -> SubjectId {
    SubjectId::parse(s).unwrap()
}

fn enter(m: &mut Monitor, at: Instant, who: &str) {
    m.observe(
        at,
        "s",
        &ResearchEvent::ParticipantJoined {
            subject_id: sid(who),
            resumed: false,
            recruiter: Some(Box::new(RecruiterParams {
                prolific_pid: Some(format!("prolific-{who}")),
                ..RecruiterParams::default()
            })),
        },
    );
    m.observe(
        at,
        "s",
        &ResearchEvent::ServerRtt {
            subject_id: sid(who),
            median_ms: 20.0,
            samples_ms: vec![20.0],
        },
    );
}

fn probe_result(m: &mut Monitor, at: Instant, id: &str, accepted: bool, rtt_ms: f64) {
    m.observe(
        at,
        "s",
        &ResearchEvent::ProbeResult {
            probe_session_id: ProbeSessionId::from_string(id),
            members: [sid("alice"), sid("bob")],
            reports: [None, None],
            accepted,
            rtt_ms: Some(rtt_ms),
            max_p2p_rtt_ms: 150.0,
            reason: (!accepted).then_some(ProbeFailure::RttTooHigh),
            ready_ms: None,
            duration_ms: 500.0,
        },
    );
}

/// The aliases follow who is in the study: 10,000 participants through, none kept; a
/// newcomer never gets a number given before.
#[test]
fn aliases_go_with_their_participants() {
    let mut m = Monitor::new(["s"], false);
    let t0 = Instant::now();
    for n in 0..10_000 {
        let who = format!("p{n}");
        enter(&mut m, t0, &who);
        m.observe(
            t0,
            "s",
            &ResearchEvent::ParticipantLeft {
                subject_id: sid(&who),
                reason: LeaveReason::Leave,
            },
        );
    }
    assert!(m.aliases.is_empty(), "{} aliases kept", m.aliases.len());
    assert!(
        m.aliases.capacity() < 64,
        "room kept: {}",
        m.aliases.capacity()
    );
    enter(&mut m, t0, "stays");
    enter(&mut m, t0, "p0");
    let snap = m.snapshot(t0);
    let mut names: Vec<&str> = snap.scenes[0]
        .waiting
        .iter()
        .map(|w| w.who.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["W-10001", "W-10002"], "p0 again: a new number");
}

/// Waiting, a rejected then an accepted probe, a game with its connection, aliases
/// everywhere.
#[test]
fn lines_become_the_scenes_state() {
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let mut m = Monitor::new(["s", "other"], false);
    enter(&mut m, at(0), "alice");
    enter(&mut m, at(1_000), "bob");
    enter(&mut m, at(2_000), "carol");
    m.set_waiting([("s", 3), ("other", 0)]);
    let snap = m.snapshot(at(3_000));
    let s = &snap.scenes[0];
    assert_eq!((s.waiting_now, s.waiting_count), (3, 3));
    let who: Vec<(&str, u64)> = s
        .waiting
        .iter()
        .map(|w| (w.who.as_str(), w.waited_ms))
        .collect();
    assert_eq!(who, [("W-1", 3_000), ("W-2", 2_000), ("W-3", 1_000)]);

    let pair = vec![sid("alice"), sid("bob")];
    m.observe(
        at(3_000),
        "s",
        &ResearchEvent::MatchProposed {
            members: pair.clone(),
            server_rtts_ms: vec![None, None],
            matchmaker: "fifo",
            probe: true,
            pair_rtts: vec![],
        },
    );
    m.observe(
        at(3_000),
        "s",
        &ResearchEvent::ProbeStarted {
            probe_session_id: ProbeSessionId::from_string("p1"),
            members: [sid("alice"), sid("bob")],
            timeout_ms: 10_000,
        },
    );
    let s = &m.snapshot(at(3_500)).scenes[0];
    assert_eq!(s.waiting_count, 1);
    assert_eq!(s.probes.len(), 1);
    assert_eq!(s.probes[0].members, ["W-1".to_owned(), "W-2".to_owned()]);
    assert_eq!(s.probes[0].running_ms, 500);

    probe_result(&mut m, at(3_600), "p1", false, 400.0);
    m.observe(
        at(3_600),
        "s",
        &ResearchEvent::MatchRejected {
            members: pair.clone(),
            reason: ProbeFailure::RttTooHigh,
            failed_pairs: vec![[sid("alice"), sid("bob")]],
        },
    );
    let s = &m.snapshot(at(3_600)).scenes[0];
    assert_eq!(s.waiting_count, 3, "back in the waitroom, with their place");
    assert_eq!(s.waiting[0].waited_ms, 3_600);
    assert!(s.probes.is_empty());
    assert_eq!(s.probes_rejected.get("rtt_too_high"), Some(&1));

    probe_result(&mut m, at(4_000), "p2", true, 42.0);
    m.observe(
        at(10_000),
        "s",
        &ResearchEvent::GameCreated {
            game_id: GameId::from_string("g1"),
            players: pair.clone(),
            p2p_rtts_ms: vec![PairRtt {
                members: [sid("alice"), sid("bob")],
                rtt_ms: 42.0,
            }],
            probes: Vec::new(),
        },
    );
    m.observe(
        at(10_500),
        "s",
        &ResearchEvent::P2pQuality {
            game_id: GameId::from_string("g1"),
            subject_id: sid("bob"),
            peer_subject_id: sid("alice"),
            level: pairlab_shared::QualityLevel::Warning,
            rtt_ms: Some(180.0),
        },
    );
    let snap = m.snapshot(at(11_000));
    let s = &snap.scenes[0];
    assert_eq!(s.probes_accepted, 1);
    assert_eq!(s.waiting_count, 1);
    assert_eq!(s.games.len(), 1);
    assert_eq!(s.games[0].players, ["W-1", "W-2"]);
    assert_eq!(s.games[0].running_ms, 1_000);
    assert_eq!(s.games[0].links[0].from, "W-2");
    assert_eq!(s.games[0].links[0].quality.as_deref(), Some("warning"));
    // RTTs 400 (> 300 bound, ≤ 500) and 42 (≤ 50).
    let rtt = &s.p2p_rtt_histogram;
    let bucket = |h: &Histogram, ms: f64| h.bounds_ms.iter().position(|b| *b == ms).unwrap();
    assert_eq!(rtt.counts[bucket(rtt, 50.0)], 1);
    assert_eq!(rtt.counts[bucket(rtt, 500.0)], 1);
    assert_eq!(rtt.counts.iter().sum::<u64>(), 2);
    // Waits of 10 s (alice) and 9 s (bob), both ≤ 10 s and > 5 s.
    let wait = &s.wait_histogram;
    assert_eq!(wait.counts[bucket(wait, 10_000.0)], 2);
    assert_eq!(wait.counts.iter().sum::<u64>(), 2);

    m.observe(
        at(12_000),
        "s",
        &ResearchEvent::GameEnded {
            game_id: GameId::from_string("g1"),
            reason: crate::core::research::GameEndCause::PeerLeft,
            subject_id: sid("alice"),
        },
    );
    m.observe(
        at(12_000),
        "s",
        &ResearchEvent::WaitroomTimeout {
            subject_id: sid("carol"),
            waited_ms: 10_000.0,
        },
    );
    let snap = m.snapshot(at(12_000));
    let s = &snap.scenes[0];
    assert!(s.games.is_empty());
    assert_eq!(s.games_ended.get("peer_left"), Some(&1));
    assert_eq!(s.waitroom_timeouts, 1);
    assert_eq!(s.waiting_count, 0);

    // No subject id, nor a recruiter id, anywhere on the page.
    let text = serde_json::to_string(&snap).unwrap();
    for id in ["alice", "bob", "carol", "prolific"] {
        assert!(!text.contains(id), "{id} in {text}");
    }
    assert!(
        text.contains("\"failed_pairs\":[[\"W-1\",\"W-2\"]]"),
        "{text}"
    );
    assert_eq!(snap.recent[0].line["event"], "waitroom_timeout");
    assert_eq!(snap.recent[0].line["subject_id"], "W-3");
}

/// A participant's own strings that name another participant are aliased too.
#[test]
fn ids_in_researcher_fields_are_aliased() {
    let t0 = Instant::now();
    let mut m = Monitor::new(["s"], false);
    enter(&mut m, t0, "alice");
    enter(&mut m, t0, "bob");
    let mut fields = serde_json::Map::new();
    fields.insert("partner".into(), "bob".into());
    fields.insert("choice".into(), "left".into());
    m.observe(
        t0,
        "s",
        &ResearchEvent::Custom {
            subject_id: sid("alice"),
            game_id: None,
            player_index: None,
            name: "chose".into(),
            fields,
        },
    );
    let snap = m.snapshot(t0);
    let line = &snap.recent[0].line;
    assert_eq!(line["subject_id"], "W-1");
    assert_eq!(line["fields"]["partner"], "W-2");
    assert_eq!(line["fields"]["choice"], "left");
    assert_eq!(line["name"], "chose");
}

#[test]
fn opted_in_ids_are_shown_and_recent_lines_are_bounded() {
    let t0 = Instant::now();
    let mut m = Monitor::new(["s"], true);
    for i in 0..(RECENT_EVENTS + 5) {
        enter(&mut m, t0, &format!("p{i}"));
    }
    m.observe(
        t0,
        "s",
        &ResearchEvent::ParticipantLeft {
            subject_id: sid("p0"),
            reason: LeaveReason::Leave,
        },
    );
    let snap = m.snapshot(t0);
    assert_eq!(snap.recent.len(), RECENT_EVENTS);
    assert_eq!(snap.recent[0].line["subject_id"], "p0");
    assert_eq!(snap.scenes[0].waiting_count, RECENT_EVENTS + 4);
    assert_eq!(
        snap.scenes[0].waiting.len(),
        WAITING_SHOWN.min(RECENT_EVENTS + 4)
    );
    assert!(snap.scenes[0]
        .waiting
        .iter()
        .all(|w| w.who.starts_with('p')));
    let joined = snap
        .recent
        .iter()
        .find(|r| r.line["event"] == "participant_joined")
        .unwrap();
    assert!(joined.line["recruiter"].is_object(), "kept when opted in");
}
