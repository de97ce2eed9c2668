//! The Order aggregate: a request that keyledger generate key material (Barbican's
//! orders). A user places it; keyledger's order worker generates the material,
//! records it on the order (sealed, its data keys in the key store), stores it as
//! secrets and, for key pairs and certificates, a container, and completes the order.
//! Every step after placement is the order worker's, and each is idempotent: a worker
//! killed at any point resumes from what the order's log says.
//!
//! PENDING → ACTIVE (with the secret or the container) or ERROR (with Barbican's
//! `error_status_code` and `error_reason`).

mod event;
mod spec;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use event::{Material, MaterialRecorded, OrderCompleted, OrderEvent, OrderFailed, OrderPlaced};
pub use spec::{DistinguishedName, KeySpec, OrderSpec, OrderType};

use crate::Rejection;
use crate::ids::{ContainerId, OrderId, ProjectId, SecretId, UserId};
use crate::policy;
use crate::policy::{Action, Object, RequestEnv, SecretFacts, Target};
use crate::principal::{Actor, SystemTask};
use crate::secret::acl::Acl;
use crate::subject::command;
use crate::timestamp::Timestamp;

/// Where an order stands, as Barbican reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderStatus {
    /// Placed; the worker has not finished.
    Pending,
    /// Done: the secret or container exists.
    Active,
    /// Failed, with a code and a reason.
    Error,
}

impl OrderStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Active => "ACTIVE",
            Self::Error => "ERROR",
        }
    }
}

/// Everything that can be asked of an order.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    /// Place it (a user).
    Place {
        /// What to generate.
        order_type: OrderType,
        /// Barbican's `meta`, as given (checked by [`OrderSpec::parse`]).
        meta: Map<String, Value>,
    },
    /// Record the generated material (the worker), before storing it as secrets.
    RecordMaterial(Vec<Material>),
    /// Complete it (the worker).
    Complete(OrderCompleted),
    /// Fail it (the worker).
    Fail(OrderFailed),
    /// Delete it (a user). The secrets it made stay.
    Delete,
}

impl OrderCommand {
    /// The command's name, as in its subject `keyledger.cmd.<name>`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Place { .. } => command::ORDER_PLACE,
            Self::RecordMaterial(_) => "order.material.record",
            Self::Complete(_) => "order.complete",
            Self::Fail(_) => "order.fail",
            Self::Delete => command::ORDER_DELETE,
        }
    }
}

/// A placed order.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// What to generate.
    pub order_type: OrderType,
    /// Barbican's `meta`.
    pub meta: Map<String, Value>,
    /// Who placed it.
    pub creator: UserId,
    /// Where it stands.
    pub status: OrderStatus,
    /// The material, once generated.
    pub material: Option<Vec<Material>>,
    /// The results, once complete.
    pub completed: Option<OrderCompleted>,
    /// Why it failed.
    pub failed: Option<OrderFailed>,
}

/// The lifecycle of an order.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum OrderState {
    /// No such order.
    #[default]
    Absent,
    /// Placed and not deleted.
    Placed(Box<Order>),
    /// Deleted.
    Deleted,
}

/// Folds one event into the state.
pub fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
    let mut o = match (state, event) {
        (OrderState::Absent, OrderEvent::Placed(e)) => {
            return OrderState::Placed(Box::new(Order {
                order_type: e.order_type,
                meta: e.meta.clone(),
                creator: e.creator.clone(),
                status: OrderStatus::Pending,
                material: None,
                completed: None,
                failed: None,
            }));
        }
        (OrderState::Placed(o), _) => o,
        (state, _) => return state,
    };
    match event {
        OrderEvent::Placed(_) => {}
        OrderEvent::MaterialRecorded(e) => o.material = Some(e.items.clone()),
        OrderEvent::Completed(e) => {
            o.status = OrderStatus::Active;
            o.completed = Some(e.clone());
        }
        OrderEvent::Failed(e) => {
            o.status = OrderStatus::Error;
            o.failed = Some(e.clone());
        }
        OrderEvent::Deleted => return OrderState::Deleted,
    }
    OrderState::Placed(o)
}

/// What `decide` needs besides state and command.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The caller.
    pub actor: &'a Actor,
    /// The project that owns the order.
    pub project: &'a ProjectId,
    /// The order's id.
    pub id: OrderId,
    /// The current time.
    pub now: Timestamp,
}

/// Allows the command for the actor, or says why not: the worker's steps are the
/// order worker's only, the rest goes through the policy.
pub fn authorize(
    state: &OrderState,
    command: &OrderCommand,
    ctx: &Context<'_>,
) -> Result<(), Rejection> {
    let by_worker = matches!(ctx.actor, Actor::System(s) if s.system == SystemTask::OrderWorker);
    let worker_step = matches!(
        command,
        OrderCommand::RecordMaterial(_) | OrderCommand::Complete(_) | OrderCommand::Fail(_)
    );
    match (ctx.actor, worker_step) {
        (Actor::System(_), true) if by_worker => {}
        (Actor::System(s), _) => {
            return Err(Rejection::forbidden(format!(
                "{} is not a task of keyledger's {}",
                command.name(),
                s.system
            )));
        }
        (Actor::User(_), true) => {
            return Err(Rejection::forbidden(format!(
                "{} is issued by keyledger's order worker only",
                command.name()
            )));
        }
        (Actor::User(who), false) => {
            let object = Object::Order(ctx.id);
            let acl = Acl::default();
            let (action, target) = match (command, state) {
                (OrderCommand::Place { .. }, _) => (
                    Action::CreateOrder,
                    Target::Project {
                        project: ctx.project,
                        secret: None,
                    },
                ),
                (_, OrderState::Placed(o)) => (
                    Action::DeleteSecret,
                    Target::Secret(SecretFacts {
                        id: object,
                        project: ctx.project,
                        creator: &o.creator,
                        acl: &acl,
                        owning_service: None,
                    }),
                ),
                _ => (
                    Action::DeleteSecret,
                    Target::Project {
                        project: ctx.project,
                        secret: Some(object),
                    },
                ),
            };
            let env = RequestEnv {
                source: None,
                now: ctx.now,
            };
            policy::authorize(who, action, target, env)?;
        }
    }
    Ok(())
}

/// Decides what `command` does to an order in `state`. Pure.
pub fn decide(
    state: &OrderState,
    command: &OrderCommand,
    ctx: Context<'_>,
) -> Result<Vec<OrderEvent>, Rejection> {
    authorize(state, command, &ctx)?;
    let not_found = || {
        Rejection::not_found(format!(
            "order {} not found in project {}",
            ctx.id, ctx.project
        ))
    };
    let pending = |state: &OrderState| match state {
        OrderState::Placed(o) if o.status == OrderStatus::Pending => Ok(()),
        OrderState::Placed(o) => Err(Rejection::conflict(format!(
            "order {} is {} already",
            ctx.id,
            o.status.as_str()
        ))),
        _ => Err(not_found()),
    };
    Ok(match command {
        OrderCommand::Place { order_type, meta } => {
            if !matches!(state, OrderState::Absent) {
                return Err(Rejection::conflict(format!(
                    "order {} already exists; send a new command_id to place another",
                    ctx.id
                )));
            }
            let spec = OrderSpec::parse(*order_type, meta)?;
            spec.check_names()?;
            if let Some(exp) = spec.expiration
                && exp.has_passed(ctx.now)
            {
                return Err(Rejection::invalid(format!(
                    "meta.expiration {} is not in the future (it is now {}); choose a later time",
                    exp.at(),
                    ctx.now
                )));
            }
            let creator = ctx
                .actor
                .principal()
                .map(|p| p.user.clone())
                .ok_or_else(|| Rejection::forbidden("orders are placed by users"))?;
            vec![OrderEvent::Placed(OrderPlaced {
                order_type: *order_type,
                meta: meta.clone(),
                creator,
            })]
        }
        OrderCommand::RecordMaterial(items) => {
            pending(state)?;
            if let OrderState::Placed(o) = state
                && o.material.is_some()
            {
                // Another worker recorded first; its material stands.
                return Ok(vec![]);
            }
            vec![OrderEvent::MaterialRecorded(MaterialRecorded {
                items: items.clone(),
            })]
        }
        OrderCommand::Complete(done) => {
            if let OrderState::Placed(o) = state
                && o.completed.as_ref() == Some(done)
            {
                return Ok(vec![]);
            }
            pending(state)?;
            vec![OrderEvent::Completed(done.clone())]
        }
        OrderCommand::Fail(failed) => {
            pending(state)?;
            vec![OrderEvent::Failed(failed.clone())]
        }
        OrderCommand::Delete => {
            let OrderState::Placed(_) = state else {
                return Err(not_found());
            };
            vec![OrderEvent::Deleted]
        }
    })
}

/// The command id of an order's step `role`.
fn order_command(order: OrderId, role: &str) -> crate::ids::CommandId {
    // "order-" + a 36-character UUID + "-" + a role of at most 13 token characters
    // (`intermediates`) is at most 56 characters of [A-Za-z0-9_-]: always a valid id.
    crate::ids::CommandId::parse(&format!("order-{order}-{role}"))
        .unwrap_or_else(|_| unreachable!("order step ids are valid command ids"))
}

/// The id of the secret an order stores for `role` (`secret`, `private_key`, …): derived
/// from the order, so a worker resuming after a crash writes the same secret.
pub fn secret_for(project: &ProjectId, order: OrderId, role: &str) -> (SecretId, String) {
    let command = order_command(order, role);
    (SecretId::for_create(project, &command), command.to_string())
}

/// The id of the container an order stores, derived like [`secret_for`].
pub fn container_for(project: &ProjectId, order: OrderId) -> (ContainerId, String) {
    let command = order_command(order, "container");
    (
        ContainerId::for_create(project, &command),
        command.to_string(),
    )
}

#[cfg(test)]
mod tests;
