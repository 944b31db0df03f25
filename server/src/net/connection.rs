//! One task per WebSocket: bytes and sockets only. It reads frames and hands them, with the
//! time, to the connection's [`Connection`] (the protocol rules, in
//! [`crate::core::connection`]), writes what that and the core send, forwards the events it
//! makes to the core task, and ends the socket with the close it decides.
//!
//! [`run`] registers the connection with the core task ([`CoreInput::Open`]), runs a
//! [`Handler`] until the connection ends, tells the core ([`Event::Disconnected`]), and
//! finishes the close handshake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pairlab_shared::ServerMessage;
use rand_chacha::rand_core::{OsError, OsRng, TryRngCore};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::core_task::{CoreInput, Link, OUTBOUND_QUEUE};
use super::upgrade::Socket;
use super::{sleep_until, Shared};
use crate::core::connection::{Close, Connection, Frame, Output, ReadError};
use crate::core::rtt::PingIds;
use crate::core::Event;

/// How long one write to a socket may take before the client counts as too slow.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits for the client's answer to its close frame.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

type Sink = futures_util::stream::SplitSink<Socket, Message>;
type Stream = futures_util::stream::SplitStream<Socket>;

/// Serves one upgraded WebSocket until it ends. A socket that arrives while the server shuts
/// down, or after the core has stopped, is turned away with 1001.
pub(super) async fn run(socket: Socket, shared: Arc<Shared>) {
    let _open = OpenGuard::new(shared.clone());
    let conn = shared.conn_ids.next();
    let (mut sink, mut stream) = socket.split();
    let ping_ids = match ping_ids_from_os() {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(
                ?conn,
                "no randomness for ping ids from the operating system: {e}"
            );
            close(&mut sink, &mut stream, End::Close(Close::GOING_AWAY)).await;
            return;
        }
    };
    let (out, outbound) = mpsc::channel::<ServerMessage>(OUTBOUND_QUEUE);
    let (too_slow_tx, too_slow) = oneshot::channel::<()>();
    let open = CoreInput::Open {
        conn,
        link: Link {
            out,
            too_slow: too_slow_tx,
        },
    };
    if shared.stop.is_cancelled() || shared.core.send(open).await.is_err() {
        close(&mut sink, &mut stream, End::Close(Close::GOING_AWAY)).await;
        return;
    }
    tracing::debug!(?conn, "connection opened");
    let mut handler = Handler {
        sink,
        stream,
        rules: Connection::new(conn, Instant::now(), shared.timeouts, ping_ids),
        outbound,
        too_slow: Some(too_slow),
        stop: shared.stop.clone(),
        core: shared.core.clone(),
        metrics: shared.metrics.clone(),
    };
    let end = handler.run().await;
    handler.finish(end).await;
}

/// A connection's ping ids, seeded with 32 bytes of the operating system's randomness so a
/// client cannot predict them (the core reads no randomness itself).
fn ping_ids_from_os() -> Result<PingIds, OsError> {
    let mut seed = [0u8; 32];
    OsRng.try_fill_bytes(&mut seed)?;
    Ok(PingIds::from_seed(seed))
}

/// Counts one open WebSocket in [`Shared::open`] while it lives.
struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open.send_modify(|n| *n += 1);
        OpenGuard(shared)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.send_modify(|n| *n -= 1);
    }
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed (close frame or EOF): answer its close, nothing else.
    ByPeer,
    /// The server closes with this frame.
    Close(Close),
    /// The transport broke: nothing more can be sent.
    Broken,
}

/// What woke the connection task.
enum Wake {
    /// The core found the outbound queue full.
    TooSlow,
    /// The core dropped its too-slow signal (it let go of the connection).
    TooSlowDropped,
    /// The server is shutting down.
    Stop,
    /// The core sent a message (`None`: the core closed the connection).
    Outbound(Option<ServerMessage>),
    /// The connection's [`Connection::poll_timeout`] passed.
    Timeout,
    /// The socket gave a frame, an error, or ended (`None`).
    Frame(Option<Result<Message, WsError>>),
}

/// The live state of one WebSocket's task.
struct Handler {
    /// The socket's write half.
    sink: Sink,
    /// The socket's read half.
    stream: Stream,
    /// The connection's protocol rules (and its id); every input goes through it.
    rules: Connection,
    /// What the core sends this connection ([`OUTBOUND_QUEUE`] at most); it ends when the core
    /// closes the connection.
    outbound: mpsc::Receiver<ServerMessage>,
    /// Fires when the core finds the outbound queue full; `None` once the core has dropped it.
    too_slow: Option<oneshot::Receiver<()>>,
    /// Cancelled when the server shuts down.
    stop: CancellationToken,
    /// The core task's inbox.
    core: mpsc::Sender<CoreInput>,
    /// Counts a close for the rate limit, if metrics are kept.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Handler {
    /// Runs the connection until it ends, and says how.
    async fn run(&mut self) -> End {
        loop {
            if let Some(end) = self.carry_out().await {
                return end;
            }
            let wake = self.next_wake().await;
            let now = Instant::now();
            match wake {
                Wake::TooSlow => return End::Close(Close::TOO_SLOW),
                // The core closed the connection: the outbound queue ends too.
                Wake::TooSlowDropped => self.too_slow = None,
                Wake::Stop => return End::Close(Close::GOING_AWAY),
                Wake::Outbound(Some(msg)) => self.rules.handle_send(now, msg),
                Wake::Outbound(None) => return End::Close(Close::NORMAL),
                Wake::Timeout => self.rules.handle_timeout(now),
                Wake::Frame(None) => return End::ByPeer,
                Wake::Frame(Some(Ok(msg))) => match frame_of(&msg) {
                    Some(frame) => self.rules.handle_frame(now, frame),
                    None => return End::ByPeer,
                },
                Wake::Frame(Some(Err(e))) => {
                    tracing::debug!(conn = ?self.rules.conn(), "websocket read error: {e}");
                    self.rules.handle_read_error(match e {
                        WsError::Capacity(_) => ReadError::TooBig,
                        _ => ReadError::Protocol,
                    });
                }
            }
        }
    }

    /// Waits for the next thing to happen. Biased: closing wins over writing, writing over
    /// reading (the rate limit bounds reading).
    async fn next_wake(&mut self) -> Wake {
        let deadline = self.rules.poll_timeout();
        let Handler {
            stream,
            outbound,
            too_slow,
            stop,
            ..
        } = self;
        tokio::select! {
            biased;
            fired = fired(too_slow) => if fired { Wake::TooSlow } else { Wake::TooSlowDropped },
            () = stop.cancelled() => Wake::Stop,
            msg = outbound.recv() => Wake::Outbound(msg),
            () = sleep_until(deadline) => Wake::Timeout,
            frame = stream.next() => Wake::Frame(frame),
        }
    }

    /// Carries out what the rules decided: writes, events for the core, a close. Returns how
    /// the connection ends, if it does.
    async fn carry_out(&mut self) -> Option<End> {
        while let Some(output) = self.rules.poll_output() {
            match output {
                Output::Send(msg) => {
                    if !write(&mut self.sink, &msg).await {
                        return Some(End::Broken);
                    }
                }
                Output::Event(event) => {
                    if self.core.send(CoreInput::Event(event)).await.is_err() {
                        return Some(End::Close(Close::GOING_AWAY));
                    }
                }
                Output::Close(close) => {
                    if let Some(metrics) = self
                        .metrics
                        .as_ref()
                        .filter(|_| close == Close::RATE_LIMITED)
                    {
                        metrics.rate_limited();
                    }
                    tracing::info!(conn = ?self.rules.conn(), code = close.code, "closing: {}", close.reason);
                    return Some(End::Close(close));
                }
            }
        }
        None
    }

    /// Lets the core go of the connection at once, then finishes the close handshake for `end`.
    async fn finish(mut self, end: End) {
        self.outbound.close();
        let _ = self
            .core
            .send(CoreInput::Event(Event::Disconnected {
                conn: self.rules.conn(),
            }))
            .await;
        let ignored = self.rules.ignored_pongs();
        if ignored.suspect() > 0 {
            tracing::warn!(
                conn = ?self.rules.conn(),
                unsent = ignored.unsent,
                too_fast = ignored.too_fast,
                "ignored pongs for pings not sent, or faster than plausible"
            );
        }
        tracing::debug!(conn = ?self.rules.conn(), ?end, ?ignored, "connection ended");
        close(&mut self.sink, &mut self.stream, end).await;
    }
}

/// Resolves when the too-slow signal fires (`true`) or is dropped (`false`); never when there
/// is none.
async fn fired(signal: &mut Option<oneshot::Receiver<()>>) -> bool {
    match signal {
        Some(rx) => rx.await.is_ok(),
        None => std::future::pending().await,
    }
}

/// A read message as the rules see it; `None` for a close frame (the client closing).
fn frame_of(msg: &Message) -> Option<Frame<'_>> {
    match msg {
        Message::Text(text) => Some(Frame::Text(text.as_str())),
        Message::Binary(bytes) => Some(Frame::Binary {
            len_bytes: bytes.len(),
        }),
        // WebSocket-level ping/pong: tungstenite answers pings itself.
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Some(Frame::Control),
        Message::Close(_) => None,
    }
}

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
            End::Close(close) => {
                let frame = CloseFrame {
                    code: CloseCode::from(close.code),
                    reason: close.reason.into(),
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
