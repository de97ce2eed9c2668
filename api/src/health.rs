//! `GET /healthz` and `GET /readyz` on the API's own port, for load balancers and
//! Kubernetes probes that check the port they send traffic to. The same answers, with
//! `/metrics`, are on the process's operations port (`--metrics-addr`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use infra::health::Report;

use crate::state::AppState;

/// Alive: the process answers. Asks nothing else (a process restarted because NATS is
/// away would not bring NATS back).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "The process is alive", body = String, content_type = "text/plain")),
)]
pub async fn alive() -> &'static str {
    "ok\n"
}

/// Ready: every component of this process passes its checks (NATS reachable, its
/// streams present, the read model within the allowed lag). 503 names each failing
/// check. The details (sequences, what is wrong) are on the operations port only:
/// here, without a token, they would tell anyone how busy the deployment is.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready: every check passed", body = Report),
        (status = 503, description = "Not ready: see the failing checks", body = Report),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Report>) {
    let mut report = state.health.report().await;
    for check in &mut report.checks {
        check.detail.clear();
    }
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}
