//! Errors as AWS's JSON protocol sends them: HTTP 400 for what the client must change,
//! 500 for keyledger's own failures (which AWS's SDKs retry), and a body
//! `{"__type": "<Code>", "message": "…"}` that botocore turns into the exception its
//! service model names. Where AWS's wording is known it comes first, then keyledger's
//! sentence on what to do.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

/// The content type of every request and answer of AWS's JSON 1.1 protocol.
pub const AMZ_JSON: &str = "application/x-amz-json-1.1";

/// An error code of AWS Secrets Manager's API, or of AWS's request authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A parameter is not valid.
    InvalidParameter,
    /// The request is valid but the secret's state does not allow it.
    InvalidRequest,
    /// No such secret.
    ResourceNotFound,
    /// The secret, or the version, exists already.
    ResourceExists,
    /// The paging token is not one keyledger handed out for this listing.
    InvalidNextToken,
    /// A limit would be exceeded.
    LimitExceeded,
    /// The policy denies the caller.
    AccessDenied,
    /// The request did not name an operation keyledger knows.
    UnknownOperation,
    /// The body is not JSON of the operation's shape.
    Serialization,
    /// No `Authorization` header.
    MissingAuthenticationToken,
    /// The `Authorization` header or a header it must sign is missing or malformed.
    IncompleteSignature,
    /// The access key is unknown or revoked, or a session token was sent.
    UnrecognizedClient,
    /// The signature does not verify, or its time or scope is wrong.
    InvalidSignature,
    /// Too many requests; retry.
    Throttling,
    /// keyledger failed; retry.
    InternalServiceError,
}

impl Code {
    /// The `__type` AWS sends.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidParameter => "InvalidParameterException",
            Self::InvalidRequest => "InvalidRequestException",
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::ResourceExists => "ResourceExistsException",
            Self::InvalidNextToken => "InvalidNextTokenException",
            Self::LimitExceeded => "LimitExceededException",
            Self::AccessDenied => "AccessDeniedException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::Serialization => "SerializationException",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::IncompleteSignature => "IncompleteSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::InvalidSignature => "InvalidSignatureException",
            Self::Throttling => "ThrottlingException",
            Self::InternalServiceError => "InternalServiceError",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::InternalServiceError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answer of the AWS API.
#[derive(Debug)]
pub struct AwsError {
    /// Its code.
    pub code: Code,
    /// What went wrong and what to do.
    pub message: String,
}

impl AwsError {
    /// An error with a code and a message a person can act on.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: domain::error::bounded(message.into()),
        }
    }

    /// `InvalidParameterException`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidParameter, message)
    }

    /// `ResourceNotFoundException` with AWS's sentence and keyledger's detail.
    pub fn not_found(detail: impl std::fmt::Display) -> Self {
        Self::new(
            Code::ResourceNotFound,
            format!("Secrets Manager can't find the specified secret. {detail}"),
        )
    }
}

/// AWS's first sentence for a secret in its recovery window.
pub const MARKED_FOR_DELETION: &str =
    "You can't perform this operation on the secret because it was marked for deletion.";

/// The code an error of the Barbican side (a read, or a command's rejection) has for
/// an AWS client: by its status, or, for two refusals AWS states otherwise, by their
/// code and message.
impl From<ApiError> for AwsError {
    fn from(e: ApiError) -> Self {
        if let Some(code) = e.code() {
            // A deletion the API's own check, on the read model a moment before, did
            // not yet show; and consumers, which only the command service checks.
            if domain::secret::is_scheduled_for_deletion(code, e.description()) {
                return Self::new(
                    Code::InvalidRequest,
                    format!("{MARKED_FOR_DELETION} Restore it with RestoreSecret first"),
                );
            }
            if domain::secret::is_blocked_by_consumers(code, e.description()) {
                return Self::new(Code::InvalidRequest, e.description());
            }
        }
        let code = match e.status() {
            _ if e.code() == Some(domain::ErrorCode::QuotaExceeded) => Code::LimitExceeded,
            StatusCode::NOT_FOUND | StatusCode::GONE => Code::ResourceNotFound,
            StatusCode::FORBIDDEN => Code::AccessDenied,
            StatusCode::UNAUTHORIZED => Code::UnrecognizedClient,
            StatusCode::CONFLICT | StatusCode::REQUEST_TIMEOUT => Code::InvalidRequest,
            StatusCode::TOO_MANY_REQUESTS => Code::Throttling,
            s if s.is_server_error() => Code::InternalServiceError,
            _ => Code::InvalidParameter,
        };
        Self::new(code, in_aws_terms(e.description()))
    }
}

/// `message` with each "secret <keyledger's id>" as "the secret": AWS's callers know a
/// secret by its name or ARN, and the refusals of the command service name its id.
fn in_aws_terms(message: &str) -> String {
    const SECRET: &str = "secret ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(SECRET) {
        let (before, after) = rest.split_at(at);
        let id = after[SECRET.len()..].get(..36);
        match id.filter(|id| uuid::Uuid::try_parse(id).is_ok()) {
            Some(_) => {
                out.push_str(before);
                out.push_str("the secret");
                rest = &after[SECRET.len() + 36..];
            }
            None => {
                out.push_str(before);
                out.push_str(SECRET);
                rest = &after[SECRET.len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl From<domain::Rejection> for AwsError {
    fn from(r: domain::Rejection) -> Self {
        ApiError::from(r).into()
    }
}

impl From<projections::read::ReadError> for AwsError {
    fn from(e: projections::read::ReadError) -> Self {
        ApiError::from(e).into()
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "__type")]
    code: &'static str,
    message: &'a str,
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            code: self.code.as_str(),
            message: &self.message,
        })
        .unwrap_or_default();
        let mut response = (self.code.status(), body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_secret_not_keyledgers_id() {
        assert_eq!(
            in_aws_terms(
                "command_id c1 already stored version 0b4f9c8e-4d52-4a7e-9a55-3f1b2c7d8e91 of \
                 secret 6eddeb13-4d52-4a7e-9a55-3f1b2c7d8e92 with another payload"
            ),
            "command_id c1 already stored version 0b4f9c8e-4d52-4a7e-9a55-3f1b2c7d8e91 of the \
             secret with another payload"
        );
        for kept in [
            "secret db/x is gone",
            "a secret ",
            "secret 6eddeb13",
            "no secret here",
        ] {
            assert_eq!(in_aws_terms(kept), kept);
        }
    }

    #[test]
    fn barbican_statuses_map_to_aws_codes() {
        for (status, code) in [
            (StatusCode::NOT_FOUND, Code::ResourceNotFound),
            (StatusCode::FORBIDDEN, Code::AccessDenied),
            (StatusCode::CONFLICT, Code::InvalidRequest),
            (StatusCode::BAD_REQUEST, Code::InvalidParameter),
            (StatusCode::PAYLOAD_TOO_LARGE, Code::InvalidParameter),
            (StatusCode::TOO_MANY_REQUESTS, Code::Throttling),
            (StatusCode::SERVICE_UNAVAILABLE, Code::InternalServiceError),
        ] {
            let e = AwsError::from(ApiError::new(status, "why"));
            assert_eq!(e.code, code, "{status}");
            assert_eq!(e.message, "why");
        }
    }

    #[test]
    fn a_reached_quota_is_aws_limit_exceeded() {
        let quota = domain::Rejection::new(domain::ErrorCode::QuotaExceeded, "full");
        assert_eq!(AwsError::from(quota).code, Code::LimitExceeded);
        let denied = domain::Rejection::forbidden("no");
        assert_eq!(AwsError::from(denied).code, Code::AccessDenied);
    }

    #[test]
    fn refusals_in_barbicans_terms_take_awss_codes() {
        let id = domain::ids::SecretId::from_uuid(uuid::Uuid::from_u128(7));
        let at = domain::timestamp::Timestamp::from_unix_millis(0).unwrap();
        let now = at.plus(std::time::Duration::from_secs(1)).unwrap();
        let ended = AwsError::from(domain::secret::scheduled_for_deletion(id, at, now));
        assert_eq!(ended.code, Code::ResourceNotFound, "{}", ended.message);
        let before = domain::timestamp::Timestamp::from_unix_millis(-1000).unwrap();
        let scheduled = AwsError::from(domain::secret::scheduled_for_deletion(id, at, before));
        assert_eq!(scheduled.code, Code::InvalidRequest);
        assert!(
            scheduled.message.starts_with(MARKED_FOR_DELETION),
            "{}",
            scheduled.message
        );
        // Another secret that is not found stays so.
        let missing = domain::Rejection::not_found("Secret not found: no secret x");
        assert_eq!(AwsError::from(missing).code, Code::ResourceNotFound);
        let used = domain::Rejection::invalid(
            "Secret cannot be deleted as it has consumers. Secret x is used by y",
        );
        assert_eq!(AwsError::from(used).code, Code::InvalidRequest);
        let other = domain::Rejection::invalid("the recovery window is too short");
        assert_eq!(AwsError::from(other).code, Code::InvalidParameter);
    }

    #[test]
    fn only_keyledgers_failures_are_500() {
        assert_eq!(Code::InternalServiceError.status(), 500);
        assert_eq!(Code::InvalidSignature.status(), 400);
        assert_eq!(Code::AccessDenied.status(), 400);
    }
}
