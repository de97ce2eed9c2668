//! keyledger's write side: command intake over NATS, the JetStream event store,
//! envelope encryption and the key store.

pub mod audit;
pub mod checkpoints;
pub mod client;
pub mod clock;
pub mod containers;
pub mod envelope;
pub mod executor;
pub mod handler;
pub mod identity;
pub mod intake;
pub mod keyfile;
pub mod keystore;
pub mod log;
pub mod migrate;
pub mod nats;
pub mod nats_auth;
pub mod objects;
pub mod orders;
pub mod protocol;
pub mod scheduler;
pub mod schemas;
pub mod server;
pub mod service;
pub mod shredder;
pub mod store;
pub mod synthetic;
