//! [`ConfigFile::describe`]: the summary `pairlab check` prints for a valid config, so that a
//! researcher can read back what the server will do with their file.

use pairlab_shared::GameSettings;

use super::types::{
    AllowedOrigins, Config, ConfigFile, MatchmakerKind, SceneConfig, ServerConfig, TurnAuth,
    DEFAULT_STUN_URL,
};

impl ConfigFile {
    /// [`Config::describe`], then the `[server]` settings on one line (defaults included):
    ///
    /// ```text
    ///   server: /ws origins: the page's own (http(s):// + Host); X-Forwarded-For ignored; …
    /// ```
    pub fn describe(&self) -> String {
        format!(
            "{}  server: {}\n",
            self.config.describe(),
            describe_server(&self.server)
        )
    }
}

/// The `[server]` settings in words.
fn describe_server(s: &ServerConfig) -> String {
    let origins = match &s.allowed_origins {
        AllowedOrigins::SameHost => "the page's own (http(s):// + Host)".to_owned(),
        AllowedOrigins::Any => "any".to_owned(),
        AllowedOrigins::List(list) if list.is_empty() => {
            "none (only clients without Origin)".to_owned()
        }
        AllowedOrigins::List(list) => list.join(", "),
    };
    let proxies = if s.trusted_proxies.is_empty() {
        "X-Forwarded-For ignored".to_owned()
    } else {
        let list: Vec<String> = s.trusted_proxies.iter().map(ToString::to_string).collect();
        format!("X-Forwarded-For believed from {}", list.join(", "))
    };
    let monitor = match (&s.monitor_token, s.monitor_subject_ids) {
        (None, _) => "no /monitor".to_owned(),
        (Some(_), false) => "/monitor?token=… (participants as aliases)".to_owned(),
        (Some(_), true) => "/monitor?token=… (showing subject ids)".to_owned(),
    };
    format!(
        "/ws origins: {origins}; {proxies}; request head within {} ms (also the keep-alive \
         idle timeout), at most {} bytes; at most {} HTTP connections, {} per IP; hello \
         within {} ms; {monitor}",
        s.header_read_timeout_ms,
        s.max_header_bytes,
        s.max_http_connections,
        s.max_http_connections_per_ip,
        s.hello_timeout_ms,
    )
}

impl Config {
    /// A human-readable description, one line per scene, warning, TURN server and ICE
    /// server (and one for signed links), each indented by two spaces and ending in a
    /// newline. `pairlab check` prints it under `FILE: ok, N scene(s)`.
    ///
    /// ```text
    ///   scene "pairs" (default): groups of 2, latency_fifo, server RTT sum <= 200 ms, probe: …
    ///   warning: scene "pairs" has force_relay = true but there is no TURN server …
    ///   TURN turn:turn.example.org:3478 (static credentials)
    ///   ICE server stun:stun.l.google.com:19302 (STUN: browsers learn their public address …)
    ///   signed participant links: a hello needs its link's signature (`pairlab link ID`)
    /// ```
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        let warnings = self.warnings();
        for (i, scene) in self.scenes.iter().enumerate() {
            lines.push(format!("scene {}", describe_scene(scene, i == 0)));
            lines.extend(describe_study(scene).into_iter().map(|l| format!("  {l}")));
            for warning in warnings.iter().filter(|w| w.scene_id() == scene.id) {
                lines.push(format!("warning: {warning}"));
            }
        }
        if self.ice_servers.is_empty() && self.turn.is_none() {
            lines.push(format!(
                "no ICE servers (browsers use their own addresses only: participants behind \
                 different NATs cannot connect; the embedded default has the public STUN \
                 server {DEFAULT_STUN_URL})"
            ));
        } else if !self.has_turn_relay() {
            lines.push(
                "no TURN relay (participants behind symmetric NATs or strict firewalls cannot \
                 connect; see [turn] in scenes/example.toml)"
                    .to_owned(),
            );
        }
        if let Some(turn) = &self.turn {
            let auth = match &turn.auth {
                TurnAuth::Static { .. } => "static credentials".to_owned(),
                TurnAuth::Secret {
                    credential_ttl_s, ..
                } => format!(
                    "credentials minted per participant from the shared secret, valid \
                     {credential_ttl_s} s"
                ),
            };
            lines.push(format!("TURN {} ({auth})", turn.urls.join(", ")));
        }
        for ice in &self.ice_servers {
            let stun_only = ice.urls.iter().all(|url| {
                url.get(..5)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("stun:"))
            });
            let credentials = if ice.username.is_some() {
                " (with credentials)"
            } else if stun_only {
                " (STUN: browsers learn their public address from it)"
            } else {
                ""
            };
            lines.push(format!("ICE server {}{credentials}", ice.urls.join(", ")));
        }
        if self.server.link_secret.is_some() {
            lines.push(
                "signed participant links: a hello needs its link's signature (`pairlab link ID`)"
                    .to_owned(),
            );
        }
        lines.iter().map(|line| format!("  {line}\n")).collect()
    }
}

/// The researcher's options of a scene, one line each, only those set: entry rules, the game
/// settings when they differ from the defaults, and each outcome.
fn describe_study(s: &SceneConfig) -> Vec<String> {
    let mut lines = Vec::new();
    let mut entry = Vec::new();
    if let Some(ms) = s.max_entry_server_rtt_ms {
        entry.push(format!("first server RTT <= {ms} ms or entry refused"));
    }
    if let Some(ms) = s.leave_button_after_ms {
        entry.push(format!("leave button after {ms} ms"));
    }
    if !entry.is_empty() {
        lines.push(format!("entry: {}", entry.join(", ")));
    }
    let g = &s.game;
    if *g != GameSettings::default() {
        let hidden = match g.max_hidden_ms {
            Some(ms) => format!("a page hidden > {ms} ms ends the game"),
            None => "hidden pages only recorded".to_owned(),
        };
        let settings = match g.settings.len() {
            0 => String::new(),
            n => format!(
                ", {n} own setting(s) ({})",
                g.settings.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        let test_mode = if g.url_overrides {
            ", TEST MODE: the page may take settings from its URL (url_overrides)"
        } else {
            ""
        };
        lines.push(format!(
            "game: tick {} ms, {} episode(s) of {} ms, input delay {} frame(s), quality every {} \
             ms (warning > {} ms, critical > {} ms), ICE restart after {} ms disconnected ({} ms \
             per attempt), {hidden}{settings}{test_mode}",
            g.tick_ms,
            g.episodes,
            g.episode_ms,
            g.input_delay_frames,
            g.quality_interval_ms,
            g.warning_rtt_ms,
            g.critical_rtt_ms,
            g.disconnect_grace_ms,
            g.restart_timeout_ms,
        ));
    }
    for (name, o) in &s.outcomes {
        let mut parts = Vec::new();
        if let Some(code) = &o.code {
            parts.push(format!("code {code}"));
        }
        if let Some(url) = &o.url {
            parts.push(format!("then {}", url.as_str()));
        }
        if let Some(message) = &o.message {
            parts.push(format!("{message:?}"));
        }
        if parts.is_empty() {
            parts.push("no code, no URL".to_owned());
        }
        lines.push(format!("outcome {name}: {}", parts.join(", ")));
    }
    lines
}

/// `"pairs" (default): groups of 2, latency_fifo, …`: a scene's rules in words.
fn describe_scene(s: &SceneConfig, is_default: bool) -> String {
    let default = if is_default { " (default)" } else { "" };
    let rtt = match (s.matchmaker, s.max_server_rtt_ms) {
        (MatchmakerKind::LatencyFifo, Some(ms)) => format!(", server RTT sum <= {ms} ms"),
        _ => String::new(),
    };
    let probe = match (s.max_p2p_rtt_ms, s.probe_keep_ms()) {
        (Some(ms), Some(keep_ms)) => format!(
            "probe: P2P RTT <= {ms} ms (timeout {} ms; its connection handed over to the game, \
             kept {keep_ms} ms)",
            s.probe_timeout_ms
        ),
        (Some(ms), None) => format!(
            "probe: P2P RTT <= {ms} ms (timeout {} ms; no handover: the game opens its own \
             connection)",
            s.probe_timeout_ms
        ),
        (None, _) => "no probe".to_owned(),
    };
    let redirect = match &s.timeout_redirect_url {
        Some(url) => format!(" then {url}"),
        None => String::new(),
    };
    let extras = match (s.hide_lobby_count, s.force_relay) {
        (true, true) => ", lobby count hidden, game forced through TURN relay",
        (true, false) => ", lobby count hidden",
        (false, true) => ", game forced through TURN relay",
        (false, false) => "",
    };
    format!(
        "{:?}{default}: groups of {}, {}{rtt}, {probe}, waitroom timeout {} ms{redirect}, \
         reconnect grace {} ms{extras}",
        s.id,
        s.group_size,
        s.matchmaker.as_str(),
        s.waitroom_timeout_ms,
        s.reconnect_grace_ms,
    )
}

#[cfg(test)]
mod tests {
    use crate::config::tests::scene_toml;
    use crate::config::{Config, ConfigFile};

    /// The `[server]` line: defaults, then every key set.
    #[test]
    fn describes_the_server_table() {
        let scene = "[[scene]]\nid = \"a\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n";
        let file = ConfigFile::from_toml_str(scene).unwrap();
        assert!(file.describe().ends_with(
            "\n  server: /ws origins: the page's own (http(s):// + Host); X-Forwarded-For \
             ignored; request head within 10000 ms (also the keep-alive idle timeout), at most \
             16384 bytes; at most 512 HTTP connections, 128 per IP; hello within 10000 ms; no \
             /monitor\n"
        ));
        let text = format!(
            "{scene}[server]\nallowed_origins = [\"https://Study.example.org\", \
             \"http://127.0.0.1:8080\"]\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\n\
             header_read_timeout_ms = 5000\nmax_header_bytes = 8192\nmax_http_connections = 100\n\
             max_http_connections_per_ip = 10\nhello_timeout_ms = 3000\n\
             monitor_token = \"0123456789abcdef\"\n"
        );
        let file = ConfigFile::from_toml_str(&text).unwrap();
        assert!(file.describe().ends_with(
            "\n  server: /ws origins: https://study.example.org, http://127.0.0.1:8080; \
             X-Forwarded-For believed from 127.0.0.1, ::1; request head within 5000 ms (also \
             the keep-alive idle timeout), at most 8192 bytes; at most 100 HTTP connections, \
             10 per IP; hello within 3000 ms; /monitor?token=… (participants as aliases)\n"
        ));
    }

    /// The description of a config with every kind of line, word for word as `pairlab check`
    /// printed it before it moved here.
    #[test]
    fn describes_scenes_warnings_turn_and_ice_servers() {
        let a = scene_toml(
            "a",
            2,
            "latency_fifo",
            &[
                "max_server_rtt_ms = 250.5",
                "timeout_redirect_url = \"https://x.org/done\"",
                "force_relay = true",
                "hide_lobby_count = true",
            ],
        );
        let b = scene_toml(
            "b",
            3,
            "fifo",
            &["max_p2p_rtt_ms = 0", "force_relay = true"],
        );
        let text = format!(
            r#"
{a}
{b}
[[ice_servers]]
urls = ["turn:t.example.org:3478"]
username = "u"
credential = "p"

[turn]
urls = ["turn:127.0.0.1:3478", "turns:t.example.org:5349"]
static_auth_secret = "s"
credential_ttl_s = 600
"#
        );
        let config = Config::from_toml_str(&text).unwrap();
        assert_eq!(
            config.describe(),
            "  scene \"a\" (default): groups of 2, latency_fifo, server RTT sum <= 250.5 ms, \
             no probe, waitroom timeout 300000 ms then https://x.org/done, reconnect grace \
             10000 ms, lobby count hidden, game forced through TURN relay\n  \
             scene \"b\": groups of 3, fifo, probe: P2P RTT <= 0 ms (timeout 10000 ms; its \
             connection handed over to the game, kept 15000 ms), waitroom timeout 300000 ms, \
             reconnect grace 10000 ms, game forced through TURN relay\n  \
             TURN turn:127.0.0.1:3478, turns:t.example.org:5349 (credentials minted per \
             participant from the shared secret, valid 600 s)\n  \
             ICE server turn:t.example.org:3478 (with credentials)\n"
        );
    }

    #[test]
    fn warns_of_a_forced_relay_without_turn() {
        let text = "[[scene]]\nid = \"a\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n\
                    force_relay = true\n[[scene]]\nid = \"b\"\ngroup_size = 2\n\
                    matchmaker = \"fifo\"\n";
        let config = Config::from_toml_str(text).unwrap();
        assert_eq!(
            config.describe(),
            "  scene \"a\" (default): groups of 2, fifo, no probe, waitroom timeout 300000 ms, \
             reconnect grace 10000 ms, game forced through TURN relay\n  \
             warning: scene \"a\" has force_relay = true but there is no TURN server ([turn], \
             or a turn: URL in [[ice_servers]]): its games cannot connect\n  \
             scene \"b\": groups of 2, fifo, no probe, waitroom timeout 300000 ms, reconnect \
             grace 10000 ms\n  \
             no ICE servers (browsers use their own addresses only: participants behind \
             different NATs cannot connect; the embedded default has the public STUN server \
             stun:stun.l.google.com:19302)\n"
        );
    }

    /// A `turn:` URL with credentials in `[[ice_servers]]` is a relay too: no warning.
    #[test]
    fn a_turn_url_in_ice_servers_is_a_relay_for_force_relay() {
        let text = "[[scene]]\nid = \"a\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n\
                    force_relay = true\n[[ice_servers]]\nurls = [\"stun:s.example.org\", \
                    \"TURNS:t.example.org:5349\"]\nusername = \"u\"\ncredential = \"p\"\n";
        let config = Config::from_toml_str(text).unwrap();
        assert_eq!(config.warnings(), vec![]);
        assert_eq!(
            config.describe(),
            "  scene \"a\" (default): groups of 2, fifo, no probe, waitroom timeout 300000 ms, \
             reconnect grace 10000 ms, game forced through TURN relay\n  \
             ICE server stun:s.example.org, TURNS:t.example.org:5349 (with credentials)\n"
        );
    }

    /// Test mode (`url_overrides`) is a warning under its scene, after the scene's own lines.
    #[test]
    fn warns_of_test_mode() {
        let text = "[[scene]]\nid = \"a\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n\
                    [scene.game]\nurl_overrides = true\n";
        let config = Config::from_toml_str(text).unwrap();
        let d = config.describe();
        let lines: Vec<&str> = d.lines().collect();
        assert!(
            lines[1].starts_with("    game: ") && lines[1].contains("TEST MODE"),
            "{d}"
        );
        assert_eq!(
            lines[2],
            "  warning: scene \"a\" has [scene.game] url_overrides = true (test mode): \
             participants can change the game's settings through their link; set it to false \
             for a study"
        );
    }

    /// STUN without TURN: the description says who still cannot connect.
    #[test]
    fn stun_without_turn_says_so() {
        let config = Config::embedded_default();
        assert!(config.describe().ends_with(
            "\n  no TURN relay (participants behind symmetric NATs or strict firewalls cannot \
             connect; see [turn] in scenes/example.toml)\n  \
             ICE server stun:stun.l.google.com:19302 (STUN: browsers learn their public \
             address from it)\n"
        ));
    }

    #[test]
    fn static_turn_credentials() {
        let text = "[[scene]]\nid = \"a\"\ngroup_size = 2\nmatchmaker = \"fifo\"\n[turn]\n\
                    urls = \"turn:127.0.0.1:3478\"\nusername = \"u\"\ncredential = \"p\"\n";
        let config = Config::from_toml_str(text).unwrap();
        assert!(config
            .describe()
            .ends_with("\n  TURN turn:127.0.0.1:3478 (static credentials)\n"));
    }
}
