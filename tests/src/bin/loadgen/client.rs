//! The load generator's protocol-speaking WebSocket clients (tokio-tungstenite, small buffers):
//! [`connect_scene`] (`hello` until `welcome`), the held participant of `hold`, `waitroom` and
//! `matchmaking` ([`hold_client`], counting into [`HoldCounters`], started and stopped together
//! as a [`HoldFleet`]), and the helpers the
//! scenarios share (the process clock [`clock_ns`], [`sleep_until`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pairlab_shared::{
    ClientMessage, Hello, PlayerIndex, Pong, ProbeReady, ProbeResult, ServerMessage, SubjectId,
};
use pairlab_tests::stats::nearest_rank;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};
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
    connect_from(port, subject, scene_id, None).await
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `source` (`None`: the
/// kernel's choice, 127.0.0.1). Linux routes all of 127.0.0.0/8 to loopback, so a run can
/// spread its clients over many source addresses, as clients from many hosts would be.
pub(crate) async fn tcp_from(port: u16, source: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::from((ip, 0)))?;
    }
    socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
}

/// [`connect_scene`] from the loopback address `source` (see [`tcp_from`]).
pub(crate) async fn connect_from(
    port: u16,
    subject: &str,
    scene_id: Option<&str>,
    source: Option<Ipv4Addr>,
) -> std::result::Result<Ws, String> {
    let url = format!("ws://127.0.0.1:{port}/ws");
    let go = async {
        let tcp = tcp_from(port, source)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(
            url.as_str(),
            MaybeTlsStream::Plain(tcp),
            Some(client_config()),
        )
        .await
        .map_err(|e| format!("handshake: {e}"))?;
        let subject_id = SubjectId::parse(subject).map_err(|e| format!("subject id: {e}"))?;
        let hello = ClientMessage::Hello(Hello {
            subject_id,
            scene_id: scene_id.map(str::to_owned),
            resume_token: None,
            link_signature: None,
            recruiter: None,
            browser: None,
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
    /// Clients that sent `leave` when asked to (see [`HoldFleet::spawn_leaving`]).
    pub(crate) left: AtomicUsize,
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
            Signals::stop_only(self.stop_rx.clone()),
            false,
            opts,
        ))
    }

    /// As [`HoldFleet::spawn`], and the client sends `leave` and closes its socket when
    /// `leave` fires (counted in [`HoldCounters::left`]).
    pub(crate) fn spawn_leaving(
        &self,
        subject: String,
        opts: HoldOpts,
        leave: oneshot::Receiver<()>,
    ) -> JoinHandle<()> {
        tokio::spawn(hold_client(
            self.port,
            subject,
            self.counters.clone(),
            self.handshakes.clone(),
            Signals {
                stop: self.stop_rx.clone(),
                leave: Some(leave),
            },
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

/// What a held client watches besides its socket: the fleet's stop signal and, for some, a
/// signal to `leave`.
pub(crate) struct Signals {
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) leave: Option<oneshot::Receiver<()>>,
}

impl Signals {
    /// The stop signal alone: the client stays until the fleet stops.
    pub(crate) fn stop_only(stop: watch::Receiver<bool>) -> Self {
        Signals { stop, leave: None }
    }
}

pub(crate) async fn hold_client(
    port: u16,
    subject: String,
    counters: Arc<HoldCounters>,
    handshakes: Arc<Semaphore>,
    signals: Signals,
    record_connect: bool,
    opts: HoldOpts,
) {
    let Signals {
        mut stop,
        mut leave,
    } = signals;
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
            Ok(()) = async {
                match leave.as_mut() {
                    Some(rx) => rx.await,
                    None => std::future::pending().await,
                }
            } => {
                let _ = ws.send(Message::text(ClientMessage::Leave.to_json())).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                counters.left.fetch_add(1, Ordering::Relaxed);
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

/// What a member knows once its game started.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    /// The game's id, as `game_start` gave it.
    pub(crate) game_id: String,
    /// The other members' player indices (what a report names a partner by).
    pub(crate) partners: Vec<PlayerIndex>,
    /// Whether a probe ran before the game.
    pub(crate) probed: bool,
}

/// After `welcome`: answers every `ping` at once and plays any probe as a member whose probe
/// always succeeds (`probe_ready` on `probe_prepare`, a `probe_result` of [`FAKE_PROBE_RTT_MS`]
/// on `probe_start`, as the `relay` scenario's members do without a browser), until
/// `game_start`, for at most `within`.
///
/// # Errors
/// Why no game started: the socket closed or failed, an `error`, or `within` passed.
pub(crate) async fn until_game(
    ws: &mut Ws,
    within: Duration,
) -> std::result::Result<Started, String> {
    let go = async {
        let mut probed = false;
        loop {
            let text = match ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("closed before game_start".into()),
            };
            match serde_json::from_str::<ServerMessage>(&text) {
                Ok(ServerMessage::Ping(p)) => pong(ws, p.seq).await?,
                Ok(ServerMessage::ProbePrepare(p)) => {
                    probed = true;
                    let ready = ClientMessage::ProbeReady(ProbeReady {
                        probe_session_id: p.probe_session_id,
                    });
                    send(ws, &ready).await?;
                }
                Ok(ServerMessage::ProbeStart(p)) => {
                    let result = ClientMessage::ProbeResult(ProbeResult {
                        probe_session_id: p.probe_session_id,
                        success: true,
                        rtt_ms: Some(FAKE_PROBE_RTT_MS),
                        samples_ms: vec![FAKE_PROBE_RTT_MS; 5],
                        stats_rtt_ms: Some(FAKE_PROBE_RTT_MS),
                        connection: None,
                    });
                    send(ws, &result).await?;
                }
                Ok(ServerMessage::GameStart(g)) => {
                    // Partners are named by player index (no member sees another's id).
                    let partners = (0..g.player_count)
                        .filter(|&i| i != g.player_index)
                        .collect();
                    return Ok(Started {
                        game_id: g.game_id.to_string(),
                        partners,
                        probed,
                    });
                }
                Ok(ServerMessage::Error(e)) => return Err(format!("error {:?}", e.code)),
                _ => {}
            }
        }
    };
    tokio::time::timeout(within, go)
        .await
        .map_err(|_| format!("no game_start within {within:?}"))?
}

/// The RTT a faked probe member reports, ms: under any scene's `max_p2p_rtt_ms` of a run.
pub(crate) const FAKE_PROBE_RTT_MS: f64 = 5.0;

/// Sends one message.
pub(crate) async fn send(ws: &mut Ws, msg: &ClientMessage) -> std::result::Result<(), String> {
    ws.send(Message::text(msg.to_json()))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// Says `leave` and closes as a browser's `close()` does (1 s at most for the close
/// handshake): it reads what the server still sends until the server closes too. Dropping
/// the socket with a frame unread (a partner's `game_ended`) makes the kernel answer with a
/// TCP reset, and a reset makes the server's kernel drop what it had not read yet, the
/// `leave` included: in `churn`, 48,183 of 200,000 participants (the second member of most
/// pairs) were then recorded `participant_dropped` → `grace_expired` instead of `leave`, and
/// lingered in the server for the reconnect grace.
pub(crate) async fn leave(mut ws: Ws) {
    let _ = send(&mut ws, &ClientMessage::Leave).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// One pair of a `fifo` scene through a whole game: both members connect from `source`
/// (`subject-a`, `subject-b`), wait for `game_start` (playing a probe if the scene has one)
/// and `leave`. Returns the connect → `game_start` times of both, µs.
///
/// # Errors
/// The first member's failure (connect, `welcome` or `game_start`).
pub(crate) async fn play_pair(
    port: u16,
    subject: &str,
    scene: Option<&str>,
    source: Option<Ipv4Addr>,
) -> std::result::Result<[u32; 2], String> {
    let member = |suffix: &'static str| async move {
        let t0 = Instant::now();
        let mut ws = connect_from(port, &format!("{subject}-{suffix}"), scene, source).await?;
        until_game(&mut ws, CONNECT_TIMEOUT).await?;
        let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
        leave(ws).await;
        Ok::<u32, String>(us)
    };
    let (a, b) = tokio::join!(member("a"), member("b"));
    Ok([a?, b?])
}
