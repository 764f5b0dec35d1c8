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
use tradecast_protocol::{Body, ChainHash, DeviceId, Identity, Kind, Receipt, Record, StreamId};

use crate::db::{Db, DbError};
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

/// The header hash stored for (author, stream, seq), if any: the store's side of a resend older
/// than the session remembers ([`tradecast_protocol::session::HubAction::CheckStored`]).
pub async fn stored_hash(db: &Db, record: &Record) -> Result<Option<ChainHash>, StoreError> {
    let h = record.header();
    let stored: Option<String> = sqlx::query_scalar(
        "SELECT header_hash FROM sync_records WHERE author = $1 AND stream = $2 AND seq = $3",
    )
    .bind(h.author.to_text())
    .bind(i64::from(h.stream.0))
    .bind(i64_of(h.seq))
    .fetch_optional(db.pool())
    .await
    .map_err(DbError::from)?;
    stored.map(|hex| hash_from_hex(&hex)).transpose()
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
    /// Devices whose feed (inbox) grew (ring them).
    pub touched: Vec<String>,
    /// What was appended to relay logs (broadcast it: [`crate::relay::after_commit`]).
    pub relayed: Vec<crate::relay::Appended>,
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
    let mut done = Committed {
        receipts: Vec::with_capacity(records.len()),
        touched: Vec::new(),
        relayed: Vec::new(),
    };
    // Per (author, stream) outside the signals stream: the last record this batch committed,
    // whose receipt goes back to the author (see below).
    let mut tips: Vec<(String, StreamId, Receipt, i64)> = Vec::new();
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
            // The track record: the author gets the hub's receipt back in its feed, as a record
            // of the hub's own receipts chain (a provider holds proof of when each signal,
            // modification and close reached the hub).
            let receipt_record = hub_record(
                &mut tx,
                hub,
                StreamId::RECEIPTS,
                &Body::Receipt(receipt),
                *received_at_ms,
            )
            .await?;
            crate::feed::append_to_device(&mut tx, &author, &receipt_record, *received_at_ms)
                .await?;
            done.touched.push(author.clone());
            match signals::accept_synced(&mut tx, db.backend(), rules, record, *received_at_ms)
                .await?
            {
                Relay::Relayed(appended) => done.relayed.extend(appended),
                Relay::Inboxes(devices) => done.touched.extend(devices),
                Relay::NotRelayed(why) => {
                    metrics::counter!(crate::telemetry::SIGNALS_REJECTED, "kind" => "sync")
                        .increment(1);
                    tracing::warn!(
                        author = %h.author.fmt_short(), seq = h.seq, kind = ?h.kind, why,
                        "signals-stream record kept in the chain, not relayed"
                    );
                }
            }
        } else {
            // A kind on a stream the protocol's table does not allow it on (or a kind only the
            // hub signs) stays in the author's chain, as every committed record does, and is
            // never acted on or relayed.
            let misfiled =
                !h.kind.allowed_on(h.stream) || h.kind.signer() == tradecast_protocol::Signer::Hub;
            if misfiled {
                metrics::counter!("tradecast_sync_records_misfiled_total").increment(1);
                tracing::warn!(author = %h.author.fmt_short(), stream = h.stream.0, seq = h.seq,
                    kind = h.kind.name(), "record kind not allowed on its stream: kept, not used");
            } else if h.stream == StreamId::SHARED && !h.sealed {
                outcome(&mut tx, record, *received_at_ms).await?;
                crate::approvals::on_synced(&mut tx, record, *received_at_ms).await?;
                crate::telegram::account::on_synced(&mut tx, record, *received_at_ms).await?;
            } else if matches!(h.stream, StreamId::PUBLISHED | StreamId::COMMANDS) && !h.sealed {
                crate::telegram::account::on_synced(&mut tx, record, *received_at_ms).await?;
            } else if h.stream == StreamId::DEVICE && h.kind == Kind::Heartbeat {
                crate::telegram::account::on_heartbeat(&mut tx, record, *received_at_ms).await?;
            } else if h.stream == StreamId::DEVICE && h.kind == Kind::DeviceKeys && !h.sealed {
                device_keys(&mut tx, record).await?;
            }
            match tips.iter_mut().find(|t| t.0 == author && t.1 == h.stream) {
                Some(t) => (t.2, t.3) = (receipt, *received_at_ms),
                None => tips.push((author.clone(), h.stream, receipt, *received_at_ms)),
            }
        }
        done.receipts.push(receipt);
    }
    // Every other stream: one receipt back to the author per stream and batch, for the batch's
    // last record. The hub took the records in chain order (each `prev_hash` the previous
    // header's hash), so a receipt for seq N vouches for seq 1..=N: every committed record is
    // receipted without doubling the author's downstream with one receipt per equity point.
    for (author, _, receipt, received_at_ms) in tips {
        let receipt_record =
            hub_record(&mut tx, hub, StreamId::RECEIPTS, &Body::Receipt(receipt), received_at_ms)
                .await?;
        crate::feed::append_to_device(&mut tx, &author, &receipt_record, received_at_ms).await?;
        if !done.touched.contains(&author) {
            done.touched.push(author);
        }
    }
    tx.commit().await?;
    Ok(done)
}

/// A `DeviceKeys` record of a device's own DEVICE stream: its account fingerprint goes on the
/// device's row when its keys are the enrolled ones ([`crate::devices::record_account_fingerprint`]).
/// One announcing other keys stays in the chain, unused (the hub has no key rotation): logged and
/// counted, like a misfiled kind. Neither changes the `DeviceKeys` relayed to followers, which is
/// the enrolment record ([`crate::feed::keys_record`]).
async fn device_keys(tx: &mut crate::feed::Tx, record: &Record) -> Result<(), StoreError> {
    let h = record.header();
    let keys = match record.body() {
        Ok(Body::DeviceKeys(keys)) => keys,
        // The session verified the signature, not the body: a body that does not decode is the
        // author's own problem, kept in its chain like any committed record.
        _ => {
            metrics::counter!("tradecast_sync_device_keys_unused_total", "why" => "body")
                .increment(1);
            tracing::warn!(author = %h.author.fmt_short(), seq = h.seq,
                "DeviceKeys record whose body does not decode: kept, not used");
            return Ok(());
        }
    };
    let update = crate::devices::record_account_fingerprint(tx, &h.author, &keys).await?;
    if update == crate::devices::FingerprintUpdate::ForeignKeys {
        metrics::counter!("tradecast_sync_device_keys_unused_total", "why" => "foreign_keys")
            .increment(1);
        tracing::warn!(author = %h.author.fmt_short(), seq = h.seq,
            "DeviceKeys record with keys other than the enrolled ones: kept, not used");
    }
    Ok(())
}

/// Signs `body` as the next record of the hub's own `stream` and stores it with the others
/// (author: the hub's device id), inside `tx`.
pub async fn hub_record(
    tx: &mut crate::feed::Tx,
    hub: &Identity,
    stream: StreamId,
    body: &Body,
    now_ms: i64,
) -> Result<Record, StoreError> {
    sqlx::query(
        "INSERT INTO hub_chains (stream, tip_seq, tip_hash) VALUES ($1, 0, $2) \
         ON CONFLICT (stream) DO NOTHING",
    )
    .bind(i64::from(stream.0))
    .bind(ChainHash::GENESIS.to_hex())
    .execute(&mut **tx)
    .await?;
    // The update takes the row's lock first: appends are ordered across hub instances.
    let row = sqlx::query(
        "UPDATE hub_chains SET tip_seq = tip_seq + 1 WHERE stream = $1 RETURNING tip_seq, tip_hash",
    )
    .bind(i64::from(stream.0))
    .fetch_one(&mut **tx)
    .await?;
    let seq: i64 = row.try_get(0)?;
    let prev: String = row.try_get(1)?;
    let fields = tradecast_protocol::HeaderFields {
        stream,
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt("hub chain seq".into()))?,
        prev_hash: hash_from_hex(&prev)?,
        created_at_ms: now_ms,
    };
    let record = Record::sign(hub, fields, body);
    let hash = record.header_hash().to_hex();
    sqlx::query("UPDATE hub_chains SET tip_hash = $2 WHERE stream = $1")
        .bind(i64::from(stream.0))
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    let own_receipt = Receipt::sign(hub, &record, now_ms);
    sqlx::query(
        "INSERT INTO sync_records (author, stream, seq, header_hash, record, received_at_ms, receipt_signature) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hub.device_id().to_text())
    .bind(i64::from(stream.0))
    .bind(seq)
    .bind(&hash)
    .bind(record.encode())
    .bind(now_ms)
    .bind(hex::encode(own_receipt.signature.0))
    .execute(&mut **tx)
    .await?;
    Ok(record)
}

/// A subscriber's approval or execution, as the provider's per-signal outcome (ignored for a
/// signal the hub never relayed).
async fn outcome(tx: &mut crate::feed::Tx, record: &Record, now_ms: i64) -> Result<(), StoreError> {
    let device = record.header().author.to_text();
    let (signal_id, decision, decided_at, retcode, price, volume, filled_at) = match record.body() {
        Ok(Body::Approval(a)) => {
            let decision = a.decision.as_str().to_owned();
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

/// Persists a quarantine (idempotent); a new one is an audited alarm (`sync.quarantine`) that
/// owners see in `GET /api/v1/sync/quarantines` until one of them releases it.
pub async fn quarantine(
    db: &Db,
    author: &DeviceId,
    stream: StreamId,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO sync_quarantine (author, stream, at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (author, stream) DO NOTHING",
    )
    .bind(author.to_text())
    .bind(i64::from(stream.0))
    .bind(now_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted > 0 {
        tracing::error!(author = %author.fmt_short(), stream = stream.0,
            "ALARM: equivocation — two records signed for one seq; the stream is quarantined until an owner releases it");
        let subject = format!("{}/{}", author.to_text(), stream.0);
        let entry = crate::audit::Entry {
            actor: "system",
            action: "sync.quarantine",
            subject: &subject,
            detail: serde_json::json!({ "author": author.to_text(), "stream": stream.0 }),
            request_id: "sync",
        };
        crate::audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A quarantined stream, for the owner's alarm list.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Quarantined {
    /// The author's device id (text form).
    pub author: String,
    /// The device's name and account, if it is enrolled here.
    pub device_name: Option<String>,
    pub user_id: Option<String>,
    /// The stream id (1 signals, 2 shared, 3 private, 4 device, 5 commands).
    pub stream: i64,
    /// When the hub quarantined it, unix ms.
    pub at_ms: i64,
}

/// Every quarantined stream, newest first.
pub async fn quarantined(db: &Db) -> Result<Vec<Quarantined>, StoreError> {
    let rows = sqlx::query(
        "SELECT q.author, d.name, d.user_id, q.stream, q.at_ms FROM sync_quarantine q \
         LEFT JOIN devices d ON d.id = q.author ORDER BY q.at_ms DESC, q.author, q.stream",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Quarantined {
                author: r.try_get(0)?,
                device_name: r.try_get(1)?,
                user_id: r.try_get(2)?,
                stream: r.try_get(3)?,
                at_ms: r.try_get(4)?,
            })
        })
        .collect()
}

/// Lifts a quarantine (an owner decided); whether there was one. Audited as `sync.release`.
pub async fn release(
    db: &Db,
    author: &str,
    stream: i64,
    actor: &str,
    request_id: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let mut tx = db.begin_write().await?;
    let n = sqlx::query("DELETE FROM sync_quarantine WHERE author = $1 AND stream = $2")
        .bind(author)
        .bind(stream)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n > 0 {
        let subject = format!("{author}/{stream}");
        let entry = crate::audit::Entry {
            actor,
            action: "sync.release",
            subject: &subject,
            detail: serde_json::json!({ "author": author, "stream": stream }),
            request_id,
        };
        crate::audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}

/// What one subscriber device did with a signal: the provider's per-signal status.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Outcome {
    pub device_id: String,
    /// Queued for the device, unix ms.
    pub queued_at_ms: i64,
    /// The device's node committed it (its feed ack), unix ms.
    pub delivered_at_ms: Option<i64>,
    /// `approved`, `rejected` or `expired`, from the node's signed approval.
    pub decision: Option<String>,
    pub decided_at_ms: Option<i64>,
    /// MT5's return code of the execution (10009: done).
    pub retcode: Option<i64>,
    /// Decimal strings.
    pub fill_price: Option<String>,
    pub fill_volume: Option<String>,
    pub filled_at_ms: Option<i64>,
}

const OUTCOME_COLUMNS: &str = "f.device_id, f.enqueued_at_ms, f.delivered_at_ms, o.decision, \
     o.decided_at_ms, o.retcode, o.fill_price, o.fill_volume, o.filled_at_ms";
const OUTCOME_JOIN: &str = "fanout_queue f LEFT JOIN signal_outcomes o \
     ON o.signal_id = f.signal_id AND o.device_id = f.device_id";

fn outcome_of(r: &sqlx::any::AnyRow) -> Result<Outcome, sqlx::Error> {
    Ok(Outcome {
        device_id: r.try_get(0)?,
        queued_at_ms: r.try_get(1)?,
        delivered_at_ms: r.try_get(2)?,
        decision: r.try_get(3)?,
        decided_at_ms: r.try_get(4)?,
        retcode: r.try_get(5)?,
        fill_price: r.try_get(6)?,
        fill_volume: r.try_get(7)?,
        filled_at_ms: r.try_get(8)?,
    })
}

/// Every device a signal was queued for, with what it did.
pub async fn outcomes(db: &Db, signal_id: &str) -> Result<Vec<Outcome>, StoreError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {OUTCOME_COLUMNS} FROM {OUTCOME_JOIN} WHERE f.signal_id = $1 ORDER BY f.device_id"
    ))
    .bind(signal_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(outcome_of).collect::<Result<_, _>>()?)
}

/// A signal queued for one of an account's devices, with what the device did.
#[derive(Debug, Clone)]
pub struct Received {
    /// The signal's id (hex).
    pub signal_id: String,
    /// Its symbol and side.
    pub symbol: String,
    pub side: String,
    /// The provider's account.
    pub provider_user_id: String,
    /// The device's status for it.
    pub outcome: Outcome,
}

/// The latest `limit` signals queued for `user_id`'s devices, newest first, each with the same
/// per-device outcome [`outcomes`] gives the provider.
pub async fn received_by_account(
    db: &Db,
    user_id: &str,
    limit: i64,
) -> Result<Vec<Received>, StoreError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {OUTCOME_COLUMNS}, s.id, s.symbol, s.side, s.provider_user_id FROM {OUTCOME_JOIN} \
         JOIN signals s ON s.id = f.signal_id JOIN devices d ON d.id = f.device_id \
         WHERE d.user_id = $1 ORDER BY f.enqueued_at_ms DESC, f.signal_id, f.device_id LIMIT $2"
    ))
    .bind(user_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Received {
                outcome: outcome_of(r)?,
                signal_id: r.try_get(9)?,
                symbol: r.try_get(10)?,
                side: r.try_get(11)?,
                provider_user_id: r.try_get(12)?,
            })
        })
        .collect()
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
