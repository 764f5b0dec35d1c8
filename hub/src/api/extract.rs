//! Extractors: JSON bodies and path parameters whose rejections are problem+json, the request
//! id, the client address, and the bearer-token identity with role guards
//! ([`Authed`], [`Admin`], [`Owner`], [`Provider`]). The per-account rate limit is taken here,
//! once per authenticated request.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::accounts::Role;
use crate::error::ApiError;
use crate::ratelimit::Decision;
use crate::state::AppState;

/// A JSON body; a rejection is a problem (400 malformed, 422 wrong shape or a NUL character in
/// any string, 413, 415).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await?;
        if has_nul_escape(&bytes) {
            return Err(ApiError::Validation(NUL_REFUSED.into()));
        }
        axum::Json::<T>::from_bytes(&bytes).map(|axum::Json(v)| Json(v)).map_err(ApiError::from)
    }
}

/// Why text holding U+0000 is refused: no text column (PostgreSQL's least of all) stores it, and
/// no field of ours has a use for it.
const NUL_REFUSED: &str = "text must not contain the NUL character (U+0000)";

/// `application/json` or any `application/*+json`, parameters ignored (as axum's `Json`).
fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE) else { return false };
    let Ok(value) = value.to_str() else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json"
        || essence.strip_prefix("application/").is_some_and(|sub| sub.ends_with("+json"))
}

/// Whether a JSON text holds the escape `\u0000` (the only way a JSON string can carry NUL: the
/// raw byte is not valid JSON). An escape is a backslash preceded by an even run of backslashes.
pub fn has_nul_escape(json: &[u8]) -> bool {
    let mut backslashes = 0usize;
    for (i, &b) in json.iter().enumerate() {
        if b == b'\\' {
            backslashes += 1;
            continue;
        }
        if b == b'u' && backslashes % 2 == 1 && json.get(i + 1..i + 5) == Some(b"0000".as_slice()) {
            return true;
        }
        backslashes = 0;
    }
    false
}

/// Whether a raw (still percent-encoded) path or query holds an encoded NUL.
fn has_encoded_nul(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| w == b"%00")
}

/// Path parameters; a rejection is a 400 `invalid-parameter` problem.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if has_encoded_nul(parts.uri.path()) {
            return Err(ApiError::InvalidParameter(NUL_REFUSED.into()));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(ApiError::from)
    }
}

/// Query parameters; a rejection is a 400 `invalid-parameter` problem.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if has_encoded_nul(parts.uri.query().unwrap_or_default()) {
            return Err(ApiError::InvalidParameter(NUL_REFUSED.into()));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(ApiError::from)
    }
}

/// The request id (set by the edge before any handler runs).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(RequestId(request_id_of(parts)))
    }
}

/// The request id of `parts`, or `-` when absent.
pub fn request_id_of(parts: &Parts) -> String {
    parts
        .headers
        .get(crate::http::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

/// The peer's IP address.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// The peer IP, or unspecified when served without connect info (router-only tests).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// A caller authenticated by a valid access token.
#[derive(Debug, Clone)]
pub struct Authed {
    /// Account id.
    pub user_id: String,
    /// The account's current role (read from the store on every request).
    pub role: Role,
    /// The request id, for audit entries.
    pub request_id: String,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(a) = parts.extensions.get::<Authed>() {
            return Ok(a.clone());
        }
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthenticated("missing Authorization: Bearer token".into())
        })?;
        let token =
            header.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")).ok_or_else(|| {
                ApiError::Unauthenticated("Authorization must be `Bearer <token>`".into())
            })?;
        let claims = state.jwt.verify(token.trim(), state.now_ms())?;
        let rule = state.config.rate_limits.per_account;
        let key = format!("acct:{}", claims.sub);
        enforce(state, &key, rule).await?;
        // The stored account decides, not the token: a disabled account or a changed role takes
        // effect at once, not when the token expires.
        let user = crate::accounts::user_by_id(&state.db, &claims.sub)
            .await?
            .ok_or(ApiError::InvalidToken)?;
        if user.disabled_at_ms.is_some() {
            return Err(ApiError::AccountDisabled);
        }
        let authed = Authed { user_id: user.id, role: user.role, request_id: request_id_of(parts) };
        parts.extensions.insert(authed.clone());
        Ok(authed)
    }
}

/// Takes a token from bucket `key`; a Redis failure lets the request through (logged, counted).
pub async fn enforce(
    state: &AppState,
    key: &str,
    rule: crate::config::BucketConfig,
) -> Result<(), ApiError> {
    match state.limiter.check(key, rule, state.now_ms()).await {
        Ok(Decision::Allowed) => Ok(()),
        Ok(Decision::Limited { retry_after_ms }) => {
            Err(ApiError::RateLimited { retry_after_s: retry_after_ms.div_ceil(1000) })
        }
        Err(e) => {
            metrics::counter!(crate::telemetry::RATE_LIMIT_ERRORS).increment(1);
            tracing::error!(error = %e, "rate limiter unavailable; request let through");
            Ok(())
        }
    }
}

/// A set of roles a guard accepts.
pub trait RoleSet: Send + Sync {
    /// Whether `role` is in the set.
    fn allows(role: Role) -> bool;
    /// For the 403 message.
    const NAME: &'static str;
}

/// Owners only.
#[derive(Debug)]
pub struct Owners;
impl RoleSet for Owners {
    fn allows(role: Role) -> bool {
        role == Role::Owner
    }
    const NAME: &'static str = "owner";
}

/// Owners and admins.
#[derive(Debug)]
pub struct Admins;
impl RoleSet for Admins {
    fn allows(role: Role) -> bool {
        role.is_admin()
    }
    const NAME: &'static str = "owner or admin";
}

/// Providers only.
#[derive(Debug)]
pub struct Providers;
impl RoleSet for Providers {
    fn allows(role: Role) -> bool {
        role == Role::Provider
    }
    const NAME: &'static str = "provider";
}

/// An authenticated caller whose role is in `R`; otherwise 403 `forbidden`.
#[derive(Debug)]
pub struct Require<R: RoleSet>(pub Authed, pub PhantomData<R>);

impl<R: RoleSet> FromRequestParts<AppState> for Require<R> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let a = Authed::from_request_parts(parts, state).await?;
        if !R::allows(a.role) {
            return Err(ApiError::Forbidden(format!("this needs the {} role", R::NAME)));
        }
        Ok(Require(a, PhantomData))
    }
}

/// Owner.
pub type Owner = Require<Owners>;
/// Owner or admin.
pub type Admin = Require<Admins>;
/// Provider.
pub type Provider = Require<Providers>;
