//! keyledger's HTTP API: Barbican-compatible `/v1` reads from the read model; writes
//! are sent as commands over NATS, the same path any NATS client uses.
//!
//! The routes: the README's route table (checked against the router by `tests/docs.rs`),
//! and the OpenAPI document the API serves at `GET /v1/openapi.json`.

mod access;
mod access_keys;
pub mod access_log;
mod acl;
mod auth;
pub mod aws;
mod body;
pub mod changes;
pub mod client_cert;
mod consistency;
mod containers;
mod costly;
mod discovery;
mod edge;
mod error;
mod health;
mod history;
mod host;
pub mod key_cache;
mod metadata;
mod microversion;
mod negotiate;
mod openapi;
mod orders;
mod paging;
mod payload;
mod query;
mod quotas;
mod secret_versions;
mod secrets;
mod server;
mod state;
pub mod tls;
mod tls_check;
mod views;
mod whoami;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use consistency::{MIN_SEQ, SEQ};
pub use error::{ApiError, status_of};
pub use server::{ServerLimits, default_max_connections};
pub use state::{ApiConfig, AppState, Shared};

/// The response bodies the CLI reads, as the API writes them.
pub mod responses {
    pub use crate::access_keys::{AccessKey, AccessKeyCreated, AccessKeyList};
    pub use crate::containers::TlsCheck;
    pub use crate::error::ErrorBody;
    pub use crate::secret_versions::{SecretVersion, VersionList, VersionStored};
    pub use crate::tls_check::Finding;
    pub use crate::views::acl::{AclView, ReadAcl};
    pub use crate::views::container::{ConsumerRef, Container, ContainerSecret};
    pub use crate::views::secret::{Secret, SecretList};
    pub use crate::views::{Links, SecretRef};
    pub use crate::whoami::Whoami;
}

/// The request bodies the CLI sends, as the API reads them.
pub mod requests {
    pub use crate::access_keys::CreateAccessKeyBody;
    pub use crate::acl::AclBody;
    pub use crate::secret_versions::{MoveStageBody, PutValueBody};
    pub use infra::protocol::CreateSecretRequest;
}

/// The routes and the OpenAPI document, both from the handlers' `#[utoipa::path]`
/// annotations: every route is added here through `routes!`, which takes the method
/// and path from the annotation, so the document and the router cannot differ.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(discovery::root, aws::dispatch))
        .routes(routes!(discovery::version))
        .routes(routes!(openapi::document))
        .routes(routes!(secrets::list, secrets::create))
        .routes(routes!(secrets::get, payload::put, secrets::delete))
        .routes(routes!(payload::get))
        .routes(routes!(secrets::restore))
        .routes(routes!(secret_versions::list, secret_versions::put))
        .routes(routes!(secret_versions::get))
        .routes(routes!(secret_versions::get_payload))
        .routes(routes!(secret_versions::move_stage))
        .routes(routes!(
            metadata::get_all,
            metadata::put_all,
            metadata::add_one
        ))
        .routes(routes!(
            metadata::get_one,
            metadata::put_one,
            metadata::delete_one
        ))
        .routes(routes!(metadata::get_tags, metadata::set_tags))
        .routes(routes!(metadata::delete_tag))
        .routes(routes!(metadata::consumers, metadata::change_consumer))
        .routes(routes!(acl::get, acl::set, acl::delete))
        .routes(routes!(containers::list, containers::create))
        .routes(routes!(containers::get, containers::delete))
        .routes(routes!(containers::change_secret))
        .routes(routes!(containers::tls_check))
        .routes(routes!(
            acl::container_get,
            acl::container_set,
            acl::container_delete
        ))
        .routes(routes!(containers::consumers, containers::change_consumer))
        .routes(routes!(orders::list, orders::place))
        .routes(routes!(orders::get, orders::delete))
        .routes(routes!(orders::local_ca))
        .routes(routes!(access_keys::list, access_keys::create))
        .routes(routes!(access_keys::revoke))
        .routes(routes!(changes::changes))
        .routes(routes!(quotas::effective_quotas))
        .routes(routes!(quotas::list))
        .routes(routes!(quotas::get, quotas::set, quotas::delete))
        .routes(routes!(history::secret))
        .routes(routes!(history::events))
        .routes(routes!(whoami::get))
        .routes(routes!(health::alive))
        .routes(routes!(health::ready))
        .split_for_parts();
    openapi::finish(&mut document);
    (router, document)
}

/// The router of the whole API.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let (routes, document) = routes();
    let document = openapi::Document(std::sync::Arc::new(openapi::to_json(&document)));
    routes
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
        .layer(axum::Extension(document))
        .layer(middleware::from_fn(edge::edge))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` is cancelled, within `limits`: HTTPS
/// with `tls` (whose files are watched for changes meanwhile), else plain HTTP.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<std::sync::Arc<tls::ServerTls>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Some(tls) = &tls {
        tokio::spawn(tls::watch(tls.clone(), shutdown.clone()));
    }
    server::serve(listener, app, limits, tls, shutdown).await
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
    /// The read side never depends on the write side: what both need is in `infra`.
    #[test]
    fn the_api_does_not_depend_on_the_write_side() {
        let manifest = include_str!("../Cargo.toml");
        assert!(
            !manifest
                .lines()
                .any(|l| l.trim_start().starts_with("commands")),
            "api/Cargo.toml names the commands crate"
        );
    }

    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    /// Every route is added through `routes!` in [`routes`], from its handler's
    /// `#[utoipa::path]`: a route added any other way would have no entry in the
    /// OpenAPI document. (That every entry is served is checked over HTTP, in
    /// `tests/http_api.rs`.)
    /// The crate's source files: (path, text), each without its test module.
    fn sources() -> Vec<(String, String)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    // Test modules build routers and name commands of their own.
                    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
                    out.push((path.display().to_string(), text.to_owned()));
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        files
    }

    /// Every command is sent by some HTTP route, or is one of the few that only
    /// services (over NATS) or keyledger itself send: the command list and the router
    /// agree, so a new command cannot be left without its route by accident.
    #[test]
    fn every_command_has_a_route_or_is_declared_nats_only() {
        use domain::subject::command;
        /// Served commands no HTTP route sends, and why.
        const NOT_OVER_HTTP: &[(&str, &str)] = &[(
            command::SECRET_EXPIRE,
            "a service (or the scheduler) expires a secret; Barbican has no route for it",
        )];
        let mut sent = std::collections::BTreeSet::new();
        for (_, text) in sources() {
            for part in text.split("command::").skip(1) {
                let ident: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if !ident.is_empty() {
                    // The constants are named after their values: SECRET_ACL_SET is
                    // `secret.acl.set`.
                    sent.insert(ident.to_lowercase().replace('_', "."));
                }
            }
        }
        // (A `_` inside a name, as in `access_key.create`, reads as a `.` on both sides.)
        let dotted = |c: &str| c.replace('_', ".");
        sent.extend(NOT_OVER_HTTP.iter().map(|(c, _)| dotted(c)));
        let all: std::collections::BTreeSet<String> =
            command::ALL.iter().map(|c| dotted(c)).collect();
        assert_eq!(
            sent, all,
            "commands sent by HTTP routes or declared NATS-only"
        );
    }

    #[test]
    fn routes_are_added_only_with_their_openapi_entries() {
        let mut offending = Vec::new();
        for (path, text) in &sources() {
            for call in [".route(", ".route_service(", ".nest(", ".merge("] {
                if text.contains(call) {
                    offending.push(format!("{path}: {call}"));
                }
            }
        }
        assert!(
            offending.is_empty(),
            "routes must be added with `.routes(routes!(handler))`, from the handler's \
             #[utoipa::path]: {offending:?}"
        );
        let (_, document) = routes();
        let operations: usize = document
            .paths
            .paths
            .values()
            .map(|item| {
                [&item.get, &item.put, &item.post, &item.delete, &item.patch]
                    .into_iter()
                    .flatten()
                    .count()
            })
            .sum();
        assert!(operations >= 45, "{operations} operations");
    }

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
