//! `keyledger up`: everything on one machine.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use domain::ids::{ProjectId, Role, UserId};
use domain::principal::Principal;
use keyledger::stack::{NatsChoice, Stack, StackConfig};
use projections::projector::ProjectorConfig;

use super::{
    CheckpointArgs, DataDirArgs, HttpArgs, IdentityArgs, LifecycleArgs, LogArgs, OrderArgs,
    PayloadArgs,
};

/// Runs a managed nats-server (JetStream under <data-dir>/nats, sync_interval: always),
/// the command service, the projector (SQLite in <data-dir>) and the HTTP API, until
/// Ctrl-C.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    data: DataDirArgs,
    /// Address of the HTTP API.
    #[arg(long, env = "KEYLEDGER_HTTP_ADDR", default_value = "127.0.0.1:9311")]
    http_addr: SocketAddr,
    /// TLS everywhere with a development CA, made under <data-dir>/tls/ when missing
    /// (ca.pem is what clients trust): the HTTP API serves HTTPS (--tls-cert and
    /// --tls-key serve your own certificate instead) and the managed nats-server
    /// speaks TLS (tls:// URLs).
    #[arg(long, env = "KEYLEDGER_TLS")]
    tls: bool,
    /// With --tls: the managed nats-server verifies client certificates (nats-server's
    /// `verify`); keyledger's own components present <data-dir>/tls/client.pem, and
    /// every other client needs a certificate from the CA.
    #[arg(long, requires = "tls")]
    nats_tls_verify: bool,
    /// Client port of the managed nats-server (on 127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 4222, conflicts_with = "nats_url")]
    nats_port: u16,
    /// Use this NATS server (nats://[user:password@]host:port) instead of starting one.
    #[arg(long, env = "KEYLEDGER_NATS_URL")]
    nats_url: Option<String>,
    /// The nats-server binary; default: $KEYLEDGER_NATS_SERVER, then $PATH.
    #[arg(long)]
    nats_server_bin: Option<PathBuf>,
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
    /// Base URL of links in responses (default: from the request's Host header).
    #[arg(long)]
    public_url: Option<String>,
    #[command(flatten)]
    identity: IdentityArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    pkcs11: super::Pkcs11Args,
    #[command(flatten)]
    ops: super::OpsArgs,
}

/// Where `up` serves metrics and health unless told otherwise (the port of
/// OpenTelemetry's Prometheus exporter).
const DEFAULT_METRICS_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 9464);

impl UpArgs {
    /// Whether `up` runs its own nats-server with TLS, and so sets its own NATS TLS.
    pub fn manages_nats_tls(&self) -> bool {
        self.tls && self.nats_url.is_none()
    }
}

/// The development token `up` prints.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

pub async fn run(args: UpArgs) -> Result<()> {
    let nats = match &args.nats_url {
        Some(url) => NatsChoice::External { url: url.clone() },
        None => NatsChoice::Managed {
            port: (args.nats_port != 0).then_some(args.nats_port),
            binary: args.nats_server_bin.clone(),
            tls: managed_nats_tls(&args)?,
        },
    };
    let clock = infra::clock::system();
    let identity = args.identity.settings();
    let dev_tokens = identity.dev_tokens();
    let checkpoints = args
        .checkpoints
        .settings(&args.data.data_dir, &args.log.stream);
    let (tls, dev_ca) = match (args.http.tls.files(), args.tls) {
        (Some(files), _) => (Some(files), None),
        (None, true) => {
            let (mut files, ca) =
                keyledger::stack::dev_tls::ensure(&args.data.data_dir, args.http_addr)?;
            files.client_ca = args.http.tls.tls_client_ca.clone();
            files.require_client_cert = args.http.tls.tls_require_client_cert;
            (Some(files), Some(ca))
        }
        (None, false) => (None, None),
    };
    let mut stack = Stack::start(StackConfig {
        kek_pkcs11: args.pkcs11.settings()?,
        commands: true,
        data_dir: args.data.data_dir.clone(),
        nats,
        api: args.payload.api_settings(
            &args.log,
            args.http_addr,
            args.public_url.clone(),
            &args.http,
            tls,
        )?,
        log: args.log.settings(),
        handler: args.payload.handler(&args.lifecycle)?,
        scheduler_interval: args.lifecycle.scheduler_interval,
        rotation: args.lifecycle.rotation(),
        orders: args.orders.settings(),
        checkpoints: Some(checkpoints.clone()),
        projector: ProjectorConfig {
            stream: args.log.stream.clone(),
            ..Default::default()
        },
        database_url: None,
        clock: clock.clone(),
        identity,
        ops: args
            .ops
            .settings(Some(SocketAddr::from(DEFAULT_METRICS_ADDR))),
    })
    .await?;

    let dev = Principal {
        user: UserId::parse("dev")?,
        project: ProjectId::parse("dev")?,
        roles: vec![Role::parse("admin")?],
        service: None,
    };
    let data_dir = args.data.data_dir.canonicalize()?;
    // A token is shown on a terminal only: an output kept as a log (a service manager's,
    // a container's) would hold a credential valid for hours.
    let token_line = if dev_tokens && std::io::stdout().is_terminal() {
        let token = stack.keys.issuer.issue(&dev, DEV_TOKEN_TTL, clock());
        format!(
            "A development token (user dev, project dev, role admin, valid 12 h):\
             \n  export KEYLEDGER_TOKEN={token}"
        )
    } else if dev_tokens {
        format!(
            "A development token (not shown: this output is no terminal, and may be kept):\
             \n  export KEYLEDGER_TOKEN=$(keyledger token issue --data-dir '{}' --user dev \
             --project dev --roles admin --ttl 12h)",
            data_dir.display()
        )
    } else {
        "Development tokens are off: use tokens from your identity provider.".to_owned()
    };
    let nats_line = match stack.nats_log() {
        Some(log) => format!(
            "{}  (managed nats-server; log {})",
            stack.client_url,
            log.display()
        ),
        None => format!("{}  (external)", infra::nats::redact(&stack.client_url)),
    };
    let auditor_line = match &stack.auditor_url {
        Some(url) => format!(
            "{}://{}:$(cat {})@{}  (read-only)",
            scheme_of(url),
            infra::server::AUDITOR_USER,
            data_dir
                .join(infra::server::AUDITOR_PASSWORD_FILE)
                .display(),
            url.rsplit('@').next().unwrap_or_default()
        ),
        None => "an account of your NATS server that may read the audited streams".to_owned(),
    };
    let rotation_line = match &stack.rotation_url {
        Some(url) => format!(
            "{}://{}:$(cat {})@{}  (serve keyledger.rotate.<handler>)",
            scheme_of(url),
            infra::server::ROTATION_USER,
            data_dir
                .join(infra::server::ROTATION_PASSWORD_FILE)
                .display(),
            url.rsplit('@').next().unwrap_or_default()
        ),
        None => "an account of your NATS server that may serve keyledger.rotate.>".to_owned(),
    };
    let ops_line = match stack.ops_addr {
        Some(addr) => format!("http://{addr}/metrics  (also /healthz, /readyz)"),
        None => "not served (the HTTP API answers /healthz and /readyz)".to_owned(),
    };
    let (scheme, trust_line, curl_ca) = match (&stack.api_tls, &dev_ca) {
        (false, _) => ("http", String::new(), String::new()),
        (true, Some(ca)) => {
            let ca = ca.canonicalize()?;
            let nats_note = if args.nats_tls_verify {
                format!(
                    "\n               nats-server verifies client certificates: sign yours with {}",
                    ca.with_file_name(keyledger::stack::dev_tls::CA_KEY)
                        .display()
                )
            } else {
                String::new()
            };
            (
                "https",
                format!(
                    "\n               TLS (HTTPS and NATS) with a development CA: trust it with\
                     \n                 export KEYLEDGER_CACERT={ca}  (the CLI over HTTPS)\
                     \n                 --nats-ca {ca}  (the CLI's NATS commands, e.g. audit)\
                     \n                 export REQUESTS_CA_BUNDLE={ca} AWS_CA_BUNDLE={ca}  (openstack, boto3, aws)\
                     \n                 nats --tlsca {ca}  (the NATS CLI){nats_note}",
                    ca = ca.display()
                ),
                format!(" --cacert {}", ca.display()),
            )
        }
        (true, None) => ("https", String::new(), String::new()),
    };
    let banner = format!(
        "keyledger is up.\n\
         \n  HTTP API     {scheme}://{http}  (Barbican v1: /v1/secrets){trust_line}\
         \n  NATS         {nats_line}\
         \n               commands: request/reply on keyledger.cmd.<name>, e.g. keyledger.cmd.secret.create;\
         \n               connect with your token as the NATS token, inbox prefix from `keyledger whoami`\
         \n  auditors     {auditor_line}\
         \n               checkpoints signed every {interval}; public key {public} in {public_file}\
         \n  rotation     {rotation_line}\
         \n  metrics      {ops_line}\
         \n  data         {data}  (read model {db})\
         \n\n{token_line}\
         \n\nTry:  curl -s{curl_ca} -H \"X-Auth-Token: $KEYLEDGER_TOKEN\" {scheme}://{http}/v1/secrets\
         \nStop with Ctrl-C.",
        http = stack.http_addr,
        data = data_dir.display(),
        db = stack.database_url,
        interval = humantime::format_duration(checkpoints.interval),
        public = stack.checkpoint_public_key,
        public_file = checkpoints.public_key_file().display(),
    );
    print_banner(&banner);

    let outcome = tokio::select! {
        r = stack.until_failure() => r,
        () = shutdown_signal() => Ok(()),
    };
    eprintln!("keyledger: stopping");
    stack.stop().await;
    outcome
}

/// With `--tls`, TLS on the managed nats-server's client port, with the development
/// CA's server certificate; this process's connections then trust that CA (and
/// present the development client certificate when the server verifies clients).
fn managed_nats_tls(args: &UpArgs) -> Result<Option<infra::server::ServerTls>> {
    if !args.tls {
        return Ok(None);
    }
    let data_dir = &args.data.data_dir;
    let (files, ca) = keyledger::stack::dev_tls::ensure(data_dir, args.http_addr)?;
    let client = if args.nats_tls_verify {
        Some(keyledger::stack::dev_tls::ensure_client(data_dir)?)
    } else {
        None
    };
    infra::nats::use_tls(infra::nats::NatsTls {
        ca: Some(ca.clone()),
        client,
    })
    .map_err(|e| anyhow::anyhow!("NATS TLS: {e}"))?;
    Ok(Some(infra::server::ServerTls {
        cert: files.cert,
        key: files.key,
        ca,
        verify: args.nats_tls_verify,
    }))
}

/// The scheme of a NATS URL (`nats` or `tls`).
fn scheme_of(url: &str) -> &str {
    url.split_once("://").map_or("nats", |(scheme, _)| scheme)
}

/// Prints where keyledger listens, for whoever started it. A reader that went away (a
/// closed pipe: `keyledger up | head`) must not stop keyledger: println! would panic.
pub fn print_banner(banner: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{banner}").and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "printing where keyledger listens failed");
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
