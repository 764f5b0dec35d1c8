//! The device-authenticated billing read: a node shows its trader's plan without a hub password.
//!
//! `GET /api/v1/devices/{id}/billing` carries `Authorization: Tradecast-Device ts=…,sig=…`, the
//! device's identity key's Ed25519 signature over `"GET\n{path}\n{ts}"`
//! ([`tradecast_protocol::device_link::sign_request`], its own domain tag, 5 minutes of
//! freshness). It is not single-use: a replay within the window reads the same answer again,
//! acceptable because the route changes nothing and answers only the device's own account.
//! The answer is the account's subscriptions, the plans on offer, whether Stripe sells, and the
//! hub's `public_url` (the base the node signs its device links under).

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use serde::Serialize;
use tradecast_protocol::device_link::{self, RequestAuthError};
use tradecast_protocol::{DeviceId, IdentityKey};
use utoipa::ToSchema;

use super::api::{Offer, offers};
use super::ledger::{self, Door, Status};
use crate::api::extract::Path;
use crate::db::DbError;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// One subscription of the device's account, as the node shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceSubscription {
    /// The plan's id.
    pub plan_id: String,
    /// The plan's name (empty when the plan is gone).
    pub plan_name: String,
    /// Its state.
    pub status: Status,
    /// Its state in words for the subscriber ("active", "payment failed: grace period", …).
    pub status_words: String,
    /// Where it was bought (`stripe`: the portal manages it).
    pub door: Door,
    /// The current period's end: the renewal date, or the end when it is set to cancel.
    pub current_period_end_ms: i64,
    /// Set to end at the period's end (no renewal).
    pub cancel_at_period_end: bool,
    /// The trial's end, if it has one.
    pub trial_end_ms: Option<i64>,
    /// The end of what is paid for (grace included): the entitlement reaches here.
    pub covered_until_ms: i64,
}

/// What a node shows on its settings page.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceBilling {
    /// The device (text form).
    pub device: String,
    /// The account's subscriptions, newest first.
    pub subscriptions: Vec<DeviceSubscription>,
    /// The plans on offer.
    pub offers: Vec<Offer>,
    /// Whether Stripe sells (card plans can be bought, the portal opens).
    pub stripe: bool,
    /// The hub's `public_url`, when configured: the base of the node's device links.
    pub public_url: Option<String>,
}

/// The path a node signs for `device`.
pub fn billing_path(device: &DeviceId) -> String {
    format!("/api/v1/devices/{}/billing", device.to_text())
}

fn unauthenticated(e: RequestAuthError) -> ApiError {
    ApiError::Unauthenticated(format!("device signature refused: {e}"))
}

/// A device-signed read of `path_of(device)` by the device `id`: the device (known, its
/// signature over `GET\n{path}\n{ts}` fresh and valid — checked before revocation, so a revoked
/// device is told so only when it proves it holds the key, and not revoked), the path and the
/// request's `ts` for [`signed_answer`]. 401 `unauthenticated` / 403 `device-refused`.
pub(crate) async fn device_read(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    path_of: fn(&DeviceId) -> String,
) -> Result<(crate::devices::Device, String, i64), ApiError> {
    let device_id =
        DeviceId::parse(id).map_err(|_| ApiError::Unauthenticated("not a device id".into()))?;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthenticated(RequestAuthError::Malformed))?;
    let device = crate::devices::by_id(&state.db, &device_id.to_text())
        .await?
        .ok_or_else(|| ApiError::Unauthenticated("unknown device".into()))?;
    let key = IdentityKey::from_hex(&device.identity_key)
        .map_err(|e| DbError::Corrupt(format!("device {} key: {e}", device.id)))?;
    let path = path_of(&device_id);
    let request_ts = device_link::verify_request(&key, "GET", &path, auth, state.now_ms())
        .map_err(unauthenticated)?;
    if device.revoked_at_ms.is_some() {
        return Err(ApiError::DeviceRefused(format!(
            "device {} is revoked",
            device_id.fmt_short()
        )));
    }
    Ok((device, path, request_ts))
}

/// `answer` as JSON, signed by the hub's identity key (which the node pinned at enrolment) over
/// the path, the request's `ts` and the body, in `X-Tradecast-Hub-Signature`.
pub(crate) fn signed_answer(
    state: &AppState,
    path: &str,
    request_ts: i64,
    answer: &impl Serialize,
) -> Result<axum::response::Response, ApiError> {
    let body = serde_json::to_vec(answer).map_err(ApiError::internal)?;
    let sig = device_link::sign_answer(&state.hub_identity, path, request_ts, &body);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::HeaderName::from_static(device_link::ANSWER_HEADER), sig),
        ],
        body,
    )
        .into_response())
}

/// A device's own billing, authenticated by its identity key (no hub password).
///
/// `Authorization: Tradecast-Device ts=<unix ms>,sig=<base64url Ed25519 over the domain-tagged
/// "GET\n{path}\n{ts}">`, valid for 5 minutes either side of the hub's clock. Read-only: a replay
/// within the window reads the same answer.
#[utoipa::path(get, path = "/api/v1/devices/{id}/billing", tag = "billing",
    params(
        ("id" = String, Path, description = "device id, text form"),
        ("Authorization" = String, Header, description = "Tradecast-Device ts=<unix ms>,sig=<base64url>"),
    ),
    responses(
        (status = 200, body = DeviceBilling, headers(("X-Tradecast-Hub-Signature" = String, description = "base64url Ed25519 by the hub's identity key over the domain-tagged \"{path}\\n{request ts}\\n{body}\""))),
        (status = 401, description = "unauthenticated: missing, bad or stale device signature, or an unknown device", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "device-refused: the device is revoked", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn device_billing(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    let (device, path, request_ts) = device_read(&state, &id, &headers, billing_path).await?;
    let mut subscriptions = Vec::new();
    for s in ledger::subscriptions_of(&state.db, &device.user_id).await? {
        let plan_name =
            crate::plans::by_id(&state.db, &s.plan_id).await?.map(|p| p.name).unwrap_or_default();
        subscriptions.push(DeviceSubscription {
            plan_id: s.plan_id,
            plan_name,
            status: s.status,
            status_words: s.status.describe().to_string(),
            door: s.door,
            current_period_end_ms: s.current_period_end_ms,
            cancel_at_period_end: s.cancel_at_period_end,
            trial_end_ms: s.trial_end_ms,
            covered_until_ms: s.covered_until_ms,
        });
    }
    let answer = DeviceBilling {
        device: device.id,
        subscriptions,
        offers: offers(&state).await?,
        stripe: state.billing.stripe.is_on(),
        public_url: state.config.public_url.as_ref().map(|u| u.as_str().to_string()),
    };
    // Signed by the hub's identity key, which the node pinned at enrolment: the node trusts the
    // plan and the `public_url` it signs its device links under only from this hub.
    signed_answer(&state, &path, request_ts, &answer)
}
