//! `keyledger audit verify`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::sequences;
use crate::cli::LogArgs;
use crate::cli::auditor::connect;

/// Check every commit's hash, every aggregate's chain and the sequence's continuity,
/// and the log against every signed checkpoint (with --public-key); name the first
/// bad sequence and every message keyledger did not write. Exits non-zero on
/// failure, or when foreign messages are found that --accept-foreign does not list.
#[derive(Debug, Args)]
pub struct Verify {
    /// NATS URL of the event stream.
    #[arg(long, env = "KEYLEDGER_NATS_URL", required_unless_present = "file")]
    nats_url: Option<String>,
    #[command(flatten)]
    log: LogArgs,
    /// Verify an export instead of the live stream.
    #[arg(long)]
    file: Option<PathBuf>,
    #[command(flatten)]
    keys: crate::cli::proof::PublicKeys,
    /// A checkpoint saved earlier (keyledger audit checkpoint > FILE) that the log
    /// must still match; repeatable.
    #[arg(long = "checkpoint", value_name = "FILE")]
    checkpoints: Vec<PathBuf>,
    /// The commit key file (keyledger's commit.key), to check every commit's
    /// authenticator; without it, foreign messages are known from the checkpoints.
    #[arg(long, env = "KEYLEDGER_COMMIT_KEY_FILE")]
    commit_key_file: Option<PathBuf>,
    /// Foreign messages already investigated, e.g. 17,40-42: found, they are
    /// reported but do not fail the verification.
    #[arg(long, value_name = "SEQUENCES")]
    accept_foreign: Option<String>,
    /// Checkpoints not signed by a trusted key, already investigated (their
    /// sequences in the checkpoint stream, or numbers in an export).
    #[arg(long, value_name = "SEQUENCES")]
    accept_foreign_checkpoints: Option<String>,
}

impl Verify {
    pub async fn run(self) -> Result<()> {
        let Self {
            nats_url,
            log,
            file,
            keys,
            checkpoints,
            commit_key_file,
            accept_foreign,
            accept_foreign_checkpoints,
        } = self;
        let origin = match (file, nats_url) {
            (Some(path), _) => crate::cli::verify::Origin::File(path),
            (None, Some(url)) => crate::cli::verify::Origin::Nats {
                js: Box::new(connect(&url).await?),
                stream: log.stream,
            },
            (None, None) => bail!("give --nats-url or --file"),
        };
        let trust = crate::cli::verify::Trusted {
            keys,
            saved: checkpoints,
            commit_key: commit_key_file
                .as_deref()
                .map(infra::keyfile::existing_commit_key)
                .transpose()?,
            accepted: sequences("--accept-foreign", accept_foreign)?,
            accepted_checkpoints: sequences(
                "--accept-foreign-checkpoints",
                accept_foreign_checkpoints,
            )?,
        };
        crate::cli::verify::run(origin, &trust).await?;
        Ok(())
    }
}
