//! NATS for a node: the managed nats-server's configuration, the streams auditors
//! read, and where `keyledger up` gets NATS from.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use infra::nats_auth::CalloutIssuer;
use infra::server::{CALLOUT_ISSUER_FILE, ManagedNats, ServerConfig};

use super::data_dir::{DataDirLock, lock_data_dir};

/// The streams an auditor reads: the events, the access records and the checkpoints.
pub fn audited_streams(event_stream: &str) -> Vec<String> {
    vec![
        event_stream.to_owned(),
        api::access_log::STREAM.to_owned(),
        commands::log::checkpoints::STREAM.to_owned(),
    ]
}

/// The configuration of the managed nats-server of `data_dir`: its accounts, the
/// auditor's streams, and the auth callout's issuer (its key is created on first use).
pub fn managed_server_config(
    data_dir: &Path,
    binary: Option<&Path>,
    port: Option<u16>,
    event_stream: &str,
    tls: Option<infra::server::ServerTls>,
) -> Result<ServerConfig> {
    Ok(ServerConfig {
        tls,
        binary: infra::server::find_binary(binary)?,
        data_dir: data_dir.to_owned(),
        port,
        audited_streams: audited_streams(event_stream),
        callout_issuer: CalloutIssuer::load_or_create(&data_dir.join(CALLOUT_ISSUER_FILE))?
            .public_key(),
        cluster: None,
    })
}

/// The URL a command service takes NATS clients' commands with: the servers of
/// `nats_url`, as the `intake` user of the `CLIENTS` account with the password kept in
/// `data_dir` (the one `keyledger nats-config` put in the server's configuration). The
/// file is read, never made here: a new password could not match the server's.
pub fn intake_url(nats_url: &str, data_dir: &Path) -> Result<String> {
    let file = data_dir.join(infra::server::INTAKE_PASSWORD_FILE);
    let password = infra::server::existing_intake_password(data_dir).with_context(|| {
        format!(
            "the password of `intake`, the user NATS clients' commands are taken with, is \
             read from {}: `keyledger nats-config --data-dir {}` makes it and prints the \
             accounts the server needs (`serve commands` also takes --nats-intake-url)",
            file.display(),
            data_dir.display()
        )
    })?;
    Ok(infra::nats::with_user(
        nats_url,
        infra::server::INTAKE_USER,
        &password,
    )?)
}

/// The data directory's own nats-server, started for a maintenance task (a rebuild, a
/// migration) while keyledger is stopped; the lock keeps keyledger from starting on
/// the directory meanwhile. Stop the server when done.
pub async fn maintenance_nats(
    data_dir: &Path,
    binary: Option<&Path>,
    stream: &str,
) -> Result<(ManagedNats, DataDirLock)> {
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("the data directory {}", data_dir.display()))?;
    let lock = lock_data_dir(&data_dir)?;
    super::check_single_layout(&data_dir)?;
    if infra::nats::tls_in_use() {
        anyhow::bail!(
            "the data directory's own nats-server runs without TLS for this task: leave out \
             --nats-ca/--nats-cert (and KEYLEDGER_NATS_CA/KEYLEDGER_NATS_CERT) here"
        );
    }
    let server = ManagedNats::start(&managed_server_config(
        &data_dir, binary, None, stream, None,
    )?)
    .await?;
    Ok((server, lock))
}

/// Where `keyledger up` gets NATS from.
#[derive(Debug, Clone)]
pub enum NatsChoice {
    /// Start nats-server itself.
    Managed {
        /// Client port; `None` picks a free one.
        port: Option<u16>,
        /// The binary; `None` searches for it.
        binary: Option<PathBuf>,
        /// TLS on its client port.
        tls: Option<infra::server::ServerTls>,
    },
    /// Use a running server.
    External {
        /// Its URL (may carry credentials).
        url: String,
    },
}
