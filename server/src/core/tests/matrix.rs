//! `p2p_matrix` in the core, on the simulated clock: the background-probe bounds (K, the
//! connection cap), fairness (oldest first, pre-filter first), re-measuring after the age, failed
//! pairs never probed again, the grouping rule (oldest waiter, smallest maximum RTT, earliest
//! arrivals; the deadline window), the hand-over in `game_start.probes`, and the clean-up when
//! a member leaves. Every event also runs the core's invariants, the matrix's among them.

use std::collections::HashMap;

use super::*;

/// A `p2p_matrix` scene: threshold 100 ms, K probes per participant, fresh for 30 s.
fn matrix_scene(group_size: u32, k: u32) -> SceneConfig {
    let mut s = SceneConfig::with_defaults("s", group_size, MatchmakerKind::P2pMatrix);
    s.max_p2p_rtt_ms = Some(100.0);
    s.waitroom_timeout_ms = 600_000;
    s.probe_timeout_ms = 5_000;
    s.reconnect_grace_ms = 3_000;
    s.matrix.probe_concurrency = k;
    s.matrix.pair_max_age_ms = 30_000;
    s.matrix.max_probe_connections = 8;
    s
}

/// Every `probe_prepare` in `actions`: probe → the two connections it went to.
fn prepared(actions: &[Action]) -> HashMap<ProbeSessionId, Vec<u64>> {
    let mut map: HashMap<ProbeSessionId, Vec<u64>> = HashMap::new();
    for a in actions {
        if let Action::Send {
            conn,
            msg: ServerMessage::ProbePrepare(p),
        } = a
        {
            map.entry(p.probe_session_id.clone())
                .or_default()
                .push(conn.get());
        }
    }
    map
}

/// The probe prepared between connections `x` and `y` in `actions`.
fn probe_between(actions: &[Action], x: u64, y: u64) -> Option<ProbeSessionId> {
    prepared(actions).into_iter().find_map(|(id, mut c)| {
        c.sort_unstable();
        (c == [x.min(y), x.max(y)]).then_some(id)
    })
}

/// The unordered connection pairs probed in `actions`, sorted.
fn probed_pairs(actions: &[Action]) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = prepared(actions)
        .into_values()
        .map(|c| (c[0].min(c[1]), c[0].max(c[1])))
        .collect();
    v.sort_unstable();
    v
}

/// Both members report `rtt` (None: a failed measurement) for probe `id`.
fn answer(h: &mut H, id: &ProbeSessionId, conns: [u64; 2], rtt: Option<f64>) -> Vec<Action> {
    let mut all = Vec::new();
    for c in conns {
        all.extend(h.msg(c, result(id, rtt)));
    }
    all
}

fn closes(actions: &[Action], to: u64) -> Vec<ProbeSessionId> {
    sent(actions, to)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::ProbeClose(c) => Some(c.probe_session_id),
            _ => None,
        })
        .collect()
}

fn matrix_of(h: &H) -> &crate::core::matrix::PairMatrix {
    h.core.scene_matrix(0).expect("a p2p_matrix scene")
}

fn pid_of(h: &H, conn: u64) -> Pid {
    h.core
        .pid_of_conn(ConnId::new(conn))
        .unwrap_or_else(|| panic!("connection {conn} is bound to nobody"))
}

#[test]
fn at_most_k_probes_per_participant_with_keep_ms_and_newcomer_first_to_free_waiters() {
    let mut h = H::new(matrix_scene(5, 2));
    let mut all = Vec::new();
    for n in 1..=6 {
        all.extend(h.join(n, &format!("P{n}"), 10.0));
    }
    for n in 1..=6 {
        let pid = pid_of(&h, n);
        assert!(matrix_of(&h).live_probes(pid) <= 2, "K = 2 for {n}");
    }
    // 1 joins alone; 2 probes 1; 3 probes 1 and 2 (both have a free slot); 4 finds 1 and 3
    // full... every participant's probes are the oldest with a free slot.
    assert_eq!(
        probed_pairs(&all),
        vec![(1, 2), (1, 3), (2, 3), (4, 5), (4, 6), (5, 6)]
    );
    let p = prepare(&all, 2).expect("a prepare to 2");
    assert_eq!(
        p.keep_ms,
        Some(30_000 + crate::core::matrix::KEEP_MARGIN_MS)
    );
    assert_eq!(p.timeout_ms, 5_000);
    assert_eq!(h.count(ResearchEventKind::MatchProposed), 0);
}

#[test]
fn a_freed_slot_goes_to_the_oldest_waiter_and_pre_filter_passes_go_first() {
    let mut s = matrix_scene(3, 1);
    s.max_server_rtt_ms = Some(100.0);
    let mut h = H::new(s);
    h.join(1, "X", 95.0);
    let a = h.join(2, "Y", 5.0);
    let xy = probe_between(&a, 1, 2).expect("X–Y (95 + 5 passes)");
    // The pair is too slow: failed, never again.
    answer(&mut h, &xy, [1, 2], Some(500.0));
    // N (10) is older-first: X is older but fails the pre-filter with N (105 > 100); Y passes.
    let n = h.join(3, "N", 10.0);
    assert_eq!(probed_pairs(&n), vec![(2, 3)], "the passing pair first");
    // M (10): X is free (fails the pre-filter), Y and N are busy: the fallback is X.
    let m = h.join(4, "M", 10.0);
    assert_eq!(probed_pairs(&m), vec![(1, 4)]);
    // N–Y ends (measured): N and Y look again, oldest first. Y (older) takes the oldest free
    // eligible partner: X is busy with M, X–Y failed; N–Y is fresh; M is busy → nothing. N: M busy,
    // X busy → nothing.
    let ny = probe_between(&n, 2, 3).unwrap();
    let after = answer(&mut h, &ny, [2, 3], Some(60.0));
    assert!(probed_pairs(&after).is_empty());
    // X–M ends: X (oldest) takes N (free; fails the pre-filter but it is all there is), then M
    // takes Y.
    let xm = probe_between(&m, 1, 4).unwrap();
    let after = answer(&mut h, &xm, [1, 4], Some(70.0));
    assert_eq!(probed_pairs(&after), vec![(1, 3), (2, 4)]);
}

#[test]
fn a_pair_is_measured_again_after_the_age_and_a_failed_one_never() {
    let mut h = H::new(matrix_scene(3, 2));
    h.join(1, "A", 10.0);
    let b = h.join(2, "B", 10.0);
    let ab = probe_between(&b, 1, 2).unwrap();
    h.at(1_000);
    answer(&mut h, &ab, [1, 2], Some(40.0));
    let c = h.join(3, "C", 10.0);
    let ac = probe_between(&c, 1, 3).unwrap();
    let bc = probe_between(&c, 2, 3).unwrap();
    answer(&mut h, &ac, [1, 3], None); // a failed measurement
    answer(&mut h, &bc, [2, 3], Some(500.0)); // too slow
    assert_eq!(h.count(ResearchEventKind::PairMeasured), 2, "A–B and B–C");
    // Nothing happens until A–B is 30 s old.
    let quiet = h.tick_at(30_999);
    assert!(probed_pairs(&quiet).is_empty());
    let stale = h.tick_at(31_000);
    assert_eq!(
        closes(&stale, 1),
        vec![ab.clone()],
        "the kept connection closes"
    );
    assert_eq!(closes(&stale, 2), vec![ab.clone()]);
    assert_eq!(
        probed_pairs(&stale),
        vec![(1, 2)],
        "measured again; A–C, B–C never"
    );
    let again = probe_between(&stale, 1, 2).unwrap();
    h.at(32_000);
    answer(&mut h, &again, [1, 2], Some(42.0));
    let age = h.records.iter().rev().find_map(|r| match r {
        ResearchEvent::PairMeasured {
            previous_age_ms, ..
        } => Some(*previous_age_ms),
        _ => None,
    });
    assert_eq!(age, Some(Some(31_000.0)), "the replaced measurement's age");
    // Long after, still never A–C or B–C.
    let later = h.tick_at(200_000);
    assert!(!probed_pairs(&later).contains(&(1, 3)));
    assert!(!probed_pairs(&later).contains(&(2, 3)));
}

#[test]
fn a_pair_within_the_threshold_is_a_game_at_once_with_its_probe_handed_over() {
    let mut h = H::new(matrix_scene(2, 2));
    h.join(1, "A", 10.0);
    let b = h.join(2, "B", 10.0);
    let ab = probe_between(&b, 1, 2).unwrap();
    let c = h.join(3, "C", 10.0);
    let ac = probe_between(&c, 1, 3).unwrap();
    let bc = probe_between(&c, 2, 3).unwrap();
    h.msg(1, result(&ab, Some(80.0)));
    let done = h.msg(2, result(&ab, Some(70.0)));
    let (ga, gb) = (
        game(&done, 1).expect("A plays"),
        game(&done, 2).expect("B plays"),
    );
    assert_eq!(ga.game_id, gb.game_id);
    assert_eq!(
        ga.probes,
        vec![PeerProbe {
            peer_index: 1,
            probe_session_id: ab.clone(),
            handover: true
        }]
    );
    assert_eq!(gb.probes[0].peer_index, 0);
    assert!(gb.probes[0].handover);
    assert_eq!(ga.pair_rtts.len(), 1);
    assert_eq!(ga.pair_rtts[0].rtt_ms, 80.0, "the larger report");
    // Their probes with C are closed, for both sides; C is back to probing nobody.
    assert_eq!(closes(&done, 1), vec![ac.clone()]);
    assert_eq!(closes(&done, 2), vec![bc.clone()]);
    let mut c_closed = closes(&done, 3);
    c_closed.sort_by_key(|p| p.to_string());
    let mut expect = vec![ac, bc];
    expect.sort_by_key(|p| p.to_string());
    assert_eq!(c_closed, expect);
    assert_eq!(matrix_of(&h).live_probes(pid_of(&h, 3)), 0);
    let withdrawn = h
        .records
        .iter()
        .filter(|r| {
            matches!(
                r,
                ResearchEvent::ProbeResult {
                    reason: Some(ProbeFailure::Withdrawn),
                    accepted: false,
                    ..
                }
            )
        })
        .count();
    assert_eq!(withdrawn, 2, "A–C and B–C end with a probe_result line");
    let proposed = h.records.iter().find_map(|r| match r {
        ResearchEvent::MatchProposed {
            probe, pair_rtts, ..
        } => Some((*probe, pair_rtts.clone())),
        _ => None,
    });
    let (probe, pair_rtts) = proposed.expect("match_proposed");
    assert!(!probe, "no probe at match time");
    assert_eq!(pair_rtts.len(), 1);
    assert_eq!(pair_rtts[0].rtt_ms, 80.0);
    assert_eq!(h.count(ResearchEventKind::MatchRejected), 0);
}

/// Four waiting in a scene of three; every pair but A–B measured (C–D too slow), then A–B.
fn trio_setup(bd_rtt: f64) -> (H, Vec<Action>) {
    let mut h = H::new(matrix_scene(3, 3));
    let mut all = Vec::new();
    for (n, s) in [(1, "A"), (2, "B"), (3, "C"), (4, "D")] {
        all.extend(h.join(n, s, 10.0));
    }
    let rtts = [
        ((1, 3), 50.0),
        ((1, 4), 50.0),
        ((2, 3), 60.0),
        ((2, 4), bd_rtt),
        ((3, 4), 500.0),
    ];
    for ((x, y), rtt) in rtts {
        let id = probe_between(&all, x, y).unwrap_or_else(|| panic!("{x}–{y} probed"));
        let out = answer(&mut h, &id, [x, y], Some(rtt));
        assert!(game(&out, x).is_none(), "no triangle yet");
    }
    let ab = probe_between(&all, 1, 2).expect("A–B probed");
    let out = answer(&mut h, &ab, [1, 2], Some(20.0));
    (h, out)
}

#[test]
fn the_group_with_the_smallest_maximum_pair_rtt_then_the_earliest_arrivals() {
    // {A, B, C} and {A, B, D} both have a maximum of 60: the earlier arrivals win.
    let (h, out) = trio_setup(60.0);
    assert_eq!(h.game_players(), vec![sid("A"), sid("B"), sid("C")]);
    let g = game(&out, 3).expect("C plays");
    assert_eq!(g.player_count, 3);
    assert_eq!(g.probes.len(), 2, "C's two peers");
    assert!(g.probes.iter().all(|p| p.handover));
    assert!(game(&out, 4).is_none());
    assert_eq!(closes(&out, 4).len(), 2, "D's kept A–D and B–D close");
    // B–D at 55: {A, B, D} has the smaller maximum.
    let (h, _) = trio_setup(55.0);
    assert_eq!(h.game_players(), vec![sid("A"), sid("B"), sid("D")]);
    let rtts = h.records.iter().find_map(|r| match r {
        ResearchEvent::MatchProposed { pair_rtts, .. } => Some(pair_rtts.len()),
        _ => None,
    });
    assert_eq!(rtts, Some(3), "every pair of the three");
}

#[test]
fn near_the_deadline_a_stale_measurement_counts_without_handover() {
    let mut s = matrix_scene(3, 2);
    s.waitroom_timeout_ms = 8_000;
    s.matrix.pair_max_age_ms = 2_000;
    let mut h = H::new(s);
    h.join(1, "A", 10.0);
    let b = h.join(2, "B", 10.0);
    let c = h.join(3, "C", 10.0);
    let (ab, ac, bc) = (
        probe_between(&b, 1, 2).unwrap(),
        probe_between(&c, 1, 3).unwrap(),
        probe_between(&c, 2, 3).unwrap(),
    );
    h.at(100);
    answer(&mut h, &ab, [1, 2], Some(30.0));
    answer(&mut h, &ac, [1, 3], Some(30.0));
    // A–B and A–C go stale at 2.1 s and are probed again (not answered).
    let stale = h.tick_at(2_100);
    assert_eq!(probed_pairs(&stale), vec![(1, 2), (1, 3)]);
    h.at(2_500);
    let out = answer(&mut h, &bc, [2, 3], Some(30.0));
    assert!(game(&out, 1).is_none(), "A's pairs are stale");
    // A's deadline is 8 s after entry: 3 s from it (the probe timeout), A's stale pairs count.
    let out = h.tick_at(3_000);
    let g = game(&out, 1).expect("the group forms in A's deadline window");
    assert_eq!(g.probes.len(), 2);
    assert!(
        g.probes.iter().all(|p| !p.handover),
        "stale: fresh connections"
    );
    let gb = game(&out, 2).unwrap();
    let to_c = gb.probes.iter().find(|p| p.peer_index == 2).unwrap();
    assert!(to_c.handover, "B–C is fresh and kept");
    assert_eq!(h.count(ResearchEventKind::MatchRejected), 0);
}

#[test]
fn a_leaver_s_probes_are_dropped_and_partners_told() {
    let mut h = H::new(matrix_scene(3, 2));
    h.join(1, "A", 10.0);
    let b = h.join(2, "B", 10.0);
    let ab = probe_between(&b, 1, 2).unwrap();
    let c = h.join(3, "C", 10.0);
    let bc = probe_between(&c, 2, 3).unwrap();
    answer(&mut h, &bc, [2, 3], Some(30.0));
    // A leaves during A–B: B is told to close it.
    let out = h.msg(1, ClientMessage::Leave);
    assert_eq!(closes(&out, 2), vec![ab.clone()]);
    assert_eq!(h.count(ResearchEventKind::MatchRejected), 0);
    // C drops: B is told to close the kept B–C connection.
    let out = h.ev(Event::Disconnected {
        conn: ConnId::new(3),
    });
    assert_eq!(closes(&out, 2), vec![bc]);
    let pid_b = pid_of(&h, 2);
    assert_eq!(matrix_of(&h).open_connections(pid_b), 0);
    // A late result from B for the abandoned probe is ignored quietly.
    let late = h.msg(2, result(&ab, Some(10.0)));
    assert!(error_code(&late, 2).is_none());
}

#[test]
fn the_connection_cap_closes_the_slowest_kept_connection() {
    let mut s = matrix_scene(5, 1);
    s.matrix.max_probe_connections = 2;
    let mut h = H::new(s);
    h.join(1, "A", 10.0);
    let b = h.join(2, "B", 10.0);
    let ab = probe_between(&b, 1, 2).unwrap();
    let c = h.join(3, "C", 10.0);
    answer(&mut h, &ab, [1, 2], Some(90.0));
    // A's slot freed: A–C starts (A keeps A–B).
    let ac = probe_between(&h.log, 1, 3).unwrap();
    let _ = c;
    answer(&mut h, &ac, [1, 3], Some(40.0));
    // A keeps two; D arrives: A–D would make three, so A–B (the slower) closes.
    let d = h.join(4, "D", 10.0);
    assert!(probe_between(&d, 1, 4).is_some());
    assert_eq!(closes(&d, 1), vec![ab.clone()]);
    assert_eq!(closes(&d, 2), vec![ab]);
    assert!(matrix_of(&h).open_connections(pid_of(&h, 1)) <= 2);
}

#[test]
fn partners_never_learn_each_other_s_subject_ids() {
    let mut h = H::new(matrix_scene(2, 2));
    let names = ["SUBJECTALPHA", "SUBJECTBRAVO", "SUBJECTCHARLIE"];
    for (n, s) in (1..).zip(names) {
        h.join(n, s, 10.0);
    }
    for (id, conns) in prepared(&h.log) {
        answer(&mut h, &id, [conns[0], conns[1]], Some(30.0));
    }
    assert_eq!(h.count(ResearchEventKind::GameCreated), 1);
    for a in &h.log {
        if let Action::Send { conn, msg } = a {
            let json = serde_json::to_string(msg).expect("serialises");
            for (n, s) in (1..).zip(names) {
                if n != conn.get() {
                    assert!(!json.contains(s), "{s} sent to connection {}", conn.get());
                }
            }
        }
    }
}

#[test]
fn the_matrix_scene_is_deterministic() {
    let run = |seed| {
        let mut h = H::seeded(vec![matrix_scene(2, 2)], seed);
        for n in 1..=4 {
            h.join(n, &format!("P{n}"), 10.0 * n as f64);
        }
        let mut probes: Vec<_> = prepared(&h.log).into_iter().collect();
        probes.sort_by_key(|(id, _)| id.to_string());
        for (id, conns) in probes {
            h.at(500);
            answer(&mut h, &id, [conns[0], conns[1]], Some(30.0));
        }
        h.log
    };
    assert_eq!(run(7), run(7));
}

#[test]
fn the_oldest_waiter_s_group_wins_over_a_faster_one_without_them() {
    // A, B, C, D wait for a trio. A–B and A–C are slow (90), B–D and C–D fast (40), A–D
    // failed; then B–C (30) completes {A, B, C} (max 90) and {B, C, D} (max 40): the group
    // with the oldest waiter, A, is formed.
    let mut h = H::new(matrix_scene(3, 3));
    let mut all = Vec::new();
    for (n, s) in [(1, "A"), (2, "B"), (3, "C"), (4, "D")] {
        all.extend(h.join(n, s, 10.0));
    }
    for ((x, y), rtt) in [
        ((1, 2), 90.0),
        ((1, 3), 90.0),
        ((2, 4), 40.0),
        ((3, 4), 40.0),
        ((1, 4), 500.0),
    ] {
        let id = probe_between(&all, x, y).unwrap_or_else(|| panic!("{x}–{y} probed"));
        let out = answer(&mut h, &id, [x, y], Some(rtt));
        assert!(game(&out, x).is_none(), "no trio yet");
    }
    let bc = probe_between(&all, 2, 3).unwrap();
    answer(&mut h, &bc, [2, 3], Some(30.0));
    assert_eq!(h.game_players(), vec![sid("A"), sid("B"), sid("C")]);
}
