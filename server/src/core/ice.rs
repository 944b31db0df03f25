//! The ICE servers a participant is given in `probe_prepare` and `game_start`, and the TURN REST
//! credentials minted for them.
//!
//! Every participant gets the configured `[[ice_servers]]`, then the `[turn]` server, if any,
//! with either its static credentials or credentials minted for that participant that expire
//! `credential_ttl_s` after the moment they are handed out. The expiry is wall-clock time; the
//! core only sees `Instant`s, so [`CoreClock`] says which Unix time its origin stands for.
//!
//! The router asks for a list only when it sends `probe_prepare` or `game_start`, so only the
//! members of a probe or a game ever get credentials (someone who only waits gets none). By
//! default `credential_ttl_s` is the longest a probe or a game of the scenes may need one
//! ([`Config::default_credential_ttl_s`]), an hour with the defaults.

use std::time::Instant;

use pairlab_shared::{IceServer, SubjectId};

use super::CoreClock;
use crate::config::{Config, TurnAuth, TurnConfig};

/// The ICE server list of one server, per participant.
#[derive(Debug, Clone)]
pub struct IceServers {
    configured: Vec<IceServer>,
    turn: Option<TurnConfig>,
    clock: CoreClock,
}

impl IceServers {
    /// The lists `config` asks for, with TURN expiries dated by `clock`.
    pub fn new(config: &Config, clock: CoreClock) -> Self {
        Self {
            configured: config.ice_servers.clone(),
            turn: config.turn.clone(),
            clock,
        }
    }

    /// The ICE servers for `subject` at `now`: the configured `[[ice_servers]]`, plus the
    /// `[turn]` server with its static credentials or credentials minted for this participant.
    pub fn for_subject(&self, subject: &SubjectId, now: Instant) -> Vec<IceServer> {
        let mut list = self.configured.clone();
        if let Some(turn) = &self.turn {
            let (username, credential) = match &turn.auth {
                TurnAuth::Static {
                    username,
                    credential,
                } => (username.clone(), credential.clone()),
                TurnAuth::Secret {
                    static_auth_secret,
                    credential_ttl_s,
                } => turn_rest_credentials(
                    static_auth_secret,
                    subject.as_str(),
                    self.clock.unix_s_at(now) + credential_ttl_s,
                ),
            };
            list.push(IceServer {
                urls: turn.urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        list
    }
}

/// coturn's REST API credentials (draft-uberti-behave-turn-rest-00, coturn's
/// `--use-auth-secret`): username `"<unix-expiry>:<id>"`, credential
/// `base64(HMAC-SHA1(secret, username))`. The TURN server recomputes the credential from its
/// copy of the secret and refuses it after the expiry.
pub fn turn_rest_credentials(secret: &str, id: &str, expiry_unix_s: u64) -> (String, String) {
    use base64::Engine as _;
    use hmac::Mac as _;
    let username = format!("{expiry_unix_s}:{id}");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}
