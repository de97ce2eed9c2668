//! Reads of project quotas: the limits the service admin set, and how much of each
//! resource a project holds (what the command service counts a create against).

use domain::ids::ProjectId;
use domain::quota::{Limits, Resource};

use super::{ReadModel, Snapshot, on_pool};
use crate::db::Pool;
use crate::read::ReadError;

/// One page of the projects with quotas set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaPage {
    /// The projects on this page, by id, with their limits.
    pub projects: Vec<(ProjectId, Limits)>,
    /// How many projects have quotas set.
    pub total: u64,
}

impl ReadModel {
    /// The limits set for `project`, if any.
    pub async fn project_quotas(
        &self,
        project: &ProjectId,
    ) -> Result<Snapshot<Option<Limits>>, ReadError> {
        self.fresh(async { on_pool!(&self.pool, project_quotas(project)) })
            .await
    }

    /// One page (`limit`, `offset`) of the projects with quotas set.
    pub async fn all_project_quotas(
        &self,
        page: (u32, u32),
    ) -> Result<Snapshot<QuotaPage>, ReadError> {
        let Snapshot {
            value: (projects, total),
            seq,
        } = self
            .fresh(async { on_pool!(&self.pool, all_project_quotas(page)) })
            .await?;
        Ok(Snapshot {
            value: QuotaPage { projects, total },
            seq,
        })
    }
}

/// How much of `resource` `project` holds in the read model at `pool`, and the
/// sequence that count reflects.
pub async fn usage(
    pool: &Pool,
    project: &ProjectId,
    resource: Resource,
) -> Result<(u64, u64), ReadError> {
    Ok(on_pool!(pool, usage(project, resource))?)
}
