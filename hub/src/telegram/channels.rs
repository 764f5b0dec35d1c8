//! Signal channels (migration 0022): Telegram channels or groups that receive signals routed by
//! provider and symbol — a gold channel for XAUUSD, a free channel that gets every signal an hour
//! late — each post with a link to the provider's public track record.
//!
//! - **Rules.** A channel has a chat id (a channel's or supergroup's negative id, the bot an
//!   administrator there), an optional provider (else every provider), an optional symbol list
//!   (else every symbol) and a delay in seconds (0: as the subscribers get it). Owners and admins
//!   manage them on the console's Broadcasts page; each change is audited.
//! - **Posting.** The signal alerts job ([`super::notify::signal_alerts`]) reads new signals once
//!   and, in the same transaction that moves its cursor, enqueues one outbox row per matching
//!   enabled channel with `not_before_ms` = the signal's arrival + the delay: each signal reaches
//!   each channel once (the row's dedupe key), a restart neither loses nor repeats one, and the
//!   outbox keeps Telegram's 20-a-minute limit per group. A channel's posts go out in order.
//! - A channel disabled or deleted after a post was queued still gets that post (it was due);
//!   the rule applies to signals arriving after the change.

use sqlx::Row;

use super::html::esc;
use crate::audit::{self, Entry};
use crate::db::{Db, DbError};
use crate::error::ApiError;
use crate::state::AppState;

/// Longest delay a channel may have: 7 days.
pub const MAX_DELAY_S: i64 = 7 * 86_400;

/// A channel rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Our id.
    pub id: String,
    /// The Telegram chat (negative).
    pub chat_id: i64,
    /// The owner's name for it.
    pub title: String,
    /// Only this provider's signals; `None`: every provider's.
    pub provider_user_id: Option<String>,
    /// Only these symbols (upper case); empty: every symbol.
    pub symbols: Vec<String>,
    /// Seconds after the signal's arrival.
    pub delay_s: i64,
    /// Whether new signals are posted.
    pub enabled: bool,
    /// Created.
    pub created_at_ms: i64,
}

impl Channel {
    /// Whether a signal of `provider` on `symbol` goes to this channel.
    pub fn matches(&self, provider: &str, symbol: &str) -> bool {
        self.enabled
            && self.provider_user_id.as_deref().is_none_or(|p| p == provider)
            && (self.symbols.is_empty()
                || self.symbols.iter().any(|s| s.eq_ignore_ascii_case(symbol)))
    }
}

/// A new channel, as the owner filled it in.
#[derive(Debug, Clone, Default)]
pub struct NewChannel {
    /// The chat id as typed.
    pub chat_id: String,
    /// Its name.
    pub title: String,
    /// A provider account id, or empty for every provider.
    pub provider_user_id: String,
    /// Symbols separated by commas or spaces, or empty for every symbol.
    pub symbols: String,
    /// Delay, seconds.
    pub delay_s: i64,
}

/// Parses a symbol list: commas or spaces between, each 1-20 of `A-Z 0-9 . _ -`, upper-cased,
/// without repeats.
pub fn parse_symbols(text: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for s in text.split([',', ' ', '\n', '\t']).map(str::trim).filter(|s| !s.is_empty()) {
        let ok = s.len() <= 20
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(format!("`{s}` is not a symbol (1-20 letters, digits, `.`, `_` or `-`)"));
        }
        let up = s.to_ascii_uppercase();
        if !out.contains(&up) {
            out.push(up);
        }
    }
    if out.len() > 100 {
        return Err("at most 100 symbols per channel".into());
    }
    Ok(out)
}

/// Parses a channel's chat id: a negative integer (channels and supergroups; `-100…`).
pub fn parse_chat_id(text: &str) -> Result<i64, String> {
    match text.trim().parse::<i64>() {
        Ok(id) if id < 0 => Ok(id),
        _ => {
            Err("the chat id of a channel or group is a negative number, e.g. -1001234567890"
                .into())
        }
    }
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Channel, DbError> {
    let symbols: Option<String> = r.try_get(4)?;
    Ok(Channel {
        id: r.try_get(0)?,
        chat_id: r.try_get(1)?,
        title: r.try_get(2)?,
        provider_user_id: r.try_get(3)?,
        symbols: symbols
            .map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
        delay_s: r.try_get(5)?,
        enabled: r.try_get::<i64, _>(6)? != 0,
        created_at_ms: r.try_get(7)?,
    })
}

const COLUMNS: &str =
    "id, chat_id, title, provider_user_id, symbols, delay_s, enabled, created_at_ms";

/// Every channel, newest first.
pub async fn list(db: &Db) -> Result<Vec<Channel>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {COLUMNS} FROM telegram_channels ORDER BY created_at_ms DESC, id"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// The enabled channels.
pub async fn enabled(db: &Db) -> Result<Vec<Channel>, DbError> {
    Ok(list(db).await?.into_iter().filter(|c| c.enabled).collect())
}

/// Adds a channel (audited `telegram.channel.create`).
pub async fn create(
    state: &AppState,
    actor: &str,
    new: &NewChannel,
    request_id: &str,
) -> Result<Channel, ApiError> {
    let chat_id = parse_chat_id(&new.chat_id).map_err(ApiError::Validation)?;
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > 100 {
        return Err(ApiError::Validation("the name must be 1-100 characters".into()));
    }
    let symbols = parse_symbols(&new.symbols).map_err(ApiError::Validation)?;
    if !(0..=MAX_DELAY_S).contains(&new.delay_s) {
        return Err(ApiError::Validation(format!("the delay must be 0-{MAX_DELAY_S} seconds")));
    }
    let provider = new.provider_user_id.trim();
    let provider = if provider.is_empty() {
        None
    } else {
        let user = crate::accounts::user_by_id(&state.db, provider).await?;
        if !user.is_some_and(|u| u.role == crate::accounts::Role::Provider) {
            return Err(ApiError::Validation(format!("no provider account {provider}")));
        }
        Some(provider.to_owned())
    };
    let channel = Channel {
        id: crate::ids::new_id(),
        chat_id,
        title: title.to_owned(),
        provider_user_id: provider,
        symbols,
        delay_s: new.delay_s,
        enabled: true,
        created_at_ms: state.now_ms(),
    };
    let mut tx = state.db.begin_write().await?;
    sqlx::query(crate::sql!(
        "INSERT INTO telegram_channels ({COLUMNS}, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8)"
    ))
    .bind(&channel.id)
    .bind(channel.chat_id)
    .bind(&channel.title)
    .bind(channel.provider_user_id.as_deref())
    .bind((!channel.symbols.is_empty()).then(|| channel.symbols.join(",")))
    .bind(channel.delay_s)
    .bind(channel.created_at_ms)
    .bind(actor)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    let entry = Entry {
        actor,
        action: "telegram.channel.create",
        subject: &channel.id,
        detail: serde_json::json!({
            "chat_id": channel.chat_id, "title": channel.title,
            "provider": channel.provider_user_id, "symbols": channel.symbols,
            "delay_s": channel.delay_s,
        }),
        request_id,
    };
    audit::append(&mut tx, state.db.backend(), channel.created_at_ms, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(channel)
}

/// Turns a channel on or off (audited `telegram.channel.enable` / `.disable`); `false` when
/// there is no such channel.
pub async fn set_enabled(
    state: &AppState,
    actor: &str,
    id: &str,
    on: bool,
    request_id: &str,
) -> Result<bool, ApiError> {
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let n = sqlx::query("UPDATE telegram_channels SET enabled = $1 WHERE id = $2")
        .bind(i64::from(on))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?
        .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    let entry = Entry {
        actor,
        action: if on { "telegram.channel.enable" } else { "telegram.channel.disable" },
        subject: id,
        detail: serde_json::json!({}),
        request_id,
    };
    audit::append(&mut tx, state.db.backend(), now, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(true)
}

/// Removes a channel rule (audited `telegram.channel.delete`); posts already queued still go.
pub async fn delete(
    state: &AppState,
    actor: &str,
    id: &str,
    request_id: &str,
) -> Result<bool, ApiError> {
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let n = sqlx::query("DELETE FROM telegram_channels WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?
        .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    let entry = Entry {
        actor,
        action: "telegram.channel.delete",
        subject: id,
        detail: serde_json::json!({}),
        request_id,
    };
    audit::append(&mut tx, state.db.backend(), now, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(true)
}

/// What a channel gets for a signal (HTML, every value escaped).
pub struct Post<'a> {
    /// `buy` / `sell`.
    pub side: &'a str,
    /// The symbol.
    pub symbol: &'a str,
    /// The provider's name.
    pub provider_name: &'a str,
    /// Prices as stored.
    pub entry: &'a str,
    /// Stop.
    pub stop: &'a str,
    /// First target.
    pub tp1: &'a str,
    /// When the hub received it.
    pub received_at_ms: i64,
    /// The channel's delay.
    pub delay_s: i64,
    /// The provider's public page, when the hub has a `public_url`.
    pub record_url: Option<String>,
}

impl Post<'_> {
    /// The message's HTML.
    pub fn text(&self) -> String {
        let mut text = format!(
            "📈 <b>{side} {symbol}</b> from {provider}\nEntry <code>{entry}</code> · stop <code>{stop}</code> · target <code>{tp1}</code>",
            side = esc(&self.side.to_uppercase()),
            symbol = esc(self.symbol),
            provider = esc(self.provider_name),
            entry = esc(&super::price(self.entry)),
            stop = esc(&super::price(self.stop)),
            tp1 = esc(&super::price(self.tp1)),
        );
        if self.delay_s > 0 {
            text.push_str(&format!(
                "\n<i>Posted {} after subscribers received it ({} UTC).</i>",
                esc(&delay_words(self.delay_s)),
                esc(&super::fmt_minute(self.received_at_ms)),
            ));
        }
        if let Some(url) = &self.record_url {
            text.push_str(&format!(
                "\n<a href=\"{}\">Track record, verifiable offline</a>",
                esc(url)
            ));
        }
        text
    }
}

/// `3600` → `1 h`, `90` → `1 min 30 s`.
pub fn delay_words(s: i64) -> String {
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60, s % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "min"), (sec, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n} {u}"))
        .collect();
    if parts.is_empty() { "0 s".into() } else { parts.join(" ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(provider: Option<&str>, symbols: &[&str], enabled: bool) -> Channel {
        Channel {
            id: "c".into(),
            chat_id: -100,
            title: "t".into(),
            provider_user_id: provider.map(str::to_owned),
            symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
            delay_s: 0,
            enabled,
            created_at_ms: 0,
        }
    }

    #[test]
    fn rules_route_by_provider_and_symbol() {
        let gold = channel(None, &["XAUUSD"], true);
        assert!(gold.matches("p1", "XAUUSD") && gold.matches("p2", "xauusd"));
        assert!(!gold.matches("p1", "EURUSD"));
        let p1 = channel(Some("p1"), &[], true);
        assert!(p1.matches("p1", "EURUSD") && !p1.matches("p2", "EURUSD"));
        assert!(!channel(None, &[], false).matches("p1", "EURUSD"), "a disabled channel");
        assert!(channel(None, &[], true).matches("anyone", "ANY"));
    }

    #[test]
    fn symbols_and_chat_ids_are_checked() {
        assert_eq!(parse_symbols(" xauusd, XAUUSD  eurusd\n").unwrap(), ["XAUUSD", "EURUSD"]);
        assert_eq!(parse_symbols("").unwrap(), Vec::<String>::new());
        assert!(parse_symbols("EUR/USD").is_err());
        assert!(parse_symbols(&"A".repeat(21)).is_err());
        assert_eq!(parse_chat_id(" -1001234567890 ").unwrap(), -1_001_234_567_890);
        assert!(parse_chat_id("12345").is_err(), "a private chat is not a channel");
        assert!(parse_chat_id("@gold").is_err());
    }

    #[test]
    fn a_delayed_post_says_so_and_links_the_record() {
        let post = Post {
            side: "buy",
            symbol: "XAU<USD>",
            provider_name: "A & B",
            entry: "2350.10",
            stop: "2340",
            tp1: "2370",
            received_at_ms: 0,
            delay_s: 3_690,
            record_url: Some("https://hub.example.com/p/abc?x=1&y=2".into()),
        };
        let t = post.text();
        assert!(t.contains("<b>BUY XAU&lt;USD&gt;</b> from A &amp; B"), "{t}");
        assert!(t.contains("Posted 1 h 1 min 30 s after"), "{t}");
        assert!(t.contains("href=\"https://hub.example.com/p/abc?x=1&amp;y=2\""), "{t}");
        let now = Post { delay_s: 0, record_url: None, ..post };
        assert!(!now.text().contains("Posted") && !now.text().contains("href"));
        assert_eq!(delay_words(0), "0 s");
        assert_eq!(delay_words(86_400 * 2 + 60), "2 d 1 min");
    }
}
