//! Opening the read model: SQLite (the embedded default: WAL journal, so readers never
//! block the projector, and a busy timeout) or PostgreSQL, each with its schema
//! migrations embedded in the binary (`migrations/` and `migrations/postgres/`).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _, PgPool, SqlSafeStr};

pub use crate::sqlite_reads::{Held, SqliteReads};
use crate::writer::{Writer, WriterSizes};

/// Why the read model could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is not a read model URL (shown without any password).
    #[error(
        "database URL {0:?} is not valid; use sqlite://<path> (e.g. \
         sqlite://.keyledger/readmodel.sqlite) or postgres://<user>@<host>:<port>/<database> \
         (a libpq key/value string is not read: write it as such a URL)"
    )]
    BadUrl(String),
    /// PostgreSQL failed.
    #[error("opening the read model {url}: {}", crate::pg_error::Described(.cause))]
    Postgres {
        /// The URL, without its password.
        url: String,
        /// The cause: shown through `Described`, so not the error's source (sqlx's own
        /// text, which a chain of causes would add, says "at line N").
        cause: sqlx::Error,
    },
    /// SQLite failed.
    #[error("opening the read model {url}: {source}")]
    Sqlite {
        /// The URL.
        url: String,
        /// The cause.
        source: sqlx::Error,
    },
    /// The migration lock could not be taken.
    #[error("locking {path} to migrate the read model: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The URL names no file the projector's writer can open.
    #[error(
        "the projector writes a SQLite file or a PostgreSQL database, and {0:?} names \
         neither; use sqlite://<path> (e.g. sqlite://.keyledger/readmodel.sqlite) or \
         postgres://<user>@<host>:<port>/<database>"
    )]
    NotAFile(String),
    /// A TLS parameter of the URL is refused before connecting.
    #[error("the read model's URL {url}: {source}")]
    TlsParameter {
        /// The URL, without its password.
        url: String,
        /// What is wrong.
        source: crate::pg_tls::TlsParameterError,
    },
    /// The writer's connection could not be opened.
    #[error("opening the read model {url} for writing: {source}")]
    Writer {
        /// The URL.
        url: String,
        /// The cause.
        source: crate::writer::WriteError,
    },
    /// The migrations table could not be read.
    #[error(
        "reading the migrations of the read model {url} (table _sqlx_migrations; a role \
         that only reads needs SELECT on it too): {}",
        crate::pg_error::Described(.cause)
    )]
    Migrations {
        /// The URL, without its password.
        url: String,
        /// The cause (shown, not the source, as for `Postgres`).
        cause: sqlx::Error,
    },
    /// The connection's schema holds no read model, and another schema does.
    #[error(
        "the read model {url} has no tables in its schema (search_path, `public` unless the \
         URL names another), but schema {schemas} holds a keyledger read model; to use it, \
         add options=-c%20search_path%3D{example} to the URL"
    )]
    Elsewhere {
        /// The URL, without its password.
        url: String,
        /// The schemas that hold one.
        schemas: String,
        /// One of them.
        example: String,
    },
    /// A migration failed.
    #[error("migrating the read model {url}: {}", crate::pg_error::migration(.cause))]
    Migrate {
        /// The URL.
        url: String,
        /// The cause (shown, not the source, as for `Postgres`).
        cause: sqlx::migrate::MigrateError,
    },
}

fn migration(version: i64, name: &str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        name.to_owned().into(),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )
}

/// The PostgreSQL read model's migrations: a baseline at SQLite's version 9, then one
/// for each later SQLite migration, with its version and name.
fn postgres_migrator() -> Migrator {
    Migrator::with_migrations(vec![
        migration(
            9,
            "baseline",
            include_str!("../migrations/postgres/0009_baseline.sql"),
        ),
        migration(
            10,
            "access_keys",
            include_str!("../migrations/postgres/0010_access_keys.sql"),
        ),
        migration(
            11,
            "rotation",
            include_str!("../migrations/postgres/0011_rotation.sql"),
        ),
        migration(
            12,
            "description",
            include_str!("../migrations/postgres/0012_description.sql"),
        ),
        migration(
            13,
            "project_quotas",
            include_str!("../migrations/postgres/0013_project_quotas.sql"),
        ),
        migration(
            14,
            "payloads_in_rowid_table",
            include_str!("../migrations/postgres/0014_payloads_in_rowid_table.sql"),
        ),
    ])
}

/// The SQLite read model's migrations.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        migration(1, "secrets", include_str!("../migrations/0001_secrets.sql")),
        migration(2, "acls", include_str!("../migrations/0002_acls.sql")),
        migration(
            3,
            "lifecycle",
            include_str!("../migrations/0003_lifecycle.sql"),
        ),
        migration(
            4,
            "containers",
            include_str!("../migrations/0004_containers.sql"),
        ),
        migration(
            5,
            "secret_consumers",
            include_str!("../migrations/0005_secret_consumers.sql"),
        ),
        migration(6, "orders", include_str!("../migrations/0006_orders.sql")),
        migration(
            7,
            "commit_heads",
            include_str!("../migrations/0007_commit_heads.sql"),
        ),
        migration(
            8,
            "acl_and_consumer_times",
            include_str!("../migrations/0008_acl_and_consumer_times.sql"),
        ),
        migration(
            9,
            "partial_due_indexes",
            include_str!("../migrations/0009_partial_due_indexes.sql"),
        ),
        migration(
            10,
            "access_keys",
            include_str!("../migrations/0010_access_keys.sql"),
        ),
        migration(
            11,
            "rotation",
            include_str!("../migrations/0011_rotation.sql"),
        ),
        migration(
            12,
            "description",
            include_str!("../migrations/0012_description.sql"),
        ),
        migration(
            13,
            "project_quotas",
            include_str!("../migrations/0013_project_quotas.sql"),
        ),
        migration(
            14,
            "payloads_in_rowid_table",
            include_str!("../migrations/0014_payloads_in_rowid_table.sql"),
        ),
    ])
}

/// The indexes of the SQLite read model that a rebuild into a new file builds once at
/// its end rather than row by row ([`crate::writer::Writer::clear`]), each with its
/// `CREATE INDEX` statement: every index the migrations create by name. None is
/// `UNIQUE` (a unit test holds that), so no write depends on one; the projection's
/// own statements find rows by their primary keys, which stay.
pub(crate) fn deferred_indexes() -> Result<Vec<(String, String)>, rusqlite::Error> {
    // The schema as the migrations leave it, in memory: the file's own lacks what a
    // rebuild dropped.
    let schema = rusqlite::Connection::open_in_memory()?;
    for m in migrator().iter() {
        schema.execute_batch(m.sql.as_str())?;
    }
    schema
        .prepare(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
             ORDER BY name",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect()
}

/// The file behind a `sqlite://` URL, if it names one.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// The lock file `<database>.<purpose>.lock` of the SQLite database at `db`, named
/// after the file SQLite opens: through symbolic links and relative paths, two
/// processes that open one database take one lock.
pub(crate) fn lock_path(db: &Path, purpose: &str) -> PathBuf {
    // A link is followed even to a database not created yet, to where SQLite will
    // create it; then the directory is resolved.
    let mut file = db.to_owned();
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(&file) else {
            break;
        };
        file = file.parent().unwrap_or(Path::new(".")).join(target);
    }
    let real = match (file.parent(), file.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir).map_or_else(|_| file.clone(), |dir| dir.join(name))
        }
        _ => file,
    };
    PathBuf::from(format!("{}.{purpose}.lock", real.display()))
}

/// `url` as it may be shown (in an error, a log line, a report): with its password,
/// and any `password` or `sslpassword` parameter, replaced by `***`. A URL that does not
/// parse is shown only up to its scheme, since where its password is cannot be known.
pub fn without_password(url: &str) -> String {
    // Not a URL with an authority (a libpq key/value string, `postgres:user:pw@host`
    // without its `//`): its parts cannot be told apart, so none of it is shown where
    // a password may be.
    let parsed = url::Url::parse(url)
        .ok()
        .filter(|u| u.has_authority() || u.scheme() == "sqlite");
    let Some(mut parsed) = parsed else {
        let risky = url.contains('@') || url.to_ascii_lowercase().contains("password");
        return match url.split_once(':') {
            _ if !risky => url.to_owned(),
            Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => {
                format!("{scheme}:… (not a valid URL; not shown, as it may hold a password)")
            }
            _ => "… (not a valid URL; not shown, as it may hold a password)".to_owned(),
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    // `password`, `sslpassword`, any misspelling a user may have meant as one, a key
    // pasted in where its file's path goes, and on PostgreSQL any parameter sqlx does
    // not read (a password under another name: `passwd`).
    let postgres = is_postgres(url);
    let secret = |k: &str, v: &str| {
        k.to_ascii_lowercase().contains("password")
            || crate::pg_tls::holds_pem(v)
            || (postgres && !crate::pg_tls::is_read(k))
    };
    if parsed.query_pairs().any(|(k, v)| secret(&k, &v)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k, &v) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// The `sqlite://` URL of a file.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A read model's connection pool.
#[derive(Debug, Clone)]
pub enum Pool {
    /// An embedded SQLite file.
    Sqlite(SqliteReads),
    /// A PostgreSQL database.
    Postgres(PgPool),
}

impl Pool {
    /// Closes every idle connection, and each in use once it is given back.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// What the projector writes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(Box<PgConnectOptions>),
}

/// What the projector would write for `url`, or why `url` names nothing it can write.
pub fn target(url: &str) -> Result<Target, OpenError> {
    if is_postgres(url) {
        return postgres_options(url).map(|o| Target::Postgres(Box::new(o)));
    }
    sqlite_path(url)
        .map(Target::Sqlite)
        .ok_or_else(|| OpenError::NotAFile(without_password(url)))
}

/// The schema the PostgreSQL read model lives in unless the URL names another (with
/// `options=-c search_path=<schema>`).
pub const POSTGRES_SCHEMA: &str = "public";

/// The connect options of `url`, with `search_path` pinned for every connection
/// keyledger opens (projector, migrations, readers, the checkpoint listener).
/// PostgreSQL's default, `"$user", public`, resolves differently once a schema named
/// after the role appears: a component started after that would find no migrations
/// table there, create a second, empty read model in it, and read from that one.
fn postgres_options(url: &str) -> Result<PgConnectOptions, OpenError> {
    let (options, named) = parsed_postgres_url(url)?;
    Ok(pinned(options, named))
}

/// `options` with `search_path` pinned to [`POSTGRES_SCHEMA`] unless the URL `named`
/// one.
fn pinned(options: PgConnectOptions, named: bool) -> PgConnectOptions {
    if named {
        return options;
    }
    options.options([("search_path", POSTGRES_SCHEMA)])
}

/// `url`'s connect options as sqlx reads them, checked first (it logs what it does
/// not read, values included: [`crate::pg_tls::prepare`]), and whether they name a
/// `search_path`.
fn parsed_postgres_url(url: &str) -> Result<(PgConnectOptions, bool), OpenError> {
    let prepared = crate::pg_tls::prepare(url).map_err(|source| OpenError::TlsParameter {
        url: without_password(url),
        source,
    })?;
    let mut options = PgConnectOptions::from_str(&prepared)
        .map_err(|_| OpenError::BadUrl(without_password(url)))?;
    // An IPv6 address as a URL writes it, `[::1]`: sqlx would look the brackets up as
    // a name.
    if let Some(ip) = options
        .get_host()
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .map(str::to_owned)
    {
        options = options.host(&ip);
    }
    crate::pg_tls::warn_if_unverified(&options);
    let named = names_search_path(&options);
    Ok((options, named))
}

/// Whether the URL's options set `search_path` (`-c search_path=…`,
/// `--search-path=…`, `options[search_path]=…`, in any case).
fn names_search_path(options: &PgConnectOptions) -> bool {
    options.get_options().is_some_and(|o| {
        o.to_ascii_lowercase()
            .replace('-', "_")
            .contains("search_path")
    })
}

/// Opens (creating if needed) and migrates the read model at `url`.
pub async fn open(url: &str, max_connections: u32) -> Result<Pool, OpenError> {
    // sqlx would take anything else for a SQLite file's name (a libpq key/value
    // string, password and all, or a URL with a misspelt scheme).
    if !is_postgres(url) && !url.starts_with("sqlite:") {
        return Err(OpenError::BadUrl(without_password(url)));
    }
    if is_postgres(url) {
        open_postgres(url, max_connections)
            .await
            .map(Pool::Postgres)
    } else {
        open_sqlite(url, max_connections).await.map(Pool::Sqlite)
    }
}

/// Opens and migrates the PostgreSQL read model at `url` (sqlx serializes concurrent
/// migrations with an advisory lock of its own).
async fn open_postgres(url: &str, max_connections: u32) -> Result<PgPool, OpenError> {
    let shown = without_password(url);
    // Read once: checking the URL reads its certificate files.
    let (options, named) = parsed_postgres_url(url)?;
    let options = pinned(options, named);
    first_connection(&options, FIRST_CONNECTION)
        .await
        .map_err(|cause| OpenError::Postgres {
            url: shown.clone(),
            cause,
        })?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        // A read waiting for a connection while PostgreSQL is away answers 503 within
        // this, not sqlx's default 30 s (a query holds a connection for milliseconds).
        .acquire_timeout(READ_ACQUIRE)
        .connect_with(options)
        .await
        .map_err(|cause| OpenError::Postgres {
            url: shown.clone(),
            cause,
        })?;
    let migrator = postgres_migrator();
    // A reader (an API replica) may connect as a role that can only read: it needs
    // no migration once the projector's role has run them all, unchanged, and running
    // them would fail on the migrations table's CREATE ... IF NOT EXISTS.
    let applied: Vec<(i64, Vec<u8>)> = match sqlx::query_as(
        "SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(&pool)
    .await
    {
        Ok(applied) => applied,
        // No such table yet: nothing is migrated.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
        Err(cause) => {
            return Err(OpenError::Migrations { url: shown, cause });
        }
    };
    let embedded: Vec<(i64, Vec<u8>)> = migrator
        .iter()
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect();
    if applied == embedded {
        return Ok(pool);
    }
    // A schema the URL names is the operator's choice: a read model is created there.
    if applied.is_empty() && !named {
        elsewhere(&pool, &shown).await?;
    }
    // Anything else (older migrations, a changed or a newer one) is for sqlx to
    // migrate or to refuse.
    migrator
        .run(&pool)
        .await
        .map_err(|cause| OpenError::Migrate { url: shown, cause })?;
    Ok(pool)
}

/// How long a read waits for one of the pool's connections.
const READ_ACQUIRE: Duration = Duration::from_secs(5);

/// How long a reader's first connection is tried while PostgreSQL refuses it for a
/// while (as sqlx's pool would, for its acquire timeout).
const FIRST_CONNECTION: Duration = Duration::from_secs(30);

/// Makes one connection, tried again within `patience` while the server is not
/// listening yet, starting up or at its connection limit (a compose or Kubernetes
/// start, a restart). sqlx's pool does the same but then says only that it timed out;
/// this says why, and fails at once on what a retry does not mend (a login or TLS
/// refused, a host that does not resolve).
async fn first_connection(
    options: &PgConnectOptions,
    patience: Duration,
) -> Result<(), sqlx::Error> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = Duration::from_millis(100);
    loop {
        match crate::writer::connect(options).await {
            Ok(conn) => {
                conn.close().await.ok();
                return Ok(());
            }
            Err(e) if passing(&e) && tokio::time::Instant::now() + pause < deadline => {
                tracing::info!(error = %crate::pg_error::Described(&e), retry_in = ?pause, "PostgreSQL is not taking connections yet; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a failed connection may succeed shortly: nothing listening yet (or no
/// socket file yet), the server starting up (`57P03`) or at its connection limit
/// (`53300`), the errors sqlx's pool retries.
fn passing(e: &sqlx::Error) -> bool {
    match e {
        // Refused over TCP; no socket file yet for a Unix socket.
        sqlx::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        ),
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("57P03" | "53300")),
        _ => false,
    }
}

/// Refuses to create a read model in `public` (the schema of a URL that names none)
/// when one already lives in another schema: a deployment from before `search_path`
/// was pinned may have its tables in a schema named after its role (PostgreSQL's
/// default path), and a second, empty read model beside it would hide every secret
/// until rebuilt.
async fn elsewhere(pool: &PgPool, shown: &str) -> Result<(), OpenError> {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = '_sqlx_migrations' AND c.relkind = 'r' \
         AND n.nspname <> current_schema() ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .map_err(|cause| OpenError::Postgres {
        url: shown.to_owned(),
        cause,
    })?;
    match schemas.first() {
        None => Ok(()),
        Some(schema) => Err(OpenError::Elsewhere {
            url: shown.to_owned(),
            schemas: schemas.join(", "),
            example: schema.clone(),
        }),
    }
}

/// Opens (creating if needed) and migrates the SQLite read model at `url`.
async fn open_sqlite(url: &str, max_connections: u32) -> Result<SqliteReads, OpenError> {
    let failed = |source| OpenError::Sqlite {
        url: url.to_owned(),
        source,
    };
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|_| OpenError::BadUrl(without_password(url)))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL keeps the database consistent across crashes; the log, not
        // the read model, is the durable record, and a lost tail is re-applied from it.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    // A projector and an API process open the same file, and sqlx takes no migration
    // lock on SQLite: a file lock makes one migrate while the other waits. Migrated
    // through a pool of one connection, closed once done (`Migrator::run` on a borrowed
    // connection is not provably `Send` in a spawned task).
    let migrations = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .map_err(failed)?;
    {
        let _lock = match sqlite_path(url) {
            Some(db) => Some(migration_lock(db).await?),
            None => None,
        };
        migrator()
            .run(&migrations)
            .await
            .map_err(|cause| OpenError::Migrate {
                url: url.to_owned(),
                cause,
            })?;
    }
    migrations.close().await;
    let first = options.connect().await.map_err(failed)?;
    Ok(SqliteReads::new(options, max_connections, first))
}

/// Opens (creating and migrating if needed) the read model at `url` for the
/// projector: its single writer ([`Writer`]), with a page cache and a WAL of `sizes` on
/// SQLite. On PostgreSQL the writer takes the read model's advisory lock, and fails
/// if another projector holds it; on SQLite the caller holds the file lock
/// ([`crate::projector::lock`]).
pub async fn open_writer(url: &str, sizes: WriterSizes) -> Result<Writer, OpenError> {
    let writer_error = |source| OpenError::Writer {
        url: without_password(url),
        source,
    };
    match target(url)? {
        Target::Sqlite(path) => {
            open(url, 1).await?.close().await;
            // Opening may build indexes an interrupted rebuild left out (seconds for a
            // million secrets): off the runtime's threads.
            tokio::task::spawn_blocking(move || Writer::open(&path, sizes))
                .await
                .map_err(|e| writer_error(crate::writer::WriteError::Stopped(e.to_string())))?
                .map_err(writer_error)
        }
        Target::Postgres(options) => {
            let writer = Writer::open_postgres(*options, false)
                .await
                .map_err(writer_error)?;
            open(url, 1).await?.close().await;
            Ok(writer)
        }
    }
}

/// [`open_writer`] for a standby on PostgreSQL: waits (in PostgreSQL, without
/// polling) until no other projector holds the read model's advisory lock, and
/// migrates only then. A standby that cannot connect fails at once, not when it is
/// needed; once it has, it stands by through PostgreSQL's restarts.
pub async fn open_postgres_writer_when_free(
    url: &str,
    options: PgConnectOptions,
) -> Result<Writer, OpenError> {
    let shown = without_password(url);
    let writer = match Writer::open_postgres(options.clone(), false).await {
        Ok(writer) => writer,
        Err(crate::writer::WriteError::Locked(_)) => {
            tracing::info!(url = %shown, "another projector is writing the read model; standing by");
            stand_by(&shown, &options).await?
        }
        // PostgreSQL down or starting: a standby waits for it rather than exit
        // and be restarted until its supervisor gives up.
        Err(e) if e.is_of_the_session() => {
            tracing::warn!(url = %shown, error = %e, "cannot reach the read model yet; standing by");
            stand_by(&shown, &options).await?
        }
        Err(source) => return Err(OpenError::Writer { url: shown, source }),
    };
    open(url, 1).await?.close().await;
    Ok(writer)
}

/// Waits for the advisory lock, through lost sessions, until it holds it; fails on
/// what no new session would mend (a password refused, a database that is gone).
async fn stand_by(shown: &str, options: &PgConnectOptions) -> Result<Writer, OpenError> {
    let mut restarts = domain::restarts::Restarts::new();
    loop {
        let started = std::time::Instant::now();
        match Writer::open_postgres(options.clone(), true).await {
            Ok(writer) => {
                tracing::info!(url = %shown, "took over the read model");
                return Ok(writer);
            }
            Err(e) if e.is_of_the_session() => {
                let backoff = restarts.after_failure(started.elapsed());
                tracing::warn!(url = %shown, error = %e, retry_in = ?backoff, "projector: no session stands by for the read model (lost, or not opened yet); trying again");
                tokio::time::sleep(backoff).await;
            }
            Err(source) => {
                return Err(OpenError::Writer {
                    url: shown.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Takes `<db>.migrate.lock`, waiting for another process that holds it.
async fn migration_lock(db: PathBuf) -> Result<std::fs::File, OpenError> {
    let path = lock_path(&db, "migrate");
    let locked = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    locked.map_err(|source| OpenError::Lock { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_shown_back_carries_no_password() {
        assert_eq!(
            without_password("mysql://app:s3cret@db:3306/x"),
            "mysql://app:***@db:3306/x"
        );
        assert_eq!(
            without_password("postgres://app@db/kl?sslmode=require&password=s3cret"),
            "postgres://app@db/kl?sslmode=require&password=***"
        );
        // A password with a raw `/` does not parse: nothing past the scheme is shown.
        let hidden = "… (not a valid URL; not shown, as it may hold a password)";
        assert_eq!(
            without_password("postgres://app:pa/ss@db/x"),
            format!("postgres:{hidden}")
        );
        // Neither a key/value string nor a URL without its `//` shows its parts.
        assert_eq!(
            without_password("host=127.0.0.1 user=kl password=s3cret dbname=kl"),
            hidden
        );
        assert_eq!(
            without_password("postgres:kl:s3cret@db/kl"),
            format!("postgres:{hidden}")
        );
        assert_eq!(without_password("sqlite://a/b@c"), "sqlite://a/b@c");
        assert_eq!(without_password("sqlite:rm.sqlite"), "sqlite:rm.sqlite");
        assert_eq!(without_password("nonsense"), "nonsense");
    }

    #[tokio::test]
    async fn what_names_no_read_model_is_refused_not_taken_for_a_file() {
        let keyvalue = "host=127.0.0.1 user=kl password=s3cret dbname=kl";
        for url in [keyvalue, "pg://kl@db/kl", "postgres:kl:s3cret@db/kl"] {
            let err = open(url, 1).await.map(|_| ()).expect_err(url).to_string();
            assert!(err.starts_with("database URL"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        assert!(
            std::fs::read_dir(".").unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("s3cret")),
            "no file is made of the string"
        );
    }

    /// A symbolic link or a relative path to the database names the same lock.
    #[test]
    fn every_path_to_one_database_names_one_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rm.sqlite");
        let link = dir.path().join("alias.sqlite");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let linked_dir = dir.path().join("linked");
        std::os::unix::fs::symlink(dir.path(), &linked_dir).unwrap();
        // Before the database exists, and after.
        for created in [false, true] {
            if created {
                std::fs::write(&db, b"").unwrap();
            }
            let expected = lock_path(&db, "projector");
            assert_eq!(
                lock_path(&linked_dir.join("rm.sqlite"), "projector"),
                expected
            );
            assert_eq!(lock_path(&link, "projector"), expected);
        }
    }

    #[tokio::test]
    async fn a_postgres_error_carries_no_password_and_says_why() {
        // A server that takes the connection and closes it: a failure no retry mends.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
            }
        });
        let err = open(
            &format!("postgres://app:s3cret@127.0.0.1:{port}/keyledger"),
            1,
        )
        .await
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("postgres://app:***@127.0.0.1:{port}")),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
        // The cause, not the pool's "timed out" 30 s later.
        assert!(!message.contains("timed out"), "{message}");
    }

    #[tokio::test]
    async fn a_refused_first_connection_is_tried_again_then_named() {
        // Port 1 on loopback: nothing listens there, as before a server has started.
        let options = PgConnectOptions::from_str("postgres://app@127.0.0.1:1/keyledger").unwrap();
        let err = first_connection(&options, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(passing(&err), "{err}");
        assert!(err.to_string().contains("Connection refused"), "{err}");
    }

    /// Migration 14 moves every sealed payload into the rowid table, byte for byte,
    /// and the primary key still refuses a second row for one version.
    #[tokio::test]
    async fn payloads_survive_the_move_to_a_rowid_table() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let before: Vec<_> = migrator()
            .iter()
            .filter(|m| m.version < 14)
            .cloned()
            .collect();
        Migrator::with_migrations(before).run(&pool).await.unwrap();
        let insert = "INSERT INTO secret_payloads (project, secret_id, version_id, key_id, \
                      content_type, nonce, ciphertext, created, created_ms) \
                      VALUES ('p', ?1, 'v', 'k', 'text/plain', x'0102', ?2, 'then', 7)";
        // Larger than a WITHOUT ROWID page holds, and small.
        let (large, small) = (vec![0xa5_u8; 3000], vec![0x5a_u8; 16]);
        for (id, ciphertext) in [("s1", &large), ("s2", &small)] {
            sqlx::query(insert)
                .bind(id)
                .bind(ciphertext)
                .execute(&pool)
                .await
                .unwrap();
        }

        migrator().run(&pool).await.unwrap();

        let (table,): (String,) = sqlx::query_as(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'secret_payloads'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(!table.contains("WITHOUT ROWID"), "{table}");
        /// A payload row as the test reads it back: id, nonce, ciphertext, created_ms.
        type Row = (String, Vec<u8>, Vec<u8>, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT secret_id, nonce, ciphertext, created_ms FROM secret_payloads \
             ORDER BY secret_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            rows,
            [
                ("s1".to_owned(), vec![1, 2], large.clone(), Some(7)),
                ("s2".to_owned(), vec![1, 2], small, Some(7)),
            ]
        );
        let again = sqlx::query(insert)
            .bind("s1")
            .bind(&large)
            .execute(&pool)
            .await;
        let refused = again.expect_err("a second row for one version was stored");
        assert!(refused.to_string().contains("UNIQUE"), "{refused}");
        // The projector's upsert names the primary key as its conflict target.
        sqlx::query(
            "INSERT INTO secret_payloads (project, secret_id, version_id, key_id, content_type, \
             nonce, ciphertext, created) VALUES ('p', 's2', 'v', 'k2', 'text/plain', x'03', \
             x'04', 'now') ON CONFLICT (project, secret_id, version_id) DO UPDATE SET \
             key_id = excluded.key_id",
        )
        .execute(&pool)
        .await
        .unwrap();
        let (key,): (String,) =
            sqlx::query_as("SELECT key_id FROM secret_payloads WHERE secret_id = 's2'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(key, "k2");
    }

    /// Every PostgreSQL migration after the baseline has its SQLite twin (version and
    /// name), and both dialects end at the same version. That their schemas agree is
    /// checked on real databases (`tests/postgres.rs`).
    #[test]
    fn both_dialects_have_the_same_migrations() {
        let sqlite: Vec<_> = migrator()
            .iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        let postgres: Vec<_> = postgres_migrator()
            .iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        assert_eq!(sqlite.last().map(|m| m.0), postgres.last().map(|m| m.0));
        let (baseline, later) = postgres.split_first().unwrap();
        assert!(sqlite.iter().any(|m| m.0 == baseline.0), "{baseline:?}");
        for m in later {
            assert!(sqlite.contains(m), "{m:?} has no SQLite twin");
        }
    }
}
