//! # pairlab-tests: the end-to-end harness
//!
//! The pieces the end-to-end tests in `tests/tests/` are made of: the real `pairlab` binary as a
//! child process ([`Server`]), Debian's `chromedriver` ([`ChromeDriver`]), one headless Chromium
//! per participant driven through WebDriver with [`fantoccini`] ([`Browser`]), and readers of the
//! research record (`<data-dir>/<scene_id>/events.jsonl`, [`read_events`], [`wait_for_events`]).
//!
//! Every process the harness starts is stopped by its PID when its guard drops, also when a test
//! fails half-way: [`Server`] and [`ChromeDriver`] kill their child, and [`Browser`] kills the
//! Chromium processes that carry its own, fresh `--user-data-dir` (Chromium is started by
//! chromedriver, so the harness finds it by that unique profile path in `/proc/<pid>/cmdline`).
//!
//! Waiting is always polling (every [`POLL`], giving up after a deadline such as [`WAIT`]) on
//! something observable: `/healthz`, the page's `data-state`, lines of the record. Sleeps are never
//! assertions.
//!
//! The page's DOM contract the harness reads ([`PageView`]): `<body data-state>`, `#status`,
//! `#waiting-count`, `#countdown`, `#game-id`, `#player-index[data-player-index]`, `#message`,
//! `#error`, `#subject-id`.
//!
//! Environment: `PAIRLAB_BIN` (the binary; default: the newer of `target/debug/pairlab` and
//! `target/release/pairlab`), `PAIRLAB_CHROMEDRIVER` (default `chromedriver` on `PATH`),
//! `PAIRLAB_CHROMIUM` (default `/usr/bin/chromium`), `CARGO_TARGET_DIR`, `RUST_LOG` (passed to
//! the server; default `info`).

pub mod delay_proxy;
pub mod game;
pub mod turn;

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How often the harness polls while waiting.
pub const POLL: Duration = Duration::from_millis(100);

/// The default patience for anything the harness waits for (a page state, a record line).
pub const WAIT: Duration = Duration::from_secs(20);

/// The file the wasm client is served as (`wasm-pack build --target web` names it after the
/// crate `pairlab-client`); the harness checks that the binary embeds it.
pub const WASM_ASSET: &str = "/pkg/pairlab_client_bg.wasm";

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
        /// `pairlab` or `chromedriver`.
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
    /// The page answered the harness's script with something that is not a [`PageView`].
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
    /// An HTTP request the harness made failed at the protocol level.
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

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

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

/// A free TCP port on 127.0.0.1 (bound once by the OS, then released for the child to take).
///
/// # Errors
/// [`HarnessError::Io`] if no socket can be bound.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(io("bind 127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(io("local address of 127.0.0.1:0"))?
        .port();
    Ok(port)
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

/// A minimal HTTP/1.1 GET on 127.0.0.1 (no client crate needed): the status code and the body.
///
/// # Errors
/// [`HarnessError::Io`] when the connection fails or stalls for more than 5 s,
/// [`HarnessError::Http`] when the answer has no status line.
pub async fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    let what = format!("GET http://127.0.0.1:{port}{path}");
    // Some servers (chromedriver) keep the connection open despite `Connection: close`, so the
    // answer ends at `Content-Length` when there is one, else at the end of the stream.
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
            if let Some(head_end) = header_end(&response) {
                let head = String::from_utf8_lossy(&response[..head_end]);
                if let Some(len) = content_length(&head) {
                    if response.len() >= head_end + 4 + len {
                        break;
                    }
                }
            }
        }
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| HarnessError::Http {
            what: what.clone(),
            detail: "no complete answer within 5 s".into(),
        })?
        .map_err(io(what.clone()))?;
    let head_end = header_end(&response).ok_or_else(|| HarnessError::Http {
        what: what.clone(),
        detail: "no end of headers".into(),
    })?;
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| HarnessError::Http {
            what: what.clone(),
            detail: format!("no status in {:?}", head.lines().next().unwrap_or("")),
        })?;
    Ok((status, response[head_end + 4..].to_vec()))
}

fn header_end(response: &[u8]) -> Option<usize> {
    response.windows(4).position(|w| w == b"\r\n\r\n")
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

/// A child process that is killed (by its PID) and reaped when dropped.
#[derive(Debug)]
struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            // Child::kill sends SIGKILL to this child's PID only.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn log_file(path: &Path) -> Result<(Stdio, Stdio)> {
    let out = File::create(path).map_err(io(format!("create {}", path.display())))?;
    let err = out
        .try_clone()
        .map_err(io(format!("clone handle of {}", path.display())))?;
    Ok((Stdio::from(out), Stdio::from(err)))
}

/// A running `pairlab serve`, on a free port of 127.0.0.1, with its config and data folder in a
/// [`WorkDir`]. Killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: ChildGuard,
    port: u16,
    bin: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
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
        let config = work.join("scene.toml");
        fs::write(&config, config_toml).map_err(io(format!("write {}", config.display())))?;
        Self::start_with(work, Some(&config)).await
    }

    /// Like [`Server::start`], without `--config`: the server runs its embedded default scene
    /// (`default`: pairs, `latency_fifo`, `max_server_rtt_ms = 200`, `max_p2p_rtt_ms = 150`).
    ///
    /// # Errors
    /// As [`Server::start`].
    pub async fn start_default(work: &WorkDir) -> Result<Server> {
        Self::start_with(work, None).await
    }

    async fn start_with(work: &WorkDir, config: Option<&Path>) -> Result<Server> {
        let bin = pairlab_bin()?;
        let data_dir = work.join("data");
        fs::create_dir_all(&data_dir).map_err(io(format!("create {}", data_dir.display())))?;
        let log_path = work.join("server.log");
        let (stdout, stderr) = log_file(&log_path)?;
        let port = free_port()?;
        let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let mut command = Command::new(&bin);
        command.arg("serve");
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let child = command
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(io(format!("start {}", bin.display())))?;
        let mut server = Server {
            child: ChildGuard { child },
            port,
            bin,
            data_dir,
            log_path,
        };
        server.wait_healthy().await?;
        let (status, _) = http_get(port, "/").await?;
        if status != 200 {
            return Err(HarnessError::Http {
                what: format!("GET http://127.0.0.1:{port}/"),
                detail: format!("status {status}, expected the page (200)"),
            });
        }
        let (status, _) = http_get(port, WASM_ASSET).await?;
        if status != 200 {
            return Err(HarnessError::ClientNotEmbedded {
                bin: server.bin.display().to_string(),
                status,
            });
        }
        Ok(server)
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.exited() {
                return Err(HarnessError::Exited {
                    name: "pairlab",
                    status,
                    log_path: self.log_path.display().to_string(),
                    log: tail(&self.log_path, 40),
                });
            }
            let last = match http_get(self.port, "/healthz").await {
                Ok((200, _)) => return Ok(()),
                Ok((status, _)) => format!("HTTP {status}"),
                Err(e) => e.to_string(),
            };
            if start.elapsed() > WAIT {
                return Err(HarnessError::Timeout {
                    what: format!("{} to answer /healthz", self.bin.display()),
                    waited_ms: start.elapsed().as_millis(),
                    last: format!("{last}; server log:\n{}", tail(&self.log_path, 40)),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The binary that runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `http://127.0.0.1:<port><path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path_and_query)
    }

    /// The research record of a scene: `<data-dir>/<scene_id>/events.jsonl`.
    pub fn events_path(&self, scene_id: &str) -> PathBuf {
        self.data_dir.join(scene_id).join("events.jsonl")
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path, n)
    }
}

/// A running `chromedriver --port=<free port>` (output to `<work>/chromedriver.log`). Killed by
/// its PID when dropped; drop the [`Browser`]s first (declare them after it).
#[derive(Debug)]
pub struct ChromeDriver {
    child: ChildGuard,
    port: u16,
    log_path: PathBuf,
}

impl ChromeDriver {
    /// Starts chromedriver (`PAIRLAB_CHROMEDRIVER`, default `chromedriver`) and waits for its
    /// `/status` to answer 200.
    ///
    /// # Errors
    /// [`HarnessError::NoChromeDriver`] when it cannot be started, [`HarnessError::Exited`] or
    /// [`HarnessError::Timeout`] when it does not become ready.
    pub async fn start(work: &WorkDir) -> Result<ChromeDriver> {
        let bin = std::env::var("PAIRLAB_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port()?;
        let log_path = work.join("chromedriver.log");
        let (stdout, stderr) = log_file(&log_path)?;
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| HarnessError::NoChromeDriver {
                bin: bin.clone(),
                source,
            })?;
        let mut driver = ChromeDriver {
            child: ChildGuard { child },
            port,
            log_path,
        };
        let start = Instant::now();
        loop {
            if let Some(status) = driver.child.exited() {
                return Err(HarnessError::Exited {
                    name: "chromedriver",
                    status,
                    log_path: driver.log_path.display().to_string(),
                    log: tail(&driver.log_path, 20),
                });
            }
            if let Ok((200, _)) = http_get(port, "/status").await {
                return Ok(driver);
            }
            if start.elapsed() > WAIT {
                return Err(HarnessError::Timeout {
                    what: "chromedriver's /status".into(),
                    waited_ms: start.elapsed().as_millis(),
                    last: tail(&driver.log_path, 20),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The WebDriver endpoint, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// chromedriver's PID.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// What the harness reads from the page (the DOM contract). Texts are trimmed `textContent`;
/// `None` when the element is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PageView {
    /// `<body data-state>`: `connecting`, `waitroom`, `probing`, `game`, `timeout`, `error`,
    /// `closed`.
    pub state: Option<String>,
    /// `#status`.
    pub status: Option<String>,
    /// `#waiting-count`.
    pub waiting: Option<String>,
    /// `#countdown`.
    pub countdown: Option<String>,
    /// `#game-id`.
    pub game_id: Option<String>,
    /// `#player-index`'s text.
    pub player_number: Option<String>,
    /// `#player-index`'s `data-player-index` (0-based).
    pub player_index: Option<String>,
    /// `#message`.
    pub message: Option<String>,
    /// `#error`.
    pub error: Option<String>,
    /// `#subject-id`.
    pub subject_id: Option<String>,
    /// `location.href`.
    pub href: Option<String>,
}

impl PageView {
    /// Whether `data-state` is `state`.
    pub fn is(&self, state: &str) -> bool {
        self.state.as_deref() == Some(state)
    }
}

const PAGE_VIEW_JS: &str = r#"
const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent.trim() : null; };
const pi = document.querySelector('#player-index');
return {
  state: document.body ? (document.body.getAttribute('data-state')) : null,
  status: text('#status'),
  waiting: text('#waiting-count'),
  countdown: text('#countdown'),
  game_id: text('#game-id'),
  player_number: pi ? pi.textContent.trim() : null,
  player_index: pi ? pi.getAttribute('data-player-index') : null,
  message: text('#message'),
  error: text('#error'),
  subject_id: text('#subject-id'),
  href: location.href,
};
"#;

/// The Chromium command line of every test browser (see TOOLCHAIN notes): headless, as root
/// (`--no-sandbox`), nothing that talks to the internet, host ICE candidates not hidden behind
/// mDNS names (`WebRtcHideLocalIpsWithMdns`), and a fresh profile (appended by [`Browser::open`]).
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--window-size=1024,768",
];

/// One headless Chromium process, driven through its own WebDriver session. Its Chromium
/// processes (found by their unique `--user-data-dir`) are killed by PID when dropped.
pub struct Browser {
    name: String,
    client: Option<fantoccini::Client>,
    profile_dir: PathBuf,
    states_seen: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("name", &self.name)
            .field("profile_dir", &self.profile_dir)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts a new Chromium (`PAIRLAB_CHROMIUM`, default `/usr/bin/chromium`) with
    /// [`CHROMIUM_ARGS`] and a fresh profile `<work>/profile-<name>`, in a new WebDriver session
    /// of `driver`.
    ///
    /// # Errors
    /// [`HarnessError::Io`] for the profile folder, [`HarnessError::NewSession`] when Chromium
    /// does not start.
    pub async fn open(driver: &ChromeDriver, work: &WorkDir, name: &str) -> Result<Browser> {
        let profile_dir = work.join(&format!("profile-{name}"));
        if profile_dir.exists() {
            fs::remove_dir_all(&profile_dir)
                .map_err(io(format!("remove {}", profile_dir.display())))?;
        }
        fs::create_dir_all(&profile_dir)
            .map_err(io(format!("create {}", profile_dir.display())))?;
        let chromium =
            std::env::var("PAIRLAB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile_dir.display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        // From here on, a failure must still kill whatever Chromium started.
        let mut browser = Browser {
            name: name.to_owned(),
            client: None,
            profile_dir,
            states_seen: Mutex::new(Vec::new()),
        };
        let client = fantoccini::ClientBuilder::native()
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .map_err(|source| HarnessError::NewSession {
                name: name.to_owned(),
                log_path: driver.log_path.display().to_string(),
                source: Box::new(source),
            })?;
        browser.client = Some(client);
        Ok(browser)
    }

    /// The browser's name in the test.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn client(&self, what: &'static str) -> Result<&fantoccini::Client> {
        self.client.as_ref().ok_or_else(|| HarnessError::Cmd {
            name: self.name.clone(),
            what,
            source: Box::new(fantoccini::error::CmdError::NotW3C(Value::String(
                "session closed".into(),
            ))),
        })
    }

    fn cmd_err(
        &self,
        what: &'static str,
    ) -> impl FnOnce(fantoccini::error::CmdError) -> HarnessError {
        let name = self.name.clone();
        move |source| HarnessError::Cmd {
            name,
            what,
            source: Box::new(source),
        }
    }

    /// Navigates to `url`.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client("goto")?
            .goto(url)
            .await
            .map_err(self.cmd_err("goto"))
    }

    /// Reads the page's [`PageView`] once.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`], [`HarnessError::PageShape`].
    pub async fn view(&self) -> Result<PageView> {
        let got = self
            .client("execute")?
            .execute(PAGE_VIEW_JS, Vec::new())
            .await
            .map_err(self.cmd_err("execute"))?;
        let view: PageView =
            serde_json::from_value(got.clone()).map_err(|source| HarnessError::PageShape {
                name: self.name.clone(),
                got: got.to_string(),
                source,
            })?;
        if let Some(state) = &view.state {
            if let Ok(mut seen) = self.states_seen.lock() {
                if seen.last() != Some(state) {
                    seen.push(state.clone());
                }
            }
        }
        Ok(view)
    }

    /// Polls the page every [`POLL`] until `done` holds, for at most `timeout`.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] with the last [`PageView`] and the states seen, or the errors of
    /// [`Browser::view`].
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&PageView) -> bool,
    ) -> Result<PageView> {
        let start = Instant::now();
        loop {
            let view = self.view().await?;
            if done(&view) {
                return Ok(view);
            }
            if start.elapsed() > timeout {
                return Err(HarnessError::Timeout {
                    what: format!("{}: {what}", self.name),
                    waited_ms: start.elapsed().as_millis(),
                    last: format!("{view:?}; states seen: {}", self.states_seen()),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (up to `timeout`) for `<body data-state="state">`.
    ///
    /// # Errors
    /// As [`Browser::wait_until`].
    pub async fn wait_for_state(&self, state: &str, timeout: Duration) -> Result<PageView> {
        self.wait_until(&format!("body[data-state={state}]"), timeout, |v| {
            v.is(state)
        })
        .await
    }

    /// The distinct `data-state`s seen so far, in order, joined by ` → `.
    pub fn states_seen(&self) -> String {
        match self.states_seen.lock() {
            Ok(seen) => seen.join(" → "),
            Err(_) => String::from("(unavailable)"),
        }
    }

    /// The tab WebDriver commands go to now.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn current_tab(&self) -> Result<Tab> {
        let handle = self
            .client("window")?
            .window()
            .await
            .map_err(self.cmd_err("window"))?;
        Ok(Tab { handle })
    }

    /// Opens a new tab of this same browser (same profile, its own `sessionStorage`), makes it
    /// the current tab and navigates it to `url`.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn open_tab(&self, url: &str) -> Result<Tab> {
        let client = self.client("new_window")?;
        let created = client
            .new_window(true)
            .await
            .map_err(self.cmd_err("new_window"))?;
        let tab = Tab {
            handle: created.handle,
        };
        self.switch_to(&tab).await?;
        self.goto(url).await?;
        Ok(tab)
    }

    /// Makes `tab` the current tab: later commands ([`Browser::view`], …) go to it.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn switch_to(&self, tab: &Tab) -> Result<()> {
        self.client("switch_to_window")?
            .switch_to_window(tab.handle.clone())
            .await
            .map_err(self.cmd_err("switch_to_window"))
    }

    /// Saves a PNG screenshot of the page to `path` (creating its folder).
    ///
    /// # Errors
    /// [`HarnessError::Cmd`], [`HarnessError::Io`].
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let png = self
            .client("screenshot")?
            .screenshot()
            .await
            .map_err(self.cmd_err("screenshot"))?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        }
        fs::write(path, png).map_err(io(format!("write {}", path.display())))
    }

    /// Ends the WebDriver session (chromedriver then quits this Chromium); whatever is left of
    /// it is killed when `self` drops.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn close(mut self) -> Result<()> {
        match self.client.take() {
            Some(client) => client.close().await.map_err(self.cmd_err("close")),
            None => Ok(()),
        }
    }

    /// This browser's `--user-data-dir=<profile>` argument, unique to it.
    pub fn profile_arg(&self) -> String {
        format!("--user-data-dir={}", self.profile_dir.display())
    }

    /// PIDs of the live processes whose command line holds [`Browser::profile_arg`].
    pub fn chromium_pids(&self) -> Vec<u32> {
        pids_with_arg(&self.profile_arg())
    }
}

/// One tab of a [`Browser`] (a WebDriver window handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tab {
    handle: fantoccini::wd::WindowHandle,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The fantoccini session ends on its own only while a runtime still polls it; Chromium
        // must not outlive the test either way.
        drop(self.client.take());
        for pid in self.chromium_pids() {
            kill_pid(pid);
        }
    }
}

/// Sends SIGKILL to one process, by its PID. A PID that is gone already is not an error.
fn kill_pid(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return; // never a process group or "every process"
    }
    // SAFETY: kill(2) with a positive PID and a valid signal number touches no memory of ours.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// PIDs of live processes with `arg` as one of their command-line arguments (Linux `/proc`).
pub fn pids_with_arg(arg: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmd| cmd.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
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

/// Reads a research record: one JSON object per line. A last line without its newline is a
/// write in progress and is skipped. A missing file is an empty record.
///
/// # Errors
/// [`HarnessError::Io`] when the file exists but cannot be read, [`HarnessError::Record`] for a
/// complete line that is not a JSON object.
pub fn read_events(path: &Path) -> Result<Vec<Value>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("read {}", path.display()))(e)),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    let mut events = Vec::new();
    for (i, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| HarnessError::Record {
            path: path.display().to_string(),
            line: i + 1,
            detail: e.to_string(),
        })?;
        if !value.is_object() {
            return Err(HarnessError::Record {
                path: path.display().to_string(),
                line: i + 1,
                detail: format!("a {} instead", json_kind(&value)),
            });
        }
        events.push(value);
    }
    Ok(events)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Polls a research record every [`POLL`] until `done` holds for its events, for at most
/// `timeout`, and returns them.
///
/// # Errors
/// [`HarnessError::Timeout`] with the event names seen, or the errors of [`read_events`].
pub async fn wait_for_events(
    path: &Path,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>> {
    let start = Instant::now();
    loop {
        let events = read_events(path)?;
        if done(&events) {
            return Ok(events);
        }
        if start.elapsed() > timeout {
            return Err(HarnessError::Timeout {
                what: format!("{what} in {}", path.display()),
                waited_ms: start.elapsed().as_millis(),
                last: format!("events: [{}]", event_names(&events).join(", ")),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The `event` of each record line, in order.
pub fn event_names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.get("event").and_then(Value::as_str).unwrap_or("?"))
        .collect()
}

/// The record lines whose `event` is `name`.
pub fn events_named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e.get("event").and_then(Value::as_str) == Some(name))
        .collect()
}

/// Whether some `name` event has `subject_id` equal to `subject`.
pub fn has_event_for(events: &[Value], name: &str, subject: &str) -> bool {
    events_named(events, name)
        .iter()
        .any(|e| e.get("subject_id").and_then(Value::as_str) == Some(subject))
}

/// Where screenshots go: `<target>/e2e-screens/`.
pub fn screens_dir() -> PathBuf {
    target_dir().join("e2e-screens")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_events_skips_a_partial_last_line_and_rejects_non_objects() {
        let dir = std::env::temp_dir().join(format!("pairlab-tests-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("events.jsonl");
        fs::write(
            &path,
            "{\"event\":\"a\"}\n{\"event\":\"b\"}\n{\"event\":\"c\"",
        )
        .expect("write");
        let events = read_events(&path).expect("read");
        assert_eq!(event_names(&events), vec!["a", "b"]);
        fs::write(&path, "{\"event\":\"a\"}\n[1]\n").expect("write");
        match read_events(&path) {
            Err(HarnessError::Record { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a record error on line 2, got {other:?}"),
        }
        assert!(read_events(&dir.join("missing.jsonl"))
            .expect("missing is empty")
            .is_empty());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn has_event_for_matches_event_and_subject() {
        let events = vec![
            json!({"event": "waitroom_timeout", "subject_id": "A"}),
            json!({"event": "participant_joined", "subject_id": "B"}),
        ];
        assert!(has_event_for(&events, "waitroom_timeout", "A"));
        assert!(!has_event_for(&events, "waitroom_timeout", "B"));
        assert_eq!(events_named(&events, "participant_joined").len(), 1);
    }

    #[test]
    fn pids_with_arg_finds_this_process_children_only_by_exact_argument() {
        let marker = format!("--pairlab-test-marker={}", std::process::id());
        // `sh -c CMD NAME`: NAME becomes `$0`, an argument on the command line of the shell.
        // CMD is the builtin `read` on a pipe, so the shell itself stays (dash would replace
        // itself with an external command such as `sleep`, and the marker would vanish).
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("read x")
            .arg(&marker)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        // Right after spawn(2) returns, the child's /proc/PID/cmdline can still read empty for
        // a moment (seen in ~10 % of runs on a 2-core machine, and in CI), so wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = pids_with_arg(&marker);
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            found = pids_with_arg(&marker);
        }
        assert_eq!(found, vec![child.id()]);
        assert!(pids_with_arg(&format!("{marker}x")).is_empty());
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
}
