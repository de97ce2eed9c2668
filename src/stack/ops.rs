//! A process's operations endpoint — `/metrics` (Prometheus text), `/healthz` (alive)
//! and `/readyz` (every readiness check of its components) — and its answer to
//! `keyledger status` on NATS.
//!
//! It listens apart from the HTTP API (`--metrics-addr`): the command service and the
//! projector have no HTTP port of their own, and a scrape or probe port is usually kept
//! off the network clients reach. The API's own port answers `/healthz` and `/readyz`
//! too, for load balancers that probe the port they balance.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use infra::health::Health;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use super::Task;

/// How a process reports on itself.
#[derive(Debug, Clone)]
pub struct OpsSettings {
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None`: not served (the
    /// API's port still answers `/healthz` and `/readyz`).
    pub addr: Option<SocketAddr>,
    /// Whether `addr` is a default rather than the operator's choice: taken by another
    /// program, it is then given up with a warning instead of stopping the start.
    pub default_addr: bool,
    /// Label commands and payload reads by project.
    pub project_labels: bool,
    /// A read model more commits behind the log than this is not ready.
    pub max_lag: u64,
}

impl Default for OpsSettings {
    fn default() -> Self {
        Self {
            addr: None,
            default_addr: false,
            project_labels: false,
            max_lag: infra::health::DEFAULT_MAX_LAG,
        }
    }
}

/// Most connections the operations port holds at once (scrapers and probes are few).
const MAX_CONNECTIONS: usize = 64;

/// The version every process reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

static EXPORTER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Seconds buckets for latencies: from a cache hit to a timed-out request.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Commits per group-commit batch, up to JetStream's 1,000 per atomic batch.
const BATCH_SIZES: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// Installs the Prometheus recorder for this process, once (later calls return the
/// same exporter). `None` if another recorder was installed first.
pub fn exporter(project_labels: bool) -> Option<&'static PrometheusHandle> {
    infra::metrics::label_projects(project_labels);
    EXPORTER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(infra::metrics::GROUP_COMMIT_BATCH.into()),
                        BATCH_SIZES,
                    )
                })
                .and_then(PrometheusBuilder::install_recorder);
            match handle {
                Ok(handle) => {
                    infra::metrics::describe();
                    projections::metrics::describe();
                    metrics::gauge!(infra::metrics::BUILD_INFO, "version" => VERSION).set(1.0);
                    // Histograms are kept as raw samples until drained; drain them even
                    // when nobody scrapes.
                    let upkeep = handle.clone();
                    std::thread::spawn(move || {
                        loop {
                            std::thread::sleep(Duration::from_secs(5));
                            upkeep.run_upkeep();
                        }
                    });
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics are not recorded: another recorder is installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown`; returns the
/// address bound.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    exporter: Option<&'static PrometheusHandle>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, Task)> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for metrics and health; pass --metrics-addr with a free address")
    })?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state((health, exporter));
    // The API's server, with its timeouts and a small connection limit of its own: a
    // scrape port is often open to a whole cluster network, and slow or idle
    // connections there must not take the process's file descriptors.
    let limits = api::ServerLimits {
        max_connections: MAX_CONNECTIONS,
        ..api::ServerLimits::default()
    };
    let task = tokio::spawn(async move {
        api::serve(listener, app, limits, None, shutdown)
            .await
            .map_err(Into::into)
    });
    Ok((bound, task))
}

type OpsState = (Health, Option<&'static PrometheusHandle>);

async fn render(State((_, exporter)): State<OpsState>) -> Response {
    let Some(exporter) = exporter else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not recorded in this process\n",
        )
            .into_response();
    };
    infra::metrics::refresh();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        exporter.render(),
    )
        .into_response()
}

async fn ready(State((health, _)): State<OpsState>) -> Response {
    let report = health.report().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

/// Answers `keyledger status` on NATS with `health`, over its own connection. It is a
/// report, not a component: a NATS that cannot be reached is retried each second
/// (the components say what is wrong), and the process never stops for it.
pub fn answer_status(nats_url: &str, health: Health, shutdown: CancellationToken) -> Task {
    let nats_url = nats_url.to_owned();
    tokio::spawn(async move {
        loop {
            let client = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                c = infra::nats::connect(&nats_url, "keyledger-status") => c,
            };
            match client {
                Ok(client) => {
                    if let Err(e) = infra::health::answer_status(
                        client,
                        health.clone(),
                        VERSION,
                        shutdown.clone(),
                    )
                    .await
                    {
                        tracing::warn!(error = %e, "status requests are not answered");
                    }
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                }
                Err(e) => tracing::debug!(error = %e, "status: NATS not reachable yet"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}
