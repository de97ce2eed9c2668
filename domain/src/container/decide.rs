//! Commands, state and rules of the Container aggregate.

use std::collections::{BTreeMap, BTreeSet};

use crate::Rejection;
use crate::container::event::{
    ConsumerChanged, ContainerCreated, ContainerDeleted, ContainerEvent, ContainerSecretAdded,
    ContainerSecretRemoved,
};
use crate::container::{ContainerType, RefName, SecretRef, validate_refs};
use crate::ids::{ContainerId, ProjectId, SecretId, UserId};
use crate::policy;
use crate::policy::{Action, Object, RequestEnv, SecretFacts, Target};
use crate::principal::{Actor, Principal, SystemTask};
use crate::secret::acl::{Acl, AclChange};
use crate::secret::fields::SecretName;
use crate::secret::{AclSet, SecretState};
use crate::subject::command;
use crate::timestamp::Timestamp;

/// Create a container (Barbican `POST /v1/containers`).
#[derive(Debug, Clone, PartialEq)]
pub struct CreateContainer {
    /// Its name.
    pub name: Option<SecretName>,
    /// Its type.
    pub kind: ContainerType,
    /// Its references.
    pub refs: Vec<SecretRef>,
}

/// A consumer: a service using the container, Barbican's `{name, URL}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Consumer {
    /// Its name.
    pub name: String,
    /// Where it uses the container.
    pub url: String,
}

impl Consumer {
    /// Parses a consumer: name 1 to 255 characters, URL 1 to 2048, no control
    /// characters.
    pub fn parse(name: &str, url: &str) -> Result<Self, Rejection> {
        Ok(Self {
            name: crate::secret::fields::bounded_text("consumer name", name, 255)?,
            url: crate::secret::fields::bounded_text("consumer URL", url, 2048)?,
        })
    }
}

/// Everything that can be asked of a container.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerCommand {
    /// Create it.
    Create(Box<CreateContainer>),
    /// Create it for an order, owned by the order's creator (the order worker's).
    CreateForOrder {
        /// What to create.
        create: Box<CreateContainer>,
        /// The user who placed the order.
        creator: UserId,
    },
    /// Add a reference (generic containers).
    AddSecret(SecretRef),
    /// Remove a reference (generic containers).
    RemoveSecret {
        /// Its name.
        name: RefName,
        /// The secret.
        secret_id: SecretId,
    },
    /// Register a consumer.
    RegisterConsumer(Consumer),
    /// Unregister a consumer.
    RemoveConsumer(Consumer),
    /// Change its read ACL.
    SetAcl(AclChange),
    /// Delete it; with consumers registered only when forced.
    Delete {
        /// Delete even though consumers are registered.
        force: bool,
    },
}

impl ContainerCommand {
    /// The command's name, as in its subject `keyledger.cmd.<name>`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create(_) | Self::CreateForOrder { .. } => command::CONTAINER_CREATE,
            Self::AddSecret(_) => command::CONTAINER_SECRET_ADD,
            Self::RemoveSecret { .. } => command::CONTAINER_SECRET_REMOVE,
            Self::RegisterConsumer(_) => command::CONTAINER_CONSUMER_REGISTER,
            Self::RemoveConsumer(_) => command::CONTAINER_CONSUMER_REMOVE,
            Self::SetAcl(AclChange::Reset) => command::CONTAINER_ACL_DELETE,
            Self::SetAcl(_) => command::CONTAINER_ACL_SET,
            Self::Delete { .. } => command::CONTAINER_DELETE,
        }
    }

    /// The references the command adds, which the caller must be able to read.
    pub fn new_refs(&self) -> &[SecretRef] {
        match self {
            Self::Create(c) => &c.refs,
            // The order worker references the secrets it just created.
            Self::CreateForOrder { .. } => &[],
            Self::AddSecret(r) => std::slice::from_ref(r),
            _ => &[],
        }
    }
}

/// A live container.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// Its name.
    pub name: Option<SecretName>,
    /// Its type.
    pub kind: ContainerType,
    /// Its references, in order.
    pub refs: Vec<SecretRef>,
    /// Who created it.
    pub creator: UserId,
    /// Who may read it.
    pub acl: Acl,
    /// Services using it.
    pub consumers: BTreeSet<Consumer>,
}

/// The lifecycle of a container.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ContainerState {
    /// No such container (yet).
    #[default]
    Absent,
    /// Created and not deleted.
    Live(Box<Container>),
    /// Deleted.
    Deleted,
}

/// Folds one event into the state (total, like the secret's `evolve`).
pub fn evolve(state: ContainerState, event: &ContainerEvent) -> ContainerState {
    let mut c = match (state, event) {
        (ContainerState::Absent, ContainerEvent::Created(e)) => {
            return ContainerState::Live(Box::new(Container {
                name: e.name.clone(),
                kind: e.kind,
                refs: e.secret_refs.clone(),
                creator: e.creator.clone(),
                acl: Acl::default(),
                consumers: BTreeSet::new(),
            }));
        }
        (ContainerState::Live(c), _) => c,
        (state, _) => return state,
    };
    match event {
        ContainerEvent::Created(_) => {}
        ContainerEvent::SecretAdded(e) => c.refs.push(e.secret_ref.clone()),
        ContainerEvent::SecretRemoved(e) => c
            .refs
            .retain(|r| !(r.name == e.name && r.secret_id == e.secret_id)),
        ContainerEvent::ConsumerRegistered(e) => {
            c.consumers.insert(Consumer {
                name: e.name.clone(),
                url: e.url.clone(),
            });
        }
        ContainerEvent::ConsumerRemoved(e) => {
            c.consumers
                .retain(|k| !(k.name == e.name && k.url == e.url));
        }
        ContainerEvent::AclSet(e) => c.acl = e.read.clone(),
        ContainerEvent::Deleted(_) => return ContainerState::Deleted,
    }
    ContainerState::Live(c)
}

/// The outcome of checking each secret a command references: whether the caller may
/// reference it. The handler loads the secrets and runs [`check_ref`]; `decide` reads
/// the results.
pub type RefChecks = BTreeMap<SecretId, Result<(), Rejection>>;

/// Whether `who` may put the secret of `r` in a container: it must exist, be live
/// (not expired, not scheduled for deletion) and be readable by `who`.
pub fn check_ref(
    who: &Principal,
    r: &SecretRef,
    state: &SecretState,
    now: Timestamp,
) -> Result<(), Rejection> {
    // As Barbican: a reference to a secret that is not there is a 404; one to a
    // secret in the wrong state (expired, going away) conflicts with it (409).
    let not_found = || {
        Rejection::not_found(format!(
            "secret_refs {:?} names secret {} in project {}, which does not exist (or no \
             longer does: deleted or expired); name a live secret",
            r.name.as_str(),
            r.secret_id,
            r.project
        ))
    };
    let SecretState::Live(secret) = state else {
        return Err(not_found());
    };
    let facts = SecretFacts {
        id: r.secret_id.into(),
        project: &r.project,
        creator: &secret.creator,
        acl: &secret.acl,
        owning_service: secret.owning_service.as_ref(),
    };
    let env = RequestEnv { source: None, now };
    policy::authorize(who, Action::ReadSecret, Target::Secret(facts), env).map_err(|denied| {
        Rejection::forbidden(format!("secret_refs {:?}: {denied}", r.name.as_str()))
    })?;
    if let Some(exp) = secret.attributes.expiration
        && exp.has_passed(now)
    {
        return Err(Rejection::conflict(format!(
            "secret_refs {:?} names secret {}, which expired at {}; store a renewed secret \
             and reference it",
            r.name.as_str(),
            r.secret_id,
            exp.at()
        )));
    }
    if let Some(at) = secret.purge_at {
        // From the window's end it is deleted, whether or not its purge has landed.
        if now >= at {
            return Err(Rejection::not_found(format!(
                "secret_refs {:?} names secret {}, whose recovery window ended at {at}: it \
                 is deleted",
                r.name.as_str(),
                r.secret_id
            )));
        }
        return Err(Rejection::conflict(format!(
            "secret_refs {:?} names secret {}, which is scheduled for deletion on {at}",
            r.name.as_str(),
            r.secret_id
        )));
    }
    Ok(())
}

/// What `decide` needs besides state and command.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The caller.
    pub actor: &'a Actor,
    /// The project that owns the container.
    pub project: &'a ProjectId,
    /// The container's id.
    pub id: ContainerId,
    /// The current time.
    pub now: Timestamp,
    /// The checks of the secrets the command references.
    pub refs: &'a RefChecks,
}

impl Context<'_> {
    fn not_found(&self) -> Rejection {
        Rejection::not_found(format!(
            "container {} not found in project {}",
            self.id, self.project
        ))
    }

    fn live<'s>(&self, state: &'s ContainerState) -> Result<&'s Container, Rejection> {
        match state {
            ContainerState::Live(c) => Ok(c),
            _ => Err(self.not_found()),
        }
    }
}

fn action_of(command: &ContainerCommand) -> Action {
    match command {
        ContainerCommand::Create(_) | ContainerCommand::CreateForOrder { .. } => {
            Action::CreateContainer
        }
        ContainerCommand::AddSecret(_) | ContainerCommand::RemoveSecret { .. } => {
            Action::UpdateSecret
        }
        // Declaring a use needs what the use needs: reading the container.
        ContainerCommand::RegisterConsumer(_) | ContainerCommand::RemoveConsumer(_) => {
            Action::ReadSecret
        }
        ContainerCommand::SetAcl(_) => Action::ChangeAcl,
        ContainerCommand::Delete { .. } => Action::DeleteSecret,
    }
}

/// Decides what `command` does to a container in `state`. Pure.
/// Allows the command for the actor, or says why not: the order worker runs its own
/// steps only, principals go through the policy and the reference checks.
pub fn authorize(
    state: &ContainerState,
    command: &ContainerCommand,
    ctx: &Context<'_>,
) -> Result<(), Rejection> {
    match (ctx.actor, command) {
        (Actor::System(system), ContainerCommand::CreateForOrder { .. })
            if system.system == SystemTask::OrderWorker =>
        {
            Ok(())
        }
        (Actor::System(system), _) => Err(Rejection::forbidden(format!(
            "{} is not a task of keyledger's {}",
            command.name(),
            system.system
        ))),
        (Actor::User(_), ContainerCommand::CreateForOrder { .. }) => Err(Rejection::forbidden(
            "containers for orders are created by keyledger's order worker only",
        )),
        (Actor::User(who), _) => authorize_user(who, state, command, ctx),
    }
}

/// Decides what `command` does to a container in `state`. Pure.
pub fn decide(
    state: &ContainerState,
    command: &ContainerCommand,
    ctx: Context<'_>,
) -> Result<Vec<ContainerEvent>, Rejection> {
    authorize(state, command, &ctx)?;
    let creator = match (ctx.actor, command) {
        (_, ContainerCommand::CreateForOrder { creator, .. }) => creator,
        (Actor::User(who), _) => &who.user,
        (Actor::System(_), _) => {
            return Err(Rejection::internal("a system command passed authorization"));
        }
    };
    Ok(match command {
        ContainerCommand::Create(create) | ContainerCommand::CreateForOrder { create, .. } => {
            if !matches!(state, ContainerState::Absent) {
                return Err(Rejection::conflict(format!(
                    "container {} already exists; send a new command_id to create another",
                    ctx.id
                )));
            }
            validate_refs(create.kind, &create.refs)?;
            vec![ContainerEvent::Created(ContainerCreated {
                name: create.name.clone(),
                kind: create.kind,
                secret_refs: create.refs.clone(),
                creator: creator.clone(),
            })]
        }
        ContainerCommand::AddSecret(r) => {
            let c = ctx.live(state)?;
            generic_only(c, ctx.id)?;
            if c.refs.iter().any(|x| x == r) {
                return Ok(vec![]);
            }
            let mut refs = c.refs.clone();
            refs.push(r.clone());
            validate_refs(c.kind, &refs)?;
            vec![ContainerEvent::SecretAdded(ContainerSecretAdded {
                secret_ref: r.clone(),
            })]
        }
        ContainerCommand::RemoveSecret { name, secret_id } => {
            let c = ctx.live(state)?;
            generic_only(c, ctx.id)?;
            if !c
                .refs
                .iter()
                .any(|r| &r.name == name && &r.secret_id == secret_id)
            {
                return Err(Rejection::not_found(format!(
                    "container {} has no reference {:?} to secret {secret_id}",
                    ctx.id,
                    name.as_str()
                )));
            }
            vec![ContainerEvent::SecretRemoved(ContainerSecretRemoved {
                name: name.clone(),
                secret_id: *secret_id,
            })]
        }
        ContainerCommand::RegisterConsumer(k) => {
            let c = ctx.live(state)?;
            if c.consumers.contains(k) {
                return Ok(vec![]);
            }
            vec![ContainerEvent::ConsumerRegistered(ConsumerChanged {
                name: k.name.clone(),
                url: k.url.clone(),
            })]
        }
        ContainerCommand::RemoveConsumer(k) => {
            let c = ctx.live(state)?;
            if !c.consumers.contains(k) {
                return Err(Rejection::not_found(format!(
                    "container {} has no consumer {:?} at {}",
                    ctx.id, k.name, k.url
                )));
            }
            vec![ContainerEvent::ConsumerRemoved(ConsumerChanged {
                name: k.name.clone(),
                url: k.url.clone(),
            })]
        }
        ContainerCommand::SetAcl(change) => {
            let c = ctx.live(state)?;
            vec![ContainerEvent::AclSet(AclSet {
                read: change.apply(&c.acl),
            })]
        }
        ContainerCommand::Delete { force } => {
            let c = ctx.live(state)?;
            if !c.consumers.is_empty() && !force {
                let names: Vec<String> = c
                    .consumers
                    .iter()
                    .map(|k| format!("{} ({})", k.name, k.url))
                    .collect();
                return Err(Rejection::invalid(format!(
                    "container {} has consumers: {}; unregister them first, or force the \
                     deletion",
                    ctx.id,
                    names.join(", ")
                )));
            }
            vec![ContainerEvent::Deleted(ContainerDeleted {
                forced: !c.consumers.is_empty(),
            })]
        }
    })
}

/// The policy and the reference checks, for a user's command.
fn authorize_user(
    who: &Principal,
    state: &ContainerState,
    command: &ContainerCommand,
    ctx: &Context<'_>,
) -> Result<(), Rejection> {
    let object = Object::Container(ctx.id);
    let target = match (state, command) {
        (_, ContainerCommand::Create(_)) => Target::Project {
            project: ctx.project,
            secret: None,
        },
        (ContainerState::Live(c), _) => Target::Secret(SecretFacts {
            id: object,
            project: ctx.project,
            creator: &c.creator,
            acl: &c.acl,
            owning_service: None,
        }),
        _ => Target::Project {
            project: ctx.project,
            secret: Some(object),
        },
    };
    let env = RequestEnv {
        source: None,
        now: ctx.now,
    };
    policy::authorize(who, action_of(command), target, env)?;
    for r in command.new_refs() {
        match ctx.refs.get(&r.secret_id) {
            Some(Ok(())) => {}
            Some(Err(denied)) => return Err(denied.clone()),
            None => {
                return Err(Rejection::internal(format!(
                    "secret {} was not checked before deciding",
                    r.secret_id
                )));
            }
        }
    }
    Ok(())
}

fn generic_only(c: &Container, id: ContainerId) -> Result<(), Rejection> {
    if c.kind != ContainerType::Generic {
        return Err(Rejection::invalid(format!(
            "container {id} is a {} container, whose references are fixed; only generic \
             containers take added or removed references. Create a new container instead",
            c.kind
        )));
    }
    Ok(())
}
