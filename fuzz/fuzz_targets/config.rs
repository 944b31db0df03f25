//! libFuzzer target: any bytes as a scene file's text (invalid UTF-8 replaced) through
//! `Config::from_toml_str`; the property is `server/tests/properties/config.rs`'s.
#![no_main]

#[path = "../../server/tests/properties/config.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = properties::check_config_text(&String::from_utf8_lossy(data)) {
        panic!("{e}");
    }
});
