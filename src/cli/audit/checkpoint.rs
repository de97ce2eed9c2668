//! `keyledger audit checkpoint`.

use anyhow::Result;
use clap::Args;

use crate::cli::LogArgs;

/// Print the latest signed checkpoint, to keep: a later `verify --checkpoint FILE`
/// shows the log still holds what it held then.
#[derive(Debug, Args)]
pub struct Checkpoint {
    /// NATS URL (an account that may read the checkpoint stream).
    #[arg(long, env = "KEYLEDGER_NATS_URL")]
    nats_url: String,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    keys: crate::cli::proof::PublicKeys,
}

impl Checkpoint {
    pub async fn run(self) -> Result<()> {
        let Self {
            nats_url,
            log,
            keys,
        } = self;
        print!(
            "{}",
            crate::cli::proof::latest(&nats_url, &log.stream, &keys).await?
        );
        Ok(())
    }
}
