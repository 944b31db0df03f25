//! `pairlab check FILE`, the binary itself: its exit code and its output word for word, for
//! a valid file (the description) and for files with many problems (`FILE:LINE:COL: message`
//! lines in file order).

use std::path::Path;
use std::process::Command;

/// Runs `pairlab check NAME` in `dir`: (exit code, stdout).
fn check(dir: &Path, name: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pairlab"))
        .arg("check")
        .arg(name)
        .current_dir(dir)
        .output()
        .expect("run pairlab check");
    let code = out.status.code().expect("pairlab check exits with a code");
    (code, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes `text` to `dir/name` and checks it.
fn check_text(name: &str, text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(name), text).expect("write config");
    check(dir.path(), name)
}

#[test]
fn example_is_described() {
    let scenes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenes");
    let (code, out) = check(&scenes, "example.toml");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "example.toml: ok, 2 scene(s)\n  \
         scene \"pairs\" (default): groups of 2, latency_fifo, server RTT sum <= 200 ms, probe: \
         P2P RTT <= 150 ms (timeout 10000 ms), waitroom timeout 300000 ms then \
         https://app.prolific.com/submissions/complete?cc=EXAMPLE, reconnect grace 10000 ms\n  \
         scene \"triads\": groups of 3, fifo, no probe, waitroom timeout 600000 ms, reconnect \
         grace 10000 ms, lobby count hidden\n  \
         ICE server stun:stun.l.google.com:19302\n  \
         server: /ws origins: the page's own (http(s):// + Host); X-Forwarded-For ignored; \
         request head within 10000 ms (also the keep-alive idle timeout), at most 16384 bytes; \
         at most 512 HTTP connections, 128 per IP; hello within 10000 ms\n"
    );
}

#[test]
fn scene_problems_word_for_word() {
    let text = r#"colour = 1
[[scene]]
id = "bad id"
group_size = 1
matchmaker = "fastest"
probe_timeout_ms = 0
reconnect_grace_ms = -5
hide_lobby_count = "yes"
max_p2p_rtt = 100
zzzzzzz = 1

[[scene]]
group_size = "two"
matchmaker = "fifo"
id = "bad id"

[[ice_server]]
urls = "stun:x"
"#;
    let (code, out) = check_text("s.toml", text);
    assert_eq!(code, 1);
    let expected = [
        "s.toml:1:1: unknown key `colour` in the top level; known keys: scene, ice_servers, turn, server",
        "s.toml:3:6: scene id `bad id` contains ' '; it names the research record's folder, so use 1 to 64 characters from A-Z a-z 0-9 . _ -",
        "s.toml:4:14: group_size must be at least 2 (participants per game), found 1",
        "s.toml:5:14: unknown matchmaker `fastest`; use \"fifo\" or \"latency_fifo\"",
        "s.toml:6:20: probe_timeout_ms must be greater than 0 (whole milliseconds), found 0",
        "s.toml:7:22: reconnect_grace_ms must be 0 or more (whole milliseconds), found -5",
        "s.toml:8:20: hide_lobby_count must be true or false, found a string",
        "s.toml:9:1: unknown key `max_p2p_rtt` in [[scene]]; did you mean `max_p2p_rtt_ms`?",
        "s.toml:10:1: unknown key `zzzzzzz` in [[scene]]; known keys: id, group_size, matchmaker, max_server_rtt_ms, max_p2p_rtt_ms, probe_timeout_ms, waitroom_timeout_ms, timeout_message, timeout_redirect_url, hide_lobby_count, reconnect_grace_ms, force_relay, game_allowance_ms",
        "s.toml:13:14: group_size must be a whole number (an integer, without quotes), found a string",
        "s.toml:15:6: scene id `bad id` contains ' '; it names the research record's folder, so use 1 to 64 characters from A-Z a-z 0-9 . _ -",
        "s.toml:15:6: duplicate scene id `bad id` (first defined on line 3); scene ids must be unique",
        "s.toml:17:3: unknown key `ice_server` in the top level; did you mean `ice_servers`?",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn url_and_turn_problems_word_for_word() {
    let text = r#"[[scene]]
id = "s"
group_size = 2
matchmaker = "latency_fifo"
max_p2p_rtt_ms = nan
timeout_redirect_url = "ftp://example.org"

[[ice_servers]]
urls = ["stun:ok.example.org", "http://stun.example.org", "stuns:x", "turn://x", "turn:", " stun:x", 3]
username = "only-user"

[[ice_servers]]
urls = []
realm = "x"

[turn]
urls = ["stun:x:1"]
username = "u"
static_auth_secret = ""
credential_ttl_s = 5
"#;
    let (code, out) = check_text("u.toml", text);
    assert_eq!(code, 1);
    let expected = [
        "u.toml:4:14: matchmaker = \"latency_fifo\" needs max_server_rtt_ms: the most two participants' server round-trip times may add up to, in milliseconds (e.g. max_server_rtt_ms = 200)",
        "u.toml:5:18: max_p2p_rtt_ms must be a finite number of milliseconds",
        "u.toml:6:24: timeout_redirect_url `ftp://example.org` does not start with http:// or https://; write a full http:// or https:// URL (e.g. Prolific's completion link), or leave the key out",
        "u.toml:9:32: ICE server URL `http://stun.example.org` must start with stun:, turn: or turns: (e.g. stun:stun.example.org:3478)",
        "u.toml:9:59: ICE server URL `stuns:x` uses stuns:, which browsers do not support; use stun:, turn: or turns:",
        "u.toml:9:70: ICE server URL `turn://x` must not have `//` after the scheme (write turn:host:port)",
        "u.toml:9:82: ICE server URL `turn:` has no host after the scheme",
        "u.toml:9:91: ICE server URL ` stun:x` must start with stun:, turn: or turns: (e.g. stun:stun.example.org:3478)",
        "u.toml:9:102: each entry of urls must be a string, found an integer",
        "u.toml:13:8: urls is empty: give at least one stun:, turn: or turns: URL",
        "u.toml:14:1: unknown key `realm` in [[ice_servers]]; known keys: urls, username, credential",
        "u.toml:16:1: [turn] needs either `username` and `credential` (static credentials) or `static_auth_secret` (coturn's --static-auth-secret; the server then mints short-lived credentials per participant), not both",
        "u.toml:17:8: [turn] urls must be turn: or turns: URLs; `stun:x:1` is not (put STUN servers in [[ice_servers]])",
        "u.toml:20:20: credential_ttl_s must be at least 60 (whole seconds), found 5",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
}

/// At one position, an unknown key comes before what follows from the file's shape.
#[test]
fn top_level_problems_word_for_word() {
    let (code, out) = check_text("t.toml", "zz = 1\nturn = 3\nice_servers = 4\n");
    assert_eq!(code, 1);
    let expected = [
        "t.toml:1:1: unknown key `zz` in the top level; known keys: scene, ice_servers, turn, server",
        "t.toml:1:1: no scenes: add at least one [[scene]] table (see scenes/example.toml)",
        "t.toml:2:8: `turn` must be a table ([turn]), found an integer",
        "t.toml:3:15: `ice_servers` must be an array of tables ([[ice_servers]]), found an integer",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, out) = check(dir.path(), "missing.toml");
    assert_eq!(code, 1);
    assert!(out.starts_with("missing.toml: cannot read: "), "{out}");
}
