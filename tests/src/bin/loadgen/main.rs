//! `loadgen`: pairlab's load generator ("Server capacity").
//!
//! It starts the real `pairlab` binary on a free port of 127.0.0.1 with a scene file made for
//! the scenario, drives it with protocol-speaking WebSocket clients (tokio-tungstenite), prints
//! a table, and stops the server by its PID. Every run is bounded in connections and in time,
//! and stops by itself.
//!
//! ```text
//! cargo build -j2 --release -p pairlab-server --bin pairlab
//! cargo run -j2 -p pairlab-tests --release --bin loadgen -- hold --n 10000 --step 1000
//! cargo run -j2 -p pairlab-tests --release --bin loadgen -- relay --rate 1000,5000,20000 --seconds 5 --search
//! cargo run -j2 -p pairlab-tests --release --bin loadgen -- waitroom --n 10000 --arrival-rate 500
//! cargo run -j2 -p pairlab-tests --release --bin loadgen -- matchmaking --n 10000 --rate 500,1000,2000,5000 --search
//! scripts/bench-setup.sh   # once: matchbox_server and the python-socketio venv, under target/
//! cargo run -j2 -p pairlab-tests --release --bin loadgen -- compare --rates 1000,5000,20000 --seconds 5
//! # Hostile load (BENCHMARKS.md)
//! cargo run -j2 -p pairlab-tests --release --bin loadgen -- hostile [--server-nofile 1024]
//! cargo run -j2 -p pairlab-tests --release --bin loadgen -- flood [--report-kb 0]
//! cargo run -j2 -p pairlab-tests --release --bin loadgen -- disk      # as root: a tmpfs
//! cargo run -j2 -p pairlab-tests --release --bin loadgen -- churn --games 100000
//! cargo run -j2 -p pairlab-tests --release --bin loadgen -- soak --seconds 3600 --sample-s 300
//! ```
//!
//! Smoke sizes (seconds each): `hold --n 200 --step 100 --checkpoints 200 --cpu-window-s 1`,
//! `relay --rate 500 --seconds 1`, `waitroom --n 200 --arrival-rate 50 --seconds 1`,
//! `matchmaking --n 40 --rate 20 --seconds 1`.
//!
//! Scenarios:
//! - `hold`: ramps to `--n` connections in steps of `--step`; each says `hello` with its own
//!   `subject_id`, answers every `ping` with a `pong` at once and stays. The scene matches
//!   nobody (`latency_fifo` with `max_server_rtt_ms = 0.001`: no two loopback RTTs add up to
//!   1 µs) and hides the lobby count, so what is measured is the cost of holding connections.
//!   After each step: the server's RSS (`VmRSS` of `/proc/PID/status`) and KB per connection
//!   (RSS growth over the idle server, divided by the connections); at each `--checkpoints`
//!   count also the server's CPU (`utime + stime` of `/proc/PID/stat` over `--cpu-window-s`, as
//!   % of one core) and the load generator's own.
//! - `relay`: `--pairs` pairs of clients, each pair matched (FIFO, pairs) into a probe that
//!   never ends during the run (`max_p2p_rtt_ms` set, `probe_timeout_ms` an hour; clients
//!   answer `probe_prepare` with `probe_ready` and never send `probe_result`). Then, for each
//!   rate of `--rate` (frames/s, all clients together) for `--seconds`, every client sends
//!   `probe_signal` `ice_candidate` frames to its peer on an open-loop schedule (fixed send
//!   times, spread evenly over the clients; a late send is sent at once and counted as
//!   generator lag, never skipped). The candidate string carries the send time (ns on this
//!   process's monotonic clock), so the receiver measures the relay latency (receive − send)
//!   on the same clock. Reported per rate: sent, received, lost, p50/p99/max latency, the
//!   generator's worst lag, the server's CPU, and whether the rate was held (p99 under
//!   [`relay::HELD_P99_MS`], nothing lost). `--search` then multiplies the last rate by
//!   `--search-factor` while it is held, up to `--search-max`, and names the highest rate held.
//! - `waitroom`: `--n` waiting with the lobby count shown (nobody matches, as in `hold`), then
//!   new participants arrive at `--arrival-rate` per second for `--seconds`. Reported, quiet
//!   and during the arrivals: `waitroom` messages per second (all clients, and per participant:
//!   PROTOCOL.md coalesces updates to one a second each), the server's RSS and CPU; the
//!   arrivals' connect → `welcome` time; the shortest gap between two updates to one client.
//!   `--hide-count` runs the same arrivals without the updates, as the baseline.
//! - `matchmaking`: `--n` wait and never match, then arrivals at open-loop rates (`--rate`,
//!   each for `--seconds`) are matched with the probe disabled (no `max_p2p_rtt_ms`), through
//!   `fifo` and `latency_fifo` in turn, on the same server and waiters. The waiters answer
//!   every `ping` after `--pong-delay-ms` (200), so the server measures their RTT at about that;
//!   the `wait` scene is `latency_fifo` with `max_server_rtt_ms` = 100, so no pair with a waiter
//!   passes. `latency_fifo`: arrivals join that scene, each is checked against all N waiters
//!   and pairs off with another arrival. `fifo`: FIFO with pairs never holds more than one
//!   waiting (any second arrival completes a pair), so N waiting cannot exist in a FIFO scene;
//!   the N wait in the other scene of the same server and the arrivals pair off in a `fifo`
//!   scene. Matched arrivals send `leave` and close. Reported per rate: matched arrivals,
//!   matched/s (matched ÷ (last `game_start` − first arrival)), connect → `game_start` p50/p99,
//!   the generator's lag, `/healthz` `waiting` after the step, CPU; held = every arrival
//!   matched and p99 under [`matchmaking::HELD_MATCH_P99_MS`].
//! - `compare`: the `relay` load, with the same pairs and rates, against pairlab,
//!   `matchbox_server` (crates.io, `<target>/bench-tools/bin`) and the python-socketio relay of
//!   `bench/socketio_relay.py` (`<target>/bench-venv`), one after the other in one run, each
//!   through its own protocol (see [`relay::backend::Backend`]); the alternatives relay the same signal JSON
//!   a `probe_signal` carries. The given rates run in order until one is not held; then the
//!   search goes up from the last held (× `--search-factor`) or, when the first is not held,
//!   down. Prints rate → p50/p99/lost for each and the ratios of the highest rates held.
//!
//! - `hostile`, `flood`, `disk`, `churn`, `soak`: the hostile load of BENCHMARKS.md, each
//!   described in its module: connections that never finish a request while honest pairs play
//!   ([`mod@hostile`]); one game member flooding its game with reports ([`mod@flood`]); the
//!   record on a disk that fills up and frees ([`mod@disk`]); 100,000 games played through and
//!   forgotten ([`mod@churn`]); a steady mix of probed games and drops with the record checked
//!   against what was done ([`mod@soak`]). Their game members share
//!   [`client::until_game`] and [`client::play_pair`].
//!
//! The server's per-connection rate limit (200 frames/s sustained, burst 400:
//! `server/src/core/ratelimit.rs`) bounds what one client may send, so the pairs are chosen
//! (or checked, with `--pairs`) so that each client sends at most [`relay::MAX_CLIENT_RATE`] frames/s.
//!
//! Both processes need a file descriptor per connection: the load generator raises its own
//! `RLIMIT_NOFILE` soft limit up to the hard limit before it starts the server, which inherits
//! it. If the hard limit is too low it says so and stops.

//!
//! Modules, one per scenario plus what they share: [`mod@hold`], [`mod@waitroom`], [`mod@relay`] (with
//! [`relay::backend`]: how each relay's clients speak, [`relay::ladder`]: how a run walks
//! through rates, and [`mod@relay::compare`]), [`mod@matchmaking`], the hostile load's
//! [`mod@hostile`], [`mod@flood`], [`mod@disk`], [`mod@churn`], [`mod@soak`]; [`client`] (the protocol-speaking
//! WebSocket clients and their counters), [`server`] (the relays as processes, through the
//! harness) and [`system`] (`/proc` readings: RSS, CPU, open files, network counters; the open-files limit).
//! The rate options' check ([`check_rates`]), [`Search`] and [`highest`] (the highest rate
//! held) are here, shared by `relay`, `compare` and `matchmaking`.

mod churn;
mod client;
mod disk;
mod flood;
mod hold;
mod hostile;
mod matchmaking;
mod relay;
mod server;
mod soak;
mod system;
mod waitroom;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pairlab_tests::target_dir;

use crate::churn::{churn, ChurnArgs};
use crate::disk::{disk, DiskArgs};
use crate::flood::{flood, FloodArgs};
use crate::hold::{hold, Churn, HoldArgs};
use crate::hostile::{hostile, HostileArgs};
use crate::matchmaking::{matchmaking, MatchmakingArgs, MmKind};
use crate::relay::backend::{Backend, CompareWhat};
use crate::relay::compare::compare;
use crate::relay::{relay, RelayArgs};
use crate::soak::{soak, SoakArgs};
use crate::waitroom::{waitroom, WaitroomArgs};

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadgenError {
    /// The pairlab binary is not there.
    #[error("no pairlab binary at {0}; build it: cargo build -j2 --release -p pairlab-server --bin pairlab (or pass --server-bin)")]
    NoBinary(PathBuf),
    /// The hard limit on open files is below what the run needs.
    #[error(
        "this run needs {needed} open files per process but the hard limit (ulimit -Hn) is {hard}; \
         raise it (e.g. `ulimit -Hn {needed}` as root, or LimitNOFILE= / limits.conf) or use a smaller --n"
    )]
    FdLimit {
        /// What the run needs.
        needed: u64,
        /// The hard limit.
        hard: u64,
    },
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The harness (work folder, free port, HTTP) failed.
    #[error(transparent)]
    Harness(#[from] pairlab_tests::HarnessError),
    /// The server stopped, or did not become healthy.
    #[error("the server {0}; its log ({1}):\n{2}")]
    Server(String, String, String),
    /// The arguments do not make a valid run.
    #[error("{0}")]
    Args(String),
}

/// The load generator's result type.
pub(crate) type Result<T> = std::result::Result<T, LoadgenError>;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "pairlab's load generator: holds connections or relays probe signals against the real server on 127.0.0.1, then prints a table."
)]
struct Cli {
    /// The pairlab binary to start (default: `<target>/release/pairlab`).
    #[arg(long, global = true, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// RUST_LOG for the server (its log: `<target>/e2e/loadgen-<scenario>/server.log`).
    #[arg(long, global = true, default_value = "warn")]
    server_log: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Ramp to N connections that answer pings and stay; report the server's RSS and CPU.
    Hold {
        /// Connections to reach.
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// Connections added per step (RSS is reported after each step).
        #[arg(long, default_value_t = 1_000)]
        step: usize,
        /// Connection counts at which CPU is measured too (N itself always is).
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
        checkpoints: Vec<usize>,
        /// CPU measurement window at each checkpoint, seconds.
        #[arg(long, default_value_t = 5.0)]
        cpu_window_s: f64,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Give up ramping after this many seconds (the table shows what was reached).
        #[arg(long, default_value_t = 180)]
        seconds: u64,
        /// Turn `/metrics` on (a `metrics_token`) and scrape it this often, ms, for the whole
        /// run; prints the scrapes' durations. Without it, metrics are off.
        #[arg(long, value_name = "MS")]
        metrics_every_ms: Option<u64>,
        /// Turn `/monitor` on (a `monitor_token`) and keep this many of its event streams
        /// open for the whole run (0: the monitor's state is kept, no page open); prints what
        /// they received. Without it, the monitor is off.
        #[arg(long, value_name = "N")]
        monitor_streams: Option<usize>,
        /// Hold in a `fifo` scene with groups of this size (larger than N: everyone waits and
        /// every arrival runs the matchmaker) instead of the never-matched pairs scene.
        #[arg(long, value_name = "G")]
        fifo_group_size: Option<u32>,
        /// Connect at this many per second instead of each step at once.
        #[arg(long, value_name = "PER_S")]
        arrival_rate: Option<f64>,
        /// Groups of this size in the never-matched `latency_fifo` scene (default 2): every
        /// event still runs the matchmaker, nobody passes its pre-filter.
        #[arg(long, value_name = "G", conflicts_with = "fifo_group_size")]
        group_size: Option<u32>,
        /// Once N are held, this many seconds of churn: `--churn-rate` held participants
        /// leave (`leave`) and as many new ones arrive, per second; reports the server's CPU
        /// over the churn and the arrivals' entry server RTTs.
        #[arg(long, value_name = "S")]
        churn_s: Option<f64>,
        /// Leaves and arrivals per second each during `--churn-s`.
        #[arg(long, value_name = "PER_S", default_value_t = 50.0)]
        churn_rate: f64,
    },
    /// Hold N waiting with the lobby count shown, then add arrivals at a fixed rate; report
    /// the waitroom messages per second and the server's CPU.
    Waitroom {
        /// Participants waiting before the arrivals.
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// New participants per second (each stays).
        #[arg(long, default_value_t = 500.0)]
        arrival_rate: f64,
        /// How long the arrivals (and the quiet measurement before them) last, seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Handshakes in flight at once while ramping to N.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Hide the lobby count (the baseline: the same arrivals without the updates).
        #[arg(long)]
        hide_count: bool,
    },
    /// Pairs in probes relay probe_signal frames at open-loop rates; report relay latency.
    Relay {
        /// Pairs of clients (default: enough that each client sends at most 50 frames/s at
        /// the highest rate, and at least 10).
        #[arg(long)]
        pairs: Option<usize>,
        /// Total probe_signal frames per second, all clients together; several rates run one
        /// after the other on the same pairs.
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        rate: Vec<f64>,
        /// How long each rate runs, seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// After the given rates, search upward: multiply the last rate by --search-factor
        /// while it is held (p99 < 5 ms, nothing lost), up to --search-max.
        #[arg(long)]
        search: bool,
        /// The search's step factor.
        #[arg(long, default_value_t = 1.25)]
        search_factor: f64,
        /// The search's highest rate (also sizes the pairs), frames/s.
        #[arg(long, default_value_t = 80_000.0)]
        search_max: f64,
        /// Watch the run as a researcher would: the server gets a metrics_token and a
        /// monitor_token, /metrics is scraped every second and one /monitor stream stays open.
        #[arg(long)]
        observed: bool,
    },
    /// The relay load of `relay` against pairlab, matchbox_server and a python-socketio relay
    /// (scripts/bench-setup.sh installs the last two under target/), in one run; prints
    /// p50/p99/lost per rate for each and the ratios of the highest rates held.
    Compare {
        /// Pairs of clients, the same for every relay (default: as `relay`).
        #[arg(long)]
        pairs: Option<usize>,
        /// Frames per second, all clients together, in order.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,20000")]
        rates: Vec<f64>,
        /// How long each rate runs, seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// No search for the highest rate held: the given rates only.
        #[arg(long)]
        no_search: bool,
        /// The search's step factor (upward from the last rate held; downward from a first
        /// rate not held).
        #[arg(long, default_value_t = 1.25)]
        search_factor: f64,
        /// The search's highest rate (also sizes the pairs), frames/s.
        #[arg(long, default_value_t = 80_000.0)]
        search_max: f64,
        /// The relays to run (default: all three).
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "pairlab,matchbox,socketio"
        )]
        only: Vec<CompareWhat>,
    },
    /// N wait and never match; arrivals at open-loop rates are matched (probe disabled) by
    /// fifo and latency_fifo; report matched arrivals/s and connect → game_start latency.
    Matchmaking {
        /// Participants waiting all through (they answer pings late, so they never match).
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// Arrivals per second (open loop); each rate runs for --seconds.
        #[arg(long, value_delimiter = ',', default_value = "500,1000,2000,5000")]
        rate: Vec<f64>,
        /// How long each rate's arrivals last, seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// The matchmakers to run, one after the other, on the same waiters.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "fifo,latency-fifo"
        )]
        matchmaker: Vec<MmKind>,
        /// The waiters' pong delay, ms (over 50: two waiters must fail the 100 ms pre-filter).
        #[arg(long, default_value_t = 200)]
        pong_delay_ms: u64,
        /// Handshakes in flight at once while the waiters connect.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// After the given rates, search upward while held (every arrival matched, p99 < 250 ms).
        #[arg(long)]
        search: bool,
        /// The search's step factor.
        #[arg(long, default_value_t = 1.5)]
        search_factor: f64,
        /// The search's highest rate, arrivals/s.
        #[arg(long, default_value_t = 20_000.0)]
        search_max: f64,
    },
    /// Idle and slow-header TCP connections while honest pairs play; report when the server
    /// closed them, the honest pairs' latency and the server's RSS.
    Hostile {
        /// Connections that send nothing.
        #[arg(long, default_value_t = 5_000)]
        idle: usize,
        /// Connections that send a never-ending request head.
        #[arg(long, default_value_t = 1_000)]
        slow: usize,
        /// Bytes per header line of a slow connection.
        #[arg(long, default_value_t = 1_000)]
        slow_chunk: usize,
        /// The gap between a slow connection's header lines, ms.
        #[arg(long, default_value_t = 100)]
        slow_every_ms: u64,
        /// The most a slow connection sends, KB.
        #[arg(long, default_value_t = 390)]
        slow_max_kb: usize,
        /// Loopback source addresses of the hostile connections (127.1.0.1 …; 0: 127.0.0.1).
        #[arg(long, default_value_t = 64)]
        source_ips: u32,
        /// Honest pairs starting a game per second, from 127.0.0.1.
        #[arg(long, default_value_t = 5.0)]
        honest_rate: f64,
        /// How long the run lasts, seconds (hostile connections still open then are closed).
        #[arg(long, default_value_t = 25.0)]
        seconds: f64,
        /// Start the server with this soft open-file limit (as `ulimit -n`).
        #[arg(long)]
        server_nofile: Option<u64>,
    },
    /// One game member floods its game with large episode_summary reports; report what the
    /// record takes (bytes/s) and the server's CPU, with the game live and after it ended.
    Flood {
        /// Size of one report, KB.
        #[arg(long, default_value_t = 33)]
        report_kb: usize,
        /// Reports per second (the server closes a connection over 200 frames/s).
        #[arg(long, default_value_t = 133.0)]
        rate: f64,
        /// How long the flood lasts while the game is live, seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// How long it goes on after the partner left (the game ended), seconds.
        #[arg(long, default_value_t = 5.0)]
        after_seconds: f64,
    },
    /// Games played through (hello → game_start → leave) and forgotten; report RSS after the
    /// warm-up and after the last game.
    Churn {
        /// Games in all.
        #[arg(long, default_value_t = 100_000)]
        games: usize,
        /// Games before the "before" RSS.
        #[arg(long, default_value_t = 1_000)]
        warmup: usize,
        /// Pairs in flight at once.
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
        /// How long to wait, once nobody is left, before reading the RSS, seconds (ended games
        /// are forgotten a minute after they end).
        #[arg(long, default_value_t = 65.0)]
        settle_s: f64,
        /// Loopback source addresses of the clients (127.2.0.1 …; 0: 127.0.0.1).
        #[arg(long, default_value_t = 16)]
        source_ips: u32,
        /// The scene's waitroom_timeout_ms (a waitroom deadline is kept until it passes).
        #[arg(long, default_value_t = 3_600_000)]
        waitroom_timeout_ms: u64,
        /// A shell command run at each reading, before the RSS is read, with `PAIRLAB_PID`
        /// (the server's pid) and `POINT` (`before` or `after`) in its environment: e.g. a
        /// heap profile of the server through gdb (BENCHMARKS.md, "100,000 games").
        #[arg(long)]
        at_point: Option<String>,
    },
    /// The record on a tmpfs that fills up and frees again (needs root); report /healthz and
    /// check the record for torn lines and the lost count.
    Disk {
        /// Size of the tmpfs, KB.
        #[arg(long, default_value_t = 256)]
        size_kb: u64,
        /// Participants per phase (ok, full, freed).
        #[arg(long, default_value_t = 100)]
        per_phase: usize,
    },
    /// A steady mix of probed games and drops; RSS and open files per sample, and the record
    /// checked against what was done.
    Soak {
        /// Pairs joining (probe, game, reports, leave) per second.
        #[arg(long, default_value_t = 10.0)]
        game_rate: f64,
        /// Participants joining and dropping per second.
        #[arg(long, default_value_t = 5.0)]
        drop_rate: f64,
        /// How long, seconds.
        #[arg(long, default_value_t = 300.0)]
        seconds: f64,
        /// The gap between samples, seconds.
        #[arg(long, default_value_t = 30.0)]
        sample_s: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bin = cli
        .server_bin
        .clone()
        .unwrap_or_else(|| target_dir().join("release").join("pairlab"));
    let result = runtime.block_on(async {
        match cli.scenario {
            Scenario::Hold {
                n,
                step,
                checkpoints,
                cpu_window_s,
                concurrency,
                seconds,
                metrics_every_ms,
                monitor_streams,
                fifo_group_size,
                arrival_rate,
                group_size,
                churn_s,
                churn_rate,
            } => {
                hold(HoldArgs {
                    bin,
                    log: cli.server_log,
                    n,
                    step,
                    checkpoints,
                    cpu_window: Duration::from_secs_f64(cpu_window_s.max(0.1)),
                    concurrency,
                    deadline: Duration::from_secs(seconds),
                    metrics_every: metrics_every_ms.map(Duration::from_millis),
                    monitor_streams,
                    fifo_group_size,
                    arrival_rate,
                    group_size,
                    churn: churn_s.map(|s| Churn {
                        seconds: s,
                        rate: churn_rate,
                    }),
                })
                .await
            }
            Scenario::Waitroom {
                n,
                arrival_rate,
                seconds,
                concurrency,
                hide_count,
            } => {
                waitroom(WaitroomArgs {
                    hide_count,
                    bin,
                    log: cli.server_log,
                    n,
                    arrival_rate,
                    seconds: Duration::from_secs_f64(seconds.max(0.5)),
                    concurrency,
                })
                .await
            }
            Scenario::Relay {
                pairs,
                rate,
                seconds,
                concurrency,
                search,
                search_factor,
                search_max,
                observed,
            } => {
                relay(RelayArgs {
                    bin,
                    log: cli.server_log,
                    pairs,
                    rates: rate,
                    seconds: Duration::from_secs_f64(seconds.max(0.1)),
                    concurrency,
                    search: search.then_some(Search {
                        factor: search_factor,
                        max: search_max,
                    }),
                    observed,
                })
                .await
            }
            Scenario::Compare {
                pairs,
                rates,
                seconds,
                concurrency,
                no_search,
                search_factor,
                search_max,
                only,
            } => {
                let backends: Vec<Backend> = only.iter().map(|w| w.backend()).collect();
                compare(
                    RelayArgs {
                        bin,
                        log: cli.server_log,
                        pairs,
                        rates,
                        seconds: Duration::from_secs_f64(seconds.max(0.1)),
                        concurrency,
                        search: (!no_search).then_some(Search {
                            factor: search_factor,
                            max: search_max,
                        }),
                        observed: false,
                    },
                    &backends,
                )
                .await
            }
            Scenario::Matchmaking {
                n,
                rate,
                seconds,
                matchmaker,
                pong_delay_ms,
                concurrency,
                search,
                search_factor,
                search_max,
            } => {
                matchmaking(MatchmakingArgs {
                    bin,
                    log: cli.server_log,
                    n,
                    rates: rate,
                    seconds: Duration::from_secs_f64(seconds.max(0.1)),
                    matchmakers: matchmaker,
                    concurrency,
                    pong_delay: Duration::from_millis(pong_delay_ms),
                    search: search.then_some(Search {
                        factor: search_factor,
                        max: search_max,
                    }),
                })
                .await
            }
            Scenario::Hostile {
                idle,
                slow,
                slow_chunk,
                slow_every_ms,
                slow_max_kb,
                source_ips,
                honest_rate,
                seconds,
                server_nofile,
            } => {
                hostile(HostileArgs {
                    bin,
                    log: cli.server_log,
                    idle,
                    slow,
                    slow_chunk,
                    slow_every: Duration::from_millis(slow_every_ms.max(1)),
                    slow_max_bytes: slow_max_kb * 1000,
                    source_ips,
                    honest_rate,
                    seconds: Duration::from_secs_f64(seconds.max(1.0)),
                    server_nofile,
                })
                .await
            }
            Scenario::Flood {
                report_kb,
                rate,
                seconds,
                after_seconds,
            } => {
                flood(FloodArgs {
                    bin,
                    log: cli.server_log,
                    report_kb,
                    rate,
                    seconds: Duration::from_secs_f64(seconds.max(0.5)),
                    after: Duration::from_secs_f64(after_seconds.max(0.5)),
                })
                .await
            }
            Scenario::Churn {
                games,
                warmup,
                concurrency,
                settle_s,
                source_ips,
                waitroom_timeout_ms,
                at_point,
            } => {
                churn(ChurnArgs {
                    bin,
                    log: cli.server_log,
                    games,
                    warmup,
                    concurrency,
                    settle: Duration::from_secs_f64(settle_s.max(0.0)),
                    source_ips,
                    waitroom_timeout_ms,
                    at_point,
                })
                .await
            }
            Scenario::Disk { size_kb, per_phase } => {
                disk(DiskArgs {
                    bin,
                    log: cli.server_log,
                    size_kb,
                    per_phase,
                })
                .await
            }
            Scenario::Soak {
                game_rate,
                drop_rate,
                seconds,
                sample_s,
            } => {
                soak(SoakArgs {
                    bin,
                    log: cli.server_log,
                    game_rate,
                    drop_rate,
                    seconds: Duration::from_secs_f64(seconds.max(1.0)),
                    sample: Duration::from_secs_f64(sample_s.max(0.5)),
                })
                .await
            }
        }
    });
    // Client tasks that did not finish their close handshake are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// After the given rates, keep multiplying the last one by `factor` until a rate is not held
/// (see each scenario's definition of held) or `max` is passed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Search {
    /// The step factor (over 1).
    pub(crate) factor: f64,
    /// The highest rate, per second.
    pub(crate) max: f64,
}

/// Checks the rates of a run and its search: every rate a positive number, and a search that
/// goes up (factor over 1) to a finite rate.
///
/// # Errors
/// [`LoadgenError::Args`] naming the option that is off.
pub(crate) fn check_rates(rates: &[f64], search: Option<Search>) -> Result<()> {
    if rates.is_empty() || rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return Err(LoadgenError::Args("--rate needs positive numbers".into()));
    }
    if let Some(s) = search {
        if !(s.factor > 1.0 && s.max.is_finite()) {
            return Err(LoadgenError::Args(
                "--search-factor must be over 1 and --search-max a number".into(),
            ));
        }
    }
    Ok(())
}

/// The highest of `rates` (the rates a scenario held), `None` when there are none.
pub(crate) fn highest(rates: impl IntoIterator<Item = f64>) -> Option<f64> {
    rates
        .into_iter()
        .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))))
}
