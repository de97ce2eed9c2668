//! Restoring a backup into a fresh data directory: the directory's own nats-server is
//! started (as for a rebuild), keyledger's streams and key bucket are created with
//! their settings, and every message is published again on its subject, in the order
//! it was stored. The event, checkpoint and access streams get each message at its
//! original sequence, which is checked: checkpoints and inclusion proofs name
//! positions. The read model is not restored: `keyledger up` folds it from the log.

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::{FORMAT, Line, RestoreArgs, key_stream};

/// Publishes in flight at once: acknowledgements come back in order on one connection.
const WINDOW: usize = 256;

/// Restores the backup `args` names.
pub async fn run(args: RestoreArgs) -> Result<()> {
    let (event_stream, counts) = check(&args.from)?;
    let data_dir = &args.data.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let (server, _lock) = keyledger::stack::maintenance_nats(
        data_dir,
        args.nats_server_bin.as_deref(),
        &event_stream,
    )
    .await?;
    let outcome = publish(&server.service_url(), &args.from, &event_stream, &counts).await;
    server.stop().await;
    outcome?;
    let missing: Vec<&str> = ["kek.key", "commit.key", "checkpoint.key", "token-hs256.key"]
        .into_iter()
        .filter(|f| !data_dir.join(f).exists())
        .collect();
    eprintln!(
        "restored {} into {}",
        counts
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        data_dir.display()
    );
    if !missing.is_empty() {
        eprintln!(
            "before `keyledger up --data-dir {}`, put the key files of the backed-up deployment \
             there (missing: {}): the KEK opens the data keys, the commit key the commits, the \
             checkpoint key signs on from the last checkpoint",
            data_dir.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// Reads the whole file once before touching anything: every line parses, the format
/// is known, and the end line's counts match (the file was not cut short). Returns the
/// event stream's name and the counts.
fn check(path: &Path) -> Result<(String, BTreeMap<String, u64>)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut event_stream = None;
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut end = None;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let parsed: Line = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not a backup line", path.display(), n + 1))?;
        match parsed {
            Line::Header {
                format,
                event_stream: name,
                ..
            } if n == 0 => {
                if format != FORMAT {
                    bail!(
                        "{} is a backup of format {format}; this keyledger restores format {FORMAT}",
                        path.display()
                    );
                }
                event_stream = Some(name);
            }
            _ if n == 0 => bail!("{} does not start with a backup header", path.display()),
            Line::Message { stream, .. } if end.is_none() => {
                *seen.entry(stream).or_default() += 1;
            }
            Line::End { counts } if end.is_none() => end = Some(counts),
            _ => bail!(
                "{} line {}: after the end line, or a second header",
                path.display(),
                n + 1
            ),
        }
    }
    let Some(counts) = end else {
        bail!(
            "{} has no end line: the backup was cut short; take it again",
            path.display()
        );
    };
    seen.retain(|_, n| *n > 0);
    let expected: BTreeMap<String, u64> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| (s.clone(), *n))
        .collect();
    if seen != expected {
        bail!(
            "{} holds {seen:?} messages where its end line says {expected:?}",
            path.display()
        );
    }
    let event_stream = event_stream.context("no header")?;
    Ok((event_stream, counts))
}

/// Creates the streams and publishes every message of the file.
async fn publish(
    url: &str,
    path: &Path,
    event_stream: &str,
    counts: &BTreeMap<String, u64>,
) -> Result<()> {
    let client = infra::nats::connect(url, "keyledger-restore").await?;
    let js = async_nats::jetstream::new(client);
    if let Ok(mut existing) = js.get_stream(event_stream).await
        && existing.info().await?.state.messages > 0
    {
        bail!(
            "the data directory already holds a log ({event_stream}); restore into a new, empty \
             data directory"
        );
    }
    let settings = infra::log::LogSettings {
        stream: event_stream.to_owned(),
        ..Default::default()
    };
    infra::log::ensure_event_stream(&js, &settings).await?;
    commands::log::checkpoints::ensure_stream(&js, 1).await?;
    api::access_log::ensure_stream(&js, 1)
        .await
        .map_err(|e| anyhow::anyhow!("the access stream: {e}"))?;
    infra::log::ensure_key_bucket(&js, 1).await?;
    let keys = key_stream();
    let file = std::fs::File::open(path)?;
    let mut in_flight: VecDeque<(String, Option<u64>, PublishAckFuture)> = VecDeque::new();
    let mut done = 0u64;
    let progress = crate::cli::progress::Progress::new("restored");
    eprintln!("restoring {} messages", counts.values().sum::<u64>());
    for line in std::io::BufReader::new(file).lines() {
        let Line::Message {
            stream,
            seq,
            subject,
            headers,
            data,
        } = serde_json::from_str(&line?)?
        else {
            continue;
        };
        let mut map = HeaderMap::new();
        // JetStream's own headers (expectations, batch markers, message ids) said how
        // the message was written the first time; replayed, they would be checked again.
        for (name, value) in headers.iter().filter(|(n, _)| !n.starts_with("Nats-")) {
            map.append(name.as_str(), value.as_str());
        }
        let payload = B64
            .decode(data)
            .with_context(|| format!("{stream} sequence {seq}: the data is not base64"))?;
        let expected = (stream != keys).then_some(seq);
        let ack = js
            .publish_with_headers(subject, map, payload.into())
            .await
            .with_context(|| format!("publishing {stream} sequence {seq}"))?;
        in_flight.push_back((stream, expected, ack));
        if in_flight.len() >= WINDOW {
            settle(in_flight.pop_front()).await?;
        }
        done += 1;
        progress.at(done);
    }
    while let Some(next) = in_flight.pop_front() {
        settle(Some(next)).await?;
    }
    progress.done();
    Ok(())
}

/// Waits for a publish's acknowledgement; a stream that must keep positions must have
/// stored it at its original sequence.
async fn settle(next: Option<(String, Option<u64>, PublishAckFuture)>) -> Result<()> {
    let Some((stream, expected, ack)) = next else {
        return Ok(());
    };
    let ack = ack
        .await
        .with_context(|| format!("{stream}: a message was not stored"))?;
    if let Some(seq) = expected
        && ack.sequence != seq
    {
        bail!(
            "{stream}: a message of sequence {seq} was stored at {}: restore into a new, empty \
             data directory",
            ack.sequence
        );
    }
    Ok(())
}
