//! `GET /monitor` and `GET /monitor/events`: the live monitor page and its stream, for a
//! request with `?token=<[server] monitor_token>`; 401 without it. Without a configured token
//! neither route exists (404, like any unknown path) and no monitor state is kept.
//!
//! - `/monitor?token=…` answers the embedded `www/monitor.html` (which loads `/monitor.js`);
//! - `/monitor/events?token=…` is a Server-Sent Events stream: one `snapshot` event at once and
//!   then every [`PUSH_EVERY`], its data the JSON of [`crate::monitor::Snapshot`]. It ends when
//!   the server shuts down.
//!
//! Why the token is a query parameter: a browser sends no `Authorization` header on a page load
//! nor on an `EventSource`. The cost is that the token is in the URL: in the browser's history
//! (the page removes it from the address bar and history at once, `history.replaceState`) and
//! in the access log of a reverse proxy in front (turn query logging off there). The server
//! itself never logs a request's URL. A cookie would keep it out of URLs after the first load
//! but needs the first load to carry it anyway, and a cookie is sent to every path of the
//! origin, the participants' pages included.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use warp::http::{header, StatusCode};
use warp::{Filter, Reply};

use super::Shared;
use crate::metrics::token_matches;
use crate::monitor::Monitor;

/// How often the stream sends a snapshot.
pub const PUSH_EVERY: Duration = Duration::from_secs(1);

/// The page's embedded file (served only through `/monitor`).
pub(super) const PAGE: &str = "/monitor.html";

/// The page's `Content-Security-Policy`: its own script and stream only, its inline styles,
/// no framing (the page shows participants' own strings, as text; this is a second fence).
pub(super) const PAGE_CSP: &str =
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
     img-src data:; frame-ancestors 'none'; base-uri 'none'";

/// The query of both routes.
#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// `/monitor` and `/monitor/events`.
pub(super) fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
       + Clone
       + Send
       + Sync
       + 'static {
    let token_query = warp::query::<TokenQuery>()
        .or(warp::any().map(|| TokenQuery { token: None }))
        .unify();
    let authorized = {
        let shared = shared.clone();
        warp::get()
            .and(token_query)
            .and_then(move |query: TokenQuery| {
                let shared = shared.clone();
                async move {
                    let (Some(monitor), Some(token)) =
                        (&shared.monitor, shared.server.monitor_token.as_deref())
                    else {
                        return Err(warp::reject::not_found());
                    };
                    let given = query.token.as_deref().unwrap_or("");
                    Ok::<_, warp::Rejection>(
                        token_matches(token, given).then(|| (shared.clone(), monitor.clone())),
                    )
                }
            })
    };
    let page = warp::path("monitor")
        .and(warp::path::end())
        .and(authorized.clone())
        .map(|ok: Option<(Arc<Shared>, Arc<Mutex<Monitor>>)>| match ok {
            Some(_) => page(),
            None => unauthorized(),
        });
    let events = warp::path!("monitor" / "events").and(authorized).map(
        |ok: Option<(Arc<Shared>, Arc<Mutex<Monitor>>)>| match ok {
            Some((shared, monitor)) => stream(&shared, monitor),
            None => unauthorized(),
        },
    );
    page.or(events).unify()
}

/// 401, saying what is missing (and nothing about the token).
fn unauthorized() -> warp::reply::Response {
    warp::reply::with_status(
        "the monitor needs ?token=<[server] monitor_token>\n",
        StatusCode::UNAUTHORIZED,
    )
    .into_response()
}

/// The page, never cached (it is only served with the token), sending no `Referer` (its URL
/// holds the token) and under [`PAGE_CSP`].
fn page() -> warp::reply::Response {
    let Some(asset) = crate::assets::get(PAGE) else {
        return warp::reply::with_status("not found\n", StatusCode::NOT_FOUND).into_response();
    };
    let body = asset.negotiate(None).body.clone().into_owned();
    let reply = warp::reply::with_header(body, header::CONTENT_TYPE, "text/html; charset=utf-8");
    let reply = warp::reply::with_header(reply, header::CACHE_CONTROL, "no-store");
    let reply = warp::reply::with_header(reply, header::CONTENT_SECURITY_POLICY, PAGE_CSP);
    warp::reply::with_header(reply, header::REFERRER_POLICY, "no-referrer").into_response()
}

/// The SSE stream of snapshots, until shutdown.
fn stream(shared: &Shared, monitor: Arc<Mutex<Monitor>>) -> warp::reply::Response {
    let stop = shared.stop.clone();
    let ticks = tokio::time::interval(PUSH_EVERY);
    let events = futures_util::stream::unfold(
        (ticks, stop, monitor),
        |(mut ticks, stop, monitor)| async move {
            tokio::select! {
                () = stop.cancelled() => None,
                _ = ticks.tick() => {
                    let snapshot = monitor
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .snapshot(std::time::Instant::now());
                    let event = warp::sse::Event::default()
                        .event("snapshot")
                        .json_data(&snapshot)
                        .unwrap_or_else(|e| warp::sse::Event::default().event("error").data(e.to_string()));
                    Some((Ok::<_, Infallible>(event), (ticks, stop, monitor)))
                }
            }
        },
    );
    let reply = warp::sse::reply(events);
    warp::reply::with_header(reply, header::CACHE_CONTROL, "no-store").into_response()
}
