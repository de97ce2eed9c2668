//! The command loop every aggregate shares: load the aggregate (from the cache, or
//! its own subject), decide, append one commit that expects the aggregate unchanged,
//! and on a concurrent write reload and decide again. Retries are answered from the
//! log: the aggregate remembers every command id it applied, JetStream's duplicate
//! window catches a retry inside it, and a lost ack is recognised by the last commit's
//! command id.

use std::future::Future;
use std::sync::Arc;

use domain::commit::{AggregateRef, EventCodec, NewCommit};
use domain::ids::CommandId;
use domain::principal::Actor;
use domain::timestamp::Timestamp;
use domain::{ErrorCode, Rejection};
use infra::protocol::AcceptedReply;
use moka::sync::Cache;
use tokio::sync::Mutex;

use crate::quota::Charged;
use crate::shared::request::RequestDigest;
use crate::shared::store::{AppendOutcome, EventStore, Loaded};
use infra::clock::Clock;

/// How often a command is decided again after losing a race to another writer (with
/// a random pause after each loss, so colliding writers spread out).
const MAX_ATTEMPTS: usize = 24;

/// An aggregate kind, as the loop needs it.
pub trait Aggregate: Send + Sync + 'static {
    /// Its state, folded from its events.
    type State: Default + Send + Sync + 'static;
    /// Its events.
    type Event: EventCodec + Clone + Send + Sync + 'static;
    /// Folds one event into the state.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;
}

/// One command going through the loop.
pub(crate) trait Step<A: Aggregate>: Send {
    /// Whether the caller may send this command to the aggregate in `state` at all.
    /// Checked before anything else: a caller the policy refuses learns nothing, not
    /// even that the command was applied already.
    fn authorize(&self, state: &A::State, now: Timestamp) -> Result<(), Rejection>;

    /// Whether the state already holds what the command asks for (a retry recognised
    /// by its content); then nothing is decided or written.
    fn settled(
        &mut self,
        state: &A::State,
    ) -> impl Future<Output = Result<bool, Rejection>> + Send {
        let _ = state;
        async { Ok(false) }
    }

    /// Called when the command id was applied already, by this caller and command, in
    /// the commit at sequence `applied_at`: whether this request is that one again (a
    /// retry) or another request reusing its id, which is refused.
    fn retried(
        &mut self,
        state: &A::State,
        applied_at: u64,
    ) -> impl Future<Output = Result<(), Rejection>> + Send {
        let _ = (state, applied_at);
        async { Ok(()) }
    }

    /// The events to append, or why not. Called again after losing a race.
    fn decide(&self, state: &A::State, now: Timestamp) -> Result<Vec<A::Event>, Rejection>;

    /// Whether the command creates its aggregate. Then, when the aggregate is not
    /// cached, the loop starts from the empty state instead of reading the subject
    /// first: for a new id there is nothing to read, and the append's expectation (no
    /// message on the subject yet) refuses it if the aggregate does exist after all (a
    /// retried create), which sends the loop to the log like any lost race.
    fn creates(&self) -> bool {
        false
    }

    /// What the commit of `events` counts against its project's quotas, if anything
    /// (checked only for commands a user sends: keyledger's own actors, such as the
    /// order worker making an order's secrets, are not charged).
    fn charges(&self, events: &[A::Event]) -> Option<domain::quota::Resource> {
        let _ = events;
        None
    }

    /// Events to write on the project's quota usage subject, in one atomic batch with
    /// the commit of `events` (a change of quota limits marks it, so that charges
    /// decided on the old limits are decided again).
    fn quota_marker(&self, events: &[A::Event]) -> Option<Vec<domain::quota::QuotaEvent>> {
        let _ = events;
        None
    }

    /// Runs once, before the first append (e.g. storing a data key the commit names).
    fn before_append(&mut self) -> impl Future<Output = Result<(), Rejection>> + Send {
        async { Ok(()) }
    }

    /// Called with the aggregate's state as the command leaves it, when it succeeds
    /// (applied now or before, or with nothing to change): what a reply says beyond
    /// where the commit landed is read from it here, not from the read model after.
    fn answered(&mut self, state: &A::State) {
        let _ = state;
    }
}

/// Where a command landed.
#[derive(Debug, Clone)]
pub struct Written<E> {
    /// The stream sequence of its commit (or of the aggregate's last commit, when
    /// there was nothing to write).
    pub seq: u64,
    /// The aggregate's version after it.
    pub version: u64,
    /// The events this call appended; empty when the command was already applied or
    /// there was nothing to change.
    pub events: Vec<E>,
    /// Whether the command had been applied already (its command id, or a state that
    /// settles it): this answers the earlier one.
    pub replayed: bool,
}

impl<E> Written<E> {
    /// The reply to the command, on the aggregate `id`.
    pub fn reply(&self, id: String) -> AcceptedReply {
        AcceptedReply {
            seq: self.seq,
            id,
            version: self.version,
            version_id: None,
            stages: None,
            replayed: self.replayed,
        }
    }
}

/// One cached aggregate. The mutex serialises this process's commands on the
/// aggregate, so they queue instead of racing; other processes are kept honest by the
/// expected-sequence check on append.
type Slot<S> = Arc<Mutex<Option<Loaded<S>>>>;

/// Runs commands on one aggregate kind.
pub(crate) struct Executor<A: Aggregate> {
    store: Arc<EventStore>,
    clock: Clock,
    cache: Cache<String, Slot<A::State>>,
}

impl<A: Aggregate> Executor<A> {
    /// An executor over `store`, keeping at most `cache_capacity` aggregates in memory.
    pub fn new(store: Arc<EventStore>, clock: Clock, cache_capacity: u64) -> Self {
        Self {
            store,
            clock,
            cache: Cache::new(cache_capacity),
        }
    }

    /// The store.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The aggregate's state as of its last commit (from the cache when held).
    pub async fn state(&self, aggregate: &AggregateRef) -> Result<A::State, Rejection>
    where
        A::State: Clone,
    {
        let subject = aggregate.subject();
        let slot = self.cache.get_with(subject.clone(), Slot::default);
        let mut cached = slot.lock().await;
        infra::metrics::cache_lookup(infra::metrics::cache::AGGREGATES, cached.is_some());
        let loaded = match cached.as_mut() {
            Some(loaded) => loaded,
            None => cached.insert(self.store.load(&subject, A::evolve).await?),
        };
        Ok(loaded.state.clone())
    }

    /// Runs `step` as command `command_id` (named `command`) by `actor`, of a request
    /// with digest `request` (`None` for keyledger's own commands, and creates, whose
    /// steps tell a retry by content: [`Step::retried`]).
    pub async fn run(
        &self,
        aggregate: &AggregateRef,
        command_id: &CommandId,
        command: &str,
        actor: &Actor,
        request: Option<RequestDigest>,
        step: &mut impl Step<A>,
    ) -> Result<Written<A::Event>, Rejection> {
        let subject = aggregate.subject();
        let done = |seq, version, replayed| Written {
            seq,
            version,
            events: Vec::new(),
            replayed,
        };
        let slot = self.cache.get_with(subject.clone(), Slot::default);
        let mut cached = slot.lock().await;
        infra::metrics::cache_lookup(infra::metrics::cache::AGGREGATES, cached.is_some());
        let mut prepared = false;

        // Whether the state is known to be the log's latest (loaded, or caught up, in
        // this call): only a rejection decided on it is final.
        let mut fresh = false;
        for attempt in 0..MAX_ATTEMPTS {
            let loaded = match cached.as_mut() {
                Some(loaded) => loaded,
                // Not fresh: only assumed empty. A rejection on it is checked against
                // the log, as for a cached state.
                None if step.creates() => cached.insert(Loaded::default()),
                None => {
                    fresh = true;
                    cached.insert(self.store.load(&subject, A::evolve).await?)
                }
            };
            let now: Timestamp = (self.clock)();
            if let Err(rejection) = step.authorize(&loaded.state, now) {
                if !fresh {
                    // Another replica may have changed the aggregate since it was
                    // cached: read what it wrote since (nothing, usually: one request),
                    // never the whole history again.
                    self.store.catch_up(&subject, loaded, A::evolve).await?;
                    fresh = true;
                    continue;
                }
                return Err(rejection);
            }
            if let Some(applied) = loaded.applied(command_id) {
                if applied.command != command || !applied.actor.same_caller(actor) {
                    return Err(Rejection::command_id_taken(
                        command_id,
                        "; send a new command_id",
                    ));
                }
                if let (Some(then), Some(now)) = (applied.request, request)
                    && then != now
                {
                    return Err(Rejection::conflict(format!(
                        "command_id {command_id} was already used for a request of {command} \
                         with other members or values; a retry must repeat the request as \
                         first sent, and a new request needs a new command_id (over HTTP, a \
                         new Idempotency-Key)"
                    )));
                }
                let accepted = applied.accepted;
                if let Err(rejection) = step.retried(&loaded.state, accepted.seq).await {
                    // What the retry is compared with may have changed since it was
                    // cached (a version destroyed, the secret deleted): on the log's
                    // state, it may be no refusal at all.
                    if !fresh {
                        self.store.catch_up(&subject, loaded, A::evolve).await?;
                        fresh = true;
                        continue;
                    }
                    return Err(rejection);
                }
                step.answered(&loaded.state);
                return Ok(done(accepted.seq, accepted.version, true));
            }
            if step.settled(&loaded.state).await? {
                step.answered(&loaded.state);
                return Ok(done(loaded.last_seq, loaded.version, true));
            }
            let events = match step.decide(&loaded.state, now) {
                Ok(events) => events,
                // As above: a rejection on cached state is checked against the log.
                Err(_) if !fresh => {
                    self.store.catch_up(&subject, loaded, A::evolve).await?;
                    fresh = true;
                    continue;
                }
                Err(rejection) => return Err(rejection),
            };
            if events.is_empty() {
                // Nothing to change on cached state may be a change another replica
                // made since (and this command would undo): decided again on the log.
                if !fresh {
                    self.store.catch_up(&subject, loaded, A::evolve).await?;
                    fresh = true;
                    continue;
                }
                // Nothing to change: the state already is what the command asks for.
                step.answered(&loaded.state);
                return Ok(done(loaded.last_seq, loaded.version, false));
            }
            let what = || Charged {
                project: &aggregate.project,
                subject: &subject,
                command_id,
                command,
                actor,
                now,
            };
            let charge = match (step.charges(&events), actor, self.store.quotas()) {
                (Some(resource), Actor::User(_), Some(quotas)) => {
                    match quotas.charge(&self.store, what(), resource).await {
                        Ok(charge) => charge,
                        // As above: a refusal for a create that assumed its aggregate
                        // new may be a retry of one that landed, answered from the log.
                        Err(r) if r.code == ErrorCode::QuotaExceeded && !fresh => {
                            self.store.catch_up(&subject, loaded, A::evolve).await?;
                            fresh = true;
                            continue;
                        }
                        Err(rejection) => return Err(rejection),
                    }
                }
                _ => match (step.quota_marker(&events), self.store.quotas()) {
                    (Some(marker), Some(quotas)) => {
                        Some(quotas.mark(&self.store, what(), marker).await?)
                    }
                    _ => None,
                },
            };
            if !prepared {
                step.before_append().await?;
                prepared = true;
            }
            let sealed = NewCommit {
                id: command_id.clone(),
                aggregate: aggregate.clone(),
                version: loaded.version + 1,
                command: command.to_owned(),
                actor: actor.clone(),
                at: now,
                events,
            }
            .seal_for_log(loaded.last_hash, self.store.key());

            let outcome = match &charge {
                Some(charge) => {
                    self.store
                        .append_together(
                            (&sealed, loaded.last_seq, request),
                            (&charge.commit, charge.expected_last_seq),
                        )
                        .await?
                }
                None => self.store.append(&sealed, loaded.last_seq, request).await?,
            };
            // The project's next charge in this process may be decided now.
            drop(charge);
            let commit = sealed.commit;
            match outcome {
                AppendOutcome::Appended(seq) => {
                    loaded.apply(&commit, seq, request, A::evolve);
                    step.answered(&loaded.state);
                    return Ok(Written {
                        seq,
                        version: commit.body.version,
                        events: commit.body.events,
                        replayed: false,
                    });
                }
                AppendOutcome::Duplicate(seq) => {
                    let earlier = self.store.commit_at::<A::Event>(seq, &subject).await?;
                    let here = earlier.is_some_and(|earlier| {
                        &earlier.body.aggregate == aggregate && &earlier.body.id == command_id
                    });
                    if !here {
                        *cached = None;
                        return Err(Rejection::command_id_taken(
                            command_id,
                            " in the last few minutes; send a new command_id",
                        ));
                    }
                    // JetStream's duplicate window knew the id on this aggregate: this
                    // command landed already (its ack lost), or another request reuses
                    // the id. (A clustered stream reports the duplicate before the
                    // expected sequence, so a create that assumed its aggregate empty
                    // lands here too.) Read the aggregate and go round: the
                    // applied-command check tells the same caller's same command from
                    // anyone else's.
                    *cached = Some(self.store.load(&subject, A::evolve).await?);
                    fresh = true;
                }
                AppendOutcome::WrongLastSequence => {
                    // Another writer got in first; or this very command landed and only
                    // its ack was lost; or a create found its aggregate existing (a
                    // retry). Read what was written since and go round again: the
                    // applied-command check tells a retry (this caller, this command)
                    // from another request reusing the id.
                    self.store.catch_up(&subject, loaded, A::evolve).await?;
                    fresh = true;
                    if loaded.applied(command_id).is_none() {
                        // Writers that just collided would collide again at once: each
                        // waits a random moment, longer after each loss.
                        let ceiling = 1u64 << attempt.min(6);
                        let pause = rand::random_range(0..=ceiling);
                        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    }
                }
            }
        }
        Err(Rejection::conflict(format!(
            "{} {} is being changed by other writers at the same time; retry the command with \
             the same command_id",
            aggregate.kind, aggregate.id
        )))
    }
}
