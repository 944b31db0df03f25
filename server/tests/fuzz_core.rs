//! Fuzzing the sans-IO core with proptest: adversarial event sequences (members and
//! strangers, probe and game messages out of order and repeated, floods of signals, drops and
//! resumes at every point, the clock at deadline boundaries), with the core's invariants
//! checked after every event. The sequences and the property are in
//! `properties/core_sequence.rs`, shared with the libFuzzer target in `fuzz/`; proptest draws
//! the bytes they are built from and shrinks a failing case to a short list of ops.
//!
//! Case counts are sized for CI (a few seconds); `PROPTEST_CASES=N` sets the count for a long
//! run, e.g. `PROPTEST_CASES=100000 cargo test --release -p pairlab-server --test fuzz_core`.

#[path = "properties/core_sequence.rs"]
mod properties;

use proptest::prelude::*;

proptest! {
    // CI's count; `PROPTEST_CASES` overrides it (proptest reads it over this config).
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// Up to about 250 ops per sequence.
    #[test]
    fn adversarial_sequences_keep_invariants(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        properties::check_sequence(&data).map_err(TestCaseError::fail)?;
    }
}

/// The bytes reach every kind of op, and a long sequence runs through.
#[test]
fn bytes_become_ops() {
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let ops = properties::ops(&data);
    assert!(ops.len() > 100, "{} ops", ops.len());
    properties::check_sequence(&data).unwrap();
}

/// The sequences reach deep into the core, not only its refusals: over a hundred of them,
/// probes are accepted and rejected, background probes measure pairs, games start, get every
/// kind of report and end, and participants drop, leave and time out.
#[test]
fn sequences_reach_probes_games_and_reports() {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut byte = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    let mut seen = std::collections::BTreeSet::new();
    for len in (0..100).map(|i| 200 + i * 18) {
        let data: Vec<u8> = (0..len).map(|_| byte()).collect();
        let log = properties::run(&properties::ops(&data)).unwrap();
        for action in log {
            if let pairlab_server::core::Action::Record { event, .. } = action {
                let value = serde_json::to_value(&event).unwrap();
                seen.insert(value["event"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    for event in [
        "probe_result",
        "match_rejected",
        "game_created",
        "p2p_connection_type",
        "p2p_quality",
        "p2p_ice_restart",
        "p2p_connection_failed",
        "episode_summary",
        "game_ended",
        "participant_dropped",
        "participant_left",
        "waitroom_timeout",
        "pair_measured",
    ] {
        assert!(seen.contains(event), "no {event} in {seen:?}");
    }
}
