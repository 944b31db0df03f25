//! Small helpers shared by the browser-facing modules: the page clock, console logging, and
//! turning JavaScript exceptions into text.

use wasm_bindgen::{JsCast, JsValue};

/// Milliseconds from `performance.now()` (High Resolution Time, W3C): monotonic, sub-millisecond
/// (Chromium rounds to 0.1 ms, 5 µs when cross-origin isolated). Falls back to `Date.now()` when
/// there is no `window.performance` (e.g. in a worker without it).
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

/// A JavaScript exception or rejection as one line of text: `Error.message` when it is an
/// `Error`, the string itself when it is a string, else its `String(…)` conversion.
pub fn js_error_text(value: &JsValue) -> String {
    if let Some(err) = value.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    if let Some(s) = value.as_string() {
        return s;
    }
    String::from(js_sys::JsString::from(value.clone()))
}

/// A time or RTT in ms with one decimal, for console lines (`12.3`, `–` when not finite),
/// written with integer arithmetic: Rust's float formatting would add ~15 KB of code to the
/// wasm every participant downloads.
pub fn ms_text(ms: f64) -> String {
    if !ms.is_finite() {
        return "–".to_owned();
    }
    let tenths = (ms * 10.0).round() as i64;
    let sign = if tenths < 0 { "-" } else { "" };
    let tenths = tenths.unsigned_abs();
    format!("{sign}{}.{}", tenths / 10, tenths % 10)
}

/// Writes one line to the browser console (`console.log`), prefixed with `[pairlab]`.
pub fn log(line: &str) {
    web_sys::console::log_1(&JsValue::from_str(&format!("[pairlab] {line}")));
}

/// Writes one line to the browser console as a warning (`console.warn`).
pub fn warn(line: &str) {
    web_sys::console::warn_1(&JsValue::from_str(&format!("[pairlab] {line}")));
}

#[cfg(test)]
mod tests {
    use super::ms_text;

    #[test]
    fn ms_text_has_one_decimal() {
        assert_eq!(ms_text(12.34), "12.3");
        assert_eq!(ms_text(0.05), "0.1");
        assert_eq!(ms_text(0.0), "0.0");
        assert_eq!(ms_text(-2.26), "-2.3");
        assert_eq!(ms_text(1500.0), "1500.0");
        assert_eq!(ms_text(f64::NAN), "–");
    }
}
