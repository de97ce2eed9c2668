//! The state of a secret, folded from its events.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{KeyId, ServiceName, UserId, VersionId};
use crate::secret::acl::Acl;
use crate::secret::consumer::SecretConsumer;
use crate::secret::event::SecretEvent;
use crate::secret::fields::{Attributes, Tags};
use crate::secret::rotation::{Rotation, Run, Step};
use crate::secret::version::{Stage, Version};
use crate::timestamp::Timestamp;

/// A secret that exists: live, or scheduled for deletion and still restorable.
#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    /// Name, type, informational fields, expiration and metadata.
    pub attributes: Attributes,
    /// Who created it.
    pub creator: UserId,
    /// Who may read it.
    pub acl: Acl,
    /// The service that manages it; only that service may change it.
    pub owning_service: Option<ServiceName>,
    /// Tags.
    pub tags: Tags,
    /// Versions whose keys still exist, oldest first.
    pub versions: Vec<Version>,
    /// Which version each stage is on.
    pub stages: BTreeMap<Stage, VersionId>,
    /// When a scheduled deletion purges it; `None` unless deletion is scheduled.
    pub purge_at: Option<Timestamp>,
    /// Services using it.
    pub consumers: BTreeSet<SecretConsumer>,
    /// Its rotation, once configured.
    pub rotation: Option<Rotation>,
}

impl Secret {
    /// A version by id.
    pub fn version(&self, id: VersionId) -> Option<&Version> {
        self.versions.iter().find(|v| v.id == id)
    }

    /// The version a stage is on.
    pub fn staged(&self, stage: Stage) -> Option<&Version> {
        self.stages.get(&stage).and_then(|id| self.version(*id))
    }

    /// The stages on a version.
    pub fn stages_of(&self, id: VersionId) -> Vec<&Stage> {
        self.stages
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(s, _)| s)
            .collect()
    }

    /// The data keys of every version.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.versions.iter().map(|v| v.key_id).collect()
    }
}

/// The lifecycle of a secret.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum SecretState {
    /// No such secret (yet).
    #[default]
    Absent,
    /// Created, and neither deleted nor expired (possibly scheduled for deletion).
    Live(Box<Secret>),
    /// Deleted; its keys are destroyed. The log keeps its history.
    Deleted,
    /// Expired at the given time; its keys are destroyed. The log keeps its history.
    Expired(Timestamp),
}

/// Folds one event into the state.
///
/// `evolve` is total: an event that does not apply to the state (which `decide` never
/// produces, as the property tests check) leaves the state unchanged rather than
/// panicking, so a reader of an unexpected log can still make progress.
pub fn evolve(state: SecretState, event: &SecretEvent) -> SecretState {
    let mut s = match (state, event) {
        (SecretState::Absent, SecretEvent::Created(e)) => {
            return SecretState::Live(Box::new(Secret {
                attributes: e.attributes.clone(),
                creator: e.creator.clone(),
                acl: Acl::default(),
                owning_service: e.owning_service.clone(),
                tags: e.tags.clone(),
                versions: Vec::new(),
                stages: BTreeMap::new(),
                purge_at: None,
                consumers: BTreeSet::new(),
                rotation: None,
            }));
        }
        (SecretState::Live(s), _) => s,
        (state, _) => return state,
    };
    match event {
        SecretEvent::Created(_) => {}
        SecretEvent::PayloadStored(e) => {
            let id = e.payload.version_id;
            s.versions.push(Version {
                id,
                key_id: e.payload.key_id,
                content_type: e.payload.content_type,
                created: e.created,
            });
            for stage in &e.stages {
                s.stages.insert(stage.clone(), id);
            }
        }
        SecretEvent::StageMoved(e) => match e.version {
            Some(v) => {
                s.stages.insert(e.stage.clone(), v);
            }
            None => {
                s.stages.remove(&e.stage);
            }
        },
        SecretEvent::VersionsDestroyed(e) => {
            s.versions.retain(|v| !e.versions.contains(&v.id));
            s.stages.retain(|_, v| !e.versions.contains(v));
        }
        SecretEvent::MetadatumSet(e) => {
            s.attributes.metadata.insert(e.key.clone(), e.value.clone());
        }
        SecretEvent::MetadatumDeleted(e) => {
            s.attributes.metadata.remove(&e.key);
        }
        SecretEvent::TagsSet(e) => {
            s.tags.extend(e.tags.clone());
        }
        SecretEvent::DescriptionSet(e) => s.attributes.description = e.description.clone(),
        SecretEvent::TagsRemoved(e) => {
            s.tags.retain(|k, _| !e.keys.contains(k));
        }
        SecretEvent::AclSet(e) => s.acl = e.read.clone(),
        SecretEvent::ConsumerRegistered(e) => {
            s.consumers.insert(e.consumer.clone());
        }
        SecretEvent::ConsumerRemoved(e) => {
            s.consumers.remove(&e.consumer);
        }
        SecretEvent::DeletionScheduled(e) => s.purge_at = Some(e.purge_at),
        SecretEvent::Restored(_) => s.purge_at = None,
        SecretEvent::RotationConfigured(_)
        | SecretEvent::RotationStarted(_)
        | SecretEvent::RotationStepSucceeded(_)
        | SecretEvent::RotationStepFailed(_)
        | SecretEvent::RotationSucceeded(_)
        | SecretEvent::RotationCancelled(_) => {
            if let SecretEvent::RotationStarted(e) = event {
                s.stages.insert(Stage::Pending, e.version);
            }
            if let SecretEvent::RotationSucceeded(e) = event
                && s.stages.get(&Stage::Pending) == Some(&e.version)
            {
                s.stages.remove(&Stage::Pending);
            }
            s.rotation = evolve_rotation(s.rotation.take(), event);
        }
        SecretEvent::Deleted(_) => return SecretState::Deleted,
        SecretEvent::Expired(e) => return SecretState::Expired(e.expired_at),
    }
    SecretState::Live(s)
}

/// Folds a rotation event into a secret's rotation (the stages it moves are the
/// secret's: [`evolve`] moves them). The read model keeps the same fold.
pub fn evolve_rotation(rotation: Option<Rotation>, event: &SecretEvent) -> Option<Rotation> {
    if let SecretEvent::RotationConfigured(e) = event {
        let old = rotation.unwrap_or_else(|| Rotation {
            handler: e.handler.clone(),
            rules: None,
            enabled: true,
            last_rotated: None,
            next: None,
            run: None,
            last_failure: None,
        });
        return Some(Rotation {
            handler: e.handler.clone(),
            rules: e.rules.clone(),
            enabled: true,
            next: e.next_rotation,
            ..old
        });
    }
    let mut r = rotation?;
    match event {
        SecretEvent::RotationStarted(e) => {
            r.enabled = true;
            r.next = e.next_rotation;
            r.run = Some(Run {
                version: e.version,
                started: e.at,
                step: Step::Create,
                attempt: 1,
                due: e.at,
                last_error: None,
            });
        }
        SecretEvent::RotationStepSucceeded(e) => {
            if let Some(run) = &mut r.run
                && let Some(next) = e.step.next()
            {
                run.step = next;
                run.attempt = 1;
                run.due = e.lease;
                run.last_error = None;
            }
        }
        SecretEvent::RotationStepFailed(e) => match e.retry_at {
            Some(at) => {
                if let Some(run) = &mut r.run {
                    run.attempt = run.attempt.saturating_add(1);
                    run.due = at;
                    run.last_error = Some(e.reason.clone());
                }
            }
            None => {
                r.run = None;
                r.last_failure = Some(format!("{}: {}", e.step, e.reason));
            }
        },
        SecretEvent::RotationSucceeded(e) => {
            r.run = None;
            r.last_rotated = Some(e.at);
            r.next = e.next_rotation;
            r.last_failure = None;
        }
        SecretEvent::RotationCancelled(_) => {
            r.enabled = false;
            r.next = None;
            r.run = None;
        }
        _ => {}
    }
    Some(r)
}
