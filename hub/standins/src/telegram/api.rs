//! `/bot{token}/{method}`: the methods the hub calls, each checking its parameters as the Bot
//! API does and answering in its shape: `{"ok":true,"result":…}` or
//! `{"ok":false,"error_code":N,"description":"…"}` (with `parameters.retry_after` on a 429).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::html;
use super::params::{self, Params};
use super::world::{
    AnsweredCallback, Call, ChatMessage, Edit, Invoice, MemberStatus, Webhook, World, random_token,
    unix_now,
};

/// An error in the Bot API's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status and `error_code`.
    pub status: u16,
    /// `description`, e.g. `Bad Request: chat not found`.
    pub description: String,
    /// `parameters.retry_after` (seconds) on a 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 400 `Bad Request: {what}`.
    pub fn bad(what: &str) -> ApiError {
        ApiError { status: 400, description: format!("Bad Request: {what}"), retry_after: None }
    }
    /// 403 `Forbidden: {what}`.
    pub fn forbidden(what: &str) -> ApiError {
        ApiError { status: 403, description: format!("Forbidden: {what}"), retry_after: None }
    }
    /// 409 `Conflict: {what}`.
    pub fn conflict(what: &str) -> ApiError {
        ApiError { status: 409, description: format!("Conflict: {what}"), retry_after: None }
    }
    /// 404 `Not Found`.
    pub fn not_found() -> ApiError {
        ApiError { status: 404, description: "Not Found".into(), retry_after: None }
    }
    /// 401 `Unauthorized`.
    pub fn unauthorized() -> ApiError {
        ApiError { status: 401, description: "Unauthorized".into(), retry_after: None }
    }
    /// 429 `Too Many Requests: retry after {secs}`.
    pub fn too_many(secs: u64) -> ApiError {
        ApiError {
            status: 429,
            description: format!("Too Many Requests: retry after {secs}"),
            retry_after: Some(secs),
        }
    }
    fn missing(name: &str) -> ApiError {
        ApiError::bad(&format!("parameter \"{name}\" is required"))
    }
    fn body(&self) -> Value {
        let mut v =
            json!({"ok": false, "error_code": self.status, "description": self.description});
        if let Some(s) = self.retry_after {
            v["parameters"] = json!({"retry_after": s});
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, axum::Json(self.body())).into_response()
    }
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

/// The most calls the log keeps.
pub const CALLS_MAX: usize = 200_000;

/// Compares two secrets without an early exit on the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Any path that is not `/bot{token}/{method}`.
pub(crate) async fn fallback() -> Response {
    ApiError::not_found().into_response()
}

/// `GET|POST /bot{token}/{method}`.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    Path((segment, method)): Path<(String, String)>,
    http_method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = segment.strip_prefix("bot") else {
        return ApiError::not_found().into_response();
    };
    if !same_secret(token.as_bytes(), shared.token.as_bytes()) {
        return ApiError::unauthorized().into_response();
    }
    if http_method != Method::GET && http_method != Method::POST {
        return ApiError::not_found().into_response();
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let (params, result) = match params::read(uri.query(), content_type, &body) {
        Err(e) => (Value::Null, Err(e)),
        Ok(p) => {
            let result = if method.eq_ignore_ascii_case("getUpdates") {
                get_updates(&shared, &p).await
            } else {
                let mut w = shared.lock();
                dispatch(&shared, &mut w, &method.to_ascii_lowercase(), &p)
            };
            (p.to_log(), result)
        }
    };
    let (status, description) = match &result {
        Ok(_) => (200, None),
        Err(e) => (e.status, Some(e.description.clone())),
    };
    tracing::debug!(target: "tradecast_standins::telegram", method = %method, status, "call");
    {
        let mut w = shared.lock();
        // The log is bounded: past the cap the oldest tenth goes.
        if w.calls.len() >= CALLS_MAX {
            w.calls.drain(..CALLS_MAX / 10);
        }
        w.calls.push(Call { method, params, status, description, at: Instant::now() });
    }
    shared.changed.notify_waiters();
    match result {
        Ok(v) => ok(v),
        Err(e) => e.into_response(),
    }
}

fn dispatch(shared: &Shared, w: &mut World, method: &str, p: &Params) -> Result<Value, ApiError> {
    match method {
        "getme" => Ok(w.bot_json()),
        "sendmessage" => send_message(shared, w, p),
        "sendphoto" => send_photo(shared, w, p),
        "editmessagetext" => edit_message_text(w, p),
        "editmessagereplymarkup" => edit_message_reply_markup(w, p),
        "deletemessage" => delete_message(w, p),
        "answercallbackquery" => answer_callback_query(w, p),
        "setwebhook" => set_webhook(w, p),
        "deletewebhook" => delete_webhook(w, p),
        "getwebhookinfo" => Ok(webhook_info(w)),
        "setmycommands" => set_my_commands(w, p),
        "getmycommands" => get_my_commands(w, p),
        "deletemycommands" => delete_my_commands(w, p),
        "createinvoicelink" => create_invoice_link(w, p),
        "answerprecheckoutquery" => answer_pre_checkout_query(w, p),
        "refundstarpayment" => refund_star_payment(w, p),
        "getstartransactions" => get_star_transactions(w, p),
        "edituserstarsubscription" => edit_user_star_subscription(w, p),
        "getchat" => get_chat(w, p),
        "getchatmember" => get_chat_member(w, p),
        "sendchataction" => send_chat_action(w, p),
        _ => Err(ApiError::not_found()),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared checks

/// Resolves `chat_id` (an integer or `@username`) to a chat the stand-in knows.
fn chat_id(w: &World, p: &Params) -> Result<i64, ApiError> {
    let Some(raw) = p.str("chat_id")? else {
        return Err(ApiError::bad("chat_id is empty"));
    };
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(ApiError::bad("chat_id is empty"));
    }
    let id = if let Some(name) = raw.strip_prefix('@') {
        w.chats
            .values()
            .find(|c| c.username.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(name)))
            .map(|c| c.id)
    } else {
        raw.parse::<i64>().ok()
    };
    match id {
        Some(id) if w.chat_kind(id).is_some() => Ok(id),
        _ => Err(ApiError::bad("chat not found")),
    }
}

/// A chat the bot may send to: a private chat its user opened and did not block, or a group or
/// channel.
fn writable(w: &World, id: i64) -> Result<(), ApiError> {
    if let Some(u) = w.users.get(&id) {
        if u.blocked {
            return Err(ApiError::forbidden("bot was blocked by the user"));
        }
        if !u.opened {
            return Err(ApiError::forbidden("bot can't initiate conversation with a user"));
        }
    }
    Ok(())
}

/// Text with its `parse_mode` or `entities`: (plain text, entities, parse_mode).
fn formatted(
    p: &Params,
    entities_field: &str,
    raw: &str,
) -> Result<(String, Vec<Value>, Option<String>), ApiError> {
    let mode = p.str("parse_mode")?.filter(|m| !m.is_empty());
    match mode.as_deref() {
        None => {
            let entities = match p.json(entities_field, "entities JSON object")? {
                None => Vec::new(),
                Some(Value::Array(a)) => a,
                Some(_) => return Err(ApiError::bad("can't parse entities JSON object")),
            };
            let len = raw.encode_utf16().count();
            for e in &entities {
                let (Some(_), Some(offset), Some(length)) =
                    (e["type"].as_str(), e["offset"].as_u64(), e["length"].as_u64())
                else {
                    return Err(ApiError::bad("can't parse MessageEntity"));
                };
                if usize::try_from(offset.saturating_add(length)).map_or(true, |end| end > len) {
                    return Err(ApiError::bad("entity beyond the end of the text"));
                }
            }
            Ok((raw.to_owned(), entities, None))
        }
        Some(m) if m.eq_ignore_ascii_case("html") => {
            let parsed = html::parse(raw)
                .map_err(|e| ApiError::bad(&format!("can't parse entities: {e}")))?;
            Ok((parsed.text, parsed.entities, Some(m.to_owned())))
        }
        Some(_) => Err(ApiError::bad("unsupported parse_mode")),
    }
}

/// The message text after entity parsing, 1–4096 characters.
fn message_text(p: &Params) -> Result<(String, Vec<Value>, Option<String>), ApiError> {
    let raw = p.str("text")?.unwrap_or_default();
    let (text, entities, mode) = formatted(p, "entities", &raw)?;
    if text.trim().is_empty() {
        return Err(ApiError::bad("message text is empty"));
    }
    if text.chars().count() > 4096 {
        return Err(ApiError::bad("message is too long"));
    }
    Ok((text, entities, mode))
}

const BUTTON_ACTIONS: &[&str] = &[
    "callback_data",
    "url",
    "login_url",
    "web_app",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
];

/// `reply_markup`: an inline keyboard is checked button by button; the reply keyboards are
/// accepted as objects.
fn reply_markup(p: &Params) -> Result<Option<Value>, ApiError> {
    let Some(m) = p.json("reply_markup", "reply keyboard markup JSON object")? else {
        return Ok(None);
    };
    if !m.is_object() {
        return Err(ApiError::bad("can't parse reply keyboard markup JSON object"));
    }
    if let Some(rows) = m.get("inline_keyboard") {
        let Some(rows) = rows.as_array() else {
            return Err(ApiError::bad(
                "field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays",
            ));
        };
        let mut n = 0usize;
        for row in rows {
            let Some(row) = row.as_array() else {
                return Err(ApiError::bad(
                    "field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays",
                ));
            };
            for b in row {
                n += 1;
                button(b)?;
            }
        }
        if n > 100 {
            return Err(ApiError::bad("too many inline keyboard buttons"));
        }
    } else if m.get("keyboard").is_none()
        && m.get("remove_keyboard").is_none()
        && m.get("force_reply").is_none()
    {
        return Err(ApiError::bad("can't parse reply keyboard markup JSON object"));
    }
    Ok(Some(m))
}

fn button(b: &Value) -> Result<(), ApiError> {
    let Some(obj) = b.as_object() else {
        return Err(ApiError::bad(
            "can't parse inline keyboard button: InlineKeyboardButton must be an Object",
        ));
    };
    match obj.get("text") {
        Some(Value::String(t)) if !t.is_empty() => {}
        Some(Value::String(_)) => return Err(ApiError::bad("text must be non-empty")),
        _ => {
            return Err(ApiError::bad(
                "can't parse inline keyboard button: Text of the button must be a String",
            ));
        }
    }
    let actions: Vec<&str> = BUTTON_ACTIONS
        .iter()
        .copied()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match actions.as_slice() {
        [] => Err(ApiError::bad("text buttons are unallowed in the inline keyboard")),
        ["callback_data"] => match &obj["callback_data"] {
            Value::String(d) if (1..=64).contains(&d.len()) => Ok(()),
            _ => Err(ApiError::bad("BUTTON_DATA_INVALID")),
        },
        ["url"] => match obj["url"].as_str() {
            Some(u) if valid_url(u) || u.starts_with("tg://") => Ok(()),
            _ => Err(ApiError::bad("BUTTON_URL_INVALID")),
        },
        // Telegram opens Web Apps from https addresses only.
        ["web_app"] => match obj["web_app"].get("url").and_then(Value::as_str) {
            Some(u) if u.starts_with("https://") && valid_url(u) => Ok(()),
            Some(u) => Err(ApiError::bad(&format!(
                "inline keyboard button Web App URL '{u}' is invalid: Only HTTPS links are allowed"
            ))),
            None => Err(ApiError::bad(
                "can't parse inline keyboard button: WebAppInfo must be an Object with a String url",
            )),
        },
        [_] => Ok(()),
        _ => Err(ApiError::bad(
            "can't parse inline keyboard button: exactly one of the optional fields must be used",
        )),
    }
}

fn valid_url(u: &str) -> bool {
    let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !r.contains(char::is_whitespace)
    })
}

fn int_required(p: &Params, name: &str) -> Result<i64, ApiError> {
    p.int(name)?.ok_or_else(|| ApiError::missing(name))
}

fn limited(shared: &Shared, w: &mut World, chat: i64) -> Result<(), ApiError> {
    let limits = *shared.limits.lock().unwrap_or_else(|e| e.into_inner());
    w.admit(&limits, chat, Instant::now()).map_err(ApiError::too_many)
}

// ---------------------------------------------------------------------------------------------
// Messages

/// `reply_parameters` (or the older `reply_to_message_id`) must name a message of the chat,
/// unless `allow_sending_without_reply`.
fn reply_target(w: &World, chat: i64, p: &Params) -> Result<(), ApiError> {
    let (id, lenient) = match p.json("reply_parameters", "reply parameters JSON object")? {
        Some(r) => {
            let id = r["message_id"]
                .as_i64()
                .ok_or_else(|| ApiError::bad("can't parse reply parameters JSON object"))?;
            (id, r["allow_sending_without_reply"].as_bool().unwrap_or(false))
        }
        None => match p.int("reply_to_message_id")? {
            Some(id) => (id, p.bool("allow_sending_without_reply")?.unwrap_or(false)),
            None => return Ok(()),
        },
    };
    let found = i32::try_from(id).ok().and_then(|id| w.message(chat, id)).is_some();
    if found || lenient { Ok(()) } else { Err(ApiError::bad("message to be replied not found")) }
}

fn send_message(shared: &Shared, w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let chat = chat_id(w, p)?;
    let (text, entities, parse_mode) = message_text(p)?;
    let markup = reply_markup(p)?;
    reply_target(w, chat, p)?;
    writable(w, chat)?;
    limited(shared, w, chat)?;
    let m = ChatMessage {
        chat_id: chat,
        message_id: w.next_message_id(chat),
        from_user: None,
        date: unix_now(),
        text: Some(text),
        parse_mode,
        entities,
        reply_markup: markup,
        photo: None,
        caption: None,
        edits: Vec::new(),
        deleted: false,
        successful_payment: None,
        edit_date: None,
    };
    let v = w.message_json(&m);
    w.messages.push(m);
    Ok(v)
}

/// Width and height of a PNG (from its IHDR chunk).
fn png_size(data: &[u8]) -> Option<(u32, u32)> {
    let w = data.get(16..20)?;
    let h = data.get(20..24)?;
    Some((
        u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
        u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
    ))
}

fn is_image(data: &[u8]) -> bool {
    data.starts_with(b"\x89PNG\r\n\x1a\n")
        || data.starts_with(&[0xFF, 0xD8, 0xFF])
        || data.starts_with(b"GIF8")
        || (data.starts_with(b"RIFF") && data.get(8..12) == Some(b"WEBP"))
}

fn send_photo(shared: &Shared, w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let chat = chat_id(w, p)?;
    let (width, height) = match (p.file("photo"), p.str("photo")?) {
        (Some(f), _) => {
            if f.data.is_empty() {
                return Err(ApiError::bad("file must be non-empty"));
            }
            if f.data.len() > 10 * 1024 * 1024 {
                return Err(ApiError::bad("file is too big"));
            }
            if !is_image(&f.data) {
                return Err(ApiError::bad("IMAGE_PROCESS_FAILED"));
            }
            png_size(&f.data).filter(|_| f.data.starts_with(b"\x89PNG")).unwrap_or((512, 512))
        }
        (None, Some(s)) if valid_url(&s) || w.files.contains(&s) => (512, 512),
        (None, Some(s)) if s.starts_with("attach://") => {
            return Err(ApiError::bad("there is no photo in the request"));
        }
        (None, Some(_)) => return Err(ApiError::bad("wrong file identifier/HTTP URL specified")),
        (None, None) => return Err(ApiError::bad("there is no photo in the request")),
    };
    let raw = p.str("caption")?.unwrap_or_default();
    let (caption, entities, parse_mode) = formatted(p, "caption_entities", &raw)?;
    if caption.chars().count() > 1024 {
        return Err(ApiError::bad("message caption is too long"));
    }
    let markup = reply_markup(p)?;
    reply_target(w, chat, p)?;
    writable(w, chat)?;
    limited(shared, w, chat)?;
    let file_id = format!("AgACAgIAAxk{}", random_token(40));
    w.files.push(file_id.clone());
    let photo = json!([{
        "file_id": file_id, "file_unique_id": format!("AQAD{}", random_token(12)),
        "width": width, "height": height,
    }]);
    let m = ChatMessage {
        chat_id: chat,
        message_id: w.next_message_id(chat),
        from_user: None,
        date: unix_now(),
        text: None,
        parse_mode,
        entities,
        reply_markup: markup,
        photo: Some(photo),
        caption: (!caption.is_empty()).then_some(caption),
        edits: Vec::new(),
        deleted: false,
        successful_payment: None,
        edit_date: None,
    };
    let v = w.message_json(&m);
    w.messages.push(m);
    Ok(v)
}

/// The bot's message to edit (`chat_id` + `message_id`; inline messages are not simulated).
fn editable(w: &World, p: &Params) -> Result<(i64, i32), ApiError> {
    if p.has("inline_message_id") && !p.has("chat_id") {
        return Err(ApiError::bad("message to edit not found"));
    }
    let chat = chat_id(w, p)?;
    let id = int_required(p, "message_id")?;
    let id = i32::try_from(id).map_err(|_| ApiError::bad("message to edit not found"))?;
    match w.message(chat, id) {
        Some(m) if m.from_user.is_none() => Ok((chat, id)),
        Some(_) => Err(ApiError::bad("message can't be edited")),
        None => Err(ApiError::bad("message to edit not found")),
    }
}

const NOT_MODIFIED: &str = "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";

fn edit_message_text(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let (chat, id) = editable(w, p)?;
    let (text, entities, parse_mode) = message_text(p)?;
    let markup = reply_markup(p)?;
    let m = w.message_mut(chat, id).ok_or_else(|| ApiError::bad("message to edit not found"))?;
    if m.text.is_none() {
        return Err(ApiError::bad("there is no text in the message to edit"));
    }
    if m.text.as_deref() == Some(text.as_str())
        && m.entities == entities
        && m.reply_markup == markup
    {
        return Err(ApiError::bad(NOT_MODIFIED));
    }
    m.text = Some(text.clone());
    m.entities = entities;
    m.parse_mode = parse_mode;
    m.reply_markup = markup.clone();
    m.edit_date = Some(unix_now());
    m.edits.push(Edit { text: Some(text), reply_markup: markup });
    let m = m.clone();
    Ok(w.message_json(&m))
}

fn edit_message_reply_markup(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let (chat, id) = editable(w, p)?;
    let markup = reply_markup(p)?;
    let m = w.message_mut(chat, id).ok_or_else(|| ApiError::bad("message to edit not found"))?;
    if m.reply_markup == markup {
        return Err(ApiError::bad(NOT_MODIFIED));
    }
    m.reply_markup = markup.clone();
    m.edit_date = Some(unix_now());
    let text = m.text.clone().or_else(|| m.caption.clone());
    m.edits.push(Edit { text, reply_markup: markup });
    let m = m.clone();
    Ok(w.message_json(&m))
}

fn delete_message(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let chat = chat_id(w, p)?;
    let id = int_required(p, "message_id")?;
    let id = i32::try_from(id).map_err(|_| ApiError::bad("message to delete not found"))?;
    match w.message_mut(chat, id) {
        Some(m) => {
            m.deleted = true;
            Ok(json!(true))
        }
        None => Err(ApiError::bad("message to delete not found")),
    }
}

fn answer_callback_query(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let id = p.str("callback_query_id")?.ok_or_else(|| ApiError::missing("callback_query_id"))?;
    let text = p.str("text")?;
    if text.as_ref().is_some_and(|t| t.chars().count() > 200) {
        return Err(ApiError::bad("MESSAGE_TOO_LONG"));
    }
    let show_alert = p.bool("show_alert")?.unwrap_or(false);
    if let Some(url) = p.str("url")?
        && !valid_url(&url)
        && !url.starts_with("t.me/")
    {
        return Err(ApiError::bad("URL_INVALID"));
    }
    let too_old =
        || ApiError::bad("query is too old and response timeout expired or query ID is invalid");
    let cb = w.callbacks.get_mut(&id).ok_or_else(too_old)?;
    if cb.answered {
        return Err(too_old());
    }
    cb.answered = true;
    let (user_id, data) = (cb.user_id, cb.data.clone());
    w.answered.push(AnsweredCallback { id, user_id, data, text, show_alert });
    Ok(json!(true))
}

// ---------------------------------------------------------------------------------------------
// Updates

const UPDATE_TYPES: &[&str] = &[
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
];

fn allowed_updates(p: &Params) -> Result<Option<Vec<String>>, ApiError> {
    let Some(v) = p.json("allowed_updates", "allowed updates JSON array")? else {
        return Ok(None);
    };
    let Some(a) = v.as_array() else {
        return Err(ApiError::bad("can't parse allowed updates JSON array"));
    };
    let mut out = Vec::new();
    for k in a {
        match k.as_str() {
            // Telegram ignores names it does not know; the stand-in refuses them so that a
            // misspelt type is found.
            Some(s) if UPDATE_TYPES.contains(&s) => out.push(s.to_owned()),
            _ => return Err(ApiError::bad(&format!("unknown update type {k} in allowed_updates"))),
        }
    }
    Ok(Some(out))
}

fn set_webhook(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let url = p.str("url")?.unwrap_or_default();
    let secret = p.str("secret_token")?.filter(|s| !s.is_empty());
    if let Some(s) = &secret
        && (s.len() > 256
            || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    {
        return Err(ApiError::bad("secret token contains unallowed characters"));
    }
    let max_connections = match p.int("max_connections")? {
        None => 40,
        Some(n @ 1..=100) => n as u16,
        Some(_) => {
            return Err(ApiError::bad("bad webhook: max_connections must be between 1 and 100"));
        }
    };
    let allowed = allowed_updates(p)?;
    let drop_pending = p.bool("drop_pending_updates")?.unwrap_or(false);
    if url.is_empty() {
        w.webhook = None;
    } else {
        if !valid_url(&url) {
            return Err(ApiError::bad("bad webhook: An HTTPS URL must be provided for webhook"));
        }
        w.webhook = Some(Webhook { url, secret, max_connections });
        w.last_error = None;
    }
    if let Some(a) = allowed {
        w.allowed_updates = Some(a);
    }
    if drop_pending {
        w.pending.clear();
    }
    // A long poll in progress ends (with 409) when a webhook is set.
    w.poll_generation += 1;
    Ok(json!(true))
}

fn delete_webhook(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    if p.bool("drop_pending_updates")?.unwrap_or(false) {
        w.pending.clear();
    }
    w.webhook = None;
    Ok(json!(true))
}

fn webhook_info(w: &World) -> Value {
    let mut v = json!({
        "url": w.webhook.as_ref().map(|h| h.url.clone()).unwrap_or_default(),
        "has_custom_certificate": false,
        "pending_update_count": w.pending.len(),
    });
    if let Some(h) = &w.webhook {
        v["max_connections"] = json!(h.max_connections);
        v["ip_address"] = json!("127.0.0.1");
        if let Some((at, msg)) = &w.last_error {
            v["last_error_date"] = json!(at);
            v["last_error_message"] = json!(msg);
        }
    }
    if let Some(a) = &w.allowed_updates {
        v["allowed_updates"] = json!(a);
    }
    v
}

const TERMINATED: &str =
    "terminated by other getUpdates request; make sure that only one bot instance is running";
const WEBHOOK_ACTIVE: &str = "can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";

/// `getUpdates`: confirms the updates before `offset`, then answers what is pending, waiting up
/// to `timeout` seconds (at most 50) for the first one.
async fn get_updates(shared: &Arc<Shared>, p: &Params) -> Result<Value, ApiError> {
    let offset = p.int("offset")?;
    let limit = usize::try_from(p.int("limit")?.unwrap_or(100).clamp(1, 100)).unwrap_or(100);
    let timeout = u64::try_from(p.int("timeout")?.unwrap_or(0).clamp(0, 50)).unwrap_or(0);
    let allowed = allowed_updates(p)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let generation = {
        let mut w = shared.lock();
        if w.webhook.is_some() {
            return Err(ApiError::conflict(WEBHOOK_ACTIVE));
        }
        if let Some(a) = allowed {
            w.allowed_updates = Some(a);
        }
        match offset {
            Some(o) if o < 0 => {
                let keep = usize::try_from(o.unsigned_abs()).unwrap_or(usize::MAX);
                while w.pending.len() > keep {
                    w.pending.pop_front();
                }
            }
            Some(o) => {
                let o = u64::try_from(o).unwrap_or(0);
                w.pending.retain(|u| u.update_id >= o);
            }
            None => {}
        }
        w.poll_generation += 1;
        w.poll_generation
    };
    shared.changed.notify_waiters();
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let w = shared.lock();
            if w.poll_generation != generation {
                return Err(ApiError::conflict(if w.webhook.is_some() {
                    WEBHOOK_ACTIVE
                } else {
                    TERMINATED
                }));
            }
            let out: Vec<Value> = w.pending.iter().take(limit).map(|u| u.body.clone()).collect();
            if !out.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(Value::Array(out));
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

/// The key commands are stored under: the scope and the language.
fn scope_key(w: &World, p: &Params) -> Result<String, ApiError> {
    let lang = p.str("language_code")?.unwrap_or_default();
    if !(lang.is_empty() || (lang.len() == 2 && lang.bytes().all(|b| b.is_ascii_lowercase()))) {
        return Err(ApiError::bad("invalid language code specified"));
    }
    let scope = match p.json("scope", "bot command scope JSON object")? {
        None => "default".to_owned(),
        Some(s) => {
            let kind = s["type"]
                .as_str()
                .ok_or_else(|| ApiError::bad("can't parse BotCommandScope JSON object"))?;
            match kind {
                "default" | "all_private_chats" | "all_group_chats" | "all_chat_administrators" => {
                    kind.to_owned()
                }
                "chat" | "chat_administrators" => {
                    let id = match &s["chat_id"] {
                        Value::Number(n) => n.as_i64(),
                        Value::String(s) => s.parse().ok(),
                        _ => None,
                    };
                    match id {
                        Some(id) if w.chat_kind(id).is_some() => format!("{kind}:{id}"),
                        _ => return Err(ApiError::bad("chat not found")),
                    }
                }
                "chat_member" => {
                    let chat = s["chat_id"].as_i64().filter(|id| w.chat_kind(*id).is_some());
                    let user = s["user_id"].as_i64().filter(|id| w.users.contains_key(id));
                    match (chat, user) {
                        (Some(c), Some(u)) => format!("chat_member:{c}:{u}"),
                        _ => return Err(ApiError::bad("chat not found")),
                    }
                }
                _ => return Err(ApiError::bad("unsupported bot command scope type")),
            }
        }
    };
    Ok(format!("{scope}|{lang}"))
}

fn set_my_commands(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let key = scope_key(w, p)?;
    let commands =
        p.json("commands", "commands JSON array")?.ok_or_else(|| ApiError::missing("commands"))?;
    let Some(list) = commands.as_array() else {
        return Err(ApiError::bad("can't parse commands JSON array"));
    };
    if list.len() > 100 {
        return Err(ApiError::bad("too many commands specified"));
    }
    let mut out = Vec::new();
    for c in list {
        let name = c["command"].as_str().unwrap_or("");
        let description = c["description"].as_str().unwrap_or("");
        if name.is_empty()
            || name.len() > 32
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(ApiError::bad("BOT_COMMAND_INVALID"));
        }
        let n = description.chars().count();
        if n == 0 || n > 256 {
            return Err(ApiError::bad("BOT_COMMAND_DESCRIPTION_INVALID"));
        }
        out.push(json!({"command": name, "description": description}));
    }
    if out.is_empty() {
        w.commands.remove(&key);
    } else {
        w.commands.insert(key, out);
    }
    Ok(json!(true))
}

fn get_my_commands(w: &World, p: &Params) -> Result<Value, ApiError> {
    let key = scope_key(w, p)?;
    Ok(Value::Array(w.commands.get(&key).cloned().unwrap_or_default()))
}

fn delete_my_commands(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let key = scope_key(w, p)?;
    w.commands.remove(&key);
    Ok(json!(true))
}

// ---------------------------------------------------------------------------------------------
// Stars payments

/// Telegram's only accepted subscription period (30 days).
const SUBSCRIPTION_PERIOD_S: i64 = 2_592_000;

fn create_invoice_link(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let title = p.str("title")?.ok_or_else(|| ApiError::missing("title"))?;
    let description = p.str("description")?.ok_or_else(|| ApiError::missing("description"))?;
    let payload = p.str("payload")?.ok_or_else(|| ApiError::missing("payload"))?;
    let currency = p.str("currency")?.ok_or_else(|| ApiError::missing("currency"))?;
    let n = title.chars().count();
    if n == 0 || n > 32 {
        return Err(ApiError::bad("INVOICE_TITLE_EMPTY"));
    }
    let n = description.chars().count();
    if n == 0 || n > 255 {
        return Err(ApiError::bad("INVOICE_DESCRIPTION_EMPTY"));
    }
    if payload.is_empty() || payload.len() > 128 {
        return Err(ApiError::bad("INVOICE_PAYLOAD_INVALID"));
    }
    if currency != "XTR" {
        return Err(ApiError::bad("CURRENCY_INVALID"));
    }
    if p.str("provider_token")?.is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad("PROVIDER_TOKEN_INVALID"));
    }
    let prices =
        p.json("prices", "prices JSON array")?.ok_or_else(|| ApiError::missing("prices"))?;
    let Some(prices) = prices.as_array() else {
        return Err(ApiError::bad("can't parse prices JSON array"));
    };
    let [price] = prices.as_slice() else {
        return Err(ApiError::bad("STARS_INVOICE_INVALID"));
    };
    let label_ok = price["label"].as_str().is_some_and(|l| !l.is_empty());
    let amount = price["amount"].as_i64().filter(|a| *a > 0).and_then(|a| u32::try_from(a).ok());
    let (true, Some(amount)) = (label_ok, amount) else {
        return Err(ApiError::bad("STARS_INVOICE_INVALID"));
    };
    let period = match p.int("subscription_period")? {
        None => None,
        Some(SUBSCRIPTION_PERIOD_S) => Some(SUBSCRIPTION_PERIOD_S as u64),
        Some(_) => return Err(ApiError::bad("SUBSCRIPTION_PERIOD_INVALID")),
    };
    if period.is_some() && p.has("business_connection_id") {
        return Err(ApiError::bad("BUSINESS_CONNECTION_INVALID"));
    }
    let link = format!("https://t.me/${}", random_token(22));
    w.invoices.push(Invoice {
        link: link.clone(),
        title,
        description,
        payload,
        amount,
        subscription_period: period,
    });
    Ok(json!(link))
}

fn answer_pre_checkout_query(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let id = p
        .str("pre_checkout_query_id")?
        .ok_or_else(|| ApiError::missing("pre_checkout_query_id"))?;
    let ok = p.bool("ok")?.ok_or_else(|| ApiError::missing("ok"))?;
    let error_message = p.str("error_message")?.filter(|m| !m.is_empty());
    if !ok && error_message.is_none() {
        return Err(ApiError::bad("ERROR_MESSAGE_EMPTY"));
    }
    let q = w.pre_checkouts.get_mut(&id).filter(|q| !q.expired && q.answer.is_none());
    let Some(q) = q else {
        return Err(ApiError::bad(
            "query is too old and response timeout expired or query ID is invalid",
        ));
    };
    q.answer = Some((ok, error_message));
    Ok(json!(true))
}

fn refund_star_payment(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let user = int_required(p, "user_id")?;
    let charge = p
        .str("telegram_payment_charge_id")?
        .ok_or_else(|| ApiError::missing("telegram_payment_charge_id"))?;
    if !w.users.contains_key(&user) {
        return Err(ApiError::bad("user not found"));
    }
    let pay = w.payments.iter_mut().find(|x| x.charge_id == charge && x.user_id == user);
    match pay {
        None => Err(ApiError::bad("CHARGE_ID_INVALID")),
        Some(x) if x.refunded => Err(ApiError::bad("CHARGE_ALREADY_REFUNDED")),
        Some(x) => {
            x.refunded = true;
            x.refunded_date = Some(unix_now());
            Ok(json!(true))
        }
    }
}

/// `editUserStarSubscription`: cancels (`is_canceled` true) or restores a user's subscription
/// paid by `telegram_payment_charge_id`; the charge must be that user's and a subscription's.
fn edit_user_star_subscription(w: &mut World, p: &Params) -> Result<Value, ApiError> {
    let user = int_required(p, "user_id")?;
    let charge = p
        .str("telegram_payment_charge_id")?
        .ok_or_else(|| ApiError::missing("telegram_payment_charge_id"))?;
    let canceled = p.bool("is_canceled")?.ok_or_else(|| ApiError::missing("is_canceled"))?;
    if !w.users.contains_key(&user) {
        return Err(ApiError::bad("user not found"));
    }
    match w.payments.iter_mut().find(|x| x.charge_id == charge && x.user_id == user) {
        Some(x) if x.subscription_period.is_some() => {
            x.subscription_canceled = canceled;
            Ok(json!(true))
        }
        _ => Err(ApiError::bad("CHARGE_ID_INVALID")),
    }
}

/// `getStarTransactions`: the bot's Star transactions in chronological order — each payment
/// from a user (`source`: a `user` partner with `invoice_payment`, its payload and
/// subscription period), and each refund (`receiver`: that user, the payment's id) — from
/// `offset`, at most `limit` (1-100, default 100).
fn get_star_transactions(w: &World, p: &Params) -> Result<Value, ApiError> {
    let offset = match p.int("offset")? {
        None => 0,
        Some(o) if o >= 0 => usize::try_from(o).unwrap_or(usize::MAX),
        Some(_) => return Err(ApiError::bad("offset must be non-negative")),
    };
    let limit = match p.int("limit")? {
        None => 100,
        Some(l) if (1..=100).contains(&l) => usize::try_from(l).unwrap_or(100),
        Some(_) => return Err(ApiError::bad("limit must be between 1 and 100")),
    };
    let mut all: Vec<(u64, u8, Value)> = Vec::new();
    for x in &w.payments {
        let partner = |with_period: bool| {
            let mut v = json!({
                "type": "user", "transaction_type": "invoice_payment",
                "user": w.user_json(x.user_id), "invoice_payload": x.payload,
            });
            if let (true, Some(period)) = (with_period, x.subscription_period) {
                v["subscription_period"] = json!(period);
            }
            v
        };
        all.push((
            x.date,
            0,
            json!({ "id": x.charge_id, "amount": x.amount, "date": x.date, "source": partner(true) }),
        ));
        if let Some(at) = x.refunded_date {
            all.push((
                at,
                1,
                json!({ "id": x.charge_id, "amount": x.amount, "date": at, "receiver": partner(false) }),
            ));
        }
    }
    all.sort_by_key(|(date, order, _)| (*date, *order));
    let page: Vec<Value> = all.into_iter().skip(offset).take(limit).map(|(_, _, v)| v).collect();
    Ok(json!({ "transactions": page }))
}

// ---------------------------------------------------------------------------------------------
// Chats

fn get_chat(w: &World, p: &Params) -> Result<Value, ApiError> {
    let id = chat_id(w, p)?;
    if w.users.get(&id).is_some_and(|u| !u.opened) {
        return Err(ApiError::bad("chat not found"));
    }
    let mut v = w.chat_json(id);
    v["accepted_gift_types"] = json!({
        "unlimited_gifts": false, "limited_gifts": false, "unique_gifts": false,
        "premium_subscription": false, "gifts_from_channels": false,
    });
    v["max_reaction_count"] = json!(11);
    v["accent_color_id"] = json!(0);
    Ok(v)
}

fn member_json(w: &World, user: i64, status: MemberStatus) -> Value {
    let u = w.user_json(user);
    match status {
        MemberStatus::Creator => json!({"status": "creator", "user": u, "is_anonymous": false}),
        MemberStatus::Administrator => json!({
            "status": "administrator", "user": u, "can_be_edited": false, "is_anonymous": false,
            "can_manage_chat": true, "can_delete_messages": true, "can_manage_video_chats": true,
            "can_restrict_members": true, "can_promote_members": false, "can_change_info": true,
            "can_invite_users": true, "can_post_stories": false, "can_edit_stories": false,
            "can_delete_stories": false, "can_send_welcome_messages": false,
        }),
        MemberStatus::Member => json!({"status": "member", "user": u}),
        MemberStatus::Left => json!({"status": "left", "user": u}),
        MemberStatus::Kicked => json!({"status": "kicked", "user": u, "until_date": 0}),
    }
}

fn get_chat_member(w: &World, p: &Params) -> Result<Value, ApiError> {
    let chat = chat_id(w, p)?;
    let user = int_required(p, "user_id")?;
    if !w.users.contains_key(&user) {
        return Err(ApiError::bad("user not found"));
    }
    let status = match w.chats.get(&chat) {
        Some(c) => c.members.get(&user).copied().unwrap_or(MemberStatus::Left),
        None if chat == user => MemberStatus::Member,
        None => return Err(ApiError::bad("user not found")),
    };
    Ok(member_json(w, user, status))
}

const CHAT_ACTIONS: &[&str] = &[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

fn send_chat_action(w: &World, p: &Params) -> Result<Value, ApiError> {
    let chat = chat_id(w, p)?;
    let action = p.str("action")?.ok_or_else(|| ApiError::missing("action"))?;
    if !CHAT_ACTIONS.contains(&action.as_str()) {
        return Err(ApiError::bad("wrong parameter action in request"));
    }
    writable(w, chat)?;
    Ok(json!(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_app_buttons_need_an_https_url() {
        let b = |v: Value| button(&v).map_err(|e| e.description);
        assert!(
            b(json!({"text": "Open", "web_app": {"url": "https://hub.example.com/miniapp"}}))
                .is_ok()
        );
        let http = b(json!({"text": "Open", "web_app": {"url": "http://hub.example.com/miniapp"}}));
        assert!(http.unwrap_err().contains("Only HTTPS links are allowed"));
        assert!(b(json!({"text": "Open", "web_app": {}})).is_err());
        assert!(b(json!({"text": "Open", "web_app": "https://x.y"})).is_err());
    }
}
