//! Project roles as Barbican defines them, and how token role names map onto them.
//!
//! Barbican's legacy policy has four roles: `admin`, `creator`, `observer` and `audit`.
//! Its secure-RBAC policy replaced them with `admin`, `member` and `reader`, where
//! `member` took over from `creator`, and `reader` from both `observer` and `audit`.
//! keyledger accepts both sets. `member` is read as `creator`. `reader` gets only what
//! `observer` and `audit` both allow, which is `audit`: it can read metadata but
//! never a payload. This is the safer reading, and it is recorded in ARCHITECTURE.md.
//! Any other role name in a token grants nothing.

use std::fmt;

use crate::ids::Role;

/// A role keyledger's policy knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProjectRole {
    /// Everything in the project, including private secrets and their ACLs.
    Admin,
    /// Creates secrets. It also changes and deletes its own secrets, and the project's
    /// non-private ones.
    Creator,
    /// Lists the project's non-private secrets and reads their metadata and payloads.
    Observer,
    /// Reads the metadata and history of non-private secrets, never a payload.
    Audit,
}

impl ProjectRole {
    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Creator => "creator",
            Self::Observer => "observer",
            Self::Audit => "audit",
        }
    }

    /// The policy role a token role name stands for, if any.
    pub fn of(role: &Role) -> Option<Self> {
        match role.as_str() {
            "admin" => Some(Self::Admin),
            "creator" | "member" => Some(Self::Creator),
            "observer" => Some(Self::Observer),
            "audit" | "reader" => Some(Self::Audit),
            _ => None,
        }
    }
}

impl fmt::Display for ProjectRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy roles of a token's role names.
pub fn effective(roles: &[Role]) -> Vec<ProjectRole> {
    let mut out: Vec<_> = roles.iter().filter_map(ProjectRole::of).collect();
    out.sort();
    out.dedup();
    out
}

/// "creator or admin"; "observer, creator or admin".
pub fn either(roles: &[ProjectRole]) -> String {
    match roles {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!(
            "{} or {last}",
            init.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(names: &[&str]) -> Vec<Role> {
        names.iter().map(|n| Role::parse(n).unwrap()).collect()
    }

    #[test]
    fn aliases_map_as_barbican_maps_them() {
        assert_eq!(effective(&roles(&["member"])), [ProjectRole::Creator]);
        assert_eq!(effective(&roles(&["reader"])), [ProjectRole::Audit]);
        assert_eq!(
            effective(&roles(&["Observer", "admin", "ops"])),
            [ProjectRole::Admin, ProjectRole::Observer]
        );
        assert!(effective(&roles(&["key-manager-service-admin"])).is_empty());
    }

    #[test]
    fn alternatives_read_as_english() {
        use ProjectRole::*;
        assert_eq!(either(&[Creator, Admin]), "creator or admin");
        assert_eq!(
            either(&[Observer, Creator, Admin]),
            "observer, creator or admin"
        );
    }
}
