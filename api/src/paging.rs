//! Offset paging of the container and order listings: `limit` (1 to 100, default 10)
//! and `offset`, other query parameters refused by name.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    offset: Option<u32>,
}

/// A page asked for.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

impl FromRequestParts<AppState> for Paging {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Query(raw) = Query::<Raw>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "{}; use limit (1 to 100) and offset",
                    e.body_text()
                ))
            })?;
        Ok(Self {
            limit: raw.limit.unwrap_or(10).clamp(1, 100),
            offset: raw.offset.unwrap_or(0),
        })
    }
}

impl Paging {
    /// `(limit, offset)`, as the read model takes it.
    pub fn bounds(self) -> (u32, u32) {
        (self.limit, self.offset)
    }

    /// Adds Barbican's `next` and `previous` links to a listing of `total` rows at `url`.
    pub fn link(self, body: &mut Value, url: &str, total: u64) {
        let Self { limit, offset } = self;
        if u64::from(offset) + u64::from(limit) < total {
            body["next"] = json!(format!("{url}?limit={limit}&offset={}", offset + limit));
        }
        if offset > 0 {
            body["previous"] = json!(format!(
                "{url}?limit={limit}&offset={}",
                offset.saturating_sub(limit)
            ));
        }
    }
}
