//! What reads beside a projector keep in memory so that the hottest reads run no SQL:
//! a secret's row with the sealed payload of its current version (payload reads and
//! every look-up of the row: metadata reads, the checks before a change), the
//! sealed access keys of an access key id (every signed AWS request), and the secrets
//! a name resolves to (every AWS request that names its secret). All hold what the
//! read model holds (ciphertext and metadata), never a key.
//!
//! It exists only beside a projector in the same process, which keeps it true: after
//! each batch commits, and before the batch's sequence is published to readers, the
//! projector evicts every secret the batch touched, every access key if it touched
//! any, each name a secret was created under, and every name if a secret expired or
//! was deleted ([`ReadCache::evict`]; the writer reports those, which a commit's
//! subject does not show). So an entry answered when a reader has seen sequence `n` as
//! applied reflects every commit up to `n` (for access keys and names, only one read at
//! or after the last batch that changed any is answered; for rows, only one read at or
//! after the projector's last restart), and a hit is answered as of the later of the
//! applied sequence and the one it was read at. A reader that fetched a row before a batch and stores it after
//! that batch's eviction would keep a stale row; the inserts therefore refuse (and
//! undo) any row read from a snapshot older than the last batch that evicted anything.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use domain::access_key::AccessKeyId;
use domain::ids::{ProjectId, SecretId};
use domain::timestamp::Timestamp;
use moka::sync::Cache;

use super::{Candidate, Named, PayloadRow, SealedAccessKey, SecretRow};
use crate::apply::Changed;

/// Most bytes of rows and ciphertext held (an entry weighs its ciphertext plus
/// [`ROW_WEIGHT`]): about 40,000 secrets with 1 KiB payloads.
pub const CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// What an entry weighs beside its ciphertext: the row's strings, ids and ACL.
pub const ROW_WEIGHT: u32 = 1024;

/// Most access key ids held. An entry is one id's keys: one row of a few hundred
/// bytes, unless the id was imported into several projects.
pub const ACCESS_KEY_IDS: u64 = 20_000;

/// Most names held. An entry is a project and name with the ids and references of the
/// secrets it names (usually one): a few hundred bytes.
pub const NAMES: u64 = 50_000;

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

/// What was read, with the sequence it was read at.
pub type ReadAt<T> = Arc<(u64, T)>;

/// Current payloads by secret, sealed access keys by id and secrets by name, kept true
/// by the projector in this process.
#[derive(Clone)]
pub struct ReadCache {
    /// Each secret's entry with the sequence it was read at.
    entries: Cache<SecretId, ReadAt<Entry>>,
    /// Each id's keys with the sequence they were read at.
    access_keys: Cache<AccessKeyId, ReadAt<Vec<SealedAccessKey>>>,
    /// The secrets each name (of a project) resolves to, with the sequence they were
    /// read at.
    names: Cache<(ProjectId, String), ReadAt<Vec<Named>>>,
    /// The sequence of the last batch that evicted anything.
    evicted: Arc<AtomicU64>,
    /// The sequence of the last batch that changed an access key: a hit read before
    /// it is not answered, whatever moka's `invalidate_all` let through (it forgets
    /// entries by time, and one stored in the same tick of a coarse clock survives).
    access_keys_changed: Arc<AtomicU64>,
    /// The sequence of the last batch in which a secret expired or was deleted: a name
    /// read before it is not answered (the same guard, for the same reason).
    secrets_removed: Arc<AtomicU64>,
    /// The highest sequence the projector (re)started from: an entry read before it is
    /// not answered (the same guard, for `clear`'s `invalidate_all`; entries a batch
    /// touched are invalidated one by one, which forgets them at once).
    cleared: Arc<AtomicU64>,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("entries", &self.entries.entry_count())
            .field("access_keys", &self.access_keys.entry_count())
            .field("names", &self.names.entry_count())
            .field("evicted", &self.evicted.load(Ordering::Relaxed))
            .field(
                "access_keys_changed",
                &self.access_keys_changed.load(Ordering::Relaxed),
            )
            .field(
                "secrets_removed",
                &self.secrets_removed.load(Ordering::Relaxed),
            )
            .field("cleared", &self.cleared.load(Ordering::Relaxed))
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
    /// [`ACCESS_KEY_IDS`] access key ids and [`NAMES`] names).
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .weigher(|_, e: &ReadAt<Entry>| {
                    let sealed = e.1.payload.as_ref().map_or(0, |p| p.ciphertext.len());
                    u32::try_from(sealed)
                        .unwrap_or(u32::MAX)
                        .saturating_add(ROW_WEIGHT)
                })
                .build(),
            access_keys: Cache::new(ACCESS_KEY_IDS),
            names: Cache::new(NAMES),
            evicted: Arc::new(AtomicU64::new(0)),
            access_keys_changed: Arc::new(AtomicU64::new(0)),
            secrets_removed: Arc::new(AtomicU64::new(0)),
            cleared: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The entry of `id` with the sequence it was read at, if held.
    pub fn get(&self, id: SecretId) -> Option<ReadAt<Entry>> {
        let entry = self
            .entries
            .get(&id)
            .filter(|held| held.0 >= self.cleared.load(Ordering::SeqCst));
        crate::metrics::cache_lookup("payload_rows", entry.is_some());
        entry
    }

    /// Holds `entry`, read from the read model's snapshot at sequence `seq`, unless a
    /// batch after `seq` has evicted anything since (then it may be stale); returns
    /// it as held (or as it would have been).
    pub fn insert(&self, id: SecretId, entry: Entry, seq: u64) -> ReadAt<Entry> {
        let held = Arc::new((seq, entry));
        self.fenced(&self.entries, id, held.clone(), seq);
        held
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
            self.fenced(&self.access_keys, id, Arc::new((seq, keys)), seq);
        }
    }

    /// The secrets of `project` named `name`, live or scheduled for deletion and
    /// unexpired at `now`, oldest first, if held.
    pub(crate) fn names(
        &self,
        project: &ProjectId,
        name: &str,
        now: Timestamp,
    ) -> Option<Vec<Candidate>> {
        let now = now.unix_millis();
        let found = self
            .names
            .get(&(project.clone(), name.to_owned()))
            .filter(|held| held.0 >= self.secrets_removed.load(Ordering::SeqCst))
            .map(|held| {
                held.1
                    .iter()
                    .filter(|n| n.expiration_ms.is_none_or(|at| at > now))
                    .map(|n| n.candidate.clone())
                    .collect()
            });
        crate::metrics::cache_lookup("names", found.is_some());
        found
    }

    /// Holds `named`, the secrets of `project` named `name` as read at sequence `seq`
    /// (each unexpired then), unless a batch after `seq` has evicted anything since.
    /// A name that names nothing is not held: a secret created under it later is
    /// then found at once, and made-up names cannot churn the cache.
    pub(crate) fn insert_names(
        &self,
        project: ProjectId,
        name: String,
        named: Vec<Named>,
        seq: u64,
    ) {
        if !named.is_empty() {
            self.fenced(&self.names, (project, name), Arc::new((seq, named)), seq);
        }
    }

    fn fenced<K, V>(&self, cache: &Cache<K, Arc<V>>, key: K, value: Arc<V>, seq: u64)
    where
        K: Hash + Eq + Send + Sync + Clone + 'static,
        V: Send + Sync + 'static,
    {
        if self.evicted.load(Ordering::SeqCst) > seq {
            return;
        }
        cache.insert(key.clone(), value);
        // An eviction that raced with this insert has either set `evicted` already
        // (seen here: undo) or will remove the entry after this point. The fences (here
        // and in `evict`) rule out both sides missing each other's write, which moka's
        // acquire/release map alone would allow.
        fence(Ordering::SeqCst);
        if self.evicted.load(Ordering::SeqCst) > seq {
            cache.invalidate(&key);
        }
    }

    /// Forgets what the batch that ends at `seq` changed: the secrets it touched, every
    /// access key when it changed any, the names it created secrets under, and every
    /// name when a secret expired or was deleted in it. Called after the batch commits
    /// and before `seq` is published as applied.
    pub fn evict(
        &self,
        secrets: impl IntoIterator<Item = SecretId>,
        access_keys: bool,
        changed: &Changed,
        seq: u64,
    ) {
        self.evicted.fetch_max(seq, Ordering::SeqCst);
        if access_keys {
            self.access_keys_changed.fetch_max(seq, Ordering::SeqCst);
        }
        if changed.removed {
            self.secrets_removed.fetch_max(seq, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        for id in secrets {
            self.entries.invalidate(&id);
        }
        for name in &changed.names {
            self.names.invalidate(name);
        }
        if access_keys {
            self.access_keys.invalidate_all();
        }
        if changed.removed {
            self.names.invalidate_all();
        }
    }

    /// Forgets everything: the projector (re)starts from its checkpoint at `seq`, so
    /// whatever happened to the read model before is not assumed.
    pub fn clear(&self, seq: u64) {
        self.evicted.fetch_max(seq, Ordering::SeqCst);
        self.access_keys_changed.fetch_max(seq, Ordering::SeqCst);
        self.secrets_removed.fetch_max(seq, Ordering::SeqCst);
        self.cleared.fetch_max(seq, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.entries.invalidate_all();
        self.access_keys.invalidate_all();
        self.names.invalidate_all();
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
        cache.evict([a], false, &Changed::default(), 6);
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
        cache.evict([id(1)], false, &Changed::default(), 6);
        assert!(
            cache.access_keys(&key).is_some(),
            "a batch of secrets only keeps them"
        );
        cache.evict([], true, &Changed::default(), 7);
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
        cache.evict([id(2)], false, &Changed::default(), 7);
        cache.insert(a, entry(a), 6);
        assert!(
            cache.get(a).is_none(),
            "read at 6, evicted at 7: may be stale"
        );
        cache.insert(a, entry(a), 7);
        assert!(cache.get(a).is_some());
    }

    #[test]
    fn an_entry_read_before_a_restart_is_not_answered() {
        let cache = ReadCache::default();
        let a = id(1);
        cache.clear(6);
        // As if moka's `invalidate_all` had let it through (stored in its tick).
        cache.entries.insert(a, Arc::new((5, entry(a))));
        assert!(cache.get(a).is_none(), "read at 5, restarted from 6");
        cache.entries.insert(a, Arc::new((6, entry(a))));
        assert!(cache.get(a).is_some());
    }

    fn named(n: u8, expiration_ms: Option<i64>) -> Named {
        Named {
            candidate: Candidate {
                id: id(n).to_string(),
                reference: format!("krn:keyledger:p1:secret:db-{n:06}"),
            },
            expiration_ms,
        }
    }

    /// A name is forgotten by a batch that creates a secret under it, or in which any
    /// secret expired or was deleted, never by one that only stores values; what it held expires at
    /// each read; and a resolution read before an eviction is not held.
    #[test]
    fn a_name_is_forgotten_when_what_it_resolves_to_may_change() {
        let cache = ReadCache::default();
        let p1 = ProjectId::parse("p1").unwrap();
        let at = |ms: i64| Timestamp::from_unix_millis(ms).unwrap();
        let resolves = |name: &str, ms: i64| {
            cache
                .names(&p1, name, at(ms))
                .map(|found| found.into_iter().map(|c| c.id).collect::<Vec<_>>())
        };
        cache.insert_names(p1.clone(), "none".into(), Vec::new(), 5);
        assert_eq!(resolves("none", 0), None, "a name of nothing is not held");
        cache.insert_names(
            p1.clone(),
            "db".into(),
            vec![named(1, None), named(2, Some(1_000))],
            5,
        );
        cache.insert_names(p1.clone(), "api".into(), vec![named(3, None)], 5);
        assert_eq!(
            resolves("db", 999),
            Some(vec![id(1).to_string(), id(2).to_string()])
        );
        assert_eq!(
            resolves("db", 1_000),
            Some(vec![id(1).to_string()]),
            "2 expired"
        );

        // Values stored (the secrets touched, no secret created, expired or deleted): kept.
        cache.evict([id(1), id(3)], false, &Changed::default(), 6);
        assert!(resolves("db", 0).is_some() && resolves("api", 0).is_some());

        // A secret created under "db" (in p1; "db" in another project changes nothing).
        let p2 = ProjectId::parse("p2").unwrap();
        let created = |project: &ProjectId| Changed {
            names: vec![(project.clone(), "db".into())],
            removed: false,
        };
        cache.evict([id(4)], false, &created(&p2), 7);
        assert!(resolves("db", 0).is_some());
        cache.evict([id(4)], false, &created(&p1), 8);
        assert_eq!(resolves("db", 0), None);
        assert!(resolves("api", 0).is_some());
        cache.insert_names(p1.clone(), "db".into(), vec![named(1, None)], 7);
        assert_eq!(
            resolves("db", 0),
            None,
            "read at 7, evicted at 8: may be stale"
        );

        // Any secret deleted (or expired): every name.
        cache.insert_names(p1.clone(), "db".into(), vec![named(1, None)], 8);
        assert!(resolves("db", 0).is_some());
        let deleted = Changed {
            names: Vec::new(),
            removed: true,
        };
        cache.evict([id(9)], false, &deleted, 9);
        assert_eq!(resolves("db", 0), None);
        assert_eq!(resolves("api", 0), None);
        cache.insert_names(p1.clone(), "api".into(), vec![named(3, None)], 9);
        assert!(resolves("api", 0).is_some());
    }
}
