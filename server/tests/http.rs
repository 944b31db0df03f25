//! The HTTP side: the page and assets, `/healthz`, and a clean shutdown.

mod common;

use common::*;
use futures_util::SinkExt;
use pairlab_server::assets;

#[tokio::test]
async fn index_and_assets() {
    let server = TestServer::start().await;
    let (status, headers, body) = server.get("/").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = String::from_utf8_lossy(&body);
    if assets::client_built() {
        assert!(html.contains("<html") || html.contains("<!doctype") || html.contains("<!DOCTYPE"));
        let (status, headers, body) = server.get("/pkg/pairlab_client_bg.wasm").await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some("application/wasm"));
        assert_eq!(&body[..4], b"\0asm", "a WebAssembly module");
        let (status, headers, _) = server.get("/pkg/pairlab_client.js").await;
        assert_eq!(status, 200);
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/javascript; charset=utf-8")
        );
    } else {
        assert!(html.contains("was not built"), "{html}");
        assert!(html.contains(assets::BUILD_CLIENT_COMMAND), "{html}");
    }

    // ETag revalidation.
    let etag = header(&headers, "etag").expect("etag").to_owned();
    let (status, _, body) = http_get(server.addr, "/", &[("If-None-Match", etag.as_str())]).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());

    let (status, _, _) = server.get("/no/such/file.js").await;
    assert_eq!(status, 404);
    let (status, _, _) = server.get("/../Cargo.toml").await;
    assert_ne!(status, 200);
}

#[tokio::test]
async fn healthz_counts_connections() {
    let server = TestServer::start().await;
    let (status, headers, body) = server.get("/healthz").await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|v| v.starts_with("application/json")));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["connections"], 0);
    assert_eq!(v["scenes"][0], "probe");

    let (_a, _) = server.join("alice", "trio").await;
    let (_b, _) = server.join("bob", "trio").await;
    let (_, _, body) = server.get("/healthz").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["connections"], 2, "{v}");
    assert_eq!(v["waiting"], 2, "{v}");
}

#[tokio::test]
async fn plain_get_on_ws_is_not_an_upgrade() {
    let server = TestServer::start().await;
    let (status, _, _) = server.get("/ws").await;
    assert_ne!(status, 101);
    assert!(status >= 400, "{status}");
}

#[tokio::test]
async fn shutdown_closes_websockets_with_1001_and_flushes_the_record() {
    let mut server = TestServer::start().await;
    let (mut a, _) = server.join("alice", "trio").await;
    let (mut b, _) = server.join("bob", "trio").await;
    let stop = server.stop();
    let (ra, rb, ()) = tokio::join!(a.expect_closed(), b.expect_closed(), stop);
    assert_eq!(ra.0, Closed::Code(1001));
    assert_eq!(rb.0, Closed::Code(1001));
    // Everything the core recorded is on disk once stop() returns.
    let events = server.events("trio");
    let joined = events
        .iter()
        .filter(|e| e["event"] == "participant_joined")
        .count();
    assert_eq!(joined, 2, "{events:#?}");
    // The shutdown ends the live sessions (its disconnects are not drops); lifecycle.rs checks
    // the whole sequence.
    let shut_down = events
        .iter()
        .filter(|e| e["event"] == "participant_left" && e["reason"] == "server_shutdown")
        .count();
    assert_eq!(shut_down, 2, "{events:#?}");
    assert!(
        !events.iter().any(|e| e["event"] == "participant_dropped"),
        "{events:#?}"
    );
    // The port is released.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn silent_connections_are_closed() {
    let server =
        TestServer::with_options(TEST_CONFIG, Some(std::time::Duration::from_millis(300))).await;
    // Connected, never says hello.
    let mut silent = server.connect().await;
    silent.name = "silent".into();
    let t0 = std::time::Instant::now();
    let (closed, seen) = silent.expect_closed().await;
    assert_eq!(closed, Closed::Code(1008), "{seen:?}");
    assert!(
        t0.elapsed() >= std::time::Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    // A client that keeps sending frames (here WebSocket pings) is not idle.
    let mut talker = server.connect().await;
    for _ in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        talker
            .ws
            .send(tokio_tungstenite::tungstenite::Message::Ping(
                vec![1u8].into(),
            ))
            .await
            .expect("still open");
    }
    talker.hello("talker", Some("trio"), None).await;
}
