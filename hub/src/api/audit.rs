//! `/api/v1/audit`: the audit log for owners and admins, and its chain verification.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Admin, Query};
use crate::audit::{self, Stored};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(verify))
}

/// Filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Only this action (`auth.login`, `signal.ingest`, …).
    pub action: Option<String>,
    /// Only this actor (a user id, `device:<id>`, `system`, …).
    pub actor: Option<String>,
    /// Only entries at or after this time (unix ms).
    pub from_ms: Option<i64>,
    /// Only entries before this time (unix ms).
    pub to_ms: Option<i64>,
    /// Only entries with a smaller seq (paging: the last seq of the previous page).
    pub before_seq: Option<i64>,
    /// At most this many, newest first (default 100, max 1000).
    pub limit: Option<i64>,
}

/// Result of a chain verification.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    /// Entries checked.
    pub n_entries: i64,
    /// Hash of the last entry.
    pub head_hash: String,
}

/// Latest audit entries.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditFilter), security(("bearer" = [])), responses(
    (status = 200, body = Vec<Stored>),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
))]
async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(f): Query<AuditFilter>,
) -> Result<axum::Json<Vec<Stored>>, ApiError> {
    let limit = f.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidParameter("limit must be 1..=1000".into()));
    }
    let filter = audit::Filter {
        actor: f.actor,
        action: f.action,
        from_ms: f.from_ms,
        to_ms: f.to_ms,
        before_seq: f.before_seq,
    };
    Ok(axum::Json(audit::search(&state.db, &filter, limit).await?))
}

/// Recompute the whole hash chain.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])), responses(
    (status = 200, body = VerifyReport),
    (status = 500, description = "chain broken (details in the hub's log)", body = Problem, content_type = "application/problem+json"),
))]
async fn verify(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<axum::Json<VerifyReport>, ApiError> {
    let r = audit::verify(&state.db).await.map_err(ApiError::internal)?;
    Ok(axum::Json(VerifyReport { n_entries: r.n_entries, head_hash: r.head_hash }))
}
