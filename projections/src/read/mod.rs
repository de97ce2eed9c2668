//! Reads of the secrets read model. Each read runs in one SQLite read transaction that
//! also reads the checkpoint, so the sequence a response reports is exactly the state
//! it shows. Lookups are by primary key or index and never touch the stream. A
//! listing walks the project's rows that the caller could possibly read (an indexed
//! range), because the read policy decides row by row.

use std::collections::BTreeMap;
use std::time::Duration;

use domain::ids::{KeyId, ProjectId, SecretId, ServiceName, UserId, VersionId};
use domain::secret::acl::Acl;
use domain::secret::payload::ContentType;
use domain::timestamp::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use error::bad_column;

mod cache;
mod containers;
mod due;
mod error;
mod list;
mod orders;

pub use cache::{Entry, PayloadCache};
pub use containers::{ContainerConsumerRow, ContainerPage, ContainerRefRow, ContainerRow};
pub use due::due;
pub use error::ReadError;
pub use list::{Compare, ListFilter, ListScope, Page, SortKey, TimeColumn};
pub use orders::{OrderPage, OrderRow, pending_orders};

/// The sequence the projection has applied (0: nothing yet), read in the caller's
/// transaction so it matches the rows read beside it.
pub(crate) async fn checkpoint(conn: &mut sqlx::SqliteConnection) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM checkpoints WHERE projection = ?")
        .bind(crate::apply::PROJECTION)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}

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

/// A page of a secret's versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPage {
    /// The versions of the page, oldest first.
    pub versions: Vec<VersionRow>,
    /// How many versions the secret has.
    pub total: u64,
}

/// The columns of a [`VersionRow`], from `secret_payloads p`.
const VERSION_COLUMNS: &str = "p.version_id, p.content_type, p.created, \
    (SELECT group_concat(g.stage, ',') FROM (SELECT stage FROM secret_stages g \
     WHERE g.project = p.project AND g.secret_id = p.secret_id \
     AND g.version_id = p.version_id ORDER BY stage) g) AS stages";

fn version_row(r: &sqlx::sqlite::SqliteRow) -> Result<VersionRow, sqlx::Error> {
    let stages: Option<String> = r.try_get("stages")?;
    Ok(VersionRow {
        version_id: r.try_get("version_id")?,
        content_type: r.try_get("content_type")?,
        created: r.try_get("created")?,
        stages: stages
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::to_owned)
            .collect(),
    })
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

/// The read model has not reached a sequence a caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the read model is at sequence {applied}, not yet at {wanted}")]
pub struct Lagging {
    /// What was asked for.
    pub wanted: u64,
    /// What is applied.
    pub applied: u64,
}

pub(crate) const SECRET_COLUMNS: &str = "s.project, s.id, s.name, s.secret_type, s.algorithm, s.bit_length, \
                              s.mode, s.expiration, s.creator, s.created, s.updated, \
                              s.content_type, s.version, s.acl, s.expiration_ms, \
                              s.owning_service, s.reference, s.purge_at, s.tags, \
                              s.version_count, s.status, s.purge_at_ms, s.acl_created, \
                              s.acl_updated, \
                              (SELECT json_group_array(json_array(c.service, c.resource_type, \
                               c.resource_id, c.created)) FROM secret_consumers c \
                               WHERE c.project = s.project AND c.secret_id = s.id) AS consumers";

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

/// The ACL times of a row's `acl_created` and `acl_updated` columns.
pub(crate) fn acl_times_of(r: &SqliteRow) -> Result<Option<AclTimes>, sqlx::Error> {
    let created: Option<String> = r.try_get("acl_created")?;
    let updated: Option<String> = r.try_get("acl_updated")?;
    Ok(created.map(|created| AclTimes {
        updated: updated.unwrap_or_else(|| created.clone()),
        created,
    }))
}

fn consumers_of(r: &SqliteRow) -> Result<Vec<SecretConsumerRow>, sqlx::Error> {
    let text: Option<String> = r.try_get("consumers")?;
    let mut rows: Vec<(String, String, String, String)> =
        serde_json::from_str(text.as_deref().unwrap_or("[]"))
            .map_err(|e| bad_column("consumers", e))?;
    rows.sort();
    Ok(rows
        .into_iter()
        .map(
            |(service, resource_type, resource_id, created)| SecretConsumerRow {
                service,
                resource_type,
                resource_id,
                created,
            },
        )
        .collect())
}

/// The ACL in a row's `acl` column (NULL: the default).
pub(crate) fn acl_of(r: &SqliteRow) -> Result<Acl, sqlx::Error> {
    let acl: Option<String> = r.try_get("acl")?;
    match acl {
        None => Ok(Acl::default()),
        // A row whose ACL does not parse is refused rather than read as the default,
        // which could widen access.
        Some(json) => serde_json::from_str(&json).map_err(|e| bad_column("acl", e)),
    }
}

/// A text column parsed into the domain type the projector wrote it from; one that
/// does not parse is a corrupt row, never a default.
pub(crate) fn parsed<T, E>(
    r: &SqliteRow,
    column: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, sqlx::Error>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: String = r.try_get(column)?;
    parse(&text).map_err(|e| bad_column(column, e))
}

/// [`parsed`] for a nullable column.
pub(crate) fn parsed_opt<T, E>(
    r: &SqliteRow,
    column: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, sqlx::Error>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: Option<String> = r.try_get(column)?;
    text.map(|t| parse(&t).map_err(|e| bad_column(column, e)))
        .transpose()
}

pub(crate) fn secret_row(r: &SqliteRow) -> Result<SecretRow, sqlx::Error> {
    let acl = acl_of(r)?;
    Ok(SecretRow {
        project: parsed(r, "project", ProjectId::parse)?,
        id: parsed(r, "id", SecretId::parse)?,
        name: r.try_get("name")?,
        secret_type: r.try_get("secret_type")?,
        algorithm: r.try_get("algorithm")?,
        bit_length: r.try_get("bit_length")?,
        mode: r.try_get("mode")?,
        expiration: r.try_get("expiration")?,
        creator: parsed(r, "creator", UserId::parse)?,
        created: r.try_get("created")?,
        updated: r.try_get("updated")?,
        content_type: parsed_opt(r, "content_type", ContentType::parse)?,
        version: r.try_get("version")?,
        acl,
        owning_service: parsed_opt(r, "owning_service", ServiceName::parse)?,
        reference: r.try_get("reference")?,
        purge_at: r.try_get("purge_at")?,
        tags: serde_json::from_str(&r.try_get::<String, _>("tags")?)
            .map_err(|e| bad_column("tags", e))?,
        version_count: r.try_get("version_count")?,
        acl_set: acl_times_of(r)?,
        consumers: consumers_of(r)?,
    })
}

/// Queries of the secrets read model.
#[derive(Debug, Clone)]
pub struct ReadModel {
    pool: SqlitePool,
    applied: watch::Receiver<u64>,
    cache: Option<PayloadCache>,
}

impl ReadModel {
    /// Reads from `pool`; `applied` follows the projector's checkpoint (from a projector
    /// in this process, or from [`poll_checkpoint`]).
    pub fn new(pool: SqlitePool, applied: watch::Receiver<u64>) -> Self {
        Self {
            pool,
            applied,
            cache: None,
        }
    }

    /// Answers payload reads from `cache` when it can: only with the cache of the
    /// projector whose `applied` this read model follows, which keeps it true.
    #[must_use]
    pub fn with_cache(mut self, cache: PayloadCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The sequence applied so far.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
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

    /// The sequences between `from` and `to` (inclusive) the projector skipped: foreign
    /// messages, replayed copies, commits it could not read.
    pub async fn skipped_between(
        &self,
        from: u64,
        to: u64,
    ) -> Result<std::collections::BTreeSet<u64>, ReadError> {
        let rows: Vec<i64> =
            sqlx::query_scalar("SELECT seq FROM skipped_commits WHERE seq BETWEEN ? AND ?")
                .bind(i64::try_from(from).unwrap_or(i64::MAX))
                .bind(i64::try_from(to).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|s| u64::try_from(s).ok())
            .collect())
    }

    /// One secret's metadata. Expired secrets are not found from the instant they
    /// expire, whether or not the log has recorded it.
    pub async fn get_secret(
        &self,
        id: SecretId,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<SecretRow>>, ReadError> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        let row = fetch_secret(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Snapshot {
            value: visible(row, now),
            seq,
        })
    }

    /// A secret, with `details` read in the same transaction when it is found.
    async fn with_secret<T>(
        &self,
        id: SecretId,
        now: Timestamp,
        details: impl AsyncFnOnce(&mut sqlx::SqliteConnection, &SecretRow) -> Result<T, sqlx::Error>,
    ) -> Result<Snapshot<Lookup<(SecretRow, T)>>, ReadError> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        let found = match visible(fetch_secret(&mut tx, id).await?, now) {
            Lookup::Found(secret) => {
                let more = details(&mut tx, &secret).await?;
                Lookup::Found((secret, more))
            }
            other => other.map_never(),
        };
        tx.commit().await?;
        Ok(Snapshot { value: found, seq })
    }

    /// A secret with the sealed payload of its current version (`None` inside when it
    /// has none). Beside a projector in this process, from the [`PayloadCache`] when it
    /// holds the secret.
    pub async fn get_payload(
        &self,
        id: SecretId,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<(SecretRow, Option<PayloadRow>)>>, ReadError> {
        let current = VersionSelector::Stage("current");
        let Some(cache) = &self.cache else {
            return self.get_version(id, current, now).await;
        };
        // Read before the cache: an entry still held then reflects every commit up to
        // this sequence (the projector evicts before it publishes a sequence).
        let applied = self.applied();
        if let Some(entry) = cache.get(id) {
            return Ok(Snapshot {
                value: with_payload(entry.as_ref().clone(), now),
                seq: applied,
            });
        }
        let (found, seq) = self.fetch_version(id, current).await?;
        let Some(entry) = found else {
            return Ok(Snapshot {
                value: Lookup::Missing,
                seq,
            });
        };
        cache.insert(id, entry.clone(), seq);
        Ok(Snapshot {
            value: with_payload(entry, now),
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
    ) -> Result<Snapshot<Lookup<(SecretRow, Option<PayloadRow>)>>, ReadError> {
        let (found, seq) = self.fetch_version(id, which).await?;
        let value = match found {
            Some(entry) => with_payload(entry, now),
            None => Lookup::Missing,
        };
        Ok(Snapshot { value, seq })
    }

    /// A secret's row with the sealed payload of one version, and the sequence they
    /// reflect.
    ///
    /// The hot path of every payload read, so it is one statement: the checkpoint,
    /// the secret's row and the payload's, read in SQLite's one implicit snapshot
    /// (each further statement is a round trip to the connection's thread).
    async fn fetch_version(
        &self,
        id: SecretId,
        which: VersionSelector<'_>,
    ) -> Result<(Option<Entry>, u64), ReadError> {
        let (condition, value) = match which {
            VersionSelector::Id(v) => ("p.version_id = ?3", v),
            VersionSelector::Stage(s) => (
                "p.version_id = (SELECT g.version_id FROM secret_stages g WHERE \
                 g.project = s.project AND g.secret_id = s.id AND g.stage = ?3)",
                s,
            ),
        };
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SECRET_COLUMNS}, \
             (SELECT c.seq FROM checkpoints c WHERE c.projection = ?1) AS applied_seq, \
             p.version_id AS p_version_id, p.key_id AS p_key_id, \
             p.content_type AS p_content_type, p.nonce AS p_nonce, \
             p.ciphertext AS p_ciphertext \
             FROM secrets s LEFT JOIN secret_payloads p ON p.project = s.project \
             AND p.secret_id = s.id AND {condition} WHERE s.id = ?2"
        )))
        .bind(crate::apply::PROJECTION)
        .bind(id.to_string())
        .bind(value)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(r) = row else {
            return Ok((None, checkpoint(&mut conn).await?));
        };
        let seq: Option<i64> = r.try_get("applied_seq")?;
        let seq = seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        let version: Option<String> = r.try_get("p_version_id")?;
        let payload = match version {
            None => None,
            Some(_) => Some(PayloadRow {
                version_id: parsed(&r, "p_version_id", VersionId::parse)?,
                key_id: parsed(&r, "p_key_id", KeyId::parse)?,
                content_type: parsed(&r, "p_content_type", ContentType::parse)?,
                nonce: r.try_get("p_nonce")?,
                ciphertext: r.try_get("p_ciphertext")?,
            }),
        };
        let entry = Entry {
            row: secret_row(&r)?,
            expiration_ms: r.try_get("expiration_ms")?,
            status: r.try_get("status")?,
            payload,
        };
        Ok((Some(entry), seq))
    }

    /// A secret with one page of its versions, oldest first, and how many it has.
    pub async fn list_versions(
        &self,
        id: SecretId,
        now: Timestamp,
        (limit, offset): (u32, u32),
    ) -> Result<Snapshot<Lookup<(SecretRow, VersionPage)>>, ReadError> {
        self.with_secret(id, now, async |conn, secret| {
            let total: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM secret_payloads WHERE project = ? AND secret_id = ?",
            )
            .bind(secret.project.as_str())
            .bind(id.to_string())
            .fetch_one(&mut *conn)
            .await?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {VERSION_COLUMNS} FROM secret_payloads p WHERE p.project = ? AND \
                 p.secret_id = ? ORDER BY p.created_ms, p.version_id LIMIT ? OFFSET ?"
            )))
            .bind(secret.project.as_str())
            .bind(id.to_string())
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&mut *conn)
            .await?;
            Ok(VersionPage {
                versions: rows.iter().map(version_row).collect::<Result<_, _>>()?,
                total: u64::try_from(total).unwrap_or_default(),
            })
        })
        .await
    }

    /// A secret with one of its versions, by id or by stage (`None` inside when
    /// there is no such version).
    pub async fn find_version(
        &self,
        id: SecretId,
        which: VersionSelector<'_>,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<(SecretRow, Option<VersionRow>)>>, ReadError> {
        self.with_secret(id, now, async |conn, secret| {
            let (condition, value) = match which {
                VersionSelector::Id(v) => ("p.version_id = ?3", v),
                VersionSelector::Stage(s) => (
                    "p.version_id = (SELECT g.version_id FROM secret_stages g WHERE \
                         g.project = ?1 AND g.secret_id = ?2 AND g.stage = ?3)",
                    s,
                ),
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {VERSION_COLUMNS} FROM secret_payloads p WHERE p.project = ?1 AND \
                 p.secret_id = ?2 AND {condition}"
            )))
            .bind(secret.project.as_str())
            .bind(id.to_string())
            .bind(value)
            .fetch_optional(conn)
            .await?
            .as_ref()
            .map(version_row)
            .transpose()
        })
        .await
    }

    /// A secret with its metadata.
    pub async fn get_metadata(
        &self,
        id: SecretId,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<(SecretRow, BTreeMap<String, String>)>>, ReadError> {
        self.with_secret(id, now, async |conn, secret| {
            Ok(sqlx::query_as::<_, (String, String)>(
                "SELECT key, value FROM secret_metadata WHERE project = ? AND secret_id = ? \
                 ORDER BY key",
            )
            .bind(secret.project.as_str())
            .bind(id.to_string())
            .fetch_all(conn)
            .await?
            .into_iter()
            .collect())
        })
        .await
    }

    /// The live secrets of `project` named `name`: exact matches of the name only,
    /// never of a reference's name part.
    pub async fn by_name(
        &self,
        project: &ProjectId,
        name: &str,
        now: Timestamp,
    ) -> Result<Vec<Candidate>, ReadError> {
        sqlx::query_as::<_, (String, String)>(
            "SELECT s.id, s.reference FROM secrets s WHERE s.project = ? AND s.name = ? \
             AND s.status = 'active' AND (s.expiration_ms IS NULL OR s.expiration_ms > ?) \
             ORDER BY s.created_ms, s.id",
        )
        .bind(project.as_str())
        .bind(name)
        .bind(now.unix_millis())
        .fetch_all(&self.pool)
        .await
        .map(candidates)
        .map_err(ReadError::from)
    }

    /// The secrets whose reference is exactly `reference`.
    pub async fn by_reference(&self, reference: &str) -> Result<Vec<Candidate>, ReadError> {
        sqlx::query_as::<_, (String, String)>(
            "SELECT s.id, s.reference FROM secrets s WHERE s.reference = ? ORDER BY s.id",
        )
        .bind(reference)
        .fetch_all(&self.pool)
        .await
        .map(candidates)
        .map_err(ReadError::from)
    }
}

fn candidates(rows: Vec<(String, String)>) -> Vec<Candidate> {
    rows.into_iter()
        .map(|(id, reference)| Candidate { id, reference })
        .collect()
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

/// The lookup behind every read of one secret and its access check.
fn fetch_secret_sql() -> String {
    format!("SELECT {SECRET_COLUMNS} FROM secrets s WHERE s.id = ?")
}

async fn fetch_secret(
    conn: &mut sqlx::SqliteConnection,
    id: SecretId,
) -> Result<Option<(SecretRow, Option<i64>, String)>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(fetch_secret_sql()))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| {
            Ok((
                secret_row(&r)?,
                r.try_get("expiration_ms")?,
                r.try_get("status")?,
            ))
        })
        .transpose()
}

/// A secret with its payload, as [`visible`] at `now`.
fn with_payload(entry: Entry, now: Timestamp) -> Lookup<(SecretRow, Option<PayloadRow>)> {
    let Entry {
        row,
        expiration_ms,
        status,
        payload,
    } = entry;
    match visible(Some((row, expiration_ms, status)), now) {
        Lookup::Found(secret) => Lookup::Found((secret, payload)),
        other => other.map_never(),
    }
}

fn visible(row: Option<(SecretRow, Option<i64>, String)>, now: Timestamp) -> Lookup<SecretRow> {
    match row {
        None => Lookup::Missing,
        Some((row, Some(exp), _)) if exp <= now.unix_millis() => Lookup::Expired(Box::new(row)),
        Some((row, _, status)) if status == "expired" => Lookup::Expired(Box::new(row)),
        Some((row, _, _)) if row.purge_at.is_some() => Lookup::PendingDeletion(Box::new(row)),
        Some((row, _, _)) => Lookup::Found(row),
    }
}

/// Follows the checkpoint of a projector running in another process, by polling.
pub fn poll_checkpoint(
    pool: SqlitePool,
    interval: Duration,
    shutdown: CancellationToken,
) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0);
    tokio::spawn(async move {
        loop {
            if let Ok(mut conn) = pool.acquire().await
                && let Ok(seq) = checkpoint(&mut conn).await
            {
                tx.send_if_modified(|v| {
                    let changed = *v != seq;
                    *v = seq;
                    changed
                });
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The access check reads one row through an index: never a scan.
    #[tokio::test]
    async fn a_secret_and_its_acl_are_one_indexed_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::sqlite_url(&dir.path().join("rm.sqlite"));
        let pool = crate::db::open(&url, 1).await.unwrap();
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            fetch_secret_sql()
        )))
        .bind("00000000-0000-0000-0000-000000000001")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect();
        // The secret by its id, and its consumers by their primary key.
        assert_eq!(
            plan,
            [
                "SEARCH s USING INDEX secrets_by_id (id=?)",
                "CORRELATED SCALAR SUBQUERY 1",
                "SEARCH c USING PRIMARY KEY (project=? AND secret_id=?)"
            ],
            "{plan:?}"
        );
    }
}
