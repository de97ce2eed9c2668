//! A PostgreSQL server keyledger starts itself, for `keyledger cluster` and the tests:
//! Debian's `postgresql` binaries, a database cluster initialised in a temporary
//! directory (removed when the server is dropped: the read model is rebuilt from the
//! log), reachable only through its Unix socket in that directory, which only the
//! user running it (and root) can enter: it trusts whoever connects, so it listens on
//! no TCP port, where every local user could. Nobody sets it up by hand. For tests of
//! TLS, [`ManagedPostgres::start_with_tls`] also listens on 127.0.0.1, for TLS
//! connections with client certificates only.
//!
//! PostgreSQL refuses to run as root; started by root, the server runs as the
//! `postgres` user the Debian package creates, and the directory is given to it (a
//! temporary directory under the world-traversable temp dir, which that user can
//! reach, unlike a directory inside root's private ones).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::server::die_with_parent;

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// No PostgreSQL binaries were found.
    #[error(
        "no PostgreSQL server binaries (initdb, postgres) were found in {0}; install Debian's \
         `postgresql` package (apt-get install postgresql) or set KEYLEDGER_PG_BIN to their \
         directory"
    )]
    NoBinaries(String),
    /// Root, but no `postgres` user to run the server as.
    #[error(
        "PostgreSQL does not run as root, and there is no `postgres` user to run it as; \
         install Debian's `postgresql` package, which creates it, or run as another user"
    )]
    NoUser,
    /// A step failed.
    #[error("{step}: {detail}")]
    Failed {
        /// What was being done.
        step: String,
        /// What went wrong (the tool's output, or the I/O error).
        detail: String,
    },
}

fn failed(step: impl Into<String>, detail: impl ToString) -> PostgresError {
    PostgresError::Failed {
        step: step.into(),
        detail: detail.to_string(),
    }
}

/// The database and role keyledger's URL names.
pub const DATABASE: &str = "keyledger";

/// A running PostgreSQL server. Dropping it kills the process; [`Self::stop`] shuts it
/// down cleanly.
#[derive(Debug)]
pub struct ManagedPostgres {
    child: Child,
    _dir: tempfile::TempDir,
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    /// Whether it also listens on 127.0.0.1 (TLS only, [`Self::start_with_tls`]).
    tcp: bool,
}

/// The certificate a server started by [`ManagedPostgres::start_with_tls`] presents,
/// and the CA whose certificates it asks clients for.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// A client over TCP logs in with a certificate this CA signed whose common name is
    /// its role (PostgreSQL's `cert` authentication): the listener is on 127.0.0.1,
    /// which every local user can reach, so it trusts no one without one.
    pub client_ca: PathBuf,
}

/// How the server is reached and whom it trusts.
enum Access<'a> {
    /// Its socket; every role trusted.
    Socket,
    /// Its socket; roles other than keyledger's log in with their passwords.
    Passwords,
    /// Its socket, and TLS on 127.0.0.1.
    Tls(&'a ServerTls),
}

impl ManagedPostgres {
    /// Initialises a database cluster in a new temporary directory and starts a server
    /// for it, with a database and a role named `keyledger`, on a Unix socket in that
    /// directory named after `port` (`.s.PGSQL.<port>`; no TCP listener).
    pub async fn start(port: u16) -> Result<Self, PostgresError> {
        Self::start_with(port, Access::Socket).await
    }

    /// As [`Self::start`], but every role other than `keyledger` logs in with its
    /// password (SCRAM), as a production server asks: for tests of what a password
    /// change does.
    pub async fn start_checking_passwords(port: u16) -> Result<Self, PostgresError> {
        Self::start_with(port, Access::Passwords).await
    }

    /// As [`Self::start`], and also listening on 127.0.0.1:`port` for TLS connections
    /// with client certificates only (`hostssl … cert`; a plain one finds no
    /// `pg_hba.conf` line), presenting `tls`'s certificate: as a PostgreSQL on another
    /// machine would be reached.
    pub async fn start_with_tls(port: u16, tls: &ServerTls) -> Result<Self, PostgresError> {
        Self::start_with(port, Access::Tls(tls)).await
    }

    async fn start_with(port: u16, access: Access<'_>) -> Result<Self, PostgresError> {
        let bin = bin_dir()?;
        let user = server_user()?;
        let dir = tempfile::Builder::new()
            .prefix("keyledger-postgres-")
            .tempdir()
            .map_err(|e| failed("creating a temporary directory", e))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| failed("giving the temporary directory to the postgres user", e))?;
        }
        let data = dir.path().join("data");
        // The C locale sorts text by code point, as SQLite does, so both read models
        // list secrets in one order. Without fsync during initdb: a crash then leaves
        // nothing worth keeping anyway; the server itself syncs as usual.
        let mut initdb = command(&bin, "initdb", user);
        initdb.arg("-D").arg(&data).args([
            "-U",
            DATABASE,
            "--auth=trust",
            "--locale=C",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(initdb, "initdb").await?;
        match access {
            Access::Socket => {}
            Access::Passwords => write_hba(
                &data,
                &format!("local all {DATABASE} trust\nlocal all all scram-sha-256\n"),
            )?,
            Access::Tls(tls) => serve_tls(&data, tls, user)?,
        }
        let tcp = matches!(access, Access::Tls(_));
        let mut server = Self {
            child: spawn(&bin, &data, port, user, tcp)?,
            _dir: dir,
            bin,
            data,
            port,
            user,
            tcp,
        };
        server.wait_ready().await?;
        server.create_database().await?;
        Ok(server)
    }

    /// The URL of keyledger's database on this server (through its socket).
    pub fn url(&self) -> String {
        format!(
            "postgres://{DATABASE}@localhost/{DATABASE}?host={}&port={}",
            self.data.display(),
            self.port
        )
    }

    /// The port of its socket's name, and of its TLS listener if it has one.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.data.join(format!(".s.PGSQL.{}", self.port))
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Shuts the server down ("fast": open sessions are ended, not waited for) and
    /// waits for it; kills it after 10 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped) and
            // a valid signal number has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Keeps the server running until `shutdown`, as an orchestrator would: when it
    /// dies (a crash, kill -9) it is started again on the same port and data, and
    /// PostgreSQL's crash recovery brings back every committed transaction.
    pub async fn supervise(mut self, shutdown: CancellationToken) -> Result<(), PostgresError> {
        loop {
            let status = tokio::select! {
                () = shutdown.cancelled() => {
                    self.stop().await;
                    return Ok(());
                }
                status = self.child.wait() => status,
            };
            let why = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            tracing::error!(status = %why, "postgres exited; starting it again");
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                started = self.start_again() => started?,
            }
            tracing::info!(port = self.port, "postgres is running again");
        }
    }

    /// Starts the server again after it died. The backends of a killed postmaster
    /// linger a moment, holding its shared memory, and a new postmaster refuses to
    /// start until they are gone: so it is tried again, for at most 60 s.
    async fn start_again(&mut self) -> Result<(), PostgresError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.child = spawn(&self.bin, &self.data, self.port, self.user, self.tcp)?;
            match self.wait_ready().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Polls `pg_isready` until the server accepts connections (crash recovery after a
    /// kill takes a moment), for at most 60 s; fails at once if the server exits.
    async fn wait_ready(&mut self) -> Result<(), PostgresError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(failed(
                    "starting postgres",
                    format!(
                        "it exited ({status}); see {}",
                        self.data.join("postgres.log").display()
                    ),
                ));
            }
            let mut ready = command(&self.bin, "pg_isready", self.user);
            ready
                .args(["-q", "-h"])
                .arg(&self.data)
                .args(["-p", &self.port.to_string()]);
            if ready.status().await.is_ok_and(|s| s.success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failed("starting postgres", "not ready within 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates keyledger's database unless it exists.
    async fn create_database(&self) -> Result<(), PostgresError> {
        let mut psql = command(&self.bin, "psql", self.user);
        psql.arg("-h")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-U", DATABASE])
            .args(["-d", "postgres", "-tAc"])
            .arg(format!(
                "SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"
            ));
        let out = output(psql, "looking up the keyledger database").await?;
        if out.trim() != "1" {
            let mut createdb = command(&self.bin, "createdb", self.user);
            createdb
                .arg("-h")
                .arg(&self.data)
                .args(["-p", &self.port.to_string(), "-U", DATABASE])
                .arg(DATABASE);
            run(createdb, "createdb").await?;
        }
        Ok(())
    }
}

/// Where the PostgreSQL binaries are: `KEYLEDGER_PG_BIN`, else Debian's newest
/// `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> Result<PathBuf, PostgresError> {
    if let Some(dir) = std::env::var_os("KEYLEDGER_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").is_file() {
            Ok(dir)
        } else {
            Err(PostgresError::NoBinaries(dir.display().to_string()))
        };
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    newest
        .map(|(_, bin)| bin)
        .ok_or_else(|| PostgresError::NoBinaries(root.join("<version>/bin").display().to_string()))
}

/// The user the server runs as: none (this one) unless this is root, then `postgres`.
fn server_user() -> Result<Option<(u32, u32)>, PostgresError> {
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if !matches!(uid, Ok(0)) {
        return Ok(None);
    }
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| failed("reading /etc/passwd", e))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .map(Some)
        .ok_or(PostgresError::NoUser)
}

fn command(bin: &Path, tool: &str, user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(bin.join(tool));
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command.stdin(Stdio::null());
    command
}

fn write_hba(data: &Path, lines: &str) -> Result<(), PostgresError> {
    std::fs::write(data.join("pg_hba.conf"), lines).map_err(|e| failed("writing pg_hba.conf", e))
}

/// Copies `tls`'s files into the data directory, where the server's user owns them
/// (PostgreSQL refuses a key that others can read), and turns TLS on for TCP clients:
/// a `hostssl` line only, so a plain connection is refused, with `cert`
/// authentication.
fn serve_tls(data: &Path, tls: &ServerTls, user: Option<(u32, u32)>) -> Result<(), PostgresError> {
    let copy = |from: &Path, name: &str| -> Result<(), PostgresError> {
        let to = data.join(name);
        let step = || format!("copying {} into the server's directory", from.display());
        std::fs::copy(from, &to).map_err(|e| failed(step(), e))?;
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| failed(step(), e))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&to, Some(uid), Some(gid)).map_err(|e| failed(step(), e))?;
        }
        Ok(())
    };
    copy(&tls.cert, "server.crt")?;
    copy(&tls.key, "server.key")?;
    copy(&tls.client_ca, "client-ca.crt")?;
    let conf = "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                ssl_ca_file = 'client-ca.crt'\n";
    let mut file = std::fs::File::options()
        .append(true)
        .open(data.join("postgresql.conf"))
        .map_err(|e| failed("opening postgresql.conf", e))?;
    std::io::Write::write_all(&mut file, conf.as_bytes())
        .map_err(|e| failed("writing postgresql.conf", e))?;
    write_hba(
        data,
        "local all all trust\nhostssl all all 127.0.0.1/32 cert\n",
    )
}

fn spawn(
    bin: &Path,
    data: &Path,
    port: u16,
    user: Option<(u32, u32)>,
    tcp: bool,
) -> Result<Child, PostgresError> {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(data.join("postgres.log"))
        .map_err(|e| failed("opening postgres.log", e))?;
    let mut server = command(bin, "postgres", user);
    server
        .arg("-D")
        .arg(data)
        // Its socket, in its own directory (not /var/run/postgresql), named after the
        // port; a TCP listener only on loopback, and only for TLS ([`serve_tls`]).
        .arg("-c")
        .arg(if tcp {
            "listen_addresses=127.0.0.1"
        } else {
            "listen_addresses="
        })
        .args(["-p", &port.to_string()])
        .arg("-k")
        .arg(data)
        .stdout(
            log.try_clone()
                .map_err(|e| failed("opening postgres.log", e))?,
        )
        .stderr(log)
        .kill_on_drop(true);
    die_with_parent(&mut server);
    server.spawn().map_err(|e| failed("starting postgres", e))
}

async fn output(mut command: Command, step: &str) -> Result<String, PostgresError> {
    let out = command.output().await.map_err(|e| failed(step, e))?;
    if !out.status.success() {
        return Err(failed(step, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn run(command: Command, step: &str) -> Result<(), PostgresError> {
    output(command, step).await.map(drop)
}
