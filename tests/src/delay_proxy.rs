//! A UDP delay proxy on tokio: the harness's way to make a slow, lossy or broken network on
//! loopback, where the kernel may have no netem.
//!
//! ```text
//!  client A ──┐                    ┌── upstream socket for A ──┐
//!  client B ──┼── listen socket ───┼── upstream socket for B ──┼── upstream (coturn)
//!             │  (DelayProxy)      └── …                       │
//! ```
//!
//! Every client address gets its own upstream socket, so the upstream (coturn) sees distinct
//! clients, exactly as without the proxy. Each datagram is held for the delay of its direction
//! (`up`: client → upstream, `down`: upstream → client) as it is when the datagram arrives, in a
//! FIFO queue per flow and direction: order is preserved within a flow, and a slow flow never
//! blocks another. A datagram is dropped with the loss probability when it arrives, and every
//! datagram is dropped while the proxy is paused (also those already queued when the pause
//! begins: a paused link delivers nothing).
//!
//! All settings change while the proxy runs, through a cloneable [`ProxyHandle`].
//!
//! Per participant: with TURN REST credentials (username `"<expiry>:<subject_id>"`), each
//! client flow can get its own extra delay ([`ProxyHandle::set_user_delay_ms`]). The proxy reads
//! the STUN `USERNAME` attribute (RFC 8489 §14.3) of the flow's authenticated TURN requests
//! and, once it names a user with a delay, holds every later datagram of that flow, both
//! directions, that much longer: several browsers behind one proxy then have different paths.
//!
//! Through the proxy a request/answer exchange crosses it once each way, so its RTT is about
//! `up + down` plus the base RTT. With both WebRTC peers relayed through a proxy in front of
//! coturn, each packet crosses it twice per direction (an RTT of ≈ 4·D plus the base for
//! `up = down = D`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::{HarnessError, Result};

/// The largest datagram the proxy forwards (bytes): the largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// The seed of the loss PRNG: a run's loss pattern is the same every time (for a given order
/// of arrivals).
const LOSS_SEED: u64 = 0x5EED_5EED_5EED_5EED;

/// A datagram waiting in a direction's queue: when it is due (arrival + the delay at arrival)
/// and its bytes.
type Queued = (Instant, Vec<u8>);

/// A running UDP delay proxy. Dropping it (or [`DelayProxy::stop`]) ends all its tasks and
/// closes its sockets; [`ProxyHandle`]s kept elsewhere then only read the final counters.
#[derive(Debug)]
pub struct DelayProxy {
    handle: ProxyHandle,
}

/// The control of a [`DelayProxy`]: cheap to clone, usable from any task while it runs.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

/// A snapshot of a proxy's datagram counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyCounters {
    /// Datagrams from clients the proxy has taken in (admitted into their flow's queue), sent
    /// on or not yet: what a test waits for instead of sleeping ("the proxy has it").
    pub up_queued: u64,
    /// Datagrams from the upstream taken in, likewise.
    pub down_queued: u64,
    /// Datagrams sent on to the upstream (client → upstream).
    pub up_forwarded: u64,
    /// Datagrams from clients dropped (loss or pause).
    pub up_dropped: u64,
    /// Datagrams sent back to clients (upstream → client).
    pub down_forwarded: u64,
    /// Datagrams from the upstream dropped (loss or pause).
    pub down_dropped: u64,
    /// Distinct client addresses seen (one upstream socket each).
    pub clients: u64,
}

impl ProxyCounters {
    /// Forwarded datagrams, both directions.
    pub fn forwarded(&self) -> u64 {
        self.up_forwarded + self.down_forwarded
    }

    /// Dropped datagrams, both directions.
    pub fn dropped(&self) -> u64 {
        self.up_dropped + self.down_dropped
    }
}

#[derive(Debug)]
struct Shared {
    local_addr: SocketAddr,
    upstream: SocketAddr,
    delay_up_ms: AtomicU64,
    delay_down_ms: AtomicU64,
    /// The loss probability in [0, 1], as `f64::to_bits`.
    loss_bits: AtomicU64,
    paused: AtomicBool,
    /// splitmix64 state: a tiny deterministic PRNG for the loss decisions.
    rng: AtomicU64,
    up_queued: AtomicU64,
    down_queued: AtomicU64,
    up_forwarded: AtomicU64,
    up_dropped: AtomicU64,
    down_forwarded: AtomicU64,
    down_dropped: AtomicU64,
    clients: AtomicU64,
    /// The upstream port of each client, for tests and debugging.
    upstream_ports: Mutex<HashMap<SocketAddr, u16>>,
    /// Extra one-way delay per TURN username suffix, ms (see [`ProxyHandle::set_user_delay_ms`]).
    user_delays_ms: Mutex<Vec<(String, u64)>>,
    /// Every task of the proxy, aborted on stop.
    tasks: Mutex<Vec<AbortHandle>>,
    stopped: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Up,
    Down,
}

impl Shared {
    fn delay(&self, dir: Direction) -> Duration {
        let ms = match dir {
            Direction::Up => self.delay_up_ms.load(Ordering::Relaxed),
            Direction::Down => self.delay_down_ms.load(Ordering::Relaxed),
        };
        Duration::from_millis(ms)
    }

    fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// The extra one-way delay for a flow whose TURN username is `user`, ms, if one is set.
    fn user_delay_ms(&self, user: &str) -> Option<u64> {
        let delays = self.user_delays_ms.lock().ok()?;
        delays
            .iter()
            .find(|(suffix, _)| user.ends_with(suffix.as_str()))
            .map(|&(_, ms)| ms)
    }

    /// A uniform sample in [0, 1) from splitmix64 (Steele, Lea, Flood 2014).
    fn next_unit(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits, scaled: exactly representable, strictly below 1.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether a datagram arriving now is let through (not paused, not lost).
    fn admit(&self) -> bool {
        if self.paused() {
            return false;
        }
        let loss = f64::from_bits(self.loss_bits.load(Ordering::Relaxed));
        loss <= 0.0 || self.next_unit() >= loss
    }

    fn count(&self, dir: Direction, forwarded: bool) {
        let counter = match (dir, forwarded) {
            (Direction::Up, true) => &self.up_forwarded,
            (Direction::Up, false) => &self.up_dropped,
            (Direction::Down, true) => &self.down_forwarded,
            (Direction::Down, false) => &self.down_dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Registers a task to abort on stop; aborts it at once if the proxy is stopped already.
    fn track(&self, task: AbortHandle) {
        match self.tasks.lock() {
            Ok(mut tasks) if !self.stopped.load(Ordering::SeqCst) => tasks.push(task),
            _ => task.abort(),
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let tasks = match self.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for task in tasks {
            task.abort();
        }
    }
}

impl DelayProxy {
    /// Binds `listen` (normally `127.0.0.1:0`) and forwards to `upstream`, with no delay, no
    /// loss, not paused. Must be called within a tokio runtime; the proxy's tasks run on it.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when `listen` cannot be bound.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<DelayProxy> {
        let socket = UdpSocket::bind(listen)
            .await
            .map_err(|source| HarnessError::Io {
                what: format!("bind the delay proxy on {listen}"),
                source,
            })?;
        let local_addr = socket.local_addr().map_err(|source| HarnessError::Io {
            what: format!("local address of the delay proxy on {listen}"),
            source,
        })?;
        let shared = Arc::new(Shared {
            local_addr,
            upstream,
            delay_up_ms: AtomicU64::new(0),
            delay_down_ms: AtomicU64::new(0),
            loss_bits: AtomicU64::new(0f64.to_bits()),
            paused: AtomicBool::new(false),
            rng: AtomicU64::new(LOSS_SEED),
            up_queued: AtomicU64::new(0),
            down_queued: AtomicU64::new(0),
            up_forwarded: AtomicU64::new(0),
            up_dropped: AtomicU64::new(0),
            down_forwarded: AtomicU64::new(0),
            down_dropped: AtomicU64::new(0),
            clients: AtomicU64::new(0),
            upstream_ports: Mutex::new(HashMap::new()),
            user_delays_ms: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        });
        let task = tokio::spawn(listen_loop(Arc::new(socket), Arc::clone(&shared)));
        shared.track(task.abort_handle());
        Ok(DelayProxy {
            handle: ProxyHandle { shared },
        })
    }

    /// A control handle for this proxy.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// Ends every task of the proxy and closes its sockets (also done on drop).
    pub fn stop(self) {
        drop(self);
    }
}

impl std::ops::Deref for DelayProxy {
    type Target = ProxyHandle;

    fn deref(&self) -> &ProxyHandle {
        &self.handle
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.handle.shared.stop();
    }
}

impl ProxyHandle {
    /// The address clients send to (the bound listen address, with its real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Sets the delay of each direction, ms: `up` for client → upstream, `down` for
    /// upstream → client. Applies to datagrams arriving from now on; queued ones keep theirs
    /// (and, to keep order, a datagram never overtakes one queued before it).
    pub fn set_delay_ms(&self, up: u64, down: u64) {
        self.shared.delay_up_ms.store(up, Ordering::Relaxed);
        self.shared.delay_down_ms.store(down, Ordering::Relaxed);
    }

    /// The current delays `(up, down)`, ms.
    pub fn delay_ms(&self) -> (u64, u64) {
        (
            self.shared.delay_up_ms.load(Ordering::Relaxed),
            self.shared.delay_down_ms.load(Ordering::Relaxed),
        )
    }

    /// Sets the probability (clamped to [0, 1]; NaN counts as 0) that an arriving datagram is
    /// dropped, in both directions. 0 drops none, 1 drops all.
    pub fn set_loss(&self, p: f64) {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self.shared.loss_bits.store(p.to_bits(), Ordering::Relaxed);
    }

    /// The current loss probability.
    pub fn loss(&self) -> f64 {
        f64::from_bits(self.shared.loss_bits.load(Ordering::Relaxed))
    }

    /// While paused, every datagram is dropped, in both directions, queued ones included.
    pub fn pause(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::Relaxed);
    }

    /// Whether the proxy is paused.
    pub fn is_paused(&self) -> bool {
        self.shared.paused()
    }

    /// The datagram counters so far.
    pub fn counters(&self) -> ProxyCounters {
        let s = &self.shared;
        ProxyCounters {
            up_queued: s.up_queued.load(Ordering::Relaxed),
            down_queued: s.down_queued.load(Ordering::Relaxed),
            up_forwarded: s.up_forwarded.load(Ordering::Relaxed),
            up_dropped: s.up_dropped.load(Ordering::Relaxed),
            down_forwarded: s.down_forwarded.load(Ordering::Relaxed),
            down_dropped: s.down_dropped.load(Ordering::Relaxed),
            clients: s.clients.load(Ordering::Relaxed),
        }
    }

    /// Delays every flow whose TURN username ends with `user_suffix` by `one_way_ms` more in
    /// each direction (on top of [`ProxyHandle::set_delay_ms`]), from its first authenticated
    /// TURN request on. With coturn's REST credentials the username is
    /// `"<expiry>:<subject_id>"`, so `":alice"` gives alice's browser its own path: a relayed
    /// round trip between alice (`a` ms) and bob (`b` ms) is then ≈ 2·(a + b) plus the rest.
    /// A later call for the same suffix replaces its delay; flows already identified keep theirs.
    pub fn set_user_delay_ms(&self, user_suffix: &str, one_way_ms: u64) {
        if let Ok(mut delays) = self.shared.user_delays_ms.lock() {
            delays.retain(|(s, _)| s != user_suffix);
            delays.push((user_suffix.to_owned(), one_way_ms));
        }
    }

    /// The local port of the upstream socket the proxy opened for `client`, if it has seen it.
    pub fn upstream_port_of(&self, client: SocketAddr) -> Option<u16> {
        self.shared
            .upstream_ports
            .lock()
            .ok()
            .and_then(|ports| ports.get(&client).copied())
    }
}

/// Receives from clients; opens one upstream flow per new client address.
async fn listen_loop(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        // Errors on a UDP socket are per datagram (an ICMP report, a truncation): keep going.
        let Ok((n, client)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let received_at = Instant::now();
        let flow = match flows.entry(client) {
            Entry::Occupied(flow) => flow.into_mut(),
            Entry::Vacant(slot) => match open_flow(&socket, &shared, client).await {
                Some(flow) => slot.insert(flow),
                None => {
                    shared.count(Direction::Up, false);
                    continue;
                }
            },
        };
        if !flow.identified {
            if let Some(ms) = stun_username(&buf[..n]).and_then(|u| shared.user_delay_ms(u)) {
                flow.extra_ms.store(ms, Ordering::Relaxed);
                flow.identified = true;
            }
        }
        if !shared.admit() {
            shared.count(Direction::Up, false);
            continue;
        }
        let extra = Duration::from_millis(flow.extra_ms.load(Ordering::Relaxed));
        let due = received_at + shared.delay(Direction::Up) + extra;
        // Counted before it is handed on, so `queued` is never behind `forwarded`.
        shared.up_queued.fetch_add(1, Ordering::Relaxed);
        if flow.up.send((due, buf[..n].to_vec())).is_err() {
            shared.up_queued.fetch_sub(1, Ordering::Relaxed);
            shared.count(Direction::Up, false);
        }
    }
}

/// One client's flow, as the listen loop keeps it.
struct Flow {
    /// The up direction's queue.
    up: mpsc::UnboundedSender<Queued>,
    /// The flow's own extra one-way delay, ms (shared with its upstream receiver).
    extra_ms: Arc<AtomicU64>,
    /// Whether a TURN username with a delay was found (then it is not looked for again).
    identified: bool,
}

/// The `USERNAME` attribute (type 0x0006, RFC 8489 §14.3) of a STUN message, if `datagram`
/// is one (the first two bits 0, the magic cookie 0x2112A442 at bytes 4..8, RFC 8489 §5) and
/// carries it as UTF-8. TURN ChannelData (first byte 0x40–0x7F) and anything else: `None`.
pub fn stun_username(datagram: &[u8]) -> Option<&str> {
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    const USERNAME: u16 = 0x0006;
    if datagram.len() < 20 || datagram[0] & 0xC0 != 0 || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(20..20 + length)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == USERNAME {
            return std::str::from_utf8(value).ok();
        }
        // Attributes are padded to a multiple of 4 bytes.
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// Binds the upstream socket of a new client and starts its three tasks: the up queue, the
/// upstream receiver and the down queue. `None` when the socket cannot be opened.
async fn open_flow(
    listen: &Arc<UdpSocket>,
    shared: &Arc<Shared>,
    client: SocketAddr,
) -> Option<Flow> {
    let bind: SocketAddr = if shared.upstream.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    };
    let up_socket = UdpSocket::bind(bind).await.ok()?;
    up_socket.connect(shared.upstream).await.ok()?;
    let port = up_socket.local_addr().ok()?.port();
    if let Ok(mut ports) = shared.upstream_ports.lock() {
        ports.insert(client, port);
    }
    shared.clients.fetch_add(1, Ordering::Relaxed);
    let up_socket = Arc::new(up_socket);

    let (up_tx, up_rx) = mpsc::unbounded_channel::<Queued>();
    let (down_tx, down_rx) = mpsc::unbounded_channel::<Queued>();

    let up_queue = tokio::spawn(drain_queue(
        up_rx,
        Arc::clone(shared),
        Direction::Up,
        Target::Upstream(Arc::clone(&up_socket)),
    ));
    shared.track(up_queue.abort_handle());

    let extra_ms = Arc::new(AtomicU64::new(0));
    let receiver = tokio::spawn(upstream_receiver(
        Arc::clone(&up_socket),
        Arc::clone(shared),
        down_tx,
        Arc::clone(&extra_ms),
    ));
    shared.track(receiver.abort_handle());

    let down_queue = tokio::spawn(drain_queue(
        down_rx,
        Arc::clone(shared),
        Direction::Down,
        Target::Client(Arc::clone(listen), client),
    ));
    shared.track(down_queue.abort_handle());
    Some(Flow {
        up: up_tx,
        extra_ms,
        identified: false,
    })
}

/// Where a queue delivers: the upstream (connected socket) or a client (via the listen socket).
enum Target {
    Upstream(Arc<UdpSocket>),
    Client(Arc<UdpSocket>, SocketAddr),
}

/// Receives the upstream's datagrams for one client and queues them for the down direction.
async fn upstream_receiver(
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    down: mpsc::UnboundedSender<Queued>,
    extra_ms: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        // A connected UDP socket reports ICMP "port unreachable" as a recv error: keep going.
        let Ok(n) = socket.recv(&mut buf).await else {
            continue;
        };
        let received_at = Instant::now();
        if !shared.admit() {
            shared.count(Direction::Down, false);
            continue;
        }
        let extra = Duration::from_millis(extra_ms.load(Ordering::Relaxed));
        let due = received_at + shared.delay(Direction::Down) + extra;
        shared.down_queued.fetch_add(1, Ordering::Relaxed);
        if down.send((due, buf[..n].to_vec())).is_err() {
            shared.down_queued.fetch_sub(1, Ordering::Relaxed);
            shared.count(Direction::Down, false);
            return;
        }
    }
}

/// Delivers one flow-direction's datagrams in arrival order, each when it is due (arrival + the
/// delay at arrival; after a delay cut a datagram still waits for those queued before it), and
/// drops those that come due while the proxy is paused.
async fn drain_queue(
    mut rx: mpsc::UnboundedReceiver<Queued>,
    shared: Arc<Shared>,
    dir: Direction,
    target: Target,
) {
    while let Some((due, data)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if shared.paused() {
            shared.count(dir, false);
            continue;
        }
        let sent = match &target {
            Target::Upstream(socket) => socket.send(&data).await.is_ok(),
            Target::Client(socket, client) => socket.send_to(&data, client).await.is_ok(),
        };
        shared.count(dir, sent);
    }
}
