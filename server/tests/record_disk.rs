//! The research record on a full disk, with the real server: the data directory is a tiny
//! tmpfs (needs root or CAP_SYS_ADMIN; the test says so and passes without running when the
//! mount is refused). Filling the disk makes `/healthz` say `degraded` with the reason and the
//! lost lines; freeing it makes it say `ok` again; and every line of `events.jsonl` parses: a
//! write cut short by the full disk leaves no torn line.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use pairlab_server::record::kind_of;

const CONFIG: &str = r#"
[[scene]]
id = "s"
group_size = 2
matchmaker = "fifo"
"#;

/// A tmpfs mounted on a folder, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = [b'x'; 4096];
    loop {
        if let Err(e) = file.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
            return path;
        }
    }
}

async fn healthz(server: &TestServer) -> serde_json::Value {
    let (status, _, body) = server.get("/healthz").await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).expect("JSON")
}

#[tokio::test]
async fn a_full_disk_degrades_health_tears_no_line_and_recovers() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let _tmpfs = match Tmpfs::mount(data_dir.path(), "256k") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs for the data dir ({why})");
            return;
        }
    };
    let mut server = TestServer::with_data_dir(CONFIG, data_dir).await;
    server
        .wait_for_event("s", ResearchEventKind::ServerStarted)
        .await;
    let v = healthz(&server).await;
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["record"]["lines_lost"], 0, "{v}");

    // The disk fills up; the record's last page still has room for a few lines, then a line
    // is cut short by ENOSPC.
    let filler = fill(server.data_dir.path());
    let mut clients = Vec::new();
    let mut degraded = None;
    for n in 0..200 {
        let (c, _) = server.join(&format!("p{n}"), "s").await;
        clients.push(c);
        let v = healthz(&server).await;
        if v["status"] == "degraded" {
            degraded = Some(v);
            break;
        }
    }
    let v = degraded.expect("/healthz says degraded once the disk is full");
    let reason = v["reason"].as_str().expect("a reason");
    assert!(reason.contains("cannot be written"), "{reason}");
    assert_eq!(v["record"]["writing_fails"], true, "{v}");
    let lost = v["record"]["lines_lost"].as_u64().expect("lines_lost");
    assert!(lost >= 1, "{v}");
    // The server goes on serving while the record fails.
    let (mut extra, _) = server.join("extra", "s").await;
    extra.expect_open().await;

    // Space again: the next event is written and the health recovers.
    std::fs::remove_file(&filler).expect("free the disk");
    let (late, _) = server.join("late", "s").await;
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    let v = loop {
        let v = healthz(&server).await;
        if v["status"] == "ok" {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still degraded: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(v["record"]["writing_fails"], false, "{v}");
    assert!(v["record"]["lines_lost"].as_u64() >= Some(lost), "{v}");
    assert!(v.get("reason").is_none(), "{v}");

    drop((clients, extra, late));
    server.stop().await;
    let text = std::fs::read_to_string(server.record_path("s")).expect("record");
    assert!(text.ends_with('\n'), "the record ends with a complete line");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("torn line {line:?}: {e}"));
    }
    let events = server.events("s");
    assert!(
        events.iter().any(|e| e["subject_id"] == "late"),
        "written again after the disk was freed"
    );
    assert_eq!(
        events.last().and_then(kind_of),
        Some(ResearchEventKind::ParticipantLeft),
        "the shutdown's lines are written too"
    );
}
