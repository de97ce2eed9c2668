//! `keyledger audit check-proof`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Check a proof from `audit prove` (a file, or - for standard input) with only the
/// checkpoint public key; no NATS needed.
#[derive(Debug, Args)]
pub struct CheckProof {
    /// The proof.
    file: PathBuf,
    #[command(flatten)]
    keys: crate::cli::proof::PublicKeys,
}

impl CheckProof {
    pub async fn run(self) -> Result<()> {
        let Self { file, keys } = self;
        crate::cli::proof::check(&file, &keys)?;
        Ok(())
    }
}
