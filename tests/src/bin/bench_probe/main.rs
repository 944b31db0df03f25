//! `bench-probe`: how fast and how accurate pairlab's peer-to-peer probe is, and how heavy the
//! page is. It prints tables; it is a benchmark, not a test.
//!
//! ```text
//! cargo run -p pairlab-tests --release --bin bench-probe -- --probes 20 --delays 0,5,10,25,50,75 --direct
//! cargo run -p pairlab-tests --release --bin bench-probe -- --weight --loads 10
//! cargo run -p pairlab-tests --release --bin bench-probe -- --product-path --probes 20 --delays 0,5,25,75 --direct [--probe-handover true|false]
//! ```
//!
//! # The product-path benchmark (`--product-path`, [`product`])
//! The served page with nothing injected, a short game after every probe: each pair's probe
//! RTT against (a) the game connection's own `getStats` RTT and (b) a relay echo through the
//! same proxy and coturn, and `game_start` → both game channels open (`connect_ms`). See
//! `product.rs`.
//!
//! # The probe benchmark
//! It starts coturn (static credentials, 4,000 relay ports: [`bench_turn`]), a
//! [`DelayProxy`](pairlab_tests::delay_proxy::DelayProxy) in front of it (both modes share this
//! setup and its teardown: [`rig`]), the real `pairlab`
//! (`--server release|debug`) with one scene per round (`group_size = 2`, `fifo`, a huge
//! `max_p2p_rtt_ms` so every probe is accepted, `reconnect_grace_ms = 0`) whose only ICE server
//! is `turn:<proxy>` (static credentials), chromedriver and two headless Chromium processes.
//! Each round, both pages load the page with two fresh subject ids in the round's own scene
//! (`r0001`, `r0002`, …: a participant left over from an earlier round can never be matched
//! with a later one); the server matches them, probes them, and writes `probe_started` and
//! `probe_result` to that scene's research record. Then both pages go to `about:blank`.
//!
//! Forcing the relay: a relayed setting's rounds use scenes with `force_relay = true` (the
//! product path: the server sends `probe_prepare.force_relay`, the client sets
//! `iceTransportPolicy: "relay"`), so every packet goes A → proxy → coturn → coturn → proxy → B
//! and crosses the proxy twice per direction (true RTT ≈ 4·D + base). Each report names the
//! candidate pair it measured (`connection`); a run whose pair is not the one asked for
//! (relayed vs direct) counts against the run's verdict.
//!
//! The harness adds a script to every document before the page's own (Chrome DevTools
//! `Page.addScriptToEvaluateOnNewDocument`, through chromedriver's `goog/cdp/execute`) that
//! only observes: it timestamps the connection's milestones (`createOffer`, ICE `checking` /
//! `connected`, `connectionState` `connected` = DTLS done, DataChannel `open`, DataChannel
//! messages) and the WebSocket's first `hello`, in `performance.now()` of the page, exposed as
//! `window.__pairlabBench`. `performance.timeOrigin + t` is wall-clock time on the same machine
//! as the server's record `ts`, so page times are placed on the probe's timeline
//! (ms after `probe_prepare` = the `probe_started` line's `ts`, 1 ms resolution).
//!
//! The true RTT of a relayed setting D: `2·stun(D)`, where `stun(D)` is the median RTT of STUN
//! Binding requests (RFC 5389) sent to coturn through the same proxy: one crossing each way
//! plus coturn, as a relayed one-way trip A → proxy → coturn → proxy → B is (2·D plus the
//! proxy's timer overhead, measured, not assumed). For the direct setting (loopback, no proxy)
//! it is the median of the reports' getStats `currentRoundTripTime` (the ICE agent's consent
//! checks, whole ms). Neither is fed by the DataChannel samples whose estimator is judged.
//!
//! # The weight benchmark (`--weight`)
//! What headless Chromium received for the page's files (`/`, `style.css`, the wasm-bindgen
//! loader, the wasm) on the first load of a fresh profile, as the page's own Navigation and
//! Resource Timing entries tell it (`transferSize` on the wire with headers, `encodedBodySize`
//! as sent, `decodedBodySize` after content decoding, `contentEncoding`), and on a reload with
//! the HTTP cache (`transferSize`: 0 for a file the cache served without asking); and the time
//! from navigation start (`performance.timeOrigin`) to the page sending `hello` on its
//! WebSocket, with the HTTP cache disabled (CDP `Network.setCacheDisabled`, a first visit) and
//! enabled (a reload).
//!
//! Everything started is stopped by its PID at the end, also on an error (guards), and the run
//! is bounded (`--time-limit-s`): what was measured until then is printed.
//!
//! # Exit status
//! Non-zero when the probe benchmark did not measure what was asked: a probe failed or was not
//! accepted, a setting measured fewer than `--probes` probes (a failed round, the time limit),
//! or a report's candidate pair is not the kind the setting asks for (relayed vs direct) or is
//! unknown. The tables are printed first; the reasons follow on stderr.

mod product;
mod rig;

use std::collections::HashMap;
use std::error::Error;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use pairlab_shared::stats::median;
use pairlab_tests::ports::{free_block, Protocols};
use pairlab_tests::record::{events_of, read_events, rfc3339_ms, ResearchEventKind as Ev};
use pairlab_tests::stats::nearest_rank;
use pairlab_tests::turn::{stun_rtt_ms as stun_once_ms, Coturn, CoturnConfig, TurnAuth};
use pairlab_tests::{Browser, ChromeDriver, Server, WorkDir, WASM_ASSET};
use rig::Rig;
use serde_json::{json, Value};
use tokio::net::UdpSocket;

type R<T> = Result<T, Box<dyn Error>>;

/// The scene of the weight benchmark.
const SCENE: &str = "bench";

/// How often the record and the pages are polled during a round.
const POLL: Duration = Duration::from_millis(25);

/// The static TURN credentials of the bench's coturn.
const TURN_USER: &str = "bench";
const TURN_PASS: &str = "bench-pass";

/// STUN Binding requests per setting for the independent RTT measurement.
const STUN_PINGS: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Build {
    /// `target/release/pairlab`.
    Release,
    /// `target/debug/pairlab`.
    Debug,
}

/// Probe accuracy and speed, and client weight, of pairlab (BENCHMARKS.md, sections 1 and 4).
#[derive(Debug, Parser)]
#[command(name = "bench-probe")]
struct Args {
    /// Probes measured per setting (after one warm-up probe that is not counted).
    #[arg(long, default_value_t = 20)]
    probes: usize,
    /// Per-hop proxy delays D, ms, comma-separated, each a relayed setting; `none` for none.
    /// Put 0 first: its median is the base RTT of the others.
    #[arg(long, default_value = "0,5,10,25,50,75")]
    delays: String,
    /// Also measure direct (non-relayed, host candidates) probes, first.
    #[arg(long)]
    direct: bool,
    /// Which `pairlab` binary to run (overridden by `PAIRLAB_BIN`).
    #[arg(long, value_enum, default_value_t = Build::Release)]
    server: Build,
    /// Measure the client's weight (bytes, navigation → hello) instead of probes.
    #[arg(long)]
    weight: bool,
    /// Page loads per cache mode for `--weight`.
    #[arg(long, default_value_t = 10)]
    loads: usize,
    /// Stop measuring after this many seconds and print what was measured.
    #[arg(long, default_value_t = 900)]
    time_limit_s: u64,
    /// Each probe's server deadline (the scenes' `probe_timeout_ms`), ms.
    #[arg(long, default_value_t = 15_000)]
    probe_timeout_ms: u64,
    /// Stop coturn before the first relayed setting: a check that a failing probe makes the
    /// exit status non-zero (`tests/tests/bench_probe_exit.rs`).
    #[arg(long)]
    break_turn: bool,
    /// The product-path mode (`product.rs`): the served page with nothing injected, a short
    /// game after every probe; the probe's RTT against the game connection's own and the
    /// proxy's truth, and `game_start` → both game channels open.
    #[arg(long)]
    product_path: bool,
    /// With `--product-path`: write `probe_handover = <true|false>` into every scene (whether
    /// the accepted probe's connection becomes the game's); without it the key is left out
    /// (the server's default).
    #[arg(long)]
    probe_handover: Option<bool>,
    /// With `--product-path`: the game episode played after each probe, ms.
    #[arg(long, default_value_t = 3000)]
    episode_ms: u64,
}

fn main() -> R<()> {
    let args = Args::parse();
    if std::env::var_os("PAIRLAB_BIN").is_none() {
        let profile = match args.server {
            Build::Release => "release",
            Build::Debug => "debug",
        };
        let bin = pairlab_tests::target_dir().join(profile).join("pairlab");
        if !bin.is_file() {
            return Err(format!(
                "{} is missing: build it with `cargo build -j2 --{profile} -p pairlab-server --bin pairlab` \
                 (after www/pkg exists), or pass --server / PAIRLAB_BIN",
                bin.display()
            )
            .replace("--debug ", "")
            .into());
        }
        // Before the runtime starts: no other thread reads the environment yet.
        std::env::set_var("PAIRLAB_BIN", &bin);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let load_before = loadavg();
    let outcome = runtime.block_on(async {
        if args.weight {
            weight(&args).await
        } else if args.product_path {
            product::run(&args, &settings(&args)?).await
        } else {
            probes(&args).await
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    println!(
        "\nMachine load (/proc/loadavg 1/5/15 min) before: {load_before}; after: {}",
        loadavg()
    );
    outcome
}

/// The first three fields of `/proc/loadavg`: other work on the machine during the run.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unavailable".into())
}

// ------------------------------------------------------------------------------------------
// Chromium with the bench's injected script
// ------------------------------------------------------------------------------------------

/// Wraps `RTCPeerConnection` (milestone timestamps, and the
/// kind and seq of every DataChannel message sent and received) and
/// `WebSocket` (the first `hello` sent, the first `welcome` received). Runs before the page's
/// own scripts in every document (CDP `Page.addScriptToEvaluateOnNewDocument`).
const INJECT_JS: &str = r#"
(() => {
  const B = window.__pairlabBench = { origin: performance.timeOrigin, ev: [], hello: null, welcome: null };
  const mark = (what, id, data) => B.ev.push(data == null ? { what, id, t: performance.now() } : { what, id, t: performance.now(), data });
  const OrigPC = window.RTCPeerConnection;
  if (OrigPC) {
    let next = 0;
    // The probe's text messages are short (`p 3 123.4`, `q 3 123.4`, `d`): keep kind + seq.
    const brief = (d) => typeof d === 'string' ? d.split(' ', 2).join(' ') : null;
    const watchChannel = (ch, id) => {
      const sendDc = ch.send.bind(ch);
      ch.send = (d) => { mark('dc_send', id, brief(d)); return sendDc(d); };
      ch.addEventListener('open', () => mark('dc_open', id));
      ch.addEventListener('message', (e) => mark('dc_msg', id, brief(e.data)));
    };
    function PC(config, ...rest) {
      const id = ++next;
      const pc = new OrigPC(config, ...rest);
      mark('pc_created', id);
      pc.addEventListener('iceconnectionstatechange', () => mark('ice_' + pc.iceConnectionState, id));
      pc.addEventListener('connectionstatechange', () => mark('conn_' + pc.connectionState, id));
      pc.addEventListener('datachannel', (e) => watchChannel(e.channel, id));
      pc.addEventListener('icecandidate', (e) => { if (e.candidate) mark('cand_' + e.candidate.type, id); });
      const cdc = pc.createDataChannel.bind(pc);
      pc.createDataChannel = (...a) => { const ch = cdc(...a); watchChannel(ch, id); return ch; };
      const co = pc.createOffer.bind(pc);
      pc.createOffer = (...a) => { mark('create_offer', id); return co(...a); };
      const sld = pc.setLocalDescription.bind(pc);
      pc.setLocalDescription = (...a) => { mark('set_local', id); return sld(...a); };
      const srd = pc.setRemoteDescription.bind(pc);
      pc.setRemoteDescription = (...a) => { mark('set_remote', id); return srd(...a); };
      return pc;
    }
    PC.prototype = OrigPC.prototype;
    Object.setPrototypeOf(PC, OrigPC);
    window.RTCPeerConnection = PC;
  }
  const OrigWS = window.WebSocket;
  const send = OrigWS.prototype.send;
  OrigWS.prototype.send = function (d) {
    if (B.hello === null && typeof d === 'string' && d.includes('"hello"')) B.hello = performance.now();
    return send.call(this, d);
  };
  function WS(...a) {
    const ws = new OrigWS(...a);
    ws.addEventListener('message', (e) => {
      if (B.welcome === null && typeof e.data === 'string' && e.data.includes('"welcome"')) B.welcome = performance.now();
    });
    return ws;
  }
  WS.prototype = OrigWS.prototype;
  Object.setPrototypeOf(WS, OrigWS);
  window.WebSocket = WS;
})();
"#;

/// Reads the injected script's record and the page's resource timings.
const READ_JS: &str = r#"
const b = window.__pairlabBench || null;
const path = (name) => { try { return new URL(name).pathname; } catch (e) { return null; } };
const res = performance.getEntriesByType('resource').map(r => ({
  name: r.name, path: path(r.name), transfer: r.transferSize, encoded: r.encodedBodySize,
  decoded: r.decodedBodySize, coding: r.contentEncoding ?? null, start: r.startTime, end: r.responseEnd }));
const nav = performance.getEntriesByType('navigation')[0];
return { bench: b, resources: res,
  nav: nav ? { path: path(nav.name), response_end: nav.responseEnd, dcl: nav.domContentLoadedEventEnd,
               load: nav.loadEventEnd, transfer: nav.transferSize, encoded: nav.encodedBodySize,
               decoded: nav.decodedBodySize, coding: nav.contentEncoding ?? null } : null };
"#;

/// Reads [`READ_JS`]'s record of the page.
async fn read_page(browser: &Browser) -> R<Value> {
    Ok(browser.execute(READ_JS, Vec::new()).await?)
}

/// Ends the browser's session; what is left is killed when it drops.
async fn close_browser(browser: Browser) {
    let _ = browser.close().await;
}

// ------------------------------------------------------------------------------------------
// Statistics
// ------------------------------------------------------------------------------------------

/// The `q` quantile (0..=1) of the finite values of `xs` by the nearest-rank method; `None`
/// when there are none.
fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    nearest_rank(&v, q)
}

fn f1(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |x| format!("{x:.1}"))
}

// ------------------------------------------------------------------------------------------
// The independent RTT: STUN Binding requests to coturn
// ------------------------------------------------------------------------------------------

/// The median RTT (ms) of [`STUN_PINGS`] STUN Binding requests to `to`, one at a time.
async fn stun_rtt_ms(to: SocketAddr) -> R<Option<f64>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let mut samples = Vec::new();
    for _ in 0..STUN_PINGS {
        if let Some(rtt_ms) = stun_once_ms(&socket, to, Duration::from_secs(2)).await? {
            samples.push(rtt_ms);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(median(samples))
}

// ------------------------------------------------------------------------------------------
// coturn with room for every round's allocations
// ------------------------------------------------------------------------------------------

/// How many relay ports the bench's coturn gets: far more than the harness's 32
/// (`turn::RELAY_PORTS`), which a full run exhausts (coturn logs `create_relay_ioa_sockets: no
/// available ports`, the browsers get no relay candidate and the probe times out): closed
/// connections' allocations are not all released at once.
const RELAY_PORT_COUNT: u16 = 4000;

/// The harness's coturn with static credentials, [`RELAY_PORT_COUNT`] relay ports chosen at
/// run time below the kernel's ephemeral range, and its files (`turn.log`, …) in `work`.
/// Stopped by PID on drop.
async fn bench_turn(work: &WorkDir) -> R<Coturn> {
    let min = free_block(RELAY_PORT_COUNT, Protocols::UDP)?;
    Ok(Coturn::start_with(CoturnConfig {
        auth: TurnAuth::Static {
            user: TURN_USER.to_owned(),
            pass: TURN_PASS.to_owned(),
        },
        relay_ports: Some((min, min + (RELAY_PORT_COUNT - 1))),
        dir: Some(work.path().to_path_buf()),
    })
    .await?)
}

// ------------------------------------------------------------------------------------------
// The probe benchmark
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Setting {
    Direct,
    Relay { delay_ms: u64 },
}

impl Setting {
    /// The candidate pair kind (`connection_type`) the setting asks for.
    fn path_kind(&self) -> &'static str {
        match self {
            Setting::Direct => "direct",
            Setting::Relay { .. } => "relay",
        }
    }

    fn label(&self) -> String {
        match self {
            Setting::Direct => "direct".into(),
            Setting::Relay { delay_ms } => format!("relay D={delay_ms}"),
        }
    }
}

/// One measured probe.
#[derive(Debug, Clone, Default)]
struct ProbeRun {
    /// Both reports' DataChannel median RTT, ms.
    rtt_ms: Vec<f64>,
    /// Both reports' `currentRoundTripTime`, ms.
    stats_rtt_ms: Vec<f64>,
    /// `probe_prepare` → both `probe_ready`, ms.
    ready_ms: Option<f64>,
    /// `probe_prepare` → decision, ms.
    duration_ms: f64,
    /// `probe_prepare` → the later report's arrival, ms.
    last_report_ms: Option<f64>,
    /// Initiator milestones, ms after `probe_prepare` (page clock placed on the record's).
    offer_ms: Option<f64>,
    /// The initiator's first local ICE candidate (relay: its TURN allocation is done).
    first_candidate_ms: Option<f64>,
    ice_connected_ms: Option<f64>,
    dtls_connected_ms: Option<f64>,
    dc_open_ms: Option<f64>,
    /// Each report's measured candidate pair kind (`connection.connection_type`: `relay`,
    /// `direct`), `None` when the report did not name one.
    paths: Vec<Option<String>>,
    accepted: bool,
    /// Pings sent beyond the client's 10, on both pages: replacements for pings found lost.
    replacement_pings: usize,
}

#[derive(Debug, Clone)]
struct SettingResult {
    setting: Setting,
    stun_ms: Option<f64>,
    runs: Vec<ProbeRun>,
    failures: Vec<String>,
}

/// The scene of round `round`: each round has its own waitroom, so a participant left over
/// from an earlier round (a failed probe puts both back in the waitroom; a closed page may be
/// noticed late) can never be matched with a later round's. A relayed round's scene has
/// `force_relay = true`.
fn round_scene(round: usize, relay: bool) -> String {
    if relay {
        format!("r{round:04}-relay")
    } else {
        format!("r{round:04}")
    }
}

/// The config: scenes `r0001..=r{rounds}` (direct) and `r0001-relay..` (`force_relay`), and
/// coturn behind the proxy as the only ICE server.
fn scene_toml(proxy: SocketAddr, rounds: usize, probe_timeout_ms: u64) -> String {
    let mut toml = String::new();
    for round in 1..=rounds {
        for relay in [false, true] {
            toml.push_str(&format!(
                r#"[[scene]]
id = "{}"
group_size = 2
matchmaker = "fifo"
max_p2p_rtt_ms = 100000
probe_timeout_ms = {probe_timeout_ms}
waitroom_timeout_ms = 60000
reconnect_grace_ms = 0
force_relay = {relay}

"#,
                round_scene(round, relay)
            ));
        }
    }
    toml.push_str(&format!(
        r#"[[ice_servers]]
urls = ["turn:{proxy}?transport=udp"]
username = "{TURN_USER}"
credential = "{TURN_PASS}"
"#
    ));
    toml
}

/// The settings `--direct` and `--delays` ask for, direct first.
fn settings(args: &Args) -> R<Vec<Setting>> {
    let mut settings = Vec::new();
    if args.direct {
        settings.push(Setting::Direct);
    }
    let delays = args.delays.trim();
    if !delays.is_empty() && delays != "none" {
        for d in delays.split(',') {
            let delay_ms: u64 = d
                .trim()
                .parse()
                .map_err(|e| format!("--delays: {d:?}: {e}"))?;
            settings.push(Setting::Relay { delay_ms });
        }
    }
    if settings.is_empty() {
        return Err("nothing to measure: give --delays and/or --direct".into());
    }
    Ok(settings)
}

async fn probes(args: &Args) -> R<()> {
    let settings = settings(args)?;
    let deadline = Instant::now() + Duration::from_secs(args.time_limit_s);
    let rounds = settings.len() * (args.probes + 1);
    let mut rig = Rig::start(
        "bench-probe",
        |proxy| scene_toml(proxy, rounds, args.probe_timeout_ms),
        Some(INJECT_JS),
    )
    .await?;
    let (server, a, b, proxy) = (&rig.server, &rig.a, &rig.b, &rig.proxy);
    let (coturn_addr, coturn_pid) = (rig.coturn_addr, rig.coturn_pid());
    println!("pairlab binary: {}", describe_bin(server.bin()));
    eprintln!(
        "bench-probe: server {} (pid {}), coturn pid {}, proxy {} → {}, work dir {}",
        server.bin().display(),
        server.pid(),
        coturn_pid,
        proxy.local_addr(),
        coturn_addr,
        rig.work.path().display()
    );
    let raw_path = rig.work.join("probes.jsonl");
    let mut rounds = Rounds::new(a, b, deadline, args.probes, &raw_path)?;
    let mut results: Vec<SettingResult> = Vec::new();
    for setting in &settings {
        let (relay, stun_to) = match *setting {
            Setting::Direct => {
                proxy.set_delay_ms(0, 0);
                (false, coturn_addr)
            }
            Setting::Relay { delay_ms } => {
                proxy.set_delay_ms(delay_ms, delay_ms);
                (true, proxy.local_addr())
            }
        };
        if relay && args.break_turn {
            if let Some(c) = rig.coturn.take() {
                eprintln!("bench-probe: --break-turn: stopping coturn (pid {coturn_pid})");
                c.stop();
            }
        }
        let stun_ms = match rig.coturn {
            Some(_) => stun_rtt_ms(stun_to).await?,
            None => None,
        };
        let mut result = SettingResult {
            setting: *setting,
            stun_ms,
            runs: Vec::new(),
            failures: Vec::new(),
        };
        // One warm-up probe per setting, not counted (the first TURN allocation of a new
        // delay, the first page of a browser).
        let got = rounds
            .setting(&setting.label(), "probe", |round| {
                one_round(server, a, b, round, relay)
            })
            .await?;
        result.runs = got.kept;
        result.failures = got.failures;
        results.push(result);
        if got.timed_out {
            break;
        }
    }
    drop(rounds);
    rig.close().await;
    print_probe_tables(&results, args);
    println!("\nraw per-probe lines: {}", raw_path.display());
    verdict(&shortfalls(&settings, &results, args.probes))
}

/// The exit status of a probe benchmark: `Ok` when nothing fell short, else each problem on
/// stderr and an error that counts them.
fn verdict(problems: &[String]) -> R<()> {
    if problems.is_empty() {
        return Ok(());
    }
    for p in problems {
        eprintln!("bench-probe: {p}");
    }
    Err(format!(
        "the benchmark did not measure what was asked ({} problems, above)",
        problems.len()
    )
    .into())
}

/// The rounds of a probe benchmark, setting after setting: their numbering, the uncounted
/// warm-up round of each setting, the time limit, leaving both pages for `about:blank` after
/// each round, one raw JSON line per round, and giving up on a setting after 4 failures.
struct Rounds<'a> {
    a: &'a Browser,
    b: &'a Browser,
    deadline: Instant,
    /// Rounds counted per setting (one more is run first, as the warm-up).
    probes: usize,
    /// The last round's number (1-based; each round has its own scene).
    last: usize,
    raw: fs::File,
}

/// One setting's rounds.
struct SettingRounds<T> {
    /// The counted rounds' measurements.
    kept: Vec<T>,
    /// Why rounds failed.
    failures: Vec<String>,
    /// The time limit stopped the setting (and the run).
    timed_out: bool,
}

impl<'a> Rounds<'a> {
    fn new(
        a: &'a Browser,
        b: &'a Browser,
        deadline: Instant,
        probes: usize,
        raw_path: &Path,
    ) -> R<Rounds<'a>> {
        Ok(Rounds {
            a,
            b,
            deadline,
            probes,
            last: 0,
            raw: fs::File::create(raw_path)?,
        })
    }

    /// Runs one setting's rounds with `one(round)`, which returns the measurement and the JSON
    /// written to the raw file under `raw_key`.
    async fn setting<T, F, Fut>(
        &mut self,
        label: &str,
        raw_key: &str,
        mut one: F,
    ) -> R<SettingRounds<T>>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = R<(T, Value)>>,
    {
        let mut out = SettingRounds {
            kept: Vec::new(),
            failures: Vec::new(),
            timed_out: false,
        };
        for i in 0..=self.probes {
            if Instant::now() > self.deadline {
                eprintln!("bench-probe: time limit reached; printing what was measured");
                out.timed_out = true;
                break;
            }
            self.last += 1;
            let round = self.last;
            let outcome = one(round).await;
            // Leave the page: its connections close and stop using the CPU.
            let (ra, rb) = tokio::join!(self.a.goto("about:blank"), self.b.goto("about:blank"));
            if let Err(e) = ra.and(rb) {
                eprintln!("bench-probe: {label} round {round}: {e}");
                out.failures.push(e.to_string());
            }
            match outcome {
                Ok((measured, line)) => {
                    writeln!(
                        self.raw,
                        "{}",
                        json!({"setting": label, "warmup": i == 0, raw_key: line})
                    )?;
                    if i > 0 {
                        out.kept.push(measured);
                    }
                }
                Err(e) => {
                    eprintln!("bench-probe: {label} round {round}: {e}");
                    out.failures.push(e.to_string());
                }
            }
            if out.failures.len() > 3 {
                eprintln!("bench-probe: too many failures; next setting");
                break;
            }
        }
        eprintln!("bench-probe: {label} done: {} measured", out.kept.len());
        Ok(out)
    }
}

/// What makes a probe run not count as measured (see the module docs' exit status): one line
/// per problem, empty when every setting measured `probes` accepted probes on the asked path.
fn shortfalls(settings: &[Setting], results: &[SettingResult], probes: usize) -> Vec<String> {
    let mut out = Vec::new();
    for setting in settings {
        let label = setting.label();
        let r = results.iter().find(|r| r.setting == *setting);
        let measured = r.map(|r| (r.runs.len(), r.failures.as_slice()));
        let Some(r) = count_shortfalls(&label, measured, probes, "probes", &mut out).and(r) else {
            continue;
        };
        for (i, run) in r.runs.iter().enumerate() {
            let who = format!("probe {}", i + 1);
            if !run.accepted {
                out.push(format!("{label}: {who} was not accepted"));
            }
            path_shortfalls(
                &label,
                &who,
                "reports",
                &run.paths,
                setting.path_kind(),
                &mut out,
            );
        }
    }
    out
}

/// The shortfalls every mode shares for one setting, pushed to `out`: not measured at all
/// (`measured` is `None`: the time limit), fewer than `probes` measured (`noun`: what is
/// counted), failed rounds. `Some(())` when the setting was measured at all.
fn count_shortfalls(
    label: &str,
    measured: Option<(usize, &[String])>,
    probes: usize,
    noun: &str,
    out: &mut Vec<String>,
) -> Option<()> {
    let Some((count, failures)) = measured else {
        out.push(format!("{label}: not measured (time limit)"));
        return None;
    };
    if count < probes {
        out.push(format!("{label}: {count} of {probes} {noun} measured"));
    }
    for f in failures {
        out.push(format!("{label}: failed round: {f}"));
    }
    Some(())
}

/// `who`'s candidate pairs (one per side) that are not `want`, and fewer than two of them
/// (`what`: what names them), pushed to `out`.
fn path_shortfalls(
    label: &str,
    who: &str,
    what: &str,
    paths: &[Option<String>],
    want: &str,
    out: &mut Vec<String>,
) {
    for path in paths {
        if path.as_deref() != Some(want) {
            out.push(format!(
                "{label}: {who} measured a {} pair, not {want}",
                path.as_deref().unwrap_or("unknown")
            ));
        }
    }
    if paths.len() < 2 {
        out.push(format!("{label}: {who} has fewer than two {what}"));
    }
}

/// The subject ids of a round.
fn round_ids(round: usize) -> [String; 2] {
    [format!("r{round:04}-a"), format!("r{round:04}-b")]
}

/// One probe: both pages load with fresh ids; returns the measurement and the record line.
async fn one_round(
    server: &Server,
    a: &Browser,
    b: &Browser,
    round: usize,
    relay: bool,
) -> R<(ProbeRun, Value)> {
    let ids = round_ids(round);
    let scene = round_scene(round, relay);
    let record = server.events_path(&scene);
    let url = |id: &str| server.url(&format!("/?subject_id={id}&scene_id={scene}"));
    let (url_a, url_b) = (url(&ids[0]), url(&ids[1]));
    let (ra, rb) = tokio::join!(a.goto(&url_a), b.goto(&url_b));
    ra?;
    rb?;
    let start = Instant::now();
    let (started, result) = loop {
        let events = read_events(&record)?;
        let ours = |e: &&Value| {
            e.get("members")
                .and_then(Value::as_array)
                .is_some_and(|m| m.iter().any(|s| s.as_str() == Some(ids[0].as_str())))
        };
        let started = events_of(&events, Ev::ProbeStarted)
            .into_iter()
            .find(ours)
            .cloned();
        let result = events_of(&events, Ev::ProbeResult)
            .into_iter()
            .find(ours)
            .cloned();
        if let (Some(s), Some(r)) = (started, result) {
            break (s, r);
        }
        if start.elapsed() > Duration::from_secs(25) {
            return Err(format!(
                "no probe_result for {} within 25 s (server log: {})",
                ids[0],
                server.log_tail(5)
            )
            .into());
        }
        tokio::time::sleep(POLL).await;
    };
    let members: Vec<String> = result
        .get("members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if members.len() != 2 || !members.contains(&ids[1]) {
        return Err(format!("probe members {members:?}, expected {ids:?}").into());
    }
    // The pages may record their last DataChannel messages just after the result: a moment.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (pa, pb) = tokio::join!(read_page(a), read_page(b));
    let pages: HashMap<&str, Value> = [(ids[0].as_str(), pa?), (ids[1].as_str(), pb?)].into();
    let prepare_abs = started
        .get("ts")
        .and_then(Value::as_str)
        .and_then(rfc3339_ms)
        .ok_or("probe_started without a ts")?;
    let mut run = ProbeRun {
        accepted: result.get("accepted").and_then(Value::as_bool) == Some(true),
        ready_ms: result.get("ready_ms").and_then(Value::as_f64),
        duration_ms: result
            .get("duration_ms")
            .and_then(Value::as_f64)
            .ok_or("probe_result without duration_ms")?,
        ..ProbeRun::default()
    };
    let reports = result
        .get("reports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut received = Vec::new();
    for r in &reports {
        if let Some(v) = r.get("rtt_ms").and_then(Value::as_f64) {
            run.rtt_ms.push(v);
        }
        if let Some(v) = r.get("stats_rtt_ms").and_then(Value::as_f64) {
            run.stats_rtt_ms.push(v);
        }
        if let Some(v) = r.get("received_ms").and_then(Value::as_f64) {
            received.push(v);
        }
        run.paths.push(
            r.get("connection")
                .and_then(|c| c.get("connection_type"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
    }
    run.last_report_ms = received.iter().copied().reduce(f64::max);
    // The initiator (members[0]) page's milestones of its last RTCPeerConnection.
    if let Some(page) = pages.get(members[0].as_str()) {
        let bench = &page["bench"];
        let origin = bench["origin"].as_f64().unwrap_or(f64::NAN);
        let evs = bench["ev"].as_array().cloned().unwrap_or_default();
        // The probe's connection: the first one created from `probe_prepare` on (the game's
        // comes after the decision). 2 ms of slack for the record's 1 ms resolution.
        let probe_pc = evs
            .iter()
            .filter(|e| e["what"] == "pc_created")
            .find(|e| {
                e["t"]
                    .as_f64()
                    .is_some_and(|t| origin + t >= prepare_abs - 2.0)
            })
            .and_then(|e| e["id"].as_u64());
        let at = |what: &dyn Fn(&str) -> bool| {
            evs.iter()
                .find(|e| e["what"].as_str().is_some_and(what) && e["id"].as_u64() == probe_pc)
                .and_then(|e| e["t"].as_f64())
                .map(|t| origin + t - prepare_abs)
        };
        run.offer_ms = at(&|w| w == "create_offer");
        run.first_candidate_ms = at(&|w| w.starts_with("cand_"));
        run.ice_connected_ms = at(&|w| w == "ice_connected");
        run.dtls_connected_ms = at(&|w| w == "conn_connected");
        run.dc_open_ms = at(&|w| w == "dc_open");
    }
    // Per page: its pings sent less the pongs it received (the window's last pings may still
    // be in flight when a side completes; those count too).
    run.replacement_pings = members
        .iter()
        .filter_map(|m| pages.get(m.as_str()))
        .map(|page| {
            let evs = page["bench"]["ev"].as_array().cloned().unwrap_or_default();
            let count = |what: &str, prefix: &str| {
                evs.iter()
                    .filter(|e| e["what"] == what)
                    .filter(|e| e["data"].as_str().is_some_and(|d| d.starts_with(prefix)))
                    .count()
            };
            count("dc_send", "p ").saturating_sub(count("dc_msg", "q "))
        })
        .sum();
    let line = json!({ "probe_started": started, "probe_result": result, "pages": pages });
    Ok((run, line))
}

/// The true RTT of each setting, ms (see the module doc): nothing the DataChannel estimator
/// under test feeds.
fn true_rtts(results: &[SettingResult]) -> HashMap<String, (f64, &'static str)> {
    let mut out = HashMap::new();
    for r in results {
        let t = match r.setting {
            Setting::Direct => median(r.runs.iter().flat_map(|p| p.stats_rtt_ms.clone()))
                .map(|s| (s, "median getStats currentRoundTripTime")),
            Setting::Relay { .. } => r.stun_ms.map(|s| (2.0 * s, "2·stun(D) through the proxy")),
        };
        if let Some(t) = t {
            out.insert(r.setting.label(), t);
        }
    }
    out
}

fn print_probe_tables(results: &[SettingResult], args: &Args) {
    let truth = true_rtts(results);
    println!(
        "\n## Probe accuracy ({} probes per setting after 1 warm-up; errors over both members' reports)\n",
        args.probes
    );
    println!("| setting | probes | STUN RTT via path | true RTT | rtt_ms median | rtt_ms err median | rtt_ms worst abs err | stats_rtt_ms median | stats err median | stats worst abs err | within 2 ms + 3 % (rtt / stats) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in results {
        let Some(&(t, _)) = truth.get(&r.setting.label()) else {
            continue;
        };
        let rtt: Vec<f64> = r.runs.iter().flat_map(|p| p.rtt_ms.clone()).collect();
        let stats: Vec<f64> = r.runs.iter().flat_map(|p| p.stats_rtt_ms.clone()).collect();
        let errs = |xs: &[f64]| xs.iter().map(|x| x - t).collect::<Vec<f64>>();
        let worst = |xs: &[f64]| xs.iter().map(|e| e.abs()).reduce(f64::max);
        let within = |xs: &[f64]| {
            let tol = 2.0 + 0.03 * t;
            let ok = xs.iter().filter(|e| e.abs() <= tol).count();
            format!("{ok}/{}", xs.len())
        };
        let (er, es) = (errs(&rtt), errs(&stats));
        println!(
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} / {} |",
            r.setting.label(),
            r.runs.len(),
            f1(r.stun_ms),
            t,
            f1(median(rtt.iter().copied())),
            f1(median(er.iter().copied())),
            f1(worst(&er)),
            f1(median(stats.iter().copied())),
            f1(median(es.iter().copied())),
            f1(worst(&es)),
            within(&er),
            within(&es),
        );
    }
    println!("\n## Probe duration (probe_prepare → decision, ms) and its split (medians)\n");
    println!("`failed`: probes the server did not accept (with max_p2p_rtt_ms = 100000 only a failed measurement or a timeout); their durations are included.\n");
    println!("| setting | probes | failed | median | p95 | target | met | prepare→both ready | ready→offer | offer→1st local candidate | candidate→ICE connected | ICE→DTLS connected | DTLS→DataChannel open | open→last report (sampling) | last report→decision |");
    println!("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let durs: Vec<f64> = r.runs.iter().map(|p| p.duration_ms).collect();
        let t = truth.get(&r.setting.label()).map(|x| x.0);
        let target = match r.setting {
            Setting::Direct => Some(100.0),
            Setting::Relay { .. } => t.map(|t| 150.0 + 8.0 * t),
        };
        let med = median(durs.iter().copied());
        let met = match (med, target) {
            (Some(m), Some(tg)) => {
                if m < tg {
                    "yes"
                } else {
                    "**no**"
                }
            }
            _ => "–",
        };
        let split = |f: &dyn Fn(&ProbeRun) -> Option<f64>| median(r.runs.iter().filter_map(f));
        println!(
            "| {} | {} | {} | {} | {} | < {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.setting.label(),
            r.runs.len(),
            r.runs.iter().filter(|p| !p.accepted).count(),
            f1(med),
            f1(quantile(&durs, 0.95)),
            f1(target),
            met,
            f1(split(&|p| p.ready_ms)),
            f1(split(&|p| Some(p.offer_ms? - p.ready_ms?))),
            f1(split(&|p| Some(p.first_candidate_ms? - p.offer_ms?))),
            f1(split(&|p| Some(
                p.ice_connected_ms? - p.first_candidate_ms?
            ))),
            f1(split(&|p| Some(p.dtls_connected_ms? - p.ice_connected_ms?))),
            f1(split(&|p| Some(p.dc_open_ms? - p.dtls_connected_ms?))),
            f1(split(&|p| Some(p.last_report_ms? - p.dc_open_ms?))),
            f1(split(&|p| Some(p.duration_ms - p.last_report_ms?))),
        );
    }
    println!("\nTrue RTT: relayed = 2·stun(D), the median STUN Binding RTT to coturn through the proxy doubled (a relayed one-way trip crosses the proxy twice and coturn once, as a STUN round trip does); direct = the median of the reports' getStats currentRoundTripTime (whole ms). Neither is fed by the DataChannel samples.");
    println!("Split columns use the initiator page's clock placed on the server's (record ts, 1 ms resolution).");
    let rejected: usize = results
        .iter()
        .map(|r| r.runs.iter().filter(|p| !p.accepted).count())
        .sum();
    let failures: usize = results.iter().map(|r| r.failures.len()).sum();
    let replaced: usize = results
        .iter()
        .flat_map(|r| &r.runs)
        .map(|p| p.replacement_pings)
        .sum();
    let probes_with_replacement = results
        .iter()
        .flat_map(|r| &r.runs)
        .filter(|p| p.replacement_pings > 0)
        .count();
    println!(
        "Pings without a pong (lost and replaced, or in flight when a side completed): {replaced}, in {probes_with_replacement} probes."
    );
    let paths = |want: &str| -> usize {
        results
            .iter()
            .flat_map(|r| &r.runs)
            .flat_map(|p| &p.paths)
            .filter(|k| k.as_deref() == Some(want))
            .count()
    };
    println!(
        "Rejected probes: {rejected}; failed rounds: {failures}; reports that measured a relayed pair: {}, a direct pair: {}.",
        paths("relay"),
        paths("direct")
    );
    for r in results {
        for f in &r.failures {
            println!("- {}: {f}", r.setting.label());
        }
    }
}

// ------------------------------------------------------------------------------------------
// Client weight
// ------------------------------------------------------------------------------------------

/// How the weight table names some of the page's files (by URL path, query left out); any
/// other file the page loaded is listed by its path.
const FILE_LABELS: [(&str, &str); 7] = [
    ("/", "`/` (index.html, with the inline loader script)"),
    ("/style.css", "`/style.css`"),
    ("/pairlab.js", "`/pairlab.js` (the JavaScript API)"),
    ("/app.js", "`/app.js` (the page, on the API)"),
    ("/demo.js", "`/demo.js` (the demo game)"),
    (
        "/pkg/pairlab_client.js",
        "`/pkg/pairlab_client.js` (wasm-bindgen glue)",
    ),
    (WASM_ASSET, "`/pkg/pairlab_client_bg.wasm`"),
];

/// Every file the first load received, in table order: the page, then the labelled files in
/// [`FILE_LABELS`] order, then any other by path.
fn table_files(first: &HashMap<String, Received>) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = FILE_LABELS
        .iter()
        .filter(|(path, _)| first.contains_key(*path))
        .map(|(path, label)| ((*path).to_owned(), (*label).to_owned()))
        .collect();
    let mut others: Vec<&String> = first
        .keys()
        .filter(|path| !FILE_LABELS.iter().any(|(known, _)| known == path))
        .collect();
    others.sort();
    rows.extend(others.into_iter().map(|p| (p.clone(), format!("`{p}`"))));
    rows
}

/// What the browser received for one file, as its Navigation or Resource Timing entry tells it
/// (W3C Resource Timing: `transferSize`, `encodedBodySize`, `decodedBodySize`).
#[derive(Debug, Clone, Default, PartialEq)]
struct Received {
    /// Bytes fetched over the network, response headers included; 0 when the HTTP cache
    /// answered without a request, about the headers' size for a `304` revalidation.
    transfer_bytes: f64,
    /// The body as sent, before content decoding (bytes).
    encoded_bytes: f64,
    /// The body after content decoding, what the page uses (bytes).
    decoded_bytes: f64,
    /// `contentEncoding` (`br`, `gzip`, …), where the browser reports it.
    coding: Option<String>,
}

impl Received {
    /// One timing entry of [`READ_JS`] (`transfer`, `encoded`, `decoded`, `coding`); a missing
    /// number is NaN.
    fn from_entry(entry: &Value) -> Received {
        let bytes = |key: &str| entry[key].as_f64().unwrap_or(f64::NAN);
        Received {
            transfer_bytes: bytes("transfer"),
            encoded_bytes: bytes("encoded"),
            decoded_bytes: bytes("decoded"),
            coding: entry["coding"]
                .as_str()
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
        }
    }
}

/// The page's files as one load of it received them (from [`READ_JS`]'s `nav` and
/// `resources`), by URL path: the first entry of each path.
fn received_files(page: &Value) -> HashMap<String, Received> {
    let mut files = HashMap::new();
    let entries = std::iter::once(&page["nav"])
        .chain(page["resources"].as_array().into_iter().flatten())
        .filter(|entry| entry.is_object());
    for entry in entries {
        if let Some(path) = entry["path"].as_str() {
            files
                .entry(path.to_owned())
                .or_insert_with(|| Received::from_entry(entry));
        }
    }
    files
}

/// A byte count for the table: `12,345`, or `–` when not measured.
fn bytes(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let digits = format!("{v:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Opens `/` as subject `id` in the bench scene and waits for the page to receive `welcome`;
/// returns [`READ_JS`]'s record of the page.
async fn load_page(browser: &Browser, server: &Server, id: &str) -> R<Value> {
    browser
        .goto(&server.url(&format!("/?subject_id={id}&scene_id={SCENE}")))
        .await?;
    let start = Instant::now();
    loop {
        let page = read_page(browser).await?;
        if page["bench"]["welcome"].is_number() {
            return Ok(page);
        }
        if start.elapsed() > Duration::from_secs(15) {
            return Err(format!("{id}: no welcome within 15 s: {page}").into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints what Chromium received for the page's files on its first load (a fresh profile)
/// and on a reload with its HTTP cache.
fn print_received(first: &HashMap<String, Received>, warm: &HashMap<String, Received>) {
    println!("| resource | first load: transferSize | encodedBodySize | decodedBodySize | contentEncoding | reload (HTTP cache): transferSize |");
    println!("|---|---:|---:|---:|---|---:|");
    let mut total = [0.0f64; 4];
    for (path, label) in table_files(first) {
        let none = Received {
            transfer_bytes: f64::NAN,
            encoded_bytes: f64::NAN,
            decoded_bytes: f64::NAN,
            coding: None,
        };
        let f = first.get(&path).unwrap_or(&none);
        let w = warm.get(&path).unwrap_or(&none);
        for (sum, x) in total.iter_mut().zip([
            f.transfer_bytes,
            f.encoded_bytes,
            f.decoded_bytes,
            w.transfer_bytes,
        ]) {
            *sum += x;
        }
        println!(
            "| {label} | {} | {} | {} | {} | {} |",
            bytes(f.transfer_bytes),
            bytes(f.encoded_bytes),
            bytes(f.decoded_bytes),
            f.coding.as_deref().unwrap_or("–"),
            bytes(w.transfer_bytes),
        );
    }
    println!(
        "| **total** | **{}** | **{}** | **{}** | | **{}** |",
        bytes(total[0]),
        bytes(total[1]),
        bytes(total[2]),
        bytes(total[3]),
    );
}

async fn weight(args: &Args) -> R<()> {
    let deadline = Instant::now() + Duration::from_secs(args.time_limit_s);
    let work = WorkDir::fresh("bench-weight")?;
    let server = Server::start(
        &work,
        &format!(
            "[[scene]]\nid = \"{SCENE}\"\ngroup_size = 2\nmatchmaker = \"fifo\"\nreconnect_grace_ms = 0\n"
        ),
    )
    .await?;
    let served_by = describe_bin(server.bin());
    let pkg = pairlab_tests::workspace_root().join("www").join("pkg");
    let files: Vec<PathBuf> = fs::read_dir(&pkg)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "wasm"))
    {
        let meta = fs::metadata(f)?;
        println!(
            "\n(www/pkg on disk: {} is {} bytes, modified {}; a release binary embeds www/ as it was when built)",
            f.display(),
            meta.len(),
            meta.modified().map(unix_secs).unwrap_or_default()
        );
    }

    let driver = ChromeDriver::start(&work).await?;
    // The weight run's page: the same observer script as the probe runs.
    let options = rig::browser_options(Some(INJECT_JS));
    let browser = Browser::open_with(&driver, &work, "w", &options).await?;
    // The first load of a fresh profile: what a participant's browser receives on a first visit.
    let first = received_files(&load_page(&browser, &server, "wf-000").await?);
    browser.cdp("Network.enable", json!({})).await?;
    let mut rows = Vec::new();
    let mut warm_seen = HashMap::new();
    'modes: for (mode, disabled) in [
        ("cold (cache disabled)", true),
        ("warm (HTTP cache)", false),
    ] {
        browser
            .cdp(
                "Network.setCacheDisabled",
                json!({ "cacheDisabled": disabled }),
            )
            .await?;
        let mut hello = Vec::new();
        let mut welcome = Vec::new();
        let mut wasm_end = Vec::new();
        let mut joined = Vec::new();
        // One load first to fill the cache (warm) or warm up Chromium (cold), not counted.
        for i in 0..=args.loads {
            if Instant::now() > deadline {
                eprintln!("bench-probe: time limit reached");
                rows.push((mode, hello, welcome, wasm_end, joined));
                break 'modes;
            }
            let id = format!("w{}-{i:03}", if disabled { "c" } else { "w" });
            let page = load_page(&browser, &server, &id).await?;
            if i == 0 {
                continue;
            }
            let origin = page["bench"]["origin"].as_f64().unwrap_or(f64::NAN);
            hello.push(page["bench"]["hello"].as_f64().unwrap_or(f64::NAN));
            welcome.push(page["bench"]["welcome"].as_f64().unwrap_or(f64::NAN));
            if let Some(w) = page["resources"]
                .as_array()
                .and_then(|rs| rs.iter().find(|r| r["path"].as_str() == Some(WASM_ASSET)))
            {
                wasm_end.push(w["end"].as_f64().unwrap_or(f64::NAN));
            }
            let events = read_events(&server.events_path(SCENE))?;
            if let Some(ts) = events_of(&events, Ev::ParticipantJoined)
                .into_iter()
                .find(|e| e["subject_id"] == id.as_str())
                .and_then(|e| e["ts"].as_str())
                .and_then(rfc3339_ms)
            {
                joined.push(ts - origin);
            }
            if !disabled {
                warm_seen = received_files(&page);
            }
        }
        rows.push((mode, hello, welcome, wasm_end, joined));
    }
    close_browser(browser).await;
    drop(driver);
    drop(server);
    println!(
        "\n## Client weight: what headless Chromium received (bytes, Resource Timing), served by {served_by}\n"
    );
    print_received(&first, &warm_seen);
    println!(
        "\n## Client weight: navigation start → hello ({} loads per mode after 1 uncounted, ms, headless Chromium, one page at a time)\n",
        args.loads
    );
    println!("| mode | loads | wasm responseEnd median | hello sent median | hello p95 | welcome received median | server participant_joined median |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (mode, hello, welcome, wasm_end, joined) in &rows {
        println!(
            "| {mode} | {} | {} | {} | {} | {} | {} |",
            hello.len(),
            f1(median(wasm_end.iter().copied())),
            f1(median(hello.iter().copied())),
            f1(quantile(hello, 0.95)),
            f1(median(welcome.iter().copied())),
            f1(median(joined.iter().copied())),
        );
    }
    Ok(())
}

/// `PATH (N bytes, modified unix S)`: which build was measured.
fn describe_bin(bin: &Path) -> String {
    match fs::metadata(bin) {
        Ok(m) => format!(
            "{} ({} bytes, modified {})",
            bin.display(),
            m.len(),
            m.modified().map(unix_secs).unwrap_or_default()
        ),
        Err(e) => format!("{}: {e}", bin.display()),
    }
}

/// Seconds since the epoch of a file time, for the report.
fn unix_secs(t: std::time::SystemTime) -> String {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => format!("unix {}", d.as_secs()),
        Err(_) => "before 1970".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(accepted: bool, paths: &[Option<&str>]) -> ProbeRun {
        ProbeRun {
            accepted,
            paths: paths.iter().map(|p| p.map(str::to_owned)).collect(),
            ..ProbeRun::default()
        }
    }

    fn setting(setting: Setting, runs: Vec<ProbeRun>, failures: Vec<String>) -> SettingResult {
        SettingResult {
            setting,
            stun_ms: None,
            runs,
            failures,
        }
    }

    #[test]
    fn shortfalls_are_failures_missing_probes_and_wrong_paths() {
        let relay = Setting::Relay { delay_ms: 0 };
        let good = [
            setting(
                Setting::Direct,
                vec![run(true, &[Some("direct"); 2])],
                vec![],
            ),
            setting(relay, vec![run(true, &[Some("relay"); 2])], vec![]),
        ];
        assert!(shortfalls(&[Setting::Direct, relay], &good, 1).is_empty());
        // Every way a run can fall short is named.
        let bad = [
            setting(
                Setting::Direct,
                vec![run(true, &[Some("relay"), Some("direct")])],
                vec!["no probe_result within 25 s".into()],
            ),
            setting(relay, vec![run(false, &[Some("relay"), None])], vec![]),
        ];
        let p = shortfalls(&[Setting::Direct, relay], &bad, 2);
        let has = |needle: &str| p.iter().any(|l| l.contains(needle));
        assert!(has("direct: 1 of 2 probes measured"), "{p:?}");
        assert!(has("direct: failed round"), "{p:?}");
        assert!(
            has("direct: probe 1 measured a relay pair, not direct"),
            "{p:?}"
        );
        assert!(has("relay D=0: probe 1 was not accepted"), "{p:?}");
        assert!(has("relay D=0: probe 1 measured a unknown pair"), "{p:?}");
        // A setting the time limit never reached.
        let p = shortfalls(&[Setting::Direct, relay], &good[..1], 1);
        assert_eq!(p, vec!["relay D=0: not measured (time limit)".to_owned()]);
    }

    #[test]
    fn received_files_by_path_first_entry_wins() {
        let page = json!({
            "nav": {"path": "/", "transfer": 2300, "encoded": 2000, "decoded": 4557, "coding": "br"},
            "resources": [
                {"path": "/style.css", "transfer": 0, "encoded": 1446, "decoded": 4011, "coding": ""},
                {"path": "/style.css", "transfer": 9, "encoded": 9, "decoded": 9},
                {"name": "no path"}
            ]
        });
        let files = received_files(&page);
        assert_eq!(files.len(), 2);
        assert_eq!(files["/"].coding.as_deref(), Some("br"));
        assert_eq!(files["/"].decoded_bytes, 4557.0);
        let css = &files["/style.css"];
        assert_eq!((css.transfer_bytes, css.coding.as_deref()), (0.0, None));
    }

    #[test]
    fn byte_counts_have_thousands_separators() {
        assert_eq!(bytes(703_230.0), "703,230");
        assert_eq!(bytes(999.0), "999");
        assert_eq!(bytes(0.0), "0");
        assert_eq!(bytes(f64::NAN), "–");
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let xs = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&xs, 0.95), Some(5.0));
        assert_eq!(quantile(&xs, 0.2), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
