//! `/metrics` over real sockets: the bearer token, and a scripted run over real WebSockets
//! (a game, a rejected probe, a waitroom timeout, a rate-limited flood, a leave) scraped while
//! it runs and at its end, parsed with a real Prometheus text-format parser: the gauges follow
//! the run, and every counter equals the count of its lines in the research record. The same
//! record, exported, gives tables whose row counts equal the counters.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures_util::SinkExt as _;
use pairlab_server::record::kind_of;
use prometheus_parse::{Scrape, Value as Sample};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use ResearchEventKind as Ev;

const TOKEN: &str = "a-metrics-token-0123456789";

fn config() -> String {
    format!("{TEST_CONFIG}\n[server]\nmetrics_token = \"{TOKEN}\"\n")
}

/// `GET /metrics` with the token, parsed.
async fn scrape(server: &TestServer) -> Scrape {
    let auth = format!("Bearer {TOKEN}");
    let (status, headers, body) =
        http_get(server.addr, "/metrics", &[("authorization", &auth)]).await;
    assert_eq!(status, 200);
    let content_type = header(&headers, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = String::from_utf8(body).expect("UTF-8");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// The value of the counter, gauge or untyped sample `metric` with exactly these labels.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && s.labels.len() == labels.len())
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => Some(v),
            _ => None,
        })
}

/// Every non-zero sample of `metric`, summed by the values of the labels `names` (in that
/// order; samples differing only in other labels add up).
fn series(scrape: &Scrape, metric: &str, names: &[&str]) -> Counts {
    let mut out = Counts::new();
    for s in scrape.samples.iter().filter(|s| s.metric == metric) {
        let key = names
            .iter()
            .map(|n| s.labels.get(n).unwrap_or_default().to_owned())
            .collect();
        if let Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) = s.value {
            if v != 0.0 {
                *out.entry(key).or_default() += v;
            }
        }
    }
    out
}

/// Counts by label values.
type Counts = HashMap<Vec<String>, f64>;

/// The same shape counted from record lines: `key` of each line of `kind` → count.
fn counted(
    lines: &[(String, Value)],
    kind: Ev,
    key: impl Fn(&str, &Value) -> Option<Vec<String>>,
) -> Counts {
    let mut out = HashMap::new();
    for (scene, line) in lines {
        if kind_of(line) == Some(kind) {
            if let Some(k) = key(scene, line) {
                *out.entry(k).or_default() += 1.0;
            }
        }
    }
    out
}

/// Every record line of every scene, with its scene.
fn record(server: &TestServer) -> Vec<(String, Value)> {
    server
        .config
        .scenes
        .iter()
        .flat_map(|s| {
            server
                .events(&s.id)
                .into_iter()
                .map(|e| (s.id.clone(), e))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits until every line of the record has been counted (the writer counts a line right after
/// writing it, so a reader of the file can be a moment ahead of the counters).
async fn settled(server: &TestServer) -> (Scrape, Vec<(String, Value)>) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let scrape = scrape(server).await;
        let lines = record(server);
        let written = value(&scrape, "pairlab_record_lines_written_total", &[]);
        let counted: f64 = series(&scrape, "pairlab_record_events_total", &["scene"])
            .values()
            .sum();
        if written == Some(lines.len() as f64) && counted == lines.len() as f64 {
            return (scrape, lines);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} lines in the record, {written:?} written and {counted} counted by /metrics",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A probe between two clients that have both had `probe_prepare`, to their results.
async fn probe(x: &mut Client, y: &mut Client, rtt_ms: f64) -> pairlab_shared::ProbeSessionId {
    let id = x.expect_probe_prepare().await.probe_session_id;
    y.expect_probe_prepare().await;
    x.send(&ready(&id)).await;
    y.send(&ready(&id)).await;
    x.expect_probe_start().await;
    y.expect_probe_start().await;
    x.send(&result(&id, true, Some(rtt_ms))).await;
    y.send(&result(&id, true, Some(rtt_ms - 1.0))).await;
    id
}

#[tokio::test]
async fn metrics_need_the_token_and_exist_only_with_one() {
    let server = TestServer::with_config(&config()).await;
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some(TOKEN),
        Some("Basic YTpi"),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        let (status, got, body) = http_get(server.addr, "/metrics", &headers).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(
            header(&got, "www-authenticate"),
            Some("Bearer realm=\"pairlab metrics\"")
        );
        assert!(!String::from_utf8_lossy(&body).contains("pairlab_"));
    }
    let ok = scrape(&server).await;
    assert_eq!(
        value(&ok, "pairlab_waiting_participants", &[("scene", "probe")]),
        Some(0.0)
    );

    let plain = TestServer::start().await;
    let auth = format!("Bearer {TOKEN}");
    let (status, _, _) = http_get(plain.addr, "/metrics", &[("authorization", &auth)]).await;
    assert_eq!(status, 404, "no token configured: no /metrics");
}

#[tokio::test]
async fn counters_equal_the_record_during_a_scripted_run() {
    let mut server = TestServer::with_config(&config()).await;

    // alice and bob: probed, accepted, a game.
    let (mut alice, _) = server.join("alice", "probe").await;
    let (mut bob, _) = server.join("bob", "probe").await;
    probe(&mut alice, &mut bob, 20.0).await;
    let game = alice.expect_game_start().await;
    bob.expect_game_start().await;

    // carol waits alone.
    let (mut carol, _) = server.join("carol", "probe").await;
    let s = scrape(&server).await;
    assert_eq!(
        value(&s, "pairlab_waiting_participants", &[("scene", "probe")]),
        Some(1.0)
    );
    assert_eq!(value(&s, "pairlab_websocket_connections", &[]), Some(3.0));
    assert_eq!(value(&s, "pairlab_participants", &[]), Some(3.0));

    // dave joins: a probe with carol is in flight, then rejected (80 ms > 50 ms).
    let (mut dave, _) = server.join("dave", "probe").await;
    let id = carol.expect_probe_prepare().await.probe_session_id;
    dave.expect_probe_prepare().await;
    let s = scrape(&server).await;
    assert_eq!(value(&s, "pairlab_probes_in_flight", &[]), Some(1.0));
    assert_eq!(value(&s, "pairlab_groups_probing", &[]), Some(1.0));
    assert_eq!(
        value(&s, "pairlab_waiting_participants", &[("scene", "probe")]),
        Some(0.0)
    );
    carol.send(&ready(&id)).await;
    dave.send(&ready(&id)).await;
    carol.expect_probe_start().await;
    dave.expect_probe_start().await;
    carol.send(&result(&id, true, Some(80.0))).await;
    dave.send(&result(&id, true, Some(79.0))).await;
    server.wait_for_event("probe", Ev::MatchRejected).await;

    // The game's connections: one direct, one relayed; an ICE restart.
    let game_id = game.game_id.as_str();
    alice
        .send_text(&format!(
            r#"{{"type":"p2p_connection_type","game_id":"{game_id}","peer_index":1,"connection_type":"direct","local_candidate_type":"host","remote_candidate_type":"host","protocol":"udp","relay_protocol":null,"connect_ms":120.0}}"#
        ))
        .await;
    bob.send_text(&format!(
        r#"{{"type":"p2p_connection_type","game_id":"{game_id}","peer_index":0,"connection_type":"relay","local_candidate_type":"relay","remote_candidate_type":"host","protocol":"udp","relay_protocol":"udp","connect_ms":300.0}}"#
    ))
    .await;
    alice
        .send_text(&format!(
            r#"{{"type":"p2p_ice_restart","game_id":"{game_id}","peer_index":1,"attempt":1,"trigger":"failed","outcome":"started","duration_ms":null}}"#
        ))
        .await;
    server.wait_for_event("probe", Ev::P2pIceRestart).await;

    // erin's waitroom time runs out (400 ms in `short`).
    let (mut erin, _) = server.join("erin", "short").await;
    let _ = erin.expect_closed().await;
    server.wait_for_event("short", Ev::WaitroomTimeout).await;

    // frank floods and is closed for the rate limit.
    let (mut frank, _) = server.join("frank", "noprobe").await;
    let flood = "{\"type\":\"pong\",\"seq\":999999}";
    for _ in 0..3000 {
        if frank.ws.feed(Message::text(flood)).await.is_err() {
            break;
        }
    }
    let _ = frank.ws.flush().await;
    let _ = frank.expect_closed().await;

    // bob leaves: the game ends for alice.
    bob.send(&pairlab_shared::ClientMessage::Leave).await;
    server.wait_for_event("probe", Ev::GameEnded).await;

    let (s, lines) = settled(&server).await;
    assert_eq!(
        value(&s, "pairlab_waiting_participants", &[("scene", "probe")]),
        Some(2.0),
        "carol and dave wait again (their pair failed)"
    );
    assert_eq!(
        value(&s, "pairlab_rate_limited_connections_total", &[]),
        Some(1.0)
    );
    for reason in ["total", "per_ip"] {
        assert_eq!(
            value(
                &s,
                "pairlab_refused_connections_total",
                &[("reason", reason)]
            ),
            Some(0.0)
        );
    }
    assert_eq!(value(&s, "pairlab_record_lines_lost_total", &[]), Some(0.0));

    // Every line by kind.
    let mut by_kind = Counts::new();
    for (scene, line) in &lines {
        let event = line["event"].as_str().unwrap().to_owned();
        *by_kind.entry(vec![scene.clone(), event]).or_default() += 1.0;
    }
    assert_eq!(
        series(&s, "pairlab_record_events_total", &["scene", "event"]),
        by_kind
    );

    // The research counters, each against its lines.
    let scene = |sc: &str, _: &Value| Some(vec![sc.to_owned()]);
    let field =
        |name: &'static str| move |sc: &str, l: &Value| Some(vec![sc.to_owned(), label(&l[name])]);
    let checks: Vec<(&str, Vec<&str>, Counts)> = vec![
        (
            "pairlab_participants_joined_total",
            vec!["scene", "resumed"],
            counted(&lines, Ev::ParticipantJoined, field("resumed")),
        ),
        (
            "pairlab_probes_started_total",
            vec!["scene"],
            counted(&lines, Ev::ProbeStarted, scene),
        ),
        (
            "pairlab_probes_accepted_total",
            vec!["scene"],
            counted(&lines, Ev::ProbeResult, |sc, l| {
                (l["accepted"] == true).then(|| vec![sc.to_owned()])
            }),
        ),
        (
            "pairlab_probes_rejected_total",
            vec!["scene", "reason"],
            counted(&lines, Ev::ProbeResult, |sc, l| {
                (l["accepted"] == false).then(|| vec![sc.to_owned(), label(&l["reason"])])
            }),
        ),
        (
            "pairlab_games_created_total",
            vec!["scene"],
            counted(&lines, Ev::GameCreated, scene),
        ),
        (
            "pairlab_games_ended_total",
            vec!["scene", "reason"],
            counted(&lines, Ev::GameEnded, field("reason")),
        ),
        (
            "pairlab_waitroom_timeouts_total",
            vec!["scene"],
            counted(&lines, Ev::WaitroomTimeout, scene),
        ),
        (
            "pairlab_participants_left_total",
            vec!["scene", "reason"],
            counted(&lines, Ev::ParticipantLeft, field("reason")),
        ),
        (
            "pairlab_p2p_connections_total",
            vec!["scene", "connection_type"],
            counted(&lines, Ev::P2pConnectionType, field("connection_type")),
        ),
        (
            "pairlab_ice_restarts_total",
            vec!["scene", "outcome"],
            counted(&lines, Ev::P2pIceRestart, field("outcome")),
        ),
    ];
    for (metric, labels, want) in checks {
        assert_eq!(series(&s, metric, &labels), want, "{metric}");
    }
    // What the run did, so the comparisons above are not between two empty maps.
    let get = |metric: &str, labels: &[(&str, &str)]| value(&s, metric, labels).unwrap_or(0.0);
    assert_eq!(
        get("pairlab_probes_accepted_total", &[("scene", "probe")]),
        1.0
    );
    assert_eq!(
        get(
            "pairlab_probes_rejected_total",
            &[("scene", "probe"), ("reason", "rtt_too_high")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "pairlab_games_ended_total",
            &[("scene", "probe"), ("reason", "peer_left")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "pairlab_p2p_connections_total",
            &[("scene", "probe"), ("connection_type", "relay")]
        ),
        1.0
    );
    assert_eq!(
        get("pairlab_waitroom_timeouts_total", &[("scene", "short")]),
        1.0
    );

    // The histograms: one observation per decided probe, summing its durations and RTTs.
    let results: Vec<&Value> = lines
        .iter()
        .filter(|(_, l)| kind_of(l) == Some(Ev::ProbeResult))
        .map(|(_, l)| l)
        .collect();
    for (metric, field) in [
        ("pairlab_probe_duration_seconds", "duration_ms"),
        ("pairlab_p2p_rtt_seconds", "rtt_ms"),
    ] {
        let labels = [("scene", "probe")];
        let count = value(&s, &format!("{metric}_count"), &labels);
        assert_eq!(count, Some(results.len() as f64), "{metric}");
        let sum = value(&s, &format!("{metric}_sum"), &labels).unwrap();
        let want: f64 = results
            .iter()
            .map(|r| r[field].as_f64().unwrap() / 1000.0)
            .sum();
        assert!((sum - want).abs() < 1e-9, "{metric}: {sum} vs {want}");
        let buckets = s
            .samples
            .iter()
            .find(|x| x.metric == metric && x.labels.get("scene") == Some("probe"))
            .map(|x| match &x.value {
                Sample::Histogram(b) => b.clone(),
                other => panic!("{metric} is not a histogram: {other:?}"),
            })
            .expect("histogram");
        let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
        assert_eq!(inf.count, results.len() as f64);
    }
    let rtt_buckets = s
        .samples
        .iter()
        .find(|x| x.metric == "pairlab_p2p_rtt_seconds")
        .map(|x| match &x.value {
            Sample::Histogram(b) => b.clone(),
            _ => unreachable!(),
        })
        .unwrap();
    let le = |bound: f64| {
        rtt_buckets
            .iter()
            .find(|b| (b.less_than - bound).abs() < 1e-12)
            .map(|b| b.count)
    };
    assert_eq!(le(0.02), Some(1.0), "the accepted probe: 20 ms");
    assert_eq!(le(0.075), Some(1.0));
    assert_eq!(le(0.1), Some(2.0), "the rejected probe: 80 ms");

    // The same record, exported: the tables' rows equal the counters.
    drop((alice, bob, carol, dave));
    server.stop().await;
    let out = tempfile::tempdir().unwrap();
    let summary = pairlab_server::export::export(server.data_dir.path(), out.path()).unwrap();
    assert_eq!(summary.unreadable_lines, 0);
    assert!(summary.unknown_events.is_empty(), "{summary:?}");
    let rows = |name: &str| {
        summary
            .files
            .iter()
            .find(|(p, _)| p.file_name().is_some_and(|f| f == name))
            .map(|(_, n)| *n as f64)
            .unwrap()
    };
    let total = |metric: &str| series(&s, metric, &["scene"]).values().sum::<f64>();
    assert_eq!(rows("probes.csv"), total("pairlab_probes_started_total"));
    assert_eq!(rows("games.csv"), total("pairlab_games_created_total"));
    assert_eq!(rows("connections.csv"), 2.0);
    assert_eq!(rows("participants.csv"), 6.0);
}

/// A JSON string's text, or the value's JSON form (`true`, `null`).
fn label(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
