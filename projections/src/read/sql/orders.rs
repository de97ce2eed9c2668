//! Orders: one by id, a project's listing, and those still pending.

use domain::ids::{OrderId, ProjectId, UserId};
use futures::TryStreamExt;
use sqlx::Row;

use super::secrets::{checkpoint, parsed};
use super::{DbRow, Reads};
use crate::read::{OrderPage, OrderRow};

const COLUMNS: &str = "project, id, order_type, status, meta, creator, created, updated, \
                       secret_id, container_id, error_status_code, error_reason";

fn order_row(r: &DbRow) -> Result<OrderRow, sqlx::Error> {
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

impl Reads<'_> {
    /// One order.
    pub(crate) async fn order(&self, id: OrderId) -> Result<(Option<OrderRow>, u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut tx = super::begin(&mut conn).await?;
        let seq = checkpoint(&mut tx).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM orders WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| order_row(&r))
        .transpose()?;
        tx.commit().await?;
        Ok((row, seq))
    }

    /// One page of the orders of `project` that `keep` lets through.
    pub(crate) async fn orders(
        &self,
        project: &ProjectId,
        (limit, offset): (u32, u32),
        keep: impl Fn(&OrderRow) -> bool,
    ) -> Result<(OrderPage, u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut tx = super::begin(&mut conn).await?;
        let seq = checkpoint(&mut tx).await?;
        let mut all = Vec::new();
        {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM orders WHERE project = $1 ORDER BY created_ms, id"
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
        Ok((OrderPage { orders, total }, seq))
    }

    /// Up to `limit` pending orders, oldest first.
    pub(crate) async fn pending_orders(&self, limit: u32) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query_as::<_, (String, String)>(
            "SELECT project, id FROM orders WHERE status = 'PENDING' ORDER BY created_ms LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *self.0.acquire().await?)
        .await
    }
}
