//! Linking a Telegram user to a hub account: a one-time deep link `t.me/<bot>?start=<code>`
//! (a random code, stored only as its SHA-256, single use, expiring), redeemed by `/start
//! <code>` in the bot's private chat; `/unlink` ends it. One Telegram user per account and one
//! account per Telegram user.

use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};

use crate::accounts::Role;
use crate::audit::{self, Entry};
use crate::db::{Backend, Db, DbError};

/// A fresh link code and its deep link.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LinkCode {
    /// The `start` parameter (43 characters of `A-Za-z0-9_-`).
    pub code: String,
    /// `https://t.me/<bot>?start=<code>`.
    pub url: String,
    /// When it stops working, unix ms.
    pub expires_at_ms: i64,
}

/// A linked Telegram user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// The hub account.
    pub user_id: String,
    /// Its role.
    pub role: Role,
    /// Its display name (or e-mail).
    pub name: String,
    /// The Telegram user.
    pub telegram_user_id: i64,
    /// The private chat with the bot.
    pub chat_id: i64,
    /// `@username`, if the user has one.
    pub username: Option<String>,
    /// The Telegram first name.
    pub first_name: String,
    /// When it was linked, unix ms.
    pub linked_at_ms: i64,
    /// When Telegram said the user blocked the bot, if it did since their last message.
    pub blocked_at_ms: Option<i64>,
}

/// Why a `/start <code>` did not link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No such code (mistyped, or from another hub).
    #[error("this link is not valid")]
    Unknown,
    /// Past its expiry.
    #[error("this link has expired")]
    Expired,
    /// Used already.
    #[error("this link was used already")]
    Used,
    /// This Telegram user is linked to another account.
    #[error("this Telegram account is linked to another Tradecast account: send /unlink first")]
    OtherAccount,
    /// The account is disabled.
    #[error("this Tradecast account is disabled")]
    Disabled,
}

fn hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

/// Makes a link code for `user_id`, valid `ttl_ms`.
pub async fn new_code(
    db: &Db,
    user_id: &str,
    bot_username: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<LinkCode, DbError> {
    let code = data_encoding::BASE64URL_NOPAD.encode(&crate::ids::random_bytes(32));
    let expires_at_ms = now_ms + ttl_ms;
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO telegram_link_codes (code_hash, user_id, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(hash(&code))
    .bind(user_id)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let url = format!("https://t.me/{bot_username}?start={code}");
    Ok(LinkCode { code, url, expires_at_ms })
}

/// Who is linking: the Telegram user and the private chat the code came from.
#[derive(Debug, Clone)]
pub struct Who<'a> {
    /// Telegram user id.
    pub telegram_user_id: i64,
    /// The private chat.
    pub chat_id: i64,
    /// `@username`.
    pub username: Option<&'a str>,
    /// First name.
    pub first_name: &'a str,
}

/// Redeems `code` for `who` inside the caller's transaction; the account linked.
pub async fn redeem_in(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    code: &str,
    who: &Who<'_>,
    now_ms: i64,
    request_id: &str,
) -> Result<Result<Linked, Refused>, DbError> {
    let row = sqlx::query(
        "SELECT c.user_id, c.expires_at_ms, c.used_at_ms, u.disabled_at_ms FROM telegram_link_codes c \
         JOIN users u ON u.id = c.user_id WHERE c.code_hash = $1",
    )
    .bind(hash(code))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(Err(Refused::Unknown)) };
    let user_id: String = row.try_get(0)?;
    let expires_at_ms: i64 = row.try_get(1)?;
    let used_at_ms: Option<i64> = row.try_get(2)?;
    let disabled: Option<i64> = row.try_get(3)?;
    if used_at_ms.is_some() {
        return Ok(Err(Refused::Used));
    }
    if expires_at_ms <= now_ms {
        return Ok(Err(Refused::Expired));
    }
    if disabled.is_some() {
        return Ok(Err(Refused::Disabled));
    }
    let other = sqlx::query("SELECT user_id FROM telegram_links WHERE telegram_user_id = $1")
        .bind(who.telegram_user_id)
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(other) = other {
        let other: String = other.try_get(0)?;
        if other != user_id {
            return Ok(Err(Refused::OtherAccount));
        }
    }
    sqlx::query(
        "UPDATE telegram_link_codes SET used_at_ms = $1, used_by_telegram_user_id = $2 WHERE code_hash = $3",
    )
    .bind(now_ms)
    .bind(who.telegram_user_id)
    .bind(hash(code))
    .execute(&mut **tx)
    .await?;
    // An account links one Telegram user: a new link replaces the previous one.
    sqlx::query("DELETE FROM telegram_links WHERE user_id = $1")
        .bind(&user_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO telegram_links (user_id, telegram_user_id, chat_id, username, first_name, linked_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&user_id)
    .bind(who.telegram_user_id)
    .bind(who.chat_id)
    .bind(who.username)
    .bind(who.first_name)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    let entry = Entry {
        actor: &user_id,
        action: "telegram.link",
        subject: &user_id,
        detail: serde_json::json!({ "telegram_user_id": who.telegram_user_id }),
        request_id,
    };
    audit::append(tx, backend, now_ms, &entry).await?;
    match linked_in(tx, who.telegram_user_id).await? {
        Some(l) => Ok(Ok(l)),
        None => Err(DbError::Sqlx(sqlx::Error::RowNotFound)),
    }
}

/// Ends the link of a Telegram user; whether there was one.
pub async fn unlink_in(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    linked: &Linked,
    now_ms: i64,
    request_id: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query("DELETE FROM telegram_links WHERE telegram_user_id = $1")
        .bind(linked.telegram_user_id)
        .execute(&mut **tx)
        .await?;
    let entry = Entry {
        actor: &linked.user_id,
        action: "telegram.unlink",
        subject: &linked.user_id,
        detail: serde_json::json!({ "telegram_user_id": linked.telegram_user_id }),
        request_id,
    };
    audit::append(tx, backend, now_ms, &entry).await?;
    Ok(done.rows_affected() > 0)
}

const LINKED: &str = "SELECT l.user_id, u.role, COALESCE(NULLIF(u.display_name, ''), u.email), \
     l.telegram_user_id, l.chat_id, l.username, l.linked_at_ms, l.blocked_at_ms, l.first_name \
     FROM telegram_links l JOIN users u ON u.id = l.user_id";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Linked, DbError> {
    let role: String = r.try_get(1)?;
    Ok(Linked {
        user_id: r.try_get(0)?,
        role: role.parse().map_err(|_| DbError::Corrupt(format!("unknown role `{role}`")))?,
        name: r.try_get(2)?,
        telegram_user_id: r.try_get(3)?,
        chat_id: r.try_get(4)?,
        username: r.try_get(5)?,
        linked_at_ms: r.try_get(6)?,
        blocked_at_ms: r.try_get(7)?,
        first_name: r.try_get(8)?,
    })
}

/// The account a Telegram user is linked to (an enabled one), inside a transaction.
pub async fn linked_in(
    tx: &mut Transaction<'static, Any>,
    telegram_user_id: i64,
) -> Result<Option<Linked>, DbError> {
    let sql = crate::sql!("{LINKED} WHERE l.telegram_user_id = $1 AND u.disabled_at_ms IS NULL");
    let row = sqlx::query(sql).bind(telegram_user_id).fetch_optional(&mut **tx).await?;
    row.as_ref().map(from_row).transpose()
}

/// The account a Telegram user is linked to (an enabled one).
pub async fn of_telegram_user(db: &Db, telegram_user_id: i64) -> Result<Option<Linked>, DbError> {
    let sql = crate::sql!("{LINKED} WHERE l.telegram_user_id = $1 AND u.disabled_at_ms IS NULL");
    let row = sqlx::query(sql).bind(telegram_user_id).fetch_optional(db.pool()).await?;
    row.as_ref().map(from_row).transpose()
}

/// The Telegram link of an account, if it has one.
pub async fn of_user(db: &Db, user_id: &str) -> Result<Option<Linked>, DbError> {
    let sql = crate::sql!("{LINKED} WHERE l.user_id = $1");
    let row = sqlx::query(sql).bind(user_id).fetch_optional(db.pool()).await?;
    row.as_ref().map(from_row).transpose()
}

/// The Telegram link of an account, inside a transaction.
pub async fn of_user_in(
    tx: &mut Transaction<'static, Any>,
    user_id: &str,
) -> Result<Option<Linked>, DbError> {
    let sql = crate::sql!("{LINKED} WHERE l.user_id = $1 AND u.disabled_at_ms IS NULL");
    let row = sqlx::query(sql).bind(user_id).fetch_optional(&mut **tx).await?;
    row.as_ref().map(from_row).transpose()
}

/// Every linked, enabled account (notifications and the owner's counts).
pub async fn all(db: &Db) -> Result<Vec<Linked>, DbError> {
    let sql = crate::sql!("{LINKED} WHERE u.disabled_at_ms IS NULL ORDER BY l.linked_at_ms");
    let rows = sqlx::query(sql).fetch_all(db.pool()).await?;
    rows.iter().map(from_row).collect()
}

/// Records that the chat `chat` (a route: the chat id as text) blocked the bot.
pub async fn mark_blocked(db: &Db, chat: &str, now_ms: i64) -> Result<(), DbError> {
    let Ok(chat_id) = chat.parse::<i64>() else { return Ok(()) };
    sqlx::query(
        "UPDATE telegram_links SET blocked_at_ms = $1 WHERE chat_id = $2 AND blocked_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(chat_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A message from the user clears their blocked mark (they unblocked the bot to write).
pub async fn clear_blocked_in(
    tx: &mut Transaction<'static, Any>,
    telegram_user_id: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE telegram_links SET blocked_at_ms = NULL WHERE telegram_user_id = $1 AND blocked_at_ms IS NOT NULL",
    )
    .bind(telegram_user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Forgets used and expired codes older than a day.
pub async fn prune_codes(db: &Db, now_ms: i64) -> Result<u64, DbError> {
    let done = sqlx::query("DELETE FROM telegram_link_codes WHERE expires_at_ms < $1")
        .bind(now_ms - 86_400_000)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}
