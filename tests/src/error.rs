//! The harness's one error type, [`HarnessError`], and its [`Result`]. Every module of the
//! harness returns it; each message says what was expected and, where it helps, the logs of the
//! processes involved.

use std::process::ExitStatus;

use crate::WASM_ASSET;

/// How to build what the end-to-end tests need, for error messages.
pub const BUILD_HINT: &str = "build it with `./run.sh test`, or by hand: \
`wasm-pack build --target web --release --mode no-install client-wasm --out-dir ../www/pkg --no-typescript` \
and then `cargo build -j2 -p pairlab-server --bin pairlab` (the binary embeds www/, so build it after www/pkg exists), \
or point PAIRLAB_BIN at a binary";

/// Everything that can go wrong in the harness. Each message says what was expected and, where
/// it helps, the logs of the processes involved.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No `pairlab` binary at the looked-at paths.
    #[error("no pairlab binary found (looked at: {looked}); {hint}", hint = BUILD_HINT)]
    BinaryMissing {
        /// The paths that were tried.
        looked: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A child process exited while the harness waited for it to become ready.
    #[error("{name} exited ({status}) before it was ready; its log ({log_path}):\n{log}")]
    Exited {
        /// The process: `pairlab`, `chromedriver`, `turnserver`, another relay.
        name: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// Where its log is.
        log_path: String,
        /// The end of its log.
        log: String,
    },
    /// Something did not happen within its deadline.
    #[error("gave up after {waited_ms} ms waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the harness waited, ms.
        waited_ms: u128,
        /// The last observation, for debugging.
        last: String,
    },
    /// The server runs but does not serve the wasm client: it was built before `www/pkg`.
    #[error("the server answers /healthz but not {asset} (HTTP {status}): the binary {bin} was built without the wasm client; {hint}", asset = WASM_ASSET, hint = BUILD_HINT)]
    ClientNotEmbedded {
        /// The binary.
        bin: String,
        /// The HTTP status of the asset.
        status: u16,
    },
    /// `chromedriver` could not be started.
    #[error("cannot start chromedriver ({bin}): {source}; install Debian's chromium-driver (scripts/setup.sh) or set PAIRLAB_CHROMEDRIVER")]
    NoChromeDriver {
        /// The command that was tried.
        bin: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A WebDriver session could not be created (Chromium did not start).
    #[error(
        "WebDriver session for {name} could not start: {source}; chromedriver's log: {log_path}"
    )]
    NewSession {
        /// The browser's name in the test.
        name: String,
        /// Where chromedriver logs.
        log_path: String,
        /// fantoccini's error.
        #[source]
        source: Box<fantoccini::error::NewSessionError>,
    },
    /// A WebDriver command failed.
    #[error("WebDriver command on {name} ({what}) failed: {source}")]
    Cmd {
        /// The browser's name in the test.
        name: String,
        /// The command.
        what: &'static str,
        /// fantoccini's error.
        #[source]
        source: Box<fantoccini::error::CmdError>,
    },
    /// The page answered the harness's script with something that is not a [`crate::PageView`].
    #[error("{name}: the page's state could not be read: {source} (got {got})")]
    PageShape {
        /// The browser's name in the test.
        name: String,
        /// What came back.
        got: String,
        /// Why it did not fit.
        #[source]
        source: serde_json::Error,
    },
    /// A line of the research record is not a JSON object.
    #[error("research record {path}, line {line}: not a JSON object: {detail}")]
    Record {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// An HTTP request the harness made failed: no connection, not HTTP, or no complete answer
    /// in time.
    #[error("HTTP {what}: {detail}")]
    Http {
        /// The request.
        what: String,
        /// What went wrong.
        detail: String,
    },
}

/// The harness's result type.
pub type Result<T> = std::result::Result<T, HarnessError>;

/// Maps an I/O error to [`HarnessError::Io`] saying what the harness was doing.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}
