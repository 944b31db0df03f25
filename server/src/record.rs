//! The research record: every decision the server makes, as one JSON object per line of
//! `<data-dir>/<scene_id>/events.jsonl`.
//!
//! One tokio task owns the files. Everything else talks to it through a [`RecordHandle`]
//! (cheap to clone, never blocks, never fails): [`RecordHandle::send`] stamps the event with the
//! wall-clock time and queues it. The task appends each line and flushes it to the operating
//! system before taking the next, so a crash of the server loses nothing already written and a
//! researcher can `tail -f` the file during a session.
//!
//! A line reads
//! `{"ts":"2026-11-22T01:16:43.123Z","event":"probe_result","scene_id":"s1",…the event's fields}`:
//! `ts` is RFC 3339 UTC with milliseconds (`humantime::format_rfc3339_millis`), `event` and the
//! fields come from [`ResearchEvent`]'s serde form. Load it with pandas:
//! `pd.read_json("data/s1/events.jsonl", lines=True)`.
//!
//! Reading it back: [`kind_of`] reads a line's `event` as a [`ResearchEventKind`], and
//! [`events_of`], [`position_of`] and [`event_names`] pick and name lines by it.
//!
//! A write that fails (disk full, permissions) is logged through `tracing` and the server goes
//! on; the file is reopened for the next event.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use serde::Deserialize as _;

use crate::core::research::ResearchEventKind;
use crate::core::ResearchEvent;

/// The record file's name inside each scene's folder.
pub const RECORD_FILE: &str = "events.jsonl";

enum Command {
    Write {
        at: SystemTime,
        scene_id: String,
        event: Box<ResearchEvent>,
    },
    Flush(oneshot::Sender<()>),
    Close,
}

/// Queues events for the record writer. Clone it freely; sending never blocks (the queue is
/// unbounded, so the core never waits for the disk) and never fails (after the writer stopped,
/// an event is logged as lost).
#[derive(Clone)]
pub struct RecordHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl RecordHandle {
    /// Queues one event for `<data-dir>/<scene_id>/events.jsonl`, stamped with the current
    /// wall-clock time.
    pub fn send(&self, scene_id: impl Into<String>, event: ResearchEvent) {
        let cmd = Command::Write {
            at: SystemTime::now(),
            scene_id: scene_id.into(),
            event: Box::new(event),
        };
        if let Err(mpsc::error::SendError(Command::Write {
            scene_id, event, ..
        })) = self.tx.send(cmd)
        {
            tracing::error!(%scene_id, ?event, "research record writer has stopped; event lost");
        }
    }

    /// Waits until every event queued before this call has been written and flushed (or
    /// failed and been logged). Returns at once if the writer has stopped.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The record writer task. [`RecordWriter::close`] waits until everything queued is on disk.
pub struct RecordWriter {
    handle: RecordHandle,
    task: JoinHandle<()>,
}

impl RecordWriter {
    /// Starts the writer task for records under `data_dir` (created on the first event).
    /// Must be called inside a tokio runtime.
    pub fn spawn(data_dir: impl Into<PathBuf>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(data_dir.into(), rx));
        RecordWriter {
            handle: RecordHandle { tx },
            task,
        }
    }

    /// A handle to queue events with.
    pub fn handle(&self) -> RecordHandle {
        self.handle.clone()
    }

    /// Stops the writer once every event queued so far (by any handle) is written, synced to
    /// disk, and the files closed. Events sent through a handle after this are logged as lost.
    pub async fn close(self) {
        let _ = self.handle.tx.send(Command::Close);
        drop(self.handle);
        if let Err(e) = self.task.await {
            tracing::error!("research record writer panicked: {e}");
        }
    }
}

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

struct Files {
    data_dir: PathBuf,
    open: HashMap<String, File>,
    /// Scenes whose last write failed: the next failure is not logged again, a success is.
    failing: HashMap<String, bool>,
}

impl Files {
    async fn write(&mut self, at: SystemTime, scene_id: String, event: &ResearchEvent) {
        if !safe_folder(&scene_id) {
            tracing::error!(%scene_id, "research record: scene id is not a safe folder name; event dropped");
            return;
        }
        let mut line = format_line(at, &scene_id, event);
        line.push('\n');
        match self.append(&scene_id, line.as_bytes()).await {
            Ok(()) => {
                if self.failing.remove(&scene_id).is_some() {
                    tracing::info!(%scene_id, "research record: writing works again");
                }
            }
            Err(e) => {
                // Reopen on the next event (the folder may have been fixed or space freed).
                self.open.remove(&scene_id);
                let path = self.data_dir.join(&scene_id).join(RECORD_FILE);
                if self.failing.insert(scene_id.clone(), true).is_none() {
                    tracing::error!(
                        path = %path.display(),
                        "research record: cannot write: {e}; this line is lost: {}",
                        line.trim_end()
                    );
                } else {
                    tracing::debug!(path = %path.display(), "research record still failing: {e}");
                }
            }
        }
    }

    async fn append(&mut self, scene_id: &str, bytes: &[u8]) -> std::io::Result<()> {
        if !self.open.contains_key(scene_id) {
            let file = open_record(&self.data_dir, scene_id).await?;
            self.open.insert(scene_id.to_owned(), file);
        }
        let Some(file) = self.open.get_mut(scene_id) else {
            return Err(std::io::Error::other("record file not open"));
        };
        file.write_all(bytes).await?;
        file.flush().await
    }

    async fn close(mut self) {
        for (scene_id, mut file) in self.open.drain() {
            if let Err(e) = file.flush().await {
                tracing::error!(%scene_id, "research record: flush at shutdown failed: {e}");
            }
            if let Err(e) = file.sync_all().await {
                tracing::warn!(%scene_id, "research record: sync at shutdown failed: {e}");
            }
        }
    }
}

async fn open_record(data_dir: &Path, scene_id: &str) -> std::io::Result<File> {
    let dir = data_dir.join(scene_id);
    tokio::fs::create_dir_all(&dir).await?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(RECORD_FILE))
        .await
}

async fn run(data_dir: PathBuf, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut files = Files {
        data_dir,
        open: HashMap::new(),
        failing: HashMap::new(),
    };
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Write {
                at,
                scene_id,
                event,
            } => files.write(at, scene_id, &event).await,
            Command::Flush(done) => {
                let _ = done.send(());
            }
            Command::Close => {
                // Refuse new events, but write the ones already queued.
                rx.close();
            }
        }
    }
    files.close().await;
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
mod tests {
    use super::*;
    use crate::core::research::LeaveReason;
    use pairlab_shared::SubjectId;
    use std::time::{Duration, UNIX_EPOCH};

    fn sid(s: &str) -> SubjectId {
        SubjectId::parse(s).unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pairlab-record-{name}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn line_shape_and_order() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let line = format_line(
            at,
            "s1",
            &ResearchEvent::ParticipantJoined {
                subject_id: sid("p1"),
                resumed: false,
            },
        );
        assert_eq!(
            line,
            r#"{"ts":"2026-11-18T11:06:40.123Z","event":"participant_joined","scene_id":"s1","subject_id":"p1","resumed":false}"#
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "participant_joined");
    }

    #[tokio::test]
    async fn appends_one_flushed_line_per_event() {
        let dir = temp_dir("append");
        let writer = RecordWriter::spawn(&dir);
        let h = writer.handle();
        h.send(
            "s1",
            ResearchEvent::ServerRtt {
                subject_id: sid("a"),
                median_ms: 2.5,
                samples_ms: vec![2.0, 2.5, 3.0],
            },
        );
        h.send(
            "s2",
            ResearchEvent::ParticipantLeft {
                subject_id: sid("b"),
                reason: LeaveReason::Leave,
            },
        );
        h.flush().await;
        // Visible before shutdown: flushed per event.
        let s1 = std::fs::read_to_string(dir.join("s1").join(RECORD_FILE)).unwrap();
        let lines: Vec<&str> = s1.lines().collect();
        assert_eq!(lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["event"], "server_rtt");
        assert_eq!(v["scene_id"], "s1");
        assert_eq!(v["median_ms"], 2.5);
        assert_eq!(v["samples_ms"], serde_json::json!([2.0, 2.5, 3.0]));
        let ts = v["ts"].as_str().unwrap();
        assert!(
            ts.ends_with('Z') && ts.len() == "2026-11-22T01:16:43.123Z".len(),
            "{ts}"
        );
        assert!(humantime::parse_rfc3339(ts).is_ok());

        let s2 = std::fs::read_to_string(dir.join("s2").join(RECORD_FILE)).unwrap();
        assert!(s2.contains(r#""event":"participant_left""#), "{s2}");
        assert!(s2.contains(r#""reason":"leave""#), "{s2}");

        // Appends across writers (a restarted server keeps the old lines).
        for _ in 0..3 {
            h.send(
                "s1",
                ResearchEvent::ParticipantJoined {
                    subject_id: sid("c"),
                    resumed: true,
                },
            );
        }
        drop(h);
        writer.close().await;
        let writer = RecordWriter::spawn(&dir);
        writer.handle().send(
            "s1",
            ResearchEvent::ParticipantJoined {
                subject_id: sid("d"),
                resumed: false,
            },
        );
        writer.close().await;
        let s1 = std::fs::read_to_string(dir.join("s1").join(RECORD_FILE)).unwrap();
        assert_eq!(s1.lines().count(), 5, "{s1}");
        assert!(s1.ends_with('\n'));
        for l in s1.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn write_errors_are_logged_not_fatal() {
        // The data dir is a file: no folder can be created under it.
        let dir = temp_dir("error");
        std::fs::write(&dir, b"not a folder").unwrap();
        let writer = RecordWriter::spawn(&dir);
        let h = writer.handle();
        h.send(
            "s1",
            ResearchEvent::ParticipantJoined {
                subject_id: sid("a"),
                resumed: false,
            },
        );
        // An unsafe scene id is refused, not written outside the data dir.
        h.send(
            "../escape",
            ResearchEvent::ParticipantJoined {
                subject_id: sid("a"),
                resumed: false,
            },
        );
        h.flush().await;
        assert!(
            !writer.task.is_finished(),
            "the writer goes on after errors"
        );
        // Fix the problem: the next event is written.
        std::fs::remove_file(&dir).unwrap();
        h.send(
            "s1",
            ResearchEvent::ParticipantJoined {
                subject_id: sid("b"),
                resumed: false,
            },
        );
        h.flush().await;
        let s1 = std::fs::read_to_string(dir.join("s1").join(RECORD_FILE)).unwrap();
        assert_eq!(s1.lines().count(), 1);
        assert!(s1.contains(r#""subject_id":"b""#));
        assert!(!std::env::temp_dir()
            .join("escape")
            .join(RECORD_FILE)
            .exists());
        drop(h);
        writer.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
