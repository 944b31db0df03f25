//! Micro-benchmarks of matchmaking (BENCHMARKS.md, section 3 "Micro-benchmarks"): the
//! waiting set's greedy search (`WaitingSet::find_group`) alone, one arrival through the whole
//! sans-IO [`Core`], and one arrival and one leave in a `fifo` scene where everyone waits, with
//! 10, 1,000 and 10,000 waiting.
//!
//! Run: `cargo bench -p pairlab-server --bench matchmaking` (numbers), or
//! `cargo test -p pairlab-server --benches` (criterion's test mode: every case once, with tiny
//! sizes, as a smoke test; see [`sizes`]).
//!
//! Every case first asserts that it is the case it claims to be (where the match is, or that
//! there is none), outside the timed loop, so a change in the matchmaker's rules cannot quietly
//! turn a worst case into a cheap one.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pairlab_server::config::{Config, MatchmakerKind, SceneConfig};
use pairlab_server::core::candidates::{Waiter, WaitingSet};
use pairlab_server::core::matchmaker::{
    Candidate, FifoMatchmaker, LatencyFifoMatchmaker, Matchmaker,
};
use pairlab_server::core::{Action, ConnId, Core, CoreClock, Event, Pid, SeededIds};
use pairlab_shared::{ClientMessage, Hello, SubjectId};

/// Waitroom sizes measured by `cargo bench`.
const BENCH_SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Waitroom sizes of the smoke run (`cargo test --benches`): tiny, so the smoke stays fast.
const SMOKE_SIZES: [usize; 2] = [10, 100];

/// Whether criterion runs in test mode (each bench once, unmeasured). Same rule as criterion's
/// own argument parsing (0.7, `Criterion::configure_from_args`): `cargo bench` passes `--bench`,
/// `cargo test --benches` does not; `--test` forces test mode.
fn smoke() -> bool {
    let args: Vec<String> = std::env::args().collect();
    !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test")
}

/// The waitroom sizes for this run.
fn sizes() -> &'static [usize] {
    if smoke() {
        &SMOKE_SIZES
    } else {
        &BENCH_SIZES
    }
}

/// `latency_fifo`'s pre-filter threshold in these benches, ms (sum of two server RTTs).
const MAX_SERVER_RTT_MS: f64 = 200.0;
/// A server RTT that passes with [`NEAR_MS`] (50 + 50 ≤ 200), ms.
const NEAR_MS: f64 = 50.0;
/// A server RTT that fails with anyone here (50 + 500 > 200), ms.
const FAR_MS: f64 = 500.0;

fn always(_: Pid, _: Pid) -> bool {
    true
}

/// `n` waiting, ids `1..=n` in arrival order (arrival positions `0..n`), every one with
/// `rtt_ms`.
fn waiting(n: usize, rtt_ms: f64) -> WaitingSet {
    let mut set = WaitingSet::new();
    for id in 1..=n as u64 {
        set.insert(
            id - 1,
            Waiter {
                pid: Pid::new(id),
                rtt_ms: Some(rtt_ms),
            },
        );
    }
    set
}

/// The ids of the group of two found, as numbers.
fn find(mm: &dyn Matchmaker, arriving: &Candidate, waiting: &WaitingSet) -> Option<Vec<u64>> {
    waiting
        .find_group(mm, arriving, None, 2, &always)
        .map(|group| group.into_iter().map(Pid::get).collect())
}

fn bench_find_match(c: &mut Criterion) {
    let fifo = FifoMatchmaker;
    let latency = LatencyFifoMatchmaker {
        max_server_rtt_ms: MAX_SERVER_RTT_MS,
    };
    let mut g = c.benchmark_group("find_group");
    for &n in sizes() {
        let arriving = Candidate {
            id: Pid::new(n as u64 + 1),
            rtt_ms: Some(NEAR_MS),
        };
        // Throughput in elements: the waiting candidates a plain scan would examine, 1 when
        // the match is at the front, `n` for a full scan.
        g.throughput(Throughput::Elements(1));

        // FIFO: the match is the first waiting one, whatever the waitroom's size.
        let all_near = waiting(n, NEAR_MS);
        assert_eq!(
            find(&fifo, &arriving, &all_near),
            Some(vec![n as u64 + 1, 1])
        );
        g.bench_with_input(BenchmarkId::new("fifo/front", n), &all_near, |b, w| {
            b.iter(|| find(&fifo, black_box(&arriving), black_box(w)))
        });

        // Latency FIFO, best case: the first waiting one passes the pre-filter.
        assert_eq!(
            find(&latency, &arriving, &all_near),
            Some(vec![n as u64 + 1, 1])
        );
        g.bench_with_input(
            BenchmarkId::new("latency_fifo/front", n),
            &all_near,
            |b, w| b.iter(|| find(&latency, black_box(&arriving), black_box(w))),
        );

        // Latency FIFO, worst case with a match: all but the last fail the pre-filter.
        g.throughput(Throughput::Elements(n as u64));
        let mut last_passes = waiting(n, FAR_MS);
        last_passes.update_rtt(n as u64 - 1, Some(NEAR_MS));
        assert_eq!(
            find(&latency, &arriving, &last_passes),
            Some(vec![n as u64 + 1, n as u64])
        );
        g.bench_with_input(
            BenchmarkId::new("latency_fifo/match_at_end", n),
            &last_passes,
            |b, w| b.iter(|| find(&latency, black_box(&arriving), black_box(w))),
        );

        // Latency FIFO, no match: everyone fails (a full scan for nothing before the index).
        let all_far = waiting(n, FAR_MS);
        assert_eq!(find(&latency, &arriving, &all_far), None);
        g.bench_with_input(
            BenchmarkId::new("latency_fifo/no_match", n),
            &all_far,
            |b, w| b.iter(|| find(&latency, black_box(&arriving), black_box(w))),
        );
    }
    g.finish();
}

// ---- the whole core ------------------------------------------------------------------------

/// A `latency_fifo` scene of pairs where nobody ever passes the pre-filter: every arrival scans
/// the whole waitroom and stays, so the waitroom keeps its size.
fn unmatchable_core() -> Core {
    let mut scene = SceneConfig::with_defaults("bench", 2, MatchmakerKind::LatencyFifo);
    scene.max_server_rtt_ms = Some(MAX_SERVER_RTT_MS);
    core_with(scene)
}

/// A core with the one `scene`, whose waitroom timeout is far beyond the bench's run (the
/// virtual clock never moves anyway).
fn core_with(mut scene: SceneConfig) -> Core {
    scene.waitroom_timeout_ms = 24 * 3_600_000;
    let clock = CoreClock {
        origin: Instant::now(),
        origin_unix_s: 0,
    };
    let config = Arc::new(Config {
        scenes: vec![scene],
        ice_servers: vec![],
        turn: None,
        server: Default::default(),
    });
    Core::new(config, clock, Box::new(SeededIds::new(1)))
}

/// An arrival as the shell delivers it: the socket opens, `hello`, then three server-RTT
/// samples of [`FAR_MS`] (the core's entry measurement), after which the core puts the
/// participant in the waitroom and runs the matchmaker.
fn arrival(n: u64) -> [Event; 5] {
    let conn = ConnId::new(n);
    let subject = SubjectId::parse(format!("bench-{n}")).expect("ids of this form are valid");
    let rtt = Event::RttSample {
        conn,
        rtt_ms: FAR_MS,
    };
    [
        Event::Connected { conn },
        Event::Message {
            conn,
            msg: ClientMessage::Hello(Hello {
                subject_id: subject,
                scene_id: None,
                resume_token: None,
                link_signature: None,
                recruiter: None,
                browser: None,
            }),
        },
        rtt.clone(),
        rtt.clone(),
        rtt,
    ]
}

/// `n` arrivals (connections `1..=n`), all of whom wait; returns the last connection number.
fn fill(core: &mut Core, now: Instant, n: usize) -> u64 {
    let mut out = Vec::new();
    for conn in 1..=n as u64 {
        for e in arrival(conn) {
            core.handle(now, e, &mut out);
        }
        out.clear();
    }
    assert_eq!(core.stats().waiting, n, "setup: {n} waiting");
    n as u64
}

fn bench_core_arrival(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_arrival");
    for &n in sizes() {
        let now = Instant::now();
        let mut core = unmatchable_core();
        let mut out: Vec<Action> = Vec::new();
        let mut next_conn = fill(&mut core, now, n);

        // One measured arrival = the five events above. The arriving participant then leaves
        // (`leave`, untimed) so every iteration sees exactly `n` waiting; criterion's
        // `iter_batched` cannot leave the clean-up out of the timing, hence `iter_custom`.
        // Throughput in elements: the `n` waiting the arrival's matchmaker run scans.
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("latency_fifo/no_match", n), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    next_conn += 1;
                    let conn = ConnId::new(next_conn);
                    let events = arrival(next_conn);
                    let start = Instant::now();
                    for e in events {
                        core.handle(now, e, &mut out);
                    }
                    timed += start.elapsed();
                    black_box(&out);
                    let stats = core.stats();
                    assert!(
                        stats.waiting == n + 1 && stats.groups == 0,
                        "the arrival must wait unmatched: {stats:?}"
                    );
                    core.handle(
                        now,
                        Event::Message {
                            conn,
                            msg: ClientMessage::Leave,
                        },
                        &mut out,
                    );
                    out.clear();
                }
                timed
            })
        });
        assert_eq!(core.stats().waiting, n, "every measured arrival left");
    }
    g.finish();
}

/// A `fifo` scene whose groups (`n + 10`) are larger than the crowd: everyone waits, and every
/// arrival and every leave runs the matchmaker over all `n` waiting (groups larger than two
/// make a leave retry matching).
fn everyone_waits_core(n: usize) -> Core {
    let group_size = u32::try_from(n + 10).expect("bench sizes fit in u32");
    core_with(SceneConfig::with_defaults(
        "bench",
        group_size,
        MatchmakerKind::Fifo,
    ))
}

fn leave(conn: u64) -> Event {
    Event::Message {
        conn: ConnId::new(conn),
        msg: ClientMessage::Leave,
    }
}

/// One arrival and one leave in a `fifo` scene where everyone waits (see
/// [`everyone_waits_core`]), with `n` waiting.
fn bench_core_fifo_everyone_waits(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_fifo_everyone_waits");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for &n in sizes() {
        let now = Instant::now();
        let mut core = everyone_waits_core(n);
        let mut out: Vec<Action> = Vec::new();
        let mut next_conn = fill(&mut core, now, n);
        g.throughput(Throughput::Elements(1));
        // One arrival (the five events of `arrival`); it leaves again untimed.
        g.bench_function(BenchmarkId::new("arrival", n), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    next_conn += 1;
                    let events = arrival(next_conn);
                    let start = Instant::now();
                    for e in events {
                        core.handle(now, e, &mut out);
                    }
                    timed += start.elapsed();
                    black_box(&out);
                    assert_eq!(core.stats().waiting, n + 1, "the arrival waits");
                    core.handle(now, leave(next_conn), &mut out);
                    out.clear();
                }
                timed
            })
        });
        // One leave of the longest waiting (a `leave` message); a new arrival replaces them
        // untimed, so every iteration sees `n` waiting.
        // Those waiting, oldest first: connections 1..=n (each timed arrival above left again).
        let mut queue: std::collections::VecDeque<u64> = (1..=n as u64).collect();
        g.bench_function(BenchmarkId::new("leave", n), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let oldest = queue.pop_front().expect("n waiting");
                    let event = leave(oldest);
                    let start = Instant::now();
                    core.handle(now, event, &mut out);
                    timed += start.elapsed();
                    black_box(&out);
                    assert_eq!(core.stats().waiting, n - 1, "the oldest left");
                    next_conn += 1;
                    queue.push_back(next_conn);
                    for e in arrival(next_conn) {
                        core.handle(now, e, &mut out);
                    }
                    out.clear();
                }
                timed
            })
        });
        assert_eq!(
            core.stats().waiting,
            n,
            "every iteration ends with {n} waiting"
        );
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_find_match,
    bench_core_arrival,
    bench_core_fifo_everyone_waits
);
criterion_main!(benches);
