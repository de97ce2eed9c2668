//! Barbican's `/v1/secrets/{id}/metadata` and `/v1/secrets/{id}/consumers` endpoints,
//! and tags (AWS-style key/value labels) under `/v1/secrets/{id}/tags`. Each change is a command, so it is an event
//! in the log.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::policy::Action;
use domain::subject::command;
use infra::protocol::{
    DeleteMetadatumRequest, RemoveTagsRequest, ReplaceMetadataRequest, SecretConsumerRequest,
    SetMetadatumRequest, SetTagsRequest,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::{change_target, readable, resolve};
use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, no_content, with_seq, write};
use crate::error::ApiError;
use crate::microversion::Microversion;
use crate::openapi::{MinSeq, SecretPath};
use crate::paging::{PageQuery, Paging};
use crate::state::AppState;
use crate::views::secret::{Extended, Secret, SecretConsumer, SecretConsumerList, Shape};
use crate::views::{base_url, secret_ref};

/// `GET /v1/secrets/{id}/metadata`.
#[utoipa::path(
    get,
    path = "/v1/secrets/{id}/metadata",
    tag = "metadata",
    params(SecretPath, MinSeq),
    responses((status = 200, description = "Its user metadata", body = MetadataBody)),
)]
pub async fn get_all(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = resolve(&state, &caller, &id).await?;
    let lookup = state.read.get_metadata(id, (state.clock)()).await?;
    let (_, metadata) = readable(
        &state,
        &caller,
        Action::ReadSecret,
        id,
        lookup.value,
        |(s, _)| s,
    )?;
    Ok(with_seq(
        Json(MetadataBody { metadata }).into_response(),
        lookup.seq,
    ))
}

/// A secret's user metadata.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataBody {
    /// Key to value; keys are lowercased.
    #[schema(value_type = infra::schemas::MetadataMap)]
    metadata: BTreeMap<String, String>,
}

/// The metadata's URL, as a replacement answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetadataRef {
    /// The URL.
    metadata_ref: String,
}

/// A secret's tags.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    /// Key to value.
    #[schema(value_type = infra::schemas::TagsMap)]
    tags: BTreeMap<String, String>,
}

/// `PUT /v1/secrets/{id}/metadata`: replaces all metadata; 201.
#[utoipa::path(
    put,
    path = "/v1/secrets/{id}/metadata",
    tag = "metadata",
    params(SecretPath),
    request_body(content = MetadataBody, content_type = "application/json"),
    responses((status = 201, description = "Replaced", body = MetadataRef)),
)]
pub async fn put_all(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body: MetadataBody = crate::body::json(&headers, &body, "metadata")?;
    let (id, project) = change_target(&state, &caller, &id).await?;
    let request = ReplaceMetadataRequest {
        command_id: None,
        project,
        id: id.to_string(),
        metadata: body.metadata,
    };
    let accepted = write(&state, command::SECRET_METADATA_REPLACE, &caller, &request).await?;
    let url = format!(
        "{}/metadata",
        secret_ref(&base_url(&state, &headers), &accepted.id)
    );
    Ok(with_seq(
        (StatusCode::CREATED, Json(MetadataRef { metadata_ref: url })).into_response(),
        accepted.seq,
    ))
}

/// One metadata item.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadatumBody {
    /// Its key.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,255}$")]
    key: String,
    /// Its value.
    #[schema(min_length = 1, max_length = 1024, pattern = "keyledger:visible")]
    value: String,
}

/// Sets one key; `must_exist` as the command takes it.
async fn set_one(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    body: MetadatumBody,
    must_exist: bool,
) -> Result<(MetadatumBody, infra::protocol::AcceptedReply), ApiError> {
    let (id, project) = change_target(state, caller, raw).await?;
    let request = SetMetadatumRequest {
        command_id: None,
        project,
        id: id.to_string(),
        key: body.key.clone(),
        value: body.value.clone(),
        must_exist: Some(must_exist),
    };
    let accepted = write(state, command::SECRET_METADATA_SET, caller, &request).await?;
    Ok((body, accepted))
}

/// `POST /v1/secrets/{id}/metadata`: adds a key (409 if it exists); 201.
#[utoipa::path(
    post,
    path = "/v1/secrets/{id}/metadata",
    tag = "metadata",
    params(SecretPath),
    request_body(content = MetadatumBody, content_type = "application/json"),
    responses((status = 201, description = "Added; `Location` is its URL", body = MetadatumBody,
        headers(("Location" = String, description = "The item's URL")))),
)]
pub async fn add_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body: MetadatumBody = crate::body::json(&headers, &body, "a metadata item")?;
    let (body, accepted) = set_one(&state, &caller, &id, body, false).await?;
    let location = format!(
        "{}/metadata/{}",
        secret_ref(&base_url(&state, &headers), &accepted.id),
        percent_encoding::utf8_percent_encode(
            &body.key.to_ascii_lowercase(),
            percent_encoding::NON_ALPHANUMERIC
        )
    );
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(with_seq(response, accepted.seq))
}

/// `GET /v1/secrets/{id}/metadata/{key}`.
#[utoipa::path(
    get,
    path = "/v1/secrets/{id}/metadata/{key}",
    tag = "metadata",
    params(SecretPath, MinSeq, ("key" = String, Path, pattern = "^[A-Za-z0-9._-]{1,255}$", description = "The metadata key (case-insensitive)")),
    responses((status = 200, description = "The item", body = MetadatumBody)),
)]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = resolve(&state, &caller, &id).await?;
    let lookup = state.read.get_metadata(id, (state.clock)()).await?;
    let (_, metadata) = readable(
        &state,
        &caller,
        Action::ReadSecret,
        id,
        lookup.value,
        |(s, _)| s,
    )?;
    let folded = key.to_ascii_lowercase();
    let value = metadata.get(&folded).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("secret {id} has no metadata key {key:?}"),
        )
    })?;
    Ok(with_seq(
        Json(MetadatumBody {
            key: folded,
            value: value.clone(),
        })
        .into_response(),
        lookup.seq,
    ))
}

/// `PUT /v1/secrets/{id}/metadata/{key}`: changes an existing key (404 if it does not
/// exist); 200.
#[utoipa::path(
    put,
    path = "/v1/secrets/{id}/metadata/{key}",
    tag = "metadata",
    params(SecretPath, ("key" = String, Path, pattern = "^[A-Za-z0-9._-]{1,255}$", description = "The metadata key (case-insensitive)")),
    request_body(content = MetadatumBody, content_type = "application/json"),
    responses((status = 200, description = "Changed", body = MetadatumBody)),
)]
pub async fn put_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body: MetadatumBody = crate::body::json(&headers, &body, "a metadata item")?;
    if !body.key.eq_ignore_ascii_case(&key) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the body names key {:?} but the URL names {key:?}; they must be the same",
                body.key
            ),
        ));
    }
    let (body, accepted) = set_one(&state, &caller, &id, body, true).await?;
    Ok(with_seq(Json(body).into_response(), accepted.seq))
}

/// `DELETE /v1/secrets/{id}/metadata/{key}`: 204.
#[utoipa::path(
    delete,
    path = "/v1/secrets/{id}/metadata/{key}",
    tag = "metadata",
    params(SecretPath, ("key" = String, Path, pattern = "^[A-Za-z0-9._-]{1,255}$", description = "The metadata key (case-insensitive)")),
    responses((status = 204, description = "Removed")),
)]
pub async fn delete_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (id, project) = change_target(&state, &caller, &id).await?;
    let request = DeleteMetadatumRequest {
        command_id: None,
        project,
        id: id.to_string(),
        key,
    };
    let accepted = write(&state, command::SECRET_METADATA_DELETE, &caller, &request).await?;
    Ok(no_content(accepted.seq))
}

/// `GET /v1/secrets/{id}/tags`.
#[utoipa::path(
    get,
    path = "/v1/secrets/{id}/tags",
    tag = "metadata",
    params(SecretPath, MinSeq),
    responses((status = 200, description = "Its tags", body = TagsBody)),
)]
pub async fn get_tags(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = resolve(&state, &caller, &id).await?;
    let lookup = state.read.get_secret(id, (state.clock)()).await?;
    let row = readable(&state, &caller, Action::ReadSecret, id, lookup.value, |r| r)?;
    Ok(with_seq(
        Json(TagsBody { tags: row.tags }).into_response(),
        lookup.seq,
    ))
}

/// `POST /v1/secrets/{id}/tags`: adds or changes the tags given (AWS `TagResource`);
/// 204.
#[utoipa::path(
    post,
    path = "/v1/secrets/{id}/tags",
    tag = "metadata",
    params(SecretPath),
    request_body(content = TagsBody, content_type = "application/json"),
    responses((status = 204, description = "Added or changed")),
)]
pub async fn set_tags(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body: TagsBody = crate::body::json(&headers, &body, "tags")?;
    let (id, project) = change_target(&state, &caller, &id).await?;
    let request = SetTagsRequest {
        command_id: None,
        project,
        id: id.to_string(),
        tags: body.tags,
    };
    let accepted = write(&state, command::SECRET_TAGS_SET, &caller, &request).await?;
    Ok(no_content(accepted.seq))
}

/// `DELETE /v1/secrets/{id}/tags/{key}` (AWS `UntagResource`); 204.
#[utoipa::path(
    delete,
    path = "/v1/secrets/{id}/tags/{key}",
    tag = "metadata",
    params(SecretPath, ("key" = String, Path, min_length = 1, max_length = 128, pattern = "keyledger:visible", description = "The tag's key")),
    responses((status = 204, description = "Removed")),
)]
pub async fn delete_tag(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (id, project) = change_target(&state, &caller, &id).await?;
    let request = RemoveTagsRequest {
        command_id: None,
        project,
        id: id.to_string(),
        keys: vec![key],
    };
    let accepted = write(&state, command::SECRET_TAGS_REMOVE, &caller, &request).await?;
    Ok(no_content(accepted.seq))
}

/// A consumer of a secret.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretConsumerBody {
    /// The service, e.g. `image`.
    #[schema(min_length = 1, max_length = 255, pattern = "keyledger:printable")]
    service: String,
    /// The kind of resource, e.g. `image`.
    #[schema(min_length = 1, max_length = 255, pattern = "keyledger:printable")]
    resource_type: String,
    /// The resource.
    #[schema(min_length = 1, max_length = 255, pattern = "keyledger:printable")]
    resource_id: String,
}

/// `GET /v1/secrets/{id}/consumers` (microversion 1.1): a page of them, as Barbican
/// pages.
#[utoipa::path(
    get,
    path = "/v1/secrets/{id}/consumers",
    tag = "consumers",
    params(SecretPath, MinSeq, PageQuery),
    responses((status = 200, description = "A page of its consumers (microversion 1.1 and later)", body = SecretConsumerList)),
)]
pub async fn consumers(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    version: Microversion,
    Path(raw): Path<String>,
    headers: HeaderMap,
    paging: Paging,
) -> Result<Response, ApiError> {
    consumers_since(version)?;
    let id = resolve(&state, &caller, &raw).await?;
    let lookup = state.read.get_secret(id, (state.clock)()).await?;
    let row = readable(&state, &caller, Action::ReadSecret, id, lookup.value, |r| r)?;
    let consumers: Vec<SecretConsumer> = row
        .consumers
        .iter()
        .skip(paging.offset as usize)
        .take(paging.limit as usize)
        .map(SecretConsumer::of)
        .collect();
    let total = row.consumers.len() as u64;
    let url = format!(
        "{}/consumers",
        secret_ref(&base_url(&state, &headers), row.id)
    );
    let links = paging.links(&url, consumers.len(), total, &[]);
    let body = SecretConsumerList {
        consumers,
        total,
        links,
    };
    Ok(with_seq(Json(body).into_response(), lookup.seq))
}

/// Secret consumers came with microversion 1.1, and Barbican refuses them before.
fn consumers_since(version: Microversion) -> Result<(), ApiError> {
    if version < Microversion::V1_1 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "secret consumers need microversion 1.1 or later; send \
                 OpenStack-API-Version: key-manager 1.1 (this request is at {version})"
            ),
        ));
    }
    Ok(())
}

/// `POST` (register) and `DELETE` (unregister) `/v1/secrets/{id}/consumers`
/// (microversion 1.1), body `{"service", "resource_type", "resource_id"}`: 200 with
/// the secret, its consumers included, as Barbican answers.
#[utoipa::path(
    method(post, delete),
    path = "/v1/secrets/{id}/consumers",
    tag = "consumers",
    params(SecretPath, Extended),
    request_body(content = SecretConsumerBody, content_type = "application/json"),
    responses((status = 200, description = "Registered (POST) or removed (DELETE); the secret, its consumers included (microversion 1.1 and later)", body = Secret,
        headers(("Location" = String, description = "Its consumers' URL")))),
)]
#[allow(clippy::too_many_arguments)] // axum extractors, one per part of the request
pub async fn change_consumer(
    State(state): State<AppState>,
    caller: Caller,
    method: axum::http::Method,
    shape: Shape,
    version: Microversion,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    consumers_since(version)?;
    let body: SecretConsumerBody = crate::body::json(&headers, &body, "a consumer")?;
    let (id, project) = change_target(&state, &caller, &raw).await?;
    let request = SecretConsumerRequest {
        command_id: None,
        project,
        id: id.to_string(),
        service: body.service,
        resource_type: body.resource_type,
        resource_id: body.resource_id,
    };
    let name = if method == axum::http::Method::DELETE {
        command::SECRET_CONSUMER_REMOVE
    } else {
        command::SECRET_CONSUMER_REGISTER
    };
    let accepted = write(&state, name, &caller, &request).await?;
    let lookup = state.read.get_secret(id, (state.clock)()).await?;
    let row = readable(&state, &caller, Action::ReadSecret, id, lookup.value, |r| r)?;
    let base = base_url(&state, &headers);
    let mut response = Json(Secret::of(&base, &row, shape)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("{}/consumers", secret_ref(&base, row.id)))
    {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(with_seq(response, accepted.seq))
}
