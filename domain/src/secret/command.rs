//! Commands on a secret, already parsed: every field is a valid domain value.

use crate::secret::acl::AclChange;
use crate::secret::fields::{Attributes, MetadataKey, MetadataValue};
use crate::secret::payload::SealedPayload;
use crate::subject::command;

/// Create a secret, optionally with its payload (Barbican `POST /v1/secrets`).
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSecret {
    /// Name, type, informational fields, expiration and metadata.
    pub attributes: Attributes,
    /// The payload, already sealed; `None` for Barbican's two-step create.
    pub payload: Option<SealedPayload>,
}

/// Everything that can be asked of a secret.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretCommand {
    /// Create it.
    Create(Box<CreateSecret>),
    /// Store the payload of a secret created without one. Allowed exactly once.
    PutPayload(SealedPayload),
    /// Set one metadata key.
    SetMetadatum {
        /// The key.
        key: MetadataKey,
        /// Its new value.
        value: MetadataValue,
    },
    /// Delete it and destroy its data keys.
    Delete,
    /// Change its read ACL.
    SetAcl(AclChange),
}

impl SecretCommand {
    /// The command's name, as in its subject `keyledger.cmd.<name>`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create(_) => command::SECRET_CREATE,
            Self::PutPayload(_) => command::SECRET_PAYLOAD_PUT,
            Self::SetMetadatum { .. } => command::SECRET_METADATA_SET,
            Self::Delete => command::SECRET_DELETE,
            Self::SetAcl(AclChange::Reset) => command::SECRET_ACL_DELETE,
            Self::SetAcl(_) => command::SECRET_ACL_SET,
        }
    }
}
