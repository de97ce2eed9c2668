//! Project quotas: one project's limits, every project's, and how much of a resource
//! a project holds.

use domain::ids::ProjectId;
use domain::quota::{Limits, Resource};
use sqlx::Row;

use super::secrets::{checkpoint, parsed};
use super::{DbRow, Reads};
use crate::read::error::bad_column;

fn limits(r: &DbRow) -> Result<(ProjectId, Limits), sqlx::Error> {
    let limits: String = r.try_get("limits")?;
    Ok((
        parsed(r, "project", ProjectId::parse)?,
        serde_json::from_str(&limits).map_err(|e| bad_column("limits", e))?,
    ))
}

/// The count of `resource` in project `$1`: what exists (a secret until it expires
/// or is deleted), whoever made it.
fn count_query(resource: Resource) -> &'static str {
    match resource {
        Resource::Secrets => {
            "SELECT count(*) FROM secrets WHERE project = $1 AND status != 'expired'"
        }
        Resource::Orders => "SELECT count(*) FROM orders WHERE project = $1",
        Resource::Containers => "SELECT count(*) FROM containers WHERE project = $1",
        // Consumers of an expired secret (which cannot be removed any more) do not.
        Resource::Consumers => {
            "SELECT (SELECT count(*) FROM secret_consumers c JOIN secrets s \
             ON s.project = c.project AND s.id = c.secret_id \
             WHERE c.project = $1 AND s.status != 'expired') \
             + (SELECT count(*) FROM container_consumers WHERE project = $1)"
        }
        // keyledger makes no CAs on request.
        Resource::Cas => "SELECT count(*) FROM project_quotas WHERE project = $1 AND 1 = 0",
    }
}

impl Reads<'_> {
    /// The limits set for `project`, if any.
    pub(crate) async fn project_quotas(
        &self,
        project: &ProjectId,
    ) -> Result<(Option<Limits>, u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut tx = super::begin(&mut conn).await?;
        let seq = checkpoint(&mut tx).await?;
        let row = sqlx::query("SELECT project, limits FROM project_quotas WHERE project = $1")
            .bind(project.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| limits(&r).map(|(_, l)| l))
            .transpose()?;
        tx.commit().await?;
        Ok((row, seq))
    }

    /// One page of the projects with limits set, by project id, and how many there are.
    pub(crate) async fn all_project_quotas(
        &self,
        (limit, offset): (u32, u32),
    ) -> Result<((Vec<(ProjectId, Limits)>, u64), u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut tx = super::begin(&mut conn).await?;
        let seq = checkpoint(&mut tx).await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM project_quotas")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT project, limits FROM project_quotas ORDER BY project LIMIT $1 OFFSET $2",
        )
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(limits)
        .collect::<Result<_, _>>()?;
        tx.commit().await?;
        Ok(((rows, u64::try_from(total).unwrap_or(0)), seq))
    }

    /// How much of `resource` `project` holds, and the sequence that count reflects.
    pub(crate) async fn usage(
        &self,
        project: &ProjectId,
        resource: Resource,
    ) -> Result<(u64, u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut tx = super::begin(&mut conn).await?;
        let seq = checkpoint(&mut tx).await?;
        let count: i64 = sqlx::query_scalar(count_query(resource))
            .bind(project.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
        tx.commit().await?;
        Ok((u64::try_from(count).unwrap_or(0), seq))
    }
}
