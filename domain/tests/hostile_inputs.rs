//! No input panics: every parser of the domain answers any string, number or time with
//! a value or a rejection, and the deciders answer commands at the edges of time. What
//! reaches these functions comes from HTTP bodies, query strings and NATS messages.

// A test states what it expects by unwrapping it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::sealed;
use domain::checkpoint::Foreign;
use domain::container::ContainerType;
use domain::ids::{
    CommandId, ContainerId, KeyId, OrderId, ProjectId, Role, SecretId, ServiceName, UserId,
    VersionId,
};
use domain::order::{DistinguishedName, KeySpec, OrderSpec, OrderType};
use domain::principal::{Actor, Principal};
use domain::secret::acl::{Conditions, HourWindow, Weekday};
use domain::secret::consumer::SecretConsumer;
use domain::secret::fields::{
    Algorithm, BitLength, Expiration, MetadataKey, MetadataValue, Mode, SecretName, SecretType,
    TagKey, TagValue, parse_metadata, parse_tags,
};
use domain::secret::payload::{ContentType, PayloadLimit, Plaintext};
use domain::secret::version::{ClientToken, Lifecycle, Stage};
use domain::secret::{
    Context, CreateSecret, DeleteMode, SecretCommand, SecretState, decide, evolve,
};
use domain::timestamp::Timestamp;
use proptest::prelude::*;

/// Strings a hostile client would send: anything, very long, full of format and
/// control characters, or shaped like times and numbers.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,8}",
        Just(String::new()),
        Just("x".repeat(100_000)),
        Just("\u{202E}\u{200B}\u{FEFF}\u{2028}\u{0000}\u{007F}".to_owned()),
        "[0-9]{1,30}",
        "-?[0-9]{1,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        "(CN|O|OU|C)=[^,]{0,10}(,(CN|O|OU|C)=[^,]{0,10}){0,4}",
        "([0-9]{1,3}\\.){3}[0-9]{1,3}/[0-9]{1,3}",
    ]
}

fn now() -> Timestamp {
    Timestamp::parse_iso8601("now", "2026-12-01T00:00:00Z").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_parser_panics_on_any_string(s in hostile(), t in hostile()) {
        let _ = ProjectId::parse(&s);
        let _ = UserId::parse(&s);
        let _ = Role::parse(&s);
        let _ = ServiceName::parse(&s);
        let _ = CommandId::parse(&s);
        let _ = SecretId::parse(&s);
        let _ = ContainerId::parse(&s);
        let _ = OrderId::parse(&s);
        let _ = VersionId::parse(&s);
        let _ = KeyId::parse(&s);
        let _ = SecretName::parse(&s);
        let _ = Algorithm::parse(&s);
        let _ = Mode::parse(&s);
        let _ = MetadataKey::parse(&s);
        let _ = MetadataValue::parse(&s);
        let _ = TagKey::parse(&s);
        let _ = TagValue::parse(&s);
        let _ = SecretType::parse(&s);
        let _ = parse_metadata([(s.as_str(), t.as_str())]);
        let _ = parse_tags([(s.as_str(), t.as_str())]);
        let _ = Expiration::parse(&s, now());
        let _ = Expiration::parse(&s, Timestamp::MAX);
        let _ = Timestamp::parse_iso8601("t", &s);
        let _ = ContentType::parse(&s);
        let _ = Plaintext::parse_fields(Some(&s), Some(&t), Some(&s), PayloadLimit::default());
        let _ = Plaintext::parse_fields(Some(&s), Some("application/octet-stream"), Some("base64"), PayloadLimit::default());
        let _ = ClientToken::parse(&s);
        let _ = Stage::parse(&s);
        let _ = SecretConsumer::parse(&s, &t, &s);
        let _ = Weekday::parse(&s);
        let _ = Conditions::parse_cidrs([s.as_str(), t.as_str()]);
        let _ = OrderType::parse(&s);
        let _ = DistinguishedName::parse(&s);
        let _ = KeySpec::parse(&s, 2048);
        let _ = ContainerType::parse(&s);
        let _ = domain::container::Consumer::parse(&s, &t);
        let _ = Foreign::parse(&s);
        let _ = domain::commit::Commit::<domain::audit::RawEvent>::parse_unverified(s.as_bytes());
        let mut meta = serde_json::Map::new();
        meta.insert(s.clone(), serde_json::Value::String(t.clone()));
        meta.insert("subject_dn".into(), serde_json::Value::String(s.clone()));
        meta.insert("bit_length".into(), serde_json::Value::String(t.clone()));
        for order_type in [OrderType::Key, OrderType::Asymmetric, OrderType::Certificate] {
            let _ = OrderSpec::parse(order_type, &meta);
        }
    }

    #[test]
    fn no_parser_panics_on_any_number(n in any::<i64>(), m in any::<i64>(), u in any::<u32>(), f in any::<f64>()) {
        let _ = BitLength::parse(n);
        let _ = HourWindow::parse(n, m);
        let _ = KeySpec::parse("rsa", u);
        let _ = KeySpec::parse("ec", u);
        let _ = KeySpec::parse("aes", u);
        let _ = KeySpec::parse("hmac", u);
        let _ = Timestamp::from_unix_millis(n);
        let mut meta = serde_json::Map::new();
        meta.insert("algorithm".into(), "rsa".into());
        meta.insert("bit_length".into(), serde_json::Value::from(n));
        meta.insert("validity_days".into(), serde_json::Value::from(m));
        let _ = OrderSpec::parse(OrderType::Asymmetric, &meta);
        let _ = OrderSpec::parse(OrderType::Certificate, &meta);
        meta.insert("bit_length".into(), serde_json::json!(f));
        let _ = OrderSpec::parse(OrderType::Key, &meta);
    }

    /// Times at both ends of the range, with every offset: parsed or refused, and
    /// what parses writes itself back the same.
    #[test]
    fn times_at_the_edges_with_any_offset(
        year in prop::sample::select(vec![0i32, 1, 9998, 9999]),
        month in 1u8..=12,
        day in 1u8..=28,
        hour in 0u8..24,
        minute in 0u8..60,
        offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59i32),
    ) {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let off = offset_minutes.abs();
        let text = format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:59.999999{sign}{:02}:{:02}",
            off / 60,
            off % 60
        );
        if let Ok(at) = Timestamp::parse_iso8601("t", &text) {
            prop_assert_eq!(Timestamp::parse_iso8601("t", &at.to_rfc3339()), Ok(at));
            let _ = at.plus(Duration::MAX);
            let _ = at.since(Timestamp::MIN);
            let _ = Expiration::parse(&text, at);
        }
        for window in [Duration::ZERO, Duration::from_secs(1), Duration::MAX] {
            prop_assert!(Timestamp::MAX.plus(window).is_none() || window.is_zero());
        }
    }

    /// The secret decider at the ends of time: an expiration at the last instant, a
    /// clock at the first or the last, recovery windows of every size.
    #[test]
    fn the_decider_answers_at_the_edges_of_time(
        now in prop::sample::select(vec![Timestamp::MIN, Timestamp::MAX, now()]),
        window_secs in prop::option::of(any::<u64>()),
        expires_at_the_end in any::<bool>(),
    ) {
        let owner = Actor::User(Principal {
            user: UserId::parse("alice").unwrap(),
            project: ProjectId::parse("p1").unwrap(),
            roles: vec![Role::parse("admin").unwrap()],
            service: None,
        });
        let project = ProjectId::parse("p1").unwrap();
        let id = SecretId::parse("00000000-0000-4000-8000-000000000001").unwrap();
        let lifecycle = Lifecycle::default();
        let ctx = Context { actor: &owner, project: &project, id, now, lifecycle: &lifecycle };
        let mut create = CreateSecret {
            attributes: Default::default(),
            payload: Some(sealed(1)),
            owning_service: None,
            tags: Default::default(),
        };
        if expires_at_the_end {
            create.attributes.expiration =
                Expiration::parse(&Timestamp::MAX.to_rfc3339(), Timestamp::MIN).ok();
        }
        let mut state = SecretState::Absent;
        let commands = [
            SecretCommand::Create(Box::new(create)),
            SecretCommand::Delete {
                mode: DeleteMode::After(window_secs.map(Duration::from_secs)),
                ignore_consumers: false,
            },
            SecretCommand::Restore,
            SecretCommand::Expire,
            SecretCommand::PruneVersions,
            SecretCommand::Delete { mode: DeleteMode::Now, ignore_consumers: true },
        ];
        for command in &commands {
            if let Ok(events) = decide(&state, command, ctx) {
                for e in &events {
                    state = evolve(state, e);
                }
            }
        }
    }
}
