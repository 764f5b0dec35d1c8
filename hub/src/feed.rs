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
//!   Sessions go through [`FeedBell::ack`], which commits the acks of all sessions that arrive
//!   together in one transaction (a signal fanned out to 10,000 devices is acknowledged in a
//!   few commits, not 10,000).
//! - **Tip check**: [`FeedBell::watch_tips`] looks, once per hub every 2 s, for feeds that grew
//!   without a bell (another hub instance appended) and rings their connected sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::{Any, Row, Transaction};
use tokio::sync::Notify;
use tradecast_protocol::session::FeedItem;
use tradecast_protocol::{Kind, Record, StreamId};

use crate::db::{Db, DbError};

/// A write transaction of the hub's store.
pub type Tx = Transaction<'static, Any>;

/// A record kind's stored text form (`signal`, `devicekeys`, …).
pub(crate) fn kind_str(kind: Kind) -> String {
    format!("{kind:?}").to_lowercase()
}

/// Wakes the sessions of devices whose feed grew (one [`Notify`] per connected device), and
/// group-commits their acks ([`FeedBell::ack`]).
#[derive(Debug, Clone, Default)]
pub struct FeedBell {
    inner: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    acks: Arc<AckGroup>,
    watching: Arc<std::sync::atomic::AtomicBool>,
}

/// Acks queued by the sessions; one of them at a time (the leader) commits all that are queued
/// in one transaction.
#[derive(Debug, Default)]
struct AckGroup {
    queue: Mutex<Vec<PendingAck>>,
    leader: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct PendingAck {
    device: String,
    seq: u64,
    now_ms: i64,
    /// `true` once committed; `false` when the group's transaction failed.
    done: tokio::sync::oneshot::Sender<bool>,
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

    /// Starts, once per hub, the tip check for feeds that grew without a bell (another hub
    /// instance appended): every `every`, one query lists the devices whose feed holds items
    /// they have not acknowledged, and the connected ones among them are rung (a session that
    /// has nothing new finds nothing). One query per hub instead of one per connected session.
    /// The task ends when the database closes or the bell is dropped.
    pub fn watch_tips(&self, db: &Db, every: std::time::Duration) {
        if self.watching.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let map = Arc::downgrade(&self.inner);
        let db = db.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if map.strong_count() == 0 || db.pool().is_closed() {
                    return;
                }
                let devices: Vec<String> = match sqlx::query_scalar(
                    "SELECT device_id FROM device_feeds WHERE tip > acked",
                )
                .fetch_all(db.pool())
                .await
                {
                    Ok(d) => d,
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "feed tip check failed");
                        continue;
                    }
                };
                let Some(map) = map.upgrade() else { return };
                let map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for d in &devices {
                    if let Some(bell) = map.get(d) {
                        bell.notify_one();
                    }
                }
            }
        });
    }

    /// Rings the connected sessions whose feed holds items they have not acknowledged (one
    /// query): what another instance's cluster message asks for.
    pub async fn ring_unacked(&self, db: &Db) {
        match sqlx::query_scalar::<_, String>(
            "SELECT device_id FROM device_feeds WHERE tip > acked",
        )
        .fetch_all(db.pool())
        .await
        {
            Ok(devices) => self.ring(&devices),
            Err(e) => tracing::warn!(error = %e, "feed tip check failed"),
        }
    }

    /// [`ack`], group-committed: the acks that sessions queue while one transaction commits
    /// are committed together in the next (one fsync for all of them, not one per device, so a
    /// signal fanned out to thousands of devices is not acknowledged at one commit per
    /// device). Returns once this ack is durable. If a group's transaction fails, each of its
    /// acks is retried alone, so one bad ack cannot fail the others.
    pub async fn ack(&self, db: &Db, device: &str, seq: u64, now_ms: i64) -> Result<(), DbError> {
        let (done, mut result) = tokio::sync::oneshot::channel();
        let pending = PendingAck { device: device.to_string(), seq, now_ms, done };
        self.acks.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(pending);
        loop {
            tokio::select! {
                biased;
                r = &mut result => {
                    return match r {
                        Ok(true) => Ok(()),
                        // The group failed (or its leader was cancelled): commit this one alone.
                        Ok(false) | Err(_) => ack(db, device, seq, now_ms).await,
                    };
                }
                _leader = self.acks.leader.lock() => {
                    let group = std::mem::take(
                        &mut *self.acks.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
                    );
                    // Empty: a previous leader took ours and has answered (it answers before
                    // it lets go of the lock).
                    if !group.is_empty() {
                        let ok = ack_all(db, &group).await.is_ok();
                        for p in group {
                            let _ = p.done.send(ok);
                        }
                    }
                }
            }
        }
    }
}

/// Stores `record` for relay, once by header hash; returns the hash (hex).
async fn store_record(tx: &mut Tx, record: &Record, now_ms: i64) -> Result<String, DbError> {
    store_encoded(tx, record, &record.encode(), now_ms).await
}

/// [`store_record`] with the record's encoding already made (`bytes`, encoded once by the
/// caller, which relays the same bytes).
pub(crate) async fn store_encoded(
    tx: &mut Tx,
    record: &Record,
    bytes: &[u8],
    now_ms: i64,
) -> Result<String, DbError> {
    let hash = record.header_hash().to_hex();
    sqlx::query(
        "INSERT INTO feed_records (header_hash, author, kind, record, stored_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (header_hash) DO NOTHING",
    )
    .bind(&hash)
    .bind(record.header().author.to_text())
    .bind(kind_str(record.header().kind))
    .bind(bytes)
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
            append_item(tx, device, &keys_hash, now_ms).await?;
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

/// Appends `record` (the hub's own) to one device's feed; returns the feed `seq`.
pub async fn append_to_device(
    tx: &mut Tx,
    device: &str,
    record: &Record,
    now_ms: i64,
) -> Result<u64, DbError> {
    let hash = store_record(tx, record, now_ms).await?;
    sqlx::query(
        "INSERT INTO device_feeds (device_id, tip, acked) VALUES ($1, 0, 0) \
         ON CONFLICT (device_id) DO NOTHING",
    )
    .bind(device)
    .execute(&mut **tx)
    .await?;
    append_item(tx, device, &hash, now_ms).await
}

/// Appends the stored record `header_hash` at the next `seq` of `device`'s feed (whose
/// `device_feeds` row exists); returns that `seq`.
async fn append_item(
    tx: &mut Tx,
    device: &str,
    header_hash: &str,
    now_ms: i64,
) -> Result<u64, DbError> {
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
    .bind(header_hash)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(u64::try_from(seq).unwrap_or(0))
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

/// What the hub knows of a device's link: its feed's marks and when it was last heard from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkHealth {
    /// The feed's last seq and the seq the node committed.
    pub tip: u64,
    pub acked: u64,
    /// When the node last acknowledged its feed, unix ms.
    pub last_ack_ms: Option<i64>,
    /// When the hub last stored a record the device sent upstream, unix ms.
    pub last_record_ms: Option<i64>,
}

/// `device`'s [`LinkHealth`].
pub async fn link_health(db: &Db, device: &str) -> Result<LinkHealth, DbError> {
    let (tip, acked) = marks(db, device).await?;
    let last_ack_ms: Option<i64> =
        sqlx::query_scalar("SELECT acked_at_ms FROM device_feeds WHERE device_id = $1")
            .bind(device)
            .fetch_optional(db.pool())
            .await?
            .flatten();
    let last_record_ms: Option<i64> =
        sqlx::query_scalar("SELECT MAX(received_at_ms) FROM sync_records WHERE author = $1")
            .bind(device)
            .fetch_one(db.pool())
            .await?;
    Ok(LinkHealth { tip, acked, last_ack_ms, last_record_ms })
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

/// [`items`] as the sync session sends them: each record's stored bytes, not decoded and
/// encoded again (the node decodes and verifies every record itself).
pub async fn entries(
    db: &Db,
    device: &str,
    from_seq: u64,
    max: usize,
) -> Result<Vec<tradecast_protocol::session::LogEntry>, DbError> {
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
            let seq = u64::try_from(seq).unwrap_or(0);
            Ok(tradecast_protocol::session::LogEntry { seq, record: bytes.into() })
        })
        .collect()
}

/// The node committed its feed up to `seq`: move the mark (never back) and mark the signals up
/// to it as delivered. Sessions use [`FeedBell::ack`], which commits many acks at once.
pub async fn ack(db: &Db, device: &str, seq: u64, now_ms: i64) -> Result<(), DbError> {
    let mut tx = db.begin_write().await?;
    let delivered = ack_in(&mut tx, device, seq, now_ms).await?;
    tx.commit().await?;
    observe_delivered(now_ms, &delivered);
    Ok(())
}

/// Records the delivery time of signals newly acknowledged (after their commit: a group that
/// failed and was retried ack by ack is observed once).
pub(crate) fn observe_delivered(now_ms: i64, enqueued_at_ms: &[i64]) {
    for at in enqueued_at_ms {
        let seconds = now_ms.saturating_sub(*at).max(0) as f64 / 1000.0;
        metrics::histogram!(crate::scrape::FANOUT_DELIVERY).record(seconds);
    }
}

async fn ack_all(db: &Db, group: &[PendingAck]) -> Result<(), DbError> {
    let mut tx = db.begin_write().await?;
    let mut delivered = Vec::with_capacity(group.len());
    for p in group {
        delivered.push((p.now_ms, ack_in(&mut tx, &p.device, p.seq, p.now_ms).await?));
    }
    tx.commit().await?;
    for (now_ms, at) in &delivered {
        observe_delivered(*now_ms, at);
    }
    Ok(())
}

/// Returns the fan-out times (`enqueued_at_ms`) of the signals this ack delivered first.
async fn ack_in(tx: &mut Tx, device: &str, seq: u64, now_ms: i64) -> Result<Vec<i64>, DbError> {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    // The signals between the previous mark and `seq`, found by the keys (feed_items by device
    // and seq, fanout_queue by signal and device): never a scan of every pending delivery,
    // which made each ack cost O(devices) when one signal was pending for thousands.
    let delivered: Vec<i64> = sqlx::query_scalar(
        "UPDATE fanout_queue SET delivered_at_ms = COALESCE(delivered_at_ms, $3) \
         WHERE device_id = $1 AND delivered_at_ms IS NULL AND signal_id IN (SELECT signal_id \
         FROM feed_items WHERE device_id = $1 AND seq <= $2 AND signal_id IS NOT NULL \
         AND seq > (SELECT acked FROM device_feeds WHERE device_id = $1)) \
         RETURNING enqueued_at_ms",
    )
    .bind(device)
    .bind(seq)
    .bind(now_ms)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE device_feeds SET acked = $2, acked_at_ms = $3 WHERE device_id = $1 AND acked < $2",
    )
    .bind(device)
    .bind(seq)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db_with_feeds(dir: &std::path::Path, n: usize, tip: i64) -> (Db, Vec<String>) {
        let db = Db::connect(&Db::sqlite_url_in(dir), 4).await.unwrap();
        db.migrate().await.unwrap();
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, role, display_name, created_at_ms) \
             VALUES ('u', 'u@example.com', '!', 'subscriber', 'u', 0)",
        )
        .execute(db.pool())
        .await
        .unwrap();
        let mut devices = Vec::new();
        for i in 0..n {
            let d = format!("dev{i}");
            sqlx::query(
                "INSERT INTO devices (id, user_id, name, identity_key, sealing_key, enrolled_at_ms) \
                 VALUES ($1, 'u', $1, $1, $1, 0)",
            )
            .bind(&d)
            .execute(db.pool())
            .await
            .unwrap();
            sqlx::query("INSERT INTO device_feeds (device_id, tip, acked) VALUES ($1, $2, 0)")
                .bind(&d)
                .bind(tip)
                .execute(db.pool())
                .await
                .unwrap();
            devices.push(d);
        }
        (db, devices)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_acks_are_committed_together_and_never_move_back() {
        let dir = tempfile::tempdir().unwrap();
        let (db, devices) = db_with_feeds(dir.path(), 40, 3).await;
        let bell = FeedBell::default();
        let mut set = tokio::task::JoinSet::new();
        for d in &devices {
            let (bell, db, d) = (bell.clone(), db.clone(), d.clone());
            set.spawn(async move { bell.ack(&db, &d, 2, 1_000).await });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        for d in &devices {
            assert_eq!(marks(&db, d).await.unwrap(), (3, 2));
        }
        let at: Vec<Option<i64>> = sqlx::query_scalar("SELECT acked_at_ms FROM device_feeds")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert!(at.iter().all(|a| *a == Some(1_000)), "{at:?}");
        // An older ack does not move the mark back.
        bell.ack(&db, &devices[0], 1, 2_000).await.unwrap();
        assert_eq!(marks(&db, &devices[0]).await.unwrap(), (3, 2));
        bell.ack(&db, &devices[0], 3, 3_000).await.unwrap();
        assert_eq!(marks(&db, &devices[0]).await.unwrap(), (3, 3));
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tip_check_rings_only_connected_devices_with_unacked_items() {
        let dir = tempfile::tempdir().unwrap();
        let (db, devices) = db_with_feeds(dir.path(), 2, 0).await;
        let bell = FeedBell::default();
        let grown = bell.subscribe(&devices[0]);
        let idle = bell.subscribe(&devices[1]);
        bell.watch_tips(&db, std::time::Duration::from_millis(50));
        bell.watch_tips(&db, std::time::Duration::from_millis(50)); // once per hub
        // Nothing appended: nobody is rung.
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), async {
            tokio::select! { () = grown.notified() => {}, () = idle.notified() => {} }
        })
        .await;
        assert!(quiet.is_err(), "rung without a new item");
        // Another hub instance appends to the first device's feed (no bell here).
        sqlx::query("UPDATE device_feeds SET tip = 1 WHERE device_id = $1")
            .bind(&devices[0])
            .execute(db.pool())
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), grown.notified())
            .await
            .expect("the tip check rings the grown feed");
        let other =
            tokio::time::timeout(std::time::Duration::from_millis(200), idle.notified()).await;
        assert!(other.is_err(), "the device without new items was rung");
        db.close().await;
    }
}
