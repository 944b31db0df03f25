//! `pairlab check FILE`, the binary itself: its exit code and its output word for word, for
//! a valid file (the description) and for files with many problems (`FILE:LINE:COL: message`
//! lines in file order); and `pairlab serve` logging the same warnings at start.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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
         P2P RTT <= 150 ms (timeout 10000 ms; its connection handed over to the game, kept \
         15000 ms), waitroom timeout 300000 ms then \
         https://app.prolific.com/submissions/complete?cc=EXAMPLE, reconnect grace 10000 ms\n    \
         entry: first server RTT <= 400 ms or entry refused, leave button after 60000 ms\n    \
         game: tick 33 ms, 3 episode(s) of 10000 ms, input delay 2 frame(s), quality every 2000 \
         ms (warning > 150 ms, critical > 300 ms), ICE restart after 5000 ms disconnected (10000 \
         ms per attempt), a page hidden > 30000 ms ends the game, 3 own setting(s) (arena, \
         speed, targets)\n    \
         outcome completed: code C1A2B3C4, then \
         https://app.prolific.com/submissions/complete?cc={completion_code}, \"Thank you! You \
         will now be sent back to Prolific.\"\n    \
         outcome partner_lost: code PARTNER1, then \
         https://app.prolific.com/submissions/complete?cc={completion_code}, \"Your partner \
         could not continue. You will be paid for your time.\"\n    \
         outcome screened_out: code SCREENED, then \
         https://app.prolific.com/submissions/complete?cc={completion_code}\n  \
         scene \"triads\": groups of 3, fifo, no probe, waitroom timeout 600000 ms, reconnect \
         grace 10000 ms, lobby count hidden\n  \
         no TURN relay (participants behind symmetric NATs or strict firewalls cannot connect; \
         see [turn] in scenes/example.toml)\n  \
         ICE server stun:stun.l.google.com:19302 (STUN: browsers learn their public address \
         from it)\n  \
         server: /ws origins: the page's own (http(s):// + Host); X-Forwarded-For ignored; \
         request head within 10000 ms (also the keep-alive idle timeout), at most 16384 bytes; \
         at most 512 HTTP connections, 128 per IP; hello within 10000 ms; no /monitor\n  \
         no site folder: the embedded page is served at /\n"
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
        "s.toml:1:1: unknown key `colour` in the top level; known keys: scene, ice_servers, turn, server, site",
        "s.toml:3:6: scene id `bad id` contains ' '; it names the research record's folder, so use 1 to 64 characters from A-Z a-z 0-9 . _ -",
        "s.toml:4:14: group_size must be at least 2 (participants per game), found 1",
        "s.toml:5:14: unknown matchmaker `fastest`; use \"fifo\" or \"latency_fifo\"",
        "s.toml:6:20: probe_timeout_ms must be greater than 0 (whole milliseconds), found 0",
        "s.toml:7:22: reconnect_grace_ms must be 0 or more (whole milliseconds), found -5",
        "s.toml:8:20: hide_lobby_count must be true or false, found a string",
        "s.toml:9:1: unknown key `max_p2p_rtt` in [[scene]]; did you mean `max_p2p_rtt_ms`?",
        "s.toml:10:1: unknown key `zzzzzzz` in [[scene]]; known keys: id, group_size, matchmaker, max_server_rtt_ms, max_p2p_rtt_ms, probe_timeout_ms, waitroom_timeout_ms, timeout_message, timeout_redirect_url, hide_lobby_count, reconnect_grace_ms, force_relay, probe_handover, game_allowance_ms, max_entry_server_rtt_ms, leave_button_after_ms, game, outcomes",
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
        "t.toml:1:1: unknown key `zz` in the top level; known keys: scene, ice_servers, turn, server, site",
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

/// `pairlab link ID --config FILE [--base URL]`: the signed link's query, or the whole URL; the
/// signature is the one the server checks. Without `link_secret` it says why and exits 1.
#[test]
fn link_prints_a_signed_link() {
    use pairlab_server::core::link::LinkSigner;
    let dir = tempfile::tempdir().expect("temp dir");
    let minimal = "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n";
    let secret = "sixteen-or-more-characters";
    std::fs::write(
        dir.path().join("signed.toml"),
        format!("{minimal}[server]\nlink_secret = \"{secret}\"\n"),
    )
    .expect("write config");
    std::fs::write(dir.path().join("plain.toml"), minimal).expect("write config");
    let link = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pairlab"))
            .arg("link")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run pairlab link");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    let id = pairlab_shared::SubjectId::parse("P1").expect("valid id");
    let sig = LinkSigner::new(secret).sign(&id);
    assert_eq!(
        link(&["P1", "--config", "signed.toml"]),
        (Some(0), format!("subject_id=P1&sig={sig}\n"), String::new())
    );
    let (code, out, _) = link(&[
        "P1",
        "--config",
        "signed.toml",
        "--base",
        "https://study.example.org/?scene_id=s",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        format!("https://study.example.org/?scene_id=s&subject_id=P1&sig={sig}\n")
    );
    let (code, out, err) = link(&["P1", "--config", "plain.toml"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("link_secret"), "{err}");
    let (code, _, err) = link(&["not an id", "--config", "signed.toml"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("subject_id"), "{err}");
}

/// `pairlab serve` logs the warnings `pairlab check` prints, at start.
#[test]
fn serve_logs_the_warnings_of_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = "[[scene]]\nid = \"a\"\ngroup_size = 2\nmatchmaker = \"fifo\"\nforce_relay = true\n";
    std::fs::write(dir.path().join("w.toml"), text).expect("write config");
    let (_, out) = check(dir.path(), "w.toml");
    let warning = out
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("warning: "))
        .expect("pairlab check warns of force_relay without TURN")
        .to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pairlab"))
        .args(["serve", "--config", "w.toml", "--bind", "127.0.0.1:0"])
        .args(["--data-dir", "data"])
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pairlab serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains(&warning) => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    child.kill().expect("stop pairlab serve");
    child.wait().expect("wait for pairlab serve");
    drop(rx);
    reader.join().expect("stderr reader");
    assert!(
        found,
        "serve did not log `{warning}`; its stderr: {seen:#?}"
    );
}

/// The researcher's own options: `[scene.game]`, `[scene.game.settings]`,
/// `[scene.outcomes.<name>]`, `timeout_redirect_url` beside a `waitroom_timeout` url.
#[test]
fn study_problems_word_for_word() {
    let text = r#"[[scene]]
id = "s"
group_size = 2
matchmaker = "fifo"
timeout_redirect_url = "https://x.org/t"
max_entry_server_rtt_ms = 0
[scene.game]
tick_ms = 0
warning_rtt_ms = 300
critical_rtt_ms = 300
episodes = 0
tick_msec = 5
[scene.game.settings]
ratio = nan
[scene.outcomes.waitroom_timeout]
url = "https://x.org/{subject}"
[scene.outcomes.Bad]
code = "x"
[scene.outcomes.done]
url = "ftp://x.org/{subject_id}"
code = "has space"
colour = 1
"#;
    let (code, out) = check_text("g.toml", text);
    assert_eq!(code, 1);
    let expected = [
        "g.toml:6:27: max_entry_server_rtt_ms must be greater than 0 (milliseconds), found 0",
        "g.toml:8:11: tick_ms must be greater than 0 (whole milliseconds), found 0",
        "g.toml:10:19: critical_rtt_ms (300) must be greater than warning_rtt_ms (300): the quality is `warning` above the first and `critical` above the second",
        "g.toml:11:12: episodes must be greater than 0 (whole number), found 0",
        "g.toml:12:1: unknown key `tick_msec` in [scene.game]; did you mean `tick_ms`?",
        "g.toml:14:9: this number is not finite (nan and inf have no JSON form); write a number or a string",
        "g.toml:16:7: outcome url `https://x.org/{subject}` unknown placeholder `{subject}`; use {subject_id}, {game_id}, {player_index}, {study_id}, {session_id}, {completion_code}",
        "g.toml:17:17: outcome name `Bad` must be 1 to 64 characters from a-z 0-9 _ . - (e.g. [scene.outcomes.completed], [scene.outcomes.screened_out])",
        "g.toml:20:7: outcome url `ftp://x.org/{subject_id}` is not an http:// or https:// URL once its placeholders are filled (scheme `ftp`, filled: ftp://x.org/5f1a2b3c4d5e6f7a8b9c0d1e)",
        "g.toml:21:8: a completion code must be 1 to 128 characters without whitespace, found \"has space\"",
        "g.toml:22:1: unknown key `colour` in [scene.outcomes.<name>]; known keys: url, code, message",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");
}

/// Both `timeout_redirect_url` and a `waitroom_timeout` outcome URL: one must go. A `[site]`
/// folder that does not exist fails the check; one that does is named, with or without its
/// index.html.
#[test]
fn timeout_url_twice_and_the_site_folder() {
    let scene = "[[scene]]\nid = \"s\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n";
    let text = format!(
        "{scene}timeout_redirect_url = \"https://x.org/t\"\n\
         [scene.outcomes.waitroom_timeout]\nurl = \"https://x.org/u\"\n"
    );
    let (code, out) = check_text("w.toml", &text);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "w.toml:5:24: timeout_redirect_url and [scene.outcomes.waitroom_timeout] both say where \
         a timed-out participant goes; keep one (timeout_redirect_url is the waitroom_timeout \
         outcome's url)\n"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("c.toml"),
        format!("{scene}[site]\ndir = \"my-study/\"\n"),
    )
    .unwrap();
    let (code, out) = check(dir.path(), "c.toml");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("c.toml: the site folder") && l.contains("my-study")),
        "{out}"
    );
    std::fs::create_dir(dir.path().join("my-study")).unwrap();
    let (code, out) = check(dir.path(), "c.toml");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(no index.html: the embedded page stays at /)"),
        "{out}"
    );
    std::fs::write(dir.path().join("my-study/index.html"), "<p>hi</p>").unwrap();
    let (_, out) = check(dir.path(), "c.toml");
    assert!(out.contains("(its index.html is the page)"), "{out}");
}
