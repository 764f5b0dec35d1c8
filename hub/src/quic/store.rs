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
use tradecast_protocol::{Body, ChainHash, DeviceId, Identity, Receipt, Record, StreamId};

use crate::db::{Db, DbError, is_unique_violation};
use crate::signals::{self, IngestRules, Relay};

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
/// Signals are judged with the default freshness (tests, tools).
pub async fn commit(
    db: &Db,
    hub: &Identity,
    record: &Record,
    received_at_ms: i64,
) -> Result<Receipt, StoreError> {
    let rules = IngestRules { max_age_ms: 60_000 };
    let mut done = commit_batch(db, hub, rules, &[(record.clone(), received_at_ms)]).await?;
    done.receipts.pop().ok_or_else(|| StoreError::Corrupt("no receipt".into()))
}

/// What a committed batch produced.
#[derive(Debug, Default)]
pub struct Committed {
    /// The hub's receipts, in the batch's order.
    pub receipts: Vec<Receipt>,
    /// Devices whose feed grew (ring them).
    pub touched: Vec<String>,
}

/// Commits verified records in one transaction (one fsync), each idempotently; returns their
/// receipts in order. An equivocating record fails the whole batch: nothing of it is
/// committed (the session closes and the node resends). In the same transaction, a provider's
/// new signals-stream record is judged and relayed ([`signals::accept_synced`]) and a
/// subscriber's approvals and executions update the provider's per-signal outcomes.
pub async fn commit_batch(
    db: &Db,
    hub: &Identity,
    rules: IngestRules,
    records: &[(Record, i64)],
) -> Result<Committed, StoreError> {
    let mut tx = db.begin_write().await?;
    let mut done = Committed { receipts: Vec::with_capacity(records.len()), touched: Vec::new() };
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
        } else if h.stream == StreamId::SIGNALS {
            match signals::accept_synced(&mut tx, db.backend(), rules, record, *received_at_ms)
                .await?
            {
                Relay::Relayed(devices) => done.touched.extend(devices),
                Relay::NotRelayed(why) => {
                    metrics::counter!(crate::telemetry::SIGNALS_REJECTED, "kind" => "sync")
                        .increment(1);
                    tracing::warn!(
                        author = %h.author.fmt_short(), seq = h.seq, kind = ?h.kind, why,
                        "signals-stream record kept in the chain, not relayed"
                    );
                }
            }
        } else if h.stream == StreamId::SHARED && !h.sealed {
            outcome(&mut tx, record, *received_at_ms).await?;
        }
        done.receipts.push(receipt);
    }
    tx.commit().await?;
    Ok(done)
}

/// A subscriber's approval or execution, as the provider's per-signal outcome (ignored for a
/// signal the hub never relayed).
async fn outcome(tx: &mut crate::feed::Tx, record: &Record, now_ms: i64) -> Result<(), StoreError> {
    let device = record.header().author.to_text();
    let (signal_id, decision, decided_at, retcode, price, volume, filled_at) = match record.body() {
        Ok(Body::Approval(a)) => {
            let decision = format!("{:?}", a.decision).to_lowercase();
            (a.signal_id, Some(decision), Some(a.decided_at_ms), None, None, None, None)
        }
        Ok(Body::Execution(e)) => (
            e.signal_id,
            None,
            None,
            Some(i64::from(e.retcode)),
            e.fill_price.map(|p| p.to_string()),
            Some(e.volume.to_string()),
            Some(e.at_ms),
        ),
        _ => return Ok(()),
    };
    sqlx::query(
        "INSERT INTO signal_outcomes (signal_id, device_id, decision, decided_at_ms, retcode, \
         fill_price, fill_volume, filled_at_ms, updated_at_ms) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM signals WHERE id = $1) \
         AND EXISTS (SELECT 1 FROM devices WHERE id = $2) \
         ON CONFLICT (signal_id, device_id) DO UPDATE SET \
         decision = COALESCE(excluded.decision, signal_outcomes.decision), \
         decided_at_ms = COALESCE(excluded.decided_at_ms, signal_outcomes.decided_at_ms), \
         retcode = COALESCE(excluded.retcode, signal_outcomes.retcode), \
         fill_price = COALESCE(excluded.fill_price, signal_outcomes.fill_price), \
         fill_volume = COALESCE(excluded.fill_volume, signal_outcomes.fill_volume), \
         filled_at_ms = COALESCE(excluded.filled_at_ms, signal_outcomes.filled_at_ms), \
         updated_at_ms = excluded.updated_at_ms",
    )
    .bind(signal_id.to_hex())
    .bind(device)
    .bind(decision)
    .bind(decided_at)
    .bind(retcode)
    .bind(price)
    .bind(volume)
    .bind(filled_at)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
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

/// The highest `seq` of `author`'s `stream` the hub has committed (0 for none).
pub async fn committed(db: &Db, author: &DeviceId, stream: StreamId) -> Result<u64, StoreError> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT MAX(seq) FROM sync_records WHERE author = $1 AND stream = $2")
            .bind(author.to_text())
            .bind(i64::from(stream.0))
            .fetch_one(db.pool())
            .await?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}
