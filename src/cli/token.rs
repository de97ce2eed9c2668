//! `keyledger token issue`.

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use domain::ids::{ProjectId, Role, ServiceName, UserId};
use domain::principal::Principal;
use infra::identity::{TOKEN_KEY_FILE, dev_keys};

use super::DataDirArgs;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a development token signed with <data-dir>/token-hs256.key.
    Issue {
        #[command(flatten)]
        data: DataDirArgs,
        /// The user id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// The project the token is scoped to.
        #[arg(long)]
        project: String,
        /// Roles in the project, comma-separated: admin, creator, observer, audit, or
        /// Barbican's newer member (= creator) and reader (= audit).
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        roles: Vec<String>,
        /// The service the token acts as (the `service` claim), for workloads.
        #[arg(long)]
        service: Option<String>,
        /// How long the token is valid, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

pub fn run(command: TokenCommand) -> Result<()> {
    let TokenCommand::Issue {
        data,
        user,
        project,
        roles,
        service,
        ttl,
    } = command;
    std::fs::create_dir_all(&data.data_dir)?;
    let (issuer, _) = dev_keys(&data.data_dir.join(TOKEN_KEY_FILE))?;
    let principal = Principal {
        user: UserId::parse(&user)?,
        project: ProjectId::parse(&project)?,
        roles: roles
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| Role::parse(r))
            .collect::<Result<_, _>>()?,
        service: service.as_deref().map(ServiceName::parse).transpose()?,
    };
    println!(
        "{}",
        issuer.issue(&principal, ttl, infra::clock::system()())
    );
    Ok(())
}
