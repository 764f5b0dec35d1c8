//! The ledger: subscriptions and invoices as the payment processors report them, and the
//! entitlements they grant.
//!
//! A door (Stripe, Telegram Stars) turns what its processor says into [`Observed`]
//! subscriptions and [`ObservedInvoice`]s; [`apply`] stores them with the event that caused the
//! re-read, in one transaction, and moves the entitlements to match ([`assess`] decides how far a
//! subscription is paid up). Applying the same observation twice changes nothing, and an older
//! observation applied after a newer one is corrected by the next: the state converges on what
//! the processor says, whatever the order of its events.
//!
//! Entitlement intervals only grow forward: a renewal adds the interval from the old end to the
//! new one; a cancellation or refund ends the open interval no earlier than now, so a device never
//! loses the `Close` of a signal it holds.

use serde::Serialize;
use sqlx::Row;

use crate::db::DbError;
use crate::entitlements::{self, Applied, EndReason, Ending, NewEntitlement, Source};
use crate::error::ApiError;
use crate::feed::Tx;
use crate::state::AppState;

/// Where a subscription was bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Door {
    /// Stripe Checkout.
    Stripe,
    /// A Telegram Stars invoice link.
    TelegramStars,
}

impl Door {
    /// Stable text for SQL and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Stripe => "stripe",
            Door::TelegramStars => "telegram_stars",
        }
    }

    /// Parses [`Door::as_str`]'s text.
    pub fn parse(text: &str) -> Option<Door> {
        [Door::Stripe, Door::TelegramStars].into_iter().find(|d| d.as_str() == text)
    }

    /// The entitlements' source for this door.
    pub fn source(self) -> Source {
        match self {
            Door::Stripe => Source::Stripe,
            Door::TelegramStars => Source::TelegramStars,
        }
    }
}

/// A subscription's state in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Free trial: entitled until the trial ends.
    Trialing,
    /// Paid up and renewing.
    Active,
    /// A renewal failed: still entitled during `billing.grace_period_days`.
    PastDue,
    /// Cancelled by the subscriber: entitled to the end of the paid period, then expired.
    Canceled,
    /// Over (lapsed, cancelled and past its period, or never paid after the grace period).
    Expired,
    /// Refunded: ended when the refund was made.
    Refunded,
    /// Checkout started, first payment not made: not entitled.
    Incomplete,
}

impl Status {
    /// Stable text for SQL and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Trialing => "trialing",
            Status::Active => "active",
            Status::PastDue => "past_due",
            Status::Canceled => "canceled",
            Status::Expired => "expired",
            Status::Refunded => "refunded",
            Status::Incomplete => "incomplete",
        }
    }

    /// Parses [`Status::as_str`]'s text.
    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Trialing,
            Status::Active,
            Status::PastDue,
            Status::Canceled,
            Status::Expired,
            Status::Refunded,
            Status::Incomplete,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Words for a subscriber.
    pub fn describe(self) -> &'static str {
        match self {
            Status::Trialing => "free trial",
            Status::Active => "active",
            Status::PastDue => "payment failed: grace period",
            Status::Canceled => "cancelled at period end",
            Status::Expired => "expired",
            Status::Refunded => "refunded",
            Status::Incomplete => "awaiting first payment",
        }
    }
}

/// What the processor says of a subscription's state (door-neutral).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservedStatus {
    /// In a free trial.
    Trialing,
    /// Paid and renewing (or set to cancel at period end: see `cancel_at_period_end`).
    Active,
    /// The latest renewal is unpaid and the processor still retries.
    PastDue,
    /// Over at the processor (cancelled, unpaid after retries, expired).
    Ended,
    /// The first payment was never made.
    Incomplete,
}

/// One subscription as its processor reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The processor's id (a Stripe subscription id, a Stars subscription's first charge id).
    pub external_id: String,
    /// Our account.
    pub account_id: String,
    /// Our plan.
    pub plan_id: String,
    /// Its state at the processor.
    pub status: ObservedStatus,
    /// The current period, unix ms.
    pub period_start_ms: i64,
    /// The current period's end, unix ms.
    pub period_end_ms: i64,
    /// Set to end at the period's end.
    pub cancel_at_period_end: bool,
    /// The trial's end, if it had one.
    pub trial_end_ms: Option<i64>,
    /// When it ended at the processor.
    pub ended_at_ms: Option<i64>,
    /// When its oldest unpaid renewal was issued (the start of the grace period).
    pub unpaid_since_ms: Option<i64>,
    /// A paid invoice of it was refunded in full.
    pub refunded: bool,
    /// The affiliate code it carried.
    pub referral: Option<String>,
    /// When the processor created it.
    pub created_ms: i64,
}

/// One invoice as its processor reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedInvoice {
    /// The processor's id.
    pub external_id: String,
    /// The processor's subscription id, when it bills one.
    pub subscription_external_id: Option<String>,
    /// `draft`, `open`, `paid`, `uncollectible` or `void`.
    pub status: String,
    /// Minor units due.
    pub amount_due_minor: i64,
    /// Minor units paid.
    pub amount_paid_minor: i64,
    /// Minor units refunded.
    pub amount_refunded_minor: i64,
    /// ISO 4217 (upper case) or `XTR`.
    pub currency: String,
    /// The period billed.
    pub period_start_ms: i64,
    /// The period billed, end.
    pub period_end_ms: i64,
    /// `subscription_create`, `subscription_cycle`, `subscription_update`, …
    pub billing_reason: Option<String>,
    /// Where the subscriber sees it.
    pub hosted_url: Option<String>,
    /// Issued.
    pub created_ms: i64,
    /// Paid.
    pub paid_at_ms: Option<i64>,
    /// What the processor took and gave back (Stripe's balance transactions and disputes;
    /// nothing for Telegram Stars).
    pub processor: ProcessorFacts,
}

/// What a payment processor reports of an invoice's payments beyond the invoice itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessorFacts {
    /// Processing and dispute fees, minor units of `fee_currency`.
    pub fee_minor: i64,
    /// ISO 4217 (upper case) of `fee_minor`: the processor's settlement currency.
    pub fee_currency: Option<String>,
    /// Lost to disputes (chargebacks), minor units of the invoice's currency.
    pub amount_disputed_minor: i64,
    /// A dispute of a payment is undecided.
    pub dispute_open: bool,
    /// The processor's fingerprint of the paying card.
    pub payment_fingerprint: Option<String>,
}

/// A renewal is charged shortly after the period ends; until the processor says how it went, an
/// active subscription stays covered this much longer (so a subscriber never misses signals in
/// the minutes between a period's end and its renewal's payment).
pub const RENEWAL_SLACK_MS: i64 = 6 * 3600 * 1000;

/// The ledger state of an observed subscription at `now_ms`: its status and the instant its
/// entitlement reaches (`covered_until_ms`; at or before now: not entitled).
pub fn assess(o: &Observed, now_ms: i64, grace_ms: i64) -> (Status, i64) {
    if o.refunded {
        return (Status::Refunded, now_ms.min(o.ended_at_ms.unwrap_or(now_ms)));
    }
    match o.status {
        ObservedStatus::Incomplete => (Status::Incomplete, o.period_start_ms.min(now_ms)),
        ObservedStatus::Ended => {
            let end = o.ended_at_ms.unwrap_or(now_ms).min(now_ms);
            (Status::Expired, end)
        }
        ObservedStatus::Trialing => {
            let end = o.trial_end_ms.unwrap_or(o.period_end_ms);
            if o.cancel_at_period_end {
                (if end > now_ms { Status::Canceled } else { Status::Expired }, end)
            } else {
                (Status::Trialing, end.saturating_add(RENEWAL_SLACK_MS))
            }
        }
        ObservedStatus::Active if o.cancel_at_period_end => {
            let end = o.period_end_ms;
            (if end > now_ms { Status::Canceled } else { Status::Expired }, end)
        }
        ObservedStatus::Active => {
            (Status::Active, o.period_end_ms.saturating_add(RENEWAL_SLACK_MS))
        }
        ObservedStatus::PastDue => {
            let since = o.unpaid_since_ms.unwrap_or(o.period_start_ms);
            let end = since.saturating_add(grace_ms);
            (if end > now_ms { Status::PastDue } else { Status::Expired }, end)
        }
    }
}

/// A subscription in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    /// Our id.
    pub id: String,
    /// The subscriber.
    pub account_id: String,
    /// The plan.
    pub plan_id: String,
    /// Where it was bought.
    pub door: Door,
    /// The processor's id.
    pub external_id: String,
    /// Its state.
    pub status: Status,
    /// The current period.
    pub current_period_start_ms: i64,
    /// The current period's end (the renewal date).
    pub current_period_end_ms: i64,
    /// Set to end at the period's end.
    pub cancel_at_period_end: bool,
    /// The trial's end.
    pub trial_end_ms: Option<i64>,
    /// When the unpaid renewal was issued.
    pub past_due_since_ms: Option<i64>,
    /// The end of what is paid for (grace included): the entitlement reaches here.
    pub covered_until_ms: i64,
    /// When it ended.
    pub ended_at_ms: Option<i64>,
    /// The affiliate code it carried.
    pub referral: Option<String>,
    /// First seen.
    pub created_at_ms: i64,
    /// Last converged.
    pub updated_at_ms: i64,
}

const SUB_COLUMNS: &str = "id, account_id, plan_id, door, external_id, status, \
     current_period_start_ms, current_period_end_ms, cancel_at_period_end, trial_end_ms, \
     past_due_since_ms, covered_until_ms, ended_at_ms, referral, created_at_ms, updated_at_ms";

fn sub_from_row(r: &sqlx::any::AnyRow) -> Result<Subscription, DbError> {
    let door: String = r.try_get(3)?;
    let status: String = r.try_get(5)?;
    Ok(Subscription {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        plan_id: r.try_get(2)?,
        door: Door::parse(&door).ok_or_else(|| DbError::Corrupt(format!("door {door:?}")))?,
        external_id: r.try_get(4)?,
        status: Status::parse(&status)
            .ok_or_else(|| DbError::Corrupt(format!("subscription status {status:?}")))?,
        current_period_start_ms: r.try_get(6)?,
        current_period_end_ms: r.try_get(7)?,
        cancel_at_period_end: r.try_get::<i64, _>(8)? != 0,
        trial_end_ms: r.try_get(9)?,
        past_due_since_ms: r.try_get(10)?,
        covered_until_ms: r.try_get(11)?,
        ended_at_ms: r.try_get(12)?,
        referral: r.try_get(13)?,
        created_at_ms: r.try_get(14)?,
        updated_at_ms: r.try_get(15)?,
    })
}

/// An invoice in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Invoice {
    /// Our id.
    pub id: String,
    /// The subscriber.
    pub account_id: String,
    /// The subscription it bills.
    pub subscription_id: Option<String>,
    /// Where.
    pub door: Door,
    /// The processor's id.
    pub external_id: String,
    /// `draft`, `open`, `paid`, `uncollectible` or `void`.
    pub status: String,
    /// Due, minor units.
    pub amount_due_minor: i64,
    /// Paid, minor units.
    pub amount_paid_minor: i64,
    /// Refunded, minor units.
    pub amount_refunded_minor: i64,
    /// ISO 4217 or `XTR`.
    pub currency: String,
    /// Period billed.
    pub period_start_ms: i64,
    /// Period billed, end.
    pub period_end_ms: i64,
    /// Why it was issued.
    pub billing_reason: Option<String>,
    /// The processor's page for it.
    pub hosted_url: Option<String>,
    /// Issued.
    pub created_at_ms: i64,
    /// Paid.
    pub paid_at_ms: Option<i64>,
}

const INV_COLUMNS: &str = "id, account_id, subscription_id, door, external_id, status, \
     amount_due_minor, amount_paid_minor, amount_refunded_minor, currency, period_start_ms, \
     period_end_ms, billing_reason, hosted_url, created_at_ms, paid_at_ms";

fn inv_from_row(r: &sqlx::any::AnyRow) -> Result<Invoice, DbError> {
    let door: String = r.try_get(3)?;
    Ok(Invoice {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        subscription_id: r.try_get(2)?,
        door: Door::parse(&door).ok_or_else(|| DbError::Corrupt(format!("door {door:?}")))?,
        external_id: r.try_get(4)?,
        status: r.try_get(5)?,
        amount_due_minor: r.try_get(6)?,
        amount_paid_minor: r.try_get(7)?,
        amount_refunded_minor: r.try_get(8)?,
        currency: r.try_get(9)?,
        period_start_ms: r.try_get(10)?,
        period_end_ms: r.try_get(11)?,
        billing_reason: r.try_get(12)?,
        hosted_url: r.try_get(13)?,
        created_at_ms: r.try_get(14)?,
        paid_at_ms: r.try_get(15)?,
    })
}

/// The outside event that caused a re-read, stored by its id with what it applied.
#[derive(Debug, Clone, Copy)]
pub struct EventKey<'a> {
    /// Which processor.
    pub door: Door,
    /// Its event id (`evt_…`, a Telegram `update_id`, or a job's run id).
    pub event_id: &'a str,
    /// Its type.
    pub kind: &'a str,
}

/// What [`apply`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The event had been applied before: nothing was written.
    pub duplicate: bool,
    /// Subscriptions whose row changed (ids).
    pub changed: Vec<String>,
    /// Entitlement intervals opened.
    pub granted: usize,
    /// Entitlement intervals ended.
    pub ended: usize,
}

/// Stores one account's subscriptions and invoices as observed at one processor, with the
/// event that caused the re-read, and moves that account's entitlements to match — all in one
/// transaction. An event already stored is a no-op (`duplicate`).
pub async fn apply(
    state: &AppState,
    event: Option<EventKey<'_>>,
    account_id: &str,
    door: Door,
    subs: &[Observed],
    invoices: &[ObservedInvoice],
    request_id: &str,
) -> Result<Outcome, ApiError> {
    let now = state.now_ms();
    let grace_ms = i64::from(state.config.billing.grace_period_days) * 86_400_000;
    let actor = format!("billing:{}", door.as_str());
    let mut tx = state.db.begin_write().await?;
    if let Some(ev) = event {
        let inserted = sqlx::query(
            "INSERT INTO billing_events (door, event_id, kind, account_id, received_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(ev.door.as_str())
        .bind(ev.event_id)
        .bind(ev.kind)
        .bind(account_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
        if inserted.rows_affected() == 0 {
            return Ok(Outcome { duplicate: true, ..Outcome::default() });
        }
    }
    let mut out = Outcome::default();
    let mut applied: Vec<Applied> = Vec::new();
    for o in subs {
        if o.account_id != account_id {
            return Err(ApiError::Validation(format!(
                "subscription {} belongs to another account",
                o.external_id
            )));
        }
        let (status, covered_until) = assess(o, now, grace_ms);
        let before: Option<(String, i64)> = sqlx::query_as(
            "SELECT status, current_period_end_ms FROM subscriptions WHERE door = $1 AND external_id = $2",
        )
        .bind(door.as_str())
        .bind(&o.external_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(DbError::from)?;
        let before = before.and_then(|(s, end)| Status::parse(&s).map(|s| (s, end)));
        let (sub, changed) =
            upsert_subscription(&mut tx, door, o, status, covered_until, now).await?;
        if changed {
            // The subscriber hears of it in Telegram (when linked, at their level), sent once
            // this transaction commits.
            let plan: Option<String> = sqlx::query_scalar("SELECT name FROM plans WHERE id = $1")
                .bind(&sub.plan_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(DbError::from)?;
            let account_url =
                state.config.public_url.as_ref().map(|u| format!("{}/account", u.as_str()));
            if let Some(text) = crate::telegram::notify::billing_message(
                before,
                &sub,
                plan.as_deref().unwrap_or(&sub.plan_id),
                account_url.as_deref(),
            ) {
                let dedupe = format!(
                    "tg:billing:{}:{}:{}",
                    sub.id,
                    sub.status.as_str(),
                    sub.current_period_end_ms
                );
                let cause = format!("subscription:{}", sub.id);
                let event = crate::telegram::notify::Event::Billing;
                crate::telegram::notify::tell_in(
                    &mut tx, account_id, event, text, &dedupe, &cause, now,
                )
                .await?;
            }
            out.changed.push(sub.id.clone());
            let detail = serde_json::json!({
                "door": door.as_str(), "external_id": sub.external_id, "plan_id": sub.plan_id,
                "status": status.as_str(), "covered_until_ms": covered_until,
            });
            crate::audit::append(
                &mut tx,
                state.db.backend(),
                now,
                &crate::audit::Entry {
                    actor: &actor,
                    action: "subscription.converge",
                    subject: &sub.id,
                    detail,
                    request_id,
                },
            )
            .await?;
        }
        let reason = match status {
            Status::Refunded => EndReason::Refunded,
            Status::Expired if o.status == ObservedStatus::PastDue => EndReason::PaymentFailed,
            _ => EndReason::Cancelled,
        };
        let moves = cover(&mut tx, state, now, &actor, &sub, reason, request_id).await?;
        out.granted += moves.granted;
        out.ended += moves.ended;
        applied.extend(moves.applied);
    }
    for inv in invoices {
        let sub_id = match &inv.subscription_external_id {
            Some(ext) => sqlx::query_scalar::<_, String>(
                "SELECT id FROM subscriptions WHERE door = $1 AND external_id = $2",
            )
            .bind(door.as_str())
            .bind(ext)
            .fetch_optional(&mut *tx)
            .await
            .map_err(DbError::from)?,
            None => None,
        };
        let (invoice_id, before) =
            upsert_invoice(&mut tx, door, account_id, sub_id.as_deref(), inv, now).await?;
        // Affiliates: a commission for an invoice newly paid, its reversal for a refund or a
        // lost dispute (both counted in one total, so neither is reversed twice).
        if inv.status == "paid" && before.as_ref().is_none_or(|(s, _)| s != "paid") {
            crate::affiliates::on_invoice_paid(&mut tx, state, now, &invoice_id, request_id)
                .await?;
        }
        let given_back =
            inv.amount_refunded_minor.saturating_add(inv.processor.amount_disputed_minor);
        let before_back = before.map_or(0, |(_, r)| r);
        if given_back > before_back {
            let reason =
                if inv.processor.amount_disputed_minor > 0 { "chargeback" } else { "refund" };
            crate::affiliates::on_refund(
                &mut tx,
                state,
                now,
                &invoice_id,
                given_back,
                reason,
                request_id,
            )
            .await?;
        }
    }
    tx.commit().await.map_err(DbError::from)?;
    for a in applied {
        a.after_commit(state);
    }
    Ok(out)
}

async fn upsert_subscription(
    tx: &mut Tx,
    door: Door,
    o: &Observed,
    status: Status,
    covered_until: i64,
    now: i64,
) -> Result<(Subscription, bool), ApiError> {
    let existing = sqlx::query(crate::sql!(
        "SELECT {SUB_COLUMNS} FROM subscriptions WHERE door = $1 AND external_id = $2"
    ))
    .bind(door.as_str())
    .bind(&o.external_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .as_ref()
    .map(sub_from_row)
    .transpose()?;
    let ended_at_ms = match status {
        Status::Expired | Status::Refunded => Some(o.ended_at_ms.unwrap_or(covered_until)),
        _ => None,
    };
    let past_due_since_ms = match o.status {
        ObservedStatus::PastDue => Some(o.unpaid_since_ms.unwrap_or(o.period_start_ms)),
        _ => None,
    };
    let next = Subscription {
        id: existing.as_ref().map_or_else(crate::ids::new_id, |s| s.id.clone()),
        account_id: o.account_id.clone(),
        plan_id: o.plan_id.clone(),
        door,
        external_id: o.external_id.clone(),
        status,
        current_period_start_ms: o.period_start_ms,
        current_period_end_ms: o.period_end_ms,
        cancel_at_period_end: o.cancel_at_period_end,
        trial_end_ms: o.trial_end_ms,
        past_due_since_ms,
        covered_until_ms: covered_until,
        ended_at_ms,
        referral: existing.as_ref().and_then(|s| s.referral.clone()).or_else(|| o.referral.clone()),
        created_at_ms: existing.as_ref().map_or(now, |s| s.created_at_ms),
        updated_at_ms: now,
    };
    let Some(before) = existing else {
        sqlx::query(crate::sql!(
            "INSERT INTO subscriptions ({SUB_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(&next.id)
        .bind(&next.account_id)
        .bind(&next.plan_id)
        .bind(door.as_str())
        .bind(&next.external_id)
        .bind(status.as_str())
        .bind(next.current_period_start_ms)
        .bind(next.current_period_end_ms)
        .bind(i64::from(next.cancel_at_period_end))
        .bind(next.trial_end_ms)
        .bind(next.past_due_since_ms)
        .bind(next.covered_until_ms)
        .bind(next.ended_at_ms)
        .bind(next.referral.as_deref())
        .bind(next.created_at_ms)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(DbError::from)?;
        return Ok((next, true));
    };
    if before.account_id != next.account_id {
        return Err(ApiError::Conflict(format!(
            "subscription {} is another account's",
            next.external_id
        )));
    }
    let same = Subscription { updated_at_ms: before.updated_at_ms, ..next.clone() } == before;
    if same {
        return Ok((before, false));
    }
    sqlx::query(
        "UPDATE subscriptions SET plan_id = $1, status = $2, current_period_start_ms = $3, \
         current_period_end_ms = $4, cancel_at_period_end = $5, trial_end_ms = $6, \
         past_due_since_ms = $7, covered_until_ms = $8, ended_at_ms = $9, updated_at_ms = $10 \
         WHERE id = $11",
    )
    .bind(&next.plan_id)
    .bind(status.as_str())
    .bind(next.current_period_start_ms)
    .bind(next.current_period_end_ms)
    .bind(i64::from(next.cancel_at_period_end))
    .bind(next.trial_end_ms)
    .bind(next.past_due_since_ms)
    .bind(next.covered_until_ms)
    .bind(next.ended_at_ms)
    .bind(now)
    .bind(&next.id)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok((next, true))
}

async fn upsert_invoice(
    tx: &mut Tx,
    door: Door,
    account_id: &str,
    subscription_id: Option<&str>,
    inv: &ObservedInvoice,
    now: i64,
) -> Result<(String, Option<(String, i64)>), ApiError> {
    let status = match inv.status.as_str() {
        s @ ("draft" | "open" | "paid" | "uncollectible" | "void") => s,
        other => {
            return Err(ApiError::Validation(format!("invoice status {other:?} is not known")));
        }
    };
    // What it was (id, status, refunded and lost to disputes), for the affiliates' hook.
    let before: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT id, status, amount_refunded_minor + amount_disputed_minor FROM invoices \
         WHERE door = $1 AND external_id = $2 AND account_id = $3",
    )
    .bind(door.as_str())
    .bind(&inv.external_id)
    .bind(account_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?;
    // The invoice and what the processor took and gave back of it (fees, disputes, the card's
    // fingerprint, as it reports them now), in one statement.
    let p = &inv.processor;
    let updated = sqlx::query(
        "UPDATE invoices SET status = $1, amount_due_minor = $2, amount_paid_minor = $3, \
         amount_refunded_minor = $4, paid_at_ms = $5, hosted_url = $6, subscription_id = $7, \
         updated_at_ms = $8, fee_minor = $12, fee_currency = $13, amount_disputed_minor = $14, \
         dispute_open = $15, payment_fingerprint = COALESCE($16, payment_fingerprint) \
         WHERE door = $9 AND external_id = $10 AND account_id = $11",
    )
    .bind(status)
    .bind(inv.amount_due_minor)
    .bind(inv.amount_paid_minor)
    .bind(inv.amount_refunded_minor)
    .bind(inv.paid_at_ms)
    .bind(inv.hosted_url.as_deref())
    .bind(subscription_id)
    .bind(now)
    .bind(door.as_str())
    .bind(&inv.external_id)
    .bind(account_id)
    .bind(p.fee_minor)
    .bind(p.fee_currency.as_deref())
    .bind(p.amount_disputed_minor)
    .bind(i64::from(p.dispute_open))
    .bind(p.payment_fingerprint.as_deref())
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    if updated.rows_affected() > 0
        && let Some((id, status, refunded)) = before
    {
        return Ok((id, Some((status, refunded))));
    }
    let id = crate::ids::new_id();
    sqlx::query(crate::sql!(
        "INSERT INTO invoices ({INV_COLUMNS}, updated_at_ms, fee_minor, fee_currency, \
         amount_disputed_minor, dispute_open, payment_fingerprint) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22)"
    ))
    .bind(&id)
    .bind(account_id)
    .bind(subscription_id)
    .bind(door.as_str())
    .bind(&inv.external_id)
    .bind(status)
    .bind(inv.amount_due_minor)
    .bind(inv.amount_paid_minor)
    .bind(inv.amount_refunded_minor)
    .bind(&inv.currency)
    .bind(inv.period_start_ms)
    .bind(inv.period_end_ms)
    .bind(inv.billing_reason.as_deref())
    .bind(inv.hosted_url.as_deref())
    .bind(inv.created_ms)
    .bind(inv.paid_at_ms)
    .bind(now)
    .bind(p.fee_minor)
    .bind(p.fee_currency.as_deref())
    .bind(p.amount_disputed_minor)
    .bind(i64::from(p.dispute_open))
    .bind(p.payment_fingerprint.as_deref())
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok((id, None))
}

#[derive(Default)]
struct Moves {
    granted: usize,
    ended: usize,
    applied: Vec<Applied>,
}

/// Moves the subscription's entitlements (source = its door, external_ref = its processor id)
/// so they reach exactly `covered_until_ms`: a later end opens an interval from the current end
/// (a renewal), an earlier one ends what reaches beyond it, never before now.
async fn cover(
    tx: &mut Tx,
    state: &AppState,
    now: i64,
    actor: &str,
    sub: &Subscription,
    reason: EndReason,
    request_id: &str,
) -> Result<Moves, ApiError> {
    let source = sub.door.source();
    let rows = sqlx::query(
        "SELECT id, starts_at_ms, expires_at_ms, revoked_at_ms, plan_id FROM entitlements \
         WHERE source = $1 AND external_ref = $2 AND user_id = $3 \
         AND (expires_at_ms IS NULL OR expires_at_ms > $4) \
         AND (revoked_at_ms IS NULL OR revoked_at_ms > $4) ORDER BY starts_at_ms, id",
    )
    .bind(source.as_str())
    .bind(&sub.external_id)
    .bind(&sub.account_id)
    .bind(now)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    let target = sub.covered_until_ms;
    let mut moves = Moves::default();
    let mut reach = now;
    for r in &rows {
        let id: String = r.try_get(0).map_err(DbError::from)?;
        let starts: i64 = r.try_get(1).map_err(DbError::from)?;
        let expires: Option<i64> = r.try_get(2).map_err(DbError::from)?;
        let revoked: Option<i64> = r.try_get(3).map_err(DbError::from)?;
        let plan_id: String = r.try_get(4).map_err(DbError::from)?;
        let ends = match (expires, revoked) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => i64::MAX,
        };
        if plan_id != sub.plan_id {
            // The subscription moved to another plan (a change in the portal): the old plan's
            // interval ends now, the new plan's starts now (below).
            let ending = Ending { id: &id, at_ms: Some(now), reason: EndReason::Cancelled };
            let (_, a) = entitlements::end_in(tx, state, now, actor, &ending, request_id).await?;
            if let Some(a) = a {
                moves.ended += 1;
                moves.applied.push(a);
            }
        } else if ends > target {
            // Reaches past what is paid for: end it at the target (an interval that has not
            // started yet ends now, which leaves it empty).
            let at = if starts >= target { now } else { target };
            let ending = Ending { id: &id, at_ms: Some(at), reason };
            let (after, a) =
                entitlements::end_in(tx, state, now, actor, &ending, request_id).await?;
            if let Some(a) = a {
                moves.ended += 1;
                moves.applied.push(a);
            }
            reach = reach.max(after.ends_at_ms().unwrap_or(now).min(target));
        } else {
            reach = reach.max(ends);
        }
    }
    if target > reach {
        let new = NewEntitlement {
            user_id: &sub.account_id,
            plan_id: &sub.plan_id,
            source,
            external_ref: Some(&sub.external_id),
            starts_at_ms: Some(reach),
            expires_at_ms: Some(target),
        };
        let (_, a) = entitlements::grant_in(tx, state, now, actor, &new, request_id).await?;
        moves.granted += 1;
        moves.applied.push(a);
    }
    Ok(moves)
}

/// One subscription by our id.
pub async fn subscription(db: &crate::db::Db, id: &str) -> Result<Option<Subscription>, DbError> {
    let row = sqlx::query(crate::sql!("SELECT {SUB_COLUMNS} FROM subscriptions WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(sub_from_row).transpose()
}

/// An account's subscriptions, newest first.
pub async fn subscriptions_of(
    db: &crate::db::Db,
    account_id: &str,
) -> Result<Vec<Subscription>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {SUB_COLUMNS} FROM subscriptions WHERE account_id = $1 \
         ORDER BY created_at_ms DESC, id"
    ))
    .bind(account_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(sub_from_row).collect()
}

/// Every subscription, newest first (the console; at most `limit`).
pub async fn all_subscriptions(
    db: &crate::db::Db,
    limit: i64,
) -> Result<Vec<Subscription>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {SUB_COLUMNS} FROM subscriptions ORDER BY created_at_ms DESC, id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(sub_from_row).collect()
}

/// An account's invoices, newest first.
pub async fn invoices_of(db: &crate::db::Db, account_id: &str) -> Result<Vec<Invoice>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {INV_COLUMNS} FROM invoices WHERE account_id = $1 \
         ORDER BY created_at_ms DESC, id"
    ))
    .bind(account_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(inv_from_row).collect()
}

/// Money taken, by currency: paid minus refunded and charged back (disputes lost) over every
/// invoice (the console's revenue).
pub async fn revenue(db: &crate::db::Db) -> Result<Vec<(String, i64)>, DbError> {
    let rows = sqlx::query(
        "SELECT currency, CAST(SUM(amount_paid_minor - amount_refunded_minor - amount_disputed_minor) AS BIGINT) \
         FROM invoices \
         WHERE status = 'paid' GROUP BY currency ORDER BY currency",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn observed(status: ObservedStatus) -> Observed {
        Observed {
            external_id: "sub_1".into(),
            account_id: "a".into(),
            plan_id: "p".into(),
            status,
            period_start_ms: 10 * DAY,
            period_end_ms: 40 * DAY,
            cancel_at_period_end: false,
            trial_end_ms: None,
            ended_at_ms: None,
            unpaid_since_ms: None,
            refunded: false,
            referral: None,
            created_ms: 10 * DAY,
        }
    }

    #[test]
    fn active_is_covered_to_the_period_end_and_the_renewal_slack() {
        let o = observed(ObservedStatus::Active);
        assert_eq!(assess(&o, 20 * DAY, 7 * DAY), (Status::Active, 40 * DAY + RENEWAL_SLACK_MS));
    }

    #[test]
    fn cancelled_at_period_end_is_covered_exactly_to_it_then_expired() {
        let o = Observed { cancel_at_period_end: true, ..observed(ObservedStatus::Active) };
        assert_eq!(assess(&o, 20 * DAY, 7 * DAY), (Status::Canceled, 40 * DAY));
        assert_eq!(assess(&o, 41 * DAY, 7 * DAY), (Status::Expired, 40 * DAY));
    }

    #[test]
    fn past_due_keeps_the_grace_period_from_the_unpaid_renewal() {
        let o = Observed { unpaid_since_ms: Some(40 * DAY), ..observed(ObservedStatus::PastDue) };
        assert_eq!(assess(&o, 42 * DAY, 7 * DAY), (Status::PastDue, 47 * DAY));
        assert_eq!(assess(&o, 48 * DAY, 7 * DAY), (Status::Expired, 47 * DAY));
    }

    #[test]
    fn a_refund_ends_coverage_now_and_an_ended_subscription_at_its_end() {
        let o = Observed { refunded: true, ..observed(ObservedStatus::Active) };
        assert_eq!(assess(&o, 20 * DAY, 7 * DAY), (Status::Refunded, 20 * DAY));
        let o = Observed { ended_at_ms: Some(15 * DAY), ..observed(ObservedStatus::Ended) };
        assert_eq!(assess(&o, 20 * DAY, 7 * DAY), (Status::Expired, 15 * DAY));
        // An end reported in the future (clock skew) is clamped to now.
        let o = Observed { ended_at_ms: Some(25 * DAY), ..observed(ObservedStatus::Ended) };
        assert_eq!(assess(&o, 20 * DAY, 7 * DAY), (Status::Expired, 20 * DAY));
    }

    #[test]
    fn a_trial_is_covered_to_its_end_and_incomplete_is_not_covered() {
        let o = Observed { trial_end_ms: Some(17 * DAY), ..observed(ObservedStatus::Trialing) };
        assert_eq!(assess(&o, 12 * DAY, 7 * DAY), (Status::Trialing, 17 * DAY + RENEWAL_SLACK_MS));
        let (status, until) = assess(&observed(ObservedStatus::Incomplete), 12 * DAY, 7 * DAY);
        assert_eq!(status, Status::Incomplete);
        assert!(until <= 12 * DAY);
    }
}
