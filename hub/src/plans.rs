//! The catalog: products and their plans. A product is what a provider sells (a name and a
//! description); a plan is one way to buy it (price in minor units with an ISO 4217 currency
//! code, never a float, or whole Telegram Stars; a period; trial days; the features it gives; a
//! device limit). Granting a plan to an account is an entitlement (`crate::entitlements`), which
//! entitles that account's devices to the provider's signals.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::accounts::{self, Role};
use crate::audit::{self, Entry};
use crate::db::{Db, DbError};
use crate::error::ApiError;
use crate::ids;
use tradecast_protocol::Feature;

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
    /// What the plan gives (the protocol's `Feature` names, as carried to the node in a
    /// hub-signed `FeatureGrant`), sorted.
    pub features: Vec<String>,
    /// Days of free use before the first charge (0: none).
    pub trial_days: i64,
    /// Devices an account may enrol under this plan (`None`: no limit).
    pub device_limit: Option<i64>,
    /// What the plan is, in the provider's words (plain text, at most 500 characters).
    pub description: String,
    /// The product it sells.
    pub product_id: String,
}

/// A product: what a provider sells; its plans are the ways to buy it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Product {
    /// Product id.
    pub id: String,
    /// The provider whose signals its plans grant.
    pub provider_user_id: String,
    /// Name shown to subscribers.
    pub name: String,
    /// What it is, in the provider's words (plain text, at most 500 characters).
    pub description: String,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
    /// Set when withdrawn (its plans with it).
    pub archived_at_ms: Option<i64>,
    /// Its plans (archived ones only when asked).
    pub plans: Vec<Plan>,
}

/// A new product.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// Provider account; defaults to the caller (required when an admin creates it).
    #[serde(default)]
    pub provider_user_id: Option<String>,
    /// 1-100 characters.
    pub name: String,
    /// Plain text, at most 500 characters.
    #[serde(default)]
    pub description: Option<String>,
}

impl Plan {
    /// Whether the plan is sold for Telegram Stars (priced in `XTR`, whole stars) rather than
    /// through Stripe.
    pub fn is_stars(&self) -> bool {
        self.currency == STARS
    }
}

/// The currency code of Telegram Stars (whole stars, no minor unit).
pub const STARS: &str = "XTR";

/// The features of a plan created without a list (what every plan gave before the list).
pub const DEFAULT_FEATURES: [&str; 2] = ["auto_copy", "signals"];

/// Validates, sorts and de-duplicates a feature list.
pub fn normalise_features(list: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::with_capacity(list.len());
    for f in list {
        if crate::features::feature(f).is_none() {
            let names: Vec<&str> = Feature::ALL.iter().map(|f| f.as_str()).collect();
            return Err(ApiError::Validation(format!(
                "`features`: {f:?} is not one of {}",
                names.join(", ")
            )));
        }
        out.push(f.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A plan's `features` column (a comma-separated list) as names, sorted.
pub(crate) fn features_from_sql(text: &str) -> Vec<String> {
    let mut list: Vec<String> =
        text.split(',').filter(|f| !f.is_empty()).map(str::to_string).collect();
    list.sort();
    list
}

/// A new plan.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
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
    /// Features (from `signals`, `auto_copy`, `telegram`, `mini_app`, `analytics`); default
    /// `signals` and `auto_copy`.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Free days before the first charge, 0-90 (default 0).
    #[serde(default)]
    pub trial_days: Option<i64>,
    /// Most devices an account enrols under this plan, 1-100 (default: no limit).
    #[serde(default)]
    pub device_limit: Option<i64>,
    /// Plain text, at most 500 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// The product this plan sells (one of the provider's, on offer); default: a new product
    /// with the plan's name and description.
    #[serde(default)]
    pub product_id: Option<String>,
}

const PLAN_COLUMNS: &str = "id, provider_user_id, name, price_minor, currency, period_days, created_at_ms, archived_at_ms, \
     features, trial_days, device_limit, description, COALESCE(product_id, id)";

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
        features: features_from_sql(&r.try_get::<String, _>(8)?),
        trial_days: r.try_get(9)?,
        device_limit: r.try_get(10)?,
        description: r.try_get(11)?,
        product_id: r.try_get(12)?,
    })
}

/// Who a catalog entry is for: a provider its own; an admin names the provider.
fn provider_of(actor: &str, actor_role: Role, named: Option<&String>) -> Result<String, ApiError> {
    match (named, actor_role) {
        (Some(p), r) if r.is_admin() => Ok(p.clone()),
        (None, Role::Provider) => Ok(actor.to_string()),
        (Some(p), Role::Provider) if p == actor => Ok(p.clone()),
        (_, Role::Provider) => {
            Err(ApiError::Forbidden("a provider manages its own catalog only".into()))
        }
        (None, r) if r.is_admin() => {
            Err(ApiError::Validation("`provider_user_id` is required".into()))
        }
        _ => Err(ApiError::Forbidden("this needs the provider, owner or admin role".into())),
    }
}

/// A name (1-100 characters) and a description (at most 500), trimmed.
fn name_and_description(
    name: &str,
    description: Option<&str>,
) -> Result<(String, String), ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::Validation("`name` must be 1-100 characters".into()));
    }
    let description = description.unwrap_or("").trim().to_string();
    if description.chars().count() > 500 {
        return Err(ApiError::Validation("`description` must be at most 500 characters".into()));
    }
    Ok((name.to_string(), description))
}

/// The provider account `id`, which must be a provider.
async fn provider_account(db: &Db, id: &str) -> Result<(), ApiError> {
    let user = accounts::user_by_id(db, id)
        .await?
        .ok_or_else(|| ApiError::Validation("`provider_user_id` is not an account".into()))?;
    if user.role != Role::Provider {
        return Err(ApiError::Validation("`provider_user_id` is not a provider".into()));
    }
    Ok(())
}

async fn insert_product(
    tx: &mut crate::feed::Tx,
    db: &Db,
    product: &Product,
    actor: &str,
    request_id: &str,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO products (id, provider_user_id, name, description, created_at_ms, \
         archived_at_ms) VALUES ($1, $2, $3, $4, $5, NULL)",
    )
    .bind(&product.id)
    .bind(&product.provider_user_id)
    .bind(&product.name)
    .bind(&product.description)
    .bind(product.created_at_ms)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    let detail = serde_json::json!({ "provider": product.provider_user_id, "name": product.name });
    audit::append(
        tx,
        db.backend(),
        product.created_at_ms,
        &Entry { actor, action: "product.create", subject: &product.id, detail, request_id },
    )
    .await?;
    Ok(())
}

/// Creates a product (no plan yet). A provider creates its own; an admin names the provider.
pub async fn create_product(
    db: &Db,
    now_ms: i64,
    actor: &str,
    actor_role: Role,
    new: &NewProduct,
    request_id: &str,
) -> Result<Product, ApiError> {
    let provider = provider_of(actor, actor_role, new.provider_user_id.as_ref())?;
    let (name, description) = name_and_description(&new.name, new.description.as_deref())?;
    provider_account(db, &provider).await?;
    let product = Product {
        id: ids::new_id(),
        provider_user_id: provider,
        name,
        description,
        created_at_ms: now_ms,
        archived_at_ms: None,
        plans: Vec::new(),
    };
    let mut tx = db.begin_write().await?;
    insert_product(&mut tx, db, &product, actor, request_id).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(product)
}

/// Products, optionally of one provider, each with its plans (archived ones when asked).
pub async fn products(
    db: &Db,
    provider: Option<&str>,
    include_archived: bool,
) -> Result<Vec<Product>, DbError> {
    let rows = sqlx::query(
        "SELECT id, provider_user_id, name, description, created_at_ms, archived_at_ms \
         FROM products WHERE ($1 = '' OR provider_user_id = $1) \
         AND ($2 = 1 OR archived_at_ms IS NULL) ORDER BY created_at_ms, id",
    )
    .bind(provider.unwrap_or(""))
    .bind(i64::from(include_archived))
    .fetch_all(db.pool())
    .await?;
    let all_plans = list(db, provider, include_archived).await?;
    rows.iter()
        .map(|r| {
            let mut product = product_from_row(r)?;
            product.plans =
                all_plans.iter().filter(|p| p.product_id == product.id).cloned().collect();
            Ok(product)
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// A `products` row (`id, provider_user_id, name, description, created_at_ms, archived_at_ms`),
/// without its plans.
fn product_from_row(r: &sqlx::any::AnyRow) -> Result<Product, sqlx::Error> {
    Ok(Product {
        id: r.try_get(0)?,
        provider_user_id: r.try_get(1)?,
        name: r.try_get(2)?,
        description: r.try_get(3)?,
        created_at_ms: r.try_get(4)?,
        archived_at_ms: r.try_get(5)?,
        plans: Vec::new(),
    })
}

/// Every product (archived too) by id, without their plans: one read for a page of offers.
pub async fn products_by_id(
    db: &Db,
) -> Result<std::collections::HashMap<String, Product>, DbError> {
    let rows = sqlx::query(
        "SELECT id, provider_user_id, name, description, created_at_ms, archived_at_ms \
         FROM products",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| product_from_row(r).map(|p| (p.id.clone(), p)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// The product with this id (archived too), without its plans.
pub async fn product_by_id(db: &Db, id: &str) -> Result<Option<Product>, DbError> {
    let row = sqlx::query(
        "SELECT id, provider_user_id, name, description, created_at_ms, archived_at_ms \
         FROM products WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(product_from_row).transpose().map_err(DbError::from)
}

/// Withdraws a product and every plan of it still on offer (existing entitlements stay until
/// they expire or are revoked), audited.
pub async fn archive_product(
    db: &Db,
    now_ms: i64,
    id: &str,
    actor: &str,
    actor_role: Role,
    request_id: &str,
) -> Result<Product, ApiError> {
    let not_found = || ApiError::NotFound(format!("no product {id}"));
    let product = product_by_id(db, id).await?.ok_or_else(not_found)?;
    if !(actor_role.is_admin() || product.provider_user_id == actor) {
        return Err(not_found());
    }
    if product.archived_at_ms.is_none() {
        let mut tx = db.begin_write().await?;
        sqlx::query("UPDATE products SET archived_at_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?;
        let archived = sqlx::query(
            "UPDATE plans SET archived_at_ms = $1 WHERE product_id = $2 AND archived_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
        let detail = serde_json::json!({ "plans_archived": archived.rows_affected() });
        audit::append(
            &mut tx,
            db.backend(),
            now_ms,
            &Entry { actor, action: "product.archive", subject: id, detail, request_id },
        )
        .await?;
        tx.commit().await.map_err(DbError::from)?;
    }
    let mut all = products(db, Some(&product.provider_user_id), true).await?;
    all.retain(|p| p.id == id);
    all.pop().ok_or_else(not_found)
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
    let provider = provider_of(actor, actor_role, new.provider_user_id.as_ref())?;
    let (name, description) = name_and_description(&new.name, new.description.as_deref())?;
    if new.price_minor < 0 {
        return Err(ApiError::Validation("`price_minor` must be 0 or more".into()));
    }
    if new.currency.len() != 3 || !new.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::Validation(
            "`currency` must be an ISO 4217 code like USD, or XTR for Telegram Stars".into(),
        ));
    }
    let trial_days = new.trial_days.unwrap_or(0);
    if !(0..=90).contains(&trial_days) {
        return Err(ApiError::Validation("`trial_days` must be 0-90".into()));
    }
    if new.device_limit.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(ApiError::Validation("`device_limit` must be 1-100".into()));
    }
    if new.currency == STARS && new.period_days != 30 && new.price_minor > 0 {
        return Err(ApiError::Validation(
            "a plan sold for Telegram Stars renews every 30 days: `period_days` must be 30".into(),
        ));
    }
    if !(1..=3660).contains(&new.period_days) {
        return Err(ApiError::Validation("`period_days` must be 1-3660".into()));
    }
    let features = match &new.features {
        Some(list) => normalise_features(list)?,
        None => DEFAULT_FEATURES.iter().map(|f| f.to_string()).collect(),
    };
    provider_account(db, &provider).await?;
    // The product it sells: one of the provider's on offer, or a new one named like the plan.
    let (product_id, new_product) = match &new.product_id {
        Some(pid) => {
            let product = product_by_id(db, pid)
                .await?
                .filter(|p| p.provider_user_id == provider && p.archived_at_ms.is_none());
            if product.is_none() {
                return Err(ApiError::Validation(format!(
                    "`product_id`: no product {pid} of this provider on offer"
                )));
            }
            (pid.clone(), None)
        }
        None => {
            let p = Product {
                id: ids::new_id(),
                provider_user_id: provider.clone(),
                name: name.clone(),
                description: description.clone(),
                created_at_ms: now_ms,
                archived_at_ms: None,
                plans: Vec::new(),
            };
            (p.id.clone(), Some(p))
        }
    };
    let plan = Plan {
        id: ids::new_id(),
        provider_user_id: provider,
        name,
        price_minor: new.price_minor,
        currency: new.currency.clone(),
        period_days: new.period_days,
        created_at_ms: now_ms,
        archived_at_ms: None,
        features,
        trial_days,
        device_limit: new.device_limit,
        description,
        product_id,
    };
    let mut tx = db.begin_write().await?;
    if let Some(p) = &new_product {
        insert_product(&mut tx, db, p, actor, request_id).await?;
    }
    sqlx::query(
        "INSERT INTO plans (id, provider_user_id, name, price_minor, currency, period_days, \
         created_at_ms, archived_at_ms, features, trial_days, device_limit, description, \
         product_id) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10, $11, $12)",
    )
    .bind(&plan.id)
    .bind(&plan.provider_user_id)
    .bind(&plan.name)
    .bind(plan.price_minor)
    .bind(&plan.currency)
    .bind(plan.period_days)
    .bind(now_ms)
    .bind(plan.features.join(","))
    .bind(plan.trial_days)
    .bind(plan.device_limit)
    .bind(&plan.description)
    .bind(&plan.product_id)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    let detail = serde_json::json!({ "provider": plan.provider_user_id, "product": plan.product_id, "price_minor": plan.price_minor, "currency": plan.currency, "features": plan.features });
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

/// The plan with this id (archived too).
pub async fn by_id(db: &Db, id: &str) -> Result<Option<Plan>, DbError> {
    let row = sqlx::query(crate::sql!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(plan_from_row).transpose()
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
