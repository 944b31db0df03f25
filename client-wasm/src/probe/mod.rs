//! WebRTC probes: before a game exists, the server asks the members of a proposed group to
//! open a DataChannel to each other and measure the RTT (PROTOCOL.md, Probe).
//!
//! [`ProbeManager`] takes the server's probe messages and runs one [`ProbeConnection`] per
//! `probe_session_id`, each in its own task, several at once (in a group of N a participant is
//! in N − 1 probes concurrently). The life of one probe:
//!
//! 1. `probe_prepare` → build the `RTCPeerConnection` with the given ICE servers (the same
//!    the game gets, TURN credentials included) and, with `force_relay`, relay candidates only
//!    (as the game will), answer `probe_ready`.
//! 2. `probe_start` → the initiator creates the DataChannel and sends the offer; offer, answer
//!    and trickled candidates travel as `probe_signal` (`target_index` = the peer's player
//!    index; peers never learn each other's `subject_id`).
//! 3. DataChannel open → both sides measure (see [`ProbeConnection`] and [`wire`]) and send
//!    `probe_result` with the selected candidate pair (`connection`: the path measured); then
//!    the connection closes and every handler is dropped.
//! 4. On the client deadline (a little before the server's `timeout_ms`) or a failed
//!    connection: `probe_result` with `success: false`, `rtt_ms: null`, and the samples taken.
//!
//! A probe prepared with `keep_ms` carries the game's two negotiated channels from step 1
//! ([`crate::handover`]), and after a successful result its connection is parked, not
//! closed: the manager keeps it (a [`ParkedPeer`]: the connection with its open channels,
//! its events, the measured candidate pair) until `game_start` adopts it
//! ([`ProbeManager::hand_over`]), or until it is closed by `probe_close`, by its `keep_ms`
//! passing, by a `game_start` that does not adopt it, by `waitroom_timeout` or `outcome`,
//! or by dropping the manager (the session's signalling connection ended).
//!
//! The server ends probes by moving on: `probe_close` closes one; `game_start`,
//! `waitroom_timeout` and `outcome` close every running and parked probe at once, without a
//! result; `waitroom` closes the running probes prepared without `keep_ms` (the server
//! closes kept ones with `probe_close`, and may run them while the member waits). Messages
//! for a probe that is closed or unknown are ignored.

pub mod connection;
pub mod wire;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};

use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either};
use gloo_timers::future::TimeoutFuture;
use pairlab_shared::{
    ClientMessage, ConnectionInfo, GameStart, PlayerIndex, ProbeReady, ProbeResult, ProbeSessionId,
    ServerMessage,
};
use web_sys::RtcPeerConnection;

pub use connection::{ProbeCommand, ProbeConnection, ProbeOutcome, ProbeSpec};

use crate::handover::{GamePath, GamePaths, ParkedPeer};
use crate::signaling::Outbox;
use crate::util::{log, ms_text, warn};

/// How many finished probes the manager remembers (their ids: whether this page ran a probe
/// `game_start` names; their measured paths: `same_path_as_probe` on a fresh connection); the
/// oldest go first.
const MEASURED_KEPT: usize = 16;

/// A running probe, as the manager sees it.
struct Entry {
    peer_index: PlayerIndex,
    /// Prepared with `keep_ms`.
    kept: bool,
    commands: mpsc::UnboundedSender<ProbeCommand>,
    /// Dropping this cancels the probe's task, which closes the connection.
    _cancel: oneshot::Sender<()>,
    connection: RtcPeerConnection,
}

/// A parked probe connection, as the manager keeps it.
struct Parked {
    parked: ParkedPeer,
    /// Dropping this ends the `keep_ms` timer's task.
    _expiry: oneshot::Sender<()>,
}

struct Inner {
    out: Outbox,
    probes: RefCell<HashMap<ProbeSessionId, Entry>>,
    parked: RefCell<HashMap<ProbeSessionId, Parked>>,
    /// The candidate pairs of finished probes, newest last (at most [`MEASURED_KEPT`]).
    measured: RefCell<VecDeque<(ProbeSessionId, ConnectionInfo)>>,
    /// The ids of finished probes, newest last (at most [`MEASURED_KEPT`]).
    ran: RefCell<VecDeque<ProbeSessionId>>,
    outcomes: RefCell<Option<mpsc::UnboundedSender<ProbeOutcome>>>,
}

/// Runs the probes of one signalling connection. See the module docs.
///
/// Dropping the manager closes every probe it runs.
pub struct ProbeManager {
    inner: Rc<Inner>,
}

impl ProbeManager {
    /// A manager whose probes send their messages (`probe_ready`, `probe_signal`,
    /// `probe_result`) through `out`.
    pub fn new(out: impl Fn(ClientMessage) + 'static) -> Self {
        Self {
            inner: Rc::new(Inner {
                out: Rc::new(out),
                probes: RefCell::new(HashMap::new()),
                parked: RefCell::new(HashMap::new()),
                measured: RefCell::new(VecDeque::new()),
                ran: RefCell::new(VecDeque::new()),
                outcomes: RefCell::new(None),
            }),
        }
    }

    /// A receiver of every probe's [`ProbeOutcome`] (timings and failure reasons), from now
    /// on. A later call replaces the earlier receiver.
    pub fn outcomes(&self) -> mpsc::UnboundedReceiver<ProbeOutcome> {
        let (tx, rx) = mpsc::unbounded();
        *self.inner.outcomes.borrow_mut() = Some(tx);
        rx
    }

    /// Takes one server message. Probe messages are acted on; `probe_close` closes its probe;
    /// `game_start` (after [`ProbeManager::hand_over`] took what it adopts),
    /// `waitroom_timeout` and `outcome` close every running and parked probe; `waitroom`
    /// closes the running probes prepared without `keep_ms`. Returns whether the message
    /// concerned probes.
    pub fn handle(&self, msg: &ServerMessage) -> bool {
        match msg {
            ServerMessage::ProbePrepare(p) => {
                self.prepare(ProbeSpec {
                    probe_session_id: p.probe_session_id.clone(),
                    peer_index: p.peer_index,
                    ice_servers: p.ice_servers.clone(),
                    timeout_ms: p.timeout_ms,
                    relay_only: p.force_relay,
                    keep_ms: p.keep_ms,
                });
                true
            }
            ServerMessage::ProbeClose(c) => {
                self.close(&c.probe_session_id);
                true
            }
            ServerMessage::ProbeStart(s) => {
                self.command(
                    &s.probe_session_id,
                    None,
                    ProbeCommand::Start {
                        initiator: s.initiator,
                    },
                );
                true
            }
            ServerMessage::ProbeSignal(s) => {
                self.command(
                    &s.probe_session_id,
                    Some(s.from_index),
                    ProbeCommand::Signal {
                        signal_type: s.signal_type,
                        payload: s.payload.clone(),
                    },
                );
                true
            }
            ServerMessage::Waitroom(_) => {
                self.close_running(|e| !e.kept);
                false
            }
            ServerMessage::GameStart(_)
            | ServerMessage::WaitroomTimeout(_)
            | ServerMessage::Outcome(_) => {
                self.close_all();
                false
            }
            _ => false,
        }
    }

    /// Starts a probe for `spec` (as on `probe_prepare`): builds its connection, sends
    /// `probe_ready`, and runs it in a task. A second prepare for a running id is ignored.
    /// When the browser refuses to build the connection, `probe_result` with
    /// `success: false` goes out at once.
    pub fn prepare(&self, spec: ProbeSpec) {
        let id = spec.probe_session_id.clone();
        if self.inner.probes.borrow().contains_key(&id) {
            warn(&format!("probe {id}: prepared twice; ignored"));
            return;
        }
        let peer_index = spec.peer_index;
        let keep_ms = spec.keep_ms;
        let conn = match ProbeConnection::new(spec) {
            Ok(c) => c,
            Err(e) => {
                warn(&format!("probe {id}: {e}"));
                (self.inner.out)(ClientMessage::ProbeResult(ProbeResult {
                    probe_session_id: id,
                    success: false,
                    rtt_ms: None,
                    samples_ms: Vec::new(),
                    stats_rtt_ms: None,
                    connection: None,
                }));
                return;
            }
        };
        let (cmd_tx, cmd_rx) = mpsc::unbounded();
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        self.inner.probes.borrow_mut().insert(
            id.clone(),
            Entry {
                peer_index,
                kept: keep_ms.is_some(),
                commands: cmd_tx,
                _cancel: cancel_tx,
                connection: conn.raw(),
            },
        );
        (self.inner.out)(ClientMessage::ProbeReady(ProbeReady {
            probe_session_id: id.clone(),
        }));
        let weak: Weak<Inner> = Rc::downgrade(&self.inner);
        let out = Rc::clone(&self.inner.out);
        wasm_bindgen_futures::spawn_local(async move {
            let run = Box::pin(conn.run(cmd_rx, out));
            // Cancellation first: once the server ended the probe, nothing more is sent.
            let (outcome, parked) = match future::select(cancel_rx, run).await {
                // Cancelled: the run future (and with it the connection) is dropped here.
                Either::Left(_) => (None, None),
                Either::Right(((outcome, parked), _)) => (Some(outcome), parked),
            };
            // Without a manager, a parked connection closes here (dropped).
            let Some(inner) = weak.upgrade() else {
                return;
            };
            inner.probes.borrow_mut().remove(&id);
            remember(&inner.ran, id.clone());
            if let Some(outcome) = outcome {
                if let Some(info) = outcome.result.connection.filter(|_| outcome.result.success) {
                    remember(&inner.measured, (id.clone(), info));
                }
                if let (Some(parked), Some(keep_ms)) = (parked, keep_ms) {
                    park(&inner, id.clone(), parked, keep_ms);
                }
                log(&describe(&id, &outcome));
                if let Some(tx) = inner.outcomes.borrow().as_ref() {
                    let _ = tx.unbounded_send(outcome);
                }
            }
        });
    }

    fn command(&self, id: &ProbeSessionId, from: Option<PlayerIndex>, cmd: ProbeCommand) {
        let probes = self.inner.probes.borrow();
        let Some(entry) = probes.get(id) else {
            // A late message for a probe that ended, or one we never had.
            return;
        };
        if from.is_some_and(|f| f != entry.peer_index) {
            warn(&format!(
                "probe {id}: a signal from someone else than the peer; ignored"
            ));
            return;
        }
        // The task may have just ended; then the message is late and dropped.
        let _ = entry.commands.unbounded_send(cmd);
    }

    /// The game connections `start` asks for, per peer (see [`GamePath`]): each peer listed
    /// in `start.probes` with `handover: true` whose probe connection is parked here and
    /// still usable gets it ([`GamePath::Adopt`], taken out of the manager); listed with
    /// `handover: true` but gone or unusable: a fresh connection that offers itself; listed
    /// with `handover: false`: a fresh one as usual — unless this manager never ran that
    /// probe (a reload, or a new signalling connection, after which the server says `false`
    /// while the peer may hold its side of a handed-over connection): then it offers itself
    /// too. Fresh paths carry the probe's measured pair when this side remembers it. Call
    /// before [`ProbeManager::handle`] closes the rest.
    pub fn hand_over(&self, start: &GameStart) -> GamePaths {
        let mut paths = GamePaths::new();
        for p in &start.probes {
            let parked = self
                .inner
                .parked
                .borrow_mut()
                .remove(&p.probe_session_id)
                .map(|k| k.parked);
            let ran_here = parked.is_some() || self.ran(&p.probe_session_id);
            let probe = parked
                .as_ref()
                .and_then(|k| k.measured.info)
                .or_else(|| self.measured(&p.probe_session_id));
            let path = match parked {
                Some(parked) if p.handover && parked.is_usable() => GamePath::Adopt(parked),
                // An unusable parked connection closes here (dropped).
                _ => GamePath::Fresh {
                    offer_anyway: p.handover || !ran_here,
                    probe,
                },
            };
            if let GamePath::Fresh {
                offer_anyway: true, ..
            } = path
            {
                warn(&format!(
                    "probe {}: {}; a fresh connection, offered by this side",
                    p.probe_session_id,
                    if ran_here {
                        "handed over by the server, but this side has no usable connection"
                    } else {
                        "not run by this page (a reload or a new signalling connection)"
                    }
                ));
            }
            paths.insert(p.peer_index, path);
        }
        paths
    }

    /// Whether this manager ran the probe `id` (it is running, or finished here).
    fn ran(&self, id: &ProbeSessionId) -> bool {
        self.inner.probes.borrow().contains_key(id)
            || self.inner.ran.borrow().iter().any(|r| r == id)
    }

    /// The candidate pair a finished probe measured, if remembered.
    fn measured(&self, id: &ProbeSessionId) -> Option<ConnectionInfo> {
        self.inner
            .measured
            .borrow()
            .iter()
            .find(|(m, _)| m == id)
            .map(|(_, info)| *info)
    }

    /// Closes the probe `id` now, running (without a result) or parked (`probe_close`).
    /// Unknown ids are ignored.
    pub fn close(&self, id: &ProbeSessionId) {
        let entry = self.inner.probes.borrow_mut().remove(id);
        if let Some(e) = entry {
            e.connection.close();
        }
        let parked = self.inner.parked.borrow_mut().remove(id);
        drop(parked);
    }

    /// Closes the running probes that `which` picks, without a result.
    fn close_running(&self, which: impl Fn(&Entry) -> bool) {
        let entries: Vec<Entry> = {
            let mut probes = self.inner.probes.borrow_mut();
            let ids: Vec<ProbeSessionId> = probes
                .iter()
                .filter(|(_, e)| which(e))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| probes.remove(id)).collect()
        };
        for e in &entries {
            // At once, not at the task's next turn; the task's cleanup follows.
            e.connection.close();
        }
        drop(entries);
    }

    /// Closes every running probe, without a result (the server ended them), and every
    /// parked connection.
    pub fn close_all(&self) {
        self.close_running(|_| true);
        let parked: Vec<Parked> = self
            .inner
            .parked
            .borrow_mut()
            .drain()
            .map(|(_, p)| p)
            .collect();
        drop(parked);
    }

    /// The ids of the probes running now.
    pub fn active(&self) -> Vec<ProbeSessionId> {
        self.inner.probes.borrow().keys().cloned().collect()
    }

    /// The ids of the parked probe connections.
    pub fn parked(&self) -> Vec<ProbeSessionId> {
        self.inner.parked.borrow().keys().cloned().collect()
    }

    /// The browser connection of a running or parked probe (tests check it is closed
    /// afterwards).
    pub fn peer_connection(&self, id: &ProbeSessionId) -> Option<RtcPeerConnection> {
        let running = self
            .inner
            .probes
            .borrow()
            .get(id)
            .map(|e| e.connection.clone());
        running.or_else(|| {
            self.inner
                .parked
                .borrow()
                .get(id)
                .map(|p| p.parked.peer.raw().clone())
        })
    }
}

/// Appends `item` to a bounded memory of finished probes, forgetting the oldest beyond
/// [`MEASURED_KEPT`].
fn remember<T>(memory: &RefCell<VecDeque<T>>, item: T) {
    let mut memory = memory.borrow_mut();
    if memory.len() >= MEASURED_KEPT {
        memory.pop_front();
    }
    memory.push_back(item);
}

/// Keeps `parked` under `id` for `keep_ms`; a task closes it then, unless it was taken or
/// closed first (which drops the timer's sender and so ends the task).
fn park(inner: &Rc<Inner>, id: ProbeSessionId, parked: ParkedPeer, keep_ms: u64) {
    let (expiry_tx, expiry_rx) = oneshot::channel::<()>();
    let weak = Rc::downgrade(inner);
    let timer_id = id.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let timer = TimeoutFuture::new(u32::try_from(keep_ms).unwrap_or(u32::MAX));
        if let Either::Right(_) = future::select(expiry_rx, timer).await {
            if let Some(inner) = weak.upgrade() {
                let expired = inner.parked.borrow_mut().remove(&timer_id);
                if expired.is_some() {
                    log(&format!(
                        "probe {timer_id}: parked connection closed after keep_ms {keep_ms}"
                    ));
                }
            }
        }
    });
    let old = inner.parked.borrow_mut().insert(
        id,
        Parked {
            parked,
            _expiry: expiry_tx,
        },
    );
    drop(old);
}

impl Drop for ProbeManager {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// One console line about a finished probe.
fn describe(id: &ProbeSessionId, o: &ProbeOutcome) -> String {
    let fmt = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{} ms", ms_text(v)));
    match &o.failure {
        Some(why) if !o.reported => format!("probe {id} closed without a result: {why}"),
        None => format!(
            "probe {id}: rtt {} (smallest of {} samples), getStats rtt {}, path {}, reported {} ms after probe_prepare{}",
            fmt(o.result.rtt_ms),
            o.result.samples_ms.len(),
            fmt(o.result.stats_rtt_ms),
            o.result.connection.map_or("unknown".to_owned(), |c| format!(
                "{:?} ({:?} → {:?}, {:?})",
                c.connection_type, c.local_candidate_type, c.remote_candidate_type, c.protocol
            )),
            ms_text(o.reported_after_ms),
            if o.parked { "; parked for the game" } else { "" }
        ),
        Some(why) => format!(
            "probe {id} failed after {} ms: {why} ({} samples)",
            ms_text(o.reported_after_ms),
            o.result.samples_ms.len()
        ),
    }
}
