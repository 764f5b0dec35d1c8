//! Billing's JSON API: sign-up (public), the catalog (public), and a subscriber's own
//! subscriptions and invoices.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ledger::{self, Invoice, Subscription};
use crate::accounts::{self, NewUser, Role, User};
use crate::api::auth::TokenResponse;
use crate::api::extract::{Authed, ClientIp, Json, RequestId, enforce};
use crate::db::DbError;
use crate::error::{ApiError, Problem};
use crate::plans::{self, Plan};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    use super::stripe_door;
    let hooks = OpenApiRouter::new()
        .routes(routes!(stripe_door::webhook))
        .layer(axum::extract::DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT));
    OpenApiRouter::new()
        .merge(hooks)
        .routes(routes!(super::device_api::device_billing))
        .routes(routes!(signup))
        .routes(routes!(catalog))
        .routes(routes!(my_billing))
        .routes(routes!(stripe_door::checkout_route))
        .routes(routes!(stripe_door::portal_route))
        .routes(routes!(stripe_door::refund_route))
}

/// The body limit of the outside services' webhooks (system.md: 256 KiB).
pub const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;

/// Whether `path` is an outside service's webhook: exempt from the per-IP limit and from
/// `http.max_in_flight` (Stripe and Telegram retry a refused delivery for hours; a burst of them
/// from one address is normal).
pub fn is_webhook(path: &str) -> bool {
    matches!(path, super::stripe_door::WEBHOOK_PATH | crate::telegram::api::WEBHOOK_PATH)
}

/// A new subscriber account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// Login e-mail.
    pub email: String,
    /// At least 12 characters.
    pub password: String,
    /// Name shown to people.
    #[serde(default)]
    pub display_name: String,
    /// A referral code (`?ref=` of an affiliate link): 1-64 letters, digits, `_` or `-`.
    #[serde(default, rename = "ref")]
    pub referral: Option<String>,
}

impl std::fmt::Debug for SignupRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupRequest")
            .field("email", &self.email)
            .field("password", &"[redacted]")
            .field("referral", &self.referral)
            .finish()
    }
}

/// The new account and its first login.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignupResponse {
    /// The account (role `subscriber`).
    pub user: User,
    /// Tokens, as a login returns them.
    pub tokens: TokenResponse,
}

/// Whether `code` is an acceptable referral code.
pub fn valid_referral(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Creates a subscriber account (and its first login) for `email`; `referral` is kept for the
/// affiliates' attribution. A taken e-mail is a conflict.
pub async fn create_subscriber(
    state: &AppState,
    email: &str,
    password: &str,
    display_name: &str,
    referral: Option<&str>,
    request_id: &str,
) -> Result<User, ApiError> {
    if let Some(code) = referral
        && !valid_referral(code)
    {
        return Err(ApiError::Validation("`ref` must be 1-64 letters, digits, `_` or `-`".into()));
    }
    let new = NewUser { email, password, role: Role::Subscriber, display_name };
    let user = accounts::create_user(
        &state.db,
        &state.config.auth,
        state.now_ms(),
        &new,
        "signup",
        request_id,
    )
    .await?;
    if let Some(code) = referral {
        sqlx::query("UPDATE users SET signup_ref = $1 WHERE id = $2")
            .bind(code)
            .bind(&user.id)
            .execute(state.db.pool())
            .await
            .map_err(DbError::from)?;
    }
    metrics::counter!("tradecast_billing_signups_total").increment(1);
    Ok(user)
}

/// Create a subscriber account (public).
///
/// Under the login bucket of the caller's address (`rate_limits.login_per_ip`). Answers the
/// account and its first tokens, as a login would.
#[utoipa::path(post, path = "/api/v1/signup", tag = "billing", request_body = SignupRequest, responses(
    (status = 201, body = SignupResponse),
    (status = 409, description = "conflict: e-mail taken", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "rate-limited", body = Problem, content_type = "application/problem+json"),
))]
async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    RequestId(request_id): RequestId,
    Json(req): Json<SignupRequest>,
) -> Result<(StatusCode, axum::Json<SignupResponse>), ApiError> {
    enforce(&state, &format!("login:{ip}"), state.config.rate_limits.login_per_ip).await?;
    let user = create_subscriber(
        &state,
        &req.email,
        &req.password,
        &req.display_name,
        req.referral.as_deref(),
        &request_id,
    )
    .await?;
    let referral = req.referral.as_deref();
    crate::affiliates::store::attribute_signup(&state, &user.id, None, referral, ip).await;
    let tokens = crate::api::auth::new_login(&state, &user).await?;
    Ok((StatusCode::CREATED, axum::Json(SignupResponse { user, tokens })))
}

/// A plan on offer, as a buyer sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Offer {
    /// The plan.
    #[serde(flatten)]
    pub plan: Plan,
    /// The provider's display name.
    pub provider_name: String,
    /// How it is paid: `stripe` (a card, through Stripe Checkout) or `telegram_stars`.
    pub door: ledger::Door,
    /// The product the plan sells (its name and description; the plan's own when it is its
    /// product's only plan).
    pub product_name: String,
    /// The product's description.
    pub product_description: String,
}

/// The plans on offer, for anyone (names, prices, features, trial days).
pub async fn offers(state: &AppState) -> Result<Vec<Offer>, ApiError> {
    let mut out = Vec::new();
    let products = plans::products_by_id(&state.db).await?;
    for plan in plans::list(&state.db, None, false).await? {
        let provider_name = accounts::user_by_id(&state.db, &plan.provider_user_id)
            .await?
            .map(|u| if u.display_name.is_empty() { u.email } else { u.display_name })
            .unwrap_or_default();
        let door = if plan.is_stars() { ledger::Door::TelegramStars } else { ledger::Door::Stripe };
        let (product_name, product_description) = products.get(&plan.product_id).map_or_else(
            || (plan.name.clone(), String::new()),
            |p| (p.name.clone(), p.description.clone()),
        );
        out.push(Offer { plan, provider_name, door, product_name, product_description });
    }
    Ok(out)
}

/// The plans on offer (public).
#[utoipa::path(get, path = "/api/v1/billing/plans", tag = "billing", responses(
    (status = 200, body = Vec<Offer>),
))]
async fn catalog(State(state): State<AppState>) -> Result<axum::Json<Vec<Offer>>, ApiError> {
    Ok(axum::Json(offers(&state).await?))
}

/// A subscriber's billing.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyBilling {
    /// Subscriptions, newest first.
    pub subscriptions: Vec<Subscription>,
    /// Invoices, newest first.
    pub invoices: Vec<Invoice>,
}

/// The caller's subscriptions and invoices.
#[utoipa::path(get, path = "/api/v1/billing/me", tag = "billing", security(("bearer" = [])), responses(
    (status = 200, body = MyBilling),
    (status = 401, description = "unauthenticated", body = Problem, content_type = "application/problem+json"),
))]
async fn my_billing(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<axum::Json<MyBilling>, ApiError> {
    Ok(axum::Json(MyBilling {
        subscriptions: ledger::subscriptions_of(&state.db, &authed.user_id).await?,
        invoices: ledger::invoices_of(&state.db, &authed.user_id).await?,
    }))
}
