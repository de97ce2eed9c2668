//! What a change follower keeps of each object between its commits, so that deciding
//! who may see a commit seldom reads the object's history from the log again.
//!
//! A caller's stream keeps the last few hundred objects it saw, whole: their facts name
//! the object's creator and the caller's ACL entries. The NATS relay needs two bits of
//! an object, whether it is live and whether every lister may see it, so it keeps them
//! for every live object it has seen, up to 2 million: a relay that kept only the last
//! 10,000 read an object's history again for each commit on one it had let go, which
//! after a bulk append (a restore, a migration) of a million commits over 100,000
//! secrets kept nats-server busy for minutes.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use domain::ids::ProjectId;
use domain::secret::acl::Acl;
use domain::subject::AggregateKind;
use moka::sync::Cache;

use super::Facts;

/// Objects whose facts one caller's stream keeps (bounded so 256 streams stay small);
/// an object let go is read again from the log when it next changes.
const FOLDED_PER_STREAM: u64 = 256;

/// Most objects the relay keeps: 90 to 130 MB of them. Past it, it keeps no other
/// until some are deleted, and a change of one it does not hold reads its history.
const RELAY_MOST: usize = 2_000_000;

/// One object a commit is on, as the folds look it up.
#[derive(Debug, Clone, Copy)]
pub(super) struct Object<'a> {
    /// The commit's subject, which names it.
    pub subject: &'a str,
    pub project: &'a ProjectId,
    pub kind: AggregateKind,
    /// Its id as a number, when the subject names it in keyledger's own form (lower
    /// case, hyphenated); the relay keeps no other.
    pub id: Option<u128>,
}

impl<'a> Object<'a> {
    /// The object `subject` names: `id` is the id in it.
    pub(super) fn new(
        subject: &'a str,
        project: &'a ProjectId,
        kind: AggregateKind,
        id: &str,
    ) -> Self {
        let id = uuid::Uuid::try_parse(id).ok().filter(|uuid| {
            // Other spellings parse to the same UUID: two subjects must never share
            // one entry.
            uuid.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .eq(&id)
        });
        Self {
            subject,
            project,
            kind,
            id: id.map(|uuid| uuid.as_u128()),
        }
    }
}

/// Each object's version and facts as of its last commit a follower read.
pub(super) enum Folds {
    /// A caller's stream: the objects it saw last, whole.
    Recent(Cache<String, (u64, Facts)>),
    /// The relay: every live object it has seen, in two bits and its version.
    Every(Mutex<Listed>),
}

impl Folds {
    /// A caller's stream's.
    pub(super) fn recent() -> Self {
        Self::Recent(Cache::new(FOLDED_PER_STREAM))
    }

    /// The relay's, whose facts are as [`super::View::EveryLister`] folds them.
    pub(super) fn every() -> Self {
        Self::Every(Mutex::new(Listed::with_room(RELAY_MOST)))
    }

    /// The object's version and facts as of its last commit this follower read, if
    /// kept.
    pub(super) fn get(&self, object: &Object<'_>) -> Option<(u64, Facts)> {
        match self {
            Self::Recent(cache) => cache.get(object.subject),
            Self::Every(listed) => listed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(object),
        }
    }

    /// Keeps the object's facts as of `version`.
    pub(super) fn keep(&self, object: &Object<'_>, version: u64, facts: Facts) {
        match self {
            Self::Recent(cache) => cache.insert(object.subject.to_owned(), (version, facts)),
            Self::Every(listed) => listed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .keep(object, version, &facts),
        }
    }

    /// The name its look-ups are counted under (`keyledger_cache_requests_total`).
    pub(super) fn metric(&self) -> &'static str {
        match self {
            Self::Recent(_) => infra::metrics::cache::CHANGE_STREAMS,
            Self::Every(_) => infra::metrics::cache::CHANGE_RELAY,
        }
    }
}

/// The relay's folds: for each live object, by id, its version, its kind, whether every
/// lister may see it, and a hash of its project, keyed afresh in each process. An entry
/// is taken for an object only if all of id, kind and project hash match. Two objects
/// of one kind can share an id: a client that chooses command ids or idempotency keys
/// (`kl-v7-…`) chooses 48 bits of its secrets' ids, and a birthday search over the
/// rest can give two of its own secrets, in two projects, the same id (reaching
/// another's id is a second-preimage search of 74 bits). Their projects' hashes then
/// match only with odds of 2^-64, which no one outside the process can better or
/// observe; all such a pair gains is that each evicts the other, and every change of
/// either reads its history. (A map of the projects' names, each once, grew with every
/// project ever seen.)
///
/// A B-tree, not a hash table: its memory follows the objects it holds, where a hash
/// table doubles at once and keeps the slots of deleted objects until it grows. Its
/// leaves hold 11 objects in 368 bytes: some 45 bytes an object when ids come in
/// random order (measured: 45 MB for a million), about 65 worked out for ascending
/// order (leaves half full), as the time-ordered ids keyledger gives secrets created
/// through Barbican's API come.
#[derive(Debug)]
pub(super) struct Listed {
    objects: BTreeMap<u128, Kept>,
    projects: RandomState,
    /// How many objects it may hold.
    room: usize,
    /// Whether it has said that it is full, since it last had room to spare.
    said_full: bool,
}

/// One object in [`Listed`] (16 bytes).
#[derive(Debug, Clone, Copy)]
struct Kept {
    project: u64,
    version: u32,
    kind: AggregateKind,
    open: bool,
}

impl Kept {
    fn is(&self, project: u64, kind: AggregateKind) -> bool {
        project == self.project && kind == self.kind
    }
}

impl Listed {
    /// Empty, with room for `objects` objects.
    fn with_room(objects: usize) -> Self {
        Self {
            objects: BTreeMap::new(),
            projects: RandomState::new(),
            room: objects,
            said_full: false,
        }
    }

    fn get(&self, object: &Object<'_>) -> Option<(u64, Facts)> {
        let kept = self.objects.get(&object.id?)?;
        kept.is(self.projects.hash_one(object.project), object.kind)
            .then(|| {
                (
                    u64::from(kept.version),
                    Facts::every_lister(true, kept.open),
                )
            })
    }

    fn keep(&mut self, object: &Object<'_>, version: u64, facts: &Facts) {
        let Some(id) = object.id else { return };
        let project = self.projects.hash_one(object.project);
        // A deleted (or expired) object's next commit, if any, reads its history, and
        // so does a commit after one whose version does not fit (four billion changes).
        let Ok(version) = u32::try_from(version) else {
            return self.forget(id, project, object.kind);
        };
        if !facts.live {
            return self.forget(id, project, object.kind);
        }
        if self.objects.len() >= self.room && !self.objects.contains_key(&id) {
            if !std::mem::replace(&mut self.said_full, true) {
                tracing::warn!(
                    objects = self.objects.len(),
                    "the change relay holds as many objects' facts as it may, and keeps no \
                     other until deletions make room; a change of one it does not hold \
                     reads that object's history from the log"
                );
            }
            return;
        }
        self.objects.insert(
            id,
            Kept {
                project,
                version,
                kind: object.kind,
                open: open(&facts.acl),
            },
        );
    }

    /// Forgets the object `id` names, if its entry is its own (another object's, were
    /// its id the same, stays).
    fn forget(&mut self, id: u128, project: u64, kind: AggregateKind) {
        if self
            .objects
            .get(&id)
            .is_some_and(|kept| kept.is(project, kind))
        {
            self.objects.remove(&id);
            // Said again only once a hundredth of the room has been freed and filled:
            // not at every deletion of a relay that stays full.
            if self.objects.len() < self.room - self.room / 100 {
                self.said_full = false;
            }
        }
    }
}

/// Whether an ACL lets every member of the object's project see it as their roles
/// allow: all that every lister's view of it depends on
/// ([`domain::policy::read_by_every_lister`]).
pub(super) fn open(acl: &Acl) -> bool {
    acl.project_access && acl.conditions.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(name: &str) -> ProjectId {
        ProjectId::parse(name).unwrap()
    }

    fn id(n: u128) -> String {
        uuid::Uuid::from_u128(n).hyphenated().to_string()
    }

    fn subject(p: &ProjectId, kind: AggregateKind, id: &str) -> String {
        format!("keyledger.events.{p}.{}.{id}", kind.as_str())
    }

    /// Secrets `1..=n` of project `p1`, each `object(n - 1)`.
    struct Secrets {
        project: ProjectId,
        ids: Vec<String>,
        subjects: Vec<String>,
    }

    impl Secrets {
        fn new(n: u128) -> Self {
            let project = project("p1");
            let ids: Vec<String> = (1..=n).map(id).collect();
            let subjects = ids
                .iter()
                .map(|i| subject(&project, AggregateKind::Secret, i))
                .collect();
            Self {
                project,
                ids,
                subjects,
            }
        }

        fn object(&self, n: usize) -> Object<'_> {
            Object::new(
                &self.subjects[n],
                &self.project,
                AggregateKind::Secret,
                &self.ids[n],
            )
        }
    }

    /// More objects than any bound the relay had: each is found again, as kept.
    #[test]
    fn the_relay_keeps_every_live_object_it_saw() {
        let folds = Folds::every();
        let secrets = Secrets::new(25_000);
        let object = |n: usize| secrets.object(n);
        for n in 0..secrets.ids.len() {
            folds.keep(
                &object(n),
                n as u64 + 1,
                Facts::every_lister(true, n % 3 != 0),
            );
        }
        for n in 0..secrets.ids.len() {
            assert_eq!(
                folds.get(&object(n)),
                Some((n as u64 + 1, Facts::every_lister(true, n % 3 != 0))),
                "object {n}"
            );
        }
    }

    #[test]
    fn an_id_is_not_taken_for_another_projects_or_kinds_nor_kept_deleted() {
        let folds = Folds::every();
        let (p1, p2) = (project("p1"), project("p2"));
        let i = id(7);
        let secret = subject(&p1, AggregateKind::Secret, &i);
        let elsewhere = subject(&p2, AggregateKind::Secret, &i);
        let container = subject(&p1, AggregateKind::Container, &i);
        let kept = Object::new(&secret, &p1, AggregateKind::Secret, &i);
        let other_project = Object::new(&elsewhere, &p2, AggregateKind::Secret, &i);
        let other_kind = Object::new(&container, &p1, AggregateKind::Container, &i);
        folds.keep(&kept, 3, Facts::every_lister(true, false));
        assert!(folds.get(&kept).is_some());
        assert_eq!(folds.get(&other_project), None);
        assert_eq!(folds.get(&other_kind), None);
        // The deletion of another object with the same id leaves this one be.
        for other in [&other_project, &other_kind] {
            folds.keep(other, 1, Facts::every_lister(false, false));
            assert_eq!(
                folds.get(&kept),
                Some((3, Facts::every_lister(true, false))),
                "{other:?}"
            );
        }
        // Another object given the same id takes the entry: neither is then taken
        // for the other.
        folds.keep(&other_project, 1, Facts::every_lister(true, true));
        assert_eq!(folds.get(&kept), None);
        assert_eq!(
            folds.get(&other_project),
            Some((1, Facts::every_lister(true, true)))
        );
        folds.keep(&kept, 4, Facts::every_lister(true, true));
        folds.keep(&kept, 5, Facts::every_lister(false, false));
        assert_eq!(folds.get(&kept), None);
    }

    /// Full, it keeps what it holds (and keeps it current) and nothing new, until a
    /// deletion makes room.
    #[test]
    fn a_full_relay_keeps_what_it_holds_and_takes_in_no_other() {
        let mut listed = Listed::with_room(2);
        let secrets = Secrets::new(3);
        let object = |n: usize| secrets.object(n);
        let live = Facts::every_lister(true, true);
        listed.keep(&object(0), 1, &live);
        listed.keep(&object(1), 1, &live);
        listed.keep(&object(2), 1, &live);
        assert!(listed.get(&object(2)).is_none(), "kept beyond its room");
        listed.keep(&object(0), 2, &live);
        assert_eq!(listed.get(&object(0)), Some((2, live.clone())));
        listed.keep(&object(1), 2, &Facts::every_lister(false, true));
        listed.keep(&object(2), 2, &live);
        assert_eq!(listed.get(&object(2)), Some((2, live.clone())));
        assert_eq!(listed.objects.len(), 2);
        // It said so once, and may say so again once room was freed.
        listed.keep(&object(1), 3, &live);
        assert!(listed.said_full);
        listed.keep(&object(2), 3, &Facts::every_lister(false, true));
        assert!(!listed.said_full);
    }

    /// A full relay's warning is said again only once a hundredth of its room has
    /// been freed, not at every deletion.
    #[test]
    fn a_full_relay_says_so_again_only_once_a_hundredth_of_its_room_is_free() {
        let mut listed = Listed::with_room(200);
        let secrets = Secrets::new(201);
        let object = |n: usize| secrets.object(n);
        let live = Facts::every_lister(true, true);
        for n in 0..=200 {
            listed.keep(&object(n), 1, &live);
        }
        assert!(listed.said_full);
        let deleted = Facts::every_lister(false, true);
        listed.keep(&object(0), 2, &deleted);
        listed.keep(&object(1), 2, &deleted);
        assert!(listed.said_full, "said again after a deletion or two");
        listed.keep(&object(2), 2, &deleted);
        assert!(!listed.said_full);
    }

    /// A version past what an entry holds is not kept, and forgets the entry before
    /// it.
    #[test]
    fn a_version_too_large_to_keep_forgets_its_object() {
        let folds = Folds::every();
        let secrets = Secrets::new(3);
        let object = secrets.object(2);
        let last = u64::from(u32::MAX);
        folds.keep(&object, last, Facts::every_lister(true, true));
        assert_eq!(
            folds.get(&object),
            Some((last, Facts::every_lister(true, true)))
        );
        folds.keep(&object, last + 1, Facts::every_lister(true, true));
        assert_eq!(folds.get(&object), None);
    }

    #[test]
    fn the_relay_keeps_no_id_spelt_otherwise_than_keyledger_writes_it() {
        let folds = Folds::every();
        let p = project("p1");
        let i = id(0xdead_beef).to_uppercase();
        let upper = subject(&p, AggregateKind::Secret, &i);
        let object = Object::new(&upper, &p, AggregateKind::Secret, &i);
        assert_eq!(object.id, None);
        folds.keep(&object, 1, Facts::every_lister(true, true));
        assert_eq!(folds.get(&object), None);
        let braced = format!("{{{}}}", id(0xdead_beef));
        assert_eq!(
            Object::new(&upper, &p, AggregateKind::Secret, &braced).id,
            None
        );
        let plain = id(0xdead_beef);
        assert_eq!(
            Object::new(&upper, &p, AggregateKind::Secret, &plain).id,
            Some(0xdead_beef)
        );
    }

    #[test]
    fn a_callers_stream_keeps_its_last_objects_whole() {
        let folds = Folds::recent();
        let secrets = Secrets::new(1);
        let object = secrets.object(0);
        let facts = Facts {
            live: true,
            creator: Some(domain::ids::UserId::parse("alice").unwrap()),
            acl: Acl::default(),
            owning_service: None,
        };
        folds.keep(&object, 2, facts.clone());
        assert_eq!(folds.get(&object), Some((2, facts)));
    }
}
