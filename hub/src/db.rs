//! The SQL store's connection: one [`Db`] over sqlx's `Any` driver, SQLite (default, one file,
//! WAL) or PostgreSQL, with the embedded migrations of `migrations/sqlite` and
//! `migrations/postgres` (same numbering).
//!
//! Queries are written once for both backends: `$1…$n` placeholders (SQLite maps `$NNN` by
//! number), ids TEXT, times BIGINT unix ms, money BIGINT minor units + currency, prices decimal
//! TEXT, record bytes BLOB/BYTEA. Only the migrations differ. No other module opens a connection.

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Transaction};

static MIGRATOR_SQLITE: Migrator = sqlx::migrate!("../migrations/sqlite");
static MIGRATOR_POSTGRES: Migrator = sqlx::migrate!("../migrations/postgres");

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The driver reported an error.
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The schema is older than this binary.
    #[error(
        "database schema at version {found:?} with migrations missing, this hub needs every one up to {expected}; run `tradecast-hub migrate`"
    )]
    NotMigrated {
        /// Highest applied migration.
        found: Option<i64>,
        /// Highest embedded migration.
        expected: i64,
    },
    /// Stored data violates an invariant the hub relies on.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

/// Which SQL engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// The hub's database handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// The SQLite URL of `hub.sqlite3` in `data_dir` (created if missing).
    pub fn sqlite_url_in(data_dir: &Path) -> String {
        format!("sqlite://{}?mode=rwc", data_dir.join("hub.sqlite3").display())
    }

    /// Opens a pool on `url` (`sqlite:` or `postgres:`); on SQLite switches the file to WAL.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL is a property of the file: set once, kept by every later connection.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        Ok(Db { pool, backend })
    }

    /// Opens a SQLite file that no one writes (a backup) read-only, as it is: no WAL switch,
    /// no locking (`immutable`).
    pub async fn open_sqlite_copy(path: &Path) -> Result<Db, DbError> {
        install_default_drivers();
        let url = format!("sqlite://{}?mode=ro&immutable=true", path.display());
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await?;
        Ok(Db { pool, backend: Backend::Sqlite })
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The migrations embedded for this backend.
    pub fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &MIGRATOR_SQLITE,
            Backend::Postgres => &MIGRATOR_POSTGRES,
        }
    }

    /// Applies every embedded migration not yet applied.
    pub async fn migrate(&self) -> Result<(), DbError> {
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// The highest applied migration (`None`: none yet) and the highest embedded one.
    pub async fn migration_versions(&self) -> Result<(Option<i64>, i64), DbError> {
        let expected = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let found = self.applied_migrations().await?.into_iter().max();
        Ok((found, expected))
    }

    /// The versions of the migrations applied successfully, ascending (empty: none yet).
    async fn applied_migrations(&self) -> Result<Vec<i64>, DbError> {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.pool)
            .await
            .or_else(|e| match &e {
                // No migrations table at all: nothing applied yet.
                sqlx::Error::Database(d) if d.message().contains("_sqlx_migrations") => {
                    Ok(Vec::new())
                }
                _ => Err(DbError::from(e)),
            })
    }

    /// The database answers and every embedded migration is applied — each one, not only the
    /// highest: migrations are numbered per issue, so a lower number can arrive after a higher
    /// one (0006 after 0050).
    pub async fn ready(&self) -> Result<(), DbError> {
        let applied = self.applied_migrations().await?;
        let missing = self.migrator().iter().any(|m| !applied.contains(&m.version));
        if missing {
            let expected = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
            let found = applied.iter().copied().max();
            return Err(DbError::NotMigrated { found, expected });
        }
        Ok(())
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so two writers never deadlock on a lock upgrade.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, DbError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// True when `e` is a unique or primary-key violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

/// `format!` for SQL built only from this crate's constants (column lists, shared conditions),
/// never from input: every value is a bound `$n` parameter.
#[macro_export]
macro_rules! sql {
    ($($t:tt)*) => {
        sqlx::AssertSqlSafe(format!($($t)*))
    };
}
