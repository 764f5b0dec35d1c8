//! The owner's broadcasts: a text and an optional call-to-action button sent to a segment of
//! the linked accounts (`all`, `active`, `trial`, `expired`, or holders of one plan), each
//! recipient once, never to someone who turned "News and offers" off or blocked the bot. The
//! broadcast, its recipients and one outbox row per message are committed in one transaction:
//! the outbox sends within Telegram's limits, and a crash mid-broadcast repeats at most the
//! messages in flight. The button goes through `/b/<token>` (one token per recipient), which
//! counts the click and redirects.

use frankenstein::types::{InlineKeyboardButton, InlineKeyboardMarkup, ReplyMarkup};
use sqlx::Row;

use super::html::esc;
use super::link::{self, Linked};
use super::notify::{self, Event, Level};
use crate::audit::{self, Entry};
use crate::db::DbError;
use crate::error::ApiError;
use crate::state::AppState;

/// Who a broadcast goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Every linked account.
    All,
    /// Accounts with a paid subscription in force (active, cancelled at period end, past due).
    Active,
    /// Accounts in a free trial.
    Trial,
    /// Accounts whose subscription ended and who hold no plan now.
    Expired,
    /// Accounts holding this plan now.
    Plan(String),
}

impl Segment {
    /// Parses `all`, `active`, `trial`, `expired` or `plan:<id>`.
    pub fn parse(s: &str) -> Option<Segment> {
        Some(match s {
            "all" => Segment::All,
            "active" => Segment::Active,
            "trial" => Segment::Trial,
            "expired" => Segment::Expired,
            other => {
                let id = other.strip_prefix("plan:")?;
                if id.is_empty() || id.len() > 64 {
                    return None;
                }
                Segment::Plan(id.to_owned())
            }
        })
    }

    /// The stored text.
    pub fn as_text(&self) -> String {
        match self {
            Segment::All => "all".into(),
            Segment::Active => "active".into(),
            Segment::Trial => "trial".into(),
            Segment::Expired => "expired".into(),
            Segment::Plan(id) => format!("plan:{id}"),
        }
    }
}

/// A broadcast to send.
#[derive(Debug, Clone)]
pub struct NewBroadcast {
    /// Who gets it.
    pub segment: Segment,
    /// The text (plain; 1-3,500 characters).
    pub body: String,
    /// The button: its label and an `https://` (or `http://`) URL.
    pub cta: Option<(String, String)>,
}

/// A broadcast and its counts.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Its id.
    pub id: String,
    /// The segment's text.
    pub segment: String,
    /// The text.
    pub body: String,
    /// The button's label.
    pub cta_label: Option<String>,
    /// When it was sent, unix ms.
    pub created_at_ms: i64,
    /// Recipients.
    pub recipients: i64,
    /// Delivered to Telegram.
    pub delivered: i64,
    /// Refused for good (blocked users, chats gone).
    pub failed: i64,
    /// Recipients who pressed the button.
    pub clicks: i64,
}

/// The accounts of `segment` now (linked, enabled; not yet filtered by their levels).
pub(crate) async fn members(state: &AppState, segment: &Segment) -> Result<Vec<Linked>, DbError> {
    let linked = link::all(&state.db).await?;
    let now = state.now_ms();
    let statuses = |sql: &'static str| async move {
        let ids: Vec<String> = sqlx::query_scalar(sql).fetch_all(state.db.pool()).await?;
        Ok::<_, DbError>(ids)
    };
    let keep: Option<Vec<String>> = match segment {
        Segment::All => None,
        Segment::Active => Some(
            statuses(
                "SELECT DISTINCT account_id FROM subscriptions WHERE status IN ('active', 'canceled', 'past_due')",
            )
            .await?,
        ),
        Segment::Trial => Some(
            statuses("SELECT DISTINCT account_id FROM subscriptions WHERE status = 'trialing'")
                .await?,
        ),
        Segment::Expired => {
            let ended = statuses(
                "SELECT DISTINCT account_id FROM subscriptions WHERE status IN ('expired', 'refunded')",
            )
            .await?;
            let mut out = Vec::new();
            for id in ended {
                if crate::entitlements::active_at(&state.db, &id, now).await?.is_empty() {
                    out.push(id);
                }
            }
            Some(out)
        }
        Segment::Plan(plan) => Some(
            sqlx::query_scalar(crate::sql!(
                "SELECT DISTINCT e.user_id FROM entitlements e WHERE e.plan_id = $1 AND {}",
                crate::entitlements::active_sql(2)
            ))
            .bind(plan)
            .bind(now)
            .fetch_all(state.db.pool())
            .await?,
        ),
    };
    Ok(match keep {
        None => linked,
        Some(ids) => linked.into_iter().filter(|l| ids.contains(&l.user_id)).collect(),
    })
}

/// Sends `b` as `actor`: its id and how many it goes to.
pub async fn send(
    state: &AppState,
    actor: &str,
    b: &NewBroadcast,
    request_id: &str,
) -> Result<(String, usize), ApiError> {
    if !state.telegram.is_on() {
        return Err(ApiError::NotConfigured("Telegram (telegram.mode and telegram_bot_token)"));
    }
    let body = b.body.trim();
    if body.is_empty() || body.chars().count() > 3_500 {
        return Err(ApiError::Validation("the text must be 1-3,500 characters".into()));
    }
    if let Some((label, url)) = &b.cta {
        if label.trim().is_empty() || label.chars().count() > 64 {
            return Err(ApiError::Validation("the button's label must be 1-64 characters".into()));
        }
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.len() > 2_000
            || url.chars().any(char::is_whitespace)
        {
            return Err(ApiError::Validation("the button's link must be an http(s) URL".into()));
        }
    }
    let Some(base) = state.config.public_url.as_ref().map(|u| u.as_str().to_owned()) else {
        if b.cta.is_some() {
            return Err(ApiError::NotConfigured("a button's link (public_url)"));
        }
        return send_to(state, actor, b, body, None, request_id).await;
    };
    send_to(state, actor, b, body, Some(base), request_id).await
}

async fn send_to(
    state: &AppState,
    actor: &str,
    b: &NewBroadcast,
    body: &str,
    base: Option<String>,
    request_id: &str,
) -> Result<(String, usize), ApiError> {
    let mut recipients = Vec::new();
    let stored = notify::levels_for(&state.db, Event::News).await?;
    for l in members(state, &b.segment).await? {
        let level = notify::level_in(&l, &stored, Event::News);
        if level != Level::Off {
            recipients.push((l, level));
        }
    }
    let id = crate::ids::new_id();
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO telegram_broadcasts (id, created_by, segment, body, cta_label, cta_url, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(actor)
    .bind(b.segment.as_text())
    .bind(body)
    .bind(b.cta.as_ref().map(|c| c.0.as_str()))
    .bind(b.cta.as_ref().map(|c| c.1.as_str()))
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    let cause = format!("broadcast:{id}");
    for (l, level) in &recipients {
        let token = crate::ids::random_hex(16);
        let mut params = notify::html(l.chat_id, esc(body), *level == Level::Silent);
        if let (Some((label, _)), Some(base)) = (&b.cta, &base) {
            let button = InlineKeyboardButton::builder()
                .text(label.clone())
                .url(format!("{base}/b/{token}"))
                .build();
            params.reply_markup = Some(ReplyMarkup::InlineKeyboardMarkup(
                InlineKeyboardMarkup::builder().inline_keyboard(vec![vec![button]]).build(),
            ));
        }
        let dedupe = format!("tg:bc:{id}:{}", l.user_id);
        notify::enqueue_send(&mut tx, &params, l.chat_id, &dedupe, &cause, now).await?;
        sqlx::query(
            "INSERT INTO telegram_broadcast_recipients (broadcast_id, user_id, token, outbox_id) \
             VALUES ($1, $2, $3, (SELECT id FROM outbox WHERE dedupe_key = $4))",
        )
        .bind(&id)
        .bind(&l.user_id)
        .bind(&token)
        .bind(&dedupe)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    }
    let entry = Entry {
        actor,
        action: "telegram.broadcast",
        subject: &id,
        detail: serde_json::json!({ "segment": b.segment.as_text(), "recipients": recipients.len() }),
        request_id,
    };
    audit::append(&mut tx, state.db.backend(), now, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    crate::outbox::wake(state);
    Ok((id, recipients.len()))
}

/// A click on a broadcast's button: counted once per recipient; where to send the browser.
pub async fn click(state: &AppState, token: &str) -> Result<Option<String>, DbError> {
    if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT b.cta_url FROM telegram_broadcast_recipients r \
         JOIN telegram_broadcasts b ON b.id = r.broadcast_id WHERE r.token = $1",
    )
    .bind(token)
    .fetch_optional(state.db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let url: Option<String> = row.try_get(0)?;
    sqlx::query(
        "UPDATE telegram_broadcast_recipients SET clicked_at_ms = $1 WHERE token = $2 AND clicked_at_ms IS NULL",
    )
    .bind(state.now_ms())
    .bind(token)
    .execute(state.db.pool())
    .await?;
    Ok(url)
}

/// The latest broadcasts with their counts.
pub async fn list(state: &AppState, limit: i64) -> Result<Vec<Summary>, DbError> {
    let rows = sqlx::query(
        "SELECT b.id, b.segment, b.body, b.cta_label, b.created_at_ms, \
         (SELECT COUNT(*) FROM telegram_broadcast_recipients r WHERE r.broadcast_id = b.id), \
         (SELECT COUNT(*) FROM telegram_broadcast_recipients r JOIN outbox o ON o.id = r.outbox_id \
            WHERE r.broadcast_id = b.id AND o.state = 'sent'), \
         (SELECT COUNT(*) FROM telegram_broadcast_recipients r JOIN outbox o ON o.id = r.outbox_id \
            WHERE r.broadcast_id = b.id AND o.state IN ('dead', 'discarded')), \
         (SELECT COUNT(*) FROM telegram_broadcast_recipients r \
            WHERE r.broadcast_id = b.id AND r.clicked_at_ms IS NOT NULL) \
         FROM telegram_broadcasts b ORDER BY b.created_at_ms DESC, b.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(state.db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Summary {
                id: r.try_get(0)?,
                segment: r.try_get(1)?,
                body: r.try_get(2)?,
                cta_label: r.try_get(3)?,
                created_at_ms: r.try_get(4)?,
                recipients: r.try_get(5)?,
                delivered: r.try_get(6)?,
                failed: r.try_get(7)?,
                clicks: r.try_get(8)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        for s in ["all", "active", "trial", "expired", "plan:abc"] {
            assert_eq!(Segment::parse(s).map(|x| x.as_text()).as_deref(), Some(s));
        }
        assert_eq!(Segment::parse("plan:"), None);
        assert_eq!(Segment::parse("everyone"), None);
    }
}
