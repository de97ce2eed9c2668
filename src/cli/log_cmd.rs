//! `keyledger log migrate`: move a log written before commits were authenticated
//! (commit format 1) to a new stream in format 2.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::CommitKeyArgs;
use super::serve::DatabaseArgs;

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Copy the log --from (commit format 1) into the new stream --to, every commit
    /// sealed with the commit key; the old stream is retired but kept. Stop keyledger
    /// first; afterwards start it with --stream <TO> and run `keyledger projections
    /// rebuild --stream <TO>`. Resumable: run it again after an interruption.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        commit_key: CommitKeyArgs,
        /// NATS URL with keyledger's service credentials; default: the managed server
        /// of --data-dir.
        #[arg(long, env = "KEYLEDGER_NATS_URL")]
        nats_url: Option<String>,
        /// The nats-server binary for the managed server.
        #[arg(long)]
        nats_server_bin: Option<PathBuf>,
        /// The stream to migrate.
        #[arg(long, default_value = infra::log::DEFAULT_STREAM)]
        from: String,
        /// The new stream.
        #[arg(long)]
        to: String,
        /// Replicas of the new stream.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
    },
}

pub async fn run(command: LogCommand) -> Result<()> {
    let LogCommand::Migrate {
        db,
        commit_key,
        nats_url,
        nats_server_bin,
        from,
        to,
        replicas,
    } = command;
    let key = commit_key.load_or_create(&db.data)?;
    let (managed, url) = match nats_url {
        Some(url) => (None, url),
        None => {
            let (server, lock) = keyledger::stack::maintenance_nats(
                &db.data.data_dir,
                nats_server_bin.as_deref(),
                &to,
            )
            .await?;
            let url = server.service_url();
            (Some((server, lock)), url)
        }
    };
    let outcome = async {
        let client = infra::nats::connect(&url, "keyledger-migrate").await?;
        let js = async_nats::jetstream::new(client);
        let progress = super::progress::Progress::new("migrated");
        let done = commands::log::migrate::migrate(&js, &from, &to, replicas, &key, |seq| {
            progress.at(seq)
        })
        .await?;
        progress.done();
        anyhow::Ok(done)
    }
    .await;
    if let Some((server, _lock)) = managed {
        server.stop().await;
    }
    let done = outcome?;
    for (seq, why) in &done.skipped {
        println!("skipped sequence {seq} of {from}: not a commit ({why})");
    }
    println!(
        "migrated {from} to {to}: {} commits copied, {} already there, {} foreign messages \
         skipped. Start keyledger with --stream {to}, then rebuild the read model: keyledger \
         projections rebuild --stream {to}",
        done.copied,
        done.present,
        done.skipped.len()
    );
    Ok(())
}
