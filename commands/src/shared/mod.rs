//! What the aggregates' handlers share: the command loop, the event store, request
//! parsing common to every command, and the NATS command service that dispatches to
//! the handlers.

pub(crate) mod executor;
pub(crate) mod request;
pub mod service;
pub mod store;
