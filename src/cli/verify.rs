//! `keyledger audit verify`: the log's integrity, from NATS or from an export, checked
//! on its own (hashes, chains, continuity) and against every signed checkpoint.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use domain::audit::{LogVerifier, Violation};
use domain::checkpoint::{CheckpointVerifier, Foreign, SignedCheckpoint};
use domain::commit::CommitKey;

use super::export_format::ReadLine;
use super::proof::{PublicKeys, saved_checkpoints};
use super::verify_pipeline::Pipeline;

/// Where the log and its checkpoints come from.
pub enum Origin {
    /// The live streams.
    Nats {
        js: Box<async_nats::jetstream::Context>,
        stream: String,
    },
    /// An export (`audit export`): commit lines and checkpoint lines.
    File(PathBuf),
}

/// What the log is checked against.
pub struct Trusted {
    /// The checkpoint public keys.
    pub keys: PublicKeys,
    /// Checkpoints the auditor kept.
    pub saved: Vec<PathBuf>,
    /// The commit key, to check every authenticator.
    pub commit_key: Option<CommitKey>,
    /// Foreign messages already investigated.
    pub accepted: Foreign,
    /// Checkpoints not signed by a trusted key, already investigated (by their
    /// sequence in the checkpoint stream, or their number in an export).
    pub accepted_checkpoints: Foreign,
}

/// A checkpoint found with the log: where (for messages), its number (for
/// `--accept-foreign-checkpoints`), and the note.
struct Found {
    place: String,
    number: u64,
    note: String,
}

/// Verifies the log from `origin` against the checkpoints found with it and saved
/// ones, whose signatures the public keys must check.
pub async fn run(origin: Origin, trusted: &Trusted) -> Result<()> {
    let found: Vec<Found> = match &origin {
        // Checkpoints are read before the log, so the log read covers them all.
        Origin::Nats { js, stream } => commands::log::checkpoints::read_all(js, stream)
            .await?
            .into_iter()
            .map(|(seq, note)| Found {
                place: format!("{seq} of {}", commands::log::checkpoints::STREAM),
                number: seq,
                note,
            })
            .collect(),
        Origin::File(path) => export_checkpoints(path)?,
    };
    let keys = trusted.keys.verifier()?;
    let mut checkpoints = saved(keys.as_ref(), &trusted.saved)?;
    checkpoints.extend(open_found(
        keys.as_ref(),
        found,
        &trusted.accepted_checkpoints,
    )?);
    let verifier = LogVerifier::with_checkpoints(checkpoints, trusted.commit_key.clone());
    let mut pipeline = Pipeline::start(verifier, super::progress::Progress::new("verified"))
        .context("starting the verification's threads")?;
    let read = match &origin {
        Origin::Nats { js, stream } => infra::audit::read_log(js, stream, None, 1, |m| {
            pipeline.push(m.seq, m.subject, m.payload)
        })
        .await
        .map_err(anyhow::Error::from),
        Origin::File(path) => export_commits(path, |seq, subject, bytes| {
            pipeline.push(seq, subject, bytes.into())
        }),
    };
    let (verifier, violation) = pipeline.finish()?;
    // The reader may have read on past a violation (what the threads held) and failed
    // there: the violation is the verdict.
    let last = match read {
        Ok(last) => last,
        Err(_) if violation.is_some() => verifier.messages(),
        Err(e) => return Err(e),
    };
    report_foreign(&verifier, &trusted.accepted);
    let violation = violation.or_else(|| verifier.finish().err());
    let first_foreign = verifier
        .foreign()
        .iter()
        .find(|f| !trusted.accepted.contains(f.seq));
    match (first_foreign, violation) {
        // A foreign message comes first: it is what breaks a chain or a checkpoint after it.
        (Some(f), v) => bail!(
            "the log FAILS verification at sequence {}: a message keyledger did not write ({}){}. \
             Every reader ignores such messages, but someone could publish to the event stream: \
             check its NATS permissions; once investigated, --accept-foreign with their \
             sequences lets verification pass them",
            f.seq,
            f.reason,
            v.map(|v| format!("; and at sequence {}: {}", v.seq, v.reason))
                .unwrap_or_default()
        ),
        (None, Some(v)) => fail(&v)?,
        (None, None) => {}
    }
    println!(
        "ok: {} commits verified, up to sequence {last}: every hash, every aggregate's chain, \
         no gap{}",
        verifier.commits(),
        match (&trusted.commit_key, verifier.foreign().len()) {
            (Some(_), 0) => ", every authenticator".to_owned(),
            (Some(_), n) => format!(", every authenticator ({n} accepted foreign messages)"),
            (None, 0) => String::new(),
            (None, n) => format!(" ({n} accepted foreign messages)"),
        }
    );
    match verifier.matched() {
        (0, _) => println!(
            "no signed checkpoint checked: the log is consistent with itself; pass --public-key \
             to check it against its checkpoints (Merkle root now: {})",
            verifier.root()
        ),
        (n, Some(latest)) => println!(
            "ok: {} the log; the latest covers sequences 1 to {} (signed {}){}",
            if n == 1 {
                "1 signed checkpoint matches".to_owned()
            } else {
                format!("{n} signed checkpoints match")
            },
            latest.size,
            latest.when(),
            match verifier.commits().saturating_sub(latest.size) {
                0 => String::new(),
                after => format!("; {after} later commits await the next checkpoint"),
            }
        ),
        (_, None) => {}
    }
    Ok(())
}

/// Prints every foreign message found.
fn report_foreign(verifier: &LogVerifier, accepted: &Foreign) {
    for f in verifier.foreign() {
        let known = accepted.contains(f.seq);
        println!(
            "{} sequence {} on {:?}: not written by keyledger ({}){}",
            if known { "accepted:" } else { "FOREIGN:" },
            f.seq,
            f.subject,
            f.reason,
            if known { ", accepted" } else { "" }
        );
    }
}

fn fail(v: &Violation) -> Result<()> {
    bail!(
        "the log FAILS verification at sequence {}: {}",
        v.seq,
        v.reason
    )
}

/// Opens the checkpoints the auditor kept: each must carry a signature `keys` check.
fn saved(keys: Option<&CheckpointVerifier>, paths: &[PathBuf]) -> Result<Vec<SignedCheckpoint>> {
    let notes = saved_checkpoints(paths)?;
    if notes.is_empty() {
        return Ok(Vec::new());
    }
    let keys = keys.context("--checkpoint needs --public-key to check the checkpoint with")?;
    notes
        .into_iter()
        .map(|(place, note)| {
            keys.open(&note)
                .with_context(|| format!("the saved checkpoint {place} FAILS"))
        })
        .collect()
}

/// Opens the checkpoints found with the log. Without keys, finding any is an error,
/// not a pass. One that no trusted key signed was not written by keyledger's
/// checkpointer: it is named, and fails the verification unless `accepted` lists it;
/// if none opens at all, the keys are wrong.
fn open_found(
    keys: Option<&CheckpointVerifier>,
    found: Vec<Found>,
    accepted: &Foreign,
) -> Result<Vec<SignedCheckpoint>> {
    let Some(keys) = keys else {
        if !found.is_empty() {
            bail!(
                "found {} signed checkpoint(s) but no public key to check them with: pass \
                 --public-key (for keyledger up: --public-key .keyledger/checkpoint.pub)",
                found.len()
            );
        }
        return Ok(Vec::new());
    };
    if found.is_empty() {
        bail!(
            "no signed checkpoint found to check the log against: the command service signs \
             one every --checkpoint-interval once the log has commits; without checkpoints, \
             verify without --public-key"
        );
    }
    let total = found.len();
    let mut opened = Vec::new();
    let mut refused = Vec::new();
    for f in found {
        match keys.open(&f.note) {
            Ok(checkpoint) => opened.push(checkpoint),
            Err(e) => {
                let known = accepted.contains(f.number);
                println!(
                    "{} checkpoint {}: not signed by a trusted key ({e}){}",
                    if known { "accepted:" } else { "FOREIGN:" },
                    f.place,
                    if known { ", accepted" } else { "" }
                );
                if !known {
                    refused.push(f.place);
                }
            }
        }
    }
    if opened.is_empty() {
        bail!(
            "none of the {total} checkpoint(s) found is signed by the given public key(s): is \
             it the right key (checkpoint.pub next to the command service's checkpoint.key)?"
        );
    }
    if !refused.is_empty() {
        bail!(
            "the checkpoints FAIL verification: {} not signed by a trusted key ({}). The \
             checkpointer passes over them, but someone could publish to the checkpoint \
             stream: check its NATS permissions; pass --accept-foreign-checkpoints with their \
             numbers once investigated (or --public-key with a key they were signed with)",
            refused.len(),
            refused.join(", ")
        );
    }
    Ok(opened)
}

/// One line of an export: a commit or a checkpoint.
enum Line {
    Commit {
        seq: u64,
        subject: String,
        bytes: Vec<u8>,
    },
    Checkpoint(String),
}

fn parse_line(path: &Path, n: usize, line: &str) -> Result<Line> {
    let at = || format!("line {} of {}", n + 1, path.display());
    let not_a_line = || {
        anyhow::anyhow!(
            "{} is not an export line ({{seq, subject, commit}} or {{checkpoint}})",
            at()
        )
    };
    // A field of the wrong type is a JSON line that is not an export line.
    let parsed = serde_json::from_str::<ReadLine>(line).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => not_a_line(),
        _ => anyhow::anyhow!("{} is not JSON: {e}", at()),
    })?;
    if let Some(note) = parsed.checkpoint {
        return Ok(Line::Checkpoint(note.into_owned()));
    }
    let (Some(seq), Some(subject), Some(commit)) = (parsed.seq, parsed.subject, parsed.commit)
    else {
        return Err(not_a_line());
    };
    let bytes = B64
        .decode(commit)
        .with_context(|| format!("{}: commit is not base64", at()))?;
    Ok(Line::Commit {
        seq,
        subject: subject.into_owned(),
        bytes,
    })
}

fn export_lines(path: &Path) -> Result<impl Iterator<Item = Result<Line>> + '_> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::io::BufReader::new(f)
        .lines()
        .enumerate()
        .map(move |(n, line)| parse_line(path, n, &line?)))
}

/// The checkpoint lines of an export (a first pass: they may come anywhere),
/// numbered from 1.
fn export_checkpoints(path: &Path) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for line in export_lines(path)? {
        if let Line::Checkpoint(note) = line? {
            let number = found.len() as u64 + 1;
            found.push(Found {
                place: format!("#{number} in {}", path.display()),
                number,
                note,
            });
        }
    }
    Ok(found)
}

/// Feeds the commit lines of an export to `check` until it returns false; returns the
/// last sequence read.
fn export_commits(path: &Path, mut check: impl FnMut(u64, String, Vec<u8>) -> bool) -> Result<u64> {
    let mut last = 0;
    for line in export_lines(path)? {
        if let Line::Commit {
            seq,
            subject,
            bytes,
        } = line?
        {
            last = seq;
            if !check(seq, subject, bytes) {
                break;
            }
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_lines_read_back_and_bad_ones_say_what_they_are() {
        let path = Path::new("export.jsonl");
        let line = |text: &str| parse_line(path, 0, text);
        let written = serde_json::to_string(&super::super::export_format::ExportLine::Commit {
            commit: B64.encode(b"{}"),
            seq: 7,
            subject: "keyledger.events.p.secret.x".into(),
        })
        .unwrap();
        assert_eq!(
            written,
            r#"{"commit":"e30=","seq":7,"subject":"keyledger.events.p.secret.x"}"#
        );
        assert!(matches!(
            line(&written).unwrap(),
            Line::Commit { seq: 7, ref subject, ref bytes } if subject == "keyledger.events.p.secret.x" && bytes == b"{}"
        ));
        assert!(matches!(
            line(r#"{"checkpoint":"a note\nwith lines"}"#).unwrap(),
            Line::Checkpoint(ref note) if note == "a note\nwith lines"
        ));
        for (text, says) in [
            (
                r#"{"seq":"7","subject":"s","commit":"e30="}"#,
                "is not an export line",
            ),
            (r#"{"seq":7}"#, "is not an export line"),
            ("not json", "is not JSON"),
            (
                r#"{"seq":7,"subject":"s","commit":"!!"}"#,
                "commit is not base64",
            ),
        ] {
            let e = format!("{:#}", line(text).err().unwrap());
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
