//! The servers a run drives, through the harness: pairlab ([`start_pairlab`], a
//! [`pairlab_tests::Server`] with the run's binary and log filter) and, for `compare`, the other
//! relays ([`RelayServer::External`]: a [`Process`] listening on a port). Both are stopped by
//! their PID; a failure quotes the end of the server's log ([`LoadgenError::Server`]).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pairlab_tests::process::{Process, Wait};
use pairlab_tests::{Server, ServerOptions, WorkDir};
use tokio::net::TcpStream;

use crate::{LoadgenError, Result};

/// How long a server may take to become ready (`/healthz`, or accepting connections).
const READY_WAIT: Duration = Duration::from_secs(20);

/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(50);

/// How many log lines a failure quotes.
const LOG_LINES: usize = 30;

/// The `[server]` table every load-generator server gets unless its scene text has its own: all
/// generated participants come from 127.0.0.1, one address standing for thousands of
/// participants' own, and open up to a few hundred WebSocket handshakes at once, so the caps on
/// connections that are not yet WebSockets (512 in all, 128 per address by default, meant for
/// strangers on the internet) are raised above what the generator holds in flight.
pub(crate) const LOADGEN_SERVER_TABLE: &str =
    "\n[server]\nmax_http_connections = 8192\nmax_http_connections_per_ip = 8192\n";

/// Writes `scene_toml` (plus [`LOADGEN_SERVER_TABLE`] when it has no `[server]` table) into
/// `work` and starts `bin serve` on a free port with `RUST_LOG=log`;
/// returns once `/healthz` answers.
///
/// # Errors
/// [`LoadgenError::NoBinary`] when `bin` is not a file; the harness's errors (the server exited
/// or did not become healthy, with its log).
pub(crate) async fn start_pairlab(
    bin: &Path,
    log: &str,
    work: &WorkDir,
    scene_toml: &str,
) -> Result<Server> {
    if !bin.is_file() {
        return Err(LoadgenError::NoBinary(bin.to_path_buf()));
    }
    let options = ServerOptions {
        bin: Some(bin.to_path_buf()),
        rust_log: Some(log.to_owned()),
        check_client: false,
        ..ServerOptions::default()
    };
    let config = if scene_toml.contains("[server]") {
        scene_toml.to_owned()
    } else {
        format!("{scene_toml}{LOADGEN_SERVER_TABLE}")
    };
    Ok(Server::start_with(work, Some(&config), &options).await?)
}

/// [`LoadgenError::Server`]: the server `what` (stopped, did not …), with its log.
fn failed(what: &str, log_path: &Path, log_tail: String) -> LoadgenError {
    LoadgenError::Server(what.to_owned(), log_path.display().to_string(), log_tail)
}

/// What the scenarios ask of a running pairlab.
pub(crate) trait PairlabExt {
    /// [`LoadgenError::Server`] saying the server `what`, with its log.
    fn failed(&self, what: &str) -> LoadgenError;
    /// The `connections` count of `/healthz` (open WebSockets), if it answers.
    async fn connections(&self) -> Option<u64>;
    /// The `waiting` count of `/healthz` (participants in a waitroom, all scenes).
    async fn waiting(&self) -> Option<u64>;
    /// A count of `/healthz` at the JSON pointer `pointer` (`/participants`,
    /// `/record/lines_lost`, …), if it answers.
    async fn health_count(&self, pointer: &str) -> Option<u64>;
    /// Waits (polling every 100 ms, `within` at most) until `/healthz` counts no participant;
    /// returns whether it did.
    async fn until_nobody(&self, within: Duration) -> bool;
}

impl PairlabExt for Server {
    fn failed(&self, what: &str) -> LoadgenError {
        failed(what, self.log_path(), self.log_tail(LOG_LINES))
    }

    async fn connections(&self) -> Option<u64> {
        self.health_count("/connections").await
    }

    async fn waiting(&self) -> Option<u64> {
        self.health_count("/waiting").await
    }

    async fn health_count(&self, pointer: &str) -> Option<u64> {
        self.healthz().await.ok()?.pointer(pointer)?.as_u64()
    }

    async fn until_nobody(&self, within: Duration) -> bool {
        let until = std::time::Instant::now() + within;
        loop {
            if self.health_count("/participants").await == Some(0) {
                return true;
            }
            if std::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The relay a `relay` or `compare` run drives.
pub(crate) enum RelayServer {
    /// pairlab.
    Pairlab(Server),
    /// Another relay's process, listening on 127.0.0.1:`port`.
    External {
        /// The process (its output in `<work>/server.log`).
        process: Process,
        /// Its port.
        port: u16,
    },
}

impl RelayServer {
    /// Starts another relay (`program args…`, named `name`) listening on 127.0.0.1:`port`, its
    /// output in `work/server.log`; waits until the port accepts a connection.
    ///
    /// # Errors
    /// [`LoadgenError::Args`] (with `hint`) when `program` is not there; [`LoadgenError::Server`]
    /// when it exits or does not listen within 20 s.
    pub(crate) async fn start_external(
        name: &'static str,
        program: &Path,
        args: &[String],
        log_filter: &str,
        work: &WorkDir,
        port: u16,
        hint: &str,
    ) -> Result<Self> {
        if !program.is_file() {
            return Err(LoadgenError::Args(format!(
                "no {} ({hint})",
                program.display()
            )));
        }
        let mut command = Command::new(program);
        command.args(args).env("RUST_LOG", log_filter);
        let mut process = Process::spawn(name, &mut command, &work.join("server.log"), "")?;
        let wait = Wait::new(format!("{name} to listen"), READY_WAIT).every(READY_POLL);
        loop {
            if let Some(status) = process.exited() {
                return Err(failed(
                    &format!("exited ({status}) before it listened"),
                    process.log_path(),
                    process.log_tail(LOG_LINES),
                ));
            }
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(RelayServer::External { process, port });
            }
            if wait.expired() {
                return Err(failed(
                    "did not listen within 20 s",
                    process.log_path(),
                    process.log_tail(LOG_LINES),
                ));
            }
            wait.tick("").await?;
        }
    }

    /// Its port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        match self {
            RelayServer::Pairlab(server) => server.port(),
            RelayServer::External { port, .. } => *port,
        }
    }

    /// Its PID.
    pub(crate) fn pid(&self) -> u32 {
        match self {
            RelayServer::Pairlab(server) => server.pid(),
            RelayServer::External { process, .. } => process.pid(),
        }
    }

    /// Whether it still runs.
    pub(crate) fn alive(&mut self) -> bool {
        match self {
            RelayServer::Pairlab(server) => server.is_running(),
            RelayServer::External { process, .. } => process.is_running(),
        }
    }

    /// [`LoadgenError::Server`] saying it `what`, with its log.
    pub(crate) fn failed(&self, what: &str) -> LoadgenError {
        match self {
            RelayServer::Pairlab(server) => server.failed(what),
            RelayServer::External { process, .. } => {
                failed(what, process.log_path(), process.log_tail(LOG_LINES))
            }
        }
    }

    /// Stops it: SIGTERM (a clean shutdown), SIGKILL after the harness's grace.
    pub(crate) async fn stop(self) {
        match self {
            RelayServer::Pairlab(server) => server.stop().await,
            RelayServer::External { mut process, .. } => {
                let _ = tokio::task::spawn_blocking(move || {
                    process.stop(pairlab_tests::server::STOP_GRACE)
                })
                .await;
            }
        }
    }
}
