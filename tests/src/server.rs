//! The `pairlab` binary as a child process ([`Server`]): `pairlab serve` on a free port of
//! 127.0.0.1, its scene file, research record (`data/`) and log in a [`WorkDir`].
//!
//! The end-to-end tests start it with [`Server::start`] (a scene file) or
//! [`Server::start_default`] (the embedded scene); the load generator and the benchmarks use
//! [`Server::start_with`] and [`ServerOptions`] (their own binary, log filter, and no check for
//! the embedded page). Readiness is `/healthz` answering 200, polled with
//! [`crate::process::Wait`]; [`Server::stop`] is a clean shutdown (SIGTERM: WebSockets closed,
//! record flushed) and dropping the guard kills what is left.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::error::io;
use crate::http::http_get;
use crate::ports::free_port;
use crate::process::{Process, Wait, WAIT};
use crate::{pairlab_bin, HarnessError, Result, WorkDir, WASM_ASSET};

/// How long [`Server::stop`] lets the server shut down cleanly before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How a [`Server`] is started, beyond its scene file.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The binary (`None`: [`pairlab_bin`]).
    pub bin: Option<PathBuf>,
    /// `RUST_LOG` for the server (`None`: this process's `RUST_LOG`, else `info`).
    pub rust_log: Option<String>,
    /// Whether to check, once healthy, that the page (`/`) and the wasm client
    /// ([`WASM_ASSET`]) are served (the end-to-end tests need them; the load generator does
    /// not).
    pub check_client: bool,
    /// More arguments after `serve …` (e.g. `--site DIR`).
    pub extra_args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            bin: None,
            rust_log: None,
            check_client: true,
            extra_args: Vec::new(),
        }
    }
}

/// A running `pairlab serve`, on a free port of 127.0.0.1, with its config and data folder in a
/// [`WorkDir`]. Killed when dropped.
#[derive(Debug)]
pub struct Server {
    process: Process,
    port: u16,
    bin: PathBuf,
    data_dir: PathBuf,
}

impl Server {
    /// Writes `config_toml` to `<work>/scene.toml` and starts
    /// `pairlab serve --config <work>/scene.toml --bind 127.0.0.1:<free port> --data-dir <work>/data`
    /// (output to `<work>/server.log`), then waits for `/healthz` to answer 200 and checks that
    /// the page (`/`) and the wasm client ([`WASM_ASSET`]) are served.
    ///
    /// # Errors
    /// [`HarnessError::BinaryMissing`], [`HarnessError::Exited`] (with the server's log) when it
    /// stops before it is healthy (a config error, for instance), [`HarnessError::Timeout`] after
    /// [`WAIT`], [`HarnessError::ClientNotEmbedded`] when the binary lacks `www/pkg`.
    pub async fn start(work: &WorkDir, config_toml: &str) -> Result<Server> {
        Self::start_with(work, Some(config_toml), &ServerOptions::default()).await
    }

    /// Like [`Server::start`], without `--config`: the server runs its embedded default scene
    /// (`default`: pairs, `latency_fifo`, `max_server_rtt_ms = 200`, `max_p2p_rtt_ms = 150`).
    ///
    /// # Errors
    /// As [`Server::start`].
    pub async fn start_default(work: &WorkDir) -> Result<Server> {
        Self::start_with(work, None, &ServerOptions::default()).await
    }

    /// Starts the server with `config_toml` (written to `<work>/scene.toml`; `None`: the
    /// embedded scene) as `options` say, and waits until it is healthy.
    ///
    /// # Errors
    /// As [`Server::start`]; [`HarnessError::BinaryMissing`] also when `options.bin` is not a
    /// file.
    pub async fn start_with(
        work: &WorkDir,
        config_toml: Option<&str>,
        options: &ServerOptions,
    ) -> Result<Server> {
        let bin = match &options.bin {
            Some(bin) if bin.is_file() => bin.clone(),
            Some(bin) => {
                return Err(HarnessError::BinaryMissing {
                    looked: bin.display().to_string(),
                })
            }
            None => pairlab_bin()?,
        };
        let data_dir = work.join("data");
        fs::create_dir_all(&data_dir).map_err(io(format!("create {}", data_dir.display())))?;
        let port = free_port()?;
        let rust_log = options
            .rust_log
            .clone()
            .or_else(|| std::env::var("RUST_LOG").ok())
            .unwrap_or_else(|| "info".into());
        let mut command = Command::new(&bin);
        command.arg("serve");
        if let Some(toml) = config_toml {
            let config = work.join("scene.toml");
            fs::write(&config, toml).map_err(io(format!("write {}", config.display())))?;
            command.arg("--config").arg(config);
        }
        command
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&options.extra_args)
            .env("RUST_LOG", rust_log);
        let process = Process::spawn("pairlab", &mut command, &work.join("server.log"), "")?;
        let mut server = Server {
            process,
            port,
            bin,
            data_dir,
        };
        server.wait_healthy().await?;
        if options.check_client {
            server.check_client().await?;
        }
        Ok(server)
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let wait = Wait::new(format!("{} to answer /healthz", self.bin.display()), WAIT);
        loop {
            self.process.check_running()?;
            let last = match http_get(self.port, "/healthz").await {
                Ok((200, _)) => return Ok(()),
                Ok((status, _)) => format!("HTTP {status}"),
                Err(e) => e.to_string(),
            };
            wait.tick(format!(
                "{last}; server log:\n{}",
                self.process.log_tail(40)
            ))
            .await?;
        }
    }

    /// Checks that the page and the wasm client are served.
    async fn check_client(&self) -> Result<()> {
        let (status, _) = http_get(self.port, "/").await?;
        if status != 200 {
            return Err(HarnessError::Http {
                what: format!("GET {}", self.url("/")),
                detail: format!("status {status}, expected the page (200)"),
            });
        }
        let (status, _) = http_get(self.port, WASM_ASSET).await?;
        if status != 200 {
            return Err(HarnessError::ClientNotEmbedded {
                bin: self.bin.display().to_string(),
                status,
            });
        }
        Ok(())
    }

    /// `/healthz`'s JSON (`connections`, `waiting`, …).
    ///
    /// # Errors
    /// [`HarnessError::Http`] when it does not answer 200 with JSON.
    pub async fn healthz(&self) -> Result<Value> {
        let (status, body) = http_get(self.port, "/healthz").await?;
        let what = format!("GET {}", self.url("/healthz"));
        if status != 200 {
            return Err(HarnessError::Http {
                what,
                detail: format!("status {status}"),
            });
        }
        serde_json::from_slice(&body).map_err(|e| HarnessError::Http {
            what,
            detail: format!("not JSON: {e}"),
        })
    }

    /// Whether the server still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Stops the server cleanly (SIGTERM; SIGKILL after [`STOP_GRACE`]) and reaps it, on a
    /// blocking thread of the runtime.
    pub async fn stop(self) {
        let mut process = self.process;
        // A failed join means the stopping thread panicked; the process is then killed when
        // it drops there.
        let _ = tokio::task::spawn_blocking(move || process.stop(STOP_GRACE)).await;
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The binary that runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `http://127.0.0.1:<port><path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path_and_query)
    }

    /// The folder of the research record (`--data-dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The research record of a scene: `<data-dir>/<scene_id>/events.jsonl`.
    pub fn events_path(&self, scene_id: &str) -> PathBuf {
        self.data_dir.join(scene_id).join("events.jsonl")
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
    }
}
