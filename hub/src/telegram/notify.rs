//! What the bot tells a linked user, and how loudly: a level per event (`on`, `silent`: no
//! sound, `off`), freqtrade's model, set with `/settings`. Anything about a trader's account goes
//! to their private chat only.
//!
//! New signals reach Telegram through [`SignalAlerts`], a job that follows the `signals` table
//! from a stored cursor (not the accepting transaction, which stays O(1)): each alert is an
//! outbox row with a dedupe key, so a run repeated after a crash sends nothing twice. An alert
//! is a `sendPhoto` of the signal's setup (`crate::charts::setup`) with the text as its caption:
//! the row stores the signal id, and the picture is rendered when it is sent (falling back to
//! the text alone if it cannot be).

use sqlx::{Any, Row, Transaction};

use super::html::esc;
use super::link::{self, Linked};
use crate::db::{Db, DbError};
use crate::outbox::{self, Channel, NewMessage};
use crate::state::AppState;

/// An event a user can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A new signal of a provider they follow.
    Signal,
    /// Their subscription: renewal, failed payment, grace period, end.
    Billing,
    /// The owner's alarms: dead letters, failed jobs (owners and admins only).
    Alarm,
    /// The owner's broadcasts: news, offers, guides (the marketing opt-out).
    News,
    /// Their own account: copies filled or refused, signals skipped by their rules, positions
    /// closed with P&L (when they publish closed trades), close-alls ([`super::account`]).
    Trades,
    /// Their node offline and back, and the risk guard closing everything.
    Health,
}

impl Event {
    /// Every event, in the order `/settings` shows them.
    pub const ALL: [Event; 6] =
        [Event::Signal, Event::Trades, Event::Health, Event::Billing, Event::Alarm, Event::News];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Signal => "signal",
            Event::Billing => "billing",
            Event::Alarm => "alarm",
            Event::News => "news",
            Event::Trades => "trades",
            Event::Health => "health",
        }
    }

    /// The event of a stored name.
    pub fn parse(s: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// In a user's words.
    pub fn label(self) -> &'static str {
        match self {
            Event::Signal => "New signals",
            Event::Billing => "Plan and payments",
            Event::Alarm => "Hub alarms",
            Event::News => "News and offers",
            Event::Trades => "Fills, skips and closes",
            Event::Health => "Node offline, risk guard",
        }
    }

    /// Whether a role receives it at all.
    pub fn for_role(self, role: crate::accounts::Role) -> bool {
        match self {
            Event::Alarm => role.is_admin(),
            Event::Signal | Event::Billing | Event::News | Event::Trades | Event::Health => true,
        }
    }
}

/// How loudly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A message with sound.
    On,
    /// A message without sound (`disable_notification`).
    Silent,
    /// Nothing.
    Off,
}

impl Level {
    /// Every level.
    pub const ALL: [Level; 3] = [Level::On, Level::Silent, Level::Off];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::On => "on",
            Level::Silent => "silent",
            Level::Off => "off",
        }
    }

    /// The level of a stored name.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// A user's levels (every event; defaults where none is stored: all `on`).
pub async fn levels(db: &Db, user_id: &str) -> Result<Vec<(Event, Level)>, DbError> {
    let rows = sqlx::query("SELECT event, level FROM telegram_prefs WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(db.pool())
        .await?;
    let mut out: Vec<(Event, Level)> = Event::ALL.iter().map(|e| (*e, Level::On)).collect();
    for r in &rows {
        let (e, l): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        if let (Some(e), Some(l)) = (Event::parse(&e), Level::parse(&l))
            && let Some(slot) = out.iter_mut().find(|(ev, _)| *ev == e)
        {
            slot.1 = l;
        }
    }
    Ok(out)
}

/// Every account's stored level of `event`, in one query (an account without a row has the
/// default, `on`: see [`level_in`]).
pub async fn levels_for(
    db: &Db,
    event: Event,
) -> Result<std::collections::HashMap<String, Level>, DbError> {
    let rows = sqlx::query("SELECT user_id, level FROM telegram_prefs WHERE event = $1")
        .bind(event.as_str())
        .fetch_all(db.pool())
        .await?;
    let mut out = std::collections::HashMap::with_capacity(rows.len());
    for r in &rows {
        let (user, level): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        if let Some(level) = Level::parse(&level) {
            out.insert(user, level);
        }
    }
    Ok(out)
}

/// `linked`'s level of `event` from [`levels_for`]'s map (role and blocked mark applied).
pub fn level_in(
    linked: &Linked,
    stored: &std::collections::HashMap<String, Level>,
    event: Event,
) -> Level {
    let level = stored.get(&linked.user_id).copied().unwrap_or(Level::On);
    level_of(linked, &[(event, level)], event)
}

/// Sets one level, inside the caller's transaction.
pub async fn set_level_in(
    tx: &mut Transaction<'static, Any>,
    user_id: &str,
    event: Event,
    level: Level,
    now_ms: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO telegram_prefs (user_id, event, level, updated_at_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, event) DO UPDATE SET level = excluded.level, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(user_id)
    .bind(event.as_str())
    .bind(level.as_str())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A message for a chat, as an outbox row.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The chat.
    pub chat_id: i64,
    /// `sendMessage`'s parameters.
    pub params: frankenstein::methods::SendMessageParams,
}

/// Enqueues a `sendMessage` in `tx` (sent once it commits); `dedupe` makes a repeat a no-op.
pub async fn enqueue_send(
    tx: &mut Transaction<'static, Any>,
    params: &frankenstein::methods::SendMessageParams,
    chat_id: i64,
    dedupe: &str,
    cause: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    enqueue_call(tx, "sendMessage", params, Some(chat_id), dedupe, cause, now_ms).await
}

/// Enqueues any Bot API call in `tx`; `chat_id` is its route (per-chat limits and order).
pub async fn enqueue_call<P: serde::Serialize>(
    tx: &mut Transaction<'static, Any>,
    method: &str,
    params: &P,
    chat_id: Option<i64>,
    dedupe: &str,
    cause: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    enqueue_call_at(tx, method, params, chat_id, dedupe, cause, now_ms, None).await
}

/// [`enqueue_call`], not sent before `not_before_ms` (a delayed channel post).
#[allow(clippy::too_many_arguments)]
pub async fn enqueue_call_at<P: serde::Serialize>(
    tx: &mut Transaction<'static, Any>,
    method: &str,
    params: &P,
    chat_id: Option<i64>,
    dedupe: &str,
    cause: &str,
    now_ms: i64,
    not_before_ms: Option<i64>,
) -> Result<bool, DbError> {
    let payload = super::bot::payload(method, params);
    enqueue_payload(tx, method, &payload, chat_id, dedupe, cause, now_ms, not_before_ms).await
}

/// Enqueues a payload built already (e.g. [`super::bot::photo_payload`]) in `tx`.
#[allow(clippy::too_many_arguments)]
pub async fn enqueue_payload(
    tx: &mut Transaction<'static, Any>,
    method: &str,
    payload: &serde_json::Value,
    chat_id: Option<i64>,
    dedupe: &str,
    cause: &str,
    now_ms: i64,
    not_before_ms: Option<i64>,
) -> Result<bool, DbError> {
    let route = chat_id.map(|c| c.to_string());
    let msg = NewMessage {
        channel: Channel::Telegram,
        kind: &format!("telegram.{method}"),
        route: route.as_deref(),
        payload,
        dedupe_key: Some(dedupe),
        cause: Some(cause),
        not_before_ms,
    };
    Ok(outbox::enqueue(tx, &msg, now_ms).await?.is_some())
}

/// A plain HTML message to `chat_id`, silent or not.
pub fn html(chat_id: i64, text: String, silent: bool) -> frankenstein::methods::SendMessageParams {
    frankenstein::methods::SendMessageParams::builder()
        .chat_id(chat_id)
        .text(super::html::fit(&text))
        .parse_mode(frankenstein::ParseMode::Html)
        .maybe_disable_notification(silent.then_some(true))
        .link_preview_options(
            frankenstein::types::LinkPreviewOptions::builder().is_disabled(true).build(),
        )
        .build()
}

/// The level of `event` for `linked`, and whether they may get it at all (role; not blocked).
pub fn level_of(linked: &Linked, levels: &[(Event, Level)], event: Event) -> Level {
    if !event.for_role(linked.role) || linked.blocked_at_ms.is_some() {
        return Level::Off;
    }
    levels.iter().find(|(e, _)| *e == event).map_or(Level::On, |(_, l)| *l)
}

/// Tells `user_id` about `event` (if linked, and at their level) in `tx`, reading through `tx`
/// only (callers hold a write transaction).
pub async fn tell_in(
    tx: &mut Transaction<'static, Any>,
    user_id: &str,
    event: Event,
    text: String,
    dedupe: &str,
    cause: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    let Some(linked) = link::of_user_in(tx, user_id).await? else { return Ok(false) };
    let rows = sqlx::query("SELECT level FROM telegram_prefs WHERE user_id = $1 AND event = $2")
        .bind(user_id)
        .bind(event.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    let stored = match rows {
        Some(r) => Level::parse(&r.try_get::<String, _>(0)?),
        None => None,
    };
    let level = level_of(&linked, &[(event, stored.unwrap_or(Level::On))], event);
    if level == Level::Off {
        return Ok(false);
    }
    let params = html(linked.chat_id, text, level == Level::Silent);
    enqueue_send(tx, &params, linked.chat_id, dedupe, cause, now_ms).await
}

/// The job that turns new signals into alerts for linked subscribers whose plan has the
/// `telegram` feature and whose level for signals is not `off`.
#[derive(Debug, Default)]
pub struct SignalAlerts;

/// The cursor's key in `telegram_state`.
const CURSOR: &str = "signal_alerts.cursor";

impl crate::jobs::Job for SignalAlerts {
    fn run<'a>(
        &'a self,
        state: &'a AppState,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if !state.telegram.is_on() {
                return Ok("skipped: Telegram is off".into());
            }
            let (signals, sent) = signal_alerts(state).await.map_err(|e| e.to_string())?;
            Ok(format!("{signals} new signals, {sent} alerts queued"))
        })
    }
}

/// One pass of [`SignalAlerts`]: `(signals read, alerts queued)`.
pub async fn signal_alerts(state: &AppState) -> Result<(usize, usize), DbError> {
    let db = &state.db;
    let now = state.now_ms();
    let cursor = super::state_get(db, CURSOR).await?;
    // A hub that turns Telegram on does not alert its whole history: it starts from now.
    let (after_ms, after_id) = match cursor.as_deref().and_then(|c| c.split_once('/')) {
        Some((ms, id)) => (ms.parse::<i64>().unwrap_or(now), id.to_owned()),
        None => (now, String::new()),
    };
    let rows = sqlx::query(
        "SELECT s.id, s.provider_user_id, COALESCE(NULLIF(u.display_name, ''), u.email), s.symbol, \
         s.side, s.entry, s.stop, s.tp1, s.received_at_ms \
         FROM signals s JOIN users u ON u.id = s.provider_user_id \
         WHERE s.received_at_ms > $1 OR (s.received_at_ms = $1 AND s.id > $2) \
         ORDER BY s.received_at_ms, s.id LIMIT 200",
    )
    .bind(after_ms)
    .bind(&after_id)
    .fetch_all(db.pool())
    .await?;
    let linked = link::all(db).await?;
    // Read once per pass, not per signal and account: the levels and who has the feature.
    let stored = levels_for(db, Event::Signal).await?;
    let mut with_feature = std::collections::HashMap::new();
    for l in &linked {
        if level_in(l, &stored, Event::Signal) != Level::Off {
            let features = crate::entitlements::features_at(db, &l.user_id, now).await?;
            with_feature.insert(l.user_id.clone(), features.iter().any(|f| f == "telegram"));
        }
    }
    let channels = super::channels::enabled(db).await?;
    let base =
        state.config.public_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned());
    let mut posts = Vec::new();
    let mut alerts = Vec::new();
    let mut last = None;
    for r in &rows {
        let id: String = r.try_get(0)?;
        let provider: String = r.try_get(1)?;
        let provider_name: String = r.try_get(2)?;
        let (symbol, side, entry, stop, tp1): (String, String, String, String, String) =
            (r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?, r.try_get(7)?);
        let received: i64 = r.try_get(8)?;
        for c in channels.iter().filter(|c| c.matches(&provider, &symbol)) {
            let post = super::channels::Post {
                side: &side,
                symbol: &symbol,
                provider_name: &provider_name,
                entry: &entry,
                stop: &stop,
                tp1: &tp1,
                received_at_ms: received,
                delay_s: c.delay_s,
                record_url: base.as_ref().map(|b| format!("{b}/p/{provider}")),
            };
            let params = html(c.chat_id, post.text(), false);
            let due = received.saturating_add(c.delay_s.saturating_mul(1000));
            posts.push((params, c.chat_id, format!("tg:channel:{}:{id}", c.id), id.clone(), due));
        }
        for l in &linked {
            if with_feature.get(&l.user_id) != Some(&true)
                || !crate::entitlements::is_entitled(db, &l.user_id, &provider, received).await?
            {
                continue;
            }
            let level = level_in(l, &stored, Event::Signal);
            let text = format!(
                "📈 <b>{side} {symbol}</b> from {provider}\nEntry <code>{entry}</code> · stop <code>{stop}</code> · target <code>{tp1}</code>\nYour Tradecast app decides within your own rules.",
                side = esc(&side.to_uppercase()),
                symbol = esc(&symbol),
                provider = esc(&provider_name),
                entry = esc(&super::price(&entry)),
                stop = esc(&super::price(&stop)),
                tp1 = esc(&super::price(&tp1)),
            );
            let params = html(l.chat_id, text, level == Level::Silent);
            alerts.push((params, l.chat_id, format!("tg:signal:{id}:{}", l.user_id), id.clone()));
        }
        last = Some(format!("{received}/{id}"));
    }
    let mut sent = 0;
    let mut tx = db.begin_write().await?;
    for (params, chat, dedupe, id) in &alerts {
        // The setup picture with the text as its caption, rendered when sent (the text alone
        // if it cannot be).
        let payload = super::bot::photo_payload(params, id);
        let cause = format!("signal:{id}");
        if enqueue_payload(&mut tx, "sendPhoto", &payload, Some(*chat), dedupe, &cause, now, None)
            .await?
        {
            sent += 1;
        }
    }
    for (params, chat, dedupe, id, due) in &posts {
        let cause = format!("signal:{id}");
        let at = (*due > now).then_some(*due);
        if enqueue_call_at(&mut tx, "sendMessage", params, Some(*chat), dedupe, &cause, now, at)
            .await?
        {
            sent += 1;
        }
    }
    let cursor = last.unwrap_or_else(|| format!("{after_ms}/{after_id}"));
    super::state_set_in(&mut tx, CURSOR, &cursor).await?;
    tx.commit().await?;
    if sent > 0 {
        outbox::wake(state);
    }
    Ok((rows.len(), sent))
}

/// What a subscriber is told when their subscription changed from `before` (status, period
/// end; none: new) to `now`; `None` when the change is not news to them (an internal field).
pub fn billing_message(
    before: Option<(crate::billing::ledger::Status, i64)>,
    now: &crate::billing::ledger::Subscription,
    plan_name: &str,
    account_url: Option<&str>,
) -> Option<String> {
    use crate::billing::ledger::Status;
    let plan = esc(plan_name);
    let day = super::fmt_day;
    let manage =
        account_url.map(|u| format!("\n<a href=\"{0}\">{0}</a>", esc(u))).unwrap_or_default();
    let prev = before.map(|(s, _)| s);
    if prev == Some(now.status)
        && !(now.status == Status::Active
            && before.is_some_and(|(_, end)| now.current_period_end_ms > end))
    {
        return None;
    }
    Some(match now.status {
        Status::Trialing => format!(
            "✅ Your free trial of <b>{plan}</b> has started; the first payment is due {}.",
            day(now.current_period_end_ms)
        ),
        Status::Active if prev == Some(Status::PastDue) => format!(
            "✅ Payment received: <b>{plan}</b> is active again and renews {}.",
            day(now.current_period_end_ms)
        ),
        Status::Active if prev == Some(Status::Active) => {
            format!("🔁 <b>{plan}</b> renewed: paid until {}.", day(now.current_period_end_ms))
        }
        Status::Active => {
            format!("✅ <b>{plan}</b> is active and renews {}.", day(now.current_period_end_ms))
        }
        Status::PastDue => format!(
            "⚠️ Your payment for <b>{plan}</b> failed. Your signals continue until {}; please update your card.{manage}",
            day(now.covered_until_ms)
        ),
        Status::Canceled => format!(
            "<b>{plan}</b> is cancelled: it stays active until {}.{manage}",
            day(now.current_period_end_ms)
        ),
        Status::Expired => format!(
            "<b>{plan}</b> has ended: no new signals reach your devices. Your open trades stay under your app's own rules.{manage}"
        ),
        Status::Refunded => format!("<b>{plan}</b> was refunded and has ended."),
        Status::Incomplete => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::ledger::{Door, Status, Subscription};

    const DAY: i64 = 86_400_000;

    fn sub(status: Status, end: i64) -> Subscription {
        Subscription {
            id: "s1".into(),
            account_id: "a1".into(),
            plan_id: "p1".into(),
            door: Door::Stripe,
            external_id: "sub_1".into(),
            status,
            current_period_start_ms: end - 30 * DAY,
            current_period_end_ms: end,
            cancel_at_period_end: false,
            trial_end_ms: None,
            past_due_since_ms: None,
            covered_until_ms: end + 7 * DAY,
            ended_at_ms: None,
            referral: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn billing_news_per_transition() {
        let end = 1_800_000_000_000;
        let url = Some("https://hub.example.com/account");
        let msg = |before, now: &Subscription| billing_message(before, now, "Gold & <Co>", url);
        let started = msg(None, &sub(Status::Active, end)).unwrap();
        assert!(started.contains("<b>Gold &amp; &lt;Co&gt;</b> is active"), "{started}");
        let failed = msg(Some((Status::Active, end)), &sub(Status::PastDue, end)).unwrap();
        assert!(
            failed.contains("payment") && failed.contains("hub.example.com/account"),
            "{failed}"
        );
        let back = msg(Some((Status::PastDue, end)), &sub(Status::Active, end + 30 * DAY)).unwrap();
        assert!(back.contains("active again"), "{back}");
        let renewed =
            msg(Some((Status::Active, end)), &sub(Status::Active, end + 30 * DAY)).unwrap();
        assert!(renewed.contains("renewed"), "{renewed}");
        assert_eq!(msg(Some((Status::Active, end)), &sub(Status::Active, end)), None);
        assert_eq!(msg(Some((Status::PastDue, end)), &sub(Status::PastDue, end)), None);
        assert!(
            msg(Some((Status::Canceled, end)), &sub(Status::Expired, end))
                .unwrap()
                .contains("ended")
        );
        assert_eq!(msg(None, &sub(Status::Incomplete, end)), None);
    }

    #[test]
    fn events_and_levels_round_trip_their_names() {
        for e in Event::ALL {
            assert_eq!(Event::parse(e.as_str()), Some(e));
        }
        for l in Level::ALL {
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
        assert!(!Event::Alarm.for_role(crate::accounts::Role::Subscriber));
        assert!(Event::Alarm.for_role(crate::accounts::Role::Owner));
    }
}
