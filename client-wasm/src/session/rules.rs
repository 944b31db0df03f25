//! The session's small decisions, pure and tested natively: reconnect timing, which redirects
//! the page follows, and the client-side checks of `record`
//! and `finish` (the same rules the server applies, so a mistake shows at once in the
//! researcher's console instead of as an `error` from the server).

use pairlab_shared::{Finish, Outcome, RecordEvent, RECORD_EVENT_MAX_LEN, RECORD_FIELDS_MAX_BYTES};

/// How many times an unexpectedly closed connection is retried (with the resume token)
/// before the session gives up.
pub const MAX_RECONNECTS: u32 = 2;

/// Wait before reconnect attempt `attempt` (1-based), ms: 500, then 1500, at most 4500.
pub fn reconnect_delay_ms(attempt: u32) -> u32 {
    500 + 1000 * attempt.saturating_sub(1).min(4)
}

/// Delay before following a redirect (`outcome`, `waitroom_timeout`), ms, so that the
/// message can be read first.
pub const REDIRECT_DELAY_MS: u32 = 3_000;

/// Whether the page may follow a redirect URL: absolute `http(s)` URLs and same-site paths
/// only (never `javascript:`, `data:` or a protocol-relative `//host`).
pub fn is_followable_redirect(url: &str) -> bool {
    let u = url.trim();
    let lower = u.to_ascii_lowercase();
    lower.starts_with("https://")
        || lower.starts_with("http://")
        || (u.starts_with('/') && !u.starts_with("//"))
}

/// What a researcher's call got wrong; the message is the `Error` thrown in JavaScript.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// An event or outcome name against the rule.
    #[error(
        "pairlab: {what} name {name:?} is not valid: use 1 to {RECORD_EVENT_MAX_LEN} characters from a-z 0-9 _ . -"
    )]
    BadName {
        /// `record` or `finish`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// `record` fields that are not a JSON object.
    #[error("pairlab: record fields must be a plain object (JSON-serialisable): {0}")]
    FieldsNotObject(String),
    /// `record` fields larger than the protocol allows.
    #[error(
        "pairlab: record fields are {0} bytes as JSON; at most {RECORD_FIELDS_MAX_BYTES} are allowed"
    )]
    FieldsTooLarge(usize),
    /// `finish` with an outcome only the server decides.
    #[error(
        "pairlab: the outcome {0:?} is decided by the server and cannot be claimed with finish"
    )]
    ServerDecided(String),
    /// `send` to something that is not a player index or `"all"`.
    #[error("pairlab: send(to, …) needs a player index (a whole number) or \"all\", not {0}")]
    BadRecipient(String),
    /// `send` with data that is neither a string nor bytes.
    #[error(
        "pairlab: send(…, data) needs a string, an ArrayBuffer or a typed array (e.g. Uint8Array)"
    )]
    BadData,
    /// A call that needs a game before `matched`.
    #[error("pairlab: there is no game yet (wait for the \"matched\" event)")]
    NoGame,
    /// A call that needs the server while the connection is down.
    #[error("pairlab: not connected to the server ({0})")]
    NotConnected(String),
    /// A `play` logic object without the methods `play` calls.
    #[error("pairlab: play(logic) needs an object with the method {0}()")]
    BadLogic(&'static str),
}

/// The `record` message for `session.record(event, fields)`; `fields_json` is the fields as
/// JSON text (`JSON.stringify`), `None` for no fields.
///
/// # Errors
/// [`ApiError::BadName`], [`ApiError::FieldsNotObject`], [`ApiError::FieldsTooLarge`]: the
/// rules of `RecordEvent` (shared/src/messages.rs).
pub fn record_event(event: &str, fields_json: Option<&str>) -> Result<RecordEvent, ApiError> {
    if !RecordEvent::valid_name(event) {
        return Err(ApiError::BadName {
            what: "record event",
            name: event.to_owned(),
        });
    }
    let fields = match fields_json {
        None => serde_json::Map::new(),
        Some(json) => match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(other) => return Err(ApiError::FieldsNotObject(other.to_string())),
            Err(e) => return Err(ApiError::FieldsNotObject(e.to_string())),
        },
    };
    // Measured as the message will carry them.
    let bytes = serde_json::to_string(&fields).map_or(usize::MAX, |j| j.len());
    if bytes > RECORD_FIELDS_MAX_BYTES {
        return Err(ApiError::FieldsTooLarge(bytes));
    }
    Ok(RecordEvent {
        event: event.to_owned(),
        fields,
    })
}

/// The `finish` message for `session.finish({ outcome })`.
///
/// # Errors
/// [`ApiError::BadName`] against the name rule; [`ApiError::ServerDecided`] for an outcome
/// only the server decides ([`Outcome::SERVER_DECIDED`]).
pub fn finish_message(outcome: &str) -> Result<Finish, ApiError> {
    if !RecordEvent::valid_name(outcome) {
        return Err(ApiError::BadName {
            what: "outcome",
            name: outcome.to_owned(),
        });
    }
    if Outcome::SERVER_DECIDED.contains(&outcome) {
        return Err(ApiError::ServerDecided(outcome.to_owned()));
    }
    Ok(Finish {
        outcome: outcome.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_grow() {
        assert_eq!(reconnect_delay_ms(1), 500);
        assert_eq!(reconnect_delay_ms(2), 1500);
        assert!(reconnect_delay_ms(100) <= 4500);
    }

    #[test]
    fn redirects() {
        assert!(is_followable_redirect(
            "https://app.prolific.com/submissions/complete?cc=X"
        ));
        assert!(is_followable_redirect("HTTP://example.org"));
        assert!(is_followable_redirect("/done"));
        assert!(!is_followable_redirect("//evil.example"));
        assert!(!is_followable_redirect("javascript:alert(1)"));
        assert!(!is_followable_redirect("data:text/html,x"));
        assert!(!is_followable_redirect(""));
    }

    #[test]
    fn record_follows_the_protocol_rules() {
        let r = record_event("trial.end", Some(r#"{"score":3}"#)).expect("valid");
        assert_eq!(r.event, "trial.end");
        assert_eq!(r.fields["score"], 3);
        assert!(record_event("x", None)
            .expect("no fields")
            .fields
            .is_empty());
        assert!(matches!(
            record_event("Trial", None),
            Err(ApiError::BadName { .. })
        ));
        assert!(matches!(
            record_event("", None),
            Err(ApiError::BadName { .. })
        ));
        assert!(matches!(
            record_event(&"a".repeat(RECORD_EVENT_MAX_LEN + 1), None),
            Err(ApiError::BadName { .. })
        ));
        assert!(record_event(&"a".repeat(RECORD_EVENT_MAX_LEN), None).is_ok());
        assert!(matches!(
            record_event("x", Some("[1,2]")),
            Err(ApiError::FieldsNotObject(_))
        ));
        let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(RECORD_FIELDS_MAX_BYTES));
        assert_eq!(
            record_event("x", Some(&big)),
            Err(ApiError::FieldsTooLarge(big.len()))
        );
        let fits = format!(r#"{{"s":"{}"}}"#, "x".repeat(RECORD_FIELDS_MAX_BYTES - 8));
        assert_eq!(fits.len(), RECORD_FIELDS_MAX_BYTES);
        assert!(record_event("x", Some(&fits)).is_ok());
    }

    #[test]
    fn finish_takes_only_outcomes_a_participant_may_claim() {
        assert_eq!(
            finish_message("completed").map(|f| f.outcome),
            Ok("completed".into())
        );
        assert_eq!(
            finish_message("bonus_round").map(|f| f.outcome),
            Ok("bonus_round".into())
        );
        assert!(matches!(
            finish_message("left"),
            Err(ApiError::ServerDecided(_))
        ));
        assert!(matches!(
            finish_message("Done!"),
            Err(ApiError::BadName { .. })
        ));
    }
}
