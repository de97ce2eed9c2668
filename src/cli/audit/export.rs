//! `keyledger audit export`.

use std::io::Write as _;

use crate::cli::export_format::ExportLine;
use anyhow::Result;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;

use super::Source;
use crate::cli::auditor::connect;

/// Write the signed checkpoints ({checkpoint: note}) and the whole log ({seq,
/// subject, commit: base64}) as JSON lines, to verify a copy elsewhere.
#[derive(Debug, Args)]
pub struct Export {
    #[command(flatten)]
    source: Source,
}

impl Export {
    pub async fn run(self) -> Result<()> {
        let Self { source } = self;
        let js = connect(&source.nats_url).await?;
        // Checkpoints first: the log read after them covers every one.
        let checkpoints = commands::log::checkpoints::read_all(&js, &source.log.stream).await?;
        let mut out = std::io::stdout().lock();
        for (_, note) in checkpoints {
            let line = ExportLine::Checkpoint { checkpoint: note };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        }
        infra::audit::read_log(&js, &source.log.stream, None, 1, |m| {
            let line = ExportLine::Commit {
                commit: B64.encode(&m.payload),
                seq: m.seq,
                subject: m.subject,
            };
            serde_json::to_string(&line).is_ok_and(|line| writeln!(out, "{line}").is_ok())
        })
        .await?;
        Ok(())
    }
}
