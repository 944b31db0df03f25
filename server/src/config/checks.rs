//! The config's rules on well-typed values: what a scene id, a threshold, a URL or a `[turn]`
//! table must look like, and the warnings `pairlab check` prints for a valid but suspicious
//! config. [`parse`](super::parse) reads each value and its position, calls the rule here, and
//! puts a [`RuleError`] at that position; the rules themselves know nothing of TOML.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use super::types::{Config, MatchmakerKind, MIN_LINK_SECRET_LEN, SCENE_ID_MAX_LEN};

/// A value of the right type that breaks one of the config's rules. `Display` is the message a
/// researcher reads (after `FILE:LINE:COL: `).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum RuleError {
    #[error(
        "scene id `{id}` {problem}; it names the research record's folder, so use 1 to \
         {SCENE_ID_MAX_LEN} characters from A-Z a-z 0-9 . _ -"
    )]
    SceneId { id: String, problem: SceneIdProblem },
    #[error("group_size must be at least 2 (participants per game), found {0}")]
    GroupSize(i64),
    #[error("unknown matchmaker `{0}`; use {names}", names = MatchmakerNames)]
    UnknownMatchmaker(String),
    #[error("{key} must be greater than 0 (milliseconds), found {found}")]
    NotPositiveMs { key: &'static str, found: f64 },
    #[error("{key} must be 0 or more (milliseconds), found {found}")]
    NegativeMs { key: &'static str, found: f64 },
    #[error("{key} must be {rule} (whole {unit}), found {found}", rule = AtLeast(*min), unit = unit_of(key))]
    WholeBelow {
        key: &'static str,
        min: u64,
        found: i64,
    },
    #[error(
        "matchmaker = \"latency_fifo\" needs max_server_rtt_ms: the most two participants' \
         server round-trip times may add up to, in milliseconds (e.g. max_server_rtt_ms = 200)"
    )]
    LatencyFifoNeedsMaxServerRtt,
    #[error(
        "matchmaker = \"p2p_matrix\" needs max_p2p_rtt_ms: the largest peer-to-peer \
         round-trip time a pair may have, in milliseconds (e.g. max_p2p_rtt_ms = 150)"
    )]
    MatrixNeedsMaxP2pRtt,
    #[error(
        "max_probe_connections ({connections}) must be at least probe_concurrency \
         ({concurrency}): each running probe holds a connection"
    )]
    ProbeConnectionsBelowConcurrency { connections: u64, concurrency: u64 },
    #[error(
        "timeout_redirect_url `{url}` {problem}; write a full http:// or https:// URL (e.g. \
         Prolific's completion link), or leave the key out"
    )]
    RedirectUrl {
        url: String,
        problem: HttpUrlProblem,
    },
    #[error("ICE server URL `{url}` {problem}")]
    IceUrl { url: String, problem: IceUrlProblem },
    #[error(
        "[turn] urls must be turn: or turns: URLs; `{0}` is not (put STUN servers in \
         [[ice_servers]])"
    )]
    TurnUrlIsStun(String),
    #[error(
        "this [[ice_servers]] entry has a turn: or turns: URL and needs `{0}` (TURN servers \
         require static credentials here)"
    )]
    IceServerNeeds(&'static str),
    #[error(
        "credential_ttl_s applies to static_auth_secret only; static credentials do not expire"
    )]
    TtlWithStaticCredentials,
    #[error("static_auth_secret is empty")]
    EmptySecret,
    #[error(
        "link_secret has {0} characters; use at least {MIN_LINK_SECRET_LEN} random ones (e.g. \
         the output of `openssl rand -base64 32`), or leave the key out for unsigned links"
    )]
    ShortLinkSecret(usize),
    #[error(
        "metrics_token has {0} characters; use at least {MIN_LINK_SECRET_LEN} random ones (e.g. \
         the output of `openssl rand -hex 16`), or leave the key out to turn /metrics off"
    )]
    ShortMetricsToken(usize),
    #[error(
        "monitor_token has {0} characters; use at least {MIN_LINK_SECRET_LEN} random ones (e.g. \
         the output of `openssl rand -hex 16`), or leave the key out to turn /monitor off"
    )]
    ShortMonitorToken(usize),
    #[error(
        "[turn] needs either `username` and `credential` (static credentials) or \
         `static_auth_secret` (coturn's --static-auth-secret; the server then mints \
         short-lived credentials per participant), not both"
    )]
    TurnAuthChoice,
    #[error(
        "duplicate scene id `{id}` (first defined on line {first_line}); scene ids must be unique"
    )]
    DuplicateSceneId { id: String, first_line: usize },
    #[error(
        "allowed_origins entry `{0}` is not an origin; write scheme://host or \
         scheme://host:port with http or https and nothing after it (e.g. \
         \"https://study.example.org\"), or \"*\" for any origin"
    )]
    Origin(String),
    #[error("{key} is too large: at most {max} ({found} given)", max = u32::MAX)]
    TooLarge { key: &'static str, found: u64 },
    #[error(
        "critical_rtt_ms ({critical}) must be greater than warning_rtt_ms ({warning}): the \
         quality is `warning` above the first and `critical` above the second"
    )]
    WarningNotBelowCritical { warning: u32, critical: u32 },
    #[error("episode_ms ({episode_ms}) must be at least tick_ms ({tick_ms}): an episode is whole frames")]
    EpisodeShorterThanTick { episode_ms: u32, tick_ms: u32 },
    #[error("[scene.game.settings] is {0} bytes as JSON; at most {max} (it goes to the page in every game_start)", max = super::parse::GAME_SETTINGS_MAX_BYTES)]
    SettingsTooLarge(usize),
    #[error(
        "this number is not finite (nan and inf have no JSON form); write a number or a string"
    )]
    SettingNotFinite,
    #[error(
        "outcome name `{0}` must be 1 to 64 characters from a-z 0-9 _ . - (e.g. \
         [scene.outcomes.completed], [scene.outcomes.screened_out])"
    )]
    OutcomeName(String),
    #[error("outcome url `{url}` {problem}")]
    OutcomeUrl {
        url: String,
        problem: super::outcome::TemplateError,
    },
    #[error("a completion code must be 1 to 128 characters without whitespace, found {0:?}")]
    CompletionCode(String),
    #[error(
        "timeout_redirect_url and [scene.outcomes.waitroom_timeout] both say where a timed-out \
         participant goes; keep one (timeout_redirect_url is the waitroom_timeout outcome's url)"
    )]
    TwoWaitroomTimeoutUrls,
    #[error("[site] dir is empty; give the folder of your page, relative to this file (e.g. \"my-study/\")")]
    EmptySiteDir,
    #[error(
        "trusted_proxies entry `{0}` is not an IP address; write one address per entry (e.g. \
         \"127.0.0.1\" or \"::1\")"
    )]
    ProxyAddress(String),
}

/// `"fifo", "latency_fifo" or "p2p_matrix"`: every matchmaker's name, from [`MatchmakerKind::ALL`].
struct MatchmakerNames;

impl fmt::Display for MatchmakerNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = MatchmakerKind::ALL.len() - 1;
        for (i, kind) in MatchmakerKind::ALL.iter().enumerate() {
            if i == last && i > 0 {
                f.write_str(" or ")?;
            } else if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{:?}", kind.as_str())?;
        }
        Ok(())
    }
}

/// A lower bound in words: `0 or more`, `greater than 0`, `at least N`.
struct AtLeast(u64);

impl fmt::Display for AtLeast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("0 or more"),
            1 => f.write_str("greater than 0"),
            n => write!(f, "at least {n}"),
        }
    }
}

/// The unit a key's name ends in: `_ms` milliseconds, `_s` seconds, `_bytes` bytes; a count
/// otherwise (`max_http_connections`).
fn unit_of(key: &str) -> &'static str {
    if key.ends_with("_ms") {
        "milliseconds"
    } else if key.ends_with("_s") {
        "seconds"
    } else if key.ends_with("_bytes") {
        "bytes"
    } else {
        "number"
    }
}

/// Why a scene id cannot be a folder name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SceneIdProblem {
    #[error("is empty")]
    Empty,
    #[error("cannot be `.` or `..`")]
    Dots,
    #[error("is longer than {SCENE_ID_MAX_LEN} characters")]
    TooLong,
    #[error("contains {0:?}")]
    Char(char),
}

/// A scene id names the research record's folder: 1 to [`SCENE_ID_MAX_LEN`] characters from
/// `A-Z a-z 0-9 . _ -`, and not `.` or `..`.
pub(crate) fn scene_id(id: &str) -> Result<(), RuleError> {
    let problem = if id.is_empty() {
        Some(SceneIdProblem::Empty)
    } else if id == "." || id == ".." {
        Some(SceneIdProblem::Dots)
    } else if id.chars().count() > SCENE_ID_MAX_LEN {
        Some(SceneIdProblem::TooLong)
    } else {
        id.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .map(SceneIdProblem::Char)
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(RuleError::SceneId {
            id: id.to_owned(),
            problem,
        }),
    }
}

/// `group_size`: at least 2 participants per game (and within `u32`).
pub(crate) fn group_size(n: i64) -> Result<u32, RuleError> {
    match u32::try_from(n) {
        Ok(size) if size >= 2 => Ok(size),
        _ => Err(RuleError::GroupSize(n)),
    }
}

/// `matchmaker`: one of [`MatchmakerKind::ALL`] by name.
pub(crate) fn matchmaker(name: &str) -> Result<MatchmakerKind, RuleError> {
    MatchmakerKind::from_name(name).ok_or_else(|| RuleError::UnknownMatchmaker(name.to_owned()))
}

/// A threshold in milliseconds that must be greater than 0 (`max_server_rtt_ms`).
pub(crate) fn positive_ms(key: &'static str, x: f64) -> Result<f64, RuleError> {
    if x > 0.0 {
        Ok(x)
    } else {
        Err(RuleError::NotPositiveMs { key, found: x })
    }
}

/// A threshold in milliseconds that must be 0 or more (`max_p2p_rtt_ms`).
pub(crate) fn non_negative_ms(key: &'static str, x: f64) -> Result<f64, RuleError> {
    if x >= 0.0 {
        Ok(x)
    } else {
        Err(RuleError::NegativeMs { key, found: x })
    }
}

/// A whole number of the key's unit (`_ms` or `_s`), at least `min`.
pub(crate) fn whole_at_least(key: &'static str, n: i64, min: u64) -> Result<u64, RuleError> {
    match u64::try_from(n) {
        Ok(v) if v >= min => Ok(v),
        _ => Err(RuleError::WholeBelow { key, min, found: n }),
    }
}

/// A whole number that must fit the `u32` of its wire field (`[scene.game]`).
pub(crate) fn fits_u32(key: &'static str, n: u64) -> Result<u32, RuleError> {
    u32::try_from(n).map_err(|_| RuleError::TooLarge { key, found: n })
}

/// `[scene.game.settings]` as JSON must be at most `max` bytes.
pub(crate) fn settings_size(bytes: usize, max: usize) -> Result<(), RuleError> {
    if bytes <= max {
        Ok(())
    } else {
        Err(RuleError::SettingsTooLarge(bytes))
    }
}

/// A completion code: 1 to 128 characters, no whitespace or control characters (it is
/// typed or pasted by participants and filled into URLs).
pub(crate) fn completion_code(code: &str) -> Result<(), RuleError> {
    let ok = !code.is_empty()
        && code.chars().count() <= 128
        && !code.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(RuleError::CompletionCode(code.to_owned()))
    }
}

/// `[site] dir`: not empty (whether it exists is checked when the server starts).
pub(crate) fn site_dir(dir: &str) -> Result<(), RuleError> {
    if dir.trim().is_empty() {
        Err(RuleError::EmptySiteDir)
    } else {
        Ok(())
    }
}

/// `matchmaker = "latency_fifo"` filters on `max_server_rtt_ms`, so it needs one.
pub(crate) fn latency_fifo_threshold(
    matchmaker: MatchmakerKind,
    has_max_server_rtt: bool,
) -> Result<(), RuleError> {
    if matchmaker == MatchmakerKind::LatencyFifo && !has_max_server_rtt {
        Err(RuleError::LatencyFifoNeedsMaxServerRtt)
    } else {
        Ok(())
    }
}

/// `matchmaker = "p2p_matrix"` groups on measured pair RTTs, judged against `max_p2p_rtt_ms`.
pub(crate) fn matrix_threshold(
    matchmaker: MatchmakerKind,
    has_max_p2p_rtt: bool,
) -> Result<(), RuleError> {
    if matchmaker == MatchmakerKind::P2pMatrix && !has_max_p2p_rtt {
        Err(RuleError::MatrixNeedsMaxP2pRtt)
    } else {
        Ok(())
    }
}

/// `max_probe_connections ≥ probe_concurrency`: a running probe holds a connection.
pub(crate) fn probe_connections(connections: u64, concurrency: u64) -> Result<(), RuleError> {
    if connections < concurrency {
        Err(RuleError::ProbeConnectionsBelowConcurrency {
            connections,
            concurrency,
        })
    } else {
        Ok(())
    }
}

/// An `allowed_origins` entry: `"*"`, or an origin as browsers serialise it in the `Origin`
/// header (RFC 6454 §6.1): `http://` or `https://`, a host, an optional `:port`, nothing
/// after. Returned lower-cased (browsers send scheme and host in lower case).
pub(crate) fn origin(entry: &str) -> Result<String, RuleError> {
    let bad = || RuleError::Origin(entry.to_owned());
    if entry == "*" {
        return Ok(entry.to_owned());
    }
    let lower = entry.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (rest, None),
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if host_ok && port_ok {
        Ok(lower)
    } else {
        Err(bad())
    }
}

/// A `trusted_proxies` entry: one IP address (v4 or v6).
pub(crate) fn proxy_address(entry: &str) -> Result<std::net::IpAddr, RuleError> {
    entry
        .parse()
        .map_err(|_| RuleError::ProxyAddress(entry.to_owned()))
}

/// Why a `timeout_redirect_url` is not a URL a browser can be sent to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HttpUrlProblem {
    #[error("does not start with http:// or https://")]
    NotHttp,
    #[error("has no host")]
    NoHost,
    #[error("contains whitespace")]
    Whitespace,
}

/// `timeout_redirect_url`: `http://` or `https://` (any case), a non-empty host before the
/// first `/`, `?` or `#`, and no whitespace or control characters.
///
/// The rule is on the text as written, not the URL standard's parse (the `url` crate): the
/// standard repairs `https:///x` and `http:/x` into URLs with a host, which this rule refuses,
/// and refuses ports above 65535, which this rule lets through.
pub(crate) fn redirect_url(url: &str) -> Result<(), RuleError> {
    let problem = |problem| {
        Err(RuleError::RedirectUrl {
            url: url.to_owned(),
            problem,
        })
    };
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return problem(HttpUrlProblem::NotHttp);
    };
    if rest.split(['/', '?', '#']).next().is_none_or(str::is_empty) {
        return problem(HttpUrlProblem::NoHost);
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return problem(HttpUrlProblem::Whitespace);
    }
    Ok(())
}

/// The schemes of `RTCIceServer.urls` (RFC 7064 STUN, RFC 7065 TURN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IceScheme {
    /// `stun:`: address discovery only, no credentials.
    Stun,
    /// `turn:` or `turns:`: a relay, which needs credentials.
    Turn,
}

/// Why a string is not a STUN/TURN URL browsers accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IceUrlProblem {
    #[error("must start with stun:, turn: or turns: (e.g. stun:stun.example.org:3478)")]
    Scheme,
    #[error("uses stuns:, which browsers do not support; use stun:, turn: or turns:")]
    Stuns,
    #[error("must not have `//` after the scheme (write turn:host:port)")]
    Authority,
    #[error("has no host after the scheme")]
    NoHost,
    #[error("contains whitespace")]
    Whitespace,
}

/// A STUN/TURN URL as `RTCIceServer.urls` takes it: RFC 7064 `stun:host[:port]`, RFC 7065
/// `turn[s]:host[:port][?transport=udp|tcp]`, host a name, an IPv4 address or `[IPv6]`.
/// The scheme is matched in any case; `stuns:` is refused (no browser supports it).
///
/// These URIs are opaque (no `//` authority), and the rule is on the text as written: the URL
/// standard's parser (the `url` crate, and browsers) would trim surrounding spaces, drop tabs
/// and newlines and read `#…` as a fragment; see the tests for the cases where the two differ.
pub(crate) fn ice_url(url: &str) -> Result<IceScheme, RuleError> {
    ice_url_problem(url).map_err(|problem| RuleError::IceUrl {
        url: url.to_owned(),
        problem,
    })
}

fn ice_url_problem(url: &str) -> Result<IceScheme, IceUrlProblem> {
    // RFC 3986 §3.1: the scheme is everything before the first ':'.
    let (scheme, rest) = url.split_once(':').ok_or(IceUrlProblem::Scheme)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "stun" => IceScheme::Stun,
        "turn" | "turns" => IceScheme::Turn,
        "stuns" => return Err(IceUrlProblem::Stuns),
        _ => return Err(IceUrlProblem::Scheme),
    };
    if rest.starts_with("//") {
        return Err(IceUrlProblem::Authority);
    }
    let host = match rest.strip_prefix('[') {
        // An IPv6 literal, `[::1]:3478`: the host is what stands before `]`.
        Some(literal) => literal.split(']').next().unwrap_or(""),
        None => rest.split(['?', ':']).next().unwrap_or(""),
    };
    if host.is_empty() {
        return Err(IceUrlProblem::NoHost);
    }
    if url.chars().any(char::is_whitespace) {
        return Err(IceUrlProblem::Whitespace);
    }
    Ok(scheme)
}

/// Which credentials a `[turn]` table has, by key presence and value.
pub(crate) enum TurnAuthKeys<'a> {
    /// `username` and `credential`, no `static_auth_secret`.
    Static,
    /// `static_auth_secret` alone, non-empty.
    Secret(&'a str),
}

/// `[turn]` takes either `username` + `credential` or a non-empty `static_auth_secret`, and
/// `credential_ttl_s` only with the secret (static credentials do not expire).
pub(crate) fn turn_auth<'a>(
    username: bool,
    credential: bool,
    secret: Option<&'a str>,
    has_ttl: bool,
) -> Result<TurnAuthKeys<'a>, RuleError> {
    match (username, credential, secret) {
        (true, true, None) if has_ttl => Err(RuleError::TtlWithStaticCredentials),
        (true, true, None) => Ok(TurnAuthKeys::Static),
        (false, false, Some("")) => Err(RuleError::EmptySecret),
        (false, false, Some(secret)) => Ok(TurnAuthKeys::Secret(secret)),
        _ => Err(RuleError::TurnAuthChoice),
    }
}

/// `[server] link_secret` is at least [`MIN_LINK_SECRET_LEN`] characters.
pub(crate) fn link_secret(secret: &str) -> Result<(), RuleError> {
    let len = secret.chars().count();
    if len < MIN_LINK_SECRET_LEN {
        return Err(RuleError::ShortLinkSecret(len));
    }
    Ok(())
}

/// `[server] metrics_token` is at least [`MIN_LINK_SECRET_LEN`] characters, as hard to guess
/// as a link secret.
pub(crate) fn metrics_token(token: &str) -> Result<(), RuleError> {
    let len = token.chars().count();
    if len < MIN_LINK_SECRET_LEN {
        return Err(RuleError::ShortMetricsToken(len));
    }
    Ok(())
}

/// `[server] monitor_token` is at least [`MIN_LINK_SECRET_LEN`] characters, like
/// [`metrics_token`].
pub(crate) fn monitor_token(token: &str) -> Result<(), RuleError> {
    let len = token.chars().count();
    if len < MIN_LINK_SECRET_LEN {
        return Err(RuleError::ShortMonitorToken(len));
    }
    Ok(())
}

/// Scene ids must be unique: each `(id, span)` after the first with the same id, as a
/// [`RuleError::DuplicateSceneId`] naming the first one's line (`line_of` a span).
pub(crate) fn duplicate_ids(
    ids: &[(&str, Range<usize>)],
    line_of: impl Fn(&Range<usize>) -> usize,
) -> Vec<(Range<usize>, RuleError)> {
    let mut first: HashMap<&str, &Range<usize>> = HashMap::new();
    let mut duplicates = Vec::new();
    for (id, span) in ids {
        match first.get(id) {
            Some(first_span) => duplicates.push((
                span.clone(),
                RuleError::DuplicateSceneId {
                    id: (*id).to_owned(),
                    first_line: line_of(first_span),
                },
            )),
            None => {
                first.insert(id, span);
            }
        }
    }
    duplicates
}

/// Something in a valid config that is probably not what the researcher meant; `pairlab
/// check` prints it under the scene or server it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A scene forces its games through a TURN relay, but there is no `[turn]` and no
    /// `turn:`/`turns:` URL in `[[ice_servers]]`.
    ForceRelayWithoutTurn {
        /// The scene's id.
        scene_id: String,
    },
    /// A scene is in test mode (`[scene.game] url_overrides = true`): participants can change
    /// the game's settings by editing their link.
    UrlOverrides {
        /// The scene's id.
        scene_id: String,
    },
}

impl ConfigWarning {
    /// The id of the scene the warning is about.
    pub fn scene_id(&self) -> &str {
        match self {
            ConfigWarning::ForceRelayWithoutTurn { scene_id }
            | ConfigWarning::UrlOverrides { scene_id } => scene_id,
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::ForceRelayWithoutTurn { scene_id } => write!(
                f,
                "scene {scene_id:?} has force_relay = true but there is no TURN server ([turn], \
                 or a turn: URL in [[ice_servers]]): its games cannot connect"
            ),
            ConfigWarning::UrlOverrides { scene_id } => write!(
                f,
                "scene {scene_id:?} has [scene.game] url_overrides = true (test mode): \
                 participants can change the game's settings through their link; set it to \
                 false for a study"
            ),
        }
    }
}

impl Config {
    /// What is valid but probably wrong in this config, scene by scene in file order.
    /// `pairlab check` prints them under their scene and `pairlab serve` logs them at start.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let has_relay = self.has_turn_relay();
        let mut warnings = Vec::new();
        for s in &self.scenes {
            if s.force_relay && !has_relay {
                warnings.push(ConfigWarning::ForceRelayWithoutTurn {
                    scene_id: s.id.clone(),
                });
            }
            if s.game.url_overrides {
                warnings.push(ConfigWarning::UrlOverrides {
                    scene_id: s.id.clone(),
                });
            }
        }
        warnings
    }

    /// Whether browsers are handed a TURN relay: a `[turn]` table, or an `[[ice_servers]]`
    /// entry with a `turn:`/`turns:` URL (such an entry always has `username` and
    /// `credential`, a rule of [`parse`](super::parse)).
    pub(super) fn has_turn_relay(&self) -> bool {
        self.turn.is_some()
            || self.ice_servers.iter().any(|ice| {
                ice.username.is_some()
                    && ice.credential.is_some()
                    && ice
                        .urls
                        .iter()
                        .any(|url| matches!(ice_url(url), Ok(IceScheme::Turn)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::super::types::MIN_CREDENTIAL_TTL_S;
    use super::*;

    /// Origins as browsers serialise them pass (lower-cased); anything with a path, another
    /// scheme, no host or a bad port is refused.
    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for (entry, want) in [
            ("*", "*"),
            ("https://Study.Example.org", "https://study.example.org"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[::1]", "http://[::1]"),
        ] {
            assert_eq!(origin(entry).as_deref(), Ok(want), "{entry}");
        }
        for bad in [
            "study.example.org",
            "ftp://x.org",
            "https://",
            "https://x.org/",
            "https://x.org/page",
            "https://x.org:0",
            "https://x.org:99999",
            "https://x.org?q",
            "null",
        ] {
            assert_eq!(origin(bad), Err(RuleError::Origin(bad.to_owned())), "{bad}");
        }
        assert!(proxy_address("10.0.0.1").is_ok());
        assert!(proxy_address("::1").is_ok());
        assert!(proxy_address("10.0.0.0/8").is_err());
    }

    /// Every ICE URL case with its verdict, as the rule decided it before `url` was
    /// considered; `url_reads_it_as` is how the URL standard (the `url` crate, as browsers)
    /// reads the same text: `Some((scheme, opaque path))`, or `None` when it fails.
    #[allow(clippy::type_complexity)]
    const ICE_CASES: &[(&str, Result<IceScheme, IceUrlProblem>, Option<(&str, &str)>)] = {
        use IceScheme::*;
        use IceUrlProblem::*;
        &[
            (
                "stun:stun.example.org:3478",
                Ok(Stun),
                Some(("stun", "stun.example.org:3478")),
            ),
            (
                "STUN:stun.example.org",
                Ok(Stun),
                Some(("stun", "stun.example.org")),
            ),
            ("stun:[::1]:3478", Ok(Stun), Some(("stun", "[::1]:3478"))),
            (
                "turn:127.0.0.1:3478?transport=udp",
                Ok(Turn),
                Some(("turn", "127.0.0.1:3478")),
            ),
            ("turn:host?transport=tcp", Ok(Turn), Some(("turn", "host"))),
            (
                "turns:turn.example.org:5349",
                Ok(Turn),
                Some(("turns", "turn.example.org:5349")),
            ),
            (
                "stun:stun.l.google.com:19302",
                Ok(Stun),
                Some(("stun", "stun.l.google.com:19302")),
            ),
            ("stun:é.example", Ok(Stun), Some(("stun", "%C3%A9.example"))),
            ("http://stun.example.org", Err(Scheme), Some(("http", "/"))),
            ("stun.example.org", Err(Scheme), None),
            (" stun:x", Err(Scheme), Some(("stun", "x"))),
            ("stuns:x", Err(Stuns), Some(("stuns", "x"))),
            ("turn://x", Err(Authority), Some(("turn", ""))),
            ("turn://[bad", Err(Authority), None),
            ("turn://h:99999", Err(Authority), None),
            ("turn:", Err(NoHost), Some(("turn", ""))),
            ("turn:?transport=udp", Err(NoHost), Some(("turn", ""))),
            ("turn::3478", Err(NoHost), Some(("turn", ":3478"))),
            ("turn:[]:3478", Err(NoHost), Some(("turn", "[]:3478"))),
            ("turn:a b", Err(Whitespace), Some(("turn", "a b"))),
            ("turn:x ", Err(Whitespace), Some(("turn", "x"))),
            ("turn:\tx", Err(Whitespace), Some(("turn", "x"))),
            ("turn: ", Err(Whitespace), Some(("turn", ""))),
            // Accepted as before, though the URL standard reads no host into them.
            ("turn:#x", Ok(Turn), Some(("turn", ""))),
            ("turn:/x", Ok(Turn), Some(("turn", "/x"))),
        ]
    };

    #[test]
    fn ice_url_cases() {
        for (url, expected, _) in ICE_CASES {
            assert_eq!(&ice_url_problem(url), expected, "{url:?}");
        }
    }

    /// Why the rule stays on the text as written rather than on `url`'s parse. For the URLs
    /// people write, the two agree: the same scheme, and an opaque path that starts with the
    /// host the rule saw. Elsewhere `url` repairs text the rule refuses (` stun:x`, `turn:x `,
    /// a tab), fails on text the rule refuses for another reason (`turn://[bad`), or reads
    /// no host where the rule accepted one (`turn:#x`, `turn:/x`): building the rule on `url`
    /// would change what is accepted.
    #[test]
    fn ice_urls_as_the_url_standard_reads_them() {
        for (text, _, reading) in ICE_CASES {
            let parsed = url::Url::parse(text)
                .ok()
                .map(|u| (u.scheme().to_owned(), u.path().to_owned()));
            let parsed = parsed.as_ref().map(|(s, p)| (s.as_str(), p.as_str()));
            assert_eq!(&parsed, reading, "{text:?}");
        }
    }

    #[test]
    fn redirect_url_cases() {
        use HttpUrlProblem::*;
        for (url, expected) in [
            ("https://x.org/a?b#c", Ok(())),
            ("HTTP://x.org", Ok(())),
            (
                "https://app.prolific.com/submissions/complete?cc=ABC",
                Ok(()),
            ),
            ("https://x.org:99999/", Ok(())),
            ("ftp://example.org", Err(NotHttp)),
            ("http:/x.org", Err(NotHttp)),
            ("https:///a", Err(NoHost)),
            ("https://?q", Err(NoHost)),
            ("https://x.org/a b", Err(Whitespace)),
            ("https://x.org/\u{1}", Err(Whitespace)),
        ] {
            let got = redirect_url(url).map_err(|e| match e {
                RuleError::RedirectUrl { problem, .. } => problem,
                other => panic!("{other}"),
            });
            assert_eq!(got, expected, "{url:?}");
        }
    }

    #[test]
    fn bounds_in_words_with_the_key_unit() {
        let e = whole_at_least("reconnect_grace_ms", -5, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "reconnect_grace_ms must be 0 or more (whole milliseconds), found -5"
        );
        let e = whole_at_least("probe_timeout_ms", 0, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "probe_timeout_ms must be greater than 0 (whole milliseconds), found 0"
        );
        let e = whole_at_least("credential_ttl_s", 5, MIN_CREDENTIAL_TTL_S).unwrap_err();
        assert_eq!(
            e.to_string(),
            "credential_ttl_s must be at least 60 (whole seconds), found 5"
        );
        assert_eq!(whole_at_least("credential_ttl_s", 60, 60), Ok(60));
    }

    #[test]
    fn matchmaker_names_come_from_the_kinds() {
        assert_eq!(
            matchmaker("fastest").unwrap_err().to_string(),
            "unknown matchmaker `fastest`; use \"fifo\", \"latency_fifo\" or \"p2p_matrix\""
        );
        assert_eq!(matchmaker("latency_fifo"), Ok(MatchmakerKind::LatencyFifo));
        assert_eq!(matchmaker("p2p_matrix"), Ok(MatchmakerKind::P2pMatrix));
    }
}
