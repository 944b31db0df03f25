//! One scene's waitroom: who is waiting to be matched (in arrival order, with their server RTT),
//! the coalesced count broadcasts, who has a session in the scene, who is done with it, and
//! which pairs must never be grouped again (PROTOCOL.md, Waitroom).
//!
//! The waitroom holds no participant records: the router owns those and tells the waitroom who
//! enters and leaves the waiting set. The waitroom runs the scene's [`Matchmaker`] over the
//! waiting set with its own rule on top: a pair whose probe failed (RTT too high, measurement
//! failed, no report by the deadline) is remembered by subject id and never grouped again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use pairlab_shared::SubjectId;

use super::matchmaker::{self, Candidate, Matchmaker};
use super::Pid;
use crate::config::SceneConfig;

/// The coalescing window of `waitroom` count updates: at most one per participant per this
/// (PROTOCOL.md, Waitroom).
pub const WAITROOM_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// An entry of a scene's waiting set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waiter {
    /// Who.
    pub pid: Pid,
    /// Their current server-RTT median, ms (`None`: unknown).
    pub rtt_ms: Option<f64>,
}

/// The waitroom state of one scene.
pub struct SceneWaitroom {
    cfg: SceneConfig,
    mm: Box<dyn Matchmaker>,
    /// Connected participants in `Waiting`, by arrival sequence, with their current server-RTT
    /// median: the matchmaker scans this alone, without a lookup per candidate.
    waiting: BTreeMap<u64, Waiter>,
    next_seq: u64,
    /// Every session of the scene (connected or in its reconnect grace), by subject id.
    sessions: HashMap<SubjectId, Pid>,
    /// Subjects whose part in the scene is over (left, timed out, or played).
    done: HashSet<SubjectId>,
    failed_with: HashMap<SubjectId, HashSet<SubjectId>>,
    broadcast_at: Option<Instant>,
    last_broadcast: Option<Instant>,
}

impl SceneWaitroom {
    /// An empty waitroom for `cfg`, with the matchmaker it asks for.
    pub fn new(cfg: &SceneConfig) -> Self {
        Self {
            mm: matchmaker::for_scene(cfg),
            cfg: cfg.clone(),
            waiting: BTreeMap::new(),
            next_seq: 0,
            sessions: HashMap::new(),
            done: HashSet::new(),
            failed_with: HashMap::new(),
            broadcast_at: None,
            last_broadcast: None,
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

    /// Forgets the session of `subject`.
    pub fn remove_session(&mut self, subject: &SubjectId) {
        self.sessions.remove(subject);
    }

    /// Whether `subject`'s part in this scene is over: a new `hello` is refused.
    pub fn is_done(&self, subject: &SubjectId) -> bool {
        self.done.contains(subject)
    }

    /// Ends `subject`'s part in this scene for good.
    pub fn mark_done(&mut self, subject: SubjectId) {
        self.done.insert(subject);
    }

    // ---- the waiting set --------------------------------------------------------------------

    /// A new arrival's FIFO position and waitroom deadline, for a participant entering the
    /// waitroom for the first time at `now`.
    pub fn admit(&mut self, now: Instant) -> (u64, Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        (
            seq,
            now + Duration::from_millis(self.cfg.waitroom_timeout_ms),
        )
    }

    /// Number of participants in the waiting set.
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The count `waitroom` messages carry: `None` when the scene hides it.
    pub fn count(&self) -> Option<u32> {
        (!self.cfg.hide_lobby_count).then(|| self.waiting.len().min(u32::MAX as usize) as u32)
    }

    /// The entry at arrival position `seq`.
    pub fn get(&self, seq: u64) -> Option<&Waiter> {
        self.waiting.get(&seq)
    }

    /// The waiting set in arrival order, with each entry's arrival position.
    pub fn entries(&self) -> impl Iterator<Item = (u64, &Waiter)> {
        self.waiting.iter().map(|(seq, w)| (*seq, w))
    }

    /// The waiting participants in arrival order.
    pub fn waiting_pids(&self) -> Vec<Pid> {
        self.waiting.values().map(|w| w.pid).collect()
    }

    /// Puts a participant at arrival position `seq`. Returns when to broadcast the new count.
    pub fn insert(&mut self, now: Instant, seq: u64, waiter: Waiter) -> Option<Instant> {
        self.waiting.insert(seq, waiter);
        self.count_changed(now)
    }

    /// Takes the participant at `seq` out. Returns when to broadcast the new count.
    pub fn remove(&mut self, now: Instant, seq: u64) -> Option<Instant> {
        self.waiting.remove(&seq)?;
        self.count_changed(now)
    }

    /// A waiting participant's server-RTT median changed.
    pub fn update_rtt(&mut self, seq: u64, rtt_ms: Option<f64>) {
        if let Some(w) = self.waiting.get_mut(&seq) {
            w.rtt_ms = rtt_ms;
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

    /// Starts the broadcast due at or before `now`: returns the count to send, or `None` when
    /// no broadcast is due.
    pub fn take_broadcast(&mut self, now: Instant) -> Option<Option<u32>> {
        if self.broadcast_at.is_none_or(|t| t > now) {
            return None;
        }
        self.broadcast_at = None;
        self.last_broadcast = Some(now);
        Some(self.count())
    }

    // ---- matching ---------------------------------------------------------------------------

    /// Remembers that the pair's probe failed: they are never grouped again in this scene.
    pub fn remember_failed_pair(&mut self, pair: &[SubjectId; 2]) {
        for (a, b) in [(&pair[0], &pair[1]), (&pair[1], &pair[0])] {
            self.failed_with
                .entry(a.clone())
                .or_default()
                .insert(b.clone());
        }
    }

    fn pair_failed(&self, a: &SubjectId, b: &SubjectId) -> bool {
        self.failed_with.get(a).is_some_and(|s| s.contains(b))
    }

    /// Runs the matchmaker with `arriving` against everyone waiting, in arrival order, excluding
    /// pairs whose probe failed (`subject_of` gives each participant's subject id). Returns the
    /// proposed group, `arriving` first; `None` when no full group forms.
    pub fn find_match<'s>(
        &self,
        arriving: &Candidate,
        subject_of: &dyn Fn(Pid) -> Option<&'s SubjectId>,
    ) -> Option<Vec<Pid>> {
        let mut waiting = self.waiting.values().map(|w| Candidate {
            id: w.pid,
            rtt_ms: w.rtt_ms,
        });
        let allowed = |a: Pid, b: Pid| match (subject_of(a), subject_of(b)) {
            (Some(x), Some(y)) => !self.pair_failed(x, y),
            _ => false,
        };
        let group_size = self.cfg.group_size as usize;
        self.mm
            .find_match(arriving, &mut waiting, group_size, &allowed)
    }
}
