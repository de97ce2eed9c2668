//! History from the log itself, for auditors: `GET /v1/secrets/{id}/history` (one
//! secret, even after it is gone) and `GET /v1/audit/events` (a project, filtered and
//! paged). Entries carry actor, time, sequence and hash; sealed bytes are redacted.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

use domain::audit::{HistoryFilter, RawEvent};
use domain::chain::{Head, Judged, judge};
use domain::ids::ProjectId;
use domain::policy::{Action, Target, authorize};
use domain::timestamp::Timestamp;
use projections::read::Lookup;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{self, check, resolve};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The entries of the commits on `subject` the filter admits. Every aggregate's chain
/// is followed from its first commit, so foreign messages and replayed copies are
/// skipped (and logged), never shown as history.
async fn entries(
    state: &AppState,
    subject: String,
    filter: &HistoryFilter,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    let mut bad = None;
    let mut heads: HashMap<String, Head> = HashMap::new();
    commands::audit::read_log(
        &state.js,
        &state.config.stream,
        Some(subject),
        1,
        |m| match judge::<RawEvent>(
            &m.subject,
            &m.payload,
            Some(&state.commit_key),
            heads.get(&m.subject),
        ) {
            Ok(Judged::Next(commit)) => {
                heads.insert(m.subject.clone(), Head::from(&commit));
                out.extend(filter.entries(m.seq, &commit));
                true
            }
            Ok(Judged::Foreign(reason)) => {
                commands::store::report_foreign(m.seq, &m.subject, &reason);
                true
            }
            Err(e) => {
                bad = Some(format!("sequence {}: {e}", m.seq));
                false
            }
        },
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "reading history failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the log is unavailable; retry shortly",
        )
        .retry_after(1)
    })?;
    if let Some(why) = bad {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the log holds a commit that does not verify ({why}); run keyledger audit verify"
            ),
        ));
    }
    Ok(out)
}

/// `GET /v1/secrets/{id}/history`: every event of the secret. While the secret
/// exists, whoever may read its metadata may read its history; once it is gone, the
/// project's auditors, observers, creators and admins may.
pub async fn secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = resolve(&state, &caller, &raw).await?;
    let lookup = state.read.get_secret(id, (state.clock)()).await?;
    let row = match lookup.value {
        Lookup::Found(row) => Some(row),
        Lookup::Expired(row) | Lookup::PendingDeletion(row) => Some(*row),
        Lookup::Missing => None,
    };
    let project = match row {
        Some(row) => {
            check(&state, &caller, Action::ReadSecret, &row)?;
            Some(row.project)
        }
        None => None,
    };
    let subject = format!(
        "keyledger.events.{}.secret.{id}",
        project.as_deref().unwrap_or("*")
    );
    let history = entries(&state, subject, &HistoryFilter::default()).await?;
    let Some(first) = history.first() else {
        return Err(access::not_found(&caller, id));
    };
    if project.is_none() {
        let owner = first["aggregate"]["project"]
            .as_str()
            .and_then(|p| ProjectId::parse(p).ok())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "a commit without a project",
                )
            })?;
        authorize(
            &caller.principal,
            Action::ReadSecret,
            Target::Project {
                project: &owner,
                secret: Some(id.into()),
            },
            access::env(&state, &caller),
        )?;
    }
    Ok(Json(json!({ "total": history.len(), "history": history })).into_response())
}

/// The filters and paging of `GET /v1/audit/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    actor: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    from_seq: Option<u64>,
    to_seq: Option<u64>,
    id: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

/// `GET /v1/audit/events`: the caller's project's history (role audit or admin),
/// filtered by actor, event type, time and sequence range, or one aggregate (`id`).
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; filter with actor, type, since, until, from_seq, to_seq, id; page with limit \
             and offset",
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
    let subject = format!(
        "keyledger.events.{}.*.{}",
        who.project,
        q.id.as_deref().unwrap_or("*")
    );
    let all = entries(&state, subject, &filter).await?;
    let (limit, offset) = (q.limit.unwrap_or(100).clamp(1, 1000), q.offset.unwrap_or(0));
    let page: Vec<&Value> = all
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    Ok(Json(json!({ "total": all.len(), "events": page })).into_response())
}
