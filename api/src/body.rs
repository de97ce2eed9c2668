//! The request body, with errors in Barbican's shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A whole request body, at most `ApiConfig::max_body_bytes`.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    /// The whole body must arrive within the body timeout, counted from when the
    /// handler starts reading it (a client trickling a byte at a time is not given
    /// more).
    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.max_body_bytes;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than {limit} bytes; payloads are limited to \
                     the configured payload size"
                ),
            )
        };
        if declared_over(req.headers(), limit) {
            return Err(too_large());
        }
        let timeout = state.config.body_timeout;
        let late = || {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {timeout:?}; send it at once"),
            )
        };
        tokio::time::timeout(timeout, Bytes::from_request(req, state))
            .await
            .map_err(|_| late())?
            .map(Body)
            .map_err(|r| match r.status() {
                StatusCode::PAYLOAD_TOO_LARGE => too_large(),
                status => ApiError::new(status, r.body_text()),
            })
    }
}

/// Whether a request declares (`Content-Length`) a body larger than `limit`: refused
/// before any of it is read, rather than once the limit's worth has arrived (or the
/// body timeout has run out on a client that sends no more).
pub(crate) fn declared_over(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
}

/// Whether a Content-Type names JSON as keyledger reads it: `application/json`, with
/// no charset but UTF-8 (a body in another charset would be misread).
fn is_json(content_type: &str) -> bool {
    let lower = content_type.to_ascii_lowercase();
    let mut parts = lower.split(';').map(str::trim);
    parts.next() == Some("application/json")
        && parts.all(|p| match p.split_once('=') {
            Some(("charset", v)) => v.trim().trim_matches('"') == "utf-8",
            Some(_) | None => p.is_empty() || p.contains('='),
        })
}

/// Parses a JSON body sent as `application/json`; `what` names it in errors ("a
/// secret", "an ACL").
pub fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !is_json(content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {content_type:?} is not supported for {what}; send the JSON body \
                 with Content-Type: application/json"
            ),
        ));
    }
    // Every body is an object; serde would also read a struct from an array.
    if !infra::objects::is_object(body) {
        return Err(ApiError::bad_request(format!(
            "the body is not valid as {what}: send a JSON object ({{...}})"
        )));
    }
    domain::json_text::from_untrusted(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid as {what}: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_is_application_json_in_utf_8() {
        for yes in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(super::is_json(yes), "{yes}");
        }
        for no in [
            "application/jsonx",
            "application/json, text/plain",
            "application/json; charset=utf-16",
            "text/json",
            "",
        ] {
            assert!(!super::is_json(no), "{no}");
        }
    }
}
