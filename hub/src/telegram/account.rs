//! What happens on a trader's own account, told to their private chat as it reaches the hub:
//! a copy filled or refused by the broker, a signal the node skipped (with its reason), a
//! position closed with its P&L, everything closed by the drawdown guard or the daily loss
//! limit (or by the trader), and the node going offline and coming back.
//!
//! Only what the hub may read is told. Fills, refusals and skips come from the node's `SHARED`
//! stream (executions and approvals the hub keeps for billing and copy statistics), close-alls
//! from its `COMMANDS` stream; a closed position's P&L only from the `PUBLISHED` stream, i.e.
//! when the trader ticked "closed trades" on the node's Settings → Publishing (otherwise it is
//! sealed and the hub cannot see it: the bot says so once, in `/help`). Never in a group.
//!
//! Each message is an outbox row in the transaction that commits the record (so a record
//! synced twice, or a crash before the commit, tells nothing twice or lost), deduplicated by the
//! record's header hash. Records the node signed more than [`STALE_MS`] before they reached the
//! hub (a node that was offline for a day, then syncs its backlog) are not told one by one: the
//! node's history page has them.
//!
//! Presence: every QUIC session start and end is stored per device (`device_presence`,
//! migration 0026); the `telegram.device_health` job tells a linked trader once when a node has
//! been offline for `telegram.offline_after_s` (default 10 minutes), and once when it is back.
//! The instance holding a session touches its row every minute ([`touch`]); a row not touched for
//! [`SESSION_STALE_MS`] (its hub process was killed, so the session's end was never written)
//! reads as offline since it was last seen.
//!
//! The EA link: the node signs a `Heartbeat` into its `DEVICE` stream when MetaTrader's Expert
//! Advisor stops polling it and when it is back ([`on_heartbeat`], migration 0027); the same job
//! tells the trader once when the EA has been silent for `telegram.offline_after_s` while the
//! node itself is online (signals arrive but cannot be executed), and once when it is back.

use sqlx::{Any, Row, Transaction};
use tradecast_protocol::{Body, Command, DecidedBy, Decision, Heartbeat, Kind, Record, StreamId};

use super::html::esc;
use super::notify::{self, Event};
use crate::db::{Db, DbError};

/// Records signed longer than this before they reached the hub are not told (a backlog).
pub const STALE_MS: i64 = 3_600_000;

/// How often the instance holding a session touches its presence row.
pub const TOUCH_EVERY_MS: i64 = 60_000;

/// A session row not touched for this long is read as offline since it was last seen.
pub const SESSION_STALE_MS: i64 = 3 * TOUCH_EVERY_MS;

/// MT5's "request completed" and "done partially": a fill.
const DONE: [u32; 2] = [10_009, 10_010];

/// What a synced record tells its trader, if anything: `(event, text)`.
async fn message_for(
    tx: &mut Transaction<'static, Any>,
    record: &Record,
    device_name: &str,
) -> Result<Option<(Event, String)>, DbError> {
    let h = record.header();
    let Ok(body) = record.body() else { return Ok(None) };
    let on = |text: String| format!("{text}\n<i>{}</i>", esc(device_name));
    Ok(match (h.stream, body) {
        (StreamId::SHARED, Body::Execution(e)) if e.device == h.author => {
            let what = signal_words(tx, &e.signal_id.to_hex()).await?;
            if DONE.contains(&e.retcode) {
                let price = e.fill_price.map(|p| format!(" at {p}")).unwrap_or_default();
                Some((Event::Trades, on(format!("✅ Filled: {what}, {} lots{price}", e.volume))))
            } else {
                Some((
                    Event::Trades,
                    on(format!(
                        "⚠️ Not filled: {what}: the broker answered {} (retcode). Nothing is open.",
                        e.retcode
                    )),
                ))
            }
        }
        (StreamId::SHARED, Body::Approval(a))
            if a.device == h.author
                && a.decision == Decision::Rejected
                && a.decided_by == DecidedBy::Policy =>
        {
            let what = signal_words(tx, &a.signal_id.to_hex()).await?;
            Some((
                Event::Trades,
                on(format!(
                    "⏭ Skipped by your rules: {what}: {}",
                    esc(a.reason.strip_prefix("skipped: ").unwrap_or(&a.reason))
                )),
            ))
        }
        (StreamId::PUBLISHED, Body::TradeClosed(t)) if t.device == h.author => {
            let net = t.profit + t.commission + t.swap;
            let mark = if net.is_sign_negative() && !net.is_zero() { "🔻" } else { "🔺" };
            Some((
                Event::Trades,
                on(format!(
                    "{mark} Closed: {} {} {} lots, {} → {}: <b>{}</b> (profit {}, commission {}, swap {})",
                    esc(&t.symbol),
                    side_word(t.side),
                    t.volume,
                    t.open_price,
                    t.close_price,
                    signed(net),
                    t.profit,
                    t.commission,
                    t.swap
                )),
            ))
        }
        (StreamId::COMMANDS, Body::Command(Command::CloseAll { symbol, reason, .. })) => {
            let scope = symbol.map(|s| format!(" on {}", esc(&s))).unwrap_or_default();
            let guard = reason.starts_with("drawdown guard") || reason.starts_with("daily loss");
            let (event, head) = if guard {
                (Event::Health, "🛑 Everything closed by your risk guard")
            } else {
                (Event::Trades, "Close all")
            };
            let tail = if guard {
                "\nAuto-copy stays paused until you unlock it on the node."
            } else {
                ""
            };
            Some((event, on(format!("{head}{scope}: {}{tail}", esc(&reason)))))
        }
        _ => None,
    })
}

/// Tells the record's trader about it (see the module doc), inside the sync commit's `tx`.
pub async fn on_synced(
    tx: &mut Transaction<'static, Any>,
    record: &Record,
    received_at_ms: i64,
) -> Result<(), DbError> {
    let h = record.header();
    let interesting = matches!(
        (h.stream, h.kind),
        (StreamId::SHARED, Kind::Execution | Kind::Approval)
            | (StreamId::PUBLISHED, Kind::TradeClosed)
            | (StreamId::COMMANDS, Kind::Command)
    );
    if !interesting || h.sealed || received_at_ms.saturating_sub(h.created_at_ms) > STALE_MS {
        return Ok(());
    }
    // One read of the device on the sync commit's path: its account and its name.
    let device = sqlx::query("SELECT user_id, name FROM devices WHERE id = $1")
        .bind(h.author.to_text())
        .fetch_optional(&mut **tx)
        .await?;
    let Some(device) = device else { return Ok(()) };
    let (user_id, name): (String, String) = (device.try_get(0)?, device.try_get(1)?);
    if let Some((event, text)) = message_for(tx, record, &name).await? {
        let dedupe = format!("account:{}", record.header_hash().to_hex());
        notify::tell_in(tx, &user_id, event, text, &dedupe, "account event", received_at_ms)
            .await?;
    }
    Ok(())
}

async fn device_name(tx: &mut Transaction<'static, Any>, device: &str) -> Result<String, DbError> {
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM devices WHERE id = $1")
        .bind(device)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(name.unwrap_or_else(|| device.to_owned()))
}

/// "EURUSD buy (Fib-RSI provider name)" of a signal the hub holds, or its id.
async fn signal_words(tx: &mut Transaction<'static, Any>, id: &str) -> Result<String, DbError> {
    let row = sqlx::query("SELECT symbol, side FROM signals WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(r) => {
            let (symbol, side): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            format!("{} {}", esc(&symbol), esc(&side))
        }
        None => format!("signal {}", &id[..id.len().min(12)]),
    })
}

fn side_word(side: tradecast_protocol::Side) -> &'static str {
    match side {
        tradecast_protocol::Side::Buy => "buy",
        tradecast_protocol::Side::Sell => "sell",
    }
}

/// A money amount with its sign always shown.
fn signed(x: rust_decimal::Decimal) -> String {
    if x.is_sign_negative() && !x.is_zero() { x.to_string() } else { format!("+{x}") }
}

/// Marks `device` online: a sync session started at `at_ms`. After an outage its trader was
/// told about, queues the "back online" message.
pub async fn session_started(db: &Db, device: &str, at_ms: i64) -> Result<(), DbError> {
    let mut tx = db.begin_write().await?;
    let told: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT told_offline_at_ms FROM device_presence WHERE device_id = $1 AND online = 0",
    )
    .bind(device)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO device_presence (device_id, online, since_ms, told_offline_at_ms, seen_at_ms) \
         VALUES ($1, 1, $2, NULL, $2) ON CONFLICT (device_id) DO UPDATE SET online = 1, \
         since_ms = excluded.since_ms, told_offline_at_ms = NULL, seen_at_ms = excluded.seen_at_ms",
    )
    .bind(device)
    .bind(at_ms)
    .execute(&mut *tx)
    .await?;
    if let Some(Some(told_at)) = told {
        let user: Option<String> = sqlx::query_scalar("SELECT user_id FROM devices WHERE id = $1")
            .bind(device)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(user_id) = user {
            let name = device_name(&mut tx, device).await?;
            let text = format!("🟢 {} is back online and syncing.", esc(&name));
            let dedupe = format!("presence:{device}:back:{told_at}");
            notify::tell_in(
                &mut tx,
                &user_id,
                Event::Health,
                text,
                &dedupe,
                "device health",
                at_ms,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Marks `device` offline at `at_ms`: its session that started at `started_ms` ended. A session
/// that started later (the node moved to another instance first) keeps it online.
pub async fn session_ended(
    db: &Db,
    device: &str,
    started_ms: i64,
    at_ms: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE device_presence SET online = 0, since_ms = $3, told_offline_at_ms = NULL \
         WHERE device_id = $1 AND online = 1 AND since_ms = $2",
    )
    .bind(device)
    .bind(started_ms)
    .bind(at_ms)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The session of `device` that started at `started_ms` is alive at `now_ms` (every
/// [`TOUCH_EVERY_MS`]). A row the job had read as stale (no touch for [`SESSION_STALE_MS`]: a
/// stalled instance) is marked online again, with the "back online" message if its trader was
/// told; a newer session of the device (on another instance) keeps the row.
pub async fn touch(db: &Db, device: &str, started_ms: i64, now_ms: i64) -> Result<(), DbError> {
    let touched = sqlx::query(
        "UPDATE device_presence SET seen_at_ms = $3 \
         WHERE device_id = $1 AND online = 1 AND since_ms = $2",
    )
    .bind(device)
    .bind(started_ms)
    .bind(now_ms)
    .execute(db.pool())
    .await?
    .rows_affected();
    if touched == 0 {
        let online: Option<i64> =
            sqlx::query_scalar("SELECT online FROM device_presence WHERE device_id = $1")
                .bind(device)
                .fetch_optional(db.pool())
                .await?;
        if online != Some(1) {
            session_started(db, device, started_ms).await?;
        }
    }
    Ok(())
}

/// Touches the presence row of `device`'s session every [`TOUCH_EVERY_MS`] until aborted.
pub fn spawn_touch(
    state: crate::state::AppState,
    device: String,
    started_ms: i64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let period = std::time::Duration::from_millis(TOUCH_EVERY_MS.unsigned_abs());
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tick.tick().await;
            if let Err(e) = touch(&state.db, &device, started_ms, state.now_ms()).await {
                tracing::warn!(device = %device, error = %e, "presence not touched");
            }
        }
    })
}

/// A node's signed `Heartbeat` (its EA link up or down), inside the sync commit's `tx`: the
/// device's EA state changes only when the link did, and an EA back after its trader was told
/// it was silent queues the "back" message (unless the record is a backlog).
pub async fn on_heartbeat(
    tx: &mut Transaction<'static, Any>,
    record: &Record,
    received_at_ms: i64,
) -> Result<(), DbError> {
    let h = record.header();
    if h.sealed || h.stream != StreamId::DEVICE || h.kind != Kind::Heartbeat {
        return Ok(());
    }
    let Ok(Body::Heartbeat(Heartbeat { device, at_ms, ea_connected, .. })) = record.body() else {
        return Ok(());
    };
    if device != h.author {
        return Ok(());
    }
    let author = h.author.to_text();
    // The node's clock, never later than the hub's receipt.
    let at_ms = at_ms.min(received_at_ms);
    let before = sqlx::query(
        "SELECT ea_connected, told_ea_offline_at_ms FROM device_presence WHERE device_id = $1",
    )
    .bind(&author)
    .fetch_optional(&mut **tx)
    .await?;
    let (was, told): (Option<i64>, Option<i64>) = match &before {
        Some(r) => (r.try_get(0)?, r.try_get(1)?),
        None => (None, None),
    };
    let now = i64::from(ea_connected);
    if was == Some(now) {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO device_presence (device_id, online, since_ms, seen_at_ms, ea_connected, \
         ea_since_ms) VALUES ($1, 1, $2, $2, $3, $4) ON CONFLICT (device_id) DO UPDATE SET \
         ea_connected = excluded.ea_connected, ea_since_ms = excluded.ea_since_ms, \
         told_ea_offline_at_ms = NULL",
    )
    .bind(&author)
    .bind(received_at_ms)
    .bind(now)
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    let fresh = received_at_ms.saturating_sub(h.created_at_ms) <= STALE_MS;
    if let (true, Some(told_at), true) = (ea_connected, told, fresh) {
        let device = sqlx::query("SELECT user_id, name FROM devices WHERE id = $1")
            .bind(&author)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(d) = device {
            let (user_id, name): (String, String) = (d.try_get(0)?, d.try_get(1)?);
            let text = format!(
                "🟢 MetaTrader's Expert Advisor is polling {} again: signals are executed.",
                esc(&name)
            );
            let dedupe = format!("presence:{author}:ea-back:{told_at}");
            notify::tell_in(
                tx,
                &user_id,
                Event::Health,
                text,
                &dedupe,
                "EA health",
                received_at_ms,
            )
            .await?;
        }
    }
    Ok(())
}

/// One pass of the `telegram.device_health` job: every device offline for at least
/// `offline_after_ms` whose trader was not told yet is told once. Returns how many were told.
pub async fn tell_offline(db: &Db, now_ms: i64, offline_after_ms: i64) -> Result<usize, DbError> {
    // Sessions whose instance stopped touching them (killed): offline since last seen.
    sqlx::query(
        "UPDATE device_presence SET online = 0, since_ms = COALESCE(seen_at_ms, since_ms), \
         told_offline_at_ms = NULL WHERE online = 1 AND COALESCE(seen_at_ms, since_ms) < $1",
    )
    .bind(now_ms.saturating_sub(SESSION_STALE_MS))
    .execute(db.pool())
    .await?;
    let rows = sqlx::query(
        "SELECT p.device_id, p.since_ms, d.user_id FROM device_presence p \
         JOIN devices d ON d.id = p.device_id \
         WHERE p.online = 0 AND p.told_offline_at_ms IS NULL AND p.since_ms <= $1 \
         AND d.revoked_at_ms IS NULL",
    )
    .bind(now_ms.saturating_sub(offline_after_ms))
    .fetch_all(db.pool())
    .await?;
    let outage = Outage {
        mark: "UPDATE device_presence SET told_offline_at_ms = $2 \
               WHERE device_id = $1 AND online = 0 AND told_offline_at_ms IS NULL AND since_ms = $3",
        dedupe: "offline",
        what: "device health",
        text: |name, minutes| {
            format!(
                "🔴 {name} has been offline for {minutes} min: signals are not copied to it while \
                 it is. Check that the app (or the VPS daemon) is running and online."
            )
        },
    };
    tell_outages(db, &rows, now_ms, &outage).await
}

/// An outage the `telegram.device_health` job tells a trader about once.
struct Outage {
    /// Marks it told (`$1` device, `$2` now, `$3` since); matches nothing if it already was or
    /// the outage ended.
    mark: &'static str,
    /// The outbox dedupe key's kind (`presence:{device}:{dedupe}:{since}`).
    dedupe: &'static str,
    /// The outbox row's cause.
    what: &'static str,
    /// The message, from the device's escaped name and the outage's minutes.
    text: fn(&str, i64) -> String,
}

/// Tells each of `rows` (device, since, user) about its outage once; returns how many were told.
async fn tell_outages(
    db: &Db,
    rows: &[sqlx::any::AnyRow],
    now_ms: i64,
    outage: &Outage,
) -> Result<usize, DbError> {
    let mut told = 0;
    for r in rows {
        let (device, since, user_id): (String, i64, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let mut tx = db.begin_write().await?;
        // Marked in the same transaction as the message: told once even if two instances run
        // the job at the same moment (the second's UPDATE matches nothing).
        let marked = sqlx::query(outage.mark)
            .bind(&device)
            .bind(now_ms)
            .bind(since)
            .execute(&mut *tx)
            .await?;
        if marked.rows_affected() == 1 {
            let name = device_name(&mut tx, &device).await?;
            let text = (outage.text)(&esc(&name), (now_ms - since) / 60_000);
            let dedupe = format!("presence:{device}:{}:{since}", outage.dedupe);
            if notify::tell_in(&mut tx, &user_id, Event::Health, text, &dedupe, outage.what, now_ms)
                .await?
            {
                told += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(told)
}

/// The EA half of the `telegram.device_health` job: every online device whose node reported its
/// EA link down at least `offline_after_ms` ago, and whose trader was not told yet, is told once.
/// (A node that is itself offline is told about by [`tell_offline`].) Returns how many.
pub async fn tell_ea_offline(
    db: &Db,
    now_ms: i64,
    offline_after_ms: i64,
) -> Result<usize, DbError> {
    let rows = sqlx::query(
        "SELECT p.device_id, p.ea_since_ms, d.user_id FROM device_presence p \
         JOIN devices d ON d.id = p.device_id \
         WHERE p.online = 1 AND p.ea_connected = 0 AND p.told_ea_offline_at_ms IS NULL \
         AND p.ea_since_ms <= $1 AND d.revoked_at_ms IS NULL",
    )
    .bind(now_ms.saturating_sub(offline_after_ms))
    .fetch_all(db.pool())
    .await?;
    let outage = Outage {
        mark: "UPDATE device_presence SET told_ea_offline_at_ms = $2 WHERE device_id = $1 \
               AND ea_connected = 0 AND told_ea_offline_at_ms IS NULL AND ea_since_ms = $3",
        dedupe: "ea-offline",
        what: "EA health",
        text: |name, minutes| {
            format!(
                "🟠 MetaTrader's Expert Advisor has not polled {name} for {minutes} min: signals \
                 reach the node but cannot be executed. Check that MT5 is running and connected, \
                 Algo Trading is on and the Tradecast EA is on its chart."
            )
        },
    };
    tell_outages(db, &rows, now_ms, &outage).await
}

/// The job that tells traders of nodes gone offline (see [`tell_offline`]), after
/// `telegram.offline_after_s`.
#[derive(Debug, Default)]
pub struct DeviceHealth;

impl crate::jobs::Job for DeviceHealth {
    fn run<'a>(
        &'a self,
        state: &'a crate::state::AppState,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if !state.telegram.is_on() {
                return Ok("skipped: Telegram is off".into());
            }
            let after_ms =
                i64::try_from(state.config.telegram.offline_after_s.saturating_mul(1000))
                    .unwrap_or(i64::MAX);
            let now = state.now_ms();
            let told = tell_offline(&state.db, now, after_ms).await.map_err(|e| e.to_string())?;
            let ea = tell_ea_offline(&state.db, now, after_ms).await.map_err(|e| e.to_string())?;
            Ok(format!("{told} offline node(s) and {ea} silent EA(s) told"))
        })
    }
}
