//! End to end, measure before matching: four separate headless Chromium processes on the
//! served page, in a `p2p_matrix` scene with `force_relay`, each with its own path through the
//! UDP delay proxy in front of coturn (the proxy tells the browsers apart by their TURN
//! username, which coturn's REST scheme makes `"<expiry>:<subject_id>"`:
//! `ProxyHandle::set_user_delay_ms`). A relayed round trip between participants `i` and `j`
//! is then `2·(dᵢ + dⱼ)` plus the loopback base.
//!
//! They arrive one by one, the two slow ones first. While they wait, the server probes them
//! in the background; the pair with the best mutual path — the last two to arrive — is paired
//! as soon as its measurement is in, with no probe at match time, and the game runs on the
//! probe's own connection (handover). The time from that `pair_measured` line to
//! `game_created` is printed.
//!
//! Needs what `tests/tests/e2e.rs` needs (`./run.sh test` builds it). Work folder:
//! `target/e2e/matrix/`.

use std::error::Error;
use std::fmt::Write as _;
use std::time::Duration;

use pairlab_tests::game::RelayRig;
use pairlab_tests::record::{
    events_by, events_of, has_event_for, read_events, ts_ms, wait_for_events,
    ResearchEventKind as Ev,
};
use pairlab_tests::turn::TurnAuth;
use pairlab_tests::{check, must, Browser, ChromeDriver, Server, WorkDir, WAIT};
use serde_json::Value;

type R<T> = Result<T, Box<dyn Error>>;

const SCENE: &str = "matrix";

/// The scene's `max_p2p_rtt_ms`.
const THRESHOLD_MS: u64 = 50;

/// Who arrives, in order, and their one-way delay to the relay, ms. Every pair with `a` or
/// `b` is at least `2·(35 + 0) = 70` ms > 50; `c`–`d` is `2·(0 + 5) = 10` ms plus the base.
const PEOPLE: [(&str, u64); 4] = [("mx-a", 35), ("mx-b", 45), ("mx-c", 0), ("mx-d", 5)];

/// How long the background probes and the game may take on this loaded machine.
const LONG_WAIT: Duration = Duration::from_secs(90);

fn scene_toml(turn_toml: &str) -> String {
    format!(
        "[[scene]]\nid = \"{SCENE}\"\ngroup_size = 2\nmatchmaker = \"p2p_matrix\"\n\
         max_p2p_rtt_ms = {THRESHOLD_MS}\nwaitroom_timeout_ms = 300000\nforce_relay = true\n\n\
         [scene.game]\nepisode_ms = 2000\nepisodes = 1\n\n{turn_toml}"
    )
}

/// The two subject ids of a line with `members`, sorted.
fn members(line: &Value) -> Option<[String; 2]> {
    let m = line.get("members")?.as_array()?;
    let mut pair = [
        m.first()?.as_str()?.to_owned(),
        m.get(1)?.as_str()?.to_owned(),
    ];
    pair.sort();
    Some(pair)
}

fn is_pair(line: &Value, a: &str, b: &str) -> bool {
    let mut want = [a.to_owned(), b.to_owned()];
    want.sort();
    members(line).is_some_and(|m| m == want)
}

fn delay_of(who: &str) -> u64 {
    PEOPLE
        .iter()
        .find(|(w, _)| *w == who)
        .map_or(0, |&(_, d)| d)
}

async fn scenario(server: &Server, pages: &[Browser]) -> R<()> {
    let path = server.events_path(SCENE);
    for ((who, _), page) in PEOPLE.iter().zip(pages) {
        page.goto(&server.url(&format!("/?subject_id={who}&scene_id={SCENE}")))
            .await?;
        // In the waitroom (its server RTT measured) before the next one comes.
        wait_for_events(&path, "server_rtt", WAIT, |ev| {
            has_event_for(ev, Ev::ServerRtt, who)
        })
        .await?;
    }
    let events = wait_for_events(&path, "game_created", LONG_WAIT, |ev| {
        !events_of(ev, Ev::GameCreated).is_empty()
            && events_of(ev, Ev::P2pConnectionType).len() >= 2
    })
    .await?;

    let measured = events_of(&events, Ev::PairMeasured);
    for m in &measured {
        println!(
            "[matrix] pair_measured {:?}: rtt {} ms, path {}, usable {}",
            members(m),
            m.get("rtt_ms").unwrap_or(&Value::Null),
            m.get("path").unwrap_or(&Value::Null),
            m.get("usable").unwrap_or(&Value::Null)
        );
    }
    // Every measurement is at least the injected round trip, and only c–d is usable.
    for m in &measured {
        let pair = members(m).ok_or_else(|| format!("pair_measured without members: {m}"))?;
        let floor = 2 * (delay_of(&pair[0]) + delay_of(&pair[1]));
        let rtt = m.get("rtt_ms").and_then(Value::as_f64).unwrap_or(-1.0);
        check!(
            rtt >= floor as f64,
            "{pair:?} measured {rtt} ms, under the injected {floor} ms: the probe did not take the relay path through the proxy"
        );
        let usable = m.get("usable") == Some(&Value::Bool(true));
        check!(
            usable == (pair == ["mx-c", "mx-d"]),
            "only mx-c–mx-d is within {THRESHOLD_MS} ms: {m}"
        );
    }
    let games = events_of(&events, Ev::GameCreated);
    check!(games.len() == 1, "one game: {games:?}");
    let mut players: Vec<&str> = games[0]
        .get("players")
        .and_then(Value::as_array)
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    players.sort_unstable();
    check!(
        players == ["mx-c", "mx-d"],
        "the two with the best mutual path are paired: {}",
        games[0]
    );

    // No probe at match time: the game's pair was measured in the background, and no probe
    // of either began after that measurement.
    let cd = measured
        .iter()
        .find(|m| is_pair(m, "mx-c", "mx-d"))
        .ok_or("no pair_measured for mx-c–mx-d")?;
    let (measured_at, created_at) = (
        ts_ms(cd).ok_or("pair_measured without ts")?,
        ts_ms(games[0]).ok_or("game_created without ts")?,
    );
    let later_probes: Vec<&Value> = events_of(&events, Ev::ProbeStarted)
        .into_iter()
        .filter(|p| ts_ms(p).is_some_and(|t| t > measured_at))
        .filter(|p| members(p).is_some_and(|m| m.iter().any(|s| s == "mx-c" || s == "mx-d")))
        .collect();
    check!(
        later_probes.is_empty(),
        "no probe for the game's members after their pair was measured: {later_probes:?}"
    );
    println!(
        "[matrix] game_created {:.0} ms after mx-c–mx-d's pair_measured (record timestamps, ms resolution)",
        created_at - measured_at
    );

    // The game connection is the probe's, on both sides.
    for who in ["mx-c", "mx-d"] {
        let types = events_by(&events, Ev::P2pConnectionType, who);
        check!(!types.is_empty(), "{who} reported its game connection");
        for t in &types {
            check!(
                t.get("setup").and_then(Value::as_str) == Some("handover"),
                "{who}'s game connection is the handed-over probe connection: {t}"
            );
            println!(
                "[matrix] {who}: game connection {} ({}), connect_ms {}",
                t.get("setup").unwrap_or(&Value::Null),
                t.get("connection_type").unwrap_or(&Value::Null),
                t.get("connect_ms").unwrap_or(&Value::Null)
            );
        }
    }
    // The slow two are still waiting, with no game.
    for who in ["mx-a", "mx-b"] {
        check!(
            !players.contains(&who) && events_by(&events, Ev::ParticipantOutcome, who).is_empty(),
            "{who} still waits"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pair_with_the_best_measured_path_is_matched_without_a_probe_at_match_time() {
    let work = must(WorkDir::fresh("matrix"));
    let rig = must(
        RelayRig::start(TurnAuth::Secret {
            secret: "matrix-e2e-secret".into(),
        })
        .await,
    );
    let proxy = rig.proxy();
    for (who, d) in PEOPLE {
        proxy.set_user_delay_ms(&format!(":{who}"), d);
    }
    let server = must(Server::start(&work, &scene_toml(&rig.turn_toml(3600))).await);
    println!(
        "[matrix] {} on {} (pid {}), work dir {}",
        server.bin().display(),
        server.url("/"),
        server.pid(),
        work.path().display()
    );
    let driver = must(ChromeDriver::start(&work).await);
    let mut pages = Vec::new();
    for (who, _) in PEOPLE {
        pages.push(must(Browser::open(&driver, &work, who).await));
    }
    let outcome = scenario(&server, &pages).await;
    let failure = outcome.err().map(|e| {
        let mut out = format!("{e}\nproxy: {:?}\nrecord:\n", proxy.counters());
        for line in read_events(&server.events_path(SCENE)).unwrap_or_default() {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "server log:\n{}", server.log_tail(40));
        out
    });
    for page in pages {
        let _ = page.close().await;
    }
    drop(driver);
    drop(server);
    drop(rig);
    if let Some(failure) = failure {
        panic!("matrix failed: {failure}");
    }
}
