//! `POST /api/v1/telegram/webhook`: Telegram's updates, checked by the secret token it sends
//! in `X-Telegram-Bot-Api-Secret-Token` (compared in constant time), deduplicated by
//! `update_id` in the transaction that applies them. Answers (system.md): 200 applied or
//! duplicate; 401 `unauthenticated` for a missing or wrong secret (nothing processed); 400
//! `malformed-json`; 413 past 256 KiB; 422 `invalid-body` for JSON that is not an update.
//!
//! The same [`apply`] serves polling mode (`getUpdates`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use frankenstein::payments::PreCheckoutQuery;
use frankenstein::types::{CallbackQuery, Message};
use serde::Serialize;
use serde_json::Value;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::commands::{self, Step};
use crate::api::extract::RequestId;
use crate::db::DbError;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

pub(crate) fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(webhook))
        .layer(axum::extract::DefaultBodyLimit::max(crate::billing::api::WEBHOOK_BODY_LIMIT))
}

/// The webhook's path.
pub const WEBHOOK_PATH: &str = "/api/v1/telegram/webhook";

/// The header Telegram sends the secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// What the hub did with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Applied (its replies are queued).
    Applied,
    /// Seen before: nothing done.
    Duplicate,
    /// An update kind the bot does not follow: recorded, nothing else.
    Ignored,
}

/// The webhook's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAnswer {
    /// What happened.
    pub outcome: Outcome,
}

/// Applies one update (webhook or polling).
pub async fn apply(
    state: &AppState,
    update: &Value,
    request_id: &str,
) -> Result<Outcome, ApiError> {
    let Some(update_id) = update.get("update_id").and_then(Value::as_i64) else {
        return Err(ApiError::InvalidBody("an update needs an integer `update_id`".into()));
    };
    let Some(obj) = update.as_object() else {
        return Err(ApiError::InvalidBody("an update is a JSON object".into()));
    };
    let kind = obj.keys().find(|k| *k != "update_id").map_or("none", String::as_str).to_owned();
    let kind = if kind.len() > 64 { "other".to_owned() } else { kind };
    // A delivery seen before answers at once (the insert below decides races).
    let seen: Option<i64> =
        sqlx::query_scalar("SELECT update_id FROM telegram_updates WHERE update_id = $1")
            .bind(update_id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(DbError::from)?;
    if seen.is_some() {
        metrics::counter!("tradecast_telegram_updates_total", "outcome" => "duplicate")
            .increment(1);
        return Ok(Outcome::Duplicate);
    }
    let step = match kind.as_str() {
        "message" => {
            let msg: Message = serde_json::from_value(update["message"].clone())
                .map_err(|e| ApiError::InvalidBody(format!("message: {e}")))?;
            match &msg.successful_payment {
                // A Stars payment: into the ledger first (idempotent by its charge id), then
                // the update is recorded below; a crash between the two only repeats a no-op.
                Some(p) => {
                    let payer =
                        msg.from.as_ref().and_then(|u| i64::try_from(u.id).ok()).unwrap_or(0);
                    let applied =
                        crate::billing::stars_door::apply_payment(state, p, payer, request_id)
                            .await?;
                    let text = match applied {
                        Some(_) => {
                            "⭐ Payment received, thank you: your plan is active. /plan shows it."
                        }
                        None => "This payment is not for a plan of this hub.",
                    };
                    let chat = msg.chat.id;
                    Some(Step::Reply(vec![(chat, super::notify::html(chat, text.into(), false))]))
                }
                None => Some(commands::decide_message(state, &msg).await?),
            }
        }
        "pre_checkout_query" => {
            let q: PreCheckoutQuery = serde_json::from_value(update["pre_checkout_query"].clone())
                .map_err(|e| ApiError::InvalidBody(format!("pre_checkout_query: {e}")))?;
            let answer = crate::billing::stars_door::check(state, &q).await?;
            Some(Step::PreCheckout {
                params: crate::billing::stars_door::answer_params(&q.id, &answer),
            })
        }
        "callback_query" => {
            let q: CallbackQuery = serde_json::from_value(update["callback_query"].clone())
                .map_err(|e| ApiError::InvalidBody(format!("callback_query: {e}")))?;
            Some(commands::decide_callback(state, &q).await?)
        }
        _ => None,
    };
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let fresh = sqlx::query(
        "INSERT INTO telegram_updates (update_id, kind, received_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (update_id) DO NOTHING",
    )
    .bind(update_id)
    .bind(&kind)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?
    .rows_affected()
        == 1;
    if !fresh {
        tx.rollback().await.map_err(DbError::from)?;
        metrics::counter!("tradecast_telegram_updates_total", "outcome" => "duplicate")
            .increment(1);
        return Ok(Outcome::Duplicate);
    }
    if let Some(from) = sender(update, &kind) {
        super::link::clear_blocked_in(&mut tx, from).await?;
    }
    let outcome = match step {
        Some(step) => {
            let queued = !matches!(step, Step::Nothing);
            let (_, rung) = commands::apply_in(
                &mut tx,
                state.db.backend(),
                &state.hub_identity,
                step,
                update_id,
                now,
                request_id,
            )
            .await?;
            tx.commit().await.map_err(DbError::from)?;
            if queued {
                crate::outbox::wake(state);
            }
            // A press made a hub-signed request: wake the device's sync session (any instance).
            for (device, seq) in &rung {
                crate::approvals::after_commit(state, device, *seq);
            }
            Outcome::Applied
        }
        None => {
            tx.commit().await.map_err(DbError::from)?;
            Outcome::Ignored
        }
    };
    let label = match outcome {
        Outcome::Applied => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::Ignored => "ignored",
    };
    metrics::counter!("tradecast_telegram_updates_total", "outcome" => label).increment(1);
    Ok(outcome)
}

/// The Telegram user an update comes from, for the kinds a person sends.
fn sender(update: &Value, kind: &str) -> Option<i64> {
    update.get(kind)?.get("from")?.get("id")?.as_i64()
}

/// Receives Telegram's updates.
#[utoipa::path(
    post,
    path = "/api/v1/telegram/webhook",
    tag = "telegram",
    request_body(content = Object, description = "A Telegram `Update`", content_type = "application/json"),
    params(("X-Telegram-Bot-Api-Secret-Token" = String, Header, description = "The secret set with setWebhook")),
    responses(
        (status = 200, description = "Applied, duplicate or ignored", body = WebhookAnswer),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong secret token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The bot is not configured on this hub", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON that is not an update (no integer `update_id`, or a message Telegram would not send)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn webhook(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, axum::Json<WebhookAnswer>), ApiError> {
    let body = body?;
    let Some(secret) = state.telegram.webhook_secret() else {
        return Err(ApiError::NotConfigured("the Telegram webhook (telegram_webhook_secret)"));
    };
    let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    use secrecy::ExposeSecret;
    let ok: bool = given.ct_eq(secret.expose_secret().as_bytes()).into();
    if !ok {
        metrics::counter!("tradecast_telegram_updates_total", "outcome" => "unauthenticated")
            .increment(1);
        return Err(ApiError::Unauthenticated(
            "missing or wrong X-Telegram-Bot-Api-Secret-Token".into(),
        ));
    }
    let update: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let outcome = apply(&state, &update, &request_id).await?;
    Ok((StatusCode::OK, axum::Json(WebhookAnswer { outcome })))
}
