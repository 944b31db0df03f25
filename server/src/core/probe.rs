//! The probe coordinator: the server side of the P2P probe (PROTOCOL.md, Probe), and the one
//! place where a proposed group's fate is decided.
//!
//! A probe is a temporary WebRTC connection between two participants that a matchmaker proposed
//! to group, used to measure their real peer-to-peer RTT before a game exists. Every pair of a
//! proposed group is probed in parallel: one *round* per group ([`ProbeCoordinator::start_round`]).
//! Each probe runs its protocol — `probe_prepare` → both `probe_ready` → `probe_start` → relayed
//! `probe_signal`s → both `probe_result`s — and ends with a result, at its deadline, or when a
//! member goes. The coordinator then:
//! 1. judges the pair ([`judge_pair`]: a failure, or the larger of the two reported RTTs against
//!    the scene's `max_p2p_rtt_ms`), and writes the `probe_result` line;
//! 2. folds the pair into its round; once every pair is judged, or a member disconnected, the
//!    round yields the group's [`Verdict`]: `Accepted` with the pairs' RTTs, or `Rejected` with
//!    the reason and the pairs that failed.
//!
//! The router only acts on a verdict (it starts the game, or puts the members back into the
//! waitroom and has it remember the failed pairs). Every operation that can end probes returns
//! [`PairJudged`]s in order, each with the group verdict it completed, if any.
//!
//! The verdict also lists the round's probes ([`RoundProbe`]), which settle what becomes of
//! their connections in the browsers (PROTOCOL.md, "Handover"): a probe prepared with
//! `keep_ms` (the scene's `probe_handover`) is kept open after its result, and an accepted
//! pair's probe becomes the game connection when both members are still on the signalling
//! connections that ran it ([`RoundProbe::handover`]); every other probe a browser may still
//! hold open (kept, or cut short before both results) gets `probe_close`
//! ([`RoundProbe::may_be_open`], [`RoundProbe::closes`]).
//!
//! It also enforces what the original framework's coordinator did not:
//! - the deadline really fires ([`ProbeCoordinator::expire`]; the original's cleanup was never
//!   called, so a silent peer stalled a match forever);
//! - only the two members may speak for a probe, and a signal goes only to the other member
//!   (the original relayed to any `target_subject_id`);
//! - members know each other only by [`PlayerIndex`] (their place in the proposed group, kept
//!   in the game if it is accepted), never by `subject_id`;
//! - `ready` counts once per member, a `result` once per member;
//! - a member's disconnect fails the probe, and with it the group, at once
//!   ([`ProbeCoordinator::fail_member`]); it is not held against the pair.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pairlab_shared::{
    IceServer, PlayerIndex, ProbeClose, ProbePrepare, ProbeResult, ProbeSessionId, ProbeSignalIn,
    ProbeSignalOut, ProbeStart, ServerMessage, SubjectId,
};

use super::capacity::ShrinkWhenSparse;
use super::ids::{ConnId, GroupId, IdSource, Pid};
use super::research::{PairRtt, ProbeFailure, ProbeReport, ResearchEvent};

/// How long an ended probe is remembered, so that its members' late messages (a trickled
/// candidate after the decision, a result after the deadline) are ignored quietly instead of
/// being answered with `not_a_member`.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// One member of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeMember {
    /// The router's participant handle.
    pub pid: Pid,
    /// The participant's id (for the record and TURN credentials; never sent to the peer).
    pub subject_id: SubjectId,
    /// The participant's place in the proposed group, by which the peer knows them.
    pub index: PlayerIndex,
    /// The signalling connection the probe runs on (`None`: none at proposal). A handover needs
    /// the member to be on it still when the game starts: a new connection means a new page,
    /// which no longer holds the probe's `RTCPeerConnection`.
    pub conn: Option<ConnId>,
}

/// A message for one member, addressed by the router's participant handle.
pub type Outgoing = (Pid, ServerMessage);

/// The probe message was refused: the sender is not a member of a live or recently ended probe
/// with that id, or the signal's target is not the other member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("you are not a member of that probe, or it does not exist")]
pub struct NotAMember;

/// What a member's message did.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled<T> {
    /// It applied to a live probe.
    Applied(T),
    /// It came from a member of a probe that has ended: ignored.
    Late,
}

/// A proposed group to probe: every pair of `members`, in parallel.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRound {
    /// The router's handle for the group.
    pub group: GroupId,
    /// The scene (index into the config's scenes), for the record.
    pub scene: usize,
    /// The members, in player order.
    pub members: Vec<ProbeMember>,
    /// The scene's threshold on a pair's peer-to-peer RTT, ms.
    pub max_p2p_rtt_ms: f64,
    /// Each probe's deadline, ms after its `probe_prepare`.
    pub timeout_ms: u64,
    /// The scene's `force_relay`, passed on in `probe_prepare` so that the probe measures the
    /// path the game will use (relay candidates only).
    pub force_relay: bool,
    /// `probe_prepare.keep_ms` (the scene's [`SceneConfig::probe_keep_ms`]): the browsers keep
    /// each probe's connection after the result, for the game to adopt. `None`: no handover.
    ///
    /// [`SceneConfig::probe_keep_ms`]: crate::config::SceneConfig::probe_keep_ms
    pub keep_ms: Option<u64>,
}

/// One probe a round started.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedProbe {
    /// The probe.
    pub probe_session_id: ProbeSessionId,
    /// A `probe_prepare` for each member, initiator first.
    pub prepares: [Outgoing; 2],
    /// The `probe_started` line.
    pub record: ResearchEvent,
}

/// A group's fate, once all its pairs are judged or a member disconnected.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every pair's RTT is within the threshold: the group becomes a game.
    Accepted {
        /// Each pair's RTT, in the order the pairs were decided.
        pair_rtts: Vec<PairRtt>,
    },
    /// The group cannot be: its members return to the waitroom.
    Rejected {
        /// The first failure among the pairs, or `Disconnected` when a member went.
        reason: ProbeFailure,
        /// The pairs whose probe failed (not those cut short by a disconnect): never to be
        /// grouped again.
        failed_pairs: Vec<[SubjectId; 2]>,
    },
}

/// The verdict on one proposed group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupVerdict {
    /// Which group.
    pub group: GroupId,
    /// Its scene.
    pub scene: usize,
    /// Its members, in player order.
    pub members: Vec<Pid>,
    /// Its fate.
    pub verdict: Verdict,
    /// Every probe of the round, in the order they ended: what becomes of their connections.
    pub probes: Vec<RoundProbe>,
}

/// One probe of a decided round, with what settles the fate of its connection in the
/// browsers (PROTOCOL.md, "Handover").
#[derive(Debug, Clone, PartialEq)]
pub struct RoundProbe {
    /// The probe.
    pub probe_session_id: ProbeSessionId,
    /// Its members, initiator first, each with the signalling connection that ran it.
    pub members: [ProbeMember; 2],
    /// The pair was accepted: both members reported success, and the RTT passed.
    pub accepted: bool,
    /// Its `probe_prepare` carried `keep_ms`: the browsers keep the connection after their
    /// result, until `game_start` adopts it or `probe_close` (or the window) closes it.
    pub kept: bool,
    /// It ended before both members reported (the deadline, a member gone, or its round
    /// decided without it): a browser may still be running it.
    pub cut_short: bool,
}

impl RoundProbe {
    /// Whether the probe's connection becomes the game connection of its pair: it was kept,
    /// the pair was accepted (both reported success), and both members are still on the
    /// signalling connection that ran it (`conn_of` gives a member's current one; a member
    /// who reconnected has a new page, without the probe's connection).
    pub fn handover(&self, conn_of: impl Fn(Pid) -> Option<ConnId>) -> bool {
        self.kept
            && self.accepted
            && self
                .members
                .iter()
                .all(|m| m.conn.is_some() && conn_of(m.pid) == m.conn)
    }

    /// Whether a member's browser may still hold the probe's connection open, so that not
    /// handing it over takes a `probe_close`: it was kept, or cut short. (A probe prepared
    /// without `keep_ms` that both members finished has closed already.)
    pub fn may_be_open(&self) -> bool {
        self.kept || self.cut_short
    }

    /// A `probe_close` for each member.
    pub fn closes(&self) -> [Outgoing; 2] {
        self.members.clone().map(|m| {
            let close = ProbeClose {
                probe_session_id: self.probe_session_id.clone(),
            };
            (m.pid, ServerMessage::ProbeClose(close))
        })
    }
}

/// One probe's end: the `probe_result` line, and the verdict on its group when this pair was
/// the last to be judged (or a member disconnected).
#[derive(Debug, Clone, PartialEq)]
pub struct PairJudged {
    /// The scene of the probe's group, for the record.
    pub scene: usize,
    /// The `probe_result` line.
    pub record: ResearchEvent,
    /// The group's verdict, when this probe decided it.
    pub verdict: Option<GroupVerdict>,
}

/// The rule for one probed pair (the original framework's `should_reject_for_rtt`): a probe that
/// failed (`failure`: a missing report, a failed measurement, a disconnect) is rejected for that
/// reason; otherwise the measured RTT, ms, must be at most `max_p2p_rtt_ms` (equal is accepted;
/// no measurement or NaN is `RttTooHigh`). Returns the accepted RTT, ms.
///
/// # Errors
/// The reason the pair is rejected.
pub fn judge_pair(
    failure: Option<ProbeFailure>,
    rtt_ms: Option<f64>,
    max_p2p_rtt_ms: f64,
) -> Result<f64, ProbeFailure> {
    match (failure, rtt_ms) {
        (Some(f), _) => Err(f),
        (None, Some(m)) if !m.is_nan() && m <= max_p2p_rtt_ms => Ok(m),
        (None, _) => Err(ProbeFailure::RttTooHigh),
    }
}

#[derive(Debug)]
struct ProbeSession {
    group: GroupId,
    /// Creation order: probes due at one tick are decided in this order.
    seq: u64,
    members: [ProbeMember; 2],
    ready_at: [Option<Instant>; 2],
    reports: [Option<ProbeReport>; 2],
    prepared_at: Instant,
    deadline: Instant,
}

/// A probe that has ended, before it is judged.
#[derive(Debug)]
struct Finished {
    probe_session_id: ProbeSessionId,
    group: GroupId,
    /// Initiator first.
    members: [ProbeMember; 2],
    /// Each member's report, in `members` order.
    reports: [Option<ProbeReport>; 2],
    /// Why the probe failed before any RTT could be judged: a missing report at the deadline,
    /// a failed measurement, a disconnect. `None` when both members measured an RTT.
    failure: Option<ProbeFailure>,
    /// The RTT to judge: the larger of the two reported `rtt_ms`, when `failure` is `None`.
    rtt_ms: Option<f64>,
    /// From `probe_prepare` to the second `probe_ready`, ms.
    ready_ms: Option<f64>,
    /// From `probe_prepare` to the decision, ms.
    duration_ms: f64,
}

/// The probes of one proposed group, and what they have found so far.
#[derive(Debug)]
struct ProbeRound {
    scene: usize,
    /// In player order.
    members: Vec<Pid>,
    max_p2p_rtt_ms: f64,
    /// Probes not yet judged.
    pending: usize,
    failure: Option<ProbeFailure>,
    failed_pairs: Vec<[SubjectId; 2]>,
    pair_rtts: Vec<PairRtt>,
    probe_ids: Vec<ProbeSessionId>,
    /// Whether its probes were prepared with `keep_ms`.
    kept: bool,
    /// Its probes that have ended, in that order.
    ended: Vec<RoundProbe>,
}

/// All live probes and probe rounds of a server. Pure: every method takes the time and returns
/// messages, lines and verdicts.
#[derive(Debug, Default)]
pub struct ProbeCoordinator {
    probes: HashMap<ProbeSessionId, ProbeSession>,
    by_member: HashMap<Pid, Vec<ProbeSessionId>>,
    ended: HashMap<ProbeSessionId, ([Pid; 2], Instant)>,
    rounds: HashMap<GroupId, ProbeRound>,
    next_seq: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl ProbeCoordinator {
    /// An empty coordinator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live probes.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    /// Whether no probe is live.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// How many entries the coordinator's maps have room for, in all: their capacity, which
    /// stays allocated when they empty (given back once sparse, see `super::capacity`).
    pub fn room(&self) -> usize {
        self.probes.capacity()
            + self.by_member.capacity()
            + self.ended.capacity()
            + self.rounds.capacity()
    }

    /// Number of ended probes still remembered (for [`TOMBSTONE_TTL`]).
    pub fn tombstones(&self) -> usize {
        self.ended.len()
    }

    /// Number of groups being probed.
    pub fn rounds(&self) -> usize {
        self.rounds.len()
    }

    /// The members of each group being probed, in player order.
    pub fn round_members(&self) -> impl Iterator<Item = (GroupId, &[Pid])> {
        self.rounds.iter().map(|(g, r)| (*g, r.members.as_slice()))
    }

    /// Whether group `group` is being probed and holds `pid`.
    pub fn round_holds(&self, group: GroupId, pid: Pid) -> bool {
        self.rounds
            .get(&group)
            .is_some_and(|r| r.members.contains(&pid))
    }

    /// Starts probing every pair of `round.members`, in parallel. Returns, per probe in pair
    /// order, a `probe_prepare` for each member (carrying the ICE servers `ice_servers_for`
    /// gives them: TURN credentials may be minted per participant) and its `probe_started` line.
    pub fn start_round(
        &mut self,
        now: Instant,
        ids: &mut dyn IdSource,
        round: NewRound,
        ice_servers_for: &dyn Fn(&SubjectId) -> Vec<IceServer>,
    ) -> Vec<StartedProbe> {
        let mut started = Vec::new();
        for (i, a) in round.members.iter().enumerate() {
            for b in &round.members[i + 1..] {
                started.push(self.create_probe(now, ids, &round, a, b, ice_servers_for));
            }
        }
        let probe_ids: Vec<ProbeSessionId> =
            started.iter().map(|p| p.probe_session_id.clone()).collect();
        self.rounds.insert(
            round.group,
            ProbeRound {
                scene: round.scene,
                members: round.members.iter().map(|m| m.pid).collect(),
                max_p2p_rtt_ms: round.max_p2p_rtt_ms,
                pending: probe_ids.len(),
                failure: None,
                failed_pairs: Vec::new(),
                pair_rtts: Vec::new(),
                probe_ids,
                kept: round.keep_ms.is_some(),
                ended: Vec::new(),
            },
        );
        started
    }

    /// Starts a probe of `round` between `a` and `b` (order irrelevant: the member with the
    /// smaller player index becomes the initiator, [`pairlab_shared::is_initiator`], and is
    /// listed first). The
    /// deadline is `now + round.timeout_ms`.
    fn create_probe(
        &mut self,
        now: Instant,
        ids: &mut dyn IdSource,
        round: &NewRound,
        a: &ProbeMember,
        b: &ProbeMember,
        ice_servers_for: &dyn Fn(&SubjectId) -> Vec<IceServer>,
    ) -> StartedProbe {
        let members = if pairlab_shared::is_initiator(b.index, a.index) {
            [b.clone(), a.clone()]
        } else {
            [a.clone(), b.clone()]
        };
        let (timeout_ms, force_relay, keep_ms) =
            (round.timeout_ms, round.force_relay, round.keep_ms);
        let id = ids.probe_session_id();
        let prepare = |me: &ProbeMember, peer: &ProbeMember| {
            ServerMessage::ProbePrepare(ProbePrepare {
                probe_session_id: id.clone(),
                peer_index: peer.index,
                ice_servers: ice_servers_for(&me.subject_id),
                timeout_ms,
                force_relay,
                keep_ms,
            })
        };
        let prepares = [
            (members[0].pid, prepare(&members[0], &members[1])),
            (members[1].pid, prepare(&members[1], &members[0])),
        ];
        let record = ResearchEvent::ProbeStarted {
            probe_session_id: id.clone(),
            members: [members[0].subject_id.clone(), members[1].subject_id.clone()],
            timeout_ms,
        };
        for m in &members {
            self.by_member.entry(m.pid).or_default().push(id.clone());
        }
        self.next_seq += 1;
        self.probes.insert(
            id.clone(),
            ProbeSession {
                group: round.group,
                seq: self.next_seq,
                members,
                ready_at: [None, None],
                reports: [None, None],
                prepared_at: now,
                deadline: now + Duration::from_millis(timeout_ms),
            },
        );
        StartedProbe {
            probe_session_id: id,
            prepares,
            record,
        }
    }

    fn member_index(&self, id: &ProbeSessionId, pid: Pid) -> Result<Handled<usize>, NotAMember> {
        if let Some(p) = self.probes.get(id) {
            return p
                .members
                .iter()
                .position(|m| m.pid == pid)
                .map(Handled::Applied)
                .ok_or(NotAMember);
        }
        match self.ended.get(id) {
            Some((pids, _)) if pids.contains(&pid) => Ok(Handled::Late),
            _ => Err(NotAMember),
        }
    }

    /// `probe_ready` from participant `pid`. Counted once per member; when both are ready,
    /// returns a `probe_start` for each (the first member is the initiator).
    ///
    /// # Errors
    /// [`NotAMember`] when `pid` is not a member of that probe.
    pub fn handle_ready(
        &mut self,
        now: Instant,
        id: &ProbeSessionId,
        pid: Pid,
    ) -> Result<Handled<Vec<Outgoing>>, NotAMember> {
        let Handled::Applied(i) = self.member_index(id, pid)? else {
            return Ok(Handled::Late);
        };
        let Some(p) = self.probes.get_mut(id) else {
            return Err(NotAMember);
        };
        let was_ready = p.ready_at.iter().all(Option::is_some);
        if p.ready_at[i].is_none() {
            p.ready_at[i] = Some(now);
        }
        let mut out = Vec::new();
        if !was_ready && p.ready_at.iter().all(Option::is_some) {
            for (k, m) in p.members.iter().enumerate() {
                out.push((
                    m.pid,
                    ServerMessage::ProbeStart(ProbeStart {
                        probe_session_id: id.clone(),
                        initiator: k == 0,
                    }),
                ));
            }
        }
        Ok(Handled::Applied(out))
    }

    /// `probe_signal` from participant `pid`: returns the relayed message for the other member.
    ///
    /// # Errors
    /// [`NotAMember`] when `pid` is not a member, or the target is not the other member.
    pub fn handle_signal(
        &mut self,
        pid: Pid,
        signal: ProbeSignalOut,
    ) -> Result<Handled<Outgoing>, NotAMember> {
        let Handled::Applied(i) = self.member_index(&signal.probe_session_id, pid)? else {
            return Ok(Handled::Late);
        };
        let Some(p) = self.probes.get(&signal.probe_session_id) else {
            return Err(NotAMember);
        };
        let from = &p.members[i];
        let to = &p.members[1 - i];
        if signal.target_index != to.index {
            return Err(NotAMember);
        }
        Ok(Handled::Applied((
            to.pid,
            ServerMessage::ProbeSignal(ProbeSignalIn {
                probe_session_id: signal.probe_session_id,
                from_index: from.index,
                signal_type: signal.signal_type,
                payload: signal.payload,
            }),
        )))
    }

    /// `probe_result` from participant `pid`. The first report of each member counts; a repeat
    /// is ignored. Once both have reported, the probe ends and is judged.
    ///
    /// # Errors
    /// [`NotAMember`] when `pid` is not a member of that probe.
    pub fn handle_result(
        &mut self,
        now: Instant,
        pid: Pid,
        result: ProbeResult,
    ) -> Result<Handled<Option<PairJudged>>, NotAMember> {
        let id = result.probe_session_id.clone();
        let Handled::Applied(i) = self.member_index(&id, pid)? else {
            return Ok(Handled::Late);
        };
        let Some(p) = self.probes.get_mut(&id) else {
            return Err(NotAMember);
        };
        if p.reports[i].is_none() {
            p.reports[i] = Some(ProbeReport {
                success: result.success,
                rtt_ms: result.rtt_ms,
                samples_ms: result.samples_ms,
                stats_rtt_ms: result.stats_rtt_ms,
                connection: result.connection,
                received_ms: ms(now.saturating_duration_since(p.prepared_at)),
            });
        }
        if p.reports.iter().all(Option::is_some) {
            let finished = self.finish(now, &id, None);
            return Ok(Handled::Applied(self.judge(now, finished)));
        }
        Ok(Handled::Applied(None))
    }

    /// Participant `pid` disconnected or left: every live probe they are in fails at once, and
    /// with it their group.
    pub fn fail_member(&mut self, now: Instant, pid: Pid) -> Vec<PairJudged> {
        let ids = self.by_member.get(&pid).cloned().unwrap_or_default();
        let mut judged = Vec::with_capacity(ids.len());
        for id in ids {
            // (Deciding the group on the first of them cancels the others.)
            if self.probes.contains_key(&id) {
                let finished = self.finish(now, &id, Some(ProbeFailure::Disconnected));
                judged.extend(self.judge(now, finished));
            }
        }
        judged
    }

    /// Decides every probe whose deadline is at or before `now` (a missing report is a
    /// [`ProbeFailure::Timeout`]), in deadline and creation order, and forgets ended probes
    /// older than [`TOMBSTONE_TTL`].
    pub fn expire(&mut self, now: Instant) -> Vec<PairJudged> {
        self.ended.retain(|_, (_, until)| *until > now);
        let mut due: Vec<(Instant, u64, ProbeSessionId)> = self
            .probes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, p)| (p.deadline, p.seq, id.clone()))
            .collect();
        due.sort_by_key(|(deadline, seq, _)| (*deadline, *seq));
        let mut judged = Vec::with_capacity(due.len());
        for (_, _, id) in due {
            if self.probes.contains_key(&id) {
                let finished = self.finish(now, &id, Some(ProbeFailure::Timeout));
                judged.extend(self.judge(now, finished));
            }
        }
        // After a burst of probes, give back the room it took (see `super::capacity`).
        self.ended.shrink_when_sparse();
        self.probes.shrink_when_sparse();
        self.by_member.shrink_when_sparse();
        self.rounds.shrink_when_sparse();
        judged
    }

    /// The earliest live probe deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.probes.values().map(|p| p.deadline).min()
    }

    /// Checks the coordinator's invariants; `Err` names the first one broken: every live probe
    /// belongs to a round, and every round waits for exactly its live probes.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut live: HashMap<GroupId, usize> = HashMap::new();
        for (id, p) in &self.probes {
            if !self.rounds.contains_key(&p.group) {
                return Err(format!("probe {id} belongs to no round ({})", p.group));
            }
            *live.entry(p.group).or_default() += 1;
        }
        for (gid, r) in &self.rounds {
            let live = live.get(gid).copied().unwrap_or(0);
            if live != r.pending {
                return Err(format!(
                    "round {gid} waits for {} probes but {live} are live",
                    r.pending
                ));
            }
        }
        Ok(())
    }

    /// Ends a live probe without judging it (its group is decided); its members' late messages
    /// are then ignored. `None` when it had ended already.
    fn cancel(&mut self, now: Instant, id: &ProbeSessionId) -> Option<Finished> {
        self.probes
            .contains_key(id)
            .then(|| self.finish(now, id, Some(ProbeFailure::Disconnected)))
    }

    fn finish(
        &mut self,
        now: Instant,
        id: &ProbeSessionId,
        forced: Option<ProbeFailure>,
    ) -> Finished {
        let p = self
            .probes
            .remove(id)
            .expect("finish is only called for live probes");
        for m in &p.members {
            if let Some(list) = self.by_member.get_mut(&m.pid) {
                list.retain(|x| x != id);
                if list.is_empty() {
                    self.by_member.remove(&m.pid);
                }
            }
        }
        self.ended.insert(
            id.clone(),
            ([p.members[0].pid, p.members[1].pid], now + TOMBSTONE_TTL),
        );
        let both = p.reports.iter().all(Option::is_some);
        let measured: Option<Vec<f64>> = p
            .reports
            .iter()
            .map(|r| r.as_ref().filter(|r| r.success).and_then(|r| r.rtt_ms))
            .collect();
        let failure = if forced == Some(ProbeFailure::Disconnected) {
            Some(ProbeFailure::Disconnected)
        } else if !both {
            Some(ProbeFailure::Timeout)
        } else if measured.is_none() {
            Some(ProbeFailure::MeasurementFailed)
        } else {
            None
        };
        let rtt_ms = match (failure, measured) {
            (None, Some(v)) => v.into_iter().reduce(f64::max),
            _ => None,
        };
        let ready_ms = match p.ready_at {
            [Some(a), Some(b)] => Some(ms(a.max(b).saturating_duration_since(p.prepared_at))),
            _ => None,
        };
        Finished {
            probe_session_id: id.clone(),
            group: p.group,
            members: p.members,
            reports: p.reports,
            failure,
            rtt_ms,
            ready_ms,
            duration_ms: ms(now.saturating_duration_since(p.prepared_at)),
        }
    }

    /// Judges an ended probe against its round's threshold and folds it into the round; when
    /// that decides the group (every pair judged, or a member disconnected), the round ends
    /// with its verdict and its other probes are cancelled. `None` when the probe's round has
    /// already been decided.
    fn judge(&mut self, now: Instant, f: Finished) -> Option<PairJudged> {
        let round = self.rounds.get_mut(&f.group)?;
        let pair = [
            f.members[0].subject_id.clone(),
            f.members[1].subject_id.clone(),
        ];
        let judged = judge_pair(f.failure, f.rtt_ms, round.max_p2p_rtt_ms);
        round.ended.push(RoundProbe {
            probe_session_id: f.probe_session_id.clone(),
            members: f.members.clone(),
            accepted: judged.is_ok(),
            kept: round.kept,
            cut_short: f.reports.iter().any(Option::is_none),
        });
        let record = ResearchEvent::ProbeResult {
            probe_session_id: f.probe_session_id,
            members: pair.clone(),
            reports: f.reports,
            accepted: judged.is_ok(),
            rtt_ms: f.rtt_ms,
            max_p2p_rtt_ms: round.max_p2p_rtt_ms,
            reason: judged.err(),
            ready_ms: f.ready_ms,
            duration_ms: f.duration_ms,
        };
        round.pending = round.pending.saturating_sub(1);
        match judged {
            Ok(rtt_ms) => round.pair_rtts.push(PairRtt {
                members: pair,
                rtt_ms,
            }),
            // A disconnect is not held against the pair.
            Err(ProbeFailure::Disconnected) => round.failure = Some(ProbeFailure::Disconnected),
            Err(reason) => {
                round.failure.get_or_insert(reason);
                round.failed_pairs.push(pair);
            }
        }
        let scene = round.scene;
        let disconnected = judged == Err(ProbeFailure::Disconnected);
        if !(disconnected || round.pending == 0) {
            return Some(PairJudged {
                scene,
                record,
                verdict: None,
            });
        }
        let mut round = self.rounds.remove(&f.group)?;
        if disconnected {
            // A member is gone: the group cannot be; its other probes end now.
            for id in &round.probe_ids {
                if let Some(c) = self.cancel(now, id) {
                    round.ended.push(RoundProbe {
                        probe_session_id: c.probe_session_id,
                        members: c.members,
                        accepted: false,
                        kept: round.kept,
                        cut_short: true,
                    });
                }
            }
        }
        let verdict = match round.failure {
            None => Verdict::Accepted {
                pair_rtts: round.pair_rtts,
            },
            Some(reason) => Verdict::Rejected {
                reason,
                failed_pairs: round.failed_pairs,
            },
        };
        Some(PairJudged {
            scene,
            record,
            verdict: Some(GroupVerdict {
                group: f.group,
                scene,
                members: round.members,
                verdict,
                probes: round.ended,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pair rule (the original's `should_reject_for_rtt`, here with the scene's threshold;
    /// a scene without one runs no probe, see the core's `fifo_without_probe_starts_game_at_once`).
    #[test]
    fn judge_pair_rule() {
        let judge = |rtt, max| judge_pair(None, rtt, max);
        assert_eq!(judge(Some(1e9), f64::INFINITY), Ok(1e9));
        assert_eq!(
            judge(None, 150.0),
            Err(ProbeFailure::RttTooHigh),
            "missing measurement rejects"
        );
        assert_eq!(judge(Some(100.0), 150.0), Ok(100.0));
        assert_eq!(judge(Some(150.0), 150.0), Ok(150.0), "equal is accepted");
        assert_eq!(judge(Some(150.001), 150.0), Err(ProbeFailure::RttTooHigh));
        assert_eq!(judge(Some(f64::NAN), 150.0), Err(ProbeFailure::RttTooHigh));
        assert_eq!(judge(Some(0.0), 0.0), Ok(0.0));
        assert_eq!(judge(Some(0.1), 0.0), Err(ProbeFailure::RttTooHigh));
        for failure in [
            ProbeFailure::Timeout,
            ProbeFailure::MeasurementFailed,
            ProbeFailure::Disconnected,
        ] {
            assert_eq!(
                judge_pair(Some(failure), Some(1.0), 150.0),
                Err(failure),
                "a failed probe is rejected for its failure"
            );
        }
    }
}
