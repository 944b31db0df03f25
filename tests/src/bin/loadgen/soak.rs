//! `soak`: a steady mix for a long time, with nothing lost. Every second, open loop, for
//! `--seconds`: `--game-rate` pairs join the `soak` scene (pairs, `fifo`, every pair probed:
//! the load generator plays both probe members, see [`crate::client::until_game`]), play their
//! game, each member sends one `episode_summary`, and both `leave` ([`REPORT_GAP`] after the
//! reports, so the reports are in before the game ends); and `--drop-rate` participants join
//! the `drop` scene (nobody is matched there), wait [`DROP_AFTER`] and close their socket
//! without `leave` (each becomes `participant_dropped` after the scene's grace).
//!
//! Every `--sample-s` a row: the server's RSS and open files (`/proc/PID/fd`), `/healthz`
//! participants, the load average. At the end, once everyone is gone: the record's lines by kind
//! against what the load generator did (joins, games, reports, leaves, drops), the lines in the
//! files against `/healthz` `record.lines_written`, and `lines_lost` and `queue_overflows`
//! (both must be 0).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pairlab_tests::record::{events_of, read_events, ResearchEventKind as Ev};
use pairlab_tests::WorkDir;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{connect_scene, fmt_opt, leave, until_game, Ws, CONNECT_TIMEOUT};
use crate::flood::big_report;
use crate::server::{start_pairlab, PairlabExt};
use crate::system::{fd_count, load_average, machine, raise_fd_limit, rss_kib};
use crate::{LoadgenError, Result};

/// How long both members wait after sending their reports before they leave.
pub const REPORT_GAP: Duration = Duration::from_secs(1);

/// How long a dropping participant stays before it closes its socket.
pub const DROP_AFTER: Duration = Duration::from_millis(500);

/// The scenes: `soak` (pairs, probed, reconnect grace 1 s) and `drop` (nobody matched:
/// `latency_fifo` with `max_server_rtt_ms` = 0.001; grace 1 s).
const SOAK_SCENES: &str = r#"[[scene]]
id = "soak"
group_size = 2
matchmaker = "fifo"
max_p2p_rtt_ms = 1000
probe_timeout_ms = 10000
reconnect_grace_ms = 1000
waitroom_timeout_ms = 3600000
hide_lobby_count = true

[[scene]]
id = "drop"
group_size = 2
matchmaker = "latency_fifo"
max_server_rtt_ms = 0.001
reconnect_grace_ms = 1000
waitroom_timeout_ms = 3600000
hide_lobby_count = true
"#;

pub(crate) struct SoakArgs {
    pub(crate) bin: PathBuf,
    pub(crate) log: String,
    pub(crate) game_rate: f64,
    pub(crate) drop_rate: f64,
    pub(crate) seconds: Duration,
    pub(crate) sample: Duration,
}

/// What the load generator did, counted when the server answered it.
#[derive(Default)]
struct Done {
    joined_soak: AtomicU64,
    joined_drop: AtomicU64,
    /// Games whose both members got `game_start`.
    games: AtomicU64,
    /// Games whose members got `game_start` after a probe.
    probed: AtomicU64,
    reports: AtomicU64,
    leaves: AtomicU64,
    drops: AtomicU64,
    failed: AtomicU64,
}

/// One member of a soak pair: joins, plays the probe and the game, reports, leaves.
async fn member(port: u16, subject: String, done: Arc<Done>) -> std::result::Result<bool, String> {
    let mut ws: Ws = connect_scene(port, &subject, Some("soak")).await?;
    done.joined_soak.fetch_add(1, Ordering::Relaxed);
    let game = until_game(&mut ws, CONNECT_TIMEOUT).await?;
    let partner = game.partners.first().copied().unwrap_or_default();
    use futures_util::SinkExt;
    ws.send(Message::text(big_report(&game.game_id, partner, 1, 0)))
        .await
        .map_err(|e| format!("send report: {e}"))?;
    done.reports.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(REPORT_GAP).await;
    leave(ws).await;
    done.leaves.fetch_add(1, Ordering::Relaxed);
    Ok(game.probed)
}

/// One dropping participant: joins the `drop` scene, stays [`DROP_AFTER`], closes the TCP
/// connection without a close frame.
async fn dropper(port: u16, subject: String, done: Arc<Done>) -> std::result::Result<(), String> {
    let ws = connect_scene(port, &subject, Some("drop")).await?;
    done.joined_drop.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(DROP_AFTER).await;
    drop(ws);
    done.drops.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// One sample row.
struct Sample {
    at_s: f64,
    rss_kib: Option<u64>,
    fds: Option<usize>,
    participants: Option<u64>,
    load: String,
}

pub(crate) async fn soak(args: SoakArgs) -> Result<()> {
    if !(args.game_rate > 0.0 && args.drop_rate >= 0.0 && args.game_rate.is_finite()) {
        return Err(LoadgenError::Args(
            "--game-rate must be positive and --drop-rate at least 0".into(),
        ));
    }
    raise_fd_limit(((args.game_rate * 2.0 + args.drop_rate) * 30.0) as u64 + 1024)?;
    let machine = machine();
    println!("{machine}");
    let work = WorkDir::fresh("loadgen-soak")?;
    let mut server = start_pairlab(&args.bin, &args.log, &work, SOAK_SCENES).await?;
    let (pid, port) = (server.pid(), server.port());
    println!(
        "soak: server pid {pid} on 127.0.0.1:{port}; {} games/s and {} drops/s for {:?}",
        args.game_rate, args.drop_rate, args.seconds
    );
    let done = Arc::new(Done::default());
    let t0 = Instant::now();
    let end = t0 + args.seconds;
    // The arrivals, open loop: game pairs and drops interleaved on one schedule.
    let arrivals = {
        let done = done.clone();
        let (game_rate, drop_rate) = (args.game_rate, args.drop_rate);
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            let (mut games, mut drops) = (0u64, 0u64);
            loop {
                let next_game = t0 + Duration::from_secs_f64(games as f64 / game_rate);
                let next_drop = (drop_rate > 0.0)
                    .then(|| t0 + Duration::from_secs_f64(drops as f64 / drop_rate));
                let (at, is_game) = match next_drop {
                    Some(d) if d < next_game => (d, false),
                    _ => (next_game, true),
                };
                if at >= end {
                    break;
                }
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                let done = done.clone();
                if is_game {
                    let k = games;
                    games += 1;
                    tasks.push(tokio::spawn(async move {
                        let (a, b) = tokio::join!(
                            member(port, format!("soak-{k:07}-a"), done.clone()),
                            member(port, format!("soak-{k:07}-b"), done.clone())
                        );
                        match (a, b) {
                            (Ok(pa), Ok(pb)) => {
                                done.games.fetch_add(1, Ordering::Relaxed);
                                if pa && pb {
                                    done.probed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            (Err(e), _) | (_, Err(e)) => {
                                if done.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                                    eprintln!("loadgen: soak pair {k}: {e}");
                                }
                            }
                        }
                    }));
                } else {
                    let k = drops;
                    drops += 1;
                    tasks.push(tokio::spawn(async move {
                        if let Err(e) = dropper(port, format!("drop-{k:07}"), done.clone()).await {
                            if done.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("loadgen: drop {k}: {e}");
                            }
                        }
                    }));
                }
                // Forget the finished tasks so that a long soak does not grow the list.
                tasks.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
            }
            futures_util::future::join_all(tasks).await;
        })
    };
    let mut samples = Vec::new();
    let mut next = t0;
    while Instant::now() < end {
        next += args.sample;
        tokio::time::sleep_until(tokio::time::Instant::from_std(next.min(end))).await;
        if !server.is_running() {
            return Err(server.failed("stopped during the soak"));
        }
        let s = Sample {
            at_s: t0.elapsed().as_secs_f64(),
            rss_kib: rss_kib(pid),
            fds: fd_count(pid),
            participants: server.health_count("/participants").await,
            load: load_average(),
        };
        println!(
            "soak: {:>6.0} s  RSS {} KiB  fds {}  participants {}  load {}",
            s.at_s,
            fmt_opt(s.rss_kib),
            fmt_opt(s.fds),
            fmt_opt(s.participants),
            s.load
        );
        samples.push(s);
    }
    let _ = arrivals.await;
    // Drops become participant_dropped after the grace; the record syncs within a second.
    let nobody = server.until_nobody(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let health = server.healthz().await.ok();
    let count = |p: &str| health.as_ref().and_then(|h| h.pointer(p)?.as_u64());
    let (written, lost, overflow) = (
        count("/record/lines_written"),
        count("/record/lines_lost"),
        count("/record/queue_overflows"),
    );
    let soak_ev = read_events(&server.events_path("soak"))?;
    let drop_ev = read_events(&server.events_path("drop"))?;
    let (rss_end, fds_end) = (rss_kib(pid), fd_count(pid));
    server.stop().await;

    let n = |ev: &[serde_json::Value], k: Ev| events_of(ev, k).len() as u64;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let games = get(&done.games);
    let checks: [(&str, u64, u64); 7] = [
        (
            "participant_joined (soak)",
            n(&soak_ev, Ev::ParticipantJoined),
            get(&done.joined_soak),
        ),
        (
            "probe_started",
            n(&soak_ev, Ev::ProbeStarted),
            get(&done.probed),
        ),
        ("game_created", n(&soak_ev, Ev::GameCreated), games),
        (
            "episode_summary",
            n(&soak_ev, Ev::EpisodeSummary),
            get(&done.reports),
        ),
        (
            "participant_left",
            n(&soak_ev, Ev::ParticipantLeft),
            get(&done.leaves),
        ),
        (
            "participant_joined (drop)",
            n(&drop_ev, Ev::ParticipantJoined),
            get(&done.joined_drop),
        ),
        (
            "participant_dropped (drop)",
            n(&drop_ev, Ev::ParticipantDropped),
            get(&done.drops),
        ),
    ];
    let in_files = (soak_ev.len() + drop_ev.len()) as u64;

    println!();
    println!(
        "## soak: {} game pairs/s (probe, game, one episode_summary each, leave) and {} drops/s for {:?}",
        args.game_rate, args.drop_rate, args.seconds
    );
    println!("{machine}");
    println!("| at s | server RSS MB | open fds | participants | load avg |");
    println!("|---:|---:|---:|---:|---:|");
    let mb = |k: Option<u64>| k.map_or("?".into(), |k| format!("{:.1}", k as f64 * 1.024 / 1000.0));
    for s in &samples {
        println!(
            "| {:.0} | {} | {} | {} | {} |",
            s.at_s,
            mb(s.rss_kib),
            fmt_opt(s.fds),
            fmt_opt(s.participants),
            s.load
        );
    }
    println!(
        "| end (everyone gone: {nobody}) | {} | {} | 0 | {} |",
        mb(rss_end),
        fmt_opt(fds_end),
        load_average()
    );
    println!();
    println!("| record lines | in the record | expected | equal |");
    println!("|---|---:|---:|---|");
    let mut all = true;
    for (name, got, want) in checks {
        all &= got == want;
        println!("| {name} | {got} | {want} | {} |", got == want);
    }
    let same = written == Some(in_files);
    println!(
        "| all lines in the files vs /healthz lines_written | {in_files} | {} | {same} |",
        fmt_opt(written)
    );
    println!(
        "/healthz record: lines_lost {}, queue_overflows {}; pairs played {games}, failed {}",
        fmt_opt(lost),
        fmt_opt(overflow),
        get(&done.failed)
    );
    println!(
        "nothing lost: {}",
        all && same && lost == Some(0) && overflow == Some(0) && get(&done.failed) == 0
    );
    println!("server log: {}", work.join("server.log").display());
    Ok(())
}
