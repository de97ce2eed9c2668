//! `keyledger projections rebuild`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Subcommand;
use projections::projector::{ProjectorConfig, lock, rebuild};

use super::serve::DatabaseArgs;
use super::{CommitKeyArgs, LogArgs};

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuild the read model from sequence 1 of the event stream. Stop `keyledger up`
    /// (or the projector) first. Without --nats-url, the data directory's own
    /// nats-server is started for the rebuild and stopped after it.
    Rebuild {
        #[command(flatten)]
        db: DatabaseArgs,
        /// NATS URL of the event stream; default: the managed server of --data-dir.
        #[arg(long, env = "KEYLEDGER_NATS_URL")]
        nats_url: Option<String>,
        /// The nats-server binary for the managed server.
        #[arg(long)]
        nats_server_bin: Option<PathBuf>,
        #[command(flatten)]
        commit_key: CommitKeyArgs,
        #[command(flatten)]
        log: LogArgs,
        /// Most commits applied per transaction (and at most 128 MiB of them).
        /// Default: 262,144 on SQLite, where larger transactions write each page
        /// fewer times; 8,192 on PostgreSQL, whose transaction's writes are held in
        /// memory until it is sent.
        #[arg(long)]
        batch_size: Option<usize>,
    },
}

pub async fn run(command: ProjectionsCommand) -> Result<()> {
    let ProjectionsCommand::Rebuild {
        db,
        nats_url,
        nats_server_bin,
        commit_key,
        log,
        batch_size,
    } = command;
    let commit_key = commit_key.load(&db.data)?;
    let url = db.url()?;
    let _lock = lock(projections::db::sqlite_path(&url).as_deref())?;
    let (managed, nats_url) = match nats_url {
        Some(url) => (None, url),
        None => {
            let (server, lock) = keyledger::stack::maintenance_nats(
                &db.data.data_dir,
                nats_server_bin.as_deref(),
                &log.stream,
            )
            .await?;
            let url = server.service_url();
            (Some((server, lock)), url)
        }
    };
    // A file this command creates has no reader yet: its indexes are built once, at
    // the end. One that exists may be served meanwhile, and keeps them.
    let new_file = projections::db::sqlite_path(&url).is_some_and(|path| !path.exists());
    let started = Instant::now();
    let outcome = async {
        let writer =
            projections::db::open_writer(&url, projections::writer::WriterSizes::REBUILD).await?;
        let client = infra::nats::connect(&nats_url, "keyledger-rebuild").await?;
        let js = async_nats::jetstream::new(client);
        let config = ProjectorConfig {
            stream: log.stream.clone(),
            batch_size: batch_size.unwrap_or(if projections::db::is_postgres(&url) {
                projections::projector::DEFAULT_BATCH_SIZE
            } else {
                projections::projector::REBUILD_BATCH_SIZE
            }),
            ..Default::default()
        };
        anyhow::Ok(rebuild(writer, &js, &config, commit_key, new_file).await?)
    }
    .await;
    if let Some((server, _lock)) = managed {
        server.stop().await;
    }
    let seq = outcome?;
    println!(
        "rebuilt {} from sequence 1 to {seq} in {:.1} s",
        projections::db::without_password(&url),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
