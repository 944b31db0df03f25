//! End to end: the built `pairlab` binary and two separate headless Chromium processes (two
//! WebDriver sessions of one chromedriver) opening its page, as two participants would.
//!
//! - [`accepted_probe_starts_one_game_on_both_pages`]: scene `latency_fifo`,
//!   `max_server_rtt_ms = 200`, `max_p2p_rtt_ms = 150`: both pages reach `data-state=game` with
//!   the same game id and different player indexes; the research record holds the accepted
//!   probe with both reports' RTTs and the game.
//! - [`rejected_probe_leaves_both_to_time_out`]: `max_p2p_rtt_ms = 0`: the probe is rejected,
//!   the pair is never probed again, no game starts, and both pages end in `data-state=timeout`
//!   with the scene's `timeout_message`.
//! - [`embedded_default_matches_two_tabs_of_one_browser`]: `pairlab serve` without `--config`
//!   and two tabs of one browser opening `/` with no id: matched, probed, one game.
//! - [`signed_link_lets_its_page_in_and_a_page_without_it_is_refused`]: with `[server]
//!   link_secret`, the page opened with its signed link (`sig` in the URL) reaches the waitroom;
//!   one opened without a signature shows the `invalid_link` error and never joins.
//! - [`relayed_probe_decides_between_two_injected_rtts`]: two `force_relay` scenes with
//!   `max_p2p_rtt_ms = 60`, coturn behind the UDP delay proxy; at D = 25 ms each way (a relayed
//!   round trip ≈ 100 ms + base) the probe is rejected, at D = 5 ms (≈ 20 ms + base) accepted;
//!   both probes measured a relayed pair, and each decided RTT is within tolerance of the
//!   truth (4·D + base, base from the game connection's own getStats).
//! - [`harness_drives_two_separate_chromium_processes`]: the harness itself, without pairlab.
//!
//! Needs `target/{debug,release}/pairlab` (or `PAIRLAB_BIN`) built after `www/pkg`, chromedriver
//! and Chromium: `./run.sh test` does all of it. Each test leaves its scene, record, logs and
//! Chromium profiles in `target/e2e/<test>/` and screenshots in `target/e2e-screens/`. The
//! tests run one at a time (a lock), so the machine's two cores are not shared by four
//! Chromiums and the measured RTTs are those of one pair.

use std::error::Error;
use std::fmt::Write as _;
use std::time::Duration;

use pairlab_tests::delay_proxy::ProxyHandle;
use pairlab_tests::game::{scene_toml, RelayRig};
use pairlab_tests::process::{pids_with_arg, Wait};
use pairlab_tests::record::{
    event_names, events_of, has_event_for, kind_of, position_of, read_events, wait_for_events,
    ResearchEventKind as Ev,
};
use pairlab_tests::relay_echo::relay_echo_rtts_ms;
use pairlab_tests::turn::TurnAuth;
use pairlab_tests::{
    check, json_num as num, json_str as s, must, screens_dir, Browser, ChromeDriver, PageView,
    Server, WorkDir, WAIT,
};
use serde_json::Value;

type R<T> = Result<T, Box<dyn Error>>;

/// One end-to-end test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const A: &str = "e2e-A";
const B: &str = "e2e-B";

fn strs(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "null".into(), |x| format!("{x:.2}"))
}

/// Every line of the record has `ts` (RFC 3339 UTC), `event` and this `scene_id`.
fn check_envelope(events: &[Value], scene_id: &str) -> R<()> {
    for (i, e) in events.iter().enumerate() {
        let ts = s(e, "ts").unwrap_or("");
        check!(
            ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes().get(10) == Some(&b'T'),
            "record line {}: `ts` is not an RFC 3339 UTC time: {e}",
            i + 1
        );
        check!(
            kind_of(e).is_some(),
            "record line {}: no `event` of the server's record: {e}",
            i + 1
        );
        check!(
            s(e, "scene_id") == Some(scene_id),
            "record line {}: `scene_id` is not {scene_id:?}: {e}",
            i + 1
        );
    }
    Ok(())
}

/// A one-line account of a probe_result, for people to quote.
fn probe_summary(probe: &Value) -> String {
    let mut out = format!(
        "accepted={} reason={} decided rtt_ms={} max_p2p_rtt_ms={} ready_ms={} duration_ms={}",
        probe.get("accepted").unwrap_or(&Value::Null),
        probe.get("reason").unwrap_or(&Value::Null),
        fmt_ms(num(probe, "rtt_ms")),
        fmt_ms(num(probe, "max_p2p_rtt_ms")),
        fmt_ms(num(probe, "ready_ms")),
        fmt_ms(num(probe, "duration_ms")),
    );
    let members = strs(probe, "members");
    if let Some(reports) = probe.get("reports").and_then(Value::as_array) {
        for (i, r) in reports.iter().enumerate() {
            let who = members.get(i).map_or("?", String::as_str);
            if r.is_null() {
                let _ = write!(out, "\n    report {who}: none");
                continue;
            }
            let samples: Vec<String> = r
                .get("samples_ms")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_f64)
                        .map(|x| format!("{x:.2}"))
                        .collect()
                })
                .unwrap_or_default();
            let _ = write!(
                out,
                "\n    report {who}: success={} rtt_ms={} stats_rtt_ms={} received_ms={} samples_ms=[{}]",
                r.get("success").unwrap_or(&Value::Null),
                fmt_ms(num(r, "rtt_ms")),
                fmt_ms(num(r, "stats_rtt_ms")),
                fmt_ms(num(r, "received_ms")),
                samples.join(", ")
            );
        }
    }
    out
}

/// Prints a summary (visible with `--nocapture`; `./run.sh test` shows it) and keeps it in
/// `<work>/summary.txt`.
fn publish(work: &WorkDir, text: &str) {
    println!("{text}");
    let path = work.join("summary.txt");
    if let Err(e) = std::fs::write(&path, format!("{text}\n")) {
        println!("[e2e] (could not write {}: {e})", path.display());
    }
}

/// What to show when a scenario fails: both pages, the record, the server's log.
async fn diagnostics(server: &Server, scene_id: &str, browsers: [&Browser; 2]) -> String {
    let mut out = String::new();
    for b in browsers {
        let view = b
            .view()
            .await
            .map_or_else(|e| format!("(unreadable: {e})"), |v| format!("{v:?}"));
        let _ = writeln!(
            out,
            "page {}: {view}\n  states seen: {}",
            b.name(),
            b.states_seen()
        );
    }
    let path = server.events_path(scene_id);
    match read_events(&path) {
        Ok(events) => {
            let _ = writeln!(out, "record {}:", path.display());
            for e in &events {
                let _ = writeln!(out, "  {e}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "record: {e}");
        }
    }
    let _ = writeln!(
        out,
        "server log ({}), last lines:\n{}",
        server.log_path().display(),
        server.log_tail(40)
    );
    out
}

/// Screenshots both pages into `target/e2e-screens/<test>-<name>.png`, then ends both sessions.
async fn finish(test: &str, a: Browser, b: Browser) {
    for browser in [&a, &b] {
        let path = screens_dir().join(format!("{test}-{}.png", browser.name()));
        match browser.screenshot(&path).await {
            Ok(()) => println!("[e2e] screenshot {}", path.display()),
            Err(e) => println!("[e2e] screenshot of {} failed: {e}", browser.name()),
        }
    }
    for browser in [a, b] {
        let name = browser.name().to_owned();
        if let Err(e) = browser.close().await {
            println!("[e2e] closing {name}: {e} (its processes are killed anyway)");
        }
    }
}

/// Starts the server with `scene_toml`, chromedriver and two browsers, runs `scenario`, takes
/// screenshots, stops everything, and fails the test with diagnostics (the record of each of
/// `scene_ids`) if the scenario failed.
async fn run_e2e<F, Fut>(test: &str, scene_ids: &[&str], scene_toml: &str, scenario: F)
where
    F: FnOnce(WorkDir, Server, [Browser; 2]) -> Fut,
    Fut: std::future::Future<Output = (Server, [Browser; 2], R<()>)>,
{
    let _serial = SERIAL.lock().await;
    let work = must(WorkDir::fresh(test));
    let server = must(Server::start(&work, scene_toml).await);
    println!(
        "[e2e] {test}: {} on {} (pid {}), work dir {}",
        server.bin().display(),
        server.url("/"),
        server.pid(),
        work.path().display()
    );
    let driver = must(ChromeDriver::start(&work).await);
    let (a, b) = tokio::join!(
        Browser::open(&driver, &work, A),
        Browser::open(&driver, &work, B)
    );
    let (a, b) = (must(a), must(b));
    let (server, [a, b], outcome) = scenario(work, server, [a, b]).await;
    let failure = match outcome {
        Ok(()) => None,
        Err(e) => {
            let mut out = format!("{e}\n");
            for scene_id in scene_ids {
                let _ = write!(
                    out,
                    "\nscene {scene_id}:\n{}",
                    diagnostics(&server, scene_id, [&a, &b]).await
                );
            }
            Some(out)
        }
    };
    finish(test, a, b).await;
    drop(driver);
    drop(server);
    if let Some(failure) = failure {
        panic!("{test} failed: {failure}");
    }
}

/// Opens `/?subject_id=<name>` in each browser at once.
async fn open_pages(server: &Server, a: &Browser, b: &Browser) -> R<()> {
    let url_a = server.url(&format!("/?subject_id={}", a.name()));
    let url_b = server.url(&format!("/?subject_id={}", b.name()));
    let (ra, rb) = tokio::join!(a.goto(&url_a), b.goto(&url_b));
    ra?;
    rb?;
    Ok(())
}

const ACCEPT_SCENE: &str = "e2e_accept";
const ACCEPT_TOML: &str = r#"
[[scene]]
id = "e2e_accept"
group_size = 2
matchmaker = "latency_fifo"
max_server_rtt_ms = 200
max_p2p_rtt_ms = 150
waitroom_timeout_ms = 60000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_probe_starts_one_game_on_both_pages() {
    run_e2e(
        "accept",
        &[ACCEPT_SCENE],
        ACCEPT_TOML,
        |work, server, [a, b]| async move {
            let outcome = accept_scenario(&work, &server, &a, &b).await;
            (server, [a, b], outcome)
        },
    )
    .await;
}

async fn accept_scenario(work: &WorkDir, server: &Server, a: &Browser, b: &Browser) -> R<()> {
    open_pages(server, a, b).await?;
    let (va, vb) = tokio::join!(
        a.wait_for_state("game", WAIT),
        b.wait_for_state("game", WAIT)
    );
    let (va, vb) = (va?, vb?);
    check_game_page(A, &va, A)?;
    check_game_page(B, &vb, B)?;
    let game_id = va.game_id.clone().unwrap_or_default();
    check!(
        va.game_id == vb.game_id,
        "the pages show different game ids: {A}: {:?}, {B}: {:?}",
        va.game_id,
        vb.game_id
    );
    let index_a: usize = va.player_index.as_deref().unwrap_or("").parse()?;
    let index_b: usize = vb.player_index.as_deref().unwrap_or("").parse()?;
    check!(
        index_a != index_b && index_a < 2 && index_b < 2,
        "player indexes must be 0 and 1 in some order, got {A}: {index_a}, {B}: {index_b}"
    );

    let path = server.events_path(ACCEPT_SCENE);
    let events = wait_for_events(&path, "probe_result and game_created", WAIT, |ev| {
        !events_of(ev, Ev::ProbeResult).is_empty() && !events_of(ev, Ev::GameCreated).is_empty()
    })
    .await?;
    check_envelope(&events, ACCEPT_SCENE)?;
    for who in [A, B] {
        check!(
            has_event_for(&events, Ev::ParticipantJoined, who),
            "no participant_joined for {who}; events: {:?}",
            event_names(&events)
        );
        let rtt = events_of(&events, Ev::ServerRtt)
            .into_iter()
            .find(|e| s(e, "subject_id") == Some(who));
        check!(
            rtt.and_then(|e| num(e, "median_ms")).is_some(),
            "no server_rtt with a numeric median_ms for {who}: {rtt:?}"
        );
    }
    let proposed = events_of(&events, Ev::MatchProposed);
    check!(
        proposed.len() == 1,
        "expected one match_proposed, got {}: {proposed:?}",
        proposed.len()
    );
    let mut members = strs(proposed[0], "members");
    members.sort();
    check!(members == [A, B], "match_proposed members: {members:?}");
    check!(
        proposed[0].get("probe") == Some(&Value::Bool(true)),
        "match_proposed must say probe: true: {}",
        proposed[0]
    );
    let started = events_of(&events, Ev::ProbeStarted);
    check!(
        started.len() == 1,
        "expected one probe_started, got {started:?}"
    );

    let probes = events_of(&events, Ev::ProbeResult);
    check!(
        probes.len() == 1,
        "expected one probe_result, got {probes:?}"
    );
    let probe = probes[0];
    publish(
        work,
        &format!(
            "[e2e] accept: probe {}\n  {}\n  game {game_id}: {A} is player {index_a}, {B} is player {index_b}\n  page states seen: {A}: {}; {B}: {}",
            s(probe, "probe_session_id").unwrap_or("?"),
            probe_summary(probe),
            a.states_seen(),
            b.states_seen()
        ),
    );
    check!(
        probe.get("accepted") == Some(&Value::Bool(true)),
        "the probe was not accepted: {probe}"
    );
    let reports = probe
        .get("reports")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("probe_result without a reports array: {probe}"))?;
    check!(
        reports.len() == 2,
        "probe_result needs two reports: {probe}"
    );
    for r in reports {
        let rtt = num(r, "rtt_ms");
        check!(
            r.get("success") == Some(&Value::Bool(true))
                && rtt.is_some_and(|x| (0.0..=150.0).contains(&x)),
            "each report must succeed with a numeric rtt_ms within max_p2p_rtt_ms (150): {r}"
        );
    }
    let decided =
        num(probe, "rtt_ms").ok_or_else(|| format!("probe_result without rtt_ms: {probe}"))?;
    let largest = reports
        .iter()
        .filter_map(|r| num(r, "rtt_ms"))
        .fold(f64::NEG_INFINITY, f64::max);
    check!(
        (decided - largest).abs() < 1e-9,
        "the decided rtt_ms {decided} is not the largest reported rtt_ms {largest}"
    );
    let duration = num(probe, "duration_ms")
        .ok_or_else(|| format!("probe_result without duration_ms: {probe}"))?;
    check!(
        duration > 0.0 && duration < 10_000.0,
        "duration_ms {duration} is not within the probe timeout (10000 ms)"
    );

    let games = events_of(&events, Ev::GameCreated);
    check!(games.len() == 1, "expected one game_created, got {games:?}");
    let game = games[0];
    check!(
        s(game, "game_id") == Some(game_id.as_str()),
        "game_created's game_id differs from the pages' {game_id}: {game}"
    );
    let players = strs(game, "players");
    check!(
        players.get(index_a).map(String::as_str) == Some(A)
            && players.get(index_b).map(String::as_str) == Some(B),
        "game_created's players {players:?} disagree with the pages' player indexes ({A}: {index_a}, {B}: {index_b})"
    );
    let order = event_names(&events);
    let probe_at = position_of(&events, Ev::ProbeResult);
    let game_at = position_of(&events, Ev::GameCreated);
    check!(
        probe_at < game_at,
        "game_created must come after probe_result: {order:?}"
    );
    check!(
        events_of(&events, Ev::MatchRejected).is_empty(),
        "an accepted probe must not be followed by match_rejected: {order:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A threshold between two known injected RTTs
// ---------------------------------------------------------------------------------------------

/// The scenes of [`relayed_probe_decides_between_two_injected_rtts`]: both `force_relay`,
/// `max_p2p_rtt_ms = THRESHOLD_MS`. The truth at each delay is the relay echo
/// (`pairlab_tests::relay_echo`: two TURN allocations of the test's own echoing through each
/// other's relay, through the same proxy and coturn, no browser); the near scene also plays a
/// short game whose connection's own getStats RTT is printed beside it.
const FAR_SCENE: &str = "e2e_relay_far";
const NEAR_SCENE: &str = "e2e_relay_near";
const THRESHOLD_MS: u32 = 60;
/// The proxy's delay each way, ms, in the two cases. A relayed round trip crosses the proxy
/// four times (A → proxy → coturn → proxy → B, and back): 4·25 = 100 ms over the threshold,
/// 4·5 = 20 ms well under it.
const FAR_DELAY_MS: u64 = 25;
const NEAR_DELAY_MS: u64 = 5;
/// The proxy crossings of a relayed round trip.
const CROSSINGS: f64 = 4.0;
/// The static TURN credentials of the threshold test's coturn.
const TURN_USER: &str = "pairlab";
const TURN_PASS: &str = "probe-pass";
/// Relay echoes per delay; the truth is their smallest (the path with nothing added).
const ECHOES: usize = 10;

/// The relayed path's RTT at the proxy's current delay: the smallest of [`ECHOES`] relay
/// echoes through `proxy`.
async fn relay_truth_ms(proxy: &ProxyHandle) -> R<f64> {
    let rtts = relay_echo_rtts_ms(proxy.local_addr(), TURN_USER, TURN_PASS, ECHOES).await?;
    rtts.into_iter()
        .reduce(f64::min)
        .ok_or_else(|| "no relay echo came back through the proxy".into())
}

/// How far a decided RTT may be from the truth: 10 ms + 20 % (the probe's median still carries
/// the DataChannel's warm-up; a loaded two-core machine adds scheduling delay to both).
fn within_tolerance(decided_ms: f64, truth_ms: f64) -> bool {
    (decided_ms - truth_ms).abs() <= 10.0 + 0.2 * truth_ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_probe_decides_between_two_injected_rtts() {
    let test = "threshold";
    let rig = must(
        RelayRig::start(TurnAuth::Static {
            user: TURN_USER.into(),
            pass: TURN_PASS.into(),
        })
        .await,
    );
    let game = "episode_ms = 3000\nepisodes = 1\nquality_interval_ms = 250\n";
    let toml = format!(
        "{}\n{}",
        scene_toml(FAR_SCENE, true, Some(THRESHOLD_MS), game, ""),
        scene_toml(
            NEAR_SCENE,
            true,
            Some(THRESHOLD_MS),
            game,
            &rig.turn_toml(3600)
        )
    );
    let proxy = rig.proxy();
    run_e2e(
        test,
        &[FAR_SCENE, NEAR_SCENE],
        &toml,
        |work, server, [a, b]| async move {
            let outcome = threshold_scenario(&work, &server, &proxy, &a, &b)
                .await
                .map_err(|e| format!("{e}\nproxy: {:?}", proxy.counters()).into());
            (server, [a, b], outcome)
        },
    )
    .await;
    drop(rig);
}

/// Opens the scene `scene` in both browsers, as `<prefix>-A` and `<prefix>-B` (new subjects:
/// the pages of the previous case leave theirs waiting), waits for its `probe_result` line and
/// checks it measured a relayed pair on both sides. Returns the line.
async fn relayed_probe(
    server: &Server,
    scene: &str,
    prefix: &str,
    a: &Browser,
    b: &Browser,
) -> R<Value> {
    let url = |who: &str| server.url(&format!("/?subject_id={prefix}-{who}&scene_id={scene}"));
    let (url_a, url_b) = (url("A"), url("B"));
    let (ra, rb) = tokio::join!(a.goto(&url_a), b.goto(&url_b));
    ra?;
    rb?;
    let path = server.events_path(scene);
    let events = wait_for_events(&path, "probe_result", WAIT, |ev| {
        !events_of(ev, Ev::ProbeResult).is_empty()
    })
    .await?;
    let probe = events_of(&events, Ev::ProbeResult)[0].clone();
    let reports = probe
        .get("reports")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("probe_result without reports: {probe}"))?;
    for r in reports {
        check!(
            r.get("success") == Some(&Value::Bool(true)),
            "{scene}: each report must succeed: {r}"
        );
        let path = r.get("connection").unwrap_or(&Value::Null);
        check!(
            s(path, "connection_type") == Some("relay")
                && s(path, "local_candidate_type") == Some("relay")
                && s(path, "protocol") == Some("udp"),
            "{scene}: with force_relay the probe must measure a relayed pair over UDP: {r}"
        );
    }
    Ok(probe)
}

async fn threshold_scenario(
    work: &WorkDir,
    server: &Server,
    proxy: &ProxyHandle,
    a: &Browser,
    b: &Browser,
) -> R<()> {
    proxy.set_delay_ms(FAR_DELAY_MS, FAR_DELAY_MS);
    let far = relayed_probe(server, FAR_SCENE, "far", a, b).await?;
    let far_truth = relay_truth_ms(proxy).await?;
    let far_decided = num(&far, "rtt_ms").ok_or_else(|| format!("no rtt_ms: {far}"))?;
    check!(
        far.get("accepted") == Some(&Value::Bool(false))
            && s(&far, "reason") == Some("rtt_too_high"),
        "at D = {FAR_DELAY_MS} ms the relayed probe must be rejected as rtt_too_high \
         (decided {far_decided:.2} ms, threshold {THRESHOLD_MS} ms): {far}"
    );

    proxy.set_delay_ms(NEAR_DELAY_MS, NEAR_DELAY_MS);
    let near = relayed_probe(server, NEAR_SCENE, "near", a, b).await?;
    let near_truth = relay_truth_ms(proxy).await?;
    let near_decided = num(&near, "rtt_ms").ok_or_else(|| format!("no rtt_ms: {near}"))?;
    check!(
        near.get("accepted") == Some(&Value::Bool(true)),
        "at D = {NEAR_DELAY_MS} ms the relayed probe must be accepted \
         (decided {near_decided:.2} ms, threshold {THRESHOLD_MS} ms): {near}"
    );

    // A second view, printed: 4·D + base, the base from the game connection — a separate
    // relayed connection over the same proxy, measured by the browser's ICE consent checks
    // (getStats `currentRoundTripTime`), not by the probe — as its median RTT at
    // D = NEAR_DELAY_MS minus 4·NEAR_DELAY_MS.
    let path = server.events_path(NEAR_SCENE);
    let events = wait_for_events(&path, "episode_summary from both", WAIT, |ev| {
        events_of(ev, Ev::EpisodeSummary).len() >= 2
    })
    .await?;
    let game_rtts: Vec<f64> = events_of(&events, Ev::EpisodeSummary)
        .iter()
        .filter_map(|e| {
            let peer = e.get("peers")?.as_array()?.first()?;
            num(peer.get("rtt_ms")?, "median")
        })
        .collect();
    check!(
        game_rtts.len() >= 2,
        "each episode_summary must carry the game connection's RTT median: {:?}",
        events_of(&events, Ev::EpisodeSummary)
    );
    let game_rtt = game_rtts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let base = (game_rtt - CROSSINGS * NEAR_DELAY_MS as f64).max(0.0);
    let game_view = |d: u64| CROSSINGS * d as f64 + base;
    publish(
        work,
        &format!(
            "[e2e] threshold {THRESHOLD_MS} ms; truth = the smallest of {ECHOES} relay echoes at each D; game view = 4·D + {base:.2} ms (the game connection's getStats median {game_rtt:.2} ms at D = {NEAR_DELAY_MS} ms, minus 4·D)\n  D = {FAR_DELAY_MS} ms: decided {far_decided:.2} ms, truth {far_truth:.2} ms, error {:+.2} ms (game view {:.2} ms)\n  {}\n  D = {NEAR_DELAY_MS} ms: decided {near_decided:.2} ms, truth {near_truth:.2} ms, error {:+.2} ms (game view {:.2} ms)\n  {}",
            far_decided - far_truth,
            game_view(FAR_DELAY_MS),
            probe_summary(&far),
            near_decided - near_truth,
            game_view(NEAR_DELAY_MS),
            probe_summary(&near),
        ),
    );
    check!(
        within_tolerance(far_decided, far_truth),
        "D = {FAR_DELAY_MS} ms: decided {far_decided:.2} ms is not within 10 ms + 20 % of the truth {far_truth:.2} ms"
    );
    check!(
        within_tolerance(near_decided, near_truth),
        "D = {NEAR_DELAY_MS} ms: decided {near_decided:.2} ms is not within 10 ms + 20 % of the truth {near_truth:.2} ms"
    );
    Ok(())
}

fn check_game_page(who: &str, v: &PageView, subject: &str) -> R<()> {
    check!(
        v.game_id.as_deref().is_some_and(|g| !g.is_empty()),
        "{who}: #game-id is empty in state game: {v:?}"
    );
    check!(
        v.player_index
            .as_deref()
            .is_some_and(|i| i.parse::<u32>().is_ok()),
        "{who}: #player-index has no numeric data-player-index: {v:?}"
    );
    check!(
        !subject.is_empty() && v.subject_id.as_deref() == Some(subject),
        "{who}: #subject-id does not show the subject id {subject:?}: {v:?}"
    );
    Ok(())
}

const REJECT_SCENE: &str = "e2e_reject";
const REJECT_MESSAGE: &str = "No partner with a fast enough connection was found. Thank you!";
const REJECT_TOML: &str = r#"
[[scene]]
id = "e2e_reject"
group_size = 2
matchmaker = "latency_fifo"
max_server_rtt_ms = 200
max_p2p_rtt_ms = 0
waitroom_timeout_ms = 5000
timeout_message = "No partner with a fast enough connection was found. Thank you!"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_probe_leaves_both_to_time_out() {
    run_e2e(
        "reject",
        &[REJECT_SCENE],
        REJECT_TOML,
        |work, server, [a, b]| async move {
            let outcome = reject_scenario(&work, &server, &a, &b).await;
            (server, [a, b], outcome)
        },
    )
    .await;
}

async fn reject_scenario(work: &WorkDir, server: &Server, a: &Browser, b: &Browser) -> R<()> {
    open_pages(server, a, b).await?;
    let (va, vb) = tokio::join!(
        a.wait_for_state("timeout", WAIT),
        b.wait_for_state("timeout", WAIT)
    );
    let (va, vb) = (va?, vb?);
    for (who, v, browser) in [(A, &va, a), (B, &vb, b)] {
        check!(
            v.message.as_deref() == Some(REJECT_MESSAGE),
            "{who}: #message should show the scene's timeout_message {REJECT_MESSAGE:?}: {v:?}"
        );
        check!(
            v.game_id.as_deref().unwrap_or("").is_empty(),
            "{who}: a game id is shown although no game may start: {v:?}"
        );
        check!(
            !browser.states_seen().contains("game"),
            "{who}: the page was in state game: {}",
            browser.states_seen()
        );
    }

    let path = server.events_path(REJECT_SCENE);
    let events = wait_for_events(&path, "waitroom_timeout for both", WAIT, |ev| {
        has_event_for(ev, Ev::WaitroomTimeout, A) && has_event_for(ev, Ev::WaitroomTimeout, B)
    })
    .await?;
    check_envelope(&events, REJECT_SCENE)?;
    let order = event_names(&events);
    let probes = events_of(&events, Ev::ProbeResult);
    check!(
        probes.len() == 1,
        "the pair must be probed exactly once (never twice), got {} probe_result: {order:?}",
        probes.len()
    );
    check!(
        events_of(&events, Ev::ProbeStarted).len() == 1,
        "expected exactly one probe_started: {order:?}"
    );
    let probe = probes[0];
    publish(
        work,
        &format!(
            "[e2e] reject: probe {}\n  {}\n  page states seen: {A}: {}; {B}: {}",
            s(probe, "probe_session_id").unwrap_or("?"),
            probe_summary(probe),
            a.states_seen(),
            b.states_seen()
        ),
    );
    check!(
        probe.get("accepted") == Some(&Value::Bool(false)),
        "with max_p2p_rtt_ms = 0 the probe must be rejected: {probe}"
    );
    check!(
        s(probe, "reason") == Some("rtt_too_high") && num(probe, "rtt_ms").is_some_and(|x| x > 0.0),
        "the probe should have measured an RTT above 0 and been rejected as rtt_too_high: {probe}"
    );
    let rejected = events_of(&events, Ev::MatchRejected);
    check!(
        rejected.len() == 1,
        "expected one match_rejected: {order:?}"
    );
    let mut members = strs(rejected[0], "members");
    members.sort();
    check!(
        members == [A, B] && s(rejected[0], "reason") == Some("rtt_too_high"),
        "match_rejected should name both members and rtt_too_high: {}",
        rejected[0]
    );
    check!(
        events_of(&events, Ev::GameCreated).is_empty(),
        "no game may be created: {order:?}"
    );
    for who in [A, B] {
        let t = events_of(&events, Ev::WaitroomTimeout)
            .into_iter()
            .find(|e| s(e, "subject_id") == Some(who))
            .ok_or_else(|| format!("no waitroom_timeout for {who}"))?;
        check!(
            num(t, "waited_ms").is_some_and(|w| w >= 4_900.0),
            "{who} timed out before the scene's 5000 ms: {t}"
        );
    }
    let probe_at = position_of(&events, Ev::ProbeResult);
    let rejected_at = position_of(&events, Ev::MatchRejected);
    let timeout_at = position_of(&events, Ev::WaitroomTimeout);
    check!(
        probe_at < rejected_at && rejected_at < timeout_at,
        "expected probe_result → match_rejected → waitroom_timeout: {order:?}"
    );
    Ok(())
}

const SIGNED_SCENE: &str = "e2e_signed";
const LINK_SECRET: &str = "e2e-link-secret-of-32-characters";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_link_lets_its_page_in_and_a_page_without_it_is_refused() {
    let toml = format!(
        "[[scene]]\nid = \"{SIGNED_SCENE}\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n\n\
         [server]\nlink_secret = \"{LINK_SECRET}\"\n"
    );
    run_e2e(
        "signed",
        &[SIGNED_SCENE],
        &toml,
        |_work, server, [a, b]| async move {
            let outcome = signed_scenario(&server, &a, &b).await;
            (server, [a, b], outcome)
        },
    )
    .await;
}

/// A opens their signed link (the page sends `sig` in `hello`) and waits; B opens the page with
/// an id but no signature and is refused with `invalid_link`, in words.
async fn signed_scenario(server: &Server, a: &Browser, b: &Browser) -> R<()> {
    use pairlab_server::core::link::LinkSigner;
    let signer = LinkSigner::new(LINK_SECRET);
    let id_a = pairlab_shared::SubjectId::parse(A)?;
    let url_a = server.url(&format!("/?{}", signer.query(&id_a)));
    let url_b = server.url(&format!("/?subject_id={}", b.name()));
    let (ra, rb) = tokio::join!(a.goto(&url_a), b.goto(&url_b));
    ra?;
    rb?;
    let (va, vb) = tokio::join!(
        a.wait_for_state("waitroom", WAIT),
        b.wait_for_state("error", WAIT)
    );
    let (va, vb) = (va?, vb?);
    check!(
        va.is("waitroom"),
        "{A}: the signed link should reach the waitroom: {va:?}"
    );
    let error = vb.error.unwrap_or_default();
    check!(
        error.contains("invalid_link") && error.contains("link"),
        "{B}: the page should say its link is not valid (invalid_link): {error:?}"
    );
    let path = server.events_path(SIGNED_SCENE);
    let events = wait_for_events(&path, "A joined", WAIT, |ev| {
        has_event_for(ev, Ev::ParticipantJoined, A)
    })
    .await?;
    check!(
        !has_event_for(&events, Ev::ParticipantJoined, B),
        "{B} was let in without a signature: {:?}",
        event_names(&events)
    );
    Ok(())
}

/// The README's first command in miniature: `pairlab serve` without `--config` (the embedded
/// default scene) and two tabs of ONE browser opening `/` without any id: each tab makes its own
/// random subject id, and the two are matched, probed and started in one game.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_matches_two_tabs_of_one_browser() {
    let _serial = SERIAL.lock().await;
    let work = must(WorkDir::fresh("default-tabs"));
    let server = must(Server::start_default(&work).await);
    println!(
        "[e2e] default-tabs: {} on {} (pid {}), no --config",
        server.bin().display(),
        server.url("/"),
        server.pid()
    );
    let driver = must(ChromeDriver::start(&work).await);
    let browser = must(Browser::open(&driver, &work, "tabs").await);
    let mut tabs = Vec::new();
    let outcome = tabs_scenario(&work, &server, &browser, &mut tabs).await;
    let failure = match outcome {
        Ok(()) => None,
        Err(e) => {
            let mut out = format!("{e}\n");
            for (i, tab) in tabs.iter().enumerate() {
                let view = match browser.switch_to(tab).await {
                    Ok(()) => browser
                        .view()
                        .await
                        .map_or_else(|e| e.to_string(), |v| format!("{v:?}")),
                    Err(e) => e.to_string(),
                };
                let _ = writeln!(out, "tab {}: {view}", i + 1);
            }
            let _ = writeln!(out, "server log:\n{}", server.log_tail(40));
            Some(out)
        }
    };
    for (i, tab) in tabs.iter().enumerate() {
        let path = screens_dir().join(format!("default-tab{}.png", i + 1));
        let shot = match browser.switch_to(tab).await {
            Ok(()) => browser.screenshot(&path).await,
            Err(e) => Err(e),
        };
        match shot {
            Ok(()) => println!("[e2e] screenshot {}", path.display()),
            Err(e) => println!("[e2e] screenshot of tab {} failed: {e}", i + 1),
        }
    }
    if let Err(e) = browser.close().await {
        println!("[e2e] closing the browser: {e} (its processes are killed anyway)");
    }
    drop(driver);
    drop(server);
    if let Some(failure) = failure {
        panic!("default-tabs failed: {failure}");
    }
}

async fn tabs_scenario(
    work: &WorkDir,
    server: &Server,
    browser: &Browser,
    tabs: &mut Vec<pairlab_tests::Tab>,
) -> R<()> {
    browser.goto(&server.url("/")).await?;
    tabs.push(browser.current_tab().await?);
    tabs.push(browser.open_tab(&server.url("/")).await?);
    let wait = Wait::new("both tabs to reach state game", WAIT);
    let views = loop {
        let mut views = Vec::new();
        for tab in tabs.iter() {
            browser.switch_to(tab).await?;
            views.push(browser.view().await?);
        }
        if views.iter().all(|v| v.is("game")) {
            break views;
        }
        wait.tick(format!("{views:?}")).await?;
    };
    let (one, two) = (&views[0], &views[1]);
    check_game_page("tab 1", one, one.subject_id.as_deref().unwrap_or(""))?;
    check_game_page("tab 2", two, two.subject_id.as_deref().unwrap_or(""))?;
    check!(
        one.game_id == two.game_id && one.player_index != two.player_index,
        "the tabs must show one game with two different players: {one:?} {two:?}"
    );
    let (id_one, id_two) = (
        one.subject_id.clone().unwrap_or_default(),
        two.subject_id.clone().unwrap_or_default(),
    );
    check!(
        !id_one.is_empty() && id_one != id_two,
        "each tab must make its own subject id: {id_one:?} {id_two:?}"
    );
    let path = server.events_path("default");
    let events = wait_for_events(&path, "game_created", WAIT, |ev| {
        !events_of(ev, Ev::GameCreated).is_empty()
    })
    .await?;
    check_envelope(&events, "default")?;
    let game = events_of(&events, Ev::GameCreated)[0];
    let mut players = strs(game, "players");
    players.sort();
    let mut ids = vec![id_one, id_two];
    ids.sort();
    check!(
        players == ids && s(game, "game_id") == one.game_id.as_deref(),
        "game_created {game} does not match the tabs ({ids:?}, {:?})",
        one.game_id
    );
    let probe = events_of(&events, Ev::ProbeResult)
        .into_iter()
        .next()
        .ok_or("the default scene has max_p2p_rtt_ms = 150: a probe_result must be recorded")?;
    publish(
        work,
        &format!(
            "[e2e] default-tabs: probe {}\n  {}",
            s(probe, "probe_session_id").unwrap_or("?"),
            probe_summary(probe)
        ),
    );
    check!(
        probe.get("accepted") == Some(&Value::Bool(true)),
        "the probe between two tabs on one machine must be accepted: {probe}"
    );
    Ok(())
}

/// The harness alone (no pairlab): two WebDriver sessions are two separate Chromium processes,
/// the page view reads the DOM contract, and nothing of them is left after they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_drives_two_separate_chromium_processes() {
    let _serial = SERIAL.lock().await;
    let work = must(WorkDir::fresh("harness"));
    let driver = must(ChromeDriver::start(&work).await);
    let (a, b) = tokio::join!(
        Browser::open(&driver, &work, A),
        Browser::open(&driver, &work, B)
    );
    let (a, b) = (must(a), must(b));
    let page = "data:text/html,<body data-state=game><p id=status>Your game has started.</p>\
                <span id=game-id> g-1 </span><span id=player-index data-player-index=1>2</span>\
                <p id=message></p></body>";
    must(a.goto(page).await);
    let view = must(a.wait_for_state("game", WAIT).await);
    assert_eq!(view.game_id.as_deref(), Some("g-1"));
    assert_eq!(view.player_index.as_deref(), Some("1"));
    assert_eq!(view.player_number.as_deref(), Some("2"));
    assert_eq!(view.message.as_deref(), Some(""));
    assert_eq!(view.error, None);
    assert_eq!(view.status.as_deref(), Some("Your game has started."));

    let (pids_a, pids_b) = (a.chromium_pids(), b.chromium_pids());
    assert!(
        !pids_a.is_empty() && !pids_b.is_empty(),
        "no Chromium found: {pids_a:?} {pids_b:?}"
    );
    assert!(
        pids_a.iter().all(|p| !pids_b.contains(p)),
        "the two sessions share a process: {pids_a:?} {pids_b:?}"
    );
    let args = [a.profile_arg(), b.profile_arg()];
    must(a.close().await);
    drop(b); // without close: the guard must kill it
    drop(driver);
    let wait = Wait::new(
        "the Chromium processes to end after the test",
        Duration::from_secs(10),
    );
    loop {
        let left: Vec<u32> = args.iter().flat_map(|arg| pids_with_arg(arg)).collect();
        if left.is_empty() {
            break;
        }
        must(
            wait.tick(format!("Chromium processes left: {left:?}"))
                .await,
        );
    }
}
