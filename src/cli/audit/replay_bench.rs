//! `keyledger audit replay-bench`.

use anyhow::Result;
use clap::Args;

use super::Source;

/// Measure replay: append N synthetic events straight to the stream, then verify
/// and replay the whole stream, reporting events per second. Use a scratch data
/// directory: the events stay.
#[derive(Debug, Args)]
pub struct ReplayBench {
    #[command(flatten)]
    source: Source,
    #[command(flatten)]
    data: crate::cli::DataDirArgs,
    #[command(flatten)]
    commit_key: crate::cli::CommitKeyArgs,
    /// Events to append.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Secrets they are spread over.
    #[arg(long, default_value_t = 10_000)]
    aggregates: u64,
}

impl ReplayBench {
    pub async fn run(self) -> Result<()> {
        let Self {
            source,
            data,
            commit_key,
            events,
            aggregates,
        } = self;
        crate::cli::replay_bench::run(
            &source.nats_url,
            &source.log.stream,
            commit_key.load_or_create(&data)?,
            events,
            aggregates,
        )
        .await?;
        Ok(())
    }
}
