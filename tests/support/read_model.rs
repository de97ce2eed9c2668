//! Reading a read model directly (SQLite or PostgreSQL): its checkpoint, and every
//! row as text in one form for both dialects, to compare two read models.

use std::path::Path;

use projections::db::{Pool, SqliteReads};
use sqlx::Row;

/// The read model at `path`.
pub async fn open(path: &Path) -> SqliteReads {
    open_url(&projections::db::sqlite_url(path)).await
}

/// The SQLite read model at `url`.
pub async fn open_url(url: &str) -> SqliteReads {
    match projections::db::open(url, 1).await.unwrap() {
        Pool::Sqlite(pool) => pool,
        Pool::Postgres(_) => panic!("{url} is not a SQLite read model"),
    }
}

/// The sequence the read model has applied.
pub async fn checkpoint(pool: &SqliteReads) -> u64 {
    checkpoint_of(&Pool::Sqlite(pool.clone())).await
}

/// The sequence the read model (of either dialect) has applied.
pub async fn checkpoint_of(pool: &Pool) -> u64 {
    let sql = "SELECT seq FROM checkpoints WHERE projection = 'secrets'";
    let seq = match pool {
        Pool::Sqlite(pool) => sqlx::query_scalar::<_, i64>(sql)
            .fetch_optional(&mut *pool.acquire().await.unwrap())
            .await
            .unwrap(),
        Pool::Postgres(pool) => sqlx::query_scalar::<_, i64>(sql)
            .fetch_optional(pool)
            .await
            .unwrap(),
    };
    seq.unwrap_or(0) as u64
}

/// The tables compared: every table the projection writes.
const TABLES: [&str; 16] = [
    "access_keys",
    "checkpoints",
    "commit_heads",
    "project_quotas",
    "secrets",
    "secret_payloads",
    "secret_metadata",
    "secret_acl_users",
    "secret_stages",
    "secret_consumers",
    "containers",
    "container_secrets",
    "container_consumers",
    "container_acl_users",
    "orders",
    "skipped_commits",
];

/// Every index of the SQLite read model made by name, as its `CREATE INDEX`
/// statement, sorted.
pub async fn indexes(pool: &SqliteReads) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY sql",
    )
    .fetch_all(&mut *pool.acquire().await.unwrap())
    .await
    .unwrap()
}

/// Every row of every table, as text (columns by name; `NULL`, integers, `'text'`,
/// `x'hex'`), sorted.
pub async fn dump(pool: &SqliteReads) -> Vec<String> {
    dump_of(&Pool::Sqlite(pool.clone())).await
}

/// [`dump`], of either dialect: a PostgreSQL read model and a SQLite one that fold
/// the same log dump the same.
pub async fn dump_of(pool: &Pool) -> Vec<String> {
    let mut out = Vec::new();
    for table in TABLES {
        let rows = match pool {
            Pool::Sqlite(pool) => {
                let mut conn = pool.acquire().await.unwrap();
                let columns: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT name FROM pragma_table_info('{table}') ORDER BY name"
                )))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM {table}",
                    columns.join(", ")
                )))
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|r| (0..r.len()).map(|i| sqlite_value(r, i)).collect())
                .collect::<Vec<Vec<String>>>()
            }
            Pool::Postgres(pool) => {
                let columns: Vec<String> = sqlx::query_scalar(
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_schema = 'public' AND table_name = $1 \
                     ORDER BY column_name COLLATE \"C\"",
                )
                .bind(table)
                .fetch_all(pool)
                .await
                .unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM {table}",
                    columns.join(", ")
                )))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (0..r.len()).map(|i| postgres_value(r, i)).collect())
                .collect()
            }
        };
        out.extend(
            rows.into_iter()
                .map(|values| format!("{table}: {}", values.join("|"))),
        );
    }
    out.sort();
    out
}

fn sqlite_value(r: &sqlx::sqlite::SqliteRow, i: usize) -> String {
    if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
        return v.map_or_else(|| "NULL".to_owned(), |v| v.to_string());
    }
    if let Ok(v) = r.try_get::<String, _>(i) {
        return format!("'{v}'");
    }
    hex(&r.get::<Vec<u8>, _>(i))
}

fn postgres_value(r: &sqlx::postgres::PgRow, i: usize) -> String {
    if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
        return v.map_or_else(|| "NULL".to_owned(), |v| v.to_string());
    }
    if let Ok(v) = r.try_get::<String, _>(i) {
        return format!("'{v}'");
    }
    hex(&r.get::<Vec<u8>, _>(i))
}

fn hex(bytes: &[u8]) -> String {
    format!("x'{}'", ::hex::encode(bytes))
}
