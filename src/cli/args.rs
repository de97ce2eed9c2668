//! Arguments shared by several commands.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use domain::secret::version::{Lifecycle, RecoveryWindow, Retention};
use infra::log::{DEFAULT_STREAM, LogSettings, MIN_DUPLICATE_WINDOW};

/// The data directory.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Data directory: keys, the managed nats-server's store, the SQLite read model.
    #[arg(long, env = "KEYLEDGER_DATA_DIR", default_value = ".keyledger")]
    pub data_dir: PathBuf,
}

/// Key files; by default inside the data directory.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Key-encryption key file (32 bytes, hex, mode 0600). Default: <data-dir>/kek.key.
    #[arg(long, env = "KEYLEDGER_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// Token signing key file (HS256, hex, mode 0600). Default: <data-dir>/token-hs256.key.
    #[arg(long, env = "KEYLEDGER_TOKEN_KEY_FILE")]
    pub token_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub commit_key: CommitKeyArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub pkcs11: Pkcs11Args,
}

/// The KEK in an HSM, through PKCS#11, instead of the KEK file.
#[derive(Debug, Clone, Args)]
pub struct Pkcs11Args {
    /// PKCS#11 module holding the KEK (an HSM's; SoftHSM2's for development), used
    /// instead of the KEK file. The KEK is created in the token on first use.
    #[arg(
        long,
        env = "KEYLEDGER_KEK_PKCS11_MODULE",
        requires = "kek_pkcs11_token_label"
    )]
    pub kek_pkcs11_module: Option<PathBuf>,
    /// The token's label.
    #[arg(
        long,
        env = "KEYLEDGER_KEK_PKCS11_TOKEN_LABEL",
        requires = "kek_pkcs11_module"
    )]
    pub kek_pkcs11_token_label: Option<String>,
    /// File holding the token's user PIN (else the variable KEYLEDGER_KEK_PKCS11_PIN;
    /// never a flag: the command line is visible to every local user).
    #[arg(long, env = "KEYLEDGER_KEK_PKCS11_PIN_FILE")]
    pub kek_pkcs11_pin_file: Option<PathBuf>,
    /// The KEK's label in the token.
    #[arg(long, env = "KEYLEDGER_KEK_PKCS11_KEY_LABEL", default_value = infra::kek::DEFAULT_KEY_LABEL)]
    pub kek_pkcs11_key_label: String,
}

impl Pkcs11Args {
    /// The HSM settings, when a module is named.
    pub fn settings(&self) -> anyhow::Result<Option<infra::kek::Pkcs11Settings>> {
        let (Some(module), Some(token_label)) =
            (&self.kek_pkcs11_module, &self.kek_pkcs11_token_label)
        else {
            return Ok(None);
        };
        let pin = match &self.kek_pkcs11_pin_file {
            Some(file) => infra::keyfile::private_text(file)
                .map_err(|e| anyhow::anyhow!("the PIN file: {e}"))?
                .trim()
                .to_owned(),
            None => std::env::var("KEYLEDGER_KEK_PKCS11_PIN").map_err(|_| {
                anyhow::anyhow!(
                    "the HSM's PIN: give --kek-pkcs11-pin-file FILE or set \
                     KEYLEDGER_KEK_PKCS11_PIN"
                )
            })?,
        };
        Ok(Some(infra::kek::Pkcs11Settings {
            module: module.clone(),
            token_label: token_label.clone(),
            pin: pin.into(),
            key_label: self.kek_pkcs11_key_label.clone(),
        }))
    }
}

/// The commit key: every component that writes or reads the log needs the same one.
#[derive(Debug, Clone, Args)]
pub struct CommitKeyArgs {
    /// Commit key file (32 bytes, hex, mode 0600): authenticates every commit, so
    /// readers ignore messages keyledger did not write. Every component needs the same
    /// file; keep it off the NATS hosts. Default: <data-dir>/commit.key.
    #[arg(long, env = "KEYLEDGER_COMMIT_KEY_FILE")]
    pub commit_key_file: Option<PathBuf>,
}

impl CommitKeyArgs {
    /// The existing key (readers never make one: theirs must be the writer's).
    pub fn load(&self, data: &DataDirArgs) -> anyhow::Result<domain::commit::CommitKey> {
        keyledger::stack::commit_key(&data.data_dir, self.commit_key_file.as_deref(), false)
    }

    /// The key of a tool that writes the log, created on first use.
    pub fn load_or_create(&self, data: &DataDirArgs) -> anyhow::Result<domain::commit::CommitKey> {
        std::fs::create_dir_all(&data.data_dir)?;
        keyledger::stack::commit_key(&data.data_dir, self.commit_key_file.as_deref(), true)
    }
}

/// Which tokens are accepted: an identity provider's, development tokens, or both.
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// The `iss` of the identity provider's tokens (required with its keys).
    #[arg(long, env = "KEYLEDGER_TOKEN_ISSUER")]
    pub token_issuer: Option<String>,
    /// The `aud` tokens must name.
    #[arg(long, env = "KEYLEDGER_TOKEN_AUDIENCE", default_value = infra::identity::AUDIENCE)]
    pub token_audience: String,
    /// The identity provider's keys as a JWKS file (Ed25519 for EdDSA, RSA for RS256).
    #[arg(long, env = "KEYLEDGER_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// An identity-provider public key in PEM, as PATH or KID=PATH; repeatable.
    #[arg(long = "token-public-key", value_name = "[KID=]PATH")]
    pub token_public_keys: Vec<String>,
    /// Accept development (HS256) tokens: default true, false once an identity provider
    /// is configured.
    #[arg(long, env = "KEYLEDGER_DEV_TOKENS")]
    pub dev_tokens: Option<bool>,
}

impl IdentityArgs {
    /// The identity settings these arguments describe.
    pub fn settings(&self) -> keyledger::stack::IdentitySettings {
        let public_keys = self
            .token_public_keys
            .iter()
            .map(|spec| match spec.split_once('=') {
                Some((kid, path)) => (Some(kid.to_owned()), PathBuf::from(path)),
                None => (None, PathBuf::from(spec)),
            })
            .collect();
        keyledger::stack::IdentitySettings {
            trust: infra::identity::TrustConfig {
                issuer: self.token_issuer.clone(),
                audience: self.token_audience.clone(),
                jwks_file: self.jwks_file.clone(),
                public_keys,
            },
            dev_tokens: self.dev_tokens,
        }
    }
}

impl KeyArgs {
    /// Loads (or creates) the keys; the commit key is created only by the log's
    /// `writer`.
    pub fn load(&self, data: &DataDirArgs, writer: bool) -> anyhow::Result<keyledger::stack::Keys> {
        std::fs::create_dir_all(&data.data_dir)?;
        keyledger::stack::Keys::load_or_create(
            &data.data_dir,
            &keyledger::stack::KeyFiles {
                kek: self.kek_file.clone(),
                token: self.token_key_file.clone(),
                commit: self.commit_key.commit_key_file.clone(),
                create_commit_key: writer,
                kek_pkcs11: self.pkcs11.settings()?,
            },
            &self.identity.settings(),
        )
    }
}

/// Signed checkpoints of the log.
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// Ed25519 key checkpoints are signed with (32 random bytes, hex, mode 0600),
    /// created on first use. Keep it off the NATS hosts. Its public key, for
    /// auditors, is written next to it with the extension .pub. Default:
    /// <data-dir>/checkpoint.key.
    #[arg(long, env = "KEYLEDGER_CHECKPOINT_KEY_FILE")]
    pub checkpoint_key_file: Option<PathBuf>,
    /// The key's name, which is also the checkpoints' origin, e.g.
    /// secrets.example.com/keyledger. Default: keyledger/<stream>.
    #[arg(long, env = "KEYLEDGER_CHECKPOINT_NAME")]
    pub checkpoint_name: Option<String>,
    /// How often a checkpoint is signed, if the log has grown.
    #[arg(long, env = "KEYLEDGER_CHECKPOINT_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub checkpoint_interval: Duration,
}

impl CheckpointArgs {
    /// The settings, with defaults for `data_dir` and `stream`.
    pub fn settings(
        &self,
        data_dir: &std::path::Path,
        stream: &str,
    ) -> commands::log::checkpoints::CheckpointSettings {
        let default = keyledger::stack::default_checkpoints(data_dir, stream);
        commands::log::checkpoints::CheckpointSettings {
            key_file: self.checkpoint_key_file.clone().unwrap_or(default.key_file),
            name: self.checkpoint_name.clone().unwrap_or(default.name),
            interval: self.checkpoint_interval,
        }
    }
}

/// The event stream.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Name of the JetStream event stream.
    #[arg(long, env = "KEYLEDGER_STREAM", default_value = DEFAULT_STREAM)]
    pub stream: String,
    /// Replicas of the stream and key bucket: 1 on one machine, 3 in a cluster.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
}

impl LogArgs {
    /// The log settings.
    pub fn settings(&self) -> LogSettings {
        LogSettings {
            stream: self.stream.clone(),
            replicas: self.replicas,
            duplicate_window: MIN_DUPLICATE_WINDOW,
        }
    }
}

/// Lifecycle rules: version retention, recovery windows, and the scheduler that
/// applies them.
#[derive(Debug, Clone, Args)]
pub struct LifecycleArgs {
    /// Versions a secret holds before its oldest deprecated ones are destroyed (at
    /// least 1).
    #[arg(
        long,
        env = "KEYLEDGER_KEEP_VERSIONS",
        default_value_t = 100,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub keep_versions: usize,
    /// The youngest a deprecated version may be when it is destroyed.
    #[arg(long, env = "KEYLEDGER_VERSION_MIN_AGE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub version_min_age: Duration,
    /// The shortest recovery window a deletion may ask for.
    #[arg(long, env = "KEYLEDGER_RECOVERY_WINDOW_MIN", default_value = "7d", value_parser = humantime::parse_duration)]
    pub recovery_window_min: Duration,
    /// The longest recovery window.
    #[arg(long, env = "KEYLEDGER_RECOVERY_WINDOW_MAX", default_value = "30d", value_parser = humantime::parse_duration)]
    pub recovery_window_max: Duration,
    /// The recovery window of a deletion that names none.
    #[arg(long, env = "KEYLEDGER_RECOVERY_WINDOW", default_value = "30d", value_parser = humantime::parse_duration)]
    pub recovery_window: Duration,
    /// How often the scheduler looks for expirations, ended recovery windows and
    /// versions to destroy.
    #[arg(long, env = "KEYLEDGER_SCHEDULER_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub scheduler_interval: Duration,
    /// How long a rotation handler has to answer one step.
    #[arg(long, env = "KEYLEDGER_ROTATION_STEP_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub rotation_step_timeout: Duration,
    /// Attempts at one rotation step before the rotation fails.
    #[arg(
        long,
        env = "KEYLEDGER_ROTATION_ATTEMPTS",
        default_value_t = 3,
        value_parser = clap::builder::RangedU64ValueParser::<u32>::new().range(1..=100)
    )]
    pub rotation_attempts: u32,
    /// The wait before a failed rotation step is tried again (doubling each time).
    #[arg(long, env = "KEYLEDGER_ROTATION_RETRY_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    pub rotation_retry_after: Duration,
}

impl LifecycleArgs {
    /// The rotation runner's timing; it looks as often as the scheduler.
    pub fn rotation(&self) -> commands::secret::rotation::RotationSettings {
        commands::secret::rotation::RotationSettings {
            interval: self.scheduler_interval,
            step_timeout: self.rotation_step_timeout,
            attempts: self.rotation_attempts,
            retry_after: self.rotation_retry_after,
        }
    }

    /// The rules, checked for consistency.
    pub fn lifecycle(&self) -> anyhow::Result<Lifecycle> {
        let recovery = RecoveryWindow {
            min: self.recovery_window_min,
            max: self.recovery_window_max,
            default: self.recovery_window,
        };
        if !(recovery.min <= recovery.default && recovery.default <= recovery.max) {
            anyhow::bail!(
                "--recovery-window ({:?}) must lie between --recovery-window-min ({:?}) and \
                 --recovery-window-max ({:?})",
                recovery.default,
                recovery.min,
                recovery.max
            );
        }
        Ok(Lifecycle {
            retention: Retention {
                keep: self.keep_versions,
                min_age: self.version_min_age,
            },
            recovery,
        })
    }
}

/// The order worker.
#[derive(Debug, Clone, Args)]
pub struct OrderArgs {
    /// Make the local CA answer as an unreachable CA would: certificate orders then fail
    /// with 503 after the retries. For trying the failure path, not for production.
    #[arg(long, env = "KEYLEDGER_LOCAL_CA_UNREACHABLE")]
    pub local_ca_unreachable: bool,
    /// Attempts at an unreachable CA before a certificate order fails.
    #[arg(long, default_value_t = 4)]
    pub ca_attempts: u32,
    /// The first pause between attempts; each next one doubles.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub ca_backoff: Duration,
}

impl OrderArgs {
    /// The worker's settings.
    pub fn settings(&self) -> keyledger::stack::OrderWorkerSettings {
        keyledger::stack::OrderWorkerSettings {
            ca_unreachable: self.local_ca_unreachable,
            retry: commands::order::worker::Retry {
                attempts: self.ca_attempts.max(1),
                backoff: self.ca_backoff,
            },
            hook: None,
        }
    }
}

/// The payload limit.
#[derive(Debug, Clone, Args)]
pub struct PayloadArgs {
    /// Largest payload accepted, in bytes (after base64 decoding); at most 512 KiB.
    #[arg(long, env = "KEYLEDGER_MAX_PAYLOAD_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(1..=512 * 1024))]
    pub max_payload_bytes: u32,
    /// Whether a payload read needs its access record stored (`required`: else 503)
    /// or not (`best-effort`: logged when it fails).
    #[arg(long, env = "KEYLEDGER_ACCESS_RECORDS", default_value = "required",
          value_parser = ["required", "best-effort"])]
    pub access_records: String,
}

impl PayloadArgs {
    /// Handler settings with this limit and `lifecycle`'s rules.
    pub fn handler(
        &self,
        lifecycle: &LifecycleArgs,
    ) -> anyhow::Result<commands::secret::HandlerConfig> {
        Ok(commands::secret::HandlerConfig {
            payload_limit: domain::secret::payload::PayloadLimit(self.max_payload_bytes as usize),
            lifecycle: lifecycle.lifecycle()?,
            ..Default::default()
        })
    }

    /// A request body limit that lets a payload at the limit through however its JSON
    /// string is escaped (botocore writes every non-ASCII character as a six-byte
    /// `\uXXXX`; a control character takes six bytes for one), so the command handler
    /// can answer an oversized one with a precise 413.
    fn body_limit(&self) -> usize {
        self.max_payload_bytes as usize * 6 + 64 * 1024
    }

    /// The HTTP API's settings for this limit, the log's replicas, an address, an
    /// optional public URL, the server's limits and its TLS files (`tls`, which may
    /// be generated ones rather than the flags').
    pub fn api_settings(
        &self,
        log: &LogArgs,
        addr: std::net::SocketAddr,
        public_url: Option<String>,
        http: &HttpArgs,
        tls: Option<infra::tls::ServerFiles>,
    ) -> anyhow::Result<keyledger::stack::ApiSettings> {
        if tls.is_none() && http.tls.tls_client_ca.is_some() {
            anyhow::bail!(
                "--tls-client-ca asks for client certificates, which need HTTPS: give \
                 --tls-cert and --tls-key (or --tls with `keyledger up`)"
            );
        }
        let tls = tls
            .map(api::tls::ServerTls::load)
            .transpose()
            .map_err(|e| anyhow::anyhow!("HTTPS: {e}"))?
            .map(std::sync::Arc::new);
        let client_principals = http
            .tls
            .tls_client_principals
            .as_deref()
            .map(api::client_cert::CertPrincipals::load)
            .transpose()?
            .map(std::sync::Arc::new);
        Ok(keyledger::stack::ApiSettings {
            addr,
            tls,
            allow_plain_http: http.tls.allow_plain_http,
            relay_changes: false,
            limits: api::ServerLimits {
                header_timeout: http.http_header_timeout,
                idle_timeout: http.http_idle_timeout,
                max_connections: http
                    .http_max_connections
                    .unwrap_or_else(api::default_max_connections),
            },
            config: api::ApiConfig {
                public_url,
                max_body_bytes: self.body_limit(),
                body_timeout: http.http_body_timeout,
                stream: log.stream.clone(),
                access_mode: if self.access_records == "best-effort" {
                    api::access_log::AccessMode::BestEffort
                } else {
                    api::access_log::AccessMode::Required
                },
                client_principals,
                ..Default::default()
            },
            replicas: log.replicas,
        })
    }
}

/// The HTTP server's limits (the defaults follow Vault/OpenBao's listener).
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Longest time a request's head may take to arrive, from its first byte.
    #[arg(long, env = "KEYLEDGER_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Duration,
    /// Longest time a request's body may take to arrive (408 after it).
    #[arg(long, env = "KEYLEDGER_HTTP_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http_body_timeout: Duration,
    /// Longest time a keep-alive connection may wait for its next request.
    #[arg(long, env = "KEYLEDGER_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub http_idle_timeout: Duration,
    /// Most connections at once; beyond it the longest-idle one is closed, or the
    /// newcomer gets 503. Default: the file-descriptor limit less 256, at most 16384.
    #[arg(long, env = "KEYLEDGER_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
}

/// How a client reaches the HTTP API.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the HTTP API (https://… when keyledger serves TLS).
    #[arg(long, env = "KEYLEDGER_URL", default_value = "http://127.0.0.1:9311")]
    pub url: String,
    /// Bearer token (see `keyledger token issue`). Not needed with a client
    /// certificate that keyledger maps to a principal (--client-cert).
    #[arg(
        long,
        env = "KEYLEDGER_TOKEN",
        hide_env_values = true,
        required_unless_present = "client_cert"
    )]
    pub token: Option<String>,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// How a client trusts keyledger's HTTPS certificate, and proves its own.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientTlsArgs {
    /// CA certificate (PEM) that signed keyledger's HTTPS certificate; default: the
    /// system's CAs. `keyledger up --tls` writes its CA to <data-dir>/tls/ca.pem.
    #[arg(long, env = "KEYLEDGER_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, env = "KEYLEDGER_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "KEYLEDGER_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// An HTTP client trusting `--cacert` (or the system's CAs) and presenting
    /// `--client-cert`, if given.
    pub fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        infra::tls::install_provider();
        let identity = infra::tls::ClientIdentityFiles::pair(
            self.client_cert.as_deref(),
            self.client_key.as_deref(),
        );
        let builder = reqwest::Client::builder();
        let builder = if self.cacert.is_some() || identity.is_some() {
            builder.tls_backend_preconfigured(infra::tls::client_config(
                self.cacert.as_deref(),
                identity.as_ref(),
            )?)
        } else {
            builder
        };
        Ok(builder.build()?)
    }
}

/// TLS for every NATS connection of the process (any subcommand).
#[derive(Debug, Clone, Default, Args)]
pub struct NatsTlsArgs {
    /// CA certificate (PEM) that signed the NATS servers' certificates: connections
    /// then require TLS (a tls:// URL, or nats:// upgraded). Default without it: no TLS
    /// unless the URL is tls:// (then the system's CAs).
    #[arg(long, global = true, env = "KEYLEDGER_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a NATS server that verifies clients (`verify`).
    #[arg(
        long,
        global = true,
        env = "KEYLEDGER_NATS_CERT",
        requires = "nats_key"
    )]
    pub nats_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "KEYLEDGER_NATS_KEY",
        requires = "nats_cert"
    )]
    pub nats_key: Option<PathBuf>,
}

impl NatsTlsArgs {
    /// The TLS settings these flags ask for, if any.
    pub fn settings(&self) -> Option<infra::nats::NatsTls> {
        let client = infra::tls::ClientIdentityFiles::pair(
            self.nats_cert.as_deref(),
            self.nats_key.as_deref(),
        );
        (self.nats_ca.is_some() || client.is_some()).then(|| infra::nats::NatsTls {
            ca: self.nats_ca.clone(),
            client,
        })
    }
}

/// HTTPS for the HTTP API.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerTlsArgs {
    /// Serve HTTPS with this certificate chain (PEM, leaf first); reloaded when the
    /// file changes or on SIGHUP.
    #[arg(long, env = "KEYLEDGER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "KEYLEDGER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Ask clients for a certificate signed by these CAs (PEM): mutual TLS.
    #[arg(long, env = "KEYLEDGER_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: refuse clients without a certificate.
    #[arg(
        long,
        env = "KEYLEDGER_TLS_REQUIRE_CLIENT_CERT",
        requires = "tls_client_ca"
    )]
    pub tls_require_client_cert: bool,
    /// JSON map from a client certificate's name (common name, DNS, URI or e-mail
    /// name) to {"user", "project", "roles", "service"?}: who a verified certificate
    /// without a token stands for.
    #[arg(
        long,
        env = "KEYLEDGER_TLS_CLIENT_PRINCIPALS",
        requires = "tls_client_ca"
    )]
    pub tls_client_principals: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback (refused without it: tokens
    /// and payloads would cross the network in the clear).
    #[arg(long, env = "KEYLEDGER_ALLOW_PLAIN_HTTP")]
    pub allow_plain_http: bool,
}

impl ServerTlsArgs {
    /// The files to serve, when HTTPS is asked for.
    pub fn files(&self) -> Option<infra::tls::ServerFiles> {
        let (cert, key) = (self.tls_cert.clone()?, self.tls_key.clone()?);
        Some(infra::tls::ServerFiles {
            cert,
            key,
            client_ca: self.tls_client_ca.clone(),
            require_client_cert: self.tls_require_client_cert,
        })
    }
}

/// Metrics and health: where a process reports on itself.
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// Where to serve /metrics (Prometheus), /healthz and /readyz, plain HTTP; `off`
    /// serves none (the API's port still answers /healthz and /readyz). `keyledger up`
    /// serves them on 127.0.0.1:9464 unless told otherwise (and without them, with a
    /// warning, if that port is taken).
    #[arg(long, env = "KEYLEDGER_METRICS_ADDR", value_parser = parse_ops_addr)]
    pub metrics_addr: Option<OpsAddr>,
    /// Label command and payload-read metrics by project: one series per project, so
    /// only where projects are few.
    #[arg(long, env = "KEYLEDGER_METRICS_PROJECT_LABELS")]
    pub metrics_project_labels: bool,
    /// The read model may lag the log by this many commits and stay ready (/readyz).
    #[arg(long, env = "KEYLEDGER_READY_MAX_LAG", default_value_t = infra::health::DEFAULT_MAX_LAG)]
    pub ready_max_lag: u64,
}

/// `--metrics-addr`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
pub enum OpsAddr {
    /// Not served.
    Off,
    /// Served here.
    At(std::net::SocketAddr),
}

fn parse_ops_addr(s: &str) -> Result<OpsAddr, String> {
    if s == "off" {
        return Ok(OpsAddr::Off);
    }
    s.parse()
        .map(OpsAddr::At)
        .map_err(|e| format!("{e}: give an address such as 127.0.0.1:9464, or off"))
}

impl OpsArgs {
    /// The settings, serving on `default` when no address was given.
    pub fn settings(
        &self,
        default: Option<std::net::SocketAddr>,
    ) -> keyledger::stack::ops::OpsSettings {
        keyledger::stack::ops::OpsSettings {
            addr: match self.metrics_addr {
                None => default,
                Some(OpsAddr::Off) => None,
                Some(OpsAddr::At(addr)) => Some(addr),
            },
            default_addr: self.metrics_addr.is_none(),
            project_labels: self.metrics_project_labels,
            max_lag: self.ready_max_lag,
        }
    }
}
