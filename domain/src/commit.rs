//! The commit: one JetStream message per accepted command, holding all the events
//! that command produced, in order, plus the links of a per-aggregate hash chain.
//!
//! Wire form (JSON; `hash` is SHA-256 over the [canonical](crate::canonical) encoding
//! of every other member, hex-encoded):
//!
//! ```json
//! {"id": "<command id>", "aggregate": {"kind": "secret", "project": "p1", "id": "<uuid>"},
//!  "version": 2, "command": "secret.payload.put",
//!  "actor": {"user": "alice", "project": "p1", "roles": ["admin"]},
//!  "at": "2026-11-22T10:00:00.123456Z", "events": [{"type": "…", "v": 1, …}],
//!  "prev": "<hash of version 1>", "hash": "<hash of this commit>"}
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::canonical;
use crate::ids::{CommandId, ProjectId};
use crate::principal::Actor;
use crate::subject::{AggregateKind, aggregate_subject};
use crate::timestamp::Timestamp;

/// A SHA-256 digest, hex-encoded on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a SHA-256 hex digest")))
    }
}

/// Which aggregate a commit belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AggregateRef {
    /// The aggregate's kind.
    pub kind: AggregateKind,
    /// The project that owns it.
    pub project: ProjectId,
    /// Its id (a UUID for secrets).
    pub id: String,
}

impl AggregateRef {
    /// The subject its commits are stored on.
    pub fn subject(&self) -> String {
        aggregate_subject(&self.project, self.kind, &self.id)
    }
}

/// An event type that can be written to and read from the log, with its version.
pub trait EventCodec: Sized {
    /// The JSON form, with `type` and `v` members.
    fn encode(&self) -> Value;
    /// Reads any version this build knows, upcasting old versions to the current one.
    fn decode(value: Value) -> Result<Self, CommitError>;
}

/// The JSON of an event: its serde form (`type` included) plus `v`, the version this
/// build writes for its type.
pub fn encode_versioned<E: Serialize>(event: &E, version: Option<u64>) -> Value {
    // Serialising an event's plain structs to a Value cannot fail: every map key is a
    // string and no Serialize impl there returns an error.
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("v".into(), Value::from(version.unwrap_or(1)));
    }
    value
}

/// Reads an event written as `{"type", "v", …}`: the current version as is, an older
/// one through `upcast` (which returns the current version's JSON), a newer or unknown
/// one refused by name.
pub fn decode_versioned<E: serde::de::DeserializeOwned>(
    value: Value,
    current_version: fn(&str) -> Option<u64>,
    upcast: impl Fn(&str, u64, Value) -> Result<Value, CommitError>,
) -> Result<E, CommitError> {
    let Value::Object(mut map) = value else {
        return Err(CommitError::Event("an event must be a JSON object".into()));
    };
    let type_name = map
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| CommitError::Event("event without a string \"type\"".into()))?
        .to_owned();
    let v = map
        .remove("v")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| CommitError::Event(format!("{type_name} without a numeric \"v\"")))?;
    let value = match current_version(&type_name) {
        Some(current) if v == current => Value::Object(map),
        Some(current) if v < current => upcast(&type_name, v, Value::Object(map))?,
        Some(current) => {
            return Err(CommitError::Event(format!(
                "{type_name} v{v} cannot be read by this build (it reads up to v{current}); \
                 upgrade keyledger"
            )));
        }
        None => {
            return Err(CommitError::Event(format!(
                "unknown event type {type_name:?}"
            )));
        }
    };
    serde_json::from_value(value).map_err(|e| CommitError::Event(format!("{type_name}: {e}")))
}

/// Why bytes from the log are not a valid commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Not JSON, or a member is missing or has the wrong type.
    #[error("malformed commit: {0}")]
    Malformed(String),
    /// The stored hash does not match the content: the commit was altered.
    #[error("commit hash mismatch: stored {stored}, computed {computed}")]
    HashMismatch {
        /// The `hash` member as stored.
        stored: Digest,
        /// The hash of the stored content.
        computed: Digest,
    },
    /// An event has an unknown type or version, or does not match its schema.
    #[error("bad event: {0}")]
    Event(String),
}

/// What a command handler decided to write, before it is linked into the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCommit<E> {
    /// The command id (idempotency key).
    pub id: CommandId,
    /// The aggregate written to.
    pub aggregate: AggregateRef,
    /// The aggregate's version after this commit (1 for the first).
    pub version: u64,
    /// The command name, e.g. `secret.create`.
    pub command: String,
    /// Who issued the command.
    pub actor: Actor,
    /// When the command was accepted.
    pub at: Timestamp,
    /// The events, in order; never empty.
    pub events: Vec<E>,
}

/// A commit as stored: a [`NewCommit`] plus its chain links.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit<E> {
    /// The content.
    pub body: NewCommit<E>,
    /// The hash of the aggregate's previous commit; `None` for version 1.
    pub prev: Option<Digest>,
    /// The hash of this commit.
    pub hash: Digest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommit {
    id: CommandId,
    aggregate: AggregateRef,
    version: u64,
    command: String,
    actor: Actor,
    at: Timestamp,
    events: Vec<Value>,
    prev: Option<Digest>,
    hash: Digest,
}

/// The hash of a commit's JSON form with its `hash` member removed.
pub fn hash_of(mut value: Map<String, Value>) -> Digest {
    value.remove("hash");
    Digest(Sha256::digest(canonical::to_vec(&Value::Object(value))).into())
}

impl<E: EventCodec> NewCommit<E> {
    /// Links this commit after `prev` (the hash of the aggregate's last commit) and
    /// computes its hash.
    pub fn seal(self, prev: Option<Digest>) -> Commit<E> {
        let mut commit = Commit {
            body: self,
            prev,
            hash: Digest([0; 32]),
        };
        let Value::Object(map) = commit.to_json() else {
            unreachable!("to_json always builds an object")
        };
        commit.hash = hash_of(map);
        commit
    }
}

impl<E: EventCodec> Commit<E> {
    /// The JSON form written to the log.
    pub fn to_json(&self) -> Value {
        let b = &self.body;
        serde_json::json!({
            "id": b.id,
            "aggregate": b.aggregate,
            "version": b.version,
            "command": b.command,
            "actor": b.actor,
            "at": b.at,
            "events": b.events.iter().map(EventCodec::encode).collect::<Vec<_>>(),
            "prev": self.prev,
            "hash": self.hash,
        })
    }

    /// The bytes of the JetStream message.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical::to_vec(&self.to_json())
    }

    /// Parses a commit from the log, checking that its hash matches its content.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CommitError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| CommitError::Malformed(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(CommitError::Malformed("not a JSON object".into()));
        };
        let computed = hash_of(map.clone());
        let raw: RawCommit = serde_json::from_value(Value::Object(map))
            .map_err(|e| CommitError::Malformed(e.to_string()))?;
        if raw.hash != computed {
            return Err(CommitError::HashMismatch {
                stored: raw.hash,
                computed,
            });
        }
        if raw.events.is_empty() {
            return Err(CommitError::Malformed(
                "a commit holds at least one event".into(),
            ));
        }
        let events = raw
            .events
            .into_iter()
            .map(E::decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            body: NewCommit {
                id: raw.id,
                aggregate: raw.aggregate,
                version: raw.version,
                command: raw.command,
                actor: raw.actor,
                at: raw.at,
                events,
            },
            prev: raw.prev,
            hash: raw.hash,
        })
    }

    /// Checks that this commit directly follows `previous` in its aggregate's chain
    /// (`None`: this must be the first commit).
    pub fn check_link(&self, previous: Option<&Commit<E>>) -> Result<(), String> {
        let (want_version, want_prev) = match previous {
            None => (1, None),
            Some(p) => (p.body.version + 1, Some(p.hash)),
        };
        if self.body.version != want_version {
            return Err(format!(
                "commit {} of {} has version {}, expected {want_version}",
                self.body.id,
                self.body.aggregate.subject(),
                self.body.version
            ));
        }
        if self.prev != want_prev {
            return Err(format!(
                "commit {} of {} links to {:?}, expected {:?}",
                self.body.id,
                self.body.aggregate.subject(),
                self.prev,
                want_prev
            ));
        }
        Ok(())
    }
}
