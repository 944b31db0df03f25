//! The outcomes of a participant's part in a scene (PROTOCOL.md, Outcomes): which names a
//! page may claim with `finish`, and the `outcome` message for a participant, built from the
//! scene's `[scene.outcomes.<name>]` table (its URL template filled for them, its code, its
//! message or the server's own sentence).
//!
//! Which outcome a participant gets, and when, is the router's part (`router/`); this module
//! only knows what each outcome says.

use pairlab_shared::{GameId, Outcome, PlayerIndex, RecruiterParams, SubjectId};

use crate::config::outcome::PlaceholderValues;
use crate::config::SceneConfig;

/// Who an outcome is for: what its URL's placeholders are filled with.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// The participant.
    pub subject_id: &'a SubjectId,
    /// Their `hello.recruiter`, if any.
    pub recruiter: Option<&'a RecruiterParams>,
    /// Their game and player index, when in one.
    pub game: Option<(&'a GameId, PlayerIndex)>,
}

/// Why `finish` named an outcome it may not claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FinishRefused {
    /// An outcome only the server decides.
    #[error("The outcome {0:?} is decided by the server; a page can finish with \"completed\" or one of the scene's own outcomes.")]
    ServerDecided(String),
    /// An outcome the scene does not define.
    #[error("This scene has no outcome {0:?}; define it as [scene.outcomes.{0}] or finish with \"completed\".")]
    Unknown(String),
}

/// Whether a page may `finish` with `name` in the scene `cfg`: `completed` always; one of the
/// scene's own outcomes; never one the server decides.
///
/// # Errors
/// [`FinishRefused`] otherwise.
pub fn check_finish(cfg: &SceneConfig, name: &str) -> Result<(), FinishRefused> {
    if name == Outcome::COMPLETED {
        Ok(())
    } else if Outcome::SERVER_DECIDED.contains(&name) {
        Err(FinishRefused::ServerDecided(name.to_owned()))
    } else if cfg.outcomes.contains_key(name) {
        Ok(())
    } else {
        Err(FinishRefused::Unknown(name.to_owned()))
    }
}

/// The server's sentence for an outcome the scene gives no `message` for.
fn default_message(name: &str) -> &'static str {
    match name {
        Outcome::PARTNER_LOST => "Your game has ended because your partner could not continue. Thank you for taking part.",
        Outcome::WAITROOM_TIMEOUT => "Sorry, we could not find a partner for you in time. Thank you for waiting.",
        Outcome::LEFT => "You have left the study. Thank you.",
        Outcome::ENTRY_REFUSED => "Sorry, your connection or browser does not meet this study's requirements, so you cannot take part.",
        _ => "Thank you for taking part.",
    }
}

/// The `outcome` message `name` for `to` in the scene `cfg`: its completion code, its URL
/// with the placeholders filled (each value percent-encoded), its message. An outcome the
/// scene does not configure has neither code nor URL, and the server's sentence.
pub fn outcome_message(cfg: &SceneConfig, name: &str, to: Recipient<'_>) -> Outcome {
    let entry = cfg.outcomes.get(name);
    let completion_code = entry.and_then(|e| e.code.clone());
    let redirect_url = match entry.and_then(|e| e.url.as_ref()) {
        Some(template) => Some(template.fill(&PlaceholderValues {
            subject_id: Some(to.subject_id.as_str()),
            game_id: to.game.map(|(g, _)| g.as_str()),
            player_index: to.game.map(|(_, i)| i),
            study_id: to.recruiter.and_then(|r| r.study_id.as_deref()),
            session_id: to.recruiter.and_then(|r| r.session_id.as_deref()),
            completion_code: completion_code.as_deref(),
        })),
        // The older key: the waitroom_timeout URL, as written.
        None if name == Outcome::WAITROOM_TIMEOUT => cfg.timeout_redirect_url.clone(),
        None => None,
    };
    let message = entry
        .and_then(|e| e.message.clone())
        .unwrap_or_else(|| match name {
            Outcome::WAITROOM_TIMEOUT => cfg.timeout_message.clone(),
            _ => default_message(name).to_owned(),
        });
    Outcome {
        outcome: name.to_owned(),
        completion_code,
        redirect_url,
        message,
    }
}
