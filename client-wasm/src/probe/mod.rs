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
//!    `probe_result` with the selected candidate pair (`connection`: the path measured); then the connection closes and every handler is dropped.
//! 4. On the client deadline (a little before the server's `timeout_ms`) or a failed
//!    connection: `probe_result` with `success: false`, `rtt_ms: null`, and the samples taken.
//!
//! The server ends probes by moving on: `waitroom`, `game_start` or `waitroom_timeout` close
//! every open probe at once, without a result. Messages for a probe that is closed or unknown
//! are ignored.

pub mod connection;
pub mod wire;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either};
use pairlab_shared::{
    ClientMessage, PlayerIndex, ProbeReady, ProbeResult, ProbeSessionId, ServerMessage,
};
use web_sys::RtcPeerConnection;

pub use connection::{ProbeCommand, ProbeConnection, ProbeOutcome, ProbeSpec};

use crate::signaling::Outbox;
use crate::util::{log, ms_text, warn};

/// A running probe, as the manager sees it.
struct Entry {
    peer_index: PlayerIndex,
    commands: mpsc::UnboundedSender<ProbeCommand>,
    /// Dropping this cancels the probe's task, which closes the connection.
    _cancel: oneshot::Sender<()>,
    connection: RtcPeerConnection,
}

struct Inner {
    out: Outbox,
    probes: RefCell<HashMap<ProbeSessionId, Entry>>,
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

    /// Takes one server message. Probe messages are acted on; `waitroom`, `game_start` and
    /// `waitroom_timeout` close every open probe. Returns whether the message concerned
    /// probes.
    pub fn handle(&self, msg: &ServerMessage) -> bool {
        match msg {
            ServerMessage::ProbePrepare(p) => {
                self.prepare(ProbeSpec {
                    probe_session_id: p.probe_session_id.clone(),
                    peer_index: p.peer_index,
                    ice_servers: p.ice_servers.clone(),
                    timeout_ms: p.timeout_ms,
                    relay_only: p.force_relay,
                });
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
            ServerMessage::Waitroom(_)
            | ServerMessage::GameStart(_)
            | ServerMessage::WaitroomTimeout(_) => {
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
            let outcome = match future::select(cancel_rx, run).await {
                // Cancelled: the run future (and with it the connection) is dropped here.
                Either::Left(_) => None,
                Either::Right((outcome, _)) => Some(outcome),
            };
            let Some(inner) = weak.upgrade() else {
                return;
            };
            inner.probes.borrow_mut().remove(&id);
            if let Some(outcome) = outcome {
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

    /// Closes every open probe now, without a result (the server ended them).
    pub fn close_all(&self) {
        let entries: Vec<Entry> = self
            .inner
            .probes
            .borrow_mut()
            .drain()
            .map(|(_, e)| e)
            .collect();
        for e in &entries {
            // At once, not at the task's next turn; the task's cleanup follows.
            e.connection.close();
        }
        drop(entries);
    }

    /// The ids of the probes running now.
    pub fn active(&self) -> Vec<ProbeSessionId> {
        self.inner.probes.borrow().keys().cloned().collect()
    }

    /// The browser connection of a running probe (tests check it is closed afterwards).
    pub fn peer_connection(&self, id: &ProbeSessionId) -> Option<RtcPeerConnection> {
        self.inner
            .probes
            .borrow()
            .get(id)
            .map(|e| e.connection.clone())
    }
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
            "probe {id}: rtt {} (smallest of {} samples), getStats rtt {}, path {}, reported {} ms after probe_prepare",
            fmt(o.result.rtt_ms),
            o.result.samples_ms.len(),
            fmt(o.result.stats_rtt_ms),
            o.result.connection.map_or("unknown".to_owned(), |c| format!(
                "{:?} ({:?} → {:?}, {:?})",
                c.connection_type, c.local_candidate_type, c.remote_candidate_type, c.protocol
            )),
            ms_text(o.reported_after_ms)
        ),
        Some(why) => format!(
            "probe {id} failed after {} ms: {why} ({} samples)",
            ms_text(o.reported_after_ms),
            o.result.samples_ms.len()
        ),
    }
}
