//! The hub's Stripe client: the few calls the billing ledger makes, through `async-stripe`'s
//! typed requests (the 1.0 release candidate pinned exactly, rustls + aws-lc-rs), pointed at
//! `[stripe] api_base_url` (Stripe, or the `tradecast-standins` stand-in in tests and the demo).
//!
//! The API version is the one async-stripe pins ([`api_version`]). In it a subscription's
//! period lives on its items (`items.data[].current_period_*`), an invoice names its
//! subscription under `parent.subscription_details.subscription`, and an invoice's payments are
//! `invoice_payment` objects (expanded with `payments`) that name a PaymentIntent: this module
//! reads that shape and maps it into the flat [`Subscription`] and [`Invoice`] the ledger uses.
//!
//! Every POST carries an idempotency key: derived from the hub's own ids where the brief of the
//! call is "once per thing" (a plan's price, an account's customer), given by the caller
//! otherwise. The secret key never reaches a log: [`StripeClient`]'s `Debug` redacts it and
//! [`StripeError`] never carries it.

pub mod signature;

use std::collections::HashMap;
use std::fmt;

use ::stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use futures::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::{ListInvoice, RetrieveInvoice};
use stripe_billing::subscription::{
    CancelSubscription, ListSubscription, ListSubscriptionStatus, RetrieveSubscription,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_core::charge::ListCharge;
use stripe_core::customer::CreateCustomer;
use stripe_core::dispute::ListDispute;
use stripe_core::refund::{CreateRefund, ListRefund};
use stripe_product::price::{
    CreatePrice, CreatePriceProductData, CreatePriceRecurring, CreatePriceRecurringInterval,
    ListPrice,
};
use stripe_types::Currency;

/// The Stripe API version every request is made with (pinned by async-stripe).
pub fn api_version() -> &'static str {
    stripe_client_core::VERSION.as_str()
}

/// Page size of the list calls (Stripe's maximum).
const PAGE: i64 = 100;

/// Why a Stripe call failed. Never carries the secret key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StripeError {
    /// The API base URL or the key cannot be used (e.g. not a URL, a key with a newline).
    #[error("stripe client configuration: {0}")]
    Config(String),
    /// Stripe was not reached, or the connection broke, or it timed out.
    #[error("stripe transport: {0}")]
    Transport(String),
    /// Stripe answered with an error object.
    #[error("stripe api error {status} {kind}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// `error.type`, e.g. `invalid_request_error`, `card_error`.
        kind: String,
        /// `error.code`, e.g. `parameter_unknown`, `resource_missing`.
        code: Option<String>,
        /// `error.message`.
        message: String,
    },
    /// Stripe's answer does not have the shape of the pinned API version.
    #[error("stripe answer not understood: {0}")]
    Decode(String),
    /// Stripe's answer is well-formed but lacks what the call needs (e.g. an unpaid invoice
    /// to refund, a Checkout session without a URL).
    #[error("stripe answer unusable: {0}")]
    Unexpected(String),
}

impl From<::stripe::StripeError> for StripeError {
    fn from(e: ::stripe::StripeError) -> Self {
        match e {
            ::stripe::StripeError::Stripe(err, status) => StripeError::Api {
                status,
                kind: err.type_.as_str().to_owned(),
                code: err.code.as_ref().map(|c| c.as_str().to_owned()),
                message: err.message.clone().unwrap_or_default(),
            },
            ::stripe::StripeError::JSONDeserialize(m) => StripeError::Decode(m),
            ::stripe::StripeError::ClientError(m) => StripeError::Transport(m),
            ::stripe::StripeError::Timeout => StripeError::Transport("timeout".into()),
            ::stripe::StripeError::ConfigError(m) => StripeError::Config(m),
        }
    }
}

/// A hub plan as Stripe sells it.
#[derive(Debug, Clone, Copy)]
pub struct PlanPrice<'a> {
    /// The hub's plan id (`lookup_key` `tc_plan_<plan_id>`, metadata `plan_id`).
    pub plan_id: &'a str,
    /// The product's name shown on Checkout and invoices.
    pub name: &'a str,
    /// Price per period in minor units.
    pub amount_minor: i64,
    /// ISO 4217, upper case (Stripe's lower case is made here).
    pub currency: &'a str,
    /// The plan's period: 7·n → n weeks, 30 → month, 90 → 3 months, 365 → year, else n days.
    pub period_days: i64,
}

/// A Checkout Session to create (subscription mode).
#[derive(Debug, Clone, Copy)]
pub struct CheckoutRequest<'a> {
    /// `cus_…` from [`StripeClient::create_customer`].
    pub customer: &'a str,
    /// `price_…` from [`StripeClient::ensure_price`].
    pub price_id: &'a str,
    /// Trial days (subscription_data.trial_period_days); `None` or 0 for none.
    pub trial_days: Option<u32>,
    /// Where Stripe sends the browser after payment; may contain `{CHECKOUT_SESSION_ID}`.
    pub success_url: &'a str,
    /// Where the browser goes when the trader gives up.
    pub cancel_url: &'a str,
    /// The hub account (metadata `account_id`).
    pub account_id: &'a str,
    /// The hub plan (metadata `plan_id`).
    pub plan_id: &'a str,
    /// A referral code (metadata `ref`).
    pub referral: Option<&'a str>,
    /// The POST's idempotency key.
    pub idempotency_key: &'a str,
}

/// A created Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    /// `cs_…`.
    pub id: String,
    /// The page the trader's browser is sent to.
    pub url: String,
}

/// Stripe's subscription statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Incomplete,
    IncompleteExpired,
    Paused,
    /// A status this version does not know (kept, never guessed).
    Other(String),
}

/// A subscription, flattened from the pinned API version's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub customer: String,
    pub status: SubscriptionStatus,
    /// The first item's price.
    pub price_id: Option<String>,
    /// metadata `plan_id`.
    pub plan_id: Option<String>,
    /// metadata `account_id`.
    pub account_id: Option<String>,
    /// metadata `ref`.
    pub referral: Option<String>,
    /// The first item's current period (unix ms).
    pub current_period_start_ms: i64,
    pub current_period_end_ms: i64,
    pub cancel_at_period_end: bool,
    pub canceled_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub trial_end_ms: Option<i64>,
    pub created_ms: i64,
    /// `in_…`.
    pub latest_invoice: Option<String>,
}

/// Stripe's invoice statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Uncollectible,
    Void,
    /// A status this version does not know.
    Other(String),
}

/// An invoice, flattened; `amount_refunded` is the sum of the succeeded refunds of its payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: String,
    pub customer: String,
    pub subscription: Option<String>,
    pub status: InvoiceStatus,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub amount_refunded: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    pub created_ms: i64,
    pub paid_at_ms: Option<i64>,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    /// e.g. `subscription_create`, `subscription_cycle`, `subscription_update`.
    pub billing_reason: Option<String>,
    pub attempt_count: i64,
    pub hosted_invoice_url: Option<String>,
    /// The PaymentIntents that paid it (`pi_…`), from its invoice payments.
    pub payment_intents: Vec<String>,
    /// What Stripe took of its payments: processing fees and dispute fees, from their balance
    /// transactions (in the balance's currency, `fees_currency`).
    pub fees: i64,
    /// ISO 4217, upper case: the currency of `fees` (Stripe's settlement currency); `None`
    /// when no balance transaction was read.
    pub fees_currency: Option<String>,
    /// The paying card's fingerprint (the same card gives the same value on every customer).
    pub card_fingerprint: Option<String>,
    /// The disputes (chargebacks) of its payments.
    pub disputes: Vec<Dispute>,
}

/// Where a dispute stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeState {
    /// Still to be decided (needs response, under review, warnings).
    Open,
    /// Decided for the merchant: the amount came back (the fee did not).
    Won,
    /// Decided for the cardholder: the amount is gone.
    Lost,
}

/// A dispute of an invoice's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispute {
    /// `du_…`.
    pub id: String,
    /// Disputed, minor units of the invoice's currency.
    pub amount: i64,
    pub state: DisputeState,
    /// When the cardholder opened it (unix ms).
    pub created_ms: i64,
}

/// What Stripe reports of the payments behind an invoice.
#[derive(Debug, Default)]
struct PaymentFacts {
    refunded: i64,
    fees: i64,
    fees_currency: Option<String>,
    card_fingerprint: Option<String>,
    disputes: Vec<Dispute>,
}

impl PaymentFacts {
    /// Adds a balance transaction's fee. Every balance transaction of one Stripe account is in
    /// its settlement currency; a fee in another currency is left out and said so.
    fn add_fee(&mut self, fee: i64, currency: &Currency) {
        let currency = upper(currency);
        match &self.fees_currency {
            Some(c) if *c != currency => {
                tracing::warn!(fee_currency = %currency, kept = %c,
                    "stripe fee in a second settlement currency: left out of the ledger's fees");
            }
            _ => {
                self.fees = self.fees.saturating_add(fee);
                self.fees_currency = Some(currency);
            }
        }
    }
}

/// A refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: String,
}

/// The hub's Stripe client. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct StripeClient {
    client: Client,
    api_base_url: String,
    page: i64,
}

impl fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeClient")
            .field("api_base_url", &self.api_base_url)
            .field("secret_key", &"[redacted]")
            .finish()
    }
}

fn idem(key: &str) -> Result<RequestStrategy, StripeError> {
    IdempotencyKey::new(key)
        .map(RequestStrategy::Idempotent)
        .map_err(|e| StripeError::Config(format!("idempotency key: {e}")))
}

fn ms(s: i64) -> i64 {
    s.saturating_mul(1000)
}

fn upper(c: &Currency) -> String {
    c.to_string().to_ascii_uppercase()
}

/// period_days → Stripe's recurring interval and count.
pub fn interval_of(period_days: i64) -> Result<(CreatePriceRecurringInterval, u64), StripeError> {
    use CreatePriceRecurringInterval::*;
    if !(1..=365).contains(&period_days) {
        return Err(StripeError::Config(format!(
            "a plan period of {period_days} days cannot be a Stripe interval (1 to 365 days)"
        )));
    }
    Ok(match period_days {
        365 => (Year, 1),
        30 => (Month, 1),
        90 => (Month, 3),
        // Stripe's maximum is one year: 52 weeks.
        d if d % 7 == 0 => (Week, (d / 7) as u64),
        d => (Day, d as u64),
    })
}

fn status_of(s: &stripe_shared::SubscriptionStatus) -> SubscriptionStatus {
    use stripe_shared::SubscriptionStatus as S;
    match s {
        S::Trialing => SubscriptionStatus::Trialing,
        S::Active => SubscriptionStatus::Active,
        S::PastDue => SubscriptionStatus::PastDue,
        S::Canceled => SubscriptionStatus::Canceled,
        S::Unpaid => SubscriptionStatus::Unpaid,
        S::Incomplete => SubscriptionStatus::Incomplete,
        S::IncompleteExpired => SubscriptionStatus::IncompleteExpired,
        S::Paused => SubscriptionStatus::Paused,
        other => SubscriptionStatus::Other(other.as_str().to_owned()),
    }
}

fn invoice_status_of(s: Option<&stripe_shared::InvoiceStatus>) -> InvoiceStatus {
    use stripe_shared::InvoiceStatus as S;
    match s {
        Some(S::Draft) | None => InvoiceStatus::Draft,
        Some(S::Open) => InvoiceStatus::Open,
        Some(S::Paid) => InvoiceStatus::Paid,
        Some(S::Uncollectible) => InvoiceStatus::Uncollectible,
        Some(S::Void) => InvoiceStatus::Void,
        Some(other) => InvoiceStatus::Other(other.as_str().to_owned()),
    }
}

fn flat_subscription(s: stripe_shared::Subscription) -> Subscription {
    let item = s.items.data.first();
    let meta = |k: &str| s.metadata.get(k).cloned();
    Subscription {
        id: s.id.to_string(),
        customer: s.customer.id().to_string(),
        status: status_of(&s.status),
        price_id: item.map(|i| i.price.id.to_string()),
        plan_id: meta("plan_id"),
        account_id: meta("account_id"),
        referral: meta("ref"),
        current_period_start_ms: item
            .map(|i| ms(i.current_period_start))
            .unwrap_or(ms(s.start_date)),
        current_period_end_ms: item.map(|i| ms(i.current_period_end)).unwrap_or(ms(s.start_date)),
        cancel_at_period_end: s.cancel_at_period_end,
        canceled_at_ms: s.canceled_at.map(ms),
        ended_at_ms: s.ended_at.map(ms),
        trial_end_ms: s.trial_end.map(ms),
        created_ms: ms(s.created),
        latest_invoice: s
            .latest_invoice
            .as_ref()
            .and_then(|i| i.id().as_ref().map(|id| id.to_string())),
    }
}

fn payment_intents_of(inv: &stripe_shared::Invoice) -> Vec<String> {
    inv.payments
        .as_ref()
        .map(|l| {
            l.data
                .iter()
                .filter(|p| p.status == "paid")
                .filter_map(|p| p.payment.payment_intent.as_ref().map(|pi| pi.id().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn flat_invoice(inv: stripe_shared::Invoice, facts: PaymentFacts) -> Result<Invoice, StripeError> {
    let payment_intents = payment_intents_of(&inv);
    let id = inv
        .id
        .as_ref()
        .map(|i| i.to_string())
        .ok_or_else(|| StripeError::Unexpected("an invoice without id".into()))?;
    let customer = inv
        .customer
        .as_ref()
        .map(|c| c.id().to_string())
        .ok_or_else(|| StripeError::Unexpected(format!("invoice {id} without customer")))?;
    let subscription = inv
        .parent
        .as_ref()
        .and_then(|p| p.subscription_details.as_ref())
        .map(|d| d.subscription.id().to_string())
        .or_else(|| inv.subscription.as_ref().map(|s| s.id().to_string()));
    Ok(Invoice {
        id,
        customer,
        subscription,
        status: invoice_status_of(inv.status.as_ref()),
        amount_due: inv.amount_due,
        amount_paid: inv.amount_paid,
        amount_refunded: facts.refunded,
        currency: upper(&inv.currency),
        created_ms: ms(inv.created),
        paid_at_ms: inv.status_transitions.paid_at.map(ms),
        period_start_ms: ms(inv.period_start),
        period_end_ms: ms(inv.period_end),
        billing_reason: inv.billing_reason.as_ref().map(|r| r.as_str().to_owned()),
        attempt_count: i64::try_from(inv.attempt_count).unwrap_or(i64::MAX),
        hosted_invoice_url: inv.hosted_invoice_url.clone(),
        payment_intents,
        fees: facts.fees,
        fees_currency: facts.fees_currency,
        card_fingerprint: facts.card_fingerprint,
        disputes: facts.disputes,
    })
}

fn dispute_state(status: &stripe_shared::DisputeStatus) -> DisputeState {
    use stripe_shared::DisputeStatus as S;
    match status {
        S::Won | S::WarningClosed | S::Prevented => DisputeState::Won,
        S::Lost => DisputeState::Lost,
        // Needs response, under review, warnings, and a status this version does not know:
        // undecided, so nothing is reversed on a guess.
        _ => DisputeState::Open,
    }
}

impl StripeClient {
    /// A client of the Stripe API at `api_base_url` (e.g. `https://api.stripe.com`).
    pub fn new(api_base_url: &str, secret_key: &SecretString) -> Result<Self, StripeError> {
        // async-stripe joins `{base}v1{path}`: the base must end with a slash.
        let base = format!("{}/", api_base_url.trim_end_matches('/'));
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(StripeError::Config("api_base_url must be an http(s) URL".into()));
        }
        let client = ClientBuilder::new(secret_key.expose_secret())
            .url(base.clone())
            .app_info("tradecast-hub", Some(env!("CARGO_PKG_VERSION").into()), None)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            // The builder's messages name the header, never its value.
            .map_err(StripeError::from)?;
        Ok(StripeClient { client, api_base_url: base, page: PAGE })
    }

    /// The page size of the list calls (default and maximum 100); small pages in tests prove
    /// that every page is read.
    pub fn with_page_size(mut self, n: i64) -> Self {
        self.page = n.clamp(1, PAGE);
        self
    }

    /// The Stripe Price of a hub plan, created once (Product + recurring Price, lookup_key
    /// `tc_plan_<plan_id>`, metadata plan_id) and found again by lookup_key. Idempotent.
    ///
    /// A price found under the key with another amount, currency or interval (the plan's price
    /// changed) is replaced: a new Price takes the lookup key over (`transfer_lookup_key`);
    /// existing subscriptions keep their old price.
    pub async fn ensure_price(&self, plan: &PlanPrice<'_>) -> Result<String, StripeError> {
        let lookup_key = format!("tc_plan_{}", plan.plan_id);
        let currency: Currency =
            plan.currency.to_ascii_lowercase().parse().unwrap_or_else(|e| match e {});
        let (interval, count) = interval_of(plan.period_days)?;
        let found = ListPrice::new()
            .lookup_keys(vec![lookup_key.clone()])
            .active(true)
            .limit(1)
            .send(&self.client)
            .await?;
        if let Some(p) = found.data.first() {
            let same = p.unit_amount == Some(plan.amount_minor)
                && p.currency == currency
                && p.recurring.as_ref().is_some_and(|r| {
                    r.interval.as_str() == interval.as_str() && r.interval_count == count
                });
            if same {
                return Ok(p.id.to_string());
            }
        }
        let meta = HashMap::from([("plan_id".to_owned(), plan.plan_id.to_owned())]);
        let mut product = CreatePriceProductData::new(plan.name);
        product.metadata = Some(meta.clone());
        let mut recurring = CreatePriceRecurring::new(interval);
        recurring.interval_count = Some(count);
        // The key names what is created and what it replaces: the same plan price asked for
        // again (a retry, another instance) is one Price; a price changed back and forth is not
        // an idempotency conflict.
        let replacing = found.data.first().map(|p| p.id.to_string());
        let key = format!(
            "tc_price_{}_{}_{}_{}_{}",
            plan.plan_id,
            plan.amount_minor,
            plan.currency,
            plan.period_days,
            replacing.as_deref().unwrap_or("new")
        );
        let price = CreatePrice::new(currency)
            .unit_amount(plan.amount_minor)
            .product_data(product)
            .recurring(recurring)
            .lookup_key(lookup_key)
            .transfer_lookup_key(!found.data.is_empty())
            .metadata(meta)
            .customize()
            .request_strategy(idem(&key)?)
            .send(&self.client)
            .await?;
        Ok(price.id.to_string())
    }

    /// A Stripe customer for a hub account (metadata account_id; idempotency key from the
    /// account id, so a retried sign-up never makes two).
    pub async fn create_customer(
        &self,
        account_id: &str,
        email: &str,
    ) -> Result<String, StripeError> {
        let c = CreateCustomer::new()
            .email(email)
            .metadata(HashMap::from([("account_id".to_owned(), account_id.to_owned())]))
            .customize()
            .request_strategy(idem(&format!("tc_customer_{account_id}"))?)
            .send(&self.client)
            .await?;
        Ok(c.id.to_string())
    }

    /// A Checkout Session in subscription mode for one price; metadata `account_id`, `plan_id`
    /// and `ref` on the session and on the subscription it creates.
    pub async fn create_checkout_session(
        &self,
        req: &CheckoutRequest<'_>,
    ) -> Result<CheckoutSession, StripeError> {
        let mut meta = HashMap::from([
            ("account_id".to_owned(), req.account_id.to_owned()),
            ("plan_id".to_owned(), req.plan_id.to_owned()),
        ]);
        if let Some(r) = req.referral {
            meta.insert("ref".to_owned(), r.to_owned());
        }
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(req.price_id.to_owned());
        item.quantity = Some(1);
        let mut sub = CreateCheckoutSessionSubscriptionData::new();
        sub.metadata = Some(meta.clone());
        sub.trial_period_days = req.trial_days.filter(|d| *d > 0);
        let s = CreateCheckoutSession::new()
            .mode(stripe_shared::CheckoutSessionMode::Subscription)
            .customer(req.customer)
            .line_items(vec![item])
            .subscription_data(sub)
            .success_url(req.success_url)
            .cancel_url(req.cancel_url)
            .client_reference_id(req.account_id)
            .metadata(meta)
            .customize()
            .request_strategy(idem(req.idempotency_key)?)
            .send(&self.client)
            .await?;
        let url = s.url.ok_or_else(|| {
            StripeError::Unexpected(format!("checkout session {} has no url", s.id))
        })?;
        Ok(CheckoutSession { id: s.id.to_string(), url })
    }

    /// A Customer Portal session's URL (card change, plan change, cancel at period end).
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
    ) -> Result<String, StripeError> {
        // A portal session is single-use and short-lived: a fresh key per call (a retry
        // within the call is the same request).
        let key = format!("tc_portal_{customer}_{}", random_suffix());
        let s = CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url)
            .customize()
            .request_strategy(idem(&key)?)
            .send(&self.client)
            .await?;
        Ok(s.url)
    }

    /// Every subscription of the customer, any status, all pages.
    pub async fn subscriptions_of(&self, customer: &str) -> Result<Vec<Subscription>, StripeError> {
        let all: Vec<stripe_shared::Subscription> = ListSubscription::new()
            .customer(customer)
            .status(ListSubscriptionStatus::All)
            .limit(self.page)
            .paginate()
            .stream(&self.client)
            .try_collect()
            .await?;
        Ok(all.into_iter().map(flat_subscription).collect())
    }

    /// Every invoice of the customer, all pages, with their payments and refunded amounts.
    pub async fn invoices_of(&self, customer: &str) -> Result<Vec<Invoice>, StripeError> {
        let all: Vec<stripe_shared::Invoice> = ListInvoice::new()
            .customer(customer)
            .limit(self.page)
            .expand(vec!["data.payments".to_owned()])
            .paginate()
            .stream(&self.client)
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(all.len());
        for inv in all {
            let mut facts = PaymentFacts::default();
            for pi in payment_intents_of(&inv) {
                facts.refunded += self.refunded_of(&pi).await?;
                self.charges_of(&pi, &mut facts).await?;
            }
            out.push(flat_invoice(inv, facts)?);
        }
        Ok(out)
    }

    /// The succeeded charges of a PaymentIntent (their fees and card) and its disputes.
    async fn charges_of(
        &self,
        payment_intent: &str,
        facts: &mut PaymentFacts,
    ) -> Result<(), StripeError> {
        let charges: Vec<stripe_shared::Charge> = ListCharge::new()
            .payment_intent(payment_intent)
            .limit(self.page)
            .expand(vec!["data.balance_transaction".to_owned()])
            .paginate()
            .stream(&self.client)
            .try_collect()
            .await?;
        for c in charges.iter().filter(|c| c.status == stripe_shared::ChargeStatus::Succeeded) {
            if let Some(::stripe_types::Expandable::Object(t)) = &c.balance_transaction {
                facts.add_fee(t.fee, &t.currency);
            }
            let card = c.payment_method_details.as_ref().and_then(|d| d.card.as_ref());
            if let Some(f) = card.and_then(|c| c.fingerprint.clone()) {
                facts.card_fingerprint = Some(f);
            }
        }
        let disputes: Vec<stripe_shared::Dispute> = ListDispute::new()
            .payment_intent(payment_intent)
            .limit(self.page)
            .paginate()
            .stream(&self.client)
            .try_collect()
            .await?;
        for d in disputes {
            for t in &d.balance_transactions {
                facts.add_fee(t.fee, &t.currency);
            }
            facts.disputes.push(Dispute {
                id: d.id.to_string(),
                amount: d.amount,
                state: dispute_state(&d.status),
                created_ms: ms(d.created),
            });
        }
        Ok(())
    }

    /// The customer a charge was made to (a dispute's event names only the charge).
    pub async fn customer_of_charge(&self, charge: &str) -> Result<Option<String>, StripeError> {
        let c = stripe_core::charge::RetrieveCharge::new(charge).send(&self.client).await?;
        Ok(c.customer.as_ref().map(|c| c.id().to_string()))
    }

    async fn refunded_of(&self, payment_intent: &str) -> Result<i64, StripeError> {
        let refunds: Vec<stripe_shared::Refund> = ListRefund::new()
            .payment_intent(payment_intent)
            .limit(self.page)
            .paginate()
            .stream(&self.client)
            .try_collect()
            .await?;
        Ok(refunds
            .iter()
            .filter(|r| matches!(r.status.as_deref(), Some("succeeded") | Some("pending")))
            .map(|r| r.amount)
            .sum())
    }

    /// Cancels now (used with a refund): no proration, no final invoice. Idempotency key given.
    pub async fn cancel_subscription_now(
        &self,
        subscription: &str,
        idempotency_key: &str,
    ) -> Result<(), StripeError> {
        let r = CancelSubscription::new(subscription)
            .customize()
            .request_strategy(idem(idempotency_key)?)
            .send(&self.client)
            .await;
        match r {
            Ok(_) => Ok(()),
            // Refused: fine if it is already canceled (a retry after a lost answer, another
            // instance, the customer in the portal); the subscription says so itself.
            Err(::stripe::StripeError::Stripe(e, status)) if (400..500).contains(&status) => {
                let s = RetrieveSubscription::new(subscription).send(&self.client).await?;
                if s.status == stripe_shared::SubscriptionStatus::Canceled {
                    Ok(())
                } else {
                    Err(::stripe::StripeError::Stripe(e, status).into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Refunds a paid invoice's payment in full. Idempotency key given.
    pub async fn refund_invoice(
        &self,
        invoice: &str,
        idempotency_key: &str,
    ) -> Result<Refund, StripeError> {
        let inv = RetrieveInvoice::new(invoice)
            .expand(vec!["payments".to_owned()])
            .send(&self.client)
            .await?;
        let pi = payment_intents_of(&inv).into_iter().next().ok_or_else(|| {
            StripeError::Unexpected(format!("invoice {invoice} has no paid payment to refund"))
        })?;
        let r = CreateRefund::new()
            .payment_intent(pi)
            .metadata(HashMap::from([("invoice".to_owned(), invoice.to_owned())]))
            .customize()
            .request_strategy(idem(idempotency_key)?)
            .send(&self.client)
            .await?;
        Ok(Refund { id: r.id.to_string(), amount: r.amount, currency: upper(&r.currency) })
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 12];
    // Without OS randomness the key is still unique enough per process: the time.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("{t:x}");
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let f = |d| interval_of(d).map(|(i, n)| (i.as_str().to_owned(), n)).ok();
        assert_eq!(f(7), Some(("week".into(), 1)));
        assert_eq!(f(14), Some(("week".into(), 2)));
        assert_eq!(f(30), Some(("month".into(), 1)));
        assert_eq!(f(90), Some(("month".into(), 3)));
        assert_eq!(f(365), Some(("year".into(), 1)));
        assert_eq!(f(10), Some(("day".into(), 10)));
        assert_eq!(f(364), Some(("week".into(), 52)));
        assert_eq!(f(0), None);
        assert_eq!(f(366), None);
    }

    #[test]
    fn debug_redacts_the_key() {
        let c = StripeClient::new("http://127.0.0.1:1", &SecretString::from("sk_test_SECRET123"))
            .unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("SECRET123"), "{d}");
        assert!(d.contains("redacted"));
    }
}
