//! A probe kept for the game between two members of one page: two [`ProbeManager`]s joined
//! by an in-memory server part that prepares the probe with `keep_ms`, starts it, relays its
//! signals and collects both results, until both sides parked the connection (without
//! `keep_ms`: until both closed it); then the
//! `game_start` that hands it over ([`KeptProbe::hand_over`]). Used by the handover tests and
//! by the game tests that run on a handed-over connection.

// Each test file that includes `common` uses a part of it.
#![allow(dead_code)]

use futures::channel::mpsc;
use futures::stream::{self, SelectAll, StreamExt};
use gloo_timers::future::TimeoutFuture;
use pairlab_client::handover::GamePaths;
use pairlab_client::probe::ProbeManager;
use pairlab_shared::{
    ClientMessage, GameId, GameSettings, GameStart, IceServer, PeerProbe, ProbePrepare,
    ProbeResult, ProbeSessionId, ProbeSignalIn, ProbeStart, ServerMessage,
};

use web_sys::RtcPeerConnection;

use super::within;

/// How the kept probe is prepared.
#[derive(Debug, Clone)]
pub struct KeptSpec {
    /// `probe_prepare.keep_ms`.
    pub keep_ms: Option<u64>,
    /// `probe_prepare.ice_servers`.
    pub ice_servers: Vec<IceServer>,
    /// `probe_prepare.force_relay`.
    pub force_relay: bool,
}

impl Default for KeptSpec {
    fn default() -> Self {
        Self {
            keep_ms: Some(30_000),
            ice_servers: Vec::new(),
            force_relay: false,
        }
    }
}

/// Two members (player 0 and 1) and their probe, run to both results.
pub struct KeptProbe {
    pub managers: [ProbeManager; 2],
    pub id: ProbeSessionId,
    pub results: [Option<ProbeResult>; 2],
    /// Both sides' probe connections, from right after `probe_prepare`.
    pub connections: [RtcPeerConnection; 2],
    kept: bool,
    inbox: SelectAll<stream::LocalBoxStream<'static, (usize, ClientMessage)>>,
}

/// `game_start` for player `player_index` of 2 (default settings, no ICE servers) with
/// `probes`.
pub fn game_start(game_id: &str, player_index: u32, probes: Vec<PeerProbe>) -> GameStart {
    GameStart {
        game_id: GameId::from_string(game_id),
        player_index,
        player_count: 2,
        ice_servers: vec![],
        force_relay: false,
        pair_rtts: vec![],
        game: Box::new(GameSettings::default()),
        probes,
    }
}

/// `game_start` for player `player_index` of 2, naming the probe toward the other one.
pub fn game_start_with_probe(
    game_id: &str,
    player_index: u32,
    probe: &ProbeSessionId,
    handover: bool,
) -> GameStart {
    let probes = vec![PeerProbe {
        peer_index: 1 - player_index,
        probe_session_id: probe.clone(),
        handover,
    }];
    game_start(game_id, player_index, probes)
}

impl KeptProbe {
    /// Prepares the probe `id` between two new members and relays it until both reported
    /// success and parked the connection.
    pub async fn run(id: &str, spec: KeptSpec) -> Self {
        let mut inbox = SelectAll::new();
        let managers = [0usize, 1].map(|i| {
            let (tx, rx) = mpsc::unbounded();
            inbox.push(rx.map(move |m| (i, m)).boxed_local());
            ProbeManager::new(move |m| {
                let _ = tx.unbounded_send(m);
            })
        });
        let id = ProbeSessionId::from_string(id);
        let connections = [0, 1].map(|i| {
            managers[i].handle(&ServerMessage::ProbePrepare(ProbePrepare {
                probe_session_id: id.clone(),
                peer_index: 1 - i as u32,
                ice_servers: spec.ice_servers.clone(),
                timeout_ms: 10_000,
                force_relay: spec.force_relay,
                keep_ms: spec.keep_ms,
            }));
            managers[i]
                .peer_connection(&id)
                .expect("a connection right after probe_prepare")
        });
        let mut probe = Self {
            managers,
            id,
            results: [None, None],
            connections,
            kept: spec.keep_ms.is_some(),
            inbox,
        };
        within(15_000, "the probe to end on both sides", probe.relay()).await;
        probe
    }

    /// Kept: both parked it. Not kept: both closed it.
    fn both_done(&self) -> bool {
        if self.kept {
            self.managers.iter().all(|m| m.parked().contains(&self.id))
        } else {
            self.managers.iter().all(|m| m.active().is_empty())
        }
    }

    async fn relay(&mut self) {
        let mut ready = [false; 2];
        while !(self.both_done() && self.results.iter().all(Option::is_some)) {
            let step = futures::future::select(self.inbox.next(), TimeoutFuture::new(10)).await;
            let futures::future::Either::Left((Some((from, msg)), _)) = step else {
                continue;
            };
            match msg {
                ClientMessage::ProbeReady(_) => {
                    ready[from] = true;
                    if ready == [true, true] {
                        for i in 0..2 {
                            self.managers[i].handle(&ServerMessage::ProbeStart(ProbeStart {
                                probe_session_id: self.id.clone(),
                                initiator: i == 0,
                            }));
                        }
                    }
                }
                ClientMessage::ProbeSignal(s) => {
                    self.managers[1 - from].handle(&ServerMessage::ProbeSignal(ProbeSignalIn {
                        probe_session_id: s.probe_session_id,
                        from_index: from as u32,
                        signal_type: s.signal_type,
                        payload: s.payload,
                    }));
                }
                ClientMessage::ProbeResult(r) => {
                    assert!(r.success, "side {from}: the kept probe failed: {r:?}");
                    self.results[from] = Some(r);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Side `i`'s game connections for `game_start` of `game_id` with `handover`: what its
    /// manager hands over; then the manager closes everything else, as at a real
    /// `game_start`.
    pub fn hand_over(&self, i: usize, game_id: &str, handover: bool) -> (GameStart, GamePaths) {
        let start = game_start_with_probe(game_id, i as u32, &self.id, handover);
        let paths = self.managers[i].hand_over(&start);
        self.managers[i].handle(&ServerMessage::GameStart(Box::new(start.clone())));
        (start, paths)
    }
}
