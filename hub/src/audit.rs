//! The audit log: every sensitive action appended to `audit_log`, a hash chain
//! (`hash = SHA-256(JSON [seq, at_ms, actor, action, subject, detail, request_id, prev_hash])`,
//! the first `prev_hash` is 64 zeros), append-only in the schema (triggers refuse UPDATE and
//! DELETE on both backends), and [`verify`] that recomputes the whole chain.
//!
//! An entry is appended inside the caller's write transaction, so the action and its audit
//! record commit together or not at all.

use serde::Serialize;
use sqlx::{Any, Row, Transaction};

use crate::db::{Backend, Db, DbError};

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Advisory lock key that serialises appends across hub instances on PostgreSQL.
const PG_AUDIT_LOCK: i64 = 0x0074_7261_6465_6301;

/// One action to record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Who: a user id, `device:<id>`, `apikey:<id>`, `anonymous` or `system`.
    pub actor: &'a str,
    /// What, as `area.verb` (`auth.login`, `device.revoke`, `signal.ingest`, …).
    pub action: &'a str,
    /// On what: the id of the object acted on.
    pub subject: &'a str,
    /// Details as JSON (never a secret).
    pub detail: serde_json::Value,
    /// The request that caused it (or `cli`).
    pub request_id: &'a str,
}

/// A stored entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Stored {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When, unix ms UTC.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub subject: String,
    /// JSON details.
    pub detail: String,
    /// Request id.
    pub request_id: String,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// The chain does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// An entry is missing, reordered or altered.
    #[error("audit chain broken at seq {seq}: {reason}")]
    Broken {
        /// First bad entry.
        seq: i64,
        /// What does not match.
        reason: String,
    },
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Db(DbError::Sqlx(e))
    }
}

/// The hash of an entry; `text` is [actor, action, subject, detail, request_id, prev_hash].
fn entry_hash(seq: i64, at_ms: i64, text: [&str; 6]) -> String {
    let [actor, action, subject, detail, request_id, prev_hash] = text;
    let canonical =
        serde_json::json!([seq, at_ms, actor, action, subject, detail, request_id, prev_hash]);
    crate::ids::sha256_hex(canonical.to_string().as_bytes())
}

/// Appends `entry` in `tx` (which must come from [`Db::begin_write`]) and returns its seq.
pub async fn append(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    at_ms: i64,
    entry: &Entry<'_>,
) -> Result<i64, DbError> {
    if backend == Backend::Postgres {
        sqlx::query(crate::sql!("SELECT 1 FROM pg_advisory_xact_lock({PG_AUDIT_LOCK})"))
            .execute(&mut **tx)
            .await?;
    }
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    let (seq, prev_hash) = match last {
        Some(row) => (row.try_get::<i64, _>(0)? + 1, row.try_get::<String, _>(1)?),
        None => (1, GENESIS_HASH.to_string()),
    };
    let detail = entry.detail.to_string();
    let hash = entry_hash(
        seq,
        at_ms,
        [entry.actor, entry.action, entry.subject, &detail, entry.request_id, &prev_hash],
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, at_ms, actor, action, subject, detail, request_id, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(seq)
    .bind(at_ms)
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.subject)
    .bind(detail)
    .bind(entry.request_id)
    .bind(prev_hash)
    .bind(hash)
    .execute(&mut **tx)
    .await?;
    Ok(seq)
}

/// Appends one entry in its own transaction.
pub async fn record(db: &Db, at_ms: i64, entry: &Entry<'_>) -> Result<i64, DbError> {
    let mut tx = db.begin_write().await?;
    let seq = append(&mut tx, db.backend(), at_ms, entry).await?;
    tx.commit().await?;
    Ok(seq)
}

fn stored(row: &sqlx::any::AnyRow) -> Result<Stored, sqlx::Error> {
    Ok(Stored {
        seq: row.try_get(0)?,
        at_ms: row.try_get(1)?,
        actor: row.try_get(2)?,
        action: row.try_get(3)?,
        subject: row.try_get(4)?,
        detail: row.try_get(5)?,
        request_id: row.try_get(6)?,
        prev_hash: row.try_get(7)?,
        hash: row.try_get(8)?,
    })
}

const COLUMNS: &str = "seq, at_ms, actor, action, subject, detail, request_id, prev_hash, hash";

/// Which entries [`search`] returns; every field optional (empty: no condition).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this actor (a user id, `device:<id>`, `system`, …).
    pub actor: Option<String>,
    /// Only this action (`auth.login`, `signal.ingest`, …).
    pub action: Option<String>,
    /// Only entries at or after this time, unix ms.
    pub from_ms: Option<i64>,
    /// Only entries before this time, unix ms.
    pub to_ms: Option<i64>,
    /// Only entries older than this seq (the next page after a page ending at it).
    pub before_seq: Option<i64>,
}

/// The latest `limit` entries matching `filter`, newest first: what `GET /api/v1/audit` and the
/// console's audit page read.
pub async fn search(db: &Db, filter: &Filter, limit: i64) -> Result<Vec<Stored>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {COLUMNS} FROM audit_log \
         WHERE ($1 = '' OR action = $1) AND ($2 = '' OR actor = $2) \
         AND at_ms >= $3 AND at_ms < $4 AND seq < $5 \
         ORDER BY seq DESC LIMIT $6"
    ))
    .bind(filter.action.as_deref().unwrap_or(""))
    .bind(filter.actor.as_deref().unwrap_or(""))
    .bind(filter.from_ms.unwrap_or(i64::MIN))
    .bind(filter.to_ms.unwrap_or(i64::MAX))
    .bind(filter.before_seq.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(stored).collect::<Result<_, _>>()?)
}

/// The latest `limit` entries, newest first, optionally only `action`.
pub async fn list(db: &Db, action: Option<&str>, limit: i64) -> Result<Vec<Stored>, DbError> {
    let filter = Filter { action: action.map(str::to_owned), ..Filter::default() };
    search(db, &filter, limit).await
}

/// What [`verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Entries checked.
    pub n_entries: i64,
    /// Hash of the last entry (the chain's head), to compare with a copy kept elsewhere.
    pub head_hash: String,
}

/// Recomputes the whole chain: seqs contiguous from 1, every `prev_hash` and `hash` right.
pub async fn verify(db: &Db) -> Result<Report, AuditError> {
    let mut prev = GENESIS_HASH.to_string();
    let mut expected_seq = 1i64;
    // Pages keep memory bounded on a long log.
    loop {
        let rows = sqlx::query(crate::sql!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT 1000"
        ))
        .bind(expected_seq)
        .fetch_all(db.pool())
        .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let e = stored(row)?;
            let broken = |reason: String| AuditError::Broken { seq: expected_seq, reason };
            if e.seq != expected_seq {
                return Err(broken(format!("next entry has seq {}", e.seq)));
            }
            if e.prev_hash != prev {
                return Err(broken("prev_hash does not match the previous entry".into()));
            }
            let h = entry_hash(
                e.seq,
                e.at_ms,
                [&e.actor, &e.action, &e.subject, &e.detail, &e.request_id, &e.prev_hash],
            );
            if h != e.hash {
                return Err(broken("hash does not match the entry's content".into()));
            }
            prev = e.hash;
            expected_seq += 1;
        }
    }
    // Entries below the first page start are covered: the query starts at seq 1.
    let total: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log").fetch_one(db.pool()).await?;
    if total != expected_seq - 1 {
        return Err(AuditError::Broken {
            seq: expected_seq,
            reason: format!("{total} entries stored but the chain has {}", expected_seq - 1),
        });
    }
    Ok(Report { n_entries: expected_seq - 1, head_hash: prev })
}
