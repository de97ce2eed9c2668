//! Given these events, when this command, then these events (or this error).

use uuid::Uuid;

use super::*;
use crate::ErrorCode;
use crate::ids::{ContainerId, Role, SecretId, UserId};
use crate::principal::{Actor, Principal};
use crate::secret::{CreateSecret, SecretCommand, SecretState};
use crate::timestamp::Timestamp;

fn now() -> Timestamp {
    Timestamp::parse_iso8601("now", "2026-11-22T10:00:00Z").unwrap()
}

fn principal(user: &str, project: &str, roles: &[&str]) -> Principal {
    Principal {
        user: UserId::parse(user).unwrap(),
        project: ProjectId::parse(project).unwrap(),
        roles: roles.iter().map(|r| Role::parse(r).unwrap()).collect(),
        service: None,
    }
}

fn sref(name: &str, n: u128) -> SecretRef {
    SecretRef {
        name: RefName::parse(name).unwrap(),
        project: ProjectId::parse("p1").unwrap(),
        secret_id: SecretId::from_uuid(Uuid::from_u128(n)),
    }
}

fn create(kind: ContainerType, refs: Vec<SecretRef>) -> ContainerCommand {
    ContainerCommand::Create(Box::new(CreateContainer {
        name: None,
        kind,
        refs,
    }))
}

/// Decides `when` after `given`, every referenced secret allowed.
fn run(
    given: &[ContainerCommand],
    when: &ContainerCommand,
) -> Result<Vec<ContainerEvent>, Rejection> {
    let actor = Actor::User(principal("alice", "p1", &["creator"]));
    let project = ProjectId::parse("p1").unwrap();
    let all_ok: RefChecks = (0..10u128)
        .map(|n| (SecretId::from_uuid(Uuid::from_u128(n)), Ok(())))
        .collect();
    let ctx = Context {
        actor: &actor,
        project: &project,
        id: ContainerId::from_uuid(Uuid::from_u128(99)),
        now: now(),
        refs: &all_ok,
    };
    let mut state = ContainerState::Absent;
    for cmd in given {
        for e in decide(&state, cmd, ctx).expect("given commands are accepted") {
            state = evolve(state, &e);
        }
    }
    decide(&state, when, ctx)
}

#[test]
fn each_type_takes_its_names() {
    let rsa = vec![sref("public_key", 1), sref("private_key", 2)];
    assert!(validate_refs(ContainerType::Rsa, &rsa).is_ok());
    let err = validate_refs(ContainerType::Rsa, &rsa[..1]).unwrap_err();
    assert_eq!(
        err.message,
        "a rsa container needs a reference named private_key; add it to secret_refs"
    );
    let err = validate_refs(ContainerType::Certificate, &[sref("cert", 1)]).unwrap_err();
    assert!(
        err.message
            .starts_with("a certificate container cannot hold a reference named \"cert\""),
        "{}",
        err.message
    );
    let twice = vec![sref("a", 1), sref("a", 2)];
    assert!(
        validate_refs(ContainerType::Generic, &twice)
            .unwrap_err()
            .message
            .contains("appears twice")
    );
    assert!(validate_refs(ContainerType::Generic, &[]).is_ok());
}

#[test]
fn only_generic_containers_change_their_references() {
    let generic = create(ContainerType::Generic, vec![sref("a", 1)]);
    let added = run(
        std::slice::from_ref(&generic),
        &ContainerCommand::AddSecret(sref("b", 2)),
    )
    .unwrap();
    assert_eq!(added.len(), 1);
    let removed = ContainerCommand::RemoveSecret {
        name: RefName::parse("a").unwrap(),
        secret_id: SecretId::from_uuid(Uuid::from_u128(1)),
    };
    assert_eq!(run(&[generic], &removed).unwrap().len(), 1);
    let cert = create(ContainerType::Certificate, vec![sref("certificate", 1)]);
    let err = run(
        &[cert],
        &ContainerCommand::AddSecret(sref("intermediates", 2)),
    )
    .unwrap_err();
    assert!(
        err.message.contains("only generic containers"),
        "{}",
        err.message
    );
}

#[test]
fn a_container_with_consumers_is_deleted_only_when_forced() {
    let consumer = Consumer::parse("lb", "https://lb.example/listeners/1").unwrap();
    let given = [
        create(ContainerType::Generic, vec![]),
        ContainerCommand::RegisterConsumer(consumer),
    ];
    let err = run(&given, &ContainerCommand::Delete { force: false }).unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid);
    assert_eq!(
        err.message,
        "container 00000000-0000-0000-0000-000000000063 has consumers: lb \
         (https://lb.example/listeners/1); unregister them first, or force the deletion"
    );
    let forced = run(&given, &ContainerCommand::Delete { force: true }).unwrap();
    assert_eq!(
        forced,
        [ContainerEvent::Deleted(ContainerDeleted { forced: true })]
    );
}

#[test]
fn a_reference_must_exist_be_live_and_readable() {
    let r = sref("certificate", 1);
    let alice = principal("alice", "p1", &["creator"]);
    let err = check_ref(&alice, &r, &SecretState::Absent, now()).unwrap_err();
    assert!(
        err.message.contains("which does not exist"),
        "{}",
        err.message
    );
    let created = SecretCommand::Create(Box::new(CreateSecret {
        attributes: Default::default(),
        payload: None,
        owning_service: None,
        tags: Default::default(),
    }));
    let project = ProjectId::parse("p1").unwrap();
    let actor = Actor::User(alice.clone());
    let lifecycle = Default::default();
    let events = crate::secret::decide(
        &SecretState::Absent,
        &created,
        crate::secret::Context {
            actor: &actor,
            project: &project,
            id: r.secret_id,
            now: now(),
            lifecycle: &lifecycle,
        },
    )
    .unwrap();
    let state = events
        .iter()
        .fold(SecretState::Absent, crate::secret::evolve);
    assert_eq!(check_ref(&alice, &r, &state, now()), Ok(()));
    // In its recovery window it conflicts; from the window's end it is deleted.
    let purge_at = now()
        .plus(std::time::Duration::from_secs(7 * 86_400))
        .unwrap();
    let scheduled = crate::secret::evolve(
        state.clone(),
        &crate::secret::SecretEvent::DeletionScheduled(crate::secret::DeletionScheduled {
            purge_at,
        }),
    );
    let err = check_ref(&alice, &r, &scheduled, now()).unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(
        err.message.contains("scheduled for deletion on"),
        "{}",
        err.message
    );
    let err = check_ref(&alice, &r, &scheduled, purge_at).unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(
        err.message.contains("recovery window ended at"),
        "{}",
        err.message
    );
    let mallory = principal("mallory", "p2", &["admin"]);
    let err = check_ref(&mallory, &r, &state, now()).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert!(
        err.message
            .starts_with("secret_refs \"certificate\": reading secret"),
        "{}",
        err.message
    );
}

#[test]
fn a_denied_reference_refuses_the_whole_command() {
    let actor = Actor::User(principal("alice", "p1", &["creator"]));
    let project = ProjectId::parse("p1").unwrap();
    let denied: RefChecks = [(
        SecretId::from_uuid(Uuid::from_u128(1)),
        Err(Rejection::forbidden("no")),
    )]
    .into();
    let ctx = Context {
        actor: &actor,
        project: &project,
        id: ContainerId::from_uuid(Uuid::from_u128(99)),
        now: now(),
        refs: &denied,
    };
    let cmd = create(ContainerType::Generic, vec![sref("a", 1)]);
    assert_eq!(
        decide(&ContainerState::Absent, &cmd, ctx).unwrap_err(),
        Rejection::forbidden("no")
    );
    let observer = Actor::User(principal("olga", "p1", &["observer"]));
    let ctx = Context {
        actor: &observer,
        ..ctx
    };
    let err = decide(
        &ContainerState::Absent,
        &create(ContainerType::Generic, vec![]),
        ctx,
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "creating a container in project p1 requires role member, creator or admin; you have observer"
    );
}
