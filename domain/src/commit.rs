//! The commit: one JetStream message per accepted command, holding all the events
//! that command produced, in order, plus the links of a per-aggregate hash chain and
//! an authenticator that proves keyledger wrote it.
//!
//! Wire form, format 2 (JSON; `hash` is SHA-256 over the [canonical](crate::canonical)
//! encoding of every member but `hash` and `mac`, hex-encoded; `mac` is HMAC-SHA256 of
//! that hash under the commit key, a key held outside NATS):
//!
//! ```json
//! {"v": 2, "id": "<command id>", "aggregate": {"kind": "secret", "project": "p1", "id": "<uuid>"},
//!  "version": 2, "command": "secret.payload.put",
//!  "actor": {"user": "alice", "project": "p1", "roles": ["admin"]},
//!  "at": "2026-11-22T10:00:00.123456Z", "events": [{"type": "…", "v": 1, …}],
//!  "prev": "<hash of version 1>", "hash": "<hash of this commit>", "mac": "<HMAC of hash>"}
//! ```
//!
//! Format 1 (no `v`, no `mac`) is what keyledger wrote before commits were
//! authenticated. It still parses ([`Commit::parse_unverified`]), for auditors and for
//! `keyledger log migrate`, but no reader of the live log accepts it
//! ([`Commit::open`] refuses it and says how to migrate).

use std::fmt;

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::canonical;
use crate::ids::{AggregateId, CommandId, ProjectId};
use crate::principal::Actor;
use crate::subject::{AggregateKind, aggregate_subject};
use crate::timestamp::Timestamp;

/// A SHA-256 digest, hex-encoded on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        const_hex::encode(self.0)
    }

    /// Parses 64 hex digits, in either case. Every commit read holds two or three, and
    /// `hex`'s digit-by-digit decoding was a tenth of `audit verify`'s time (`perf`);
    /// `const_hex` decodes them with SIMD. It also takes a `0x` prefix, which a digest
    /// never has: the length check refuses it.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        const_hex::decode_to_array(s).ok().map(Self)
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
        // Read from the borrowed string: every commit read holds two or three digests,
        // and a String for each was an allocation per digest.
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SHA-256 hex digest")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Digest, E> {
                Digest::from_hex(s)
                    .ok_or_else(|| E::custom(format!("{s:?} is not a SHA-256 hex digest")))
            }
        }
        d.deserialize_str(Hex)
    }
}

/// The commit format this build writes.
pub const FORMAT: u64 = 2;

/// Domain separation for commit authenticators.
const MAC_CONTEXT: &[u8] = b"keyledger/commit-mac/v2\0";

/// The key that authenticates commits: 32 secret bytes held outside NATS (like the
/// KEK), by every keyledger component that writes or reads the log. A message on an
/// event subject without a valid authenticator was not written by keyledger, and
/// every reader ignores it.
#[derive(Clone, zeroize::ZeroizeOnDrop)]
pub struct CommitKey([u8; 32]);

impl CommitKey {
    /// The key made of these bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn hmac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        <Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
    }

    /// The authenticator of the commit whose hash is `hash`.
    pub fn mac(&self, hash: &Digest) -> Digest {
        let mut mac = self.hmac();
        mac.update(MAC_CONTEXT);
        mac.update(&hash.0);
        Digest(mac.finalize().into_bytes().into())
    }

    /// The authenticator of other bytes keyledger writes to NATS (e.g. a batch of
    /// access records), kept apart from commits' by `context`.
    pub fn mac_bytes(&self, context: &[u8], bytes: &[u8]) -> Digest {
        let mut mac = self.hmac();
        mac.update(context);
        mac.update(bytes);
        Digest(mac.finalize().into_bytes().into())
    }

    /// Whether `mac` authenticates `bytes` under `context` (in constant time).
    pub fn verifies_bytes(&self, context: &[u8], bytes: &[u8], mac: &Digest) -> bool {
        let mut check = self.hmac();
        check.update(context);
        check.update(bytes);
        check.verify_slice(&mac.0).is_ok()
    }

    /// Whether `mac` authenticates the commit whose hash is `hash` (in constant time).
    pub fn verifies(&self, hash: &Digest, mac: &Digest) -> bool {
        let mut check = self.hmac();
        check.update(MAC_CONTEXT);
        check.update(&hash.0);
        check.verify_slice(&mac.0).is_ok()
    }
}

impl std::fmt::Debug for CommitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitKey(..)")
    }
}

/// Which aggregate a commit belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AggregateRef {
    /// The aggregate's kind.
    pub kind: AggregateKind,
    /// The project that owns it.
    pub project: ProjectId,
    /// Its id (a UUID for secrets, containers and orders).
    pub id: AggregateId,
}

impl AggregateRef {
    /// The subject its commits are stored on.
    pub fn subject(&self) -> String {
        aggregate_subject(&self.project, self.kind, &self.id)
    }

    /// Whether `subject` is the one its commits are stored on.
    pub fn is_stored_on(&self, subject: &str) -> bool {
        crate::subject::is_aggregate_subject(subject, &self.project, self.kind, &self.id)
    }
}

/// An event type that can be written to and read from the log, with its version.
pub trait EventCodec: Sized {
    /// The JSON form, with `type` and `v` members.
    fn encode(&self) -> Value;
    /// Reads any version this build knows, upcasting old versions to the current one.
    fn decode(value: Value) -> Result<Self, CommitError>;
    /// [`Self::decode`] of the event's JSON as it stands in a commit's bytes. A type
    /// that reads every event parses it; the auditor's
    /// [`RawEvent`](crate::audit::RawEvent) keeps the text, since verifying a log or
    /// checking that a commit is authentic never looks inside its events.
    fn decode_raw(raw: &RawValue) -> Result<Self, CommitError> {
        // serde_json's scan of the commit checked less than a parse does (a lone
        // surrogate escape, a number out of range, deep nesting pass it): such an
        // event fails here, as it fails the exact path, which parses the whole commit.
        let value: Value = serde_json::from_str(raw.get())
            .map_err(|e| CommitError::Malformed(format!("an event does not parse: {e}")))?;
        if crate::json_text::depth(&value) > crate::json_text::EVENT_DEPTH {
            return Err(CommitError::Malformed(
                "an event's arrays and objects nest too deep".into(),
            ));
        }
        Self::decode(value)
    }
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
    /// The authenticator is missing or wrong: keyledger did not write this message.
    #[error("not written by keyledger: {0}")]
    Unauthenticated(String),
}

impl CommitError {
    /// Whether the message is foreign: not a commit keyledger wrote (unparseable, altered,
    /// or without a valid authenticator). Readers skip foreign messages; an event this
    /// build cannot read inside an authentic commit is not foreign, but a reason to
    /// upgrade.
    pub fn is_foreign(&self) -> bool {
        !matches!(self, Self::Event(_))
    }
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

/// A commit as stored: a [`NewCommit`] plus its chain links and authenticator.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit<E> {
    /// The content.
    pub body: NewCommit<E>,
    /// The hash of the aggregate's previous commit; `None` for version 1.
    pub prev: Option<Digest>,
    /// The hash of this commit.
    pub hash: Digest,
    /// The authenticator of `hash` under the commit key; `None` in format 1.
    pub mac: Option<Digest>,
}

/// A commit's members as written, its events as `Ev`: a [`Value`] each when the commit
/// was parsed into one ([`RawCommit::parse`]), their text in the commit's bytes when
/// read straight from them ([`RawCommit::open_as_written`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommit<Ev> {
    #[serde(default)]
    v: Option<u64>,
    id: CommandId,
    aggregate: AggregateRef,
    version: u64,
    command: String,
    actor: Actor,
    at: Timestamp,
    events: Vec<Ev>,
    prev: Option<Digest>,
    hash: Digest,
    #[serde(default)]
    mac: Option<Digest>,
}

/// The hash of a commit's JSON form with its `hash` and `mac` members removed.
pub fn hash_of(value: Map<String, Value>) -> Digest {
    hash_of_object(&value)
}

/// [`hash_of`] without taking the object: reading a commit hashes the object it then
/// deserialises, and copying all of it first, only to leave out two members, cost an
/// allocation for every value in it.
fn hash_of_object(value: &Map<String, Value>) -> Digest {
    Digest(Sha256::digest(canonical::object_to_vec_without(value, &["hash", "mac"])).into())
}

impl<E: EventCodec> NewCommit<E> {
    /// Links this commit after `prev` (the hash of the aggregate's last commit),
    /// computes its hash and authenticates it with `key`.
    pub fn seal(self, prev: Option<Digest>, key: &CommitKey) -> Commit<E> {
        self.seal_for_log(prev, key).commit
    }

    /// [`NewCommit::seal`], with the bytes to publish: the commit is encoded once, the
    /// hash taken over that encoding, and `hash` and `mac` added to the same bytes.
    /// Sealing, then encoding again for the log (`Commit::to_bytes`), built and encoded
    /// the commit twice: a create with a 1 KiB payload took 23.4 µs, and takes 15.7 µs
    /// this way (`cargo bench -p domain --bench open`).
    pub fn seal_for_log(self, prev: Option<Digest>, key: &CommitKey) -> Sealed<E> {
        // A placeholder mac makes `to_json` write format 2 (`v`); the hash leaves the
        // mac out.
        let mut commit = Commit {
            body: self,
            prev,
            hash: Digest([0; 32]),
            mac: Some(Digest([0; 32])),
        };
        let Value::Object(mut map) = commit.to_json() else {
            unreachable!("to_json always builds an object")
        };
        let unsealed = canonical::object_to_vec_without(&map, &["hash", "mac"]);
        commit.hash = Digest(Sha256::digest(&unsealed).into());
        let mac = key.mac(&commit.hash);
        commit.mac = Some(mac);
        let (hash, mac) = (Value::from(commit.hash.to_hex()), Value::from(mac.to_hex()));
        let bytes = canonical::with_members(
            &unsealed,
            &[
                ("hash", &canonical::to_vec(&hash)),
                ("mac", &canonical::to_vec(&mac)),
            ],
        )
        .unwrap_or_else(|| {
            // Not reached (the encoding above is canonical and holds neither name), but
            // encoding the whole object is as exact.
            map.insert("hash".into(), hash);
            map.insert("mac".into(), mac);
            canonical::to_vec(&Value::Object(map))
        });
        Sealed { commit, bytes }
    }
}

/// A commit sealed for the log ([`NewCommit::seal_for_log`]), with the bytes that
/// carry it: [`Commit::to_bytes`] of it, encoded once.
#[derive(Debug, Clone)]
pub struct Sealed<E> {
    /// The commit.
    pub commit: Commit<E>,
    /// Its bytes on the log.
    pub bytes: Vec<u8>,
}

impl<E: EventCodec> Commit<E> {
    /// The JSON form written to the log (format 2; format 1 when there is no `mac`).
    pub fn to_json(&self) -> Value {
        let b = &self.body;
        let mut json = serde_json::json!({
            "id": b.id,
            "aggregate": b.aggregate,
            "version": b.version,
            "command": b.command,
            "actor": b.actor,
            "at": b.at,
            "events": b.events.iter().map(EventCodec::encode).collect::<Vec<_>>(),
            "prev": self.prev,
            "hash": self.hash,
        });
        if let (Some(mac), Value::Object(map)) = (&self.mac, &mut json) {
            map.insert("v".into(), Value::from(FORMAT));
            map.insert("mac".into(), Value::from(mac.to_hex()));
        }
        json
    }

    /// The bytes of the JetStream message.
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical::to_vec(&self.to_json())
    }

    /// Reads a commit from the live log: its hash must match its content and its
    /// authenticator must be `key`'s. A message that fails either was not written by
    /// keyledger ([`CommitError::is_foreign`]).
    pub fn open(bytes: &[u8], key: &CommitKey) -> Result<Self, CommitError> {
        match RawCommit::open_as_written(bytes, key) {
            Some(raw) => raw.into_commit(E::decode_raw),
            None => Self::open_any_encoding(bytes, key),
        }
    }

    /// [`Commit::open`] for a commit in any JSON encoding of its content: parsed into a
    /// [`Value`] and written again canonically to check its hash.
    fn open_any_encoding(bytes: &[u8], key: &CommitKey) -> Result<Self, CommitError> {
        let raw = RawCommit::parse(bytes)?;
        match (raw.v, &raw.mac) {
            (None, _) => {
                return Err(CommitError::Unauthenticated(
                    "it is a format 1 commit, written before commits were authenticated; \
                     migrate the log with `keyledger log migrate`"
                        .into(),
                ));
            }
            (Some(_), None) => {
                return Err(CommitError::Unauthenticated(
                    "it carries no authenticator (mac)".into(),
                ));
            }
            (Some(_), Some(mac)) if !key.verifies(&raw.hash, mac) => {
                return Err(CommitError::Unauthenticated(
                    "its authenticator (mac) is not the commit key's".into(),
                ));
            }
            _ => {}
        }
        raw.into_commit(E::decode)
    }

    /// Reads a commit checking only that its hash matches its content, not who wrote
    /// it: for auditors, who check authenticity against signed checkpoints instead,
    /// and for migrating a format 1 log.
    pub fn parse_unverified(bytes: &[u8]) -> Result<Self, CommitError> {
        RawCommit::parse(bytes)?.into_commit(E::decode)
    }

    /// Whether this commit is in format 1 (written before commits were authenticated).
    pub fn is_format_1(&self) -> bool {
        self.mac.is_none()
    }

    /// Checks that this commit directly follows `previous` in its aggregate's chain
    /// (`None`: this must be the first commit).
    pub fn check_link(&self, previous: Option<&Commit<E>>) -> Result<(), BadLink> {
        let (want_version, want_prev) = match previous {
            None => (1, None),
            Some(p) => (p.body.version + 1, Some(p.hash)),
        };
        if self.body.version != want_version {
            return Err(BadLink::Version {
                commit: self.body.id.clone(),
                subject: self.body.aggregate.subject(),
                version: self.body.version,
                expected: want_version,
            });
        }
        if self.prev != want_prev {
            return Err(BadLink::Prev {
                commit: self.body.id.clone(),
                subject: self.body.aggregate.subject(),
                links_to: self.prev,
                expected: want_prev,
            });
        }
        Ok(())
    }
}

/// How a commit fails to follow the one before it ([`Commit::check_link`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadLink {
    /// Its version is not the next one.
    #[error("commit {commit} of {subject} has version {version}, expected {expected}")]
    Version {
        /// The commit's id.
        commit: CommandId,
        /// Its aggregate's subject.
        subject: String,
        /// Its version.
        version: u64,
        /// The version that comes next.
        expected: u64,
    },
    /// It links to another hash than its predecessor's.
    #[error("commit {commit} of {subject} links to {links_to:?}, expected {expected:?}")]
    Prev {
        /// The commit's id.
        commit: CommandId,
        /// Its aggregate's subject.
        subject: String,
        /// The hash it links to.
        links_to: Option<Digest>,
        /// The predecessor's hash.
        expected: Option<Digest>,
    },
}

impl<'a> RawCommit<&'a RawValue> {
    /// The fast path of [`Commit::open`], for a commit exactly as keyledger writes it
    /// (canonical JSON, format 2, authenticated): parsed straight into its fields, and
    /// its hash checked over its own bytes with `hash` and `mac` cut out, instead of
    /// over a [`Value`] parsed and written again (which cost about half of reading a
    /// commit: `perf` of `audit verify`). `None` sends the commit down the exact path,
    /// which accepts or refuses it and says why.
    ///
    /// Why this accepts only what the exact path accepts: the authenticator proves that
    /// keyledger's writer computed `hash`, and it computes hashes only over canonical
    /// bytes ([`NewCommit::seal`]). SHA-256 of the cut bytes equal to `hash` means they
    /// are those canonical bytes, so the exact path would compute the same hash from
    /// them. Without the key (an auditor's [`Commit::parse_unverified`]) nothing proves
    /// the bytes canonical, and the exact path runs.
    ///
    /// Events are only scanned here (`RawValue`), which checks less than parsing them
    /// into a [`Value`]; [`EventCodec::decode_raw`] then refuses what the parse would
    /// have, for every event type, so both paths still accept the same commits.
    ///
    /// The exact path must read keyledger's canonical bytes back to the same bytes
    /// for the two paths to agree on them. They do as long as commits hold no floating
    /// point number (serde_json, without `float_roundtrip`, can read a float it wrote
    /// one unit off); none does (`canonical`'s module docs).
    fn open_as_written(bytes: &'a [u8], key: &CommitKey) -> Option<Self> {
        let raw: Self = serde_json::from_slice(bytes).ok()?;
        let authentic = raw.v == Some(FORMAT)
            && !raw.events.is_empty()
            && raw
                .mac
                .as_ref()
                .is_some_and(|mac| key.verifies(&raw.hash, mac));
        if !authentic {
            return None;
        }
        let mut hashed = Sha256::new();
        canonical::cut_members(bytes, &["hash", "mac"], |piece| hashed.update(piece))?;
        (Digest(hashed.finalize().into()) == raw.hash).then_some(raw)
    }
}

impl RawCommit<Value> {
    /// Parses the JSON and checks the hash and the format.
    fn parse(bytes: &[u8]) -> Result<Self, CommitError> {
        // Nothing has authenticated these bytes yet.
        let value: Value = crate::json_text::from_untrusted(bytes)
            .map_err(|e| CommitError::Malformed(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(CommitError::Malformed("not a JSON object".into()));
        };
        let computed = hash_of_object(&map);
        let raw: Self = serde_json::from_value(Value::Object(map))
            .map_err(|e| CommitError::Malformed(e.to_string()))?;
        if raw.hash != computed {
            return Err(CommitError::HashMismatch {
                stored: raw.hash,
                computed,
            });
        }
        match raw.v {
            None if raw.mac.is_some() => {
                return Err(CommitError::Malformed(
                    "a format 1 commit cannot carry a mac".into(),
                ));
            }
            Some(v) if v != FORMAT => {
                return Err(CommitError::Malformed(format!(
                    "commit format {v} cannot be read by this build (it reads formats 1 and \
                     {FORMAT}); upgrade keyledger"
                )));
            }
            _ => {}
        }
        if raw.events.is_empty() {
            return Err(CommitError::Malformed(
                "a commit holds at least one event".into(),
            ));
        }
        Ok(raw)
    }
}

impl<Ev> RawCommit<Ev> {
    /// The commit, each event read by `decode`.
    fn into_commit<E>(
        self,
        decode: impl Fn(Ev) -> Result<E, CommitError>,
    ) -> Result<Commit<E>, CommitError> {
        let events = self
            .events
            .into_iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Commit {
            body: NewCommit {
                id: self.id,
                aggregate: self.aggregate,
                version: self.version,
                command: self.command,
                actor: self.actor,
                at: self.at,
                events,
            },
            prev: self.prev,
            hash: self.hash,
            mac: self.mac,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::RawEvent;
    use crate::ids::{CommandId, ProjectId};
    use proptest::prelude::*;

    fn key() -> CommitKey {
        CommitKey::new([9; 32])
    }

    /// A commit whose command and event carry `text` (any string: quotes, escapes,
    /// braces and commas that a byte-level reading must not mistake for structure).
    fn sealed(text: &str, version: u64) -> Commit<RawEvent> {
        NewCommit {
            id: CommandId::parse("c1").unwrap(),
            aggregate: AggregateRef {
                kind: AggregateKind::Secret,
                project: ProjectId::parse("p1").unwrap(),
                id: AggregateId::parse("a").unwrap(),
            },
            version,
            command: text.to_owned(),
            actor: Actor::scheduler(),
            at: Timestamp::from_unix_millis(1_800_000_000_000).unwrap(),
            events: vec![RawEvent::new(&serde_json::json!({
                "type": "x", "v": 1, "hash": text, "nested": {"mac": [text, {"a": text}]},
            }))],
        }
        .seal((version > 1).then_some(Digest([3; 32])), &key())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every commit keyledger writes opens by the fast path, as what was sealed, and
        /// the exact path reads it the same.
        #[test]
        fn written_commits_open_fast_as_sealed(text in any::<String>(), version in 1u64..4) {
            let c = sealed(&text, version);
            let bytes = c.to_bytes();
            prop_assert!(RawCommit::open_as_written(&bytes, &key()).is_some());
            prop_assert_eq!(Commit::open(&bytes, &key()).unwrap(), c.clone());
            prop_assert_eq!(Commit::open_any_encoding(&bytes, &key()).unwrap(), c);
        }

        /// The bytes sealed for the log are the commit's encoding, its hash is that of
        /// its JSON form without `hash` and `mac`, and it reads back as sealed.
        #[test]
        fn bytes_sealed_for_the_log_are_the_commits_encoding(
            text in prop_oneof![any::<String>(), "[\\x00-\\x7f]{0,12}"],
            version in 1u64..4,
        ) {
            let new = sealed(&text, version).body;
            let prev = (version > 1).then_some(Digest([3; 32]));
            let Sealed { commit, bytes } = new.seal_for_log(prev, &key());
            let Value::Object(map) = commit.to_json() else { unreachable!() };
            prop_assert_eq!(commit.hash, hash_of(map));
            prop_assert_eq!(commit.mac, Some(key().mac(&commit.hash)));
            prop_assert_eq!(&bytes, &commit.to_bytes());
            prop_assert_eq!(Commit::open(&bytes, &key()).unwrap(), commit);
        }

        /// Whatever a byte changed, inserted or removed makes of a commit, the fast
        /// path accepts nothing the exact path refuses, and never panics.
        #[test]
        fn altered_bytes_open_as_the_exact_path_says(
            text in any::<String>(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            how in 0..3u8,
        ) {
            let mut bytes = sealed(&text, 2).to_bytes();
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
            let fast = Commit::<RawEvent>::open(&bytes, &key()).map_err(|e| e.to_string());
            let exact = Commit::<RawEvent>::open_any_encoding(&bytes, &key())
                .map_err(|e| e.to_string());
            prop_assert_eq!(fast, exact);
        }
    }

    /// The top-level `hash` and `mac` members written otherwise than keyledger writes
    /// them: moved, spaced, in upper-case hex, duplicated, or named with an escape (the
    /// event holds members of the same names, which must stay as they are). Whichever
    /// path reads each, it reads as the exact path says.
    #[test]
    fn hash_and_mac_members_written_otherwise_read_as_the_exact_path_says() {
        let c = sealed("x", 2);
        let bytes = String::from_utf8(c.to_bytes()).unwrap();
        let member = format!(r#","hash":"{}""#, c.hash.to_hex());
        let without = bytes.replacen(&member, "", 1);
        let first = |m: &str| format!("{{{m},{}", &without[1..]);
        let hash = &member[1..];
        let cases = [
            (first(hash), true),
            (bytes.replacen(r#"],"hash":"#, r#"],"hash": "#, 1), true),
            (
                bytes.replacen(&c.hash.to_hex(), &c.hash.to_hex().to_uppercase(), 1),
                true,
            ),
            (first(&format!("{hash},{hash}")), false),
            (
                first(&format!(r#""hash":"{}",{hash}"#, "0".repeat(64))),
                false,
            ),
            (
                bytes.replacen(r#"],"hash":"#, r#"],"h\u0061sh":"#, 1),
                false,
            ),
            (bytes.replacen(r#","mac":"#, r#","m\u0061c":"#, 1), false),
        ];
        for (variant, fast) in cases {
            let exact = Commit::<RawEvent>::open_any_encoding(variant.as_bytes(), &key())
                .map_err(|e| e.to_string());
            assert_eq!(
                Commit::<RawEvent>::open(variant.as_bytes(), &key()).map_err(|e| e.to_string()),
                exact,
                "{variant}"
            );
            assert_eq!(
                RawCommit::open_as_written(variant.as_bytes(), &key()).is_some(),
                fast,
                "{variant}"
            );
            if fast {
                assert_eq!(exact.unwrap(), c);
            }
        }
    }

    /// The canonical bytes of a commit holding the event written as `event` (canonical
    /// JSON, which this does not check), hashed and authenticated as keyledger's writer
    /// would: what a writer holding the commit key but not keyledger's can write.
    fn with_event(event: &str) -> String {
        let c = sealed("x", 1);
        let bytes = String::from_utf8(c.to_bytes()).unwrap();
        let own = serde_json::to_string(&c.body.events[0].value()).unwrap();
        assert!(bytes.contains(&own));
        let forged = bytes.replacen(&own, event, 1);
        let mut hashed = Sha256::new();
        canonical::cut_members(forged.as_bytes(), &["hash", "mac"], |p| hashed.update(p)).unwrap();
        let hash = Digest(hashed.finalize().into());
        forged
            .replacen(&c.hash.to_hex(), &hash.to_hex(), 1)
            .replacen(&c.mac.unwrap().to_hex(), &key().mac(&hash).to_hex(), 1)
    }

    /// A commit holding an event that serde_json's scan lets through but no `Value`
    /// reads from within a commit (a lone surrogate escape, a number out of range,
    /// nesting one level past what a commit reads with), hashed and authenticated as
    /// keyledger would: a writer holding the commit key but not keyledger's. Every
    /// reader refuses it, as the exact path does, whether it keeps events as text or
    /// parses them; and one level less deep, every reader reads it.
    #[test]
    fn an_event_no_value_reads_from_is_refused_on_every_path() {
        // The event's object and 124 arrays: 125 deep, the most a commit reads with.
        let deepest = format!("{}1{}", "[".repeat(124), "]".repeat(124));
        let deeper = format!("[{deepest}]");
        for (text, refused) in [
            (r#""\ud800""#, true),
            ("1e400", true),
            (deeper.as_str(), true),
            (deepest.as_str(), false),
        ] {
            let forged = with_event(&format!(r#"{{"a":{text},"type":"x","v":1}}"#));
            let exact = Commit::<RawEvent>::open_any_encoding(forged.as_bytes(), &key());
            let fast = Commit::<RawEvent>::open(forged.as_bytes(), &key());
            if refused {
                assert!(
                    exact.as_ref().is_err_and(CommitError::is_foreign),
                    "{text}: {exact:?}"
                );
                assert!(
                    fast.as_ref().is_err_and(CommitError::is_foreign),
                    "{text}: {fast:?}"
                );
            } else {
                assert!(fast.is_ok(), "{text}: {fast:?}");
                assert_eq!(
                    fast.ok(),
                    exact.as_ref().ok().cloned(),
                    "{text}: {:?}",
                    exact.as_ref().err()
                );
            }
            // Parsed events are refused for the same reason (foreign), or, when the
            // text reads, as no secret event ("x").
            let typed = Commit::<crate::secret::SecretEvent>::open(forged.as_bytes(), &key());
            let reason = typed.unwrap_err();
            assert_eq!(reason.is_foreign(), refused, "{text}: {reason}");
        }
    }

    /// A commit holding serde_json's RawValue token as the first member of an object,
    /// as a tag key could before tag keys refused it: an object so led reads, parsed,
    /// as the JSON in its string. Readers holding the key read such a commit as they
    /// did before events were kept as text, whether they keep events as text or parse
    /// them: refused when the string is no JSON or the member is no string, read as
    /// the parse reads it otherwise (so a log holding one keeps its chain). The exact
    /// path, hashing the object as parsed, finds the hash changed.
    #[test]
    fn a_commit_holding_the_raw_value_token_reads_as_before() {
        let token = crate::json_text::RAW_VALUE_TOKEN;
        for (value, read) in [
            (r#""x""#, None),
            ("{}", None),
            (r#""{}""#, Some(serde_json::json!({}))),
            (r#""{\"k\":\"v\"}""#, Some(serde_json::json!({"k": "v"}))),
        ] {
            let forged = with_event(&format!(
                r#"{{"tags":{{"{token}":{value}}},"type":"x","v":1}}"#
            ));
            let fast = Commit::<RawEvent>::open(forged.as_bytes(), &key());
            match &read {
                None => assert!(
                    fast.as_ref().is_err_and(CommitError::is_foreign),
                    "{value}: {fast:?}"
                ),
                Some(tags) => assert_eq!(
                    fast.unwrap().body.events[0].value()["tags"],
                    *tags,
                    "{value}"
                ),
            }
            // Typed readers: the same verdict (an unknown event type "x" once read).
            let typed = Commit::<crate::secret::SecretEvent>::open(forged.as_bytes(), &key());
            assert_eq!(typed.unwrap_err().is_foreign(), read.is_none(), "{value}");
            let exact = Commit::<RawEvent>::open_any_encoding(forged.as_bytes(), &key());
            assert!(exact.is_err_and(|e| e.is_foreign()), "{value}");
        }
    }

    /// Objects led by serde_json's RawValue token, nested in each other's strings
    /// (each parsed afresh by a `Value` parse, with a nesting limit of its own), are
    /// refused before anything parses them into a `Value`, the token's name escaped
    /// or not: by the exact path, by `open` falling back to it for bytes its key did
    /// not authenticate, and by an auditor without the key. (The exact path never
    /// accepted such an object: it hashes the object as parsed, which is not the text.)
    #[test]
    fn nested_raw_value_tokens_are_refused_before_a_value_is_parsed() {
        let token = crate::json_text::RAW_VALUE_TOKEN;
        let nested = crate::json_text::nested_raw_value_tokens(10, 100);
        let escaped = format!(r#"{{"\u0024{}":"1"}}"#, &token[1..]);
        // After another member: the parse keeps the object's members sorted, and reading
        // the events from it again would find the token first.
        let after = format!(r#"{{"b":1,"{token}":{}}}"#, Value::from(nested.clone()));
        for text in [nested.as_str(), escaped.as_str(), after.as_str()] {
            let forged = with_event(&format!(r#"{{"a":{text},"type":"x","v":1}}"#));
            for opened in [
                Commit::<RawEvent>::open_any_encoding(forged.as_bytes(), &key()),
                Commit::<RawEvent>::open(forged.as_bytes(), &CommitKey::new([0x5a; 32])),
                Commit::<RawEvent>::parse_unverified(forged.as_bytes()),
            ] {
                let err = opened.unwrap_err();
                assert!(err.to_string().contains("serde_json reserves"), "{err}");
            }
        }
    }

    /// A digest reads from 64 hex digits in either case, and from nothing else: not
    /// with a `0x` prefix, not one digit more or less, not with a non-hex digit.
    #[test]
    fn digests_read_from_64_hex_digits_only() {
        let d = Digest(std::array::from_fn(|i| (i as u8).wrapping_mul(37)));
        let hex = d.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(Digest::from_hex(&hex), Some(d));
        assert_eq!(Digest::from_hex(&hex.to_uppercase()), Some(d));
        for bad in [
            format!("0x{}", &hex[2..]),
            format!("0x{hex}"),
            hex[1..].to_owned(),
            format!("{hex}0"),
            format!("{}g", &hex[1..]),
            format!("{} ", &hex[1..]),
            String::new(),
        ] {
            assert_eq!(Digest::from_hex(&bad), None, "{bad}");
        }
    }

    /// A commit re-encoded (whitespace, members reordered) is not as written: the exact
    /// path reads it, to the same commit.
    #[test]
    fn a_reencoded_commit_takes_the_exact_path() {
        let c = sealed("x", 1);
        let pretty = serde_json::to_vec_pretty(&c.to_json()).unwrap();
        assert!(RawCommit::open_as_written(&pretty, &key()).is_none());
        assert_eq!(Commit::open(&pretty, &key()).unwrap(), c);
    }
}
