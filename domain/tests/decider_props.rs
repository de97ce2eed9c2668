//! Property tests of the Secret decider: over arbitrary command sequences, by
//! arbitrary principals and the scheduler, at arbitrary times, folding `decide` into
//! `evolve` never breaks an invariant of the aggregate.

// A test states what it expects by unwrapping it.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::sealed;
use domain::ErrorCode;
use domain::ids::{KeyId, ProjectId, Role, SecretId, UserId, VersionId};
use domain::principal::{Actor, Principal};
use domain::secret::fields::{Attributes, Expiration, MetadataKey, MetadataValue};
use domain::secret::rotation::{HandlerName, RotationRules, Step, StepResult};
use domain::secret::version::{Lifecycle, RecoveryWindow, Retention, Stage};
use domain::secret::{
    Context, CreateSecret, DeleteMode, Presence, PutValue, RecordStep, Rotate, SecretCommand,
    SecretEvent, SecretState, decide, evolve,
};
use domain::timestamp::Timestamp;
use proptest::prelude::*;
use uuid::Uuid;

const T0: i64 = 1_800_000_000_000; // 2027-01-15, in ms

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        prop::sample::select(Stage::ALL.to_vec()),
        prop::sample::select(vec!["blue", "green"]).prop_map(|l| Stage::parse(l).unwrap()),
    ]
}

fn version() -> impl Strategy<Value = Option<VersionId>> {
    prop::option::of((0u32..6).prop_map(|n| sealed(n).version_id))
}

fn command() -> impl Strategy<Value = SecretCommand> {
    prop_oneof![
        (any::<bool>(), prop::option::of(1i64..10_000), 0u32..6).prop_map(
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
                    owning_service: None,
                    tags: Default::default(),
                }))
            }
        ),
        (0u32..6).prop_map(|n| SecretCommand::PutPayload(sealed(n))),
        (
            0u32..6,
            prop::option::of(prop::collection::btree_set(stage(), 0..3))
        )
            .prop_map(|(n, stages)| SecretCommand::PutValue(Box::new(PutValue {
                payload: sealed(n),
                stages
            }))),
        (stage(), version(), version()).prop_map(|(stage, to, from)| SecretCommand::MoveStage {
            stage,
            to,
            from
        }),
        (0u8..4, 0u8..3).prop_map(|(k, v)| SecretCommand::SetMetadatum {
            key: MetadataKey::parse(&format!("k{k}")).unwrap(),
            value: MetadataValue::parse(&format!("v{v}")).unwrap(),
            presence: Presence::Any,
        }),
        any::<bool>().prop_map(|ignore_consumers| SecretCommand::Delete {
            mode: DeleteMode::Now,
            ignore_consumers,
        }),
        prop::option::of(0u64..4_000).prop_map(|ms| SecretCommand::Delete {
            mode: DeleteMode::After(ms.map(Duration::from_millis)),
            ignore_consumers: false,
        }),
        Just(SecretCommand::Restore),
        any::<bool>().prop_map(|register| {
            let c = domain::secret::consumer::SecretConsumer::parse("lb", "listener", "1").unwrap();
            if register {
                SecretCommand::RegisterConsumer(c)
            } else {
                SecretCommand::RemoveConsumer(c)
            }
        }),
        Just(SecretCommand::Expire),
        Just(SecretCommand::Purge),
        Just(SecretCommand::PruneVersions),
        (any::<bool>(), 0u32..6).prop_map(|(immediately, n)| SecretCommand::Rotate(Box::new(
            Rotate {
                handler: Some(HandlerName::parse("pg").unwrap()),
                rules: Some(RotationRules::parse(Some(1), None, None).unwrap()),
                immediately,
                version: sealed(n).version_id,
            }
        ))),
        Just(SecretCommand::CancelRotation),
        (0u32..6).prop_map(|n| SecretCommand::StartScheduledRotation {
            version: sealed(n).version_id
        }),
        (
            0u32..6,
            prop::sample::select(Step::ALL.to_vec()),
            1u32..3,
            any::<bool>(),
            prop::option::of(0i64..5_000)
        )
            .prop_map(
                |(n, step, attempt, ok, retry)| SecretCommand::RecordRotationStep(Box::new(
                    RecordStep {
                        version: sealed(n).version_id,
                        step,
                        attempt,
                        result: if ok {
                            StepResult::Done {
                                lease: Timestamp::from_unix_millis(T0).unwrap(),
                            }
                        } else {
                            StepResult::Failed {
                                reason: "refused".into(),
                                retry_at: retry
                                    .map(|ms| Timestamp::from_unix_millis(T0 + ms).unwrap()),
                            }
                        },
                    }
                ))
            ),
    ]
}

/// Who acts: the secret's project, another project, or keyledger's scheduler.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Owner,
    Foreign,
    Scheduler,
    Rotator,
}

/// A step: who sends which command, and how far the clock moved before it.
fn step() -> impl Strategy<Value = (Who, SecretCommand, i64)> {
    let who = prop_oneof![
        8 => Just(Who::Owner),
        1 => Just(Who::Foreign),
        2 => Just(Who::Scheduler),
        2 => Just(Who::Rotator),
    ];
    (who, command(), 0i64..3_000)
}

fn actor(who: Who) -> Actor {
    let own = who == Who::Owner;
    match who {
        Who::Scheduler => Actor::scheduler(),
        Who::Rotator => Actor::rotator(),
        _ => Actor::User(Principal {
            user: UserId::parse(if own { "alice" } else { "mallory" }).unwrap(),
            project: ProjectId::parse(if own { "p1" } else { "p2" }).unwrap(),
            roles: vec![Role::parse("admin").unwrap()],
            service: None,
        }),
    }
}

/// The command with the data key the handler would draw for step `n`: version ids
/// come from clients and repeat, but every stored value gets a fresh key.
fn with_fresh_key(mut cmd: SecretCommand, n: usize) -> SecretCommand {
    let payload = match &mut cmd {
        SecretCommand::Create(c) => c.payload.as_mut(),
        SecretCommand::PutPayload(p) => Some(p),
        SecretCommand::PutValue(p) => Some(&mut p.payload),
        _ => None,
    };
    if let Some(p) = payload {
        p.key_id = KeyId::from_uuid(Uuid::from_u128((u128::try_from(n).unwrap() + 1) << 64));
    }
    cmd
}

fn lifecycle() -> Lifecycle {
    // Small numbers so that sequences reach every rule: keep 3 versions, destroy
    // deprecated ones after 2 s, recovery windows of 1 to 4 s.
    Lifecycle {
        retention: Retention {
            keep: 3,
            min_age: Duration::from_secs(2),
        },
        recovery: RecoveryWindow {
            min: Duration::from_secs(1),
            max: Duration::from_secs(4),
            default: Duration::from_secs(3),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decide_then_evolve_keeps_the_invariants(steps in prop::collection::vec(step(), 1..40)) {
        let project = ProjectId::parse("p1").unwrap();
        let id = SecretId::from_uuid(Uuid::from_u128(1));
        let lifecycle = lifecycle();
        let mut state = SecretState::Absent;
        let mut now_ms = T0;
        let mut history: Vec<SecretEvent> = Vec::new();

        for (n, (who, cmd, advance)) in steps.into_iter().enumerate() {
            let cmd = with_fresh_key(cmd, n);
            now_ms += advance;
            let actor = actor(who);
            let now = Timestamp::from_unix_millis(now_ms).unwrap();
            let ctx = Context { actor: &actor, project: &project, id, now, lifecycle: &lifecycle };
            let result = decide(&state, &cmd, ctx);

            // Deterministic: the same inputs give the same answer.
            prop_assert_eq!(&result, &decide(&state, &cmd, ctx));

            match result {
                Err(rejection) => {
                    // A principal of another project is refused before anything else.
                    if who == Who::Foreign {
                        prop_assert_eq!(rejection.code, ErrorCode::Forbidden);
                    }
                }
                Ok(events) => {
                    prop_assert!(who != Who::Foreign, "a foreign principal was allowed {:?}", cmd);
                    if who == Who::Scheduler {
                        prop_assert!(matches!(cmd, SecretCommand::Expire | SecretCommand::Purge | SecretCommand::PruneVersions),
                            "the scheduler ran {:?}", cmd);
                    }
                    if who == Who::Rotator {
                        prop_assert!(matches!(cmd, SecretCommand::StartScheduledRotation { .. } | SecretCommand::RecordRotationStep(_)),
                            "the rotation runner ran {:?}", cmd);
                    }
                    if who == Who::Owner {
                        prop_assert!(!matches!(cmd, SecretCommand::StartScheduledRotation { .. } | SecretCommand::RecordRotationStep(_)),
                            "a user ran the rotation runner's {:?}", cmd);
                    }
                    prop_assert!(
                        !matches!(state, SecretState::Deleted | SecretState::Expired(_)) || events.is_empty(),
                        "nothing applies after deletion or expiry"
                    );
                    // From its recovery window's end the secret is deleted: only the
                    // scheduler's purge (or pruning) writes to it, whatever else comes.
                    if let SecretState::Live(s) = &state
                        && s.purge_at.is_some_and(|at| now >= at)
                        && !events.is_empty()
                    {
                        prop_assert!(matches!(cmd, SecretCommand::Purge | SecretCommand::PruneVersions),
                            "{:?} wrote after the recovery window ended", cmd);
                    }
                    // Consumers block a user's deletion unless it says to ignore them.
                    if let (SecretCommand::Delete { ignore_consumers: false, .. }, SecretState::Live(s)) = (&cmd, &state) {
                        prop_assert!(s.consumers.is_empty(), "deleted a secret with consumers");
                    }
                    for e in &events {
                        state = evolve(state, e);
                        history.push(e.clone());
                    }
                }
            }

            // Invariants of the history so far.
            let created = history.iter().filter(|e| matches!(e, SecretEvent::Created(_))).count();
            prop_assert!(created <= 1, "created twice");
            if let Some(first) = history.first() {
                prop_assert!(matches!(first, SecretEvent::Created(_)), "first event is Created");
            }
            let stored: Vec<KeyId> = history.iter().filter_map(|e| match e {
                SecretEvent::PayloadStored(p) => Some(p.payload.key_id),
                _ => None,
            }).collect();
            let stored_set: BTreeSet<_> = stored.iter().copied().collect();
            prop_assert_eq!(stored.len(), stored_set.len(), "a data key is stored once");
            // The key shredder opens, and the API's key cache forgets keys for, only
            // commits whose bytes name the field.
            for e in history.iter().filter(|e| !e.destroyed_keys().is_empty()) {
                let json = serde_json::to_string(e).unwrap();
                prop_assert!(json.contains(domain::secret::DESTROYED_KEYS), "{json}");
            }
            let destroyed: Vec<KeyId> = history.iter().flat_map(|e| e.destroyed_keys().to_vec()).collect();
            let destroyed_set: BTreeSet<_> = destroyed.iter().copied().collect();
            prop_assert_eq!(destroyed.len(), destroyed_set.len(), "a key is destroyed once");
            prop_assert!(destroyed_set.is_subset(&stored_set), "only stored keys are destroyed");
            let ends = history.iter().filter(|e| matches!(e, SecretEvent::Deleted(_) | SecretEvent::Expired(_))).count();
            prop_assert!(ends <= 1);
            match &state {
                SecretState::Absent => prop_assert!(history.is_empty()),
                SecretState::Live(s) => {
                    // A version id names one live version, even when a client reuses
                    // the id of a version retention destroyed.
                    let ids: BTreeSet<_> = s.versions.iter().map(|v| v.id).collect();
                    prop_assert_eq!(ids.len(), s.versions.len(), "two live versions share an id");
                    // Every stage is on a version whose key still exists, but AWSPENDING,
                    // which a rotation puts on its version before the value exists.
                    for v in s.versions.iter().map(|v| v.id) {
                        prop_assert!(s.stages_of(v).len() <= domain::secret::version::MAX_LABELS_PER_VERSION);
                    }
                    for (stage, v) in &s.stages {
                        prop_assert!(*stage == Stage::Pending || s.version(*v).is_some(), "stage on a destroyed version");
                    }
                    // A run makes a version that did not exist when it started, and
                    // AWSCURRENT is never moved by the rotation itself.
                    if let Some(r) = &s.rotation {
                        prop_assert!(r.run.is_none() || r.enabled, "a run of a cancelled rotation");
                    }
                    let live: BTreeSet<_> = s.key_ids().into_iter().collect();
                    prop_assert_eq!(live, stored_set.difference(&destroyed_set).copied().collect::<BTreeSet<_>>());
                    prop_assert!(s.attributes.metadata.len() <= domain::secret::fields::MAX_METADATA_ENTRIES);
                }
                SecretState::Deleted | SecretState::Expired(_) => {
                    // The end destroys every key still alive: nothing is left to open.
                    prop_assert_eq!(ends, 1);
                    prop_assert_eq!(&destroyed_set, &stored_set);
                }
            }
        }
    }
}
