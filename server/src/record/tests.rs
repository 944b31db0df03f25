//! The record writer's unit tests: whole lines, roll-back of a failed write, the lost and
//! overflow counts, sync and close, health, reading lines back.

use super::*;
use crate::core::research::LeaveReason;
use pairlab_shared::SubjectId;
use std::sync::Condvar;
use std::time::UNIX_EPOCH;

fn sid(s: &str) -> SubjectId {
    SubjectId::parse(s).unwrap()
}

fn joined(subject: &str) -> ResearchEvent {
    ResearchEvent::ParticipantJoined {
        subject_id: sid(subject),
        resumed: false,
        recruiter: None,
    }
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

/// An in-memory disk with `free` bytes of room shared by its files. A write that does not
/// fit writes what fits and fails with `StorageFull`, as a full file system does; while
/// `hung`, every write waits.
#[derive(Clone, Default)]
struct MemDisk(Arc<(Mutex<MemState>, Condvar)>);

#[derive(Default)]
struct MemState {
    files: HashMap<String, Vec<u8>>,
    free: usize,
    syncs: u64,
    hung: bool,
    /// Writes begun (counted before waiting while hung).
    attempts: u64,
}

impl MemDisk {
    fn with_free(free: usize) -> Self {
        let disk = MemDisk::default();
        disk.state().free = free;
        disk
    }
    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        lock(&self.0 .0)
    }
    fn text(&self, scene: &str) -> String {
        String::from_utf8(self.state().files.get(scene).cloned().unwrap_or_default())
            .expect("utf-8")
    }
    fn set_hung(&self, hung: bool) {
        self.state().hung = hung;
        self.0 .1.notify_all();
    }
}

struct MemFile {
    disk: MemDisk,
    scene: String,
}

impl Storage for MemDisk {
    fn open(&mut self, scene_id: &str) -> io::Result<Opened> {
        let mut state = self.state();
        let data = state.files.entry(scene_id.to_owned()).or_default();
        let len = data.len() as u64;
        let complete_len = data
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i as u64 + 1);
        Ok(Opened {
            file: Box::new(MemFile {
                disk: self.clone(),
                scene: scene_id.to_owned(),
            }),
            len,
            complete_len,
        })
    }
    fn path(&self, scene_id: &str) -> String {
        format!("mem:{scene_id}")
    }
}

impl RecordFile for MemFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (state, wake) = &*self.disk.0;
        let mut state = lock(state);
        state.attempts += 1;
        while state.hung {
            state = wake.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        let fits = bytes.len().min(state.free);
        state.free -= fits;
        state
            .files
            .entry(self.scene.clone())
            .or_default()
            .extend_from_slice(&bytes[..fits]);
        if fits < bytes.len() {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut state = self.disk.state();
        let data = state.files.entry(self.scene.clone()).or_default();
        let before = data.len();
        data.truncate(len as usize);
        let freed = before - data.len();
        state.free += freed;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.disk.state().syncs += 1;
        Ok(())
    }
}

fn parse_all(text: &str) -> Vec<serde_json::Value> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "torn end: {text:?}"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}")))
        .collect()
}

#[test]
fn line_shape_and_order() {
    let at = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
    let line = format_line(at, "s1", &joined("p1"));
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
    // Visible before shutdown: written to the OS per event.
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
                recruiter: None,
            },
        );
    }
    drop(h);
    writer.close().await;
    let writer = RecordWriter::spawn(&dir);
    writer.handle().send("s1", joined("d"));
    writer.close().await;
    let s1 = std::fs::read_to_string(dir.join("s1").join(RECORD_FILE)).unwrap();
    assert_eq!(s1.lines().count(), 5, "{s1}");
    assert_eq!(parse_all(&s1).len(), 5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn write_errors_are_counted_not_fatal() {
    // The data dir is a file: no folder can be created under it.
    let dir = temp_dir("error");
    std::fs::write(&dir, b"not a folder").unwrap();
    let writer = RecordWriter::spawn(&dir);
    let health = writer.health();
    let h = writer.handle();
    h.send("s1", joined("a"));
    // An unsafe scene id is refused, not written outside the data dir.
    h.send("../escape", joined("a"));
    h.flush().await;
    let status = health.status(Instant::now());
    assert_eq!((status.lines_written, status.lines_lost), (0, 2));
    assert!(
        status.writing_fails && status.degraded.is_some(),
        "{status:?}"
    );
    // Fix the problem: the next event is written, and the writer says so.
    std::fs::remove_file(&dir).unwrap();
    h.send("s1", joined("b"));
    h.flush().await;
    let s1 = std::fs::read_to_string(dir.join("s1").join(RECORD_FILE)).unwrap();
    assert_eq!(s1.lines().count(), 1);
    assert!(s1.contains(r#""subject_id":"b""#));
    assert!(!std::env::temp_dir()
        .join("escape")
        .join(RECORD_FILE)
        .exists());
    let status = health.status(Instant::now());
    assert_eq!((status.lines_written, status.lines_lost), (1, 2));
    assert!(
        !status.writing_fails && status.degraded.is_none(),
        "{status:?}"
    );
    assert!(status.last_error.is_some());
    drop(h);
    writer.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A disk that fills up mid-line: the torn part is rolled back, each failed line is counted
/// once, the health says why while it fails, and writing resumes when room is freed.
#[tokio::test]
async fn a_full_disk_loses_whole_lines_and_recovers() {
    let line_len = format_line(SystemTime::now(), "s", &joined("aaaa")).len() + 1;
    // Room for two lines and half of a third.
    let disk = MemDisk::with_free(2 * line_len + line_len / 2);
    let writer = RecordWriter::spawn_on(Box::new(disk.clone()), 64);
    let health = writer.health();
    let h = writer.handle();
    for n in 0..5 {
        h.send("s", joined(&format!("aaa{n}")));
    }
    h.flush().await;
    let lines = parse_all(&disk.text("s"));
    assert_eq!(lines.len(), 2, "two whole lines, no torn third");
    assert_eq!(lines[1]["subject_id"], "aaa1");
    let status = health.status(Instant::now());
    assert_eq!((status.lines_written, status.lines_lost), (2, 3));
    assert!(status.writing_fails);
    let reason = status.degraded.expect("degraded while writing fails");
    assert!(
        reason.contains("3 line(s) lost") && reason.contains("mem:s"),
        "{reason}"
    );
    // Room again: the next event is written after the last complete line.
    disk.state().free = 10 * line_len;
    h.send("s", joined("aaa5"));
    h.flush().await;
    let lines = parse_all(&disk.text("s"));
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["subject_id"], "aaa5");
    let status = health.status(Instant::now());
    assert_eq!((status.lines_written, status.lines_lost), (3, 3));
    assert!(
        !status.writing_fails && status.degraded.is_none(),
        "{status:?}"
    );
    drop(h);
    writer.close().await;
    assert!(disk.state().syncs >= 1, "synced at close");
}

#[tokio::test]
async fn a_torn_last_line_is_cut_off_when_opened() {
    let dir = temp_dir("torn");
    std::fs::create_dir_all(dir.join("s")).unwrap();
    let path = dir.join("s").join(RECORD_FILE);
    let good = format_line(SystemTime::now(), "s", &joined("a"));
    std::fs::write(&path, format!("{good}\n{{\"ts\":\"2026-")).unwrap();
    let writer = RecordWriter::spawn(&dir);
    writer.handle().send("s", joined("b"));
    writer.close().await;
    let lines = parse_all(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["subject_id"], "b");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Events beyond the queue's capacity are dropped and counted, never blocking the sender;
/// a hung disk does not hang `close`.
#[tokio::test]
async fn a_full_queue_is_counted_and_a_hung_disk_does_not_hang_close() {
    let disk = MemDisk::with_free(1 << 20);
    disk.set_hung(true);
    let writer = RecordWriter::spawn_on(Box::new(disk.clone()), 2);
    let health = writer.health();
    let h = writer.handle();
    h.send("s", joined("first"));
    // The writer takes the first event and hangs writing it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while disk.state().attempts == 0 {
        assert!(Instant::now() < deadline, "the writer took the first event");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Two more fit in the queue; eight do not.
    for n in 0..10 {
        h.send("s", joined(&format!("n{n}")));
    }
    let status = health.status(Instant::now());
    assert_eq!(status.queue_overflows, 8);
    let reason = status.degraded.expect("degraded after an overflow");
    assert!(
        reason.contains("overflowed") && reason.contains("8 event(s)"),
        "{reason}"
    );
    assert!(
        health
            .status(Instant::now() + OVERFLOW_HOLD)
            .degraded
            .is_none(),
        "the overflow's degraded status ends after OVERFLOW_HOLD"
    );
    let t0 = Instant::now();
    writer.close_within(Duration::from_millis(300)).await;
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // The disk comes back: the queued lines are written (and nothing torn).
    disk.set_hung(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while parse_all(&disk.text("s")).len() < 3 {
        assert!(Instant::now() < deadline, "{}", disk.text("s"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(h);
}

#[tokio::test]
async fn written_lines_are_synced_within_a_second() {
    let disk = MemDisk::with_free(1 << 20);
    let writer = RecordWriter::spawn_on(Box::new(disk.clone()), 64);
    let h = writer.handle();
    h.send("s", joined("a"));
    h.flush().await;
    assert_eq!(disk.state().syncs, 0);
    tokio::time::sleep(SYNC_INTERVAL + Duration::from_millis(300)).await;
    assert_eq!(
        disk.state().syncs,
        1,
        "one sync for the line, none while idle"
    );
    tokio::time::sleep(SYNC_INTERVAL).await;
    assert_eq!(disk.state().syncs, 1);
    drop(h);
    writer.close().await;
}
