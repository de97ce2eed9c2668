//! AWS Secrets Manager's API on keyledger's HTTP server: `POST /` with
//! `X-Amz-Target: secretsmanager.<Operation>` and a JSON 1.1 body, signed with SigV4
//! under an access key keyledger manages. The same secrets as Barbican's API, with one
//! history: reads go through the same read model and policy, writes become the same
//! commands.
//!
//! A request flows: operation (from `X-Amz-Target`) → body → signature ([`auth`]) →
//! input shape ([`shapes`]) → the operation ([`secrets`], [`values`]) → a JSON answer
//! or an AWS-shaped error ([`error`]).

pub mod auth;
pub mod error;
mod paging;
mod password;
mod resolve;
mod rotation;
mod secrets;
mod shapes;
mod tags;
mod values;
mod versions;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use auth::{AwsCaller, AwsKeys};
use error::{AMZ_JSON, AwsError, Code};

use crate::state::AppState;

/// The response header botocore reads the request id from.
const REQUEST_ID: &str = "x-amzn-requestid";

/// The operations keyledger serves, and those it answers with a clear refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    CreateSecret,
    GetSecretValue,
    PutSecretValue,
    DescribeSecret,
    ListSecrets,
    DeleteSecret,
    RestoreSecret,
    UpdateSecret,
    BatchGetSecretValue,
    ListSecretVersionIds,
    UpdateSecretVersionStage,
    TagResource,
    UntagResource,
    GetRandomPassword,
    RotateSecret,
    CancelRotateSecret,
    /// In AWS's model, not served yet.
    NotYet(&'static str),
    /// Cross-region replication: keyledger replicates through its NATS cluster.
    Replication(&'static str),
}

/// Operations of AWS's model keyledger does not serve yet.
const NOT_YET: [&str; 4] = [
    "GetResourcePolicy",
    "PutResourcePolicy",
    "DeleteResourcePolicy",
    "ValidateResourcePolicy",
];

const REPLICATION: [&str; 3] = [
    "ReplicateSecretToRegions",
    "RemoveRegionsFromReplication",
    "StopReplicationToReplica",
];

impl Operation {
    fn parse(target: &str) -> Option<Self> {
        let name = target.strip_prefix("secretsmanager.")?;
        Some(match name {
            "CreateSecret" => Self::CreateSecret,
            "GetSecretValue" => Self::GetSecretValue,
            "PutSecretValue" => Self::PutSecretValue,
            "DescribeSecret" => Self::DescribeSecret,
            "ListSecrets" => Self::ListSecrets,
            "DeleteSecret" => Self::DeleteSecret,
            "RestoreSecret" => Self::RestoreSecret,
            "UpdateSecret" => Self::UpdateSecret,
            "BatchGetSecretValue" => Self::BatchGetSecretValue,
            "ListSecretVersionIds" => Self::ListSecretVersionIds,
            "UpdateSecretVersionStage" => Self::UpdateSecretVersionStage,
            "TagResource" => Self::TagResource,
            "UntagResource" => Self::UntagResource,
            "GetRandomPassword" => Self::GetRandomPassword,
            "RotateSecret" => Self::RotateSecret,
            "CancelRotateSecret" => Self::CancelRotateSecret,
            other => {
                if let Some(n) = NOT_YET.iter().find(|n| **n == other) {
                    Self::NotYet(n)
                } else if let Some(n) = REPLICATION.iter().find(|n| **n == other) {
                    Self::Replication(n)
                } else {
                    return None;
                }
            }
        })
    }
}

/// An operation's input, parsed from the body: unknown members are ignored (SDKs add
/// members over time), a wrong type is a `SerializationException` that names the
/// member but never repeats a value (a value may be a secret).
fn input<T: DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    if !infra::objects::is_object(body) {
        return Err(AwsError::new(
            Code::Serialization,
            "the body is not a JSON object; send the operation's input as {...}",
        ));
    }
    let invalid = |at: Option<String>, e: serde_json::Error| {
        let at = at
            .map(|path| format!("member {path}: "))
            .unwrap_or_default();
        AwsError::new(
            Code::Serialization,
            infra::protocol::without_string_values(&format!(
                "the body is not valid for this operation: {at}{e}"
            )),
        )
    };
    domain::json_text::refuse_raw_value_token(body).map_err(|e| invalid(None, e))?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // The member whose value is of the wrong type or out of range: `Tags[0].Key`.
        // Only such errors name it: those come from members of the input's types
        // (no input is a map keyed by the caller, and a member read as a JSON value
        // raises none), while a syntax error may lie under a member nobody reads, whose
        // name is whatever the caller wrote.
        let path = e.path().to_string();
        let named = e.inner().classify() == serde_json::error::Category::Data && path != ".";
        invalid(named.then_some(path), e.into_inner())
    })?;
    de.end().map_err(|e| invalid(None, e))?;
    Ok(parsed)
}

/// Sends a write as the command `name` for `caller` (on the delegated command
/// subjects, with a delegation token) and returns once reads show it.
async fn write<T: Serialize>(
    state: &AppState,
    caller: &AwsCaller,
    name: &str,
    body: &T,
) -> Result<infra::protocol::AcceptedReply, crate::error::ApiError> {
    crate::consistency::write(state, name, &caller.caller, body).await
}

/// A successful answer: the output shape as JSON 1.1.
fn output<T: Serialize>(value: &T) -> Result<Response, AwsError> {
    let body = serde_json::to_vec(value).map_err(|e| {
        AwsError::new(
            Code::InternalServiceError,
            format!("keyledger could not encode its answer: {e}"),
        )
    })?;
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    Ok(response)
}

/// `POST /`: one AWS Secrets Manager operation.
#[utoipa::path(
    post,
    path = "/",
    tag = "aws",
    params(
        ("X-Amz-Target" = String, Header, description = "`secretsmanager.<Operation>`, e.g. `secretsmanager.GetSecretValue`"),
    ),
    request_body(description = "The operation's input (AWS JSON 1.1; the Content-Type is not checked)", content(
        (serde_json::Value = "application/x-amz-json-1.1"),
        (serde_json::Value = "application/json"),
    )),
    responses(
        (status = 200, description = "The operation's output (AWS JSON 1.1)", content((serde_json::Value = "application/x-amz-json-1.1"))),
        (status = 400, description = "`{\"__type\": \"<Code>\", \"message\": \"…\"}`: the request must change (including authentication: requests are signed with SigV4 under a keyledger access key)", content((serde_json::Value = "application/x-amz-json-1.1"))),
        (status = 500, description = "keyledger failed; retry", content((serde_json::Value = "application/x-amz-json-1.1"))),
    ),
)]
pub async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let mut response = match handle(&state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

async fn handle(state: &AppState, request: Request) -> Result<Response, AwsError> {
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Some(operation) = Operation::parse(&target) else {
        return Err(AwsError::new(
            Code::UnknownOperation,
            format!(
                "X-Amz-Target {target:?} names no operation keyledger serves at POST /; AWS \
                 Secrets Manager's operations are secretsmanager.<Operation> (Barbican's API \
                 lives under /v1)"
            ),
        ));
    };
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let (parts, body) = request.into_parts();
    let presented =
        auth::presented(state, &parts.headers, parts.uri.query().unwrap_or_default()).await?;
    let limit = state.config.max_body_bytes;
    let too_large = || {
        AwsError::invalid(format!(
            "the request body is larger than {limit} bytes (or was cut off); values are \
             limited to the configured payload size"
        ))
    };
    if crate::body::declared_over(&parts.headers, limit) {
        return Err(too_large());
    }
    let timeout = state.config.body_timeout;
    let body = tokio::time::timeout(
        timeout,
        Bytes::from_request(Request::from_parts(parts.clone(), body), state),
    )
    .await
    .map_err(|_| {
        AwsError::new(
            Code::InvalidRequest,
            format!("the request body did not arrive within {timeout:?}; send it at once"),
        )
    })?
    .map_err(|_| too_large())?;
    let caller = auth::authenticate(
        state,
        presented,
        &parts.headers,
        (parts.uri.path(), parts.uri.query().unwrap_or_default()),
        &body,
        source,
    )
    .await?;
    match operation {
        Operation::CreateSecret => secrets::create(state, &caller, input(&body)?).await,
        Operation::DescribeSecret => secrets::describe(state, &caller, input(&body)?).await,
        Operation::ListSecrets => secrets::list(state, &caller, input(&body)?).await,
        Operation::DeleteSecret => secrets::delete(state, &caller, input(&body)?).await,
        Operation::RestoreSecret => secrets::restore(state, &caller, input(&body)?).await,
        Operation::GetSecretValue => values::get(state, &caller, input(&body)?).await,
        Operation::PutSecretValue => values::put(state, &caller, input(&body)?).await,
        Operation::UpdateSecret => values::update(state, &caller, input(&body)?).await,
        Operation::BatchGetSecretValue => values::batch_get(state, &caller, input(&body)?).await,
        Operation::ListSecretVersionIds => versions::list(state, &caller, input(&body)?).await,
        Operation::UpdateSecretVersionStage => {
            versions::update_stage(state, &caller, input(&body)?).await
        }
        Operation::TagResource => tags::tag(state, &caller, input(&body)?).await,
        Operation::UntagResource => tags::untag(state, &caller, input(&body)?).await,
        Operation::GetRandomPassword => password::get(&caller, input(&body)?).await,
        Operation::RotateSecret => rotation::rotate(state, &caller, input(&body)?).await,
        Operation::CancelRotateSecret => rotation::cancel(state, &caller, input(&body)?).await,
        Operation::NotYet(name) => Err(AwsError::new(
            Code::InvalidRequest,
            format!(
                "keyledger does not serve {name} yet: resource policies come in a later \
                 release (see docs/aws.md); Barbican's API sets who may read a secret \
                 (PUT /v1/secrets/{{id}}/acl, `keyledger acl set`)"
            ),
        )),
        Operation::Replication(name) => Err(AwsError::new(
            Code::InvalidRequest,
            format!(
                "{name}: keyledger does not replicate secrets to regions; every secret is \
                 replicated by keyledger's NATS cluster (`keyledger up --replicas 3`), and \
                 answers in whichever region a client names"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_operations() {
        assert_eq!(
            Operation::parse("secretsmanager.GetSecretValue"),
            Some(Operation::GetSecretValue)
        );
        assert_eq!(
            Operation::parse("secretsmanager.GetResourcePolicy"),
            Some(Operation::NotYet("GetResourcePolicy"))
        );
        assert_eq!(
            Operation::parse("secretsmanager.ReplicateSecretToRegions"),
            Some(Operation::Replication("ReplicateSecretToRegions"))
        );
        for unknown in ["", "GetSecretValue", "kms.Decrypt", "secretsmanager.Nope"] {
            assert_eq!(Operation::parse(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn bad_bodies_name_what_is_wrong_without_values() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(rename_all = "PascalCase")]
        #[allow(dead_code)]
        struct In {
            secret_string: Option<String>,
            max_results: Option<u32>,
        }
        assert!(input::<In>(b"").is_ok());
        assert!(input::<In>(br#"{"Unknown": 1}"#).is_ok());
        let e = input::<In>(b"[1]").unwrap_err();
        assert_eq!(e.code, Code::Serialization);
        let e = input::<In>(br#"{"MaxResults": "hunter2-secret"}"#).unwrap_err();
        assert_eq!(e.code, Code::Serialization);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        assert!(e.message.contains("member MaxResults: "), "{}", e.message);
        let e = input::<In>(br#"{"SecretString": 5}"#).unwrap_err();
        assert!(
            e.message
                .contains("member SecretString: invalid type: integer"),
            "{}",
            e.message
        );
        let e = input::<In>(br#"{"SecretString": "a"} x"#).unwrap_err();
        assert!(e.message.contains("trailing characters"), "{}", e.message);
        // A syntax error under a member nobody reads does not repeat its name.
        let e = input::<In>(br#"{"hunter2": [1,}"#).unwrap_err();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }
}
