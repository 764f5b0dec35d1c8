//! `/api/v1/approvals`: nodes post their signed `Approval` records; accounts list them; a
//! remote decision is stored as a request for the node (`/api/v1/approval-requests`).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Authed, Json, Query};
use crate::approvals::{self, ApprovalRequest, NewApprovalRequest, Stored, StoredApproval};
use crate::error::{ApiError, Problem};
use crate::signals::RecordBody;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_approval, list_approvals))
        .routes(routes!(post_request))
}

/// Filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApprovalFilter {
    /// Only this signal.
    pub signal_id: Option<String>,
}

/// Store a node-signed `Approval` record of one of the caller's devices. Unique per
/// (signal, device): the identical record again is 200, another one 409.
#[utoipa::path(post, path = "/api/v1/approvals", tag = "approvals", request_body = RecordBody, security(("bearer" = [])), responses(
    (status = 201, body = StoredApproval),
    (status = 200, description = "identical record already stored", body = StoredApproval),
    (status = 403, description = "device-refused", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "not-found: unknown signal", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "approval-conflict", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid-record", body = Problem, content_type = "application/problem+json"),
))]
async fn post_approval(
    State(state): State<AppState>,
    authed: Authed,
    Json(body): Json<RecordBody>,
) -> Result<(StatusCode, axum::Json<StoredApproval>), ApiError> {
    let (bytes, record) = crate::signals::decode_record(&body)?;
    match approvals::store(
        &state.db,
        state.now_ms(),
        &authed.user_id,
        bytes,
        record,
        &authed.request_id,
    )
    .await?
    {
        Stored::Created(a) => Ok((StatusCode::CREATED, axum::Json(a))),
        Stored::Duplicate(a) => Ok((StatusCode::OK, axum::Json(a))),
    }
}

/// Approvals visible to the caller.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals", params(ApprovalFilter), security(("bearer" = [])), responses(
    (status = 200, body = Vec<StoredApproval>),
))]
async fn list_approvals(
    State(state): State<AppState>,
    authed: Authed,
    Query(f): Query<ApprovalFilter>,
) -> Result<axum::Json<Vec<StoredApproval>>, ApiError> {
    Ok(axum::Json(
        approvals::list(&state.db, &authed.user_id, authed.role, f.signal_id.as_deref()).await?,
    ))
}

/// Send a remote decision to one of the caller's devices: the hub signs it as an
/// `ApprovalRequest` record and appends it to the device's inbox. The node decides within its
/// own policy and answers with its signed `RequestAnswer` (and `Approval`), which consumes the
/// request. `lots` must lie within the lot range of the node's `Pending` for the signal.
#[utoipa::path(post, path = "/api/v1/approval-requests", tag = "approvals", request_body = NewApprovalRequest, security(("bearer" = [])), responses(
    (status = 201, body = ApprovalRequest),
    (status = 403, description = "device-refused", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "conflict: the pending signal's decision time has passed", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
))]
async fn post_request(
    State(state): State<AppState>,
    authed: Authed,
    Json(req): Json<NewApprovalRequest>,
) -> Result<(StatusCode, axum::Json<ApprovalRequest>), ApiError> {
    let asker = approvals::Asker { user_id: &authed.user_id, telegram_user_id: None };
    let r = approvals::request(&state, &asker, &req, &authed.request_id).await?;
    Ok((StatusCode::CREATED, axum::Json(r)))
}
