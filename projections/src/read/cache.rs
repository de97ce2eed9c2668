//! The payload read's cache: a secret's row and the sealed payload of its current
//! version, as the read model holds them (ciphertext and metadata, never a key), so a
//! payload read that hits it runs no SQL.
//!
//! It exists only beside a projector in the same process, which keeps it true: after
//! each batch commits, and before the batch's sequence is published to readers, the
//! projector evicts every secret the batch touched ([`PayloadCache::evict`]). So an
//! entry present when a reader has seen sequence `n` as applied reflects every commit
//! up to `n`, and a hit is answered as of the applied sequence. A reader that fetched a
//! row before a batch and stores it after that batch's eviction would keep a stale
//! row; [`PayloadCache::insert`] therefore refuses (and undoes) any row read from a
//! snapshot older than the last batch that evicted anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use domain::ids::SecretId;
use moka::sync::Cache;

use super::{PayloadRow, SecretRow};

/// Most bytes of rows and ciphertext held (an entry weighs its ciphertext plus
/// [`ROW_WEIGHT`]): about 40,000 secrets with 1 KiB payloads.
pub const CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// What an entry weighs beside its ciphertext: the row's strings, ids and ACL.
pub const ROW_WEIGHT: u32 = 1024;

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

/// Current payloads by secret, kept true by the projector in this process.
#[derive(Clone)]
pub struct PayloadCache {
    entries: Cache<SecretId, Arc<Entry>>,
    /// The sequence of the last batch that evicted anything.
    evicted: Arc<AtomicU64>,
}

impl std::fmt::Debug for PayloadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadCache")
            .field("entries", &self.entries.entry_count())
            .field("evicted", &self.evicted.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for PayloadCache {
    fn default() -> Self {
        Self::new(CAPACITY_BYTES)
    }
}

impl PayloadCache {
    /// A cache of at most `capacity` bytes.
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
            evicted: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The entry of `id`, if held.
    pub fn get(&self, id: SecretId) -> Option<Arc<Entry>> {
        let entry = self.entries.get(&id);
        crate::metrics::payload_row_lookup(entry.is_some());
        entry
    }

    /// Holds `entry`, read from the read model's snapshot at sequence `seq`, unless a
    /// batch after `seq` has evicted anything since (then it may be stale).
    pub fn insert(&self, id: SecretId, entry: Entry, seq: u64) {
        if self.evicted.load(Ordering::SeqCst) > seq {
            return;
        }
        self.entries.insert(id, Arc::new(entry));
        // An eviction that raced with this insert has either set `evicted` already
        // (seen here: undo) or will remove the entry after this point. The fences (here
        // and in `evict`) rule out both sides missing each other's write, which moka's
        // acquire/release map alone would allow.
        fence(Ordering::SeqCst);
        if self.evicted.load(Ordering::SeqCst) > seq {
            self.entries.invalidate(&id);
        }
    }

    /// Forgets `touched`, changed by the batch that ends at `seq`. Called after the
    /// batch commits and before `seq` is published as applied.
    pub fn evict(&self, touched: impl IntoIterator<Item = SecretId>, seq: u64) {
        self.evicted.fetch_max(seq, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        for id in touched {
            self.entries.invalidate(&id);
        }
    }

    /// Forgets everything: the projector (re)starts from its checkpoint at `seq`, so
    /// whatever happened to the read model before is not assumed.
    pub fn clear(&self, seq: u64) {
        self.evicted.fetch_max(seq, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.entries.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> SecretId {
        SecretId::parse(&format!("00000000-0000-0000-0000-0000000000{n:02}")).unwrap()
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
        let cache = PayloadCache::default();
        let (a, b) = (id(1), id(2));
        cache.insert(a, entry(a), 5);
        cache.insert(b, entry(b), 5);
        cache.evict([a], 6);
        assert!(cache.get(a).is_none());
        assert!(cache.get(b).is_some());
    }

    #[test]
    fn a_row_read_before_the_last_eviction_is_not_held() {
        let cache = PayloadCache::default();
        let a = id(1);
        cache.evict([id(2)], 7);
        cache.insert(a, entry(a), 6);
        assert!(
            cache.get(a).is_none(),
            "read at 6, evicted at 7: may be stale"
        );
        cache.insert(a, entry(a), 7);
        assert!(cache.get(a).is_some());
    }
}
