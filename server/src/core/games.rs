//! Started games: who is in each, the relay of their WebRTC signals, the validation and
//! recording of their reports, and the end of a game (PROTOCOL.md, Game).
//!
//! A game exists from the accepted group's `game_start` until the server process ends; it is
//! *ended* (once) when a member reports `p2p_connection_failed` or leaves for good. Only a member
//! may speak for a game, and only about other members; anything else is `not_a_member`. Signals
//! of an ended game are dropped quietly (the peer is gone); reports are still recorded.
//!
//! Members name each other by [`PlayerIndex`] (their place in `members`), never by
//! `subject_id`: the index is translated to the id here, for the record only.

use std::collections::HashMap;
use std::time::Instant;

use pairlab_shared::{
    ClientMessage, GameEndReason, GameEnded, GameId, GameStart, IceServer, PlayerIndex,
    ServerMessage, SubjectId, WebrtcSignalIn,
};

use super::research::{PairRtt, PeerReport, ResearchEvent};
use super::{Effect, Pid};

/// A game message was refused: the sender is not in that game, or a peer it names is not
/// another member of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("You are not in that game, or that participant is not your partner.")]
pub struct NotAMember;

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
    /// The scene's `force_relay`, passed on in `game_start`.
    pub force_relay: bool,
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

#[derive(Debug)]
struct GameRoom {
    scene: usize,
    /// In player order.
    members: Vec<GameMember>,
    ended: bool,
}

impl GameRoom {
    fn member(&self, pid: Pid) -> Option<&GameMember> {
        self.members.iter().find(|m| m.pid == pid)
    }

    /// The player index of member `pid`.
    fn index_of(&self, pid: Pid) -> Option<PlayerIndex> {
        let i = self.members.iter().position(|m| m.pid == pid)?;
        PlayerIndex::try_from(i).ok()
    }

    /// Another member than `pid`, at player index `peer`.
    fn peer(&self, pid: Pid, peer: PlayerIndex) -> Option<&GameMember> {
        let member = self.members.get(usize::try_from(peer).ok()?)?;
        (member.pid != pid).then_some(member)
    }
}

/// Every started game of a server.
#[derive(Debug, Default)]
pub struct Games {
    rooms: HashMap<GameId, GameRoom>,
}

impl Games {
    /// Starts `game`: returns each member's `game_start` (with the ICE servers `ice_servers_for`
    /// gives them at `now`), in player order, and the `game_created` line for the record.
    pub fn start(
        &mut self,
        game: NewGame,
        now: Instant,
        ice_servers_for: &dyn Fn(&SubjectId, Instant) -> Vec<IceServer>,
    ) -> StartedGame {
        let players: Vec<SubjectId> = game.members.iter().map(|m| m.subject_id.clone()).collect();
        let player_count = players.len() as u32;
        let starts = game
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let start = GameStart {
                    game_id: game.game_id.clone(),
                    player_index: i as PlayerIndex,
                    player_count,
                    ice_servers: ice_servers_for(&m.subject_id, now),
                    force_relay: game.force_relay,
                };
                (m.pid, start)
            })
            .collect();
        self.rooms.insert(
            game.game_id.clone(),
            GameRoom {
                scene: game.scene,
                members: game.members,
                ended: false,
            },
        );
        let record = ResearchEvent::GameCreated {
            game_id: game.game_id,
            players,
            p2p_rtts_ms: game.pair_rtts,
        };
        StartedGame { starts, record }
    }

    /// Whether the game exists and has ended.
    pub fn is_ended(&self, game_id: &GameId) -> bool {
        self.rooms.get(game_id).is_some_and(|g| g.ended)
    }

    /// A game message (`webrtc_signal`, `p2p_*`, `episode_summary`) from participant `pid`:
    /// appends the relayed signal or the recorded report (and, for `p2p_connection_failed`,
    /// the end of the game) to `out`. Other messages are ignored.
    ///
    /// # Errors
    /// [`NotAMember`] when `pid` is not in the game or a named peer is not another member.
    pub fn handle(
        &mut self,
        pid: Pid,
        msg: ClientMessage,
        out: &mut Vec<Effect>,
    ) -> Result<(), NotAMember> {
        match msg {
            ClientMessage::WebrtcSignal(s) => {
                let room = self.rooms.get(&s.game_id).ok_or(NotAMember)?;
                let from_index = room.index_of(pid).ok_or(NotAMember)?;
                let to = room.peer(pid, s.target_index).ok_or(NotAMember)?;
                // Late signals of an ended game go nowhere, quietly.
                if !room.ended {
                    let msg = ServerMessage::WebrtcSignal(WebrtcSignalIn {
                        game_id: s.game_id,
                        from_index,
                        signal_type: s.signal_type,
                        payload: s.payload,
                    });
                    out.push(Effect::Send(to.pid, msg));
                }
            }
            ClientMessage::P2pConnectionType(m) => {
                let Reporter {
                    scene,
                    subject_id,
                    peers,
                } = self.reporter(&m.game_id, pid, &[m.peer_index])?;
                let event = ResearchEvent::P2pConnectionType {
                    game_id: m.game_id,
                    subject_id,
                    peer_subject_id: first(peers)?,
                    connection: m.info,
                    connect_ms: m.connect_ms,
                };
                out.push(Effect::Record(scene, event));
            }
            ClientMessage::P2pQuality(m) => {
                let Reporter {
                    scene,
                    subject_id,
                    peers,
                } = self.reporter(&m.game_id, pid, &[m.peer_index])?;
                let event = ResearchEvent::P2pQuality {
                    game_id: m.game_id,
                    subject_id,
                    peer_subject_id: first(peers)?,
                    level: m.level,
                    rtt_ms: m.rtt_ms,
                };
                out.push(Effect::Record(scene, event));
            }
            ClientMessage::P2pIceRestart(m) => {
                let Reporter {
                    scene,
                    subject_id,
                    peers,
                } = self.reporter(&m.game_id, pid, &[m.peer_index])?;
                let event = ResearchEvent::P2pIceRestart {
                    game_id: m.game_id,
                    subject_id,
                    peer_subject_id: first(peers)?,
                    attempt: m.attempt,
                    trigger: m.trigger,
                    outcome: m.outcome,
                    duration_ms: m.duration_ms,
                };
                out.push(Effect::Record(scene, event));
            }
            ClientMessage::P2pConnectionFailed(m) => {
                let Reporter {
                    scene,
                    subject_id,
                    peers,
                } = self.reporter(&m.game_id, pid, &[m.peer_index])?;
                let game_id = m.game_id.clone();
                let event = ResearchEvent::P2pConnectionFailed {
                    game_id: m.game_id,
                    subject_id: subject_id.clone(),
                    peer_subject_id: first(peers)?,
                    attempts: m.attempts,
                };
                out.push(Effect::Record(scene, event));
                self.end(&game_id, GameEndReason::ConnectionFailed, subject_id, out);
            }
            ClientMessage::EpisodeSummary(e) => {
                let indices: Vec<PlayerIndex> = e.peers.iter().map(|p| p.peer_index).collect();
                let Reporter {
                    scene,
                    subject_id,
                    peers,
                } = self.reporter(&e.game_id, pid, &indices)?;
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
                };
                out.push(Effect::Record(scene, event));
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks that `pid` is a member of the game and every one of `peers` another member;
    /// returns the reporter and the peers' ids, in `peers` order.
    fn reporter(
        &self,
        game_id: &GameId,
        pid: Pid,
        peers: &[PlayerIndex],
    ) -> Result<Reporter, NotAMember> {
        let room = self.rooms.get(game_id).ok_or(NotAMember)?;
        let me = room.member(pid).ok_or(NotAMember)?;
        let peers = peers
            .iter()
            .map(|&peer| room.peer(pid, peer).map(|m| m.subject_id.clone()))
            .collect::<Option<Vec<_>>>()
            .ok_or(NotAMember)?;
        Ok(Reporter {
            scene: room.scene,
            subject_id: me.subject_id.clone(),
            peers,
        })
    }

    /// Ends a game for everyone in it (once): `game_ended` to every member, and the
    /// `game_ended` line naming `by`, the member whose report or departure ended it.
    pub fn end(
        &mut self,
        game_id: &GameId,
        reason: GameEndReason,
        by: SubjectId,
        out: &mut Vec<Effect>,
    ) {
        let Some(room) = self.rooms.get_mut(game_id) else {
            return;
        };
        if room.ended {
            return;
        }
        room.ended = true;
        let message = match reason {
            GameEndReason::ConnectionFailed => {
                "The connection between you and your partner was lost and could not be restored, so the game has ended."
            }
            GameEndReason::PeerLeft => "Your partner has left, so the game has ended.",
        };
        for m in &room.members {
            let msg = ServerMessage::GameEnded(GameEnded {
                game_id: game_id.clone(),
                reason,
                message: message.to_owned(),
            });
            out.push(Effect::Send(m.pid, msg));
        }
        let event = ResearchEvent::GameEnded {
            game_id: game_id.clone(),
            reason,
            subject_id: by,
        };
        out.push(Effect::Record(room.scene, event));
    }
}
