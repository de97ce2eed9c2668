//! Reads of orders.

use crate::read::ReadError;
use domain::ids::{OrderId, ProjectId, UserId};

use super::{ReadModel, Snapshot, on_pool};
use crate::db::Pool;

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

impl ReadModel {
    /// One order.
    pub async fn get_order(&self, id: OrderId) -> Result<Snapshot<Option<OrderRow>>, ReadError> {
        self.fresh(async { on_pool!(&self.pool, order(id)) }).await
    }

    /// A page of a project's orders that `keep` (the caller's read policy) admits,
    /// oldest first.
    pub async fn list_orders(
        &self,
        project: &ProjectId,
        page: (u32, u32),
        keep: impl Fn(&OrderRow) -> bool,
    ) -> Result<Snapshot<OrderPage>, ReadError> {
        self.fresh(async { on_pool!(&self.pool, orders(project, page, keep)) })
            .await
    }
}

/// Orders still pending, oldest first: what the order worker resumes after a restart.
pub async fn pending_orders(
    pool: &Pool,
    limit: u32,
) -> Result<Vec<(ProjectId, OrderId)>, ReadError> {
    let rows = on_pool!(pool, pending_orders(limit))?;
    rows.into_iter()
        .map(|(project, id)| {
            Ok((
                ProjectId::parse(&project).map_err(|e| ReadError::malformed("project", e))?,
                OrderId::parse(&id).map_err(|e| ReadError::malformed("id", e))?,
            ))
        })
        .collect()
}
