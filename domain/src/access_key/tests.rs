//! Given these events, when this command, then these events (or this error).

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::ErrorCode;
use crate::commit::EventCodec;
use crate::ids::{KeyId, Role, ServiceName, UserId};
use crate::principal::{Actor, Principal};
use crate::secret::payload::{ContentType, SealedPayload};
use crate::timestamp::Timestamp;

fn now() -> Timestamp {
    Timestamp::parse_iso8601("now", "2026-12-03T10:00:00Z").unwrap()
}

fn p1() -> ProjectId {
    ProjectId::parse("p1").unwrap()
}

fn id() -> AccessKeyId {
    AccessKeyId::parse("AKLGAAAABBBBCCCCDDDD").unwrap()
}

fn user(name: &str, roles: &[&str]) -> Actor {
    Actor::User(Principal {
        user: UserId::parse(name).unwrap(),
        project: p1(),
        roles: roles.iter().map(|r| Role::parse(r).unwrap()).collect(),
        service: None,
    })
}

fn sealed() -> SealedPayload {
    let (_, version_id) = sealing_ids(&p1(), &id());
    SealedPayload {
        version_id,
        key_id: KeyId::from_uuid(Uuid::from_u128(9)),
        content_type: ContentType::TextPlain,
        nonce: vec![1; 12],
        ciphertext: vec![2; 56],
    }
}

fn create(for_user: &str, roles: &[&str], service: Option<&str>) -> AccessKeyCommand {
    AccessKeyCommand::Create(Box::new(CreateAccessKey {
        user: UserId::parse(for_user).unwrap(),
        roles: roles.iter().map(|r| Role::parse(r).unwrap()).collect(),
        service: service.map(|s| ServiceName::parse(s).unwrap()),
        secret: sealed(),
    }))
}

fn run(
    given: &[AccessKeyEvent],
    actor: &Actor,
    command: &AccessKeyCommand,
) -> Result<Vec<AccessKeyEvent>, crate::Rejection> {
    let state = given.iter().fold(AccessKeyState::default(), evolve);
    let (project, id) = (p1(), id());
    decide(
        &state,
        command,
        Context {
            actor,
            project: &project,
            id: &id,
            now: now(),
        },
    )
}

fn created(for_user: &str) -> AccessKeyEvent {
    run(
        &[],
        &user("root", &["admin"]),
        &create(for_user, &["member"], None),
    )
    .unwrap()
    .remove(0)
}

#[test]
fn a_user_creates_a_key_for_themselves_with_roles_they_have() {
    let events = run(
        &[],
        &user("alice", &["member", "observer"]),
        &create("alice", &["member"], None),
    )
    .unwrap();
    let [AccessKeyEvent::Created(e)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(e.user.as_str(), "alice");
    assert_eq!(e.creator.as_str(), "alice");
    assert_eq!(e.secret, sealed());
}

#[test]
fn only_an_admin_creates_keys_for_others_or_with_more_roles() {
    let alice = user("alice", &["member"]);
    let err = run(&[], &alice, &create("bob", &["member"], None)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert!(err.message.contains("only an admin"), "{}", err.message);

    let err = run(&[], &alice, &create("alice", &["admin"], None)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert!(err.message.contains("(admin)"), "{}", err.message);

    let err = run(&[], &alice, &create("alice", &["member"], Some("nova"))).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert!(err.message.contains("service nova"), "{}", err.message);

    let admin = user("root", &["admin"]);
    let events = run(&[], &admin, &create("bob", &["member"], Some("nova"))).unwrap();
    let [AccessKeyEvent::Created(e)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!((e.user.as_str(), e.creator.as_str()), ("bob", "root"));
    assert_eq!(e.service.as_ref().map(ServiceName::as_str), Some("nova"));
}

#[test]
fn a_key_needs_a_role_and_an_id_is_never_reused() {
    let admin = user("root", &["admin"]);
    let err = run(&[], &admin, &create("bob", &[], None)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid);

    let err = run(&[created("bob")], &admin, &create("bob", &["member"], None)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    let revoked = AccessKeyEvent::Revoked(AccessKeyRevoked {
        destroyed_keys: vec![sealed().key_id],
    });
    let err = run(
        &[created("bob"), revoked],
        &admin,
        &create("bob", &["member"], None),
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
}

#[test]
fn revoking_destroys_the_data_key_once() {
    let bob = user("bob", &["member"]);
    let events = run(&[created("bob")], &bob, &AccessKeyCommand::Revoke).unwrap();
    assert_eq!(
        events,
        vec![AccessKeyEvent::Revoked(AccessKeyRevoked {
            destroyed_keys: vec![sealed().key_id]
        })]
    );
    let again = run(
        &[created("bob"), events[0].clone()],
        &bob,
        &AccessKeyCommand::Revoke,
    )
    .unwrap();
    assert!(again.is_empty());
    let err = run(&[], &bob, &AccessKeyCommand::Revoke).unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

#[test]
fn another_users_key_looks_absent_to_a_non_admin() {
    let err = run(
        &[created("bob")],
        &user("alice", &["member"]),
        &AccessKeyCommand::Revoke,
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let events = run(
        &[created("bob")],
        &user("root", &["admin"]),
        &AccessKeyCommand::Revoke,
    )
    .unwrap();
    assert_eq!(events.len(), 1);
    // Revoked, it still looks absent to others (and revoking it again is a no-op
    // for its user).
    let revoked = [created("bob"), events[0].clone()];
    let err = run(
        &revoked,
        &user("alice", &["member"]),
        &AccessKeyCommand::Revoke,
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(
        run(
            &revoked,
            &user("bob", &["member"]),
            &AccessKeyCommand::Revoke
        )
        .unwrap()
        .is_empty()
    );
}

#[test]
fn a_key_needs_a_role_the_policy_knows_and_an_id_is_never_echoed() {
    let admin = user("root", &["admin"]);
    let err = run(&[], &admin, &create("bob", &["superuser"], None)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid);
    assert!(err.message.contains("member"), "{}", err.message);
    let err = AccessKeyId::parse("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").unwrap_err();
    assert!(!err.message.contains("wJalr"), "{}", err.message);
}

#[test]
fn keyledger_itself_and_other_projects_manage_no_keys() {
    let err = run(&[], &Actor::scheduler(), &create("bob", &["member"], None)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    let other = Actor::User(Principal {
        user: UserId::parse("root").unwrap(),
        project: ProjectId::parse("p2").unwrap(),
        roles: vec![Role::parse("admin").unwrap()],
        service: None,
    });
    let err = run(&[], &other, &create("root", &["admin"], None)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert!(err.message.contains("project p2"), "{}", err.message);
}

#[test]
fn events_keep_their_json_shape() {
    for event in [
        created("bob"),
        AccessKeyEvent::Revoked(AccessKeyRevoked {
            destroyed_keys: vec![sealed().key_id],
        }),
    ] {
        let json = event.encode();
        assert_eq!(json["v"], 1);
        assert_eq!(json["type"], event.type_name());
        assert_eq!(AccessKeyEvent::decode(json).unwrap(), event);
    }
}

#[test]
fn sealing_ids_differ_per_project_and_key() {
    let other = AccessKeyId::parse("AKLGAAAABBBBCCCCDDDE").unwrap();
    assert_ne!(sealing_ids(&p1(), &id()), sealing_ids(&p1(), &other));
    let p2 = ProjectId::parse("p2").unwrap();
    assert_ne!(sealing_ids(&p1(), &id()), sealing_ids(&p2, &id()));
}

#[test]
fn secrets_are_checked_without_being_echoed() {
    assert!(check_secret(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").is_ok());
    for bad in [&b"short"[..], b"has a space in it ok", &[b'x'; 129]] {
        let err = check_secret(bad).unwrap_err();
        assert!(
            !err.message.contains(std::str::from_utf8(bad).unwrap()),
            "{}",
            err.message
        );
    }
}

proptest! {
    #[test]
    fn generated_ids_parse_and_address_one_subject_token(random in any::<[u8; GENERATED_RANDOM_BYTES]>()) {
        let id = AccessKeyId::generated(random);
        prop_assert_eq!(id.as_str().len(), 20);
        prop_assert!(id.as_str().starts_with(GENERATED_PREFIX));
        prop_assert_eq!(AccessKeyId::parse(id.as_str()).unwrap(), id.clone());
        let aggregate = id.aggregate_id();
        prop_assert_eq!(aggregate.as_str(), id.as_str());
    }

    #[test]
    fn ids_parse_only_letters_and_digits(s in "\\PC{0,80}") {
        if let Ok(id) = AccessKeyId::parse(&s) {
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
            prop_assert!((16..=64).contains(&s.len()));
            prop_assert_eq!(id.as_str(), s.as_str());
        }
    }
}

/// Who sends a command in the property test below.
fn caller(n: u8) -> Actor {
    match n % 5 {
        0 => user("root", &["admin"]),
        1 => user("bob", &["member"]),
        2 => user("alice", &["member"]),
        3 => Actor::scheduler(),
        _ => Actor::User(Principal {
            user: UserId::parse("root").unwrap(),
            project: ProjectId::parse("p2").unwrap(),
            roles: vec![Role::parse("admin").unwrap()],
            service: None,
        }),
    }
}

proptest! {
    /// Any sequence of creates and revokes by anyone: a key is created once, only by
    /// an admin of its project or for the creator itself; only its user or an admin
    /// revokes it; a revocation destroys exactly the data key it was created with;
    /// nothing happens after it; and decide is deterministic.
    #[test]
    fn keys_are_created_once_and_revoked_only_by_their_user_or_an_admin(
        steps in proptest::collection::vec((any::<u8>(), any::<bool>(), any::<bool>()), 1..24)
    ) {
        let mut state = AccessKeyState::default();
        let mut created_key = None;
        let mut revoked = false;
        for (who, is_create, for_bob) in steps {
            let actor = caller(who);
            let command = if is_create {
                create(if for_bob { "bob" } else { "alice" }, &["member"], None)
            } else {
                AccessKeyCommand::Revoke
            };
            let (project, id) = (p1(), id());
            let ctx = Context { actor: &actor, project: &project, id: &id, now: now() };
            let outcome = decide(&state, &command, ctx);
            prop_assert_eq!(&outcome, &decide(&state, &command, ctx));
            let Ok(events) = outcome else { continue };
            let Actor::User(who) = &actor else {
                return Err(TestCaseError::fail("keyledger itself changed an access key"));
            };
            prop_assert_eq!(who.project.as_str(), "p1");
            let admin = who.user.as_str() == "root";
            for event in &events {
                match event {
                    AccessKeyEvent::Created(e) => {
                        prop_assert!(created_key.is_none(), "created twice");
                        prop_assert!(admin || e.user == who.user);
                        created_key = Some((e.user.clone(), e.secret.key_id));
                    }
                    AccessKeyEvent::Revoked(e) => {
                        prop_assert!(!revoked, "revoked twice");
                        let (owner, key) = created_key.clone().unwrap();
                        prop_assert!(admin || owner == who.user);
                        prop_assert_eq!(&e.destroyed_keys, &vec![key]);
                        revoked = true;
                    }
                }
            }
            state = events.iter().fold(state, evolve);
        }
        prop_assert_eq!(revoked, matches!(state, AccessKeyState::Revoked { .. }));
    }
}
