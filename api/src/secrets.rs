//! `/v1/secrets`: list, create, get metadata, delete.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{ACCEPT, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::protocol::{CreateSecretRequest, DeleteSecretRequest};
use domain::ids::SecretId;
use domain::policy::{Action, Target, authorize};
use domain::secret::fields::SecretType;
use domain::subject::command;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use projections::read::{ListFilter, ListScope};
use serde_json::json;

use crate::access::{self, owner_project, readable};
use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, with_seq, write};
use crate::error::ApiError;
use crate::negotiate::{SecretView, secret_view};
use crate::payload;
use crate::state::AppState;
use crate::views::{base_url, secret, secret_ref};

/// Header a client may set to make a create safe to retry (used as the command id).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

const DEFAULT_LIMIT: u32 = 10;
const MAX_LIMIT: u32 = 100;

/// Parses the `{id}` of a secrets path.
pub fn secret_id(raw: &str) -> Result<SecretId, ApiError> {
    SecretId::parse(raw).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no secret has the id {raw:?}: secret ids are UUIDs, as in the secret_ref"),
        )
    })
}

fn parse_number(name: &str, value: &str, min: u32) -> Result<u32, ApiError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter {name}={value:?} must be an integer of at least {min}"
            ))
        })
}

/// `GET /v1/secrets`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut filter = ListFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut acl_only = false;
    for (key, value) in &params {
        match key.as_str() {
            "limit" => filter.limit = parse_number("limit", value, 1)?.min(MAX_LIMIT),
            "offset" => filter.offset = parse_number("offset", value, 0)?,
            "name" => filter.name = Some(value.clone()),
            "secret_type" => {
                SecretType::parse(value).map_err(|r| ApiError::bad_request(r.message))?;
                filter.secret_type = Some(value.clone());
            }
            "acl_only" => {
                acl_only = value.parse::<bool>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "query parameter acl_only={value:?} must be true or false"
                    ))
                })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "query parameter {other:?} is not supported; use limit, offset, name, \
                     secret_type or acl_only"
                )));
            }
        }
    }
    let who = &caller.principal;
    let scope = if acl_only {
        ListScope::SharedWith(&who.user)
    } else {
        let target = Target::Project {
            project: &who.project,
            secret: None,
        };
        authorize(
            who,
            Action::ListSecrets,
            target,
            access::env(&state, &caller),
        )?;
        ListScope::Project {
            project: &who.project,
            user: &who.user,
            admin: domain::roles::effective(&who.roles)
                .contains(&domain::roles::ProjectRole::Admin),
        }
    };
    let page = state
        .read
        .list_secrets(scope, &filter, (state.clock)(), |row| {
            access::may_read(&state, &caller, row)
        })
        .await?;
    let base = base_url(&state, &headers);
    let link = |offset: u32| {
        let mut query = vec![
            ("limit".to_owned(), filter.limit.to_string()),
            ("offset".to_owned(), offset.to_string()),
        ];
        query.extend(filter.name.iter().map(|n| ("name".to_owned(), n.clone())));
        if acl_only {
            query.push(("acl_only".to_owned(), "true".to_owned()));
        }
        query.extend(
            filter
                .secret_type
                .iter()
                .map(|t| ("secret_type".to_owned(), t.clone())),
        );
        let query: String = query
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
            .collect::<Vec<_>>()
            .join("&");
        format!("{base}/v1/secrets?{query}")
    };
    let mut body = json!({
        "secrets": page.value.secrets.iter().map(|row| secret(&base, row)).collect::<Vec<_>>(),
        "total": page.value.total,
    });
    if u64::from(filter.offset) + u64::from(filter.limit) < page.value.total {
        body["next"] = json!(link(filter.offset + filter.limit));
    }
    if filter.offset > 0 {
        body["previous"] = json!(link(filter.offset.saturating_sub(filter.limit)));
    }
    Ok(with_seq(Json(body).into_response(), page.seq))
}

/// `POST /v1/secrets`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let mut request: CreateSecretRequest = crate::body::json(&headers, &body, "a secret")?;
    if let Some(key) = headers.get(IDEMPOTENCY_KEY) {
        let key = key
            .to_str()
            .map_err(|_| ApiError::bad_request("Idempotency-Key must be ASCII text"))?;
        request.command_id = Some(key.to_owned());
    }
    let accepted = write(&state, command::SECRET_CREATE, &caller.token, &request).await?;
    let url = secret_ref(&base_url(&state, &headers), &accepted.id);
    let mut response = (StatusCode::CREATED, Json(json!({ "secret_ref": url }))).into_response();
    if let Ok(location) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(with_seq(response, accepted.seq))
}

/// `GET /v1/secrets/{id}`: metadata, or the payload for `text/plain` and
/// `application/octet-stream` clients (Barbican's original way of reading it).
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    consistent: Consistent,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    match secret_view(accept) {
        None => Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "cannot answer with {:?}: ask for application/json (metadata), or text/plain or \
                 application/octet-stream (payload)",
                accept.unwrap_or_default()
            ),
        )),
        Some(SecretView::Payload) => {
            payload::get(State(state), caller, consistent, Path(id), headers).await
        }
        Some(SecretView::Metadata) => {
            let id = secret_id(&id)?;
            let lookup = state.read.get_secret(id, (state.clock)()).await?;
            let row = readable(&state, &caller, Action::ReadSecret, id, lookup.value, |r| r)?;
            let body = secret(&base_url(&state, &headers), &row);
            Ok(with_seq(Json(body).into_response(), lookup.seq))
        }
    }
}

/// `DELETE /v1/secrets/{id}`: deletes at once and destroys the secret's keys.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = secret_id(&id)?;
    let accepted = write(
        &state,
        command::SECRET_DELETE,
        &caller.token,
        &DeleteSecretRequest {
            command_id: None,
            project: owner_project(&state, id).await?,
            id: id.to_string(),
        },
    )
    .await?;
    Ok(with_seq(
        StatusCode::NO_CONTENT.into_response(),
        accepted.seq,
    ))
}
