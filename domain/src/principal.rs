//! Who is acting: derived from a verified token, never from a request body.

use serde::{Deserialize, Serialize};

use crate::ids::{ProjectId, Role, UserId};

/// The caller of a command or read, as established by a verified bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The user (the token's `sub`).
    pub user: UserId,
    /// The project the token is scoped to; the caller acts inside it.
    pub project: ProjectId,
    /// The caller's roles in that project.
    pub roles: Vec<Role>,
}

impl Principal {
    /// True if the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.as_str() == role)
    }

    /// The roles as a comma-separated list, for messages.
    pub fn roles_list(&self) -> String {
        if self.roles.is_empty() {
            return "no roles".to_owned();
        }
        self.roles
            .iter()
            .map(Role::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
