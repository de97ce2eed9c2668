//! Opening the SQLite read model: WAL journal (readers never block the projector),
//! a busy timeout, and the schema migrations embedded in the binary.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqlitePool};

use crate::writer::Writer;

/// Why the read model could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is not a SQLite URL (shown without any password).
    #[error(
        "database URL {0:?} is not valid; use sqlite://<path>, e.g. sqlite://.keyledger/readmodel.sqlite"
    )]
    BadUrl(String),
    /// A PostgreSQL URL: that read model is not built yet.
    #[error(
        "the read model is SQLite only for now (a PostgreSQL read model is planned, not built); \
         use sqlite://<path>, e.g. sqlite://.keyledger/readmodel.sqlite"
    )]
    Postgres,
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
        "the projector writes a SQLite file, and {0:?} names none; use sqlite://<path>, e.g. \
         sqlite://.keyledger/readmodel.sqlite"
    )]
    NotAFile(String),
    /// The writer's connection could not be opened.
    #[error("opening the read model {url} for writing: {source}")]
    Writer {
        /// The URL.
        url: String,
        /// The cause.
        source: crate::writer::WriteError,
    },
    /// A migration failed.
    #[error("migrating the read model {url}: {source}")]
    Migrate {
        /// The URL.
        url: String,
        /// The cause.
        source: sqlx::migrate::MigrateError,
    },
}

fn migrator() -> Migrator {
    let migration = |version, name: &str, sql: &'static str| {
        Migration::new(
            version,
            name.to_owned().into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
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
    ])
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

/// `url` with the userinfo of its authority (`user:password@`) replaced by `***@`:
/// a URL that is not valid is shown back, and it may carry a password.
fn without_password(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***{}", &rest[at..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// The `sqlite://` URL of a file.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Whether `url` names a PostgreSQL database (not supported yet).
fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens (creating if needed) and migrates the read model at `url`.
pub async fn open(url: &str, max_connections: u32) -> Result<SqlitePool, OpenError> {
    if is_postgres(url) {
        return Err(OpenError::Postgres);
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|_| OpenError::BadUrl(without_password(url)))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL keeps the database consistent across crashes; the log, not
        // the read model, is the durable record, and a lost tail is re-applied from it.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        // A SQLite connection is a file handle that does not go stale; sqlx's ping
        // before each acquire would cost every read one more hand-off to its thread.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|source| OpenError::Sqlite {
            url: url.to_owned(),
            source,
        })?;
    // A projector and an API process open the same file, and sqlx takes no migration
    // lock on SQLite: a file lock makes one migrate while the other waits.
    let _lock = match sqlite_path(url) {
        Some(db) => Some(migration_lock(db).await?),
        None => None,
    };
    migrator()
        .run(&pool)
        .await
        .map_err(|source| OpenError::Migrate {
            url: url.to_owned(),
            source,
        })?;
    Ok(pool)
}

/// Opens (creating and migrating if needed) the read model at `url` for the
/// projector: its single writer ([`Writer`]), with a page cache of `cache_kib` KiB.
pub async fn open_writer(url: &str, cache_kib: i64) -> Result<Writer, OpenError> {
    let path = writer_path(url)?;
    open(url, 1).await?.close().await;
    Writer::open(&path, cache_kib).map_err(|source| OpenError::Writer {
        url: url.to_owned(),
        source,
    })
}

/// The SQLite file a projector would write for `url`, or why `url` names none.
pub fn writer_path(url: &str) -> Result<PathBuf, OpenError> {
    if is_postgres(url) {
        return Err(OpenError::Postgres);
    }
    sqlite_path(url).ok_or_else(|| OpenError::NotAFile(without_password(url)))
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
            "mysql://***@db:3306/x"
        );
        assert_eq!(without_password("sqlite://a/b@c"), "sqlite://a/b@c");
        assert_eq!(without_password("nonsense"), "nonsense");
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
    async fn a_postgres_url_says_what_is_built() {
        let err = open("postgres://app:s3cret@db/keyledger", 1)
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("SQLite only"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}
