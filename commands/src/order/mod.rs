//! Orders: the command handler for `order.place` and `order.delete`, the order worker
//! that generates what orders ask for, key generation, and CA plugins.

pub mod ca;
pub mod generate;
pub mod worker;

use std::sync::Arc;

use domain::Rejection;
use domain::commit::AggregateRef;
use domain::ids::{CommandId, OrderId, ProjectId};
use domain::order::{Context, OrderCommand, OrderEvent, OrderState, OrderType, decide, evolve};
use domain::principal::{Actor, Principal};
use domain::subject::{AggregateKind, OrderOp};
use domain::timestamp::Timestamp;

use crate::shared::executor::{Aggregate, Executor, Step};
use crate::shared::request::{RequestDigest, command_id, parse_body};
use crate::shared::store::EventStore;
use infra::clock::Clock;
use infra::protocol::{AcceptedReply, DeleteOrderRequest, PlaceOrderRequest};

/// The Order aggregate, for the command loop.
pub(crate) struct OrderAggregate;

impl Aggregate for OrderAggregate {
    type State = OrderState;
    type Event = OrderEvent;

    fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
        evolve(state, event)
    }
}

/// Executes commands on orders.
pub struct OrderHandler {
    executor: Executor<OrderAggregate>,
}

impl OrderHandler {
    /// A handler over `store`.
    /// The key commits are checked with.
    pub fn commit_key(&self) -> &domain::commit::CommitKey {
        self.executor.store().key()
    }

    /// A handler over `store`.
    pub fn new(store: Arc<EventStore>, clock: Clock, cache_capacity: u64) -> Self {
        Self {
            executor: Executor::new(store, clock, cache_capacity),
        }
    }

    /// Handles `order.place` or `order.delete` from a user.
    pub async fn handle(
        &self,
        op: OrderOp,
        principal: &Principal,
        body: &[u8],
    ) -> Result<AcceptedReply, Rejection> {
        let name = op.as_str();
        let (command_id, project, order, command) = match op {
            OrderOp::Place => {
                let req: PlaceOrderRequest = parse_body(name, body)?;
                let command_id = command_id(req.command_id.as_deref())?;
                let project = principal.project.clone();
                let order = OrderId::for_create(&project, &command_id);
                let command = OrderCommand::Place {
                    order_type: OrderType::parse(&req.order_type)?,
                    meta: req.meta,
                };
                (command_id, project, order, command)
            }
            OrderOp::Delete => {
                let req: DeleteOrderRequest = parse_body(name, body)?;
                let project = req
                    .project
                    .as_deref()
                    .map_or_else(|| Ok(principal.project.clone()), ProjectId::parse)?;
                (
                    command_id(req.command_id.as_deref())?,
                    project,
                    OrderId::parse(&req.id)?,
                    OrderCommand::Delete,
                )
            }
        };
        let actor = Actor::User(principal.clone());
        let request = RequestDigest::of(body);
        self.execute(&actor, project, order, command, command_id, request)
            .await
    }

    /// Runs `command` on order `order` as `actor`: keyledger's own (the order worker).
    pub async fn run(
        &self,
        actor: &Actor,
        project: ProjectId,
        order: OrderId,
        command: OrderCommand,
        command_id: CommandId,
    ) -> Result<AcceptedReply, Rejection> {
        self.execute(actor, project, order, command, command_id, None)
            .await
    }

    async fn execute(
        &self,
        actor: &Actor,
        project: ProjectId,
        order: OrderId,
        command: OrderCommand,
        command_id: CommandId,
        request: Option<RequestDigest>,
    ) -> Result<AcceptedReply, Rejection> {
        let aggregate = AggregateRef {
            kind: AggregateKind::Order,
            project: project.clone(),
            id: order.into(),
        };
        let mut step = OrderStep {
            actor,
            project: &project,
            order,
            command: &command,
        };
        let written = self
            .executor
            .run(
                &aggregate,
                &command_id,
                command.name(),
                actor,
                request,
                &mut step,
            )
            .await?;
        Ok(written.reply(aggregate.id.into()))
    }

    /// The order's state as of its last commit.
    pub async fn state(
        &self,
        project: &ProjectId,
        order: OrderId,
    ) -> Result<OrderState, Rejection> {
        self.executor
            .state(&AggregateRef {
                kind: AggregateKind::Order,
                project: project.clone(),
                id: order.into(),
            })
            .await
    }
}

struct OrderStep<'a> {
    actor: &'a Actor,
    project: &'a ProjectId,
    order: OrderId,
    command: &'a OrderCommand,
}

impl OrderStep<'_> {
    fn context(&self, now: Timestamp) -> Context<'_> {
        Context {
            actor: self.actor,
            project: self.project,
            id: self.order,
            now,
        }
    }
}

impl Step<OrderAggregate> for OrderStep<'_> {
    fn authorize(&self, state: &OrderState, now: Timestamp) -> Result<(), Rejection> {
        domain::order::authorize(state, self.command, &self.context(now))
    }

    fn decide(&self, state: &OrderState, now: Timestamp) -> Result<Vec<OrderEvent>, Rejection> {
        decide(state, self.command, self.context(now))
    }

    fn creates(&self) -> bool {
        matches!(self.command, OrderCommand::Place { .. })
    }

    fn charges(&self, events: &[OrderEvent]) -> Option<domain::quota::Resource> {
        events
            .iter()
            .any(|event| matches!(event, OrderEvent::Placed(_)))
            .then_some(domain::quota::Resource::Orders)
    }
}
