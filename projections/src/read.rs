//! Reads of the secrets read model. Each read runs in one SQLite read transaction that
//! also reads the checkpoint, so the sequence a response reports is exactly the state
//! it shows. Lookups are by primary key or index and never touch the stream. A
//! listing walks the project's rows that the caller could possibly read (an indexed
//! range), because the read policy decides row by row.

use std::time::Duration;

use domain::ids::{ProjectId, SecretId, UserId};
use domain::secret::acl::Acl;
use domain::timestamp::Timestamp;
use futures::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::apply::checkpoint;

/// A secret's metadata as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// The project that owns it.
    pub project: String,
    /// The id.
    pub id: String,
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
    pub creator: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 time of the last change.
    pub updated: String,
    /// Media type of the payload, once stored.
    pub content_type: Option<String>,
    /// Aggregate version.
    pub version: i64,
    /// Who may read it.
    pub acl: Acl,
}

/// A sealed payload and what is needed to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRow {
    /// The payload version.
    pub version_id: String,
    /// The data key.
    pub key_id: String,
    /// Media type.
    pub content_type: String,
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

/// Which secrets a listing considers, before the policy filters each row.
#[derive(Debug, Clone)]
pub enum ListScope<'a> {
    /// A project's secrets. Unless the caller is a project admin, only rows the
    /// caller could possibly read are considered: non-private ones, the caller's own,
    /// and those listing the caller.
    Project {
        /// The project.
        project: &'a ProjectId,
        /// The caller.
        user: &'a UserId,
        /// Whether the caller is an admin of the project.
        admin: bool,
    },
    /// Secrets whose ACL lists the user, in any project (Barbican's `acl_only=true`).
    SharedWith(&'a UserId),
}

/// Filters and paging of a secret listing (Barbican's query parameters).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Exact name.
    pub name: Option<String>,
    /// Exact secret type.
    pub secret_type: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

/// A page of secrets and the total matching the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The page.
    pub secrets: Vec<SecretRow>,
    /// All rows matching the filter.
    pub total: u64,
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

const SECRET_COLUMNS: &str = "s.project, s.id, s.name, s.secret_type, s.algorithm, s.bit_length, \
                              s.mode, s.expiration, s.creator, s.created, s.updated, \
                              s.content_type, s.version, s.acl, s.expiration_ms";

fn secret_row(r: &SqliteRow) -> Result<SecretRow, sqlx::Error> {
    let acl: Option<String> = r.try_get("acl")?;
    let acl = match acl {
        None => Acl::default(),
        // A row whose ACL does not parse is refused rather than read as the default,
        // which could widen access.
        Some(json) => serde_json::from_str(&json).map_err(|e| sqlx::Error::ColumnDecode {
            index: "acl".into(),
            source: Box::new(e),
        })?,
    };
    Ok(SecretRow {
        project: r.try_get("project")?,
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        secret_type: r.try_get("secret_type")?,
        algorithm: r.try_get("algorithm")?,
        bit_length: r.try_get("bit_length")?,
        mode: r.try_get("mode")?,
        expiration: r.try_get("expiration")?,
        creator: r.try_get("creator")?,
        created: r.try_get("created")?,
        updated: r.try_get("updated")?,
        content_type: r.try_get("content_type")?,
        version: r.try_get("version")?,
        acl,
    })
}

/// Queries of the secrets read model.
#[derive(Debug, Clone)]
pub struct ReadModel {
    pool: SqlitePool,
    applied: watch::Receiver<u64>,
}

impl ReadModel {
    /// Reads from `pool`; `applied` follows the projector's checkpoint (from a projector
    /// in this process, or from [`poll_checkpoint`]).
    pub fn new(pool: SqlitePool, applied: watch::Receiver<u64>) -> Self {
        Self { pool, applied }
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

    /// One page of the live secrets in `scope` that `keep` admits, oldest first.
    /// `keep` is the caller's read policy, applied to every row before paging, so
    /// `total` and the pages count only what the caller may see.
    pub async fn list_secrets(
        &self,
        scope: ListScope<'_>,
        filter: &ListFilter,
        now: Timestamp,
        keep: impl Fn(&SecretRow) -> bool,
    ) -> Result<Snapshot<Page>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        const LIVE: &str = "(s.expiration_ms IS NULL OR s.expiration_ms > ?1) \
                            AND (?2 IS NULL OR s.name = ?2) AND (?3 IS NULL OR s.secret_type = ?3)";
        let query = match scope {
            ListScope::Project {
                project,
                user,
                admin,
            } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SECRET_COLUMNS} FROM secrets s WHERE s.project = ?4 AND {LIVE} \
                 AND (?6 OR s.project_access = 1 OR s.creator = ?5 OR EXISTS (\
                   SELECT 1 FROM secret_acl_users u WHERE u.project = s.project \
                   AND u.secret_id = s.id AND u.user_id = ?5)) \
                 ORDER BY s.created_ms, s.id"
            )))
            .bind(now.unix_millis())
            .bind(filter.name.as_deref())
            .bind(filter.secret_type.as_deref())
            .bind(project.as_str())
            .bind(user.as_str())
            .bind(admin),
            ListScope::SharedWith(user) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SECRET_COLUMNS} FROM secret_acl_users u \
                 JOIN secrets s ON s.project = u.project AND s.id = u.secret_id \
                 WHERE u.user_id = ?4 AND {LIVE} ORDER BY s.created_ms, s.id"
            )))
            .bind(now.unix_millis())
            .bind(filter.name.as_deref())
            .bind(filter.secret_type.as_deref())
            .bind(user.as_str()),
        };
        let mut rows = query.fetch(&mut *tx);
        let (first, end) = (
            u64::from(filter.offset),
            u64::from(filter.offset) + u64::from(filter.limit),
        );
        let mut page = Vec::new();
        let mut total = 0u64;
        while let Some(r) = rows.try_next().await? {
            let row = secret_row(&r)?;
            if !keep(&row) {
                continue;
            }
            if (first..end).contains(&total) {
                page.push(row);
            }
            total += 1;
        }
        drop(rows);
        tx.commit().await?;
        Ok(Snapshot {
            value: Page {
                secrets: page,
                total,
            },
            seq,
        })
    }

    /// One secret's metadata. Expired secrets are not found from the instant they
    /// expire, whether or not the log has recorded it.
    pub async fn get_secret(
        &self,
        id: SecretId,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<SecretRow>>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        let row = fetch_secret(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Snapshot {
            value: visible(row, now),
            seq,
        })
    }

    /// A secret with its sealed payload (`None` inside when no payload is stored yet).
    pub async fn get_payload(
        &self,
        id: SecretId,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<(SecretRow, Option<PayloadRow>)>>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        let found = match visible(fetch_secret(&mut tx, id).await?, now) {
            Lookup::Found(secret) => {
                let payload = sqlx::query(
                    "SELECT version_id, key_id, content_type, nonce, ciphertext \
                     FROM secret_payloads WHERE project = ? AND secret_id = ? \
                     ORDER BY created DESC LIMIT 1",
                )
                .bind(&secret.project)
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| -> Result<PayloadRow, sqlx::Error> {
                    Ok(PayloadRow {
                        version_id: r.try_get("version_id")?,
                        key_id: r.try_get("key_id")?,
                        content_type: r.try_get("content_type")?,
                        nonce: r.try_get("nonce")?,
                        ciphertext: r.try_get("ciphertext")?,
                    })
                })
                .transpose()?;
                Lookup::Found((secret, payload))
            }
            Lookup::Expired(row) => Lookup::Expired(row),
            Lookup::Missing => Lookup::Missing,
        };
        tx.commit().await?;
        Ok(Snapshot { value: found, seq })
    }
}

/// The lookup behind every read of one secret and its access check.
fn fetch_secret_sql() -> String {
    format!("SELECT {SECRET_COLUMNS} FROM secrets s WHERE s.id = ?")
}

async fn fetch_secret(
    conn: &mut sqlx::SqliteConnection,
    id: SecretId,
) -> Result<Option<(SecretRow, Option<i64>)>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(fetch_secret_sql()))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| Ok((secret_row(&r)?, r.try_get("expiration_ms")?)))
        .transpose()
}

fn visible(row: Option<(SecretRow, Option<i64>)>, now: Timestamp) -> Lookup<SecretRow> {
    match row {
        None => Lookup::Missing,
        Some((row, Some(exp))) if exp <= now.unix_millis() => Lookup::Expired(Box::new(row)),
        Some((row, _)) => Lookup::Found(row),
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
        assert_eq!(
            plan,
            ["SEARCH s USING INDEX secrets_by_id (id=?)"],
            "{plan:?}"
        );
    }
}
