//! `keyledger audit state`.

use anyhow::{Result, bail};
use clap::Args;
use domain::subject::events_filter;

use super::{Source, time};
use crate::cli::auditor::connect;

/// The state of a project (or of one secret, container or order) as it was at a
/// time or sequence, rebuilt by replaying the log up to there. With --id and
/// --readers: who could read that secret then.
#[derive(Debug, Args)]
pub struct State {
    #[command(flatten)]
    source: Source,
    #[command(flatten)]
    trust: crate::cli::trust::TrustArgs,
    /// An RFC 3339 time, or a stream sequence.
    #[arg(long)]
    at: String,
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Only this secret, container or order (its id).
    #[arg(long)]
    id: Option<String>,
    /// Say who could read the secret (--id) at that point, and why.
    #[arg(long, requires = "id")]
    readers: bool,
    /// Say what this user could read at that point, and why.
    #[arg(long, value_name = "USER", conflicts_with = "readers")]
    readable_by: Option<String>,
}

impl State {
    pub async fn run(self) -> Result<()> {
        let Self {
            source,
            trust,
            at,
            project,
            id,
            readers,
            readable_by,
        } = self;
        let (until_seq, until_time) = match at.parse::<u64>() {
            Ok(seq) => (Some(seq), None),
            Err(_) => (None, time("--at", Some(at.clone()))?),
        };
        let subject = events_filter(project.as_deref(), None, id.as_deref());
        let js = connect(&source.nats_url).await?;
        let mut trust = crate::cli::trust::Trust::load(&trust, &js, &source.log.stream).await?;
        let mut replay = crate::cli::replay::Replay::default();
        let progress = crate::cli::progress::Progress::new("replayed");
        let mut failed = None;
        infra::audit::read_log(&js, &source.log.stream, Some(subject), 1, |m| {
            if until_seq.is_some_and(|s| m.seq > s) {
                return false;
            }
            match replay.apply(m.seq, &m.subject, &m.payload, until_time, &mut trust) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    failed = Some(format!("sequence {}: {e}", m.seq));
                    return false;
                }
            }
            progress.at(replay.commits);
            true
        })
        .await?;
        progress.done();
        if let Some(why) = failed {
            bail!("the log holds a commit that does not read: {why}; run keyledger audit verify");
        }
        let printed = if let Some(user) = readable_by {
            serde_json::to_string_pretty(&replay.readable_by(&user, until_time))?
        } else if readers {
            let id = id.unwrap_or_default();
            let readers = replay
                .readers(&id, until_time)
                .ok_or_else(|| anyhow::anyhow!("no secret {id} existed at {at}"))?;
            serde_json::to_string_pretty(&readers)?
        } else {
            serde_json::to_string_pretty(&replay.state())?
        };
        println!("{printed}");
        Ok(())
    }
}
