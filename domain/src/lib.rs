//! keyledger's pure model.
//!
//! Everything here is deterministic: no I/O, no async, no clock, no randomness. Ids and
//! the current time are passed in by the caller, so every rule can be tested by moving
//! time and choosing ids instead of waiting.
//!
//! - [`ids`], [`secret::fields`]: newtypes that can only be built valid. Strings from
//!   the outside world are parsed once, at the edge, into these types.
//! - [`secret`]: the Secret aggregate as a decider: [`secret::decide`] and
//!   [`secret::evolve`].
//! - [`commit`]: the unit written to the log (one per accepted command) and its
//!   per-aggregate hash chain.
//! - [`merkle`], [`checkpoint`]: the log as an RFC 6962 Merkle tree, its signed
//!   checkpoints and inclusion proofs.
//! - [`policy`]: who may do what; the one policy both the NATS and HTTP paths enforce.
//! - [`subject`]: the NATS subjects that form keyledger's public API.

// The domain is the contract of every other crate: each public item says what it is.
#![deny(missing_docs)]

#[macro_use]
mod macros;

pub mod access_key;
pub mod audit;
pub mod canonical;
pub mod chain;
pub mod checkpoint;
pub mod commit;
pub mod container;
pub mod error;
pub mod ids;
pub mod json_text;
pub mod keyring;
pub mod merkle;
pub mod order;
pub mod policy;
pub mod principal;
pub mod quota;
pub mod restarts;
pub mod roles;
pub mod secret;
pub mod subject;
pub mod timestamp;

pub use error::{ErrorCode, Rejection};
