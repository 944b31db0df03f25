//! The validated configuration: what the rest of the server reads. A [`Config`] made by
//! [`Config::from_toml_str`] obeys every rule of `checks`, so nothing downstream re-validates;
//! tests and the embedded default build these types directly.

use std::collections::BTreeMap;

use pairlab_shared::{GameSettings, IceServer, Outcome};

use super::outcome::UrlTemplate;

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
    /// Every matchmaker, in the order the config file's documentation lists them.
    pub const ALL: [MatchmakerKind; 2] = [MatchmakerKind::Fifo, MatchmakerKind::LatencyFifo];

    /// The name used in the config file and the research record.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchmakerKind::Fifo => "fifo",
            MatchmakerKind::LatencyFifo => "latency_fifo",
        }
    }

    /// The matchmaker a config file names (the inverse of [`MatchmakerKind::as_str`]).
    pub fn from_name(name: &str) -> Option<MatchmakerKind> {
        MatchmakerKind::ALL.into_iter().find(|k| k.as_str() == name)
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
    /// "relay"`); the scene's probes use the same policy, so that they measure the game's path.
    pub force_relay: bool,
    /// Whether an accepted probe's connection becomes the game connection of its pair
    /// (PROTOCOL.md, "Handover"): every `probe_prepare` then carries
    /// [`SceneConfig::probe_keep_ms`]. `false`: probe connections close after their result and
    /// games open fresh ones. Only meaningful with `max_p2p_rtt_ms` (default `true`).
    pub probe_handover: bool,
    /// How long a game of this scene may need the TURN relay, ms, from `game_start`
    /// (reconnects included; default [`DEFAULT_GAME_ALLOWANCE_MS`], an hour). The server does
    /// not end games after it: it only sizes the default lifetime of minted TURN credentials
    /// ([`Config::default_credential_ttl_s`]).
    pub game_allowance_ms: u64,
    /// The game's settings (`[scene.game]`, with `[scene.game.settings]`), delivered in
    /// `game_start.game`; its `max_hidden_ms` is also the server's attention rule.
    pub game: GameSettings,
    /// Where each outcome sends a participant (`[scene.outcomes.<name>]`), by outcome name.
    /// Without a `waitroom_timeout` entry with a `url`, `timeout_redirect_url` is that
    /// outcome's URL (as written; both is a config error).
    pub outcomes: BTreeMap<String, OutcomeConfig>,
    /// Entry rule: a new participant whose first server-RTT median (over the samples that
    /// admit them to the waitroom) is above this, ms, is refused (`entry_refused`). `None`: no
    /// rule.
    pub max_entry_server_rtt_ms: Option<f64>,
    /// When the waitroom's leave button appears, ms after entering (`welcome`); `None`: never.
    pub leave_button_after_ms: Option<u64>,
}

/// One `[scene.outcomes.<name>]` table: where the participant goes and what they are told.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutcomeConfig {
    /// The URL to send the participant to, with placeholders (see [`UrlTemplate`]).
    pub url: Option<UrlTemplate>,
    /// The completion code (e.g. Prolific's), also the `{completion_code}` placeholder.
    pub code: Option<String>,
    /// The sentence shown to the participant; `None`: the server's own for that outcome.
    pub message: Option<String>,
}

/// The outcomes a scene may name beyond its own: the ones the server decides, and
/// `completed`.
pub fn builtin_outcomes() -> impl Iterator<Item = &'static str> {
    std::iter::once(Outcome::COMPLETED).chain(Outcome::SERVER_DECIDED)
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
            probe_handover: true,
            game_allowance_ms: DEFAULT_GAME_ALLOWANCE_MS,
            game: GameSettings::default(),
            outcomes: BTreeMap::new(),
            max_entry_server_rtt_ms: None,
            leave_button_after_ms: None,
        }
    }

    /// How long a TURN credential minted for this scene must stay valid, s (whole seconds,
    /// rounded up): credentials are minted when they are handed out, in `probe_prepare` and
    /// in `game_start`, so the longest use of one is a probe (`probe_timeout_ms`) or a game
    /// (`game_allowance_ms`, which covers a resumed session being given its `game_start`
    /// again); the time spent in the waitroom comes before either. With the handover
    /// ([`SceneConfig::probe_keep_ms`]), a probe's credential goes on serving its connection
    /// in the game, which starts at most `probe_timeout_ms` after `probe_prepare` (the
    /// decision's deadline): then the two add up.
    pub fn credential_lifetime_s(&self) -> u64 {
        let longest = if self.probe_keep_ms().is_some() {
            self.probe_timeout_ms + self.game_allowance_ms
        } else {
            self.probe_timeout_ms.max(self.game_allowance_ms)
        };
        longest.div_ceil(1000)
    }

    /// `probe_prepare.keep_ms` of this scene's probes: how long the browser keeps a probe's
    /// connection open after its `probe_result`, for the game to adopt, ms. `None` without a
    /// probe (`max_p2p_rtt_ms`) or with `probe_handover = false`.
    ///
    /// The value is `probe_timeout_ms` + [`PROBE_KEEP_MARGIN_MS`]: a member's result comes
    /// after its `probe_prepare`, and the group is decided, at the latest, at the deadline
    /// `probe_timeout_ms` after the `probe_prepare`s of its round (all sent at once); the
    /// `game_start` or `probe_close` that ends the wait goes out with the decision. So the
    /// window covers the rest of the decision, whatever the other pairs take, plus the margin
    /// for that message to arrive. The window only matters when the message never comes (the
    /// signalling connection is lost): the page then closes the connection by itself.
    pub fn probe_keep_ms(&self) -> Option<u64> {
        (self.max_p2p_rtt_ms.is_some() && self.probe_handover)
            .then(|| self.probe_timeout_ms.saturating_add(PROBE_KEEP_MARGIN_MS))
    }
}

/// The part of [`SceneConfig::probe_keep_ms`] beyond the probe deadline, ms: time for the
/// decision's `game_start` or `probe_close` to reach the page (a slow signalling path, a busy
/// server), with room to spare: 5 s.
pub const PROBE_KEEP_MARGIN_MS: u64 = 5_000;

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

/// Default `game_allowance_ms`: an hour, longer than the games studies run in a browser.
pub const DEFAULT_GAME_ALLOWANCE_MS: u64 = 3_600_000;

/// Shortest accepted `credential_ttl_s`, seconds: a minted credential must still be valid
/// when the browser uses it for a probe or a game.
pub const MIN_CREDENTIAL_TTL_S: u64 = 60;

/// Shortest accepted `[server] link_secret`, characters: long enough that the HMAC key cannot
/// be guessed.
pub const MIN_LINK_SECRET_LEN: usize = 16;

/// The keys of the server-wide `[server]` table that the core reads (the network shell's are
/// in [`ServerConfig`]; one reader fills both).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// The key of signed participant links (`core::link`): with it, a `hello` must carry the
    /// HMAC-SHA256 of its `subject_id` under this key, or it is refused (`invalid_link`).
    pub link_secret: Option<String>,
}

/// The public STUN server of the embedded default (`scenes/default.toml`), the one the
/// original framework always added: browsers behind home routers learn their public address
/// from it.
pub const DEFAULT_STUN_URL: &str = "stun:stun.l.google.com:19302";

/// Longest accepted scene id, characters (it becomes a folder name).
pub const SCENE_ID_MAX_LEN: usize = 64;

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
    /// The `[server]` keys the core reads (`link_secret`).
    pub server: ServerOptions,
}

impl Config {
    /// The scene a `hello` names, or the first scene for a `hello` without `scene_id`.
    pub fn scene(&self, id: Option<&str>) -> Option<&SceneConfig> {
        match id {
            None => self.scenes.first(),
            Some(id) => self.scenes.iter().find(|s| s.id == id),
        }
    }

    /// The lifetime of minted TURN credentials when `[turn]` does not set `credential_ttl_s`,
    /// s: the longest [`SceneConfig::credential_lifetime_s`] of `scenes`, and at least
    /// [`MIN_CREDENTIAL_TTL_S`]. With the defaults (10 s probes, one-hour games): 3600 s.
    pub fn default_credential_ttl_s(scenes: &[SceneConfig]) -> u64 {
        scenes
            .iter()
            .map(SceneConfig::credential_lifetime_s)
            .max()
            .unwrap_or(0)
            .max(MIN_CREDENTIAL_TTL_S)
    }
}

/// Default [`ServerConfig::header_read_timeout_ms`]: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default [`ServerConfig::max_header_bytes`]: 16 KiB (a browser's request head is 1–2 KB).
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 16 * 1024;
/// Smallest accepted [`ServerConfig::max_header_bytes`]: hyper's smallest read buffer, 8 KiB.
pub const MIN_MAX_HEADER_BYTES: u64 = 8 * 1024;
/// Default [`ServerConfig::max_http_connections`].
pub const DEFAULT_MAX_HTTP_CONNECTIONS: u64 = 512;
/// Default [`ServerConfig::max_http_connections_per_ip`].
pub const DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP: u64 = 128;
/// Default [`ServerConfig::hello_timeout_ms`]: 10 s.
pub const DEFAULT_HELLO_TIMEOUT_MS: u64 = 10_000;

/// Which `Origin`s may open `/ws` (RFC 6455 §4.1, §10.2: browsers send the page's origin on
/// every WebSocket handshake; a request without `Origin` is not from a browser page and is
/// always let through, since a non-browser client can write any `Origin` anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// The page's own origin: `http://HOST` or `https://HOST`, where HOST is the request's
    /// `Host` header as sent (port included when the URL has one), compared without case.
    SameHost,
    /// These origins (`scheme://host[:port]`, lower case), and nothing else.
    List(Vec<String>),
    /// Any origin (`allowed_origins = ["*"]`).
    Any,
}

/// The server-wide `[server]` table's keys for the network shell: how it defends itself on the
/// open internet. The core never sees it; the table's `link_secret` is the core's, in
/// [`Config::server`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The `Origin`s accepted on `/ws`; others get 403.
    pub allowed_origins: AllowedOrigins,
    /// Reverse proxies whose `X-Forwarded-For` is believed: for a connection from one of
    /// these, the client is the rightmost `X-Forwarded-For` entry that is not itself one of
    /// these. Empty: `X-Forwarded-For` is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long a client has to send a complete request head, ms, from the moment the server
    /// waits for it: after the connection opens, and again after each response (so it is
    /// also the idle timeout of a kept-alive connection).
    pub header_read_timeout_ms: u64,
    /// The largest request head accepted, bytes (the connection's read buffer); a larger one
    /// gets 431.
    pub max_header_bytes: u64,
    /// The most connections that are not (yet) WebSockets, all clients together; one more
    /// evicts (closes) the connection that has waited longest for a request head, or, when
    /// every one is busy with a request, is answered 503 and closed at once.
    pub max_http_connections: u64,
    /// The most connections that are not (yet) WebSockets from one client IP address; one
    /// more is answered 429 and closed at once.
    pub max_http_connections_per_ip: u64,
    /// How long a WebSocket may stay open without being welcomed (an accepted `hello`), ms;
    /// WebSocket pings do not extend it.
    pub hello_timeout_ms: u64,
    /// The bearer token `GET /metrics` requires (`Authorization: Bearer <token>`, else 401);
    /// `None`: no `/metrics` (404) and no metrics kept.
    pub metrics_token: Option<String>,
    /// The token the live monitor page requires (`GET /monitor?token=<token>`, else 401);
    /// `None`: no `/monitor` (404) and no monitor state kept.
    pub monitor_token: Option<String>,
    /// Whether the monitor page shows participants' subject ids; `false` (the default): each
    /// id is shown as an alias (`W-3`), since ids are personal data.
    pub monitor_subject_ids: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            allowed_origins: AllowedOrigins::SameHost,
            trusted_proxies: Vec::new(),
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_http_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            max_http_connections_per_ip: DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP,
            hello_timeout_ms: DEFAULT_HELLO_TIMEOUT_MS,
            metrics_token: None,
            monitor_token: None,
            monitor_subject_ids: false,
        }
    }
}

/// Everything a config file says: the study ([`Config`], what the core runs, with the
/// `[server]` table's `link_secret`) and the rest of the `[server]` table ([`ServerConfig`],
/// what the network shell runs with).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    /// Scenes, ICE servers and TURN.
    pub config: Config,
    /// The `[server]` table (its defaults when the file has none).
    pub server: ServerConfig,
    /// `[site] dir`, as written: the researcher's own page folder, relative to the config
    /// file's folder (the caller resolves it; `pairlab serve --site` overrides it).
    pub site_dir: Option<String>,
}
