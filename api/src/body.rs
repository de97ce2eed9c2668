//! The request body, with errors in Barbican's shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::state::AppState;

/// A whole request body, at most `ApiConfig::max_body_bytes`.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|r| match r.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the request body is larger than {} bytes; payloads are limited to \
                         the configured payload size",
                        state.config.max_body_bytes
                    ),
                ),
                status => ApiError::new(status, r.body_text()),
            })
    }
}
