//! libFuzzer target: bytes as an adversarial event sequence through the sans-IO core, with its
//! invariants checked after every event; the sequences and the property are
//! `server/tests/properties/core_sequence.rs`'s.
#![no_main]

#[path = "../../server/tests/properties/core_sequence.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = properties::check_sequence(data) {
        panic!("{e}");
    }
});
