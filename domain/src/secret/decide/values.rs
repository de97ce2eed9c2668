//! The rules of versions: storing a new value, moving stages, and the retention of
//! deprecated versions.

use crate::Rejection;
use crate::ids::VersionId;
use crate::secret::command::PutValue;
use crate::secret::event::{SecretEvent, StageMoved, VersionsDestroyed};
use crate::secret::state::{Secret, SecretState, evolve};
use crate::secret::version::{MAX_LABELS_PER_VERSION, Retention, Stage};
use crate::timestamp::Timestamp;

use super::{Context, stored};

pub(super) fn put_value(
    secret: &Secret,
    put: &PutValue,
    ctx: &Context<'_>,
) -> Result<Vec<SecretEvent>, Rejection> {
    let id = put.payload.version_id;
    if secret.version(id).is_some() {
        // The handler answers a retry with the same payload before deciding; reaching
        // here means the payload differs.
        return Err(Rejection::conflict(format!(
            "client_request_token was already used for version {id} of secret {} with a \
             different payload; send a new client_request_token for a new value",
            ctx.id
        )));
    }
    let mut stages = put
        .stages
        .clone()
        .unwrap_or_else(|| [Stage::Current].into());
    // As AWS: a secret's first version is current, whatever other stages it is given,
    // so that a secret with a value always has a current one. (Counted in the limit
    // below, which then says so.)
    let made_current =
        secret.versions.is_empty() && !stages.is_empty() && stages.insert(Stage::Current);
    if stages.is_empty() {
        return Err(Rejection::invalid(
            "stages is empty, so the new version would be deprecated at once; leave stages out \
             (the version becomes current) or name current or pending",
        ));
    }
    if stages.len() > MAX_LABELS_PER_VERSION {
        let mut refused = too_many_labels(ctx, id, stages.len());
        if made_current {
            refused.message += " (current included: a secret's first version is current)";
        }
        return Err(refused);
    }
    if stages.contains(&Stage::Previous) {
        return Err(Rejection::invalid(
            "stage previous cannot be given to a new version: it follows current, moving to \
             the version current leaves",
        ));
    }
    // Retention destroys a deprecated version only once it is `min_age` old: storing
    // faster than that would grow a secret without bound, so there is a ceiling (as
    // AWS's quota of versions per secret).
    let ceiling = ctx.lifecycle.retention.ceiling();
    let younger = secret.versions.len()
        - prune(secret, ctx.now, ctx.lifecycle.retention).map_or(0, |e| match e {
            SecretEvent::VersionsDestroyed(d) => d.versions.len(),
            _ => 0,
        });
    if younger >= ceiling {
        return Err(Rejection::conflict(format!(
            "secret {} holds {younger} versions, the most it may hold; deprecated versions \
             are destroyed once they are {} old, so store the next value later (or reuse a \
             version with a stage move)",
            ctx.id,
            crate::secret::version::human(ctx.lifecycle.retention.min_age)
        )));
    }
    let mut events = vec![stored(&put.payload, stages.clone(), ctx.now)];
    if stages.contains(&Stage::Current)
        && let Some(old) = secret.stages.get(&Stage::Current)
    {
        events.push(SecretEvent::StageMoved(StageMoved {
            stage: Stage::Previous,
            version: Some(*old),
        }));
    }
    Ok(with_retention(secret, events, ctx))
}

pub(super) fn move_stage(
    secret: &Secret,
    stage: &Stage,
    to: Option<VersionId>,
    from: Option<VersionId>,
    ctx: &Context<'_>,
) -> Result<Vec<SecretEvent>, Rejection> {
    let holder = secret.stages.get(stage).copied();
    let name = stage.as_str();
    if let Some(from) = from
        && holder != Some(from)
    {
        let now_on = holder.map_or_else(|| "no version".to_owned(), |h| format!("version {h}"));
        return Err(Rejection::conflict(format!(
            "stage {name} is on {now_on}, not on version {from}; read the versions again and \
             name where it is now"
        )));
    }
    let Some(to) = to else {
        if from.is_none() {
            return Err(Rejection::invalid(
                "give the version to move the stage to (move_to), the version to take it off \
                 (remove_from), or both",
            ));
        }
        if *stage == Stage::Current {
            return Err(Rejection::invalid(
                "stage current cannot be removed, only moved: name the version it moves to",
            ));
        }
        return Ok(vec![SecretEvent::StageMoved(StageMoved {
            stage: stage.clone(),
            version: None,
        })]);
    };
    if secret.version(to).is_none() {
        return Err(Rejection::not_found(format!(
            "secret {} has no version {to} (destroyed versions cannot take a stage)",
            ctx.id
        )));
    }
    if holder == Some(to) {
        return Ok(vec![]);
    }
    if let (Some(h), None) = (holder, from) {
        return Err(Rejection::conflict(format!(
            "stage {name} is on version {h}; to move it, also name that version (remove_from), \
             so a move never takes it from a version you did not mean"
        )));
    }
    let labels = secret.stages_of(to).len() + 1;
    if labels > MAX_LABELS_PER_VERSION {
        return Err(too_many_labels(ctx, to, labels));
    }
    let mut events = vec![SecretEvent::StageMoved(StageMoved {
        stage: stage.clone(),
        version: Some(to),
    })];
    if *stage == Stage::Current
        && let Some(old) = holder
    {
        events.push(SecretEvent::StageMoved(StageMoved {
            stage: Stage::Previous,
            version: Some(old),
        }));
    }
    Ok(with_retention(secret, events, ctx))
}

/// AWS's quota of labels on one version.
fn too_many_labels(ctx: &Context<'_>, version: VersionId, labels: usize) -> Rejection {
    Rejection::invalid(format!(
        "version {version} of secret {} would carry {labels} staging labels; a version \
         carries at most {MAX_LABELS_PER_VERSION}. Remove a label first",
        ctx.id
    ))
}

/// Appends the destruction of versions that retention no longer keeps once `events`
/// have applied.
fn with_retention(
    secret: &Secret,
    mut events: Vec<SecretEvent>,
    ctx: &Context<'_>,
) -> Vec<SecretEvent> {
    let after = events
        .iter()
        .fold(SecretState::Live(Box::new(secret.clone())), evolve);
    if let SecretState::Live(after) = after {
        events.extend(prune(&after, ctx.now, ctx.lifecycle.retention));
    }
    events
}

/// The deprecated versions retention lets go: while a secret holds more than
/// `retention.keep` versions, its oldest deprecated ones at least `min_age` old.
pub fn prune(secret: &Secret, now: Timestamp, retention: Retention) -> Option<SecretEvent> {
    let excess = secret.versions.len().saturating_sub(retention.keep);
    let doomed: Vec<_> = secret
        .versions
        .iter()
        .filter(|v| secret.stages_of(v.id).is_empty())
        .filter(|v| v.created.is_none_or(|c| now.since(c) >= retention.min_age))
        .take(excess)
        .collect();
    if doomed.is_empty() {
        return None;
    }
    Some(SecretEvent::VersionsDestroyed(VersionsDestroyed {
        versions: doomed.iter().map(|v| v.id).collect(),
        destroyed_keys: doomed.iter().map(|v| v.key_id).collect(),
    }))
}
