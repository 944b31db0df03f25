//! A simulation of matchmaking: the real sans-IO [`Core`] on virtual time, driven by scripted
//! clients drawn from a population whose peer-to-peer RTT for every pair is known, so that
//! matchmakers can be compared on the same arrivals (`latency_fifo` + probe against
//! `p2p_matrix`). Used by the `simulate` binary (BENCHMARKS.md) and its smoke test.
//!
//! ## The population (assumptions)
//! - Participants live in one of eight regions with the shares of [`REGIONS`] (weighted to the
//!   UK, US and EU, as online-panel samples are). The RTT between two regions is
//!   [`REGION_RTT_MS`]: rounded medians of the kind public inter-region latency tables report
//!   (cloud inter-region pings such as cloudping.co's AWS p50 matrix, WonderNetwork's city-pair
//!   pings), taken as the core-network RTT between the regions' population centres; 10 ms within
//!   a region.
//! - Each participant adds their own access RTT (home broadband or Wi-Fi, last mile and
//!   browser), uniform in 5–40 ms, to every path they are on.
//! - A pair's true P2P RTT is `region_rtt + access_a + access_b`; a participant's server RTT is
//!   `region_rtt(their region, London) + access + 2 ms` (the server is in London).
//! - A fraction of participants (`bad_fraction`) have a *bad path*: their peer-to-peer traffic
//!   takes a detour (a symmetric NAT relayed through a distant TURN server, a congested uplink)
//!   adding 200 ms to every pair they are in, while their server RTT looks normal — what the
//!   server-RTT pre-filter cannot see.
//! - Arrivals are a Poisson process at the given rate; every participant waits up to the
//!   scene's waitroom timeout, then leaves (a timeout).
//!
//! ## The clients
//! Each answers `probe_prepare` with `probe_ready` after 20 ms, and after `probe_start` sends its
//! `probe_result` after the probe's duration: `100 ms + 6.5 × pair RTT` (ICE, DTLS, SCTP and the
//! probe's pings; the second member ½ RTT later), reporting the true pair RTT plus |N(0, 3 ms)|
//! noise. Server RTT samples arrive one RTT apart after `hello`. A `game_start` ends the
//! participant's part.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pairlab_server::config::{Config, MatchmakerKind, SceneConfig};
use pairlab_server::core::research::ResearchEvent;
use pairlab_server::core::{Action, ConnId, Core, CoreClock, Event, SeededIds};
use pairlab_shared::{
    ClientMessage, Hello, ProbeReady, ProbeResult, ProbeSessionId, ServerMessage, SubjectId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::stats::nearest_rank;

/// The regions of the population: name and share of participants.
pub const REGIONS: [(&str, f64); 8] = [
    ("us-east", 0.20),
    ("us-west", 0.10),
    ("london", 0.35),
    ("frankfurt", 0.20),
    ("sao-paulo", 0.03),
    ("mumbai", 0.04),
    ("singapore", 0.04),
    ("sydney", 0.04),
];

/// Index of the server's region in [`REGIONS`].
const SERVER_REGION: usize = 2;

/// RTT between regions, ms, in [`REGIONS`] order (symmetric).
pub const REGION_RTT_MS: [[f64; 8]; 8] = [
    [10.0, 70.0, 75.0, 85.0, 120.0, 190.0, 230.0, 200.0],
    [70.0, 10.0, 140.0, 150.0, 180.0, 230.0, 170.0, 150.0],
    [75.0, 140.0, 10.0, 15.0, 190.0, 115.0, 170.0, 265.0],
    [85.0, 150.0, 15.0, 10.0, 200.0, 110.0, 160.0, 250.0],
    [120.0, 180.0, 190.0, 200.0, 10.0, 300.0, 330.0, 310.0],
    [190.0, 230.0, 115.0, 110.0, 300.0, 10.0, 60.0, 150.0],
    [230.0, 170.0, 170.0, 160.0, 330.0, 60.0, 10.0, 95.0],
    [200.0, 150.0, 265.0, 250.0, 310.0, 150.0, 95.0, 10.0],
];

/// The extra RTT of a bad path, ms.
pub const BAD_PATH_EXTRA_MS: f64 = 200.0;

/// What one simulation run is.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The matchmaker under test.
    pub matchmaker: MatchmakerKind,
    /// Participants per game.
    pub group_size: u32,
    /// Arrivals per minute (Poisson).
    pub arrivals_per_min: f64,
    /// How long arrivals go on, s (the run continues until everyone has a game or timed out).
    pub duration_s: f64,
    /// Share of participants with a bad path.
    pub bad_fraction: f64,
    /// The scene's `max_p2p_rtt_ms`.
    pub max_p2p_rtt_ms: f64,
    /// The scene's `max_server_rtt_ms` (the pre-filter).
    pub max_server_rtt_ms: f64,
    /// The scene's `waitroom_timeout_ms`.
    pub waitroom_timeout_ms: u64,
    /// The scene's `probe_timeout_ms`.
    pub probe_timeout_ms: u64,
    /// The population's and the ids' seed: the same seed gives the same arrivals.
    pub seed: u64,
}

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimReport {
    /// Participants who arrived.
    pub arrivals: usize,
    /// Games formed.
    pub games: usize,
    /// Participants whose waitroom time ran out.
    pub timeouts: usize,
    /// Wait from `hello` to `game_start`, s: median and 95th percentile (nearest rank).
    pub wait_median_s: f64,
    /// See [`SimReport::wait_median_s`].
    pub wait_p95_s: f64,
    /// True P2P RTT over every pair of every game, ms: mean and maximum.
    pub pair_rtt_mean_ms: f64,
    /// See [`SimReport::pair_rtt_mean_ms`].
    pub pair_rtt_max_ms: f64,
    /// Pairs in games whose true RTT is above `max_p2p_rtt_ms`.
    pub pairs_over_threshold: usize,
    /// Probes started (`probe_started` lines).
    pub probes: usize,
    /// Proposed groups rejected by their probe (`match_rejected` lines).
    pub rejected: usize,
}

impl SimReport {
    /// Probes per game formed.
    pub fn probes_per_game(&self) -> f64 {
        if self.games == 0 {
            f64::NAN
        } else {
            self.probes as f64 / self.games as f64
        }
    }
}

/// One participant of the population.
#[derive(Debug, Clone)]
struct Person {
    region: usize,
    access_ms: f64,
    bad: bool,
    arrive_us: u64,
}

impl Person {
    fn server_rtt_ms(&self) -> f64 {
        REGION_RTT_MS[self.region][SERVER_REGION] + self.access_ms + 2.0
    }
}

fn pair_rtt_ms(a: &Person, b: &Person) -> f64 {
    let bad = if a.bad || b.bad {
        BAD_PATH_EXTRA_MS
    } else {
        0.0
    };
    REGION_RTT_MS[a.region][b.region] + a.access_ms + b.access_ms + bad
}

/// The population of a run: arrival times and paths, from `cfg.seed` alone (so both
/// matchmakers see the same people at the same times).
fn population(cfg: &SimConfig) -> Vec<Person> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let rate_per_s = cfg.arrivals_per_min / 60.0;
    let mut t_s = 0.0f64;
    let mut people = Vec::new();
    loop {
        // Exponential gaps: −ln(U) / λ.
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        t_s += -u.ln() / rate_per_s;
        if t_s > cfg.duration_s {
            return people;
        }
        let mut pick: f64 = rng.random();
        let mut region = REGIONS.len() - 1;
        for (i, (_, share)) in REGIONS.iter().enumerate() {
            if pick < *share {
                region = i;
                break;
            }
            pick -= share;
        }
        people.push(Person {
            region,
            access_ms: rng.random_range(5.0..40.0),
            bad: rng.random_bool(cfg.bad_fraction.clamp(0.0, 1.0)),
            arrive_us: (t_s * 1e6) as u64,
        });
    }
}

/// |N(0, σ)| by Box–Muller.
fn half_normal(rng: &mut ChaCha8Rng, sigma: f64) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * sigma).abs()
}

/// What happens next on the virtual clock.
#[derive(Debug, Clone)]
enum SimEvent {
    Arrive(usize),
    Rtt(usize, f64),
    Send(usize, ClientMessage),
    Tick,
}

fn subject(i: usize) -> SubjectId {
    SubjectId::parse(format!("S{i}")).expect("a valid subject id")
}

fn index_of(s: &SubjectId) -> Option<usize> {
    s.as_str().strip_prefix('S')?.parse().ok()
}

fn scene(cfg: &SimConfig) -> SceneConfig {
    let mut s = SceneConfig::with_defaults("sim", cfg.group_size, cfg.matchmaker);
    s.max_server_rtt_ms = Some(cfg.max_server_rtt_ms);
    s.max_p2p_rtt_ms = Some(cfg.max_p2p_rtt_ms);
    s.waitroom_timeout_ms = cfg.waitroom_timeout_ms;
    s.probe_timeout_ms = cfg.probe_timeout_ms;
    s.hide_lobby_count = true;
    s
}

/// Runs one simulation.
pub fn run(cfg: &SimConfig) -> SimReport {
    let people = population(cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed);
    let t0 = Instant::now();
    let config = Config {
        scenes: vec![scene(cfg)],
        ice_servers: vec![],
        turn: None,
        server: Default::default(),
    };
    let clock = CoreClock {
        origin: t0,
        origin_unix_s: 1_700_000_000,
    };
    let mut core = Core::new(Arc::new(config), clock, Box::new(SeededIds::new(cfg.seed)));
    let mut queue: BTreeMap<(u64, u64), SimEvent> = BTreeMap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BTreeMap<(u64, u64), SimEvent>, at_us: u64, e: SimEvent| {
        seq += 1;
        queue.insert((at_us, seq), e);
    };
    for (i, p) in people.iter().enumerate() {
        push(&mut queue, p.arrive_us, SimEvent::Arrive(i));
    }
    let mut ticks: BTreeSet<u64> = BTreeSet::new();
    let mut probe_members: HashMap<ProbeSessionId, Vec<usize>> = HashMap::new();
    let mut report = SimReport {
        arrivals: people.len(),
        ..SimReport::default()
    };
    let mut waits_s = Vec::new();
    let mut pair_rtts = Vec::new();
    let mut out = Vec::new();
    while let Some(((now_us, _), event)) = queue.pop_first() {
        let now = t0 + Duration::from_micros(now_us);
        out.clear();
        match event {
            SimEvent::Arrive(i) => {
                let conn = ConnId::new(i as u64 + 1);
                core.handle(now, Event::Connected { conn }, &mut out);
                let hello = ClientMessage::Hello(Hello {
                    subject_id: subject(i),
                    scene_id: None,
                    resume_token: None,
                    link_signature: None,
                    recruiter: None,
                    browser: None,
                });
                core.handle(now, Event::Message { conn, msg: hello }, &mut out);
                let rtt = people[i].server_rtt_ms();
                for k in 1..=3u64 {
                    let at = now_us + k * (rtt * 1000.0) as u64;
                    push(&mut queue, at, SimEvent::Rtt(i, rtt));
                }
            }
            SimEvent::Rtt(i, rtt_ms) => {
                let conn = ConnId::new(i as u64 + 1);
                core.handle(now, Event::RttSample { conn, rtt_ms }, &mut out);
            }
            SimEvent::Send(i, msg) => {
                let conn = ConnId::new(i as u64 + 1);
                core.handle(now, Event::Message { conn, msg }, &mut out);
            }
            SimEvent::Tick => {
                ticks.remove(&now_us);
                core.handle(now, Event::Tick, &mut out);
            }
        }
        for action in out.drain(..) {
            match action {
                Action::Send { conn, msg } => {
                    let i = conn.get() as usize - 1;
                    match msg {
                        ServerMessage::ProbePrepare(p) => {
                            probe_members
                                .entry(p.probe_session_id.clone())
                                .or_default()
                                .push(i);
                            let ready = ClientMessage::ProbeReady(ProbeReady {
                                probe_session_id: p.probe_session_id,
                            });
                            push(&mut queue, now_us + 20_000, SimEvent::Send(i, ready));
                        }
                        ServerMessage::ProbeStart(s) => {
                            let Some(members) = probe_members.get(&s.probe_session_id) else {
                                continue;
                            };
                            let Some(&peer) = members.iter().find(|&&m| m != i) else {
                                continue;
                            };
                            let rtt = pair_rtt_ms(&people[i], &people[peer]);
                            let measured = rtt + half_normal(&mut rng, 3.0);
                            let second = if s.initiator { 0.0 } else { 0.5 * rtt };
                            let after_ms = 100.0 + 6.5 * rtt + second;
                            let result = ClientMessage::ProbeResult(ProbeResult {
                                probe_session_id: s.probe_session_id,
                                success: true,
                                rtt_ms: Some(measured),
                                samples_ms: vec![measured],
                                stats_rtt_ms: Some(measured),
                                connection: None,
                            });
                            let at = now_us + (after_ms * 1000.0) as u64;
                            push(&mut queue, at, SimEvent::Send(i, result));
                        }
                        _ => {}
                    }
                }
                Action::Record { event, .. } => match event {
                    ResearchEvent::GameCreated { players, .. } => {
                        report.games += 1;
                        let idx: Vec<usize> = players.iter().filter_map(index_of).collect();
                        for (k, &a) in idx.iter().enumerate() {
                            waits_s.push((now_us - people[a].arrive_us) as f64 / 1e6);
                            for &b in &idx[k + 1..] {
                                pair_rtts.push(pair_rtt_ms(&people[a], &people[b]));
                            }
                        }
                    }
                    ResearchEvent::WaitroomTimeout { .. } => report.timeouts += 1,
                    ResearchEvent::ProbeStarted { .. } => report.probes += 1,
                    ResearchEvent::MatchRejected { .. } => report.rejected += 1,
                    _ => {}
                },
                Action::Close { .. } => {}
            }
        }
        if let Some(next) = core.next_deadline() {
            let at_us = next.saturating_duration_since(t0).as_micros() as u64;
            let at_us = at_us.max(now_us);
            if ticks.first().is_none_or(|&first| at_us < first) && ticks.insert(at_us) {
                push(&mut queue, at_us, SimEvent::Tick);
            }
        }
    }
    waits_s.sort_by(f64::total_cmp);
    report.wait_median_s = nearest_rank(&waits_s, 0.5).unwrap_or(f64::NAN);
    report.wait_p95_s = nearest_rank(&waits_s, 0.95).unwrap_or(f64::NAN);
    report.pair_rtt_mean_ms = if pair_rtts.is_empty() {
        f64::NAN
    } else {
        pair_rtts.iter().sum::<f64>() / pair_rtts.len() as f64
    };
    report.pair_rtt_max_ms = pair_rtts.iter().copied().fold(f64::NAN, f64::max);
    report.pairs_over_threshold = pair_rtts
        .iter()
        .filter(|&&r| r > cfg.max_p2p_rtt_ms)
        .count();
    report
}
