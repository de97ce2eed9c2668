//! Property test of access control. The secret's owners (its creator and a project
//! admin) run any sequence of commands on it, ACL changes included. Interleaved with
//! them, principals without rights try every command, and the payload is asked for.
//! The property: a principal without rights never changes the state and is never
//! allowed the payload.

// A test states what it expects by unwrapping it.
#![allow(clippy::unwrap_used)]

mod common;

use common::sealed;
use domain::ErrorCode;
use domain::ids::{ProjectId, Role, SecretId, UserId};
use domain::policy::{Action, RequestEnv, SecretFacts, Target, authorize};
use domain::principal::Actor;
use domain::principal::Principal;
use domain::secret::acl::{AclChange, AclPatch, Conditions};
use domain::secret::fields::{Attributes, MetadataKey, MetadataValue};
use domain::secret::version::{Lifecycle, Stage};
use domain::secret::{
    Context, CreateSecret, DeleteMode, Presence, PutValue, SecretCommand, SecretState, decide,
    evolve,
};
use domain::timestamp::Timestamp;
use proptest::prelude::*;
use uuid::Uuid;

fn principal(user: &str, project: &str, roles: &[&str]) -> Principal {
    Principal {
        user: UserId::parse(user).unwrap(),
        project: ProjectId::parse(project).unwrap(),
        roles: roles.iter().map(|r| Role::parse(r).unwrap()).collect(),
        service: None,
    }
}

/// Principals who may change the secret.
fn owners() -> Vec<Principal> {
    vec![
        principal("alice", "p1", &["creator"]),
        principal("root", "p1", &["admin"]),
    ]
}

/// Principals who may change nothing: read-only roles, unknown roles, no roles, and
/// anyone from another project, whatever their roles there.
fn outsiders() -> Vec<Principal> {
    vec![
        principal("bob", "p1", &["observer"]),
        principal("eve", "p1", &["audit"]),
        principal("rita", "p1", &["reader"]),
        principal("nobody", "p1", &[]),
        principal("ops", "p1", &["operator", "key-manager-service-admin"]),
        principal("mallory", "p2", &["admin", "creator"]),
        principal("carol", "p2", &["member"]),
    ]
}

/// Outsiders who may never see a payload, whatever the ACL says: the audit role, no
/// roles, or roles keyledger does not know. (A reader on the ACL may, as in Barbican.)
fn never_payload() -> Vec<Principal> {
    vec![
        principal("eve", "p1", &["audit"]),
        principal("nobody", "p1", &[]),
        principal("ops", "p1", &["operator"]),
    ]
}

fn user_set() -> impl Strategy<Value = Option<std::collections::BTreeSet<UserId>>> {
    let names = ["bob", "eve", "rita", "nobody", "carol", "mallory", "dave"];
    prop::option::of(
        prop::sample::subsequence(names.to_vec(), 0..=names.len()).prop_map(|users| {
            users
                .into_iter()
                .map(|u| UserId::parse(u).unwrap())
                .collect()
        }),
    )
}

fn patch() -> impl Strategy<Value = AclPatch> {
    (prop::option::of(any::<bool>()), user_set(), any::<bool>()).prop_map(
        |(project_access, users, limit_source)| AclPatch {
            project_access,
            users,
            conditions: limit_source.then(|| Conditions {
                source_cidrs: Conditions::parse_cidrs(["10.0.0.0/8"]).unwrap(),
                ..Conditions::default()
            }),
        },
    )
}

fn command() -> impl Strategy<Value = SecretCommand> {
    prop_oneof![
        any::<bool>().prop_map(|with_payload| SecretCommand::Create(Box::new(CreateSecret {
            attributes: Attributes::default(),
            payload: with_payload.then(|| sealed(1)),
            owning_service: None,
            tags: Default::default(),
        }))),
        any::<u32>().prop_map(|n| SecretCommand::PutValue(Box::new(PutValue {
            payload: sealed(n),
            stages: None,
        }))),
        Just(SecretCommand::MoveStage {
            stage: Stage::Pending,
            to: Some(sealed(1).version_id),
            from: None,
        }),
        any::<u32>().prop_map(|n| SecretCommand::PutPayload(sealed(n))),
        Just(SecretCommand::SetMetadatum {
            key: MetadataKey::parse("k").unwrap(),
            value: MetadataValue::parse("v").unwrap(),
            presence: Presence::Any,
        }),
        patch().prop_map(|p| SecretCommand::SetAcl(AclChange::Replace(p))),
        patch().prop_map(|p| SecretCommand::SetAcl(AclChange::Merge(p))),
        Just(SecretCommand::SetAcl(AclChange::Reset)),
        Just(SecretCommand::Delete {
            mode: DeleteMode::Now,
            ignore_consumers: false,
        }),
        Just(SecretCommand::Delete {
            mode: DeleteMode::After(None),
            ignore_consumers: false,
        }),
        Just(SecretCommand::Restore),
        Just(SecretCommand::Expire),
        Just(SecretCommand::Purge),
        Just(SecretCommand::PruneVersions),
    ]
}

/// A step: an owner's command (`Ok`) or an outsider's attempt (`Err`), by index.
fn step() -> impl Strategy<Value = (Result<usize, usize>, SecretCommand, bool)> {
    (
        prop_oneof![
            (0..owners().len()).prop_map(Ok),
            (0..outsiders().len()).prop_map(Err)
        ],
        command(),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_principal_without_rights_changes_state_or_reads_a_payload(
        steps in prop::collection::vec(step(), 1..30)
    ) {
        let project = ProjectId::parse("p1").unwrap();
        let id = SecretId::from_uuid(Uuid::from_u128(1));
        let now = Timestamp::parse_iso8601("now", "2026-11-23T12:00:00Z").unwrap();
        let owners = owners();
        let outsiders = outsiders();
        let mut state = SecretState::Absent;

        for (who, cmd, inside_network) in steps {
            let actor = Actor::User(match who {
                Ok(i) => owners[i].clone(),
                Err(i) => outsiders[i].clone(),
            });
            let lifecycle = Lifecycle::default();
            let ctx = Context { actor: &actor, project: &project, id, now, lifecycle: &lifecycle };
            match (who, decide(&state, &cmd, ctx)) {
                (Ok(_), Ok(events)) => {
                    for e in &events {
                        state = evolve(state, e);
                    }
                }
                (Ok(_), Err(_)) => {}
                (Err(_), Ok(events)) => {
                    prop_assert!(false, "{:?} was allowed {:?}: {:?}", actor, cmd, events);
                }
                (Err(_), Err(rejection)) => {
                    // Refused for want of rights, unless the secret simply is not there.
                    prop_assert!(
                        matches!(rejection.code, ErrorCode::Forbidden | ErrorCode::NotFound),
                        "{:?}", rejection
                    );
                }
            }

            // Whatever the ACL has become, nobody without a payload-reading role gets
            // the payload, and nobody unlisted from another project does either.
            if let SecretState::Live(secret) = &state {
                let facts = SecretFacts { id: id.into(), project: &project, creator: &secret.creator, acl: &secret.acl, owning_service: None };
                let source = if inside_network { "10.1.2.3" } else { "192.168.1.1" };
                let env = RequestEnv { source: Some(source.parse().unwrap()), now };
                for p in never_payload() {
                    prop_assert!(authorize(&p, Action::ReadPayload, Target::Secret(facts), env).is_err());
                }
                for p in outsiders.iter().filter(|p| p.project != project) {
                    let allowed = authorize(p, Action::ReadPayload, Target::Secret(facts), env).is_ok();
                    prop_assert!(!allowed || secret.acl.lists(&p.user), "{:?} read an unshared payload", p);
                    prop_assert!(authorize(p, Action::DeleteSecret, Target::Secret(facts), env).is_err());
                }
                let bob = &outsiders[0];
                if !secret.acl.project_access && !secret.acl.lists(&bob.user) {
                    prop_assert!(authorize(bob, Action::ReadPayload, Target::Secret(facts), env).is_err());
                }
                if !secret.acl.conditions.is_empty() && !inside_network {
                    prop_assert!(authorize(bob, Action::ReadSecret, Target::Secret(facts), env).is_err());
                }
            }
        }
    }
}
