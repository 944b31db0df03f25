//! The research record: every decision the server makes, as one JSON object per line of
//! `<data-dir>/<scene_id>/events.jsonl`.
//!
//! One thread, the record writer, owns the files. Everything else talks to it through a
//! [`RecordHandle`] (cheap to clone, never blocks): [`RecordHandle::send`] stamps the event with
//! the wall-clock time and puts it on a bounded queue of [`RECORD_QUEUE`] events. The writer is
//! a plain thread doing blocking file I/O, not a tokio task, so a disk that hangs can hold up
//! neither the async runtime nor the process's exit.
//!
//! A line reads
//! `{"ts":"2026-11-22T01:16:43.123Z","event":"probe_result","scene_id":"s1",…the event's fields}`:
//! `ts` is RFC 3339 UTC with milliseconds (`humantime::format_rfc3339_millis`), `event` and the
//! fields come from [`ResearchEvent`]'s serde form. Load it with pandas:
//! `pd.read_json("data/s1/events.jsonl", lines=True)`.
//!
//! What the writer guarantees:
//! - **Whole lines only.** Each event is one `write` of its complete line, newline included,
//!   straight to the operating system (no buffer in the process), so `tail -f` sees it at once.
//!   The writer keeps the file's length after its last complete line; a write that fails (disk
//!   full, I/O error) is rolled back to it (`set_len`), so a failed write leaves no torn line.
//!   When a file is opened, a torn last line left by a crash or a failed roll-back is cut off
//!   the same way (logged). The line of a failed write is lost: lost lines are counted
//!   ([`RecordHealth`]) and logged at ERROR with the count — at the first failure, every
//!   [`LOG_INTERVAL`] while writing keeps failing, and when it works again. Writing is retried
//!   with every event, so it resumes by itself once the disk has room again.
//! - **FIFO.** Lines are written in the order [`RecordHandle::send`] queued them. The core's
//!   actions are carried out in order, so an event recorded before a message is sent (such as
//!   `game_created` before `game_start`) is queued to the writer before the message is queued
//!   to the socket, and precedes every later line of its scene.
//! - **On disk within a second.** Files with lines written since their last sync are synced
//!   (`fdatasync`) at most [`SYNC_INTERVAL`] after the first such line, and once more at
//!   shutdown. [`RecordWriter::close`] waits for that at most [`CLOSE_LIMIT`]: a hung disk
//!   makes shutdown log an ERROR, never hang.
//! - **Never silently dropped.** When the queue is full (the disk is slower than the events),
//!   the event is dropped and counted as a queue overflow; the writer logs the count at ERROR
//!   (at once, then at most every [`LOG_INTERVAL`]) and [`RecordHealth`] reports it.
//!
//! [`RecordHealth`] is the writer's state for `/healthz`: lines written, lost and overflowed,
//! the last error, whether writing fails now, and from those a `degraded` reason (see
//! [`RecordHealth::status`]).
//!
//! Reading it back: [`kind_of`] reads a line's `event` as a [`ResearchEventKind`], and
//! [`events_of`], [`position_of`] and [`event_names`] pick and name lines by it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, watch};

use serde::Deserialize as _;

use crate::core::research::ResearchEventKind;
use crate::core::ResearchEvent;

/// The record file's name inside each scene's folder.
pub const RECORD_FILE: &str = "events.jsonl";

/// Events the record queue holds before [`RecordHandle::send`] drops (and counts) more. At a
/// few hundred bytes a line this is a few MB, minutes of a busy server's events.
pub const RECORD_QUEUE: usize = 16_384;

/// Longest time a written line waits for its `fdatasync`.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// How long [`RecordWriter::close`] waits for the writer to write what is queued and sync.
pub const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// How often a failure that goes on (a full disk, a full queue) is logged again.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How long `/healthz` says `degraded` after the last queue overflow.
pub const OVERFLOW_HOLD: Duration = Duration::from_secs(10);

/// How long the writer sleeps with nothing to do before it looks at its counters again.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// What the writer's queue carries. One pointer wide, so the queue's slots (allocated up
/// front) take little memory.
enum Command {
    Write(Box<Entry>),
    Flush(oneshot::Sender<()>),
    Close,
}

/// One event to write.
struct Entry {
    at: SystemTime,
    scene_id: String,
    event: ResearchEvent,
}

// ---------------------------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------------------------

/// The record writer's health, shared with `/healthz`: counters since the server started, the
/// last error, and whether writing fails now. Updated by the writer thread and by
/// [`RecordHandle::send`] (overflows); read with [`RecordHealth::status`].
#[derive(Debug, Default)]
pub struct RecordHealth {
    lines_written: AtomicU64,
    lines_lost: AtomicU64,
    queue_overflows: AtomicU64,
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    last_overflow: Mutex<Option<Instant>>,
}

/// A snapshot of [`RecordHealth`], as `/healthz` shows it under `"record"`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordStatus {
    /// Lines written (complete, not rolled back) since the server started.
    pub lines_written: u64,
    /// Events whose line is not in the record: a failed write (rolled back), a scene id that is
    /// not a safe folder name, or an event sent after the writer stopped.
    pub lines_lost: u64,
    /// Events dropped because the record queue was full.
    pub queue_overflows: u64,
    /// Whether the last write (or sync) of some scene's record failed and no write to that
    /// record has succeeded since.
    pub writing_fails: bool,
    /// The last write, sync or open error, with the file's path; `null` if there was none.
    pub last_error: Option<String>,
    /// Why the record is degraded, `null` when it is not: writing fails now, or the queue
    /// overflowed less than [`OVERFLOW_HOLD`] ago.
    #[serde(skip)]
    pub degraded: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecordHealth {
    /// The state at `now`. `degraded` is set while writing fails (it clears with the first
    /// line written again; the lost lines stay counted), and for [`OVERFLOW_HOLD`] after the
    /// last queue overflow (an overflow has no "works again" moment of its own).
    pub fn status(&self, now: Instant) -> RecordStatus {
        let lines_lost = self.lines_lost.load(Ordering::Relaxed);
        let queue_overflows = self.queue_overflows.load(Ordering::Relaxed);
        let writing_fails = self.failing.load(Ordering::Relaxed);
        let last_error = lock(&self.last_error).clone();
        let overflow_ago = lock(&self.last_overflow).map(|t| now.saturating_duration_since(t));
        let degraded = if writing_fails {
            Some(format!(
                "the research record cannot be written ({}); {lines_lost} line(s) lost so far",
                last_error.as_deref().unwrap_or("unknown error")
            ))
        } else {
            overflow_ago.filter(|ago| *ago < OVERFLOW_HOLD).map(|ago| {
                format!(
                    "the research record queue overflowed {:.1} s ago; {queue_overflows} event(s) dropped so far",
                    ago.as_secs_f64()
                )
            })
        };
        RecordStatus {
            lines_written: self.lines_written.load(Ordering::Relaxed),
            lines_lost,
            queue_overflows,
            writing_fails,
            last_error,
            degraded,
        }
    }

    fn note_overflow(&self) {
        self.queue_overflows.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_overflow) = Some(Instant::now());
    }

    fn note_lost(&self) {
        self.lines_lost.fetch_add(1, Ordering::Relaxed);
    }

    fn note_error(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }
}

// ---------------------------------------------------------------------------------------------
// Handle and writer
// ---------------------------------------------------------------------------------------------

/// Queues events for the record writer. Clone it freely; sending never blocks (the core never
/// waits for the disk) and never fails: an event that cannot be queued is counted (and logged
/// by the writer) as a queue overflow, one sent after the writer stopped is logged as lost.
#[derive(Clone)]
pub struct RecordHandle {
    tx: SyncSender<Command>,
    health: Arc<RecordHealth>,
    /// How many commands the writer has taken off the queue; control commands that find the
    /// queue full wait for it to move.
    taken: watch::Receiver<u64>,
}

impl RecordHandle {
    /// Queues one event for `<data-dir>/<scene_id>/events.jsonl`, stamped with the current
    /// wall-clock time.
    pub fn send(&self, scene_id: impl Into<String>, event: ResearchEvent) {
        let cmd = Command::Write(Box::new(Entry {
            at: SystemTime::now(),
            scene_id: scene_id.into(),
            event,
        }));
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.health.note_overflow(),
            Err(TrySendError::Disconnected(Command::Write(entry))) => {
                self.health.note_lost();
                let Entry {
                    scene_id, event, ..
                } = *entry;
                tracing::error!(%scene_id, ?event, "research record writer has stopped; event lost");
            }
            Err(TrySendError::Disconnected(_)) => self.health.note_lost(),
        }
    }

    /// Waits until every event queued before this call has been written to the operating
    /// system (or failed, counted and logged). Returns at once if the writer has stopped.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control(Command::Flush(tx)).await {
            let _ = rx.await;
        }
    }

    /// Queues a control command behind the events, waiting for room; `false` when the writer
    /// has stopped.
    async fn control(&self, mut cmd: Command) -> bool {
        let mut taken = self.taken.clone();
        loop {
            taken.borrow_and_update();
            match self.tx.try_send(cmd) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) => {
                    cmd = back;
                    if taken.changed().await.is_err() {
                        return false;
                    }
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
    }
}

/// The record writer thread. [`RecordWriter::close`] waits (at most [`CLOSE_LIMIT`]) until
/// everything queued is written and synced.
pub struct RecordWriter {
    handle: RecordHandle,
    done: oneshot::Receiver<()>,
}

impl RecordWriter {
    /// Starts the writer thread for records under `data_dir` (each scene's folder is created on
    /// its first event).
    pub fn spawn(data_dir: impl Into<PathBuf>) -> Self {
        Self::spawn_observed(data_dir, None)
    }

    /// [`RecordWriter::spawn`], and the writer thread calls `on_written` with each line it has
    /// written (after the write succeeded, in record order; the `/metrics` counters).
    pub fn spawn_observed(data_dir: impl Into<PathBuf>, on_written: Option<OnWritten>) -> Self {
        let storage = Box::new(FsStorage {
            data_dir: data_dir.into(),
        });
        Self::spawn_with(storage, RECORD_QUEUE, on_written)
    }

    /// Starts the writer on `storage` with a queue of `capacity` events.
    #[cfg(test)]
    fn spawn_on(storage: Box<dyn Storage>, capacity: usize) -> Self {
        Self::spawn_with(storage, capacity, None)
    }

    fn spawn_with(
        storage: Box<dyn Storage>,
        capacity: usize,
        on_written: Option<OnWritten>,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let health = Arc::new(RecordHealth::default());
        let (taken_tx, taken) = watch::channel(0);
        let (done_tx, done) = oneshot::channel();
        let writer = Writer {
            storage,
            files: HashMap::new(),
            failing: HashMap::new(),
            health: health.clone(),
            taken: taken_tx,
            unsynced_since: None,
            overflows_logged: 0,
            overflow_logged_at: None,
            on_written,
        };
        let started = std::thread::Builder::new()
            .name("pairlab-record".into())
            .spawn(move || {
                writer.run(&rx);
                let _ = done_tx.send(());
            });
        if let Err(e) = started {
            // The queue's receiver is gone with the closure: every event is counted as lost.
            tracing::error!("research record: cannot start the writer thread: {e}");
            health.failing.store(true, Ordering::Relaxed);
            health.note_error(format!("cannot start the writer thread: {e}"));
        }
        RecordWriter {
            handle: RecordHandle { tx, health, taken },
            done,
        }
    }

    /// A handle to queue events with.
    pub fn handle(&self) -> RecordHandle {
        self.handle.clone()
    }

    /// The writer's health, for `/healthz`.
    pub fn health(&self) -> Arc<RecordHealth> {
        self.handle.health.clone()
    }

    /// Stops the writer once every event queued so far (by any handle) is written and the files
    /// synced, waiting at most [`CLOSE_LIMIT`]; after that it logs an ERROR and returns (the
    /// thread is left to the process's exit). Events sent through a handle after this are
    /// logged as lost.
    pub async fn close(self) {
        self.close_within(CLOSE_LIMIT).await;
    }

    async fn close_within(self, limit: Duration) {
        let RecordWriter { handle, done } = self;
        let finished = async {
            handle.control(Command::Close).await;
            let _ = done.await;
        };
        if tokio::time::timeout(limit, finished).await.is_err() {
            tracing::error!(
                "research record: the writer did not finish within {limit:?} (is the disk hung?); \
                 events still queued or lines not yet synced may be missing"
            );
        }
    }
}

/// What the writer thread calls with each line it has written: the scene id and the event.
pub type OnWritten = Box<dyn Fn(&str, &ResearchEvent) + Send>;

/// Formats one record line (without the trailing newline).
///
/// `{"ts":…,"event":…,"scene_id":…,…fields}`, in that order, so the file reads well with
/// `tail -f`.
pub fn format_line(at: SystemTime, scene_id: &str, event: &ResearchEvent) -> String {
    let ts = humantime::format_rfc3339_millis(at).to_string();
    let body = match serde_json::to_string(event) {
        Ok(body) => body,
        Err(e) => {
            // Cannot happen for the derived, string-keyed ResearchEvent; keep the line valid.
            tracing::error!("research event does not serialize: {e}");
            format!(
                "{{\"event\":\"unserializable\",\"error\":{}}}",
                json_str(&e.to_string())
            )
        }
    };
    let ts = json_str(&ts);
    let scene = json_str(scene_id);
    // An internally tagged enum writes its tag first: `{"event":"name"` then `,…` or `}`.
    const TAG: &str = "{\"event\":\"";
    if let Some(after) = body.strip_prefix(TAG) {
        if let Some(end) = after.find('"') {
            let name = &after[..end];
            let rest = &after[end + 1..];
            return format!("{{\"ts\":{ts},\"event\":\"{name}\",\"scene_id\":{scene}{rest}");
        }
    }
    // Any other shape: ts and scene_id first, then the event's own fields.
    let rest = body.strip_prefix('{').unwrap_or("}");
    let sep = if rest.starts_with('}') { "" } else { "," };
    format!("{{\"ts\":{ts},\"scene_id\":{scene}{sep}{rest}")
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Whether a scene id is safe as one folder name (config validation guarantees it; this is
/// the writer's own guard against path traversal).
fn safe_folder(scene_id: &str) -> bool {
    !scene_id.is_empty()
        && scene_id != "."
        && scene_id != ".."
        && scene_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// The file operations the writer needs on one open record: [`File`] in the server, an
/// in-memory disk that fills up in the unit tests.
trait RecordFile: Send {
    /// Appends `bytes` at the end of the file. On an error, a prefix of them may have been
    /// written (as with [`Write::write_all`]).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Waits until the file's data is on the disk (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// An opened record file and its lengths.
struct Opened {
    file: Box<dyn RecordFile>,
    /// The file's length, bytes.
    len: u64,
    /// The length up to and including its last newline, bytes (`len` when it ends with one or
    /// is empty).
    complete_len: u64,
}

/// Where the records live: the data directory in the server.
trait Storage: Send {
    /// Opens (creating it and its folder) the record of `scene_id` for appending.
    fn open(&mut self, scene_id: &str) -> io::Result<Opened>;
    /// The record's path, for logs.
    fn path(&self, scene_id: &str) -> String;
}

/// `<data_dir>/<scene_id>/events.jsonl` on the file system.
struct FsStorage {
    data_dir: PathBuf,
}

impl Storage for FsStorage {
    fn open(&mut self, scene_id: &str) -> io::Result<Opened> {
        let dir = self.data_dir.join(scene_id);
        std::fs::create_dir_all(&dir)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(dir.join(RECORD_FILE))?;
        let len = file.metadata()?.len();
        let complete_len = complete_len(&mut file, len)?;
        Ok(Opened {
            file: Box::new(file),
            len,
            complete_len,
        })
    }

    fn path(&self, scene_id: &str) -> String {
        self.data_dir
            .join(scene_id)
            .join(RECORD_FILE)
            .display()
            .to_string()
    }
}

impl RecordFile for File {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Opened with O_APPEND: every write goes to the current end.
        self.write_all(bytes)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// The length of `file` (`len` bytes) up to and including its last newline; 0 if it has none.
fn complete_len(file: &mut File, len: u64) -> io::Result<u64> {
    let mut buf = [0u8; 8192];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        // At most 8192: fits a usize.
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// One scene's open record.
struct SceneRecord {
    file: Box<dyn RecordFile>,
    /// The file's length after its last complete line, bytes: where a failed write is rolled
    /// back to.
    complete_len: u64,
    /// Lines written since the last sync.
    unsynced_lines: u64,
}

/// A scene whose record cannot be written at the moment.
struct Failing {
    /// When the first failure of this run of failures happened.
    since: Instant,
    /// Lines lost since then.
    lost: u64,
    /// The last error.
    error: String,
    /// When it was last logged.
    logged_at: Instant,
}

/// The state of the writer thread.
struct Writer {
    storage: Box<dyn Storage>,
    files: HashMap<String, SceneRecord>,
    failing: HashMap<String, Failing>,
    health: Arc<RecordHealth>,
    taken: watch::Sender<u64>,
    /// When the oldest line not yet synced was written.
    unsynced_since: Option<Instant>,
    /// The overflow count last logged.
    overflows_logged: u64,
    /// When overflows were last logged.
    overflow_logged_at: Option<Instant>,
    /// Told of each line written.
    on_written: Option<OnWritten>,
}

impl Writer {
    fn run(mut self, rx: &Receiver<Command>) {
        loop {
            let wait = self.unsynced_since.map_or(IDLE_WAKE, |t| {
                (t + SYNC_INTERVAL).saturating_duration_since(Instant::now())
            });
            match rx.recv_timeout(wait) {
                Ok(Command::Close) => {
                    // Write what is queued, then stop; later events find the queue closed.
                    while let Ok(cmd) = rx.try_recv() {
                        self.take(cmd);
                    }
                    break;
                }
                Ok(cmd) => self.take(cmd),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.upkeep(Instant::now());
        }
        self.sync_all();
        self.report_overflows(Instant::now(), true);
        for (scene_id, f) in &self.failing {
            tracing::error!(
                path = %self.storage.path(scene_id),
                "research record: still failing at shutdown ({}); {} line(s) lost since it began failing",
                f.error,
                f.lost
            );
        }
    }

    /// Carries out one command taken off the queue.
    fn take(&mut self, cmd: Command) {
        match cmd {
            Command::Write(entry) => self.write(entry.at, &entry.scene_id, &entry.event),
            Command::Flush(done) => {
                let _ = done.send(());
            }
            Command::Close => {}
        }
        self.taken.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Syncs when a line has waited [`SYNC_INTERVAL`]; logs overflows and failures that go on.
    fn upkeep(&mut self, now: Instant) {
        if self
            .unsynced_since
            .is_some_and(|t| now.saturating_duration_since(t) >= SYNC_INTERVAL)
        {
            self.sync_all();
        }
        self.report_overflows(now, false);
        for (scene_id, f) in &mut self.failing {
            if now.saturating_duration_since(f.logged_at) >= LOG_INTERVAL {
                f.logged_at = now;
                tracing::error!(
                    path = %self.storage.path(scene_id),
                    "research record: still cannot write ({}); {} line(s) lost in the last {:.0} s",
                    f.error,
                    f.lost,
                    now.saturating_duration_since(f.since).as_secs_f64()
                );
            }
        }
    }

    /// Logs queue overflows not logged yet: the first at once, then at most every
    /// [`LOG_INTERVAL`] (`now`: at any time, at shutdown).
    fn report_overflows(&mut self, now: Instant, force: bool) {
        let total = self.health.queue_overflows.load(Ordering::Relaxed);
        let due = self
            .overflow_logged_at
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_INTERVAL);
        if total > self.overflows_logged && (due || force) {
            tracing::error!(
                "research record: the queue was full ({RECORD_QUEUE} events); {} event(s) dropped since the last report, {total} in all",
                total - self.overflows_logged
            );
            self.overflows_logged = total;
            self.overflow_logged_at = Some(now);
        }
    }

    /// Writes one event's line, or counts it as lost.
    fn write(&mut self, at: SystemTime, scene_id: &str, event: &ResearchEvent) {
        if !safe_folder(scene_id) {
            self.health.note_lost();
            tracing::error!(%scene_id, "research record: scene id is not a safe folder name; event lost");
            return;
        }
        let mut line = format_line(at, scene_id, event);
        line.push('\n');
        match self.append(scene_id, line.as_bytes()) {
            Ok(()) => {
                self.health.lines_written.fetch_add(1, Ordering::Relaxed);
                if let Some(on_written) = &self.on_written {
                    on_written(scene_id, event);
                }
                self.unsynced_since.get_or_insert_with(Instant::now);
                if let Some(f) = self.failing.remove(scene_id) {
                    tracing::error!(
                        path = %self.storage.path(scene_id),
                        "research record: writing works again; {} line(s) were lost in the {:.0} s it failed",
                        f.lost,
                        f.since.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) => self.lost(scene_id, e),
        }
        self.health
            .failing
            .store(!self.failing.is_empty(), Ordering::Relaxed);
    }

    /// A line of `scene_id` is lost through `error`: counted, and logged if it is the first
    /// failure in a row.
    fn lost(&mut self, scene_id: &str, error: io::Error) {
        self.health.note_lost();
        let path = self.storage.path(scene_id);
        self.health.note_error(format!("{path}: {error}"));
        let now = Instant::now();
        match self.failing.get_mut(scene_id) {
            Some(f) => {
                f.lost += 1;
                f.error = error.to_string();
            }
            None => {
                tracing::error!(
                    %path,
                    "research record: cannot write ({error}); the line is lost and the file kept at its last complete line; lost so far: {}",
                    self.health.lines_lost.load(Ordering::Relaxed)
                );
                self.failing.insert(
                    scene_id.to_owned(),
                    Failing {
                        since: now,
                        lost: 1,
                        error: error.to_string(),
                        logged_at: now,
                    },
                );
            }
        }
    }

    /// Appends one complete line to the record of `scene_id`, opening it first if needed; a
    /// failed write is rolled back to the last complete line.
    fn append(&mut self, scene_id: &str, line: &[u8]) -> io::Result<()> {
        if !self.files.contains_key(scene_id) {
            let record = self.open(scene_id)?;
            self.files.insert(scene_id.to_owned(), record);
        }
        let Some(record) = self.files.get_mut(scene_id) else {
            return Err(io::Error::other("record file not open"));
        };
        match record.file.append(line) {
            Ok(()) => {
                record.complete_len += line.len() as u64;
                record.unsynced_lines += 1;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = record.file.set_len(record.complete_len) {
                    // The file's end is unknown now: reopen (and cut) on the next event.
                    tracing::error!(
                        path = %self.storage.path(scene_id),
                        "research record: cannot roll a failed write back ({cut}); the file is reopened and repaired on the next event"
                    );
                    self.files.remove(scene_id);
                }
                Err(e)
            }
        }
    }

    /// Opens the record of `scene_id` and cuts off a torn last line.
    fn open(&mut self, scene_id: &str) -> io::Result<SceneRecord> {
        let Opened {
            mut file,
            len,
            complete_len,
        } = self.storage.open(scene_id)?;
        if complete_len < len {
            file.set_len(complete_len)?;
            tracing::warn!(
                path = %self.storage.path(scene_id),
                "research record: cut off a torn last line ({} bytes) left by a crash or a failed write",
                len - complete_len
            );
        }
        Ok(SceneRecord {
            file,
            complete_len,
            unsynced_lines: 0,
        })
    }

    /// Syncs every file with lines written since its last sync. A failed sync is logged at
    /// ERROR with the lines that may not be on disk, and the file is reopened on its next
    /// event.
    fn sync_all(&mut self) {
        self.unsynced_since = None;
        let mut broken = Vec::new();
        for (scene_id, record) in &mut self.files {
            if record.unsynced_lines == 0 {
                continue;
            }
            match record.file.sync_data() {
                Ok(()) => record.unsynced_lines = 0,
                Err(e) => {
                    let path = self.storage.path(scene_id);
                    tracing::error!(
                        %path,
                        "research record: sync failed ({e}); the last {} line(s) may not be on disk",
                        record.unsynced_lines
                    );
                    self.health.note_error(format!("{path}: sync: {e}"));
                    broken.push((scene_id.clone(), e.to_string()));
                }
            }
        }
        for (scene_id, error) in broken {
            self.files.remove(&scene_id);
            let now = Instant::now();
            self.failing.entry(scene_id).or_insert(Failing {
                since: now,
                lost: 0,
                error,
                logged_at: now,
            });
        }
        self.health
            .failing
            .store(!self.failing.is_empty(), Ordering::Relaxed);
    }
}

/// The kind of a record line (its `event`) as [`ResearchEventKind`], `None` when it has none
/// the server writes. Readers of the record (the server's integration tests, the end-to-end
/// harness) match lines by kind instead of by name strings, so a renamed event fails to compile
/// instead of silently matching nothing.
pub fn kind_of(line: &serde_json::Value) -> Option<ResearchEventKind> {
    ResearchEventKind::deserialize(line.get("event")?).ok()
}

/// The `event` of each record line, in order, as written (`?` for a line without one): for
/// messages. Match lines with [`events_of`] and [`position_of`].
pub fn event_names(lines: &[serde_json::Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|e| {
            e.get("event")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?")
        })
        .collect()
}

/// The record lines of `kind`, in order.
pub fn events_of(lines: &[serde_json::Value], kind: ResearchEventKind) -> Vec<&serde_json::Value> {
    lines.iter().filter(|e| kind_of(e) == Some(kind)).collect()
}

/// The index of the first record line of `kind`, `None` when there is none.
pub fn position_of(lines: &[serde_json::Value], kind: ResearchEventKind) -> Option<usize> {
    lines.iter().position(|e| kind_of(e) == Some(kind))
}

#[cfg(test)]
mod tests;
