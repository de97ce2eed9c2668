//! `keyledger cluster`: keyledger scaled out on this machine, to try a deployment and
//! its failures before building one: three nats-servers routed as one JetStream
//! cluster (the streams and the key bucket with three replicas), two command services,
//! two projectors (one active, one standby) and two HTTP API replicas, each its own
//! process (`keyledger serve …`) as in a real deployment, all sharing one data
//! directory's keys and one read model: a PostgreSQL server the cluster starts in a
//! temporary directory (or, with `--read-model sqlite`, a SQLite file in the data
//! directory). Whatever dies is started again, as an orchestrator would; Ctrl-C stops
//! all.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use domain::ids::{ProjectId, Role, UserId};
use domain::principal::Principal;
use infra::server::{Deaths, ManagedNats, RESTART_WINDOW, RESTARTS};
use keyledger::stack::{self, NODES, free_port};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::up::{print_banner, shutdown_signal};

/// Runs a local cluster until Ctrl-C.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Data directory: keys, every node's store (nats/n1 …), the read model, logs.
    #[arg(long, default_value = ".keyledger-cluster")]
    data_dir: PathBuf,
    /// Client port of the first nats-server; the others take the next ones. 0 picks
    /// free ports.
    #[arg(long, default_value_t = 4222)]
    nats_port: u16,
    /// Port of the first API replica; the second takes the next one. 0 picks free
    /// ports.
    #[arg(long, default_value_t = 9311)]
    http_port: u16,
    /// The nats-server binary; default: $KEYLEDGER_NATS_SERVER, then $PATH.
    #[arg(long)]
    nats_server_bin: Option<PathBuf>,
    /// The read model: `postgres` (a PostgreSQL server the cluster starts in a
    /// temporary directory, from Debian's `postgresql` package or $KEYLEDGER_PG_BIN;
    /// the read model is rebuilt from the log at each start) or `sqlite` (a file in
    /// the data directory).
    #[arg(long, value_enum, default_value_t = ReadModelKind::Postgres)]
    read_model: ReadModelKind,
    /// The port that names PostgreSQL's socket (it listens on no TCP port); 0 picks a
    /// free one.
    #[arg(long, default_value_t = 0)]
    postgres_port: u16,
}

/// Where the cluster keeps its read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReadModelKind {
    Postgres,
    Sqlite,
}

/// Command services and API replicas the cluster runs.
const REPLICAS: usize = 2;

/// The development token the cluster prints.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// One `keyledger serve …` process.
#[derive(Debug, Clone)]
struct Component {
    /// Its name in messages and its log file's.
    name: String,
    args: Vec<String>,
    /// Its NATS URL, with credentials: passed in the environment
    /// (`KEYLEDGER_NATS_URL`), which only this user may read, never on the command
    /// line, which every local user can.
    nats_url: String,
}

pub async fn run(args: ClusterArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)?;
    let data = args.data_dir.canonicalize()?;
    let _lock = stack::lock_data_dir(&data)?;
    stack::check_cluster_layout(&data)?;
    let stream = infra::log::DEFAULT_STREAM;

    // Keys first, so that no two components race to create them.
    let keys = stack::Keys::load_or_create(
        &data,
        &stack::KeyFiles {
            create_commit_key: true,
            ..Default::default()
        },
        &stack::IdentitySettings::default(),
    )?;
    let http_ports = consecutive_ports(args.http_port, REPLICAS)?;
    let (nodes, configs) = start_cluster(&data, &args, stream).await?;
    let service_url = list(&nodes, ManagedNats::service_url);
    let callout_url = list(&nodes, ManagedNats::callout_url);
    let node_lines: Vec<String> = nodes
        .iter()
        .zip(&configs)
        .map(|(node, config)| {
            format!(
                "  nats {}      {}  (pid {}; log {})",
                node_name(config),
                node.client_url(),
                node.pid().unwrap_or_default(),
                node.log_file().display()
            )
        })
        .collect();

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let (database_url, read_model_line) = match args.read_model {
        ReadModelKind::Postgres => {
            let port = match args.postgres_port {
                0 => free_port()?,
                port => port,
            };
            let postgres = infra::postgres_server::ManagedPostgres::start(port)
                .await
                .context("starting PostgreSQL for the read model (or pass --read-model sqlite)")?;
            let url = postgres.url();
            let line = format!(
                "  postgres    {url}  (pid {}; data in a temporary directory)",
                postgres.pid().unwrap_or_default()
            );
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                postgres
                    .supervise(shutdown)
                    .await
                    .context("PostgreSQL is not started again")
            });
            (url, line)
        }
        ReadModelKind::Sqlite => {
            let url = stack::default_database_url(&data);
            (url.clone(), format!("  read model  {url}"))
        }
    };
    for (node, config) in nodes.into_iter().zip(configs) {
        let pid = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let shutdown = shutdown.clone();
        let name = node_name(&config).to_owned();
        tasks.spawn(async move {
            infra::server::supervise(node, config, pid, shutdown)
                .await
                .with_context(|| {
                    format!("nats-server {name} is not started again; the other nodes run on")
                })
        });
    }
    let logs = data.join("logs");
    std::fs::create_dir_all(&logs)?;
    for component in components(
        &data,
        &service_url,
        &callout_url,
        &http_ports,
        &database_url,
    ) {
        let (logs, shutdown) = (logs.clone(), shutdown.clone());
        tasks.spawn(async move { keep_running(component, &logs, shutdown).await });
    }
    for port in &http_ports {
        listening(*port, &mut tasks).await?;
    }

    let dev = Principal {
        user: UserId::parse("dev")?,
        project: ProjectId::parse("dev")?,
        roles: vec![Role::parse("admin")?],
        service: None,
    };
    let token = keys
        .issuer
        .issue(&dev, DEV_TOKEN_TTL, infra::clock::system()());
    let api_lines: Vec<String> = http_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  API {}       http://127.0.0.1:{p}", i + 1))
        .collect();
    print_banner(&format!(
        "keyledger cluster is up: {NODES} nats-servers as one JetStream cluster (streams and key \
         bucket with {NODES} replicas, sync_interval: always), {REPLICAS} command services, \
         {REPLICAS} projectors (one active, one standby), {REPLICAS} API replicas.\n\n{nodes}\n{apis}\
         \n  components  --nats-url {url}\
         \n              (the keyledger user's password is in {password}); logs in {logs}\
         \n{read_model_line}\
         \n\nA development token (user dev, project dev, role admin, valid 12 h):\
         \n  export KEYLEDGER_TOKEN={token}\
         \n\nA write through one API replica is read through the other with the sequence it \
         answered: X-Keyledger-Min-Seq.\nStop with Ctrl-C.",
        nodes = node_lines.join("\n"),
        apis = api_lines.join("\n"),
        url = infra::nats::redact(&service_url),
        password = data.join(infra::server::SERVICE_PASSWORD_FILE).display(),
        logs = logs.display(),
    ));
    run_until_stopped(tasks, shutdown).await;
    Ok(())
}

/// Waits for Ctrl-C, then stops everything. A process that keeps dying meanwhile is
/// given up on alone: the cluster is for trying failures, and the rest runs on.
async fn run_until_stopped(mut tasks: JoinSet<Result<()>>, shutdown: CancellationToken) {
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => tracing::error!("{e:#}"),
                Some(Err(e)) => tracing::error!(error = %e, "a supervisor of the cluster failed"),
                None => break,
            },
            () = &mut signal => break,
        }
    }
    eprintln!("keyledger cluster: stopping");
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
}

/// How often free ports are picked again when another process took one first.
const PORT_ATTEMPTS: usize = 3;

/// Starts the nodes. Ports this process picks (`--nats-port 0`, and the routes') are
/// free when picked but released until nats-server binds them, so another process may
/// take one meanwhile: then, if the operator named no client port, fresh ports are
/// picked, a few times. (A taken route port reads as the client port's in nats-server's
/// log, so with a named client port the start fails as before.)
async fn start_cluster(
    data: &Path,
    args: &ClusterArgs,
    stream: &str,
) -> Result<(Vec<ManagedNats>, Vec<infra::server::ServerConfig>)> {
    let mut attempt = 1;
    loop {
        let client_ports = consecutive_ports(args.nats_port, NODES)?;
        let configs = stack::node_configs(
            data,
            args.nats_server_bin.as_deref(),
            std::array::from_fn(|i| Some(client_ports[i])),
            stream,
        )?;
        match stack::start_nodes(&configs, stream).await {
            Ok(nodes) => return Ok((nodes, configs)),
            Err(e) if attempt < PORT_ATTEMPTS && args.nats_port == 0 && port_taken(&e) => {
                tracing::warn!(error = %e, attempt, "a port picked for the cluster was taken; picking others");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn port_taken(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<infra::server::ServerError>(),
        Some(infra::server::ServerError::PortInUse(_))
    )
}

/// `n` ports from `first` on; 0 picks `n` free ones.
fn consecutive_ports(first: u16, n: usize) -> Result<Vec<u16>> {
    (0..n)
        .map(|i| match first {
            0 => free_port(),
            p => u16::try_from(i)
                .ok()
                .and_then(|i| p.checked_add(i))
                .with_context(|| {
                    format!("port {p} leaves no room for {n} consecutive ports; pass a lower one")
                }),
        })
        .collect()
}

fn node_name(config: &infra::server::ServerConfig) -> &str {
    config.cluster.as_ref().map_or("", |c| c.name.as_str())
}

/// The `keyledger serve` processes of the cluster: the auth callout, the command
/// services, the projectors (active and standby) and the API replicas (one per HTTP
/// port).
fn components(
    data: &Path,
    service_url: &str,
    callout_url: &str,
    http_ports: &[u16],
    database_url: &str,
) -> Vec<Component> {
    let data = data.to_string_lossy();
    let serve = |name: String, component: &str, url: &str, extra: &[String]| Component {
        name,
        args: ["serve", component, "--data-dir", &data]
            .into_iter()
            .map(str::to_owned)
            .chain(extra.iter().cloned())
            .collect(),
        nats_url: url.to_owned(),
    };
    // The read model's URL carries no password (the managed PostgreSQL trusts whoever
    // reaches its socket, in a directory only this user can enter), so it may go on
    // the command line.
    let database = ["--database".to_owned(), database_url.to_owned()];
    let replicated = ["--replicas".to_owned(), NODES.to_string()];
    let with_database = [&replicated[..], &database[..]].concat();
    let mut components = vec![serve("nats-auth".into(), "nats-auth", callout_url, &[])];
    for i in 1..=REPLICAS {
        components.push(serve(
            format!("commands-{i}"),
            "commands",
            service_url,
            &with_database,
        ));
    }
    // One projector writes the read model; the other stands by on its lock and takes
    // over the moment the first stops.
    for i in 1..=REPLICAS {
        components.push(serve(
            format!("projector-{i}"),
            "projector",
            service_url,
            &database,
        ));
    }
    for (i, port) in http_ports.iter().enumerate() {
        let mut extra = with_database.clone();
        extra.extend(["--http-addr".to_owned(), format!("127.0.0.1:{port}")]);
        // One replica announces changes on NATS: two would announce each twice.
        if i == 0 {
            extra.push("--relay-changes".to_owned());
        }
        components.push(serve(format!("api-{}", i + 1), "api", service_url, &extra));
    }
    components
}

/// The nodes' URLs of one kind, as one comma-separated list.
fn list(nodes: &[ManagedNats], url: fn(&ManagedNats) -> String) -> String {
    nodes.iter().map(url).collect::<Vec<_>>().join(",")
}

/// Waits until an API replica takes connections on `port`; fails if a component
/// gives up first or it takes longer than 60 s.
async fn listening(port: u16, tasks: &mut JoinSet<Result<()>>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(Ok(Err(e))) = tasks.try_join_next() {
            return Err(e);
        }
        if Instant::now() > deadline {
            bail!("the API replica on port {port} did not listen within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `component` until `shutdown`, starting it again when it exits (after a pause
/// that grows while it keeps dying); gives up after [`RESTARTS`] deaths within
/// [`RESTART_WINDOW`].
async fn keep_running(
    component: Component,
    logs: &Path,
    shutdown: CancellationToken,
) -> Result<()> {
    let log = logs.join(format!("{}.log", component.name));
    let mut deaths = Deaths::default();
    loop {
        let mut child = spawn(&component, &log)?;
        let status = tokio::select! {
            () = shutdown.cancelled() => {
                infra::server::terminate(&mut child, Duration::from_secs(15)).await;
                return Ok(());
            }
            status = child.wait() => status?,
        };
        let recent = deaths.record();
        if recent >= RESTARTS {
            bail!(
                "{} exited {} times within {RESTART_WINDOW:?} (last: {status}); it is not \
                 started again, the rest of the cluster runs on. See {}",
                component.name,
                recent,
                log.display()
            );
        }
        tracing::warn!(component = %component.name, %status, log = %log.display(), "exited; starting it again");
        let pause = Duration::from_millis(200) * u32::try_from(recent).unwrap_or(1);
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

fn spawn(component: &Component, log: &Path) -> Result<Child> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut command = Command::new(std::env::current_exe()?);
    // The components get their settings from the cluster alone: a KEYLEDGER_*
    // variable meant for `keyledger cluster` (which reads none) must not change them
    // behind its back (another stream, read model or key).
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYLEDGER_") {
            command.env_remove(name);
        }
    }
    command
        .env("KEYLEDGER_NATS_URL", &component.nats_url)
        .args(&component.args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true);
    infra::server::die_with_parent(&mut command);
    command
        .spawn()
        .with_context(|| format!("starting {}", component.name))
}
