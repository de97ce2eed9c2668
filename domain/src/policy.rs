//! Authorization: the one policy that both the command path and the read path apply.
//!
//! Barbican's policy, with its legacy and secure-RBAC role names (see
//! [`crate::roles`]), plus per-secret ACLs. A denial names the action, the project,
//! the roles that would allow it and the roles the caller has. Where Barbican's rules
//! are ambiguous this takes the safer reading. ARCHITECTURE.md ("Access control")
//! lists those choices.
//!
//! | action | who may |
//! |---|---|
//! | create a secret | creator, admin |
//! | list secrets | any role; each row is filtered by "read metadata" |
//! | read metadata | admin; creator of the secret; audit, observer or creator on a non-private secret; any role on the ACL |
//! | read payload | admin; creator of the secret; observer or creator on a non-private secret; admin, creator or observer on the ACL |
//! | change, delete, set ACL | admin; creator of the secret; creator on a non-private secret |
//! | read ACL | admin; creator of the secret; observer or creator on a non-private secret |
//!
//! A managed secret (one with an owning service) can be changed, deleted or have its
//! ACL changed only by a token of that service, whatever its roles; see [`managed_by`].
//!
//! "Admin" and "creator" always mean roles in the secret's own project. The ACL's
//! conditions restrict grants made through project access and through the ACL's user
//! list. They do not restrict the creator or the admins.

use std::fmt;
use std::net::IpAddr;

use crate::Rejection;
use crate::ids::{ContainerId, OrderId, ProjectId, SecretId, ServiceName, UserId};
use crate::principal::Principal;
use crate::roles::{ProjectRole, effective, either};
use crate::secret::acl::Acl;
use crate::timestamp::Timestamp;

use ProjectRole::{Admin, Audit, Creator, Observer};

/// What a principal attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Create a secret.
    CreateSecret,
    /// List a project's secrets.
    ListSecrets,
    /// Create a container.
    CreateContainer,
    /// List a project's containers.
    ListContainers,
    /// Read a project's whole history (the audit trail).
    ReadAudit,
    /// Place an order.
    CreateOrder,
    /// List a project's orders.
    ListOrders,
    /// Read a secret's metadata.
    ReadSecret,
    /// Read a secret's decrypted payload.
    ReadPayload,
    /// Store a payload or change metadata of an existing secret.
    UpdateSecret,
    /// Delete a secret.
    DeleteSecret,
    /// Read a secret's ACL.
    ReadAcl,
    /// Replace, merge or reset a secret's ACL.
    ChangeAcl,
}

impl Action {
    /// Project roles that allow the action, besides the secret's creator and admins.
    /// They grant it only on a non-private secret.
    fn project_roles(self) -> &'static [ProjectRole] {
        match self {
            Self::CreateSecret | Self::CreateContainer | Self::CreateOrder => &[Creator],
            Self::ReadAudit => &[Audit],
            Self::ListSecrets | Self::ListContainers | Self::ListOrders | Self::ReadSecret => {
                &[Audit, Observer, Creator]
            }
            Self::ReadPayload | Self::ReadAcl => &[Observer, Creator],
            Self::UpdateSecret | Self::DeleteSecret | Self::ChangeAcl => &[Creator],
        }
    }

    /// Roles a user on the secret's ACL needs (in their own project) for the action.
    /// An empty list means the ACL does not grant it.
    fn acl_roles(self) -> &'static [ProjectRole] {
        match self {
            Self::ReadSecret => &[Audit, Observer, Creator, Admin],
            Self::ReadPayload => &[Observer, Creator, Admin],
            _ => &[],
        }
    }

    fn is_read(self) -> bool {
        matches!(self, Self::ReadSecret | Self::ReadPayload)
    }

    fn is_write(self) -> bool {
        matches!(
            self,
            Self::UpdateSecret | Self::DeleteSecret | Self::ChangeAcl
        )
    }

    fn describe(self, object: Option<Object>) -> String {
        let o = object.map(|o| o.to_string()).unwrap_or_default();
        match self {
            Self::CreateSecret => "creating a secret".into(),
            Self::ListSecrets => "listing secrets".into(),
            Self::CreateContainer => "creating a container".into(),
            Self::ListContainers => "listing containers".into(),
            Self::CreateOrder => "placing an order".into(),
            Self::ReadAudit => "reading the project's history".into(),
            Self::ListOrders => "listing orders".into(),
            Self::ReadSecret => format!("reading {o}"),
            Self::ReadPayload => format!("reading the payload of {o}"),
            Self::UpdateSecret => format!("changing {o}"),
            Self::DeleteSecret => format!("deleting {o}"),
            Self::ReadAcl => format!("reading the ACL of {o}"),
            Self::ChangeAcl => format!("changing the ACL of {o}"),
        }
    }
}

/// What an action is on. Secrets and containers share the roles, ACLs and rules; only
/// the words differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// A secret.
    Secret(SecretId),
    /// A container.
    Container(ContainerId),
    /// An order.
    Order(OrderId),
}

impl Object {
    /// `secret` or `container`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Secret(_) => "secret",
            Self::Container(_) => "container",
            Self::Order(_) => "order",
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(id) => write!(f, "secret {id}"),
            Self::Container(id) => write!(f, "container {id}"),
            Self::Order(id) => write!(f, "order {id}"),
        }
    }
}

impl From<SecretId> for Object {
    fn from(id: SecretId) -> Self {
        Self::Secret(id)
    }
}

impl From<ContainerId> for Object {
    fn from(id: ContainerId) -> Self {
        Self::Container(id)
    }
}

/// A secret or container, as far as the policy needs it.
#[derive(Debug, Clone, Copy)]
pub struct SecretFacts<'a> {
    /// What it is.
    pub id: Object,
    /// The project that owns it.
    pub project: &'a ProjectId,
    /// The user who created it.
    pub creator: &'a UserId,
    /// Its read ACL.
    pub acl: &'a Acl,
    /// The service that manages it, if any.
    pub owning_service: Option<&'a ServiceName>,
}

/// What an action is aimed at.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A project as a whole: creating or listing, or acting on an object that does not
    /// exist (yet), whose owner and ACL are unknown.
    Project {
        /// The project.
        project: &'a ProjectId,
        /// The object named, if any (for messages).
        secret: Option<Object>,
    },
    /// An existing secret or container.
    Secret(SecretFacts<'a>),
}

/// Where and when a request is made: what ACL conditions test.
#[derive(Debug, Clone, Copy)]
pub struct RequestEnv {
    /// The client's address, when the transport knows it (HTTP does, NATS does not).
    pub source: Option<IpAddr>,
    /// The current time.
    pub now: Timestamp,
}

fn have(who: &Principal) -> String {
    if who.roles.is_empty() {
        return "you have no roles".into();
    }
    let names: Vec<_> = who.roles.iter().map(|r| r.as_str()).collect();
    format!("you have {}", names.join(", "))
}

fn any_of(roles: &[ProjectRole], wanted: &[ProjectRole]) -> bool {
    roles.iter().any(|r| wanted.contains(r))
}

/// The roles that allow `action` in a project, weakest first, admin last.
fn allowing(action: Action) -> Vec<ProjectRole> {
    let mut roles = action.project_roles().to_vec();
    roles.push(Admin);
    roles
}

/// Allows `action` on `target`, or says why not, in terms a person can act on. Deny by
/// default: every grant below is explicit.
pub fn authorize(
    who: &Principal,
    action: Action,
    target: Target<'_>,
    env: RequestEnv,
) -> Result<(), Rejection> {
    match target {
        Target::Project { project, secret } => authorize_in_project(who, action, project, secret),
        Target::Secret(facts) => authorize_on_secret(who, action, facts, env),
    }
}

fn authorize_in_project(
    who: &Principal,
    action: Action,
    project: &ProjectId,
    secret: Option<Object>,
) -> Result<(), Rejection> {
    let what = action.describe(secret);
    let needed = either(&allowing(action));
    if &who.project != project {
        return Err(other_project(who, action, project, secret));
    }
    if any_of(&effective(&who.roles), &allowing(action)) {
        return Ok(());
    }
    Err(Rejection::forbidden(format!(
        "{what} in project {project} requires role {needed}; {}",
        have(who)
    )))
}

/// The denial for a caller from another project who is not on the object's ACL: the
/// same words whether the object exists or not, so it tells nobody outside the
/// project what the project holds.
fn other_project(
    who: &Principal,
    action: Action,
    project: &ProjectId,
    object: Option<Object>,
) -> Rejection {
    let what = action.describe(object);
    let needed = either(&allowing(action));
    let (or_acl, hint) = match (object.is_some(), action.is_read()) {
        (false, _) => ("", ""),
        (true, true) => (", or being on its ACL", ""),
        (true, false) => (
            "",
            " (a secret or container shared with you through its ACL can be read, not \
             changed)",
        ),
    };
    Rejection::forbidden(format!(
        "{what} in project {project} requires role {needed} in project {project}{or_acl}; your \
         token is for project {}{hint}",
        who.project
    ))
}

fn authorize_on_secret(
    who: &Principal,
    action: Action,
    secret: SecretFacts<'_>,
    env: RequestEnv,
) -> Result<(), Rejection> {
    let same = &who.project == secret.project;
    if !same && !secret.acl.lists(&who.user) {
        return Err(other_project(who, action, secret.project, Some(secret.id)));
    }
    if let Some(service) = secret.owning_service
        && action.is_write()
        && who.service.as_ref() != Some(service)
    {
        return Err(managed_by(service));
    }
    let roles = effective(&who.roles);
    let admin = same && roles.contains(&Admin);
    let owner = same && roles.contains(&Creator) && &who.user == secret.creator;
    if admin || owner {
        return Ok(());
    }
    let acl = secret.acl;
    let by_role = same && any_of(&roles, action.project_roles());
    let via_project = by_role && acl.project_access;
    let listed = acl.lists(&who.user);
    let via_acl = listed && any_of(&roles, action.acl_roles());
    let what = action.describe(Some(secret.id));
    let project = secret.project;
    if via_project || via_acl {
        if action.is_read() {
            acl.conditions
                .check(env.source, env.now)
                .map_err(|failed| {
                    Rejection::forbidden(format!(
                        "{what} is not allowed now: {failed} (a condition of the {}'s ACL)",
                        secret.id.kind()
                    ))
                })?;
        }
        return Ok(());
    }
    let needed = either(&allowing(action));
    let or_acl = if action.is_read() {
        ", or being on its ACL"
    } else {
        ""
    };
    let message = if listed && action.is_read() {
        format!(
            "{what}: you are on its ACL, but that also requires role {}; {}",
            either(action.acl_roles()),
            have(who)
        )
    } else if !same {
        let hint = if action.is_read() {
            ""
        } else {
            " (a secret or container shared with you through its ACL can be read, not \
             changed)"
        };
        format!(
            "{what} in project {project} requires role {needed} in project {project}{or_acl}; \
             your token is for project {}{hint}",
            who.project
        )
    } else if by_role {
        let verb = if action.is_read() { "read" } else { "change" };
        let who_may = if action.is_read() {
            format!(
                "its creator ({}), admins of project {project} and users on its ACL",
                secret.creator
            )
        } else {
            format!(
                "its creator ({}) and admins of project {project}",
                secret.creator
            )
        };
        format!(
            "{what}: the {} is private (project-access is false), so only {who_may} may \
             {verb} it; you are {}",
            secret.id.kind(),
            who.user
        )
    } else {
        format!(
            "{what} in project {project} requires role {needed}{or_acl}; {}",
            have(who)
        )
    };
    Err(Rejection::forbidden(message))
}

/// The refusal of a change to a managed secret by anyone but its service. The same
/// words on every path (NATS and HTTP), as AWS words it.
pub fn managed_by(service: &ServiceName) -> Rejection {
    Rejection::forbidden(format!(
        "This secret is managed by {service}; use that service to update it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use crate::ids::Role;
    use crate::secret::acl::Conditions;
    use uuid::Uuid;

    fn principal(user: &str, project: &str, roles: &[&str]) -> Principal {
        Principal {
            user: UserId::parse(user).unwrap(),
            project: ProjectId::parse(project).unwrap(),
            roles: roles.iter().map(|r| Role::parse(r).unwrap()).collect(),
            service: None,
        }
    }

    fn env() -> RequestEnv {
        RequestEnv {
            source: Some("10.1.2.3".parse().unwrap()),
            now: Timestamp::parse_iso8601("now", "2026-11-23T12:00:00Z").unwrap(),
        }
    }

    struct Fixture {
        project: ProjectId,
        creator: UserId,
        acl: Acl,
    }

    impl Fixture {
        fn new(acl: Acl) -> Self {
            Self {
                project: ProjectId::parse("p1").unwrap(),
                creator: UserId::parse("alice").unwrap(),
                acl,
            }
        }

        fn check(&self, who: &Principal, action: Action) -> Result<(), Rejection> {
            let facts = SecretFacts {
                id: SecretId::from_uuid(Uuid::from_u128(7)).into(),
                project: &self.project,
                creator: &self.creator,
                acl: &self.acl,
                owning_service: None,
            };
            authorize(who, action, Target::Secret(facts), env())
        }
    }

    fn message(r: Result<(), Rejection>) -> String {
        let r = r.unwrap_err();
        assert_eq!(r.code, ErrorCode::Forbidden);
        r.message
    }

    const ID: &str = "00000000-0000-0000-0000-000000000007";

    #[test]
    fn creating_names_the_roles_that_would_allow_it() {
        let p1 = ProjectId::parse("p1").unwrap();
        let target = Target::Project {
            project: &p1,
            secret: None,
        };
        let observer = principal("bob", "p1", &["observer"]);
        assert_eq!(
            message(authorize(&observer, Action::CreateSecret, target, env())),
            "creating a secret in project p1 requires role creator or admin; you have observer"
        );
        let member = principal("bob", "p1", &["member"]);
        assert_eq!(
            authorize(&member, Action::CreateSecret, target, env()),
            Ok(())
        );
        let other = principal("bob", "p2", &["admin"]);
        assert_eq!(
            message(authorize(&other, Action::CreateSecret, target, env())),
            "creating a secret in project p1 requires role creator or admin in project p1; \
             your token is for project p2"
        );
    }

    #[test]
    fn audit_reads_metadata_but_never_a_payload() {
        let f = Fixture::new(Acl::default());
        let auditor = principal("eve", "p1", &["audit"]);
        assert_eq!(f.check(&auditor, Action::ReadSecret), Ok(()));
        assert_eq!(
            message(f.check(&auditor, Action::ReadPayload)),
            format!(
                "reading the payload of secret {ID} in project p1 requires role observer, \
                 creator or admin, or being on its ACL; you have audit"
            )
        );
    }

    #[test]
    fn a_private_secret_says_who_may_read_it() {
        let f = Fixture::new(Acl {
            project_access: false,
            ..Acl::default()
        });
        let observer = principal("bob", "p1", &["observer"]);
        assert_eq!(
            message(f.check(&observer, Action::ReadPayload)),
            format!(
                "reading the payload of secret {ID}: the secret is private (project-access is \
                 false), so only its creator (alice), admins of project p1 and users on its \
                 ACL may read it; you are bob"
            )
        );
        assert_eq!(
            f.check(&principal("alice", "p1", &["creator"]), Action::ReadPayload),
            Ok(())
        );
        assert_eq!(
            f.check(&principal("root", "p1", &["admin"]), Action::ChangeAcl),
            Ok(())
        );
    }

    #[test]
    fn listed_users_read_from_any_project_but_change_nothing() {
        let f = Fixture::new(Acl {
            project_access: false,
            users: [UserId::parse("carol").unwrap()].into(),
            ..Acl::default()
        });
        let carol = principal("carol", "p2", &["observer"]);
        assert_eq!(f.check(&carol, Action::ReadPayload), Ok(()));
        assert_eq!(
            message(f.check(&carol, Action::DeleteSecret)),
            format!(
                "deleting secret {ID} in project p1 requires role creator or admin in project \
                 p1; your token is for project p2 (a secret or container shared with you through its ACL can \
                 be read, not changed)"
            )
        );
        let carol_audit = principal("carol", "p2", &["reader"]);
        assert_eq!(
            message(f.check(&carol_audit, Action::ReadPayload)),
            format!(
                "reading the payload of secret {ID}: you are on its ACL, but that also \
                 requires role observer, creator or admin; you have reader"
            )
        );
    }

    #[test]
    fn a_failed_condition_is_named() {
        let f = Fixture::new(Acl {
            conditions: Conditions {
                source_cidrs: Conditions::parse_cidrs(["192.168.0.0/16"]).unwrap(),
                ..Conditions::default()
            },
            ..Acl::default()
        });
        let observer = principal("bob", "p1", &["observer"]);
        assert_eq!(
            message(f.check(&observer, Action::ReadPayload)),
            format!(
                "reading the payload of secret {ID} is not allowed now: source 10.1.2.3 is \
                 outside the allowed 192.168.0.0/16 (a condition of the secret's ACL)"
            )
        );
        // The creator is not bound by the ACL's conditions.
        assert_eq!(
            f.check(&principal("alice", "p1", &["creator"]), Action::ReadPayload),
            Ok(())
        );
    }

    #[test]
    fn no_roles_means_nothing() {
        let f = Fixture::new(Acl {
            users: [UserId::parse("dave").unwrap()].into(),
            ..Acl::default()
        });
        let dave = principal("dave", "p1", &[]);
        for action in [
            Action::ReadSecret,
            Action::ReadPayload,
            Action::ReadAcl,
            Action::DeleteSecret,
        ] {
            assert!(message(f.check(&dave, action)).contains("you have no roles"));
        }
    }
}
