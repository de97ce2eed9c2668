//! The read path's cache of wrapped data keys, so a payload read does not ask the key
//! store (a NATS round trip) for a key it read a moment ago.
//!
//! Only *wrapped* keys are held, never an unwrapped one: what the cache holds is what
//! the key store's files hold. A wrapped key never changes: it is written once under
//! its own key id and afterwards only destroyed (crypto-shredding), and a destroy
//! always follows a commit on the secret's subject that names the key. So the cache
//! forgets a secret's keys whenever a commit on that secret that may destroy keys is
//! published ([`domain::secret::may_destroy_keys`], the test the key shredder passes
//! commits over by), as the commit goes by on NATS, and does not cache that secret's
//! keys again for [`SETTLING`] (the time the command service takes to destroy what the
//! commit names) plus the time a slow key-store read may take. A read model that lags
//! behind the log therefore cannot open a shredded payload from the cache either: it
//! finds the key gone in the key store, as it would without a cache. A commit that
//! destroys nothing (a create, a new version, a change of metadata or ACL) leaves the
//! cache as it is: a secret read right after its create or its last change is served
//! from memory from its second read on. When the subscription may have missed commits
//! (NATS reconnected), the whole cache is forgotten.

use std::sync::Arc;
use std::time::Duration;

use domain::ids::{KeyId, ProjectId, SecretId};
use domain::subject::{AggregateKind, events_filter, parse_aggregate_subject};
use futures::StreamExt as _;
use infra::envelope::WrappedKey;
use infra::keystore::{KeyStore, KeyStoreError};
use moka::sync::Cache;
use tokio_util::sync::CancellationToken;

/// The longest a key stays cached (a bound on memory held for idle secrets).
pub const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// Most secrets whose keys are held: a few hundred bytes each, tens of MiB at most.
pub const CAPACITY: u64 = 100_000;

/// How long after a commit on a secret its keys are read from the key store only.
pub const SETTLING: Duration = Duration::from_secs(5);

/// The longest a key-store read may take for what it found to be cached. A secret
/// stays settling for [`SETTLING`] plus this, so a read that began before a commit's
/// destroy and ended after it finds the secret still settling, however slow it was
/// (the key store retries for seconds while a node catches up).
const SLOWEST_CACHED_READ: Duration = Duration::from_secs(5);

/// A secret's keys, by (project, secret).
type Name = (ProjectId, SecretId);

/// Wrapped data keys by secret, read through from the key store, forgotten when the
/// secret changes.
#[derive(Clone)]
pub struct KeyCache {
    keys: KeyStore,
    cached: Cache<Name, Arc<Vec<(KeyId, WrappedKey)>>>,
    /// Secrets changed in the last [`SETTLING`]: not cached.
    settling: Cache<Name, ()>,
}

impl KeyCache {
    /// A cache in front of `keys` that follows the secrets' commits on `client` until
    /// `shutdown`.
    pub async fn start(
        keys: KeyStore,
        client: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Result<Self, async_nats::SubscribeError> {
        let cache = Self {
            keys,
            cached: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TIME_TO_LIVE)
                .build(),
            settling: Cache::builder()
                .time_to_live(SETTLING + SLOWEST_CACHED_READ)
                .build(),
        };
        let commits = client
            .subscribe(events_filter(None, Some(AggregateKind::Secret), None))
            .await?;
        tokio::spawn(cache.clone().follow(client, commits, shutdown));
        Ok(cache)
    }

    /// Forgets each secret a commit that may destroy keys is published on; everything,
    /// after a reconnect.
    async fn follow(
        self,
        client: async_nats::Client,
        mut commits: async_nats::Subscriber,
        shutdown: CancellationToken,
    ) {
        let mut seen = infra::nats::connects(&client);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = infra::nats::reconnected(&client, seen) => {
                    seen = infra::nats::connects(&client);
                    self.cached.invalidate_all();
                }
                commit = commits.next() => {
                    let Some(commit) = commit else {
                        // The subscription is gone: cache nothing from now on.
                        self.cached.invalidate_all();
                        tracing::warn!("the key cache lost its commit feed; keys are read from the key store only");
                        shutdown.cancelled().await;
                        return;
                    };
                    // Only a commit that names keys to destroy is followed by a
                    // destroy; the others leave every key of the secret as it is.
                    if let Some(name) = secret_of(&commit.subject)
                        && domain::secret::may_destroy_keys(&commit.payload)
                    {
                        self.settling.insert(name.clone(), ());
                        self.cached.invalidate(&name);
                    }
                }
            }
        }
    }

    /// The wrapped key, from memory or the key store; `None` if it was never stored
    /// or has been destroyed (which is not cached).
    pub async fn get(
        &self,
        project: &ProjectId,
        secret: SecretId,
        key: KeyId,
    ) -> Result<Option<WrappedKey>, KeyStoreError> {
        let name = (project.clone(), secret);
        if let Some(held) = self.cached.get(&name)
            && let Some((_, wrapped)) = held.iter().find(|(id, _)| *id == key)
        {
            infra::metrics::cache_lookup(infra::metrics::cache::WRAPPED_KEYS, true);
            return Ok(Some(wrapped.clone()));
        }
        infra::metrics::cache_lookup(infra::metrics::cache::WRAPPED_KEYS, false);
        let began = std::time::Instant::now();
        let found = self.keys.get(project, secret, key).await?;
        if let Some(wrapped) = &found
            && began.elapsed() < SLOWEST_CACHED_READ
            && !self.settling.contains_key(&name)
        {
            let mut held = self
                .cached
                .get(&name)
                .map(|held| held.as_ref().clone())
                .unwrap_or_default();
            held.push((key, wrapped.clone()));
            self.cached.insert(name.clone(), Arc::new(held));
            // A commit that went by between the check above and the insert marked
            // the secret settling and cleared it before this insert: undo it.
            if self.settling.contains_key(&name) {
                self.cached.invalidate(&name);
            }
        }
        Ok(found)
    }

    /// Forgets a secret's keys after one did not open the payload it names, so the
    /// next read asks the key store again (after it has been repaired, say).
    pub fn forget(&self, project: &ProjectId, secret: SecretId) {
        self.cached.invalidate(&(project.clone(), secret));
    }
}

/// The secret a commit's subject names.
fn secret_of(subject: &str) -> Option<Name> {
    match parse_aggregate_subject(subject)? {
        (project, AggregateKind::Secret, id) => Some((project, SecretId::parse(id.as_str()).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_subject_names_its_secret() {
        let id = "00000000-0000-0000-0000-000000000007";
        let (project, secret) = secret_of(&format!("keyledger.events.p1.secret.{id}")).unwrap();
        assert_eq!((project.as_str(), secret.to_string().as_str()), ("p1", id));
        assert_eq!(secret_of("keyledger.events.p1.secret.not-a-uuid"), None);
    }
}
