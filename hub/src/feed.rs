//! The downstream feed (migration 0005): what the hub relays to each device, in order.
//!
//! - **Contents.** A device's feed holds records unchanged, each with the feed's own `seq`
//!   (1, 2, 3 … per device): a provider's `Signal` (once verified and accepted, see
//!   [`crate::signals`]) for every entitled device; that provider's later `Modify` and `Close`
//!   records for every device the signal reached (entitlement may lapse, a copy must still be
//!   closed); and, before the first record of an author, that author's self-signed
//!   `DeviceKeys` record, so the node pins the provider's key on first sight and verifies every
//!   record itself. A record is stored once (`feed_records`, by header hash).
//! - **Appending** happens inside the transaction that accepts the record, so a committed signal
//!   is always queued and never queued twice. The caller rings the [`FeedBell`] of the devices
//!   it touched after the commit, so connected sessions send at once; the others catch up on
//!   reconnect.
//! - **Acknowledging**: the node's `FeedAck` (after its own durable commit) moves the device's
//!   mark ([`ack`]) and marks the signals up to it as delivered (`fanout_queue.delivered_at_ms`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::{Any, Row, Transaction};
use tokio::sync::Notify;
use tradecast_protocol::session::FeedItem;
use tradecast_protocol::{Kind, Record, StreamId};

use crate::db::{Db, DbError};

/// A write transaction of the hub's store.
pub type Tx = Transaction<'static, Any>;

fn kind_str(kind: Kind) -> String {
    format!("{kind:?}").to_lowercase()
}

/// Wakes the sessions of devices whose feed grew (one [`Notify`] per connected device).
#[derive(Debug, Clone, Default)]
pub struct FeedBell {
    inner: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl FeedBell {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bell of `device` (text form), created on first use.
    pub fn subscribe(&self, device: &str) -> Arc<Notify> {
        self.lock().entry(device.to_string()).or_default().clone()
    }

    /// Forgets `device`'s bell when no session holds it any more.
    pub fn release(&self, device: &str, bell: Arc<Notify>) {
        let mut map = self.lock();
        drop(bell);
        if map.get(device).is_some_and(|b| Arc::strong_count(b) == 1) {
            map.remove(device);
        }
    }

    /// Rings the bells of `devices` that have a session.
    pub fn ring(&self, devices: &[String]) {
        let map = self.lock();
        for d in devices {
            if let Some(bell) = map.get(d) {
                bell.notify_one();
            }
        }
    }
}

/// Stores `record` for relay, once by header hash; returns the hash (hex).
async fn store_record(tx: &mut Tx, record: &Record, now_ms: i64) -> Result<String, DbError> {
    let hash = record.header_hash().to_hex();
    sqlx::query(
        "INSERT INTO feed_records (header_hash, author, kind, record, stored_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (header_hash) DO NOTHING",
    )
    .bind(&hash)
    .bind(record.header().author.to_text())
    .bind(kind_str(record.header().kind))
    .bind(record.encode())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(hash)
}

/// The self-signed `DeviceKeys` record of `author` (text form): the one it enrolled with, else
/// the first record of its device stream as synced.
pub async fn keys_record(tx: &mut Tx, author: &str) -> Result<Option<Record>, DbError> {
    let enrolled: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT keys_record FROM devices WHERE id = $1")
            .bind(author)
            .fetch_optional(&mut **tx)
            .await?;
    let bytes = match enrolled.flatten() {
        Some(b) => Some(b),
        None => {
            sqlx::query_scalar(
                "SELECT record FROM sync_records WHERE author = $1 AND stream = $2 AND seq = 1",
            )
            .bind(author)
            .bind(i64::from(StreamId::DEVICE.0))
            .fetch_optional(&mut **tx)
            .await?
        }
    };
    let Some(bytes) = bytes else { return Ok(None) };
    let record = Record::decode(&bytes)
        .map_err(|e| DbError::Corrupt(format!("keys record of {author}: {e}")))?;
    Ok((record.header().kind == Kind::DeviceKeys).then_some(record))
}

/// Appends `record` (authored by a provider device, about signal `signal_id`) to the feed of
/// every device `signal_id` was queued for (`fanout_queue`), each feed carrying the author's
/// `DeviceKeys` record first if it has not yet. Returns the devices whose feed grew (ring them
/// after the commit). Without a keys record for the author nothing is appended (a node could not
/// verify it) and the error says so.
pub async fn append_for_signal(
    tx: &mut Tx,
    signal_id: &str,
    record: &Record,
    now_ms: i64,
) -> Result<Vec<String>, DbError> {
    let author = record.header().author.to_text();
    let keys = keys_record(tx, &author).await?.ok_or_else(|| {
        DbError::Corrupt(format!("no DeviceKeys record of {author}: its records cannot be relayed"))
    })?;
    let hash = store_record(tx, record, now_ms).await?;
    sqlx::query(
        "INSERT INTO device_feeds (device_id, tip, acked) \
         SELECT device_id, 0, 0 FROM fanout_queue WHERE signal_id = $1 \
         ON CONFLICT (device_id) DO NOTHING",
    )
    .bind(signal_id)
    .execute(&mut **tx)
    .await?;
    // Feeds that have not carried this author's key yet get it first.
    let new_for_author: Vec<String> = sqlx::query_scalar(
        "INSERT INTO feed_authors (device_id, author) \
         SELECT device_id, $2 FROM fanout_queue WHERE signal_id = $1 \
         ON CONFLICT (device_id, author) DO NOTHING RETURNING device_id",
    )
    .bind(signal_id)
    .bind(&author)
    .fetch_all(&mut **tx)
    .await?;
    if !new_for_author.is_empty() {
        let keys_hash = store_record(tx, &keys, now_ms).await?;
        for device in &new_for_author {
            let seq: i64 = sqlx::query_scalar(
                "UPDATE device_feeds SET tip = tip + 1 WHERE device_id = $1 RETURNING tip",
            )
            .bind(device)
            .fetch_one(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO feed_items (device_id, seq, header_hash, signal_id, enqueued_at_ms) \
                 VALUES ($1, $2, $3, NULL, $4)",
            )
            .bind(device)
            .bind(seq)
            .bind(&keys_hash)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
        }
    }
    let devices: Vec<String> = sqlx::query_scalar(
        "UPDATE device_feeds SET tip = tip + 1 \
         WHERE device_id IN (SELECT device_id FROM fanout_queue WHERE signal_id = $1) \
         RETURNING device_id",
    )
    .bind(signal_id)
    .fetch_all(&mut **tx)
    .await?;
    let signal_ref = (record.header().kind == Kind::Signal).then_some(signal_id);
    sqlx::query(
        "INSERT INTO feed_items (device_id, seq, header_hash, signal_id, enqueued_at_ms) \
         SELECT d.device_id, d.tip, $2, $3, $4 FROM device_feeds d \
         JOIN fanout_queue f ON f.device_id = d.device_id WHERE f.signal_id = $1",
    )
    .bind(signal_id)
    .bind(&hash)
    .bind(signal_ref)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(devices)
}

/// A device's feed: (tip, acked).
pub async fn marks(db: &Db, device: &str) -> Result<(u64, u64), DbError> {
    let row = sqlx::query("SELECT tip, acked FROM device_feeds WHERE device_id = $1")
        .bind(device)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok((0, 0)) };
    let tip: i64 = row.try_get(0)?;
    let acked: i64 = row.try_get(1)?;
    Ok((u64::try_from(tip).unwrap_or(0), u64::try_from(acked).unwrap_or(0)))
}

/// Up to `max` items of `device`'s feed from `from_seq`, in `seq` order.
pub async fn items(
    db: &Db,
    device: &str,
    from_seq: u64,
    max: usize,
) -> Result<Vec<FeedItem>, DbError> {
    let rows = sqlx::query(
        "SELECT i.seq, r.record FROM feed_items i JOIN feed_records r ON r.header_hash = i.header_hash \
         WHERE i.device_id = $1 AND i.seq >= $2 ORDER BY i.seq LIMIT $3",
    )
    .bind(device)
    .bind(i64::try_from(from_seq).unwrap_or(i64::MAX))
    .bind(i64::try_from(max).unwrap_or(i64::MAX))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get(0)?;
            let bytes: Vec<u8> = row.try_get(1)?;
            let record = Record::decode(&bytes)
                .map_err(|e| DbError::Corrupt(format!("feed item {device}/{seq}: {e}")))?;
            Ok(FeedItem { seq: u64::try_from(seq).unwrap_or(0), record })
        })
        .collect()
}

/// The node committed its feed up to `seq`: move the mark (never back) and mark the signals up
/// to it as delivered.
pub async fn ack(db: &Db, device: &str, seq: u64, now_ms: i64) -> Result<(), DbError> {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "UPDATE device_feeds SET acked = $2, acked_at_ms = $3 WHERE device_id = $1 AND acked < $2",
    )
    .bind(device)
    .bind(seq)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE fanout_queue SET delivered_at_ms = $3 WHERE device_id = $1 \
         AND delivered_at_ms IS NULL AND signal_id IN \
         (SELECT signal_id FROM feed_items WHERE device_id = $1 AND seq <= $2 AND signal_id IS NOT NULL)",
    )
    .bind(device)
    .bind(seq)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
