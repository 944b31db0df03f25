//! The researcher's configuration: scenes and ICE servers, from TOML.
//!
//! [`Config`] is the validated form the rest of the server uses; [`Config::from_toml_str`]
//! builds it from a file's text and reports every problem with its line and column.
//!
//! The file's shape (every option is explained in `scenes/example.toml`):
//!
//! ```toml
//! [[scene]]                      # one or more, in order; the first is the default scene
//! id = "pairs"                   # [A-Za-z0-9._-], unique: the research record's folder name
//! group_size = 2                 # ≥ 2
//! matchmaker = "latency_fifo"    # "fifo" | "latency_fifo"
//! max_server_rtt_ms = 200        # > 0; required for latency_fifo
//! max_p2p_rtt_ms = 150           # ≥ 0; optional: without it no probe runs
//! probe_timeout_ms = 10000       # > 0
//! waitroom_timeout_ms = 300000   # > 0
//! timeout_message = "…"
//! timeout_redirect_url = "https://…"   # optional, http(s)
//! hide_lobby_count = false
//! reconnect_grace_ms = 10000     # ≥ 0
//!
//! [[ice_servers]]                # server-wide, optional, any number
//! urls = ["turn:turn.example.org:3478"]   # stun:, turn: or turns: (RFC 7064, RFC 7065)
//! username = "user"              # required with turn:/turns:
//! credential = "secret"
//! ```

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use pairlab_shared::IceServer;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Which matchmaker a scene uses (the original framework's `FIFOMatchmaker` and
/// `LatencyFIFOMatchmaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchmakerKind {
    /// `"fifo"`: first come, first matched.
    Fifo,
    /// `"latency_fifo"`: FIFO among candidates whose summed server RTTs pass
    /// `max_server_rtt_ms`.
    LatencyFifo,
}

impl MatchmakerKind {
    /// The name used in the config file and the research record.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchmakerKind::Fifo => "fifo",
            MatchmakerKind::LatencyFifo => "latency_fifo",
        }
    }
}

/// One `[[scene]]`: a waitroom with its matchmaking rules.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneConfig {
    /// The scene's id (`hello.scene_id`, the research record's folder name).
    pub id: String,
    /// Participants per game, ≥ 2.
    pub group_size: u32,
    /// The matchmaker.
    pub matchmaker: MatchmakerKind,
    /// Pre-filter: the most that two participants' server RTTs may add up to, ms. Required for
    /// `latency_fifo`, ignored by `fifo`.
    pub max_server_rtt_ms: Option<f64>,
    /// Probe threshold: the largest accepted peer-to-peer RTT, ms. `None`: no probe runs and a
    /// proposed group starts at once.
    pub max_p2p_rtt_ms: Option<f64>,
    /// The server's probe deadline, ms from `probe_prepare` (default 10000).
    pub probe_timeout_ms: u64,
    /// How long a participant may wait in the waitroom, ms, from their first entry.
    pub waitroom_timeout_ms: u64,
    /// Shown to a participant whose waitroom time ran out.
    pub timeout_message: String,
    /// Where the page sends a participant whose waitroom time ran out (e.g. Prolific's
    /// completion URL); `None` keeps them on the page.
    pub timeout_redirect_url: Option<String>,
    /// Whether `waitroom.waiting` is hidden from participants.
    pub hide_lobby_count: bool,
    /// How long a dropped participant keeps their place, ms.
    pub reconnect_grace_ms: u64,
    /// Whether the game connection must go through a TURN relay (`iceTransportPolicy:
    /// "relay"`); probes always look for the best path.
    pub force_relay: bool,
}

/// How browsers authenticate to the TURN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnAuth {
    /// The same username and credential for everyone.
    Static {
        /// TURN username.
        username: String,
        /// TURN credential.
        credential: String,
    },
    /// coturn's REST API scheme (`--use-auth-secret --static-auth-secret=…`): the server mints
    /// short-lived credentials per participant, so no long-term credential reaches a browser.
    Secret {
        /// The secret shared with the TURN server.
        static_auth_secret: String,
        /// How long minted credentials stay valid, seconds.
        credential_ttl_s: u64,
    },
}

/// The server-wide `[turn]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:`/`turns:` URLs (UDP, TCP, TLS), all on the same TURN server or cluster.
    pub urls: Vec<String>,
    /// The credentials.
    pub auth: TurnAuth,
}

/// Default lifetime of minted TURN credentials, seconds (a day: longer than any session).
pub const DEFAULT_CREDENTIAL_TTL_S: u64 = 86_400;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The scenes, in file order; the first is the default for a `hello` without `scene_id`.
    pub scenes: Vec<SceneConfig>,
    /// STUN/TURN servers handed to browsers for probes and games.
    pub ice_servers: Vec<IceServer>,
    /// The TURN server whose credentials the server hands out (static or minted per
    /// participant), in addition to `ice_servers`.
    pub turn: Option<TurnConfig>,
}

impl SceneConfig {
    /// A scene with the defaults of the config file and the given id, group size and
    /// matchmaker (for tests and the embedded default).
    pub fn with_defaults(id: &str, group_size: u32, matchmaker: MatchmakerKind) -> Self {
        SceneConfig {
            id: id.to_owned(),
            group_size,
            matchmaker,
            max_server_rtt_ms: None,
            max_p2p_rtt_ms: None,
            probe_timeout_ms: 10_000,
            waitroom_timeout_ms: 300_000,
            timeout_message:
                "Sorry, we could not find a partner for you in time. Thank you for waiting."
                    .to_owned(),
            timeout_redirect_url: None,
            hide_lobby_count: false,
            reconnect_grace_ms: 10_000,
            force_relay: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One problem in a config file, at a position a text editor can jump to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters (not bytes).
    pub column: usize,
    /// What is wrong and what to write instead, for a person.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Every problem found in a config file, in file order (never empty).
///
/// `Display` writes one `LINE:COL: message` per line; prefix the file name for the
/// `FILE:LINE:COL: message` form compilers and editors understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The problems, sorted by position.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// The embedded default configuration (`scenes/default.toml`).
const DEFAULT_TOML: &str = include_str!("../../../scenes/default.toml");

/// Longest accepted scene id, characters (it becomes a folder name).
pub const SCENE_ID_MAX_LEN: usize = 64;

const SCENE_KEYS: &[&str] = &[
    "id",
    "group_size",
    "matchmaker",
    "max_server_rtt_ms",
    "max_p2p_rtt_ms",
    "probe_timeout_ms",
    "waitroom_timeout_ms",
    "timeout_message",
    "timeout_redirect_url",
    "hide_lobby_count",
    "reconnect_grace_ms",
    "force_relay",
];
const ICE_KEYS: &[&str] = &["urls", "username", "credential"];
const TURN_KEYS: &[&str] = &[
    "urls",
    "username",
    "credential",
    "static_auth_secret",
    "credential_ttl_s",
];
const TOP_KEYS: &[&str] = &["scene", "ice_servers", "turn"];

impl Config {
    /// Parses and validates a config file's text.
    ///
    /// Every problem is collected (TOML syntax, unknown keys, missing or mistyped values, rules
    /// such as `group_size ≥ 2`, unique scene ids, `max_server_rtt_ms` for `latency_fifo`, ICE
    /// server URLs and TURN credentials), each with the line and column it is at.
    ///
    /// # Errors
    /// [`ConfigErrors`] holding every problem found, in file order.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let mut cx = Cx::new(text);
        let (doc, syntax_errors) = DeTable::parse_recoverable(text);
        for e in syntax_errors {
            let span = e.span().unwrap_or(0..0);
            cx.err(span, format!("TOML syntax: {}", e.message()));
        }
        if !cx.errors.is_empty() {
            // A broken document yields a partial table; checking its keys would report
            // follow-on errors that vanish once the syntax is fixed.
            return Err(cx.finish());
        }
        let config = cx.document(doc.get_ref());
        match config {
            Some(config) if cx.errors.is_empty() => Ok(config),
            _ => Err(cx.finish()),
        }
    }

    /// The configuration used when `pairlab serve` gets no `--config`: one scene `default`,
    /// `group_size = 2`, `latency_fifo`, `max_server_rtt_ms = 200`, `max_p2p_rtt_ms = 150`,
    /// no ICE servers. It is `scenes/default.toml`, compiled in.
    pub fn embedded_default() -> Config {
        // The file is compiled into the binary and parsed by a unit test
        // (`embedded_default_parses`), so this cannot fail in a built binary.
        Config::from_toml_str(DEFAULT_TOML)
            .unwrap_or_else(|e| panic!("scenes/default.toml is invalid:\n{e}"))
    }

    /// The scene a `hello` names, or the first scene for a `hello` without `scene_id`.
    pub fn scene(&self, id: Option<&str>) -> Option<&SceneConfig> {
        match id {
            None => self.scenes.first(),
            Some(id) => self.scenes.iter().find(|s| s.id == id),
        }
    }
}

/// The validation pass: walks the parsed document and collects errors with positions.
struct Cx<'t> {
    text: &'t str,
    errors: Vec<(usize, ConfigError)>,
}

type Table<'i> = DeTable<'i>;
type Value<'i> = Spanned<DeValue<'i>>;

impl<'t> Cx<'t> {
    fn new(text: &'t str) -> Self {
        Cx {
            text,
            errors: Vec::new(),
        }
    }

    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push((
            span.start,
            ConfigError {
                line,
                column,
                message: message.into(),
            },
        ));
    }

    fn finish(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|(offset, _)| *offset);
        ConfigErrors {
            errors: self.errors.into_iter().map(|(_, e)| e).collect(),
        }
    }

    /// Reports keys of `table` that are not in `known` (with a suggestion when one is close).
    fn unknown_keys(&mut self, table: &Table<'_>, known: &[&str], where_: &str) {
        for (key, _) in table.iter() {
            let name: &str = key.get_ref();
            if known.contains(&name) {
                continue;
            }
            let mut msg = format!("unknown key `{name}` in {where_}");
            if let Some(near) = closest(name, known) {
                msg.push_str(&format!("; did you mean `{near}`?"));
            } else {
                msg.push_str(&format!("; known keys: {}", known.join(", ")));
            }
            self.err(key.span(), msg);
        }
    }

    fn document(&mut self, doc: &Table<'_>) -> Option<Config> {
        self.unknown_keys(doc, TOP_KEYS, "the top level");
        let scenes = match get(doc, "scene") {
            None => {
                self.err(
                    0..0,
                    "no scenes: add at least one [[scene]] table (see scenes/example.toml)",
                );
                None
            }
            Some(v) => self.array_of_tables(v, "scene").map(|tables| {
                if tables.is_empty() {
                    self.err(
                        v.span(),
                        "`scene` is empty: add at least one [[scene]] table",
                    );
                }
                tables
                    .iter()
                    .filter_map(|(t, span)| self.scene(t, span.clone()))
                    .collect::<Vec<_>>()
            }),
        };
        let ice_servers = match get(doc, "ice_servers") {
            None => Some(Vec::new()),
            Some(v) => self.array_of_tables(v, "ice_servers").map(|tables| {
                tables
                    .iter()
                    .filter_map(|(t, span)| self.ice_server(t, span.clone()))
                    .collect::<Vec<_>>()
            }),
        };

        // Unique scene ids.
        let mut seen: HashMap<&str, Range<usize>> = HashMap::new();
        let mut dups = Vec::new();
        for (table, _) in array_of_tables_quiet(get(doc, "scene")).unwrap_or_default() {
            let Some(id) = get(table, "id") else { continue };
            let Some(s) = id.get_ref().as_str() else {
                continue;
            };
            if let Some(first) = seen.get(s) {
                let (line, _) = line_col(self.text, first.start);
                dups.push((
                    id.span(),
                    format!(
                        "duplicate scene id `{s}` (first defined on line {line}); \
                         scene ids must be unique"
                    ),
                ));
            } else {
                seen.insert(s, id.span());
            }
        }
        for (span, msg) in dups {
            self.err(span, msg);
        }

        let turn = match get(doc, "turn") {
            None => Some(None),
            Some(v) => match v.get_ref() {
                DeValue::Table(t) => self.turn(t, v.span()).map(Some),
                other => {
                    self.err(
                        v.span(),
                        format!(
                            "`turn` must be a table ([turn]), found {}",
                            type_name(other)
                        ),
                    );
                    None
                }
            },
        };

        Some(Config {
            scenes: scenes?,
            ice_servers: ice_servers?,
            turn: turn?,
        })
    }

    /// `[[name]]`: an array whose elements are tables; each with its span.
    fn array_of_tables<'a, 'i>(
        &mut self,
        v: &'a Value<'i>,
        name: &str,
    ) -> Option<Vec<(&'a Table<'i>, Range<usize>)>> {
        match v.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::Table(t) => out.push((t, item.span())),
                        other => self.err(
                            item.span(),
                            format!(
                                "each `{name}` entry must be a table, found {}; write [[{name}]] \
                                 followed by its keys",
                                type_name(other)
                            ),
                        ),
                    }
                }
                Some(out)
            }
            DeValue::Table(_) => {
                self.err(
                    v.span(),
                    format!(
                        "`{name}` must be an array of tables: write [[{name}]] (two brackets), \
                         not [{name}]"
                    ),
                );
                None
            }
            other => {
                self.err(
                    v.span(),
                    format!(
                        "`{name}` must be an array of tables ([[{name}]]), found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    fn scene(&mut self, t: &Table<'_>, span: Range<usize>) -> Option<SceneConfig> {
        self.unknown_keys(t, SCENE_KEYS, "[[scene]]");
        let ok_before = self.errors.len();

        let id = self.required(t, &span, "id", "[[scene]]", |cx, v| {
            let s = cx.string(v, "id")?;
            let problem = if s.is_empty() {
                Some("is empty".to_owned())
            } else if s == "." || s == ".." {
                Some("cannot be `.` or `..`".to_owned())
            } else if s.chars().count() > SCENE_ID_MAX_LEN {
                Some(format!("is longer than {SCENE_ID_MAX_LEN} characters"))
            } else {
                s.chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
                    .map(|c| format!("contains {c:?}"))
            };
            match problem {
                Some(p) => {
                    cx.err(
                        v.span(),
                        format!(
                            "scene id `{s}` {p}; it names the research record's folder, so use \
                             1 to {SCENE_ID_MAX_LEN} characters from A-Z a-z 0-9 . _ -"
                        ),
                    );
                    None
                }
                None => Some(s.to_owned()),
            }
        });
        let group_size = self.required(t, &span, "group_size", "[[scene]]", |cx, v| {
            let n = cx.integer(v, "group_size")?;
            if n < 2 || n > i64::from(u32::MAX) {
                cx.err(
                    v.span(),
                    format!("group_size must be at least 2 (participants per game), found {n}"),
                );
                return None;
            }
            u32::try_from(n).ok()
        });
        let matchmaker = self.required(t, &span, "matchmaker", "[[scene]]", |cx, v| {
            match cx.string(v, "matchmaker")? {
                "fifo" => Some(MatchmakerKind::Fifo),
                "latency_fifo" => Some(MatchmakerKind::LatencyFifo),
                other => {
                    cx.err(
                        v.span(),
                        format!("unknown matchmaker `{other}`; use \"fifo\" or \"latency_fifo\""),
                    );
                    None
                }
            }
        });
        let max_server_rtt_ms = self.optional(t, "max_server_rtt_ms", |cx, v| {
            let x = cx.number(v, "max_server_rtt_ms")?;
            if x <= 0.0 {
                cx.err(
                    v.span(),
                    format!("max_server_rtt_ms must be greater than 0 (milliseconds), found {x}"),
                );
                return None;
            }
            Some(x)
        });
        if matchmaker == Some(MatchmakerKind::LatencyFifo) && get(t, "max_server_rtt_ms").is_none()
        {
            let at = get(t, "matchmaker").map_or(span.clone(), |v| v.span());
            self.err(
                at,
                "matchmaker = \"latency_fifo\" needs max_server_rtt_ms: the most two \
                 participants' server round-trip times may add up to, in milliseconds (e.g. \
                 max_server_rtt_ms = 200)",
            );
        }
        let max_p2p_rtt_ms = self.optional(t, "max_p2p_rtt_ms", |cx, v| {
            let x = cx.number(v, "max_p2p_rtt_ms")?;
            if x < 0.0 {
                cx.err(
                    v.span(),
                    format!("max_p2p_rtt_ms must be 0 or more (milliseconds), found {x}"),
                );
                return None;
            }
            Some(x)
        });
        let probe_timeout_ms = self.optional(t, "probe_timeout_ms", |cx, v| {
            cx.positive_ms(v, "probe_timeout_ms", 1)
        });
        let waitroom_timeout_ms = self.optional(t, "waitroom_timeout_ms", |cx, v| {
            cx.positive_ms(v, "waitroom_timeout_ms", 1)
        });
        let timeout_message = self.optional(t, "timeout_message", |cx, v| {
            cx.string(v, "timeout_message").map(str::to_owned)
        });
        let timeout_redirect_url = self.optional(t, "timeout_redirect_url", |cx, v| {
            let s = cx.string(v, "timeout_redirect_url")?;
            if let Err(why) = check_http_url(s) {
                cx.err(
                    v.span(),
                    format!(
                        "timeout_redirect_url `{s}` {why}; write a full http:// or https:// \
                         URL (e.g. Prolific's completion link), or leave the key out"
                    ),
                );
                return None;
            }
            Some(s.to_owned())
        });
        let hide_lobby_count =
            self.optional(t, "hide_lobby_count", |cx, v| match v.get_ref().as_bool() {
                Some(b) => Some(b),
                None => {
                    cx.mistyped(v, "hide_lobby_count", "true or false");
                    None
                }
            });
        let reconnect_grace_ms = self.optional(t, "reconnect_grace_ms", |cx, v| {
            cx.positive_ms(v, "reconnect_grace_ms", 0)
        });
        let force_relay = self.optional(t, "force_relay", |cx, v| match v.get_ref().as_bool() {
            Some(b) => Some(b),
            None => {
                cx.mistyped(v, "force_relay", "true or false");
                None
            }
        });

        if self.errors.len() != ok_before {
            return None;
        }
        let mut scene = SceneConfig::with_defaults(&id?, group_size?, matchmaker?);
        scene.max_server_rtt_ms = max_server_rtt_ms;
        scene.max_p2p_rtt_ms = max_p2p_rtt_ms;
        if let Some(v) = probe_timeout_ms {
            scene.probe_timeout_ms = v;
        }
        if let Some(v) = waitroom_timeout_ms {
            scene.waitroom_timeout_ms = v;
        }
        if let Some(v) = timeout_message {
            scene.timeout_message = v;
        }
        scene.timeout_redirect_url = timeout_redirect_url;
        if let Some(v) = hide_lobby_count {
            scene.hide_lobby_count = v;
        }
        if let Some(v) = reconnect_grace_ms {
            scene.reconnect_grace_ms = v;
        }
        if let Some(v) = force_relay {
            scene.force_relay = v;
        }
        Some(scene)
    }

    fn ice_server(&mut self, t: &Table<'_>, span: Range<usize>) -> Option<IceServer> {
        self.unknown_keys(t, ICE_KEYS, "[[ice_servers]]");
        let ok_before = self.errors.len();
        let urls = self.required(t, &span, "urls", "[[ice_servers]]", |cx, v| cx.ice_urls(v));
        let username = self.optional(t, "username", |cx, v| {
            cx.string(v, "username").map(str::to_owned)
        });
        let credential = self.optional(t, "credential", |cx, v| {
            cx.string(v, "credential").map(str::to_owned)
        });
        if let Some(urls) = &urls {
            let needs_auth = urls.iter().any(|u| is_turn(u));
            if needs_auth {
                for (key, present) in [
                    ("username", get(t, "username").is_some()),
                    ("credential", get(t, "credential").is_some()),
                ] {
                    if !present {
                        self.err(
                            span.clone(),
                            format!(
                                "this [[ice_servers]] entry has a turn: or turns: URL and needs \
                                 `{key}` (TURN servers require static credentials here)"
                            ),
                        );
                    }
                }
            }
        }
        if self.errors.len() != ok_before {
            return None;
        }
        Some(IceServer {
            urls: urls?,
            username,
            credential,
        })
    }

    /// `urls`: a string or an array of strings, each a valid `stun:`/`turn:`/`turns:` URL.
    fn ice_urls(&mut self, v: &Value<'_>) -> Option<Vec<String>> {
        let cx = self;
        let list: Vec<(&str, Range<usize>)> = match v.get_ref() {
            DeValue::String(s) => vec![(s.as_ref(), v.span())],
            DeValue::Array(items) => {
                let mut list = Vec::new();
                for item in items.iter() {
                    match item.get_ref().as_str() {
                        Some(s) => list.push((s, item.span())),
                        None => cx.err(
                            item.span(),
                            format!(
                                "each entry of urls must be a string, found {}",
                                type_name(item.get_ref())
                            ),
                        ),
                    }
                }
                if items.is_empty() {
                    cx.err(
                        v.span(),
                        "urls is empty: give at least one stun:, turn: or turns: URL",
                    );
                }
                list
            }
            other => {
                cx.err(
                    v.span(),
                    format!(
                        "urls must be a string or an array of strings, found {}",
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        let mut out = Vec::new();
        for (url, at) in list {
            match check_ice_url(url) {
                Ok(()) => out.push(url.to_owned()),
                Err(why) => cx.err(at, format!("ICE server URL `{url}` {why}")),
            }
        }
        Some(out)
    }

    /// The `[turn]` table.
    fn turn(&mut self, t: &Table<'_>, span: Range<usize>) -> Option<TurnConfig> {
        self.unknown_keys(t, TURN_KEYS, "[turn]");
        let ok_before = self.errors.len();
        let urls = self.required(t, &span, "urls", "[turn]", |cx, v| {
            let urls = cx.ice_urls(v)?;
            if let Some(u) = urls.iter().find(|u| !is_turn(u)) {
                cx.err(
                    v.span(),
                    format!("[turn] urls must be turn: or turns: URLs; `{u}` is not (put STUN servers in [[ice_servers]])"),
                );
                return None;
            }
            Some(urls)
        });
        let text = |cx: &mut Self, key: &str| {
            cx.optional(t, key, |cx, v| cx.string(v, key).map(str::to_owned))
        };
        let username = text(self, "username");
        let credential = text(self, "credential");
        let secret = text(self, "static_auth_secret");
        let ttl = self.optional(t, "credential_ttl_s", |cx, v| {
            cx.positive_ms(v, "credential_ttl_s", 60)
        });
        let auth = match (username, credential, secret) {
            (Some(username), Some(credential), None) => {
                if ttl.is_some() {
                    self.err(
                        span.clone(),
                        "credential_ttl_s applies to static_auth_secret only; static credentials do not expire",
                    );
                }
                Some(TurnAuth::Static {
                    username,
                    credential,
                })
            }
            (None, None, Some(static_auth_secret)) if !static_auth_secret.is_empty() => {
                Some(TurnAuth::Secret {
                    static_auth_secret,
                    credential_ttl_s: ttl.unwrap_or(DEFAULT_CREDENTIAL_TTL_S),
                })
            }
            (None, None, Some(_)) => {
                self.err(span.clone(), "static_auth_secret is empty");
                None
            }
            _ => {
                self.err(
                    span.clone(),
                    "[turn] needs either `username` and `credential` (static credentials) or \
                     `static_auth_secret` (coturn's --static-auth-secret; the server then mints \
                     short-lived credentials per participant), not both",
                );
                None
            }
        };
        if self.errors.len() != ok_before {
            return None;
        }
        Some(TurnConfig {
            urls: urls?,
            auth: auth?,
        })
    }

    /// A required key: reports it missing at the table's position.
    fn required<T>(
        &mut self,
        t: &Table<'_>,
        table_span: &Range<usize>,
        key: &str,
        where_: &str,
        f: impl FnOnce(&mut Self, &Value<'_>) -> Option<T>,
    ) -> Option<T> {
        match get(t, key) {
            Some(v) => f(self, v),
            None => {
                self.err(
                    table_span.clone(),
                    format!("{where_} is missing the required key `{key}`"),
                );
                None
            }
        }
    }

    fn optional<T>(
        &mut self,
        t: &Table<'_>,
        key: &str,
        f: impl FnOnce(&mut Self, &Value<'_>) -> Option<T>,
    ) -> Option<T> {
        get(t, key).and_then(|v| f(self, v))
    }

    fn mistyped(&mut self, v: &Value<'_>, key: &str, expected: &str) {
        self.err(
            v.span(),
            format!("{key} must be {expected}, found {}", type_name(v.get_ref())),
        );
    }

    fn string<'v>(&mut self, v: &'v Value<'_>, key: &str) -> Option<&'v str> {
        let s = v.get_ref().as_str();
        if s.is_none() {
            self.mistyped(v, key, "a string (in quotes)");
        }
        s
    }

    fn integer(&mut self, v: &Value<'_>, key: &str) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.err(v.span(), format!("{key} is out of range"));
                    None
                }
            },
            _ => {
                self.mistyped(v, key, "a whole number (an integer, without quotes)");
                None
            }
        }
    }

    fn number(&mut self, v: &Value<'_>, key: &str) -> Option<f64> {
        let x = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            _ => {
                self.mistyped(v, key, "a number of milliseconds (without quotes)");
                return None;
            }
        };
        match x {
            Some(x) if x.is_finite() => Some(x),
            _ => {
                self.err(
                    v.span(),
                    format!("{key} must be a finite number of milliseconds"),
                );
                None
            }
        }
    }

    /// A whole number of milliseconds, at least `min`.
    fn positive_ms(&mut self, v: &Value<'_>, key: &str, min: i64) -> Option<u64> {
        let n = self.integer(v, key)?;
        if n < min {
            let rule = if min == 0 {
                "0 or more"
            } else {
                "greater than 0"
            };
            self.err(
                v.span(),
                format!("{key} must be {rule} (whole milliseconds), found {n}"),
            );
            return None;
        }
        u64::try_from(n).ok()
    }
}

/// The tables of an array of tables, skipping anything else (already reported).
fn array_of_tables_quiet<'a, 'i>(
    v: Option<&'a Value<'i>>,
) -> Option<Vec<(&'a Table<'i>, Range<usize>)>> {
    match v?.get_ref() {
        DeValue::Array(items) => Some(
            items
                .iter()
                .filter_map(|item| match item.get_ref() {
                    DeValue::Table(t) => Some((t, item.span())),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

fn get<'a, 'i>(t: &'a Table<'i>, key: &str) -> Option<&'a Value<'i>> {
    t.iter()
        .find(|(k, _)| {
            let k: &str = k.get_ref();
            k == key
        })
        .map(|(_, v)| v)
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The known key closest to a misspelt one, when it is close enough to be a likely typo.
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn is_turn(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("turn:") || lower.starts_with("turns:")
}

/// A STUN/TURN URL as `RTCIceServer.urls` takes it (RFC 7064 `stun:host[:port]`, RFC 7065
/// `turn:host[:port][?transport=udp|tcp]`).
fn check_ice_url(url: &str) -> Result<(), &'static str> {
    let lower = url.to_ascii_lowercase();
    let rest = ["stun:", "stuns:", "turn:", "turns:"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme));
    let Some(rest) = rest else {
        return Err("must start with stun:, turn: or turns: (e.g. stun:stun.example.org:3478)");
    };
    if lower.starts_with("stuns:") {
        return Err("uses stuns:, which browsers do not support; use stun:, turn: or turns:");
    }
    if rest.starts_with("//") {
        return Err("must not have `//` after the scheme (write turn:host:port)");
    }
    let host = rest.split(['?', ':']).next().unwrap_or("");
    let host = if rest.starts_with('[') {
        // An IPv6 literal: [::1]:3478
        rest.split(']').next().unwrap_or("")
    } else {
        host
    };
    if host.is_empty() || host == "[" {
        return Err("has no host after the scheme");
    }
    if url.chars().any(char::is_whitespace) {
        return Err("contains whitespace");
    }
    Ok(())
}

/// A URL a browser can be sent to: `http://` or `https://` with a host.
fn check_http_url(url: &str) -> Result<(), &'static str> {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return Err("does not start with http:// or https://");
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err("has no host");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<ConfigError> {
        match Config::from_toml_str(text) {
            Ok(c) => panic!("expected errors, got {c:?}"),
            Err(e) => e.errors,
        }
    }

    /// The (line, column) of `needle`'s first occurrence in `text`, 1-based.
    fn pos_of(text: &str, needle: &str) -> (usize, usize) {
        let off = text.find(needle).expect("needle in text");
        line_col(text, off)
    }

    fn has(errs: &[ConfigError], at: (usize, usize), fragment: &str) -> bool {
        errs.iter()
            .any(|e| (e.line, e.column) == at && e.message.contains(fragment))
    }

    const MINIMAL: &str = r#"
[[scene]]
id = "s1"
group_size = 2
matchmaker = "fifo"
"#;

    #[test]
    fn embedded_default_parses() {
        let c = Config::embedded_default();
        assert_eq!(c.scenes.len(), 1);
        let s = &c.scenes[0];
        assert_eq!(s.id, "default");
        assert_eq!(s.group_size, 2);
        assert_eq!(s.matchmaker, MatchmakerKind::LatencyFifo);
        assert_eq!(s.max_server_rtt_ms, Some(200.0));
        assert_eq!(s.max_p2p_rtt_ms, Some(150.0));
        assert!(c.ice_servers.is_empty());
        // Everything else at the documented defaults.
        let mut expected = SceneConfig::with_defaults("default", 2, MatchmakerKind::LatencyFifo);
        expected.max_server_rtt_ms = Some(200.0);
        expected.max_p2p_rtt_ms = Some(150.0);
        assert_eq!(s, &expected);
    }

    #[test]
    fn turn_static_and_secret() {
        let base =
            "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\nforce_relay = true\n";
        let c = Config::from_toml_str(&format!(
            "{base}[turn]\nurls = \"turn:127.0.0.1:3478\"\nusername = \"u\"\ncredential = \"p\"\n"
        ))
        .unwrap();
        assert!(c.scenes[0].force_relay);
        let t = c.turn.unwrap();
        assert_eq!(t.urls, vec!["turn:127.0.0.1:3478".to_owned()]);
        assert_eq!(
            t.auth,
            TurnAuth::Static {
                username: "u".into(),
                credential: "p".into()
            }
        );
        let c = Config::from_toml_str(&format!(
            "{base}[turn]\nurls = [\"turn:127.0.0.1:3478\", \"turns:t.example.org:5349\"]\nstatic_auth_secret = \"s3\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.turn.unwrap().auth,
            TurnAuth::Secret {
                static_auth_secret: "s3".into(),
                credential_ttl_s: DEFAULT_CREDENTIAL_TTL_S
            }
        );
        for bad in [
            "[turn]\nurls = \"turn:x:1\"\n",
            "[turn]\nurls = \"turn:x:1\"\nusername = \"u\"\ncredential = \"p\"\nstatic_auth_secret = \"s\"\n",
            "[turn]\nurls = \"stun:x:1\"\nstatic_auth_secret = \"s\"\n",
            "[turn]\nurls = \"turn:x:1\"\nstatic_auth_secret = \"s\"\ncredential_ttl_s = 5\n",
            "[turn]\nurls = \"turn:x:1\"\nstatic_auth_secret = \"s\"\nrealm = \"r\"\n",
            "turn = 3\n",
        ] {
            assert!(Config::from_toml_str(&format!("{base}{bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn example_parses_and_documents_every_option() {
        let text = include_str!("../../../scenes/example.toml");
        let c = match Config::from_toml_str(text) {
            Ok(c) => c,
            Err(e) => panic!("scenes/example.toml:\n{e}"),
        };
        assert!(c.scenes.len() >= 2);
        assert!(!c.ice_servers.is_empty());
        for key in SCENE_KEYS.iter().chain(ICE_KEYS).chain(TURN_KEYS) {
            assert!(
                text.contains(&format!("{key} =")),
                "example.toml does not show `{key}`"
            );
        }
    }

    #[test]
    fn minimal_scene_gets_defaults() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(
            c.scenes,
            vec![SceneConfig::with_defaults("s1", 2, MatchmakerKind::Fifo)]
        );
        assert_eq!(c.scene(None).map(|s| s.id.as_str()), Some("s1"));
        assert_eq!(c.scene(Some("s1")).map(|s| s.id.as_str()), Some("s1"));
        assert!(c.scene(Some("nope")).is_none());
    }

    #[test]
    fn all_options_are_read() {
        let text = r#"
[[scene]]
id = "a.b_c-1"
group_size = 3
matchmaker = "latency_fifo"
max_server_rtt_ms = 250.5
max_p2p_rtt_ms = 0
probe_timeout_ms = 5000
waitroom_timeout_ms = 60_000
timeout_message = "bye"
timeout_redirect_url = "https://app.prolific.com/submissions/complete?cc=ABC"
hide_lobby_count = true
reconnect_grace_ms = 0

[[ice_servers]]
urls = "stun:stun.example.org:3478"

[[ice_servers]]
urls = ["turn:127.0.0.1:3478?transport=udp", "turns:turn.example.org"]
username = "u"
credential = "p"
"#;
        let c = Config::from_toml_str(text).unwrap();
        let s = &c.scenes[0];
        assert_eq!(s.id, "a.b_c-1");
        assert_eq!(s.group_size, 3);
        assert_eq!(s.max_server_rtt_ms, Some(250.5));
        assert_eq!(s.max_p2p_rtt_ms, Some(0.0));
        assert_eq!(s.probe_timeout_ms, 5000);
        assert_eq!(s.waitroom_timeout_ms, 60_000);
        assert_eq!(s.timeout_message, "bye");
        assert_eq!(
            s.timeout_redirect_url.as_deref(),
            Some("https://app.prolific.com/submissions/complete?cc=ABC")
        );
        assert!(s.hide_lobby_count);
        assert_eq!(s.reconnect_grace_ms, 0);
        assert_eq!(
            c.ice_servers,
            vec![
                IceServer {
                    urls: vec!["stun:stun.example.org:3478".into()],
                    username: None,
                    credential: None
                },
                IceServer {
                    urls: vec![
                        "turn:127.0.0.1:3478?transport=udp".into(),
                        "turns:turn.example.org".into()
                    ],
                    username: Some("u".into()),
                    credential: Some("p".into())
                },
            ]
        );
    }

    #[test]
    fn unknown_key_with_position_and_suggestion() {
        let text =
            "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n  max_p2p_rtt = 100\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].line, errs[0].column), (5, 3));
        assert!(errs[0].message.contains("unknown key `max_p2p_rtt`"));
        assert!(errs[0].message.contains("did you mean `max_p2p_rtt_ms`"));
    }

    #[test]
    fn unknown_top_level_key_and_table() {
        let text = "colour = 1\n[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n[[ice_server]]\nurls = \"stun:x\"\n";
        let errs = errors(text);
        assert!(has(&errs, (1, 1), "unknown key `colour`"), "{errs:?}");
        assert!(
            has(
                &errs,
                pos_of(text, "ice_server]]"),
                "did you mean `ice_servers`"
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn collects_all_errors_in_file_order() {
        let text = r#"[[scene]]
id = "bad id"
group_size = 1
matchmaker = "fastest"
probe_timeout_ms = 0
reconnect_grace_ms = -5
hide_lobby_count = "yes"

[[scene]]
group_size = "two"
matchmaker = "fifo"
"#;
        let errs = errors(text);
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted, "errors are in file order");
        assert!(
            has(&errs, pos_of(text, "\"bad id\""), "contains ' '"),
            "{errs:?}"
        );
        assert!(
            has(&errs, pos_of(text, "1\nmatch"), "at least 2"),
            "{errs:?}"
        );
        assert!(
            has(&errs, pos_of(text, "\"fastest\""), "unknown matchmaker"),
            "{errs:?}"
        );
        assert!(
            has(&errs, pos_of(text, "0\nreconnect"), "greater than 0"),
            "{errs:?}"
        );
        assert!(has(&errs, pos_of(text, "-5"), "0 or more"), "{errs:?}");
        assert!(
            has(&errs, pos_of(text, "\"yes\""), "true or false"),
            "{errs:?}"
        );
        assert!(
            has(&errs, pos_of(text, "\"two\""), "whole number"),
            "{errs:?}"
        );
        // The second scene has no id: reported at its table.
        assert!(
            errs.iter()
                .any(|e| e.line >= 9 && e.message.contains("missing the required key `id`")),
            "{errs:?}"
        );
        assert_eq!(errs.len(), 8, "{errs:#?}");
    }

    #[test]
    fn missing_required_keys() {
        let text = "[[scene]]\nid = \"s\"\n";
        let errs = errors(text);
        assert!(errs.iter().any(|e| e.message.contains("`group_size`")));
        assert!(errs.iter().any(|e| e.message.contains("`matchmaker`")));
        for e in &errs {
            assert!(e.line == 1 || e.line == 2, "{e}");
        }
    }

    #[test]
    fn no_scene_at_all() {
        let errs = errors("# nothing here\n");
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].line, errs[0].column), (1, 1));
        assert!(errs[0].message.contains("at least one [[scene]]"));

        let errs = errors("[scene]\nid = \"s\"\n");
        assert!(errs[0].message.contains("two brackets"), "{errs:?}");
    }

    #[test]
    fn latency_fifo_needs_max_server_rtt() {
        let text = "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"latency_fifo\"\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].line, errs[0].column), (4, 14));
        assert!(errs[0].message.contains("max_server_rtt_ms"));
        // fifo does not need it.
        assert!(Config::from_toml_str(MINIMAL).is_ok());
    }

    #[test]
    fn rtt_thresholds_are_checked() {
        let text = "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"latency_fifo\"\nmax_server_rtt_ms = 0\nmax_p2p_rtt_ms = -1\n";
        let errs = errors(text);
        assert!(has(&errs, (5, 21), "greater than 0"), "{errs:?}");
        assert!(has(&errs, (6, 18), "0 or more"), "{errs:?}");
        let text =
            "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\nmax_p2p_rtt_ms = nan\n";
        assert!(errors(text)[0].message.contains("finite"));
        let text = "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\nmax_p2p_rtt_ms = \"150\"\n";
        assert!(errors(text)[0].message.contains("without quotes"));
    }

    #[test]
    fn duplicate_scene_ids() {
        let text = "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n\n[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].line, errs[0].column), (7, 6));
        assert!(errs[0].message.contains("duplicate scene id `s`"));
        assert!(errs[0].message.contains("line 2"));
    }

    #[test]
    fn scene_id_must_be_a_folder_name() {
        for bad in ["", "..", "a/b", "a b", "é", &"x".repeat(65)] {
            let text =
                format!("[[scene]]\nid = \"{bad}\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n");
            let errs = errors(&text);
            assert_eq!(errs.len(), 1, "{bad:?}: {errs:?}");
            assert_eq!((errs[0].line, errs[0].column), (2, 6));
        }
    }

    #[test]
    fn bad_urls() {
        let text = r#"[[scene]]
id = "s"
group_size = 2
matchmaker = "fifo"
timeout_redirect_url = "ftp://example.org"

[[ice_servers]]
urls = ["stun:ok.example.org", "http://stun.example.org"]

[[ice_servers]]
urls = "turn:turn.example.org:3478"
username = "only-user"

[[ice_servers]]
urls = []
"#;
        let errs = errors(text);
        assert!(
            has(&errs, pos_of(text, "\"ftp:"), "http:// or https://"),
            "{errs:?}"
        );
        assert!(
            has(
                &errs,
                pos_of(text, "\"http://stun"),
                "must start with stun:"
            ),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.line == 10 && e.message.contains("`credential`")),
            "{errs:?}"
        );
        assert!(has(&errs, pos_of(text, "[]"), "urls is empty"), "{errs:?}");
        assert_eq!(errs.len(), 4, "{errs:#?}");
    }

    #[test]
    fn syntax_error_has_position() {
        let text = "[[scene]]\nid = \"s\ngroup_size = 2\n";
        let errs = errors(text);
        assert!(!errs.is_empty());
        assert!(errs[0].message.starts_with("TOML syntax"));
        assert_eq!(errs[0].line, 2, "{errs:?}");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\ntimeout_message = \"é\" ; x = 1\n";
        // `;` is a syntax error after the value; its column counts é as one character.
        let errs = errors(text);
        assert_eq!(errs[0].line, 5);
        assert_eq!(errs[0].column, 23, "{errs:?}");
    }

    #[test]
    fn display_is_line_col_message() {
        let e = ConfigErrors {
            errors: vec![ConfigError {
                line: 3,
                column: 7,
                message: "m".into(),
            }],
        };
        assert_eq!(e.to_string(), "3:7: m");
    }

    #[test]
    fn url_checks() {
        assert!(check_ice_url("stun:[::1]:3478").is_ok());
        assert!(check_ice_url("turn:host?transport=tcp").is_ok());
        assert!(check_ice_url("turn:").is_err());
        assert!(check_ice_url("turn://host").is_err());
        assert!(check_http_url("https://x.org/a?b#c").is_ok());
        assert!(check_http_url("https:///a").is_err());
        assert!(check_http_url("https://x.org/a b").is_err());
    }
}
