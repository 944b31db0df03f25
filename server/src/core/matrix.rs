//! `p2p_matrix`: the measured peer-to-peer RTT of every waiting pair, the background-probe
//! scheduler that fills it, and the grouping rule that reads it. Pure: every method takes the
//! time; what the router must do (close a probe, end a probe's round, look for probes or for a
//! group) is queued as [`Todo`]s and drained by `router/background.rs`.
//!
//! One [`PairMatrix`] per `p2p_matrix` scene, kept by the scene's waitroom so that its members
//! are exactly the waiting set: [`PairMatrix::join`] when a participant enters it,
//! [`PairMatrix::leave`] when they leave it (matched, dropped, left, timed out).
//!
//! ## Scheduling (bounded and fair)
//! A participant *looks for probes* when they join and whenever one of their probes ends
//! ([`Todo::Refill`]); the router asks [`PairMatrix::next_partner`] until it answers `None`:
//! - at most `probe_concurrency` (K) background probes run per participant;
//! - the partner is the oldest waiter (arrival order) whose pair is eligible, pairs passing the
//!   matchmaker's server-RTT pre-filter first; a refill is served oldest participant first, so
//!   a newcomer is measured against the current waiters as fast as their K slots allow;
//! - eligible: not probed now, no fresh measurement (none yet, or older than
//!   `pair_max_age_ms`), both have a free slot, and the pair never failed (the waitroom's
//!   failed pairs: a failed or too-slow probe is never repeated);
//! - a browser holds at most `max_probe_connections` probe connections (running and kept):
//!   starting a probe for a participant at the cap closes their kept connection with the
//!   largest RTT (its measurement stays, its connection is no longer handed to a game).
//!
//! A measurement goes stale `pair_max_age_ms` after it was taken: its kept connection is
//! closed (`probe_close`; the browser's `keep_ms` is [`KEEP_MARGIN_MS`] longer) and both
//! members look for probes again, so the pair is re-measured.
//!
//! ## Grouping
//! A pair is *usable* when its last measurement is at most `max_p2p_rtt_ms` and fresh — or, for
//! a pair one of whose members is within `probe_timeout_ms` of their waitroom deadline (no
//! time for a new probe), of any age: a participant near their deadline takes the best group
//! the measurements allow, never one above the threshold. A *valid* group has `group_size`
//! waiters whose every pair is usable (a group of three or more needs every pair measured).
//! A group is formed as soon as one is valid, with no further probe: since that is checked on
//! every change that can make one valid (a new measurement: groups containing its pair; a
//! member entering their deadline window: groups containing them), every valid group contains
//! the change, and [`PairMatrix::best_group`] picks among them the one containing the oldest
//! waiter, then the smallest maximum pair RTT, then the earliest arrivals.
//!
//! Work per event touches only the pairs of the participants concerned: a refill visits, once
//! per started probe, the members with a free slot (indexed by arrival; the busy ones are not
//! looked at), a group search visits the usable partners of the change (at most
//! [`MAX_GROUPS_VISITED`] candidate groups).

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use pairlab_shared::{ConnectionKind, ProbeSessionId};

use super::candidates::WaitingSet;
use super::ids::{ConnId, GroupId, Pid};
use super::matchmaker::{Candidate, Matchmaker};
use crate::config::MatrixOptions;

/// How much longer a browser keeps a background probe's connection (`keep_ms`) than the
/// measurement counts as fresh, ms: the server closes it explicitly at staleness, so a game
/// started just before never names a connection the browser has already closed.
pub const KEEP_MARGIN_MS: u64 = 5_000;

/// The most candidate groups one search visits (groups of three or more).
pub const MAX_GROUPS_VISITED: usize = 10_000;

/// A pair, smaller handle first.
pub type PairKey = (Pid, Pid);

/// The key of the pair `{a, b}`.
pub fn pair_key(a: Pid, b: Pid) -> PairKey {
    if a < b {
        (a, b)
    } else {
        (b, a)
    }
}

/// A pair's last accepted measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The probe that measured it.
    pub probe_session_id: ProbeSessionId,
    /// The judged RTT (the larger of the two reports), ms.
    pub rtt_ms: f64,
    /// The path the probe took, when a member reported it.
    pub path: Option<ConnectionKind>,
    /// When the second report arrived.
    pub measured_at: Instant,
    /// The members' signalling connections when the probe started, in [`PairKey`] order.
    pub conns: [Option<ConnId>; 2],
    /// Whether both browsers still keep the probe's connection (not stale, not evicted).
    pub parked: bool,
}

#[derive(Debug, Clone)]
struct LiveProbe {
    group: GroupId,
    probe_session_id: ProbeSessionId,
    conns: [Option<ConnId>; 2],
}

#[derive(Debug, Clone, Default)]
struct Pair {
    live: Option<LiveProbe>,
    last: Option<Measurement>,
}

#[derive(Debug, Clone)]
struct Member {
    /// Arrival position in the waitroom.
    seq: u64,
    /// Background probes running.
    live: u32,
    /// Kept probe connections.
    parked: u32,
    /// From when their deadline is near (`deadline − probe_timeout_ms`).
    window_from: Instant,
}

/// Work for the router, queued by the matrix (drained by [`PairMatrix::drain`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Todo {
    /// Send `probe_close` for this probe to this participant.
    Close(Pid, ProbeSessionId),
    /// This background probe's round is no longer wanted: end it unjudged.
    Abandon(GroupId),
    /// The participant may start probes.
    Refill(Pid),
    /// A valid group may now exist among groups containing all of these.
    Match(Vec<Pid>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Stale(PairKey),
    Window(Pid),
}

/// How a background probe ended, as the matrix needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProbeEnd {
    /// Measured within `max_p2p_rtt_ms`.
    Measured {
        /// The judged RTT, ms.
        rtt_ms: f64,
        /// The path, when reported.
        path: Option<ConnectionKind>,
    },
    /// Failed or above the threshold: the pair is never probed or grouped again.
    Failed,
    /// A member went: nothing is known about the pair.
    Gone,
}

/// A background probe that ended, for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// The pair.
    pub pair: PairKey,
    /// The age of the measurement a new one replaces, ms (`None`: the pair's first).
    pub previous_age_ms: Option<f64>,
}

/// One pair of a group being formed, by player index.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPair {
    /// The lower player index.
    pub a: usize,
    /// The higher player index.
    pub b: usize,
    /// The measurement the decision used.
    pub measurement: Measurement,
    /// Whether the game adopts the probe's connection.
    pub handover: bool,
}

/// The pair-RTT matrix of one scene (module docs).
#[derive(Debug, Clone)]
pub struct PairMatrix {
    opts: MatrixOptions,
    max_p2p_rtt_ms: f64,
    window: Duration,
    members: HashMap<Pid, Member>,
    /// Members with a free probe slot (fewer than K running), by arrival position: the
    /// scheduler's candidates, so a refill skips everyone busy without looking at them.
    free: BTreeSet<(u64, Pid)>,
    pairs: HashMap<PairKey, Pair>,
    partners: HashMap<Pid, BTreeSet<Pid>>,
    /// Background probe rounds, until judged or abandoned.
    rounds: HashMap<GroupId, PairKey>,
    due: BTreeSet<(Instant, Due)>,
    todo: Vec<Todo>,
}

impl PairMatrix {
    /// An empty matrix with the scene's options, threshold (ms) and probe deadline (ms, also
    /// the deadline window).
    pub fn new(opts: MatrixOptions, max_p2p_rtt_ms: f64, probe_timeout_ms: u64) -> Self {
        Self {
            opts,
            max_p2p_rtt_ms,
            window: Duration::from_millis(probe_timeout_ms),
            members: HashMap::new(),
            free: BTreeSet::new(),
            pairs: HashMap::new(),
            partners: HashMap::new(),
            rounds: HashMap::new(),
            due: BTreeSet::new(),
            todo: Vec::new(),
        }
    }

    /// The `keep_ms` of a background probe's `probe_prepare`.
    pub fn keep_ms(&self) -> u64 {
        self.opts.pair_max_age_ms.saturating_add(KEEP_MARGIN_MS)
    }

    fn max_age(&self) -> Duration {
        Duration::from_millis(self.opts.pair_max_age_ms)
    }

    /// Number of members (the waiting set).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is in the matrix.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// `pid`'s running background probes.
    pub fn live_probes(&self, pid: Pid) -> u32 {
        self.members.get(&pid).map_or(0, |m| m.live)
    }

    /// `pid`'s open probe connections (running and kept).
    pub fn open_connections(&self, pid: Pid) -> u32 {
        self.members.get(&pid).map_or(0, |m| m.live + m.parked)
    }

    /// The pair's last measurement.
    pub fn measurement(&self, a: Pid, b: Pid) -> Option<&Measurement> {
        self.pairs.get(&pair_key(a, b))?.last.as_ref()
    }

    /// Whether `group` is one of this matrix's background probe rounds.
    pub fn owns(&self, group: GroupId) -> bool {
        self.rounds.contains_key(&group)
    }

    /// The pair a background round probes, if it is one of this matrix's.
    pub fn round_pair(&self, group: GroupId) -> Option<PairKey> {
        self.rounds.get(&group).copied()
    }

    /// The earliest time [`Self::expire`] has work.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.first().map(|(t, _)| *t)
    }

    /// The queued work, oldest first.
    pub fn drain(&mut self) -> Vec<Todo> {
        std::mem::take(&mut self.todo)
    }

    /// `pid` entered the waiting set at arrival position `seq`; their waitroom deadline is
    /// `deadline`. They will look for probes.
    pub fn join(&mut self, pid: Pid, seq: u64, deadline: Instant) {
        if self.members.contains_key(&pid) {
            return;
        }
        let window_from = deadline.checked_sub(self.window).unwrap_or(deadline);
        self.members.insert(
            pid,
            Member {
                seq,
                live: 0,
                parked: 0,
                window_from,
            },
        );
        self.free.insert((seq, pid));
        self.due.insert((window_from, Due::Window(pid)));
        self.todo.push(Todo::Refill(pid));
    }

    /// Adds `delta` to `pid`'s running probes, keeping [`Self::free`] in step.
    fn add_live(&mut self, pid: Pid, delta: i32) {
        let k = self.opts.probe_concurrency;
        if let Some(m) = self.members.get_mut(&pid) {
            m.live = m.live.saturating_add_signed(delta);
            if m.live < k {
                self.free.insert((m.seq, pid));
            } else {
                self.free.remove(&(m.seq, pid));
            }
        }
    }

    /// `pid` left the waiting set: their running probes are abandoned and closed, their kept
    /// connections closed, their pairs forgotten; partners whose slot freed look for probes.
    pub fn leave(&mut self, pid: Pid) {
        let Some(me) = self.members.remove(&pid) else {
            return;
        };
        self.free.remove(&(me.seq, pid));
        for other in self.partners.remove(&pid).unwrap_or_default() {
            if let Some(set) = self.partners.get_mut(&other) {
                set.remove(&pid);
                if set.is_empty() {
                    self.partners.remove(&other);
                }
            }
            let Some(pair) = self.pairs.remove(&pair_key(pid, other)) else {
                continue;
            };
            if let Some(live) = pair.live {
                self.abandon(live, [pid, other]);
                self.add_live(other, -1);
                self.todo.push(Todo::Refill(other));
            }
            if let Some(last) = pair.last.filter(|l| l.parked) {
                self.todo
                    .push(Todo::Close(other, last.probe_session_id.clone()));
                self.todo.push(Todo::Close(pid, last.probe_session_id));
                if let Some(m) = self.members.get_mut(&other) {
                    m.parked = m.parked.saturating_sub(1);
                }
            }
        }
    }

    /// A running probe is no longer wanted: its round ends unjudged, both members close it.
    fn abandon(&mut self, live: LiveProbe, members: [Pid; 2]) {
        self.todo.push(Todo::Abandon(live.group));
        for pid in members {
            self.todo
                .push(Todo::Close(pid, live.probe_session_id.clone()));
        }
    }

    /// The round `group` was ended by the router ([`Todo::Abandon`]): forget it.
    pub fn forget_round(&mut self, group: GroupId) {
        self.rounds.remove(&group);
    }

    fn fresh(&self, m: &Measurement, now: Instant) -> bool {
        now < m.measured_at + self.max_age()
    }

    fn in_window(&self, pid: Pid, now: Instant) -> bool {
        self.members.get(&pid).is_some_and(|m| m.window_from <= now)
    }

    /// Whether the pair counts for a group at `now` (module docs: usable).
    pub fn usable(&self, a: Pid, b: Pid, now: Instant) -> Option<f64> {
        let m = self.measurement(a, b)?;
        let recent = self.fresh(m, now) || self.in_window(a, now) || self.in_window(b, now);
        (recent && m.rtt_ms <= self.max_p2p_rtt_ms).then_some(m.rtt_ms)
    }

    /// The partner `pid` should probe next, if any (module docs: scheduling): the oldest
    /// eligible waiter in `waiting` passing `mm`'s pre-filter with `pid`, else the oldest
    /// eligible one. `blocked` says which pairs must never be probed (their probe failed).
    pub fn next_partner(
        &self,
        now: Instant,
        pid: Pid,
        waiting: &WaitingSet,
        mm: &dyn Matchmaker,
        blocked: &dyn Fn(Pid, Pid) -> bool,
    ) -> Option<Pid> {
        let k = self.opts.probe_concurrency;
        let me = self.members.get(&pid)?;
        if me.live >= k {
            return None;
        }
        let my_rtt = waiting.get(me.seq).filter(|w| w.pid == pid)?.rtt_ms;
        let mine = Candidate {
            id: pid,
            rtt_ms: my_rtt,
        };
        let mut fallback = None;
        for &(seq, other) in &self.free {
            let Some(w) = waiting.get(seq).filter(|w| w.pid == other && other != pid) else {
                continue;
            };
            if let Some(pair) = self.pairs.get(&pair_key(pid, w.pid)) {
                if pair.live.is_some() || pair.last.as_ref().is_some_and(|m| self.fresh(m, now)) {
                    continue;
                }
            }
            if blocked(pid, w.pid) {
                continue;
            }
            let theirs = Candidate {
                id: w.pid,
                rtt_ms: w.rtt_ms,
            };
            if mm.pair_passes(&mine, &theirs) {
                return Some(w.pid);
            }
            fallback = fallback.or(Some(w.pid));
        }
        fallback
    }

    /// A background probe between `a` and `b` started (round `group`, on the members'
    /// signalling connections `conns`, in `(a, b)` order). A member now over
    /// `max_probe_connections` has their kept connection with the largest RTT closed.
    pub fn started(
        &mut self,
        a: Pid,
        b: Pid,
        group: GroupId,
        probe_session_id: ProbeSessionId,
        conns: [Option<ConnId>; 2],
    ) {
        let key = pair_key(a, b);
        let conns = if key.0 == a {
            conns
        } else {
            [conns[1], conns[0]]
        };
        self.pairs.entry(key).or_default().live = Some(LiveProbe {
            group,
            probe_session_id,
            conns,
        });
        self.partners.entry(a).or_default().insert(b);
        self.partners.entry(b).or_default().insert(a);
        self.rounds.insert(group, key);
        for pid in [a, b] {
            self.add_live(pid, 1);
            while self.open_connections(pid) > self.opts.max_probe_connections {
                if !self.evict_worst(pid) {
                    break;
                }
            }
        }
    }

    /// Closes `pid`'s kept connection with the largest RTT; `false` when they keep none.
    fn evict_worst(&mut self, pid: Pid) -> bool {
        let worst = self.partners.get(&pid).and_then(|set| {
            set.iter()
                .filter_map(|&o| {
                    let m = self.pairs.get(&pair_key(pid, o))?.last.as_ref()?;
                    m.parked.then_some((o, m.rtt_ms))
                })
                .max_by(|x, y| x.1.total_cmp(&y.1))
        });
        let Some((other, _)) = worst else {
            return false;
        };
        self.unpark(pair_key(pid, other));
        true
    }

    /// Closes a pair's kept connection (both members are told).
    fn unpark(&mut self, key: PairKey) {
        let Some(m) = self
            .pairs
            .get_mut(&key)
            .and_then(|p| p.last.as_mut())
            .filter(|m| m.parked)
        else {
            return;
        };
        m.parked = false;
        let id = m.probe_session_id.clone();
        for pid in [key.0, key.1] {
            if let Some(member) = self.members.get_mut(&pid) {
                member.parked = member.parked.saturating_sub(1);
            }
            self.todo.push(Todo::Close(pid, id.clone()));
        }
    }

    /// The background round `group` ended at `now` with `end`. Returns the pair and the age
    /// of the measurement a new one replaces; `None` when the round is not this matrix's or
    /// its pair is gone (a member left first). The members look for probes again; a new
    /// measurement may complete a group ([`Todo::Match`]); a failed pair's connections close.
    pub fn probe_ended(&mut self, now: Instant, group: GroupId, end: ProbeEnd) -> Option<Ended> {
        let key = self.rounds.remove(&group)?;
        let max_age = self.max_age();
        let pair = self.pairs.get_mut(&key)?;
        let live = pair.live.take()?;
        let previous_age_ms = pair
            .last
            .as_ref()
            .map(|m| now.saturating_duration_since(m.measured_at).as_secs_f64() * 1000.0);
        self.add_live(key.0, -1);
        self.add_live(key.1, -1);
        match end {
            ProbeEnd::Measured { rtt_ms, path } => {
                self.unpark(key);
                if let Some(pair) = self.pairs.get_mut(&key) {
                    pair.last = Some(Measurement {
                        probe_session_id: live.probe_session_id,
                        rtt_ms,
                        path,
                        measured_at: now,
                        conns: live.conns,
                        parked: true,
                    });
                }
                for pid in [key.0, key.1] {
                    if let Some(m) = self.members.get_mut(&pid) {
                        m.parked += 1;
                    }
                }
                self.due.insert((now + max_age, Due::Stale(key)));
                self.todo.push(Todo::Match(vec![key.0, key.1]));
            }
            ProbeEnd::Failed | ProbeEnd::Gone => {
                // Nothing usable is known: the pair is forgotten (a failed one stays in the
                // waitroom's failed pairs, which keep it from being probed again).
                self.unpark(key);
                self.pairs.remove(&key);
                for (a, b) in [(key.0, key.1), (key.1, key.0)] {
                    if let Some(set) = self.partners.get_mut(&a) {
                        set.remove(&b);
                        if set.is_empty() {
                            self.partners.remove(&a);
                        }
                    }
                }
                for pid in [key.0, key.1] {
                    self.todo
                        .push(Todo::Close(pid, live.probe_session_id.clone()));
                }
            }
        }
        self.todo.push(Todo::Refill(key.0));
        self.todo.push(Todo::Refill(key.1));
        Some(Ended {
            pair: key,
            previous_age_ms,
        })
    }

    /// Stale measurements at or before `now` close their kept connection and their members
    /// look for probes; members entering their deadline window may complete a group.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, due)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.pop_first();
            match due {
                Due::Stale(key) => {
                    let stale = self
                        .pairs
                        .get(&key)
                        .and_then(|p| p.last.as_ref())
                        .is_some_and(|m| !self.fresh(m, now));
                    if stale {
                        self.unpark(key);
                        self.todo.push(Todo::Refill(key.0));
                        self.todo.push(Todo::Refill(key.1));
                    }
                }
                Due::Window(pid) => {
                    if self.members.contains_key(&pid) {
                        self.todo.push(Todo::Match(vec![pid]));
                    }
                }
            }
        }
    }

    /// The valid group of `size` containing every one of `seed` that the rule prefers (module
    /// docs: grouping), in arrival order; `None` when there is none.
    pub fn best_group(&self, now: Instant, seed: &[Pid], size: usize) -> Option<Vec<Pid>> {
        if seed.is_empty() || seed.len() > size {
            return None;
        }
        let mut max_rtt = 0.0f64;
        for (i, &a) in seed.iter().enumerate() {
            self.members.get(&a)?;
            for &b in &seed[i + 1..] {
                max_rtt = max_rtt.max(self.usable(a, b, now)?);
            }
        }
        // Partners usable with every seed member, in arrival order.
        let mut pool: Vec<(u64, Pid)> = self
            .partners
            .get(&seed[0])
            .into_iter()
            .flatten()
            .filter(|o| !seed.contains(o))
            .filter(|&&o| seed.iter().all(|&s| self.usable(s, o, now).is_some()))
            .filter_map(|&o| self.members.get(&o).map(|m| (m.seq, o)))
            .collect();
        pool.sort_unstable();
        let mut search = Search {
            matrix: self,
            now,
            pool: &pool,
            need: size - seed.len(),
            visited: 0,
            best: None,
        };
        let mut chosen: Vec<Pid> = seed.to_vec();
        search.extend(0, &mut chosen, max_rtt);
        let mut best = search.best?.2;
        best.sort_by_key(|p| self.members.get(p).map_or(u64::MAX, |m| m.seq));
        Some(best)
    }

    /// The pairs of `members` (player order) with their measurements, and whether each
    /// connection can be handed to the game: kept, within its `keep_ms`, and both members on
    /// the signalling connections that ran the probe (`conn_of`).
    pub fn group_pairs(
        &self,
        now: Instant,
        members: &[Pid],
        conn_of: &dyn Fn(Pid) -> Option<ConnId>,
    ) -> Vec<GroupPair> {
        let mut out = Vec::new();
        for (a, &pa) in members.iter().enumerate() {
            for (b, &pb) in members.iter().enumerate().skip(a + 1) {
                let Some(m) = self.measurement(pa, pb) else {
                    continue;
                };
                let key = pair_key(pa, pb);
                let same = m.conns[0].is_some() && m.conns == [conn_of(key.0), conn_of(key.1)];
                let handover = m.parked && same && self.fresh(m, now);
                out.push(GroupPair {
                    a,
                    b,
                    measurement: m.clone(),
                    handover,
                });
            }
        }
        out
    }

    /// The group `members` (player order) becomes a game with `pairs` (from
    /// [`Self::group_pairs`]): its pairs leave the matrix without closing their connections
    /// (the game adopts or closes them; the router names them in `game_start.probes`). The
    /// members then leave the waiting set ([`Self::leave`]).
    pub fn hand_over(&mut self, members: &[Pid], pairs: &[GroupPair]) {
        for p in pairs {
            let (pa, pb) = (members[p.a], members[p.b]);
            if let Some(pair) = self.pairs.remove(&pair_key(pa, pb)) {
                let parked = pair.last.as_ref().is_some_and(|m| m.parked);
                let running = pair.live.is_some();
                if let Some(live) = pair.live {
                    // A re-measurement still running: the game uses the last one.
                    self.abandon(live, [pa, pb]);
                }
                for pid in [pa, pb] {
                    if let Some(m) = self.members.get_mut(&pid) {
                        m.parked = m.parked.saturating_sub(u32::from(parked));
                    }
                    if running {
                        self.add_live(pid, -1);
                    }
                }
            }
            for (me, peer) in [(pa, pb), (pb, pa)] {
                if let Some(set) = self.partners.get_mut(&me) {
                    set.remove(&peer);
                }
            }
        }
    }

    /// Checks the matrix's invariants against the waiting set; `Err` names the first broken:
    /// members are exactly the waiting set, each member's counts match their pairs, nobody
    /// runs more than K probes or holds more than `max_probe_connections`.
    pub fn check_invariants(&self, waiting: &WaitingSet) -> Result<(), String> {
        if waiting.len() != self.members.len() {
            return Err(format!(
                "matrix holds {} members but {} wait",
                self.members.len(),
                waiting.len()
            ));
        }
        for (_, w) in waiting.entries() {
            if !self.members.contains_key(&w.pid) {
                return Err(format!("waiting {} is not in the matrix", w.pid));
            }
        }
        let mut live: HashMap<Pid, u32> = HashMap::new();
        let mut parked: HashMap<Pid, u32> = HashMap::new();
        for (&(a, b), pair) in &self.pairs {
            for pid in [a, b] {
                if !self.members.contains_key(&pid) {
                    return Err(format!("pair ({a}, {b}) has a non-member {pid}"));
                }
                *live.entry(pid).or_default() += u32::from(pair.live.is_some());
                *parked.entry(pid).or_default() +=
                    u32::from(pair.last.as_ref().is_some_and(|m| m.parked));
            }
        }
        for (pid, m) in &self.members {
            let (l, p) = (
                live.get(pid).copied().unwrap_or(0),
                parked.get(pid).copied().unwrap_or(0),
            );
            if (m.live, m.parked) != (l, p) {
                return Err(format!(
                    "{pid} counts {} running and {} kept but has {l} and {p}",
                    m.live, m.parked
                ));
            }
            if l > self.opts.probe_concurrency || l + p > self.opts.max_probe_connections {
                return Err(format!(
                    "{pid} runs {l} probes and keeps {p}: over the bounds"
                ));
            }
            if self.free.contains(&(m.seq, *pid)) != (l < self.opts.probe_concurrency) {
                return Err(format!("{pid}'s free slot is not indexed right"));
            }
        }
        if self.free.len() > self.members.len() {
            return Err("a free slot of a non-member is indexed".into());
        }
        Ok(())
    }
}

/// The depth-first search of [`PairMatrix::best_group`].
struct Search<'a> {
    matrix: &'a PairMatrix,
    now: Instant,
    /// Candidates, by arrival position.
    pool: &'a [(u64, Pid)],
    /// Members still to choose.
    need: usize,
    visited: usize,
    /// The best group so far: oldest member's position, maximum pair RTT, members.
    best: Option<(u64, f64, Vec<Pid>)>,
}

impl Search<'_> {
    fn seqs(&self, group: &[Pid]) -> Vec<u64> {
        let mut s: Vec<u64> = group
            .iter()
            .map(|p| self.matrix.members.get(p).map_or(u64::MAX, |m| m.seq))
            .collect();
        s.sort_unstable();
        s
    }

    /// Whether (oldest, max RTT, arrivals) of `group` beats the best so far.
    fn better(&self, max_rtt: f64, group: &[Pid]) -> bool {
        let Some((best_oldest, best_rtt, best_group)) = &self.best else {
            return true;
        };
        let seqs = self.seqs(group);
        let order = seqs[0]
            .cmp(best_oldest)
            .then(max_rtt.total_cmp(best_rtt))
            .then_with(|| seqs.cmp(&self.seqs(best_group)));
        order == Ordering::Less
    }

    fn extend(&mut self, from: usize, chosen: &mut Vec<Pid>, max_rtt: f64) {
        if self.visited >= MAX_GROUPS_VISITED {
            return;
        }
        if self.need == 0 {
            self.visited += 1;
            if self.better(max_rtt, chosen) {
                let oldest = self.seqs(chosen)[0];
                self.best = Some((oldest, max_rtt, chosen.clone()));
            }
            return;
        }
        for i in from..self.pool.len() {
            let (_, c) = self.pool[i];
            let mut worst = max_rtt;
            let fits = chosen
                .iter()
                .all(|&m| match self.matrix.usable(m, c, self.now) {
                    Some(r) => {
                        worst = worst.max(r);
                        true
                    }
                    None => false,
                });
            if !fits {
                continue;
            }
            chosen.push(c);
            self.need -= 1;
            self.extend(i + 1, chosen, worst);
            self.need += 1;
            chosen.pop();
        }
    }
}
