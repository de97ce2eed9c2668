//! The write side's views of the read model: what the scheduler finds due and the
//! orders still pending.

use commands::orders::worker::PendingOrders;
use commands::scheduler::{Due, DueSource};
use domain::ids::{ProjectId, SecretId};
use domain::secret::version::Lifecycle;
use domain::timestamp::Timestamp;

/// The scheduler's view of the read model.
pub(super) struct ReadModelDue(pub(super) sqlx::SqlitePool);

impl DueSource for ReadModelDue {
    async fn due(
        &self,
        now: Timestamp,
        lifecycle: Lifecycle,
        limit: u32,
    ) -> std::result::Result<Vec<Due>, String> {
        let retention = lifecycle.retention;
        let before = Timestamp::from_unix_millis(
            now.unix_millis()
                .saturating_sub(i64::try_from(retention.min_age.as_millis()).unwrap_or(i64::MAX)),
        )
        .unwrap_or(now);
        let rows = projections::read::due(&self.0, now, retention.keep, before, limit)
            .await
            .map_err(|e| e.to_string())?;
        // Rows the projector wrote from the log always parse; one that does not is
        // skipped (and named) rather than stopping the scheduler.
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let parsed = (|| {
                    Some(Due {
                        project: ProjectId::parse(&r.project).ok()?,
                        secret: SecretId::parse(&r.id).ok()?,
                        task: r.task,
                        version: u64::try_from(r.version).ok()?,
                    })
                })();
                if parsed.is_none() {
                    tracing::error!(secret = %r.id, "scheduler: a read-model row does not parse");
                }
                parsed
            })
            .collect())
    }
}

/// The order worker's view of the read model: the orders still pending.
pub(super) struct ReadModelPending(pub(super) sqlx::SqlitePool);

impl PendingOrders for ReadModelPending {
    async fn pending(&self, limit: u32) -> std::result::Result<Vec<(String, String)>, String> {
        projections::read::pending_orders(&self.0, limit)
            .await
            .map_err(|e| e.to_string())
    }
}
