//! What works on the event log as a whole rather than on one aggregate.

pub mod checkpoints;
pub mod migrate;
pub mod synthetic;
