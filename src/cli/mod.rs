//! The command line.

mod acl;
mod args;
mod audit;
mod bench;
mod container;
mod http;
mod progress;
mod projections_cmd;
mod proof;
mod replay;
mod replay_bench;
mod secret;
mod serve;
mod token;
mod up;
mod verify;
mod whoami;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

pub use args::*;

/// keyledger: a secrets manager whose source of truth is an event log on NATS
/// JetStream.
#[derive(Debug, Parser)]
#[command(name = "keyledger", version, about, long_about = None)]
pub struct Cli {
    /// Log more (repeat for even more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this machine: a managed nats-server, the command service, the
    /// projector and the HTTP API.
    Up(up::UpArgs),
    /// Run one component against an external NATS (for real deployments).
    #[command(subcommand)]
    Serve(serve::ServeCommand),
    /// Issue development tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Create, read, list and delete secrets through the HTTP API.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Show, replace, merge or reset a secret's ACL through the HTTP API.
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// The history and integrity of the log, read from NATS.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Containers: show one, or check a certificate container for TLS.
    #[command(subcommand)]
    Container(container::ContainerCommand),
    /// Show who the API takes you for: user, project, roles, service.
    Whoami {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Maintain read models.
    #[command(subcommand)]
    Projections(projections_cmd::ProjectionsCommand),
    /// Measure a running keyledger: commands/s over NATS, payload reads/s over HTTP.
    Bench(bench::BenchArgs),
}

/// Sets up logging to stderr. Logs never carry payloads, keys or tokens.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info,async_nats=warn,sqlx=warn",
        1 => "debug,async_nats=info,sqlx=info,hyper=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up(args) => up::run(args).await,
        Command::Serve(cmd) => serve::run(cmd).await,
        Command::Token(cmd) => token::run(cmd),
        Command::Secret(cmd) => secret::run(cmd).await,
        Command::Acl(cmd) => acl::run(cmd).await,
        Command::Container(cmd) => container::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Whoami { client } => whoami::run(client).await,
        Command::Projections(cmd) => projections_cmd::run(cmd).await,
        Command::Bench(args) => bench::run(args).await,
    }
}
