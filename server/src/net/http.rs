//! The HTTP side: the routes (`/ws`, `/healthz`, the embedded files) and serving them until
//! shutdown.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warp::http::{header, HeaderMap, Response, StatusCode};
use warp::hyper::upgrade::OnUpgrade;
use warp::{Filter, Reply};

use super::upgrade::{upgrade, websocket_accept_key};
use super::{Shared, SHUTDOWN_GRACE};
use crate::assets;

/// Serves the routes on `listener` until `stop` is cancelled, then lets open requests finish,
/// waiting at most [`SHUTDOWN_GRACE`] for them.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: &CancellationToken) {
    let http = warp::serve(routes(shared))
        .incoming(listener)
        .graceful(stop.clone().cancelled_owned())
        .run();
    let grace = async {
        stop.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = http => {}
        () = grace => {
            tracing::warn!("HTTP requests still open {SHUTDOWN_GRACE:?} after shutdown began; not waiting for them");
        }
    }
}

/// `/ws` (an upgrade), `/healthz`, then every other `GET` as an embedded file.
fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
       + Clone
       + Send
       + Sync
       + 'static {
    let with_shared = {
        let shared = shared.clone();
        warp::any().map(move || shared.clone())
    };
    // Anything at /ws that is not a valid upgrade falls through to the files (404), as it did
    // with `warp::ws()`.
    let ws = warp::path("ws")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and_then(|headers: HeaderMap| async move {
            websocket_accept_key(&headers).ok_or_else(warp::reject::not_found)
        })
        .and(warp::ext::optional::<OnUpgrade>())
        .and(with_shared.clone())
        .map(upgrade);
    let health = warp::path("healthz")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_shared)
        .map(|shared: Arc<Shared>| health(&shared));
    let files = warp::get()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("if-none-match"))
        .map(|path: warp::path::FullPath, inm: Option<String>| asset_response(path.as_str(), inm));
    ws.or(health).unify().or(files).unify()
}

/// `/healthz`: open WebSockets, the core's counts, the scenes and the research record's
/// health, as JSON; `"status":"degraded"` with a `"reason"` when the record is degraded (see
/// [`crate::record::RecordHealth::status`]), `"ok"` otherwise. Always HTTP 200.
fn health(shared: &Shared) -> warp::reply::Response {
    let stats = *shared.stats.borrow();
    let record = shared.record.status(std::time::Instant::now());
    let mut body = serde_json::json!({
        "status": if record.degraded.is_some() { "degraded" } else { "ok" },
        "connections": *shared.open.borrow(),
        "participants": stats.participants,
        "waiting": stats.waiting,
        "probes": stats.probes,
        "groups": stats.groups,
        "scenes": shared.scene_ids,
        "record": record,
    });
    if let Some(reason) = &record.degraded {
        body["reason"] = serde_json::Value::from(reason.as_str());
    }
    warp::reply::json(&body).into_response()
}

/// One embedded file, `no-cache` with its `ETag`; `304` when `If-None-Match` lists that tag.
fn asset_response(path: &str, if_none_match: Option<String>) -> warp::reply::Response {
    let Some(asset) = assets::get(path) else {
        return warp::reply::with_status("not found\n", StatusCode::NOT_FOUND).into_response();
    };
    let not_modified = if_none_match
        .as_deref()
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    let builder = Response::builder()
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::ETAG, asset.etag.as_str());
    let built = if not_modified {
        builder.status(StatusCode::NOT_MODIFIED).body(Vec::new())
    } else {
        builder
            .header(header::CONTENT_TYPE, asset.content_type.as_ref())
            .body(asset.body.into_owned())
    };
    match built {
        Ok(r) => r.into_response(),
        Err(e) => {
            tracing::error!(path, "cannot build the response: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
