//! Backups of the hub's store: `tradecast-hub backup --out FILE` and `restore --from FILE`.
//!
//! SQLite: [`backup`] writes an online, consistent copy with `VACUUM INTO` (one read
//! transaction: a running hub keeps serving and writing meanwhile) to a file that must not
//! exist yet, then opens the copy and verifies its audit chain. [`restore`] checks that a file
//! is a Tradecast hub database (every migration it records is one this binary embeds, same
//! checksum) whose audit chain verifies, refuses while a hub holds the data's lock file (see
//! [`DataLock`], taken by every hub started on a SQLite file), keeps the current file (and its
//! `-wal`/`-shm`) aside under a `.before-restore-<unix ms>` suffix and puts the copy in place.
//!
//! PostgreSQL: no hand-rolled dump. [`backup`] and [`restore`] answer the `pg_dump` /
//! `pg_restore` commands to run ([`PG_DUMP`], [`PG_RESTORE`]).

use std::fs::File;
use std::path::{Path, PathBuf};

use sqlx::Row;

use crate::config::Config;
use crate::db::{Db, DbError};

/// The `pg_dump` command for a PostgreSQL hub (`$DATABASE_URL`: the hub's `database_url`).
pub const PG_DUMP: &str = "pg_dump --format=custom --no-owner --file=FILE \"$DATABASE_URL\"";
/// The `pg_restore` command, into an empty database (stop every hub instance first).
pub const PG_RESTORE: &str =
    "pg_restore --no-owner --single-transaction --exit-on-error --dbname=\"$DATABASE_URL\" FILE";

/// A backup or restore that could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The output exists already.
    #[error("{0} exists already; backup never overwrites a file")]
    Exists(PathBuf),
    /// A hub is running on the data (its lock is held).
    #[error("a hub is running on {0} (its lock file is held); stop it before restoring")]
    HubRunning(PathBuf),
    /// A restore of the data is under way.
    #[error("a restore of {0} is under way; start the hub after it")]
    Restoring(PathBuf),
    /// The file to restore is not a usable hub database.
    #[error("{path} is not a Tradecast hub database this hub can restore: {reason}")]
    NotAHubDatabase {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The configuration could not be resolved.
    #[error(transparent)]
    Start(#[from] crate::StartError),
    /// File system.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<sqlx::Error> for BackupError {
    fn from(e: sqlx::Error) -> Self {
        BackupError::Db(DbError::Sqlx(e))
    }
}

/// What a backup or restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A SQLite file was written (backup) or put in place (restore).
    Sqlite {
        /// The file written: the backup, or the live database after a restore.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// Its highest applied migration.
        migration: i64,
        /// Audit entries in it (the chain verified).
        audit_entries: i64,
        /// Its audit chain's head hash.
        audit_head: String,
        /// Restore: where the previous database was kept.
        kept_aside: Option<PathBuf>,
    },
    /// PostgreSQL: the command to run instead.
    Postgres {
        /// The `pg_dump` or `pg_restore` command line.
        command: String,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Sqlite { path, bytes, migration, audit_entries, audit_head, kept_aside } => {
                writeln!(f, "wrote {} ({bytes} bytes)", path.display())?;
                writeln!(f, "schema at migration {migration}")?;
                write!(f, "audit chain ok: {audit_entries} entries, head {audit_head}")?;
                if let Some(old) = kept_aside {
                    write!(f, "\nprevious database kept as {}", old.display())?;
                }
                Ok(())
            }
            Outcome::Postgres { command } => write!(
                f,
                "this hub uses PostgreSQL: back it up and restore it with the PostgreSQL tools, \
                 with DATABASE_URL set to the hub's database_url:\n  {command}\n(see hub/README.md, \
                 \"Backups\")"
            ),
        }
    }
}

/// The SQLite file of a `sqlite:` URL (`sqlite://PATH?…` or `sqlite:PATH`).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// The lock on a SQLite database's data: `<database>.lock`, locked with the OS's advisory file
/// lock (released by the OS when the process ends, killed too). Every hub started on the file
/// holds it shared (several instances may share one file); `restore` holds it exclusive, so it
/// refuses while a hub runs and no hub starts while it runs.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

impl DataLock {
    /// The shared lock of a hub serving the SQLite `database` file.
    pub fn serve(database: &Path) -> Result<DataLock, BackupError> {
        Self::take(database, false)
    }

    /// The exclusive lock of a restore of `database`.
    pub fn restore(database: &Path) -> Result<DataLock, BackupError> {
        Self::take(database, true)
    }

    fn take(database: &Path, exclusive: bool) -> Result<DataLock, BackupError> {
        let path = lock_path(database);
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        let taken = if exclusive { file.try_lock() } else { file.try_lock_shared() };
        match taken {
            Ok(()) => Ok(DataLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) if exclusive => {
                Err(BackupError::HubRunning(database.to_path_buf()))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(BackupError::Restoring(database.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `tradecast-hub backup --out FILE`.
pub async fn backup(config: &Config, out: &Path) -> Result<Outcome, BackupError> {
    let url = crate::database_url(config)?;
    if sqlite_path(&url).is_none() {
        return Ok(Outcome::Postgres {
            command: PG_DUMP.replace("FILE", &out.display().to_string()),
        });
    }
    if out.exists() {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    let db = Db::connect(&url, 1).await?;
    db.ready().await?;
    // `VACUUM INTO` refuses an existing non-empty file itself, so a file created meanwhile is
    // not overwritten either.
    let written =
        sqlx::query("VACUUM INTO $1").bind(out.display().to_string()).execute(db.pool()).await;
    db.close().await;
    written?;
    check_file(out, None).await
}

/// Opens `file` read-only and checks it is a hub database: its migrations are this binary's,
/// its audit chain verifies.
async fn check_file(file: &Path, kept_aside: Option<PathBuf>) -> Result<Outcome, BackupError> {
    let not_hub =
        |reason: String| BackupError::NotAHubDatabase { path: file.to_path_buf(), reason };
    if !file.is_file() {
        return Err(not_hub("no such file".into()));
    }
    let db = Db::open_sqlite_copy(file).await.map_err(|e| not_hub(e.to_string()))?;
    let result = check_db(&db).await;
    db.close().await;
    let (migration, report) = result.map_err(not_hub)?;
    Ok(Outcome::Sqlite {
        path: file.to_path_buf(),
        bytes: std::fs::metadata(file)?.len(),
        migration,
        audit_entries: report.n_entries,
        audit_head: report.head_hash,
        kept_aside,
    })
}

async fn check_db(db: &Db) -> Result<(i64, crate::audit::Report), String> {
    let rows = sqlx::query(
        "SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(db.pool())
    .await
    .map_err(|e| format!("no migrations table ({e})"))?;
    let embedded = db.migrator();
    let mut highest = 0;
    for row in &rows {
        let version: i64 = row.try_get(0).map_err(|e| e.to_string())?;
        let checksum: Vec<u8> = row.try_get(1).map_err(|e| e.to_string())?;
        match embedded.iter().find(|m| m.version == version) {
            Some(m) if *m.checksum == *checksum => highest = highest.max(version),
            Some(_) => return Err(format!("migration {version} differs from this hub's")),
            None => return Err(format!("migration {version} is unknown to this hub")),
        }
    }
    if highest == 0 {
        return Err("no migration applied".into());
    }
    let report = crate::audit::verify(db).await.map_err(|e| e.to_string())?;
    Ok((highest, report))
}

/// `tradecast-hub restore --from FILE`.
pub async fn restore(config: &Config, from: &Path) -> Result<Outcome, BackupError> {
    let url = crate::database_url(config)?;
    let Some(live) = sqlite_path(&url) else {
        return Ok(Outcome::Postgres {
            command: PG_RESTORE.replace("FILE", &from.display().to_string()),
        });
    };
    let lock = DataLock::restore(&live)?;
    check_file(from, None).await?;
    // Copy beside the live file first (same file system), so the swap is two renames.
    let incoming = with_suffix(&live, ".restoring");
    std::fs::copy(from, &incoming)?;
    File::open(&incoming)?.sync_all()?;
    let stamp = crate::ids::Clock::default().now_ms();
    let aside = with_suffix(&live, &format!(".before-restore-{stamp}"));
    let mut kept = None;
    if live.exists() {
        std::fs::rename(&live, &aside)?;
        kept = Some(aside.clone());
    }
    for side in ["-wal", "-shm"] {
        let f = with_suffix(&live, side);
        if f.exists() {
            std::fs::rename(&f, with_suffix(&aside, side))?;
        }
    }
    std::fs::rename(&incoming, &live)?;
    let outcome = check_file(&live, kept).await;
    drop(lock);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_of_urls() {
        assert_eq!(
            sqlite_path("sqlite:///srv/hub/hub.sqlite3?mode=rwc"),
            Some("/srv/hub/hub.sqlite3".into())
        );
        assert_eq!(sqlite_path("sqlite:hub.sqlite3"), Some("hub.sqlite3".into()));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://hub@db/hub"), None);
    }

    #[test]
    fn hubs_share_the_lock_and_restore_excludes_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hub.sqlite3");
        let (hub, other_hub) = (DataLock::serve(&db).unwrap(), DataLock::serve(&db).unwrap());
        assert!(matches!(DataLock::restore(&db), Err(BackupError::HubRunning(_))));
        drop((hub, other_hub));
        let restore = DataLock::restore(&db).unwrap();
        assert!(matches!(DataLock::serve(&db), Err(BackupError::Restoring(_))));
        drop(restore);
        DataLock::serve(&db).unwrap();
    }
}
