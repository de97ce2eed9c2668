//! The rules of rotation: configuring it, starting a run, recording each step's
//! outcome, and cancelling.

use crate::Rejection;
use crate::ids::VersionId;
use crate::secret::command::{RecordStep, Rotate};
use crate::secret::event::{
    RotationCancelled, RotationConfigured, RotationStarted, RotationStepFailed,
    RotationStepSucceeded, RotationSucceeded, SecretEvent,
};
use crate::secret::rotation::{Rotation, RotationRules, Step, StepResult, clean_reason};
use crate::secret::state::Secret;
use crate::secret::version::Stage;

use super::Context;

/// AWS's refusal while a rotation runs, with where it stands.
fn in_progress(secret: &Secret, ctx: &Context<'_>) -> Option<Rejection> {
    let run = secret.rotation.as_ref()?.run.as_ref()?;
    let error = run
        .last_error
        .as_ref()
        .map_or_else(String::new, |e| format!("; its last attempt failed: {e}"));
    Some(Rejection::conflict(format!(
        "A previous rotation isn't complete. Secret {} is rotating to version {} (started {}), \
         at step {} attempt {}{error}. Wait for it to finish, or cancel it with \
         CancelRotateSecret",
        ctx.id, run.version, run.started, run.step, run.attempt
    )))
}

fn next_after(
    rules: Option<&RotationRules>,
    ctx: &Context<'_>,
) -> Option<crate::timestamp::Timestamp> {
    rules.and_then(|r| r.next_after(ctx.now))
}

/// `RotateSecret`: configure, start, or both.
pub(super) fn rotate(
    secret: &Secret,
    rotate: &Rotate,
    ctx: &Context<'_>,
) -> Result<Vec<SecretEvent>, Rejection> {
    let current = secret.rotation.as_ref();
    let handler = rotate
        .handler
        .clone()
        .or_else(|| current.map(|r| r.handler.clone()))
        .ok_or_else(|| {
            Rejection::invalid(format!(
                "secret {} has no rotation handler; name one in RotationLambdaARN (the NATS \
                 service that answers keyledger.rotate.<name>)",
                ctx.id
            ))
        })?;
    let rules = rotate
        .rules
        .clone()
        .or_else(|| current.and_then(|r| r.rules.clone()));
    // The same token again while its run goes on is a retry: nothing more to start.
    let retried = current
        .and_then(|r| r.run.as_ref())
        .is_some_and(|run| run.version == rotate.version);
    if rotate.immediately
        && !retried
        && let Some(refusal) = in_progress(secret, ctx)
    {
        return Err(refusal);
    }
    let mut events = Vec::new();
    let changed = current.is_none_or(|r| {
        !r.enabled || r.handler != handler || r.rules != rules || rotate.rules.is_some()
    });
    if changed {
        // The schedule counts from the last rotation, or from now for a new one.
        let base = current
            .and_then(|r| r.last_rotated)
            .filter(|_| !rotate.immediately)
            .unwrap_or(ctx.now);
        events.push(SecretEvent::RotationConfigured(RotationConfigured {
            handler,
            next_rotation: rules.as_ref().and_then(|r| r.next_after(base)),
            rules: rules.clone(),
        }));
    }
    if rotate.immediately && !retried {
        if secret.version(rotate.version).is_some() {
            return Err(Rejection::conflict(format!(
                "ClientRequestToken names version {} of secret {}, which exists; send a new \
                 token to start a rotation",
                rotate.version, ctx.id
            )));
        }
        events.push(started(rotate.version, rules.as_ref(), ctx));
    }
    Ok(events)
}

fn started(version: VersionId, rules: Option<&RotationRules>, ctx: &Context<'_>) -> SecretEvent {
    SecretEvent::RotationStarted(RotationStarted {
        version,
        at: ctx.now,
        next_rotation: next_after(rules, ctx),
    })
}

/// The runner starts the scheduled rotation that is due.
pub(super) fn start_scheduled(
    secret: &Secret,
    version: VersionId,
    ctx: &Context<'_>,
) -> Result<Vec<SecretEvent>, Rejection> {
    let rotation = configured(secret, ctx)?;
    if let Some(refusal) = in_progress(secret, ctx) {
        return Err(refusal);
    }
    match rotation.due(ctx.id) {
        Some(due) if rotation.enabled && due <= ctx.now => {}
        _ => {
            return Err(Rejection::conflict(format!(
                "no rotation of secret {} is due",
                ctx.id
            )));
        }
    }
    if secret.version(version).is_some() {
        return Err(Rejection::conflict(format!(
            "version {version} of secret {} exists; the scheduled rotation already ran",
            ctx.id
        )));
    }
    Ok(vec![started(version, rotation.rules.as_ref(), ctx)])
}

fn configured<'s>(secret: &'s Secret, ctx: &Context<'_>) -> Result<&'s Rotation, Rejection> {
    secret
        .rotation
        .as_ref()
        .ok_or_else(|| Rejection::conflict(format!("secret {} has no rotation configured", ctx.id)))
}

/// The runner records one attempt at one step. Only the run's current step and
/// attempt are recorded, so two runners that asked for the same step record it once.
pub(super) fn record_step(
    secret: &Secret,
    record: &RecordStep,
    ctx: &Context<'_>,
) -> Result<Vec<SecretEvent>, Rejection> {
    let rotation = configured(secret, ctx)?;
    let Some(run) = rotation.run.as_ref().filter(|r| {
        r.version == record.version && r.step == record.step && r.attempt == record.attempt
    }) else {
        return Err(Rejection::conflict(format!(
            "secret {} is not at step {} attempt {} of a rotation to version {}; another runner \
             recorded it, or the rotation was cancelled",
            ctx.id, record.step, record.attempt, record.version
        )));
    };
    let failed = |reason: String, retry_at| {
        SecretEvent::RotationStepFailed(RotationStepFailed {
            version: run.version,
            step: run.step,
            reason,
            retry_at,
        })
    };
    let lease = match &record.result {
        StepResult::Failed { reason, retry_at } => {
            return Ok(vec![failed(clean_reason(reason), *retry_at)]);
        }
        StepResult::Done { lease } => *lease,
    };
    // What each step must have left behind, checked here so a handler that answers
    // without doing its work fails with a reason that says so.
    match run.step {
        Step::Create if secret.version(run.version).is_none() => {
            return Ok(vec![failed(
                format!(
                    "createSecret answered, but version {} holds no value: the handler must \
                     store one with PutSecretValue(ClientRequestToken={}, \
                     VersionStages=[AWSPENDING])",
                    run.version, run.version
                ),
                None,
            )]);
        }
        Step::Finish if secret.stages.get(&Stage::Current) != Some(&run.version) => {
            return Ok(vec![failed(
                format!(
                    "finishSecret answered, but AWSCURRENT is not on version {}: the handler \
                     must move it there with UpdateSecretVersionStage",
                    run.version
                ),
                None,
            )]);
        }
        _ => {}
    }
    let mut events = vec![SecretEvent::RotationStepSucceeded(RotationStepSucceeded {
        version: run.version,
        step: run.step,
        lease,
    })];
    if run.step == Step::Finish {
        events.push(SecretEvent::RotationSucceeded(RotationSucceeded {
            version: run.version,
            at: ctx.now,
            next_rotation: next_after(rotation.rules.as_ref(), ctx).filter(|_| rotation.enabled),
        }));
    }
    Ok(events)
}

/// `CancelRotateSecret`: rotation off, a run under way stopped; AWSPENDING stays where
/// the run put it, named in the event.
pub(super) fn cancel(secret: &Secret) -> Vec<SecretEvent> {
    let Some(rotation) = &secret.rotation else {
        return vec![];
    };
    if !rotation.enabled && rotation.run.is_none() {
        return vec![];
    }
    let pending = rotation
        .run
        .as_ref()
        .map(|r| r.version)
        .filter(|v| secret.stages.get(&Stage::Pending) == Some(v));
    vec![SecretEvent::RotationCancelled(RotationCancelled {
        pending,
    })]
}
