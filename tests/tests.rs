//! End-to-end tests: a real nats-server per test (started the way `keyledger up`
//! starts it), a real SQLite read model, real HTTP. One binary, so the suite links
//! once; modules by capability.

// A test states what it expects by unwrapping it.
#![allow(clippy::unwrap_used)]

mod support;

mod access_control;
mod access_keys;
mod api_fuzz;
mod audit;
mod aws_clients;
mod backup;
mod barbican_clients;
mod canary;
mod changes;
mod cli;
mod cluster;
mod containers;
mod deployment;
mod docs;
mod event_store;
mod external_clients;
mod forged_commits;
mod group_commit;
mod hostile_requests;
mod hsm;
mod http_api;
mod identity;
mod kek_rotation;
mod lifecycle;
mod log_migration;
mod nats_commands;
mod nats_security;
mod operability;
mod orders;
mod postgres;
mod projection;
mod quotas;
mod read_cache;
mod robustness;
mod rotation;
mod tls;
mod tls_check;
