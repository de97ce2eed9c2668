//! The KEK keyring as an aggregate of the log: each rotation of the key-encryption
//! key, each re-wrap's start and end, each retirement is a commit, so the log says who
//! changed the KEK, when, and how far a re-wrap got. Versions, KEK ids and counts
//! only: never key material.
//!
//! It lives in the reserved project `_keyledger` (`keyledger.events._keyledger.kek.keyring`),
//! written by keyledger's `kek rotation` task, never by a command a client sends.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::commit::{AggregateRef, CommitError, EventCodec, decode_versioned, encode_versioned};
use crate::ids::{AggregateId, ProjectId};
use crate::subject::AggregateKind;

/// The project the keyring's commits are in: reserved for keyledger itself.
pub const PROJECT: &str = "_keyledger";

/// The keyring's aggregate id.
pub const ID: &str = "keyring";

/// The keyring's aggregate.
pub fn aggregate() -> AggregateRef {
    AggregateRef {
        kind: AggregateKind::Kek,
        project: ProjectId::parse(PROJECT).unwrap_or_else(|_| unreachable!("a valid token")),
        id: AggregateId::parse(ID).unwrap_or_else(|_| unreachable!("a valid token")),
    }
}

/// A new KEK version became current: new data keys are wrapped by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekRotated {
    /// The version current before.
    pub from: u32,
    /// The new version.
    pub to: u32,
    /// The new KEK's id (as recorded with every key it wraps).
    pub kek_id: String,
}

/// A re-wrap of every stored data key under version `to` began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewrapStarted {
    /// The version keys are moved to.
    pub to: u32,
    /// Entries of the key store when it began.
    pub total: u64,
}

/// A re-wrap ended: every entry it found is wrapped by version `to`, or was gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewrapFinished {
    /// The version keys were moved to.
    pub to: u32,
    /// Keys this run wrapped again.
    pub rewrapped: u64,
    /// Keys already wrapped by `to` (a resumed run, or keys made after the rotation).
    pub already: u64,
    /// Keys destroyed while it ran: left destroyed.
    pub gone: u64,
}

/// A KEK version was destroyed: no stored key named it any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekRetired {
    /// The version destroyed.
    pub version: u32,
    /// Its KEK id.
    pub kek_id: String,
}

/// Everything that can happen to the keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum KeyringEvent {
    /// See [`KekRotated`].
    #[serde(rename = "kek.rotated")]
    Rotated(KekRotated),
    /// See [`RewrapStarted`].
    #[serde(rename = "kek.rewrap_started")]
    RewrapStarted(RewrapStarted),
    /// See [`RewrapFinished`].
    #[serde(rename = "kek.rewrap_finished")]
    RewrapFinished(RewrapFinished),
    /// See [`KekRetired`].
    #[serde(rename = "kek.retired")]
    Retired(KekRetired),
}

impl KeyringEvent {
    /// The `type` member.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Rotated(_) => "kek.rotated",
            Self::RewrapStarted(_) => "kek.rewrap_started",
            Self::RewrapFinished(_) => "kek.rewrap_finished",
            Self::Retired(_) => "kek.retired",
        }
    }

    /// The command name its commit records.
    pub fn command(&self) -> &'static str {
        match self {
            Self::Rotated(_) => "kek.rotate",
            Self::RewrapStarted(_) | Self::RewrapFinished(_) => "kek.rewrap",
            Self::Retired(_) => "kek.retire",
        }
    }

    /// The version this build writes for `type_name`; `None` for unknown types.
    pub fn current_version(type_name: &str) -> Option<u64> {
        match type_name {
            "kek.rotated" | "kek.rewrap_started" | "kek.rewrap_finished" | "kek.retired" => Some(1),
            _ => None,
        }
    }
}

impl EventCodec for KeyringEvent {
    fn encode(&self) -> Value {
        encode_versioned(self, Self::current_version(self.type_name()))
    }

    fn decode(value: Value) -> Result<Self, CommitError> {
        // Every type is still at version 1: nothing to upcast.
        decode_versioned(value, Self::current_version, |t, v, _| {
            Err(CommitError::Event(format!("{t} v{v} has no upcaster")))
        })
    }
}

/// The keyring as its commits leave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyringState {
    /// The current version (0 before any rotation).
    pub current: u32,
    /// The version a re-wrap that has not finished is moving keys to.
    pub rewrapping: Option<u32>,
    /// Versions retired.
    pub retired: Vec<u32>,
}

/// Folds one event into the keyring.
pub fn evolve(mut state: KeyringState, event: &KeyringEvent) -> KeyringState {
    match event {
        KeyringEvent::Rotated(r) => state.current = r.to,
        KeyringEvent::RewrapStarted(s) => state.rewrapping = Some(s.to),
        KeyringEvent::RewrapFinished(_) => state.rewrapping = None,
        KeyringEvent::Retired(r) => state.retired.push(r.version),
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyring_follows_its_commits_on_its_own_subject() {
        let events = [
            KeyringEvent::Rotated(KekRotated {
                from: 0,
                to: 1,
                kek_id: "ab".into(),
            }),
            KeyringEvent::RewrapStarted(RewrapStarted { to: 1, total: 3 }),
            KeyringEvent::Retired(KekRetired {
                version: 0,
                kek_id: "cd".into(),
            }),
        ];
        let state = events.iter().fold(KeyringState::default(), evolve);
        assert_eq!(
            state,
            KeyringState {
                current: 1,
                rewrapping: Some(1),
                retired: vec![0],
            }
        );
        assert_eq!(
            aggregate().subject(),
            "keyledger.events._keyledger.kek.keyring"
        );
    }
}
