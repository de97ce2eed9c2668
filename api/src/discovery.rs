//! Version discovery, as Barbican answers it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::AppState;
use crate::views::base_url;

fn v1(base: &str) -> Value {
    json!({
        "id": "v1",
        "status": "stable",
        "min_version": "1.0",
        "max_version": "1.0",
        "updated": "2026-11-22T00:00:00Z",
        "links": [
            {"rel": "self", "href": format!("{base}/v1/")},
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/barbican/latest/api/"},
        ],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.key-manager-v1+json"},
        ],
    })
}

/// `GET /`: every version, with 300 Multiple Choices.
pub async fn root(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_url(&state, &headers);
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({ "versions": { "values": [v1(&base)] } })),
    )
        .into_response()
}

/// `GET /v1`: this version.
pub async fn version(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    Json(json!({ "version": v1(&base_url(&state, &headers)) }))
}
