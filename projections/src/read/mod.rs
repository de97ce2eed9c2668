//! Reads of the secrets read model. Each read reads the checkpoint in the same
//! snapshot as its rows (one statement, or one read transaction), so the sequence a
//! response reports is exactly the state it shows. Lookups are by primary key or index
//! and never touch the stream. A listing walks the project's rows that the caller
//! could possibly read (an indexed range), because the read policy decides row by row.
//!
//! The SQL lives in `sql/`, compiled once per dialect (SQLite and PostgreSQL), so each
//! runs on its own sqlx driver with no translation layer between; [`ReadModel`] picks
//! the one its pool speaks. SQLite's connections are held outside sqlx's pool
//! ([`crate::db::SqliteReads`]), PostgreSQL's are in it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use domain::ids::{KeyId, ProjectId, SecretId, ServiceName, UserId, VersionId};
use domain::secret::acl::Acl;
use domain::secret::payload::ContentType;
use domain::timestamp::Timestamp;
use futures::FutureExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::db::Pool;

mod access_keys;
mod cache;
mod containers;
mod due;
mod error;
mod list;
mod orders;
mod quotas;

/// The SQL dialect a copy of `sql/` is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// One copy of the queries in `sql/` for a sqlx driver. Both copies come from the same
/// files (hence `duplicate_mod`): the queries are written once, with `$N` parameters,
/// which both drivers accept, and the few fragments that differ match on `DIALECT`.
macro_rules! dialect {
    ($name:ident, $db:ty, $dialect:expr, $connections:ty) => {
        #[allow(clippy::duplicate_mod)]
        #[path = "sql"]
        pub(crate) mod $name {
            pub(crate) type Db = $db;
            pub(crate) type Conn = <Db as sqlx::Database>::Connection;
            pub(crate) type DbRow = <Db as sqlx::Database>::Row;
            pub(crate) use super::Dialect;
            pub(crate) const DIALECT: Dialect = $dialect;

            /// The queries, on this driver's connections (each method acquires one).
            pub(crate) struct Reads<'p>(pub(crate) &'p $connections);

            /// A read transaction that sees one snapshot: SQLite's always does;
            /// PostgreSQL's default (READ COMMITTED) takes one per statement, and the
            /// checkpoint a response reports, or an ACL checked before the rows read
            /// after it, would then be of another moment than those rows.
            pub(crate) async fn begin(
                conn: &mut Conn,
            ) -> Result<sqlx::Transaction<'_, Db>, sqlx::Error> {
                match DIALECT {
                    Dialect::Sqlite => sqlx::Connection::begin(conn).await,
                    Dialect::Postgres => {
                        sqlx::Connection::begin_with(
                            conn,
                            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                        )
                        .await
                    }
                }
            }

            mod access_keys;
            mod containers;
            pub(crate) mod due;
            mod list;
            mod orders;
            mod quotas;
            pub(crate) mod secrets;
        }
    };
}

// SQLite's connections are held outside sqlx's pool (see `sqlite_reads`).
dialect!(
    sqlite,
    sqlx::Sqlite,
    Dialect::Sqlite,
    crate::db::SqliteReads
);
dialect!(postgres, sqlx::Postgres, Dialect::Postgres, sqlx::PgPool);

/// Runs the query method `$method` of whichever dialect `$pool` speaks.
macro_rules! on_pool {
    ($pool:expr, $method:ident($($arg:expr),* $(,)?)) => {
        match $pool {
            $crate::db::Pool::Sqlite(pool) => {
                let read = $crate::read::sqlite::Reads(pool).$method($($arg),*).await;
                if let Err(error) = &read {
                    pool.failed(error);
                }
                read
            }
            $crate::db::Pool::Postgres(pool) => {
                $crate::read::postgres::Reads(pool).$method($($arg),*).await
            }
        }
    };
}
pub(crate) use on_pool;

pub use access_keys::{AccessKeyRow, SealedAccessKey};
pub use cache::{Entry, ReadAt, ReadCache};
pub use containers::{ContainerConsumerRow, ContainerPage, ContainerRefRow, ContainerRow};
pub use due::{due, rotations_due};
pub use error::ReadError;
pub use list::{Compare, KeyValue, ListFilter, ListScope, Page, Position, SortKey, TimeColumn};
pub use orders::{OrderPage, OrderRow, pending_orders};
pub use quotas::{QuotaPage, usage};

/// A secret's metadata as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// The project that owns it.
    pub project: ProjectId,
    /// The id.
    pub id: SecretId,
    /// Name.
    pub name: Option<String>,
    /// Barbican secret type.
    pub secret_type: String,
    /// Informational algorithm.
    pub algorithm: Option<String>,
    /// Informational key length.
    pub bit_length: Option<i64>,
    /// Informational mode.
    pub mode: Option<String>,
    /// RFC 3339 expiration.
    pub expiration: Option<String>,
    /// The creating user.
    pub creator: UserId,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 time of the last change.
    pub updated: String,
    /// Media type of the payload, once stored.
    pub content_type: Option<ContentType>,
    /// Aggregate version.
    pub version: i64,
    /// Who may read it.
    pub acl: Acl,
    /// The service that manages it.
    pub owning_service: Option<ServiceName>,
    /// `krn:keyledger:<project>:secret:<name>-<suffix>`.
    pub reference: String,
    /// RFC 3339 end of the recovery window, when deletion is scheduled.
    pub purge_at: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Stored versions whose keys still exist.
    pub version_count: i64,
    /// When its ACL was set, unless it is the default.
    pub acl_set: Option<AclTimes>,
    /// Its consumers.
    pub consumers: Vec<SecretConsumerRow>,
    /// Its rotation, once configured.
    pub rotation: Option<domain::secret::rotation::Rotation>,
    /// Its description.
    pub description: Option<String>,
}

impl SecretRow {
    /// The end of its recovery window, when a deletion is scheduled.
    pub fn recovery_window_end(&self) -> Option<Timestamp> {
        self.purge_at
            .as_deref()
            .and_then(|t| Timestamp::parse_iso8601("purge_at", t).ok())
    }

    /// The end of its recovery window if that has come by `now`: it is deleted then,
    /// restore included, whether or not the scheduler's purge has landed yet (which may
    /// be seconds behind, hours after downtime).
    pub fn window_ended_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.recovery_window_end().filter(|end| now >= *end)
    }

    /// Whether its recovery window has ended by `now` ([`Self::window_ended_at`]).
    pub fn recovery_window_ended(&self, now: Timestamp) -> bool {
        self.window_ended_at(now).is_some()
    }
}

/// One version of a secret's value, without its ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    /// The version id.
    pub version_id: String,
    /// Media type.
    pub content_type: String,
    /// RFC 3339 time it was stored.
    pub created: String,
    /// Its stages (`current`, `previous`, `pending`), sorted.
    pub stages: Vec<String>,
}

/// A secret's staging labels: the versions that carry one, and the labels on versions
/// that hold no value (a rotation's, until its handler stores one; one a cancelled
/// rotation left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    /// The versions with a value that carry a label, oldest first.
    pub stored: Vec<VersionRow>,
    /// (version id, label) of each label on a version without a value.
    pub valueless: Vec<(String, String)>,
}

/// A page of a secret's versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPage {
    /// The versions of the page, oldest first.
    pub versions: Vec<VersionRow>,
    /// How many versions the secret has.
    pub total: u64,
}

/// Which version a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSelector<'a> {
    /// By id.
    Id(&'a str),
    /// The version a stage is on.
    Stage(&'a str),
}

/// A secret a look-up by name or reference found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its id.
    pub id: String,
    /// Its reference.
    pub reference: String,
}

/// A secret a look-up by name found, with when it expires (Unix milliseconds): a
/// name's resolution held in the read cache is judged again at each read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named {
    pub(crate) candidate: Candidate,
    pub(crate) expiration_ms: Option<i64>,
}

/// A sealed payload and what is needed to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRow {
    /// The payload version.
    pub version_id: VersionId,
    /// The data key.
    pub key_id: KeyId,
    /// Media type.
    pub content_type: ContentType,
    /// GCM nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
    /// RFC 3339 time it was stored.
    pub created: String,
    /// The stages on it (`current`, `previous`, `pending`), sorted.
    pub stages: Vec<String>,
}

/// A secret's row with the sealed payload of one of its versions (`None` when there is
/// no such version), as read: from the [`ReadCache`], shared with it, so that a read
/// copies neither the row nor the ciphertext.
#[derive(Debug, Clone)]
pub struct WithPayload(ReadAt<Entry>);

impl WithPayload {
    /// The secret's row.
    pub fn secret(&self) -> &SecretRow {
        &self.0.1.row
    }

    /// The version's sealed payload, if there is one.
    pub fn payload(&self) -> Option<&PayloadRow> {
        self.0.1.payload.as_ref()
    }
}

/// The result of looking up one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Found and not expired.
    Found(T),
    /// Exists, but has expired (at `expiration`).
    Expired(Box<SecretRow>),
    /// Scheduled for deletion (until `purge_at`): not readable, but restorable.
    PendingDeletion(Box<SecretRow>),
    /// No such secret.
    Missing,
}

/// A value and the stream sequence the read model had applied when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot<T> {
    /// The value.
    pub value: T,
    /// The sequence it reflects.
    pub seq: u64,
}

impl<T> Snapshot<T> {
    /// The same snapshot of what `f` makes of its value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Snapshot<U> {
        Snapshot {
            value: f(self.value),
            seq: self.seq,
        }
    }
}

/// The read model has not reached a sequence a caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the read model is at sequence {applied}, not yet at {wanted}")]
pub struct Lagging {
    /// What was asked for.
    pub wanted: u64,
    /// What is applied.
    pub applied: u64,
}

/// When an ACL was set and last changed (RFC 3339); none for the default ACL that
/// was never set, or was reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclTimes {
    /// First set.
    pub created: String,
    /// Last changed.
    pub updated: String,
}

/// A secret's consumer (Barbican 1.1): a service resource that uses the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretConsumerRow {
    /// The service, e.g. `image`.
    pub service: String,
    /// The kind of resource, e.g. `image`.
    pub resource_type: String,
    /// The resource.
    pub resource_id: String,
    /// RFC 3339 registration time.
    pub created: String,
}

/// Queries of the secrets read model.
#[derive(Debug, Clone)]
pub struct ReadModel {
    pool: Pool,
    applied: watch::Receiver<u64>,
    cache: Option<ReadCache>,
}

/// A secret's row as [`visible`] at `now`, with what was read beside it if it is.
fn judged<T>(found: Option<(Found, Option<T>)>, now: Timestamp) -> Lookup<(SecretRow, T)> {
    match found {
        None => Lookup::Missing,
        Some((row, details)) => match (visible(Some(row), now), details) {
            (Lookup::Found(secret), Some(details)) => Lookup::Found((secret, details)),
            (other, _) => other.map_never(),
        },
    }
}

/// A secret's row with its expiry (Unix milliseconds) and status, which decide
/// whether it is visible.
pub(crate) type Found = (SecretRow, Option<i64>, String);

impl ReadModel {
    /// Reads from `pool`; `applied` follows the projector's checkpoint (from a projector
    /// in this process, from [`poll_checkpoint`], or from [`listen_checkpoint`]).
    pub fn new(pool: Pool, applied: watch::Receiver<u64>) -> Self {
        Self {
            pool,
            applied,
            cache: None,
        }
    }

    /// Answers reads of a secret's row (with its payload or not), access-key reads and
    /// name look-ups from `cache` when it can: only with
    /// the cache of the projector whose `applied` this read model follows, which keeps
    /// it true.
    #[must_use]
    pub fn with_cache(mut self, cache: ReadCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The sequence applied so far.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Follows the sequence applied.
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// The checkpoint, read from the database now: whether the read model answers
    /// (a readiness check; the sequence a read follows is [`Self::applied`]).
    pub async fn reachable(&self) -> Result<u64, ReadError> {
        Ok(on_pool!(&self.pool, checkpoint())?)
    }

    /// Waits until the read model has applied `seq`, for at most `timeout`.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> Result<(), Lagging> {
        let mut rx = self.applied.clone();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= seq)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Lagging {
                wanted: seq,
                applied: self.applied(),
            }),
        }
    }

    /// The answer of `query` (a value and the sequence its snapshot reflects), refused
    /// if that snapshot is older than what this read model had applied when the query
    /// began: the read model went back (a rebuild cleared it), and a read that waited
    /// for a sequence (`X-Keyledger-Min-Seq`) must not answer from before it.
    pub(crate) async fn fresh<T, E: Into<ReadError>>(
        &self,
        query: impl Future<Output = Result<(T, u64), E>>,
    ) -> Result<Snapshot<T>, ReadError> {
        let floor = self.applied();
        let (value, seq) = query.await.map_err(Into::into)?;
        if seq < floor {
            return Err(ReadError::WentBack { floor, seq });
        }
        Ok(Snapshot { value, seq })
    }

    /// The sequences between `from` and `to` (inclusive) the projector skipped: foreign
    /// messages, replayed copies, commits it could not read.
    pub async fn skipped_between(&self, from: u64, to: u64) -> Result<BTreeSet<u64>, ReadError> {
        Ok(on_pool!(&self.pool, skipped_between(from, to))?)
    }

    /// One secret's metadata. Expired secrets are not found from the instant they
    /// expire, whether or not the log has recorded it. Beside a projector in this
    /// process, from the [`ReadCache`] when it holds the secret, and held there after.
    pub async fn get_secret(
        &self,
        id: SecretId,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<SecretRow>>, ReadError> {
        if let Some(cache) = &self.cache {
            let Snapshot { value: entry, seq } = self.current_entry(cache, id).await?;
            let row = entry.map(|held| {
                let e = &held.1;
                (e.row.clone(), e.expiration_ms, e.status.clone())
            });
            return Ok(Snapshot {
                value: visible(row, now),
                seq,
            });
        }
        // Boxed, as in `current_entry`.
        let Snapshot { value: row, seq } =
            Box::pin(self.fresh(async { on_pool!(&self.pool, secret(id)) })).await?;
        Ok(Snapshot {
            value: visible(row, now),
            seq,
        })
    }

    /// A secret with the sealed payload of its current version (`None` inside when it
    /// has none). Beside a projector in this process, from the [`ReadCache`] when it
    /// holds the secret.
    pub async fn get_payload(
        &self,
        id: SecretId,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<WithPayload>>, ReadError> {
        let Some(cache) = &self.cache else {
            // Boxed, as in `current_entry`; without a cache every read takes this path
            // and pays the allocation, for a read's future of one size either way.
            return Box::pin(self.get_version(id, VersionSelector::Stage("current"), now)).await;
        };
        let Snapshot { value: entry, seq } = self.current_entry(cache, id).await?;
        Ok(Snapshot {
            value: entry.map_or(Lookup::Missing, |held| with_payload(held, now)),
            seq,
        })
    }

    /// Secret `id`'s row with the sealed payload of its current version, from the
    /// read `cache`, or read in one statement and held there (`None`: no such
    /// secret).
    async fn current_entry(
        &self,
        cache: &ReadCache,
        id: SecretId,
    ) -> Result<Snapshot<Option<ReadAt<Entry>>>, ReadError> {
        // Read before the cache: an entry still held then reflects every commit up to
        // this sequence (the projector evicts before it publishes a sequence), and up
        // to the one it was read at, which another read may have filled it from since.
        let applied = self.applied();
        if let Some(held) = cache.get(id) {
            let seq = applied.max(held.0);
            return Ok(Snapshot {
                value: Some(held),
                seq,
            });
        }
        // Boxed: a query's future (the pool's, sqlx's) takes kilobytes, and held inline
        // it would make the future of every request that reads a secret that large, to
        // be moved with it, on the cache's path too.
        let current = VersionSelector::Stage("current");
        let Snapshot { value: found, seq } =
            Box::pin(self.fresh(async { on_pool!(&self.pool, version(id, current)) })).await?;
        Ok(Snapshot {
            value: found.map(|entry| cache.insert(id, entry, seq)),
            seq,
        })
    }

    /// A secret with the sealed payload of one version, by id or by stage (`None`
    /// inside when there is no such version).
    pub async fn get_version(
        &self,
        id: SecretId,
        which: VersionSelector<'_>,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<WithPayload>>, ReadError> {
        let Snapshot { value: found, seq } = self
            .fresh(async { on_pool!(&self.pool, version(id, which)) })
            .await?;
        Ok(Snapshot {
            value: found.map_or(Lookup::Missing, |entry| {
                with_payload(Arc::new((seq, entry)), now)
            }),
            seq,
        })
    }

    /// A secret with one page of its versions, oldest first, and how many it has.
    pub async fn list_versions(
        &self,
        id: SecretId,
        now: Timestamp,
        page: (u32, u32),
    ) -> Result<Snapshot<Lookup<(SecretRow, VersionPage)>>, ReadError> {
        let shown = |row: &Found| is_visible(row, now);
        Ok(self
            .fresh(async { on_pool!(&self.pool, versions(id, shown, page)) })
            .await?
            .map(|found| judged(found, now)))
    }

    /// A secret with its staging labels: every version that carries one, oldest first,
    /// and the labels on versions without a value.
    pub async fn labelled_versions(
        &self,
        id: SecretId,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<(SecretRow, Labelled)>>, ReadError> {
        let shown = |row: &Found| is_visible(row, now);
        Ok(self
            .fresh(async { on_pool!(&self.pool, labelled_versions(id, shown)) })
            .await?
            .map(|found| judged(found, now)))
    }

    /// A secret with one of its versions, by id or by stage (`None` inside when
    /// there is no such version).
    pub async fn find_version(
        &self,
        id: SecretId,
        which: VersionSelector<'_>,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<(SecretRow, Option<VersionRow>)>>, ReadError> {
        let shown = |row: &Found| is_visible(row, now);
        Ok(self
            .fresh(async { on_pool!(&self.pool, find_version(id, shown, which)) })
            .await?
            .map(|found| judged(found, now)))
    }

    /// A secret with its metadata.
    pub async fn get_metadata(
        &self,
        id: SecretId,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<(SecretRow, BTreeMap<String, String>)>>, ReadError> {
        let shown = |row: &Found| is_visible(row, now);
        Ok(self
            .fresh(async { on_pool!(&self.pool, metadata(id, shown)) })
            .await?
            .map(|found| judged(found, now)))
    }

    /// The live secrets of `project` named `name`: exact matches of the name only,
    /// never of a reference's name part.
    pub async fn by_name(
        &self,
        project: &ProjectId,
        name: &str,
        now: Timestamp,
    ) -> Result<Vec<Candidate>, ReadError> {
        Ok(on_pool!(&self.pool, by_name(project, name, now))?)
    }

    /// The secrets of `project` named `name` that are live or scheduled for deletion
    /// (AWS's names stay taken through the recovery window).
    ///
    /// Beside a projector, from the read cache when it holds the name: every
    /// GetSecretValue and PutSecretValue names its secret.
    pub async fn by_name_any(
        &self,
        project: &ProjectId,
        name: &str,
        now: Timestamp,
    ) -> Result<Vec<Candidate>, ReadError> {
        if let Some(found) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.names(project, name, now))
        {
            return Ok(found);
        }
        let (named, seq) = on_pool!(&self.pool, by_name_any(project, name, now))?;
        let found = named.iter().map(|n| n.candidate.clone()).collect();
        if let Some(cache) = &self.cache {
            cache.insert_names(project.clone(), name.to_owned(), named, seq);
        }
        Ok(found)
    }

    /// The secrets whose reference is exactly `reference`.
    pub async fn by_reference(&self, reference: &str) -> Result<Vec<Candidate>, ReadError> {
        Ok(on_pool!(&self.pool, by_reference(reference))?)
    }
}

impl<T> Lookup<T> {
    /// Carries a not-found answer over to another value type. `Found` has no value of
    /// the new type, so callers match it first; here it becomes `Missing`.
    fn map_never<U>(self) -> Lookup<U> {
        match self {
            Lookup::Found(_) | Lookup::Missing => Lookup::Missing,
            Lookup::Expired(row) => Lookup::Expired(row),
            Lookup::PendingDeletion(row) => Lookup::PendingDeletion(row),
        }
    }
}

/// A secret with its payload, as [`shown`] at `now`: found, it stays shared; a row
/// that is not readable is copied out (a rare answer).
fn with_payload(held: ReadAt<Entry>, now: Timestamp) -> Lookup<WithPayload> {
    let entry = &held.1;
    match shown(&entry.row, entry.expiration_ms, &entry.status, now) {
        Shown::Readable => Lookup::Found(WithPayload(held)),
        Shown::Expired => Lookup::Expired(Box::new(entry.row.clone())),
        Shown::PendingDeletion => Lookup::PendingDeletion(Box::new(entry.row.clone())),
    }
}

/// How a secret's row shows at `now`.
enum Shown {
    Readable,
    Expired,
    PendingDeletion,
}

/// How the row `row`, with its expiry (Unix milliseconds) and status, shows at `now`.
fn shown(row: &SecretRow, expiration_ms: Option<i64>, status: &str, now: Timestamp) -> Shown {
    if expiration_ms.is_some_and(|exp| exp <= now.unix_millis()) || status == "expired" {
        Shown::Expired
    } else if row.purge_at.is_some() {
        Shown::PendingDeletion
    } else {
        Shown::Readable
    }
}

/// Whether a secret's row is readable at `now` (neither expired nor scheduled for
/// deletion).
fn is_visible((row, expiration_ms, status): &Found, now: Timestamp) -> bool {
    matches!(shown(row, *expiration_ms, status, now), Shown::Readable)
}

fn visible(row: Option<Found>, now: Timestamp) -> Lookup<SecretRow> {
    let Some((row, expiration_ms, status)) = row else {
        return Lookup::Missing;
    };
    match shown(&row, expiration_ms, &status, now) {
        Shown::Readable => Lookup::Found(row),
        Shown::Expired => Lookup::Expired(Box::new(row)),
        Shown::PendingDeletion => Lookup::PendingDeletion(Box::new(row)),
    }
}

/// Follows the checkpoint of a projector running in another process, by polling every
/// `interval` (SQLite; a PostgreSQL read model is followed by [`listen_checkpoint`]).
pub fn poll_checkpoint(
    pool: Pool,
    interval: Duration,
    shutdown: CancellationToken,
) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0);
    tokio::spawn(async move {
        loop {
            if let Ok(seq) = on_pool!(&pool, checkpoint()) {
                follow(&tx, seq);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
    rx
}

/// Moves `tx` to `seq`, the checkpoint just read. Each follower reads the checkpoint
/// from one task, one read after the other, so a later read never shows an older
/// state; the checkpoint goes back only when a rebuild clears the read model, and
/// then readers must wait for it again rather than trust a sequence it no longer has.
fn follow(tx: &watch::Sender<u64>, seq: u64) {
    tx.send_if_modified(|v| std::mem::replace(v, seq) != seq);
}

/// Follows the checkpoint of a PostgreSQL read model's projector, in another process:
/// it LISTENs to the NOTIFY the projector sends with each batch it commits, so a read
/// waiting on a sequence wakes when the batch commits, without polling. A notification
/// only wakes it: any role that can connect may NOTIFY anything, so the sequence is
/// always read from the checkpoints table, which only the projector's role writes.
/// The checkpoint is read again whenever the listener (re)connects, and every
/// `resync` in case a notification was lost with a connection.
pub fn listen_checkpoint(
    pool: sqlx::PgPool,
    resync: Duration,
    shutdown: CancellationToken,
) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0);
    tokio::spawn(async move {
        let reads = || postgres::Reads(&pool);
        // While PostgreSQL stays away, tries further and further apart (up to 5 s), as
        // the projector does; a listener that held for a while starts over.
        let mut restarts = domain::restarts::Restarts::new();
        loop {
            let started = std::time::Instant::now();
            let listening = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => listener
                    .listen(crate::apply::sql::APPLIED_CHANNEL)
                    .await
                    .map(|()| listener),
                Err(e) => Err(e),
            };
            let mut listener = match listening {
                Ok(listener) => listener,
                Err(e) => {
                    let backoff = restarts.after_failure(started.elapsed());
                    tracing::warn!(error = %crate::pg_error::Described(&e), retry_in = ?backoff, "cannot LISTEN for the read model's checkpoint; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => continue,
                    }
                }
            };
            // Read after LISTEN: no batch committed in between goes unseen.
            if let Ok(seq) = reads().checkpoint().await {
                follow(&tx, seq);
            }
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    note = listener.try_recv() => match note {
                        // A batch committed; or the connection was lost (`None`): sqlx
                        // reconnects and listens again, but a NOTIFY sent meanwhile is
                        // gone. Either way, read the checkpoint.
                        Ok(_) => {
                            // One read answers every notification already received: a
                            // flood of false ones costs a read per round trip, not
                            // one each.
                            while let Some(Ok(Some(_))) = listener.try_recv().now_or_never() {}
                            if let Ok(seq) = reads().checkpoint().await {
                                follow(&tx, seq);
                            }
                        }
                        Err(e) => {
                            let backoff = restarts.after_failure(started.elapsed());
                            tracing::warn!(error = %crate::pg_error::Described(&e), retry_in = ?backoff, "lost the read model's LISTEN connection; reconnecting");
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                () = tokio::time::sleep(backoff) => break,
                            }
                        }
                    },
                    () = tokio::time::sleep(resync) => {
                        if let Ok(seq) = reads().checkpoint().await {
                            follow(&tx, seq);
                        }
                    }
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    /// The access check reads one row through an index: never a scan.
    #[tokio::test]
    async fn a_secret_and_its_acl_are_one_indexed_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::sqlite_url(&dir.path().join("rm.sqlite"));
        let Pool::Sqlite(pool) = crate::db::open(&url, 1).await.unwrap() else {
            unreachable!("a sqlite:// URL opens SQLite")
        };
        let mut conn = pool.acquire().await.unwrap();
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            sqlite::secrets::fetch_secret_sql()
        )))
        .bind("00000000-0000-0000-0000-000000000001")
        .bind(crate::apply::PROJECTION)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect();
        // The checkpoint and the secret by their keys, and its consumers by their
        // primary key.
        assert_eq!(
            plan,
            [
                "SEARCH cp USING INDEX sqlite_autoindex_checkpoints_1 (projection=?)",
                "SEARCH s USING INDEX secrets_by_id (id=?) LEFT-JOIN",
                "CORRELATED SCALAR SUBQUERY 1",
                "SEARCH c USING PRIMARY KEY (project=? AND secret_id=?)"
            ],
            "{plan:?}"
        );
    }
}
