//! `/api/v1/devices`: enrolment codes, enrolment by a node, list, rename, revoke, the remote
//! approval requests waiting for a device, and the deployment's account-fingerprint key for a
//! node enrolled before the enrolment answer carried it (device-signed, like the billing read).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use tradecast_protocol::DeviceId;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Authed, ClientIp, Json, Path, RequestId, enforce};
use crate::approvals::{self, ApprovalRequest};
use crate::devices::{self, Device, Enrolled, EnrolmentCode};
use crate::error::{ApiError, Problem};
use crate::signals::RecordBody;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_code))
        .routes(routes!(enrol))
        .routes(routes!(list))
        .routes(routes!(rename))
        .routes(routes!(revoke))
        .routes(routes!(pending_requests))
        .routes(routes!(account_fingerprint_key))
}

/// Enrolment by a node.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The code shown to the trader (`XXXXX-XXXXX`).
    pub code: String,
    /// The node's self-signed `DeviceKeys` record (base64); its label names the device.
    pub keys_record: String,
}

/// A new name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    /// 1-64 characters.
    pub name: String,
}

/// Create a single-use enrolment code for one of the caller's devices.
#[utoipa::path(post, path = "/api/v1/devices/enrolment-codes", tag = "devices", security(("bearer" = [])), responses(
    (status = 201, body = EnrolmentCode),
    (status = 401, description = "unauthenticated", body = Problem, content_type = "application/problem+json"),
))]
async fn create_code(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<(StatusCode, axum::Json<EnrolmentCode>), ApiError> {
    let code = devices::create_code(
        &state.db,
        state.now_ms(),
        state.config.devices.enrolment_code_ttl_s,
        &authed.user_id,
        &authed.request_id,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(code)))
}

/// Enrol a node with an enrolment code and its self-signed public keys; the answer carries the
/// hub's identity key for the node to pin.
#[utoipa::path(post, path = "/api/v1/devices/enrol", tag = "devices", request_body = EnrolRequest, responses(
    (status = 201, body = Enrolled),
    (status = 401, description = "invalid-enrolment-code", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "conflict: already enrolled", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid-record", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "rate-limited", body = Problem, content_type = "application/problem+json"),
))]
async fn enrol(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    RequestId(request_id): RequestId,
    Json(req): Json<EnrolRequest>,
) -> Result<(StatusCode, axum::Json<Enrolled>), ApiError> {
    // Codes are guessable only by brute force: the login bucket bounds that per IP.
    enforce(&state, &format!("enrol:{ip}"), state.config.rate_limits.login_per_ip).await?;
    let (bytes, _) = crate::signals::decode_record(&RecordBody { record: req.keys_record })?;
    let mut enrolled = devices::enrol(
        &state.db,
        state.now_ms(),
        &req.code,
        &bytes,
        &state.hub_identity,
        &state.secrets.account_fingerprint_key(),
        &request_id,
    )
    .await?;
    enrolled.quic_tls_name = state.config.quic_tls.as_ref().map(|t| t.server_name.clone());
    Ok((StatusCode::CREATED, axum::Json(enrolled)))
}

/// The caller's devices (an admin sees every device).
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])), responses(
    (status = 200, body = Vec<Device>),
    (status = 401, description = "unauthenticated", body = Problem, content_type = "application/problem+json"),
))]
async fn list(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<axum::Json<Vec<Device>>, ApiError> {
    let scope = (!authed.role.is_admin()).then_some(authed.user_id.as_str());
    Ok(axum::Json(devices::list(&state.db, scope).await?))
}

/// Rename a device.
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", request_body = Rename,
    params(("id" = String, Path, description = "device id, text form")), security(("bearer" = [])), responses(
    (status = 200, body = Device),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
))]
async fn rename(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    Json(req): Json<Rename>,
) -> Result<axum::Json<Device>, ApiError> {
    let d = devices::rename(
        &state.db,
        state.now_ms(),
        &id,
        &req.name,
        &authed.user_id,
        authed.role.is_admin(),
        &authed.request_id,
    )
    .await?;
    Ok(axum::Json(d))
}

/// Revoke a device: it is refused from now on, and nothing more is queued for it.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices",
    params(("id" = String, Path, description = "device id, text form")), security(("bearer" = [])), responses(
    (status = 200, body = Device),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn revoke(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<axum::Json<Device>, ApiError> {
    let d = revoke_device(&state, &id, &authed.user_id, authed.role.is_admin(), &authed.request_id)
        .await?;
    Ok(axum::Json(d))
}

/// Revokes device `id` for `actor` ([`devices::revoke`]) and closes its QUIC connections on this
/// instance: what the API and the console's revoke do.
pub(crate) async fn revoke_device(
    state: &AppState,
    id: &str,
    actor: &str,
    is_admin: bool,
    request_id: &str,
) -> Result<Device, ApiError> {
    let d = devices::revoke(&state.db, state.now_ms(), id, actor, is_admin, request_id).await?;
    // Its open QUIC connections end now, here and on the other instances.
    crate::cluster::device_revoked(state, &d.id);
    Ok(d)
}

/// Remote decisions waiting for this device.
#[utoipa::path(get, path = "/api/v1/devices/{id}/approval-requests", tag = "approvals",
    params(("id" = String, Path, description = "device id, text form")), security(("bearer" = [])), responses(
    (status = 200, body = Vec<ApprovalRequest>),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn pending_requests(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<axum::Json<Vec<ApprovalRequest>>, ApiError> {
    Ok(axum::Json(approvals::pending_requests(&state.db, &authed.user_id, &id).await?))
}

/// The deployment's account-fingerprint key, as a node reads it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FingerprintKey {
    /// The device (text form) the answer is for.
    pub device: String,
    /// 64 hex digits: the key the node hashes its EA's broker server and login under.
    pub account_fingerprint_key: String,
}

/// The path a node signs for `device`.
pub fn fingerprint_key_path(device: &DeviceId) -> String {
    format!("/api/v1/devices/{}/account-fingerprint-key", device.to_text())
}

/// The deployment's account-fingerprint key for an enrolled device, authenticated by its
/// identity key (no hub password): what the enrolment answer carries, for nodes enrolled before
/// it did.
///
/// `Authorization: Tradecast-Device ts=<unix ms>,sig=<base64url Ed25519 over the domain-tagged
/// "GET\n{path}\n{ts}">`, valid for 5 minutes either side of the hub's clock. Read-only: a replay
/// within the window reads the same answer. The answer is signed by the hub's identity key.
#[utoipa::path(get, path = "/api/v1/devices/{id}/account-fingerprint-key", tag = "devices",
    params(
        ("id" = String, Path, description = "device id, text form"),
        ("Authorization" = String, Header, description = "Tradecast-Device ts=<unix ms>,sig=<base64url>"),
    ),
    responses(
        (status = 200, body = FingerprintKey, headers(("X-Tradecast-Hub-Signature" = String, description = "base64url Ed25519 by the hub's identity key over the domain-tagged \"{path}\\n{request ts}\\n{body}\""))),
        (status = 401, description = "unauthenticated: missing, bad or stale device signature, or an unknown device", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "device-refused: the device is revoked", body = Problem, content_type = "application/problem+json"),
))]
async fn account_fingerprint_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    let (device, path, request_ts) =
        crate::billing::device_api::device_read(&state, &id, &headers, fingerprint_key_path)
            .await?;
    let answer = FingerprintKey {
        device: device.id,
        account_fingerprint_key: hex::encode(*state.secrets.account_fingerprint_key()),
    };
    // Signed by the key the node pinned: a key from anyone else would split its fingerprints
    // from every other device's.
    crate::billing::device_api::signed_answer(&state, &path, request_ts, &answer)
}
