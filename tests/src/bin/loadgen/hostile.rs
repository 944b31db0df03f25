//! `hostile`: connections that never finish an HTTP request, while honest pairs keep playing.
//! `--idle` TCP connections send nothing; `--slow` connections send a request line and then
//! one `--slow-chunk`-byte header line every `--slow-every-ms`, never the blank line that ends
//! the head (up to `--slow-max-kb`). They come from `--source-ips` loopback addresses
//! (127.1.0.1, …) so that a per-address cap alone does not stop them. Meanwhile, from
//! 127.0.0.1, `--honest-rate` pairs a second play a game of a `fifo` scene
//! (connect → `game_start` → `leave`) from the start of the run to its end.
//!
//! Reported: when the server closed the hostile connections (how many within
//! [`CLOSE_WITHIN`], the time of the last close, how many were still open when the run ended
//! after `--seconds`), the honest pairs (played, failed, connect → `game_start` p50/p99/max,
//! during the hostile phase), and the server's RSS (idle, peak, at the end) and open files.
//! The server runs with its default connection caps (an empty `[server]` table).
//! `--server-nofile N` starts the server with a soft open-file limit of N, as under
//! `ulimit -n N` (the load generator keeps its own, higher one).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pairlab_tests::WorkDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::churn::{fifo_scene, source_ip, LONG_WAIT_MS};
use crate::client::{fmt_opt, play_pair, tcp_from, Latency};
use crate::server::{start_pairlab, PairlabExt};
use crate::system::{fd_count, load_average, machine, raise_fd_limit, rss_kib, set_fd_soft_limit};
use crate::{LoadgenError, Result};

/// Every hostile connection should be closed by the server within this long of opening.
pub const CLOSE_WITHIN: Duration = Duration::from_secs(15);

/// The RSS the server should be back under once the hostile connections are gone, MB.
pub const RSS_BOUND_MB: f64 = 50.0;

pub(crate) struct HostileArgs {
    pub(crate) bin: PathBuf,
    pub(crate) log: String,
    pub(crate) idle: usize,
    pub(crate) slow: usize,
    pub(crate) slow_chunk: usize,
    pub(crate) slow_every: Duration,
    pub(crate) slow_max_bytes: usize,
    pub(crate) source_ips: u32,
    pub(crate) honest_rate: f64,
    pub(crate) seconds: Duration,
    pub(crate) server_nofile: Option<u64>,
}

/// What happened to the hostile connections, together.
#[derive(Default)]
struct Hostile {
    opened: AtomicUsize,
    refused: AtomicUsize,
    /// When the server closed each connection it closed, ms after it opened.
    closed_after_ms: Mutex<Vec<u64>>,
    /// Open now.
    open: AtomicUsize,
}

/// One hostile connection: open, then send nothing (`slow` false) or a never-ending head,
/// until the server closes it or `end` passes.
async fn hostile_conn(
    tcp: std::io::Result<TcpStream>,
    slow: Option<(usize, Duration, usize)>,
    end: Instant,
    state: Arc<Hostile>,
) {
    let Ok(mut tcp) = tcp else {
        state.refused.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let opened = Instant::now();
    state.opened.fetch_add(1, Ordering::Relaxed);
    state.open.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = tcp.split();
    let mut sent = 0usize;
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(slow.map_or(Duration::from_secs(3600), |s| s.1));
    if slow.is_some() {
        let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
        if wr.write_all(head).await.is_err() {
            return closed(&state, opened);
        }
    }
    let deadline = tokio::time::Instant::from_std(end);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                state.open.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            r = rd.read(&mut buf) => match r {
                // A response (431, 408) before the close is fine: keep reading until EOF.
                Ok(n) if n > 0 => {}
                _ => return closed(&state, opened),
            },
            _ = tick.tick(), if slow.is_some_and(|(_, _, max)| sent < max) => {
                let chunk = slow.map_or(0, |s| s.0);
                let line = format!("X-Pad-{sent}: {}\r\n", "a".repeat(chunk.saturating_sub(12)));
                sent += line.len();
                if wr.write_all(line.as_bytes()).await.is_err() {
                    return closed(&state, opened);
                }
            }
        }
    }
}

fn closed(state: &Hostile, opened: Instant) {
    state.open.fetch_sub(1, Ordering::Relaxed);
    let ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut v = state
        .closed_after_ms
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    v.push(ms);
}

pub(crate) async fn hostile(args: HostileArgs) -> Result<()> {
    if !(args.honest_rate > 0.0 && args.honest_rate.is_finite()) {
        return Err(LoadgenError::Args("--honest-rate must be positive".into()));
    }
    let needed = (args.idle + args.slow) as u64 + 2048;
    raise_fd_limit(needed)?;
    let machine = machine();
    println!("{machine}");
    let work = WorkDir::fresh("loadgen-hostile")?;
    // The server inherits the soft limit in force when it starts.
    let own = match args.server_nofile {
        Some(n) => Some(set_fd_soft_limit(n)?),
        None => None,
    };
    // An empty `[server]` table: the server's default connection caps, the ones this scenario
    // attacks (without it the load generator raises them, see `LOADGEN_SERVER_TABLE`).
    let scene = format!("{}\n[server]\n", fifo_scene(LONG_WAIT_MS));
    let started = start_pairlab(&args.bin, &args.log, &work, &scene).await;
    if let Some(own) = own {
        set_fd_soft_limit(own)?;
    }
    let mut server = started?;
    let (pid, port) = (server.pid(), server.port());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_kib = rss_kib(pid);
    println!(
        "hostile: server pid {pid} on 127.0.0.1:{port} (soft open-file limit at start: {}), idle RSS {} KiB; {} idle + {} slow-header connections from {} addresses, {} honest pairs/s, {:?}",
        args.server_nofile.map_or("inherited".into(), |n| n.to_string()),
        fmt_opt(idle_kib),
        args.idle,
        args.slow,
        args.source_ips,
        args.honest_rate,
        args.seconds
    );

    let t0 = Instant::now();
    let end = t0 + args.seconds;
    // Honest pairs, open loop, from 127.0.0.1.
    let honest_ok = Arc::new(AtomicUsize::new(0));
    let honest_failed = Arc::new(AtomicUsize::new(0));
    let honest_lat = Arc::new(Mutex::new(Vec::<u32>::new()));
    let honest = {
        let (ok, failed, lat) = (honest_ok.clone(), honest_failed.clone(), honest_lat.clone());
        tokio::spawn(async move {
            let gap = Duration::from_secs_f64(1.0 / args.honest_rate);
            let mut tasks = Vec::new();
            let mut k = 0usize;
            while Instant::now() + gap < end {
                let (ok, failed, lat) = (ok.clone(), failed.clone(), lat.clone());
                tasks.push(tokio::spawn(async move {
                    match play_pair(port, &format!("honest-{k:06}"), None, None).await {
                        Ok(us) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            lat.lock().unwrap_or_else(|p| p.into_inner()).extend(us);
                        }
                        Err(e) => {
                            if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("loadgen: honest pair {k}: {e}");
                            }
                        }
                    }
                }));
                k += 1;
                tokio::time::sleep(gap).await;
            }
            futures_util::future::join_all(tasks).await;
        })
    };
    // The hostile connections, opened as fast as the kernel allows (500 connects in flight).
    let state = Arc::new(Hostile::default());
    let connects = Arc::new(Semaphore::new(500));
    let mut tasks = Vec::with_capacity(args.idle + args.slow);
    for i in 0..args.idle + args.slow {
        let slow = (i >= args.idle).then_some((
            args.slow_chunk.max(16),
            args.slow_every,
            args.slow_max_bytes,
        ));
        let source = source_ip(Ipv4Addr::new(127, 1, 0, 0), args.source_ips, i);
        let (state, connects) = (state.clone(), connects.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = {
                let _permit = connects.acquire().await;
                tcp_from(port, source).await
            };
            hostile_conn(tcp, slow, end, state).await;
        }));
    }
    // Sample the server every 500 ms until the end.
    let mut peak_kib = idle_kib.unwrap_or(0);
    let mut peak_fds = 0;
    let mut all_closed_at: Option<Duration> = None;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !server.is_running() {
            return Err(server.failed("stopped under the hostile load"));
        }
        peak_kib = peak_kib.max(rss_kib(pid).unwrap_or(0));
        peak_fds = peak_fds.max(fd_count(pid).unwrap_or(0));
        let tried = state.opened.load(Ordering::Relaxed) + state.refused.load(Ordering::Relaxed);
        let closed = state.closed_after_ms.lock().map_or(0, |v| v.len());
        if all_closed_at.is_none()
            && tried == args.idle + args.slow
            && closed == state.opened.load(Ordering::Relaxed)
        {
            all_closed_at = Some(t0.elapsed());
        }
    }
    let still_open = state.open.load(Ordering::Relaxed);
    futures_util::future::join_all(tasks).await;
    let _ = honest.await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end_kib = rss_kib(pid);
    let end_fds = fd_count(pid);
    let load = load_average();
    let health = server.healthz().await.ok();
    server.stop().await;

    let mut closed_ms = std::mem::take(
        &mut *state
            .closed_after_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    closed_ms.sort_unstable();
    let within = closed_ms
        .iter()
        .filter(|&&ms| u128::from(ms) <= CLOSE_WITHIN.as_millis())
        .count();
    let mut lat = std::mem::take(&mut *honest_lat.lock().unwrap_or_else(|p| p.into_inner()));
    lat.sort_unstable();
    let lat = Latency::of(&lat);
    let mb = |k: Option<u64>| k.map_or("?".into(), |k| format!("{:.1}", k as f64 * 1.024 / 1000.0));
    println!();
    println!(
        "## hostile: {} idle + {} slow-header connections ({} B every {:?}, up to {} KB) from {} addresses; {} honest pairs/s; {:?}; server soft open-file limit {}",
        args.idle,
        args.slow,
        args.slow_chunk,
        args.slow_every,
        args.slow_max_bytes / 1000,
        args.source_ips,
        args.honest_rate,
        args.seconds,
        args.server_nofile.map_or("inherited".into(), |n| n.to_string())
    );
    println!("{machine}");
    println!("| hostile opened | refused at connect | closed by server ≤ 15 s | all closed after | still open at end | honest pairs played / failed | honest connect → game_start p50 / p99 / max ms | RSS idle / peak / end MB | open fds peak / end | load avg at end |");
    println!("|---:|---:|---:|---:|---:|---|---|---|---|---:|");
    let ms = |us: Option<u32>| us.map_or("?".into(), |u| format!("{:.1}", f64::from(u) / 1000.0));
    println!(
        "| {} | {} | {} | {} | {} | {} / {} | {} / {} / {} | {} / {} / {} | {} / {} | {} |",
        state.opened.load(Ordering::Relaxed),
        state.refused.load(Ordering::Relaxed),
        within,
        all_closed_at.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        still_open,
        honest_ok.load(Ordering::Relaxed),
        honest_failed.load(Ordering::Relaxed),
        ms(lat.p50_us),
        ms(lat.p99_us),
        ms(lat.max_us),
        mb(idle_kib),
        mb(Some(peak_kib)),
        mb(end_kib),
        peak_fds,
        fmt_opt(end_fds),
        load
    );
    println!(
        "held (every hostile connection closed within {CLOSE_WITHIN:?}, no honest pair failed, RSS at the end under {RSS_BOUND_MB} MB): {}",
        within == state.opened.load(Ordering::Relaxed)
            && honest_failed.load(Ordering::Relaxed) == 0
            && end_kib.is_some_and(|k| (k as f64 * 1.024 / 1000.0) < RSS_BOUND_MB)
    );
    if let Some(h) = health {
        println!("/healthz at the end: {h}");
    }
    println!("server log: {}", work.join("server.log").display());
    Ok(())
}
