//! `POST /api/v1/miniapp/session`: the Mini App exchanges its raw initData
//! (`Authorization: tma <initData>`, body ignored) for a bearer session (system.md, "Names fixed
//! now"). 201 `{token, expires_at_ms, telegram_user_id, linked, link_url?}`; 401
//! `missing-header` or `invalid-init-data`; 404 when Telegram is off on this hub. The same
//! initData may be exchanged again (a reload): each exchange is a new session ending at the same
//! instant. Under the per-IP limit of every `/api` route.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;

use super::init_data::{self, Validator};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

pub(crate) fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(open_session))
}

/// The session route's path.
pub const SESSION_PATH: &str = "/api/v1/miniapp/session";

/// A Mini App session.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct SessionAnswer {
    /// The bearer token of the Mini App's requests (`Authorization: Bearer <token>`).
    pub token: String,
    /// When the session ends (24 h after the initData's `auth_date`), unix ms.
    pub expires_at_ms: i64,
    /// The Telegram user the initData is for.
    pub telegram_user_id: i64,
    /// Whether that Telegram user is linked to an (enabled) hub account.
    pub linked: bool,
    /// For an unlinked user: the hub page where linking starts (sign in, then "Link Telegram").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_url: Option<String>,
}

/// The hub page where an account links its Telegram user.
pub fn link_url(state: &AppState) -> String {
    match &state.config.public_url {
        Some(u) => format!("{}/account#telegram", u.as_str()),
        None => "/account#telegram".into(),
    }
}

/// The validator for this hub's bot, or why there is none (Telegram off: 404).
pub fn validator(state: &AppState) -> Result<Validator, ApiError> {
    let Some(token) = state.telegram.token().filter(|_| state.telegram.is_on()) else {
        return Err(super::off());
    };
    let key = init_data::public_key(state.config.telegram.miniapp_public_key.as_deref())
        .map_err(ApiError::internal)?;
    Validator::new(token.expose_secret(), key).map_err(ApiError::internal)
}

/// Exchanges Telegram's initData for a Mini App session.
#[utoipa::path(
    post,
    path = "/api/v1/miniapp/session",
    tag = "miniapp",
    params(("Authorization" = String, Header, description = "`tma <initData>`: the raw `Telegram.WebApp.initData` string")),
    responses(
        (status = 201, description = "A session (linked or not)", body = SessionAnswer),
        (status = 401, description = "`missing-header` (no `Authorization: tma …`) or `invalid-init-data` (hash, signature, age or shape)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Telegram is not set up on this hub", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited (per IP)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn open_session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<(StatusCode, axum::Json<SessionAnswer>), ApiError> {
    let validator = validator(&state)?;
    let raw = tma(&headers)?;
    let data = validator.validate(raw, state.now_ms()).map_err(|e| {
        metrics::counter!("tradecast_miniapp_sessions_total", "outcome" => e.code()).increment(1);
        tracing::info!(target: "tradecast_hub::miniapp", reason = e.code(), "initData refused");
        ApiError::InvalidInitData(e.to_string())
    })?;
    let opened = super::session::open(&state, &data).await?;
    let linked =
        crate::telegram::link::of_telegram_user(&state.db, data.telegram_user_id).await?.is_some();
    metrics::counter!("tradecast_miniapp_sessions_total", "outcome" => "opened").increment(1);
    Ok((
        StatusCode::CREATED,
        axum::Json(SessionAnswer {
            token: opened.token,
            expires_at_ms: opened.expires_at_ms,
            telegram_user_id: data.telegram_user_id,
            linked,
            link_url: (!linked).then(|| link_url(&state)),
        }),
    ))
}

/// The initData of `Authorization: tma <initData>`.
fn tma(headers: &HeaderMap) -> Result<&str, ApiError> {
    let missing = || ApiError::MissingHeader("Authorization: tma <initData>");
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::InvalidInitData("initData is malformed: not ASCII".into()))?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("tma") {
        return Err(missing());
    }
    Ok(rest.trim())
}
