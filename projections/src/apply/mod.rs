//! Folds one commit into the SQL rows of the read model: each aggregate kind has its
//! own module, and a commit this build cannot read is recorded, never dropped.

mod container;
mod order;
mod secret;

use domain::commit::Commit;
use domain::container::ContainerEvent;
use domain::order::OrderEvent;
use domain::secret::SecretEvent;
use domain::subject::AggregateKind;
use serde::Deserialize;
use sqlx::SqliteConnection;

/// The checkpoint row of this projection.
pub const PROJECTION: &str = "secrets";

pub(crate) fn to_i64(n: u64) -> i64 {
    // Stream sequences and versions stay far below 2^63.
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Runs each statement with `project` and `id` bound (e.g. removing an aggregate's
/// rows from every table).
pub(crate) async fn run_each(
    conn: &mut SqliteConnection,
    statements: &[&'static str],
    project: &str,
    id: &str,
) -> Result<(), sqlx::Error> {
    for sql in statements {
        sqlx::query(*sql)
            .bind(project)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Where an aggregate kind keeps its ACL: its row's table and its listed-users table
/// (keyed by `key`).
pub(crate) struct AclTables {
    pub(crate) rows: &'static str,
    pub(crate) users: &'static str,
    pub(crate) key: &'static str,
}

/// Stores the whole ACL on the aggregate's row and rewrites its listed users.
pub(crate) async fn set_acl(
    conn: &mut SqliteConnection,
    tables: AclTables,
    project: &str,
    id: &str,
    acl: &domain::secret::acl::Acl,
) -> Result<(), sqlx::Error> {
    let AclTables { rows, users, key } = tables;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {rows} SET project_access = ?, acl = ? WHERE project = ? AND id = ?"
    )))
    .bind(acl.project_access)
    .bind(json(acl)?)
    .bind(project)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {users} WHERE project = ? AND {key} = ?"
    )))
    .bind(project)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    for user in &acl.users {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {users} (project, {key}, user_id) VALUES (?, ?, ?)"
        )))
        .bind(project)
        .bind(id)
        .bind(user.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Just enough of a commit to know which aggregate kind's events it holds.
#[derive(Deserialize)]
struct Kind {
    aggregate: KindOf,
}

#[derive(Deserialize)]
struct KindOf {
    kind: AggregateKind,
}

/// Applies the commit stored at `seq`. A commit this build cannot read is recorded in
/// `skipped_commits` (and logged) instead of stopping the projection.
pub async fn apply(conn: &mut SqliteConnection, seq: u64, bytes: &[u8]) -> Result<(), sqlx::Error> {
    let applied = match serde_json::from_slice::<Kind>(bytes).map(|k| k.aggregate.kind) {
        Ok(AggregateKind::Secret) => match Commit::<SecretEvent>::from_slice(bytes) {
            Ok(commit) => Ok(secret::apply(conn, seq, &commit).await?),
            Err(e) => Err(e.to_string()),
        },
        Ok(AggregateKind::Container) => match Commit::<ContainerEvent>::from_slice(bytes) {
            Ok(commit) => Ok(container::apply(conn, seq, &commit).await?),
            Err(e) => Err(e.to_string()),
        },
        Ok(AggregateKind::Order) => match Commit::<OrderEvent>::from_slice(bytes) {
            Ok(commit) => Ok(order::apply(conn, seq, &commit).await?),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(format!("not a commit of a known aggregate kind: {e}")),
    };
    if let Err(reason) = applied {
        tracing::error!(seq, error = %reason, "skipping a commit the projection cannot read");
        sqlx::query("INSERT OR REPLACE INTO skipped_commits (seq, reason) VALUES (?, ?)")
            .bind(to_i64(seq))
            .bind(reason)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Records that everything up to `seq` is applied. Runs in the batch's transaction.
pub async fn set_checkpoint(conn: &mut SqliteConnection, seq: u64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO checkpoints (projection, seq) VALUES (?, ?) \
         ON CONFLICT (projection) DO UPDATE SET seq = excluded.seq",
    )
    .bind(PROJECTION)
    .bind(to_i64(seq))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The sequence the projection has applied (0: nothing yet).
pub async fn checkpoint(conn: &mut SqliteConnection) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM checkpoints WHERE projection = ?")
        .bind(PROJECTION)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}
