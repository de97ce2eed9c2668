//! Property tests of the Container and Order deciders: over arbitrary command
//! sequences by the owner, a foreign principal and keyledger's own actors, folding
//! `decide` into `evolve` keeps each aggregate's rules.

// A test states what it expects by unwrapping it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use domain::container::{
    self, Consumer, ContainerCommand, ContainerState, ContainerType, CreateContainer, RefChecks,
    RefName, SecretRef, validate_refs,
};
use domain::ids::{ContainerId, OrderId, ProjectId, Role, SecretId, UserId};
use domain::order::{
    self, OrderCommand, OrderCompleted, OrderFailed, OrderState, OrderStatus, OrderType,
};
use domain::principal::{Actor, Principal};
use domain::timestamp::Timestamp;
use proptest::prelude::*;
use uuid::Uuid;

fn user(own: bool) -> Actor {
    Actor::User(Principal {
        user: UserId::parse(if own { "alice" } else { "mallory" }).unwrap(),
        project: ProjectId::parse(if own { "p1" } else { "p2" }).unwrap(),
        roles: vec![Role::parse("admin").unwrap()],
        service: None,
    })
}

fn actor() -> impl Strategy<Value = (u8, Actor)> {
    prop_oneof![
        6 => Just((0, user(true))),
        1 => Just((1, user(false))),
        1 => Just((2, Actor::scheduler())),
        2 => Just((3, Actor::order_worker())),
    ]
}

fn now() -> Timestamp {
    Timestamp::parse_iso8601("now", "2026-11-22T10:00:00Z").unwrap()
}

fn sref(name: &str, n: u8) -> SecretRef {
    SecretRef {
        name: RefName::parse(name).unwrap(),
        project: ProjectId::parse("p1").unwrap(),
        secret_id: SecretId::from_uuid(Uuid::from_u128(u128::from(n))),
    }
}

const NAMES: [&str; 6] = [
    "certificate",
    "private_key",
    "public_key",
    "intermediates",
    "a",
    "b",
];

fn refs() -> impl Strategy<Value = Vec<SecretRef>> {
    prop::collection::vec((0usize..NAMES.len(), 0u8..4), 0..4)
        .prop_map(|v| v.into_iter().map(|(n, s)| sref(NAMES[n], s)).collect())
}

fn container_command() -> impl Strategy<Value = ContainerCommand> {
    let kind = prop::sample::select(vec![
        ContainerType::Generic,
        ContainerType::Rsa,
        ContainerType::Certificate,
    ]);
    prop_oneof![
        (kind, refs()).prop_map(|(kind, refs)| ContainerCommand::Create(Box::new(
            CreateContainer {
                name: None,
                kind,
                refs
            }
        ))),
        ((0usize..NAMES.len()), 0u8..4)
            .prop_map(|(n, s)| ContainerCommand::AddSecret(sref(NAMES[n], s))),
        ((0usize..NAMES.len()), 0u8..4).prop_map(|(n, s)| ContainerCommand::RemoveSecret {
            name: RefName::parse(NAMES[n]).unwrap(),
            secret_id: SecretId::from_uuid(Uuid::from_u128(u128::from(s))),
        }),
        Just(ContainerCommand::RegisterConsumer(
            Consumer::parse("lb", "https://lb/1").unwrap()
        )),
        Just(ContainerCommand::RemoveConsumer(
            Consumer::parse("lb", "https://lb/1").unwrap()
        )),
        any::<bool>().prop_map(|force| ContainerCommand::Delete { force }),
    ]
}

fn order_command() -> impl Strategy<Value = OrderCommand> {
    prop_oneof![
        Just(OrderCommand::Place {
            order_type: OrderType::Key,
            meta: serde_json::json!({"algorithm": "aes", "bit_length": 256})
                .as_object()
                .unwrap()
                .clone(),
        }),
        Just(OrderCommand::Complete(OrderCompleted {
            secret_id: Some(SecretId::from_uuid(Uuid::from_u128(1))),
            container_id: None,
        })),
        Just(OrderCommand::Fail(OrderFailed {
            error_status_code: 503,
            error_reason: "down".into(),
        })),
        Just(OrderCommand::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn containers_keep_their_rules(steps in prop::collection::vec((actor(), container_command()), 1..30)) {
        let project = ProjectId::parse("p1").unwrap();
        let all_ok: RefChecks = (0..4u128).map(|n| (SecretId::from_uuid(Uuid::from_u128(n)), Ok(()))).collect();
        let mut state = ContainerState::Absent;
        let mut deleted = false;
        for ((who, actor), cmd) in steps {
            let ctx = container::Context {
                actor: &actor,
                project: &project,
                id: ContainerId::from_uuid(Uuid::from_u128(9)),
                now: now(),
                refs: &all_ok,
            };
            let result = container::decide(&state, &cmd, ctx);
            prop_assert_eq!(&result, &container::decide(&state, &cmd, ctx));
            if let Ok(events) = result {
                prop_assert_eq!(who, 0, "only the owner changes a container: {:?}", cmd);
                prop_assert!(!deleted || events.is_empty(), "nothing after deletion");
                if let (ContainerCommand::Delete { force: false }, ContainerState::Live(c)) = (&cmd, &state) {
                    prop_assert!(c.consumers.is_empty(), "deleted with consumers");
                }
                for e in &events {
                    state = container::evolve(state, e);
                }
            }
            match &state {
                ContainerState::Live(c) => {
                    // Whatever happened, the references still fit the type.
                    prop_assert!(validate_refs(c.kind, &c.refs).is_ok(), "{:?}", c.refs);
                    let names: BTreeSet<_> = c.refs.iter().map(|r| r.name.clone()).collect();
                    prop_assert_eq!(names.len(), c.refs.len());
                }
                ContainerState::Deleted => deleted = true,
                ContainerState::Absent => {}
            }
        }
    }

    #[test]
    fn orders_only_move_forward(steps in prop::collection::vec((actor(), order_command()), 1..20)) {
        let project = ProjectId::parse("p1").unwrap();
        let mut state = OrderState::Absent;
        let mut settled: Option<OrderStatus> = None;
        for ((who, actor), cmd) in steps {
            let ctx = order::Context {
                actor: &actor,
                project: &project,
                id: OrderId::from_uuid(Uuid::from_u128(3)),
                now: now(),
            };
            if let Ok(events) = order::decide(&state, &cmd, ctx) {
                let worker_step = matches!(cmd, OrderCommand::Complete(_) | OrderCommand::Fail(_) | OrderCommand::RecordMaterial(_));
                prop_assert_eq!(who, if worker_step { 3 } else { 0 }, "{:?} ran {:?}", actor, cmd);
                for e in &events {
                    state = order::evolve(state, e);
                }
            }
            if let OrderState::Placed(o) = &state {
                // ACTIVE and ERROR are final.
                if let Some(before) = settled {
                    prop_assert_eq!(o.status, before);
                }
                if o.status != OrderStatus::Pending {
                    settled = Some(o.status);
                }
            }
        }
    }
}
