//! `pairlab healthcheck [--addr ADDR]`: asks a running server's `/healthz` whether it is
//! healthy, for a container's `HEALTHCHECK` (the image holds no curl and no shell) or a
//! monitoring script.
//!
//! Healthy means HTTP 200 with `"status":"ok"`; `"degraded"` (the research record cannot be
//! written, or its queue overflowed moments ago) is not healthy: research data is being lost.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt as _;

/// The most of a `/healthz` body read, bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why the server is not healthy, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// No TCP connection.
    #[error("cannot connect to {addr}: {source} (is `pairlab serve` running on that address?)")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("no answer from {0} within the time limit")]
    Timeout(SocketAddr),
    /// The HTTP exchange failed.
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (an address hyper does not accept as a Host).
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
    /// An answer other than 200.
    #[error("/healthz answered HTTP {0}")]
    Status(u16),
    /// The body was not the JSON `/healthz` sends, or too large.
    #[error("/healthz sent an unexpected body: {0}")]
    Body(String),
    /// The server says it is degraded.
    #[error("degraded: {0}")]
    Degraded(String),
}

/// Asks `http://ADDR/healthz`, waiting at most `limit` in all.
///
/// # Errors
/// A [`HealthError`] saying why the server is not healthy or could not be asked.
pub async fn check(addr: SocketAddr, limit: Duration) -> Result<(), HealthError> {
    tokio::time::timeout(limit, ask(addr))
        .await
        .map_err(|_| HealthError::Timeout(addr))?
}

async fn ask(addr: SocketAddr) -> Result<(), HealthError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| HealthError::Connect { addr, source })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("/healthz")
        .header(hyper::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<&'static [u8]>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = http_body_util::Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| HealthError::Body(e.to_string()))?
        .to_bytes();
    driver.abort();
    if status != 200 {
        return Err(HealthError::Status(status));
    }
    let health: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| HealthError::Body(e.to_string()))?;
    match health.get("status").and_then(serde_json::Value::as_str) {
        Some("ok") => Ok(()),
        Some("degraded") => Err(HealthError::Degraded(
            health
                .get("reason")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("no reason given")
                .to_owned(),
        )),
        _ => Err(HealthError::Body(format!("no \"status\" in {health}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        // Bind and drop a listener: its port is (almost surely) closed now.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let err = check(addr, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, HealthError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("pairlab serve"), "{err}");
    }
}
