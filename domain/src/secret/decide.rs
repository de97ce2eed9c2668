//! `decide`: the rules of the Secret aggregate.

use crate::Rejection;
use crate::ids::{ProjectId, SecretId};
use crate::policy::{Action, RequestEnv, SecretFacts, Target, authorize};
use crate::principal::Principal;
use crate::secret::command::SecretCommand;
use crate::secret::event::{
    AclSet, MetadatumSet, PayloadStored, SecretCreated, SecretDeleted, SecretEvent,
};
use crate::secret::fields::MAX_METADATA_ENTRIES;
use crate::secret::state::{Secret, SecretState};
use crate::timestamp::Timestamp;

/// What `decide` needs besides state and command: who asks, which secret, and when.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The caller, from a verified token.
    pub actor: &'a Principal,
    /// The project that owns the secret.
    pub project: &'a ProjectId,
    /// The secret's id.
    pub id: SecretId,
    /// The current time.
    pub now: Timestamp,
}

impl Context<'_> {
    fn not_found(&self) -> Rejection {
        Rejection::not_found(format!(
            "secret {} not found in project {}",
            self.id, self.project
        ))
    }

    /// The live, unexpired secret a command on an existing secret needs.
    fn live<'s>(&self, state: &'s SecretState) -> Result<&'s Secret, Rejection> {
        match state {
            SecretState::Live(s) => match s.attributes.expiration {
                Some(exp) if exp.has_passed(self.now) => Err(Rejection::not_found(format!(
                    "secret {} expired at {}",
                    self.id,
                    exp.at()
                ))),
                _ => Ok(s),
            },
            SecretState::Absent | SecretState::Deleted => Err(self.not_found()),
        }
    }
}

/// Decides what `command` does to a secret in `state`: the events to append, in order,
/// or why it is refused. Pure: same inputs, same answer.
pub fn decide(
    state: &SecretState,
    command: &SecretCommand,
    ctx: Context<'_>,
) -> Result<Vec<SecretEvent>, Rejection> {
    let action = match command {
        SecretCommand::Create(_) => Action::CreateSecret,
        SecretCommand::PutPayload(_) | SecretCommand::SetMetadatum { .. } => Action::UpdateSecret,
        SecretCommand::Delete => Action::DeleteSecret,
        SecretCommand::SetAcl(_) => Action::ChangeAcl,
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
        }),
        (SecretState::Absent | SecretState::Deleted, _) => Target::Project {
            project: ctx.project,
            secret: Some(ctx.id),
        },
    };
    let env = RequestEnv {
        source: None,
        now: ctx.now,
    };
    authorize(ctx.actor, action, target, env)?;

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
            let mut events = vec![SecretEvent::Created(SecretCreated {
                attributes: create.attributes.clone(),
                creator: ctx.actor.user.clone(),
            })];
            if let Some(payload) = &create.payload {
                events.push(SecretEvent::PayloadStored(PayloadStored {
                    payload: payload.clone(),
                }));
            }
            Ok(events)
        }
        SecretCommand::PutPayload(payload) => {
            let secret = ctx.live(state)?;
            if secret.payload.is_some() {
                return Err(Rejection::conflict(format!(
                    "secret {} already has a payload; a payload is stored once. Create a new \
                     secret to store a different value",
                    ctx.id
                )));
            }
            Ok(vec![SecretEvent::PayloadStored(PayloadStored {
                payload: payload.clone(),
            })])
        }
        SecretCommand::SetMetadatum { key, value } => {
            let secret = ctx.live(state)?;
            let metadata = &secret.attributes.metadata;
            if !metadata.contains_key(key) && metadata.len() >= MAX_METADATA_ENTRIES {
                return Err(Rejection::invalid(format!(
                    "secret {} already has {MAX_METADATA_ENTRIES} metadata entries, the limit; \
                     change an existing key instead of adding {key:?}",
                    ctx.id,
                    key = key.as_str()
                )));
            }
            Ok(vec![SecretEvent::MetadatumSet(MetadatumSet {
                key: key.clone(),
                value: value.clone(),
            })])
        }
        SecretCommand::SetAcl(change) => {
            let secret = ctx.live(state)?;
            Ok(vec![SecretEvent::AclSet(AclSet {
                read: change.apply(&secret.acl),
            })])
        }
        SecretCommand::Delete => {
            // Deleting an expired secret is allowed: it is how its keys get destroyed.
            let SecretState::Live(secret) = state else {
                return Err(ctx.not_found());
            };
            Ok(vec![SecretEvent::Deleted(SecretDeleted {
                destroyed_keys: secret.payload.iter().map(|p| p.key_id).collect(),
            })])
        }
    }
}

#[cfg(test)]
mod tests {
    //! Given these events, when this command, then these events (or this error).

    use super::*;
    use crate::ErrorCode;
    use crate::ids::{KeyId, Role, UserId, VersionId};
    use crate::secret::command::CreateSecret;
    use crate::secret::fields::{Attributes, Expiration, MetadataKey, MetadataValue};
    use crate::secret::payload::{ContentType, SealedPayload};
    use crate::secret::state::evolve;
    use uuid::Uuid;

    fn now() -> Timestamp {
        Timestamp::parse_iso8601("now", "2026-11-22T10:00:00Z").unwrap()
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

    fn create(payload: Option<SealedPayload>) -> SecretCommand {
        SecretCommand::Create(Box::new(CreateSecret {
            attributes: Attributes {
                expiration: Some(Expiration::parse("2026-11-23T10:00:00Z", now()).unwrap()),
                ..Default::default()
            },
            payload,
        }))
    }

    /// Runs `given` through decide/evolve, then decides `when` at time `at`.
    fn run_at(
        given: &[SecretCommand],
        when: &SecretCommand,
        at: Timestamp,
    ) -> Result<Vec<SecretEvent>, Rejection> {
        let actor = alice();
        let project = actor.project.clone();
        let ctx = |now| Context {
            actor: &actor,
            project: &project,
            id: SecretId::from_uuid(Uuid::from_u128(7)),
            now,
        };
        let mut state = SecretState::Absent;
        for cmd in given {
            for e in decide(&state, cmd, ctx(now())).expect("given commands are accepted") {
                state = evolve(state, &e);
            }
        }
        decide(&state, when, ctx(at))
    }

    fn run(given: &[SecretCommand], when: &SecretCommand) -> Result<Vec<SecretEvent>, Rejection> {
        run_at(given, when, now())
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
    fn delete_destroys_the_payload_key() {
        let events = run(&[create(Some(sealed(1)))], &SecretCommand::Delete).unwrap();
        assert_eq!(
            events,
            [SecretEvent::Deleted(SecretDeleted {
                destroyed_keys: vec![sealed(1).key_id]
            })]
        );
    }

    #[test]
    fn nothing_applies_to_a_deleted_secret() {
        let given = [create(None), SecretCommand::Delete];
        for when in [
            SecretCommand::Delete,
            SecretCommand::PutPayload(sealed(1)),
            SecretCommand::SetMetadatum {
                key: MetadataKey::parse("k").unwrap(),
                value: MetadataValue::parse("v").unwrap(),
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
        let later = Timestamp::parse_iso8601("t", "2026-11-23T10:00:00Z").unwrap();
        let err = run_at(
            &[create(None)],
            &SecretCommand::PutPayload(sealed(1)),
            later,
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert_eq!(
            err.message,
            "secret 00000000-0000-0000-0000-000000000007 expired at 2026-11-23T10:00:00Z"
        );
        assert!(run_at(&[create(None)], &SecretCommand::Delete, later).is_ok());
    }

    #[test]
    fn another_projects_principal_is_refused() {
        let mut bob = alice();
        bob.project = ProjectId::parse("p2").unwrap();
        let project = ProjectId::parse("p1").unwrap();
        let ctx = Context {
            actor: &bob,
            project: &project,
            id: SecretId::from_uuid(Uuid::from_u128(7)),
            now: now(),
        };
        let err = decide(&SecretState::Absent, &create(None), ctx).unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
    }
}
