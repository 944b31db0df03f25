//! Fuzzing the TOML loader with proptest: arbitrary text, TOML-ish files built from the
//! config's own tables and keys with valid and hostile values, and the shipped configs
//! mutated line by line. The property (`properties/config.rs`, shared with the libFuzzer
//! target in `fuzz/`): loading never panics; every error is at a line and column within the
//! text; a valid config's `describe()` never panics.
//!
//! Case counts are sized for CI (3,000 per suite, 1 to 2 s in all); `PROPTEST_CASES=N` sets
//! every suite's count for a long run, e.g. `PROPTEST_CASES=200000 cargo test --release -p
//! pairlab-server --test fuzz_config`.

#[path = "properties/config.rs"]
mod properties;

use proptest::prelude::*;

/// The configs the project ships, plus one with every server-wide table.
const VALID: &[&str] = &[
    include_str!("../../scenes/example.toml"),
    include_str!("../../scenes/default.toml"),
    r#"
[[scene]]
id = "relay"
group_size = 4
matchmaker = "latency_fifo"
max_server_rtt_ms = 250.5
max_p2p_rtt_ms = 0
force_relay = true

[[ice_servers]]
urls = ["turn:turn.example.org:3478?transport=tcp", "turns:turn.example.org:5349"]
username = "u"
credential = "p"

[turn]
urls = "turn:127.0.0.1:3478"
static_auth_secret = "s3cret"
credential_ttl_s = 3600
"#,
];

/// Every table header and key the loader reads, and a few near misses.
const HEADERS: &[&str] = &[
    "[[scene]]",
    "[[ice_servers]]",
    "[turn]",
    "[scene]",
    "[[turn]]",
    "[ice_servers]",
    "[server]",
    "[scene.x]",
    "[[scene.ice_servers]]",
    "[\"scene\"]",
];
const KEYS: &[&str] = &[
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
    "urls",
    "username",
    "credential",
    "static_auth_secret",
    "credential_ttl_s",
    "scene",
    "ice_servers",
    "turn",
    "groupsize",
    "Id",
    "\"id\"",
    "a.b",
    "ïd",
];

/// A TOML value: the kinds the config uses, at and beyond their limits, and other kinds.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0i64..3).prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x:?}")),
        prop::sample::select(
            &[
                "inf",
                "-inf",
                "nan",
                "-0.0",
                "1e400",
                "0x10",
                "1_000",
                "true",
                "false",
                "[]",
                "{}",
                "1979-05-27T07:32:00Z",
                "07:32:00",
                "\"\"",
                "''",
                "\"\"\"\n\"\"\"",
            ][..]
        )
        .prop_map(str::to_owned),
        prop::sample::select(
            &[
                "\"fifo\"",
                "\"latency_fifo\"",
                "\"latency-fifo\"",
                "\"stun:stun.example.org\"",
                "\"turn:127.0.0.1:3478\"",
                "\"turns:[::1]:5349\"",
                "\"https://example.org/done\"",
                "\"ftp://x\"",
                "\"pairs\"",
                "\"a b\"",
                "\"\\u00e9\"",
                "\"\\uD800\"",
            ][..]
        )
        .prop_map(str::to_owned),
        "\"[ -!#-\\[\\]-~]{0,30}\"",
        "'[^'\n]{0,20}'",
        prop::collection::vec("\"[a-z:0-9.]{0,12}\"|[0-9]{1,3}", 0..4)
            .prop_map(|items| format!("[{}]", items.join(", "))),
        "[ -~]{0,12}",
    ]
}

/// One line of a TOML-ish file.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(HEADERS).prop_map(str::to_owned),
        8 => (prop::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "#[ -~]{0,20}",
        1 => Just(String::new()),
        1 => "[ -~]{0,30}",
        1 => any::<String>(),
    ]
}

/// What to do to one line of a valid file.
#[derive(Debug, Clone)]
enum Edit {
    Delete,
    Duplicate,
    Insert(String),
    ReplaceValue(String),
    Cut(prop::sample::Index),
    CrLf,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        Just(Edit::Delete),
        Just(Edit::Duplicate),
        line().prop_map(Edit::Insert),
        value().prop_map(Edit::ReplaceValue),
        any::<prop::sample::Index>().prop_map(Edit::Cut),
        Just(Edit::CrLf),
    ]
}

/// `text` with each edit applied at its line.
fn mutate(text: &str, edits: &[(prop::sample::Index, Edit)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (at, edit) in edits {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = at.index(lines.len());
        match edit {
            Edit::Delete => {
                lines.remove(i);
            }
            Edit::Duplicate => lines.insert(i, lines[i].clone()),
            Edit::Insert(line) => lines.insert(i, line.clone()),
            Edit::ReplaceValue(value) => {
                if let Some((key, _)) = lines[i].split_once('=') {
                    lines[i] = format!("{key}= {value}");
                }
            }
            Edit::Cut(cut) => {
                let chars: Vec<char> = lines[i].chars().collect();
                let keep = cut.index(chars.len() + 1);
                lines[i] = chars[..keep].iter().collect();
            }
            Edit::CrLf => lines[i].push('\r'),
        }
    }
    lines.join("\n")
}

fn check(text: &str) -> Result<(), TestCaseError> {
    properties::check_config_text(text).map_err(TestCaseError::fail)
}

proptest! {
    // CI's count; `PROPTEST_CASES` overrides it (proptest reads it over this config).
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    /// Any Unicode text.
    #[test]
    fn arbitrary_text(text in any::<String>()) {
        check(&text)?;
    }

    /// Files of the config's headers and keys with valid and hostile values, comments, blank
    /// and junk lines.
    #[test]
    fn toml_ish_files(lines in prop::collection::vec(line(), 0..24)) {
        check(&lines.join("\n"))?;
    }

    /// The shipped configs with one to four lines deleted, duplicated, inserted, cut short,
    /// ended in `\r`, or given another value.
    #[test]
    fn mutated_valid_configs(
        base in prop::sample::select(VALID),
        edits in prop::collection::vec((any::<prop::sample::Index>(), edit()), 1..5),
    ) {
        check(&mutate(base, &edits))?;
    }
}

/// The base files are valid, so the mutations start from the loader's `Ok` path.
#[test]
fn base_configs_are_valid() {
    for text in VALID {
        if let Err(e) = pairlab_server::config::Config::from_toml_str(text) {
            panic!("{e}\n{text}");
        }
        properties::check_config_text(text).unwrap();
    }
}
