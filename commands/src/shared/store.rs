//! The event store: one JetStream message per commit, on the aggregate's own subject.
//!
//! - **Atomic commands**: a commit holds every event one command produced, so a command
//!   is one message. Commits of concurrent commands (on other aggregates) share one
//!   atomic batch and its fsyncs ([`infra::batch`]); a batch refused as a whole goes
//!   out again one commit at a time, so each command gets its own answer.
//! - **Optimistic concurrency**: every append sets `Nats-Expected-Last-Subject-Sequence`
//!   to the sequence of the aggregate's last commit (0: the aggregate must not exist).
//! - **Idempotency**: `Nats-Msg-Id` is the project and the command id, so JetStream
//!   itself drops a retried publish inside the duplicate window, and one project's
//!   command ids never collide with another's. A commit of a user's request carries
//!   the request's digest in a `Keyledger-Request` header ([`RequestDigest`]), so a
//!   command id sent again with another request is told from a retry at any time.
//! - **Authenticity**: every commit is sealed with the commit key. Loading ignores (and
//!   logs) any message on the subject that keyledger did not write, or that repeats an
//!   earlier commit ([`domain::chain`]), so a foreign message never stops the aggregate
//!   from changing: the next append still expects the subject's true last sequence.
//! - **Loading** reads only the aggregate's subject, through the stream's per-subject
//!   index; nothing here ever reads the whole stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::Context;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use domain::chain::{Broken, Head, Judged, judge};
use domain::commit::{Commit, CommitKey, Digest, EventCodec, Sealed};
use domain::ids::{CommandId, ProjectId};
use domain::principal::Actor;
use serde::{Deserialize, Serialize};

use crate::shared::request::RequestDigest;
use infra::batch::{Batcher, Resend, Write, WriteError};
use infra::log::{LogSettings, SetupError, ensure_event_stream};

/// Where an accepted command landed: its stream sequence and the aggregate version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// Stream sequence of the commit.
    pub seq: u64,
    /// The aggregate's version after it.
    pub version: u64,
}

/// An aggregate's state as of its last commit, with what is needed to append the next.
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    /// The folded state.
    pub state: S,
    /// Stream sequence of the subject's last message (the last commit, or a foreign
    /// message after it): what the next append expects. 0 if there is none.
    pub last_seq: u64,
    /// Number of commits (0 if none).
    pub version: u64,
    /// Hash of the last commit, which the next one links to.
    pub last_hash: Option<Digest>,
    applied: HashMap<CommandId, Applied>,
}

/// A command this aggregate applied: where it landed, what it was and who sent it.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Where it landed.
    pub accepted: Accepted,
    /// The command's name.
    pub command: String,
    /// Who sent it.
    pub actor: Actor,
    /// What the request asked for, when its commit says (`None`: one of keyledger's
    /// own commands, a create, or a commit written before commits carried it).
    pub request: Option<RequestDigest>,
}

/// The message header holding a commit's [`RequestDigest`]. A header, not a member
/// of the commit: it serves only the command loop, and commits stay readable by
/// every build and auditor as they are.
const REQUEST_HEADER: &str = "Keyledger-Request";

impl<S: Default> Default for Loaded<S> {
    fn default() -> Self {
        Self {
            state: S::default(),
            last_seq: 0,
            version: 0,
            last_hash: None,
            applied: HashMap::new(),
        }
    }
}

impl<S> Loaded<S> {
    /// The command `id`, if this aggregate already applied it.
    pub fn applied(&self, id: &CommandId) -> Option<&Applied> {
        self.applied.get(id)
    }

    /// The aggregate's last commit, which the next one must follow.
    pub fn head(&self) -> Option<Head> {
        self.last_hash.map(|hash| Head {
            version: self.version,
            hash,
        })
    }

    /// Notes a foreign message at `seq`: it changes nothing but the sequence the next
    /// append expects.
    pub fn skip(&mut self, seq: u64) {
        self.last_seq = seq;
    }

    /// Folds a commit stored at `seq`, of a request with digest `request`, into the
    /// state.
    pub fn apply<E>(
        &mut self,
        commit: &Commit<E>,
        seq: u64,
        request: Option<RequestDigest>,
        evolve: impl Fn(S, &E) -> S,
    ) where
        S: Default,
    {
        let state = std::mem::take(&mut self.state);
        self.state = commit.body.events.iter().fold(state, evolve);
        self.last_seq = seq;
        self.version = commit.body.version;
        self.last_hash = Some(commit.hash);
        self.applied.insert(
            commit.body.id.clone(),
            Applied {
                accepted: Accepted {
                    seq,
                    version: commit.body.version,
                },
                command: commit.body.command.clone(),
                actor: commit.body.actor.clone(),
                request,
            },
        );
    }
}

/// What happened to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored at this sequence.
    Appended(u64),
    /// JetStream had already stored a message with this command id, at this sequence.
    Duplicate(u64),
    /// Another commit landed on the aggregate first.
    WrongLastSequence,
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// NATS or JetStream failed; retrying later may work.
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
    /// A stored commit is not valid: the log was altered or written by something else.
    #[error("the event log is corrupt at sequence {seq}: {reason}")]
    Corrupt {
        /// The sequence of the bad message.
        seq: u64,
        /// What is wrong with it.
        reason: Broken,
    },
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Reads and appends commits.
#[derive(Debug)]
pub struct EventStore {
    js: Context,
    stream: Stream,
    key: CommitKey,
    messages_read: AtomicU64,
    writer: Batcher,
    quotas: Option<std::sync::Arc<crate::quota::Quotas>>,
}

/// The `Nats-Msg-Id` of a command: JetStream's duplicate window spans the stream, so
/// the id is scoped by project, and one tenant never learns of another's command ids.
fn message_id(project: &ProjectId, command: &CommandId) -> String {
    format!("{project}/{command}")
}

/// The write of `sealed`, expecting its aggregate's last message at `expected_last_seq`,
/// with its command id as the message id and its request's digest, if any.
fn write_of<E: EventCodec>(
    sealed: &Sealed<E>,
    expected_last_seq: u64,
    request: Option<RequestDigest>,
) -> Write {
    let commit = &sealed.commit;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        message_id(&commit.body.aggregate.project, &commit.body.id).as_str(),
    );
    headers.insert(
        async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        expected_last_seq.to_string().as_str(),
    );
    if let Some(request) = request {
        headers.insert(REQUEST_HEADER, request.to_hex().as_str());
    }
    Write {
        subject: commit.body.aggregate.subject(),
        headers,
        payload: sealed.bytes.clone().into(),
    }
}

impl EventStore {
    /// Opens the store, creating the stream with keyledger's settings if needed.
    pub async fn open(
        js: Context,
        settings: &LogSettings,
        key: CommitKey,
    ) -> Result<Self, SetupError> {
        let stream = ensure_event_stream(&js, settings).await?;
        Ok(Self {
            writer: Batcher::new(js.clone(), "events", Resend::Always),
            js,
            stream,
            key,
            messages_read: AtomicU64::new(0),
            quotas: None,
        })
    }

    /// The store with project quotas enforced by `quotas` on every create a user sends.
    #[must_use]
    pub fn with_quotas(mut self, quotas: std::sync::Arc<crate::quota::Quotas>) -> Self {
        self.quotas = Some(quotas);
        self
    }

    /// The quota gate, when quotas are enforced.
    pub(crate) fn quotas(&self) -> Option<&crate::quota::Quotas> {
        self.quotas.as_deref()
    }

    /// The key commits are sealed and checked with.
    pub fn key(&self) -> &CommitKey {
        &self.key
    }

    /// How many stream messages loads have read so far (for tests and metrics: it grows
    /// with the commits of the aggregates loaded, never with the stream).
    pub fn messages_read(&self) -> u64 {
        self.messages_read.load(Ordering::Relaxed)
    }

    /// What the commit writer has done so far: batches, refusals, single writes.
    pub fn writer_stats(&self) -> infra::batch::BatchStats {
        self.writer.stats()
    }

    /// Loads an aggregate: folds every commit on `subject`, in order, read in batches
    /// of direct gets. A message keyledger did not write there (a foreign message, a
    /// replayed copy) is skipped and logged; a malformed one is corruption.
    pub async fn load<E: EventCodec, S: Default>(
        &self,
        subject: &str,
        evolve: impl Fn(S, &E) -> S + Copy,
    ) -> Result<Loaded<S>, StoreError> {
        let mut loaded = Loaded::<S>::default();
        self.catch_up(subject, &mut loaded, evolve).await?;
        Ok(loaded)
    }

    /// Folds into `loaded` the messages on `subject` after those it holds (none, when
    /// nobody wrote since: one request, nothing read).
    pub async fn catch_up<E: EventCodec, S: Default>(
        &self,
        subject: &str,
        loaded: &mut Loaded<S>,
        evolve: impl Fn(S, &E) -> S + Copy,
    ) -> Result<(), StoreError> {
        let mut failed = None;
        let read = infra::audit::read_log(
            &self.js,
            &self.stream.cached_info().config.name,
            Some(subject.to_owned()),
            loaded.last_seq + 1,
            |m| {
                self.messages_read.fetch_add(1, Ordering::Relaxed);
                let seq = m.seq;
                match judge::<E>(subject, &m.payload, Some(&self.key), loaded.head().as_ref()) {
                    Ok(Judged::Next(commit)) => {
                        let request = m
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(REQUEST_HEADER))
                            .and_then(|v| RequestDigest::from_hex(v.as_str()));
                        loaded.apply(&commit, seq, request, evolve);
                    }
                    Ok(Judged::Foreign(reason)) => {
                        infra::audit::report_foreign(seq, subject, &reason);
                        loaded.skip(seq);
                    }
                    Err(reason) => {
                        failed = Some(StoreError::Corrupt { seq, reason });
                        return false;
                    }
                }
                true
            },
        )
        .await;
        match (failed, read) {
            (Some(corrupt), _) => Err(corrupt),
            (None, Ok(_)) => Ok(()),
            (None, Err(e)) if e.is_absent() => Ok(()),
            (None, Err(e)) => Err(unavailable(e)),
        }
    }

    /// Appends `commit`, of a request with digest `request`, if the aggregate's last
    /// commit is still at `expected_last_seq`.
    pub async fn append<E: EventCodec>(
        &self,
        commit: &Sealed<E>,
        expected_last_seq: u64,
        request: Option<RequestDigest>,
    ) -> Result<AppendOutcome, StoreError> {
        let write = write_of(commit, expected_last_seq, request);
        // A write whose ack is lost is retried once: JetStream deduplicates it by
        // command id (Duplicate), or reports the commit as the subject's last
        // (WrongLastSequence, which the caller resolves by command id).
        let mut attempts = 0;
        loop {
            attempts += 1;
            return match self.writer.write(write.clone()).await {
                Ok(stored) if stored.duplicate => Ok(AppendOutcome::Duplicate(stored.seq)),
                Ok(stored) => Ok(AppendOutcome::Appended(stored.seq)),
                Err(WriteError::WrongLastSequence) => Ok(AppendOutcome::WrongLastSequence),
                Err(WriteError::TimedOut) if attempts < 2 => continue,
                Err(e) => Err(unavailable(e)),
            };
        }
    }

    /// Appends `commit` and `with` together or not at all (one atomic batch, `commit`
    /// first), each if its aggregate's last commit is still at the sequence given:
    /// a create and the quota charge that counts it. `Appended` names `commit`'s
    /// sequence (`with` is at the next); any refusal is `WrongLastSequence`, which the
    /// command loop resolves by reading again (a retry finds its command applied).
    pub async fn append_together<E: EventCodec, F: EventCodec>(
        &self,
        (commit, expected_last_seq, request): (&Sealed<E>, u64, Option<RequestDigest>),
        (with, with_expected_last_seq): (&Sealed<F>, u64),
    ) -> Result<AppendOutcome, StoreError> {
        let writes = vec![
            write_of(commit, expected_last_seq, request),
            write_of(with, with_expected_last_seq, None),
        ];
        let mut attempts = 0;
        loop {
            attempts += 1;
            return match self.writer.write_together(writes.clone()).await {
                Ok(stored) => Ok(AppendOutcome::Appended(stored.first().map_or(0, |s| s.seq))),
                Err(WriteError::WrongLastSequence) => Ok(AppendOutcome::WrongLastSequence),
                // Sent again with the same ids and expectations: it cannot land twice.
                Err(WriteError::TimedOut) if attempts < 2 => continue,
                Err(e) => Err(unavailable(e)),
            };
        }
    }

    /// The stream's last sequence: a read model at it has seen every commit so far.
    pub async fn last_sequence(&self) -> Result<u64, StoreError> {
        let mut stream = self.stream.clone();
        let info = stream.info().await.map_err(unavailable)?;
        Ok(info.state.last_sequence)
    }

    /// The commit stored at `seq` if it is on `subject` and keyledger wrote it. A
    /// message on another subject (another aggregate, maybe of another kind, whose
    /// events `E` cannot read) is `None`, not an error.
    pub(crate) async fn commit_at<E: EventCodec>(
        &self,
        seq: u64,
        subject: &str,
    ) -> Result<Option<Commit<E>>, StoreError> {
        let message = self
            .stream
            .get_raw_message(seq)
            .await
            .map_err(unavailable)?;
        self.messages_read.fetch_add(1, Ordering::Relaxed);
        if message.subject.as_str() != subject {
            return Ok(None);
        }
        self.authentic(seq, &message.subject, &message.payload)
    }

    /// The last message on `subject`, with its sequence and the commit it holds if
    /// keyledger wrote it.
    pub async fn last_commit<E: EventCodec>(
        &self,
        subject: &str,
    ) -> Result<Option<(u64, Option<Commit<E>>)>, StoreError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => {
                self.messages_read.fetch_add(1, Ordering::Relaxed);
                let seq = message.sequence;
                Ok(Some((seq, self.authentic(seq, subject, &message.payload)?)))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The commit in `bytes` if keyledger wrote it (`None`, logged, if not).
    fn authentic<E: EventCodec>(
        &self,
        seq: u64,
        subject: &str,
        bytes: &[u8],
    ) -> Result<Option<Commit<E>>, StoreError> {
        match Commit::open(bytes, &self.key) {
            Ok(commit) => Ok(Some(commit)),
            Err(e) if e.is_foreign() => {
                infra::audit::report_foreign(seq, subject, &e.to_string());
                Ok(None)
            }
            Err(e) => Err(StoreError::Corrupt {
                seq,
                reason: Broken::Unreadable(e),
            }),
        }
    }
}
