//! Secret consumers, as Barbican has them: a service declares that one of its
//! resources uses a secret, so deleting the secret is refused (unless forced) and the
//! owner can see whom a change affects.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Rejection;
use crate::secret::fields::bounded_text;

/// A service's resource that uses a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConsumer {
    /// The service, e.g. `octavia`.
    pub service: String,
    /// The kind of resource, e.g. `listener`.
    pub resource_type: String,
    /// The resource's id.
    pub resource_id: String,
}

impl SecretConsumer {
    /// Parses a consumer: each field 1 to 255 characters, no control characters.
    pub fn parse(service: &str, resource_type: &str, resource_id: &str) -> Result<Self, Rejection> {
        Ok(Self {
            service: bounded_text("service", service, 255)?,
            resource_type: bounded_text("resource_type", resource_type, 255)?,
            resource_id: bounded_text("resource_id", resource_id, 255)?,
        })
    }
}

impl fmt::Display for SecretConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} {})",
            self.service, self.resource_type, self.resource_id
        )
    }
}
