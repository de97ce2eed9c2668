//! `keyledger audit`: the history and the integrity of the log, read
//! from NATS directly (no keyledger service in between, nothing to trust but the log).

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use domain::timestamp::Timestamp;

use super::LogArgs;

/// Where the log is.
#[derive(Debug, Clone, Args)]
pub struct Source {
    /// NATS URL of the event stream (an account that may read it), e.g.
    /// nats://keyledger:PASSWORD@127.0.0.1:4222 for `keyledger up`'s server.
    #[arg(long, env = "KEYLEDGER_NATS_URL")]
    pub nats_url: String,
    #[command(flatten)]
    pub log: LogArgs,
}

mod access;
mod check_proof;
mod checkpoint;
mod export;
mod log;
mod prove;
mod replay_bench;
mod state;
mod verify;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Who did what, when: every event, filtered; a table, or JSON lines with --json.
    Log(log::Log),
    /// Who read which payload, when, from where, and whether it was allowed: the access
    /// records, filtered; a table, or JSON lines with --json.
    Access(access::Access),
    /// The state of a project (or of one secret, container or order) as it was at a
    /// time or sequence, rebuilt by replaying the log up to there. With --id and
    /// --readers: who could read that secret then.
    State(state::State),
    /// Measure replay: append N synthetic events straight to the stream, then verify
    /// and replay the whole stream, reporting events per second. Use a scratch data
    /// directory: the events stay.
    ReplayBench(replay_bench::ReplayBench),
    /// Write the signed checkpoints ({checkpoint: note}) and the whole log ({seq,
    /// subject, commit: base64}) as JSON lines, to verify a copy elsewhere.
    Export(export::Export),
    /// Check every commit's hash, every aggregate's chain and the sequence's continuity,
    /// and the log against every signed checkpoint (with --public-key); name the first
    /// bad sequence and every message keyledger did not write. Exits non-zero on
    /// failure, or when foreign messages are found that --accept-foreign does not list.
    Verify(verify::Verify),
    /// Print the latest signed checkpoint, to keep: a later `verify --checkpoint FILE`
    /// shows the log still holds what it held then.
    Checkpoint(checkpoint::Checkpoint),
    /// Print, as JSON, a proof that the commit at SEQUENCE is in the log the latest
    /// checkpoint signs; `audit check-proof` checks it with only the public key.
    Prove(prove::Prove),
    /// Check a proof from `audit prove` (a file, or - for standard input) with only the
    /// checkpoint public key; no NATS needed.
    CheckProof(check_proof::CheckProof),
}

/// A list of sequences and ranges, e.g. `17,40-42`, given as `flag`.
fn sequences(flag: &str, list: Option<String>) -> Result<domain::checkpoint::Foreign> {
    let Some(list) = list else {
        return Ok(Default::default());
    };
    domain::checkpoint::Foreign::parse(&list).with_context(|| {
        format!("{flag} {list:?}: give ascending sequences and ranges, e.g. 17,40-42")
    })
}

fn time(field: &str, s: Option<String>) -> Result<Option<Timestamp>> {
    s.map(|s| Timestamp::parse_iso8601(field, &s).map_err(|r| anyhow::anyhow!(r.message)))
        .transpose()
}

pub async fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Log(c) => c.run().await,
        AuditCommand::Access(c) => c.run().await,
        AuditCommand::State(c) => c.run().await,
        AuditCommand::ReplayBench(c) => c.run().await,
        AuditCommand::Export(c) => c.run().await,
        AuditCommand::Verify(c) => c.run().await,
        AuditCommand::Checkpoint(c) => c.run().await,
        AuditCommand::Prove(c) => c.run().await,
        AuditCommand::CheckProof(c) => c.run().await,
    }
}
