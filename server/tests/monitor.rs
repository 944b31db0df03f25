//! `/monitor` over real sockets: 404 without a configured token, 401 without the right one,
//! the page with it; and its Server-Sent Events stream during a scripted run over real
//! WebSockets (a probe accepted into a game, one participant waiting), whose snapshots follow
//! the run, equal the research record's counts and never carry a subject id.

mod common;

use std::time::Duration;

use common::*;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tokio::net::TcpStream;

const TOKEN: &str = "a-monitor-token-0123456789";

fn config() -> String {
    format!("{TEST_CONFIG}\n[server]\nmonitor_token = \"{TOKEN}\"\n")
}

#[tokio::test]
async fn monitor_needs_the_token_and_exists_only_with_one() {
    let plain = TestServer::start().await;
    for path in [
        format!("/monitor?token={TOKEN}"),
        format!("/monitor/events?token={TOKEN}"),
        "/monitor.html".to_owned(),
    ] {
        assert_eq!(
            plain.get(&path).await.0,
            404,
            "{path} without a token configured"
        );
    }

    let server = TestServer::with_config(&config()).await;
    for path in [
        "/monitor".to_owned(),
        "/monitor?token=".to_owned(),
        "/monitor?token=wrong-token-0123456789".to_owned(),
        format!("/monitor?token={TOKEN}x"),
        "/monitor/events".to_owned(),
        "/monitor/events?token=wrong-token-0123456789".to_owned(),
    ] {
        let (status, _, body) = server.get(&path).await;
        assert_eq!(status, 401, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains(TOKEN));
    }
    let (status, headers, body) = server.get(&format!("/monitor?token={TOKEN}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    let csp = header(&headers, "content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("/monitor.js"), "{page}");
    assert_eq!(
        server.get("/monitor.html").await.0,
        404,
        "only /monitor serves it"
    );
    let (status, _, script) = server.get("/monitor.js").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&script).contains("EventSource"));
}

/// An open `GET /monitor/events` and what it has sent so far.
struct Stream {
    body: hyper::body::Incoming,
    text: String,
    _driver: tokio::task::JoinHandle<()>,
    /// Every byte of data received, to check what never appears.
    seen: String,
}

impl Stream {
    async fn open(server: &TestServer) -> Stream {
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::get(format!("/monitor/events?token={TOKEN}"))
            .header(hyper::header::HOST, server.addr.to_string())
            .body(http_body_util::Empty::<&'static [u8]>::new())
            .unwrap();
        let response = tokio::time::timeout(RECV_TIMEOUT, sender.send_request(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Stream {
            body: response.into_body(),
            text: String::new(),
            _driver: driver,
            seen: String::new(),
        }
    }

    /// The next `snapshot` event's data.
    async fn snapshot(&mut self) -> Value {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let event: String = self.text.drain(..end + 2).collect();
                let mut name = "";
                let mut data = String::new();
                for line in event.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if name == "snapshot" {
                    return serde_json::from_str(&data).expect("snapshot JSON");
                }
                continue;
            }
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.body.frame())
                .await
                .expect("a snapshot within the timeout")
                .expect("the stream is open")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                let chunk = String::from_utf8_lossy(&data).into_owned();
                self.seen.push_str(&chunk);
                self.text.push_str(&chunk);
            }
        }
    }

    /// The first snapshot whose scene `scene` satisfies `done`.
    async fn until(&mut self, scene: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            let snap = self.snapshot().await;
            let s = scene_of(&snap, scene);
            if done(&s) {
                return snap;
            }
            assert!(tokio::time::Instant::now() < deadline, "never came: {s}");
        }
    }
}

fn scene_of(snap: &Value, scene: &str) -> Value {
    snap["scenes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scene_id"] == scene)
        .cloned()
        .unwrap()
}

fn count(server: &TestServer, scene: &str, event: &str) -> u64 {
    server
        .events(scene)
        .iter()
        .filter(|l| l["event"] == event)
        .count() as u64
}

#[tokio::test]
async fn the_stream_follows_a_scripted_run_and_matches_the_record() {
    let mut server = TestServer::with_config(&config()).await;
    let mut stream = Stream::open(&server).await;
    let first = stream.snapshot().await;
    assert_eq!(first["subject_ids"], false);
    let ids: Vec<&str> = first["scenes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scene_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["probe", "noprobe", "trio", "short", "hidden"]);

    // alice and bob: probed, accepted (20 ms), a game; carol waits.
    let (mut alice, _) = server.join("alice", "probe").await;
    let (mut bob, _) = server.join("bob", "probe").await;
    let id = alice.expect_probe_prepare().await.probe_session_id;
    bob.expect_probe_prepare().await;
    let snap = stream
        .until("probe", |s| s["probes"].as_array().unwrap().len() == 1)
        .await;
    let probe = &scene_of(&snap, "probe")["probes"][0];
    assert_eq!(probe["probe_session_id"], id.as_str());
    assert_eq!(probe["members"], serde_json::json!(["W-1", "W-2"]));
    alice.send(&ready(&id)).await;
    bob.send(&ready(&id)).await;
    alice.expect_probe_start().await;
    bob.expect_probe_start().await;
    alice.send(&result(&id, true, Some(20.0))).await;
    bob.send(&result(&id, true, Some(19.0))).await;
    let game = alice.expect_game_start().await;
    bob.expect_game_start().await;
    let (_carol, _) = server.join("carol", "probe").await;

    let snap = stream
        .until("probe", |s| {
            s["waiting_now"] == 1
                && s["waiting_count"] == 1
                && s["games"][0]["game_id"] != Value::Null
        })
        .await;
    let s = scene_of(&snap, "probe");
    assert_eq!(s["waiting"][0]["who"], "W-3");
    assert_eq!(s["probes"], serde_json::json!([]));
    assert_eq!(s["games"][0]["game_id"], game.game_id.as_str());
    assert_eq!(s["games"][0]["players"], serde_json::json!(["W-1", "W-2"]));
    // The record, counted: the same numbers.
    assert_eq!(
        s["probes_accepted"],
        count(&server, "probe", "probe_result")
    );
    assert_eq!(s["games_created"], count(&server, "probe", "game_created"));
    let rtt = &s["p2p_rtt_histogram"];
    let bounds: Vec<f64> = serde_json::from_value(rtt["bounds_ms"].clone()).unwrap();
    let counts: Vec<u64> = serde_json::from_value(rtt["counts"].clone()).unwrap();
    let at = bounds.iter().position(|b| *b == 20.0).unwrap();
    assert_eq!(counts[at], 1, "{rtt}");
    assert_eq!(counts.iter().sum::<u64>(), 1);
    let waits: Vec<u64> = serde_json::from_value(s["wait_histogram"]["counts"].clone()).unwrap();
    assert_eq!(waits.iter().sum::<u64>(), 2, "two waits ended in a game");
    let recent = snap["recent"].as_array().unwrap();
    assert!(recent.iter().any(|r| r["line"]["event"] == "game_created"));

    // Aliases only, everywhere in the stream.
    for who in ["alice", "bob", "carol"] {
        assert!(!stream.seen.contains(who), "{who} in the stream");
    }

    // Shutdown ends the stream (it does not hold the server open).
    let started = tokio::time::Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown waited on the stream"
    );
    let end = tokio::time::timeout(RECV_TIMEOUT, async {
        while let Some(Ok(_)) = stream.body.frame().await {}
    })
    .await;
    assert!(end.is_ok(), "the stream ended with the server");
}
