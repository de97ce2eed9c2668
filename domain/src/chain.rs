//! Which messages on an aggregate's subject make up its history.
//!
//! Only keyledger may write to an event subject, but a reader must not depend on the
//! NATS permissions alone: a message written by anyone else, or a copy of an old commit
//! replayed later, must be ignored and reported, and must never stop the aggregate
//! from changing. Every reader of the log (the command loop, the projector, the
//! history, the auditor's verification) judges each message here, against the
//! aggregate's head (its last commit so far):
//!
//! - **foreign**: not a commit keyledger wrote at this place: it does not parse, its
//!   hash does not match, its authenticator is missing or wrong, it sits on another
//!   aggregate's subject, or it is a copy of a commit the aggregate already has (a
//!   version at or below the head's). Skipped and reported.
//! - **next**: an authentic commit that follows the head (version + 1, linked to the
//!   head's hash). Applied.
//! - **broken**: an authentic commit that does not follow the head: a commit keyledger
//!   wrote is missing or altered. The log is corrupt; readers refuse to go on.

use crate::commit::{Commit, CommitError, CommitKey, Digest, EventCodec};

/// An aggregate's last commit, as far as a reader has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Its version.
    pub version: u64,
    /// Its hash, which the next commit links to.
    pub hash: Digest,
}

impl<E> From<&Commit<E>> for Head {
    fn from(commit: &Commit<E>) -> Self {
        Self {
            version: commit.body.version,
            hash: commit.hash,
        }
    }
}

/// What a message on an aggregate's subject is.
// Returned and matched at once, and `Next` is the common case: boxing it would cost
// an allocation per commit on every replay for the sake of the rare foreign one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Judged<E> {
    /// The aggregate's next commit.
    Next(Commit<E>),
    /// Not a commit keyledger wrote at this place; the reason, for the report.
    Foreign(String),
}

/// Why the log is broken at a message: not a foreign message to skip, but a chain that
/// no longer holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// An authentic commit this build cannot read.
    #[error(transparent)]
    Unreadable(CommitError),
    /// Commits are missing between the head and this one.
    #[error(
        "commit version {version} of {subject} follows version {current}: the commits \
         between them are missing"
    )]
    Gap {
        /// The aggregate's subject.
        subject: String,
        /// The commit's version.
        version: u64,
        /// The head's version.
        current: u64,
    },
    /// The commit links to another hash than its predecessor's.
    #[error(
        "commit version {version} of {subject} links to {}, but version {current} is {}: a \
         commit before it was altered",
        Self::hash_or_nothing(*links_to),
        Self::hash_or_nothing(*previous)
    )]
    Altered {
        /// The aggregate's subject.
        subject: String,
        /// The commit's version.
        version: u64,
        /// The head's version.
        current: u64,
        /// The hash the commit links to.
        links_to: Option<Digest>,
        /// The head's hash.
        previous: Option<Digest>,
    },
}

impl Broken {
    fn hash_or_nothing(hash: Option<Digest>) -> String {
        hash.map_or_else(|| "nothing".to_owned(), |h| h.to_string())
    }
}

/// Judges the message `bytes` stored on `subject`, given the aggregate's `head`
/// (`None`: no commit yet). With `key`, the authenticator is checked; without it (an
/// auditor holding only the checkpoint key), only the hash, the subject and the chain.
/// `Err` means the log is broken, and says how.
pub fn judge<E: EventCodec>(
    subject: &str,
    bytes: &[u8],
    key: Option<&CommitKey>,
    head: Option<&Head>,
) -> Result<Judged<E>, Broken> {
    place(subject, open(bytes, key), head)
}

/// The first half of [`judge`], which needs no head: the message read as a commit,
/// its hash and (with `key`) its authenticator checked. It costs most of judging (the
/// parse, the hash, the MAC), so a reader with many messages can open them on another
/// thread and [`place`] them in order.
pub fn open<E: EventCodec>(
    bytes: &[u8],
    key: Option<&CommitKey>,
) -> Result<Commit<E>, CommitError> {
    match key {
        Some(key) => Commit::<E>::open(bytes, key),
        None => Commit::<E>::parse_unverified(bytes),
    }
}

/// The second half of [`judge`]: where the commit `opened` from the message on
/// `subject` stands against the aggregate's `head`.
pub fn place<E>(
    subject: &str,
    opened: Result<Commit<E>, CommitError>,
    head: Option<&Head>,
) -> Result<Judged<E>, Broken> {
    let commit = match opened {
        Ok(commit) => commit,
        Err(e) if e.is_foreign() => return Ok(Judged::Foreign(e.to_string())),
        Err(e) => return Err(Broken::Unreadable(e)),
    };
    if !commit.body.aggregate.is_stored_on(subject) {
        let own = commit.body.aggregate.subject();
        return Ok(Judged::Foreign(format!(
            "a commit of {own} stored on {subject}: a copy moved from its own subject"
        )));
    }
    let (current, want_prev) = head.map_or((0, None), |h| (h.version, Some(h.hash)));
    let version = commit.body.version;
    if version <= current {
        return Ok(Judged::Foreign(format!(
            "a copy of version {version} of {subject}, which is at version {current} already: a \
             replayed commit"
        )));
    }
    if version > current + 1 {
        return Err(Broken::Gap {
            subject: subject.to_owned(),
            version,
            current,
        });
    }
    if commit.prev != want_prev {
        return Err(Broken::Altered {
            subject: subject.to_owned(),
            version,
            current,
            links_to: commit.prev,
            previous: want_prev,
        });
    }
    Ok(Judged::Next(commit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::RawEvent;
    use crate::commit::{AggregateRef, NewCommit};
    use crate::ids::{AggregateId, CommandId, ProjectId};
    use crate::principal::Actor;
    use crate::subject::AggregateKind;
    use crate::timestamp::Timestamp;

    fn key(b: u8) -> CommitKey {
        CommitKey::new([b; 32])
    }

    fn aggregate(id: &str) -> AggregateRef {
        AggregateRef {
            kind: AggregateKind::Secret,
            project: ProjectId::parse("p1").unwrap(),
            id: AggregateId::parse(id).unwrap(),
        }
    }

    fn commit(id: &str, version: u64, prev: Option<Digest>, key: &CommitKey) -> Commit<RawEvent> {
        NewCommit {
            id: CommandId::parse(&format!("c{version}")).unwrap(),
            aggregate: aggregate(id),
            version,
            command: "secret.metadata.set".into(),
            actor: Actor::scheduler(),
            at: Timestamp::from_unix_millis(1_800_000_000_000).unwrap(),
            events: vec![RawEvent::new(&serde_json::json!({"type": "x", "v": 1}))],
        }
        .seal(prev, key)
    }

    fn judged(
        subject: &str,
        c: &Commit<RawEvent>,
        key: Option<&CommitKey>,
        head: Option<&Head>,
    ) -> Result<Judged<RawEvent>, Broken> {
        judge(subject, &c.to_bytes(), key, head)
    }

    #[test]
    fn the_next_authentic_commit_is_taken() {
        let k = key(1);
        let first = commit("a", 1, None, &k);
        let subject = first.body.aggregate.subject();
        assert_eq!(
            judged(&subject, &first, Some(&k), None),
            Ok(Judged::Next(first.clone()))
        );
        let second = commit("a", 2, Some(first.hash), &k);
        assert!(matches!(
            judged(&subject, &second, Some(&k), Some(&Head::from(&first))),
            Ok(Judged::Next(_))
        ));
    }

    #[test]
    fn forged_moved_and_replayed_messages_are_foreign() {
        let k = key(1);
        let first = commit("a", 1, None, &k);
        let subject = first.body.aggregate.subject();
        let head = Head::from(&first);
        let forged = commit("a", 2, Some(first.hash), &key(2));
        let Ok(Judged::Foreign(why)) = judged(&subject, &forged, Some(&k), Some(&head)) else {
            panic!("a commit under another key is foreign")
        };
        assert!(why.contains("not the commit key's"), "{why}");
        let Ok(Judged::Foreign(why)) =
            judge::<RawEvent>(&subject, b"{\"error\":1}", Some(&k), None)
        else {
            panic!("junk is foreign")
        };
        assert!(why.starts_with("malformed commit"), "{why}");
        let Ok(Judged::Foreign(why)) = judged(&subject, &first, Some(&k), Some(&head)) else {
            panic!("a replay is foreign")
        };
        assert!(why.contains("replayed"), "{why}");
        let other = commit("b", 1, None, &k);
        let Ok(Judged::Foreign(why)) = judged(&subject, &other, Some(&k), None) else {
            panic!("a moved commit is foreign")
        };
        assert!(why.contains("moved"), "{why}");
    }

    #[test]
    fn without_the_key_only_the_hash_subject_and_chain_are_checked() {
        let first = commit("a", 1, None, &key(2));
        let subject = first.body.aggregate.subject();
        assert!(matches!(
            judged(&subject, &first, None, None),
            Ok(Judged::Next(_))
        ));
    }

    #[test]
    fn a_gap_or_a_broken_link_in_authentic_commits_is_corruption() {
        let k = key(1);
        let first = commit("a", 1, None, &k);
        let subject = first.body.aggregate.subject();
        let head = Head::from(&first);
        let gap = commit("a", 3, Some(first.hash), &k);
        assert!(
            judged(&subject, &gap, Some(&k), Some(&head))
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
        let unlinked = commit("a", 2, None, &k);
        assert!(
            judged(&subject, &unlinked, Some(&k), Some(&head))
                .unwrap_err()
                .to_string()
                .contains("altered")
        );
    }
}
