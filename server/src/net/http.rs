//! The HTTP side: the routes (`/ws`, `/healthz`, `/metrics` and `/monitor` from their own
//! modules, the files); `accept.rs` serves them.
//!
//! Files: with a site folder (`[site] dir`, `site.rs`), its files first, then the embedded
//! ones; `/pairlab.js` and `/pkg/*` always from the binary, with CORS for the pages of
//! `[server] allowed_origins`; `/<subject_id>` (one segment that is a valid subject id and no
//! file) is the page (the site's `index.html`, or the embedded one), which reads the id from
//! its path.
//!
//! The embedded files ([`crate::assets`]) are sent in the content coding the request's
//! `Accept-Encoding` prefers (br, gzip or none), with `Content-Encoding`,
//! `Vary: Accept-Encoding` and the representation's own `ETag`; a matching `If-None-Match`
//! gets `304`. A request whose `v` query parameter names the file's current version (the page
//! refers to the client that way) is cached for a year as immutable ([`IMMUTABLE`]); every
//! other one, the page included, is `no-cache`: the browser revalidates it each time.

use std::sync::Arc;

use warp::http::{header, HeaderMap, Response, StatusCode};
use warp::hyper::upgrade::OnUpgrade;
use warp::{Filter, Reply};

use super::upgrade::{upgrade, websocket_accept_key};
use super::Shared;
use crate::assets;

/// `/ws` (an upgrade), `/healthz`, then every other `GET` as an embedded file.
pub(super) fn routes(
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
            let accept = websocket_accept_key(&headers).ok_or_else(warp::reject::not_found)?;
            Ok::<_, warp::Rejection>((accept, headers))
        })
        .untuple_one()
        .and(warp::ext::optional::<OnUpgrade>())
        .and(with_shared.clone())
        .map(upgrade);
    let health = warp::path("healthz")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_shared)
        .map(|shared: Arc<Shared>| health(&shared));
    let metrics = super::metrics::route(shared.clone());
    let monitor = super::monitor::routes(shared.clone());
    let optional_query = warp::query::raw()
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    let files = warp::get()
        .and(warp::path::full())
        .and(optional_query)
        .and(warp::header::headers_cloned())
        .and(with_shared_files(shared))
        .then(
            |path: warp::path::FullPath,
             query: Option<String>,
             headers: HeaderMap,
             shared: Arc<Shared>| async move {
                file_response(&shared, path.as_str(), query.as_deref(), &headers).await
            },
        );
    ws.or(health)
        .unify()
        .or(metrics)
        .unify()
        .or(monitor)
        .unify()
        .or(files)
        .unify()
}

fn with_shared_files(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (Arc<Shared>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || shared.clone())
}

/// Whether a path is always served from the binary, whatever the site folder holds: the
/// client helper `/pairlab.js` and the wasm client under `/pkg/`. Pages of `allowed_origins`
/// may import them cross-origin (CORS).
fn always_embedded(path: &str) -> bool {
    path == "/pairlab.js" || path.starts_with("/pkg/")
}

/// The server's own one-segment routes, never a participant's address.
const ROUTES: [&str; 4] = ["ws", "healthz", "metrics", "monitor"];

/// Whether `path` is a participant's own address, `/<subject_id>`: one segment that is a valid
/// subject id and not a file's name (`pairlab_shared::SubjectId::from_path`, the rule the page
/// reads the id by) and not one of the server's [`ROUTES`].
fn participant_path(path: &str) -> bool {
    pairlab_shared::SubjectId::from_path(path).is_some_and(|id| !ROUTES.contains(&id.as_str()))
}

/// A `GET` for a file: the site folder's file (unless [`always_embedded`]), else the embedded
/// one, else, at `/<subject_id>`, the page; else `404`.
async fn file_response(
    shared: &Shared,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> warp::reply::Response {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    let accept_encoding = text(header::ACCEPT_ENCODING);
    let if_none_match = text(header::IF_NONE_MATCH);
    if always_embedded(path) {
        let mut response = asset_response(path, query, accept_encoding, if_none_match);
        allow_cross_origin(&mut response, headers, &shared.server.allowed_origins);
        return response;
    }
    if let Some(site) = &shared.site {
        if let Some(r) = site.response(path, if_none_match).await {
            return r;
        }
    }
    // The monitor's page is served only by `/monitor`, with its token.
    if assets::get(path).is_some() && path != super::monitor::PAGE {
        return asset_response(path, query, accept_encoding, if_none_match);
    }
    if participant_path(path) {
        if let Some(site) = shared.site.as_ref().filter(|s| s.has_index()) {
            if let Some(r) = site.response("/", if_none_match).await {
                return r;
            }
        }
        return asset_response("/", query, accept_encoding, if_none_match);
    }
    warp::reply::with_status("not found\n", StatusCode::NOT_FOUND).into_response()
}

/// CORS for a file other pages import (`/pairlab.js`, `/pkg/*`): a request whose `Origin` is
/// allowed by `[server] allowed_origins` gets `Access-Control-Allow-Origin` with that origin
/// (Fetch standard, CORS protocol); every such response varies by `Origin`.
fn allow_cross_origin(
    response: &mut warp::reply::Response,
    headers: &HeaderMap,
    allowed: &crate::config::AllowedOrigins,
) {
    let h = response.headers_mut();
    h.append(header::VARY, header::HeaderValue::from_static("Origin"));
    let Some(origin) = headers.get(header::ORIGIN) else {
        return;
    };
    if super::upgrade::origin_allowed(headers, allowed) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
}

/// `/healthz`: open WebSockets, HTTP connections evicted by the full total cap, the core's counts (with the `record`/`attention` messages refused by their rate limit), the scenes and the research record's
/// health, as JSON; `"status":"degraded"` with a `"reason"` when the record is degraded (see
/// [`crate::record::RecordHealth::status`]), `"ok"` otherwise. Always HTTP 200.
fn health(shared: &Shared) -> warp::reply::Response {
    let stats = *shared.stats.borrow();
    let record = shared.record.status(std::time::Instant::now());
    let mut body = serde_json::json!({
        "status": if record.degraded.is_some() { "degraded" } else { "ok" },
        "connections": *shared.open.borrow(),
        "evicted_connections": shared
            .evicted_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        "participants": stats.participants,
        "waiting": stats.waiting,
        "probes": stats.probes,
        "groups": stats.groups,
        "record_events_refused": stats.record_events_refused,
        "scenes": shared.scene_ids,
        "record": record,
    });
    if let Some(reason) = &record.degraded {
        body["reason"] = serde_json::Value::from(reason.as_str());
    }
    warp::reply::json(&body).into_response()
}

/// `Cache-Control` for a file requested with its current version: the URL changes whenever the
/// file does, so browsers may keep it for a year without asking again (RFC 8246).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `Cache-Control` for everything else: cache, but revalidate (by `ETag`) before each use.
pub const NO_CACHE: &str = "no-cache";

/// One embedded file in the coding `accept_encoding` prefers, with its `ETag`, `Vary` and
/// cache policy; `304` when `If-None-Match` lists that representation's tag.
fn asset_response(
    path: &str,
    query: Option<&str>,
    accept_encoding: Option<&str>,
    if_none_match: Option<&str>,
) -> warp::reply::Response {
    let Some(asset) = assets::get(path) else {
        return warp::reply::with_status("not found\n", StatusCode::NOT_FOUND).into_response();
    };
    let chosen = asset.negotiate(accept_encoding);
    let cache_control = if query
        .and_then(version_parameter)
        .is_some_and(|v| asset.is_current_version(v))
    {
        IMMUTABLE
    } else {
        NO_CACHE
    };
    let not_modified = if_none_match.is_some_and(|v| etag_listed(v, &chosen.etag));
    // A 304 carries the headers a 200 would have for caching (RFC 9110 §15.4.5).
    let builder = Response::builder()
        .header(header::CACHE_CONTROL, cache_control)
        .header(header::ETAG, chosen.etag.as_str())
        .header(header::VARY, "Accept-Encoding");
    let built = if not_modified {
        builder.status(StatusCode::NOT_MODIFIED).body(Vec::new())
    } else {
        let builder = builder.header(header::CONTENT_TYPE, asset.content_type.as_ref());
        let builder = match chosen.coding.content_encoding() {
            Some(coding) => builder.header(header::CONTENT_ENCODING, coding),
            None => builder,
        };
        builder.body(chosen.body.clone().into_owned())
    };
    match built {
        Ok(r) => r.into_response(),
        Err(e) => {
            tracing::error!(path, "cannot build the response: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The value of the first `v` parameter of a query string (the page's versions are hex, so no
/// percent-decoding is needed).
fn version_parameter(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| pair.strip_prefix("v="))
}

/// Whether an `If-None-Match` value lists `etag` or is `*`, by the weak comparison the field
/// calls for (RFC 9110 §13.1.2: a `W/` prefix on either side is ignored).
pub(super) fn etag_listed(if_none_match: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let etag = opaque(etag);
    if_none_match
        .split(',')
        .any(|listed| listed.trim() == "*" || opaque(listed) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly() {
        let tag = "\"abc\"";
        assert!(etag_listed("\"abc\"", tag));
        assert!(etag_listed("W/\"abc\"", tag));
        assert!(etag_listed("\"x\", \"abc\"", tag));
        assert!(etag_listed(" \"x\" ,W/\"abc\" ", tag));
        assert!(etag_listed("*", tag));
        assert!(!etag_listed("\"abcd\"", tag));
        assert!(!etag_listed("abc", tag));
        assert!(!etag_listed("", tag));
    }

    #[test]
    fn version_from_the_query() {
        assert_eq!(version_parameter("v=0123abcd"), Some("0123abcd"));
        assert_eq!(version_parameter("x=1&v=ff"), Some("ff"));
        assert_eq!(version_parameter("vv=1"), None);
        assert_eq!(version_parameter(""), None);
    }
}
