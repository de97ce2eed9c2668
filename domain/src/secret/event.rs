//! Events of the Secret aggregate and their versioned JSON form.
//!
//! Each event is written as `{"type": "secret.<what>", "v": <version>, …fields}`. The
//! log is a public format: a change to an event's shape gets a new `v` and an upcaster
//! in [`upcast`], never a rewrite of stored events. Golden files in
//! `domain/tests/golden/` pin every current version.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::collections::BTreeSet;

use crate::commit::{CommitError, EventCodec, decode_versioned, encode_versioned};
use crate::ids::{KeyId, ServiceName, UserId, VersionId};
use crate::secret::acl::Acl;
use crate::secret::consumer::SecretConsumer;
use crate::secret::fields::{Attributes, Description, MetadataKey, MetadataValue, TagKey, Tags};
use crate::secret::payload::SealedPayload;
use crate::secret::rotation::{HandlerName, RotationRules, Step};
use crate::secret::version::Stage;
use crate::timestamp::Timestamp;

/// A secret came into existence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretCreated {
    /// Its attributes (written as members of the event itself).
    #[serde(flatten)]
    pub attributes: Attributes,
    /// The user who created it.
    pub creator: UserId,
    /// The service that manages it (since v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owning_service: Option<ServiceName>,
    /// Its tags (since v2).
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
}

/// A version of the value was stored, sealed under a data key held in the key store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayloadStored {
    /// The sealed payload; `version_id` names the version.
    #[serde(flatten)]
    pub payload: SealedPayload,
    /// The stages the version takes (since v2; a v1 payload was the current one).
    pub stages: BTreeSet<Stage>,
    /// When it was stored (since v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Timestamp>,
}

/// A stage now points at `version`, or (`None`) at no version. A stage is on at most
/// one version: this takes it off any other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageMoved {
    /// The stage.
    pub stage: Stage,
    /// Where it is now.
    pub version: Option<VersionId>,
}

/// The name of the field in which every event that destroys data keys lists them
/// ([`SecretEvent::destroyed_keys`]).
pub const DESTROYED_KEYS: &str = "destroyed_keys";

/// Whether the commit `payload` may name keys to destroy. Every event that does
/// (`secret.deleted`, `secret.expired`, `secret.versions_destroyed`,
/// `access_key.revoked`) lists them in a field named [`DESTROYED_KEYS`], which a commit
/// as keyledger writes it (canonical JSON, member names unescaped) holds as those very
/// bytes. Nearly every commit is a create or a change that destroys nothing; the key
/// shredder, which destroys keys from the log, and the read path's key cache, which
/// must forget keys before they are destroyed, both pass over a commit without those
/// bytes, unopened. They only ever pass over: a commit with them is opened (or taken
/// as destroying). A commit in another JSON encoding, its member names escaped, is
/// passed over by both alike: keyledger never writes one, and no key is destroyed for
/// it.
pub fn may_destroy_keys(payload: &[u8]) -> bool {
    memchr::memmem::find(payload, DESTROYED_KEYS.as_bytes()).is_some()
}

/// Deprecated versions were destroyed with their data keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionsDestroyed {
    /// The versions.
    pub versions: Vec<VersionId>,
    /// Their data keys; the key store drops them.
    pub destroyed_keys: Vec<KeyId>,
}

/// The secret's expiration passed; its data keys were destroyed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretExpired {
    /// When it expired (its expiration).
    pub expired_at: Timestamp,
    /// Data keys of every version; the key store drops them.
    pub destroyed_keys: Vec<KeyId>,
}

/// The secret was scheduled for deletion; it can be restored until `purge_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionScheduled {
    /// When the recovery window ends and the secret is purged.
    pub purge_at: Timestamp,
}

/// A scheduled deletion was undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRestored {}

/// One metadata key was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadatumDeleted {
    /// The key.
    pub key: MetadataKey,
}

/// A consumer of the secret registered or unregistered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConsumerChanged {
    /// The consumer.
    pub consumer: SecretConsumer,
}

/// Tags were added or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsSet {
    /// The tags set.
    pub tags: Tags,
}

/// Tags were removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsRemoved {
    /// The keys removed.
    pub keys: BTreeSet<TagKey>,
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

/// Rotation was configured: a handler, and a schedule or none (on demand only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfigured {
    /// The handler asked for each step.
    pub handler: HandlerName,
    /// The schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<RotationRules>,
    /// When the next scheduled rotation starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<Timestamp>,
}

/// A rotation started: `version` takes AWSPENDING before it has a value (the handler's
/// `createSecret` stores one), and off any version that had it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationStarted {
    /// The version the rotation makes.
    pub version: VersionId,
    /// When.
    pub at: Timestamp,
    /// When the scheduled rotation after this one starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<Timestamp>,
}

/// The handler answered a step without an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationStepSucceeded {
    /// The run's version.
    pub version: VersionId,
    /// The step.
    pub step: Step,
    /// Until when the runner that asked holds the run.
    pub lease: Timestamp,
}

/// A step failed: the handler's error, a timeout, no handler answering, or a check
/// keyledger makes after the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationStepFailed {
    /// The run's version.
    pub version: VersionId,
    /// The step.
    pub step: Step,
    /// Why.
    pub reason: String,
    /// When the step is tried again; `None` ends the run as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Timestamp>,
}

/// A rotation finished: AWSCURRENT is on `version`, which loses AWSPENDING.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationSucceeded {
    /// The new current version.
    pub version: VersionId,
    /// When.
    pub at: Timestamp,
    /// When the next scheduled rotation starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<Timestamp>,
}

/// Rotation was turned off, and a run under way stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationCancelled {
    /// The version a stopped run left with AWSPENDING, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<VersionId>,
}

/// The secret's description was set (or, with none, cleared).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptionSet {
    /// The new description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
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
    /// See [`StageMoved`].
    #[serde(rename = "secret.stage_moved")]
    StageMoved(StageMoved),
    /// See [`VersionsDestroyed`].
    #[serde(rename = "secret.versions_destroyed")]
    VersionsDestroyed(VersionsDestroyed),
    /// See [`SecretExpired`].
    #[serde(rename = "secret.expired")]
    Expired(SecretExpired),
    /// See [`DeletionScheduled`].
    #[serde(rename = "secret.deletion_scheduled")]
    DeletionScheduled(DeletionScheduled),
    /// See [`SecretRestored`].
    #[serde(rename = "secret.restored")]
    Restored(SecretRestored),
    /// See [`MetadatumDeleted`].
    #[serde(rename = "secret.metadatum_deleted")]
    MetadatumDeleted(MetadatumDeleted),
    /// See [`TagsSet`].
    #[serde(rename = "secret.tags_set")]
    TagsSet(TagsSet),
    /// See [`TagsRemoved`].
    #[serde(rename = "secret.tags_removed")]
    TagsRemoved(TagsRemoved),
    /// A consumer registered.
    #[serde(rename = "secret.consumer_registered")]
    ConsumerRegistered(SecretConsumerChanged),
    /// A consumer unregistered.
    #[serde(rename = "secret.consumer_removed")]
    ConsumerRemoved(SecretConsumerChanged),
    /// See [`RotationConfigured`].
    #[serde(rename = "secret.rotation_configured")]
    RotationConfigured(RotationConfigured),
    /// See [`RotationStarted`].
    #[serde(rename = "secret.rotation_started")]
    RotationStarted(RotationStarted),
    /// See [`RotationStepSucceeded`].
    #[serde(rename = "secret.rotation_step_succeeded")]
    RotationStepSucceeded(RotationStepSucceeded),
    /// See [`RotationStepFailed`].
    #[serde(rename = "secret.rotation_step_failed")]
    RotationStepFailed(RotationStepFailed),
    /// See [`RotationSucceeded`].
    #[serde(rename = "secret.rotation_succeeded")]
    RotationSucceeded(RotationSucceeded),
    /// See [`RotationCancelled`].
    #[serde(rename = "secret.rotation_cancelled")]
    RotationCancelled(RotationCancelled),
    /// See [`DescriptionSet`].
    #[serde(rename = "secret.description_set")]
    DescriptionSet(DescriptionSet),
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
            Self::StageMoved(_) => "secret.stage_moved",
            Self::VersionsDestroyed(_) => "secret.versions_destroyed",
            Self::Expired(_) => "secret.expired",
            Self::DeletionScheduled(_) => "secret.deletion_scheduled",
            Self::Restored(_) => "secret.restored",
            Self::MetadatumDeleted(_) => "secret.metadatum_deleted",
            Self::TagsSet(_) => "secret.tags_set",
            Self::TagsRemoved(_) => "secret.tags_removed",
            Self::ConsumerRegistered(_) => "secret.consumer_registered",
            Self::ConsumerRemoved(_) => "secret.consumer_removed",
            Self::RotationConfigured(_) => "secret.rotation_configured",
            Self::RotationStarted(_) => "secret.rotation_started",
            Self::RotationStepSucceeded(_) => "secret.rotation_step_succeeded",
            Self::RotationStepFailed(_) => "secret.rotation_step_failed",
            Self::RotationSucceeded(_) => "secret.rotation_succeeded",
            Self::RotationCancelled(_) => "secret.rotation_cancelled",
            Self::DescriptionSet(_) => "secret.description_set",
        }
    }

    /// The version this build writes for `type_name`; `None` for unknown types.
    pub fn current_version(type_name: &str) -> Option<u64> {
        match type_name {
            "secret.payload_stored" | "secret.created" => Some(3),
            "secret.stage_moved" => Some(2),
            "secret.metadatum_set"
            | "secret.deleted"
            | "secret.acl_set"
            | "secret.versions_destroyed"
            | "secret.expired"
            | "secret.deletion_scheduled"
            | "secret.restored"
            | "secret.metadatum_deleted"
            | "secret.tags_set"
            | "secret.tags_removed"
            | "secret.consumer_registered"
            | "secret.consumer_removed"
            | "secret.rotation_configured"
            | "secret.rotation_started"
            | "secret.rotation_step_succeeded"
            | "secret.rotation_step_failed"
            | "secret.rotation_succeeded"
            | "secret.rotation_cancelled"
            | "secret.description_set" => Some(1),
            _ => None,
        }
    }

    /// The data keys this event destroys: the key store must drop them. Every event
    /// that destroys any (`access_key.revoked` too) lists them in a field named
    /// [`DESTROYED_KEYS`], which the key shredder looks for before it opens a commit,
    /// and the API's key cache before it forgets a secret's keys
    /// ([`may_destroy_keys`]).
    pub fn destroyed_keys(&self) -> &[KeyId] {
        match self {
            Self::Deleted(e) => &e.destroyed_keys,
            Self::Expired(e) => &e.destroyed_keys,
            Self::VersionsDestroyed(e) => &e.destroyed_keys,
            _ => &[],
        }
    }
}

/// Brings an older event to the current version of its type.
///
/// - `secret.created` v1 had no `owning_service` or `tags`: both default to none.
/// - `secret.payload_stored` v1 was a secret's one payload, so it was current: v2
///   adds `"stages": ["current"]` (and no `created`, which v1 did not record).
/// - `secret.created` v3 may carry a `description`, which v2 never had.
/// - `secret.payload_stored` v3 and `secret.stage_moved` v2 may name custom staging
///   labels; v2 and v1 named built-in ones only, which v3 and v2 spell the same. The
///   versions moved so that a build without custom labels stops at such an event
///   ("no upcaster") instead of misreading it.
fn upcast(type_name: &str, v: u64, mut value: Value) -> Result<Value, CommitError> {
    match (type_name, v) {
        ("secret.created", 1 | 2) | ("secret.payload_stored", 2) | ("secret.stage_moved", 1) => {
            Ok(value)
        }
        ("secret.payload_stored", 1) => {
            if let Value::Object(map) = &mut value {
                map.insert("stages".into(), serde_json::json!(["current"]));
            }
            Ok(value)
        }
        _ => Err(CommitError::Event(format!(
            "{type_name} v{v} has no upcaster; the log holds a version this build never wrote"
        ))),
    }
}

impl EventCodec for SecretEvent {
    fn encode(&self) -> Value {
        encode_versioned(self, Self::current_version(self.type_name()))
    }

    fn decode(value: Value) -> Result<Self, CommitError> {
        decode_versioned(value, Self::current_version, upcast)
    }
}
