//! `keyledger serve …`: one component against an external NATS.

use std::net::SocketAddr;

use anyhow::Result;
use clap::{Args, Subcommand};
use keyledger::stack::{self, Task};
use projections::projector::ProjectorConfig;
use tokio_util::sync::CancellationToken;

use super::up::shutdown_signal;
use super::{
    CheckpointArgs, CommitKeyArgs, DataDirArgs, KeyArgs, LifecycleArgs, LogArgs, OpsArgs,
    OrderArgs, PayloadArgs,
};

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// The command service (queue group keyledger-commands; run as many as needed),
    /// the key shredder and the lifecycle scheduler (which reads what is due from the
    /// read model).
    Commands {
        #[command(flatten)]
        nats: NatsUrlArgs,
        /// NATS URL the service takes NATS clients' commands with, as the user
        /// `intake` of the `CLIENTS` account (`keyledger nats-config`), e.g.
        /// nats://intake:password@nats.internal:4222. Default: the servers of
        /// --nats-url, as `intake` with the password in <data-dir>/nats-intake.key.
        #[arg(long, env = "KEYLEDGER_NATS_INTAKE_URL")]
        nats_intake_url: Option<String>,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        payload: PayloadArgs,
        #[command(flatten)]
        lifecycle: LifecycleArgs,
        #[command(flatten)]
        orders: OrderArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
        #[command(flatten)]
        ops: OpsArgs,
    },
    /// The projector: folds the event stream into the read model. A second projector
    /// on the same read model stands by and takes over the moment the first stops.
    Projector {
        #[command(flatten)]
        nats: NatsUrlArgs,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        commit_key: CommitKeyArgs,
        #[command(flatten)]
        log: LogArgs,
        /// Most commits applied per transaction (while catching up; at the head of
        /// the stream each commit is applied as it arrives).
        #[arg(long, default_value_t = projections::projector::DEFAULT_BATCH_SIZE)]
        batch_size: usize,
        #[command(flatten)]
        ops: OpsArgs,
    },
    /// The NATS auth callout: admits NATS clients to the CLIENTS account by their
    /// keyledger token, each with its own inbox space (connect as the callout user,
    /// `auth` in `keyledger nats-config`).
    NatsAuth {
        #[command(flatten)]
        nats: NatsUrlArgs,
        #[command(flatten)]
        data: DataDirArgs,
        #[command(flatten)]
        callout_key: CalloutKeyArgs,
        /// Development token key file. Default: <data-dir>/token-hs256.key.
        #[arg(long, env = "KEYLEDGER_TOKEN_KEY_FILE")]
        token_key_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        identity: super::IdentityArgs,
    },
    /// The HTTP API, reading a read model a projector keeps up to date.
    Api {
        #[command(flatten)]
        nats: NatsUrlArgs,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        payload: PayloadArgs,
        /// Address to listen on.
        #[arg(long, env = "KEYLEDGER_HTTP_ADDR", default_value = "127.0.0.1:9311")]
        http_addr: SocketAddr,
        /// Base URL of links in responses (default: from the request's Host header).
        #[arg(long)]
        public_url: Option<String>,
        #[command(flatten)]
        http: super::HttpArgs,
        #[command(flatten)]
        ops: OpsArgs,
        /// Announce every change on NATS (`keyledger.changes.<project>.<kind>.<id>`)
        /// from this replica; give it to one API replica of a deployment.
        #[arg(long)]
        relay_changes: bool,
    },
}

impl ServeCommand {
    /// How the component reports on itself (the auth callout has no checks yet).
    fn ops(&self) -> Option<(&OpsArgs, &str)> {
        match self {
            Self::Commands { ops, nats, .. }
            | Self::Projector { ops, nats, .. }
            | Self::Api { ops, nats, .. } => Some((ops, &nats.nats_url)),
            Self::NatsAuth { .. } => None,
        }
    }
}

/// The auth callout's issuer key.
#[derive(Debug, Clone, Args)]
pub struct CalloutKeyArgs {
    /// The callout's NATS account key (32 random bytes, hex, mode 0600), created on
    /// first use; its public key is `auth_callout.issuer` in the server's
    /// configuration (`keyledger nats-config` prints it). Default:
    /// <data-dir>/nats-callout.key.
    #[arg(long, env = "KEYLEDGER_NATS_CALLOUT_KEY_FILE")]
    pub callout_key_file: Option<std::path::PathBuf>,
}

impl CalloutKeyArgs {
    /// The key file.
    pub fn path(&self, data: &DataDirArgs) -> std::path::PathBuf {
        self.callout_key_file
            .clone()
            .unwrap_or_else(|| data.data_dir.join(infra::server::CALLOUT_ISSUER_FILE))
    }
}

/// An external NATS server.
#[derive(Debug, Clone, Args)]
pub struct NatsUrlArgs {
    /// NATS URL, e.g. nats://keyledger:password@nats.internal:4222.
    #[arg(long, env = "KEYLEDGER_NATS_URL")]
    pub nats_url: String,
}

/// The read model.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Read model URL: sqlite://<path> or postgres://<user>@<host>:<port>/<database>;
    /// default sqlite://<data-dir>/readmodel.sqlite.
    #[arg(long, env = "KEYLEDGER_DATABASE_URL")]
    pub database: Option<String>,
}

impl DatabaseArgs {
    /// The URL.
    pub fn url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database {
            return Ok(url.clone());
        }
        std::fs::create_dir_all(&self.data.data_dir)?;
        Ok(stack::default_database_url(
            &self.data.data_dir.canonicalize()?,
        ))
    }
}

pub async fn run(command: ServeCommand) -> Result<()> {
    let shutdown = CancellationToken::new();
    let clock = infra::clock::system();
    let ops = command
        .ops()
        .map(|(ops, url)| (ops.settings(None), url.to_owned()));
    let settings = ops.as_ref().map(|(s, _)| s.clone()).unwrap_or_default();
    let exporter = stack::ops::exporter(settings.project_labels);
    let health = infra::health::Health::new(settings.max_lag);
    let mut tasks: Vec<Task> = match command {
        ServeCommand::Commands {
            nats,
            nats_intake_url,
            db,
            keys,
            log,
            payload,
            lifecycle,
            orders,
            checkpoints,
            ..
        } => {
            let keys = keys.load(&db.data, true)?;
            let settings = stack::CommandSettings {
                intake_url: match nats_intake_url {
                    Some(url) => url,
                    None => stack::intake_url(&nats.nats_url, &db.data.data_dir)?,
                },
                handler: payload.handler(&lifecycle)?,
                database_url: db.url()?,
                scheduler_interval: lifecycle.scheduler_interval,
                rotation: lifecycle.rotation(),
                orders: orders.settings(),
                checkpoints: checkpoints.settings(&db.data.data_dir, &log.stream),
                log_tap: None,
            };
            stack::start_commands(
                &nats.nats_url,
                &keys,
                &log.settings(),
                settings,
                clock,
                &health,
                shutdown.clone(),
            )
            .await?
        }
        ServeCommand::Projector {
            nats,
            db,
            commit_key,
            log,
            batch_size,
            ..
        } => {
            // This process serves no reads: on PostgreSQL it stands by again after
            // losing the read model to the other projector.
            let config = ProjectorConfig {
                stream: log.stream,
                batch_size,
                stand_by_when_locked: true,
                ..Default::default()
            };
            vec![stack::start_projector_or_stand_by(
                &nats.nats_url,
                &db.url()?,
                config,
                commit_key.load(&db.data)?,
                &health,
                shutdown.clone(),
            )]
        }
        ServeCommand::NatsAuth {
            nats,
            data,
            callout_key,
            token_key_file,
            identity,
        } => {
            std::fs::create_dir_all(&data.data_dir)?;
            let token = token_key_file
                .unwrap_or_else(|| data.data_dir.join(infra::identity::TOKEN_KEY_FILE));
            let (_, verifier) = stack::token_keys(&token, &identity.settings())?;
            vec![
                stack::start_nats_auth(
                    &nats.nats_url,
                    &callout_key.path(&data),
                    verifier,
                    clock,
                    shutdown.clone(),
                )
                .await?,
            ]
        }
        ServeCommand::Api {
            nats,
            db,
            keys,
            log,
            payload,
            http_addr,
            public_url,
            http,
            relay_changes,
            ..
        } => {
            let keys = keys.load(&db.data, false)?;
            let mut settings =
                payload.api_settings(&log, http_addr, public_url, &http, http.tls.files())?;
            settings.relay_changes = relay_changes;
            let scheme = if settings.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let (addr, task) = stack::start_api(
                &nats.nats_url,
                &db.url()?,
                &keys,
                settings,
                None,
                clock,
                &health,
                shutdown.clone(),
            )
            .await?;
            eprintln!("keyledger API listening on {scheme}://{addr}");
            vec![task]
        }
    };
    if let Some((settings, nats_url)) = ops {
        tasks.push(stack::ops::answer_status(
            &nats_url,
            health.clone(),
            shutdown.clone(),
        ));
        if let Some(addr) = settings.addr {
            let (bound, task) = stack::ops::serve(addr, health, exporter, shutdown.clone()).await?;
            eprintln!(
                "keyledger metrics and health on http://{bound} (/metrics, /healthz, /readyz)"
            );
            tasks.push(task);
        }
    }
    let outcome = tokio::select! {
        (r, ended, _) = futures::future::select_all(tasks.iter_mut()) => {
            // That task has ended: waiting on its handle again below would panic.
            tasks.swap_remove(ended);
            match r {
                Ok(r) => r,
                Err(e) => Err(e.into()),
            }
        }
        () = shutdown_signal() => Ok(()),
    };
    shutdown.cancel();
    for task in tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(15), task).await;
    }
    outcome
}
