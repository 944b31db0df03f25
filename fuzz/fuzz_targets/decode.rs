//! libFuzzer target: any bytes as a client's text frame (invalid UTF-8 replaced) through
//! `ClientMessage::decode`; the property is `shared/tests/properties/decode.rs`'s.
#![no_main]

#[path = "../../shared/tests/properties/decode.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = properties::check_frame(&String::from_utf8_lossy(data)) {
        panic!("{e}");
    }
});
