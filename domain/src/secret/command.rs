//! Commands on a secret, already parsed: every field is a valid domain value.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::ids::{ServiceName, UserId, VersionId};
use crate::secret::acl::AclChange;
use crate::secret::consumer::SecretConsumer;
use crate::secret::fields::{
    Attributes, Description, Metadata, MetadataKey, MetadataValue, TagKey, Tags,
};
use crate::secret::payload::SealedPayload;
use crate::secret::rotation::{HandlerName, RotationRules, Step, StepResult};
use crate::secret::version::Stage;
use crate::subject::command;

/// Create a secret, optionally with its payload (Barbican `POST /v1/secrets`).
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSecret {
    /// Name, type, informational fields, expiration and metadata.
    pub attributes: Attributes,
    /// The payload, already sealed; `None` for Barbican's two-step create.
    pub payload: Option<SealedPayload>,
    /// The service that manages the secret, if any: only it may change the secret.
    pub owning_service: Option<ServiceName>,
    /// Tags.
    pub tags: Tags,
}

/// Store a new version of the value (AWS `PutSecretValue`).
#[derive(Debug, Clone, PartialEq)]
pub struct PutValue {
    /// The sealed payload; its version id comes from the client request token.
    pub payload: SealedPayload,
    /// The stages the new version takes; `current` when not given.
    pub stages: Option<BTreeSet<Stage>>,
}

/// Configure rotation, start one, or both (AWS `RotateSecret`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rotate {
    /// The handler; the configured one when `None`.
    pub handler: Option<HandlerName>,
    /// The schedule; unchanged when `None`.
    pub rules: Option<RotationRules>,
    /// Start a rotation now (AWS's `RotateImmediately`, true by default).
    pub immediately: bool,
    /// The version a rotation started now makes (from the ClientRequestToken).
    pub version: VersionId,
}

/// The outcome of one attempt at one step (keyledger's rotation runner).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordStep {
    /// The run's version.
    pub version: VersionId,
    /// The step.
    pub step: Step,
    /// The attempt, which must be the run's current one.
    pub attempt: u32,
    /// What came of it.
    pub result: StepResult,
}

/// Whether setting a metadata key requires it to exist already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Presence {
    /// Either way (add or change).
    #[default]
    Any,
    /// The key must be new (Barbican `POST /metadata`).
    Absent,
    /// The key must exist (Barbican `PUT /metadata/{key}`).
    Present,
}

/// How a deletion proceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteMode {
    /// At once, destroying the keys (Barbican `DELETE`, or a forced deletion).
    Now,
    /// After a recovery window (the configured default when `None`).
    After(Option<Duration>),
}

/// Everything that can be asked of a secret.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretCommand {
    /// Create it.
    Create(Box<CreateSecret>),
    /// Create it for an order, owned by the order's creator (the order worker's).
    CreateForOrder {
        /// What to create, its payload sealed.
        create: Box<CreateSecret>,
        /// The user who placed the order.
        creator: UserId,
    },
    /// Store the payload of a secret created without one (Barbican). Allowed once.
    PutPayload(SealedPayload),
    /// Store a new version of the value.
    PutValue(Box<PutValue>),
    /// Move a stage to a version, or take it off one (AWS `UpdateSecretVersionStage`).
    MoveStage {
        /// The stage.
        stage: Stage,
        /// The version to put it on; `None` takes it off `from`.
        to: Option<VersionId>,
        /// The version it must be on now; required when it is on one and moves.
        from: Option<VersionId>,
    },
    /// Set one metadata key.
    SetMetadatum {
        /// The key.
        key: MetadataKey,
        /// Its new value.
        value: MetadataValue,
        /// Whether the key must be new or must exist.
        presence: Presence,
    },
    /// Remove one metadata key.
    DeleteMetadatum(MetadataKey),
    /// Replace all metadata (Barbican `PUT /metadata`).
    ReplaceMetadata(Metadata),
    /// Add or change tags.
    SetTags(Tags),
    /// Remove tags; keys that are not set are ignored.
    RemoveTags(BTreeSet<TagKey>),
    /// Change its read ACL.
    SetAcl(AclChange),
    /// Delete it, now or after a recovery window.
    Delete {
        /// Now, or after a recovery window.
        mode: DeleteMode,
        /// Delete even though consumers are registered.
        ignore_consumers: bool,
    },
    /// Register a service that uses the secret (Barbican's secret consumers).
    RegisterConsumer(SecretConsumer),
    /// Unregister a consumer.
    RemoveConsumer(SecretConsumer),
    /// Undo a deletion during its recovery window.
    Restore,
    /// Record that it expired and destroy its keys. Accepted once the expiration passed.
    Expire,
    /// End a deletion whose recovery window has passed (the scheduler's).
    Purge,
    /// Destroy deprecated versions retention no longer keeps (the scheduler's).
    PruneVersions,
    /// Configure or start a rotation.
    Rotate(Box<Rotate>),
    /// Turn rotation off and stop a run under way (AWS `CancelRotateSecret`).
    CancelRotation,
    /// Start the scheduled rotation that is due, making `version` (the runner's).
    StartScheduledRotation {
        /// The version the rotation makes.
        version: VersionId,
    },
    /// Record a step's outcome (the runner's).
    RecordRotationStep(Box<RecordStep>),
    /// Set or clear the description.
    SetDescription(Option<Description>),
}

impl SecretCommand {
    /// The command's name, as in its subject `keyledger.cmd.<name>`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create(_) | Self::CreateForOrder { .. } => command::SECRET_CREATE,
            Self::PutPayload(_) => command::SECRET_PAYLOAD_PUT,
            Self::PutValue(_) => command::SECRET_VALUE_PUT,
            Self::MoveStage { .. } => command::SECRET_STAGE_MOVE,
            Self::SetMetadatum { .. } => command::SECRET_METADATA_SET,
            Self::DeleteMetadatum(_) => command::SECRET_METADATA_DELETE,
            Self::ReplaceMetadata(_) => command::SECRET_METADATA_REPLACE,
            Self::SetTags(_) => command::SECRET_TAGS_SET,
            Self::RemoveTags(_) => command::SECRET_TAGS_REMOVE,
            Self::SetAcl(AclChange::Reset) => command::SECRET_ACL_DELETE,
            Self::SetAcl(_) => command::SECRET_ACL_SET,
            Self::Delete { .. } => command::SECRET_DELETE,
            Self::RegisterConsumer(_) => command::SECRET_CONSUMER_REGISTER,
            Self::RemoveConsumer(_) => command::SECRET_CONSUMER_REMOVE,
            Self::Restore => command::SECRET_RESTORE,
            Self::Expire => command::SECRET_EXPIRE,
            Self::Purge => command::SECRET_PURGE,
            Self::PruneVersions => command::SECRET_VERSIONS_PRUNE,
            Self::Rotate(_) => command::SECRET_ROTATE,
            Self::CancelRotation => command::SECRET_ROTATION_CANCEL,
            Self::StartScheduledRotation { .. } => command::SECRET_ROTATION_START,
            Self::RecordRotationStep(_) => command::SECRET_ROTATION_STEP,
            Self::SetDescription(_) => command::SECRET_DESCRIPTION_SET,
        }
    }
}
