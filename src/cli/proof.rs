//! Checkpoints on the auditor's side: `keyledger audit checkpoint` (the latest, to
//! keep), `audit prove <sequence>` (an inclusion proof) and `audit check-proof`
//! (checking one with only the public key).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use domain::audit::{RawEvent, actor_name};
use domain::checkpoint::{CheckpointVerifier, InclusionProof};
use domain::commit::Commit;
use domain::merkle::MerkleLog;

/// The public keys checkpoints must be signed with.
#[derive(Debug, Clone, Args)]
pub struct PublicKeys {
    /// A checkpoint public key (<name>+<id>+<base64>), or a file holding one, such as
    /// the checkpoint.pub next to the command service's key (.keyledger/checkpoint.pub
    /// for keyledger up). Repeat it for keys used over time.
    #[arg(long = "public-key", value_name = "KEY|FILE")]
    pub keys: Vec<String>,
}

impl PublicKeys {
    /// A verifier for the keys given, if any.
    pub fn verifier(&self) -> Result<Option<CheckpointVerifier>> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let keys = self
            .keys
            .iter()
            .map(|k| {
                let path = Path::new(k);
                if path.is_file() {
                    std::fs::read_to_string(path)
                        .map(|s| s.trim().to_owned())
                        .with_context(|| format!("reading the public key {}", path.display()))
                } else {
                    Ok(k.clone())
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(CheckpointVerifier::new(&keys)?))
    }

    /// A verifier, required: `what` needs one.
    fn required(&self, what: &str) -> Result<CheckpointVerifier> {
        self.verifier()?.with_context(|| {
            format!(
                "{what} needs the checkpoint public key: pass --public-key (for keyledger up: \
                 --public-key .keyledger/checkpoint.pub)"
            )
        })
    }
}

/// Checkpoints an auditor saved earlier (`audit checkpoint > FILE`), each with where it
/// came from.
pub fn saved_checkpoints(paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|note| (p.display().to_string(), note))
                .with_context(|| format!("reading the checkpoint {}", p.display()))
        })
        .collect()
}

/// The latest checkpoint's note.
async fn latest_note(js: &async_nats::jetstream::Context, stream: &str) -> Result<String> {
    let Some(latest) = commands::log::checkpoints::latest(js, stream).await? else {
        bail!(
            "no checkpoint yet: the command service signs one every --checkpoint-interval once \
             the log has commits"
        );
    };
    Ok(latest.note)
}

/// The latest checkpoint's note, checked with `keys` if given.
pub async fn latest(url: &str, stream: &str, keys: &PublicKeys) -> Result<String> {
    let note = latest_note(&super::auditor::connect(url).await?, stream).await?;
    if let Some(keys) = keys.verifier()? {
        keys.open(&note).context("the latest checkpoint FAILS")?;
    }
    Ok(note)
}

/// Proves that the commit at `sequence` is in the log signed by the latest checkpoint
/// (or by `saved`), and prints the proof as JSON.
pub async fn prove(
    url: &str,
    stream: &str,
    sequence: u64,
    keys: &PublicKeys,
    saved: Option<PathBuf>,
) -> Result<()> {
    let verifier = keys.required("audit prove")?;
    let js = super::auditor::connect(url).await?;
    let note = match saved {
        Some(path) => saved_checkpoints(&[path])?.remove(0).1,
        None => latest_note(&js, stream).await?,
    };
    let checkpoint = verifier.open(&note).context("the checkpoint FAILS")?;
    if sequence == 0 || sequence > checkpoint.size {
        bail!(
            "sequence {sequence} is not covered by the checkpoint, which covers sequences 1 to \
             {} (signed {}); wait for the next checkpoint and try again",
            checkpoint.size,
            checkpoint.when()
        );
    }
    // Every hash of the tree up to the checkpoint is needed to build the path (about
    // 64 bytes per commit).
    let mut tree = MerkleLog::full();
    let mut commit = None;
    let progress = super::progress::Progress::new("hashed");
    infra::audit::read_log(&js, stream, None, 1, |m| {
        if m.seq != tree.size() + 1 {
            return false;
        }
        tree.append(&m.payload);
        progress.at(m.seq);
        if m.seq == sequence {
            commit = Some(m.payload.clone());
        }
        m.seq < checkpoint.size
    })
    .await?;
    progress.done();
    if tree.size() != checkpoint.size || tree.root() != checkpoint.root {
        bail!(
            "the log does not match the checkpoint of {} commits signed {}: run keyledger \
             audit verify to find where",
            checkpoint.size,
            checkpoint.when()
        );
    }
    let commit = commit.context("the commit was not read")?;
    let proof = InclusionProof::new(sequence, &commit, &tree.prove(sequence - 1)?, &note);
    // What is printed must check.
    proof.check(&verifier)?;
    println!("{}", serde_json::to_string_pretty(&proof)?);
    Ok(())
}

/// Checks a proof (`-` reads standard input) with only the public key; says which
/// commit it proves.
pub fn check(file: &Path, keys: &PublicKeys) -> Result<()> {
    let verifier = keys.required("audit check-proof")?;
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let proof: InclusionProof = serde_json::from_str(&text)
        .context("not an inclusion proof (the JSON keyledger audit prove prints)")?;
    let (checkpoint, bytes) = proof.check(&verifier).context("the proof FAILS")?;
    if checkpoint.foreign.contains(proof.sequence) {
        bail!(
            "the message at sequence {} is in the log of {} messages that {} signed {}, but \
             that checkpoint names it as foreign: keyledger did not write it, and no reader \
             applies it",
            proof.sequence,
            checkpoint.size,
            checkpoint.origin,
            checkpoint.when()
        );
    }
    let commit = Commit::<RawEvent>::parse_unverified(&bytes)
        .context("the proven commit does not read as a keyledger commit")?;
    let b = &commit.body;
    let events: Vec<String> = b.events.iter().map(RawEvent::type_name).collect();
    println!(
        "ok: the commit at sequence {} ({} by {} at {}; {} {} in {}, version {}; events {}) is \
         in the log of {} commits that {} signed {}",
        proof.sequence,
        b.command,
        actor_name(&b.actor),
        b.at.to_rfc3339(),
        b.aggregate.kind,
        b.aggregate.id,
        b.aggregate.project,
        b.version,
        events.join(", "),
        checkpoint.size,
        checkpoint.origin,
        checkpoint.when()
    );
    Ok(())
}
