//! The `/ws` upgrade, done by hand: RFC 6455 §4.2 ([`websocket_accept_key`]), the `Origin`
//! check ([`origin_allowed`]), then hyper's `OnUpgrade`, then tungstenite over the connection
//! hyper hands over, with [`ws_config`].
//!
//! Not `warp::ws()`, for one reason: memory. warp 0.4's `Ws` builder sets tungstenite's message
//! and frame limits but not its buffers, and tungstenite's default read buffer is 128 KiB,
//! allocated and zero-filled for every connection (so resident, and zero-filled again on every
//! read). Measured with `loadgen hold` (tests/src/bin/loadgen/hold.rs) at 10,000 held connections:
//! 1.40 GB, ~140 KB each, with warp's socket; 131 MB, ~12.5 KB each, with [`ws_config`] (a
//! [`WS_READ_BUFFER`] of 4 KiB).

use std::sync::Arc;

use pairlab_shared::MAX_FRAME_BYTES;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::hyper::upgrade::{OnUpgrade, Upgraded};
use warp::Reply;

use super::{connection, Shared};
use crate::config::AllowedOrigins;

/// tungstenite's read buffer per connection, bytes (its default is 128 KiB). Frames arrive
/// a few hundred bytes at a time; a larger frame (up to [`MAX_FRAME_BYTES`]) grows the buffer
/// as needed, so this only sets the resting size, which is what 10,000 held connections pay.
pub const WS_READ_BUFFER: usize = 4 * 1024;
/// The most a connection's unwritten output may grow to, bytes, before a write fails
/// (tungstenite's default is unbounded); far above any one message the server sends.
pub const WS_MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// The socket of one participant: tungstenite over the connection hyper handed over.
pub(super) type Socket = WebSocketStream<hyper_util::rt::TokioIo<Upgraded>>;

/// The WebSocket settings of every connection: [`WS_READ_BUFFER`], each message written
/// through at once (every send is flushed anyway), output bounded by [`WS_MAX_WRITE_BUFFER`],
/// and messages and frames limited to [`MAX_FRAME_BYTES`] (PROTOCOL.md: larger closes with
/// 1009).
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// Whether `headers` ask for a WebSocket upgrade (RFC 6455 §4.2.1: `Connection` lists
/// `upgrade`, `Upgrade` lists `websocket`, `Sec-WebSocket-Version: 13`, a
/// `Sec-WebSocket-Key` of 16 bytes in base64), and if so the `Sec-WebSocket-Accept` value
/// that answers the key (§4.2.2). The method (GET) is checked by the route.
pub fn websocket_accept_key(headers: &HeaderMap) -> Option<String> {
    let lists = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !lists(header::CONNECTION, "upgrade") || !lists(header::UPGRADE, "websocket") {
        return None;
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION)?.as_bytes() != b"13" {
        return None;
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)?
        .as_bytes()
        .trim_ascii();
    // base64 of 16 bytes: 22 characters and "==".
    if key.len() != 24 || !key.ends_with(b"==") {
        return None;
    }
    Some(derive_accept_key(key))
}

/// Whether a `/ws` handshake with these `headers` may go on under `allowed`.
///
/// Browsers send the page's origin on every WebSocket handshake (RFC 6455 §4.1 item 8), and
/// a server that does not check it lets any web page open sockets in its visitors' names
/// (§10.2). A handshake without `Origin` comes from a program, not a browser page, and is let
/// through: such a client can write any `Origin` it likes, so refusing it would protect
/// nothing. [`AllowedOrigins::SameHost`] accepts `http://` or `https://` followed by the
/// request's `Host` exactly (without case); an `Origin` that is not text is refused.
pub fn origin_allowed(headers: &HeaderMap, allowed: &AllowedOrigins) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.to_ascii_lowercase();
    match allowed {
        AllowedOrigins::Any => true,
        AllowedOrigins::List(list) => list.contains(&origin),
        AllowedOrigins::SameHost => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|host| {
                let host = host.to_ascii_lowercase();
                origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"))
                    == Some(host.as_str())
            }),
    }
}

/// Answers a valid upgrade request (its `Sec-WebSocket-Accept` value is `accept`) with
/// `101 Switching Protocols` and, once hyper hands the connection over, runs a
/// [`connection`] task on it with [`ws_config`]; `403` when its `Origin` is not allowed
/// ([`origin_allowed`]).
pub(super) fn upgrade(
    accept: String,
    headers: HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    shared: Arc<Shared>,
) -> warp::reply::Response {
    if !origin_allowed(&headers, &shared.server.allowed_origins) {
        tracing::debug!(origin = ?headers.get(header::ORIGIN), "websocket origin refused");
        return warp::reply::with_status(
            "this origin may not open the WebSocket\n",
            StatusCode::FORBIDDEN,
        )
        .into_response();
    }
    let Some(on_upgrade) = on_upgrade else {
        // Not an HTTP/1.1 connection that can be taken over (hyper adds `OnUpgrade` to every
        // request of one).
        return warp::reply::with_status("not an upgradable connection\n", StatusCode::BAD_REQUEST)
            .into_response();
    };
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = hyper_util::rt::TokioIo::new(upgraded);
                let socket =
                    WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
                connection::run(socket, shared).await;
            }
            Err(e) => tracing::debug!("websocket upgrade failed: {e}"),
        }
    });
    let mut res = warp::reply::Response::default();
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// RFC 6455 §1.3's worked example: key `dGhlIHNhbXBsZSBub25jZQ==` is answered with
    /// `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`; header tokens are matched in lists and without case.
    #[test]
    fn accept_key_follows_rfc_6455() {
        let ok = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(
            websocket_accept_key(&upgrade_headers(&ok)).as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        // Each requirement, missing or wrong, refuses the upgrade.
        for (i, bad) in [
            ("connection", "keep-alive"),
            ("upgrade", "h2c"),
            ("sec-websocket-version", "8"),
            ("sec-websocket-key", "short"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut headers = ok;
            headers[i] = bad;
            assert_eq!(
                websocket_accept_key(&upgrade_headers(&headers)),
                None,
                "{bad:?}"
            );
            let without: Vec<_> = ok.iter().copied().filter(|(k, _)| *k != bad.0).collect();
            assert_eq!(
                websocket_accept_key(&upgrade_headers(&without)),
                None,
                "no {}",
                bad.0
            );
        }
    }

    /// No `Origin` (not a browser): allowed. Same host over http or https: allowed by
    /// default; another host, a port that differs, a lookalike: refused. A list replaces the
    /// default; `*` allows all.
    #[test]
    fn origins_follow_the_setting() {
        let same = AllowedOrigins::SameHost;
        let host = |origin: &'static str| {
            upgrade_headers(&[("host", "Study.example.org:8080"), ("origin", origin)])
        };
        assert!(origin_allowed(
            &upgrade_headers(&[("host", "a.org")]),
            &same
        ));
        assert!(origin_allowed(
            &host("http://study.example.org:8080"),
            &same
        ));
        assert!(origin_allowed(
            &host("HTTPS://study.EXAMPLE.org:8080"),
            &same
        ));
        for bad in [
            "http://evil.example",
            "http://study.example.org",
            "http://study.example.org:8081",
            "http://study.example.org:8080.evil.example",
            "ws://study.example.org:8080",
            "null",
        ] {
            assert!(!origin_allowed(&host(bad), &same), "{bad}");
        }
        assert!(!origin_allowed(
            &upgrade_headers(&[("origin", "http://a.org")]),
            &same
        ));
        let list = AllowedOrigins::List(vec!["https://study.example.org".into()]);
        assert!(origin_allowed(&host("https://Study.example.org"), &list));
        assert!(!origin_allowed(
            &host("http://study.example.org:8080"),
            &list
        ));
        assert!(origin_allowed(
            &host("http://evil.example"),
            &AllowedOrigins::Any
        ));
    }

    /// The settings every connection gets: the small read buffer this module exists for, and
    /// PROTOCOL.md's 64 KiB limit on messages and frames.
    #[test]
    fn socket_config_has_small_buffers_and_the_protocol_limits() {
        let c = ws_config();
        assert_eq!(c.read_buffer_size, WS_READ_BUFFER);
        assert!(c.read_buffer_size < WebSocketConfig::default().read_buffer_size);
        assert!(c.max_write_buffer_size > c.write_buffer_size);
        assert_eq!(c.max_message_size, Some(MAX_FRAME_BYTES));
        assert_eq!(c.max_frame_size, Some(MAX_FRAME_BYTES));
    }
}
