//! The read path's cache of wrapped data keys, so a payload read does not ask the key
//! store (a NATS round trip) for a key it read a moment ago.
//!
//! Only *wrapped* keys are held, never an unwrapped one: what the cache holds is what
//! the key store's files hold. It is safe because a wrapped key never changes: it is
//! written once under its own key id (a new version gets a new id) and afterwards only
//! destroyed. A read reaches a key only through the read-model row that names it, at
//! the sequence the read reports, so a secret deleted or expired at that sequence is
//! never opened from the cache; a read just before the deletion's sequence may open
//! it, as it would have from the key store a moment earlier. What crypto-shredding
//! leaves is a copy in this process's memory for at most [`TIME_TO_LIVE`].

use std::time::Duration;

use domain::ids::{KeyId, ProjectId, SecretId};
use infra::envelope::WrappedKey;
use infra::keystore::{KeyStore, KeyStoreError};
use moka::sync::Cache;

/// The longest a destroyed key's wrapped copy stays in memory.
pub const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// Most keys held: about 200 bytes each, so about 20 MiB at most.
pub const CAPACITY: u64 = 100_000;

/// Wrapped data keys by (project, secret, key id), read through from the key store.
#[derive(Clone)]
pub struct KeyCache {
    keys: KeyStore,
    cache: Cache<(ProjectId, SecretId, KeyId), WrappedKey>,
}

impl KeyCache {
    /// A cache in front of `keys`.
    pub fn new(keys: KeyStore) -> Self {
        Self {
            keys,
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TIME_TO_LIVE)
                .build(),
        }
    }

    /// The wrapped key, from memory or the key store; `None` if it was never stored
    /// or has been destroyed (which is not cached: it is the rare case).
    pub async fn get(
        &self,
        project: &ProjectId,
        secret: SecretId,
        key: KeyId,
    ) -> Result<Option<WrappedKey>, KeyStoreError> {
        let name = (project.clone(), secret, key);
        if let Some(wrapped) = self.cache.get(&name) {
            return Ok(Some(wrapped));
        }
        let found = self.keys.get(project, secret, key).await?;
        if let Some(wrapped) = &found {
            self.cache.insert(name, wrapped.clone());
        }
        Ok(found)
    }

    /// Forgets a key that did not open the payload it names, so the next read asks the
    /// key store again (after it has been repaired, say).
    pub fn forget(&self, project: &ProjectId, secret: SecretId, key: KeyId) {
        self.cache.invalidate(&(project.clone(), secret, key));
    }
}
