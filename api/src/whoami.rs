//! `GET /v1/whoami`: the caller as keyledger sees it, to compare with a secret's ACL
//! or with the roles a denial names.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::state::AppState;

/// The verified principal: user, project, the token's roles and what the policy makes
/// of them, the service if any, the address ACL conditions see, and the inbox prefix
/// its NATS connections must use.
pub async fn get(State(_): State<AppState>, caller: Caller) -> Json<Value> {
    let p = &caller.principal;
    Json(json!({
        "user_id": p.user.as_str(),
        "project_id": p.project.as_str(),
        "roles": p.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "effective_roles": domain::roles::effective(&p.roles)
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>(),
        "service": p.service.as_ref().map(|s| s.as_str()),
        "source": caller.source.map(|s| s.to_string()),
        "nats_inbox_prefix": commands::nats_auth::inbox_prefix(&p.project, &p.user),
    }))
}
