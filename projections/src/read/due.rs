//! What the lifecycle scheduler finds due (the queries: `sql/due.rs`).

use super::on_pool;
use crate::db::Pool;
use crate::read::ReadError;
use domain::ids::{ProjectId, SecretId};
use domain::secret::rotation::DueRotation;
use domain::secret::version::Due;
use domain::timestamp::Timestamp;

/// What the scheduler asks for, as the queries bind it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DueAt {
    /// Now, in Unix milliseconds.
    pub now_ms: i64,
    /// How many versions a secret keeps (at least 1).
    pub keep: i64,
    /// The newest a deprecated version may be to go (Unix milliseconds).
    pub prune_before_ms: i64,
    /// At most this many secrets per task.
    pub limit: u32,
}

/// Lifecycle work due at `now`: expirations that passed without an Expire command,
/// recovery windows that ended, and secrets holding more than `keep` versions with a
/// deprecated one stored at or before `prune_before`. Each kind is an indexed range
/// (or, for prunes, the rows over the version limit).
pub async fn due(
    pool: &Pool,
    now: Timestamp,
    keep: usize,
    prune_before: Timestamp,
    limit: u32,
) -> Result<Vec<Due>, ReadError> {
    let at = DueAt {
        now_ms: now.unix_millis(),
        keep: i64::try_from(keep).unwrap_or(i64::MAX),
        prune_before_ms: prune_before.unix_millis(),
        limit,
    };
    let rows = on_pool!(pool, due(at))?;
    rows.into_iter()
        .map(|(task, project, id, version)| {
            Ok(Due {
                project: ProjectId::parse(&project)
                    .map_err(|e| ReadError::malformed("project", e))?,
                secret: SecretId::parse(&id).map_err(|e| ReadError::malformed("id", e))?,
                task,
                version: u64::try_from(version).map_err(|e| ReadError::malformed("version", e))?,
            })
        })
        .collect()
}

/// Up to `limit` secrets whose rotation is due at `now`: a scheduled start, a run to
/// drive, a retry, or a run whose runner's lease lapsed. Oldest first.
pub async fn rotations_due(
    pool: &Pool,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<DueRotation>, ReadError> {
    let now_ms = now.unix_millis();
    let rows = on_pool!(pool, rotations_due(now_ms, limit))?;
    rows.into_iter()
        .map(|(project, id, rotation)| {
            Ok(DueRotation {
                project: ProjectId::parse(&project)
                    .map_err(|e| ReadError::malformed("project", e))?,
                secret: SecretId::parse(&id).map_err(|e| ReadError::malformed("id", e))?,
                rotation: serde_json::from_str(&rotation)
                    .map_err(|e| ReadError::malformed("rotation", e))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::DueAt;
    use crate::read::sqlite::due::{DUE_QUERIES, ROTATIONS_DUE, bound};

    #[tokio::test]
    async fn the_schedulers_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::sqlite_url(&dir.path().join("rm.sqlite"));
        let crate::db::Pool::Sqlite(pool) = crate::db::open(&url, 1).await.unwrap() else {
            unreachable!("a sqlite:// URL opens SQLite")
        };
        let mut conn = pool.acquire().await.unwrap();
        let at = DueAt {
            now_ms: 0,
            keep: 1,
            prune_before_ms: 0,
            limit: 1,
        };
        for (task, sql) in DUE_QUERIES {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let query = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(explain));
            let plan: Vec<String> = bound(task, query, at)
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, _, _, detail)| detail)
                .collect();
            let outer = &plan[0];
            assert!(
                outer.starts_with("SEARCH s USING INDEX secrets_by_"),
                "{task:?}: {plan:?}"
            );
        }
        let explain = format!("EXPLAIN QUERY PLAN {ROTATIONS_DUE}");
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(explain))
            .bind(0_i64)
            .bind(1_i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert!(
            plan[0]
                .3
                .starts_with("SEARCH s USING INDEX secrets_by_rotation_due"),
            "{plan:?}"
        );
    }
}
