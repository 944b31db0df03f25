//! A short matchmaking simulation (`pairlab_tests::simulate`): on the same arrivals,
//! `p2p_matrix` forms its games with no rejected match and no pair above the threshold, while
//! `latency_fifo` + probe, which cannot see bad paths before probing, has rejections.

use pairlab_server::config::MatchmakerKind;
use pairlab_tests::simulate::{run, SimConfig, SimReport};

fn sim(matchmaker: MatchmakerKind) -> SimReport {
    run(&SimConfig {
        matchmaker,
        group_size: 2,
        arrivals_per_min: 20.0,
        duration_s: 600.0,
        bad_fraction: 0.2,
        max_p2p_rtt_ms: 150.0,
        max_server_rtt_ms: 250.0,
        waitroom_timeout_ms: 120_000,
        probe_timeout_ms: 10_000,
        seed: 3,
    })
}

#[test]
fn p2p_matrix_has_no_rejected_match_on_the_same_arrivals() {
    let fifo = sim(MatchmakerKind::LatencyFifo);
    let matrix = sim(MatchmakerKind::P2pMatrix);
    assert_eq!(fifo.arrivals, matrix.arrivals, "the same population");
    assert!(fifo.arrivals > 100, "{fifo:?}");
    assert!(matrix.games > 0, "{matrix:?}");
    assert_eq!(matrix.rejected, 0, "{matrix:?}");
    assert_eq!(matrix.pairs_over_threshold, 0, "{matrix:?}");
    assert!(
        fifo.rejected > 0,
        "bad paths are found only by the probe: {fifo:?}"
    );
    assert!(
        matrix.games * 2 + matrix.timeouts <= matrix.arrivals,
        "nobody counted twice: {matrix:?}"
    );
}
