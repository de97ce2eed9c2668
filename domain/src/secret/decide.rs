//! `decide`: the rules of the Secret aggregate.

use std::collections::BTreeSet;

use crate::Rejection;
use crate::ids::{ProjectId, SecretId};
use crate::policy::{Action, RequestEnv, SecretFacts, Target, authorize};
use crate::principal::{Actor, Principal};
use crate::secret::command::{DeleteMode, Presence, PutValue, SecretCommand};
use crate::secret::event::{
    AclSet, DeletionScheduled, MetadatumDeleted, MetadatumSet, PayloadStored, SecretCreated,
    SecretDeleted, SecretEvent, SecretExpired, SecretRestored, StageMoved, TagsRemoved, TagsSet,
    VersionsDestroyed,
};
use crate::secret::fields::{MAX_METADATA_ENTRIES, MAX_TAGS};
use crate::secret::state::{Secret, SecretState, evolve};
use crate::secret::version::{Lifecycle, Retention, Stage};
use crate::timestamp::Timestamp;

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
            "secret {} not found in project {}",
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
    fn live<'s>(&self, state: &'s SecretState) -> Result<&'s Secret, Rejection> {
        let s = self.existing(state)?;
        if let Some(exp) = s.attributes.expiration
            && exp.has_passed(self.now)
        {
            return Err(self.expired(exp.at()));
        }
        if let Some(at) = s.purge_at {
            return Err(scheduled_for_deletion(self.id, at));
        }
        Ok(s)
    }
}

/// The answer for a secret in its recovery window, on every path.
pub fn scheduled_for_deletion(id: SecretId, purge_at: Timestamp) -> Rejection {
    Rejection::not_found(format!(
        "secret {id} is scheduled for deletion on {purge_at}; restore it with the \
         secret.restore command (POST /v1/secrets/{id}/restore, or `keyledger secret restore \
         {id}`)"
    ))
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
        | SecretCommand::RemoveTags(_) => Action::UpdateSecret,
        SecretCommand::Delete(_) | SecretCommand::Restore | SecretCommand::Expire => {
            Action::DeleteSecret
        }
        SecretCommand::SetAcl(_) => Action::ChangeAcl,
        SecretCommand::Purge | SecretCommand::PruneVersions => return None,
    })
}

/// Allows the command for the actor, or says why not. keyledger's scheduler may only
/// run its own tasks; principals go through the policy.
fn authorize_command(
    state: &SecretState,
    command: &SecretCommand,
    ctx: &Context<'_>,
) -> Result<(), Rejection> {
    let who: &Principal = match ctx.actor {
        Actor::System(_) => {
            return match command {
                SecretCommand::Expire | SecretCommand::Purge | SecretCommand::PruneVersions => {
                    Ok(())
                }
                _ => Err(Rejection::forbidden(format!(
                    "{} is not a task of keyledger's scheduler",
                    command.name()
                ))),
            };
        }
        Actor::User(p) => p,
    };
    let Some(action) = action_of(command) else {
        return Err(Rejection::forbidden(format!(
            "{} is issued by keyledger's scheduler only",
            command.name()
        )));
    };
    let target = match (state, command) {
        (_, SecretCommand::Create(_)) => Target::Project {
            project: ctx.project,
            secret: None,
        },
        (SecretState::Live(secret), _) => Target::Secret(SecretFacts {
            id: ctx.id,
            project: ctx.project,
            creator: &secret.creator,
            acl: &secret.acl,
            owning_service: secret.owning_service.as_ref(),
        }),
        (_, _) => Target::Project {
            project: ctx.project,
            secret: Some(ctx.id),
        },
    };
    let env = RequestEnv {
        source: None,
        now: ctx.now,
    };
    authorize(who, action, target, env)?;
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
    authorize_command(state, command, &ctx)?;
    let events =
        match command {
            SecretCommand::Create(create) => {
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
                let mut events =
                    vec![SecretEvent::Created(SecretCreated {
                        attributes: create.attributes.clone(),
                        creator: ctx.actor.principal().map(|p| p.user.clone()).ok_or_else(
                            || Rejection::forbidden("only a user or a service creates secrets"),
                        )?,
                        owning_service: create.owning_service.clone(),
                        tags: create.tags.clone(),
                    })];
                if let Some(payload) = &create.payload {
                    events.push(stored(payload, [Stage::Current].into(), ctx.now));
                }
                events
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
                move_stage(ctx.live(state)?, *stage, *to, *from, &ctx)?
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
                let removed = old.keys().filter(|k| !new.contains_key(*k)).map(|key| {
                    SecretEvent::MetadatumDeleted(MetadatumDeleted { key: key.clone() })
                });
                let set =
                    new.iter()
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
            SecretCommand::SetAcl(change) => {
                let secret = ctx.live(state)?;
                vec![SecretEvent::AclSet(AclSet {
                    read: change.apply(&secret.acl),
                })]
            }
            SecretCommand::Delete(DeleteMode::Now) => {
                // Allowed on an expired secret and during a recovery window: it is how their
                // keys get destroyed at once.
                let secret = ctx.existing(state)?;
                vec![SecretEvent::Deleted(SecretDeleted {
                    destroyed_keys: secret.key_ids(),
                })]
            }
            SecretCommand::Delete(DeleteMode::After(asked)) => {
                let secret = ctx.existing(state)?;
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
                    Rejection::invalid(
                        "the recovery window ends past year 9999; choose a shorter one",
                    )
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
                if secret.purge_at.is_none() {
                    return Err(Rejection::conflict(format!(
                        "secret {} is not scheduled for deletion; there is nothing to restore",
                        ctx.id
                    )));
                }
                vec![SecretEvent::Restored(SecretRestored {})]
            }
            SecretCommand::Expire => {
                let secret = ctx.existing(state)?;
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
        };
    Ok(events)
}

fn stored(
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

fn metadatum_not_found(ctx: &Context<'_>, key: &str) -> Rejection {
    Rejection::not_found(format!(
        "secret {} has no metadata key {key:?}; add it with POST /v1/secrets/{}/metadata",
        ctx.id, ctx.id
    ))
}

fn put_value(
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
    let stages = put
        .stages
        .clone()
        .unwrap_or_else(|| [Stage::Current].into());
    if stages.is_empty() {
        return Err(Rejection::invalid(
            "stages is empty, so the new version would be deprecated at once; leave stages out \
             (the version becomes current) or name current or pending",
        ));
    }
    if stages.contains(&Stage::Previous) {
        return Err(Rejection::invalid(
            "stage previous cannot be given to a new version: it follows current, moving to \
             the version current leaves",
        ));
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

fn move_stage(
    secret: &Secret,
    stage: Stage,
    to: Option<crate::ids::VersionId>,
    from: Option<crate::ids::VersionId>,
    ctx: &Context<'_>,
) -> Result<Vec<SecretEvent>, Rejection> {
    let holder = secret.stages.get(&stage).copied();
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
        if stage == Stage::Current {
            return Err(Rejection::invalid(
                "stage current cannot be removed, only moved: name the version it moves to",
            ));
        }
        return Ok(vec![SecretEvent::StageMoved(StageMoved {
            stage,
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
    let mut events = vec![SecretEvent::StageMoved(StageMoved {
        stage,
        version: Some(to),
    })];
    if stage == Stage::Current
        && let Some(old) = holder
    {
        events.push(SecretEvent::StageMoved(StageMoved {
            stage: Stage::Previous,
            version: Some(old),
        }));
    }
    Ok(with_retention(secret, events, ctx))
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

#[cfg(test)]
mod tests {
    //! Given these events, when this command, then these events (or this error). Time
    //! is a parameter: the tests move it instead of waiting.

    use std::time::Duration;

    use super::*;
    use crate::ErrorCode;
    use crate::ids::{KeyId, Role, ServiceName, UserId, VersionId};
    use crate::secret::command::CreateSecret;
    use crate::secret::fields::{Attributes, Expiration, MetadataKey, MetadataValue};
    use crate::secret::payload::{ContentType, SealedPayload};
    use crate::secret::version::RecoveryWindow;
    use uuid::Uuid;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_iso8601("t", s).unwrap()
    }

    fn now() -> Timestamp {
        at("2026-11-22T10:00:00Z")
    }

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    fn alice() -> Principal {
        Principal {
            user: UserId::parse("alice").unwrap(),
            project: ProjectId::parse("p1").unwrap(),
            roles: vec![Role::parse("admin").unwrap()],
            service: None,
        }
    }

    fn sealed(n: u128) -> SealedPayload {
        SealedPayload {
            version_id: VersionId::from_uuid(Uuid::from_u128(n)),
            key_id: KeyId::from_uuid(Uuid::from_u128(n + 100)),
            content_type: ContentType::TextPlain,
            nonce: vec![0; 12],
            ciphertext: vec![1; 20],
        }
    }

    fn create_with(payload: Option<SealedPayload>, owning_service: Option<&str>) -> SecretCommand {
        SecretCommand::Create(Box::new(CreateSecret {
            attributes: Attributes {
                expiration: Some(Expiration::parse("2026-11-23T10:00:00Z", now()).unwrap()),
                ..Default::default()
            },
            payload,
            owning_service: owning_service.map(|s| ServiceName::parse(s).unwrap()),
            tags: Default::default(),
        }))
    }

    fn create(payload: Option<SealedPayload>) -> SecretCommand {
        create_with(payload, None)
    }

    fn put(n: u128, stages: Option<&[Stage]>) -> SecretCommand {
        SecretCommand::PutValue(Box::new(PutValue {
            payload: sealed(n),
            stages: stages.map(|s| s.iter().copied().collect()),
        }))
    }

    fn version(n: u128) -> VersionId {
        VersionId::from_uuid(Uuid::from_u128(n))
    }

    struct World {
        actor: Actor,
        lifecycle: Lifecycle,
        state: SecretState,
    }

    impl World {
        fn new() -> Self {
            Self::as_actor(Actor::User(alice()))
        }

        fn as_actor(actor: Actor) -> Self {
            Self {
                actor,
                lifecycle: Lifecycle {
                    retention: Retention {
                        keep: 3,
                        min_age: hours(24),
                    },
                    recovery: RecoveryWindow::default(),
                },
                state: SecretState::Absent,
            }
        }

        fn decide(
            &self,
            when: &SecretCommand,
            at: Timestamp,
        ) -> Result<Vec<SecretEvent>, Rejection> {
            let project = ProjectId::parse("p1").unwrap();
            let ctx = Context {
                actor: &self.actor,
                project: &project,
                id: SecretId::from_uuid(Uuid::from_u128(7)),
                now: at,
                lifecycle: &self.lifecycle,
            };
            decide(&self.state, when, ctx)
        }

        /// Applies `cmd` at `at`; it must be accepted.
        fn given(mut self, cmd: &SecretCommand, at: Timestamp) -> Self {
            let events = self.decide(cmd, at).expect("given commands are accepted");
            self.state = events.iter().fold(self.state, evolve);
            self
        }

        fn secret(&self) -> &Secret {
            let SecretState::Live(s) = &self.state else {
                panic!("live: {:?}", self.state)
            };
            s
        }
    }

    fn run(given: &[SecretCommand], when: &SecretCommand) -> Result<Vec<SecretEvent>, Rejection> {
        let world = given.iter().fold(World::new(), |w, c| w.given(c, now()));
        world.decide(when, now())
    }

    #[test]
    fn create_with_payload_is_one_commit_of_two_events() {
        let events = run(&[], &create(Some(sealed(1)))).unwrap();
        let types: Vec<_> = events.iter().map(SecretEvent::type_name).collect();
        assert_eq!(types, ["secret.created", "secret.payload_stored"]);
        let SecretEvent::Created(c) = &events[0] else {
            panic!("first event is the creation")
        };
        assert_eq!(c.creator.as_str(), "alice");
    }

    #[test]
    fn two_step_create_takes_exactly_one_payload() {
        let events = run(&[create(None)], &SecretCommand::PutPayload(sealed(1))).unwrap();
        assert_eq!(events.len(), 1);
        let err = run(
            &[create(None), SecretCommand::PutPayload(sealed(1))],
            &SecretCommand::PutPayload(sealed(2)),
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict);
        assert!(
            err.message.contains("already has a payload"),
            "{}",
            err.message
        );
    }

    #[test]
    fn create_on_an_existing_secret_is_a_conflict() {
        let err = run(&[create(None)], &create(None)).unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict);
    }

    #[test]
    fn delete_destroys_every_version_key() {
        let events = run(
            &[create(Some(sealed(1))), put(2, None)],
            &SecretCommand::Delete(DeleteMode::Now),
        )
        .unwrap();
        assert_eq!(
            events,
            [SecretEvent::Deleted(SecretDeleted {
                destroyed_keys: vec![sealed(1).key_id, sealed(2).key_id]
            })]
        );
    }

    #[test]
    fn nothing_applies_to_a_deleted_secret() {
        let given = [create(None), SecretCommand::Delete(DeleteMode::Now)];
        for when in [
            SecretCommand::Delete(DeleteMode::Now),
            SecretCommand::PutPayload(sealed(1)),
            SecretCommand::SetMetadatum {
                key: MetadataKey::parse("k").unwrap(),
                value: MetadataValue::parse("v").unwrap(),
                presence: Presence::Any,
            },
        ] {
            let err = run(&given, &when).unwrap_err();
            assert_eq!(err.code, ErrorCode::NotFound, "{when:?}");
            assert_eq!(
                err.message,
                "secret 00000000-0000-0000-0000-000000000007 not found in project p1"
            );
        }
    }

    #[test]
    fn an_expired_secret_takes_no_payload_but_can_be_deleted() {
        let later = at("2026-11-23T10:00:00Z");
        let world = World::new().given(&create(None), now());
        let err = world
            .decide(&SecretCommand::PutPayload(sealed(1)), later)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert_eq!(
            err.message,
            "secret 00000000-0000-0000-0000-000000000007 expired at 2026-11-23T10:00:00Z"
        );
        assert!(
            world
                .decide(&SecretCommand::Delete(DeleteMode::Now), later)
                .is_ok()
        );
    }

    #[test]
    fn another_projects_principal_is_refused() {
        let mut bob = alice();
        bob.project = ProjectId::parse("p2").unwrap();
        let err = World::as_actor(Actor::User(bob))
            .decide(&create(None), now())
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
    }

    #[test]
    fn a_new_current_version_moves_previous() {
        let w = World::new()
            .given(&create(Some(sealed(1))), now())
            .given(&put(2, None), now());
        let s = w.secret();
        assert_eq!(s.stages[&Stage::Current], version(2));
        assert_eq!(s.stages[&Stage::Previous], version(1));
        let w = w.given(&put(3, None), now());
        let s = w.secret();
        assert_eq!(s.stages[&Stage::Current], version(3));
        assert_eq!(s.stages[&Stage::Previous], version(2));
        assert!(
            s.stages_of(version(1)).is_empty(),
            "version 1 is deprecated"
        );
    }

    #[test]
    fn a_pending_version_leaves_current_alone_until_moved() {
        let w = World::new()
            .given(&create(Some(sealed(1))), now())
            .given(&put(2, Some(&[Stage::Pending])), now());
        assert_eq!(w.secret().stages[&Stage::Current], version(1));
        let unnamed = SecretCommand::MoveStage {
            stage: Stage::Current,
            to: Some(version(2)),
            from: None,
        };
        let err = w.decide(&unnamed, now()).unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict);
        assert!(
            err.message.contains("also name that version"),
            "{}",
            err.message
        );
        let wrong = SecretCommand::MoveStage {
            stage: Stage::Current,
            to: Some(version(2)),
            from: Some(version(2)),
        };
        assert!(
            w.decide(&wrong, now())
                .unwrap_err()
                .message
                .contains("not on version")
        );
        let w = w.given(
            &SecretCommand::MoveStage {
                stage: Stage::Current,
                to: Some(version(2)),
                from: Some(version(1)),
            },
            now(),
        );
        let s = w.secret();
        assert_eq!(s.stages[&Stage::Current], version(2));
        assert_eq!(s.stages[&Stage::Previous], version(1));
        // Moving it where it already is does nothing.
        let again = SecretCommand::MoveStage {
            stage: Stage::Current,
            to: Some(version(2)),
            from: Some(version(2)),
        };
        assert_eq!(w.decide(&again, now()).unwrap(), []);
    }

    #[test]
    fn current_cannot_be_removed_and_previous_cannot_be_given() {
        let w = World::new().given(&create(Some(sealed(1))), now());
        let remove = SecretCommand::MoveStage {
            stage: Stage::Current,
            to: None,
            from: Some(version(1)),
        };
        assert_eq!(
            w.decide(&remove, now()).unwrap_err().code,
            ErrorCode::Invalid
        );
        let err = w
            .decide(&put(2, Some(&[Stage::Previous])), now())
            .unwrap_err();
        assert!(err.message.contains("follows current"), "{}", err.message);
        assert!(w.decide(&put(2, Some(&[])), now()).is_err());
    }

    #[test]
    fn a_reused_token_with_another_payload_is_refused() {
        let w = World::new()
            .given(&create(Some(sealed(1))), now())
            .given(&put(2, None), now());
        let err = w.decide(&put(2, None), now()).unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict);
        assert!(err.message.contains("different payload"), "{}", err.message);
    }

    #[test]
    fn retention_destroys_old_deprecated_versions_only() {
        // keep 3, min age 24 h: versions 1..=5, each put an hour apart.
        let mut w = World::new().given(&create(Some(sealed(1))), now());
        for n in 2..=5u128 {
            w = w.given(&put(n, None), now().plus(hours(n as u64)).unwrap());
        }
        // All are younger than 24 h: nothing is destroyed, however many there are.
        assert_eq!(w.secret().versions.len(), 5);
        // A day later, the scheduler's prune destroys the two oldest deprecated ones.
        let later = now().plus(hours(30)).unwrap();
        let w = World {
            actor: Actor::scheduler(),
            ..w
        };
        let events = w.decide(&SecretCommand::PruneVersions, later).unwrap();
        assert_eq!(
            events,
            [SecretEvent::VersionsDestroyed(VersionsDestroyed {
                versions: vec![version(1), version(2)],
                destroyed_keys: vec![sealed(1).key_id, sealed(2).key_id],
            })]
        );
        let w = w.given(&SecretCommand::PruneVersions, later);
        assert_eq!(w.decide(&SecretCommand::PruneVersions, later).unwrap(), []);
        // Staged versions are never destroyed.
        let s = w.secret();
        assert!(s.staged(Stage::Current).is_some() && s.staged(Stage::Previous).is_some());
    }

    #[test]
    fn expire_is_accepted_once_the_expiration_passed_and_destroys_the_keys() {
        let w = World::as_actor(Actor::scheduler());
        let w = World {
            state: World::new().given(&create(Some(sealed(1))), now()).state,
            ..w
        };
        let err = w.decide(&SecretCommand::Expire, now()).unwrap_err();
        assert!(
            err.message
                .contains("expires at 2026-11-23T10:00:00Z, not before"),
            "{}",
            err.message
        );
        let later = at("2026-11-23T10:00:00Z");
        let w = w.given(&SecretCommand::Expire, later);
        assert_eq!(w.state, SecretState::Expired(later));
        let err = w.decide(&SecretCommand::Expire, later).unwrap_err();
        assert_eq!(
            err.message,
            "secret 00000000-0000-0000-0000-000000000007 expired at 2026-11-23T10:00:00Z"
        );
    }

    #[test]
    fn a_scheduled_deletion_can_be_restored_until_it_is_purged() {
        let w = World::new().given(&create(Some(sealed(1))), now()).given(
            &SecretCommand::Delete(DeleteMode::After(Some(hours(24 * 7)))),
            now(),
        );
        let purge_at = at("2026-11-29T10:00:00Z");
        assert_eq!(w.secret().purge_at, Some(purge_at));
        let err = w.decide(&put(2, None), now()).unwrap_err();
        assert!(
            err.message
                .contains("is scheduled for deletion on 2026-11-29T10:00:00Z; restore it"),
            "{}",
            err.message
        );
        let sched = World {
            actor: Actor::scheduler(),
            lifecycle: w.lifecycle,
            state: w.state.clone(),
        };
        let restored = w.given(&SecretCommand::Restore, now());
        assert_eq!(restored.secret().purge_at, None);
        assert!(restored.decide(&put(2, None), now()).is_ok());
        // The scheduler purges once the window has ended, not before.
        assert_eq!(
            sched.decide(&SecretCommand::Purge, now()).unwrap_err().code,
            ErrorCode::Conflict
        );
        assert_eq!(
            sched.decide(&SecretCommand::Purge, purge_at).unwrap(),
            [SecretEvent::Deleted(SecretDeleted {
                destroyed_keys: vec![sealed(1).key_id]
            })]
        );
    }

    #[test]
    fn recovery_windows_outside_the_bounds_are_refused() {
        let w = World::new().given(&create(None), now());
        let err = w
            .decide(
                &SecretCommand::Delete(DeleteMode::After(Some(hours(1)))),
                now(),
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert!(
            err.message.contains("between 7 days and 30 days"),
            "{}",
            err.message
        );
    }

    #[test]
    fn only_the_owning_service_changes_a_managed_secret() {
        let mut rotator = alice();
        rotator.service = Some(ServiceName::parse("rotator").unwrap());
        let w = World::as_actor(Actor::User(rotator.clone()))
            .given(&create_with(Some(sealed(1)), Some("rotator")), now());
        assert!(w.decide(&put(2, None), now()).is_ok());
        let as_alice = World {
            actor: Actor::User(alice()),
            ..w
        };
        for cmd in [
            put(2, None),
            SecretCommand::Delete(DeleteMode::Now),
            SecretCommand::Restore,
        ] {
            let err = as_alice.decide(&cmd, now()).unwrap_err();
            assert_eq!(err.code, ErrorCode::Forbidden);
            assert_eq!(
                err.message,
                "This secret is managed by rotator; use that service to update it"
            );
        }
        let err = World::new()
            .decide(&create_with(None, Some("rotator")), now())
            .unwrap_err();
        assert!(
            err.message.contains("only service rotator may create"),
            "{}",
            err.message
        );
    }

    #[test]
    fn the_scheduler_runs_its_tasks_only_and_users_cannot_run_them() {
        let w = World::new().given(&create(None), now());
        assert_eq!(
            w.decide(&SecretCommand::Purge, now()).unwrap_err().message,
            "secret.purge is issued by keyledger's scheduler only"
        );
        let sched = World {
            actor: Actor::scheduler(),
            ..w
        };
        assert_eq!(
            sched
                .decide(&SecretCommand::Delete(DeleteMode::Now), now())
                .unwrap_err()
                .code,
            ErrorCode::Forbidden
        );
    }

    #[test]
    fn metadata_keys_can_be_required_new_or_existing() {
        let k = MetadataKey::parse("k").unwrap();
        let v = MetadataValue::parse("v").unwrap();
        let set = |presence| SecretCommand::SetMetadatum {
            key: k.clone(),
            value: v.clone(),
            presence,
        };
        let w = World::new().given(&create(None), now());
        assert_eq!(
            w.decide(&set(Presence::Present), now()).unwrap_err().code,
            ErrorCode::NotFound
        );
        let w = w.given(&set(Presence::Absent), now());
        assert_eq!(
            w.decide(&set(Presence::Absent), now()).unwrap_err().code,
            ErrorCode::Conflict
        );
        let w = w.given(&SecretCommand::DeleteMetadatum(k.clone()), now());
        assert!(w.secret().attributes.metadata.is_empty());
    }
}
