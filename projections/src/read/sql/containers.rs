//! Containers: one by id with its references and consumers, and a project's listing.

use domain::ids::{ContainerId, ProjectId, SecretId, UserId};
use domain::timestamp::Timestamp;
use futures::TryStreamExt;
use sqlx::Row;

use super::secrets::{acl_of, acl_times_of, checkpoint, parsed};
use super::{Conn, DbRow, Reads};
use crate::read::{ContainerConsumerRow, ContainerPage, ContainerRefRow, ContainerRow};

const COLUMNS: &str = "c.project, c.id, c.name, c.container_type, c.creator, c.created, \
                       c.updated, c.acl, c.acl_created, c.acl_updated";

fn container_row(r: &DbRow) -> Result<ContainerRow, sqlx::Error> {
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

/// Fills in a container's references (and what became of each referenced secret, as
/// of `now`) and consumers.
async fn details(
    conn: &mut Conn,
    row: &mut ContainerRow,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    let refs = sqlx::query(
        "SELECT r.name, r.secret_project, r.secret_id, s.id AS found, s.status, s.expiration, \
         s.expiration_ms, s.purge_at, s.purge_at_ms FROM container_secrets r LEFT JOIN secrets s \
         ON s.project = r.secret_project AND s.id = r.secret_id \
         WHERE r.project = $1 AND r.container_id = $2 ORDER BY r.position",
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
            let purge_at_ms: Option<i64> = r.try_get("purge_at_ms")?;
            let expired = status.as_deref() == Some("expired")
                || expiration_ms.is_some_and(|ms| ms <= now.unix_millis());
            // Deleted from the end of its recovery window, before the purge lands.
            let window_ended = purge_at_ms.is_some_and(|ms| ms <= now.unix_millis());
            let problem = match (found, expired, purge_at) {
                (None, _, _) => Some("deleted".to_owned()),
                (Some(_), _, Some(at)) if window_ended => {
                    Some(format!("deleted (its recovery window ended on {at})"))
                }
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
        "SELECT name, url, created FROM container_consumers WHERE project = $1 AND \
         container_id = $2 ORDER BY name, url",
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

impl Reads<'_> {
    /// One container with its references and consumers.
    pub(crate) async fn container(
        &self,
        id: ContainerId,
        now: Timestamp,
    ) -> Result<(Option<ContainerRow>, u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut tx = super::begin(&mut conn).await?;
        let seq = checkpoint(&mut tx).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM containers c WHERE c.id = $1"
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
        Ok((value, seq))
    }

    /// One page of the containers of `project` that `keep` lets through.
    pub(crate) async fn containers(
        &self,
        project: &ProjectId,
        (limit, offset): (u32, u32),
        now: Timestamp,
        keep: impl Fn(&ContainerRow) -> bool,
    ) -> Result<(ContainerPage, u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut tx = super::begin(&mut conn).await?;
        let seq = checkpoint(&mut tx).await?;
        let rows: Vec<ContainerRow> = {
            // The policy decides row by row; the project's containers are an index range.
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM containers c WHERE c.project = $1 \
                 ORDER BY c.created_ms, c.id"
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
        Ok((
            ContainerPage {
                containers: page,
                total,
            },
            seq,
        ))
    }
}
