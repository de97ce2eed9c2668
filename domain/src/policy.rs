//! Authorization: the one policy both the command path and the read path apply.
//!
//! This is the foundation's policy: a principal acts only inside the project its token
//! is scoped to. Project roles and per-secret ACLs refine it (see ARCHITECTURE.md).

use crate::Rejection;
use crate::ids::ProjectId;
use crate::principal::Principal;

/// What a principal attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create a secret.
    CreateSecret,
    /// List secrets or read a secret's metadata.
    ReadSecret,
    /// Read a secret's decrypted payload.
    ReadPayload,
    /// Store a payload or change metadata of an existing secret.
    UpdateSecret,
    /// Delete a secret.
    DeleteSecret,
}

impl Action {
    /// A phrase for messages ("reading a secret's payload").
    pub fn describe(self) -> &'static str {
        match self {
            Self::CreateSecret => "creating a secret",
            Self::ReadSecret => "reading a secret",
            Self::ReadPayload => "reading a secret's payload",
            Self::UpdateSecret => "changing a secret",
            Self::DeleteSecret => "deleting a secret",
        }
    }
}

/// Allows `action` on a resource of `project`, or says why not. Deny by default: the
/// only grant is acting inside the principal's own project.
pub fn authorize(who: &Principal, action: Action, project: &ProjectId) -> Result<(), Rejection> {
    if &who.project == project {
        return Ok(());
    }
    Err(Rejection::forbidden(format!(
        "{} in project {project} is not allowed: your token is scoped to project {}; \
         request a token for project {project}",
        action.describe(),
        who.project
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Role, UserId};

    fn principal(project: &str) -> Principal {
        Principal {
            user: UserId::parse("alice").unwrap(),
            project: ProjectId::parse(project).unwrap(),
            roles: vec![Role::parse("admin").unwrap()],
        }
    }

    #[test]
    fn same_project_is_allowed() {
        let p1 = ProjectId::parse("p1").unwrap();
        assert_eq!(
            authorize(&principal("p1"), Action::DeleteSecret, &p1),
            Ok(())
        );
    }

    #[test]
    fn other_project_is_denied_with_what_to_do() {
        let p2 = ProjectId::parse("p2").unwrap();
        let err = authorize(&principal("p1"), Action::ReadPayload, &p2).unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::Forbidden);
        assert_eq!(
            err.message,
            "reading a secret's payload in project p2 is not allowed: your token is scoped to \
             project p1; request a token for project p2"
        );
    }
}
