//! The simulated Telegram: users, chats and their members, the messages in each chat, the
//! update queue, invoices and payments, and the logs a test reads. No I/O here: the API
//! handlers and the handle's methods change it under one lock.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Limits;

/// A chat member's status (`ChatMember.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    /// `creator`.
    Creator,
    /// `administrator`.
    Administrator,
    /// `member`.
    Member,
    /// `left`.
    Left,
    /// `kicked`.
    Kicked,
}

/// The kind of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    /// A user's private chat with the bot (id = the user's id).
    Private,
    /// A group (negative id).
    Group,
    /// A supergroup (negative id).
    Supergroup,
    /// A channel (negative id).
    Channel,
}

impl ChatKind {
    fn as_str(self) -> &'static str {
        match self {
            ChatKind::Private => "private",
            ChatKind::Group => "group",
            ChatKind::Supergroup => "supergroup",
            ChatKind::Channel => "channel",
        }
    }
}

/// Why a simulated action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorldError {
    /// No user with that id was created.
    #[error("unknown user {0}")]
    UnknownUser(i64),
    /// No chat with that id (a private chat exists once its user wrote to the bot).
    #[error("unknown chat {0}")]
    UnknownChat(i64),
    /// The user is not a member of that chat.
    #[error("user {0} is not a member of chat {1}")]
    NotMember(i64, i64),
    /// The message does not exist in that chat (or was deleted).
    #[error("no message {1} in chat {0}")]
    UnknownMessage(i64, i32),
    /// The bot's message has no inline button with that `callback_data`.
    #[error("message {0} has no button with callback_data {1:?}")]
    NoSuchButton(i32, String),
    /// No invoice link with that URL was created.
    #[error("unknown invoice link {0}")]
    UnknownInvoice(String),
    /// An id is already taken by another user or chat.
    #[error("id {0} is already used")]
    Taken(i64),
    /// A link Telegram would not open as this bot's Mini App (another bot, a bad `startapp`).
    #[error("not a Mini App link of this bot: {0}")]
    BadLink(String),
    /// The bot has no Main Mini App (BotFather's "Configure Mini App" was not done).
    #[error("the bot has no Mini App configured")]
    NoMiniApp,
}

/// A simulated user.
#[derive(Debug, Clone)]
pub(crate) struct UserRec {
    pub id: i64,
    pub first_name: String,
    pub username: Option<String>,
    /// Sent the bot a message (its private chat exists).
    pub opened: bool,
    /// Blocked the bot.
    pub blocked: bool,
}

/// A group, supergroup or channel (private chats are the users themselves).
#[derive(Debug, Clone)]
pub(crate) struct ChatRec {
    pub id: i64,
    pub kind: ChatKind,
    pub title: String,
    pub username: Option<String>,
    pub members: BTreeMap<i64, MemberStatus>,
}

/// One edit of a bot's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    /// The text (or caption) after the edit.
    pub text: Option<String>,
    /// The markup after the edit.
    pub reply_markup: Option<Value>,
}

/// A message in a chat: the bot's (sent through the API) or a user's (simulated).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// The chat.
    pub chat_id: i64,
    /// Per chat, from 1.
    pub message_id: i32,
    /// `None` for the bot's own messages, else the user who wrote it.
    pub from_user: Option<i64>,
    /// Unix seconds.
    pub date: u64,
    /// The text after entity parsing (a photo's caption is in `caption`).
    pub text: Option<String>,
    /// The `parse_mode` the bot sent (`HTML`), if any.
    pub parse_mode: Option<String>,
    /// The `MessageEntity` list of the text (or of the caption for a photo).
    pub entities: Vec<Value>,
    /// The `reply_markup` as sent (validated).
    pub reply_markup: Option<Value>,
    /// The `PhotoSize` list when it is a photo.
    pub photo: Option<Value>,
    /// A photo's caption after entity parsing.
    pub caption: Option<String>,
    /// The edits made, oldest first (the fields above hold the current state).
    pub edits: Vec<Edit>,
    /// Deleted by `deleteMessage`.
    pub deleted: bool,
    /// A `successful_payment` object for a payment's service message.
    pub successful_payment: Option<Value>,
    pub(crate) edit_date: Option<u64>,
}

impl ChatMessage {
    /// Every `url` button of its inline keyboard, as (text, url).
    pub fn url_buttons(&self) -> Vec<(String, String)> {
        let rows = self.reply_markup.as_ref().and_then(|m| m["inline_keyboard"].as_array());
        rows.into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|b| {
                let url = b["url"].as_str()?;
                Some((b["text"].as_str().unwrap_or_default().to_owned(), url.to_owned()))
            })
            .collect()
    }

    /// Every `callback_data` of its inline keyboard.
    pub fn callback_data(&self) -> Vec<String> {
        let rows = self.reply_markup.as_ref().and_then(|m| m["inline_keyboard"].as_array());
        rows.into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|b| b["callback_data"].as_str().map(str::to_owned))
            .collect()
    }
}

/// One call to the API, as the log keeps it (the token is never kept).
#[derive(Debug, Clone)]
pub struct Call {
    /// The method as called (case kept).
    pub method: String,
    /// The parameters as one JSON object (uploads as `{"file","bytes"}`).
    pub params: Value,
    /// The HTTP status answered.
    pub status: u16,
    /// The error's description, `None` on success.
    pub description: Option<String>,
    /// When it was answered.
    pub at: Instant,
}

/// One accepted send (sendMessage, sendPhoto), for the rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The chat it went to.
    pub chat_id: i64,
    /// When it was accepted.
    pub at: Instant,
}

/// A callback query the bot answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredCallback {
    /// The `callback_query_id`.
    pub id: String,
    /// The user who pressed.
    pub user_id: i64,
    /// The press's `callback_data`.
    pub data: String,
    /// The notification text, if any.
    pub text: Option<String>,
    /// Shown as an alert.
    pub show_alert: bool,
}

/// An invoice link the bot created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// `https://t.me/$<slug>`.
    pub link: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// The bot's payload (1–128 bytes).
    pub payload: String,
    /// Stars.
    pub amount: u32,
    /// `Some(2592000)` for a subscription.
    pub subscription_period: Option<u64>,
}

/// A completed Stars payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The payer.
    pub user_id: i64,
    /// `telegram_payment_charge_id`.
    pub charge_id: String,
    /// Stars.
    pub amount: u32,
    /// The invoice's payload.
    pub payload: String,
    /// Unix seconds, for a subscription.
    pub subscription_expiration_date: Option<u64>,
    /// The subscription's period, seconds (`Some(2592000)`), for a subscription.
    pub subscription_period: Option<u64>,
    /// When paid, unix seconds.
    pub date: u64,
    /// Refunded by `refundStarPayment`.
    pub refunded: bool,
    /// When refunded, unix seconds.
    pub refunded_date: Option<u64>,
    /// A subscription's renewals cancelled by `editUserStarSubscription` (`is_canceled`).
    pub subscription_canceled: bool,
}

/// How a simulated payment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayOutcome {
    /// The bot answered the pre-checkout query with ok=true: the payment is made and its
    /// `successful_payment` message sent as an update.
    Paid(Payment),
    /// The bot answered ok=false with this `error_message`: no payment.
    Declined(String),
    /// The bot did not answer in time: no payment.
    Unanswered,
}

/// One webhook delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The update's id.
    pub update_id: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The endpoint's status, `None` when it was not reached.
    pub status: Option<u16>,
    /// A 2xx answer.
    pub ok: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub url: String,
    pub secret: Option<String>,
    pub max_connections: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct PendingCallback {
    pub user_id: i64,
    pub data: String,
    pub answered: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct PreCheckout {
    pub answer: Option<(bool, Option<String>)>,
    pub expired: bool,
}

/// An update waiting for getUpdates or the webhook (`seq` is unique even for a duplicate).
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub seq: u64,
    pub update_id: u64,
    pub body: Value,
}

pub(crate) struct World {
    pub bot_id: i64,
    pub bot_username: String,
    pub users: BTreeMap<i64, UserRec>,
    pub chats: BTreeMap<i64, ChatRec>,
    pub messages: Vec<ChatMessage>,
    pub next_message_id: BTreeMap<i64, i32>,
    pub pending: VecDeque<Pending>,
    pub next_update_id: u64,
    pub next_seq: u64,
    pub webhook: Option<Webhook>,
    pub allowed_updates: Option<Vec<String>>,
    pub duplicate: bool,
    /// `successful_payment` updates are recorded but never delivered (a lost update, for the
    /// bot's reconciliation against `getStarTransactions`).
    pub lose_payment_updates: bool,
    pub last_error: Option<(u64, String)>,
    pub deliveries: Vec<Delivered>,
    pub calls: Vec<Call>,
    pub sends: Vec<Sent>,
    pub recent: VecDeque<Sent>,
    pub too_many: Vec<(i64, Instant)>,
    pub callbacks: BTreeMap<String, PendingCallback>,
    pub answered: Vec<AnsweredCallback>,
    pub invoices: Vec<Invoice>,
    pub pre_checkouts: BTreeMap<String, PreCheckout>,
    pub payments: Vec<Payment>,
    pub commands: BTreeMap<String, Vec<Value>>,
    pub files: Vec<String>,
    pub poll_generation: u64,
    /// The bot's Main Mini App (BotFather's "Configure Mini App"), when set.
    pub main_mini_app: Option<String>,
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `n` random characters from Telegram's token alphabet.
pub(crate) fn random_token(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut b = vec![0u8; n];
    rand::fill(&mut b[..]);
    b.iter().map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char).collect()
}

/// The types an empty `allowed_updates` list means (everything but these three).
const NOT_BY_DEFAULT: &[&str] = &["chat_member", "message_reaction", "message_reaction_count"];

impl World {
    pub fn new(bot_id: i64, bot_username: String) -> World {
        World {
            bot_id,
            bot_username,
            users: BTreeMap::new(),
            chats: BTreeMap::new(),
            messages: Vec::new(),
            next_message_id: BTreeMap::new(),
            pending: VecDeque::new(),
            next_update_id: 100_000_000 + u64::from(rand::random::<u16>()),
            next_seq: 0,
            webhook: None,
            allowed_updates: None,
            duplicate: false,
            lose_payment_updates: false,
            last_error: None,
            deliveries: Vec::new(),
            calls: Vec::new(),
            sends: Vec::new(),
            recent: VecDeque::new(),
            too_many: Vec::new(),
            callbacks: BTreeMap::new(),
            answered: Vec::new(),
            invoices: Vec::new(),
            pre_checkouts: BTreeMap::new(),
            payments: Vec::new(),
            commands: BTreeMap::new(),
            files: Vec::new(),
            poll_generation: 0,
            main_mini_app: None,
        }
    }

    pub fn bot_json(&self) -> Value {
        json!({
            "id": self.bot_id, "is_bot": true, "first_name": "Tradecast Test Bot",
            "username": self.bot_username, "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })
    }

    pub fn user_json(&self, id: i64) -> Value {
        match self.users.get(&id) {
            Some(u) => {
                let mut v = json!({"id": u.id, "is_bot": false, "first_name": u.first_name, "language_code": "en"});
                if let Some(name) = &u.username {
                    v["username"] = json!(name);
                }
                v
            }
            None => json!({"id": id, "is_bot": false, "first_name": "Unknown"}),
        }
    }

    pub fn chat_json(&self, id: i64) -> Value {
        if let Some(c) = self.chats.get(&id) {
            let mut v = json!({"id": c.id, "type": c.kind.as_str(), "title": c.title});
            if let Some(name) = &c.username {
                v["username"] = json!(name);
            }
            return v;
        }
        let mut v = json!({"id": id, "type": "private"});
        if let Some(u) = self.users.get(&id) {
            v["first_name"] = json!(u.first_name);
            if let Some(name) = &u.username {
                v["username"] = json!(name);
            }
        }
        v
    }

    /// The kind of a known chat (a private chat is known once its user exists).
    pub fn chat_kind(&self, id: i64) -> Option<ChatKind> {
        match self.chats.get(&id) {
            Some(c) => Some(c.kind),
            None => self.users.contains_key(&id).then_some(ChatKind::Private),
        }
    }

    pub fn message_json(&self, m: &ChatMessage) -> Value {
        let mut v = json!({
            "message_id": m.message_id, "date": m.date, "chat": self.chat_json(m.chat_id),
        });
        match (m.from_user, self.chat_kind(m.chat_id)) {
            (Some(u), _) => v["from"] = self.user_json(u),
            (None, Some(ChatKind::Channel)) => v["sender_chat"] = self.chat_json(m.chat_id),
            (None, _) => v["from"] = self.bot_json(),
        }
        if let Some(t) = &m.text {
            v["text"] = json!(t);
            if !m.entities.is_empty() {
                v["entities"] = json!(m.entities);
            }
        }
        if let Some(p) = &m.photo {
            v["photo"] = p.clone();
            if let Some(c) = &m.caption {
                v["caption"] = json!(c);
                if !m.entities.is_empty() {
                    v["caption_entities"] = json!(m.entities);
                }
            }
        }
        if let Some(markup) = &m.reply_markup
            && markup.get("inline_keyboard").is_some()
        {
            v["reply_markup"] = json!({"inline_keyboard": markup["inline_keyboard"]});
        }
        if let Some(d) = m.edit_date {
            v["edit_date"] = json!(d);
        }
        if let Some(sp) = &m.successful_payment {
            v["successful_payment"] = sp.clone();
        }
        v
    }

    pub fn next_message_id(&mut self, chat_id: i64) -> i32 {
        let n = self.next_message_id.entry(chat_id).or_insert(0);
        *n += 1;
        *n
    }

    pub fn message_mut(&mut self, chat_id: i64, message_id: i32) -> Option<&mut ChatMessage> {
        self.messages
            .iter_mut()
            .find(|m| m.chat_id == chat_id && m.message_id == message_id && !m.deleted)
    }

    pub fn message(&self, chat_id: i64, message_id: i32) -> Option<&ChatMessage> {
        self.messages
            .iter()
            .find(|m| m.chat_id == chat_id && m.message_id == message_id && !m.deleted)
    }

    fn allowed(&self, kind: &str) -> bool {
        match &self.allowed_updates {
            Some(list) if !list.is_empty() => list.iter().any(|k| k == kind),
            _ => !NOT_BY_DEFAULT.contains(&kind),
        }
    }

    /// Queues an update of `kind` with `object`; `None` when `allowed_updates` excludes it.
    pub fn push_update(&mut self, kind: &'static str, object: Value) -> Option<u64> {
        if !self.allowed(kind) {
            return None;
        }
        self.next_update_id += 1;
        let id = self.next_update_id;
        let mut body = json!({"update_id": id});
        body[kind] = object;
        let copies = if self.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            self.next_seq += 1;
            self.pending.push_back(Pending {
                seq: self.next_seq,
                update_id: id,
                body: body.clone(),
            });
        }
        Some(id)
    }

    /// Admits a send to `chat_id` at `now` under `limits`, or says after how many seconds to
    /// retry.
    pub fn admit(&mut self, limits: &Limits, chat_id: i64, now: Instant) -> Result<(), u64> {
        while self
            .recent
            .front()
            .is_some_and(|s| now.duration_since(s.at) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if limits.enforce {
            let mut wait = Duration::ZERO;
            let second = Duration::from_secs(1);
            let minute = Duration::from_secs(60);
            let window = |w: Duration, only: Option<i64>, limit: u32| -> Option<Duration> {
                let hits: Vec<Instant> = self
                    .recent
                    .iter()
                    .filter(|s| now.duration_since(s.at) < w && only.is_none_or(|c| s.chat_id == c))
                    .map(|s| s.at)
                    .collect();
                let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                if hits.len() < limit {
                    return None;
                }
                // The send whose expiry brings the count under the limit (a limit of 0 refuses
                // every send).
                match hits.get(hits.len() - limit) {
                    Some(at) => Some((*at + w).saturating_duration_since(now)),
                    None => Some(w),
                }
            };
            let checks = if chat_id < 0 {
                [
                    window(minute, Some(chat_id), limits.per_group_per_min),
                    window(second, None, limits.overall_per_s),
                ]
            } else {
                [
                    window(second, Some(chat_id), limits.per_chat_per_s),
                    window(second, None, limits.overall_per_s),
                ]
            };
            for w in checks.into_iter().flatten() {
                wait = wait.max(w);
            }
            if !checks.iter().all(Option::is_none) {
                self.too_many.push((chat_id, now));
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(secs.max(1));
            }
        }
        let s = Sent { chat_id, at: now };
        self.recent.push_back(s);
        self.sends.push(s);
        Ok(())
    }
}

/// The most sends (to `chat_id`, or to any chat) inside any window of length `window`.
pub(crate) fn max_in_window(sends: &[Sent], chat_id: Option<i64>, window: Duration) -> usize {
    let at: Vec<Instant> =
        sends.iter().filter(|s| chat_id.is_none_or(|c| s.chat_id == c)).map(|s| s.at).collect();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..at.len() {
        while at[hi].duration_since(at[lo]) >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}
