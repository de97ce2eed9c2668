//! What a change follower keeps of each object between its commits, so that deciding
//! who may see a commit seldom reads the object's history from the log again.
//!
//! A caller's stream keeps the last few hundred objects it saw, whole: their facts name
//! the object's creator and the caller's ACL entries. The NATS relay needs two bits of
//! an object, whether it is live and whether every lister may see it, so it keeps them
//! for every live object it has seen, up to 2 million: a relay that kept only the last
//! 10,000 read an
//! object's history again for each commit on one it had let go, which after a bulk
//! append (a restore, a migration) of a million commits over 100,000 secrets kept
//! nats-server busy for minutes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use domain::ids::ProjectId;
use domain::secret::acl::Acl;
use domain::subject::AggregateKind;
use moka::sync::Cache;

use super::Facts;

/// Objects whose facts one caller's stream keeps (bounded so 256 streams stay small);
/// an object let go is read again from the log when it next changes.
const FOLDED_PER_STREAM: u64 = 256;

/// Most objects the relay keeps: about 100 MB of them. Past it, it keeps no other
/// until some are deleted, and a change of one it does not hold reads its history.
const RELAY_MOST: usize = 2_000_000;

/// Most projects whose objects the relay keeps (their names, once each).
const PROJECTS_MOST: usize = 65_536;

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
        Self::Every(Mutex::new(Listed::with_room(RELAY_MOST, PROJECTS_MOST)))
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

/// The relay's folds: for each live object, by id, its project (an index into
/// `projects`), its kind, its version, and whether every lister may see it. A B-tree,
/// not a hash table: its memory follows the objects it holds (about 50 bytes each,
/// its nodes some two-thirds full), where a hash table doubles at once, keeps the
/// slots of deleted objects, and may grow past any count it was meant to hold.
#[derive(Debug)]
pub(super) struct Listed {
    projects: HashMap<ProjectId, u32>,
    objects: BTreeMap<u128, Kept>,
    /// How many of each it may hold.
    room: (usize, usize),
    /// Whether it has said that it is full.
    said_full: bool,
}

/// One object in [`Listed`] (16 bytes).
#[derive(Debug, Clone, Copy)]
struct Kept {
    version: u64,
    project: u32,
    kind: AggregateKind,
    open: bool,
}

impl Kept {
    fn is(&self, project: Option<&u32>, kind: AggregateKind) -> bool {
        project == Some(&self.project) && kind == self.kind
    }
}

impl Listed {
    /// Empty, with room for `objects` objects of `projects` projects.
    fn with_room(objects: usize, projects: usize) -> Self {
        Self {
            projects: HashMap::new(),
            objects: BTreeMap::new(),
            room: (objects, projects),
            said_full: false,
        }
    }

    fn get(&self, object: &Object<'_>) -> Option<(u64, Facts)> {
        let kept = self.objects.get(&object.id?)?;
        kept.is(self.projects.get(object.project), object.kind)
            .then(|| (kept.version, Facts::every_lister(true, kept.open)))
    }

    fn keep(&mut self, object: &Object<'_>, version: u64, facts: &Facts) {
        let Some(id) = object.id else { return };
        let project = self.projects.get(object.project).copied();
        if !facts.live {
            // A deleted object's next commit, if any, reads its history. (Another
            // object's entry, were its id the same, stays.)
            if self
                .objects
                .get(&id)
                .is_some_and(|kept| kept.is(project.as_ref(), object.kind))
            {
                self.objects.remove(&id);
            }
            return;
        }
        let project = match project {
            Some(project) => project,
            None if self.projects.len() < self.room.1 => {
                let next = u32::try_from(self.projects.len()).unwrap_or(u32::MAX);
                self.projects.insert(object.project.clone(), next);
                next
            }
            None => return self.full(),
        };
        if self.objects.len() >= self.room.0 && !self.objects.contains_key(&id) {
            return self.full();
        }
        self.objects.insert(
            id,
            Kept {
                version,
                project,
                kind: object.kind,
                open: open(&facts.acl),
            },
        );
    }

    /// Keeps nothing new: what it holds stays (a deletion makes room), and the objects
    /// it does not hold have their histories read at each change.
    fn full(&mut self) {
        if !std::mem::replace(&mut self.said_full, true) {
            tracing::warn!(
                objects = self.objects.len(),
                projects = self.projects.len(),
                "the change relay holds as many objects' facts as it may; a change of another reads its history from the log"
            );
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

    /// More objects than any bound the relay had: each is found again, as kept.
    #[test]
    fn the_relay_keeps_every_live_object_it_saw() {
        let folds = Folds::every();
        let p = project("p1");
        let ids: Vec<String> = (1..=25_000).map(id).collect();
        let subjects: Vec<String> = ids
            .iter()
            .map(|i| subject(&p, AggregateKind::Secret, i))
            .collect();
        let object = |n: usize| Object::new(&subjects[n], &p, AggregateKind::Secret, &ids[n]);
        for n in 0..ids.len() {
            folds.keep(
                &object(n),
                n as u64 + 1,
                Facts::every_lister(true, n % 3 != 0),
            );
        }
        for n in 0..ids.len() {
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
        folds.keep(&kept, 3, Facts::every_lister(true, false));
        assert!(folds.get(&kept).is_some());
        assert_eq!(
            folds.get(&Object::new(&elsewhere, &p2, AggregateKind::Secret, &i)),
            None
        );
        assert_eq!(
            folds.get(&Object::new(&container, &p1, AggregateKind::Container, &i)),
            None
        );
        // The deletion of another object with the same id leaves this one be.
        folds.keep(
            &Object::new(&elsewhere, &p2, AggregateKind::Secret, &i),
            1,
            Facts::every_lister(false, false),
        );
        assert!(folds.get(&kept).is_some());
        folds.keep(&kept, 4, Facts::every_lister(false, false));
        assert_eq!(folds.get(&kept), None);
    }

    /// Full, it keeps what it holds (and keeps it current) and nothing new, until a
    /// deletion makes room; a project beyond its room is not kept either.
    #[test]
    fn a_full_relay_keeps_what_it_holds_and_takes_in_no_other() {
        let mut listed = Listed::with_room(2, 2);
        let (p1, p2, p3) = (project("p1"), project("p2"), project("p3"));
        let ids: Vec<String> = (1..=4).map(id).collect();
        let subjects: Vec<String> = ids
            .iter()
            .map(|i| subject(&p1, AggregateKind::Secret, i))
            .collect();
        let object = |n: usize| Object::new(&subjects[n], &p1, AggregateKind::Secret, &ids[n]);
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

        let mut listed = Listed::with_room(10, 2);
        for p in [&p1, &p2, &p3] {
            let s = subject(p, AggregateKind::Secret, &ids[3]);
            listed.keep(
                &Object::new(&s, p, AggregateKind::Secret, &ids[3]),
                1,
                &live,
            );
        }
        let s = subject(&p3, AggregateKind::Secret, &ids[3]);
        let beyond = Object::new(&s, &p3, AggregateKind::Secret, &ids[3]);
        assert!(listed.get(&beyond).is_none(), "a third project was kept");
        assert_eq!(listed.projects.len(), 2);
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
        let p = project("p1");
        let i = id(1);
        let s = subject(&p, AggregateKind::Secret, &i);
        let object = Object::new(&s, &p, AggregateKind::Secret, &i);
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
