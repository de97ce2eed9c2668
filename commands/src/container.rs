//! Executes container commands: parse the request, check every secret it references
//! (loaded from the log, each through its own subject), then the shared command loop.

use std::sync::Arc;

use domain::Rejection;
use domain::commit::AggregateRef;
use domain::container::{
    Consumer, ContainerCommand, ContainerEvent, ContainerState, ContainerType, Context,
    CreateContainer, RefChecks, RefName, SecretRef, check_ref, decide, evolve,
};
use domain::ids::{CommandId, ContainerId, ProjectId, SecretId};
use domain::principal::{Actor, Principal};
use domain::secret::fields::SecretName;
use domain::subject::{AggregateKind, ContainerOp};
use domain::timestamp::Timestamp;

use crate::secret::SecretHandler;
use crate::shared::executor::{Aggregate, Executor, Step};
use crate::shared::request::{RequestDigest, acl_change, command_id, parse_body};
use crate::shared::store::EventStore;
use infra::clock::Clock;
use infra::protocol::{
    AcceptedReply, ConsumerRequest, ContainerSecretRequest, CreateContainerRequest,
    DeleteAclRequest, DeleteContainerRequest, SecretRefRequest, SetAclRequest,
};

/// The Container aggregate, for the command loop.
pub(crate) struct ContainerAggregate;

impl Aggregate for ContainerAggregate {
    type State = ContainerState;
    type Event = ContainerEvent;

    fn evolve(state: ContainerState, event: &ContainerEvent) -> ContainerState {
        evolve(state, event)
    }
}

/// A container command ready for the decider.
struct Parsed {
    command_id: CommandId,
    project: ProjectId,
    container: ContainerId,
    command: ContainerCommand,
}

/// Executes commands on containers.
pub struct ContainerHandler {
    executor: Executor<ContainerAggregate>,
    secrets: Arc<SecretHandler>,
    clock: Clock,
}

/// The secret a `secret_ref` names: its id, or the last segment of its URL.
fn secret_of(secret_ref: &str) -> Result<SecretId, Rejection> {
    let last = secret_ref
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(secret_ref);
    SecretId::parse(last).map_err(|_| {
        Rejection::invalid(format!(
            "secret_ref {secret_ref:?} names no secret: give a secret's URL \
             (…/v1/secrets/<uuid>) or its id"
        ))
    })
}

fn parse_ref(
    name: &str,
    secret_ref: &str,
    project: Option<&str>,
    default_project: &ProjectId,
) -> Result<SecretRef, Rejection> {
    Ok(SecretRef {
        name: RefName::parse(name)?,
        project: project.map_or_else(|| Ok(default_project.clone()), ProjectId::parse)?,
        secret_id: secret_of(secret_ref)?,
    })
}

impl ContainerHandler {
    /// A handler over `store`, checking references through `secrets`.
    pub fn new(
        store: Arc<EventStore>,
        secrets: Arc<SecretHandler>,
        clock: Clock,
        cache_capacity: u64,
    ) -> Self {
        Self {
            executor: Executor::new(store, clock.clone(), cache_capacity),
            secrets,
            clock,
        }
    }

    /// Handles the command `name` (a `container.*` command) with a JSON `body`.
    pub async fn handle(
        &self,
        op: ContainerOp,
        principal: &Principal,
        body: &[u8],
    ) -> Result<AcceptedReply, Rejection> {
        let name = op.as_str();
        let project = |given: Option<&str>| {
            given.map_or_else(|| Ok(principal.project.clone()), ProjectId::parse)
        };
        let parsed = match op {
            ContainerOp::Create => {
                let req: CreateContainerRequest = parse_body(name, body)?;
                let command_id = command_id(req.command_id.as_deref())?;
                let project = project(req.project.as_deref())?;
                let refs = req
                    .secret_refs
                    .iter()
                    .map(|r: &SecretRefRequest| {
                        parse_ref(&r.name, &r.secret_ref, r.project.as_deref(), &project)
                    })
                    .collect::<Result<_, _>>()?;
                Parsed {
                    container: ContainerId::for_create(&project, &command_id),
                    command: ContainerCommand::Create(Box::new(CreateContainer {
                        name: req.name.as_deref().map(SecretName::parse).transpose()?,
                        kind: ContainerType::parse(&req.container_type)?,
                        refs,
                    })),
                    command_id,
                    project,
                }
            }
            ContainerOp::SecretAdd | ContainerOp::SecretRemove => {
                let req: ContainerSecretRequest = parse_body(name, body)?;
                let project = project(req.project.as_deref())?;
                let r = parse_ref(
                    &req.name,
                    &req.secret_ref,
                    req.secret_project.as_deref(),
                    &project,
                )?;
                let command = if op == ContainerOp::SecretAdd {
                    ContainerCommand::AddSecret(r)
                } else {
                    ContainerCommand::RemoveSecret {
                        name: r.name,
                        secret_id: r.secret_id,
                    }
                };
                Parsed {
                    command_id: command_id(req.command_id.as_deref())?,
                    project,
                    container: ContainerId::parse(&req.id)?,
                    command,
                }
            }
            ContainerOp::ConsumerRegister | ContainerOp::ConsumerRemove => {
                let req: ConsumerRequest = parse_body(name, body)?;
                let consumer = Consumer::parse(&req.name, &req.url)?;
                Parsed {
                    command_id: command_id(req.command_id.as_deref())?,
                    project: project(req.project.as_deref())?,
                    container: ContainerId::parse(&req.id)?,
                    command: if op == ContainerOp::ConsumerRegister {
                        ContainerCommand::RegisterConsumer(consumer)
                    } else {
                        ContainerCommand::RemoveConsumer(consumer)
                    },
                }
            }
            ContainerOp::AclSet => {
                let req: SetAclRequest = parse_body(name, body)?;
                Parsed {
                    command_id: command_id(req.command_id.as_deref())?,
                    project: project(req.project.as_deref())?,
                    container: ContainerId::parse(&req.id)?,
                    command: ContainerCommand::SetAcl(acl_change(&req)?),
                }
            }
            ContainerOp::AclDelete => {
                let req: DeleteAclRequest = parse_body(name, body)?;
                Parsed {
                    command_id: command_id(req.command_id.as_deref())?,
                    project: project(req.project.as_deref())?,
                    container: ContainerId::parse(&req.id)?,
                    command: ContainerCommand::SetAcl(domain::secret::acl::AclChange::Reset),
                }
            }
            ContainerOp::Delete => {
                let req: DeleteContainerRequest = parse_body(name, body)?;
                Parsed {
                    command_id: command_id(req.command_id.as_deref())?,
                    project: project(req.project.as_deref())?,
                    container: ContainerId::parse(&req.id)?,
                    command: ContainerCommand::Delete {
                        force: req.force.unwrap_or(false),
                    },
                }
            }
        };
        self.execute(principal, parsed, RequestDigest::of(body))
            .await
    }

    /// Runs a container command as keyledger's own `actor` (the order worker).
    pub(crate) async fn run_as(
        &self,
        actor: &Actor,
        project: ProjectId,
        container: ContainerId,
        command: ContainerCommand,
        command_id: CommandId,
    ) -> Result<AcceptedReply, Rejection> {
        let parsed = Parsed {
            command_id,
            project,
            container,
            command,
        };
        self.run(actor, parsed, RefChecks::new(), None).await
    }

    async fn execute(
        &self,
        principal: &Principal,
        parsed: Parsed,
        request: Option<RequestDigest>,
    ) -> Result<AcceptedReply, Rejection> {
        let now = (self.clock)();
        let mut refs = RefChecks::new();
        for r in parsed.command.new_refs() {
            let state = self.secrets.state(&r.project, r.secret_id).await?;
            refs.insert(r.secret_id, check_ref(principal, r, &state, now));
        }
        self.run(&Actor::User(principal.clone()), parsed, refs, request)
            .await
    }

    async fn run(
        &self,
        actor: &Actor,
        parsed: Parsed,
        refs: RefChecks,
        request: Option<RequestDigest>,
    ) -> Result<AcceptedReply, Rejection> {
        let aggregate = AggregateRef {
            kind: AggregateKind::Container,
            project: parsed.project.clone(),
            id: parsed.container.into(),
        };
        let mut step = ContainerStep {
            actor,
            parsed: &parsed,
            refs: &refs,
        };
        let written = self
            .executor
            .run(
                &aggregate,
                &parsed.command_id,
                parsed.command.name(),
                actor,
                request,
                &mut step,
            )
            .await?;
        Ok(written.reply(aggregate.id.into()))
    }
}

/// A container command in the loop.
struct ContainerStep<'a> {
    actor: &'a Actor,
    parsed: &'a Parsed,
    refs: &'a RefChecks,
}

impl ContainerStep<'_> {
    fn context(&self, now: Timestamp) -> Context<'_> {
        Context {
            actor: self.actor,
            project: &self.parsed.project,
            id: self.parsed.container,
            now,
            refs: self.refs,
        }
    }
}

impl Step<ContainerAggregate> for ContainerStep<'_> {
    fn authorize(&self, state: &ContainerState, now: Timestamp) -> Result<(), Rejection> {
        domain::container::authorize(state, &self.parsed.command, &self.context(now))
    }

    fn decide(
        &self,
        state: &ContainerState,
        now: Timestamp,
    ) -> Result<Vec<ContainerEvent>, Rejection> {
        decide(state, &self.parsed.command, self.context(now))
    }

    fn creates(&self) -> bool {
        matches!(
            self.parsed.command,
            ContainerCommand::Create(_) | ContainerCommand::CreateForOrder { .. }
        )
    }

    fn charges(&self, events: &[ContainerEvent]) -> Option<domain::quota::Resource> {
        events.iter().find_map(|event| match event {
            ContainerEvent::Created(_) => Some(domain::quota::Resource::Containers),
            ContainerEvent::ConsumerRegistered(_) => Some(domain::quota::Resource::Consumers),
            _ => None,
        })
    }
}
