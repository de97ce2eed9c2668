//! Taking a backup: each stream read by direct gets up to its last message when its
//! turn comes, in the order that keeps the file consistent (see the module's doc).

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::{BackupArgs, FORMAT, Line, key_stream};

/// Writes the backup `args` names. An existing file (an earlier backup) is never
/// overwritten; a backup that fails leaves no file behind.
pub async fn run(args: BackupArgs) -> Result<()> {
    let file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            // As secret as the key store it holds.
            .mode(0o600)
            .open(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?
    };
    let outcome = take(&args, file).await;
    if outcome.is_err() {
        let _ = std::fs::remove_file(&args.out);
    }
    outcome
}

async fn take(args: &BackupArgs, file: std::fs::File) -> Result<()> {
    let mut out = std::io::BufWriter::new(file);
    let client = infra::nats::connect(&args.nats_url, "keyledger-backup").await?;
    let js = async_nats::jetstream::new(client);
    let event_stream = args.log.stream.clone();
    write(
        &mut out,
        &Line::Header {
            format: FORMAT,
            taken_at: infra::clock::system()().to_rfc3339(),
            event_stream: event_stream.clone(),
        },
    )?;
    let order = [
        commands::log::checkpoints::STREAM.to_owned(),
        event_stream,
        api::access_log::STREAM.to_owned(),
        key_stream(),
    ];
    let optional = [
        commands::log::checkpoints::STREAM.to_owned(),
        api::access_log::STREAM.to_owned(),
    ];
    let mut counts = BTreeMap::new();
    for stream in order {
        let mut failed: Option<anyhow::Error> = None;
        let mut n = 0u64;
        let read = infra::audit::read_log(&js, &stream, None, 1, |m| {
            let line = Line::Message {
                stream: stream.clone(),
                seq: m.seq,
                subject: m.subject,
                headers: m
                    .headers
                    .iter()
                    .flat_map(|h| h.iter())
                    .flat_map(|(name, values)| {
                        values
                            .iter()
                            .map(move |v| (name.to_string(), v.as_str().to_owned()))
                    })
                    .collect(),
                data: B64.encode(&m.payload),
            };
            match write(&mut out, &line) {
                Ok(()) => {
                    n += 1;
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })
        .await;
        match read {
            Ok(_) => {}
            // A deployment without checkpoints (or access records) has no such stream.
            // The events and the key store are never optional: an account that may not
            // read them (the auditor's) gets an error, not a backup without them.
            Err(e) if e.is_absent() && n == 0 && optional.contains(&stream) => {
                eprintln!("{stream}: absent; nothing to back up");
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("reading the stream {stream}")),
        }
        if let Some(e) = failed {
            return Err(e);
        }
        eprintln!("{stream}: {n} messages");
        counts.insert(stream, n);
    }
    write(&mut out, &Line::End { counts })?;
    out.flush()?;
    out.get_ref().sync_all()?;
    eprintln!("backup written to {}", args.out.display());
    Ok(())
}

fn write(out: &mut impl std::io::Write, line: &Line) -> Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")?;
    Ok(())
}
