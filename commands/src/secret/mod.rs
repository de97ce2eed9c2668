//! Executes secret commands: parse and seal (intake), then the shared command loop
//! (`executor`) with the secret's own steps around it: a retried value is recognised by
//! its fingerprint, the data key is stored before the commit that names it, and keys a
//! commit destroys are erased right after it.

pub(crate) mod intake;
pub mod rotation;
pub mod scheduler;

use std::sync::Arc;

use domain::Rejection;
use domain::commit::AggregateRef;
use domain::ids::{CommandId, MAX_INCARNATIONS, ProjectId, SecretId, VersionId};
use domain::principal::{Actor, Principal};
use domain::secret::payload::PayloadLimit;
use domain::secret::version::Lifecycle;
use domain::secret::{Context, SecretCommand, SecretEvent, SecretState, decide, evolve};
use domain::subject::{AggregateKind, SecretOp};
use domain::timestamp::Timestamp;

use crate::shared::executor::{Aggregate, Executor, Step};
use crate::shared::request::{RequestDigest, parse_body};
use crate::shared::store::{EventStore, StoreError};
use infra::clock::Clock;
use infra::envelope::Envelope;
use infra::keystore::KeyStore;
use infra::protocol::AcceptedReply;
use intake::{Intake, IntakeContext};

/// The Secret aggregate, for the command loop.
pub(crate) struct SecretAggregate;

impl Aggregate for SecretAggregate {
    type State = SecretState;
    type Event = SecretEvent;

    fn evolve(state: SecretState, event: &SecretEvent) -> SecretState {
        evolve(state, event)
    }
}

impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Rejection::unavailable(format!("{e}; retry shortly")),
            StoreError::Corrupt { .. } => Rejection::internal(e.to_string()),
        }
    }
}

/// Settings of the command handler.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// Largest payload accepted.
    pub payload_limit: PayloadLimit,
    /// Most aggregates kept in memory.
    pub cache_capacity: u64,
    /// Version retention and recovery windows.
    pub lifecycle: Lifecycle,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            payload_limit: PayloadLimit::default(),
            cache_capacity: 100_000,
            lifecycle: Lifecycle::default(),
        }
    }
}

/// The value version a command stores, if it stores one.
fn stored_version(command: &SecretCommand) -> Option<VersionId> {
    match command {
        SecretCommand::Create(c) => c.payload.as_ref().map(|p| p.version_id),
        SecretCommand::PutPayload(p) => Some(p.version_id),
        SecretCommand::PutValue(p) => Some(p.payload.version_id),
        SecretCommand::Rotate(r) if r.immediately => Some(r.version),
        SecretCommand::StartScheduledRotation { version } => Some(*version),
        _ => None,
    }
}

/// Executes commands on secrets.
pub struct SecretHandler {
    executor: Executor<SecretAggregate>,
    keys: KeyStore,
    envelope: Arc<Envelope>,
    clock: Clock,
    config: HandlerConfig,
}

impl SecretHandler {
    /// A handler over the given store, key store and envelope.
    pub fn new(
        store: Arc<EventStore>,
        keys: KeyStore,
        envelope: Arc<Envelope>,
        clock: Clock,
        config: HandlerConfig,
    ) -> Self {
        Self {
            executor: Executor::new(store, clock.clone(), config.cache_capacity),
            keys,
            envelope,
            clock,
            config,
        }
    }

    /// A secret's state as of its last commit (from the cache when held).
    pub async fn state(&self, project: &ProjectId, id: SecretId) -> Result<SecretState, Rejection> {
        let aggregate = AggregateRef {
            kind: AggregateKind::Secret,
            project: project.clone(),
            id: id.into(),
        };
        self.executor.state(&aggregate).await
    }

    /// The id a create of the unique name `name` addresses: its first incarnation
    /// that is not over (deleted or expired). A live one, or one scheduled for
    /// deletion, is addressed too, and `decide` refuses to create it again.
    async fn incarnation(
        &self,
        project: &ProjectId,
        name: &domain::secret::fields::SecretName,
    ) -> Result<SecretId, Rejection> {
        for n in 0..MAX_INCARNATIONS {
            let id = SecretId::for_name(project, name.as_str(), n);
            match self.state(project, id).await? {
                SecretState::Deleted | SecretState::Expired(_) => continue,
                SecretState::Absent | SecretState::Live(_) => return Ok(id),
            }
        }
        Err(Rejection::incarnations_exhausted(
            name.as_str(),
            MAX_INCARNATIONS,
            project,
        ))
    }

    /// The lifecycle rules this handler decides with.
    pub fn lifecycle(&self) -> Lifecycle {
        self.config.lifecycle
    }

    /// Handles the command `name` (as in `keyledger.cmd.<name>`) with a JSON `body`.
    pub async fn handle(
        &self,
        op: SecretOp,
        principal: &Principal,
        body: &[u8],
    ) -> Result<AcceptedReply, Rejection> {
        let name = op.as_str();
        let intake = IntakeContext {
            principal,
            now: (self.clock)(),
            limit: self.config.payload_limit,
            envelope: &self.envelope,
        };
        let parsed = match op {
            SecretOp::Create => {
                let request = parse_body(name, body)?;
                let unique = match intake.unique_name(&request)? {
                    Some((project, name)) => Some(self.incarnation(&project, &name).await?),
                    None => None,
                };
                intake.create(&request, unique)?
            }
            SecretOp::PayloadPut => intake.put_payload(&parse_body(name, body)?)?,
            SecretOp::MetadataSet => intake.set_metadatum(&parse_body(name, body)?)?,
            SecretOp::ValuePut => intake.put_value(&parse_body(name, body)?)?,
            SecretOp::StageMove => intake.move_stage(&parse_body(name, body)?)?,
            SecretOp::MetadataDelete => intake.delete_metadatum(&parse_body(name, body)?)?,
            SecretOp::MetadataReplace => intake.replace_metadata(&parse_body(name, body)?)?,
            SecretOp::TagsSet => intake.set_tags(&parse_body(name, body)?)?,
            SecretOp::TagsRemove => intake.remove_tags(&parse_body(name, body)?)?,
            SecretOp::Delete => intake.delete(&parse_body(name, body)?)?,
            SecretOp::Restore => intake.restore(&parse_body(name, body)?)?,
            SecretOp::Expire => intake.expire(&parse_body(name, body)?)?,
            SecretOp::ConsumerRegister => intake.consumer(&parse_body(name, body)?, true)?,
            SecretOp::ConsumerRemove => intake.consumer(&parse_body(name, body)?, false)?,
            SecretOp::AclSet => intake.set_acl(&parse_body(name, body)?)?,
            SecretOp::AclDelete => intake.delete_acl(&parse_body(name, body)?)?,
            SecretOp::DescriptionSet => intake.set_description(&parse_body(name, body)?)?,
            SecretOp::Rotate => intake.rotate(&parse_body(name, body)?)?,
            SecretOp::RotationCancel => intake.cancel_rotation(&parse_body(name, body)?)?,
        };
        let request = match op {
            // A create's retry is told by what the secret keeps from it (as AWS does,
            // by its value), in `is_same_create`.
            SecretOp::Create => None,
            _ => RequestDigest::of(body),
        };
        self.execute(&Actor::User(principal.clone()), parsed, request)
            .await
    }

    /// Runs one of keyledger's own tasks (the scheduler's) on a secret. `command_id`
    /// is derived from the task, so replicas running the same task write it once.
    pub(crate) async fn run_task(
        &self,
        project: ProjectId,
        secret: SecretId,
        command: SecretCommand,
        command_id: CommandId,
    ) -> Result<AcceptedReply, Rejection> {
        self.run_as(&Actor::scheduler(), project, secret, command, command_id)
            .await
    }

    /// Runs a command already parsed (and any payload already sealed, its data key
    /// stored) as `actor`: keyledger's own tasks.
    pub(crate) async fn run_as(
        &self,
        actor: &Actor,
        project: ProjectId,
        secret: SecretId,
        command: SecretCommand,
        command_id: CommandId,
    ) -> Result<AcceptedReply, Rejection> {
        let intake = Intake {
            command_id,
            project,
            secret,
            command,
            data_key: None,
            first_version: None,
        };
        self.execute(actor, intake, None).await
    }

    async fn execute(
        &self,
        actor: &Actor,
        intake: Intake,
        request: Option<RequestDigest>,
    ) -> Result<AcceptedReply, Rejection> {
        let aggregate = AggregateRef {
            kind: AggregateKind::Secret,
            project: intake.project.clone(),
            id: intake.secret.into(),
        };
        let mut step = SecretStep {
            handler: self,
            actor,
            intake: &intake,
            stored: stored_version(&intake.command),
            stages: None,
        };
        let written = self
            .executor
            .run(
                &aggregate,
                &intake.command_id,
                intake.command.name(),
                actor,
                request,
                &mut step,
            )
            .await?;
        self.after_commit(&aggregate, &written.events).await;
        Ok(AcceptedReply {
            version_id: step.stored.map(|v| v.to_string()),
            stages: step.stages,
            ..written.reply(aggregate.id.into())
        })
    }

    /// Whether `intake` stores a version that already exists with the same payload: a
    /// retry with the same client request token. The version's id comes from the token,
    /// and the fingerprints (kept next to each data key) tell whether the payload is the
    /// same; a different payload is left to `decide`, which refuses it.
    async fn is_retried_value(
        &self,
        intake: &Intake,
        state: &SecretState,
    ) -> Result<bool, Rejection> {
        let (SecretCommand::PutValue(put), SecretState::Live(secret), Some(new)) =
            (&intake.command, state, &intake.data_key)
        else {
            return Ok(false);
        };
        let Some(existing) = secret.version(put.payload.version_id) else {
            return Ok(false);
        };
        self.same_payload(intake, existing.key_id, new).await
    }

    /// Whether the payload stored under `key_id` is the one `new` seals: their
    /// fingerprints (kept next to each data key) are equal.
    async fn same_payload(
        &self,
        intake: &Intake,
        key_id: domain::ids::KeyId,
        new: &intake::DataKey,
    ) -> Result<bool, Rejection> {
        let stored = self
            .keys
            .get(&intake.project, intake.secret, key_id)
            .await?;
        new.same_payload_as(&intake.command_id, stored.as_ref())
    }

    /// Whether a create whose command id (`Idempotency-Key`) was applied already, by
    /// the commit at `applied_at`, is the same request again: the same fields a secret
    /// keeps from its creation and the same payload (by fingerprint), or none as
    /// before. Another request reusing the key is refused (409), rather than answered
    /// with a secret it did not ask for.
    async fn is_same_create(
        &self,
        intake: &Intake,
        state: &SecretState,
        applied_at: u64,
    ) -> Result<(), Rejection> {
        // Every create's intake names its first version (`Intake::first_version`).
        let (SecretCommand::Create(create), SecretState::Live(secret), Some(first)) =
            (&intake.command, state, intake.first_version)
        else {
            return Ok(());
        };
        let (asked, kept) = (&create.attributes, &secret.attributes);
        let mut differs = Vec::new();
        if asked.name != kept.name {
            differs.push("name");
        }
        if asked.secret_type != kept.secret_type {
            differs.push("secret_type");
        }
        if (&asked.algorithm, asked.bit_length, &asked.mode)
            != (&kept.algorithm, kept.bit_length, &kept.mode)
        {
            differs.push("algorithm, bit_length or mode");
        }
        if asked.expiration != kept.expiration {
            differs.push("expiration");
        }
        if create.owning_service != secret.owning_service {
            differs.push("owning_service");
        }
        // `first`, the first version's id as this request names it (from its client
        // request token, or its command id), whether it carries a payload or not: a
        // request without one under the token that created the secret with one is
        // another request, either way round.
        let payload_differs = match (secret.version(first), &intake.data_key) {
            (Some(stored), Some(new)) => {
                (!self.same_payload(intake, stored.key_id, new).await?).then_some("payload")
            }
            // Created with a payload the first time, without one now.
            (Some(_), None) => Some("payload"),
            // No version of the id this request names: without a payload, the same
            // request if the first had none either. A secret without versions was
            // created without one; one with versions was created with one under
            // another token, or has had values put since, which only the create's own
            // commit tells (read then, a rare path). With a payload, another request
            // (another token or payload), answered 409 rather than with a version that
            // was never stored.
            (None, None) if secret.versions.is_empty() => None,
            (None, None) => Box::pin(self.created_with_payload(intake, applied_at))
                .await?
                .then_some("payload"),
            (None, Some(_)) => Some("payload or client_request_token"),
        };
        differs.extend(payload_differs);
        if differs.is_empty() {
            return Ok(());
        }
        Err(Rejection::other_create(
            &intake.command_id,
            intake.secret,
            &differs.join(", "),
        ))
    }

    /// Whether the create of `intake`'s secret, in the commit at `applied_at`, stored a
    /// payload. A commit that cannot be read as keyledger's is taken to have stored
    /// one: the retry is then refused, never answered with a value it did not send.
    async fn created_with_payload(
        &self,
        intake: &Intake,
        applied_at: u64,
    ) -> Result<bool, Rejection> {
        let subject = AggregateRef {
            kind: AggregateKind::Secret,
            project: intake.project.clone(),
            id: intake.secret.into(),
        }
        .subject();
        let commit = self
            .executor
            .store()
            .commit_at::<SecretEvent>(applied_at, &subject)
            .await?;
        Ok(commit.is_none_or(|commit| {
            commit
                .body
                .events
                .iter()
                .any(|e| matches!(e, SecretEvent::PayloadStored(_)))
        }))
    }

    /// Whether a payload put whose command id was applied already (`secret.value.put`,
    /// `secret.payload.put`) carries the payload it stored then, by fingerprint: the
    /// request digest leaves payloads out, so this is what tells a retry from another
    /// value sent under the same command id, which is refused (409) rather than
    /// answered as stored. A version retention has destroyed since, or whose key is
    /// destroyed, can no longer be compared, and is taken for the retry.
    async fn is_same_put(&self, intake: &Intake, state: &SecretState) -> Result<(), Rejection> {
        let (
            SecretCommand::PutValue(_) | SecretCommand::PutPayload(_),
            Some(version),
            Some(new),
            SecretState::Live(secret),
        ) = (
            &intake.command,
            stored_version(&intake.command),
            &intake.data_key,
            state,
        )
        else {
            return Ok(());
        };
        let Some(existing) = secret.version(version) else {
            return Ok(());
        };
        let stored = self
            .keys
            .get(&intake.project, intake.secret, existing.key_id)
            .await?;
        // Its key destroyed (the version or the secret on its way out): nothing to
        // compare with either.
        if stored.is_none() || new.same_payload_as(&intake.command_id, stored.as_ref())? {
            return Ok(());
        }
        Err(Rejection::conflict(format!(
            "command_id {} already stored version {version} of secret {} with another \
             payload; send a new command_id for a new value",
            intake.command_id, intake.secret
        )))
    }

    /// Destroys the data keys a commit names right away. Failure is logged, not
    /// returned: the commit stands, and the key shredder retries from the log.
    async fn after_commit(&self, aggregate: &AggregateRef, events: &[SecretEvent]) {
        for event in events {
            let keys = event.destroyed_keys();
            if !keys.is_empty() {
                crate::shredder::destroy_keys(&self.keys, aggregate, keys)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(
                            aggregate = %aggregate.subject(),
                            error = %e,
                            "destroying data keys failed; the key shredder will retry"
                        );
                    });
            }
        }
    }
}

/// A secret command in the loop.
struct SecretStep<'a> {
    handler: &'a SecretHandler,
    actor: &'a Actor,
    intake: &'a Intake,
    /// The version the command stores, if it stores one.
    stored: Option<VersionId>,
    /// The labels on that version once the command succeeded.
    stages: Option<Vec<String>>,
}

impl SecretStep<'_> {
    fn context(&self, now: Timestamp) -> Context<'_> {
        Context {
            actor: self.actor,
            project: &self.intake.project,
            id: self.intake.secret,
            now,
            lifecycle: &self.handler.config.lifecycle,
        }
    }
}

impl Step<SecretAggregate> for SecretStep<'_> {
    fn authorize(&self, state: &SecretState, now: Timestamp) -> Result<(), Rejection> {
        domain::secret::authorize(state, &self.intake.command, &self.context(now))
    }

    async fn settled(&mut self, state: &SecretState) -> Result<bool, Rejection> {
        self.handler.is_retried_value(self.intake, state).await
    }

    async fn retried(&mut self, state: &SecretState, applied_at: u64) -> Result<(), Rejection> {
        self.handler
            .is_same_create(self.intake, state, applied_at)
            .await?;
        self.handler.is_same_put(self.intake, state).await
    }

    fn decide(&self, state: &SecretState, now: Timestamp) -> Result<Vec<SecretEvent>, Rejection> {
        decide(state, &self.intake.command, self.context(now))
    }

    fn creates(&self) -> bool {
        matches!(self.intake.command, SecretCommand::Create(_))
    }

    fn charges(&self, events: &[SecretEvent]) -> Option<domain::quota::Resource> {
        events.iter().find_map(|event| match event {
            SecretEvent::Created(_) => Some(domain::quota::Resource::Secrets),
            SecretEvent::ConsumerRegistered(_) => Some(domain::quota::Resource::Consumers),
            _ => None,
        })
    }

    /// The wrapped key is stored before the commit that references it: an orphaned
    /// key is harmless, a commit whose key is missing is lost data.
    async fn before_append(&mut self) -> Result<(), Rejection> {
        if let Some(key) = &self.intake.data_key {
            self.handler
                .keys
                .put(
                    &self.intake.project,
                    self.intake.secret,
                    key.id,
                    &key.wrapped,
                )
                .await?;
        }
        Ok(())
    }

    fn answered(&mut self, state: &SecretState) {
        let (Some(version), SecretState::Live(secret)) = (self.stored, state) else {
            return;
        };
        // A version not held (a rotation's, until its handler stores it; one retention
        // destroyed) has no labels to answer: none are, and the API falls back.
        if secret.version(version).is_none() {
            return;
        }
        let mut stages: Vec<String> = secret
            .stages_of(version)
            .into_iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        // In the read model's order (by stored name), so an answer does not depend on
        // which path gave it.
        stages.sort();
        self.stages = Some(stages);
    }
}
