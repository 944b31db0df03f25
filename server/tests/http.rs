//! The HTTP side: the page and assets, `/healthz`, and a clean shutdown.

mod common;

use common::*;
use futures_util::SinkExt;
use pairlab_server::assets;
use pairlab_server::record::{events_of, kind_of};

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

/// The files a participant's browser loads for the page (the client's only when it was built).
fn page_files() -> Vec<&'static str> {
    // Everything the built-in page loads: the page, its stylesheet, the API module and the
    // page's own scripts on it, and the wasm client.
    let mut paths = vec!["/", "/style.css", "/pairlab.js", "/app.js", "/demo.js"];
    if assets::client_built() {
        paths.extend(["/pkg/pairlab_client.js", "/pkg/pairlab_client_bg.wasm"]);
    }
    paths
}

fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "br" => brotli::BrotliDecompress(&mut &body[..], &mut out).expect("valid brotli"),
        "gzip" => {
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out)
                .map(drop)
                .expect("valid gzip");
        }
        other => panic!("unexpected coding {other}"),
    }
    out
}

#[tokio::test]
async fn files_are_sent_in_the_coding_the_browser_accepts() {
    let server = TestServer::start().await;
    for path in page_files() {
        let (status, headers, identity) = server.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&headers, "content-encoding"),
            None,
            "{path}: no Accept-Encoding"
        );
        assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"), "{path}");
        let identity_etag = header(&headers, "etag").expect("etag").to_owned();
        let content_type = header(&headers, "content-type").map(str::to_owned);
        if path == "/" && !assets::client_built() {
            continue; // the "not built" page is generated, in identity only
        }
        let mut etags = vec![identity_etag.clone()];
        for (accept, coding) in [
            ("br", "br"),
            ("gzip", "gzip"),
            ("gzip, deflate, br, zstd", "br"),
            ("br;q=0, gzip", "gzip"),
            ("x-gzip", "gzip"),
            ("gzip;q=1, br;q=0.5", "gzip"),
        ] {
            let (status, headers, body) =
                http_get(server.addr, path, &[("Accept-Encoding", accept)]).await;
            assert_eq!(status, 200, "{path} {accept}");
            assert_eq!(
                header(&headers, "content-encoding"),
                Some(coding),
                "{path} {accept}"
            );
            assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"), "{path}");
            assert_eq!(
                header(&headers, "content-type").map(str::to_owned),
                content_type
            );
            assert!(body.len() < identity.len(), "{path} {coding}: smaller");
            assert!(
                decode(coding, &body) == identity,
                "{path} {coding}: the same bytes"
            );
            etags.push(header(&headers, "etag").expect("etag").to_owned());
        }
        let (br, gzip) = (&etags[1], &etags[2]);
        assert_ne!(br, &identity_etag, "{path}: one ETag per coding");
        assert_ne!(gzip, &identity_etag, "{path}: one ETag per coding");
        assert_ne!(br, gzip, "{path}: one ETag per coding");
        for (accept, coding) in [("identity", None), ("deflate, zstd", None)] {
            let (_, headers, body) =
                http_get(server.addr, path, &[("Accept-Encoding", accept)]).await;
            assert_eq!(
                header(&headers, "content-encoding"),
                coding,
                "{path} {accept}"
            );
            assert!(body == identity, "{path} {accept}");
        }
    }
}

#[tokio::test]
async fn revalidation_is_per_coding() {
    let server = TestServer::start().await;
    for path in page_files() {
        for accept in [None, Some("gzip"), Some("br")] {
            let accept_header: Vec<(&str, &str)> =
                accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
            let (_, headers, _) = http_get(server.addr, path, &accept_header).await;
            let etag = header(&headers, "etag").expect("etag").to_owned();
            let weak = format!("W/{etag}");
            for validator in [etag.as_str(), weak.as_str(), "\"other\", *"] {
                let mut request = accept_header.clone();
                request.push(("If-None-Match", validator));
                let (status, headers, body) = http_get(server.addr, path, &request).await;
                assert_eq!(status, 304, "{path} {accept:?} {validator}");
                assert!(body.is_empty());
                assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
                assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
                assert!(header(&headers, "cache-control").is_some());
            }
        }
        if path == "/" && !assets::client_built() {
            continue;
        }
        // A tag of another coding is not a match: the full body in the requested coding.
        let (_, headers, _) = server.get(path).await;
        let identity_etag = header(&headers, "etag").expect("etag").to_owned();
        let (status, headers, body) = http_get(
            server.addr,
            path,
            &[("Accept-Encoding", "br"), ("If-None-Match", &identity_etag)],
        )
        .await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "content-encoding"), Some("br"));
        assert!(!body.is_empty());
    }
}

#[tokio::test]
async fn versioned_files_are_immutable_and_the_page_is_revalidated() {
    const IMMUTABLE: &str = "public, max-age=31536000, immutable";
    let server = TestServer::start().await;
    let (_, headers, page) = server.get("/").await;
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    let page = String::from_utf8_lossy(&page).into_owned();
    let (_, headers, _) = server.get("/?v=anything").await;
    assert_eq!(
        header(&headers, "cache-control"),
        Some("no-cache"),
        "the page never is"
    );

    for path in page_files().into_iter().skip(1) {
        let version = assets::get(path)
            .and_then(|a| a.version)
            .expect("every file has a version");
        let versioned = format!("{path}?v={version}");
        if assets::client_built() {
            // The page loads exactly these URLs.
            assert!(
                page.contains(&format!(".{versioned}'"))
                    || page.contains(&format!("\"{}\"", &versioned[1..])),
                "the page refers to {versioned}: {page}"
            );
        }
        for accept in ["", "br", "gzip"] {
            let (status, headers, _) =
                http_get(server.addr, &versioned, &[("Accept-Encoding", accept)]).await;
            assert_eq!(status, 200, "{versioned}");
            assert_eq!(
                header(&headers, "cache-control"),
                Some(IMMUTABLE),
                "{versioned}"
            );
            assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
        }
        // Without the current version, the file is revalidated each time.
        for other in [
            path.to_owned(),
            format!("{path}?v=0000000000000000"),
            format!("{path}?x=1"),
        ] {
            let (status, headers, _) = server.get(&other).await;
            assert_eq!(status, 200, "{other}");
            assert_eq!(
                header(&headers, "cache-control"),
                Some("no-cache"),
                "{other}"
            );
        }
    }
}

/// What a participant's browser downloads for the page (Chromium's `Accept-Encoding`), body
/// bytes: under 150 KB with the release client that `./run.sh` builds.
#[tokio::test]
async fn a_page_load_is_under_150_kb() {
    if !assets::client_built() {
        return;
    }
    let server = TestServer::start().await;
    let mut total = 0;
    for path in page_files() {
        let (status, _, body) = http_get(
            server.addr,
            path,
            &[("Accept-Encoding", "gzip, deflate, br, zstd")],
        )
        .await;
        assert_eq!(status, 200, "{path}");
        total += body.len();
    }
    assert!(
        total < 150_000,
        "{total} bytes; is www/pkg the size-optimised build (wasm-pack build --profile wasm-release, as run.sh builds it)?"
    );
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
    let joined = events_of(&events, ResearchEventKind::ParticipantJoined).len();
    assert_eq!(joined, 2, "{events:#?}");
    // The shutdown ends the live sessions (its disconnects are not drops); lifecycle.rs checks
    // the whole sequence.
    let shut_down = events
        .iter()
        .filter(|e| {
            kind_of(e) == Some(ResearchEventKind::ParticipantLeft)
                && e["reason"] == "server_shutdown"
        })
        .count();
    assert_eq!(shut_down, 2, "{events:#?}");
    assert!(
        events_of(&events, ResearchEventKind::ParticipantDropped).is_empty(),
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
