//! Project roles as Barbican defines them, and how token role names map onto them.
//!
//! Barbican's legacy policy has four roles: `admin`, `creator`, `observer` and `audit`.
//! Its secure-RBAC policy, the current default, has `admin`, `member` and `reader`.
//! keyledger follows each role name's own rules: the current defaults for `admin`,
//! `member` and `reader`, the legacy policy for `creator`, `observer` and `audit`
//! (see [`crate::policy`]). Role names are matched without regard to case. Any other
//! role name in a token grants nothing.

use std::fmt;

use crate::ids::Role;

/// A role keyledger's policy knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProjectRole {
    /// Everything in the project, including private objects and their ACLs.
    Admin,
    /// Secure RBAC's member: creates; reads, changes and deletes its own objects and
    /// the project's non-private ones; reads and changes only its own objects' ACLs.
    Member,
    /// Legacy creator: as member, but it reads and changes the ACLs of non-private
    /// objects too, deletes only its own containers, and no orders.
    Creator,
    /// Legacy observer: lists the project's objects and reads non-private ones,
    /// payloads included.
    Observer,
    /// Legacy audit: reads the metadata of non-private objects, never a payload, and
    /// the project's history; lists nothing.
    Audit,
    /// Secure RBAC's reader: nothing of the project's on its own; reads what an ACL
    /// shares with it.
    Reader,
}

impl ProjectRole {
    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Creator => "creator",
            Self::Observer => "observer",
            Self::Audit => "audit",
            Self::Reader => "reader",
        }
    }

    /// The policy role a token role name stands for, if any.
    pub fn of(role: &Role) -> Option<Self> {
        match role.as_str() {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            "creator" => Some(Self::Creator),
            "observer" => Some(Self::Observer),
            "audit" => Some(Self::Audit),
            "reader" => Some(Self::Reader),
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
    fn each_name_is_its_own_role() {
        assert_eq!(effective(&roles(&["member"])), [ProjectRole::Member]);
        assert_eq!(effective(&roles(&["reader"])), [ProjectRole::Reader]);
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
