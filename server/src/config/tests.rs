//! The config as a whole: text in, [`Config`] or positioned errors out. The rules' own cases
//! are next to them in `checks`, the suggestions' in `suggest`, the description's in
//! `describe`.

use pairlab_shared::IceServer;

use super::parse::{known_keys, line_col};
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

/// A `[[scene]]` table of a test config: its three required keys, then `options` (TOML
/// `key = value` lines), each line ending in a newline.
pub(super) fn scene_toml(id: &str, group_size: u32, matchmaker: &str, options: &[&str]) -> String {
    let mut text = format!(
        "[[scene]]\nid = \"{id}\"\ngroup_size = {group_size}\nmatchmaker = \"{matchmaker}\"\n"
    );
    for line in options {
        text.push_str(line);
        text.push('\n');
    }
    text
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
    assert_eq!(
        c.ice_servers,
        vec![IceServer {
            urls: vec![DEFAULT_STUN_URL.to_owned()],
            username: None,
            credential: None,
        }],
        "the default must work beyond one network: a public STUN server"
    );
    assert!(c.warnings().is_empty());
    // Everything else at the documented defaults.
    let mut expected = SceneConfig::with_defaults("default", 2, MatchmakerKind::LatencyFifo);
    expected.max_server_rtt_ms = Some(200.0);
    expected.max_p2p_rtt_ms = Some(150.0);
    assert_eq!(s, &expected);
}

#[test]
fn turn_static_and_secret() {
    let base = "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\nforce_relay = true\n";
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
            credential_ttl_s: 3600
        },
        "the default lifetime is the longest game allowance (an hour)"
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
    for (table, keys) in known_keys() {
        for key in keys {
            // A sub-table key is shown by its header ([scene.game], [scene.outcomes.*]).
            assert!(
                text.contains(&format!("{key} =")) || text.contains(&format!(".{key}")),
                "example.toml does not show {table} `{key}`"
            );
        }
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
    let scene = scene_toml(
        "a.b_c-1",
        3,
        "latency_fifo",
        &[
            "max_server_rtt_ms = 250.5",
            "max_p2p_rtt_ms = 0",
            "probe_timeout_ms = 5000",
            "waitroom_timeout_ms = 60_000",
            "timeout_message = \"bye\"",
            "timeout_redirect_url = \"https://app.prolific.com/submissions/complete?cc=ABC\"",
            "hide_lobby_count = true",
            "reconnect_grace_ms = 0",
        ],
    );
    let text = format!(
        r#"
{scene}
[[ice_servers]]
urls = "stun:stun.example.org:3478"

[[ice_servers]]
urls = ["turn:127.0.0.1:3478?transport=udp", "turns:turn.example.org"]
username = "u"
credential = "p"
"#
    );
    let c = Config::from_toml_str(&text).unwrap();
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
    let text =
        "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\nmax_p2p_rtt_ms = \"150\"\n";
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
        let text = format!("[[scene]]\nid = \"{bad}\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n");
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
    assert!(checks::ice_url("stun:[::1]:3478").is_ok());
    assert!(checks::ice_url("turn:host?transport=tcp").is_ok());
    assert!(checks::ice_url("turn:").is_err());
    assert!(checks::ice_url("turn://host").is_err());
    assert!(checks::redirect_url("https://x.org/a?b#c").is_ok());
    assert!(checks::redirect_url("https:///a").is_err());
    assert!(checks::redirect_url("https://x.org/a b").is_err());
}

#[test]
fn server_table_link_secret() {
    assert_eq!(
        Config::from_toml_str(MINIMAL).unwrap().server.link_secret,
        None
    );
    let c = Config::from_toml_str(&format!(
        "{MINIMAL}[server]\nlink_secret = \"0123456789abcdef\"\n"
    ))
    .unwrap();
    assert_eq!(c.server.link_secret.as_deref(), Some("0123456789abcdef"));
    let text = format!("{MINIMAL}[server]\nlink_secret = \"short\"\nlink_secrte = 1\n");
    let errs = errors(&text);
    assert!(
        has(&errs, pos_of(&text, "\"short\""), "at least 16"),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            pos_of(&text, "link_secrte"),
            "did you mean `link_secret`"
        ),
        "{errs:?}"
    );
    let text = format!("server = 3\n{MINIMAL}");
    assert!(has(&errors(&text), pos_of(&text, "3"), "must be a table"));
}

#[test]
fn server_table_metrics_token_is_long_enough() {
    let text = format!("{MINIMAL}[server]\nmetrics_token = \"short\"\n");
    let errs = errors(&text);
    assert!(
        has(
            &errs,
            pos_of(&text, "\"short\""),
            "metrics_token has 5 characters"
        ),
        "{errs:?}"
    );
}

/// Without `credential_ttl_s`, minted TURN credentials last the longest probe or game of the
/// scenes (`game_allowance_ms`, default an hour), not a day; at least the minimum.
#[test]
fn default_credential_ttl_follows_the_longest_game_allowance() {
    let turn = "[turn]\nurls = \"turn:x:1\"\nstatic_auth_secret = \"s\"\n";
    let ttl = |scenes: &str| {
        let c = Config::from_toml_str(&format!("{scenes}{turn}")).unwrap();
        match c.turn.unwrap().auth {
            TurnAuth::Secret {
                credential_ttl_s, ..
            } => credential_ttl_s,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(ttl(MINIMAL), DEFAULT_GAME_ALLOWANCE_MS / 1000);
    let two = "[[scene]]\nid = \"a\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n\
               game_allowance_ms = 900001\n\
               [[scene]]\nid = \"b\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n\
               game_allowance_ms = 120000\n";
    assert_eq!(
        ttl(two),
        901,
        "the longest scene, rounded up to whole seconds"
    );
    let short = "[[scene]]\nid = \"a\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n\
                 game_allowance_ms = 1000\nprobe_timeout_ms = 5000\n";
    assert_eq!(ttl(short), MIN_CREDENTIAL_TTL_S);
    let long_probe = "[[scene]]\nid = \"a\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n\
                      game_allowance_ms = 1000\nprobe_timeout_ms = 90000\n";
    assert_eq!(ttl(long_probe), 90);
    let explicit = format!("{MINIMAL}{turn}credential_ttl_s = 600\n");
    match Config::from_toml_str(&explicit).unwrap().turn.unwrap().auth {
        TurnAuth::Secret {
            credential_ttl_s, ..
        } => assert_eq!(credential_ttl_s, 600, "an explicit value wins"),
        other => panic!("{other:?}"),
    }
    assert!(Config::from_toml_str(&format!("{MINIMAL}game_allowance_ms = 0\n")).is_err());
}

/// `[server]`: absent gives the defaults; each key is read; wrong values are placed.
#[test]
fn server_table_defaults_values_and_errors() {
    assert_eq!(
        ConfigFile::from_toml_str(MINIMAL).unwrap().server,
        ServerConfig::default()
    );
    assert_eq!(
        ServerConfig::default(),
        ServerConfig {
            allowed_origins: AllowedOrigins::SameHost,
            trusted_proxies: vec![],
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_http_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            max_http_connections_per_ip: DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP,
            hello_timeout_ms: DEFAULT_HELLO_TIMEOUT_MS,
            metrics_token: None,
            monitor_token: None,
            monitor_subject_ids: false,
        }
    );
    let text = format!(
        "{MINIMAL}[server]\nallowed_origins = [\"https://a.org\"]\ntrusted_proxies = [\"10.0.0.1\"]\n\
         header_read_timeout_ms = 1\nmax_header_bytes = 8192\nmax_http_connections = 2\n\
         max_http_connections_per_ip = 1\nhello_timeout_ms = 3\nmetrics_token = \"0123456789abcdef\"\n\
         monitor_token = \"fedcba9876543210\"\nmonitor_subject_ids = true\n"
    );
    let server = ConfigFile::from_toml_str(&text).unwrap().server;
    assert_eq!(
        server,
        ServerConfig {
            allowed_origins: AllowedOrigins::List(vec!["https://a.org".into()]),
            trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
            header_read_timeout_ms: 1,
            max_header_bytes: 8192,
            max_http_connections: 2,
            max_http_connections_per_ip: 1,
            hello_timeout_ms: 3,
            metrics_token: Some("0123456789abcdef".into()),
            monitor_token: Some("fedcba9876543210".into()),
            monitor_subject_ids: true,
        }
    );
    let any = format!("{MINIMAL}[server]\nallowed_origins = [\"https://a.org\", \"*\"]\n");
    assert_eq!(
        ConfigFile::from_toml_str(&any)
            .unwrap()
            .server
            .allowed_origins,
        AllowedOrigins::Any
    );
    let text = format!(
        "{MINIMAL}[server]\nallowed_origins = [\"https://a.org/x\"]\ntrusted_proxies = \"10.0.0.1\"\n\
         max_header_bytes = 100\nmax_http_connections = 0\nhello_timout_ms = 3\n"
    );
    let errs = errors(&text);
    assert!(
        has(&errs, pos_of(&text, "\"https://a.org/x\""), "not an origin"),
        "{errs:?}"
    );
    assert!(
        has(&errs, pos_of(&text, "\"10.0.0.1\""), "an array of strings"),
        "{errs:?}"
    );
    assert!(
        has(&errs, pos_of(&text, "100"), "at least 8192 (whole bytes)"),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            pos_of(&text, "0\nhello"),
            "greater than 0 (whole number)"
        ),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            pos_of(&text, "hello_timout_ms"),
            "did you mean `hello_timeout_ms`?"
        ),
        "{errs:?}"
    );
    assert_eq!(errs.len(), 5, "{errs:?}");
}

/// `[scene.game]` and `[scene.game.settings]` (every TOML type; dates as their text),
/// `[scene.outcomes.<name>]`, the entry options; a second scene keeps the defaults.
#[test]
fn study_options_are_read() {
    let text = r#"[[scene]]
id = "a"
group_size = 2
matchmaker = "fifo"
max_entry_server_rtt_ms = 250.5
leave_button_after_ms = 0
[scene.game]
tick_ms = 20
episode_ms = 60000
episodes = 1
input_delay_frames = 0
quality_interval_ms = 500
warning_rtt_ms = 100
critical_rtt_ms = 200
disconnect_grace_ms = 0
restart_timeout_ms = 3000
max_hidden_ms = 10000
url_overrides = true
[scene.game.settings]
name = "forest"
n = 0x10
x = 1.5e3
on = true
when = 2026-11-30T07:00:00Z
day = 2026-11-30
list = [1, "two", [3]]
nested = { a = { b = 1 } }
[scene.outcomes.completed]
url = "https://app.prolific.com/submissions/complete?cc={completion_code}"
code = "C1"
[scene.outcomes.screened_out]
message = "Thanks."

[[scene]]
id = "b"
group_size = 2
matchmaker = "fifo"
"#;
    let c = Config::from_toml_str(text).unwrap_or_else(|e| panic!("{e}"));
    let a = &c.scenes[0];
    assert_eq!(a.max_entry_server_rtt_ms, Some(250.5));
    assert_eq!(a.leave_button_after_ms, Some(0));
    let g = &a.game;
    assert_eq!(
        (g.tick_ms, g.episode_ms, g.episodes, g.input_delay_frames),
        (20, 60_000, 1, 0)
    );
    assert_eq!(
        (g.quality_interval_ms, g.warning_rtt_ms, g.critical_rtt_ms),
        (500, 100, 200)
    );
    assert_eq!((g.disconnect_grace_ms, g.restart_timeout_ms), (0, 3000));
    assert_eq!(g.max_hidden_ms, Some(10_000));
    assert!(g.url_overrides);
    assert_eq!(
        serde_json::Value::Object(g.settings.clone()),
        serde_json::json!({
            "name": "forest", "n": 16, "x": 1500.0, "on": true,
            "when": "2026-11-30T07:00:00Z", "day": "2026-11-30",
            "list": [1, "two", [3]], "nested": {"a": {"b": 1}}
        })
    );
    let completed = &a.outcomes["completed"];
    assert_eq!(completed.code.as_deref(), Some("C1"));
    assert_eq!(
        completed.url.as_ref().map(|u| u.as_str()),
        Some("https://app.prolific.com/submissions/complete?cc={completion_code}")
    );
    assert_eq!(
        a.outcomes["screened_out"].message.as_deref(),
        Some("Thanks.")
    );
    assert_eq!(
        c.scenes[1],
        SceneConfig::with_defaults("b", 2, MatchmakerKind::Fifo)
    );
}

/// `[scene.game.settings]` over 16 KiB as JSON is refused at its table.
#[test]
fn game_settings_are_bounded() {
    let big = "x".repeat(17 * 1024);
    let text = format!(
        "{}[scene.game.settings]\nblob = \"{big}\"\n",
        scene_toml("a", 2, "fifo", &["[scene.game]"])
    );
    let errs = errors(&text);
    assert!(
        errs.iter().any(|e| e.message.contains("at most 16384")),
        "{errs:?}"
    );
}

#[test]
fn p2p_matrix_needs_a_p2p_threshold_and_its_bounds_are_checked() {
    let scene = |extra: &str| {
        format!("[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"p2p_matrix\"\n{extra}")
    };
    let errs = Config::from_toml_str(&scene("")).unwrap_err().errors;
    assert!(
        errs[0].message.contains("needs max_p2p_rtt_ms"),
        "{}",
        errs[0].message
    );
    let c = Config::from_toml_str(&scene("max_p2p_rtt_ms = 150\n")).expect("valid");
    assert_eq!(c.scenes[0].matchmaker, MatchmakerKind::P2pMatrix);
    assert_eq!(c.scenes[0].matrix, crate::config::MatrixOptions::default());
    let c = Config::from_toml_str(&scene(
        "max_p2p_rtt_ms = 150\nprobe_concurrency = 3\npair_max_age_ms = 5000\nmax_probe_connections = 3\n",
    ))
    .expect("valid");
    let m = c.scenes[0].matrix;
    assert_eq!(
        (
            m.probe_concurrency,
            m.pair_max_age_ms,
            m.max_probe_connections
        ),
        (3, 5000, 3)
    );
    let errs = Config::from_toml_str(&scene(
        "max_p2p_rtt_ms = 150\nprobe_concurrency = 4\nmax_probe_connections = 3\n",
    ))
    .unwrap_err()
    .errors;
    assert!(errs[0]
        .message
        .contains("must be at least probe_concurrency"));
    for bad in ["probe_concurrency = 0\n", "pair_max_age_ms = 0\n"] {
        assert!(
            Config::from_toml_str(&scene(&format!("max_p2p_rtt_ms = 150\n{bad}"))).is_err(),
            "{bad}"
        );
    }
}
