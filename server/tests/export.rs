//! `pairlab export`: a record written from the server's own event types (plus lines of kinds
//! this build does not write: `custom`, an unknown kind, a torn line) → the CSV tables, checked
//! row for row against the record lines, and `report.html` with its inline charts.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pairlab_server::core::research::{
    LeaveReason, PairProbe, PairRtt, PeerReport, ProbeFailure, ProbeReport, ResearchEvent,
    ResearchEventKind as Kind,
};
use pairlab_server::export::{export, ExportError, REPORT_FILE};
use pairlab_server::record::{events_of, format_line, RECORD_FILE};
use pairlab_shared::{
    ConnectionSetup, GameEndReason, GameId, IceRestartOutcome, IceRestartTrigger, ProbeSessionId,
    QualityLevel, SubjectId,
};
use serde_json::{json, Value};

fn sid(s: &str) -> SubjectId {
    SubjectId::parse(s).expect("a valid id")
}

fn conn(kind: &str, local: &str, relay_protocol: Option<&str>) -> pairlab_shared::ConnectionInfo {
    serde_json::from_value(json!({
        "connection_type": kind, "local_candidate_type": local,
        "remote_candidate_type": "host", "protocol": "udp", "relay_protocol": relay_protocol,
    }))
    .expect("a ConnectionInfo")
}

/// One scene's record being written: each line `step_ms` after the previous one.
struct Rec {
    scene: &'static str,
    at: SystemTime,
    text: String,
}

impl Rec {
    fn new(scene: &'static str) -> Self {
        Rec {
            scene,
            at: UNIX_EPOCH + Duration::from_millis(1_795_000_000_000),
            text: String::new(),
        }
    }
    fn put(&mut self, step_ms: u64, event: ResearchEvent) {
        self.at += Duration::from_millis(step_ms);
        self.text
            .push_str(&format_line(self.at, self.scene, &event));
        self.text.push('\n');
    }
    fn raw(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }
    fn save(&self, data_dir: &Path) {
        let dir = data_dir.join(self.scene);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(RECORD_FILE), &self.text).unwrap();
    }
}

fn report(success: bool, rtt_ms: Option<f64>, received_ms: f64) -> ProbeReport {
    ProbeReport {
        success,
        rtt_ms,
        samples_ms: rtt_ms
            .map(|r| vec![r - 1.0, r, r + 1.0])
            .unwrap_or_default(),
        stats_rtt_ms: rtt_ms.map(|r| r - 2.0),
        received_ms,
        connection: None,
    }
}

/// Scene `s1`: a probed pair that plays a game, a rejected pair, a waitroom timeout, a custom
/// event, an unknown kind and a torn line. Scene `s2`: a participant who drops and never
/// comes back.
fn fixture(data_dir: &Path) {
    let (a, b, c, d, e) = (sid("a"), sid("b"), sid("c"), sid("d"), sid("e"));
    let g1 = GameId::from_string("g1");
    let mut s1 = Rec::new("s1");
    s1.put(
        0,
        ResearchEvent::ServerStarted {
            version: "0.1.0",
            config_sha256: "00".into(),
        },
    );
    for (who, resumed) in [
        (&a, false),
        (&b, false),
        (&c, false),
        (&d, false),
        (&e, false),
    ] {
        s1.put(
            100,
            ResearchEvent::ParticipantJoined {
                subject_id: who.clone(),
                resumed,
                recruiter: None,
            },
        );
        s1.put(
            50,
            ResearchEvent::ServerRtt {
                subject_id: who.clone(),
                median_ms: 20.0,
                samples_ms: vec![19.0, 20.0, 21.5],
            },
        );
    }
    s1.put(
        10,
        ResearchEvent::ParticipantJoined {
            subject_id: a.clone(),
            resumed: true,
            recruiter: None,
        },
    );
    s1.put(
        10,
        ResearchEvent::MatchProposed {
            members: vec![a.clone(), b.clone()],
            server_rtts_ms: vec![Some(20.0), None],
            matchmaker: "latency_fifo",
            probe: true,
        },
    );
    let p1 = ProbeSessionId::from_string("p1");
    s1.put(
        10,
        ResearchEvent::ProbeStarted {
            probe_session_id: p1.clone(),
            members: [a.clone(), b.clone()],
            timeout_ms: 10_000,
        },
    );
    s1.put(
        800,
        ResearchEvent::ProbeResult {
            probe_session_id: p1,
            members: [a.clone(), b.clone()],
            reports: [
                Some(ProbeReport {
                    connection: Some(conn("relay", "relay", Some("tcp"))),
                    ..report(true, Some(40.0), 700.0)
                }),
                Some(report(true, Some(38.5), 790.0)),
            ],
            accepted: true,
            rtt_ms: Some(40.0),
            max_p2p_rtt_ms: 150.0,
            reason: None,
            ready_ms: Some(120.0),
            duration_ms: 800.0,
        },
    );
    s1.put(
        1,
        ResearchEvent::GameCreated {
            game_id: g1.clone(),
            players: vec![a.clone(), b.clone()],
            p2p_rtts_ms: vec![PairRtt {
                members: [a.clone(), b.clone()],
                rtt_ms: 40.0,
            }],
            probes: vec![PairProbe {
                members: [a.clone(), b.clone()],
                probe_session_id: ProbeSessionId::from_string("p1"),
                handover: true,
            }],
        },
    );
    let p2 = ProbeSessionId::from_string("p2");
    s1.put(
        5,
        ResearchEvent::ProbeStarted {
            probe_session_id: p2.clone(),
            members: [d.clone(), e.clone()],
            timeout_ms: 10_000,
        },
    );
    for (who, peer, kind, local, relay, setup, same_path) in [
        (
            &a,
            &b,
            "direct",
            "host",
            None,
            Some(ConnectionSetup::Handover),
            Some(true),
        ),
        (&b, &a, "relay", "relay", Some("udp"), None, None),
    ] {
        s1.put(
            300,
            ResearchEvent::P2pConnectionType {
                game_id: g1.clone(),
                subject_id: who.clone(),
                peer_subject_id: peer.clone(),
                connection: conn(kind, local, relay),
                connect_ms: Some(250.0),
                setup,
                same_path_as_probe: same_path,
            },
        );
    }
    s1.put(
        100,
        ResearchEvent::ProbeResult {
            probe_session_id: p2,
            members: [d.clone(), e.clone()],
            reports: [Some(report(true, Some(300.0), 900.0)), None],
            accepted: false,
            rtt_ms: Some(300.0),
            max_p2p_rtt_ms: 150.0,
            reason: Some(ProbeFailure::RttTooHigh),
            ready_ms: None,
            duration_ms: 1_500.0,
        },
    );
    s1.put(
        1,
        ResearchEvent::MatchRejected {
            members: vec![d.clone(), e.clone()],
            reason: ProbeFailure::RttTooHigh,
            failed_pairs: vec![[d.clone(), e.clone()]],
        },
    );
    s1.put(
        100,
        ResearchEvent::P2pQuality {
            game_id: g1.clone(),
            subject_id: a.clone(),
            peer_subject_id: b.clone(),
            level: QualityLevel::Warning,
            rtt_ms: Some(180.0),
        },
    );
    s1.put(
        100,
        ResearchEvent::P2pIceRestart {
            game_id: g1.clone(),
            subject_id: b.clone(),
            peer_subject_id: a.clone(),
            attempt: 1,
            trigger: IceRestartTrigger::Failed,
            outcome: IceRestartOutcome::Succeeded,
            duration_ms: Some(900.0),
        },
    );
    let metrics = serde_json::from_value(json!({
        "peer_index": 1, "inputs_received": 598,
        "connection": {"connection_type": "direct", "local_candidate_type": "host",
                       "remote_candidate_type": "host", "protocol": "udp", "relay_protocol": null},
        "rtt_ms": {"min": 30.0, "median": 41.5, "max": 90.0, "samples": 60},
        "quality_changes": [{"level": "warning", "at_ms": 1200.0}],
        "ice_restarts": 1, "setup": "fresh", "same_path_as_probe": false,
    }))
    .expect("PeerMetrics");
    s1.put(
        5_000,
        ResearchEvent::EpisodeSummary {
            game_id: g1.clone(),
            subject_id: a.clone(),
            episode: 1,
            frames: 600,
            inputs_sent: 600,
            peers: vec![PeerReport {
                peer_subject_id: b.clone(),
                metrics,
            }],
            hidden_count: 2,
            hidden_ms: 1500.0,
        },
    );
    s1.raw(
        r#"{"ts":"2026-11-18T11:06:50.000Z","event":"custom","scene_id":"s1","subject_id":"a","game_id":"g1","player_index":0,"name":"trial_done","fields":{"score":3,"choice":"rock, \"paper\""}}"#,
    );
    s1.raw(r#"{"ts":"2026-11-18T11:06:50.001Z","event":"from_the_future","scene_id":"s1"}"#);
    s1.put(
        10,
        ResearchEvent::GameEnded {
            game_id: g1,
            reason: GameEndReason::PeerLeft.into(),
            subject_id: b.clone(),
        },
    );
    s1.put(
        1,
        ResearchEvent::ParticipantLeft {
            subject_id: b,
            reason: LeaveReason::Leave,
        },
    );
    s1.put(
        1,
        ResearchEvent::WaitroomTimeout {
            subject_id: c.clone(),
            waited_ms: 9_000.0,
        },
    );
    s1.put(
        1,
        ResearchEvent::P2pConnectionFailed {
            game_id: GameId::from_string("g1"),
            subject_id: a,
            peer_subject_id: sid("b"),
            attempts: 3,
        },
    );
    s1.raw(r#"{"ts":"2026-11-18T11:0"#);
    s1.save(data_dir);

    let mut s2 = Rec::new("s2");
    s2.put(
        0,
        ResearchEvent::ParticipantJoined {
            subject_id: sid("x"),
            resumed: false,
            recruiter: None,
        },
    );
    s2.put(
        10,
        ResearchEvent::ParticipantDropped {
            subject_id: sid("x"),
            reconnect_grace_ms: 5_000,
        },
    );
    s2.put(
        5_000,
        ResearchEvent::ParticipantLeft {
            subject_id: sid("x"),
            reason: LeaveReason::GraceExpired,
        },
    );
    s2.save(data_dir);
}

/// A CSV table as its header and rows of column → value.
fn table(out: &Path, name: &str) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let mut reader = csv::Reader::from_path(out.join(format!("{name}.csv")))
        .unwrap_or_else(|e| panic!("{name}.csv: {e}"));
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            header
                .iter()
                .cloned()
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect();
    (header, rows)
}

/// The record lines of both scenes, s1 then s2, parsed (unparseable lines left out).
fn record(data_dir: &Path) -> Vec<Value> {
    ["s1", "s2"]
        .iter()
        .flat_map(|s| {
            std::fs::read_to_string(data_dir.join(s).join(RECORD_FILE))
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// A JSON value as the CSV writes it: strings bare, numbers in Rust's float/int form, `null`
/// empty.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap();
            if f.fract() == 0.0 {
                format!("{f:.1}")
            } else {
                f.to_string()
            }
        }
        other => other.to_string(),
    }
}

fn check(row: &HashMap<String, String>, column: &str, want: impl Into<String>) {
    assert_eq!(row[column], want.into(), "column {column} of {row:?}");
}

#[test]
fn tables_match_the_record_row_for_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fixture(&data);
    let out = dir.path().join("out");
    let summary = export(&data, &out).expect("export");
    assert_eq!(summary.scenes, ["s1", "s2"]);
    assert_eq!(summary.unreadable_lines, 1, "the torn line");
    assert_eq!(
        summary.unknown_events.get("from_the_future"),
        Some(&1),
        "{summary:?}"
    );
    let lines = record(&data);

    // server_rtts: one row per server_rtt line, in order.
    let (_, rows) = table(&out, "server_rtts");
    let want = events_of(&lines, Kind::ServerRtt);
    assert_eq!(rows.len(), want.len());
    for (row, line) in rows.iter().zip(&want) {
        for col in ["ts", "scene_id", "subject_id", "median_ms"] {
            check(row, col, cell(&line[col]));
        }
        let samples = line["samples_ms"].as_array().unwrap();
        check(row, "samples", samples.len().to_string());
        let parsed: Vec<f64> = serde_json::from_str(&row["samples_ms"]).unwrap();
        assert_eq!(parsed, [19.0, 20.0, 21.5]);
    }

    // probes: one row per probe, result and reports joined to the start.
    let (_, rows) = table(&out, "probes");
    let results = events_of(&lines, Kind::ProbeResult);
    let starts = events_of(&lines, Kind::ProbeStarted);
    assert_eq!(rows.len(), starts.len());
    assert_eq!(rows.len(), results.len());
    for (row, start) in rows.iter().zip(&starts) {
        let id = &start["probe_session_id"];
        let result = results
            .iter()
            .find(|r| &r["probe_session_id"] == id)
            .unwrap();
        check(row, "probe_session_id", cell(id));
        check(row, "started_ts", cell(&start["ts"]));
        check(row, "timeout_ms", cell(&start["timeout_ms"]));
        check(row, "decided_ts", cell(&result["ts"]));
        check(row, "initiator_subject_id", cell(&result["members"][0]));
        check(row, "responder_subject_id", cell(&result["members"][1]));
        for col in [
            "accepted",
            "reason",
            "rtt_ms",
            "max_p2p_rtt_ms",
            "ready_ms",
            "duration_ms",
        ] {
            check(row, col, cell(&result[col]));
        }
        for (i, who) in ["initiator", "responder"].iter().enumerate() {
            let rep = &result["reports"][i];
            check(
                row,
                &format!("{who}_reported"),
                (!rep.is_null()).to_string(),
            );
            check(row, &format!("{who}_success"), cell(&rep["success"]));
            check(row, &format!("{who}_rtt_ms"), cell(&rep["rtt_ms"]));
            check(
                row,
                &format!("{who}_stats_rtt_ms"),
                cell(&rep["stats_rtt_ms"]),
            );
            check(
                row,
                &format!("{who}_received_ms"),
                cell(&rep["received_ms"]),
            );
            let n = rep["samples_ms"].as_array().map(|s| s.len().to_string());
            check(row, &format!("{who}_samples"), n.unwrap_or_default());
            for field in [
                "connection_type",
                "local_candidate_type",
                "remote_candidate_type",
                "protocol",
                "relay_protocol",
            ] {
                let path = &rep["connection"][field];
                check(row, &format!("{who}_{field}"), cell(path));
            }
        }
    }
    // The measured path of a report that said it, and of one that did not.
    check(&rows[0], "initiator_connection_type", "relay");
    check(&rows[0], "initiator_local_candidate_type", "relay");
    check(&rows[0], "initiator_remote_candidate_type", "host");
    check(&rows[0], "initiator_protocol", "udp");
    check(&rows[0], "initiator_relay_protocol", "tcp");
    check(&rows[0], "responder_connection_type", "");
    check(&rows[0], "responder_relay_protocol", "");

    // games and their players.
    let (_, rows) = table(&out, "games");
    let created = events_of(&lines, Kind::GameCreated);
    assert_eq!(rows.len(), created.len());
    let g = &rows[0];
    check(g, "game_id", "g1");
    check(g, "created_ts", cell(&created[0]["ts"]));
    check(g, "players", "a b");
    check(g, "group_size", "2");
    check(g, "max_p2p_rtt_ms", "40.0");
    let ended = events_of(&lines, Kind::GameEnded);
    check(g, "ended_ts", cell(&ended[0]["ts"]));
    check(g, "end_reason", "peer_left");
    check(g, "ended_by_subject_id", "b");
    check(g, "duration_ms", "5916.0");
    check(g, "episode_summaries", "1");
    check(g, "connection_failures", "1");
    check(g, "handover_pairs", "1");
    let (_, players) = table(&out, "game_players");
    let got: Vec<(String, String)> = players
        .iter()
        .map(|r| (r["player_index"].clone(), r["subject_id"].clone()))
        .collect();
    assert_eq!(got, [("0".into(), "a".into()), ("1".into(), "b".into())]);

    // episodes and per-peer metrics.
    let (_, rows) = table(&out, "episodes");
    let summaries = events_of(&lines, Kind::EpisodeSummary);
    assert_eq!(rows.len(), summaries.len());
    for (row, line) in rows.iter().zip(&summaries) {
        for col in [
            "ts",
            "game_id",
            "subject_id",
            "episode",
            "frames",
            "inputs_sent",
        ] {
            check(row, col, cell(&line[col]));
        }
        check(row, "peers", "1");
    }
    let (_, rows) = table(&out, "peer_metrics");
    assert_eq!(rows.len(), 1);
    let peer = &summaries[0]["peers"][0];
    let row = &rows[0];
    check(row, "peer_subject_id", cell(&peer["peer_subject_id"]));
    check(row, "peer_index", cell(&peer["peer_index"]));
    check(row, "inputs_received", cell(&peer["inputs_received"]));
    check(row, "connection_type", "direct");
    check(row, "rtt_min_ms", cell(&peer["rtt_ms"]["min"]));
    check(row, "rtt_median_ms", cell(&peer["rtt_ms"]["median"]));
    check(row, "rtt_max_ms", cell(&peer["rtt_ms"]["max"]));
    check(row, "rtt_samples", cell(&peer["rtt_ms"]["samples"]));
    check(row, "quality_changes", "1");
    check(row, "ice_restarts", "1");
    check(row, "setup", "fresh");
    check(row, "same_path_as_probe", "false");

    // connections and connection events.
    let (_, rows) = table(&out, "connections");
    let types = events_of(&lines, Kind::P2pConnectionType);
    assert_eq!(rows.len(), types.len());
    for (row, line) in rows.iter().zip(&types) {
        for col in [
            "ts",
            "game_id",
            "subject_id",
            "peer_subject_id",
            "connection_type",
            "local_candidate_type",
            "remote_candidate_type",
            "protocol",
            "relay_protocol",
            "connect_ms",
            "setup",
            "same_path_as_probe",
        ] {
            check(row, col, cell(&line[col]));
        }
    }
    check(&rows[0], "setup", "handover");
    check(&rows[0], "same_path_as_probe", "true");
    check(&rows[1], "setup", "");
    check(&rows[1], "same_path_as_probe", "");
    let (_, rows) = table(&out, "connection_events");
    let events: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            matches!(
                pairlab_server::record::kind_of(l),
                Some(Kind::P2pQuality | Kind::P2pIceRestart | Kind::P2pConnectionFailed)
            )
        })
        .collect();
    assert_eq!(rows.len(), events.len());
    assert_eq!(rows.len(), 3);
    for (row, line) in rows.iter().zip(&events) {
        for col in ["ts", "event", "game_id", "subject_id", "peer_subject_id"] {
            check(row, col, cell(&line[col]));
        }
        for col in [
            "level",
            "rtt_ms",
            "attempt",
            "trigger",
            "outcome",
            "duration_ms",
            "attempts",
        ] {
            check(row, col, cell(line.get(col).unwrap_or(&Value::Null)));
        }
    }

    // custom events: the fields kept as JSON.
    let (_, rows) = table(&out, "custom");
    assert_eq!(rows.len(), 1);
    check(&rows[0], "name", "trial_done");
    check(&rows[0], "subject_id", "a");
    check(&rows[0], "player_index", "0");
    let fields: Value = serde_json::from_str(&rows[0]["fields"]).unwrap();
    assert_eq!(fields, json!({"score": 3, "choice": "rock, \"paper\""}));

    // participants: one row per participant and scene, how their part ended.
    let (_, rows) = table(&out, "participants");
    let who: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["scene_id"].as_str(), r["subject_id"].as_str()))
        .collect();
    assert_eq!(
        who,
        [
            ("s1", "a"),
            ("s1", "b"),
            ("s1", "c"),
            ("s1", "d"),
            ("s1", "e"),
            ("s2", "x")
        ]
    );
    let by = |s: &str| rows.iter().find(|r| r["subject_id"] == s).unwrap();
    let a = by("a");
    check(a, "joins", "2");
    check(a, "resumes", "1");
    check(a, "game_id", "g1");
    check(a, "player_index", "0");
    check(a, "probes", "1");
    check(a, "probes_rejected", "0");
    // a joined at +100 ms, the game was created at +1,581 ms.
    check(a, "wait_to_game_ms", "1481.0");
    check(a, "ending", "game_peer_left");
    check(by("b"), "left_reason", "leave");
    check(by("b"), "wait_to_game_ms", "1331.0");
    check(by("c"), "ending", "waitroom_timeout");
    check(by("c"), "waited_ms", "9000.0");
    check(by("d"), "probes_rejected", "1");
    check(by("d"), "ending", "unfinished");
    check(by("x"), "drops", "1");
    check(by("x"), "ending", "left_grace_expired");
    check(by("x"), "server_rtt_median_ms", "");

    // The report: one inline SVG per chart, nothing loaded from elsewhere.
    let html = std::fs::read_to_string(out.join(REPORT_FILE)).unwrap();
    assert_eq!(html.matches("<svg").count(), 5, "five charts");
    for id in [
        "p2p-rtt",
        "probe-duration",
        "wait-to-game",
        "endings",
        "connection-types",
    ] {
        assert!(html.contains(&format!("<section id=\"{id}\">")), "{id}");
    }
    for outside in ["<script", "<link", "src=", "url("] {
        assert!(
            !html.contains(outside),
            "the report loads nothing: {outside}"
        );
    }
    let section = |id: &str| {
        let start = html.find(&format!("<section id=\"{id}\">")).unwrap();
        let end = start + html[start..].find("</section>").unwrap();
        &html[start..end]
    };
    assert!(section("endings").contains("\ns1: game_peer_left\n"));
    assert!(section("endings").contains("\ns2: left_grace_expired\n"));
    assert!(section("connection-types").contains("\nrelay\n"));
    assert!(section("connection-types").contains("\ndirect\n"));
    assert!(html.contains("from_the_future × 1"));
    let report_entry = summary.files.iter().find(|(p, _)| p.ends_with(REPORT_FILE));
    assert_eq!(report_entry.map(|(_, n)| *n), Some(5));
}

/// Every column of every table is documented in docs/EXPORT.md, under its table's heading.
#[test]
fn every_column_is_in_the_dictionary() {
    let doc = include_str!("../../docs/EXPORT.md");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fixture(&data);
    let out = dir.path().join("out");
    let summary = export(&data, &out).expect("export");
    let mut tables = 0;
    for (path, _) in &summary.files {
        if path.extension().is_none_or(|e| e != "csv") {
            continue;
        }
        tables += 1;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let heading = format!("### `{name}`");
        let start = doc
            .find(&heading)
            .unwrap_or_else(|| panic!("docs/EXPORT.md has no {heading}"));
        let section = &doc[start + heading.len()..];
        let section = &section[..section.find("\n### ").unwrap_or(section.len())];
        let (header, _) = table(&out, name.trim_end_matches(".csv"));
        for column in header {
            assert!(
                section.contains(&format!("| `{column}` |")),
                "docs/EXPORT.md, {name}: column `{column}` is not documented"
            );
        }
    }
    assert_eq!(tables, 10);
}

#[test]
fn empty_tables_still_have_their_header_and_a_missing_record_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut rec = Rec::new("only");
    rec.put(
        0,
        ResearchEvent::ServerStarted {
            version: "0.1.0",
            config_sha256: "00".into(),
        },
    );
    rec.save(&data);
    let out = dir.path().join("out");
    let summary = export(&data, &out).expect("export");
    let (header, rows) = table(&out, "custom");
    assert!(rows.is_empty());
    assert_eq!(
        header,
        [
            "ts",
            "scene_id",
            "subject_id",
            "game_id",
            "player_index",
            "name",
            "fields"
        ]
    );
    let html = std::fs::read_to_string(out.join(REPORT_FILE)).unwrap();
    assert_eq!(html.matches("<svg").count(), 0);
    assert_eq!(html.matches("No data for this chart").count(), 5);
    assert_eq!(summary.unreadable_lines, 0);

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = export(&empty, &out).unwrap_err();
    assert!(matches!(err, ExportError::NoRecords(_)), "{err}");
    assert!(err.to_string().contains("events.jsonl"), "{err}");
    let err = export(&dir.path().join("nope"), &out).unwrap_err();
    assert!(matches!(err, ExportError::ReadDir { .. }), "{err}");
}
