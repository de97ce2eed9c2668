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
//! the writer goes on, then, if the WAL holds more than [`RESTART_PAGES`] and the
//! passive run could not copy all of it, `RESTART`, which takes the writer's lock,
//! copies what the passive run had not, waits for readers on older snapshots, and
//! lets the writer's next commit start the WAL again from its beginning. It holds the
//! writer back for that copy and at most [`RESTART_WAIT`] of waiting. (`PASSIVE` alone
//! rarely catches up with a projector under steady load: an earlier attempt without
//! `RESTART` saw the WAL grow without bound.) The writer keeps its own auto-checkpoint,
//! at a larger size, as the bound should this thread fall behind.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::writer::WriteError;

/// The least time between two checkpoints: each costs two syncs, and a page written
/// several times in between is copied once.
const INTERVAL: Duration = Duration::from_millis(250);

/// WAL pages (of 4 KiB) beyond which a checkpoint restarts the WAL: 16 MiB.
const RESTART_PAGES: i64 = 4096;

/// How long a restarting checkpoint may hold the writer back: it waits, holding the
/// writer's lock, for readers on older snapshots (a long listing) to finish. Past
/// this it gives up until the next round, and the writer's own auto-checkpoint stays
/// the bound.
const RESTART_WAIT: Duration = Duration::from_millis(50);

/// Wakes the checkpoint thread. Dropping it ends the thread and waits for it, so that
/// the writer's connection, closed after it, is the last one and removes the WAL.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the (WAL-mode) database at `path`.
    pub(crate) fn start(path: &Path) -> Result<Self, WriteError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(RESTART_WAIT)?;
        let (wake, woken) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("keyledger-wal".into())
            .spawn(move || run(&conn, &woken))
            .map_err(WriteError::Thread)?;
        Ok(Self {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint: after a commit, cheap, never blocks.
    pub(crate) fn committed(&self) {
        if let Some(wake) = &self.wake {
            // Full: a checkpoint is asked for already. Disconnected: the thread ended.
            let _: Result<(), TrySendError<()>> = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            // It ends at once unless a checkpoint is running.
            let _ = thread.join();
        }
    }
}

/// Checkpoints after wake-ups, at most once every [`INTERVAL`], until the writer is
/// gone.
fn run(conn: &Connection, woken: &Receiver<()>) {
    let mut asked = woken.recv().is_ok();
    while asked {
        let started = Instant::now();
        if let Err(e) = checkpoint(conn) {
            // The writer's own auto-checkpoint still bounds the WAL.
            tracing::warn!(error = %e, "checkpointing the read model's WAL failed");
        }
        // A wake-up meanwhile is served at the interval's end, not lost; the writer's
        // end is not waited for.
        asked = false;
        while let Some(rest) = INTERVAL.checked_sub(started.elapsed()) {
            match woken.recv_timeout(rest) {
                Ok(()) => asked = true,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        if !asked {
            asked = woken.recv().is_ok();
        }
    }
}

/// One round: copy what the WAL holds while the writer goes on; if that left a large
/// WAL not wholly copied (the writer went on meanwhile), restart it. A WAL copied
/// whole is started again by the writer's next commit without help.
fn checkpoint(conn: &Connection) -> Result<(), rusqlite::Error> {
    let (_, log, copied) = pragma_checkpoint(conn, "PASSIVE")?;
    if log > RESTART_PAGES && copied < log {
        let (busy, _, _) = pragma_checkpoint(conn, "RESTART")?;
        if busy != 0 {
            tracing::debug!("restarting the read model's WAL waited too long; next round");
        }
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
        // The writer goes on without a pause; within a deadline, one of its commits
        // starts the WAL again after the thread's checkpoints. (Without the thread
        // this fails; with `PASSIVE` alone it passes too: this small writer leaves
        // the passive run moments to catch up, which the projector under load does
        // not.)
        let deadline = Instant::now() + Duration::from_secs(30);
        while wal_salt(&path) == first {
            assert!(Instant::now() < deadline, "the WAL was never started again");
            write(1);
        }
        let rows = id;
        // The thread ends with the checkpointer, before the writer's connection
        // closes: that one is then the last, and removes the WAL as it closes.
        drop(wal);
        drop(writer);
        let mut wal_file = path.as_os_str().to_owned();
        wal_file.push("-wal");
        assert!(
            !Path::new(&wal_file).exists(),
            "the WAL outlived the writer's connection"
        );
        let reader = Connection::open(&path).unwrap();
        let found: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(found, rows);
    }
}
