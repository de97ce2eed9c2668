//! Authorization: the one policy that both the command path and the read path apply.
//!
//! Barbican's policy per role name: its current secure-RBAC defaults for `admin`,
//! `member` and `reader`, its legacy policy for `creator`, `observer` and `audit`
//! (see [`crate::roles`]), plus per-object ACLs. Where keyledger is stricter than
//! Barbican it is on purpose and safer; docs/access-control.md ("Deliberate divergences from Barbican") lists each
//! divergence. A [`Denial`] names the action, the project, the roles that would allow
//! it and the roles the caller has.
//!
//! On a secret or container of the caller's project, a role reaches an action on
//! every object ([`Reach::Any`]), on those it created or that are not private
//! ([`Reach::OwnOrShared`]), only on those not private ([`Reach::Shared`]), or only
//! on its own ([`Reach::Own`]):
//!
//! | action | admin | member | creator | observer | audit | reader |
//! |---|---|---|---|---|---|---|
//! | create (secrets, containers, orders) | yes | yes | yes | – | – | – |
//! | list (secrets, containers, orders) | yes | yes | yes | yes | – | – |
//! | read metadata (secret, container) | any | own or shared | own or shared | shared | shared | – |
//! | read payload | any | own or shared | own or shared | shared | – | – |
//! | change (payload, metadata, references) | any | own or shared | own or shared | – | – | – |
//! | delete a secret | any | own or shared | own or shared | – | – | – |
//! | delete a container | any | own or shared | own | – | – | – |
//! | read ACL | any | own | own or shared | shared | – | – |
//! | change ACL | any | own | own or shared | – | – | – |
//! | read an order | any | any | any | any | any | – |
//! | delete an order | any | any | – | – | – | – |
//! | read the project's history | yes | – | – | – | yes | – |
//!
//! A user on an object's read ACL, from any project, may read its metadata with any
//! of these roles and its payload with any but `audit`.
//!
//! A managed secret (one with an owning service) can be changed, deleted or have its
//! ACL changed only by a token of that service, whatever its roles; see [`managed_by`].
//!
//! "Admin" always means admin of the object's own project. The ACL's conditions
//! restrict grants made through project access and through the ACL's user list, not
//! what an object's creator or the admins may do.

use std::fmt;
use std::net::IpAddr;

use crate::Rejection;
use crate::ids::{ContainerId, OrderId, ProjectId, Role, SecretId, ServiceName, UserId};
use crate::principal::Principal;
use crate::roles::{ProjectRole, effective, either};
use crate::secret::acl::{Acl, ConditionFailure};
use crate::timestamp::Timestamp;

use ProjectRole::{Admin, Audit, Creator, Member, Observer, Reader};

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

/// Which objects of its project a role reaches for an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every object.
    Any,
    /// Those the caller created, and those not private (project access on).
    OwnOrShared,
    /// Those not private.
    Shared,
    /// Those the caller created.
    Own,
}

/// The roles, weakest first: the order in which messages name them.
const WEAKEST_FIRST: [ProjectRole; 6] = [Reader, Audit, Observer, Member, Creator, Admin];

impl Action {
    /// Whether `role` may do this project-wide action (create, list, read history).
    fn in_project(self, role: ProjectRole) -> bool {
        match self {
            Self::CreateSecret | Self::CreateContainer | Self::CreateOrder => {
                matches!(role, Admin | Member | Creator)
            }
            Self::ListSecrets | Self::ListContainers | Self::ListOrders => {
                matches!(role, Admin | Member | Creator | Observer)
            }
            Self::ReadAudit => matches!(role, Admin | Audit),
            _ => false,
        }
    }

    /// Which objects of kind `kind` in its project `role` reaches for this action.
    fn reach(self, role: ProjectRole, kind: Kind) -> Option<Reach> {
        use Reach::{Any, Own, OwnOrShared, Shared};
        if role == Admin {
            return Some(Any);
        }
        if kind == Kind::Order {
            // Orders have no owner or ACL that Barbican's rules consult.
            return match self {
                Self::ReadSecret => {
                    matches!(role, Member | Creator | Observer | Audit).then_some(Any)
                }
                Self::DeleteSecret => (role == Member).then_some(Any),
                _ => None,
            };
        }
        match (self, role) {
            (Self::ReadSecret, Member | Creator) => Some(OwnOrShared),
            (Self::ReadSecret, Observer | Audit) => Some(Shared),
            (Self::ReadPayload, Member | Creator) => Some(OwnOrShared),
            (Self::ReadPayload, Observer) => Some(Shared),
            (Self::UpdateSecret, Member | Creator) => Some(OwnOrShared),
            (Self::DeleteSecret, Member) => Some(OwnOrShared),
            (Self::DeleteSecret, Creator) if kind == Kind::Container => Some(Own),
            (Self::DeleteSecret, Creator) => Some(OwnOrShared),
            (Self::ReadAcl | Self::ChangeAcl, Member) => Some(Own),
            (Self::ReadAcl | Self::ChangeAcl, Creator) => Some(OwnOrShared),
            (Self::ReadAcl, Observer) => Some(Shared),
            _ => None,
        }
    }

    /// Whether a user on the object's read ACL with `role` (in their own project) may
    /// do this.
    fn via_acl(self, role: ProjectRole) -> bool {
        match self {
            Self::ReadSecret => true,
            Self::ReadPayload => role != Audit,
            _ => false,
        }
    }

    /// The roles that allow the action somewhere (on some object of `kind`, or
    /// project-wide), weakest first, for messages.
    fn allowing(self, kind: Option<Kind>) -> Vec<ProjectRole> {
        WEAKEST_FIRST
            .into_iter()
            .filter(|r| match kind {
                None => self.in_project(*r),
                Some(kind) => self.reach(*r, kind).is_some(),
            })
            .collect()
    }

    /// The roles with which a user on the ACL may do it, for messages.
    fn acl_roles(self) -> Vec<ProjectRole> {
        WEAKEST_FIRST
            .into_iter()
            .filter(|r| self.via_acl(*r))
            .collect()
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

/// The kinds of [`Object`], for the rules that tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Secrets.
    Secret,
    /// Containers.
    Container,
    /// Orders.
    Order,
}

impl Object {
    /// `secret`, `container` or `order`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Secret(_) => "secret",
            Self::Container(_) => "container",
            Self::Order(_) => "order",
        }
    }

    fn of_kind(self) -> Kind {
        match self {
            Self::Secret(_) => Kind::Secret,
            Self::Container(_) => Kind::Container,
            Self::Order(_) => Kind::Order,
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

/// Whether every role that may `list` objects of `kind` in their project may read the
/// metadata of one with `acl` through its roles alone (not as its creator, nor named
/// in its ACL): then any of the project's listers may learn of it. This is what
/// decides whether a change of it is announced on the project's NATS subjects, which
/// every lister may subscribe to.
pub fn read_by_every_lister(list: Action, kind: Kind, acl: &crate::secret::acl::Acl) -> bool {
    WEAKEST_FIRST
        .into_iter()
        .filter(|r| list.in_project(*r))
        .all(|r| match Action::ReadSecret.reach(r, kind) {
            Some(Reach::Any) => true,
            Some(Reach::Shared | Reach::OwnOrShared) => {
                acl.project_access && acl.conditions.is_empty()
            }
            Some(Reach::Own) | None => false,
        })
}

/// Whether `who` may `list` (a listing action) in its own project.
pub fn lists(who: &Principal, list: Action) -> bool {
    effective(&who.roles).iter().any(|r| list.in_project(*r))
}

/// The roles that let a member of an object's project do `action` on an object of
/// `kind` that is shared with the project (project access on) and that they did not
/// create, weakest first; admins, who reach every object, are left out.
pub fn shared_roles(action: Action, kind: Kind) -> Vec<ProjectRole> {
    WEAKEST_FIRST
        .into_iter()
        .filter(|r| {
            matches!(
                action.reach(*r, kind),
                Some(Reach::Shared | Reach::OwnOrShared)
            )
        })
        .collect()
}

/// The roles that let the creator of an object of `kind` do `action` on it whatever
/// its ACL says, weakest first; admins are left out.
pub fn creator_roles(action: Action, kind: Kind) -> Vec<ProjectRole> {
    WEAKEST_FIRST
        .into_iter()
        .filter(|r| {
            matches!(
                action.reach(*r, kind),
                Some(Reach::Own | Reach::OwnOrShared)
            )
        })
        .collect()
}

/// The roles, admins left out, that reach no object of `kind` in their project
/// through project access, not even its metadata, weakest first.
pub fn unshared_roles(kind: Kind) -> Vec<ProjectRole> {
    WEAKEST_FIRST
        .into_iter()
        .filter(|r| *r != Admin && Action::ReadSecret.reach(*r, kind).is_none())
        .collect()
}

/// The roles with which a user on an object's ACL, from any project, may do
/// `action`, weakest first.
pub fn acl_roles(action: Action) -> Vec<ProjectRole> {
    action.acl_roles()
}

/// Allows `action` on `target`, or says why not. Deny by default: every grant below is
/// explicit.
pub fn authorize(
    who: &Principal,
    action: Action,
    target: Target<'_>,
    env: RequestEnv,
) -> Result<(), Denial> {
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
) -> Result<(), Denial> {
    if &who.project != project {
        return Err(Denial::other_project(who, action, project, secret));
    }
    let kind = secret.map(Object::of_kind);
    let roles = effective(&who.roles);
    let allowed = match kind {
        // Acting on an object that does not exist (yet): the roles that could act on
        // some object of the kind go on, and learn that it does not.
        Some(kind) => roles.iter().any(|r| action.reach(*r, kind).is_some()),
        None => roles.iter().any(|r| action.in_project(*r)),
    };
    if allowed {
        return Ok(());
    }
    Err(Denial::Roles {
        action,
        object: secret,
        project: project.clone(),
        or_acl: false,
        roles: who.roles.clone(),
    })
}

fn authorize_on_secret(
    who: &Principal,
    action: Action,
    secret: SecretFacts<'_>,
    env: RequestEnv,
) -> Result<(), Denial> {
    let same = &who.project == secret.project;
    if !same && !secret.acl.lists(&who.user) {
        return Err(Denial::other_project(
            who,
            action,
            secret.project,
            Some(secret.id),
        ));
    }
    if let Some(service) = secret.owning_service
        && action.is_write()
        && who.service.as_ref() != Some(service)
    {
        return Err(Denial::ManagedBy(service.clone()));
    }
    let kind = secret.id.of_kind();
    let roles = effective(&who.roles);
    let acl = secret.acl;
    let own = &who.user == secret.creator;
    // What the caller's roles in the object's project reach. A grant to everything,
    // or to the caller's own object, holds whatever the ACL's conditions say; one
    // through project access is bound by them.
    let reaches: Vec<Reach> = if same {
        roles
            .iter()
            .filter_map(|r| action.reach(*r, kind))
            .collect()
    } else {
        Vec::new()
    };
    let unconditional = reaches.iter().any(|r| match r {
        Reach::Any => true,
        Reach::Own | Reach::OwnOrShared => own,
        Reach::Shared => false,
    });
    if unconditional {
        return Ok(());
    }
    let via_project = acl.project_access
        && reaches
            .iter()
            .any(|r| matches!(r, Reach::OwnOrShared | Reach::Shared));
    let listed = acl.lists(&who.user);
    let via_acl = listed && roles.iter().any(|r| action.via_acl(*r));
    if via_project || via_acl {
        if action.is_read() {
            acl.conditions
                .check(env.source, env.now)
                .map_err(|failed| Denial::Condition {
                    action,
                    object: secret.id,
                    failed,
                })?;
        }
        return Ok(());
    }
    let project = secret.project.clone();
    Err(if listed && action.is_read() {
        Denial::AclRoles {
            action,
            object: secret.id,
            roles: who.roles.clone(),
        }
    } else if !same {
        Denial::other_project(who, action, &project, Some(secret.id))
    } else if !reaches.is_empty() {
        let creator_only = reaches.iter().all(|r| *r == Reach::Own);
        Denial::Owners {
            action,
            object: secret.id,
            project,
            creator: secret.creator.clone(),
            user: who.user.clone(),
            private: !creator_only,
        }
    } else {
        Denial::Roles {
            action,
            object: Some(secret.id),
            project,
            or_acl: action.is_read(),
            roles: who.roles.clone(),
        }
    })
}

/// The refusal of a change to a managed secret by anyone but its service. The same
/// words on every path (NATS and HTTP), as AWS words it.
pub fn managed_by(service: &ServiceName) -> Rejection {
    Denial::ManagedBy(service.clone()).into()
}

/// Why the policy refused an action: what it takes, and what the caller has. Its
/// [`Display`](fmt::Display) is the one place the policy's words live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The caller's roles in the project do not allow the action.
    Roles {
        /// What was attempted.
        action: Action,
        /// On what, if on one object.
        object: Option<Object>,
        /// The project it is in.
        project: ProjectId,
        /// Whether being on the object's ACL would also allow it.
        or_acl: bool,
        /// The caller's roles.
        roles: Vec<Role>,
    },
    /// The caller's token is for another project, and nothing grants it across.
    OtherProject {
        /// What was attempted.
        action: Action,
        /// On what, if on one object.
        object: Option<Object>,
        /// The project it is in.
        project: ProjectId,
        /// The project the caller's token is for.
        token_project: ProjectId,
    },
    /// The caller is on the object's ACL, but its roles do not read through it.
    AclRoles {
        /// What was attempted.
        action: Action,
        /// On what.
        object: Object,
        /// The caller's roles.
        roles: Vec<Role>,
    },
    /// With the caller's roles only the object's owners reach it: its creator and the
    /// project's admins (and for reads of a private object, the users on its ACL).
    Owners {
        /// What was attempted.
        action: Action,
        /// On what.
        object: Object,
        /// The project it is in.
        project: ProjectId,
        /// Its creator.
        creator: UserId,
        /// The caller.
        user: UserId,
        /// Whether the object is private (project access off); otherwise the caller's
        /// roles reach only objects they created.
        private: bool,
    },
    /// A condition of the object's ACL failed.
    Condition {
        /// What was attempted.
        action: Action,
        /// On what.
        object: Object,
        /// Which condition, and how.
        failed: ConditionFailure,
    },
    /// A managed secret, changed by someone other than its service.
    ManagedBy(ServiceName),
}

impl Denial {
    /// The denial for a caller from another project who is not on the object's ACL:
    /// the same words whether the object exists or not, so it tells nobody outside
    /// the project what the project holds.
    fn other_project(
        who: &Principal,
        action: Action,
        project: &ProjectId,
        object: Option<Object>,
    ) -> Self {
        Self::OtherProject {
            action,
            object,
            project: project.clone(),
            token_project: who.project.clone(),
        }
    }
}

/// "you have admin, member", or "you have no roles".
struct Have<'a>(&'a [Role]);

impl fmt::Display for Have<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("you have no roles");
        }
        let names: Vec<_> = self.0.iter().map(|r| r.as_str()).collect();
        write!(f, "you have {}", names.join(", "))
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Roles {
                action,
                object,
                project,
                or_acl,
                roles,
            } => {
                let needed = either(&action.allowing(object.map(Object::of_kind)));
                let or_acl = if *or_acl { ", or being on its ACL" } else { "" };
                write!(
                    f,
                    "{} in project {project} requires role {needed}{or_acl}; {}",
                    action.describe(*object),
                    Have(roles)
                )
            }
            Self::OtherProject {
                action,
                object,
                project,
                token_project,
            } => {
                let needed = either(&action.allowing(object.map(Object::of_kind)));
                let (or_acl, hint) = match (object.is_some(), action.is_read()) {
                    (false, _) => ("", ""),
                    (true, true) => (", or being on its ACL", ""),
                    (true, false) => (
                        "",
                        " (a secret or container shared with you through its ACL can be read, \
                         not changed)",
                    ),
                };
                write!(
                    f,
                    "{} in project {project} requires role {needed} in project \
                     {project}{or_acl}; your token is for project {token_project}{hint}",
                    action.describe(*object)
                )
            }
            Self::AclRoles {
                action,
                object,
                roles,
            } => write!(
                f,
                "{}: you are on its ACL, but that also requires role {}; {}",
                action.describe(Some(*object)),
                either(&action.acl_roles()),
                Have(roles)
            ),
            Self::Owners {
                action,
                object,
                project,
                creator,
                user,
                private,
            } => {
                let what = action.describe(Some(*object));
                let verb = if action.is_write() { "change" } else { "read" };
                if !private {
                    return write!(
                        f,
                        "{what}: with your roles only its creator ({creator}) and admins of \
                         project {project} may {verb} it; you are {user}"
                    );
                }
                let who_may = if action.is_read() {
                    format!(
                        "its creator ({creator}), admins of project {project} and users on its \
                         ACL"
                    )
                } else {
                    format!("its creator ({creator}) and admins of project {project}")
                };
                write!(
                    f,
                    "{what}: the {} is private (project-access is false), so only {who_may} may \
                     {verb} it; you are {user}",
                    object.kind()
                )
            }
            Self::Condition {
                action,
                object,
                failed,
            } => write!(
                f,
                "{} is not allowed now: {failed} (a condition of the {}'s ACL)",
                action.describe(Some(*object)),
                object.kind()
            ),
            Self::ManagedBy(service) => write!(
                f,
                "This secret is managed by {service}; use that service to update it"
            ),
        }
    }
}

impl std::error::Error for Denial {}

impl From<Denial> for Rejection {
    fn from(denial: Denial) -> Self {
        Rejection::forbidden(denial.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
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
            authorize(who, action, Target::Secret(facts), env()).map_err(Rejection::from)
        }
    }

    fn message<E: Into<Rejection> + fmt::Debug>(r: Result<(), E>) -> String {
        let r: Rejection = r.unwrap_err().into();
        assert_eq!(r.code, ErrorCode::Forbidden);
        r.message
    }

    const ID: &str = "00000000-0000-0000-0000-000000000007";

    /// What the audit CLI tells an auditor about who could read a secret comes from
    /// these; they must say what `authorize` decides.
    #[test]
    fn every_lister_reads_a_shared_object_and_not_a_private_one() {
        use crate::secret::acl::Acl;
        let shared = Acl::default();
        let private = Acl {
            project_access: false,
            ..Acl::default()
        };
        for (list, kind) in [
            (Action::ListSecrets, Kind::Secret),
            (Action::ListContainers, Kind::Container),
        ] {
            assert!(read_by_every_lister(list, kind, &shared));
            assert!(!read_by_every_lister(list, kind, &private));
        }
        // Orders have no ACL: their project's listers read every one.
        assert!(read_by_every_lister(
            Action::ListOrders,
            Kind::Order,
            &private
        ));
    }

    #[test]
    fn the_role_lists_match_the_table_above() {
        use ProjectRole::*;
        assert_eq!(
            shared_roles(Action::ReadPayload, Kind::Secret),
            [Observer, Member, Creator]
        );
        assert_eq!(
            shared_roles(Action::ReadSecret, Kind::Secret),
            [Audit, Observer, Member, Creator]
        );
        assert_eq!(
            creator_roles(Action::ReadPayload, Kind::Secret),
            [Member, Creator]
        );
        assert_eq!(unshared_roles(Kind::Secret), [Reader]);
        assert_eq!(
            acl_roles(Action::ReadPayload),
            [Reader, Observer, Member, Creator, Admin]
        );
    }

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
            "creating a secret in project p1 requires role member, creator or admin; you have observer"
        );
        let member = principal("bob", "p1", &["member"]);
        assert_eq!(
            authorize(&member, Action::CreateSecret, target, env()),
            Ok(())
        );
        let other = principal("bob", "p2", &["admin"]);
        assert_eq!(
            message(authorize(&other, Action::CreateSecret, target, env())),
            "creating a secret in project p1 requires role member, creator or admin in project p1; \
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
                "reading the payload of secret {ID} in project p1 requires role observer, member, \
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
                "deleting secret {ID} in project p1 requires role member, creator or admin in project \
                 p1; your token is for project p2 (a secret or container shared with you through its ACL can \
                 be read, not changed)"
            )
        );
        // A reader on the ACL reads the payload too (Barbican's current default);
        // audit never does.
        let carol_reader = principal("carol", "p2", &["reader"]);
        assert_eq!(f.check(&carol_reader, Action::ReadPayload), Ok(()));
        let carol_audit = principal("carol", "p2", &["audit"]);
        assert_eq!(
            message(f.check(&carol_audit, Action::ReadPayload)),
            format!(
                "reading the payload of secret {ID}: you are on its ACL, but that also \
                 requires role reader, observer, member, creator or admin; you have audit"
            )
        );
    }

    #[test]
    fn member_and_creator_differ_where_barbican_does() {
        let shared = Fixture::new(Acl::default());
        let bob_member = principal("bob", "p1", &["member"]);
        let bob_creator = principal("bob", "p1", &["creator"]);
        // Both change and delete the project's non-private secrets...
        for who in [&bob_member, &bob_creator] {
            assert_eq!(shared.check(who, Action::UpdateSecret), Ok(()));
            assert_eq!(shared.check(who, Action::DeleteSecret), Ok(()));
        }
        // ...but only the legacy creator reads and changes another's ACL.
        assert_eq!(shared.check(&bob_creator, Action::ChangeAcl), Ok(()));
        assert_eq!(
            message(shared.check(&bob_member, Action::ChangeAcl)),
            format!(
                "changing the ACL of secret {ID}: with your roles only its creator (alice) and \
                 admins of project p1 may change it; you are bob"
            )
        );
        let alice_member = principal("alice", "p1", &["member"]);
        assert_eq!(shared.check(&alice_member, Action::ChangeAcl), Ok(()));
        // A container: the legacy creator deletes only its own.
        let container = SecretFacts {
            id: ContainerId::from_uuid(Uuid::from_u128(8)).into(),
            project: &shared.project,
            creator: &shared.creator,
            acl: &shared.acl,
            owning_service: None,
        };
        let delete = |who: &Principal| {
            authorize(who, Action::DeleteSecret, Target::Secret(container), env())
        };
        assert_eq!(delete(&bob_member), Ok(()));
        assert!(message(delete(&bob_creator)).contains("only its creator (alice)"));
    }

    #[test]
    fn reader_and_audit_list_nothing_and_reader_reads_only_through_the_acl() {
        let p1 = ProjectId::parse("p1").unwrap();
        let project = Target::Project {
            project: &p1,
            secret: None,
        };
        for role in ["reader", "audit"] {
            let who = principal("rita", "p1", &[role]);
            assert_eq!(
                message(authorize(&who, Action::ListSecrets, project, env())),
                format!(
                    "listing secrets in project p1 requires role observer, member, creator or \
                     admin; you have {role}"
                )
            );
        }
        let shared = Fixture::new(Acl::default());
        let rita = principal("rita", "p1", &["reader"]);
        assert!(shared.check(&rita, Action::ReadSecret).is_err());
        let listed = Fixture::new(Acl {
            users: [UserId::parse("rita").unwrap()].into(),
            ..Acl::default()
        });
        assert_eq!(listed.check(&rita, Action::ReadSecret), Ok(()));
        assert_eq!(listed.check(&rita, Action::ReadPayload), Ok(()));
        assert!(listed.check(&rita, Action::UpdateSecret).is_err());
    }

    #[test]
    fn orders_are_read_by_the_project_and_deleted_by_members_and_admins() {
        let p1 = ProjectId::parse("p1").unwrap();
        let alice = UserId::parse("alice").unwrap();
        let acl = Acl::default();
        let order = SecretFacts {
            id: Object::Order(OrderId::from_uuid(Uuid::from_u128(9))),
            project: &p1,
            creator: &alice,
            acl: &acl,
            owning_service: None,
        };
        let may = |role: &str, action| {
            authorize(
                &principal("alice", "p1", &[role]),
                action,
                Target::Secret(order),
                env(),
            )
            .is_ok()
        };
        for role in ["admin", "member", "creator", "observer", "audit"] {
            assert!(may(role, Action::ReadSecret), "{role}");
        }
        assert!(!may("reader", Action::ReadSecret));
        assert!(may("member", Action::DeleteSecret));
        // Barbican's legacy rule: only admins delete orders, even the creator's own.
        assert!(!may("creator", Action::DeleteSecret));
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
