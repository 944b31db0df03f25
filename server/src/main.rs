//! `pairlab`: the server binary.
//!
//! - `pairlab serve [--config FILE] [--bind ADDR] [--data-dir DIR] [--metrics-token TOKEN]
//!   [--monitor-token TOKEN]`: serves the page, the wasm client, `/ws`, `/healthz` and, with a
//!   metrics token, `/metrics`, with a monitor token, the live monitor page `/monitor`; without `--config`, the embedded default scene. It logs the
//!   config's warnings (those `pairlab check` prints) at start. Ctrl-C or SIGTERM shut it down
//!   cleanly (the research record is flushed).
//! - `pairlab check FILE`: validates a config; prints each problem as `FILE:LINE:COL: message`
//!   and exits 1, or a summary of the scenes and exits 0.
//! - `pairlab link ID --config FILE [--base URL]`: prints a participant's signed link (with
//!   `[server] link_secret`): the query `subject_id=ID&sig=…`, or the whole URL with `--base`.
//! - `pairlab healthcheck [--addr ADDR]`: exit 0 when the server at ADDR says `/healthz` ok.
//! - `pairlab export DATA_DIR [--out DIR]`: the research record under DATA_DIR as CSV tables
//!   and `report.html` in DIR (default DATA_DIR/export); docs/EXPORT.md lists the columns.
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
use pairlab_server::net::{raise_open_file_limit, Server, SiteDir};
use pairlab_shared::SubjectId;
use tikv_jemallocator::Jemalloc;
use tracing_subscriber::EnvFilter;

/// The process's allocator: jemalloc, which gives the pages that a burst of games freed back
/// to the system; glibc's malloc kept them (BENCHMARKS.md, `churn`).
#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// jemalloc's options for this binary (jemalloc(3); `_RJEM_MALLOC_CONF` in the environment
/// overrides them), chosen by measurement with `loadgen churn` (BENCHMARKS.md, `churn`): after
/// 100,000 games at ~1,000 games/s, with everyone gone, the RSS was 20.0–20.7 MB with the
/// defaults and 12.9–16.2 MB with the three below, which also start ~1.5 MB lower (10 MB idle).
/// Lowering `dirty_decay_ms` (0 or 1,000) changed nothing measurable and is not set.
/// - `background_thread:true`: a jemalloc thread returns freed pages to the system on the
///   decay schedule even while the server is idle; without it, purging waits for allocations.
/// - `narenas:1`: one arena instead of four per core: the few threads that allocate share its
///   partly used pages instead of each arena keeping its own.
/// - `tcache:false`: no per-thread caches: an idle worker thread's cache otherwise keeps the
///   objects it last freed, and the pages under them, for as long as it stays idle.
const MALLOC_CONF: &std::ffi::CStr = c"background_thread:true,narenas:1,tcache:false";

/// The C string jemalloc reads its compiled-in options from at its first allocation.
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a `'static` C string that nothing writes.
unsafe impl Sync for MallocConf {}

/// `malloc_conf` under the prefix tikv-jemalloc-sys gives jemalloc's symbols.
#[export_name = "_rjem_malloc_conf"]
pub static JEMALLOC_MALLOC_CONF: MallocConf = MallocConf(MALLOC_CONF.as_ptr());

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
        /// Your own page folder, served at / (its index.html replaces the embedded page;
        /// /pairlab.js and /pkg/* still come from the binary). Overrides the config's
        /// [site] dir.
        #[arg(long, value_name = "DIR")]
        site: Option<PathBuf>,
        /// Serve Prometheus metrics at /metrics to requests with `Authorization: Bearer TOKEN`
        /// (at least 16 characters); overrides [server] metrics_token. Prefer the config file:
        /// a command line is visible to other users of the machine.
        #[arg(long, value_name = "TOKEN")]
        metrics_token: Option<String>,
        /// Serve the live monitor page at /monitor?token=TOKEN (at least 16 characters);
        /// overrides [server] monitor_token. Prefer the config file: a command line is visible
        /// to other users of the machine.
        #[arg(long, value_name = "TOKEN")]
        monitor_token: Option<String>,
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
    /// Ask a running server's /healthz; exit 0 when it says "ok", 1 otherwise (for a
    /// container HEALTHCHECK or a monitoring script).
    Healthcheck {
        /// The server's address (as given to `serve --bind`; 127.0.0.1 for 0.0.0.0).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
    },
    /// Export the research record as CSV tables and an offline HTML report (docs/EXPORT.md).
    Export {
        /// The data directory `pairlab serve` wrote to (DIR/<scene_id>/events.jsonl).
        data_dir: PathBuf,
        /// Where the tables and report.html go; default DATA_DIR/export.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
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
        Command::Healthcheck { addr } => healthcheck(addr),
        Command::Export { data_dir, out } => {
            let out = out.unwrap_or_else(|| data_dir.join("export"));
            export(&data_dir, &out)
        }
        Command::Serve {
            config,
            bind,
            data_dir,
            site,
            metrics_token,
            monitor_token,
        } => {
            init_logging();
            let config_path = config;
            let mut config = match &config_path {
                None => ConfigFile::embedded_default(),
                Some(path) => match load(path) {
                    Ok(c) => c,
                    Err(code) => return code,
                },
            };
            let site = match site_dir(site, config_path.as_deref(), &config) {
                None => None,
                Some(dir) => match SiteDir::open(&dir) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        eprintln!("pairlab: {e}; nothing was started");
                        return ExitCode::FAILURE;
                    }
                },
            };
            for (flag, token, slot) in [
                (
                    "--metrics-token",
                    metrics_token,
                    &mut config.server.metrics_token,
                ),
                (
                    "--monitor-token",
                    monitor_token,
                    &mut config.server.monitor_token,
                ),
            ] {
                let Some(token) = token else { continue };
                if token.chars().count() < MIN_METRICS_TOKEN_LEN {
                    eprintln!(
                        "pairlab serve: {flag} needs at least {MIN_METRICS_TOKEN_LEN} \
                         characters (e.g. the output of `openssl rand -hex 16`)"
                    );
                    return ExitCode::FAILURE;
                }
                *slot = Some(token);
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("pairlab: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(serve(config, bind, data_dir, site))
        }
    }
}

/// Shortest `--metrics-token` and `--monitor-token`: the rule of `[server] metrics_token`
/// and `monitor_token`.
const MIN_METRICS_TOKEN_LEN: usize = pairlab_server::config::MIN_LINK_SECRET_LEN;

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
            match site_dir(None, Some(path), &file) {
                None => println!("  no site folder: the embedded page is served at /"),
                Some(dir) => match SiteDir::open(&dir) {
                    Ok(site) => println!("  {}", describe_site(&site)),
                    Err(e) => {
                        println!("{}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                },
            }
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

/// The site folder to serve: `--site` if given, else the config's `[site] dir`, relative to
/// the config file's folder.
fn site_dir(
    flag: Option<PathBuf>,
    config_path: Option<&Path>,
    file: &ConfigFile,
) -> Option<PathBuf> {
    flag.or_else(|| {
        let dir = file.site_dir.as_deref()?;
        let base = config_path
            .and_then(Path::parent)
            .unwrap_or_else(|| Path::new(""));
        Some(base.join(dir))
    })
}

/// One line on the site folder, for `check` and `serve`.
fn describe_site(site: &SiteDir) -> String {
    if site.has_index() {
        format!(
            "site folder {} served at / (its index.html is the page)",
            site.root().display()
        )
    } else {
        format!(
            "site folder {} served at / (no index.html: the embedded page stays at /)",
            site.root().display()
        )
    }
}

/// `pairlab healthcheck`: `healthy` on stdout and exit 0, or why not on stderr and exit 1.
fn healthcheck(addr: SocketAddr) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pairlab healthcheck: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let limit = std::time::Duration::from_secs(3);
    match runtime.block_on(pairlab_server::healthcheck::check(addr, limit)) {
        Ok(()) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pairlab healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `pairlab export`: writes the tables and the report, then lists them with their row counts
/// on stdout; or why not on stderr and exit 1.
fn export(data_dir: &Path, out: &Path) -> ExitCode {
    match pairlab_server::export::export(data_dir, out) {
        Ok(summary) => {
            println!(
                "read {} line(s) of {} scene(s) ({}); {} unreadable",
                summary.lines,
                summary.scenes.len(),
                summary.scenes.join(", "),
                summary.unreadable_lines
            );
            for (name, n) in &summary.unknown_events {
                println!("skipped {n} line(s) of unknown event {name:?}");
            }
            for (path, rows) in &summary.files {
                let unit = if path.extension().is_some_and(|e| e == "html") {
                    "chart(s)"
                } else {
                    "row(s)"
                };
                println!("{}: {rows} {unit}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pairlab export: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    file: ConfigFile,
    bind: SocketAddr,
    data_dir: PathBuf,
    site: Option<SiteDir>,
) -> ExitCode {
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
    let ConfigFile { config, server, .. } = file;
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
    match &site {
        Some(site) => tracing::info!("{}", describe_site(site)),
        None => tracing::info!("no site folder: the embedded page is served at /"),
    }
    let server = match Server::bind(config.clone(), bind, data_dir.clone()).await {
        Ok(s) => s.server_config(server).site(site),
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
