//! Starting each component: the command service (with its scheduler, shredder, order
//! worker and checkpointer), the projector, the HTTP API and the NATS auth callout.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use api::{ApiConfig, AppState};
use commands::access_key::AccessKeyHandler;
use commands::container::ContainerHandler;
use commands::log::checkpoints::{CheckpointSettings, Checkpointer};
use commands::order::OrderHandler;
use commands::order::ca::{CertificateAuthority, LocalCa};
use commands::order::worker::{OrderWorker, Retry, StepHook};
use commands::quota::{QuotaHandler, Quotas};
use commands::secret::rotation::RotationSettings;
use commands::secret::{HandlerConfig, SecretHandler};
use commands::shared::service::CommandService;
use commands::shared::store::EventStore;
use domain::commit::CommitKey;
use futures::StreamExt;
use infra::client::CommandClient;
use infra::clock::Clock;
use infra::health::{Health, Unhealthy};
use infra::identity::Verifier;
use infra::keystore::KeyStore;
use infra::log::{LogSettings, ensure_key_bucket};
use infra::nats_auth::{AuthCallout, CalloutIssuer};
use projections::db::{Pool, Target};
use projections::projector::{Projector, ProjectorConfig};
use projections::read::{ReadCache, ReadModel, listen_checkpoint, poll_checkpoint};
use projections::tap::Tap;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Task;
use super::keys::Keys;
use super::read_model::{ReadModelDue, ReadModelPending, ReadModelUsage};

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
    /// The URL NATS clients' commands are taken with: the `intake` user of the
    /// `CLIENTS` account ([`super::intake_url`]).
    pub intake_url: String,
    /// The handler.
    pub handler: HandlerConfig,
    /// The read model the scheduler reads what is due from.
    pub database_url: String,
    /// How often the scheduler looks.
    pub scheduler_interval: Duration,
    /// The rotation runner.
    pub rotation: RotationSettings,
    /// The order worker.
    pub orders: OrderWorkerSettings,
    /// Signed checkpoints of the log.
    pub checkpoints: CheckpointSettings,
    /// The tap of a projector in this process: the checkpointer takes the commits it
    /// applied from it instead of reading each from the log again.
    pub log_tap: Option<Tap>,
}

/// Starts the command service, the key shredder, the lifecycle scheduler, the order
/// worker and the checkpointer.
pub async fn start_commands(
    nats_url: &str,
    keys: &Keys,
    log: &LogSettings,
    settings: CommandSettings,
    clock: Clock,
    health: &Health,
    shutdown: CancellationToken,
) -> Result<Vec<Task>> {
    let handler = settings.handler;
    let cache_capacity = handler.cache_capacity;
    let client = infra::nats::connect(nats_url, "keyledger-commands").await?;
    // Before anything is created on the server: on a wrong one, nothing should be.
    own_account_checked(&client).await?;
    let js = async_nats::jetstream::new(client.clone());
    super::deployment::check(&js, &log.stream, keys).await?;
    health.component("commands");
    health.nats("commands", &client);
    health.stream("commands", &js, &log.stream);
    health.stream("commands", &js, &format!("KV_{}", infra::log::KEY_BUCKET));
    let envelope = keys.envelope.clone();
    health.check("commands.kek", move || {
        let seals = envelope.seals();
        let version = envelope.current_version();
        async move {
            if seals {
                Ok(format!("wrapping new data keys with KEK version {version}"))
            } else {
                Err(Unhealthy::NoCurrentKek)
            }
        }
    });
    // The scheduler, the order worker and the quota gate share one read-only view of
    // the read model.
    let read_model = projections::db::open(&settings.database_url, 2).await?;
    let quotas = Arc::new(Quotas::new(Arc::new(ReadModelUsage(read_model.clone()))));
    let store = Arc::new(
        EventStore::open(js.clone(), log, (*keys.commit).clone())
            .await?
            .with_quotas(quotas.clone()),
    );
    let key_bucket = ensure_key_bucket(&js, log.replicas).await?;
    // New data keys are wrapped by the deployment's current KEK from the first one on,
    // and by each new one from the moment `keys rotate-kek` names it.
    infra::kek::current::adopt_now(&keys.envelope, &key_bucket).await?;
    let kek_follower = tokio::spawn(infra::kek::current::follow(
        keys.envelope.clone(),
        key_bucket.clone(),
        shutdown.clone(),
    ));
    let keystore = KeyStore::with_lease(
        key_bucket.clone(),
        infra::kek::current::Lease::new(keys.envelope.clone(), key_bucket),
    )
    .batched(js.clone());
    super::deployment::check_checkpoint_key(&js, &log.stream, &settings.checkpoints).await?;
    let signer = commands::log::checkpoints::load_signer(&settings.checkpoints)?;
    commands::log::checkpoints::ensure_stream(&js, log.replicas).await?;
    let checkpointer = Checkpointer::resume(
        js.clone(),
        &log.stream,
        signer,
        (*keys.commit).clone(),
        clock.clone(),
    )
    .await?;
    let checkpoints = tokio::spawn(
        checkpointer.run(
            settings.checkpoints.interval,
            settings
                .log_tap
                .as_ref()
                .filter(|tap| tap.stream() == log.stream)
                .map(checkpoint_feed),
            shutdown.clone(),
        ),
    );
    let handler = Arc::new(SecretHandler::new(
        store.clone(),
        keystore.clone(),
        keys.envelope.clone(),
        clock.clone(),
        handler,
    ));
    let due = ReadModelDue(read_model.clone());
    let heartbeat = infra::health::Heartbeat::default();
    heartbeat.watch(health, "commands.scheduler");
    let scheduler = tokio::spawn(commands::secret::scheduler::run(
        handler.clone(),
        due,
        clock.clone(),
        settings.scheduler_interval,
        heartbeat,
        shutdown.clone(),
    ));
    let rotation = tokio::spawn(
        commands::secret::rotation::Runner {
            handler: handler.clone(),
            nats: client.clone(),
            source: ReadModelDue(read_model.clone()),
            clock: clock.clone(),
            settings: settings.rotation,
        }
        .run(shutdown.clone()),
    );
    let containers = Arc::new(ContainerHandler::new(
        store.clone(),
        handler.clone(),
        clock.clone(),
        cache_capacity,
    ));
    let orders = Arc::new(OrderHandler::new(
        store.clone(),
        clock.clone(),
        cache_capacity,
    ));
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
            .await;
        Ok(())
    });
    let access_keys = Arc::new(AccessKeyHandler::new(
        store.clone(),
        keystore.clone(),
        keys.envelope.clone(),
        clock.clone(),
        cache_capacity,
    ));
    // Commands come on connections of their own (`commands::shared::service` says why).
    let clients_intake = infra::nats::connect_buffering(
        &settings.intake_url,
        "keyledger-commands-nats",
        commands::shared::service::CLIENT_INTAKE_BUFFER,
    )
    .await
    .context(
        "connecting as `intake`, the user NATS clients' commands are taken with: its password \
         in the server's configuration must be the one in <data-dir>/nats-intake.key \
         (`keyledger nats-config` prints the blocks to add)",
    )?;
    let service_intake = infra::nats::connect_buffering(
        nats_url,
        "keyledger-commands-service",
        commands::shared::service::CLIENT_INTAKE_BUFFER,
    )
    .await?;
    let api_intake = infra::nats::connect_buffering(
        nats_url,
        "keyledger-commands-api",
        commands::shared::service::API_INTAKE_BUFFER,
    )
    .await?;
    // Not the clients' intake: any token holder's flood can drop it for a moment,
    // and a readiness check failing then would take the HTTP API out of service too.
    health.nats("commands.api", &api_intake);
    let service = CommandService {
        clients_intake,
        service_intake,
        api_client: api_intake,
        handler,
        containers,
        orders,
        access_keys,
        quotas: Arc::new(QuotaHandler::new(
            store.clone(),
            clock.clone(),
            Some(quotas),
        )),
        verifier: keys.verifier.clone(),
        // The HTTP API sends its commands on subjects no client may publish to: with
        // its callers' tokens, or with delegation tokens for principals it verified
        // by AWS signatures.
        delegated: keys.verifier.clone().with_delegation(&keys.commit),
        clock,
        concurrency: 256,
    };
    let stream = log.stream.clone();
    let shredder_shutdown = shutdown.clone();
    let shredder_key = (*keys.commit).clone();
    Ok(vec![
        worker,
        tokio::spawn(async move {
            kek_follower.await?;
            Ok(())
        }),
        tokio::spawn(async move {
            scheduler.await?;
            Ok(())
        }),
        tokio::spawn(async move {
            rotation.await?;
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

/// The batches `tap` hands on, as the checkpointer takes them. A reader that falls
/// behind loses the oldest batches: the checkpointer reads those from the log.
fn checkpoint_feed(tap: &Tap) -> commands::log::checkpoints::Feed {
    futures::stream::unfold(tap.subscribe(), |mut batches| async move {
        loop {
            match batches.recv().await {
                Ok(batch) => {
                    let commits = batch.iter().map(|c| (c.seq, c.payload.clone())).collect();
                    return Some((commits, batches));
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// What a projector tells an API in the same process: the sequence it has applied, and
/// the read cache it keeps true.
pub struct Applied {
    /// The sequence applied.
    pub seq: watch::Receiver<u64>,
    /// The cache it evicts from as it applies, when a read model in this process
    /// reads through one.
    pub cache: Option<ReadCache>,
    /// Where it hands on each batch it applied, for the change relay and the
    /// checkpointer in this process.
    pub tap: Tap,
}

/// Refuses to serve on a nats-server without keyledger's accounts, which takes any
/// user into its global account: there both of the command service's intakes would
/// take clients' commands, one of them without the check of their reply subjects. The
/// server names the account of keyledger's own connection; a server that does not
/// say (no answer within 5 s, no responders, an error) is let be, with a warning (the
/// check guards against a misconfiguration, it is not what keeps the accounts apart).
async fn own_account_checked(service: &async_nats::Client) -> Result<()> {
    match infra::nats::account_of(service, Duration::from_secs(5)).await {
        Some(account) if account == infra::nats::GLOBAL_ACCOUNT => anyhow::bail!(
            "keyledger's NATS connection is in the server's global account ($G): this \
             nats-server lacks keyledger's accounts, and clients' commands would be taken \
             without the check of their reply subjects; configure the server with what \
             `keyledger nats-config` prints"
        ),
        Some(account) => {
            tracing::debug!(%account, "keyledger's NATS account");
            Ok(())
        }
        None => {
            tracing::warn!(
                "nats-server did not say which account keyledger's connection is in \
                 ($SYS.REQ.USER.INFO); make sure it runs the accounts `keyledger nats-config` \
                 prints"
            );
            Ok(())
        }
    }
}

/// Starts the projector on the read model at `database_url`, applying the commits
/// `commit_key` authenticates. Returns what it has applied. Fails if another projector
/// writes that read model.
pub async fn start_projector(
    nats_url: &str,
    database_url: &str,
    config: ProjectorConfig,
    commit_key: CommitKey,
    tap: Tap,
    health: &Health,
    shutdown: CancellationToken,
) -> Result<(Applied, Task)> {
    // On PostgreSQL the writer's session holds the lock (an advisory lock).
    let lock = projections::projector::lock(projections::db::sqlite_path(database_url).as_deref())?;
    let writer =
        projections::db::open_writer(database_url, projections::writer::WriterSizes::PROJECTOR)
            .await?;
    let client = infra::nats::connect(nats_url, "keyledger-projector").await?;
    let js = async_nats::jetstream::new(client.clone());
    let stream = config.stream.clone();
    // Another deployment's commit key would take every commit for foreign, and the
    // read model's checkpoint would move past them for good.
    super::deployment::check_commit_key(&js, &stream, &commit_key, false).await?;
    let (applied, task) = run_projector(
        lock,
        writer,
        js.clone(),
        config,
        commit_key,
        tap,
        Some(ReadCache::default()),
        shutdown,
    )
    .await?;
    watch_projector(health, &client, &js, &stream, applied.seq.clone());
    Ok((applied, task))
}

/// The projector's checks: NATS, its stream, and its lag.
fn watch_projector(
    health: &Health,
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    stream: &str,
    applied: watch::Receiver<u64>,
) {
    health.component("projector");
    health.nats("projector", client);
    health.read_model("projector", js, stream, applied);
}

/// Starts a projector that stands by while another projector writes the read model at
/// `database_url`, and takes over when that one stops (`keyledger serve projector`:
/// run two for a hot standby). It checks the URL and connects to NATS first, so a
/// standby that could not take over fails now, not when it is needed; it opens (and
/// migrates) the read model only once it holds the lock, never under a running
/// projector. The lock is a file lock beside a SQLite read model, and an advisory lock
/// that PostgreSQL grants the standby's waiting session.
pub fn start_projector_or_stand_by(
    nats_url: &str,
    database_url: &str,
    config: ProjectorConfig,
    commit_key: CommitKey,
    health: &Health,
    shutdown: CancellationToken,
) -> Task {
    let (nats_url, database_url) = (nats_url.to_owned(), database_url.to_owned());
    let health = health.clone();
    tokio::spawn(async move {
        let target = projections::db::target(&database_url)?;
        let client = infra::nats::connect(&nats_url, "keyledger-projector").await?;
        let js = async_nats::jetstream::new(client.clone());
        // Checked before standing by: a standby that could not take over fails now.
        super::deployment::check_commit_key(&js, &config.stream, &commit_key, false).await?;
        let (lock, writer) = match target {
            Target::Sqlite(db) => {
                let lock = tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    lock = projections::projector::lock_when_free(Some(&db)) => lock?,
                };
                let writer = projections::db::open_writer(
                    &database_url,
                    projections::writer::WriterSizes::PROJECTOR,
                )
                .await?;
                (lock, writer)
            }
            Target::Postgres(options) => {
                let writer = tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    writer = projections::db::open_postgres_writer_when_free(&database_url, *options) => writer?,
                };
                (None, writer)
            }
        };
        let stream = config.stream.clone();
        // Nothing else in this process reads the log or the read model: no tap to hand
        // batches on, no read cache to keep true.
        let tap = Tap::for_stream(&config.stream);
        let (applied, task) = run_projector(
            lock,
            writer,
            js.clone(),
            config,
            commit_key,
            tap,
            None,
            shutdown,
        )
        .await?;
        watch_projector(&health, &client, &js, &stream, applied.seq);
        task.await?
    })
}

/// Runs the projector holding `lock`: it reads the checkpoint only now, so a standby
/// resumes from where the projector before it stopped. It keeps `cache` true for a
/// read model in this process; without one, a batch evicts nothing.
#[expect(
    clippy::too_many_arguments,
    reason = "the projector's parts, and what its two callers give it or not"
)]
async fn run_projector(
    lock: Option<projections::projector::ProjectorLock>,
    writer: projections::writer::Writer,
    js: async_nats::jetstream::Context,
    config: ProjectorConfig,
    commit_key: CommitKey,
    tap: Tap,
    cache: Option<ReadCache>,
    shutdown: CancellationToken,
) -> Result<(Applied, Task)> {
    let (projector, applied) = Projector::new(writer, js, config, commit_key).await?;
    let projector = projector.with_tap(tap);
    let projector = match &cache {
        Some(cache) => projector.with_cache(cache.clone()),
        None => projector,
    };
    let tap = projector.tap();
    let task = tokio::spawn(async move {
        let _lock = lock;
        projector.run(shutdown).await;
        Ok(())
    });
    Ok((
        Applied {
            seq: applied,
            cache,
            tap,
        },
        task,
    ))
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
    /// HTTPS: the certificate served (reloaded when its files change); `None`: plain
    /// HTTP.
    pub tls: Option<Arc<api::tls::ServerTls>>,
    /// Serve plain HTTP on an address other than loopback (refused otherwise).
    pub allow_plain_http: bool,
    /// Announce changes on NATS (`keyledger.changes.>`) from this process: one
    /// process of a deployment does ([`api::changes::relay`]).
    pub relay_changes: bool,
}

/// Starts the HTTP API. `applied` follows a projector in this process; without one,
/// the API polls the read model's checkpoint. Returns the bound address.
#[expect(
    clippy::too_many_arguments,
    reason = "each is a different part the API is built from, named at its two callers"
)]
pub async fn start_api(
    nats_url: &str,
    database_url: &str,
    keys: &Keys,
    settings: ApiSettings,
    applied: Option<Applied>,
    clock: Clock,
    health: &Health,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, Task)> {
    check_plain_http(&settings)?;
    let mut settings = settings;
    settings.config.https = settings.tls.is_some();
    let pool = projections::db::open(database_url, 16).await?;
    let tap = applied.as_ref().map(|applied| applied.tap.clone());
    let read = match (applied, &pool) {
        (Some(Applied { seq, cache, .. }), _) => {
            let read = ReadModel::new(pool, seq);
            match cache {
                Some(cache) => read.with_cache(cache),
                None => read,
            }
        }
        // The projector NOTIFYs each checkpoint it commits; the resync covers a
        // notification lost with a connection.
        (None, Pool::Postgres(pg)) => {
            let seq = listen_checkpoint(pg.clone(), Duration::from_secs(1), shutdown.clone());
            ReadModel::new(pool, seq)
        }
        (None, Pool::Sqlite(_)) => {
            let seq = poll_checkpoint(pool.clone(), Duration::from_millis(20), shutdown.clone());
            ReadModel::new(pool, seq)
        }
    };
    let client = infra::nats::connect(nats_url, "keyledger-api").await?;
    let js = async_nats::jetstream::new(client.clone());
    let keys_bucket = ensure_key_bucket(&js, settings.replicas).await?;
    api::access_log::ensure_stream(&js, settings.replicas)
        .await
        .map_err(|e| anyhow::anyhow!("setting up the access stream: {e}"))?;
    health.component("api");
    health.nats("api", &client);
    health.stream("api", &js, api::access_log::STREAM);
    health.read_model("api", &js, &settings.config.stream, read.applied_watch());
    // A quiet read model is never behind the log, so the lag alone does not show a
    // database that has gone away: ask it.
    let probe = read.clone();
    health.check("api.read_model_reachable", move || {
        let probe = probe.clone();
        async move {
            probe
                .reachable()
                .await
                .map(|seq| format!("answers (checkpoint {seq})"))
                .map_err(|e| infra::health::Unhealthy::Unreachable(e.to_string()))
        }
    });
    let access_log = api::access_log::AccessLog::start(
        js.clone(),
        settings.config.access_mode,
        keys.commit.clone(),
    );
    let keys_store = KeyStore::new(keys_bucket);
    // On the API's own command subjects: a flood of NATS clients' commands does not
    // reach them (`commands::shared::service`).
    let commands = CommandClient::new(client.clone(), Duration::from_secs(10)).delegated();
    let state = AppState::new(api::Shared {
        read,
        commands: commands.clone(),
        verifier: keys.verifier.clone(),
        envelope: keys.envelope.clone(),
        keys: keys_store.clone(),
        wrapped_keys: api::key_cache::KeyCache::start(
            keys_store,
            // Its own connection, so every message the client drops is a commit.
            infra::nats::connect_buffering(
                nats_url,
                "keyledger-key-feed",
                api::key_cache::FEED_MESSAGES,
            )
            .await?,
            shutdown.clone(),
        )
        .await?,
        js,
        commit_key: keys.commit.clone(),
        access_log,
        costly: Arc::default(),
        aws: api::aws::AwsKeys::new(&keys.commit, &commands),
        clock,
        health: health.clone(),
        config: Arc::new(settings.config),
    });
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
    if settings.relay_changes {
        let (state, nats, shutdown) = (state.clone(), client.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = api::changes::relay(state, nats, tap) => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
    let task = tokio::spawn(async move {
        api::serve(
            listener,
            api::app(state),
            settings.limits,
            settings.tls,
            shutdown,
        )
        .await
        .map_err(Into::into)
    });
    Ok((addr, task))
}

/// Plain HTTP is for loopback: elsewhere tokens and payloads would cross the network
/// in the clear, so it takes `--allow-plain-http` (and is warned about).
fn check_plain_http(settings: &ApiSettings) -> Result<()> {
    if settings.tls.is_some() || settings.addr.ip().is_loopback() {
        return Ok(());
    }
    if !settings.allow_plain_http {
        anyhow::bail!(
            "refusing to serve plain HTTP on {}, which is not a loopback address: tokens and \
             payloads would cross the network in the clear. Serve HTTPS (--tls-cert and \
             --tls-key, or `keyledger up --tls`), listen on 127.0.0.1 behind a TLS proxy, or \
             pass --allow-plain-http",
            settings.addr
        );
    }
    tracing::warn!(addr = %settings.addr, "serving plain HTTP on a non-loopback address (--allow-plain-http): tokens and payloads cross the network in the clear");
    Ok(())
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
