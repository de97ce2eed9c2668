//! Reading a SQLite read model directly: its checkpoint, and every row as text to
//! compare two read models.

use std::path::Path;

use sqlx::{Row, SqlitePool};

/// The read model at `path`.
pub async fn open(path: &Path) -> SqlitePool {
    projections::db::open(&projections::db::sqlite_url(path), 1)
        .await
        .unwrap()
}

/// The sequence the read model has applied.
pub async fn checkpoint(pool: &SqlitePool) -> u64 {
    sqlx::query_scalar::<_, i64>("SELECT seq FROM checkpoints WHERE projection = 'secrets'")
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or(0) as u64
}

/// Every row of every table, as text, in primary-key order.
pub async fn dump(pool: &SqlitePool) -> Vec<String> {
    let mut out = Vec::new();
    for table in [
        "checkpoints",
        "secrets",
        "secret_payloads",
        "secret_metadata",
        "skipped_commits",
    ] {
        let columns: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{table}')"
        )))
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
        let select = columns
            .iter()
            .map(|c| format!("quote({c})"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {select} FROM {table} ORDER BY 1"
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        out.extend(
            rows.iter()
                .map(|r| format!("{table}: {}", r.get::<String, _>(0))),
        );
    }
    out.sort();
    out
}
