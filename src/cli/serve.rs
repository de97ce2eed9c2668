//! `keyledger serve …`: one component against an external NATS.

use std::net::SocketAddr;

use anyhow::Result;
use clap::{Args, Subcommand};
use keyledger::stack::{self, Task};
use projections::projector::ProjectorConfig;
use tokio_util::sync::CancellationToken;

use super::up::shutdown_signal;
use super::{
    CheckpointArgs, CommitKeyArgs, DataDirArgs, KeyArgs, LifecycleArgs, LogArgs, OrderArgs,
    PayloadArgs,
};

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// The command service (queue group keyledger-commands; run as many as needed),
    /// the key shredder and the lifecycle scheduler (which reads what is due from the
    /// read model).
    Commands {
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
        #[command(flatten)]
        lifecycle: LifecycleArgs,
        #[command(flatten)]
        orders: OrderArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
    /// The projector: folds the event stream into the read model.
    Projector {
        #[command(flatten)]
        nats: NatsUrlArgs,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        commit_key: CommitKeyArgs,
        #[command(flatten)]
        log: LogArgs,
        /// Most commits applied per transaction.
        #[arg(long, default_value_t = 512)]
        batch_size: usize,
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
    },
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
    /// Read model URL; default sqlite://<data-dir>/readmodel.sqlite.
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
    let clock = commands::clock::system();
    let tasks: Vec<Task> = match command {
        ServeCommand::Commands {
            nats,
            db,
            keys,
            log,
            payload,
            lifecycle,
            orders,
            checkpoints,
        } => {
            let keys = keys.load(&db.data, true)?;
            let settings = stack::CommandSettings {
                handler: payload.handler(&lifecycle)?,
                database_url: db.url()?,
                scheduler_interval: lifecycle.scheduler_interval,
                orders: orders.settings(),
                checkpoints: checkpoints.settings(&db.data.data_dir, &log.stream),
            };
            stack::start_commands(
                &nats.nats_url,
                &keys,
                &log.settings(),
                settings,
                clock,
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
        } => {
            let config = ProjectorConfig {
                stream: log.stream,
                batch_size,
            };
            let (_, task) = stack::start_projector(
                &nats.nats_url,
                &db.url()?,
                config,
                commit_key.load(&db.data)?,
                shutdown.clone(),
            )
            .await?;
            vec![task]
        }
        ServeCommand::Api {
            nats,
            db,
            keys,
            log,
            payload,
            http_addr,
            public_url,
        } => {
            let keys = keys.load(&db.data, false)?;
            let settings = payload.api_settings(&log, http_addr, public_url);
            let (addr, task) = stack::start_api(
                &nats.nats_url,
                &db.url()?,
                &keys,
                settings,
                None,
                clock,
                shutdown.clone(),
            )
            .await?;
            eprintln!("keyledger API listening on http://{addr}");
            vec![task]
        }
    };
    let mut tasks = tasks;
    let outcome = tokio::select! {
        (r, _, _) = futures::future::select_all(tasks.iter_mut()) => match r {
            Ok(r) => r,
            Err(e) => Err(e.into()),
        },
        () = shutdown_signal() => Ok(()),
    };
    shutdown.cancel();
    for task in tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(15), task).await;
    }
    outcome
}
