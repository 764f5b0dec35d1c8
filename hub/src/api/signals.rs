//! `POST /api/v1/signals` (HMAC-authenticated ingest of provider-signed records, 32 KiB body
//! limit), `GET /api/v1/signals[/{id}]` for accounts, and `/api/v1/api-keys` where providers
//! create and revoke the keys that authenticate ingest.

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde::Deserialize;
use tradecast_protocol::link_auth::{self, RequestHeaders};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Authed, Json, Path, Provider, Query, RequestId, Require, enforce};
use crate::apikeys::{self, ApiKey, CreatedKey};
use crate::error::{ApiError, Problem};
use crate::signals::{self, IngestRules, Ingested, RecordBody, StoredSignal};
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let ingest = OpenApiRouter::new()
        .routes(routes!(post_signal))
        .layer(DefaultBodyLimit::max(state.config.http.signal_body_limit_bytes));
    OpenApiRouter::new()
        .merge(ingest)
        .routes(routes!(list_signals))
        .routes(routes!(get_signal))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

/// Post a provider-signed `Signal` record.
///
/// Authenticated by HMAC-SHA256 with a provider API key: headers `X-Tradecast-Key`,
/// `X-Tradecast-Timestamp` (unix ms, within 30 s), `X-Tradecast-Nonce` (16-64 of
/// `[A-Za-z0-9_-]`, single use) and `X-Tradecast-Signature` = lowercase hex of
/// HMAC-SHA256(secret, `POST\n/api/v1/signals\n<timestamp>\n<nonce>\n<hex sha256(body)>`).
/// 201 when stored, 200 with the stored signal when the identical record was already posted,
/// 409 when the id is taken by another record.
#[utoipa::path(post, path = "/api/v1/signals", tag = "signals", request_body = RecordBody, security(("hmac" = [])),
    params(
        ("X-Tradecast-Key" = String, Header, description = "API key id"),
        ("X-Tradecast-Timestamp" = String, Header, description = "unix ms"),
        ("X-Tradecast-Nonce" = String, Header, description = "16-64 characters of [A-Za-z0-9_-]"),
        ("X-Tradecast-Signature" = String, Header, description = "hex HMAC-SHA256"),
    ),
    responses(
    (status = 201, body = StoredSignal),
    (status = 200, description = "identical record already stored", body = StoredSignal),
    (status = 400, description = "malformed-json", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "missing-header, stale-timestamp, replayed-nonce, bad-signature, unknown-key, …", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "forbidden, device-refused or no-active-plan", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "signal-conflict", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "payload-too-large", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid-body, invalid-record or stale-signal", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "rate-limited", body = Problem, content_type = "application/problem+json"),
))]
async fn post_signal(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, axum::Json<StoredSignal>), ApiError> {
    let result = ingest(&state, &request_id, &method, &uri, &headers, body).await;
    if let Err(e) = &result {
        metrics::counter!(crate::telemetry::SIGNALS_REJECTED, "kind" => e.kind()).increment(1);
    }
    result
}

async fn ingest(
    state: &AppState,
    request_id: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, axum::Json<StoredSignal>), ApiError> {
    let body = body?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let auth = RequestHeaders {
        key: header(link_auth::HEADER_KEY),
        timestamp: header(link_auth::HEADER_TIMESTAMP),
        nonce: header(link_auth::HEADER_NONCE),
        signature: header(link_auth::HEADER_SIGNATURE),
    };
    let parsed = auth.parse().map_err(signals::auth_error)?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
    let now = state.now_ms();
    let provider = signals::authenticate(
        &state.db,
        &state.secrets.api_key_wrapping_key,
        &parsed,
        method.as_str(),
        path,
        &body,
        now,
    )
    .await?;
    enforce(state, &format!("sig:{}", parsed.key_id), state.config.rate_limits.signals_per_key)
        .await?;
    let content_type = header("content-type").unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let posted: RecordBody = serde_json::from_slice(&body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::MalformedJson(e.to_string())
        } else {
            ApiError::InvalidBody(e.to_string())
        }
    })?;
    let (bytes, record) = signals::decode_record(&posted)?;
    let rules = IngestRules {
        max_age_ms: i64::try_from(state.config.signals.max_age_ms).unwrap_or(60_000),
    };
    let ctx = signals::Ingest {
        db: &state.db,
        hub: &state.hub_identity,
        rules,
        now_ms: now,
        request_id,
        state,
    };
    match signals::ingest(&ctx, &provider, bytes, record).await? {
        // `ingest` broadcast it to this instance's sessions and told the others.
        Ingested::Created(s) => Ok((StatusCode::CREATED, axum::Json(s))),
        Ingested::Duplicate(s) => Ok((StatusCode::OK, axum::Json(s))),
    }
}

/// Listing bounds.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SignalFilter {
    /// At most this many, newest first (default 100, max 1000).
    pub limit: Option<i64>,
}

/// Signals visible to the caller: a provider's own, an entitled subscriber's providers', all
/// for admins.
#[utoipa::path(get, path = "/api/v1/signals", tag = "signals", params(SignalFilter), security(("bearer" = [])), responses(
    (status = 200, body = Vec<StoredSignal>),
    (status = 401, description = "unauthenticated", body = Problem, content_type = "application/problem+json"),
))]
async fn list_signals(
    State(state): State<AppState>,
    authed: Authed,
    Query(f): Query<SignalFilter>,
) -> Result<axum::Json<Vec<StoredSignal>>, ApiError> {
    let limit = f.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidParameter("limit must be 1..=1000".into()));
    }
    let ids =
        signals::list_ids(&state.db, &authed.user_id, authed.role, state.now_ms(), limit).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some((s, _)) = signals::stored_by_id(&state.db, &state.hub_identity, &id).await? {
            out.push(s);
        }
    }
    Ok(axum::Json(out))
}

/// One signal, if visible to the caller.
#[utoipa::path(get, path = "/api/v1/signals/{id}", tag = "signals",
    params(("id" = String, Path, description = "signal id, 32 hex digits")), security(("bearer" = [])), responses(
    (status = 200, body = StoredSignal),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn get_signal(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<axum::Json<StoredSignal>, ApiError> {
    let visible =
        signals::list_ids(&state.db, &authed.user_id, authed.role, state.now_ms(), 1_000_000)
            .await?
            .contains(&id);
    let not_found = || ApiError::NotFound(format!("no signal {id}"));
    if !visible {
        return Err(not_found());
    }
    signals::stored_by_id(&state.db, &state.hub_identity, &id)
        .await?
        .map(|(s, _)| axum::Json(s))
        .ok_or_else(not_found)
}

/// A new API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Up to 64 characters.
    #[serde(default)]
    pub label: String,
}

/// Create an API key for the signals API; the secret is shown once.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "signals", request_body = NewKey, security(("bearer" = [])), responses(
    (status = 201, body = CreatedKey),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
))]
async fn create_key(
    State(state): State<AppState>,
    Require(authed, ..): Provider,
    Json(req): Json<NewKey>,
) -> Result<(StatusCode, axum::Json<CreatedKey>), ApiError> {
    let k = apikeys::create(
        &state.db,
        &state.secrets.api_key_wrapping_key,
        state.now_ms(),
        &authed.user_id,
        &req.label,
        &authed.request_id,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(k)))
}

/// The caller's API keys (never their secrets).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "signals", security(("bearer" = [])), responses(
    (status = 200, body = Vec<ApiKey>),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
))]
async fn list_keys(
    State(state): State<AppState>,
    Require(authed, ..): Provider,
) -> Result<axum::Json<Vec<ApiKey>>, ApiError> {
    Ok(axum::Json(apikeys::list(&state.db, &authed.user_id).await?))
}

/// Revoke an API key.
#[utoipa::path(post, path = "/api/v1/api-keys/{id}/revoke", tag = "signals",
    params(("id" = String, Path, description = "key id")), security(("bearer" = [])), responses(
    (status = 204, description = "revoked"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn revoke_key(
    State(state): State<AppState>,
    Require(authed, ..): Provider,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    apikeys::revoke(&state.db, state.now_ms(), &authed.user_id, &id, &authed.request_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
