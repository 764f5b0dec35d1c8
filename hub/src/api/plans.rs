//! `/api/v1/products`, `/api/v1/plans` and `/api/v1/entitlements`: providers offer products and
//! the plans that sell them, admins grant plans.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Admin, Authed, Json, Path, Query, Require};
use crate::entitlements::{self, EndReason, Ending, Entitlement, Grant};
use crate::error::{ApiError, Problem};
use crate::plans::{self, NewPlan, NewProduct, Plan, Product};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_product, list_products))
        .routes(routes!(archive_product))
        .routes(routes!(create_plan, list_plans))
        .routes(routes!(archive_plan))
        .routes(routes!(grant, list_entitlements))
        .routes(routes!(revoke_entitlement))
}

/// Plan filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PlanFilter {
    /// Only this provider's plans.
    pub provider_user_id: Option<String>,
    /// Include archived plans.
    pub include_archived: Option<bool>,
}

/// Entitlement filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntitlementFilter {
    /// Admins: only this account.
    pub user_id: Option<String>,
}

/// Create a product (a provider for itself; an admin for a named provider). Its plans are
/// created with `POST /api/v1/plans` and its `product_id`.
#[utoipa::path(post, path = "/api/v1/products", tag = "plans", request_body = NewProduct, security(("bearer" = [])), responses(
    (status = 201, body = Product),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
))]
async fn create_product(
    State(state): State<AppState>,
    authed: Authed,
    Json(req): Json<NewProduct>,
) -> Result<(StatusCode, axum::Json<Product>), ApiError> {
    let product = plans::create_product(
        &state.db,
        state.now_ms(),
        &authed.user_id,
        authed.role,
        &req,
        &authed.request_id,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(product)))
}

/// Products on offer, each with its plans.
#[utoipa::path(get, path = "/api/v1/products", tag = "plans", params(PlanFilter), security(("bearer" = [])), responses(
    (status = 200, body = Vec<Product>),
))]
async fn list_products(
    State(state): State<AppState>,
    _authed: Authed,
    Query(f): Query<PlanFilter>,
) -> Result<axum::Json<Vec<Product>>, ApiError> {
    Ok(axum::Json(
        plans::products(
            &state.db,
            f.provider_user_id.as_deref(),
            f.include_archived.unwrap_or(false),
        )
        .await?,
    ))
}

/// Withdraw a product and its plans (held plans stay until they end).
#[utoipa::path(post, path = "/api/v1/products/{id}/archive", tag = "plans",
    params(("id" = String, Path, description = "product id")), security(("bearer" = [])), responses(
    (status = 200, body = Product),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn archive_product(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<axum::Json<Product>, ApiError> {
    Ok(axum::Json(
        plans::archive_product(
            &state.db,
            state.now_ms(),
            &id,
            &authed.user_id,
            authed.role,
            &authed.request_id,
        )
        .await?,
    ))
}

/// Create a plan (a provider for itself; an admin for a named provider).
#[utoipa::path(post, path = "/api/v1/plans", tag = "plans", request_body = NewPlan, security(("bearer" = [])), responses(
    (status = 201, body = Plan),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
))]
async fn create_plan(
    State(state): State<AppState>,
    authed: Authed,
    Json(req): Json<NewPlan>,
) -> Result<(StatusCode, axum::Json<Plan>), ApiError> {
    let plan = plans::create(
        &state.db,
        state.now_ms(),
        &authed.user_id,
        authed.role,
        &req,
        &authed.request_id,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(plan)))
}

/// Plans on offer.
#[utoipa::path(get, path = "/api/v1/plans", tag = "plans", params(PlanFilter), security(("bearer" = [])), responses(
    (status = 200, body = Vec<Plan>),
))]
async fn list_plans(
    State(state): State<AppState>,
    _authed: Authed,
    Query(f): Query<PlanFilter>,
) -> Result<axum::Json<Vec<Plan>>, ApiError> {
    Ok(axum::Json(
        plans::list(&state.db, f.provider_user_id.as_deref(), f.include_archived.unwrap_or(false))
            .await?,
    ))
}

/// Withdraw a plan.
#[utoipa::path(post, path = "/api/v1/plans/{id}/archive", tag = "plans",
    params(("id" = String, Path, description = "plan id")), security(("bearer" = [])), responses(
    (status = 200, body = Plan),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn archive_plan(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<axum::Json<Plan>, ApiError> {
    Ok(axum::Json(
        plans::archive(
            &state.db,
            state.now_ms(),
            &id,
            &authed.user_id,
            authed.role,
            &authed.request_id,
        )
        .await?,
    ))
}

/// Grant a plan to an account (admins).
#[utoipa::path(post, path = "/api/v1/entitlements", tag = "plans", request_body = Grant, security(("bearer" = [])), responses(
    (status = 201, body = Entitlement),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
))]
async fn grant(
    State(state): State<AppState>,
    Require(actor, ..): Admin,
    Json(req): Json<Grant>,
) -> Result<(StatusCode, axum::Json<Entitlement>), ApiError> {
    let e = entitlements::grant_by_admin(
        &state,
        state.now_ms(),
        &actor.user_id,
        &req,
        &actor.request_id,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(e)))
}

/// The caller's entitlements (admins: anyone's, filtered by `user_id`).
#[utoipa::path(get, path = "/api/v1/entitlements", tag = "plans", params(EntitlementFilter), security(("bearer" = [])), responses(
    (status = 200, body = Vec<Entitlement>),
))]
async fn list_entitlements(
    State(state): State<AppState>,
    authed: Authed,
    Query(f): Query<EntitlementFilter>,
) -> Result<axum::Json<Vec<Entitlement>>, ApiError> {
    let scope = if authed.role.is_admin() { f.user_id } else { Some(authed.user_id.clone()) };
    Ok(axum::Json(entitlements::history(&state.db, scope.as_deref()).await?))
}

/// Revoke an entitlement (admins).
#[utoipa::path(post, path = "/api/v1/entitlements/{id}/revoke", tag = "plans",
    params(("id" = String, Path, description = "entitlement id")), security(("bearer" = [])), responses(
    (status = 204, description = "revoked"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn revoke_entitlement(
    State(state): State<AppState>,
    Require(actor, ..): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ending = Ending { id: &id, at_ms: None, reason: EndReason::Revoked };
    entitlements::end(&state, state.now_ms(), &actor.user_id, &ending, &actor.request_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
