//! Started games: who is in each, the relay of their WebRTC signals, the validation and
//! recording of their reports, and the end of a game (PROTOCOL.md, Game).
//!
//! A game exists from the accepted group's `game_start` until it *ends* (once): when a member
//! reports `p2p_connection_failed` or leaves for good. An ended game is kept for
//! [`GAME_TOMBSTONE_TTL`], small, as a tombstone (see [`tombstones`]), so that its members'
//! late messages are ignored quietly, then forgotten: the games held are the live ones plus
//! the tombstones of those that ended within the last minute and still have a member around.
//!
//! Only a member may speak for a game, and only about other members; anything else is
//! `not_a_member`. Signals and reports for an ended game are dropped quietly and not recorded.
//! A game's record holds at most what an honest client sends ([`ReportRefused`], answered
//! with `bad_message`, the connection staying open; nothing is recorded):
//! - one `episode_summary` per member per episode: each member's episode numbers must rise
//!   (a repeat, or an older episode, is refused), and a summary names each partner at most
//!   once, with no more `quality_changes` than the quality bound allows since the game started;
//!   at most [`EPISODES_PER_MIN`] summaries a minute per member, in bursts of
//!   [`EPISODES_BURST`] (episodes shorter than a second are not supported);
//! - `p2p_quality` changes at most [`QUALITY_CHANGES_PER_MIN`] a minute per member and partner
//!   (a token bucket of [`QUALITY_CHANGES_BURST`]): the browser's quality monitor samples each
//!   connection every 2 s and reports only changes of level, so an honest client sends at most
//!   30 a minute per partner;
//! - `p2p_connection_type` and `p2p_ice_restart` together at most
//!   [`CONNECTION_REPORTS_PER_MIN`] a minute per member and partner, in bursts of
//!   [`CONNECTION_REPORTS_BURST`]: an honest page sends one `p2p_connection_type` each time the
//!   connection comes up and two `p2p_ice_restart`s per attempt, at most 3 attempts after a
//!   failure or 5 s of disconnection.
//!
//! Members name each other by [`PlayerIndex`] (their place in `members`), never by
//! `subject_id`: the index is translated to the id here, for the record only.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use pairlab_shared::{
    ClientMessage, ErrorCode, GameEndReason, GameEnded, GameId, GameSettings, GameStart, IceServer,
    PeerProbe, PlayerIndex, ServerMessage, SubjectId, WebrtcSignalIn,
};

use super::capacity::ShrinkWhenSparse;
use super::ratelimit::RateLimiter;
use super::research::{GameEndCause, PairProbe, PairRtt, PeerReport, ResearchEvent};
use super::{Effect, Pid};

pub mod tombstones;

use tombstones::Tombstones;
pub use tombstones::{GAME_TOMBSTONE_TTL, TOMBSTONE_SWEEP_SPACING};

/// Sustained `p2p_quality` changes a member may report per partner, per minute: one per 2 s
/// sample of the browser's quality monitor.
pub const QUALITY_CHANGES_PER_MIN: f64 = 30.0;

/// `p2p_quality` changes a member may report per partner at once (a minute's worth).
pub const QUALITY_CHANGES_BURST: f64 = 30.0;

/// Sustained `p2p_connection_type` and `p2p_ice_restart` reports a member may send per
/// partner, per minute.
pub const CONNECTION_REPORTS_PER_MIN: f64 = 30.0;

/// `p2p_connection_type` and `p2p_ice_restart` reports a member may send per partner at once.
pub const CONNECTION_REPORTS_BURST: f64 = 30.0;

/// Sustained `episode_summary` messages a member may send, per minute: one a second (an
/// episode lasts the page's `episode_ms`, 10 s by default).
pub const EPISODES_PER_MIN: f64 = 60.0;

/// `episode_summary` messages a member may send at once.
pub const EPISODES_BURST: f64 = 10.0;

/// A game message was refused: the sender is not in that game, or a peer it names is not
/// another member of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("You are not in that game, or that participant is not your partner.")]
pub struct NotAMember;

/// A member's report asks for more than an honest client sends; it is not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReportRefused {
    /// An `episode_summary` for an episode this member has reported already, or an older one.
    #[error("Episode {episode} was already reported (the last reported is {last}); each episode is reported once, in order.")]
    EpisodeRepeated {
        /// The episode sent.
        episode: u32,
        /// The last episode this member reported.
        last: u32,
    },
    /// More `episode_summary` messages than [`EPISODES_PER_MIN`] allows.
    #[error("Too many episode summaries: at most one a second.")]
    EpisodesTooOften,
    /// An `episode_summary` naming a partner twice.
    #[error("An episode summary names each partner at most once.")]
    DuplicatePeer,
    /// More quality changes than the quality monitor can produce (in `p2p_quality` messages, or
    /// in an `episode_summary`'s `quality_changes`).
    #[error("Too many quality changes: at most 30 a minute per partner.")]
    TooManyQualityChanges,
    /// More `p2p_connection_type` and `p2p_ice_restart` reports than
    /// [`CONNECTION_REPORTS_PER_MIN`] allows.
    #[error("Too many connection reports: at most 30 a minute per partner.")]
    TooManyConnectionReports,
}

/// Why a game message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GameError {
    /// Not a member, or the named peer is not a partner (`not_a_member`).
    #[error(transparent)]
    NotAMember(#[from] NotAMember),
    /// Over the bound of an honest client (`bad_message`).
    #[error(transparent)]
    Refused(#[from] ReportRefused),
}

impl GameError {
    /// The `error` code the sender gets; neither closes the connection.
    pub fn code(&self) -> ErrorCode {
        match self {
            GameError::NotAMember(_) => ErrorCode::NotAMember,
            GameError::Refused(_) => ErrorCode::BadMessage,
        }
    }
}

/// One member of a game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameMember {
    /// The router's participant handle.
    pub pid: Pid,
    /// Their id.
    pub subject_id: SubjectId,
}

/// A game to start: an accepted group.
#[derive(Debug, Clone, PartialEq)]
pub struct NewGame {
    /// The new game's id.
    pub game_id: GameId,
    /// The scene (index into the config's scenes).
    pub scene: usize,
    /// In player order (arrival order).
    pub members: Vec<GameMember>,
    /// The probe's RTT of each pair, for the record (empty without a probe).
    pub pair_rtts: Vec<PairRtt>,
    /// The probe of each pair and whether its connection is handed over (decided by the router
    /// with [`RoundProbe::handover`](super::probe::RoundProbe::handover)): each member's
    /// `game_start.probes` and the record (empty without a probe).
    pub probes: Vec<PairProbe>,
    /// The scene's `force_relay`, passed on in `game_start`.
    pub force_relay: bool,
    /// The scene's `[scene.game]`, passed on in `game_start.game`.
    pub settings: GameSettings,
}

/// A started game: what to send and what to record.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedGame {
    /// Each member's `game_start`, in player order.
    pub starts: Vec<(Pid, GameStart)>,
    /// The `game_created` line.
    pub record: ResearchEvent,
}

/// The one peer a single-peer report names (checked by [`Games::reporter`]).
fn first(peers: Vec<SubjectId>) -> Result<SubjectId, NotAMember> {
    peers.into_iter().next().ok_or(NotAMember)
}

/// A member's report about one partner, once accepted: where it goes and who is in it.
#[derive(Debug, Clone, PartialEq)]
struct PartnerReport {
    /// The game's scene.
    scene: usize,
    /// The reporting member.
    subject_id: SubjectId,
    /// The partner the report is about.
    peer_subject_id: SubjectId,
}

/// Who may report on a game: a member, about other members.
#[derive(Debug, Clone, PartialEq)]
struct Reporter {
    /// The game's scene.
    scene: usize,
    /// The reporting member.
    subject_id: SubjectId,
    /// The ids of the peers the report names, in its order.
    peers: Vec<SubjectId>,
}

/// What a member has reported so far, for the bounds on reports.
#[derive(Debug, Clone)]
struct Reports {
    /// The last episode summarized.
    last_episode: Option<u32>,
    /// The `episode_summary` token bucket.
    episodes: RateLimiter,
    /// `p2p_quality` token buckets, one per member of the game (in player order; the one for
    /// the member themself is unused).
    quality: Vec<RateLimiter>,
    /// `p2p_connection_type` and `p2p_ice_restart` token buckets, likewise.
    connection: Vec<RateLimiter>,
}

/// Which of a member's per-partner token buckets a report takes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PerPartner {
    /// `p2p_quality`.
    Quality,
    /// `p2p_connection_type`, `p2p_ice_restart`.
    Connection,
}

/// A live game.
#[derive(Debug)]
struct GameRoom {
    scene: usize,
    /// In player order.
    members: Vec<GameMember>,
    /// Each member's reports so far, in player order.
    reports: Vec<Reports>,
    started_at: Instant,
    /// Which members have finished (`finish`), in player order.
    finished: Vec<bool>,
}

impl GameRoom {
    fn member_index(&self, pid: Pid) -> Option<usize> {
        self.members.iter().position(|m| m.pid == pid)
    }

    /// The player index of member `pid`.
    fn index_of(&self, pid: Pid) -> Option<PlayerIndex> {
        let i = self.member_index(pid)?;
        PlayerIndex::try_from(i).ok()
    }

    /// The position in `members` of another member than `pid`, at player index `peer`.
    fn peer_index(&self, pid: Pid, peer: PlayerIndex) -> Option<usize> {
        let i = usize::try_from(peer).ok()?;
        (self.members.get(i)?.pid != pid).then_some(i)
    }

    /// The most quality changes an honest member can report about one partner between the
    /// game's start and `now`.
    fn max_quality_changes(&self, now: Instant) -> usize {
        let minutes = now.saturating_duration_since(self.started_at).as_secs_f64() / 60.0;
        (QUALITY_CHANGES_BURST + QUALITY_CHANGES_PER_MIN * minutes) as usize
    }
}

/// The games of a server: the live ones and, for [`GAME_TOMBSTONE_TTL`], the ended ones (as
/// tombstones).
#[derive(Debug, Default)]
pub struct Games {
    /// The live games.
    rooms: HashMap<GameId, GameRoom>,
    /// The ended games not yet forgotten.
    ended: Tombstones,
}

impl Games {
    /// Starts `game`: returns each member's `game_start` (with the ICE servers `ice_servers_for`
    /// gives them at `now`, and per peer the probe of their pair, by the peer's player index),
    /// in player order, and the `game_created` line for the record.
    pub fn start(
        &mut self,
        game: NewGame,
        now: Instant,
        ice_servers_for: &dyn Fn(&SubjectId, Instant) -> Vec<IceServer>,
    ) -> StartedGame {
        let players: Vec<SubjectId> = game.members.iter().map(|m| m.subject_id.clone()).collect();
        let player_count = players.len() as u32;
        let index_of = |s: &SubjectId| players.iter().position(|p| p == s);
        let mut pair_rtts: Vec<pairlab_shared::PairRtt> = game
            .pair_rtts
            .iter()
            .filter_map(|p| {
                let (x, y) = (index_of(&p.members[0])?, index_of(&p.members[1])?);
                Some(pairlab_shared::PairRtt {
                    a: x.min(y) as PlayerIndex,
                    b: x.max(y) as PlayerIndex,
                    rtt_ms: p.rtt_ms,
                })
            })
            .collect();
        pair_rtts.sort_by_key(|p| (p.a, p.b));
        // Each member's peers' probes, by the peer's player index.
        let mut peer_probes: Vec<Vec<PeerProbe>> = vec![Vec::new(); game.members.len()];
        for p in &game.probes {
            let (Some(x), Some(y)) = (index_of(&p.members[0]), index_of(&p.members[1])) else {
                continue;
            };
            for (me, peer) in [(x, y), (y, x)] {
                peer_probes[me].push(PeerProbe {
                    peer_index: peer as PlayerIndex,
                    probe_session_id: p.probe_session_id.clone(),
                    handover: p.handover,
                });
            }
        }
        for list in &mut peer_probes {
            list.sort_by_key(|p| p.peer_index);
        }
        let starts = game
            .members
            .iter()
            .zip(peer_probes)
            .enumerate()
            .map(|(i, (m, probes))| {
                let start = GameStart {
                    game_id: game.game_id.clone(),
                    player_index: i as PlayerIndex,
                    player_count,
                    ice_servers: ice_servers_for(&m.subject_id, now),
                    force_relay: game.force_relay,
                    pair_rtts: pair_rtts.clone(),
                    game: Box::new(game.settings.clone()),
                    probes,
                };
                (m.pid, start)
            })
            .collect();
        let quality = RateLimiter::new(now, QUALITY_CHANGES_PER_MIN / 60.0, QUALITY_CHANGES_BURST);
        let connection = RateLimiter::new(
            now,
            CONNECTION_REPORTS_PER_MIN / 60.0,
            CONNECTION_REPORTS_BURST,
        );
        let reports = Reports {
            last_episode: None,
            episodes: RateLimiter::new(now, EPISODES_PER_MIN / 60.0, EPISODES_BURST),
            quality: vec![quality; game.members.len()],
            connection: vec![connection; game.members.len()],
        };
        self.rooms.insert(
            game.game_id.clone(),
            GameRoom {
                scene: game.scene,
                reports: vec![reports; game.members.len()],
                finished: vec![false; game.members.len()],
                members: game.members,
                started_at: now,
            },
        );
        let record = ResearchEvent::GameCreated {
            game_id: game.game_id,
            players,
            p2p_rtts_ms: game.pair_rtts,
            probes: game.probes,
        };
        StartedGame { starts, record }
    }

    /// Whether the game has ended: it did, or it is not known (any more: ended games are
    /// forgotten [`GAME_TOMBSTONE_TTL`] after their end).
    pub fn is_ended(&self, game_id: &GameId) -> bool {
        !self.rooms.contains_key(game_id)
    }

    /// How many games are held (live, and ended within [`GAME_TOMBSTONE_TTL`]).
    pub fn len(&self) -> usize {
        self.rooms.len() + self.ended.len()
    }

    /// How many of the games held have ended (kept as tombstones until
    /// [`GAME_TOMBSTONE_TTL`] after their end).
    pub fn tombstones(&self) -> usize {
        self.ended.len()
    }

    /// How many games the maps have room for, in all: their capacity, which stays allocated
    /// when they empty (given back once sparse, see `super::capacity`).
    pub fn room(&self) -> usize {
        self.rooms.capacity() + self.ended.capacity()
    }

    /// Whether no game is held.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty() && self.ended.is_empty()
    }

    /// When to sweep the tombstones next: the oldest one's time to be forgotten, but at most
    /// one sweep per [`TOMBSTONE_SWEEP_SPACING`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.ended.next_deadline()
    }

    /// Forgets the games that ended [`GAME_TOMBSTONE_TTL`] or longer before `now`, when a
    /// sweep is due.
    pub fn expire(&mut self, now: Instant) {
        self.ended.expire(now);
        // After a burst of games, give back the room it took (see `super::capacity`).
        self.rooms.shrink_when_sparse();
    }

    /// A game message (`webrtc_signal`, `p2p_*`, `episode_summary`) from participant `pid` at
    /// `now`: appends the relayed signal or the recorded report (and, for
    /// `p2p_connection_failed`, the end of the game) to `out`. Messages for an ended game are
    /// dropped quietly. Other messages are ignored.
    ///
    /// # Errors
    /// [`GameError::NotAMember`] when `pid` is not in the game or a named peer is not another
    /// member; [`GameError::Refused`] when a report exceeds what an honest client sends (see
    /// the module docs). Nothing is sent or recorded then.
    pub fn handle(
        &mut self,
        now: Instant,
        pid: Pid,
        msg: ClientMessage,
        out: &mut Vec<Effect>,
    ) -> Result<(), GameError> {
        match msg {
            ClientMessage::WebrtcSignal(s) => {
                // Late signals of an ended game go nowhere, quietly.
                let Some(room) = self.live_room(&s.game_id, pid, &[s.target_index])? else {
                    return Ok(());
                };
                let from_index = room.index_of(pid).ok_or(NotAMember)?;
                let to = room.peer_index(pid, s.target_index).ok_or(NotAMember)?;
                let msg = ServerMessage::WebrtcSignal(WebrtcSignalIn {
                    game_id: s.game_id,
                    from_index,
                    signal_type: s.signal_type,
                    payload: s.payload,
                });
                out.push(Effect::Send(room.members[to].pid, msg));
            }
            ClientMessage::P2pConnectionType(m) => {
                let game_id = m.game_id.clone();
                let limit = Some(PerPartner::Connection);
                self.record_partner_report(
                    now,
                    &game_id,
                    pid,
                    m.peer_index,
                    limit,
                    out,
                    |me, peer| ResearchEvent::P2pConnectionType {
                        game_id: m.game_id,
                        subject_id: me,
                        peer_subject_id: peer,
                        connection: m.info,
                        connect_ms: m.connect_ms,
                        setup: m.setup,
                        same_path_as_probe: m.same_path_as_probe,
                    },
                )?;
            }
            ClientMessage::P2pQuality(m) => {
                let game_id = m.game_id.clone();
                let limit = Some(PerPartner::Quality);
                self.record_partner_report(
                    now,
                    &game_id,
                    pid,
                    m.peer_index,
                    limit,
                    out,
                    |me, peer| ResearchEvent::P2pQuality {
                        game_id: m.game_id,
                        subject_id: me,
                        peer_subject_id: peer,
                        level: m.level,
                        rtt_ms: m.rtt_ms,
                    },
                )?;
            }
            ClientMessage::P2pIceRestart(m) => {
                let game_id = m.game_id.clone();
                let limit = Some(PerPartner::Connection);
                self.record_partner_report(
                    now,
                    &game_id,
                    pid,
                    m.peer_index,
                    limit,
                    out,
                    |me, peer| ResearchEvent::P2pIceRestart {
                        game_id: m.game_id,
                        subject_id: me,
                        peer_subject_id: peer,
                        attempt: m.attempt,
                        trigger: m.trigger,
                        outcome: m.outcome,
                        duration_ms: m.duration_ms,
                    },
                )?;
            }
            ClientMessage::P2pConnectionFailed(m) => {
                let game_id = m.game_id.clone();
                let reporter = self.record_partner_report(
                    now,
                    &game_id,
                    pid,
                    m.peer_index,
                    None,
                    out,
                    |me, peer| ResearchEvent::P2pConnectionFailed {
                        game_id: m.game_id,
                        subject_id: me,
                        peer_subject_id: peer,
                        attempts: m.attempts,
                    },
                )?;
                let Some(subject_id) = reporter else {
                    return Ok(());
                };
                self.end(
                    now,
                    &game_id,
                    GameEndReason::ConnectionFailed,
                    subject_id,
                    out,
                );
            }
            ClientMessage::EpisodeSummary(e) => {
                let indices: Vec<PlayerIndex> = e.peers.iter().map(|p| p.peer_index).collect();
                let Some(Reporter {
                    scene,
                    subject_id,
                    peers,
                }) = self.reporter(&e.game_id, pid, &indices)?
                else {
                    return Ok(());
                };
                if indices.iter().collect::<HashSet<_>>().len() != indices.len() {
                    return Err(ReportRefused::DuplicatePeer.into());
                }
                let room = self.rooms.get_mut(&e.game_id).ok_or(NotAMember)?;
                let max_changes = room.max_quality_changes(now);
                if e.peers
                    .iter()
                    .any(|p| p.quality_changes.len() > max_changes)
                {
                    return Err(ReportRefused::TooManyQualityChanges.into());
                }
                let me = room.member_index(pid).ok_or(NotAMember)?;
                let reports = &mut room.reports[me];
                if let Some(last) = reports.last_episode {
                    if e.episode <= last {
                        let episode = e.episode;
                        return Err(ReportRefused::EpisodeRepeated { episode, last }.into());
                    }
                }
                if !reports.episodes.allow(now) {
                    return Err(ReportRefused::EpisodesTooOften.into());
                }
                reports.last_episode = Some(e.episode);
                let peers = peers
                    .into_iter()
                    .zip(e.peers)
                    .map(|(peer_subject_id, metrics)| PeerReport {
                        peer_subject_id,
                        metrics,
                    })
                    .collect();
                let event = ResearchEvent::EpisodeSummary {
                    game_id: e.game_id,
                    subject_id,
                    episode: e.episode,
                    frames: e.frames,
                    inputs_sent: e.inputs_sent,
                    peers,
                    hidden_count: e.hidden_count,
                    hidden_ms: e.hidden_ms,
                };
                out.push(Effect::Record(scene, event));
            }
            _ => {}
        }
        Ok(())
    }

    /// The live game `game_id`; `None` when it has ended and `pid` is a member naming other
    /// members at `peers` (the message is then dropped quietly). The tombstones are asked
    /// only when the game is not live (a game is one or the other), so a live game's signals
    /// and reports cost one map lookup.
    ///
    /// # Errors
    /// [`NotAMember`] when no game, live or ended, has that id, or it ended without `pid` or
    /// a peer among its members.
    fn live_room(
        &self,
        game_id: &GameId,
        pid: Pid,
        peers: &[PlayerIndex],
    ) -> Result<Option<&GameRoom>, NotAMember> {
        match self.rooms.get(game_id) {
            Some(room) => Ok(Some(room)),
            None if self.ended.quietly(game_id, pid, peers)? => Ok(None),
            None => Err(NotAMember),
        }
    }

    /// Checks that `pid` is a member of the game and every one of `peers` another member;
    /// returns the reporter and the peers' ids, in `peers` order. `None`: the game has ended
    /// (the report is dropped quietly).
    fn reporter(
        &self,
        game_id: &GameId,
        pid: Pid,
        peers: &[PlayerIndex],
    ) -> Result<Option<Reporter>, NotAMember> {
        let Some(room) = self.live_room(game_id, pid, peers)? else {
            return Ok(None);
        };
        let me = room.member_index(pid).ok_or(NotAMember)?;
        let peers = peers
            .iter()
            .map(|&peer| {
                let i = room.peer_index(pid, peer)?;
                Some(room.members[i].subject_id.clone())
            })
            .collect::<Option<Vec<_>>>()
            .ok_or(NotAMember)?;
        Ok(Some(Reporter {
            scene: room.scene,
            subject_id: room.members[me].subject_id.clone(),
            peers,
        }))
    }

    /// [`Games::reporter`] for a report about one partner, `peer`, which also takes one token
    /// from the member's `bucket` for that partner (if any).
    fn partner_report(
        &mut self,
        now: Instant,
        game_id: &GameId,
        pid: Pid,
        peer: PlayerIndex,
        bucket: Option<PerPartner>,
    ) -> Result<Option<PartnerReport>, GameError> {
        let Some(reporter) = self.reporter(game_id, pid, &[peer])? else {
            return Ok(None);
        };
        if let Some(bucket) = bucket {
            self.take(now, game_id, pid, peer, bucket)?;
        }
        Ok(Some(PartnerReport {
            scene: reporter.scene,
            subject_id: reporter.subject_id,
            peer_subject_id: first(reporter.peers)?,
        }))
    }

    /// A report of member `pid` about one partner, `peer`: checked by
    /// [`Games::partner_report`] (which also takes its token from `bucket`) and, when accepted,
    /// recorded as the event `event` builds from the reporter's and the partner's subject ids.
    /// Returns the reporter's subject id when the report was recorded, `None` when it was
    /// dropped quietly (the game has ended).
    #[allow(clippy::too_many_arguments)]
    fn record_partner_report(
        &mut self,
        now: Instant,
        game_id: &GameId,
        pid: Pid,
        peer: PlayerIndex,
        bucket: Option<PerPartner>,
        out: &mut Vec<Effect>,
        event: impl FnOnce(SubjectId, SubjectId) -> ResearchEvent,
    ) -> Result<Option<SubjectId>, GameError> {
        let Some(report) = self.partner_report(now, game_id, pid, peer, bucket)? else {
            return Ok(None);
        };
        let event = event(report.subject_id.clone(), report.peer_subject_id);
        out.push(Effect::Record(report.scene, event));
        Ok(Some(report.subject_id))
    }

    /// Takes one report of member `pid` about `peer` out of its `bucket`.
    fn take(
        &mut self,
        now: Instant,
        game_id: &GameId,
        pid: Pid,
        peer: PlayerIndex,
        bucket: PerPartner,
    ) -> Result<(), GameError> {
        let room = self.rooms.get_mut(game_id).ok_or(NotAMember)?;
        let me = room.member_index(pid).ok_or(NotAMember)?;
        let to = room.peer_index(pid, peer).ok_or(NotAMember)?;
        let reports = &mut room.reports[me];
        let (limiter, refused) = match bucket {
            PerPartner::Quality => (
                &mut reports.quality[to],
                ReportRefused::TooManyQualityChanges,
            ),
            PerPartner::Connection => (
                &mut reports.connection[to],
                ReportRefused::TooManyConnectionReports,
            ),
        };
        if limiter.allow(now) {
            Ok(())
        } else {
            Err(refused.into())
        }
    }

    /// Whether `pid` is a member of the live game `game_id` who has not finished: the scene
    /// (for the attention rule).
    pub fn playing(&self, game_id: &GameId, pid: Pid) -> Option<usize> {
        let room = self.rooms.get(game_id)?;
        let i = room.member_index(pid)?;
        (!room.finished[i]).then_some(room.scene)
    }

    /// Member `pid` of `game_id` finished (`finish`): the game goes on for the others; once
    /// every member has finished, it ends (`finished`, recorded, nobody told).
    pub fn finish_member(
        &mut self,
        now: Instant,
        game_id: &GameId,
        pid: Pid,
        subject: SubjectId,
        out: &mut Vec<Effect>,
    ) {
        let Some(room) = self.rooms.get_mut(game_id) else {
            return;
        };
        let Some(i) = room.member_index(pid) else {
            return;
        };
        room.finished[i] = true;
        if room.finished.iter().all(|f| *f) {
            self.close(now, game_id, GameEndCause::Finished, subject, out);
        }
    }

    /// Member `pid` (`subject`) of `game_id` is gone for good without finishing: the game ends
    /// for the others who are still playing (`peer_left`), or, when every other member has
    /// finished, it ends as `finished` and nobody is told. Once every member of an ended game
    /// is gone, its tombstone goes. Returns the members told `game_ended`.
    pub fn member_gone(
        &mut self,
        now: Instant,
        game_id: &GameId,
        pid: Pid,
        subject: SubjectId,
        out: &mut Vec<Effect>,
    ) -> Vec<Pid> {
        let told = match self.rooms.get(game_id) {
            None => Vec::new(),
            Some(room) => {
                let others_finished = room
                    .members
                    .iter()
                    .zip(&room.finished)
                    .all(|(m, f)| m.subject_id == subject || *f);
                if others_finished {
                    self.close(now, game_id, GameEndCause::Finished, subject, out);
                    Vec::new()
                } else {
                    self.end(now, game_id, GameEndReason::PeerLeft, subject, out)
                }
            }
        };
        self.ended.member_gone(game_id, pid);
        told
    }

    /// Ends a game (once), at `now`: `game_ended` to every member who has not finished, and
    /// the `game_ended` line naming `by`, the member whose report, departure or hidden page
    /// ended it. The game is forgotten [`GAME_TOMBSTONE_TTL`] later. Returns the members
    /// told, in player order.
    pub fn end(
        &mut self,
        now: Instant,
        game_id: &GameId,
        reason: GameEndReason,
        by: SubjectId,
        out: &mut Vec<Effect>,
    ) -> Vec<Pid> {
        self.close(now, game_id, reason.into(), by, out)
    }

    /// Ends a game for `cause` (see [`Games::end`]); `finished` tells nobody.
    fn close(
        &mut self,
        now: Instant,
        game_id: &GameId,
        cause: GameEndCause,
        by: SubjectId,
        out: &mut Vec<Effect>,
    ) -> Vec<Pid> {
        let Some(room) = self.rooms.remove(game_id) else {
            return Vec::new();
        };
        self.ended
            .bury(now, game_id, room.members.iter().map(|m| m.pid).collect());
        let wire = match cause {
            GameEndCause::ConnectionFailed => Some((
                GameEndReason::ConnectionFailed,
                "The connection between you and your partner was lost and could not be restored, so the game has ended.",
            )),
            GameEndCause::PeerLeft => Some((
                GameEndReason::PeerLeft,
                "Your partner has left, so the game has ended.",
            )),
            GameEndCause::MemberHidden => Some((
                GameEndReason::MemberHidden,
                "A player's page was hidden for too long, so the game has ended.",
            )),
            GameEndCause::Finished => None,
        };
        let mut told = Vec::new();
        if let Some((reason, message)) = wire {
            for (m, _) in room
                .members
                .iter()
                .zip(&room.finished)
                .filter(|(_, f)| !**f)
            {
                let msg = ServerMessage::GameEnded(GameEnded {
                    game_id: game_id.clone(),
                    reason,
                    message: message.to_owned(),
                });
                out.push(Effect::Send(m.pid, msg));
                told.push(m.pid);
            }
        }
        let event = ResearchEvent::GameEnded {
            game_id: game_id.clone(),
            reason: cause,
            subject_id: by,
        };
        out.push(Effect::Record(room.scene, event));
        told
    }
}
