//! `simulate`: `latency_fifo` + probe against `p2p_matrix` on the same simulated arrivals (the
//! population and its assumptions: `pairlab_tests::simulate`), one row per matchmaker and
//! arrival rate, as a Markdown table for BENCHMARKS.md.
//!
//! `cargo run --release -p pairlab-tests --bin simulate -- --rates 2,6,20,60 --minutes 60`

use clap::Parser;
use pairlab_server::config::MatchmakerKind;
use pairlab_tests::simulate::{run, SimConfig};

/// Compares matchmakers on a simulated population with known pair RTTs.
#[derive(Debug, Parser)]
struct Args {
    /// Arrival rates to run, participants per minute (Poisson), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,6,20,60")]
    rates: Vec<f64>,
    /// How long arrivals go on, minutes.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Participants per game.
    #[arg(long, default_value_t = 2)]
    group_size: u32,
    /// Share of participants with a bad peer-to-peer path.
    #[arg(long, default_value_t = 0.1)]
    bad_fraction: f64,
    /// The scenes' `max_p2p_rtt_ms`.
    #[arg(long, default_value_t = 150.0)]
    max_p2p_rtt_ms: f64,
    /// The scenes' `max_server_rtt_ms`.
    #[arg(long, default_value_t = 250.0)]
    max_server_rtt_ms: f64,
    /// The scenes' `waitroom_timeout_ms`.
    #[arg(long, default_value_t = 300_000)]
    waitroom_timeout_ms: u64,
    /// The seed of the population (the same for every matchmaker of a rate).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() {
    let args = Args::parse();
    println!(
        "| arrivals/min | matchmaker | arrived | games | timeouts | wait median s | wait p95 s | \
         pair RTT mean ms | pair RTT max ms | pairs > {} ms | probes/game | rejected |",
        args.max_p2p_rtt_ms
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &rate in &args.rates {
        for matchmaker in [MatchmakerKind::LatencyFifo, MatchmakerKind::P2pMatrix] {
            let r = run(&SimConfig {
                matchmaker,
                group_size: args.group_size,
                arrivals_per_min: rate,
                duration_s: args.minutes * 60.0,
                bad_fraction: args.bad_fraction,
                max_p2p_rtt_ms: args.max_p2p_rtt_ms,
                max_server_rtt_ms: args.max_server_rtt_ms,
                waitroom_timeout_ms: args.waitroom_timeout_ms,
                probe_timeout_ms: 10_000,
                seed: args.seed,
            });
            println!(
                "| {rate} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {:.2} | {} |",
                matchmaker.as_str(),
                r.arrivals,
                r.games,
                r.timeouts,
                r.wait_median_s,
                r.wait_p95_s,
                r.pair_rtt_mean_ms,
                r.pair_rtt_max_ms,
                r.pairs_over_threshold,
                r.probes_per_game(),
                r.rejected,
            );
        }
    }
}
