//! `/api/v1/auth/*`: login (email + password → access JWT + refresh token), refresh (rotates),
//! logout (revokes the refresh family), the JWK set, and `/api/v1/me`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Authed, ClientIp, Json, RequestId, enforce};
use crate::accounts::{self, User};
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::tokens::Jwk;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(jwks))
        .routes(routes!(me))
}

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Account email.
    pub email: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// A refresh token presented back.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from login or the last refresh.
    pub refresh_token: String,
}

/// Tokens issued at login and refresh.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// EdDSA JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// When the access token expires, unix ms.
    pub expires_at_ms: i64,
    /// Single-use refresh token.
    pub refresh_token: String,
    /// When the refresh token expires, unix ms.
    pub refresh_expires_at_ms: i64,
}

/// The JWK set.
#[derive(Debug, Serialize, ToSchema)]
pub struct Jwks {
    /// Public keys by `kid`.
    pub keys: Vec<Jwk>,
}

/// A new login's tokens for `user`: an access token and a fresh refresh-token family.
pub(crate) async fn new_login(state: &AppState, user: &User) -> Result<TokenResponse, ApiError> {
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let refresh =
        accounts::issue_refresh(&mut tx, &state.config.auth, now, &user.id, &crate::ids::new_id())
            .await?;
    tx.commit().await.map_err(crate::db::DbError::from)?;
    tokens(state, user, refresh)
}

fn tokens(
    state: &AppState,
    user: &User,
    refresh: accounts::IssuedRefresh,
) -> Result<TokenResponse, ApiError> {
    let (access_token, expires_at_ms) = state.jwt.issue(
        &user.id,
        user.role,
        state.now_ms(),
        state.config.auth.access_token_ttl_s,
    )?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_at_ms,
        refresh_token: refresh.token,
        refresh_expires_at_ms: refresh.expires_at_ms,
    })
}

/// Log in with email and password.
///
/// Failed attempts per email are throttled: after a few, each further attempt must wait a
/// doubling delay (429 `login-throttled`), and after more the account is locked for a while
/// (423 `account-locked`), both with `Retry-After`.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "invalid-credentials", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid-body", body = Problem, content_type = "application/problem+json"),
    (status = 423, description = "account-locked", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "rate-limited or login-throttled", body = Problem, content_type = "application/problem+json"),
))]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    RequestId(request_id): RequestId,
    Json(req): Json<LoginRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    enforce(&state, &format!("login:{ip}"), state.config.rate_limits.login_per_ip).await?;
    let now = state.now_ms();
    let user = accounts::login(
        &state.db,
        &state.config.auth,
        now,
        &req.email,
        &req.password,
        &ip.to_string(),
        &request_id,
    )
    .await?;
    Ok(axum::Json(new_login(&state, &user).await?))
}

/// Exchange a refresh token for new tokens. The presented token is consumed; presenting it again
/// revokes every token of its family.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, description = "invalid-refresh-token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "account-disabled", body = Problem, content_type = "application/problem+json"),
))]
async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    RequestId(request_id): RequestId,
    Json(req): Json<RefreshRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    enforce(&state, &format!("login:{ip}"), state.config.rate_limits.login_per_ip).await?;
    let (user, next) = accounts::rotate_refresh(
        &state.db,
        &state.config.auth,
        state.now_ms(),
        &req.refresh_token,
        &request_id,
    )
    .await?;
    Ok(axum::Json(tokens(&state, &user, next)?))
}

/// Revoke a refresh token and every token rotated from the same login.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    security(("bearer" = [])), responses(
    (status = 204, description = "revoked"),
    (status = 401, description = "unauthenticated", body = Problem, content_type = "application/problem+json"),
))]
async fn logout(
    State(state): State<AppState>,
    authed: Authed,
    Json(req): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    accounts::revoke_refresh(
        &state.db,
        state.now_ms(),
        &authed.user_id,
        &req.refresh_token,
        &authed.request_id,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Public keys that verify access tokens, by `kid`.
#[utoipa::path(get, path = "/api/v1/auth/jwks.json", tag = "auth", responses((status = 200, body = Jwks)))]
async fn jwks(State(state): State<AppState>) -> axum::Json<Jwks> {
    axum::Json(Jwks { keys: state.jwt.jwks().to_vec() })
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 401, description = "unauthenticated, invalid-token or token-expired", body = Problem, content_type = "application/problem+json"),
))]
async fn me(State(state): State<AppState>, authed: Authed) -> Result<axum::Json<User>, ApiError> {
    accounts::user_by_id(&state.db, &authed.user_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound("account no longer exists".into()))
}
