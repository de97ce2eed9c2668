//! A NATS JetStream cluster on this machine: three nats-servers routed to each other on
//! 127.0.0.1, each with its own store under `<data-dir>/nats/<node>` and
//! `sync_interval: always`, and keyledger's accounts on every node (the same
//! passwords and auth callout, from the one data directory).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use infra::server::{ClusterNode, ManagedNats, ServerConfig};

use super::nats::managed_server_config;

/// The nodes of a local cluster.
pub const NODES: usize = 3;

/// How long a new cluster may take to elect its JetStream meta leader.
const META_LEADER_WAIT: Duration = Duration::from_secs(30);

/// A free TCP port on 127.0.0.1 (the kernel's pick, released for the caller to bind).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The configurations of the nodes of a cluster kept in `data_dir`: node `n<i>` takes
/// clients on `client_ports[i]` (`None`: a free port) and routes on a free port.
pub fn node_configs(
    data_dir: &Path,
    binary: Option<&Path>,
    client_ports: [Option<u16>; NODES],
    event_stream: &str,
) -> Result<Vec<ServerConfig>> {
    let route_password = infra::server::route_password(data_dir)?;
    let routes = (0..NODES)
        .map(|_| free_port())
        .collect::<Result<Vec<_>>>()?;
    client_ports
        .iter()
        .zip(&routes)
        .enumerate()
        .map(|(i, (port, route_port))| {
            Ok(ServerConfig {
                cluster: Some(ClusterNode {
                    name: format!("n{}", i + 1),
                    route_port: *route_port,
                    routes: routes.clone(),
                    route_password: route_password.clone(),
                }),
                ..managed_server_config(data_dir, binary, *port, event_stream, None)?
            })
        })
        .collect()
}

/// Refuses a data directory that `keyledger up` runs on: its store is
/// `<data-dir>/nats/jetstream`, and the two would share one read model over two logs.
pub fn check_cluster_layout(data_dir: &Path) -> Result<()> {
    if data_dir.join("nats").join("jetstream").exists() {
        anyhow::bail!(
            "{} holds the store of a single nats-server (`keyledger up`); a cluster would share \
             its read model with another log. Pass another --data-dir",
            data_dir.display()
        );
    }
    Ok(())
}

/// Refuses a data directory that `keyledger cluster` runs on (the counterpart of
/// [`check_cluster_layout`]).
pub fn check_single_layout(data_dir: &Path) -> Result<()> {
    if data_dir.join("nats").join("n1").exists() {
        anyhow::bail!(
            "{} holds the stores of a local cluster (`keyledger cluster`); one server would \
             share its read model with another log. Run `keyledger cluster` on it, or pass \
             another --data-dir",
            data_dir.display()
        );
    }
    Ok(())
}

/// Starts every node, waits until the cluster has a JetStream meta leader, and creates
/// keyledger's streams and key bucket with a replica on every node, before any
/// component races to create them.
pub async fn start_nodes(configs: &[ServerConfig], stream: &str) -> Result<Vec<ManagedNats>> {
    let nodes = futures::future::try_join_all(configs.iter().map(ManagedNats::start)).await?;
    let urls: Vec<String> = nodes.iter().map(ManagedNats::service_url).collect();
    let js = wait_for_meta_leader(&urls.join(",")).await?;
    let log = infra::log::LogSettings {
        stream: stream.to_owned(),
        replicas: NODES,
        ..Default::default()
    };
    infra::log::ensure_event_stream(&js, &log).await?;
    infra::log::ensure_key_bucket(&js, NODES).await?;
    commands::log::checkpoints::ensure_stream(&js, NODES).await?;
    api::access_log::ensure_stream(&js, NODES)
        .await
        .map_err(|e| anyhow::anyhow!("setting up the access stream: {e}"))?;
    Ok(nodes)
}

/// Waits until JetStream answers on the cluster at `url`: a new cluster answers only
/// once its nodes have elected a meta leader.
async fn wait_for_meta_leader(url: &str) -> Result<async_nats::jetstream::Context> {
    let client = infra::nats::connect(url, "keyledger-cluster").await?;
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + META_LEADER_WAIT;
    loop {
        match js.query_account().await {
            Ok(_) => return Ok(js),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting for the JetStream meta leader");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(e).context(format!(
                    "the cluster elected no JetStream meta leader within {META_LEADER_WAIT:?}; \
                     see the nodes' logs under <data-dir>/nats"
                ));
            }
        }
    }
}
