//! End to end, the live monitor page: the real `pairlab` binary with a `monitor_token`, a
//! scripted load of protocol-speaking WebSocket clients (a pair probed into a game that
//! reports its connections, a pair whose probe stays in flight, a participant waiting alone,
//! and in a second scene a pair rejected for its RTT), and a real headless Chromium on
//! `/monitor?token=…`. What the page shows — the waiting counts, the probe in flight, the game
//! with its connection types and quality, the rejection and the RTT histogram — is read from
//! its DOM (the contract in `www/monitor.html`) and must match the research record. Without
//! the token: 401, and no subject id anywhere on the page.
//!
//! Leaves the server's log, the record and the Chromium profile in `target/e2e/monitor/` and a
//! screenshot in `target/e2e-screens/monitor.png`.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use pairlab_shared::ServerMessage;
use pairlab_tests::process::Wait;
use pairlab_tests::{
    http_get, must, screens_dir, wait_for_events, Browser, ChromeDriver, Server, WorkDir,
};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "monitor-e2e-token-0123456789";

/// `lab`: probed pairs (150 ms), probes that stay open long enough to be seen in flight;
/// `far`: the same threshold, for a rejected pair.
fn config() -> String {
    format!(
        r#"
[[scene]]
id = "lab"
group_size = 2
matchmaker = "fifo"
max_p2p_rtt_ms = 150
probe_timeout_ms = 60000
waitroom_timeout_ms = 120000

[[scene]]
id = "far"
group_size = 2
matchmaker = "fifo"
max_p2p_rtt_ms = 150
probe_timeout_ms = 60000
waitroom_timeout_ms = 120000

[[ice_servers]]
urls = ["stun:127.0.0.1:3478"]

[server]
monitor_token = "{TOKEN}"
"#
    )
}

/// How a scripted participant answers a probe.
#[derive(Clone, Copy)]
enum Probe {
    /// Ready at once, then a result with this RTT, ms.
    Answer(f64),
    /// Never ready: the probe stays in flight until its deadline.
    Hold,
}

/// A participant speaking the protocol: `hello`, `pong`s, its probe as `probe` says, and in a
/// game a `p2p_connection_type` per partner (player 0: direct, with a `p2p_quality` warning;
/// player 1: relay). Runs until aborted.
fn participant(port: u16, subject: &str, scene: &str, probe: Probe) -> JoinHandle<()> {
    let (subject, scene) = (subject.to_owned(), scene.to_owned());
    tokio::spawn(async move {
        let url = format!("ws://127.0.0.1:{port}/ws");
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("{subject}: connect: {e}"));
        let send = |v: Value| Message::text(v.to_string());
        let hello = json!({"type": "hello", "subject_id": subject, "scene_id": scene});
        ws.send(send(hello)).await.expect("send hello");
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else { continue };
            let Ok(msg) = serde_json::from_str::<ServerMessage>(&text) else {
                continue;
            };
            let replies = match (msg, probe) {
                (ServerMessage::Ping(p), _) => vec![json!({"type": "pong", "seq": p.seq})],
                (ServerMessage::ProbePrepare(p), Probe::Answer(_)) => vec![json!({
                    "type": "probe_ready", "probe_session_id": p.probe_session_id.as_str()
                })],
                (ServerMessage::ProbeStart(p), Probe::Answer(rtt_ms)) => vec![json!({
                    "type": "probe_result", "probe_session_id": p.probe_session_id.as_str(),
                    "success": true, "rtt_ms": rtt_ms, "samples_ms": [rtt_ms],
                    "stats_rtt_ms": rtt_ms
                })],
                (ServerMessage::GameStart(g), _) => {
                    let first = g.player_index == 0;
                    let kind = if first { "direct" } else { "relay" };
                    let mut out = Vec::new();
                    for peer in (0..g.player_count).filter(|&i| i != g.player_index) {
                        out.push(json!({
                            "type": "p2p_connection_type", "game_id": g.game_id.as_str(),
                            "peer_index": peer, "connection_type": kind,
                            "local_candidate_type": if first { "host" } else { "relay" },
                            "remote_candidate_type": "host", "protocol": "udp",
                            "relay_protocol": if first { Value::Null } else { json!("udp") },
                            "connect_ms": 40.0
                        }));
                        if first {
                            out.push(json!({
                                "type": "p2p_quality", "game_id": g.game_id.as_str(),
                                "peer_index": peer, "level": "warning", "rtt_ms": 182.0
                            }));
                        }
                    }
                    out
                }
                _ => Vec::new(),
            };
            for reply in replies {
                ws.send(send(reply)).await.expect("send");
            }
        }
    })
}

/// What the page shows, read from its DOM contract.
const READ_PAGE_JS: &str = r#"
const field = (sec, name) => sec.querySelector(`[data-field="${name}"]`);
const text = (sec, name) => { const e = field(sec, name); return e ? e.textContent : null; };
const bars = (sec, name) => Array.from(field(sec, name)?.querySelectorAll('.bar') ?? [])
  .map(b => ({ le: b.dataset.le, count: Number(b.dataset.count) }));
return {
  connected: document.body.dataset.connected,
  url: location.href,
  html: document.documentElement.outerHTML,
  scenes: Array.from(document.querySelectorAll('section.scene[data-scene]')).map(sec => ({
    id: sec.dataset.scene,
    waiting_now: text(sec, 'waiting-now'),
    waiting_count: text(sec, 'waiting-count'),
    waiting: Array.from(field(sec, 'waiting').children).map(li => li.textContent),
    probes_in_flight: text(sec, 'probes-in-flight'),
    probes: Array.from(field(sec, 'probes').children).map(li => li.dataset.probe),
    probes_accepted: text(sec, 'probes-accepted'),
    probes_rejected: text(sec, 'probes-rejected'),
    games_running: text(sec, 'games-running'),
    games: Array.from(field(sec, 'games').children)
      .map(li => ({ id: li.dataset.gameId, text: li.textContent })),
    rtt: bars(sec, 'rtt-histogram'),
    wait: bars(sec, 'wait-histogram'),
  })),
  recent: document.querySelectorAll('#recent li').length,
};
"#;

fn scene<'a>(page: &'a Value, id: &str) -> &'a Value {
    page["scenes"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or(&Value::Null)
}

/// The record's lines of `kind`.
fn lines<'a>(record: &'a [Value], kind: &str) -> Vec<&'a Value> {
    record.iter().filter(|l| l["event"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_page_shows_a_scripted_load_as_the_record_has_it() {
    let work = must(WorkDir::fresh("monitor"));
    let server = must(Server::start(&work, &config()).await);
    let port = server.port();

    // Without the token (or with a wrong one): 401, and nothing of the state.
    for path in [
        "/monitor",
        "/monitor?token=not-the-token-0123456789",
        "/monitor/events",
    ] {
        let (status, body) = must(http_get(port, path).await);
        assert_eq!(status, 401, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("scene"), "{path}");
    }

    let driver = must(ChromeDriver::start(&work).await);
    let browser = must(Browser::open(&driver, &work, "monitor").await);
    must(
        browser
            .goto(&server.url(&format!("/monitor?token={TOKEN}")))
            .await,
    );

    // The scripted load, each step waited for in the record.
    let lab = server.events_path("lab");
    let far = server.events_path("far");
    let wait = |path, what: &'static str, kind: &'static str, n: usize| {
        wait_for_events(path, what, Duration::from_secs(10), move |ev| {
            ev.iter().filter(|l| l["event"] == kind).count() >= n
        })
    };
    let mut clients = vec![
        participant(port, "alice-111", "lab", Probe::Answer(30.0)),
        participant(port, "bob-222", "lab", Probe::Answer(28.0)),
    ];
    must(wait(&lab, "the game", "p2p_quality", 1).await);
    clients.push(participant(port, "carol-333", "lab", Probe::Hold));
    clients.push(participant(port, "dave-444", "lab", Probe::Hold));
    must(wait(&lab, "the held probe", "probe_started", 2).await);
    clients.push(participant(port, "erin-555", "lab", Probe::Hold));
    must(wait(&lab, "erin waiting", "server_rtt", 5).await);
    clients.push(participant(port, "frank-666", "far", Probe::Answer(400.0)));
    clients.push(participant(port, "grace-777", "far", Probe::Answer(390.0)));
    must(wait(&far, "the rejection", "match_rejected", 1).await);
    let lab_record = must(wait(&lab, "both connection types", "p2p_connection_type", 2).await);
    let far_record = must(pairlab_tests::read_events(&far));

    // The page, once it shows the whole load (it is pushed every second).
    let ready = |page: &Value| {
        let (l, f) = (scene(page, "lab"), scene(page, "far"));
        page["connected"] == "true"
            && l["waiting_count"] == "1"
            && l["probes_in_flight"] == "1"
            && l["games"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("relay") && t.contains("warning"))
            && f["waiting_count"] == "2"
            && f["probes_rejected"] != "none"
    };
    let waiting = Wait::new("the monitor page to show the load", Duration::from_secs(10));
    let page = loop {
        let page = must(browser.execute(READ_PAGE_JS, vec![]).await);
        if ready(&page) {
            break page;
        }
        must(waiting.tick(scene(&page, "lab").to_string()).await);
    };
    let screenshot = screens_dir().join("monitor.png");
    if let Err(e) = browser.screenshot(&screenshot).await {
        println!("[monitor] no screenshot: {e}");
    }
    let (l, f) = (scene(&page, "lab"), scene(&page, "far"));
    println!("[monitor] lab as the page shows it: {l}");
    println!("[monitor] far as the page shows it: {f}");

    // The token is gone from the address bar; no subject id is on the page.
    assert!(
        !page["url"].as_str().unwrap_or("").contains(TOKEN),
        "{}",
        page["url"]
    );
    let html = page["html"].as_str().unwrap_or("");
    for who in ["alice", "bob", "carol", "dave", "erin", "frank", "grace"] {
        assert!(!html.contains(who), "{who} on the monitor page");
    }

    // Waiting: the record's waitroom entries minus those matched or probing.
    assert_eq!(l["waiting_now"], "1", "the core's count");
    assert_eq!(l["waiting"].as_array().map(Vec::len), Some(1));
    assert!(
        l["waiting"][0].as_str().unwrap_or("").starts_with("W-"),
        "{l}"
    );
    assert_eq!(f["waiting_now"], "2");
    assert_eq!(lines(&far_record, "server_rtt").len(), 2);

    // The probe in flight is the record's started probe without a result.
    let decided: Vec<&Value> = lines(&lab_record, "probe_result")
        .iter()
        .map(|l| &l["probe_session_id"])
        .collect();
    let open: Vec<&Value> = lines(&lab_record, "probe_started")
        .into_iter()
        .map(|l| &l["probe_session_id"])
        .filter(|id| !decided.contains(id))
        .collect();
    assert_eq!(open.len(), 1);
    assert_eq!(l["probes"][0], *open[0]);

    // Accepted / rejected with the reason, as the record decided.
    let accepted = lines(&lab_record, "probe_result")
        .iter()
        .filter(|r| r["accepted"] == true)
        .count();
    assert_eq!(l["probes_accepted"], accepted.to_string());
    let rejected = lines(&far_record, "probe_result");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["reason"], "rtt_too_high");
    assert_eq!(f["probes_rejected"], "rtt_too_high: 1");

    // The game: the record's game, with the connection types and the quality reported.
    let created = lines(&lab_record, "game_created");
    assert_eq!(created.len(), 1);
    assert_eq!(l["games_running"], "1");
    assert_eq!(l["games"][0]["id"], created[0]["game_id"]);
    let game_text = l["games"][0]["text"].as_str().unwrap_or("");
    assert!(game_text.contains("direct warning 182 ms"), "{game_text}");
    assert!(game_text.contains("relay"), "{game_text}");

    // The RTT histogram: one count per decided probe, in the bucket of its rtt_ms.
    for (view, record) in [(l, &lab_record), (f, &far_record)] {
        let bars = view["rtt"].as_array().cloned().unwrap_or_default();
        let total: u64 = bars.iter().filter_map(|b| b["count"].as_u64()).sum();
        let results = lines(record, "probe_result");
        assert_eq!(total as usize, results.len(), "{view}");
        for r in results {
            let rtt = r["rtt_ms"].as_f64().expect("a decided RTT");
            let bucket = bars
                .iter()
                .find(|b| {
                    b["le"]
                        .as_str()
                        .and_then(|le| le.parse::<f64>().ok())
                        .is_none_or(|le| rtt <= le)
                })
                .expect("a bucket");
            assert!(bucket["count"].as_u64() >= Some(1), "{rtt} ms in {bars:?}");
        }
    }
    // Wait times: the two players of the game.
    let waits: u64 = l["wait"]
        .as_array()
        .map(|b| b.iter().filter_map(|b| b["count"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(waits, 2);
    assert!(page["recent"].as_u64() >= Some(10), "{}", page["recent"]);

    for c in clients {
        c.abort();
    }
    if let Err(e) = browser.close().await {
        println!("[monitor] closing the browser: {e}");
    }
    server.stop().await;
}
