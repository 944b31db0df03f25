//! The harness's one HTTP client call: a GET on 127.0.0.1 ([`http_get`]), for `/healthz`, the
//! page and its assets, and chromedriver's `/status`.
//!
//! It speaks HTTP/1.1 through hyper's connection-level client (`hyper::client::conn::http1`,
//! the same hyper 1 that fantoccini and the server already use) over a fresh TCP connection
//! per request: no pool, so a server that keeps connections open (chromedriver) holds nothing
//! of the harness's between polls, and the body ends where HTTP says it does.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{HarnessError, Result};

/// How long one GET may take, connection to last body byte.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET http://127.0.0.1:<port><path>`: the status code and the body.
///
/// # Errors
/// [`HarnessError::Http`] when the connection fails, the exchange is not valid HTTP/1.1, or no
/// complete answer comes within [`HTTP_TIMEOUT`].
pub async fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    http_get_with(port, path, &[]).await
}

/// [`http_get`] with extra request `headers` (name, value), e.g. `Authorization`.
///
/// # Errors
/// As [`http_get`]; also when a header is not a valid name or value.
pub async fn http_get_with(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Vec<u8>)> {
    let what = format!("GET http://127.0.0.1:{port}{path}");
    let failed = |detail: String| HarnessError::Http {
        what: what.clone(),
        detail,
    };
    let exchange = async {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        // The connection task ends when the exchange does (the sender is dropped with it).
        let driver = tokio::spawn(connection);
        let mut request =
            http::Request::get(path).header(http::header::HOST, format!("127.0.0.1:{port}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::<&'static [u8]>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok::<_, String>((status, body))
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| failed(format!("no complete answer within {HTTP_TIMEOUT:?}")))?
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot server that answers with `answer` and keeps the connection open (as
    /// chromedriver does): the GET must end at `Content-Length`.
    #[tokio::test]
    async fn get_reads_status_and_body_from_a_server_that_keeps_the_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let n = socket.read(&mut buf).await.expect("read");
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            socket
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!")
                .await
                .expect("write");
            // The socket is returned, not closed: the connection stays open.
            (request, socket)
        });
        let (status, body) = http_get(port, "/x?y=1").await.expect("get");
        assert_eq!(status, 404);
        assert_eq!(body, b"nope!");
        let (request, _socket) = server.await.expect("server");
        assert!(request.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{request}");
        assert!(
            request.to_ascii_lowercase().contains("host: 127.0.0.1:"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn get_on_a_closed_port_is_an_http_error() {
        let port = crate::free_port().expect("port");
        match http_get(port, "/").await {
            Err(HarnessError::Http { detail, .. }) => assert!(detail.contains("connect")),
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
}
