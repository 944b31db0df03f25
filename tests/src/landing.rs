//! A stand-in for the recruiter's site (Prolific's completion page): an HTTP server on a free
//! port of 127.0.0.1 that answers every GET with a small page and remembers each request's
//! path and query, so a test can see where a participant's browser was sent and with which
//! placeholders filled in.
//!
//! Served by hyper's connection-level HTTP/1.1 server (`hyper::server::conn::http1`, the same
//! hyper 1 the harness's client uses), one task per connection; everything stops when the
//! [`Landing`] is dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::process::Wait;
use crate::{HarnessError, Result};

/// The recruiter's stand-in. See the module docs.
#[derive(Debug)]
pub struct Landing {
    port: u16,
    hits: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Landing {
    /// Binds 127.0.0.1:0 and serves until dropped.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when no port can be bound.
    pub async fn start() -> Result<Landing> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| HarnessError::Io {
                what: "bind the landing server on 127.0.0.1:0".into(),
                source: e,
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| HarnessError::Io {
                what: "the landing server's address".into(),
                source: e,
            })?
            .port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<Incoming>| {
                        let target = req
                            .uri()
                            .path_and_query()
                            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
                        if let Ok(mut hits) = seen.lock() {
                            hits.push(target);
                        }
                        async {
                            let page =
                                "<!doctype html><title>Landed</title><p id=landed>Thank you.</p>";
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(page.as_bytes()),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Landing { port, hits, task })
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request target (path and query) served so far, in order.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Waits until a request whose target starts with `prefix` arrived, and returns it.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] after `timeout`, with the targets seen.
    pub async fn wait_for(&self, prefix: &str, timeout: Duration) -> Result<String> {
        let wait = Wait::new(
            format!("a request for {prefix}… on the landing server"),
            timeout,
        );
        loop {
            let hits = self.hits();
            if let Some(hit) = hits.iter().find(|h| h.starts_with(prefix)) {
                return Ok(hit.clone());
            }
            wait.tick(format!("seen: {hits:?}")).await?;
        }
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        self.task.abort();
    }
}
