//! Given these events, when this command, then these events (or this error). Time
//! is a parameter: the tests move it instead of waiting.

use std::time::Duration;

use super::*;
use crate::ErrorCode;
use crate::ids::{KeyId, Role, ServiceName, UserId, VersionId};
use crate::secret::command::CreateSecret;
use crate::secret::command::PutValue;
use crate::secret::event::VersionsDestroyed;
use crate::secret::fields::{Attributes, Expiration, MetadataKey, MetadataValue};
use crate::secret::payload::{ContentType, SealedPayload};
use crate::secret::state::evolve;
use crate::secret::version::RecoveryWindow;
use crate::secret::version::Retention;
use uuid::Uuid;

fn at(s: &str) -> Timestamp {
    Timestamp::parse_iso8601("t", s).unwrap()
}

fn now() -> Timestamp {
    at("2026-11-22T10:00:00Z")
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

fn alice() -> Principal {
    Principal {
        user: UserId::parse("alice").unwrap(),
        project: ProjectId::parse("p1").unwrap(),
        roles: vec![Role::parse("admin").unwrap()],
        service: None,
    }
}

fn sealed(n: u128) -> SealedPayload {
    SealedPayload {
        version_id: VersionId::from_uuid(Uuid::from_u128(n)),
        key_id: KeyId::from_uuid(Uuid::from_u128(n + 100)),
        content_type: ContentType::TextPlain,
        nonce: vec![0; 12],
        ciphertext: vec![1; 20],
    }
}

fn create_with(payload: Option<SealedPayload>, owning_service: Option<&str>) -> SecretCommand {
    SecretCommand::Create(Box::new(CreateSecret {
        attributes: Attributes {
            expiration: Some(Expiration::parse("2026-11-23T10:00:00Z", now()).unwrap()),
            ..Default::default()
        },
        payload,
        owning_service: owning_service.map(|s| ServiceName::parse(s).unwrap()),
        tags: Default::default(),
    }))
}

fn create(payload: Option<SealedPayload>) -> SecretCommand {
    create_with(payload, None)
}

fn put(n: u128, stages: Option<&[Stage]>) -> SecretCommand {
    SecretCommand::PutValue(Box::new(PutValue {
        payload: sealed(n),
        stages: stages.map(|s| s.iter().cloned().collect()),
    }))
}

fn version(n: u128) -> VersionId {
    VersionId::from_uuid(Uuid::from_u128(n))
}

struct World {
    actor: Actor,
    lifecycle: Lifecycle,
    state: SecretState,
}

impl World {
    fn new() -> Self {
        Self::as_actor(Actor::User(alice()))
    }

    fn as_actor(actor: Actor) -> Self {
        Self {
            actor,
            lifecycle: Lifecycle {
                retention: Retention {
                    keep: 3,
                    min_age: hours(24),
                },
                recovery: RecoveryWindow::default(),
            },
            state: SecretState::Absent,
        }
    }

    fn decide(&self, when: &SecretCommand, at: Timestamp) -> Result<Vec<SecretEvent>, Rejection> {
        let project = ProjectId::parse("p1").unwrap();
        let ctx = Context {
            actor: &self.actor,
            project: &project,
            id: SecretId::from_uuid(Uuid::from_u128(7)),
            now: at,
            lifecycle: &self.lifecycle,
        };
        decide(&self.state, when, ctx)
    }

    /// Applies `cmd` at `at`; it must be accepted.
    fn given(mut self, cmd: &SecretCommand, at: Timestamp) -> Self {
        let events = self.decide(cmd, at).expect("given commands are accepted");
        self.state = events.iter().fold(self.state, evolve);
        self
    }

    fn secret(&self) -> &Secret {
        let SecretState::Live(s) = &self.state else {
            panic!("live: {:?}", self.state)
        };
        s
    }
}

fn run(given: &[SecretCommand], when: &SecretCommand) -> Result<Vec<SecretEvent>, Rejection> {
    let world = given.iter().fold(World::new(), |w, c| w.given(c, now()));
    world.decide(when, now())
}

#[test]
fn create_with_payload_is_one_commit_of_two_events() {
    let events = run(&[], &create(Some(sealed(1)))).unwrap();
    let types: Vec<_> = events.iter().map(SecretEvent::type_name).collect();
    assert_eq!(types, ["secret.created", "secret.payload_stored"]);
    let SecretEvent::Created(c) = &events[0] else {
        panic!("first event is the creation")
    };
    assert_eq!(c.creator.as_str(), "alice");
}

#[test]
fn two_step_create_takes_exactly_one_payload() {
    let events = run(&[create(None)], &SecretCommand::PutPayload(sealed(1))).unwrap();
    assert_eq!(events.len(), 1);
    let err = run(
        &[create(None), SecretCommand::PutPayload(sealed(1))],
        &SecretCommand::PutPayload(sealed(2)),
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(
        err.message.contains("already has a payload"),
        "{}",
        err.message
    );
}

#[test]
fn create_on_an_existing_secret_is_a_conflict() {
    let err = run(&[create(None)], &create(None)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
}

#[test]
fn delete_destroys_every_version_key() {
    let events = run(
        &[create(Some(sealed(1))), put(2, None)],
        &SecretCommand::Delete {
            mode: DeleteMode::Now,
            ignore_consumers: false,
        },
    )
    .unwrap();
    assert_eq!(
        events,
        [SecretEvent::Deleted(SecretDeleted {
            destroyed_keys: vec![sealed(1).key_id, sealed(2).key_id]
        })]
    );
}

#[test]
fn nothing_applies_to_a_deleted_secret() {
    let given = [
        create(None),
        SecretCommand::Delete {
            mode: DeleteMode::Now,
            ignore_consumers: false,
        },
    ];
    for when in [
        SecretCommand::Delete {
            mode: DeleteMode::Now,
            ignore_consumers: false,
        },
        SecretCommand::PutPayload(sealed(1)),
        SecretCommand::SetMetadatum {
            key: MetadataKey::parse("k").unwrap(),
            value: MetadataValue::parse("v").unwrap(),
            presence: Presence::Any,
        },
    ] {
        let err = run(&given, &when).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound, "{when:?}");
        assert_eq!(
            err.message,
            "Secret not found: no secret 00000000-0000-0000-0000-000000000007 in project p1"
        );
    }
}

#[test]
fn an_expired_secret_takes_no_payload_but_can_be_deleted() {
    let later = at("2026-11-23T10:00:00Z");
    let world = World::new().given(&create(None), now());
    let err = world
        .decide(&SecretCommand::PutPayload(sealed(1)), later)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(
        err.message,
        "secret 00000000-0000-0000-0000-000000000007 expired at 2026-11-23T10:00:00Z"
    );
    assert!(
        world
            .decide(
                &SecretCommand::Delete {
                    mode: DeleteMode::Now,
                    ignore_consumers: false,
                },
                later
            )
            .is_ok()
    );
}

#[test]
fn another_projects_principal_is_refused() {
    let mut bob = alice();
    bob.project = ProjectId::parse("p2").unwrap();
    let err = World::as_actor(Actor::User(bob))
        .decide(&create(None), now())
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
}

#[test]
fn a_new_current_version_moves_previous() {
    let w = World::new()
        .given(&create(Some(sealed(1))), now())
        .given(&put(2, None), now());
    let s = w.secret();
    assert_eq!(s.stages[&Stage::Current], version(2));
    assert_eq!(s.stages[&Stage::Previous], version(1));
    let w = w.given(&put(3, None), now());
    let s = w.secret();
    assert_eq!(s.stages[&Stage::Current], version(3));
    assert_eq!(s.stages[&Stage::Previous], version(2));
    assert!(
        s.stages_of(version(1)).is_empty(),
        "version 1 is deprecated"
    );
}

#[test]
fn a_secrets_first_version_is_current_whatever_stages_it_is_given() {
    let w = World::new()
        .given(&create(None), now())
        .given(&put(2, Some(&[Stage::Pending])), now());
    assert_eq!(w.secret().stages[&Stage::Current], version(2));
    assert_eq!(w.secret().stages[&Stage::Pending], version(2));
    // The next one is given only what it is given.
    let w = w.given(&put(3, Some(&[Stage::Pending])), now());
    assert_eq!(w.secret().stages[&Stage::Current], version(2));
    assert_eq!(w.secret().stages[&Stage::Pending], version(3));
}

#[test]
fn a_pending_version_leaves_current_alone_until_moved() {
    let w = World::new()
        .given(&create(Some(sealed(1))), now())
        .given(&put(2, Some(&[Stage::Pending])), now());
    assert_eq!(w.secret().stages[&Stage::Current], version(1));
    let unnamed = SecretCommand::MoveStage {
        stage: Stage::Current,
        to: Some(version(2)),
        from: None,
    };
    let err = w.decide(&unnamed, now()).unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(
        err.message.contains("also name that version"),
        "{}",
        err.message
    );
    let wrong = SecretCommand::MoveStage {
        stage: Stage::Current,
        to: Some(version(2)),
        from: Some(version(2)),
    };
    assert!(
        w.decide(&wrong, now())
            .unwrap_err()
            .message
            .contains("not on version")
    );
    let w = w.given(
        &SecretCommand::MoveStage {
            stage: Stage::Current,
            to: Some(version(2)),
            from: Some(version(1)),
        },
        now(),
    );
    let s = w.secret();
    assert_eq!(s.stages[&Stage::Current], version(2));
    assert_eq!(s.stages[&Stage::Previous], version(1));
    // Moving it where it already is does nothing.
    let again = SecretCommand::MoveStage {
        stage: Stage::Current,
        to: Some(version(2)),
        from: Some(version(2)),
    };
    assert_eq!(w.decide(&again, now()).unwrap(), []);
}

#[test]
fn current_cannot_be_removed_and_previous_cannot_be_given() {
    let w = World::new().given(&create(Some(sealed(1))), now());
    let remove = SecretCommand::MoveStage {
        stage: Stage::Current,
        to: None,
        from: Some(version(1)),
    };
    assert_eq!(
        w.decide(&remove, now()).unwrap_err().code,
        ErrorCode::Invalid
    );
    let err = w
        .decide(&put(2, Some(&[Stage::Previous])), now())
        .unwrap_err();
    assert!(err.message.contains("follows current"), "{}", err.message);
    assert!(w.decide(&put(2, Some(&[])), now()).is_err());
}

#[test]
fn a_reused_token_with_another_payload_is_refused() {
    let w = World::new()
        .given(&create(Some(sealed(1))), now())
        .given(&put(2, None), now());
    let err = w.decide(&put(2, None), now()).unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(err.message.contains("different payload"), "{}", err.message);
}

#[test]
fn retention_destroys_old_deprecated_versions_only() {
    // keep 3, min age 24 h: versions 1..=5, each put an hour apart.
    let mut w = World::new().given(&create(Some(sealed(1))), now());
    for n in 2..=5u128 {
        w = w.given(&put(n, None), now().plus(hours(n as u64)).unwrap());
    }
    // All are younger than 24 h: nothing is destroyed, however many there are.
    assert_eq!(w.secret().versions.len(), 5);
    // A day later, the scheduler's prune destroys the two oldest deprecated ones.
    let later = now().plus(hours(30)).unwrap();
    let w = World {
        actor: Actor::scheduler(),
        ..w
    };
    let events = w.decide(&SecretCommand::PruneVersions, later).unwrap();
    assert_eq!(
        events,
        [SecretEvent::VersionsDestroyed(VersionsDestroyed {
            versions: vec![version(1), version(2)],
            destroyed_keys: vec![sealed(1).key_id, sealed(2).key_id],
        })]
    );
    let w = w.given(&SecretCommand::PruneVersions, later);
    assert_eq!(w.decide(&SecretCommand::PruneVersions, later).unwrap(), []);
    // Staged versions are never destroyed.
    let s = w.secret();
    assert!(s.staged(Stage::Current).is_some() && s.staged(Stage::Previous).is_some());
}

#[test]
fn a_secret_holds_at_most_twice_keep_versions_until_retention_catches_up() {
    // keep 3, min age 1 h: the ceiling is 6. Six versions at once; the seventh is
    // refused.
    let mut w = World::new();
    w.lifecycle.retention.min_age = hours(1);
    let mut w = w.given(&create(Some(sealed(1))), now());
    for n in 2..=6u128 {
        w = w.given(&put(n, None), now());
    }
    assert_eq!(w.secret().versions.len(), 6);
    let err = w.decide(&put(7, None), now()).unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(err.message.contains("holds 6 versions"), "{}", err.message);
    // Once they are old enough the deprecated ones go, and the same value is stored.
    let later = now().plus(hours(2)).unwrap();
    let events = w.decide(&put(7, None), later).unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SecretEvent::VersionsDestroyed(_))),
        "{events:?}"
    );
}

#[test]
fn expire_is_accepted_once_the_expiration_passed_and_destroys_the_keys() {
    let w = World::as_actor(Actor::scheduler());
    let w = World {
        state: World::new().given(&create(Some(sealed(1))), now()).state,
        ..w
    };
    let err = w.decide(&SecretCommand::Expire, now()).unwrap_err();
    assert!(
        err.message
            .contains("expires at 2026-11-23T10:00:00Z, not before"),
        "{}",
        err.message
    );
    let later = at("2026-11-23T10:00:00Z");
    let w = w.given(&SecretCommand::Expire, later);
    assert_eq!(w.state, SecretState::Expired(later));
    let err = w.decide(&SecretCommand::Expire, later).unwrap_err();
    assert_eq!(
        err.message,
        "secret 00000000-0000-0000-0000-000000000007 expired at 2026-11-23T10:00:00Z"
    );
}

#[test]
fn a_scheduled_deletion_can_be_restored_within_its_window() {
    let w = World::new().given(&create(Some(sealed(1))), now()).given(
        &SecretCommand::Delete {
            mode: DeleteMode::After(Some(hours(24 * 7))),
            ignore_consumers: false,
        },
        now(),
    );
    let purge_at = at("2026-11-29T10:00:00Z");
    assert_eq!(w.secret().purge_at, Some(purge_at));
    let err = w.decide(&put(2, None), now()).unwrap_err();
    assert!(
        err.message
            .contains("is scheduled for deletion on 2026-11-29T10:00:00Z; restore it"),
        "{}",
        err.message
    );
    let sched = World {
        actor: Actor::scheduler(),
        lifecycle: w.lifecycle,
        state: w.state.clone(),
    };
    let restored = w.given(&SecretCommand::Restore, now());
    assert_eq!(restored.secret().purge_at, None);
    assert!(restored.decide(&put(2, None), now()).is_ok());
    // The scheduler purges once the window has ended, not before.
    assert_eq!(
        sched.decide(&SecretCommand::Purge, now()).unwrap_err().code,
        ErrorCode::Conflict
    );
    assert_eq!(
        sched.decide(&SecretCommand::Purge, purge_at).unwrap(),
        [SecretEvent::Deleted(SecretDeleted {
            destroyed_keys: vec![sealed(1).key_id]
        })]
    );
}

#[test]
fn a_restore_is_refused_once_the_recovery_window_has_ended() {
    let mut never_expires = create(Some(sealed(1)));
    if let SecretCommand::Create(c) = &mut never_expires {
        c.attributes.expiration = None;
    }
    let w = World::new().given(&never_expires, now()).given(
        &SecretCommand::Delete {
            mode: DeleteMode::After(Some(hours(24 * 7))),
            ignore_consumers: false,
        },
        now(),
    );
    let purge_at = at("2026-11-29T10:00:00Z");
    // Up to the window's last instant, not from it on, whether or not the scheduler's
    // purge has landed.
    let just_before = Timestamp::from_unix_millis(purge_at.unix_millis() - 1).unwrap();
    assert!(w.decide(&SecretCommand::Restore, just_before).is_ok());
    for late in [purge_at, purge_at.plus(hours(5)).unwrap()] {
        // Every command, a restore included, finds it deleted, none says to restore it.
        let change = w.decide(&put(2, None), late).unwrap_err();
        assert_eq!(change.code, ErrorCode::NotFound);
        assert!(
            change.message.contains("recovery window ended"),
            "{}",
            change.message
        );
        let err = w.decide(&SecretCommand::Restore, late).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert!(
            err.message.contains(
                "recovery window ended at 2026-11-29T10:00:00Z: it is deleted and can no \
                 longer be restored"
            ),
            "{}",
            err.message
        );
        // Nor is a consumer removed, a rotation cancelled or the secret expired on it.
        for command in [
            SecretCommand::RemoveConsumer(crate::secret::consumer::SecretConsumer {
                service: "image".into(),
                resource_type: "image".into(),
                resource_id: "i-1".into(),
            }),
            SecretCommand::CancelRotation,
            SecretCommand::Expire,
        ] {
            let err = w.decide(&command, late).unwrap_err();
            assert_eq!(err.code, ErrorCode::NotFound, "{command:?}");
            assert!(
                err.message.contains("recovery window ended"),
                "{command:?}: {}",
                err.message
            );
        }
        // A deletion too, forced or windowed: the scheduler's purge is what lands
        // (a_scheduled_deletion_can_be_restored_within_its_window).
        for mode in [DeleteMode::Now, DeleteMode::After(Some(hours(24 * 7)))] {
            let delete = SecretCommand::Delete {
                mode,
                ignore_consumers: false,
            };
            let err = w.decide(&delete, late).unwrap_err();
            assert_eq!(err.code, ErrorCode::NotFound, "{delete:?}");
            assert!(
                err.message.contains("recovery window ended"),
                "{}",
                err.message
            );
        }
    }
    // Within the window a forced deletion still destroys the keys at once.
    let forced = SecretCommand::Delete {
        mode: DeleteMode::Now,
        ignore_consumers: false,
    };
    assert!(w.decide(&forced, just_before).is_ok());
}

#[test]
fn recovery_windows_outside_the_bounds_are_refused() {
    let w = World::new().given(&create(None), now());
    let err = w
        .decide(
            &SecretCommand::Delete {
                mode: DeleteMode::After(Some(hours(1))),
                ignore_consumers: false,
            },
            now(),
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Invalid);
    assert!(
        err.message.contains("between 7 days and 30 days"),
        "{}",
        err.message
    );
}

#[test]
fn only_the_owning_service_changes_a_managed_secret() {
    let mut rotator = alice();
    rotator.service = Some(ServiceName::parse("rotator").unwrap());
    let w = World::as_actor(Actor::User(rotator.clone()))
        .given(&create_with(Some(sealed(1)), Some("rotator")), now());
    assert!(w.decide(&put(2, None), now()).is_ok());
    let as_alice = World {
        actor: Actor::User(alice()),
        ..w
    };
    for cmd in [
        put(2, None),
        SecretCommand::Delete {
            mode: DeleteMode::Now,
            ignore_consumers: false,
        },
        SecretCommand::Restore,
    ] {
        let err = as_alice.decide(&cmd, now()).unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert_eq!(
            err.message,
            "This secret is managed by rotator; use that service to update it"
        );
    }
    let err = World::new()
        .decide(&create_with(None, Some("rotator")), now())
        .unwrap_err();
    assert!(
        err.message.contains("only service rotator may create"),
        "{}",
        err.message
    );
}

#[test]
fn the_scheduler_runs_its_tasks_only_and_users_cannot_run_them() {
    let w = World::new().given(&create(None), now());
    assert_eq!(
        w.decide(&SecretCommand::Purge, now()).unwrap_err().message,
        "secret.purge is issued by keyledger itself only"
    );
    let sched = World {
        actor: Actor::scheduler(),
        ..w
    };
    assert_eq!(
        sched
            .decide(
                &SecretCommand::Delete {
                    mode: DeleteMode::Now,
                    ignore_consumers: false,
                },
                now()
            )
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
}

#[test]
fn metadata_keys_can_be_required_new_or_existing() {
    let k = MetadataKey::parse("k").unwrap();
    let v = MetadataValue::parse("v").unwrap();
    let set = |presence| SecretCommand::SetMetadatum {
        key: k.clone(),
        value: v.clone(),
        presence,
    };
    let w = World::new().given(&create(None), now());
    assert_eq!(
        w.decide(&set(Presence::Present), now()).unwrap_err().code,
        ErrorCode::NotFound
    );
    let w = w.given(&set(Presence::Absent), now());
    assert_eq!(
        w.decide(&set(Presence::Absent), now()).unwrap_err().code,
        ErrorCode::Conflict
    );
    let w = w.given(&SecretCommand::DeleteMetadatum(k.clone()), now());
    assert!(w.secret().attributes.metadata.is_empty());
}

mod rotation {
    use super::*;
    use crate::secret::command::{RecordStep, Rotate};
    use crate::secret::rotation::{HandlerName, RotationRules, Step, StepResult};

    fn rotate(immediately: bool, v: u128) -> SecretCommand {
        SecretCommand::Rotate(Box::new(Rotate {
            handler: Some(HandlerName::parse("pg").unwrap()),
            rules: Some(RotationRules::parse(Some(1), None, None).unwrap()),
            immediately,
            version: version(v),
        }))
    }

    fn step(v: u128, step: Step, attempt: u32, result: StepResult) -> SecretCommand {
        SecretCommand::RecordRotationStep(Box::new(RecordStep {
            version: version(v),
            step,
            attempt,
            result,
        }))
    }

    fn done() -> StepResult {
        StepResult::Done { lease: now() }
    }

    /// Applies `cmd` as the rotation runner.
    fn as_runner(w: World, cmd: &SecretCommand) -> World {
        let mut runner = World::as_actor(Actor::rotator());
        runner.state = w.state;
        let mut runner = runner.given(cmd, now());
        let mut user = World::new();
        user.state = std::mem::take(&mut runner.state);
        user
    }

    fn live(w: &World) -> &Secret {
        match &w.state {
            SecretState::Live(s) => s,
            other => panic!("not live: {other:?}"),
        }
    }

    /// A run from start to finish: AWSPENDING on a version without a value, the
    /// handler's own writes between steps, AWSCURRENT moved by its finishSecret.
    #[test]
    fn a_rotation_runs_its_four_steps() {
        let w = World::new()
            .given(&create(Some(sealed(1))), now())
            .given(&rotate(true, 9), now());
        assert_eq!(live(&w).stages.get(&Stage::Pending), Some(&version(9)));
        assert!(live(&w).version(version(9)).is_none());
        // A second RotateSecret while it runs is AWS's refusal.
        let busy = w.decide(&rotate(true, 10), now()).unwrap_err();
        assert!(
            busy.message
                .starts_with("A previous rotation isn't complete"),
            "{busy:?}"
        );
        // createSecret that stored nothing fails with what to do.
        let mut runner = World::as_actor(Actor::rotator());
        runner.state = w.state.clone();
        let empty = runner
            .decide(&step(9, Step::Create, 1, done()), now())
            .unwrap();
        assert!(
            matches!(&empty[0], SecretEvent::RotationStepFailed(f) if f.reason.contains("PutSecretValue")),
            "{empty:?}"
        );
        let w = w.given(&put(9, Some(&[Stage::Pending])), now());
        let w = as_runner(w, &step(9, Step::Create, 1, done()));
        let w = as_runner(w, &step(9, Step::Set, 1, done()));
        let w = as_runner(w, &step(9, Step::Test, 1, done()));
        let w = w.given(
            &SecretCommand::MoveStage {
                stage: Stage::Current,
                to: Some(version(9)),
                from: Some(version(1)),
            },
            now(),
        );
        let w = as_runner(w, &step(9, Step::Finish, 1, done()));
        let s = live(&w);
        assert_eq!(s.stages.get(&Stage::Current), Some(&version(9)));
        assert_eq!(s.stages.get(&Stage::Pending), None);
        let r = s.rotation.as_ref().unwrap();
        assert!(r.run.is_none() && r.last_rotated == Some(now()));
        assert_eq!(r.next, now().plus(hours(24)));
    }

    /// A failed testSecret leaves AWSCURRENT where it was; each outcome is recorded
    /// once, for the run's current attempt only.
    #[test]
    fn a_failed_step_retries_then_ends_and_leaves_current() {
        let w = World::new()
            .given(&create(Some(sealed(1))), now())
            .given(&rotate(true, 9), now())
            .given(&put(9, Some(&[Stage::Pending])), now());
        let w = as_runner(w, &step(9, Step::Create, 1, done()));
        let w = as_runner(w, &step(9, Step::Set, 1, done()));
        let fail = |retry_at| StepResult::Failed {
            reason: "login refused".into(),
            retry_at,
        };
        let w = as_runner(w, &step(9, Step::Test, 1, fail(Some(now()))));
        let mut runner = World::as_actor(Actor::rotator());
        runner.state = w.state.clone();
        let stale = runner
            .decide(&step(9, Step::Test, 1, fail(None)), now())
            .unwrap_err();
        assert_eq!(stale.code, ErrorCode::Conflict);
        let w = as_runner(w, &step(9, Step::Test, 2, fail(None)));
        let s = live(&w);
        assert_eq!(s.stages.get(&Stage::Current), Some(&version(1)));
        let r = s.rotation.as_ref().unwrap();
        assert!(r.run.is_none());
        assert_eq!(r.last_failure.as_deref(), Some("testSecret: login refused"));
    }

    /// A scheduled rotation with a window starts at the secret's own point in it, not
    /// before.
    #[test]
    fn a_scheduled_rotation_starts_at_its_point_in_the_window() {
        let windowed = SecretCommand::Rotate(Box::new(Rotate {
            handler: Some(HandlerName::parse("pg").unwrap()),
            rules: Some(RotationRules::parse(None, Some("rate(4 hours)"), Some("4h")).unwrap()),
            immediately: false,
            version: version(9),
        }));
        let w = World::new()
            .given(&create(Some(sealed(1))), now())
            .given(&windowed, now());
        let r = live(&w).rotation.clone().unwrap();
        let open = r.next.unwrap();
        let id = SecretId::from_uuid(Uuid::from_u128(7));
        let due = r.due(id).unwrap();
        assert!(
            due > open && due < open.plus(hours(2)).unwrap(),
            "{open:?} {due:?}"
        );
        let start = SecretCommand::StartScheduledRotation {
            version: version(10),
        };
        let mut runner = World::as_actor(Actor::rotator());
        runner.state = w.state;
        let early = runner.decide(&start, open).unwrap_err();
        assert!(early.message.contains("no rotation"), "{}", early.message);
        assert!(runner.decide(&start, due).is_ok());
    }

    /// Cancelling names the version left with AWSPENDING; only the runner records steps.
    #[test]
    fn cancel_names_what_it_leaves_and_users_cannot_record_steps() {
        let w = World::new()
            .given(&create(Some(sealed(1))), now())
            .given(&rotate(true, 9), now());
        let forged = w
            .decide(&step(9, Step::Create, 1, done()), now())
            .unwrap_err();
        assert_eq!(forged.code, ErrorCode::Forbidden);
        let events = w.decide(&SecretCommand::CancelRotation, now()).unwrap();
        assert!(
            matches!(&events[..], [SecretEvent::RotationCancelled(c)] if c.pending == Some(version(9))),
            "{events:?}"
        );
        let w = w.given(&SecretCommand::CancelRotation, now());
        assert!(
            w.decide(&SecretCommand::CancelRotation, now())
                .unwrap()
                .is_empty()
        );
        let r = live(&w).rotation.clone().unwrap();
        assert!(!r.enabled && r.due(SecretId::from_uuid(uuid::Uuid::nil())).is_none());
    }
}
