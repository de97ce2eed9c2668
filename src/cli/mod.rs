//! The command line.

mod access_key;
mod acl;
mod args;
mod audit;
mod auditor;
mod backup;
mod bench;
mod cluster;
mod container;
mod export_format;
mod http;
mod keys;
mod log_cmd;
mod nats_config;
mod output;
mod progress;
mod projections_cmd;
mod proof;
mod replay;
mod replay_bench;
mod secret;
mod serve;
mod state_view;
mod status;
mod token;
mod trust;
mod up;
mod verify;
mod verify_pipeline;
mod whoami;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

pub use args::*;
pub use output::error_text;

/// keyledger: a secrets manager whose source of truth is an event log on NATS
/// JetStream.
#[derive(Debug, Parser)]
#[command(name = "keyledger", version, about, long_about = None)]
pub struct Cli {
    /// Log more (repeat for even more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(flatten)]
    pub nats_tls: NatsTlsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this machine: a managed nats-server, the command service, the
    /// projector and the HTTP API.
    Up(up::UpArgs),
    /// Run keyledger scaled out on this machine: three nats-servers as one JetStream
    /// cluster, two command services, a projector and two API replicas, each its own
    /// process.
    Cluster(cluster::ClusterArgs),
    /// Run one component against an external NATS (for real deployments).
    #[command(subcommand)]
    Serve(serve::ServeCommand),
    /// Back up the event stream, checkpoints, access records and key store to a file,
    /// while keyledger runs (the key files are not in it: keep them apart).
    Backup(backup::BackupArgs),
    /// Restore a backup into a new, empty data directory (then put the key files there
    /// and run `keyledger up`, which rebuilds the read model from the log).
    Restore(backup::RestoreArgs),
    /// Rotate the key-encryption key while keyledger runs: a new KEK version, every
    /// stored data key re-wrapped under it, the old version retired.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// A deployment's health: streams, consumers, the last checkpoint, and every
    /// running process's readiness (read-model lag, last scheduler run).
    Status(status::StatusArgs),
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
    /// Access keys (AWS SigV4 credentials) acting as a principal of your project:
    /// create, import, list, revoke.
    #[command(subcommand)]
    AccessKey(access_key::AccessKeyCommand),
    /// Show who the API takes you for: user, project, roles, service.
    Whoami {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Maintain read models.
    #[command(subcommand)]
    Projections(projections_cmd::ProjectionsCommand),
    /// Print the nats-server accounts and authorization keyledger needs, for running
    /// it against your own NATS.
    NatsConfig(nats_config::NatsConfigArgs),
    /// Maintain the event log: migrate a log from an earlier commit format.
    #[command(subcommand)]
    Log(log_cmd::LogCommand),
    /// Measure a running keyledger: commands/s over NATS, payload reads/s over HTTP.
    Bench(bench::BenchArgs),
}

/// keyledger's own crates: their log lines never carry payloads, keys, tokens or
/// command bodies, at any level.
const OWN_TARGETS: &[&str] = &["keyledger", "commands", "projections", "api", "domain"];

/// Whether a log line at `meta` may be written: keyledger's own at any level; a
/// dependency's at info and above only, whatever RUST_LOG asks, because below that
/// some print whole messages (async-nats traces every protocol frame, headers and
/// payload included: a command's token and plaintext).
fn printable(meta: &tracing::Metadata<'_>) -> bool {
    let target = meta.target();
    let own = OWN_TARGETS.iter().any(|c| {
        target
            .strip_prefix(c)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    });
    own || *meta.level() <= tracing::Level::INFO
}

/// Sets up logging to stderr. Logs never carry payloads, keys or tokens: keyledger's
/// own lines are written so, and dependencies are held to info and above.
pub fn init_tracing(verbose: u8) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = match verbose {
        0 => "info,async_nats=warn,sqlx=warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(filter)
        .with_filter(tracing_subscriber::filter::filter_fn(printable));
    tracing_subscriber::registry().with(layer).init();
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    // `up --tls` trusts the development CA it makes and presents its own client
    // certificate: flags (or variables) meant for the CLI do not apply to it.
    let own_tls = matches!(&cli.command, Command::Up(args) if args.manages_nats_tls());
    if let Some(tls) = cli.nats_tls.settings().filter(|_| !own_tls) {
        infra::nats::use_tls(tls).map_err(|e| anyhow::anyhow!("NATS TLS: {e}"))?;
    }
    match cli.command {
        Command::Up(args) => up::run(args).await,
        Command::Cluster(args) => cluster::run(args).await,
        Command::Serve(cmd) => serve::run(cmd).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(args).await,
        Command::Keys(cmd) => keys::run(cmd).await,
        Command::Status(args) => status::run(args).await,
        Command::Token(cmd) => token::run(cmd),
        Command::Secret(cmd) => secret::run(cmd).await,
        Command::Acl(cmd) => acl::run(cmd).await,
        Command::Container(cmd) => container::run(cmd).await,
        Command::AccessKey(cmd) => access_key::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Whoami { client } => whoami::run(client).await,
        Command::Projections(cmd) => projections_cmd::run(cmd).await,
        Command::Log(cmd) => log_cmd::run(cmd).await,
        Command::NatsConfig(args) => nats_config::run(args),
        Command::Bench(args) => bench::run(args).await,
    }
}
