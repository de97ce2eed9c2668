//! Commands, state and rules of the AccessKey aggregate.
//!
//! Who may create or revoke a key: an `admin` of the project for anyone in it (that is
//! how workload keys are provisioned); anyone else only for themselves, with roles
//! their own token has and no service but their own. So a key never carries more
//! than its creator could do, except when an admin made it.

use crate::Rejection;
use crate::access_key::AccessKeyId;
use crate::access_key::event::{AccessKeyCreated, AccessKeyEvent, AccessKeyRevoked};
use crate::ids::{KeyId, ProjectId, Role, ServiceName, UserId};
use crate::principal::Actor;
use crate::roles::ProjectRole;
use crate::secret::payload::SealedPayload;
use crate::subject::command;
use crate::timestamp::Timestamp;

/// What a create command carries: the principal the key stands for and its secret,
/// already sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateAccessKey {
    /// The user it acts as.
    pub user: UserId,
    /// The roles it carries.
    pub roles: Vec<Role>,
    /// The service it acts as.
    pub service: Option<ServiceName>,
    /// The sealed secret access key.
    pub secret: SealedPayload,
}

/// A command on an access key.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessKeyCommand {
    /// Create (or import) it.
    Create(Box<CreateAccessKey>),
    /// Revoke it and destroy its secret.
    Revoke,
}

impl AccessKeyCommand {
    /// The command's name, as in its subject `keyledger.cmd.<name>`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create(_) => command::ACCESS_KEY_CREATE,
            Self::Revoke => command::ACCESS_KEY_REVOKE,
        }
    }
}

/// A key that can sign requests.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessKey {
    /// The user it acts as.
    pub user: UserId,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Its service.
    pub service: Option<ServiceName>,
    /// Who created it.
    pub creator: UserId,
    /// Its sealed secret.
    pub secret: SealedPayload,
}

/// The lifecycle of an access key.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AccessKeyState {
    /// No such key (yet).
    #[default]
    Absent,
    /// Created and not revoked.
    Active(Box<AccessKey>),
    /// Revoked: its secret is destroyed, and its id is never used again.
    Revoked {
        /// What it was, for the audit trail.
        key: Box<AccessKey>,
        /// The data keys the revocation destroyed (destroyed again, harmlessly, when
        /// the revocation is repeated: the repair after a failed destroy).
        destroyed_keys: Vec<KeyId>,
    },
}

/// Folds one event into the state (total: an event that does not fit is ignored).
pub fn evolve(state: AccessKeyState, event: &AccessKeyEvent) -> AccessKeyState {
    match (state, event) {
        (AccessKeyState::Absent, AccessKeyEvent::Created(e)) => {
            AccessKeyState::Active(Box::new(AccessKey {
                user: e.user.clone(),
                roles: e.roles.clone(),
                service: e.service.clone(),
                creator: e.creator.clone(),
                secret: e.secret.clone(),
            }))
        }
        (AccessKeyState::Active(key), AccessKeyEvent::Revoked(e)) => AccessKeyState::Revoked {
            key,
            destroyed_keys: e.destroyed_keys.clone(),
        },
        (state, _) => state,
    }
}

/// What `decide` needs besides state and command.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The caller.
    pub actor: &'a Actor,
    /// The project the key belongs to.
    pub project: &'a ProjectId,
    /// The key's id.
    pub id: &'a AccessKeyId,
    /// The current time.
    pub now: Timestamp,
}

/// Whether the caller may send `command` to the key in `state`: a user of the key's
/// project, for a key of their own (with what their token has) or as its admin.
pub fn authorize(
    state: &AccessKeyState,
    command: &AccessKeyCommand,
    ctx: &Context<'_>,
) -> Result<(), Rejection> {
    let who = match ctx.actor {
        Actor::User(who) => who,
        Actor::System(system) => {
            return Err(Rejection::forbidden(format!(
                "{} is not a task of keyledger's {}",
                command.name(),
                system.system
            )));
        }
    };
    if &who.project != ctx.project {
        return Err(Rejection::forbidden(format!(
            "your token is for project {}; access keys of project {} are managed with a token \
             for that project",
            who.project, ctx.project
        )));
    }
    if who.is_admin() {
        return Ok(());
    }
    match (command, state) {
        (AccessKeyCommand::Create(create), _) => {
            if create.user != who.user {
                return Err(Rejection::forbidden(format!(
                    "only an admin of project {} creates access keys for other users; create \
                     one for yourself ({}) or ask an admin",
                    ctx.project, who.user
                )));
            }
            let missing: Vec<&str> = create
                .roles
                .iter()
                .filter(|r| !who.roles.contains(r))
                .map(Role::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(Rejection::forbidden(format!(
                    "an access key cannot carry roles your token does not have ({}); ask an \
                     admin of project {} for such a key",
                    missing.join(", "),
                    ctx.project
                )));
            }
            if create.service.is_some() && create.service != who.service {
                return Err(Rejection::forbidden(format!(
                    "only an admin of project {} or a token of service {} creates access keys \
                     for that service",
                    ctx.project,
                    create.service.as_ref().map_or("", ServiceName::as_str)
                )));
            }
            Ok(())
        }
        (
            AccessKeyCommand::Revoke,
            AccessKeyState::Active(key) | AccessKeyState::Revoked { key, .. },
        ) if key.user != who.user => {
            // Someone else's key, live or revoked: answered as if there were none, so
            // revoking probes nothing (creating an id does tell that it is taken).
            Err(not_found(ctx))
        }
        (AccessKeyCommand::Revoke, _) => Ok(()),
    }
}

fn not_found(ctx: &Context<'_>) -> Rejection {
    Rejection::not_found(format!(
        "access key {} not found in project {}; list your keys with `keyledger access-key \
         list`",
        ctx.id, ctx.project
    ))
}

/// Decides what `command` does to an access key in `state`. Pure.
pub fn decide(
    state: &AccessKeyState,
    command: &AccessKeyCommand,
    ctx: Context<'_>,
) -> Result<Vec<AccessKeyEvent>, Rejection> {
    authorize(state, command, &ctx)?;
    let Actor::User(who) = ctx.actor else {
        return Err(Rejection::internal("a system command passed authorization"));
    };
    match (command, state) {
        (AccessKeyCommand::Create(create), AccessKeyState::Absent) => {
            // The service admin's role reaches every project: a project's key never
            // carries it, whoever makes the key.
            if crate::quota::names_service_admin(&create.roles) {
                return Err(Rejection::forbidden(format!(
                    "an access key cannot carry the role {}, which acts on every project's \
                     quotas; leave it out",
                    crate::quota::SERVICE_ADMIN
                )));
            }
            if !create.roles.iter().any(|r| ProjectRole::of(r).is_some()) {
                return Err(Rejection::invalid(
                    "an access key needs at least one role keyledger's policy knows (admin, \
                     member, creator, observer, audit or reader); name them with roles",
                ));
            }
            Ok(vec![AccessKeyEvent::Created(Box::new(AccessKeyCreated {
                user: create.user.clone(),
                roles: create.roles.clone(),
                service: create.service.clone(),
                creator: who.user.clone(),
                secret: create.secret.clone(),
            }))])
        }
        (AccessKeyCommand::Create(_), _) => Err(Rejection::conflict(format!(
            "access key id {} exists (or existed) in project {}; an id is never reused: choose \
             another",
            ctx.id, ctx.project
        ))),
        (AccessKeyCommand::Revoke, AccessKeyState::Active(key)) => {
            Ok(vec![AccessKeyEvent::Revoked(AccessKeyRevoked {
                destroyed_keys: vec![key.secret.key_id],
            })])
        }
        // Revoking twice changes nothing.
        (AccessKeyCommand::Revoke, AccessKeyState::Revoked { .. }) => Ok(vec![]),
        (AccessKeyCommand::Revoke, AccessKeyState::Absent) => Err(not_found(&ctx)),
    }
}
