//! `/v1/secrets`: list, create, get metadata, delete.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::policy::{Action, Target, authorize};
use domain::secret::fields::SecretType;
use domain::subject::command;
use infra::protocol::{CreateSecretRequest, DeleteSecretRequest, SecretRequest};
use projections::read::{Compare, ListFilter, ListScope, SortKey, TimeColumn};

use crate::access::{self, change_target, readable, resolve};
use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, no_content, with_seq, write};
use crate::error::ApiError;
use crate::microversion::Microversion;
use crate::negotiate::{SecretView, secret_view};
use crate::openapi::{AcceptSecret, MinSeq, SecretPath};
use crate::payload;
use crate::state::AppState;
use crate::views::secret::Extended;
use crate::views::secret::{Secret, SecretList, Shape};
use crate::views::{Links, SecretRef, base_url, secret_ref};

/// Header a client may set to make a create safe to retry (used as the command id).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The `Idempotency-Key` a create names, which becomes its command id.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut keys = headers.get_all(IDEMPOTENCY_KEY).iter();
    let first = keys.next();
    // A proxy that deduplicates on another copy than ours would disagree with us on
    // which requests are retries.
    if keys.next().is_some() {
        return Err(ApiError::bad_request(
            "the Idempotency-Key header is given more than once; send it once",
        ));
    }
    first
        .map(|key| {
            let key = key
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be ASCII text"))?;
            // Told in the header's terms here, not as the command id it becomes.
            if domain::ids::CommandId::parse(key).is_err() {
                return Err(ApiError::bad_request(format!(
                    "Idempotency-Key {key:?} is not valid: use 1 to {} ASCII letters, digits, \
                     '-' or '_' (a UUID works)",
                    domain::ids::CommandId::MAX_LEN
                )));
            }
            Ok(key.to_owned())
        })
        .transpose()
}

use crate::paging::{DEFAULT_LIMIT, MAX_LIMIT};

fn parse_number(name: &str, value: &str, min: u32) -> Result<u32, ApiError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter {name}={value:?} must be a whole number from {min} to {}",
                u32::MAX
            ))
        })
}

/// Most comparisons one time filter holds: a range needs two, and each is a term of
/// the query, whose expression SQLite bounds.
const MAX_TIME_COMPARISONS: usize = 4;

/// A time filter's value: `gt:2026-01-01T00:00:00,lt:2026-02-01T00:00:00` (Barbican's
/// form); an item without a prefix must match exactly.
fn time_filter(
    name: &str,
    column: TimeColumn,
    value: &str,
    out: &mut Vec<(TimeColumn, Compare, i64)>,
) -> Result<(), ApiError> {
    let count = value.split(',').count();
    if count > MAX_TIME_COMPARISONS {
        return Err(ApiError::bad_request(format!(
            "{name} holds {count} comparisons; at most {MAX_TIME_COMPARISONS} are allowed (a \
             range needs two, e.g. {name}=gt:2026-01-01T00:00:00,lt:2026-02-01T00:00:00)"
        )));
    }
    for item in value.split(',') {
        let (op, at) = match item.split_once(':') {
            Some(("gt", at)) => (Compare::Gt, at),
            Some(("gte", at)) => (Compare::Gte, at),
            Some(("lt", at)) => (Compare::Lt, at),
            Some(("lte", at)) => (Compare::Lte, at),
            _ => (Compare::Eq, item),
        };
        let at = domain::timestamp::Timestamp::parse_iso8601(name, at).map_err(|r| {
            ApiError::bad_request(format!(
                "{}; comparisons are written gt:, gte:, lt: or lte: before the time, e.g. \
                 {name}=gt:2026-01-01T00:00:00,lt:2026-02-01T00:00:00",
                r.message
            ))
        })?;
        out.push((column, op, at.unix_millis()));
    }
    Ok(())
}

/// `sort=created:desc,name` (Barbican's form; ascending by default).
fn sort_keys(value: &str) -> Result<Vec<(SortKey, bool)>, ApiError> {
    let keys: Vec<(SortKey, bool)> = value
        .split(',')
        .map(|item| {
            let (key, dir) = item.split_once(':').unwrap_or((item, "asc"));
            let key = match key {
                "created" => SortKey::Created,
                "updated" => SortKey::Updated,
                "expiration" => SortKey::Expiration,
                "name" => SortKey::Name,
                "algorithm" | "alg" => SortKey::Algorithm,
                "mode" => SortKey::Mode,
                "bit_length" | "bits" => SortKey::BitLength,
                "secret_type" => SortKey::SecretType,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "cannot sort by {other:?}; sort by created, updated, expiration, name, \
                         algorithm, mode, bit_length or secret_type"
                    )));
                }
            };
            let desc = match dir {
                "asc" => false,
                "desc" => true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "sort direction {other:?} is not asc or desc"
                    )));
                }
            };
            Ok((key, desc))
        })
        .collect::<Result<_, _>>()?;
    // A key named again orders nothing more: its first mention counts, and the query
    // stays short however long `sort` is.
    let mut once: Vec<(SortKey, bool)> = Vec::new();
    for (key, desc) in keys {
        if !once.iter().any(|(k, _)| *k == key) {
            once.push((key, desc));
        }
    }
    Ok(once)
}

/// The query of `GET /v1/secrets`, as the OpenAPI document describes it (the
/// handler reads the parameters in order, to keep them in the paging links).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // describes parameters; never built
pub struct ListQuery {
    /// Page size, 1 to 100 (0 reads as 1, larger as 100; default 10).
    #[param(minimum = 0, maximum = 4294967295_u64)]
    limit: Option<u32>,
    /// Secrets to skip.
    #[param(minimum = 0, maximum = 4294967295_u64)]
    offset: Option<u32>,
    /// Only secrets with this name.
    name: Option<String>,
    /// Only secrets with this algorithm.
    alg: Option<String>,
    /// Only secrets with this mode.
    mode: Option<String>,
    /// Only secrets of this size in bits.
    #[param(minimum = 1, maximum = 4294967295_u64)]
    bits: Option<u32>,
    /// Only secrets of this type.
    #[param(inline)]
    secret_type: Option<SecretTypeName>,
    /// Creation time: `gt:`, `gte:`, `lt:` or `lte:` and an ISO-8601 time, or a time
    /// alone (equal to it), comma-separated (at most 4), e.g.
    /// `gt:2026-01-01T00:00:00,lt:2026-02-01T00:00:00`.
    #[param(
        pattern = r"^((gt|gte|lt|lte):)?[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?(,((gt|gte|lt|lte):)?[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?){0,3}$"
    )]
    created: Option<String>,
    /// Time of the last change, as `created`.
    #[param(
        pattern = r"^((gt|gte|lt|lte):)?[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?(,((gt|gte|lt|lte):)?[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?){0,3}$"
    )]
    updated: Option<String>,
    /// Expiration, as `created`.
    #[param(
        pattern = r"^((gt|gte|lt|lte):)?[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?(,((gt|gte|lt|lte):)?[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?){0,3}$"
    )]
    expiration: Option<String>,
    /// Order: keys (`created`, `updated`, `expiration`, `name`, `algorithm`, `mode`,
    /// `bit_length`, `secret_type`), each with `:asc` or `:desc`, comma-separated.
    #[param(
        pattern = r"^(created|updated|expiration|name|algorithm|alg|mode|bit_length|bits|secret_type)(:(asc|desc))?(,(created|updated|expiration|name|algorithm|alg|mode|bit_length|bits|secret_type)(:(asc|desc))?)*$"
    )]
    sort: Option<String>,
    /// `true`: the secrets of any project whose ACL names the caller.
    acl_only: Option<bool>,
}

/// Barbican's secret types.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // describes a parameter; never built
pub enum SecretTypeName {
    /// A symmetric key.
    Symmetric,
    /// A public key.
    Public,
    /// A private key.
    Private,
    /// A passphrase.
    Passphrase,
    /// A certificate.
    Certificate,
    /// Anything else (the default).
    Opaque,
}

/// `GET /v1/secrets`: Barbican's filters (`name`, `alg`, `mode`, `bits`,
/// `secret_type`, `acl_only`, `created`, `updated`, `expiration`), `sort`, and offset
/// paging.
#[utoipa::path(
    get,
    path = "/v1/secrets",
    tag = "secrets",
    params(ListQuery, MinSeq, Extended),
    responses((status = 200, description = "A page of the secrets the caller may see", body = SecretList)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    shape: Shape,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut filter = ListFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut acl_only = false;
    for (i, (key, value)) in params.iter().enumerate() {
        // One value per parameter, as every other listing reads them: which of two
        // would count is not for a client to guess.
        if params[..i].iter().any(|(k, _)| k == key) {
            return Err(ApiError::bad_request(format!(
                "query parameter {key:?} is given more than once; give it once (times take \
                 several conditions, comma-separated)"
            )));
        }
        match key.as_str() {
            // As Barbican: 0 reads as 1 (python-barbicanclient counts with limit=0).
            "limit" => filter.limit = parse_number("limit", value, 0)?.clamp(1, MAX_LIMIT),
            "offset" => filter.offset = parse_number("offset", value, 0)?,
            "name" => filter.name = Some(value.clone()),
            "alg" => filter.algorithm = Some(value.clone()),
            "mode" => filter.mode = Some(value.clone()),
            "bits" => filter.bit_length = Some(i64::from(parse_number("bits", value, 1)?)),
            "secret_type" => {
                SecretType::parse(value).map_err(|r| ApiError::bad_request(r.message))?;
                filter.secret_type = Some(value.clone());
            }
            "created" => time_filter("created", TimeColumn::Created, value, &mut filter.times)?,
            "updated" => time_filter("updated", TimeColumn::Updated, value, &mut filter.times)?,
            "expiration" => time_filter(
                "expiration",
                TimeColumn::Expiration,
                value,
                &mut filter.times,
            )?,
            "sort" => filter.sort = sort_keys(value)?,
            "acl_only" => {
                acl_only = crate::query::parse_flag(value).ok_or_else(|| {
                    ApiError::bad_request(crate::query::flag_error("acl_only", value))
                })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "query parameter {other:?} is not supported; use limit, offset, name, alg, \
                     mode, bits, secret_type, created, updated, expiration, sort or acl_only"
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
    let _listing = state.costly.listings.start(&caller).await?;
    let page = state
        .read
        .list_secrets(scope, &filter, (state.clock)(), |row| {
            access::may_read(&state, &caller, row)
        })
        .await?;
    let base = base_url(&state, &headers);
    // The other parameters, as given, so every page has the same filters and order.
    let others: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != "limit" && k != "offset")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let link = |offset: u32| {
        crate::paging::link(&format!("{base}/v1/secrets"), filter.limit, offset, &others)
    };
    let secrets: Vec<Secret> = page
        .value
        .secrets
        .iter()
        .map(|row| Secret::of(&base, row, shape))
        .collect();
    let links = Links::of(
        (filter.limit, filter.offset),
        secrets.len(),
        page.value.total,
        link,
    );
    let body = SecretList {
        secrets,
        total: page.value.total,
        links,
    };
    Ok(with_seq(Json(body).into_response(), page.seq))
}

/// `POST /v1/secrets`.
#[utoipa::path(
    post,
    path = "/v1/secrets",
    tag = "secrets",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retrying the create safe: the same key, the same secret (1 to 64 letters, digits, `-` or `_`; sent once: twice is 400)", pattern = "^[A-Za-z0-9_-]{1,64}$"),
    ),
    request_body(content = CreateSecretRequest, content_type = "application/json"),
    responses((status = 201, description = "Created; `Location` is its URL", body = SecretRef,
        headers(("Location" = String, description = "The secret's URL")))),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let mut request: CreateSecretRequest = crate::body::json(&headers, &body, "a secret")?;
    if let Some(key) = idempotency_key(&headers)? {
        request.command_id = Some(key);
    }
    let accepted = write(&state, command::SECRET_CREATE, &caller, &request).await?;
    let url = secret_ref(&base_url(&state, &headers), &accepted.id);
    let mut response = (
        StatusCode::CREATED,
        Json(SecretRef {
            secret_ref: url.clone(),
        }),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(with_seq(response, accepted.seq))
}

/// `GET /v1/secrets/{id}`: metadata, or the payload for `text/plain` and
/// `application/octet-stream` clients (Barbican's original way of reading it).
#[utoipa::path(
    get,
    path = "/v1/secrets/{id}",
    tag = "secrets",
    params(SecretPath, MinSeq, Extended, AcceptSecret),
    responses((status = 200, description = "The metadata, or the payload as `Accept` asks",
        content(
            (Secret = "application/json"),
            (String = "text/plain"),
            (String = "application/octet-stream"),
        ))),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    consistent: Consistent,
    shape: Shape,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let accept = crate::negotiate::accept(&headers)?;
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
            let id = resolve(&state, &caller, &id).await?;
            let lookup = state.read.get_secret(id, (state.clock)()).await?;
            let row = readable(&state, &caller, Action::ReadSecret, id, lookup.value, |r| r)?;
            let body = Secret::of(&base_url(&state, &headers), &row, shape);
            Ok(with_seq(Json(body).into_response(), lookup.seq))
        }
    }
}

/// The query of `DELETE /v1/secrets/{id}`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Keep the secret restorable for this many days (7 to 30 by default) instead of
    /// deleting it at once.
    #[param(minimum = 0)]
    recovery_window_days: Option<u64>,
    /// Keep it restorable for this long, e.g. `7d`.
    #[serde(default, deserialize_with = "crate::query::text")]
    recovery_window: Option<String>,
    /// Delete even though consumers are registered (Barbican's `force`, from
    /// microversion 1.2; before it, consumers never stop a deletion).
    #[serde(default, deserialize_with = "crate::query::flag")]
    #[param(value_type = Option<bool>)]
    force: Option<bool>,
}

/// `DELETE /v1/secrets/{id}`: as Barbican, deletes at once and destroys the secret's
/// keys (with consumers registered: from microversion 1.2 only with `force`). With `?recovery_window_days=N` (or `?recovery_window=7d`) it schedules the
/// deletion instead: the secret can be restored until the window ends.
#[utoipa::path(
    delete,
    path = "/v1/secrets/{id}",
    tag = "secrets",
    params(SecretPath, DeleteQuery),
    responses((status = 204, description = "Deleted, or scheduled for deletion")),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    version: Microversion,
    Path(id): Path<String>,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; DELETE takes recovery_window_days or recovery_window (or nothing, to delete \
             at once), and force=true to delete despite consumers",
            e.body_text()
        ))
    })?;
    let (id, project) = change_target(&state, &caller, &id).await?;
    let scheduled = query.recovery_window_days.is_some() || query.recovery_window.is_some();
    let accepted = write(
        &state,
        command::SECRET_DELETE,
        &caller,
        &DeleteSecretRequest {
            command_id: None,
            project,
            id: id.to_string(),
            recovery_window_days: query.recovery_window_days,
            recovery_window: query.recovery_window,
            force: (!scheduled).then_some(true),
            // As Barbican: consumers stop a deletion from microversion 1.2 on, unless
            // forced; before, the deletion takes them with it.
            ignore_consumers: Some(version < Microversion::V1_2 || query.force.unwrap_or(false)),
        },
    )
    .await?;
    Ok(no_content(accepted.seq))
}

/// `POST /v1/secrets/{id}/restore`: undoes a scheduled deletion; 204.
#[utoipa::path(
    post,
    path = "/v1/secrets/{id}/restore",
    tag = "secrets",
    params(SecretPath),
    responses((status = 204, description = "Restored")),
)]
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, project) = change_target(&state, &caller, &id).await?;
    let request = SecretRequest {
        command_id: None,
        project,
        id: id.to_string(),
    };
    let accepted = write(&state, command::SECRET_RESTORE, &caller, &request).await?;
    Ok(no_content(accepted.seq))
}
