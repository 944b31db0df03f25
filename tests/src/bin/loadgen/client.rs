//! The load generator's protocol-speaking WebSocket clients (tokio-tungstenite, small buffers):
//! [`connect_scene`] (`hello` until `welcome`), the held participant of `hold`, `waitroom` and
//! `matchmaking` ([`hold_client`], counting into [`HoldCounters`], started and stopped together
//! as a [`HoldFleet`]), and the helpers the
//! scenarios share (the process clock [`clock_ns`], [`sleep_until`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pairlab_shared::{ClientMessage, Hello, Pong, ServerMessage, SubjectId};
use pairlab_tests::stats::nearest_rank;
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a client may take to connect and get `welcome`.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Small buffers on the client side too, so 10,000 clients do not cost the load generator
/// 10,000 × 128 KiB (tungstenite's default read buffer).
pub(crate) fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

/// Connects, says `hello` as `subject`, and returns the socket once `welcome` came (answering
/// any `ping` before it).
pub(crate) async fn connect(port: u16, subject: &str) -> std::result::Result<Ws, String> {
    connect_scene(port, subject, None).await
}

/// [`connect`] into the scene `scene_id` (`None`: the config's first scene).
pub(crate) async fn connect_scene(
    port: u16,
    subject: &str,
    scene_id: Option<&str>,
) -> std::result::Result<Ws, String> {
    let url = format!("ws://127.0.0.1:{port}/ws");
    let go = async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(client_config()), true)
                .await
                .map_err(|e| format!("connect: {e}"))?;
        let subject_id = SubjectId::parse(subject).map_err(|e| format!("subject id: {e}"))?;
        let hello = ClientMessage::Hello(Hello {
            subject_id,
            scene_id: scene_id.map(str::to_owned),
            resume_token: None,
            link_signature: None,
        });
        ws.send(Message::text(hello.to_json()))
            .await
            .map_err(|e| format!("send hello: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMessage>(&t) {
                    Ok(ServerMessage::Welcome(_)) => return Ok(ws),
                    Ok(ServerMessage::Ping(p)) => pong(&mut ws, p.seq).await?,
                    Ok(ServerMessage::Error(e)) => return Err(format!("error {:?}", e.code)),
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("closed before welcome".into()),
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, go)
        .await
        .map_err(|_| format!("no welcome within {CONNECT_TIMEOUT:?}"))?
}

pub(crate) async fn pong(ws: &mut Ws, seq: u64) -> std::result::Result<(), String> {
    ws.send(Message::text(ClientMessage::Pong(Pong { seq }).to_json()))
        .await
        .map_err(|e| format!("send pong: {e}"))
}

/// What the hold clients have seen, together.
#[derive(Default)]
pub(crate) struct HoldCounters {
    pub(crate) welcomed: AtomicUsize,
    pub(crate) failed: AtomicUsize,
    /// Connections that ended while they should have stayed.
    pub(crate) dropped: AtomicUsize,
    pub(crate) pongs: AtomicUsize,
    /// `waitroom` messages received, all clients.
    pub(crate) waitrooms: AtomicU64,
    /// The shortest gap between two `waitroom` updates to one client after its entry message,
    /// µs (`u64::MAX` until there is one); PROTOCOL.md: at most one a second.
    pub(crate) min_update_gap_us: AtomicU64,
    /// Connect → `welcome` times of the clients asked to record them, µs.
    pub(crate) connect_us: Mutex<Vec<u32>>,
    /// `game_start` or `probe_prepare` messages received: a held participant was matched.
    pub(crate) matched: AtomicUsize,
}

impl HoldCounters {
    pub(crate) fn new() -> Self {
        HoldCounters {
            min_update_gap_us: AtomicU64::new(u64::MAX),
            ..HoldCounters::default()
        }
    }
}

/// How a held client behaves beyond the defaults (first scene, pongs at once).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HoldOpts {
    /// The scene to join (`None`: the config's first).
    pub(crate) scene: Option<&'static str>,
    /// How long to wait before answering each `ping`: the server measures this client's RTT
    /// as about this much (the `matchmaking` waiters use it to fail the latency pre-filter).
    pub(crate) pong_delay: Duration,
}

/// The held clients of one run, together: their [`HoldCounters`], the handshakes allowed in
/// flight at once, and the stop signal they all watch. `hold`, `waitroom` and `matchmaking`
/// start their waiting participants through [`HoldFleet::spawn`] and end them with
/// [`HoldFleet::stop`].
pub(crate) struct HoldFleet {
    pub(crate) counters: Arc<HoldCounters>,
    port: u16,
    handshakes: Arc<Semaphore>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
}

impl HoldFleet {
    /// No clients yet, for the server on 127.0.0.1:`port`, at most `concurrency` (at least 1)
    /// handshakes in flight.
    pub(crate) fn new(port: u16, concurrency: usize) -> Self {
        let (stop_tx, stop_rx) = watch::channel(false);
        HoldFleet {
            counters: Arc::new(HoldCounters::new()),
            port,
            handshakes: Arc::new(Semaphore::new(concurrency.max(1))),
            stop_tx,
            stop_rx,
        }
    }

    /// Starts a held client `subject` that waits for a handshake slot and does not record its
    /// connect time.
    pub(crate) fn spawn(&self, subject: String, opts: HoldOpts) -> JoinHandle<()> {
        tokio::spawn(hold_client(
            self.port,
            subject,
            self.counters.clone(),
            self.handshakes.clone(),
            self.stop_rx.clone(),
            false,
            opts,
        ))
    }

    /// The stop signal, for clients started by other means (with their own handshake limit).
    pub(crate) fn stop_rx(&self) -> watch::Receiver<bool> {
        self.stop_rx.clone()
    }

    /// Tells every client to close, without waiting for them (a run that gives up).
    pub(crate) fn stop_now(&self) {
        let _ = self.stop_tx.send(true);
    }

    /// Tells every client to close and waits for `tasks` to end, 10 s at most.
    pub(crate) async fn stop(&self, tasks: Vec<JoinHandle<()>>) {
        self.stop_now();
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::future::join_all(tasks),
        )
        .await;
    }
}

pub(crate) async fn hold_client(
    port: u16,
    subject: String,
    counters: Arc<HoldCounters>,
    handshakes: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    record_connect: bool,
    opts: HoldOpts,
) {
    let permit = handshakes.acquire_owned().await;
    let t0 = Instant::now();
    let mut ws = match connect_scene(port, &subject, opts.scene).await {
        Ok(ws) => ws,
        Err(e) => {
            if counters.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("loadgen: {subject}: {e}");
            }
            return;
        }
    };
    drop(permit);
    if record_connect {
        let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
        let mut v = counters
            .connect_us
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        v.push(us);
    }
    counters.welcomed.fetch_add(1, Ordering::Relaxed);
    let mut waitrooms = 0u64;
    let mut last_waitroom: Option<Instant> = None;
    // The server has one ping outstanding at a time: one delayed pong at most.
    let mut pending_pong: Option<(u64, Instant)> = None;
    loop {
        let pong_due = pending_pong.map(|(_, at)| at);
        tokio::select! {
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return;
            }
            () = sleep_until(pong_due), if pong_due.is_some() => {
                if let Some((seq, _)) = pending_pong.take() {
                    if pong(&mut ws, seq).await.is_err() {
                        break;
                    }
                    counters.pongs.fetch_add(1, Ordering::Relaxed);
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMessage>(&t) {
                    Ok(ServerMessage::Ping(p)) if !opts.pong_delay.is_zero() => {
                        pending_pong = Some((p.seq, Instant::now() + opts.pong_delay));
                    }
                    Ok(ServerMessage::Ping(p)) => {
                        if pong(&mut ws, p.seq).await.is_err() {
                            break;
                        }
                        counters.pongs.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ServerMessage::GameStart(_) | ServerMessage::ProbePrepare(_)) => {
                        counters.matched.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ServerMessage::Waitroom(_)) => {
                        let now = Instant::now();
                        waitrooms += 1;
                        counters.waitrooms.fetch_add(1, Ordering::Relaxed);
                        // The first is the entry message; the gaps between later ones are
                        // the coalesced updates.
                        if let (true, Some(last)) = (waitrooms > 2, last_waitroom) {
                            let gap = u64::try_from((now - last).as_micros()).unwrap_or(u64::MAX);
                            counters.min_update_gap_us.fetch_min(gap, Ordering::Relaxed);
                        }
                        last_waitroom = Some(now);
                    }
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    }
    if !*stop.borrow() {
        counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// The process clock the send and receive times are read on, ns.
pub(crate) fn clock_ns() -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    let t0 = *T0.get_or_init(Instant::now);
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A latency column set of a table: p50, p99 (nearest rank) and max of a step's samples, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Latency {
    pub(crate) p50_us: Option<u32>,
    pub(crate) p99_us: Option<u32>,
    pub(crate) max_us: Option<u32>,
}

impl Latency {
    /// The columns of `sorted_us` (ascending, µs); all `None` when it is empty.
    pub(crate) fn of(sorted_us: &[u32]) -> Latency {
        Latency {
            p50_us: nearest_rank(sorted_us, 0.50),
            p99_us: nearest_rank(sorted_us, 0.99),
            max_us: sorted_us.last().copied(),
        }
    }

    /// Whether the p99 is under `limit_ms`.
    pub(crate) fn p99_under_ms(&self, limit_ms: f64) -> bool {
        self.p99_us
            .is_some_and(|p| f64::from(p) / 1000.0 < limit_ms)
    }
}

pub(crate) fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}
