//! `/v1/secrets`: list, create, get metadata, delete.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::protocol::{CreateSecretRequest, DeleteSecretRequest};
use domain::ids::SecretId;
use domain::secret::fields::SecretType;
use domain::subject::command;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use projections::read::{ListFilter, Lookup};
use serde_json::json;

use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, wait_visible, with_seq};
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

/// The not-found answer for a secret the read model does not show.
pub fn not_found(caller: &Caller, id: SecretId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "secret {id} not found in project {}",
            caller.principal.project
        ),
    )
}

/// The secret a lookup found, or the 404 that says why not (missing, or expired when).
pub fn found<T>(lookup: Lookup<T>, caller: &Caller, id: SecretId) -> Result<T, ApiError> {
    match lookup {
        Lookup::Found(value) => Ok(value),
        Lookup::Expired(at) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("secret {id} expired at {at}"),
        )),
        Lookup::Missing => Err(not_found(caller, id)),
    }
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
    for (key, value) in &params {
        match key.as_str() {
            "limit" => filter.limit = parse_number("limit", value, 1)?.min(MAX_LIMIT),
            "offset" => filter.offset = parse_number("offset", value, 0)?,
            "name" => filter.name = Some(value.clone()),
            "secret_type" => {
                SecretType::parse(value).map_err(|r| ApiError::bad_request(r.message))?;
                filter.secret_type = Some(value.clone());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "query parameter {other:?} is not supported; use limit, offset, name or \
                     secret_type"
                )));
            }
        }
    }
    let page = state
        .read
        .list_secrets(&caller.principal.project, &filter, (state.clock)())
        .await?;
    let base = base_url(&state, &headers);
    let link = |offset: u32| {
        let mut query = vec![
            ("limit".to_owned(), filter.limit.to_string()),
            ("offset".to_owned(), offset.to_string()),
        ];
        query.extend(filter.name.iter().map(|n| ("name".to_owned(), n.clone())));
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
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {content_type:?} is not supported for creating a secret; send \
                 the JSON body with Content-Type: application/json"
            ),
        ));
    }
    let mut request: CreateSecretRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a valid secret: {e}")))?;
    if let Some(key) = headers.get(IDEMPOTENCY_KEY) {
        let key = key
            .to_str()
            .map_err(|_| ApiError::bad_request("Idempotency-Key must be ASCII text"))?;
        request.command_id = Some(key.to_owned());
    }
    let accepted = state
        .commands
        .send(command::SECRET_CREATE, &caller.token, &request)
        .await?;
    wait_visible(&state, accepted.seq).await;
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
            let lookup = state
                .read
                .get_secret(&caller.principal.project, id, (state.clock)())
                .await?;
            let row = found(lookup.value, &caller, id)?;
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
    let accepted = state
        .commands
        .send(
            command::SECRET_DELETE,
            &caller.token,
            &DeleteSecretRequest {
                command_id: None,
                id: id.to_string(),
            },
        )
        .await?;
    wait_visible(&state, accepted.seq).await;
    Ok(with_seq(
        StatusCode::NO_CONTENT.into_response(),
        accepted.seq,
    ))
}
