//! One scene's waitroom: each participant's place (FIFO position, deadline, last `waitroom`
//! sent), who is waiting to be matched right now (in arrival order, with their server RTT), the
//! coalesced count updates, who has a session in the scene, who is done with it, and which pairs
//! must never be grouped again (PROTOCOL.md, Waitroom).
//!
//! A participant gets a place ([`SceneWaitroom::admit`]) when they first finish their server-RTT
//! measurement, and keeps it for the life of their session: a participant who returns from a
//! rejected group, or resumes after a drop, keeps their FIFO position and their deadline. They
//! are in the *waiting set* only while connected and waiting; the router, which owns the
//! participants' states and connections, says when they join and leave it.
//!
//! The waitroom runs the scene's [`Matchmaker`] over the waiting set with its own rule on top:
//! a pair whose probe failed (RTT too high, measurement failed, no report by the deadline) is
//! remembered and never grouped again.
//!
//! The done set and the failed pairs outlive sessions, so they are kept compact and bounded:
//! keyed fingerprints of subject ids and of pairs, the newest [`DONE_CAP`] subjects and
//! [`FAILED_PAIRS_CAP`] pairs per scene in [`FingerprintSet`]s (3.6–4.2 bytes each, a stated
//! false-positive rate), the oldest forgotten beyond that (see [`super::remembered`]). Everything else here lives only as
//! long as the sessions it belongs to.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pairlab_shared::{SubjectId, Waitroom};

use super::candidates::WaitingSet;
use super::capacity::ShrinkWhenSparse;
use super::fingerprint_set::FingerprintSet;
use super::matchmaker::{self, Candidate, Matchmaker};
use super::matrix::PairMatrix;
use super::remembered::{DoneState, SubjectHasher, DONE_CAP, FAILED_PAIRS_CAP};
use super::Pid;
use crate::config::{MatchmakerKind, SceneConfig};

/// The coalescing window of `waitroom` count updates: at most one per participant per this
/// (PROTOCOL.md, Waitroom).
pub const WAITROOM_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

pub use super::candidates::Waiter;

/// A participant's place in the waitroom, from their first entry for the life of their session.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Place {
    /// FIFO position.
    seq: u64,
    entered_at: Instant,
    /// The waitroom deadline: `entered_at + waitroom_timeout_ms`.
    deadline: Instant,
    /// When the last `waitroom` went out and the count it carried.
    last_waitroom: Option<(Instant, Option<u32>)>,
}

/// A participant's session ended (see [`SceneWaitroom::end_session`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Departure {
    /// When they first entered the waitroom (`None`: they never did).
    pub entered_at: Option<Instant>,
    /// When to broadcast the changed count, if they were waiting.
    pub broadcast_at: Option<Instant>,
}

/// What a due count broadcast sends (see [`SceneWaitroom::broadcast`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Broadcast {
    /// The `waitroom` messages, in arrival order.
    pub sends: Vec<(Pid, Waitroom)>,
    /// When to broadcast again, for those who got one within the last interval.
    pub again_at: Option<Instant>,
}

/// How much one scene's waitroom holds (see [`SceneWaitroom::sizes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WaitroomSizes {
    /// Participants with a place (entered the waitroom, session alive).
    pub places: usize,
    /// The waiting set.
    pub waiting: usize,
    /// Sessions by subject id.
    pub sessions: usize,
    /// Subjects in the done set (at least the newest [`DONE_CAP`] are kept, see
    /// [`FingerprintSet`]).
    pub done: usize,
    /// The heap the done set holds, bytes (3.6–4.2 a subject, see [`FingerprintSet`]).
    pub done_bytes: usize,
    /// Remembered failed pairs (at least the newest [`FAILED_PAIRS_CAP`] are kept).
    pub failed_pairs: usize,
    /// Entries the places and sessions maps have room for (their capacity).
    pub room: usize,
}

/// The waitroom state of one scene.
pub struct SceneWaitroom {
    cfg: SceneConfig,
    mm: Box<dyn Matchmaker>,
    /// Every participant who has entered the waitroom and whose session lives.
    places: HashMap<Pid, Place>,
    /// Connected participants in `Waiting`, by arrival sequence and by server-RTT bucket, with
    /// their current server-RTT median: the matching search runs on this alone.
    waiting: WaitingSet,
    next_seq: u64,
    /// Every session of the scene (connected or in its reconnect grace), by subject id.
    sessions: HashMap<SubjectId, Pid>,
    /// Fingerprints the done set and the failed pairs are kept by.
    hasher: SubjectHasher,
    /// Subjects whose part in the scene is over (left, timed out, or played), by fingerprint.
    done: FingerprintSet,
    /// Pairs whose probe failed, by pair fingerprint ([`SubjectHasher::pair`]).
    failed_pairs: FingerprintSet,
    broadcast_at: Option<Instant>,
    last_broadcast: Option<Instant>,
    /// `p2p_matrix` only: the waiting pairs' measured RTTs, its members kept equal to the
    /// waiting set by [`Self::insert`] and [`Self::remove`].
    matrix: Option<PairMatrix>,
}

impl SceneWaitroom {
    /// An empty waitroom for `cfg`, with the matchmaker it asks for; `hasher` fingerprints the
    /// subjects it remembers.
    pub fn new(cfg: &SceneConfig, hasher: SubjectHasher) -> Self {
        Self {
            mm: matchmaker::for_scene(cfg),
            cfg: cfg.clone(),
            places: HashMap::new(),
            waiting: WaitingSet::new(),
            next_seq: 0,
            sessions: HashMap::new(),
            hasher,
            done: FingerprintSet::new(DONE_CAP),
            failed_pairs: FingerprintSet::new(FAILED_PAIRS_CAP),
            broadcast_at: None,
            last_broadcast: None,
            matrix: (cfg.matchmaker == MatchmakerKind::P2pMatrix).then(|| {
                PairMatrix::new(
                    cfg.matrix,
                    cfg.max_p2p_rtt_ms.unwrap_or(f64::INFINITY),
                    cfg.probe_timeout_ms,
                )
            }),
        }
    }

    /// The scene's configuration.
    pub fn cfg(&self) -> &SceneConfig {
        &self.cfg
    }

    /// The name of the scene's matchmaker (`fifo`, `latency_fifo`).
    pub fn matchmaker_name(&self) -> &'static str {
        self.mm.name()
    }

    // ---- sessions and the done set ----------------------------------------------------------

    /// The session of `subject` in this scene, if any.
    pub fn session(&self, subject: &SubjectId) -> Option<Pid> {
        self.sessions.get(subject).copied()
    }

    /// Records `pid` as the session of `subject`.
    pub fn add_session(&mut self, subject: SubjectId, pid: Pid) {
        self.sessions.insert(subject, pid);
    }

    /// Ends the session `pid` of `subject`: they leave the waiting set and lose their place.
    pub fn end_session(&mut self, now: Instant, pid: Pid, subject: &SubjectId) -> Departure {
        let broadcast_at = self.remove(now, pid);
        self.sessions.remove(subject);
        let entered_at = self.places.remove(&pid).map(|p| p.entered_at);
        // After a burst of sessions, give back the room it took (see `super::capacity`):
        // measured, these two maps held 1.8 MB after 100,000 games with nobody left.
        self.sessions.shrink_when_sparse();
        self.places.shrink_when_sparse();
        Departure {
            entered_at,
            broadcast_at,
        }
    }

    /// Whether `subject`'s part in this scene is over: a new `hello` is refused.
    pub fn is_done(&self, subject: &SubjectId) -> bool {
        self.done.contains(self.hasher.fingerprint(subject))
    }

    /// Ends `subject`'s part in this scene for good.
    pub fn mark_done(&mut self, subject: SubjectId) {
        self.done.insert(self.hasher.fingerprint(&subject));
    }

    /// Adds what the research record remembers (the done set and the failed pairs, oldest
    /// first) to this scene's memory.
    pub fn restore(&mut self, state: &DoneState) {
        for subject in state.done.iter() {
            self.done.insert(self.hasher.fingerprint(subject));
        }
        for pair in state.failed_pairs.iter() {
            self.remember_failed_pair(pair);
        }
    }

    /// The sizes of what the waitroom holds.
    pub fn sizes(&self) -> WaitroomSizes {
        WaitroomSizes {
            places: self.places.len(),
            waiting: self.waiting.len(),
            sessions: self.sessions.len(),
            done: self.done.len(),
            done_bytes: self.done.heap_bytes(),
            failed_pairs: self.failed_pairs.len(),
            room: self.places.capacity() + self.sessions.capacity(),
        }
    }

    // ---- the waiting set --------------------------------------------------------------------

    /// Gives `pid` their place at `now` if they have none yet (the next FIFO position, and the
    /// deadline `now + waitroom_timeout_ms`). Returns their deadline.
    pub fn admit(&mut self, now: Instant, pid: Pid) -> Instant {
        let timeout = Duration::from_millis(self.cfg.waitroom_timeout_ms);
        let next_seq = &mut self.next_seq;
        let place = self.places.entry(pid).or_insert_with(|| {
            let seq = *next_seq;
            *next_seq += 1;
            Place {
                seq,
                entered_at: now,
                deadline: now + timeout,
                last_waitroom: None,
            }
        });
        place.deadline
    }

    /// Whether `pid` has a place (has entered the waitroom during this session).
    pub fn has_place(&self, pid: Pid) -> bool {
        self.places.contains_key(&pid)
    }

    /// `pid`'s FIFO position.
    pub fn arrival_seq(&self, pid: Pid) -> Option<u64> {
        self.places.get(&pid).map(|p| p.seq)
    }

    /// Whether `pid`'s waitroom deadline is at or before `now`.
    pub fn deadline_passed(&self, pid: Pid, now: Instant) -> bool {
        self.places.get(&pid).is_some_and(|p| p.deadline <= now)
    }

    /// Number of participants in the waiting set.
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The count `waitroom` messages carry: `None` when the scene hides it.
    pub fn count(&self) -> Option<u32> {
        (!self.cfg.hide_lobby_count).then(|| self.waiting.len().min(u32::MAX as usize) as u32)
    }

    /// `pid`'s entry in the waiting set, if they are in it.
    pub fn waiter(&self, pid: Pid) -> Option<&Waiter> {
        let seq = self.places.get(&pid)?.seq;
        self.waiting.get(seq).filter(|w| w.pid == pid)
    }

    /// The waiting set in arrival order, with each entry's arrival position.
    pub fn entries(&self) -> impl Iterator<Item = (u64, &Waiter)> {
        self.waiting.entries()
    }

    /// The waiting participants in arrival order.
    pub fn waiting_pids(&self) -> Vec<Pid> {
        self.waiting.entries().map(|(_, w)| w.pid).collect()
    }

    /// Puts `pid`, who has a place, into the waiting set with their server-RTT median, ms.
    /// Returns when to broadcast the new count.
    pub fn insert(&mut self, now: Instant, pid: Pid, rtt_ms: Option<f64>) -> Option<Instant> {
        let place = self.places.get(&pid)?;
        let (seq, deadline) = (place.seq, place.deadline);
        self.waiting.insert(seq, Waiter { pid, rtt_ms });
        if let Some(m) = &mut self.matrix {
            m.join(pid, seq, deadline);
        }
        self.count_changed(now)
    }

    /// Takes `pid` out of the waiting set. Returns when to broadcast the new count.
    pub fn remove(&mut self, now: Instant, pid: Pid) -> Option<Instant> {
        let seq = self.places.get(&pid)?.seq;
        self.waiting.remove(seq)?;
        if let Some(m) = &mut self.matrix {
            m.leave(pid);
        }
        self.count_changed(now)
    }

    /// A waiting participant's server-RTT median changed.
    pub fn update_rtt(&mut self, pid: Pid, rtt_ms: Option<f64>) {
        let Some(seq) = self.places.get(&pid).map(|p| p.seq) else {
            return;
        };
        self.waiting.update_rtt(seq, rtt_ms);
    }

    /// The `waitroom` message for `pid` at `now` (the current count, the time left until their
    /// deadline); remembered as the last one they got.
    pub fn waitroom_message(&mut self, now: Instant, pid: Pid) -> Waitroom {
        let waiting = self.count();
        let place = self.places.get_mut(&pid);
        let remaining_ms = place
            .as_ref()
            .map(|p| p.deadline.saturating_duration_since(now).as_millis() as u64)
            .unwrap_or(0);
        if let Some(p) = place {
            p.last_waitroom = Some((now, waiting));
        }
        Waitroom {
            waiting,
            group_size: self.cfg.group_size,
            remaining_ms,
        }
    }

    // ---- count broadcasts -------------------------------------------------------------------

    /// The waiting count changed at `now`: returns when a coalesced broadcast should run, if
    /// one is not already due (at most one per [`WAITROOM_UPDATE_INTERVAL`]; none when the
    /// scene hides the count).
    pub fn count_changed(&mut self, now: Instant) -> Option<Instant> {
        if self.cfg.hide_lobby_count || self.broadcast_at.is_some() {
            return None;
        }
        let at = self
            .last_broadcast
            .map_or(now, |t| (t + WAITROOM_UPDATE_INTERVAL).max(now));
        self.broadcast_at = Some(at);
        Some(at)
    }

    /// The coalesced count broadcast due at or before `now` (nothing when none is due):
    /// everyone waiting whose last `waitroom` carried another count gets the new one, unless
    /// they got one within [`WAITROOM_UPDATE_INTERVAL`] (they are served by another broadcast,
    /// `again_at`).
    pub fn broadcast(&mut self, now: Instant) -> Broadcast {
        if self.broadcast_at.is_none_or(|t| t > now) {
            return Broadcast::default();
        }
        self.broadcast_at = None;
        self.last_broadcast = Some(now);
        let count = self.count();
        let mut deferred = false;
        let mut sends = Vec::new();
        for pid in self.waiting_pids() {
            match self.places.get(&pid).and_then(|p| p.last_waitroom) {
                Some((_, c)) if c == count => {}
                Some((at, _)) if now < at + WAITROOM_UPDATE_INTERVAL => deferred = true,
                _ => sends.push((pid, self.waitroom_message(now, pid))),
            }
        }
        let again_at = if deferred {
            self.count_changed(now)
        } else {
            None
        };
        Broadcast { sends, again_at }
    }

    // ---- matching ---------------------------------------------------------------------------

    /// Remembers that the pair's probe failed: they are never grouped again in this scene.
    pub fn remember_failed_pair(&mut self, pair: &[SubjectId; 2]) {
        self.failed_pairs
            .insert(self.hasher.pair(&pair[0], &pair[1]));
    }

    /// Whether the pair's probe failed in this scene (they are never grouped or probed again).
    pub fn pair_failed(&self, a: &SubjectId, b: &SubjectId) -> bool {
        !self.failed_pairs.is_empty() && self.failed_pairs.contains(self.hasher.pair(a, b))
    }

    /// Runs the matchmaker with `arriving` against everyone waiting, in arrival order, excluding
    /// pairs whose probe failed (`subject_of` gives each participant's subject id). Returns the
    /// proposed group, `arriving` first; `None` when no full group forms. Bounded work when
    /// nobody could pass with `arriving` (see [`WaitingSet::find_group`]).
    pub fn find_match<'s>(
        &self,
        arriving: &Candidate,
        subject_of: &dyn Fn(Pid) -> Option<&'s SubjectId>,
    ) -> Option<Vec<Pid>> {
        let allowed = |a: Pid, b: Pid| match (subject_of(a), subject_of(b)) {
            (Some(x), Some(y)) => !self.pair_failed(x, y),
            _ => false,
        };
        let group_size = self.cfg.group_size as usize;
        let seq = self.arrival_seq(arriving.id);
        self.waiting
            .find_group(&*self.mm, arriving, seq, group_size, &allowed)
    }

    /// Whether a group could form among those waiting now, by the matchmaker's pre-filter
    /// alone: `false` proves that [`Self::find_match`] finds nothing for anyone waiting, so a
    /// leave need not retry them (O(log) per call; see [`WaitingSet::may_form_group`]).
    pub fn may_form_group(&self) -> bool {
        self.waiting
            .may_form_group(&*self.mm, self.cfg.group_size as usize)
    }

    // ---- p2p_matrix -------------------------------------------------------------------------

    /// The scene's pair-RTT matrix (`p2p_matrix` scenes only).
    pub fn matrix(&self) -> Option<&PairMatrix> {
        self.matrix.as_ref()
    }

    /// The scene's pair-RTT matrix, to change (`p2p_matrix` scenes only).
    pub fn matrix_mut(&mut self) -> Option<&mut PairMatrix> {
        self.matrix.as_mut()
    }

    /// The partner `pid` should start a background probe with now, if any (see
    /// [`PairMatrix::next_partner`]; pairs whose probe failed are never probed again).
    pub fn next_probe_partner<'s>(
        &self,
        now: Instant,
        pid: Pid,
        subject_of: &dyn Fn(Pid) -> Option<&'s SubjectId>,
    ) -> Option<Pid> {
        let blocked = |a: Pid, b: Pid| match (subject_of(a), subject_of(b)) {
            (Some(x), Some(y)) => self.pair_failed(x, y),
            _ => true,
        };
        self.matrix
            .as_ref()?
            .next_partner(now, pid, &self.waiting, &*self.mm, &blocked)
    }

    /// Checks the matrix against the waiting set (see [`PairMatrix::check_invariants`]).
    pub fn check_matrix(&self) -> Result<(), String> {
        self.matrix
            .as_ref()
            .map_or(Ok(()), |m| m.check_invariants(&self.waiting))
    }
}
