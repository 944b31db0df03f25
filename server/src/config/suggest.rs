//! "Did you mean …?" for a misspelt key: the known key closest to it by edit distance
//! ([`strsim::levenshtein`], the measure clap uses for misspelt subcommands), when it is
//! close enough to be a likely typo.

/// The known key closest to `name`, if it is within `max(len / 3, 2)` edits of that key's
/// length `len` (so short keys still get a suggestion for a two-letter slip). On a tie, the
/// key listed first wins.
pub(crate) fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::closest;

    const KNOWN: &[&str] = &["urls", "username", "credential", "max_p2p_rtt_ms"];

    #[test]
    fn a_typo_gets_the_nearest_key() {
        assert_eq!(closest("usernme", KNOWN), Some("username"));
        assert_eq!(closest("max_p2p_rtt", KNOWN), Some("max_p2p_rtt_ms"));
        assert_eq!(closest("url", KNOWN), Some("urls"));
    }

    #[test]
    fn far_names_get_none() {
        assert_eq!(closest("realm", KNOWN), None);
        assert_eq!(closest("zzzzzzz", KNOWN), None);
    }

    #[test]
    fn ties_go_to_the_first_listed() {
        assert_eq!(closest("ab", &["aa", "bb"]), Some("aa"));
    }
}
