//! `matchmaking`: N wait and never match; arrivals at open-loop rates are matched (probe
//! disabled) by `fifo` and `latency_fifo` (see the crate doc).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pairlab_shared::{ClientMessage, ServerMessage};
use pairlab_tests::{Server, WorkDir};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{clock_ns, connect_scene, fmt_opt, pong, HoldFleet, HoldOpts, Latency};
use crate::server::{start_pairlab, PairlabExt};
use crate::system::{cpu_percent, fd_hard_limit, machine, raise_fd_limit};
use crate::{check_rates, highest, LoadgenError, Result, Search};

/// Which matchmaker the arrivals of `matchmaking` go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum MmKind {
    /// The `fifo` scene, next to the one the waiting are in.
    Fifo,
    /// The `latency_fifo` scene the waiting are in.
    LatencyFifo,
}

impl MmKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            MmKind::Fifo => "fifo",
            MmKind::LatencyFifo => "latency_fifo",
        }
    }
    /// The scene the arrivals join.
    pub(crate) fn scene(self) -> &'static str {
        match self {
            MmKind::Fifo => "fifo",
            MmKind::LatencyFifo => "wait",
        }
    }
}

pub(crate) struct MatchmakingArgs {
    pub(crate) bin: PathBuf,
    pub(crate) log: String,
    pub(crate) n: usize,
    pub(crate) rates: Vec<f64>,
    pub(crate) seconds: Duration,
    pub(crate) matchmakers: Vec<MmKind>,
    pub(crate) concurrency: usize,
    pub(crate) pong_delay: Duration,
    pub(crate) search: Option<Search>,
}

/// A matchmaking rate counts as held when every arrival was matched and the connect →
/// `game_start` p99 is under this, ms.
pub const HELD_MATCH_P99_MS: f64 = 250.0;

/// How long after the last arrival the arrivals of a step get to be matched before the ones
/// still waiting count as unmatched.
pub(crate) const MATCH_DRAIN: Duration = Duration::from_secs(3);

/// The pre-filter of the `wait` scene, ms: far below twice the waiters' delayed pongs, far
/// above two loopback RTTs.
pub(crate) const MM_MAX_SERVER_RTT_MS: f64 = 100.0;

/// The scenes of `matchmaking`. `wait` (the first: the waiters' default) is `latency_fifo`
/// with `max_server_rtt_ms` = [`MM_MAX_SERVER_RTT_MS`]; `fifo` is FIFO. Both without probe
/// (no `max_p2p_rtt_ms`), so a proposed pair gets `game_start` at once; both hide the lobby
/// count (its cost is the `waitroom` scenario's).
pub(crate) fn matchmaking_scene() -> String {
    format!(
        r#"[[scene]]
id = "wait"
group_size = 2
matchmaker = "latency_fifo"
max_server_rtt_ms = {MM_MAX_SERVER_RTT_MS}
waitroom_timeout_ms = 3600000
hide_lobby_count = true

[[scene]]
id = "fifo"
group_size = 2
matchmaker = "fifo"
waitroom_timeout_ms = 3600000
hide_lobby_count = true
"#
    )
}

/// What the arrivals of one step saw, together.
#[derive(Default)]
pub(crate) struct ArrivalCounters {
    /// Connect start → `game_start`, µs, one per matched arrival.
    pub(crate) matched_us: Mutex<Vec<u32>>,
    /// The latest `game_start`, ns on [`clock_ns`].
    pub(crate) last_match_ns: AtomicU64,
    pub(crate) failed: AtomicUsize,
    /// Arrivals that ended (matched, failed or stopped).
    pub(crate) done: AtomicUsize,
    /// The most an arrival started after its scheduled time, µs.
    pub(crate) max_lag_us: AtomicU64,
}

/// One arrival: connect at once (`scheduled` is when it should have), say `hello` into
/// `scene`, answer pings at once, and on `game_start` record the time, send `leave` and close
/// (so connections stay bounded; that teardown is part of the measured load).
pub(crate) async fn arrival_client(
    port: u16,
    subject: String,
    scene: &'static str,
    scheduled: Instant,
    counters: Arc<ArrivalCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let t0 = Instant::now();
    let lag =
        u64::try_from(t0.saturating_duration_since(scheduled).as_micros()).unwrap_or(u64::MAX);
    counters.max_lag_us.fetch_max(lag, Ordering::Relaxed);
    let run = async {
        let mut ws = connect_scene(port, &subject, Some(scene)).await?;
        loop {
            let msg = tokio::select! {
                _ = stop.changed() => return Ok(None),
                msg = ws.next() => msg,
            };
            match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMessage>(&t) {
                    Ok(ServerMessage::Ping(p)) => pong(&mut ws, p.seq).await?,
                    Ok(ServerMessage::GameStart(_)) => {
                        let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                        counters
                            .last_match_ns
                            .fetch_max(clock_ns(), Ordering::Relaxed);
                        let _ = ws.send(Message::text(ClientMessage::Leave.to_json())).await;
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                        return Ok(Some(us));
                    }
                    Ok(ServerMessage::Error(e)) => return Err(format!("error {:?}", e.code)),
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("closed before game_start".to_owned()),
            }
        }
    };
    match run.await {
        Ok(Some(us)) => counters
            .matched_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(us),
        Ok(None) => {}
        Err(e) => {
            if counters.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("loadgen: {subject}: {e}");
            }
        }
    }
    counters.done.fetch_add(1, Ordering::Relaxed);
}

/// One rate of one matchmaker.
pub(crate) struct MatchRow {
    pub(crate) matchmaker: MmKind,
    pub(crate) rate: f64,
    pub(crate) arrivals: usize,
    pub(crate) matched: usize,
    pub(crate) failed: usize,
    /// Matched arrivals ÷ (last `game_start` − first scheduled arrival), per second.
    pub(crate) matched_per_s: f64,
    /// Connect start → `game_start`, µs.
    pub(crate) latency: Latency,
    pub(crate) max_lag_us: u64,
    /// `waiting` of `/healthz` after the step (the N waiters, plus arrivals left unmatched).
    pub(crate) waiting_after: Option<u64>,
    pub(crate) server_cpu: Option<f64>,
    pub(crate) loadgen_cpu: Option<f64>,
}

impl MatchRow {
    pub(crate) fn held(&self) -> bool {
        self.arrivals > 0
            && self.matched == self.arrivals
            && self.latency.p99_under_ms(HELD_MATCH_P99_MS)
    }
}

pub(crate) fn print_match_header() {
    println!(
        "| {:>12} | {:>9} | {:>8} | {:>8} | {:>6} | {:>10} | {:>7} | {:>7} | {:>7} | {:>11} | {:>13} | {:>12} | {:>13} | {:>4} |",
        "matchmaker",
        "offered/s",
        "arrivals",
        "matched",
        "failed",
        "matched/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "gen. lag ms",
        "waiting after",
        "server CPU %",
        "loadgen CPU %",
        "held"
    );
    println!(
        "|{:-<14}|{:-<11}|{:-<10}|{:-<10}|{:-<8}|{:-<12}|{:-<9}|{:-<9}|{:-<9}|{:-<13}|{:-<15}|{:-<14}|{:-<15}|{:-<6}|",
        "", "", "", "", "", "", "", "", "", "", "", "", "", ""
    );
}

pub(crate) fn print_match_row(r: &MatchRow) {
    let ms = |v: Option<u32>| v.map_or("-".into(), |us| format!("{:.1}", f64::from(us) / 1000.0));
    let cpu = |c: Option<f64>| c.map_or("?".into(), |c| format!("{c:.0}"));
    println!(
        "| {:>12} | {:>9} | {:>8} | {:>8} | {:>6} | {:>10.0} | {:>7} | {:>7} | {:>7} | {:>11.1} | {:>13} | {:>12} | {:>13} | {:>4} |",
        r.matchmaker.name(),
        r.rate,
        r.arrivals,
        r.matched,
        r.failed,
        r.matched_per_s,
        ms(r.latency.p50_us),
        ms(r.latency.p99_us),
        ms(r.latency.max_us),
        r.max_lag_us as f64 / 1000.0,
        fmt_opt(r.waiting_after),
        cpu(r.server_cpu),
        cpu(r.loadgen_cpu),
        if r.held() { "yes" } else { "no" },
    );
}

/// One step of `matchmaking`: `rate` arrivals/s for `seconds` into `kind`'s scene.
pub(crate) async fn matchmaking_step(
    server: &Server,
    kind: MmKind,
    step: usize,
    rate: f64,
    seconds: Duration,
) -> MatchRow {
    // An even count: the arrivals pair off with each other.
    let arrivals = ((rate * seconds.as_secs_f64()).ceil() as usize)
        .max(2)
        .next_multiple_of(2);
    let counters = Arc::new(ArrivalCounters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now() + Duration::from_millis(100);
    let port = server.port();
    let spawner = {
        let counters = counters.clone();
        tokio::spawn(async move {
            for i in 0..arrivals {
                let at = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                tokio::spawn(arrival_client(
                    port,
                    format!("mm{step}-{i}"),
                    kind.scene(),
                    at,
                    counters.clone(),
                    stop_rx.clone(),
                ));
            }
        })
    };
    tokio::time::sleep_until(tokio::time::Instant::from_std(start)).await;
    let start_ns = clock_ns();
    let window = Duration::from_secs_f64(arrivals as f64 / rate);
    let (server_cpu, loadgen_cpu) = cpu_percent(server.pid(), window).await;
    let _ = spawner.await;
    let drain_end = Instant::now() + MATCH_DRAIN;
    while counters.done.load(Ordering::Relaxed) < arrivals && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting_after = server.waiting().await;
    // The unmatched leave with the step, so the next step starts clean.
    let _ = stop_tx.send(true);
    let t = Instant::now();
    while counters.done.load(Ordering::Relaxed) < arrivals && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut us = counters
        .matched_us
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    us.sort_unstable();
    let span_s = counters
        .last_match_ns
        .load(Ordering::Relaxed)
        .saturating_sub(start_ns) as f64
        / 1e9;
    MatchRow {
        matchmaker: kind,
        rate,
        arrivals,
        matched: us.len(),
        failed: counters.failed.load(Ordering::Relaxed),
        matched_per_s: if span_s > 0.0 {
            us.len() as f64 / span_s
        } else {
            0.0
        },
        latency: Latency::of(&us),
        max_lag_us: counters.max_lag_us.load(Ordering::Relaxed),
        waiting_after,
        server_cpu,
        loadgen_cpu,
    }
}

/// `matchmaking`: N wait and never match; arrivals at open-loop rates are matched (probe
/// disabled) through `fifo` and `latency_fifo`; matched arrivals per second and connect →
/// `game_start` latency.
pub(crate) async fn matchmaking(args: MatchmakingArgs) -> Result<()> {
    check_rates(&args.rates, args.search)?;
    if args.pong_delay.as_secs_f64() * 1000.0 * 2.0 <= MM_MAX_SERVER_RTT_MS {
        return Err(LoadgenError::Args(format!(
            "--pong-delay-ms must be over {} so two waiters fail the pre-filter",
            MM_MAX_SERVER_RTT_MS / 2.0
        )));
    }
    // The waiters, plus arrivals in flight; when the server falls behind, unmatched arrivals
    // pile up, so take all the hard limit allows.
    let fds = raise_fd_limit((args.n as u64 + 4096).max(fd_hard_limit().unwrap_or(0)))?;
    let machine = machine();
    println!("{machine}");
    let work = WorkDir::fresh("loadgen-matchmaking")?;
    let mut server = start_pairlab(&args.bin, &args.log, &work, &matchmaking_scene()).await?;
    let pid = server.pid();
    println!(
        "matchmaking: server (pid {pid}) on 127.0.0.1:{}, fd limit {fds}; {} waiters answering pings after {} ms",
        server.port(),
        args.n,
        args.pong_delay.as_millis()
    );
    clock_ns();
    let fleet = HoldFleet::new(server.port(), args.concurrency);
    let counters = &fleet.counters;
    let opts = HoldOpts {
        scene: Some("wait"),
        pong_delay: args.pong_delay,
    };
    let tasks: Vec<_> = (0..args.n)
        .map(|i| fleet.spawn(format!("wait-{i}"), opts))
        .collect();
    let t = Instant::now();
    loop {
        let waiting = server.waiting().await.unwrap_or(0);
        if waiting >= args.n as u64 {
            break;
        }
        let failed = counters.failed.load(Ordering::Relaxed);
        if t.elapsed() > Duration::from_secs(180) || !server.is_running() || failed > 0 {
            fleet.stop_now();
            return Err(server.failed(&format!(
                "had {waiting} of {} waiting after {:?} ({failed} failed to connect)",
                args.n,
                t.elapsed()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("matchmaking: {} waiting after {:?}", args.n, t.elapsed());

    let mut rows: Vec<MatchRow> = Vec::new();
    for &kind in &args.matchmakers {
        let mut rate_iter = args.rates.clone().into_iter();
        let mut next_rate = rate_iter.next();
        while let Some(rate) = next_rate {
            let row = matchmaking_step(&server, kind, rows.len(), rate, args.seconds).await;
            if rows.is_empty() {
                print_match_header();
            }
            print_match_row(&row);
            let held = row.held();
            rows.push(row);
            if !server.is_running() {
                break;
            }
            next_rate = rate_iter.next().or_else(|| {
                let s = args.search?;
                let next = (rate * s.factor).round();
                (held && next <= s.max).then_some(next)
            });
        }
        if !server.is_running() {
            break;
        }
    }
    let waiters_matched = counters.matched.load(Ordering::Relaxed);
    let waiters_dropped = counters.dropped.load(Ordering::Relaxed);
    fleet.stop(tasks).await;
    let alive = server.is_running();
    server.stop().await;

    println!();
    println!(
        "## matchmaking: {} waiting, arrivals at open-loop rates for {:.1} s each, probe disabled (no max_p2p_rtt_ms)",
        args.n,
        args.seconds.as_secs_f64()
    );
    println!("{machine}");
    println!(
        "definition: the {n} waiters answer every ping after {d} ms, so the server measures their RTT at about {d} ms; \
         latency_fifo: the arrivals join the waiters' scene (max_server_rtt_ms = {m}), so every arrival is checked \
         against all {n} waiters (none passes) and is matched with another arrival (the first of a pair waits for \
         the next one, ~1/rate); fifo: FIFO with pairs never holds more than one waiting (any second arrival \
         completes a pair), so the {n} wait in the other scene of the same server (same process, pings, memory) \
         and the arrivals pair off in a fifo scene. Each matched arrival sends leave and closes. \
         matched/s = matched arrivals ÷ (last game_start − first arrival); latency = TCP connect start → game_start \
         (upgrade, hello, the server's entry pings, the match); held = every arrival matched and p99 < {HELD_MATCH_P99_MS} ms",
        n = args.n,
        d = args.pong_delay.as_millis(),
        m = MM_MAX_SERVER_RTT_MS
    );
    print_match_header();
    for row in &rows {
        print_match_row(row);
    }
    for &kind in &args.matchmakers {
        match highest(
            rows.iter()
                .filter(|r| r.matchmaker == kind && r.held())
                .map(|r| r.rate),
        ) {
            Some(best) => println!("{}: highest rate held: {best} arrivals/s", kind.name()),
            None => println!("{}: no rate held", kind.name()),
        }
    }
    println!(
        "waiters matched: {waiters_matched} (must be 0), waiters dropped: {waiters_dropped}, server alive at the end: {}",
        if alive { "yes" } else { "no" }
    );
    println!("server log: {}", work.join("server.log").display());
    Ok(())
}
