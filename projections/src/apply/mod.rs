//! Folds one commit into the SQL rows of the read model: each aggregate kind has its
//! own module. Only the commit that follows its aggregate's last applied one is
//! applied ([`domain::chain`]); a foreign message, a replayed copy of an old commit,
//! or a commit this build cannot read is recorded in `skipped_commits`, never applied.
//!
//! Runs synchronously inside the projector's batch transaction ([`crate::writer`]),
//! on SQLite or PostgreSQL ([`sql`]); statements are prepared once per connection.

mod access_key;
mod container;
mod order;
mod pending;
mod quota;
mod secret;
pub mod sql;

use domain::access_key::AccessKeyEvent;
use domain::chain::{Broken, Head, Judged, judge};
use domain::commit::{Commit, CommitKey, Digest, EventCodec};
use domain::container::ContainerEvent;
use domain::keyring::KeyringEvent;
use domain::order::OrderEvent;
use domain::quota::QuotaEvent;
use domain::secret::SecretEvent;
use domain::subject::{AggregateKind, parse_aggregate_subject};
use std::collections::{BTreeSet, HashMap};

use sql::{ApplyError, Sql, params};

/// The checkpoint row of this projection.
pub const PROJECTION: &str = "secrets";

pub(crate) fn to_i64(n: u64) -> i64 {
    // Stream sequences and versions stay far below 2^63.
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, ApplyError> {
    Ok(serde_json::to_string(value)?)
}

/// Runs one statement, prepared once per connection.
pub(crate) fn run(
    conn: &mut dyn Sql,
    sql: &'static str,
    params: &[sql::Value<'_>],
) -> Result<(), ApplyError> {
    conn.execute(sql, params)
}

/// Runs each statement with `project` and `id` bound (e.g. removing an aggregate's
/// rows from every table).
pub(crate) fn run_each(
    conn: &mut dyn Sql,
    statements: &[&'static str],
    project: &str,
    id: &str,
) -> Result<(), ApplyError> {
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
    conn: &mut dyn Sql,
    tables: AclTables,
    commit: &Commit<E>,
    acl: &domain::secret::acl::Acl,
) -> Result<(), ApplyError> {
    let AclTables { rows, users, key } = tables;
    let (project, id) = (
        commit.body.aggregate.project.as_str(),
        commit.body.aggregate.id.as_str(),
    );
    let at = (!commit.body.command.ends_with(".acl.delete")).then(|| commit.body.at.to_rfc3339());
    conn.execute_dynamic(
        &format!(
            "UPDATE {rows} SET project_access = ?1, acl = ?2, \
             acl_created = CASE WHEN ?3 IS NULL THEN NULL ELSE COALESCE(acl_created, ?3) END, \
             acl_updated = ?3 WHERE project = ?4 AND id = ?5"
        ),
        params![acl.project_access, json(acl)?, at, project, id],
    )?;
    conn.execute_dynamic(
        &format!("DELETE FROM {users} WHERE project = ?1 AND {key} = ?2"),
        params![project, id],
    )?;
    let insert = format!("INSERT INTO {users} (project, {key}, user_id) VALUES (?1, ?2, ?3)");
    for user in &acl.users {
        conn.execute_dynamic(&insert, params![project, id, user.as_str()])?;
    }
    Ok(())
}

/// Rows per multi-row statement of [`Heads`] (three parameters each: SQLite takes up to
/// 32,766 parameters, PostgreSQL 65,535).
const ROWS_PER_STATEMENT: usize = 256;

/// The heads (last applied commits) of the aggregates a batch touches: read with one
/// query per [`ROWS_PER_STATEMENT`] aggregates before the batch, moved in memory as it
/// applies, and written back with one multi-row upsert per as many after it. Two
/// statements fewer per commit, each a round trip on PostgreSQL.
struct Heads {
    heads: HashMap<String, Option<Head>>,
    moved: BTreeSet<String>,
}

impl Heads {
    /// The heads of the aggregates on `subjects`.
    fn read<'s>(
        conn: &mut dyn Sql,
        subjects: impl IntoIterator<Item = &'s str>,
    ) -> Result<Self, ApplyError> {
        let wanted: BTreeSet<&str> = subjects.into_iter().collect();
        let mut heads: HashMap<String, Option<Head>> =
            wanted.iter().map(|s| ((*s).to_owned(), None)).collect();
        let wanted: Vec<&str> = wanted.into_iter().collect();
        for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT subject, version, hash FROM commit_heads WHERE subject IN ({})",
                placeholders(chunk.len(), 1)
            );
            let params: Vec<sql::Value<'_>> =
                chunk.iter().map(|s| sql::ToValue::to_value(*s)).collect();
            for row in conn.query_all(&sql, &params)? {
                let subject = row.first().and_then(sql::Value::text).unwrap_or_default();
                let malformed = || {
                    ApplyError::Corrupt(format!("commit_heads holds a malformed row for {subject}"))
                };
                let version = row.get(1).and_then(sql::Value::int).ok_or_else(malformed)?;
                let hash = row
                    .get(2)
                    .and_then(sql::Value::text)
                    .and_then(Digest::from_hex)
                    .ok_or_else(malformed)?;
                let head = Head {
                    version: u64::try_from(version).unwrap_or(0),
                    hash,
                };
                heads.insert(subject.to_owned(), Some(head));
            }
        }
        Ok(Self {
            heads,
            moved: BTreeSet::new(),
        })
    }

    /// The last commit applied to the aggregate on `subject`.
    fn get(&self, subject: &str) -> Option<&Head> {
        self.heads.get(subject).and_then(Option::as_ref)
    }

    /// `head` is now the last commit applied on `subject`.
    fn set(&mut self, subject: &str, head: Head) {
        self.heads.insert(subject.to_owned(), Some(head));
        self.moved.insert(subject.to_owned());
    }

    /// Writes every head that moved.
    fn write(self, conn: &mut dyn Sql) -> Result<(), ApplyError> {
        let moved: Vec<(&String, &Head)> = self
            .moved
            .iter()
            .filter_map(|s| Some((s, self.heads.get(s)?.as_ref()?)))
            .collect();
        for chunk in moved.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders(3, 3 * i + 1)))
                .collect();
            let sql = format!(
                "INSERT INTO commit_heads (subject, version, hash) VALUES {} \
                 ON CONFLICT (subject) DO UPDATE SET version = excluded.version, \
                 hash = excluded.hash",
                rows.join(", ")
            );
            let hashes: Vec<String> = chunk.iter().map(|(_, h)| h.hash.to_hex()).collect();
            let mut params = Vec::with_capacity(3 * chunk.len());
            for ((subject, head), hash) in chunk.iter().zip(&hashes) {
                params.push(sql::ToValue::to_value(*subject));
                params.push(sql::Value::Int(to_i64(head.version)));
                params.push(sql::ToValue::to_value(hash));
            }
            conn.execute_dynamic(&sql, &params)?;
        }
        Ok(())
    }
}

/// `?first, ?first+1, …`: `n` parameters.
fn placeholders(n: usize, first: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
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
    conn: &mut dyn Sql,
    heads: &mut Heads,
    subject: &str,
    bytes: &[u8],
    key: &CommitKey,
    fold: impl FnOnce(&mut dyn Sql, &Commit<E>) -> Result<(), ApplyError>,
) -> Result<Result<(), Skip>, ApplyError> {
    let commit = match judge::<E>(subject, bytes, Some(key), heads.get(subject)) {
        Ok(Judged::Next(commit)) => commit,
        Ok(Judged::Foreign(reason)) => return Ok(Err(Skip::Foreign(reason))),
        Err(broken) => return Ok(Err(Skip::Broken(broken))),
    };
    fold(conn, &commit)?;
    heads.set(subject, Head::from(&commit));
    Ok(Ok(()))
}

/// Applies a batch of messages, in stream order ([`apply`] each), reading and writing
/// their aggregates' heads once for the batch. Runs in the batch's transaction.
pub fn apply_batch(
    conn: &mut dyn Sql,
    commits: &[crate::writer::Stored],
    key: &CommitKey,
) -> Result<(), ApplyError> {
    let mut heads = Heads::read(conn, commits.iter().map(|c| c.subject.as_str()))?;
    for c in commits {
        conn.aggregate(Some(&c.subject));
        apply(conn, &mut heads, c.seq, &c.subject, &c.payload, key)?;
    }
    conn.aggregate(None);
    heads.write(conn)
}

/// Applies the message stored at `seq` on `subject` if it is its aggregate's next
/// commit. Anything else (a foreign message, a replay, a commit this build cannot
/// read) is recorded in `skipped_commits` and logged instead of stopping the
/// projection.
fn apply(
    conn: &mut dyn Sql,
    heads: &mut Heads,
    seq: u64,
    subject: &str,
    bytes: &[u8],
    key: &CommitKey,
) -> Result<(), ApplyError> {
    // The subject names the aggregate kind; `judge` checks that the commit is that
    // aggregate's, so its JSON is read once.
    let applied = match parse_aggregate_subject(subject).map(|(_, kind, _)| kind) {
        Some(AggregateKind::Secret) => {
            apply_next::<SecretEvent>(conn, heads, subject, bytes, key, |conn, c| {
                secret::apply(conn, seq, c)
            })?
        }
        Some(AggregateKind::Container) => {
            apply_next::<ContainerEvent>(conn, heads, subject, bytes, key, |conn, c| {
                container::apply(conn, seq, c)
            })?
        }
        Some(AggregateKind::Order) => {
            apply_next::<OrderEvent>(conn, heads, subject, bytes, key, |conn, c| {
                order::apply(conn, seq, c)
            })?
        }
        Some(AggregateKind::AccessKey) => {
            apply_next::<AccessKeyEvent>(conn, heads, subject, bytes, key, |conn, c| {
                access_key::apply(conn, seq, c)
            })?
        }
        Some(AggregateKind::Quota) => {
            apply_next::<QuotaEvent>(conn, heads, subject, bytes, key, |conn, c| {
                quota::apply(conn, seq, c)
            })?
        }
        // The keyring has no rows: its commits are checked and their chain followed.
        Some(AggregateKind::Kek) => {
            apply_next::<KeyringEvent>(conn, heads, subject, bytes, key, |_, _| Ok(()))?
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
            "INSERT INTO skipped_commits (seq, reason) VALUES (?1, ?2) \
             ON CONFLICT (seq) DO UPDATE SET reason = excluded.reason",
            params![to_i64(seq), reason.to_string()],
        )?;
    }
    Ok(())
}

/// Records that everything up to `seq` is applied. Runs in the batch's transaction.
pub fn set_checkpoint(conn: &mut dyn Sql, seq: u64) -> Result<(), ApplyError> {
    run(
        conn,
        "INSERT INTO checkpoints (projection, seq) VALUES (?1, ?2) \
         ON CONFLICT (projection) DO UPDATE SET seq = excluded.seq",
        params![PROJECTION, to_i64(seq)],
    )
}

/// The sequence the projection has applied (0: nothing yet), as its writer sees it.
pub fn applied(conn: &mut dyn Sql) -> Result<u64, ApplyError> {
    let row = conn.query_row(
        "SELECT seq FROM checkpoints WHERE projection = ?1",
        params![PROJECTION],
    )?;
    let seq = row
        .as_deref()
        .and_then(|r| r.first())
        .and_then(sql::Value::int);
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}
