//! `compare`: the `relay` load against pairlab, `matchbox_server` and the python-socketio
//! relay in one run (see the crate doc).

use std::fs;

use super::backend::Backend;
use super::ladder::{Ladder, LadderState, GEN_LAG_RETRY_MS};
use super::{
    print_relay_header_labelled, print_relay_row, relay_pairs, RelayArgs, RelayOutcome, RelayRig,
    HELD_P99_MS,
};
use crate::system::{machine, raise_fd_limit};
use crate::Result;

/// `compare`: the same relay load against pairlab, `matchbox_server` and the python-socketio
/// relay in one run: all three servers and their clients are up together, and the rates run
/// round-robin over them (pairlab, matchbox, socketio, then the next rate of each), so a
/// disturbance of the machine hits all of them alike; a table per rate and the ratios of the
/// highest rates held.
pub(crate) async fn compare(args: RelayArgs, backends: &[Backend]) -> Result<()> {
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
                        ms(r.latency.p50_us),
                        ms(r.latency.p99_us),
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
