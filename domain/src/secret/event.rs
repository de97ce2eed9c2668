//! Events of the Secret aggregate and their versioned JSON form.
//!
//! Each event is written as `{"type": "secret.<what>", "v": <version>, …fields}`. The
//! log is a public format: a change to an event's shape gets a new `v` and an upcaster
//! in [`upcast`], never a rewrite of stored events. Golden files in
//! `domain/tests/golden/` pin every current version.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::commit::{CommitError, EventCodec};
use crate::ids::{KeyId, UserId};
use crate::secret::acl::Acl;
use crate::secret::fields::{Attributes, MetadataKey, MetadataValue};
use crate::secret::payload::SealedPayload;

/// A secret came into existence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretCreated {
    /// Its attributes (written as members of the event itself).
    #[serde(flatten)]
    pub attributes: Attributes,
    /// The user who created it.
    pub creator: UserId,
}

/// A payload was stored, sealed under a data key held in the key store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayloadStored {
    /// The sealed payload.
    #[serde(flatten)]
    pub payload: SealedPayload,
}

/// One metadata key was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadatumSet {
    /// The key.
    pub key: MetadataKey,
    /// The new value.
    pub value: MetadataValue,
}

/// The secret was deleted and these data keys destroyed (crypto-shredding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretDeleted {
    /// Data keys of every payload version; the key store drops them.
    pub destroyed_keys: Vec<KeyId>,
}

/// The secret's read ACL was set; `read` is the whole ACL from now on, so the log
/// shows who could read the secret at any point without replaying patches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclSet {
    /// The ACL of the `read` operation.
    pub read: Acl,
}

/// Everything that can happen to a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SecretEvent {
    /// See [`SecretCreated`].
    #[serde(rename = "secret.created")]
    Created(SecretCreated),
    /// See [`PayloadStored`].
    #[serde(rename = "secret.payload_stored")]
    PayloadStored(PayloadStored),
    /// See [`MetadatumSet`].
    #[serde(rename = "secret.metadatum_set")]
    MetadatumSet(MetadatumSet),
    /// See [`SecretDeleted`].
    #[serde(rename = "secret.deleted")]
    Deleted(SecretDeleted),
    /// See [`AclSet`].
    #[serde(rename = "secret.acl_set")]
    AclSet(AclSet),
}

impl SecretEvent {
    /// The `type` member.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Created(_) => "secret.created",
            Self::PayloadStored(_) => "secret.payload_stored",
            Self::MetadatumSet(_) => "secret.metadatum_set",
            Self::Deleted(_) => "secret.deleted",
            Self::AclSet(_) => "secret.acl_set",
        }
    }

    /// The version this build writes for `type_name`; `None` for unknown types.
    pub fn current_version(type_name: &str) -> Option<u64> {
        match type_name {
            "secret.created"
            | "secret.payload_stored"
            | "secret.metadatum_set"
            | "secret.deleted"
            | "secret.acl_set" => Some(1),
            _ => None,
        }
    }
}

/// Brings an event written as `(type_name, v)` to the current version of its type.
/// Every type is still at version 1, so there is nothing to convert yet; a future
/// `v: 2` adds an arm here that rewrites the v1 JSON into the v2 shape.
fn upcast(type_name: &str, v: u64, value: Value) -> Result<Value, CommitError> {
    match SecretEvent::current_version(type_name) {
        Some(current) if v == current => Ok(value),
        Some(current) => Err(CommitError::Event(format!(
            "{type_name} v{v} cannot be read by this build (it reads up to v{current}); \
             upgrade keyledger"
        ))),
        None => Err(CommitError::Event(format!(
            "unknown event type {type_name:?}"
        ))),
    }
}

impl EventCodec for SecretEvent {
    fn encode(&self) -> Value {
        // Serialising these plain structs to a Value cannot fail: every map key is a
        // string and no Serialize impl here returns an error.
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            let v = Self::current_version(self.type_name()).unwrap_or(1);
            map.insert("v".into(), Value::from(v));
        }
        value
    }

    fn decode(value: Value) -> Result<Self, CommitError> {
        let Value::Object(mut map) = value else {
            return Err(CommitError::Event("an event must be a JSON object".into()));
        };
        let type_name = map
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| CommitError::Event("event without a string \"type\"".into()))?
            .to_owned();
        let v = map
            .remove("v")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| CommitError::Event(format!("{type_name} without a numeric \"v\"")))?;
        let value = upcast(&type_name, v, Value::Object(map))?;
        serde_json::from_value(value).map_err(|e| CommitError::Event(format!("{type_name}: {e}")))
    }
}
