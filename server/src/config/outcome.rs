//! Outcome URL templates (`[scene.outcomes.<name>] url`): a URL with `{placeholder}`s that the
//! server fills for each participant when it sends them their `outcome`.
//!
//! The placeholders ([`PLACEHOLDERS`]) are the participant's `subject_id`, `game_id` and
//! `player_index` (empty outside a game), Prolific's `study_id` and `session_id` from
//! `hello.recruiter` (empty without them) and the outcome's `completion_code`. Each value is
//! percent-encoded as a URL component (`percent-encoding`'s set for a query or path
//! component: everything but `A-Z a-z 0-9 - . _ ~`), so a value cannot add parameters or
//! change the URL's host. A template is checked once, when the config is read: every
//! placeholder must be known, and the template filled with sample values must be an `http://`
//! or `https://` URL with a host, as the URL standard (the `url` crate) parses it.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The placeholders a template may use, in the order the docs list them.
pub const PLACEHOLDERS: [&str; 6] = [
    "subject_id",
    "game_id",
    "player_index",
    "study_id",
    "session_id",
    "completion_code",
];

/// What a URL component may keep unencoded (RFC 3986 §2.3, unreserved characters).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a `url` template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{name}` with a name not in [`PLACEHOLDERS`].
    #[error("unknown placeholder `{{{0}}}`; use {known}", known = PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", "))]
    UnknownPlaceholder(String),
    /// A `{` without its `}`, or a `}` without its `{`.
    #[error("has an unmatched `{{` or `}}`; placeholders are written {{subject_id}}")]
    Unbalanced,
    /// Filled with sample values, it is not an http(s) URL with a host.
    #[error("is not an http:// or https:// URL once its placeholders are filled ({0})")]
    NotHttpUrl(String),
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Text kept as written.
    Text(String),
    /// The index of a placeholder in [`PLACEHOLDERS`].
    Placeholder(usize),
}

/// A checked URL template (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    /// The template as written.
    source: String,
    parts: Vec<Part>,
}

/// The values a template is filled with; `None` fills in nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlaceholderValues<'a> {
    /// The participant's id.
    pub subject_id: Option<&'a str>,
    /// Their game's id.
    pub game_id: Option<&'a str>,
    /// Their player index in it.
    pub player_index: Option<u32>,
    /// Prolific's `STUDY_ID`.
    pub study_id: Option<&'a str>,
    /// Prolific's `SESSION_ID`.
    pub session_id: Option<&'a str>,
    /// The outcome's completion code.
    pub completion_code: Option<&'a str>,
}

impl PlaceholderValues<'_> {
    fn get(&self, index: usize) -> Option<String> {
        match PLACEHOLDERS.get(index).copied() {
            Some("subject_id") => self.subject_id.map(str::to_owned),
            Some("game_id") => self.game_id.map(str::to_owned),
            Some("player_index") => self.player_index.map(|i| i.to_string()),
            Some("study_id") => self.study_id.map(str::to_owned),
            Some("session_id") => self.session_id.map(str::to_owned),
            Some("completion_code") => self.completion_code.map(str::to_owned),
            _ => None,
        }
    }
}

impl UrlTemplate {
    /// Reads and checks a template.
    ///
    /// # Errors
    /// [`TemplateError`] for an unknown placeholder, an unmatched brace, or a template that is
    /// not an http(s) URL once filled with sample values.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Text(rest.to_owned()));
                    rest = "";
                }
                Some(i) if rest.as_bytes()[i] == b'}' => return Err(TemplateError::Unbalanced),
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_owned()));
                    }
                    let after = &rest[i + 1..];
                    let end = after.find('}').ok_or(TemplateError::Unbalanced)?;
                    let name = &after[..end];
                    if name.contains('{') {
                        return Err(TemplateError::Unbalanced);
                    }
                    let index = PLACEHOLDERS
                        .iter()
                        .position(|p| *p == name)
                        .ok_or_else(|| TemplateError::UnknownPlaceholder(name.to_owned()))?;
                    parts.push(Part::Placeholder(index));
                    rest = &after[end + 1..];
                }
            }
        }
        let template = UrlTemplate {
            source: source.to_owned(),
            parts,
        };
        let sample = PlaceholderValues {
            subject_id: Some("5f1a2b3c4d5e6f7a8b9c0d1e"),
            game_id: Some("3f2c1b8e-0000-4000-8000-000000000000"),
            player_index: Some(1),
            study_id: Some("60a1b2c3d4e5f6a7b8c9d0e1"),
            session_id: Some("61b2c3d4e5f6a7b8c9d0e1f2"),
            completion_code: Some("C1A2B3C4"),
        };
        let filled = template.fill(&sample);
        match url::Url::parse(&filled) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            Ok(u) => {
                return Err(TemplateError::NotHttpUrl(format!(
                    "scheme `{}`, filled: {filled}",
                    u.scheme()
                )))
            }
            Err(e) => return Err(TemplateError::NotHttpUrl(e.to_string())),
        }
        if filled.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TemplateError::NotHttpUrl("it contains whitespace".into()));
        }
        Ok(template)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The URL for these values, each percent-encoded; a missing value fills in nothing.
    pub fn fill(&self, values: &PlaceholderValues<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Placeholder(i) => {
                    if let Some(v) = values.get(*i) {
                        out.extend(utf8_percent_encode(&v, COMPONENT));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_percent_encodes_each_value() {
        let t = UrlTemplate::parse(
            "https://app.prolific.com/submissions/complete?cc={completion_code}&p={subject_id}&s={study_id}&x={session_id}&g={game_id}&i={player_index}",
        )
        .unwrap();
        let v = PlaceholderValues {
            subject_id: Some("a&b=c d/é"),
            completion_code: Some("C1"),
            player_index: Some(0),
            ..Default::default()
        };
        assert_eq!(
            t.fill(&v),
            "https://app.prolific.com/submissions/complete?cc=C1&p=a%26b%3Dc%20d%2F%C3%A9&s=&x=&g=&i=0"
        );
    }

    #[test]
    fn refuses_unknown_placeholders_braces_and_non_http() {
        assert_eq!(
            UrlTemplate::parse("https://x.org/?a={prolific_pid}"),
            Err(TemplateError::UnknownPlaceholder("prolific_pid".into()))
        );
        assert_eq!(
            UrlTemplate::parse("https://x.org/?a={subject_id"),
            Err(TemplateError::Unbalanced)
        );
        assert_eq!(
            UrlTemplate::parse("https://x.org/?a=}"),
            Err(TemplateError::Unbalanced)
        );
        for bad in [
            "ftp://x.org/",
            "{subject_id}",
            "javascript:alert(1)",
            "https://x .org/",
        ] {
            assert!(
                matches!(UrlTemplate::parse(bad), Err(TemplateError::NotHttpUrl(_))),
                "{bad}"
            );
        }
        assert!(UrlTemplate::parse("http://127.0.0.1:8080/done/{subject_id}").is_ok());
    }
}
