//! JSON shapes of Barbican's responses, and the URLs in them.

use axum::http::HeaderMap;
use axum::http::header::HOST;
use projections::read::SecretRow;
use serde_json::{Value, json};

use crate::state::AppState;

/// The base URL for links in responses: the configured public URL, else the request's
/// `Host`.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The last path segment of a `…_ref` URL; anything else as given (an id, a
/// reference, a name).
pub fn last_segment(given: &str) -> &str {
    if given.starts_with("http://") || given.starts_with("https://") {
        return given
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(given);
    }
    given
}

/// A secret's `secret_ref`.
pub fn secret_ref(base: &str, id: &str) -> String {
    format!("{base}/v1/secrets/{id}")
}

/// A secret's metadata as Barbican shows it.
pub fn secret(base: &str, row: &SecretRow) -> Value {
    let mut value = json!({
        "secret_ref": secret_ref(base, &row.id),
        "name": row.name,
        "secret_type": row.secret_type,
        "algorithm": row.algorithm,
        "bit_length": row.bit_length,
        "mode": row.mode,
        "expiration": row.expiration,
        "status": "ACTIVE",
        "created": row.created,
        "updated": row.updated,
        "creator_id": row.creator,
        "reference": row.reference,
        "tags": row.tags,
    });
    let Value::Object(map) = &mut value else {
        return value;
    };
    // Barbican lists content types only once a payload is stored.
    if let Some(ct) = &row.content_type {
        map.insert("content_types".into(), json!({ "default": ct }));
    }
    if let Some(service) = &row.owning_service {
        map.insert("owning_service".into(), json!(service));
    }
    value
}
