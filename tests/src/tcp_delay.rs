//! A TCP proxy that delays every byte by a fixed time in each direction: the page, its
//! WebSocket and the server's ping/pong then see a round trip of at least twice the delay,
//! as a participant far from the server would (the UDP [`crate::delay_proxy`] does the same
//! for WebRTC traffic).
//!
//! Each accepted connection opens one to the upstream; per direction, a reader task stamps
//! every chunk it reads with its arrival time and a writer task writes it once `delay` has
//! passed since then, in order (a FIFO of stamped chunks), so the stream is shifted in time,
//! not reordered or throttled. Everything stops when the [`TcpDelayProxy`] is dropped.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{HarnessError, Result};

/// The proxy. See the module docs.
#[derive(Debug)]
pub struct TcpDelayProxy {
    port: u16,
    task: JoinHandle<()>,
}

impl TcpDelayProxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `upstream`, with
    /// `one_way` added in each direction.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when no port can be bound.
    pub async fn start(upstream: SocketAddr, one_way: Duration) -> Result<TcpDelayProxy> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| HarnessError::Io { what, source }
        };
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(io("bind the TCP delay proxy on 127.0.0.1:0"))?;
        let port = listener
            .local_addr()
            .map_err(io("the TCP delay proxy's address"))?
            .port();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(shift(cr, sw, one_way), shift(sr, cw, one_way));
                });
            }
        });
        Ok(TcpDelayProxy { port, task })
    }

    /// The port browsers connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }
}

impl Drop for TcpDelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read; ends (and shuts `to` down) when
/// `from` ends or either side fails.
async fn shift(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
