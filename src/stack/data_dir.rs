//! The data directory: its lock, so one process owns it, and the read model's file.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

/// The read model's file inside the data directory.
pub const READ_MODEL_FILE: &str = "readmodel.sqlite";

/// The marker of a restore that runs or did not finish (`keyledger restore`): keyledger
/// refuses to start on a log that is only partly there.
pub const RESTORE_MARKER: &str = "RESTORE-INCOMPLETE";

/// Refuses a data directory a restore did not finish.
pub fn check_restored(data_dir: &Path) -> Result<()> {
    if data_dir.join(RESTORE_MARKER).exists() {
        anyhow::bail!(
            "{} holds a restore that did not finish ({} is there): its log may be partial. \
             Restore the backup into a new, empty data directory",
            data_dir.display(),
            RESTORE_MARKER
        );
    }
    Ok(())
}

/// Held by the one process that owns a data directory (`keyledger up`, or a rebuild
/// that starts the directory's nats-server), so two never share a JetStream store.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// How long a taken lock is waited for before it counts as held by another keyledger.
///
/// A lock can stay taken for a moment after its owner let go: a process this one (or
/// the one before it) forks shares the lock's open file until the child execs, and a
/// keyledger that is stopping releases it only as it exits. Waiting this long turns
/// those moments into a short pause instead of a false "another keyledger is running".
const LOCK_GRACE: Duration = Duration::from_secs(3);

/// Takes the data directory's lock, or says who holds it.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock> {
    let path = data_dir.join("keyledger.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let deadline = Instant::now() + LOCK_GRACE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(DataDirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another keyledger is running with the data directory {}; stop it first, or \
                 pass another --data-dir",
                data_dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

/// The default read-model URL for a data directory.
pub fn default_database_url(data_dir: &Path) -> String {
    projections::db::sqlite_url(&data_dir.join(READ_MODEL_FILE))
}
