//! The server against clients that do not play fair at the connection level, with the
//! `[server]` settings: TCP connections that never finish a request head, oversized heads,
//! too many connections in total and from one address, `X-Forwarded-For` from trusted and
//! untrusted peers, WebSockets that only ping and never say `hello`, and handshakes from
//! another site's page (`Origin`).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{code, Client, Closed, TEST_CONFIG};
use futures_util::SinkExt;
use pairlab_server::config::ConfigFile;
use pairlab_server::net::{RunningServer, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A server with [`TEST_CONFIG`]'s scenes and this `[server]` table.
struct Hostile {
    running: Option<RunningServer>,
    addr: SocketAddr,
    _data_dir: tempfile::TempDir,
}

impl Hostile {
    async fn start(server_table: &str) -> Self {
        let text = format!("{TEST_CONFIG}\n[server]\n{server_table}");
        let file = ConfigFile::from_toml_str(&text).unwrap_or_else(|e| panic!("config: {e}"));
        let data_dir = tempfile::tempdir().expect("temp dir");
        let server = Server::bind(
            file.config,
            "127.0.0.1:0".parse().unwrap(),
            data_dir.path().to_path_buf(),
        )
        .await
        .expect("bind")
        .server_config(file.server);
        let addr = server.local_addr();
        Hostile {
            running: Some(server.spawn()),
            addr,
            _data_dir: data_dir,
        }
    }

    /// A TCP connection from `source` (any 127.0.0.0/8 address is this machine).
    async fn tcp_from(&self, source: &str) -> TcpStream {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source.parse().unwrap(), 0))
            .expect("bind source");
        socket.connect(self.addr).await.expect("connect")
    }

    /// A WebSocket handshake with these extra headers; the client, or the HTTP status of the
    /// refusal.
    async fn ws(&self, headers: &[(&'static str, &str)]) -> Result<Client, u16> {
        let mut req = format!("ws://{}/ws", self.addr)
            .into_client_request()
            .expect("request");
        for (name, value) in headers {
            req.headers_mut()
                .insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Client {
                ws,
                name: "ws".into(),
                auto_pong: true,
                welcome: None,
                received: Vec::new(),
            }),
            Err(WsError::Http(res)) => Err(res.status().as_u16()),
            Err(e) => panic!("handshake: {e}"),
        }
    }

    async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// Reads until the server closes the connection; the bytes it sent, and how long that took.
/// Panics if it is still open after `within`.
async fn until_closed(tcp: &mut TcpStream, within: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + within).into(), tcp.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&got).into(), start.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends one `GET` and reads its response head and body (by `content-length`), leaving the
/// connection open; the status.
async fn get(tcp: &mut TcpStream, path: &str, extra: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nhost: test\r\n{extra}\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("content-length"));
    while got.len() < head_end + len {
        let n = tcp.read(&mut buf).await.expect("read body");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    head[9..12].parse().expect("status")
}

/// A connection that sends nothing, one that sends its head a byte at a time, and one idle
/// after a complete request are all closed at the header timeout; an honest request still
/// works meanwhile.
#[tokio::test]
async fn unfinished_and_idle_connections_are_closed_at_the_header_timeout() {
    let s = Hostile::start("header_read_timeout_ms = 400\n").await;
    let timeout = Duration::from_millis(400);

    let mut silent = s.tcp_from("127.0.0.1").await;
    let mut slow = s.tcp_from("127.0.0.1").await;
    let mut kept = s.tcp_from("127.0.0.1").await;
    assert_eq!(get(&mut kept, "/healthz", "").await, 200);
    let trickle = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nhost: test\r\nx-slow: "
            .iter()
            .cycle()
        {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        until_closed(&mut slow, Duration::from_secs(3)).await
    });
    let mut honest = s.tcp_from("127.0.0.1").await;
    assert_eq!(get(&mut honest, "/healthz", "").await, 200);

    let (sent, after) = until_closed(&mut silent, Duration::from_secs(3)).await;
    assert!(after >= timeout - Duration::from_millis(50), "{after:?}");
    assert!(!sent.starts_with("HTTP/1.1 2"), "{sent}");
    let (_, after) = until_closed(&mut kept, Duration::from_secs(3)).await;
    assert!(after < Duration::from_secs(2), "kept-alive idle: {after:?}");
    let (_, after) = trickle.await.expect("slow client");
    assert!(after < Duration::from_secs(3), "slow head: {after:?}");
    s.stop().await;
}

/// A request head over `max_header_bytes` gets 431 and the connection closes, without the
/// server buffering the rest.
#[tokio::test]
async fn a_head_over_max_header_bytes_gets_431() {
    let s = Hostile::start("max_header_bytes = 8192\n").await;
    let mut tcp = s.tcp_from("127.0.0.1").await;
    let mut head = b"GET / HTTP/1.1\r\nhost: test\r\nx-big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 20_000));
    // The server may close while this is still being written.
    let _ = tcp.write_all(&head).await;
    let (sent, _) = until_closed(&mut tcp, Duration::from_secs(3)).await;
    assert!(sent.starts_with("HTTP/1.1 431"), "{sent:?}");
    // A head under the limit is served.
    let mut tcp = s.tcp_from("127.0.0.1").await;
    let header = format!("x-fine: {}\r\n", "a".repeat(4000));
    assert_eq!(get(&mut tcp, "/healthz", &header).await, 200);
    s.stop().await;
}

/// Connections that are not WebSockets are capped per address (429) and in total (the
/// connection waiting longest for a request head makes room); a WebSocket, once upgraded, no
/// longer counts.
#[tokio::test]
async fn connections_are_capped_per_ip_and_in_total_but_websockets_are_not() {
    let s = Hostile::start("max_http_connections = 3\nmax_http_connections_per_ip = 2\n").await;
    let mut a1 = s.tcp_from("127.0.0.2").await;
    let _a2 = s.tcp_from("127.0.0.2").await;
    let mut a3 = s.tcp_from("127.0.0.2").await;
    let (sent, _) = until_closed(&mut a3, Duration::from_secs(2)).await;
    assert!(sent.starts_with("HTTP/1.1 429"), "{sent:?}");
    let mut b1 = s.tcp_from("127.0.0.3").await;
    assert_eq!(get(&mut b1, "/healthz", "").await, 200);
    // The total is full: the oldest idle connection gives its place up, without an answer.
    let mut c1 = s.tcp_from("127.0.0.4").await;
    assert_eq!(get(&mut c1, "/healthz", "").await, 200);
    let (sent, _) = until_closed(&mut a1, Duration::from_secs(2)).await;
    assert_eq!(sent, "");
    drop((b1, c1));

    // 127.0.0.1 opens more WebSockets than the per-IP cap, and is still served.
    let mut sockets = Vec::new();
    for i in 0..4 {
        let mut ws = loop {
            // The place `b1` gave back may take a moment to be seen free.
            match s.ws(&[]).await {
                Ok(ws) => break ws,
                Err(status) if status == 503 || status == 429 => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(status) => panic!("handshake refused with {status}"),
            }
        };
        ws.hello(&format!("p{i}"), Some("noprobe"), None).await;
        sockets.push(ws);
    }
    let mut d = s.tcp_from("127.0.0.1").await;
    assert_eq!(get(&mut d, "/healthz", "").await, 200);
    s.stop().await;
}

/// When idle connections (nothing sent, or an unfinished head) fill the total cap, an honest
/// request and an honest WebSocket handshake are still served: each newcomer evicts the
/// connection that has waited longest for a request head, which `/healthz` counts.
#[tokio::test]
async fn a_cap_full_of_idle_connections_evicts_the_oldest_for_honest_clients() {
    let s = Hostile::start("max_http_connections = 8\nmax_http_connections_per_ip = 8\n").await;
    let mut idle = Vec::new();
    for i in 0..8 {
        let mut tcp = s.tcp_from(&format!("127.0.1.{i}")).await;
        if i % 2 == 1 {
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: te")
                .await
                .expect("write");
        }
        idle.push(tcp);
        // Distinct admission times, so "oldest" is well defined.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut honest = s.tcp_from("127.0.0.1").await;
    assert_eq!(get(&mut honest, "/healthz", "").await, 200);
    let (sent, _) = until_closed(&mut idle[0], Duration::from_secs(2)).await;
    assert_eq!(sent, "", "evicted without an answer");

    let mut ws = s.ws(&[]).await.expect("handshake while the cap is full");
    ws.hello("p", Some("noprobe"), None).await;
    let (sent, _) = until_closed(&mut idle[1], Duration::from_secs(2)).await;
    assert_eq!(sent, "");
    // The rest are still open (they would close at the 10 s header timeout).
    for tcp in &mut idle[2..] {
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_millis(20), tcp.read(&mut buf)).await;
        assert!(r.is_err(), "closed early: {r:?}");
    }
    // The upgraded WebSocket gave its place back: the next request takes it, evicting nobody.
    let mut again = s.tcp_from("127.0.0.1").await;
    let v = healthz(&mut again).await;
    assert_eq!(v["evicted_connections"], 2, "{v}");
    assert_eq!(v["connections"], 1, "{v}");
    // Shutdown would wait for the unfinished heads.
    drop((idle, ws));
    s.stop().await;
}

/// When every place in the total is busy with a response (here: a reader that pipelines
/// requests for the largest file and reads nothing), there is nobody to evict: 503.
#[tokio::test]
async fn a_cap_full_of_busy_connections_still_answers_503() {
    if !pairlab_server::assets::client_built() {
        eprintln!("skipped: the wasm client is not built, no file is large enough");
        return;
    }
    let s = Hostile::start("max_http_connections = 2\n").await;
    let request = "GET /pkg/pairlab_client_bg.wasm HTTP/1.1\r\nhost: test\r\n\r\n".repeat(30);
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let mut tcp = socket.connect(s.addr).await.expect("connect");
        tcp.write_all(request.as_bytes()).await.expect("write");
        stuck.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = s.tcp_from("127.0.0.1").await;
    let (sent, _) = until_closed(&mut refused, Duration::from_secs(2)).await;
    assert!(sent.starts_with("HTTP/1.1 503"), "{sent:?}");
    // A place given back is a place for the next.
    stuck.pop();
    let status = loop {
        let mut tcp = s.tcp_from("127.0.0.1").await;
        let mut buf = [0u8; 12];
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .expect("write");
        tcp.read_exact(&mut buf).await.expect("status line");
        let status = String::from_utf8_lossy(&buf[9..12]).into_owned();
        if status != "503" {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, "200");
    // Shutdown would wait for the response still being written.
    drop(stuck);
    s.stop().await;
}

/// `GET /healthz` on `tcp`, as JSON.
async fn healthz(tcp: &mut TcpStream) -> serde_json::Value {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let (sent, _) = until_closed(tcp, Duration::from_secs(5)).await;
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent:?}");
    let body = sent.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// `X-Forwarded-For` counts only from a trusted proxy: there the per-IP cap applies to the
/// client it names (and not to the proxy's own address); from anyone else it is ignored.
#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let s = Hostile::start("trusted_proxies = [\"127.0.0.1\"]\nmax_http_connections_per_ip = 1\n")
        .await;
    let mut p1 = s.tcp_from("127.0.0.1").await;
    let mut p2 = s.tcp_from("127.0.0.1").await;
    let mut p3 = s.tcp_from("127.0.0.1").await;
    assert_eq!(
        get(&mut p1, "/healthz", "x-forwarded-for: 1.2.3.4\r\n").await,
        200
    );
    assert_eq!(
        get(&mut p2, "/healthz", "x-forwarded-for: 6.6.6.6, 1.2.3.4\r\n").await,
        429,
        "1.2.3.4 holds its one place on p1"
    );
    assert_eq!(
        get(&mut p3, "/healthz", "x-forwarded-for: 5.6.7.8\r\n").await,
        200
    );
    // p1 asks again for the same client: its own place is reused.
    assert_eq!(
        get(&mut p1, "/healthz", "x-forwarded-for: 1.2.3.4\r\n").await,
        200
    );

    let mut u1 = s.tcp_from("127.0.0.2").await;
    assert_eq!(
        get(&mut u1, "/healthz", "x-forwarded-for: 9.9.9.9\r\n").await,
        200
    );
    let mut u2 = s.tcp_from("127.0.0.2").await;
    let (sent, _) = until_closed(&mut u2, Duration::from_secs(2)).await;
    assert!(
        sent.starts_with("HTTP/1.1 429"),
        "counted as 127.0.0.2, whatever it claims: {sent:?}"
    );
    s.stop().await;
}

/// A WebSocket that never says `hello` but sends WebSocket pings (which reset the idle
/// timeout) is closed with 1008 at the hello deadline.
#[tokio::test]
async fn a_websocket_that_only_pings_is_closed_at_the_hello_deadline() {
    let s = Hostile::start("hello_timeout_ms = 600\n").await;
    let mut c = s.ws(&[]).await.expect("handshake");
    let start = Instant::now();
    let closed = loop {
        c.ws.send(Message::Ping(Vec::new().into()))
            .await
            .expect("ping");
        match c.recv_within(Duration::from_millis(100)).await {
            Ok(None) => {}
            Ok(Some(m)) => panic!("unexpected {m:?}"),
            Err(closed) => break closed,
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still open");
    };
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert!(
        matches!(closed, Closed::Code(n) if n == code(CloseCode::Policy)),
        "{closed:?}"
    );
    // A client that says hello in time stays.
    let mut ok = s.ws(&[]).await.expect("handshake");
    ok.hello("alice", Some("noprobe"), None).await;
    ok.expect_quiet(Duration::from_millis(900)).await;
    ok.expect_open().await;
    s.stop().await;
}

/// `/ws` from another site's page gets 403; the page's own origin (http or https, by
/// `Host`), and a client without `Origin`, are let through; `allowed_origins` replaces the
/// default.
#[tokio::test]
async fn websocket_origins_are_checked() {
    let s = Hostile::start("").await;
    let own = format!("http://{}", s.addr);
    assert_eq!(
        s.ws(&[("origin", "http://evil.example")]).await.err(),
        Some(403)
    );
    assert_eq!(s.ws(&[("origin", "null")]).await.err(), Some(403));
    for (i, ok) in [own.as_str(), &format!("https://{}", s.addr)]
        .into_iter()
        .enumerate()
    {
        let mut c = s.ws(&[("origin", ok)]).await.expect(ok);
        c.hello(&format!("alice{i}"), Some("noprobe"), None).await;
    }
    let mut c = s.ws(&[]).await.expect("no Origin");
    c.hello("bob", Some("noprobe"), None).await;
    s.stop().await;

    let s = Hostile::start("allowed_origins = [\"https://study.example.org\"]\n").await;
    let own = format!("http://{}", s.addr);
    assert_eq!(s.ws(&[("origin", &own)]).await.err(), Some(403));
    let mut c = s
        .ws(&[("origin", "https://study.example.org")])
        .await
        .expect("listed");
    c.hello("carol", Some("noprobe"), None).await;
    s.stop().await;
}

/// Hostile load against a separately started server (not a timed test; prints numbers):
/// `HOSTILE_IDLE` (2000) TCP connections that send nothing and `HOSTILE_SLOW` (200) that send
/// an endless request head a byte every 500 ms (idle from 127.0.0.2 and .3, slow from .4:
/// three addresses, whose per-IP caps together stay under the total cap), while `HOSTILE_HONEST`
/// (20) WebSocket clients from 127.0.0.1 say `hello` to the first scene and must get `welcome`,
/// and `/healthz` must answer. Prints how long until every hostile connection was closed and
/// the server's resident memory (`VmRSS` of `PAIRLAB_PID`) before, at peak and after.
///
/// ```sh
/// scripts/hostile-load.sh   # starts target/release/pairlab under `ulimit -n 1024`, runs this
/// ```
#[tokio::test]
#[ignore = "a measurement against a running server: scripts/hostile-load.sh"]
async fn hostile_load() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let addr: SocketAddr = std::env::var("PAIRLAB_ADDR")
        .expect("PAIRLAB_ADDR")
        .parse()
        .expect("PAIRLAB_ADDR is HOST:PORT");
    let pid: u32 = env("PAIRLAB_PID", 0) as u32;
    let (idle_n, slow_n, honest_n) = (
        env("HOSTILE_IDLE", 2000),
        env("HOSTILE_SLOW", 200),
        env("HOSTILE_HONEST", 20),
    );
    // Addresses the idle connections come from: 127.0.0.2 onwards (the slow ones from the
    // next). Four or more fill the total cap with the default per-IP cap.
    let idle_ips = env("HOSTILE_IDLE_IPS", 2).max(1);
    // Of the slow connections, this many send their endless head 390 KB at once (from 8
    // addresses of their own, 127.0.0.20 onwards) instead of a byte at a time.
    let big_n = env("HOSTILE_BIG", 0);
    let rss_kb = move || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let rss_before = rss_kb();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                peak.fetch_max(rss_kb(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let connect_from = move |source: String| async move {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(source.parse().ok()?, 0)).ok()?;
        tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
            .await
            .ok()?
            .ok()
    };
    let start = Instant::now();
    let mut hostile = Vec::new();
    for i in 0..idle_n + slow_n + big_n {
        let slow = i >= idle_n;
        let big = i >= idle_n + slow_n;
        let source = if big {
            format!("127.0.0.{}", 20 + i % 8)
        } else if slow {
            format!("127.0.0.{}", 2 + idle_ips)
        } else {
            format!("127.0.0.{}", 2 + i % idle_ips)
        };
        hostile.push(tokio::spawn(async move {
            let Some(mut tcp) = connect_from(source).await else {
                return (false, Duration::ZERO, String::new());
            };
            if slow {
                let (mut read, mut write) = tcp.into_split();
                let trickle = tokio::spawn(async move {
                    let head = b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ";
                    if big {
                        let mut all = head.to_vec();
                        all.extend(std::iter::repeat_n(b'a', 390 * 1024));
                        let _ = write.write_all(&all).await;
                        return;
                    }
                    for b in head.iter().chain(std::iter::repeat(&b'a')) {
                        if write.write_all(&[*b]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                });
                let mut buf = [0u8; 512];
                let mut got = String::new();
                loop {
                    match tokio::time::timeout(Duration::from_secs(120), read.read(&mut buf)).await
                    {
                        Ok(Ok(0) | Err(_)) | Err(_) => break,
                        Ok(Ok(n)) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
                trickle.abort();
                (true, start.elapsed(), got)
            } else {
                let mut buf = [0u8; 512];
                let mut got = String::new();
                loop {
                    match tokio::time::timeout(Duration::from_secs(120), tcp.read(&mut buf)).await {
                        Ok(Ok(0) | Err(_)) | Err(_) => break,
                        Ok(Ok(n)) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
                (true, start.elapsed(), got)
            }
        }));
    }
    let spawned_in = start.elapsed();
    // Honest clients and /healthz while the hostile connections are open; a refused handshake
    // (503/429 over a cap) is retried every 100 ms for up to 15 s.
    let mut welcomed = 0;
    let mut honest_ms = Vec::new();
    let mut retries = 0;
    for i in 0..honest_n {
        let t = Instant::now();
        let ws = loop {
            match tokio::time::timeout(
                Duration::from_secs(5),
                tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
            )
            .await
            {
                Ok(Ok((ws, _))) => break Some(ws),
                _ if t.elapsed() < Duration::from_secs(15) => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => break None,
            }
        };
        let Some(ws) = ws else {
            continue;
        };
        let mut c = Client {
            ws,
            name: format!("honest{i}"),
            auto_pong: true,
            welcome: None,
            received: Vec::new(),
        };
        c.send(&common::hello(&format!("honest{i}"), None, None))
            .await;
        if let Ok(Some(pairlab_shared::ServerMessage::Welcome(_))) =
            c.recv_within(Duration::from_secs(5)).await
        {
            welcomed += 1;
            honest_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        // Leave: the next run starts from an empty waitroom.
        let _ = c.ws.close(None).await;
    }
    let mut health = connect_from("127.0.0.1".into())
        .await
        .expect("healthz connect");
    let health_status = get(&mut health, "/healthz", "").await;
    drop(health);

    let mut closed = 0;
    let mut refused = 0;
    let mut last_close = Duration::ZERO;
    let mut failed_connect = 0;
    let mut too_large = 0;
    for h in hostile {
        let (connected, at, got) = h.await.expect("hostile task");
        if !connected {
            failed_connect += 1;
            continue;
        }
        closed += 1;
        if got.starts_with("HTTP/1.1 429") || got.starts_with("HTTP/1.1 503") {
            refused += 1;
        }
        if got.starts_with("HTTP/1.1 431") {
            too_large += 1;
        }
        last_close = last_close.max(at);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    sampler.abort();
    let rss_after = rss_kb();
    println!(
        "hostile load against {addr}: {idle_n} idle connections from {idle_ips} address(es) + \
         {slow_n} slow-header ones from 1 + {big_n} sending 390 KB of head from 8, started \
         within {spawned_in:.1?} ({failed_connect} could not connect); all {closed} closed by the \
         server within {last_close:.1?} of the start ({refused} refused at once with 429/503, \
         {too_large} answered 431); honest WebSocket clients welcomed: \
         {welcomed}/{honest_n} (slowest {:.0} ms from first try, {retries} refused handshakes \
         retried); /healthz during: {health_status}; server VmRSS before {} kB, peak {} kB, \
         after {} kB",
        honest_ms.iter().copied().fold(0.0, f64::max),
        rss_before,
        peak.load(std::sync::atomic::Ordering::Relaxed),
        rss_after
    );
    assert_eq!(welcomed, honest_n, "every honest client is welcomed");
    assert_eq!(health_status, 200);
}
