//! The Secret aggregate, as a decider: [`decide`] turns a command into events (or a
//! rejection) given the current state; [`evolve`] folds an event into the state.

pub mod acl;
mod command;
mod decide;
mod event;
pub mod fields;
pub mod payload;
mod state;

pub use command::{CreateSecret, SecretCommand};
pub use decide::{Context, decide};
pub use event::{AclSet, MetadatumSet, PayloadStored, SecretCreated, SecretDeleted, SecretEvent};
pub use state::{PayloadRef, Secret, SecretState, evolve};
