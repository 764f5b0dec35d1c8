//! Approve from Telegram (issue 17 part 5): a node's signed `Pending` becomes a message to the
//! trader's linked private chat with the signal, the lot range, the risk preview and what would
//! block it, and buttons: **Approve** (the node's own size), lot presets inside the range, and
//! **Reject**.
//!
//! - Each button is a row the hub keeps (`telegram_approval_buttons`, under the message's row in
//!   `telegram_approval_posts`: signal, device, lots, expiry, the one Telegram user allowed to
//!   press). Its `callback_data` is one action byte (`A` approve, `R` reject) and the row's
//!   random 16-byte id in hex: 33 bytes, under Telegram's 64, and guessing one is hopeless.
//! - A press is answered at once (`answerCallbackQuery`, queued in the transaction that records
//!   the update and woken right after it commits) and goes through [`approvals::request_in`]
//!   (channel `telegram`, the Telegram user id recorded): the hub-signed `ApprovalRequest` is in
//!   the device's inbox when the update commits. The message loses its buttons and says what was
//!   sent; when the node's signed `RequestAnswer` arrives ([`answered_in`]) it says what the node
//!   did (applied, or refused with the reason). A decision the node took by itself (its app, its
//!   rules) closes the message too ([`decided_elsewhere_in`]), and so does the deadline passing
//!   unpressed (the job `telegram.approval_expiry`, [`ExpiryCloser`]).
//! - A press by anyone but the linked trader, after the expiry, or on a message already decided
//!   (a second press, or two buttons at once) is refused politely and changes nothing: the
//!   message's row is claimed with `pressed_at_ms IS NULL` in the update's transaction.

use frankenstein::methods::{AnswerCallbackQueryParams, EditMessageTextParams};
use frankenstein::types::{CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, ReplyMarkup};
use rust_decimal::Decimal;
use sqlx::Row;
use tradecast_protocol::{AnswerOutcome, Identity, RefusalReason, RemoteDecision};

use super::commands::Step;
use super::html::esc;
use super::link::{self, Linked};
use super::notify;
use crate::approvals::{self, Asker, NewApprovalRequest, PendingRow};
use crate::db::{Backend, DbError};
use crate::feed::Tx;
use crate::state::AppState;

/// The dedupe-key prefix of a post's `sendMessage` (the deliverer learns its `message_id`).
pub const POST_KEY: &str = "tg:approve:";

/// The `callback_data` of a button: action byte and the row's id.
pub fn callback_data(decision: RemoteDecision, id: &str) -> String {
    let action = match decision {
        RemoteDecision::Approved => 'A',
        RemoteDecision::Rejected => 'R',
    };
    format!("{action}{id}")
}

/// The action and row id of an approval button's `callback_data` (`None`: another button).
pub fn parse_data(data: &str) -> Option<(RemoteDecision, &str)> {
    let decision = match data.as_bytes().first()? {
        b'A' => RemoteDecision::Approved,
        b'R' => RemoteDecision::Rejected,
        _ => return None,
    };
    let id = &data[1..];
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then_some((decision, id))
}

/// Words for a blocking rule code the node sent (unknown codes are shown as they are).
pub fn blocking_words(code: &str) -> String {
    match code {
        "daily_loss" => "the daily loss limit".into(),
        "drawdown" | "drawdown_lock" => "the drawdown lock".into(),
        "market_closed" => "the market is closed".into(),
        "exposure" | "max_exposure" => "the exposure limit".into(),
        "max_positions" => "the open-positions limit".into(),
        "price_moved" | "price_drift" => "the price moved past your limit".into(),
        "spread" => "the spread is too wide".into(),
        other => other.replace('_', " "),
    }
}

/// Words for a node's refusal.
pub fn refusal_words(reason: RefusalReason) -> &'static str {
    match reason {
        RefusalReason::Expired => "the signal expired first",
        RefusalReason::NotPending => "the signal was no longer waiting (already decided)",
        RefusalReason::RemoteOff => "remote approval is off in your app's settings",
        RefusalReason::PriceMoved => "the price moved past your limit",
        RefusalReason::Risk => "one of your risk rules refuses it now",
        RefusalReason::LotsOutOfRange => "those lots are outside your rules",
        RefusalReason::MarketClosed => "the market is closed",
    }
}

/// What a button asks, in words (`approve 0.10 lots`, `approve at your app's size`, `reject`).
pub fn ask_words(decision: &str, lots: Option<&str>) -> String {
    match (decision, lots) {
        ("approved", Some(l)) => format!("approve {} lots", super::price(l)),
        ("approved", None) => "approve at your app's size".into(),
        _ => "reject".into(),
    }
}

/// The lot presets offered beside the default approve: the range's ends, and its middle when
/// the range is wide, each different from the policy's own size; at most three.
pub fn presets(min: Decimal, max: Decimal, default: Option<Decimal>) -> Vec<Decimal> {
    let mut out: Vec<Decimal> = Vec::new();
    let mid = ((min + max) / Decimal::TWO).round_dp(min.scale().max(max.scale()));
    for v in [min, mid, max] {
        let v = v.normalize();
        if v > Decimal::ZERO
            && v >= min
            && v <= max
            && Some(v) != default.map(|d| d.normalize())
            && !out.contains(&v)
        {
            out.push(v);
        }
    }
    out
}

struct SignalInfo {
    symbol: String,
    side: String,
    entry: String,
    stop: String,
    tp1: String,
    device_name: String,
}

async fn signal_info(tx: &mut Tx, row: &PendingRow) -> Result<Option<SignalInfo>, DbError> {
    let r = sqlx::query(
        "SELECT s.symbol, s.side, s.entry, s.stop, s.tp1, d.name FROM signals s, devices d \
         WHERE s.id = $1 AND d.id = $2",
    )
    .bind(&row.signal_id)
    .bind(&row.device_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(r) = r else { return Ok(None) };
    Ok(Some(SignalInfo {
        symbol: r.try_get(0)?,
        side: r.try_get(1)?,
        entry: r.try_get(2)?,
        stop: r.try_get(3)?,
        tp1: r.try_get(4)?,
        device_name: r.try_get(5)?,
    }))
}

/// The message's text (HTML, every dynamic value escaped).
fn post_text(s: &SignalInfo, row: &PendingRow) -> String {
    let mut out = format!(
        "🔔 <b>Signal waiting for your decision</b>\n<b>{} {}</b> at <code>{}</code> · SL <code>{}</code> · TP <code>{}</code>\n",
        esc(&s.side.to_uppercase()),
        esc(&s.symbol),
        esc(&super::price(&s.entry)),
        esc(&super::price(&s.stop)),
        esc(&super::price(&s.tp1)),
    );
    out.push_str(&format!("Device: {}\n", esc(&s.device_name)));
    out.push_str(&format!(
        "Lots your rules allow: {} – {}\n",
        esc(&row.min_lots.normalize().to_string()),
        esc(&row.max_lots.normalize().to_string())
    ));
    if let Some(p) = &row.preview {
        out.push_str(&format!(
            "Risk at {} lots: {} {} ({} % of equity)\n",
            esc(&p.lots.normalize().to_string()),
            esc(&format!("{:.2}", p.risk_money.round_dp(2))),
            esc(&p.currency),
            esc(&p.risk_percent.round_dp(2).normalize().to_string()),
        ));
    }
    if !row.blocking.is_empty() {
        let words: Vec<String> = row.blocking.iter().map(|b| blocking_words(b)).collect();
        out.push_str(&format!("⚠️ Your app would refuse it now: {}\n", esc(&words.join(", "))));
    }
    out.push_str(&format!(
        "Decide before {} UTC. Your app decides within its own rules.",
        super::fmt_minute(row.expires_at_ms)
    ));
    out
}

/// Offers a newly stored pending signal to the trader's linked private chat (nothing when the
/// account has no linked, unblocked Telegram chat, or the signal is gone), inside the sync
/// transaction that stored it: the message is an outbox row committed with its cause.
pub async fn post_in(tx: &mut Tx, row: &PendingRow, now_ms: i64) -> Result<(), DbError> {
    if row.expires_at_ms <= now_ms {
        return Ok(());
    }
    let Some(linked) = link::of_user_in(tx, &row.user_id).await? else { return Ok(()) };
    if linked.blocked_at_ms.is_some() {
        return Ok(());
    }
    let Some(info) = signal_info(tx, row).await? else { return Ok(()) };
    let post_id = crate::ids::new_id();
    let text = post_text(&info, row);
    let inserted = sqlx::query(
        "INSERT INTO telegram_approval_posts (id, signal_id, device_id, user_id, telegram_user_id, \
         chat_id, text, expires_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (signal_id, device_id) DO NOTHING",
    )
    .bind(&post_id)
    .bind(&row.signal_id)
    .bind(&row.device_id)
    .bind(&row.user_id)
    .bind(linked.telegram_user_id)
    .bind(linked.chat_id)
    .bind(&text)
    .bind(row.expires_at_ms)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(());
    }
    let default = row.preview.as_ref().map(|p| p.lots);
    let mut buttons: Vec<(RemoteDecision, Option<Decimal>, String)> = vec![(
        RemoteDecision::Approved,
        None,
        match default {
            Some(l) => format!("✅ Approve {} lots", l.normalize()),
            None => "✅ Approve".into(),
        },
    )];
    for l in presets(row.min_lots, row.max_lots, default) {
        buttons.push((RemoteDecision::Approved, Some(l), format!("✅ {l} lots")));
    }
    buttons.push((RemoteDecision::Rejected, None, "❌ Reject".into()));
    let mut rows: Vec<Vec<InlineKeyboardButton>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for (n, (decision, lots, label)) in buttons.into_iter().enumerate() {
        let id = crate::ids::new_id();
        sqlx::query(
            "INSERT INTO telegram_approval_buttons (id, post_id, decision, lots) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(&post_id)
        .bind(decision.as_str())
        .bind(lots.map(|l| l.to_string()))
        .execute(&mut **tx)
        .await?;
        let button =
            InlineKeyboardButton::builder().text(label).callback_data(callback_data(decision, &id));
        let slot = match (n, decision) {
            (0, _) => 0,
            (_, RemoteDecision::Approved) => 1,
            (_, RemoteDecision::Rejected) => 2,
        };
        rows[slot].push(button.build());
    }
    rows.retain(|r| !r.is_empty());
    if let Some(link) = miniapp_link(tx, &row.signal_id).await? {
        let open = InlineKeyboardButton::builder().text("📱 Open in the app").url(link).build();
        rows.push(vec![open]);
    }
    let mut m = notify::html(linked.chat_id, text, false);
    m.reply_markup = Some(ReplyMarkup::InlineKeyboardMarkup(
        InlineKeyboardMarkup::builder().inline_keyboard(rows).build(),
    ));
    let cause = format!("pending:{}:{}", row.signal_id, row.device_id);
    notify::enqueue_send(tx, &m, linked.chat_id, &format!("{POST_KEY}{post_id}"), &cause, now_ms)
        .await?;
    metrics::counter!("tradecast_telegram_approval_posts_total").increment(1);
    Ok(())
}

/// The link that opens the bot's Mini App on this signal (`https://t.me/<bot>?startapp=
/// approve_<signal>`: Telegram opens the bot's Main Mini App with that start parameter), once
/// the bot's username is known.
async fn miniapp_link(tx: &mut Tx, signal_id: &str) -> Result<Option<String>, DbError> {
    let name = super::state_get_in(tx, super::USERNAME_KEY).await?;
    Ok(name
        .filter(|n| !n.is_empty())
        .map(|n| format!("https://t.me/{n}?startapp=approve_{signal_id}")))
}

/// The deliverer's hook: `sendMessage` of a post answered with its `message_id`.
pub async fn posted(db: &crate::db::Db, post_id: &str, message_id: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE telegram_approval_posts SET message_id = $1 WHERE id = $2 AND message_id IS NULL",
    )
    .bind(message_id)
    .bind(post_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A button's row with its message's.
#[derive(Debug, Clone)]
pub struct Button {
    /// The button's id.
    pub id: String,
    /// Its message's row.
    pub post_id: String,
    /// `approved` or `rejected`.
    pub decision: String,
    /// The lots it asks for (exact decimal text); `None`: the node's own size.
    pub lots: Option<String>,
    /// Signal id (hex).
    pub signal_id: String,
    /// Device (text form).
    pub device_id: String,
    /// The trader's account.
    pub user_id: String,
    /// The only Telegram user whose press counts.
    pub telegram_user_id: i64,
    /// The private chat.
    pub chat_id: i64,
    /// The message's first text.
    pub text: String,
    /// The decision deadline, unix ms.
    pub expires_at_ms: i64,
    /// The message, once known.
    pub message_id: Option<i64>,
    /// When it was decided (a press, or the node by itself).
    pub pressed_at_ms: Option<i64>,
}

async fn button(state: &AppState, id: &str) -> Result<Option<Button>, DbError> {
    let r = sqlx::query(
        "SELECT b.id, b.post_id, b.decision, b.lots, p.signal_id, p.device_id, p.user_id, \
         p.telegram_user_id, p.chat_id, p.text, p.expires_at_ms, p.message_id, p.pressed_at_ms \
         FROM telegram_approval_buttons b JOIN telegram_approval_posts p ON p.id = b.post_id \
         WHERE b.id = $1",
    )
    .bind(id)
    .fetch_optional(state.db.pool())
    .await?;
    let Some(r) = r else { return Ok(None) };
    Ok(Some(Button {
        id: r.try_get(0)?,
        post_id: r.try_get(1)?,
        decision: r.try_get(2)?,
        lots: r.try_get(3)?,
        signal_id: r.try_get(4)?,
        device_id: r.try_get(5)?,
        user_id: r.try_get(6)?,
        telegram_user_id: r.try_get(7)?,
        chat_id: r.try_get(8)?,
        text: r.try_get(9)?,
        expires_at_ms: r.try_get(10)?,
        message_id: r.try_get(11)?,
        pressed_at_ms: r.try_get(12)?,
    }))
}

/// A press of an approval button that passed the checks (applied in the update's transaction).
#[derive(Debug)]
pub struct Press {
    /// The callback query to answer.
    pub callback_id: String,
    /// The button.
    pub button: Button,
    /// The chat and message pressed in.
    pub chat_id: i64,
    /// The message.
    pub message_id: i32,
    /// The presser's name, for the message.
    pub presser: String,
}

/// Decides a press of an approval button (reads only). `linked` is the presser's link, if any.
pub async fn decide_press(
    state: &AppState,
    q: &CallbackQuery,
    linked: Option<&Linked>,
    chat_id: i64,
    message_id: i32,
    decision: RemoteDecision,
    id: &str,
) -> Result<Step, DbError> {
    let answer = |text: &str, alert: bool| Step::Answer {
        callback_id: q.id.clone(),
        text: text.into(),
        alert,
    };
    let Some(b) = button(state, id).await?.filter(|b| b.decision == decision.as_str()) else {
        return Ok(answer("That button no longer works.", false));
    };
    let presser = i64::try_from(q.from.id).ok();
    let theirs = presser == Some(b.telegram_user_id)
        && linked
            .is_some_and(|l| l.user_id == b.user_id && l.telegram_user_id == b.telegram_user_id)
        && chat_id == b.chat_id;
    if !theirs {
        metrics::counter!("tradecast_telegram_approval_presses_total", "outcome" => "not_theirs")
            .increment(1);
        return Ok(answer("Only the trader this signal was sent to can decide it.", true));
    }
    if b.pressed_at_ms.is_some() {
        metrics::counter!("tradecast_telegram_approval_presses_total", "outcome" => "twice")
            .increment(1);
        return Ok(answer("Already decided: nothing more was sent.", false));
    }
    if state.now_ms() >= b.expires_at_ms {
        metrics::counter!("tradecast_telegram_approval_presses_total", "outcome" => "expired")
            .increment(1);
        return Ok(answer(
            &format!(
                "Too late: this signal stopped waiting at {} UTC. Nothing was sent.",
                super::fmt_minute(b.expires_at_ms)
            ),
            true,
        ));
    }
    let presser = match &q.from.username {
        Some(u) => format!("@{u}"),
        None => q.from.first_name.clone(),
    };
    Ok(Step::Press(Box::new(Press {
        callback_id: q.id.clone(),
        button: b,
        chat_id,
        message_id,
        presser,
    })))
}

/// Applies a press inside the update's transaction: claims the message (a second press finds
/// it claimed), signs and queues the request for the node, answers the press and edits the
/// message. Returns the device and the request's `seq` in the hub's chain once the transaction
/// commits ([`approvals::after_commit`]), if a request was made.
#[allow(clippy::too_many_arguments)]
pub async fn apply_press_in(
    tx: &mut Tx,
    backend: Backend,
    hub: &Identity,
    press: Press,
    keys: (&str, &str),
    cause: &str,
    now_ms: i64,
    request_id: &str,
) -> Result<Option<(String, u64)>, DbError> {
    let Press { callback_id, button: b, chat_id, message_id, presser } = press;
    let answer = |text: String, alert: bool| {
        AnswerCallbackQueryParams::builder()
            .callback_query_id(callback_id.clone())
            .text(text)
            .show_alert(alert)
            .build()
    };
    let claimed = sqlx::query(
        "UPDATE telegram_approval_posts SET pressed_at_ms = $1, message_id = COALESCE(message_id, $2) \
         WHERE id = $3 AND pressed_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(i64::from(message_id))
    .bind(&b.post_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        let a = answer("Already decided: nothing more was sent.".into(), false);
        notify::enqueue_call(tx, "answerCallbackQuery", &a, None, keys.0, cause, now_ms).await?;
        return Ok(None);
    }
    let new = NewApprovalRequest {
        signal_id: b.signal_id.clone(),
        device_id: b.device_id.clone(),
        decision: b.decision.clone(),
        channel: "telegram".into(),
        lots: b.lots.clone(),
        expires_at_ms: Some(b.expires_at_ms),
    };
    let asker = Asker { user_id: &b.user_id, telegram_user_id: Some(b.telegram_user_id) };
    let asked = ask_words(&b.decision, b.lots.as_deref());
    match approvals::request_in(tx, backend, hub, now_ms, &asker, &new, request_id).await {
        Ok((req, seq)) => {
            sqlx::query("UPDATE telegram_approval_posts SET request_id = $1 WHERE id = $2")
                .bind(&req.id)
                .bind(&b.post_id)
                .execute(&mut **tx)
                .await?;
            let a = answer(format!("Sent to your app: {asked}."), false);
            notify::enqueue_call(tx, "answerCallbackQuery", &a, None, keys.0, cause, now_ms)
                .await?;
            let text = format!(
                "{}\n\n⏳ <b>{}</b> — sent to your app by {} at {} UTC; waiting for its answer.",
                b.text,
                esc(&capitalised(&asked)),
                esc(&presser),
                super::fmt_minute(now_ms)
            );
            enqueue_edit(tx, chat_id, i64::from(message_id), text, keys.1, cause, now_ms).await?;
            metrics::counter!("tradecast_telegram_approval_presses_total", "outcome" => "sent")
                .increment(1);
            Ok(Some((req.device_id, seq)))
        }
        // The database failed: the update's transaction is dropped (Telegram delivers again).
        Err(crate::error::ApiError::Internal(e)) => Err(match e.downcast::<DbError>() {
            Ok(db) => *db,
            Err(other) => DbError::Corrupt(format!("approval request: {other}")),
        }),
        Err(refused) => {
            // Refused by the hub's checks (device revoked, the signal gone): the message stays
            // open, the press is answered with the reason.
            sqlx::query("UPDATE telegram_approval_posts SET pressed_at_ms = NULL WHERE id = $1")
                .bind(&b.post_id)
                .execute(&mut **tx)
                .await?;
            let words: String = format!("Not sent: {refused}").chars().take(200).collect();
            let a = answer(words, true);
            notify::enqueue_call(tx, "answerCallbackQuery", &a, None, keys.0, cause, now_ms)
                .await?;
            Ok(None)
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

async fn enqueue_edit(
    tx: &mut Tx,
    chat_id: i64,
    message_id: i64,
    text: String,
    dedupe: &str,
    cause: &str,
    now_ms: i64,
) -> Result<(), DbError> {
    let Ok(message_id) = i32::try_from(message_id) else { return Ok(()) };
    let edit = EditMessageTextParams::builder()
        .chat_id(chat_id)
        .message_id(message_id)
        .text(super::html::fit(&text))
        .parse_mode(frankenstein::ParseMode::Html)
        .build();
    notify::enqueue_call(tx, "editMessageText", &edit, Some(chat_id), dedupe, cause, now_ms)
        .await?;
    Ok(())
}

/// The node's signed answer to request `request_id`: the message that asked says what the node
/// did (inside the sync transaction that committed the answer).
pub async fn answered_in(
    tx: &mut Tx,
    request_id: &str,
    outcome: AnswerOutcome,
    now_ms: i64,
) -> Result<(), DbError> {
    let r = sqlx::query(
        "SELECT p.id, p.chat_id, p.message_id, p.text, r.decision, r.lots FROM telegram_approval_posts p \
         JOIN approval_requests r ON r.id = p.request_id WHERE p.request_id = $1",
    )
    .bind(request_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(r) = r else { return Ok(()) };
    let (post_id, chat_id, message_id, text, decision, lots): (
        String,
        i64,
        Option<i64>,
        String,
        String,
        Option<String>,
    ) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?);
    sqlx::query("UPDATE telegram_approval_posts SET outcome = $1 WHERE id = $2")
        .bind(outcome.as_str())
        .bind(&post_id)
        .execute(&mut **tx)
        .await?;
    let Some(message_id) = message_id else { return Ok(()) };
    let line = outcome_line(&decision, lots.as_deref(), outcome);
    let text = format!("{text}\n\n{line}");
    let key = format!("{POST_KEY}{post_id}:answer:{request_id}");
    enqueue_edit(tx, chat_id, message_id, text, &key, &format!("request:{request_id}"), now_ms)
        .await
}

/// The line a decided message ends with.
pub fn outcome_line(decision: &str, lots: Option<&str>, outcome: AnswerOutcome) -> String {
    let asked = ask_words(decision, lots);
    match outcome {
        AnswerOutcome::Applied => {
            format!("✅ <b>Applied</b>: your app did it ({}).", esc(&asked))
        }
        AnswerOutcome::Refused(reason) => format!(
            "❌ <b>Refused</b> by your app ({}): {}.",
            esc(&asked),
            esc(refusal_words(reason))
        ),
    }
}

/// The node decided a signal by itself (its app, its automatic rules): an open message about
/// it is closed (its buttons go; a later press is refused).
pub async fn decided_elsewhere_in(
    tx: &mut Tx,
    signal_id: &str,
    device_id: &str,
    decision: &str,
    now_ms: i64,
) -> Result<(), DbError> {
    let r = sqlx::query(
        "SELECT id, chat_id, message_id, text FROM telegram_approval_posts \
         WHERE signal_id = $1 AND device_id = $2 AND pressed_at_ms IS NULL",
    )
    .bind(signal_id)
    .bind(device_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(r) = r else { return Ok(()) };
    let (post_id, chat_id, message_id, text): (String, i64, Option<i64>, String) =
        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
    sqlx::query(
        "UPDATE telegram_approval_posts SET pressed_at_ms = $1, outcome = $2 WHERE id = $3 AND pressed_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(decision)
    .bind(&post_id)
    .execute(&mut **tx)
    .await?;
    let Some(message_id) = message_id else { return Ok(()) };
    let text = format!("{text}\n\n☑️ Decided in your app: <b>{}</b>.", esc(decision));
    let key = format!("{POST_KEY}{post_id}:elsewhere");
    enqueue_edit(tx, chat_id, message_id, text, &key, &format!("decided:{signal_id}"), now_ms).await
}

/// The job that closes approval messages nobody pressed before their deadline: the buttons go
/// and the message says time is up (what the node does then is its own rules': a signal
/// waiting for a manual decision expires).
#[derive(Debug, Default)]
pub struct ExpiryCloser;

impl crate::jobs::Job for ExpiryCloser {
    fn run<'a>(
        &'a self,
        state: &'a AppState,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let n = close_expired(state).await.map_err(|e| e.to_string())?;
            Ok(format!("{n} approval messages closed at their deadline"))
        })
    }
}

/// One pass of [`ExpiryCloser`]: how many messages it closed (at most 200 a pass).
pub async fn close_expired(state: &AppState) -> Result<usize, DbError> {
    let now = state.now_ms();
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM telegram_approval_posts WHERE pressed_at_ms IS NULL AND expires_at_ms <= $1 \
         ORDER BY expires_at_ms, id LIMIT 200",
    )
    .bind(now)
    .fetch_all(state.db.pool())
    .await?;
    let mut closed = 0;
    for id in due {
        let mut tx = state.db.begin_write().await?;
        let r = sqlx::query(
            "UPDATE telegram_approval_posts SET pressed_at_ms = $1, outcome = 'expired' \
             WHERE id = $2 AND pressed_at_ms IS NULL RETURNING chat_id, message_id, text, expires_at_ms",
        )
        .bind(now)
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = r else { continue };
        let (chat_id, message_id, text, expires): (i64, Option<i64>, String, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        if let Some(message_id) = message_id {
            let text = format!(
                "{text}\n\n⌛ Time is up ({} UTC): nothing was sent; your app's own rules apply.",
                super::fmt_minute(expires)
            );
            let key = format!("{POST_KEY}{id}:expired");
            enqueue_edit(&mut tx, chat_id, message_id, text, &key, &format!("expired:{id}"), now)
                .await?;
        }
        tx.commit().await?;
        closed += 1;
    }
    if closed > 0 {
        crate::outbox::wake(state);
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn callback_data_is_an_action_byte_and_the_id_within_64_bytes() {
        let id = crate::ids::new_id();
        for d in RemoteDecision::ALL {
            let data = callback_data(d, &id);
            assert!(data.len() <= 64 && data.len() == 33);
            assert_eq!(parse_data(&data), Some((d, id.as_str())));
        }
        assert_eq!(parse_data("n:signal:on"), None);
        assert_eq!(parse_data("g:abc"), None);
        assert_eq!(parse_data("A"), None);
        assert_eq!(parse_data(&format!("A{}", "Z".repeat(32))), None);
        assert_eq!(parse_data(&format!("X{id}")), None);
    }

    #[test]
    fn presets_stay_inside_the_range_and_skip_the_default() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(
            presets(d("0.01"), d("0.50"), Some(d("0.10"))),
            [d("0.01"), d("0.26"), d("0.5")]
        );
        assert_eq!(presets(d("0.10"), d("0.10"), Some(d("0.10"))), Vec::<Decimal>::new());
        assert_eq!(presets(d("0.10"), d("0.20"), Some(d("0.10"))), [d("0.15"), d("0.2")]);
        for p in presets(d("0.03"), d("1.7"), None) {
            assert!(p >= d("0.03") && p <= d("1.7"));
        }
    }

    #[test]
    fn the_post_escapes_every_dynamic_value() {
        let info = SignalInfo {
            symbol: "XAU<USD>".into(),
            side: "buy".into(),
            entry: "1.5&".into(),
            stop: "1".into(),
            tp1: "2".into(),
            device_name: "Bob & <Co>".into(),
        };
        let row = PendingRow {
            signal_id: "00".repeat(16),
            device_id: "d".into(),
            user_id: "u".into(),
            expires_at_ms: 0,
            min_lots: Decimal::from_str("0.01").unwrap(),
            max_lots: Decimal::from_str("0.50").unwrap(),
            preview: Some(tradecast_protocol::RiskPreview {
                lots: Decimal::from_str("0.10").unwrap(),
                risk_money: Decimal::from_str("12.5").unwrap(),
                risk_percent: Decimal::from_str("1.25").unwrap(),
                currency: "U<SD".into(),
            }),
            blocking: vec!["<script>".into(), "daily_loss".into()],
            at_ms: 0,
            outcome: None,
            decided_at_ms: None,
        };
        let text = post_text(&info, &row);
        for raw in ["XAU<USD>", "Bob & <Co>", "U<SD", "<script>"] {
            assert!(!text.contains(raw), "{raw} unescaped in {text}");
        }
        assert!(text.contains("XAU&lt;USD&gt;") && text.contains("Bob &amp; &lt;Co&gt;"));
        assert!(text.contains("<code>1.5&amp;</code>"), "{text}");
        assert!(text.contains("the daily loss limit") && text.contains("Risk at 0.1 lots: 12.50"));
    }

    #[test]
    fn every_refusal_has_words_and_the_outcome_line_is_escaped() {
        for r in RefusalReason::ALL {
            assert!(!refusal_words(r).is_empty());
        }
        let line = outcome_line("approved", Some("0.10"), AnswerOutcome::Applied);
        assert!(line.contains("approve 0.1 lots"), "{line}");
        let line =
            outcome_line("rejected", None, AnswerOutcome::Refused(RefusalReason::NotPending));
        assert!(line.starts_with("❌") && line.contains("no longer waiting"));
        assert_eq!(blocking_words("daily_loss"), "the daily loss limit");
        assert_eq!(blocking_words("<x>"), "<x>");
    }
}
