//! The event store: one JetStream message per commit, on the aggregate's own subject.
//!
//! - **Atomic commands**: a commit holds every event one command produced, so a command
//!   is one publish, with no reliance on batch publish.
//! - **Optimistic concurrency**: every append sets `Nats-Expected-Last-Subject-Sequence`
//!   to the sequence of the aggregate's last commit (0: the aggregate must not exist).
//! - **Idempotency**: `Nats-Msg-Id` is the command id, so JetStream itself drops a
//!   retried publish inside the duplicate window.
//! - **Loading** reads only the aggregate's subject, through the stream's per-subject
//!   index; nothing here ever reads the whole stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use domain::commit::{Commit, Digest, EventCodec};
use domain::ids::CommandId;
use serde::{Deserialize, Serialize};

use crate::log::{LogSettings, SetupError, ensure_event_stream};

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
    /// Stream sequence of the last commit; 0 if there is none.
    pub last_seq: u64,
    /// Number of commits (0 if none).
    pub version: u64,
    /// Hash of the last commit, which the next one links to.
    pub last_hash: Option<Digest>,
    applied: HashMap<CommandId, Accepted>,
}

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
    /// Where `command` landed, if this aggregate already applied it.
    pub fn applied(&self, command: &CommandId) -> Option<Accepted> {
        self.applied.get(command).copied()
    }

    /// Folds a commit stored at `seq` into the state.
    pub fn apply<E>(&mut self, commit: &Commit<E>, seq: u64, evolve: impl Fn(S, &E) -> S)
    where
        S: Default,
    {
        let state = std::mem::take(&mut self.state);
        self.state = commit.body.events.iter().fold(state, evolve);
        self.last_seq = seq;
        self.version = commit.body.version;
        self.last_hash = Some(commit.hash);
        self.applied.insert(
            commit.body.id.clone(),
            Accepted {
                seq,
                version: commit.body.version,
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
        reason: String,
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
    messages_read: AtomicU64,
}

impl EventStore {
    /// Opens the store, creating the stream with keyledger's settings if needed.
    pub async fn open(js: Context, settings: &LogSettings) -> Result<Self, SetupError> {
        let stream = ensure_event_stream(&js, settings).await?;
        Ok(Self {
            js,
            stream,
            messages_read: AtomicU64::new(0),
        })
    }

    /// How many stream messages loads have read so far (for tests and metrics: it grows
    /// with the commits of the aggregates loaded, never with the stream).
    pub fn messages_read(&self) -> u64 {
        self.messages_read.load(Ordering::Relaxed)
    }

    /// Folds every commit on `subject`, checking hashes and chain links on the way.
    pub async fn load<E: EventCodec, S: Default>(
        &self,
        subject: &str,
        evolve: impl Fn(S, &E) -> S + Copy,
    ) -> Result<Loaded<S>, StoreError> {
        let mut loaded = Loaded::<S>::default();
        let mut previous: Option<Commit<E>> = None;
        let mut next = 1;
        loop {
            let message = match self
                .stream
                .get_first_raw_message_by_subject(subject, next)
                .await
            {
                Ok(m) => m,
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(unavailable(e)),
            };
            self.messages_read.fetch_add(1, Ordering::Relaxed);
            let seq = message.sequence;
            let commit = parse_commit::<E>(seq, &message.payload)?;
            if commit.body.aggregate.subject() != subject {
                return Err(StoreError::Corrupt {
                    seq,
                    reason: format!(
                        "commit for {} stored on {subject}",
                        commit.body.aggregate.subject()
                    ),
                });
            }
            commit
                .check_link(previous.as_ref())
                .map_err(|reason| StoreError::Corrupt { seq, reason })?;
            loaded.apply(&commit, seq, evolve);
            previous = Some(commit);
            next = seq + 1;
        }
        Ok(loaded)
    }

    /// Appends `commit` if the aggregate's last commit is still at `expected_last_seq`.
    pub async fn append<E: EventCodec>(
        &self,
        commit: &Commit<E>,
        expected_last_seq: u64,
    ) -> Result<AppendOutcome, StoreError> {
        let subject = commit.body.aggregate.subject();
        let message = PublishMessage::build()
            .payload(commit.to_bytes().into())
            .message_id(commit.body.id.as_str())
            .expected_last_subject_sequence(expected_last_seq);
        // A publish whose ack is lost is retried once: JetStream deduplicates it by
        // command id (Duplicate), or reports the commit as the subject's last
        // (WrongLastSequence, which the caller resolves by command id).
        let mut attempts = 0;
        loop {
            attempts += 1;
            let ack = match self.js.send_publish(subject.clone(), message.clone()).await {
                Ok(pending) => pending.await,
                Err(e) => Err(e),
            };
            return match ack {
                Ok(ack) if ack.duplicate => Ok(AppendOutcome::Duplicate(ack.sequence)),
                Ok(ack) => Ok(AppendOutcome::Appended(ack.sequence)),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    Ok(AppendOutcome::WrongLastSequence)
                }
                Err(e) if e.kind() == PublishErrorKind::TimedOut && attempts < 2 => continue,
                Err(e) => Err(unavailable(e)),
            };
        }
    }

    /// The commit stored at `seq`.
    pub async fn commit_at<E: EventCodec>(&self, seq: u64) -> Result<Commit<E>, StoreError> {
        let message = self
            .stream
            .get_raw_message(seq)
            .await
            .map_err(unavailable)?;
        self.messages_read.fetch_add(1, Ordering::Relaxed);
        parse_commit(seq, &message.payload)
    }

    /// The last commit on `subject` and its sequence, if any.
    pub async fn last_commit<E: EventCodec>(
        &self,
        subject: &str,
    ) -> Result<Option<(u64, Commit<E>)>, StoreError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => {
                self.messages_read.fetch_add(1, Ordering::Relaxed);
                let seq = message.sequence;
                Ok(Some((seq, parse_commit(seq, &message.payload)?)))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn parse_commit<E: EventCodec>(seq: u64, bytes: &[u8]) -> Result<Commit<E>, StoreError> {
    Commit::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        seq,
        reason: e.to_string(),
    })
}
