//! keyledger's HTTP API: Barbican-compatible `/v1` reads from the read model; writes
//! are sent as commands over NATS, the same path any NATS client uses.
//!
//! The routes:
//!
//! | route | what |
//! |---|---|
//! | `GET /` | version discovery (300) |
//! | `GET /v1` | this version |
//! | `GET /v1/secrets` | list (`limit`, `offset`, `name`, `alg`, `mode`, `bits`, `secret_type`, `created`, `updated`, `expiration`, `sort`, `acl_only`) |
//! | `POST /v1/secrets` | create (201, `secret_ref`) |
//! | `GET /v1/secrets/{id}` | metadata (or payload, by `Accept`) |
//! | `PUT /v1/secrets/{id}` | store the payload of a two-step create (204) |
//! | `DELETE /v1/secrets/{id}` | delete at once, destroying its keys; with `recovery_window_days` or `recovery_window`, schedule the deletion (204) |
//! | `POST /v1/secrets/{id}/restore` | undo a scheduled deletion (204) |
//! | `GET /v1/secrets/{id}/payload` | the current version's payload (`Accept` negotiated, 406 otherwise) |
//! | `GET`, `POST /v1/secrets/{id}/versions` | list versions; store a new one (201) |
//! | `GET /v1/secrets/{id}/versions/{version}[/payload]` | one version, by id or stage |
//! | `PUT /v1/secrets/{id}/stages/{stage}` | move a stage (204) |
//! | `GET`, `PUT`, `POST /v1/secrets/{id}/metadata`; `GET`, `PUT`, `DELETE …/metadata/{key}` | Barbican's metadata |
//! | `GET`, `POST /v1/secrets/{id}/tags`; `DELETE …/tags/{key}` | tags |
//! | `GET`, `POST`, `DELETE /v1/secrets/{id}/consumers` | secret consumers (`{"service", "resource_type", "resource_id"}`) |
//!
//! | `GET`, `POST /v1/containers`; `GET`, `DELETE /v1/containers/{id}` (`?force=true`) | containers |
//! | `POST`, `DELETE /v1/containers/{id}/secrets` | add or remove a reference (generic containers) |
//! | `GET`, `POST`, `DELETE /v1/containers/{id}/consumers` | consumers (`{"name", "URL"}`; `"validate": "tls"` registers only if the TLS check passes) |
//! | `GET /v1/containers/{id}/tls-check` | what a load balancer would fail on, each finding with its fix |
//!
//! `{id}` is a secret's UUID, its reference (`krn:keyledger:…`) or its name.
//! | `GET`, `PUT`, `PATCH`, `DELETE /v1/secrets/{id}/acl` | show, replace, merge, reset the ACL |
//! | `GET`, `POST /v1/orders` (202); `GET`, `DELETE /v1/orders/{id}` | orders |
//! | `GET /v1/cas/local` | the local CA's certificate (PEM) |
//! | `GET /v1/secrets/{id}/history` | the secret's events from the log (even once it is gone) |
//! | `GET /v1/audit/events` | the project's events, filtered (`actor`, `type`, `since`, `until`, `from_seq`, `to_seq`, `id`) and paged (`limit`, `next`; bounded, see `history`); role audit or admin |
//! | `GET /v1/whoami` | the caller as keyledger sees it |

mod access;
pub mod access_log;
mod acl;
mod auth;
mod body;
mod consistency;
mod containers;
mod discovery;
mod error;
pub mod history;
mod metadata;
pub mod microversion;
mod negotiate;
mod orders;
mod paging;
mod payload;
mod query;
mod secret_versions;
mod secrets;
mod server;
mod state;
mod tls_check;
mod views;
mod whoami;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::normalize_path::NormalizePathLayer;

pub use consistency::{MIN_SEQ, SEQ};
pub use error::{ApiError, status_of};
pub use server::{ServerLimits, default_max_connections};
pub use state::{ApiConfig, AppState};

/// The router of the whole API.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let body_timeout = state.config.body_timeout;
    let routes = Router::new()
        .route("/", get(discovery::root))
        .route("/v1", get(discovery::version))
        .route("/v1/secrets", get(secrets::list).post(secrets::create))
        .route(
            "/v1/secrets/{id}",
            get(secrets::get).put(payload::put).delete(secrets::delete),
        )
        .route("/v1/secrets/{id}/payload", get(payload::get))
        .route("/v1/secrets/{id}/restore", post(secrets::restore))
        .route(
            "/v1/secrets/{id}/versions",
            get(secret_versions::list).post(secret_versions::put),
        )
        .route(
            "/v1/secrets/{id}/versions/{version}",
            get(secret_versions::get),
        )
        .route(
            "/v1/secrets/{id}/versions/{version}/payload",
            get(secret_versions::get_payload),
        )
        .route(
            "/v1/secrets/{id}/stages/{stage}",
            put(secret_versions::move_stage),
        )
        .route(
            "/v1/secrets/{id}/metadata",
            get(metadata::get_all)
                .put(metadata::put_all)
                .post(metadata::add_one),
        )
        .route(
            "/v1/secrets/{id}/metadata/{key}",
            get(metadata::get_one)
                .put(metadata::put_one)
                .delete(metadata::delete_one),
        )
        .route(
            "/v1/secrets/{id}/tags",
            get(metadata::get_tags).post(metadata::set_tags),
        )
        .route("/v1/secrets/{id}/tags/{key}", delete(metadata::delete_tag))
        .route(
            "/v1/secrets/{id}/consumers",
            get(metadata::consumers)
                .post(metadata::change_consumer)
                .delete(metadata::change_consumer),
        )
        .route(
            "/v1/secrets/{id}/acl",
            get(acl::get)
                .put(acl::set)
                .patch(acl::set)
                .delete(acl::delete),
        )
        .route(
            "/v1/containers",
            get(containers::list).post(containers::create),
        )
        .route(
            "/v1/containers/{id}",
            get(containers::get).delete(containers::delete),
        )
        .route(
            "/v1/containers/{id}/secrets",
            post(containers::change_secret).delete(containers::change_secret),
        )
        .route("/v1/containers/{id}/tls-check", get(containers::tls_check))
        .route(
            "/v1/containers/{id}/acl",
            get(acl::container_get)
                .put(acl::container_set)
                .patch(acl::container_set)
                .delete(acl::container_delete),
        )
        .route(
            "/v1/containers/{id}/consumers",
            get(containers::consumers)
                .post(containers::change_consumer)
                .delete(containers::change_consumer),
        )
        .route("/v1/orders", get(orders::list).post(orders::place))
        .route("/v1/orders/{id}", get(orders::get).delete(orders::delete))
        .route("/v1/cas/local", get(orders::local_ca))
        .route("/v1/secrets/{id}/history", get(history::secret))
        .route("/v1/audit/events", get(history::events))
        .route("/v1/whoami", get(whoami::get))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such resource; the API lives under /v1 (see GET /)",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this method is not allowed on this resource",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .layer(middleware::from_fn(microversion::negotiate))
        .layer(middleware::from_fn(log_request))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state);
    // A path with a trailing slash is the same resource as without, for every method,
    // as in Barbican (python-barbicanclient POSTs to `/v1/secrets/`). Routing happens
    // inside a `Router`, so the path is normalised before the routes see it.
    Router::new().fallback_service(tower::Layer::layer(
        &NormalizePathLayer::trim_trailing_slash(),
        routes,
    ))
}

/// Logs method, path, status and latency; never headers, queries or bodies, which may
/// hold tokens or payloads.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "http"
    );
    response
}

/// Serves `app` on `listener` until `shutdown` is cancelled, within `limits`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    server::serve(listener, app, limits, shutdown).await
}

/// The answer to a request whose handler panicked: 500 with an id to find it in the
/// log, instead of a connection closed without a word.
fn panicked(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let what = cause
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| cause.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(error_id = %id, panic = %what, "a request handler panicked");
    axum::response::IntoResponse::into_response(ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "keyledger failed while handling this request (error id {id}); if it was a write, \
             retry it with the same Idempotency-Key"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn a_handler_that_panics_answers_500_with_an_error_id() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    let v: Vec<u8> = Vec::new();
                    // An index out of bounds, as a bug would have it.
                    v[std::hint::black_box(3)].to_string()
                }),
            )
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
        let response = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("error id"), "{text}");
    }
}
