//! `disk`: the research record on a disk that fills up and frees again. The data directory is
//! a `--size-kb` tmpfs (mounting one needs root or CAP_SYS_ADMIN; unmounted at the end). In
//! three phases of `--per-phase` participants each (ok, full, freed), participants join a scene
//! that never matches, one at a time, and `leave`; between the first two phases a file fills
//! the tmpfs up to ENOSPC, and it is removed before the third. `/healthz` is read after every
//! participant.
//!
//! Reported per phase: participants, `/healthz` status seen (ok / degraded) and `lines_lost`
//! at its end; then the record itself: every line parses (no torn line) and ends with a
//! newline, and the lines missing from it — each participant's lines counted against the
//! number every participant of the first phase has — equal `/healthz`'s `lines_lost`.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pairlab_tests::WorkDir;

use crate::client::{connect_scene, fmt_opt, leave};
use crate::hold::never_matched_scene;
use crate::server::{start_pairlab, PairlabExt};
use crate::system::{load_average, machine};
use crate::{LoadgenError, Result};

pub(crate) struct DiskArgs {
    pub(crate) bin: PathBuf,
    pub(crate) log: String,
    pub(crate) size_kb: u64,
    pub(crate) per_phase: usize,
}

/// A tmpfs mounted on a folder, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size_kb: u64) -> Result<Tmpfs> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kb}k"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| LoadgenError::Io {
                what: "run mount".into(),
                source: e,
            })?;
        if !out.status.success() {
            return Err(LoadgenError::Args(format!(
                "cannot mount a tmpfs on {} (needs root or CAP_SYS_ADMIN): {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file until ENOSPC; returns its path.
fn fill(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("filler");
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| LoadgenError::Io { what, source }
    };
    let mut file = std::fs::File::create(&path).map_err(io("create"))?;
    let chunk = [b'x'; 4096];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(path),
            Err(e) => return Err(io("write")(e)),
        }
    }
}

/// One phase's row.
struct Phase {
    name: &'static str,
    participants: usize,
    statuses: Vec<String>,
    lost_at_end: Option<u64>,
}

pub(crate) async fn disk(args: DiskArgs) -> Result<()> {
    let machine = machine();
    println!("{machine}");
    let work = WorkDir::fresh("loadgen-disk")?;
    let data = work.join("data");
    std::fs::create_dir_all(&data).map_err(|source| LoadgenError::Io {
        what: format!("create {}", data.display()),
        source,
    })?;
    let tmpfs = Tmpfs::mount(&data, args.size_kb)?;
    let server = start_pairlab(
        &args.bin,
        &args.log,
        &work,
        &never_matched_scene("disk", true),
    )
    .await?;
    let port = server.port();
    let mut phases = Vec::new();
    let mut filler = None;
    for (p, name) in ["ok", "full", "freed"].into_iter().enumerate() {
        match p {
            1 => filler = Some(fill(&data)?),
            2 => {
                if let Some(f) = filler.take() {
                    std::fs::remove_file(&f).map_err(|source| LoadgenError::Io {
                        what: format!("remove {}", f.display()),
                        source,
                    })?;
                }
            }
            _ => {}
        }
        let mut statuses: Vec<String> = Vec::new();
        for i in 0..args.per_phase {
            let ws = connect_scene(port, &format!("disk-{p}-{i:05}"), None)
                .await
                .map_err(|e| server.failed(&format!("a participant could not join: {e}")))?;
            leave(ws).await;
            // Let the writer take the lines before the status is read.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let status = server
                .healthz()
                .await
                .ok()
                .and_then(|h| h["status"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "?".into());
            if statuses.last() != Some(&status) {
                statuses.push(status);
            }
        }
        // The record syncs within a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        phases.push(Phase {
            name,
            participants: args.per_phase,
            statuses,
            lost_at_end: server.health_count("/record/lines_lost").await,
        });
    }
    let lost = server.health_count("/record/lines_lost").await;
    let written = server.health_count("/record/lines_written").await;
    let text = std::fs::read_to_string(server.events_path("disk")).unwrap_or_default();
    let load = load_average();
    server.stop().await;
    drop(tmpfs);

    // Lines per participant (by subject id), and the lines that are not a participant's.
    let mut torn = 0usize;
    let mut per_subject: HashMap<String, u64> = HashMap::new();
    let mut lines = 0u64;
    for line in text.lines() {
        lines += 1;
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => {
                if let Some(s) = v["subject_id"].as_str() {
                    *per_subject.entry(s.to_owned()).or_default() += 1;
                }
            }
            Err(_) => torn += 1,
        }
    }
    let count = |p: usize, i: usize| {
        per_subject
            .get(&format!("disk-{p}-{i:05}"))
            .copied()
            .unwrap_or(0)
    };
    // Every participant of the first phase has the same lines (joined, server_rtt, left).
    let each = (0..args.per_phase).map(|i| count(0, i)).max().unwrap_or(0);
    let uneven = (0..args.per_phase).any(|i| count(0, i) != each);
    let missing: u64 = (0..3)
        .flat_map(|p| (0..args.per_phase).map(move |i| (p, i)))
        .map(|(p, i)| each.saturating_sub(count(p, i)))
        .sum();

    println!();
    println!(
        "## disk: a {} KB tmpfs data dir filled up and freed, {} participants (join, leave) per phase",
        args.size_kb, args.per_phase
    );
    println!("{machine}");
    println!("| phase | participants | /healthz status seen | lines_lost at its end |");
    println!("|---|---:|---|---:|");
    for p in &phases {
        println!(
            "| {} | {} | {} | {} |",
            p.name,
            p.participants,
            p.statuses.join(" → "),
            fmt_opt(p.lost_at_end)
        );
    }
    println!(
        "record: {lines} lines (/healthz lines_written {}), torn lines {torn}, ends with a newline: {}; {each} lines per participant{}; lines missing {missing}, /healthz lines_lost {} (exact: {}); load avg {load}",
        fmt_opt(written),
        text.ends_with('\n'),
        if uneven { " (uneven in the first phase!)" } else { "" },
        fmt_opt(lost),
        lost == Some(missing) && !uneven
    );
    println!("server log: {}", work.join("server.log").display());
    Ok(())
}
