//! Identifiers that travel on the wire: participant ids, the aliases by which members of a
//! group name each other, and the ids the server mints for probe sessions and games.
//!
//! A `subject_id` travels only between a participant and the server (`hello`, `welcome`): it is
//! personal data (a Prolific or MTurk id) and goes to the research record, never to another
//! participant. Wherever a message names a peer it names them by [`PlayerIndex`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted `subject_id`, in characters (PROTOCOL.md, Transport).
pub const SUBJECT_ID_MAX_LEN: usize = 128;

/// A participant's id as the recruiting platform gives it (Prolific's `PROLIFIC_PID`, MTurk's
/// `workerId`, or one the page makes up).
///
/// Rule (PROTOCOL.md, Transport): 1 to 128 characters from `[A-Za-z0-9._:@-]`. The rule keeps ids
/// safe to use in file names, logs and CSV columns. It is never sent to another participant:
/// peers know each other by [`PlayerIndex`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectId(String);

/// Why a string is not a valid [`SubjectId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSubjectId {
    /// The string is empty.
    #[error("subject_id is empty; it needs 1 to 128 characters from A-Z a-z 0-9 . _ : @ -")]
    Empty,
    /// The string is longer than [`SUBJECT_ID_MAX_LEN`] characters.
    #[error("subject_id has {0} characters; at most 128 are allowed")]
    TooLong(usize),
    /// The string holds a character outside `[A-Za-z0-9._:@-]`.
    #[error("subject_id contains {0:?}; only A-Z a-z 0-9 . _ : @ - are allowed")]
    BadChar(char),
}

impl SubjectId {
    /// Checks `s` against the rule and wraps it.
    ///
    /// # Errors
    /// [`InvalidSubjectId`] naming what is wrong.
    pub fn parse(s: impl Into<String>) -> Result<Self, InvalidSubjectId> {
        let s = s.into();
        if s.is_empty() {
            return Err(InvalidSubjectId::Empty);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-')))
        {
            return Err(InvalidSubjectId::BadChar(c));
        }
        // Only ASCII is left, so bytes are characters.
        if s.len() > SUBJECT_ID_MAX_LEN {
            return Err(InvalidSubjectId::TooLong(s.len()));
        }
        Ok(Self(s))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of a participant link of the form `/<subject_id>` (`pathname`, percent-decoded):
    /// exactly one path segment that is a valid id and does not look like a file
    /// ([`looks_like_a_file`]). The server serves the page at such a path and the page reads
    /// the id from it; both ends apply this one rule.
    pub fn from_path(pathname: &str) -> Option<SubjectId> {
        let segment = pathname.strip_prefix('/')?;
        if segment.contains('/') || looks_like_a_file(segment) {
            return None;
        }
        SubjectId::parse(segment).ok()
    }
}

/// File extensions a browser or crawler asks a site for by itself, or that name a page or an
/// asset (`/favicon.ico`, `/robots.txt`, `/apple-touch-icon.png`, `/index.html`, …): a path
/// segment ending in one is a file, never a participant's id, so such a request gets `404`
/// instead of the participant page.
pub const FILE_EXTENSIONS: [&str; 14] = [
    "html",
    "htm",
    "ico",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "svg",
    "txt",
    "xml",
    "json",
    "js",
    "css",
    "webmanifest",
];

/// Whether a path segment ends in one of the [`FILE_EXTENSIONS`] (any case).
pub fn looks_like_a_file(segment: &str) -> bool {
    segment.rsplit_once('.').is_some_and(|(_, ext)| {
        FILE_EXTENSIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(ext))
    })
}

/// A member's alias within its group: its 0-based place in player order (the order in which the
/// group's members entered the waitroom). Every message that names a peer — in a probe and in a
/// game — names them by this number, so no participant learns another's `subject_id`.
///
/// One scheme for every message: a proposed group's members get their indices when the group is
/// proposed, keep them through its probes and, once accepted, the game's `player_index` is the
/// same number. It needs no minting and nothing to look up on either end, it is meaningless
/// outside its group, and a client cannot name anyone outside its own group with it.
pub type PlayerIndex = u32;

/// The initiator rule of a pair (PROTOCOL.md, Probe and Game connection): the member with the
/// smaller [`PlayerIndex`] creates the SDP offer; the other answers. Both ends apply it, the
/// server to order a probe's members (initiator first, and `probe_start.initiator`) and the
/// browser to decide who offers on a game connection, so it lives here once.
pub fn is_initiator(local: PlayerIndex, peer: PlayerIndex) -> bool {
    local < peer
}

impl TryFrom<String> for SubjectId {
    type Error = InvalidSubjectId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<SubjectId> for String {
    fn from(id: SubjectId) -> Self {
        id.0
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! minted_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// The server mints these as UUID v4 strings. Clients echo them back as any string, so
        /// this type accepts any string on the way in: an id the server never minted is simply
        /// not found, which the server answers with `not_a_member` (PROTOCOL.md, Errors).
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random UUID v4.
            #[cfg(feature = "mint")]
            pub fn new_v4() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }

            /// Wraps any string (tests, clients echoing an id).
            pub fn from_string(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

minted_id!(
    /// Identifies one probe: the temporary WebRTC connection between two participants that
    /// measures their peer-to-peer RTT before a game exists.
    ProbeSessionId
);
minted_id!(
    /// Identifies one game: an accepted group.
    GameId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_id_rule() {
        assert!(SubjectId::parse("5f1a-b.c_d:e@f").is_ok());
        assert_eq!(SubjectId::parse(""), Err(InvalidSubjectId::Empty));
        assert_eq!(SubjectId::parse("a b"), Err(InvalidSubjectId::BadChar(' ')));
        assert_eq!(SubjectId::parse("é"), Err(InvalidSubjectId::BadChar('é')));
        assert!(SubjectId::parse("x".repeat(128)).is_ok());
        assert_eq!(
            SubjectId::parse("x".repeat(129)),
            Err(InvalidSubjectId::TooLong(129))
        );
    }

    #[test]
    fn subject_id_deserialize_checks_rule() {
        assert!(serde_json::from_str::<SubjectId>(r#""ok""#).is_ok());
        assert!(serde_json::from_str::<SubjectId>(r#""not ok""#).is_err());
    }

    #[test]
    fn smaller_player_index_is_initiator() {
        assert!(is_initiator(0, 1));
        assert!(!is_initiator(1, 0));
        assert!(is_initiator(1, 2));
        assert!(!is_initiator(2, 2), "nobody is their own initiator");
    }
}
