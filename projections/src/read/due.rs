//! What the lifecycle scheduler finds due.

use crate::read::ReadError;
use domain::ids::{ProjectId, SecretId};
use domain::secret::version::{Due, DueTask};
use domain::timestamp::Timestamp;
use sqlx::SqlitePool;

/// The scheduler's queries: each reads an index range (`?1` now, `?2` limit, `?3`
/// versions kept, at least 1, `?4` the newest a deprecated version may be to go). The
/// prune query spells out `version_count > 1`, which `?3` implies, because its index
/// leaves single-version secrets out and SQLite uses a partial index only for a query
/// that names its condition.
const DUE_QUERIES: [(DueTask, &str); 3] = [
    (
        DueTask::Expire,
        "SELECT s.project, s.id, s.version FROM secrets s WHERE s.status != 'expired' \
         AND s.expiration_ms <= ?1 ORDER BY s.expiration_ms LIMIT ?2",
    ),
    (
        DueTask::Purge,
        "SELECT s.project, s.id, s.version FROM secrets s WHERE s.purge_at_ms <= ?1 \
         ORDER BY s.purge_at_ms LIMIT ?2",
    ),
    (
        DueTask::Prune,
        "SELECT s.project, s.id, s.version FROM secrets s WHERE s.status = 'active' \
         AND s.version_count > 1 AND s.version_count > ?3 \
         AND EXISTS (SELECT 1 FROM secret_payloads p WHERE p.project = s.project \
         AND p.secret_id = s.id AND p.created_ms <= ?4 \
         AND NOT EXISTS (SELECT 1 FROM secret_stages g WHERE g.project = p.project \
         AND g.secret_id = p.secret_id AND g.version_id = p.version_id)) LIMIT ?2",
    ),
];

/// Lifecycle work due at `now`: expirations that passed without an Expire command,
/// recovery windows that ended, and secrets holding more than `keep` versions with a
/// deprecated one stored at or before `prune_before`. Each kind is an indexed range
/// (or, for prunes, the rows over the version limit).
pub async fn due(
    pool: &SqlitePool,
    now: Timestamp,
    keep: usize,
    prune_before: Timestamp,
    limit: u32,
) -> Result<Vec<Due>, ReadError> {
    let now = now.unix_millis();
    let mut out = Vec::new();
    for (task, sql) in DUE_QUERIES {
        let rows = sqlx::query_as::<_, (String, String, i64)>(sql)
            .bind(now)
            .bind(i64::from(limit))
            .bind(i64::try_from(keep).unwrap_or(i64::MAX))
            .bind(prune_before.unix_millis())
            .fetch_all(pool)
            .await?;
        for (project, id, version) in rows {
            out.push(Due {
                project: ProjectId::parse(&project)
                    .map_err(|e| ReadError::malformed("project", e))?,
                secret: SecretId::parse(&id).map_err(|e| ReadError::malformed("id", e))?,
                task,
                version: u64::try_from(version).map_err(|e| ReadError::malformed("version", e))?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    /// The scheduler's passes read index ranges, never the whole table.
    #[tokio::test]
    async fn the_schedulers_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::sqlite_url(&dir.path().join("rm.sqlite"));
        let pool = crate::db::open(&url, 1).await.unwrap();
        for (task, sql) in DUE_QUERIES {
            let plan: Vec<String> =
                sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .bind(0i64)
                    .bind(1i64)
                    .bind(1i64)
                    .bind(0i64)
                    .fetch_all(&pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<String, _>("detail"))
                    .collect();
            let outer = &plan[0];
            assert!(
                outer.starts_with("SEARCH s USING INDEX secrets_by_"),
                "{task:?}: {plan:?}"
            );
        }
    }
}
