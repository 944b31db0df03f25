//! `GET /metrics`: the server's [`Metrics`] in Prometheus' text format, for a request with
//! `Authorization: Bearer <[server] metrics_token>`; 401 (with `WWW-Authenticate: Bearer`)
//! without it. Without a configured token the route does not exist (404, like any unknown
//! path) and no metrics are kept.

use std::sync::Arc;

use warp::http::{header, StatusCode};
use warp::{Filter, Reply};

use super::Shared;
use crate::metrics::{Live, Metrics, CONTENT_TYPE};

/// The `/metrics` route.
pub(super) fn route(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
       + Clone
       + Send
       + Sync
       + 'static {
    warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and_then(move |authorization: Option<String>| {
            let shared = shared.clone();
            async move {
                match (&shared.metrics, shared.server.metrics_token.as_deref()) {
                    (Some(metrics), Some(token)) => {
                        Ok(scrape(&shared, metrics, token, authorization.as_deref()))
                    }
                    _ => Err(warp::reject::not_found()),
                }
            }
        })
}

/// The scrape's answer: 401 without the token, else the metrics with the live counts now.
fn scrape(
    shared: &Shared,
    metrics: &Metrics,
    token: &str,
    authorization: Option<&str>,
) -> warp::reply::Response {
    if !Metrics::authorized(token, authorization) {
        let reply =
            warp::reply::with_status("a metrics token is required\n", StatusCode::UNAUTHORIZED);
        return warp::reply::with_header(
            reply,
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"pairlab metrics\"",
        )
        .into_response();
    }
    let stats = *shared.stats.borrow();
    let live = Live {
        websocket_connections: *shared.open.borrow(),
        participants: stats.participants,
        probes: stats.probes,
        groups: stats.groups,
        evicted_connections: shared
            .evicted_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        record: Some(shared.record.status(std::time::Instant::now())),
    };
    match metrics.render(&live) {
        Ok(text) => {
            warp::reply::with_header(text, header::CONTENT_TYPE, CONTENT_TYPE).into_response()
        }
        Err(e) => {
            tracing::error!("{e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
