//! `loadgen`: pairlab's load generator (issue 4 §2, "Server capacity").
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
//!   [`HELD_P99_MS`], nothing lost). `--search` then multiplies the last rate by
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
//!   matched and p99 under [`HELD_MATCH_P99_MS`].
//! - `compare`: the `relay` load, with the same pairs and rates, against pairlab,
//!   `matchbox_server` (crates.io, `<target>/bench-tools/bin`) and the python-socketio relay of
//!   `bench/socketio_relay.py` (`<target>/bench-venv`), one after the other in one run, each
//!   through its own protocol (see [`Backend`]); the alternatives relay the same signal JSON
//!   a `probe_signal` carries. The given rates run in order until one is not held; then the
//!   search goes up from the last held (× `--search-factor`) or, when the first is not held,
//!   down. Prints rate → p50/p99/lost for each and the ratios of the highest rates held.
//!
//! The server's per-connection rate limit (200 frames/s sustained, burst 400:
//! `server/src/core/ratelimit.rs`) bounds what one client may send, so the pairs are chosen
//! (or checked, with `--pairs`) so that each client sends at most [`MAX_CLIENT_RATE`] frames/s.
//!
//! Both processes need a file descriptor per connection: the load generator raises its own
//! `RLIMIT_NOFILE` soft limit up to the hard limit before it starts the server, which inherits
//! it. If the hard limit is too low it says so and stops.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use pairlab_shared::{
    ClientMessage, Hello, Pong, ProbeReady, ProbeSessionId, ProbeSignalOut, ServerMessage,
    SignalPayload, SignalType, SubjectId,
};
use pairlab_tests::{free_port, http_get, tail, target_dir, WorkDir};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The most `probe_signal` frames per second one client is asked to send: a quarter of the
/// server's sustained per-connection limit (200/s, `server/src/core/ratelimit.rs`), leaving
/// room for `pong`s and for catching up after a late tick without touching the burst (400).
pub const MAX_CLIENT_RATE: f64 = 50.0;

/// How long a client may take to connect and get `welcome`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after the last send the receivers get to see the last frames before they count as
/// lost.
const DRAIN: Duration = Duration::from_secs(1);

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
enum LoadgenError {
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

type Result<T> = std::result::Result<T, LoadgenError>;

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

// ---------------------------------------------------------------------------------------------
// The server process and /proc
// ---------------------------------------------------------------------------------------------

/// The `pairlab serve` child: SIGTERM then SIGKILL by its PID when stopped or dropped.
struct ServerProc {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ServerProc {
    /// Writes `scene_toml` into `work` and starts `pairlab serve` on a free port; waits for
    /// `/healthz`.
    async fn start(
        bin: &PathBuf,
        log_filter: &str,
        work: &WorkDir,
        scene_toml: &str,
    ) -> Result<Self> {
        if !bin.is_file() {
            return Err(LoadgenError::NoBinary(bin.clone()));
        }
        let config = work.join("scene.toml");
        fs::write(&config, scene_toml).map_err(|source| LoadgenError::Io {
            what: format!("write {}", config.display()),
            source,
        })?;
        let log = work.join("server.log");
        let out = fs::File::create(&log).map_err(|source| LoadgenError::Io {
            what: format!("create {}", log.display()),
            source,
        })?;
        let err = out.try_clone().map_err(|source| LoadgenError::Io {
            what: "clone the log handle".into(),
            source,
        })?;
        let port = free_port()?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(work.join("data"))
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|source| LoadgenError::Io {
                what: format!("start {}", bin.display()),
                source,
            })?;
        let mut server = ServerProc { child, port, log };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(server.failed(&format!("exited ({status}) before it was ready")));
            }
            if let Ok((200, _)) = http_get(port, "/healthz").await {
                return Ok(server);
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(server.failed("did not answer /healthz within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts another relay (`program args…`) listening on 127.0.0.1:`port`, its output in
    /// `work/server.log`; waits until the port accepts a connection.
    ///
    /// # Errors
    /// [`LoadgenError::NoBinary`] (with `hint`) when `program` is not there; [`LoadgenError::Server`]
    /// when it exits or does not listen within 20 s.
    async fn start_external(
        program: &std::path::Path,
        args: &[String],
        log_filter: &str,
        work: &WorkDir,
        port: u16,
        hint: &str,
    ) -> Result<Self> {
        if !program.is_file() {
            return Err(LoadgenError::Args(format!(
                "no {} ({hint})",
                program.display()
            )));
        }
        let log = work.join("server.log");
        let out = fs::File::create(&log).map_err(|source| LoadgenError::Io {
            what: format!("create {}", log.display()),
            source,
        })?;
        let err = out.try_clone().map_err(|source| LoadgenError::Io {
            what: "clone the log handle".into(),
            source,
        })?;
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|source| LoadgenError::Io {
                what: format!("start {}", program.display()),
                source,
            })?;
        let mut server = ServerProc { child, port, log };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(server.failed(&format!("exited ({status}) before it listened")));
            }
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(server);
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(server.failed("did not listen within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn failed(&self, what: &str) -> LoadgenError {
        LoadgenError::Server(
            what.to_owned(),
            self.log.display().to_string(),
            tail(&self.log, 30),
        )
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The `connections` count of `/healthz` (open WebSockets), if it answers.
    async fn connections(&self) -> Option<u64> {
        let (status, body) = http_get(self.port, "/healthz").await.ok()?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        v.get("connections")?.as_u64()
    }

    /// SIGTERM (clean shutdown: WebSockets closed with 1001, record flushed), up to 10 s, then
    /// SIGKILL.
    async fn stop(mut self) {
        if !self.alive() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the PID of our own child, which has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let start = Instant::now();
        while self.alive() && start.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The machine, for the record: cores, memory, and the load average when the run starts
/// (other work on the same cores moves latency numbers).
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: Option<u64> = fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "machine: {cores} cores, {} GiB memory, load average {} at start",
        mem_kib.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0 / 1024.0)),
        load.join(" ")
    )
}

/// Resident set size of a process, KiB (`VmRSS` of `/proc/PID/status`).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time a process has used, seconds (`utime + stime` of `/proc/PID/stat`, fields 14 and
/// 15, in clock ticks; proc(5)).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field 14 is index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let tck = if tck > 0 { tck as f64 } else { 100.0 };
    Some((utime + stime) as f64 / tck)
}

/// CPU use of the server and of this process over `window`, % of one core each.
async fn cpu_percent(server_pid: u32, window: Duration) -> (Option<f64>, Option<f64>) {
    let sp = server_pid.to_string();
    let s0 = cpu_seconds(&sp);
    let m0 = cpu_seconds("self");
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let dt = t0.elapsed().as_secs_f64();
    let pct = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / dt * 100.0);
    (pct(s0, cpu_seconds(&sp)), pct(m0, cpu_seconds("self")))
}

/// The hard `RLIMIT_NOFILE` of this process, if `getrlimit` answers.
fn fd_hard_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_max)
}

/// Raises this process's soft `RLIMIT_NOFILE` to at least `needed` (children inherit it).
///
/// # Errors
/// [`LoadgenError::FdLimit`] when the hard limit is below `needed`; [`LoadgenError::Io`] when
/// the system call fails.
fn raise_fd_limit(needed: u64) -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(LoadgenError::Io {
            what: "getrlimit(RLIMIT_NOFILE)".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    let (cur, hard): (u64, u64) = (lim.rlim_cur, lim.rlim_max);
    if cur >= needed {
        return Ok(cur);
    }
    if hard < needed {
        return Err(LoadgenError::FdLimit { needed, hard });
    }
    lim.rlim_cur = needed;
    // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard one
    // needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(LoadgenError::Io {
            what: format!("setrlimit(RLIMIT_NOFILE, {needed})"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(needed)
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Small buffers on the client side too, so 10,000 clients do not cost the load generator
/// 10,000 × 128 KiB (tungstenite's default read buffer).
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

/// Connects, says `hello` as `subject`, and returns the socket once `welcome` came (answering
/// any `ping` before it).
async fn connect(port: u16, subject: &str) -> std::result::Result<Ws, String> {
    connect_scene(port, subject, None).await
}

/// [`connect`] into the scene `scene_id` (`None`: the config's first scene).
async fn connect_scene(
    port: u16,
    subject: &str,
    scene_id: Option<&str>,
) -> std::result::Result<Ws, String> {
    let url = format!("ws://127.0.0.1:{port}/ws");
    let go = async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(client_config()), true)
                .await
                .map_err(|e| format!("connect: {e}"))?;
        let subject_id = SubjectId::parse(subject).map_err(|e| format!("subject id: {e}"))?;
        let hello = ClientMessage::Hello(Hello {
            subject_id,
            scene_id: scene_id.map(str::to_owned),
            resume_token: None,
        });
        ws.send(Message::text(hello.to_json()))
            .await
            .map_err(|e| format!("send hello: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMessage>(&t) {
                    Ok(ServerMessage::Welcome(_)) => return Ok(ws),
                    Ok(ServerMessage::Ping(p)) => pong(&mut ws, p.seq).await?,
                    Ok(ServerMessage::Error(e)) => return Err(format!("error {:?}", e.code)),
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("closed before welcome".into()),
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, go)
        .await
        .map_err(|_| format!("no welcome within {CONNECT_TIMEOUT:?}"))?
}

async fn pong(ws: &mut Ws, seq: u64) -> std::result::Result<(), String> {
    ws.send(Message::text(ClientMessage::Pong(Pong { seq }).to_json()))
        .await
        .map_err(|e| format!("send pong: {e}"))
}

/// What the hold clients have seen, together.
#[derive(Default)]
struct HoldCounters {
    welcomed: AtomicUsize,
    failed: AtomicUsize,
    /// Connections that ended while they should have stayed.
    dropped: AtomicUsize,
    pongs: AtomicUsize,
    /// `waitroom` messages received, all clients.
    waitrooms: AtomicU64,
    /// The shortest gap between two `waitroom` updates to one client after its entry message,
    /// µs (`u64::MAX` until there is one); PROTOCOL.md: at most one a second.
    min_update_gap_us: AtomicU64,
    /// Connect → `welcome` times of the clients asked to record them, µs.
    connect_us: Mutex<Vec<u32>>,
    /// `game_start` or `probe_prepare` messages received: a held participant was matched.
    matched: AtomicUsize,
}

impl HoldCounters {
    fn new() -> Self {
        HoldCounters {
            min_update_gap_us: AtomicU64::new(u64::MAX),
            ..HoldCounters::default()
        }
    }
}

/// How a held client behaves beyond the defaults (first scene, pongs at once).
#[derive(Debug, Clone, Copy, Default)]
struct HoldOpts {
    /// The scene to join (`None`: the config's first).
    scene: Option<&'static str>,
    /// How long to wait before answering each `ping`: the server measures this client's RTT
    /// as about this much (the `matchmaking` waiters use it to fail the latency pre-filter).
    pong_delay: Duration,
}

async fn hold_client(
    port: u16,
    subject: String,
    counters: Arc<HoldCounters>,
    handshakes: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    record_connect: bool,
    opts: HoldOpts,
) {
    let permit = handshakes.acquire_owned().await;
    let t0 = Instant::now();
    let mut ws = match connect_scene(port, &subject, opts.scene).await {
        Ok(ws) => ws,
        Err(e) => {
            if counters.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("loadgen: {subject}: {e}");
            }
            return;
        }
    };
    drop(permit);
    if record_connect {
        let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
        let mut v = counters
            .connect_us
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        v.push(us);
    }
    counters.welcomed.fetch_add(1, Ordering::Relaxed);
    let mut waitrooms = 0u64;
    let mut last_waitroom: Option<Instant> = None;
    // The server has one ping outstanding at a time: one delayed pong at most.
    let mut pending_pong: Option<(u64, Instant)> = None;
    loop {
        let pong_due = pending_pong.map(|(_, at)| at);
        tokio::select! {
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return;
            }
            () = sleep_until(pong_due), if pong_due.is_some() => {
                if let Some((seq, _)) = pending_pong.take() {
                    if pong(&mut ws, seq).await.is_err() {
                        break;
                    }
                    counters.pongs.fetch_add(1, Ordering::Relaxed);
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMessage>(&t) {
                    Ok(ServerMessage::Ping(p)) if !opts.pong_delay.is_zero() => {
                        pending_pong = Some((p.seq, Instant::now() + opts.pong_delay));
                    }
                    Ok(ServerMessage::Ping(p)) => {
                        if pong(&mut ws, p.seq).await.is_err() {
                            break;
                        }
                        counters.pongs.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ServerMessage::GameStart(_) | ServerMessage::ProbePrepare(_)) => {
                        counters.matched.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ServerMessage::Waitroom(_)) => {
                        let now = Instant::now();
                        waitrooms += 1;
                        counters.waitrooms.fetch_add(1, Ordering::Relaxed);
                        // The first is the entry message; the gaps between later ones are
                        // the coalesced updates.
                        if let (true, Some(last)) = (waitrooms > 2, last_waitroom) {
                            let gap = u64::try_from((now - last).as_micros()).unwrap_or(u64::MAX);
                            counters.min_update_gap_us.fetch_min(gap, Ordering::Relaxed);
                        }
                        last_waitroom = Some(now);
                    }
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    }
    if !*stop.borrow() {
        counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// hold
// ---------------------------------------------------------------------------------------------

struct HoldArgs {
    bin: PathBuf,
    log: String,
    n: usize,
    step: usize,
    checkpoints: Vec<usize>,
    cpu_window: Duration,
    concurrency: usize,
    deadline: Duration,
}

/// The scene of `hold`: nobody is ever matched (no two RTTs add up to 1 µs), nobody times out
/// during a run, and the lobby count is hidden, so no `waitroom` broadcast runs.
const HOLD_SCENE: &str = r#"[[scene]]
id = "hold"
group_size = 2
matchmaker = "latency_fifo"
max_server_rtt_ms = 0.001
waitroom_timeout_ms = 3600000
hide_lobby_count = true
"#;

struct HoldRow {
    target: usize,
    welcomed: usize,
    server_conns: Option<u64>,
    rss_kib: Option<u64>,
    server_cpu: Option<f64>,
    loadgen_cpu: Option<f64>,
}

async fn hold(args: HoldArgs) -> Result<()> {
    if args.n == 0 || args.step == 0 {
        return Err(LoadgenError::Args(
            "--n and --step must be at least 1".into(),
        ));
    }
    let fds = raise_fd_limit(args.n as u64 + 512)?;
    let machine = machine();
    println!("{machine}");
    let work = WorkDir::fresh("loadgen-hold")?;
    let mut server = ServerProc::start(&args.bin, &args.log, &work, HOLD_SCENE).await?;
    let pid = server.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = rss_kib(pid);
    println!(
        "hold: server {} (pid {pid}) on 127.0.0.1:{}, idle RSS {} KiB, fd limit {fds}; ramping to {} in steps of {}",
        args.bin.display(),
        server.port,
        fmt_opt(idle_kib),
        args.n,
        args.step
    );

    let counters = Arc::new(HoldCounters::new());
    let handshakes = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(args.n);
    let mut rows = Vec::new();
    let started = Instant::now();
    let mut spawned = 0;
    let mut checkpoints = args.checkpoints.clone();
    checkpoints.push(args.n);
    while spawned < args.n {
        let target = (spawned + args.step).min(args.n);
        for i in spawned..target {
            tasks.push(tokio::spawn(hold_client(
                server.port,
                format!("hold-{i}"),
                counters.clone(),
                handshakes.clone(),
                stop_rx.clone(),
                false,
                HoldOpts::default(),
            )));
        }
        spawned = target;
        // Wait until each new client has its welcome or has failed.
        let mut gave_up = false;
        while counters.welcomed.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed)
            < target
        {
            if started.elapsed() > args.deadline || !server.alive() {
                gave_up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !server.alive() {
            return Err(server.failed("stopped during the ramp"));
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
    let _ = stop_tx.send(true);
    let closing = futures_util::future::join_all(tasks);
    let _ = tokio::time::timeout(Duration::from_secs(10), closing).await;
    server.stop().await;

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
    println!("server log: {}", work.join("server.log").display());
    Ok(())
}

fn print_hold_row_header() {
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

fn print_hold_row(row: &HoldRow, idle_kib: Option<u64>, header: bool) {
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

fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

// ---------------------------------------------------------------------------------------------
// waitroom
// ---------------------------------------------------------------------------------------------

struct WaitroomArgs {
    bin: PathBuf,
    log: String,
    n: usize,
    arrival_rate: f64,
    seconds: Duration,
    concurrency: usize,
    hide_count: bool,
}

/// The scene of `waitroom`: nobody is ever matched (as in `hold`), and the lobby count is
/// shown, so every arrival changes what every waiting participant should see.
const WAITROOM_SCENE: &str = r#"[[scene]]
id = "waitroom"
group_size = 2
matchmaker = "latency_fifo"
max_server_rtt_ms = 0.001
waitroom_timeout_ms = 3600000
hide_lobby_count = false
"#;

/// `waitroom`: N held with the count shown, then arrivals at a fixed rate; what keeping the
/// count current costs (PROTOCOL.md: updates coalesced to one a second per participant).
async fn waitroom(args: WaitroomArgs) -> Result<()> {
    if !(args.arrival_rate.is_finite() && args.arrival_rate > 0.0) {
        return Err(LoadgenError::Args("--arrival-rate must be positive".into()));
    }
    let arrivals = (args.arrival_rate * args.seconds.as_secs_f64()).ceil() as usize;
    let fds = raise_fd_limit((args.n + arrivals) as u64 + 512)?;
    let machine = machine();
    println!("{machine}");
    let work = WorkDir::fresh("loadgen-waitroom")?;
    let scene = if args.hide_count {
        WAITROOM_SCENE.replace("hide_lobby_count = false", "hide_lobby_count = true")
    } else {
        WAITROOM_SCENE.to_owned()
    };
    let mut server = ServerProc::start(&args.bin, &args.log, &work, &scene).await?;
    let pid = server.pid();
    println!(
        "waitroom: server (pid {pid}) on 127.0.0.1:{}, fd limit {fds}; holding {} with the count {}, then {} arrivals/s for {:.1} s",
        server.port,
        args.n,
        if args.hide_count { "hidden" } else { "shown" },
        args.arrival_rate,
        args.seconds.as_secs_f64()
    );
    let counters = Arc::new(HoldCounters::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let handshakes = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks: Vec<_> = (0..args.n)
        .map(|i| {
            tokio::spawn(hold_client(
                server.port,
                format!("wait-{i}"),
                counters.clone(),
                handshakes.clone(),
                stop_rx.clone(),
                false,
                HoldOpts::default(),
            ))
        })
        .collect();
    let t = Instant::now();
    while counters.welcomed.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed)
        < args.n
    {
        if t.elapsed() > Duration::from_secs(180) || !server.alive() {
            let _ = stop_tx.send(true);
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
        let stop_rx = stop_rx.clone();
        let port = server.port;
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
                    stop_rx.clone(),
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
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(tasks),
    )
    .await;
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
    println!(
        "arrivals: {} welcomed, connect → welcome p50 {} ms, p99 {} ms, max {} ms; failed: {}, dropped: {}",
        connect_us.len(),
        ms(percentile(&connect_us, 50.0)),
        ms(percentile(&connect_us, 99.0)),
        ms(connect_us.last().copied()),
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

// ---------------------------------------------------------------------------------------------
// relay
// ---------------------------------------------------------------------------------------------

struct RelayArgs {
    bin: PathBuf,
    log: String,
    pairs: Option<usize>,
    rates: Vec<f64>,
    seconds: Duration,
    concurrency: usize,
    search: Option<Search>,
}

/// After the given rates, keep multiplying the last one by `factor` until a rate is not held
/// (p99 at or over [`HELD_P99_MS`], or a frame lost) or `max` is passed.
#[derive(Debug, Clone, Copy)]
struct Search {
    factor: f64,
    max: f64,
}

/// A rate counts as held when the relay latency's p99 is under this, ms, and nothing is lost
/// (issue 4 §2).
pub const HELD_P99_MS: f64 = 5.0;

/// The scene of `relay`: pairs, FIFO, every pair probed, and the probe never times out during
/// a run (an hour), so both members stay in it relaying `probe_signal`s.
const RELAY_SCENE: &str = r#"[[scene]]
id = "relay"
group_size = 2
matchmaker = "fifo"
max_p2p_rtt_ms = 1000
probe_timeout_ms = 3600000
waitroom_timeout_ms = 3600000
hide_lobby_count = true
"#;

/// The process clock the send and receive times are read on, ns.
fn clock_ns() -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    let t0 = *T0.get_or_init(Instant::now);
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One rate's schedule, shared with every client.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// The rate's index (which counters its frames go to).
    step: usize,
    /// Frames per second for each client.
    per_client: f64,
    start: Instant,
    end: Instant,
}

/// Counts of one rate step: per client until a flush, then summed over the clients.
#[derive(Default, Clone)]
struct StepCounts {
    sent: u64,
    received: u64,
    latency_us: Vec<u32>,
    max_lag_us: u64,
}

impl StepCounts {
    fn merge(&mut self, other: &mut StepCounts) {
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
struct Collected {
    steps: Vec<StepCounts>,
    errors: Vec<String>,
}

/// How the coordinator and the clients meet.
struct RelayShared {
    backend: Backend,
    port: u16,
    clients: usize,
    handshakes: Semaphore,
    /// Clients whose probe has started.
    in_probe: AtomicUsize,
    /// Clients still running.
    alive: AtomicUsize,
    /// Clients that flushed since the coordinator's last flush request.
    flushed: AtomicUsize,
    /// Frames received, all steps (to see a backlog drain).
    received_total: AtomicU64,
    /// The alternatives' clients' ids on their server, by client index.
    ids: Mutex<Vec<Option<String>>>,
    collected: Mutex<Collected>,
}

fn step_mut(steps: &mut Vec<StepCounts>, step: usize) -> &mut StepCounts {
    if steps.len() <= step {
        steps.resize_with(step + 1, StepCounts::default);
    }
    &mut steps[step]
}

impl RelayShared {
    fn flush(&self, local: &mut [StepCounts]) {
        let mut c = self.collected.lock().unwrap_or_else(|p| p.into_inner());
        for (i, s) in local.iter_mut().enumerate() {
            step_mut(&mut c.steps, i).merge(s);
        }
    }
}

/// The candidate line of a frame: a plausible host candidate (about the size of a real one)
/// whose fields carry the step and the send time.
fn candidate(step: usize, sent_ns: u64) -> String {
    format!(
        "candidate:{step} 1 udp 2122260223 127.0.0.1 9 typ host generation 0 ufrag lg ts {sent_ns}"
    )
}

fn parse_candidate(c: &str) -> Option<(usize, u64)> {
    let mut words = c.split_whitespace();
    let step = words.next()?.strip_prefix("candidate:")?.parse().ok()?;
    let mut ts = None;
    while let Some(w) = words.next() {
        if w == "ts" {
            ts = words.next().and_then(|t| t.parse().ok());
        }
    }
    Some((step, ts?))
}

async fn relay_client(
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

/// A relay `compare` may run (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CompareWhat {
    /// pairlab (`<target>/release/pairlab` or --server-bin).
    Pairlab,
    /// `<target>/bench-tools/bin/matchbox_server`.
    Matchbox,
    /// `bench/socketio_relay.py` in `<target>/bench-venv`.
    Socketio,
}

impl CompareWhat {
    fn backend(self) -> Backend {
        match self {
            CompareWhat::Pairlab => Backend::Pairlab,
            CompareWhat::Matchbox => Backend::Matchbox,
            CompareWhat::Socketio => Backend::SocketIo,
        }
    }
}

/// The relay a `relay` or `compare` run drives, and how its clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// pairlab: `probe_signal` between the two members of a probe (PROTOCOL.md).
    Pairlab,
    /// `matchbox_server` (crates.io): `ws://HOST/<room>`, `{"IdAssigned":id}`, requests
    /// `{"Signal":{"receiver":id,"data":…}}`, events `{"Signal":{"sender":id,"data":…}}`
    /// (`matchbox_protocol` 0.15 `PeerRequest`/`PeerEvent`). One room per pair.
    Matchbox,
    /// python-socketio (`bench/socketio_relay.py`): Engine.IO v4 / Socket.IO v5 over a
    /// WebSocket; event `signal` `{target, data}` relayed as `{from, data}` to the target sid.
    SocketIo,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Pairlab => "pairlab",
            Backend::Matchbox => "matchbox_server",
            Backend::SocketIo => "python-socketio",
        }
    }
}

/// The `data` the alternatives relay: the same signal a pairlab `probe_signal` carries.
fn signal_data(step: usize, sent_ns: u64) -> serde_json::Value {
    serde_json::json!({
        "signal_type": "ice_candidate",
        "payload": {
            "candidate": candidate(step, sent_ns),
            "sdp_mid": "0",
            "sdp_m_line_index": 0,
        }
    })
}

/// The candidate string of a relayed `data` (see [`signal_data`]).
fn data_candidate(data: &serde_json::Value) -> Option<&str> {
    data.get("payload")?.get("candidate")?.as_str()
}

/// Where a client sends its frames, once known.
enum Link {
    /// pairlab: the probe and the peer, from `probe_prepare`; `started` after `probe_start`.
    Pairlab {
        probe: Option<(ProbeSessionId, SubjectId)>,
        started: bool,
    },
    /// An alternative: the peer's id on that server.
    Peer(String),
}

impl Link {
    /// Whether frames may be sent (see [`outgoing`]).
    fn ready(&self) -> bool {
        matches!(
            self,
            Link::Pairlab {
                probe: Some(_),
                started: true
            } | Link::Peer(_)
        )
    }
}

/// What one received text frame means to a relay client.
enum Incoming {
    /// A relayed frame: its step and send time.
    Frame(usize, u64),
    /// Send this text back (a pong, a `probe_ready`).
    Reply(String),
    /// pairlab's probe started: frames may flow.
    Started,
    Nothing,
}

/// Connects an alternative's client, learns its own id from the server, publishes it in
/// `shared.ids`, and waits for its pair partner's (index ^ 1): peers meet through the load
/// generator, as a real app's lobby would introduce them.
async fn join_alternative(
    shared: &RelayShared,
    index: usize,
) -> std::result::Result<(Ws, String), String> {
    let url = match shared.backend {
        Backend::Matchbox => format!("ws://127.0.0.1:{}/pair{}", shared.port, index / 2),
        _ => format!(
            "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
            shared.port
        ),
    };
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(client_config()), true)
            .await
            .map_err(|e| format!("connect: {e}"))?;
    if shared.backend == Backend::SocketIo {
        // Engine.IO `0{…}` open comes first; then the Socket.IO CONNECT to the main namespace.
        ws.send(Message::text("40"))
            .await
            .map_err(|e| format!("send 40: {e}"))?;
    }
    let own = loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("read: {e}")),
            None => return Err("closed before an id".into()),
        };
        let id = match shared.backend {
            Backend::Matchbox => serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("IdAssigned")?.as_str().map(str::to_owned)),
            _ => text
                .strip_prefix("40")
                .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
                .and_then(|v| v.get("sid")?.as_str().map(str::to_owned)),
        };
        if let Some(id) = id {
            break id;
        }
    };
    {
        let mut ids = shared.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids[index] = Some(own);
    }
    let t = Instant::now();
    loop {
        let peer = shared.ids.lock().unwrap_or_else(|p| p.into_inner())[index ^ 1].clone();
        if let Some(peer) = peer {
            return Ok((ws, peer));
        }
        if t.elapsed() > CONNECT_TIMEOUT {
            return Err("the pair partner never got an id".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What one text frame from the server means, per backend.
fn incoming(
    backend: Backend,
    link: &mut Link,
    text: &str,
) -> std::result::Result<Incoming, String> {
    let frame = |c: Option<&str>| {
        c.and_then(parse_candidate)
            .map_or(Incoming::Nothing, |(step, ts)| Incoming::Frame(step, ts))
    };
    match backend {
        Backend::Pairlab => {
            let Link::Pairlab { probe, started } = link else {
                return Ok(Incoming::Nothing);
            };
            Ok(match serde_json::from_str::<ServerMessage>(text) {
                Ok(ServerMessage::ProbeSignal(sig)) => match &sig.payload {
                    Some(SignalPayload::Candidate { candidate, .. }) => frame(Some(candidate)),
                    _ => Incoming::Nothing,
                },
                Ok(ServerMessage::Ping(p)) => {
                    Incoming::Reply(ClientMessage::Pong(Pong { seq: p.seq }).to_json())
                }
                Ok(ServerMessage::ProbePrepare(p)) => {
                    let ready = ClientMessage::ProbeReady(ProbeReady {
                        probe_session_id: p.probe_session_id.clone(),
                    });
                    *probe = Some((p.probe_session_id, p.peer_subject_id));
                    Incoming::Reply(ready.to_json())
                }
                Ok(ServerMessage::ProbeStart(_)) if !*started => {
                    *started = true;
                    Incoming::Started
                }
                Ok(ServerMessage::Error(e)) => {
                    return Err(format!("error {:?}: {}", e.code, e.message))
                }
                Ok(ServerMessage::GameStart(_)) => return Err("game_start: the probe ended".into()),
                _ => Incoming::Nothing,
            })
        }
        Backend::Matchbox => {
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            Ok(frame(
                v.get("Signal")
                    .and_then(|s| s.get("data"))
                    .and_then(data_candidate),
            ))
        }
        Backend::SocketIo => {
            if text == "2" {
                // Engine.IO ping: answer with pong.
                return Ok(Incoming::Reply("3".into()));
            }
            let Some(event) = text.strip_prefix("42") else {
                return Ok(Incoming::Nothing);
            };
            let v: serde_json::Value = serde_json::from_str(event).unwrap_or_default();
            Ok(frame(
                v.get(1)
                    .and_then(|m| m.get("data"))
                    .and_then(data_candidate),
            ))
        }
    }
}

/// The text of one relayed frame to the peer, `None` until the link is ready.
fn outgoing(backend: Backend, link: &Link, step: usize, sent_ns: u64) -> Option<String> {
    match (backend, link) {
        (
            Backend::Pairlab,
            Link::Pairlab {
                probe: Some((probe_id, peer)),
                started: true,
            },
        ) => Some(
            ClientMessage::ProbeSignal(ProbeSignalOut {
                probe_session_id: probe_id.clone(),
                target_subject_id: peer.clone(),
                signal_type: SignalType::IceCandidate,
                payload: Some(SignalPayload::Candidate {
                    candidate: candidate(step, sent_ns),
                    sdp_mid: Some("0".into()),
                    sdp_m_line_index: Some(0),
                }),
            })
            .to_json(),
        ),
        (Backend::Matchbox, Link::Peer(peer)) => Some(
            serde_json::json!({"Signal": {"receiver": peer, "data": signal_data(step, sent_ns)}})
                .to_string(),
        ),
        (Backend::SocketIo, Link::Peer(peer)) => Some(format!(
            "42{}",
            serde_json::json!(["signal", {"target": peer, "data": signal_data(step, sent_ns)}])
        )),
        _ => None,
    }
}

/// One client: connect, join a probe (pairlab) or learn its peer (the alternatives), then
/// send on the schedule and time what arrives, until `stop`; `Err` says why it ended early.
async fn relay_client_run(
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

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// One rate's row of the table.
struct RelayRow {
    rate: f64,
    sent: u64,
    received: u64,
    p50_us: Option<u32>,
    p99_us: Option<u32>,
    max_us: Option<u32>,
    max_lag_us: u64,
    server_cpu: Option<f64>,
    loadgen_cpu: Option<f64>,
    /// Packets the kernel dropped and TCP segments it retransmitted during the step, all
    /// processes (see [`NetCounters`]).
    net: Option<NetCounters>,
}

/// Machine-wide network counters: packets dropped at the per-CPU input backlog (column 2 of
/// `/proc/net/softnet_stat`, summed over CPUs; the queue is `net.core.netdev_max_backlog`
/// long) and TCP segments retransmitted (`RetransSegs` of `/proc/net/snmp`). On loopback a
/// dropped packet is resent after TCP's retransmission timeout (RFC 6298; Linux's floor,
/// `TCP_RTO_MIN`, is 200 ms) unless a tail-loss probe catches it first, so a step with drops
/// can show latency spikes that come from the kernel's queue, whichever relay runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct NetCounters {
    drops: u64,
    retrans: u64,
}

impl NetCounters {
    fn read() -> Option<Self> {
        let softnet = fs::read_to_string("/proc/net/softnet_stat").ok()?;
        let mut drops = 0;
        for line in softnet.lines() {
            drops += u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()?;
        }
        let snmp = fs::read_to_string("/proc/net/snmp").ok()?;
        let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (tcp.next()?, tcp.next()?);
        let i = names.split_whitespace().position(|n| n == "RetransSegs")?;
        let retrans = values.split_whitespace().nth(i)?.parse().ok()?;
        Some(NetCounters { drops, retrans })
    }

    fn since(self, before: Self) -> Self {
        NetCounters {
            drops: self.drops.saturating_sub(before.drops),
            retrans: self.retrans.saturating_sub(before.retrans),
        }
    }
}

impl RelayRow {
    fn held(&self) -> bool {
        self.sent > 0
            && self.received >= self.sent
            && self
                .p99_us
                .is_some_and(|p| f64::from(p) / 1000.0 < HELD_P99_MS)
    }
}

fn print_relay_header() {
    print_relay_header_labelled(None);
}

/// The relay table's header, with a first column `label` when given (`compare`'s live rows).
fn print_relay_header_labelled(label: Option<&str>) {
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

fn print_relay_row(r: &RelayRow) {
    let ms = |v: Option<u32>| v.map_or("-".into(), |us| format!("{:.2}", f64::from(us) / 1000.0));
    println!(
        "| {:>8} | {:>8} | {:>8} | {:>6} | {:>7} | {:>7} | {:>7} | {:>15} | {:>12} | {:>13} | {:>19} | {:>4} |",
        r.rate,
        r.sent,
        r.received,
        r.sent.saturating_sub(r.received),
        ms(r.p50_us),
        ms(r.p99_us),
        ms(r.max_us),
        format!("{:.2}", r.max_lag_us as f64 / 1000.0),
        r.server_cpu.map_or("?".into(), |c| format!("{c:.0}")),
        r.loadgen_cpu.map_or("?".into(), |c| format!("{c:.0}")),
        r.net
            .map_or("?".into(), |n| format!("{}/{}", n.drops, n.retrans)),
        if r.held() { "yes" } else { "no" },
    );
}

/// How a relay run walks through rates.
#[derive(Debug, Clone, Copy)]
struct Ladder {
    /// Stop the given rates at the first one not held (`compare`: a backlog would skew the
    /// next) and, with a search, refine between the last rate held and it (× the factor);
    /// `relay` runs them all.
    stop_at_fail: bool,
    /// When the first given rate is not held, search downward (÷ the search factor, down to
    /// [`MIN_SEARCH_RATE`]) for the highest rate held.
    down: bool,
    /// Run a rate once more when it was not held and the kernel dropped packets during it
    /// (see [`NetCounters`]) or the generator was late by over [`GEN_LAG_RETRY_MS`].
    retry_lagged: bool,
}

/// The lowest rate a downward search tries, frames/s.
const MIN_SEARCH_RATE: f64 = 50.0;

/// A step not held whose generator lag exceeded this, ms, is run once more under
/// [`Ladder::retry_lagged`].
const GEN_LAG_RETRY_MS: f64 = 10.0;

/// Where one backend is on its ladder of rates.
struct LadderState {
    ladder: Ladder,
    search: Option<Search>,
    given: std::collections::VecDeque<f64>,
    last_held: Option<f64>,
    /// The lowest rate not held so far.
    ceiling: Option<f64>,
    going_down: bool,
    /// The rate last run was already a retry.
    retried: bool,
}

impl LadderState {
    fn new(rates: &[f64], search: Option<Search>, ladder: Ladder) -> Self {
        LadderState {
            ladder,
            search,
            given: rates.iter().copied().collect(),
            last_held: None,
            ceiling: None,
            going_down: false,
            retried: false,
        }
    }

    fn first(&mut self) -> Option<f64> {
        self.given.pop_front()
    }

    /// The rate after `row`, if any.
    fn next(&mut self, row: &RelayRow) -> Option<f64> {
        let (rate, held) = (row.rate, row.held());
        let disturbed = row.max_lag_us as f64 / 1000.0 > GEN_LAG_RETRY_MS
            || row.net.is_some_and(|n| n.drops > 0);
        if !held && self.ladder.retry_lagged && !self.retried && disturbed {
            self.retried = true;
            return Some(rate);
        }
        self.retried = false;
        if held {
            self.last_held = Some(self.last_held.map_or(rate, |h| h.max(rate)));
        } else {
            self.ceiling = Some(self.ceiling.map_or(rate, |c| c.min(rate)));
        }
        let factor = self.search.map(|s| s.factor);
        let below_ceiling = |r: f64, c: Option<f64>| c.is_none_or(|c| r < c);
        if self.going_down {
            return factor
                .map(|f| (rate / f).round())
                .filter(|&r| !held && r >= MIN_SEARCH_RATE);
        }
        if !held && self.last_held.is_none() && self.ladder.down {
            self.going_down = true;
            self.given.clear();
            return factor
                .map(|f| (rate / f).round())
                .filter(|&r| r >= MIN_SEARCH_RATE);
        }
        if self.ladder.stop_at_fail && self.ceiling.is_some() {
            // Refine upward from the highest held, below the lowest not held.
            self.given.clear();
            let from = if held { rate } else { self.last_held? };
            return factor
                .map(|f| (from * f).round())
                .filter(|&r| below_ceiling(r, self.ceiling));
        }
        self.given.pop_front().or_else(|| {
            let s = self.search?;
            let next = (rate * s.factor).round();
            (held && next <= s.max).then_some(next)
        })
    }
}

/// What one backend's relay run measured.
struct RelayOutcome {
    pairs: usize,
    clients: usize,
    rows: Vec<RelayRow>,
    errors: Vec<String>,
    log: PathBuf,
}

impl RelayOutcome {
    fn best(&self) -> Option<f64> {
        self.rows
            .iter()
            .filter(|r| r.held())
            .map(|r| r.rate)
            .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))))
    }

    /// The last row run at `rate` (a retried rate has two).
    fn row_at(&self, rate: f64) -> Option<&RelayRow> {
        self.rows.iter().rev().find(|r| r.rate == rate)
    }
}

/// The pairs a run needs so that no client sends over [`MAX_CLIENT_RATE`] at `max_rate`.
fn relay_pairs(args: &RelayArgs) -> Result<usize> {
    if args.rates.is_empty() || args.rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return Err(LoadgenError::Args("--rate needs positive numbers".into()));
    }
    if let Some(s) = args.search {
        if !(s.factor > 1.0 && s.max.is_finite()) {
            return Err(LoadgenError::Args(
                "--search-factor must be over 1 and --search-max a number".into(),
            ));
        }
    }
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

/// Starts `backend`'s server in `work`.
async fn start_backend(args: &RelayArgs, backend: Backend, work: &WorkDir) -> Result<ServerProc> {
    match backend {
        Backend::Pairlab => ServerProc::start(&args.bin, &args.log, work, RELAY_SCENE).await,
        Backend::Matchbox => {
            let bin = target_dir()
                .join("bench-tools")
                .join("bin")
                .join("matchbox_server");
            let port = free_port()?;
            ServerProc::start_external(
                &bin,
                &[format!("127.0.0.1:{port}")],
                &args.log,
                work,
                port,
                "run scripts/bench-setup.sh",
            )
            .await
        }
        Backend::SocketIo => {
            let python = target_dir().join("bench-venv").join("bin").join("python");
            let script = pairlab_tests::workspace_root()
                .join("bench")
                .join("socketio_relay.py");
            let port = free_port()?;
            ServerProc::start_external(
                &python,
                &[
                    script.display().to_string(),
                    "--port".into(),
                    port.to_string(),
                ],
                &args.log,
                work,
                port,
                "run scripts/bench-setup.sh",
            )
            .await
        }
    }
}

/// One backend's server and its clients, linked in pairs, ready to run rates.
struct RelayRig {
    backend: Backend,
    server: ServerProc,
    work: WorkDir,
    pairs: usize,
    shared: Arc<RelayShared>,
    sched_tx: watch::Sender<Option<Schedule>>,
    flush_tx: watch::Sender<u64>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    epoch: u64,
    rows: Vec<RelayRow>,
}

impl RelayRig {
    /// Starts the server and `pairs` pairs of clients; returns once every client is linked
    /// to its peer (pairlab: in a started probe).
    async fn start(args: &RelayArgs, backend: Backend, pairs: usize) -> Result<Self> {
        let clients = 2 * pairs;
        let work = WorkDir::fresh(&format!("loadgen-relay-{}", backend.name()))?;
        let mut server = start_backend(args, backend, &work).await?;
        println!(
            "relay: {} (pid {}) on 127.0.0.1:{}; {pairs} pairs ({clients} clients)",
            backend.name(),
            server.pid(),
            server.port
        );
        clock_ns();
        let shared = Arc::new(RelayShared {
            backend,
            port: server.port,
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
    async fn step(&mut self, rate: f64, seconds: Duration) -> &RelayRow {
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
            p50_us: percentile(&counts.latency_us, 50.0),
            p99_us: percentile(&counts.latency_us, 99.0),
            max_us: counts.latency_us.last().copied(),
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
    async fn finish(mut self) -> RelayOutcome {
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

async fn relay(args: RelayArgs) -> Result<()> {
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

/// `compare`: the same relay load against pairlab, `matchbox_server` and the python-socketio
/// relay in one run: all three servers and their clients are up together, and the rates run
/// round-robin over them (pairlab, matchbox, socketio, then the next rate of each), so a
/// disturbance of the machine hits all of them alike; a table per rate and the ratios of the
/// highest rates held.
async fn compare(args: RelayArgs, backends: &[Backend]) -> Result<()> {
    let pairs = relay_pairs(&args)?;
    let fds = raise_fd_limit((2 * pairs * backends.len()) as u64 + 512)?;
    let machine = machine();
    println!("{machine}");
    println!("compare: fd limit {fds}");
    let mut rigs = Vec::new();
    for &backend in backends {
        rigs.push(RelayRig::start(&args, backend, pairs).await?);
    }
    let ladder = Ladder {
        stop_at_fail: true,
        down: true,
        retry_lagged: true,
    };
    let mut states: Vec<(LadderState, Option<f64>)> = backends
        .iter()
        .map(|_| {
            let mut s = LadderState::new(&args.rates, args.search, ladder);
            let first = s.first();
            (s, first)
        })
        .collect();
    print_relay_header_labelled(Some("relay"));
    while states.iter().any(|(_, next)| next.is_some()) {
        for (rig, (state, next)) in rigs.iter_mut().zip(states.iter_mut()) {
            let Some(rate) = *next else {
                continue;
            };
            let backend = rig.backend;
            let row = rig.step(rate, args.seconds).await;
            print!("| {:>15} ", backend.name());
            print_relay_row(row);
            *next = state.next(row);
            if !rig.server.alive() {
                *next = None;
            }
        }
    }
    let mut outcomes = Vec::new();
    for rig in rigs {
        let backend = rig.backend;
        outcomes.push((backend, rig.finish().await));
    }
    let load_end = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!(
        "## compare: the same relay load ({pairs} pairs per relay, {:.1} s per rate, open loop, one ice_candidate signal per frame) \
         against each relay through its own protocol, rates round-robin over the relays; latency = receive − send on one clock; \
         held = p99 < {HELD_P99_MS} ms and nothing lost (✗: not held); after a rate not held, higher given rates are not run \
         (`not run`) and the search refines upward (×{f}) from the last held; when the first is not held it goes down (÷{f}); \
         a rate not held while the kernel dropped loopback packets or the generator lagged over {GEN_LAG_RETRY_MS} ms \
         is run once more (the last run is shown)",
        args.seconds.as_secs_f64(),
        f = args.search.map_or(1.25, |s| s.factor)
    );
    println!("{machine}");
    println!(
        "load average at the end: {}",
        load_end
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let ms = |v: Option<u32>| v.map_or("-".into(), |us| format!("{:.2}", f64::from(us) / 1000.0));
    let mut rates: Vec<f64> = outcomes
        .iter()
        .flat_map(|(_, o)| o.rows.iter().map(|r| r.rate))
        .chain(args.rates.iter().copied())
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    print!("| {:>8} |", "rate/s");
    for (b, _) in &outcomes {
        print!(
            " {:>42} |",
            format!("{}: p50 / p99 ms, lost, CPU", b.name())
        );
    }
    println!();
    print!("|{:-<10}|", "");
    for _ in &outcomes {
        print!("{:-<44}|", "");
    }
    println!();
    for rate in rates {
        print!("| {rate:>8} |");
        for (_, o) in &outcomes {
            let cell = o.row_at(rate).map_or_else(
                || "not run".to_owned(),
                |r| {
                    format!(
                        "{} / {}, {}, {}{}",
                        ms(r.p50_us),
                        ms(r.p99_us),
                        r.sent.saturating_sub(r.received),
                        r.server_cpu.map_or("?".into(), |c| format!("{c:.0}%")),
                        if r.held() { "" } else { " ✗" }
                    )
                },
            );
            print!(" {cell:>42} |");
        }
        println!();
    }
    let best: Vec<(Backend, Option<f64>)> = outcomes.iter().map(|(b, o)| (*b, o.best())).collect();
    for (b, r) in &best {
        match r {
            Some(r) => println!("{}: highest rate held {r} frames/s", b.name()),
            None => println!("{}: no rate held", b.name()),
        }
    }
    // CPU at one rate is far less sensitive to stalls from other processes than the p99:
    // compare pairlab with each alternative at the highest rate both held.
    let held_rates = |o: &RelayOutcome| -> Vec<f64> {
        o.rows.iter().filter(|r| r.held()).map(|r| r.rate).collect()
    };
    if let Some((_, ours)) = outcomes.iter().find(|(b, _)| *b == Backend::Pairlab) {
        let our_rates = held_rates(ours);
        for (b, o) in outcomes.iter().filter(|(b, _)| *b != Backend::Pairlab) {
            let rate = held_rates(o)
                .into_iter()
                .filter(|r| our_rates.contains(r))
                .reduce(f64::max);
            let cpu = |o: &RelayOutcome, rate: f64| {
                o.row_at(rate)
                    .and_then(|r| r.server_cpu)
                    .map_or("?".into(), |c| format!("{c:.0} %"))
            };
            match rate {
                Some(rate) => println!(
                    "server CPU (% of one core) at {rate} frames/s, the highest rate both held: pairlab {}, {} {}",
                    cpu(ours, rate),
                    b.name(),
                    cpu(o, rate)
                ),
                None => println!(
                    "server CPU: pairlab and {} held no common rate (see the CPU column)",
                    b.name()
                ),
            }
        }
    }
    if let Some((_, Some(ours))) = best.iter().find(|(b, _)| *b == Backend::Pairlab) {
        for (b, r) in best.iter().filter(|(b, _)| *b != Backend::Pairlab) {
            match r {
                Some(r) => println!(
                    "ratio pairlab / {}: {:.2}× (highest rates held)",
                    b.name(),
                    ours / r
                ),
                None => println!(
                    "ratio pairlab / {}: - ({} held no rate)",
                    b.name(),
                    b.name()
                ),
            }
        }
    }
    for (b, o) in &outcomes {
        println!(
            "{}: clients with errors: {} (of {}){}; log: {}",
            b.name(),
            o.errors.len(),
            o.clients,
            o.errors
                .first()
                .map_or(String::new(), |e| format!("; first: {e}")),
            o.log.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// matchmaking
// ---------------------------------------------------------------------------------------------

/// Which matchmaker the arrivals of `matchmaking` go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MmKind {
    /// The `fifo` scene, next to the one the waiting are in.
    Fifo,
    /// The `latency_fifo` scene the waiting are in.
    LatencyFifo,
}

impl MmKind {
    fn name(self) -> &'static str {
        match self {
            MmKind::Fifo => "fifo",
            MmKind::LatencyFifo => "latency_fifo",
        }
    }
    /// The scene the arrivals join.
    fn scene(self) -> &'static str {
        match self {
            MmKind::Fifo => "fifo",
            MmKind::LatencyFifo => "wait",
        }
    }
}

struct MatchmakingArgs {
    bin: PathBuf,
    log: String,
    n: usize,
    rates: Vec<f64>,
    seconds: Duration,
    matchmakers: Vec<MmKind>,
    concurrency: usize,
    pong_delay: Duration,
    search: Option<Search>,
}

/// A matchmaking rate counts as held when every arrival was matched and the connect →
/// `game_start` p99 is under this, ms.
pub const HELD_MATCH_P99_MS: f64 = 250.0;

/// How long after the last arrival the arrivals of a step get to be matched before the ones
/// still waiting count as unmatched.
const MATCH_DRAIN: Duration = Duration::from_secs(3);

/// The pre-filter of the `wait` scene, ms: far below twice the waiters' delayed pongs, far
/// above two loopback RTTs.
const MM_MAX_SERVER_RTT_MS: f64 = 100.0;

/// The scenes of `matchmaking`. `wait` (the first: the waiters' default) is `latency_fifo`
/// with `max_server_rtt_ms` = [`MM_MAX_SERVER_RTT_MS`]; `fifo` is FIFO. Both without probe
/// (no `max_p2p_rtt_ms`), so a proposed pair gets `game_start` at once; both hide the lobby
/// count (its cost is the `waitroom` scenario's).
fn matchmaking_scene() -> String {
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
struct ArrivalCounters {
    /// Connect start → `game_start`, µs, one per matched arrival.
    matched_us: Mutex<Vec<u32>>,
    /// The latest `game_start`, ns on [`clock_ns`].
    last_match_ns: AtomicU64,
    failed: AtomicUsize,
    /// Arrivals that ended (matched, failed or stopped).
    done: AtomicUsize,
    /// The most an arrival started after its scheduled time, µs.
    max_lag_us: AtomicU64,
}

/// One arrival: connect at once (`scheduled` is when it should have), say `hello` into
/// `scene`, answer pings at once, and on `game_start` record the time, send `leave` and close
/// (so connections stay bounded; that teardown is part of the measured load).
async fn arrival_client(
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
struct MatchRow {
    matchmaker: MmKind,
    rate: f64,
    arrivals: usize,
    matched: usize,
    failed: usize,
    /// Matched arrivals ÷ (last `game_start` − first scheduled arrival), per second.
    matched_per_s: f64,
    p50_us: Option<u32>,
    p99_us: Option<u32>,
    max_us: Option<u32>,
    max_lag_us: u64,
    /// `waiting` of `/healthz` after the step (the N waiters, plus arrivals left unmatched).
    waiting_after: Option<u64>,
    server_cpu: Option<f64>,
    loadgen_cpu: Option<f64>,
}

impl MatchRow {
    fn held(&self) -> bool {
        self.arrivals > 0
            && self.matched == self.arrivals
            && self
                .p99_us
                .is_some_and(|p| f64::from(p) / 1000.0 < HELD_MATCH_P99_MS)
    }
}

fn print_match_header() {
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

fn print_match_row(r: &MatchRow) {
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
        ms(r.p50_us),
        ms(r.p99_us),
        ms(r.max_us),
        r.max_lag_us as f64 / 1000.0,
        fmt_opt(r.waiting_after),
        cpu(r.server_cpu),
        cpu(r.loadgen_cpu),
        if r.held() { "yes" } else { "no" },
    );
}

/// The `waiting` count of `/healthz` (participants in a waitroom, all scenes).
async fn healthz_waiting(port: u16) -> Option<u64> {
    let (status, body) = http_get(port, "/healthz").await.ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v.get("waiting")?.as_u64()
}

/// One step of `matchmaking`: `rate` arrivals/s for `seconds` into `kind`'s scene.
async fn matchmaking_step(
    server: &ServerProc,
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
    let port = server.port;
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
    let waiting_after = healthz_waiting(port).await;
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
        p50_us: percentile(&us, 50.0),
        p99_us: percentile(&us, 99.0),
        max_us: us.last().copied(),
        max_lag_us: counters.max_lag_us.load(Ordering::Relaxed),
        waiting_after,
        server_cpu,
        loadgen_cpu,
    }
}

/// `matchmaking`: N wait and never match; arrivals at open-loop rates are matched (probe
/// disabled) through `fifo` and `latency_fifo`; matched arrivals per second and connect →
/// `game_start` latency.
async fn matchmaking(args: MatchmakingArgs) -> Result<()> {
    if args.rates.is_empty() || args.rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return Err(LoadgenError::Args("--rate needs positive numbers".into()));
    }
    if let Some(s) = args.search {
        if !(s.factor > 1.0 && s.max.is_finite()) {
            return Err(LoadgenError::Args(
                "--search-factor must be over 1 and --search-max a number".into(),
            ));
        }
    }
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
    let mut server = ServerProc::start(&args.bin, &args.log, &work, &matchmaking_scene()).await?;
    let pid = server.pid();
    println!(
        "matchmaking: server (pid {pid}) on 127.0.0.1:{}, fd limit {fds}; {} waiters answering pings after {} ms",
        server.port,
        args.n,
        args.pong_delay.as_millis()
    );
    clock_ns();
    let counters = Arc::new(HoldCounters::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let handshakes = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let opts = HoldOpts {
        scene: Some("wait"),
        pong_delay: args.pong_delay,
    };
    let tasks: Vec<_> = (0..args.n)
        .map(|i| {
            tokio::spawn(hold_client(
                server.port,
                format!("wait-{i}"),
                counters.clone(),
                handshakes.clone(),
                stop_rx.clone(),
                false,
                opts,
            ))
        })
        .collect();
    let t = Instant::now();
    loop {
        let waiting = healthz_waiting(server.port).await.unwrap_or(0);
        if waiting >= args.n as u64 {
            break;
        }
        let failed = counters.failed.load(Ordering::Relaxed);
        if t.elapsed() > Duration::from_secs(180) || !server.alive() || failed > 0 {
            let _ = stop_tx.send(true);
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
            if !server.alive() {
                break;
            }
            next_rate = rate_iter.next().or_else(|| {
                let s = args.search?;
                let next = (rate * s.factor).round();
                (held && next <= s.max).then_some(next)
            });
        }
        if !server.alive() {
            break;
        }
    }
    let waiters_matched = counters.matched.load(Ordering::Relaxed);
    let waiters_dropped = counters.dropped.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(tasks),
    )
    .await;
    let alive = server.alive();
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
        match rows
            .iter()
            .filter(|r| r.matchmaker == kind && r.held())
            .map(|r| r.rate)
            .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))))
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_round_trips_step_and_time() {
        assert_eq!(
            parse_candidate(&candidate(3, 123_456_789)),
            Some((3, 123_456_789))
        );
        assert_eq!(
            parse_candidate("candidate:1 1 udp 1 127.0.0.1 9 typ host"),
            None
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[], 50.0), None);
    }
    fn row(rate: f64, held: bool, lag_ms: u64) -> RelayRow {
        RelayRow {
            rate,
            sent: 100,
            received: if held { 100 } else { 99 },
            p50_us: Some(100),
            p99_us: Some(1000),
            max_us: Some(2000),
            max_lag_us: lag_ms * 1000,
            server_cpu: None,
            loadgen_cpu: None,
            net: None,
        }
    }

    const COMPARE: Ladder = Ladder {
        stop_at_fail: true,
        down: true,
        retry_lagged: true,
    };

    fn search() -> Option<Search> {
        Some(Search {
            factor: 1.25,
            max: 80_000.0,
        })
    }

    #[test]
    fn compare_ladder_refines_between_held_and_not_held() {
        let mut l = LadderState::new(&[1000.0, 5000.0, 20000.0], search(), COMPARE);
        assert_eq!(l.first(), Some(1000.0));
        assert_eq!(l.next(&row(1000.0, true, 1)), Some(5000.0));
        // 5000 fails: 20000 is not run; refine upward from 1000, below 5000.
        assert_eq!(l.next(&row(5000.0, false, 1)), Some(1250.0));
        assert_eq!(l.next(&row(1250.0, true, 1)), Some(1563.0));
        assert_eq!(l.next(&row(1563.0, false, 1)), None);
    }

    #[test]
    fn compare_ladder_searches_up_when_all_held_and_down_when_first_fails() {
        let mut l = LadderState::new(&[1000.0, 5000.0], search(), COMPARE);
        l.first();
        assert_eq!(l.next(&row(1000.0, true, 1)), Some(5000.0));
        assert_eq!(l.next(&row(5000.0, true, 1)), Some(6250.0));
        assert_eq!(
            l.next(&row(6250.0, false, 1)),
            None,
            "6250 × 1.25 is over it"
        );

        let mut l = LadderState::new(&[1000.0, 5000.0], search(), COMPARE);
        l.first();
        assert_eq!(l.next(&row(1000.0, false, 1)), Some(800.0));
        assert_eq!(l.next(&row(800.0, false, 1)), Some(640.0));
        assert_eq!(l.next(&row(640.0, true, 1)), None, "the first held ends it");
    }

    #[test]
    fn compare_ladder_retries_a_lagged_rate_once() {
        let mut l = LadderState::new(&[1000.0, 5000.0], search(), COMPARE);
        l.first();
        assert_eq!(l.next(&row(1000.0, false, 80)), Some(1000.0), "retried");
        assert_eq!(l.next(&row(1000.0, false, 80)), Some(800.0), "only once");
    }

    #[test]
    fn relay_ladder_runs_every_given_rate_then_searches_while_held() {
        let relay = Ladder {
            stop_at_fail: false,
            down: false,
            retry_lagged: false,
        };
        let mut l = LadderState::new(&[1000.0, 5000.0], search(), relay);
        l.first();
        assert_eq!(l.next(&row(1000.0, false, 80)), Some(5000.0));
        assert_eq!(l.next(&row(5000.0, true, 1)), Some(6250.0));
        assert_eq!(l.next(&row(6250.0, false, 1)), None);
        let mut l = LadderState::new(&[1000.0], None, relay);
        l.first();
        assert_eq!(l.next(&row(1000.0, true, 1)), None, "no search");
    }

    #[test]
    fn alternatives_frames_carry_the_candidate_both_ways() {
        // matchbox: what we send is a PeerRequest::Signal; the server turns it into a
        // PeerEvent::Signal with the same data.
        let link = Link::Peer("peer-1".into());
        let out = outgoing(Backend::Matchbox, &link, 2, 77).expect("ready");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["Signal"]["receiver"], "peer-1");
        let event = serde_json::json!({"Signal": {"sender": "x", "data": v["Signal"]["data"]}});
        let mut link = Link::Peer("x".into());
        assert!(matches!(
            incoming(Backend::Matchbox, &mut link, &event.to_string()),
            Ok(Incoming::Frame(2, 77))
        ));
        // Socket.IO: 42["signal",{target,data}] out, 42["signal",{from,data}] in; 2 → 3.
        let out = outgoing(Backend::SocketIo, &link, 3, 99).expect("ready");
        let v: serde_json::Value =
            serde_json::from_str(out.strip_prefix("42").expect("42")).expect("json");
        assert_eq!(v[0], "signal");
        assert_eq!(v[1]["target"], "x");
        let event = format!(
            "42{}",
            serde_json::json!(["signal", {"from": "y", "data": v[1]["data"]}])
        );
        assert!(matches!(
            incoming(Backend::SocketIo, &mut link, &event),
            Ok(Incoming::Frame(3, 99))
        ));
        assert!(matches!(
            incoming(Backend::SocketIo, &mut link, "2"),
            Ok(Incoming::Reply(r)) if r == "3"
        ));
    }
}
