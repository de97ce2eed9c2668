//! Signed checkpoints of the log and inclusion proofs against them.
//!
//! A checkpoint is a [C2SP tlog-checkpoint] (origin, size, base64 RFC 6962 root, an
//! extension line `time <RFC 3339>`, and, when there were any, an extension line
//! `foreign <ranges>` naming the messages since the previous checkpoint that keyledger
//! did not write, e.g. `foreign 17,40-42`) in a [C2SP signed note] signed with Ed25519:
//! the format of Go's checksum database and of Sigstore's logs, so tools outside
//! keyledger read and check it. The public key an auditor holds is a note verifier
//! key, `<name>+<key id>+<base64 key>`.
//!
//! [C2SP tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
//! [C2SP signed note]: https://c2sp.org/signed-note

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use signed_note::{Note, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint as TreeHead;

use crate::merkle::{MerkleHash, check_inclusion, leaf_hash};
use crate::timestamp::Timestamp;

/// The note algorithm byte for Ed25519 (C2SP signed-note).
const ALG_ED25519: u8 = 1;

/// Why a checkpoint, key or proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// A key name a note cannot carry.
    #[error("checkpoint key name {0:?} must be non-empty, without spaces or '+'")]
    KeyName(String),
    /// A public key that does not parse.
    #[error(
        "{0:?} is not a checkpoint public key (expected <name>+<8 hex digits>+<base64>, as in \
         the checkpoint.pub file)"
    )]
    PublicKey(String),
    /// A note or tree head that does not parse.
    #[error("not a signed checkpoint: {0}")]
    Malformed(String),
    /// No signature by a trusted key, or a bad one.
    #[error("checkpoint signature check failed: {0}")]
    Signature(String),
    /// A proof that does not lead to the checkpoint's root.
    #[error("{0}")]
    Proof(String),
}

/// Signs checkpoints with an Ed25519 key.
pub struct CheckpointSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl signed_note::Signer for CheckpointSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.try_sign(msg)?.to_vec())
    }
}

impl CheckpointSigner {
    /// The signer named `name` (also the checkpoints' origin) with the Ed25519 key
    /// whose 32-byte seed is `seed`.
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, CheckpointError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(CheckpointError::KeyName(name.to_owned()));
        }
        let key = SigningKey::from_bytes(seed);
        let public = [&[ALG_ED25519], key.verifying_key().as_bytes().as_slice()].concat();
        Ok(Self {
            name: name.to_owned(),
            id: signed_note::key_id(name, &public),
            key,
        })
    }

    /// The public key auditors check checkpoints with.
    pub fn public_key(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.name, &self.key.verifying_key())
    }

    /// The signed checkpoint of a log of `size` messages with Merkle root `root`, made
    /// at `at`, naming the `foreign` messages among those it adds.
    pub fn sign(&self, size: u64, root: MerkleHash, at: Timestamp, foreign: &Foreign) -> String {
        let mut extension = format!("time {}\n", at.to_rfc3339());
        if !foreign.is_empty() {
            extension.push_str(&format!("foreign {foreign}\n"));
        }
        // The origin is a valid key name and the extension non-empty lines, so the
        // tree head is well formed; its text is printable ASCII ending in a newline,
        // so the note is too; and the signer's name was checked in `new`.
        let head = TreeHead::new(&self.name, size, root, &extension)
            .expect("origin and extension are well formed");
        let mut note = Note::new(&head.to_bytes(), &[]).expect("a tree head is a valid note text");
        note.add_sigs(&[self])
            .expect("the signer's name was checked when it was made");
        String::from_utf8_lossy(&note.to_bytes()).into_owned()
    }
}

/// A checkpoint whose signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    /// The log it names.
    pub origin: String,
    /// How many commits it covers: sequences 1 to `size`.
    pub size: u64,
    /// The Merkle root of those commits.
    pub root: MerkleHash,
    /// When it was made, if it says.
    pub at: Option<Timestamp>,
    /// The messages it names as foreign (not written by keyledger).
    pub foreign: Foreign,
    /// The note as signed.
    pub note: String,
}

/// Stream sequences of foreign messages (on the event stream, but not written by
/// keyledger), as ascending, disjoint ranges. Written `17,40-42`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Foreign(Vec<(u64, u64)>);

impl Foreign {
    /// Adds `seq`, which must come after every sequence already held.
    pub fn push(&mut self, seq: u64) {
        match self.0.last_mut() {
            Some((_, end)) if *end + 1 == seq => *end = seq,
            Some((_, end)) if *end >= seq => {}
            _ => self.0.push((seq, seq)),
        }
    }

    /// Adds every range of `other`.
    pub fn extend(&mut self, other: &Foreign) {
        self.0.extend_from_slice(&other.0);
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(start, end) in &self.0 {
            match merged.last_mut() {
                Some((_, last)) if start <= last.saturating_add(1) => *last = (*last).max(end),
                _ => merged.push((start, end)),
            }
        }
        self.0 = merged;
    }

    /// The sequences named after `seq`.
    pub fn after(&self, seq: u64) -> Self {
        Self(
            self.0
                .iter()
                .filter(|&&(_, end)| end > seq)
                .map(|&(start, end)| (start.max(seq + 1), end))
                .collect(),
        )
    }

    /// Whether `seq` is named.
    pub fn contains(&self, seq: u64) -> bool {
        let i = self.0.partition_point(|&(_, end)| end < seq);
        self.0.get(i).is_some_and(|&(start, _)| start <= seq)
    }

    /// Whether no sequence is named.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every sequence named, ascending.
    pub fn sequences(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|&(start, end)| start..=end)
    }

    /// Parses `17,40-42`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut out = Self::default();
        for part in text.split(',') {
            let (start, end) = match part.split_once('-') {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None => {
                    let n = part.parse().ok()?;
                    (n, n)
                }
            };
            if start > end || out.0.last().is_some_and(|&(_, last)| start <= last) {
                return None;
            }
            out.0.push((start, end));
        }
        Some(out)
    }
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (start, end)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl SignedCheckpoint {
    /// When it was made, for messages: the time, or "at an unknown time".
    pub fn when(&self) -> String {
        self.at.map_or_else(
            || "at an unknown time".to_owned(),
            |t| format!("at {}", t.to_rfc3339()),
        )
    }
}

/// The public keys checkpoints are checked with.
pub struct CheckpointVerifier {
    keys: VerifierList,
    names: Vec<String>,
}

impl std::fmt::Debug for CheckpointVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointVerifier")
            .field("keys", &self.names)
            .finish()
    }
}

impl CheckpointVerifier {
    /// A verifier trusting each of `public_keys`.
    pub fn new<S: AsRef<str>>(public_keys: &[S]) -> Result<Self, CheckpointError> {
        let mut list: Vec<Box<dyn Verifier>> = Vec::new();
        let mut names = Vec::new();
        for key in public_keys {
            let key = key.as_ref().trim();
            let verifier = StandardVerifier::new(key)
                .map_err(|_| CheckpointError::PublicKey(key.to_owned()))?;
            names.push(key.to_owned());
            list.push(Box::new(verifier));
        }
        Ok(Self {
            keys: VerifierList::new(list),
            names,
        })
    }

    /// Checks `note`'s signature and reads the checkpoint in it.
    pub fn open(&self, note: &str) -> Result<SignedCheckpoint, CheckpointError> {
        let parsed = Note::from_bytes(note.as_bytes())
            .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        parsed.verify(&self.keys).map_err(|e| {
            CheckpointError::Signature(match e {
                signed_note::NoteError::UnverifiedNote => {
                    "no signature by a trusted key (is it the right public key?)".to_owned()
                }
                other => other.to_string(),
            })
        })?;
        let head = TreeHead::from_bytes(parsed.text())
            .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        let at = head
            .extension()
            .lines()
            .find_map(|l| l.strip_prefix("time "))
            .and_then(|t| Timestamp::parse_iso8601("time", t).ok());
        let foreign = match head
            .extension()
            .lines()
            .find_map(|l| l.strip_prefix("foreign "))
        {
            None => Foreign::default(),
            Some(list) => Foreign::parse(list).ok_or_else(|| {
                CheckpointError::Malformed(format!("the foreign line {list:?} does not parse"))
            })?,
        };
        Ok(SignedCheckpoint {
            origin: head.origin().to_owned(),
            size: head.size(),
            root: *head.hash(),
            at,
            foreign,
            note: note.to_owned(),
        })
    }
}

/// Evidence that one commit is in the log a checkpoint signs: everything needed to
/// check it with only the checkpoint's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The commit's stream sequence (its leaf index plus one).
    pub sequence: u64,
    /// The commit's bytes as stored, base64.
    pub commit: String,
    /// RFC 6962 leaf hash of the commit, base64: SHA-256(0x00 || commit).
    pub leaf_hash: String,
    /// The audit path from the leaf to the root, base64 hashes, leaf side first.
    pub path: Vec<String>,
    /// The signed checkpoint the path leads to.
    pub checkpoint: String,
}

impl InclusionProof {
    /// The proof that the commit at `sequence`, `commit`, is under `checkpoint`.
    pub fn new(sequence: u64, commit: &[u8], path: &[MerkleHash], checkpoint: &str) -> Self {
        Self {
            sequence,
            commit: B64.encode(commit),
            leaf_hash: leaf_hash(commit).to_string(),
            path: path.iter().map(ToString::to_string).collect(),
            checkpoint: checkpoint.to_owned(),
        }
    }

    /// Checks the proof: the checkpoint's signature with `keys`, the commit's leaf
    /// hash, and the path from it to the signed root. Returns the checkpoint and the
    /// commit's bytes.
    pub fn check(
        &self,
        keys: &CheckpointVerifier,
    ) -> Result<(SignedCheckpoint, Vec<u8>), CheckpointError> {
        let checkpoint = keys.open(&self.checkpoint)?;
        let commit = B64
            .decode(&self.commit)
            .map_err(|_| CheckpointError::Proof("the proof's commit is not base64".into()))?;
        let leaf = leaf_hash(&commit);
        if leaf.to_string() != self.leaf_hash {
            return Err(CheckpointError::Proof(
                "the proof's leaf hash is not the hash of its commit".into(),
            ));
        }
        let path = self
            .path
            .iter()
            .map(|h| MerkleHash::parse_hash(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                CheckpointError::Proof("the proof's path holds a malformed hash".into())
            })?;
        let index = self.sequence.checked_sub(1).ok_or_else(|| {
            CheckpointError::Proof("sequences start at 1; the proof names 0".into())
        })?;
        if !check_inclusion(&path, checkpoint.size, checkpoint.root, index, leaf) {
            return Err(CheckpointError::Proof(format!(
                "the path does not lead from the commit at sequence {} to the root of the \
                 checkpoint of {} commits signed {}: the commit is not in that log",
                self.sequence,
                checkpoint.size,
                checkpoint.when()
            )));
        }
        Ok((checkpoint, commit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MerkleLog;

    fn signer(seed: u8) -> CheckpointSigner {
        CheckpointSigner::new("keyledger/test", &[seed; 32]).unwrap()
    }

    fn at() -> Timestamp {
        Timestamp::parse_iso8601("t", "2026-11-22T10:00:00Z").unwrap()
    }

    #[test]
    fn a_checkpoint_is_a_signed_note_its_key_opens_and_another_refuses() {
        let mut tree = MerkleLog::compact();
        tree.append(b"one");
        tree.append(b"two");
        let note = signer(1).sign(2, tree.root(), at(), &Foreign::default());
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(&lines[..2], ["keyledger/test", "2"]);
        assert_eq!(lines[3], "time 2026-11-22T10:00:00Z");
        assert!(lines[5].starts_with("— keyledger/test "), "{note}");

        let ours = CheckpointVerifier::new(&[signer(1).public_key()]).unwrap();
        let opened = ours.open(&note).unwrap();
        assert_eq!(
            (opened.size, opened.root, opened.at),
            (2, tree.root(), Some(at()))
        );

        let theirs = CheckpointVerifier::new(&[signer(2).public_key()]).unwrap();
        assert!(matches!(
            theirs.open(&note),
            Err(CheckpointError::Signature(_))
        ));
        // Any change to the signed text breaks the signature.
        let forged = note.replacen("\n2\n", "\n3\n", 1);
        assert!(matches!(
            ours.open(&forged),
            Err(CheckpointError::Signature(_))
        ));
    }

    #[test]
    fn a_proof_checks_with_the_public_key_alone_and_fails_when_anything_changes() {
        let mut tree = MerkleLog::full();
        let commits: Vec<Vec<u8>> = (0..7).map(|i| format!("commit {i}").into_bytes()).collect();
        commits.iter().for_each(|c| tree.append(c));
        let note = signer(1).sign(7, tree.root(), at(), &Foreign::default());
        let proof = InclusionProof::new(4, &commits[3], &tree.prove(3).unwrap(), &note);
        let keys = CheckpointVerifier::new(&[signer(1).public_key()]).unwrap();
        let (checkpoint, commit) = proof.check(&keys).unwrap();
        assert_eq!((checkpoint.size, commit), (7, commits[3].clone()));

        let mut moved = proof.clone();
        moved.sequence = 5;
        assert!(matches!(moved.check(&keys), Err(CheckpointError::Proof(_))));
        let mut altered = proof.clone();
        altered.commit = B64.encode(b"commit X");
        assert!(altered.check(&keys).is_err());
        let other = CheckpointVerifier::new(&[signer(3).public_key()]).unwrap();
        assert!(proof.check(&other).is_err());
    }

    #[test]
    fn a_checkpoint_names_its_foreign_messages_in_ranges() {
        let mut foreign = Foreign::default();
        for seq in [3, 4, 5, 9] {
            foreign.push(seq);
        }
        assert_eq!(foreign.to_string(), "3-5,9");
        assert_eq!(Foreign::parse("3-5,9"), Some(foreign.clone()));
        assert!(foreign.contains(4) && foreign.contains(9) && !foreign.contains(6));
        let mut tree = MerkleLog::compact();
        (0..9).for_each(|i| tree.append(&[i]));
        let note = signer(1).sign(9, tree.root(), at(), &foreign);
        assert!(note.contains("\nforeign 3-5,9\n"), "{note}");
        let keys = CheckpointVerifier::new(&[signer(1).public_key()]).unwrap();
        assert_eq!(keys.open(&note).unwrap().foreign, foreign);
        for bad in ["", "5-3", "4,3", "x", "1-"] {
            assert_eq!(Foreign::parse(bad), None, "{bad:?}");
        }
        let mut all = Foreign::parse("1-2,8").unwrap();
        all.extend(&foreign);
        assert_eq!(all.to_string(), "1-5,8-9");
    }

    #[test]
    fn bad_names_and_keys_are_named() {
        assert!(matches!(
            CheckpointSigner::new("has space", &[0; 32]),
            Err(CheckpointError::KeyName(_))
        ));
        let err = CheckpointVerifier::new(&["nonsense"]).unwrap_err();
        assert!(err.to_string().contains("not a checkpoint public key"));
    }
}
