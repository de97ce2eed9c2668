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

impl Principal {
    /// Whether a role of the token is `admin` (of the token's project).
    pub fn is_admin(&self) -> bool {
        self.roles
            .iter()
            .any(|r| crate::roles::ProjectRole::of(r) == Some(crate::roles::ProjectRole::Admin))
    }
}

/// A task keyledger itself runs, not on anyone's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemTask {
    /// The lifecycle scheduler: expiring secrets, purging deletions whose recovery
    /// window has ended, destroying deprecated versions.
    Scheduler,
    /// The order worker: generating keys and certificates, and storing them.
    OrderWorker,
    /// The rotation runner: starting scheduled rotations and recording each step.
    Rotator,
    /// KEK rotation: `keyledger keys rotate-kek`, `rewrap` and `retire-kek`.
    KekRotation,
}

impl std::fmt::Display for SystemTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Scheduler => "scheduler",
            Self::OrderWorker => "order worker",
            Self::Rotator => "rotation runner",
            Self::KekRotation => "kek rotation",
        })
    }
}

/// Who issued a command, as the commit records it.
///
/// A user's commit records the principal from their verified token. keyledger's own
/// tasks record `{"system": "<task>"}`. No token can produce that shape, so nobody can
/// act as the system or pose as it in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Actor {
    /// keyledger itself.
    System(SystemActor),
    /// A caller with a verified token.
    User(Principal),
}

/// The JSON shape of a system actor: `{"system": "scheduler"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemActor {
    /// The task.
    pub system: SystemTask,
}

impl Actor {
    /// The scheduler.
    pub fn scheduler() -> Self {
        Self::System(SystemActor {
            system: SystemTask::Scheduler,
        })
    }

    /// The order worker.
    pub fn order_worker() -> Self {
        Self::System(SystemActor {
            system: SystemTask::OrderWorker,
        })
    }

    /// The rotation runner.
    pub fn rotator() -> Self {
        Self::System(SystemActor {
            system: SystemTask::Rotator,
        })
    }

    /// KEK rotation.
    pub fn kek_rotation() -> Self {
        Self::System(SystemActor {
            system: SystemTask::KekRotation,
        })
    }

    /// Whether `other` is the same caller: the same user, project and service (roles
    /// may differ between two of their tokens), or the same task of keyledger's.
    pub fn same_caller(&self, other: &Actor) -> bool {
        match (self, other) {
            (Self::User(a), Self::User(b)) => {
                a.user == b.user && a.project == b.project && a.service == b.service
            }
            (Self::System(a), Self::System(b)) => a.system == b.system,
            _ => false,
        }
    }

    /// The principal, for a user's command.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Self::User(p) => Some(p),
            Self::System(_) => None,
        }
    }
}

impl From<Principal> for Actor {
    fn from(p: Principal) -> Self {
        Self::User(p)
    }
}
