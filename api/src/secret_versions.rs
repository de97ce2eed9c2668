//! Versions of a secret's value, AWS Secrets Manager's way, under Barbican's URLs:
//!
//! - `GET /v1/secrets/{id}/versions`: every version with its stages.
//! - `POST /v1/secrets/{id}/versions`: store a new version (`PutSecretValue`).
//! - `GET /v1/secrets/{id}/versions/{version}` and `…/{version}/payload`: one version,
//!   by id or by stage (`current`, `previous`, `pending`, or the AWS names).
//! - `PUT /v1/secrets/{id}/stages/{stage}`: move a stage (`UpdateSecretVersionStage`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::policy::Action;
use domain::secret::version::Stage;
use domain::subject::command;
use infra::protocol::{MoveStageRequest, PayloadField, PutValueRequest};
use projections::read::{VersionRow, VersionSelector, WithPayload};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::{change_target, readable, resolve};
use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, no_content, with_seq, write};
use crate::error::ApiError;
use crate::openapi::{AcceptPayload, MinSeq, SecretPath};
use crate::paging::{PageQuery, Paging};
use crate::payload;
use crate::state::AppState;
use crate::views::{base_url, secret_ref};

/// A version of a secret's value.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecretVersion {
    /// Its id.
    pub version_id: String,
    /// When it was stored (UTC).
    pub created: String,
    /// The payload's content type.
    pub content_type: String,
    /// Its stages: `current`, `previous`, `pending`.
    pub stages: Vec<String>,
}

/// A secret's versions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    /// A page of the versions whose keys still exist, oldest first.
    pub versions: Vec<SecretVersion>,
    /// How many versions the secret has.
    pub total: u64,
    /// The next and previous pages.
    #[serde(flatten)]
    pub links: crate::views::Links,
}

/// A version just stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionStored {
    /// The secret's URL.
    pub secret_ref: String,
    /// The new version's id (or the one a retried `client_request_token` stored).
    pub version_id: Option<String>,
}

fn view(v: &VersionRow) -> SecretVersion {
    SecretVersion {
        version_id: v.version_id.clone(),
        created: crate::views::time(&v.created),
        content_type: v.content_type.clone(),
        stages: v.stages.clone(),
    }
}

/// `GET /v1/secrets/{id}/versions`.
#[utoipa::path(
    get,
    path = "/v1/secrets/{id}/versions",
    tag = "secrets",
    params(SecretPath, MinSeq, PageQuery),
    responses((status = 200, description = "A page of its versions and their stages", body = VersionList)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    paging: Paging,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = resolve(&state, &caller, &id).await?;
    let _listing = state.costly.listings.start(&caller).await?;
    let lookup = state
        .read
        .list_versions(id, (state.clock)(), paging.bounds())
        .await?;
    let (_, page) = readable(
        &state,
        &caller,
        Action::ReadSecret,
        id,
        lookup.value,
        |(s, _)| s,
    )?;
    let versions: Vec<SecretVersion> = page.versions.iter().map(view).collect();
    let url = format!("{}/v1/secrets/{id}/versions", base_url(&state, &headers));
    let links = paging.links(&url, versions.len(), page.total, &[]);
    let body = VersionList {
        versions,
        total: page.total,
        links,
    };
    Ok(with_seq(Json(body).into_response(), lookup.seq))
}

/// A stage a new version may take.
#[derive(ToSchema)]
#[allow(dead_code)] // describes a schema; never built
enum StageName {
    #[schema(rename = "current")]
    Current,
    #[schema(rename = "pending")]
    Pending,
    #[schema(rename = "AWSCURRENT")]
    AwsCurrent,
    #[schema(rename = "AWSPENDING")]
    AwsPending,
}

/// The body of `POST /v1/secrets/{id}/versions`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutValueBody {
    /// The value: text, or base64 for `application/octet-stream`.
    #[schema(value_type = String, min_length = 1)]
    pub payload: PayloadField,
    /// `text/plain` or `application/octet-stream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        required = true,
        nullable = false,
        pattern = "^[ \t]*(text/plain([ \t]*;[ \t]*charset=(utf-8|\"utf-8\"))?|application/octet-stream)[ \t]*$"
    )]
    pub payload_content_type: Option<String>,
    /// `base64`, for `application/octet-stream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^base64$")]
    pub payload_content_encoding: Option<String>,
    /// Makes retrying safe, as AWS's `ClientRequestToken`: the same token and value,
    /// the same version (32 to 64 printable ASCII characters; a UUID works).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[!-~]{32,64}$")]
    pub client_request_token: Option<String>,
    /// The stages the new version takes (default `current`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<StageName>>, min_items = 1)]
    pub stages: Option<Vec<String>>,
}

/// `POST /v1/secrets/{id}/versions`: 201 with the new version's id; a retry with the
/// same `client_request_token` and payload answers with the same version.
#[utoipa::path(
    post,
    path = "/v1/secrets/{id}/versions",
    tag = "secrets",
    params(SecretPath),
    request_body(content = PutValueBody, content_type = "application/json"),
    responses((status = 201, description = "Stored", body = VersionStored)),
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body: PutValueBody = crate::body::json(&headers, &body, "a secret version")?;
    let (id, project) = change_target(&state, &caller, &id).await?;
    let request = PutValueRequest {
        command_id: None,
        project,
        id: id.to_string(),
        payload: body.payload,
        payload_content_type: body.payload_content_type,
        payload_content_encoding: body.payload_content_encoding,
        client_request_token: body.client_request_token,
        stages: body.stages,
    };
    let accepted = write(&state, command::SECRET_VALUE_PUT, &caller, &request).await?;
    let body = VersionStored {
        secret_ref: secret_ref(&base_url(&state, &headers), &accepted.id),
        version_id: accepted.version_id,
    };
    Ok(with_seq(
        (StatusCode::CREATED, Json(body)).into_response(),
        accepted.seq,
    ))
}

/// Reads `{version}`: a version id, or a stage name.
fn selector(raw: &str) -> Result<VersionSelector<'_>, ApiError> {
    if domain::ids::VersionId::parse(raw).is_ok() {
        return Ok(VersionSelector::Id(raw));
    }
    Stage::parse(raw)
        .map(|s| VersionSelector::Stage(s.builtin_name().unwrap_or(raw)))
        .map_err(|r| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{}; or give a version id (a UUID)", r.message),
            )
        })
}

fn no_version(id: domain::ids::SecretId, raw: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "secret {id} has no version {raw} (never stored, no version holds that stage, or \
             destroyed by retention); list them with GET /v1/secrets/{id}/versions"
        ),
    )
}

/// `GET /v1/secrets/{id}/versions/{version}`.
#[utoipa::path(
    get,
    path = "/v1/secrets/{id}/versions/{version}",
    tag = "secrets",
    params(SecretPath, MinSeq,
        ("version" = String, Path, description = "A version id, or a stage: `current`, `previous`, `pending` (or `AWSCURRENT`, `AWSPREVIOUS`, `AWSPENDING`)")),
    responses((status = 200, description = "The version", body = SecretVersion)),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path((id, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = resolve(&state, &caller, &id).await?;
    let which = selector(&version)?;
    let lookup = state.read.find_version(id, which, (state.clock)()).await?;
    let (_, found) = readable(
        &state,
        &caller,
        Action::ReadSecret,
        id,
        lookup.value,
        |(s, _)| s,
    )?;
    let found = found.ok_or_else(|| no_version(id, &version))?;
    Ok(with_seq(Json(view(&found)).into_response(), lookup.seq))
}

/// `GET /v1/secrets/{id}/versions/{version}/payload`.
#[utoipa::path(
    get,
    path = "/v1/secrets/{id}/versions/{version}/payload",
    tag = "secrets",
    params(SecretPath, MinSeq,
        ("version" = String, Path, description = "A version id, or a stage: `current`, `previous`, `pending` (or `AWSCURRENT`, `AWSPREVIOUS`, `AWSPENDING`)"),
        AcceptPayload),
    responses((status = 200, description = "The version's payload", content(
        (String = "text/plain"),
        (String = "application/octet-stream"),
    ), headers(("X-Keyledger-Version-Id" = String, description = "The version served")))),
)]
pub async fn get_payload(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path((id, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = resolve(&state, &caller, &id).await?;
    let which = selector(&version)?;
    let lookup = state.read.get_version(id, which, (state.clock)()).await?;
    let held =
        payload::readable_payload(&state, &caller, id, lookup.value, WithPayload::secret).await?;
    let row = held.payload().ok_or_else(|| no_version(id, &version))?;
    let response = payload::open(&state, &caller, id, held.secret(), row, &headers).await?;
    Ok(with_seq(response, lookup.seq))
}

/// The body of `PUT /v1/secrets/{id}/stages/{stage}`, named as AWS names them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveStageBody {
    /// The version (id) that takes the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub move_to: Option<String>,
    /// The version (id) that gives it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub remove_from: Option<String>,
}

/// `PUT /v1/secrets/{id}/stages/{stage}`: 204.
#[utoipa::path(
    put,
    path = "/v1/secrets/{id}/stages/{stage}",
    tag = "secrets",
    params(SecretPath,
        ("stage" = String, Path, description = "`current`, `previous` or `pending` (or the AWS names), or a custom label (1 to 256 visible characters, case-sensitive)")),
    request_body(content = MoveStageBody, content_type = "application/json"),
    responses((status = 204, description = "Moved")),
)]
pub async fn move_stage(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, stage)): Path<(String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body: MoveStageBody = crate::body::json(&headers, &body, "a stage move")?;
    let (id, project) = change_target(&state, &caller, &id).await?;
    let request = MoveStageRequest {
        command_id: None,
        project,
        id: id.to_string(),
        stage,
        move_to: body.move_to,
        remove_from: body.remove_from,
    };
    let accepted = write(&state, command::SECRET_STAGE_MOVE, &caller, &request).await?;
    Ok(no_content(accepted.seq))
}
