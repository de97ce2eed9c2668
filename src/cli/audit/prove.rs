//! `keyledger audit prove`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Source;

/// Print, as JSON, a proof that the commit at SEQUENCE is in the log the latest
/// checkpoint signs; `audit check-proof` checks it with only the public key.
#[derive(Debug, Args)]
pub struct Prove {
    #[command(flatten)]
    source: Source,
    /// The commit's stream sequence.
    sequence: u64,
    #[command(flatten)]
    keys: crate::cli::proof::PublicKeys,
    /// Prove against this saved checkpoint instead of the latest.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
}

impl Prove {
    pub async fn run(self) -> Result<()> {
        let Self {
            source,
            sequence,
            keys,
            checkpoint,
        } = self;
        crate::cli::proof::prove(
            &source.nats_url,
            &source.log.stream,
            sequence,
            &keys,
            checkpoint,
        )
        .await?;
        Ok(())
    }
}
