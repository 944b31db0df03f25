//! A coturn (`turnserver`) harness: a TURN server on 127.0.0.1 for the tests and the
//! benchmarks, with either static long-term credentials (`--lt-cred-mech --user=USER:PASS`) or
//! coturn's short-lived REST credentials (`--use-auth-secret --static-auth-secret=SECRET`, see
//! [`rest_credentials`]); no TLS, no DTLS, no CLI, loopback peers allowed.
//!
//! Each server gets a free listening port (UDP and TCP) and a relay port range (by default a
//! free one of [`RELAY_PORTS`] ports; [`CoturnConfig`] may ask for a wider one), both chosen at
//! run time below the kernel's ephemeral range ([`crate::ports`]), and a folder for `turndb`, `turn.pid` and `turn.log` (coturn's
//! `--log-file=stdout`): its own temp dir, or a given one. [`Coturn`] waits until the server
//! answers a STUN Binding Request (RFC 5389 §6) and stops it by its PID when dropped (SIGTERM,
//! then SIGKILL after [`STOP_GRACE`]; the child is reaped). An own temp dir is removed then,
//! unless the thread is panicking (a failing test): then it stays for whoever debugs it.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use pairlab_shared::IceServer;
use sha1::Sha1;
use tokio::net::UdpSocket;

use crate::error::io;
use crate::ports::{free_block, Protocols};
use crate::process::{Process, Wait, POLL, WAIT};
use crate::Result;

/// How many relay ports each server gets (`--min-port`..=`--max-port`).
pub const RELAY_PORTS: u16 = 32;

/// How long [`Coturn`]'s drop waits after SIGTERM before it sends SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// The realm every harness server uses (`--realm`).
pub const REALM: &str = "pairlab";

/// The subject id [`Coturn::ice_server`] puts into REST credentials in secret mode.
pub const DEFAULT_REST_SUBJECT: &str = "pairlab-test";

/// The lifetime of the REST credentials [`Coturn::ice_server`] makes in secret mode, seconds.
pub const DEFAULT_REST_TTL_S: u64 = 3600;

/// STUN's magic cookie (RFC 5389 §6).
const MAGIC_COOKIE: u32 = 0x2112_A442;
/// STUN message types (RFC 5389 §6, §18.1): Binding Request and Binding Success Response.
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;

/// How the server authenticates TURN clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnAuth {
    /// Long-term credentials (RFC 5389 §10.2): `--lt-cred-mech --user=USER:PASS`.
    Static {
        /// The TURN username.
        user: String,
        /// The TURN password.
        pass: String,
    },
    /// coturn's REST API credentials: `--use-auth-secret --static-auth-secret=SECRET`; clients
    /// use [`rest_credentials`].
    Secret {
        /// The shared secret.
        secret: String,
    },
}

/// A running `turnserver` on 127.0.0.1. Stopped by its PID when dropped.
#[derive(Debug)]
pub struct Coturn {
    process: Process,
    port: u16,
    relay_ports: (u16, u16),
    auth: TurnAuth,
    dir: PathBuf,
    /// Whether `dir` is the server's own temp dir (removed on drop).
    own_dir: bool,
}

/// How a [`Coturn`] is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoturnConfig {
    /// How clients authenticate.
    pub auth: TurnAuth,
    /// The relay port range `(min, max)`, inclusive (`None`: a free range of [`RELAY_PORTS`]
    /// ports below the ephemeral range). A benchmark that opens many allocations one after
    /// the other needs more (coturn does not release closed allocations at once): it asks
    /// [`crate::ports::free_block`] for a longer block.
    pub relay_ports: Option<(u16, u16)>,
    /// Where `turndb`, `turn.pid` and `turn.log` go, kept after the server stops (`None`: a
    /// fresh temp dir of its own, removed on drop).
    pub dir: Option<PathBuf>,
}

impl CoturnConfig {
    /// `auth`, a free relay range, an own temp dir.
    pub fn new(auth: TurnAuth) -> CoturnConfig {
        CoturnConfig {
            auth,
            relay_ports: None,
            dir: None,
        }
    }
}

/// coturn's REST credentials (the "TURN REST API" draft, draft-uberti-behave-turn-rest-00 §2.2,
/// as coturn implements it with `--use-auth-secret`): `username = "<expiry>:<subject_id>"` with
/// `expiry = now_unix + ttl_s` (Unix seconds), `credential = base64(HMAC-SHA1(secret, username))`
/// (standard base64 with padding).
///
/// The server mints these too, for its participants. This copy is deliberately independent of
/// the server's (the harness does not import it): written from coturn's scheme and checked
/// against a vector computed with python3's hmac (`tests/tests/turn.rs`), it is what the tests
/// hand to coturn directly, so a mistake in the server's minting shows up as coturn rejecting
/// the server's credentials while the harness's are accepted, instead of being shared by both.
pub fn rest_credentials(
    secret: &str,
    subject_id: &str,
    ttl_s: u64,
    now_unix: u64,
) -> (String, String) {
    let username = format!("{}:{subject_id}", now_unix.saturating_add(ttl_s));
    // HMAC accepts keys of any length (RFC 2104 §3), so `new_from_slice` cannot fail here.
    let credential = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    (username, credential)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Coturn {
    /// Starts a server with static long-term credentials `user`/`pass` and waits until it
    /// answers STUN (at most [`WAIT`]).
    ///
    /// # Errors
    /// [`crate::HarnessError::Io`] (temp dir, ports, spawn: `turnserver` missing — install `coturn`
    /// with scripts/setup.sh), [`crate::HarnessError::Exited`] with the log tail when it stops before
    /// answering, [`crate::HarnessError::Timeout`] with the log tail.
    pub async fn start_static(user: &str, pass: &str) -> Result<Coturn> {
        Self::start(TurnAuth::Static {
            user: user.to_owned(),
            pass: pass.to_owned(),
        })
        .await
    }

    /// Starts a server with coturn's REST credentials for `secret` (see [`rest_credentials`])
    /// and waits until it answers STUN.
    ///
    /// # Errors
    /// As [`Coturn::start_static`].
    pub async fn start_secret(secret: &str) -> Result<Coturn> {
        Self::start(TurnAuth::Secret {
            secret: secret.to_owned(),
        })
        .await
    }

    /// Starts a server with `auth` and waits until it answers STUN.
    ///
    /// # Errors
    /// As [`Coturn::start_static`].
    pub async fn start(auth: TurnAuth) -> Result<Coturn> {
        Self::start_with(CoturnConfig::new(auth)).await
    }

    /// Starts a server as `config` says and waits until it answers STUN.
    ///
    /// # Errors
    /// As [`Coturn::start_static`].
    pub async fn start_with(config: CoturnConfig) -> Result<Coturn> {
        let (dir, own_dir) = match config.dir {
            Some(dir) => {
                fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
                (dir, false)
            }
            None => (fresh_temp_dir()?, true),
        };
        // coturn listens on UDP and TCP; its relay ports are UDP. Both below the kernel's
        // ephemeral range (`crate::ports`), so no other socket is handed them meanwhile.
        let port = free_block(1, Protocols::BOTH)?;
        let relay_ports = match config.relay_ports {
            Some(range) => range,
            None => {
                let min = free_block(RELAY_PORTS, Protocols::UDP)?;
                (min, min + (RELAY_PORTS - 1))
            }
        };
        let mut command = Command::new("turnserver");
        command
            .arg("-n")
            .arg("--listening-ip=127.0.0.1")
            .arg("--relay-ip=127.0.0.1")
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={}", relay_ports.0))
            .arg(format!("--max-port={}", relay_ports.1))
            .arg(format!("--realm={REALM}"))
            .arg("--fingerprint")
            .arg("--no-tls")
            .arg("--no-dtls")
            .arg("--no-cli")
            .arg("--allow-loopback-peers")
            .arg(format!("--userdb={}", dir.join("turndb").display()))
            .arg(format!("--pidfile={}", dir.join("turn.pid").display()))
            .arg("--log-file=stdout")
            .arg("--simple-log");
        match &config.auth {
            TurnAuth::Static { user, pass } => {
                command
                    .arg("--lt-cred-mech")
                    .arg(format!("--user={user}:{pass}"));
            }
            TurnAuth::Secret { secret } => {
                command
                    .arg("--use-auth-secret")
                    .arg(format!("--static-auth-secret={secret}"));
            }
        }
        let process = Process::spawn(
            "turnserver",
            &mut command,
            &dir.join("turn.log"),
            "; install coturn: scripts/setup.sh",
        )?;
        let mut turn = Coturn {
            process,
            port,
            relay_ports,
            auth: config.auth,
            dir,
            own_dir,
        };
        turn.wait_ready(WAIT).await?;
        Ok(turn)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let wait = Wait::new(
            format!("turnserver on 127.0.0.1:{} to answer STUN", self.port),
            timeout,
        )
        .every(Duration::ZERO);
        let server = self.addr();
        let socket = UdpSocket::bind(("127.0.0.1", 0))
            .await
            .map_err(io("bind 127.0.0.1:0 for the STUN probe"))?;
        loop {
            self.process.check_running()?;
            // A probe waits up to one POLL for its answer, so the loop polls at that pace.
            let last = match stun_binding(&socket, server, POLL).await {
                Ok(true) => return Ok(()),
                Ok(false) => String::from("no STUN Binding Success within the poll"),
                Err(e) => {
                    tokio::time::sleep(POLL).await;
                    format!("STUN probe: {e}")
                }
            };
            wait.tick(format!(
                "{last}; its log ({}):\n{}",
                self.log_path().display(),
                self.log_tail(40)
            ))
            .await?;
        }
    }

    /// Sends one STUN Binding Request to the server and waits up to `timeout` for its Binding
    /// Success response: whether it came.
    ///
    /// # Errors
    /// [`crate::HarnessError::Io`] when the probe socket fails.
    pub async fn stun_ping(&self, timeout: Duration) -> Result<bool> {
        let socket = UdpSocket::bind(("127.0.0.1", 0))
            .await
            .map_err(io("bind 127.0.0.1:0 for the STUN probe"))?;
        stun_binding(&socket, self.addr(), timeout).await
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The listening port (UDP and TCP) on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The relay port range `(min, max)`, inclusive.
    pub fn relay_ports(&self) -> (u16, u16) {
        self.relay_ports
    }

    /// How the server authenticates.
    pub fn auth(&self) -> &TurnAuth {
        &self.auth
    }

    /// The server's temp dir (`turndb`, `turn.pid`, `turn.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
    }

    /// The `RTCIceServer` for this server over UDP: `turn:127.0.0.1:<port>?transport=udp`
    /// (RFC 7065) with the static credentials, or in secret mode with [`rest_credentials`] for
    /// [`DEFAULT_REST_SUBJECT`], valid [`DEFAULT_REST_TTL_S`] from now.
    pub fn ice_server(&self) -> IceServer {
        self.ice_server_for(DEFAULT_REST_SUBJECT, DEFAULT_REST_TTL_S)
    }

    /// Like [`Coturn::ice_server`], with REST credentials for `subject_id` valid `ttl_s` seconds
    /// from now in secret mode (static mode ignores both).
    pub fn ice_server_for(&self, subject_id: &str, ttl_s: u64) -> IceServer {
        self.ice_server_via(self.addr(), subject_id, ttl_s)
    }

    /// The `RTCIceServer` with `addr` in its URL instead of the server's own address: for a
    /// [`crate::delay_proxy::DelayProxy`] in front of it (`turn:<proxy>?transport=udp`).
    pub fn ice_server_via(&self, addr: SocketAddr, subject_id: &str, ttl_s: u64) -> IceServer {
        let (username, credential) = match &self.auth {
            TurnAuth::Static { user, pass } => (user.clone(), pass.clone()),
            TurnAuth::Secret { secret } => rest_credentials(secret, subject_id, ttl_s, unix_now()),
        };
        IceServer {
            urls: vec![format!("turn:{addr}?transport=udp")],
            username: Some(username),
            credential: Some(credential),
        }
    }

    /// Stops the server now (SIGTERM, SIGKILL after [`STOP_GRACE`]) and reaps it: its exit
    /// status, `None` if it could not be reaped.
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.process.stop(STOP_GRACE)
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        self.process.stop(STOP_GRACE);
        if !self.own_dir {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "turnserver's files are kept for debugging in {}",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh `<tmp>/pairlab-coturn-<pid>-<n>/`.
fn fresh_temp_dir() -> Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pairlab-coturn-{}-{n}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io(format!("remove {}", dir.display())))?;
    }
    fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    Ok(dir)
}

/// A STUN Binding Request (RFC 5389 §6): type 0x0001, length 0, the magic cookie and a
/// 12-byte transaction id.
pub fn binding_request(transaction_id: [u8; 12]) -> [u8; 20] {
    let mut msg = [0u8; 20];
    msg[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // msg[2..4]: length 0 (no attributes).
    msg[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    msg[8..20].copy_from_slice(&transaction_id);
    msg
}

/// Whether `msg` is a STUN Binding Success Response (type 0x0101, RFC 5389 §6) to
/// `transaction_id`.
pub fn is_binding_success(msg: &[u8], transaction_id: &[u8; 12]) -> bool {
    msg.len() >= 20
        && msg[0..2] == BINDING_SUCCESS.to_be_bytes()
        && msg[4..8] == MAGIC_COOKIE.to_be_bytes()
        && msg[8..20] == transaction_id[..]
}

/// 12 transaction-id bytes that differ per call (time, PID and a counter through splitmix64;
/// STUN needs uniqueness here, not secrecy).
pub(crate) fn transaction_id() -> [u8; 12] {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ u64::from(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut id = [0u8; 12];
    id[0..8].copy_from_slice(&next().to_be_bytes());
    id[8..12].copy_from_slice(&next().to_be_bytes()[0..4]);
    id
}

/// One Binding transaction on `socket` to `server`: its round-trip time, ms, or `None` when no
/// Binding Success came within `timeout`. The benchmarks' independent RTT measurement.
///
/// # Errors
/// [`crate::HarnessError::Io`] when the request cannot be sent.
pub async fn stun_rtt_ms(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
) -> Result<Option<f64>> {
    let start = Instant::now();
    let answered = stun_binding(socket, server, timeout).await?;
    Ok(answered.then(|| start.elapsed().as_secs_f64() * 1000.0))
}

/// One Binding transaction on `socket` to `server`: whether a matching Binding Success came
/// within `timeout` (other datagrams are ignored).
async fn stun_binding(socket: &UdpSocket, server: SocketAddr, timeout: Duration) -> Result<bool> {
    let id = transaction_id();
    socket
        .send_to(&binding_request(id), server)
        .await
        .map_err(io(format!("send a STUN Binding Request to {server}")))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            Err(_) => return Ok(false),
            // An ICMP "port unreachable" (server not listening yet) or a stray datagram.
            Ok(Err(_)) => continue,
            Ok(Ok((n, from))) => {
                if from == server && is_binding_success(&buf[..n], &id) {
                    return Ok(true);
                }
            }
        }
    }
}
