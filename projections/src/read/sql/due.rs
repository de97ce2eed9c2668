//! What the lifecycle scheduler finds due. Each query is bound with exactly the
//! parameters it names: PostgreSQL refuses a statement bound with more.

use domain::secret::version::DueTask;

use super::{Db, Reads};
use crate::read::due::DueAt;

/// The scheduler's queries: each reads an index range (`read/due.rs` checks SQLite's
/// plans). Expire and purge bind `$1` now and `$2` the limit; prune binds `$1` the
/// limit, `$2` the versions kept (at least 1) and `$3` the newest a deprecated version
/// may be to go. The prune query spells out `version_count > 1`, which `$2` implies,
/// because its index leaves single-version secrets out and SQLite uses a partial index
/// only for a query that names its condition.
pub(crate) const DUE_QUERIES: [(DueTask, &str); 3] = [
    (
        DueTask::Expire,
        "SELECT s.project, s.id, s.version FROM secrets s WHERE s.status != 'expired' \
         AND s.expiration_ms <= $1 ORDER BY s.expiration_ms LIMIT $2",
    ),
    (
        DueTask::Purge,
        "SELECT s.project, s.id, s.version FROM secrets s WHERE s.purge_at_ms <= $1 \
         ORDER BY s.purge_at_ms LIMIT $2",
    ),
    (
        DueTask::Prune,
        "SELECT s.project, s.id, s.version FROM secrets s WHERE s.status = 'active' \
         AND s.version_count > 1 AND s.version_count > $2 \
         AND EXISTS (SELECT 1 FROM secret_payloads p WHERE p.project = s.project \
         AND p.secret_id = s.id AND p.created_ms <= $3 \
         AND NOT EXISTS (SELECT 1 FROM secret_stages g WHERE g.project = p.project \
         AND g.secret_id = p.secret_id AND g.version_id = p.version_id)) LIMIT $1",
    ),
];

/// `sql`, the query of `task`, with its parameters bound.
pub(crate) fn bound<'q, O>(
    task: DueTask,
    query: sqlx::query::QueryAs<'q, Db, O, <Db as sqlx::Database>::Arguments>,
    at: DueAt,
) -> sqlx::query::QueryAs<'q, Db, O, <Db as sqlx::Database>::Arguments> {
    match task {
        DueTask::Prune => query
            .bind(i64::from(at.limit))
            .bind(at.keep)
            .bind(at.prune_before_ms),
        _ => query.bind(at.now_ms).bind(i64::from(at.limit)),
    }
}

impl Reads<'_> {
    /// Up to `at.limit` secrets per task that are due ([`crate::read::due`]).
    pub(crate) async fn due(
        &self,
        at: DueAt,
    ) -> Result<Vec<(DueTask, String, String, i64)>, sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut out = Vec::new();
        for (task, sql) in DUE_QUERIES {
            let query = bound(task, sqlx::query_as::<_, (String, String, i64)>(sql), at);
            for (project, id, version) in query.fetch_all(&mut *conn).await? {
                out.push((task, project, id, version));
            }
        }
        Ok(out)
    }
}

/// The rotation runner's query: secrets whose rotation is due at `$1`, up to `$2`.
pub(crate) const ROTATIONS_DUE: &str = "SELECT s.project, s.id, s.rotation FROM secrets s \
     WHERE s.rotation_due_ms <= $1 AND s.status = 'active' ORDER BY s.rotation_due_ms LIMIT $2";

impl Reads<'_> {
    /// Up to `limit` secrets whose rotation is due at `now_ms`.
    pub(crate) async fn rotations_due(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<(String, String, String)>, sqlx::Error> {
        sqlx::query_as::<_, (String, String, String)>(ROTATIONS_DUE)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.0.acquire().await?)
            .await
    }
}
