//! `/api/v1/sync`: the owner's alarms from the sync sessions (streams quarantined after
//! equivocation, and their release by a person) and the provider's per-signal delivery,
//! approval and fill status (`/api/v1/signals/{id}/outcomes`).

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Admin, Authed, Owner, Path};
use crate::accounts::Role;
use crate::error::{ApiError, Problem};
use crate::quic::store::{self, Outcome, Quarantined, StoreError};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_quarantines))
        .routes(routes!(release_quarantine))
        .routes(routes!(signal_outcomes))
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Db(d) => ApiError::from(d),
        other => ApiError::internal(other),
    }
}

/// Streams quarantined after equivocation (two records signed for one seq): an alarm until an
/// owner releases it.
#[utoipa::path(get, path = "/api/v1/sync/quarantines", tag = "sync", security(("bearer" = [])), responses(
    (status = 200, body = Vec<Quarantined>),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
))]
async fn list_quarantines(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<axum::Json<Vec<Quarantined>>, ApiError> {
    Ok(axum::Json(store::quarantined(&state.db).await.map_err(store_error)?))
}

/// Lifts a quarantine after a person looked at it (audited). The node's next session is
/// accepted again; a record that still conflicts with the stored one is refused again.
#[utoipa::path(post, path = "/api/v1/sync/quarantines/{author}/{stream}/release", tag = "sync",
    params(("author" = String, Path, description = "device id, text form"), ("stream" = i64, Path, description = "stream id")),
    security(("bearer" = [])), responses(
    (status = 204, description = "released"),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn release_quarantine(
    State(state): State<AppState>,
    owner: Owner,
    Path((author, stream)): Path<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    let released = store::release(
        &state.db,
        &author,
        stream,
        &owner.0.user_id,
        &owner.0.request_id,
        state.now_ms(),
    )
    .await
    .map_err(store_error)?;
    if released {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no quarantine of {author} stream {stream}")))
    }
}

/// Every subscriber device a signal was queued for: when its node committed it, the node's
/// signed decision, and the fill. For the signal's provider and for admins.
#[utoipa::path(get, path = "/api/v1/signals/{id}/outcomes", tag = "signals",
    params(("id" = String, Path, description = "signal id, 32 hex digits")), security(("bearer" = [])), responses(
    (status = 200, body = Vec<Outcome>),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn signal_outcomes(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<axum::Json<Vec<Outcome>>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no signal {id}"));
    let stored = crate::signals::stored_by_id(&state.db, &state.hub_identity, &id)
        .await?
        .ok_or_else(not_found)?;
    let allowed = authed.role.is_admin()
        || (authed.role == Role::Provider && stored.0.provider_user_id == authed.user_id);
    if !allowed {
        return Err(not_found());
    }
    Ok(axum::Json(store::outcomes(&state.db, &id).await.map_err(store_error)?))
}
