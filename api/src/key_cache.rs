//! The read path's cache of wrapped data keys, so a payload read does not ask the key
//! store (a NATS round trip) for a key it read a moment ago.
//!
//! Only *wrapped* keys are held, never an unwrapped one: what the cache holds is what
//! the key store's files hold. A wrapped key is written once under its own key id,
//! afterwards only destroyed (crypto-shredding) or wrapped anew by a KEK rewrap (the
//! same data key, so a copy wrapped by the old KEK opens the same payloads while that
//! KEK is held; on the payload path, one that no longer opens is forgotten), and a
//! destroy always follows a commit on the secret's subject that names the key. So the
//! cache forgets a secret's keys whenever a commit on that secret that may destroy keys is published
//! ([`domain::secret::may_destroy_keys`], the test the key shredder passes commits
//! over by), as the commit goes by on NATS, and does not cache that secret's keys
//! again for [`SETTLING`] (the time the command service takes to destroy what the
//! commit names) plus the time a slow key-store read may take. A read model that lags
//! behind the log therefore cannot open a shredded payload from the cache either: it
//! finds the key gone in the key store, as it would without a cache. A commit that
//! destroys nothing (a create, a change of metadata or ACL, a new version that prunes
//! none) leaves the cache as it is: a secret read right after its create or its last
//! change is served from memory from its second read on. While NATS is disconnected,
//! or has reconnected before the follower noticed, nothing held is answered; once the
//! reconnect is noticed, nothing fetched before it is answered and nothing is cached
//! for as long as after a destroying commit. Commits the client dropped because the
//! follower fell behind (a slow consumer: more than [`FEED_MESSAGES`] waiting) are
//! missed commits too, handled the same way: the feed has a connection of its own,
//! whose client counts each drop as it drops it, and from then until the follower has
//! noticed it nothing held is answered. Commits the client has received and the
//! follower not yet taken are late, not missed: while more than [`MOST_WAITING`] wait,
//! nothing held is answered either. Commits not yet received (in the socket, or in
//! nats-server's buffer for the connection) cannot be counted: a destroy that
//! completes while its commit is held there can be outlived by a hit for as long as
//! it is. A feed gone for good (or a follower that stopped) leaves every read to the
//! key store.
//!
//! Each key is answered for at most [`TIME_TO_LIVE`] from the read that fetched it, and
//! a secret holds its most recently fetched [`KEYS_PER_SECRET`] at most.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use domain::ids::{KeyId, ProjectId, SecretId};
use domain::subject::{AggregateKind, events_filter, parse_aggregate_subject};
use futures::StreamExt as _;
use infra::envelope::WrappedKey;
use infra::keystore::{KeyStore, KeyStoreError};
use moka::sync::Cache;
use tokio_util::sync::CancellationToken;

/// The longest a key is answered from the read that fetched it (a bound on how long a
/// copy can outlive a destroy the command service failed and left to the key
/// shredder); a secret no read has fetched a key of for this long is forgotten.
pub const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// Most keys held: each about 300 bytes with its share of its secret's entry, so
/// some 60–120 MiB at most.
pub const CAPACITY: u64 = 200_000;

/// Most keys held per secret: its newest fetched. Reads name the current version's
/// key, now and then a labelled older one's.
pub const KEYS_PER_SECRET: usize = 8;

/// How long after a commit on a secret that may destroy keys its keys are read from
/// the key store only.
pub const SETTLING: Duration = Duration::from_secs(5);

/// The longest a key-store read may take for what it found to be cached. A secret
/// stays settling for [`SETTLING`] plus this, so a read that began before a commit's
/// destroy and ended after it finds the secret still settling, however slow it was
/// (the key store retries for seconds while a node catches up).
const SLOWEST_CACHED_READ: Duration = Duration::from_secs(5);

/// How long after a noticed reconnect or drop nothing is cached: as long as a secret
/// settles after a destroying commit.
pub const PAUSE: Duration = Duration::from_secs(SETTLING.as_secs() + SLOWEST_CACHED_READ.as_secs());

/// [`PAUSE`] in nanoseconds, as the feed's instants are kept.
const PAUSE_NANOS: u64 = PAUSE.as_nanos() as u64;

/// Commits the feed's connection holds that the follower has not taken yet; beyond
/// them it drops commits, and the cache forgets every key it holds and caches nothing
/// for 10 s. About 0.8 s of commits at 5,000/s, and at most some 370 MB of the
/// largest commits (64 KiB payloads): the follower takes each in a few microseconds,
/// so only a connection handler or follower stalled that long drops any.
pub const FEED_MESSAGES: usize = 4_096;

/// Most commits that may wait for the follower (received, not yet taken) while the
/// cache answers what it holds: a destroying commit among them is seen within the
/// time the follower takes for this many.
pub const MOST_WAITING: u64 = 64;

/// How often the follower looks for commits missed (a reconnect, a drop). A hit
/// meanwhile is refused at once ([`KeyCache::following`] reads the same counts): the
/// follower only has to notice before hits resume.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// A secret's keys, by (project, secret).
type Name = (ProjectId, SecretId);

/// A key held, with when it was fetched.
type Held = (KeyId, WrappedKey, Instant);

/// Wrapped data keys by secret, read through from the key store, forgotten when a
/// commit on the secret may destroy any.
#[derive(Clone)]
pub struct KeyCache {
    keys: KeyStore,
    /// The connection the commits are followed on, the feed's alone: every message it
    /// receives or drops is a commit.
    client: async_nats::Client,
    /// Its counts (connections, messages received and dropped), read on every hit.
    stats: Arc<async_nats::Statistics>,
    cached: Cache<Name, Arc<[Held]>>,
    /// Secrets with a commit that may destroy keys in the last [`SETTLING`] (plus
    /// [`SLOWEST_CACHED_READ`]): not cached.
    settling: Cache<Name, ()>,
    feed: Arc<Feed>,
}

/// What the cache knows of its commit feed, read on every hit (so without a lock).
struct Feed {
    /// Instants here are nanoseconds since this one.
    epoch: Instant,
    /// When the follower last noticed commits it may have missed, a reconnect or a
    /// drop (0: never; `u64::MAX`: the feed is gone for good): nothing fetched before
    /// it is answered, and nothing is cached for as long as after a destroying commit.
    missed_at: AtomicU64,
    /// The client's connections the follower has seen: a hit needs the client
    /// connected, on the last of them.
    followed: AtomicU64,
    /// The messages the client had dropped when the follower last looked: a hit needs
    /// no drop since.
    dropped: AtomicU64,
    /// Messages the client had received and not dropped when the cache was made
    /// (before it subscribed), plus the commits the follower has taken since: messages
    /// received and not dropped beyond these are waiting.
    taken: AtomicU64,
}

impl Feed {
    const GONE: u64 = u64::MAX;

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(Self::GONE - 1)
    }

    /// Whether a key fetched at `at` may be answered: less than [`TIME_TO_LIVE`] ago,
    /// and after the follower last noticed missed commits.
    fn answerable(&self, at: Instant) -> bool {
        let missed_at = self.missed_at.load(Ordering::SeqCst);
        at.elapsed() < TIME_TO_LIVE && (missed_at == 0 || self.nanos(at) > missed_at)
    }

    /// Whether a key fetched from `began` on may not be cached: the feed is gone, or
    /// commits were missed after the fetch began, or so recently that one missed then
    /// may still be followed by its destroy.
    fn caching_paused(&self, began: Instant) -> bool {
        let missed_at = self.missed_at.load(Ordering::SeqCst);
        missed_at != 0
            && (self.nanos(began) <= missed_at
                || self.nanos(Instant::now()).saturating_sub(missed_at) < PAUSE_NANOS)
    }
}

/// Marks the feed gone when the follower ends.
struct FeedGone(Arc<Feed>);

impl Drop for FeedGone {
    fn drop(&mut self) {
        self.0.missed_at.store(Feed::GONE, Ordering::SeqCst);
    }
}

/// The keys a secret holds once `new` joins `held`: those still answerable, `new`
/// once, the newest [`KEYS_PER_SECRET`].
fn merged(held: &[Held], new: Held, answerable: impl Fn(Instant) -> bool) -> Arc<[Held]> {
    let mut keys: Vec<Held> = held
        .iter()
        .filter(|(id, _, at)| *id != new.0 && answerable(*at))
        .cloned()
        .collect();
    keys.push(new);
    let excess = keys.len().saturating_sub(KEYS_PER_SECRET);
    keys.drain(..excess);
    keys.into()
}

/// The secret whose keys a commit on `subject` with bytes `payload` makes the cache
/// forget: a secret's, when the commit may destroy keys.
fn forgets(subject: &str, payload: &[u8]) -> Option<Name> {
    secret_of(subject).filter(|_| domain::secret::may_destroy_keys(payload))
}

impl KeyCache {
    /// A cache in front of `keys` that follows the secrets' commits on `client` until
    /// `shutdown`. `client` is the feed's alone (made with
    /// [`infra::nats::connect_buffering`] for [`FEED_MESSAGES`]): no other
    /// subscription or request may use it, since every message it receives is counted
    /// as a commit for the follower (one it never takes would count as waiting for
    /// good, and after [`MOST_WAITING`] of them nothing held would be answered).
    pub async fn start(
        keys: KeyStore,
        client: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Result<Self, async_nats::SubscribeError> {
        let stats = client.statistics();
        let cache = Self {
            keys,
            client: client.clone(),
            stats: stats.clone(),
            cached: Cache::builder()
                .max_capacity(CAPACITY)
                // At most [`KEYS_PER_SECRET`] keys: the weight always fits.
                .weigher(|_, held: &Arc<[Held]>| u32::try_from(held.len()).unwrap_or(u32::MAX))
                // Each key's own age bounds it too (`get`); this forgets idle secrets.
                .time_to_live(TIME_TO_LIVE)
                .build(),
            settling: Cache::builder()
                .time_to_live(SETTLING + SLOWEST_CACHED_READ)
                .build(),
            feed: Arc::new(Feed {
                epoch: Instant::now(),
                missed_at: AtomicU64::new(0),
                followed: AtomicU64::new(stats.connects.load(Ordering::SeqCst)),
                dropped: AtomicU64::new(stats.dropped_messages.load(Ordering::SeqCst)),
                taken: AtomicU64::new(received(&stats)),
            }),
        };
        let commits = client
            .subscribe(events_filter(None, Some(AggregateKind::Secret), None))
            .await?;
        tokio::spawn(cache.clone().follow(commits, shutdown));
        Ok(cache)
    }

    /// Forgets each secret a commit that may destroy keys is published on; everything,
    /// after a reconnect or a drop.
    async fn follow(self, mut commits: async_nats::Subscriber, shutdown: CancellationToken) {
        // However the follower ends (shutdown, a panic), nothing is answered or cached
        // after it: no one forgets keys any more.
        let _gone = FeedGone(self.feed.clone());
        // One timer for the follower's life, not one per commit.
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = look.tick() => {
                    // The counts the follower last saw (at first, those the cache was
                    // made with): a reconnect or a drop since then is a commit missed.
                    let connects = self.stats.connects.load(Ordering::SeqCst);
                    let dropped = self.stats.dropped_messages.load(Ordering::SeqCst);
                    let reconnected = connects != self.feed.followed.load(Ordering::SeqCst);
                    let lost = dropped != self.feed.dropped.load(Ordering::SeqCst);
                    if lost {
                        tracing::warn!("the key cache's commit feed dropped commits; forgetting every key held");
                    }
                    if reconnected || lost {
                        self.missed();
                        self.feed.followed.store(connects, Ordering::SeqCst);
                        self.feed.dropped.store(dropped, Ordering::SeqCst);
                    }
                }
                commit = commits.next() => {
                    let Some(commit) = commit else {
                        // The subscription is gone: nothing is answered or cached
                        // from now on.
                        self.feed.missed_at.store(Feed::GONE, Ordering::SeqCst);
                        self.cached.invalidate_all();
                        tracing::warn!("the key cache lost its commit feed; keys are read from the key store only");
                        shutdown.cancelled().await;
                        return;
                    };
                    // Only a commit that names keys to destroy is followed by a
                    // destroy; the others leave every key of the secret as it is.
                    if let Some(name) = forgets(&commit.subject, &commit.payload) {
                        self.settling.insert(name.clone(), ());
                        self.cached.invalidate(&name);
                    }
                    // Taken once it is forgotten: a hit that counts it taken finds the
                    // secret forgotten.
                    self.feed.taken.fetch_add(1, Ordering::SeqCst);
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
        if self.following()
            && let Some(held) = self.cached.get(&name)
            && let Some((_, wrapped, _)) = held
                .iter()
                .find(|(id, _, at)| *id == key && self.feed.answerable(*at))
        {
            infra::metrics::cache_lookup(infra::metrics::cache::WRAPPED_KEYS, true);
            return Ok(Some(wrapped.clone()));
        }
        infra::metrics::cache_lookup(infra::metrics::cache::WRAPPED_KEYS, false);
        // Boxed: the key store's future is kilobytes, which inline would enlarge every
        // payload read's future, hits included.
        Box::pin(self.fetch(name, project, secret, key)).await
    }

    /// [`get`](Self::get) from the key store, holding what it finds when that is safe.
    async fn fetch(
        &self,
        name: (ProjectId, SecretId),
        project: &ProjectId,
        secret: SecretId,
        key: KeyId,
    ) -> Result<Option<WrappedKey>, KeyStoreError> {
        let began = Instant::now();
        let found = self.keys.get(project, secret, key).await?;
        if let Some(wrapped) = &found
            && began.elapsed() < SLOWEST_CACHED_READ
            && !self.settling.contains_key(&name)
            && !self.feed.caching_paused(began)
            && self.following()
        {
            let held = merged(
                self.cached.get(&name).as_deref().unwrap_or_default(),
                (key, wrapped.clone(), began),
                |at| self.feed.answerable(at),
            );
            self.cached.insert(name.clone(), held);
            // A commit (or a reconnect) that went by between the checks above and the
            // insert cleared the cache before this insert: undo it. (A reconnect not
            // yet noticed needs no undo: what was fetched before it is never answered
            // once it is.)
            if self.settling.contains_key(&name) || self.feed.caching_paused(began) {
                self.cached.invalidate(&name);
            }
        }
        Ok(found)
    }

    /// Commits may have gone by unseen (a reconnect, a drop): a destroy may have
    /// followed one, so nothing is cached until it would have settled, and what is
    /// held is not answered (whatever moka's `invalidate_all` lets through: it forgets
    /// by time, and keeps an entry stored in the same tick).
    fn missed(&self) {
        let now = self.feed.nanos(Instant::now());
        self.feed.missed_at.fetch_max(now.max(1), Ordering::SeqCst);
        self.cached.invalidate_all();
    }

    /// Whether the commit feed is live: the client connected, on the connection the
    /// follower last saw (a reconnect it has not noticed yet may have missed commits),
    /// with no commit dropped since the follower's last look and at most
    /// [`MOST_WAITING`] waiting for it.
    fn following(&self) -> bool {
        let stats = &self.stats;
        self.client.connection_state() == async_nats::connection::State::Connected
            && stats.connects.load(Ordering::SeqCst) == self.feed.followed.load(Ordering::SeqCst)
            && stats.dropped_messages.load(Ordering::SeqCst)
                == self.feed.dropped.load(Ordering::SeqCst)
            && received(stats).saturating_sub(self.feed.taken.load(Ordering::SeqCst))
                <= MOST_WAITING
    }

    /// Forgets a secret's keys after one did not open the payload it names, so the
    /// next read asks the key store again (after it has been repaired, say).
    pub fn forget(&self, project: &ProjectId, secret: SecretId) {
        self.cached.invalidate(&(project.clone(), secret));
    }
}

/// The messages a client has received and not dropped: on the feed's connection,
/// commits taken by the follower or waiting for it.
fn received(stats: &async_nats::Statistics) -> u64 {
    // The client counts a message received before it hands it on or drops it.
    let dropped = stats.dropped_messages.load(Ordering::SeqCst);
    stats
        .in_messages
        .load(Ordering::SeqCst)
        .saturating_sub(dropped)
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
    use domain::commit::{AggregateRef, CommitKey, NewCommit};
    use domain::ids::{CommandId, UserId, VersionId};
    use domain::principal::Actor;
    use domain::secret::fields::{MetadataKey, MetadataValue};
    use domain::secret::{
        AclSet, MetadatumSet, SecretCreated, SecretDeleted, SecretEvent, SecretExpired,
        VersionsDestroyed,
    };
    use domain::timestamp::Timestamp;

    #[test]
    fn a_commit_subject_names_its_secret() {
        let id = "00000000-0000-0000-0000-000000000007";
        let (project, secret) = secret_of(&format!("keyledger.events.p1.secret.{id}")).unwrap();
        assert_eq!((project.as_str(), secret.to_string().as_str()), ("p1", id));
        assert_eq!(secret_of("keyledger.events.p1.secret.not-a-uuid"), None);
    }

    /// The commit as the command service writes it, with `events`.
    fn written(subject_id: &str, events: Vec<SecretEvent>) -> (String, Vec<u8>) {
        let commit = NewCommit {
            id: CommandId::parse("c1").unwrap(),
            aggregate: AggregateRef {
                kind: AggregateKind::Secret,
                project: ProjectId::parse("p1").unwrap(),
                id: SecretId::parse(subject_id).unwrap().into(),
            },
            version: 2,
            command: "test".into(),
            actor: Actor::scheduler(),
            at: Timestamp::from_unix_millis(1_796_000_000_000).unwrap(),
            events,
        }
        .seal_for_log(None, &CommitKey::new([7; 32]));
        (commit.commit.body.aggregate.subject(), commit.bytes)
    }

    fn held(n: u128, at: Instant) -> Held {
        let wrapped = serde_json::from_value(serde_json::json!({
            "kek_id": "k0", "nonce": "AAAA", "wrapped": "AAAA",
        }))
        .unwrap();
        (KeyId::from_uuid(uuid::Uuid::from_u128(n)), wrapped, at)
    }

    fn ids(held: &[Held]) -> Vec<u128> {
        held.iter()
            .map(|(id, _, _)| id.as_uuid().as_u128())
            .collect()
    }

    #[test]
    fn a_secret_holds_its_newest_keys_each_once_and_none_too_old() {
        let now = Instant::now();
        let young = |_: Instant| true;
        let eight: Vec<Held> = (1..=8).map(|n| held(n, now)).collect();
        // A ninth pushes the oldest out.
        assert_eq!(
            ids(&merged(&eight, held(9, now), young)),
            (2..=9).collect::<Vec<_>>()
        );
        // A key fetched again is held once, as the newest.
        assert_eq!(
            ids(&merged(&eight[..3], held(2, now), young)),
            vec![1, 3, 2]
        );
        // Keys no longer answerable are dropped.
        let stale = now;
        let fresh = now + Duration::from_nanos(1);
        let mixed = vec![held(1, stale), held(2, fresh)];
        let merged = merged(&mixed, held(3, fresh), |at| at != stale);
        assert_eq!(ids(&merged), vec![2, 3]);
    }

    #[test]
    fn after_a_reconnect_nothing_fetched_before_is_answered_nor_anything_cached_for_a_while() {
        let feed = Feed {
            epoch: Instant::now(),
            missed_at: AtomicU64::new(0),
            followed: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        };
        let before = Instant::now();
        assert!(feed.answerable(before));
        assert!(!feed.caching_paused(before));
        let reconnect = Instant::now() + Duration::from_millis(1);
        feed.missed_at
            .store(feed.nanos(reconnect), Ordering::SeqCst);
        assert!(!feed.answerable(before));
        // Fetched after the reconnect: answerable, but not cached while a destroy
        // following a missed commit may still come.
        let after = reconnect + Duration::from_millis(1);
        assert!(feed.answerable(after));
        assert!(feed.caching_paused(after));
        // Gone for good: nothing answered, nothing cached.
        feed.missed_at.store(Feed::GONE, Ordering::SeqCst);
        assert!(!feed.answerable(after));
        assert!(feed.caching_paused(Instant::now()));
    }

    #[test]
    fn only_a_commit_that_may_destroy_keys_makes_its_secret_forgotten() {
        let id = "00000000-0000-0000-0000-000000000007";
        let key = KeyId::from_uuid(uuid::Uuid::from_u128(2));
        let kept = [
            SecretEvent::Created(SecretCreated {
                attributes: Default::default(),
                creator: UserId::parse("alice").unwrap(),
                owning_service: None,
                tags: Default::default(),
            }),
            SecretEvent::MetadatumSet(MetadatumSet {
                key: MetadataKey::parse("team").unwrap(),
                value: MetadataValue::parse("blue").unwrap(),
            }),
            SecretEvent::AclSet(AclSet {
                read: Default::default(),
            }),
        ];
        for event in kept {
            let (subject, bytes) = written(id, vec![event]);
            assert_eq!(forgets(&subject, &bytes), None, "{subject}");
        }
        let destroying = [
            SecretEvent::Deleted(SecretDeleted {
                destroyed_keys: vec![key],
            }),
            SecretEvent::VersionsDestroyed(VersionsDestroyed {
                versions: vec![VersionId::from_uuid(uuid::Uuid::from_u128(3))],
                destroyed_keys: vec![key],
            }),
            SecretEvent::Expired(SecretExpired {
                expired_at: Timestamp::from_unix_millis(1_796_000_000_000).unwrap(),
                destroyed_keys: vec![key],
            }),
        ];
        for event in destroying {
            let (subject, bytes) = written(id, vec![event]);
            let (project, secret) = forgets(&subject, &bytes).expect("forgotten");
            assert_eq!((project.as_str(), secret.to_string().as_str()), ("p1", id));
            // The same bytes on another kind's subject name no secret's keys.
            let other = subject.replace(".secret.", ".container.");
            assert_eq!(forgets(&other, &bytes), None);
        }
    }
}
