//! Signed participant links: the rule that ties a `hello` to the link the researcher handed out.
//!
//! With `[server] link_secret` set, each participant's page URL carries, beside their
//! `subject_id`, `sig` = base64url (no padding, RFC 4648 §5) of HMAC-SHA256(`link_secret`,
//! `subject_id`) (RFC 2104). The page sends it as `hello.link_signature`; the core refuses a
//! `hello` without a valid one (`invalid_link`) before it looks the id up, so nobody without the
//! link can take an id, end it with `leave`, or learn whether it is in use. `pairlab link ID`
//! prints a link's query ([`LinkSigner::query`]); the core checks with [`LinkSigner::verify`],
//! which compares in constant time (`hmac`'s `verify_slice`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use pairlab_shared::{SubjectId, LINK_SIGNATURE_PARAM};
use sha2::Sha256;

/// Why a `hello`'s link signature is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The `hello` has no `link_signature` (the page was opened without `sig=` in its URL).
    #[error("This study needs the personal link you were given, and this page was opened without it. Please open the exact link from your invitation.")]
    Missing,
    /// The signature is not base64url, or is not the one of this `subject_id`.
    #[error("This link is not valid for this participant id. Please open the exact link from your invitation, without changing it.")]
    Mismatch,
}

/// Signs and checks participant links with the server's `link_secret`.
#[derive(Clone)]
pub struct LinkSigner {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.write_str("LinkSigner(..)")
    }
}

impl LinkSigner {
    /// A signer with the secret `link_secret` (any length; the config asks for at least 16
    /// characters).
    pub fn new(link_secret: &str) -> Self {
        // HMAC takes keys of any length (RFC 2104 §2), so this cannot fail.
        let mac = Hmac::<Sha256>::new_from_slice(link_secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        LinkSigner { mac }
    }

    fn mac_of(&self, subject_id: &SubjectId) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(subject_id.as_str().as_bytes());
        mac
    }

    /// The signature of `subject_id`: base64url without padding of its HMAC-SHA256, 43
    /// characters.
    pub fn sign(&self, subject_id: &SubjectId) -> String {
        URL_SAFE_NO_PAD.encode(self.mac_of(subject_id).finalize().into_bytes())
    }

    /// Checks a `hello`'s `link_signature` against `subject_id`, in constant time.
    ///
    /// # Errors
    /// [`LinkError::Missing`] without a signature, [`LinkError::Mismatch`] for any other.
    pub fn verify(&self, subject_id: &SubjectId, signature: Option<&str>) -> Result<(), LinkError> {
        let signature = signature.ok_or(LinkError::Missing)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| LinkError::Mismatch)?;
        self.mac_of(subject_id)
            .verify_slice(&bytes)
            .map_err(|_| LinkError::Mismatch)
    }

    /// The query of `subject_id`'s link, `subject_id=ID&sig=SIGNATURE` (both are URL-safe as
    /// they are: the id's characters and base64url's need no percent-encoding in a query).
    pub fn query(&self, subject_id: &SubjectId) -> String {
        format!(
            "subject_id={subject_id}&{LINK_SIGNATURE_PARAM}={}",
            self.sign(subject_id)
        )
    }

    /// The full link: `base` with [`LinkSigner::query`] appended (after `&` when `base` has a
    /// query already, else after `?`).
    pub fn link(&self, base: &str, subject_id: &SubjectId) -> String {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}{}", self.query(subject_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> SubjectId {
        SubjectId::parse(s).unwrap()
    }

    /// RFC 4231 test case 2 (key "Jefe", data "what do ya want for nothing?") pins the
    /// algorithm: HMAC-SHA256, base64url without padding.
    #[test]
    fn signature_is_hmac_sha256_base64url() {
        let expected = URL_SAFE_NO_PAD.encode(
            [
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
                0x64, 0xec, 0x38, 0x43,
            ]
            .as_slice(),
        );
        let signer = LinkSigner::new("Jefe");
        let mut mac = signer.mac.clone();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
            expected
        );
        assert_eq!(signer.sign(&sid("P1")).len(), 43);
    }

    #[test]
    fn verify_accepts_only_the_ids_own_signature() {
        let signer = LinkSigner::new("a secret of sixteen+");
        let sig = signer.sign(&sid("P1"));
        assert_eq!(signer.verify(&sid("P1"), Some(&sig)), Ok(()));
        assert_eq!(signer.verify(&sid("P1"), None), Err(LinkError::Missing));
        assert_eq!(
            signer.verify(&sid("P2"), Some(&sig)),
            Err(LinkError::Mismatch)
        );
        assert_eq!(
            signer.verify(&sid("P1"), Some("not base64!")),
            Err(LinkError::Mismatch)
        );
        assert_eq!(
            signer.verify(&sid("P1"), Some(&sig[..42])),
            Err(LinkError::Mismatch)
        );
        let other = LinkSigner::new("another secret....");
        assert_eq!(
            other.verify(&sid("P1"), Some(&sig)),
            Err(LinkError::Mismatch)
        );
    }

    #[test]
    fn links_carry_id_and_signature() {
        let signer = LinkSigner::new("a secret of sixteen+");
        let q = signer.query(&sid("P1"));
        assert_eq!(q, format!("subject_id=P1&sig={}", signer.sign(&sid("P1"))));
        assert_eq!(
            signer.link("https://x.org/", &sid("P1")),
            format!("https://x.org/?{q}")
        );
        assert_eq!(
            signer.link("https://x.org/?scene_id=s", &sid("P1")),
            format!("https://x.org/?scene_id=s&{q}")
        );
    }
}
