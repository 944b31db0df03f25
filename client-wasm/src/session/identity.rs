//! Who the participant is: the subject id and where the session's resume token is kept. The
//! rules are pure (tested natively); [`Identity::from_page`] applies them to the page.

use pairlab_shared::{RecruiterParams, SubjectId, LINK_SIGNATURE_PARAM};
use web_sys::{Storage, UrlSearchParams};

use crate::util::js_error_text;

/// URL parameters that may carry the participant's id, in order of preference: our own,
/// Prolific's, Amazon Mechanical Turk's.
pub const SUBJECT_ID_PARAMS: [&str; 3] = ["subject_id", "PROLIFIC_PID", "workerId"];

/// `sessionStorage` key of a page-made subject id.
pub const SUBJECT_ID_STORAGE_KEY: &str = "pairlab.subject_id";

/// `sessionStorage` key of the latest `resume_token` of `subject_id` in `scene_id` (the
/// server's first scene when none is named).
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

/// The id of a participant link of the form `/<subject_id>` (`pathname`, percent-decoded):
/// the rule of [`SubjectId::from_path`] (one segment, a valid id, not a file's name).
pub fn subject_id_from_path(pathname: &str) -> Option<String> {
    SubjectId::from_path(pathname).map(|id| id.as_str().to_owned())
}

/// A page-made subject id: `p-` and 12 lowercase hex digits from 48 random bits.
pub fn random_subject_id(random_bits: u64) -> String {
    format!("p-{:012x}", random_bits & 0xffff_ffff_ffff)
}

/// Who is connecting, and where the session token lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The participant's id.
    pub subject_id: SubjectId,
    /// The signed link's signature (`sig` in the URL), sent in `hello`.
    pub link_signature: Option<String>,
    /// The scene to join (`join({scene})`, else the URL's `scene_id`).
    pub scene_id: Option<String>,
    /// The recruiter's parameters in the URL.
    pub recruiter: Option<RecruiterParams>,
    /// The `sessionStorage` key of the resume token.
    pub token_key: String,
}

impl Identity {
    /// The identity of this page: the subject id is `subject_id` (`join({subjectId})`) when
    /// given, else the URL's (see [`SUBJECT_ID_PARAMS`]), else the path's
    /// ([`subject_id_from_path`]), else one kept in `storage`, else a new random one (kept).
    ///
    /// # Errors
    /// A sentence for the participant when the URL cannot be read or the id is not valid.
    pub fn from_page(
        subject_id: Option<String>,
        scene_id: Option<String>,
        storage: Option<&Storage>,
    ) -> Result<Self, String> {
        let location = web_sys::window().map(|w| w.location());
        let search = location
            .as_ref()
            .and_then(|l| l.search().ok())
            .unwrap_or_default();
        let params = UrlSearchParams::new_with_str(&search)
            .map_err(|e| format!("The page address could not be read: {}", js_error_text(&e)))?;
        let get = |k: &str| params.get(k);
        let scene_id = scene_id
            .or_else(|| get("scene_id"))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let from_path = || {
            let path = location.as_ref()?.pathname().ok()?;
            let decoded = js_sys::decode_uri_component(&path).ok()?;
            subject_id_from_path(&String::from(decoded))
        };
        let raw = subject_id
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| subject_id_from_params(get))
            .or_else(from_path)
            .unwrap_or_else(|| stored_or_new_subject_id(storage));
        let subject_id = SubjectId::parse(raw.clone())
            .map_err(|e| format!("The participant id in this link ({raw:?}) is not valid: {e}."))?;
        let token_key = resume_token_key(scene_id.as_deref(), subject_id.as_str());
        let link_signature = get(LINK_SIGNATURE_PARAM)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        Ok(Self {
            subject_id,
            link_signature,
            scene_id,
            recruiter: RecruiterParams::from_params(get),
            token_key,
        })
    }
}

fn stored_or_new_subject_id(storage: Option<&Storage>) -> String {
    let stored = storage
        .and_then(|s| s.get_item(SUBJECT_ID_STORAGE_KEY).ok().flatten())
        .filter(|s| SubjectId::parse(s.clone()).is_ok());
    if let Some(id) = stored {
        return id;
    }
    // 48 random bits; not a secret, only unique enough per study.
    let hi = (js_sys::Math::random() * f64::from(1u32 << 24)) as u64;
    let lo = (js_sys::Math::random() * f64::from(1u32 << 24)) as u64;
    let id = random_subject_id((hi << 24) | lo);
    if let Some(s) = storage {
        let _ = s.set_item(SUBJECT_ID_STORAGE_KEY, &id);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn subject_id_from_a_single_path_segment() {
        assert_eq!(subject_id_from_path("/abc-1"), Some("abc-1".into()));
        assert_eq!(subject_id_from_path("/a@b.c"), Some("a@b.c".into()));
        assert_eq!(subject_id_from_path("/"), None);
        assert_eq!(subject_id_from_path("/index.html"), None);
        assert_eq!(subject_id_from_path("/Study.HTML"), None);
        assert_eq!(subject_id_from_path("/favicon.ico"), None);
        assert_eq!(subject_id_from_path("/robots.txt"), None);
        assert_eq!(subject_id_from_path("/john.doe"), Some("john.doe".into()));
        assert_eq!(subject_id_from_path("/a/b"), None);
        assert_eq!(subject_id_from_path("/a b"), None, "not a valid id");
        assert_eq!(subject_id_from_path("abc"), None);
    }

    #[test]
    fn random_ids_follow_the_subject_rule() {
        for bits in [0, 1, u64::MAX, 0xdead_beef_cafe] {
            let id = random_subject_id(bits);
            assert_eq!(id.len(), 14, "{id}");
            assert!(SubjectId::parse(id.clone()).is_ok(), "{id}");
        }
        assert_eq!(random_subject_id(0xdead_beef_cafe), "p-deadbeefcafe");
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
}
