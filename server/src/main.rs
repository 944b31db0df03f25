//! `pairlab`: the server binary.
//!
//! - `pairlab serve [--config FILE] [--bind ADDR] [--data-dir DIR]`: serves the page, the wasm
//!   client, `/ws` and `/healthz`; without `--config`, the embedded default scene. It logs the
//!   config's warnings (those `pairlab check` prints) at start. Ctrl-C or SIGTERM shut it down
//!   cleanly (the research record is flushed).
//! - `pairlab check FILE`: validates a config; prints each problem as `FILE:LINE:COL: message`
//!   and exits 1, or a summary of the scenes and exits 0.
//! - `pairlab link ID --config FILE [--base URL]`: prints a participant's signed link (with
//!   `[server] link_secret`): the query `subject_id=ID&sig=…`, or the whole URL with `--base`.
//!
//! Logs go to stderr through `tracing`; `RUST_LOG` filters them (default `info`); colours only
//! when stderr is a terminal.
//!
//! At start, `serve` raises the soft open-file limit to the hard one (every connection is a
//! file) and logs both.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pairlab_server::config::{ConfigErrors, ConfigFile};
use pairlab_server::core::link::LinkSigner;
use pairlab_server::net::{raise_open_file_limit, Server};
use pairlab_shared::SubjectId;
use tikv_jemallocator::Jemalloc;
use tracing_subscriber::EnvFilter;

/// The process's allocator: jemalloc, which gives the pages that a burst of games freed back
/// to the system; glibc's malloc kept them (BENCHMARKS.md, `churn`).
#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

#[derive(Parser)]
#[command(
    name = "pairlab",
    version,
    about = "Latency-aware matchmaking for real-time multiplayer browser experiments."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the participants' page, the WebSocket (/ws) and /healthz.
    Serve {
        /// Scene configuration (TOML); without it, the embedded default: one scene "default",
        /// pairs, latency_fifo, max_server_rtt_ms = 200, max_p2p_rtt_ms = 150, the public STUN
        /// server stun:stun.l.google.com:19302.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address and port to listen on. Use 0.0.0.0:PORT to accept other machines.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
        /// Where the research record goes: DIR/<scene_id>/events.jsonl.
        #[arg(long, value_name = "DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Check a scene configuration; print every problem as FILE:LINE:COL: message.
    Check {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Print a participant's signed link (needs [server] link_secret in the config).
    Link {
        /// The participant's subject_id.
        subject_id: String,
        /// The config whose [server] link_secret signs the link.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The page's URL (e.g. https://study.example.org/?scene_id=pairs); without it, only
        /// the query `subject_id=ID&sig=SIGNATURE` is printed.
        #[arg(long, value_name = "URL")]
        base: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Link {
            subject_id,
            config,
            base,
        } => link(&subject_id, &config, base.as_deref()),
        Command::Serve {
            config,
            bind,
            data_dir,
        } => {
            init_logging();
            let config = match config {
                None => ConfigFile::embedded_default(),
                Some(path) => match load(&path) {
                    Ok(c) => c,
                    Err(code) => return code,
                },
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("pairlab: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(serve(config, bind, data_dir))
        }
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Why a config file gave no [`ConfigFile`].
#[derive(Debug, thiserror::Error)]
enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    /// The file was read but is not a valid config: every problem, with its position.
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

impl ConfigFileError {
    /// What went wrong as lines prefixed with the file name: `FILE: cannot read: …`, or one
    /// `FILE:LINE:COL: message` per problem (the form compilers and editors understand).
    fn lines(&self, path: &Path) -> Vec<String> {
        match self {
            ConfigFileError::Read(_) => vec![format!("{}: {self}", path.display())],
            ConfigFileError::Invalid(errors) => errors
                .errors
                .iter()
                .map(|e| format!("{}:{e}", path.display()))
                .collect(),
        }
    }
}

/// Reads and validates a config file: the one reading both `serve --config` and `check` use.
///
/// # Errors
/// [`ConfigFileError::Read`] when the file cannot be read, [`ConfigFileError::Invalid`] with
/// every problem when it is not a valid config.
fn read_config(path: &Path) -> Result<ConfigFile, ConfigFileError> {
    let text = std::fs::read_to_string(path)?;
    Ok(ConfigFile::from_toml_str(&text)?)
}

/// `serve --config`: the config, or why not on stderr (the problems, then how many) and the
/// exit code.
fn load(path: &Path) -> Result<ConfigFile, ExitCode> {
    read_config(path).map_err(|error| {
        for line in error.lines(path) {
            eprintln!("{line}");
        }
        if let ConfigFileError::Invalid(errors) = &error {
            eprintln!(
                "{}: {} problem(s); nothing was started",
                path.display(),
                errors.errors.len()
            );
        }
        ExitCode::FAILURE
    })
}

/// `pairlab check`: every problem as `FILE:LINE:COL: message` on stdout and exit 1, or
/// `FILE: ok, N scene(s)` and the config's description and exit 0.
fn check(path: &Path) -> ExitCode {
    match read_config(path) {
        Err(error) => {
            for line in error.lines(path) {
                println!("{line}");
            }
            ExitCode::FAILURE
        }
        Ok(file) => {
            println!(
                "{}: ok, {} scene(s)",
                path.display(),
                file.config.scenes.len()
            );
            print!("{}", file.describe());
            ExitCode::SUCCESS
        }
    }
}

/// `pairlab link`: the signed link of `subject_id` on stdout, or why not on stderr and exit 1.
fn link(subject_id: &str, config: &Path, base: Option<&str>) -> ExitCode {
    let subject_id = match SubjectId::parse(subject_id) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("pairlab link: {e}");
            return ExitCode::FAILURE;
        }
    };
    let file = match load(config) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let Some(secret) = file.config.server.link_secret.as_deref() else {
        eprintln!(
            "pairlab link: the config has no [server] link_secret, so links need no signature; \
             add one (at least 16 random characters) to sign links"
        );
        return ExitCode::FAILURE;
    };
    let signer = LinkSigner::new(secret);
    match base {
        Some(base) => println!("{}", signer.link(base, &subject_id)),
        None => println!("{}", signer.query(&subject_id)),
    }
    ExitCode::SUCCESS
}

async fn serve(file: ConfigFile, bind: SocketAddr, data_dir: PathBuf) -> ExitCode {
    let open_files = match raise_open_file_limit() {
        Ok(limit) => {
            tracing::info!(
                "open-file limit: soft {} (was {}), hard {}",
                limit.soft,
                limit.soft_before,
                limit.hard
            );
            Some(limit.soft)
        }
        Err(e) => {
            tracing::warn!("{e}; every connection is an open file");
            None
        }
    };
    let ConfigFile { config, server } = file;
    if let Some(open_files) = open_files.filter(|n| server.max_http_connections >= n / 2) {
        tracing::warn!(
            "[server] max_http_connections = {} is at least half the open-file limit \
             {open_files}: WebSockets and files may run out first",
            server.max_http_connections
        );
    }
    // The same warnings `pairlab check` prints, so a researcher who never ran it reads them.
    for warning in config.warnings() {
        tracing::warn!(scene = warning.scene_id(), "{warning}");
    }
    let server = match Server::bind(config.clone(), bind, data_dir.clone()).await {
        Ok(s) => s.server_config(server),
        Err(e) => {
            eprintln!("pairlab: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    if !pairlab_server::assets::client_built() {
        tracing::warn!(
            "the wasm client was not built into this binary; `/` explains how: {}",
            pairlab_server::assets::BUILD_CLIENT_COMMAND
        );
    }
    tracing::info!(
        scenes = ?config.scenes.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        data_dir = %data_dir.display(),
        "listening on {addr}"
    );
    let host = if addr.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        addr.ip().to_string()
    };
    let host = if addr.is_ipv6() && host != "localhost" {
        format!("[{host}]")
    } else {
        host
    };
    println!(
        "pairlab is serving; open http://{host}:{}/ in a browser",
        addr.port()
    );
    server.run(shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
}
