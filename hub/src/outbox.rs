//! The outbox: everything the hub sends to an outside service (Telegram messages, Stripe calls
//! caused by a local change, owner reports) is a row [`enqueue`]d inside the write transaction
//! of the change that caused it, and sent later by the [`Runner`].
//!
//! - **Claiming.** A channel's loop claims due rows (`queued` with `not_before_ms` ≤ now, or
//!   `sending` whose lease expired) in one `UPDATE … WHERE id IN (SELECT … ORDER BY seq LIMIT n)
//!   RETURNING …`: on PostgreSQL the inner select is `FOR UPDATE SKIP LOCKED`, so instances
//!   sharing the database never claim the same row; on SQLite (one writer) the statement is
//!   atomic by itself. A claimed row is `sending`, leased to this runner until
//!   `now + outbox.lease_ms`. A row of a route (a Telegram chat) is claimed only when no older
//!   row of its route is in flight, due, or waiting for a retry: a route's messages go in order,
//!   one in flight at a time (a message scheduled for later, never tried, holds up nothing).
//! - **Crashes.** A row whose lease expired while `sending` (its runner died mid-delivery) is
//!   claimed again and counted (`redelivered`, `tradecast_outbox_redelivered_total`): the only
//!   repeats the outbox makes, at most the messages that were in flight.
//! - **Outcomes.** [`Outcome::Sent`] → `sent`; [`Outcome::RetryAfter`] (the service said when)
//!   and [`Outcome::Retry`] (exponential backoff with jitter, `outbox.backoff_base_ms` doubled
//!   per attempt up to `outbox.backoff_cap_ms`) → `queued` again with `attempts + 1`;
//!   [`Outcome::Fail`] or `outbox.max_attempts` reached → `dead` (a dead letter the console's
//!   `/outbox` page retries or discards, audited).
//! - **Limits.** Per channel and per hub instance (in-process token buckets, [`Limits`]):
//!   Telegram 30/s overall, one message per second to a private chat, 20 per minute to a group
//!   (a chat id starting with `-`), each spaced evenly (no burst: Telegram counts any one
//!   second) 10 % wider than its rate for network jitter; Stripe 25/s. One channel's loop never waits on another's.
//! - **Integrations off.** A channel without a deliverer has no loop: its rows stay queued.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use governor::clock::{Clock as GovClock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Serialize;
use sqlx::{Any, Row, Transaction};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::OutboxConfig;
use crate::db::{Backend, Db, DbError};
use crate::error::ApiError;
use crate::state::AppState;

/// Messages sent.
pub const SENT: &str = "tradecast_outbox_sent_total";
/// Deliveries that will be tried again (retry or the service's retry-after).
pub const RETRIED: &str = "tradecast_outbox_retried_total";
/// Messages that became dead letters.
pub const DEAD: &str = "tradecast_outbox_dead_total";
/// Claims of a message whose previous delivery's lease expired (possible repeats).
pub const REDELIVERED: &str = "tradecast_outbox_redelivered_total";
/// Messages waiting (`queued` or `sending`), per channel, over the whole database.
pub const QUEUED: &str = "tradecast_outbox_queued";

/// The outside service a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The Telegram Bot API.
    Telegram,
    /// Stripe's API.
    Stripe,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 2] = [Channel::Telegram, Channel::Stripe];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Telegram => "telegram",
            Channel::Stripe => "stripe",
        }
    }

    /// The channel of a stored text.
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "telegram" => Some(Channel::Telegram),
            "stripe" => Some(Channel::Stripe),
            _ => None,
        }
    }
}

/// A message to enqueue.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// Where it goes.
    pub channel: Channel,
    /// What to do, e.g. `telegram.send_message`, `stripe.refund_invoice`.
    pub kind: &'a str,
    /// A Telegram chat id (per-chat limits, in order per route), or none.
    pub route: Option<&'a str>,
    /// What the deliverer sends (never a secret: the console shows it).
    pub payload: &'a serde_json::Value,
    /// Enqueueing the same key twice is a no-op.
    pub dedupe_key: Option<&'a str>,
    /// What caused it (`stripe_event:evt_…`), shown in the console.
    pub cause: Option<&'a str>,
    /// Not sent before this time (scheduled sends: reminders), unix ms.
    pub not_before_ms: Option<i64>,
}

/// A stored message.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// Public id.
    pub id: String,
    /// Order of enqueueing.
    pub seq: i64,
    /// Where it goes.
    pub channel: Channel,
    /// What to do.
    pub kind: String,
    /// The route (chat id), if any.
    pub route: Option<String>,
    /// What the deliverer sends.
    pub payload: serde_json::Value,
    /// The dedupe key, if any.
    pub dedupe_key: Option<String>,
    /// What caused it.
    pub cause: Option<String>,
    /// `queued`, `sending`, `sent`, `dead` or `discarded`.
    pub state: String,
    /// Delivery attempts made before this one.
    pub attempts: i64,
    /// Times a claim took it over from a runner whose lease expired.
    pub redelivered: i64,
    /// This claim took it over from an expired lease (it may have been delivered already).
    pub reclaimed: bool,
    /// Not sent before, unix ms.
    pub not_before_ms: i64,
    /// The current lease's end, if `sending`.
    pub lease_until_ms: Option<i64>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When enqueued, unix ms.
    pub created_at_ms: i64,
    /// Last change, unix ms.
    pub updated_at_ms: i64,
    /// When sent, unix ms.
    pub sent_at_ms: Option<i64>,
}

const COLS: &str = "id, seq, channel, kind, route, payload, dedupe_key, cause, state, attempts, \
redelivered, reclaimed, not_before_ms, lease_until_ms, last_error, created_at_ms, updated_at_ms, \
sent_at_ms";

fn message(r: &sqlx::any::AnyRow) -> Result<Message, DbError> {
    let channel: String = r.try_get(2)?;
    let payload: String = r.try_get(5)?;
    Ok(Message {
        id: r.try_get(0)?,
        seq: r.try_get(1)?,
        channel: Channel::parse(&channel)
            .ok_or_else(|| DbError::Corrupt(format!("outbox channel {channel:?}")))?,
        kind: r.try_get(3)?,
        route: r.try_get(4)?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| DbError::Corrupt(format!("outbox payload: {e}")))?,
        dedupe_key: r.try_get(6)?,
        cause: r.try_get(7)?,
        state: r.try_get(8)?,
        attempts: r.try_get(9)?,
        redelivered: r.try_get(10)?,
        reclaimed: r.try_get::<i64, _>(11)? != 0,
        not_before_ms: r.try_get(12)?,
        lease_until_ms: r.try_get(13)?,
        last_error: r.try_get(14)?,
        created_at_ms: r.try_get(15)?,
        updated_at_ms: r.try_get(16)?,
        sent_at_ms: r.try_get(17)?,
    })
}

/// Enqueues `msg` inside the caller's write transaction (it is sent only if that commits).
/// `Ok(None)` when its `dedupe_key` is already in the outbox; else the new message's id.
pub async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    msg: &NewMessage<'_>,
    now_ms: i64,
) -> Result<Option<String>, DbError> {
    let id = crate::ids::new_id();
    let done = sqlx::query(
        "INSERT INTO outbox (id, channel, kind, route, payload, dedupe_key, cause, state, \
         not_before_ms, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $9) \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&id)
    .bind(msg.channel.as_str())
    .bind(msg.kind)
    .bind(msg.route)
    .bind(msg.payload.to_string())
    .bind(msg.dedupe_key)
    .bind(msg.cause)
    .bind(msg.not_before_ms.unwrap_or(now_ms))
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok((done.rows_affected() == 1).then_some(id))
}

/// Wakes this instance's runner now (after committing an [`enqueue`]) instead of at its next
/// poll. Optional: the runner polls every `outbox.poll_interval_ms` anyway.
pub fn wake(state: &AppState) {
    state.outbox_bell.notify_waiters();
}

/// What a delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// The service said when to try again (Telegram's 429 `retry_after`).
    RetryAfter(Duration),
    /// A transient failure: try again after a backoff.
    Retry(String),
    /// A permanent failure: a dead letter.
    Fail(String),
}

/// Sends one channel's messages (the Telegram or Stripe client behind it).
pub trait Deliver: Send + Sync + 'static {
    /// Delivers `msg` once. It should answer within `outbox.lease_ms` (else the runner gives
    /// up on this attempt and retries it).
    fn deliver<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Outcome>;

    /// Slow work a delivery needs before it sends (rendering a picture), done before the rate
    /// turns are taken so that the turns are taken when the send really starts: a turn taken
    /// before a second of rendering would let the route's next message arrive right after this
    /// one. The default does nothing.
    fn prepare<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, ()> {
        let _ = msg;
        Box::pin(async {})
    }
}

/// The backoff before retry number `attempt` (1 for the first retry): `base · 2^(attempt-1)`,
/// capped, then jittered into its upper half.
pub fn backoff(config: &OutboxConfig, attempt: i64) -> Duration {
    let exp = u32::try_from(attempt.clamp(1, 40) - 1).unwrap_or(0);
    let full =
        config.backoff_base_ms.saturating_mul(1u64 << exp.min(40)).min(config.backoff_cap_ms);
    let jitter_bytes: [u8; 8] = crate::ids::random_bytes(8).try_into().unwrap_or([0u8; 8]);
    let half = full / 2;
    let jitter = if half == 0 { 0 } else { u64::from_le_bytes(jitter_bytes) % (half + 1) };
    Duration::from_millis(full - half + jitter)
}

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as GovClock>::Instant>>;
type Keyed<C> =
    RateLimiter<String, HashMapStateStore<String>, C, NoOpMiddleware<<C as GovClock>::Instant>>;

/// A channel's limits on one hub instance: an overall rate, and for Telegram one per private
/// chat and one per group (a route starting with `-`), each route spaced evenly (no burst).
pub struct Limits<C: GovClock = DefaultClock> {
    clock: C,
    overall: Direct<C>,
    per_chat: Option<Keyed<C>>,
    per_group: Option<Keyed<C>>,
}

impl<C: GovClock> std::fmt::Debug for Limits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").field("per_route", &self.per_chat.is_some()).finish()
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// The margin added to a route's spacing: the turn is taken when a send starts, the service
/// counts it when it arrives, and two sends' network times differ (a 1.000 s spacing can
/// arrive 0.98 s apart and be refused with a 429).
const ROUTE_MARGIN_PERCENT: u64 = 10;

/// One cell every `60 s / per_min` plus [`ROUTE_MARGIN_PERCENT`], no burst.
fn spaced(per_min: u32) -> Quota {
    spaced_us(60_000_000 / u64::from(per_min.max(1)))
}

/// One cell every `exact_us` microseconds plus [`ROUTE_MARGIN_PERCENT`], no burst: no window
/// of the rate's length ever holds more than the rate (a burst would: Telegram counts sends
/// in any one second, and 30 at once then one more 33 ms later is 31 in that second).
fn spaced_us(exact_us: u64) -> Quota {
    let period = Duration::from_micros(exact_us + exact_us * ROUTE_MARGIN_PERCENT / 100)
        .max(Duration::from_micros(1));
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
}

impl<C: GovClock + Clone> Limits<C> {
    /// `channel`'s limits from `config`, on `clock`.
    pub fn new(channel: Channel, config: &OutboxConfig, clock: C) -> Limits<C> {
        match channel {
            Channel::Telegram => Limits {
                overall: RateLimiter::direct_with_clock(
                    spaced_us(1_000_000 / u64::from(config.telegram_per_s.max(1))),
                    clock.clone(),
                ),
                per_chat: Some(RateLimiter::hashmap_with_clock(
                    spaced(config.telegram_per_chat_per_min),
                    clock.clone(),
                )),
                per_group: Some(RateLimiter::hashmap_with_clock(
                    spaced(config.telegram_per_group_per_min),
                    clock.clone(),
                )),
                clock,
            },
            Channel::Stripe => Limits {
                overall: RateLimiter::direct_with_clock(
                    Quota::per_second(nz(config.stripe_per_s)),
                    clock.clone(),
                ),
                per_chat: None,
                per_group: None,
                clock,
            },
        }
    }

    /// Takes `route`'s turn, or says how long until it has one.
    pub fn route(&self, route: Option<&str>) -> Result<(), Duration> {
        let Some(route) = route else { return Ok(()) };
        let limiter = if route.starts_with('-') { &self.per_group } else { &self.per_chat };
        match limiter {
            Some(l) => {
                l.check_key(&route.to_string()).map_err(|n| n.wait_time_from(self.clock.now()))
            }
            None => Ok(()),
        }
    }

    /// Takes a turn of the channel's overall rate, or says how long until there is one.
    pub fn overall(&self) -> Result<(), Duration> {
        self.overall.check().map_err(|n| n.wait_time_from(self.clock.now()))
    }

    /// Forgets routes idle long enough to be full again (bounds the memory).
    pub fn forget_idle(&self) {
        for l in [&self.per_chat, &self.per_group].into_iter().flatten() {
            l.retain_recent();
        }
    }
}

/// Waits (asleep) until `take` grants a turn.
async fn wait_turn(take: impl Fn() -> Result<(), Duration>) {
    while let Err(wait) = take() {
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}

/// Claims up to `limit` due messages of `channel` for `owner` until `now + lease_ms`.
pub async fn claim(
    db: &Db,
    channel: Channel,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Message>, DbError> {
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let rows = sqlx::query(crate::sql!(
        "UPDATE outbox SET state = 'sending', lease_owner = $1, lease_until_ms = $2, \
         updated_at_ms = $3, \
         reclaimed = CASE WHEN state = 'sending' THEN 1 ELSE 0 END, \
         redelivered = redelivered + CASE WHEN state = 'sending' THEN 1 ELSE 0 END \
         WHERE id IN (SELECT o.id FROM outbox o WHERE o.channel = $4 \
           AND ((o.state = 'queued' AND o.not_before_ms <= $3) \
             OR (o.state = 'sending' AND o.lease_until_ms <= $3)) \
           AND (o.route IS NULL OR NOT EXISTS (SELECT 1 FROM outbox p \
             WHERE p.channel = o.channel AND p.route = o.route \
             AND p.seq < o.seq AND (p.state = 'sending' OR (p.state = 'queued' \
               AND (p.attempts > 0 OR p.not_before_ms <= $3))))) \
           ORDER BY o.seq LIMIT $5{lock}) \
         RETURNING {COLS}"
    ))
    .bind(owner)
    .bind(now_ms.saturating_add(lease_ms))
    .bind(now_ms)
    .bind(channel.as_str())
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut claimed = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by_key(|m| m.seq);
    for m in claimed.iter().filter(|m| m.reclaimed) {
        tracing::warn!(
            target: "tradecast_hub::outbox",
            id = %m.id, kind = %m.kind, redelivered = m.redelivered,
            "outbox message's lease expired in flight: delivering it again (it may repeat)"
        );
        metrics::counter!(REDELIVERED, "channel" => channel.as_str()).increment(1);
    }
    Ok(claimed)
}

/// What [`finish`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Marked sent.
    Sent,
    /// Queued again for later.
    Retrying,
    /// Made a dead letter.
    Dead,
    /// The lease was no longer ours (another runner took the message over): nothing written.
    LeaseLost,
}

/// Extends a claim's lease to `new_until` if it is still the claim that set `claimed_until`
/// (no other claim took the message over); whether it was.
pub async fn renew(
    db: &Db,
    msg: &Message,
    owner: &str,
    claimed_until: i64,
    new_until: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE outbox SET lease_until_ms = $1 \
         WHERE id = $2 AND state = 'sending' AND lease_owner = $3 AND lease_until_ms = $4",
    )
    .bind(new_until)
    .bind(&msg.id)
    .bind(owner)
    .bind(claimed_until)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records `outcome` of delivering `msg` (claimed by `owner`).
pub async fn finish(
    db: &Db,
    config: &OutboxConfig,
    msg: &Message,
    owner: &str,
    outcome: &Outcome,
    now_ms: i64,
) -> Result<Finished, DbError> {
    let attempts = msg.attempts + 1;
    let max = i64::from(config.max_attempts);
    let (state, not_before, error, finished) = match outcome {
        Outcome::Sent => ("sent", msg.not_before_ms, None, Finished::Sent),
        Outcome::Fail(e) => ("dead", msg.not_before_ms, Some(e.clone()), Finished::Dead),
        Outcome::RetryAfter(_) | Outcome::Retry(_) if attempts >= max => {
            let e = match outcome {
                Outcome::Retry(e) => e.clone(),
                _ => "the service kept asking to retry later".to_string(),
            };
            (
                "dead",
                msg.not_before_ms,
                Some(format!("{e} (after {attempts} attempts)")),
                Finished::Dead,
            )
        }
        Outcome::RetryAfter(d) => {
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            let e = format!("the service asked to retry after {} ms", ms);
            ("queued", now_ms.saturating_add(ms), Some(e), Finished::Retrying)
        }
        Outcome::Retry(e) => {
            let wait = i64::try_from(backoff(config, attempts).as_millis()).unwrap_or(i64::MAX);
            ("queued", now_ms.saturating_add(wait), Some(e.clone()), Finished::Retrying)
        }
    };
    let sent_at = (state == "sent").then_some(now_ms);
    let done = sqlx::query(
        "UPDATE outbox SET state = $1, attempts = $2, not_before_ms = $3, \
         last_error = COALESCE($4, last_error), sent_at_ms = $5, updated_at_ms = $6, \
         lease_owner = NULL, lease_until_ms = NULL \
         WHERE id = $7 AND state = 'sending' AND lease_owner = $8",
    )
    .bind(state)
    .bind(attempts)
    .bind(not_before)
    .bind(error)
    .bind(sent_at)
    .bind(now_ms)
    .bind(&msg.id)
    .bind(owner)
    .execute(db.pool())
    .await?;
    if done.rows_affected() == 0 {
        tracing::warn!(
            target: "tradecast_hub::outbox",
            id = %msg.id,
            "outbox message's lease was taken over before its delivery finished"
        );
        return Ok(Finished::LeaseLost);
    }
    let ch = msg.channel.as_str();
    match finished {
        Finished::Sent => metrics::counter!(SENT, "channel" => ch).increment(1),
        Finished::Retrying => metrics::counter!(RETRIED, "channel" => ch).increment(1),
        Finished::Dead => {
            tracing::warn!(target: "tradecast_hub::outbox", id = %msg.id, kind = %msg.kind, error = ?outcome, "outbox message is a dead letter");
            metrics::counter!(DEAD, "channel" => ch).increment(1)
        }
        Finished::LeaseLost => {}
    }
    Ok(finished)
}

/// Messages per channel and state (states without messages absent).
pub async fn counts(db: &Db) -> Result<Vec<(Channel, String, i64)>, DbError> {
    let rows = sqlx::query(
        "SELECT channel, state, COUNT(*) FROM outbox GROUP BY channel, state ORDER BY channel, state",
    )
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let channel: String = r.try_get(0)?;
        let channel = Channel::parse(&channel)
            .ok_or_else(|| DbError::Corrupt(format!("outbox channel {channel:?}")))?;
        out.push((channel, r.try_get(1)?, r.try_get(2)?));
    }
    Ok(out)
}

/// Messages in `state` (`None`: any), oldest first for `queued`/`sending`, newest change first
/// otherwise; at most `limit`.
pub async fn list(db: &Db, state: Option<&str>, limit: i64) -> Result<Vec<Message>, DbError> {
    let order = match state {
        Some("queued" | "sending") => "seq",
        _ => "updated_at_ms DESC, seq DESC",
    };
    let rows = match state {
        Some(state) => {
            sqlx::query(crate::sql!(
                "SELECT {COLS} FROM outbox WHERE state = $1 ORDER BY {order} LIMIT $2"
            ))
            .bind(state)
            .bind(limit)
            .fetch_all(db.pool())
            .await?
        }
        None => {
            sqlx::query(crate::sql!("SELECT {COLS} FROM outbox ORDER BY {order} LIMIT $1"))
                .bind(limit)
                .fetch_all(db.pool())
                .await?
        }
    };
    rows.iter().map(message).collect()
}

/// One message.
pub async fn get(db: &Db, id: &str) -> Result<Option<Message>, DbError> {
    let row = sqlx::query(crate::sql!("SELECT {COLS} FROM outbox WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(message).transpose()
}

/// A dead letter queued again (attempts from zero), audited `outbox.retry` under `actor`.
pub async fn retry(
    state: &AppState,
    id: &str,
    actor: &str,
    request_id: &str,
) -> Result<(), ApiError> {
    dead_letter_action(state, id, actor, request_id, true).await?;
    wake(state);
    Ok(())
}

/// A dead letter set aside for good (`discarded`), audited `outbox.discard` under `actor`.
pub async fn discard(
    state: &AppState,
    id: &str,
    actor: &str,
    request_id: &str,
) -> Result<(), ApiError> {
    dead_letter_action(state, id, actor, request_id, false).await
}

async fn dead_letter_action(
    state: &AppState,
    id: &str,
    actor: &str,
    request_id: &str,
    retry: bool,
) -> Result<(), ApiError> {
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let row = sqlx::query("SELECT state, channel, kind, attempts FROM outbox WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(DbError::from)?;
    let Some(row) = row else {
        return Err(ApiError::NotFound(format!("no outbox message {id}")));
    };
    let current: String = row.try_get(0).map_err(DbError::from)?;
    if current != "dead" {
        return Err(ApiError::Conflict(format!(
            "outbox message {id} is {current}, not a dead letter"
        )));
    }
    let attempts: i64 = row.try_get(3).map_err(DbError::from)?;
    let (next, action, new_attempts) = if retry {
        ("queued", "outbox.retry", 0)
    } else {
        ("discarded", "outbox.discard", attempts)
    };
    sqlx::query(
        "UPDATE outbox SET state = $1, attempts = $2, not_before_ms = $3, updated_at_ms = $3, \
         lease_owner = NULL, lease_until_ms = NULL WHERE id = $4 AND state = 'dead'",
    )
    .bind(next)
    .bind(new_attempts)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    let detail = serde_json::json!({
        "channel": row.try_get::<String, _>(1).map_err(DbError::from)?,
        "kind": row.try_get::<String, _>(2).map_err(DbError::from)?,
        "attempts": attempts,
    });
    let entry = crate::audit::Entry { actor, action, subject: id, detail, request_id };
    crate::audit::append(&mut tx, state.db.backend(), now, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// Sets the queued gauge of every channel from the database.
pub async fn update_gauge(db: &Db) -> Result<(), DbError> {
    let mut waiting: HashMap<Channel, i64> = Channel::ALL.iter().map(|c| (*c, 0)).collect();
    for (channel, state, n) in counts(db).await? {
        if state == "queued" || state == "sending" {
            *waiting.entry(channel).or_default() += n;
        }
    }
    for (channel, n) in waiting {
        metrics::gauge!(QUEUED, "channel" => channel.as_str()).set(n as f64);
    }
    Ok(())
}

/// The outbox runner: one loop per channel with a deliverer.
#[derive(Debug)]
pub struct Runner;

/// A started [`Runner`]: [`RunnerHandle::stop`] ends it gracefully, dropping it aborts it.
#[derive(Debug)]
pub struct RunnerHandle {
    owner: String,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Describes the outbox's metrics to the recorder (once per process).
fn describe_metrics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(SENT, "Outbox messages sent, per channel");
        metrics::describe_counter!(RETRIED, "Outbox deliveries to be tried again, per channel");
        metrics::describe_counter!(DEAD, "Outbox messages that became dead letters, per channel");
        metrics::describe_counter!(
            REDELIVERED,
            "Outbox messages delivered again after their lease expired in flight (possible repeats)"
        );
        metrics::describe_gauge!(QUEUED, "Outbox messages queued or sending, per channel");
    });
}

impl Runner {
    /// Starts a runner on `state` with a deliverer per channel it sends (a channel without one
    /// — its integration off — keeps its rows queued). Always keeps the queued gauge current.
    pub fn start(state: AppState, deliverers: Vec<(Channel, Arc<dyn Deliver>)>) -> RunnerHandle {
        describe_metrics();
        let owner = format!("{}/{}", state.cluster.instance(), crate::ids::random_hex(4));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut seen = Vec::new();
        for (channel, deliverer) in deliverers {
            if seen.contains(&channel) {
                tracing::warn!(target: "tradecast_hub::outbox", channel = channel.as_str(), "a second deliverer for one channel is ignored");
                continue;
            }
            seen.push(channel);
            let limits =
                Arc::new(Limits::new(channel, &state.config.outbox, DefaultClock::default()));
            let lp = ChannelLoop {
                state: state.clone(),
                channel,
                deliverer,
                limits,
                owner: owner.clone(),
                stopped: stopped.clone(),
            };
            tasks.push(tokio::spawn(lp.run()));
        }
        let gauge_state = state.clone();
        let mut gauge_stop = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let every = Duration::from_millis(state.config.outbox.poll_interval_ms.saturating_mul(10))
                .clamp(Duration::from_secs(1), Duration::from_secs(60));
            loop {
                if let Err(e) = update_gauge(&gauge_state.db).await {
                    tracing::debug!(target: "tradecast_hub::outbox", error = %e, "outbox gauge not updated");
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = gauge_stop.changed() => return,
                }
            }
        }));
        tracing::info!(target: "tradecast_hub::outbox", %owner, channels = ?seen, "outbox runner started");
        RunnerHandle { owner, stop, tasks }
    }
}

impl RunnerHandle {
    /// This runner's lease owner (`<instance>/<random>`).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Stops claiming, lets deliveries in flight finish (up to 5 s each loop), then ends.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), t).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Ends every task at once, deliveries in flight included (what a crash does: their
    /// leases expire and another runner delivers them again, counted).
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.abort();
    }
}

struct ChannelLoop {
    state: AppState,
    channel: Channel,
    deliverer: Arc<dyn Deliver>,
    limits: Arc<Limits>,
    owner: String,
    stopped: watch::Receiver<bool>,
}

impl ChannelLoop {
    async fn run(mut self) {
        let cfg = self.state.config.outbox.clone();
        let poll = Duration::from_millis(cfg.poll_interval_ms);
        let lease_ms = i64::try_from(cfg.lease_ms).unwrap_or(i64::MAX);
        let slots = Arc::new(Semaphore::new(cfg.batch as usize));
        let done = Arc::new(Notify::new());
        let mut inflight = JoinSet::new();
        let mut last_forget = tokio::time::Instant::now();
        loop {
            if *self.stopped.borrow() {
                break;
            }
            while inflight.try_join_next().is_some() {}
            if last_forget.elapsed() > Duration::from_secs(60) {
                self.limits.forget_idle();
                last_forget = tokio::time::Instant::now();
            }
            let free = slots.available_permits();
            let mut claimed_all = false;
            if free > 0 {
                let now = self.state.now_ms();
                match claim(&self.state.db, self.channel, &self.owner, now, lease_ms, free as i64)
                    .await
                {
                    Ok(msgs) => {
                        claimed_all = msgs.len() == free;
                        for msg in msgs {
                            let Ok(permit) = slots.clone().try_acquire_owned() else { break };
                            let d = Delivery {
                                state: self.state.clone(),
                                deliverer: self.deliverer.clone(),
                                limits: self.limits.clone(),
                                owner: self.owner.clone(),
                                done: done.clone(),
                            };
                            inflight.spawn(async move {
                                d.run(msg).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(
                        target: "tradecast_hub::outbox",
                        channel = self.channel.as_str(), error = %e, "claiming outbox messages failed"
                    ),
                }
            }
            if claimed_all {
                // A full batch: more may be due; claim again as soon as a slot frees.
                tokio::select! {
                    () = done.notified() => {}
                    _ = self.stopped.changed() => {}
                }
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = done.notified() => {}
                () = self.state.outbox_bell.notified() => {}
                _ = self.stopped.changed() => {}
            }
        }
        // Graceful stop: let deliveries in flight record their outcome.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while inflight.join_next().await.is_some() {}
        })
        .await;
    }
}

struct Delivery {
    state: AppState,
    deliverer: Arc<dyn Deliver>,
    limits: Arc<Limits>,
    owner: String,
    done: Arc<Notify>,
}

/// The Redis key of a channel's overall rate shared by every hub instance.
pub fn shared_key(channel: Channel) -> String {
    format!("outbox:{}:overall", channel.as_str())
}

/// Telegram's overall rate as one bucket for every instance (no burst, the same margin as the
/// per-instance limiter): `telegram_per_s` × 60 / 1.1 a minute.
pub fn shared_rule(config: &OutboxConfig) -> crate::config::BucketConfig {
    let per_minute =
        u64::from(config.telegram_per_s.max(1)) * 60 * 100 / (100 + ROUTE_MARGIN_PERCENT);
    crate::config::BucketConfig {
        burst: 1,
        per_minute: u32::try_from(per_minute.max(1)).unwrap_or(u32::MAX),
    }
}

impl Delivery {
    /// With `redis_url` set (several instances), Telegram's overall rate is also one bucket in
    /// Redis shared by every instance: wait for its turn too. A Redis failure falls back to this
    /// instance's own limit (logged, counted in `tradecast_rate_limit_backend_errors_total`).
    async fn shared_turn(&self, channel: Channel) {
        if channel != Channel::Telegram || self.state.config.redis_url.is_none() {
            return;
        }
        let (key, rule) = (shared_key(channel), shared_rule(&self.state.config.outbox));
        loop {
            let now = self.state.now_ms();
            match self.state.limiter.check(&key, rule, now).await {
                Ok(crate::ratelimit::Decision::Allowed) => return,
                Ok(crate::ratelimit::Decision::Limited { retry_after_ms }) => {
                    tokio::time::sleep(Duration::from_millis(retry_after_ms.max(1))).await;
                }
                Err(e) => {
                    metrics::counter!(crate::telemetry::RATE_LIMIT_ERRORS).increment(1);
                    tracing::warn!(target: "tradecast_hub::outbox", error = %e, "the shared Telegram rate is unavailable: this instance's own limit applies");
                    return;
                }
            }
        }
    }

    async fn run(self, msg: Message) {
        let cfg = &self.state.config.outbox;
        self.deliverer.prepare(&msg).await;
        // The overall turn first, then the route's, then the send at once: both are taken when
        // the send starts (a route turn taken before a long wait for the overall one would let
        // the route's next message follow this one too closely). A route that is not ready
        // costs one overall turn, once: only this message takes its route's turns.
        loop {
            wait_turn(|| self.limits.overall()).await;
            self.shared_turn(msg.channel).await;
            match self.limits.route(msg.route.as_deref()) {
                Ok(()) => break,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
        // A long wait for turns (a backlog at the service's pace) may have eaten the lease:
        // renew it, fenced on the claim's expiry, or — when another claim took the message
        // over meanwhile — leave the send to that claim (the only repeat the outbox would
        // otherwise make without any crash).
        let now = self.state.now_ms();
        let lease_ms = i64::try_from(cfg.lease_ms).unwrap_or(i64::MAX);
        if let Some(until) = msg.lease_until_ms
            && until.saturating_sub(now) < lease_ms - lease_ms / 20
        {
            match renew(&self.state.db, &msg, &self.owner, until, now.saturating_add(lease_ms))
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(target: "tradecast_hub::outbox", id = %msg.id, "lease taken over while waiting for a turn: not sent by this claim");
                    self.done.notify_one();
                    return;
                }
                Err(e) => {
                    tracing::warn!(target: "tradecast_hub::outbox", id = %msg.id, error = %e, "renewing an outbox lease failed: not sent now");
                    self.done.notify_one();
                    return;
                }
            }
        }
        // Give up on an attempt that outlives most of its lease (another runner would take
        // the message over anyway).
        let limit = Duration::from_millis(cfg.lease_ms.saturating_mul(9) / 10);
        let outcome = match tokio::time::timeout(limit, self.deliverer.deliver(&msg)).await {
            Ok(o) => o,
            Err(_) => Outcome::Retry(format!("no answer within {} ms", limit.as_millis())),
        };
        let now = self.state.now_ms();
        if let Err(e) = finish(&self.state.db, cfg, &msg, &self.owner, &outcome, now).await {
            // The lease expires and the message is delivered again (counted).
            tracing::error!(target: "tradecast_hub::outbox", id = %msg.id, error = %e, "recording an outbox delivery failed");
        }
        self.done.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn turns(l: &Limits<FakeRelativeClock>, route: &str) -> Result<(), Duration> {
        l.route(Some(route))
    }

    #[test]
    fn telegram_chats_get_one_message_per_second_and_groups_twenty_per_minute() {
        let clock = FakeRelativeClock::default();
        let l = Limits::new(Channel::Telegram, &OutboxConfig::default(), clock.clone());
        // One per second and 10 % (the margin for network jitter).
        assert_eq!(turns(&l, "42"), Ok(()));
        assert_eq!(turns(&l, "42"), Err(Duration::from_millis(1100)));
        // Another chat has its own turn.
        assert_eq!(turns(&l, "43"), Ok(()));
        clock.advance(Duration::from_millis(600));
        assert_eq!(turns(&l, "42"), Err(Duration::from_millis(500)));
        clock.advance(Duration::from_millis(500));
        assert_eq!(turns(&l, "42"), Ok(()));
        // A group: one every 3.3 s (20 per minute, with the margin).
        assert_eq!(turns(&l, "-100123"), Ok(()));
        clock.advance(Duration::from_secs(1));
        assert_eq!(turns(&l, "-100123"), Err(Duration::from_millis(2300)));
        clock.advance(Duration::from_millis(2300));
        assert_eq!(turns(&l, "-100123"), Ok(()));
        // No route: no per-route limit.
        assert_eq!(l.route(None), Ok(()));
    }

    #[test]
    fn telegram_is_spaced_overall_and_stripe_allows_its_burst() {
        let clock = FakeRelativeClock::default();
        let l = Limits::new(Channel::Telegram, &OutboxConfig::default(), clock.clone());
        // 30 a second, evenly (no burst: Telegram counts any one second), 10 % wider.
        let mut sent = 0;
        let mut elapsed = Duration::ZERO;
        while elapsed < Duration::from_secs(1) {
            match l.overall() {
                Ok(()) => sent += 1,
                Err(wait) => {
                    assert!(wait <= Duration::from_micros(36_667), "{wait:?}");
                    clock.advance(wait);
                    elapsed += wait;
                }
            }
        }
        assert!((27..=28).contains(&sent), "{sent} in the first second");
        let s = Limits::new(Channel::Stripe, &OutboxConfig::default(), clock.clone());
        for _ in 0..25 {
            assert_eq!(s.overall(), Ok(()));
        }
        assert!(s.overall().is_err());
        // Stripe has no per-route limit.
        assert_eq!(s.route(Some("42")), Ok(()));
        assert_eq!(s.route(Some("42")), Ok(()));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let c =
            OutboxConfig { backoff_base_ms: 1000, backoff_cap_ms: 10_000, ..Default::default() };
        for _ in 0..50 {
            let b1 = backoff(&c, 1).as_millis();
            assert!((500..=1000).contains(&b1), "{b1}");
            let b3 = backoff(&c, 3).as_millis();
            assert!((2000..=4000).contains(&b3), "{b3}");
            let b9 = backoff(&c, 9).as_millis();
            assert!((5000..=10_000).contains(&b9), "{b9}");
            let huge = backoff(&c, i64::MAX).as_millis();
            assert!((5000..=10_000).contains(&huge), "{huge}");
        }
    }

    #[test]
    fn channels_name_themselves() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse("email"), None);
    }
}
