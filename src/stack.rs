//! Starting keyledger's components: each alone (`keyledger serve commands|projector|api`,
//! for deployments against an external NATS) or all together with a managed
//! nats-server (`keyledger up`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use api::{ApiConfig, AppState};
use commands::checkpoints::{CheckpointSettings, Checkpointer};
use commands::containers::ContainerHandler;
use commands::handler::{HandlerConfig, SecretHandler};
use commands::orders::OrderHandler;
use commands::orders::ca::{CertificateAuthority, LocalCa};
use commands::orders::worker::{OrderWorker, PendingOrders, Retry, StepHook};
use commands::scheduler::{Due, DueSource};
use commands::service::CommandService;
use commands::store::EventStore;
use domain::commit::CommitKey;
use domain::ids::{ProjectId, SecretId};
use domain::secret::version::Lifecycle;
use domain::timestamp::Timestamp;
use infra::client::CommandClient;
use infra::clock::Clock;
use infra::envelope::{Envelope, KEK_FILE};
use infra::identity::{self, IdentityProvider, Issuer, TOKEN_KEY_FILE, TrustConfig, Verifier};
use infra::keyfile::COMMIT_KEY_FILE;
use infra::keystore::KeyStore;
use infra::log::{LogSettings, ensure_key_bucket};
use infra::nats_auth::{AuthCallout, CalloutIssuer};
use infra::server::{CALLOUT_ISSUER_FILE, ManagedNats, ServerConfig};
use projections::projector::{Projector, ProjectorConfig};
use projections::read::{ReadModel, poll_checkpoint};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The read model's file inside the data directory.
pub const READ_MODEL_FILE: &str = "readmodel.sqlite";

/// Held by the one process that owns a data directory (`keyledger up`, or a rebuild
/// that starts the directory's nats-server), so two never share a JetStream store.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the data directory's lock, or says who holds it.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock> {
    let path = data_dir.join("keyledger.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another keyledger is running with the data directory {}; stop it first, or pass \
             another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// A running component: stops with the stack's token; its handle reports failure.
pub type Task = JoinHandle<Result<()>>;

/// Which tokens a node accepts.
#[derive(Debug, Clone, Default)]
pub struct IdentitySettings {
    /// The identity provider's keys, issuer and audience, if one is trusted.
    pub trust: TrustConfig,
    /// Whether development (HS256) tokens are accepted; by default they are unless an
    /// identity provider is configured.
    pub dev_tokens: Option<bool>,
}

impl IdentitySettings {
    /// Whether development tokens are accepted.
    pub fn dev_tokens(&self) -> bool {
        self.dev_tokens.unwrap_or(!self.trust.is_configured())
    }
}

/// Where a node's key files are; `None` means the default name in the data directory.
#[derive(Debug, Clone, Default)]
pub struct KeyFiles {
    /// The KEK (`kek.key`).
    pub kek: Option<PathBuf>,
    /// The development token key (`token-hs256.key`).
    pub token: Option<PathBuf>,
    /// The commit key (`commit.key`).
    pub commit: Option<PathBuf>,
    /// Whether a missing commit key may be created: only by the component that writes
    /// the log. A reader with a key of its own would take every commit for foreign.
    pub create_commit_key: bool,
}

/// The commit key of a node: the given file, or `commit.key` in `data_dir`; created on
/// first use if `create` (the command service), else it must exist.
pub fn commit_key(data_dir: &Path, file: Option<&Path>, create: bool) -> Result<CommitKey> {
    let path = file.map_or_else(|| data_dir.join(COMMIT_KEY_FILE), Path::to_owned);
    if create {
        return Ok(infra::keyfile::commit_key(&path)?);
    }
    if !path.exists() {
        anyhow::bail!(
            "the commit key {} does not exist: every component needs the commit key the command \
             service made (commit.key in its data directory); copy it here, or pass \
             --commit-key-file",
            path.display()
        );
    }
    Ok(infra::keyfile::existing_commit_key(&path)?)
}

/// The keys a node uses, from files (created 0600 on first use in development).
#[derive(Clone)]
pub struct Keys {
    /// Seals and opens payloads (the KEK).
    pub envelope: Arc<Envelope>,
    /// Signs development tokens.
    pub issuer: Issuer,
    /// Verifies tokens.
    pub verifier: Verifier,
    /// Authenticates commits.
    pub commit: Arc<CommitKey>,
}

impl Keys {
    /// Loads the KEK, the token key and the commit key, creating them if absent: from
    /// the given files, or by default `kek.key`, `token-hs256.key` and `commit.key` in
    /// `data_dir`; and the identity provider's keys, if `identity` names any.
    pub fn load_or_create(
        data_dir: &Path,
        files: &KeyFiles,
        identity: &IdentitySettings,
    ) -> Result<Self> {
        let kek = files.kek.clone().unwrap_or_else(|| data_dir.join(KEK_FILE));
        let token = files
            .token
            .clone()
            .unwrap_or_else(|| data_dir.join(TOKEN_KEY_FILE));
        let envelope = Arc::new(Envelope::load_or_create(&kek)?);
        let commit = Arc::new(commit_key(
            data_dir,
            files.commit.as_deref(),
            files.create_commit_key,
        )?);
        let (issuer, verifier) = token_keys(&token, identity)?;
        Ok(Self {
            envelope,
            issuer,
            verifier,
            commit,
        })
    }
}

/// The development token issuer (key file `token`, created on first use) and the
/// verifier of the tokens `identity` accepts.
pub fn token_keys(token: &Path, identity: &IdentitySettings) -> Result<(Issuer, Verifier)> {
    let (issuer, mut verifier) = identity::dev_keys(token)?;
    if identity.trust.is_configured() {
        verifier = verifier.trust(IdentityProvider::load(&identity.trust)?);
    }
    if !identity.dev_tokens() {
        verifier = verifier.without_dev_tokens();
    }
    Ok((issuer, verifier))
}

/// The default read-model URL for a data directory.
pub fn default_database_url(data_dir: &Path) -> String {
    projections::db::sqlite_url(&data_dir.join(READ_MODEL_FILE))
}

/// The scheduler's view of the read model.
struct ReadModelDue(sqlx::SqlitePool);

impl DueSource for ReadModelDue {
    async fn due(
        &self,
        now: Timestamp,
        lifecycle: Lifecycle,
        limit: u32,
    ) -> std::result::Result<Vec<Due>, String> {
        let retention = lifecycle.retention;
        let before = Timestamp::from_unix_millis(
            now.unix_millis()
                .saturating_sub(i64::try_from(retention.min_age.as_millis()).unwrap_or(i64::MAX)),
        )
        .unwrap_or(now);
        let rows = projections::read::due(&self.0, now, retention.keep, before, limit)
            .await
            .map_err(|e| e.to_string())?;
        // Rows the projector wrote from the log always parse; one that does not is
        // skipped (and named) rather than stopping the scheduler.
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let parsed = (|| {
                    Some(Due {
                        project: ProjectId::parse(&r.project).ok()?,
                        secret: SecretId::parse(&r.id).ok()?,
                        task: r.task,
                        version: u64::try_from(r.version).ok()?,
                    })
                })();
                if parsed.is_none() {
                    tracing::error!(secret = %r.id, "scheduler: a read-model row does not parse");
                }
                parsed
            })
            .collect())
    }
}

/// The order worker's view of the read model: the orders still pending.
struct ReadModelPending(sqlx::SqlitePool);

impl PendingOrders for ReadModelPending {
    async fn pending(&self, limit: u32) -> std::result::Result<Vec<(String, String)>, String> {
        projections::read::pending_orders(&self.0, limit)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Settings of the order worker.
#[derive(Clone, Default)]
pub struct OrderWorkerSettings {
    /// Make the local CA answer as an unreachable CA would (to show the failure path).
    pub ca_unreachable: bool,
    /// Retrying an unreachable CA.
    pub retry: Retry,
    /// Observes (and may stop) each step; tests use it to kill the worker mid-order.
    pub hook: Option<StepHook>,
}

/// Settings of the command component.
#[derive(Clone)]
pub struct CommandSettings {
    /// The handler.
    pub handler: HandlerConfig,
    /// The read model the scheduler reads what is due from.
    pub database_url: String,
    /// How often the scheduler looks.
    pub scheduler_interval: Duration,
    /// The order worker.
    pub orders: OrderWorkerSettings,
    /// Signed checkpoints of the log.
    pub checkpoints: CheckpointSettings,
}

/// Starts the command service, the key shredder, the lifecycle scheduler, the order
/// worker and the checkpointer.
pub async fn start_commands(
    nats_url: &str,
    keys: &Keys,
    log: &LogSettings,
    settings: CommandSettings,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<Vec<Task>> {
    let handler = settings.handler;
    let cache_capacity = handler.cache_capacity;
    let client = infra::nats::connect(nats_url, "keyledger-commands").await?;
    let js = async_nats::jetstream::new(client.clone());
    let store = Arc::new(EventStore::open(js.clone(), log, (*keys.commit).clone()).await?);
    let keystore = KeyStore::new(ensure_key_bucket(&js, log.replicas).await?);
    let signer = commands::checkpoints::load_signer(&settings.checkpoints)?;
    commands::checkpoints::ensure_stream(&js, log.replicas).await?;
    let checkpointer = Checkpointer::resume(
        js.clone(),
        &log.stream,
        signer,
        (*keys.commit).clone(),
        clock.clone(),
    )
    .await?;
    let checkpoints =
        tokio::spawn(checkpointer.run(settings.checkpoints.interval, shutdown.clone()));
    let handler = Arc::new(SecretHandler::new(
        store.clone(),
        keystore.clone(),
        keys.envelope.clone(),
        clock.clone(),
        handler,
    ));
    // The scheduler and the order worker share one read-only view of the read model.
    let read_model = projections::db::open(&settings.database_url, 2).await?;
    let due = ReadModelDue(read_model.clone());
    let scheduler = tokio::spawn(commands::scheduler::run(
        handler.clone(),
        due,
        clock.clone(),
        settings.scheduler_interval,
        shutdown.clone(),
    ));
    let containers = Arc::new(ContainerHandler::new(
        store.clone(),
        handler.clone(),
        clock.clone(),
        cache_capacity,
    ));
    let orders = Arc::new(OrderHandler::new(store, clock.clone(), cache_capacity));
    let local_ca: Arc<dyn CertificateAuthority> = Arc::new(LocalCa::new(
        keystore.clone(),
        keys.envelope.clone(),
        !settings.orders.ca_unreachable,
    ));
    let worker = OrderWorker {
        orders: orders.clone(),
        secrets: handler.clone(),
        containers: containers.clone(),
        keys: keystore.clone(),
        envelope: keys.envelope.clone(),
        cas: [("local".to_owned(), local_ca)].into(),
        clock: clock.clone(),
        retry: settings.orders.retry,
        hook: settings.orders.hook.clone(),
    };
    let pending = ReadModelPending(read_model);
    let worker_js = js.clone();
    let worker_stream = log.stream.clone();
    let worker_shutdown = shutdown.clone();
    let worker = tokio::spawn(async move {
        worker
            .run(worker_js, &worker_stream, pending, worker_shutdown)
            .await
            .map_err(|e| anyhow::anyhow!("order worker: {e}"))
    });
    let service = CommandService {
        client,
        handler,
        containers,
        orders,
        verifier: keys.verifier.clone(),
        clock,
        concurrency: 256,
    };
    let stream = log.stream.clone();
    let shredder_shutdown = shutdown.clone();
    let shredder_key = (*keys.commit).clone();
    Ok(vec![
        worker,
        tokio::spawn(async move {
            scheduler.await?;
            Ok(())
        }),
        tokio::spawn(async move {
            checkpoints.await?;
            Ok(())
        }),
        tokio::spawn(async move { service.run(shutdown).await.map_err(Into::into) }),
        tokio::spawn(async move {
            commands::shredder::run(js, &stream, keystore, shredder_key, shredder_shutdown)
                .await
                .map_err(Into::into)
        }),
    ])
}

/// Starts the projector on the read model at `database_url`, applying the commits
/// `commit_key` authenticates. Returns a receiver of the sequence it has applied.
pub async fn start_projector(
    nats_url: &str,
    database_url: &str,
    config: ProjectorConfig,
    commit_key: CommitKey,
    shutdown: CancellationToken,
) -> Result<(watch::Receiver<u64>, Task)> {
    let pool = projections::db::open(database_url, 2).await?;
    let lock = projections::projector::lock(projections::db::sqlite_path(database_url).as_deref())?;
    let client = infra::nats::connect(nats_url, "keyledger-projector").await?;
    let js = async_nats::jetstream::new(client);
    let (projector, applied) = Projector::new(pool, js, config, commit_key).await?;
    let task = tokio::spawn(async move {
        let _lock = lock;
        projector.run(shutdown).await;
        Ok(())
    });
    Ok((applied, task))
}

/// Settings of the HTTP API component.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// HTTP behaviour.
    pub config: ApiConfig,
    /// Timeouts and the connection limit.
    pub limits: api::ServerLimits,
    /// Key-store replicas (when the API has to create the bucket).
    pub replicas: usize,
}

/// Starts the HTTP API. `applied` follows a projector in this process; without one,
/// the API polls the read model's checkpoint. Returns the bound address.
pub async fn start_api(
    nats_url: &str,
    database_url: &str,
    keys: &Keys,
    settings: ApiSettings,
    applied: Option<watch::Receiver<u64>>,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, Task)> {
    let pool = projections::db::open(database_url, 16).await?;
    let applied = applied.unwrap_or_else(|| {
        poll_checkpoint(pool.clone(), Duration::from_millis(20), shutdown.clone())
    });
    let client = infra::nats::connect(nats_url, "keyledger-api").await?;
    let js = async_nats::jetstream::new(client.clone());
    let keys_bucket = ensure_key_bucket(&js, settings.replicas).await?;
    api::access_log::ensure_stream(&js, settings.replicas)
        .await
        .map_err(|e| anyhow::anyhow!("setting up the access stream: {e}"))?;
    let access_log = api::access_log::AccessLog::start(
        js.clone(),
        settings.config.access_mode,
        keys.commit.clone(),
    );
    let state = AppState {
        read: ReadModel::new(pool, applied),
        commands: CommandClient::new(client, Duration::from_secs(10)),
        verifier: keys.verifier.clone(),
        envelope: keys.envelope.clone(),
        keys: KeyStore::new(keys_bucket),
        js,
        commit_key: keys.commit.clone(),
        access_log,
        costly: Arc::default(),
        clock,
        config: Arc::new(settings.config),
    };
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is another keyledger running?); pass --http-addr with a \
                 free address",
                settings.addr
            )
        })?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        api::serve(listener, api::app(state), settings.limits, shutdown)
            .await
            .map_err(Into::into)
    });
    Ok((addr, task))
}

/// The streams an auditor reads: the events, the access records and the checkpoints.
pub fn audited_streams(event_stream: &str) -> Vec<String> {
    vec![
        event_stream.to_owned(),
        api::access_log::STREAM.to_owned(),
        commands::checkpoints::STREAM.to_owned(),
    ]
}

/// The configuration of the managed nats-server of `data_dir`: its accounts, the
/// auditor's streams, and the auth callout's issuer (its key is created on first use).
pub fn managed_server_config(
    data_dir: &Path,
    binary: Option<&Path>,
    port: Option<u16>,
    event_stream: &str,
) -> Result<ServerConfig> {
    Ok(ServerConfig {
        binary: infra::server::find_binary(binary)?,
        data_dir: data_dir.to_owned(),
        port,
        audited_streams: audited_streams(event_stream),
        callout_issuer: CalloutIssuer::load_or_create(&data_dir.join(CALLOUT_ISSUER_FILE))?
            .public_key(),
    })
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
    let server =
        ManagedNats::start(&managed_server_config(&data_dir, binary, None, stream)?).await?;
    Ok((server, lock))
}

/// Starts the NATS auth callout: admits NATS clients by their keyledger token, as
/// `verifier` checks it, signing with the issuer key in `issuer_file`.
pub async fn start_nats_auth(
    nats_url: &str,
    issuer_file: &Path,
    verifier: Verifier,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<Task> {
    let callout = AuthCallout {
        client: infra::nats::connect(nats_url, "keyledger-nats-auth").await?,
        issuer: CalloutIssuer::load_or_create(issuer_file)?,
        verifier,
        clock,
    };
    Ok(tokio::spawn(async move {
        callout.run(shutdown).await.map_err(Into::into)
    }))
}

/// The checkpoint key file inside a data directory.
pub const CHECKPOINT_KEY_FILE: &str = "checkpoint.key";

/// Checkpoints signed with `<data_dir>/checkpoint.key`, named `keyledger/<stream>`,
/// every 10 s.
pub fn default_checkpoints(data_dir: &Path, stream: &str) -> CheckpointSettings {
    CheckpointSettings {
        key_file: data_dir.join(CHECKPOINT_KEY_FILE),
        name: format!("keyledger/{stream}"),
        interval: Duration::from_secs(10),
    }
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
    },
    /// Use a running server.
    External {
        /// Its URL (may carry credentials).
        url: String,
    },
}

/// Everything `keyledger up` runs.
#[derive(Clone)]
pub struct StackConfig {
    /// Data directory (keys, NATS store, read model).
    pub data_dir: PathBuf,
    /// NATS.
    pub nats: NatsChoice,
    /// HTTP API.
    pub api: ApiSettings,
    /// The event log.
    pub log: LogSettings,
    /// The command handler.
    pub handler: HandlerConfig,
    /// How often the lifecycle scheduler looks for due work.
    pub scheduler_interval: Duration,
    /// The order worker.
    pub orders: OrderWorkerSettings,
    /// Signed checkpoints; `None` puts the key in the data directory
    /// (`checkpoint.key`), named after the stream, signing every 10 s.
    pub checkpoints: Option<CheckpointSettings>,
    /// The projector.
    pub projector: ProjectorConfig,
    /// The clock.
    pub clock: Clock,
    /// Which tokens are accepted.
    pub identity: IdentitySettings,
}

/// The managed nats-server, supervised: restarted when it dies.
struct Supervised {
    log: PathBuf,
    pid: Arc<std::sync::atomic::AtomicU32>,
    /// Stopped after every component, so they finish their work against it.
    stop: CancellationToken,
    task: Task,
}

/// A running keyledger: managed nats-server, command service, projector, HTTP API.
pub struct Stack {
    _lock: DataDirLock,
    nats: Option<Supervised>,
    /// URL keyledger's components use (with credentials when managed).
    pub service_url: String,
    /// URL other NATS clients use.
    pub client_url: String,
    /// URL auditors use (read-only), when keyledger manages NATS.
    pub auditor_url: Option<String>,
    /// The public key checkpoints are signed with.
    pub checkpoint_public_key: String,
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// The read model.
    pub database_url: String,
    /// The keys.
    pub keys: Keys,
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
        let files = KeyFiles {
            create_commit_key: true,
            ..Default::default()
        };
        let keys = Keys::load_or_create(&data_dir, &files, &config.identity)?;
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut auditor_url = None;
        let (nats, service_url, client_url) = match &config.nats {
            NatsChoice::Managed { port, binary } => {
                let server_config =
                    managed_server_config(&data_dir, binary.as_deref(), *port, &config.log.stream)?;
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
                let (service, client) = (server.service_url(), server.client_url());
                auditor_url = Some(server.auditor_url());
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
                    stop,
                    task,
                };
                (Some(supervised), service, client)
            }
            NatsChoice::External { url } => (None, url.clone(), url.clone()),
        };
        let checkpoints = config
            .checkpoints
            .clone()
            .unwrap_or_else(|| default_checkpoints(&data_dir, &config.log.stream));
        let checkpoint_public_key = commands::checkpoints::load_signer(&checkpoints)?.public_key();
        let database_url = default_database_url(&data_dir);
        tasks.extend(
            start_commands(
                &service_url,
                &keys,
                &config.log,
                CommandSettings {
                    handler: config.handler.clone(),
                    database_url: database_url.clone(),
                    scheduler_interval: config.scheduler_interval,
                    orders: config.orders.clone(),
                    checkpoints,
                },
                config.clock.clone(),
                shutdown.clone(),
            )
            .await?,
        );
        let (applied, projector) = start_projector(
            &service_url,
            &database_url,
            config.projector.clone(),
            (*keys.commit).clone(),
            shutdown.clone(),
        )
        .await?;
        tasks.push(projector);
        let (http_addr, api) = start_api(
            &service_url,
            &database_url,
            &keys,
            config.api.clone(),
            Some(applied),
            config.clock.clone(),
            shutdown.clone(),
        )
        .await?;
        tasks.push(api);
        Ok(Self {
            _lock: lock,
            nats,
            auditor_url,
            service_url,
            client_url,
            checkpoint_public_key,
            http_addr,
            database_url,
            keys,
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
