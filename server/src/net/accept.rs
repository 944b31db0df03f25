//! Accepting TCP connections and serving HTTP/1.1 on each with hyper, within the `[server]`
//! limits, until shutdown.
//!
//! warp's own server builds hyper without a timer, so hyper's header timeout never runs and a
//! connection that never finishes (or never starts) a request stays open for ever. Here each
//! connection is served by hyper's HTTP/1.1 builder with a [`TokioTimer`] and:
//! - `header_read_timeout`: the request head must be complete within
//!   `header_read_timeout_ms` of the moment hyper waits for it, after the connection opens and
//!   again after every response, so it is also the idle timeout of a kept-alive connection;
//!   data arriving slowly does not extend it;
//! - `max_buf_size`: a request head larger than `max_header_bytes` is answered 431 and the
//!   connection closed (hyper's default lets it grow to ~400 KB per connection).
//!
//! Before hyper sees a connection, it takes a place in the [`Gate`] (the total and per-IP
//! caps). When the total is full, the connection that has waited longest for a request head
//! is evicted (closed at once, without an answer) to make room. A connection is busy, not
//! evictable, from the moment hyper has read a request head until hyper has taken the whole
//! response body (`BusyBody`), and while hyper's writes wait on a peer that does not read
//! (`WatchedIo`). A connection over the per-IP cap, or over the total when every holder is
//! busy, gets a fixed `429` or `503` written without waiting, and is closed. The place is
//! given back when the connection ends or is handed over as a WebSocket (hyper's connection future completes at the upgrade), so WebSockets are
//! not counted. A connection from a trusted proxy takes a place in the total only; each of its
//! requests moves its per-IP place to the client `X-Forwarded-For` names ([`client_ip`]),
//! where it stays until the next request, the end of the connection or the upgrade; a
//! request whose client holds all its places is answered 429.
//!
//! HTTP/2 is not served (browsers use it only over TLS, which a reverse proxy in front would
//! terminate). Errors of single connections (timeouts, resets, malformed requests) are
//! logged at debug: on the open internet they are routine.

use std::io::IoSlice;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use warp::http::{Request, StatusCode};
use warp::Reply;

use super::gate::{client_ip, Busy, Gate, Permit, Refused};
use super::{http, Shared, SHUTDOWN_GRACE};
use crate::config::MIN_MAX_HEADER_BYTES;

/// How long the accept loop pauses after an error such as "too many open files" (the
/// connection waits in the kernel's queue meanwhile).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// At most one warning per this long about failing accepts.
const ACCEPT_ERROR_LOG_GAP: Duration = Duration::from_secs(10);

/// Serves the routes on `listener` until `stop` is cancelled, then stops accepting, lets open
/// requests finish (kept-alive idle connections are closed) and waits at most
/// [`SHUTDOWN_GRACE`] for them.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: &CancellationToken) {
    let settings = &shared.server;
    let gate = Gate::new(
        usize::try_from(settings.max_http_connections).unwrap_or(usize::MAX),
        usize::try_from(settings.max_http_connections_per_ip).unwrap_or(usize::MAX),
        shared.evicted_connections.clone(),
    );
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms))
        // hyper refuses (panics on) a buffer under 8 KiB; the config checks it, this guards a
        // `ServerConfig` built in code.
        .max_buf_size(
            usize::try_from(settings.max_header_bytes.max(MIN_MAX_HEADER_BYTES))
                .unwrap_or(usize::MAX),
        )
        .keep_alive(true);
    let routes = TowerToHyperService::new(warp::service(http::routes(shared.clone())));
    let mut last_warned: Option<Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    if last_warned.is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_GAP) {
                        tracing::warn!(
                            "cannot accept connections: {e} ({} HTTP connections open)",
                            gate.total()
                        );
                        last_warned = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let peer = peer.ip().to_canonical();
        let proxied = settings
            .trusted_proxies
            .iter()
            .any(|p| p.to_canonical() == peer);
        let permit = match gate.admit_connection((!proxied).then_some(peer)) {
            Ok(permit) => permit,
            Err(refused) => {
                tracing::debug!(%peer, ?refused, "connection refused");
                if let Some(metrics) = &shared.metrics {
                    metrics.refused(refused == Refused::PerIp);
                }
                let _ = tcp.try_write(refusal(refused));
                continue;
            }
        };
        let conn = Conn {
            tcp,
            permit,
            peer,
            proxied,
            builder: builder.clone(),
            routes: routes.clone(),
            gate: gate.clone(),
            shared: shared.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(conn.serve());
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, gate.wait_empty())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} HTTP connection(s) still open {SHUTDOWN_GRACE:?} after shutdown began; not waiting for them",
            gate.total()
        );
    }
}

/// The whole answer to a connection over a cap.
fn refusal(refused: Refused) -> &'static [u8] {
    match refused {
        Refused::Total => {
            b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        }
        Refused::PerIp => {
            b"HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        }
    }
}

/// One accepted connection and what serving it needs (`R`: the routes as a hyper service).
struct Conn<R> {
    tcp: TcpStream,
    /// Its place in the [`Gate`], given back when it ends.
    permit: Permit,
    /// The TCP peer, canonical.
    peer: IpAddr,
    /// Whether the peer is a trusted proxy.
    proxied: bool,
    builder: http1::Builder,
    routes: R,
    gate: Arc<Gate>,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl<R> Conn<R>
where
    R: hyper::service::Service<
            Request<Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Send
        + Sync
        + 'static,
    R::Future: Send + 'static,
{
    /// Serves HTTP/1.1 until the connection ends or is handed over as a WebSocket; on
    /// shutdown, finishes the request in progress and closes.
    async fn serve(self) {
        let Conn {
            tcp,
            permit,
            peer,
            proxied,
            builder,
            routes,
            gate,
            shared,
            stop,
        } = self;
        // A proxied connection's per-IP place: for the client its latest request names.
        let held: Mutex<Option<Permit>> = Mutex::new(None);
        let evicted = permit.evicted();
        let service = service_fn(|req: Request<Incoming>| {
            // hyper calls this once the head has been read.
            let busy = permit.busy();
            let refused = proxied.then(|| {
                let client = client_ip(peer, req.headers(), &shared.server.trusted_proxies);
                let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
                // Give back the place of the previous request first: the same client asking
                // again on this connection is not a second connection.
                *held = None;
                match gate.admit_request(client) {
                    Ok(permit) => {
                        *held = Some(permit);
                        None
                    }
                    Err(refused) => {
                        if let Some(metrics) = &shared.metrics {
                            metrics.refused(refused == Refused::PerIp);
                        }
                        Some(refused)
                    }
                }
            });
            let answer = match refused.flatten() {
                Some(refused) => Err(refused),
                None => Ok(routes.call(req)),
            };
            async move {
                let response = match answer {
                    Ok(answer) => answer.await?,
                    Err(refused) => refused_response(refused),
                };
                // Busy until hyper drops the body: taken into its buffer, or the connection
                // gone (waiting for that buffer to drain is `WatchedIo`'s).
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| BusyBody { body, _busy: busy }),
                )
            }
        });
        let io = WatchedIo {
            tcp,
            write_blocked: permit.write_blocked(),
        };
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            () = evicted.cancelled() => {
                tracing::debug!(%peer, "HTTP connection evicted: waited longest for a request head");
                return;
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, "HTTP connection ended: {e}");
        }
    }
}

/// The answer to a proxied request whose client is over a cap.
fn refused_response(refused: Refused) -> warp::reply::Response {
    let status = match refused {
        Refused::Total => StatusCode::SERVICE_UNAVAILABLE,
        Refused::PerIp => StatusCode::TOO_MANY_REQUESTS,
    };
    warp::reply::with_status("too many connections\n", status).into_response()
}

/// A response body that keeps its connection busy (not evictable) until hyper drops it.
struct BusyBody<B> {
    body: B,
    /// Dropped with the body.
    _busy: Busy,
}

impl<B: Body + Unpin> Body for BusyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The TCP stream as hyper sees it, noting in `write_blocked` whether the last write or
/// flush had to wait (the peer is not reading what hyper has buffered for it): such a
/// connection is still busy with its response, and not evicted.
struct WatchedIo {
    tcp: TcpStream,
    write_blocked: Arc<AtomicBool>,
}

impl WatchedIo {
    fn note<T>(&self, poll: Poll<T>) -> Poll<T> {
        self.write_blocked
            .store(poll.is_pending(), Ordering::Relaxed);
        poll
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.note(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.tcp).poll_flush(cx);
        self.note(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
