//! The state of a secret, folded from its events.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{KeyId, ServiceName, UserId, VersionId};
use crate::secret::acl::Acl;
use crate::secret::consumer::SecretConsumer;
use crate::secret::event::SecretEvent;
use crate::secret::fields::{Attributes, Tags};
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
    pub fn stages_of(&self, id: VersionId) -> Vec<Stage> {
        self.stages
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(s, _)| *s)
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
                s.stages.insert(*stage, id);
            }
        }
        SecretEvent::StageMoved(e) => match e.version {
            Some(v) => {
                s.stages.insert(e.stage, v);
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
        SecretEvent::Deleted(_) => return SecretState::Deleted,
        SecretEvent::Expired(e) => return SecretState::Expired(e.expired_at),
    }
    SecretState::Live(s)
}
