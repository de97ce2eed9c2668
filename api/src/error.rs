//! Errors as Barbican returns them: `{"code": 404, "title": "Not Found",
//! "description": "…"}`, with the status code in one place for every rejection.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{ErrorCode, Rejection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error's body, as Barbican shapes it: what every error response carries, and
/// what the CLI reads back. (Fields in alphabetical order, as the API has always
/// written them.)
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP status code.
    pub code: u16,
    /// What is wrong and what to do.
    pub description: String,
    /// The status's name, e.g. `Not Found`.
    pub title: Cow<'static, str>,
}

/// An HTTP error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    description: String,
    retry_after: Option<u32>,
    /// The rejection's code, when it came from one.
    code: Option<ErrorCode>,
}

impl ApiError {
    /// An error with a status and a description a person can act on.
    pub fn new(status: StatusCode, description: impl Into<String>) -> Self {
        Self {
            status,
            description: domain::error::bounded(description.into()),
            retry_after: None,
            code: None,
        }
    }

    /// 400.
    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, description)
    }

    /// This error without the string values a JSON parse error quotes (for bodies
    /// that carry a secret).
    pub fn without_string_values(mut self) -> Self {
        self.description = infra::protocol::without_string_values(&self.description);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The rejection's code, when it came from one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.code
    }

    /// Asks the client to retry after `seconds`.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

/// The status code for each stable rejection code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let mut error = Self::new(status_of(r.code), r.message);
        error.code = Some(r.code);
        if matches!(r.code, ErrorCode::Unavailable | ErrorCode::TooManyRequests) {
            error.retry_after(1)
        } else {
            error
        }
    }
}

impl From<domain::policy::Denial> for ApiError {
    fn from(denial: domain::policy::Denial) -> Self {
        Rejection::from(denial).into()
    }
}

impl From<projections::read::ReadError> for ApiError {
    /// Unavailable: 503, retry. Corrupt: 500 with an id to find it in the log, since
    /// retrying cannot help (the read model needs a rebuild from the log).
    fn from(e: projections::read::ReadError) -> Self {
        if let projections::read::ReadError::WentBack { floor, seq } = e {
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the read model went back from sequence {floor} to {seq}: it is being \
                     rebuilt from the log; retry shortly"
                ),
            )
            .retry_after(1);
        }
        if e.is_unavailable() {
            tracing::warn!(error = %e, "read model query failed");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the read model is unavailable; retry shortly",
            )
            .retry_after(1);
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        tracing::error!(error = %e, error_id = %id, "the read model is corrupt; rebuild it");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "keyledger's read model holds a row it cannot read (error id {id}); an operator \
                 rebuilds it from the log with `keyledger projections rebuild`"
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.status.as_u16(),
            description: self.description,
            title: Cow::Borrowed(self.status.canonical_reason().unwrap_or("Error")),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keyledger\""),
            );
        }
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// Puts every error answer in Barbican's shape: axum's own rejections (a path that
/// is not UTF-8, say) answer in plain text, which Barbican's clients cannot read.
pub async fn in_barbican_shape(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    // These texts are axum's short messages; a longer one is cut, not buffered whole.
    let text = match axum::body::to_bytes(response.into_body(), 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    ApiError::new(status, text).into_response()
}
