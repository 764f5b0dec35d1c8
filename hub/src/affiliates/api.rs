//! The affiliates' JSON API: an account's own programme (`/api/v1/affiliates/me…`) and the
//! owner's (settings, affiliates, holds, payout runs and their CSV). Reads are for owners and
//! admins; changes to the programme, decisions and payouts for the owner.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store::{self, Affiliate, Hold, Listed, Payout, PayoutRun, Settings, Statement};
use crate::api::extract::{Admin, Authed, ClientIp, Json, Owner, Path, Require};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_statement, join))
        .routes(routes!(add_code))
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(list))
        .routes(routes!(decide))
        .routes(routes!(statement))
        .routes(routes!(holds))
        .routes(routes!(decide_hold))
        .routes(routes!(payout_runs, run_payout))
        .routes(routes!(payout_csv))
        .routes(routes!(mark_paid))
}

/// The caller's statement as an affiliate.
#[utoipa::path(get, path = "/api/v1/affiliates/me", tag = "affiliates", security(("bearer" = [])), responses(
    (status = 200, body = Statement),
    (status = 401, description = "unauthenticated", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "not an affiliate", body = Problem, content_type = "application/problem+json"),
))]
async fn my_statement(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<axum::Json<Statement>, ApiError> {
    let Some(a) = store::affiliate_of(&state, &authed.user_id).await? else {
        return Err(ApiError::NotFound("you are not an affiliate".into()));
    };
    Ok(axum::Json(store::statement(&state, &a.id).await?))
}

/// Become an affiliate (approved at once, or pending the owner's approval).
#[utoipa::path(post, path = "/api/v1/affiliates/me", tag = "affiliates", security(("bearer" = [])), responses(
    (status = 201, body = Affiliate),
    (status = 401, description = "unauthenticated", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "already an affiliate", body = Problem, content_type = "application/problem+json"),
))]
async fn join(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    authed: Authed,
) -> Result<(StatusCode, axum::Json<Affiliate>), ApiError> {
    let hash = super::ip_hash(&state, ip);
    let a = store::join(&state, &authed.user_id, Some(&hash), &authed.request_id).await?;
    Ok((StatusCode::CREATED, axum::Json(a)))
}

/// A new code.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCode {
    /// 3-64 letters, digits, `_` or `-`; absent: a random one.
    #[serde(default)]
    pub code: Option<String>,
}

/// A code made.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeMade {
    /// The code (`?ref=<code>`, `/start ref_<code>`).
    pub code: String,
}

/// Add a referral code (approved affiliates).
#[utoipa::path(post, path = "/api/v1/affiliates/me/codes", tag = "affiliates", security(("bearer" = [])),
    request_body = NewCode, responses(
    (status = 201, body = CodeMade),
    (status = 403, description = "not approved", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "not an affiliate", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "code taken", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
))]
async fn add_code(
    State(state): State<AppState>,
    authed: Authed,
    Json(req): Json<NewCode>,
) -> Result<(StatusCode, axum::Json<CodeMade>), ApiError> {
    let code =
        store::add_code(&state, &authed.user_id, req.code.as_deref(), &authed.request_id).await?;
    Ok((StatusCode::CREATED, axum::Json(CodeMade { code })))
}

/// The programme's settings (owners and admins).
#[utoipa::path(get, path = "/api/v1/affiliates/settings", tag = "affiliates", security(("bearer" = [])), responses(
    (status = 200, body = Settings),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
))]
async fn get_settings(
    State(state): State<AppState>,
    _: Admin,
) -> Result<axum::Json<Settings>, ApiError> {
    Ok(axum::Json(store::settings(&state).await?))
}

/// Replace the programme's settings (the owner).
#[utoipa::path(put, path = "/api/v1/affiliates/settings", tag = "affiliates", security(("bearer" = [])),
    request_body = Settings, responses(
    (status = 200, body = Settings),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
))]
async fn put_settings(
    State(state): State<AppState>,
    Require(actor, ..): Owner,
    Json(s): Json<Settings>,
) -> Result<axum::Json<Settings>, ApiError> {
    store::save_settings(&state, &actor.user_id, &s, &actor.request_id).await?;
    Ok(axum::Json(store::settings(&state).await?))
}

/// Every affiliate, top earners first (owners and admins).
#[utoipa::path(get, path = "/api/v1/affiliates", tag = "affiliates", security(("bearer" = [])), responses(
    (status = 200, body = Vec<Listed>),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
))]
async fn list(
    State(state): State<AppState>,
    _: Admin,
) -> Result<axum::Json<Vec<Listed>>, ApiError> {
    Ok(axum::Json(store::list(&state).await?))
}

/// Approve or reject.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `true`: approve (release a hold); `false`: reject.
    pub approve: bool,
}

/// Approve or reject an affiliate (the owner).
#[utoipa::path(post, path = "/api/v1/affiliates/{id}/decision", tag = "affiliates", security(("bearer" = [])),
    params(("id" = String, Path, description = "The affiliate")), request_body = Decision, responses(
    (status = 200, body = Affiliate),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such affiliate", body = Problem, content_type = "application/problem+json"),
))]
async fn decide(
    State(state): State<AppState>,
    Require(actor, ..): Owner,
    Path(id): Path<String>,
    Json(d): Json<Decision>,
) -> Result<axum::Json<Affiliate>, ApiError> {
    let a =
        store::decide_affiliate(&state, &actor.user_id, &id, d.approve, &actor.request_id).await?;
    Ok(axum::Json(a))
}

/// An affiliate's statement (owners and admins).
#[utoipa::path(get, path = "/api/v1/affiliates/{id}/statement", tag = "affiliates", security(("bearer" = [])),
    params(("id" = String, Path, description = "The affiliate")), responses(
    (status = 200, body = Statement),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such affiliate", body = Problem, content_type = "application/problem+json"),
))]
async fn statement(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<Statement>, ApiError> {
    Ok(axum::Json(store::statement(&state, &id).await?))
}

/// Commissions held for review, open ones (owners and admins).
#[utoipa::path(get, path = "/api/v1/affiliates/holds", tag = "affiliates", security(("bearer" = [])), responses(
    (status = 200, body = Vec<Hold>),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
))]
async fn holds(State(state): State<AppState>, _: Admin) -> Result<axum::Json<Vec<Hold>>, ApiError> {
    Ok(axum::Json(store::holds(&state, true).await?))
}

/// Release (`approve: true`) or reject a hold (the owner).
#[utoipa::path(post, path = "/api/v1/affiliates/holds/{id}/decision", tag = "affiliates", security(("bearer" = [])),
    params(("id" = String, Path, description = "The hold")), request_body = Decision, responses(
    (status = 204, description = "decided"),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such hold", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "decided otherwise before", body = Problem, content_type = "application/problem+json"),
))]
async fn decide_hold(
    State(state): State<AppState>,
    Require(actor, ..): Owner,
    Path(id): Path<String>,
    Json(d): Json<Decision>,
) -> Result<StatusCode, ApiError> {
    store::decide_hold(&state, &actor.user_id, &id, d.approve, &actor.request_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The payout runs, newest first (owners and admins).
#[utoipa::path(get, path = "/api/v1/affiliates/payouts", tag = "affiliates", security(("bearer" = [])), responses(
    (status = 200, body = Vec<PayoutRun>),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
))]
async fn payout_runs(
    State(state): State<AppState>,
    _: Admin,
) -> Result<axum::Json<Vec<PayoutRun>>, ApiError> {
    Ok(axum::Json(store::payout_runs(&state).await?))
}

/// A payout run to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// The run's id (1-64 letters, digits, `_` or `-`): the same id again answers the same run.
    pub run_id: String,
}

/// Run a payout (the owner): idempotent by its run id.
#[utoipa::path(post, path = "/api/v1/affiliates/payouts", tag = "affiliates", security(("bearer" = [])),
    request_body = NewRun, responses(
    (status = 200, body = PayoutRun),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "balances moved meanwhile", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
))]
async fn run_payout(
    State(state): State<AppState>,
    Require(actor, ..): Owner,
    Json(req): Json<NewRun>,
) -> Result<axum::Json<PayoutRun>, ApiError> {
    Ok(axum::Json(store::run_payout(&state, &actor.user_id, &req.run_id, &actor.request_id).await?))
}

/// A payout run as CSV (owners and admins): `email,amount,currency,unique_id,note` (PayPal mass
/// pay's columns) then `affiliate_id,amount_minor,reference,paid_at`.
#[utoipa::path(get, path = "/api/v1/affiliates/payouts/{run}/csv", tag = "affiliates", security(("bearer" = [])),
    params(("run" = String, Path, description = "The run id")), responses(
    (status = 200, description = "text/csv", content_type = "text/csv", body = String),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such run", body = Problem, content_type = "application/problem+json"),
))]
async fn payout_csv(
    State(state): State<AppState>,
    _: Admin,
    Path(run): Path<String>,
) -> Result<Response, ApiError> {
    let Some(r) = store::payout_run(&state, &run).await? else {
        return Err(ApiError::NotFound("no such payout run".into()));
    };
    Ok(csv_response(&r))
}

/// A run's CSV as a download.
pub fn csv_response(run: &PayoutRun) -> Response {
    let name = format!("attachment; filename=\"payout-{}.csv\"", run.id);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        store::csv(run),
    )
        .into_response()
}

/// A payout paid.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Paid {
    /// The affiliate.
    pub affiliate_id: String,
    /// The payout's currency.
    pub currency: String,
    /// The bank's or PayPal's reference.
    pub reference: String,
}

/// Mark an affiliate's payout of a run paid (the owner): idempotent with the same reference.
#[utoipa::path(post, path = "/api/v1/affiliates/payouts/{run}/paid", tag = "affiliates", security(("bearer" = [])),
    params(("run" = String, Path, description = "The run id")), request_body = Paid, responses(
    (status = 200, body = Payout),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such payout", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "paid with another reference", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
))]
async fn mark_paid(
    State(state): State<AppState>,
    Require(actor, ..): Owner,
    Path(run): Path<String>,
    Json(p): Json<Paid>,
) -> Result<axum::Json<Payout>, ApiError> {
    let out = store::mark_paid(
        &state,
        &actor.user_id,
        &run,
        &p.affiliate_id,
        &p.currency,
        &p.reference,
        &actor.request_id,
    )
    .await?;
    Ok(axum::Json(out))
}
