//! End to end, `pairlab export`'s report: the built `pairlab` binary exports a record (the
//! server's own event types, written as the record writer writes them), and a real headless
//! Chromium opens `report.html` from disk — no server, no network: every chart renders as an
//! SVG of its full size with its bars or points, and the page loads nothing from elsewhere.
//!
//! (That the CSV tables match a record row for row, and that a record written by a running
//! server exports, is `server/tests/export.rs` and `server/tests/metrics.rs`.) Leaves the
//! record, the export and the Chromium profile in `target/e2e/export-report/` and a
//! screenshot in `target/e2e-screens/export-report.png`.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use pairlab_server::core::research::{PairRtt, ProbeFailure, ProbeReport, ResearchEvent};
use pairlab_server::record::{format_line, RECORD_FILE};
use pairlab_shared::{GameEndReason, GameId, ProbeSessionId, SubjectId};
use pairlab_tests::{must, pairlab_bin, screens_dir, Browser, ChromeDriver, WorkDir};
use serde_json::{json, Value};

/// Probed pairs in the record; every third is rejected.
const PAIRS: usize = 9;

fn sid(s: &str) -> SubjectId {
    SubjectId::parse(s).expect("a valid id")
}

/// A scene `lab` of [`PAIRS`] probed pairs (RTTs 12…140 ms, rejected ones at 300 ms), a game
/// for each accepted pair with one direct and one relayed connection, and one waitroom timeout.
fn write_record(data_dir: &Path) {
    let mut at = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let mut text = String::new();
    let mut put = |step_ms: u64, event: ResearchEvent| {
        at += Duration::from_millis(step_ms);
        text.push_str(&format_line(at, "lab", &event));
        text.push('\n');
    };
    for i in 0..PAIRS {
        let (a, b) = (sid(&format!("p{i}a")), sid(&format!("p{i}b")));
        for who in [&a, &b] {
            put(
                200,
                ResearchEvent::ParticipantJoined {
                    subject_id: who.clone(),
                    resumed: false,
                    recruiter: None,
                },
            );
        }
        let accepted = i % 3 != 2;
        let rtt_ms = if accepted {
            12.0 + 16.0 * i as f64
        } else {
            300.0
        };
        let duration_ms = 60.0 + 4.0 * rtt_ms;
        let probe_session_id = ProbeSessionId::from_string(format!("probe-{i}"));
        put(
            10,
            ResearchEvent::ProbeStarted {
                probe_session_id: probe_session_id.clone(),
                members: [a.clone(), b.clone()],
                timeout_ms: 10_000,
            },
        );
        let report = |rtt: f64| ProbeReport {
            success: true,
            rtt_ms: Some(rtt),
            samples_ms: vec![rtt; 10],
            stats_rtt_ms: Some(rtt),
            received_ms: duration_ms,
            connection: None,
        };
        put(
            duration_ms as u64,
            ResearchEvent::ProbeResult {
                probe_session_id,
                members: [a.clone(), b.clone()],
                reports: [Some(report(rtt_ms)), Some(report(rtt_ms - 1.0))],
                accepted,
                rtt_ms: Some(rtt_ms),
                max_p2p_rtt_ms: 150.0,
                reason: (!accepted).then_some(ProbeFailure::RttTooHigh),
                ready_ms: Some(40.0),
                duration_ms,
            },
        );
        if !accepted {
            continue;
        }
        let game_id = GameId::from_string(format!("game-{i}"));
        put(
            1,
            ResearchEvent::GameCreated {
                game_id: game_id.clone(),
                players: vec![a.clone(), b.clone()],
                p2p_rtts_ms: vec![PairRtt {
                    members: [a.clone(), b.clone()],
                    rtt_ms,
                }],
                probes: Vec::new(),
            },
        );
        for (who, peer, kind) in [(&a, &b, "direct"), (&b, &a, "relay")] {
            let connection = serde_json::from_value(json!({
                "connection_type": kind, "local_candidate_type": if kind == "relay" { "relay" } else { "host" },
                "remote_candidate_type": "host", "protocol": "udp",
                "relay_protocol": if kind == "relay" { Some("udp") } else { None },
            }))
            .expect("a ConnectionInfo");
            put(
                150,
                ResearchEvent::P2pConnectionType {
                    game_id: game_id.clone(),
                    subject_id: who.clone(),
                    peer_subject_id: peer.clone(),
                    connection,
                    connect_ms: Some(150.0),
                    setup: None,
                    same_path_as_probe: None,
                },
            );
        }
        put(
            30_000,
            ResearchEvent::GameEnded {
                game_id,
                reason: GameEndReason::PeerLeft.into(),
                subject_id: b.clone(),
            },
        );
    }
    put(
        1,
        ResearchEvent::ParticipantJoined {
            subject_id: sid("alone"),
            resumed: false,
            recruiter: None,
        },
    );
    put(
        60_000,
        ResearchEvent::WaitroomTimeout {
            subject_id: sid("alone"),
            waited_ms: 60_000.0,
        },
    );
    let dir = data_dir.join("lab");
    std::fs::create_dir_all(&dir).expect("create the scene folder");
    std::fs::write(dir.join(RECORD_FILE), text).expect("write the record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_opens_offline_in_chromium_with_every_chart() {
    let work = must(WorkDir::fresh("export-report"));
    let data = work.join("data");
    write_record(&data);
    let out = work.join("export");
    let bin = must(pairlab_bin());
    let run = std::process::Command::new(&bin)
        .arg("export")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run pairlab export");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{} export: {stdout}{}",
        bin.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("report.html: 5 chart(s)"), "{stdout}");
    println!(
        "[export-report] {}",
        stdout.trim_end().replace('\n', "\n[export-report] ")
    );

    let driver = must(ChromeDriver::start(&work).await);
    let browser = must(Browser::open(&driver, &work, "report").await);
    let report = out.join("report.html");
    must(browser.goto(&format!("file://{}", report.display())).await);
    let charts = must(
        browser
            .execute(
                r#"return Array.from(document.querySelectorAll('section > figure > svg')).map(s => {
                     const r = s.getBoundingClientRect();
                     return { id: s.closest('section').id, width: r.width, height: r.height,
                              rects: s.querySelectorAll('rect').length,
                              circles: s.querySelectorAll('circle').length,
                              texts: s.querySelectorAll('text').length };
                   });"#,
                vec![],
            )
            .await,
    );
    let loaded = must(
        browser
            .execute(
                "return performance.getEntriesByType('resource').map(e => e.name);",
                vec![],
            )
            .await,
    );
    let screenshot = screens_dir().join("export-report.png");
    if let Err(e) = browser.screenshot(&screenshot).await {
        println!("[export-report] no screenshot: {e}");
    }
    if let Err(e) = browser.close().await {
        println!("[export-report] closing the browser: {e}");
    }
    println!("[export-report] charts as Chromium laid them out: {charts}");

    let charts = charts.as_array().expect("an array of charts");
    let ids: Vec<&str> = charts.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(
        ids,
        [
            "p2p-rtt",
            "probe-duration",
            "wait-to-game",
            "endings",
            "connection-types"
        ]
    );
    let num = |c: &Value, k: &str| c[k].as_f64().unwrap_or(0.0);
    for c in charts {
        assert!(num(c, "width") >= 300.0 && num(c, "height") >= 150.0, "{c}");
        assert!(num(c, "texts") >= 5.0, "axis labels and a caption: {c}");
    }
    // One background rect per chart plus the drawn bars (histograms, bar charts); the
    // scatter draws one circle per decided probe plus two in its legend.
    let by = |id: &str| charts.iter().find(|c| c["id"] == id).expect("the chart");
    assert!(num(by("p2p-rtt"), "rects") >= 3.0, "{}", by("p2p-rtt"));
    assert_eq!(num(by("probe-duration"), "circles"), PAIRS as f64 + 2.0);
    assert!(num(by("endings"), "rects") >= 3.0, "{}", by("endings"));
    assert!(
        num(by("connection-types"), "rects") >= 3.0,
        "direct and relay: {}",
        by("connection-types")
    );
    assert_eq!(loaded, json!([]), "the report loads nothing");
}
