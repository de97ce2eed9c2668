//! The projector: an ordered consumer of the event stream that applies commits to the
//! read model in batches. Each batch is one SQL transaction that also records the last
//! sequence applied, so a crash at any point never applies a commit twice or skips
//! one: on restart the projector resumes right after the recorded sequence.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::{self, Context};
use domain::commit::CommitKey;
use domain::ids::SecretId;
use domain::restarts::Restarts;
use domain::subject::{AggregateKind, parse_aggregate_subject};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::read::ReadCache;
use crate::tap::{self, Tap};
use crate::writer::{Stored, WriteError, Writer};

/// Most commits applied in one transaction by default: a rebuild of 200,000 commits
/// took 12.8 s with batches of 512, 4.7 s with 16,384; 8,192 keeps a batch's commits
/// (about 1 KiB each) and its transaction small.
pub const DEFAULT_BATCH_SIZE: usize = 8192;

/// Most commits applied in one transaction by `keyledger projections rebuild` on
/// SQLite. Every batch writes each page it dirtied to the WAL once, and a log spread
/// over many secrets dirties most of the read model in every batch: rebuilding
/// 1,000,000 commits over 100,000 secrets took 66 s with batches of 8,192 (17 s of it
/// in the kernel, writing), 41 s with 65,536 and 25 s with 262,144 (peak RSS 433 MB;
/// 30 s and 1 GB with the whole log in one). A rebuild has no reader waiting on it.
/// It reads the next batch while it applies one: peak RSS 575–592 MB on that log
/// since (docs/performance.md, "Reading ahead while a batch is applied").
pub const REBUILD_BATCH_SIZE: usize = 262_144;

/// Most bytes of commits held for one batch by default, whatever its count: a batch's
/// commits stay in memory until it is applied, and large commits (payloads) would
/// otherwise let a batch of [`REBUILD_BATCH_SIZE`] hold gigabytes. Behind the head of
/// the stream the next batch is read while one is applied, so twice this is held.
pub const MAX_BATCH_BYTES: usize = 128 << 20;

/// Settings of a projector.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// The event stream.
    pub stream: String,
    /// Most commits applied in one transaction. A batch takes what the stream holds
    /// beyond the checkpoint and what has been delivered already, up to this many, so
    /// a projector catching up applies full batches, one at the head of a busy stream
    /// what arrived during its last transaction, and one at the head of a quiet
    /// stream each commit as it arrives.
    pub batch_size: usize,
    /// Most bytes of commits in one batch, whatever its count ([`MAX_BATCH_BYTES`]
    /// by default).
    pub batch_bytes: usize,
    /// On PostgreSQL, once another projector has taken the read model over (this one
    /// lost its session meanwhile): stand by in this process and take over again when
    /// the other's session ends (`keyledger serve projector`), instead of stopping.
    /// Only for a projector whose process serves no reads of its own: an API beside it
    /// follows this projector's cache and sequence, which would stop moving.
    pub stand_by_when_locked: bool,
    /// Most commits in a batch handed on to the other readers of the log in this
    /// process ([`crate::tap`]); a larger batch is left to them to read from the log
    /// ([`crate::tap::MOST_COMMITS`] by default).
    pub tap_batch_commits: usize,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            stream: "KEYLEDGER".into(),
            batch_size: DEFAULT_BATCH_SIZE,
            batch_bytes: MAX_BATCH_BYTES,
            stand_by_when_locked: false,
            tap_batch_commits: crate::tap::MOST_COMMITS,
        }
    }
}

/// How often a projector started before its event stream exists looks for it again.
const STREAM_POLL: Duration = Duration::from_millis(200);

/// How long each pull request of the projector's consumer lasts. async-nats asks for
/// idle heartbeats at half of it, and takes the consumer for lost (its node died or
/// hung: an ordered consumer lives on one node) once two heartbeats' time passes
/// twice with nothing: 10 s here, 60 s with its default expiry (30 s, 15-s
/// heartbeats), all that time with reads waiting. An idle projector sends a pull
/// request every 5 s.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// Why the projector stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// JetStream failed.
    #[error("projector: the event stream is unavailable: {0}")]
    Stream(String),
    /// Writing the read model failed.
    #[error("projector: writing the read model failed: {0}")]
    Write(#[from] WriteError),
    /// NATS reconnected: the consumer may be gone, so follow again.
    #[error("projector: NATS reconnected")]
    Reconnected,
    /// The event stream does not exist yet: the command service creates it when it
    /// first starts, and a projector may start first.
    #[error("projector: the event stream {0} does not exist yet; the command service creates it")]
    NoStream(String),
    /// The read model has applied more of the log than the stream holds.
    #[error(
        "projector: the read model has applied sequence {applied}, but the event stream ends \
         at {last}: it was built from another log (or the stream was restored from an older \
         backup). Rebuild it from this log: keyledger projections rebuild"
    )]
    AheadOfLog {
        /// The read model's checkpoint.
        applied: u64,
        /// The stream's last sequence.
        last: u64,
    },
    /// Another projector holds the read model.
    #[error(
        "another projector is writing {0}; stop it (keyledger up, or keyledger serve projector) \
         first"
    )]
    Locked(PathBuf),
    /// The lock file could not be opened.
    #[error("opening the projector lock {path}: {source}")]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn stream_err(e: impl std::fmt::Display) -> ProjectorError {
    ProjectorError::Stream(e.to_string())
}

/// Held while a projector writes a file-backed read model, so that two projectors (or
/// a projector and a rebuild) never write the same database.
#[derive(Debug)]
pub struct ProjectorLock {
    _file: File,
}

/// Takes the projector lock of the SQLite database at `db`, if it is a file; fails
/// at once if another projector holds it.
pub fn lock(db: Option<&Path>) -> Result<Option<ProjectorLock>, ProjectorError> {
    let Some(db) = db else { return Ok(None) };
    match try_lock(db)? {
        Attempt::Taken(lock) => Ok(Some(lock)),
        Attempt::Held(..) => Err(ProjectorError::Locked(db.to_owned())),
    }
}

/// Takes the projector lock of the SQLite database at `db`, if it is a file, waiting
/// as a standby while another projector holds it. The kernel releases the lock the
/// moment its holder exits, even by `kill -9`, and this returns then.
pub async fn lock_when_free(db: Option<&Path>) -> Result<Option<ProjectorLock>, ProjectorError> {
    let Some(db) = db else { return Ok(None) };
    let (path, file) = match try_lock(db)? {
        Attempt::Taken(lock) => return Ok(Some(lock)),
        Attempt::Held(path, file) => (path, file),
    };
    tracing::info!(db = %db.display(), "another projector is writing the read model; standing by");
    // A plain thread, not spawn_blocking: the runtime waits for blocking tasks when it
    // shuts down, and a standby stopped by Ctrl-C must not wait for the lock.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(file.lock().map(|()| file));
    });
    match rx.await {
        Ok(Ok(file)) => {
            tracing::info!(db = %db.display(), "took over the read model");
            Ok(Some(ProjectorLock { _file: file }))
        }
        Ok(Err(source)) => Err(ProjectorError::LockFile { path, source }),
        Err(_) => Err(ProjectorError::LockFile {
            path,
            source: std::io::Error::other("the thread waiting for the lock ended"),
        }),
    }
}

/// What one try at the projector lock got.
enum Attempt {
    /// The lock.
    Taken(ProjectorLock),
    /// Another projector holds it: the lock file, opened, to wait on.
    Held(PathBuf, File),
}

/// Opens the lock file beside the database at `db` and tries to lock it.
fn try_lock(db: &Path) -> Result<Attempt, ProjectorError> {
    let path = crate::db::lock_path(db, "projector");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ProjectorError::LockFile {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Attempt::Taken(ProjectorLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(Attempt::Held(path, file)),
        Err(std::fs::TryLockError::Error(source)) => Err(ProjectorError::LockFile { path, source }),
    }
}

/// Applies the event stream to the read model.
pub struct Projector {
    writer: Writer,
    js: Context,
    config: ProjectorConfig,
    key: Arc<CommitKey>,
    applied: watch::Sender<u64>,
    /// The read cache of a read model in this process, which each batch's eviction
    /// keeps true; none when no reader shares this process (a rebuild, a standalone
    /// `serve projector`), so a batch costs no eviction ([`Self::with_cache`]).
    cache: Option<ReadCache>,
    tap: Tap,
}

impl Projector {
    /// A projector resuming from the read model's checkpoint, applying only commits
    /// authenticated by `key`. The receiver follows the sequence applied, for
    /// read-your-writes waits in the same process.
    pub async fn new(
        writer: Writer,
        js: Context,
        config: ProjectorConfig,
        key: CommitKey,
    ) -> Result<(Self, watch::Receiver<u64>), ProjectorError> {
        let seq = writer.checkpoint().await?;
        let (applied, rx) = watch::channel(seq);
        Ok((
            Self {
                writer,
                js,
                key: Arc::new(key),
                applied,
                cache: None,
                tap: Tap::for_stream(&config.stream),
                config,
            },
            rx,
        ))
    }

    /// Keeps `cache` true, the read cache of a read model in this process
    /// ([`crate::read::ReadModel::with_cache`]): each batch evicts what it changed
    /// before readers learn of its sequence. A projector without one evicts nothing:
    /// a cache it was not given would serve rows its batches changed.
    #[must_use]
    pub fn with_cache(mut self, cache: ReadCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Hands on each batch applied to `tap` (one made before the projector, so that
    /// readers started first can subscribe) instead of a tap of its own; a tap of
    /// another stream is refused (its readers would take this stream's commits as
    /// that one's).
    #[must_use]
    pub fn with_tap(mut self, tap: Tap) -> Self {
        if tap.stream() == self.config.stream {
            self.tap = tap;
        } else {
            tracing::warn!(
                tap = tap.stream(),
                stream = %self.config.stream,
                "projector: a tap of another stream; its readers read the log instead"
            );
        }
        self
    }

    /// Where this projector hands on each batch it applied, for the other readers of
    /// the log in its process ([`crate::tap`]).
    pub fn tap(&self) -> Tap {
        self.tap.clone()
    }

    /// Applies commits until `shutdown` is cancelled. Failures (NATS restarting, a
    /// locked database) are logged and retried with backoff from the checkpoint; after
    /// NATS reconnects, the projector resumes at once.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut restarts = Restarts::new();
        let mut waited_for_stream = false;
        loop {
            let started = std::time::Instant::now();
            let applied_before = *self.applied.borrow();
            match self.follow(None, &shutdown).await {
                Ok(()) => return,
                Err(ProjectorError::Reconnected) => {
                    tracing::info!("projector: NATS is back; resuming from the checkpoint");
                    restarts.reset();
                }
                // Not a failure when the projector started before the command
                // service: look again soon, at a steady pace, so that the first
                // commits are applied as soon as they exist. Said once, as a warning:
                // a misspelt stream name looks just like this.
                Err(e @ ProjectorError::NoStream(_)) => {
                    if !waited_for_stream {
                        tracing::warn!("{e}; waiting for it");
                        waited_for_stream = true;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(STREAM_POLL) => {}
                    }
                }
                // Its PostgreSQL session ended (a restart of the server, an operator
                // ending it) and the standby took the lock meanwhile: that one writes
                // now, and this one becomes its standby, in this process, so that a
                // supervisor's restart limit never leaves the read model without one.
                Err(e @ ProjectorError::Write(WriteError::Locked(_)))
                    if !self.config.stand_by_when_locked =>
                {
                    // Its supervisor (`keyledger up` stops the whole stack) decides.
                    tracing::error!("{e}; this projector stops");
                    return;
                }
                Err(ProjectorError::Write(WriteError::Locked(_))) => {
                    tracing::info!(
                        "projector: another projector took the read model over; standing by"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        taken = self.writer.stand_by() => match taken {
                            // No reset of the delays: two projectors that each fail a
                            // batch must not hand the lock back and forth at full speed.
                            Ok(()) => tracing::info!("projector: took over the read model"),
                            Err(e) => {
                                let backoff = restarts.after_failure(started.elapsed());
                                tracing::warn!(error = %e, retry_in = ?backoff, "projector: cannot stand by; trying again");
                                tokio::select! {
                                    () = shutdown.cancelled() => return,
                                    () = tokio::time::sleep(backoff) => {}
                                }
                            }
                        },
                    }
                }
                Err(e) => {
                    // A run that applied commits had recovered: its failure
                    // (PostgreSQL restarted again, its session found dead only now) is
                    // a new incident.
                    let progressed = *self.applied.borrow() > applied_before;
                    let backoff = restarts.after_failed_run(started.elapsed(), progressed);
                    tracing::warn!(error = %e, retry_in = ?backoff, "projector failed; resuming from its checkpoint");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }

    /// Applies commits until the checkpoint reaches `target`.
    pub async fn catch_up(&self, target: u64) -> Result<(), ProjectorError> {
        if *self.applied.borrow() >= target {
            return Ok(());
        }
        self.follow(Some(target), &CancellationToken::new()).await
    }

    async fn follow(
        &self,
        target: Option<u64>,
        shutdown: &CancellationToken,
    ) -> Result<(), ProjectorError> {
        let client = self.js.client();
        let connects = client.statistics().connects.load(Ordering::Relaxed);
        let mut applied = self.writer.checkpoint().await?;
        if let Some(cache) = &self.cache {
            cache.clear(applied);
        }
        // Where the read model is now: another projector may have moved it while this
        // one stood by.
        self.applied.send_replace(applied);
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    ProjectorError::NoStream(self.config.stream.clone())
                }
                _ => stream_err(e),
            })?;
        // A read model ahead of the stream folds another log: applying this one from
        // its checkpoint would mix the two and hide every commit up to it.
        let last = stream.cached_info().state.last_sequence;
        if applied > last {
            return Err(ProjectorError::AheadOfLog { applied, last });
        }
        let consumer: jetstream::consumer::Consumer<pull::OrderedConfig> = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: applied + 1,
                },
                max_expires: PULL_EXPIRES,
                ..Default::default()
            })
            .await
            .map_err(stream_err)?;
        let mut messages = consumer.messages().await.map_err(stream_err)?;
        let (batch_size, batch_bytes) = (
            self.config.batch_size.max(1),
            self.config.batch_bytes.max(1),
        );
        // Made once, not per message: a timer registered and dropped per message was a
        // seventh of the reading thread's time in a rebuild.
        let mut cancelled = std::pin::pin!(shutdown.cancelled());
        let mut reconnect = std::pin::pin!(reconnected(&client, connects));
        let mut next = async |messages: &mut pull::Ordered| {
            tokio::select! {
                () = cancelled.as_mut() => Ok(None),
                () = reconnect.as_mut() => Err(ProjectorError::Reconnected),
                m = messages.next() => match m {
                    Some(m) => m.map(Some).map_err(stream_err),
                    None => Err(stream_err("the consumer ended")),
                },
            }
        };
        // A batch is what the stream holds beyond the checkpoint, up to batch_size:
        // while catching up, full batches (one transaction each). At the head of the
        // stream, a batch also takes every commit already delivered while the last one
        // was being applied: behind a busy command service the projector then pays a
        // transaction's fixed cost (its WAL commit, checkpointing, the page cache's
        // bookkeeping) per batch instead of per commit, and a quiet stream still has
        // each commit applied as it arrives.
        let mut read = async |messages: &mut pull::Ordered, after: u64| {
            let mut batch = ReadBatch::default();
            let mut wait = true;
            loop {
                let message = if wait {
                    let Some(message) = next(messages).await? else {
                        return Ok(None);
                    };
                    message
                } else {
                    match messages.next().now_or_never() {
                        Some(Some(message)) => message.map_err(stream_err)?,
                        Some(None) => return Err(stream_err("the consumer ended")),
                        None => break,
                    }
                };
                let info = message.info().map_err(stream_err)?;
                let (seq, pending) = (info.stream_sequence, info.pending);
                batch.pending = pending;
                batch.published = info.published;
                // Past what was read before and past what this batch holds: each
                // commit once.
                if seq > batch.commits.last().map_or(after, |c: &Stored| c.seq) {
                    let message = message.split().0;
                    batch.bytes += message.payload.len();
                    batch.commits.push(Stored {
                        seq,
                        subject: message.subject.to_string(),
                        payload: message.payload,
                    });
                }
                if batch.commits.len() >= batch_size || batch.bytes >= batch_bytes {
                    break;
                }
                wait = pending > 0;
            }
            Ok(Some(batch))
        };
        let mut ahead = None;
        loop {
            let batch = match ahead.take() {
                // A stop asked for while the last batch was applied does not wait for
                // another batch's transaction (seconds, in a rebuild).
                Some(_) if shutdown.is_cancelled() => return Ok(()),
                Some(batch) => batch,
                None => match read(&mut messages, applied).await? {
                    Some(batch) => batch,
                    None => return Ok(()),
                },
            };
            if let Some(seq) = batch.commits.last().map(|c| c.seq) {
                // Behind the head (commits pending beyond this batch), the next batch is
                // read while this one is applied: a rebuild's reading (nats-server's
                // delivery and this thread's) then overlaps the writer's, at the cost of
                // holding two batches ("Reading ahead while a batch is applied" in
                // docs/performance.md). At the head, a batch is what arrived meanwhile.
                let read_ahead = batch.pending > 0 && target.is_none_or(|t| seq < t);
                let apply = self.apply(batch, seq, applied);
                if read_ahead {
                    // A failed apply drops the read (the next `follow` reads again from
                    // the checkpoint). A failed read waits for the apply: its transaction
                    // commits on its own thread regardless, and the cache's eviction and
                    // the sequence's announcement after it must not be skipped.
                    let read = async { Ok::<_, ProjectorError>(read(&mut messages, seq).await) };
                    let ((), next_batch) = tokio::try_join!(apply, read)?;
                    let Some(next_batch) = next_batch? else {
                        return Ok(());
                    };
                    ahead = Some(next_batch);
                } else {
                    apply.await?;
                }
                applied = seq;
            }
            if target.is_some_and(|t| applied >= t) {
                return Ok(());
            }
        }
    }

    /// Applies `batch`, whose last commit is at `seq`, after `applied`, in one
    /// transaction, then tells the read cache, the readers of the sequence and the tap.
    async fn apply(&self, batch: ReadBatch, seq: u64, applied: u64) -> Result<(), ProjectorError> {
        let ReadBatch {
            commits,
            bytes,
            pending,
            published,
        } = batch;
        // Read before the writer takes the commits: in a rebuild, with no cache, not at
        // all (it parsed each commit's subject and id, 5% of a rebuild's CPU).
        let touched = self.cache.as_ref().map(|_| Touched::of(&commits));
        let handed_on = (self.tap.has_readers()
            && commits.len() <= self.config.tap_batch_commits
            && bytes <= tap::MOST_BYTES)
            .then(|| commits.clone());
        let changed = self
            .writer
            .apply(commits, Arc::clone(&self.key), applied)
            .await?;
        // Before readers learn of `seq`: a cached row they find then is current.
        if let (Some(cache), Some(touched)) = (&self.cache, touched) {
            cache.evict(touched.secrets, touched.access_keys, &changed, seq);
        }
        self.applied.send_replace(seq);
        if let Some(batch) = handed_on {
            self.tap.send(batch.into());
        }
        let behind = time::OffsetDateTime::now_utc() - published;
        crate::metrics::projector_at(seq, pending, behind.try_into().unwrap_or_default());
        tracing::debug!(seq, "projected");
        Ok(())
    }
}

/// A batch of commits read from the stream, with where the stream stood when its last
/// one was delivered.
struct ReadBatch {
    commits: Vec<Stored>,
    bytes: usize,
    /// Commits the stream held beyond the last one.
    pending: u64,
    /// When the last one was published.
    published: time::OffsetDateTime,
}

impl Default for ReadBatch {
    fn default() -> Self {
        Self {
            commits: Vec::new(),
            bytes: 0,
            pending: 0,
            published: time::OffsetDateTime::UNIX_EPOCH,
        }
    }
}

/// What a batch's commits change, which the read cache forgets: the secrets, and
/// whether any access key (rare: then every access key is forgotten, whatever its id
/// parses as).
#[derive(Default)]
struct Touched {
    secrets: Vec<SecretId>,
    access_keys: bool,
}

impl Touched {
    fn of(commits: &[Stored]) -> Self {
        let mut touched = Self::default();
        for c in commits {
            match parse_aggregate_subject(&c.subject) {
                Some((_, AggregateKind::Secret, id)) => {
                    touched.secrets.extend(SecretId::parse(id.as_str()).ok());
                }
                Some((_, AggregateKind::AccessKey, _)) => touched.access_keys = true,
                _ => {}
            }
        }
        touched
    }
}

/// Resolves once `client` has connected again after `seen` connections: the ordered
/// consumer lives in the server's memory and is gone after a restart, so the projector
/// starts a new one at once rather than after missed heartbeats.
async fn reconnected(client: &async_nats::Client, seen: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if client.statistics().connects.load(Ordering::Relaxed) > seen {
            return;
        }
    }
}

/// Rebuilds the read model from sequence 1: clears every row and the checkpoint in
/// one transaction, then applies the whole stream. Into a `new_file` (one no reader
/// was given yet), on SQLite, it builds the indexes once at the end
/// ([`Writer::clear`]). If interrupted, the read model is consistent with its
/// checkpoint and the next projector run (which first creates any index missing)
/// finishes the job. Returns the sequence applied: the stream's last when it started,
/// or later if commits kept arriving.
pub async fn rebuild(
    writer: Writer,
    js: &Context,
    config: &ProjectorConfig,
    key: CommitKey,
    new_file: bool,
) -> Result<u64, ProjectorError> {
    writer.clear(new_file).await?;
    let mut stream = js.get_stream(&config.stream).await.map_err(stream_err)?;
    let target = stream.info().await.map_err(stream_err)?.state.last_sequence;
    let (projector, applied) =
        Projector::new(writer.clone(), js.clone(), config.clone(), key).await?;
    projector.catch_up(target).await?;
    writer.create_indexes().await?;
    // Past the target when commits kept arriving: its last batch takes what was
    // pending then.
    Ok(*applied.borrow())
}
