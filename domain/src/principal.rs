//! Who is acting: derived from a verified token, never from a request body.

use serde::{Deserialize, Serialize};

use crate::ids::{ProjectId, Role, ServiceName, UserId};

/// The caller of a command or read, as established by a verified bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The user (the token's `sub`).
    pub user: UserId,
    /// The project the token is scoped to; the caller acts inside it.
    pub project: ProjectId,
    /// The caller's roles in that project, as the token names them.
    pub roles: Vec<Role>,
    /// The service the token names, when a workload rather than a person acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceName>,
}
