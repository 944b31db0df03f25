//! # pairlab-tests: the end-to-end harness
//!
//! The pieces the end-to-end tests in `tests/tests/` and the `loadgen` and `bench-probe`
//! binaries are made of, one module each:
//!
//! - [`process`]: child processes stopped by their PID ([`process::Process`]), signals by PID,
//!   and polling with a deadline ([`process::Wait`], [`POLL`], [`WAIT`]).
//! - [`server`]: the real `pairlab` binary on a free port with a work folder ([`Server`]).
//! - [`browser`]: Debian's `chromedriver` ([`ChromeDriver`]) and one headless Chromium per
//!   participant driven through WebDriver ([`Browser`]), the page's DOM contract ([`PageView`]).
//! - [`turn`]: coturn on loopback ([`turn::Coturn`]); [`delay_proxy`]: a UDP delay proxy to
//!   slow, drop or cut a path ([`delay_proxy::DelayProxy`]).
//! - [`ports`]: ports for the children, chosen at run time below the kernel's ephemeral range
//!   ([`free_port`], [`ports::free_block`]).
//! - [`relay_echo`]: a relayed path's RTT without a browser (two TURN allocations echoing
//!   through each other's relay), the benchmarks' truth for relayed settings.
//! - [`http`]: the one HTTP GET ([`http_get`]).
//! - [`record`]: the research record (`<data-dir>/<scene_id>/events.jsonl`) read and matched by
//!   the server's typed event kinds ([`record::ResearchEventKind`]).
//! - [`game`]: the game-connection tests' page view and relay rig.
//! - [`stats`]: the benchmarks' nearest-rank percentiles.
//! - [`simulate`]: matchmakers compared on a simulated population with known pair RTTs (the
//!   sans-IO core on virtual time; the `simulate` binary).
//!
//! This module holds what they share: where the workspace, the target folder and the binary
//! are, a test's [`WorkDir`], the error type ([`HarnessError`]) and the small helpers the test
//! files use ([`check!`], [`must`], [`json_num`], [`json_str`]).
//!
//! Every process the harness starts is stopped by its PID when its guard drops, also when a test
//! fails half-way. Waiting is always polling on something observable: `/healthz`, the page's
//! `data-state`, lines of the record. Sleeps are never assertions.
//!
//! Environment: `PAIRLAB_BIN` (the binary; default: the newer of `target/debug/pairlab` and
//! `target/release/pairlab`), `PAIRLAB_CHROMEDRIVER` (default `chromedriver` on `PATH`),
//! `PAIRLAB_CHROMIUM` (default `/usr/bin/chromium`), `CARGO_TARGET_DIR`, `RUST_LOG` (passed to
//! the server; default `info`).

pub mod browser;
pub mod delay_proxy;
mod error;
pub mod game;
pub mod http;
pub mod landing;
pub mod ports;
pub mod process;
pub mod record;
pub mod relay_echo;
pub mod server;
pub mod simulate;
pub mod stats;
pub mod tcp_delay;
pub mod turn;

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use browser::{Browser, ChromeDriver, PageView, Tab, CHROMIUM_ARGS};
pub use error::{HarnessError, Result, BUILD_HINT};
pub use http::{http_get, http_get_with};
pub use ports::free_port;
pub use process::{POLL, WAIT};
pub use record::{read_events, wait_for_events};
pub use server::{Server, ServerOptions};

use error::io;

/// The file the wasm client is served as (`wasm-pack build --target web` names it after the
/// crate `pairlab-client`); the harness checks that the binary embeds it.
pub const WASM_ASSET: &str = "/pkg/pairlab_client_bg.wasm";

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the workspace root when relative),
/// else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The `pairlab` binary to test: `PAIRLAB_BIN` if set (it must exist), else the more recently
/// built of `<target>/debug/pairlab` and `<target>/release/pairlab`.
///
/// # Errors
/// [`HarnessError::BinaryMissing`] with the paths looked at and how to build the binary.
pub fn pairlab_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PAIRLAB_BIN") {
        let bin = PathBuf::from(bin);
        let bin = if bin.is_absolute() {
            bin
        } else {
            workspace_root().join(bin)
        };
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(HarnessError::BinaryMissing {
                looked: format!("PAIRLAB_BIN={}", bin.display()),
            })
        };
    }
    let candidates = [
        target_dir().join("debug").join("pairlab"),
        target_dir().join("release").join("pairlab"),
    ];
    candidates
        .iter()
        .filter_map(|p| {
            let modified = fs::metadata(p).and_then(|m| m.modified()).ok()?;
            Some((modified, p.clone()))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, p)| p)
        .ok_or_else(|| HarnessError::BinaryMissing {
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A test's own working folder, `<target>/e2e/<name>/`, emptied when created: the scene file,
/// the research record (`data/`), the Chromium profiles and the logs of `pairlab` and
/// `chromedriver` stay there after the test for whoever debugs it.
#[derive(Debug, Clone)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Empties and creates `<target>/e2e/<name>/`.
    ///
    /// # Errors
    /// [`HarnessError::Io`] if the folder cannot be removed or created.
    pub fn fresh(name: &str) -> Result<WorkDir> {
        let path = target_dir().join("e2e").join(name);
        if path.exists() {
            fs::remove_dir_all(&path).map_err(io(format!("remove {}", path.display())))?;
        }
        fs::create_dir_all(&path).map_err(io(format!("create {}", path.display())))?;
        Ok(WorkDir { path })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the folder.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

/// The last `max_lines` lines of a log file, or a note why it could not be read.
pub fn tail(path: &Path, max_lines: usize) -> String {
    let mut text = String::new();
    match File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
        Ok(_) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(max_lines);
            lines[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// In a test step returning `Result<_, Box<dyn Error>>`: returns the formatted message as the
/// error when `cond` is false (a failed expectation reads as a sentence, not a panic).
#[macro_export]
macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        let holds: bool = $cond;
        if !holds {
            return Err(format!($($arg)+).into());
        }
    };
}

/// Unwraps a setup step or fails the test with the harness's message.
#[track_caller]
pub fn must<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// The number at `key` of a JSON object (a record line), if there is one.
pub fn json_num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The string at `key` of a JSON object (a record line), if there is one.
pub fn json_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Where screenshots go: `<target>/e2e-screens/`.
pub fn screens_dir() -> PathBuf {
    target_dir().join("e2e-screens")
}
