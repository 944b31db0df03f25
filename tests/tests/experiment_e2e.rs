//! End to end, a researcher's own experiment: the built `pairlab` binary, two separate headless
//! Chromium processes, the public JavaScript API (`/pairlab.js`), and a stand-in for the
//! recruiter's site ([`Landing`]) where participants are sent at the end.
//!
//! - [`example_study_plays_records_and_returns_with_its_completion_code`]: the README's example
//!   (`examples/rock-paper-scissors/`, served with `--site`) matches two participants, who play
//!   ten rounds over the P2P connection (reliable moves, unreliable heartbeats), each records
//!   one event of their own, and both land on the completion URL with every placeholder
//!   filled; the record shows every step. `/metrics` (with its token) counts exactly the
//!   record's lines, and `pairlab export` on the run's data folder gives one `custom.csv` row
//!   per recorded event and each participant's ending. Then the server restarts on the same
//!   data folder and a participant who finished is not let in again.
//! - [`built_in_page_sends_every_outcome_home`]: the built-in page, on one server with three
//!   scenes: a hidden tab is recorded (attention, with its duration); a partner who leaves
//!   sends the other to the `partner_lost` URL; a lone participant whose waiting time runs out
//!   goes to the `waitroom_timeout` URL; a participant whose server RTT is above
//!   `max_entry_server_rtt_ms` (through a TCP proxy that delays every byte) is refused at
//!   entry and sent to the `entry_refused` URL.
//!
//! Needs what `tests/tests/e2e.rs` needs (`./run.sh test` builds it). Work folders in
//! `target/e2e/<test>/`.

use std::error::Error;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use pairlab_tests::http::http_get_with;
use pairlab_tests::landing::Landing;
use pairlab_tests::record::{
    events_by as lines_for, events_of as lines, read_events, wait_for_events,
    ResearchEventKind as Ev,
};
use pairlab_tests::tcp_delay::TcpDelayProxy;
use pairlab_tests::{
    check, http_get, must, workspace_root, Browser, ChromeDriver, Server, ServerOptions, WorkDir,
    WAIT,
};
use serde_json::Value;

type R<T> = Result<T, Box<dyn Error>>;

/// One test at a time: two Chromiums each already fill the machine's two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `key=value` pairs of a request target's query.
fn query(target: &str) -> Vec<(String, String)> {
    let url = url::Url::parse(&format!("http://landing{target}"));
    url.map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn param(target: &str, key: &str) -> Option<String> {
    query(target)
        .into_iter()
        .find_map(|(k, v)| (k == key).then_some(v))
}

/// What to show when a scenario fails: the pages, the record, the server's log.
async fn diagnostics(server: &Server, scenes: &[&str], browsers: &[&Browser]) -> String {
    let mut out = String::new();
    for b in browsers {
        let status = b
            .execute(
                "const s = document.getElementById('status'); return [location.href, document.body && document.body.dataset.state, s && s.textContent];",
                vec![],
            )
            .await
            .map_or_else(|e| format!("(unreadable: {e})"), |v| v.to_string());
        let _ = writeln!(out, "page {}: {status}", b.name());
    }
    for scene in scenes {
        let path = server.events_path(scene);
        let _ = writeln!(out, "record {}:", path.display());
        for e in read_events(&path).unwrap_or_default() {
            let _ = writeln!(out, "  {e}");
        }
    }
    let _ = writeln!(out, "server log:\n{}", server.log_tail(40));
    out
}

async fn close_all(browsers: Vec<Browser>) {
    for b in browsers {
        let name = b.name().to_owned();
        if let Err(e) = b.close().await {
            println!("[experiment] closing {name}: {e} (its processes are killed anyway)");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The README's example
// ---------------------------------------------------------------------------------------------

const RPS_SCENE: &str = "rps";
/// The example server's `--metrics-token`.
const METRICS_TOKEN: &str = "experiment-e2e-metrics-token";

fn rps_toml(landing: &Landing) -> String {
    let done = landing.url(
        "/complete?cc={completion_code}&pid={subject_id}&game={game_id}&p={player_index}&study={study_id}&session={session_id}",
    );
    format!(
        r#"
[[scene]]
id = "rps"
group_size = 2
matchmaker = "latency_fifo"
max_server_rtt_ms = 200
max_p2p_rtt_ms = 150
waitroom_timeout_ms = 60000

[scene.game.settings]
rounds = 10

[scene.outcomes.completed]
code = "RPSDONE"
url = "{done}"
"#
    )
}

/// The example's page of `browser`: `#status`, `#score`, `#partner`, and whether the move
/// buttons are shown.
async fn rps_view(browser: &Browser) -> R<Value> {
    Ok(browser
        .execute(
            "const t = (id) => { const e = document.getElementById(id); return e ? e.textContent : null; };
             const m = document.getElementById('moves');
             return { href: location.href, status: t('status'), score: t('score'), partner: t('partner'),
                      moves: !!m && !m.hidden };",
            vec![],
        )
        .await?)
}

/// The number in the example's "Partner here (N)." line.
fn heartbeats(view: &Value) -> u64 {
    view["partner"]
        .as_str()
        .and_then(|t| t.split(['(', ')']).nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn wait_rps(browser: &Browser, what: &str, done: impl Fn(&Value) -> bool) -> R<Value> {
    let wait = pairlab_tests::process::Wait::new(format!("{}: {what}", browser.name()), WAIT);
    loop {
        let view = rps_view(browser).await?;
        if done(&view) {
            return Ok(view);
        }
        wait.tick(&view).await?;
    }
}

async fn click(browser: &Browser, mv: &str) -> R<()> {
    browser
        .execute(
            "document.querySelector(`[data-move=\"${arguments[0]}\"]`).click(); return true;",
            vec![Value::from(mv)],
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_study_plays_records_and_returns_with_its_completion_code() {
    let _serial = SERIAL.lock().await;
    let work = must(WorkDir::fresh("experiment-example"));
    let landing = must(Landing::start().await);
    let site = workspace_root().join("examples/rock-paper-scissors");
    let options = ServerOptions {
        extra_args: vec![
            "--site".into(),
            site.display().to_string(),
            "--metrics-token".into(),
            METRICS_TOKEN.into(),
        ],
        ..ServerOptions::default()
    };
    let toml = rps_toml(&landing);
    let server = must(Server::start_with(&work, Some(&toml), &options).await);
    let driver = must(ChromeDriver::start(&work).await);
    let (a, b) = tokio::join!(
        Browser::open(&driver, &work, "rps-A"),
        Browser::open(&driver, &work, "rps-B")
    );
    let (a, b) = (must(a), must(b));
    let outcome = example_scenario(&server, &landing, &a, &b).await;
    let (server, outcome) = match outcome {
        Ok(()) => {
            // Same data folder, a new process: the finished participant stays finished.
            server.stop().await;
            let server = must(Server::start_with(&work, Some(&toml), &options).await);
            let outcome = restart_scenario(&server, &a).await;
            (server, outcome)
        }
        Err(e) => (server, Err(e)),
    };
    let failure = match outcome {
        Ok(()) => None,
        Err(e) => Some(format!(
            "{e}\n\n{}",
            diagnostics(&server, &[RPS_SCENE], &[&a, &b]).await
        )),
    };
    close_all(vec![a, b]).await;
    drop(driver);
    drop(server);
    if let Some(failure) = failure {
        panic!("example study failed: {failure}");
    }
}

async fn example_scenario(server: &Server, landing: &Landing, a: &Browser, b: &Browser) -> R<()> {
    let link = |who: &str, session: &str| {
        server.url(&format!(
            "/?PROLIFIC_PID={who}&STUDY_ID=study-1&SESSION_ID={session}"
        ))
    };
    let (url_a, url_b) = (link("rps-A", "sess-A"), link("rps-B", "sess-B"));
    let (ra, rb) = tokio::join!(a.goto(&url_a), b.goto(&url_b));
    ra?;
    rb?;
    for browser in [a, b] {
        wait_rps(browser, "the first round", |v| v["moves"] == true).await?;
    }
    // Ten rounds: A plays rock every time; B plays scissors in rounds 1-7 (A wins), paper in
    // rounds 8-10 (B wins).
    for round in 1..=10u32 {
        if round == 10 {
            // Enough heartbeats (unreliable, every 100 ms) both ways before the game ends.
            for browser in [a, b] {
                wait_rps(browser, "ten heartbeats from the partner", |v| {
                    heartbeats(v) >= 10
                })
                .await?;
            }
        }
        click(a, "rock").await?;
        click(b, if round <= 7 { "scissors" } else { "paper" }).await?;
        let done = format!("Round {round}:");
        for browser in [a, b] {
            wait_rps(browser, &format!("round {round} settled"), |v| {
                v["score"].as_str().is_some_and(|s| s.starts_with(&done))
            })
            .await?;
        }
    }
    let path = server.events_path(RPS_SCENE);
    let events = wait_for_events(&path, "both outcomes", WAIT, |ev| {
        lines(ev, Ev::ParticipantOutcome).len() >= 2
    })
    .await?;
    let game = lines(&events, Ev::GameCreated);
    check!(game.len() == 1, "one game, got {}", game.len());
    let game_id = game[0]["game_id"].as_str().unwrap_or_default().to_owned();
    let probe = lines(&events, Ev::ProbeResult);
    check!(
        probe
            .iter()
            .any(|p| p["accepted"] == true || p["outcome"] == "accepted"),
        "an accepted probe: {probe:?}"
    );
    for (who, session, won) in [("rps-A", "sess-A", 7), ("rps-B", "sess-B", 3)] {
        let joined = lines_for(&events, Ev::ParticipantJoined, who);
        check!(joined.len() == 1, "{who} joined once: {joined:?}");
        let recruiter = &joined[0]["recruiter"];
        check!(
            recruiter["PROLIFIC_PID"] == who
                && recruiter["STUDY_ID"] == "study-1"
                && recruiter["SESSION_ID"] == session,
            "{who}'s recruiter parameters in participant_joined: {}",
            joined[0]
        );
        let custom = lines_for(&events, Ev::Custom, who);
        check!(custom.len() == 1, "{who} recorded one event: {custom:?}");
        let c = custom[0];
        check!(
            c["name"] == "rps_result"
                || c["custom_event"] == "rps_result"
                || c["type"] == "rps_result",
            "{who}'s event is rps_result: {c}"
        );
        check!(
            c["game_id"] == game_id.as_str(),
            "{who}'s event is attributed to the game: {c}"
        );
        let f = &c["fields"];
        check!(
            f["wins"] == won && f["rounds"] == 10,
            "{who} won {won} of 10: {c}"
        );
        for side in ["sent", "received"] {
            let moves = f[side]["moves"].as_u64().unwrap_or(0);
            let beats = f[side]["beats"].as_u64().unwrap_or(0);
            check!(
                moves == 10,
                "{who} {side} 10 moves (reliable), got {moves}: {c}"
            );
            check!(
                beats >= 10,
                "{who} {side} at least 10 heartbeats (unreliable), got {beats}: {c}"
            );
        }
        let outcome = lines_for(&events, Ev::ParticipantOutcome, who);
        check!(
            outcome.len() == 1
                && outcome[0]["outcome"] == "completed"
                && outcome[0]["completion_code"] == "RPSDONE",
            "{who}'s outcome: {outcome:?}"
        );
        let hit = landing
            .wait_for(&format!("/complete?cc=RPSDONE&pid={who}&"), WAIT)
            .await?;
        let index = outcome[0]["player_index"].as_u64();
        check!(
            param(&hit, "game").as_deref() == Some(game_id.as_str())
                && param(&hit, "p").and_then(|p| p.parse().ok()) == index
                && param(&hit, "study").as_deref() == Some("study-1")
                && param(&hit, "session").as_deref() == Some(session),
            "{who} landed with every placeholder filled: {hit} (game {game_id}, player {index:?})"
        );
    }
    println!(
        "[experiment] example: game {game_id}; landed: {:?}",
        landing.hits()
    );
    metrics_count_the_record(server).await?;
    export_tabulates_the_run(server, &game_id)?;
    Ok(())
}

/// `/metrics` answers only with the token, and its `pairlab_record_events_total` equals the
/// record's lines, event by event.
async fn metrics_count_the_record(server: &Server) -> R<()> {
    let (status, _) = http_get(server.port(), "/metrics").await?;
    check!(status == 401, "/metrics without the token: {status}");
    let auth = format!("Bearer {METRICS_TOKEN}");
    let (status, body) =
        http_get_with(server.port(), "/metrics", &[("authorization", &auth)]).await?;
    check!(status == 200, "/metrics with the token: {status}");
    let text = String::from_utf8(body)?;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?;
    let events = read_events(&server.events_path(RPS_SCENE))?;
    let mut in_record = std::collections::BTreeMap::<String, f64>::new();
    for e in &events {
        let name = e["event"].as_str().unwrap_or("?").to_owned();
        *in_record.entry(name).or_default() += 1.0;
    }
    let mut scraped = std::collections::BTreeMap::<String, f64>::new();
    for s in scrape
        .samples
        .iter()
        .filter(|s| s.metric == "pairlab_record_events_total")
        .filter(|s| s.labels.get("scene") == Some(RPS_SCENE))
    {
        if let (Some(event), prometheus_parse::Value::Counter(v)) =
            (s.labels.get("event"), &s.value)
        {
            if *v > 0.0 {
                scraped.insert(event.to_owned(), *v);
            }
        }
    }
    check!(
        scraped == in_record,
        "/metrics counts the record's lines event by event: scraped {scraped:?}, record {in_record:?}"
    );
    Ok(())
}

/// `pairlab export` on this run's data folder: one `custom.csv` row per `custom` line, and
/// both participants ended `completed`.
fn export_tabulates_the_run(server: &Server, game_id: &str) -> R<()> {
    let out = server.data_dir().with_file_name("export");
    let status = std::process::Command::new(server.bin())
        .arg("export")
        .arg(server.data_dir())
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()?;
    check!(status.success(), "pairlab export: {status}");
    let rows = |file: &str| -> R<Vec<csv::StringRecord>> {
        let mut reader = csv::Reader::from_path(out.join(file))?;
        let headers = reader.headers()?.clone();
        let mut rows = vec![headers];
        for row in reader.records() {
            rows.push(row?);
        }
        Ok(rows)
    };
    let col = |rows: &[csv::StringRecord], name: &str| rows[0].iter().position(|h| h == name);
    let custom = rows("custom.csv")?;
    let (Some(name), Some(game), Some(subject)) = (
        col(&custom, "name"),
        col(&custom, "game_id"),
        col(&custom, "subject_id"),
    ) else {
        return Err(format!("custom.csv's columns: {:?}", custom[0]).into());
    };
    let events = read_events(&server.events_path(RPS_SCENE))?;
    let lines = lines(&events, Ev::Custom);
    check!(
        custom.len() - 1 == lines.len(),
        "custom.csv has one row per custom line: {} rows, {} lines",
        custom.len() - 1,
        lines.len()
    );
    for (row, line) in custom[1..].iter().zip(&lines) {
        check!(
            row.get(name) == Some("rps_result")
                && row.get(game) == Some(game_id)
                && row.get(subject) == line["subject_id"].as_str(),
            "custom.csv row {row:?} for the line {line}"
        );
    }
    let participants = rows("participants.csv")?;
    let (Some(subject), Some(ending)) = (
        col(&participants, "subject_id"),
        col(&participants, "ending"),
    ) else {
        return Err(format!("participants.csv's columns: {:?}", participants[0]).into());
    };
    let mut endings: Vec<(String, String)> = participants[1..]
        .iter()
        .map(|r| {
            (
                r.get(subject).unwrap_or("").to_owned(),
                r.get(ending).unwrap_or("").to_owned(),
            )
        })
        .collect();
    endings.sort();
    check!(
        endings
            == [
                ("rps-A".to_owned(), "completed".to_owned()),
                ("rps-B".to_owned(), "completed".to_owned())
            ],
        "participants.csv: both completed: {endings:?}"
    );
    Ok(())
}

async fn restart_scenario(server: &Server, a: &Browser) -> R<()> {
    a.goto(&server.url("/?PROLIFIC_PID=rps-A&STUDY_ID=study-1&SESSION_ID=sess-A2"))
        .await?;
    let view = wait_rps(a, "refused after the restart", |v| {
        v["status"].as_str().is_some_and(|s| s.starts_with("Sorry"))
    })
    .await?;
    let events = read_events(&server.events_path(RPS_SCENE))?;
    let started = lines(&events, Ev::ServerStarted).len();
    check!(
        started == 2,
        "two server starts in the record, got {started}"
    );
    let joined = lines_for(&events, Ev::ParticipantJoined, "rps-A").len();
    check!(
        joined == 1,
        "rps-A joined only before the restart, got {joined} participant_joined"
    );
    check!(
        view["moves"] == false,
        "no game for a finished participant: {view}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The built-in page: every way home
// ---------------------------------------------------------------------------------------------

const DUO: &str = "duo";
const SOLO: &str = "solo";
const FAR: &str = "far";

fn outcomes_toml(landing: &Landing) -> String {
    let to = |name: &str| {
        landing.url(&format!(
            "/{name}?cc={{completion_code}}&pid={{subject_id}}&game={{game_id}}"
        ))
    };
    let (lost, left, timeout, refused) = (
        to("partner_lost"),
        to("left"),
        to("waitroom_timeout"),
        to("entry_refused"),
    );
    format!(
        r#"
[[scene]]
id = "duo"
group_size = 2
matchmaker = "fifo"
max_p2p_rtt_ms = 150
reconnect_grace_ms = 0

[scene.game]
episodes = 1
episode_ms = 120000

[scene.outcomes.partner_lost]
code = "LOST"
url = "{lost}"

[scene.outcomes.left]
code = "LEFT"
url = "{left}"

[[scene]]
id = "solo"
group_size = 2
matchmaker = "fifo"
waitroom_timeout_ms = 3000

[scene.outcomes.waitroom_timeout]
code = "WAITED"
url = "{timeout}"

[[scene]]
id = "far"
group_size = 2
matchmaker = "fifo"
max_entry_server_rtt_ms = 60

[scene.outcomes.entry_refused]
code = "NOENTRY"
url = "{refused}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_page_sends_every_outcome_home() {
    let _serial = SERIAL.lock().await;
    let work = must(WorkDir::fresh("experiment-outcomes"));
    let landing = must(Landing::start().await);
    let server = must(Server::start(&work, &outcomes_toml(&landing)).await);
    let driver = must(ChromeDriver::start(&work).await);
    let (a, b) = tokio::join!(
        Browser::open(&driver, &work, "out-A"),
        Browser::open(&driver, &work, "out-B")
    );
    let (a, b) = (must(a), must(b));
    let outcome = outcomes_scenario(&server, &landing, &a, &b).await;
    let failure = match outcome {
        Ok(()) => None,
        Err(e) => Some(format!(
            "{e}\n\n{}",
            diagnostics(&server, &[DUO, SOLO, FAR], &[&a, &b]).await
        )),
    };
    close_all(vec![a, b]).await;
    drop(driver);
    drop(server);
    if let Some(failure) = failure {
        panic!("outcomes failed: {failure}");
    }
}

async fn outcomes_scenario(server: &Server, landing: &Landing, a: &Browser, b: &Browser) -> R<()> {
    // 1. A game; A's tab is hidden for a while (another tab in front), then shown again.
    let url_a = server.url("/?subject_id=out-A&scene_id=duo");
    let url_b = server.url("/?subject_id=out-B&scene_id=duo");
    let (ra, rb) = tokio::join!(a.goto(&url_a), b.goto(&url_b));
    ra?;
    rb?;
    for browser in [a, b] {
        browser
            .wait_game("the game is playing", WAIT, |v| v.phase_is("playing"))
            .await?;
    }
    let game_tab = a.current_tab().await?;
    let other = a.open_tab("about:blank").await?;
    let path = server.events_path(DUO);
    wait_for_events(&path, "out-A's page hidden", WAIT, |ev| {
        lines_for(ev, Ev::Attention, "out-A")
            .iter()
            .any(|e| e["hidden"] == true)
    })
    .await?;
    a.switch_to(&game_tab).await?;
    let events = wait_for_events(&path, "out-A's page shown again", WAIT, |ev| {
        lines_for(ev, Ev::Attention, "out-A")
            .iter()
            .any(|e| e["hidden"] == false)
    })
    .await?;
    let shown = lines_for(&events, Ev::Attention, "out-A")
        .into_iter()
        .find(|e| e["hidden"] == false)
        .cloned()
        .unwrap_or_default();
    check!(
        shown["hidden_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "the record says how long the page was hidden: {shown}"
    );
    let _ = other;

    // 2. A leaves (navigates away): B's game ends and B goes to the partner_lost URL.
    a.goto("about:blank").await?;
    let hit = landing
        .wait_for("/partner_lost?cc=LOST&pid=out-B&", WAIT)
        .await?;
    let events = read_events(&path)?;
    let game_id = lines(&events, Ev::GameCreated)
        .first()
        .and_then(|g| g["game_id"].as_str())
        .unwrap_or_default()
        .to_owned();
    check!(
        param(&hit, "game").as_deref() == Some(game_id.as_str()),
        "partner_lost URL with the game id {game_id}: {hit}"
    );
    let ended = lines(&events, Ev::GameEnded);
    check!(!ended.is_empty(), "the record has the game's end");
    check!(
        lines_for(&events, Ev::ParticipantOutcome, "out-B")
            .iter()
            .any(|o| o["outcome"] == "partner_lost" && o["completion_code"] == "LOST"),
        "out-B's outcome is partner_lost"
    );

    // 3. A lone participant waits out the scene's 3 s: the waitroom_timeout URL.
    a.goto(&server.url("/?subject_id=out-C&scene_id=solo"))
        .await?;
    landing
        .wait_for("/waitroom_timeout?cc=WAITED&pid=out-C&", WAIT)
        .await?;
    let events = read_events(&server.events_path(SOLO))?;
    check!(
        lines_for(&events, Ev::ParticipantOutcome, "out-C")
            .iter()
            .any(|o| o["outcome"] == "waitroom_timeout"),
        "out-C's outcome is waitroom_timeout"
    );

    // 4. Through a proxy that delays every byte by 50 ms each way (server RTT ≥ 100 ms, the
    //    scene allows 60): refused at entry, sent to the entry_refused URL.
    let upstream: SocketAddr = ([127, 0, 0, 1], server.port()).into();
    let proxy = TcpDelayProxy::start(upstream, Duration::from_millis(50)).await?;
    a.goto(&proxy.url("/?subject_id=out-D&scene_id=far"))
        .await?;
    landing
        .wait_for("/entry_refused?cc=NOENTRY&pid=out-D&", WAIT)
        .await?;
    let events = read_events(&server.events_path(FAR))?;
    let refused = lines_for(&events, Ev::ParticipantRefused, "out-D");
    check!(
        refused.len() == 1,
        "out-D refused once at entry: {refused:?}"
    );
    check!(
        lines_for(&events, Ev::ParticipantOutcome, "out-D")
            .iter()
            .any(|o| o["outcome"] == "entry_refused"),
        "out-D's outcome is entry_refused"
    );
    check!(
        lines_for(&events, Ev::WaitroomTimeout, "out-D").is_empty()
            && lines(&events, Ev::MatchProposed).is_empty(),
        "a refused participant never waits"
    );
    println!("[experiment] outcomes: landed {:?}", landing.hits());
    drop(proxy);
    Ok(())
}

/// The README's "Your own experiment" shows the example page as it is in `examples/`, so the
/// page a researcher copies is the one these tests run.
#[test]
fn readme_shows_the_example_page_as_it_is() {
    let root = workspace_root();
    let page = must_read(&root.join("examples/rock-paper-scissors/index.html"));
    let readme = must_read(&root.join("README.md"));
    assert!(
        readme.contains(&format!("```html\n{page}```")),
        "README.md's example page differs from examples/rock-paper-scissors/index.html"
    );
    let lines = page.lines().count();
    assert!(
        lines < 60,
        "the example page has {lines} lines; keep it under 60"
    );
}

fn must_read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
