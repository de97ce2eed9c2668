//! `keyledger status`: a whole deployment at a glance — its streams, the consumers on
//! the log, the last checkpoint, and every running process's readiness (read-model
//! lag, last scheduler run), gathered from the processes' answers on NATS.

use std::time::Duration;

use anyhow::{Context as _, Result};
use async_nats::jetstream;
use clap::Args;
use futures::StreamExt as _;
use infra::health::{ProcessStatus, STATUS_SUBJECT};
use serde::Serialize;
use time::OffsetDateTime;

use super::LogArgs;

/// Show a deployment's health: streams, consumers, the last checkpoint, and each
/// keyledger process's checks. Exits 1 when a process is not ready or none answered.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// keyledger's NATS, as its service user (nats://keyledger:<password>@host:4222;
    /// the password is <data-dir>/nats-service.key under `keyledger up`).
    #[arg(long, env = "KEYLEDGER_NATS_URL", hide_env_values = true)]
    nats_url: String,
    #[command(flatten)]
    log: LogArgs,
    /// How long to wait for processes to answer: longer than a process's checks take
    /// (each at most 2 s), or a process whose checks time out goes unseen.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// A component that must be running (`commands`, `projector`, `api`), as often as
    /// named (`--expect api --expect api` for two API replicas): a process that cannot
    /// reach NATS does not answer, so only this tells it is missing.
    #[arg(long)]
    expect: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// One stream's state.
#[derive(Debug, Serialize)]
struct StreamState {
    name: String,
    messages: u64,
    bytes: u64,
    last_sequence: u64,
    #[serde(serialize_with = "rfc3339")]
    last_at: Option<OffsetDateTime>,
    /// Whether the stream exists.
    present: bool,
}

/// A durable consumer on the log.
#[derive(Debug, Serialize)]
struct ConsumerState {
    name: String,
    pending: u64,
    ack_pending: usize,
    delivered: u64,
}

/// The last checkpoint, as the checkpoint stream holds it (its signature is checked by
/// `keyledger audit verify`, not here).
#[derive(Debug, Serialize)]
struct CheckpointState {
    covers: u64,
    #[serde(serialize_with = "rfc3339")]
    at: Option<OffsetDateTime>,
    age_seconds: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Status {
    streams: Vec<StreamState>,
    consumers: Vec<ConsumerState>,
    checkpoint: Option<CheckpointState>,
    processes: Vec<ProcessStatus>,
    /// Components `--expect` named that fewer processes run than expected.
    missing: Vec<String>,
    ready: bool,
}

/// How long one JetStream request of `status` may take: a user without JetStream
/// rights is never answered (the server only logs a permissions violation).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

fn rfc3339<S: serde::Serializer>(at: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    let text = at.and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    s.serialize_some(&text)
}

pub async fn run(args: StatusArgs) -> Result<()> {
    let client = infra::nats::connect(&args.nats_url, "keyledger-status-cli").await?;
    let js = jetstream::new(client.clone());
    let log = &args.log.stream;
    // A user who may not use JetStream here (the auditor, a client) is told so at
    // once, not after every request has timed out.
    let log_info = tokio::time::timeout(REQUEST_TIMEOUT, js.get_stream(log.as_str())).await;
    match log_info {
        Err(_) => anyhow::bail!(
            "JetStream did not answer within {} s: is the URL's user keyledger's service user \
             (nats://keyledger:<password>@…)? Others may not read keyledger's streams",
            REQUEST_TIMEOUT.as_secs()
        ),
        Ok(Err(e)) => tracing::debug!(error = %e, "the log stream"),
        Ok(Ok(_)) => {}
    }
    let mut streams = Vec::new();
    for name in [
        log.as_str(),
        api::access_log::STREAM,
        commands::log::checkpoints::STREAM,
        &format!("KV_{}", infra::log::KEY_BUCKET),
    ] {
        streams.push(stream_state(&js, name).await);
    }
    let consumers = consumers(&js, log).await?;
    let checkpoint = checkpoint(&js, log, &streams).await?;
    let processes = gather(&client, args.wait).await?;
    let missing = missing(&args.expect, &processes);
    let ready =
        !processes.is_empty() && missing.is_empty() && processes.iter().all(|p| p.report.ready);
    let status = Status {
        streams,
        consumers,
        checkpoint,
        processes,
        missing,
        ready,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    if !status.ready {
        anyhow::bail!("not ready: a process is not, or none answered (see above)");
    }
    Ok(())
}

async fn stream_state(js: &jetstream::Context, name: &str) -> StreamState {
    match tokio::time::timeout(REQUEST_TIMEOUT, js.get_stream(name)).await {
        Ok(Ok(stream)) => {
            let state = &stream.cached_info().state;
            StreamState {
                name: name.to_owned(),
                messages: state.messages,
                bytes: state.bytes,
                last_sequence: state.last_sequence,
                last_at: (state.last_sequence > 0).then_some(state.last_timestamp),
                present: true,
            }
        }
        Ok(Err(_)) | Err(_) => StreamState {
            name: name.to_owned(),
            messages: 0,
            bytes: 0,
            last_sequence: 0,
            last_at: None,
            present: false,
        },
    }
}

/// The durable consumers on the log (keyledger's order worker and key shredder).
async fn consumers(js: &jetstream::Context, log: &str) -> Result<Vec<ConsumerState>> {
    let Ok(stream) = js.get_stream(log).await else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    let mut list = stream.consumers();
    while let Some(info) = list.next().await {
        let info = info.context("listing the log's consumers")?;
        // Ordered consumers (the projector's, the key cache's) are ephemeral: their
        // position is the read model's, reported by the processes themselves.
        if info.config.durable_name.is_none() {
            continue;
        }
        found.push(ConsumerState {
            name: info.name,
            pending: info.num_pending,
            ack_pending: info.num_ack_pending,
            delivered: info.delivered.stream_sequence,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

async fn checkpoint(
    js: &jetstream::Context,
    log: &str,
    streams: &[StreamState],
) -> Result<Option<CheckpointState>> {
    let Some(latest) = commands::log::checkpoints::latest(js, log).await? else {
        return Ok(None);
    };
    // A checkpoint note's second line is the size of the log it covers.
    let covers = latest
        .note
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let at = streams
        .iter()
        .find(|s| s.name == commands::log::checkpoints::STREAM)
        .and_then(|s| s.last_at);
    Ok(Some(CheckpointState {
        covers,
        at,
        age_seconds: at.map(|at| (OffsetDateTime::now_utc() - at).whole_seconds()),
    }))
}

/// Every process that answers on [`STATUS_SUBJECT`] within `wait`.
async fn gather(client: &async_nats::Client, wait: Duration) -> Result<Vec<ProcessStatus>> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await?;
    client
        .publish_with_reply(STATUS_SUBJECT, inbox, "".into())
        .await?;
    client.flush().await?;
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await {
        // The server's "no responders" notice: nobody listens.
        if reply.status.is_some() {
            continue;
        }
        match serde_json::from_slice::<ProcessStatus>(&reply.payload) {
            Ok(status) => found.push(status),
            Err(e) => tracing::warn!(error = %e, "a status answer did not parse"),
        }
    }
    found.sort_by_key(|p| p.pid);
    Ok(found)
}

/// Each expected component as often as it is missing from `processes`.
fn missing(expect: &[String], processes: &[ProcessStatus]) -> Vec<String> {
    let mut running: Vec<&str> = processes
        .iter()
        .flat_map(|p| p.components.iter().map(String::as_str))
        .collect();
    let mut missing = Vec::new();
    for wanted in expect {
        match running.iter().position(|c| c == wanted) {
            Some(i) => {
                running.swap_remove(i);
            }
            None => missing.push(wanted.clone()),
        }
    }
    missing
}

fn render(status: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let ago = |at: Option<OffsetDateTime>| match at {
        Some(at) => {
            let secs = (OffsetDateTime::now_utc() - at).whole_seconds().max(0);
            format!(
                "{} ago",
                humantime::format_duration(Duration::from_secs(secs.unsigned_abs()))
            )
        }
        None => "never".to_owned(),
    };
    let _ = writeln!(out, "Streams");
    for s in &status.streams {
        if s.present {
            let _ = writeln!(
                out,
                "  {:<24} {:>10} messages {:>12} bytes   last sequence {} ({})",
                s.name,
                s.messages,
                s.bytes,
                s.last_sequence,
                ago(s.last_at)
            );
        } else {
            let _ = writeln!(out, "  {:<24} absent", s.name);
        }
    }
    let _ = writeln!(out, "Consumers on the log");
    if status.consumers.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for c in &status.consumers {
        let _ = writeln!(
            out,
            "  {:<24} {} pending, {} awaiting acknowledgement, delivered up to {}",
            c.name, c.pending, c.ack_pending, c.delivered
        );
    }
    let _ = writeln!(out, "Checkpoint");
    match &status.checkpoint {
        Some(c) => {
            let _ = writeln!(
                out,
                "  covers {} commits, published {} (signatures: keyledger audit verify)",
                c.covers,
                ago(c.at)
            );
        }
        None => {
            let _ = writeln!(out, "  none yet");
        }
    }
    let _ = writeln!(out, "Processes");
    if status.processes.is_empty() {
        let _ = writeln!(
            out,
            "  none answered: is keyledger running against this NATS, and is the URL's user \
             keyledger's service user?"
        );
    }
    for p in &status.processes {
        let _ = writeln!(
            out,
            "  pid {} ({}) version {}: {}",
            p.pid,
            p.components.join(", "),
            p.version,
            if p.report.ready { "ready" } else { "NOT READY" }
        );
        for c in &p.report.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "    {mark} {:<36} {}", c.name, c.detail);
        }
    }
    for component in &status.missing {
        let _ = writeln!(
            out,
            "  MISSING {component}: expected (--expect) but no process running it answered"
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if status.ready { "Ready." } else { "Not ready." }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::health::Report;

    fn process(components: &[&str]) -> ProcessStatus {
        ProcessStatus {
            pid: 1,
            version: "0".into(),
            components: components.iter().map(|c| (*c).to_owned()).collect(),
            report: Report {
                ready: true,
                checks: Vec::new(),
            },
        }
    }

    #[test]
    fn each_expected_component_counts_once_per_process_running_it() {
        let running = [
            process(&["commands", "projector", "api"]),
            process(&["api"]),
        ];
        let expect = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert!(missing(&expect(&["api", "api", "commands"]), &running).is_empty());
        assert_eq!(
            missing(
                &expect(&["api", "api", "api", "projector", "projector"]),
                &running
            ),
            ["api", "projector"]
        );
    }
}
