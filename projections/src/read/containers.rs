//! Reads of containers: one by id, with its references (and what became of each
//! referenced secret) and consumers; and listings filtered by the read policy.

use crate::read::ReadError;
use domain::ids::{ContainerId, ProjectId, SecretId, UserId};
use domain::secret::acl::Acl;
use domain::timestamp::Timestamp;
use futures::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::checkpoint;
use super::{AclTimes, ReadModel, Snapshot, acl_of, acl_times_of, parsed};

/// A container as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRow {
    /// The project that owns it.
    pub project: ProjectId,
    /// The id.
    pub id: ContainerId,
    /// Name.
    pub name: Option<String>,
    /// generic, rsa or certificate.
    pub container_type: String,
    /// The creating user.
    pub creator: UserId,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 time of the last change.
    pub updated: String,
    /// Who may read it.
    pub acl: Acl,
    /// When its ACL was set, unless it is the default.
    pub acl_set: Option<AclTimes>,
    /// Its references, in order.
    pub refs: Vec<ContainerRefRow>,
    /// Its consumers.
    pub consumers: Vec<ContainerConsumerRow>,
}

/// A container's consumer: Barbican's `{name, URL}`, and when it registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConsumerRow {
    /// Its name.
    pub name: String,
    /// Where it uses the container.
    pub url: String,
    /// RFC 3339 registration time.
    pub created: String,
}

/// One reference of a container, and what became of the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRefRow {
    /// Its name in the container.
    pub name: String,
    /// The project owning the secret.
    pub secret_project: ProjectId,
    /// The secret.
    pub secret_id: SecretId,
    /// RFC 3339 expiration of the secret, if it has one.
    pub expiration: Option<String>,
    /// Why the secret cannot be used any more (expired, deleted, scheduled for
    /// deletion), if so.
    pub problem: Option<String>,
}

/// A page of containers and the total the caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPage {
    /// The page.
    pub containers: Vec<ContainerRow>,
    /// All the caller may see.
    pub total: u64,
}

const COLUMNS: &str = "c.project, c.id, c.name, c.container_type, c.creator, c.created, \
                       c.updated, c.acl, c.acl_created, c.acl_updated";

fn container_row(r: &SqliteRow) -> Result<ContainerRow, sqlx::Error> {
    Ok(ContainerRow {
        project: parsed(r, "project", ProjectId::parse)?,
        id: parsed(r, "id", ContainerId::parse)?,
        name: r.try_get("name")?,
        container_type: r.try_get("container_type")?,
        creator: parsed(r, "creator", UserId::parse)?,
        created: r.try_get("created")?,
        updated: r.try_get("updated")?,
        acl: acl_of(r)?,
        acl_set: acl_times_of(r)?,
        refs: Vec::new(),
        consumers: Vec::new(),
    })
}

/// Fills in a container's references and consumers.
async fn details(
    conn: &mut SqliteConnection,
    row: &mut ContainerRow,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let refs = sqlx::query(
        "SELECT r.name, r.secret_project, r.secret_id, s.id AS found, s.status, s.expiration, \
         s.expiration_ms, s.purge_at FROM container_secrets r LEFT JOIN secrets s \
         ON s.project = r.secret_project AND s.id = r.secret_id \
         WHERE r.project = ? AND r.container_id = ? ORDER BY r.position",
    )
    .bind(row.project.as_str())
    .bind(row.id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    row.refs = refs
        .iter()
        .map(|r| -> Result<ContainerRefRow, sqlx::Error> {
            let found: Option<String> = r.try_get("found")?;
            let status: Option<String> = r.try_get("status")?;
            let expiration: Option<String> = r.try_get("expiration")?;
            let expiration_ms: Option<i64> = r.try_get("expiration_ms")?;
            let purge_at: Option<String> = r.try_get("purge_at")?;
            let expired = status.as_deref() == Some("expired")
                || expiration_ms.is_some_and(|ms| ms <= now.unix_millis());
            let problem = match (found, expired, purge_at) {
                (None, _, _) => Some("deleted".to_owned()),
                (Some(_), true, _) => Some(format!(
                    "expired on {}",
                    expiration.clone().unwrap_or_default()
                )),
                (Some(_), false, Some(at)) => Some(format!("scheduled for deletion on {at}")),
                _ => None,
            };
            Ok(ContainerRefRow {
                name: r.try_get("name")?,
                secret_project: parsed(r, "secret_project", ProjectId::parse)?,
                secret_id: parsed(r, "secret_id", SecretId::parse)?,
                expiration,
                problem,
            })
        })
        .collect::<Result<_, _>>()?;
    row.consumers = sqlx::query_as::<_, (String, String, String)>(
        "SELECT name, url, created FROM container_consumers WHERE project = ? AND \
         container_id = ? ORDER BY name, url",
    )
    .bind(row.project.as_str())
    .bind(row.id.to_string())
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(name, url, created)| ContainerConsumerRow { name, url, created })
    .collect();
    Ok(())
}

impl ReadModel {
    /// One container, with its references and consumers.
    pub async fn get_container(
        &self,
        id: ContainerId,
        now: Timestamp,
    ) -> Result<Snapshot<Option<ContainerRow>>, ReadError> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM containers c WHERE c.id = ?"
        )))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let value = match row {
            Some(r) => {
                let mut row = container_row(&r)?;
                details(&mut tx, &mut row, now).await?;
                Some(row)
            }
            None => None,
        };
        tx.commit().await?;
        Ok(Snapshot { value, seq })
    }

    /// A page of a project's containers that `keep` (the caller's read policy)
    /// admits, oldest first.
    pub async fn list_containers(
        &self,
        project: &ProjectId,
        (limit, offset): (u32, u32),
        now: Timestamp,
        keep: impl Fn(&ContainerRow) -> bool,
    ) -> Result<Snapshot<ContainerPage>, ReadError> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        let rows: Vec<ContainerRow> = {
            // The policy decides row by row; the project's containers are an index range.
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM containers c WHERE c.project = ? ORDER BY c.created_ms, c.id"
            )))
            .bind(project.as_str())
            .fetch(&mut *tx);
            let mut out = Vec::new();
            while let Some(r) = rows.try_next().await? {
                let row = container_row(&r)?;
                if keep(&row) {
                    out.push(row);
                }
            }
            out
        };
        let total = rows.len() as u64;
        let mut page: Vec<ContainerRow> = rows
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        for row in &mut page {
            details(&mut tx, row, now).await?;
        }
        tx.commit().await?;
        Ok(Snapshot {
            value: ContainerPage {
                containers: page,
                total,
            },
            seq,
        })
    }
}
