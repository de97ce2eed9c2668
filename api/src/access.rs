//! The read side of the policy: every read of a secret goes through
//! `domain::policy::authorize` with the facts its read-model row holds (project,
//! creator, ACL) and where and when the request is made.

use axum::http::StatusCode;
use domain::ids::{ProjectId, SecretId};
use domain::policy::{Action, Object, RequestEnv, SecretFacts, Target, authorize};
use domain::secret::reference::PREFIX;
use domain::secret::scheduled_for_deletion;
use projections::read::{Candidate, ContainerRow, Lookup, OrderRow, SecretRow};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Where and when `caller` asks.
pub fn env(state: &AppState, caller: &Caller) -> RequestEnv {
    RequestEnv {
        source: caller.source,
        now: (state.clock)(),
    }
}

/// Allows `action` on the object `facts` describe, or gives the policy's denial.
fn check_facts(
    state: &AppState,
    caller: &Caller,
    action: Action,
    facts: SecretFacts<'_>,
) -> Result<(), ApiError> {
    authorize(
        &caller.principal,
        action,
        Target::Secret(facts),
        env(state, caller),
    )?;
    Ok(())
}

/// Allows `action` on the secret in `row`, or gives the policy's denial.
pub fn check(
    state: &AppState,
    caller: &Caller,
    action: Action,
    row: &SecretRow,
) -> Result<(), ApiError> {
    let facts = SecretFacts {
        id: row.id.into(),
        project: &row.project,
        creator: &row.creator,
        acl: &row.acl,
        owning_service: row.owning_service.as_ref(),
    };
    check_facts(state, caller, action, facts)
}

/// Allows `action` on the order in `row` (orders have no ACL: the project's roles
/// decide), or gives the policy's denial.
pub fn check_order(
    state: &AppState,
    caller: &Caller,
    action: Action,
    row: &OrderRow,
) -> Result<(), ApiError> {
    let acl = domain::secret::acl::Acl::default();
    let facts = SecretFacts {
        id: Object::Order(row.id),
        project: &row.project,
        creator: &row.creator,
        acl: &acl,
        owning_service: None,
    };
    check_facts(state, caller, action, facts)
}

/// Allows `action` on the container in `row`, or gives the policy's denial.
pub fn check_container(
    state: &AppState,
    caller: &Caller,
    action: Action,
    row: &ContainerRow,
) -> Result<(), ApiError> {
    let facts = SecretFacts {
        id: row.id.into(),
        project: &row.project,
        creator: &row.creator,
        acl: &row.acl,
        owning_service: None,
    };
    check_facts(state, caller, action, facts)
}

/// Whether `caller` may read the metadata of the secret in `row` (list filtering).
pub fn may_read(state: &AppState, caller: &Caller, row: &SecretRow) -> bool {
    check(state, caller, Action::ReadSecret, row).is_ok()
}

/// The secret a lookup found, if `caller` may do `action` on it; otherwise the
/// policy's 403, or a 404 that says why it is not there (missing, or expired when).
/// An expired secret is authorized first, so its expiry is news only to those who
/// may read it.
pub fn readable<T>(
    state: &AppState,
    caller: &Caller,
    action: Action,
    id: SecretId,
    lookup: Lookup<T>,
    row: impl Fn(&T) -> &SecretRow,
) -> Result<T, ApiError> {
    match lookup {
        Lookup::Found(value) => {
            check(state, caller, action, row(&value))?;
            Ok(value)
        }
        Lookup::Expired(secret) => {
            check(state, caller, action, &secret)?;
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "secret {id} expired at {}",
                    secret.expiration.unwrap_or_default()
                ),
            ))
        }
        Lookup::PendingDeletion(secret) => {
            check(state, caller, action, &secret)?;
            Err(match secret.recovery_window_end() {
                Some(at) => scheduled_for_deletion(id, at, (state.clock)()).into(),
                None => not_found(caller, id),
            })
        }
        Lookup::Missing => Err(not_found(caller, id)),
    }
}

/// The secret a path names: its UUID, its full reference
/// (`krn:keyledger:<project>:secret:<name>-<suffix>`), or its name in the caller's
/// project. A name resolves only when exactly one live secret carries it; a reference
/// is compared whole, so no name can make a partial reference match another secret.
pub async fn resolve(state: &AppState, caller: &Caller, raw: &str) -> Result<SecretId, ApiError> {
    if let Ok(id) = SecretId::parse(raw) {
        // No secret has a UUID of a version RFC 9562 does not define; Barbican's
        // clients recognise this answer by its first sentence.
        let version = id.as_uuid().get_version_num();
        if !(1..=8).contains(&version) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "Provided secret id is invalid. {raw} is not a UUID of a defined version \
                     (its version digit is {version:x}); copy the id from the secret_ref"
                ),
            ));
        }
        return Ok(id);
    }
    // Boxed: looking a name up takes kilobytes of future, which inline would make every
    // request addressed by id carry (and move) as well.
    Box::pin(by_name_or_reference(state, caller, raw)).await
}

/// [`resolve`] of a name or a reference.
async fn by_name_or_reference(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> Result<SecretId, ApiError> {
    let project = &caller.principal.project;
    let (found, what) = if raw.starts_with(PREFIX) {
        (
            state.read.by_reference(raw).await?,
            format!("the reference {raw:?}"),
        )
    } else {
        (
            state.read.by_name(project, raw, (state.clock)()).await?,
            format!("the name {raw:?} in project {project}"),
        )
    };
    match found.as_slice() {
        [one] => candidate_id(one),
        [] => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no live secret has {what}; address a secret by its id (a UUID), its full \
                 reference (krn:keyledger:…) or its exact name"
            ),
        )),
        many => {
            // Only the secrets the caller may read are named; the others are counted.
            // Still refused, never resolved among the visible ones: whether a secret is
            // visible can hang on the hour or the caller's network, and a write (a
            // delete) must not land on another secret for that.
            let shown = visible_candidates(state, caller, many.to_vec()).await?;
            let mut named: Vec<String> = shown.iter().map(|c| c.reference.clone()).collect();
            if shown.len() < many.len() {
                named.push(format!("{} you may not read", many.len() - shown.len()));
            }
            Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "{what} matches {} secrets: {}; use one of these references or an id",
                    many.len(),
                    named.join(", ")
                ),
            ))
        }
    }
}

fn candidate_id(candidate: &Candidate) -> Result<SecretId, ApiError> {
    SecretId::parse(&candidate.id).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the read model holds a malformed secret id; rebuild the read model",
        )
    })
}

/// Of the secrets one name matches, those `caller` may read (its metadata; one in its
/// recovery window or expired counts): an ambiguity names those alone, so that it does
/// not show a caller the private secrets a listing hides.
pub(crate) async fn visible_candidates(
    state: &AppState,
    caller: &Caller,
    found: Vec<Candidate>,
) -> Result<Vec<Candidate>, ApiError> {
    let now = (state.clock)();
    let mut visible = Vec::with_capacity(found.len());
    for candidate in found {
        let id = candidate_id(&candidate)?;
        let row = match state.read.get_secret(id, now).await?.value {
            Lookup::Found(row) => row,
            Lookup::PendingDeletion(row) | Lookup::Expired(row) => *row,
            Lookup::Missing => continue,
        };
        if may_read(state, caller, &row) {
            visible.push(candidate);
        }
    }
    Ok(visible)
}

/// The not-found answer for a secret the read model does not show.
pub fn not_found(caller: &Caller, id: SecretId) -> ApiError {
    // Barbican's clients recognise the answer by its first words.
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "Secret not found: no secret {id} in project {}",
            caller.principal.project
        ),
    )
}

/// The secret a change addresses (an id, reference or name) and the project that owns
/// it, for the command to address.
pub async fn change_target(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> Result<(SecretId, Option<String>), ApiError> {
    let id = resolve(state, caller, raw).await?;
    Ok((id, owner_project(state, id).await?.map(String::from)))
}

/// The project that owns secret `id`, as the read model knows it, for a write to
/// address. `None` when the read model does not show it: the command then addresses
/// the caller's own project and answers for itself.
pub async fn owner_project(state: &AppState, id: SecretId) -> Result<Option<ProjectId>, ApiError> {
    let lookup = state.read.get_secret(id, (state.clock)()).await?;
    Ok(match lookup.value {
        Lookup::Found(row) => Some(row.project),
        Lookup::Expired(row) | Lookup::PendingDeletion(row) => Some(row.project),
        Lookup::Missing => None,
    })
}
