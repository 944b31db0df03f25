//! `relay`: pairs of clients in probes that never end relay `probe_signal` frames at open-loop
//! rates; the relay latency per rate (see the crate doc). [`RelayRig`] is one relay's server
//! and its linked clients, also driven by [`compare`]; [`backend`] is how each relay's clients
//! speak, [`ladder`] how a run walks through rates.

pub(crate) mod backend;
pub(crate) mod compare;
pub(crate) mod ladder;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pairlab_tests::WorkDir;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use self::backend::{incoming, join_alternative, outgoing, start_backend, Backend, Incoming, Link};
use self::ladder::{Ladder, LadderState};
use crate::client::{clock_ns, connect, sleep_until, Latency, CONNECT_TIMEOUT};
use crate::server::RelayServer;
use crate::system::{cpu_percent, machine, raise_fd_limit, NetCounters};
use crate::{check_rates, highest, LoadgenError, Result, Search};

/// The most `probe_signal` frames per second one client is asked to send: a quarter of the
/// server's sustained per-connection limit (200/s, `server/src/core/ratelimit.rs`), leaving
/// room for `pong`s and for catching up after a late tick without touching the burst (400).
pub const MAX_CLIENT_RATE: f64 = 50.0;

/// How long after the last send the receivers get to see the last frames before they count as
/// lost.
pub(crate) const DRAIN: Duration = Duration::from_secs(1);

pub(crate) struct RelayArgs {
    pub(crate) bin: PathBuf,
    pub(crate) log: String,
    pub(crate) pairs: Option<usize>,
    pub(crate) rates: Vec<f64>,
    pub(crate) seconds: Duration,
    pub(crate) concurrency: usize,
    pub(crate) search: Option<Search>,
    /// pairlab only: the server gets a `metrics_token` and a `monitor_token`; `/metrics` is
    /// scraped every second and one `/monitor/events` stream stays open for the whole run (the
    /// cost of watching a study, against a run without).
    pub(crate) observed: bool,
}

/// A rate counts as held when the relay latency's p99 is under this, ms, and nothing is lost
/// (the capacity target).
pub const HELD_P99_MS: f64 = 5.0;

/// The scene of `relay`: pairs, FIFO, every pair probed, and the probe never times out during
/// a run (an hour), so both members stay in it relaying `probe_signal`s.
pub(crate) const RELAY_SCENE: &str = r#"[[scene]]
id = "relay"
group_size = 2
matchmaker = "fifo"
max_p2p_rtt_ms = 1000
probe_timeout_ms = 3600000
waitroom_timeout_ms = 3600000
hide_lobby_count = true
"#;

/// One rate's schedule, shared with every client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// The rate's index (which counters its frames go to).
    pub(crate) step: usize,
    /// Frames per second for each client.
    pub(crate) per_client: f64,
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

/// Counts of one rate step: per client until a flush, then summed over the clients.
#[derive(Default, Clone)]
pub(crate) struct StepCounts {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) latency_us: Vec<u32>,
    pub(crate) max_lag_us: u64,
}

impl StepCounts {
    pub(crate) fn merge(&mut self, other: &mut StepCounts) {
        self.sent += other.sent;
        self.received += other.received;
        self.latency_us.append(&mut other.latency_us);
        self.max_lag_us = self.max_lag_us.max(other.max_lag_us);
        other.sent = 0;
        other.received = 0;
        other.max_lag_us = 0;
    }
}

/// What the clients hand over: the counts of every step so far, and their errors.
#[derive(Default)]
pub(crate) struct Collected {
    pub(crate) steps: Vec<StepCounts>,
    pub(crate) errors: Vec<String>,
}

/// How the coordinator and the clients meet.
pub(crate) struct RelayShared {
    pub(crate) backend: Backend,
    pub(crate) port: u16,
    pub(crate) clients: usize,
    pub(crate) handshakes: Semaphore,
    /// Clients whose probe has started.
    pub(crate) in_probe: AtomicUsize,
    /// Clients still running.
    pub(crate) alive: AtomicUsize,
    /// Clients that flushed since the coordinator's last flush request.
    pub(crate) flushed: AtomicUsize,
    /// Frames received, all steps (to see a backlog drain).
    pub(crate) received_total: AtomicU64,
    /// The alternatives' clients' ids on their server, by client index.
    pub(crate) ids: Mutex<Vec<Option<String>>>,
    pub(crate) collected: Mutex<Collected>,
}

pub(crate) fn step_mut(steps: &mut Vec<StepCounts>, step: usize) -> &mut StepCounts {
    if steps.len() <= step {
        steps.resize_with(step + 1, StepCounts::default);
    }
    &mut steps[step]
}

impl RelayShared {
    pub(crate) fn flush(&self, local: &mut [StepCounts]) {
        let mut c = self.collected.lock().unwrap_or_else(|p| p.into_inner());
        for (i, s) in local.iter_mut().enumerate() {
            step_mut(&mut c.steps, i).merge(s);
        }
    }
}

pub(crate) async fn relay_client(
    shared: Arc<RelayShared>,
    index: usize,
    mut schedule: watch::Receiver<Option<Schedule>>,
    mut flush: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut local: Vec<StepCounts> = Vec::new();
    let error = relay_client_run(
        &shared,
        index,
        &mut local,
        &mut schedule,
        &mut flush,
        &mut stop,
    )
    .await
    .err();
    shared.flush(&mut local);
    if let Some(e) = error {
        let mut c = shared.collected.lock().unwrap_or_else(|p| p.into_inner());
        c.errors.push(e);
    }
    shared.alive.fetch_sub(1, Ordering::SeqCst);
}

/// One client: connect, join a probe (pairlab) or learn its peer (the alternatives), then
/// send on the schedule and time what arrives, until `stop`; `Err` says why it ended early.
pub(crate) async fn relay_client_run(
    shared: &RelayShared,
    index: usize,
    local: &mut Vec<StepCounts>,
    schedule: &mut watch::Receiver<Option<Schedule>>,
    flush: &mut watch::Receiver<u64>,
    stop: &mut watch::Receiver<bool>,
) -> std::result::Result<(), String> {
    let backend = shared.backend;
    let permit = shared.handshakes.acquire().await;
    let (mut ws, mut link) = if backend == Backend::Pairlab {
        let subject = format!("relay-{index:06}");
        let ws = connect(shared.port, &subject).await?;
        (
            ws,
            Link::Pairlab {
                probe: None,
                started: false,
            },
        )
    } else {
        let (ws, peer) = tokio::time::timeout(CONNECT_TIMEOUT * 2, join_alternative(shared, index))
            .await
            .map_err(|_| "no peer id in time".to_owned())??;
        shared.in_probe.fetch_add(1, Ordering::SeqCst);
        (ws, Link::Peer(peer))
    };
    drop(permit);
    // Each client's sends are offset by its share of the interval, spreading the load evenly.
    let phase = index as f64 / shared.clients as f64;
    let mut current: Option<Schedule> = None;
    let mut k: u64 = 0;
    let next_at = |s: &Schedule, k: u64| -> Instant {
        s.start + Duration::from_secs_f64((k as f64 + phase) / s.per_client)
    };
    let result = loop {
        let due = match &current {
            Some(s) if link.ready() => {
                let at = next_at(s, k);
                (at < s.end).then_some(at)
            }
            _ => None,
        };
        tokio::select! {
            biased;
            _ = stop.changed() => break Ok(()),
            changed = flush.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                shared.flush(local);
                shared.flushed.fetch_add(1, Ordering::SeqCst);
            }
            changed = schedule.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                current = *schedule.borrow_and_update();
                k = 0;
            }
            () = sleep_until(due), if due.is_some() => {
                let (Some(s), Some(at)) = (current, due) else {
                    continue;
                };
                let lag = Instant::now().saturating_duration_since(at);
                let counts = step_mut(local, s.step);
                counts.max_lag_us = counts
                    .max_lag_us
                    .max(u64::try_from(lag.as_micros()).unwrap_or(u64::MAX));
                k += 1;
                let Some(text) = outgoing(backend, &link, s.step, clock_ns()) else {
                    continue;
                };
                if let Err(e) = ws.send(Message::text(text)).await {
                    break Err(format!("send a frame: {e}"));
                }
                step_mut(local, s.step).sent += 1;
            }
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => break Err(format!("closed by the server: {c:?}")),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break Err(format!("read: {e}")),
                    None => break Err("closed by the server".into()),
                };
                let now_ns = clock_ns();
                match incoming(backend, &mut link, &text) {
                    Ok(Incoming::Frame(step, sent_ns)) => {
                        shared.received_total.fetch_add(1, Ordering::Relaxed);
                        let counts = step_mut(local, step);
                        counts.received += 1;
                        let us = now_ns.saturating_sub(sent_ns) / 1000;
                        counts.latency_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    Ok(Incoming::Reply(reply)) => {
                        if let Err(e) = ws.send(Message::text(reply)).await {
                            break Err(format!("send a reply: {e}"));
                        }
                    }
                    Ok(Incoming::Started) => {
                        shared.in_probe.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Incoming::Nothing) => {}
                    Err(e) => break Err(e),
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    result
}

/// One rate's row of the table.
pub(crate) struct RelayRow {
    pub(crate) rate: f64,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    /// Relay latency (receive − send), µs.
    pub(crate) latency: Latency,
    pub(crate) max_lag_us: u64,
    pub(crate) server_cpu: Option<f64>,
    pub(crate) loadgen_cpu: Option<f64>,
    /// Packets the kernel dropped and TCP segments it retransmitted during the step, all
    /// processes (see [`NetCounters`]).
    pub(crate) net: Option<NetCounters>,
}

impl RelayRow {
    pub(crate) fn held(&self) -> bool {
        self.sent > 0 && self.received >= self.sent && self.latency.p99_under_ms(HELD_P99_MS)
    }
}

pub(crate) fn print_relay_header() {
    print_relay_header_labelled(None);
}

/// The relay table's header, with a first column `label` when given (`compare`'s live rows).
pub(crate) fn print_relay_header_labelled(label: Option<&str>) {
    if let Some(label) = label {
        print!("| {label:>15} ");
    }
    println!(
        "| {:>8} | {:>8} | {:>8} | {:>6} | {:>7} | {:>7} | {:>7} | {:>15} | {:>12} | {:>13} | {:>19} | {:>4} |",
        "rate/s",
        "sent",
        "received",
        "lost",
        "p50 ms",
        "p99 ms",
        "max ms",
        "gen. lag max ms",
        "server CPU %",
        "loadgen CPU %",
        "kernel drops/retx",
        "held"
    );
    if label.is_some() {
        print!("|{:-<17}", "");
    }
    println!(
        "|{:-<10}|{:-<10}|{:-<10}|{:-<8}|{:-<9}|{:-<9}|{:-<9}|{:-<17}|{:-<14}|{:-<15}|{:-<21}|{:-<6}|",
        "", "", "", "", "", "", "", "", "", "", "", ""
    );
}

pub(crate) fn print_relay_row(r: &RelayRow) {
    let ms = |v: Option<u32>| v.map_or("-".into(), |us| format!("{:.2}", f64::from(us) / 1000.0));
    println!(
        "| {:>8} | {:>8} | {:>8} | {:>6} | {:>7} | {:>7} | {:>7} | {:>15} | {:>12} | {:>13} | {:>19} | {:>4} |",
        r.rate,
        r.sent,
        r.received,
        r.sent.saturating_sub(r.received),
        ms(r.latency.p50_us),
        ms(r.latency.p99_us),
        ms(r.latency.max_us),
        format!("{:.2}", r.max_lag_us as f64 / 1000.0),
        r.server_cpu.map_or("?".into(), |c| format!("{c:.0}")),
        r.loadgen_cpu.map_or("?".into(), |c| format!("{c:.0}")),
        r.net
            .map_or("?".into(), |n| format!("{}/{}", n.drops, n.retrans)),
        if r.held() { "yes" } else { "no" },
    );
}

/// What one backend's relay run measured.
pub(crate) struct RelayOutcome {
    pub(crate) pairs: usize,
    pub(crate) clients: usize,
    pub(crate) rows: Vec<RelayRow>,
    pub(crate) errors: Vec<String>,
    pub(crate) log: PathBuf,
}

impl RelayOutcome {
    pub(crate) fn best(&self) -> Option<f64> {
        highest(self.rows.iter().filter(|r| r.held()).map(|r| r.rate))
    }

    /// The last row run at `rate` (a retried rate has two).
    pub(crate) fn row_at(&self, rate: f64) -> Option<&RelayRow> {
        self.rows.iter().rev().find(|r| r.rate == rate)
    }
}

/// The pairs a run needs so that no client sends over [`MAX_CLIENT_RATE`] at `max_rate`.
pub(crate) fn relay_pairs(args: &RelayArgs) -> Result<usize> {
    check_rates(&args.rates, args.search)?;
    let max_rate = args
        .rates
        .iter()
        .copied()
        .chain(args.search.map(|s| s.max))
        .fold(0.0, f64::max);
    let pairs = args
        .pairs
        .unwrap_or_else(|| ((max_rate / (2.0 * MAX_CLIENT_RATE)).ceil() as usize).max(10));
    if pairs == 0 {
        return Err(LoadgenError::Args("--pairs must be at least 1".into()));
    }
    let per_client_max = max_rate / (2 * pairs) as f64;
    if per_client_max > MAX_CLIENT_RATE {
        return Err(LoadgenError::Args(format!(
            "{pairs} pairs at {max_rate} frames/s is {per_client_max:.0} frames/s per client, over {MAX_CLIENT_RATE} \
             (the server closes a client over 200/s sustained, burst 400: server/src/core/ratelimit.rs); use at least {} pairs",
            (max_rate / (2.0 * MAX_CLIENT_RATE)).ceil()
        )));
    }
    Ok(pairs)
}

/// One backend's server and its clients, linked in pairs, ready to run rates.
pub(crate) struct RelayRig {
    pub(crate) backend: Backend,
    pub(crate) server: RelayServer,
    pub(crate) work: WorkDir,
    pub(crate) pairs: usize,
    pub(crate) shared: Arc<RelayShared>,
    pub(crate) sched_tx: watch::Sender<Option<Schedule>>,
    pub(crate) flush_tx: watch::Sender<u64>,
    pub(crate) stop_tx: watch::Sender<bool>,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
    pub(crate) epoch: u64,
    pub(crate) rows: Vec<RelayRow>,
}

impl RelayRig {
    /// Starts the server and `pairs` pairs of clients; returns once every client is linked
    /// to its peer (pairlab: in a started probe).
    pub(crate) async fn start(args: &RelayArgs, backend: Backend, pairs: usize) -> Result<Self> {
        let clients = 2 * pairs;
        let work = WorkDir::fresh(&format!("loadgen-relay-{}", backend.name()))?;
        let mut server = start_backend(args, backend, &work).await?;
        println!(
            "relay: {} (pid {}) on 127.0.0.1:{}; {pairs} pairs ({clients} clients)",
            backend.name(),
            server.pid(),
            server.port()
        );
        clock_ns();
        let shared = Arc::new(RelayShared {
            backend,
            port: server.port(),
            clients,
            handshakes: Semaphore::new(args.concurrency.max(1)),
            in_probe: AtomicUsize::new(0),
            alive: AtomicUsize::new(clients),
            flushed: AtomicUsize::new(0),
            received_total: AtomicU64::new(0),
            ids: Mutex::new(vec![None; clients]),
            collected: Mutex::new(Collected::default()),
        });
        let (sched_tx, sched_rx) = watch::channel(None);
        let (flush_tx, flush_rx) = watch::channel(0u64);
        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                tokio::spawn(relay_client(
                    shared.clone(),
                    i,
                    sched_rx.clone(),
                    flush_rx.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        let t = Instant::now();
        while shared.in_probe.load(Ordering::SeqCst) < clients {
            let gone = shared.alive.load(Ordering::SeqCst) < clients;
            if t.elapsed() > Duration::from_secs(60) || gone || !server.alive() {
                let _ = stop_tx.send(true);
                let errors = shared
                    .collected
                    .lock()
                    .map(|c| c.errors.first().cloned().unwrap_or_default())
                    .unwrap_or_default();
                return Err(server.failed(&format!(
                    "linked {} of {clients} clients to their peer (60 s at most); first client error: {errors}",
                    shared.in_probe.load(Ordering::SeqCst)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "relay: all {clients} {} clients linked to their peer after {:?}",
            backend.name(),
            t.elapsed()
        );
        Ok(RelayRig {
            backend,
            server,
            work,
            pairs,
            shared,
            sched_tx,
            flush_tx,
            stop_tx,
            tasks,
            epoch: 0,
            rows: Vec::new(),
        })
    }

    /// Runs `rate` frames/s for `seconds`, collects the counts, and lets a backlog drain
    /// when the rate was not held. Returns the row (also kept).
    pub(crate) async fn step(&mut self, rate: f64, seconds: Duration) -> &RelayRow {
        let shared = &self.shared;
        let step = self.rows.len();
        let start = Instant::now() + Duration::from_millis(200);
        let end = start + seconds;
        let _ = self.sched_tx.send(Some(Schedule {
            step,
            per_client: rate / shared.clients as f64,
            start,
            end,
        }));
        tokio::time::sleep_until(tokio::time::Instant::from_std(start)).await;
        let net0 = NetCounters::read();
        let (server_cpu, loadgen_cpu) = cpu_percent(self.server.pid(), seconds).await;
        tokio::time::sleep(DRAIN).await;
        let net = NetCounters::read().zip(net0).map(|(b, a)| b.since(a));
        // Every client hands over its counts.
        shared.flushed.store(0, Ordering::SeqCst);
        self.epoch += 1;
        let _ = self.flush_tx.send(self.epoch);
        let t = Instant::now();
        while shared.flushed.load(Ordering::SeqCst) < shared.alive.load(Ordering::SeqCst)
            && t.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut counts = {
            let mut c = shared.collected.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(step_mut(&mut c.steps, step))
        };
        counts.latency_us.sort_unstable();
        let row = RelayRow {
            rate,
            sent: counts.sent,
            received: counts.received,
            latency: Latency::of(&counts.latency_us),
            max_lag_us: counts.max_lag_us,
            server_cpu,
            loadgen_cpu,
            net,
        };
        if !row.held() {
            // Let a backlog drain: no frame for a second (30 s at most).
            let t = Instant::now();
            let mut last = shared.received_total.load(Ordering::Relaxed);
            while t.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = shared.received_total.load(Ordering::Relaxed);
                if now == last {
                    break;
                }
                last = now;
            }
        }
        self.rows.push(row);
        &self.rows[step]
    }

    /// Stops the clients and the server.
    pub(crate) async fn finish(mut self) -> RelayOutcome {
        let _ = self.stop_tx.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::future::join_all(tasks),
        )
        .await;
        self.server.stop().await;
        let errors = self
            .shared
            .collected
            .lock()
            .map(|c| c.errors.clone())
            .unwrap_or_default();
        RelayOutcome {
            pairs: self.pairs,
            clients: self.shared.clients,
            rows: self.rows,
            errors,
            log: self.work.join("server.log"),
        }
    }
}

pub(crate) async fn relay(args: RelayArgs) -> Result<()> {
    let pairs = relay_pairs(&args)?;
    let fds = raise_fd_limit(2 * pairs as u64 + 512)?;
    let machine = machine();
    println!("{machine}");
    println!("relay: fd limit {fds}");
    let mut rig = RelayRig::start(&args, Backend::Pairlab, pairs).await?;
    let mut ladder = LadderState::new(
        &args.rates,
        args.search,
        Ladder {
            stop_at_fail: false,
            down: false,
            retry_lagged: false,
        },
    );
    let mut next = ladder.first();
    while let Some(rate) = next {
        let first = rig.rows.is_empty();
        let row = rig.step(rate, args.seconds).await;
        if first {
            print_relay_header();
        }
        print_relay_row(row);
        next = ladder.next(row);
        if !rig.server.alive() {
            break;
        }
    }
    let out = rig.finish().await;
    println!();
    println!(
        "## relay: {} pairs ({} clients), {:.1} s per rate, probe_signal ice_candidate frames; \
         latency = receive − send on one clock; held = p99 < {HELD_P99_MS} ms and nothing lost",
        out.pairs,
        out.clients,
        args.seconds.as_secs_f64()
    );
    println!("{machine}");
    print_relay_header();
    for row in &out.rows {
        print_relay_row(row);
    }
    match out.best() {
        Some(best) => println!("highest rate held: {best} frames/s"),
        None => println!("no rate held"),
    }
    println!(
        "clients with errors: {} (of {}){}",
        out.errors.len(),
        out.clients,
        out.errors
            .first()
            .map_or(String::new(), |e| format!("; first: {e}"))
    );
    println!("server log: {}", out.log.display());
    Ok(())
}
