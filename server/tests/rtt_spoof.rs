//! The server RTT cannot be faked by answering pings early: over real WebSockets against the
//! real server, a client whose real path takes 150 ms and that also sends `pong`s ahead of
//! time for the `seq`s it predicts (the next integers, as a counter would give) ends with a
//! measured server RTT within 10 % of its real one, and two such clients are not grouped by a
//! scene whose `max_server_rtt_ms` their real RTTs fail.
//!
//! `cargo test -p pairlab-server --test rtt_spoof -- --nocapture` prints the measured RTTs
//! (BENCHMARKS.md, Hostile load).

mod common;

use std::time::{Duration, Instant};

use common::*;
use pairlab_shared::{ClientMessage, Pong, ServerMessage};
use serde_json::Value;

/// The cheater's real RTT floor: it sleeps this long before echoing a `ping` it has read.
const REAL_DELAY: Duration = Duration::from_millis(150);

/// One scene whose `max_server_rtt_ms` two clients with the real RTT fail (and two that
/// fooled the measurement would pass).
const CONFIG: &str = r#"
[[scene]]
id = "rtt"
group_size = 2
matchmaker = "latency_fifo"
max_server_rtt_ms = 200
waitroom_timeout_ms = 60000
"#;

/// The gap between the cheater's `pong`s for predicted `seq`s.
const PREDICT_EVERY: Duration = Duration::from_millis(5);
/// How many `seq`s after the latest one answered it predicts (the entry pings are 3).
const PREDICTED_AHEAD: u64 = 3;

/// Joins `scene` as `subject` and cheats until `until` passes: every `ping` read is echoed
/// [`REAL_DELAY`] later (its real path), and after each echo (and after `welcome`, as if `seq`
/// 0 had been answered) `pong`s for the next [`PREDICTED_AHEAD`] `seq`s follow,
/// [`PREDICT_EVERY`] apart, as if the server counted its pings and sent the next one as soon
/// as a `pong` arrives. Returns the messages other than `ping` it received.
async fn cheat(server: &TestServer, subject: &str, until: Instant) -> Vec<ServerMessage> {
    let mut c = server.connect().await;
    c.auto_pong = false;
    c.hello(subject, Some("rtt"), None).await;
    // (when, seq, whether it is an echo of a ping read), sent in time order.
    let mut pongs: Vec<(Instant, u64, bool)> = predictions(Instant::now(), 0);
    let mut seen = Vec::new();
    loop {
        let now = Instant::now();
        pongs.sort_by_key(|&(at, ..)| std::cmp::Reverse(at));
        while pongs.last().is_some_and(|&(at, ..)| at <= now) {
            let Some((_, seq, echo)) = pongs.pop() else {
                break;
            };
            c.send(&ClientMessage::Pong(Pong { seq })).await;
            if echo {
                pongs.extend(predictions(Instant::now(), seq));
            }
        }
        if now >= until {
            return seen;
        }
        let wake = pongs.iter().map(|&(at, ..)| at).fold(until, Instant::min);
        match c.recv_within(wake.saturating_duration_since(now)).await {
            Ok(Some(ServerMessage::Ping(ping))) => {
                pongs.push((Instant::now() + REAL_DELAY, ping.seq, true));
            }
            Ok(Some(other)) => seen.push(other),
            Ok(None) => {}
            Err(closed) => panic!("{subject}: closed ({closed:?})"),
        }
    }
}

/// `pong`s for the [`PREDICTED_AHEAD`] `seq`s after `answered`, [`PREDICT_EVERY`] apart from
/// `now` on.
fn predictions(now: Instant, answered: u64) -> Vec<(Instant, u64, bool)> {
    (1..=PREDICTED_AHEAD)
        .map(|k| {
            let gap = PREDICT_EVERY * u32::try_from(k).unwrap_or(u32::MAX);
            (now + gap, answered.saturating_add(k), false)
        })
        .collect()
}

fn server_rtt<'a>(events: &'a [Value], subject: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == "server_rtt" && e["subject_id"] == subject)
        .unwrap_or_else(|| panic!("no server_rtt for {subject}: {events:#?}"))
}

#[tokio::test]
async fn early_pongs_do_not_lower_the_measured_rtt() {
    let mut server = TestServer::with_config(CONFIG).await;
    // Long enough for entry (ENTRY_MAX_WAIT, two 150 ms samples) and for a proposal to follow.
    let until = Instant::now() + Duration::from_millis(1500);
    let (a, b) = tokio::join!(
        cheat(&server, "cheat-a", until),
        cheat(&server, "cheat-b", until)
    );
    server.stop().await;
    let events = server.events("rtt");
    let real_ms = REAL_DELAY.as_secs_f64() * 1000.0;
    let medians_ms: Vec<(&str, f64, &Value)> = ["cheat-a", "cheat-b"]
        .into_iter()
        .map(|subject| {
            let e = server_rtt(&events, subject);
            (subject, e["median_ms"].as_f64().expect("median_ms"), e)
        })
        .collect();
    for &(subject, median_ms, e) in &medians_ms {
        println!(
            "rtt_spoof: {subject}: real RTT >= {real_ms} ms (sleep before echo), \
             {PREDICTED_AHEAD} predicted pongs after each echo: measured median {median_ms:.2} ms, \
             samples {}",
            e["samples_ms"]
        );
    }
    for &(subject, median_ms, e) in &medians_ms {
        assert!(
            (median_ms - real_ms).abs() <= 0.1 * real_ms,
            "{subject}: measured {median_ms} ms, real {real_ms} ms: {e}"
        );
    }
    let proposals: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "match_proposed")
        .collect();
    assert!(
        proposals.is_empty(),
        "real RTTs sum to > max_server_rtt_ms 200, yet: {proposals:#?}"
    );
    for seen in [a, b] {
        assert!(
            seen.iter().all(|m| matches!(m, ServerMessage::Waitroom(_))),
            "{seen:?}"
        );
    }
}
