//! Executes access-key commands: parse the request and seal the secret access key on
//! arrival (so nothing past intake holds it in the clear), store its data key before
//! the commit, and destroy that key right after a revocation's commit.

use std::sync::Arc;

use domain::Rejection;
use domain::access_key::{
    AccessKeyCommand, AccessKeyEvent, AccessKeyId, AccessKeyState, Context, CreateAccessKey,
    check_secret, decide, evolve, sealing_ids,
};
use domain::commit::AggregateRef;
use domain::ids::{CommandId, ProjectId, Role, SecretId, ServiceName, UserId};
use domain::principal::{Actor, Principal};
use domain::secret::payload::{ContentType, PayloadLimit, Plaintext};
use domain::subject::{AccessKeyOp, AggregateKind};
use domain::timestamp::Timestamp;

use crate::secret::intake::DataKey;
use crate::shared::executor::{Aggregate, Executor, Step};
use crate::shared::request::{RequestDigest, command_id, parse_body};
use crate::shared::store::EventStore;
use infra::clock::Clock;
use infra::envelope::Envelope;
use infra::keystore::KeyStore;
use infra::protocol::{
    AcceptedReply, CreateAccessKeyRequest, RevokeAccessKeyRequest, without_string_values,
};

/// The AccessKey aggregate, for the command loop.
pub(crate) struct AccessKeyAggregate;

impl Aggregate for AccessKeyAggregate {
    type State = AccessKeyState;
    type Event = AccessKeyEvent;

    fn evolve(state: AccessKeyState, event: &AccessKeyEvent) -> AccessKeyState {
        evolve(state, event)
    }
}

/// An access-key command ready for the decider.
struct Parsed {
    command_id: CommandId,
    project: ProjectId,
    id: AccessKeyId,
    command: AccessKeyCommand,
    data_key: Option<DataKey>,
}

impl Parsed {
    /// The secret id the key's secret is sealed under, which names its data keys in
    /// the key store.
    fn sealing_secret(&self) -> SecretId {
        sealing_ids(&self.project, &self.id).0
    }
}

/// Executes commands on access keys.
pub struct AccessKeyHandler {
    executor: Executor<AccessKeyAggregate>,
    keys: KeyStore,
    envelope: Arc<Envelope>,
}

impl AccessKeyHandler {
    /// A handler over `store`, sealing secrets with `envelope` under data keys kept in
    /// `keys`.
    pub fn new(
        store: Arc<EventStore>,
        keys: KeyStore,
        envelope: Arc<Envelope>,
        clock: Clock,
        cache_capacity: u64,
    ) -> Self {
        Self {
            executor: Executor::new(store, clock.clone(), cache_capacity),
            keys,
            envelope,
        }
    }

    /// Handles an `access_key.*` command with a JSON `body`.
    pub async fn handle(
        &self,
        op: AccessKeyOp,
        principal: &Principal,
        body: &[u8],
    ) -> Result<AcceptedReply, Rejection> {
        let name = op.as_str();
        let project = |given: Option<&str>| {
            given.map_or_else(|| Ok(principal.project.clone()), ProjectId::parse)
        };
        let parsed = match op {
            AccessKeyOp::Create => {
                // A secret put in the wrong field must not come back in a parse error.
                let req: CreateAccessKeyRequest =
                    parse_body(name, body).map_err(|mut r: Rejection| {
                        r.message = without_string_values(&r.message);
                        r
                    })?;
                let project = project(req.project.as_deref())?;
                let id = AccessKeyId::parse(&req.access_key_id)?;
                // One order, each role once: a retry that lists them otherwise is the
                // same key.
                let roles: Vec<Role> = req
                    .roles
                    .iter()
                    .map(|r| Role::parse(r))
                    .collect::<Result<std::collections::BTreeSet<_>, _>>()?
                    .into_iter()
                    .collect();
                let secret = req.secret_access_key.expose().as_bytes();
                check_secret(secret)?;
                let plaintext = Plaintext::from_bytes(
                    secret.to_vec(),
                    ContentType::TextPlain,
                    PayloadLimit::default(),
                )?;
                let (secret_id, version_id) = sealing_ids(&project, &id);
                let (sealed, data_key) =
                    DataKey::seal(&self.envelope, &plaintext, &project, secret_id, version_id)?;
                Parsed {
                    command_id: command_id(req.command_id.as_deref())?,
                    command: AccessKeyCommand::Create(Box::new(CreateAccessKey {
                        user: UserId::parse(&req.user)?,
                        roles,
                        service: req.service.as_deref().map(ServiceName::parse).transpose()?,
                        secret: sealed,
                    })),
                    data_key: Some(data_key),
                    project,
                    id,
                }
            }
            AccessKeyOp::Revoke => {
                let req: RevokeAccessKeyRequest = parse_body(name, body)?;
                Parsed {
                    command_id: command_id(req.command_id.as_deref())?,
                    project: project(req.project.as_deref())?,
                    id: AccessKeyId::parse(&req.access_key_id)?,
                    command: AccessKeyCommand::Revoke,
                    data_key: None,
                }
            }
        };
        let actor = Actor::User(principal.clone());
        let aggregate = AggregateRef {
            kind: AggregateKind::AccessKey,
            project: parsed.project.clone(),
            id: parsed.id.aggregate_id(),
        };
        let mut step = AccessKeyStep {
            handler: self,
            actor: &actor,
            parsed: &parsed,
        };
        let written = self
            .executor
            .run(
                &aggregate,
                &parsed.command_id,
                parsed.command.name(),
                &actor,
                match op {
                    // A create's retry is told by its key pair and values (`retried`).
                    AccessKeyOp::Create => None,
                    AccessKeyOp::Revoke => RequestDigest::of(body),
                },
                &mut step,
            )
            .await?;
        if matches!(parsed.command, AccessKeyCommand::Revoke) {
            self.destroy_revoked(&parsed, &aggregate).await;
        }
        Ok(written.reply(parsed.id.to_string()))
    }

    /// Destroys the data keys of a revoked key, right after the revocation's commit,
    /// and again on every repeated revocation (destroying is idempotent): so revoking
    /// again repairs a destroy that failed or was cut short. Failure is logged, not
    /// returned: the revocation stands.
    async fn destroy_revoked(&self, parsed: &Parsed, aggregate: &AggregateRef) {
        let keys = match self.executor.state(aggregate).await {
            Ok(AccessKeyState::Revoked { destroyed_keys, .. }) => destroyed_keys,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(access_key = %parsed.id, error = %e.message, "reading a revoked access key failed; revoke it again to destroy its data key");
                return;
            }
        };
        let secret = parsed.sealing_secret();
        for key in keys {
            if let Err(e) = self.keys.destroy(&parsed.project, secret, key).await {
                tracing::warn!(
                    access_key = %parsed.id,
                    error = %e,
                    "destroying a revoked access key's data key failed; revoke it again to \
                     retry"
                );
            }
        }
    }
}

/// An access-key command in the loop.
struct AccessKeyStep<'a> {
    handler: &'a AccessKeyHandler,
    actor: &'a Actor,
    parsed: &'a Parsed,
}

impl AccessKeyStep<'_> {
    fn context(&self, now: Timestamp) -> Context<'_> {
        Context {
            actor: self.actor,
            project: &self.parsed.project,
            id: &self.parsed.id,
            now,
        }
    }
}

impl Step<AccessKeyAggregate> for AccessKeyStep<'_> {
    fn authorize(&self, state: &AccessKeyState, now: Timestamp) -> Result<(), Rejection> {
        domain::access_key::authorize(state, &self.parsed.command, &self.context(now))
    }

    fn decide(
        &self,
        state: &AccessKeyState,
        now: Timestamp,
    ) -> Result<Vec<AccessKeyEvent>, Rejection> {
        decide(state, &self.parsed.command, self.context(now))
    }

    fn creates(&self) -> bool {
        matches!(self.parsed.command, AccessKeyCommand::Create(_))
    }

    /// A create retried with its command id must carry the same key pair (compared by
    /// the keyed fingerprint the data key keeps, as a secret's payload is), so a retry
    /// that changed the secret is refused rather than answered as if it were stored.
    async fn retried(&mut self, state: &AccessKeyState, _: u64) -> Result<(), Rejection> {
        let stored = match (&self.parsed.command, state) {
            (AccessKeyCommand::Create(_), AccessKeyState::Revoked { .. }) => {
                return Err(Rejection::conflict(format!(
                    "command_id {} created access key {}, which has been revoked since; \
                     create a new key with a new access key id",
                    self.parsed.command_id, self.parsed.id
                )));
            }
            (AccessKeyCommand::Create(new), AccessKeyState::Active(stored)) => (new, stored),
            _ => return Ok(()),
        };
        let (new, stored) = stored;
        let project = &self.parsed.project;
        let secret = self.parsed.sealing_secret();
        let stored_key = self
            .handler
            .keys
            .get(project, secret, stored.secret.key_id)
            .await?;
        let same = self
            .parsed
            .data_key
            .as_ref()
            .map(|k| k.same_payload_as(&self.parsed.command_id, stored_key.as_ref()))
            .transpose()?
            .unwrap_or(false);
        let same = same
            && stored.user == new.user
            && stored.roles == new.roles
            && stored.service == new.service;
        if same {
            Ok(())
        } else {
            Err(Rejection::conflict(format!(
                "command_id {} already created access key {} with other values (a secret \
                 keyledger generated is shown once: if that answer was lost, revoke {} and \
                 create another); send a new command_id",
                self.parsed.command_id, self.parsed.id, self.parsed.id
            )))
        }
    }

    async fn before_append(&mut self) -> Result<(), Rejection> {
        if let Some(key) = &self.parsed.data_key {
            let secret = self.parsed.sealing_secret();
            self.handler
                .keys
                .put(&self.parsed.project, secret, key.id, &key.wrapped)
                .await?;
        }
        Ok(())
    }
}
