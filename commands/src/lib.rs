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

/// Why a view the write side reads (the read model's due tasks and pending orders)
/// could not be read; the caller logs it and tries again on its next round.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;
