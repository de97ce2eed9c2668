//! `/v1/secrets/{id}/acl`, as Barbican defines it: `GET` shows the ACL, `PUT`
//! replaces it, `PATCH` changes only the fields given, `DELETE` resets it to the
//! default. Changes are sent as the `secret.acl.set` and `secret.acl.delete` commands,
//! so they are events in the log like every other change.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::protocol::{AclOperationRequest, DeleteAclRequest, SetAclRequest};
use domain::policy::Action;
use domain::secret::acl::Acl;
use domain::subject::command;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::resolve;
use crate::access::{owner_project, readable};
use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, with_seq, write};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{base_url, secret_ref};

/// Barbican's ACL body: one member per operation, and `read` is the only one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AclBody {
    #[serde(default)]
    read: AclOperationRequest,
}

/// The ACL as Barbican shows it; the default is `{"read": {"project-access": true}}`.
fn view(acl: &Acl) -> Value {
    if acl == &Acl::default() {
        return json!({ "read": { "project-access": true } });
    }
    let mut read = json!({
        "project-access": acl.project_access,
        "users": acl.users.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
    });
    if !acl.conditions.is_empty() {
        read["conditions"] = json!(acl.conditions);
    }
    json!({ "read": read })
}

/// `GET /v1/secrets/{id}/acl`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = resolve(&state, &caller, &id).await?;
    let lookup = state.read.get_secret(id, (state.clock)()).await?;
    let row = readable(&state, &caller, Action::ReadAcl, id, lookup.value, |r| r)?;
    Ok(with_seq(Json(view(&row.acl)).into_response(), lookup.seq))
}

/// `PUT /v1/secrets/{id}/acl` replaces the ACL (fields left out take their default);
/// `PATCH` changes only the fields given.
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let mode = if method == Method::PATCH {
        "merge"
    } else {
        "replace"
    };
    let id = resolve(&state, &caller, &id).await?;
    let body: AclBody = crate::body::json(&headers, &body, "an ACL")?;
    let request = SetAclRequest {
        command_id: None,
        project: owner_project(&state, id).await?,
        id: id.to_string(),
        mode: Some(mode.to_owned()),
        read: body.read,
    };
    let accepted = write(&state, command::SECRET_ACL_SET, &caller.token, &request).await?;
    let acl_ref = format!(
        "{}/acl",
        secret_ref(&base_url(&state, &headers), &id.to_string())
    );
    Ok(with_seq(
        Json(json!({ "acl_ref": acl_ref })).into_response(),
        accepted.seq,
    ))
}

/// `DELETE /v1/secrets/{id}/acl`: back to the default ACL.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = resolve(&state, &caller, &id).await?;
    let request = DeleteAclRequest {
        command_id: None,
        project: owner_project(&state, id).await?,
        id: id.to_string(),
    };
    let accepted = write(&state, command::SECRET_ACL_DELETE, &caller.token, &request).await?;
    Ok(with_seq(StatusCode::OK.into_response(), accepted.seq))
}
