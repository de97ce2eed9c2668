//! Which KEK version wraps new data keys, deployment-wide: one entry in the key
//! bucket (`kek.current`), written by `keyledger keys rotate-kek` with a
//! compare-and-set, and followed by every component that wraps data keys, so that all
//! replicas switch at once. A node that does not hold the version the entry names
//! keeps wrapping with its own current KEK (still readable by every node that holds
//! both) and says so in its log.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::KekVersion;
use crate::envelope::Envelope;

/// The key-bucket entry naming the current KEK.
pub const ENTRY: &str = "kek.current";

/// What the entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrentKek {
    /// The version new data keys are wrapped with.
    pub version: KekVersion,
    /// Its KEK id, so a node holding another key under that version's name (a key
    /// file from elsewhere) refuses it instead of wrapping with it.
    pub kek_id: String,
}

/// Why the entry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CurrentError {
    /// NATS failed; retrying later may work.
    #[error("the current-KEK entry ({ENTRY}) is unavailable: {0}")]
    Unavailable(String),
    /// What keyledger would write could not be encoded.
    #[error("the current-KEK entry ({ENTRY}) could not be encoded: {0}")]
    Encode(String),
    /// Someone else changed it since it was read.
    #[error(
        "the current KEK changed while this rotation ran (another `keys rotate-kek`?); run \
         `keyledger keys status` and try again"
    )]
    Changed,
}

/// What the entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No entry: no rotation yet, version 0 is current.
    Absent,
    /// The current KEK, at the entry's revision.
    Current(CurrentKek, u64),
    /// Something keyledger did not write (why), at the entry's revision: nobody can
    /// tell which KEK is current until `keyledger keys rotate-kek` writes it again.
    Malformed(String, u64),
}

/// Reads the entry.
pub async fn read(kv: &kv::Store) -> Result<Found, CurrentError> {
    let Some(entry) = kv
        .entry(ENTRY)
        .await
        .map_err(|e| CurrentError::Unavailable(e.to_string()))?
    else {
        return Ok(Found::Absent);
    };
    if entry.operation != kv::Operation::Put {
        return Ok(Found::Malformed("it was deleted".into(), entry.revision));
    }
    Ok(parse(&entry.value, entry.revision))
}

fn parse(value: &[u8], revision: u64) -> Found {
    match serde_json::from_slice(value) {
        Ok(current) => Found::Current(current, revision),
        Err(e) => Found::Malformed(e.to_string(), revision),
    }
}

/// Sets the entry to `next` if it is still at `revision` (`None`: absent).
pub async fn set(
    kv: &kv::Store,
    next: &CurrentKek,
    revision: Option<u64>,
) -> Result<(), CurrentError> {
    let value = serde_json::to_vec(next).map_err(|e| CurrentError::Encode(e.to_string()))?;
    match revision {
        None => match kv.create(ENTRY, value.into()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(CurrentError::Changed),
            Err(e) => Err(CurrentError::Unavailable(e.to_string())),
        },
        Some(revision) => match kv.update(ENTRY, value.into(), revision).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(CurrentError::Changed)
            }
            Err(e) => Err(CurrentError::Unavailable(e.to_string())),
        },
    }
}

/// Makes what the entry holds the envelope's current KEK; while this node lacks it (or
/// the entry is malformed), new data keys are refused.
pub fn adopt(envelope: &Envelope, found: &Found) {
    match found {
        Found::Absent => {}
        Found::Current(current, _) => {
            if envelope.wraps_with(current.version, &current.kek_id) {
                return;
            }
            match envelope.use_version(current.version, &current.kek_id) {
                Ok(()) => tracing::info!(
                    version = current.version,
                    kek = %current.kek_id,
                    "new data keys are now wrapped by this KEK"
                ),
                Err(e) => tracing::error!(error = %e, "this node lacks the current KEK"),
            }
        }
        Found::Malformed(why, _) => {
            let why = format!(
                "the current-KEK entry ({ENTRY}) is not what keyledger writes there ({why}): \
                 new data keys are refused until `keyledger keys rotate-kek` writes it again"
            );
            tracing::error!("{why}");
            envelope.refuse_sealing(why);
        }
    }
}

/// Reads the entry once and adopts it: before a component wraps its first key.
pub async fn adopt_now(envelope: &Envelope, kv: &kv::Store) -> Result<(), CurrentError> {
    adopt(envelope, &read(kv).await?);
    Ok(())
}

/// Follows the entry until `shutdown`, adopting each new value; the watch is made
/// again after NATS drops it.
pub async fn follow(envelope: Arc<Envelope>, kv: kv::Store, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match kv.watch_with_history(ENTRY).await {
            Ok(mut watch) => loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = watch.next() => next,
                };
                let Some(Ok(entry)) = next else { break };
                backoff = Duration::from_millis(200);
                let found = if entry.operation == kv::Operation::Put {
                    parse(&entry.value, entry.revision)
                } else {
                    Found::Malformed("it was deleted".into(), entry.revision)
                };
                adopt(&envelope, &found);
            },
            Err(e) => tracing::warn!(error = %e, "watching the current-KEK entry failed"),
        }
        // Watched again after a pause that grows while NATS stays away.
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// How long a node trusts its view of the current KEK before it reads the entry
/// again, when it stores a data key.
pub const LEASE: Duration = Duration::from_secs(2);

/// The check a command service makes before it stores a data key: that the KEK which
/// wrapped it is still the deployment's current one, read again from the entry when
/// the last reading is older than [`LEASE`]. A node that was paused (or cut off) while
/// a rotation, a re-wrap and a retirement went by would otherwise store a key wrapped
/// by a KEK that no longer exists.
#[derive(Debug)]
pub struct Lease {
    envelope: Arc<Envelope>,
    kv: kv::Store,
    confirmed: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Lease {
    /// A lease on `envelope`'s view of the entry in `kv`.
    pub fn new(envelope: Arc<Envelope>, kv: kv::Store) -> Self {
        Self {
            envelope,
            kv,
            confirmed: std::sync::Mutex::new(None),
        }
    }

    /// Whether a key wrapped by `kek_id` may be stored now; an error says why not.
    pub async fn confirm(&self, kek_id: &str) -> Result<(), CurrentError> {
        let fresh = self
            .confirmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < LEASE);
        if !fresh {
            adopt(&self.envelope, &read(&self.kv).await?);
            *self.confirmed.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(std::time::Instant::now());
        }
        if self.envelope.kek_id() == kek_id && self.envelope.seals() {
            return Ok(());
        }
        Err(CurrentError::Unavailable(format!(
            "the KEK was rotated while this command ran (its data key is wrapped by {kek_id}, \
             the current KEK is {}); send it again",
            self.envelope.kek_id()
        )))
    }
}
