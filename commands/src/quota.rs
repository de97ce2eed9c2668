//! Project quotas on the write side: the service admin's `quota.set` and
//! `quota.delete`, and the charge every create of a counted object takes.
//!
//! A charge is decided where the create is decided, in the command loop, so NATS,
//! Barbican's API and AWS's agree. While a project's limit for a resource is finite,
//! each create of one writes, in one atomic batch with its own commit, a
//! `quota.charged` commit on the project's usage subject that expects the subject's
//! last sequence. The count it is decided on is the read model's at that sequence or
//! later; the batch puts the create right before its charge, so that count includes
//! every create charged before. Two creates that read the same count both expect the
//! same last charge, and the second is refused by JetStream and decided again: no
//! count is ever overshot, across command services too. Deleting an object gives its
//! place back through the read model's count, with no commit of its own.
//!
//! A refusal is never decided on stale state: before refusing, the limits are read
//! from the log and the count from a read model at the log's end. A create decided
//! while a project was still unlimited here is not charged: a new limit reaches
//! other command services within [`LIMITS_TTL`] (the service that set it, at once).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::Rejection;
use domain::commit::{AggregateRef, NewCommit, Sealed};
use domain::ids::{CommandId, ProjectId};
use domain::principal::{Actor, Principal};
use domain::quota::{
    Limits, QuotaCommand, QuotaEvent, QuotaState, Resource, charge, effective, evolve,
    limits_aggregate, usage_aggregate,
};
use domain::subject::QuotaOp;
use domain::timestamp::Timestamp;
use moka::sync::Cache;
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::SourceError;
use crate::shared::executor::{Aggregate, Executor, Step};
use crate::shared::request::{RequestDigest, command_id, parse_body};
use crate::shared::store::EventStore;
use infra::clock::Clock;
use infra::protocol::{AcceptedReply, DeleteQuotaRequest, SetQuotaRequest};

/// How long a command service trusts the limits it read: a limit set through another
/// service holds here at most this much later.
pub const LIMITS_TTL: Duration = Duration::from_secs(1);

/// How long a charge may wait, for its turn in the project and for the read model to
/// reach the usage subject's last charge, before it answers "unavailable": less than
/// the 2 s after which the HTTP API sends a command again.
const CHARGE_WAIT: Duration = Duration::from_millis(1_500);

/// How often a charge looks at the read model while it waits for it.
const READ_MODEL_POLL: Duration = Duration::from_millis(2);

/// Namespace of the command ids of charges, derived from the create's.
const CHARGE_NAMESPACE: Uuid = Uuid::from_u128(0x6b65_796c_6564_6765_7200_0000_0000_00c4);

/// A count and the read model's sequence it reflects, or why it could not be read.
pub type Counted<'a> = Pin<Box<dyn Future<Output = Result<(u64, u64), SourceError>> + Send + 'a>>;

/// How much of a resource a project holds, as the read model counts it, and the
/// sequence that count reflects.
pub trait QuotaUsage: Send + Sync + 'static {
    /// The count of `resource` in `project`, and the read model's sequence.
    fn usage<'a>(&'a self, project: &'a ProjectId, resource: Resource) -> Counted<'a>;
}

/// The quota gate the command loop asks before appending a create.
pub struct Quotas {
    usage: Arc<dyn QuotaUsage>,
    limits: Cache<ProjectId, Arc<Limits>>,
    /// One charge per project at a time in this process, so this process's creates
    /// queue instead of refusing each other's batches.
    locks: Cache<ProjectId, Arc<Mutex<()>>>,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("projects_cached", &self.limits.entry_count())
            .finish_non_exhaustive()
    }
}

/// A charge decided: its commit, the usage sequence it expects, and the project's
/// lock, held until the create and the charge are written.
pub(crate) struct Charge {
    pub(crate) commit: Sealed<QuotaEvent>,
    pub(crate) expected_last_seq: u64,
    _turn: OwnedMutexGuard<()>,
}

/// The command a charge or a marker is written for.
pub(crate) struct Charged<'a> {
    pub(crate) project: &'a ProjectId,
    /// The subject of the command's commit.
    pub(crate) subject: &'a str,
    pub(crate) command_id: &'a CommandId,
    pub(crate) command: &'a str,
    pub(crate) actor: &'a Actor,
    pub(crate) now: Timestamp,
}

impl Quotas {
    /// A gate counting with `usage`.
    pub fn new(usage: Arc<dyn QuotaUsage>) -> Self {
        Self {
            usage,
            limits: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LIMITS_TTL)
                .build(),
            locks: Cache::builder().max_capacity(100_000).build(),
        }
    }

    /// Forgets `project`'s limits (they were just changed through this process).
    fn forget(&self, project: &ProjectId) {
        self.limits.invalidate(project);
    }

    /// `project`'s limits, as the log holds them.
    async fn read_limits(
        &self,
        store: &EventStore,
        project: &ProjectId,
    ) -> Result<Arc<Limits>, Rejection> {
        let loaded = store
            .load::<QuotaEvent, QuotaState>(&limits_aggregate(project).subject(), evolve)
            .await?;
        let limits = Arc::new(loaded.state.limits);
        self.limits.insert(project.clone(), limits.clone());
        Ok(limits)
    }

    /// `project`'s limits, read at most [`LIMITS_TTL`] ago.
    async fn limits(
        &self,
        store: &EventStore,
        project: &ProjectId,
    ) -> Result<Arc<Limits>, Rejection> {
        match self.limits.get(project) {
            Some(limits) => Ok(limits),
            None => self.read_limits(store, project).await,
        }
    }

    /// The charge for a create `what` describes, `None` when its resource is
    /// unlimited, or the refusal naming the quota, its limit and the count.
    pub(crate) async fn charge(
        &self,
        store: &EventStore,
        what: Charged<'_>,
        resource: Resource,
    ) -> Result<Option<Charge>, Rejection> {
        let project = what.project;
        // Unlimited here (read at most a second ago): nothing to charge.
        if effective(&*self.limits(store, project).await?, resource)
            .most()
            .is_none()
        {
            return Ok(None);
        }
        let deadline = Instant::now() + CHARGE_WAIT;
        let turn = self.turn(project, deadline).await?;
        let usage = usage_aggregate(project);
        // The usage subject first, then the limits: a change of limits writes a marker
        // on the usage subject (see `mark`), so limits read after it are at least as
        // new as the charge's expectation, and a charge decided on older limits is
        // refused by JetStream.
        let (last_seq, head) = self.usage_head(store, &usage).await?;
        let limits = self.read_limits(store, project).await?;
        let caller_project = match what.actor {
            Actor::User(principal) => &principal.project,
            Actor::System(_) => project,
        };
        let used = self.used(project, resource, last_seq, deadline).await?;
        let decide = |used| {
            charge(
                &limits,
                project,
                resource,
                used,
                what.subject,
                caller_project,
            )
        };
        let charged = match decide(used) {
            Ok(charged) => charged,
            // Refused on a count at the last charge: decided again on a count at the
            // log's end (a deletion since may have made room).
            Err(_) => {
                let end = store.last_sequence().await?;
                let used = self.used(project, resource, end, deadline).await?;
                decide(used)?
            }
        };
        let Some(charged) = charged else {
            return Ok(None);
        };
        let commit = self.usage_commit(
            store,
            (usage, head),
            &what,
            "charge",
            vec![QuotaEvent::Charged(charged)],
        );
        Ok(Some(Charge {
            commit,
            expected_last_seq: last_seq,
            _turn: turn,
        }))
    }

    /// The marker a change of `project`'s limits writes on its usage subject, in one
    /// atomic batch with the change: every charge decided before it expects an older
    /// sequence there and is decided again, on the new limits.
    pub(crate) async fn mark(
        &self,
        store: &EventStore,
        what: Charged<'_>,
        events: Vec<QuotaEvent>,
    ) -> Result<Charge, Rejection> {
        let turn = self
            .turn(what.project, Instant::now() + CHARGE_WAIT)
            .await?;
        let usage = usage_aggregate(what.project);
        let (last_seq, head) = self.usage_head(store, &usage).await?;
        let commit = self.usage_commit(store, (usage, head), &what, "mark", events);
        Ok(Charge {
            commit,
            expected_last_seq: last_seq,
            _turn: turn,
        })
    }

    /// This process's turn to charge in `project`, waited for until `deadline`.
    async fn turn(
        &self,
        project: &ProjectId,
        deadline: Instant,
    ) -> Result<OwnedMutexGuard<()>, Rejection> {
        let lock = self.locks.get_with(project.clone(), Arc::default);
        tokio::time::timeout_at(deadline.into(), lock.lock_owned())
            .await
            .map_err(|_| {
                Rejection::unavailable(format!(
                    "project {project}'s quota is busy counting other creates; retry shortly"
                ))
            })
    }

    /// The commit of `events` on the usage subject, after `head`, for the command
    /// `what` describes (its id derived from the command's, so a retry writes the same).
    fn usage_commit(
        &self,
        store: &EventStore,
        (usage, head): (AggregateRef, Option<domain::chain::Head>),
        what: &Charged<'_>,
        purpose: &str,
        events: Vec<QuotaEvent>,
    ) -> Sealed<QuotaEvent> {
        let id = Uuid::new_v5(
            &CHARGE_NAMESPACE,
            format!("{purpose}/{}/{}", what.subject, what.command_id).as_bytes(),
        );
        NewCommit {
            id: CommandId::from_uuid(id),
            aggregate: usage,
            version: head.as_ref().map_or(0, |h| h.version) + 1,
            command: what.command.to_owned(),
            actor: what.actor.clone(),
            at: what.now,
            events,
        }
        .seal_for_log(head.map(|h| h.hash), store.key())
    }

    /// The usage subject's last sequence and last commit (read from the log).
    async fn usage_head(
        &self,
        store: &EventStore,
        usage: &AggregateRef,
    ) -> Result<(u64, Option<domain::chain::Head>), Rejection> {
        let subject = usage.subject();
        Ok(match store.last_commit::<QuotaEvent>(&subject).await? {
            None => (0, None),
            Some((seq, Some(last))) => (seq, Some(domain::chain::Head::from(&last))),
            // A message keyledger did not write is last: the chain's head is before it.
            Some((_, None)) => {
                let loaded = store
                    .load::<QuotaEvent, QuotaState>(&subject, evolve)
                    .await?;
                (loaded.last_seq, loaded.head())
            }
        })
    }

    /// The count of `resource` in `project` from a read model at `seq` or later,
    /// waited for until `deadline`.
    async fn used(
        &self,
        project: &ProjectId,
        resource: Resource,
        seq: u64,
        deadline: Instant,
    ) -> Result<u64, Rejection> {
        loop {
            let (used, at) = self
                .usage
                .usage(project, resource)
                .await
                .map_err(|e| Rejection::unavailable(format!("counting {resource}: {e}")))?;
            if at >= seq {
                return Ok(used);
            }
            if Instant::now() >= deadline {
                return Err(Rejection::unavailable(format!(
                    "the read model is at sequence {at}, behind the project's last quota charge \
                     at {seq}, so its {resource} cannot be counted; is the projector running? \
                     Retry shortly"
                )));
            }
            tokio::time::sleep(READ_MODEL_POLL).await;
        }
    }
}

/// A project's limits, for the command loop.
pub(crate) struct QuotaAggregate;

impl Aggregate for QuotaAggregate {
    type State = QuotaState;
    type Event = QuotaEvent;

    fn evolve(state: QuotaState, event: &QuotaEvent) -> QuotaState {
        evolve(state, event)
    }
}

/// Executes the service admin's commands on project quotas.
pub struct QuotaHandler {
    executor: Executor<QuotaAggregate>,
    quotas: Option<Arc<Quotas>>,
}

impl QuotaHandler {
    /// A handler over `store`, telling `quotas` (this process's gate) of each change.
    pub fn new(store: Arc<EventStore>, clock: Clock, quotas: Option<Arc<Quotas>>) -> Self {
        Self {
            executor: Executor::new(store, clock, 10_000),
            quotas,
        }
    }

    /// Handles a `quota.*` command with a JSON `body`.
    pub async fn handle(
        &self,
        op: QuotaOp,
        principal: &Principal,
        body: &[u8],
    ) -> Result<AcceptedReply, Rejection> {
        let name = op.as_str();
        let (given_id, project, command) = match op {
            QuotaOp::Set => {
                let req: SetQuotaRequest = parse_body(name, body)?;
                (
                    req.command_id,
                    req.project,
                    QuotaCommand::Set(req.quotas.limits()?),
                )
            }
            QuotaOp::Delete => {
                let req: DeleteQuotaRequest = parse_body(name, body)?;
                (req.command_id, req.project, QuotaCommand::Clear)
            }
        };
        let command_id = command_id(given_id.as_deref())?;
        let project = ProjectId::parse(&project)?;
        let aggregate = limits_aggregate(&project);
        let mut step = QuotaStep {
            principal,
            project: &project,
            command: &command,
        };
        let actor = Actor::User(principal.clone());
        let written = self
            .executor
            .run(
                &aggregate,
                &command_id,
                name,
                &actor,
                RequestDigest::of(body),
                &mut step,
            )
            .await?;
        if let Some(quotas) = &self.quotas {
            quotas.forget(&project);
        }
        Ok(written.reply(aggregate.id.into()))
    }
}

struct QuotaStep<'a> {
    principal: &'a Principal,
    project: &'a ProjectId,
    command: &'a QuotaCommand,
}

impl Step<QuotaAggregate> for QuotaStep<'_> {
    fn authorize(&self, _: &QuotaState, _: Timestamp) -> Result<(), Rejection> {
        domain::quota::authorize(self.principal, self.project)
    }

    fn decide(&self, state: &QuotaState, _: Timestamp) -> Result<Vec<QuotaEvent>, Rejection> {
        Ok(domain::quota::decide(state, self.command))
    }

    fn quota_marker(&self, events: &[QuotaEvent]) -> Option<Vec<QuotaEvent>> {
        Some(events.to_vec())
    }
}
