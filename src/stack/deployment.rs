//! Whether a node's keys are those of the deployment whose log this NATS holds,
//! checked before anything is written. Without the check, a data directory restored
//! without its key files, another directory's commit key or KEK, or a mistyped HSM
//! key label would start "ready": the projector would take every commit for foreign
//! and move past them for good, the checkpointer sign under a stray key, and new
//! secrets be sealed under a KEK no other node holds. What is not the deployment's
//! cannot be proven where nothing shows it: an empty log, a key store without data
//! keys, a log of format 1 (refused for its own reason).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use async_nats::jetstream::Context;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use commands::log::checkpoints::CheckpointSettings;
use domain::audit::RawEvent;
use domain::commit::{Commit, CommitKey};
use infra::envelope::{Envelope, WrappedKey};
use infra::kek::current::Found;

use super::Keys;

/// How many of a stream's last messages are looked at, and then of its first.
const SAMPLE: u64 = 50;

/// The sequences looked at in a stream holding `first..=last`: the newest, then the
/// oldest. Messages appended behind keyledger's back (by a holder of its NATS
/// credentials) can fill the newest, never the oldest: nothing is deleted from the
/// log, and the key store keeps its oldest keys until they are re-wrapped.
fn sample(first: u64, last: u64) -> impl Iterator<Item = u64> {
    let newest = last.saturating_sub(SAMPLE - 1).max(first);
    let oldest_end = first
        .saturating_add(SAMPLE - 1)
        .min(newest.saturating_sub(1));
    (newest..=last).rev().chain(first..=oldest_end)
}

/// Refuses a commit key that is not the deployment's: one of the log's newest or
/// oldest commits must authenticate under it. `writes`: the caller is about to
/// append, so an empty log, which shows nothing, is refused too.
pub async fn check_commit_key(
    js: &Context,
    stream: &str,
    key: &CommitKey,
    writes: bool,
) -> Result<()> {
    let mut log = match js.get_stream(stream).await {
        // A new deployment's first start: nothing to check against.
        Err(e) if !writes && not_found(e.kind()) => return Ok(()),
        found => found.with_context(|| format!("opening the event stream {stream}"))?,
    };
    let state = log.info().await?.state.clone();
    if state.messages == 0 {
        if writes {
            bail!(
                "the event log {stream} has no commit yet, so nothing shows that this commit \
                 key is the deployment's; rotate once keyledger has written a commit"
            );
        }
        return Ok(());
    }
    let mut commits = 0;
    for seq in sample(state.first_sequence, state.last_sequence) {
        let Ok(message) = log.get_raw_message(seq).await else {
            continue;
        };
        if Commit::<RawEvent>::open(&message.payload, key).is_ok() {
            return Ok(());
        }
        match Commit::<RawEvent>::parse_unverified(&message.payload) {
            // Written before commits were authenticated: no key opens it, and the log
            // is to be migrated, as the log's own check says.
            Ok(commit) if commit.is_format_1() => {
                return Err(infra::log::SetupError::Format1 {
                    stream: stream.to_owned(),
                }
                .into());
            }
            Ok(_) => commits += 1,
            Err(_) => {}
        }
    }
    if commits > 0 {
        return Err(NotTheDeployments(format!(
            "the commit key is not this deployment's: none of the {commits} commit{} looked at \
             (the log's newest and oldest) authenticates under it; point --data-dir (or a \
             component's --commit-key-file) at the data directory of the keyledger this NATS \
             serves",
            if commits == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(())
}

/// Refuses a KEK that is not the deployment's: a node must hold the KEK the
/// current-KEK entry names (after a rotation), or one that wraps some of the key
/// store's oldest data keys (the oldest that still exist: deleted secrets' keys are
/// gone, so the stream's sequences are sparse). Keys appended behind keyledger's back
/// come after them, never before; and re-wrapped keys move to the end under the
/// current KEK, while those not yet re-wrapped keep a KEK a node still holds.
pub async fn check_kek(js: &Context, envelope: &Envelope) -> Result<()> {
    let name = format!("KV_{}", infra::log::KEY_BUCKET);
    let mut keys = match js.get_stream(&name).await {
        // No key store yet: a new deployment.
        Err(e) if not_found(e.kind()) => return Ok(()),
        found => found.with_context(|| format!("opening the key store {name}"))?,
    };
    let state = keys.info().await?.state.clone();
    if state.messages == 0 {
        return Ok(());
    }
    let held: Vec<String> = envelope.versions().into_iter().map(|(_, id)| id).collect();
    let bucket = js
        .get_key_value(infra::log::KEY_BUCKET)
        .await
        .with_context(|| format!("opening the key store {name}"))?;
    if let Ok(Found::Current(current, _)) = infra::kek::current::read(&bucket).await
        && held.contains(&current.kek_id)
    {
        return Ok(());
    }
    let mut wrapping = BTreeSet::new();
    let mut looked = 0;
    let mut holds = false;
    let read = infra::audit::read_log(js, &name, None, state.first_sequence, |m| {
        // Data keys only: the current-KEK entry and deletions hold none.
        let Ok(key) = serde_json::from_slice::<WrappedKey>(&m.payload) else {
            return true;
        };
        if held.contains(&key.kek_id) {
            holds = true;
            return false;
        }
        // Shown in the refusal: bounded, as anyone with keyledger's NATS user could
        // have written it.
        wrapping.insert(key.kek_id.chars().take(64).collect::<String>());
        looked += 1;
        looked < SAMPLE
    })
    .await;
    if let Err(e) = read
        && !e.is_absent()
    {
        return Err(e).with_context(|| format!("reading the key store {name}"));
    }
    if holds || wrapping.is_empty() {
        return Ok(());
    }
    Err(NotTheDeployments(format!(
        "this node's KEK is not the deployment's: the key store's oldest data keys are \
         wrapped by KEK {}, and this node holds {}; point --data-dir (its kek.key and any \
         kek.key.N beside it), or the --kek-pkcs11-* flags (the token and key label), at the \
         deployment's KEK",
        wrapping.into_iter().collect::<Vec<_>>().join(", "),
        held.join(", ")
    ))
    .into())
}

fn not_found(kind: GetStreamErrorKind) -> bool {
    matches!(
        kind,
        GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND
    )
}

/// Refuses to make a checkpoint key (its file missing) when the log already has
/// checkpoints: they were signed by the deployment's key, and checkpoints under a
/// stray one would fail `audit verify` for good. Called before the key would be made,
/// so nothing is made, overwritten or removed. A new checkpoint key on purpose is a key
/// file made beforehand.
pub async fn check_checkpoint_key(
    js: &Context,
    stream: &str,
    settings: &CheckpointSettings,
) -> Result<()> {
    if settings.key_file.exists()
        || commands::log::checkpoints::latest(js, stream)
            .await?
            .is_none()
    {
        return Ok(());
    }
    Err(NotTheDeployments(format!(
        "the log's checkpoints are signed with a checkpoint key that is not here ({} is \
         missing): copy the deployment's checkpoint.key and checkpoint.pub there. To start a \
         new checkpoint key on purpose, make its file first (`openssl rand -hex 32 > FILE && \
         chmod 600 FILE`), and give verifiers both public keys",
        settings.key_file.display()
    ))
    .into())
}

/// A refusal: the keys are not the deployment's (not a failure to find out, after
/// which nothing made is taken back).
#[derive(Debug)]
pub struct NotTheDeployments(String);

impl std::fmt::Display for NotTheDeployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotTheDeployments {}

/// Both checks, for a node that writes the log and seals payloads.
pub async fn check(js: &Context, stream: &str, keys: &Keys) -> Result<()> {
    check_commit_key(js, stream, &keys.commit, false).await?;
    check_kek(js, &keys.envelope).await
}

/// The key files a start is about to make, none being there yet: taken back if the
/// keys turn out not to be the deployment's, so that copying the deployment's files in
/// is all it takes to start again.
#[derive(Debug, Default)]
pub struct Made {
    files: Vec<PathBuf>,
}

impl Made {
    /// Those of `paths` that do not exist (yet).
    pub fn missing(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        Self {
            files: paths.into_iter().filter(|p| !p.exists()).collect(),
        }
    }

    /// On a refusal ([`NotTheDeployments`]), removes the files made and the KEK
    /// `envelope` made on opening, and says so after it; any other error (NATS did not
    /// answer) is returned as it is, nothing taken back.
    pub fn take_back(&self, envelope: &Envelope, refusal: anyhow::Error) -> anyhow::Error {
        if refusal.downcast_ref::<NotTheDeployments>().is_none() {
            return refusal;
        }
        let mut removed: Vec<String> = self
            .files
            .iter()
            .filter(|p| std::fs::remove_file(p).is_ok())
            .map(|p| p.display().to_string())
            .collect();
        if envelope.made_on_open() {
            let made = envelope
                .source()
                .map_or_else(|| "the KEK".to_owned(), |s| s.name(0));
            match envelope.take_back_made() {
                Ok(()) => removed.push(made),
                Err(e) => {
                    tracing::error!(error = %e, "a KEK made at this start could not be taken back")
                }
            }
        }
        if removed.is_empty() {
            return refusal;
        }
        anyhow::anyhow!(
            "{refusal:#}. This start made keys where there were none, and has removed them \
             again ({}): if this data directory was restored from a backup, copy the \
             deployment's key files into it (README, Backup and restore)",
            removed.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn the_newest_then_the_oldest_are_looked_at_each_once() {
        assert_eq!(sample(1, 3).collect::<Vec<_>>(), [3, 2, 1]);
        let long: Vec<u64> = sample(1, 1000).collect();
        assert_eq!(long.len(), 100);
        assert_eq!(long[..2], [1000, 999]);
        assert_eq!(long[49..52], [951, 1, 2]);
        assert_eq!(long[99], 50);
        // Overlapping ranges are not looked at twice.
        let mid: Vec<u64> = sample(10, 80).collect();
        assert_eq!(mid.len(), 71);
        assert_eq!(mid[..1], [80]);
        assert_eq!(*mid.last().unwrap(), 30);
    }
}
