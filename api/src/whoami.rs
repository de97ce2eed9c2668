//! `GET /v1/whoami`: the caller as keyledger sees it, to compare with a secret's ACL
//! or with the roles a denial names.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::state::AppState;

/// The caller, as keyledger sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Whoami {
    /// The user.
    pub user_id: String,
    /// The project.
    pub project_id: String,
    /// The roles, as the token names them.
    pub roles: Vec<String>,
    /// The roles the policy knows, as it reads them.
    pub effective_roles: Vec<String>,
    /// The service the token is for, if any.
    pub service: Option<String>,
    /// The address ACL conditions see.
    pub source: Option<String>,
    /// The inbox prefix the caller's NATS connections must use.
    pub nats_inbox_prefix: String,
}

/// The verified principal: user, project, the token's roles and what the policy makes
/// of them, the service if any, the address ACL conditions see, and the inbox prefix
/// its NATS connections must use.
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "identity",
    responses((status = 200, description = "The caller", body = Whoami)),
)]
pub async fn get(State(_): State<AppState>, caller: Caller) -> Json<Whoami> {
    let p = &caller.principal;
    Json(Whoami {
        user_id: p.user.as_str().to_owned(),
        project_id: p.project.as_str().to_owned(),
        roles: p.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        effective_roles: domain::roles::effective(&p.roles)
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
        service: p.service.as_ref().map(|s| s.as_str().to_owned()),
        source: caller.source.map(|s| s.to_string()),
        nats_inbox_prefix: infra::nats_auth::inbox_prefix(&p.project, &p.user),
    })
}
