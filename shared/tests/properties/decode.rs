//! The decoder's property, shared by the proptest suite (`tests/fuzz_decode.rs`) and the
//! libFuzzer target (`fuzz/fuzz_targets/decode.rs`), which include this file by path.
//!
//! For any text: [`ClientMessage::decode`] returns (it does not panic); an `Ok` message says
//! its own `type`, and re-encoded it decodes to the same message; an `Err` answers with one of
//! the codes a decode failure may have, and only an invalid `subject_id` closes the connection.
//!
//! "The same message" allows a fraction of a number to move in its last bits: `serde_json`
//! without its `float_roundtrip` feature parses a 17-digit number to a neighbour of the
//! nearest `f64` (`6.051792293875321e-289` decodes to `…322e-289`, which re-encoded decodes to
//! `…3225e-289`), a drift of about 1e-16 relative, far below a millisecond's measurement.

use pairlab_shared::{ClientMessage, ErrorCode};
use serde_json::Value;

/// Most relative difference between two fractions taken as the same number: a few ulps.
const FLOAT_TOLERANCE: f64 = 8.0 * f64::EPSILON;

/// Checks the decoder's property on one frame; `Err` says what broke.
pub fn check_frame(text: &str) -> Result<(), String> {
    match ClientMessage::decode(text) {
        Ok(msg) => {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| format!("decoded, yet not JSON ({e}): {text:?}"))?;
            if value.get("type").and_then(|t| t.as_str()) != Some(msg.type_name()) {
                return Err(format!("decoded as {}: {text:?}", msg.type_name()));
            }
            let again = msg.to_json();
            match ClientMessage::decode(&again) {
                Ok(back) if back == msg || same_json(&to_value(&back), &to_value(&msg)) => Ok(()),
                other => Err(format!(
                    "{text:?} decoded to {msg:?}, re-encoded as {again:?}, which decodes to {other:?}"
                )),
            }
        }
        Err(err) => {
            let code = err.code();
            if !matches!(
                code,
                ErrorCode::BadMessage | ErrorCode::UnknownType | ErrorCode::InvalidSubjectId
            ) {
                return Err(format!(
                    "{err:?} maps to {code}, not a decode failure's code"
                ));
            }
            if code.closes_connection() != (code == ErrorCode::InvalidSubjectId) {
                return Err(format!("{err:?}: {code} closes the connection wrongly"));
            }
            if code == ErrorCode::InvalidSubjectId && !err.is_hello() {
                return Err(format!("{err:?}: an invalid subject_id outside a hello"));
            }
            if err.to_string().is_empty() {
                return Err(format!("{err:?} has an empty message"));
            }
            Ok(())
        }
    }
}

fn to_value(msg: &ClientMessage) -> Value {
    serde_json::to_value(msg).unwrap_or(Value::Null)
}

/// `a == b`, except that two fractions within [`FLOAT_TOLERANCE`] of each other are the same.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= FLOAT_TOLERANCE * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}
