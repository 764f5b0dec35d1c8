//! Plans and entitlements (minimal until billing): a provider offers plans (price in minor units
//! with an ISO 4217 currency code, never a float); an admin grants a plan to an account, which
//! entitles that account's devices to the provider's signals. Fan-out reads [`entitled`] rules
//! in SQL (see `signals`).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::accounts::{self, Role};
use crate::audit::{self, Entry};
use crate::db::{Db, DbError};
use crate::error::ApiError;
use crate::ids;

/// A plan a provider offers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Plan {
    /// Plan id.
    pub id: String,
    /// The provider whose signals it grants.
    pub provider_user_id: String,
    /// Name shown to subscribers.
    pub name: String,
    /// Price per period in minor units (cents).
    pub price_minor: i64,
    /// ISO 4217 code, e.g. `USD`.
    pub currency: String,
    /// Billing period, days.
    pub period_days: i64,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
    /// Set when withdrawn.
    pub archived_at_ms: Option<i64>,
}

/// A new plan.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPlan {
    /// Provider account; defaults to the caller (required when an admin creates it).
    #[serde(default)]
    pub provider_user_id: Option<String>,
    /// 1-100 characters.
    pub name: String,
    /// Minor units, 0 or more.
    pub price_minor: i64,
    /// Three uppercase letters.
    pub currency: String,
    /// 1-3660 days.
    pub period_days: i64,
}

/// An account's entitlement to a plan.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Entitlement {
    /// Entitlement id.
    pub id: String,
    /// Entitled account.
    pub user_id: String,
    /// Plan.
    pub plan_id: String,
    /// Admin who granted it.
    pub granted_by: String,
    /// Valid from, unix ms.
    pub starts_at_ms: i64,
    /// Valid until (open-ended when absent), unix ms.
    pub expires_at_ms: Option<i64>,
    /// Set when revoked.
    pub revoked_at_ms: Option<i64>,
}

/// A grant.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Account to entitle.
    pub user_id: String,
    /// Plan.
    pub plan_id: String,
    /// Until when (open-ended when absent), unix ms.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

const PLAN_COLUMNS: &str =
    "id, provider_user_id, name, price_minor, currency, period_days, created_at_ms, archived_at_ms";

fn plan_from_row(r: &sqlx::any::AnyRow) -> Result<Plan, DbError> {
    Ok(Plan {
        id: r.try_get(0)?,
        provider_user_id: r.try_get(1)?,
        name: r.try_get(2)?,
        price_minor: r.try_get(3)?,
        currency: r.try_get(4)?,
        period_days: r.try_get(5)?,
        created_at_ms: r.try_get(6)?,
        archived_at_ms: r.try_get(7)?,
    })
}

/// Creates a plan. A provider creates its own; an admin names the provider.
pub async fn create(
    db: &Db,
    now_ms: i64,
    actor: &str,
    actor_role: Role,
    new: &NewPlan,
    request_id: &str,
) -> Result<Plan, ApiError> {
    if !(actor_role.is_admin() || actor_role == Role::Provider) {
        return Err(ApiError::Forbidden("this needs the provider, owner or admin role".into()));
    }
    let provider = match (&new.provider_user_id, actor_role) {
        (Some(p), r) if r.is_admin() => p.clone(),
        (None, Role::Provider) => actor.to_string(),
        (Some(p), Role::Provider) if p == actor => p.clone(),
        (_, Role::Provider) => {
            return Err(ApiError::Forbidden("a provider creates plans for itself only".into()));
        }
        (None, _) => return Err(ApiError::Validation("`provider_user_id` is required".into())),
        _ => {
            return Err(ApiError::Forbidden("this needs the provider, owner or admin role".into()));
        }
    };
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::Validation("`name` must be 1-100 characters".into()));
    }
    if new.price_minor < 0 {
        return Err(ApiError::Validation("`price_minor` must be 0 or more".into()));
    }
    if new.currency.len() != 3 || !new.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::Validation("`currency` must be an ISO 4217 code like USD".into()));
    }
    if !(1..=3660).contains(&new.period_days) {
        return Err(ApiError::Validation("`period_days` must be 1-3660".into()));
    }
    let provider_user = accounts::user_by_id(db, &provider)
        .await?
        .ok_or_else(|| ApiError::Validation("`provider_user_id` is not an account".into()))?;
    if provider_user.role != Role::Provider {
        return Err(ApiError::Validation("`provider_user_id` is not a provider".into()));
    }
    let plan = Plan {
        id: ids::new_id(),
        provider_user_id: provider,
        name: name.to_string(),
        price_minor: new.price_minor,
        currency: new.currency.clone(),
        period_days: new.period_days,
        created_at_ms: now_ms,
        archived_at_ms: None,
    };
    let mut tx = db.begin_write().await?;
    sqlx::query(crate::sql!(
        "INSERT INTO plans ({PLAN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)"
    ))
    .bind(&plan.id)
    .bind(&plan.provider_user_id)
    .bind(&plan.name)
    .bind(plan.price_minor)
    .bind(&plan.currency)
    .bind(plan.period_days)
    .bind(now_ms)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    let detail = serde_json::json!({ "provider": plan.provider_user_id, "price_minor": plan.price_minor, "currency": plan.currency });
    audit::append(
        &mut tx,
        db.backend(),
        now_ms,
        &Entry { actor, action: "plan.create", subject: &plan.id, detail, request_id },
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(plan)
}

/// Plans, optionally of one provider, including archived ones when asked.
pub async fn list(
    db: &Db,
    provider: Option<&str>,
    include_archived: bool,
) -> Result<Vec<Plan>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {PLAN_COLUMNS} FROM plans WHERE ($1 = '' OR provider_user_id = $1) \
         AND ($2 = 1 OR archived_at_ms IS NULL) ORDER BY created_at_ms, id"
    ))
    .bind(provider.unwrap_or(""))
    .bind(i64::from(include_archived))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(plan_from_row).collect()
}

/// Withdraws a plan (existing entitlements stay until they expire or are revoked).
pub async fn archive(
    db: &Db,
    now_ms: i64,
    id: &str,
    actor: &str,
    actor_role: Role,
    request_id: &str,
) -> Result<Plan, ApiError> {
    let row = sqlx::query(crate::sql!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(DbError::from)?
        .ok_or_else(|| ApiError::NotFound(format!("no plan {id}")))?;
    let plan = plan_from_row(&row)?;
    if !(actor_role.is_admin() || plan.provider_user_id == actor) {
        return Err(ApiError::NotFound(format!("no plan {id}")));
    }
    if plan.archived_at_ms.is_some() {
        return Ok(plan);
    }
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE plans SET archived_at_ms = $1 WHERE id = $2")
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    audit::append(
        &mut tx,
        db.backend(),
        now_ms,
        &Entry {
            actor,
            action: "plan.archive",
            subject: id,
            detail: serde_json::json!({}),
            request_id,
        },
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Plan { archived_at_ms: Some(now_ms), ..plan })
}

/// Whether `provider_user_id` has at least one plan on offer (the condition to publish).
pub async fn has_active_plan(db: &Db, provider_user_id: &str) -> Result<bool, DbError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM plans WHERE provider_user_id = $1 AND archived_at_ms IS NULL",
    )
    .bind(provider_user_id)
    .fetch_one(db.pool())
    .await?;
    Ok(n > 0)
}

const ENT_COLUMNS: &str =
    "id, user_id, plan_id, granted_by, starts_at_ms, expires_at_ms, revoked_at_ms";

fn ent_from_row(r: &sqlx::any::AnyRow) -> Result<Entitlement, DbError> {
    Ok(Entitlement {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        plan_id: r.try_get(2)?,
        granted_by: r.try_get(3)?,
        starts_at_ms: r.try_get(4)?,
        expires_at_ms: r.try_get(5)?,
        revoked_at_ms: r.try_get(6)?,
    })
}

/// Grants a plan to an account (admins).
pub async fn grant(
    db: &Db,
    now_ms: i64,
    actor: &str,
    g: &Grant,
    request_id: &str,
) -> Result<Entitlement, ApiError> {
    if accounts::user_by_id(db, &g.user_id).await?.is_none() {
        return Err(ApiError::Validation("`user_id` is not an account".into()));
    }
    let plan: Option<Option<i64>> =
        sqlx::query_scalar("SELECT archived_at_ms FROM plans WHERE id = $1")
            .bind(&g.plan_id)
            .fetch_optional(db.pool())
            .await
            .map_err(DbError::from)?;
    match plan {
        None => return Err(ApiError::Validation("`plan_id` is not a plan".into())),
        Some(Some(_)) => return Err(ApiError::Validation("`plan_id` is archived".into())),
        Some(None) => {}
    }
    if g.expires_at_ms.is_some_and(|e| e <= now_ms) {
        return Err(ApiError::Validation("`expires_at_ms` is in the past".into()));
    }
    let e = Entitlement {
        id: ids::new_id(),
        user_id: g.user_id.clone(),
        plan_id: g.plan_id.clone(),
        granted_by: actor.to_string(),
        starts_at_ms: now_ms,
        expires_at_ms: g.expires_at_ms,
        revoked_at_ms: None,
    };
    let mut tx = db.begin_write().await?;
    sqlx::query(crate::sql!("INSERT INTO entitlements ({ENT_COLUMNS}, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, NULL, $5)"))
        .bind(&e.id)
        .bind(&e.user_id)
        .bind(&e.plan_id)
        .bind(&e.granted_by)
        .bind(now_ms)
        .bind(e.expires_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    let detail = serde_json::json!({ "user_id": e.user_id, "plan_id": e.plan_id, "expires_at_ms": e.expires_at_ms });
    audit::append(
        &mut tx,
        db.backend(),
        now_ms,
        &Entry { actor, action: "entitlement.grant", subject: &e.id, detail, request_id },
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(e)
}

/// Entitlements of one account, or all.
pub async fn entitlements(db: &Db, user_id: Option<&str>) -> Result<Vec<Entitlement>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {ENT_COLUMNS} FROM entitlements WHERE ($1 = '' OR user_id = $1) ORDER BY created_at_ms, id"
    ))
    .bind(user_id.unwrap_or(""))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(ent_from_row).collect()
}

/// Revokes an entitlement (admins).
pub async fn revoke(
    db: &Db,
    now_ms: i64,
    actor: &str,
    id: &str,
    request_id: &str,
) -> Result<(), ApiError> {
    let mut tx = db.begin_write().await?;
    let n = sqlx::query(
        "UPDATE entitlements SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?
    .rows_affected();
    if n == 0 {
        return Err(ApiError::NotFound(format!("no active entitlement {id}")));
    }
    audit::append(
        &mut tx,
        db.backend(),
        now_ms,
        &Entry {
            actor,
            action: "entitlement.revoke",
            subject: id,
            detail: serde_json::json!({}),
            request_id,
        },
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// SQL condition (on aliases `d` devices, `u` users, `e` entitlements, `p` plans) that a device
/// may receive a provider's signals at time `$2`: device active, account enabled, entitlement
/// started, not expired, not revoked. Shared by fan-out and the entitlement check.
pub const ENTITLED_SQL: &str = "d.revoked_at_ms IS NULL AND u.disabled_at_ms IS NULL \
     AND e.revoked_at_ms IS NULL AND e.starts_at_ms <= $2 \
     AND (e.expires_at_ms IS NULL OR e.expires_at_ms > $2)";

/// Devices entitled to `provider_user_id`'s signals at `now_ms`.
pub async fn entitled(
    db: &Db,
    provider_user_id: &str,
    now_ms: i64,
) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(crate::sql!(
        "SELECT DISTINCT d.id FROM devices d JOIN users u ON u.id = d.user_id \
         JOIN entitlements e ON e.user_id = d.user_id JOIN plans p ON p.id = e.plan_id \
         WHERE p.provider_user_id = $1 AND {ENTITLED_SQL} ORDER BY d.id"
    ))
    .bind(provider_user_id)
    .bind(now_ms)
    .fetch_all(db.pool())
    .await?)
}
