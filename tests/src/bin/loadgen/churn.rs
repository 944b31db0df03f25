//! `churn`: games played through and forgotten. Pairs of a `fifo` scene without probe each
//! play a whole game (`hello` → `game_start` → `leave`, both members) with `--concurrency`
//! pairs in flight, `--games` in all, each member a new `subject_id`. The server's RSS is read
//! once the first `--warmup` games are over and everyone has left (before) and again after the
//! last (after), each time `--settle-s` after `/healthz` counted no participant (ended games are
//! forgotten a minute after they end: `GAME_TOMBSTONE_TTL` of the server's
//! `core/games/tombstones.rs`).
//! What stays is the done set, compact and bounded; held = after / before ≤ [`HELD_RSS_RATIO`].
//! Each point also says how the RSS splits into anonymous memory (heap, stacks) and pages of
//! files (the binary), and leaves the server's `/proc/PID/smaps` beside its log
//! (`smaps-before.txt`, `smaps-after.txt`), mapping by mapping, for finding where it went.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pairlab_tests::WorkDir;
use tokio::sync::Semaphore;

use crate::client::{fmt_opt, play_pair, Latency};
use crate::server::{start_pairlab, PairlabExt};
use crate::system::{fd_count, load_average, machine, raise_fd_limit, rss_kib, status_kib};
use crate::{LoadgenError, Result};

/// The RSS after the churn over the RSS after the warm-up that counts as held.
pub const HELD_RSS_RATIO: f64 = 1.1;

/// The scene `fifo`: pairs, first come first matched, no probe; a waiting participant times
/// out after `waitroom_timeout_ms` (an hour: [`LONG_WAIT_MS`]).
pub(crate) fn fifo_scene(waitroom_timeout_ms: u64) -> String {
    format!(
        r#"[[scene]]
id = "fifo"
group_size = 2
matchmaker = "fifo"
waitroom_timeout_ms = {waitroom_timeout_ms}
hide_lobby_count = true
"#
    )
}

/// A waitroom timeout no run reaches, ms (an hour).
pub(crate) const LONG_WAIT_MS: u64 = 3_600_000;

pub(crate) struct ChurnArgs {
    pub(crate) bin: PathBuf,
    pub(crate) log: String,
    pub(crate) games: usize,
    pub(crate) warmup: usize,
    pub(crate) concurrency: usize,
    pub(crate) settle: Duration,
    pub(crate) source_ips: u32,
    pub(crate) waitroom_timeout_ms: u64,
    /// A shell command run at each reading (`--at-point`).
    pub(crate) at_point: Option<String>,
}

/// The loopback source address of client number `i` of `count` addresses under `base`
/// (`base` + 1 + i mod count), so that the per-address limits of a front-facing server see
/// many hosts; `count` 0 means 127.0.0.1 for everyone.
pub(crate) fn source_ip(base: Ipv4Addr, count: u32, i: usize) -> Option<Ipv4Addr> {
    (count > 0).then(|| Ipv4Addr::from(u32::from(base) + 1 + (i as u32 % count)))
}

/// How many games have been played through, and the failures, together.
#[derive(Default)]
struct Played {
    done: AtomicUsize,
    failed: AtomicUsize,
    latency_us: Mutex<Vec<u32>>,
}

/// Plays games number `from..to`, `concurrency` pairs at a time.
async fn play(port: u16, args: &ChurnArgs, from: usize, to: usize, played: &Arc<Played>) {
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(to - from);
    for k in from..to {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let played = played.clone();
        let source = source_ip(Ipv4Addr::new(127, 2, 0, 0), args.source_ips, k);
        tasks.push(tokio::spawn(async move {
            match play_pair(port, &format!("churn-{k:07}"), None, source).await {
                Ok(us) => {
                    played.done.fetch_add(1, Ordering::Relaxed);
                    let mut v = played.latency_us.lock().unwrap_or_else(|p| p.into_inner());
                    v.extend(us);
                }
                Err(e) => {
                    if played.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("loadgen: churn game {k}: {e}");
                    }
                }
            }
            drop(permit);
        }));
    }
    futures_util::future::join_all(tasks).await;
}

/// One measurement point of the table.
struct Point {
    games: usize,
    rss_kib: Option<u64>,
    /// `RssAnon` and `RssFile`, KiB.
    anon_kib: Option<u64>,
    file_kib: Option<u64>,
    fds: Option<usize>,
    load: String,
}

pub(crate) async fn churn(args: ChurnArgs) -> Result<()> {
    if args.games <= args.warmup || args.warmup == 0 {
        return Err(LoadgenError::Args(
            "--warmup must be at least 1 and under --games".into(),
        ));
    }
    raise_fd_limit(args.concurrency as u64 * 2 + 512)?;
    let machine = machine();
    println!("{machine}");
    let work = WorkDir::fresh("loadgen-churn")?;
    let server = start_pairlab(
        &args.bin,
        &args.log,
        &work,
        &fifo_scene(args.waitroom_timeout_ms),
    )
    .await?;
    let (pid, port) = (server.pid(), server.port());
    let idle_kib = rss_kib(pid);
    println!(
        "churn: server pid {pid} on 127.0.0.1:{port}, idle RSS {} KiB; {} games, {} pairs in flight",
        fmt_opt(idle_kib),
        args.games,
        args.concurrency
    );
    let played = Arc::new(Played::default());
    let mut points = Vec::new();
    let started = Instant::now();
    for (from, to) in [(0, args.warmup), (args.warmup, args.games)] {
        let t0 = Instant::now();
        play(port, &args, from, to, &played).await;
        let secs = t0.elapsed().as_secs_f64();
        let nobody = server.until_nobody(Duration::from_secs(30)).await;
        println!(
            "churn: games {from}..{to} in {secs:.1} s ({:.0} games/s); participants 0: {nobody}; settling {:?}",
            (to - from) as f64 / secs,
            args.settle
        );
        tokio::time::sleep(args.settle).await;
        let name = if points.is_empty() { "before" } else { "after" };
        if let Some(cmd) = &args.at_point {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .env("PAIRLAB_PID", pid.to_string())
                .env("POINT", name)
                .status();
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => eprintln!("loadgen: churn: --at-point exited with {s}"),
                Err(e) => eprintln!("loadgen: churn: cannot run --at-point: {e}"),
            }
        }
        let smaps = work.join(&format!("smaps-{name}.txt"));
        if let Err(e) = std::fs::copy(format!("/proc/{pid}/smaps"), &smaps) {
            eprintln!("loadgen: churn: cannot copy the server's smaps: {e}");
        }
        points.push(Point {
            games: played.done.load(Ordering::Relaxed),
            rss_kib: rss_kib(pid),
            anon_kib: status_kib(pid, "RssAnon"),
            file_kib: status_kib(pid, "RssFile"),
            fds: fd_count(pid),
            load: load_average(),
        });
    }
    let total = started.elapsed();
    let participants = server.health_count("/participants").await;
    let groups = server.health_count("/groups").await;
    server.stop().await;

    let mut lat = std::mem::take(&mut *played.latency_us.lock().unwrap_or_else(|p| p.into_inner()));
    lat.sort_unstable();
    let lat = Latency::of(&lat);
    println!();
    println!(
        "## churn: {} games of a fifo pair scene (hello → game_start → leave), {} pairs in flight, waitroom_timeout_ms {}",
        args.games, args.concurrency, args.waitroom_timeout_ms
    );
    println!("{machine}");
    println!(
        "| point | games played | server RSS MB | of it anonymous / files MB | open fds | load avg |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mb =
        |kib: Option<u64>| kib.map_or("?".into(), |r| format!("{:.1}", r as f64 * 1.024 / 1000.0));
    for (name, p) in ["before (after warm-up)", "after"].iter().zip(&points) {
        println!(
            "| {name} | {} | {} | {} / {} | {} | {} |",
            p.games,
            mb(p.rss_kib),
            mb(p.anon_kib),
            mb(p.file_kib),
            fmt_opt(p.fds),
            p.load
        );
    }
    let ratio = match (points[0].rss_kib, points[1].rss_kib) {
        (Some(b), Some(a)) if b > 0 => Some(a as f64 / b as f64),
        _ => None,
    };
    println!(
        "RSS after / before: {} (held: ≤ {HELD_RSS_RATIO}: {})",
        ratio.map_or("?".into(), |r| format!("{r:.3}")),
        ratio.is_some_and(|r| r <= HELD_RSS_RATIO)
    );
    println!(
        "games played: {}, failed: {}, in {:.0} s; connect → game_start p50 {} / p99 {} / max {} µs; /healthz at the end: participants {}, groups {}",
        played.done.load(Ordering::Relaxed),
        played.failed.load(Ordering::Relaxed),
        total.as_secs_f64(),
        fmt_opt(lat.p50_us),
        fmt_opt(lat.p99_us),
        fmt_opt(lat.max_us),
        fmt_opt(participants),
        fmt_opt(groups)
    );
    println!("server log: {}", work.join("server.log").display());
    Ok(())
}
