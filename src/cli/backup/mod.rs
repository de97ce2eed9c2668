//! `keyledger backup` and `keyledger restore`: the event stream, the checkpoints, the
//! access records and the key store, captured while keyledger runs into one file of
//! JSON lines, and published again into a fresh data directory's nats-server.
//!
//! Consistency comes from the order of capture. Checkpoints first, then the events,
//! so that every checkpoint captured covers only captured events; the key store last,
//! so that it holds the data key of every captured commit (a data key is stored before
//! the commit that names it). The key store may also hold keys of commits made during
//! the backup, which no captured commit names, and lacks keys destroyed during it.
//!
//! The file holds wrapped data keys, never a KEK or a plaintext: it is as secret as the
//! key store. The key files (`kek.key`, `commit.key`, `checkpoint.key`,
//! `token-hs256.key`) are not in it; the operator keeps them apart and puts them in the
//! new data directory.

mod restore;
mod take;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

pub use restore::run as restore;
pub use take::run as backup;

use super::DataDirArgs;

/// The version of the file's format.
const FORMAT: u32 = 1;

/// The key-store bucket's stream.
fn key_stream() -> String {
    format!("KV_{}", infra::log::KEY_BUCKET)
}

/// One line of a backup file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    /// The first line.
    Header {
        format: u32,
        /// When the capture began (RFC 3339).
        taken_at: String,
        /// The event stream's name.
        event_stream: String,
    },
    /// One message of a stream, as stored.
    Message {
        stream: String,
        seq: u64,
        subject: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<(String, String)>,
        /// The payload, base64.
        data: String,
    },
    /// The last line: how many messages of each stream the file holds. A file without
    /// it was cut short.
    End { counts: BTreeMap<String, u64> },
}

/// `keyledger backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// NATS URL with keyledger's service credentials (the key store is readable by
    /// that account only), e.g. nats://keyledger:$(cat .keyledger/nats-service.key)@127.0.0.1:4222.
    #[arg(long, env = "KEYLEDGER_NATS_URL", hide_env_values = true)]
    pub nats_url: String,
    #[command(flatten)]
    pub log: super::LogArgs,
    /// The file to write (created; an existing file is refused).
    #[arg(long)]
    pub out: PathBuf,
}

/// `keyledger restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// The backup file.
    #[arg(long)]
    pub from: PathBuf,
    /// The nats-server binary for the data directory's server.
    #[arg(long)]
    pub nats_server_bin: Option<PathBuf>,
}
