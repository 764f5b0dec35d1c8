//! Mini App sessions: a random 256-bit bearer token, stored only as a hash
//! (`miniapp_sessions`, migration 0024), ending 24 h after the initData's `auth_date` — never
//! later than the initData itself would be accepted. The CSRF token is derived from the token
//! under another domain tag (not stored; the table alone yields neither).
//!
//! A session belongs to a Telegram user. Its hub account is read from `telegram_links` on every
//! request ([`crate::telegram::link::of_telegram_user`], enabled accounts only), so an unlink,
//! a new link or a disabled account take effect on the next request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use sqlx::Row;
use subtle::ConstantTimeEq;

use super::init_data::{InitData, MAX_AGE_MS};
use crate::db::{Db, DbError};
use crate::error::ApiError;
use crate::state::AppState;
use crate::telegram::link::{self, Linked};

/// The header carrying the CSRF token of a session (every POST of the Mini App).
pub const CSRF_HEADER: &str = "x-csrf-token";

fn token_hash(token: &str) -> String {
    crate::ids::sha256_hex(format!("tradecast/miniapp-session/v1:{token}").as_bytes())
}

fn csrf_of(token: &str) -> String {
    crate::ids::sha256_hex(format!("tradecast/miniapp-csrf/v1:{token}").as_bytes())
}

/// A session just opened.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The bearer token (shown once, to the Mini App).
    pub token: String,
    /// When it ends, unix ms.
    pub expires_at_ms: i64,
}

/// Opens a session for the Telegram user of a validated initData.
pub async fn open(state: &AppState, data: &InitData) -> Result<Opened, DbError> {
    let token = crate::ids::random_hex(32);
    let expires_at_ms = data.auth_date_ms.saturating_add(MAX_AGE_MS);
    sqlx::query(
        "INSERT INTO miniapp_sessions (token_hash, telegram_user_id, auth_date_ms, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash(&token))
    .bind(data.telegram_user_id)
    .bind(data.auth_date_ms)
    .bind(state.now_ms())
    .bind(expires_at_ms)
    .execute(state.db.pool())
    .await?;
    Ok(Opened { token, expires_at_ms })
}

/// A live session, with its account as linked now.
#[derive(Debug, Clone)]
pub struct Mini {
    /// The Telegram user.
    pub telegram_user_id: i64,
    /// When the session ends, unix ms.
    pub expires_at_ms: i64,
    /// The CSRF token every action must carry (`X-CSRF-Token`).
    pub csrf: String,
    /// The hub account this Telegram user is linked to (an enabled one), if any.
    pub linked: Option<Linked>,
}

/// The bearer token of `headers` (`Authorization: Bearer <64 hex>`), if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// The live session of `headers`' bearer token: `Ok(None)` for none, an unknown one or an
/// ended one (whose row is deleted).
pub async fn lookup(state: &AppState, headers: &HeaderMap) -> Result<Option<Mini>, ApiError> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::Unauthenticated(
            "the Mini App's requests carry `Authorization: Bearer <token>` from POST /api/v1/miniapp/session"
                .into(),
        ));
    };
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let hash = token_hash(token);
    let row = sqlx::query(
        "SELECT telegram_user_id, expires_at_ms FROM miniapp_sessions WHERE token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(state.db.pool())
    .await
    .map_err(DbError::from)?;
    let Some(row) = row else { return Ok(None) };
    let telegram_user_id: i64 = row.try_get(0).map_err(DbError::from)?;
    let expires_at_ms: i64 = row.try_get(1).map_err(DbError::from)?;
    if expires_at_ms <= state.now_ms() {
        sqlx::query("DELETE FROM miniapp_sessions WHERE token_hash = $1")
            .bind(&hash)
            .execute(state.db.pool())
            .await
            .map_err(DbError::from)?;
        return Ok(None);
    }
    let linked = link::of_telegram_user(&state.db, telegram_user_id).await?;
    Ok(Some(Mini { telegram_user_id, expires_at_ms, csrf: csrf_of(token), linked }))
}

/// Whether `headers` carry `mini`'s CSRF token in `X-CSRF-Token` (compared in constant time).
pub fn csrf_ok(mini: &Mini, headers: &HeaderMap) -> bool {
    let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    !given.is_empty() && bool::from(given.as_bytes().ct_eq(mini.csrf.as_bytes()))
}

/// Deletes the sessions ended at `now_ms` (the janitor; lookups delete the ones they meet).
pub async fn prune(db: &Db, now_ms: i64) -> Result<u64, DbError> {
    Ok(sqlx::query("DELETE FROM miniapp_sessions WHERE expires_at_ms <= $1")
        .bind(now_ms)
        .execute(db.pool())
        .await?
        .rows_affected())
}

/// The extractor of every Mini App view and action: a live session by bearer token (never a
/// cookie: Telegram Web runs the app in a cross-site iframe). Refused as problem+json: no
/// bearer → 401 `unauthenticated`; an unknown or ended session → 401 `invalid-token`; over
/// `rate_limits.per_account` (per Telegram user) → 429; Telegram off → 404.
#[derive(Debug, Clone)]
pub struct Session(pub Mini);

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if !state.telegram.is_on() {
            return Err(super::off().into_response());
        }
        let mini = match lookup(state, &parts.headers).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(ApiError::InvalidToken.into_response()),
            Err(e) => return Err(e.into_response()),
        };
        let key = format!("tg:{}", mini.telegram_user_id);
        if let Err(e) =
            crate::api::extract::enforce(state, &key, state.config.rate_limits.per_account).await
        {
            return Err(e.into_response());
        }
        Ok(Session(mini))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_is_read_from_authorization_only() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "tma auth_date=1".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn the_csrf_token_is_derived_not_the_token_nor_its_hash() {
        let t = "ab".repeat(32);
        assert_ne!(csrf_of(&t), token_hash(&t));
        assert_ne!(csrf_of(&t), t);
        assert_eq!(csrf_of(&t).len(), 64);
    }
}
