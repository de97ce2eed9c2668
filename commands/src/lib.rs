//! keyledger's write side: command intake over NATS, the command loop over the
//! JetStream event store, the order worker, the scheduler, the key shredder and the
//! checkpointer. What the read side shares with it is in `infra`.

pub mod checkpoints;
pub mod containers;
mod executor;
pub mod handler;
mod intake;
pub mod migrate;
pub mod orders;
pub mod scheduler;
pub mod service;
pub mod shredder;
pub mod store;
pub mod synthetic;
