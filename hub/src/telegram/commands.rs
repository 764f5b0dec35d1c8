//! The bot's commands and buttons. Each update is decided in two halves: [`decide`] reads
//! (the linked account, its plan, devices, signals) and returns a [`Step`]; [`apply_in`] does
//! the step's writes and enqueues its replies inside the transaction that records the update,
//! so a redelivered update changes and sends nothing.
//!
//! An unlinked user gets only `/start` and `/help`; every other command and button is checked
//! against the linked account's role. Account matters are answered in private chats only.

use frankenstein::methods::{
    AnswerCallbackQueryParams, EditMessageTextParams, SendMessageParams, SetMyCommandsParams,
};
use frankenstein::types::{
    BotCommand, BotCommandScope, BotCommandScopeChat, CallbackQuery, ChatType,
    InlineKeyboardButton, InlineKeyboardMarkup, MaybeInaccessibleMessage, Message, ReplyMarkup,
    WebAppInfo,
};
use sqlx::{Any, Row, Transaction};

use super::html::esc;
use super::link::{self, Linked, Who};
use super::notify::{self, Event, Level};
use crate::accounts::Role;
use crate::billing::ledger;
use crate::db::{Backend, DbError};
use crate::state::AppState;

/// A command the bot knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `/start [code]`.
    Start,
    /// `/help`.
    Help,
    /// `/status`: plan, devices.
    Status,
    /// `/signals`: recent signals and what your devices did.
    Signals,
    /// `/positions`.
    Positions,
    /// `/pnl [day|week|month]`.
    Pnl,
    /// `/plan`.
    Plan,
    /// `/settings`: notification levels.
    Settings,
    /// `/guides`: the owner's guides, one button each.
    Guides,
    /// `/unlink`.
    Unlink,
    /// `/stats` (owner, admin).
    Stats,
    /// `/health` (owner, admin).
    Health,
}

impl Command {
    /// Every command, in `/help`'s order.
    pub const ALL: [Command; 12] = [
        Command::Start,
        Command::Help,
        Command::Status,
        Command::Signals,
        Command::Positions,
        Command::Pnl,
        Command::Plan,
        Command::Settings,
        Command::Guides,
        Command::Unlink,
        Command::Stats,
        Command::Health,
    ];

    /// The name after `/`.
    pub fn name(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Help => "help",
            Command::Status => "status",
            Command::Signals => "signals",
            Command::Positions => "positions",
            Command::Pnl => "pnl",
            Command::Plan => "plan",
            Command::Settings => "settings",
            Command::Guides => "guides",
            Command::Unlink => "unlink",
            Command::Stats => "stats",
            Command::Health => "health",
        }
    }

    /// What `/help` and Telegram's menu say.
    pub fn description(self) -> &'static str {
        match self {
            Command::Start => "Link this chat to your Tradecast account",
            Command::Help => "What this bot can do",
            Command::Status => "Your plan and your devices",
            Command::Signals => "Recent signals and what your devices did",
            Command::Positions => "Your open positions",
            Command::Pnl => "Your profit and loss (day, week, month)",
            Command::Plan => "Your plan and its renewal",
            Command::Settings => "Which notifications you get",
            Command::Guides => "Guides: getting started, using Tradecast",
            Command::Unlink => "Unlink this Telegram account",
            Command::Stats => "The hub's figures (owner)",
            Command::Health => "The hub's health (owner)",
        }
    }

    /// Whether `role` (none: unlinked) may use it.
    pub fn allowed(self, role: Option<Role>) -> bool {
        match (self, role) {
            (Command::Start | Command::Help, _) => true,
            (_, None) => false,
            (Command::Stats | Command::Health, Some(r)) => r.is_admin(),
            (_, Some(_)) => true,
        }
    }

    /// The command of `/name` or `/name@bot` (when `bot` is this bot).
    pub fn parse(word: &str, bot: &str) -> Option<Command> {
        let word = word.strip_prefix('/')?;
        let (name, at) = match word.split_once('@') {
            Some((n, b)) => (n, Some(b)),
            None => (word, None),
        };
        if at.is_some_and(|b| !b.eq_ignore_ascii_case(bot)) {
            return None;
        }
        Command::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// The menu for `role` (none: unlinked).
    pub fn menu(role: Option<Role>) -> Vec<BotCommand> {
        Command::ALL
            .into_iter()
            .filter(|c| c.allowed(role))
            .filter(|c| !(role.is_some() && *c == Command::Start))
            .map(|c| BotCommand::builder().command(c.name()).description(c.description()).build())
            .collect()
    }
}

/// What an update comes to.
#[derive(Debug)]
pub enum Step {
    /// Nothing to do (a message that is not a command, a group chatter, an update we do not
    /// follow).
    Nothing,
    /// Replies only: (chat, message).
    Reply(Vec<(i64, SendMessageParams)>),
    /// `/start <code>` in a private chat.
    Link {
        /// The code.
        code: String,
        /// The Telegram user.
        telegram_user_id: i64,
        /// The private chat.
        chat_id: i64,
        /// `@username`.
        username: Option<String>,
        /// First name.
        first_name: String,
    },
    /// `/unlink`.
    Unlink(Linked),
    /// A `/settings` button: set a level, answer the press, redraw the message.
    SetLevel {
        /// Who pressed.
        linked: Linked,
        /// The event.
        event: Event,
        /// The new level.
        level: Level,
        /// The user's levels after the change.
        levels: Vec<(Event, Level)>,
        /// The press.
        callback_id: String,
        /// The message with the buttons.
        message_id: i32,
    },
    /// Answer a Stars `pre_checkout_query` (take the payment, or say why not).
    PreCheckout {
        /// `answerPreCheckoutQuery`'s parameters.
        params: frankenstein::methods::AnswerPreCheckoutQueryParams,
    },
    /// Answer a press and send messages (a guide's button).
    Show {
        /// The press.
        callback_id: String,
        /// (chat, message).
        messages: Vec<(i64, SendMessageParams)>,
    },
    /// A press of an approval button that passed the checks ([`super::approve`]).
    Press(Box<super::approve::Press>),
    /// Answer a press with a short text (refused or stale buttons).
    Answer {
        /// The press.
        callback_id: String,
        /// What to say.
        text: String,
        /// As an alert the user must dismiss.
        alert: bool,
    },
}

/// `/start`'s welcome for an unlinked user.
fn welcome(state: &AppState) -> String {
    format!(
        "Welcome to <b>Tradecast</b>: signals from your provider, decided by your own app within your own rules.\n\n\
         To get your alerts here, link your account: open your account page{} and press <b>Link Telegram</b>, \
         or in the Tradecast app go to Settings → Plan → Link Telegram. Send /help for the commands.",
        account_hint(state)
    )
}

/// `/start`'s answer in a linked chat.
fn linked_text(l: &Linked) -> String {
    format!("This chat is linked to <b>{}</b>. Send /help for the commands.", esc(&l.name))
}

/// The text of a message's leading command and its argument, if it starts with one.
fn command_of(msg: &Message) -> Option<(&str, &str)> {
    let text = msg.text.as_deref()?.trim();
    if !text.starts_with('/') {
        return None;
    }
    Some(match text.split_once(char::is_whitespace) {
        Some((c, rest)) => (c, rest.trim()),
        None => (text, ""),
    })
}

fn is_private(msg: &Message) -> bool {
    matches!(msg.chat.type_field, ChatType::Private)
}

fn reply(chat_id: i64, text: String) -> Step {
    Step::Reply(vec![(chat_id, notify::html(chat_id, text, false))])
}

/// The Mini App's address, `{public_url}/miniapp`, when `public_url` is https (Telegram opens
/// Web Apps from https addresses only).
pub fn miniapp_url(state: &AppState) -> Option<String> {
    let u = state.config.public_url.as_ref().filter(|u| u.is_https())?;
    Some(format!("{}/miniapp", u.as_str()))
}

/// `/start`'s answer: in a private chat of a hub served over https, with a button that opens
/// the Mini App.
fn start_reply(state: &AppState, msg: &Message, text: String) -> Step {
    let chat_id = msg.chat.id;
    let mut m = notify::html(chat_id, text, false);
    if let Some(url) = miniapp_url(state).filter(|_| is_private(msg)) {
        let button = InlineKeyboardButton::builder()
            .text("Open Tradecast")
            .web_app(WebAppInfo::builder().url(url).build())
            .build();
        m.reply_markup = Some(ReplyMarkup::InlineKeyboardMarkup(
            InlineKeyboardMarkup::builder().inline_keyboard(vec![vec![button]]).build(),
        ));
    }
    Step::Reply(vec![(chat_id, m)])
}

/// Decides what a message means (reads only).
pub async fn decide_message(state: &AppState, msg: &Message) -> Result<Step, DbError> {
    let Some(from) = msg.from.as_deref() else { return Ok(Step::Nothing) };
    let Ok(tg_user) = i64::try_from(from.id) else { return Ok(Step::Nothing) };
    let chat_id = msg.chat.id;
    let bot = state.telegram.username();
    let Some((word, arg)) = command_of(msg) else {
        // Plain text: answered in a private chat (so a user is never left without a reply),
        // ignored in groups.
        if is_private(msg) {
            return Ok(reply(chat_id, "I answer commands: send /help to see them.".into()));
        }
        return Ok(Step::Nothing);
    };
    let Some(cmd) = Command::parse(word, &bot) else {
        if is_private(msg) {
            return Ok(reply(
                chat_id,
                format!("I do not know {}: send /help to see what I can do.", esc(word)),
            ));
        }
        return Ok(Step::Nothing);
    };
    let linked = link::of_telegram_user(&state.db, tg_user).await?;
    let role = linked.as_ref().map(|l| l.role);
    if !cmd.allowed(role) {
        let text = match role {
            None => format!(
                "Link your Tradecast account first: open your account page{} and press <b>Link Telegram</b>, or in the Tradecast app go to Settings → Plan → Link Telegram.",
                account_hint(state)
            ),
            Some(_) => "That command is for the hub's owner.".into(),
        };
        return Ok(reply(chat_id, text));
    }
    // Account matters never go to a group.
    let private_only = !matches!(cmd, Command::Start | Command::Help) && !is_private(msg);
    if private_only {
        return Ok(reply(
            chat_id,
            format!(
                "Ask me that in a private chat: <a href=\"https://t.me/{}\">open it</a>.",
                esc(&bot)
            ),
        ));
    }
    Ok(match (cmd, linked) {
        // An affiliate's link (`t.me/<bot>?start=ref_<code>`): the touch is kept for the account
        // this Telegram user links, then the usual welcome.
        (Command::Start, l) if arg.starts_with("ref_") => {
            let code = arg.trim_start_matches("ref_");
            if let Err(e) = crate::affiliates::store::telegram_touch(state, tg_user, code).await {
                tracing::warn!(error = %e, "affiliate Telegram touch not stored");
            }
            match l {
                None => start_reply(state, msg, welcome(state)),
                Some(l) => start_reply(state, msg, linked_text(&l)),
            }
        }
        (Command::Start, None) if !arg.is_empty() && is_private(msg) => Step::Link {
            code: arg.to_owned(),
            telegram_user_id: tg_user,
            chat_id,
            username: from.username.clone(),
            first_name: from.first_name.clone(),
        },
        (Command::Start, None) => start_reply(state, msg, welcome(state)),
        (Command::Start, Some(l)) => start_reply(state, msg, linked_text(&l)),
        (Command::Help, l) => reply(chat_id, help(l.as_ref().map(|l| l.role))),
        (Command::Unlink, Some(l)) => Step::Unlink(l),
        (Command::Status, Some(l)) => reply(chat_id, status(state, &l).await?),
        (Command::Plan, Some(l)) => reply(chat_id, plan(state, &l).await?),
        (Command::Signals, Some(l)) => reply(chat_id, signals(state, &l).await?),
        (Command::Positions | Command::Pnl, Some(_)) => reply(
            chat_id,
            "Your positions and your profit and loss stay on your own computer: the hub cannot read them. \
             Open the Tradecast app (Overview) to see them."
                .into(),
        ),
        (Command::Settings, Some(l)) => {
            let levels = notify::levels(&state.db, &l.user_id).await?;
            Step::Reply(vec![(chat_id, settings_message(chat_id, &l, &levels))])
        }
        (Command::Guides, Some(_)) => {
            let guides = super::guides::list(&state.db).await?;
            Step::Reply(vec![(chat_id, super::guides::menu(chat_id, &guides))])
        }
        (Command::Stats, Some(_)) => reply(chat_id, stats(state).await?),
        (Command::Health, Some(_)) => reply(chat_id, health(state).await?),
        // `allowed` refused every other unlinked command above.
        (_, None) => Step::Nothing,
    })
}

/// Decides what a button press means (reads only).
pub async fn decide_callback(state: &AppState, q: &CallbackQuery) -> Result<Step, DbError> {
    let callback_id = q.id.clone();
    let answer = |text: &str, alert: bool| Step::Answer {
        callback_id: callback_id.clone(),
        text: text.into(),
        alert,
    };
    let Ok(tg_user) = i64::try_from(q.from.id) else { return Ok(answer("Not for you.", true)) };
    let linked = link::of_telegram_user(&state.db, tg_user).await?;
    // An approval button: checked against the row the hub keeps (who may press, expiry, once).
    if let Some((decision, id)) = q.data.as_deref().and_then(super::approve::parse_data) {
        let Some(MaybeInaccessibleMessage::Message(m)) = &q.message else {
            return Ok(answer("That message is too old to act on.", false));
        };
        return super::approve::decide_press(
            state,
            q,
            linked.as_ref(),
            m.chat.id,
            m.message_id,
            decision,
            id,
        )
        .await;
    }
    let Some(l) = linked else {
        return Ok(answer("Link your Tradecast account first: send /start to this bot.", true));
    };
    let message = match &q.message {
        Some(MaybeInaccessibleMessage::Message(m)) => m,
        _ => return Ok(answer("That message is too old: send /settings again.", false)),
    };
    // A guide's button: the guide, in the chat of the one who pressed.
    if let Some(id) = q.data.as_deref().and_then(|d| d.strip_prefix("g:")) {
        if message.chat.id != l.chat_id {
            return Ok(answer("Ask me for /guides in a private chat.", false));
        }
        return Ok(match super::guides::get(&state.db, id).await? {
            Some(g) => Step::Show {
                callback_id,
                messages: vec![(l.chat_id, super::guides::message(l.chat_id, &g))],
            },
            None => answer("That guide is gone: send /guides again.", false),
        });
    }
    // A settings keyboard belongs to the private chat of the user it was made for.
    if message.chat.id != l.chat_id {
        return Ok(answer("These buttons are not yours.", true));
    }
    let data = q.data.as_deref().unwrap_or_default();
    let mut parts = data.split(':');
    let (Some("n"), Some(event), Some(level), None) = (
        parts.next(),
        parts.next().and_then(Event::parse),
        parts.next().and_then(Level::parse),
        parts.next(),
    ) else {
        return Ok(answer("That button no longer works: send /settings again.", false));
    };
    if !event.for_role(l.role) {
        return Ok(answer("Not for your account.", true));
    }
    let mut levels = notify::levels(&state.db, &l.user_id).await?;
    if let Some(slot) = levels.iter_mut().find(|(e, _)| *e == event) {
        slot.1 = level;
    }
    Ok(Step::SetLevel {
        linked: l,
        event,
        level,
        levels,
        callback_id,
        message_id: message.message_id,
    })
}

fn account_url(u: &crate::config::PublicUrl) -> String {
    format!("{}/account", u.as_str())
}

fn account_hint(state: &AppState) -> String {
    match &state.config.public_url {
        Some(u) => format!(" (<a href=\"{}\">{}</a>)", esc(&account_url(u)), esc(&account_url(u))),
        None => String::new(),
    }
}

/// `/help` for a role (none: unlinked).
pub fn help(role: Option<Role>) -> String {
    let mut out = String::from("<b>Tradecast bot</b>\n");
    for c in Command::ALL.into_iter().filter(|c| c.allowed(role)) {
        if role.is_some() && c == Command::Start {
            continue;
        }
        out.push_str(&format!("/{} — {}\n", c.name(), esc(c.description())));
    }
    if role.is_none() {
        out.push_str("\nLink your account to see the rest.");
    }
    out
}

async fn status(state: &AppState, l: &Linked) -> Result<String, DbError> {
    let mut out = format!("<b>{}</b>\n", esc(&l.name));
    out.push_str(&plan_lines(state, l).await?);
    let devices = crate::devices::list(&state.db, Some(&l.user_id)).await?;
    let active: Vec<_> = devices.iter().filter(|d| d.revoked_at_ms.is_none()).collect();
    out.push_str(&format!("\n<b>Devices</b> ({})\n", active.len()));
    if active.is_empty() {
        out.push_str("None yet: make an enrolment code on your account page.\n");
    }
    let now = state.now_ms();
    for d in active {
        let online = tradecast_protocol::DeviceId::parse(&d.id)
            .is_ok_and(|id| state.quic_peers.is_connected(&id));
        let seen: Option<i64> =
            sqlx::query_scalar("SELECT MAX(received_at_ms) FROM sync_records WHERE author = $1")
                .bind(&d.id)
                .fetch_one(state.db.pool())
                .await?;
        let health = if online {
            "🟢 connected".to_owned()
        } else {
            match seen {
                Some(t) => format!("⚪ last heard {} ago", ago(now - t)),
                None => "⚪ not heard from yet".to_owned(),
            }
        };
        out.push_str(&format!("• {} — {health}\n", esc(&d.name)));
    }
    Ok(out)
}

fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

async fn plan_lines(state: &AppState, l: &Linked) -> Result<String, DbError> {
    let subs = ledger::subscriptions_of(&state.db, &l.user_id).await?;
    let now = state.now_ms();
    let ents = crate::entitlements::active_at(&state.db, &l.user_id, now).await?;
    let mut out = String::new();
    let live: Vec<_> = subs
        .iter()
        .filter(|s| {
            !matches!(
                s.status,
                ledger::Status::Expired | ledger::Status::Refunded | ledger::Status::Incomplete
            )
        })
        .collect();
    for s in &live {
        let name =
            crate::plans::by_id(&state.db, &s.plan_id).await?.map(|p| p.name).unwrap_or_default();
        let until = super::fmt_day(s.current_period_end_ms);
        let what = match s.status {
            ledger::Status::Active => format!("active, renews {until}"),
            ledger::Status::Trialing => format!("trial, first payment {until}"),
            ledger::Status::Canceled => format!("cancelled, ends {until}"),
            ledger::Status::PastDue => {
                format!("payment failed: access until {}", super::fmt_day(s.covered_until_ms))
            }
            _ => s.status.as_str().to_owned(),
        };
        out.push_str(&format!("<b>Plan</b>: {} — {what}\n", esc(&name)));
    }
    if live.is_empty() {
        if ents.is_empty() {
            out.push_str("<b>Plan</b>: none. Choose one on your account page.\n");
        } else {
            for e in &ents {
                let name = crate::plans::by_id(&state.db, &e.plan_id)
                    .await?
                    .map(|p| p.name)
                    .unwrap_or_default();
                let until = e.ends_at_ms().map(super::fmt_day).unwrap_or_else(|| "no end".into());
                out.push_str(&format!("<b>Plan</b>: {} (granted, until {until})\n", esc(&name)));
            }
        }
    }
    Ok(out)
}

async fn plan(state: &AppState, l: &Linked) -> Result<String, DbError> {
    let mut out = plan_lines(state, l).await?;
    let features = crate::entitlements::features_at(&state.db, &l.user_id, state.now_ms()).await?;
    if !features.is_empty() {
        let words: Vec<&str> =
            features.iter().map(|f| crate::ui::account::feature_words(f)).collect();
        out.push_str(&format!("Includes: {}\n", esc(&words.join(", "))));
    }
    if let Some(u) = &state.config.public_url {
        out.push_str(&format!("Manage it on <a href=\"{0}\">{0}</a>", esc(&account_url(u))));
    }
    Ok(out)
}

async fn signals(state: &AppState, l: &Linked) -> Result<String, DbError> {
    let recent = recent_signals(state, &l.user_id, l.role, 5).await?;
    if recent.is_empty() {
        return Ok("No signals yet.".into());
    }
    let mut out = String::from("<b>Recent signals</b>\n");
    for s in &recent {
        let outcome = if s.outcomes.is_empty() {
            "not on your devices".to_string()
        } else {
            s.outcomes.iter().map(|o| esc(&o.words())).collect::<Vec<_>>().join("; ")
        };
        out.push_str(&format!(
            "• {} {} {} at <code>{}</code> — {}\n",
            super::fmt_minute(s.received_at_ms),
            esc(&s.side.to_uppercase()),
            esc(&s.symbol),
            esc(&super::price(&s.entry)),
            outcome
        ));
    }
    Ok(out)
}

/// One recent signal the account can see, and what its devices did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentSignal {
    /// Signal id.
    pub id: String,
    /// Symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Entry price as stored (exact decimal text).
    pub entry: String,
    /// When the hub received it, unix ms.
    pub received_at_ms: i64,
    /// One per device of the account that reported on it (its signed outcome).
    pub outcomes: Vec<DeviceOutcome>,
}

/// What one device did with a signal, from its signed outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceOutcome {
    /// Filled: volume (lots) and price, exact decimal text.
    Filled {
        /// Lots.
        volume: String,
        /// Price.
        price: String,
    },
    /// Decided without a fill (`rejected`, `expired`, …).
    Decided(String),
    /// Received, nothing decided yet.
    Received,
}

impl DeviceOutcome {
    /// In words (plain text: escape it for HTML).
    pub fn words(&self) -> String {
        match self {
            DeviceOutcome::Filled { volume, price } => format!("filled {volume} lots at {price}"),
            DeviceOutcome::Decided(d) => d.clone(),
            DeviceOutcome::Received => "received".into(),
        }
    }
}

/// The `limit` latest signals `user_id` (with `role`) can see — all for the hub's people, their
/// own for a provider, their plans' providers' for a subscriber — with their devices' outcomes.
/// The bot's `/signals` and the Mini App show these.
pub async fn recent_signals(
    state: &AppState,
    user_id: &str,
    role: Role,
    limit: i64,
) -> Result<Vec<RecentSignal>, DbError> {
    let now = state.now_ms();
    let sql = match role {
        Role::Owner | Role::Admin => "SELECT s.id, s.symbol, s.side, s.entry, s.received_at_ms FROM signals s \
             WHERE $1 = $1 AND $2 = $2 ORDER BY s.received_at_ms DESC, s.id DESC LIMIT $3"
            .to_owned(),
        Role::Provider => "SELECT s.id, s.symbol, s.side, s.entry, s.received_at_ms FROM signals s \
             WHERE s.provider_user_id = $1 AND $2 = $2 ORDER BY s.received_at_ms DESC, s.id DESC LIMIT $3"
            .to_owned(),
        Role::Subscriber => format!(
            "SELECT s.id, s.symbol, s.side, s.entry, s.received_at_ms FROM signals s \
             WHERE s.provider_user_id IN (SELECT p.provider_user_id FROM entitlements e \
               JOIN plans p ON p.id = e.plan_id WHERE e.user_id = $1 AND {}) \
             ORDER BY s.received_at_ms DESC, s.id DESC LIMIT $3",
            crate::entitlements::active_sql(2)
        ),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(now)
        .bind(limit)
        .fetch_all(state.db.pool())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = r.try_get(0)?;
        let outcomes = outcomes_of(state, &id, user_id).await?;
        out.push(RecentSignal {
            symbol: r.try_get(1)?,
            side: r.try_get(2)?,
            entry: r.try_get(3)?,
            received_at_ms: r.try_get(4)?,
            id,
            outcomes,
        });
    }
    Ok(out)
}

/// What the user's devices did with a signal, from their signed outcomes.
async fn outcomes_of(
    state: &AppState,
    signal_id: &str,
    user_id: &str,
) -> Result<Vec<DeviceOutcome>, DbError> {
    let rows = sqlx::query(
        "SELECT o.decision, o.fill_price, o.fill_volume FROM signal_outcomes o \
         JOIN devices d ON d.id = o.device_id WHERE o.signal_id = $1 AND d.user_id = $2 \
         ORDER BY o.device_id",
    )
    .bind(signal_id)
    .bind(user_id)
    .fetch_all(state.db.pool())
    .await?;
    let mut parts = Vec::new();
    for r in &rows {
        let decision: Option<String> = r.try_get(0)?;
        let price: Option<String> = r.try_get(1)?;
        let volume: Option<String> = r.try_get(2)?;
        parts.push(match (price, volume, decision) {
            (Some(price), Some(volume), _) => DeviceOutcome::Filled { volume, price },
            (_, _, Some(d)) => DeviceOutcome::Decided(d),
            _ => DeviceOutcome::Received,
        });
    }
    Ok(parts)
}

async fn stats(state: &AppState) -> Result<String, DbError> {
    let mut out = String::from("<b>Hub figures</b>\n");
    for role in [Role::Subscriber, Role::Provider] {
        let n = crate::accounts::count_role(&state.db, role).await?;
        out.push_str(&format!("{}s: {n}\n", role.as_str()));
    }
    let linked = link::all(&state.db).await?.len();
    out.push_str(&format!("Linked to Telegram: {linked}\n"));
    let subs: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM subscriptions WHERE status IN ('active', 'trialing', 'past_due', 'canceled')",
    )
    .fetch_one(state.db.pool())
    .await?;
    out.push_str(&format!("Live subscriptions: {subs}\n"));
    for (currency, minor) in ledger::revenue(&state.db).await? {
        out.push_str(&format!("Revenue: {}\n", esc(&crate::ui::fmt::money(minor, &currency))));
    }
    let day_ago = state.now_ms() - 86_400_000;
    let signals = crate::signals::count_received_since(&state.db, day_ago).await?;
    out.push_str(&format!("Signals in 24 h: {signals}"));
    Ok(out)
}

async fn health(state: &AppState) -> Result<String, DbError> {
    let mut out = String::from("<b>Hub health</b>\n");
    out.push_str(match state.db.ready().await {
        Ok(()) => "Database: ok\n",
        Err(_) => "Database: NOT ready\n",
    });
    for (channel, st, n) in crate::outbox::counts(&state.db).await? {
        if matches!(st.as_str(), "queued" | "sending" | "dead") {
            out.push_str(&format!("Outbox {} {}: {n}\n", channel.as_str(), esc(&st)));
        }
    }
    for j in crate::jobs::list(&state.db).await? {
        let last = j.last_outcome.as_deref().unwrap_or("not run yet");
        out.push_str(&format!(
            "Job {}: {} ({} runs, {} failed)\n",
            esc(&j.name),
            esc(last),
            j.runs,
            j.failures
        ));
    }
    Ok(out)
}

fn settings_keyboard(levels: &[(Event, Level)], role: Role) -> InlineKeyboardMarkup {
    let rows = levels
        .iter()
        .filter(|(e, _)| e.for_role(role))
        .map(|(e, cur)| {
            Level::ALL
                .into_iter()
                .map(|l| {
                    let mark = if l == *cur { "✓ " } else { "" };
                    let word = match l {
                        Level::On => "On",
                        Level::Silent => "Silent",
                        Level::Off => "Off",
                    };
                    InlineKeyboardButton::builder()
                        .text(format!("{mark}{}: {word}", e.label()))
                        .callback_data(format!("n:{}:{}", e.as_str(), l.as_str()))
                        .build()
                })
                .collect()
        })
        .collect();
    InlineKeyboardMarkup::builder().inline_keyboard(rows).build()
}

fn settings_text(levels: &[(Event, Level)], role: Role) -> String {
    let mut out = String::from("<b>Notifications</b> (Silent: no sound)\n");
    for (e, l) in levels.iter().filter(|(e, _)| e.for_role(role)) {
        out.push_str(&format!("{}: {}\n", e.label(), l.as_str()));
    }
    out
}

fn settings_message(chat_id: i64, l: &Linked, levels: &[(Event, Level)]) -> SendMessageParams {
    let mut m = notify::html(chat_id, settings_text(levels, l.role), false);
    m.reply_markup = Some(ReplyMarkup::InlineKeyboardMarkup(settings_keyboard(levels, l.role)));
    m
}

/// The commands a chat's menu shows, for `role` (none: unlinked).
pub fn set_commands(chat_id: i64, role: Option<Role>) -> SetMyCommandsParams {
    SetMyCommandsParams::builder()
        .commands(Command::menu(role))
        .scope(BotCommandScope::Chat(BotCommandScopeChat::builder().chat_id(chat_id).build()))
        .build()
}

/// Does `step`'s writes and enqueues its messages in `tx`. `update_id` makes the dedupe keys.
/// Returns how many calls it queued and the (device, hub chain seq) of each request it signed
/// into a device's inbox (announce them after the commit: [`crate::approvals::after_commit`]).
#[allow(clippy::too_many_arguments)]
pub async fn apply_in(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    hub: &tradecast_protocol::Identity,
    step: Step,
    update_id: i64,
    now_ms: i64,
    request_id: &str,
) -> Result<(usize, Vec<(String, u64)>), DbError> {
    let cause = format!("telegram_update:{update_id}");
    let mut rung = Vec::new();
    let key = |n: usize| format!("tg:u{update_id}:{n}");
    let mut sent = 0;
    let mut send = |n: usize| {
        sent += 1;
        key(n)
    };
    match step {
        Step::Nothing => {}
        Step::Reply(msgs) => {
            for (n, (chat, m)) in msgs.iter().enumerate() {
                notify::enqueue_send(tx, m, *chat, &send(n), &cause, now_ms).await?;
            }
        }
        Step::Link { code, telegram_user_id, chat_id, username, first_name } => {
            let who = Who {
                telegram_user_id,
                chat_id,
                username: username.as_deref(),
                first_name: &first_name,
            };
            let text = match link::redeem_in(tx, backend, &code, &who, now_ms, request_id).await? {
                Ok(l) => {
                    let menu = set_commands(chat_id, Some(l.role));
                    notify::enqueue_call(
                        tx,
                        "setMyCommands",
                        &menu,
                        Some(chat_id),
                        &send(1),
                        &cause,
                        now_ms,
                    )
                    .await?;
                    format!(
                        "✅ Linked to <b>{}</b>. You will get your alerts here; /settings chooses which. Send /help for the commands.",
                        esc(&l.name)
                    )
                }
                Err(why) => format!(
                    "Not linked: {}. Make a new link on your account page.",
                    esc(&why.to_string())
                ),
            };
            let m = notify::html(chat_id, text, false);
            notify::enqueue_send(tx, &m, chat_id, &send(0), &cause, now_ms).await?;
        }
        Step::Unlink(l) => {
            link::unlink_in(tx, backend, &l, now_ms, request_id).await?;
            let menu = set_commands(l.chat_id, None);
            notify::enqueue_call(
                tx,
                "setMyCommands",
                &menu,
                Some(l.chat_id),
                &send(1),
                &cause,
                now_ms,
            )
            .await?;
            let m = notify::html(
                l.chat_id,
                "Unlinked: this chat gets nothing more from your Tradecast account. Link again from your account page."
                    .into(),
                false,
            );
            notify::enqueue_send(tx, &m, l.chat_id, &send(0), &cause, now_ms).await?;
        }
        Step::SetLevel { linked, event, level, levels, callback_id, message_id } => {
            notify::set_level_in(tx, &linked.user_id, event, level, now_ms).await?;
            let answer = AnswerCallbackQueryParams::builder()
                .callback_query_id(callback_id)
                .text(format!("{}: {}", event.label(), level.as_str()))
                .build();
            notify::enqueue_call(
                tx,
                "answerCallbackQuery",
                &answer,
                None,
                &send(0),
                &cause,
                now_ms,
            )
            .await?;
            let edit = EditMessageTextParams::builder()
                .chat_id(linked.chat_id)
                .message_id(message_id)
                .text(settings_text(&levels, linked.role))
                .parse_mode(frankenstein::ParseMode::Html)
                .reply_markup(settings_keyboard(&levels, linked.role))
                .build();
            notify::enqueue_call(
                tx,
                "editMessageText",
                &edit,
                Some(linked.chat_id),
                &send(1),
                &cause,
                now_ms,
            )
            .await?;
        }
        Step::PreCheckout { params } => {
            notify::enqueue_call(
                tx,
                "answerPreCheckoutQuery",
                &params,
                None,
                &send(0),
                &cause,
                now_ms,
            )
            .await?;
        }
        Step::Show { callback_id, messages } => {
            let answer =
                AnswerCallbackQueryParams::builder().callback_query_id(callback_id).build();
            notify::enqueue_call(
                tx,
                "answerCallbackQuery",
                &answer,
                None,
                &send(0),
                &cause,
                now_ms,
            )
            .await?;
            for (n, (chat, m)) in messages.iter().enumerate() {
                notify::enqueue_send(tx, m, *chat, &send(n + 1), &cause, now_ms).await?;
            }
        }
        Step::Press(press) => {
            let (k0, k1) = (send(0), send(1));
            let keys = (k0.as_str(), k1.as_str());
            if let Some(device) = super::approve::apply_press_in(
                tx, backend, hub, *press, keys, &cause, now_ms, request_id,
            )
            .await?
            {
                rung.push(device);
            }
        }
        Step::Answer { callback_id, text, alert } => {
            let answer = AnswerCallbackQueryParams::builder()
                .callback_query_id(callback_id)
                .text(text)
                .show_alert(alert)
                .build();
            notify::enqueue_call(
                tx,
                "answerCallbackQuery",
                &answer,
                None,
                &send(0),
                &cause,
                now_ms,
            )
            .await?;
        }
    }
    Ok((sent, rung))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_and_without_the_bot_name() {
        assert_eq!(Command::parse("/status", "tc_bot"), Some(Command::Status));
        assert_eq!(Command::parse("/STATUS@TC_bot", "tc_bot"), Some(Command::Status));
        assert_eq!(Command::parse("/status@other_bot", "tc_bot"), None);
        assert_eq!(Command::parse("status", "tc_bot"), None);
        assert_eq!(Command::parse("/nope", "tc_bot"), None);
    }

    #[test]
    fn each_role_gets_its_commands() {
        let names = |role| Command::menu(role).into_iter().map(|c| c.command).collect::<Vec<_>>();
        assert_eq!(names(None), ["start", "help"]);
        let sub = names(Some(Role::Subscriber));
        assert!(sub.contains(&"status".to_string()) && !sub.contains(&"stats".to_string()));
        assert!(!sub.contains(&"start".to_string()));
        let owner = names(Some(Role::Owner));
        assert!(owner.contains(&"stats".to_string()) && owner.contains(&"health".to_string()));
        for c in Command::ALL {
            assert!(c.name().len() <= 32 && c.name().bytes().all(|b| b.is_ascii_lowercase()));
            assert!((1..=256).contains(&c.description().len()));
        }
        assert!(help(None).contains("Link your account"));
    }

    #[test]
    fn settings_buttons_fit_telegram_and_mark_the_level() {
        let levels = [
            (Event::Signal, Level::Silent),
            (Event::Billing, Level::On),
            (Event::Alarm, Level::Off),
            (Event::News, Level::On),
        ];
        let kb = settings_keyboard(&levels, Role::Subscriber);
        assert_eq!(kb.inline_keyboard.len(), 3);
        let owner = settings_keyboard(&levels, Role::Owner);
        assert_eq!(owner.inline_keyboard.len(), 4);
        let first = &owner.inline_keyboard[0];
        assert!(first[1].text.starts_with("✓ ") && !first[0].text.starts_with("✓ "));
        for b in owner.inline_keyboard.iter().flatten() {
            assert!(b.callback_data.as_ref().is_some_and(|d| d.len() <= 64));
        }
    }
}
