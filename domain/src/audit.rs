//! Reading the log as an auditor: any commit, whatever its aggregate kind, with its
//! events as stored; and the verification of the whole log.
//!
//! [`LogVerifier`] takes the stream's messages in order and checks what an auditor
//! must be able to trust without trusting the server: each commit's hash covers its
//! content; each commit links to its aggregate's previous commit (`prev`, `version`);
//! the stream's sequence numbers run without gaps (nothing removed); a commit sits on
//! its aggregate's own subject. The first violation is reported with its sequence.
//!
//! It also hashes the commits into the log's Merkle tree and compares the root with
//! every signed checkpoint it is given, at that checkpoint's size. The chain alone
//! cannot show a log rewritten with every later hash recomputed, or commits removed
//! from its end; a checkpoint signed with a key kept outside NATS can.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use crate::checkpoint::SignedCheckpoint;
use crate::commit::{Commit, CommitError, Digest, EventCodec};
use crate::merkle::{MerkleHash, MerkleLog};

/// An event as stored, of any aggregate kind: its JSON, `type` and `v` included.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent(pub Value);

impl RawEvent {
    /// The event's `type`.
    pub fn type_name(&self) -> &str {
        self.0.get("type").and_then(Value::as_str).unwrap_or("")
    }
}

impl EventCodec for RawEvent {
    fn encode(&self) -> Value {
        self.0.clone()
    }

    fn decode(value: Value) -> Result<Self, CommitError> {
        Ok(Self(value))
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
    /// The entries of the commit at `seq` that the filter admits, as JSON: sequence,
    /// time, actor, command, aggregate, version, hash and the event (redacted).
    pub fn entries(&self, seq: u64, commit: &Commit<RawEvent>) -> Vec<Value> {
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
            .filter(|e| self.event_type.as_ref().is_none_or(|t| e.type_name() == t))
            .map(|e| {
                let mut event = e.0.clone();
                redact(&mut event);
                serde_json::json!({
                    "seq": seq,
                    "at": b.at.to_rfc3339(),
                    "actor": actor_name(&b.actor),
                    "command": b.command,
                    "aggregate": b.aggregate,
                    "version": b.version,
                    "hash": commit.hash.to_hex(),
                    "event": event,
                })
            })
            .collect()
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

/// Walks a log in stream order and checks every commit.
#[derive(Debug)]
pub struct LogVerifier {
    last_seq: u64,
    /// Each aggregate's last commit: version and hash.
    heads: HashMap<String, (u64, Digest)>,
    commits: u64,
    tree: MerkleLog,
    /// Checkpoints not reached yet, smallest first.
    ahead: VecDeque<SignedCheckpoint>,
    /// The largest checkpoint the log matched, and how many did.
    matched: Option<SignedCheckpoint>,
    matched_count: usize,
}

impl Default for LogVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl LogVerifier {
    /// A verifier for a log starting at sequence 1.
    pub fn new() -> Self {
        Self::with_checkpoints(Vec::new())
    }

    /// A verifier that also checks the log against `checkpoints` (whose signatures
    /// the caller has checked).
    pub fn with_checkpoints(mut checkpoints: Vec<SignedCheckpoint>) -> Self {
        checkpoints.sort_by_key(|c| c.size);
        Self {
            last_seq: 0,
            heads: HashMap::new(),
            commits: 0,
            tree: MerkleLog::compact(),
            ahead: checkpoints.into(),
            matched: None,
            matched_count: 0,
        }
    }

    /// How many commits have been checked.
    pub fn commits(&self) -> u64 {
        self.commits
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
        let commit = Commit::<RawEvent>::from_slice(bytes).map_err(|e| fail(e.to_string()))?;
        let own = commit.body.aggregate.subject();
        if own != subject {
            return Err(fail(format!(
                "the commit of {own} is stored on {subject}: it was moved"
            )));
        }
        let (want_version, want_prev) = match self.heads.get(&own) {
            None => (1, None),
            Some((version, hash)) => (version + 1, Some(*hash)),
        };
        if commit.body.version != want_version || commit.prev != want_prev {
            return Err(fail(format!(
                "commit version {} of {own} links to {}, but the aggregate's previous commit \
                 is version {} ({}): a commit before it was removed, reordered or altered",
                commit.body.version,
                commit
                    .prev
                    .map_or_else(|| "nothing".to_owned(), |h| h.to_string()),
                want_version - 1,
                want_prev.map_or_else(|| "none".to_owned(), |h| h.to_string()),
            )));
        }
        self.heads.insert(own, (commit.body.version, commit.hash));
        self.commits += 1;
        self.tree.append(bytes);
        self.check_checkpoints()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::{AggregateRef, NewCommit};
    use crate::ids::{CommandId, ProjectId};
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
        let mut prev: HashMap<&str, (u64, Digest)> = HashMap::new();
        for (seq, id) in [(1, "a"), (2, "b"), (3, "a"), (4, "a"), (5, "b")] {
            let aggregate = AggregateRef {
                kind: AggregateKind::Secret,
                project: ProjectId::parse("p1").unwrap(),
                id: id.to_owned(),
            };
            let (version, last) = prev.get(id).map_or((1, None), |(v, h)| (v + 1, Some(*h)));
            let commit = NewCommit {
                id: CommandId::parse(&format!("c{seq}")).unwrap(),
                aggregate: aggregate.clone(),
                version,
                command: command(seq).into(),
                actor: Actor::scheduler(),
                at: Timestamp::from_unix_millis(1_800_000_000_000).unwrap(),
                events: vec![RawEvent(serde_json::json!({"type": "x", "v": 1}))],
            }
            .seal(last);
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
        let mut v = LogVerifier::with_checkpoints(checkpoints);
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
                keys.open(&signer.sign(size, tree.root(), at)).unwrap()
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

    #[test]
    fn a_changed_byte_is_named_by_its_sequence() {
        let mut log = log();
        let text = String::from_utf8(log[2].2.clone())
            .unwrap()
            .replace("c3", "c9");
        log[2].2 = text.into_bytes();
        let v = verify(&log).unwrap_err();
        assert_eq!(v.seq, 3);
        assert!(v.reason.contains("hash mismatch"), "{}", v.reason);
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
        assert!(v.reason.contains("links to"), "{}", v.reason);
    }
}
