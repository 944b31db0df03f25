//! Pieces of the game-connection end-to-end tests (`tests/tests/game_e2e.rs`): the page's game
//! view ([`GameView`], read with [`Browser::game_view`]), a TURN relay the tests can slow down
//! and cut ([`RelayRig`]: coturn behind a [`DelayProxy`]), the scene files that point the server
//! at it ([`scene_toml`]), and readers of the game's research-record lines.
//!
//! The game part of the page's DOM contract: `<body data-game-phase>` (`connecting`,
//! `playing`, `restarting`, `finished`, `ended`), `#connection-type` (`direct`/`relay`),
//! `#quality` (`ok`/`warning`/`critical`), `#episode`, `#frames`, `#message` (the text of
//! `game_ended`).
//!
//! The relay path ([`RelayRig`]): both browsers are forced to relay (`force_relay = true`) and
//! the server's `[turn]` table names the PROXY's address, whose upstream is coturn. A datagram
//! from A to B goes A → proxy → coturn (A's allocation) → coturn (B's allocation) → proxy → B:
//! it crosses the proxy twice per direction, so with a delay of D ms each way in the proxy the
//! peers' RTT is about 4·D plus the base RTT (see [`crate::delay_proxy`]), and pausing the proxy cuts the game connection while the WebSocket to the
//! server (TCP, not proxied) stays up.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::delay_proxy::{DelayProxy, ProxyHandle};
use crate::process::Wait;
use crate::record::{events_by, events_of, ResearchEventKind};
use crate::turn::{Coturn, TurnAuth};
use crate::{Browser, HarnessError, Result};

/// What the tests read of the game part of the page. Texts are trimmed `textContent`; `None`
/// when the element (or attribute) is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GameView {
    /// `<body data-state>` (`game` once `game_start` arrived).
    pub state: Option<String>,
    /// `<body data-game-phase>`: `connecting`, `playing`, `restarting`, `finished`, `ended`.
    pub phase: Option<String>,
    /// `#connection-type`: `direct` or `relay` once the connection is up.
    pub connection_type: Option<String>,
    /// `#quality`: `ok`, `warning` or `critical`.
    pub quality: Option<String>,
    /// `#episode`.
    pub episode: Option<String>,
    /// `#frames`.
    pub frames: Option<String>,
    /// `#message`: `game_ended`'s message.
    pub message: Option<String>,
    /// `#error`.
    pub error: Option<String>,
    /// `#game-id`.
    pub game_id: Option<String>,
}

impl GameView {
    /// Whether `data-game-phase` is `phase`.
    pub fn phase_is(&self, phase: &str) -> bool {
        self.phase.as_deref() == Some(phase)
    }

    /// `#frames` as a number (`None` when absent, empty or not a number).
    pub fn frames_n(&self) -> Option<u64> {
        self.frames.as_deref().and_then(|f| f.trim().parse().ok())
    }

    /// `#episode` as a number.
    pub fn episode_n(&self) -> Option<u64> {
        self.episode.as_deref().and_then(|f| f.trim().parse().ok())
    }
}

const GAME_VIEW_JS: &str = r#"
const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent.trim() : null; };
const body = document.body;
return {
  state: body ? body.getAttribute('data-state') : null,
  phase: body ? body.getAttribute('data-game-phase') : null,
  connection_type: text('#connection-type'),
  quality: text('#quality'),
  episode: text('#episode'),
  frames: text('#frames'),
  message: text('#message'),
  error: text('#error'),
  game_id: text('#game-id'),
};
"#;

impl Browser {
    /// Reads the page's [`GameView`] once.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`], [`HarnessError::PageShape`].
    pub async fn game_view(&self) -> Result<GameView> {
        let got = self.execute(GAME_VIEW_JS, Vec::new()).await?;
        serde_json::from_value(got.clone()).map_err(|source| HarnessError::PageShape {
            name: self.name().to_owned(),
            got: got.to_string(),
            source,
        })
    }

    /// Polls the [`GameView`] every [`crate::POLL`] until `done` holds, for at most `timeout`.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] with the last view, or the errors of [`Browser::game_view`].
    pub async fn wait_game(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&GameView) -> bool,
    ) -> Result<GameView> {
        let wait = Wait::new(format!("{}: {what}", self.name()), timeout);
        loop {
            let view = self.game_view().await?;
            if done(&view) {
                return Ok(view);
            }
            wait.tick(format!("{view:?}")).await?;
        }
    }
}

/// coturn on 127.0.0.1 with a [`DelayProxy`] in front of it: the TURN server the browsers are
/// told about is the proxy. Both stop when dropped (the proxy first).
#[derive(Debug)]
pub struct RelayRig {
    proxy: DelayProxy,
    coturn: Coturn,
}

impl RelayRig {
    /// Starts coturn with `auth` and a proxy on `127.0.0.1:<free port>` forwarding to it.
    ///
    /// # Errors
    /// Those of [`Coturn::start`] and [`DelayProxy::start`].
    pub async fn start(auth: TurnAuth) -> Result<RelayRig> {
        let coturn = Coturn::start(auth).await?;
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let proxy = DelayProxy::start(listen, coturn.addr()).await?;
        Ok(RelayRig { proxy, coturn })
    }

    /// The proxy's control.
    pub fn proxy(&self) -> ProxyHandle {
        self.proxy.handle()
    }

    /// The TURN server behind the proxy.
    pub fn coturn(&self) -> &Coturn {
        &self.coturn
    }

    /// The server's `[turn]` table for this rig: `urls = ["turn:<proxy>?transport=udp"]` and the
    /// static credentials, or `static_auth_secret` (the server then mints coturn REST
    /// credentials per participant, `credential_ttl_s` = `ttl_s`).
    pub fn turn_toml(&self, ttl_s: u64) -> String {
        let url = format!("turn:{}?transport=udp", self.proxy.local_addr());
        match self.coturn.auth() {
            TurnAuth::Static { user, pass } => format!(
                "[turn]\nurls = [{}]\nusername = {}\ncredential = {}\n",
                toml_str(&url),
                toml_str(user),
                toml_str(pass)
            ),
            TurnAuth::Secret { secret } => format!(
                "[turn]\nurls = [{}]\nstatic_auth_secret = {}\ncredential_ttl_s = {ttl_s}\n",
                toml_str(&url),
                toml_str(secret)
            ),
        }
    }
}

/// A TOML basic string for `s` (quotes and backslashes escaped; the tests' values have no
/// control characters).
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A scene file with one pair scene `scene_id`: `fifo` matchmaking (no probe) unless
/// `max_p2p_rtt_ms` is given (then `latency_fifo` with a probe), `force_relay` as given, a
/// 60 s waitroom, the game settings `game` (the body of its `[scene.game]` table, e.g.
/// `"episodes = 2\n"`; empty: the defaults), followed by `extra` (e.g.
/// [`RelayRig::turn_toml`]).
pub fn scene_toml(
    scene_id: &str,
    force_relay: bool,
    max_p2p_rtt_ms: Option<u32>,
    game: &str,
    extra: &str,
) -> String {
    let matching = match max_p2p_rtt_ms {
        Some(ms) => format!(
            "matchmaker = \"latency_fifo\"\nmax_server_rtt_ms = 400\nmax_p2p_rtt_ms = {ms}\n"
        ),
        None => "matchmaker = \"fifo\"\n".to_owned(),
    };
    let game = if game.is_empty() {
        String::new()
    } else {
        format!("[scene.game]\n{game}\n")
    };
    format!(
        "[[scene]]\nid = {}\ngroup_size = 2\n{matching}waitroom_timeout_ms = 60000\nforce_relay = {force_relay}\n\n{game}{extra}",
        toml_str(scene_id)
    )
}

/// `p2p_ice_restart` lines with this `outcome` (`started`, `succeeded`, `failed`).
pub fn restarts_with<'a>(events: &'a [Value], outcome: &str) -> Vec<&'a Value> {
    events_of(events, ResearchEventKind::P2pIceRestart)
        .into_iter()
        .filter(|e| e.get("outcome").and_then(Value::as_str) == Some(outcome))
        .collect()
}

/// `p2p_quality` lines at `level` reported by `subject`.
pub fn quality_by<'a>(events: &'a [Value], level: &str, subject: &str) -> Vec<&'a Value> {
    events_by(events, ResearchEventKind::P2pQuality, subject)
        .into_iter()
        .filter(|e| e.get("level").and_then(Value::as_str) == Some(level))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scene_toml_has_the_pair_scene_and_the_extra() {
        let t = scene_toml("g1", true, None, "", "[turn]\nurls = [\"turn:x\"]\n");
        assert!(t.contains("id = \"g1\""));
        assert!(t.contains("matchmaker = \"fifo\""));
        assert!(t.contains("force_relay = true"));
        assert!(t.ends_with("[turn]\nurls = [\"turn:x\"]\n"));
        assert!(!t.contains("[scene.game]"));
        let p = scene_toml("g2", false, Some(150), "episodes = 2\n", "");
        assert!(p.contains("[scene.game]\nepisodes = 2\n"));
        assert!(p.contains("max_p2p_rtt_ms = 150") && p.contains("latency_fifo"));
        assert!(p.contains("force_relay = false"));
    }

    #[test]
    fn toml_str_escapes_quotes_and_backslashes() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn record_filters_match_event_subject_and_value() {
        let ev = vec![
            json!({"event":"p2p_quality","subject_id":"A","level":"warning"}),
            json!({"event":"p2p_quality","subject_id":"B","level":"critical"}),
            json!({"event":"p2p_ice_restart","subject_id":"A","outcome":"started"}),
            json!({"event":"p2p_ice_restart","subject_id":"B","outcome":"succeeded"}),
        ];
        assert_eq!(quality_by(&ev, "warning", "A").len(), 1);
        assert!(quality_by(&ev, "warning", "B").is_empty());
        assert_eq!(restarts_with(&ev, "started").len(), 1);
        assert_eq!(
            events_by(&ev, ResearchEventKind::P2pIceRestart, "B").len(),
            1
        );
    }

    #[test]
    fn game_view_parses_numbers() {
        let v = GameView {
            frames: Some(" 42 ".into()),
            episode: Some("x".into()),
            phase: Some("playing".into()),
            ..GameView::default()
        };
        assert_eq!(v.frames_n(), Some(42));
        assert_eq!(v.episode_n(), None);
        assert!(v.phase_is("playing") && !v.phase_is("ended"));
    }
}
