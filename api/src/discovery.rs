//! Version discovery, as Barbican answers it: a request that names microversion 1.1
//! or later learns the range served (`min_version`, `max_version`; status `CURRENT`),
//! one that names none gets Barbican's 1.0 shape (status `stable`), which
//! python-barbicanclient reads as "1.0 only".

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::microversion::Microversion;
use crate::state::AppState;
use crate::views::base_url;

fn links(base: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/v1/")},
        {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/barbican/latest/api/"},
    ])
}

/// Version 1 as a client asking for `asked` is shown it.
fn v1(base: &str, asked: Microversion) -> Value {
    if asked >= Microversion::V1_1 {
        json!({
            "id": "v1",
            "status": "CURRENT",
            "min_version": Microversion::MIN.to_string(),
            "max_version": Microversion::MAX.to_string(),
            "links": links(base),
        })
    } else {
        json!({
            "id": "v1",
            "status": "stable",
            "links": links(base),
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.key-manager-v1+json"},
            ],
        })
    }
}

/// `GET /`: every version, with 300 Multiple Choices.
pub async fn root(
    State(state): State<AppState>,
    asked: Microversion,
    headers: HeaderMap,
) -> Response {
    let v1 = v1(&base_url(&state, &headers), asked);
    let body = if asked >= Microversion::V1_1 {
        json!({ "versions": [v1] })
    } else {
        json!({ "versions": { "values": [v1] } })
    };
    (StatusCode::MULTIPLE_CHOICES, Json(body)).into_response()
}

/// `GET /v1`: this version.
pub async fn version(
    State(state): State<AppState>,
    asked: Microversion,
    headers: HeaderMap,
) -> Json<Value> {
    Json(json!({ "version": v1(&base_url(&state, &headers), asked) }))
}
