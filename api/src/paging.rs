//! Offset paging of listings, as Barbican pages: `limit` (1 to 100, default 10; 0
//! reads as 1) and `offset`, with `next` and `previous` links that keep the request's
//! other parameters.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::error::ApiError;
use crate::views::Links;

/// Largest page.
pub const MAX_LIMIT: u32 = 100;
/// Page size when none is asked for.
pub const DEFAULT_LIMIT: u32 = 10;

/// The paging parameters, as given (and as the OpenAPI document describes them).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 100 (0 reads as 1, larger as 100; default 10).
    #[serde(default)]
    #[param(minimum = 0, maximum = 4294967295_u64)]
    limit: Option<u32>,
    /// Rows to skip.
    #[serde(default)]
    #[param(minimum = 0, maximum = 4294967295_u64)]
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

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = ApiError;

    /// For listings that take nothing but `limit` and `offset`.
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(raw) = Query::<PageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "{}; use limit (1 to {MAX_LIMIT}) and offset",
                    e.body_text()
                ))
            })?;
        Ok(Self::new(raw.limit, raw.offset))
    }
}

impl Paging {
    /// The page for the parameters given.
    pub fn new(limit: Option<u32>, offset: Option<u32>) -> Self {
        Self {
            limit: limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
            offset: offset.unwrap_or(0),
        }
    }

    /// `(limit, offset)`, as the read model takes it.
    pub fn bounds(self) -> (u32, u32) {
        (self.limit, self.offset)
    }

    /// The links of this page of a listing at `url` showing `shown` of `total` rows;
    /// `params` are the request's other query parameters, kept in each link.
    pub fn links(self, url: &str, shown: usize, total: u64, params: &[(&str, &str)]) -> Links {
        Links::of(self.bounds(), shown, total, |offset| {
            link(url, self.limit, offset, params)
        })
    }
}

/// `url?limit=…&offset=…&<params>`, the values percent-encoded.
pub fn link(url: &str, limit: u32, offset: u32, params: &[(&str, &str)]) -> String {
    let mut query = format!("{url}?limit={limit}&offset={offset}");
    for (key, value) in params {
        query.push('&');
        query.push_str(key);
        query.push('=');
        query.extend(utf8_percent_encode(value, NON_ALPHANUMERIC));
    }
    query
}
