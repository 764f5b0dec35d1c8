//! The stand-in's in-memory Stripe account: its objects, how they render in the API version the
//! hub's client pins, and what Stripe does to them (checkout, charges, renewals, dunning,
//! cancellations, refunds), each change recording the events Stripe would send.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

/// The API version the stand-in's objects and events are shaped for (async-stripe 1.0.0-rc.10's).
pub const API_VERSION: &str = "2026-09-30.endive";

/// Days after a failed renewal at which Stripe's smart retries try again (then cancel).
pub const RETRY_DAYS: [i64; 2] = [3, 5];

const DAY: i64 = 86_400;

/// A test card's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKind {
    /// `4242424242424242` (Visa), `5555555555554444` (Mastercard), `4000056655665556` (Visa
    /// debit): every charge succeeds.
    Succeeds,
    /// `4000000000000259`: every charge succeeds, then the cardholder disputes it at once
    /// (`fraudulent`, `needs_response`); [`Account::close_dispute`] decides it.
    Disputed,
    /// `4000000000000341`: attaches to the customer, every charge fails.
    ChargesFail,
    /// `4000000000000002`: declined at checkout.
    Declined,
}

impl CardKind {
    /// The test card of a number (spaces allowed), or the decline message Stripe shows.
    pub fn of(number: &str) -> Result<CardKind, String> {
        let n: String = number.chars().filter(|c| !c.is_whitespace()).collect();
        match n.as_str() {
            "4242424242424242" | "5555555555554444" | "4000056655665556" => Ok(CardKind::Succeeds),
            "4000000000000259" => Ok(CardKind::Disputed),
            "4000000000000341" => Ok(CardKind::ChargesFail),
            "4000000000000002" => Ok(CardKind::Declined),
            "" => Err("Your card number is incomplete.".into()),
            n if n.len() < 13 || !n.bytes().all(|b| b.is_ascii_digit()) => Err("Your card number is invalid.".into()),
            _ => Err("Your card was declined. Your request was in test mode, but used a non test card. For a list of valid test cards, visit: https://stripe.com/docs/testing.".into()),
        }
    }
}

/// A test card's brand, as Stripe names it.
pub fn brand_of(number: &str) -> &'static str {
    if number.trim_start().starts_with('5') { "mastercard" } else { "visa" }
}

/// A card's fingerprint: the same card number gives the same value on every customer of the
/// account (as Stripe's does), different numbers different values.
pub fn fingerprint_of(number: &str) -> String {
    use sha2::Digest;
    let n: String = number.chars().filter(|c| !c.is_whitespace()).collect();
    let d = sha2::Sha256::digest(format!("tradecast-standin/card:{n}").as_bytes());
    data_encoding::BASE32_NOPAD.encode(&d[..10]).chars().take(16).collect()
}

/// The processing fee Stripe's standard pricing takes of a card charge: 2.9 % (rounded half
/// up to the minor unit) + 30 minor units.
pub const FEE_PERCENT_BP: i64 = 290;
/// The fixed part of the processing fee, minor units.
pub const FEE_FIXED_MINOR: i64 = 30;
/// The fee of a dispute (15.00 in the charge's currency), not returned when the dispute is won.
pub const DISPUTE_FEE_MINOR: i64 = 1500;

/// Stripe's processing fee of a charge of `amount` minor units.
pub fn processing_fee(amount: i64) -> i64 {
    (amount * FEE_PERCENT_BP + 5_000) / 10_000 + FEE_FIXED_MINOR
}

/// A card number as the Checkout form or the portal reads it.
#[derive(Debug, Clone)]
pub struct CardDetails {
    pub kind: CardKind,
    pub last4: String,
    pub brand: &'static str,
    pub fingerprint: String,
}

impl CardDetails {
    /// The test card of a number (spaces allowed), or the decline message Stripe shows.
    pub fn of(number: &str) -> Result<CardDetails, String> {
        let kind = CardKind::of(number)?;
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        let last4 = digits[digits.len().saturating_sub(4)..].to_owned();
        Ok(CardDetails {
            kind,
            last4,
            brand: brand_of(&digits),
            fingerprint: fingerprint_of(&digits),
        })
    }
}

/// A customer's card.
#[derive(Debug, Clone)]
pub struct Card {
    /// `pm_…`.
    pub pm: String,
    pub details: CardDetails,
}

/// Stripe's text for a declined card.
pub const DECLINED: &str = "Your card was declined.";

#[derive(Debug, Clone)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub active: bool,
    pub metadata: Map<String, Value>,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub struct Price {
    pub id: String,
    pub product: String,
    pub active: bool,
    pub currency: String,
    pub unit_amount: i64,
    pub interval: String,
    pub interval_count: i64,
    pub lookup_key: Option<String>,
    pub nickname: Option<String>,
    pub metadata: Map<String, Value>,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub metadata: Map<String, Value>,
    pub created: i64,
    pub card: Option<Card>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStatus {
    Open,
    Complete,
    Expired,
}

#[derive(Debug, Clone)]
pub struct CheckoutSession {
    pub id: String,
    pub customer: Option<String>,
    pub customer_email: Option<String>,
    pub price: String,
    pub quantity: i64,
    pub trial_days: Option<i64>,
    pub success_url: String,
    pub cancel_url: Option<String>,
    pub client_reference_id: Option<String>,
    pub metadata: Map<String, Value>,
    pub sub_metadata: Map<String, Value>,
    pub status: SessionStatus,
    pub subscription: Option<String>,
    pub invoice: Option<String>,
    pub created: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct PortalSession {
    pub id: String,
    pub customer: String,
    pub return_url: Option<String>,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub customer: String,
    pub item_id: String,
    pub item_created: i64,
    pub price: String,
    pub quantity: i64,
    pub status: String,
    pub period_start: i64,
    pub period_end: i64,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub trial_start: Option<i64>,
    pub trial_end: Option<i64>,
    pub created: i64,
    pub start_date: i64,
    pub metadata: Map<String, Value>,
    pub latest_invoice: Option<String>,
    /// The open invoice being retried, its failed attempts, when the next one is.
    pub dunning: Option<(String, usize, i64)>,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub id: String,
    pub amount: i64,
    pub description: String,
    pub price: String,
    pub quantity: i64,
    pub proration: bool,
    pub period_start: i64,
    pub period_end: i64,
}

#[derive(Debug, Clone)]
pub struct InvoicePayment {
    pub id: String,
    pub payment_intent: String,
    pub amount: i64,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub struct Invoice {
    pub id: String,
    pub number: String,
    pub customer: String,
    pub subscription: Option<String>,
    pub status: String,
    pub currency: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub created: i64,
    pub finalized_at: Option<i64>,
    pub paid_at: Option<i64>,
    pub period_start: i64,
    pub period_end: i64,
    pub billing_reason: String,
    pub attempt_count: i64,
    pub next_payment_attempt: Option<i64>,
    pub lines: Vec<Line>,
    pub payments: Vec<InvoicePayment>,
}

#[derive(Debug, Clone)]
pub struct Charge {
    pub id: String,
    pub payment_intent: String,
    pub customer: String,
    pub invoice: Option<String>,
    pub amount: i64,
    pub amount_refunded: i64,
    pub currency: String,
    pub succeeded: bool,
    pub payment_method: String,
    pub last4: String,
    pub brand: &'static str,
    pub fingerprint: String,
    /// `txn_…` of a succeeded charge.
    pub balance_transaction: Option<String>,
    pub created: i64,
}

/// A movement of the account's balance (a charge and its fee, a dispute's withdrawal and fee,
/// a won dispute's reinstatement).
#[derive(Debug, Clone)]
pub struct BalanceTransaction {
    pub id: String,
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    /// `charge`, `adjustment`.
    pub kind: &'static str,
    /// `charge`, `dispute`, `dispute_reversal`.
    pub reporting_category: &'static str,
    pub description: String,
    /// `ch_…` or `du_…`.
    pub source: String,
    pub created: i64,
}

/// A dispute (chargeback) of a charge.
#[derive(Debug, Clone)]
pub struct Dispute {
    pub id: String,
    pub charge: String,
    pub payment_intent: String,
    pub amount: i64,
    pub currency: String,
    /// `needs_response`, `won`, `lost`.
    pub status: String,
    pub reason: String,
    pub balance_transactions: Vec<String>,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub struct Refund {
    pub id: String,
    pub charge: String,
    pub payment_intent: String,
    pub amount: i64,
    pub currency: String,
    pub metadata: Map<String, Value>,
    pub reason: Option<String>,
    pub created: i64,
}

/// One recorded event (the whole Stripe event object).
pub type Event = Value;

/// The account.
#[derive(Debug, Default)]
pub struct Account {
    pub now: i64,
    counter: u64,
    pub products: Vec<Product>,
    pub prices: Vec<Price>,
    pub customers: Vec<Customer>,
    pub sessions: Vec<CheckoutSession>,
    pub portals: Vec<PortalSession>,
    pub subscriptions: Vec<Subscription>,
    pub invoices: Vec<Invoice>,
    pub charges: Vec<Charge>,
    pub refunds: Vec<Refund>,
    pub balance_transactions: Vec<BalanceTransaction>,
    pub disputes: Vec<Dispute>,
    pub events: Vec<Event>,
    /// Events made by the action in progress, handed to the deliverer when it ends.
    pub pending: Vec<Event>,
    /// Idempotency keys: key → (request fingerprint, status, body).
    pub idempotency: HashMap<String, (String, u16, Value)>,
    /// The request id of the API call in progress (`request.id` of its events).
    pub request_id: Option<String>,
    /// The base URL pages are served under.
    pub base_url: String,
}

fn meta(m: &Map<String, Value>) -> Value {
    Value::Object(m.clone())
}

impl Account {
    pub fn new(now: i64, base_url: String) -> Account {
        Account { now, base_url, ..Default::default() }
    }

    /// A new id with Stripe's prefix (`cus_…`), unique in the account.
    pub fn id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        let mut b = [0u8; 6];
        rand::fill(&mut b);
        format!(
            "{prefix}_{}{:04}",
            data_encoding::BASE32_NOPAD.encode(&b).to_ascii_lowercase(),
            self.counter
        )
    }

    // ---- lookups ----

    pub fn price(&self, id: &str) -> Option<&Price> {
        self.prices.iter().find(|p| p.id == id)
    }
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }
    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.customers.iter().find(|p| p.id == id)
    }
    pub fn sub_mut(&mut self, id: &str) -> Option<&mut Subscription> {
        self.subscriptions.iter_mut().find(|p| p.id == id)
    }
    pub fn sub(&self, id: &str) -> Option<&Subscription> {
        self.subscriptions.iter().find(|p| p.id == id)
    }
    pub fn invoice(&self, id: &str) -> Option<&Invoice> {
        self.invoices.iter().find(|p| p.id == id)
    }
    pub fn invoice_mut(&mut self, id: &str) -> Option<&mut Invoice> {
        self.invoices.iter_mut().find(|p| p.id == id)
    }

    // ---- rendering ----

    pub fn product_json(&self, p: &Product) -> Value {
        json!({
            "id": p.id, "object": "product", "active": p.active, "created": p.created,
            "default_price": null, "description": null, "images": [], "livemode": false,
            "marketing_features": [], "metadata": meta(&p.metadata), "name": p.name,
            "package_dimensions": null, "shippable": null, "statement_descriptor": null,
            "tax_code": null, "type": "service", "unit_label": null, "updated": p.created, "url": null,
        })
    }

    pub fn price_json(&self, p: &Price) -> Value {
        json!({
            "id": p.id, "object": "price", "active": p.active, "billing_scheme": "per_unit",
            "created": p.created, "currency": p.currency, "custom_unit_amount": null,
            "livemode": false, "lookup_key": p.lookup_key, "metadata": meta(&p.metadata),
            "nickname": p.nickname, "product": p.product,
            "recurring": {"interval": p.interval, "interval_count": p.interval_count, "meter": null,
                          "trial_period_days": null, "usage_type": "licensed"},
            "tax_behavior": "unspecified", "tiers_mode": null, "transform_quantity": null,
            "type": "recurring", "unit_amount": p.unit_amount,
            "unit_amount_decimal": p.unit_amount.to_string(),
        })
    }

    fn plan_json(&self, p: &Price) -> Value {
        json!({
            "id": p.id, "object": "plan", "active": p.active, "amount": p.unit_amount,
            "amount_decimal": p.unit_amount.to_string(), "billing_scheme": "per_unit",
            "created": p.created, "currency": p.currency, "interval": p.interval,
            "interval_count": p.interval_count, "livemode": false, "metadata": meta(&p.metadata),
            "meter": null, "nickname": p.nickname, "product": p.product, "tiers_mode": null,
            "transform_usage": null, "trial_period_days": null, "usage_type": "licensed",
        })
    }

    pub fn customer_json(&self, c: &Customer) -> Value {
        json!({
            "id": c.id, "object": "customer", "address": null, "balance": 0, "created": c.created,
            "currency": null, "default_source": null, "delinquent": false, "description": null,
            "discount": null, "email": c.email, "invoice_prefix": c.id.trim_start_matches("cus_").to_ascii_uppercase(),
            "invoice_settings": {"custom_fields": null,
                "default_payment_method": c.card.as_ref().map(|k| k.pm.clone()),
                "footer": null, "rendering_options": null},
            "livemode": false, "metadata": meta(&c.metadata), "name": c.name, "phone": null,
            "preferred_locales": [], "shipping": null, "tax_exempt": "none", "test_clock": null,
        })
    }

    pub fn session_json(&self, s: &CheckoutSession) -> Value {
        let amount = self.price(&s.price).map(|p| p.unit_amount * s.quantity).unwrap_or(0);
        let currency = self.price(&s.price).map(|p| p.currency.clone());
        json!({
            "id": s.id, "object": "checkout.session", "adaptive_pricing": null,
            "after_expiration": null, "allow_promotion_codes": null,
            "amount_subtotal": amount, "amount_total": amount,
            "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
            "billing_address_collection": null, "cancel_url": s.cancel_url,
            "client_reference_id": s.client_reference_id, "client_secret": null,
            "consent": null, "consent_collection": null, "created": s.created,
            "currency": currency, "custom_fields": [], "custom_text": {"after_submit": null,
                "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
            "customer": s.customer, "customer_creation": null,
            "customer_details": s.customer_email.as_ref().map(|e| json!({"address": null, "email": e, "name": null, "phone": null, "tax_exempt": "none", "tax_ids": []})),
            "customer_email": s.customer_email, "expires_at": s.expires_at, "invoice": s.invoice,
            "invoice_creation": null, "livemode": false, "locale": null, "metadata": meta(&s.metadata),
            "mode": "subscription", "payment_intent": null, "payment_link": null,
            "payment_method_collection": "always", "payment_method_types": ["card"],
            "payment_status": match s.status { SessionStatus::Complete => if s.trial_days.is_some() { "no_payment_required" } else { "paid" }, _ => "unpaid" },
            "phone_number_collection": {"enabled": false}, "recovered_from": null,
            "setup_intent": null, "shipping_address_collection": null, "shipping_cost": null,
            "shipping_options": [], "status": match s.status { SessionStatus::Open => "open", SessionStatus::Complete => "complete", SessionStatus::Expired => "expired" },
            "submit_type": null, "subscription": s.subscription, "success_url": s.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": if s.status == SessionStatus::Open { Some(format!("{}/checkout/{}", self.base_url, s.id)) } else { None },
        })
    }

    pub fn portal_json(&self, p: &PortalSession) -> Value {
        json!({
            "id": p.id, "object": "billing_portal.session", "configuration": "bpc_standin_default",
            "created": p.created, "customer": p.customer, "flow": null, "livemode": false,
            "locale": null, "on_behalf_of": null, "return_url": p.return_url,
            "url": format!("{}/portal/{}", self.base_url, p.id),
        })
    }

    pub fn subscription_json(&self, s: &Subscription) -> Value {
        let price = self.price(&s.price);
        let item = json!({
            "id": s.item_id, "object": "subscription_item", "billing_thresholds": null,
            "created": s.item_created, "current_period_end": s.period_end,
            "current_period_start": s.period_start, "discounts": [], "metadata": {},
            "plan": price.map(|p| self.plan_json(p)), "price": price.map(|p| self.price_json(p)),
            "quantity": s.quantity, "subscription": s.id, "tax_rates": [],
        });
        let currency = price.map(|p| p.currency.clone()).unwrap_or_else(|| "usd".into());
        let default_pm =
            self.customer(&s.customer).and_then(|c| c.card.as_ref().map(|k| k.pm.clone()));
        json!({
            "id": s.id, "object": "subscription", "application": null,
            "application_fee_percent": null,
            "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
            "billing_cycle_anchor": s.trial_end.unwrap_or(s.start_date),
            "billing_cycle_anchor_config": null,
            "billing_mode": {"flexible": null, "type": "classic", "updated_at": null},
            "billing_schedules": [], "billing_thresholds": null,
            "cancel_at": if s.cancel_at_period_end { Some(s.period_end) } else { None },
            "cancel_at_period_end": s.cancel_at_period_end, "canceled_at": s.canceled_at,
            "cancellation_details": {"comment": null, "feedback": null,
                "reason": if s.canceled_at.is_some() { Some(if s.dunning.is_some() { "payment_failed" } else { "cancellation_requested" }) } else { None }},
            "collection_method": "charge_automatically", "created": s.created, "currency": currency,
            "customer": s.customer, "days_until_due": null, "default_payment_method": default_pm,
            "default_source": null, "default_tax_rates": [], "description": null, "discounts": [],
            "ended_at": s.ended_at,
            "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
            "items": {"object": "list", "data": [item], "has_more": false,
                      "total_count": 1, "url": format!("/v1/subscription_items?subscription={}", s.id)},
            "latest_invoice": s.latest_invoice, "livemode": false, "metadata": meta(&s.metadata),
            "next_pending_invoice_item_invoice": null, "on_behalf_of": null,
            "pause_collection": null,
            "payment_settings": {"payment_method_options": null, "payment_method_types": null,
                                 "save_default_payment_method": "off"},
            "pending_invoice_item_interval": null, "pending_setup_intent": null,
            "pending_update": null, "schedule": null, "start_date": s.start_date,
            "status": s.status, "test_clock": null, "transfer_data": null,
            "trial_end": s.trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": s.trial_start,
        })
    }

    fn invoice_payment_json(&self, inv: &Invoice, p: &InvoicePayment) -> Value {
        json!({
            "id": p.id, "object": "invoice_payment", "amount_paid": p.amount,
            "amount_requested": p.amount, "created": p.created, "currency": inv.currency,
            "invoice": inv.id, "is_default": true, "livemode": false,
            "payment": {"type": "payment_intent", "payment_intent": p.payment_intent},
            "status": "paid",
            "status_transitions": {"canceled_at": null, "paid_at": p.created},
        })
    }

    /// An invoice; `payments` only when expanded (as Stripe).
    pub fn invoice_json(&self, inv: &Invoice, with_payments: bool) -> Value {
        let lines: Vec<Value> = inv
            .lines
            .iter()
            .map(|l| {
                json!({
                    "id": l.id, "object": "line_item", "amount": l.amount, "currency": inv.currency,
                    "description": l.description, "discount_amounts": [], "discountable": true,
                    "discounts": [], "invoice": inv.id, "livemode": false, "metadata": {},
                    "parent": inv.subscription.as_ref().map(|s| json!({
                        "type": "subscription_item_details", "invoice_item_details": null,
                        "subscription_item_details": {"invoice_item": null, "proration": l.proration,
                            "proration_details": {"credited_items": null}, "subscription": s,
                            "subscription_item": self.sub(s).map(|x| x.item_id.clone())}})),
                    "period": {"end": l.period_end, "start": l.period_start},
                    "pretax_credit_amounts": [],
                    "pricing": {"type": "price_details", "price_details": {"price": l.price,
                        "product": self.price(&l.price).map(|p| p.product.clone())},
                        "unit_amount_decimal": (l.amount / l.quantity.max(1)).to_string()},
                    "quantity": l.quantity, "subtotal": l.amount, "taxes": [],
                })
            })
            .collect();
        let customer = self.customer(&inv.customer);
        let remaining = if inv.status == "open" { inv.amount_due - inv.amount_paid } else { 0 };
        let mut v = json!({
            "id": inv.id, "object": "invoice", "account_country": "US", "account_name": "Tradecast stand-in",
            "account_tax_ids": null, "amount_due": inv.amount_due, "amount_overpaid": 0,
            "amount_paid": inv.amount_paid, "amount_remaining": remaining, "amount_shipping": 0,
            "application": null, "attempt_count": inv.attempt_count,
            "attempted": inv.attempt_count > 0, "auto_advance": inv.status == "open",
            "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null},
            "billing_reason": inv.billing_reason, "collection_method": "charge_automatically",
            "confirmation_secret": null, "created": inv.created, "currency": inv.currency,
            "custom_fields": null, "customer": inv.customer, "customer_address": null,
            "customer_email": customer.and_then(|c| c.email.clone()),
            "customer_name": customer.and_then(|c| c.name.clone()), "customer_phone": null,
            "customer_shipping": null, "customer_tax_exempt": "none", "customer_tax_ids": [],
            "default_payment_method": null, "default_source": null, "default_tax_rates": [],
            "description": null, "discounts": [], "due_date": null,
            "effective_at": inv.finalized_at, "ending_balance": if inv.finalized_at.is_some() { Some(0) } else { None },
            "footer": null, "from_invoice": null,
            "hosted_invoice_url": format!("{}/invoice/{}", self.base_url, inv.id),
            "invoice_pdf": null, "issuer": {"type": "self"}, "last_finalization_error": null,
            "latest_revision": null,
            "lines": {"object": "list", "data": lines, "has_more": false, "total_count": inv.lines.len(),
                      "url": format!("/v1/invoices/{}/lines", inv.id)},
            "livemode": false, "metadata": {}, "next_payment_attempt": inv.next_payment_attempt,
            "number": inv.number, "on_behalf_of": null,
            "parent": inv.subscription.as_ref().map(|s| json!({
                "type": "subscription_details", "quote_details": null,
                "subscription_details": {"metadata": self.sub(s).map(|x| meta(&x.metadata)), "subscription": s}})),
            "payment_settings": {"default_mandate": null, "payment_method_options": null, "payment_method_types": null},
            "period_end": inv.period_end, "period_start": inv.period_start,
            "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
            "receipt_number": null, "rendering": null, "shipping_cost": null, "shipping_details": null,
            "starting_balance": 0, "statement_descriptor": null, "status": inv.status,
            "status_transitions": {"finalized_at": inv.finalized_at, "marked_uncollectible_at": null,
                                   "paid_at": inv.paid_at, "voided_at": null},
            "subtotal": inv.amount_due, "subtotal_excluding_tax": inv.amount_due, "test_clock": null,
            "total": inv.amount_due, "total_discount_amounts": [], "total_excluding_tax": inv.amount_due,
            "total_pretax_credit_amounts": [], "total_taxes": [], "webhooks_delivered_at": inv.finalized_at,
        });
        if with_payments {
            let data: Vec<Value> =
                inv.payments.iter().map(|p| self.invoice_payment_json(inv, p)).collect();
            v["payments"] = json!({"object": "list", "data": data, "has_more": false,
                                   "total_count": inv.payments.len(),
                                   "url": format!("/v1/invoice_payments?invoice={}", inv.id)});
        }
        v
    }

    /// A charge with its balance transaction expanded (`expand[]=balance_transaction`) or as
    /// its id.
    pub fn charge_json_expanded(&self, c: &Charge, expand: bool) -> Value {
        let mut v = self.charge_json(c);
        v["balance_transaction"] = match (&c.balance_transaction, expand) {
            (Some(t), true) => self
                .balance_transaction(t)
                .map(|t| self.balance_transaction_json(t))
                .unwrap_or(Value::Null),
            (Some(t), false) => Value::String(t.clone()),
            (None, _) => Value::Null,
        };
        v
    }

    pub fn balance_transaction(&self, id: &str) -> Option<&BalanceTransaction> {
        self.balance_transactions.iter().find(|t| t.id == id)
    }

    pub fn balance_transaction_json(&self, t: &BalanceTransaction) -> Value {
        let fee_details: Vec<Value> = if t.fee == 0 {
            Vec::new()
        } else {
            vec![json!({"amount": t.fee, "application": null, "currency": t.currency,
                "description": if t.reporting_category == "dispute" { "Dispute fee" } else { "Stripe processing fees" },
                "type": "stripe_fee"})]
        };
        json!({
            "id": t.id, "object": "balance_transaction", "amount": t.amount,
            "available_on": t.created + 2 * DAY, "balance_type": "payments", "created": t.created,
            "currency": t.currency, "description": t.description, "exchange_rate": null,
            "fee": t.fee, "fee_details": fee_details, "net": t.amount - t.fee,
            "reporting_category": t.reporting_category, "source": t.source,
            "status": "pending", "type": t.kind,
        })
    }

    pub fn dispute_json(&self, d: &Dispute) -> Value {
        let txns: Vec<Value> = d
            .balance_transactions
            .iter()
            .filter_map(|t| self.balance_transaction(t))
            .map(|t| self.balance_transaction_json(t))
            .collect();
        let open = d.status == "needs_response";
        json!({
            "id": d.id, "object": "dispute", "amount": d.amount, "balance_transactions": txns,
            "charge": d.charge, "created": d.created, "currency": d.currency,
            "enhanced_eligibility_types": [],
            "evidence": {"access_activity_log": null, "billing_address": null, "cancellation_policy": null,
                "cancellation_policy_disclosure": null, "cancellation_rebuttal": null,
                "customer_communication": null, "customer_email_address": null, "customer_name": null,
                "customer_purchase_ip": null, "customer_signature": null, "duplicate_charge_documentation": null,
                "duplicate_charge_explanation": null, "duplicate_charge_id": null,
                "enhanced_evidence": {}, "product_description": null, "receipt": null,
                "refund_policy": null, "refund_policy_disclosure": null, "refund_refusal_explanation": null,
                "service_date": null, "service_documentation": null, "shipping_address": null,
                "shipping_carrier": null, "shipping_date": null, "shipping_documentation": null,
                "shipping_tracking_number": null, "uncategorized_file": null, "uncategorized_text": null},
            "evidence_details": {"due_by": d.created + 7 * DAY, "enhanced_eligibility": {},
                "has_evidence": false, "past_due": false, "submission_count": 0},
            "is_charge_refundable": false, "livemode": false, "metadata": {},
            "network_reason_code": "10.4", "payment_intent": d.payment_intent,
            "payment_method_details": {"type": "card", "card": {"brand": "visa", "case_type": "chargeback", "network": "visa", "network_reason_code": "10.4"}},
            "reason": d.reason, "status": if open { "needs_response" } else { d.status.as_str() },
        })
    }

    pub fn charge_json(&self, c: &Charge) -> Value {
        json!({
            "id": c.id, "object": "charge", "amount": c.amount, "amount_captured": if c.succeeded { c.amount } else { 0 },
            "amount_refunded": c.amount_refunded, "application": null, "application_fee": null,
            "application_fee_amount": null, "balance_transaction": c.balance_transaction,
            "billing_details": {"address": null, "email": null, "name": null, "phone": null, "tax_id": null},
            "calculated_statement_descriptor": "TRADECAST", "captured": c.succeeded,
            "created": c.created, "currency": c.currency, "customer": c.customer,
            "description": "Subscription update", "disputed": self.disputes.iter().any(|d| d.charge == c.id), "failure_balance_transaction": null,
            "failure_code": if c.succeeded { None } else { Some("card_declined") },
            "failure_message": if c.succeeded { None } else { Some(DECLINED) },
            "fraud_details": {}, "livemode": false, "metadata": {}, "on_behalf_of": null,
            "outcome": {"network_status": if c.succeeded { "approved_by_network" } else { "declined_by_network" },
                        "reason": if c.succeeded { None } else { Some("generic_decline") },
                        "risk_level": "normal", "seller_message": if c.succeeded { "Payment complete." } else { "The bank did not return any further details with this decline." },
                        "type": if c.succeeded { "authorized" } else { "issuer_declined" }},
            "paid": c.succeeded, "payment_intent": c.payment_intent, "payment_method": c.payment_method,
            "payment_method_details": {"type": "card", "card": {"brand": c.brand, "last4": c.last4, "fingerprint": c.fingerprint,
                "exp_month": 12, "exp_year": 2034, "funding": "credit", "country": "US"}},
            "receipt_email": null, "receipt_number": null, "receipt_url": null,
            "refunded": c.amount_refunded >= c.amount && c.amount > 0,
            "review": null, "shipping": null, "source_transfer": null, "statement_descriptor": null,
            "statement_descriptor_suffix": null, "status": if c.succeeded { "succeeded" } else { "failed" },
            "transfer_data": null, "transfer_group": null,
        })
    }

    pub fn refund_json(&self, r: &Refund) -> Value {
        json!({
            "id": r.id, "object": "refund", "amount": r.amount, "balance_transaction": null,
            "charge": r.charge, "created": r.created, "currency": r.currency,
            "destination_details": {"type": "card", "card": {"reference_status": "pending", "reference_type": "acquirer_reference_number", "type": "refund"}},
            "metadata": meta(&r.metadata), "payment_intent": r.payment_intent, "reason": r.reason,
            "receipt_number": null, "source_transfer_reversal": null, "status": "succeeded",
            "transfer_reversal": null,
        })
    }

    // ---- events ----

    /// Records an event of `object` (as rendered now).
    pub fn emit(&mut self, event_type: &str, object: Value, previous: Option<Value>) {
        let id = self.id("evt");
        let mut data = json!({"object": object});
        if let Some(p) = previous {
            data["previous_attributes"] = p;
        }
        let e = json!({
            "id": id, "object": "event", "api_version": API_VERSION, "created": self.now,
            "data": data, "livemode": false, "pending_webhooks": 1,
            "request": {"id": self.request_id, "idempotency_key": null},
            "type": event_type,
        });
        self.events.push(e.clone());
        self.pending.push(e);
    }

    fn emit_sub(&mut self, event_type: &str, id: &str, previous: Option<Value>) {
        if let Some(s) = self.sub(id) {
            let o = self.subscription_json(s);
            self.emit(event_type, o, previous);
        }
    }

    fn emit_invoice(&mut self, event_type: &str, id: &str) {
        if let Some(i) = self.invoice(id) {
            let o = self.invoice_json(i, false);
            self.emit(event_type, o, None);
        }
    }

    // ---- what Stripe does ----

    /// Charges a customer's card; records the PaymentIntent's charge, and for a succeeded one
    /// its balance transaction (amount, Stripe's fee) and, with the disputing test card, the
    /// dispute that follows. `Ok(payment_intent)` when it succeeded.
    fn charge(
        &mut self,
        customer: &str,
        amount: i64,
        currency: &str,
        invoice: &str,
    ) -> Result<String, String> {
        let Some(card) = self.customer(customer).and_then(|c| c.card.clone()) else {
            return Err(
                "The customer has no attached payment source or default payment method.".into()
            );
        };
        let succeeded = matches!(card.details.kind, CardKind::Succeeds | CardKind::Disputed);
        let pi = self.id("pi");
        let ch = self.id("ch");
        let txn = succeeded.then(|| self.id("txn"));
        if let Some(txn) = &txn {
            self.balance_transactions.push(BalanceTransaction {
                id: txn.clone(),
                amount,
                fee: processing_fee(amount),
                currency: currency.to_owned(),
                kind: "charge",
                reporting_category: "charge",
                description: format!("Payment for invoice {invoice}"),
                source: ch.clone(),
                created: self.now,
            });
        }
        self.charges.push(Charge {
            id: ch.clone(),
            payment_intent: pi.clone(),
            customer: customer.to_owned(),
            invoice: Some(invoice.to_owned()),
            amount,
            amount_refunded: 0,
            currency: currency.to_owned(),
            succeeded,
            payment_method: card.pm.clone(),
            last4: card.details.last4.clone(),
            brand: card.details.brand,
            fingerprint: card.details.fingerprint.clone(),
            balance_transaction: txn,
            created: self.now,
        });
        if card.details.kind == CardKind::Disputed {
            self.open_dispute(&ch);
        }
        if succeeded { Ok(pi) } else { Err(DECLINED.into()) }
    }

    /// The cardholder disputes a charge in full (`fraudulent`): the amount and the dispute fee
    /// leave the balance at once; `charge.dispute.created` and `charge.dispute.funds_withdrawn`.
    fn open_dispute(&mut self, charge: &str) {
        let Some(c) = self.charges.iter().find(|c| c.id == charge).cloned() else { return };
        let du = self.id("du");
        let txn = self.id("txn");
        self.balance_transactions.push(BalanceTransaction {
            id: txn.clone(),
            amount: -c.amount,
            fee: DISPUTE_FEE_MINOR,
            currency: c.currency.clone(),
            kind: "adjustment",
            reporting_category: "dispute",
            description: format!("Chargeback withdrawal for {charge}"),
            source: du.clone(),
            created: self.now,
        });
        self.disputes.push(Dispute {
            id: du.clone(),
            charge: charge.to_owned(),
            payment_intent: c.payment_intent.clone(),
            amount: c.amount,
            currency: c.currency.clone(),
            status: "needs_response".into(),
            reason: "fraudulent".into(),
            balance_transactions: vec![txn],
            created: self.now,
        });
        if let Some(d) = self.disputes.iter().find(|d| d.id == du) {
            let o = self.dispute_json(d);
            self.emit("charge.dispute.created", o.clone(), None);
            self.emit("charge.dispute.funds_withdrawn", o, None);
        }
    }

    /// Decides a dispute (by its id or its charge's): won reinstates the amount (the fee is
    /// kept), lost leaves it withdrawn; `charge.dispute.closed` (and
    /// `charge.dispute.funds_reinstated` when won).
    pub fn close_dispute(&mut self, dispute_or_charge: &str, won: bool) -> Result<String, String> {
        let d = self
            .disputes
            .iter()
            .find(|d| d.id == dispute_or_charge || d.charge == dispute_or_charge)
            .cloned()
            .ok_or_else(|| format!("No such dispute: '{dispute_or_charge}'"))?;
        if d.status != "needs_response" {
            return Err(format!("This dispute is already closed ({}).", d.status));
        }
        let txn = won.then(|| self.id("txn"));
        if let Some(txn) = &txn {
            self.balance_transactions.push(BalanceTransaction {
                id: txn.clone(),
                amount: d.amount,
                fee: 0,
                currency: d.currency.clone(),
                kind: "adjustment",
                reporting_category: "dispute_reversal",
                description: format!("Chargeback reversal for {}", d.charge),
                source: d.id.clone(),
                created: self.now,
            });
        }
        let previous = json!({"status": d.status});
        if let Some(dm) = self.disputes.iter_mut().find(|x| x.id == d.id) {
            dm.status = if won { "won" } else { "lost" }.into();
            dm.balance_transactions.extend(txn);
        }
        if let Some(dm) = self.disputes.iter().find(|x| x.id == d.id) {
            let o = self.dispute_json(dm);
            if won {
                self.emit("charge.dispute.funds_reinstated", o.clone(), None);
            }
            self.emit("charge.dispute.closed", o, Some(previous));
        }
        Ok(d.id)
    }

    /// A finalized invoice for one line, charged at once. Returns its id and whether it is paid.
    #[allow(clippy::too_many_arguments)]
    fn invoice_and_charge(
        &mut self,
        customer: &str,
        sub: &str,
        price: &str,
        amount: i64,
        description: String,
        reason: &str,
        period: (i64, i64),
        proration: bool,
    ) -> (String, bool) {
        let id = self.id("in");
        let currency =
            self.price(price).map(|p| p.currency.clone()).unwrap_or_else(|| "usd".into());
        let line = Line {
            id: self.id("il"),
            amount,
            description,
            price: price.to_owned(),
            quantity: 1,
            proration,
            period_start: period.0,
            period_end: period.1,
        };
        let number = format!("TC-{:06}", self.invoices.len() + 1);
        self.invoices.push(Invoice {
            id: id.clone(),
            number,
            customer: customer.to_owned(),
            subscription: Some(sub.to_owned()),
            status: "open".into(),
            currency: currency.clone(),
            amount_due: amount,
            amount_paid: 0,
            created: self.now,
            finalized_at: Some(self.now),
            paid_at: None,
            period_start: period.0,
            period_end: period.1,
            billing_reason: reason.into(),
            attempt_count: 0,
            next_payment_attempt: None,
            lines: vec![line],
            payments: Vec::new(),
        });
        let paid = self.attempt(&id);
        (id, paid)
    }

    /// One payment attempt of an open invoice; `true` when it is now paid.
    fn attempt(&mut self, invoice: &str) -> bool {
        let Some(inv) = self.invoice(invoice).cloned() else { return false };
        if inv.status != "open" {
            return inv.status == "paid";
        }
        let result = if inv.amount_due == 0 {
            Ok(None)
        } else {
            self.charge(&inv.customer, inv.amount_due, &inv.currency, invoice).map(Some)
        };
        let now = self.now;
        let ip_id = self.id("inpay");
        let Some(inv) = self.invoice_mut(invoice) else { return false };
        inv.attempt_count += 1;
        match result {
            Ok(pi) => {
                inv.status = "paid".into();
                inv.amount_paid = inv.amount_due;
                inv.paid_at = Some(now);
                inv.next_payment_attempt = None;
                if let Some(pi) = pi {
                    inv.payments.push(InvoicePayment {
                        id: ip_id,
                        payment_intent: pi,
                        amount: inv.amount_due,
                        created: now,
                    });
                }
                true
            }
            Err(_) => false,
        }
    }

    fn period_after(&self, price: &str, start: i64) -> i64 {
        let (interval, count) = self
            .price(price)
            .map(|p| (p.interval.clone(), p.interval_count))
            .unwrap_or(("month".into(), 1));
        add_interval(start, &interval, count)
    }

    /// What the Checkout page's POST does with a good card: the subscription (trialing when
    /// the session asked for a trial), its first invoice and payment, and the events.
    pub fn complete_checkout(
        &mut self,
        session: &str,
        card: CardDetails,
        email: Option<String>,
    ) -> Result<String, String> {
        let Some(s) = self.sessions.iter().find(|s| s.id == session).cloned() else {
            return Err("No such checkout session".into());
        };
        if s.status != SessionStatus::Open {
            return Err("This Checkout Session is no longer active.".into());
        }
        let kind = card.kind;
        if kind == CardKind::Declined || (kind == CardKind::ChargesFail && s.trial_days.is_none()) {
            return Err(DECLINED.into());
        }
        let customer = match s.customer.clone() {
            Some(c) => c,
            None => {
                let id = self.id("cus");
                self.customers.push(Customer {
                    id: id.clone(),
                    email: email.clone(),
                    name: None,
                    metadata: Map::new(),
                    created: self.now,
                    card: None,
                });
                let o = self.customer(&id).map(|c| self.customer_json(c)).unwrap_or(Value::Null);
                self.emit("customer.created", o, None);
                id
            }
        };
        let pm = self.id("pm");
        if let Some(c) = self.customers.iter_mut().find(|c| c.id == customer) {
            c.card = Some(Card { pm, details: card });
        }
        let now = self.now;
        let sub_id = self.id("sub");
        let item_id = self.id("si");
        let (status, trial_end, period_end) = match s.trial_days {
            Some(d) => ("trialing", Some(now + d * DAY), now + d * DAY),
            None => ("active", None, self.period_after(&s.price, now)),
        };
        self.subscriptions.push(Subscription {
            id: sub_id.clone(),
            customer: customer.clone(),
            item_id,
            item_created: now,
            price: s.price.clone(),
            quantity: s.quantity,
            status: status.into(),
            period_start: now,
            period_end,
            cancel_at_period_end: false,
            canceled_at: None,
            ended_at: None,
            trial_start: trial_end.map(|_| now),
            trial_end,
            created: now,
            start_date: now,
            metadata: s.sub_metadata.clone(),
            latest_invoice: None,
            dunning: None,
        });
        let mut invoice = None;
        if s.trial_days.is_none() {
            let amount = self.price(&s.price).map(|p| p.unit_amount * s.quantity).unwrap_or(0);
            let desc = self.line_description(&s.price, s.quantity);
            let (inv, paid) = self.invoice_and_charge(
                &customer,
                &sub_id,
                &s.price,
                amount,
                desc,
                "subscription_create",
                (now, period_end),
                false,
            );
            if !paid {
                // Checked above: a card that fails charges is declined at checkout.
                return Err(DECLINED.into());
            }
            invoice = Some(inv);
        }
        if let Some(sub) = self.sub_mut(&sub_id) {
            sub.latest_invoice = invoice.clone();
        }
        if let Some(ss) = self.sessions.iter_mut().find(|x| x.id == session) {
            ss.status = SessionStatus::Complete;
            ss.subscription = Some(sub_id.clone());
            ss.invoice = invoice.clone();
            ss.customer = Some(customer);
        }
        self.emit_sub("customer.subscription.created", &sub_id, None);
        if let Some(inv) = &invoice {
            self.emit_invoice("invoice.paid", inv);
        }
        if let Some(ss) = self.sessions.iter().find(|x| x.id == session) {
            let o = self.session_json(ss);
            self.emit("checkout.session.completed", o, None);
        }
        Ok(s.success_url.replace("{CHECKOUT_SESSION_ID}", session))
    }

    fn line_description(&self, price: &str, qty: i64) -> String {
        let name = self
            .price(price)
            .and_then(|p| self.product(&p.product))
            .map(|p| p.name.clone())
            .unwrap_or_default();
        format!("{qty} × {name}")
    }

    /// The next moment something is due on any subscription, if before `until`.
    fn next_due(&self, until: i64) -> Option<(i64, String)> {
        self.subscriptions
            .iter()
            .filter_map(|s| {
                let t = match s.status.as_str() {
                    "trialing" | "active" => Some(s.period_end),
                    "past_due" => s.dunning.as_ref().map(|d| d.2),
                    _ => None,
                }?;
                (t <= until).then(|| (t, s.id.clone()))
            })
            .min()
    }

    /// Moves the test clock to `until`, doing in order everything that falls due.
    pub fn advance_to(&mut self, until: i64) {
        while let Some((t, sub)) = self.next_due(until) {
            self.now = self.now.max(t);
            self.due(&sub);
        }
        self.now = self.now.max(until);
        // Open Checkout Sessions past their expires_at (24 h by default) expire.
        let expired: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| s.status == SessionStatus::Open && s.expires_at <= self.now)
            .map(|s| s.id.clone())
            .collect();
        for id in expired {
            if let Some(s) = self.sessions.iter_mut().find(|s| s.id == id) {
                s.status = SessionStatus::Expired;
            }
            if let Some(s) = self.sessions.iter().find(|s| s.id == id) {
                let o = self.session_json(s);
                self.emit("checkout.session.expired", o, None);
            }
        }
    }

    /// What falls due on one subscription now.
    fn due(&mut self, id: &str) {
        let Some(s) = self.sub(id).cloned() else { return };
        let now = self.now;
        if s.status == "past_due" {
            let Some((inv, failures, _)) = s.dunning.clone() else { return };
            if self.attempt(&inv) {
                self.recovered(id, &inv);
                return;
            }
            let retries = failures + 1;
            let first = self.invoice(&inv).map(|i| i.created).unwrap_or(now);
            let next = RETRY_DAYS.get(retries).map(|d| first + d * DAY);
            if let Some(i) = self.invoice_mut(&inv) {
                i.next_payment_attempt = next;
            }
            if let Some(sm) = self.sub_mut(id) {
                sm.dunning = Some((inv.clone(), retries, next.unwrap_or(now)));
            }
            self.emit_invoice("invoice.payment_failed", &inv);
            if next.is_none() {
                // The last retry failed: Stripe's default is to cancel the subscription.
                self.end(id, now, true);
            }
            return;
        }
        // trialing or active at the end of the period.
        if s.cancel_at_period_end {
            self.end(id, s.period_end, false);
            return;
        }
        let start = s.period_end;
        let end = self.period_after(&s.price, start);
        let amount = self.price(&s.price).map(|p| p.unit_amount * s.quantity).unwrap_or(0);
        let desc = self.line_description(&s.price, s.quantity);
        let previous = json!({"status": s.status, "items": {"data": [{"current_period_start": s.period_start, "current_period_end": s.period_end}]}});
        let (inv, paid) = self.invoice_and_charge(
            &s.customer,
            id,
            &s.price,
            amount,
            desc,
            "subscription_cycle",
            (start, end),
            false,
        );
        if let Some(sm) = self.sub_mut(id) {
            sm.period_start = start;
            sm.period_end = end;
            sm.latest_invoice = Some(inv.clone());
            if paid {
                sm.status = "active".into();
            } else {
                sm.status = "past_due".into();
                sm.dunning = Some((inv.clone(), 0, now + RETRY_DAYS[0] * DAY));
            }
        }
        if paid {
            self.emit_invoice("invoice.paid", &inv);
        } else {
            if let Some(i) = self.invoice_mut(&inv) {
                i.next_payment_attempt = Some(now + RETRY_DAYS[0] * DAY);
            }
            self.emit_invoice("invoice.payment_failed", &inv);
        }
        self.emit_sub("customer.subscription.updated", id, Some(previous));
    }

    fn recovered(&mut self, id: &str, inv: &str) {
        let prev = self.sub(id).map(|s| json!({"status": s.status}));
        if let Some(sm) = self.sub_mut(id) {
            sm.status = "active".into();
            sm.dunning = None;
        }
        self.emit_invoice("invoice.paid", inv);
        self.emit_sub("customer.subscription.updated", id, prev);
    }

    /// Ends a subscription at `at` (`canceled`), with `customer.subscription.deleted`.
    pub fn end(&mut self, id: &str, at: i64, payment_failed: bool) {
        let now = self.now;
        if let Some(sm) = self.sub_mut(id) {
            sm.status = "canceled".into();
            sm.ended_at = Some(at);
            if sm.canceled_at.is_none() {
                sm.canceled_at = Some(if sm.cancel_at_period_end { at } else { now });
            }
            if !payment_failed {
                sm.dunning = None;
            }
        }
        self.emit_sub("customer.subscription.deleted", id, None);
    }

    /// Cancel at period end, or resume.
    pub fn set_cancel_at_period_end(&mut self, id: &str, on: bool) -> Result<(), String> {
        let now = self.now;
        let s = self.sub_mut(id).ok_or("No such subscription")?;
        if s.status == "canceled" {
            return Err(
                "A canceled subscription can only update its cancellation_details and metadata."
                    .into(),
            );
        }
        if s.cancel_at_period_end == on {
            return Ok(());
        }
        s.cancel_at_period_end = on;
        s.canceled_at = if on { Some(now) } else { None };
        self.emit_sub(
            "customer.subscription.updated",
            id,
            Some(json!({"cancel_at_period_end": !on})),
        );
        Ok(())
    }

    /// Switches a subscription to another price with proration: the unused part of the old
    /// price is credited, the rest of the period at the new price charged, on one invoice
    /// billed at once (a negative difference is kept as a credit on nothing: not modelled).
    pub fn switch_price(&mut self, id: &str, price: &str) -> Result<(), String> {
        let s = self.sub(id).cloned().ok_or("No such subscription")?;
        if s.status == "canceled" {
            return Err(
                "A canceled subscription can only update its cancellation_details and metadata."
                    .into(),
            );
        }
        let new = self.price(price).cloned().ok_or_else(|| format!("No such price: '{price}'"))?;
        let old = self.price(&s.price).cloned().ok_or("No such price")?;
        if !new.active {
            return Err(
                "The price specified is inactive. This field only accepts active prices.".into()
            );
        }
        if new.currency != old.currency {
            return Err(
                "The price specified has a different currency than the subscription.".into()
            );
        }
        let now = self.now;
        let total = (s.period_end - s.period_start).max(1);
        let left = (s.period_end - now).clamp(0, total);
        let diff = (new.unit_amount - old.unit_amount) * s.quantity * left / total;
        let previous = json!({"items": {"data": [{"price": {"id": old.id}}]}});
        if let Some(sm) = self.sub_mut(id) {
            sm.price = price.to_owned();
        }
        if diff > 0 && s.status != "trialing" {
            let desc = format!("Remaining time on {}", self.line_description(price, s.quantity));
            let (inv, paid) = self.invoice_and_charge(
                &s.customer,
                id,
                price,
                diff,
                desc,
                "subscription_update",
                (now, s.period_end),
                true,
            );
            if let Some(sm) = self.sub_mut(id) {
                sm.latest_invoice = Some(inv.clone());
            }
            self.emit_invoice(if paid { "invoice.paid" } else { "invoice.payment_failed" }, &inv);
        }
        self.emit_sub("customer.subscription.updated", id, Some(previous));
        Ok(())
    }

    /// A new card for a customer; pays the open invoice of a past_due subscription (recovery).
    pub fn update_card(&mut self, customer: &str, card: CardDetails) -> Result<(), String> {
        if card.kind == CardKind::Declined {
            return Err(DECLINED.into());
        }
        let pm = self.id("pm");
        let c = self.customers.iter_mut().find(|c| c.id == customer).ok_or("No such customer")?;
        c.card = Some(Card { pm, details: card });
        let o = self.customer(customer).map(|c| self.customer_json(c)).unwrap_or(Value::Null);
        self.emit("customer.updated", o, None);
        let owed: Vec<(String, String)> = self
            .subscriptions
            .iter()
            .filter(|s| s.customer == customer && s.status == "past_due")
            .filter_map(|s| s.dunning.as_ref().map(|d| (s.id.clone(), d.0.clone())))
            .collect();
        for (sub, inv) in owed {
            if self.attempt(&inv) {
                self.recovered(&sub, &inv);
            } else {
                self.emit_invoice("invoice.payment_failed", &inv);
            }
        }
        Ok(())
    }

    /// Cancels a subscription now (DELETE /v1/subscriptions/{id}).
    pub fn cancel_now(&mut self, id: &str) -> Result<(), String> {
        let s = self.sub(id).ok_or("No such subscription")?;
        if s.status == "canceled" {
            return Err("A canceled subscription cannot be canceled again.".into());
        }
        let now = self.now;
        if let Some(sm) = self.sub_mut(id) {
            sm.canceled_at = Some(now);
            sm.cancel_at_period_end = false;
        }
        self.end(id, now, false);
        Ok(())
    }

    /// A refund of a charge (by its PaymentIntent or id), `charge.refunded` emitted.
    pub fn refund(
        &mut self,
        charge: &str,
        amount: Option<i64>,
        metadata: Map<String, Value>,
        reason: Option<String>,
    ) -> Result<String, (Option<&'static str>, String)> {
        let c = self
            .charges
            .iter()
            .find(|c| c.id == charge)
            .cloned()
            .ok_or((Some("resource_missing"), format!("No such charge: '{charge}'")))?;
        if !c.succeeded {
            return Err((None, format!("Charge {} has not been captured or has failed.", c.id)));
        }
        let left = c.amount - c.amount_refunded;
        if left <= 0 {
            return Err((
                Some("charge_already_refunded"),
                format!("Charge {} has already been refunded.", c.id),
            ));
        }
        let amount = amount.unwrap_or(left);
        if amount <= 0 {
            return Err((Some("parameter_invalid_integer"), "Invalid positive integer".into()));
        }
        if amount > left {
            return Err((
                Some("amount_too_large"),
                format!(
                    "Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
                ),
            ));
        }
        let id = self.id("re");
        self.refunds.push(Refund {
            id: id.clone(),
            charge: c.id.clone(),
            payment_intent: c.payment_intent.clone(),
            amount,
            currency: c.currency.clone(),
            metadata,
            reason,
            created: self.now,
        });
        if let Some(cm) = self.charges.iter_mut().find(|x| x.id == c.id) {
            cm.amount_refunded += amount;
        }
        if let Some(cm) = self.charges.iter().find(|x| x.id == c.id) {
            let o = self.charge_json(cm);
            self.emit(
                "charge.refunded",
                o,
                Some(json!({"amount_refunded": c.amount_refunded, "refunded": false})),
            );
        }
        if let Some(r) = self.refunds.iter().find(|r| r.id == id) {
            let o = self.refund_json(r);
            self.emit("refund.created", o, None);
        }
        Ok(id)
    }
}

/// `start` + `count` intervals, in UTC calendar terms for months and years (Stripe keeps the
/// day of month, clamped to the month's last day).
pub fn add_interval(start: i64, interval: &str, count: i64) -> i64 {
    match interval {
        "day" => start + count * DAY,
        "week" => start + count * 7 * DAY,
        "month" | "year" => {
            let months = if interval == "year" { 12 * count } else { count };
            let days = start.div_euclid(DAY);
            let secs = start.rem_euclid(DAY);
            let (y, m, d) = civil_from_days(days);
            let total = y * 12 + (m - 1) + months;
            let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
            let nd = d.min(days_in_month(ny, nm));
            days_from_civil(ny, nm, nd) * DAY + secs
        }
        _ => start + count * DAY,
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

// Howard Hinnant's civil date algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_keep_the_day_of_month() {
        // 2026-01-31 00:00 UTC → 2026-02-28, → 2026-03-31 (from the 31st again: Stripe anchors).
        let jan31 = days_from_civil(2026, 1, 31) * DAY;
        assert_eq!(civil_from_days(add_interval(jan31, "month", 1).div_euclid(DAY)), (2026, 2, 28));
        assert_eq!(civil_from_days(add_interval(jan31, "month", 2).div_euclid(DAY)), (2026, 3, 31));
        assert_eq!(civil_from_days(add_interval(jan31, "year", 1).div_euclid(DAY)), (2027, 1, 31));
        assert_eq!(add_interval(100, "week", 2), 100 + 14 * DAY);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }
}
