//! The network shell around the sans-IO [`Core`]: warp routes, one task per WebSocket, one
//! task owning the core.
//!
//! Routes:
//! - `GET /`: the participants' page; `GET /<file>`: the other embedded assets
//!   ([`crate::assets`]), with `ETag`s.
//! - `GET /healthz`: `{"status":"ok","connections":N,"participants":N,"waiting":N,"probes":N,
//!   "groups":N,"scenes":[…]}` (`connections`: open WebSockets; the rest from the core).
//! - `GET /ws`: the WebSocket of PROTOCOL.md. The upgrade (RFC 6455 §4.2) is done here
//!   ([`websocket_accept_key`], then hyper's `OnUpgrade`), not by `warp::ws()`, for one
//!   reason: memory. warp 0.4's `Ws` builder sets tungstenite's message and frame limits but
//!   not its buffers, and tungstenite's default read buffer is 128 KiB, allocated and
//!   zero-filled for every connection (so resident, and zero-filled again on every read).
//!   Measured with `loadgen hold` (tests/src/bin/loadgen.rs) at 10,000 held connections:
//!   1.40 GB, ~140 KB each, with warp's socket; 131 MB, ~12.5 KB each, with [`ws_config`]
//!   (a [`WS_READ_BUFFER`] of 4 KiB).
//!
//! Shape (no rule of the protocol lives here; they are all in [`crate::core`]):
//! - **The core task** owns the [`Core`]. It takes [`Event`]s from a bounded channel, calls
//!   [`Core::handle`] with the time, and between events sleeps until [`Core::next_deadline`],
//!   then hands the core an [`Event::Tick`]. It carries out the [`Action`]s: `Send` goes into
//!   that connection's bounded outbound queue without waiting — a client whose queue is full is
//!   too slow and is closed (1008), so one slow browser never stalls the others; `Close` closes
//!   the connection after what was queued before it (1000); `Record` goes to the research
//!   record writer ([`crate::record`]).
//! - **A connection task** per WebSocket reads frames, applies the per-connection rate limit
//!   ([`RateLimiter::standard`]; over it: `error` `rate_limited`, then close 1008), decodes
//!   text frames with [`ClientMessage::decode`] into [`Event::Message`] or
//!   [`Event::Malformed`] (a binary frame is malformed: not JSON), and writes what the core
//!   sends. Frames over [`MAX_FRAME_BYTES`] close the socket with 1009 (RFC 6455 §7.4.1,
//!   "message too big"). After it writes `welcome` it runs the connection's
//!   [`PingSchedule`] itself, so the server-RTT timing does not include the core's queue: it
//!   sends `ping`s, answers `pong`s (→ [`Event::RttSample`]) and does not forward them. Before
//!   `welcome`, every frame goes to the core. A connection silent for [`IDLE_TIMEOUT`] is
//!   closed as dead. When the socket ends, [`Event::Disconnected`].
//! - No lock is held across an `.await`; the only shared state is atomics and channels.
//!
//! Shutdown: stop accepting, close every WebSocket with 1001 ("going away"), let the core see
//! the disconnects, stop it, and flush the research record.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pairlab_shared::{ClientMessage, DecodeError, ErrorCode, Ping, ServerMessage, MAX_FRAME_BYTES};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use warp::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use warp::hyper::upgrade::{OnUpgrade, Upgraded};
use warp::{Filter, Reply};

use crate::assets;
use crate::config::Config;
use crate::core::ratelimit::RateLimiter;
use crate::core::rtt::PingSchedule;
use crate::core::{Action, ConnId, Core, CoreClock, CoreStats, Event, RandomIds};
use crate::record::{RecordHandle, RecordWriter};

/// Messages the core may queue for one connection before that client counts as too slow and is
/// closed.
pub const OUTBOUND_QUEUE: usize = 256;
/// Events the connection tasks may queue for the core before they wait (back-pressure on
/// reading their sockets, never on the core).
pub const CORE_QUEUE: usize = 4096;
/// How long one write to a socket may take before the client counts as too slow.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits for the client's answer to its close frame.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection that sends no frame at all for this long is closed (1008) as dead: before
/// `hello` that is a client that never says who it is; after `welcome` the server pings every
/// few seconds ([`crate::core::rtt::PERIODIC_PING_GAP`]) and an honest client answers each at
/// once, so silence this long means the network or the browser is gone. The close is a drop:
/// the participant's reconnect grace applies.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// tungstenite's read buffer per connection, bytes (its default is 128 KiB). Frames arrive
/// a few hundred bytes at a time; a larger frame (up to [`MAX_FRAME_BYTES`]) grows the buffer
/// as needed, so this only sets the resting size, which is what 10,000 held connections pay.
pub const WS_READ_BUFFER: usize = 4 * 1024;
/// The most a connection's unwritten output may grow to, bytes, before a write fails
/// (tungstenite's default is unbounded); far above any one message the server sends.
pub const WS_MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// How long shutdown waits for HTTP requests to finish, and then for WebSockets to close,
/// before going on without them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// WebSocket close codes (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure: the core closed the connection (after `waitroom_timeout`, an error
    /// that closes, a session taken over).
    pub const NORMAL: u16 = 1000;
    /// Going away: the server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error: the client broke the WebSocket framing.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Policy violation: rate limited, too slow to read what it is sent, or silent for
    /// [`super::IDLE_TIMEOUT`].
    pub const POLICY: u16 = 1008;
    /// Message too big: a frame over `MAX_FRAME_BYTES`.
    pub const TOO_BIG: u16 = 1009;
}

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

/// Runs the server on `bind` until `shutdown` completes, then shuts down cleanly (WebSockets
/// closed with 1001, research record flushed) and returns.
///
/// # Errors
/// [`NetError::Bind`] when the address cannot be bound.
pub async fn serve(
    config: Config,
    bind: SocketAddr,
    data_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NetError> {
    Server::bind(config, bind, data_dir)
        .await?
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
    config: Arc<Config>,
    data_dir: PathBuf,
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
            idle_timeout: IDLE_TIMEOUT,
            config: Arc::new(config),
            data_dir,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces [`IDLE_TIMEOUT`] (tests).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Serves until `shutdown` completes, then shuts down cleanly and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let recorder = RecordWriter::spawn(self.data_dir.clone());
        let (core_tx, core_rx) = mpsc::channel(CORE_QUEUE);
        let (stats_tx, stats_rx) = watch::channel(CoreStats::default());
        let core_task = tokio::spawn(run_core(
            new_core(self.config.clone()),
            core_rx,
            recorder.handle(),
            stats_tx,
        ));
        // One stop signal for everything: warp stops accepting, WebSockets close with 1001.
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let shared = Arc::new(Shared {
            core_tx: core_tx.clone(),
            next_conn: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            stop: stop_rx.clone(),
            stats: stats_rx,
            idle_timeout: self.idle_timeout,
            scene_ids: self.config.scenes.iter().map(|s| s.id.clone()).collect(),
        });

        let mut warp_stop = stop_rx.clone();
        let http = warp::serve(routes(shared.clone()))
            .incoming(self.listener)
            .graceful(async move {
                let _ = warp_stop.wait_for(|stop| *stop).await;
            })
            .run();
        let mut grace_stop = stop_rx;
        let http_grace = async move {
            let _ = grace_stop.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            () = http => {}
            () = http_grace => {
                tracing::warn!("HTTP requests still open {SHUTDOWN_GRACE:?} after shutdown began; not waiting for them");
            }
        }

        tracing::info!("shutting down: waiting for WebSockets to close");
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while shared.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = core_tx.send(CoreInput::Stop).await;
        if let Err(e) = core_task.await {
            tracing::error!("core task failed: {e}");
        }
        recorder.close().await;
        tracing::info!("shut down; research record flushed");
    }

    /// Runs the server in a background task; stop it with [`RunningServer::shutdown`].
    pub fn spawn(self) -> RunningServer {
        let addr = self.addr;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
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

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

struct Shared {
    core_tx: mpsc::Sender<CoreInput>,
    next_conn: AtomicU64,
    open: AtomicUsize,
    stop: watch::Receiver<bool>,
    stats: watch::Receiver<CoreStats>,
    idle_timeout: Duration,
    scene_ids: Vec<String>,
}

fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
       + Clone
       + Send
       + Sync
       + 'static {
    let with_shared = {
        let shared = shared.clone();
        warp::any().map(move || shared.clone())
    };
    // Anything at /ws that is not a valid upgrade falls through to the files (404), as it did
    // with `warp::ws()`.
    let ws = warp::path("ws")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and_then(|headers: HeaderMap| async move {
            websocket_accept_key(&headers).ok_or_else(warp::reject::not_found)
        })
        .and(warp::ext::optional::<OnUpgrade>())
        .and(with_shared.clone())
        .map(upgrade);
    let health = warp::path("healthz")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_shared)
        .map(|shared: Arc<Shared>| {
            let stats = *shared.stats.borrow();
            warp::reply::json(&serde_json::json!({
                "status": "ok",
                "connections": shared.open.load(Ordering::Relaxed),
                "participants": stats.participants,
                "waiting": stats.waiting,
                "probes": stats.probes,
                "groups": stats.groups,
                "scenes": shared.scene_ids,
            }))
            .into_response()
        });
    let files = warp::get()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("if-none-match"))
        .map(|path: warp::path::FullPath, inm: Option<String>| asset_response(path.as_str(), inm));
    ws.or(health).unify().or(files).unify()
}

/// The socket of one participant: tungstenite over the connection hyper handed over.
type Socket = WebSocketStream<hyper_util::rt::TokioIo<Upgraded>>;

/// The WebSocket settings of every connection: [`WS_READ_BUFFER`], each message written
/// through at once (every send is flushed anyway), output bounded by [`WS_MAX_WRITE_BUFFER`],
/// and messages and frames limited to [`MAX_FRAME_BYTES`] (PROTOCOL.md: larger closes with
/// 1009).
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// Whether `headers` ask for a WebSocket upgrade (RFC 6455 §4.2.1: `Connection` lists
/// `upgrade`, `Upgrade` lists `websocket`, `Sec-WebSocket-Version: 13`, a
/// `Sec-WebSocket-Key` of 16 bytes in base64), and if so the `Sec-WebSocket-Accept` value
/// that answers the key (§4.2.2). The method (GET) is checked by the route.
pub fn websocket_accept_key(headers: &HeaderMap) -> Option<String> {
    let lists = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !lists(header::CONNECTION, "upgrade") || !lists(header::UPGRADE, "websocket") {
        return None;
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION)?.as_bytes() != b"13" {
        return None;
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)?
        .as_bytes()
        .trim_ascii();
    // base64 of 16 bytes: 22 characters and "==".
    if key.len() != 24 || !key.ends_with(b"==") {
        return None;
    }
    Some(derive_accept_key(key))
}

/// Answers a valid upgrade request with `101 Switching Protocols` and, once hyper hands the
/// connection over, runs [`connection`] on it with [`ws_config`].
fn upgrade(
    accept: String,
    on_upgrade: Option<OnUpgrade>,
    shared: Arc<Shared>,
) -> warp::reply::Response {
    let Some(on_upgrade) = on_upgrade else {
        // Not an HTTP/1.1 connection that can be taken over (hyper adds `OnUpgrade` to every
        // request of one).
        return warp::reply::with_status("not an upgradable connection\n", StatusCode::BAD_REQUEST)
            .into_response();
    };
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = hyper_util::rt::TokioIo::new(upgraded);
                let socket =
                    WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
                connection(socket, shared).await;
            }
            Err(e) => tracing::debug!("websocket upgrade failed: {e}"),
        }
    });
    let mut res = warp::reply::Response::default();
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    res
}

fn asset_response(path: &str, if_none_match: Option<String>) -> warp::reply::Response {
    let Some(asset) = assets::get(path) else {
        return warp::reply::with_status("not found\n", StatusCode::NOT_FOUND).into_response();
    };
    let not_modified = if_none_match
        .as_deref()
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    let builder = Response::builder()
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::ETAG, asset.etag.as_str());
    let built = if not_modified {
        builder.status(StatusCode::NOT_MODIFIED).body(Vec::new())
    } else {
        builder
            .header(header::CONTENT_TYPE, asset.content_type.as_ref())
            .body(asset.body.into_owned())
    };
    match built {
        Ok(r) => r.into_response(),
        Err(e) => {
            tracing::error!(path, "cannot build the response: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The core task
// ---------------------------------------------------------------------------------------------

/// The server's core: its clock origin is now, its ids are random (UUID v4).
fn new_core(config: Arc<Config>) -> Core {
    let origin_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let clock = CoreClock {
        origin: Instant::now(),
        origin_unix_s,
    };
    Core::new(config, clock, Box::new(RandomIds))
}

enum CoreInput {
    /// A new connection and the way to reach it; sent before any of its events.
    Open {
        conn: ConnId,
        out: mpsc::Sender<ServerMessage>,
        kill: oneshot::Sender<()>,
    },
    Event(Event),
    Stop,
}

struct Link {
    out: mpsc::Sender<ServerMessage>,
    kill: oneshot::Sender<()>,
}

async fn run_core(
    mut core: Core,
    mut rx: mpsc::Receiver<CoreInput>,
    record: RecordHandle,
    stats: watch::Sender<CoreStats>,
) {
    let mut links: HashMap<ConnId, Link> = HashMap::new();
    let mut actions: Vec<Action> = Vec::new();
    // A core whose deadline does not move on after a Tick must not make this loop spin.
    let mut min_wake: Option<Instant> = None;
    loop {
        let deadline = core
            .next_deadline()
            .map(|d| min_wake.map_or(d, |m| d.max(m)));
        let input = if deadline.is_some_and(|d| d <= Instant::now()) {
            // Due already: deadlines are not starved by a busy inbox.
            CoreInput::Event(Event::Tick)
        } else {
            tokio::select! {
                biased;
                input = rx.recv() => match input {
                    Some(input) => input,
                    None => break,
                },
                _ = sleep_until(deadline), if deadline.is_some() => CoreInput::Event(Event::Tick),
            }
        };
        let now = Instant::now();
        let is_tick = matches!(input, CoreInput::Event(Event::Tick));
        match input {
            CoreInput::Open { conn, out, kill } => {
                links.insert(conn, Link { out, kill });
                core.handle(now, Event::Connected { conn }, &mut actions);
            }
            CoreInput::Event(event) => {
                let gone = match event {
                    Event::Disconnected { conn } => Some(conn),
                    _ => None,
                };
                core.handle(now, event, &mut actions);
                if let Some(conn) = gone {
                    links.remove(&conn);
                }
            }
            CoreInput::Stop => break,
        }
        let new_stats = core.stats();
        stats.send_if_modified(|s| std::mem::replace(s, new_stats) != new_stats);
        min_wake = match core.next_deadline() {
            Some(d) if is_tick && d <= now => {
                tracing::warn!("core deadline did not advance after a tick");
                Some(now + Duration::from_millis(5))
            }
            _ => None,
        };
        for action in actions.drain(..) {
            match action {
                Action::Send { conn, msg } => {
                    let Some(link) = links.get(&conn) else {
                        tracing::debug!(%conn, "send to a connection that is gone");
                        continue;
                    };
                    match link.out.try_send(msg) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::warn!(
                                %conn,
                                "client too slow: its outbound queue is full; closing it"
                            );
                            if let Some(link) = links.remove(&conn) {
                                let _ = link.kill.send(());
                            }
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            links.remove(&conn);
                        }
                    }
                }
                Action::Close { conn } => {
                    // Dropping the sender ends the connection's queue: it writes what is
                    // queued, then closes with 1000.
                    links.remove(&conn);
                }
                Action::Record { scene_id, event } => record.send(scene_id, event),
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// Connection tasks
// ---------------------------------------------------------------------------------------------

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed (close frame or EOF): answer its close, nothing else.
    ByPeer,
    /// The server closes with this code and reason.
    Close(u16, &'static str),
    /// The transport broke: nothing more can be sent.
    Broken,
}

/// Counts open connections for `/healthz` and shutdown.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn connection(socket: Socket, shared: Arc<Shared>) {
    shared.open.fetch_add(1, Ordering::SeqCst);
    let _guard = OpenGuard(shared.clone());
    let conn = ConnId::new(shared.next_conn.fetch_add(1, Ordering::Relaxed));
    let (mut sink, mut stream) = socket.split();
    let mut stop = shared.stop.clone();
    let (out_tx, mut out_rx) = mpsc::channel::<ServerMessage>(OUTBOUND_QUEUE);
    let (kill_tx, mut kill_rx) = oneshot::channel::<()>();
    let core = shared.core_tx.clone();
    // A socket that arrives while the server shuts down, or after the core has stopped, is
    // turned away with 1001.
    let open = CoreInput::Open {
        conn,
        out: out_tx,
        kill: kill_tx,
    };
    let shutting_down = *stop.borrow();
    if shutting_down || core.send(open).await.is_err() {
        close(
            &mut sink,
            &mut stream,
            End::Close(close_code::GOING_AWAY, "server shutting down"),
        )
        .await;
        return;
    }
    tracing::debug!(%conn, "connection opened");

    let mut limiter = RateLimiter::standard(Instant::now());
    let mut pings: Option<PingSchedule> = None;
    let mut kill_armed = true;
    let mut last_frame = Instant::now();

    let end = loop {
        let ping_at = pings.as_ref().map(PingSchedule::next_at);
        // Biased: closing wins over writing, writing over reading (the rate limit bounds reading).
        tokio::select! {
            biased;
            killed = &mut kill_rx, if kill_armed => match killed {
                Ok(()) => break End::Close(close_code::POLICY, "too slow to read messages"),
                // The core dropped the link (it closed the connection): the queue ends too.
                Err(_) => kill_armed = false,
            },
            _ = stop.changed() => break End::Close(close_code::GOING_AWAY, "server shutting down"),
            out = out_rx.recv() => match out {
                Some(msg) => {
                    let welcome = matches!(msg, ServerMessage::Welcome(_));
                    if !write(&mut sink, &msg).await {
                        break End::Broken;
                    }
                    if welcome && pings.is_none() {
                        pings = Some(PingSchedule::new(Instant::now()));
                    }
                }
                None => break End::Close(close_code::NORMAL, ""),
            },
            _ = sleep_until(Some(last_frame + shared.idle_timeout)) => {
                tracing::info!(%conn, "no frame for {:?}; closing", shared.idle_timeout);
                break End::Close(close_code::POLICY, "idle: no frames received");
            }
            _ = sleep_until(ping_at), if ping_at.is_some() => {
                if let Some(seq) = pings.as_mut().and_then(|p| p.poll(Instant::now())) {
                    if !write(&mut sink, &ServerMessage::Ping(Ping { seq })).await {
                        break End::Broken;
                    }
                }
            }
            frame = stream.next() => {
                let msg = match frame {
                    None => break End::ByPeer,
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => {
                        if is_too_big(&e) {
                            tracing::debug!(%conn, "frame too big: {e}");
                            break End::Close(close_code::TOO_BIG, "frame larger than 65536 bytes");
                        }
                        tracing::debug!(%conn, "websocket read error: {e}");
                        break End::Close(close_code::PROTOCOL_ERROR, "websocket protocol error");
                    }
                };
                if let Message::Close(_) = msg {
                    break End::ByPeer;
                }
                let now = Instant::now();
                last_frame = now;
                if !limiter.allow(now) {
                    tracing::info!(%conn, "rate limited");
                    let err = ServerMessage::error(
                        ErrorCode::RateLimited,
                        "Too many messages in a short time; the connection is closed.",
                    );
                    if !write(&mut sink, &err).await {
                        break End::Broken;
                    }
                    break End::Close(close_code::POLICY, "rate limited");
                }
                let event = if let Message::Text(text) = &msg {
                    let text = text.as_str();
                    if text.len() > MAX_FRAME_BYTES {
                        break End::Close(close_code::TOO_BIG, "frame larger than 65536 bytes");
                    }
                    match ClientMessage::decode(text) {
                        Ok(ClientMessage::Pong(pong)) if pings.is_some() => {
                            // Answered here, on the connection's own clock; never forwarded.
                            pings
                                .as_mut()
                                .and_then(|p| p.on_pong(pong.seq, now))
                                .map(|rtt_ms| Event::RttSample { conn, rtt_ms })
                        }
                        Ok(msg) => Some(Event::Message { conn, msg }),
                        Err(error) => Some(Event::Malformed { conn, error }),
                    }
                } else if let Message::Binary(_) = msg {
                    Some(Event::Malformed {
                        conn,
                        error: DecodeError::NotJson(
                            "a binary frame; send JSON in text frames".to_owned(),
                        ),
                    })
                } else {
                    // WebSocket-level ping/pong: tungstenite answers pings itself.
                    None
                };
                if let Some(event) = event {
                    if core.send(CoreInput::Event(event)).await.is_err() {
                        break End::Close(close_code::GOING_AWAY, "server shutting down");
                    }
                }
            }
        }
    };
    drop(out_rx);
    // The core learns at once; the close handshake below may take a moment.
    let _ = core
        .send(CoreInput::Event(Event::Disconnected { conn }))
        .await;
    tracing::debug!(%conn, ?end, "connection ended");
    close(&mut sink, &mut stream, end).await;
}

type Sink = futures_util::stream::SplitSink<Socket, Message>;
type Stream = futures_util::stream::SplitStream<Socket>;

/// Writes one message; `false` when the socket is broken or the client did not take it within
/// [`WRITE_TIMEOUT`].
async fn write(sink: &mut Sink, msg: &ServerMessage) -> bool {
    match tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::text(msg.to_json()))).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!("websocket write error: {e}");
            false
        }
        Err(_) => {
            tracing::info!("websocket write timed out; client too slow");
            false
        }
    }
}

/// Finishes the close handshake for `end`, within [`CLOSE_TIMEOUT`].
async fn close(sink: &mut Sink, stream: &mut Stream, end: End) {
    let finish = async {
        match end {
            End::Broken => {}
            End::ByPeer => {
                // tungstenite queued the answer to the client's close; flush it.
                let _ = sink.close().await;
            }
            End::Close(code, reason) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                if sink.send(Message::Close(Some(frame))).await.is_ok() {
                    // Read (and drop) until the client answers the close, so the socket is
                    // not reset under data the client already sent.
                    while let Some(Ok(msg)) = stream.next().await {
                        if msg.is_close() {
                            break;
                        }
                    }
                }
                let _ = sink.close().await;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, finish).await;
}

/// Whether a read error is tungstenite's "message too long" (over `max_message_size` or
/// `max_frame_size`).
fn is_too_big(e: &WsError) -> bool {
    matches!(e, WsError::Capacity(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MatchmakerKind, SceneConfig};
    use pairlab_shared::{Hello, SubjectId};

    fn config() -> Arc<Config> {
        Arc::new(Config {
            scenes: vec![SceneConfig::with_defaults("s", 2, MatchmakerKind::Fifo)],
            ice_servers: vec![],
            turn: None,
        })
    }

    fn hello(conn: u64, subject: &str) -> CoreInput {
        CoreInput::Event(Event::Message {
            conn: ConnId::new(conn),
            msg: ClientMessage::Hello(Hello {
                subject_id: SubjectId::parse(subject).unwrap(),
                scene_id: None,
                resume_token: None,
            }),
        })
    }

    fn upgrade_headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// RFC 6455 §1.3's worked example: key `dGhlIHNhbXBsZSBub25jZQ==` is answered with
    /// `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`; header tokens are matched in lists and without case.
    #[test]
    fn accept_key_follows_rfc_6455() {
        let ok = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(
            websocket_accept_key(&upgrade_headers(&ok)).as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        // Each requirement, missing or wrong, refuses the upgrade.
        for (i, bad) in [
            ("connection", "keep-alive"),
            ("upgrade", "h2c"),
            ("sec-websocket-version", "8"),
            ("sec-websocket-key", "short"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut headers = ok;
            headers[i] = bad;
            assert_eq!(
                websocket_accept_key(&upgrade_headers(&headers)),
                None,
                "{bad:?}"
            );
            let without: Vec<_> = ok.iter().copied().filter(|(k, _)| *k != bad.0).collect();
            assert_eq!(
                websocket_accept_key(&upgrade_headers(&without)),
                None,
                "no {}",
                bad.0
            );
        }
    }

    /// The settings every connection gets: the small read buffer this module exists for, and
    /// PROTOCOL.md's 64 KiB limit on messages and frames.
    #[test]
    fn socket_config_has_small_buffers_and_the_protocol_limits() {
        let c = ws_config();
        assert_eq!(c.read_buffer_size, WS_READ_BUFFER);
        assert!(c.read_buffer_size < WebSocketConfig::default().read_buffer_size);
        assert!(c.max_write_buffer_size > c.write_buffer_size);
        assert_eq!(c.max_message_size, Some(MAX_FRAME_BYTES));
        assert_eq!(c.max_frame_size, Some(MAX_FRAME_BYTES));
    }

    /// A client whose outbound queue is full is closed (its kill signal fires) instead of
    /// the core waiting for it; other clients are served on.
    #[tokio::test]
    async fn a_full_outbound_queue_kills_that_connection_only() {
        let dir = std::env::temp_dir().join(format!("pairlab-net-test-{}", std::process::id()));
        let recorder = RecordWriter::spawn(&dir);
        let (tx, rx) = mpsc::channel(16);
        let (stats_tx, stats_rx) = watch::channel(CoreStats::default());
        let core = tokio::spawn(run_core(
            new_core(config()),
            rx,
            recorder.handle(),
            stats_tx,
        ));

        // conn 1 can hold one message and never reads; conn 2 reads.
        let (slow_out, mut slow_rx) = mpsc::channel(1);
        let (slow_kill, mut slow_killed) = oneshot::channel();
        let (ok_out, mut ok_rx) = mpsc::channel(16);
        let (ok_kill, mut ok_killed) = oneshot::channel();
        tx.send(CoreInput::Open {
            conn: ConnId::new(1),
            out: slow_out,
            kill: slow_kill,
        })
        .await
        .unwrap();
        tx.send(CoreInput::Open {
            conn: ConnId::new(2),
            out: ok_out,
            kill: ok_kill,
        })
        .await
        .unwrap();
        tx.send(hello(1, "slow")).await.unwrap();
        // welcome fills the queue; the error for this frame does not fit.
        tx.send(CoreInput::Event(Event::Malformed {
            conn: ConnId::new(1),
            error: DecodeError::NotObject,
        }))
        .await
        .unwrap();
        tx.send(hello(2, "fine")).await.unwrap();

        let killed = tokio::time::timeout(Duration::from_secs(5), &mut slow_killed).await;
        assert!(
            matches!(killed, Ok(Ok(()))),
            "the slow client is closed: {killed:?}"
        );
        assert!(matches!(
            slow_rx.recv().await,
            Some(ServerMessage::Welcome(_))
        ));
        let got = tokio::time::timeout(Duration::from_secs(5), ok_rx.recv()).await;
        assert!(
            matches!(got, Ok(Some(ServerMessage::Welcome(_)))),
            "{got:?}"
        );
        assert!(
            ok_killed.try_recv().is_err(),
            "the other client is untouched"
        );
        assert!(stats_rx.borrow().participants >= 1);

        tx.send(CoreInput::Stop).await.unwrap();
        core.await.unwrap();
        recorder.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
