//! Test harness for the server integration tests: the real server in-process on a free port,
//! with a temporary data dir, WebSocket clients that speak PROTOCOL.md as JSON, and the
//! research record waited for by [`ResearchEventKind`] (lines are picked with
//! `pairlab_server::record`'s readers).

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pairlab_server::config::Config;
pub use pairlab_server::core::research::ResearchEventKind;
use pairlab_server::net::{RunningServer, Server};
use pairlab_server::record::position_of;
use pairlab_shared::{
    ClientMessage, ErrorCode, ErrorMessage, Hello, Pong, ProbeSessionId, ServerMessage, SubjectId,
    Waitroom, Welcome,
};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a message that should come.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure that a message does not come.
pub const QUIET: Duration = Duration::from_millis(400);

/// The scenes most tests use.
pub const TEST_CONFIG: &str = r#"
[[scene]]
id = "probe"
group_size = 2
matchmaker = "latency_fifo"
max_server_rtt_ms = 1000
max_p2p_rtt_ms = 50
probe_timeout_ms = 3000
waitroom_timeout_ms = 60000
reconnect_grace_ms = 3000

[[scene]]
id = "noprobe"
group_size = 2
matchmaker = "fifo"

[[scene]]
id = "trio"
group_size = 3
matchmaker = "fifo"
reconnect_grace_ms = 3000

[[scene]]
id = "short"
group_size = 2
matchmaker = "fifo"
waitroom_timeout_ms = 400
timeout_message = "No partner this time. Thank you!"
timeout_redirect_url = "https://example.org/done?cc=1"

[[scene]]
id = "hidden"
group_size = 2
matchmaker = "fifo"
hide_lobby_count = true

[[ice_servers]]
urls = ["stun:127.0.0.1:3478"]
"#;

/// A server running in this process.
pub struct TestServer {
    running: Option<RunningServer>,
    pub addr: std::net::SocketAddr,
    pub data_dir: tempfile::TempDir,
    pub config: Config,
    /// The config's `[server]` table for the shell (origins, limits, `metrics_token`).
    pub server: pairlab_server::config::ServerConfig,
}

impl TestServer {
    /// Starts a server with [`TEST_CONFIG`].
    pub async fn start() -> Self {
        Self::with_config(TEST_CONFIG).await
    }

    /// Starts a server with the given config on 127.0.0.1, a free port.
    pub async fn with_config(toml: &str) -> Self {
        Self::with_options(toml, None).await
    }

    /// Starts a server with the given config and, if given, idle timeout.
    pub async fn with_options(toml: &str, idle: Option<Duration>) -> Self {
        Self::build(toml, idle, tempfile::tempdir().expect("temp dir")).await
    }

    /// Starts a server with the given config whose research record goes to `data_dir`.
    pub async fn with_data_dir(toml: &str, data_dir: tempfile::TempDir) -> Self {
        Self::build(toml, None, data_dir).await
    }

    /// Starts a server with the given config file (its `[server]` table too) serving the site
    /// folder `site`.
    pub async fn with_site(toml: &str, site: &std::path::Path) -> Self {
        let file = pairlab_server::config::ConfigFile::from_toml_str(toml)
            .unwrap_or_else(|e| panic!("test config: {e}"));
        let data_dir = tempfile::tempdir().expect("temp dir");
        let site = pairlab_server::net::SiteDir::open(site).expect("a site folder");
        let server = Server::bind(
            file.config.clone(),
            "127.0.0.1:0".parse().unwrap(),
            data_dir.path().to_path_buf(),
        )
        .await
        .expect("bind")
        .server_config(file.server.clone())
        .site(Some(site));
        let addr = server.local_addr();
        TestServer {
            running: Some(server.spawn()),
            addr,
            data_dir,
            config: file.config,
            server: file.server,
        }
    }

    async fn build(toml: &str, idle: Option<Duration>, data_dir: tempfile::TempDir) -> Self {
        let pairlab_server::config::ConfigFile { config, server, .. } =
            pairlab_server::config::ConfigFile::from_toml_str(toml)
                .unwrap_or_else(|e| panic!("test config: {e}"));
        let shell = server;
        let server = Server::bind(
            config.clone(),
            "127.0.0.1:0".parse().unwrap(),
            data_dir.path().to_path_buf(),
        )
        .await
        .expect("bind")
        .server_config(shell.clone());
        let server = match idle {
            Some(d) => server.idle_timeout(d),
            None => server,
        };
        let addr = server.local_addr();
        TestServer {
            running: Some(server.spawn()),
            addr,
            data_dir,
            config,
            server: shell,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// A connected client that has sent nothing yet.
    pub async fn connect(&self) -> Client {
        let (ws, _) = tokio::time::timeout(
            RECV_TIMEOUT,
            tokio_tungstenite::connect_async(self.ws_url()),
        )
        .await
        .expect("connect timed out")
        .expect("connect");
        Client {
            ws,
            name: String::new(),
            auto_pong: true,
            welcome: None,
            received: Vec::new(),
        }
    }

    /// Connects, says hello to `scene`, and returns once the participant is in the waitroom
    /// (their first `waitroom`).
    pub async fn join(&self, subject: &str, scene: &str) -> (Client, Waitroom) {
        let mut c = self.connect().await;
        c.hello(subject, Some(scene), None).await;
        let w = c.expect_waitroom().await;
        (c, w)
    }

    /// alice and bob join the `probe` scene and are both asked to prepare a probe: their
    /// clients and alice's probe id.
    pub async fn probe_pair(&self) -> (Client, Client, ProbeSessionId) {
        let (mut a, _) = self.join("alice", "probe").await;
        let (mut b, _) = self.join("bob", "probe").await;
        let id = a.expect_probe_prepare().await.probe_session_id;
        b.expect_probe_prepare().await;
        (a, b, id)
    }

    /// Shuts the server down (the record is flushed).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(15), r.shutdown())
                .await
                .expect("server shut down in time");
        }
    }

    /// Stops the server and starts a new one with the same config on the same data dir (a
    /// restart), on a new free port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let server = Server::bind(
            self.config.clone(),
            "127.0.0.1:0".parse().unwrap(),
            self.data_dir.path().to_path_buf(),
        )
        .await
        .expect("bind")
        .server_config(self.server.clone());
        self.addr = server.local_addr();
        self.running = Some(server.spawn());
    }

    pub fn record_path(&self, scene: &str) -> PathBuf {
        self.data_dir.path().join(scene).join("events.jsonl")
    }

    /// The research record of `scene`, one JSON value per line.
    pub fn events(&self, scene: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.record_path(scene)).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect()
    }

    /// Waits until the record of `scene` holds an event of `kind` (the writer is
    /// asynchronous) and returns the events so far.
    pub async fn wait_for_event(&self, scene: &str, kind: ResearchEventKind) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            let events = self.events(scene);
            if position_of(&events, kind).is_some() {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {kind} event in {scene}: {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A plain HTTP/1.1 GET: (status, headers lower-cased, body).
    pub async fn get(&self, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        http_get(self.addr, path, &[]).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            // Not stopped by the test (it failed): the runtime ends the task.
            drop(r);
        }
    }
}

/// An HTTP/1.1 GET over a fresh connection, through hyper's connection-level client (the hyper
/// 1 the server is built on; it also undoes chunked transfer coding): (status, headers with
/// lower-case names, body).
pub async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Empty::<&'static [u8]>::new())
        .expect("a valid request");
    let (parts, body) = tokio::time::timeout(RECV_TIMEOUT, async {
        let response = sender.send_request(request).await.expect("response");
        let (parts, body) = response.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (parts, body)
    })
    .await
    .expect("response in time");
    driver.abort();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    (parts.status.as_u16(), headers, body)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// A close frame with this code.
    Code(u16),
    /// A close frame without a code.
    NoCode,
    /// The TCP connection ended without a close frame (or with an error).
    Abrupt(String),
}

/// One WebSocket client speaking the protocol.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// For messages in assertions.
    pub name: String,
    /// Answer `ping` with `pong` at once (an honest client does).
    pub auto_pong: bool,
    pub welcome: Option<Welcome>,
    /// Every text frame received, as sent (pings included), for assertions on the raw JSON.
    pub received: Vec<String>,
}

impl Client {
    pub async fn send(&mut self, msg: &ClientMessage) {
        self.send_text(&msg.to_json()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{}: send failed: {e}", self.name));
    }

    /// Sends `hello` and returns the `welcome`.
    pub async fn hello(
        &mut self,
        subject: &str,
        scene: Option<&str>,
        resume_token: Option<&str>,
    ) -> Welcome {
        self.name = subject.to_owned();
        self.send(&hello(subject, scene, resume_token)).await;
        match self.recv().await {
            ServerMessage::Welcome(w) => {
                assert_eq!(w.subject_id.as_str(), subject);
                self.welcome = Some(w.clone());
                w
            }
            other => panic!("{subject}: expected welcome, got {other:?}"),
        }
    }

    pub fn resume_token(&self) -> String {
        self.welcome
            .as_ref()
            .map(|w| w.resume_token.clone())
            .expect("welcomed")
    }

    /// The next protocol message, answering `ping`s on the way; panics on timeout or close.
    pub async fn recv(&mut self) -> ServerMessage {
        match self.recv_within(RECV_TIMEOUT).await {
            Ok(Some(m)) => m,
            Ok(None) => panic!("{}: nothing received within {RECV_TIMEOUT:?}", self.name),
            Err(closed) => panic!(
                "{}: connection closed ({closed:?}) while waiting",
                self.name
            ),
        }
    }

    /// The next protocol message within `d` (`Ok(None)`: none came), or how the connection
    /// closed.
    pub async fn recv_within(&mut self, d: Duration) -> Result<Option<ServerMessage>, Closed> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(f) => f,
            };
            match frame {
                None => return Err(Closed::Abrupt("stream ended".into())),
                Some(Err(e)) => return Err(Closed::Abrupt(e.to_string())),
                Some(Ok(Message::Text(t))) => {
                    self.received.push(t.as_str().to_owned());
                    let msg: ServerMessage = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("{}: server sent {t:?}: {e}", self.name));
                    if let ServerMessage::Ping(p) = &msg {
                        if self.auto_pong {
                            let pong = ClientMessage::Pong(Pong { seq: p.seq });
                            let _ = self.ws.send(Message::text(pong.to_json())).await;
                            continue;
                        }
                    }
                    return Ok(Some(msg));
                }
                Some(Ok(Message::Close(frame))) => {
                    // Drive the stream once more so tungstenite flushes its answer to the
                    // close, as a browser does at once.
                    let _ = tokio::time::timeout(Duration::from_millis(500), self.ws.next()).await;
                    return Err(match frame {
                        Some(f) => Closed::Code(u16::from(f.code)),
                        None => Closed::NoCode,
                    });
                }
                Some(Ok(Message::Binary(_))) => panic!("{}: server sent a binary frame", self.name),
                Some(Ok(_)) => {} // WebSocket ping/pong
            }
        }
    }

    /// Skips messages until `f` picks one; panics on timeout or close.
    pub async fn until<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Ok(Some(m)) => {
                    if let Some(t) = f(&m) {
                        return t;
                    }
                    seen.push(m);
                }
                Ok(None) => panic!(
                    "{}: no {what} within {RECV_TIMEOUT:?}; got {seen:?}",
                    self.name
                ),
                Err(c) => panic!(
                    "{}: closed ({c:?}) waiting for {what}; got {seen:?}",
                    self.name
                ),
            }
        }
    }

    pub async fn expect_waitroom(&mut self) -> Waitroom {
        self.until("waitroom", |m| match m {
            ServerMessage::Waitroom(w) => Some(*w),
            _ => None,
        })
        .await
    }

    /// The next message must be `error` with `code` (pings and waitroom updates are skipped).
    pub async fn expect_error(&mut self, code: ErrorCode) -> ErrorMessage {
        let e = self
            .until("error", |m| match m {
                ServerMessage::Error(e) => Some(e.clone()),
                ServerMessage::Waitroom(_) => None,
                other => panic!("expected error {code}, got {other:?}"),
            })
            .await;
        assert_eq!(e.code, code, "{}: {e:?}", self.name);
        assert!(!e.message.is_empty());
        e
    }

    /// Reads until the connection closes; returns how. Panics if it stays open for
    /// [`RECV_TIMEOUT`]. Messages before the close are returned too.
    pub async fn expect_closed(&mut self) -> (Closed, Vec<ServerMessage>) {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Ok(Some(m)) => seen.push(m),
                Ok(None) => panic!(
                    "{}: still open after {RECV_TIMEOUT:?}; got {seen:?}",
                    self.name
                ),
                Err(c) => return (c, seen),
            }
        }
    }

    /// Asserts the connection is open and served: a malformed frame is answered with
    /// `bad_message` (after the welcome).
    pub async fn expect_open(&mut self) {
        self.send_text("{\"type\":\"probe_ready\"}").await;
        let e = self
            .until("bad_message (open check)", |m| match m {
                ServerMessage::Error(e) => Some(e.clone()),
                _ => None,
            })
            .await;
        assert_eq!(e.code, ErrorCode::BadMessage, "{}: {e:?}", self.name);
    }

    /// Asserts nothing but pings and `waitroom` updates arrives within `d`, and the connection
    /// stays open.
    pub async fn expect_quiet(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.recv_within(left).await {
                Ok(None) => return,
                Ok(Some(ServerMessage::Waitroom(_))) => {}
                Ok(Some(m)) => panic!("{}: expected nothing, got {m:?}", self.name),
                Err(c) => panic!("{}: closed ({c:?}), expected to stay open", self.name),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Wait for the server's answer so the drop is seen.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    pub async fn expect_probe_prepare(&mut self) -> pairlab_shared::ProbePrepare {
        self.until("probe_prepare", |m| match m {
            ServerMessage::ProbePrepare(p) => Some(p.clone()),
            ServerMessage::Waitroom(_) => None,
            other => panic!("expected probe_prepare, got {other:?}"),
        })
        .await
    }

    pub async fn expect_probe_start(&mut self) -> pairlab_shared::ProbeStart {
        self.until("probe_start", |m| match m {
            ServerMessage::ProbeStart(p) => Some(p.clone()),
            other => panic!("expected probe_start, got {other:?}"),
        })
        .await
    }

    /// The next relayed `probe_signal`; other messages on the way are skipped.
    pub async fn expect_probe_signal(&mut self) -> pairlab_shared::ProbeSignalIn {
        self.until("probe_signal", |m| match m {
            ServerMessage::ProbeSignal(s) => Some(s.clone()),
            _ => None,
        })
        .await
    }

    pub async fn expect_game_start(&mut self) -> pairlab_shared::GameStart {
        self.until("game_start", |m| match m {
            ServerMessage::GameStart(g) => Some((**g).clone()),
            ServerMessage::Waitroom(_) => None,
            other => panic!("expected game_start, got {other:?}"),
        })
        .await
    }
}

pub fn sid(s: &str) -> SubjectId {
    SubjectId::parse(s).expect("valid subject id")
}

pub fn hello(subject: &str, scene: Option<&str>, resume_token: Option<&str>) -> ClientMessage {
    ClientMessage::Hello(Hello {
        subject_id: sid(subject),
        scene_id: scene.map(str::to_owned),
        resume_token: resume_token.map(str::to_owned),
        link_signature: None,
        recruiter: None,
        browser: None,
    })
}

pub fn ready(id: &ProbeSessionId) -> ClientMessage {
    ClientMessage::ProbeReady(pairlab_shared::ProbeReady {
        probe_session_id: id.clone(),
    })
}

pub fn result(id: &ProbeSessionId, success: bool, rtt_ms: Option<f64>) -> ClientMessage {
    ClientMessage::ProbeResult(pairlab_shared::ProbeResult {
        probe_session_id: id.clone(),
        success,
        rtt_ms,
        samples_ms: rtt_ms
            .map(|r| vec![r, r + 1.0, r - 0.5])
            .unwrap_or_default(),
        stats_rtt_ms: rtt_ms.map(|r| r - 1.0),
        connection: None,
    })
}

/// A `probe_signal` for the peer with player index `target_index`.
pub fn signal(
    id: &ProbeSessionId,
    target_index: u32,
    signal_type: pairlab_shared::SignalType,
    payload: Option<pairlab_shared::SignalPayload>,
) -> ClientMessage {
    ClientMessage::ProbeSignal(pairlab_shared::ProbeSignalOut {
        probe_session_id: id.clone(),
        target_index,
        signal_type,
        payload,
    })
}

/// The close code a test expects for an error that closes the connection: normal closure.
pub const NORMAL_CLOSE: Closed = Closed::Code(1000);

pub fn code(c: CloseCode) -> u16 {
    u16::from(c)
}
