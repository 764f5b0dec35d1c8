//! A strict local stand-in for the part of the Telegram Bot API the hub uses: `getMe`, sending
//! and editing messages with inline keyboards, callback answers, webhooks and `getUpdates`,
//! bot commands per scope, photos, Stars invoice links, pre-checkout answers and refunds, chats
//! and their members.
//!
//! It checks what it receives as Telegram does (token, method names, parameters, HTML entities,
//! `callback_data` bytes, message lengths, who the bot may write to, the flood limits) and
//! answers with the Bot API's objects, so the hub's real client (frankenstein) parses them. A
//! simulated world stands behind it: users who write to the bot, press its buttons, block it and
//! pay its invoices, each action an update delivered by webhook (with the secret header and
//! retries) or queued for `getUpdates`. Everything it saw is in a log a test reads.
//!
//! It must not trust the client it checks: no frankenstein here, raw JSON only. See
//! `hub/standins/README.md`.

pub mod api;
pub mod html;
pub mod params;
pub mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::any;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use world::{
    AnsweredCallback, Call, ChatKind, ChatMessage, Delivered, Edit, Invoice, MemberStatus,
    PayOutcome, Payment, Sent, WorldError,
};
use world::{ChatRec, PendingCallback, PreCheckout, UserRec, World, random_token, unix_now};

/// Telegram's flood limits, as the stand-in enforces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sends to one private chat per second (default 1).
    pub per_chat_per_s: u32,
    /// Sends to one group or channel (negative chat id) per minute (default 20).
    pub per_group_per_min: u32,
    /// Sends across all chats per second (default 30).
    pub overall_per_s: u32,
    /// Answer 429 over a limit (default true; false only records).
    pub enforce: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { per_chat_per_s: 1, per_group_per_min: 20, overall_per_s: 30, enforce: true }
    }
}

/// How the stand-in starts.
#[derive(Clone)]
pub struct TelegramStandinConfig {
    /// Where to listen (default `127.0.0.1:0`: a free port).
    pub listen: SocketAddr,
    /// The bot token it accepts (default: a fresh `<digits>:<35 characters>` token).
    pub token: Option<String>,
    /// The bot's username (default `tradecast_test_bot`).
    pub bot_username: String,
    /// The pause before the second webhook attempt of an update, doubled at each retry
    /// (default 200 ms).
    pub retry_base: Duration,
    /// Webhook attempts of one update before it is dropped (default 5).
    pub max_attempts: u32,
    /// How long a payment waits for `answerPreCheckoutQuery` (default 10 s, as Telegram).
    pub pre_checkout_timeout: Duration,
    /// The flood limits.
    pub limits: Limits,
}

impl std::fmt::Debug for TelegramStandinConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramStandinConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("bot_username", &self.bot_username)
            .field("retry_base", &self.retry_base)
            .field("max_attempts", &self.max_attempts)
            .field("pre_checkout_timeout", &self.pre_checkout_timeout)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for TelegramStandinConfig {
    fn default() -> Self {
        TelegramStandinConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            bot_username: "tradecast_test_bot".into(),
            retry_base: Duration::from_millis(200),
            max_attempts: 5,
            pre_checkout_timeout: Duration::from_secs(10),
            limits: Limits::default(),
        }
    }
}

/// Why the stand-in did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The webhook HTTP client could not be built.
    #[error("webhook client: {0}")]
    Client(String),
    /// The configured token is not shaped `<bot id>:<secret>`.
    #[error("the token must look like 123456:ABC-DEF…")]
    Token,
}

pub(crate) struct Shared {
    world: Mutex<World>,
    pub(crate) token: String,
    pub(crate) limits: Mutex<Limits>,
    /// Woken whenever the world changes (long polls, delivery, waits).
    pub(crate) changed: Notify,
    http: reqwest::Client,
    retry_base: Duration,
    max_attempts: u32,
    pre_checkout_timeout: Duration,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the world and wakes the waiters.
    fn act<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.notify_waiters();
        out
    }
}

/// A running stand-in.
pub struct TelegramStandin {
    shared: Arc<Shared>,
    base_url: String,
    bot_username: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    delivery: JoinHandle<()>,
}

impl std::fmt::Debug for TelegramStandin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramStandin").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl TelegramStandin {
    /// Binds, serves in the background and returns.
    pub async fn start(config: TelegramStandinConfig) -> Result<TelegramStandin, StartError> {
        let token = match config.token {
            Some(t) => t,
            None => {
                let id = 1_000_000_000u64 + u64::from(rand::random::<u32>() % 1_000_000_000);
                format!("{id}:AA{}", random_token(33))
            }
        };
        let bot_id = token
            .split_once(':')
            .filter(|(_, secret)| !secret.is_empty() && !secret.contains('/'))
            .and_then(|(id, _)| id.parse::<i64>().ok())
            .filter(|id| *id > 0)
            .ok_or(StartError::Token)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let addr = listener.local_addr().map_err(|e| StartError::Bind(config.listen, e))?;
        let base_url = format!("http://{addr}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| StartError::Client(e.to_string()))?;
        let shared = Arc::new(Shared {
            world: Mutex::new(World::new(bot_id, config.bot_username.clone())),
            token,
            limits: Mutex::new(config.limits),
            changed: Notify::new(),
            http,
            retry_base: config.retry_base,
            max_attempts: config.max_attempts.max(1),
            pre_checkout_timeout: config.pre_checkout_timeout,
        });
        let app = Router::new()
            .route("/{bot}/{method}", any(api::handle))
            .fallback(api::fallback)
            // Telegram takes photos up to 10 MB by upload.
            .layer(DefaultBodyLimit::max(12 * 1024 * 1024))
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "telegram stand-in stopped");
            }
        });
        let delivery = tokio::spawn(deliver_loop(shared.clone()));
        Ok(TelegramStandin {
            shared,
            base_url,
            bot_username: config.bot_username,
            stop: Some(stop),
            task: Some(task),
            delivery,
        })
    }

    /// `http://127.0.0.1:<port>` (no trailing slash): the hub's `telegram.api_base_url`; the
    /// client appends `/bot{token}/{method}`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bot token it accepts (the hub's `telegram_bot_token`).
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The bot's username (the hub's `telegram.bot_username`).
    pub fn bot_username(&self) -> &str {
        &self.bot_username
    }

    /// The bot's user id (the token's number).
    pub fn bot_id(&self) -> i64 {
        self.shared.lock().bot_id
    }

    /// The stand-in's Ed25519 key for Mini App data (Telegram's third-party validation key
    /// stands in for it): derived from the bot token, so it is the same for every stand-in of
    /// one bot and never Telegram's.
    fn web_app_key(&self) -> ed25519_dalek::SigningKey {
        use sha2::Digest;
        let seed = sha2::Sha256::digest(format!("tradecast-standin/web-app/{}", self.token()));
        ed25519_dalek::SigningKey::from_bytes(&seed.into())
    }

    /// The public half of the key that signs [`TelegramStandin::web_app_init_data`], 64 hex
    /// digits (the hub's `telegram.miniapp_public_key` against this stand-in).
    pub fn web_app_public_key(&self) -> String {
        hex::encode(self.web_app_key().verifying_key().to_bytes())
    }

    /// What Telegram hands a Mini App that `user` opens from this bot: the raw initData query
    /// string as a client receives it (`Telegram.WebApp.initData`), percent-encoded, with
    /// `auth_date` = `auth_date_s`, the user as JSON the way Telegram writes it (slashes
    /// escaped), `start_param` when given, the Ed25519 `signature` (over
    /// `"{bot_id}:WebAppData\n"` and the sorted fields but `hash` and `signature`) and the
    /// `hash` (HMAC-SHA256 under HMAC-SHA256("WebAppData", token), over the sorted fields but
    /// `hash`), last.
    pub fn web_app_init_data(
        &self,
        user: i64,
        auth_date_s: i64,
        start_param: Option<&str>,
    ) -> Result<String, WorldError> {
        use ed25519_dalek::Signer;
        use hmac::{KeyInit, Mac};
        let (first_name, username) = {
            let w = self.shared.lock();
            let u = w.users.get(&user).ok_or(WorldError::UnknownUser(user))?;
            (u.first_name.clone(), u.username.clone())
        };
        let mut who = serde_json::json!({ "id": user, "first_name": first_name, "language_code": "en",
                                          "allows_write_to_pm": true });
        if let Some(u) = username {
            who["username"] = serde_json::Value::String(u);
        }
        let mut fields = vec![
            ("query_id".to_string(), format!("AAH{user}standin")),
            ("user".to_string(), who.to_string().replace('/', "\\/")),
            ("auth_date".to_string(), auth_date_s.to_string()),
            ("chat_type".to_string(), "private".to_string()),
            ("chat_instance".to_string(), format!("-{user}00")),
        ];
        if let Some(p) = start_param {
            fields.push(("start_param".to_string(), p.to_string()));
        }
        let check = |fields: &[(String, String)]| {
            let mut sorted: Vec<&(String, String)> = fields.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            sorted.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n")
        };
        let bot_id = self.token().split(':').next().unwrap_or_default().to_string();
        let message = format!("{bot_id}:WebAppData\n{}", check(&fields));
        let signature = self.web_app_key().sign(message.as_bytes()).to_bytes();
        fields.push(("signature".into(), data_encoding::BASE64URL_NOPAD.encode(&signature)));
        let mac = |key: &[u8], data: &[u8]| {
            let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
            m.update(data);
            m.finalize().into_bytes()
        };
        let secret = mac(b"WebAppData", self.token().as_bytes());
        fields.push(("hash".into(), hex::encode(mac(&secret, check(&fields).as_bytes()))));
        Ok(form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish())
    }

    /// Sets the bot's Main Mini App, as BotFather's "Bot Settings → Configure Mini App" does: the
    /// address `t.me/<bot>?startapp=…` links open. Telegram takes https addresses only; the
    /// stand-in also takes `http://` on a loopback address (a hub under test has no certificate).
    pub fn set_main_mini_app(&self, url: &str) -> Result<(), WorldError> {
        let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"];
        let ok = url.starts_with("https://") || loopback.iter().any(|p| url.starts_with(p));
        if !ok || url.contains(char::is_whitespace) || url.contains('#') {
            return Err(WorldError::BadLink(url.to_owned()));
        }
        self.shared.act(|w| w.main_mini_app = Some(url.to_owned()));
        Ok(())
    }

    /// `user` taps a link to this bot's Mini App (`https://t.me/<bot>?startapp=<param>`, the
    /// form a message's url button carries): returns the address Telegram's client opens in its
    /// web view — the Main Mini App's URL with the launch parameters in the fragment
    /// (`tgWebAppData`: [`TelegramStandin::web_app_init_data`] signed now with `start_param`;
    /// `tgWebAppVersion`, `tgWebAppPlatform`, `tgWebAppThemeParams` = `theme` as JSON,
    /// `tgWebAppStartParam`). Refused as Telegram would not open it: another bot's link, a
    /// `startapp` outside `[A-Za-z0-9_-]{1,512}`, a bot without a Mini App.
    pub fn open_mini_app_link(
        &self,
        user: i64,
        link: &str,
        theme: &Value,
    ) -> Result<String, WorldError> {
        let bad = || WorldError::BadLink(link.to_owned());
        let rest = link.strip_prefix("https://t.me/").ok_or_else(bad)?;
        let (bot, query) = rest.split_once('?').ok_or_else(bad)?;
        if !bot.eq_ignore_ascii_case(&self.bot_username) {
            return Err(bad());
        }
        let param = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "startapp")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(bad)?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if param.is_empty() || param.len() > 512 || !param.chars().all(allowed) {
            return Err(bad());
        }
        let app = self.shared.lock().main_mini_app.clone().ok_or(WorldError::NoMiniApp)?;
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let init = self.web_app_init_data(user, now, Some(&param))?;
        let fragment = form_urlencoded::Serializer::new(String::new())
            .append_pair("tgWebAppData", &init)
            .append_pair("tgWebAppVersion", "8.0")
            .append_pair("tgWebAppPlatform", "android")
            .append_pair("tgWebAppThemeParams", &theme.to_string())
            .append_pair("tgWebAppStartParam", &param)
            .finish();
        Ok(format!("{app}#{fragment}"))
    }

    /// Changes the flood limits from now on.
    pub fn set_limits(&self, limits: Limits) {
        *self.shared.limits.lock().unwrap_or_else(|e| e.into_inner()) = limits;
    }

    /// Queues every update twice from now on (same `update_id`), to test deduplication.
    pub fn set_duplicate(&self, on: bool) {
        self.shared.lock().duplicate = on;
    }

    /// Payments still happen, but their `successful_payment` updates are never delivered (as if
    /// lost): only `getStarTransactions` shows them.
    pub fn lose_payment_updates(&self, on: bool) {
        self.shared.lock().lose_payment_updates = on;
    }

    /// Sets the webhook as `setWebhook` would (the bin's `--webhook-url`).
    pub fn set_webhook(&self, url: impl Into<String>, secret: Option<String>) {
        self.shared.act(|w| {
            w.webhook = Some(world::Webhook { url: url.into(), secret, max_connections: 40 });
            w.poll_generation += 1;
        });
    }

    // -----------------------------------------------------------------------------------------
    // The simulated world

    /// Creates a user (who has not written to the bot yet: the bot cannot write to them).
    pub fn user(
        &self,
        id: i64,
        first_name: &str,
        username: Option<&str>,
    ) -> Result<(), WorldError> {
        self.shared.act(|w| {
            if id <= 0 || w.users.contains_key(&id) || id == w.bot_id {
                return Err(WorldError::Taken(id));
            }
            w.users.insert(
                id,
                UserRec {
                    id,
                    first_name: first_name.to_owned(),
                    username: username.map(str::to_owned),
                    opened: false,
                    blocked: false,
                },
            );
            Ok(())
        })
    }

    fn chat(
        &self,
        id: i64,
        kind: ChatKind,
        title: &str,
        username: Option<&str>,
        members: &[(i64, MemberStatus)],
    ) -> Result<(), WorldError> {
        self.shared.act(|w| {
            if id >= 0 || w.chats.contains_key(&id) {
                return Err(WorldError::Taken(id));
            }
            if let Some((u, _)) = members.iter().find(|(u, _)| !w.users.contains_key(u)) {
                return Err(WorldError::UnknownUser(*u));
            }
            w.chats.insert(
                id,
                ChatRec {
                    id,
                    kind,
                    title: title.to_owned(),
                    username: username.map(str::to_owned),
                    members: members.iter().copied().collect(),
                },
            );
            Ok(())
        })
    }

    /// Creates a supergroup (negative id) with the bot and these members in it.
    pub fn group(
        &self,
        id: i64,
        title: &str,
        members: &[(i64, MemberStatus)],
    ) -> Result<(), WorldError> {
        self.chat(id, ChatKind::Supergroup, title, None, members)
    }

    /// Creates a channel (negative id, `@username` optional) with the bot as an administrator.
    pub fn channel(
        &self,
        id: i64,
        title: &str,
        username: Option<&str>,
        members: &[(i64, MemberStatus)],
    ) -> Result<(), WorldError> {
        self.chat(id, ChatKind::Channel, title, username, members)
    }

    /// Sets a user's status in a group or channel.
    pub fn set_member(&self, chat: i64, user: i64, status: MemberStatus) -> Result<(), WorldError> {
        self.shared.act(|w| {
            if !w.users.contains_key(&user) {
                return Err(WorldError::UnknownUser(user));
            }
            let c = w.chats.get_mut(&chat).ok_or(WorldError::UnknownChat(chat))?;
            c.members.insert(user, status);
            Ok(())
        })
    }

    /// The user writes `text` to the bot in their private chat (which opens it, and unblocks the
    /// bot). A leading `/command` gets a `bot_command` entity. Returns the message id.
    pub fn user_says(&self, user: i64, text: &str) -> Result<i32, WorldError> {
        self.says(user, user, text)
    }

    /// The user writes `text` in a group they are a member of. Returns the message id.
    pub fn user_says_in(&self, user: i64, chat: i64, text: &str) -> Result<i32, WorldError> {
        self.says(user, chat, text)
    }

    fn says(&self, user: i64, chat: i64, text: &str) -> Result<i32, WorldError> {
        self.shared.act(|w| {
            let u = w.users.get_mut(&user).ok_or(WorldError::UnknownUser(user))?;
            if chat == user {
                u.opened = true;
                u.blocked = false;
            } else {
                let c = w.chats.get(&chat).ok_or(WorldError::UnknownChat(chat))?;
                let member = c.members.get(&user).is_some_and(|s| {
                    matches!(
                        s,
                        MemberStatus::Creator | MemberStatus::Administrator | MemberStatus::Member
                    )
                });
                if !member {
                    return Err(WorldError::NotMember(user, chat));
                }
            }
            let entities = command_entity(text).into_iter().collect();
            let m = ChatMessage {
                chat_id: chat,
                message_id: w.next_message_id(chat),
                from_user: Some(user),
                date: unix_now(),
                text: Some(text.to_owned()),
                parse_mode: None,
                entities,
                reply_markup: None,
                photo: None,
                caption: None,
                edits: Vec::new(),
                deleted: false,
                successful_payment: None,
                edit_date: None,
            };
            let id = m.message_id;
            let v = w.message_json(&m);
            w.messages.push(m);
            w.push_update("message", v);
            Ok(id)
        })
    }

    /// The user blocks the bot: sends to them answer 403 until they write again.
    pub fn block(&self, user: i64) -> Result<(), WorldError> {
        self.shared.act(|w| {
            let u = w.users.get_mut(&user).ok_or(WorldError::UnknownUser(user))?;
            u.blocked = true;
            Ok(())
        })
    }

    /// The user presses the inline button with `callback_data` on the bot's message: a
    /// `callback_query` update. Returns the query's id.
    pub fn press(
        &self,
        user: i64,
        chat: i64,
        message_id: i32,
        callback_data: &str,
    ) -> Result<String, WorldError> {
        self.shared.act(|w| {
            if !w.users.contains_key(&user) {
                return Err(WorldError::UnknownUser(user));
            }
            if chat != user {
                let c = w.chats.get(&chat).ok_or(WorldError::UnknownChat(chat))?;
                if !c.members.get(&user).is_some_and(|s| {
                    matches!(
                        s,
                        MemberStatus::Creator | MemberStatus::Administrator | MemberStatus::Member
                    )
                }) {
                    return Err(WorldError::NotMember(user, chat));
                }
            }
            let m = w
                .message(chat, message_id)
                .filter(|m| m.from_user.is_none())
                .ok_or(WorldError::UnknownMessage(chat, message_id))?;
            if !m.callback_data().iter().any(|d| d == callback_data) {
                return Err(WorldError::NoSuchButton(message_id, callback_data.to_owned()));
            }
            let message = w.message_json(m);
            let id = format!("{}{}", user, rand::random::<u32>());
            let q = json!({
                "id": id, "from": w.user_json(user), "message": message,
                "chat_instance": format!("{}", (chat.unsigned_abs() ^ 0x5bd1_e995).wrapping_mul(31)),
                "data": callback_data,
            });
            w.callbacks.insert(
                id.clone(),
                PendingCallback { user_id: user, data: callback_data.to_owned(), answered: false },
            );
            w.push_update("callback_query", q);
            Ok(id)
        })
    }

    /// The user pays a Stars invoice link: a `pre_checkout_query` update, then, once the bot
    /// answers ok=true within the timeout (10 s), a message with `successful_payment` in their
    /// private chat. ok=false or no answer: no payment.
    pub async fn pay(&self, user: i64, link: &str) -> Result<PayOutcome, WorldError> {
        let (query_id, invoice) = self.shared.act(|w| {
            if !w.users.contains_key(&user) {
                return Err(WorldError::UnknownUser(user));
            }
            let inv = w
                .invoices
                .iter()
                .find(|i| i.link == link)
                .cloned()
                .ok_or_else(|| WorldError::UnknownInvoice(link.to_owned()))?;
            let id =
                format!("{}", u64::from(rand::random::<u32>()) << 20 | (user as u64 & 0xFFFFF));
            w.pre_checkouts.insert(id.clone(), PreCheckout { answer: None, expired: false });
            let q = json!({
                "id": id, "from": w.user_json(user), "currency": "XTR",
                "total_amount": inv.amount, "invoice_payload": inv.payload,
            });
            w.push_update("pre_checkout_query", q);
            Ok((id, inv))
        })?;
        let deadline = tokio::time::Instant::now() + self.shared.pre_checkout_timeout;
        let answer = loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut w = self.shared.lock();
                let Some(q) = w.pre_checkouts.get_mut(&query_id) else { break None };
                if q.answer.is_some() {
                    break q.answer.clone();
                }
                if tokio::time::Instant::now() >= deadline {
                    q.expired = true;
                    break None;
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        };
        match answer {
            None => Ok(PayOutcome::Unanswered),
            Some((false, msg)) => Ok(PayOutcome::Declined(msg.unwrap_or_default())),
            Some((true, _)) => Ok(self.shared.act(|w| {
                let now = unix_now();
                let payment = Payment {
                    user_id: user,
                    charge_id: format!("stxN{}", random_token(40)),
                    amount: invoice.amount,
                    payload: invoice.payload.clone(),
                    subscription_expiration_date: invoice.subscription_period.map(|p| now + p),
                    subscription_period: invoice.subscription_period,
                    date: now,
                    refunded: false,
                    refunded_date: None,
                    subscription_canceled: false,
                };
                let mut sp = json!({
                    "currency": "XTR", "total_amount": payment.amount,
                    "invoice_payload": payment.payload,
                    "telegram_payment_charge_id": payment.charge_id,
                    "provider_payment_charge_id": "",
                });
                if let Some(exp) = payment.subscription_expiration_date {
                    sp["subscription_expiration_date"] = json!(exp);
                    sp["is_recurring"] = json!(true);
                    sp["is_first_recurring"] = json!(true);
                }
                if let Some(u) = w.users.get_mut(&user) {
                    u.opened = true;
                }
                let m = ChatMessage {
                    chat_id: user,
                    message_id: w.next_message_id(user),
                    from_user: Some(user),
                    date: now,
                    text: None,
                    parse_mode: None,
                    entities: Vec::new(),
                    reply_markup: None,
                    photo: None,
                    caption: None,
                    edits: Vec::new(),
                    deleted: false,
                    successful_payment: Some(sp),
                    edit_date: None,
                };
                let v = w.message_json(&m);
                w.messages.push(m);
                if !w.lose_payment_updates {
                    w.push_update("message", v);
                }
                w.payments.push(payment.clone());
                PayOutcome::Paid(payment)
            })),
        }
    }

    // -----------------------------------------------------------------------------------------
    // The log

    /// Every API call, in order (the token is not in it; the last [`api::CALLS_MAX`] at most).
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The bot's messages in a chat (deleted ones included, marked), oldest first.
    pub fn messages_to(&self, chat_id: i64) -> Vec<ChatMessage> {
        let w = self.shared.lock();
        w.messages
            .iter()
            .filter(|m| m.chat_id == chat_id && m.from_user.is_none())
            .cloned()
            .collect()
    }

    /// Every message in a chat, the users' too, oldest first.
    pub fn chat_log(&self, chat_id: i64) -> Vec<ChatMessage> {
        let w = self.shared.lock();
        w.messages.iter().filter(|m| m.chat_id == chat_id).cloned().collect()
    }

    /// Waits for a message of the bot in `chat_id` that satisfies `pred` (one already sent
    /// counts); `None` on timeout.
    pub async fn wait_for_message(
        &self,
        chat_id: i64,
        pred: impl Fn(&ChatMessage) -> bool,
        timeout: Duration,
    ) -> Option<ChatMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(m) = self.messages_to(chat_id).into_iter().find(|m| pred(m)) {
                return Some(m);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Every accepted send (sendMessage, sendPhoto) with its instant.
    pub fn sends(&self) -> Vec<Sent> {
        self.shared.lock().sends.clone()
    }

    /// The most accepted sends to `chat_id` (or to any chat) inside any window of `window`: a
    /// test asserts it never exceeded a limit.
    pub fn max_rate_observed(&self, chat_id: Option<i64>, window: Duration) -> usize {
        world::max_in_window(&self.shared.lock().sends, chat_id, window)
    }

    /// How many sends were refused with 429.
    pub fn n_too_many(&self) -> usize {
        self.shared.lock().too_many.len()
    }

    /// How many sends to `chat_id` were refused with 429.
    pub fn n_too_many_to(&self, chat_id: i64) -> usize {
        self.shared.lock().too_many.iter().filter(|(c, _)| *c == chat_id).count()
    }

    /// The callback queries the bot answered.
    pub fn answered_callbacks(&self) -> Vec<AnsweredCallback> {
        self.shared.lock().answered.clone()
    }

    /// The invoice links the bot created.
    pub fn invoices(&self) -> Vec<Invoice> {
        self.shared.lock().invoices.clone()
    }

    /// The payments made (refunds marked).
    pub fn payments(&self) -> Vec<Payment> {
        self.shared.lock().payments.clone()
    }

    /// The commands set for a scope key: `default`, `all_private_chats`, `all_group_chats`,
    /// `all_chat_administrators`, `chat:<id>`, …, then `|` and the language code (empty for
    /// all): e.g. `"default|"`, `"chat:42|en"`.
    pub fn commands(&self, scope_key: &str) -> Vec<Value> {
        self.shared.lock().commands.get(scope_key).cloned().unwrap_or_default()
    }

    /// Every webhook delivery attempt, in order.
    pub fn deliveries(&self) -> Vec<Delivered> {
        self.shared.lock().deliveries.clone()
    }

    /// The updates not yet confirmed by getUpdates or delivered by webhook.
    pub fn pending_updates(&self) -> Vec<Value> {
        self.shared.lock().pending.iter().map(|p| p.body.clone()).collect()
    }

    /// Waits until no update is pending; `false` on timeout.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.lock().pending.is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Stops serving and delivering.
    pub async fn shutdown(mut self) {
        self.delivery.abort();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TelegramStandin {
    fn drop(&mut self) {
        self.delivery.abort();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The `bot_command` entity of a text that starts with `/command`.
fn command_entity(text: &str) -> Option<Value> {
    let rest = text.strip_prefix('/')?;
    let len = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    let cmd = &rest[..len];
    let name = cmd.split('@').next().unwrap_or("");
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let length: usize = text[..=len].encode_utf16().count();
    Some(json!({"type": "bot_command", "offset": 0, "length": length}))
}

/// Delivers pending updates to the webhook, one at a time and in order; a failed attempt is
/// retried after `retry_base`, doubled each time, up to `max_attempts`, then the update is
/// dropped (recorded as the webhook's last error).
async fn deliver_loop(shared: Arc<Shared>) {
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let job = {
            let w = shared.lock();
            match (&w.webhook, w.pending.front()) {
                (Some(h), Some(u)) => Some((h.url.clone(), h.secret.clone(), u.clone())),
                _ => None,
            }
        };
        let Some((url, secret, update)) = job else {
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
            continue;
        };
        let mut attempt = 1u32;
        let done = loop {
            let mut req = shared
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(update.body.to_string());
            if let Some(s) = &secret {
                req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
            }
            let r = req.send().await;
            let status = r.as_ref().ok().map(|r| r.status().as_u16());
            let ok = status.is_some_and(|s| (200..300).contains(&s));
            let still_set = {
                let mut w = shared.lock();
                w.deliveries.push(Delivered { update_id: update.update_id, attempt, status, ok });
                if !ok {
                    let msg = match (&r, status) {
                        (_, Some(s)) => format!("Wrong response from the webhook: {s}"),
                        (Err(e), None) if e.is_timeout() => "Read timeout expired".to_owned(),
                        _ => "Connection refused".to_owned(),
                    };
                    w.last_error = Some((unix_now(), msg));
                }
                w.webhook.as_ref().is_some_and(|h| h.url == url)
            };
            shared.changed.notify_waiters();
            if ok || attempt >= shared.max_attempts {
                break true;
            }
            if !still_set {
                break false;
            }
            let pause = shared
                .retry_base
                .checked_mul(2u32.saturating_pow(attempt - 1))
                .unwrap_or(Duration::from_secs(3600));
            tokio::time::sleep(pause).await;
            attempt += 1;
        };
        if done {
            shared.act(|w| {
                if w.pending.front().is_some_and(|p| p.seq == update.seq) {
                    w.pending.pop_front();
                }
            });
        }
    }
}
