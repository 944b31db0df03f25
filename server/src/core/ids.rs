//! Identifiers: the core's handles ([`ConnId`], [`Pid`], [`GroupId`]) and the source of the
//! random ids it hands out ([`IdSource`]).
//!
//! The handles are plain counters wrapped in their own types, so a connection can never be
//! passed where a participant is meant. The random ids (probe session ids, game ids, resume
//! tokens) come from an [`IdSource`] the shell passes to [`super::Core::new`]: the server uses
//! [`RandomIds`] (UUID v4 from the operating system's randomness); tests and simulations use
//! [`SeededIds`], so the same events give the same ids and the same actions, run after run.

use std::fmt;

use pairlab_shared::{GameId, ProbeSessionId};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use uuid::Uuid;

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            /// The handle with number `n`.
            pub const fn new(n: u64) -> Self {
                Self(n)
            }

            /// Its number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

handle!(
    /// Identifies one WebSocket connection for the life of the server process. Minted by the
    /// shell (`ConnId::new`), never reused.
    ConnId
);
handle!(
    /// The core's handle for one participant's session in one scene (it outlives their
    /// connections: a resumed session keeps its `Pid`). Minted by the core, never reused.
    Pid
);
handle!(
    /// The core's handle for one proposed group, from the matchmaker's proposal to the probe
    /// verdict. Minted by the core, never reused.
    GroupId
);

/// Where the core's random ids come from. Implementations only supply 128 random bits per id;
/// the provided methods shape them into the wire's ids.
pub trait IdSource: Send {
    /// The next random UUID (version 4 layout).
    fn next_uuid(&mut self) -> Uuid;

    /// A fresh probe session id: a hyphenated UUID v4.
    fn probe_session_id(&mut self) -> ProbeSessionId {
        ProbeSessionId::from_string(self.next_uuid().to_string())
    }

    /// A fresh game id: a hyphenated UUID v4.
    fn game_id(&mut self) -> GameId {
        GameId::from_string(self.next_uuid().to_string())
    }

    /// A fresh resume token: a UUID v4 as 32 hex digits. It is the session's only credential,
    /// so production sources must be unpredictable ([`RandomIds`]).
    fn resume_token(&mut self) -> String {
        self.next_uuid().simple().to_string()
    }
}

/// The server's ids: UUID v4 from the operating system's randomness (the `uuid` crate's
/// `new_v4`), unpredictable, as resume tokens must be.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn next_uuid(&mut self) -> Uuid {
        Uuid::new_v4()
    }
}

/// Reproducible ids for tests and simulations: UUID v4 layouts filled from ChaCha8 seeded with
/// a `u64` (`rand_chacha`, already in the tree through the WebSocket stack). The same seed gives
/// the same sequence of ids on every platform. Not for production: the ids are predictable.
#[derive(Debug, Clone)]
pub struct SeededIds {
    rng: rand_chacha::ChaCha8Rng,
}

impl SeededIds {
    /// The source whose sequence `seed` determines.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl IdSource for SeededIds {
    fn next_uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_repeat_per_seed_and_are_uuid_v4() {
        let (mut a, mut b, mut c) = (SeededIds::new(7), SeededIds::new(7), SeededIds::new(8));
        let (x, y, z) = (a.next_uuid(), b.next_uuid(), c.next_uuid());
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_eq!(x.get_version_num(), 4);
        assert_eq!(a.resume_token().len(), 32);
        assert_eq!(a.game_id().as_str().len(), 36);
    }

    #[test]
    fn handles_display_their_number() {
        assert_eq!(Pid::new(42).to_string(), "42");
        assert_eq!(ConnId::new(3).get(), 3);
        assert!(GroupId::new(1) < GroupId::new(2));
    }
}
