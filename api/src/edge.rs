//! What every request passes through on its way in and out, as one layer: its
//! microversion negotiated, its `Host` checked, an error answer put in Barbican's
//! shape, and the request counted and logged. One layer, not four: each `from_fn`
//! layer costs every request a clone of the service inside it and a boxed future.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::{error, host, microversion};

/// The way in and out (outermost first): counted and logged; the microversion read
/// (a malformed one answered at once) and named on the response; the `Host` checked;
/// an error answer in Barbican's shape.
pub async fn edge(mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let started = Instant::now();
    let response = match microversion::negotiated(&mut request) {
        Err(refused) => refused.into_response(),
        Ok(version) => {
            let response = match host::checked(&request) {
                Err(refused) => refused.into_response(),
                Ok(()) => error::in_barbican_shape(next.run(request).await).await,
            };
            match version {
                Some(version) => microversion::named(response, version),
                None => response,
            }
        }
    };
    record(
        &method,
        &path,
        route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Logs method, path, status and latency; never headers, queries or bodies, which may
/// hold tokens or payloads. Counts it by method, route template (never the path
/// itself, which names secrets) and status.
fn record(method: &Method, path: &str, route: String, status: u16, took: Duration) {
    // One line per request only at debug: at info it cost a busy API about 5% of its
    // CPU in formatting and writes to stderr, and the metrics below count every request
    // anyway. A server error is always worth a line.
    if status >= 500 {
        tracing::warn!(%method, %path, status, micros = took.as_micros() as u64, "http");
    } else {
        tracing::debug!(%method, %path, status, micros = took.as_micros() as u64, "http");
    }
    // A method outside the standard ones is one series, not one per spelling.
    let method = match method.as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    metrics::counter!(infra::metrics::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(infra::metrics::HTTP_DURATION, "method" => method, "route" => route)
        .record(took.as_secs_f64());
}
