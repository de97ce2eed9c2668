//! Folds one commit into the SQL rows of the read model: each aggregate kind has its
//! own module. Only the commit that follows its aggregate's last applied one is
//! applied ([`domain::chain`]); a foreign message, a replayed copy of an old commit,
//! or a commit this build cannot read is recorded in `skipped_commits`, never applied.

mod container;
mod order;
mod secret;

use domain::chain::{Broken, Head, Judged, judge};
use domain::commit::{Commit, CommitKey, Digest, EventCodec};
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

/// Stores the whole ACL on the aggregate's row and rewrites its listed users. `set`
/// is when it was set; `None` for a reset to the default, which has no times.
pub(crate) async fn set_acl(
    conn: &mut SqliteConnection,
    tables: AclTables,
    project: &str,
    id: &str,
    acl: &domain::secret::acl::Acl,
    set: Option<domain::timestamp::Timestamp>,
) -> Result<(), sqlx::Error> {
    let AclTables { rows, users, key } = tables;
    let at = set.map(|t| t.to_rfc3339());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {rows} SET project_access = ?, acl = ?, \
         acl_created = CASE WHEN ? IS NULL THEN NULL ELSE COALESCE(acl_created, ?) END, \
         acl_updated = ? WHERE project = ? AND id = ?"
    )))
    .bind(acl.project_access)
    .bind(json(acl)?)
    .bind(&at)
    .bind(&at)
    .bind(&at)
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

/// The last commit applied to the aggregate on `subject`.
async fn head(conn: &mut SqliteConnection, subject: &str) -> Result<Option<Head>, sqlx::Error> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT version, hash FROM commit_heads WHERE subject = ?")
            .bind(subject)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(version, hash)| {
        let hash = Digest::from_hex(&hash).ok_or_else(|| {
            sqlx::Error::Decode(format!("commit_heads holds a malformed hash for {subject}").into())
        })?;
        Ok(Head {
            version: u64::try_from(version).unwrap_or(0),
            hash,
        })
    })
    .transpose()
}

/// Why the projection skips a message.
#[derive(Debug, thiserror::Error)]
enum Skip {
    /// Not a commit keyledger wrote at this place.
    #[error("foreign message: {0}")]
    Foreign(String),
    /// An authentic commit that does not follow its aggregate's head.
    #[error(transparent)]
    Broken(Broken),
}

/// Judges the message and, if it is its aggregate's next commit, applies it and moves
/// the head; otherwise says why not.
async fn apply_next<E: EventCodec>(
    conn: &mut SqliteConnection,
    subject: &str,
    bytes: &[u8],
    key: &CommitKey,
    fold: impl AsyncFnOnce(&mut SqliteConnection, &Commit<E>) -> Result<(), sqlx::Error>,
) -> Result<Result<(), Skip>, sqlx::Error> {
    let head = head(conn, subject).await?;
    let commit = match judge::<E>(subject, bytes, Some(key), head.as_ref()) {
        Ok(Judged::Next(commit)) => commit,
        Ok(Judged::Foreign(reason)) => return Ok(Err(Skip::Foreign(reason))),
        Err(broken) => return Ok(Err(Skip::Broken(broken))),
    };
    fold(conn, &commit).await?;
    sqlx::query(
        "INSERT INTO commit_heads (subject, version, hash) VALUES (?, ?, ?) \
         ON CONFLICT (subject) DO UPDATE SET version = excluded.version, hash = excluded.hash",
    )
    .bind(subject)
    .bind(to_i64(commit.body.version))
    .bind(commit.hash.to_hex())
    .execute(&mut *conn)
    .await?;
    Ok(Ok(()))
}

/// Applies the message stored at `seq` on `subject` if it is its aggregate's next
/// commit. Anything else (a foreign message, a replay, a commit this build cannot
/// read) is recorded in `skipped_commits` and logged instead of stopping the
/// projection.
pub async fn apply(
    conn: &mut SqliteConnection,
    seq: u64,
    subject: &str,
    bytes: &[u8],
    key: &CommitKey,
) -> Result<(), sqlx::Error> {
    let applied = match serde_json::from_slice::<Kind>(bytes).map(|k| k.aggregate.kind) {
        Ok(AggregateKind::Secret) => {
            apply_next::<SecretEvent>(conn, subject, bytes, key, async |conn, c| {
                secret::apply(conn, seq, c).await
            })
            .await?
        }
        Ok(AggregateKind::Container) => {
            apply_next::<ContainerEvent>(conn, subject, bytes, key, async |conn, c| {
                container::apply(conn, seq, c).await
            })
            .await?
        }
        Ok(AggregateKind::Order) => {
            apply_next::<OrderEvent>(conn, subject, bytes, key, async |conn, c| {
                order::apply(conn, seq, c).await
            })
            .await?
        }
        Err(e) => Err(Skip::Foreign(format!(
            "not a commit of a known aggregate kind: {e}"
        ))),
    };
    if let Err(reason) = applied {
        tracing::error!(
            seq,
            subject = ?subject,
            error = %reason,
            "skipping a message the projection cannot apply; run `keyledger audit verify`"
        );
        sqlx::query("INSERT OR REPLACE INTO skipped_commits (seq, reason) VALUES (?, ?)")
            .bind(to_i64(seq))
            .bind(reason.to_string())
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
