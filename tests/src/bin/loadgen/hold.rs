//! `hold`: ramps to N connections that answer pings and stay; the server's RSS per step and
//! its CPU at the checkpoints (see the crate doc).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pairlab_tests::{http_get_with, WorkDir};

use crate::client::{fmt_opt, HoldFleet, HoldOpts};
use crate::server::{start_pairlab, PairlabExt, LOADGEN_SERVER_TABLE};
use crate::system::{cpu_percent, machine, raise_fd_limit, rss_kib};
use crate::{LoadgenError, Result};

pub(crate) struct HoldArgs {
    pub(crate) bin: PathBuf,
    pub(crate) log: String,
    pub(crate) n: usize,
    pub(crate) step: usize,
    pub(crate) checkpoints: Vec<usize>,
    pub(crate) cpu_window: Duration,
    pub(crate) concurrency: usize,
    pub(crate) deadline: Duration,
    /// Scrape `/metrics` this often during the whole run (the server gets a `metrics_token`);
    /// `None`: metrics off, as by default.
    pub(crate) metrics_every: Option<Duration>,
    /// Turn `/monitor` on (the server gets a `monitor_token`, so it keeps the monitor's
    /// state) and keep this many of its event streams open for the whole run, as that many
    /// open monitor pages would; `None`: the monitor off, as by default.
    pub(crate) monitor_streams: Option<usize>,
    /// The scene is `fifo` with this group size instead of the never-matched pairs scene
    /// (a group larger than `n` keeps everyone waiting, each arrival running the matchmaker).
    pub(crate) fifo_group_size: Option<u32>,
    /// Arrivals per second during the ramp (`None`: each step at once).
    pub(crate) arrival_rate: Option<f64>,
    /// The never-matched scene's group size (`None`: pairs).
    pub(crate) group_size: Option<u32>,
    /// Once the ramp is done: leaves and arrivals at a steady rate.
    pub(crate) churn: Option<Churn>,
}

/// The churn after the ramp: `rate` held participants send `leave` and `rate` new ones
/// arrive, per second each, for `seconds`.
pub(crate) struct Churn {
    pub(crate) seconds: f64,
    pub(crate) rate: f64,
}

/// The subject ids of the participants arriving during the churn start with this.
const CHURN_PREFIX: &str = "churn-";

/// The `metrics_token` a `hold --metrics-every-ms` server gets.
pub(crate) const METRICS_TOKEN: &str = "loadgen-metrics-token-0123456789";

/// The `monitor_token` a `hold --monitor-streams` server gets.
pub(crate) const MONITOR_TOKEN: &str = "loadgen-monitor-token-0123456789";

/// What the `/monitor/events` readers received, all streams together.
#[derive(Default)]
pub(crate) struct Streamed {
    /// `snapshot` events.
    snapshots: usize,
    /// Bytes, headers included.
    bytes: usize,
    /// Streams that failed to connect or ended early.
    failed: usize,
}

/// Keeps one `GET /monitor/events` open on `port`, as an open monitor page does, counting
/// what arrives into `into`, until aborted. A plain HTTP/1.1 request on a socket: the body
/// is read and counted, not parsed (an event name in the chunked stream is enough to count
/// snapshots).
pub(crate) async fn read_monitor_stream(port: u16, into: Arc<Mutex<Streamed>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let failed = |into: &Mutex<Streamed>| {
        into.lock().unwrap_or_else(PoisonError::into_inner).failed += 1;
    };
    let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return failed(&into);
    };
    let request = format!(
        "GET /monitor/events?token={MONITOR_TOKEN} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Accept: text/event-stream\r\n\r\n"
    );
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return failed(&into);
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return failed(&into),
            Ok(n) => {
                let got = &buf[..n];
                let snapshots = got
                    .windows(b"event:snapshot".len())
                    .filter(|w| *w == b"event:snapshot")
                    .count();
                let mut s = into.lock().unwrap_or_else(PoisonError::into_inner);
                s.bytes += n;
                s.snapshots += snapshots;
            }
        }
    }
}

/// What the `/metrics` scraper saw.
#[derive(Default)]
pub(crate) struct Scrapes {
    /// Duration of each successful scrape, ms.
    ms: Vec<f64>,
    /// Failed scrapes (no answer, or not 200).
    failed: usize,
    /// Size of the last body, bytes.
    bytes: usize,
}

/// Scrapes `/metrics` on `port` every `every` into `into`, until aborted.
pub(crate) async fn scrape_metrics(port: u16, every: Duration, into: Arc<Mutex<Scrapes>>) {
    let auth = format!("Bearer {METRICS_TOKEN}");
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let t0 = Instant::now();
        let got = http_get_with(port, "/metrics", &[("authorization", &auth)]).await;
        let mut s = into.lock().unwrap_or_else(PoisonError::into_inner);
        match got {
            Ok((200, body)) => {
                s.ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                s.bytes = body.len();
            }
            _ => s.failed += 1,
        }
    }
}

/// A scene `id` in which nobody is ever matched (`latency_fifo` with `max_server_rtt_ms` =
/// 0.001: no two RTTs add up to 1 µs) and nobody times out during a run (an hour), with the
/// lobby count hidden or shown. `hold` hides it, so no `waitroom` broadcast runs; `waitroom`
/// shows it, so every arrival changes what every waiting participant should see.
pub(crate) fn never_matched_scene(id: &str, hide_lobby_count: bool) -> String {
    never_matched_groups_scene(id, hide_lobby_count, 2)
}

/// As [`never_matched_scene`], with groups of `group_size`.
fn never_matched_groups_scene(id: &str, hide_lobby_count: bool, group_size: u32) -> String {
    format!(
        r#"[[scene]]
id = "{id}"
group_size = {group_size}
matchmaker = "latency_fifo"
max_server_rtt_ms = 0.001
waitroom_timeout_ms = 3600000
hide_lobby_count = {hide_lobby_count}
"#
    )
}

/// A `fifo` scene `id` with groups of `group_size`, nobody timing out during a run, the count
/// hidden (as in `hold`).
fn fifo_scene(id: &str, group_size: u32) -> String {
    format!(
        r#"[[scene]]
id = "{id}"
group_size = {group_size}
matchmaker = "fifo"
waitroom_timeout_ms = 3600000
hide_lobby_count = true
"#
    )
}

/// The server RTTs the server measured at entry (`server_rtt` lines of the record at `path`)
/// of the participants whose subject id starts with `prefix`: every sample, ms, sorted; empty
/// when the record cannot be read.
fn recorded_server_rtts_ms(path: &std::path::Path, prefix: &str) -> Vec<f64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut ms: Vec<f64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "server_rtt")
        .filter(|v| {
            v["subject_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix))
        })
        .filter_map(|v| {
            v["samples_ms"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect::<Vec<_>>())
        })
        .flatten()
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

pub(crate) struct HoldRow {
    pub(crate) target: usize,
    pub(crate) welcomed: usize,
    pub(crate) server_conns: Option<u64>,
    pub(crate) rss_kib: Option<u64>,
    pub(crate) server_cpu: Option<f64>,
    pub(crate) loadgen_cpu: Option<f64>,
}

pub(crate) async fn hold(args: HoldArgs) -> Result<()> {
    if args
        .arrival_rate
        .is_some_and(|r| !(r.is_finite() && r > 0.0))
    {
        return Err(LoadgenError::Args("--arrival-rate must be positive".into()));
    }
    if args.n == 0 || args.step == 0 {
        return Err(LoadgenError::Args(
            "--n and --step must be at least 1".into(),
        ));
    }
    let fds = raise_fd_limit(args.n as u64 + 512)?;
    let machine = machine();
    println!("{machine}");
    // Its own folder with metrics on, so a run without them (the smoke tests run both at
    // once) does not replace its scene file.
    let work = WorkDir::fresh(match (args.metrics_every, args.monitor_streams) {
        (Some(_), _) => "loadgen-hold-metrics",
        (None, Some(_)) => "loadgen-hold-monitor",
        (None, None) => "loadgen-hold",
    })?;
    let mut scene = match args.fifo_group_size {
        Some(g) => fifo_scene("hold", g),
        None => never_matched_groups_scene("hold", true, args.group_size.unwrap_or(2)),
    };
    if args.churn.as_ref().is_some_and(|c| {
        !(c.seconds.is_finite() && c.seconds > 0.0 && c.rate.is_finite() && c.rate > 0.0)
    }) {
        return Err(LoadgenError::Args(
            "--churn-s and --churn-rate must be positive".into(),
        ));
    }
    if args.metrics_every.is_some() || args.monitor_streams.is_some() {
        scene.push_str(LOADGEN_SERVER_TABLE);
    }
    if args.metrics_every.is_some() {
        scene.push_str(&format!("metrics_token = \"{METRICS_TOKEN}\"\n"));
    }
    if args.monitor_streams.is_some() {
        scene.push_str(&format!("monitor_token = \"{MONITOR_TOKEN}\"\n"));
    }
    let mut server = start_pairlab(&args.bin, &args.log, &work, &scene).await?;
    let scrapes = Arc::new(Mutex::new(Scrapes::default()));
    let scraper = args
        .metrics_every
        .map(|every| tokio::spawn(scrape_metrics(server.port(), every, scrapes.clone())));
    let streamed = Arc::new(Mutex::new(Streamed::default()));
    let streams: Vec<_> = (0..args.monitor_streams.unwrap_or(0))
        .map(|_| tokio::spawn(read_monitor_stream(server.port(), streamed.clone())))
        .collect();
    let pid = server.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = rss_kib(pid);
    println!(
        "hold: server {} (pid {pid}) on 127.0.0.1:{}, idle RSS {} KiB, fd limit {fds}; ramping to {} in steps of {}",
        args.bin.display(),
        server.port(),
        fmt_opt(idle_kib),
        args.n,
        args.step
    );

    let fleet = HoldFleet::new(server.port(), args.concurrency);
    let counters = &fleet.counters;
    let mut tasks = Vec::with_capacity(args.n);
    let mut leave_triggers = Vec::new();
    let mut rows = Vec::new();
    let started = Instant::now();
    let ramp_cpu0 = crate::system::cpu_seconds(&pid.to_string());
    let mut spawned = 0;
    // When the last step's clients had their welcome (or failed), and the server's CPU seconds then.
    let mut ramp_end: Option<(f64, Option<f64>)> = None;
    let mut checkpoints = args.checkpoints.clone();
    checkpoints.push(args.n);
    while spawned < args.n {
        let target = (spawned + args.step).min(args.n);
        for i in spawned..target {
            if let Some(rate) = args.arrival_rate {
                let at = started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(at.into()).await;
            }
            let subject = format!("hold-{i}");
            if args.churn.is_some() {
                let (tx, rx) = tokio::sync::oneshot::channel();
                leave_triggers.push(tx);
                tasks.push(fleet.spawn_leaving(subject, HoldOpts::default(), rx));
            } else {
                tasks.push(fleet.spawn(subject, HoldOpts::default()));
            }
        }
        spawned = target;
        // Wait until each new client has its welcome or has failed.
        let mut gave_up = false;
        while counters.welcomed.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed)
            < target
        {
            if started.elapsed() > args.deadline || !server.is_running() {
                gave_up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !server.is_running() {
            return Err(server.failed("stopped during the ramp"));
        }
        if target == args.n || gave_up {
            ramp_end = Some((
                started.elapsed().as_secs_f64(),
                crate::system::cpu_seconds(&pid.to_string()),
            ));
        }
        let welcomed = counters.welcomed.load(Ordering::Relaxed);
        // Let the first ping exchanges of the step settle before measuring.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (server_cpu, loadgen_cpu) = if checkpoints.contains(&target) {
            cpu_percent(pid, args.cpu_window).await
        } else {
            (None, None)
        };
        let row = HoldRow {
            target,
            welcomed,
            server_conns: server.connections().await,
            rss_kib: rss_kib(pid),
            server_cpu,
            loadgen_cpu,
        };
        print_hold_row(&row, idle_kib, rows.is_empty());
        rows.push(row);
        if gave_up {
            println!(
                "hold: stopped ramping after {:?} (--seconds {}): {} welcomed, {} failed",
                started.elapsed(),
                args.deadline.as_secs(),
                counters.welcomed.load(Ordering::Relaxed),
                counters.failed.load(Ordering::Relaxed)
            );
            break;
        }
    }
    let (ramp_s, ramp_cpu1) = ramp_end.unwrap_or((started.elapsed().as_secs_f64(), None));
    let ramp_cpu = ramp_cpu1
        .zip(ramp_cpu0)
        .map(|(b, a)| (b - a) / ramp_s * 100.0);
    let churned = match &args.churn {
        Some(churn) => Some(
            run_churn(
                churn,
                &fleet,
                &mut tasks,
                leave_triggers,
                &mut server,
                pid,
                args.deadline,
            )
            .await?,
        ),
        None => None,
    };
    if let Some(scraper) = scraper {
        scraper.abort();
    }
    for stream in &streams {
        stream.abort();
    }
    fleet.stop(tasks).await;
    let events = server.events_path("hold");
    server.stop().await;
    let rtts_ms = recorded_server_rtts_ms(&events, "hold-");
    let churn_rtts_ms = recorded_server_rtts_ms(&events, CHURN_PREFIX);

    println!();
    println!(
        "## hold: {} connections on 127.0.0.1, server idle RSS {} KiB",
        args.n,
        fmt_opt(idle_kib)
    );
    println!("{machine}");
    print_hold_row_header();
    for row in rows.iter().filter(|r| checkpoints.contains(&r.target)) {
        print_hold_row(row, idle_kib, false);
    }
    println!(
        "failed to connect: {}, dropped while held: {}, pongs sent: {}",
        counters.failed.load(Ordering::Relaxed),
        counters.dropped.load(Ordering::Relaxed),
        counters.pongs.load(Ordering::Relaxed)
    );
    let q = |rtts_ms: &[f64], q: f64| {
        rtts_ms
            .get(((rtts_ms.len() as f64 - 1.0) * q).round() as usize)
            .map(|v| format!("{v:.2}"))
    };
    println!(
        "ramp (first connect to the last welcome or failure): {ramp_s:.1} s, server CPU over it {} %core; entry server RTTs the server measured ({} samples): p50 {} ms, p99 {} ms, max {} ms",
        fmt_opt(ramp_cpu.map(|c| format!("{c:.1}"))),
        rtts_ms.len(),
        fmt_opt(q(&rtts_ms, 0.5)),
        fmt_opt(q(&rtts_ms, 0.99)),
        fmt_opt(q(&rtts_ms, 1.0)),
    );
    if let (Some(c), Some(churn)) = (churned, &args.churn) {
        println!(
            "churn: {:.1} s at {}/s leaves and {}/s arrivals: {} left, {} arrived (welcomed), {} held at the end (server connections {}), server CPU over it {} %core; the arrivals' entry server RTTs ({} samples): p50 {} ms, p99 {} ms, max {} ms",
            c.seconds,
            churn.rate,
            churn.rate,
            c.left,
            c.arrived,
            c.held,
            fmt_opt(c.server_conns),
            fmt_opt(c.server_cpu.map(|v| format!("{v:.1}"))),
            churn_rtts_ms.len(),
            fmt_opt(q(&churn_rtts_ms, 0.5)),
            fmt_opt(q(&churn_rtts_ms, 0.99)),
            fmt_opt(q(&churn_rtts_ms, 1.0)),
        );
    }
    if let Some(every) = args.metrics_every {
        let s = scrapes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ms = s.ms.clone();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
                .copied()
        };
        println!(
            "/metrics every {every:?}: {} scrapes, {} failed, duration p50 {} ms, max {} ms, last body {} bytes",
            ms.len(),
            s.failed,
            fmt_opt(at(0.5).map(|v| format!("{v:.2}"))),
            fmt_opt(at(1.0).map(|v| format!("{v:.2}"))),
            s.bytes
        );
    }
    if let Some(n) = args.monitor_streams {
        let s = streamed.lock().unwrap_or_else(PoisonError::into_inner);
        println!(
            "/monitor on, {n} event stream(s) open: {} snapshots, {} bytes received, {} failed",
            s.snapshots, s.bytes, s.failed
        );
    }
    println!("server log: {}", work.join("server.log").display());
    Ok(())
}

/// What the churn phase did.
struct Churned {
    /// How long it lasted, seconds (the leaves and arrivals, then the last welcomes).
    seconds: f64,
    left: usize,
    arrived: usize,
    /// Welcomed, minus those who left or dropped, at the end.
    held: usize,
    server_conns: Option<u64>,
    server_cpu: Option<f64>,
}

/// The churn after the ramp: every 1/`rate` s one held participant (in random order) sends
/// `leave` and one new participant arrives, for `seconds`; then waits for the last arrivals'
/// welcomes. The server's CPU is measured over the whole phase.
async fn run_churn(
    churn: &Churn,
    fleet: &HoldFleet,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    leave_triggers: Vec<tokio::sync::oneshot::Sender<()>>,
    server: &mut pairlab_tests::Server,
    pid: u32,
    deadline: Duration,
) -> Result<Churned> {
    let events = (churn.seconds * churn.rate).round() as usize;
    // Leavers spread over arrival order (early and late waiters alike): the oldest and the
    // newest held participant in turn.
    let mut leavers: std::collections::VecDeque<_> = leave_triggers.into();
    let counters = &fleet.counters;
    let welcomed0 = counters.welcomed.load(Ordering::Relaxed);
    let failed0 = counters.failed.load(Ordering::Relaxed);
    let cpu0 = crate::system::cpu_seconds(&pid.to_string());
    let t0 = Instant::now();
    for i in 0..events {
        tokio::time::sleep_until((t0 + Duration::from_secs_f64(i as f64 / churn.rate)).into())
            .await;
        let leaver = if i % 2 == 0 {
            leavers.pop_front()
        } else {
            leavers.pop_back()
        };
        if let Some(leave) = leaver {
            let _ = leave.send(());
        }
        tasks.push(fleet.spawn(format!("{CHURN_PREFIX}{i}"), HoldOpts::default()));
    }
    while counters.welcomed.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed)
        < welcomed0 + failed0 + events
    {
        if t0.elapsed() > deadline || !server.is_running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !server.is_running() {
        return Err(server.failed("stopped during the churn"));
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu1 = crate::system::cpu_seconds(&pid.to_string());
    // Let the last leaves reach the server before counting its connections.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = counters.left.load(Ordering::Relaxed);
    let welcomed = counters.welcomed.load(Ordering::Relaxed);
    Ok(Churned {
        seconds,
        left,
        arrived: welcomed - welcomed0,
        held: welcomed - left - counters.dropped.load(Ordering::Relaxed),
        server_conns: server.connections().await,
        server_cpu: cpu1.zip(cpu0).map(|(b, a)| (b - a) / seconds * 100.0),
    })
}

pub(crate) fn print_hold_row_header() {
    println!(
        "| {:>11} | {:>12} | {:>13} | {:>11} | {:>16} | {:>17} | {:>19} |",
        "connected",
        "server conns",
        "server RSS MB",
        "KB/conn",
        "server CPU %core",
        "loadgen CPU %core",
        "RSS/conn incl. idle"
    );
    println!(
        "|{:-<13}|{:-<14}|{:-<15}|{:-<13}|{:-<18}|{:-<19}|{:-<21}|",
        "", "", "", "", "", "", ""
    );
}

pub(crate) fn print_hold_row(row: &HoldRow, idle_kib: Option<u64>, header: bool) {
    if header {
        print_hold_row_header();
    }
    let n = row.welcomed.max(1) as f64;
    let per_conn = match (row.rss_kib, idle_kib) {
        (Some(r), Some(i)) => format!("{:.1}", r.saturating_sub(i) as f64 * 1.024 / n),
        _ => "?".into(),
    };
    let incl = row
        .rss_kib
        .map_or("?".into(), |r| format!("{:.1}", r as f64 * 1.024 / n));
    println!(
        "| {:>11} | {:>12} | {:>13} | {:>11} | {:>16} | {:>17} | {:>19} |",
        format!("{}/{}", row.welcomed, row.target),
        fmt_opt(row.server_conns),
        row.rss_kib
            .map_or("?".into(), |r| format!("{:.1}", r as f64 * 1.024 / 1000.0)),
        per_conn,
        row.server_cpu.map_or("-".into(), |c| format!("{c:.1}")),
        row.loadgen_cpu.map_or("-".into(), |c| format!("{c:.1}")),
        incl,
    );
}
