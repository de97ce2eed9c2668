//! The state of a secret, folded from its events.

use crate::ids::{KeyId, UserId, VersionId};
use crate::secret::acl::Acl;
use crate::secret::event::SecretEvent;
use crate::secret::fields::Attributes;
use crate::secret::payload::ContentType;

/// Where a secret's payload is and how to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRef {
    /// The payload version.
    pub version_id: VersionId,
    /// The data key that sealed it.
    pub key_id: KeyId,
    /// Its media type.
    pub content_type: ContentType,
}

/// A live secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    /// Name, type, informational fields, expiration and metadata.
    pub attributes: Attributes,
    /// Who created it.
    pub creator: UserId,
    /// The stored payload, once there is one.
    pub payload: Option<PayloadRef>,
    /// Who may read it.
    pub acl: Acl,
}

/// The lifecycle of a secret.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum SecretState {
    /// No such secret (yet).
    #[default]
    Absent,
    /// Created and not deleted.
    Live(Box<Secret>),
    /// Deleted; its keys are destroyed. The log keeps its history.
    Deleted,
}

/// Folds one event into the state.
///
/// `evolve` is total: an event that does not apply to the state (which `decide` never
/// produces, as the property tests check) leaves the state unchanged rather than
/// panicking, so a reader of an unexpected log can still make progress.
pub fn evolve(state: SecretState, event: &SecretEvent) -> SecretState {
    match (state, event) {
        (SecretState::Absent, SecretEvent::Created(e)) => SecretState::Live(Box::new(Secret {
            attributes: e.attributes.clone(),
            creator: e.creator.clone(),
            payload: None,
            acl: Acl::default(),
        })),
        (SecretState::Live(mut s), SecretEvent::PayloadStored(e)) => {
            s.payload = Some(PayloadRef {
                version_id: e.payload.version_id,
                key_id: e.payload.key_id,
                content_type: e.payload.content_type,
            });
            SecretState::Live(s)
        }
        (SecretState::Live(mut s), SecretEvent::MetadatumSet(e)) => {
            s.attributes.metadata.insert(e.key.clone(), e.value.clone());
            SecretState::Live(s)
        }
        (SecretState::Live(mut s), SecretEvent::AclSet(e)) => {
            s.acl = e.read.clone();
            SecretState::Live(s)
        }
        (SecretState::Live(_), SecretEvent::Deleted(_)) => SecretState::Deleted,
        (state, _) => state,
    }
}
