//! `/api/v1/users`: account administration (owners and admins). Only an owner can create or
//! change owner and admin accounts; the last owner cannot be demoted.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Admin, Json, Path, Query, Require};
use crate::accounts::{self, NewUser, Role, User};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(set_role))
        .routes(routes!(disable))
        .routes(routes!(enable))
}

/// A new account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Login email.
    pub email: String,
    /// At least 12 characters.
    pub password: String,
    /// Role.
    pub role: Role,
    /// Name shown to people.
    #[serde(default)]
    pub display_name: String,
}

/// A role change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// The new role.
    pub role: Role,
}

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// At most this many (default 100, max 1000).
    pub limit: Option<i64>,
    /// Skip this many.
    pub offset: Option<i64>,
}

impl Page {
    /// (limit, offset), validated.
    pub fn bounds(&self) -> Result<(i64, i64), ApiError> {
        let limit = self.limit.unwrap_or(100);
        let offset = self.offset.unwrap_or(0);
        if !(1..=1000).contains(&limit) || offset < 0 {
            return Err(ApiError::InvalidParameter(
                "limit must be 1..=1000 and offset >= 0".into(),
            ));
        }
        Ok((limit, offset))
    }
}

/// Create an account.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser, security(("bearer" = [])), responses(
    (status = 201, body = User),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "conflict: email taken", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
))]
async fn create_user(
    State(state): State<AppState>,
    Require(actor, ..): Admin,
    Json(req): Json<CreateUser>,
) -> Result<(StatusCode, axum::Json<User>), ApiError> {
    if req.role.is_admin() && actor.role != Role::Owner {
        return Err(ApiError::Forbidden(
            "only an owner can create owner and admin accounts".into(),
        ));
    }
    let new = NewUser {
        email: &req.email,
        password: &req.password,
        role: req.role,
        display_name: &req.display_name,
    };
    let user = accounts::create_user(
        &state.db,
        &state.config.auth,
        state.now_ms(),
        &new,
        &actor.user_id,
        &actor.request_id,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// List accounts.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(Page), security(("bearer" = [])), responses(
    (status = 200, body = Vec<User>),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
))]
async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
    Query(page): Query<Page>,
) -> Result<axum::Json<Vec<User>>, ApiError> {
    let (limit, offset) = page.bounds()?;
    Ok(axum::Json(accounts::list_users(&state.db, limit, offset).await?))
}

/// Change an account's role.
#[utoipa::path(put, path = "/api/v1/users/{id}/role", tag = "users", request_body = SetRole,
    params(("id" = String, Path, description = "account id")), security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "conflict: last owner", body = Problem, content_type = "application/problem+json"),
))]
async fn set_role(
    State(state): State<AppState>,
    Require(actor, ..): Admin,
    Path(id): Path<String>,
    Json(req): Json<SetRole>,
) -> Result<axum::Json<User>, ApiError> {
    let actor_user = accounts::user_by_id(&state.db, &actor.user_id)
        .await?
        .ok_or_else(|| ApiError::Forbidden("account no longer exists".into()))?;
    // The role in the token may be stale; the stored one decides.
    if !actor_user.role.is_admin() {
        return Err(ApiError::Forbidden("this needs the owner or admin role".into()));
    }
    Ok(axum::Json(
        accounts::change_role(
            &state.db,
            state.now_ms(),
            &actor_user,
            &id,
            req.role,
            &actor.request_id,
        )
        .await?,
    ))
}

async fn set_disabled(
    state: &AppState,
    actor: &crate::api::extract::Authed,
    id: &str,
    disabled: bool,
) -> Result<axum::Json<User>, ApiError> {
    let actor_user = accounts::user_by_id(&state.db, &actor.user_id)
        .await?
        .ok_or_else(|| ApiError::Forbidden("account no longer exists".into()))?;
    let user = accounts::set_disabled(
        &state.db,
        state.now_ms(),
        &actor_user,
        id,
        disabled,
        &actor.request_id,
    )
    .await?;
    if disabled {
        crate::cluster::account_disabled(state, id).await;
    }
    Ok(axum::Json(user))
}

/// Disable an account: its logins, refreshes and live access tokens are refused at once.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "users",
    params(("id" = String, Path, description = "account id")), security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "conflict: last owner", body = Problem, content_type = "application/problem+json"),
))]
async fn disable(
    State(state): State<AppState>,
    Require(actor, ..): Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<User>, ApiError> {
    set_disabled(&state, &actor, &id, true).await
}

/// Re-enable an account.
#[utoipa::path(post, path = "/api/v1/users/{id}/enable", tag = "users",
    params(("id" = String, Path, description = "account id")), security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn enable(
    State(state): State<AppState>,
    Require(actor, ..): Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<User>, ApiError> {
    set_disabled(&state, &actor, &id, false).await
}
