//! The Telegram bot: one bot (token in the secrets) for notifications, commands and buttons.
//!
//! - [`api`]: the webhook (`POST /api/v1/telegram/webhook`), and [`api::apply`], which both the
//!   webhook and polling mode use: an update is deduplicated by `update_id` in the transaction
//!   that applies it.
//! - [`commands`]: what each command and button does, checked against the linked account's role.
//! - [`link`]: one-time deep links (`t.me/<bot>?start=<code>`) that link a Telegram user to an
//!   account.
//! - [`notify`]: per-event levels (on / silent / off) and the alerts (new signals, billing).
//! - [`bot`]: the Bot API client (frankenstein) and the outbox's deliverer: every message is an
//!   outbox row committed with its cause, sent within Telegram's limits, retried on 429.
//!
//! Off unless `telegram.mode` is `webhook` or `polling` and the `telegram_bot_token` secret is
//! set (webhook mode also needs `telegram_webhook_secret`); the hub says so once at start.

pub mod account;
pub mod alarms;
pub mod api;
pub mod approve;
pub mod bot;
pub mod broadcast;
pub mod channels;
pub mod commands;
pub mod guides;
pub mod html;
pub mod link;
pub mod notify;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::config::{Config, TelegramMode};
use crate::secrets::IntegrationSecrets;
use crate::state::AppState;

/// The update kinds the bot asks Telegram for.
pub const ALLOWED_UPDATES: [&str; 3] = ["message", "callback_query", "pre_checkout_query"];

/// The bot as configured.
#[derive(Debug, Clone, Default)]
pub struct Telegram {
    bot: Option<bot::Bot>,
    mode: TelegramMode,
    webhook_secret: Option<SecretString>,
    username: Arc<RwLock<Option<String>>>,
    /// The bot token, when the bot runs (the Mini App checks initData with it).
    token: Option<SecretString>,
}

impl Telegram {
    /// The bot for `config` and the secrets (off when either says so; logged once).
    pub fn new(config: &Config, secrets: &IntegrationSecrets) -> Result<Telegram, bot::CallError> {
        let t = &config.telegram;
        let token = secrets.telegram_bot_token.as_ref();
        let webhook_secret = secrets.telegram_webhook_secret.clone();
        let off = |why: &str| {
            tracing::info!(reason = why, "telegram: off");
            Telegram {
                bot: None,
                mode: TelegramMode::Off,
                webhook_secret: webhook_secret.clone(),
                username: Arc::default(),
                token: None,
            }
        };
        let Some(token) = token else {
            return Ok(off(if t.mode == TelegramMode::Off {
                "telegram.mode is off"
            } else {
                "the telegram_bot_token secret is not set"
            }));
        };
        if t.mode == TelegramMode::Off {
            return Ok(off("telegram.mode is off"));
        }
        if t.mode == TelegramMode::Webhook && webhook_secret.is_none() {
            return Ok(off("webhook mode needs the telegram_webhook_secret secret"));
        }
        Ok(Telegram {
            bot: Some(bot::Bot::new(&t.api_base_url, token)?),
            mode: t.mode,
            webhook_secret,
            username: Arc::new(RwLock::new(t.bot_username.clone())),
            token: Some(token.clone()),
        })
    }

    /// Whether the bot runs.
    pub fn is_on(&self) -> bool {
        self.bot.is_some()
    }

    /// The client, when the bot runs.
    pub fn bot(&self) -> Option<&bot::Bot> {
        self.bot.as_ref()
    }

    /// The bot token, when the bot runs (never logged: `SecretString`).
    pub fn token(&self) -> Option<&SecretString> {
        self.token.as_ref()
    }

    /// The webhook's secret token, when set.
    pub fn webhook_secret(&self) -> Option<&SecretString> {
        self.webhook_secret.as_ref()
    }

    /// The bot's username (from `telegram.bot_username` or `getMe`), empty until known.
    pub fn username(&self) -> String {
        self.username.read().map(|u| u.clone().unwrap_or_default()).unwrap_or_default()
    }

    fn set_username(&self, name: String) {
        if let Ok(mut u) = self.username.write() {
            *u = Some(name);
        }
    }
}

/// Ends `user_id`'s Telegram link from the account page: the chat is told and its menu reset.
/// Whether there was a link.
pub async fn unlink_account(
    state: &AppState,
    user_id: &str,
    request_id: &str,
) -> Result<bool, crate::db::DbError> {
    let Some(l) = link::of_user(&state.db, user_id).await? else { return Ok(false) };
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let done = link::unlink_in(&mut tx, state.db.backend(), &l, now, request_id).await?;
    let cause = format!("account_unlink:{user_id}");
    let menu = commands::set_commands(l.chat_id, None);
    let key = |n: u8| format!("tg:unlink:{user_id}:{now}:{n}");
    notify::enqueue_call(&mut tx, "setMyCommands", &menu, Some(l.chat_id), &key(0), &cause, now)
        .await?;
    let m = notify::html(
        l.chat_id,
        "Unlinked from your account page: this chat gets nothing more from your Tradecast account."
            .into(),
        false,
    );
    notify::enqueue_send(&mut tx, &m, l.chat_id, &key(1), &cause, now).await?;
    tx.commit().await?;
    crate::outbox::wake(state);
    Ok(done)
}

/// How long applied update ids are remembered (Telegram redelivers for at most 24 hours).
const UPDATES_KEPT_MS: i64 = 7 * 86_400_000;

/// Forgets old link codes and update ids (the janitor calls it).
pub async fn prune(db: &crate::db::Db, now_ms: i64) -> Result<u64, crate::db::DbError> {
    let codes = link::prune_codes(db, now_ms).await?;
    let updates = sqlx::query("DELETE FROM telegram_updates WHERE received_at_ms < $1")
        .bind(now_ms - UPDATES_KEPT_MS)
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(codes + updates)
}

/// A stored decimal price without its trailing zeros (`1.09128000` → `1.09128`); text that is
/// not a decimal is shown as it is.
pub fn price(stored: &str) -> String {
    stored
        .parse::<rust_decimal::Decimal>()
        .map(|d| d.normalize().to_string())
        .unwrap_or_else(|_| stored.to_owned())
}

/// `YYYY-MM-DD` (UTC) of a unix-ms instant.
pub fn fmt_day(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| "?".into())
}

/// `MM-DD HH:MM` (UTC) of a unix-ms instant.
pub fn fmt_minute(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The `telegram_state` key of the bot's username, for messages written inside a transaction
/// that has no [`AppState`] (an approval post's "Open in the app" link).
pub const USERNAME_KEY: &str = "bot.username";

/// Keeps the bot's username (configured or from `getMe`) in `telegram_state` for every
/// instance's transactions; a failure only leaves the links out and is logged.
async fn remember_username(state: &AppState) {
    let name = state.telegram.username();
    if name.is_empty() {
        return;
    }
    let write = async {
        let mut tx = state.db.begin_write().await?;
        state_set_in(&mut tx, USERNAME_KEY, &name).await?;
        tx.commit().await?;
        Ok::<(), crate::db::DbError>(())
    };
    if let Err(e) = write.await {
        tracing::warn!(error = %e, "keeping the bot's username failed");
    }
}

/// A `telegram_state` value read in `tx`.
pub async fn state_get_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    key: &str,
) -> Result<Option<String>, crate::db::DbError> {
    Ok(sqlx::query_scalar("SELECT value FROM telegram_state WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?)
}

/// A value the bot keeps in `telegram_state` (a job's cursor, what it last told).
pub async fn state_get(
    db: &crate::db::Db,
    key: &str,
) -> Result<Option<String>, crate::db::DbError> {
    Ok(sqlx::query_scalar("SELECT value FROM telegram_state WHERE key = $1")
        .bind(key)
        .fetch_optional(db.pool())
        .await?)
}

/// Sets a `telegram_state` value in `tx` (with the change it records).
pub async fn state_set_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    key: &str,
    value: &str,
) -> Result<(), crate::db::DbError> {
    sqlx::query(
        "INSERT INTO telegram_state (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Registers the bot's jobs: new-signal alerts (and channel posts) every 2 seconds, scheduled
/// tips, the hub's alarms and nodes gone offline every minute, closing approval messages whose
/// deadline passed every 30 seconds.
pub fn register_jobs(jobs: &mut crate::jobs::Scheduler) {
    let every = crate::jobs::Schedule::Every(Duration::from_secs(2));
    if let Err(e) = jobs.register("telegram.signal_alerts", every, Arc::new(notify::SignalAlerts)) {
        tracing::error!(error = %e, "telegram jobs not registered");
    }
    let minute = crate::jobs::Schedule::Every(Duration::from_secs(60));
    if let Err(e) = jobs.register("telegram.tips", minute, Arc::new(guides::TipSender)) {
        tracing::error!(error = %e, "telegram tips not registered");
    }
    if let Err(e) = jobs.register("telegram.alarms", minute, Arc::new(alarms::AlarmNotices)) {
        tracing::error!(error = %e, "telegram alarms not registered");
    }
    let half_minute = crate::jobs::Schedule::Every(Duration::from_secs(30));
    if let Err(e) =
        jobs.register("telegram.approval_expiry", half_minute, Arc::new(approve::ExpiryCloser))
    {
        tracing::error!(error = %e, "telegram approval expiry not registered");
    }
    if let Err(e) = jobs.register("telegram.device_health", minute, Arc::new(account::DeviceHealth))
    {
        tracing::error!(error = %e, "telegram device health not registered");
    }
}

/// Starts the bot's background work (none when it is off): learn the username (`getMe`),
/// set the default command menu, then `setWebhook` (webhook mode) or poll `getUpdates`.
pub fn start(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(bot) = state.telegram.bot().cloned() else { return Vec::new() };
    let state = state.clone();
    vec![tokio::spawn(async move {
        setup(&state, &bot).await;
        if state.telegram.mode == TelegramMode::Polling {
            poll(&state, &bot).await;
        }
    })]
}

/// Calls `method` until it succeeds (Telegram unreachable at start is retried, with backoff up
/// to a minute); `None` when Telegram refuses it for good (a 4xx other than 429).
async fn call_until_done(bot: &bot::Bot, method: &str, params: &Value) -> Option<Value> {
    let mut wait = Duration::from_millis(500);
    loop {
        match bot.call(method, params).await {
            Ok(v) => return Some(v),
            Err(bot::CallError::Api { code: 429, retry_after, .. }) => {
                wait = Duration::from_secs(u64::from(retry_after.unwrap_or(1)));
            }
            Err(e @ bot::CallError::Api { code: 400..500, .. }) => {
                tracing::error!(method, error = %e, "telegram refused a setup call");
                return None;
            }
            Err(e) => {
                tracing::warn!(method, error = %e, "telegram setup call failed; retrying");
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
        tokio::time::sleep(wait).await;
    }
}

async fn setup(state: &AppState, bot: &bot::Bot) {
    if state.telegram.username().is_empty()
        && let Some(me) = call_until_done(bot, "getMe", &json!({})).await
        && let Some(name) = me.get("username").and_then(Value::as_str)
    {
        state.telegram.set_username(name.to_owned());
    }
    remember_username(state).await;
    let menu = json!({ "commands": commands::Command::menu(None) });
    call_until_done(bot, "setMyCommands", &menu).await;
    match state.telegram.mode {
        TelegramMode::Webhook => {
            let (Some(base), Some(secret)) =
                (&state.config.public_url, state.telegram.webhook_secret())
            else {
                return;
            };
            let params = json!({
                "url": format!("{}{}", base.as_str(), api::WEBHOOK_PATH),
                "secret_token": secret.expose_secret(),
                "allowed_updates": ALLOWED_UPDATES,
            });
            if call_until_done(bot, "setWebhook", &params).await.is_some() {
                tracing::info!(url = %format!("{}{}", base.as_str(), api::WEBHOOK_PATH), "telegram: webhook set");
            }
        }
        TelegramMode::Polling => {
            call_until_done(bot, "deleteWebhook", &json!({})).await;
            tracing::info!("telegram: polling getUpdates");
        }
        TelegramMode::Off => {}
    }
}

/// How long the poller's lease lasts; renewed before every `getUpdates`.
const POLL_LEASE: Duration = Duration::from_secs(60);

/// Takes or renews the polling lease for `owner`; whether this instance holds it.
pub async fn poll_lease(state: &AppState, owner: &str) -> Result<bool, crate::db::DbError> {
    let now = state.now_ms();
    let until = now + i64::try_from(POLL_LEASE.as_millis()).unwrap_or(60_000);
    let done = sqlx::query(
        "INSERT INTO telegram_poller (id, owner, until_ms) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
         WHERE telegram_poller.owner = excluded.owner OR telegram_poller.until_ms < $3",
    )
    .bind(owner)
    .bind(until)
    .bind(now)
    .execute(state.db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn poll(state: &AppState, bot: &bot::Bot) {
    let owner = format!("{}:{}", state.cluster.instance(), crate::ids::random_hex(4));
    let mut offset: i64 = 0;
    let mut wait = Duration::from_millis(500);
    loop {
        match poll_lease(state, &owner).await {
            Ok(true) => {}
            Ok(false) => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "telegram: polling lease failed");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        }
        let params = json!({
            "offset": offset,
            "timeout": bot::POLL_TIMEOUT_S,
            "allowed_updates": ALLOWED_UPDATES,
        });
        match bot.call("getUpdates", &params).await {
            Ok(Value::Array(updates)) => {
                wait = Duration::from_millis(500);
                for u in &updates {
                    let Some(id) = u.get("update_id").and_then(Value::as_i64) else { continue };
                    let request_id = format!("telegram-poll-{id}");
                    match api::apply(state, u, &request_id).await {
                        Ok(_) => offset = offset.max(id + 1),
                        Err(e) if e.status().is_client_error() => {
                            // Telegram's own update that this hub cannot read: skipped (a
                            // retry would read it no better), logged.
                            tracing::warn!(update_id = id, error = %e, "telegram: update skipped");
                            offset = offset.max(id + 1);
                        }
                        Err(e) => {
                            // Not confirmed: getUpdates hands it out again.
                            tracing::warn!(update_id = id, error = %e, "telegram: update not applied; retrying");
                            tokio::time::sleep(wait).await;
                            break;
                        }
                    }
                }
            }
            Ok(_) => tracing::warn!("telegram: getUpdates answered something other than a list"),
            Err(bot::CallError::Api { code: 429, retry_after, .. }) => {
                tokio::time::sleep(Duration::from_secs(u64::from(retry_after.unwrap_or(1)))).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "telegram: getUpdates failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prices_lose_their_trailing_zeros_only() {
        assert_eq!(super::price("1.09128000"), "1.09128");
        assert_eq!(super::price("2400.50"), "2400.5");
        assert_eq!(super::price("150"), "150");
        assert_eq!(super::price("n/a"), "n/a");
    }
}
