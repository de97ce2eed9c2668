//! History from the log itself, for auditors: `GET /v1/secrets/{id}/history` (one
//! secret, even after it is gone) and `GET /v1/audit/events` (a project, filtered).
//! Entries carry actor, time, sequence and hash; sealed bytes are redacted.
//!
//! Both are read from the log page by page, never whole: a request returns at most
//! `limit` entries (100 by default, 1,000 at most; more only when one commit alone
//! holds more events, as a commit is never split), about [`PAGE_BYTES`] of commits,
//! and reads at most [`SCAN_CAP`] messages, and says where to go on (`next`, from a sequence; a page of a sparse
//! filter may be empty and still have a `next`). At most four history reads run at
//! once and the others wait for a slot (503 with `Retry-After` after
//! [`crate::costly::QUEUE_WAIT`]); a caller may have four in flight (429 beyond):
//! [`crate::costly::Costly`]. So a
//! running read holds one batch of messages (at most 4 MiB) and its page, whatever
//! the size of the project's history, and a waiting one next to nothing.
//!
//! Only keyledger's commits are shown: a message whose authenticator does not check
//! is left out, and so is any message the projector skipped (a replayed copy, say),
//! after waiting (as reads do) until the read model has judged the page.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::audit::{HistoryEntry, HistoryFilter, RawEvent};
use domain::commit::Commit;
use domain::ids::{ProjectId, SecretId};
use domain::policy::{Action, Target, authorize};
use domain::subject::{AggregateKind, aggregate_subject, events_filter};
use domain::timestamp::Timestamp;
use projections::read::Lookup;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::access::{self, check, resolve};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openapi::SecretPath;
use crate::state::AppState;

/// Most log messages one request reads.
pub const SCAN_CAP: u64 = 10_000;
/// A page ends once the commits in it reach this many bytes (a page holds at least
/// one commit), so a page of large commits stays small whatever `limit` says.
pub const PAGE_BYTES: usize = 1 << 20;
/// Entries a page holds unless asked for fewer or more.
const DEFAULT_LIMIT: u32 = 100;
/// Entries a page holds at most.
const MAX_LIMIT: u32 = 1000;

/// One page of history.
struct Page {
    entries: Vec<HistoryEntry>,
    /// Where the next page starts, if the log goes on.
    next_seq: Option<u64>,
}

/// The entries of the commits on `subject` from `from_seq`, as the filter admits
/// them, up to `limit` entries or [`SCAN_CAP`] messages read.
async fn page(
    state: &AppState,
    subject: String,
    filter: &HistoryFilter,
    from_seq: u64,
    limit: usize,
) -> Result<Page, ApiError> {
    let mut entries = Vec::new();
    let mut bytes = 0;
    let mut scanned = 0;
    let mut last = None;
    let mut more = false;
    let key = &state.commit_key;
    let read = infra::audit::read_log(
        &state.js,
        &state.config.stream,
        Some(subject),
        from_seq,
        |m| {
            if filter.to_seq.is_some_and(|to| m.seq > to) {
                return false;
            }
            if entries.len() >= limit || scanned >= SCAN_CAP || bytes >= PAGE_BYTES {
                more = true;
                return false;
            }
            let admitted = match Commit::<RawEvent>::open(&m.payload, key) {
                Ok(commit) => filter.entries(m.seq, &commit),
                Err(e) => {
                    infra::audit::report_foreign(m.seq, &m.subject, &e.to_string());
                    Vec::new()
                }
            };
            // A commit's entries are never split between pages: one that would not
            // fit starts the next page (unless the page is empty, so pages move on).
            if !entries.is_empty() && entries.len() + admitted.len() > limit {
                more = true;
                return false;
            }
            scanned += 1;
            last = Some(m.seq);
            if !admitted.is_empty() {
                bytes += m.payload.len();
            }
            entries.extend(admitted);
            true
        },
    )
    .await;
    match read {
        Ok(_) => {}
        Err(e) if e.is_absent() => {}
        Err(e) => {
            tracing::error!(error = %e, "reading history failed");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the log is unavailable; retry shortly",
            )
            .retry_after(1));
        }
    }
    if let Some(last) = last {
        // A replayed copy carries a valid authenticator: the projector's judgement of
        // every message in the page is what leaves it out.
        let timeout = state.config.consistency_timeout;
        state.read.wait_for(last, timeout).await.map_err(|lag| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the read model has not judged the log up to {} yet ({lag}); retry shortly",
                    lag.wanted
                ),
            )
            .retry_after(1)
        })?;
        let skipped = state.read.skipped_between(from_seq, last).await?;
        entries.retain(|e| !skipped.contains(&e.seq));
    }
    Ok(Page {
        entries,
        next_seq: if more { last.map(|s| s + 1) } else { None },
    })
}

/// The paging of a history request.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Where the page starts: a log sequence (the `next` link carries it).
    #[param(minimum = 0)]
    from_seq: Option<u64>,
    /// Most entries a page holds, from 1 (default 100; more reads as 1000); a commit
    /// is never split, so a page may hold more.
    #[param(minimum = 1, maximum = 4294967295_u64)]
    limit: Option<u32>,
}

/// One event of the history, as the log holds it: sealed bytes redacted.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)] // describes `domain::audit::HistoryEntry` for the OpenAPI document
#[schema(as = HistoryEntry)]
pub struct HistoryEntrySchema {
    /// The commit's log sequence.
    seq: u64,
    /// When it was committed (RFC 3339).
    at: String,
    /// Who: a user, or `system:<task>`.
    actor: String,
    /// The command.
    command: String,
    /// What it changed: `{kind, project, id}`.
    aggregate: Map<String, Value>,
    /// The aggregate's version after the commit.
    version: u64,
    /// The commit's hash (hex).
    hash: String,
    /// The event, `{type, v, …}`; `nonce` and `ciphertext` are `[sealed]`.
    event: Map<String, Value>,
}

/// A page of a secret's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretHistory {
    /// Its events, oldest first.
    #[schema(value_type = Vec<HistoryEntrySchema>)]
    history: Vec<HistoryEntry>,
    /// The next page, or null at the end of the log.
    next: Option<String>,
}

/// A page of the project's events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    /// The events the filter admits, oldest first.
    #[schema(value_type = Vec<HistoryEntrySchema>)]
    events: Vec<HistoryEntry>,
    /// The next page (a page of a sparse filter may be empty and still have one), or
    /// null at the end of the log.
    next: Option<String>,
}

/// The page's `limit`, checked.
fn limit(asked: Option<u32>) -> Result<usize, ApiError> {
    match asked.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}"
        ))),
        n => Ok(n.min(MAX_LIMIT) as usize),
    }
}

/// The URL of the page after this one: the request's, with `from_seq` moved on.
fn next_link(state: &AppState, headers: &HeaderMap, path: &str, query: &str, next: u64) -> String {
    let base = crate::views::base_url(state, headers);
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("from_seq="))
        .collect();
    let mut params = kept.join("&");
    if !params.is_empty() {
        params.push('&');
    }
    format!("{base}{path}?{params}from_seq={next}")
}

/// The project owning the secret `id` as the log says (a secret gone from the read
/// model): the project of the first message on any `keyledger.events.*.secret.<id>`.
async fn owner_in_log(state: &AppState, id: SecretId) -> Result<Option<ProjectId>, ApiError> {
    let mut owner = None;
    let read = infra::audit::read_log(
        &state.js,
        &state.config.stream,
        Some(events_filter(
            None,
            Some(AggregateKind::Secret),
            Some(&id.to_string()),
        )),
        1,
        |m| {
            owner = Commit::<RawEvent>::open(&m.payload, &state.commit_key)
                .ok()
                .map(|c| c.body.aggregate.project);
            owner.is_none()
        },
    )
    .await;
    match read {
        Ok(_) => Ok(owner),
        Err(e) if e.is_absent() => Ok(None),
        Err(e) => {
            tracing::error!(error = %e, "reading history failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the log is unavailable; retry shortly",
            )
            .retry_after(1))
        }
    }
}

/// `GET /v1/secrets/{id}/history`: the secret's events, a page at a time. While the
/// secret exists, whoever may read its metadata may read its history; once it is
/// gone, the project's auditors, observers, creators and admins may.
#[utoipa::path(
    get,
    path = "/v1/secrets/{id}/history",
    tag = "audit",
    params(SecretPath, Paging),
    responses((status = 200, description = "A page of the secret's events, from the log (also once it is gone)", body = SecretHistory)),
)]
pub async fn secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    query: Result<Query<Paging>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(paging) = query.map_err(|e| {
        ApiError::bad_request(format!("{}; page with from_seq and limit", e.body_text()))
    })?;
    let limit = limit(paging.limit)?;
    let id = resolve(&state, &caller, &raw).await?;
    let lookup = state.read.get_secret(id, (state.clock)()).await?;
    let row = match lookup.value {
        Lookup::Found(row) => Some(row),
        Lookup::Expired(row) | Lookup::PendingDeletion(row) => Some(*row),
        Lookup::Missing => None,
    };
    // Who may read the secret reads its history; the ACL changes in it only who may
    // read its ACL, or audit the project.
    let may_read_acl = row
        .as_ref()
        .is_some_and(|row| check(&state, &caller, Action::ReadAcl, row).is_ok());
    let project = match row {
        Some(row) => {
            check(&state, &caller, Action::ReadSecret, &row)?;
            row.project
        }
        None => {
            let Some(owner) = owner_in_log(&state, id).await? else {
                return Err(access::not_found(&caller, id));
            };
            authorize(
                &caller.principal,
                Action::ReadSecret,
                Target::Project {
                    project: &owner,
                    secret: Some(id.into()),
                },
                access::env(&state, &caller),
            )?;
            owner
        }
    };
    let may_audit = authorize(
        &caller.principal,
        Action::ReadAudit,
        Target::Project {
            project: &project,
            secret: None,
        },
        access::env(&state, &caller),
    )
    .is_ok();
    let _reading = state.costly.history.start(&caller).await?;
    let subject = aggregate_subject(&project, AggregateKind::Secret, &id.into());
    let mut page = page(
        &state,
        subject,
        &HistoryFilter::default(),
        paging.from_seq.unwrap_or(1),
        limit,
    )
    .await?;
    if !(may_read_acl || may_audit) {
        hide_acls(&mut page.entries);
    }
    let next = page
        .next_seq
        .map(|n| next_link(&state, &headers, uri.path(), uri.query().unwrap_or(""), n));
    Ok(Json(SecretHistory {
        history: page.entries,
        next,
    })
    .into_response())
}

/// Replaces the grants of ACL changes with a note: who is on an ACL, and from where
/// and when they may read, is for those who may read the ACL itself.
fn hide_acls(entries: &mut [HistoryEntry]) {
    for entry in entries {
        let kind = entry.event_type().to_owned();
        if kind.ends_with(".acl_set") {
            entry.event = serde_json::json!({
                "type": kind,
                "redacted": "the ACL's grants; they show to those who may read the ACL",
            });
        }
    }
}

/// The filters and paging of `GET /v1/audit/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only what this actor did: a user, or `system:<task>`.
    actor: Option<String>,
    /// Only events of this type, e.g. `secret.created`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Only commits at or after this time (ISO-8601).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only commits before this time (ISO-8601).
    #[param(format = DateTime)]
    until: Option<String>,
    /// From this log sequence on (the `next` link carries it).
    #[param(minimum = 0)]
    from_seq: Option<u64>,
    /// Up to this log sequence.
    #[param(minimum = 0)]
    to_seq: Option<u64>,
    /// Only this aggregate (secret, container or order), by its UUID.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    id: Option<String>,
    /// Most entries a page holds, from 1 (default 100; more reads as 1000); a commit
    /// is never split, so a page may hold more.
    #[param(minimum = 1, maximum = 4294967295_u64)]
    limit: Option<u32>,
}

/// `GET /v1/audit/events`: the caller's project's history (role audit or admin),
/// filtered by actor, event type, time and sequence range, or one aggregate (`id`),
/// a page at a time.
#[utoipa::path(
    get,
    path = "/v1/audit/events",
    tag = "audit",
    params(EventsQuery),
    responses((status = 200, description = "A page of the project's events, from the log (role audit or admin)", body = EventsPage)),
)]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    uri: axum::http::Uri,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; filter with actor, type, since, until, from_seq, to_seq, id; page with limit \
             (and from_seq, as the next link does)",
            e.body_text()
        ))
    })?;
    let who = &caller.principal;
    authorize(
        who,
        Action::ReadAudit,
        Target::Project {
            project: &who.project,
            secret: None,
        },
        access::env(&state, &caller),
    )?;
    let time = |field: &str, v: Option<String>| {
        v.map(|s| Timestamp::parse_iso8601(field, &s))
            .transpose()
            .map_err(|r| ApiError::bad_request(r.message))
    };
    let filter = HistoryFilter {
        actor: q.actor,
        event_type: q.event_type,
        since: time("since", q.since)?,
        until: time("until", q.until)?,
        from_seq: q.from_seq,
        to_seq: q.to_seq,
    };
    if let Some(id) = &q.id
        && uuid::Uuid::try_parse(id).is_err()
    {
        return Err(ApiError::bad_request(format!("id {id:?} is not a UUID")));
    }
    let limit = limit(q.limit)?;
    let _reading = state.costly.history.start(&caller).await?;
    let subject = events_filter(Some(who.project.as_str()), None, q.id.as_deref());
    let page = page(&state, subject, &filter, q.from_seq.unwrap_or(1), limit).await?;
    let next = page
        .next_seq
        .map(|n| next_link(&state, &headers, uri.path(), uri.query().unwrap_or(""), n));
    Ok(Json(EventsPage {
        events: page.entries,
        next,
    })
    .into_response())
}
