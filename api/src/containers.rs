//! `/v1/containers`, in Barbican's shapes: create, list, show, delete; the references
//! of generic containers; consumers. A container whose referenced secret expired,
//! was deleted or is scheduled for deletion says so in `status` and `problems`, with
//! its consumers, so the user knows what to renew and whom to tell.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::ids::ContainerId;
use domain::policy::{Action, Target, authorize};
use domain::subject::command;
use infra::protocol::{
    ConsumerRequest, ContainerSecretRequest, CreateContainerRequest, DeleteContainerRequest,
    SecretRefRequest,
};
use projections::read::ContainerRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::{self, check_container, owner_project, resolve};
use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, no_content, with_seq, write};
use crate::error::ApiError;
use crate::openapi::{ContainerPath, MinSeq};
use crate::paging::{PageQuery, Paging};
use crate::state::AppState;
use crate::tls_check::{Finding, Parts, check};
use crate::views::base_url;
use crate::views::container::{
    ConsumerRef, Container, ContainerConsumer, ContainerConsumerList, ContainerList,
    ContainerRefBody, container_ref, problems,
};
use crate::views::secret_ref;
use secrecy::{ExposeSecret, SecretSlice};

/// Parses the `{id}` of a containers path.
fn container_id(raw: &str) -> Result<ContainerId, ApiError> {
    ContainerId::parse(raw).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no container has the id {raw:?}: container ids are UUIDs, as in the container_ref"
            ),
        )
    })
}

/// The container with `id`, if `caller` may do `action` on it.
pub async fn readable(
    state: &AppState,
    caller: &Caller,
    action: Action,
    id: ContainerId,
) -> Result<(ContainerRow, u64), ApiError> {
    let found = state.read.get_container(id, (state.clock)()).await?;
    let Some(row) = found.value else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "container {id} not found in project {}",
                caller.principal.project
            ),
        ));
    };
    check_container(state, caller, action, &row)?;
    Ok((row, found.seq))
}

/// The project owning container `id`, for a write to address.
pub async fn container_project(
    state: &AppState,
    id: ContainerId,
) -> Result<Option<String>, ApiError> {
    let found = state.read.get_container(id, (state.clock)()).await?;
    Ok(found.value.map(|row| row.project.into()))
}

/// A reference to a secret, in a container's body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSecretRef {
    /// Its name in the container; optional, as in Barbican: a generic container's
    /// references need no names. Typed containers need theirs (`certificate`,
    /// `private_key`, `public_key`, …).
    #[serde(default)]
    #[schema(max_length = 255, pattern = "keyledger:printable")]
    name: Option<String>,
    /// The secret: its URL (`secret_ref`), id, reference or name.
    #[schema(min_length = 1)]
    secret_ref: String,
}

/// A container to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContainerBody {
    /// Its name.
    #[serde(default)]
    #[schema(max_length = 255, pattern = "keyledger:visible")]
    name: Option<String>,
    /// generic, rsa or certificate.
    #[serde(rename = "type")]
    #[schema(pattern = "^(generic|rsa|certificate)$")]
    container_type: String,
    /// Its references (at most 50).
    #[serde(default, deserialize_with = "infra::objects::objects")]
    #[schema(max_items = 50)]
    secret_refs: Vec<ContainerSecretRef>,
}

/// A reference as the command takes it: the secret's id and its project, from the
/// read model. The command then checks, on the log, that it exists and the caller
/// may read it.
async fn reference(
    state: &AppState,
    caller: &Caller,
    r: &ContainerSecretRef,
) -> Result<SecretRefRequest, ApiError> {
    let named = crate::views::last_segment(&r.secret_ref);
    if named.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "secret_ref {:?} names no secret; give the secret's URL (its secret_ref), id, \
             reference or name",
            r.secret_ref
        )));
    }
    let id = resolve(state, caller, named).await?;
    Ok(SecretRefRequest {
        name: r.name.clone().unwrap_or_default(),
        secret_ref: id.to_string(),
        project: owner_project(state, id).await?.map(String::from),
    })
}

/// `POST /v1/containers`: 201 with `container_ref`.
#[utoipa::path(
    post,
    path = "/v1/containers",
    tag = "containers",
    request_body(content = CreateContainerBody, content_type = "application/json"),
    responses((status = 201, description = "Created; `Location` is its URL", body = ContainerRefBody,
        headers(("Location" = String, description = "The container's URL")))),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body: CreateContainerBody = crate::body::json(&headers, &body, "a container")?;
    let mut secret_refs = Vec::new();
    for r in &body.secret_refs {
        secret_refs.push(reference(&state, &caller, r).await?);
    }
    let request = CreateContainerRequest {
        command_id: None,
        project: None,
        name: body.name,
        container_type: body.container_type,
        secret_refs,
    };
    let accepted = write(&state, command::CONTAINER_CREATE, &caller, &request).await?;
    let url = container_ref(&base_url(&state, &headers), &accepted.id);
    Ok(with_seq(created(url), accepted.seq))
}

/// 201 with `{"container_ref"}` and `Location`.
fn created(url: String) -> Response {
    let location = HeaderValue::from_str(&url).ok();
    let mut response = (
        StatusCode::CREATED,
        Json(ContainerRefBody { container_ref: url }),
    )
        .into_response();
    if let Some(location) = location {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// The query of `GET /v1/containers`: Barbican's filters and paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 100 (0 reads as 1, larger as 100; default 10).
    #[serde(default)]
    #[param(minimum = 0, maximum = 4294967295_u64)]
    limit: Option<u32>,
    /// Rows to skip.
    #[serde(default)]
    #[param(minimum = 0, maximum = 4294967295_u64)]
    offset: Option<u32>,
    /// Only containers with this name.
    #[serde(default)]
    name: Option<String>,
    /// Only containers of this type.
    #[serde(default, rename = "type")]
    #[param(rename = "type")]
    container_type: Option<String>,
}

/// `GET /v1/containers`.
#[utoipa::path(
    get,
    path = "/v1/containers",
    tag = "containers",
    params(ListQuery, MinSeq),
    responses((status = 200, description = "A page of the containers the caller may see", body = ContainerList)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; filter with name and type, page with limit (1 to 100) and offset",
            e.body_text()
        ))
    })?;
    let paging = Paging::new(query.limit, query.offset);
    let who = &caller.principal;
    authorize(
        who,
        Action::ListContainers,
        Target::Project {
            project: &who.project,
            secret: None,
        },
        access::env(&state, &caller),
    )?;
    let _listing = state.costly.listings.start(&caller).await?;
    let page = state
        .read
        .list_containers(&who.project, paging.bounds(), (state.clock)(), |row| {
            query
                .name
                .as_ref()
                .is_none_or(|n| row.name.as_ref() == Some(n))
                && query
                    .container_type
                    .as_ref()
                    .is_none_or(|t| &row.container_type == t)
                && check_container(&state, &caller, Action::ReadSecret, row).is_ok()
        })
        .await?;
    let base = base_url(&state, &headers);
    let containers: Vec<Container> = page
        .value
        .containers
        .iter()
        .map(|c| Container::of(&base, c))
        .collect();
    let mut params = Vec::new();
    if let Some(name) = &query.name {
        params.push(("name", name.as_str()));
    }
    if let Some(kind) = &query.container_type {
        params.push(("type", kind.as_str()));
    }
    let links = paging.links(
        &format!("{base}/v1/containers"),
        containers.len(),
        page.value.total,
        &params,
    );
    let body = ContainerList {
        containers,
        total: page.value.total,
        links,
    };
    Ok(with_seq(Json(body).into_response(), page.seq))
}

/// `GET /v1/containers/{id}`.
#[utoipa::path(
    get,
    path = "/v1/containers/{id}",
    tag = "containers",
    params(ContainerPath, MinSeq),
    responses((status = 200, description = "The container", body = Container)),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = container_id(&id)?;
    let (row, seq) = readable(&state, &caller, Action::ReadSecret, id).await?;
    Ok(with_seq(
        Json(Container::of(&base_url(&state, &headers), &row)).into_response(),
        seq,
    ))
}

/// The query of `DELETE /v1/containers/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Accepted for symmetry with secrets; a container's consumers never stop its
    /// deletion over HTTP, as in Barbican.
    #[serde(default, deserialize_with = "crate::query::flag")]
    #[param(value_type = Option<bool>)]
    force: Option<bool>,
}

/// `DELETE /v1/containers/{id}`: 204. As in Barbican, registered consumers go with it
/// (the NATS command `container.delete` refuses unless forced).
#[utoipa::path(
    delete,
    path = "/v1/containers/{id}",
    tag = "containers",
    params(ContainerPath, DeleteQuery),
    responses((status = 204, description = "Deleted")),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; DELETE takes force=true or nothing",
            e.body_text()
        ))
    })?;
    let id = container_id(&id)?;
    let request = DeleteContainerRequest {
        command_id: None,
        project: container_project(&state, id).await?,
        id: id.to_string(),
        force: Some(query.force.unwrap_or(true)),
    };
    let accepted = write(&state, command::CONTAINER_DELETE, &caller, &request).await?;
    Ok(no_content(accepted.seq))
}

/// `POST` (add, 201 with `container_ref` and `Location`) and `DELETE` (remove, 204)
/// `/v1/containers/{id}/secrets`, body `{"name" (optional), "secret_ref"}`: generic
/// containers only.
#[utoipa::path(
    method(post, delete),
    path = "/v1/containers/{id}/secrets",
    tag = "containers",
    params(ContainerPath),
    request_body(content = ContainerSecretRef, content_type = "application/json"),
    responses(
        (status = 201, description = "Added (POST); `Location` is the container's URL", body = ContainerRefBody,
            headers(("Location" = String, description = "The container's URL"))),
        (status = 204, description = "Removed (DELETE)"),
    ),
)]
pub async fn change_secret(
    State(state): State<AppState>,
    caller: Caller,
    method: axum::http::Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body: ContainerSecretRef = crate::body::json(&headers, &body, "a secret reference")?;
    let id = container_id(&id)?;
    let r = reference(&state, &caller, &body).await?;
    let request = ContainerSecretRequest {
        command_id: None,
        project: container_project(&state, id).await?,
        id: id.to_string(),
        name: r.name,
        secret_ref: r.secret_ref,
        secret_project: r.project,
    };
    let (name, status) = if method == axum::http::Method::DELETE {
        (command::CONTAINER_SECRET_REMOVE, StatusCode::NO_CONTENT)
    } else {
        (command::CONTAINER_SECRET_ADD, StatusCode::CREATED)
    };
    let accepted = write(&state, name, &caller, &request).await?;
    let url = container_ref(&base_url(&state, &headers), &accepted.id);
    let response = if status == StatusCode::CREATED {
        created(url)
    } else {
        status.into_response()
    };
    Ok(with_seq(response, accepted.seq))
}

/// A consumer of a container.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerConsumerBody {
    /// Its name.
    #[schema(min_length = 1, max_length = 255, pattern = "keyledger:printable")]
    name: String,
    /// Where it uses the container.
    #[serde(rename = "URL", alias = "url")]
    #[schema(min_length = 1, max_length = 2048, pattern = "keyledger:printable")]
    url: String,
    /// `"tls"`: register only if the container passes the TLS check.
    #[serde(default)]
    #[schema(pattern = "^tls$")]
    validate: Option<String>,
}

/// The TLS check of a certificate container: findings, each with its fix.
async fn tls_findings(
    state: &AppState,
    caller: &Caller,
    row: &ContainerRow,
    base: &str,
) -> Result<Vec<Finding>, ApiError> {
    // The request is well formed; the container's type is what does not fit (409).
    if row.container_type != "certificate" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "container {} is a {} container; the TLS check applies to certificate \
                 containers",
                row.id, row.container_type
            ),
        ));
    }
    let unusable: Vec<Finding> = problems(row, base)
        .into_iter()
        .map(|message| Finding {
            code: "secret_unusable".to_owned(),
            message,
            fix: "store a renewed secret and create a new container".into(),
        })
        .collect();
    if !unusable.is_empty() {
        return Ok(unusable);
    }
    let mut parts: std::collections::BTreeMap<&str, SecretSlice<u8>> = Default::default();
    for r in &row.refs {
        let name = match r.name.as_str() {
            "certificate" => "certificate",
            "private_key" => "private_key",
            "intermediates" => "intermediates",
            _ => continue,
        };
        let id = r.secret_id;
        let lookup = state.read.get_payload(id, (state.clock)()).await?;
        let held = crate::payload::readable_payload(
            state,
            caller,
            id,
            lookup.value,
            projections::read::WithPayload::secret,
        )
        .await?;
        let Some(payload) = held.payload() else {
            return Ok(vec![Finding {
                code: "secret_unusable".to_owned(),
                message: format!(
                    "{name} secret {} has no payload",
                    secret_ref(base, r.secret_id)
                ),
                fix: "store the payload, or reference a secret that has one".into(),
            }]);
        };
        parts.insert(
            name,
            crate::payload::decrypt(state, caller, id, held.secret(), payload).await?,
        );
    }
    let Some(certificate) = parts.get("certificate") else {
        return Ok(vec![Finding {
            code: "certificate_missing".to_owned(),
            message: "the container has no certificate reference".into(),
            fix: "create a certificate container that references the certificate".into(),
        }]);
    };
    let parts = Parts {
        certificate: certificate.expose_secret(),
        private_key: parts.get("private_key").map(|k| k.expose_secret()),
        intermediates: parts.get("intermediates").map(|k| k.expose_secret()),
    };
    Ok(check(&parts, (state.clock)().unix_millis() / 1000))
}

/// What the TLS check found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TlsCheck {
    /// The container checked.
    pub container_ref: String,
    /// Whether a load balancer would take it.
    pub ok: bool,
    /// What is wrong, each with its fix.
    pub findings: Vec<Finding>,
    /// Whom to tell: its consumers.
    pub consumers: Vec<ConsumerRef>,
}

/// `GET /v1/containers/{id}/tls-check`: `{"ok", "findings": [{code, message, fix}],
/// "consumers"}`.
#[utoipa::path(
    get,
    path = "/v1/containers/{id}/tls-check",
    tag = "containers",
    params(ContainerPath, MinSeq),
    responses((status = 200, description = "What a load balancer would fail on", body = TlsCheck)),
)]
pub async fn tls_check(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = container_id(&id)?;
    let (row, seq) = readable(&state, &caller, Action::ReadSecret, id).await?;
    let base = base_url(&state, &headers);
    let findings = tls_findings(&state, &caller, &row, &base).await?;
    let body = TlsCheck {
        container_ref: container_ref(&base, row.id),
        ok: findings.is_empty(),
        findings,
        consumers: Container::of(&base, &row).consumers,
    };
    Ok(with_seq(Json(body).into_response(), seq))
}

/// `GET /v1/containers/{id}/consumers`: a page of them, as Barbican pages.
#[utoipa::path(
    get,
    path = "/v1/containers/{id}/consumers",
    tag = "consumers",
    params(ContainerPath, MinSeq, PageQuery),
    responses((status = 200, description = "A page of its consumers", body = ContainerConsumerList)),
)]
pub async fn consumers(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path(id): Path<String>,
    headers: HeaderMap,
    paging: Paging,
) -> Result<Response, ApiError> {
    let id = container_id(&id)?;
    let (row, seq) = readable(&state, &caller, Action::ReadSecret, id).await?;
    let consumers: Vec<ContainerConsumer> = row
        .consumers
        .iter()
        .skip(paging.offset as usize)
        .take(paging.limit as usize)
        .map(ContainerConsumer::of)
        .collect();
    let total = row.consumers.len() as u64;
    let url = format!(
        "{}/consumers",
        container_ref(&base_url(&state, &headers), row.id)
    );
    let links = paging.links(&url, consumers.len(), total, &[]);
    let body = ContainerConsumerList {
        consumers,
        total,
        links,
    };
    Ok(with_seq(Json(body).into_response(), seq))
}

/// `POST` (register) and `DELETE` (unregister) `/v1/containers/{id}/consumers`, body
/// `{"name", "URL"}`: answers with the container, as Barbican does.
#[utoipa::path(
    method(post, delete),
    path = "/v1/containers/{id}/consumers",
    tag = "consumers",
    params(ContainerPath),
    request_body(content = ContainerConsumerBody, content_type = "application/json"),
    responses((status = 200, description = "Registered (POST) or removed (DELETE); the container", body = Container)),
)]
pub async fn change_consumer(
    State(state): State<AppState>,
    caller: Caller,
    method: axum::http::Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body: ContainerConsumerBody = crate::body::json(&headers, &body, "a consumer")?;
    let id = container_id(&id)?;
    match body.validate.as_deref() {
        // Removing a consumer checks nothing: the same body is taken as is.
        None => {}
        Some("tls") if method == axum::http::Method::DELETE => {}
        Some("tls") => {
            let (row, _) = readable(&state, &caller, Action::ReadSecret, id).await?;
            let findings = tls_findings(&state, &caller, &row, &base_url(&state, &headers)).await?;
            if !findings.is_empty() {
                let each: Vec<String> = findings
                    .iter()
                    .map(|f| format!("{} ({})", f.message, f.fix))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "container {id} fails the TLS check, so it is not registered for {}: {}",
                    body.name,
                    each.join("; ")
                )));
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "validate {other:?} is not supported; use \"tls\" (register only after the \
                 TLS check) or leave it out"
            )));
        }
    }
    let request = ConsumerRequest {
        command_id: None,
        project: container_project(&state, id).await?,
        id: id.to_string(),
        name: body.name,
        url: body.url,
    };
    let name = if method == axum::http::Method::DELETE {
        command::CONTAINER_CONSUMER_REMOVE
    } else {
        command::CONTAINER_CONSUMER_REGISTER
    };
    let accepted = write(&state, name, &caller, &request).await?;
    let (row, _) = readable(&state, &caller, Action::ReadSecret, id).await?;
    Ok(with_seq(
        Json(Container::of(&base_url(&state, &headers), &row)).into_response(),
        accepted.seq,
    ))
}
