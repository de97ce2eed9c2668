//! `keyledger audit log`.

use std::io::Write as _;

use anyhow::{Result, bail};
use clap::Args;
use domain::audit::{HistoryFilter, RawEvent};
use domain::subject::events_filter;

use super::{Source, time};
use crate::cli::auditor::connect;

/// Who did what, when: every event, filtered; a table, or JSON lines with --json.
#[derive(Debug, Args)]
pub struct Log {
    #[command(flatten)]
    source: Source,
    #[command(flatten)]
    trust: crate::cli::trust::TrustArgs,
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Only this secret, container or order (its id).
    #[arg(long)]
    id: Option<String>,
    /// Only commits by this actor (a user, or system:scheduler, system:order worker).
    #[arg(long)]
    actor: Option<String>,
    /// Only events of this type, e.g. secret.acl_set.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Only commits at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only commits before this RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// Only sequences from this one.
    #[arg(long)]
    from_seq: Option<u64>,
    /// Only sequences up to this one.
    #[arg(long)]
    to_seq: Option<u64>,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

impl Log {
    pub async fn run(self) -> Result<()> {
        let Self {
            source,
            trust,
            project,
            id,
            actor,
            event_type,
            since,
            until,
            from_seq,
            to_seq,
            json,
        } = self;
        let filter = HistoryFilter {
            actor,
            event_type,
            since: time("--since", since)?,
            until: time("--until", until)?,
            from_seq,
            to_seq,
        };
        let subject = events_filter(project.as_deref(), None, id.as_deref());
        let js = connect(&source.nats_url).await?;
        let mut trust = crate::cli::trust::Trust::load(&trust, &js, &source.log.stream).await?;
        let mut out = std::io::stdout().lock();
        if !json {
            writeln!(
                out,
                "{:>6}  {:<27}  {:<16}  {:<24}  {:<36}  EVENT",
                "SEQ", "AT", "ACTOR", "COMMAND", "AGGREGATE"
            )?;
        }
        let mut failed = None;
        // Every chain is followed from its start, so the filter's range applies to
        // what is printed, not to what is read.
        infra::audit::read_log(&js, &source.log.stream, Some(subject), 1, |m| {
            if to_seq.is_some_and(|t| m.seq > t) {
                return false;
            }
            let commit = match trust.next::<RawEvent>(m.seq, &m.subject, &m.payload) {
                Ok(Some(c)) => c,
                Ok(None) => return true,
                Err(e) => {
                    failed = Some(format!("sequence {}: {e}", m.seq));
                    return false;
                }
            };
            for entry in filter.entries(m.seq, &commit) {
                let line = if json {
                    match serde_json::to_string(&entry) {
                        Ok(line) => line,
                        Err(e) => {
                            failed = Some(format!("sequence {}: {e}", m.seq));
                            return false;
                        }
                    }
                } else {
                    format!(
                        "{:>6}  {:<27}  {:<16}  {:<24}  {:<36}  {}",
                        entry.seq,
                        entry.at,
                        entry.actor,
                        entry.command,
                        entry.aggregate.id.as_str(),
                        entry.event_type(),
                    )
                };
                if writeln!(out, "{line}").is_err() {
                    return false;
                }
            }
            true
        })
        .await?;
        if let Some(why) = failed {
            bail!("the log holds a commit that does not read: {why}; run keyledger audit verify");
        }
        Ok(())
    }
}
