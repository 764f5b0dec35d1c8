//! The Stripe door: customers made before checkout, Checkout Sessions in subscription mode, the
//! Customer Portal, the webhook, and the re-read that turns Stripe's state into the ledger.
//!
//! Stripe's events are triggers, never truth: a verified event is stored by its id in the
//! transaction that applies the customer's state *as re-read from Stripe at that moment*
//! ([`sync_customer`]), so duplicated, reordered and missed events converge on what Stripe says.
//! Re-reads of one customer run one at a time on an instance (a keyed lock); the nightly
//! reconciliation re-reads every customer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ledger::{self, Door, EventKey, Observed, ObservedInvoice, ObservedStatus};
use super::stripe::{
    self, CheckoutRequest, InvoiceStatus, PlanPrice, StripeClient, StripeError, SubscriptionStatus,
};
use crate::api::extract::{Authed, Json, RequestId};
use crate::db::DbError;
use crate::error::{ApiError, Problem};
use crate::plans::{self, Plan};
use crate::state::AppState;

/// The webhook's route (exempt from the per-IP limit and from `http.max_in_flight`).
pub const WEBHOOK_PATH: &str = "/api/v1/billing/stripe/webhook";

/// Stripe as this hub is configured to reach it.
#[derive(Clone)]
pub struct StripeDoor {
    client: Option<StripeClient>,
    webhook_secret: Option<secrecy::SecretString>,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Re-reads in flight on PostgreSQL, each holding a pooled connection for its advisory lock
    /// and using one more: bounded to a quarter of the pool so the rest of the hub keeps some.
    pg_syncs: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for StripeDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeDoor")
            .field("api", &self.client.is_some())
            .field("webhook", &self.webhook_secret.is_some())
            .finish()
    }
}

impl Default for StripeDoor {
    fn default() -> Self {
        StripeDoor {
            client: None,
            webhook_secret: None,
            locks: Arc::default(),
            pg_syncs: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }
}

impl StripeDoor {
    /// Stripe for `config.stripe` and the integration secrets: the API client when
    /// `stripe_secret_key` is set, the webhook check when `stripe_webhook_secret` is.
    pub fn new(
        config: &crate::config::Config,
        secrets: &crate::secrets::IntegrationSecrets,
    ) -> Result<StripeDoor, StripeError> {
        let client = match &secrets.stripe_secret_key {
            Some(key) => Some(StripeClient::new(&config.stripe.api_base_url, key)?),
            None => None,
        };
        let pool = usize::try_from(config.database_max_connections).unwrap_or(8);
        Ok(StripeDoor {
            client,
            webhook_secret: secrets.stripe_webhook_secret.clone(),
            locks: Arc::default(),
            pg_syncs: Arc::new(tokio::sync::Semaphore::new((pool / 4).max(1))),
        })
    }

    /// Whether Stripe sells (its API key is set).
    pub fn is_on(&self) -> bool {
        self.client.is_some()
    }

    fn client(&self) -> Result<&StripeClient, ApiError> {
        self.client.as_ref().ok_or(ApiError::NotConfigured("Stripe"))
    }

    fn lock_for(&self, customer: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 10_000 {
            map.retain(|_, l| Arc::strong_count(l) > 1);
        }
        map.entry(customer.to_string()).or_default().clone()
    }
}

fn upstream(e: StripeError) -> ApiError {
    tracing::warn!(error = %e, "stripe call failed");
    metrics::counter!("tradecast_billing_stripe_errors_total").increment(1);
    ApiError::Upstream("Stripe")
}

fn base_url(state: &AppState) -> Result<String, ApiError> {
    state
        .config
        .public_url
        .as_ref()
        .map(|u| u.as_str().to_string())
        .ok_or(ApiError::NotConfigured("public_url (Stripe needs it to send buyers back)"))
}

/// The Stripe customer this hub knows for `account_id` (none before its first checkout).
pub async fn known_customer(
    db: &crate::db::Db,
    account_id: &str,
) -> Result<Option<String>, DbError> {
    let id: Option<Option<String>> = sqlx::query_scalar(
        "SELECT stripe_customer_id FROM billing_customers WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(id.flatten())
}

/// The Stripe customer of `account_id`, created at Stripe (with our account id in its metadata)
/// and remembered the first time.
pub async fn customer_for(state: &AppState, account_id: &str) -> Result<String, ApiError> {
    let db = &state.db;
    if let Some(id) = known_customer(db, account_id).await? {
        return Ok(id);
    }
    let user = crate::accounts::user_by_id(db, account_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {account_id}")))?;
    let id = state
        .billing
        .stripe
        .client()?
        .create_customer(account_id, &user.email)
        .await
        .map_err(upstream)?;
    // Two requests racing create one customer at Stripe (the idempotency key is the account's)
    // and one row here.
    sqlx::query(
        "INSERT INTO billing_customers (account_id, stripe_customer_id, created_at_ms) \
         VALUES ($1, $2, $3) ON CONFLICT (account_id) DO UPDATE \
         SET stripe_customer_id = COALESCE(billing_customers.stripe_customer_id, excluded.stripe_customer_id)",
    )
    .bind(account_id)
    .bind(&id)
    .bind(state.now_ms())
    .execute(db.pool())
    .await
    .map_err(DbError::from)?;
    Ok(known_customer(db, account_id).await?.unwrap_or(id))
}

/// The Stripe Price of `plan`, made once and remembered on the plan.
pub async fn price_for(state: &AppState, plan: &Plan) -> Result<String, ApiError> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT stripe_price_id FROM plans WHERE id = $1")
            .bind(&plan.id)
            .fetch_one(state.db.pool())
            .await
            .map_err(DbError::from)?;
    if let Some(id) = stored {
        return Ok(id);
    }
    let price = PlanPrice {
        plan_id: &plan.id,
        name: &plan.name,
        amount_minor: plan.price_minor,
        currency: &plan.currency,
        period_days: plan.period_days,
    };
    let id = state.billing.stripe.client()?.ensure_price(&price).await.map_err(upstream)?;
    sqlx::query("UPDATE plans SET stripe_price_id = $1 WHERE id = $2")
        .bind(&id)
        .bind(&plan.id)
        .execute(state.db.pool())
        .await
        .map_err(DbError::from)?;
    Ok(id)
}

/// A plan to buy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// The plan.
    pub plan_id: String,
}

/// Where to send the buyer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Redirect {
    /// Stripe's page (Checkout or the Customer Portal).
    pub url: String,
}

/// A Checkout Session for `account_id` to buy `plan_id` by card: the URL of Stripe's page.
pub async fn checkout(
    state: &AppState,
    account_id: &str,
    plan_id: &str,
) -> Result<String, ApiError> {
    let plan = plans::by_id(&state.db, plan_id)
        .await?
        .filter(|p| p.archived_at_ms.is_none())
        .ok_or_else(|| ApiError::NotFound(format!("no plan {plan_id} on offer")))?;
    if plan.is_stars() {
        return Err(ApiError::Validation(
            "this plan is sold for Telegram Stars: buy it in the Telegram bot".into(),
        ));
    }
    if plan.price_minor == 0 {
        return Err(ApiError::Validation("this plan is free: an admin grants it".into()));
    }
    let now = state.now_ms();
    let live = ledger::subscriptions_of(&state.db, account_id)
        .await?
        .into_iter()
        .any(|s| s.plan_id == plan.id && s.covered_until_ms > now);
    if live {
        return Err(ApiError::Conflict(
            "you already subscribe to this plan: manage it from your account page".into(),
        ));
    }
    let base = base_url(state)?;
    let customer = customer_for(state, account_id).await?;
    let price_id = price_for(state, &plan).await?;
    // The affiliate the account is attributed to (its first touch), else the code it signed up
    // with: Checkout carries it as metadata `ref` (a payment can attribute an account).
    let referral: Option<String> = sqlx::query_scalar(
        "SELECT COALESCE((SELECT code FROM affiliate_referrals WHERE account_id = $1), \
         signup_ref) FROM users WHERE id = $1",
    )
    .bind(account_id)
    .fetch_one(state.db.pool())
    .await
    .map_err(DbError::from)?;
    // One session per (account, plan) per minute: a double click reuses it.
    let idempotency_key = format!("checkout:{account_id}:{}:{}", plan.id, now / 60_000);
    let success_url = format!("{base}/billing/return?session_id={{CHECKOUT_SESSION_ID}}");
    let cancel_url = format!("{base}/account?checkout=cancelled");
    let req = CheckoutRequest {
        customer: &customer,
        price_id: &price_id,
        trial_days: u32::try_from(plan.trial_days).ok().filter(|d| *d > 0),
        success_url: &success_url,
        cancel_url: &cancel_url,
        account_id,
        plan_id: &plan.id,
        referral: referral.as_deref(),
        idempotency_key: &idempotency_key,
    };
    let session =
        state.billing.stripe.client()?.create_checkout_session(&req).await.map_err(upstream)?;
    metrics::counter!("tradecast_billing_checkouts_total").increment(1);
    Ok(session.url)
}

/// A Customer Portal session for `account_id` (card, plan change with proration, cancellation at
/// period end): the URL of Stripe's page.
pub async fn portal(state: &AppState, account_id: &str) -> Result<String, ApiError> {
    let base = base_url(state)?;
    let Some(customer) = known_customer(&state.db, account_id).await? else {
        return Err(ApiError::NotFound("you have no card subscription yet".into()));
    };
    // The portal offers a change to any card plan on offer: each needs its Stripe Price.
    for plan in plans::list(&state.db, None, false).await? {
        if !plan.is_stars()
            && plan.price_minor > 0
            && let Err(e) = price_for(state, &plan).await
        {
            tracing::warn!(plan = %plan.id, error = %e, "plan not offered in the portal");
        }
    }
    let url = state
        .billing
        .stripe
        .client()?
        .create_portal_session(&customer, &format!("{base}/account"))
        .await
        .map_err(upstream)?;
    Ok(url)
}

/// Re-reads `customer`'s subscriptions and invoices from Stripe and applies them to
/// `account_id`'s ledger with `event` (if any) in one transaction.
pub async fn sync_customer(
    state: &AppState,
    account_id: &str,
    customer: &str,
    event: Option<EventKey<'_>>,
    request_id: &str,
) -> Result<ledger::Outcome, ApiError> {
    let door = &state.billing.stripe;
    door.client()?;
    let lock = door.lock_for(customer);
    let _held = lock.lock().await;
    // Across instances on PostgreSQL: a session advisory lock per customer, so a re-read taken
    // earlier is never applied after a later one (it is released with its connection, a crash
    // included). SQLite is one instance: the in-process lock above is the whole story.
    if state.db.backend() == crate::db::Backend::Postgres {
        let _permit = door.pg_syncs.acquire().await.map_err(|_| ApiError::Unavailable)?;
        let mut conn = state.db.pool().acquire().await.map_err(DbError::from)?;
        let key = advisory_key(customer);
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await
            .map_err(DbError::from)?;
        let result = reread_and_apply(state, account_id, customer, event, request_id).await;
        let unlocked =
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut *conn).await;
        if let Err(e) = unlocked {
            // The connection goes back to the pool holding the lock: close it instead.
            tracing::warn!(error = %e, "advisory unlock failed: closing the connection");
            conn.detach();
        }
        return result;
    }
    reread_and_apply(state, account_id, customer, event, request_id).await
}

/// The advisory-lock key of a Stripe customer (the first 8 bytes of its SHA-256).
fn advisory_key(customer: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("tradecast/stripe-customer:{customer}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

async fn reread_and_apply(
    state: &AppState,
    account_id: &str,
    customer: &str,
    event: Option<EventKey<'_>>,
    request_id: &str,
) -> Result<ledger::Outcome, ApiError> {
    let client = state.billing.stripe.client()?;
    let mut subs = client.subscriptions_of(customer).await.map_err(upstream)?;
    let invoices = client.invoices_of(customer).await.map_err(upstream)?;
    // A dispute lost on a subscription's payment is money taken back like a refund: the
    // subscription ends now (cancelled at Stripe, so it is not charged again) and its
    // entitlements with it. Idempotent per dispute; the cancellation's own event re-reads.
    let mut cancelled = false;
    for s in subs.iter().filter(|s| {
        !matches!(s.status, SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired)
    }) {
        let lost = invoices
            .iter()
            .filter(|i| i.subscription.as_deref() == Some(s.id.as_str()))
            .flat_map(|i| i.disputes.iter())
            .find(|d| d.state == stripe::DisputeState::Lost);
        if let Some(d) = lost {
            tracing::info!(subscription = %s.id, dispute = %d.id,
                "stripe dispute lost: cancelling the subscription");
            client
                .cancel_subscription_now(&s.id, &format!("tc-dispute-cancel-{}", d.id))
                .await
                .map_err(upstream)?;
            cancelled = true;
        }
    }
    if cancelled {
        subs = client.subscriptions_of(customer).await.map_err(upstream)?;
    }
    let mut observed = Vec::with_capacity(subs.len());
    for s in &subs {
        match observe(state, account_id, s, &invoices).await? {
            Some(o) => observed.push(o),
            None => tracing::warn!(
                subscription = %s.id,
                "stripe subscription names no plan of this hub: left out of the ledger"
            ),
        }
    }
    let known: std::collections::HashSet<&str> =
        observed.iter().map(|o| o.external_id.as_str()).collect();
    let inv: Vec<ObservedInvoice> = invoices
        .iter()
        .filter(|i| i.subscription.as_deref().is_none_or(|s| known.contains(s)))
        .filter_map(observe_invoice)
        .collect();
    ledger::apply(state, event, account_id, Door::Stripe, &observed, &inv, request_id).await
}

async fn observe(
    state: &AppState,
    account_id: &str,
    s: &stripe::Subscription,
    invoices: &[stripe::Invoice],
) -> Result<Option<Observed>, ApiError> {
    // The price decides the plan (a plan change in the portal keeps the first plan's metadata);
    // the metadata is the fallback for a price made elsewhere.
    let by_price: Option<String> = match &s.price_id {
        Some(price) => sqlx::query_scalar("SELECT id FROM plans WHERE stripe_price_id = $1")
            .bind(price)
            .fetch_optional(state.db.pool())
            .await
            .map_err(DbError::from)?,
        None => None,
    };
    let Some(plan_id) = by_price.or_else(|| s.plan_id.clone()) else {
        return Ok(None);
    };
    if plans::by_id(&state.db, &plan_id).await?.is_none() {
        return Ok(None);
    }
    let mine: Vec<&stripe::Invoice> =
        invoices.iter().filter(|i| i.subscription.as_deref() == Some(s.id.as_str())).collect();
    let unpaid_since_ms = mine
        .iter()
        .filter(|i| matches!(i.status, InvoiceStatus::Open | InvoiceStatus::Uncollectible))
        .map(|i| i.created_ms)
        .min();
    let latest_paid = mine
        .iter()
        .filter(|i| i.status == InvoiceStatus::Paid && i.amount_paid > 0)
        .max_by_key(|i| i.created_ms);
    let status = match &s.status {
        SubscriptionStatus::Other(text) => {
            // A status this hub does not know: the ledger keeps what it had, never a guess.
            tracing::warn!(subscription = %s.id, status = %text, "unknown stripe status: left as it was");
            return Ok(None);
        }
        SubscriptionStatus::Trialing => ObservedStatus::Trialing,
        SubscriptionStatus::Active => ObservedStatus::Active,
        SubscriptionStatus::PastDue => ObservedStatus::PastDue,
        SubscriptionStatus::Incomplete => ObservedStatus::Incomplete,
        SubscriptionStatus::Canceled
        | SubscriptionStatus::Unpaid
        | SubscriptionStatus::IncompleteExpired
        | SubscriptionStatus::Paused => ObservedStatus::Ended,
    };
    let refunded = status == ObservedStatus::Ended
        && latest_paid.is_some_and(|i| i.amount_refunded + lost_to_disputes(i) >= i.amount_paid);
    Ok(Some(Observed {
        external_id: s.id.clone(),
        account_id: account_id.to_string(),
        plan_id,
        status,
        period_start_ms: s.current_period_start_ms,
        period_end_ms: s.current_period_end_ms,
        cancel_at_period_end: s.cancel_at_period_end,
        trial_end_ms: s.trial_end_ms,
        ended_at_ms: s.ended_at_ms.or(s.canceled_at_ms),
        unpaid_since_ms,
        refunded,
        referral: s.referral.clone(),
        created_ms: s.created_ms,
    }))
}

fn observe_invoice(i: &stripe::Invoice) -> Option<ObservedInvoice> {
    let status = match &i.status {
        InvoiceStatus::Other(text) => {
            tracing::warn!(invoice = %i.id, status = %text, "unknown stripe invoice status: left out");
            return None;
        }
        InvoiceStatus::Draft => "draft",
        InvoiceStatus::Open => "open",
        InvoiceStatus::Paid => "paid",
        InvoiceStatus::Uncollectible => "uncollectible",
        InvoiceStatus::Void => "void",
    };
    Some(ObservedInvoice {
        external_id: i.id.clone(),
        subscription_external_id: i.subscription.clone(),
        status: status.into(),
        amount_due_minor: i.amount_due,
        amount_paid_minor: i.amount_paid,
        amount_refunded_minor: i.amount_refunded,
        currency: i.currency.to_ascii_uppercase(),
        period_start_ms: i.period_start_ms,
        period_end_ms: i.period_end_ms,
        billing_reason: i.billing_reason.clone(),
        hosted_url: i.hosted_invoice_url.clone(),
        created_ms: i.created_ms,
        paid_at_ms: i.paid_at_ms,
        processor: ledger::ProcessorFacts {
            fee_minor: i.fees,
            fee_currency: i.fees_currency.clone(),
            amount_disputed_minor: lost_to_disputes(i),
            dispute_open: i.disputes.iter().any(|d| d.state == stripe::DisputeState::Open),
            payment_fingerprint: i.card_fingerprint.clone(),
        },
    })
}

/// What an invoice lost to decided disputes (chargebacks), at most what was paid.
fn lost_to_disputes(i: &stripe::Invoice) -> i64 {
    let lost: i64 =
        i.disputes.iter().filter(|d| d.state == stripe::DisputeState::Lost).map(|d| d.amount).sum();
    lost.min(i.amount_paid)
}

/// The account behind a Stripe customer id.
pub async fn account_of_customer(
    state: &AppState,
    customer: &str,
) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar("SELECT account_id FROM billing_customers WHERE stripe_customer_id = $1")
        .bind(customer)
        .fetch_optional(state.db.pool())
        .await?)
}

/// What the webhook answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAnswer {
    /// `applied`, `duplicate` or `ignored` (a type or customer this hub does not follow).
    pub outcome: String,
}

/// Stripe's webhook: verified with `stripe_webhook_secret` over the raw body, stored by event id
/// with the customer's state re-read from Stripe. 200 for applied, duplicate and ignored events
/// (unknown types included); 400 `invalid-signature`; 413 over 256 KiB; 502 when Stripe could not
/// be re-read (Stripe retries the event).
#[utoipa::path(post, path = "/api/v1/billing/stripe/webhook", tag = "billing",
    request_body(content = String, content_type = "application/json", description = "Stripe's event, verified byte for byte"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix s>,v1=<hex HMAC-SHA256>[,v1=…]")),
    responses(
    (status = 200, body = WebhookAnswer),
    (status = 400, description = "invalid-signature", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "payload-too-large", body = Problem, content_type = "application/problem+json"),
    (status = 502, description = "upstream-error: Stripe could not be re-read", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "not-configured: no stripe_webhook_secret", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn webhook(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, axum::Json<WebhookAnswer>), ApiError> {
    let body = body?;
    let Some(secret) = &state.billing.stripe.webhook_secret else {
        return Err(ApiError::NotConfigured("the Stripe webhook (stripe_webhook_secret)"));
    };
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    let now_s = state.now_ms() / 1000;
    use secrecy::ExposeSecret;
    if let Err(e) = stripe::signature::verify(secret.expose_secret(), header, &body, now_s) {
        metrics::counter!("tradecast_billing_webhooks_total", "outcome" => "invalid-signature")
            .increment(1);
        return Err(ApiError::InvalidSignature(e.to_string()));
    }
    let answer = |outcome: &str| {
        metrics::counter!("tradecast_billing_webhooks_total", "outcome" => outcome.to_string())
            .increment(1);
        Ok((StatusCode::OK, axum::Json(WebhookAnswer { outcome: outcome.into() })))
    };
    let Ok(event) = stripe::signature::parse_event(&body) else {
        // Signed, so Stripe's, but not an event this hub can read: remembered by its id when it
        // has one (a replay reads as a duplicate), answered 200 so Stripe does not retry it.
        tracing::info!("stripe webhook: signed event the hub cannot read: ignored");
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned));
        if let Some(id) = id.filter(|i| !i.is_empty() && i.len() <= 255) {
            let key = EventKey { door: Door::Stripe, event_id: &id, kind: "unreadable" };
            if !remember(&state, &key).await? {
                return answer("duplicate");
            }
        }
        return answer("ignored");
    };
    let followed = ["customer.subscription.", "invoice.", "checkout.session.", "charge."]
        .iter()
        .any(|p| event.event_type.starts_with(p));
    // A dispute names its charge, not the customer: the charge says whose it is.
    let customer = match (&event.customer, &event.charge, &state.billing.stripe.client) {
        (Some(c), _, _) => Some(c.clone()),
        (None, Some(charge), Some(client)) if followed && event.object_type == "dispute" => {
            client.customer_of_charge(charge).await.map_err(upstream)?
        }
        _ => None,
    };
    let account = match &customer {
        Some(c) if followed => account_of_customer(&state, c).await?,
        _ => None,
    };
    let key = EventKey { door: Door::Stripe, event_id: &event.id, kind: &event.event_type };
    // A delivery seen before answers at once, without a re-read (the transaction that applies a
    // new one checks again: two copies racing here are still applied once).
    if seen(&state, &key).await? {
        return answer("duplicate");
    }
    let (Some(account), Some(customer)) = (account, customer.as_deref()) else {
        // Not ours to follow: remembered so a replay is recognised, and answered 200.
        let fresh = remember(&state, &key).await?;
        return answer(if fresh { "ignored" } else { "duplicate" });
    };
    if state.billing.stripe.client.is_none() {
        return Err(ApiError::NotConfigured("Stripe (stripe_secret_key)"));
    }
    let out = sync_customer(&state, &account, customer, Some(key), &request_id).await?;
    answer(if out.duplicate { "duplicate" } else { "applied" })
}

async fn seen(state: &AppState, key: &EventKey<'_>) -> Result<bool, ApiError> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM billing_events WHERE door = $1 AND event_id = $2")
            .bind(key.door.as_str())
            .bind(key.event_id)
            .fetch_one(state.db.pool())
            .await
            .map_err(DbError::from)?;
    Ok(n > 0)
}

async fn remember(state: &AppState, key: &EventKey<'_>) -> Result<bool, ApiError> {
    let r = sqlx::query(
        "INSERT INTO billing_events (door, event_id, kind, account_id, received_at_ms) \
         VALUES ($1, $2, $3, NULL, $4) ON CONFLICT DO NOTHING",
    )
    .bind(key.door.as_str())
    .bind(key.event_id)
    .bind(key.kind)
    .bind(state.now_ms())
    .execute(state.db.pool())
    .await
    .map_err(DbError::from)?;
    Ok(r.rows_affected() > 0)
}

/// Start a card checkout of a plan: answers the URL of Stripe's Checkout page.
#[utoipa::path(post, path = "/api/v1/billing/checkout", tag = "billing", request_body = CheckoutBody, security(("bearer" = [])), responses(
    (status = 201, body = Redirect),
    (status = 404, description = "no such plan on offer", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "already subscribed", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "a Stars or free plan", body = Problem, content_type = "application/problem+json"),
    (status = 502, description = "upstream-error", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "not-configured: Stripe or public_url is off", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn checkout_route(
    State(state): State<AppState>,
    authed: Authed,
    Json(body): Json<CheckoutBody>,
) -> Result<(StatusCode, axum::Json<Redirect>), ApiError> {
    let url = checkout(&state, &authed.user_id, &body.plan_id).await?;
    Ok((StatusCode::CREATED, axum::Json(Redirect { url })))
}

/// Open the Customer Portal (card, plan change, cancellation): answers its URL.
#[utoipa::path(post, path = "/api/v1/billing/portal", tag = "billing", security(("bearer" = [])), responses(
    (status = 201, body = Redirect),
    (status = 404, description = "no card subscription yet", body = Problem, content_type = "application/problem+json"),
    (status = 502, description = "upstream-error", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "not-configured: Stripe or public_url is off", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn portal_route(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<(StatusCode, axum::Json<Redirect>), ApiError> {
    let url = portal(&state, &authed.user_id).await?;
    Ok((StatusCode::CREATED, axum::Json(Redirect { url })))
}

/// Every customer re-read from Stripe (the nightly reconciliation): how many subscriptions
/// changed — each a difference between the ledger and Stripe that an event had not brought.
pub async fn reconcile_all(state: &AppState) -> Result<Reconciled, ApiError> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT account_id, stripe_customer_id FROM billing_customers ORDER BY account_id",
    )
    .fetch_all(state.db.pool())
    .await
    .map_err(DbError::from)?;
    let mut out = Reconciled::default();
    for (account, customer) in rows {
        let Some(customer) = customer else { continue };
        out.customers += 1;
        match sync_customer(state, &account, &customer, None, "reconcile").await {
            Ok(o) => {
                out.changed += o.changed.len();
                out.granted += o.granted;
                out.ended += o.ended;
            }
            Err(e) => {
                tracing::warn!(account = %account, error = %e, "reconcile: customer not re-read");
                out.failed += 1;
            }
        }
    }
    Ok(out)
}

/// What a reconciliation found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Reconciled {
    /// Customers re-read.
    pub customers: usize,
    /// Subscriptions the ledger had wrong.
    pub changed: usize,
    /// Entitlement intervals opened.
    pub granted: usize,
    /// Entitlement intervals ended.
    pub ended: usize,
    /// Customers Stripe did not answer for.
    pub failed: usize,
}

/// Refunds a card subscription (an owner's or admin's decision): its latest paid invoice is
/// refunded in full and the subscription cancelled now at Stripe (both with idempotency keys, so
/// a repeated click changes nothing), then the customer is re-read: the ledger says `refunded`
/// and the entitlement ends now — never earlier, so a device keeps the `Close` of what it holds.
pub async fn refund(
    state: &AppState,
    actor: &str,
    subscription_id: &str,
    request_id: &str,
) -> Result<ledger::Subscription, ApiError> {
    let sub = ledger::subscription(&state.db, subscription_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no subscription {subscription_id}")))?;
    if sub.door == Door::TelegramStars {
        return super::stars_door::refund(state, actor, &sub, request_id).await;
    }
    if matches!(sub.status, ledger::Status::Refunded) {
        return Ok(sub);
    }
    let client = state.billing.stripe.client()?;
    let Some(customer) = known_customer(&state.db, &sub.account_id).await? else {
        return Err(ApiError::NotFound("the subscriber has no Stripe customer".into()));
    };
    let last_paid = ledger::invoices_of(&state.db, &sub.account_id).await?.into_iter().find(|i| {
        i.subscription_id.as_deref() == Some(sub.id.as_str())
            && i.status == "paid"
            && i.amount_paid_minor > i.amount_refunded_minor
    });
    let mut refunded_minor = 0;
    if let Some(inv) = &last_paid {
        let r = client
            .refund_invoice(&inv.external_id, &format!("refund:{}", inv.external_id))
            .await
            .map_err(upstream)?;
        refunded_minor = r.amount;
    }
    client
        .cancel_subscription_now(&sub.external_id, &format!("cancel:{}", sub.external_id))
        .await
        .map_err(upstream)?;
    let entry = crate::audit::Entry {
        actor,
        action: "billing.refund",
        subject: &sub.id,
        detail: serde_json::json!({
            "external_id": sub.external_id,
            "invoice": last_paid.as_ref().map(|i| i.external_id.clone()),
            "amount_minor": refunded_minor,
        }),
        request_id,
    };
    crate::audit::record(&state.db, state.now_ms(), &entry).await?;
    sync_customer(state, &sub.account_id, &customer, None, request_id).await?;
    ledger::subscription(&state.db, subscription_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no subscription {subscription_id}")))
}

/// Refund a card subscription and end it now (owners and admins).
#[utoipa::path(post, path = "/api/v1/billing/subscriptions/{id}/refund", tag = "billing", security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription (the ledger's id)")),
    responses(
    (status = 200, body = ledger::Subscription),
    (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such subscription", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "not a card subscription", body = Problem, content_type = "application/problem+json"),
    (status = 502, description = "upstream-error", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn refund_route(
    State(state): State<AppState>,
    crate::api::extract::Require(actor, ..): crate::api::extract::Admin,
    crate::api::extract::Path(id): crate::api::extract::Path<String>,
) -> Result<axum::Json<ledger::Subscription>, ApiError> {
    Ok(axum::Json(refund(&state, &actor.user_id, &id, &actor.request_id).await?))
}
