//! Group commit: writes to one stream that arrive together share one JetStream atomic
//! batch (ADR-50), so they share its fsyncs.
//!
//! With `sync_interval: always`, nats-server fsyncs every message published on its
//! own, however many are in flight; an atomic batch costs about four fsyncs whatever
//! its size. A batch commits in ~4 ms on this project's reference machine where a
//! single publish takes ~0.5 ms, so batching pays only when enough writes wait.
//!
//! The writer is one task that clocks itself. Under light load each write goes out at
//! once as an ordinary publish, up to [`MIN_BATCH`] in flight, so a write waits for
//! nothing but its own fsync. Once that many are in flight, writes wait; as soon as
//! [`MIN_BATCH`] wait, they go out together as one atomic batch (up to [`MAX_BATCH`]),
//! and while a batch is out the next one gathers, so under heavy load batches grow
//! until they carry it.
//!
//! Each message's headers (the expected last subject sequence, the message id) are
//! checked against the stream as it was before the batch. When the server refuses a
//! batch (one stale expectation, one duplicate message id, the batch limits), nothing
//! of it was stored, so its writes go out again one by one and each gets its own
//! answer; so do they when the batch could not even be sent. When the commit's answer
//! is lost, whether (or how much of) the batch was stored is unknown (a server out of
//! storage can store part of one without answering): every write in it is answered
//! [`WriteError::TimedOut`] and its caller decides. The event store retries with the
//! same message id and expectation, which cannot store a commit twice.
//!
//! The event log and the key store are written this way, each with a writer of its
//! own (a batch is on one stream). nats-server stages a batch's messages in a
//! directory of the stream's own (`batches/`) until the commit, and removes it once the
//! batch is stored or abandoned: a wrapped data key is then, file by file, only where
//! a single put would have left it, and crypto-shredding's secure erase overwrites
//! that (`tests/group_commit.rs` searches the data directory after a shred). Like any
//! erase through a filesystem, neither reaches blocks a disk keeps after a file is
//! removed or rewritten; that needs an encrypted disk (docs/operations.md, "The
//! log").
//!
//! Atomic batches need nats-server 2.12; an older server ignores the batch headers and
//! stores each message on its own, so against one the writer never batches (and if a
//! commit's answer does not name its batch, it stops batching and answers "timed
//! out": the writes may be stored, one by one).
//!
//! One batch is in flight per writer, and up to [`MIN_BATCH`] single publishes: both
//! were measured against the alternatives. nats-server commits a stream's batches one
//! after another (about 4.5 ms each under 64 HTTP clients creating), so a second or
//! fourth batch in flight only split the same commits into smaller batches: HTTP
//! creates at 64 clients fell from 1,449 and 1,427/s to 1,318 and 1,218 (two in flight)
//! and 1,206 and 1,112 (four). Batching from 3 or 2 waiting writes instead of 8 cost
//! 8 clients with one create each a quarter to a half of their rate (617 and 559/s,
//! 499 and 439, against 802 and 983): pipelined single publishes overlap on the
//! server better than a small batch's fixed cost.
//!
//! A round never holds two writes to one subject: only the first write per subject in
//! a batch may carry an expectation, so a second one waits for the next round.
//!
//! Hand-written rather than taken from `jetstream-extra` (Synadia's batch publisher),
//! which builds on async-nats 0.48, not the 0.51 keyledger uses; the protocol is three
//! headers.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use serde::Deserialize;
use std::sync::atomic::AtomicBool;
use tokio::sync::{mpsc, oneshot};

/// Fewest writes sent as one atomic batch, and most ordinary publishes in flight:
/// below it, pipelined publishes (about one fsync each) finish sooner than a batch
/// (about four).
pub const MIN_BATCH: usize = 8;

/// Most writes in one batch (the server's limit is 1,000).
pub const MAX_BATCH: usize = 256;

/// How long a batch's commit may wait for its answer.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes that may wait for the writer task before callers wait to hand theirs over.
const QUEUE: usize = 4 * MAX_BATCH;

/// What a writer does with the writes of a batch the server refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Sends each again on its own. Right where a second copy cannot be stored: the
    /// log's writes carry message ids and expectations, so a write the batch stored
    /// before failing part-way is answered as a duplicate.
    Always,
    /// Sends each again only when nothing of the batch was stored: it could not be sent
    /// whole, or the server refused it on its own checks (disabled, incomplete, too
    /// large, too many in flight, ...).
    /// A batch that failed part-way (storage exhausted) may have stored some writes,
    /// and a second copy of a wrapped key would replace the first without erasing it,
    /// out of crypto-shredding's reach: each write is answered as failed instead, and
    /// its command fails (a retry makes a new key; a key stored without its commit is
    /// an orphan that opens nothing).
    IfNothingStored,
}

impl Resend {
    /// Whether the writes of a batch refused with `code` go out again one by one.
    fn after(self, code: Option<ErrorCode>) -> bool {
        match self {
            Resend::Always => true,
            // No code: the batch was not sent whole, so nothing of it was committed.
            Resend::IfNothingStored => code.is_none_or(refused_before_storing),
        }
    }
}

/// Whether the server refuses a batch with `code` before storing any of it: the codes
/// of its atomic-publish checks (nats-server's `JSAtomicPublish*` errors), and a failed
/// expectation, all checked before the first message is stored.
fn refused_before_storing(code: ErrorCode) -> bool {
    matches!(
        code.0,
        10071 // wrong last sequence
        | 10174 // atomic publish is disabled
        | 10175 // sequence missing
        | 10176 // batch incomplete
        | 10177 // unsupported header
        | 10179 // invalid batch id
        | 10199 // batch too large
        | 10200 // invalid batch commit
        | 10201 // duplicate message id in the batch
        | 10210 // too many batches in flight
    )
}

/// Where a write was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Its stream sequence.
    pub seq: u64,
    /// Whether JetStream already held a message with its id (then `seq` is that one's).
    pub duplicate: bool,
}

/// Why a write was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// Its subject's last message is not the one it expected.
    #[error("the subject's last message is not the one expected")]
    WrongLastSequence,
    /// No answer came in time: it may or may not have been stored.
    #[error("JetStream did not answer in time; the write may have been stored")]
    TimedOut,
    /// NATS or JetStream failed.
    #[error("{0}")]
    Failed(String),
}

/// One message to store: subject, headers (message id, expectations) and payload.
#[derive(Debug, Clone)]
pub struct Write {
    /// Its subject.
    pub subject: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its payload.
    pub payload: Bytes,
}

struct Pending {
    write: Write,
    answer: oneshot::Sender<Result<Stored, WriteError>>,
}

/// What a writer has done so far (for tests and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Atomic batches stored.
    pub batches: u64,
    /// Writes stored in them.
    pub batched_writes: u64,
    /// Batches the server refused (their writes then went out one by one).
    pub refused: u64,
    /// Writes published on their own.
    pub single_writes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    batched_writes: AtomicU64,
    refused: AtomicU64,
    single_writes: AtomicU64,
}

/// Stores messages on one stream, grouping those that arrive together.
#[derive(Debug, Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Pending>,
    counters: Arc<Counters>,
    /// The writer, for writes that must land together ([`Batcher::write_together`]).
    writer: Arc<Writer>,
}

impl Batcher {
    /// A writer publishing through `js`, for a stream that allows atomic publishes.
    /// (If it does not, or the server predates them, every write goes out on its own.)
    /// `stream` names what it writes in metrics: `events` or `keys`; `resend` says what
    /// becomes of the writes of a batch the server refuses.
    pub fn new(js: Context, stream: &'static str, resend: Resend) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let atomic = takes_atomic_batches(&js.client().server_info().version);
        if !atomic {
            tracing::warn!(
                "nats-server predates atomic batches (2.12); writing one message at a time"
            );
        }
        let writer = Arc::new(Writer {
            js,
            stream,
            resend,
            atomic: AtomicBool::new(atomic),
            counters: counters.clone(),
        });
        tokio::spawn(run(writer.clone(), pending));
        Self {
            queue,
            counters,
            writer,
        }
    }

    /// What this writer has done so far.
    pub fn stats(&self) -> BatchStats {
        let c = &self.counters;
        BatchStats {
            batches: c.batches.load(Ordering::Relaxed),
            batched_writes: c.batched_writes.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            single_writes: c.single_writes.load(Ordering::Relaxed),
        }
    }

    /// Stores `write`; answers once it is on disk (or why not). Records how long that
    /// took, as [`Batcher::write_together`] does for each of its writes.
    pub async fn write(&self, write: Write) -> Result<Stored, WriteError> {
        let started = std::time::Instant::now();
        let stored = self.hand_over(write).await;
        self.waited(started, 1);
        stored
    }

    /// Records that `writes` writes waited since `started` for their answer.
    fn waited(&self, started: std::time::Instant, writes: usize) {
        let waited = started.elapsed().as_secs_f64();
        let histogram =
            metrics::histogram!(crate::metrics::GROUP_COMMIT_WAIT, "stream" => self.writer.stream);
        for _ in 0..writes {
            histogram.record(waited);
        }
    }

    async fn hand_over(&self, write: Write) -> Result<Stored, WriteError> {
        let (answer, stored) = oneshot::channel();
        self.queue
            .send(Pending { write, answer })
            .await
            .map_err(|_| WriteError::Failed("the writer has stopped".into()))?;
        stored
            .await
            .map_err(|_| WriteError::Failed("the writer has stopped".into()))?
    }
}

impl Batcher {
    /// Stores `writes` as one atomic batch of their own, all or none, each at the
    /// sequence after the one before; answers once they are on disk. Refused as a
    /// whole when one expectation fails or one message id was seen
    /// ([`WriteError::WrongLastSequence`]: the caller reads again and decides again).
    /// Needs atomic batches (nats-server 2.12, `allow_atomic` on the stream); without
    /// them nothing is written and the answer says so.
    pub async fn write_together(&self, writes: Vec<Write>) -> Result<Vec<Stored>, WriteError> {
        let (started, n) = (std::time::Instant::now(), writes.len());
        let stored = self.land_together(writes).await;
        self.waited(started, n);
        stored
    }

    async fn land_together(&self, writes: Vec<Write>) -> Result<Vec<Stored>, WriteError> {
        if !self.writer.atomic.load(Ordering::Relaxed) {
            return Err(WriteError::Failed(NO_ATOMIC_BATCHES.into()));
        }
        let (round, answers): (Vec<Pending>, Vec<_>) = writes
            .into_iter()
            .map(|write| {
                let (answer, stored) = oneshot::channel();
                (Pending { write, answer }, stored)
            })
            .unzip();
        let n = round.len() as u64;
        match self.writer.commit(&round).await {
            Committed::At(last) => {
                let first = last
                    .checked_sub(n.saturating_sub(1))
                    .filter(|&first| first > 0)
                    .ok_or_else(|| {
                        WriteError::Failed(format!(
                            "JetStream acknowledged a batch of {n} ending at sequence {last}"
                        ))
                    })?;
                #[expect(clippy::cast_precision_loss, reason = "a handful of writes")]
                metrics::histogram!(crate::metrics::GROUP_COMMIT_BATCH, "stream" => self.writer.stream)
                    .record(n as f64);
                drop(answers);
                Ok((first..first + n)
                    .map(|seq| Stored {
                        seq,
                        duplicate: false,
                    })
                    .collect())
            }
            Committed::Refused(Some(ErrorCode::ATOMIC_PUBLISH_DISABLED)) | Committed::Ignored => {
                self.writer.atomic.store(false, Ordering::Relaxed);
                Err(WriteError::Failed(NO_ATOMIC_BATCHES.into()))
            }
            Committed::Refused(Some(_)) => Err(WriteError::WrongLastSequence),
            Committed::Refused(None) => Err(WriteError::Failed(
                "the writes could not be sent to JetStream".into(),
            )),
            Committed::Lost(error) => Err(error),
        }
    }
}

const NO_ATOMIC_BATCHES: &str = "writes that must land together need JetStream atomic batches \
                                 (nats-server 2.12 or later, and allow_atomic on the stream)";

/// The commit's answer: a publish acknowledgement naming the batch.
#[derive(Deserialize)]
struct BatchAck {
    #[serde(rename = "seq")]
    sequence: u64,
    #[serde(default)]
    batch: String,
    #[serde(default)]
    count: usize,
}

/// Whether a nats-server of `version` (e.g. "2.15.1") takes atomic batches.
fn takes_atomic_batches(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    matches!(
        (parts.next().flatten(), parts.next().flatten()),
        (Some(major), Some(minor)) if (major, minor) >= (2, 12)
    )
}

/// What became of a batch.
enum Committed {
    /// Stored; the last message at this sequence (a batch's messages are contiguous).
    At(u64),
    /// Refused, or not sent whole, with nothing stored: each write can go out on its
    /// own. The server's error code, if it refused.
    Refused(Option<ErrorCode>),
    /// The server answered as if it did not know atomic batches.
    Ignored,
    /// Unknown.
    Lost(WriteError),
}

#[derive(Debug)]
struct Writer {
    js: Context,
    /// What it writes, for metrics.
    stream: &'static str,
    /// What becomes of a refused batch's writes.
    resend: Resend,
    /// Whether the stream takes atomic batches (until it refuses one as disabled).
    atomic: AtomicBool,
    counters: Arc<Counters>,
}

/// Writes out what `queue` brings, as the module describes, until every [`Batcher`]
/// is dropped and nothing is left in flight.
async fn run(writer: Arc<Writer>, mut queue: mpsc::Receiver<Pending>) {
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    // Subjects with a write out: a second write to one waits for the first.
    let mut busy: HashSet<String> = HashSet::new();
    let mut singles: FuturesUnordered<BoxFuture<'static, Vec<String>>> = FuturesUnordered::new();
    let mut batch: Option<BoxFuture<'static, Vec<String>>> = None;
    let mut open = true;
    loop {
        while waiting.len() < 2 * MAX_BATCH {
            match queue.try_recv() {
                Ok(pending) => waiting.push_back(pending),
                Err(_) => break,
            }
        }
        if batch.is_none() {
            let atomic = writer.atomic.load(Ordering::Relaxed);
            if atomic && waiting.len() >= MIN_BATCH {
                let round = take(&mut waiting, &mut busy, MAX_BATCH);
                let (writer, subjects) = (writer.clone(), subjects_of(&round));
                if round.len() >= MIN_BATCH {
                    batch = Some(Box::pin(async move {
                        writer.batch(round).await;
                        subjects
                    }));
                } else {
                    singles.push(Box::pin(async move {
                        writer.each(round).await;
                        subjects
                    }));
                }
            }
            while batch.is_none() && singles.len() < MIN_BATCH && !waiting.is_empty() {
                let round = take(&mut waiting, &mut busy, 1);
                if round.is_empty() {
                    break;
                }
                let (writer, subjects) = (writer.clone(), subjects_of(&round));
                singles.push(Box::pin(async move {
                    writer.each(round).await;
                    subjects
                }));
            }
        }
        if !open && waiting.is_empty() && batch.is_none() && singles.is_empty() {
            return;
        }
        tokio::select! {
            pending = queue.recv(), if open && waiting.len() < 2 * MAX_BATCH => match pending {
                Some(pending) => waiting.push_back(pending),
                None => open = false,
            },
            Some(done) = singles.next(), if !singles.is_empty() => {
                for subject in done {
                    busy.remove(&subject);
                }
            }
            done = async {
                match batch.as_mut() {
                    Some(batch) => batch.await,
                    None => std::future::pending().await,
                }
            }, if batch.is_some() => {
                batch = None;
                for subject in done {
                    busy.remove(&subject);
                }
            }
        }
    }
}

fn subjects_of(round: &[Pending]) -> Vec<String> {
    round.iter().map(|p| p.write.subject.clone()).collect()
}

impl Writer {
    /// Publishes `round` as one atomic batch and answers each write.
    async fn batch(&self, round: Vec<Pending>) {
        let committed = self.commit(&round).await;
        let n = round.len() as u64;
        match committed {
            Committed::At(last) => {
                // A round is never empty, so `n - 1` does not underflow.
                let Some(first) = last.checked_sub(n - 1).filter(|&first| first > 0) else {
                    let error = WriteError::Failed(format!(
                        "JetStream acknowledged a batch of {n} ending at sequence {last}"
                    ));
                    return answer_all(round, &error);
                };
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters.batched_writes.fetch_add(n, Ordering::Relaxed);
                #[expect(clippy::cast_precision_loss, reason = "at most MAX_BATCH")]
                metrics::histogram!(crate::metrics::GROUP_COMMIT_BATCH, "stream" => self.stream)
                    .record(n as f64);
                for (seq, pending) in (first..).zip(round) {
                    let stored = Stored {
                        seq,
                        duplicate: false,
                    };
                    let _ = pending.answer.send(Ok(stored));
                }
            }
            Committed::Ignored => {
                tracing::warn!(
                    "nats-server ignored an atomic batch (a server before 2.12?); writing one \
                     message at a time"
                );
                self.atomic.store(false, Ordering::Relaxed);
                answer_all(round, &WriteError::TimedOut);
            }
            Committed::Refused(code) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                if code == Some(ErrorCode::ATOMIC_PUBLISH_DISABLED) {
                    tracing::warn!(
                        "the stream does not allow atomic publishes; writing one message at a time"
                    );
                    self.atomic.store(false, Ordering::Relaxed);
                }
                if self.resend.after(code) {
                    self.each(round).await;
                } else {
                    tracing::warn!(
                        code = code.map(|c| c.0),
                        "JetStream failed a batch part-way; its writes are not sent again"
                    );
                    let error = WriteError::Failed(format!(
                        "JetStream failed the batch (error code {}); it may be out of storage",
                        code.map_or_else(|| "none".to_owned(), |c| c.0.to_string())
                    ));
                    answer_all(round, &error);
                }
            }
            Committed::Lost(error) => answer_all(round, &error),
        }
    }

    async fn commit(&self, round: &[Pending]) -> Committed {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let client = self.js.client();
        let Some((last, rest)) = round.split_last() else {
            return Committed::Lost(WriteError::Failed("an empty batch".into()));
        };
        let headers = |write: &Write, sequence: usize| {
            let mut headers = write.headers.clone();
            headers.insert("Nats-Batch-Id", id.as_str());
            headers.insert("Nats-Batch-Sequence", sequence.to_string().as_str());
            headers
        };
        for (i, pending) in rest.iter().enumerate() {
            let write = &pending.write;
            if let Err(e) = client
                .publish_with_headers(
                    write.subject.clone(),
                    headers(write, i + 1),
                    write.payload.clone(),
                )
                .await
            {
                // Nothing was committed (the server drops the batch once it goes idle):
                // the writes go out one by one, and one that cannot be sent (too large)
                // fails alone.
                tracing::debug!(error = %e, "a batch could not be sent");
                return Committed::Refused(None);
            }
        }
        let mut commit = headers(&last.write, round.len());
        commit.insert("Nats-Batch-Commit", "1");
        let request = async_nats::Request::new()
            .headers(commit)
            .payload(last.write.payload.clone())
            .timeout(Some(COMMIT_TIMEOUT));
        let reply = match client
            .send_request(last.write.subject.clone(), request)
            .await
        {
            Ok(reply) => reply,
            Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                return Committed::Lost(WriteError::TimedOut);
            }
            // Nothing took the commit, so nothing was stored.
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                return Committed::Refused(None);
            }
            Err(e) => return Committed::Lost(WriteError::Failed(e.to_string())),
        };
        match serde_json::from_slice::<Response<BatchAck>>(&reply.payload) {
            Ok(Response::Ok(ack)) if ack.batch == id && ack.count == round.len() => {
                Committed::At(ack.sequence)
            }
            Ok(Response::Ok(ack)) if ack.batch.is_empty() => Committed::Ignored,
            Ok(Response::Ok(_)) => Committed::Lost(WriteError::Failed(
                "JetStream acknowledged another batch than the one committed".into(),
            )),
            Ok(Response::Err { error }) => Committed::Refused(Some(error.error_code())),
            Err(e) => Committed::Lost(WriteError::Failed(format!(
                "JetStream's answer to a batch commit is not an acknowledgement: {e}"
            ))),
        }
    }

    /// Publishes each write on its own, pipelined, and answers each.
    async fn each(&self, round: Vec<Pending>) {
        let n = round.len() as u64;
        self.counters.single_writes.fetch_add(n, Ordering::Relaxed);
        // Each is a batch of one on the log.
        let batches =
            metrics::histogram!(crate::metrics::GROUP_COMMIT_BATCH, "stream" => self.stream);
        for _ in 0..n {
            batches.record(1.0);
        }
        let stored = join_all(round.iter().map(|pending| async {
            let write = &pending.write;
            let ack = match self
                .js
                .publish_with_headers(
                    write.subject.clone(),
                    write.headers.clone(),
                    write.payload.clone(),
                )
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match ack {
                Ok(ack) => Ok(Stored {
                    seq: ack.sequence,
                    duplicate: ack.duplicate,
                }),
                Err(e) if wrong_last_sequence(&e) => Err(WriteError::WrongLastSequence),
                Err(e) if e.kind() == PublishErrorKind::TimedOut => Err(WriteError::TimedOut),
                Err(e) => Err(WriteError::Failed(e.to_string())),
            }
        }))
        .await;
        for (pending, stored) in round.into_iter().zip(stored) {
            let _ = pending.answer.send(stored);
        }
    }
}

/// Whether a publish failed on its expected last subject sequence: the subject has
/// moved on (10071), or, on a clustered stream, another write to it is still in flight
/// (10164), which is the same race.
fn wrong_last_sequence(e: &async_nats::jetstream::context::PublishError) -> bool {
    e.kind() == PublishErrorKind::WrongLastSequence
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
            .is_some_and(|s| s.error_code() == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT)
}

fn answer_all(round: Vec<Pending>, error: &WriteError) {
    for pending in round {
        let _ = pending.answer.send(Err(error.clone()));
    }
}

/// The next writes to send, in order: at most `most`, none to a subject in `busy` or
/// twice to one subject (such a write waits, in its place, for a later round). Their
/// subjects are added to `busy`.
fn take(waiting: &mut VecDeque<Pending>, busy: &mut HashSet<String>, most: usize) -> Vec<Pending> {
    let mut round = Vec::new();
    let mut later = VecDeque::new();
    while let Some(pending) = waiting.pop_front() {
        if round.len() >= most {
            waiting.push_front(pending);
            break;
        }
        if busy.insert(pending.write.subject.clone()) {
            round.push(pending);
        } else {
            later.push_back(pending);
        }
    }
    later.append(waiting);
    *waiting = later;
    round
}

#[cfg(test)]
mod tests {
    use super::{ErrorCode, Resend, takes_atomic_batches};

    #[test]
    fn key_writes_are_sent_again_only_when_their_batch_stored_nothing() {
        let out_of_storage = Some(ErrorCode::STORAGE_RESOURCES_EXCEEDED);
        assert!(Resend::Always.after(out_of_storage));
        assert!(!Resend::IfNothingStored.after(out_of_storage));
        assert!(!Resend::IfNothingStored.after(Some(ErrorCode::ACCOUNT_RESOURCES_EXCEEDED)));
        // Refused on the batch's own checks, or never sent whole: nothing stored.
        assert!(Resend::IfNothingStored.after(Some(ErrorCode::ATOMIC_PUBLISH_DISABLED)));
        assert!(Resend::IfNothingStored.after(Some(ErrorCode(10210))));
        assert!(Resend::IfNothingStored.after(None));
    }

    #[test]
    fn atomic_batches_need_nats_server_2_12() {
        for (version, atomic) in [
            ("2.15.1", true),
            ("2.12.0", true),
            ("3.0.0", true),
            ("2.11.11", false),
            ("2.10.0-beta.1", false),
            ("", false),
            ("x.y", false),
        ] {
            assert_eq!(takes_atomic_batches(version), atomic, "{version}");
        }
    }
}
