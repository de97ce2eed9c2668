//! `decide`: the rules of the Secret aggregate.

use std::collections::BTreeSet;

use crate::ids::{ProjectId, SecretId};
use crate::policy;
use crate::policy::{Action, RequestEnv, SecretFacts, Target};
use crate::principal::{Actor, Principal, SystemTask};
use crate::secret::command::{DeleteMode, Presence, SecretCommand};
use crate::secret::event::{
    AclSet, DeletionScheduled, DescriptionSet, MetadatumDeleted, MetadatumSet, PayloadStored,
    SecretConsumerChanged, SecretCreated, SecretDeleted, SecretEvent, SecretExpired,
    SecretRestored, TagsRemoved, TagsSet,
};
use crate::secret::fields::{MAX_METADATA_ENTRIES, MAX_TAGS};
use crate::secret::state::{Secret, SecretState};
use crate::secret::version::{Lifecycle, Stage};
use crate::{ErrorCode, Rejection};

mod rotation;
mod values;

use crate::timestamp::Timestamp;
pub use values::prune;
use values::{move_stage, put_value};

/// What `decide` needs besides state and command: who asks, which secret, when, and
/// the deployment's lifecycle rules.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The caller: a principal from a verified token, or keyledger itself.
    pub actor: &'a Actor,
    /// The project that owns the secret.
    pub project: &'a ProjectId,
    /// The secret's id.
    pub id: SecretId,
    /// The current time.
    pub now: Timestamp,
    /// Retention of versions and recovery windows.
    pub lifecycle: &'a Lifecycle,
}

impl Context<'_> {
    fn not_found(&self) -> Rejection {
        Rejection::not_found(format!(
            "Secret not found: no secret {} in project {}",
            self.id, self.project
        ))
    }

    fn expired(&self, at: Timestamp) -> Rejection {
        Rejection::not_found(format!("secret {} expired at {at}", self.id))
    }

    /// The secret, if it exists at all (live, scheduled for deletion, or past its
    /// expiration without the Expire command having landed).
    fn existing<'s>(&self, state: &'s SecretState) -> Result<&'s Secret, Rejection> {
        match state {
            SecretState::Live(s) => Ok(s),
            SecretState::Expired(at) => Err(self.expired(*at)),
            SecretState::Absent | SecretState::Deleted => Err(self.not_found()),
        }
    }

    /// The secret a change needs: live, unexpired and not scheduled for deletion.
    /// The secret, also in its recovery window or expired, but not once that window
    /// has ended: it is deleted then, whether or not the scheduler's purge has landed.
    fn present<'s>(&self, state: &'s SecretState) -> Result<&'s Secret, Rejection> {
        let s = self.existing(state)?;
        match s.purge_at {
            Some(at) if self.now >= at => Err(window_ended(self.id, at)),
            _ => Ok(s),
        }
    }

    fn live<'s>(&self, state: &'s SecretState) -> Result<&'s Secret, Rejection> {
        let s = self.existing(state)?;
        if let Some(exp) = s.attributes.expiration
            && exp.has_passed(self.now)
        {
            return Err(self.expired(exp.at()));
        }
        if let Some(at) = s.purge_at {
            return Err(scheduled_for_deletion(self.id, at, self.now));
        }
        Ok(s)
    }
}

/// The answer for a secret scheduled for deletion, on every path: in its recovery
/// window, what to do; once the window has ended, that it is deleted.
pub fn scheduled_for_deletion(id: SecretId, purge_at: Timestamp, now: Timestamp) -> Rejection {
    if now >= purge_at {
        return window_ended(id, purge_at);
    }
    Rejection::not_found(format!(
        "secret {id}{SCHEDULED_FOR_DELETION}{purge_at}; restore it with the \
         secret.restore command (POST /v1/secrets/{id}/restore, or `keyledger secret restore \
         {id}`)"
    ))
}

const SCHEDULED_FOR_DELETION: &str = " is scheduled for deletion on ";

/// The answer for a secret whose recovery window has ended, before or after the
/// scheduler's purge lands (which may be minutes behind, hours after downtime): as
/// AWS, it is gone from the window's last instant, restore included.
fn window_ended(id: SecretId, purge_at: Timestamp) -> Rejection {
    Rejection::not_found(format!(
        "secret {id}'s recovery window ended at {purge_at}: it is deleted and can no longer \
         be restored"
    ))
}

/// Whether a refusal (its code and message, as a reply carries them) is
/// [`scheduled_for_deletion`]'s: AWS's API answers it in its own terms.
pub fn is_scheduled_for_deletion(code: ErrorCode, message: &str) -> bool {
    code == ErrorCode::NotFound && message.contains(SCHEDULED_FOR_DELETION)
}

/// The first sentence of the refusal to delete a secret that has consumers (Barbican's
/// clients recognise it).
const HAS_CONSUMERS: &str = "Secret cannot be deleted as it has consumers.";

/// Whether a refusal (its code and message) is the one of a deletion that consumers
/// block.
pub fn is_blocked_by_consumers(code: ErrorCode, message: &str) -> bool {
    code == ErrorCode::Invalid && message.starts_with(HAS_CONSUMERS)
}

fn action_of(command: &SecretCommand) -> Option<Action> {
    Some(match command {
        SecretCommand::Create(_) => Action::CreateSecret,
        SecretCommand::PutPayload(_)
        | SecretCommand::PutValue(_)
        | SecretCommand::MoveStage { .. }
        | SecretCommand::SetMetadatum { .. }
        | SecretCommand::DeleteMetadatum(_)
        | SecretCommand::ReplaceMetadata(_)
        | SecretCommand::SetTags(_)
        | SecretCommand::RemoveTags(_)
        | SecretCommand::Rotate(_)
        | SecretCommand::CancelRotation
        | SecretCommand::SetDescription(_) => Action::UpdateSecret,
        // Declaring a use needs what the use needs: reading the secret.
        SecretCommand::RegisterConsumer(_) | SecretCommand::RemoveConsumer(_) => Action::ReadSecret,
        SecretCommand::Delete { .. } | SecretCommand::Restore | SecretCommand::Expire => {
            Action::DeleteSecret
        }
        SecretCommand::SetAcl(_) => Action::ChangeAcl,
        SecretCommand::Purge
        | SecretCommand::PruneVersions
        | SecretCommand::StartScheduledRotation { .. }
        | SecretCommand::RecordRotationStep(_)
        | SecretCommand::CreateForOrder { .. } => {
            return None;
        }
    })
}

/// Allows the command for the actor, or says why not. keyledger's scheduler may only
/// run its own tasks; principals go through the policy. `decide` calls it first; the
/// command loop calls it before anything else too, so no answer (not even "already
/// done" for a retried command id) reaches a caller the policy refuses.
pub fn authorize(
    state: &SecretState,
    command: &SecretCommand,
    ctx: &Context<'_>,
) -> Result<(), Rejection> {
    let who: &Principal = match ctx.actor {
        Actor::System(system) => {
            return match (system.system, command) {
                (
                    SystemTask::Scheduler,
                    SecretCommand::Expire | SecretCommand::Purge | SecretCommand::PruneVersions,
                )
                | (SystemTask::OrderWorker, SecretCommand::CreateForOrder { .. })
                | (
                    SystemTask::Rotator,
                    SecretCommand::StartScheduledRotation { .. }
                    | SecretCommand::RecordRotationStep(_),
                ) => Ok(()),
                _ => Err(Rejection::forbidden(format!(
                    "{} is not a task of keyledger's {}",
                    command.name(),
                    system.system
                ))),
            };
        }
        Actor::User(p) => p,
    };
    let Some(action) = action_of(command) else {
        return Err(Rejection::forbidden(format!(
            "{} is issued by keyledger itself only",
            command.name()
        )));
    };
    let target = match (state, command) {
        (_, SecretCommand::Create(_) | SecretCommand::CreateForOrder { .. }) => Target::Project {
            project: ctx.project,
            secret: None,
        },
        (SecretState::Live(secret), _) => Target::Secret(SecretFacts {
            id: ctx.id.into(),
            project: ctx.project,
            creator: &secret.creator,
            acl: &secret.acl,
            owning_service: secret.owning_service.as_ref(),
        }),
        (_, _) => Target::Project {
            project: ctx.project,
            secret: Some(ctx.id.into()),
        },
    };
    let env = RequestEnv {
        source: None,
        now: ctx.now,
    };
    policy::authorize(who, action, target, env)?;
    if let SecretCommand::Create(create) = command
        && let Some(service) = &create.owning_service
        && who.service.as_ref() != Some(service)
    {
        return Err(Rejection::forbidden(format!(
            "only service {service} may create a secret managed by {service}; your token {}",
            who.service.as_ref().map_or_else(
                || "names no service".to_owned(),
                |s| format!("is for service {s}")
            )
        )));
    }
    Ok(())
}

/// Decides what `command` does to a secret in `state`: the events to append, in order,
/// or why it is refused. No events means there is nothing to do (a retry, or a stage
/// already where it should be). Pure: same inputs, same answer.
pub fn decide(
    state: &SecretState,
    command: &SecretCommand,
    ctx: Context<'_>,
) -> Result<Vec<SecretEvent>, Rejection> {
    authorize(state, command, &ctx)?;
    let events = match command {
        SecretCommand::CreateForOrder { create, creator } => created(state, create, creator, &ctx)?,
        SecretCommand::Create(create) => {
            let creator = &ctx
                .actor
                .principal()
                .ok_or_else(|| Rejection::forbidden("only a user or a service creates secrets"))?
                .user;
            created(state, create, creator, &ctx)?
        }
        SecretCommand::PutPayload(payload) => {
            let secret = ctx.live(state)?;
            if !secret.versions.is_empty() {
                return Err(Rejection::conflict(format!(
                    "secret {} already has a payload; a payload is stored once. Create a new \
                     secret to store a different value, or add a version with the \
                     secret.value.put command",
                    ctx.id
                )));
            }
            vec![stored(payload, [Stage::Current].into(), ctx.now)]
        }
        SecretCommand::PutValue(put) => put_value(ctx.live(state)?, put, &ctx)?,
        SecretCommand::MoveStage { stage, to, from } => {
            move_stage(ctx.live(state)?, stage, *to, *from, &ctx)?
        }
        SecretCommand::SetMetadatum {
            key,
            value,
            presence,
        } => {
            let metadata = &ctx.live(state)?.attributes.metadata;
            let key_name = key.as_str();
            match (presence, metadata.get(key)) {
                (Presence::Absent, Some(_)) => {
                    return Err(Rejection::conflict(format!(
                        "metadata key {key_name:?} of secret {} already exists; change it with \
                         PUT /v1/secrets/{}/metadata/{key_name}",
                        ctx.id, ctx.id
                    )));
                }
                (Presence::Present, None) => {
                    return Err(metadatum_not_found(&ctx, key_name));
                }
                (_, Some(old)) if old == value => vec![],
                _ if !metadata.contains_key(key) && metadata.len() >= MAX_METADATA_ENTRIES => {
                    return Err(Rejection::invalid(format!(
                        "secret {} already has {MAX_METADATA_ENTRIES} metadata entries, the \
                         limit; change an existing key instead of adding {key_name:?}",
                        ctx.id
                    )));
                }
                _ => vec![SecretEvent::MetadatumSet(MetadatumSet {
                    key: key.clone(),
                    value: value.clone(),
                })],
            }
        }
        SecretCommand::DeleteMetadatum(key) => {
            if !ctx.live(state)?.attributes.metadata.contains_key(key) {
                return Err(metadatum_not_found(&ctx, key.as_str()));
            }
            vec![SecretEvent::MetadatumDeleted(MetadatumDeleted {
                key: key.clone(),
            })]
        }
        SecretCommand::ReplaceMetadata(new) => {
            let old = &ctx.live(state)?.attributes.metadata;
            let removed = old
                .keys()
                .filter(|k| !new.contains_key(*k))
                .map(|key| SecretEvent::MetadatumDeleted(MetadatumDeleted { key: key.clone() }));
            let set = new
                .iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .map(|(key, value)| {
                    SecretEvent::MetadatumSet(MetadatumSet {
                        key: key.clone(),
                        value: value.clone(),
                    })
                });
            removed.chain(set).collect()
        }
        SecretCommand::SetTags(tags) => {
            let secret = ctx.live(state)?;
            let total = secret
                .tags
                .keys()
                .chain(tags.keys())
                .collect::<BTreeSet<_>>()
                .len();
            if total > MAX_TAGS {
                return Err(Rejection::invalid(format!(
                    "secret {} would have {total} tags; a secret carries at most {MAX_TAGS}. \
                     Remove some first",
                    ctx.id
                )));
            }
            let changed: crate::secret::fields::Tags = tags
                .iter()
                .filter(|(k, v)| secret.tags.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if changed.is_empty() {
                vec![]
            } else {
                vec![SecretEvent::TagsSet(TagsSet { tags: changed })]
            }
        }
        SecretCommand::RemoveTags(keys) => {
            let secret = ctx.live(state)?;
            let keys: BTreeSet<_> = keys
                .iter()
                .filter(|k| secret.tags.contains_key(*k))
                .cloned()
                .collect();
            if keys.is_empty() {
                vec![]
            } else {
                vec![SecretEvent::TagsRemoved(TagsRemoved { keys })]
            }
        }
        SecretCommand::RegisterConsumer(consumer) => {
            if ctx.live(state)?.consumers.contains(consumer) {
                vec![]
            } else {
                vec![SecretEvent::ConsumerRegistered(SecretConsumerChanged {
                    consumer: consumer.clone(),
                })]
            }
        }
        SecretCommand::RemoveConsumer(consumer) => {
            if !ctx.present(state)?.consumers.contains(consumer) {
                return Err(Rejection::not_found(format!(
                    "secret {} has no consumer {consumer}",
                    ctx.id
                )));
            }
            vec![SecretEvent::ConsumerRemoved(SecretConsumerChanged {
                consumer: consumer.clone(),
            })]
        }
        SecretCommand::SetAcl(change) => {
            let secret = ctx.live(state)?;
            vec![SecretEvent::AclSet(AclSet {
                read: change.apply(&secret.acl),
            })]
        }
        SecretCommand::Delete {
            mode: DeleteMode::Now,
            ignore_consumers,
        } => {
            // Allowed on an expired secret and during a recovery window: it is how their
            // keys get destroyed at once. Not once the window has ended: the secret is
            // deleted then, and the scheduler's purge destroys the keys.
            let secret = ctx.present(state)?;
            consumers_allow(secret, *ignore_consumers, &ctx)?;
            vec![SecretEvent::Deleted(SecretDeleted {
                destroyed_keys: secret.key_ids(),
            })]
        }
        SecretCommand::Delete {
            mode: DeleteMode::After(asked),
            ignore_consumers,
        } => {
            let secret = ctx.present(state)?;
            consumers_allow(secret, *ignore_consumers, &ctx)?;
            if let Some(at) = secret.purge_at {
                return Err(Rejection::conflict(format!(
                    "secret {} is already scheduled for deletion on {at}; restore it, or force \
                     the deletion to delete it now",
                    ctx.id
                )));
            }
            ctx.live(state)?;
            let window = ctx.lifecycle.recovery.check(*asked)?;
            let purge_at = ctx.now.plus(window).ok_or_else(|| {
                Rejection::invalid("the recovery window ends past year 9999; choose a shorter one")
            })?;
            vec![SecretEvent::DeletionScheduled(DeletionScheduled {
                purge_at,
            })]
        }
        SecretCommand::Restore => {
            let secret = ctx.existing(state)?;
            if let Some(exp) = secret.attributes.expiration
                && exp.has_passed(ctx.now)
            {
                return Err(ctx.expired(exp.at()));
            }
            let Some(purge_at) = secret.purge_at else {
                return Err(Rejection::conflict(format!(
                    "secret {} is not scheduled for deletion; there is nothing to restore",
                    ctx.id
                )));
            };
            if ctx.now >= purge_at {
                return Err(window_ended(ctx.id, purge_at));
            }
            vec![SecretEvent::Restored(SecretRestored {})]
        }
        SecretCommand::Expire => {
            let secret = ctx.present(state)?;
            match secret.attributes.expiration {
                Some(exp) if exp.has_passed(ctx.now) => {
                    vec![SecretEvent::Expired(SecretExpired {
                        expired_at: exp.at(),
                        destroyed_keys: secret.key_ids(),
                    })]
                }
                Some(exp) => {
                    return Err(Rejection::conflict(format!(
                        "secret {} expires at {}, not before; delete it to remove it now",
                        ctx.id,
                        exp.at()
                    )));
                }
                None => {
                    return Err(Rejection::conflict(format!(
                        "secret {} has no expiration; delete it to remove it",
                        ctx.id
                    )));
                }
            }
        }
        SecretCommand::Purge => {
            let secret = ctx.existing(state)?;
            match secret.purge_at {
                Some(at) if at <= ctx.now => vec![SecretEvent::Deleted(SecretDeleted {
                    destroyed_keys: secret.key_ids(),
                })],
                Some(at) => {
                    return Err(Rejection::conflict(format!(
                        "the recovery window of secret {} ends at {at}, not yet",
                        ctx.id
                    )));
                }
                None => {
                    return Err(Rejection::conflict(format!(
                        "secret {} is not scheduled for deletion",
                        ctx.id
                    )));
                }
            }
        }
        SecretCommand::PruneVersions => {
            let secret = ctx.existing(state)?;
            prune(secret, ctx.now, ctx.lifecycle.retention)
                .into_iter()
                .collect()
        }
        SecretCommand::SetDescription(description) => {
            if ctx.live(state)?.attributes.description == *description {
                vec![]
            } else {
                vec![SecretEvent::DescriptionSet(DescriptionSet {
                    description: description.clone(),
                })]
            }
        }
        SecretCommand::Rotate(r) => rotation::rotate(ctx.live(state)?, r, &ctx)?,
        SecretCommand::CancelRotation => rotation::cancel(ctx.present(state)?),
        SecretCommand::StartScheduledRotation { version } => {
            rotation::start_scheduled(ctx.live(state)?, *version, &ctx)?
        }
        SecretCommand::RecordRotationStep(r) => rotation::record_step(ctx.live(state)?, r, &ctx)?,
    };
    Ok(events)
}

/// The events of a creation by `creator`.
fn created(
    state: &SecretState,
    create: &crate::secret::command::CreateSecret,
    creator: &crate::ids::UserId,
    ctx: &Context<'_>,
) -> Result<Vec<SecretEvent>, Rejection> {
    if !matches!(state, SecretState::Absent) {
        return Err(Rejection::conflict(format!(
            "secret {} already exists; send a new command_id to create another secret",
            ctx.id
        )));
    }
    if let Some(exp) = create.attributes.expiration
        && exp.has_passed(ctx.now)
    {
        return Err(Rejection::invalid(format!(
            "expiration {} is not in the future (it is now {}); choose a later time",
            exp.at(),
            ctx.now
        )));
    }
    let mut events = vec![SecretEvent::Created(SecretCreated {
        attributes: create.attributes.clone(),
        creator: creator.clone(),
        owning_service: create.owning_service.clone(),
        tags: create.tags.clone(),
    })];
    if let Some(payload) = &create.payload {
        events.push(stored(payload, [Stage::Current].into(), ctx.now));
    }
    Ok(events)
}

pub(super) fn stored(
    payload: &crate::secret::payload::SealedPayload,
    stages: BTreeSet<Stage>,
    now: Timestamp,
) -> SecretEvent {
    SecretEvent::PayloadStored(PayloadStored {
        payload: payload.clone(),
        stages,
        created: Some(now),
    })
}

/// Refuses to delete a secret services still use, unless told to ignore them.
fn consumers_allow(secret: &Secret, ignore: bool, ctx: &Context<'_>) -> Result<(), Rejection> {
    if secret.consumers.is_empty() || ignore {
        return Ok(());
    }
    let names: Vec<String> = secret.consumers.iter().map(ToString::to_string).collect();
    Err(Rejection::invalid(format!(
        "{HAS_CONSUMERS} Secret {} is used by {}; unregister them first, or force the \
         deletion (ignore_consumers on NATS, ?force=true over HTTP)",
        ctx.id,
        names.join(", ")
    )))
}

fn metadatum_not_found(ctx: &Context<'_>, key: &str) -> Rejection {
    Rejection::not_found(format!(
        "secret {} has no metadata key {key:?}; add it with POST /v1/secrets/{}/metadata",
        ctx.id, ctx.id
    ))
}

#[cfg(test)]
mod tests;
