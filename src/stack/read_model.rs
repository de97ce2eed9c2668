//! The write side's views of the read model: what the scheduler finds due, the
//! orders still pending, and what a project holds for its quotas.

use commands::SourceError;
use commands::order::worker::PendingOrders;
use commands::quota::{Counted, QuotaUsage};
use commands::secret::rotation::RotationSource;
use commands::secret::scheduler::{Due, DueSource};
use domain::ids::{OrderId, ProjectId};
use domain::quota::Resource;
use domain::secret::rotation::DueRotation;
use domain::secret::version::Lifecycle;
use domain::timestamp::Timestamp;

/// The scheduler's view of the read model.
pub(super) struct ReadModelDue(pub(super) projections::db::Pool);

impl DueSource for ReadModelDue {
    async fn due(
        &self,
        now: Timestamp,
        lifecycle: Lifecycle,
        limit: u32,
    ) -> Result<Vec<Due>, SourceError> {
        let retention = lifecycle.retention;
        let before = Timestamp::from_unix_millis(
            now.unix_millis()
                .saturating_sub(i64::try_from(retention.min_age.as_millis()).unwrap_or(i64::MAX)),
        )
        .unwrap_or(now);
        Ok(projections::read::due(&self.0, now, retention.keep, before, limit).await?)
    }
}

impl RotationSource for ReadModelDue {
    async fn due(&self, now: Timestamp, limit: u32) -> Result<Vec<DueRotation>, SourceError> {
        Ok(projections::read::rotations_due(&self.0, now, limit).await?)
    }
}

/// The order worker's view of the read model: the orders still pending.
pub(super) struct ReadModelPending(pub(super) projections::db::Pool);

impl PendingOrders for ReadModelPending {
    async fn pending(&self, limit: u32) -> Result<Vec<(ProjectId, OrderId)>, SourceError> {
        Ok(projections::read::pending_orders(&self.0, limit).await?)
    }
}

/// The quota gate's view of the read model: how much of a resource a project holds.
pub(super) struct ReadModelUsage(pub(super) projections::db::Pool);

impl QuotaUsage for ReadModelUsage {
    fn usage<'a>(&'a self, project: &'a ProjectId, resource: Resource) -> Counted<'a> {
        Box::pin(async move { Ok(projections::read::usage(&self.0, project, resource).await?) })
    }
}
