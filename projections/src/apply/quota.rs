//! Folds a project's quota commits into the read model: its limits (the charges made
//! with creates leave no rows; the count is of the objects themselves).

use super::sql::{ApplyError, Sql, params};
use domain::commit::Commit;
use domain::quota::QuotaEvent;

use super::{json, run, to_i64};

/// Applies a quota commit stored at `seq`.
pub(super) fn apply(
    conn: &mut dyn Sql,
    seq: u64,
    commit: &Commit<QuotaEvent>,
) -> Result<(), ApplyError> {
    let project = commit.body.aggregate.project.as_str();
    for event in &commit.body.events {
        match event {
            QuotaEvent::Set(set) => run(
                conn,
                "INSERT INTO project_quotas (project, limits, updated, seq) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (project) DO UPDATE SET limits = excluded.limits, \
                 updated = excluded.updated, seq = excluded.seq",
                params![
                    project,
                    json(&set.limits)?,
                    commit.body.at.to_rfc3339(),
                    to_i64(seq)
                ],
            )?,
            QuotaEvent::Cleared => run(
                conn,
                "DELETE FROM project_quotas WHERE project = ?1",
                params![project],
            )?,
            QuotaEvent::Charged(_) => {}
        }
    }
    Ok(())
}
