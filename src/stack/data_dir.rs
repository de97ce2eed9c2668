//! The data directory: its lock, so one process owns it, and the read model's file.

use std::path::Path;

use anyhow::{Context as _, Result};

/// The read model's file inside the data directory.
pub const READ_MODEL_FILE: &str = "readmodel.sqlite";

/// Held by the one process that owns a data directory (`keyledger up`, or a rebuild
/// that starts the directory's nats-server), so two never share a JetStream store.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the data directory's lock, or says who holds it.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock> {
    let path = data_dir.join("keyledger.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another keyledger is running with the data directory {}; stop it first, or pass \
             another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The default read-model URL for a data directory.
pub fn default_database_url(data_dir: &Path) -> String {
    projections::db::sqlite_url(&data_dir.join(READ_MODEL_FILE))
}
