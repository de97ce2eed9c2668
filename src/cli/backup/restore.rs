//! Restoring a backup into a fresh data directory: the directory's own nats-server is
//! started (as for a rebuild), keyledger's streams and key bucket are created with
//! their settings, and every message is published again on its subject, in the order
//! it was stored. The event, checkpoint and access streams get each message at its
//! original sequence, which is checked: checkpoints and inclusion proofs name
//! positions. The read model is not restored: `keyledger up` folds it from the log.
//!
//! A backup file is input like any other: every line is checked before anything is
//! written (its stream is one of keyledger's four, its subject one of that stream's,
//! its data base64, its length bounded), so a file cannot make the restore publish
//! anywhere else, such as onto JetStream's API. While a restore runs, a marker in the
//! data directory keeps keyledger from starting on a log that is only partly there.

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

/// The longest line read: a message's payload (at most NATS's 8 MiB, in base64) and
/// its headers.
const MAX_LINE: u64 = 12 * 1024 * 1024;

/// Restores the backup `args` names.
pub async fn run(args: RestoreArgs) -> Result<()> {
    let (event_stream, counts) = check(&args.from)?;
    let data_dir = &args.data.data_dir;
    infra::keyfile::private_dir(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let marker = data_dir.join(keyledger::stack::RESTORE_MARKER);
    if marker.exists() {
        bail!(
            "a restore into {} did not finish (it was stopped or failed): restore into a new, \
             empty data directory",
            data_dir.display()
        );
    }
    let (server, _lock) = keyledger::stack::maintenance_nats(
        data_dir,
        args.nats_server_bin.as_deref(),
        &event_stream,
    )
    .await?;
    let outcome = async {
        let js = prepare(&server.service_url(), &event_stream).await?;
        // From here until every message is stored, keyledger refuses the directory.
        std::fs::write(&marker, "a restore is running or did not finish\n")
            .with_context(|| format!("writing {}", marker.display()))?;
        publish(&js, &args.from).await
    }
    .await;
    server.stop().await;
    let stored = outcome?;
    if stored != counts {
        bail!(
            "stored {stored:?} where the backup holds {counts:?}; the directory is left marked \
             incomplete"
        );
    }
    std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
    let missing: Vec<&str> = ["kek.key", "commit.key", "checkpoint.key", "token-hs256.key"]
        .into_iter()
        .filter(|f| !data_dir.join(f).exists())
        .collect();
    eprintln!(
        "restored {} into {}",
        stored
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

/// The lines of a backup file, each bounded by [`MAX_LINE`]. Only a regular file is
/// read (twice: checked, then published), never a pipe.
fn lines(path: &Path) -> Result<impl Iterator<Item = Result<(usize, Line)>>> {
    let meta = std::fs::metadata(path).with_context(|| format!("opening {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{} is not a regular file: a restore reads its backup twice (checked, then \
             published), so save it to a file first",
            path.display()
        );
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let path = path.to_owned();
    let mut n = 0usize;
    Ok(std::iter::from_fn(move || {
        let mut buf = Vec::new();
        let read = std::io::Read::take(&mut reader, MAX_LINE + 1).read_until(b'\n', &mut buf);
        n += 1;
        match read {
            Ok(0) => None,
            Err(e) => Some(Err(anyhow::anyhow!("reading {}: {e}", path.display()))),
            Ok(_) if buf.len() as u64 > MAX_LINE => Some(Err(anyhow::anyhow!(
                "{} line {n}: longer than {MAX_LINE} bytes, more than any message holds",
                path.display()
            ))),
            Ok(_) => Some(
                serde_json::from_slice::<Line>(&buf)
                    .map(|line| (n, line))
                    .with_context(|| format!("{} line {n}: not a backup line", path.display())),
            ),
        }
    }))
}

/// The subject prefix of each stream a backup may hold.
fn subjects(event_stream: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            commands::log::checkpoints::STREAM.to_owned(),
            "keyledger.checkpoints.".to_owned(),
        ),
        (event_stream.to_owned(), "keyledger.events.".to_owned()),
        (
            api::access_log::STREAM.to_owned(),
            "keyledger.access.".to_owned(),
        ),
        (key_stream(), format!("$KV.{}.", infra::log::KEY_BUCKET)),
    ])
}

/// Reads the whole file before touching anything: every line parses and belongs to
/// keyledger's streams and subjects, its data decodes, each stream's sequences rise,
/// and the end line's counts match (the file was not cut short). Returns the event
/// stream's name and the counts.
fn check(path: &Path) -> Result<(String, BTreeMap<String, u64>)> {
    let mut event_stream = None;
    let mut allowed = BTreeMap::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_seq: BTreeMap<String, u64> = BTreeMap::new();
    let mut end = None;
    for line in lines(path)? {
        let (n, line) = line?;
        let at = || format!("{} line {n}", path.display());
        match line {
            Line::Header {
                format,
                event_stream: name,
                ..
            } if n == 1 => {
                if format != FORMAT {
                    bail!(
                        "{}: a backup of format {format}; this keyledger restores format {FORMAT}",
                        at()
                    );
                }
                allowed = subjects(&name);
                event_stream = Some(name);
            }
            _ if n == 1 => bail!("{} does not start with a backup header", path.display()),
            Line::Message {
                stream,
                seq,
                subject,
                data,
                ..
            } if end.is_none() => {
                let Some(prefix) = allowed.get(&stream) else {
                    bail!("{}: stream {stream:?} is not one of keyledger's", at());
                };
                let valid_subject = subject.len() > prefix.len()
                    && subject.starts_with(prefix.as_str())
                    && !subject.contains(['*', '>', ' ']);
                if !valid_subject {
                    bail!(
                        "{}: subject {subject:?} is not one of stream {stream}'s",
                        at()
                    );
                }
                if last_seq.get(&stream).is_some_and(|last| seq <= *last) {
                    bail!(
                        "{}: sequence {seq} of {stream} does not follow the one before",
                        at()
                    );
                }
                last_seq.insert(stream.clone(), seq);
                B64.decode(&data)
                    .with_context(|| format!("{}: the data is not base64", at()))?;
                *seen.entry(stream).or_default() += 1;
            }
            Line::End { counts } if end.is_none() => end = Some(counts),
            _ => bail!("{}: after the end line, or a second header", at()),
        }
    }
    let Some(counts) = end else {
        bail!(
            "{} has no end line: the backup was cut short; take it again",
            path.display()
        );
    };
    let counts: BTreeMap<String, u64> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
    if seen != counts {
        bail!(
            "{} holds {seen:?} messages where its end line says {counts:?}",
            path.display()
        );
    }
    let event_stream = event_stream.context("no header")?;
    Ok((event_stream, counts))
}

/// Connects, checks that every stream is empty, and creates them with keyledger's
/// settings.
async fn prepare(url: &str, event_stream: &str) -> Result<async_nats::jetstream::Context> {
    let client = infra::nats::connect(url, "keyledger-restore").await?;
    let js = async_nats::jetstream::new(client);
    for name in subjects(event_stream).into_keys() {
        if let Ok(mut existing) = js.get_stream(&name).await
            && existing.info().await?.state.messages > 0
        {
            bail!(
                "the data directory already holds messages in {name}; restore into a new, empty \
                 data directory"
            );
        }
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
    Ok(js)
}

/// A message on its way: its stream, the sequence it must get (streams that keep
/// positions), and its acknowledgement.
type InFlight = (String, Option<u64>, PublishAckFuture);

/// Publishes every message of the file (checked before); returns how many each
/// stream stored.
async fn publish(
    js: &async_nats::jetstream::Context,
    path: &Path,
) -> Result<BTreeMap<String, u64>> {
    let keys = key_stream();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut stored = BTreeMap::new();
    let mut done = 0u64;
    let progress = crate::cli::progress::Progress::new("restored");
    for line in lines(path)? {
        let (_, line) = line?;
        let Line::Message {
            stream,
            seq,
            subject,
            headers,
            data,
        } = line
        else {
            continue;
        };
        let mut map = HeaderMap::new();
        // JetStream's own headers (expectations, batch markers, message ids) said how
        // the message was written the first time; replayed, they would be checked again.
        for (name, value) in headers
            .iter()
            .filter(|(n, _)| !n.to_ascii_lowercase().starts_with("nats-"))
        {
            map.append(name.as_str(), value.as_str());
        }
        let payload = B64.decode(data)?;
        let expected = (stream != keys).then_some(seq);
        let ack = js
            .publish_with_headers(subject, map, payload.into())
            .await
            .with_context(|| format!("publishing {stream} sequence {seq}"))?;
        in_flight.push_back((stream, expected, ack));
        if in_flight.len() >= WINDOW
            && let Some(next) = in_flight.pop_front()
        {
            settle(next, &mut stored).await?;
        }
        done += 1;
        progress.at(done);
    }
    while let Some(next) = in_flight.pop_front() {
        settle(next, &mut stored).await?;
    }
    progress.done();
    Ok(stored)
}

/// Waits for a publish's acknowledgement: from the stream the line named and, for a
/// stream that keeps positions, at the line's sequence.
async fn settle(
    (stream, expected, ack): InFlight,
    stored: &mut BTreeMap<String, u64>,
) -> Result<()> {
    let ack = ack
        .await
        .with_context(|| format!("{stream}: a message was not stored"))?;
    if ack.stream != stream {
        bail!("a message of {stream} was stored in {}", ack.stream);
    }
    if let Some(seq) = expected
        && ack.sequence != seq
    {
        bail!(
            "{stream}: a message of sequence {seq} was stored at {}: restore into a new, empty \
             data directory",
            ack.sequence
        );
    }
    *stored.entry(stream).or_default() += 1;
    Ok(())
}
