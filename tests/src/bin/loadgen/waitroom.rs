//! `waitroom`: N waiting with the lobby count shown, then arrivals at a fixed rate; what
//! keeping the count current costs (see the crate doc).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pairlab_tests::WorkDir;
use tokio::sync::Semaphore;

use crate::client::{hold_client, HoldFleet, HoldOpts, Latency, Signals};
use crate::hold::never_matched_scene;
use crate::server::{start_pairlab, PairlabExt};
use crate::system::{cpu_percent, machine, raise_fd_limit, rss_kib};
use crate::{LoadgenError, Result};

pub(crate) struct WaitroomArgs {
    pub(crate) bin: PathBuf,
    pub(crate) log: String,
    pub(crate) n: usize,
    pub(crate) arrival_rate: f64,
    pub(crate) seconds: Duration,
    pub(crate) concurrency: usize,
    pub(crate) hide_count: bool,
}

/// `waitroom`: N held with the count shown, then arrivals at a fixed rate; what keeping the
/// count current costs (PROTOCOL.md: updates coalesced to one a second per participant).
pub(crate) async fn waitroom(args: WaitroomArgs) -> Result<()> {
    if !(args.arrival_rate.is_finite() && args.arrival_rate > 0.0) {
        return Err(LoadgenError::Args("--arrival-rate must be positive".into()));
    }
    let arrivals = (args.arrival_rate * args.seconds.as_secs_f64()).ceil() as usize;
    let fds = raise_fd_limit((args.n + arrivals) as u64 + 512)?;
    let machine = machine();
    println!("{machine}");
    let work = WorkDir::fresh("loadgen-waitroom")?;
    let scene = never_matched_scene("waitroom", args.hide_count);
    let mut server = start_pairlab(&args.bin, &args.log, &work, &scene).await?;
    let pid = server.pid();
    println!(
        "waitroom: server (pid {pid}) on 127.0.0.1:{}, fd limit {fds}; holding {} with the count {}, then {} arrivals/s for {:.1} s",
        server.port(),
        args.n,
        if args.hide_count { "hidden" } else { "shown" },
        args.arrival_rate,
        args.seconds.as_secs_f64()
    );
    let fleet = HoldFleet::new(server.port(), args.concurrency);
    let counters = &fleet.counters;
    let mut tasks: Vec<_> = (0..args.n)
        .map(|i| fleet.spawn(format!("wait-{i}"), HoldOpts::default()))
        .collect();
    let t = Instant::now();
    while counters.welcomed.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed)
        < args.n
    {
        if t.elapsed() > Duration::from_secs(180) || !server.is_running() {
            fleet.stop_now();
            return Err(server.failed(&format!(
                "took {} of {} connections in 180 s",
                counters.welcomed.load(Ordering::Relaxed),
                args.n
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "waitroom: {} held after {:?}",
        counters.welcomed.load(Ordering::Relaxed),
        t.elapsed()
    );
    // Let the ramp's last coalesced updates go out.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Quiet: the count does not change.
    let w0 = counters.waitrooms.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let (quiet_server, quiet_loadgen) = cpu_percent(pid, args.seconds).await;
    let quiet_rate =
        (counters.waitrooms.load(Ordering::Relaxed) - w0) as f64 / t0.elapsed().as_secs_f64();
    let quiet_rss = rss_kib(pid);

    // Arrivals on an open-loop schedule: each connects, says hello and stays.
    let arrivals_sem = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
    let start = Instant::now() + Duration::from_millis(100);
    let spawner = {
        let counters = counters.clone();
        let stop_rx = fleet.stop_rx();
        let port = server.port();
        tokio::spawn(async move {
            let mut spawned = Vec::with_capacity(arrivals);
            for i in 0..arrivals {
                let at = start + Duration::from_secs_f64(i as f64 / args.arrival_rate);
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                spawned.push(tokio::spawn(hold_client(
                    port,
                    format!("arrive-{i}"),
                    counters.clone(),
                    arrivals_sem.clone(),
                    Signals::stop_only(stop_rx.clone()),
                    true,
                    HoldOpts::default(),
                )));
            }
            spawned
        })
    };
    tokio::time::sleep_until(tokio::time::Instant::from_std(start)).await;
    let w1 = counters.waitrooms.load(Ordering::Relaxed);
    let t1 = Instant::now();
    let (busy_server, busy_loadgen) = cpu_percent(pid, args.seconds).await;
    let busy_rate =
        (counters.waitrooms.load(Ordering::Relaxed) - w1) as f64 / t1.elapsed().as_secs_f64();
    let busy_rss = rss_kib(pid);
    if let Ok(spawned) = spawner.await {
        tasks.extend(spawned);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held_now = counters.welcomed.load(Ordering::Relaxed);
    fleet.stop(tasks).await;
    server.stop().await;

    let mut connect_us = counters
        .connect_us
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    connect_us.sort_unstable();
    let ms = |v: Option<u32>| v.map_or("-".into(), |us| format!("{:.1}", f64::from(us) / 1000.0));
    let per = |rate: f64, waiting: usize| rate / waiting.max(1) as f64;
    println!();
    println!(
        "## waitroom: {} waiting with the count {}, then {} arrivals/s for {:.1} s",
        args.n,
        if args.hide_count { "hidden" } else { "shown" },
        args.arrival_rate,
        args.seconds.as_secs_f64()
    );
    println!("{machine}");
    println!(
        "| {:>12} | {:>9} | {:>15} | {:>20} | {:>13} | {:>14} | {:>16} |",
        "phase",
        "waiting",
        "waitroom msgs/s",
        "per participant / s",
        "server RSS MB",
        "server CPU %",
        "loadgen CPU %"
    );
    println!(
        "|{:-<14}|{:-<11}|{:-<17}|{:-<22}|{:-<15}|{:-<16}|{:-<18}|",
        "", "", "", "", "", "", ""
    );
    let cpu = |c: Option<f64>| c.map_or("?".into(), |c| format!("{c:.1}"));
    let rss =
        |r: Option<u64>| r.map_or("?".into(), |r| format!("{:.1}", r as f64 * 1.024 / 1000.0));
    println!(
        "| {:>12} | {:>9} | {:>15.0} | {:>20.2} | {:>13} | {:>14} | {:>16} |",
        "no arrivals",
        args.n,
        quiet_rate,
        per(quiet_rate, args.n),
        rss(quiet_rss),
        cpu(quiet_server),
        cpu(quiet_loadgen)
    );
    println!(
        "| {:>12} | {:>9} | {:>15.0} | {:>20.2} | {:>13} | {:>14} | {:>16} |",
        format!("{}/s arrive", args.arrival_rate),
        format!("→{held_now}"),
        busy_rate,
        per(busy_rate, (args.n + held_now) / 2),
        rss(busy_rss),
        cpu(busy_server),
        cpu(busy_loadgen)
    );
    let gap = counters.min_update_gap_us.load(Ordering::Relaxed);
    let connect = Latency::of(&connect_us);
    println!(
        "arrivals: {} welcomed, connect → welcome p50 {} ms, p99 {} ms, max {} ms; failed: {}, dropped: {}",
        connect_us.len(),
        ms(connect.p50_us),
        ms(connect.p99_us),
        ms(connect.max_us),
        counters.failed.load(Ordering::Relaxed),
        counters.dropped.load(Ordering::Relaxed)
    );
    println!(
        "shortest gap between two count updates to one participant: {}",
        if gap == u64::MAX {
            "-".to_owned()
        } else {
            format!(
                "{:.0} ms (PROTOCOL.md: at most one a second)",
                gap as f64 / 1000.0
            )
        }
    );
    println!("server log: {}", work.join("server.log").display());
    Ok(())
}
