//! `/v1/secrets/{id}/acl` and `/v1/containers/{id}/acl`, as Barbican defines them: `GET` shows the ACL, `PUT`
//! replaces it (keeping keyledger's `conditions` unless it states them), `PATCH`
//! changes only the fields given, `DELETE` resets it to the default. Changes are sent as the `secret.acl.set` and `secret.acl.delete` commands,
//! so they are events in the log like every other change.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::ids::{ContainerId, SecretId};
use domain::policy::Action;
use domain::subject::command;
use infra::protocol::{AclOperationRequest, DeleteAclRequest, SetAclRequest};
use serde::{Deserialize, Serialize};

use crate::access::{owner_project, readable, resolve};
use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, with_seq, write};
use crate::error::ApiError;
use crate::openapi::{ContainerPath, MinSeq, SecretPath};
use crate::state::AppState;
use crate::views::acl::{AclRef, AclView};
use crate::views::container::container_ref;
use crate::views::{base_url, secret_ref};

/// Barbican's ACL body: one member per operation, and `read` is the only one.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AclBody {
    /// Who may read it.
    #[serde(default, deserialize_with = "infra::objects::object")]
    pub read: AclOperationRequest,
}

/// What an ACL belongs to.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Secret(SecretId),
    Container(ContainerId),
}

impl Owner {
    async fn of_secret(state: &AppState, caller: &Caller, raw: &str) -> Result<Self, ApiError> {
        Ok(Self::Secret(resolve(state, caller, raw).await?))
    }

    fn of_container(raw: &str) -> Result<Self, ApiError> {
        ContainerId::parse(raw).map(Self::Container).map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no container has the id {raw:?}: container ids are UUIDs"),
            )
        })
    }

    /// The ACL as shown, if `caller` may read it, and the sequence it reflects.
    async fn acl(&self, state: &AppState, caller: &Caller) -> Result<(AclView, u64), ApiError> {
        match *self {
            Self::Secret(id) => {
                let lookup = state.read.get_secret(id, (state.clock)()).await?;
                let row = readable(state, caller, Action::ReadAcl, id, lookup.value, |r| r)?;
                Ok((AclView::of(&row.acl, row.acl_set.as_ref()), lookup.seq))
            }
            Self::Container(id) => {
                let (row, seq) =
                    crate::containers::readable(state, caller, Action::ReadAcl, id).await?;
                Ok((AclView::of(&row.acl, row.acl_set.as_ref()), seq))
            }
        }
    }

    /// The owning project, for the command to address.
    async fn project(&self, state: &AppState) -> Result<Option<String>, ApiError> {
        match *self {
            Self::Secret(id) => Ok(owner_project(state, id).await?.map(String::from)),
            Self::Container(id) => crate::containers::container_project(state, id).await,
        }
    }

    fn id(&self) -> String {
        match self {
            Self::Secret(id) => id.to_string(),
            Self::Container(id) => id.to_string(),
        }
    }

    /// The `*.acl.set` and `*.acl.delete` commands.
    fn commands(&self) -> (&'static str, &'static str) {
        match self {
            Self::Secret(_) => (command::SECRET_ACL_SET, command::SECRET_ACL_DELETE),
            Self::Container(_) => (command::CONTAINER_ACL_SET, command::CONTAINER_ACL_DELETE),
        }
    }

    fn acl_ref(&self, base: &str) -> String {
        match self {
            Self::Secret(id) => format!("{}/acl", secret_ref(base, id)),
            Self::Container(id) => format!("{}/acl", container_ref(base, id)),
        }
    }
}

async fn show(state: &AppState, caller: &Caller, owner: Owner) -> Result<Response, ApiError> {
    let (acl, seq) = owner.acl(state, caller).await?;
    Ok(with_seq(Json(acl).into_response(), seq))
}

/// `PUT` replaces the ACL (fields left out take their default, but `conditions`, which
/// Barbican's clients never send, stay unless stated); `PATCH` changes only the fields
/// given.
async fn change(
    state: &AppState,
    caller: &Caller,
    owner: Owner,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let mode = if method == Method::PATCH {
        "merge"
    } else {
        "replace"
    };
    let body: AclBody = crate::body::json(headers, body, "an ACL")?;
    let request = SetAclRequest {
        command_id: None,
        project: owner.project(state).await?,
        id: owner.id(),
        mode: Some(mode.to_owned()),
        read: body.read,
    };
    let accepted = write(state, owner.commands().0, caller, &request).await?;
    let acl_ref = owner.acl_ref(&base_url(state, headers));
    Ok(with_seq(
        Json(AclRef { acl_ref }).into_response(),
        accepted.seq,
    ))
}

/// `DELETE`: back to the default ACL.
async fn reset(state: &AppState, caller: &Caller, owner: Owner) -> Result<Response, ApiError> {
    let request = DeleteAclRequest {
        command_id: None,
        project: owner.project(state).await?,
        id: owner.id(),
    };
    let accepted = write(state, owner.commands().1, caller, &request).await?;
    // Barbican answers 200 with a JSON body of `null`; its clients parse a body.
    Ok(with_seq(
        Json(serde_json::Value::Null).into_response(),
        accepted.seq,
    ))
}

/// `GET /v1/secrets/{id}/acl`.
#[utoipa::path(
    get,
    path = "/v1/secrets/{id}/acl",
    tag = "acls",
    params(SecretPath, MinSeq),
    responses((status = 200, description = "The secret's ACL", body = AclView)),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = Owner::of_secret(&state, &caller, &id).await?;
    show(&state, &caller, owner).await
}

/// `PUT`, `PATCH /v1/secrets/{id}/acl`.
#[utoipa::path(
    method(put, patch),
    path = "/v1/secrets/{id}/acl",
    tag = "acls",
    params(SecretPath),
    request_body(content = AclBody, content_type = "application/json",
        description = "PUT replaces the ACL (fields left out take their defaults, except conditions, which stay unless stated); PATCH changes only the fields given"),
    responses((status = 200, description = "Set", body = AclRef)),
)]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let owner = Owner::of_secret(&state, &caller, &id).await?;
    change(&state, &caller, owner, &method, &headers, &body).await
}

/// `DELETE /v1/secrets/{id}/acl`.
#[utoipa::path(
    delete,
    path = "/v1/secrets/{id}/acl",
    tag = "acls",
    params(SecretPath),
    responses((status = 200, description = "Reset to the default; the body is `null`, as Barbican answers", body = Option<Object>)),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = Owner::of_secret(&state, &caller, &id).await?;
    reset(&state, &caller, owner).await
}

/// `GET /v1/containers/{id}/acl`.
#[utoipa::path(
    get,
    path = "/v1/containers/{id}/acl",
    tag = "acls",
    params(ContainerPath, MinSeq),
    responses((status = 200, description = "The container's ACL", body = AclView)),
)]
pub async fn container_get(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    show(&state, &caller, Owner::of_container(&id)?).await
}

/// `PUT`, `PATCH /v1/containers/{id}/acl`.
#[utoipa::path(
    method(put, patch),
    path = "/v1/containers/{id}/acl",
    tag = "acls",
    params(ContainerPath),
    request_body(content = AclBody, content_type = "application/json",
        description = "PUT replaces the ACL (fields left out take their defaults, except conditions, which stay unless stated); PATCH changes only the fields given"),
    responses((status = 200, description = "Set", body = AclRef)),
)]
pub async fn container_set(
    State(state): State<AppState>,
    caller: Caller,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let owner = Owner::of_container(&id)?;
    change(&state, &caller, owner, &method, &headers, &body).await
}

/// `DELETE /v1/containers/{id}/acl`.
#[utoipa::path(
    delete,
    path = "/v1/containers/{id}/acl",
    tag = "acls",
    params(ContainerPath),
    responses((status = 200, description = "Reset to the default; the body is `null`, as Barbican answers", body = Option<Object>)),
)]
pub async fn container_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    reset(&state, &caller, Owner::of_container(&id)?).await
}
