//! `GET /v1/changes`: what changed in the caller's project, as Server-Sent Events, so
//! services and caches react instead of polling.
//!
//! One event per commit on a secret, container or order of the caller's project that
//! the caller may list: its sequence, kind, id, version and event types, never a
//! payload, a key, a name or an ACL. Each event's SSE `id` is its log sequence, so a
//! client that reconnects with `Last-Event-ID` (or `?since=<seq>`) gets every later
//! change once, with no gap: the stream reads the log itself, in order.
//!
//! *Who sees what.* A commit is shown if the caller may list its object (the project
//! role that lists the kind, and the object's ACL, as `GET /v1/secrets` filters) in
//! the object's state just before the commit or just after it: so a grant shows, and
//! so does the deletion or the revocation that ends what the caller could see. Those
//! states are folded from the log (per stream, each object's once, then kept up to
//! date), so a deleted object is judged as it was. Nobody learns of an object they
//! could not list. Secrets shared from other projects (`acl_only`) are not streamed.
//!
//! *For how long.* Until the client goes, or the token it was opened with expires.
//!
//! *When.* A change is sent once this API's read model has applied it, so a read made
//! on receiving it shows it. Messages the projector skipped (foreign or replayed
//! copies) are never sent.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use domain::audit::RawEvent;
use domain::commit::{Commit, EventCodec};
use domain::container::ContainerEvent;
use domain::ids::{ProjectId, ServiceName, UserId};
use domain::order::OrderEvent;
use domain::policy::{Action, Kind, Object, SecretFacts, Target, authorize, read_by_every_lister};
use domain::principal::Principal;
use domain::secret::SecretEvent;
use domain::secret::acl::Acl;
use domain::subject::{AggregateKind, events_filter, parse_aggregate_subject};
use futures::Stream;
use projections::tap::{Batch, Tap};
use projections::writer::Stored;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::auth::{Caller, Credential};
use crate::error::ApiError;
use crate::state::AppState;

mod folds;

use folds::{Folds, Object as Named};

/// Most messages read from the log at a time.
const BATCH: usize = 512;

/// Most bytes of messages read from the log at a time: a stream holds no more than
/// this of commits, however large they are (a commit can be some 200 KB).
const BATCH_BYTES: usize = 1024 * 1024;

/// How long a stream waits for the read model before it looks again (the keep-alive
/// comments go out meanwhile).
const WAIT: Duration = Duration::from_secs(15);

/// How long the NATS relay waits for the projector's tap before it reads what the read
/// model applied from the log: a change in a batch the tap left out is announced at
/// most this late, however quiet the log is after it.
const TAP_QUIET: Duration = Duration::from_secs(1);

/// Events waiting for a slow client before the stream waits for it.
const BUFFER: usize = 256;

/// One change, as sent in an event's `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// The commit's log sequence (also the event's `id`).
    pub seq: u64,
    /// The project.
    pub project: String,
    /// `secret`, `container` or `order`.
    pub kind: String,
    /// The object's id.
    pub id: String,
    /// The object's version after the commit.
    pub version: u64,
    /// The types of the commit's events (e.g. `secret.payload_stored`).
    pub events: Vec<String>,
    /// When it was committed (RFC 3339).
    pub at: String,
}

/// One event of the stream, as SSE frames it (its schema for the OpenAPI document).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangeEvent {
    /// Always `change`.
    #[schema(pattern = "^change$")]
    pub event: String,
    /// The change's log sequence: send it back as `Last-Event-ID` to resume after it.
    #[schema(pattern = "^[0-9]{1,20}$")]
    pub id: String,
    /// The change, as JSON (see `Change`).
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// The query of `GET /v1/changes`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Send the changes after this log sequence (a change's `id`); default: only those
    /// from now on. `Last-Event-ID`, which SSE clients send when they reconnect, wins.
    #[serde(default)]
    since: Option<u64>,
}

/// `GET /v1/changes`: the caller's project's changes, as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v1/changes",
    tag = "changes",
    params(
        ChangesQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this sequence (the last event's `id`)", pattern = "^[0-9]{1,20}$"),
    ),
    responses((status = 200, description = "A stream of `change` events (`text/event-stream`), each `data` a `Change` as JSON; comments keep it alive", content_type = "text/event-stream", body = ChangeEvent)),
)]
pub async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; use since=<sequence> (the id of the last change you saw), or nothing for \
             changes from now on",
            e.body_text()
        ))
    })?;
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "Last-Event-ID must be the id of a change (a log sequence number)",
                    )
                })?,
        ),
        None => query.since,
    };
    let who = &caller.principal;
    let env = crate::access::env(&state, &caller);
    let kinds = listed_kinds(who, env);
    if kinds.is_empty() {
        // The policy's own words: which roles would list secrets.
        authorize(
            who,
            Action::ListSecrets,
            Target::Project {
                project: &who.project,
                secret: None,
            },
            env,
        )?;
    }
    // A resume point the log has not reached is another log's (a reset, another
    // deployment): resuming from it would skip changes without a word.
    if let Some(seq) = resume
        && seq > state.read.applied()
    {
        let end = crate::consistency::log_end(&state).await?;
        if seq > end {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!(
                    "the resume point {seq} is beyond the end of the log (sequence {end}): it is \
                     not a change of this log. Start again with since=0, or without since for \
                     changes from now on"
                ),
            ));
        }
    }
    let slot = state.costly.changes.start(&caller).await?;
    let from = resume.unwrap_or_else(|| state.read.applied());
    let (tx, rx) = mpsc::channel(BUFFER);
    let filter = events_filter(Some(who.project.as_str()), None, None);
    let follower = Follower {
        state: state.clone(),
        audience: Audience::Caller(Box::new(caller)),
        kinds,
        folds: Folds::recent(),
        sink: Sink::Sse(tx),
    };
    tokio::spawn(async move {
        let _slot = slot;
        follower.run(Some(&filter), from.saturating_add(1)).await;
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The kinds `who` may list in its project.
fn listed_kinds(who: &Principal, env: domain::policy::RequestEnv) -> Vec<AggregateKind> {
    [
        (AggregateKind::Secret, Action::ListSecrets),
        (AggregateKind::Container, Action::ListContainers),
        (AggregateKind::Order, Action::ListOrders),
    ]
    .into_iter()
    .filter(|(_, action)| {
        let target = Target::Project {
            project: &who.project,
            secret: None,
        };
        authorize(who, *action, target, env).is_ok()
    })
    .map(|(kind, _)| kind)
    .collect()
}

/// What the listing policy needs of an object, folded from its commits: whether it
/// exists, who made it, and its ACL, kept as small as the follower's [`View`] allows,
/// so a stream's memory does not grow with what objects hold.
#[derive(Debug, Clone, Default, PartialEq)]
struct Facts {
    live: bool,
    creator: Option<UserId>,
    acl: Acl,
    owning_service: Option<ServiceName>,
}

/// The events [`Facts::evolve`] reads. It decodes no other: a create's sealed payload
/// was most of what the relay spent on it, to be dropped unread.
const FACT_EVENTS: &[&str] = &[
    "secret.created",
    "secret.acl_set",
    "secret.deleted",
    "secret.expired",
    "container.created",
    "container.acl_set",
    "container.deleted",
    "order.placed",
    "order.deleted",
];

/// Whose view of objects a follower's facts keep.
#[derive(Debug, Clone, Copy)]
enum View<'a> {
    /// One caller's: the creator, the owning service, and of the ACL's users only the
    /// caller.
    Caller(&'a UserId),
    /// Every lister's (the relay's): whether the object is live, and whether its ACL
    /// is [`folds::open`], which is all [`read_by_every_lister`] looks at.
    EveryLister,
}

impl View<'_> {
    /// What this view keeps of an ACL.
    fn acl(self, acl: &Acl) -> Acl {
        match self {
            View::Caller(me) => Acl {
                users: acl.users.iter().filter(|u| *u == me).cloned().collect(),
                ..acl.clone()
            },
            View::EveryLister => Acl {
                project_access: folds::open(acl),
                ..Acl::default()
            },
        }
    }

    /// What this view keeps of a creator (or an owning service).
    fn keeps<T: Clone>(self, who: &T) -> Option<T> {
        matches!(self, View::Caller(_)).then(|| who.clone())
    }
}

impl Facts {
    /// A live object's facts in every lister's view, whose ACL is [`folds::open`] or
    /// not.
    fn every_lister(live: bool, open: bool) -> Self {
        Self {
            live,
            creator: None,
            acl: Acl {
                project_access: open,
                ..Acl::default()
            },
            owning_service: None,
        }
    }

    /// The facts after a commit's `events` (of an object of `kind`), as `view` keeps
    /// them.
    fn evolve(self, kind: AggregateKind, events: &[RawEvent], view: View<'_>) -> Self {
        events
            .iter()
            .filter(|raw| FACT_EVENTS.contains(&raw.type_name().as_str()))
            .fold(self, |facts, raw| facts.read(kind, raw, view))
    }

    /// The facts after one event.
    fn read(mut self, kind: AggregateKind, raw: &RawEvent, view: View<'_>) -> Self {
        let made = |creator: &UserId| Self {
            live: true,
            creator: view.keeps(creator),
            acl: view.acl(&Acl::default()),
            owning_service: None,
        };
        match kind {
            AggregateKind::Secret => match SecretEvent::decode_raw(raw.json()) {
                Ok(SecretEvent::Created(e)) => {
                    self = Self {
                        owning_service: e.owning_service.as_ref().and_then(|s| view.keeps(s)),
                        ..made(&e.creator)
                    };
                }
                Ok(SecretEvent::AclSet(e)) => self.acl = view.acl(&e.read),
                Ok(SecretEvent::Deleted(_) | SecretEvent::Expired(_)) => self.live = false,
                _ => {}
            },
            AggregateKind::Container => match ContainerEvent::decode_raw(raw.json()) {
                Ok(ContainerEvent::Created(e)) => self = made(&e.creator),
                Ok(ContainerEvent::AclSet(e)) => self.acl = view.acl(&e.read),
                Ok(ContainerEvent::Deleted(_)) => self.live = false,
                _ => {}
            },
            AggregateKind::Order => match OrderEvent::decode_raw(raw.json()) {
                Ok(OrderEvent::Placed(e)) => self = made(&e.creator),
                Ok(OrderEvent::Deleted) => self.live = false,
                _ => {}
            },
            _ => {}
        }
        self
    }
}

/// Announces every change that every lister of its project may see on NATS, on
/// `keyledger.changes.<project>.<kind>.<id>` (the same document as an SSE event's
/// `data`), from the moment it starts; a client of a project may subscribe to the
/// kinds its roles list (the auth callout grants them). At most once: a change made
/// while no relay runs is not announced there (`GET /v1/changes` resumes from any
/// sequence). Run it in one process of a deployment. With the `tap` of a projector in
/// this process, it takes the commits that projector applied from it, and reads the
/// log only for what the tap did not carry ([`projections::tap`]).
pub async fn relay(state: AppState, nats: async_nats::Client, tap: Option<Tap>) {
    let follower = Follower {
        kinds: vec![
            AggregateKind::Secret,
            AggregateKind::Container,
            AggregateKind::Order,
        ],
        audience: Audience::EveryLister,
        folds: Folds::every(),
        sink: Sink::Nats(nats),
        state,
    };
    // Subscribed before the start is read: no batch applied after it is missed. A tap
    // of another stream than this API reads is not this log's.
    let tapped = tap
        .filter(|tap| tap.stream() == follower.state.config.stream)
        .map(|tap| tap.subscribe());
    let from = follower.state.read.applied().saturating_add(1);
    match tapped {
        Some(tapped) => follower.run_tapped(tapped, from).await,
        // Every message of the stream, unfiltered: `visible` skips what is not an
        // aggregate's subject, and what the projector skipped is never sent. A filter
        // with wildcards (`keyledger.events.*.*.*`) made nats-server count the
        // messages matching it on every read, walking the subjects of the stream's
        // blocks, once per projector batch: 21% of its CPU under 250 creates/s, and
        // growing with the log. Unfiltered, the count is the stream's own.
        None => follower.run(None, from).await,
    }
}

/// What a follower that has sent everything before `next` does with a batch the tap
/// handed on: first, if the batch starts after `next` (the follower started late, fell
/// behind, or the tap left a batch out), read from the log the commits from `next` up
/// to the returned sequence; then take the batch's commits it has not seen. `None`: it
/// has seen the whole batch.
fn tapped_part(next: u64, batch: &[Stored]) -> Option<(Option<u64>, &[Stored])> {
    let (first, last) = (batch.first()?, batch.last()?);
    if last.seq < next {
        return None;
    }
    let gap = (first.seq > next).then(|| first.seq - 1);
    Some((gap, &batch[batch.partition_point(|c| c.seq < next)..]))
}

/// The NATS subject a change is announced on.
pub fn change_subject(change: &Change) -> String {
    format!(
        "{}{}.{}.{}",
        domain::subject::CHANGES_PREFIX,
        change.project,
        change.kind,
        change.id
    )
}

/// Why a follower could not go on for a moment (it retries after a pause).
#[derive(Debug, thiserror::Error)]
enum FollowError {
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] infra::audit::ReadError),
    /// The read model could not say which commits it skipped.
    #[error(transparent)]
    ReadModel(#[from] projections::read::ReadError),
    /// A change could not be written as JSON.
    #[error("a change could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Whom a follower shows changes to.
enum Audience {
    /// One caller, as their listings show (`GET /v1/changes`).
    Caller(Box<Caller>),
    /// Every principal that may list the object's kind in its project (NATS).
    EveryLister,
}

/// Where a follower sends changes.
enum Sink {
    Sse(mpsc::Sender<Event>),
    Nats(async_nats::Client),
}

/// Reads commits in order and sends those its audience may see.
struct Follower {
    state: AppState,
    audience: Audience,
    kinds: Vec<AggregateKind>,
    /// Each object's version and facts as of its last commit this follower read.
    folds: Folds,
    sink: Sink,
}

impl Follower {
    /// Follows the log from `next` on the subjects `filter` matches (all when `None`).
    async fn run(self, filter: Option<&str>, mut next: u64) {
        loop {
            if let Sink::Sse(tx) = &self.sink
                && tx.is_closed()
            {
                return;
            }
            // A stream lives no longer than the token it was opened with: once that
            // expires (checked at least every WAIT), it ends, and the client
            // reconnects with a fresh one from the last id it saw.
            if let Audience::Caller(caller) = &self.audience
                && let Credential::Bearer(token) = &caller.credential
                && self
                    .state
                    .verifier
                    .verify(token, (self.state.clock)())
                    .is_err()
            {
                return;
            }
            let applied = self.state.read.applied();
            if applied < next {
                let waited = self.state.read.wait_for(next, WAIT);
                match &self.sink {
                    // A client that goes while nothing happens gives its slot back at
                    // once, not at the next change or keep-alive.
                    Sink::Sse(tx) => {
                        tokio::select! {
                            _ = waited => {}
                            () = tx.closed() => return,
                        }
                    }
                    Sink::Nats(_) => {
                        let _ = waited.await;
                    }
                }
                continue;
            }
            match self.send_between(filter, &mut next, applied).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "a change stream could not read the log; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Follows the log from `next` as the projector's tap hands it on, reading from
    /// the log itself what the tap did not carry: the commits before a batch's first
    /// that this follower has not seen (it started or fell behind, or the tap left a
    /// batch out).
    async fn run_tapped(self, mut tapped: broadcast::Receiver<Batch>, mut next: u64) {
        loop {
            let batch = match tokio::time::timeout(TAP_QUIET, tapped.recv()).await {
                Ok(Ok(batch)) => batch,
                // The next batch shows the gap.
                Ok(Err(RecvError::Lagged(_))) => continue,
                // The projector is gone, and with it what the read model applies:
                // `keyledger up` stops.
                Ok(Err(RecvError::Closed)) => return,
                // Nothing handed on for a while: what the read model applied meanwhile
                // in batches the tap left out (or this follower lost) is read from the
                // log, so no change waits for the next batch to be announced.
                Err(_) => {
                    let applied = self.state.read.applied();
                    if !self.send_from_log(&mut next, applied).await {
                        return;
                    }
                    continue;
                }
            };
            let Some((gap, unseen)) = tapped_part(next, &batch) else {
                continue;
            };
            if let Some(up_to) = gap
                && !self.send_from_log(&mut next, up_to).await
            {
                return;
            }
            let last = unseen.last().map_or(next, |c| c.seq);
            let messages = unseen
                .iter()
                .map(|c| (c.seq, c.subject.as_str(), c.payload.as_ref()));
            match self.send_read(messages, last, &mut next).await {
                Ok(true) => {}
                Ok(false) => return,
                // The log has it: the next batch finds the gap and reads it from there.
                Err(e) => {
                    tracing::warn!(error = %e, "the change relay could not announce a batch; reading it from the log")
                }
            }
        }
    }

    /// Reads the log from `next` up to `to` and sends what is visible, retrying a read
    /// that fails; moves `next` past `to`. False once the client is gone.
    async fn send_from_log(&self, next: &mut u64, to: u64) -> bool {
        while *next <= to {
            match self.send_between(None, next, to).await {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    tracing::warn!(error = %e, "a change follower could not read the log; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        true
    }

    /// Sends the visible changes from `next` up to `to` (at most [`BATCH`] messages,
    /// or [`BATCH_BYTES`], read), moving `next` past what it read; false once the
    /// client is gone.
    async fn send_between(
        &self,
        filter: Option<&str>,
        next: &mut u64,
        to: u64,
    ) -> Result<bool, FollowError> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut full = false;
        let read = infra::audit::read_log(
            &self.state.js,
            &self.state.config.stream,
            filter.map(str::to_owned),
            *next,
            |m| {
                if m.seq > to {
                    return false;
                }
                bytes += m.payload.len();
                batch.push(m);
                full = batch.len() >= BATCH || bytes >= BATCH_BYTES;
                !full
            },
        )
        .await;
        match read {
            Ok(_) => {}
            Err(e) if e.is_absent() => {}
            Err(e) => return Err(e.into()),
        }
        // A full batch reads on from its last message; otherwise everything up to `to`
        // was read.
        let read_up_to = match batch.last() {
            Some(last) if full => last.seq,
            _ => to,
        };
        self.send_read(
            batch
                .iter()
                .map(|m| (m.seq, m.subject.as_str(), m.payload.as_ref())),
            read_up_to,
            next,
        )
        .await
    }

    /// Sends the visible changes among `messages` (read from the log in order, up to
    /// `read_up_to`, which the read model has applied), moving `next` past each
    /// message as it is done with, so that a failure part-way resumes after what was
    /// sent; false once the client is gone.
    async fn send_read<'m>(
        &self,
        messages: impl Iterator<Item = (u64, &'m str, &'m [u8])> + Clone,
        read_up_to: u64,
        next: &mut u64,
    ) -> Result<bool, FollowError> {
        let skipped: HashSet<u64> = match messages.clone().next() {
            Some((first, ..)) => self
                .state
                .read
                .skipped_between(first, read_up_to)
                .await?
                .into_iter()
                .collect(),
            None => HashSet::new(),
        };
        for (seq, subject, payload) in messages {
            if !skipped.contains(&seq)
                && let Some(change) = self.visible(seq, subject, payload).await?
                && !self.send(&change).await?
            {
                return Ok(false);
            }
            *next = seq + 1;
        }
        *next = read_up_to + 1;
        Ok(true)
    }

    /// Sends one change; false once the client is gone.
    async fn send(&self, change: &Change) -> Result<bool, FollowError> {
        let data = serde_json::to_string(change)?;
        match &self.sink {
            Sink::Sse(tx) => {
                let event = Event::default()
                    .id(change.seq.to_string())
                    .event("change")
                    .data(data);
                return Ok(tx.send(event).await.is_ok());
            }
            Sink::Nats(nats) => {
                if let Err(e) = nats.publish(change_subject(change), data.into()).await {
                    tracing::warn!(error = %e, seq = change.seq, "a change could not be announced on NATS");
                }
            }
        }
        Ok(true)
    }

    /// The change the message at `seq` makes, if the caller may see it.
    async fn visible(
        &self,
        seq: u64,
        subject: &str,
        payload: &[u8],
    ) -> Result<Option<Change>, FollowError> {
        let Some((project, kind, id)) = parse_aggregate_subject(subject) else {
            return Ok(None);
        };
        let project = &project;
        if !self.kinds.contains(&kind) {
            return Ok(None);
        }
        let object = match kind {
            AggregateKind::Secret => domain::ids::SecretId::parse(id.as_str())
                .map(Object::Secret)
                .ok(),
            AggregateKind::Container => domain::ids::ContainerId::parse(id.as_str())
                .map(Object::Container)
                .ok(),
            AggregateKind::Order => domain::ids::OrderId::parse(id.as_str())
                .map(Object::Order)
                .ok(),
            _ => None,
        };
        // What names no object the policy knows is shown to nobody.
        let Some(object) = object else {
            return Ok(None);
        };
        let Ok(commit) = Commit::<RawEvent>::open(payload, &self.state.commit_key) else {
            return Ok(None);
        };
        let version = commit.body.version;
        let named = Named::new(subject, project, kind, id.as_str());
        let before = if version == 1 {
            // A first commit has nothing before it: no read (creates are most commits).
            Facts::default()
        } else {
            let kept = self.folds.get(&named).filter(|(v, _)| v + 1 == version);
            infra::metrics::cache_lookup(self.folds.metric(), kept.is_some());
            match kept {
                Some((_, facts)) => facts,
                None => self.fold_before(kind, subject, seq).await?,
            }
        };
        let after = before
            .clone()
            .evolve(kind, &commit.body.events, self.view());
        let shown =
            self.may_list(project, object, &before) || self.may_list(project, object, &after);
        self.folds.keep(&named, version, after);
        Ok(shown.then(|| Change {
            seq,
            project: project.to_string(),
            kind: kind.as_str().to_owned(),
            id: id.to_string(),
            version,
            events: commit.body.events.iter().map(RawEvent::type_name).collect(),
            at: commit.body.at.to_rfc3339(),
        }))
    }

    /// Whose view of objects the facts keep.
    fn view(&self) -> View<'_> {
        match &self.audience {
            Audience::Caller(caller) => View::Caller(&caller.principal.user),
            Audience::EveryLister => View::EveryLister,
        }
    }

    /// Whether the audience may list `object` in `state`: the caller as the listings
    /// filter, or every lister of its project.
    fn may_list(&self, project: &ProjectId, object: Object, state: &Facts) -> bool {
        if !state.live {
            return false;
        }
        let caller = match &self.audience {
            Audience::Caller(caller) => caller,
            Audience::EveryLister => {
                let (list, kind) = match object {
                    Object::Secret(_) => (Action::ListSecrets, Kind::Secret),
                    Object::Container(_) => (Action::ListContainers, Kind::Container),
                    Object::Order(_) => (Action::ListOrders, Kind::Order),
                };
                return read_by_every_lister(list, kind, &state.acl);
            }
        };
        let Some(creator) = state.creator.as_ref() else {
            return false;
        };
        let facts = SecretFacts {
            id: object,
            project,
            creator,
            acl: &state.acl,
            owning_service: state.owning_service.as_ref(),
        };
        authorize(
            &caller.principal,
            Action::ReadSecret,
            Target::Secret(facts),
            crate::access::env(&self.state, caller),
        )
        .is_ok()
    }

    /// The object's state just before the commit at `seq`, folded from its subject.
    async fn fold_before(
        &self,
        kind: AggregateKind,
        subject: &str,
        seq: u64,
    ) -> Result<Facts, FollowError> {
        let mut commits = Vec::new();
        let read = infra::audit::read_log(
            &self.state.js,
            &self.state.config.stream,
            Some(subject.to_owned()),
            1,
            |m| {
                if m.seq >= seq {
                    return false;
                }
                commits.push(m);
                true
            },
        )
        .await;
        match read {
            Ok(_) => {}
            Err(e) if e.is_absent() => {}
            Err(e) => return Err(e.into()),
        }
        let skipped: HashSet<u64> = match commits.first() {
            Some(first) => self
                .state
                .read
                .skipped_between(first.seq, seq)
                .await?
                .into_iter()
                .collect(),
            None => HashSet::new(),
        };
        Ok(commits
            .iter()
            .filter(|m| !skipped.contains(&m.seq))
            .filter_map(|m| Commit::<RawEvent>::open(&m.payload, &self.state.commit_key).ok())
            .fold(Facts::default(), |state, commit| {
                state.evolve(kind, &commit.body.events, self.view())
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seqs: std::ops::RangeInclusive<u64>) -> Vec<Stored> {
        seqs.map(|seq| Stored {
            seq,
            subject: format!("keyledger.events.p.secret.{seq}"),
            payload: Default::default(),
        })
        .collect()
    }

    /// Every golden event (`domain/tests/golden`) of a secret, a container or an order:
    /// its file's name, its aggregate's kind, and the event.
    fn golden_events() -> Vec<(String, AggregateKind, RawEvent)> {
        let golden =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../domain/tests/golden");
        std::fs::read_dir(&golden)
            .unwrap()
            .filter_map(|file| {
                let path = file.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                let kind = match name.split('.').next().unwrap() {
                    "secret" => AggregateKind::Secret,
                    "container" => AggregateKind::Container,
                    "order" => AggregateKind::Order,
                    _ => return None,
                };
                let json: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                Some((name, kind, RawEvent::new(&json)))
            })
            .collect()
    }

    fn seqs(commits: &[Stored]) -> Vec<u64> {
        commits.iter().map(|c| c.seq).collect()
    }

    /// Every event type keyledger writes (a golden file each), read alone into facts
    /// that every listed event changes, changes them exactly when its type is in
    /// [`FACT_EVENTS`]: the filter in `evolve` drops nothing `read` uses.
    #[test]
    fn the_facts_read_exactly_the_events_listed() {
        let me = UserId::parse("zed").unwrap();
        // Live, made by a user no golden event names, with an ACL none sets.
        let start = Facts {
            live: true,
            creator: Some(me.clone()),
            acl: Acl {
                users: [me.clone()].into(),
                ..Acl::default()
            },
            owning_service: None,
        };
        let mut listed_seen = HashSet::new();
        let mut read = 0;
        for (name, kind, event) in golden_events() {
            let type_name = event.type_name();
            let changed = start.clone().read(kind, &event, View::Caller(&me)) != start;
            let listed = FACT_EVENTS.contains(&type_name.as_str());
            assert_eq!(changed, listed, "{name}: {type_name}");
            let folded =
                start
                    .clone()
                    .evolve(kind, std::slice::from_ref(&event), View::Caller(&me));
            assert_eq!(
                folded,
                start.clone().read(kind, &event, View::Caller(&me)),
                "{name}"
            );
            if listed {
                listed_seen.insert(type_name);
            }
            read += 1;
        }
        assert!(
            read > 30,
            "only {read} golden events of secrets, containers and orders"
        );
        assert_eq!(listed_seen.len(), FACT_EVENTS.len(), "{listed_seen:?}");
    }

    /// Every lister's view keeps two bits of an object, and loses nothing their
    /// policy looks at: folded from any golden event, the facts are as the relay keeps
    /// them, and an ACL reduced to that view lets every lister see an object exactly
    /// when the whole ACL does.
    #[test]
    fn every_listers_view_keeps_what_their_policy_reads_in_two_bits() {
        let mut read = 0;
        for (name, kind, event) in golden_events() {
            for (live, open) in [(true, true), (true, false), (false, true)] {
                let after = Facts::every_lister(live, open).evolve(
                    kind,
                    std::slice::from_ref(&event),
                    View::EveryLister,
                );
                assert_eq!(
                    after,
                    Facts::every_lister(after.live, folds::open(&after.acl)),
                    "{name}"
                );
            }
            read += 1;
        }
        assert!(read > 30, "only {read} golden events");

        let conditions = domain::secret::acl::Conditions {
            source_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        for project_access in [true, false] {
            for conditions in [Default::default(), conditions.clone()] {
                let acl = Acl {
                    project_access,
                    users: [UserId::parse("zed").unwrap()].into(),
                    conditions,
                };
                let reduced = View::EveryLister.acl(&acl);
                for (list, kind) in [
                    (Action::ListSecrets, Kind::Secret),
                    (Action::ListContainers, Kind::Container),
                    (Action::ListOrders, Kind::Order),
                ] {
                    assert_eq!(
                        read_by_every_lister(list, kind, &reduced),
                        read_by_every_lister(list, kind, &acl),
                        "{acl:?}, {list:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_batch_that_continues_the_follower_is_taken_whole() {
        let b = batch(5..=8);
        let (gap, unseen) = tapped_part(5, &b).unwrap();
        assert_eq!((gap, seqs(unseen)), (None, vec![5, 6, 7, 8]));
    }

    #[test]
    fn a_batch_after_a_gap_sends_the_follower_to_the_log_first() {
        let b = batch(9..=12);
        let (gap, unseen) = tapped_part(5, &b).unwrap();
        assert_eq!((gap, seqs(unseen)), (Some(8), vec![9, 10, 11, 12]));
    }

    #[test]
    fn what_the_follower_has_seen_is_never_sent_twice() {
        let b = batch(3..=8);
        let (gap, unseen) = tapped_part(6, &b).unwrap();
        assert_eq!((gap, seqs(unseen)), (None, vec![6, 7, 8]));
        assert!(tapped_part(9, &b).is_none());
        assert!(tapped_part(1, &[]).is_none());
    }
}
