//! The projector's own connection to the read model (SQLite or PostgreSQL).
//!
//! sqlx runs each SQLite statement on a worker thread and wakes the calling task after
//! every one. The projector runs several statements per commit, and those hand-offs
//! cost more than the statements: `perf` on a rebuild showed about 70% of its time in
//! futex wake-ups and context switches. So the single writer holds a synchronous
//! connection (rusqlite) and applies a whole batch, checkpoint included, in one
//! blocking call: one hand-off per batch, each statement prepared once and cached.
//! Readers keep their sqlx pool; WAL lets them read while the writer writes.
//!
//! On PostgreSQL the same fold runs on the same blocking thread through sqlx, its
//! writes sent in one round trip per batch (`apply::sql::Pg`); the writer's session
//! holds the advisory lock that makes it the one active projector, and each batch
//! NOTIFYs its checkpoint to readers in other processes.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use domain::commit::CommitKey;
use rusqlite::{Connection, TransactionBehavior};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection as _};
use tokio::runtime::Handle;

pub use crate::apply::Changed;
use crate::apply::sql::{ApplyError, Lite, Pg, Sql};
use crate::apply::{applied, apply_batch, set_checkpoint};
use crate::wal::Checkpointer;

/// Every table the projection writes, cleared by a rebuild (a test holds it to the
/// schema: a table left out would keep rows no commit of the log wrote, such as an
/// access key of another log).
const TABLES: [&str; 16] = [
    "access_keys",
    "project_quotas",
    "secret_payloads",
    "secret_metadata",
    "secret_acl_users",
    "secret_stages",
    "secret_consumers",
    "secrets",
    "container_secrets",
    "container_consumers",
    "container_acl_users",
    "containers",
    "orders",
    "skipped_commits",
    "commit_heads",
    "checkpoints",
];

/// The size the WAL file is trimmed to once a checkpoint has reset it, in bytes.
const WAL_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// How large a writer's page cache is, and how far its WAL may grow before the
/// writer's own commit checkpoints it. Its checkpoint thread ([`crate::wal`]) copies
/// the WAL after each commit meanwhile; the writer's own checkpoint is the bound
/// should that thread fall behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterSizes {
    /// The page cache, in KiB.
    pub cache_kib: i64,
    /// WAL pages (of 4 KiB) after which a commit checkpoints.
    pub checkpoint_pages: i64,
}

impl WriterSizes {
    /// A projector serving reads beside it: a page cache for the read model's hot
    /// indexes of about a million secrets, and its own checkpoint at the WAL's size
    /// limit. A checkpoint copies each page once however many frames the WAL holds of
    /// it, and every create dirties pages all over the secrets table's indexes (random
    /// ids): with SQLite's default of 1,000 pages the WAL was checkpointed every 4 MiB
    /// and the writer wrote about 54 KB per create.
    pub const PROJECTOR: Self = Self {
        cache_kib: 64 * 1024,
        checkpoint_pages: WAL_LIMIT_BYTES / 4096,
    };

    /// `keyledger projections rebuild`, a process of its own that ends.
    ///
    /// A rebuild dirties pages all over the read model: with a 64 MiB cache a rebuild
    /// of a million secrets spent a third of its time re-reading and spilling pages
    /// (172 s; 141 s with 512 MiB, at a peak RSS of 600 MB instead of 417 MB).
    ///
    /// Each of its batches writes most of the read model to the WAL at its commit,
    /// past the projector's bound: its own commit then checkpointed, a tenth of the
    /// writer's thread, while nothing else ran. Past 256 MiB instead, the checkpoint
    /// thread copies the WAL of a read model of 100,000 secrets (146 MB) while the next
    /// batch is read. A larger read model's commits still checkpoint by themselves: at
    /// 1 GiB a rebuild of a million secrets was no faster and its WAL peaked at 1.47 GB,
    /// not 736 MB.
    pub const REBUILD: Self = Self {
        cache_kib: 512 * 1024,
        checkpoint_pages: (256 << 20) / 4096,
    };
}

/// A commit as the stream stored it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its stream sequence.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// Its bytes.
    pub payload: Bytes,
}

/// Why writing the read model failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The database failed.
    #[error("{0}")]
    Apply(#[from] ApplyError),
    /// Another writer moved the checkpoint since this one read it.
    #[error(
        "the read model's checkpoint is at {found}, not at {expected} as this projector left \
         it: another projector writes this read model"
    )]
    CheckpointMoved {
        /// The checkpoint this writer expected.
        expected: u64,
        /// The checkpoint found.
        found: u64,
    },
    /// Another projector holds the PostgreSQL read model's lock.
    #[error(
        "another projector holds the lock of this PostgreSQL read model (advisory lock {0}); \
         run one projector per read model, or `keyledger serve projector` to stand by"
    )]
    Locked(i64),
    /// The blocking task running the writes panicked or was cancelled.
    #[error("the read model writer stopped: {0}")]
    Stopped(String),
    /// The thread checkpointing the SQLite WAL could not be started.
    #[error("starting the read model's WAL checkpoint thread failed: {0}")]
    Thread(std::io::Error),
}

impl WriteError {
    /// Whether this failure is of the PostgreSQL session rather than of the batch: the
    /// connection was lost or ended (SQLSTATE classes 08 and 57, e.g. an operator's
    /// `pg_terminate_backend`, a server starting or shutting down), the server is out
    /// of connections (53), or the session was made read-only (25006). A new session
    /// may succeed where this one cannot; any other failure would fail the same way
    /// on every session, and the standby's too.
    pub fn is_of_the_session(&self) -> bool {
        let Self::Apply(ApplyError::Postgres(e)) = self else {
            return false;
        };
        match e {
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("57")
                    || code.starts_with("53")
                    || code == "25006"
            }),
            // TLS refused over certificates or settings: a new session fails the same.
            e if crate::pg_tls::refused(e) => false,
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            _ => false,
        }
    }
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Apply(e.into())
    }
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        Self::Apply(e.into())
    }
}

/// The key of the PostgreSQL advisory lock one active projector holds (session level,
/// so PostgreSQL releases it when the projector's connection ends, kill -9 included).
pub const POSTGRES_LOCK: i64 = 0x6b65_796c_6564_6772; // "keyledgr"

/// The `application_name` of a projector's PostgreSQL session: this, then its process
/// id.
pub const LOCK_HOLDER_PREFIX: &str = "keyledger-projector-";

/// The read model's single writer.
#[derive(Clone)]
pub struct Writer {
    backend: Arc<Backend>,
}

enum Backend {
    Sqlite {
        /// Checkpoints the WAL after commits, off this connection's path. Declared
        /// before `conn`, so it ends first and the writer's connection closes last.
        wal: Checkpointer,
        conn: Mutex<Connection>,
    },
    Postgres {
        session: Box<Mutex<PgSession>>,
        runtime: Handle,
        /// How the session connects (outside the mutex, which a batch holds for as
        /// long as it runs).
        options: Box<PgConnectOptions>,
    },
}

/// The projector's PostgreSQL session: its connection, which holds the advisory lock,
/// and the writes of the current batch not sent yet.
struct PgSession {
    conn: Option<PgConnection>,
    pending: crate::apply::sql::Pending,
}

impl PgSession {
    /// The connection, reconnecting (and taking the lock again) after a failure: a
    /// PostgreSQL restart ends the session and with it the lock, which another
    /// projector may have taken meanwhile.
    fn connection(
        &mut self,
        options: &PgConnectOptions,
        runtime: &Handle,
    ) -> Result<&mut PgConnection, WriteError> {
        if self.conn.is_none() {
            let mut conn = runtime.block_on(connect(options))?;
            if !runtime.block_on(try_lock(&mut conn))? {
                return Err(WriteError::Locked(POSTGRES_LOCK));
            }
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }
}

/// The projector's session settings, whatever the role's or the database's are.
fn session_options(options: PgConnectOptions) -> PgConnectOptions {
    options
        // Named so that an operator sees in pg_stat_activity (and pg_locks) which
        // projector process holds the lock.
        .application_name(&format!("{LOCK_HOLDER_PREFIX}{}", std::process::id()))
        .options([
            // The writes' literals are quoted for this setting
            // (apply::sql::postgres_literal); it is PostgreSQL's default.
            ("standard_conforming_strings", "on"),
            // A timeout would end a standby's wait for the lock, or a long batch of
            // a rebuild; an idle timeout would end the session that holds the lock
            // between two quiet batches and hand the read model to the standby.
            ("lock_timeout", "0"),
            ("statement_timeout", "0"),
            ("idle_session_timeout", "0"),
            ("idle_in_transaction_session_timeout", "0"),
        ])
        // The writes carry the read model's rows as literals (names, metadata,
        // ciphertexts): sqlx must not log them, and a standby's wait for the lock is
        // no slow statement.
        .log_statements(log::LevelFilter::Off)
        .log_slow_statements(log::LevelFilter::Off, Duration::ZERO)
}

/// How long the projector's connecting (TCP, TLS, logging in) may take. A server, or
/// anything in between, that takes the connection and then answers nothing would
/// otherwise hold the projector, a standby too, without a word in its log.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A new session of the projector's (or a reader's first, to say why it cannot
/// connect), within [`CONNECT_TIMEOUT`]; a timeout is an I/O error, so it is of the
/// session ([`WriteError::is_of_the_session`]): retried.
pub(crate) async fn connect(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer from PostgreSQL within {}s of connecting",
                    CONNECT_TIMEOUT.as_secs()
                ),
            )))
        })
}

/// A new session holding the read model's advisory lock, waiting (in PostgreSQL,
/// without polling) while another session holds it.
async fn lock_when_free(options: &PgConnectOptions) -> Result<PgConnection, WriteError> {
    let mut conn = connect(options).await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(POSTGRES_LOCK)
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

async fn try_lock(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(POSTGRES_LOCK)
        .fetch_one(conn)
        .await
}

impl Writer {
    /// Opens the (already migrated) SQLite database at `path` for writing, with a page
    /// cache and a WAL of `sizes`.
    pub fn open(path: &Path, sizes: WriterSizes) -> Result<Self, WriteError> {
        let mut conn = Connection::open(path)?;
        // As the read model's sqlx pool (db::open): with WAL, NORMAL keeps the file
        // consistent across crashes; a lost tail is re-applied from the log.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // SQLite's default page cache (2 MiB) makes every index probe of a large read
        // model a read() of a page the OS holds anyway; the writer keeps its own.
        conn.pragma_update(None, "cache_size", -sizes.cache_kib)?;
        // A batch of 8,192 commits can grow the WAL by hundreds of MiB (a rebuild of a
        // million secrets left a 303 MB WAL), and SQLite keeps the file at its largest
        // size unless told otherwise: after a checkpoint resets it, trim it.
        conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES)?;
        conn.pragma_update(None, "wal_autocheckpoint", sizes.checkpoint_pages)?;
        // Every statement the projection runs stays prepared.
        conn.set_prepared_statement_cache_capacity(128);
        // A rebuild interrupted before its end left its indexes out: no projector
        // (nor the rebuild resuming in its place) goes on without them.
        create_missing_indexes(&mut conn)?;
        Ok(Self {
            backend: Arc::new(Backend::Sqlite {
                wal: Checkpointer::start(path)?,
                conn: Mutex::new(conn),
            }),
        })
    }

    /// Opens the (already migrated) PostgreSQL read model for writing, holding its
    /// advisory lock: fails with [`WriteError::Locked`] if another projector holds it,
    /// or, if `wait`, stands by until that one's session ends.
    pub async fn open_postgres(options: PgConnectOptions, wait: bool) -> Result<Self, WriteError> {
        let options = session_options(options);
        let conn = if wait {
            lock_when_free(&options).await?
        } else {
            let mut conn = connect(&options).await?;
            if !try_lock(&mut conn).await? {
                return Err(WriteError::Locked(POSTGRES_LOCK));
            }
            conn
        };
        Ok(Self {
            backend: Arc::new(Backend::Postgres {
                session: Box::new(Mutex::new(PgSession {
                    conn: Some(conn),
                    pending: Default::default(),
                })),
                runtime: Handle::current(),
                options: Box::new(options),
            }),
        })
    }

    /// After [`WriteError::Locked`] (this writer lost its PostgreSQL session, and
    /// another projector took the lock meanwhile): stands by until that one's session
    /// ends, then holds the lock again. A SQLite writer has nothing to wait for.
    pub async fn stand_by(&self) -> Result<(), WriteError> {
        let Backend::Postgres {
            session, options, ..
        } = &*self.backend
        else {
            return Ok(());
        };
        let conn = lock_when_free(options).await?;
        // No batch runs on a writer that stands by: the mutex is free.
        session.lock().unwrap_or_else(PoisonError::into_inner).conn = Some(conn);
        Ok(())
    }

    /// Runs `f` in one transaction that only this writer can hold (SQLite `BEGIN
    /// IMMEDIATE`; on PostgreSQL an exclusive lock on the checkpoints, which readers
    /// do not take), on a blocking thread, and commits it if `f` succeeds.
    async fn transaction<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, ApplyError> + Send + 'static,
    ) -> Result<T, WriteError> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || match &*backend {
            Backend::Sqlite { conn, wal } => {
                // A panic mid-transaction rolled it back (the transaction is dropped),
                // so the connection is still sound.
                let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let out = f(&mut Lite(&tx))?;
                tx.commit()?;
                wal.committed();
                Ok(out)
            }
            Backend::Postgres {
                session,
                runtime,
                options,
            } => {
                let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
                let result = postgres_transaction(&mut session, options, runtime, f);
                if let Err(e) = &result
                    && e.is_of_the_session()
                {
                    // The session is gone (PostgreSQL restarted, an operator ended it)
                    // or in a state no retry on it leaves (made read-only): the next
                    // batch connects again and takes the lock again, or finds that the
                    // standby holds it now. A failure of the batch itself keeps the
                    // session, and the lock with it: the standby would fail the same.
                    session.conn = None;
                }
                result
            }
        })
        .await
        .map_err(|e| WriteError::Stopped(e.to_string()))?
    }

    /// The sequence the read model has applied (0: nothing yet).
    pub async fn checkpoint(&self) -> Result<u64, WriteError> {
        self.transaction(applied).await
    }

    /// Applies `commits` (in stream order, following the checkpoint `after`) and moves
    /// the checkpoint to the last one, in one transaction; what they changed that the
    /// read cache must forget beyond their subjects. If the checkpoint is no longer
    /// `after`, another writer has moved it: nothing is written.
    pub async fn apply(
        &self,
        commits: Vec<Stored>,
        key: Arc<CommitKey>,
        after: u64,
    ) -> Result<Changed, WriteError> {
        let Some(last) = commits.last().map(|c| c.seq) else {
            return Ok(Changed::default());
        };
        let applied_or_moved = self
            .transaction(move |conn| {
                // Commits applied twice would be judged replays and hidden from the
                // history: a second writer (a lock that did not hold, a projector
                // whose last batch outlived its lock) must never apply them again.
                let found = applied(conn)?;
                if found != after {
                    return Ok(Err(found));
                }
                let changed = apply_batch(conn, &commits, &key)?;
                set_checkpoint(conn, last)?;
                conn.announce(last)?;
                Ok(Ok(changed))
            })
            .await?;
        applied_or_moved.map_err(|found| WriteError::CheckpointMoved {
            expected: after,
            found,
        })
    }

    /// Creates every index of the schema the read model lacks (SQLite; nothing on
    /// PostgreSQL), each built once over the rows there are.
    pub async fn create_indexes(&self) -> Result<(), WriteError> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || match &*backend {
            Backend::Sqlite { conn, wal } => {
                let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                create_missing_indexes(&mut conn)?;
                wal.committed();
                Ok(())
            }
            Backend::Postgres { .. } => Ok(()),
        })
        .await
        .map_err(|e| WriteError::Stopped(e.to_string()))?
    }

    /// Removes every row and the checkpoint, in one transaction, for a rebuild from
    /// sequence 1. With `indexes_later` (a rebuild into a file no reader was given
    /// yet), on SQLite it also drops the indexes, which the rebuild then builds once
    /// at its end ([`Self::create_indexes`]) instead of placing every row in each at a
    /// random key (up to eight for a created secret). A reader would miss them: a
    /// look-up by id or reference would scan the table, and one by name, whose query
    /// names its index, would fail. Should the rebuild stop before its end, the next
    /// writer to open the file creates them.
    pub async fn clear(&self, indexes_later: bool) -> Result<(), WriteError> {
        let deferred = match &*self.backend {
            Backend::Sqlite { .. } if indexes_later => crate::db::deferred_indexes()?,
            _ => Vec::new(),
        };
        self.transaction(move |conn| {
            // Dropped first, so the deletes have fewer indexes to keep.
            for (name, _) in &deferred {
                conn.execute_dynamic(&format!("DROP INDEX IF EXISTS \"{name}\""), &[])?;
            }
            for table in TABLES {
                conn.execute_dynamic(&format!("DELETE FROM {table}"), &[])?;
            }
            // Readers in other processes follow the checkpoint back at once.
            conn.announce(0)?;
            Ok(())
        })
        .await
    }
}

/// Creates each index of the schema that `conn`'s file lacks, one transaction each
/// (so the writer's own checkpoint bound applies between them, rather than the WAL
/// holding every index of a large read model at once); how many.
fn create_missing_indexes(conn: &mut Connection) -> Result<usize, rusqlite::Error> {
    let started = std::time::Instant::now();
    // Read once, so a file with every index (each start of a projector) takes no
    // write lock; the writer holds the projector's lock, so none appears meanwhile.
    let present: std::collections::HashSet<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index'")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut created = 0;
    for (name, sql) in crate::db::deferred_indexes()? {
        if present.contains(&name) {
            continue;
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(&sql)?;
        tx.commit()?;
        created += 1;
    }
    if created > 0 {
        tracing::info!(
            indexes = created,
            took_ms = started.elapsed().as_millis() as u64,
            "created the read model's indexes a rebuild builds at its end"
        );
    }
    Ok(created)
}

/// [`Writer::transaction`] on PostgreSQL.
fn postgres_transaction<T>(
    session: &mut PgSession,
    options: &PgConnectOptions,
    runtime: &Handle,
    f: impl FnOnce(&mut dyn Sql) -> Result<T, ApplyError>,
) -> Result<T, WriteError> {
    session.connection(options, runtime)?;
    let PgSession { conn, pending, .. } = session;
    // What a failed batch left unsent is not this batch's.
    pending.clear();
    let conn = conn.as_mut().expect("connected above");
    let mut tx = runtime.block_on(conn.begin())?;
    runtime.block_on(sqlx::query("LOCK TABLE checkpoints IN EXCLUSIVE MODE").execute(&mut *tx))?;
    let mut pg = Pg {
        conn: &mut tx,
        runtime,
        pending,
    };
    let out = f(&mut pg)?;
    pg.flush()?;
    runtime.block_on(tx.commit())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn junk(seq: u64) -> Stored {
        Stored {
            seq,
            subject: "not.a.commit".into(),
            payload: Bytes::from_static(b"{}"),
        }
    }

    /// Two writers on one read model (as when a lock did not hold): the second one,
    /// behind the checkpoint, writes nothing and says why.
    #[tokio::test]
    async fn a_writer_behind_the_checkpoint_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::sqlite_url(&dir.path().join("rm.sqlite"));
        let first = crate::db::open_writer(&url, WriterSizes::PROJECTOR)
            .await
            .unwrap();
        let second = crate::db::open_writer(&url, WriterSizes::PROJECTOR)
            .await
            .unwrap();
        let key = Arc::new(CommitKey::new([7; 32]));
        first
            .apply(vec![junk(1), junk(2)], key.clone(), 0)
            .await
            .unwrap();
        let err = second
            .apply(vec![junk(1)], key.clone(), 0)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                WriteError::CheckpointMoved {
                    expected: 0,
                    found: 2
                }
            ),
            "{err}"
        );
        assert_eq!(second.checkpoint().await.unwrap(), 2);
        // From the checkpoint it reads, it goes on.
        second.apply(vec![junk(3)], key, 2).await.unwrap();
        assert_eq!(first.checkpoint().await.unwrap(), 3);
    }

    fn indexes(path: &Path) -> Vec<String> {
        Connection::open(path)
            .unwrap()
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
                 ORDER BY name",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A rebuild into a new file drops the schema's indexes, one in place none; a
    /// writer opening the file after a rebuild that stopped before building them
    /// again creates them.
    #[tokio::test]
    async fn indexes_a_rebuild_dropped_come_back_with_the_next_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rm.sqlite");
        let url = crate::db::sqlite_url(&path);
        let writer = crate::db::open_writer(&url, WriterSizes::REBUILD)
            .await
            .unwrap();
        let schema = indexes(&path);
        assert!(schema.contains(&"secrets_by_name".to_owned()), "{schema:?}");
        let deferred: Vec<String> = crate::db::deferred_indexes()
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(deferred, schema);

        writer.clear(false).await.unwrap();
        assert_eq!(indexes(&path), schema);
        writer.clear(true).await.unwrap();
        assert_eq!(indexes(&path), Vec::<String>::new());
        // A batch still applies without them (and moves the checkpoint).
        let key = Arc::new(CommitKey::new([7; 32]));
        writer.apply(vec![junk(1)], key, 0).await.unwrap();
        drop(writer);

        let again = crate::db::open_writer(&url, WriterSizes::PROJECTOR)
            .await
            .unwrap();
        assert_eq!(indexes(&path), schema);
        assert_eq!(again.checkpoint().await.unwrap(), 1);
    }

    /// No index a rebuild drops is UNIQUE (no write may depend on one), and no
    /// migration after the first rebuild that dropped them drops an index without `IF
    /// EXISTS`: a file a rebuild left without its indexes migrates like any other.
    #[test]
    fn a_rebuilds_indexes_are_not_unique_and_later_migrations_tolerate_their_absence() {
        for (name, sql) in crate::db::deferred_indexes().unwrap() {
            assert!(
                !sql.to_ascii_uppercase().contains("UNIQUE"),
                "{name}: {sql}"
            );
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let file = entry.file_name().into_string().unwrap();
            let version: u32 = file.get(..4).and_then(|v| v.parse().ok()).unwrap_or(0);
            if version <= 14 {
                continue;
            }
            let sql = std::fs::read_to_string(entry.path())
                .unwrap()
                .to_ascii_uppercase();
            assert_eq!(
                sql.matches("DROP INDEX").count(),
                sql.matches("DROP INDEX IF EXISTS").count(),
                "{file}: a rebuild may have left the index out; drop it IF EXISTS"
            );
        }
    }

    /// A rebuild clears every table of the schema (the dialects share one: the
    /// `postgres` tests check it), so no row of another log survives it.
    #[test]
    fn a_rebuild_clears_every_table_of_the_schema() {
        let db = crate::apply::testing::fresh();
        let mut schema: Vec<String> = db
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        schema.sort();
        let mut cleared = TABLES.map(str::to_owned).to_vec();
        cleared.sort();
        assert_eq!(cleared, schema);
    }
}
