//! The shared relay log (protocol version 2 downstream, migration 0007): one log per provider
//! device, followed by every subscriber of that provider as its [`Source::Relay`].
//!
//! - **Accepting is O(1)**: a provider's `Signal`, `Modify` or `Close` is stored once
//!   (`feed_records`) and appended to its device's log at the next `seq` ([`append_in`]), in the
//!   transaction that accepts it; the log's first entry is the provider's self-signed
//!   `DeviceKeys` record, so a node pins the key before it verifies anything else. No row is
//!   written per subscriber.
//! - **Who sees an entry** is one rule, [`Viewer::sees`], used by the live broadcast and by the
//!   catch-up pages alike: the `DeviceKeys` entry is seen by every follower; a signal's entries
//!   (the signal, its modifications and its close) by a device enrolled before the signal's
//!   acceptance whose account was entitled to the provider at that instant (`visible_at_ms`).
//!   Entitlements are append-only intervals whose end is never earlier than now, so what a
//!   device may see of the past never changes, and a `Close` reaches every device that saw its
//!   signal even after the plan lapsed.
//! - **Live broadcast**: after the commit, [`Registry::broadcast`] hands the entry — encoded
//!   once, the same bytes for every session — to each connected session following the
//!   provider (an in-memory registry, updated as sessions come and go and as entitlements
//!   change). SQL is read only for catch-up, in pages ([`load`]).
//! - **Cursors** ([`CursorWriter`]): the nodes' acknowledgements are written in batches (every
//!   50 ms or 1,000 acks, one multi-row upsert that never moves a cursor back), off every
//!   session's path, together with the delivery times of the signals they cover. A hub killed
//!   between two batches has lost cursor positions only: the items are sent again and the nodes
//!   drop what they hold (they deduplicate by `seq` and by signal id).
//! - **Outcomes**: the expected per-device rows of the provider's outcome view (`fanout_queue`)
//!   are written after the commit, off the fan-out's path ([`write_expected`]); a restart writes
//!   those a crash left out ([`write_missing_expected`]).
//! - **Several instances**: the instance that appends publishes `(source, seq)` on the cluster
//!   bus; the others tell their sessions of that log the new tip ([`Registry::tip`]) and those
//!   read the entry from the store with the same rule.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{Notify, mpsc};
use tradecast_protocol::session::{LogEntry, Source};
use tradecast_protocol::{DeviceId, Kind, Record};

use crate::db::{Db, DbError};
use crate::feed::Tx;

/// Who may see a log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every follower of the log (the provider's `DeviceKeys`).
    Always,
    /// Devices enrolled by this instant whose account was entitled to the provider at it.
    EntitledAt(i64),
}

impl View {
    fn from_sql(visible_at_ms: Option<i64>) -> View {
        visible_at_ms.map_or(View::Always, View::EntitledAt)
    }
}

/// One device's standing towards one provider: what [`View`] rules are checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    /// When the device enrolled, unix ms.
    pub enrolled_at_ms: i64,
    /// The account's entitlement intervals on the provider's plans: `[start, end)`.
    pub intervals: Vec<(i64, Option<i64>)>,
}

impl Viewer {
    /// Whether the device may see an entry with this rule.
    pub fn sees(&self, view: View) -> bool {
        match view {
            View::Always => true,
            View::EntitledAt(at) => {
                self.enrolled_at_ms <= at
                    && self
                        .intervals
                        .iter()
                        .any(|(start, end)| *start <= at && end.is_none_or(|e| e > at))
            }
        }
    }
}

/// An entry as committed: its place, its bytes and its rule.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The provider's account.
    pub provider_user_id: String,
    /// The log (the provider device).
    pub provider_device: DeviceId,
    pub entry: LogEntry,
    pub view: View,
    /// The signal's id when the entry is a `Signal` (its outcome rows are written after).
    pub new_signal: Option<String>,
}

/// Appends `record` (authored by `provider_device`, about signal `signal_id`, visible by
/// `view`) to that device's relay log inside `tx`, with the device's `DeviceKeys` record first
/// when the log is new. Returns what was appended, in order (broadcast it after the commit).
pub async fn append_in(
    tx: &mut Tx,
    provider_user_id: &str,
    record: &Record,
    signal_id: Option<&str>,
    view: View,
    now_ms: i64,
) -> Result<Vec<Appended>, DbError> {
    let author = record.header().author;
    let device = author.to_text();
    let created = sqlx::query(
        "INSERT INTO relay_tips (provider_device, provider_user_id, tip) VALUES ($1, $2, 0) \
         ON CONFLICT (provider_device) DO NOTHING",
    )
    .bind(&device)
    .bind(provider_user_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let mut appended = Vec::with_capacity(2);
    if created > 0 {
        let keys = crate::feed::keys_record(tx, &device).await?.ok_or_else(|| {
            DbError::Corrupt(format!(
                "no DeviceKeys record of {device}: its records cannot be relayed"
            ))
        })?;
        let entry = append_one(tx, &device, &keys, None, View::Always, now_ms).await?;
        appended.push(Appended {
            provider_user_id: provider_user_id.to_string(),
            provider_device: author,
            entry,
            view: View::Always,
            new_signal: None,
        });
    }
    let entry = append_one(tx, &device, record, signal_id, view, now_ms).await?;
    appended.push(Appended {
        provider_user_id: provider_user_id.to_string(),
        provider_device: author,
        entry,
        view,
        new_signal: signal_id.filter(|_| record.header().kind == Kind::Signal).map(str::to_string),
    });
    Ok(appended)
}

async fn append_one(
    tx: &mut Tx,
    device: &str,
    record: &Record,
    signal_id: Option<&str>,
    view: View,
    now_ms: i64,
) -> Result<LogEntry, DbError> {
    let bytes = record.encode();
    let hash = crate::feed::store_encoded(tx, record, &bytes, now_ms).await?;
    // The row lock orders appends to one log across connections and hub instances.
    let seq: i64 = sqlx::query_scalar(
        "UPDATE relay_tips SET tip = tip + 1 WHERE provider_device = $1 RETURNING tip",
    )
    .bind(device)
    .fetch_one(&mut **tx)
    .await?;
    let visible_at_ms = match view {
        View::Always => None,
        View::EntitledAt(at) => Some(at),
    };
    sqlx::query(
        "INSERT INTO relay_log (provider_device, seq, header_hash, kind, signal_id, visible_at_ms, \
         committed_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(device)
    .bind(seq)
    .bind(&hash)
    .bind(crate::feed::kind_str(record.header().kind))
    .bind(signal_id)
    .bind(visible_at_ms)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(LogEntry { seq: u64::try_from(seq).unwrap_or(0), record: bytes.into() })
}

/// Whether signal `signal_id` travels in a relay log (accepted after migration 0007); older
/// signals travel, with their modifications and close, in the inboxes they were queued to.
pub async fn carries_signal(tx: &mut Tx, signal_id: &str) -> Result<bool, DbError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM relay_log WHERE signal_id = $1 AND kind = 'signal'",
    )
    .bind(signal_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(n > 0)
}

/// A page of catch-up: the entries of `provider_device`'s log after `after` that `viewer`
/// sees, at most `max` of them, and how far the page looked (`scanned_to`, seen or not).
pub async fn load(
    db: &Db,
    provider_device: &DeviceId,
    after: u64,
    max: usize,
    viewer: &Viewer,
) -> Result<(Vec<LogEntry>, u64), DbError> {
    // Entries before the device's first possible sight are skipped in SQL (an index range);
    // the rule itself is applied in Rust, the same as for the live broadcast.
    let first_sight = viewer
        .intervals
        .iter()
        .map(|(start, _)| *start)
        .min()
        .unwrap_or(i64::MAX)
        .max(viewer.enrolled_at_ms);
    let scan = max.clamp(256, 1024);
    // The tip before the page: every entry up to it is committed and readable by the query.
    let tip_before = tip(db, provider_device).await?;
    let rows = sqlx::query(
        "SELECT l.seq, l.visible_at_ms, r.record FROM relay_log l \
         JOIN feed_records r ON r.header_hash = l.header_hash \
         WHERE l.provider_device = $1 AND l.seq > $2 \
         AND (l.visible_at_ms IS NULL OR l.visible_at_ms >= $3) ORDER BY l.seq LIMIT $4",
    )
    .bind(provider_device.to_text())
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    .bind(first_sight)
    .bind(i64::try_from(scan).unwrap_or(1024))
    .fetch_all(db.pool())
    .await?;
    let mut entries = Vec::new();
    let mut scanned_to = after;
    let mut full = false;
    for row in &rows {
        let seq = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0);
        let view = View::from_sql(row.try_get(1)?);
        if viewer.sees(view) {
            if entries.len() == max {
                full = true;
                break;
            }
            let bytes: Vec<u8> = row.try_get(2)?;
            entries.push(LogEntry { seq, record: bytes.into() });
        }
        scanned_to = seq;
    }
    if !full && rows.len() < scan {
        // The page read all the filter lets through: the entries it skipped up to the tip are
        // before the device's first possible sight.
        scanned_to = scanned_to.max(tip_before);
    }
    Ok((entries, scanned_to))
}

/// The last `seq` of `provider_device`'s log (0: none yet).
pub async fn tip(db: &Db, provider_device: &DeviceId) -> Result<u64, DbError> {
    let tip: Option<i64> =
        sqlx::query_scalar("SELECT tip FROM relay_tips WHERE provider_device = $1")
            .bind(provider_device.to_text())
            .fetch_optional(db.pool())
            .await?;
    Ok(tip.and_then(|t| u64::try_from(t).ok()).unwrap_or(0))
}

/// What a session follows of the relay logs when it begins.
#[derive(Debug, Clone, Default)]
pub struct Following {
    /// The providers (accounts) whose plans the device's account ever held, each with the
    /// device's standing towards it.
    pub viewers: HashMap<String, Viewer>,
    /// The logs of those providers' devices: (log, its provider, the device's stored cursor,
    /// the log's tip).
    pub logs: Vec<(DeviceId, String, u64, u64)>,
}

/// What `device` of `user_id` follows: every log of every provider whose plan the account ever
/// held (a `Close` must reach a device whose plan lapsed), with its stored cursor.
pub async fn following(db: &Db, user_id: &str, device: &str) -> Result<Following, DbError> {
    let enrolled_at_ms: Option<i64> =
        sqlx::query_scalar("SELECT enrolled_at_ms FROM devices WHERE id = $1")
            .bind(device)
            .fetch_optional(db.pool())
            .await?;
    let enrolled_at_ms = enrolled_at_ms.unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT p.provider_user_id, e.starts_at_ms, e.expires_at_ms, e.revoked_at_ms \
         FROM entitlements e JOIN plans p ON p.id = e.plan_id \
         WHERE e.user_id = $1 AND p.provider_user_id <> $1",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    let mut viewers: HashMap<String, Viewer> = HashMap::new();
    for row in &rows {
        let provider: String = row.try_get(0)?;
        let start: i64 = row.try_get(1)?;
        let expires: Option<i64> = row.try_get(2)?;
        let revoked: Option<i64> = row.try_get(3)?;
        let end = crate::entitlements::interval_end(expires, revoked);
        viewers
            .entry(provider)
            .or_insert_with(|| Viewer { enrolled_at_ms, intervals: Vec::new() })
            .intervals
            .push((start, end));
    }
    let mut logs = Vec::new();
    if !viewers.is_empty() {
        let rows = sqlx::query(
            "SELECT t.provider_device, t.provider_user_id, t.tip, COALESCE(c.seq, 0) \
             FROM relay_tips t JOIN plans p ON p.provider_user_id = t.provider_user_id \
             JOIN entitlements e ON e.plan_id = p.id AND e.user_id = $1 \
             LEFT JOIN relay_cursors c ON c.device_id = $2 AND c.provider_device = t.provider_device \
             WHERE t.provider_user_id <> $1 \
             GROUP BY t.provider_device, t.provider_user_id, t.tip, c.seq ORDER BY t.provider_device",
        )
        .bind(user_id)
        .bind(device)
        .fetch_all(db.pool())
        .await?;
        for row in &rows {
            let log: String = row.try_get(0)?;
            let Ok(log) = DeviceId::parse(&log) else {
                return Err(DbError::Corrupt(format!("relay log of {log:?}")));
            };
            let provider: String = row.try_get(1)?;
            let tip = u64::try_from(row.try_get::<i64, _>(2)?).unwrap_or(0);
            let cursor = u64::try_from(row.try_get::<i64, _>(3)?).unwrap_or(0);
            logs.push((log, provider, cursor.min(tip), tip));
        }
    }
    Ok(Following { viewers, logs })
}

/// For each relay log `device` follows: the last entry it may see (its node's cursor reaches
/// it once the node holds everything; 0 when it may see none yet).
pub async fn visible_tips(db: &Db, device: &str) -> Result<Vec<(DeviceId, u64)>, DbError> {
    let user_id: Option<String> = sqlx::query_scalar("SELECT user_id FROM devices WHERE id = $1")
        .bind(device)
        .fetch_optional(db.pool())
        .await?;
    let Some(user_id) = user_id else { return Ok(Vec::new()) };
    let following = following(db, &user_id, device).await?;
    let mut out = Vec::with_capacity(following.logs.len());
    for (log, provider, _, _) in following.logs {
        let viewer = following.viewers.get(&provider).cloned().unwrap_or_default();
        let (mut after, mut last_seen) = (0, 0);
        loop {
            let (entries, scanned_to) = load(db, &log, after, 1024, &viewer).await?;
            if let Some(e) = entries.last() {
                last_seen = e.seq;
            }
            if scanned_to <= after {
                break;
            }
            after = scanned_to;
        }
        out.push((log, last_seen));
    }
    Ok(out)
}

/// The stored cursor of `device` in `provider_device`'s log (0: none).
pub async fn cursor(db: &Db, device: &str, provider_device: &DeviceId) -> Result<u64, DbError> {
    let seq: Option<i64> = sqlx::query_scalar(
        "SELECT seq FROM relay_cursors WHERE device_id = $1 AND provider_device = $2",
    )
    .bind(device)
    .bind(provider_device.to_text())
    .fetch_optional(db.pool())
    .await?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}

/// What the registry hands a session.
#[derive(Debug, Clone)]
pub enum RelayMsg {
    /// A committed entry of a log this session's account follows.
    Entry(Arc<Appended>),
    /// A log grew to `tip` (another instance appended): read it from the store.
    Tip { provider_user_id: String, provider_device: DeviceId, tip: u64 },
    /// The account's entitlements changed: reload the viewers.
    Refresh,
}

/// Messages queued per session at most; past it the session is told to re-read the tips.
const SESSION_QUEUE: usize = 256;

/// The sessions of this instance by the providers they follow (in memory).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<RegistryInner>>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    next: u64,
    subs: HashMap<u64, Sub>,
    by_provider: HashMap<String, HashSet<u64>>,
    by_user: HashMap<String, HashSet<u64>>,
}

#[derive(Debug)]
struct Sub {
    user: String,
    providers: HashSet<String>,
    tx: mpsc::Sender<RelayMsg>,
    lagged: Arc<Notify>,
}

/// A session's place in the [`Registry`] (leaves it when dropped).
#[derive(Debug)]
pub struct Membership {
    id: u64,
    registry: Registry,
    /// The messages for this session.
    pub rx: mpsc::Receiver<RelayMsg>,
    /// Notified when messages were dropped because the queue was full: re-read the tips.
    pub lagged: Arc<Notify>,
}

impl Membership {
    /// Follows `providers` from now on (after a grant).
    pub fn follow(&self, providers: impl IntoIterator<Item = String>) {
        let mut inner = self.registry.lock();
        let mut added = Vec::new();
        if let Some(sub) = inner.subs.get_mut(&self.id) {
            for p in providers {
                if sub.providers.insert(p.clone()) {
                    added.push(p);
                }
            }
        }
        for p in added {
            inner.by_provider.entry(p).or_default().insert(self.id);
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some(sub) = inner.subs.remove(&self.id) {
            for p in &sub.providers {
                if let Some(set) = inner.by_provider.get_mut(p) {
                    set.remove(&self.id);
                    if set.is_empty() {
                        inner.by_provider.remove(p);
                    }
                }
            }
            if let Some(set) = inner.by_user.get_mut(&sub.user) {
                set.remove(&self.id);
                if set.is_empty() {
                    inner.by_user.remove(&sub.user);
                }
            }
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a session of `user_id` following `providers`.
    pub fn join(&self, user_id: &str, providers: impl IntoIterator<Item = String>) -> Membership {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let lagged = Arc::new(Notify::new());
        let providers: HashSet<String> = providers.into_iter().collect();
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        for p in &providers {
            inner.by_provider.entry(p.clone()).or_default().insert(id);
        }
        inner.by_user.entry(user_id.to_string()).or_default().insert(id);
        let sub = Sub { user: user_id.to_string(), providers, tx, lagged: lagged.clone() };
        inner.subs.insert(id, sub);
        Membership { id, registry: self.clone(), rx, lagged }
    }

    /// Sessions registered (for the gauges and tests).
    pub fn sessions(&self) -> usize {
        self.lock().subs.len()
    }

    fn send(inner: &RegistryInner, ids: Option<&HashSet<u64>>, msg: &RelayMsg) -> usize {
        let Some(ids) = ids else { return 0 };
        let mut n = 0;
        for id in ids {
            if let Some(sub) = inner.subs.get(id) {
                match sub.tx.try_send(msg.clone()) {
                    Ok(()) => n += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => sub.lagged.notify_one(),
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        n
    }

    /// Hands committed entries to every session following their provider (the same bytes to
    /// each; each session applies [`Viewer::sees`]). Returns the sessions reached.
    pub fn broadcast(&self, appended: &[Appended]) -> usize {
        let inner = self.lock();
        let mut n = 0;
        for a in appended {
            let ids = inner.by_provider.get(&a.provider_user_id);
            n = n.max(Self::send(&inner, ids, &RelayMsg::Entry(Arc::new(a.clone()))));
        }
        n
    }

    /// Another instance appended to `provider_device`'s log up to `tip`.
    pub fn tip(&self, provider_user_id: &str, provider_device: DeviceId, tip: u64) {
        let inner = self.lock();
        let msg =
            RelayMsg::Tip { provider_user_id: provider_user_id.to_string(), provider_device, tip };
        Self::send(&inner, inner.by_provider.get(provider_user_id), &msg);
    }

    /// `user_id`'s entitlements changed: its sessions reload what they follow.
    pub fn refresh_user(&self, user_id: &str) {
        let inner = self.lock();
        Self::send(&inner, inner.by_user.get(user_id), &RelayMsg::Refresh);
    }

    /// Every session re-reads what it follows and the tips (after a gap on the cluster bus).
    pub fn refresh_all(&self) {
        let inner = self.lock();
        for sub in inner.subs.values() {
            sub.lagged.notify_one();
        }
    }
}

/// Forwards committed entitlement changes to the sessions of their accounts (one task per
/// instance, started with the QUIC endpoint). A lagging receiver refreshes every session.
pub fn spawn_refresher(state: &crate::state::AppState) -> tokio::task::JoinHandle<()> {
    let mut changes = state.entitlement_changes.subscribe();
    let registry = state.relay.clone();
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(change) => registry.refresh_user(&change.user_id),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => registry.refresh_all(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// How often each instance looks for relay logs that grew without a cluster message (a lost
/// message costs this much latency, nothing else).
pub const TIP_WATCH: Duration = Duration::from_secs(2);

/// Looks every `every`, with one query per instance, for logs whose tip moved since the last
/// look (another instance appended and its bus message was lost) and tells the sessions
/// following them.
pub fn spawn_tip_watch(
    state: &crate::state::AppState,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let (db, registry) = (state.db.clone(), state.relay.clone());
    tokio::spawn(async move {
        let mut known: HashMap<String, i64> = HashMap::new();
        let mut first = true;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if db.pool().is_closed() {
                return;
            }
            let rows =
                match sqlx::query("SELECT provider_device, provider_user_id, tip FROM relay_tips")
                    .fetch_all(db.pool())
                    .await
                {
                    Ok(rows) => rows,
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "relay tip check failed");
                        continue;
                    }
                };
            for row in &rows {
                let (Ok(log), Ok(provider), Ok(tip)) = (
                    row.try_get::<String, _>(0),
                    row.try_get::<String, _>(1),
                    row.try_get::<i64, _>(2),
                ) else {
                    continue;
                };
                let before = known.insert(log.clone(), tip);
                // A log new since the last look counts as grown (not on the first look).
                if before.map_or(!first, |b| b < tip)
                    && let Ok(device) = DeviceId::parse(&log)
                {
                    registry.tip(&provider, device, u64::try_from(tip).unwrap_or(0));
                }
            }
            first = false;
        }
    })
}

/// One node acknowledgement of a relay log: `device` committed `provider_device`'s log up to
/// `to` (from the cursor `from` it had).
#[derive(Debug, Clone)]
pub struct CursorMove {
    pub device: String,
    pub provider_device: String,
    pub from: u64,
    pub to: u64,
    pub at_ms: i64,
}

/// Most cursor moves in one batch.
pub const CURSOR_BATCH: usize = 1000;
/// Longest a cursor move waits for its batch.
pub const CURSOR_LINGER: Duration = Duration::from_millis(50);

/// The batched writer of relay cursors (one per instance; sessions hand it moves and never
/// wait for the write).
#[derive(Debug, Clone)]
pub struct CursorWriter {
    tx: mpsc::UnboundedSender<WriterMsg>,
}

#[derive(Debug)]
enum WriterMsg {
    Move(CursorMove),
    /// Write what is queued now and answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl CursorWriter {
    /// Starts the writer on `db`; it ends when every handle is dropped (after its last batch)
    /// or the database closes.
    pub fn start(db: Db) -> CursorWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_cursors(db, rx));
        CursorWriter { tx }
    }

    /// Queues a move (never blocks).
    pub fn push(&self, m: CursorMove) {
        if self.tx.send(WriterMsg::Move(m)).is_err() {
            tracing::warn!("relay cursor writer stopped: a cursor move was not written");
        }
    }

    /// Writes every move queued so far (at a graceful stop, and in tests).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(WriterMsg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn write_cursors(db: Db, mut rx: mpsc::UnboundedReceiver<WriterMsg>) {
    let mut batch: Vec<CursorMove> = Vec::new();
    let mut waiting: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    let mut open = true;
    while open || !batch.is_empty() {
        if batch.is_empty() && waiting.is_empty() {
            match rx.recv().await {
                Some(WriterMsg::Move(m)) => batch.push(m),
                Some(WriterMsg::Flush(done)) => {
                    let _ = done.send(());
                    continue;
                }
                None => return,
            }
        }
        let deadline = tokio::time::Instant::now() + CURSOR_LINGER;
        while open && waiting.is_empty() && batch.len() < CURSOR_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(WriterMsg::Move(m))) => batch.push(m),
                Ok(Some(WriterMsg::Flush(done))) => waiting.push(done),
                Ok(None) => open = false,
                Err(_) => break,
            }
        }
        match write_batch(&db, &batch).await {
            Ok(()) => {
                batch.clear();
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
            }
            Err(e) if db.pool().is_closed() => {
                tracing::warn!(error = %e, n = batch.len(),
                    "relay cursors not written at stop (the nodes' items are sent again)");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, n = batch.len(), "writing relay cursors failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The moves of one (device, log) in a batch, merged.
#[derive(Debug, Clone, Copy)]
struct Merged {
    from: u64,
    to: u64,
    at_ms: i64,
}

/// Writes one batch of cursor moves in one transaction: the cursors (one multi-row upsert per
/// 250 moves, never moving one back) and the delivery time of each signal a move covered.
pub async fn write_batch(db: &Db, batch: &[CursorMove]) -> Result<(), DbError> {
    if batch.is_empty() {
        return Ok(());
    }
    // Per (device, log) the furthest move wins; its `from` is the lowest seen.
    let mut merged: HashMap<(&str, &str), Merged> = HashMap::new();
    for m in batch {
        let e = merged.entry((&m.device, &m.provider_device)).or_insert(Merged {
            from: m.from,
            to: m.to,
            at_ms: m.at_ms,
        });
        e.from = e.from.min(m.from);
        if m.to > e.to {
            e.to = m.to;
            e.at_ms = m.at_ms;
        }
    }
    let moves: Vec<(&str, &str, Merged)> =
        merged.into_iter().map(|((device, log), m)| (device, log, m)).collect();
    let mut tx = db.begin_write().await?;
    for chunk in moves.chunks(250) {
        let mut sql = String::from(
            "INSERT INTO relay_cursors (device_id, provider_device, seq, acked_at_ms) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let b = i * 4;
            sql.push_str(&format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
        }
        sql.push_str(
            " ON CONFLICT (device_id, provider_device) DO UPDATE SET \
             seq = CASE WHEN excluded.seq > relay_cursors.seq THEN excluded.seq ELSE relay_cursors.seq END, \
             acked_at_ms = CASE WHEN excluded.seq > relay_cursors.seq THEN excluded.acked_at_ms \
             ELSE relay_cursors.acked_at_ms END",
        );
        let mut q = sqlx::query(crate::sql!("{sql}"));
        for (device, log, m) in chunk {
            q = q
                .bind(*device)
                .bind(*log)
                .bind(i64::try_from(m.to).unwrap_or(i64::MAX))
                .bind(m.at_ms);
        }
        q.execute(&mut *tx).await?;
    }
    // Deliveries: per log, the signals between the lowest `from` and the highest `to`, then
    // per signal the devices whose move covered it.
    let mut by_log: HashMap<&str, Vec<(&str, Merged)>> = HashMap::new();
    for (device, log, m) in &moves {
        by_log.entry(*log).or_default().push((*device, *m));
    }
    let mut delivered_at: Vec<(i64, i64)> = Vec::new();
    for (log, devices) in by_log {
        let lo = devices.iter().map(|d| d.1.from).min().unwrap_or(0);
        let hi = devices.iter().map(|d| d.1.to).max().unwrap_or(0);
        if hi <= lo {
            continue;
        }
        let signals = sqlx::query(
            "SELECT seq, signal_id FROM relay_log WHERE provider_device = $1 AND seq > $2 \
             AND seq <= $3 AND kind = 'signal' ORDER BY seq",
        )
        .bind(log)
        .bind(i64::try_from(lo).unwrap_or(i64::MAX))
        .bind(i64::try_from(hi).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        for row in &signals {
            let seq = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0);
            let signal_id: String = row.try_get(1)?;
            let covered: Vec<&(&str, Merged)> =
                devices.iter().filter(|d| d.1.from < seq && seq <= d.1.to).collect();
            for chunk in covered.chunks(500) {
                let at = chunk.iter().map(|d| d.1.at_ms).max().unwrap_or(0);
                let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
                let sql = format!(
                    "UPDATE fanout_queue SET delivered_at_ms = $1 WHERE signal_id = $2 \
                     AND delivered_at_ms IS NULL AND device_id IN ({}) RETURNING enqueued_at_ms",
                    list.join(", ")
                );
                let mut q =
                    sqlx::query_scalar::<_, i64>(crate::sql!("{sql}")).bind(at).bind(&signal_id);
                for d in chunk {
                    q = q.bind(d.0);
                }
                for enqueued in q.fetch_all(&mut *tx).await? {
                    delivered_at.push((at, enqueued));
                }
            }
        }
    }
    tx.commit().await?;
    for (at, enqueued) in delivered_at {
        crate::feed::observe_delivered(at, &[enqueued]);
    }
    Ok(())
}

/// Writes the expected outcome rows (`fanout_queue`) of signal `signal_id`, relayed at `seq`
/// of `provider_device`'s log and accepted at `accepted_at_ms`: one per device that sees it,
/// already delivered where the device's cursor is past it. Idempotent. Returns the number of
/// devices the signal is for.
pub async fn write_expected(
    db: &Db,
    signal_id: &str,
    provider_user_id: &str,
    provider_device: &str,
    seq: u64,
    accepted_at_ms: i64,
    now_ms: i64,
) -> Result<i64, DbError> {
    let mut tx = db.begin_write().await?;
    sqlx::query(crate::sql!(
        "INSERT INTO fanout_queue (signal_id, device_id, enqueued_at_ms, delivered_at_ms) \
         SELECT DISTINCT $3, d.id, $2, c.acked_at_ms FROM devices d JOIN users u ON u.id = d.user_id \
         JOIN entitlements e ON e.user_id = d.user_id JOIN plans p ON p.id = e.plan_id \
         LEFT JOIN relay_cursors c ON c.device_id = d.id AND c.provider_device = $4 AND c.seq >= $5 \
         WHERE p.provider_user_id = $1 AND d.user_id <> $1 AND d.enrolled_at_ms <= $2 AND {} \
         ON CONFLICT (signal_id, device_id) DO NOTHING",
        crate::entitlements::entitled_sql()
    ))
    .bind(provider_user_id)
    .bind(accepted_at_ms)
    .bind(signal_id)
    .bind(provider_device)
    .bind(i64::try_from(seq).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE signals SET fanout_written_at_ms = $2 WHERE id = $1")
        .bind(signal_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM fanout_queue WHERE signal_id = $1")
        .bind(signal_id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// [`write_expected`] for every relayed signal whose rows a crash left out (at start).
pub async fn write_missing_expected(db: &Db, now_ms: i64) -> Result<usize, DbError> {
    let rows = sqlx::query(
        "SELECT s.id, s.provider_user_id, l.provider_device, l.seq, s.received_at_ms \
         FROM signals s JOIN relay_log l ON l.signal_id = s.id AND l.kind = 'signal' \
         WHERE s.fanout_written_at_ms IS NULL",
    )
    .fetch_all(db.pool())
    .await?;
    for row in &rows {
        let id: String = row.try_get(0)?;
        let provider: String = row.try_get(1)?;
        let log: String = row.try_get(2)?;
        let seq = u64::try_from(row.try_get::<i64, _>(3)?).unwrap_or(0);
        let at: i64 = row.try_get(4)?;
        write_expected(db, &id, &provider, &log, seq, at, now_ms).await?;
    }
    Ok(rows.len())
}

/// The outcome rows a newly relayed signal still needs ([`write_expected`]).
#[derive(Debug, Clone)]
pub struct ExpectedRows {
    pub signal_id: String,
    pub provider_user_id: String,
    pub provider_device: String,
    pub seq: u64,
    pub accepted_at_ms: i64,
}

impl ExpectedRows {
    /// Writes them now; returns the number of devices the signal is for.
    pub async fn write(&self, db: &Db, now_ms: i64) -> Result<i64, DbError> {
        write_expected(
            db,
            &self.signal_id,
            &self.provider_user_id,
            &self.provider_device,
            self.seq,
            self.accepted_at_ms,
            now_ms,
        )
        .await
    }

    /// Writes them in the background (a failure is logged; the next start writes them).
    pub fn spawn(self, state: &crate::state::AppState) {
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = self.write(&state.db, state.now_ms()).await {
                tracing::warn!(error = %e, signal = %self.signal_id,
                    "writing a signal's outcome rows failed (the next start writes them)");
            }
        });
    }
}

/// After the commit of `appended`: hands the entries to this instance's sessions and tells the
/// other instances. Returns the outcome rows to write for the signals among them.
pub fn after_commit(state: &crate::state::AppState, appended: &[Appended]) -> Vec<ExpectedRows> {
    if appended.is_empty() {
        return Vec::new();
    }
    state.relay.broadcast(appended);
    if let Some(last) = appended.last() {
        state.cluster.publish(crate::cluster::Event::Relay {
            provider_user_id: last.provider_user_id.clone(),
            source: Source::Relay(last.provider_device).to_text(),
            seq: last.entry.seq,
        });
    }
    appended
        .iter()
        .filter_map(|a| {
            let signal_id = a.new_signal.clone()?;
            let View::EntitledAt(accepted_at_ms) = a.view else { return None };
            Some(ExpectedRows {
                signal_id,
                provider_user_id: a.provider_user_id.clone(),
                provider_device: a.provider_device.to_text(),
                seq: a.entry.seq,
                accepted_at_ms,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_entry_is_seen_by_every_follower() {
        let v = Viewer::default();
        assert!(v.sees(View::Always));
        assert!(!v.sees(View::EntitledAt(5)));
    }

    #[test]
    fn an_entry_is_seen_when_entitled_at_its_instant_and_enrolled_before() {
        let v = Viewer { enrolled_at_ms: 100, intervals: vec![(50, Some(200)), (300, None)] };
        assert!(!v.sees(View::EntitledAt(99)), "before enrolment");
        assert!(v.sees(View::EntitledAt(100)));
        assert!(v.sees(View::EntitledAt(199)));
        assert!(!v.sees(View::EntitledAt(200)), "the end is exclusive");
        assert!(!v.sees(View::EntitledAt(250)), "between intervals");
        assert!(v.sees(View::EntitledAt(300)));
        assert!(v.sees(View::EntitledAt(i64::MAX)));
    }

    #[test]
    fn a_full_session_queue_is_told_to_reread() {
        let registry = Registry::default();
        let m = registry.join("u", ["p".to_string()]);
        let id = DeviceId([7; 20]);
        for i in 0..SESSION_QUEUE as u64 + 3 {
            registry.tip("p", id, i);
        }
        // The queue holds SESSION_QUEUE messages; the rest rang the lag bell (a permit stored).
        let lagged = m.lagged.clone();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), lagged.notified()).await.unwrap();
        });
        assert_eq!(registry.sessions(), 1);
        drop(m);
        assert_eq!(registry.sessions(), 0);
        assert!(registry.lock().by_provider.is_empty() && registry.lock().by_user.is_empty());
    }
}
