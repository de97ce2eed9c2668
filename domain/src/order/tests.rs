//! Given these events, when this command, then these events (or this error).

use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::ErrorCode;
use crate::ids::Role;
use crate::principal::Principal;

fn now() -> Timestamp {
    Timestamp::parse_iso8601("now", "2026-11-22T10:00:00Z").unwrap()
}

fn alice() -> Actor {
    Actor::User(Principal {
        user: UserId::parse("alice").unwrap(),
        project: ProjectId::parse("p1").unwrap(),
        roles: vec![Role::parse("creator").unwrap()],
        service: None,
    })
}

fn meta(v: serde_json::Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn run(
    given: &[(Actor, OrderCommand)],
    actor: &Actor,
    when: &OrderCommand,
) -> Result<Vec<OrderEvent>, Rejection> {
    let project = ProjectId::parse("p1").unwrap();
    let ctx = |actor| Context {
        actor,
        project: &project,
        id: OrderId::from_uuid(Uuid::from_u128(5)),
        now: now(),
    };
    let mut state = OrderState::Absent;
    for (a, cmd) in given {
        for e in decide(&state, cmd, ctx(a)).expect("given commands are accepted") {
            state = evolve(state, &e);
        }
    }
    decide(&state, when, ctx(actor))
}

fn place() -> OrderCommand {
    OrderCommand::Place {
        order_type: OrderType::Key,
        meta: meta(json!({"algorithm": "aes", "bit_length": 256, "name": "k"})),
    }
}

#[test]
fn meta_is_checked_for_shape_at_placement() {
    let err = run(
        &[],
        &alice(),
        &OrderCommand::Place {
            order_type: OrderType::Key,
            meta: meta(json!({"algorithm": "aes", "bits": 256})),
        },
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "meta.bits is not a field of key orders; they take algorithm, bit_length, mode, name, \
         expiration, payload_content_type"
    );
    let err = run(
        &[],
        &alice(),
        &OrderCommand::Place {
            order_type: OrderType::Certificate,
            meta: meta(json!({"algorithm": "ec"})),
        },
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "meta.subject_dn is required for certificate orders"
    );
    assert_eq!(run(&[], &alice(), &place()).unwrap().len(), 1);
}

#[test]
fn only_the_worker_records_completes_or_fails() {
    let done = OrderCommand::Complete(OrderCompleted {
        secret_id: Some(SecretId::from_uuid(Uuid::from_u128(1))),
        container_id: None,
    });
    let given = [(alice(), place())];
    let err = run(&given, &alice(), &done).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert_eq!(
        err.message,
        "order.complete is issued by keyledger's order worker only"
    );
    let err = run(&given, &Actor::scheduler(), &done).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    let events = run(&given, &Actor::order_worker(), &done).unwrap();
    assert_eq!(events.len(), 1);
    // Completing again with the same result is a no-op; failing after is a conflict.
    let given = [(alice(), place()), (Actor::order_worker(), done.clone())];
    assert_eq!(run(&given, &Actor::order_worker(), &done).unwrap(), []);
    let fail = OrderCommand::Fail(OrderFailed {
        error_status_code: 503,
        error_reason: "x".into(),
    });
    let err = run(&given, &Actor::order_worker(), &fail).unwrap_err();
    assert_eq!(
        err.message,
        "order 00000000-0000-0000-0000-000000000005 is ACTIVE already"
    );
}

#[test]
fn material_is_recorded_once() {
    let item = Material {
        role: "secret".into(),
        secret_id: SecretId::from_uuid(Uuid::from_u128(1)),
        attributes: Default::default(),
        payload: crate::secret::payload::SealedPayload {
            version_id: crate::ids::VersionId::from_uuid(Uuid::from_u128(2)),
            key_id: crate::ids::KeyId::from_uuid(Uuid::from_u128(3)),
            content_type: crate::secret::payload::ContentType::OctetStream,
            nonce: vec![0; 12],
            ciphertext: vec![1; 16],
        },
    };
    let record = OrderCommand::RecordMaterial(vec![item]);
    let given = [(alice(), place()), (Actor::order_worker(), record.clone())];
    assert_eq!(run(&given, &Actor::order_worker(), &record).unwrap(), []);
}

#[test]
fn symmetric_keys_are_checked_with_what_is_supported() {
    let key = |algorithm: &str, bits: u32| {
        let mut meta = serde_json::Map::new();
        meta.insert("algorithm".into(), algorithm.into());
        meta.insert("bit_length".into(), bits.into());
        OrderSpec::parse(OrderType::Key, &meta)
            .unwrap()
            .symmetric_key_bytes()
    };
    assert_eq!(key("aes", 256), Ok(32));
    assert_eq!(key("hmac", 512), Ok(64));
    assert!(
        key("aes", 512)
            .unwrap_err()
            .0
            .contains("use aes 128, 192 or 256")
    );
    assert!(key("des", 64).is_err());
}

#[test]
fn key_pairs_and_names_are_checked_with_what_is_supported() {
    assert_eq!(KeySpec::parse("rsa", 2048), Ok(KeySpec::Rsa(2048)));
    assert_eq!(KeySpec::parse("ec", 384), Ok(KeySpec::P384));
    assert_eq!(
        KeySpec::parse("rsa", 1024).unwrap_err().to_string(),
        "rsa 1024 is not supported; use rsa 2048, 3072 or 4096; ec 256 (P-256) or 384 (P-384)"
    );
    assert!(DistinguishedName::parse("CN=web.example,O=Example,C=DE").is_ok());
    assert_eq!(
        DistinguishedName::parse("CN=web.example,XX=1")
            .unwrap_err()
            .to_string(),
        "subject_dn field XX is not supported; use CN, O, OU, L, ST, C"
    );
    assert!(
        DistinguishedName::parse("CN=a,C=Germany")
            .unwrap_err()
            .0
            .contains("field C must be a two-letter country code")
    );
    assert!(
        DistinguishedName::parse("O=Example")
            .unwrap_err()
            .0
            .contains("field CN is missing")
    );
}

#[test]
fn a_certificates_names_must_be_dns_names() {
    let cert = |names: &[&str]| {
        let mut meta = serde_json::Map::new();
        meta.insert("subject_dn".into(), "CN=x".into());
        meta.insert("subject_alt_names".into(), names.into());
        OrderSpec::parse(OrderType::Certificate, &meta)
            .and_then(|spec| spec.check_names().map(|()| spec.subject_alt_names))
    };
    let fine = [
        "db.example.com",
        "*.example.com",
        "xn--bcher-kva.example",
        "a-1.b2.example",
        "localhost",
    ];
    assert_eq!(cert(&fine).unwrap(), fine);
    let long_label = format!("{}.example", "a".repeat(64));
    let long_name = format!("{}.example", ["a"; 124].join("."));
    for (name, says) in [
        ("a b.example", "holds ' '"),
        ("-", "starts or ends with a hyphen"),
        ("-x.example", "starts or ends with a hyphen"),
        ("::::", "holds ':'"),
        ("*", "needs a name after it"),
        ("*.*.example", "leftmost"),
        ("x.*.example", "leftmost"),
        ("1.2.3.999", "all digits"),
        ("10.0.0.1", "IP address"),
        ("under_score.example", "holds '_'"),
        ("dot.example.", "ends with a dot"),
        ("bücher.example", "xn-- form"),
        ("a..example", "empty label"),
        (long_label.as_str(), "longer than 63"),
        (long_name.as_str(), "at most 253"),
    ] {
        let refused = cert(&["ok.example", name]).unwrap_err();
        assert!(
            refused
                .message
                .contains(&format!("{name:?}, which is not a DNS name"))
                && refused.message.contains(says),
            "{name}: {}",
            refused.message
        );
    }
}

#[test]
fn a_number_too_large_is_told_by_its_range() {
    let mut meta = serde_json::Map::new();
    meta.insert("algorithm".into(), "aes".into());
    meta.insert("bit_length".into(), 99_999_999_999u64.into());
    let refused = OrderSpec::parse(OrderType::Key, &meta).unwrap_err();
    assert_eq!(
        refused.message,
        "meta.bit_length must be a whole number from 0 to 4294967295; got 99999999999"
    );
}
