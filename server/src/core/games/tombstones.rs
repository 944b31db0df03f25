//! Ended games, kept small until they are forgotten, so that their members' late signals and
//! reports are ignored quietly instead of being answered with `not_a_member`.
//!
//! A tombstone is only an ended game's members' [`Pid`]s, in player order, which is all the
//! rules for late messages need (a member naming another member is ignored quietly, anyone
//! else gets `not_a_member`), keyed by the game's id as the 128-bit UUID the server minted; its
//! scene, ids and report buckets are dropped when it ends ([`super::Games`]). A tombstone goes
//! as soon as every member is gone for good (no late message can come from them), else
//! [`GAME_TOMBSTONE_TTL`] after the end (swept at most once a second,
//! [`TOMBSTONE_SWEEP_SPACING`]; no queue of ended games is kept). So a burst of games played
//! through costs little memory even at its peak: measured (`loadgen churn`, BENCHMARKS.md
//! "100,000 games"), the tombstones of the last minute, with their ids as strings in a map and
//! a forget queue, were 21 of the 33 MB live at the burst's peak, and jemalloc keeps the
//! metadata of a peak.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pairlab_shared::{GameId, PlayerIndex};

use super::NotAMember;
use crate::core::capacity::ShrinkWhenSparse;
use crate::core::Pid;

/// How long an ended game is remembered, so that its members' late signals and reports are
/// ignored quietly instead of being answered with `not_a_member`.
pub const GAME_TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// The least time between two sweeps of the tombstones, so a sweep (a pass over all of them)
/// runs at most once a second however many games end: a tombstone is forgotten
/// [`GAME_TOMBSTONE_TTL`] after its game's end, or up to this much later.
pub const TOMBSTONE_SWEEP_SPACING: Duration = Duration::from_secs(1);

/// What is kept of an ended game until it is forgotten: its members' [`Pid`]s, in player
/// order (a few bytes a member, against a few hundred for a live game), and which of them
/// are gone for good.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tombstone {
    /// The members, in player order.
    pids: Box<[Pid]>,
    /// Bit `i`: member `i` is gone for good (at most [`pairlab_shared::MAX_PEERS`] = 64
    /// members).
    gone: u64,
    /// When to forget it: [`GAME_TOMBSTONE_TTL`] after the end.
    forget_at: Instant,
}

impl Tombstone {
    /// Notes that member `pid` is gone for good; whether every member now is.
    fn member_gone(&mut self, pid: Pid) -> bool {
        if let Some(i) = self.pids.iter().position(|&p| p == pid) {
            self.gone |= 1u64.checked_shl(i as u32).unwrap_or(0);
        }
        self.gone.count_ones() as usize == self.pids.len()
    }

    /// Whether a message from `pid` naming the players at `peers` comes from a member about
    /// other members (then it is ignored quietly; otherwise it is `not_a_member`).
    fn is_member_about_partners(&self, pid: Pid, peers: &[PlayerIndex]) -> bool {
        self.pids.contains(&pid)
            && peers.iter().all(|&peer| {
                usize::try_from(peer)
                    .ok()
                    .and_then(|i| self.pids.get(i))
                    .is_some_and(|&p| p != pid)
            })
    }
}

/// The key of a game among the tombstones: its id as the UUID the server minted (a `u128`, no
/// heap, instead of a 36-byte string twice); `None` for an id the server cannot have minted
/// (not a UUID in the lower-case hyphenated form `Uuid::to_string` gives), which no game has.
fn tombstone_key(game_id: &GameId) -> Option<u128> {
    let id = uuid::Uuid::try_parse(game_id.as_str()).ok()?;
    let mut text = uuid::Uuid::encode_buffer();
    (id.hyphenated().encode_lower(&mut text) == game_id.as_str()).then_some(id.as_u128())
}

/// The ended games not yet forgotten, and when to sweep them next.
#[derive(Debug, Default)]
pub struct Tombstones {
    /// By [`tombstone_key`].
    ended: HashMap<u128, Tombstone>,
    /// When to sweep next (`None` without any tombstone).
    next_sweep: Option<Instant>,
}

impl Tombstones {
    /// Keeps the tombstone of `game_id`, which ended at `now` with members `pids` (in player
    /// order), until [`GAME_TOMBSTONE_TTL`] later or until all of them are gone.
    pub fn bury(&mut self, now: Instant, game_id: &GameId, pids: Box<[Pid]>) {
        let Some(key) = tombstone_key(game_id) else {
            return;
        };
        let forget_at = now + GAME_TOMBSTONE_TTL;
        let tombstone = Tombstone {
            pids,
            gone: 0,
            forget_at,
        };
        self.ended.insert(key, tombstone);
        self.next_sweep.get_or_insert(forget_at);
    }

    /// Member `pid` of `game_id` is gone for good: once every member of an ended game is, its
    /// tombstone goes (nothing happens for a game that is not an ended one).
    pub fn member_gone(&mut self, game_id: &GameId, pid: Pid) {
        let Some(key) = tombstone_key(game_id) else {
            return;
        };
        if self.ended.get_mut(&key).is_some_and(|t| t.member_gone(pid)) {
            self.ended.remove(&key);
            self.ended.shrink_when_sparse();
            if self.ended.is_empty() {
                self.next_sweep = None;
            }
        }
    }

    /// Whether `game_id` has ended and its tombstone says `pid` is a member naming other
    /// members at `peers` (the message is then dropped quietly). `Ok(false)`: the game is not
    /// an ended one (it is live, or not known).
    ///
    /// # Errors
    /// [`NotAMember`] when the game has ended and `pid` was not in it, or a peer is not
    /// another member.
    pub fn quietly(
        &self,
        game_id: &GameId,
        pid: Pid,
        peers: &[PlayerIndex],
    ) -> Result<bool, NotAMember> {
        match tombstone_key(game_id).and_then(|key| self.ended.get(&key)) {
            None => Ok(false),
            Some(t) if t.is_member_about_partners(pid, peers) => Ok(true),
            Some(_) => Err(NotAMember),
        }
    }

    /// Forgets the games that ended [`GAME_TOMBSTONE_TTL`] or longer before `now`, when a
    /// sweep is due; gives back the room a burst took (see `crate::core::capacity`).
    pub fn expire(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| t <= now) {
            self.ended.retain(|_, t| t.forget_at > now);
            self.next_sweep = self
                .ended
                .values()
                .map(|t| t.forget_at)
                .min()
                .map(|t| t.max(now + TOMBSTONE_SWEEP_SPACING));
        }
        self.ended.shrink_when_sparse();
    }

    /// When to sweep next: the oldest tombstone's time to be forgotten, but at most one sweep
    /// per [`TOMBSTONE_SWEEP_SPACING`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// How many tombstones are kept.
    pub fn len(&self) -> usize {
        self.ended.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.ended.is_empty()
    }

    /// How many tombstones the map has room for (its capacity).
    pub fn capacity(&self) -> usize {
        self.ended.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f9619ff-8b86-4011-b42d-00c04fc964ff";

    /// Only the form the server mints is a key: an upper-case or braced spelling of the same
    /// UUID, or any other string, names no tombstone.
    #[test]
    fn only_a_minted_id_is_a_key() {
        assert!(tombstone_key(&GameId::from_string(ID)).is_some());
        for other in [
            ID.to_uppercase(),
            format!("{{{ID}}}"),
            ID.replace('-', ""),
            "g".into(),
        ] {
            assert_eq!(
                tombstone_key(&GameId::from_string(other.clone())),
                None,
                "{other}"
            );
        }
    }

    /// A tombstone answers for its members until the last one is gone, then it goes; the
    /// sweep forgets the rest a TTL after the end, not before.
    #[test]
    fn a_tombstone_goes_with_its_last_member_or_its_ttl() {
        let now = Instant::now();
        let (a, b, c) = (Pid::new(1), Pid::new(2), Pid::new(3));
        let game = GameId::from_string(ID);
        let mut t = Tombstones::default();
        t.bury(now, &game, Box::new([a, b]));
        assert_eq!(
            t.quietly(&game, a, &[1]),
            Ok(true),
            "a member about its partner"
        );
        assert_eq!(t.quietly(&game, a, &[0]), Err(NotAMember), "about itself");
        assert_eq!(t.quietly(&game, c, &[0]), Err(NotAMember), "not a member");
        t.member_gone(&game, a);
        t.member_gone(&game, a);
        assert_eq!(t.len(), 1, "b is still around");
        t.member_gone(&game, b);
        assert!(t.is_empty() && t.next_deadline().is_none());
        assert_eq!(t.quietly(&game, a, &[1]), Ok(false), "forgotten");

        t.bury(now, &game, Box::new([a, b]));
        t.expire(now + GAME_TOMBSTONE_TTL - Duration::from_millis(1));
        assert_eq!(t.len(), 1, "not before the TTL");
        t.expire(now + GAME_TOMBSTONE_TTL);
        assert!(t.is_empty() && t.next_deadline().is_none());
    }
}
