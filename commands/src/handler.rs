//! Executes secret commands: load (from cache or the aggregate's subject), decide,
//! store the data key, append the commit; on a concurrent write, reload and decide
//! again.

use std::sync::Arc;

use domain::Rejection;
use domain::commit::{AggregateRef, NewCommit};
use domain::ids::{CommandId, ProjectId, SecretId, VersionId};
use domain::principal::{Actor, Principal};
use domain::secret::payload::PayloadLimit;
use domain::secret::version::Lifecycle;
use domain::secret::{Context, SecretCommand, SecretEvent, SecretState, decide, evolve};
use domain::subject::{AggregateKind, command};
use moka::sync::Cache;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::envelope::Envelope;
use crate::intake::{Intake, IntakeContext};
use crate::keystore::{KeyStore, KeyStoreError};
use crate::protocol::AcceptedReply;
use crate::store::{AppendOutcome, EventStore, Loaded, StoreError};

/// How often a command is decided again after losing a race to another writer.
const MAX_ATTEMPTS: usize = 8;

/// One cached aggregate. The mutex serialises this process's commands on the
/// aggregate, so they queue instead of racing; other processes are kept honest by the
/// expected-sequence check on append.
type Slot = Arc<Mutex<Option<Loaded<SecretState>>>>;

impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Rejection::unavailable(format!("{e}; retry shortly")),
            StoreError::Corrupt { .. } => Rejection::internal(e.to_string()),
        }
    }
}

impl From<KeyStoreError> for Rejection {
    fn from(e: KeyStoreError) -> Self {
        match e {
            KeyStoreError::Unavailable(_) => Rejection::unavailable(format!("{e}; retry shortly")),
            KeyStoreError::Malformed(_) => Rejection::internal(e.to_string()),
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
        _ => None,
    }
}

/// Executes commands on secrets.
pub struct SecretHandler {
    store: Arc<EventStore>,
    keys: KeyStore,
    envelope: Arc<Envelope>,
    clock: Clock,
    config: HandlerConfig,
    cache: Cache<String, Slot>,
}

fn parse_body<T: DeserializeOwned>(name: &str, body: &[u8]) -> Result<T, Rejection> {
    serde_json::from_slice(body).map_err(|e| {
        Rejection::invalid(format!(
            "the body is not a valid {name} request: {e}. See ARCHITECTURE.md, section \
             Command protocol"
        ))
    })
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
        let cache = Cache::new(config.cache_capacity);
        Self {
            store,
            keys,
            envelope,
            clock,
            config,
            cache,
        }
    }

    /// The lifecycle rules this handler decides with.
    pub fn lifecycle(&self) -> Lifecycle {
        self.config.lifecycle
    }

    /// Handles the command `name` (as in `keyledger.cmd.<name>`) with a JSON `body`.
    pub async fn handle(
        &self,
        name: &str,
        principal: &Principal,
        body: &[u8],
    ) -> Result<AcceptedReply, Rejection> {
        let intake = IntakeContext {
            principal,
            now: (self.clock)(),
            limit: self.config.payload_limit,
            envelope: &self.envelope,
        };
        let parsed = match name {
            command::SECRET_CREATE => intake.create(&parse_body(name, body)?)?,
            command::SECRET_PAYLOAD_PUT => intake.put_payload(&parse_body(name, body)?)?,
            command::SECRET_METADATA_SET => intake.set_metadatum(&parse_body(name, body)?)?,
            command::SECRET_VALUE_PUT => intake.put_value(&parse_body(name, body)?)?,
            command::SECRET_STAGE_MOVE => intake.move_stage(&parse_body(name, body)?)?,
            command::SECRET_METADATA_DELETE => intake.delete_metadatum(&parse_body(name, body)?)?,
            command::SECRET_METADATA_REPLACE => {
                intake.replace_metadata(&parse_body(name, body)?)?
            }
            command::SECRET_TAGS_SET => intake.set_tags(&parse_body(name, body)?)?,
            command::SECRET_TAGS_REMOVE => intake.remove_tags(&parse_body(name, body)?)?,
            command::SECRET_DELETE => intake.delete(&parse_body(name, body)?)?,
            command::SECRET_RESTORE => intake.restore(&parse_body(name, body)?)?,
            command::SECRET_EXPIRE => intake.expire(&parse_body(name, body)?)?,
            command::SECRET_ACL_SET => intake.set_acl(&parse_body(name, body)?)?,
            command::SECRET_ACL_DELETE => intake.delete_acl(&parse_body(name, body)?)?,
            other => {
                return Err(Rejection::invalid(format!(
                    "unknown command {other:?}; the commands are {}",
                    command::ALL.join(", ")
                )));
            }
        };
        self.execute(&Actor::User(principal.clone()), parsed).await
    }

    /// Runs one of keyledger's own tasks (the scheduler's) on a secret. `command_id`
    /// is derived from the task, so replicas running the same task write it once.
    pub async fn run_task(
        &self,
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
        };
        self.execute(&Actor::scheduler(), intake).await
    }

    async fn execute(&self, actor: &Actor, intake: Intake) -> Result<AcceptedReply, Rejection> {
        let aggregate = AggregateRef {
            kind: AggregateKind::Secret,
            project: intake.project.clone(),
            id: intake.secret.to_string(),
        };
        let subject = aggregate.subject();
        let version_id = stored_version(&intake.command);
        let reply = |seq, version| AcceptedReply {
            seq,
            id: aggregate.id.clone(),
            version,
            version_id: version_id.map(|v| v.to_string()),
        };
        let slot = self.cache.get_with(subject.clone(), Slot::default);
        let mut cached = slot.lock().await;
        let mut key_stored = false;

        for _ in 0..MAX_ATTEMPTS {
            let fresh = cached.is_none();
            let loaded = match cached.as_mut() {
                Some(loaded) => loaded,
                None => cached.insert(self.store.load(&subject, evolve).await?),
            };
            if let Some(done) = loaded.applied(&intake.command_id) {
                return Ok(reply(done.seq, done.version));
            }
            if self.is_retried_value(&intake, &loaded.state).await? {
                return Ok(reply(loaded.last_seq, loaded.version));
            }
            let now = (self.clock)();
            let ctx = Context {
                actor,
                project: &intake.project,
                id: intake.secret,
                now,
                lifecycle: &self.config.lifecycle,
            };
            let events = match decide(&loaded.state, &intake.command, ctx) {
                Ok(events) => events,
                // Another replica may have changed the aggregate since it was cached:
                // only a rejection decided on state fresh from the log is final.
                Err(_) if !fresh => {
                    *cached = None;
                    continue;
                }
                Err(rejection) => return Err(rejection),
            };
            if events.is_empty() {
                // Nothing to change: the state already is what the command asks for.
                return Ok(reply(loaded.last_seq, loaded.version));
            }
            // The wrapped key is stored before the commit that references it: an
            // orphaned key is harmless, a commit whose key is missing is lost data.
            if let (Some(key), false) = (&intake.data_key, key_stored) {
                self.keys
                    .put(&intake.project, intake.secret, key.id, &key.wrapped)
                    .await?;
                key_stored = true;
            }
            let commit = NewCommit {
                id: intake.command_id.clone(),
                aggregate: aggregate.clone(),
                version: loaded.version + 1,
                command: intake.command.name().to_owned(),
                actor: actor.clone(),
                at: now,
                events,
            }
            .seal(loaded.last_hash);

            match self.store.append(&commit, loaded.last_seq).await? {
                AppendOutcome::Appended(seq) => {
                    loaded.apply(&commit, seq, evolve);
                    self.after_commit(&aggregate, &commit.body.events).await;
                    return Ok(reply(seq, commit.body.version));
                }
                AppendOutcome::Duplicate(seq) => {
                    *cached = None;
                    let earlier = self.store.commit_at::<SecretEvent>(seq).await?;
                    if earlier.body.aggregate == aggregate && earlier.body.id == intake.command_id {
                        return Ok(reply(seq, earlier.body.version));
                    }
                    return Err(Rejection::conflict(format!(
                        "command_id {} was already used for another command in the last few \
                         minutes; send a new command_id",
                        intake.command_id
                    )));
                }
                AppendOutcome::WrongLastSequence => {
                    // Either another writer got in first, or this very command landed
                    // and only its ack was lost: the last commit tells which.
                    *cached = None;
                    if let Some((seq, last)) =
                        self.store.last_commit::<SecretEvent>(&subject).await?
                        && last.body.id == intake.command_id
                    {
                        return Ok(reply(seq, last.body.version));
                    }
                }
            }
        }
        Err(Rejection::conflict(format!(
            "secret {} is being changed by other writers at the same time; retry the command \
             with the same command_id",
            intake.secret
        )))
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
        let stored = self
            .keys
            .get(&intake.project, intake.secret, existing.key_id)
            .await?;
        Ok(matches!(
            (stored.and_then(|w| w.fingerprint), &new.wrapped.fingerprint),
            (Some(a), Some(b)) if &a == b
        ))
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
