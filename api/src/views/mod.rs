//! What responses look like: Barbican's JSON shapes as typed structs (serialized as
//! they are, and described by the OpenAPI document from the same types), and the URLs
//! in them. Times are shown as Barbican shows them: UTC without an offset.

pub mod acl;
pub mod container;
pub mod order;
pub mod secret;

use axum::http::HeaderMap;
use axum::http::header::HOST;
use domain::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    let scheme = if state.config.https { "https" } else { "http" };
    format!("{scheme}://{host}")
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
pub fn secret_ref(base: &str, id: impl std::fmt::Display) -> String {
    format!("{base}/v1/secrets/{id}")
}

/// A read-model time (RFC 3339) as Barbican shows times: `2026-11-22T10:00:00.123456`,
/// UTC without an offset.
pub fn time(rfc3339: &str) -> String {
    Timestamp::parse_iso8601("time", rfc3339)
        .map(|t| t.to_naive_utc())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// The links of an offset-paged listing: `next` when rows follow the page, `previous`
/// when rows precede it (and the page is not empty), as Barbican adds them.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Links {
    /// The next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

impl Links {
    /// The links of the page at `offset` of `limit` rows, of `total`, holding
    /// `shown` rows; `link(offset)` is the URL of the page at another offset.
    pub fn of(
        (limit, offset): (u32, u32),
        shown: usize,
        total: u64,
        link: impl Fn(u32) -> String,
    ) -> Self {
        Self {
            next: (u64::from(offset) + u64::from(limit) < total)
                .then(|| link(offset.saturating_add(limit))),
            previous: (offset > 0 && shown > 0).then(|| link(offset.saturating_sub(limit))),
        }
    }
}

/// A reference returned by a create or change: `{"<kind>_ref": url}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecretRef {
    /// The secret's URL.
    pub secret_ref: String,
}

/// Barbican's `status` of a resource that exists.
pub const ACTIVE: &str = "ACTIVE";
