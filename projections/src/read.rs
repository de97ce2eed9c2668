//! Reads of the secrets read model. Each read runs in one SQLite read transaction that
//! also reads the checkpoint, so the sequence a response reports is exactly the state
//! it shows. Lookups are by primary key or index: no read scans the table or touches
//! the stream.

use std::time::Duration;

use domain::ids::{ProjectId, SecretId};
use domain::timestamp::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::apply::checkpoint;

/// A secret's metadata as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
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
    /// Found and readable.
    Found(T),
    /// Exists, but expired at this RFC 3339 time.
    Expired(String),
    /// No such secret in the project.
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

const SECRET_COLUMNS: &str = "id, name, secret_type, algorithm, bit_length, mode, expiration, \
                              creator, created, updated, content_type, version";

fn secret_row(r: &SqliteRow) -> Result<SecretRow, sqlx::Error> {
    Ok(SecretRow {
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

    /// One page of a project's live secrets, oldest first.
    pub async fn list_secrets(
        &self,
        project: &ProjectId,
        filter: &ListFilter,
        now: Timestamp,
    ) -> Result<Snapshot<Page>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        const WHERE: &str = "WHERE project = ?1 AND (expiration_ms IS NULL OR expiration_ms > ?2) \
                             AND (?3 IS NULL OR name = ?3) AND (?4 IS NULL OR secret_type = ?4)";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM secrets {WHERE}"
        )))
        .bind(project.as_str())
        .bind(now.unix_millis())
        .bind(filter.name.as_deref())
        .bind(filter.secret_type.as_deref())
        .fetch_one(&mut *tx)
        .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SECRET_COLUMNS} FROM secrets {WHERE} ORDER BY created_ms, id LIMIT ?5 OFFSET ?6"
        )))
        .bind(project.as_str())
        .bind(now.unix_millis())
        .bind(filter.name.as_deref())
        .bind(filter.secret_type.as_deref())
        .bind(i64::from(filter.limit))
        .bind(i64::from(filter.offset))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Snapshot {
            value: Page {
                secrets: rows.iter().map(secret_row).collect::<Result<_, _>>()?,
                total: u64::try_from(total).unwrap_or(0),
            },
            seq,
        })
    }

    /// One secret's metadata. Expired secrets are not found from the instant they
    /// expire, whether or not the log has recorded it.
    pub async fn get_secret(
        &self,
        project: &ProjectId,
        id: SecretId,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<SecretRow>>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        let row = fetch_secret(&mut tx, project, id).await?;
        tx.commit().await?;
        Ok(Snapshot {
            value: visible(row, now),
            seq,
        })
    }

    /// A secret with its sealed payload (`None` inside when no payload is stored yet).
    pub async fn get_payload(
        &self,
        project: &ProjectId,
        id: SecretId,
        now: Timestamp,
    ) -> Result<Snapshot<Lookup<(SecretRow, Option<PayloadRow>)>>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        let found = match visible(fetch_secret(&mut tx, project, id).await?, now) {
            Lookup::Found(secret) => {
                let payload = sqlx::query(
                    "SELECT version_id, key_id, content_type, nonce, ciphertext \
                     FROM secret_payloads WHERE project = ? AND secret_id = ? \
                     ORDER BY created DESC LIMIT 1",
                )
                .bind(project.as_str())
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
            Lookup::Expired(at) => Lookup::Expired(at),
            Lookup::Missing => Lookup::Missing,
        };
        tx.commit().await?;
        Ok(Snapshot { value: found, seq })
    }
}

async fn fetch_secret(
    conn: &mut sqlx::SqliteConnection,
    project: &ProjectId,
    id: SecretId,
) -> Result<Option<(SecretRow, Option<i64>)>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SECRET_COLUMNS}, expiration_ms FROM secrets WHERE project = ? AND id = ?"
    )))
    .bind(project.as_str())
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| Ok((secret_row(&r)?, r.try_get("expiration_ms")?)))
    .transpose()
}

fn visible(row: Option<(SecretRow, Option<i64>)>, now: Timestamp) -> Lookup<SecretRow> {
    match row {
        None => Lookup::Missing,
        Some((row, Some(exp))) if exp <= now.unix_millis() => {
            Lookup::Expired(row.expiration.unwrap_or_default())
        }
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
