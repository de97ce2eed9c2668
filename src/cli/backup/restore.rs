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
use std::str::FromStr as _;

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
    let mut file = open(&args.from)?;
    let (event_stream, counts) = check(&mut file, &args.from)?;
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
        publish(&js, &mut file, &args.from, &event_stream).await
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
    // After a rotation the KEK is a later version's file (kek.key.N), kek.key gone.
    let kek_held = infra::kek::KekSource::versions(&infra::kek::FileSource::new(
        data_dir.join(infra::envelope::KEK_FILE),
    ))
    .is_ok_and(|versions| !versions.is_empty());
    let missing: Vec<&str> = [
        infra::keyfile::COMMIT_KEY_FILE,
        keyledger::stack::CHECKPOINT_KEY_FILE,
        infra::identity::TOKEN_KEY_FILE,
    ]
    .into_iter()
    .filter(|f| !data_dir.join(f).exists())
    .chain((!kek_held).then_some(infra::envelope::KEK_FILE))
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
             there (missing: {}; no KEK file when the KEK is in an HSM; after a KEK rotation, \
             also kek.key.N for each version the backup's keys name: `keyledger keys status` \
             counts them): the KEK opens the data keys, the commit key the commits, the \
             checkpoint key signs on from the last checkpoint; started without them, keyledger \
             refuses the directory",
            data_dir.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// The backup file, opened once: both passes (the check, then the publishing) read
/// this handle, so what is published is what was checked. Only a regular file, never
/// a pipe (it is read twice).
fn open(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("opening {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{} is not a regular file: a restore reads its backup twice (checked, then \
             published), so save it to a file first",
            path.display()
        );
    }
    Ok(file)
}

/// The lines of `file` from its start, each bounded by [`MAX_LINE`].
fn lines<'a>(
    file: &'a mut std::fs::File,
    path: &'a Path,
) -> Result<impl Iterator<Item = Result<(usize, Line)>> + 'a> {
    use std::io::Seek as _;
    file.rewind()
        .with_context(|| format!("reading {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
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
    let prefix = |wildcard: &str| wildcard.trim_end_matches('>').to_owned();
    BTreeMap::from([
        (
            commands::log::checkpoints::STREAM.to_owned(),
            prefix(domain::subject::CHECKPOINTS_WILDCARD),
        ),
        (
            event_stream.to_owned(),
            prefix(domain::subject::EVENTS_WILDCARD),
        ),
        (
            api::access_log::STREAM.to_owned(),
            prefix(domain::subject::ACCESS_WILDCARD),
        ),
        (key_stream(), format!("$KV.{}.", infra::log::KEY_BUCKET)),
    ])
}

/// A message of a backup, checked: its stream is one of keyledger's, its subject one of
/// that stream's, its headers well formed (JetStream's own left out), its data base64.
struct Checked {
    stream: String,
    seq: u64,
    subject: String,
    headers: HeaderMap,
    payload: Vec<u8>,
}

/// Checks a message line against the streams `allowed` (stream → subject prefix).
fn checked(line: Line, allowed: &BTreeMap<String, String>) -> Result<Option<Checked>> {
    let Line::Message {
        stream,
        seq,
        subject,
        headers,
        data,
    } = line
    else {
        return Ok(None);
    };
    let Some(prefix) = allowed.get(&stream) else {
        bail!("stream {stream:?} is not one of keyledger's");
    };
    let valid_subject = subject.len() > prefix.len()
        && subject.starts_with(prefix.as_str())
        && subject
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>');
    if !valid_subject {
        bail!("subject {subject:?} is not one of stream {stream}'s");
    }
    let mut map = HeaderMap::new();
    for (name, value) in &headers {
        // JetStream's own headers (expectations, batch markers, message ids) said how
        // the message was written the first time; replayed, they would be checked again.
        if name.to_ascii_lowercase().starts_with("nats-") {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            async_nats::HeaderName::from_str(name),
            async_nats::HeaderValue::from_str(value),
        ) else {
            bail!("header {name:?} of {stream} sequence {seq} is not a valid NATS header");
        };
        map.append(name, value);
    }
    let payload = B64
        .decode(&data)
        .with_context(|| format!("{stream} sequence {seq}: the data is not base64"))?;
    Ok(Some(Checked {
        stream,
        seq,
        subject,
        headers: map,
        payload,
    }))
}

/// Reads the whole file before touching anything: every line parses and checks
/// ([`checked`]), each stream's sequences rise, and the end line's counts match (the
/// file was not cut short). Returns the event stream's name and the counts.
fn check(file: &mut std::fs::File, path: &Path) -> Result<(String, BTreeMap<String, u64>)> {
    let mut event_stream = None;
    let mut allowed = BTreeMap::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_seq: BTreeMap<String, u64> = BTreeMap::new();
    let mut end = None;
    let keys = key_stream();
    for line in lines(file, path)? {
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
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !valid {
                    bail!("{}: {name:?} is not a stream name", at());
                }
                allowed = subjects(&name);
                event_stream = Some(name);
            }
            _ if n == 1 => bail!("{} does not start with a backup header", path.display()),
            Line::End { counts } if end.is_none() => end = Some(counts),
            line @ Line::Message { .. } if end.is_none() => {
                let message = checked(line, &allowed)
                    .with_context(at)?
                    .context("a message line")?;
                let last = last_seq.get(&message.stream).copied();
                if last.is_some_and(|last| message.seq <= last) {
                    bail!(
                        "{}: sequence {} of {} does not follow the one before",
                        at(),
                        message.seq,
                        message.stream
                    );
                }
                // A stream that keeps positions (nothing in it is ever deleted) holds
                // every sequence from 1: a gap would stop the restore half-way, where
                // the message is stored at a sequence other than its own.
                let next = last.unwrap_or(0) + 1;
                if message.stream != keys && message.seq != next {
                    bail!(
                        "{}: sequence {} of {} follows {}: messages are missing in between \
                         (nothing is ever deleted from that stream); take the backup again",
                        at(),
                        message.seq,
                        message.stream,
                        last.map_or_else(|| "nothing".to_owned(), |l| l.to_string())
                    );
                }
                last_seq.insert(message.stream.clone(), message.seq);
                *seen.entry(message.stream).or_default() += 1;
            }
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

/// Publishes every message of the file, checked again line by line as it goes;
/// returns how many each stream stored.
async fn publish(
    js: &async_nats::jetstream::Context,
    file: &mut std::fs::File,
    path: &Path,
    event_stream: &str,
) -> Result<BTreeMap<String, u64>> {
    let keys = key_stream();
    let allowed = subjects(event_stream);
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut stored = BTreeMap::new();
    let mut done = 0u64;
    let progress = crate::cli::progress::Progress::new("restored");
    for line in lines(file, path)? {
        let (n, line) = line?;
        let Some(message) =
            checked(line, &allowed).with_context(|| format!("{} line {n}", path.display()))?
        else {
            continue;
        };
        let expected = (message.stream != keys).then_some(message.seq);
        let ack = js
            .publish_with_headers(message.subject, message.headers, message.payload.into())
            .await
            .with_context(|| format!("publishing {} sequence {}", message.stream, message.seq))?;
        in_flight.push_back((message.stream, expected, ack));
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
