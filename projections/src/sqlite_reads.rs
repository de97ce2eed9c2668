//! The SQLite read model's connections for reads, held outside sqlx's pool.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands it every
//! statement through a channel. Its pool also pings that thread whenever a connection
//! goes back (`PoolConnection::return_to_pool`, from a task spawned on drop; no pool
//! option turns it off), so a read of one statement cost two round trips to the
//! connection's thread and a task. `perf` on GetSecretValue at 64 clients put the
//! hand-offs and the parking around them at a third of `keyledger up`'s samples.
//!
//! A SQLite connection needs no such test before each read: it is a file handle that
//! does not go stale, and its thread runs commands in the order they were sent. So a
//! transaction dropped unfinished (its future cancelled) has queued its rollback before
//! the connection is back here, and the next read on it runs after that rollback. Its
//! thread can still stop (a panic, or a cancelled `BEGIN` whose rollback failed), and
//! every command on the connection then fails with `WorkerCrashed`: a read that fails
//! so reports it ([`SqliteReads::failed`]), and every idle connection is dropped, to be
//! opened again as reads need them. (A query already queued when the thread stops
//! sees no rows rather than an error; a read that reports its checkpoint then finds
//! none and is refused as unavailable, one that does not, a look-up by name or
//! reference, answers "none" once.)
//!
//! The last connection back is the first taken again: each connection has a page
//! cache of its own, and the busiest ones keep theirs warm.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a read waits for a connection before it fails as unavailable (503: retry),
/// as sqlx's pool did.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Up to a bound of connections to one SQLite file, opened as reads need them.
#[derive(Clone)]
pub struct SqliteReads(Arc<Inner>);

struct Inner {
    options: SqliteConnectOptions,
    idle: Mutex<Vec<SqliteConnection>>,
    /// One permit per connection that may be open; closed by [`SqliteReads::close`].
    permits: Arc<Semaphore>,
    max: u32,
}

impl fmt::Debug for SqliteReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteReads")
            .field("file", &self.0.options.get_filename())
            .field("max", &self.0.max)
            .finish_non_exhaustive()
    }
}

impl SqliteReads {
    /// At most `max` (at least 1) connections opened with `options`; `first`, opened
    /// with them, is the first one held.
    pub(crate) fn new(options: SqliteConnectOptions, max: u32, first: SqliteConnection) -> Self {
        let max = max.max(1);
        Self(Arc::new(Inner {
            options,
            idle: Mutex::new(vec![first]),
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
        }))
    }

    /// A connection, once one is free (or may be opened); `PoolTimedOut` when none is
    /// within [`ACQUIRE_TIMEOUT`].
    pub async fn acquire(&self) -> Result<Held, sqlx::Error> {
        let permit =
            tokio::time::timeout(ACQUIRE_TIMEOUT, Arc::clone(&self.0.permits).acquire_owned())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?
                .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.0.lock_idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.0.options.connect().await?,
        };
        Ok(Held {
            conn: Some(conn),
            home: Arc::clone(&self.0),
            _permit: permit,
        })
    }

    /// A read on a connection from here failed with `error`. If it says the
    /// connection's thread is gone, every idle connection is dropped (the failed one is
    /// among them), and reads open new ones.
    pub fn failed(&self, error: &sqlx::Error) {
        if matches!(error, sqlx::Error::WorkerCrashed) {
            tracing::warn!(%error, "a read connection's thread is gone; opening new ones");
            // Dropped after the lock: closing the dead one's handle happens here.
            let idle = std::mem::take(&mut *self.0.lock_idle());
            drop(idle);
        }
    }

    /// Closes every idle connection; one in use is dropped (which closes it) when it
    /// is given back, without being waited for. No read acquires one after this.
    pub async fn close(&self) {
        let idle = {
            let mut idle = self.0.lock_idle();
            self.0.permits.close();
            std::mem::take(&mut *idle)
        };
        for conn in idle {
            if let Err(error) = sqlx::Connection::close(conn).await {
                tracing::debug!(%error, "closing a read connection");
            }
        }
    }
}

impl Inner {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<SqliteConnection>> {
        // Nothing panics while holding the lock; a poisoned one still holds a valid list.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection taken from [`SqliteReads`]; it goes back when dropped.
pub struct Held {
    conn: Option<SqliteConnection>,
    home: Arc<Inner>,
    // Released after the connection is back (fields drop after `drop`).
    _permit: OwnedSemaphorePermit,
}

impl Deref for Held {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.conn.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("held until dropped")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // After `close`, a connection given back is dropped, which ends its thread.
        // Checked under the lock `close` empties the list with, so none is pushed
        // after it.
        let mut idle = self.home.lock_idle();
        if !self.home.permits.is_closed() {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;
    use std::str::FromStr;

    async fn reads(max: u32) -> (tempfile::TempDir, SqliteReads) {
        let dir = tempfile::tempdir().unwrap();
        let options =
            SqliteConnectOptions::from_str(&crate::db::sqlite_url(&dir.path().join("r.sqlite")))
                .unwrap()
                .create_if_missing(true);
        let first = options.connect().await.unwrap();
        (dir, SqliteReads::new(options, max, first))
    }

    /// A transaction dropped unfinished leaves nothing open for the next read on
    /// its connection: its rollback runs first.
    #[tokio::test]
    async fn a_transaction_dropped_unfinished_is_rolled_back_before_the_next_read() {
        let (_dir, reads) = reads(1).await;
        let mut conn = reads.acquire().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *conn)
            .await
            .unwrap();
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        drop(tx);
        drop(conn);
        // The rollback may still be queued; the next statement runs after it.
        let mut again = reads.acquire().await.unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *again)
            .await
            .unwrap();
        assert_eq!(rows, 0);
        // And a new transaction begins as one, not as a savepoint of the old.
        let tx = sqlx::Connection::begin(&mut *again).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// No more than the bound are open at once; a reader waits for one to come back,
    /// and after `close` none is given out.
    #[tokio::test]
    async fn the_bound_holds_and_close_refuses_further_reads() {
        let (_dir, reads) = reads(2).await;
        let a = reads.acquire().await.unwrap();
        let b = reads.acquire().await.unwrap();
        // Polled once: a free connection would be given at once.
        assert!(
            reads.acquire().now_or_never().is_none(),
            "a third connection was given out"
        );
        drop(a);
        let c = reads.acquire().await.unwrap();
        drop((b, c));
        assert_eq!(reads.0.lock_idle().len(), 2);
        reads.close().await;
        assert!(matches!(
            reads.acquire().await,
            Err(sqlx::Error::PoolClosed)
        ));
        assert!(reads.0.lock_idle().is_empty());
    }

    /// A read that finds its connection's thread gone drops the idle connections; a
    /// failed statement does not.
    #[tokio::test]
    async fn a_dead_connection_is_not_given_out_again() {
        let (_dir, reads) = reads(2).await;
        drop((
            reads.acquire().await.unwrap(),
            reads.acquire().await.unwrap(),
        ));
        let bad_sql = sqlx::query("SELECT * FROM nowhere")
            .execute(&mut *reads.acquire().await.unwrap())
            .await
            .unwrap_err();
        reads.failed(&bad_sql);
        assert_eq!(reads.0.lock_idle().len(), 2);
        reads.failed(&sqlx::Error::WorkerCrashed);
        assert!(reads.0.lock_idle().is_empty());
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *reads.acquire().await.unwrap())
            .await
            .unwrap();
        assert_eq!(one, 1, "a new connection is opened");
    }
}
