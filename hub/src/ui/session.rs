//! Console sessions: a random 256-bit token in an `HttpOnly; SameSite=Strict` cookie (`Secure`
//! when `public_url` is https), stored in SQL only as a hash (`console_sessions`, migration
//! 0050) with an absolute expiry (`console.session_ttl_s`); logout deletes the row. The CSRF
//! token of a session is derived from its token under another domain tag, so it needs no
//! storage and the table alone yields neither.
//!
//! Every request re-reads the account through `accounts::user_by_id` (what the bearer API's
//! `Authed` does): a disabled account's sessions end at once, and [`Console`] lets only a
//! current owner or admin through, so a demoted admin is refused on the next request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sqlx::Row;
use subtle::ConstantTimeEq;

use super::PageError;
use crate::accounts::{self, User};
use crate::db::{Db, DbError};
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "tc_hub_session";

/// A live session of an enabled account (any role: [`Console`] checks the role).
#[derive(Debug, Clone)]
pub struct Signed {
    /// The account, as stored now.
    pub user: User,
    /// The token forms and htmx send back (`csrf` field or `X-CSRF-Token`).
    pub csrf: String,
    token_hash: String,
}

/// What a request's cookie amounts to.
#[derive(Debug)]
pub enum Lookup {
    /// No session cookie.
    Absent,
    /// A cookie that is not (or no longer) a live session of an enabled account: expired,
    /// logged out, unknown, or the account was disabled or removed.
    Ended,
    /// A live session.
    Live(Signed),
}

fn token_hash(token: &str) -> String {
    crate::ids::sha256_hex(format!("tradecast/console-session/v1:{token}").as_bytes())
}

fn csrf_of(token: &str) -> String {
    crate::ids::sha256_hex(format!("tradecast/console-csrf/v1:{token}").as_bytes())
}

/// The value of cookie `name`, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Opens a session for `user_id` lasting `ttl_s`; returns the `Set-Cookie` value.
pub async fn open(state: &AppState, user_id: &str) -> Result<HeaderValue, DbError> {
    let token = crate::ids::random_hex(32);
    let now = state.now_ms();
    let ttl_s = state.config.console.session_ttl_s;
    let expires = now.saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX / 2000) * 1000);
    sqlx::query(
        "INSERT INTO console_sessions (token_hash, user_id, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash(&token))
    .bind(user_id)
    .bind(now)
    .bind(expires)
    .execute(state.db.pool())
    .await?;
    Ok(set_cookie(state, &format!("{COOKIE}={token}; Max-Age={ttl_s}")))
}

/// The `Set-Cookie` value that removes the session cookie from the browser.
pub fn clear_cookie(state: &AppState) -> HeaderValue {
    set_cookie(state, &format!("{COOKIE}=; Max-Age=0"))
}

fn set_cookie(state: &AppState, head: &str) -> HeaderValue {
    let secure = state.config.public_url.as_ref().is_some_and(|u| u.is_https());
    let value = format!(
        "{head}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    // Built from hex digits, digits and fixed ASCII only.
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""))
}

/// The session of `headers`' cookie, with the account read from the store now. An ended
/// session's row is deleted.
pub async fn lookup(state: &AppState, headers: &HeaderMap) -> Result<Lookup, DbError> {
    let Some(token) = cookie(headers, COOKIE) else { return Ok(Lookup::Absent) };
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Lookup::Ended);
    }
    let hash = token_hash(&token);
    let row =
        sqlx::query("SELECT user_id, expires_at_ms FROM console_sessions WHERE token_hash = $1")
            .bind(&hash)
            .fetch_optional(state.db.pool())
            .await?;
    let Some(row) = row else { return Ok(Lookup::Ended) };
    let user_id: String = row.try_get(0)?;
    let expires: i64 = row.try_get(1)?;
    let user = if expires > state.now_ms() {
        accounts::user_by_id(&state.db, &user_id).await?.filter(|u| u.disabled_at_ms.is_none())
    } else {
        None
    };
    match user {
        Some(user) => Ok(Lookup::Live(Signed { user, csrf: csrf_of(&token), token_hash: hash })),
        None => {
            close(&state.db, &hash).await?;
            Ok(Lookup::Ended)
        }
    }
}

/// Whether `signed`'s session is still live and its account still an enabled owner or admin
/// (what a long-lived stream checks as it goes: a sign-out, expiry, demotion or disabling ends it).
pub async fn still_console(state: &AppState, signed: &Signed) -> Result<bool, DbError> {
    let expires: Option<i64> =
        sqlx::query_scalar("SELECT expires_at_ms FROM console_sessions WHERE token_hash = $1")
            .bind(&signed.token_hash)
            .fetch_optional(state.db.pool())
            .await?;
    if expires.is_none_or(|e| e <= state.now_ms()) {
        return Ok(false);
    }
    Ok(accounts::user_by_id(&state.db, &signed.user.id)
        .await?
        .is_some_and(|u| u.role.is_admin() && u.disabled_at_ms.is_none()))
}

async fn close(db: &Db, token_hash: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Ends `signed`'s session (logout) and audits it, in one transaction.
pub async fn end(state: &AppState, signed: &Signed, request_id: &str) -> Result<(), DbError> {
    let mut tx = state.db.begin_write().await?;
    sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
        .bind(&signed.token_hash)
        .execute(&mut *tx)
        .await?;
    let entry = crate::audit::Entry {
        actor: &signed.user.id,
        action: "console.logout",
        subject: &signed.user.id,
        detail: serde_json::json!({}),
        request_id,
    };
    crate::audit::append(&mut tx, state.db.backend(), state.now_ms(), &entry).await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes the sessions expired at `now_ms` (the janitor; lookups delete the ones they meet).
pub async fn prune(db: &Db, now_ms: i64) -> Result<u64, DbError> {
    Ok(sqlx::query("DELETE FROM console_sessions WHERE expires_at_ms <= $1")
        .bind(now_ms)
        .execute(db.pool())
        .await?
        .rows_affected())
}

/// Whether the request carries `signed`'s CSRF token, in the `X-CSRF-Token` header (htmx) or
/// the form's `csrf` field.
pub fn csrf_ok(signed: &Signed, headers: &HeaderMap, field: Option<&str>) -> bool {
    let given = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).or(field).unwrap_or("");
    !given.is_empty() && bool::from(given.as_bytes().ct_eq(signed.csrf.as_bytes()))
}

/// A request of a signed-in owner or admin: the extractor of every console page.
///
/// Refused, as a page: no session → the login page (200; it comes back here after login); an
/// ended session → the login page saying so (401) and the cookie removed; another role → 403
/// "the console is for owners and admins"; over `rate_limits.per_account` → 429. A state-changing
/// handler still checks [`csrf_ok`] (the token may be in the form it parses).
#[derive(Debug, Clone)]
pub struct Console(pub Signed);

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(c) = parts.extensions.get::<Console>() {
            return Ok(c.clone());
        }
        let signed = signed_in(parts, state).await?;
        if !signed.user.role.is_admin() {
            return Err(super::login::not_for_you(&signed));
        }
        let console = Console(signed);
        parts.extensions.insert(console.clone());
        Ok(console)
    }
}

/// The live session of a request, refused as a page: no session → the login page (200 for a
/// page, 401 for an action; it comes back here after login); an ended session → the login page
/// saying so (401) and the cookie removed; over `rate_limits.per_account` → 429.
async fn signed_in(parts: &Parts, state: &AppState) -> Result<Signed, Response> {
    let next = super::login::next_of(&parts.uri);
    let signed = match lookup(state, &parts.headers).await {
        Ok(Lookup::Live(s)) => s,
        Ok(Lookup::Absent) => {
            let reading = matches!(parts.method, Method::GET | Method::HEAD);
            let status = if reading { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
            return Err(super::login::page(status, None, "", next.as_deref()));
        }
        Ok(Lookup::Ended) => {
            let mut resp = super::login::page(
                StatusCode::UNAUTHORIZED,
                Some("Your session has ended; sign in again."),
                "",
                next.as_deref(),
            );
            resp.headers_mut().insert(header::SET_COOKIE, clear_cookie(state));
            return Err(resp);
        }
        Err(e) => return Err(PageError::from(e).into_response()),
    };
    let key = format!("acct:{}", signed.user.id);
    if let Err(e) =
        crate::api::extract::enforce(state, &key, state.config.rate_limits.per_account).await
    {
        return Err(PageError(e).into_response());
    }
    Ok(signed)
}

/// A request of any signed-in account (the subscriber's pages: `/account`, the billing return).
/// Refused as [`Console`] refuses, except for the role.
#[derive(Debug, Clone)]
pub struct Member(pub Signed);

impl FromRequestParts<AppState> for Member {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(m) = parts.extensions.get::<Member>() {
            return Ok(m.clone());
        }
        let member = Member(signed_in(parts, state).await?);
        parts.extensions.insert(member.clone());
        Ok(member)
    }
}
