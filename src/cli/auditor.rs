//! How the audit commands reach the log: a JetStream context on the auditor's NATS
//! URL (one module the audit, proof and verify commands share, so none imports
//! another for it).

use anyhow::Result;

/// A JetStream context on `url`.
pub(super) async fn connect(url: &str) -> Result<async_nats::jetstream::Context> {
    let client = infra::nats::connect(url, "keyledger-audit").await?;
    Ok(async_nats::jetstream::new(client))
}
