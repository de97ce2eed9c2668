//! Reading the log as an auditor: any commit, whatever its aggregate kind, with its
//! events as stored; and the verification of the whole log.
//!
//! [`LogVerifier`] takes the stream's messages in order and checks what an auditor
//! must be able to trust without trusting the server: each commit's hash covers its
//! content; each commit links to its aggregate's previous commit (`prev`, `version`);
//! the stream's sequence numbers run without gaps (nothing removed); a commit sits on
//! its aggregate's own subject. The first violation is reported with its sequence.
//!
//! Messages keyledger did not write (see [`crate::chain`]) are not violations of the
//! chain: every reader ignores them. The verifier names each one. With the commit key
//! it checks every authenticator itself; an auditor without it relies on the signed
//! checkpoints, which name the foreign messages they cover.
//!
//! It also hashes the commits into the log's Merkle tree and compares the root with
//! every signed checkpoint it is given, at that checkpoint's size. The chain alone
//! cannot show a log rewritten with every later hash recomputed, or commits removed
//! from its end; a checkpoint signed with a key kept outside NATS can.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::chain::{Head, Judged, place};
use crate::checkpoint::{Foreign, SignedCheckpoint};
use crate::commit::{AggregateRef, Commit, CommitError, CommitKey, EventCodec};
use crate::merkle::{MerkleHash, MerkleLog};

/// An event as stored, of any aggregate kind: its JSON, `type` and `v` included, kept
/// as text and parsed only when asked for. Verifying a log, or checking that a commit
/// is authentic, never looks inside its events, and parsing them was most of the cost
/// of reading a commit with a sealed payload (`cargo bench -p domain --bench open`).
#[derive(Debug, Clone)]
pub struct RawEvent(Box<RawValue>);

impl RawEvent {
    /// The event whose JSON is `value`.
    pub fn new(value: &Value) -> Self {
        Self(
            serde_json::value::to_raw_value(value)
                .unwrap_or_else(|_| unreachable!("a Value always serialises")),
        )
    }

    /// The event's JSON, as stored.
    pub fn json(&self) -> &RawValue {
        &self.0
    }

    /// The event's JSON, parsed.
    pub fn value(&self) -> Value {
        // Every RawEvent's text reads as a Value: `decode_raw` checked it
        // (`json_text::reads_as_value`), and `new` wrote it from one, which reads back
        // unless it holds an object led by serde_json's RawValue token (no event of
        // keyledger's holds one since tag keys refuse it).
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    /// The event's `type`; empty for an event without one (every event keyledger
    /// writes has one). Reads that member alone.
    pub fn type_name(&self) -> String {
        crate::json_text::member_str(self.0.get(), "type").unwrap_or_default()
    }
}

/// Events compare as the JSON they hold, however it is spaced or ordered.
impl PartialEq for RawEvent {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

impl EventCodec for RawEvent {
    fn encode(&self) -> Value {
        self.value()
    }

    fn decode(value: Value) -> Result<Self, CommitError> {
        Ok(Self::new(&value))
    }

    /// Keeps the text, once it is known to read as a [`Value`] would within its commit:
    /// the scan serde_json made of it for the commit checks less (a lone surrogate
    /// escape, a number out of range and deep nesting pass it), and a reader of events
    /// as text must accept exactly the commits that readers of parsed events accept.
    fn decode_raw(raw: &RawValue) -> Result<Self, CommitError> {
        crate::json_text::reads_as_value(raw.get(), crate::json_text::EVENT_DEPTH)
            .map_err(|e| CommitError::Malformed(format!("an event does not parse: {e}")))?;
        Ok(Self(raw.to_owned()))
    }
}

/// Replaces sealed bytes (`nonce`, `ciphertext`) anywhere in an event with
/// `"[sealed]"`: history shows what happened, never even the ciphertext of a payload.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "nonce" || key == "ciphertext" {
                    *v = Value::from("[sealed]");
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Who acted, as a history shows it: the user, or `system:<task>`.
pub fn actor_name(actor: &crate::principal::Actor) -> String {
    match actor {
        crate::principal::Actor::User(p) => p.user.as_str().to_owned(),
        crate::principal::Actor::System(s) => format!("system:{}", s.system),
    }
}

/// Which history entries an auditor asks for.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Only commits by this actor (a user, or `system:scheduler`…).
    pub actor: Option<String>,
    /// Only events of this type (e.g. `secret.acl_set`).
    pub event_type: Option<String>,
    /// Only commits at or after this time.
    pub since: Option<crate::timestamp::Timestamp>,
    /// Only commits before this time.
    pub until: Option<crate::timestamp::Timestamp>,
    /// Only sequences at or after this one.
    pub from_seq: Option<u64>,
    /// Only sequences up to this one.
    pub to_seq: Option<u64>,
}

impl HistoryFilter {
    /// The entries of the commit at `seq` that the filter admits: sequence, time,
    /// actor, command, aggregate, version, hash and the event (redacted).
    pub fn entries(&self, seq: u64, commit: &Commit<RawEvent>) -> Vec<HistoryEntry> {
        let b = &commit.body;
        let admitted = self.from_seq.is_none_or(|s| seq >= s)
            && self.to_seq.is_none_or(|s| seq <= s)
            && self.since.is_none_or(|t| b.at >= t)
            && self.until.is_none_or(|t| b.at < t)
            && self
                .actor
                .as_ref()
                .is_none_or(|a| &actor_name(&b.actor) == a);
        if !admitted {
            return Vec::new();
        }
        b.events
            .iter()
            .filter(|e| self.event_type.as_ref().is_none_or(|t| e.type_name() == *t))
            .map(|e| {
                let mut event = e.value();
                redact(&mut event);
                HistoryEntry {
                    actor: actor_name(&b.actor),
                    aggregate: b.aggregate.clone(),
                    at: b.at.to_rfc3339(),
                    command: b.command.clone(),
                    event,
                    hash: commit.hash.to_hex(),
                    seq,
                    version: b.version,
                }
            })
            .collect()
    }
}

/// One event of the history, with its commit's place and who made it: what the
/// history endpoints and `keyledger audit log` show. (Fields in the order they are
/// written.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Who: a user, or `system:<task>`.
    pub actor: String,
    /// What it changed.
    pub aggregate: AggregateRef,
    /// When it was committed (RFC 3339).
    pub at: String,
    /// The command.
    pub command: String,
    /// The event, `{type, v, …}`, with `nonce` and `ciphertext` shown as `[sealed]`.
    pub event: Value,
    /// The commit's hash (hex).
    pub hash: String,
    /// The commit's log sequence.
    pub seq: u64,
    /// The aggregate's version after the commit.
    pub version: u64,
}

impl HistoryEntry {
    /// The event's `type`, e.g. `secret.created`; empty for an event without one
    /// (every event keyledger writes has one).
    pub fn event_type(&self) -> &str {
        self.event["type"].as_str().unwrap_or_default()
    }
}

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The stream sequence where it shows.
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// A message on the event stream that keyledger did not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignMessage {
    /// Its stream sequence.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// Why it is foreign.
    pub reason: String,
}

/// Walks a log in stream order and checks every commit.
#[derive(Debug)]
pub struct LogVerifier {
    last_seq: u64,
    /// Each aggregate's last commit.
    heads: HashMap<String, Head>,
    commits: u64,
    tree: MerkleLog,
    /// Checkpoints not reached yet, smallest first.
    ahead: VecDeque<SignedCheckpoint>,
    /// The largest checkpoint the log matched, and how many did.
    matched: Option<SignedCheckpoint>,
    matched_count: usize,
    /// Checks authenticators, when the auditor holds the commit key.
    key: Option<CommitKey>,
    /// The messages the checkpoints name as foreign.
    listed: Foreign,
    foreign: Vec<ForeignMessage>,
}

impl Default for LogVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl LogVerifier {
    /// A verifier for a log starting at sequence 1.
    pub fn new() -> Self {
        Self::with_checkpoints(Vec::new(), None)
    }

    /// A verifier that also checks the log against `checkpoints` (whose signatures
    /// the caller has checked) and, with `key`, every commit's authenticator.
    pub fn with_checkpoints(
        mut checkpoints: Vec<SignedCheckpoint>,
        key: Option<CommitKey>,
    ) -> Self {
        checkpoints.sort_by_key(|c| c.size);
        let mut listed = Foreign::default();
        for c in &checkpoints {
            listed.extend(&c.foreign);
        }
        Self {
            last_seq: 0,
            heads: HashMap::new(),
            commits: 0,
            tree: MerkleLog::compact(),
            ahead: checkpoints.into(),
            matched: None,
            matched_count: 0,
            key,
            listed,
            foreign: Vec::new(),
        }
    }

    /// How many commits have been checked (foreign messages excluded).
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// How many messages have been read, foreign ones included.
    pub fn messages(&self) -> u64 {
        self.last_seq
    }

    /// The foreign messages found so far, in order.
    pub fn foreign(&self) -> &[ForeignMessage] {
        &self.foreign
    }

    /// The Merkle root of the commits checked so far.
    pub fn root(&self) -> MerkleHash {
        self.tree.root()
    }

    /// How many checkpoints the log matched, and the largest of them.
    pub fn matched(&self) -> (usize, Option<&SignedCheckpoint>) {
        (self.matched_count, self.matched.as_ref())
    }

    /// After the last commit: a checkpoint covering more commits than the log holds
    /// means commits were removed from its end.
    pub fn finish(&self) -> Result<(), Violation> {
        match self.ahead.front() {
            Some(c) if c.size > self.tree.size() => Err(Violation {
                seq: self.tree.size() + 1,
                reason: format!(
                    "the checkpoint of {} commits signed {} covers sequences up to {}, but the \
                     log ends at sequence {}: commits were removed from its end",
                    c.size,
                    c.when(),
                    c.size,
                    self.tree.size()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Compares the root with the checkpoints of the tree's current size.
    fn check_checkpoints(&mut self) -> Result<(), Violation> {
        while let Some(c) = self.ahead.front() {
            if c.size > self.tree.size() {
                break;
            }
            let since = self.matched.as_ref().map_or(0, |m| m.size) + 1;
            if c.size > 0 && self.tree.root() != c.root {
                return Err(Violation {
                    seq: since,
                    reason: format!(
                        "the first {} commits do not hash to the root signed in the checkpoint \
                         {}: a commit from sequence {since} to {} was changed, removed or \
                         reordered, and the chain rewritten to hide it",
                        c.size,
                        c.when(),
                        c.size
                    ),
                });
            }
            self.matched_count += 1;
            self.matched = self.ahead.pop_front();
        }
        Ok(())
    }

    /// Checks the message at `seq` on `subject`. After a violation, the verifier's
    /// state is unspecified: stop at the first one.
    pub fn check(&mut self, seq: u64, subject: &str, bytes: &[u8]) -> Result<(), Violation> {
        let opened = crate::chain::open(bytes, self.key.as_ref());
        self.check_opened(seq, subject, bytes, opened)
    }

    /// What [`Self::check_opened`] needs of each message before it: the message read
    /// as a commit, its hash and (with the key) its authenticator checked. It depends
    /// on no other message, so it can run on another thread, ahead of the checks.
    pub fn opener(&self) -> impl Fn(&[u8]) -> Opened + Send + 'static {
        let key = self.key.clone();
        move |bytes| crate::chain::open(bytes, key.as_ref())
    }

    /// [`Self::check`] of a message already opened by [`Self::opener`].
    pub fn check_opened(
        &mut self,
        seq: u64,
        subject: &str,
        bytes: &[u8],
        opened: Opened,
    ) -> Result<(), Violation> {
        let fail = |reason: String| Violation { seq, reason };
        if seq != self.last_seq + 1 {
            let reason = if seq <= self.last_seq {
                format!(
                    "sequence {seq} comes after {}: the log is out of order",
                    self.last_seq
                )
            } else {
                format!(
                    "expected sequence {} next, found {seq}: commits were removed or the log \
                     was reordered",
                    self.last_seq + 1
                )
            };
            return Err(Violation {
                seq: self.last_seq + 1,
                reason,
            });
        }
        self.last_seq = seq;
        // Every message is a leaf of the tree the checkpoints sign, foreign or not.
        self.tree.append(bytes);
        let listed = self.listed.contains(seq);
        let verdict = match (&self.key, listed) {
            // Without the key, the checkpoint's word is all there is.
            (None, true) => Judged::Foreign("named as foreign by a signed checkpoint".to_owned()),
            // With it, the message's own fault is the better reason.
            (Some(_), true) => match place(subject, opened, self.heads.get(subject)) {
                Ok(Judged::Foreign(reason)) => Judged::Foreign(reason),
                _ => Judged::Foreign(
                    "named as foreign by a signed checkpoint, though its authenticator checks"
                        .to_owned(),
                ),
            },
            (_, false) => place(subject, opened, self.heads.get(subject))
                .map_err(|broken| fail(broken.to_string()))?,
        };
        match verdict {
            Judged::Next(commit) => {
                // A subject is copied once per aggregate, not once per commit.
                match self.heads.get_mut(subject) {
                    Some(head) => *head = Head::from(&commit),
                    None => {
                        self.heads.insert(subject.to_owned(), Head::from(&commit));
                    }
                }
                self.commits += 1;
            }
            Judged::Foreign(reason) => self.foreign.push(ForeignMessage {
                seq,
                subject: subject.to_owned(),
                reason,
            }),
        }
        self.check_checkpoints()
    }
}

/// A message opened for [`LogVerifier::check_opened`].
pub type Opened = Result<Commit<RawEvent>, CommitError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::{AggregateRef, Digest, NewCommit};
    use crate::ids::{AggregateId, CommandId, ProjectId};
    use crate::principal::Actor;
    use crate::subject::AggregateKind;
    use crate::timestamp::Timestamp;

    /// A log of two aggregates, interleaved: (seq, subject, bytes).
    fn log() -> Vec<(u64, String, Vec<u8>)> {
        log_with(|_| "secret.metadata.set")
    }

    /// The same log, with each commit's command chosen by sequence, every hash and
    /// link computed as the service would: a rewrite that hides itself from the chain.
    fn log_with(command: impl Fn(u64) -> &'static str) -> Vec<(u64, String, Vec<u8>)> {
        let mut out = Vec::new();
        let key = CommitKey::new([1; 32]);
        let mut prev: HashMap<&str, (u64, Digest)> = HashMap::new();
        for (seq, id) in [(1, "a"), (2, "b"), (3, "a"), (4, "a"), (5, "b")] {
            let aggregate = AggregateRef {
                kind: AggregateKind::Secret,
                project: ProjectId::parse("p1").unwrap(),
                id: AggregateId::parse(id).unwrap(),
            };
            let (version, last) = prev.get(id).map_or((1, None), |(v, h)| (v + 1, Some(*h)));
            let commit = NewCommit {
                id: CommandId::parse(&format!("c{seq}")).unwrap(),
                aggregate: aggregate.clone(),
                version,
                command: command(seq).into(),
                actor: Actor::scheduler(),
                at: Timestamp::from_unix_millis(1_800_000_000_000).unwrap(),
                events: vec![RawEvent::new(&serde_json::json!({"type": "x", "v": 1}))],
            }
            .seal(last, &key);
            prev.insert(id, (version, commit.hash));
            out.push((seq, aggregate.subject(), commit.to_bytes()));
        }
        out
    }

    fn verify(log: &[(u64, String, Vec<u8>)]) -> Result<u64, Violation> {
        verify_against(log, Vec::new())
    }

    fn verify_against(
        log: &[(u64, String, Vec<u8>)],
        checkpoints: Vec<SignedCheckpoint>,
    ) -> Result<u64, Violation> {
        let mut v = LogVerifier::with_checkpoints(checkpoints, Some(CommitKey::new([1; 32])));
        for (seq, subject, bytes) in log {
            v.check(*seq, subject, bytes)?;
        }
        v.finish()?;
        Ok(v.commits())
    }

    /// Signed checkpoints of `log` at each of `sizes`.
    fn checkpoints(log: &[(u64, String, Vec<u8>)], sizes: &[u64]) -> Vec<SignedCheckpoint> {
        let signer = crate::checkpoint::CheckpointSigner::new("test", &[7; 32]).unwrap();
        let keys = crate::checkpoint::CheckpointVerifier::new(&[signer.public_key()]).unwrap();
        let at = Timestamp::from_unix_millis(1_800_000_000_000).unwrap();
        sizes
            .iter()
            .map(|&size| {
                let mut tree = MerkleLog::compact();
                log[..size as usize]
                    .iter()
                    .for_each(|(_, _, b)| tree.append(b));
                keys.open(&signer.sign(size, tree.root(), at, &Foreign::default()))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_rewritten_chain_passes_the_chain_check_and_fails_the_checkpoint() {
        let original = log();
        let signed = checkpoints(&original, &[2, 4]);
        assert_eq!(verify_against(&original, signed.clone()), Ok(5));
        // Commit 3 says another command, and every later hash of its aggregate is
        // recomputed: the chain holds, the checkpoint of 4 commits does not.
        let rewritten = log_with(|seq| {
            if seq == 3 {
                "secret.acl.set"
            } else {
                "secret.metadata.set"
            }
        });
        assert_eq!(verify(&rewritten), Ok(5));
        let v = verify_against(&rewritten, signed).unwrap_err();
        assert_eq!(v.seq, 3);
        assert!(
            v.reason
                .contains("a commit from sequence 3 to 4 was changed"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn commits_removed_from_the_end_are_caught_by_a_checkpoint() {
        let mut log = log();
        let signed = checkpoints(&log, &[5]);
        log.truncate(3);
        assert_eq!(verify(&log), Ok(3));
        let v = verify_against(&log, signed).unwrap_err();
        assert_eq!(v.seq, 4);
        assert!(
            v.reason.contains("the log ends at sequence 3"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn an_intact_log_verifies() {
        assert_eq!(verify(&log()), Ok(5));
    }

    /// The foreign messages a verification of `log` finds, and its result.
    fn foreign_in(log: &[(u64, String, Vec<u8>)]) -> (Vec<ForeignMessage>, Result<(), Violation>) {
        let mut v = LogVerifier::with_checkpoints(Vec::new(), Some(CommitKey::new([1; 32])));
        let result = log
            .iter()
            .try_for_each(|(seq, subject, bytes)| v.check(*seq, subject, bytes));
        (v.foreign().to_vec(), result)
    }

    #[test]
    fn a_changed_byte_is_named_by_its_sequence() {
        let mut log = log();
        let text = String::from_utf8(log[2].2.clone())
            .unwrap()
            .replace("c3", "c9");
        log[2].2 = text.into_bytes();
        let (foreign, result) = foreign_in(&log);
        assert_eq!(foreign.len(), 1);
        assert_eq!(foreign[0].seq, 3);
        assert!(foreign[0].reason.contains("hash mismatch"), "{foreign:?}");
        // And the aggregate's next commit no longer links to anything it has.
        let v = result.unwrap_err();
        assert_eq!(v.seq, 4);
        assert!(v.reason.contains("missing"), "{}", v.reason);
    }

    #[test]
    fn forged_and_replayed_messages_are_named_and_skipped() {
        let mut log = log();
        // Junk, a commit under another key, and a copy of commit 1, appended.
        log.push((6, log[0].1.clone(), b"{\"error\":\"x\"}".to_vec()));
        let other = CommitKey::new([2; 32]);
        let forged = NewCommit {
            id: CommandId::parse("forged").unwrap(),
            aggregate: AggregateRef {
                kind: AggregateKind::Secret,
                project: ProjectId::parse("p1").unwrap(),
                id: AggregateId::parse("a").unwrap(),
            },
            version: 4,
            command: "secret.acl.set".into(),
            actor: Actor::scheduler(),
            at: Timestamp::from_unix_millis(1_800_000_000_000).unwrap(),
            events: vec![RawEvent::new(&serde_json::json!({"type": "x", "v": 1}))],
        }
        .seal(None, &other);
        log.push((7, log[0].1.clone(), forged.to_bytes()));
        log.push((8, log[0].1.clone(), log[0].2.clone()));
        let (foreign, result) = foreign_in(&log);
        assert_eq!(result, Ok(()));
        let named: Vec<u64> = foreign.iter().map(|f| f.seq).collect();
        assert_eq!(named, [6, 7, 8]);
        assert!(
            foreign[1].reason.contains("not the commit key's"),
            "{foreign:?}"
        );
        assert!(foreign[2].reason.contains("replayed"), "{foreign:?}");
        // Without the key, the forged commit is caught by its link, and a checkpoint
        // that names it tells the auditor it is foreign.
        let mut v = LogVerifier::with_checkpoints(Vec::new(), None);
        let result = log
            .iter()
            .try_for_each(|(seq, subject, bytes)| v.check(*seq, subject, bytes));
        assert_eq!(result.unwrap_err().seq, 7);
        let signer = crate::checkpoint::CheckpointSigner::new("test", &[7; 32]).unwrap();
        let keys = crate::checkpoint::CheckpointVerifier::new(&[signer.public_key()]).unwrap();
        let mut tree = MerkleLog::compact();
        log.iter().for_each(|(_, _, b)| tree.append(b));
        let listed = Foreign::parse("6-7").unwrap();
        let at = Timestamp::from_unix_millis(1_800_000_000_000).unwrap();
        let checkpoint = keys
            .open(&signer.sign(8, tree.root(), at, &listed))
            .unwrap();
        let mut v = LogVerifier::with_checkpoints(vec![checkpoint], None);
        for (seq, subject, bytes) in &log {
            v.check(*seq, subject, bytes).unwrap();
        }
        v.finish().unwrap();
        let named: Vec<u64> = v.foreign().iter().map(|f| f.seq).collect();
        assert_eq!(named, [6, 7, 8]);
    }

    #[test]
    fn a_removed_commit_is_named() {
        let mut log = log();
        log.remove(2);
        let v = verify(&log).unwrap_err();
        assert_eq!(v.seq, 3);
        assert_eq!(
            v.reason,
            "expected sequence 3 next, found 4: commits were removed or the log was reordered"
        );
    }

    #[test]
    fn reordered_commits_are_named() {
        let mut log = log();
        log.swap(2, 3);
        let v = verify(&log).unwrap_err();
        assert_eq!(v.seq, 3);
        assert!(v.reason.contains("reordered"), "{}", v.reason);
        // Renumbered to hide it, the aggregate's chain still shows it.
        let mut log = super::tests::log();
        log.swap(2, 3);
        log[2].0 = 3;
        log[3].0 = 4;
        let v = verify(&log).unwrap_err();
        assert_eq!(v.seq, 3);
        assert!(v.reason.contains("missing"), "{}", v.reason);
    }
}
