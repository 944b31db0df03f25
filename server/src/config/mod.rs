//! The researcher's configuration: scenes, ICE servers and TURN, and the server's own
//! `[server]` limits, from TOML.
//!
//! [`ConfigFile::from_toml_str`] builds a file's validated form from its text and reports
//! every problem with its line and column: a [`Config`] (the study: what the core runs, with
//! the `[server]` table's `link_secret` in [`ServerOptions`]) and a [`ServerConfig`] (the rest
//! of the `[server]` table: what the network shell runs with; the core never sees it). [`ConfigFile::describe`] says in words what a valid file will do
//! (`pairlab check`).
//!
//! The parts:
//! - `types`: the validated types ([`ConfigFile`], [`Config`], [`SceneConfig`],
//!   [`TurnConfig`], [`ServerConfig`], …) and their
//!   defaults. Nothing else in the server needs to know TOML exists.
//! - `parse`: TOML text → [`Config`]. Reads each table with its keys' and values' positions,
//!   names each key once (the keys a table's reader asks for are its known keys, so an
//!   unknown one is found without a second list), reports wrong types, and collects every
//!   problem as a [`ConfigError`] in file order.
//! - `checks`: the rules on well-typed values (scene ids, thresholds, URLs, TURN
//!   credentials, unique ids) and the [`ConfigWarning`]s of a valid config. `parse` calls
//!   them and places their errors.
//! - `suggest`: "did you mean …?" for a misspelt key, by edit distance (`strsim`).
//! - `describe`: [`Config::describe`], the summary `pairlab check` prints.
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
//! force_relay = false            # true: games (and their probes) only through a TURN relay
//! probe_handover = true          # false: the game opens its own connection after the probe
//! game_allowance_ms = 3600000    # > 0; how long a game may use TURN (sizes credential_ttl_s)
//!
//! [[ice_servers]]                # server-wide, optional, any number
//! urls = ["turn:turn.example.org:3478"]   # stun:, turn: or turns: (RFC 7064, RFC 7065)
//! username = "user"              # required with turn:/turns:
//! credential = "secret"
//!
//! [turn]                         # server-wide, optional: the TURN server pairlab hands out
//! urls = ["turn:turn.example.org:3478"]   # turn: or turns: only
//! static_auth_secret = "…"       # coturn's; or username + credential (static)
//! credential_ttl_s = 3600        # ≥ 60, with static_auth_secret only; default: the longest
//!                                # probe_timeout_ms or game_allowance_ms of the scenes
//!                                # (their sum with probe_handover)
//!
//! [server]                       # optional: the HTTP side's defences (defaults shown)
//! allowed_origins = ["https://study.example.org"]   # default: the page's own origin; "*": any
//! trusted_proxies = ["127.0.0.1"]                   # default none: X-Forwarded-For ignored
//! header_read_timeout_ms = 10000 # ≥ 1; also the idle timeout between requests
//! max_header_bytes = 16384       # ≥ 8192
//! max_http_connections = 512     # ≥ 1; connections not (yet) WebSockets; full: evict the idlest
//! max_http_connections_per_ip = 128  # ≥ 1
//! hello_timeout_ms = 10000       # ≥ 1; a WebSocket must be welcomed within this
//! link_secret = "…"              # optional, ≥ 16 characters: hello must carry its link's
//!                                # signature (`pairlab link ID`)
//! metrics_token = "…"            # optional, ≥ 16 characters: serves /metrics to
//!                                # `Authorization: Bearer …` (else 401); absent: no /metrics
//! monitor_token = "…"            # optional, ≥ 16 characters: serves the live monitor page at
//!                                # /monitor?token=… (else 401); absent: no /monitor
//! monitor_subject_ids = false    # default false: the monitor shows aliases (W-3), not ids
//! ```

mod checks;
mod describe;
pub mod outcome;
mod parse;
mod suggest;
mod types;

pub use checks::ConfigWarning;
pub use parse::{ConfigError, ConfigErrors};
pub use types::{
    builtin_outcomes, AllowedOrigins, Config, ConfigFile, MatchmakerKind, OutcomeConfig,
    SceneConfig, ServerConfig, ServerOptions, TurnAuth, TurnConfig, DEFAULT_GAME_ALLOWANCE_MS,
    DEFAULT_HEADER_READ_TIMEOUT_MS, DEFAULT_HELLO_TIMEOUT_MS, DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HTTP_CONNECTIONS, DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP, DEFAULT_STUN_URL,
    MIN_CREDENTIAL_TTL_S, MIN_LINK_SECRET_LEN, MIN_MAX_HEADER_BYTES, PROBE_KEEP_MARGIN_MS,
    SCENE_ID_MAX_LEN,
};

#[cfg(test)]
mod tests;
