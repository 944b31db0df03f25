//! The network shell around the sans-IO [`Core`](crate::core::Core): warp routes, one task
//! per WebSocket, one task owning the core.
//!
//! Connections (`accept.rs`): hyper's HTTP/1.1 server with a timer, so that a request head
//! must arrive within `[server] header_read_timeout_ms` (also the idle timeout between
//! requests) and within `max_header_bytes`; connections that are not (yet) WebSockets are
//! capped in total and per client IP (`gate.rs`, which also reads `X-Forwarded-For` from
//! trusted proxies). `fdlimit.rs` raises the open-file limit (`pairlab serve` calls it).
//!
//! Routes (`http.rs`):
//! - `GET /`: the participants' page; `GET /<file>`: the other embedded assets
//!   ([`crate::assets`]), with `ETag`s; with a site folder (`site.rs`, [`Server::site`]) its
//!   files first; `GET /<subject_id>`: the page too (it reads the id from its path).
//! - `GET /healthz`: `{"status":"ok","connections":N,"evicted_connections":N,"participants":N,
//!   "waiting":N,"probes":N,"groups":N,"record_events_refused":N,"scenes":[…],"record":{…}}` (`connections`: open
//!   WebSockets; `evicted_connections`: connections closed since start to make room under a
//!   full `max_http_connections` (`gate.rs`); the counts from the core; `record`: the research record writer's
//!   [`RecordStatus`](crate::record::RecordStatus)). `"status"` is `"degraded"`, with a
//!   `"reason"`, while the record cannot be written or for a while after its queue overflowed
//!   ([`RecordHealth::status`]); the HTTP status stays 200 (the server still serves).
//! - `GET /metrics` (`metrics.rs`): Prometheus' text format with `Authorization: Bearer
//!   <[server] metrics_token>`, 401 without it; 404 when no token is configured
//!   ([`crate::metrics`] says what is counted).
//! - `GET /monitor?token=…` and `/monitor/events?token=…` (`monitor.rs`): the live monitor
//!   page and its Server-Sent Events stream with `[server] monitor_token`, 401 without it; 404
//!   when no token is configured ([`crate::monitor`] says what it shows).
//! - `GET /ws`: the WebSocket of PROTOCOL.md, upgraded by hand (`upgrade.rs`, which says why:
//!   memory); a browser's `Origin` must be allowed by `[server] allowed_origins` (else 403).
//!
//! Shape. No rule of the protocol lives here: the server-wide rules are in
//! [`crate::core::Core`], the per-connection ones (rate limit, frame size, decoding, pings,
//! idle timeout, close codes) in [`crate::core::connection::Connection`]. This module moves
//! bytes and owns tasks:
//! - **The core task** (`core_task.rs`) owns the `Core`. It takes inputs from a bounded channel,
//!   calls `Core::handle` with the time, and between inputs sleeps until
//!   `Core::next_deadline`, then hands the core an `Event::Tick`. It carries out the
//!   `Action`s: `Send` goes into that connection's bounded outbound queue without waiting — a
//!   client whose queue is full is too slow and is closed (1008), so one slow browser never
//!   stalls the others; `Close` closes the connection after what was queued before it (1000);
//!   `Record` goes to the research record writer ([`crate::record`]).
//! - **A connection task** (`connection.rs`) per WebSocket reads frames and hands them to its
//!   `core::connection::Connection` with the time, writes what that and the core send, forwards
//!   the events it makes to the core task, and ends the socket with the close it decides. When
//!   the socket ends, the core gets `Event::Disconnected`.
//! - No lock is held across an `.await`; the only shared state is channels (a `watch` of the
//!   open-connection count among them), a cancellation token, the connection-id counter and,
//!   with a metrics token, the [`Metrics`] (atomic counters) and, with a monitor token, the
//!   [`Monitor`] (behind a mutex held only to feed it or take a snapshot).
//!
//! Files: `mod.rs` ([`Server`], [`RunningServer`], the shutdown order), `accept.rs` (the accept
//! loop, hyper per connection), `gate.rs` (connection caps, client IP), `fdlimit.rs` (the open-file
//! limit), `http.rs` (routes, `/healthz`, files), `upgrade.rs` (`/ws` upgrade, origin check,
//! [`ws_config`]), `metrics.rs` (`/metrics`), `monitor.rs` (`/monitor`), `connection.rs` (the task per WebSocket),
//! `core_task.rs` (the task owning the core; connection ids are minted there).
//!
//! How a client frame reaches the core: `connection.rs` reads it from the socket and hands it
//! to `Connection::handle_frame` (`core/connection.rs`: rate limit, size, decode), polls the
//! resulting `Event::Message` and sends it into the core task's queue; `core_task.rs` takes it
//! and calls `Core::handle` with the time.
//!
//! Start: before the first connection, every scene's record gets `server_started` (version,
//! config hash).
//!
//! Shutdown: when the `shutdown` future given to [`Server::run`] completes, the core gets
//! `Event::Shutdown` (queued behind the events already sent to it): it records
//! `server_stopping` and a final `participant_left` (`server_shutdown`) for every live session,
//! and ignores everything after. Then one [`CancellationToken`] is cancelled. On it the accept
//! loop stops accepting (and open HTTP requests get [`SHUTDOWN_GRACE`] to finish), and every
//! connection task closes its WebSocket with 1001 ("going away") and tells the core it is gone
//! (ignored now, so no `participant_dropped`). The server waits (no
//! polling: a `watch` of the open-connection count) until every WebSocket is closed, then sends
//! the core task its stop as the last input of its queue, and closes the research record
//! (written and synced). Each wait is bounded by [`SHUTDOWN_GRACE`], the record's by
//! [`CLOSE_LIMIT`](crate::record::CLOSE_LIMIT).

mod accept;
mod connection;
mod core_task;
mod fdlimit;
mod gate;
mod http;
mod metrics;
mod monitor;
mod site;
mod upgrade;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigFile, ServerConfig};
use crate::core::connection::Timeouts;
use crate::core::{CoreStats, Event, ResearchEvent};
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::record::{RecordHealth, RecordWriter};
use core_task::{ConnIds, CoreInput, CoreTask};

pub use connection::{CLOSE_TIMEOUT, WRITE_TIMEOUT};
pub use core_task::{CORE_QUEUE, OUTBOUND_QUEUE};
pub use fdlimit::{raise_open_file_limit, FdLimitError, OpenFileLimit};
pub use site::{SiteDir, SiteError};
pub use upgrade::{
    origin_allowed, websocket_accept_key, ws_config, WS_MAX_WRITE_BUFFER, WS_READ_BUFFER,
};

/// How long shutdown waits for HTTP requests to finish, and then for WebSockets to close,
/// before going on without them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The address could not be bound (in use, no permission, not local).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the server for a config file on `bind` until `shutdown` completes, then shuts down
/// cleanly (WebSockets closed with 1001, research record flushed) and returns. The file's
/// `[site] dir` is relative to the config file, which this function does not know: serve a
/// site with [`Server::site`] (as `pairlab serve` does).
///
/// # Errors
/// [`NetError::Bind`] when the address cannot be bound.
pub async fn serve(
    file: ConfigFile,
    bind: SocketAddr,
    data_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NetError> {
    Server::bind(file.config, bind, data_dir)
        .await?
        .server_config(file.server)
        .run(shutdown)
        .await;
    Ok(())
}

/// A bound, not yet running server. Bind to port 0 and read [`Server::local_addr`] to get a
/// free port (tests).
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    idle_timeout: Duration,
    server: ServerConfig,
    config: Arc<Config>,
    data_dir: PathBuf,
    site: Option<Arc<SiteDir>>,
}

impl Server {
    /// Binds the listening socket.
    ///
    /// # Errors
    /// [`NetError::Bind`] when the address cannot be bound.
    pub async fn bind(
        config: Config,
        bind: SocketAddr,
        data_dir: PathBuf,
    ) -> Result<Self, NetError> {
        let listener = listen(bind).map_err(|source| NetError::Bind { addr: bind, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| NetError::Bind { addr: bind, source })?;
        Ok(Server {
            listener,
            addr,
            idle_timeout: crate::core::connection::IDLE_TIMEOUT,
            server: ServerConfig::default(),
            config: Arc::new(config),
            data_dir,
            site: None,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the idle timeout of connections,
    /// [`IDLE_TIMEOUT`](crate::core::connection::IDLE_TIMEOUT) (tests).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Sets the `[server]` settings (origins, proxies, HTTP limits, hello timeout, metrics
    /// token); without this, [`ServerConfig::default`].
    pub fn server_config(mut self, server: ServerConfig) -> Self {
        self.server = server;
        self
    }

    /// Serves the researcher's site folder at `/` (see `site.rs`); without this, only the
    /// embedded files.
    pub fn site(mut self, site: Option<SiteDir>) -> Self {
        self.site = site.map(Arc::new);
        self
    }

    /// Serves until `shutdown` completes, then shuts down cleanly (see the module docs) and
    /// returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let metrics = self.metrics();
        let monitor = self.server.monitor_token.as_ref().map(|_| {
            let scenes = self.config.scenes.iter().map(|s| s.id.as_str());
            Arc::new(std::sync::Mutex::new(Monitor::new(
                scenes,
                self.server.monitor_subject_ids,
            )))
        });
        let on_written = (metrics.is_some() || monitor.is_some()).then(|| {
            let (metrics, monitor) = (metrics.clone(), monitor.clone());
            Box::new(move |scene_id: &str, event: &ResearchEvent| {
                if let Some(m) = &metrics {
                    m.observe(scene_id, event);
                }
                if let Some(m) = &monitor {
                    m.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .observe(Instant::now(), scene_id, event);
                }
            }) as crate::record::OnWritten
        });
        let recorder = RecordWriter::spawn_observed(self.data_dir.clone(), on_written);
        let started = ResearchEvent::server_started(&self.config);
        for scene in &self.config.scenes {
            recorder.handle().send(scene.id.clone(), started.clone());
        }
        let core = CoreTask::spawn(
            self.config.clone(),
            recorder.handle(),
            &self.data_dir,
            metrics.clone(),
            monitor.clone(),
        );
        let stop = CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            let core_inbox = core.inbox();
            async move {
                shutdown.await;
                // The core ends every live session first, so each ends as `server_shutdown`
                // and the sockets' closing below is not recorded as drops.
                let told = core_inbox.send(CoreInput::Event(Event::Shutdown));
                match tokio::time::timeout(SHUTDOWN_GRACE, told).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => tracing::error!(
                        "the core task has stopped; live sessions get no final record line"
                    ),
                    Err(_) => tracing::error!(
                        "the core's queue stayed full for {SHUTDOWN_GRACE:?}; live sessions get no final record line"
                    ),
                }
                stop.cancel();
            }
        });
        let shared = Arc::new(Shared {
            core: core.inbox(),
            conn_ids: ConnIds::default(),
            open: watch::Sender::new(0),
            stop: stop.clone(),
            stats: core.stats(),
            timeouts: Timeouts {
                idle: self.idle_timeout,
                hello: Duration::from_millis(self.server.hello_timeout_ms),
            },
            server: self.server,
            scene_ids: self.config.scenes.iter().map(|s| s.id.clone()).collect(),
            record: recorder.health(),
            evicted_connections: Arc::default(),
            site: self.site,
            metrics,
            monitor,
        });

        accept::serve(self.listener, shared.clone(), &stop).await;

        tracing::info!("shutting down: waiting for WebSockets to close");
        let mut open = shared.open.subscribe();
        if tokio::time::timeout(SHUTDOWN_GRACE, open.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            tracing::warn!(
                "{} WebSocket(s) still open {SHUTDOWN_GRACE:?} after shutdown began; not waiting for them",
                *open.borrow()
            );
        }
        if let Err(e) = core.stop().await {
            tracing::error!("core task failed: {e}");
        }
        recorder.close().await;
        tracing::info!("shut down; research record closed");
    }

    /// The server's [`Metrics`] when `[server] metrics_token` is set (else none are kept).
    fn metrics(&self) -> Option<Arc<Metrics>> {
        self.server.metrics_token.as_ref()?;
        let scenes = self.config.scenes.iter().map(|s| s.id.as_str());
        match Metrics::new(scenes) {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                tracing::error!("{e}; /metrics is off");
                None
            }
        }
    }

    /// Runs the server in a background task; stop it with [`RunningServer::shutdown`] (or by
    /// dropping the [`RunningServer`]).
    pub fn spawn(self) -> RunningServer {
        let addr = self.addr;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            // Sent or dropped: either way, shut down.
            let _ = rx.await;
        }));
        RunningServer {
            addr,
            stop: Some(tx),
            task,
        }
    }
}

/// The listening socket. `TCP_NODELAY` is set on it, and Linux gives it to every accepted
/// socket: without it, a `ping` written right after `welcome` waits for the client's delayed
/// ACK of the `welcome` (Nagle's algorithm, RFC 896, meeting delayed ACKs, RFC 1122 §4.2.3.2),
/// which adds ~40 ms to the first server-RTT sample.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A server running in a background task (see [`Server::spawn`]).
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shuts the server down and waits until it has (research record flushed).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::error!("server task failed: {e}");
        }
    }
}

/// What the routes and the connection tasks share.
struct Shared {
    /// The core task's inbox.
    core: mpsc::Sender<CoreInput>,
    /// Mints the id of each new connection.
    conn_ids: ConnIds,
    /// How many WebSockets are open: `/healthz` reads it, shutdown waits for it to reach 0.
    open: watch::Sender<usize>,
    /// Cancelled when shutdown begins.
    stop: CancellationToken,
    /// The core's latest counts, for `/healthz`.
    stats: watch::Receiver<CoreStats>,
    /// How long a WebSocket may stay silent, and unwelcomed.
    timeouts: Timeouts,
    /// The `[server]` settings.
    server: ServerConfig,
    /// The configured scenes' ids, for `/healthz`.
    scene_ids: Vec<String>,
    /// The research record writer's health, for `/healthz`.
    record: Arc<RecordHealth>,
    /// How many connections the full total cap has evicted (`gate.rs`), for `/healthz`.
    evicted_connections: Arc<std::sync::atomic::AtomicU64>,
    /// The researcher's site folder, if any.
    site: Option<Arc<SiteDir>>,
    /// The `/metrics` counters, when `[server] metrics_token` is set.
    metrics: Option<Arc<Metrics>>,
    /// What `/monitor` shows, when `[server] monitor_token` is set.
    monitor: Option<Arc<std::sync::Mutex<Monitor>>>,
}

/// Sleeps until `deadline`; forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
