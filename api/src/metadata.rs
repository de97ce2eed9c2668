//! Barbican's `/v1/secrets/{id}/metadata` and `/v1/secrets/{id}/consumers` endpoints,
//! and tags (AWS-style key/value labels) under `/v1/secrets/{id}/tags`. Each change is a command, so it is an event
//! in the log.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::protocol::{
    DeleteMetadatumRequest, RemoveTagsRequest, ReplaceMetadataRequest, SecretConsumerRequest,
    SetMetadatumRequest, SetTagsRequest,
};
use domain::policy::Action;
use domain::subject::command;
use serde::Deserialize;
use serde_json::json;

use crate::access::{change_target, readable, resolve};
use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, no_content, with_seq, write};
use crate::error::ApiError;
use crate::microversion::Microversion;
use crate::paging::Paging;
use crate::state::AppState;
use crate::views::secret::{Secret, SecretConsumer, SecretConsumerList, Shape};
use crate::views::{base_url, secret_ref};

/// `GET /v1/secrets/{id}/metadata`.
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
        Json(json!({ "metadata": metadata })).into_response(),
        lookup.seq,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataBody {
    metadata: BTreeMap<String, String>,
}

/// `PUT /v1/secrets/{id}/metadata`: replaces all metadata; 201.
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
    let accepted = write(
        &state,
        command::SECRET_METADATA_REPLACE,
        &caller.token,
        &request,
    )
    .await?;
    let url = format!(
        "{}/metadata",
        secret_ref(&base_url(&state, &headers), &accepted.id)
    );
    Ok(with_seq(
        (StatusCode::CREATED, Json(json!({ "metadata_ref": url }))).into_response(),
        accepted.seq,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadatumBody {
    key: String,
    value: String,
}

/// Sets one key; `must_exist` as the command takes it.
async fn set_one(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    body: MetadatumBody,
    must_exist: bool,
) -> Result<(MetadatumBody, commands::protocol::AcceptedReply), ApiError> {
    let (id, project) = change_target(state, caller, raw).await?;
    let request = SetMetadatumRequest {
        command_id: None,
        project,
        id: id.to_string(),
        key: body.key.clone(),
        value: body.value.clone(),
        must_exist: Some(must_exist),
    };
    let accepted = write(state, command::SECRET_METADATA_SET, &caller.token, &request).await?;
    Ok((body, accepted))
}

/// `POST /v1/secrets/{id}/metadata`: adds a key (409 if it exists); 201.
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
        body.key.to_ascii_lowercase()
    );
    let mut response = (
        StatusCode::CREATED,
        Json(json!({ "key": body.key, "value": body.value })),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(with_seq(response, accepted.seq))
}

/// `GET /v1/secrets/{id}/metadata/{key}`.
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
        Json(json!({ "key": folded, "value": value })).into_response(),
        lookup.seq,
    ))
}

/// `PUT /v1/secrets/{id}/metadata/{key}`: changes an existing key (404 if it does not
/// exist); 200.
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
    Ok(with_seq(
        Json(json!({ "key": body.key, "value": body.value })).into_response(),
        accepted.seq,
    ))
}

/// `DELETE /v1/secrets/{id}/metadata/{key}`: 204.
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
    let accepted = write(
        &state,
        command::SECRET_METADATA_DELETE,
        &caller.token,
        &request,
    )
    .await?;
    Ok(no_content(accepted.seq))
}

/// `GET /v1/secrets/{id}/tags`.
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
        Json(json!({ "tags": row.tags })).into_response(),
        lookup.seq,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsBody {
    tags: BTreeMap<String, String>,
}

/// `POST /v1/secrets/{id}/tags`: adds or changes the tags given (AWS `TagResource`);
/// 204.
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
    let accepted = write(&state, command::SECRET_TAGS_SET, &caller.token, &request).await?;
    Ok(no_content(accepted.seq))
}

/// `DELETE /v1/secrets/{id}/tags/{key}` (AWS `UntagResource`); 204.
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
    let accepted = write(&state, command::SECRET_TAGS_REMOVE, &caller.token, &request).await?;
    Ok(no_content(accepted.seq))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerBody {
    service: String,
    resource_type: String,
    resource_id: String,
}

/// `GET /v1/secrets/{id}/consumers` (microversion 1.1): a page of them, as Barbican
/// pages.
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
        secret_ref(&base_url(&state, &headers), &row.id)
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
    let body: ConsumerBody = crate::body::json(&headers, &body, "a consumer")?;
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
    let accepted = write(&state, name, &caller.token, &request).await?;
    let lookup = state.read.get_secret(id, (state.clock)()).await?;
    let row = readable(&state, &caller, Action::ReadSecret, id, lookup.value, |r| r)?;
    let base = base_url(&state, &headers);
    let mut response = Json(Secret::of(&base, &row, shape)).into_response();
    if let Ok(location) =
        HeaderValue::from_str(&format!("{}/consumers", secret_ref(&base, &row.id)))
    {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(with_seq(response, accepted.seq))
}
