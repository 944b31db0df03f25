//! The `ProbeCoordinator`: server side of the P2P probe (PROTOCOL.md, Probe).
//!
//! A probe is a temporary WebRTC connection between two participants that a matchmaker proposed
//! to group, used to measure their real peer-to-peer RTT before a game exists. The coordinator
//! runs its protocol — `probe_prepare` → both `probe_ready` → `probe_start` → relayed
//! `probe_signal`s → both `probe_result`s → decision — and enforces what the original
//! framework's coordinator did not:
//! - the deadline really fires ([`ProbeCoordinator::expire`]; the original's cleanup was never
//!   called, so a silent peer stalled a match forever);
//! - only the two members may speak for a probe, and a signal goes only to the other member
//!   (the original relayed to any `target_subject_id`);
//! - `ready` counts once per member, a `result` once per member;
//! - a member's disconnect fails the probe at once ([`ProbeCoordinator::fail_member`]).
//!
//! It decides *that* a probe is over and what was measured ([`ProbeOutcome`]); whether the RTT
//! passes is the matchmaker's rule (`should_reject_for_rtt`), applied by the lobby.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pairlab_shared::{
    IceServer, ProbePrepare, ProbeResult, ProbeSessionId, ProbeSignalIn, ProbeSignalOut,
    ProbeStart, ServerMessage, SubjectId,
};

use super::research::{ProbeFailure, ProbeReport};

/// How long an ended probe is remembered, so that its members' late messages (a trickled
/// candidate after the decision, a result after the deadline) are ignored quietly instead of
/// being answered with `not_a_member`.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// One member of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeMember {
    /// The lobby's participant handle.
    pub pid: u64,
    /// The participant's id.
    pub subject_id: SubjectId,
}

/// A message for one member, addressed by the lobby's participant handle.
pub type Outgoing = (u64, ServerMessage);

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

#[derive(Debug)]
struct ProbeSession {
    group: u64,
    members: [ProbeMember; 2],
    ready_at: [Option<Instant>; 2],
    reports: [Option<ProbeReport>; 2],
    prepared_at: Instant,
    deadline: Instant,
}

/// A decided probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    /// The probe.
    pub probe_session_id: ProbeSessionId,
    /// The lobby's tag given at [`ProbeCoordinator::create_probe`] (its proposed group).
    pub group: u64,
    /// Initiator first.
    pub members: [ProbeMember; 2],
    /// Each member's report, in `members` order.
    pub reports: [Option<ProbeReport>; 2],
    /// Why the probe failed before any RTT could be judged: a missing report at the deadline,
    /// a failed measurement, a disconnect. `None` when both members measured an RTT.
    pub failure: Option<ProbeFailure>,
    /// The RTT to judge: the larger of the two reported `rtt_ms`, when `failure` is `None`.
    pub rtt_ms: Option<f64>,
    /// From `probe_prepare` to the second `probe_ready`, ms.
    pub ready_ms: Option<f64>,
    /// From `probe_prepare` to the decision, ms.
    pub duration_ms: f64,
}

/// All live probes of a server. Pure: every method takes the time and returns messages.
#[derive(Debug, Default)]
pub struct ProbeCoordinator {
    probes: HashMap<ProbeSessionId, ProbeSession>,
    by_member: HashMap<u64, Vec<ProbeSessionId>>,
    ended: HashMap<ProbeSessionId, ([u64; 2], Instant)>,
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

    /// Starts a probe between `a` and `b` (order irrelevant: the member with the smaller
    /// `subject_id` in byte order becomes the initiator and is listed first). Returns the new
    /// id, the members in that order, and a `probe_prepare` for each, carrying the ICE servers
    /// `ice_servers_for` gives that member (TURN credentials may be minted per participant).
    /// The deadline is `now + timeout_ms`.
    pub fn create_probe(
        &mut self,
        now: Instant,
        group: u64,
        a: ProbeMember,
        b: ProbeMember,
        ice_servers_for: &dyn Fn(&ProbeMember) -> Vec<IceServer>,
        timeout_ms: u64,
    ) -> (ProbeSessionId, [ProbeMember; 2], [Outgoing; 2]) {
        let members = if pairlab_shared::is_initiator(b.subject_id.as_str(), a.subject_id.as_str())
        {
            [b, a]
        } else {
            [a, b]
        };
        let id = ProbeSessionId::new_v4();
        let prepare = |me: &ProbeMember, peer: &ProbeMember| {
            ServerMessage::ProbePrepare(ProbePrepare {
                probe_session_id: id.clone(),
                peer_subject_id: peer.subject_id.clone(),
                ice_servers: ice_servers_for(me),
                timeout_ms,
            })
        };
        let out = [
            (members[0].pid, prepare(&members[0], &members[1])),
            (members[1].pid, prepare(&members[1], &members[0])),
        ];
        for m in &members {
            self.by_member.entry(m.pid).or_default().push(id.clone());
        }
        self.probes.insert(
            id.clone(),
            ProbeSession {
                group,
                members: members.clone(),
                ready_at: [None, None],
                reports: [None, None],
                prepared_at: now,
                deadline: now + Duration::from_millis(timeout_ms),
            },
        );
        (id, members, out)
    }

    fn member_index(&self, id: &ProbeSessionId, pid: u64) -> Result<Handled<usize>, NotAMember> {
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
        pid: u64,
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
        pid: u64,
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
        if signal.target_subject_id != to.subject_id {
            return Err(NotAMember);
        }
        Ok(Handled::Applied((
            to.pid,
            ServerMessage::ProbeSignal(ProbeSignalIn {
                probe_session_id: signal.probe_session_id,
                from_subject_id: from.subject_id.clone(),
                signal_type: signal.signal_type,
                payload: signal.payload,
            }),
        )))
    }

    /// `probe_result` from participant `pid`. The first report of each member counts; a repeat
    /// is ignored. Returns the outcome once both have reported.
    ///
    /// # Errors
    /// [`NotAMember`] when `pid` is not a member of that probe.
    pub fn handle_result(
        &mut self,
        now: Instant,
        pid: u64,
        result: ProbeResult,
    ) -> Result<Handled<Option<ProbeOutcome>>, NotAMember> {
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
                received_ms: ms(now.saturating_duration_since(p.prepared_at)),
            });
        }
        if p.reports.iter().all(Option::is_some) {
            return Ok(Handled::Applied(Some(self.finish(now, &id, None))));
        }
        Ok(Handled::Applied(None))
    }

    /// Participant `pid` disconnected or left: every live probe they are in fails at once.
    pub fn fail_member(&mut self, now: Instant, pid: u64) -> Vec<ProbeOutcome> {
        let ids = self.by_member.get(&pid).cloned().unwrap_or_default();
        let mut outcomes = Vec::with_capacity(ids.len());
        for id in ids {
            if self.probes.contains_key(&id) {
                outcomes.push(self.finish(now, &id, Some(ProbeFailure::Disconnected)));
            }
        }
        outcomes
    }

    /// Ends a live probe without an outcome (its group was abandoned); its members' late
    /// messages are then ignored. Returns whether it was live.
    pub fn cancel(&mut self, now: Instant, id: &ProbeSessionId) -> bool {
        match self.probes.contains_key(id) {
            true => {
                self.finish(now, id, Some(ProbeFailure::Disconnected));
                true
            }
            false => false,
        }
    }

    /// Decides every probe whose deadline is at or before `now` (a missing report is a
    /// [`ProbeFailure::Timeout`]) and forgets ended probes older than [`TOMBSTONE_TTL`].
    pub fn expire(&mut self, now: Instant) -> Vec<ProbeOutcome> {
        self.ended.retain(|_, (_, until)| *until > now);
        let due: Vec<ProbeSessionId> = self
            .probes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        due.iter()
            .map(|id| self.finish(now, id, Some(ProbeFailure::Timeout)))
            .collect()
    }

    /// The earliest live probe deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.probes.values().map(|p| p.deadline).min()
    }

    /// The deadline of a live probe.
    pub fn deadline(&self, id: &ProbeSessionId) -> Option<Instant> {
        self.probes.get(id).map(|p| p.deadline)
    }

    fn finish(
        &mut self,
        now: Instant,
        id: &ProbeSessionId,
        forced: Option<ProbeFailure>,
    ) -> ProbeOutcome {
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
        ProbeOutcome {
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
}
