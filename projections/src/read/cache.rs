//! What reads beside a projector keep in memory so that the hottest reads run no SQL:
//! a secret's row with the sealed payload of its current version (payload reads), and
//! the sealed access keys of an access key id (every signed AWS request). Both hold
//! what the read model holds (ciphertext and metadata), never a key.
//!
//! It exists only beside a projector in the same process, which keeps it true: after
//! each batch commits, and before the batch's sequence is published to readers, the
//! projector evicts every secret the batch touched, and every access key if it touched
//! any ([`ReadCache::evict`]). So an entry answered when a reader has seen sequence
//! `n` as applied reflects every commit up to `n` (for access keys, only one read at or
//! after the last batch that changed one is answered), and a hit is answered as of the
//! applied sequence. A reader that fetched a row before a batch and stores it after that
//! batch's eviction would keep a stale row; the inserts therefore refuse (and undo) any
//! row read from a snapshot older than the last batch that evicted anything.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use domain::access_key::AccessKeyId;
use domain::ids::SecretId;
use moka::sync::Cache;

use super::{PayloadRow, SealedAccessKey, SecretRow};

/// Most bytes of rows and ciphertext held (an entry weighs its ciphertext plus
/// [`ROW_WEIGHT`]): about 40,000 secrets with 1 KiB payloads.
pub const CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// What an entry weighs beside its ciphertext: the row's strings, ids and ACL.
pub const ROW_WEIGHT: u32 = 1024;

/// Most access key ids held. An entry is one id's keys: one row of a few hundred
/// bytes, unless the id was imported into several projects.
pub const ACCESS_KEY_IDS: u64 = 20_000;

/// A secret's row as read (with its expiry and status, judged again at each read) and
/// the sealed payload of its current version.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The row.
    pub row: SecretRow,
    /// When it expires (Unix milliseconds).
    pub expiration_ms: Option<i64>,
    /// Its status column.
    pub status: String,
    /// The current version's sealed payload, if it has one.
    pub payload: Option<PayloadRow>,
}

/// Current payloads by secret and sealed access keys by id, kept true by the
/// projector in this process.
#[derive(Clone)]
pub struct ReadCache {
    entries: Cache<SecretId, Arc<Entry>>,
    /// Each id's keys with the sequence they were read at.
    access_keys: Cache<AccessKeyId, Arc<(u64, Vec<SealedAccessKey>)>>,
    /// The sequence of the last batch that evicted anything.
    evicted: Arc<AtomicU64>,
    /// The sequence of the last batch that changed an access key: a hit read before
    /// it is not answered, whatever moka's `invalidate_all` let through (it forgets
    /// entries by time, and one stored in the same tick of a coarse clock survives).
    access_keys_changed: Arc<AtomicU64>,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("entries", &self.entries.entry_count())
            .field("access_keys", &self.access_keys.entry_count())
            .field("evicted", &self.evicted.load(Ordering::Relaxed))
            .field(
                "access_keys_changed",
                &self.access_keys_changed.load(Ordering::Relaxed),
            )
            .finish()
    }
}

impl Default for ReadCache {
    fn default() -> Self {
        Self::new(CAPACITY_BYTES)
    }
}

impl ReadCache {
    /// A cache of at most `capacity` bytes of payload entries (and at most
    /// [`ACCESS_KEY_IDS`] access key ids).
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .weigher(|_, e: &Arc<Entry>| {
                    let sealed = e.payload.as_ref().map_or(0, |p| p.ciphertext.len());
                    u32::try_from(sealed)
                        .unwrap_or(u32::MAX)
                        .saturating_add(ROW_WEIGHT)
                })
                .build(),
            access_keys: Cache::new(ACCESS_KEY_IDS),
            evicted: Arc::new(AtomicU64::new(0)),
            access_keys_changed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The entry of `id`, if held.
    pub fn get(&self, id: SecretId) -> Option<Arc<Entry>> {
        let entry = self.entries.get(&id);
        crate::metrics::cache_lookup("payload_rows", entry.is_some());
        entry
    }

    /// Holds `entry`, read from the read model's snapshot at sequence `seq`, unless a
    /// batch after `seq` has evicted anything since (then it may be stale).
    pub fn insert(&self, id: SecretId, entry: Entry, seq: u64) {
        self.fenced(&self.entries, id, entry, seq);
    }

    /// The sealed access keys with the id `id` (in every project), if held.
    pub fn access_keys(&self, id: &AccessKeyId) -> Option<Vec<SealedAccessKey>> {
        let keys = self
            .access_keys
            .get(id)
            .filter(|held| held.0 >= self.access_keys_changed.load(Ordering::SeqCst))
            .map(|held| held.1.clone());
        crate::metrics::cache_lookup("access_keys", keys.is_some());
        keys
    }

    /// Holds `keys`, every access key with the id `id` as read at sequence `seq`,
    /// unless a batch after `seq` has evicted anything since. An id without keys is
    /// not held: requests signed with made-up ids would otherwise churn the cache.
    pub fn insert_access_keys(&self, id: AccessKeyId, keys: Vec<SealedAccessKey>, seq: u64) {
        if !keys.is_empty() {
            self.fenced(&self.access_keys, id, (seq, keys), seq);
        }
    }

    fn fenced<K, V>(&self, cache: &Cache<K, Arc<V>>, key: K, value: V, seq: u64)
    where
        K: Hash + Eq + Send + Sync + Clone + 'static,
        V: Send + Sync + 'static,
    {
        if self.evicted.load(Ordering::SeqCst) > seq {
            return;
        }
        cache.insert(key.clone(), Arc::new(value));
        // An eviction that raced with this insert has either set `evicted` already
        // (seen here: undo) or will remove the entry after this point. The fences (here
        // and in `evict`) rule out both sides missing each other's write, which moka's
        // acquire/release map alone would allow.
        fence(Ordering::SeqCst);
        if self.evicted.load(Ordering::SeqCst) > seq {
            cache.invalidate(&key);
        }
    }

    /// Forgets the secrets changed by the batch that ends at `seq`, and every access
    /// key when it changed any. Called after the batch commits and before `seq` is
    /// published as applied.
    pub fn evict(&self, secrets: impl IntoIterator<Item = SecretId>, access_keys: bool, seq: u64) {
        self.evicted.fetch_max(seq, Ordering::SeqCst);
        if access_keys {
            self.access_keys_changed.fetch_max(seq, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        for id in secrets {
            self.entries.invalidate(&id);
        }
        if access_keys {
            self.access_keys.invalidate_all();
        }
    }

    /// Forgets everything: the projector (re)starts from its checkpoint at `seq`, so
    /// whatever happened to the read model before is not assumed.
    pub fn clear(&self, seq: u64) {
        self.evicted.fetch_max(seq, Ordering::SeqCst);
        self.access_keys_changed.fetch_max(seq, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.entries.invalidate_all();
        self.access_keys.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> SecretId {
        SecretId::parse(&format!("00000000-0000-0000-0000-0000000000{n:02}")).unwrap()
    }

    fn sealed(id: &AccessKeyId) -> SealedAccessKey {
        SealedAccessKey {
            key: crate::read::AccessKeyRow {
                project: domain::ids::ProjectId::parse("p1").unwrap(),
                access_key_id: id.clone(),
                user: domain::ids::UserId::parse("alice").unwrap(),
                roles: Vec::new(),
                service: None,
                status: "active".into(),
                creator: domain::ids::UserId::parse("alice").unwrap(),
                created: String::new(),
                revoked: None,
            },
            key_id: domain::ids::KeyId::parse("00000000-0000-0000-0000-000000000001").unwrap(),
            version_id: domain::ids::VersionId::parse("00000000-0000-0000-0000-000000000002")
                .unwrap(),
            nonce: Vec::new(),
            ciphertext: Vec::new(),
        }
    }

    fn entry(id: SecretId) -> Entry {
        let row = SecretRow {
            project: domain::ids::ProjectId::parse("p1").unwrap(),
            id,
            name: None,
            secret_type: "opaque".into(),
            algorithm: None,
            bit_length: None,
            mode: None,
            expiration: None,
            creator: domain::ids::UserId::parse("alice").unwrap(),
            created: String::new(),
            updated: String::new(),
            content_type: None,
            version: 1,
            acl: domain::secret::acl::Acl::default(),
            owning_service: None,
            reference: String::new(),
            purge_at: None,
            tags: std::collections::BTreeMap::new(),
            version_count: 0,
            acl_set: None,
            consumers: Vec::new(),
            rotation: None,
            description: None,
        };
        Entry {
            row,
            expiration_ms: None,
            status: "active".into(),
            payload: None,
        }
    }

    #[test]
    fn an_eviction_forgets_what_its_batch_touched() {
        let cache = ReadCache::default();
        let (a, b) = (id(1), id(2));
        cache.insert(a, entry(a), 5);
        cache.insert(b, entry(b), 5);
        cache.evict([a], false, 6);
        assert!(cache.get(a).is_none());
        assert!(cache.get(b).is_some());
    }

    #[test]
    fn a_batch_that_changes_any_access_key_forgets_them_all() {
        let cache = ReadCache::default();
        let key = AccessKeyId::parse("AKLGTESTTESTTEST0001").unwrap();
        cache.insert_access_keys(key.clone(), Vec::new(), 5);
        assert!(cache.access_keys(&key).is_none(), "no keys: not held");
        cache.insert_access_keys(key.clone(), vec![sealed(&key)], 5);
        cache.evict([id(1)], false, 6);
        assert!(
            cache.access_keys(&key).is_some(),
            "a batch of secrets only keeps them"
        );
        cache.evict([], true, 7);
        assert!(cache.access_keys(&key).is_none());
        cache.insert_access_keys(key.clone(), vec![sealed(&key)], 6);
        assert!(
            cache.access_keys(&key).is_none(),
            "read at 6, evicted at 7: may be stale"
        );
        cache.insert_access_keys(key.clone(), vec![sealed(&key)], 7);
        assert!(cache.access_keys(&key).is_some());
    }

    #[test]
    fn a_row_read_before_the_last_eviction_is_not_held() {
        let cache = ReadCache::default();
        let a = id(1);
        cache.evict([id(2)], false, 7);
        cache.insert(a, entry(a), 6);
        assert!(
            cache.get(a).is_none(),
            "read at 6, evicted at 7: may be stale"
        );
        cache.insert(a, entry(a), 7);
        assert!(cache.get(a).is_some());
    }
}
