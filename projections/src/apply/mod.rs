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
use domain::chain::{Broken, Head, Judged, place};
use domain::commit::{Commit, CommitError, CommitKey, Digest, EventCodec};
use domain::container::ContainerEvent;
use domain::keyring::KeyringEvent;
use domain::order::OrderEvent;
use domain::quota::QuotaEvent;
use domain::secret::SecretEvent;
use domain::subject::{AggregateKind, parse_aggregate_subject};
use std::hash::BuildHasher;

use sql::{ApplyError, Sql, params};

/// The checkpoint row of this projection.
pub const PROJECTION: &str = "secrets";

/// What a batch changed that the read cache cannot tell from the commits' subjects:
/// what secrets' names resolve to (`crate::read::ReadCache`'s names).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changed {
    /// The project and name of each named secret the batch created.
    pub names: Vec<(domain::ids::ProjectId, String)>,
    /// Whether any secret expired or was deleted: a name may resolve to fewer secrets,
    /// whatever name. (Scheduling a deletion or restoring changes no name's answer: a
    /// name resolves to live secrets and those in their recovery window alike; a name
    /// that resolves to live ones only would need those too, were it cached.)
    pub removed: bool,
}

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
    /// Every subject of the batch: its head, and whether the batch moved it.
    heads: HeadMap,
}

/// Heads by subject. Looked up once per commit (and once per run of an aggregate's
/// commits before the batch); subjects come from the log, which only the command
/// service writes, so a fast hasher (seeded per process) is safe here.
type HeadMap = hashbrown::HashMap<String, (Option<Head>, bool), foldhash::fast::RandomState>;

impl Heads {
    /// The heads of the aggregates on `subjects` (each commit's, repeats included).
    fn read<'s>(
        conn: &mut dyn Sql,
        subjects: impl IntoIterator<Item = &'s str>,
    ) -> Result<Self, ApplyError> {
        let mut heads = HeadMap::default();
        let mut wanted: Vec<&str> = Vec::new();
        let mut last = None;
        for subject in subjects {
            // A batch comes grouped by aggregate: most subjects repeat the one before.
            if last == Some(subject) {
                continue;
            }
            last = Some(subject);
            if let hashbrown::hash_map::EntryRef::Vacant(slot) = heads.entry_ref(subject) {
                slot.insert((None, false));
                wanted.push(subject);
            }
        }
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
                // Each row answers a subject put in the map above: no copy of it.
                if let Some(slot) = heads.get_mut(subject) {
                    *slot = (Some(head), false);
                }
            }
        }
        Ok(Self { heads })
    }

    /// The head of the aggregate on `subject`, to read and then move: one look-up per
    /// commit. Every subject of the batch is in the map since `read`: no copy of it per
    /// commit.
    fn slot(&mut self, subject: &str) -> &mut (Option<Head>, bool) {
        self.heads.entry_ref(subject).or_insert((None, false))
    }

    /// Writes every head that moved, in subject order.
    fn write(self, conn: &mut dyn Sql) -> Result<(), ApplyError> {
        let mut moved: Vec<(&String, &Head)> = self
            .heads
            .iter()
            .filter_map(|(s, (head, moved))| Some((s, head.as_ref().filter(|_| *moved)?)))
            .collect();
        moved.sort_unstable_by_key(|(s, _)| *s);
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

/// Places the opened commit against its aggregate's head and, if it is the next
/// commit, applies it and moves the head; otherwise says why not.
fn apply_next<E>(
    conn: &mut dyn Sql,
    heads: &mut Heads,
    subject: &str,
    opened: Result<Commit<E>, CommitError>,
    fold: impl FnOnce(&mut dyn Sql, &Commit<E>) -> Result<(), ApplyError>,
) -> Result<Result<(), Skip>, ApplyError> {
    let head = heads.slot(subject);
    let commit = match place(subject, opened, head.0.as_ref()) {
        Ok(Judged::Next(commit)) => commit,
        Ok(Judged::Foreign(reason)) => return Ok(Err(Skip::Foreign(reason))),
        Err(broken) => return Ok(Err(Skip::Broken(broken))),
    };
    fold(conn, &commit)?;
    *head = (Some(Head::from(&commit)), true);
    Ok(Ok(()))
}

/// A message read as the commit its subject's aggregate kind says it is: parsed, its
/// hash and authenticator checked, not yet placed against its aggregate's head.
enum Opened {
    Secret(Result<Commit<SecretEvent>, CommitError>),
    Container(Result<Commit<ContainerEvent>, CommitError>),
    Order(Result<Commit<OrderEvent>, CommitError>),
    AccessKey(Result<Commit<AccessKeyEvent>, CommitError>),
    Quota(Result<Commit<QuotaEvent>, CommitError>),
    Kek(Result<Commit<KeyringEvent>, CommitError>),
    /// Not on the subject of a known aggregate kind.
    Unknown,
}

/// Opens the message on `subject`: the subject names the aggregate kind, and placing
/// it checks that the commit is that aggregate's, so its JSON is read once.
fn open(subject: &str, bytes: &[u8], key: &CommitKey) -> Opened {
    fn open_as<E: EventCodec>(bytes: &[u8], key: &CommitKey) -> Result<Commit<E>, CommitError> {
        domain::chain::open(bytes, Some(key))
    }
    match parse_aggregate_subject(subject).map(|(_, kind, _)| kind) {
        Some(AggregateKind::Secret) => Opened::Secret(open_as(bytes, key)),
        Some(AggregateKind::Container) => Opened::Container(open_as(bytes, key)),
        Some(AggregateKind::Order) => Opened::Order(open_as(bytes, key)),
        Some(AggregateKind::AccessKey) => Opened::AccessKey(open_as(bytes, key)),
        Some(AggregateKind::Quota) => Opened::Quota(open_as(bytes, key)),
        Some(AggregateKind::Kek) => Opened::Kek(open_as(bytes, key)),
        None => Opened::Unknown,
    }
}

/// Batches of at least this many commits are opened on threads of their own while
/// this one applies them. Opening (parse, SHA-256, MAC) was a quarter of the writer's time
/// in a rebuild; below this, starting a thread costs more than it saves.
const OPEN_APART_FROM: usize = 256;

/// Commits opened per hand-over from an opening thread, and hand-overs each may run
/// ahead: at most `OPENERS * (CHUNKS_AHEAD + 2) * OPEN_CHUNK` commits are held opened
/// (their ciphertexts decoded beside the message bytes) besides the batch itself.
const OPEN_CHUNK: usize = 64;
const CHUNKS_AHEAD: usize = 4;

/// Threads that open a batch's commits while the writer applies them. With one, the
/// opening thread set a rebuild's pace (a core to itself, the writer at 60–80% of the
/// other); with two, the three share both cores of the machine this was measured on,
/// and a rebuild of 1,000,000 commits took 11.20 s instead of 12.24 (docs/performance.md, "Two
/// opening threads"). More cores would take more openers; not measured.
const OPENERS: usize = 2;

/// Applies a batch of messages ([`apply`] each), aggregate by aggregate and each
/// aggregate's in stream order, reading and writing their heads once for the batch.
/// Runs in the batch's transaction.
///
/// Statements of different aggregates touch different rows (`pending`'s module
/// comment says why), so any order that keeps each aggregate's own leaves the same
/// rows. This one ([`by_aggregate`]) visits each row's B-tree pages once per batch and
/// about in key order, where stream order revisits them at random: in a rebuild,
/// commits of 100,000 secrets interleave.
pub fn apply_batch(
    conn: &mut dyn Sql,
    commits: &[crate::writer::Stored],
    key: &CommitKey,
) -> Result<Changed, ApplyError> {
    apply_in_order(conn, &by_aggregate(commits), key)
}

/// Applies `ordered`, a batch in an order that keeps each aggregate's commits in
/// stream order, and writes the heads it moved.
fn apply_in_order(
    conn: &mut dyn Sql,
    ordered: &[&crate::writer::Stored],
    key: &CommitKey,
) -> Result<Changed, ApplyError> {
    let mut heads = Heads::read(conn, ordered.iter().map(|c| c.subject.as_str()))?;
    let mut touched = secret::LastTouch::default();
    let mut changed = Changed::default();
    let mut batch = Batch {
        heads: &mut heads,
        touched: &mut touched,
        changed: &mut changed,
    };
    if ordered.len() < OPEN_APART_FROM {
        apply_each(conn, &mut batch, ordered, key)?;
    } else {
        apply_opened_apart(conn, &mut batch, ordered, key)?;
    }
    touched.write(conn)?;
    conn.aggregate(None);
    heads.write(conn)?;
    Ok(changed)
}

/// What applying a batch keeps from one commit to the next.
struct Batch<'a> {
    heads: &'a mut Heads,
    touched: &'a mut secret::LastTouch,
    changed: &'a mut Changed,
}

/// The commits grouped by aggregate, each aggregate's in stream order: the groups of
/// one project and kind together, in the order of their ids' first 16 bytes. Rows are
/// keyed by project and id, so a batch visits their B-tree pages about in key order.
///
/// Sorted on keys held inline. Comparing the subjects themselves, read from a batch's
/// scattered commits, was an eighth of a rebuild's writer thread. Two aggregates whose
/// ids share those bytes are told apart by a hash of the subject; were two subjects to
/// share that too, their runs would interleave, which leaves the same rows (the order
/// only needs each aggregate's commits in stream order, see [`apply_batch`]).
fn by_aggregate(commits: &[crate::writer::Stored]) -> Vec<&crate::writer::Stored> {
    let hasher = foldhash::quality::FixedState::default();
    let mut keys: Vec<(u64, u128, u64, usize)> = commits
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let subject = c.subject.as_bytes();
            // `keyledger.events.<project>.<kind>` and the id.
            let (project_kind, id) = subject
                .iter()
                .rposition(|b| *b == b'.')
                .map_or((&subject[..0], subject), |dot| {
                    (&subject[..dot], &subject[dot + 1..])
                });
            let mut id_prefix = [0u8; 16];
            let n = id.len().min(16);
            id_prefix[..n].copy_from_slice(&id[..n]);
            (
                hasher.hash_one(project_kind),
                u128::from_be_bytes(id_prefix),
                hasher.hash_one(subject),
                i,
            )
        })
        .collect();
    keys.sort_unstable();
    keys.into_iter().map(|(.., i)| &commits[i]).collect()
}

/// Opens and applies each commit on this thread.
fn apply_each(
    conn: &mut dyn Sql,
    batch: &mut Batch<'_>,
    commits: &[&crate::writer::Stored],
    key: &CommitKey,
) -> Result<(), ApplyError> {
    for c in commits {
        apply(conn, batch, c, open(&c.subject, &c.payload, key))?;
    }
    Ok(())
}

/// Opens the commits on [`OPENERS`] threads of their own, [`OPEN_CHUNK`] at a time
/// (the chunks dealt out in turn), and applies them on this one in the order given.
/// If any of those threads cannot be started, does both here.
fn apply_opened_apart(
    conn: &mut dyn Sql,
    batch: &mut Batch<'_>,
    commits: &[&crate::writer::Stored],
    key: &CommitKey,
) -> Result<(), ApplyError> {
    std::thread::scope(|scope| {
        let mut openers = Vec::with_capacity(OPENERS);
        let mut handed = Vec::with_capacity(OPENERS);
        for first in 0..OPENERS {
            let (opened, chunks) = std::sync::mpsc::sync_channel::<Vec<Opened>>(CHUNKS_AHEAD);
            let opener = std::thread::Builder::new()
                // 15 bytes: Linux keeps no more of a thread's name (perf, top -H).
                .name(format!("keyledger-open{first}"))
                .spawn_scoped(scope, move || {
                    for chunk in commits.chunks(OPEN_CHUNK).skip(first).step_by(OPENERS) {
                        let chunk = chunk
                            .iter()
                            .map(|c| open(&c.subject, &c.payload, key))
                            .collect();
                        // The applier stopped (an error): nothing more is wanted.
                        if opened.send(chunk).is_err() {
                            return;
                        }
                    }
                });
            match opener {
                Ok(opener) => {
                    openers.push(opener);
                    handed.push(chunks);
                }
                // The openers started stop at their first hand-over, their queues
                // dropped; joined here, so a panic of theirs cannot escape the scope.
                Err(_) => {
                    drop(handed);
                    for opener in openers {
                        let _ = opener.join();
                    }
                    return apply_each(conn, batch, commits, key);
                }
            }
        }
        let mut applied = || {
            for (i, chunk) in commits.chunks(OPEN_CHUNK).enumerate() {
                let opened = handed[i % OPENERS]
                    .recv()
                    .map_err(|_| ApplyError::OpenerStopped)?;
                if opened.len() != chunk.len() {
                    return Err(ApplyError::OpenerStopped);
                }
                for (c, opened) in chunk.iter().zip(opened) {
                    apply(conn, batch, c, opened)?;
                }
            }
            Ok(())
        };
        let applied = applied();
        // After an error the openers stop at their next hand-over; joined here, a
        // panic (if one had one) is this batch's error rather than the scope's. Every
        // one is joined before any result is looked at: one left to the scope would
        // re-raise its panic there.
        drop(handed);
        let joined = openers
            .into_iter()
            .map(std::thread::ScopedJoinHandle::join)
            .collect::<Vec<_>>();
        applied?;
        if joined.iter().any(Result::is_err) {
            return Err(ApplyError::OpenerStopped);
        }
        Ok(())
    })
}

/// Applies the message `c`, `opened`, if it is its aggregate's next commit. Anything
/// else (a foreign message, a replay, a commit this build cannot read) is recorded in
/// `skipped_commits` and logged instead of stopping the projection.
fn apply(
    conn: &mut dyn Sql,
    batch: &mut Batch<'_>,
    c: &crate::writer::Stored,
    opened: Opened,
) -> Result<(), ApplyError> {
    let Batch {
        heads,
        touched,
        changed,
    } = batch;
    let (seq, subject) = (c.seq, c.subject.as_str());
    conn.aggregate(Some(subject));
    let applied = match opened {
        Opened::Secret(opened) => apply_next(conn, heads, subject, opened, |conn, c| {
            secret::apply(conn, touched, changed, subject, seq, c)
        })?,
        Opened::Container(opened) => apply_next(conn, heads, subject, opened, |conn, c| {
            container::apply(conn, seq, c)
        })?,
        Opened::Order(opened) => apply_next(conn, heads, subject, opened, |conn, c| {
            order::apply(conn, seq, c)
        })?,
        Opened::AccessKey(opened) => apply_next(conn, heads, subject, opened, |conn, c| {
            access_key::apply(conn, seq, c)
        })?,
        Opened::Quota(opened) => apply_next(conn, heads, subject, opened, |conn, c| {
            quota::apply(conn, seq, c)
        })?,
        // The keyring has no rows: its commits are checked and their chain followed.
        Opened::Kek(opened) => apply_next(conn, heads, subject, opened, |_, _| Ok(()))?,
        Opened::Unknown => Err(Skip::Foreign(
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

/// A fresh read model in memory, for tests of the fold.
#[cfg(test)]
pub(crate) mod testing {
    use super::sql::{Lite, Sql, Value};

    /// A fresh read model in memory, with every migration run.
    pub(crate) fn fresh() -> rusqlite::Connection {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut migrations: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        migrations.sort();
        for m in migrations {
            db.execute_batch(&std::fs::read_to_string(m).unwrap())
                .unwrap();
        }
        db
    }

    /// Every row of `tables` (in order, each sorted by its first three columns) after
    /// `write` on a [`fresh`] read model.
    pub(crate) fn rows_after(
        tables: &[&str],
        write: impl FnOnce(&mut dyn Sql),
    ) -> Vec<Vec<Value<'static>>> {
        let db = fresh();
        let mut conn = Lite(&db);
        write(&mut conn);
        tables
            .iter()
            .flat_map(|t| {
                let columns = conn
                    .query_all(
                        &format!("SELECT COUNT(*) FROM pragma_table_info('{t}')"),
                        &[],
                    )
                    .unwrap()[0][0]
                    .int()
                    .unwrap();
                let order: Vec<String> =
                    (2..=(columns + 1).min(4)).map(|c| c.to_string()).collect();
                let sql = format!("SELECT '{t}', * FROM {t} ORDER BY {}", order.join(", "));
                conn.query_all(&sql, &[]).unwrap()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::Stored;
    use domain::commit::{AggregateRef, NewCommit};
    use domain::ids::{CommandId, ProjectId, SecretId};
    use domain::principal::Actor;
    use domain::timestamp::Timestamp;

    fn event(json: serde_json::Value) -> SecretEvent {
        SecretEvent::decode(json).unwrap()
    }

    /// A log of `secrets` secrets, each created and then given metadata in turn, with
    /// messages no projection applies among them: junk, a copy of an earlier commit, a
    /// commit moved to another secret's subject, one sealed with another key, one on no
    /// aggregate's subject, one that skips versions. Returns the log and the sequences
    /// of those messages.
    fn mixed_log(key: &CommitKey, secrets: usize, commits: usize) -> (Vec<Stored>, Vec<u64>) {
        let created = event(
            serde_json::from_str(include_str!(
                "../../../domain/tests/golden/secret.created.v2.json"
            ))
            .unwrap(),
        );
        let aggregate = |n: usize| AggregateRef {
            kind: AggregateKind::Secret,
            project: ProjectId::parse("p").unwrap(),
            id: SecretId::parse(&format!("00000000-0000-0000-0000-{n:012}"))
                .unwrap()
                .into(),
        };
        let mut heads: Vec<(u64, Option<Digest>)> = vec![(0, None); secrets];
        let (mut log, mut skipped) = (Vec::new(), Vec::new());
        let push = |log: &mut Vec<Stored>, subject: String, payload: Vec<u8>| {
            let seq = log.len() as u64 + 1;
            log.push(Stored {
                seq,
                subject,
                payload: payload.into(),
            });
            seq
        };
        for n in 0..commits {
            let s = n % secrets;
            let (version, prev) = heads[s];
            let events = if version == 0 {
                vec![created.clone()]
            } else {
                vec![event(serde_json::json!({
                    "type": "secret.metadatum_set", "v": 1,
                    "key": format!("k{}", version % 3), "value": format!("v{n}"),
                }))]
            };
            let commit = NewCommit {
                id: CommandId::parse(&format!("c{n}")).unwrap(),
                aggregate: aggregate(s),
                version: version + 1,
                command: "secret.metadata.set".into(),
                actor: Actor::scheduler(),
                at: Timestamp::from_unix_millis(1_795_000_000_000 + n as i64).unwrap(),
                events,
            };
            let subject = commit.aggregate.subject();
            let sealed = commit.clone().seal(prev, key);
            heads[s] = (version + 1, Some(sealed.hash));
            push(&mut log, subject.clone(), sealed.to_bytes());
            match n % 97 {
                13 => skipped.push(push(&mut log, subject, b"{}".to_vec())),
                29 => skipped.push(push(&mut log, subject, sealed.to_bytes())),
                41 => skipped.push(push(
                    &mut log,
                    aggregate(s + 1).subject(),
                    sealed.to_bytes(),
                )),
                53 => {
                    let forged = commit.seal(prev, &CommitKey::new([9; 32]));
                    skipped.push(push(&mut log, subject, forged.to_bytes()));
                }
                67 => skipped.push(push(
                    &mut log,
                    "keyledger.events.p.widget.w".into(),
                    sealed.to_bytes(),
                )),
                // An authentic commit two versions ahead: the chain is broken there.
                79 => {
                    let ahead = NewCommit {
                        version: version + 3,
                        ..commit
                    }
                    .seal(Some(sealed.hash), key);
                    skipped.push(push(&mut log, subject, ahead.to_bytes()));
                }
                _ => {}
            }
        }
        (log, skipped)
    }

    const TABLES: [&str; 4] = [
        "secrets",
        "secret_metadata",
        "commit_heads",
        "skipped_commits",
    ];

    /// A batch large enough to be opened on threads of its own leaves exactly the rows
    /// its commits leave applied one batch each (opened on the writer's thread): the
    /// same rows, heads and skipped messages, the skipped ones for the same reasons.
    /// Both start from heads an earlier batch left.
    #[test]
    fn a_batch_opened_on_threads_of_its_own_leaves_what_commits_applied_one_by_one_leave() {
        let key = CommitKey::new([3; 32]);
        let (log, skipped) = mixed_log(&key, 40, 5 * OPEN_APART_FROM);
        let (first, rest) = log.split_at(60);
        assert!(rest.len() > OPEN_APART_FROM + OPENERS * (CHUNKS_AHEAD + 2) * OPEN_CHUNK);
        assert!(skipped.len() >= 6, "{skipped:?}");
        let together = testing::rows_after(&TABLES, |conn| {
            apply_batch(conn, first, &key).unwrap();
            apply_batch(conn, rest, &key).unwrap();
        });
        let one_by_one = testing::rows_after(&TABLES, |conn| {
            for c in &log {
                apply_batch(conn, std::slice::from_ref(c), &key).unwrap();
            }
        });
        assert_eq!(together, one_by_one);
        let skipped_rows: Vec<(i64, &str)> = together
            .iter()
            .filter(|row| row.first().and_then(sql::Value::text) == Some("skipped_commits"))
            .filter_map(|row| Some((row.get(1)?.int()?, row.get(2)?.text()?)))
            .collect();
        let seqs: Vec<i64> = skipped_rows.iter().map(|(seq, _)| *seq).collect();
        let expected: Vec<i64> = skipped.iter().map(|s| to_i64(*s)).collect();
        assert_eq!(seqs, expected);
        assert!(
            skipped_rows
                .iter()
                .any(|(_, why)| why.contains("are missing")),
            "{skipped_rows:?}"
        );
        let secrets = together
            .iter()
            .filter(|row| row.first().and_then(sql::Value::text) == Some("secrets"))
            .count();
        assert_eq!(secrets, 40);
    }

    /// Grouping a batch keeps every commit once, each aggregate's commits together and
    /// in stream order, the groups in the order of their ids' first 16 bytes: ids that
    /// share them (time-ordered ids made in one millisecond), short ids, a subject with
    /// no dot.
    #[test]
    fn a_batch_is_grouped_by_aggregate_each_in_stream_order() {
        let subjects = [
            "keyledger.events.p.secret.0190a1b2-c3d4-7aaa-8000-000000000002",
            "keyledger.events.p.secret.0190a1b2-c3d4-7aaa-8000-000000000001",
            "keyledger.events.q.secret.0190a1b2-c3d4-7aaa-8000-000000000001",
            "keyledger.events.p.container.0190a1b2-c3d4-7aaa-8000-000000000001",
            "keyledger.events.p.kek.k1",
            "keyledger.events.p.secret.00000000-0000-0000-0000-000000000009",
            "no-dot",
        ];
        let log: Vec<Stored> = (0..7 * 40)
            .map(|n| Stored {
                seq: n as u64 + 1,
                subject: subjects[(n * 5 + n / 7) % subjects.len()].to_owned(),
                payload: bytes::Bytes::new(),
            })
            .collect();
        let grouped = by_aggregate(&log);
        let mut seqs: Vec<u64> = grouped.iter().map(|c| c.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>());
        let mut runs: Vec<&str> = Vec::new();
        for pair in grouped.windows(2) {
            if pair[0].subject == pair[1].subject {
                assert!(
                    pair[0].seq < pair[1].seq,
                    "{} out of order",
                    pair[0].subject
                );
            }
        }
        for c in &grouped {
            if runs.last() != Some(&c.subject.as_str()) {
                runs.push(&c.subject);
            }
        }
        assert_eq!(runs.len(), subjects.len(), "{runs:?}");
        // Within a project and kind, by id.
        let mut by_kind: std::collections::HashMap<&str, Vec<String>> =
            std::collections::HashMap::new();
        for run in &runs {
            let (kind, id) = run.rsplit_once('.').unwrap_or(("", run));
            by_kind
                .entry(kind)
                .or_default()
                .push(id.chars().take(16).collect());
        }
        assert_eq!(by_kind["keyledger.events.p.secret"].len(), 3);
        for ids in by_kind.values() {
            assert!(ids.is_sorted(), "{ids:?}");
        }
        let kinds: Vec<&str> = runs
            .iter()
            .map(|run| run.rsplit_once('.').map_or("", |(kind, _)| kind))
            .collect();
        let mut kind_runs = kinds.clone();
        kind_runs.dedup();
        assert_eq!(kind_runs.len(), by_kind.len(), "{kinds:?}");
    }

    /// Were two aggregates' runs to interleave (their keys in [`by_aggregate`] equal),
    /// the rows are still those of the commits applied one by one: a secret's row
    /// takes its last commit's `updated`, `version` and `seq` whichever run ends last.
    #[test]
    fn interleaved_runs_of_aggregates_leave_what_commits_applied_one_by_one_leave() {
        let key = CommitKey::new([3; 32]);
        let (log, _) = mixed_log(&key, 3, 40);
        let (first, rest) = log.split_at(5);
        let interleaved = testing::rows_after(&TABLES, |conn| {
            for part in [first, rest] {
                let in_stream_order: Vec<&Stored> = part.iter().collect();
                apply_in_order(conn, &in_stream_order, &key).unwrap();
            }
        });
        let one_by_one = testing::rows_after(&TABLES, |conn| {
            for c in &log {
                apply_batch(conn, std::slice::from_ref(c), &key).unwrap();
            }
        });
        assert_eq!(interleaved, one_by_one);
        let rows_of = |table: &str| {
            interleaved
                .iter()
                .filter(|row| row.first().and_then(sql::Value::text) == Some(table))
                .count()
        };
        assert_eq!(rows_of("secrets"), 3);
        assert!(rows_of("secret_metadata") >= 9);
        // The order given did interleave the three secrets' runs.
        assert_ne!(log[1].subject, log[0].subject);
    }

    /// A connection whose `execute` fails once it has run `left` statements.
    struct FailingAfter<'c> {
        inner: sql::Lite<'c>,
        left: usize,
    }

    impl Sql for FailingAfter<'_> {
        fn execute(
            &mut self,
            sql: &'static str,
            params: &[sql::Value<'_>],
        ) -> Result<(), ApplyError> {
            match self.left.checked_sub(1) {
                Some(left) => self.left = left,
                None => return Err(ApplyError::Corrupt("the disk is full".into())),
            }
            self.inner.execute(sql, params)
        }

        fn execute_dynamic(
            &mut self,
            sql: &str,
            params: &[sql::Value<'_>],
        ) -> Result<(), ApplyError> {
            self.inner.execute_dynamic(sql, params)
        }

        fn query_all(
            &mut self,
            sql: &str,
            params: &[sql::Value<'_>],
        ) -> Result<Vec<Vec<sql::Value<'static>>>, ApplyError> {
            self.inner.query_all(sql, params)
        }
    }

    /// A statement failing mid-batch, while the opening threads wait to hand over what
    /// they opened ahead, fails the batch with that error: nothing hangs.
    #[test]
    fn a_statement_failing_mid_batch_stops_the_opening_threads_and_fails_the_batch() {
        let key = CommitKey::new([3; 32]);
        let (log, _) = mixed_log(&key, 40, 8 * OPEN_APART_FROM);
        // At least one statement per commit: this fails with more of the batch left
        // than the openers may hold ahead, so they are waiting to hand over.
        let left = OPENERS * (CHUNKS_AHEAD + 3) * OPEN_CHUNK;
        assert!(log.len() > left + OPENERS * (CHUNKS_AHEAD + 2) * OPEN_CHUNK);
        let db = testing::fresh();
        let mut failing = FailingAfter {
            inner: sql::Lite(&db),
            left,
        };
        let err = apply_batch(&mut failing, &log, &key).unwrap_err();
        assert!(err.to_string().contains("the disk is full"), "{err}");
    }
}
