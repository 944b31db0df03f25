//! End to end, the game connection: the built `pairlab` binary, coturn, the UDP delay
//! proxy and two separate headless Chromium processes playing the demo game.
//!
//! - [`direct_game_connects_and_plays_its_episodes`]: no TURN, no `force_relay`: the game
//!   connects `direct` (both `p2p_connection_type` lines and both pages) on the probe's own
//!   connection, handed over (`setup: handover`, `same_path_as_probe: true`, in the
//!   `p2p_connection_type` lines and in every `episode_summary`), plays two short episodes
//!   (`episode_summary` from both members, frames and inputs both ways) and finishes.
//! - [`reload_after_game_start_falls_back_to_fresh`]: the same scene, but one page reloads
//!   right after `game_start`: it no longer has the handed-over connection, so it opens a
//!   fresh one and offers although it is not the initiator; the other side replaces its
//!   handed-over connection when that offer's DTLS fingerprint is another's. Both end on
//!   `setup: fresh`, and the game plays its episodes.
//! - [`relay_through_the_proxy_restarts_and_reports_quality`]: `force_relay` through coturn
//!   with static credentials, the browsers' TURN server being the delay proxy: the game
//!   connects `relay`; raising the proxy's delay makes both monitors report `warning`, then
//!   `critical`, and lowering it `ok` again; then pausing the proxy past the disconnect graces
//!   (the initiator's shorter, so it restarts first) starts ICE restarts, every one of which
//!   must succeed once the proxy resumes, and the game plays on.
//! - [`relay_restarts_with_equal_default_graces`]: the same pause with both pages on the
//!   default, equal `disconnect_grace_ms` (5 s): whichever side starts first, every started
//!   restart must succeed once the proxy resumes, and the game plays on.
//! - [`secret_credentials_relay_and_a_permanent_cut_ends_the_game`]: coturn with a shared
//!   secret and the server minting per-participant credentials: the game connects `relay`;
//!   a pause that never ends exhausts the ICE restarts, `p2p_connection_failed` is recorded and
//!   both pages show `game_ended`.
//!
//! With both peers relayed through the proxy each datagram crosses it twice per direction, so a
//! delay of D ms each way gives an RTT of about 4·D plus the base (see
//! `pairlab_tests::delay_proxy`): D = 45 → ~185 ms (`warning` > 150), D = 90 → ~365 ms (`critical` >
//! 300). The page's timings are shortened in each scene's `[scene.game]` table (`episode_ms`,
//! `episodes`, `quality_interval_ms`, `disconnect_grace_ms`, `restart_timeout_ms`); the direct
//! test's links also carry `episodes=7`, which must change nothing (a study's settings are the
//! scene's); only the relay test switches the scene's test mode on (`url_overrides = true`) to
//! give each page its own `disconnect_grace_ms` in its link.
//!
//! Every wait polls something observable (the record, the page) with a generous deadline. Each
//! test prints its figures (connect times, RTTs, restart times) and keeps them in
//! `target/e2e/<test>/summary.txt`; logs, record and profiles stay in `target/e2e/<test>/`,
//! screenshots go to `target/e2e-screens/`. Needs what `tests/tests/e2e.rs` needs, plus coturn.

use std::error::Error;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pairlab_tests::delay_proxy::ProxyHandle;
use pairlab_tests::game::{quality_by, restarts_with, scene_toml, GameView, RelayRig};
use pairlab_tests::record::{
    event_names, events_by, events_of, position_of, read_events, wait_for_events,
    ResearchEventKind as Ev,
};
use pairlab_tests::turn::TurnAuth;
use pairlab_tests::{
    check, json_num as num, json_str as s, must, screens_dir, Browser, ChromeDriver, Server,
    WorkDir, POLL, WAIT,
};
use serde_json::Value;

type R<T> = Result<T, Box<dyn Error>>;

/// One end-to-end test at a time (two Chromiums per test on a two-core machine).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The subject ids; `A` is the initiator (the smaller in byte order).
const A: &str = "gA";
const B: &str = "gB";

/// Patience for things that take a few ICE/STUN rounds (restarts, quality changes).
const SLOW: Duration = Duration::from_secs(45);

fn other(who: &str) -> &'static str {
    if who == A {
        B
    } else {
        A
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn fmt_num(v: Option<f64>) -> String {
    v.map_or_else(|| "null".into(), |x| format!("{x:.1}"))
}

/// A running game: the server, chromedriver and the two participants' browsers. Fields drop in
/// order: browsers, then chromedriver, then the server.
struct Game {
    a: Browser,
    b: Browser,
    driver: ChromeDriver,
    server: Server,
    work: WorkDir,
    test: &'static str,
    scene: &'static str,
    opened: Instant,
    figures: Mutex<Vec<String>>,
}

impl Game {
    /// Starts the server with `toml`, chromedriver and two browsers, and opens
    /// `/?subject_id=A&<queries[0]>` and `/?subject_id=B&<queries[1]>` at once.
    async fn start(
        test: &'static str,
        scene: &'static str,
        toml: &str,
        queries: [&str; 2],
    ) -> Game {
        let work = must(WorkDir::fresh(test));
        let server = must(Server::start(&work, toml).await);
        println!(
            "[game-e2e] {test}: {} on {} (pid {}), work dir {}",
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
        let url_a = server.url(&format!("/?subject_id={A}&{}", queries[0]));
        let url_b = server.url(&format!("/?subject_id={B}&{}", queries[1]));
        let opened = Instant::now();
        let (ra, rb) = tokio::join!(a.goto(&url_a), b.goto(&url_b));
        must(ra);
        must(rb);
        Game {
            a,
            b,
            driver,
            server,
            work,
            test,
            scene,
            opened,
            figures: Mutex::new(Vec::new()),
        }
    }

    /// Notes a figure for the summary (and prints it now).
    fn figure(&self, line: String) {
        println!("[game-e2e] {}: {line}", self.test);
        if let Ok(mut f) = self.figures.lock() {
            f.push(line);
        }
    }

    fn events(&self) -> R<Vec<Value>> {
        Ok(read_events(&self.server.events_path(self.scene))?)
    }

    /// Polls the record until `done` holds.
    async fn wait_record(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> R<Vec<Value>> {
        let path = self.server.events_path(self.scene);
        Ok(wait_for_events(&path, what, timeout, done).await?)
    }

    /// Waits for both pages at once.
    async fn wait_both(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&GameView) -> bool + Copy,
    ) -> R<(GameView, GameView)> {
        let (va, vb) = tokio::join!(
            self.a.wait_game(what, timeout, done),
            self.b.wait_game(what, timeout, done)
        );
        Ok((va?, vb?))
    }

    /// Stops everything; on failure panics with both pages, the record and the logs.
    async fn finish(self, outcome: R<()>, rig: Option<&RelayRig>) {
        let failure = match outcome {
            Ok(()) => None,
            Err(e) => Some(format!("{e}\n\n{}", self.diagnostics(rig).await)),
        };
        let figures = self
            .figures
            .lock()
            .map(|f| f.join("\n  "))
            .unwrap_or_default();
        let summary = format!("[game-e2e] {}:\n  {figures}", self.test);
        if let Err(e) = std::fs::write(self.work.join("summary.txt"), format!("{summary}\n")) {
            println!("[game-e2e] (could not write summary.txt: {e})");
        }
        println!("{summary}");
        for browser in [&self.a, &self.b] {
            let path = screens_dir().join(format!("game-{}-{}.png", self.test, browser.name()));
            match browser.screenshot(&path).await {
                Ok(()) => println!("[game-e2e] screenshot {}", path.display()),
                Err(e) => println!("[game-e2e] screenshot of {} failed: {e}", browser.name()),
            }
        }
        let Game {
            a,
            b,
            driver,
            server,
            test,
            ..
        } = self;
        for browser in [a, b] {
            let name = browser.name().to_owned();
            if let Err(e) = browser.close().await {
                println!("[game-e2e] closing {name}: {e} (its processes are killed anyway)");
            }
        }
        drop(driver);
        drop(server);
        if let Some(failure) = failure {
            panic!("{test} failed: {failure}");
        }
    }

    async fn diagnostics(&self, rig: Option<&RelayRig>) -> String {
        let mut out = String::new();
        for b in [&self.a, &self.b] {
            let game = b
                .game_view()
                .await
                .map_or_else(|e| format!("(unreadable: {e})"), |v| format!("{v:?}"));
            let page = b
                .view()
                .await
                .map_or_else(|e| format!("(unreadable: {e})"), |v| format!("{v:?}"));
            let _ = writeln!(out, "page {}: {game}\n  {page}", b.name());
        }
        let path = self.server.events_path(self.scene);
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
            self.server.log_path().display(),
            self.server.log_tail(40)
        );
        if let Some(rig) = rig {
            let _ = writeln!(
                out,
                "proxy {} → {}: {:?}, delay {:?}, paused {}\ncoturn log ({}), last lines:\n{}",
                rig.proxy().local_addr(),
                rig.proxy().upstream(),
                rig.proxy().counters(),
                rig.proxy().delay_ms(),
                rig.proxy().is_paused(),
                rig.coturn().log_path().display(),
                rig.coturn().log_tail(30)
            );
        }
        out
    }
}

/// Waits until both pages play with `#connection-type` = `kind` and both members' `p2p_connection_type`
/// lines are in the record; checks them and notes the connect times. Returns the game id.
async fn connected(game: &Game, kind: &str) -> R<String> {
    let (va, vb) = game
        .wait_both(
            &format!("data-game-phase=playing and #connection-type={kind}"),
            WAIT,
            |v| v.phase_is("playing") && v.connection_type.as_deref() == Some(kind),
        )
        .await?;
    let seen_ms = game.opened.elapsed();
    let game_id = va.game_id.clone().unwrap_or_default();
    check!(
        !game_id.is_empty() && vb.game_id.as_deref() == Some(game_id.as_str()),
        "the pages show different or empty game ids: {va:?} {vb:?}"
    );
    let events = game
        .wait_record("p2p_connection_type from both members", WAIT, |ev| {
            !events_by(ev, Ev::P2pConnectionType, A).is_empty()
                && !events_by(ev, Ev::P2pConnectionType, B).is_empty()
        })
        .await?;
    let mut connect = Vec::new();
    for who in [A, B] {
        let lines = events_by(&events, Ev::P2pConnectionType, who);
        check!(
            lines.len() == 1,
            "{who} must report its connection type once (no restart yet): {lines:?}"
        );
        let e = lines[0];
        check!(
            s(e, "game_id") == Some(game_id.as_str())
                && s(e, "peer_subject_id") == Some(other(who)),
            "{who}'s p2p_connection_type names another game or peer: {e}"
        );
        check!(
            s(e, "connection_type") == Some(kind),
            "{who}'s p2p_connection_type must say {kind}: {e}"
        );
        let (local, remote) = (
            s(e, "local_candidate_type").unwrap_or(""),
            s(e, "remote_candidate_type").unwrap_or(""),
        );
        if kind == "relay" {
            // Both sides are forced to relay: both candidates are relay candidates, and the
            // browser reaches its TURN server (the proxy) over UDP.
            check!(
                local == "relay"
                    && remote == "relay"
                    && s(e, "protocol") == Some("udp")
                    && s(e, "relay_protocol") == Some("udp"),
                "with force_relay both candidates must be relay, over UDP: {e}"
            );
        } else {
            check!(
                ["host", "srflx", "prflx"].contains(&local)
                    && ["host", "srflx", "prflx"].contains(&remote)
                    && e.get("relay_protocol") == Some(&Value::Null),
                "a direct connection has no relay candidate and no relay_protocol: {e}"
            );
        }
        let c = num(e, "connect_ms");
        // A handed-over connection is up at once: within the page clock's resolution of
        // game_start, so 0 ms is possible; a fresh one needs a handshake.
        let floor_ok = |c: f64| match s(e, "setup") {
            Some("handover") => c >= 0.0,
            _ => c > 0.0,
        };
        check!(
            c.is_some_and(|c| floor_ok(c) && c < 20_000.0),
            "{who}'s connect_ms must be a time in (0, 20000) ms ([0, 20000) handed over): {e}"
        );
        connect.push(format!(
            "{who} {:.1} ms ({local}↔{remote}, setup {}, same path as the probe {})",
            c.unwrap_or(f64::NAN),
            s(e, "setup").unwrap_or("?"),
            e.get("same_path_as_probe").unwrap_or(&Value::Null)
        ));
    }
    game.figure(format!(
        "{kind} connect_ms (game_start → both channels open): {}; pages showed it {} after opening",
        connect.join(", "),
        ms(seen_ms)
    ));
    Ok(game_id)
}

/// Whether `wanted` occurs in `seen` in this order (other items may come between).
fn in_order(seen: &[&str], wanted: &[&str]) -> bool {
    let mut rest = seen.iter();
    wanted.iter().all(|w| rest.any(|x| x == w))
}

/// Checks one `episode_summary` line of `who`; `peer_sent` is the peer's `inputs_sent` for the
/// same episode, when known.
fn check_summary(e: &Value, who: &str, kind: &str, peer_sent: Option<u64>) -> R<()> {
    let frames = e.get("frames").and_then(Value::as_u64).unwrap_or(0);
    let sent = e.get("inputs_sent").and_then(Value::as_u64).unwrap_or(0);
    check!(
        frames > 0 && sent > 0,
        "{who}'s episode_summary needs frames > 0 and inputs_sent > 0: {e}"
    );
    let peers = e
        .get("peers")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("episode_summary without peers: {e}"))?;
    check!(
        peers.len() == 1,
        "a pair's episode_summary has one peer: {e}"
    );
    let p = &peers[0];
    let received = p
        .get("inputs_received")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    check!(
        s(p, "peer_subject_id") == Some(other(who)) && received > 0,
        "{who}'s episode_summary must name {} and count inputs received from it > 0: {e}",
        other(who)
    );
    if let Some(peer_sent) = peer_sent {
        check!(
            received <= peer_sent,
            "{who} received {received} distinct inputs in an episode in which {} sent only {peer_sent}: {e}",
            other(who)
        );
    }
    check!(
        p.get("connection").and_then(|c| s(c, "connection_type")) == Some(kind),
        "{who}'s episode_summary must give the connection ({kind}): {e}"
    );
    Ok(())
}

/// `(episode, frames)` of the `episode_summary` lines and their RTT medians, for the figures.
fn summaries_text(events: &[Value], who: &str) -> String {
    events_by(events, Ev::EpisodeSummary, who)
        .iter()
        .map(|e| {
            let p = e
                .get("peers")
                .and_then(Value::as_array)
                .and_then(|p| p.first());
            let rtt = p.and_then(|p| p.get("rtt_ms"));
            format!(
                "#{} frames={} sent={} received={} rtt_median={} (n={})",
                e.get("episode").unwrap_or(&Value::Null),
                e.get("frames").unwrap_or(&Value::Null),
                e.get("inputs_sent").unwrap_or(&Value::Null),
                p.and_then(|p| p.get("inputs_received"))
                    .unwrap_or(&Value::Null),
                fmt_num(rtt.and_then(|r| num(r, "median"))),
                rtt.and_then(|r| r.get("samples")).unwrap_or(&Value::Null),
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// 1 + 6: direct, episodes
// ---------------------------------------------------------------------------------------------

const DIRECT_SCENE: &str = "g_direct";
/// Two episodes of 1.5 s, the monitor every 500 ms.
const DIRECT_GAME: &str = "episode_ms = 1500\nepisodes = 2\nquality_interval_ms = 500\n";
/// A participant editing their link: outside test mode it changes nothing.
const DIRECT_QUERY: &str = "episodes=7&episode_ms=500";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_game_connects_and_plays_its_episodes() {
    let _serial = SERIAL.lock().await;
    // With a probe first, as a study would run it (a generous max_p2p_rtt_ms: a loaded two-core
    // machine must not make the pair fail its probe; the probe has its own tests in e2e.rs).
    let toml = scene_toml(DIRECT_SCENE, false, Some(1000), DIRECT_GAME, "");
    let game = Game::start("direct", DIRECT_SCENE, &toml, [DIRECT_QUERY; 2]).await;
    let outcome = direct_scenario(&game).await;
    game.finish(outcome, None).await;
}

async fn direct_scenario(game: &Game) -> R<()> {
    let game_id = connected(game, "direct").await?;
    // The scene probes (probe_handover by default): the probe's connection became the game's.
    let events = game.events()?;
    for who in [A, B] {
        for e in events_by(&events, Ev::P2pConnectionType, who) {
            check!(
                s(e, "setup") == Some("handover")
                    && e.get("same_path_as_probe") == Some(&Value::Bool(true)),
                "{who}'s game connection must be the probe's, handed over, on its path: {e}"
            );
        }
    }
    let start = Instant::now();
    let events = game
        .wait_record(
            "episode_summary for episodes 1 and 2 from both",
            WAIT,
            |ev| {
                [A, B].iter().all(|who| {
                    let eps: Vec<u64> = events_by(ev, Ev::EpisodeSummary, who)
                        .iter()
                        .filter_map(|e| e.get("episode").and_then(Value::as_u64))
                        .collect();
                    eps.contains(&1) && eps.contains(&2)
                })
            },
        )
        .await?;
    let took = start.elapsed();
    for who in [A, B] {
        let lines = events_by(&events, Ev::EpisodeSummary, who);
        check!(
            lines.len() == 2,
            "with the scene's episodes = 2 (the link's episodes=7 ignored), {who} must send exactly two episode_summary lines: {lines:?}"
        );
        for e in &lines {
            check!(
                s(e, "game_id") == Some(game_id.as_str()),
                "episode_summary of another game: {e}"
            );
            let episode = e.get("episode").and_then(Value::as_u64);
            let peer_sent = events_by(&events, Ev::EpisodeSummary, other(who))
                .into_iter()
                .find(|p| p.get("episode").and_then(Value::as_u64) == episode)
                .and_then(|p| p.get("inputs_sent").and_then(Value::as_u64));
            check_summary(e, who, "direct", peer_sent)?;
            check!(
                e.get("hidden_count").and_then(Value::as_u64) == Some(0)
                    && e.get("hidden_ms").and_then(Value::as_f64) == Some(0.0),
                "a page in front the whole episode was never hidden: {e}"
            );
            check!(
                e.pointer("/peers/0/setup").and_then(Value::as_str) == Some("handover")
                    && e.pointer("/peers/0/same_path_as_probe") == Some(&Value::Bool(true)),
                "{who}'s episode_summary must say the connection was handed over, on the probe's path: {e}"
            );
            let restarts = e.pointer("/peers/0/ice_restarts").and_then(Value::as_u64);
            check!(
                restarts == Some(0),
                "no ICE restart happened, the summary says {restarts:?}: {e}"
            );
        }
        game.figure(format!("{who} episodes: {}", summaries_text(&events, who)));
    }
    game.figure(format!(
        "both episodes summarised {} after the connection was up",
        ms(took)
    ));
    // After its last episode the game is over: both pages say so, and nothing went wrong.
    let (va, vb) = game
        .wait_both("data-game-phase=finished", WAIT, |v| v.phase_is("finished"))
        .await?;
    for (who, v) in [(A, &va), (B, &vb)] {
        check!(
            v.error.as_deref().unwrap_or("").is_empty(),
            "{who}'s page shows an error: {v:?}"
        );
    }
    let events = game.events()?;
    // (p2p_quality is not checked: on a loaded two-core machine a loopback RTT can pass 150 ms.)
    for kind in [Ev::P2pIceRestart, Ev::P2pConnectionFailed] {
        check!(
            events_of(&events, kind).is_empty(),
            "a direct game on loopback must have no {kind}: {:?}",
            event_names(&events)
        );
    }
    // Both pages finish after their last episode: the game ends as finished, not lost.
    let ended = events_of(&events, Ev::GameEnded);
    check!(
        ended.len() == 1 && s(ended[0], "reason") == Some("finished"),
        "the game ends once, finished by both members: {ended:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Handover fallback: a reload between the probe and the game
// ---------------------------------------------------------------------------------------------

const RELOAD_SCENE: &str = "g_reload";
/// Two episodes of 4 s: the page that did not reload may have started its loop on the
/// handed-over connection before the reload (the peer's `ready` came first), so it runs ahead
/// by the reload's time; long episodes keep the two overlapping, with inputs both ways.
const RELOAD_GAME: &str = "episode_ms = 4000\nepisodes = 2\nquality_interval_ms = 500\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_after_game_start_falls_back_to_fresh() {
    let _serial = SERIAL.lock().await;
    let toml = scene_toml(RELOAD_SCENE, false, Some(1000), RELOAD_GAME, "");
    let game = Game::start("reload", RELOAD_SCENE, &toml, ["", ""]).await;
    let outcome = reload_scenario(&game).await;
    game.finish(outcome, None).await;
}

/// The latest `p2p_connection_type` line of `who`.
fn latest_connection_type<'a>(events: &'a [Value], who: &str) -> Option<&'a Value> {
    events_by(events, Ev::P2pConnectionType, who)
        .into_iter()
        .last()
}

async fn reload_scenario(game: &Game) -> R<()> {
    // B, not the initiator, reloads as soon as its page has game_start.
    game.b.wait_for_state("game", WAIT).await?;
    let reloaded = Instant::now();
    game.b
        .goto(&game.server.url(&format!("/?subject_id={B}&")))
        .await?;
    let events = game
        .wait_record("fresh game connections on both sides", WAIT, |ev| {
            [A, B].iter().all(|who| {
                latest_connection_type(ev, who).is_some_and(|e| s(e, "setup") == Some("fresh"))
            })
        })
        .await?;
    for who in [A, B] {
        let lines = events_by(&events, Ev::P2pConnectionType, who);
        let setups: Vec<&str> = lines.iter().filter_map(|e| s(e, "setup")).collect();
        game.figure(format!(
            "{who}: p2p_connection_type setups {setups:?}, last connect_ms {}",
            fmt_num(lines.last().and_then(|e| num(e, "connect_ms")))
        ));
        let last = lines.last().ok_or("no p2p_connection_type")?;
        check!(
            s(last, "connection_type") == Some("direct"),
            "{who}'s fresh connection on loopback is direct: {last}"
        );
    }
    game.figure(format!(
        "both fresh {} after B's reload",
        ms(reloaded.elapsed())
    ));
    // The game plays on the fresh connections: both pages finish their episodes.
    let events = game
        .wait_record("episode_summary for episode 2 from both", WAIT, |ev| {
            [A, B].iter().all(|who| {
                events_by(ev, Ev::EpisodeSummary, who)
                    .iter()
                    .any(|e| e.get("episode").and_then(Value::as_u64) == Some(2))
            })
        })
        .await?;
    for who in [A, B] {
        let last = events_by(&events, Ev::EpisodeSummary, who)
            .into_iter()
            .last()
            .ok_or("no episode_summary")?;
        check_summary(last, who, "direct", None)?;
        check!(
            last.pointer("/peers/0/setup").and_then(Value::as_str) == Some("fresh"),
            "{who}'s last episode_summary must say fresh: {last}"
        );
        game.figure(format!("{who} episodes: {}", summaries_text(&events, who)));
    }
    game.wait_both("data-game-phase=finished", WAIT, |v| v.phase_is("finished"))
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2 (static) + 4 + 3: relay through the proxy, ICE restart, quality
// ---------------------------------------------------------------------------------------------

const RELAY_SCENE: &str = "g_relay";
/// The relay scene's game: endless 4 s episodes, the monitor every 500 ms,
/// [`RELAY_RESTART_TIMEOUT_MS`] per restart attempt, and test mode (`url_overrides`), so that
/// each page's link gives it its own `disconnect_grace_ms` ([`RELAY_GRACE_MS`]).
fn relay_game() -> String {
    format!(
        "episode_ms = 4000\nepisodes = 1000\nquality_interval_ms = 500\nrestart_timeout_ms = {RELAY_RESTART_TIMEOUT_MS}\nurl_overrides = true\n"
    )
}

/// The disconnect grace of A (the initiator) and of B, ms. Staggered on purpose: after a cut,
/// the two browsers notice `disconnected` up to ~1 s apart (seen here: either one first), and
/// with equal graces which side starts its restart first is a coin toss. A's shorter grace
/// makes the order fixed — the initiator restarts (and sends its `iceRestart` offer) first,
/// the other side's own attempt begins after it has answered that offer — so the test checks
/// the same, realistic order every run.
const RELAY_GRACE_MS: [u64; 2] = [1000, 3500];

/// coturn with static credentials behind the delay proxy, and the relay scene's game opened
/// with each page's link `queries`.
async fn start_relay(test: &'static str, queries: [&str; 2]) -> (RelayRig, Game) {
    let rig = must(
        RelayRig::start(TurnAuth::Static {
            user: "pairlab".into(),
            pass: "relay-pass".into(),
        })
        .await,
    );
    let toml = scene_toml(RELAY_SCENE, true, None, &relay_game(), &rig.turn_toml(3600));
    let game = Game::start(test, RELAY_SCENE, &toml, queries).await;
    (rig, game)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_through_the_proxy_restarts_and_reports_quality() {
    let _serial = SERIAL.lock().await;
    let [query_a, query_b] = RELAY_GRACE_MS.map(|grace| format!("disconnect_grace_ms={grace}"));
    let (rig, game) = start_relay("relay", [&query_a, &query_b]).await;
    let outcome = relay_scenario(&game, &rig.proxy(), RELAY_GRACE_MS).await;
    game.finish(outcome, Some(&rig)).await;
    drop(rig);
}

/// The page's default `disconnect_grace_ms` (`ConnectionTuning::default` in
/// `client-wasm/src/game/policy.rs`), which both pages keep when their links do not set one.
const DEFAULT_GRACE_MS: u64 = 5000;

/// The same scenario with both pages on the default, equal graces: which side notices the cut
/// first is a coin toss, and so is which side's attempt begins first; every started attempt
/// must still succeed once the proxy resumes, and the game plays on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restarts_with_equal_default_graces() {
    let _serial = SERIAL.lock().await;
    let (rig, game) = start_relay("relay-equal", [""; 2]).await;
    let outcome = equal_graces_scenario(&game, &rig.proxy()).await;
    game.finish(outcome, Some(&rig)).await;
    drop(rig);
}

async fn equal_graces_scenario(game: &Game, proxy: &ProxyHandle) -> R<()> {
    connected(game, "relay").await?;
    restart_phase(game, proxy, [DEFAULT_GRACE_MS; 2]).await
}

async fn relay_scenario(game: &Game, proxy: &ProxyHandle, graces_ms: [u64; 2]) -> R<()> {
    connected(game, "relay").await?;
    check!(
        proxy.counters().clients >= 2 && proxy.counters().forwarded() > 0,
        "both browsers must reach coturn through the proxy: {:?}",
        proxy.counters()
    );
    // The base RTT (D = 0): the first episode's samples.
    let events = game
        .wait_record("episode 1 summarised by both", WAIT, |ev| {
            [A, B]
                .iter()
                .all(|who| !events_by(ev, Ev::EpisodeSummary, who).is_empty())
        })
        .await?;
    for who in [A, B] {
        let e = events_by(&events, Ev::EpisodeSummary, who)[0];
        check_summary(e, who, "relay", None)?;
    }
    game.figure(format!(
        "D = 0: base RTT from episode 1 — {A}: {}; {B}: {}",
        summaries_text(&events, A),
        summaries_text(&events, B)
    ));

    // Quality first (a restart failure must not hide it), then the cut and the restart.
    quality_phase(game, proxy).await?;
    restart_phase(game, proxy, graces_ms).await
}

/// The relay scene's `restart_timeout_ms`.
const RELAY_RESTART_TIMEOUT_MS: u64 = 8000;

/// Pauses the proxy until one side has started an ICE restart (past its disconnect grace,
/// `graces_ms` for A and B) and the other has too, or the other's grace has clearly passed
/// without one (an implementation where only the initiator restarts is allowed: PROTOCOL.md,
/// `p2p_ice_restart`, has the initiator send the restart offer); checks the restarting pages
/// show it, resumes, and requires every started attempt to succeed — failing as soon as one
/// fails — and the game to play on.
async fn restart_phase(game: &Game, proxy: &ProxyHandle, graces_ms: [u64; 2]) -> R<()> {
    let paused_at = Instant::now();
    proxy.pause(true);
    let events = game
        .wait_record(
            "a p2p_ice_restart started while the proxy is paused",
            SLOW,
            |ev| !events_of(ev, Ev::P2pIceRestart).is_empty(),
        )
        .await?;
    let to_started = paused_at.elapsed();
    let first = s(events_of(&events, Ev::P2pIceRestart)[0], "subject_id")
        .unwrap_or(A)
        .to_owned();
    let grace_of = |who: &str| if who == A { graces_ms[0] } else { graces_ms[1] };
    // The other's grace may be longer; give it the difference and 3 s more.
    let second = other(&first);
    let window = Duration::from_millis(grace_of(second).saturating_sub(grace_of(&first)) + 3000);
    let window_start = Instant::now();
    let events = loop {
        let events = game.events()?;
        if !events_by(&events, Ev::P2pIceRestart, second).is_empty()
            || window_start.elapsed() > window
        {
            break events;
        }
        tokio::time::sleep(POLL).await;
    };
    let mut started_at = Vec::new();
    let mut restarters = Vec::new();
    for who in [A, B] {
        let lines: Vec<&Value> = events_by(&events, Ev::P2pIceRestart, who);
        if lines.is_empty() {
            continue;
        }
        check!(
            lines.len() == 1,
            "{who} must have started exactly one attempt by now: {lines:?}"
        );
        let e = lines[0];
        check!(
            s(e, "outcome") == Some("started")
                && s(e, "trigger") == Some("disconnected")
                && e.get("attempt").and_then(Value::as_u64) == Some(1)
                && e.get("duration_ms") == Some(&Value::Null),
            "a short cut is first seen as `disconnected`: attempt 1 started, no duration yet: {e}"
        );
        started_at.push(format!("{who} {}", s(e, "ts").unwrap_or("?")));
        restarters.push(who);
    }
    // Paused for longer than the grace: no restart began before it.
    check!(
        to_started >= Duration::from_millis(grace_of(&first)),
        "{first}'s restart began {} after the pause, before its {} ms grace",
        ms(to_started),
        grace_of(&first)
    );
    // While the link is still down, the pages of those restarting show it.
    let mut pages = Vec::new();
    for who in &restarters {
        let browser = if *who == A { &game.a } else { &game.b };
        let v = browser
            .wait_game(
                "data-game-phase=restarting while the proxy is paused",
                Duration::from_secs(5),
                |v| v.phase_is("restarting"),
            )
            .await?;
        pages.push(format!("{who} {:?}", v.phase));
    }
    let paused_for = paused_at.elapsed();
    let resumed_at = Instant::now();
    proxy.pause(false);
    let settle = Duration::from_millis(RELAY_RESTART_TIMEOUT_MS) + WAIT;
    let events = game
        .wait_record(
            "every started restart to end after the proxy resumed",
            settle,
            |ev| {
                let succeeded = restarts_with(ev, "succeeded");
                let all_done = restarters
                    .iter()
                    .all(|who| succeeded.iter().any(|e| s(e, "subject_id") == Some(*who)));
                all_done
                    || !restarts_with(ev, "failed").is_empty()
                    || !events_of(ev, Ev::P2pConnectionFailed).is_empty()
            },
        )
        .await?;
    let to_settled = resumed_at.elapsed();
    let failed = restarts_with(&events, "failed");
    check!(
        failed.is_empty()
            && events_of(&events, Ev::P2pConnectionFailed).is_empty()
            && events_of(&events, Ev::GameEnded).is_empty(),
        "after the proxy resumed ({} after the pause) every started restart must succeed, but \
         an attempt failed {} after the resume although the link was back: {failed:?}; \
         restart lines: {:?}",
        ms(paused_for),
        ms(to_settled),
        events_of(&events, Ev::P2pIceRestart)
    );
    let mut durations = Vec::new();
    for e in restarts_with(&events, "succeeded") {
        let d = num(e, "duration_ms");
        check!(
            e.get("attempt").and_then(Value::as_u64) == Some(1)
                && d.is_some_and(|d| d > 0.0 && d < RELAY_RESTART_TIMEOUT_MS as f64),
            "a succeeded restart has attempt 1 and a duration within restart_timeout_ms: {e}"
        );
        durations.push(format!(
            "{} {} ms",
            s(e, "subject_id").unwrap_or("?"),
            fmt_num(d)
        ));
    }
    // The game plays on: both pages are back to `playing` and their frame counters move.
    let (va, vb) = game
        .wait_both("data-game-phase back to playing", WAIT, |v| {
            v.phase_is("playing")
        })
        .await?;
    let before = [
        (va.episode_n(), va.frames_n()),
        (vb.episode_n(), vb.frames_n()),
    ];
    let (va2, vb2) = tokio::join!(
        game.a
            .wait_game("the game to move on after the restart", WAIT, |v| {
                v.phase_is("playing") && (v.episode_n(), v.frames_n()) > before[0]
            }),
        game.b
            .wait_game("the game to move on after the restart", WAIT, |v| {
                v.phase_is("playing") && (v.episode_n(), v.frames_n()) > before[1]
            })
    );
    let (va2, vb2) = (va2?, vb2?);
    game.figure(format!(
        "ICE restart (graces {A} {} ms, {B} {} ms): proxy paused {}; the first restart ({first}'s) started {} after the pause; \
         started: {}; pages: {}; all succeeded within {} of resuming; duration_ms (attempt start → success) {}; \
         (episode, frame) moved on: {A} {:?}→{:?}, {B} {:?}→{:?}",
        graces_ms[0],
        graces_ms[1],
        ms(paused_for),
        ms(to_started),
        started_at.join(", "),
        pages.join(", "),
        ms(to_settled),
        durations.join(", "),
        before[0],
        (va2.episode_n(), va2.frames_n()),
        before[1],
        (vb2.episode_n(), vb2.frames_n()),
    ));
    Ok(())
}

/// Raises the proxy's delay to D = 45 ms (`warning` on both sides), then 90 ms (`critical`),
/// then back to 0 (`ok`).
async fn quality_phase(game: &Game, proxy: &ProxyHandle) -> R<()> {
    for (delay, level, page_level) in [
        (45u64, "warning", "warning"),
        (90, "critical", "critical"),
        (0, "ok", "ok"),
    ] {
        let set_at = Instant::now();
        proxy.set_delay_ms(delay, delay);
        let events = game
            .wait_record(
                &format!("p2p_quality {level} from both at D = {delay} ms"),
                SLOW,
                |ev| !quality_by(ev, level, A).is_empty() && !quality_by(ev, level, B).is_empty(),
            )
            .await?;
        let took = set_at.elapsed();
        let mut rtts = Vec::new();
        for who in [A, B] {
            let e = quality_by(&events, level, who)[0];
            let rtt = num(e, "rtt_ms");
            let fits = match level {
                "warning" => rtt.is_some_and(|r| r > 150.0 && r <= 300.0),
                "critical" => rtt.is_some_and(|r| r > 300.0),
                _ => rtt.is_some_and(|r| r <= 150.0),
            };
            check!(
                fits && s(e, "peer_subject_id") == Some(other(who)),
                "{who}'s p2p_quality {level} must carry an RTT in the level's range (warning > 150, critical > 300): {e}"
            );
            rtts.push(format!("{who} {} ms", fmt_num(rtt)));
        }
        // The page shows the level (the worst over its connections, here the only one).
        let (va, vb) = game
            .wait_both(&format!("#quality={page_level}"), WAIT, |v| {
                v.quality.as_deref() == Some(page_level)
            })
            .await?;
        check!(
            va.phase_is("playing") && vb.phase_is("playing"),
            "a slow link does not stop the game: {va:?} {vb:?}"
        );
        game.figure(format!(
            "D = {delay} ms (expected RTT ≈ 4·D + base): {level} after {}, rtt_ms {}",
            ms(took),
            rtts.join(", ")
        ));
    }
    // Levels in order: a warning, then a critical after it, then ok after that and last, for
    // both. Each level comes from one unsmoothed getStats sample, so a sample taken while the
    // delay changes may add a step (e.g. warning → ok → warning); the exact sequence is a
    // figure, not a rule.
    let events = game.events()?;
    let mut sequences = Vec::new();
    for who in [A, B] {
        let levels: Vec<&str> = events_by(&events, Ev::P2pQuality, who)
            .iter()
            .filter_map(|e| s(e, "level"))
            .collect();
        check!(
            in_order(&levels, &["warning", "critical", "ok"]) && levels.last() == Some(&"ok"),
            "{who}'s quality changes must pass warning, then critical, then end at ok: {levels:?}"
        );
        sequences.push(format!("{who} {}", levels.join(" → ")));
    }
    game.figure(format!("quality changes: {}", sequences.join("; ")));
    game.figure(format!(
        "episodes (RTT medians per episode across the phases) — {A}: {}; {B}: {}",
        summaries_text(&events, A),
        summaries_text(&events, B)
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2 (secret) + 5: minted credentials, permanent cut
// ---------------------------------------------------------------------------------------------

const CUT_SCENE: &str = "g_cut";
/// A 1 s disconnect grace and 3 s per restart attempt: three attempts fail in ~9 s.
const CUT_GAME: &str = "episode_ms = 4000\nepisodes = 1000\nquality_interval_ms = 500\ndisconnect_grace_ms = 1000\nrestart_timeout_ms = 3000\n";
const SECRET: &str = "pairlab-e2e-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_credentials_relay_and_a_permanent_cut_ends_the_game() {
    let _serial = SERIAL.lock().await;
    let rig = must(
        RelayRig::start(TurnAuth::Secret {
            secret: SECRET.into(),
        })
        .await,
    );
    let toml = scene_toml(CUT_SCENE, true, None, CUT_GAME, &rig.turn_toml(600));
    let game = Game::start("cut", CUT_SCENE, &toml, [""; 2]).await;
    let outcome = cut_scenario(&game, &rig).await;
    game.finish(outcome, Some(&rig)).await;
    drop(rig);
}

async fn cut_scenario(game: &Game, rig: &RelayRig) -> R<()> {
    let game_id = connected(game, "relay").await?;
    // coturn runs with --use-auth-secret only: it relays for a browser only with a credential
    // the server minted from the shared secret (coturn's REST scheme), so `relay` above is the
    // proof that the minted per-participant credentials are valid.
    let proxy = rig.proxy();
    let paused_at = Instant::now();
    proxy.pause(true);
    let events = game
        .wait_record(
            "p2p_connection_failed and game_ended",
            Duration::from_secs(60),
            |ev| {
                !events_of(ev, Ev::P2pConnectionFailed).is_empty()
                    && !events_of(ev, Ev::GameEnded).is_empty()
            },
        )
        .await?;
    let to_ended = paused_at.elapsed();
    let failed = events_of(&events, Ev::P2pConnectionFailed);
    let reporter = s(failed[0], "subject_id").unwrap_or("").to_owned();
    for e in &failed {
        let who = s(e, "subject_id").unwrap_or("");
        check!(
            s(e, "game_id") == Some(game_id.as_str())
                && s(e, "peer_subject_id") == Some(other(who))
                && e.get("attempts").and_then(Value::as_u64) == Some(3),
            "p2p_connection_failed must follow 3 failed attempts on this game's pair: {e}"
        );
        // Its three attempts: started and failed each, none succeeded.
        let attempts: Vec<(u64, &str)> = events_by(&events, Ev::P2pIceRestart, who)
            .iter()
            .filter_map(|r| Some((r.get("attempt")?.as_u64()?, s(r, "outcome")?)))
            .collect();
        check!(
            attempts
                == [
                    (1, "started"),
                    (1, "failed"),
                    (2, "started"),
                    (2, "failed"),
                    (3, "started"),
                    (3, "failed")
                ],
            "{who} must report attempts 1..3 each started then failed: {attempts:?}"
        );
    }
    let ended = events_of(&events, Ev::GameEnded);
    check!(
        ended.len() == 1
            && s(ended[0], "game_id") == Some(game_id.as_str())
            && s(ended[0], "reason") == Some("connection_failed")
            && s(ended[0], "subject_id") == Some(reporter.as_str()),
        "exactly one game_ended (connection_failed, by {reporter}, the first reporter): {ended:?}"
    );
    let order = event_names(&events);
    let failed_at = position_of(&events, Ev::P2pConnectionFailed);
    let ended_at = position_of(&events, Ev::GameEnded);
    check!(
        failed_at < ended_at,
        "game_ended must follow p2p_connection_failed: {order:?}"
    );
    // Both pages: the game ended, with the server's sentence.
    let (va, vb) = game
        .wait_both("data-game-phase=ended with a #message", WAIT, |v| {
            v.phase_is("ended") && !v.message.as_deref().unwrap_or("").is_empty()
        })
        .await?;
    let durations: Vec<String> = restarts_with(&events, "failed")
        .iter()
        .map(|e| {
            format!(
                "{}#{} {} ms",
                s(e, "subject_id").unwrap_or("?"),
                e.get("attempt").unwrap_or(&Value::Null),
                fmt_num(num(e, "duration_ms"))
            )
        })
        .collect();
    let first_started = restarts_with(&events, "started").len();
    game.figure(format!(
        "permanent cut: game_ended {} after the pause (reported by {reporter}); {first_started} restart attempts started, failed after: {}; \
         pages: {A} {:?} {:?}; {B} {:?} {:?}",
        ms(to_ended),
        durations.join(", "),
        va.phase,
        va.message,
        vb.phase,
        vb.message
    ));
    Ok(())
}
