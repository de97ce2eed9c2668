//! Re-wrapping every data key in the key store under the current KEK while keyledger
//! serves traffic.
//!
//! Each entry is read with its revision, opened by the KEK that wrapped it, wrapped
//! again by the current one (a fresh nonce, the same binding to its project, secret
//! and key id), and written back only if the entry is still at that revision. A key
//! destroyed meanwhile has no entry at that revision any more, so the write is refused
//! and the key stays destroyed; a key another re-wrap moved first is found wrapped by
//! the current KEK on the next look. Readers hold every KEK version and pick by the
//! id stored with each key, so no read fails during it. A run that stops (a crash, a
//! kill) is resumed by running it again: it skips what is done.

use std::num::NonZeroU32;
use std::time::Duration;

use async_nats::jetstream::kv;
use domain::ids::{KeyId, ProjectId, SecretId};
use futures::TryStreamExt as _;
use infra::envelope::{CryptoError, Envelope, WrappedKey};
use infra::keystore::LOCAL_CA_ENTRY;

/// What became of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Wrapped again by the current KEK.
    Rewrapped,
    /// The current KEK wrapped it already.
    Already,
    /// Destroyed (or never there): left so.
    Gone,
    /// Not a data key (keyledger's own bookkeeping entries).
    NotAKey,
}

/// Why an entry could not be re-wrapped.
#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    /// NATS failed; running again later resumes.
    #[error("the key store is unavailable: {0}")]
    Unavailable(String),
    /// The entry's data key did not open, or the KEK failed.
    #[error("entry {name}: {error}")]
    Crypto {
        /// The entry.
        name: String,
        /// What failed.
        error: CryptoError,
    },
    /// The entry is not what keyledger stores there.
    #[error(
        "entry {0} is not what keyledger stores in the key store: it was tampered with; \
         restore the key store from a backup"
    )]
    Tampered(String),
    /// The entry kept changing under the re-wrap.
    #[error("entry {0} kept changing while it was re-wrapped; run the re-wrap again")]
    Busy(String),
}

fn unavailable(e: impl std::fmt::Display) -> RewrapError {
    RewrapError::Unavailable(e.to_string())
}

/// Looks at one entry this many times when it changes between a read and a write.
const ATTEMPTS: usize = 3;

/// The ids a data-key entry's name carries: `<project>.<secret>.<key id>`.
fn key_ids(name: &str) -> Option<(ProjectId, SecretId, KeyId)> {
    let mut parts = name.split('.');
    let (project, secret, key) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((
        ProjectId::parse(project).ok()?,
        SecretId::parse(secret).ok()?,
        KeyId::parse(key).ok()?,
    ))
}

/// The entry `name` holding `bytes`, wrapped again by the current KEK; `Ok(None)` if
/// it already is; `Err(NotAKey)`-like outcomes are reported by [`rewrap_one`].
fn rewrapped(
    envelope: &Envelope,
    name: &str,
    bytes: &[u8],
) -> Result<Option<Vec<u8>>, RewrapError> {
    let crypto = |error| RewrapError::Crypto {
        name: name.to_owned(),
        error,
    };
    if name == LOCAL_CA_ENTRY {
        return crate::order::ca::rewrapped_entry(envelope, bytes).map_err(crypto);
    }
    let (project, secret, key) =
        key_ids(name).ok_or_else(|| RewrapError::Tampered(name.to_owned()))?;
    let wrapped: WrappedKey =
        serde_json::from_slice(bytes).map_err(|_| RewrapError::Tampered(name.to_owned()))?;
    let Some(next) = envelope
        .rewrap(&wrapped, &project, secret, key)
        .map_err(crypto)?
    else {
        return Ok(None);
    };
    serde_json::to_vec(&next)
        .map(Some)
        .map_err(|_| RewrapError::Tampered(name.to_owned()))
}

/// The names of the key store's entries that hold a data key (or the local CA's).
async fn key_entries(kv: &kv::Store) -> Result<Vec<String>, RewrapError> {
    let keys = kv.keys().await.map_err(unavailable)?;
    let names: Vec<String> = keys.try_collect().await.map_err(unavailable)?;
    Ok(names.into_iter().filter(|n| holds_a_key(n)).collect())
}

/// Whether `name` is a data key's entry (or the local CA's), not bookkeeping.
fn holds_a_key(name: &str) -> bool {
    name == LOCAL_CA_ENTRY || name.split('.').count() == 3
}

/// Re-wraps the entry `name` under the current KEK, unless it is gone or done.
pub async fn rewrap_one(
    kv: &kv::Store,
    envelope: &Envelope,
    name: &str,
) -> Result<Outcome, RewrapError> {
    if !holds_a_key(name) {
        return Ok(Outcome::NotAKey);
    }
    for _ in 0..ATTEMPTS {
        let Some(entry) = kv.entry(name).await.map_err(unavailable)? else {
            return Ok(Outcome::Gone);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(Outcome::Gone);
        }
        let Some(next) = rewrapped(envelope, name, &entry.value)? else {
            return Ok(Outcome::Already);
        };
        match write_back(kv, name, next, entry.revision).await? {
            true => return Ok(Outcome::Rewrapped),
            // Destroyed, or changed, since it was read: look again.
            false => continue,
        }
    }
    Err(RewrapError::Busy(name.to_owned()))
}

/// Writes `value` to `name` if it is still at `revision`; `false` if it is not.
pub async fn write_back(
    kv: &kv::Store,
    name: &str,
    value: Vec<u8>,
    revision: u64,
) -> Result<bool, RewrapError> {
    match kv.update(name, value.into(), revision).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
        Err(e) => Err(unavailable(e)),
    }
}

/// How a whole re-wrap went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Entries looked at.
    pub seen: u64,
    /// Re-wrapped by this run.
    pub rewrapped: u64,
    /// Wrapped by the current KEK already.
    pub already: u64,
    /// Destroyed meanwhile.
    pub gone: u64,
    /// Entries that failed (named in the log); running again retries them.
    pub failed: u64,
}

/// Re-wraps every entry of the key store, at most `rate` per second, calling
/// `progress` after each entry.
pub async fn rewrap_all(
    kv: &kv::Store,
    envelope: &Envelope,
    rate: Option<NonZeroU32>,
    mut progress: impl FnMut(&Report),
) -> Result<Report, RewrapError> {
    let mut pace = rate.map(|r| {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(r.get())));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    // The names are listed first: entries made after this are wrapped by the current
    // KEK already.
    let names = key_entries(kv).await?;
    let mut report = Report::default();
    for name in names {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        report.seen += 1;
        match rewrap_one(kv, envelope, &name).await {
            Ok(Outcome::Rewrapped) => report.rewrapped += 1,
            Ok(Outcome::Already) => report.already += 1,
            Ok(Outcome::Gone) => report.gone += 1,
            Ok(Outcome::NotAKey) => {}
            Err(e @ RewrapError::Unavailable(_)) => return Err(e),
            Err(e) => {
                tracing::error!(error = %e, "an entry could not be re-wrapped");
                report.failed += 1;
            }
        }
        progress(&report);
    }
    Ok(report)
}

/// How many entries name each KEK id (and how many are not data keys).
pub async fn census(
    kv: &kv::Store,
) -> Result<std::collections::BTreeMap<String, u64>, RewrapError> {
    let names = key_entries(kv).await?;
    let mut by_kek = std::collections::BTreeMap::new();
    for name in &names {
        let Some(entry) = kv.entry(name.as_str()).await.map_err(unavailable)? else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let kek = if name == LOCAL_CA_ENTRY {
            serde_json::from_slice::<infra::keystore::LocalCaEntry>(&entry.value)
                .map(|e| e.wrapped.kek_id)
        } else {
            serde_json::from_slice::<WrappedKey>(&entry.value).map(|w| w.kek_id)
        }
        .map_err(|_| RewrapError::Tampered(name.clone()))?;
        *by_kek.entry(kek).or_insert(0) += 1;
    }
    Ok(by_kek)
}
