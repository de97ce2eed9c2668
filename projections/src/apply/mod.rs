//! Folds one commit into the SQL rows of the read model: each aggregate kind has its
//! own module. Only the commit that follows its aggregate's last applied one is
//! applied ([`domain::chain`]); a foreign message, a replayed copy of an old commit,
//! or a commit this build cannot read is recorded in `skipped_commits`, never applied.
//!
//! Runs synchronously inside the projector's batch transaction ([`crate::writer`]);
//! statements are prepared once per connection and cached.

mod container;
mod order;
mod secret;

use domain::chain::{Broken, Head, Judged, judge};
use domain::commit::{Commit, CommitKey, Digest, EventCodec};
use domain::container::ContainerEvent;
use domain::order::OrderEvent;
use domain::secret::SecretEvent;
use domain::subject::{AggregateKind, parse_aggregate_subject};
use rusqlite::{Connection, OptionalExtension, params};

/// The checkpoint row of this projection.
pub const PROJECTION: &str = "secrets";

pub(crate) fn to_i64(n: u64) -> i64 {
    // Stream sequences and versions stay far below 2^63.
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Runs one statement, prepared once per connection.
pub(crate) fn run(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute(params)?;
    Ok(())
}

/// Runs each statement with `project` and `id` bound (e.g. removing an aggregate's
/// rows from every table).
pub(crate) fn run_each(
    conn: &Connection,
    statements: &[&'static str],
    project: &str,
    id: &str,
) -> rusqlite::Result<()> {
    for sql in statements {
        run(conn, sql, params![project, id])?;
    }
    Ok(())
}

/// Where an aggregate kind keeps its ACL: its row's table and its listed-users table
/// (keyed by `key`).
pub(crate) struct AclTables {
    rows: &'static str,
    users: &'static str,
    key: &'static str,
}

impl AclTables {
    /// A secret's ACL.
    pub(crate) const SECRETS: Self = Self {
        rows: "secrets",
        users: "secret_acl_users",
        key: "secret_id",
    };
    /// A container's ACL.
    pub(crate) const CONTAINERS: Self = Self {
        rows: "containers",
        users: "container_acl_users",
        key: "container_id",
    };
}

/// Stores the whole ACL `commit` set on the aggregate's row and rewrites its listed
/// users. An `….acl.delete` command resets the ACL to the default, which has no times.
pub(crate) fn set_acl<E>(
    conn: &Connection,
    tables: AclTables,
    commit: &Commit<E>,
    acl: &domain::secret::acl::Acl,
) -> rusqlite::Result<()> {
    let AclTables { rows, users, key } = tables;
    let (project, id) = (
        commit.body.aggregate.project.as_str(),
        commit.body.aggregate.id.as_str(),
    );
    let at = (!commit.body.command.ends_with(".acl.delete")).then(|| commit.body.at.to_rfc3339());
    run(
        conn,
        &format!(
            "UPDATE {rows} SET project_access = ?1, acl = ?2, \
             acl_created = CASE WHEN ?3 IS NULL THEN NULL ELSE COALESCE(acl_created, ?3) END, \
             acl_updated = ?3 WHERE project = ?4 AND id = ?5"
        ),
        params![acl.project_access, json(acl)?, at, project, id],
    )?;
    run(
        conn,
        &format!("DELETE FROM {users} WHERE project = ?1 AND {key} = ?2"),
        params![project, id],
    )?;
    let insert = format!("INSERT INTO {users} (project, {key}, user_id) VALUES (?1, ?2, ?3)");
    for user in &acl.users {
        run(conn, &insert, params![project, id, user.as_str()])?;
    }
    Ok(())
}

/// The last commit applied to the aggregate on `subject`.
fn head(conn: &Connection, subject: &str) -> rusqlite::Result<Option<Head>> {
    let row: Option<(i64, String)> = conn
        .prepare_cached("SELECT version, hash FROM commit_heads WHERE subject = ?1")?
        .query_row([subject], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(version, hash)| {
        let hash = Digest::from_hex(&hash).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("commit_heads holds a malformed hash for {subject}").into(),
            )
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
fn apply_next<E: EventCodec>(
    conn: &Connection,
    subject: &str,
    bytes: &[u8],
    key: &CommitKey,
    fold: impl FnOnce(&Connection, &Commit<E>) -> rusqlite::Result<()>,
) -> rusqlite::Result<Result<(), Skip>> {
    let head = head(conn, subject)?;
    let commit = match judge::<E>(subject, bytes, Some(key), head.as_ref()) {
        Ok(Judged::Next(commit)) => commit,
        Ok(Judged::Foreign(reason)) => return Ok(Err(Skip::Foreign(reason))),
        Err(broken) => return Ok(Err(Skip::Broken(broken))),
    };
    fold(conn, &commit)?;
    run(
        conn,
        "INSERT INTO commit_heads (subject, version, hash) VALUES (?1, ?2, ?3) \
         ON CONFLICT (subject) DO UPDATE SET version = excluded.version, hash = excluded.hash",
        params![subject, to_i64(commit.body.version), commit.hash.to_hex()],
    )?;
    Ok(Ok(()))
}

/// Applies the message stored at `seq` on `subject` if it is its aggregate's next
/// commit. Anything else (a foreign message, a replay, a commit this build cannot
/// read) is recorded in `skipped_commits` and logged instead of stopping the
/// projection.
pub fn apply(
    conn: &Connection,
    seq: u64,
    subject: &str,
    bytes: &[u8],
    key: &CommitKey,
) -> rusqlite::Result<()> {
    // The subject names the aggregate kind; `judge` checks that the commit is that
    // aggregate's, so its JSON is read once.
    let applied = match parse_aggregate_subject(subject).map(|(_, kind, _)| kind) {
        Some(AggregateKind::Secret) => {
            apply_next::<SecretEvent>(conn, subject, bytes, key, |conn, c| {
                secret::apply(conn, seq, c)
            })?
        }
        Some(AggregateKind::Container) => {
            apply_next::<ContainerEvent>(conn, subject, bytes, key, |conn, c| {
                container::apply(conn, seq, c)
            })?
        }
        Some(AggregateKind::Order) => {
            apply_next::<OrderEvent>(conn, subject, bytes, key, |conn, c| {
                order::apply(conn, seq, c)
            })?
        }
        None => Err(Skip::Foreign(
            "not on the subject of a known aggregate kind".into(),
        )),
    };
    if let Err(reason) = applied {
        tracing::error!(
            seq,
            subject = ?subject,
            error = %reason,
            "skipping a message the projection cannot apply; run `keyledger audit verify`"
        );
        run(
            conn,
            "INSERT OR REPLACE INTO skipped_commits (seq, reason) VALUES (?1, ?2)",
            params![to_i64(seq), reason.to_string()],
        )?;
    }
    Ok(())
}

/// Records that everything up to `seq` is applied. Runs in the batch's transaction.
pub fn set_checkpoint(conn: &Connection, seq: u64) -> rusqlite::Result<()> {
    run(
        conn,
        "INSERT INTO checkpoints (projection, seq) VALUES (?1, ?2) \
         ON CONFLICT (projection) DO UPDATE SET seq = excluded.seq",
        params![PROJECTION, to_i64(seq)],
    )
}

/// The sequence the projection has applied (0: nothing yet), as its writer sees it.
pub fn applied(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM checkpoints WHERE projection = ?1")?
        .query_row([PROJECTION], |r| r.get(0))
        .optional()?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}
