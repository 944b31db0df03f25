//! The page's words and the small decisions behind them. Pure Rust: tested natively.

use pairlab_shared::{ErrorCode, ErrorMessage};

/// The page's states, written to `<body data-state="…">` (the DOM contract of the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    /// Opening the WebSocket, or connected and waiting for the first `waitroom`.
    Connecting,
    /// In the waitroom.
    Waitroom,
    /// In one or more probes.
    Probing,
    /// `game_start` arrived.
    Game,
    /// `waitroom_timeout` arrived.
    Timeout,
    /// A closing `error`, or the page cannot start.
    Error,
    /// The connection was lost and could not be resumed.
    Closed,
}

impl PageState {
    /// The `data-state` value.
    pub fn as_str(self) -> &'static str {
        match self {
            PageState::Connecting => "connecting",
            PageState::Waitroom => "waitroom",
            PageState::Probing => "probing",
            PageState::Game => "game",
            PageState::Timeout => "timeout",
            PageState::Error => "error",
            PageState::Closed => "closed",
        }
    }
}

/// URL parameters that may carry the participant's id, in order of preference: our own,
/// Prolific's, Amazon Mechanical Turk's.
pub const SUBJECT_ID_PARAMS: [&str; 3] = ["subject_id", "PROLIFIC_PID", "workerId"];

/// `sessionStorage` key of a page-made subject id.
pub const SUBJECT_ID_STORAGE_KEY: &str = "pairlab.subject_id";

/// `sessionStorage` key of the latest `resume_token` of `subject_id` in `scene_id` (the
/// server's first scene when the URL names none).
pub fn resume_token_key(scene_id: Option<&str>, subject_id: &str) -> String {
    format!(
        "pairlab.resume_token.{}.{subject_id}",
        scene_id.unwrap_or("_default")
    )
}

/// The first non-empty value among the [`SUBJECT_ID_PARAMS`], looked up with `get`.
pub fn subject_id_from_params(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    SUBJECT_ID_PARAMS
        .iter()
        .filter_map(|k| get(k))
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
}

/// A page-made subject id: `p-` and 12 lowercase hex digits from 48 random bits.
pub fn random_subject_id(random_bits: u64) -> String {
    format!("p-{:012x}", random_bits & 0xffff_ffff_ffff)
}

/// Time left as `m:ss`, rounded up to the whole second (so `0:00` shows only at the end).
pub fn format_countdown(remaining_ms: f64) -> String {
    let secs = if remaining_ms.is_finite() && remaining_ms > 0.0 {
        (remaining_ms / 1000.0).ceil() as u64
    } else {
        0
    };
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// Whether the page may follow a `redirect_url`: absolute `http(s)` URLs and same-site
/// paths only (never `javascript:` or `data:`).
pub fn is_followable_redirect(url: &str) -> bool {
    let u = url.trim();
    let lower = u.to_ascii_lowercase();
    lower.starts_with("https://")
        || lower.starts_with("http://")
        || (u.starts_with('/') && !u.starts_with("//"))
}

/// Status line in the waitroom.
pub fn waiting_status(group_size: u32) -> &'static str {
    if group_size <= 2 {
        "Waiting for a partner…"
    } else {
        "Waiting for other participants…"
    }
}

/// Status line during a probe.
pub fn probing_status(group_size: u32) -> &'static str {
    if group_size <= 2 {
        "Checking the connection to your partner…"
    } else {
        "Checking the connection to your partners…"
    }
}

/// The status line after an `error` that closes the connection: what it means for the
/// participant.
pub fn error_status(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadMessage | ErrorCode::UnknownType | ErrorCode::NotAMember => {
            "The server refused a message from this page."
        }
        ErrorCode::HelloRequired => "The server did not accept this page's greeting.",
        ErrorCode::InvalidSubjectId => "Your participant id is not valid.",
        ErrorCode::UnknownScene => "This study link names an experiment that does not exist.",
        ErrorCode::IdInUse => {
            "This participant id is already in use: the study is open in another tab or window, \
             or you have taken part already."
        }
        ErrorCode::AlreadyDone => "You have already taken part in this study.",
        ErrorCode::InvalidLink => {
            "This page needs your personal study link; please open the exact link you were given."
        }
        ErrorCode::RateLimited => "This page sent too many messages and was disconnected.",
        ErrorCode::EntryRefused => "This study cannot be taken part in from here.",
    }
}

/// The `#error` text of an `error` from the server: the server's sentence and the code;
/// for errors that leave the connection open, prefixed with what happened.
pub fn describe_error(e: &ErrorMessage) -> String {
    let detail = format!("{} ({})", e.message.trim(), e.code.as_str());
    if e.code.closes_connection() {
        detail
    } else {
        format!("The server refused a message from this page: {detail}")
    }
}

/// Status line and advice when the page gives up on the connection: `connected_before`
/// says whether the server was ever reached.
pub fn lost_text(connected_before: bool) -> (&'static str, &'static str) {
    if connected_before {
        (
            "The connection to the server was lost.",
            "The connection to the study server was lost. Please check your internet \
             connection and reload this page.",
        )
    } else {
        (
            "The study server could not be reached.",
            "The study server could not be reached. Please check your internet connection \
             and reload this page in a minute.",
        )
    }
}

/// Delay before following a `redirect_url`, so the timeout message can be read.
pub const REDIRECT_DELAY_MS: u32 = 3_000;

/// How many times an unexpectedly closed connection is retried (with the resume token)
/// before the page gives up.
pub const MAX_RECONNECTS: u32 = 2;

/// Wait before reconnect attempt `attempt` (1-based), ms: 500, then 1500.
pub fn reconnect_delay_ms(attempt: u32) -> u32 {
    500 + 1000 * attempt.saturating_sub(1).min(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_format() {
        assert_eq!(format_countdown(0.0), "0:00");
        assert_eq!(format_countdown(-5.0), "0:00");
        assert_eq!(format_countdown(f64::NAN), "0:00");
        assert_eq!(format_countdown(1.0), "0:01");
        assert_eq!(format_countdown(59_001.0), "1:00");
        assert_eq!(format_countdown(120_000.0), "2:00");
        assert_eq!(format_countdown(605_500.0), "10:06");
    }

    #[test]
    fn subject_id_param_order() {
        let params = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            subject_id_from_params(params(&[("workerId", "w"), ("PROLIFIC_PID", "p")])),
            Some("p".into())
        );
        assert_eq!(
            subject_id_from_params(params(&[("subject_id", "s"), ("PROLIFIC_PID", "p")])),
            Some("s".into())
        );
        assert_eq!(
            subject_id_from_params(params(&[("subject_id", " "), ("workerId", "w")])),
            Some("w".into())
        );
        assert_eq!(subject_id_from_params(params(&[])), None);
    }

    #[test]
    fn random_ids_follow_the_subject_rule() {
        for bits in [0, 1, u64::MAX, 0xdead_beef_cafe] {
            let id = random_subject_id(bits);
            assert_eq!(id.len(), 14, "{id}");
            assert!(pairlab_shared::SubjectId::parse(id.clone()).is_ok(), "{id}");
        }
        assert_eq!(random_subject_id(0xdead_beef_cafe), "p-deadbeefcafe");
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
    fn errors_name_their_code() {
        let e = ErrorMessage {
            code: ErrorCode::AlreadyDone,
            message: " subject x finished scene y. ".into(),
        };
        assert_eq!(
            describe_error(&e),
            "subject x finished scene y. (already_done)"
        );
        assert!(error_status(e.code).contains("already taken part"));
        let e = ErrorMessage {
            code: ErrorCode::NotAMember,
            message: "no such probe.".into(),
        };
        assert_eq!(
            describe_error(&e),
            "The server refused a message from this page: no such probe. (not_a_member)"
        );
    }

    #[test]
    fn token_keys_are_per_scene_and_subject() {
        assert_ne!(
            resume_token_key(Some("a"), "s"),
            resume_token_key(Some("b"), "s")
        );
        assert_ne!(resume_token_key(None, "s"), resume_token_key(None, "t"));
        assert_eq!(
            resume_token_key(None, "s"),
            "pairlab.resume_token._default.s"
        );
    }

    #[test]
    fn reconnect_delays_grow() {
        assert_eq!(reconnect_delay_ms(1), 500);
        assert_eq!(reconnect_delay_ms(2), 1500);
        assert!(reconnect_delay_ms(100) <= 4500);
    }
}
