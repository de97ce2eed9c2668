//! The Secret aggregate, as a decider: [`decide`] turns a command into events (or a
//! rejection) given the current state; [`evolve`] folds an event into the state.

pub mod acl;
pub mod arn;
mod command;
pub mod consumer;
mod decide;
mod event;
pub mod fields;
pub mod payload;
pub mod reference;
pub mod rotation;
pub mod schedule;
mod state;
pub mod version;

pub use command::{
    CreateSecret, DeleteMode, Presence, PutValue, RecordStep, Rotate, SecretCommand,
};
pub use decide::{
    Context, authorize, decide, is_blocked_by_consumers, is_scheduled_for_deletion, prune,
    scheduled_for_deletion,
};
pub use event::{
    AclSet, DESTROYED_KEYS, DeletionScheduled, DescriptionSet, MetadatumDeleted, MetadatumSet,
    PayloadStored, RotationCancelled, RotationConfigured, RotationStarted, RotationStepFailed,
    RotationStepSucceeded, RotationSucceeded, SecretConsumerChanged, SecretCreated, SecretDeleted,
    SecretEvent, SecretExpired, SecretRestored, StageMoved, TagsRemoved, TagsSet,
    VersionsDestroyed, may_destroy_keys,
};
pub use state::{Secret, SecretState, evolve, evolve_rotation};
