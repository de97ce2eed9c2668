//! The SQLite read model's WAL checkpoints, taken off the projector's path.
//!
//! With `synchronous=NORMAL` a commit writes the WAL and syncs nothing; the cost
//! comes at a checkpoint, which syncs the WAL, copies its pages into the database and
//! syncs that. Run by the projector's own commit (SQLite's auto-checkpoint), it held
//! every read-your-writes waiter: with the WAL checkpointed at 64 MiB, under 16 HTTP
//! clients creating, one checkpoint took about 215 ms (`strace`: 154 ms syncing the
//! WAL, 60 ms the database) every second or two, and HTTP creates had a p99 of 231 ms
//! while the commands themselves stayed under 25 ms.
//!
//! So a thread of its own, on a connection of its own, checkpoints after the writer's
//! commits, at most every [`INTERVAL`]: first `PASSIVE`, which copies and syncs while
//! the writer goes on, then, once the WAL holds more than [`RESTART_PAGES`], `RESTART`,
//! which waits for the writer's transaction to end and holds the next one back only
//! while it copies what the passive run had not, so that the writer starts the WAL
//! again from its beginning. (`PASSIVE` alone never catches up with a writer that
//! never pauses, and the WAL would grow without bound.) The writer keeps its own
//! auto-checkpoint, at a larger size, as the bound should this thread fall behind.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::writer::WriteError;

/// The least time between two checkpoints: each costs two syncs, and a page written
/// several times in between is copied once.
const INTERVAL: Duration = Duration::from_millis(250);

/// WAL pages (of 4 KiB) beyond which a checkpoint restarts the WAL: 16 MiB.
const RESTART_PAGES: i64 = 4096;

/// How long a restarting checkpoint waits for the writer's transaction and readers
/// on older snapshots before it gives up until the next round.
const RESTART_WAIT: Duration = Duration::from_secs(2);

/// Wakes the checkpoint thread; the thread ends once this is dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Starts checkpointing the (WAL-mode) database at `path`.
    pub(crate) fn start(path: &Path) -> Result<Self, WriteError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(RESTART_WAIT)?;
        let (wake, woken) = sync_channel(1);
        std::thread::Builder::new()
            .name("keyledger-wal".into())
            .spawn(move || run(&conn, &woken))
            .map_err(|e| WriteError::Stopped(format!("starting the WAL checkpoint thread: {e}")))?;
        Ok(Self { wake })
    }

    /// Asks for a checkpoint: after a commit, cheap, never blocks.
    pub(crate) fn committed(&self) {
        // Full: a checkpoint is asked for already. Disconnected: the thread ended.
        let _: Result<(), TrySendError<()>> = self.wake.try_send(());
    }
}

/// Checkpoints once per wake-up, at most every [`INTERVAL`], until the writer is gone.
fn run(conn: &Connection, woken: &Receiver<()>) {
    while woken.recv().is_ok() {
        let started = Instant::now();
        if let Err(e) = checkpoint(conn) {
            // The writer's own auto-checkpoint still bounds the WAL.
            tracing::warn!(error = %e, "checkpointing the read model's WAL failed");
        }
        std::thread::sleep(INTERVAL.saturating_sub(started.elapsed()));
    }
}

/// One round: copy what the WAL holds while the writer goes on, then restart the WAL
/// if it has grown large.
fn checkpoint(conn: &Connection) -> Result<(), rusqlite::Error> {
    let (_, log, _) = pragma_checkpoint(conn, "PASSIVE")?;
    if log > RESTART_PAGES {
        pragma_checkpoint(conn, "RESTART")?;
    }
    Ok(())
}

/// `PRAGMA wal_checkpoint(mode)`: whether it was blocked, the WAL's frames, and the
/// frames checkpointed.
fn pragma_checkpoint(conn: &Connection, mode: &str) -> Result<(i64, i64, i64), rusqlite::Error> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL header's first salt, which SQLite changes each time a writer starts
    /// the WAL again from its beginning.
    fn wal_salt(path: &Path) -> [u8; 4] {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let bytes = std::fs::read(wal).unwrap();
        bytes[16..20].try_into().unwrap()
    }

    #[test]
    fn a_growing_wal_is_checkpointed_and_started_again_off_the_writers_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rm.sqlite");
        let writer = Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.pragma_update(None, "synchronous", "NORMAL").unwrap();
        // The writer never checkpoints by itself here: only the thread does.
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)", [])
            .unwrap();
        let wal = Checkpointer::start(&path).unwrap();
        let first = wal_salt(&path);

        // 24 MiB of pages, past the size at which the WAL is started again.
        let blob = vec![7u8; 64 * 1024];
        let mut id = 0;
        let mut write = |rows: usize| {
            let tx = writer.unchecked_transaction().unwrap();
            for _ in 0..rows {
                id += 1;
                tx.execute("INSERT INTO t VALUES (?1, ?2)", (id, &blob))
                    .unwrap();
            }
            tx.commit().unwrap();
            wal.committed();
        };
        for _ in 0..48 {
            write(8);
        }
        // The writer goes on without a pause (a passive checkpoint alone would never
        // catch up with it); within a deadline, one of its commits starts the WAL again
        // after the thread's restarting checkpoint.
        let deadline = Instant::now() + Duration::from_secs(30);
        while wal_salt(&path) == first {
            assert!(Instant::now() < deadline, "the WAL was never started again");
            write(1);
        }
        // Every row is there, read by a connection of its own.
        let reader = Connection::open(&path).unwrap();
        let rows: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, id);
    }
}
