//! Starting keyledger's components: each alone (`keyledger serve commands|projector|api`,
//! for deployments against an external NATS) or all together with a managed
//! nats-server (`keyledger up`).

mod cluster;
mod components;
mod data_dir;
pub mod deployment;
pub mod dev_tls;
mod keys;
mod nats;
pub mod ops;
mod read_model;

pub use cluster::*;
pub use components::*;
pub use data_dir::*;
pub use keys::*;
pub use nats::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use commands::log::checkpoints::CheckpointSettings;
use commands::secret::HandlerConfig;
use commands::secret::rotation::RotationSettings;
use infra::clock::Clock;
use infra::log::LogSettings;
use infra::server::{CALLOUT_ISSUER_FILE, ManagedNats};
use projections::projector::ProjectorConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running component: stops with the stack's token; its handle reports failure.
pub type Task = JoinHandle<Result<()>>;

/// Everything `keyledger up` runs.
#[derive(Clone)]
pub struct StackConfig {
    /// Data directory (keys, NATS store, read model).
    pub data_dir: PathBuf,
    /// The KEK in an HSM; `None`: the data directory's `kek.key`.
    pub kek_pkcs11: Option<infra::kek::Pkcs11Settings>,
    /// NATS.
    pub nats: NatsChoice,
    /// HTTP API.
    pub api: ApiSettings,
    /// The event log.
    pub log: LogSettings,
    /// The command handler.
    pub handler: HandlerConfig,
    /// Whether the command service (with the scheduler, key shredder, order worker
    /// and checkpointer) runs in this process; `false` when it runs elsewhere, as
    /// `keyledger serve commands`.
    pub commands: bool,
    /// How often the lifecycle scheduler looks for due work.
    pub scheduler_interval: Duration,
    /// The rotation runner.
    pub rotation: RotationSettings,
    /// The order worker.
    pub orders: OrderWorkerSettings,
    /// Signed checkpoints; `None` puts the key in the data directory
    /// (`checkpoint.key`), named after the stream, signing every 10 s.
    pub checkpoints: Option<CheckpointSettings>,
    /// The projector.
    pub projector: ProjectorConfig,
    /// The read model's URL (`sqlite://…` or `postgres://…`); `None`: the SQLite file
    /// in the data directory.
    pub database_url: Option<String>,
    /// The clock.
    pub clock: Clock,
    /// Which tokens are accepted.
    pub identity: IdentitySettings,
    /// Metrics and health.
    pub ops: ops::OpsSettings,
}

/// The managed nats-server, supervised: restarted when it dies.
struct Supervised {
    log: PathBuf,
    pid: Arc<std::sync::atomic::AtomicU32>,
    /// Stopped after every component, so they finish their work against it.
    stop: CancellationToken,
    task: Task,
    /// Stops it when dropped unstopped: a start that failed halfway leaves no
    /// nats-server behind on the data directory it releases.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

/// A running keyledger: managed nats-server, command service, projector, HTTP API.
pub struct Stack {
    _lock: DataDirLock,
    nats: Option<Supervised>,
    /// URL keyledger's components use (with credentials when managed).
    pub service_url: String,
    /// URL other NATS clients use.
    pub client_url: String,
    /// URL the command service takes NATS clients' commands with (the `intake` user).
    pub intake_url: String,
    /// URL auditors use (read-only), when keyledger manages NATS.
    pub auditor_url: Option<String>,
    /// URL rotation handlers use, when keyledger manages NATS.
    pub rotation_url: Option<String>,
    /// The public key checkpoints are signed with.
    pub checkpoint_public_key: String,
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// Whether it serves HTTPS.
    pub api_tls: bool,
    /// The read model.
    pub database_url: String,
    /// The keys.
    pub keys: Keys,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if they are.
    pub ops_addr: Option<SocketAddr>,
    /// The readiness checks of every component.
    pub health: infra::health::Health,
    shutdown: CancellationToken,
    tasks: Vec<Task>,
}

impl Stack {
    /// Starts everything.
    pub async fn start(config: StackConfig) -> Result<Self> {
        infra::keyfile::private_dir(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        let data_dir = config.data_dir.canonicalize()?;
        let lock = lock_data_dir(&data_dir)?;
        check_restored(&data_dir)?;
        let files = KeyFiles {
            create_commit_key: true,
            kek_pkcs11: config.kek_pkcs11.clone(),
            ..Default::default()
        };
        let made = deployment::Made::missing([
            data_dir.join(infra::keyfile::COMMIT_KEY_FILE),
            data_dir.join(infra::identity::TOKEN_KEY_FILE),
        ]);
        let keys = Keys::load_or_create(&data_dir, &files, &config.identity)?;
        let shutdown = CancellationToken::new();
        // A start that fails halfway stops what it started (the tasks hold no handle
        // that would).
        let stop_on_failure = shutdown.clone().drop_guard();
        let exporter = ops::exporter(config.ops.project_labels);
        let health = infra::health::Health::new(config.ops.max_lag);
        let mut tasks = Vec::new();
        let mut auditor_url = None;
        let mut rotation_url = None;
        let (nats, service_url, client_url, intake_url) = match &config.nats {
            NatsChoice::Managed { port, binary, tls } => {
                check_single_layout(&data_dir)?;
                let server_config = managed_server_config(
                    &data_dir,
                    binary.as_deref(),
                    *port,
                    &config.log.stream,
                    tls.clone(),
                )?;
                let server = ManagedNats::start(&server_config).await?;
                tasks.push(
                    start_nats_auth(
                        &server.callout_url(),
                        &data_dir.join(CALLOUT_ISSUER_FILE),
                        keys.verifier.clone(),
                        config.clock.clone(),
                        shutdown.clone(),
                    )
                    .await?,
                );
                let (service, client, intake) = (
                    server.service_url(),
                    server.client_url(),
                    server.intake_url(),
                );
                auditor_url = Some(server.auditor_url());
                rotation_url = Some(server.rotation_url());
                let log = server.log_file().to_owned();
                let pid = Arc::new(std::sync::atomic::AtomicU32::new(server.pid().unwrap_or(0)));
                let stop = CancellationToken::new();
                let task = tokio::spawn({
                    let (pid, stop) = (pid.clone(), stop.clone());
                    async move {
                        infra::server::supervise(server, server_config, pid, stop)
                            .await
                            .map_err(Into::into)
                    }
                });
                let supervised = Supervised {
                    log,
                    pid,
                    _stop_on_drop: stop.clone().drop_guard(),
                    stop,
                    task,
                };
                (Some(supervised), service, client, intake)
            }
            NatsChoice::External { url } => {
                (None, url.clone(), url.clone(), intake_url(url, &data_dir)?)
            }
        };
        // Before the checkpoint key is made, and anything written: a data directory
        // whose log other keys wrote (restored without its key files) is refused, and
        // what this start made is taken back.
        let js = async_nats::jetstream::new(
            infra::nats::connect(&service_url, "keyledger-start").await?,
        );
        if let Err(refusal) = deployment::check(&js, &config.log.stream, &keys).await {
            return Err(made.take_back(&keys.envelope, refusal));
        }
        let checkpoints = config
            .checkpoints
            .clone()
            .unwrap_or_else(|| default_checkpoints(&data_dir, &config.log.stream));
        if let Err(refusal) =
            deployment::check_checkpoint_key(&js, &config.log.stream, &checkpoints).await
        {
            return Err(made.take_back(&keys.envelope, refusal));
        }
        let checkpoint_public_key =
            commands::log::checkpoints::load_signer(&checkpoints)?.public_key();
        let database_url = config
            .database_url
            .clone()
            .unwrap_or_else(|| default_database_url(&data_dir));
        // The projector below hands on what it applies to the checkpointer and the
        // change relay, so that neither reads each commit from nats-server again.
        let tap = projections::tap::Tap::for_stream(&config.projector.stream);
        if config.commands {
            tasks.extend(
                start_commands(
                    &service_url,
                    &keys,
                    &config.log,
                    CommandSettings {
                        intake_url: intake_url.clone(),
                        handler: config.handler.clone(),
                        database_url: database_url.clone(),
                        scheduler_interval: config.scheduler_interval,
                        rotation: config.rotation,
                        orders: config.orders.clone(),
                        checkpoints,
                        log_tap: Some(tap.clone()),
                    },
                    config.clock.clone(),
                    &health,
                    shutdown.clone(),
                )
                .await?,
            );
        }
        let (applied, projector) = start_projector(
            &service_url,
            &database_url,
            config.projector.clone(),
            (*keys.commit).clone(),
            tap,
            &health,
            shutdown.clone(),
        )
        .await?;
        tasks.push(projector);
        // The one projector of this stack runs here: so does the one NATS relay.
        let api_settings = ApiSettings {
            relay_changes: true,
            ..config.api.clone()
        };
        let (http_addr, api) = start_api(
            &service_url,
            &database_url,
            &keys,
            api_settings,
            Some(applied),
            config.clock.clone(),
            &health,
            shutdown.clone(),
        )
        .await?;
        tasks.push(api);
        tasks.push(ops::answer_status(
            &service_url,
            health.clone(),
            shutdown.clone(),
        ));
        let ops_addr = match config.ops.addr {
            Some(addr) => {
                match ops::serve(addr, health.clone(), exporter, shutdown.clone()).await {
                    Ok((bound, task)) => {
                        tasks.push(task);
                        Some(bound)
                    }
                    Err(e) if config.ops.default_addr => {
                        tracing::warn!(error = %e, "metrics and health are not served on their default address; pass --metrics-addr with a free one");
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        stop_on_failure.disarm();
        Ok(Self {
            api_tls: config.api.tls.is_some(),
            _lock: lock,
            nats,
            auditor_url,
            rotation_url,
            service_url,
            client_url,
            intake_url,
            checkpoint_public_key,
            http_addr,
            database_url,
            keys,
            ops_addr,
            health,
            shutdown,
            tasks,
        })
    }

    /// The managed nats-server's log file, if keyledger started one.
    pub fn nats_log(&self) -> Option<&Path> {
        self.nats.as_ref().map(|n| n.log.as_path())
    }

    /// The managed nats-server's process id, while it runs.
    pub fn nats_pid(&self) -> Option<u32> {
        self.nats
            .as_ref()
            .map(|n| n.pid.load(std::sync::atomic::Ordering::Relaxed))
            .filter(|pid| *pid != 0)
    }

    /// Waits until a component (or the managed nats-server's supervisor) fails,
    /// returning its error, or `stop` is requested.
    pub async fn until_failure(&mut self) -> Result<()> {
        if self.tasks.is_empty() {
            return Ok(());
        }
        let supervisor = async {
            match self.nats.as_mut() {
                Some(n) => (&mut n.task).await,
                None => std::future::pending().await,
            }
        };
        let (result, supervisor_ended) = tokio::select! {
            (result, index, _) = futures::future::select_all(self.tasks.iter_mut()) => {
                self.tasks.remove(index);
                (result, false)
            }
            result = supervisor => (result, true),
        };
        if supervisor_ended {
            // Its task is done: `stop` must not await it again.
            self.nats = None;
        }
        match result {
            Ok(Ok(())) if self.shutdown.is_cancelled() => Ok(()),
            Ok(Ok(())) => anyhow::bail!("a component stopped unexpectedly"),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops every component, then the managed nats-server, then releases the data
    /// directory.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
        if let Some(nats) = self.nats {
            nats.stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(15), nats.task).await;
        }
        drop(self._lock);
    }
}
