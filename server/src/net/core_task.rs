//! The task that owns the [`Core`]: it feeds the core its inputs with the time, wakes it at its
//! deadlines, and carries out its [`Action`]s.
//!
//! Connection tasks reach it through one bounded queue of [`CoreInput`]s: first
//! [`CoreInput::Open`] with the connection's [`Link`], then its events. An `Action::Send` goes
//! into the connection's outbound queue without waiting; a full queue (the client reads too
//! slowly) fires the link's `too_slow` signal instead, so one slow client never stalls the
//! core. An `Action::Close` drops the link: the connection writes what was queued, then closes
//! with 1000.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pairlab_shared::ServerMessage;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle};

use super::sleep_until;
use crate::config::Config;
use crate::core::{Action, ConnId, Core, CoreClock, CoreStats, DoneState, Event, RandomIds};
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::record::RecordHandle;

/// Messages the core may queue for one connection before that client counts as too slow and is
/// closed.
pub const OUTBOUND_QUEUE: usize = 256;
/// Events the connection tasks may queue for the core before they wait (back-pressure on
/// reading their sockets, never on the core).
pub const CORE_QUEUE: usize = 4096;

/// What the core task is sent.
pub(super) enum CoreInput {
    /// A new connection and the way to reach it; sent before any of its events.
    Open {
        /// The connection.
        conn: ConnId,
        /// Its outbound queue and too-slow signal.
        link: Link,
    },
    /// Something that happened on a connection.
    Event(Event),
    /// Stop after the inputs queued before this one.
    Stop,
}

/// How the core task reaches one connection task.
pub(super) struct Link {
    /// The connection's outbound queue ([`OUTBOUND_QUEUE`] messages); dropping it closes the
    /// connection with 1000 once the queue is written.
    pub(super) out: mpsc::Sender<ServerMessage>,
    /// Fired when the outbound queue is full: the connection closes with 1008.
    pub(super) too_slow: oneshot::Sender<()>,
}

/// Mints connection ids: 1, 2, 3, … for the life of the server process, never reused. The one
/// place a [`ConnId`] is made.
#[derive(Debug, Default)]
pub(super) struct ConnIds(AtomicU64);

impl ConnIds {
    /// The next unused id.
    pub(super) fn next(&self) -> ConnId {
        ConnId::new(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// The server's [`Core`]: its clock origin is now (the one place the wall clock is read for it)
/// and its ids are random ([`RandomIds`], UUID v4). Each scene's done set and failed pairs
/// are rebuilt from its record, `<data_dir>/<scene_id>/events.jsonl`, if there is one (read
/// once, line by line, before the server takes connections; unreadable lines, such as a torn
/// last line, are skipped and counted in the log).
fn new_core(config: Arc<Config>, data_dir: &Path) -> Core {
    let origin_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let clock = CoreClock {
        origin: std::time::Instant::now(),
        origin_unix_s,
    };
    let mut core = Core::new(config.clone(), clock, Box::new(RandomIds));
    for scene in &config.scenes {
        let path = data_dir.join(&scene.id).join("events.jsonl");
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::error!(
                    "cannot read {} to restore the done set: {e}",
                    path.display()
                );
                continue;
            }
        };
        let mut state = DoneState::default();
        for line in std::io::BufReader::new(file).split(b'\n') {
            match line {
                Ok(line) => state.read_line(&line),
                Err(e) => {
                    tracing::error!("reading {} stopped: {e}", path.display());
                    break;
                }
            }
        }
        if state.unreadable_lines > 0 {
            tracing::warn!(
                "{}: skipped {} unreadable line(s)",
                path.display(),
                state.unreadable_lines
            );
        }
        tracing::info!(
            "scene {:?}: {} done subject(s) and {} failed pair(s) restored from the record",
            scene.id,
            state.done.len(),
            state.failed_pairs.len()
        );
        core.restore(&scene.id, &state);
    }
    core
}

/// The running core task: its inbox, its published counts, and its handle.
pub(super) struct CoreTask {
    inbox: mpsc::Sender<CoreInput>,
    stats: watch::Receiver<CoreStats>,
    task: JoinHandle<()>,
}

impl CoreTask {
    /// Builds the [`Core`] for `config` (with what the records in `data_dir` remember) and runs
    /// it in a task, with a [`CORE_QUEUE`] inbox; research events go to `record`.
    /// With `metrics` and `monitor`, it keeps their per-scene waiting counts up to date.
    pub(super) fn spawn(
        config: Arc<Config>,
        record: RecordHandle,
        data_dir: &Path,
        metrics: Option<Arc<Metrics>>,
        monitor: Option<Arc<Mutex<Monitor>>>,
    ) -> CoreTask {
        let (inbox, inputs) = mpsc::channel(CORE_QUEUE);
        let (stats_tx, stats) = watch::channel(CoreStats::default());
        let task = tokio::spawn(
            CoreLoop {
                core: new_core(config.clone(), data_dir),
                config,
                metrics,
                monitor,
                inputs,
                links: HashMap::new(),
                record,
                stats: stats_tx,
                actions: Vec::new(),
            }
            .run(),
        );
        CoreTask { inbox, stats, task }
    }

    /// A sender into the core task's inbox.
    pub(super) fn inbox(&self) -> mpsc::Sender<CoreInput> {
        self.inbox.clone()
    }

    /// The core's counts, updated after every input that changes them.
    pub(super) fn stats(&self) -> watch::Receiver<CoreStats> {
        self.stats.clone()
    }

    /// Stops the task after the inputs already queued, and waits for it.
    ///
    /// # Errors
    /// The task's [`JoinError`] if it panicked.
    pub(super) async fn stop(self) -> Result<(), JoinError> {
        // A closed inbox means the task has ended already; the join says how.
        let _ = self.inbox.send(CoreInput::Stop).await;
        self.task.await
    }
}

/// The state of the core task.
struct CoreLoop {
    /// The state machine.
    core: Core,
    /// What connection tasks send.
    inputs: mpsc::Receiver<CoreInput>,
    /// The open connections the core can still reach.
    links: HashMap<ConnId, Link>,
    /// The research record writer.
    record: RecordHandle,
    /// Where the core's counts are published (`/healthz`).
    stats: watch::Sender<CoreStats>,
    /// The core's actions for the current input (reused).
    actions: Vec<Action>,
    /// The scenes, in the core's order.
    config: Arc<Config>,
    /// Where the per-scene waiting counts go, if metrics are kept.
    metrics: Option<Arc<Metrics>>,
    /// Where the per-scene waiting counts go, if the monitor is on.
    monitor: Option<Arc<Mutex<Monitor>>>,
}

impl CoreLoop {
    async fn run(mut self) {
        // A core whose deadline does not move on after a Tick must not make this loop spin.
        let mut min_wake: Option<Instant> = None;
        loop {
            let deadline = self
                .core
                .next_deadline()
                .map(|d| min_wake.map_or(d, |m| d.max(m)));
            let input = if deadline.is_some_and(|d| d <= Instant::now()) {
                // Due already: deadlines are not starved by a busy inbox.
                CoreInput::Event(Event::Tick)
            } else {
                tokio::select! {
                    biased;
                    input = self.inputs.recv() => match input {
                        Some(input) => input,
                        None => break,
                    },
                    () = sleep_until(deadline), if deadline.is_some() => CoreInput::Event(Event::Tick),
                }
            };
            let now = Instant::now();
            let is_tick = matches!(input, CoreInput::Event(Event::Tick));
            match input {
                CoreInput::Open { conn, link } => {
                    self.links.insert(conn, link);
                    self.core
                        .handle(now, Event::Connected { conn }, &mut self.actions);
                }
                CoreInput::Event(event) => {
                    let gone = match event {
                        Event::Disconnected { conn } => Some(conn),
                        _ => None,
                    };
                    self.core.handle(now, event, &mut self.actions);
                    if let Some(conn) = gone {
                        self.links.remove(&conn);
                    }
                }
                CoreInput::Stop => break,
            }
            let new_stats = self.core.stats();
            let changed = self
                .stats
                .send_if_modified(|s| std::mem::replace(s, new_stats) != new_stats);
            if changed && (self.metrics.is_some() || self.monitor.is_some()) {
                let sizes = self.core.memory_stats().scenes;
                let waiting = || {
                    let ids = self.config.scenes.iter().map(|s| s.id.as_str());
                    ids.zip(sizes.iter().map(|s| s.waiting))
                };
                if let Some(metrics) = &self.metrics {
                    metrics.set_waiting(waiting());
                }
                if let Some(monitor) = &self.monitor {
                    monitor
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .set_waiting(waiting());
                }
            }
            min_wake = match self.core.next_deadline() {
                Some(d) if is_tick && d <= now => {
                    tracing::warn!("core deadline did not advance after a tick");
                    Some(now + Duration::from_millis(5))
                }
                _ => None,
            };
            let mut actions = std::mem::take(&mut self.actions);
            for action in actions.drain(..) {
                self.carry_out(action);
            }
            self.actions = actions;
        }
    }

    fn carry_out(&mut self, action: Action) {
        match action {
            Action::Send { conn, msg } => {
                let Some(link) = self.links.get(&conn) else {
                    tracing::debug!(?conn, "send to a connection that is gone");
                    return;
                };
                match link.out.try_send(msg) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            ?conn,
                            "client too slow: its outbound queue is full; closing it"
                        );
                        if let Some(link) = self.links.remove(&conn) {
                            let _ = link.too_slow.send(());
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.links.remove(&conn);
                    }
                }
            }
            Action::Close { conn } => {
                // Dropping the sender ends the connection's queue: it writes what is queued,
                // then closes with 1000.
                self.links.remove(&conn);
            }
            Action::Record { scene_id, event } => self.record.send(scene_id, event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MatchmakerKind, SceneConfig};
    use crate::record::RecordWriter;
    use pairlab_shared::{ClientMessage, DecodeError, Hello, SubjectId};

    fn config() -> Arc<Config> {
        Arc::new(Config {
            scenes: vec![SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo)],
            ice_servers: vec![],
            turn: None,
            server: Default::default(),
        })
    }

    fn hello(conn: ConnId, subject: &str) -> CoreInput {
        CoreInput::Event(Event::Message {
            conn,
            msg: ClientMessage::Hello(Hello {
                subject_id: SubjectId::parse(subject).unwrap(),
                scene_id: None,
                resume_token: None,
                link_signature: None,
                recruiter: None,
                browser: None,
            }),
        })
    }

    #[test]
    fn conn_ids_start_at_one_and_are_never_reused() {
        let ids = ConnIds::default();
        assert_eq!(ids.next(), ConnId::new(1));
        assert_eq!(ids.next(), ConnId::new(2));
    }

    /// A client whose outbound queue is full is closed (its too-slow signal fires) instead of
    /// the core waiting for it; other clients are served on.
    #[tokio::test]
    async fn a_full_outbound_queue_kills_that_connection_only() {
        let dir = std::env::temp_dir().join(format!("pairlab-net-test-{}", std::process::id()));
        let recorder = RecordWriter::spawn(&dir);
        let core = CoreTask::spawn(config(), recorder.handle(), &dir, None, None);
        let tx = core.inbox();
        let ids = ConnIds::default();
        let (slow, fine) = (ids.next(), ids.next());

        // `slow` can hold one message and never reads; `fine` reads.
        let (slow_out, mut slow_rx) = mpsc::channel(1);
        let (slow_kill, mut slow_killed) = oneshot::channel();
        let (ok_out, mut ok_rx) = mpsc::channel(16);
        let (ok_kill, mut ok_killed) = oneshot::channel();
        for (conn, out, too_slow) in [(slow, slow_out, slow_kill), (fine, ok_out, ok_kill)] {
            tx.send(CoreInput::Open {
                conn,
                link: Link { out, too_slow },
            })
            .await
            .unwrap();
        }
        tx.send(hello(slow, "slow")).await.unwrap();
        // welcome fills the queue; the error for this frame does not fit.
        tx.send(CoreInput::Event(Event::Malformed {
            conn: slow,
            error: DecodeError::NotObject,
        }))
        .await
        .unwrap();
        tx.send(hello(fine, "fine")).await.unwrap();

        let killed = tokio::time::timeout(Duration::from_secs(5), &mut slow_killed).await;
        assert!(
            matches!(killed, Ok(Ok(()))),
            "the slow client is closed: {killed:?}"
        );
        assert!(matches!(
            slow_rx.recv().await,
            Some(ServerMessage::Welcome(_))
        ));
        let got = tokio::time::timeout(Duration::from_secs(5), ok_rx.recv()).await;
        assert!(
            matches!(got, Ok(Some(ServerMessage::Welcome(_)))),
            "{got:?}"
        );
        assert!(
            ok_killed.try_recv().is_err(),
            "the other client is untouched"
        );
        assert!(core.stats().borrow().participants >= 1);

        core.stop().await.unwrap();
        recorder.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
