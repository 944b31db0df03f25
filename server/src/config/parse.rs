//! TOML text → [`Config`], with every problem at its line and column.
//!
//! The text is parsed by `toml`'s recoverable parser into tables whose keys and values carry
//! their byte spans. Each table is then read through a [`Fields`]: a key is named once, where
//! it is read, and whatever the table holds beyond the keys read is an unknown key (with a
//! suggestion from [`suggest`](super::suggest)). A value of the wrong type is reported here;
//! a value of the right type goes through its rule in [`checks`](super::checks). Reading never
//! stops at the first problem: all of them are collected and sorted by position.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use pairlab_shared::{GameSettings, IceServer, RecordEvent};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::checks::{self, IceScheme, RuleError, TurnAuthKeys};
use super::outcome::UrlTemplate;
use super::suggest;
use super::types::{
    AllowedOrigins, Config, ConfigFile, MatrixOptions, OutcomeConfig, SceneConfig, ServerConfig,
    ServerOptions, TurnAuth, TurnConfig, MIN_CREDENTIAL_TTL_S, MIN_MAX_HEADER_BYTES,
};

/// One problem in a config file, at a position a text editor can jump to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ConfigError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters (not bytes).
    pub column: usize,
    /// What is wrong and what to write instead, for a person.
    pub message: String,
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

/// The embedded default configuration (`scenes/default.toml`).
const DEFAULT_TOML: &str = include_str!("../../../scenes/default.toml");

impl ConfigFile {
    /// Parses and validates a config file's text.
    ///
    /// Every problem is collected (TOML syntax, unknown keys, missing or mistyped values, rules
    /// such as `group_size ≥ 2`, unique scene ids, `max_server_rtt_ms` for `latency_fifo`, ICE
    /// server URLs, TURN credentials, `[server]` origins and addresses), each with the line and
    /// column it is at.
    ///
    /// # Errors
    /// [`ConfigErrors`] holding every problem found, in file order.
    pub fn from_toml_str(text: &str) -> Result<ConfigFile, ConfigErrors> {
        let mut cx = Cx::new(text);
        let (doc, syntax_errors) = DeTable::parse_recoverable(text);
        for e in syntax_errors {
            let span = e.span().unwrap_or(0..0);
            cx.err(span, ShapeError::Syntax(e.message().to_owned()));
        }
        if !cx.errors.is_empty() {
            // A broken document yields a partial table; checking its keys would report
            // follow-on errors that vanish once the syntax is fixed.
            return Err(cx.finish());
        }
        let file = document(&mut cx, doc.get_ref());
        match file {
            Some(file) if cx.errors.is_empty() => Ok(file),
            _ => Err(cx.finish()),
        }
    }

    /// The configuration used when `pairlab serve` gets no `--config`: one scene `default`,
    /// `group_size = 2`, `latency_fifo`, `max_server_rtt_ms = 200`, `max_p2p_rtt_ms = 150`,
    /// one ICE server, the public STUN server [`DEFAULT_STUN_URL`](super::DEFAULT_STUN_URL) (as
    /// the original framework always added), the `[server]` defaults. It is `scenes/default.toml`, compiled in.
    pub fn embedded_default() -> ConfigFile {
        // The file is compiled into the binary and parsed by a unit test
        // (`embedded_default_parses`), so this cannot fail in a built binary.
        ConfigFile::from_toml_str(DEFAULT_TOML)
            .unwrap_or_else(|e| panic!("scenes/default.toml is invalid:\n{e}"))
    }
}

impl Config {
    /// The study part of a config file's text: [`ConfigFile::from_toml_str`] (which checks
    /// the `[server]` table too) without its [`ServerConfig`].
    ///
    /// # Errors
    /// [`ConfigErrors`] holding every problem found in the file, in file order.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        ConfigFile::from_toml_str(text).map(|file| file.config)
    }

    /// The study part of [`ConfigFile::embedded_default`].
    pub fn embedded_default() -> Config {
        ConfigFile::embedded_default().config
    }
}

/// A problem with the file's shape: syntax, keys, and the TOML type of a value. `Display` is
/// the message a researcher reads.
#[derive(Debug, thiserror::Error)]
enum ShapeError {
    #[error("TOML syntax: {0}")]
    Syntax(String),
    #[error("unknown key `{key}` in {table}; {hint}")]
    UnknownKey {
        key: String,
        table: TableName,
        hint: KeyHint,
    },
    #[error("no scenes: add at least one [[scene]] table (see scenes/example.toml)")]
    NoScenes,
    #[error("`{0}` is empty: add at least one [[{0}]] table")]
    EmptyArray(&'static str),
    #[error("`{key}` must be a table ([{key}]), found {found}")]
    NotATable {
        key: &'static str,
        found: &'static str,
    },
    #[error(
        "each `{key}` entry must be a table, found {found}; write [[{key}]] followed by its keys"
    )]
    EntryNotATable {
        key: &'static str,
        found: &'static str,
    },
    #[error("`{0}` must be an array of tables: write [[{0}]] (two brackets), not [{0}]")]
    SingleBrackets(&'static str),
    #[error("`{key}` must be an array of tables ([[{key}]]), found {found}")]
    NotAnArrayOfTables {
        key: &'static str,
        found: &'static str,
    },
    #[error("{table} is missing the required key `{key}`")]
    Missing { table: TableName, key: &'static str },
    #[error("{key} must be {expected}, found {found}")]
    Mistyped {
        key: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
    #[error("{0} must be a finite number of milliseconds")]
    NotFinite(&'static str),
    #[error("each entry of {key} must be a string, found {found}")]
    UrlNotAString {
        key: &'static str,
        found: &'static str,
    },
    #[error("{0} is empty: give at least one stun:, turn: or turns: URL")]
    NoUrls(&'static str),
    #[error("{key} must be a string or an array of strings, found {found}")]
    UrlsMistyped {
        key: &'static str,
        found: &'static str,
    },
}

/// After "unknown key": the likely meant key, or else all the table's keys.
#[derive(Debug)]
enum KeyHint {
    DidYouMean(&'static str),
    Known(Vec<&'static str>),
}

impl fmt::Display for KeyHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyHint::DidYouMean(key) => write!(f, "did you mean `{key}`?"),
            KeyHint::Known(keys) => write!(f, "known keys: {}", keys.join(", ")),
        }
    }
}

/// How messages name a table: `the top level`, `[[scene]]`, `[turn]`.
#[derive(Debug, Clone, Copy)]
enum TableName {
    Top,
    /// An entry of an array of tables, `[[key]]`.
    Entry(&'static str),
    /// A single table, `[key]`.
    Table(&'static str),
    /// One of a scene's `[scene.outcomes.<name>]` tables.
    SceneOutcome,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableName::Top => f.write_str("the top level"),
            TableName::Entry(key) => write!(f, "[[{key}]]"),
            TableName::Table(key) => write!(f, "[{key}]"),
            TableName::SceneOutcome => f.write_str("[scene.outcomes.<name>]"),
        }
    }
}

type Value<'i> = Spanned<DeValue<'i>>;

/// The problems found so far, each at the byte offset it starts at.
struct Cx<'t> {
    text: &'t str,
    errors: Vec<Reported>,
}

struct Reported {
    offset: usize,
    /// Unknown keys come first among problems at one position (the top level's first key and
    /// "no scenes" are both at the start of the file).
    unknown_key: bool,
    error: ConfigError,
}

impl<'t> Cx<'t> {
    fn new(text: &'t str) -> Self {
        Cx {
            text,
            errors: Vec::new(),
        }
    }

    fn err(&mut self, span: Range<usize>, problem: impl fmt::Display) {
        self.push(span, false, problem);
    }

    fn push(&mut self, span: Range<usize>, unknown_key: bool, problem: impl fmt::Display) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(Reported {
            offset: span.start,
            unknown_key,
            error: ConfigError {
                line,
                column,
                message: problem.to_string(),
            },
        });
    }

    /// A rule's verdict on the value at `span`: its value, or the problem reported there.
    fn rule<T>(&mut self, span: Range<usize>, verdict: Result<T, RuleError>) -> Option<T> {
        verdict.map_err(|e| self.err(span, e)).ok()
    }

    fn finish(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|r| (r.offset, !r.unknown_key));
        ConfigErrors {
            errors: self.errors.into_iter().map(|r| r.error).collect(),
        }
    }
}

/// One TOML table being read. Each key is named once, where it is read: the keys read are
/// the table's known keys, and [`Fields::finish`] reports every other key as unknown.
struct Fields<'a, 'i> {
    table: &'a DeTable<'i>,
    span: Range<usize>,
    name: TableName,
    known: Vec<&'static str>,
}

/// A value with the key it was found under.
#[derive(Clone, Copy)]
struct Field<'a, 'i> {
    key: &'static str,
    value: &'a Value<'i>,
}

impl<'a, 'i> Fields<'a, 'i> {
    fn new(table: &'a DeTable<'i>, span: Range<usize>, name: TableName) -> Self {
        Fields {
            table,
            span,
            name,
            known: Vec::new(),
        }
    }

    /// The value of an optional key.
    fn optional(&mut self, key: &'static str) -> Option<Field<'a, 'i>> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.table
            .iter()
            .find(|(k, _)| {
                let k: &str = k.get_ref();
                k == key
            })
            .map(|(_, value)| Field { key, value })
    }

    /// The value of a required key; reported missing at the table's position.
    fn required(&mut self, cx: &mut Cx<'_>, key: &'static str) -> Option<Field<'a, 'i>> {
        let field = self.optional(key);
        if field.is_none() {
            cx.err(
                self.span.clone(),
                ShapeError::Missing {
                    table: self.name,
                    key,
                },
            );
        }
        field
    }

    /// Reports the keys that were not read (with a suggestion when one is close).
    fn finish(self, cx: &mut Cx<'_>) {
        for (key, _) in self.table.iter() {
            let name: &str = key.get_ref();
            if self.known.contains(&name) {
                continue;
            }
            let hint = match suggest::closest(name, &self.known) {
                Some(near) => KeyHint::DidYouMean(near),
                None => KeyHint::Known(self.known.clone()),
            };
            let problem = ShapeError::UnknownKey {
                key: name.to_owned(),
                table: self.name,
                hint,
            };
            cx.push(key.span(), true, problem);
        }
    }
}

impl<'a, 'i> Field<'a, 'i> {
    fn span(self) -> Range<usize> {
        self.value.span()
    }

    fn mistyped(self, cx: &mut Cx<'_>, expected: &'static str) {
        cx.err(
            self.span(),
            ShapeError::Mistyped {
                key: self.key,
                expected,
                found: type_name(self.value.get_ref()),
            },
        );
    }

    fn string(self, cx: &mut Cx<'_>) -> Option<&'a str> {
        let s = self.value.get_ref().as_str();
        if s.is_none() {
            self.mistyped(cx, "a string (in quotes)");
        }
        s
    }

    fn boolean(self, cx: &mut Cx<'_>) -> Option<bool> {
        let b = self.value.get_ref().as_bool();
        if b.is_none() {
            self.mistyped(cx, "true or false");
        }
        b
    }

    fn integer(self, cx: &mut Cx<'_>) -> Option<i64> {
        match self.value.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    cx.err(self.span(), ShapeError::OutOfRange(self.key));
                    None
                }
            },
            _ => {
                self.mistyped(cx, "a whole number (an integer, without quotes)");
                None
            }
        }
    }

    /// A number of milliseconds, integer or float, finite.
    fn number_ms(self, cx: &mut Cx<'_>) -> Option<f64> {
        let x = match self.value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            _ => {
                self.mistyped(cx, "a number of milliseconds (without quotes)");
                return None;
            }
        };
        match x {
            Some(x) if x.is_finite() => Some(x),
            _ => {
                cx.err(self.span(), ShapeError::NotFinite(self.key));
                None
            }
        }
    }

    /// A whole number of the key's unit, at least `min`.
    fn whole(self, cx: &mut Cx<'_>, min: u64) -> Option<u64> {
        let n = self.integer(cx)?;
        cx.rule(self.span(), checks::whole_at_least(self.key, n, min))
    }

    /// A string or an array of strings, each a valid `stun:`/`turn:`/`turns:` URL; the valid
    /// ones with their schemes.
    fn ice_urls(self, cx: &mut Cx<'_>) -> Option<Vec<(String, IceScheme)>> {
        let list: Vec<(&str, Range<usize>)> = match self.value.get_ref() {
            DeValue::String(s) => vec![(s.as_ref(), self.span())],
            DeValue::Array(items) => {
                let mut list = Vec::new();
                for item in items.iter() {
                    match item.get_ref().as_str() {
                        Some(s) => list.push((s, item.span())),
                        None => cx.err(
                            item.span(),
                            ShapeError::UrlNotAString {
                                key: self.key,
                                found: type_name(item.get_ref()),
                            },
                        ),
                    }
                }
                if items.is_empty() {
                    cx.err(self.span(), ShapeError::NoUrls(self.key));
                }
                list
            }
            other => {
                cx.err(
                    self.span(),
                    ShapeError::UrlsMistyped {
                        key: self.key,
                        found: type_name(other),
                    },
                );
                return None;
            }
        };
        Some(
            list.into_iter()
                .filter_map(|(url, at)| {
                    let scheme = cx.rule(at, checks::ice_url(url))?;
                    Some((url.to_owned(), scheme))
                })
                .collect(),
        )
    }

    /// An array of strings, each through `rule` (reported at the entry); the values the rule
    /// gives, when every entry passes.
    fn strings<T>(
        self,
        cx: &mut Cx<'_>,
        rule: impl Fn(&str) -> Result<T, RuleError>,
    ) -> Option<Vec<T>> {
        let DeValue::Array(items) = self.value.get_ref() else {
            self.mistyped(cx, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items.iter() {
            let value = match item.get_ref().as_str() {
                Some(s) => cx.rule(item.span(), rule(s)),
                None => {
                    cx.err(
                        item.span(),
                        ShapeError::Mistyped {
                            key: self.key,
                            expected: "an array of strings",
                            found: type_name(item.get_ref()),
                        },
                    );
                    None
                }
            };
            match value {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `[[key]]`: an array whose elements are tables; each with its span.
    fn array_of_tables(self, cx: &mut Cx<'_>) -> Option<Vec<(&'a DeTable<'i>, Range<usize>)>> {
        let key = self.key;
        match self.value.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::Table(t) => out.push((t, item.span())),
                        other => cx.err(
                            item.span(),
                            ShapeError::EntryNotATable {
                                key,
                                found: type_name(other),
                            },
                        ),
                    }
                }
                Some(out)
            }
            DeValue::Table(_) => {
                cx.err(self.span(), ShapeError::SingleBrackets(key));
                None
            }
            other => {
                cx.err(
                    self.span(),
                    ShapeError::NotAnArrayOfTables {
                        key,
                        found: type_name(other),
                    },
                );
                None
            }
        }
    }
}

/// The whole document: `[[scene]]`, `[[ice_servers]]`, `[turn]`, `[server]`.
fn document(cx: &mut Cx<'_>, doc: &DeTable<'_>) -> Option<ConfigFile> {
    let mut top = Fields::new(doc, 0..0, TableName::Top);
    // Each scene's id as written (valid or not), for the duplicate check.
    let mut ids = Vec::new();
    let scenes = match top.optional("scene") {
        None => {
            cx.err(0..0, ShapeError::NoScenes);
            None
        }
        Some(field) => entries(cx, field, |cx, fields| scene(cx, fields, &mut ids)).map(|scenes| {
            if scenes.is_empty() {
                cx.err(field.span(), ShapeError::EmptyArray(field.key));
            }
            scenes.into_iter().flatten().collect()
        }),
    };
    let ice_servers = match top.optional("ice_servers") {
        None => Some(Vec::new()),
        Some(field) => entries(cx, field, ice_server).map(|s| s.into_iter().flatten().collect()),
    };
    let text = cx.text;
    for (span, problem) in checks::duplicate_ids(&ids, |span| line_col(text, span.start).0) {
        cx.err(span, problem);
    }
    let turn = match top.optional("turn") {
        None => Some(None),
        Some(field) => {
            let default_ttl_s = Config::default_credential_ttl_s(scenes.as_deref().unwrap_or(&[]));
            single_table(cx, field, |cx, fields| turn(cx, fields, default_ttl_s)).map(Some)
        }
    };
    let server = match top.optional("server") {
        None => Some((ServerConfig::default(), ServerOptions::default())),
        Some(field) => single_table(cx, field, server),
    };
    let site_dir = match top.optional("site") {
        None => Some(None),
        Some(field) => single_table(cx, field, site).map(Some),
    };
    top.finish(cx);
    let (server, options) = server?;
    Some(ConfigFile {
        config: Config {
            scenes: scenes?,
            ice_servers: ice_servers?,
            turn: turn?,
            server: options,
        },
        server,
        site_dir: site_dir?,
    })
}

/// Reads the single table `[key]` in `field` with `read` and reports its unknown keys.
fn single_table<'a, 'i, T>(
    cx: &mut Cx<'_>,
    field: Field<'a, 'i>,
    read: impl FnOnce(&mut Cx<'_>, &mut Fields<'a, 'i>) -> Option<T>,
) -> Option<T> {
    named_table(cx, field, TableName::Table(field.key), read)
}

/// Reads the table in `field`, named `name` in messages, with `read` and reports its unknown
/// keys.
fn named_table<'a, 'i, T>(
    cx: &mut Cx<'_>,
    field: Field<'a, 'i>,
    name: TableName,
    read: impl FnOnce(&mut Cx<'_>, &mut Fields<'a, 'i>) -> Option<T>,
) -> Option<T> {
    match field.value.get_ref() {
        DeValue::Table(table) => {
            let mut fields = Fields::new(table, field.span(), name);
            let value = read(cx, &mut fields);
            fields.finish(cx);
            value
        }
        other => {
            let found = type_name(other);
            cx.err(
                field.span(),
                ShapeError::NotATable {
                    key: field.key,
                    found,
                },
            );
            None
        }
    }
}

/// Reads each table of the array of tables `field` with `read` and reports its unknown keys.
/// Every table is read, so that each reports its problems: one result per table.
fn entries<'a, 'i, T>(
    cx: &mut Cx<'_>,
    field: Field<'a, 'i>,
    mut read: impl FnMut(&mut Cx<'_>, &mut Fields<'a, 'i>) -> Option<T>,
) -> Option<Vec<Option<T>>> {
    let tables = field.array_of_tables(cx)?;
    let mut out = Vec::with_capacity(tables.len());
    for (table, span) in tables {
        let mut fields = Fields::new(table, span, TableName::Entry(field.key));
        out.push(read(cx, &mut fields));
        fields.finish(cx);
    }
    Some(out)
}

/// One `[[scene]]`. Its id as written goes to `ids` when it is a string.
fn scene<'a>(
    cx: &mut Cx<'_>,
    t: &mut Fields<'a, '_>,
    ids: &mut Vec<(&'a str, Range<usize>)>,
) -> Option<SceneConfig> {
    let id = t.required(cx, "id").and_then(|f| {
        let id = f.string(cx)?;
        ids.push((id, f.span()));
        cx.rule(f.span(), checks::scene_id(id))?;
        Some(id)
    });
    let group_size = t.required(cx, "group_size").and_then(|f| {
        let n = f.integer(cx)?;
        cx.rule(f.span(), checks::group_size(n))
    });
    let matchmaker_field = t.required(cx, "matchmaker");
    let matchmaker = matchmaker_field.and_then(|f| {
        let name = f.string(cx)?;
        cx.rule(f.span(), checks::matchmaker(name))
    });
    let max_server_rtt_field = t.optional("max_server_rtt_ms");
    let max_server_rtt_ms = max_server_rtt_field.and_then(|f| {
        let x = f.number_ms(cx)?;
        cx.rule(f.span(), checks::positive_ms(f.key, x))
    });
    if let (Some(kind), Some(f)) = (matchmaker, matchmaker_field) {
        let verdict = checks::latency_fifo_threshold(kind, max_server_rtt_field.is_some());
        cx.rule(f.span(), verdict);
    }
    let max_p2p_rtt_ms = t.optional("max_p2p_rtt_ms").and_then(|f| {
        let x = f.number_ms(cx)?;
        cx.rule(f.span(), checks::non_negative_ms(f.key, x))
    });
    if let (Some(kind), Some(f)) = (matchmaker, matchmaker_field) {
        let verdict = checks::matrix_threshold(kind, max_p2p_rtt_ms.is_some());
        cx.rule(f.span(), verdict);
    }
    let probe_timeout_ms = t.optional("probe_timeout_ms").and_then(|f| f.whole(cx, 1));
    let waitroom_timeout_ms = t
        .optional("waitroom_timeout_ms")
        .and_then(|f| f.whole(cx, 1));
    let timeout_message = t.optional("timeout_message").and_then(|f| f.string(cx));
    let timeout_redirect_url = t.optional("timeout_redirect_url").and_then(|f| {
        let url = f.string(cx)?;
        cx.rule(f.span(), checks::redirect_url(url))?;
        Some(url)
    });
    let hide_lobby_count = t.optional("hide_lobby_count").and_then(|f| f.boolean(cx));
    let reconnect_grace_ms = t
        .optional("reconnect_grace_ms")
        .and_then(|f| f.whole(cx, 0));
    let force_relay = t.optional("force_relay").and_then(|f| f.boolean(cx));
    let probe_handover = t.optional("probe_handover").and_then(|f| f.boolean(cx));
    let game_allowance_ms = t.optional("game_allowance_ms").and_then(|f| f.whole(cx, 1));
    let max_entry_server_rtt_ms = t.optional("max_entry_server_rtt_ms").and_then(|f| {
        let x = f.number_ms(cx)?;
        cx.rule(f.span(), checks::positive_ms(f.key, x))
    });
    let leave_button_after_ms = t
        .optional("leave_button_after_ms")
        .and_then(|f| f.whole(cx, 0));
    let matrix = matrix_options(cx, t);
    let game = match t.optional("game") {
        None => Some(GameSettings::default()),
        Some(f) => named_table(cx, f, TableName::Table("scene.game"), game),
    };
    let outcomes_field = t.optional("outcomes");
    let outcomes = match outcomes_field {
        None => Some(BTreeMap::new()),
        Some(f) => outcomes(cx, f),
    };
    let has_timeout_outcome_url = outcomes.as_ref().is_some_and(|list| {
        list.get(pairlab_shared::Outcome::WAITROOM_TIMEOUT)
            .is_some_and(|o| o.url.is_some())
    });
    if has_timeout_outcome_url && timeout_redirect_url.is_some() {
        if let Some(f) = t.optional("timeout_redirect_url") {
            cx.err(f.span(), RuleError::TwoWaitroomTimeoutUrls);
        }
    }

    let defaults = SceneConfig::with_defaults(id?, group_size?, matchmaker?);
    Some(SceneConfig {
        max_server_rtt_ms,
        max_p2p_rtt_ms,
        probe_timeout_ms: probe_timeout_ms.unwrap_or(defaults.probe_timeout_ms),
        waitroom_timeout_ms: waitroom_timeout_ms.unwrap_or(defaults.waitroom_timeout_ms),
        timeout_message: timeout_message.map_or(defaults.timeout_message, str::to_owned),
        timeout_redirect_url: timeout_redirect_url.map(str::to_owned),
        hide_lobby_count: hide_lobby_count.unwrap_or(defaults.hide_lobby_count),
        reconnect_grace_ms: reconnect_grace_ms.unwrap_or(defaults.reconnect_grace_ms),
        force_relay: force_relay.unwrap_or(defaults.force_relay),
        probe_handover: probe_handover.unwrap_or(defaults.probe_handover),
        game_allowance_ms: game_allowance_ms.unwrap_or(defaults.game_allowance_ms),
        game: game?,
        outcomes: outcomes?,
        max_entry_server_rtt_ms,
        leave_button_after_ms,
        matrix: matrix?,
        ..defaults
    })
}

/// The `p2p_matrix` keys of a scene (`probe_concurrency`, `pair_max_age_ms`,
/// `max_probe_connections`), each defaulted when absent.
fn matrix_options(cx: &mut Cx<'_>, t: &mut Fields<'_, '_>) -> Option<MatrixOptions> {
    let d = MatrixOptions::default();
    let concurrency_field = t.optional("probe_concurrency");
    let concurrency = concurrency_field.map(|f| f.whole(cx, 1));
    let max_age = t.optional("pair_max_age_ms").map(|f| f.whole(cx, 1));
    let connections_field = t.optional("max_probe_connections");
    let connections = connections_field.map(|f| f.whole(cx, 1));
    let probe_concurrency = concurrency.unwrap_or(Some(u64::from(d.probe_concurrency)))?;
    let max_probe_connections = connections.unwrap_or(Some(u64::from(d.max_probe_connections)))?;
    let span = connections_field.or(concurrency_field).map(|f| f.span());
    if let Some(span) = span {
        cx.rule(
            span,
            checks::probe_connections(max_probe_connections, probe_concurrency),
        )?;
    }
    Some(MatrixOptions {
        probe_concurrency: u32::try_from(probe_concurrency).unwrap_or(u32::MAX),
        pair_max_age_ms: max_age.unwrap_or(Some(d.pair_max_age_ms))?,
        max_probe_connections: u32::try_from(max_probe_connections).unwrap_or(u32::MAX),
    })
}

/// Most bytes of `[scene.game.settings]` as JSON: it goes to the page in every `game_start`.
pub const GAME_SETTINGS_MAX_BYTES: usize = 16 * 1024;

/// A scene's `[scene.game]` table: the keys of [`GameSettings`] and the researcher's own
/// `[scene.game.settings]`.
fn game(cx: &mut Cx<'_>, t: &mut Fields<'_, '_>) -> Option<GameSettings> {
    let d = GameSettings::default();
    let mut ok = true;
    // Each key: its value (the default when absent or wrong), its span when present, and
    // whether it is valid.
    let mut small = |cx: &mut Cx<'_>, t: &mut Fields<'_, '_>, key, min, default: u32| {
        let Some(f) = t.optional(key) else {
            return (default, None, true);
        };
        let value = f
            .whole(cx, min)
            .and_then(|n| cx.rule(f.span(), checks::fits_u32(f.key, n)));
        ok &= value.is_some();
        (value.unwrap_or(default), Some(f.span()), value.is_some())
    };
    let (tick_ms, _, tick_ok) = small(cx, t, "tick_ms", 1, d.tick_ms);
    let (episode_ms, episode_span, episode_ok) = small(cx, t, "episode_ms", 1, d.episode_ms);
    let (episodes, ..) = small(cx, t, "episodes", 1, d.episodes);
    let (input_delay_frames, ..) = small(cx, t, "input_delay_frames", 0, d.input_delay_frames);
    let (quality_interval_ms, ..) = small(cx, t, "quality_interval_ms", 1, d.quality_interval_ms);
    let (warning_rtt_ms, _, warning_ok) = small(cx, t, "warning_rtt_ms", 1, d.warning_rtt_ms);
    let (critical_rtt_ms, critical_span, critical_ok) =
        small(cx, t, "critical_rtt_ms", 1, d.critical_rtt_ms);
    let (disconnect_grace_ms, ..) = small(cx, t, "disconnect_grace_ms", 0, d.disconnect_grace_ms);
    let (restart_timeout_ms, ..) = small(cx, t, "restart_timeout_ms", 1, d.restart_timeout_ms);
    let max_hidden_ms = t.optional("max_hidden_ms").map(|f| f.whole(cx, 1));
    let url_overrides = t.optional("url_overrides").map(|f| f.boolean(cx));
    let settings = match t.optional("settings") {
        None => Some(serde_json::Map::new()),
        Some(f) => match f.value.get_ref() {
            DeValue::Table(_) => match to_json(cx, f.value) {
                Some(serde_json::Value::Object(map)) => {
                    let bytes = serde_json::to_string(&map).map_or(usize::MAX, |s| s.len());
                    cx.rule(
                        f.span(),
                        checks::settings_size(bytes, GAME_SETTINGS_MAX_BYTES),
                    )
                    .map(|()| map)
                }
                _ => None,
            },
            _ => {
                f.mistyped(cx, "a table ([scene.game.settings])");
                None
            }
        },
    };
    // A relation between keys is checked once both are valid on their own (a default standing
    // in for a wrong value would make a misleading second problem).
    if warning_ok && critical_ok && critical_rtt_ms <= warning_rtt_ms {
        let span = critical_span.unwrap_or_else(|| t.span.clone());
        cx.err(
            span,
            RuleError::WarningNotBelowCritical {
                warning: warning_rtt_ms,
                critical: critical_rtt_ms,
            },
        );
        ok = false;
    }
    if tick_ok && episode_ok && episode_ms < tick_ms {
        let span = episode_span.unwrap_or_else(|| t.span.clone());
        cx.err(
            span,
            RuleError::EpisodeShorterThanTick {
                episode_ms,
                tick_ms,
            },
        );
        ok = false;
    }
    let max_hidden_ms = match max_hidden_ms {
        None => None,
        Some(v) => Some(v?),
    };
    let url_overrides = match url_overrides {
        None => d.url_overrides,
        Some(v) => v?,
    };
    let settings = settings?;
    ok.then_some(GameSettings {
        tick_ms,
        episode_ms,
        episodes,
        input_delay_frames,
        quality_interval_ms,
        warning_rtt_ms,
        critical_rtt_ms,
        disconnect_grace_ms,
        restart_timeout_ms,
        max_hidden_ms,
        url_overrides,
        settings,
    })
}

/// A TOML value as JSON, for `[scene.game.settings]`: strings, integers, finite floats,
/// booleans, arrays and tables as they are; date-times as their TOML text (RFC 3339).
fn to_json(cx: &mut Cx<'_>, value: &Value<'_>) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match value.get_ref() {
        DeValue::String(s) => J::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => J::from(n),
            Err(_) => {
                cx.err(value.span(), ShapeError::OutOfRange("this integer"));
                return None;
            }
        },
        DeValue::Float(f) => match f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            Some(n) => J::Number(n),
            None => {
                cx.err(value.span(), RuleError::SettingNotFinite);
                return None;
            }
        },
        DeValue::Boolean(b) => J::Bool(*b),
        DeValue::Datetime(d) => J::String(d.to_string()),
        DeValue::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for item in items.iter() {
                match to_json(cx, item) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            J::Array(out)
        }
        DeValue::Table(table) => {
            let mut out = serde_json::Map::new();
            let mut ok = true;
            for (k, v) in table.iter() {
                match to_json(cx, v) {
                    Some(v) => {
                        out.insert(k.get_ref().to_string(), v);
                    }
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            J::Object(out)
        }
    })
}

/// A scene's `[scene.outcomes]`: one `[scene.outcomes.<name>]` table per outcome, each with
/// `url` (a template), `code` and `message`, all optional.
fn outcomes(cx: &mut Cx<'_>, field: Field<'_, '_>) -> Option<BTreeMap<String, OutcomeConfig>> {
    let DeValue::Table(table) = field.value.get_ref() else {
        field.mistyped(cx, "a table of [scene.outcomes.<name>] tables");
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (name, value) in table.iter() {
        let name_text: &str = name.get_ref();
        if !RecordEvent::valid_name(name_text) {
            cx.err(name.span(), RuleError::OutcomeName(name_text.to_owned()));
            ok = false;
            continue;
        }
        let entry = Field {
            key: "outcome",
            value,
        };
        let read = named_table(cx, entry, TableName::SceneOutcome, |cx, t| {
            let url = match t.optional("url") {
                None => Some(None),
                Some(f) => f.string(cx).and_then(|u| {
                    let template = UrlTemplate::parse(u).map_err(|problem| RuleError::OutcomeUrl {
                        url: u.to_owned(),
                        problem,
                    });
                    cx.rule(f.span(), template).map(Some)
                }),
            };
            let code = match t.optional("code") {
                None => Some(None),
                Some(f) => f.string(cx).and_then(|c| {
                    cx.rule(f.span(), checks::completion_code(c))
                        .map(|()| Some(c.to_owned()))
                }),
            };
            let message = match t.optional("message") {
                None => Some(None),
                Some(f) => f.string(cx).map(|m| Some(m.to_owned())),
            };
            Some(OutcomeConfig {
                url: url?,
                code: code?,
                message: message?,
            })
        });
        match read {
            Some(o) => {
                out.insert(name_text.to_owned(), o);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// The top-level `[site]` table: `dir`, the researcher's own page folder.
fn site(cx: &mut Cx<'_>, t: &mut Fields<'_, '_>) -> Option<String> {
    let dir = t.required(cx, "dir")?;
    let text = dir.string(cx)?;
    cx.rule(dir.span(), checks::site_dir(text))?;
    Some(text.to_owned())
}

/// One `[[ice_servers]]` entry: the browser's `RTCIceServer`.
fn ice_server(cx: &mut Cx<'_>, t: &mut Fields<'_, '_>) -> Option<IceServer> {
    let urls = t.required(cx, "urls").and_then(|f| f.ice_urls(cx));
    let credentials = ["username", "credential"].map(|key| (key, t.optional(key)));
    let [username, credential] = credentials.map(|(_, field)| field.and_then(|f| f.string(cx)));
    let relayed = urls
        .iter()
        .flatten()
        .any(|(_, scheme)| *scheme == IceScheme::Turn);
    if relayed {
        for (key, field) in credentials {
            if field.is_none() {
                cx.err(t.span.clone(), RuleError::IceServerNeeds(key));
            }
        }
    }
    Some(IceServer {
        urls: urls?.into_iter().map(|(url, _)| url).collect(),
        username: username.map(str::to_owned),
        credential: credential.map(str::to_owned),
    })
}

/// The `[turn]` table: URLs and either static credentials or coturn's shared secret (minted
/// credentials last `credential_ttl_s`, by default `default_ttl_s`).
fn turn(cx: &mut Cx<'_>, t: &mut Fields<'_, '_>, default_ttl_s: u64) -> Option<TurnConfig> {
    let urls = t.required(cx, "urls").and_then(|f| {
        let urls = f.ice_urls(cx)?;
        if let Some((stun, _)) = urls.iter().find(|(_, s)| *s != IceScheme::Turn) {
            cx.err(f.span(), RuleError::TurnUrlIsStun(stun.clone()));
            return None;
        }
        Some(urls.into_iter().map(|(url, _)| url).collect())
    });
    let username = t.optional("username").and_then(|f| f.string(cx));
    let credential = t.optional("credential").and_then(|f| f.string(cx));
    let secret = t.optional("static_auth_secret").and_then(|f| f.string(cx));
    let ttl = t
        .optional("credential_ttl_s")
        .and_then(|f| f.whole(cx, MIN_CREDENTIAL_TTL_S));
    let keys = checks::turn_auth(
        username.is_some(),
        credential.is_some(),
        secret,
        ttl.is_some(),
    );
    let auth = match cx.rule(t.span.clone(), keys)? {
        TurnAuthKeys::Static => TurnAuth::Static {
            username: username?.to_owned(),
            credential: credential?.to_owned(),
        },
        TurnAuthKeys::Secret(secret) => TurnAuth::Secret {
            static_auth_secret: secret.to_owned(),
            credential_ttl_s: ttl.unwrap_or(default_ttl_s),
        },
    };
    Some(TurnConfig { urls: urls?, auth })
}

/// The `[server]` table: origins, proxies and the limits of the HTTP side (for the network
/// shell, [`ServerConfig`]), and `link_secret` (for the core, [`ServerOptions`]).
fn server(cx: &mut Cx<'_>, t: &mut Fields<'_, '_>) -> Option<(ServerConfig, ServerOptions)> {
    let defaults = ServerConfig::default();
    let allowed_origins = match t.optional("allowed_origins") {
        None => Some(defaults.allowed_origins),
        Some(f) => f.strings(cx, checks::origin).map(|origins| {
            if origins.iter().any(|o| o == "*") {
                AllowedOrigins::Any
            } else {
                AllowedOrigins::List(origins)
            }
        }),
    };
    let trusted_proxies = match t.optional("trusted_proxies") {
        None => Some(defaults.trusted_proxies),
        Some(f) => f.strings(cx, checks::proxy_address),
    };
    let mut whole = |key, min, default| t.optional(key).map_or(Some(default), |f| f.whole(cx, min));
    let header_read_timeout_ms =
        whole("header_read_timeout_ms", 1, defaults.header_read_timeout_ms);
    let max_header_bytes = whole(
        "max_header_bytes",
        MIN_MAX_HEADER_BYTES,
        defaults.max_header_bytes,
    );
    let max_http_connections = whole("max_http_connections", 1, defaults.max_http_connections);
    let max_http_connections_per_ip = whole(
        "max_http_connections_per_ip",
        1,
        defaults.max_http_connections_per_ip,
    );
    let hello_timeout_ms = whole("hello_timeout_ms", 1, defaults.hello_timeout_ms);
    let link_secret = match t.optional("link_secret") {
        None => Some(None),
        Some(f) => f.string(cx).and_then(|secret| {
            cx.rule(f.span(), checks::link_secret(secret))?;
            Some(Some(secret.to_owned()))
        }),
    };
    let metrics_token = match t.optional("metrics_token") {
        None => Some(None),
        Some(f) => f.string(cx).and_then(|token| {
            cx.rule(f.span(), checks::metrics_token(token))?;
            Some(Some(token.to_owned()))
        }),
    };
    let monitor_token = match t.optional("monitor_token") {
        None => Some(None),
        Some(f) => f.string(cx).and_then(|token| {
            cx.rule(f.span(), checks::monitor_token(token))?;
            Some(Some(token.to_owned()))
        }),
    };
    let monitor_subject_ids = t
        .optional("monitor_subject_ids")
        .map_or(Some(defaults.monitor_subject_ids), |f| f.boolean(cx));
    let server = ServerConfig {
        allowed_origins: allowed_origins?,
        trusted_proxies: trusted_proxies?,
        header_read_timeout_ms: header_read_timeout_ms?,
        max_header_bytes: max_header_bytes?,
        max_http_connections: max_http_connections?,
        max_http_connections_per_ip: max_http_connections_per_ip?,
        hello_timeout_ms: hello_timeout_ms?,
        metrics_token: metrics_token?,
        monitor_token: monitor_token?,
        monitor_subject_ids: monitor_subject_ids?,
    };
    Some((
        server,
        ServerOptions {
            link_secret: link_secret?,
        },
    ))
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
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
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

/// The keys each table's reader asks for, in order (for tests that check the documentation).
#[cfg(test)]
pub(super) fn known_keys() -> [(&'static str, Vec<&'static str>); 7] {
    let empty = DeTable::new();
    let mut cx = Cx::new("");
    let mut scene_fields = Fields::new(&empty, 0..0, TableName::Top);
    scene(&mut cx, &mut scene_fields, &mut Vec::new());
    let mut ice_fields = Fields::new(&empty, 0..0, TableName::Top);
    ice_server(&mut cx, &mut ice_fields);
    let mut turn_fields = Fields::new(&empty, 0..0, TableName::Top);
    turn(&mut cx, &mut turn_fields, MIN_CREDENTIAL_TTL_S);
    let mut server_fields = Fields::new(&empty, 0..0, TableName::Top);
    server(&mut cx, &mut server_fields);
    let mut game_fields = Fields::new(&empty, 0..0, TableName::Top);
    game(&mut cx, &mut game_fields);
    let mut site_fields = Fields::new(&empty, 0..0, TableName::Top);
    site(&mut cx, &mut site_fields);
    let outcome_keys = vec!["url", "code", "message"];
    [
        ("[scene.game]", game_fields.known),
        ("[scene.outcomes.<name>]", outcome_keys),
        ("[site]", site_fields.known),
        ("[[scene]]", scene_fields.known),
        ("[[ice_servers]]", ice_fields.known),
        ("[turn]", turn_fields.known),
        ("[server]", server_fields.known),
    ]
}
