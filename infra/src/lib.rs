//! What keyledger's write side (`commands`) and read side (`api`, the CLI) share, so
//! that neither depends on the other:
//!
//! - the command protocol: [`protocol`] (every request and reply, orders included),
//!   its OpenAPI [`schemas`], reading structs only from JSON [`objects`], and the
//!   typed [`client`];
//! - keys: [`keyfile`] (files outside NATS), [`envelope`] (encryption under data keys
//!   wrapped by the KEK), [`keystore`] (wrapped keys in NATS KV);
//! - who is calling: [`identity`] (tokens) and [`nats_auth`] (NATS clients admitted
//!   by them);
//! - NATS: [`nats`] connections, group commit ([`batch`]), the managed nats-server ([`server`]), the log's
//!   streams ([`log`]) and reading them ([`audit`]);
//! - the [`clock`], the names of every [`metrics`] series, and readiness
//!   ([`health`]).

pub mod audit;
pub mod batch;
pub mod client;
pub mod clock;
pub mod envelope;
pub mod health;
pub mod identity;
pub mod kek;
pub mod keyfile;
pub mod keystore;
pub mod log;
pub mod log_budget;
pub mod metrics;
pub mod nats;
pub mod nats_auth;
pub mod objects;
pub mod postgres_server;
pub mod protocol;
pub mod schemas;
pub mod server;
pub mod tls;
