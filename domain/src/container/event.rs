//! Events of the Container aggregate and their versioned JSON form (see
//! `secret::event` for the rules: a changed shape is a new `v` with an upcaster).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::commit::{CommitError, EventCodec, decode_versioned, encode_versioned};
use crate::container::{ContainerType, RefName, SecretRef};
use crate::ids::{SecretId, UserId};
use crate::secret::AclSet;
use crate::secret::fields::SecretName;

/// A container came into existence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerCreated {
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<SecretName>,
    /// Its type.
    #[serde(rename = "container_type")]
    pub kind: ContainerType,
    /// Its references.
    pub secret_refs: Vec<SecretRef>,
    /// Who created it.
    pub creator: UserId,
}

/// A reference was added (generic containers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSecretAdded {
    /// The reference.
    pub secret_ref: SecretRef,
}

/// A reference was removed (generic containers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSecretRemoved {
    /// Its name.
    pub name: RefName,
    /// The secret.
    pub secret_id: SecretId,
}

/// A consumer registered or unregistered (Barbican's `{name, URL}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerChanged {
    /// The consumer's name (e.g. the service).
    pub name: String,
    /// Where it uses the container.
    pub url: String,
}

/// The container was deleted (`forced` when consumers were still registered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerDeleted {
    /// Whether consumers were overridden.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

/// Everything that can happen to a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ContainerEvent {
    /// See [`ContainerCreated`].
    #[serde(rename = "container.created")]
    Created(ContainerCreated),
    /// See [`ContainerSecretAdded`].
    #[serde(rename = "container.secret_added")]
    SecretAdded(ContainerSecretAdded),
    /// See [`ContainerSecretRemoved`].
    #[serde(rename = "container.secret_removed")]
    SecretRemoved(ContainerSecretRemoved),
    /// A consumer registered.
    #[serde(rename = "container.consumer_registered")]
    ConsumerRegistered(ConsumerChanged),
    /// A consumer unregistered.
    #[serde(rename = "container.consumer_removed")]
    ConsumerRemoved(ConsumerChanged),
    /// The read ACL was set (the whole ACL, as for secrets).
    #[serde(rename = "container.acl_set")]
    AclSet(AclSet),
    /// See [`ContainerDeleted`].
    #[serde(rename = "container.deleted")]
    Deleted(ContainerDeleted),
}

impl ContainerEvent {
    /// The `type` member.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Created(_) => "container.created",
            Self::SecretAdded(_) => "container.secret_added",
            Self::SecretRemoved(_) => "container.secret_removed",
            Self::ConsumerRegistered(_) => "container.consumer_registered",
            Self::ConsumerRemoved(_) => "container.consumer_removed",
            Self::AclSet(_) => "container.acl_set",
            Self::Deleted(_) => "container.deleted",
        }
    }

    /// The version this build writes for `type_name`; `None` for unknown types.
    pub fn current_version(type_name: &str) -> Option<u64> {
        match type_name {
            "container.created"
            | "container.secret_added"
            | "container.secret_removed"
            | "container.consumer_registered"
            | "container.consumer_removed"
            | "container.acl_set"
            | "container.deleted" => Some(1),
            _ => None,
        }
    }
}

impl EventCodec for ContainerEvent {
    fn encode(&self) -> Value {
        encode_versioned(self, Self::current_version(self.type_name()))
    }

    fn decode(value: Value) -> Result<Self, CommitError> {
        // Every type is still at version 1: nothing to upcast.
        decode_versioned(value, Self::current_version, |t, v, _| {
            Err(CommitError::Event(format!("{t} v{v} has no upcaster")))
        })
    }
}
