//! `keyledger nats-config`: the accounts and authorization blocks an external
//! nats-server needs for keyledger, the same ones `keyledger up` writes for its own.

use anyhow::Result;
use clap::Args;

use super::serve::CalloutKeyArgs;
use super::{DataDirArgs, LogArgs};

/// Print the nats-server configuration keyledger needs.
#[derive(Debug, Args)]
pub struct NatsConfigArgs {
    #[command(flatten)]
    data: DataDirArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    callout_key: CalloutKeyArgs,
}

/// Prints the blocks, with the passwords and the callout's public key from the data
/// directory (made on first use).
pub fn run(args: NatsConfigArgs) -> Result<()> {
    let dir = &args.data.data_dir;
    std::fs::create_dir_all(dir)?;
    let issuer =
        infra::nats_auth::CalloutIssuer::load_or_create(&args.callout_key.path(&args.data))?;
    let accounts = infra::server::Accounts {
        service_password: infra::server::service_password(dir)?,
        auditor_password: infra::server::auditor_password(dir)?,
        callout_password: infra::server::callout_password(dir)?,
        rotation_password: infra::server::rotation_password(dir)?,
        intake_password: infra::server::intake_password(dir)?,
        callout_issuer: issuer.public_key(),
        audited_streams: keyledger::stack::audited_streams(&args.log.stream),
    };
    println!(
        "# keyledger's accounts for nats-server (2.11 or later): add these blocks to the \
         server's\n# configuration, with `jetstream {{ sync_interval: always }}`. Components \
         connect as\n# keyledger (service; a command service also as intake, the password \
         in nats-intake.key), auditors\n# as auditor, `keyledger serve nats-auth` as auth, \
         rotation handlers as rotation; NATS clients\n# connect with their keyledger token. The \
         passwords are those in {}.\n{}",
        dir.display(),
        accounts.config()
    );
    Ok(())
}
