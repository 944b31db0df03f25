//! `pairlab export DATA_DIR`: the research record as tidy CSV tables and a one-file HTML
//! report, for analysis after a session.
//!
//! How the parts fit:
//! - this file finds the records (`DATA_DIR/<scene_id>/events.jsonl`, scenes in name order),
//!   reads them line by line and writes the output folder;
//! - [`tables`] turns record lines into rows: one row per record line for the line-shaped
//!   tables (server RTTs, episodes, connections, custom events, …) and one row per entity for
//!   the others (participants, probes, games), each entity assembled from the lines that name
//!   it. A line's kind is read with [`crate::record::kind_of`], so event names have one home,
//!   [`ResearchEventKind`](crate::core::research::ResearchEventKind); lines of a kind this
//!   export does not know (a newer server's) are skipped and counted, never an error;
//! - [`report`] draws the charts with `plotters`' SVG backend and writes `report.html`, which
//!   holds them inline and needs no network to open.
//!
//! The columns of every table are documented in `docs/EXPORT.md` (a test checks that each
//! column written is listed there).

pub mod report;
pub mod tables;

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use crate::record::RECORD_FILE;
pub use tables::Tables;

/// The report's file name inside the output folder.
pub const REPORT_FILE: &str = "report.html";

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The data directory could not be listed.
    #[error("cannot list the data directory {path}: {source}")]
    ReadDir {
        /// The data directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A record file could not be read.
    #[error("cannot read the record {path}: {source}")]
    ReadRecord {
        /// The record file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// No scene folder in the data directory holds a record.
    #[error(
        "no research record under {0}: expected <scene_id>/{RECORD_FILE} folders there \
         (the --data-dir `pairlab serve` wrote to)"
    )]
    NoRecords(PathBuf),
    /// The output folder or one of its files could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
}

/// What an export read and wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The scenes whose records were read, in name order.
    pub scenes: Vec<String>,
    /// Record lines read (all scenes).
    pub lines: u64,
    /// Lines that were not JSON, had no `event`, `ts` or `scene_id`, or whose fields do not
    /// fit their kind (a torn line, a foreign line); skipped.
    pub unreadable_lines: u64,
    /// Lines skipped because their `event` is not one this export knows, by name.
    pub unknown_events: BTreeMap<String, u64>,
    /// The files written, with their row counts (`report.html`: the number of charts).
    pub files: Vec<(PathBuf, usize)>,
}

/// Reads every scene's record under `data_dir` and writes the CSV tables and `report.html`
/// into `out_dir` (created if needed; files of the same names are replaced).
///
/// # Errors
/// [`ExportError::ReadDir`] / [`ExportError::ReadRecord`] when the records cannot be read,
/// [`ExportError::NoRecords`] when there are none, [`ExportError::Write`] when the output
/// cannot be written.
pub fn export(data_dir: &Path, out_dir: &Path) -> Result<ExportSummary, ExportError> {
    let mut tables = Tables::default();
    let mut summary = ExportSummary::default();
    for (scene_id, path) in records(data_dir)? {
        read_record(&path, &mut tables, &mut summary)?;
        summary.scenes.push(scene_id);
    }
    if summary.scenes.is_empty() {
        return Err(ExportError::NoRecords(data_dir.to_owned()));
    }
    tables.finish();
    std::fs::create_dir_all(out_dir).map_err(|source| ExportError::Write {
        path: out_dir.to_owned(),
        source,
    })?;
    summary.files = tables.write_csv(out_dir)?;
    let report = out_dir.join(REPORT_FILE);
    let html = report::render(&tables, &summary);
    std::fs::write(&report, html.text).map_err(|source| ExportError::Write {
        path: report.clone(),
        source,
    })?;
    summary.files.push((report, html.charts));
    Ok(summary)
}

/// The scenes with a record under `data_dir`: `(scene_id, path)` in scene-name order.
fn records(data_dir: &Path) -> Result<Vec<(String, PathBuf)>, ExportError> {
    let read_dir = |source| ExportError::ReadDir {
        path: data_dir.to_owned(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data_dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let path = entry.path().join(RECORD_FILE);
        if path.is_file() {
            found.push((entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    found.sort();
    Ok(found)
}

/// Reads one record file into `tables`, counting its lines in `summary`.
fn read_record(
    path: &Path,
    tables: &mut Tables,
    summary: &mut ExportSummary,
) -> Result<(), ExportError> {
    let file = std::fs::File::open(path).map_err(|source| ExportError::ReadRecord {
        path: path.to_owned(),
        source,
    })?;
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line.map_err(|source| ExportError::ReadRecord {
            path: path.to_owned(),
            source,
        })?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.lines += 1;
        match serde_json::from_slice::<serde_json::Value>(&line) {
            Ok(value) => match tables.read(&value) {
                tables::Read::Used => {}
                tables::Read::Unknown(name) => {
                    *summary.unknown_events.entry(name).or_default() += 1;
                }
                tables::Read::Malformed => summary.unreadable_lines += 1,
            },
            Err(_) => summary.unreadable_lines += 1,
        }
    }
    Ok(())
}
