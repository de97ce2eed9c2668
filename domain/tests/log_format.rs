//! The log is a public format. These golden files pin the JSON of every event type and
//! of a commit, hash included; a change here must be a deliberate, versioned one (a new
//! `v` and an upcaster), never an edit of the files. Update them with
//! `UPDATE_EXPECT=1 cargo test -p domain --test log_format` only for a new version.

use domain::commit::{AggregateRef, Commit, CommitError, EventCodec, NewCommit};
use domain::ids::{CommandId, KeyId, ProjectId, Role, SecretId, UserId, VersionId};
use domain::principal::Principal;
use domain::secret::acl::{Acl, Conditions, HourWindow, Weekday};
use domain::secret::fields::{
    Algorithm, Attributes, BitLength, Expiration, MetadataKey, MetadataValue, Mode, SecretName,
    SecretType, parse_metadata,
};
use domain::secret::payload::{ContentType, SealedPayload};
use domain::secret::{
    AclSet, MetadatumSet, PayloadStored, SecretCreated, SecretDeleted, SecretEvent,
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
        },
        creator: UserId::parse("alice").unwrap(),
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
    })
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

fn check_golden(event: SecretEvent, golden: ExpectFile) {
    let json = serde_json::to_string_pretty(&event.encode()).unwrap();
    golden.assert_eq(&format!("{json}\n"));
    // What is on disk must keep decoding to the same event.
    let stored = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(format!("{}.v1.json", event.type_name())),
    )
    .unwrap();
    let decoded = SecretEvent::decode(serde_json::from_str(&stored).unwrap()).unwrap();
    assert_eq!(decoded, event);
}

#[test]
fn secret_created_v1() {
    check_golden(created(), expect_file!["golden/secret.created.v1.json"]);
}

#[test]
fn secret_payload_stored_v1() {
    check_golden(
        payload_stored(),
        expect_file!["golden/secret.payload_stored.v1.json"],
    );
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
            id: SecretId::from_uuid(Uuid::from_u128(0x33)).to_string(),
        },
        version,
        command: "secret.create".into(),
        actor: Principal {
            user: UserId::parse("alice").unwrap(),
            project,
            roles: vec![Role::parse("admin").unwrap()],
            service: None,
        },
        at: at("2026-11-22T10:00:00.123456Z"),
        events,
    }
}

#[test]
fn commit_v1_bytes_and_hash() {
    let c = commit(1, vec![created(), payload_stored()]).seal(None);
    expect_file!["golden/commit.v1.json"]
        .assert_eq(&format!("{}\n", String::from_utf8(c.to_bytes()).unwrap()));
    let parsed = Commit::<SecretEvent>::from_slice(&c.to_bytes()).unwrap();
    assert_eq!(parsed, c);
}

#[test]
fn a_changed_byte_breaks_the_hash() {
    let c = commit(1, vec![created()]).seal(None);
    let tampered = String::from_utf8(c.to_bytes())
        .unwrap()
        .replace("alice", "mallory");
    let err = Commit::<SecretEvent>::from_slice(tampered.as_bytes()).unwrap_err();
    assert!(matches!(err, CommitError::HashMismatch { .. }), "{err}");
}

#[test]
fn the_hash_ignores_member_order_and_whitespace() {
    let c = commit(1, vec![created()]).seal(None);
    let pretty = serde_json::to_string_pretty(&c.to_json()).unwrap();
    assert_eq!(
        Commit::<SecretEvent>::from_slice(pretty.as_bytes()).unwrap(),
        c
    );
}

#[test]
fn chain_links_are_checked() {
    let first = commit(1, vec![created()]).seal(None);
    let second = commit(2, vec![metadatum_set()]).seal(Some(first.hash));
    assert_eq!(first.check_link(None), Ok(()));
    assert_eq!(second.check_link(Some(&first)), Ok(()));
    let orphan = commit(2, vec![metadatum_set()]).seal(None);
    assert!(
        orphan
            .check_link(Some(&first))
            .unwrap_err()
            .contains("links to None")
    );
    let gap = commit(3, vec![metadatum_set()]).seal(Some(first.hash));
    assert!(
        gap.check_link(Some(&first))
            .unwrap_err()
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
        "bad event: secret.payload_stored v9 cannot be read by this build (it reads up to v1); \
         upgrade keyledger"
    );
    let err =
        SecretEvent::decode(serde_json::json!({"type": "secret.exploded", "v": 1})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad event: unknown event type \"secret.exploded\""
    );
}
