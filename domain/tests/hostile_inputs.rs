//! No input panics: every parser of the domain answers any string, number or time with
//! a value or a rejection, and every decider (secret, container, order, access key,
//! quota) answers commands at the edges of time with events that read back as
//! themselves, or a rejection that says why. What reaches these functions comes from
//! HTTP bodies, query strings, NATS messages and the log.

// A test states what it expects by unwrapping it.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::sealed;
use domain::Rejection;
use domain::access_key::{
    self, AccessKeyCommand, AccessKeyEvent, AccessKeyId, AccessKeyState, CreateAccessKey,
    check_secret,
};
use domain::checkpoint::{CheckpointSigner, CheckpointVerifier, Foreign, InclusionProof};
use domain::commit::{CommitKey, Digest, EventCodec};
use domain::container::{
    self, Consumer, ContainerCommand, ContainerEvent, ContainerState, ContainerType,
    CreateContainer, RefChecks, RefName, SecretRef,
};
use domain::ids::{
    CommandId, ContainerId, KeyId, OrderId, ProjectId, Role, SecretId, ServiceName, UserId,
    VersionId,
};
use domain::merkle::{MerkleLog, check_inclusion, leaf_hash};
use domain::order::{
    self, DistinguishedName, KeySpec, Material, OrderCommand, OrderCompleted, OrderEvent,
    OrderFailed, OrderSpec, OrderState, OrderType,
};
use domain::principal::{Actor, Principal};
use domain::quota::{
    self, Limit, Limits, QuotaCommand, QuotaEvent, QuotaState, Resource, SERVICE_ADMIN,
};
use domain::secret::acl::{AclChange, AclPatch, Conditions, HourWindow, Weekday};
use domain::secret::arn::{SecretInput, split_suffix};
use domain::secret::consumer::SecretConsumer;
use domain::secret::fields::{
    Algorithm, Attributes, BitLength, Description, Expiration, MetadataKey, MetadataValue, Mode,
    SecretName, SecretType, TagKey, TagValue, parse_metadata, parse_tags,
};
use domain::secret::payload::{ContentType, PayloadLimit, Plaintext};
use domain::secret::rotation::{
    HandlerName, MAX_REASON_CHARS, RotationRules, Step, StepResult, clean_reason,
};
use domain::secret::schedule::CronSchedule;
use domain::secret::version::{ClientToken, Lifecycle, RecoveryWindow, Retention, Stage, human};
use domain::secret::{
    Context, CreateSecret, DeleteMode, Presence, PutValue, RecordStep, Rotate, SecretCommand,
    SecretEvent, SecretState, decide, evolve, prune,
};
use domain::subject::{CommandName, aggregate_subject, parse_aggregate_subject};
use domain::timestamp::Timestamp;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Strings a hostile client would send: anything, very long, full of format and
/// control characters, or shaped like times, numbers, ARNs, subjects and schedules.
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
        "cron\\(([0-9*?,/LW#A-Z-]{1,6} ){4,6}[0-9*?,/LW#A-Z-]{1,6}\\)",
        "rate\\( ?[0-9]{1,25} (hour|hours|day|days|minutes) ?\\)",
        "arn:(aws|aws-cn|x)?:(secretsmanager|lambda)?:[a-z0-9-]{0,12}:[0-9]{11,13}:(secret|function):[^:]{0,12}(-[A-Za-z0-9]{6})?",
        "keyledger\\.events\\.[A-Za-z0-9_-]{0,5}\\.(secret|container|order|access_key|kek|quota|x)\\.[A-Za-z0-9._-]{0,10}",
        "(secret|container|order|access_key|quota)\\.[a-z.]{0,20}",
        "AK[A-Z0-9]{12,70}",
        "[0-9]{0,3}h",
    ]
}

/// Times written at both ends of the range, with offsets that push them past it (and
/// offsets written as Python prints them).
fn edge_time() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "0000-01-01T00:00:00",
            "0000-01-01T00:59:59.999999",
            "0000-01-01 00:00:00",
            "9999-12-31T23:59:59",
            "9999-12-31T23:59:59.999999999",
            "9999-12-31 23:00:00",
            "1970-01-01T00:00:00",
            "+10000-01-01T00:00:00",
            "-0001-12-31T23:59:59",
        ]),
        prop::sample::select(vec![
            "", "Z", "+00:00", "-00:00", "+23:59", "-23:59", "+01:00", "-01:00", "-0130", "+05",
            "-01", "+99:99",
        ]),
    )
        .prop_map(|(t, o)| format!("{t}{o}"))
}

/// Clocks at the ends of the representable range, and one ordinary day.
fn edge_now() -> impl Strategy<Value = Timestamp> {
    prop::sample::select(vec![
        Timestamp::MIN,
        Timestamp::MAX,
        Timestamp::from_unix_millis(Timestamp::MAX.unix_millis() - 3_600_000).unwrap(),
        now(),
    ])
}

/// A rejection must say what went wrong.
fn explained(r: &Rejection) -> Result<(), TestCaseError> {
    prop_assert!(
        !r.message.trim().is_empty(),
        "a rejection without a message: {r:?}"
    );
    Ok(())
}

/// An accepted event reads back from its log form as itself.
fn round_trips<E: EventCodec + PartialEq + std::fmt::Debug>(e: &E) -> Result<(), TestCaseError> {
    match E::decode(e.encode()) {
        Ok(back) => prop_assert_eq!(&back, e),
        Err(err) => prop_assert!(false, "{e:?} does not read back: {err:?}"),
    }
    Ok(())
}

fn p1() -> ProjectId {
    ProjectId::parse("p1").unwrap()
}

fn person(user: &str, project: &str, roles: &[&str]) -> Actor {
    Actor::User(Principal {
        user: UserId::parse(user).unwrap(),
        project: ProjectId::parse(project).unwrap(),
        roles: roles.iter().map(|r| Role::parse(r).unwrap()).collect(),
        service: None,
    })
}

/// The callers every decider hears from: the owner (an admin), a reader of the same
/// project, a stranger from another project, and each of keyledger's own tasks
/// (indexes [`SCHEDULER`], [`ORDER_WORKER`], [`ROTATOR`]).
fn callers() -> Vec<Actor> {
    vec![
        person("alice", "p1", &["admin"]),
        person("bob", "p1", &["observer"]),
        person("mallory", "p2", &["admin"]),
        Actor::scheduler(),
        Actor::order_worker(),
        Actor::rotator(),
        Actor::kek_rotation(),
    ]
}

const OWNER: usize = 0;
const SCHEDULER: usize = 3;
const ORDER_WORKER: usize = 4;
const ROTATOR: usize = 5;

/// Who sends a command: mostly the caller it is meant for (`None`: the owner, or the
/// task of keyledger's that issues it), else anyone.
fn caller() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![4 => Just(None), 1 => (0usize..7).prop_map(Some)]
}

fn uuid(n: u8) -> Uuid {
    Uuid::from_u128(u128::from(n) + 1)
}

/// An ACL change with conditions of any shape, read or written at any time.
fn acl_change() -> impl Strategy<Value = AclChange> {
    (
        0u8..3,
        any::<bool>(),
        any::<bool>(),
        prop::option::of((any::<i64>(), 0i64..=24)),
        prop::option::of(prop::collection::btree_set(
            prop::sample::select(vec!["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
            0..3,
        )),
        prop::collection::vec(hostile(), 0..2),
    )
        .prop_map(|(how, project_access, list_mallory, hours, days, cidrs)| {
            let conditions = Conditions {
                source_cidrs: Conditions::parse_cidrs(cidrs.iter().map(String::as_str))
                    .unwrap_or_default(),
                utc_hours: hours.and_then(|(from, to)| {
                    HourWindow::parse(from.rem_euclid(25), to)
                        .or_else(|_| HourWindow::parse(from, to))
                        .ok()
                }),
                weekdays: days.map(|d| d.into_iter().map(|d| Weekday::parse(d).unwrap()).collect()),
            };
            let users = if list_mallory {
                [UserId::parse("mallory").unwrap()].into()
            } else {
                BTreeSet::new()
            };
            let patch = AclPatch {
                project_access: Some(project_access),
                users: Some(users),
                conditions: Some(conditions),
            };
            match how {
                0 => AclChange::Replace(patch),
                1 => AclChange::Merge(patch),
                _ => AclChange::Reset,
            }
        })
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The parsers added with access keys, quotas, AWS's API, rotation and the NATS
    /// command and event subjects: each answers any string with a value that writes
    /// itself back as given, or a rejection that says why.
    #[test]
    fn newer_parsers_answer_any_string(s in hostile(), t in hostile(), n in any::<i64>()) {
        match AccessKeyId::parse(&s) {
            Ok(id) => {
                prop_assert_eq!(id.as_str(), s.as_str());
                let aggregate = id.aggregate_id();
                prop_assert_eq!(aggregate.as_str(), s.as_str());
                let _ = access_key::sealing_ids(&p1(), &id);
            }
            Err(r) => explained(&r)?,
        }
        if let Err(r) = check_secret(s.as_bytes()) {
            explained(&r)?;
        }
        match Resource::parse(&s) {
            Ok(r) => prop_assert_eq!(r.as_str(), s.as_str()),
            Err(r) => explained(&r)?,
        }
        match SecretInput::parse(&s) {
            Ok(SecretInput::Name(name)) => prop_assert_eq!(name, s.as_str()),
            Ok(SecretInput::Arn { region, account, rest }) => {
                prop_assert!(s.starts_with("arn:") && s.ends_with(rest));
                prop_assert!(!region.is_empty() && account.len() == 12 && !rest.is_empty());
                if let Some((name, suffix)) = split_suffix(rest) {
                    prop_assert_eq!(format!("{name}-{suffix}"), rest);
                }
            }
            Err(r) => explained(&r)?,
        }
        match HandlerName::parse(&s) {
            Ok(h) => {
                prop_assert!(s.ends_with(h.as_str()));
                prop_assert_eq!(HandlerName::parse(h.as_str()), Ok(h.clone()));
                prop_assert_eq!(HandlerName::try_from(String::from(h.clone())), Ok(h));
            }
            Err(r) => explained(&r)?,
        }
        match CronSchedule::parse(&s) {
            Ok(cron) => {
                prop_assert!(cron.shortest_gap().is_some_and(|gap| gap >= 4 * 3600));
                for at in [Timestamp::MIN, Timestamp::MAX, now()] {
                    if let Some(next) = cron.next_after(at) {
                        prop_assert!(next > at);
                    }
                }
            }
            Err(r) => explained(&r)?,
        }
        let days = [Some(n), Some(n.rem_euclid(1001)), None];
        for (after_days, expression, duration) in [
            (days[0], None, Some(t.as_str())),
            (days[1], None, Some(t.as_str())),
            (days[2], Some(s.as_str()), Some(t.as_str())),
            (days[2], Some(s.as_str()), None),
            (days[1], Some(s.as_str()), None),
        ] {
            match RotationRules::parse(after_days, expression, duration) {
                Ok(rules) => rotation_rules_hold_at_the_edges(&rules, true)?,
                Err(r) => explained(&r)?,
            }
        }
        match Description::parse(&s) {
            Ok(None) => prop_assert!(s.is_empty()),
            Ok(Some(d)) => {
                prop_assert_eq!(d.as_str(), s.as_str());
                prop_assert_eq!(Description::try_from(s.clone()), Ok(d));
            }
            Err(r) => explained(&r)?,
        }
        match CommandName::parse(&s) {
            Some(command) => prop_assert_eq!(command.as_str(), s.as_str()),
            None => prop_assert!(CommandName::parse(&t).is_none_or(|c| c.as_str() == t)),
        }
        if let Some((project, kind, id)) = parse_aggregate_subject(&s) {
            prop_assert_eq!(aggregate_subject(&project, kind, &id), s.clone());
        }
        match RefName::parse(&s) {
            Ok(name) => prop_assert_eq!(name.as_str(), s.as_str()),
            Err(r) => explained(&r)?,
        }
        let reason = clean_reason(&s);
        prop_assert!(reason.chars().count() <= MAX_REASON_CHARS);
        let _ = Digest::from_hex(&s);
        let _ = CheckpointVerifier::new(&[s.as_str()]);
        let _ = Plaintext::from_bytes(s.clone().into_bytes(), ContentType::TextPlain, PayloadLimit(0));
        let _ = Plaintext::from_bytes(s.clone().into_bytes(), ContentType::OctetStream, PayloadLimit(usize::MAX));
        let _ = Plaintext::parse_fields(Some(&s), Some("application/octet-stream"), Some("BASE64"), PayloadLimit(usize::MAX));
        if let Some(foreign) = Foreign::parse(&s) {
            prop_assert_eq!(Foreign::parse(&foreign.to_string()), Some(foreign));
        }
        // What a request body or a message deserializes: each type read from a JSON
        // string goes through its parser.
        let text = Value::String(s.clone());
        let _ = serde_json::from_value::<AccessKeyId>(text.clone());
        let _ = serde_json::from_value::<HandlerName>(text.clone());
        let _ = serde_json::from_value::<Description>(text.clone());
        let _ = serde_json::from_value::<RefName>(text.clone());
        let _ = serde_json::from_value::<Resource>(text.clone());
        let _ = serde_json::from_value::<Stage>(text.clone());
        let _ = serde_json::from_value::<ContentType>(text.clone());
        let _ = serde_json::from_value::<Timestamp>(text.clone());
        let _ = serde_json::from_value::<Expiration>(text.clone());
        let _ = serde_json::from_value::<SecretName>(text.clone());
        let _ = serde_json::from_value::<MetadataKey>(text.clone());
        let _ = serde_json::from_value::<ProjectId>(text.clone());
        let _ = serde_json::from_value::<Limits>(json!({ s.clone(): n }));
        let _ = serde_json::from_value::<RotationRules>(json!({
            "automatically_after_days": n, "schedule_expression": s, "duration": t,
        }));
        let _ = serde_json::from_value::<Conditions>(json!({
            "source_cidrs": [s], "utc_hours": [n, n], "weekdays": [t],
        }));
        // And the events a message on the log could hold, of every type.
        for type_name in [
            "quota.set", "quota.charged", "access_key.created", "access_key.revoked",
            "container.created", "container.consumer_registered", "order.placed",
            "order.failed", "secret.created", "secret.rotation_configured",
            "secret.description_set",
        ] {
            let event = json!({
                "type": type_name, "v": 1, "limits": { s.clone(): n }, "resource": t,
                "subject": s, "used": n, "limit": n, "user": s, "roles": [t], "name": s,
                "url": t, "error_status_code": n, "error_reason": s, "handler": s,
                "description": t, "attributes": { "name": s, "expiration": t },
            });
            let _ = QuotaEvent::decode(event.clone());
            let _ = AccessKeyEvent::decode(event.clone());
            let _ = ContainerEvent::decode(event.clone());
            let _ = OrderEvent::decode(event.clone());
            let _ = SecretEvent::decode(event);
        }
    }

    /// The numbers quotas, rotation rules, hour windows and lifecycles take: any
    /// integer, or a duration up to the largest there is.
    #[test]
    fn newer_parsers_answer_any_number(
        n in any::<i64>(),
        m in any::<i64>(),
        secs in any::<u64>(),
        hours in any::<[u8; 2]>(),
        keep in any::<usize>(),
    ) {
        for resource in Resource::ALL {
            match Limit::parse(n, resource) {
                Ok(limit) => {
                    prop_assert_eq!(limit.get(), n);
                    prop_assert_eq!(limit.most(), u64::try_from(n).ok());
                    prop_assert_eq!(serde_json::from_value::<Limit>(json!(n)).ok(), Some(limit));
                }
                Err(r) => {
                    explained(&r)?;
                    prop_assert!(n < -1);
                    prop_assert!(Limit::try_from(n).is_err());
                }
            }
        }
        for (days, duration) in [
            (n, format!("{m}h")),
            (n.rem_euclid(1001), format!("{}h", m.rem_euclid(26))),
        ] {
            match RotationRules::parse(Some(days), None, Some(&duration)) {
                Ok(rules) => rotation_rules_hold_at_the_edges(&rules, true)?,
                Err(r) => explained(&r)?,
            }
        }
        for unit in ["hours", "days"] {
            let expression = format!("rate({} {unit})", n.unsigned_abs());
            if let Ok(rules) = RotationRules::parse(None, Some(&expression), Some("1h")) {
                rotation_rules_hold_at_the_edges(&rules, true)?;
            }
        }
        // As an older log may hold them, unchecked.
        let stored = RotationRules {
            automatically_after_days: u16::try_from(n.rem_euclid(65_536)).ok(),
            schedule_expression: Some(format!("rate({secs} days)")),
            duration: Some(format!("{secs}h")),
        };
        rotation_rules_hold_at_the_edges(&stored, false)?;
        let _ = HourWindow::try_from(hours);
        let _ = serde_json::from_value::<HourWindow>(json!([n, m]));
        let window = Duration::from_secs(secs);
        for recovery in [
            RecoveryWindow::default(),
            RecoveryWindow { min: Duration::ZERO, max: Duration::MAX, default: Duration::MAX },
        ] {
            match recovery.check(Some(window)) {
                Ok(w) => prop_assert_eq!(w, window),
                Err(r) => explained(&r)?,
            }
        }
        prop_assert!(!human(window).is_empty() && !human(Duration::MAX).is_empty());
        let retention = Retention { keep, min_age: Duration::MAX };
        prop_assert!(retention.ceiling() >= 2);
        let _ = BitLength::parse(m);
    }

    /// The Container decider, with its clock at either end of time: ACLs whose
    /// conditions read the clock, references of any name, consumers of any text.
    #[test]
    fn the_container_decider_answers_at_the_edges_of_time(
        now in edge_now(),
        commands in prop::collection::vec((caller(), container_command()), 1..10),
        checks in prop::collection::vec(any::<bool>(), 3),
    ) {
        let actors = callers();
        let project = p1();
        let refs: RefChecks = checks
            .iter()
            .enumerate()
            .skip(1)
            .map(|(n, ok)| {
                let id = SecretId::from_uuid(uuid(n as u8));
                (id, if *ok { Ok(()) } else { Err(Rejection::forbidden("secret_refs: not yours")) })
            })
            .collect();
        let mut state = ContainerState::Absent;
        for (who, command) in &commands {
            let who = who.unwrap_or(match command {
                ContainerCommand::CreateForOrder { .. } => ORDER_WORKER,
                _ => OWNER,
            });
            let ctx = container::Context {
                actor: &actors[who],
                project: &project,
                id: ContainerId::from_uuid(uuid(99)),
                now,
                refs: &refs,
            };
            let answer = container::decide(&state, command, ctx);
            prop_assert_eq!(&container::decide(&state, command, ctx), &answer);
            match answer {
                Ok(events) => {
                    for e in &events {
                        round_trips(e)?;
                        state = container::evolve(state, e);
                    }
                    if matches!(command, ContainerCommand::Delete { .. }) {
                        prop_assert_eq!(&state, &ContainerState::Deleted);
                    }
                }
                Err(r) => explained(&r)?,
            }
        }
    }

    /// The Order decider, with its clock at either end of time and `meta` of any
    /// shape: expirations past year 9999 after their offset, sizes of any number.
    #[test]
    fn the_order_decider_answers_at_the_edges_of_time(
        now in edge_now(),
        commands in prop::collection::vec((caller(), order_command()), 1..10),
    ) {
        let actors = callers();
        let project = p1();
        let mut state = OrderState::Absent;
        for (who, command) in &commands {
            let who = who.unwrap_or(match command {
                OrderCommand::RecordMaterial(_) | OrderCommand::Complete(_) | OrderCommand::Fail(_) => {
                    ORDER_WORKER
                }
                _ => OWNER,
            });
            let ctx = order::Context {
                actor: &actors[who],
                project: &project,
                id: OrderId::from_uuid(uuid(5)),
                now,
            };
            if let OrderCommand::Place { order_type, meta } = command
                && let Ok(spec) = OrderSpec::parse(*order_type, meta)
            {
                let _ = spec.key_pair();
                let _ = spec.symmetric_key_bytes();
                if let Some(subject) = &spec.subject_dn {
                    let _ = DistinguishedName::parse(subject);
                }
            }
            let answer = order::decide(&state, command, ctx);
            prop_assert_eq!(&order::decide(&state, command, ctx), &answer);
            match answer {
                Ok(events) => {
                    for e in &events {
                        round_trips(e)?;
                        state = order::evolve(state, e);
                    }
                }
                Err(r) => explained(&r)?,
            }
        }
    }

    /// The AccessKey decider, with its clock at either end of time, keys of any id
    /// for any user with any roles.
    #[test]
    fn the_access_key_decider_answers_at_the_edges_of_time(
        now in edge_now(),
        id in hostile(),
        for_user in hostile(),
        roles in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec!["admin", "member", "observer", "creator", SERVICE_ADMIN])
                    .prop_map(str::to_owned),
                hostile(),
            ],
            0..4,
        ),
        service in prop::option::of(hostile()),
        commands in prop::collection::vec((caller(), any::<bool>()), 1..6),
    ) {
        let actors = callers();
        let project = p1();
        let id = AccessKeyId::parse(&id)
            .unwrap_or_else(|_| AccessKeyId::parse("AKLGAAAABBBBCCCCDDDD").unwrap());
        let create = CreateAccessKey {
            user: UserId::parse(&for_user).unwrap_or_else(|_| UserId::parse("alice").unwrap()),
            roles: roles.iter().filter_map(|r| Role::parse(r).ok()).collect(),
            service: service.as_deref().and_then(|s| ServiceName::parse(s).ok()),
            secret: sealed(3),
        };
        let mut state = AccessKeyState::Absent;
        for (who, creates) in &commands {
            let command = if *creates {
                AccessKeyCommand::Create(Box::new(create.clone()))
            } else {
                AccessKeyCommand::Revoke
            };
            let ctx = access_key::Context {
                actor: &actors[who.unwrap_or(OWNER)],
                project: &project,
                id: &id,
                now,
            };
            let answer = access_key::decide(&state, &command, ctx);
            prop_assert_eq!(&access_key::decide(&state, &command, ctx), &answer);
            match answer {
                Ok(events) => {
                    for e in &events {
                        if let AccessKeyEvent::Created(created) = e {
                            prop_assert!(!quota::names_service_admin(&created.roles));
                        }
                        round_trips(e)?;
                        state = access_key::evolve(state, e);
                    }
                }
                Err(r) => explained(&r)?,
            }
        }
    }

    /// The Quota decider and the charges it makes, with limits and counts of any
    /// size: a set is kept as given, a repeated command writes nothing, a charge fits
    /// under its limit or is refused as quota_exceeded.
    #[test]
    fn the_quota_decider_answers_any_numbers(
        commands in prop::collection::vec(
            prop::option::of(prop::collection::vec((0usize..5, any::<i64>()), 0..6)),
            1..6,
        ),
        used in prop_oneof![any::<u64>(), prop::sample::select(vec![0, 1, u64::MAX - 1, u64::MAX])],
        roles in prop::collection::vec(hostile(), 0..2),
    ) {
        let project = p1();
        let other = ProjectId::parse("p2").unwrap();
        let mut state = QuotaState::default();
        for pairs in &commands {
            let command = match pairs {
                None => QuotaCommand::Clear,
                Some(pairs) => {
                    let mut limits = Limits::new();
                    for (r, v) in pairs {
                        let resource = Resource::ALL[*r];
                        match Limit::parse(*v, resource) {
                            Ok(limit) => { limits.insert(resource, limit); }
                            Err(r) => explained(&r)?,
                        }
                    }
                    QuotaCommand::Set(limits)
                }
            };
            for e in &quota::decide(&state, &command) {
                round_trips(e)?;
                state = quota::evolve(state, e);
            }
            match &command {
                QuotaCommand::Set(limits) => prop_assert_eq!(&state.limits, limits),
                QuotaCommand::Clear => prop_assert!(state.limits.is_empty()),
            }
            prop_assert!(quota::decide(&state, &command).is_empty());
            for resource in Resource::ALL {
                let most = quota::effective(&state.limits, resource).most();
                for caller_project in [&project, &other] {
                    match quota::charge(&state.limits, &project, resource, used, "s", caller_project) {
                        Ok(None) => prop_assert_eq!(most, None),
                        Ok(Some(charged)) => {
                            prop_assert!(charged.used == used && used < charged.limit);
                            round_trips(&QuotaEvent::Charged(charged))?;
                        }
                        Err(r) => {
                            explained(&r)?;
                            prop_assert_eq!(r.code, domain::ErrorCode::QuotaExceeded);
                            prop_assert!(most.is_some_and(|most| used >= most));
                        }
                    }
                }
            }
        }
        let principal = Principal {
            user: UserId::parse("op").unwrap(),
            project: project.clone(),
            roles: roles.iter().filter_map(|r| Role::parse(r).ok()).collect(),
            service: None,
        };
        if let Err(r) = quota::authorize(&principal, &other) {
            explained(&r)?;
        }
    }

    /// Every command of the Secret decider (rotation's among them), with clocks that
    /// run from either end of time to the other, deadlines and leases at the last
    /// instant, lifecycles of any size, and fields of any text. A runner that follows
    /// the rotation under way reports its current step (and moves AWSCURRENT when its
    /// handler would), so runs get to their end.
    #[test]
    fn every_secret_command_answers_at_the_edges_of_time(
        lifecycle in lifecycle(),
        expiration in prop::option::of(edge_time()),
        rotating in any::<bool>(),
        mut commands in prop::collection::vec(
            (caller(), secret_command(), edge_now(), any::<bool>()),
            1..16,
        ),
    ) {
        let actors = callers();
        let project = p1();
        let id = SecretId::from_uuid(uuid(1));
        // Time moves forward, from whichever instant to whichever later one.
        let mut clocks: Vec<Timestamp> = commands.iter().map(|c| c.2).collect();
        clocks.sort();
        for (c, now) in commands.iter_mut().zip(clocks) {
            c.2 = now;
        }
        let first = commands[0].2;
        let attributes = Attributes {
            expiration: stored_expiration(expiration),
            ..Default::default()
        };
        let mut opening = vec![SecretCommand::Create(Box::new(CreateSecret {
            attributes,
            payload: Some(sealed(0)),
            owning_service: None,
            tags: Default::default(),
        }))];
        if rotating {
            opening.push(SecretCommand::Rotate(Box::new(Rotate {
                handler: Some(HandlerName::parse("rotator").unwrap()),
                rules: None,
                immediately: true,
                version: version(1),
            })));
            opening.push(SecretCommand::PutValue(Box::new(PutValue {
                payload: sealed(1),
                stages: Some([Stage::Pending].into()),
            })));
        }
        let natural = |command: &SecretCommand| match command {
            SecretCommand::StartScheduledRotation { .. } | SecretCommand::RecordRotationStep(_) => {
                ROTATOR
            }
            SecretCommand::Expire | SecretCommand::Purge | SecretCommand::PruneVersions => SCHEDULER,
            SecretCommand::CreateForOrder { .. } => ORDER_WORKER,
            _ => OWNER,
        };
        let opened = opening.into_iter().map(|c| (OWNER, c, first, false));
        let sent = commands
            .into_iter()
            .map(|(who, c, now, follows)| (who.unwrap_or_else(|| natural(&c)), c, now, follows));
        let mut state = SecretState::Absent;
        for (who, command, now, follows) in opened.chain(sent) {
            let command = following(&state, command, follows);
            let ctx = Context { actor: &actors[who], project: &project, id, now, lifecycle: &lifecycle };
            let answer = decide(&state, &command, ctx);
            prop_assert_eq!(&decide(&state, &command, ctx), &answer);
            match answer {
                Ok(events) => {
                    for e in &events {
                        round_trips(e)?;
                        state = evolve(state, e);
                    }
                }
                Err(r) => explained(&r)?,
            }
            if let SecretState::Live(secret) = &state {
                let _ = prune(secret, now, lifecycle.retention);
                if let Some(rotation) = &secret.rotation {
                    let _ = rotation.due(id);
                    if let Some(rules) = &rotation.rules {
                        rotation_rules_hold_at_the_edges(rules, false)?;
                    }
                }
            }
        }
    }

    /// A rotation run from start to finish with its clock at either end of time,
    /// leases and retries at any instant, a handler's reason of any text, and any
    /// schedule: every step is recorded, and the next rotation is the schedule's.
    #[test]
    fn a_rotation_runs_to_its_end_at_the_edges_of_time(
        now in edge_now(),
        rules in rotation_rules(),
        leases in prop::collection::vec(edge_now(), 4),
        failures in prop::collection::vec(prop::option::of(prop::option::of(edge_now())), 4),
        reason in hostile(),
    ) {
        let actors = callers();
        let project = p1();
        let id = SecretId::from_uuid(uuid(1));
        let lifecycle = Lifecycle::default();
        let mut state = SecretState::Absent;
        let send = |state: &mut SecretState, who: usize, command: SecretCommand| -> Result<Vec<SecretEvent>, TestCaseError> {
            let ctx = Context { actor: &actors[who], project: &project, id, now, lifecycle: &lifecycle };
            let events = decide(state, &command, ctx);
            prop_assert!(events.is_ok(), "{command:?} at {now}: {events:?}");
            let events = events.unwrap();
            for e in &events {
                round_trips(e)?;
                *state = evolve(std::mem::take(state), e);
            }
            Ok(events)
        };
        let run = |state: &SecretState| match state {
            SecretState::Live(s) => s.rotation.as_ref().and_then(|r| r.run.clone()),
            _ => None,
        };
        send(&mut state, OWNER, SecretCommand::Create(Box::new(CreateSecret {
            attributes: Attributes::default(),
            payload: Some(sealed(0)),
            owning_service: None,
            tags: Default::default(),
        })))?;
        send(&mut state, OWNER, SecretCommand::Rotate(Box::new(Rotate {
            handler: Some(HandlerName::parse("rotator").unwrap()),
            rules: rules.clone(),
            immediately: true,
            version: version(1),
        })))?;
        send(&mut state, OWNER, SecretCommand::PutValue(Box::new(PutValue {
            payload: sealed(1),
            stages: Some([Stage::Pending].into()),
        })))?;
        let mut finished = Vec::new();
        for (i, step) in Step::ALL.into_iter().enumerate() {
            if step == Step::Finish {
                send(&mut state, OWNER, SecretCommand::MoveStage {
                    stage: Stage::Current,
                    to: Some(version(1)),
                    from: Some(version(0)),
                })?;
            }
            let record = |attempt, result| SecretCommand::RecordRotationStep(Box::new(RecordStep {
                version: version(1),
                step,
                attempt,
                result,
            }));
            if let Some(retry_at) = failures[i] {
                let attempt = run(&state).map(|r| r.attempt).unwrap();
                let reason = reason.clone();
                send(&mut state, ROTATOR, record(attempt, StepResult::Failed { reason, retry_at }))?;
                if retry_at.is_none() {
                    // The run ended as failed, with the handler's words kept in bounds.
                    prop_assert!(run(&state).is_none());
                    return Ok(());
                }
            }
            let attempt = run(&state).map(|r| r.attempt).unwrap();
            finished = send(&mut state, ROTATOR, record(attempt, StepResult::Done { lease: leases[i] }))?;
        }
        prop_assert!(run(&state).is_none());
        prop_assert!(
            matches!(finished.last(), Some(SecretEvent::RotationSucceeded(_))),
            "{finished:?}"
        );
        let SecretState::Live(secret) = &state else {
            return Err(TestCaseError::fail("the secret is gone"));
        };
        let rotation = secret.rotation.as_ref().unwrap();
        prop_assert_eq!(rotation.last_rotated, Some(now));
        prop_assert_eq!(rotation.next, rules.as_ref().and_then(|r| r.next_after(now)));
        let _ = rotation.due(id);
    }

    /// Checkpoints of any size signed at either end of time, and inclusion proofs of
    /// any sequence, path and commit: each checks out or is refused.
    #[test]
    fn checkpoints_and_proofs_answer_any_input(
        size in prop_oneof![
            any::<u64>(),
            0u64..1000,
            (MerkleLog::MAX_SIZE - 2)..=(MerkleLog::MAX_SIZE + 2),
            Just(u64::MAX),
        ],
        sequence in prop_oneof![any::<u64>(), 0u64..1000, Just(u64::MAX)],
        at in edge_now(),
        foreign in hostile(),
        commit in hostile(),
        path in prop::collection::vec(hostile(), 0..3),
        frontier in prop::option::of(0usize..66),
        forged in any::<bool>(),
    ) {
        let signer = CheckpointSigner::new("keyledger.test", &[7; 32]).unwrap();
        let verifier = CheckpointVerifier::new(&[signer.public_key()]).unwrap();
        let foreign = Foreign::parse(&foreign).unwrap_or_default();
        let root = leaf_hash(commit.as_bytes());
        let note = signer.sign(size, root, at, &foreign);
        let opened = verifier.open(&note).unwrap();
        prop_assert_eq!((opened.size, opened.root, opened.at), (size, root, Some(at)));
        prop_assert_eq!(&opened.foreign, &foreign);
        prop_assert!(verifier.open(&commit).is_err());
        let hashes: Vec<_> = path.iter().map(|p| leaf_hash(p.as_bytes())).collect();
        let mut proof = InclusionProof::new(sequence, commit.as_bytes(), &hashes, &note);
        if forged {
            proof.path = path.clone();
            proof.leaf_hash = foreign.to_string();
        }
        if let Ok((checkpoint, bytes)) = proof.check(&verifier) {
            prop_assert_eq!(bytes, commit.as_bytes());
            prop_assert!(sequence >= 1 && sequence - 1 < checkpoint.size);
        }
        let _ = check_inclusion(&hashes, size, root, sequence, root);
        let _ = check_inclusion(&hashes, sequence, root, size, root);
        // The right edge of a tree holds one hash per bit set in its size.
        let frontier = frontier.unwrap_or(size.count_ones() as usize);
        match MerkleLog::from_frontier(size, vec![root; frontier]) {
            Ok(mut log) => {
                prop_assert!(size <= MerkleLog::MAX_SIZE);
                prop_assert_eq!(log.size(), size);
                prop_assert_eq!(log.frontier().len(), frontier);
                let _ = log.root();
                prop_assert!(log.prove(sequence).is_err());
                log.append(commit.as_bytes());
                prop_assert_eq!(log.size(), size + 1);
                let _ = log.root();
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                prop_assert!(size > MerkleLog::MAX_SIZE || frontier != size.count_ones() as usize);
            }
        }
        let key = CommitKey::new([1; 32]);
        let _ = domain::commit::Commit::<SecretEvent>::open(commit.as_bytes(), &key);
        let mut log = domain::audit::LogVerifier::new();
        let _ = log.check(1, &foreign.to_string(), commit.as_bytes());
        let _ = log.check(sequence, &commit, commit.as_bytes());
        let _ = log.finish();
    }
}

/// What a rotation schedule answers at either end of time: the next window opens
/// after the last (at it, for one read back unchecked from a log), within range or
/// not at all.
fn rotation_rules_hold_at_the_edges(
    rules: &RotationRules,
    parsed: bool,
) -> Result<(), TestCaseError> {
    let _ = rules.interval();
    let _ = rules.window();
    for at in [Timestamp::MIN, Timestamp::MAX, now()] {
        if let Some(next) = rules.next_after(at) {
            prop_assert!(
                next > at || (!parsed && next == at),
                "{rules:?} after {at} opens at {next}"
            );
        }
        let start = rules.start_in_window(at, SecretId::from_uuid(uuid(7)));
        prop_assert!(start >= at);
    }
    Ok(())
}

/// `command` as a rotation runner (or its handler) that follows the run under way
/// sends it: a step's outcome names the run's version, step and attempt, and a stage
/// move puts AWSCURRENT on the run's version.
fn following(state: &SecretState, command: SecretCommand, follows: bool) -> SecretCommand {
    let SecretState::Live(secret) = state else {
        return command;
    };
    let Some(run) = secret
        .rotation
        .as_ref()
        .and_then(|r| r.run.as_ref())
        .filter(|_| follows)
    else {
        return command;
    };
    match command {
        SecretCommand::RecordRotationStep(record) => {
            SecretCommand::RecordRotationStep(Box::new(RecordStep {
                version: run.version,
                step: run.step,
                attempt: run.attempt,
                result: record.result,
            }))
        }
        SecretCommand::MoveStage { .. } => SecretCommand::MoveStage {
            stage: Stage::Current,
            to: Some(run.version),
            from: secret.stages.get(&Stage::Current).copied(),
        },
        other => other,
    }
}

/// An expiration as read back from the log: at any instant its text names, passed or
/// not (only a new one must lie in the future).
fn stored_expiration(text: Option<String>) -> Option<Expiration> {
    text.and_then(|t| serde_json::from_value(Value::String(t)).ok())
}

fn secret_ref() -> impl Strategy<Value = SecretRef> {
    (
        prop_oneof![
            prop::sample::select(vec![
                "certificate",
                "private_key",
                "public_key",
                "intermediates",
                ""
            ])
            .prop_map(str::to_owned),
            hostile(),
        ],
        0u8..3,
    )
        .prop_map(|(name, n)| SecretRef {
            name: RefName::parse(&name).unwrap_or_else(|_| RefName::parse("a").unwrap()),
            project: p1(),
            secret_id: SecretId::from_uuid(uuid(n)),
        })
}

fn container_consumer() -> impl Strategy<Value = Consumer> {
    (hostile(), hostile()).prop_map(|(name, url)| {
        Consumer::parse(&name, &url)
            .unwrap_or_else(|_| Consumer::parse("lb", "https://lb").unwrap())
    })
}

fn create_container() -> impl Strategy<Value = Box<CreateContainer>> {
    let kind = prop::sample::select(vec![
        ContainerType::Generic,
        ContainerType::Rsa,
        ContainerType::Certificate,
    ]);
    (
        prop::option::of(hostile()),
        kind,
        prop::collection::vec(secret_ref(), 0..4),
    )
        .prop_map(|(name, kind, refs)| {
            Box::new(CreateContainer {
                name: name.and_then(|n| SecretName::parse(&n).ok()),
                kind,
                refs,
            })
        })
}

fn container_command() -> impl Strategy<Value = ContainerCommand> {
    prop_oneof![
        3 => create_container().prop_map(ContainerCommand::Create),
        1 => create_container().prop_map(|create| ContainerCommand::CreateForOrder {
            create,
            creator: UserId::parse("alice").unwrap(),
        }),
        1 => secret_ref().prop_map(ContainerCommand::AddSecret),
        1 => secret_ref().prop_map(|r| ContainerCommand::RemoveSecret { name: r.name, secret_id: r.secret_id }),
        1 => container_consumer().prop_map(ContainerCommand::RegisterConsumer),
        1 => container_consumer().prop_map(ContainerCommand::RemoveConsumer),
        1 => acl_change().prop_map(ContainerCommand::SetAcl),
        1 => any::<bool>().prop_map(|force| ContainerCommand::Delete { force }),
    ]
}

/// Barbican's `meta`, with the fields each order type takes, of any value.
fn order_meta() -> impl Strategy<Value = (OrderType, Map<String, Value>)> {
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            0u64,
            128,
            256,
            2048,
            32767,
            32768,
            u64::from(u32::MAX) + 1
        ])
        .prop_map(Value::from),
    ];
    (
        prop::sample::select(vec![
            OrderType::Key,
            OrderType::Asymmetric,
            OrderType::Certificate,
        ]),
        prop_oneof![
            prop::sample::select(vec!["aes", "hmac", "rsa", "ec"]).prop_map(str::to_owned),
            hostile()
        ],
        prop::option::of(number.clone()),
        prop::option::of(prop_oneof![edge_time(), hostile()]),
        prop::option::of(hostile()),
        prop::option::of(number),
        prop::option::of(hostile()),
        prop::option::of(prop::collection::vec(hostile(), 0..3)),
    )
        .prop_map(
            |(order_type, algorithm, bits, expiration, name, days, dn, sans)| {
                let mut meta = Map::new();
                meta.insert("algorithm".into(), algorithm.into());
                let mut put = |key: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        meta.insert(key.into(), v);
                    }
                };
                put("bit_length", bits);
                put("expiration", expiration.map(Value::from));
                put("name", name.map(Value::from));
                if order_type == OrderType::Certificate {
                    put("validity_days", days);
                    put("subject_dn", dn.map(Value::from));
                    put("subject_alt_names", sans.map(Value::from));
                }
                (order_type, meta)
            },
        )
}

fn order_command() -> impl Strategy<Value = OrderCommand> {
    prop_oneof![
        3 => order_meta().prop_map(|(order_type, meta)| OrderCommand::Place { order_type, meta }),
        1 => (hostile(), 0u8..3, prop::option::of(edge_time())).prop_map(|(role, n, expiration)| {
            let attributes = Attributes {
                expiration: stored_expiration(expiration),
                ..Default::default()
            };
            OrderCommand::RecordMaterial(vec![Material {
                role,
                secret_id: SecretId::from_uuid(uuid(n)),
                attributes,
                payload: sealed(u32::from(n)),
            }])
        }),
        1 => (prop::option::of(0u8..3), prop::option::of(0u8..3)).prop_map(|(s, c)| {
            OrderCommand::Complete(OrderCompleted {
                secret_id: s.map(|n| SecretId::from_uuid(uuid(n))),
                container_id: c.map(|n| ContainerId::from_uuid(uuid(n))),
            })
        }),
        1 => (any::<u16>(), hostile()).prop_map(|(error_status_code, error_reason)| {
            OrderCommand::Fail(OrderFailed { error_status_code, error_reason })
        }),
        1 => Just(OrderCommand::Delete),
    ]
}

/// The deployment's lifecycle: the defaults, or bounds at either extreme.
fn lifecycle() -> impl Strategy<Value = Lifecycle> {
    prop::sample::select(vec![
        Lifecycle::default(),
        Lifecycle {
            retention: Retention {
                keep: 0,
                min_age: Duration::ZERO,
            },
            recovery: RecoveryWindow {
                min: Duration::ZERO,
                max: Duration::MAX,
                default: Duration::MAX,
            },
        },
        Lifecycle {
            retention: Retention {
                keep: usize::MAX,
                min_age: Duration::MAX,
            },
            recovery: RecoveryWindow {
                min: Duration::MAX,
                max: Duration::MAX,
                default: Duration::ZERO,
            },
        },
    ])
}

fn version(n: u8) -> VersionId {
    // The ids `sealed(n)` seals under, so a stored version can be named again.
    VersionId::from_uuid(Uuid::from_u128(u128::from(n)))
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        prop::sample::select(vec![Stage::Current, Stage::Pending, Stage::Previous]),
        hostile().prop_map(|s| Stage::parse(&s).unwrap_or(Stage::Pending)),
    ]
}

/// A rotation schedule: none, one parsed from any input, or one as an older log may
/// hold it, unchecked.
fn rotation_rules() -> impl Strategy<Value = Option<RotationRules>> {
    let expression = prop_oneof![
        prop::sample::select(vec![
            "rate(4 hours)",
            "rate(23 hours)",
            "rate(1000 days)",
            "cron(0 0 1 1 ? *)",
            "cron(0 0 ? * SAT#5 *)",
            "cron(59 23 31 12 ? 9999)",
            "cron(0 0 29 2 ? *)",
            "cron(0 */4 * * ? *)",
            "cron(0 0 L 2 ? 2100-2199)",
        ])
        .prop_map(str::to_owned),
        hostile(),
    ];
    prop_oneof![
        Just(None),
        (
            prop::option::of(prop_oneof![Just(1i64), Just(1000), any::<i64>()]),
            prop::option::of(expression.clone()),
            prop::option::of(prop_oneof![
                Just("1h".to_owned()),
                Just("24h".to_owned()),
                hostile()
            ]),
        )
            .prop_map(|(days, e, d)| RotationRules::parse(
                days,
                e.as_deref(),
                d.as_deref()
            )
            .ok()),
        (
            prop::option::of(any::<u16>()),
            prop::option::of(expression),
            prop::option::of(hostile())
        )
            .prop_map(
                |(automatically_after_days, schedule_expression, duration)| {
                    Some(RotationRules {
                        automatically_after_days,
                        schedule_expression,
                        duration,
                    })
                }
            ),
    ]
}

fn secret_command() -> impl Strategy<Value = SecretCommand> {
    prop_oneof![
        1 => (hostile(), prop::option::of(edge_time()), 0u32..4).prop_map(|(name, expiration, n)| {
            let attributes = Attributes {
                name: SecretName::parse(&name).ok(),
                expiration: stored_expiration(expiration),
                ..Default::default()
            };
            SecretCommand::CreateForOrder {
                create: Box::new(CreateSecret {
                    attributes,
                    payload: Some(sealed(n)),
                    owning_service: None,
                    tags: Default::default(),
                }),
                creator: UserId::parse("alice").unwrap(),
            }
        }),
        1 => (0u32..4).prop_map(|n| SecretCommand::PutPayload(sealed(n))),
        1 => (0u32..4, prop::option::of(prop::collection::btree_set(stage(), 0..3))).prop_map(
            |(n, stages)| SecretCommand::PutValue(Box::new(PutValue { payload: sealed(n), stages }))
        ),
        1 => (stage(), prop::option::of(0u8..4), prop::option::of(0u8..4)).prop_map(|(stage, to, from)| {
            SecretCommand::MoveStage { stage, to: to.map(version), from: from.map(version) }
        }),
        1 => ((hostile(), hostile()), prop::sample::select(vec![Presence::Any, Presence::Absent, Presence::Present]))
            .prop_map(|((k, v), presence)| SecretCommand::SetMetadatum {
                key: MetadataKey::parse(&k).unwrap_or_else(|_| MetadataKey::parse("k").unwrap()),
                value: MetadataValue::parse(&v).unwrap_or_else(|_| MetadataValue::parse("v").unwrap()),
                presence,
            }),
        1 => hostile().prop_map(|k| SecretCommand::DeleteMetadatum(
            MetadataKey::parse(&k).unwrap_or_else(|_| MetadataKey::parse("k").unwrap())
        )),
        1 => (hostile(), hostile()).prop_map(|(k, v)| SecretCommand::ReplaceMetadata(
            parse_metadata([(k.as_str(), v.as_str())]).unwrap_or_default()
        )),
        1 => (hostile(), hostile()).prop_map(|(k, v)| SecretCommand::SetTags(
            parse_tags([(k.as_str(), v.as_str())]).unwrap_or_default()
        )),
        1 => hostile().prop_map(|k| SecretCommand::RemoveTags(TagKey::parse(&k).into_iter().collect())),
        1 => acl_change().prop_map(SecretCommand::SetAcl),
        1 => (
            prop_oneof![
                Just(DeleteMode::Now),
                Just(DeleteMode::After(None)),
                any::<u64>().prop_map(|s| DeleteMode::After(Some(Duration::from_secs(s)))),
                Just(DeleteMode::After(Some(Duration::MAX))),
            ],
            any::<bool>(),
        )
            .prop_map(|(mode, ignore_consumers)| SecretCommand::Delete { mode, ignore_consumers }),
        1 => ((hostile(), hostile()), any::<bool>()).prop_map(|((s, t), register)| {
            let consumer = SecretConsumer::parse(&s, &t, &s)
                .unwrap_or_else(|_| SecretConsumer::parse("lb", "listener", "1").unwrap());
            if register {
                SecretCommand::RegisterConsumer(consumer)
            } else {
                SecretCommand::RemoveConsumer(consumer)
            }
        }),
        1 => prop::sample::select(vec![
            SecretCommand::Restore,
            SecretCommand::Expire,
            SecretCommand::Purge,
            SecretCommand::PruneVersions,
            SecretCommand::CancelRotation,
        ]),
        3 => (prop::option::of(hostile()), rotation_rules(), any::<bool>(), 0u8..4).prop_map(
            |(handler, rules, immediately, v)| {
                SecretCommand::Rotate(Box::new(Rotate {
                    handler: Some(
                        handler
                            .and_then(|h| HandlerName::parse(&h).ok())
                            .unwrap_or_else(|| HandlerName::parse("rotator").unwrap()),
                    ),
                    rules,
                    immediately,
                    version: version(v),
                }))
            }
        ),
        1 => (0u8..4).prop_map(|v| SecretCommand::StartScheduledRotation { version: version(v) }),
        3 => (
            0u8..4,
            prop_oneof![3 => Just(Step::Create), 1 => prop::sample::select(Step::ALL.to_vec())],
            prop_oneof![3 => Just(1u32), 1 => prop::sample::select(vec![2u32, u32::MAX])],
            prop_oneof![
                edge_now().prop_map(|lease| StepResult::Done { lease }),
                (hostile(), prop::option::of(edge_now()))
                    .prop_map(|(reason, retry_at)| StepResult::Failed { reason, retry_at }),
            ],
        )
            .prop_map(|(v, step, attempt, result)| {
                SecretCommand::RecordRotationStep(Box::new(RecordStep {
                    version: version(v),
                    step,
                    attempt,
                    result,
                }))
            }),
        1 => hostile().prop_map(|d| SecretCommand::SetDescription(Description::parse(&d).ok().flatten())),
    ]
}

/// Found by `checkpoints_and_proofs_answer_any_input`: resuming a tree of more than
/// 2^63 commits overflowed `tlog_tiles`' index arithmetic (a panic in a debug build).
#[test]
fn a_tree_past_the_largest_size_is_refused_not_a_panic() {
    for size in [MerkleLog::MAX_SIZE + 1, (1 << 63) + 2, u64::MAX] {
        let frontier = vec![leaf_hash(b"x"); size.count_ones() as usize];
        assert!(matches!(
            MerkleLog::from_frontier(size, frontier),
            Err(domain::merkle::MerkleError::TooLarge { .. })
        ));
    }
    let mut log = MerkleLog::from_frontier(MerkleLog::MAX_SIZE, vec![leaf_hash(b"x")]).unwrap();
    log.append(b"next");
    assert_eq!(log.size(), MerkleLog::MAX_SIZE + 1);
    let _ = log.root();
}
