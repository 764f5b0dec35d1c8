//! The SQL side of the hub's sync driver: what the hub durably holds of a node's streams
//! (`sync_records`, `sync_quarantine`, migration 0004) and the idempotent commit of one
//! verified record with the hub's receipt signature.
//!
//! A commit of a record already stored under the same (author, stream, seq) succeeds without a
//! second row when the header hash is the same (a resend after a lost ack or a hub restart) and
//! is refused as [`StoreError::Equivocation`] when it differs — the session only remembers the
//! last `recent_hashes`, the table's key covers the rest (protocol README, "Limits").

use sqlx::Row;
use tradecast_protocol::session::StoredStream;
use tradecast_protocol::{ChainHash, DeviceId, Identity, Receipt, Record, StreamId};

use crate::db::{Db, DbError, is_unique_violation};

/// Why a sync store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// Another record is already committed under this (author, stream, seq).
    #[error("equivocation: another record is committed at {author} stream {stream} seq {seq}")]
    Equivocation { author: String, stream: u32, seq: u64 },
    /// A stored row does not parse.
    #[error("sync store row: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(DbError::from(e))
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn hash_from_hex(s: &str) -> Result<ChainHash, StoreError> {
    let bytes = hex::decode(s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Corrupt("hash length".into()))?;
    Ok(ChainHash(arr))
}

/// The streams of `author` the hub holds: the highest contiguous committed `seq` and the last
/// `recent` header hashes of each, and whether it is quarantined.
pub async fn load_streams(
    db: &Db,
    author: &DeviceId,
    recent: u64,
) -> Result<Vec<StoredStream>, StoreError> {
    let author = author.to_text();
    let streams: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT stream FROM sync_records WHERE author = $1")
            .bind(&author)
            .fetch_all(db.pool())
            .await?;
    let quarantined: Vec<i64> =
        sqlx::query_scalar("SELECT stream FROM sync_quarantine WHERE author = $1")
            .bind(&author)
            .fetch_all(db.pool())
            .await?;
    let mut all: Vec<i64> = streams.iter().chain(quarantined.iter()).copied().collect();
    all.sort_unstable();
    all.dedup();
    let mut out = Vec::with_capacity(all.len());
    for stream in all {
        let rows = sqlx::query(
            "SELECT seq, header_hash FROM sync_records WHERE author = $1 AND stream = $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(&author)
        .bind(stream)
        .bind(i64_of(recent.max(1)))
        .fetch_all(db.pool())
        .await?;
        let mut recent_hashes = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get(0)?;
            let hash: String = row.try_get(1)?;
            recent_hashes.push((u64::try_from(seq).unwrap_or(0), hash_from_hex(&hash)?));
        }
        recent_hashes.reverse();
        // Commits are in order per stream, so the rows are contiguous from 1: the highest is
        // the mark.
        let committed = recent_hashes.last().map_or(0, |(s, _)| *s);
        let stream =
            StreamId(u32::try_from(stream).map_err(|_| StoreError::Corrupt("stream id".into()))?);
        out.push(StoredStream {
            stream,
            committed,
            recent: recent_hashes,
            quarantined: quarantined.contains(&i64::from(stream.0)),
        });
    }
    Ok(out)
}

/// Commits one verified record (idempotently) with the hub's receipt; returns the receipt.
pub async fn commit(
    db: &Db,
    hub: &Identity,
    record: &Record,
    received_at_ms: i64,
) -> Result<Receipt, StoreError> {
    let mut receipts = commit_batch(db, hub, &[(record.clone(), received_at_ms)]).await?;
    receipts.pop().ok_or_else(|| StoreError::Corrupt("no receipt".into()))
}

/// Commits verified records in one transaction (one fsync), each idempotently; returns their
/// receipts in order. An equivocating record fails the whole batch: nothing of it is
/// committed (the session closes and the node resends).
pub async fn commit_batch(
    db: &Db,
    hub: &Identity,
    records: &[(Record, i64)],
) -> Result<Vec<Receipt>, StoreError> {
    let mut tx = db.begin_write().await?;
    let mut receipts = Vec::with_capacity(records.len());
    for (record, received_at_ms) in records {
        let h = record.header();
        let author = h.author.to_text();
        let hash = record.header_hash().to_hex();
        let receipt = Receipt::sign(hub, record, *received_at_ms);
        let inserted = sqlx::query(
            "INSERT INTO sync_records (author, stream, seq, header_hash, record, received_at_ms, receipt_signature) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (author, stream, seq) DO NOTHING",
        )
        .bind(&author)
        .bind(i64::from(h.stream.0))
        .bind(i64_of(h.seq))
        .bind(&hash)
        .bind(record.encode())
        .bind(*received_at_ms)
        .bind(hex::encode(receipt.signature.0))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            let stored: String = sqlx::query_scalar(
                "SELECT header_hash FROM sync_records WHERE author = $1 AND stream = $2 AND seq = $3",
            )
            .bind(&author)
            .bind(i64::from(h.stream.0))
            .bind(i64_of(h.seq))
            .fetch_one(&mut *tx)
            .await?;
            if stored != hash {
                return Err(StoreError::Equivocation { author, stream: h.stream.0, seq: h.seq });
            }
        }
        receipts.push(receipt);
    }
    tx.commit().await?;
    Ok(receipts)
}

/// Persists a quarantine (idempotent).
pub async fn quarantine(
    db: &Db,
    author: &DeviceId,
    stream: StreamId,
    now_ms: i64,
) -> Result<(), StoreError> {
    let r = sqlx::query("INSERT INTO sync_quarantine (author, stream, at_ms) VALUES ($1, $2, $3)")
        .bind(author.to_text())
        .bind(i64::from(stream.0))
        .bind(now_ms)
        .execute(db.pool())
        .await;
    match r {
        Err(e) if !is_unique_violation(&e) => Err(e.into()),
        _ => Ok(()),
    }
}

/// The records of `author`'s `stream` the hub holds, in `seq` order (tests, export).
pub async fn records(
    db: &Db,
    author: &DeviceId,
    stream: StreamId,
) -> Result<Vec<Record>, StoreError> {
    let rows = sqlx::query(
        "SELECT record FROM sync_records WHERE author = $1 AND stream = $2 ORDER BY seq",
    )
    .bind(author.to_text())
    .bind(i64::from(stream.0))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let bytes: Vec<u8> = r.try_get(0)?;
            Record::decode(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect()
}
