//! `/v1/access-keys`: AWS-style access keys (an access key id and a secret access
//! key) that stand for a principal of the caller's project, so SigV4-signed requests
//! can act as it. Create (201; a secret generated here is shown in that answer only),
//! list (never a secret), revoke (204). Writes are the commands `access_key.create`
//! and `access_key.revoke`: the command service seals the secret access key on
//! arrival, like a payload, so neither the log nor the read model holds it in the
//! clear, and revoking destroys its data key.
//!
//! Who may create and revoke is the domain's rule (`domain::access_key::authorize`):
//! an admin of the project for anyone in it; anyone else only for themselves, with
//! roles their token has and no service but their own.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use domain::access_key::{AccessKeyId, GENERATED_RANDOM_BYTES, check_secret};
use domain::ids::{Role, ServiceName, UserId};
use domain::subject::command;
use infra::protocol::{CreateAccessKeyRequest, PayloadField, RevokeAccessKeyRequest};
use projections::read::AccessKeyRow;
use secrecy::zeroize::Zeroizing;
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, no_content, with_seq, write};
use crate::error::ApiError;
use crate::openapi::{AccessKeyPath, MinSeq};
use crate::state::AppState;

/// Random bytes of a generated secret access key: 240 bits, 40 base64 characters
/// (as long as AWS's).
const GENERATED_SECRET_BYTES: usize = 30;

/// Parses the `{id}` of an access key's path.
fn access_key_id(raw: &str) -> Result<AccessKeyId, ApiError> {
    AccessKeyId::parse(raw).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no access key has the id {raw:?}: access key ids are {} to {} ASCII letters \
                 and digits, as `keyledger access-key list` shows them",
                AccessKeyId::MIN_LEN,
                AccessKeyId::MAX_LEN
            ),
        )
    })
}

/// A role name, as [`Role::parse`] takes it.
pub struct RoleName;

impl PartialSchema for RoleName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9_:-]{1,64}$"))
            .into()
    }
}

impl ToSchema for RoleName {}

/// An access key to create: every field is optional. Without `access_key_id` and
/// `secret_access_key` keyledger generates the pair and answers with the secret, once;
/// with both it imports them (the secret is then never shown back). An
/// `access_key_id` alone is used with a generated secret.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccessKeyBody {
    /// The project the key acts in: the token's (the default), which this only
    /// confirms; a key for another project needs a token for that project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub project: Option<String>,
    /// The user the key acts as; default: yours. Only an admin of the project makes
    /// keys for another user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = "keyledger:printable")]
    pub user: Option<String>,
    /// The roles it carries; default (for a key of your own): your token's. Required
    /// for another user's key. Unless you are an admin, only roles your token has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<RoleName>>)]
    pub roles: Option<Vec<String>>,
    /// The service it acts as; default (for a key of your own): your token's. Unless
    /// you are an admin, only your token's service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub service: Option<String>,
    /// The access key id to import (16 to 64 ASCII letters and digits); default: a
    /// generated one (`AKLG` and 16 base32 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9]{16,64}$")]
    pub access_key_id: Option<String>,
    /// The secret access key to import (16 to 128 printable ASCII characters without
    /// spaces), with its `access_key_id`; default: a generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^[!-~]{16,128}$")]
    pub secret_access_key: Option<PayloadField>,
}

/// Refuses to import an access key id that is active in another project: a signed
/// request names only the id, and the same pair in two projects could not say which
/// one it acts in (verification refuses such a pair too; this says so up front).
/// Best effort: two imports racing in two projects both pass here.
async fn refuse_id_of_another_project(
    state: &AppState,
    project: &domain::ids::ProjectId,
    id: &AccessKeyId,
) -> Result<(), ApiError> {
    let keys = state.read.sealed_access_keys(id).await?.value;
    if keys
        .iter()
        .any(|k| &k.key.project != project && k.key.status == "active")
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "access key id {id} is in use in another project; import the pair under \
                 another id (or leave access_key_id out to have one generated)"
            ),
        ));
    }
    Ok(())
}

/// A created access key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessKeyCreated {
    /// Its id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// The secret access key (`AWS_SECRET_ACCESS_KEY`), when keyledger generated it:
    /// shown in this answer only, never again. Left out for an imported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub secret_access_key: Option<PayloadField>,
    /// The user it acts as.
    pub user: String,
    /// The project it acts in.
    pub project: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// The service it acts as, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// An access key, without its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessKey {
    /// Its id.
    pub access_key_id: String,
    /// The user it acts as.
    pub user: String,
    /// The project it acts in.
    pub project: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// The service it acts as, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `active` or `revoked`.
    #[schema(pattern = "^(active|revoked)$")]
    pub status: String,
    /// Who created it.
    pub creator: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// When it was revoked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

impl AccessKey {
    /// `row` as shown.
    fn of(row: &AccessKeyRow) -> Self {
        Self {
            access_key_id: row.access_key_id.to_string(),
            user: row.user.to_string(),
            project: row.project.to_string(),
            roles: row.roles.clone(),
            service: row.service.clone(),
            status: row.status.clone(),
            creator: row.creator.to_string(),
            created: row.created.clone(),
            revoked: row.revoked.clone(),
        }
    }
}

/// Access keys.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessKeyList {
    /// The keys, oldest first.
    pub access_keys: Vec<AccessKey>,
    /// How many.
    pub total: u64,
}

/// A generated access key id.
fn generated_id() -> AccessKeyId {
    let mut random = [0u8; GENERATED_RANDOM_BYTES];
    infra::keyfile::random_bytes(&mut random);
    AccessKeyId::generated(random)
}

/// The id a create with an `Idempotency-Key` generates: derived from the project and
/// the key, so a retry addresses the same access key (ids are not secret). Its
/// secret cannot be shown again: the retry is refused (409) and says so.
fn id_for_retries(project: &domain::ids::ProjectId, key: &str) -> AccessKeyId {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b65_796c_6564_6765_7200_0000_0000_00a2);
    let derived = uuid::Uuid::new_v5(&NAMESPACE, format!("{project}/{key}").as_bytes());
    let mut bytes = [0u8; GENERATED_RANDOM_BYTES];
    bytes.copy_from_slice(&derived.as_bytes()[..GENERATED_RANDOM_BYTES]);
    AccessKeyId::generated(bytes)
}

/// A generated secret access key: base64 of random bytes.
fn generated_secret() -> PayloadField {
    let mut random = Zeroizing::new([0u8; GENERATED_SECRET_BYTES]);
    infra::keyfile::random_bytes(&mut *random);
    PayloadField::from(B64.encode(*random))
}

/// `POST /v1/access-keys`: 201 with the key (and its secret, when generated here).
#[utoipa::path(
    post,
    path = "/v1/access-keys",
    tag = "access-keys",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retrying the create safe: the same key, the same access key (1 to 64 letters, digits, `-` or `_`; sent once: twice is 400)", pattern = "^[A-Za-z0-9_-]{1,64}$"),
    ),
    request_body(content = CreateAccessKeyBody, content_type = "application/json"),
    responses((status = 201, description = "Created; a secret access key generated here is in this answer only", body = AccessKeyCreated,
        headers(("Cache-Control" = String, description = "`no-store`: the answer may hold the secret access key")))),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    // A secret put in the wrong field must not come back in a parse error.
    let body: CreateAccessKeyBody = crate::body::json(&headers, &body, "an access key")
        .map_err(ApiError::without_string_values)?;
    let command_id = crate::secrets::idempotency_key(&headers)?;
    let who = &caller.principal;
    if let Some(project) = body.project.as_deref()
        && project != who.project.as_str()
    {
        return Err(ApiError::bad_request(format!(
            "project {project:?} is not your token's project {}: a key acts in the project of \
             the token that makes it; use a token for {project:?}",
            who.project
        )));
    }
    let (id, secret, generated) = match (body.access_key_id, body.secret_access_key) {
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "secret_access_key is given without access_key_id: to import a key pair, give \
                 both access_key_id and secret_access_key; to have keyledger generate the \
                 secret, leave secret_access_key out",
            ));
        }
        (None, None) => {
            let id = match &command_id {
                Some(key) => id_for_retries(&who.project, key),
                None => generated_id(),
            };
            (id, generated_secret(), true)
        }
        (Some(id), secret) => {
            let id = AccessKeyId::parse(&id)
                .map_err(|r| ApiError::bad_request(format!("access_key_id: {}", r.message)))?;
            match secret {
                Some(secret) => {
                    check_secret(secret.expose().as_bytes()).map_err(|r| {
                        ApiError::bad_request(format!("secret_access_key: {}", r.message))
                    })?;
                    (id, secret, false)
                }
                None => (id, generated_secret(), true),
            }
        }
    };
    let user = match body.user {
        Some(user) => UserId::parse(&user)
            .map_err(|r| {
                ApiError::bad_request(format!(
                    "user: {}; leave it out for a key of your own",
                    r.message
                ))
            })?
            .to_string(),
        None => who.user.to_string(),
    };
    // A key for someone else names its roles: the caller's own (an admin's) are never
    // handed on by default.
    let own = user == who.user.as_str();
    let roles = match body.roles {
        Some(roles) => roles
            .iter()
            .map(|r| Role::parse(r).map(String::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|r| {
                ApiError::bad_request(format!(
                    "roles: {}; leave roles out for your token's roles",
                    r.message
                ))
            })?,
        None if own => who.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        None => {
            return Err(ApiError::bad_request(format!(
                "roles: a key for another user ({user}) names its roles, e.g. \
                 \"roles\": [\"member\"]; your own are not given to it"
            )));
        }
    };
    let service = match body.service {
        Some(service) => Some(
            ServiceName::parse(&service)
                .map_err(|r| {
                    ApiError::bad_request(format!(
                        "service: {}; leave it out for your token's service",
                        r.message
                    ))
                })?
                .to_string(),
        ),
        None if own => who.service.as_ref().map(ToString::to_string),
        None => None,
    };
    if !generated {
        refuse_id_of_another_project(&state, &who.project, &id).await?;
    }
    let request = CreateAccessKeyRequest {
        command_id,
        project: None,
        access_key_id: id.to_string(),
        secret_access_key: secret,
        user,
        roles,
        service,
    };
    let accepted = write(&state, command::ACCESS_KEY_CREATE, &caller, &request).await?;
    let body = AccessKeyCreated {
        access_key_id: request.access_key_id,
        secret_access_key: generated.then_some(request.secret_access_key),
        user: request.user,
        project: who.project.to_string(),
        roles: request.roles,
        service: request.service,
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(with_seq(response, accepted.seq))
}

/// The query of `GET /v1/access-keys`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `true`: every access key of the project (role admin); otherwise only yours.
    #[serde(default, deserialize_with = "crate::query::flag")]
    #[param(value_type = Option<bool>)]
    all: Option<bool>,
}

/// `GET /v1/access-keys`: the caller's keys; with `all=true`, the project's (admins).
#[utoipa::path(
    get,
    path = "/v1/access-keys",
    tag = "access-keys",
    params(ListQuery, MinSeq),
    responses((status = 200, description = "The access keys, oldest first; never a secret", body = AccessKeyList)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; list with all=true (every key of the project, for admins) or nothing (your \
             own keys)",
            e.body_text()
        ))
    })?;
    let who = &caller.principal;
    let all = query.all.unwrap_or(false);
    if all && !who.is_admin() {
        let roles: Vec<&str> = who.roles.iter().map(Role::as_str).collect();
        let have = if roles.is_empty() {
            "you have no roles".to_owned()
        } else {
            format!("you have {}", roles.join(", "))
        };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "listing every access key of project {} (all=true) requires role admin; {have}. \
                 Leave out all=true to list your own keys",
                who.project
            ),
        ));
    }
    let _listing = state.costly.listings.start(&caller).await?;
    let found = state
        .read
        .list_access_keys(&who.project, (!all).then_some(&who.user))
        .await?;
    let access_keys: Vec<AccessKey> = found.value.iter().map(AccessKey::of).collect();
    let body = AccessKeyList {
        total: access_keys.len() as u64,
        access_keys,
    };
    Ok(with_seq(Json(body).into_response(), found.seq))
}

/// `DELETE /v1/access-keys/{id}`: 204; the key stops signing and its sealed secret's
/// data key is destroyed.
#[utoipa::path(
    delete,
    path = "/v1/access-keys/{id}",
    tag = "access-keys",
    params(AccessKeyPath),
    responses((status = 204, description = "Revoked; its secret is destroyed")),
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = access_key_id(&id)?;
    let request = RevokeAccessKeyRequest {
        command_id: None,
        project: None,
        access_key_id: id.to_string(),
    };
    let accepted = write(&state, command::ACCESS_KEY_REVOKE, &caller, &request).await?;
    Ok(no_content(accepted.seq))
}
