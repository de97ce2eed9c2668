//! The log is a public format. These golden files pin the JSON of every event type and
//! of a commit, hash included; a change here must be a deliberate, versioned one (a new
//! `v` and an upcaster), never an edit of the files. Update them with
//! `UPDATE_EXPECT=1 cargo test -p domain --test log_format` only for a new version.

// A test states what it expects by unwrapping it.
#![allow(clippy::unwrap_used)]

use domain::commit::{AggregateRef, Commit, CommitError, CommitKey, EventCodec, NewCommit};
use domain::ids::{CommandId, KeyId, ProjectId, Role, SecretId, ServiceName, UserId, VersionId};
use domain::principal::{Actor, Principal};
use domain::secret::acl::{Acl, Conditions, HourWindow, Weekday};
use domain::secret::consumer::SecretConsumer;
use domain::secret::fields::{
    Algorithm, Attributes, BitLength, Description, Expiration, MetadataKey, MetadataValue, Mode,
    SecretName, SecretType, TagKey, parse_metadata, parse_tags,
};
use domain::secret::payload::{ContentType, SealedPayload};
use domain::secret::rotation::{HandlerName, RotationRules, Step};
use domain::secret::version::Stage;
use domain::secret::{
    AclSet, DeletionScheduled, DescriptionSet, MetadatumDeleted, MetadatumSet, PayloadStored,
    RotationCancelled, RotationConfigured, RotationStarted, RotationStepFailed,
    RotationStepSucceeded, RotationSucceeded, SecretConsumerChanged, SecretCreated, SecretDeleted,
    SecretEvent, SecretExpired, SecretRestored, StageMoved, TagsRemoved, TagsSet,
    VersionsDestroyed,
};
use domain::subject::AggregateKind;
use domain::timestamp::Timestamp;
use expect_test::{ExpectFile, expect_file};
use uuid::Uuid;

fn at(s: &str) -> Timestamp {
    Timestamp::parse_iso8601("t", s).unwrap()
}

fn created() -> SecretEvent {
    SecretEvent::Created(SecretCreated {
        attributes: Attributes {
            name: Some(SecretName::parse("db password").unwrap()),
            secret_type: SecretType::Passphrase,
            algorithm: Some(Algorithm::parse("aes").unwrap()),
            bit_length: Some(BitLength::parse(256).unwrap()),
            mode: Some(Mode::parse("cbc").unwrap()),
            expiration: Some(
                Expiration::parse("2027-01-01T00:00:00Z", at("2026-01-01T00:00:00Z")).unwrap(),
            ),
            metadata: parse_metadata([("owner", "ops")]).unwrap(),
            description: Description::parse("the orders database").unwrap(),
        },
        creator: UserId::parse("alice").unwrap(),
        owning_service: Some(ServiceName::parse("rotator").unwrap()),
        tags: parse_tags([("env", "prod")]).unwrap(),
    })
}

fn payload_stored() -> SecretEvent {
    SecretEvent::PayloadStored(PayloadStored {
        payload: SealedPayload {
            version_id: VersionId::from_uuid(Uuid::from_u128(0x11)),
            key_id: KeyId::from_uuid(Uuid::from_u128(0x22)),
            content_type: ContentType::OctetStream,
            nonce: vec![0xA5; 12],
            ciphertext: vec![0x5A; 20],
        },
        stages: [Stage::Current, Stage::parse("blue-green").unwrap()].into(),
        created: Some(at("2026-11-22T10:00:00Z")),
    })
}

fn others() -> Vec<SecretEvent> {
    let v = |n| VersionId::from_uuid(Uuid::from_u128(n));
    let k = |n| KeyId::from_uuid(Uuid::from_u128(n));
    vec![
        SecretEvent::StageMoved(StageMoved {
            stage: Stage::parse("Canary").unwrap(),
            version: Some(v(0x11)),
        }),
        SecretEvent::VersionsDestroyed(VersionsDestroyed {
            versions: vec![v(0x11)],
            destroyed_keys: vec![k(0x22)],
        }),
        SecretEvent::Expired(SecretExpired {
            expired_at: at("2027-01-01T00:00:00Z"),
            destroyed_keys: vec![k(0x22)],
        }),
        SecretEvent::DeletionScheduled(DeletionScheduled {
            purge_at: at("2026-12-22T10:00:00Z"),
        }),
        SecretEvent::Restored(SecretRestored {}),
        SecretEvent::MetadatumDeleted(MetadatumDeleted {
            key: MetadataKey::parse("team").unwrap(),
        }),
        SecretEvent::TagsSet(TagsSet {
            tags: parse_tags([("env", "prod"), ("cost-center", "")]).unwrap(),
        }),
        SecretEvent::TagsRemoved(TagsRemoved {
            keys: [TagKey::parse("env").unwrap()].into(),
        }),
        SecretEvent::ConsumerRegistered(SecretConsumerChanged {
            consumer: SecretConsumer::parse("octavia", "listener", "l-1").unwrap(),
        }),
        SecretEvent::ConsumerRemoved(SecretConsumerChanged {
            consumer: SecretConsumer::parse("octavia", "listener", "l-1").unwrap(),
        }),
        SecretEvent::RotationConfigured(RotationConfigured {
            handler: HandlerName::parse("postgres").unwrap(),
            rules: Some(RotationRules::parse(None, Some("rate(10 days)"), Some("3h")).unwrap()),
            next_rotation: Some(at("2026-12-02T10:00:00Z")),
        }),
        SecretEvent::RotationStarted(RotationStarted {
            version: v(0x33),
            at: at("2026-11-22T10:00:00Z"),
            next_rotation: Some(at("2026-12-02T10:00:00Z")),
        }),
        SecretEvent::RotationStepSucceeded(RotationStepSucceeded {
            version: v(0x33),
            step: Step::Create,
            lease: at("2026-11-22T10:02:00Z"),
        }),
        SecretEvent::RotationStepFailed(RotationStepFailed {
            version: v(0x33),
            step: Step::Test,
            reason: "the new password does not log in".into(),
            retry_at: Some(at("2026-11-22T10:05:00Z")),
        }),
        SecretEvent::RotationSucceeded(RotationSucceeded {
            version: v(0x33),
            at: at("2026-11-22T10:06:00Z"),
            next_rotation: None,
        }),
        SecretEvent::RotationCancelled(RotationCancelled {
            pending: Some(v(0x33)),
        }),
        SecretEvent::DescriptionSet(DescriptionSet {
            description: Description::parse("rotated nightly").unwrap(),
        }),
    ]
}

fn metadatum_set() -> SecretEvent {
    SecretEvent::MetadatumSet(MetadatumSet {
        key: MetadataKey::parse("team").unwrap(),
        value: MetadataValue::parse("payments").unwrap(),
    })
}

fn deleted() -> SecretEvent {
    SecretEvent::Deleted(SecretDeleted {
        destroyed_keys: vec![KeyId::from_uuid(Uuid::from_u128(0x22))],
    })
}

fn acl_set() -> SecretEvent {
    SecretEvent::AclSet(AclSet {
        read: Acl {
            project_access: false,
            users: [
                UserId::parse("bob").unwrap(),
                UserId::parse("carol").unwrap(),
            ]
            .into(),
            conditions: Conditions {
                source_cidrs: Conditions::parse_cidrs(["192.168.0.0/16", "2001:db8::/32"]).unwrap(),
                utc_hours: Some(HourWindow::parse(8, 18).unwrap()),
                weekdays: Some([Weekday::Mon, Weekday::Fri].into()),
            },
        },
    })
}

fn golden_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn check_golden(event: SecretEvent, golden: ExpectFile) {
    let v = SecretEvent::current_version(event.type_name()).unwrap();
    check_any(
        event.clone(),
        &format!("{}.v{v}.json", event.type_name()),
        golden,
    );
}

/// Pins the JSON of any event, and checks that the file on disk decodes back to it.
fn check_any<E: EventCodec + PartialEq + std::fmt::Debug>(
    event: E,
    file: &str,
    golden: ExpectFile,
) {
    let json = serde_json::to_string_pretty(&event.encode()).unwrap();
    golden.assert_eq(&format!("{json}\n"));
    let stored = std::fs::read_to_string(golden_path(file)).unwrap();
    let decoded = E::decode(serde_json::from_str(&stored).unwrap()).unwrap();
    assert_eq!(decoded, event);
}

/// Pins a version-1 event in `golden/<file>`.
fn check_v1<E: EventCodec + PartialEq + std::fmt::Debug>(event: E, file: &str) {
    let golden = ExpectFile {
        path: format!("golden/{file}").into(),
        position: file!(),
    };
    check_any(event, file, golden);
}

#[test]
fn container_events_v1() {
    use domain::container::{
        ConsumerChanged, ContainerCreated, ContainerDeleted, ContainerEvent, ContainerSecretAdded,
        ContainerSecretRemoved, ContainerType, RefName, SecretRef,
    };
    let r = |name: &str, n: u128| SecretRef {
        name: RefName::parse(name).unwrap(),
        project: ProjectId::parse("p1").unwrap(),
        secret_id: SecretId::from_uuid(Uuid::from_u128(n)),
    };
    let consumer = ConsumerChanged {
        name: "lb".into(),
        url: "https://lb.example/listeners/1".into(),
    };
    let events = [
        ContainerEvent::Created(ContainerCreated {
            name: Some(SecretName::parse("web tls").unwrap()),
            kind: ContainerType::Certificate,
            secret_refs: vec![r("certificate", 1), r("private_key", 2)],
            creator: UserId::parse("alice").unwrap(),
        }),
        ContainerEvent::SecretAdded(ContainerSecretAdded {
            secret_ref: r("extra", 3),
        }),
        ContainerEvent::SecretRemoved(ContainerSecretRemoved {
            name: RefName::parse("extra").unwrap(),
            secret_id: SecretId::from_uuid(Uuid::from_u128(3)),
        }),
        ContainerEvent::ConsumerRegistered(consumer.clone()),
        ContainerEvent::ConsumerRemoved(consumer),
        ContainerEvent::AclSet(AclSet {
            read: Acl::default(),
        }),
        ContainerEvent::Deleted(ContainerDeleted { forced: true }),
    ];
    for event in events {
        let file = format!("{}.v1.json", event.type_name());
        check_v1(event, &file);
    }
}

fn decode_file(name: &str) -> SecretEvent {
    let stored = std::fs::read_to_string(golden_path(name)).unwrap();
    SecretEvent::decode(serde_json::from_str(&stored).unwrap()).unwrap()
}

#[test]
fn secret_created_v3() {
    check_golden(created(), expect_file!["golden/secret.created.v3.json"]);
}

#[test]
fn secret_payload_stored_v3() {
    check_golden(
        payload_stored(),
        expect_file!["golden/secret.payload_stored.v3.json"],
    );
}

/// Logs written before versions and managed secrets still read: a v1 creation has no
/// owning service or tags, and a v1 payload was its secret's current version.
#[test]
fn v1_events_are_upcast() {
    let SecretEvent::Created(c) = decode_file("secret.created.v1.json") else {
        panic!("a creation")
    };
    assert_eq!((c.owning_service, c.tags.len()), (None, 0));
    let SecretEvent::PayloadStored(p) = decode_file("secret.payload_stored.v1.json") else {
        panic!("a payload")
    };
    assert_eq!(p.stages, [Stage::Current].into());
    assert_eq!(p.created, None);
    // Before custom labels: built-in labels only, spelled as now.
    let SecretEvent::PayloadStored(p) = decode_file("secret.payload_stored.v2.json") else {
        panic!("a payload")
    };
    assert_eq!(p.stages, [Stage::Current].into());
    let SecretEvent::StageMoved(m) = decode_file("secret.stage_moved.v1.json") else {
        panic!("a stage move")
    };
    assert_eq!(m.stage, Stage::Previous);
}

#[test]
fn lifecycle_events_at_their_current_versions() {
    for event in others() {
        let v = SecretEvent::current_version(event.type_name()).unwrap();
        let name = format!("golden/{}.v{v}.json", event.type_name());
        let golden = ExpectFile {
            path: name.into(),
            position: file!(),
        };
        check_golden(event, golden);
    }
}

#[test]
fn secret_metadatum_set_v1() {
    check_golden(
        metadatum_set(),
        expect_file!["golden/secret.metadatum_set.v1.json"],
    );
}

#[test]
fn secret_deleted_v1() {
    check_golden(deleted(), expect_file!["golden/secret.deleted.v1.json"]);
}

#[test]
fn secret_acl_set_v1() {
    check_golden(acl_set(), expect_file!["golden/secret.acl_set.v1.json"]);
}

fn commit(version: u64, events: Vec<SecretEvent>) -> NewCommit<SecretEvent> {
    let project = ProjectId::parse("p1").unwrap();
    NewCommit {
        id: CommandId::parse(&format!("cmd-{version}")).unwrap(),
        aggregate: AggregateRef {
            kind: AggregateKind::Secret,
            project: project.clone(),
            id: SecretId::from_uuid(Uuid::from_u128(0x33)).into(),
        },
        version,
        command: "secret.create".into(),
        actor: Actor::User(Principal {
            user: UserId::parse("alice").unwrap(),
            project,
            roles: vec![Role::parse("admin").unwrap()],
            service: None,
        }),
        at: at("2026-11-22T10:00:00.123456Z"),
        events,
    }
}

/// The key golden commits are authenticated with.
fn key() -> CommitKey {
    CommitKey::new([0x42; 32])
}

#[test]
fn commit_bytes_hash_and_authenticator() {
    let c = commit(1, vec![created(), payload_stored()]).seal(None, &key());
    expect_file!["golden/commit.v2.json"]
        .assert_eq(&format!("{}\n", String::from_utf8(c.to_bytes()).unwrap()));
    assert_eq!(
        Commit::<SecretEvent>::open(&c.to_bytes(), &key()).unwrap(),
        c
    );
    // A commit written before custom labels (payload_stored v2) still authenticates,
    // and reads as the same events.
    let bytes = std::fs::read(golden_path("commit.v2.built-in-labels.json")).unwrap();
    let old = Commit::<SecretEvent>::open(bytes.trim_ascii_end(), &key()).unwrap();
    let SecretEvent::PayloadStored(p) = &old.body.events[1] else {
        panic!("a payload")
    };
    assert_eq!(p.stages, [Stage::Current].into());
}

/// A commit written before commits were authenticated (format 1) still parses and
/// verifies its hash, for auditors and `keyledger log migrate`; no live reader
/// accepts it, and the refusal says how to migrate.
#[test]
fn a_format_1_commit_parses_but_is_not_accepted_as_authentic() {
    for file in ["commit.format1.json", "commit.v1.json"] {
        let bytes = std::fs::read(golden_path(file)).unwrap();
        let bytes = bytes.trim_ascii_end();
        let c = Commit::<SecretEvent>::parse_unverified(bytes).unwrap();
        assert_eq!(c.body.events.len(), 2);
        assert!(c.is_format_1());
        let err = Commit::<SecretEvent>::open(bytes, &key()).unwrap_err();
        assert!(err.is_foreign());
        assert!(
            err.to_string().contains("keyledger log migrate"),
            "{file}: {err}"
        );
    }
}

#[test]
fn another_key_or_a_missing_authenticator_is_refused() {
    let c = commit(1, vec![created()]).seal(None, &key());
    let err = Commit::<SecretEvent>::open(&c.to_bytes(), &CommitKey::new([1; 32])).unwrap_err();
    assert!(matches!(err, CommitError::Unauthenticated(_)), "{err}");
    let mut json = c.to_json();
    json.as_object_mut().unwrap().remove("mac");
    let err = Commit::<SecretEvent>::open(json.to_string().as_bytes(), &key()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not written by keyledger: it carries no authenticator (mac)"
    );
    // The authenticator covers the hash, which covers the content.
    let tampered = String::from_utf8(c.to_bytes())
        .unwrap()
        .replace("alice", "mallory");
    let err = Commit::<SecretEvent>::open(tampered.as_bytes(), &key()).unwrap_err();
    assert!(matches!(err, CommitError::HashMismatch { .. }), "{err}");
}

#[test]
fn a_system_commit_names_the_task() {
    let mut c = commit(2, vec![deleted()]);
    c.actor = Actor::scheduler();
    let c = c.seal(None, &key());
    let json = c.to_json();
    assert_eq!(json["actor"], serde_json::json!({"system": "scheduler"}));
    assert_eq!(
        Commit::<SecretEvent>::open(&c.to_bytes(), &key()).unwrap(),
        c
    );
}

#[test]
fn a_changed_byte_breaks_the_hash() {
    let c = commit(1, vec![created()]).seal(None, &key());
    let tampered = String::from_utf8(c.to_bytes())
        .unwrap()
        .replace("alice", "mallory");
    let err = Commit::<SecretEvent>::parse_unverified(tampered.as_bytes()).unwrap_err();
    assert!(matches!(err, CommitError::HashMismatch { .. }), "{err}");
}

#[test]
fn the_hash_ignores_member_order_and_whitespace() {
    let c = commit(1, vec![created()]).seal(None, &key());
    let pretty = serde_json::to_string_pretty(&c.to_json()).unwrap();
    assert_eq!(
        Commit::<SecretEvent>::open(pretty.as_bytes(), &key()).unwrap(),
        c
    );
}

#[test]
fn an_unknown_commit_format_is_named() {
    let c = commit(1, vec![created()]).seal(None, &key());
    let mut json = c.to_json();
    json["v"] = 3.into();
    let mut map = json.as_object().unwrap().clone();
    map.insert(
        "hash".into(),
        domain::commit::hash_of(map.clone()).to_hex().into(),
    );
    let err = Commit::<SecretEvent>::parse_unverified(
        serde_json::Value::Object(map).to_string().as_bytes(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("commit format 3 cannot be read"),
        "{err}"
    );
}

#[test]
fn chain_links_are_checked() {
    let first = commit(1, vec![created()]).seal(None, &key());
    let second = commit(2, vec![metadatum_set()]).seal(Some(first.hash), &key());
    assert_eq!(first.check_link(None), Ok(()));
    assert_eq!(second.check_link(Some(&first)), Ok(()));
    let orphan = commit(2, vec![metadatum_set()]).seal(None, &key());
    assert!(
        orphan
            .check_link(Some(&first))
            .unwrap_err()
            .to_string()
            .contains("links to None")
    );
    let gap = commit(3, vec![metadatum_set()]).seal(Some(first.hash), &key());
    assert!(
        gap.check_link(Some(&first))
            .unwrap_err()
            .to_string()
            .contains("expected 2")
    );
}

#[test]
fn unknown_versions_and_types_are_named() {
    let mut v = payload_stored().encode();
    v["v"] = 9.into();
    let err = SecretEvent::decode(v).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad event: secret.payload_stored v9 cannot be read by this build (it reads up to v3); \
         upgrade keyledger"
    );
    let err =
        SecretEvent::decode(serde_json::json!({"type": "secret.exploded", "v": 1})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad event: unknown event type \"secret.exploded\""
    );
}

#[test]
fn order_events_v1() {
    use domain::ids::ContainerId;
    use domain::order::{
        Material, MaterialRecorded, OrderCompleted, OrderEvent, OrderFailed, OrderPlaced, OrderType,
    };
    let meta =
        serde_json::json!({"algorithm": "ec", "bit_length": 256, "subject_dn": "CN=web.example"});
    let SecretEvent::PayloadStored(stored) = payload_stored() else {
        unreachable!("payload_stored() builds a PayloadStored")
    };
    let events = [
        OrderEvent::Placed(OrderPlaced {
            order_type: OrderType::Certificate,
            meta: meta.as_object().unwrap().clone(),
            creator: UserId::parse("alice").unwrap(),
        }),
        OrderEvent::MaterialRecorded(MaterialRecorded {
            items: vec![Material {
                role: "private_key".into(),
                secret_id: SecretId::from_uuid(Uuid::from_u128(0x44)),
                attributes: Attributes {
                    secret_type: SecretType::Private,
                    ..Default::default()
                },
                payload: stored.payload,
            }],
        }),
        OrderEvent::Completed(OrderCompleted {
            secret_id: None,
            container_id: Some(ContainerId::from_uuid(Uuid::from_u128(0x55))),
        }),
        OrderEvent::Failed(OrderFailed {
            error_status_code: 503,
            error_reason: "the CA local is unreachable".into(),
        }),
        OrderEvent::Deleted,
    ];
    for event in events {
        let file = format!("{}.v1.json", event.type_name());
        check_v1(event, &file);
    }
}

#[test]
fn access_key_events_v1() {
    use domain::access_key::{AccessKeyCreated, AccessKeyEvent, AccessKeyRevoked};
    let SecretEvent::PayloadStored(stored) = payload_stored() else {
        unreachable!("payload_stored() builds a PayloadStored")
    };
    let events = [
        AccessKeyEvent::Created(Box::new(AccessKeyCreated {
            user: UserId::parse("ci-deployer").unwrap(),
            roles: vec![Role::parse("member").unwrap()],
            service: Some(ServiceName::parse("deploy").unwrap()),
            creator: UserId::parse("alice").unwrap(),
            secret: stored.payload.clone(),
        })),
        AccessKeyEvent::Revoked(AccessKeyRevoked {
            destroyed_keys: vec![stored.payload.key_id],
        }),
    ];
    for event in events {
        let file = format!("{}.v1.json", event.type_name());
        check_v1(event, &file);
    }
}

#[test]
fn keyring_events_v1() {
    use domain::keyring::{KekRetired, KekRotated, KeyringEvent, RewrapFinished, RewrapStarted};
    let events = [
        KeyringEvent::Rotated(KekRotated {
            from: 0,
            to: 1,
            kek_id: "2bcb9c43392063e2".into(),
        }),
        KeyringEvent::RewrapStarted(RewrapStarted { to: 1, total: 2048 }),
        KeyringEvent::RewrapFinished(RewrapFinished {
            to: 1,
            rewrapped: 2000,
            already: 40,
            gone: 8,
        }),
        KeyringEvent::Retired(KekRetired {
            version: 0,
            kek_id: "0c214a649be441f4".into(),
        }),
    ];
    for event in events {
        let file = format!("{}.v1.json", event.type_name());
        check_v1(event, &file);
    }
}

#[test]
fn quota_events_v1() {
    use domain::quota::{Limit, QuotaCharged, QuotaEvent, QuotaSet, Resource};
    let events = [
        QuotaEvent::Set(QuotaSet {
            limits: [
                (
                    Resource::Secrets,
                    Limit::parse(100, Resource::Secrets).unwrap(),
                ),
                (Resource::Orders, Limit::parse(0, Resource::Orders).unwrap()),
                (Resource::Cas, Limit::UNLIMITED),
            ]
            .into_iter()
            .collect(),
        }),
        QuotaEvent::Cleared,
        QuotaEvent::Charged(QuotaCharged {
            resource: Resource::Secrets,
            subject: "keyledger.events.p1.secret.5e3b8bd9-8a4e-4b3e-9df4-0d6c3c1a2b7f".into(),
            used: 41,
            limit: 100,
        }),
    ];
    for event in events {
        let file = format!("{}.v1.json", event.type_name());
        check_v1(event, &file);
    }
}
