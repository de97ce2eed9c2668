//! The projector's own connection to a SQLite read model.
//!
//! sqlx runs each SQLite statement on a worker thread and wakes the calling task after
//! every one. The projector runs several statements per commit, and those hand-offs
//! cost more than the statements: `perf` on a rebuild showed about 70% of its time in
//! futex wake-ups and context switches. So the single writer holds a synchronous
//! connection (rusqlite) and applies a whole batch, checkpoint included, in one
//! blocking call: one hand-off per batch, each statement prepared once and cached.
//! Readers keep their sqlx pool; WAL lets them read while the writer writes.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use domain::commit::CommitKey;
use rusqlite::{Connection, TransactionBehavior};

use crate::apply::{applied, apply, set_checkpoint};

/// Every table the projection writes, cleared by a rebuild.
const TABLES: [&str; 14] = [
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

/// The page cache of a projector serving reads beside it, in KiB (the read model's hot
/// indexes for about a million secrets).
pub const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// The page cache of `keyledger projections rebuild`, in KiB: a rebuild dirties pages
/// all over the read model, and with 64 MiB a rebuild of a million secrets spent a
/// third of its time re-reading and spilling pages (172 s; 141 s with this, at a peak
/// RSS of 600 MB instead of 417 MB). A rebuild is a process of its own and ends.
pub const REBUILD_CACHE_KIB: i64 = 512 * 1024;

/// The size the WAL file is trimmed to once a checkpoint has reset it, in bytes.
const WAL_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

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
    /// SQLite failed.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
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
    /// The blocking task running the writes panicked or was cancelled.
    #[error("the read model writer stopped: {0}")]
    Stopped(String),
}

/// The read model's single writer.
#[derive(Clone)]
pub struct Writer {
    conn: Arc<Mutex<Connection>>,
}

impl Writer {
    /// Opens the (already migrated) SQLite database at `path` for writing, with a page
    /// cache of `cache_kib` KiB.
    pub fn open(path: &Path, cache_kib: i64) -> Result<Self, WriteError> {
        let conn = Connection::open(path)?;
        // As the read model's sqlx pool (db::open): with WAL, NORMAL keeps the file
        // consistent across crashes; a lost tail is re-applied from the log.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // SQLite's default page cache (2 MiB) makes every index probe of a large read
        // model a read() of a page the OS holds anyway; the writer keeps its own.
        conn.pragma_update(None, "cache_size", -cache_kib)?;
        // A batch of 8,192 commits can grow the WAL by hundreds of MiB (a rebuild of a
        // million secrets left a 303 MB WAL), and SQLite keeps the file at its largest
        // size unless told otherwise: after a checkpoint resets it, trim it.
        conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES)?;
        // Every statement the projection runs stays prepared.
        conn.set_prepared_statement_cache_capacity(128);
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection in a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, WriteError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic mid-transaction rolled it back (the transaction is dropped), so
            // the connection is still sound.
            let mut conn = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| WriteError::Stopped(e.to_string()))?
        .map_err(WriteError::from)
    }

    /// The sequence the read model has applied (0: nothing yet).
    pub async fn checkpoint(&self) -> Result<u64, WriteError> {
        self.with(|conn| applied(conn)).await
    }

    /// Applies `commits` (in stream order, following the checkpoint `after`) and moves
    /// the checkpoint to the last one, in one transaction. If the checkpoint is no
    /// longer `after`, another writer has moved it: nothing is written.
    pub async fn apply(
        &self,
        commits: Vec<Stored>,
        key: Arc<CommitKey>,
        after: u64,
    ) -> Result<(), WriteError> {
        let Some(last) = commits.last().map(|c| c.seq) else {
            return Ok(());
        };
        let moved = self
            .with(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                // Commits applied twice would be judged replays and hidden from the
                // history: a second writer (a lock that did not hold, a projector
                // whose last batch outlived its lock) must never apply them again.
                let found = applied(&tx)?;
                if found != after {
                    return Ok(Some(found));
                }
                for c in &commits {
                    apply(&tx, c.seq, &c.subject, &c.payload, &key)?;
                }
                set_checkpoint(&tx, last)?;
                tx.commit().map(|()| None)
            })
            .await?;
        match moved {
            None => Ok(()),
            Some(found) => Err(WriteError::CheckpointMoved {
                expected: after,
                found,
            }),
        }
    }

    /// Removes every row and the checkpoint, in one transaction.
    pub async fn clear(&self) -> Result<(), WriteError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            for table in TABLES {
                tx.execute(&format!("DELETE FROM {table}"), [])?;
            }
            tx.commit()
        })
        .await
    }
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
        let first = crate::db::open_writer(&url, 1024).await.unwrap();
        let second = crate::db::open_writer(&url, 1024).await.unwrap();
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
}
