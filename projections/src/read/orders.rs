//! Reads of orders.

use crate::read::ReadError;
use domain::ids::{OrderId, ProjectId, UserId};
use futures::TryStreamExt;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::checkpoint;
use super::{ReadModel, Snapshot, parsed};

/// An order as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// The project that owns it.
    pub project: ProjectId,
    /// The id.
    pub id: OrderId,
    /// key, asymmetric or certificate.
    pub order_type: String,
    /// PENDING, ACTIVE or ERROR.
    pub status: String,
    /// Barbican's `meta`, as JSON.
    pub meta: String,
    /// Who placed it.
    pub creator: UserId,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 time of the last change.
    pub updated: String,
    /// The secret it made (key orders).
    pub secret_id: Option<String>,
    /// The container it made.
    pub container_id: Option<String>,
    /// Why it failed: status code.
    pub error_status_code: Option<i64>,
    /// Why it failed: reason.
    pub error_reason: Option<String>,
}

/// A page of orders and the total the caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    /// The page.
    pub orders: Vec<OrderRow>,
    /// All the caller may see.
    pub total: u64,
}

const COLUMNS: &str = "project, id, order_type, status, meta, creator, created, updated, \
                       secret_id, container_id, error_status_code, error_reason";

fn order_row(r: &SqliteRow) -> Result<OrderRow, sqlx::Error> {
    Ok(OrderRow {
        project: parsed(r, "project", ProjectId::parse)?,
        id: parsed(r, "id", OrderId::parse)?,
        order_type: r.try_get("order_type")?,
        status: r.try_get("status")?,
        meta: r.try_get("meta")?,
        creator: parsed(r, "creator", UserId::parse)?,
        created: r.try_get("created")?,
        updated: r.try_get("updated")?,
        secret_id: r.try_get("secret_id")?,
        container_id: r.try_get("container_id")?,
        error_status_code: r.try_get("error_status_code")?,
        error_reason: r.try_get("error_reason")?,
    })
}

impl ReadModel {
    /// One order.
    pub async fn get_order(&self, id: OrderId) -> Result<Snapshot<Option<OrderRow>>, ReadError> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM orders WHERE id = ?"
        )))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| order_row(&r))
        .transpose()?;
        tx.commit().await?;
        Ok(Snapshot { value: row, seq })
    }

    /// A page of a project's orders that `keep` (the caller's read policy) admits,
    /// oldest first.
    pub async fn list_orders(
        &self,
        project: &ProjectId,
        (limit, offset): (u32, u32),
        keep: impl Fn(&OrderRow) -> bool,
    ) -> Result<Snapshot<OrderPage>, ReadError> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        let mut all = Vec::new();
        {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM orders WHERE project = ? ORDER BY created_ms, id"
            )))
            .bind(project.as_str())
            .fetch(&mut *tx);
            while let Some(r) = rows.try_next().await? {
                let row = order_row(&r)?;
                if keep(&row) {
                    all.push(row);
                }
            }
        }
        tx.commit().await?;
        let total = all.len() as u64;
        let orders = all
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        Ok(Snapshot {
            value: OrderPage { orders, total },
            seq,
        })
    }
}

/// Orders still pending, oldest first: what the order worker resumes after a restart.
pub async fn pending_orders(
    pool: &sqlx::SqlitePool,
    limit: u32,
) -> Result<Vec<(ProjectId, OrderId)>, ReadError> {
    let rows = sqlx::query_as::<_, (String, String)>(
        "SELECT project, id FROM orders WHERE status = 'PENDING' ORDER BY created_ms LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(project, id)| {
            Ok((
                ProjectId::parse(&project).map_err(|e| ReadError::malformed("project", e))?,
                OrderId::parse(&id).map_err(|e| ReadError::malformed("id", e))?,
            ))
        })
        .collect()
}
