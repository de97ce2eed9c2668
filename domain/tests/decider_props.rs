//! Property tests of the Secret decider: over arbitrary command sequences, by
//! arbitrary principals, at arbitrary times, folding `decide` into `evolve` never breaks
//! an invariant of the aggregate.

mod common;

use std::collections::BTreeSet;

use common::sealed;
use domain::ErrorCode;
use domain::ids::{KeyId, ProjectId, Role, SecretId, UserId};
use domain::principal::Principal;
use domain::secret::fields::{Attributes, Expiration, MetadataKey, MetadataValue};
use domain::secret::{
    Context, CreateSecret, SecretCommand, SecretEvent, SecretState, decide, evolve,
};
use domain::timestamp::Timestamp;
use proptest::prelude::*;
use uuid::Uuid;

const T0: i64 = 1_800_000_000_000; // 2027-01-15, in ms

fn command() -> impl Strategy<Value = SecretCommand> {
    prop_oneof![
        (any::<bool>(), prop::option::of(1i64..10_000), any::<u32>()).prop_map(
            |(with_payload, expires_in, n)| {
                let epoch = Timestamp::from_unix_millis(0).unwrap();
                SecretCommand::Create(Box::new(CreateSecret {
                    attributes: Attributes {
                        expiration: expires_in.map(|ms| {
                            let at = Timestamp::from_unix_millis(T0 + ms).unwrap();
                            Expiration::parse(&at.to_rfc3339(), epoch).unwrap()
                        }),
                        ..Default::default()
                    },
                    payload: with_payload.then(|| sealed(n)),
                }))
            }
        ),
        any::<u32>().prop_map(|n| SecretCommand::PutPayload(sealed(n))),
        (0u8..4, 0u8..3).prop_map(|(k, v)| SecretCommand::SetMetadatum {
            key: MetadataKey::parse(&format!("k{k}")).unwrap(),
            value: MetadataValue::parse(&format!("v{v}")).unwrap(),
        }),
        Just(SecretCommand::Delete),
    ]
}

/// A step: who sends which command, and how far the clock moved before it.
fn step() -> impl Strategy<Value = (bool, SecretCommand, i64)> {
    (prop::bool::weighted(0.85), command(), 0i64..3_000)
}

fn principal(own_project: bool) -> Principal {
    Principal {
        user: UserId::parse(if own_project { "alice" } else { "mallory" }).unwrap(),
        project: ProjectId::parse(if own_project { "p1" } else { "p2" }).unwrap(),
        roles: vec![Role::parse("admin").unwrap()],
        service: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decide_then_evolve_keeps_the_invariants(steps in prop::collection::vec(step(), 1..25)) {
        let project = ProjectId::parse("p1").unwrap();
        let id = SecretId::from_uuid(Uuid::from_u128(1));
        let mut state = SecretState::Absent;
        let mut now_ms = T0;
        let mut history: Vec<SecretEvent> = Vec::new();

        for (own, cmd, advance) in steps {
            now_ms += advance;
            let actor = principal(own);
            let ctx = Context { actor: &actor, project: &project, id, now: Timestamp::from_unix_millis(now_ms).unwrap() };
            let result = decide(&state, &cmd, ctx);

            // Deterministic: the same inputs give the same answer.
            prop_assert_eq!(&result, &decide(&state, &cmd, ctx));

            match result {
                Err(rejection) => {
                    // A principal of another project is refused before anything else.
                    if !own {
                        prop_assert_eq!(rejection.code, ErrorCode::Forbidden);
                    }
                }
                Ok(events) => {
                    prop_assert!(own, "a foreign principal was allowed {:?}", cmd);
                    prop_assert!(!events.is_empty(), "an accepted command produces events");
                    prop_assert!(!matches!(state, SecretState::Deleted), "nothing applies after deletion");
                    for e in &events {
                        state = evolve(state, e);
                        history.push(e.clone());
                    }
                }
            }

            // Invariants of the history so far.
            let created = history.iter().filter(|e| matches!(e, SecretEvent::Created(_))).count();
            let payloads: Vec<KeyId> = history.iter().filter_map(|e| match e {
                SecretEvent::PayloadStored(p) => Some(p.payload.key_id),
                _ => None,
            }).collect();
            prop_assert!(created <= 1, "created twice");
            if let Some(first) = history.first() {
                prop_assert!(matches!(first, SecretEvent::Created(_)), "first event is Created");
            }
            prop_assert!(payloads.len() <= 1, "a payload is stored at most once");
            let deletions: Vec<&SecretEvent> = history.iter().filter(|e| matches!(e, SecretEvent::Deleted(_))).collect();
            prop_assert!(deletions.len() <= 1);
            if let Some(SecretEvent::Deleted(d)) = deletions.first() {
                // Deletion destroys exactly the keys of every stored payload.
                let destroyed: BTreeSet<_> = d.destroyed_keys.iter().collect();
                prop_assert_eq!(destroyed, payloads.iter().collect::<BTreeSet<_>>());
                prop_assert!(matches!(history.last(), Some(SecretEvent::Deleted(_))));
                prop_assert_eq!(&state, &SecretState::Deleted);
            }
            match &state {
                SecretState::Absent => prop_assert!(history.is_empty()),
                SecretState::Live(s) => {
                    prop_assert_eq!(s.payload.as_ref().map(|p| p.key_id), payloads.first().copied());
                    prop_assert!(s.attributes.metadata.len() <= domain::secret::fields::MAX_METADATA_ENTRIES);
                }
                SecretState::Deleted => prop_assert_eq!(deletions.len(), 1),
            }
        }
    }
}
