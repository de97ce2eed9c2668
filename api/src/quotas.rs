//! Quotas, as Barbican serves them: `GET /v1/quotas` (the caller's project's effective
//! limits, for anyone with a token) and `/v1/project-quotas[/{project}]` (the limits set
//! per project: list, read, set, remove), for the service admin only
//! (`key-manager:service-admin`, Barbican's policy). Limits are `-1` (unlimited, the
//! default), `0` (none) or the most a project may hold.
//!
//! Writes are the commands `quota.set` and `quota.delete`; the command service checks
//! the role again and enforces the limits where creates are decided
//! (`commands/src/quota.rs`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::ids::ProjectId;
use domain::quota::{Limits, Resource, SERVICE_ADMIN, effective, is_service_admin};
use domain::subject::command;
use infra::protocol::{DeleteQuotaRequest, QuotaValues, SetQuotaRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, no_content, with_seq, write};
use crate::error::ApiError;
use crate::openapi::{MinSeq, ProjectPath};
use crate::paging::{PageQuery, Paging};
use crate::state::AppState;
use crate::views::Links;

/// `GET /v1/quotas`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EffectiveQuotas {
    /// Every limit of the caller's project (`-1`: unlimited).
    pub quotas: QuotaValues,
}

/// `GET /v1/project-quotas/{project}`, and the body of its `PUT`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectQuotas {
    /// The limits set for the project; one not given is unlimited.
    pub project_quotas: QuotaValues,
}

/// One project's limits in a listing.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectQuotasEntry {
    /// The project.
    pub project_id: String,
    /// The limits set for it.
    pub project_quotas: QuotaValues,
}

/// `GET /v1/project-quotas`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectQuotasList {
    /// The projects with limits set, by project id.
    pub project_quotas: Vec<ProjectQuotasEntry>,
    /// How many projects have limits set.
    pub total: u64,
    /// Links to the next and previous pages.
    #[serde(flatten)]
    pub links: Links,
}

/// The document of `limits`: each resource's, or only those set.
fn values(limits: &Limits, all: bool) -> QuotaValues {
    let get = |resource| {
        let limit = effective(limits, resource).get();
        (all || limits.contains_key(&resource)).then_some(limit)
    };
    QuotaValues {
        secrets: get(Resource::Secrets),
        orders: get(Resource::Orders),
        containers: get(Resource::Containers),
        consumers: get(Resource::Consumers),
        cas: get(Resource::Cas),
    }
}

/// Refuses a caller without the service admin's role.
fn service_admin(caller: &Caller) -> Result<(), ApiError> {
    if is_service_admin(&caller.principal) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "project quotas are read and changed by the role {SERVICE_ADMIN} only; your token \
             does not have it. Your own project's limits are at GET /v1/quotas"
        ),
    ))
}

/// The `{project}` of a path.
fn project(raw: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(raw).map_err(|r| ApiError::bad_request(format!("{{project}}: {}", r.message)))
}

/// `GET /v1/quotas`: the effective limits of the caller's project.
#[utoipa::path(
    get,
    path = "/v1/quotas",
    tag = "quotas",
    params(MinSeq),
    responses((status = 200, description = "Every limit of your project (-1: unlimited)", body = EffectiveQuotas)),
)]
pub async fn effective_quotas(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
) -> Result<Response, ApiError> {
    let found = state.read.project_quotas(&caller.principal.project).await?;
    let limits = found.value.unwrap_or_default();
    let body = EffectiveQuotas {
        quotas: values(&limits, true),
    };
    Ok(with_seq(Json(body).into_response(), found.seq))
}

/// `GET /v1/project-quotas`: one page of the projects with limits set.
#[utoipa::path(
    get,
    path = "/v1/project-quotas",
    tag = "quotas",
    params(PageQuery, MinSeq),
    responses((status = 200, description = "The projects with limits set, by project id", body = ProjectQuotasList)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    headers: HeaderMap,
    paging: Paging,
) -> Result<Response, ApiError> {
    service_admin(&caller)?;
    let page = state.read.all_project_quotas(paging.bounds()).await?;
    let project_quotas: Vec<ProjectQuotasEntry> = page
        .value
        .projects
        .iter()
        .map(|(project, limits)| ProjectQuotasEntry {
            project_id: project.to_string(),
            project_quotas: values(limits, false),
        })
        .collect();
    let base = crate::views::base_url(&state, &headers);
    let links = paging.links(
        &format!("{base}/v1/project-quotas"),
        project_quotas.len(),
        page.value.total,
        &[],
    );
    let body = ProjectQuotasList {
        project_quotas,
        total: page.value.total,
        links,
    };
    Ok(with_seq(Json(body).into_response(), page.seq))
}

/// `GET /v1/project-quotas/{project}`: the limits set for a project.
#[utoipa::path(
    get,
    path = "/v1/project-quotas/{project}",
    tag = "quotas",
    params(ProjectPath, MinSeq),
    responses((status = 200, description = "The limits set for the project", body = ProjectQuotas)),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    service_admin(&caller)?;
    let project = project(&raw)?;
    let found = state.read.project_quotas(&project).await?;
    let Some(limits) = found.value else {
        return Err(not_set(&project));
    };
    let body = ProjectQuotas {
        project_quotas: values(&limits, false),
    };
    Ok(with_seq(Json(body).into_response(), found.seq))
}

fn not_set(project: &ProjectId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "project {project} has no quotas set: every limit is -1 (unlimited). Set some with \
             PUT /v1/project-quotas/{project}"
        ),
    )
}

/// `PUT /v1/project-quotas/{project}`: sets a project's limits (replacing those set
/// before; a resource not given is unlimited). 204.
#[utoipa::path(
    put,
    path = "/v1/project-quotas/{project}",
    tag = "quotas",
    params(ProjectPath),
    request_body(content = ProjectQuotas, content_type = "application/json"),
    responses((status = 204, description = "Set")),
)]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    service_admin(&caller)?;
    let project = project(&raw)?;
    let body: ProjectQuotas = crate::body::json(&headers, &body, "project quotas")?;
    // Checked here too, so a bad value is a 400 naming it before anything is sent.
    body.project_quotas
        .limits()
        .map_err(|r| ApiError::bad_request(r.message))?;
    let request = SetQuotaRequest {
        command_id: crate::secrets::idempotency_key(&headers)?,
        project: project.to_string(),
        quotas: body.project_quotas,
    };
    let accepted = write(&state, command::QUOTA_SET, &caller, &request).await?;
    Ok(no_content(accepted.seq))
}

/// `DELETE /v1/project-quotas/{project}`: removes a project's limits (every one is
/// unlimited again). 204; 404 when none were set.
#[utoipa::path(
    delete,
    path = "/v1/project-quotas/{project}",
    tag = "quotas",
    params(ProjectPath),
    responses((status = 204, description = "Removed")),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    service_admin(&caller)?;
    let project = project(&raw)?;
    if state.read.project_quotas(&project).await?.value.is_none() {
        return Err(not_set(&project));
    }
    let request = DeleteQuotaRequest {
        command_id: crate::secrets::idempotency_key(&headers)?,
        project: project.to_string(),
    };
    let accepted = write(&state, command::QUOTA_DELETE, &caller, &request).await?;
    Ok(no_content(accepted.seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::quota::Limit;

    #[test]
    fn effective_quotas_name_every_resource_and_a_projects_only_those_set() {
        let limits: Limits = [(
            Resource::Secrets,
            Limit::parse(3, Resource::Secrets).unwrap(),
        )]
        .into_iter()
        .collect();
        let all = serde_json::to_value(values(&limits, true)).unwrap();
        assert_eq!(
            all,
            serde_json::json!({"secrets": 3, "orders": -1, "containers": -1, "consumers": -1, "cas": -1})
        );
        let set = serde_json::to_value(values(&limits, false)).unwrap();
        assert_eq!(set, serde_json::json!({"secrets": 3}));
    }
}
