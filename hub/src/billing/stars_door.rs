//! The Telegram Stars door: a plan priced in `XTR` is sold through a Stars invoice link
//! (`createInvoiceLink`, a 30-day subscription), its `pre_checkout_query` is checked against the
//! catalog and answered within Telegram's 10 seconds, and each `successful_payment` (the first
//! and every renewal) becomes rows of the one ledger, keyed by its `telegram_payment_charge_id`
//! (a redelivered update is a no-op). Telegram offers no subscription state to re-read: a Stars
//! subscription whose paid period ran out without a renewal is ended by [`StarsExpiry`].
//!
//! **Reconciliation** ([`reconcile`], the nightly `billing.stars_reconcile` job): the bot's own
//! Star transactions (`getStarTransactions`, paged) are compared with the ledger. A payment the
//! hub never heard of (its update lost) is applied as if it had arrived, dated when it was paid;
//! a refund made outside the hub ends that subscription as a refund from the console would; a
//! transaction that is not ours (another payload) is counted and left alone. Differences found
//! are audited (`billing.stars_reconcile`) and the job's summary says them.

use frankenstein::methods::{AnswerPreCheckoutQueryParams, CreateInvoiceLinkParams};
use frankenstein::payments::{LabeledPrice, PreCheckoutQuery, SuccessfulPayment};

use super::ledger::{self, Door, EventKey, Observed, ObservedInvoice, ObservedStatus};
use crate::db::DbError;
use crate::error::ApiError;
use crate::plans::{self, Plan};
use crate::state::AppState;

/// Telegram's one subscription period for Stars: 30 days, in seconds.
pub const SUBSCRIPTION_PERIOD_S: u32 = 2_592_000;

/// The invoice payload: which account buys which plan (`tc1:<account>:<plan>`, ≤ 128 bytes).
pub fn payload(account_id: &str, plan_id: &str) -> String {
    format!("tc1:{account_id}:{plan_id}")
}

/// The account and plan of a payload this hub made.
pub fn parse_payload(p: &str) -> Option<(&str, &str)> {
    let rest = p.strip_prefix("tc1:")?;
    let (account, plan) = rest.split_once(':')?;
    (!account.is_empty() && !plan.is_empty() && !plan.contains(':')).then_some((account, plan))
}

/// The subscription's id at the door: one per account and plan.
pub fn external_id(account_id: &str, plan_id: &str) -> String {
    format!("stars:{account_id}:{plan_id}")
}

/// A Stars invoice link for `account_id` to buy `plan_id` (created at Telegram now).
pub async fn invoice_link(
    state: &AppState,
    account_id: &str,
    plan_id: &str,
) -> Result<String, ApiError> {
    let Some(bot) = state.telegram.bot() else {
        return Err(ApiError::NotConfigured("Telegram Stars (the Telegram bot)"));
    };
    let plan = sellable(state, plan_id).await?;
    let title: String = plan.name.chars().take(32).collect();
    let description = if plan.description.is_empty() {
        format!("{} — every 30 days, renewed by Telegram until you cancel", plan.name)
    } else {
        plan.description.clone()
    };
    let description: String = description.chars().take(255).collect();
    let amount = u32::try_from(plan.price_minor)
        .map_err(|_| ApiError::Validation("the plan's price does not fit Telegram Stars".into()))?;
    let params = CreateInvoiceLinkParams::builder()
        .title(title.clone())
        .description(description)
        .payload(payload(account_id, plan_id))
        .currency(plans::STARS)
        .prices(vec![LabeledPrice::builder().label(title).amount(amount).build()])
        .subscription_period(SUBSCRIPTION_PERIOD_S)
        .build();
    let link = bot.call_typed("createInvoiceLink", &params).await.map_err(|e| {
        tracing::warn!(error = %e, "telegram: createInvoiceLink failed");
        ApiError::Upstream("Telegram")
    })?;
    link.as_str().map(str::to_owned).ok_or(ApiError::Upstream("Telegram"))
}

/// A plan that may be bought with Stars now.
async fn sellable(state: &AppState, plan_id: &str) -> Result<Plan, ApiError> {
    let plan = plans::by_id(&state.db, plan_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("plan {plan_id}")))?;
    if plan.archived_at_ms.is_some() {
        return Err(ApiError::Conflict("this plan is no longer sold".into()));
    }
    if !plan.is_stars() || plan.price_minor <= 0 {
        return Err(ApiError::Conflict("this plan is not sold for Telegram Stars".into()));
    }
    Ok(plan)
}

/// The answer to a `pre_checkout_query`: `Ok(())` to take the payment, or the reason shown to
/// the payer.
pub async fn check(state: &AppState, q: &PreCheckoutQuery) -> Result<Result<(), String>, ApiError> {
    let Some((account, plan_id)) = parse_payload(&q.invoice_payload) else {
        return Ok(Err("This invoice is not from this shop.".into()));
    };
    let user = crate::accounts::user_by_id(&state.db, account).await?;
    if user.is_none_or(|u| u.disabled_at_ms.is_some()) {
        return Ok(Err("This Tradecast account cannot buy plans now.".into()));
    }
    let plan = match sellable(state, plan_id).await {
        Ok(p) => p,
        Err(e) if e.status().is_server_error() => return Err(e),
        Err(e) => return Ok(Err(format!("Not sold now: {e}."))),
    };
    if q.currency != plans::STARS || i64::from(q.total_amount) != plan.price_minor {
        return Ok(Err("The price has changed: open the plan again.".into()));
    }
    Ok(Ok(()))
}

/// `answerPreCheckoutQuery`'s parameters for `answer`.
pub fn answer_params(query_id: &str, answer: &Result<(), String>) -> AnswerPreCheckoutQueryParams {
    match answer {
        Ok(()) => {
            AnswerPreCheckoutQueryParams::builder().pre_checkout_query_id(query_id).ok(true).build()
        }
        Err(why) => AnswerPreCheckoutQueryParams::builder()
            .pre_checkout_query_id(query_id)
            .ok(false)
            .error_message(why.clone())
            .build(),
    }
}

/// Applies a `successful_payment` to the ledger (idempotent by its charge id). `None` when the
/// payment is not one of this hub's invoices (recorded by the caller, nothing else).
pub async fn apply_payment(
    state: &AppState,
    p: &SuccessfulPayment,
    payer: i64,
    request_id: &str,
) -> Result<Option<ledger::Outcome>, ApiError> {
    apply_payment_at(state, p, payer, state.now_ms(), request_id).await
}

/// [`apply_payment`] for a payment made at `paid_at_ms` (a reconciled one: the invoice and the
/// period are dated when it was paid, not when the hub learnt of it).
pub async fn apply_payment_at(
    state: &AppState,
    p: &SuccessfulPayment,
    payer: i64,
    paid_at_ms: i64,
    request_id: &str,
) -> Result<Option<ledger::Outcome>, ApiError> {
    let Some((account, plan_id)) = parse_payload(&p.invoice_payload) else { return Ok(None) };
    let Some(plan) = plans::by_id(&state.db, plan_id).await? else { return Ok(None) };
    if crate::accounts::user_by_id(&state.db, account).await?.is_none()
        || p.currency != plans::STARS
    {
        return Ok(None);
    }
    let now = paid_at_ms;
    let ext = external_id(account, plan_id);
    // The period paid: from the previous one's end when this renews it, else from now.
    let previous = ledger::subscriptions_of(&state.db, account)
        .await?
        .into_iter()
        .find(|s| s.door == Door::TelegramStars && s.external_id == ext);
    let start = previous
        .as_ref()
        .filter(|s| s.current_period_end_ms > now && p.is_first_recurring != Some(true))
        .map_or(now, |s| s.current_period_end_ms);
    let end = p
        .subscription_expiration_date
        .and_then(|s| i64::try_from(s).ok())
        .map(|s| s * 1000)
        .filter(|e| *e > start)
        .unwrap_or(start + plan.period_days * 86_400_000);
    let observed = Observed {
        external_id: ext.clone(),
        account_id: account.to_owned(),
        plan_id: plan_id.to_owned(),
        status: ObservedStatus::Active,
        period_start_ms: start,
        period_end_ms: end,
        cancel_at_period_end: p.is_recurring == Some(false),
        trial_end_ms: None,
        ended_at_ms: None,
        unpaid_since_ms: None,
        refunded: false,
        referral: None,
        created_ms: previous.as_ref().map_or(now, |s| s.created_at_ms),
    };
    let amount = i64::from(p.total_amount);
    let invoice = ObservedInvoice {
        external_id: p.telegram_payment_charge_id.clone(),
        subscription_external_id: Some(ext),
        status: "paid".into(),
        amount_due_minor: amount,
        amount_paid_minor: amount,
        amount_refunded_minor: 0,
        currency: plans::STARS.into(),
        period_start_ms: start,
        period_end_ms: end,
        billing_reason: Some(
            if previous.is_some() { "subscription_cycle" } else { "subscription_create" }.into(),
        ),
        hosted_url: None,
        created_ms: now,
        paid_at_ms: Some(now),
        processor: Default::default(),
    };
    // Who paid, for a refund (idempotent: the charge id is the key).
    sqlx::query(
        "INSERT INTO stars_payments (charge_id, account_id, subscription_external_id, \
         telegram_user_id, amount, paid_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (charge_id) DO NOTHING",
    )
    .bind(&p.telegram_payment_charge_id)
    .bind(account)
    .bind(external_id(account, plan_id))
    .bind(payer)
    .bind(amount)
    .bind(now)
    .execute(state.db.pool())
    .await
    .map_err(DbError::from)?;
    let key = EventKey {
        door: Door::TelegramStars,
        event_id: &p.telegram_payment_charge_id,
        kind: "successful_payment",
    };
    let out = ledger::apply(
        state,
        Some(key),
        account,
        Door::TelegramStars,
        &[observed],
        &[invoice],
        request_id,
    )
    .await?;
    Ok(Some(out))
}

/// Refunds a Stars subscription's latest payment (`refundStarPayment`) and ends it now: the
/// ledger records the refund and the entitlement ends now (never earlier). A subscription
/// already refunded is answered as it is.
pub async fn refund(
    state: &AppState,
    actor: &str,
    sub: &ledger::Subscription,
    request_id: &str,
) -> Result<ledger::Subscription, ApiError> {
    if sub.status == ledger::Status::Refunded {
        return Ok(sub.clone());
    }
    let Some(bot) = state.telegram.bot() else {
        return Err(ApiError::NotConfigured("Telegram Stars refunds (the Telegram bot)"));
    };
    let last: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT charge_id, telegram_user_id, amount FROM stars_payments \
         WHERE subscription_external_id = $1 AND refunded_at_ms IS NULL \
         ORDER BY paid_at_ms DESC, charge_id LIMIT 1",
    )
    .bind(&sub.external_id)
    .fetch_optional(state.db.pool())
    .await
    .map_err(DbError::from)?;
    let now = state.now_ms();
    let mut refunded = 0;
    if let Some((charge, user, amount)) = &last {
        let params = serde_json::json!({ "user_id": user, "telegram_payment_charge_id": charge });
        match bot.call("refundStarPayment", &params).await {
            Ok(_) => {}
            // Refunded before (by an earlier attempt whose answer was lost): go on.
            Err(crate::telegram::bot::CallError::Api { description, .. })
                if description.contains("CHARGE_ALREADY_REFUNDED") => {}
            Err(e) => {
                tracing::warn!(error = %e, "telegram: refundStarPayment failed");
                return Err(ApiError::Upstream("Telegram"));
            }
        }
        // No renewal after a refund: Telegram is told to cancel the subscription, through the
        // outbox (retried until it answers; a dead letter shows on the Outbox page), in the
        // transaction that records the refund.
        let mut tx = state.db.begin_write().await?;
        sqlx::query("UPDATE stars_payments SET refunded_at_ms = $1 WHERE charge_id = $2")
            .bind(now)
            .bind(charge)
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?;
        let cancel = serde_json::json!({
            "user_id": user, "telegram_payment_charge_id": charge, "is_canceled": true,
        });
        crate::telegram::notify::enqueue_call(
            &mut tx,
            "editUserStarSubscription",
            &cancel,
            None,
            &format!("tg:stars-cancel:{charge}"),
            &format!("refund:{}", sub.id),
            now,
        )
        .await?;
        tx.commit().await.map_err(DbError::from)?;
        crate::outbox::wake(state);
        refunded = *amount;
    }
    let observed = Observed {
        external_id: sub.external_id.clone(),
        account_id: sub.account_id.clone(),
        plan_id: sub.plan_id.clone(),
        status: ObservedStatus::Ended,
        period_start_ms: sub.current_period_start_ms,
        period_end_ms: sub.current_period_end_ms,
        cancel_at_period_end: true,
        trial_end_ms: sub.trial_end_ms,
        ended_at_ms: Some(now),
        unpaid_since_ms: None,
        refunded: true,
        referral: sub.referral.clone(),
        created_ms: sub.created_at_ms,
    };
    let invoices: Vec<ObservedInvoice> = match &last {
        Some((charge, _, amount)) => ledger::invoices_of(&state.db, &sub.account_id)
            .await?
            .into_iter()
            .filter(|i| &i.external_id == charge)
            .map(|i| ObservedInvoice {
                external_id: i.external_id,
                subscription_external_id: Some(sub.external_id.clone()),
                status: i.status,
                amount_due_minor: i.amount_due_minor,
                amount_paid_minor: i.amount_paid_minor,
                amount_refunded_minor: *amount,
                currency: i.currency,
                period_start_ms: i.period_start_ms,
                period_end_ms: i.period_end_ms,
                billing_reason: i.billing_reason,
                hosted_url: i.hosted_url,
                created_ms: i.created_at_ms,
                paid_at_ms: i.paid_at_ms,
                processor: Default::default(),
            })
            .collect(),
        None => Vec::new(),
    };
    let event = format!("refund:{}", sub.id);
    let key = EventKey { door: Door::TelegramStars, event_id: &event, kind: "refund" };
    ledger::apply(
        state,
        Some(key),
        &sub.account_id,
        Door::TelegramStars,
        &[observed],
        &invoices,
        request_id,
    )
    .await?;
    let entry = crate::audit::Entry {
        actor,
        action: "billing.refund",
        subject: &sub.id,
        detail: serde_json::json!({ "door": "telegram_stars", "charge": last.as_ref().map(|l| l.0.clone()), "amount_xtr": refunded }),
        request_id,
    };
    crate::audit::record(&state.db, now, &entry).await?;
    ledger::subscription(&state.db, &sub.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no subscription {}", sub.id)))
}

/// What one reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Transactions read.
    pub seen: usize,
    /// Payments the ledger lacked, now applied.
    pub recovered: usize,
    /// Refunds made outside the hub, now in the ledger.
    pub refunds: usize,
    /// Transactions of the bot that are not this hub's (another payload) or that it cannot
    /// place (a refund of a payment it never had): left alone.
    pub foreign: usize,
}

impl Reconciled {
    /// One line for the job's summary.
    pub fn summary(&self) -> String {
        format!(
            "{} Star transactions read: {} payments recovered, {} outside refunds applied, {} not ours",
            self.seen, self.recovered, self.refunds, self.foreign
        )
    }
}

/// Pages through the bot's Star transactions (100 at a time, at most 100,000) and brings the
/// ledger in line: see the module's documentation.
pub async fn reconcile(state: &AppState) -> Result<Reconciled, ApiError> {
    use frankenstein::payments::{StarTransactions, TransactionPartner};
    let Some(bot) = state.telegram.bot().cloned() else {
        return Err(ApiError::NotConfigured("Telegram Stars (the Telegram bot)"));
    };
    let mut out = Reconciled::default();
    let mut offset = 0u32;
    let request_id = format!("stars-reconcile:{}", state.now_ms());
    loop {
        let params = serde_json::json!({ "offset": offset, "limit": 100 });
        let page = bot.call("getStarTransactions", &params).await.map_err(|e| {
            tracing::warn!(error = %e, "telegram: getStarTransactions failed");
            ApiError::Upstream("Telegram")
        })?;
        let page: StarTransactions = serde_json::from_value(page).map_err(|e| {
            tracing::warn!(error = %e, "telegram: getStarTransactions answered an unexpected shape");
            ApiError::Upstream("Telegram")
        })?;
        let n = page.transactions.len();
        for t in page.transactions {
            out.seen += 1;
            match (&t.source, &t.receiver) {
                (Some(TransactionPartner::User(u)), _) => {
                    let Some(payload) =
                        u.invoice_payload.as_deref().filter(|p| parse_payload(p).is_some())
                    else {
                        out.foreign += 1;
                        continue;
                    };
                    let known: Option<String> = sqlx::query_scalar(
                        "SELECT charge_id FROM stars_payments WHERE charge_id = $1",
                    )
                    .bind(&t.id)
                    .fetch_optional(state.db.pool())
                    .await
                    .map_err(DbError::from)?;
                    if known.is_some() {
                        continue;
                    }
                    let Ok(payer) = i64::try_from(u.user.id) else {
                        out.foreign += 1;
                        continue;
                    };
                    let sp = SuccessfulPayment {
                        currency: plans::STARS.into(),
                        total_amount: t.amount,
                        invoice_payload: payload.to_owned(),
                        subscription_expiration_date: u
                            .subscription_period
                            .map(|p| t.date.saturating_add(u64::from(p))),
                        is_recurring: u.subscription_period.map(|_| true),
                        is_first_recurring: None,
                        shipping_option_id: None,
                        order_info: None,
                        telegram_payment_charge_id: t.id.clone(),
                        provider_payment_charge_id: String::new(),
                    };
                    let paid_at = i64::try_from(t.date).unwrap_or(0).saturating_mul(1000);
                    match apply_payment_at(state, &sp, payer, paid_at, &request_id).await? {
                        Some(_) => out.recovered += 1,
                        None => out.foreign += 1,
                    }
                }
                (None, Some(TransactionPartner::User(_))) => {
                    // A refund carries the refunded payment's id.
                    let row: Option<(String, Option<i64>)> = sqlx::query_as(
                        "SELECT subscription_external_id, refunded_at_ms FROM stars_payments \
                         WHERE charge_id = $1",
                    )
                    .bind(&t.id)
                    .fetch_optional(state.db.pool())
                    .await
                    .map_err(DbError::from)?;
                    let Some((ext, None)) = row else {
                        if row.is_none() {
                            out.foreign += 1;
                        }
                        continue;
                    };
                    let sub: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM subscriptions WHERE door = 'telegram_stars' AND external_id = $1",
                    )
                    .bind(&ext)
                    .fetch_optional(state.db.pool())
                    .await
                    .map_err(DbError::from)?;
                    let Some(sub) = sub else {
                        out.foreign += 1;
                        continue;
                    };
                    let Some(sub) = ledger::subscription(&state.db, &sub).await? else { continue };
                    let latest: Option<String> = sqlx::query_scalar(
                        "SELECT charge_id FROM stars_payments \
                         WHERE subscription_external_id = $1 AND refunded_at_ms IS NULL \
                         ORDER BY paid_at_ms DESC, charge_id LIMIT 1",
                    )
                    .bind(&ext)
                    .fetch_optional(state.db.pool())
                    .await
                    .map_err(DbError::from)?;
                    // The current period's payment refunded: `refund` asks Telegram again (it
                    // answers "already refunded") and ends the subscription exactly as a console
                    // refund does. An earlier period's: recorded, the current period stands
                    // (`refund` would refund the latest payment, which nobody refunded).
                    if latest.as_deref() == Some(t.id.as_str()) {
                        refund(state, "system", &sub, &request_id).await?;
                    }
                    sqlx::query("UPDATE stars_payments SET refunded_at_ms = COALESCE(refunded_at_ms, $1) WHERE charge_id = $2")
                        .bind(state.now_ms())
                        .bind(&t.id)
                        .execute(state.db.pool())
                        .await
                        .map_err(DbError::from)?;
                    out.refunds += 1;
                }
                _ => out.foreign += 1,
            }
        }
        if n < 100 || offset >= 100_000 {
            break;
        }
        offset += 100;
    }
    if out.recovered + out.refunds > 0 {
        let entry = crate::audit::Entry {
            actor: "system",
            action: "billing.stars_reconcile",
            subject: "telegram_stars",
            detail: serde_json::json!({
                "seen": out.seen, "recovered": out.recovered, "refunds": out.refunds,
                "foreign": out.foreign,
            }),
            request_id: &request_id,
        };
        crate::audit::record(&state.db, state.now_ms(), &entry).await?;
    }
    Ok(out)
}

/// The nightly [`reconcile`] (skipped while the bot is off).
#[derive(Debug, Default)]
pub struct StarsReconcile;

impl crate::jobs::Job for StarsReconcile {
    fn run<'a>(
        &'a self,
        state: &'a AppState,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if state.telegram.bot().is_none() {
                return Ok("skipped: Telegram is off".into());
            }
            reconcile(state).await.map(|r| r.summary()).map_err(|e| e.to_string())
        })
    }
}

/// The daily pass that ends Stars subscriptions whose paid period (and grace) ran out without
/// a renewal payment: Telegram has no subscription state to re-read, so the ledger converges on
/// "no payment came".
#[derive(Debug, Default)]
pub struct StarsExpiry;

impl crate::jobs::Job for StarsExpiry {
    fn run<'a>(
        &'a self,
        state: &'a AppState,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let n = expire(state).await.map_err(|e| e.to_string())?;
            Ok(format!("{n} Stars subscriptions ended without a renewal"))
        })
    }
}

/// Ends every Stars subscription whose coverage is over; how many.
pub async fn expire(state: &AppState) -> Result<usize, ApiError> {
    let now = state.now_ms();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM subscriptions WHERE door = 'telegram_stars' \
         AND status IN ('active', 'canceled', 'past_due', 'trialing') AND covered_until_ms <= $1",
    )
    .bind(now)
    .fetch_all(state.db.pool())
    .await
    .map_err(DbError::from)?;
    let mut n = 0;
    for (id,) in rows {
        let Some(s) = ledger::subscription(&state.db, &id).await? else { continue };
        let observed = Observed {
            external_id: s.external_id.clone(),
            account_id: s.account_id.clone(),
            plan_id: s.plan_id.clone(),
            status: ObservedStatus::Ended,
            period_start_ms: s.current_period_start_ms,
            period_end_ms: s.current_period_end_ms,
            cancel_at_period_end: s.cancel_at_period_end,
            trial_end_ms: s.trial_end_ms,
            ended_at_ms: Some(s.covered_until_ms),
            unpaid_since_ms: None,
            refunded: false,
            referral: s.referral.clone(),
            created_ms: s.created_at_ms,
        };
        let run = format!("stars-expiry:{id}:{}", s.current_period_end_ms);
        let key = EventKey { door: Door::TelegramStars, event_id: &run, kind: "expiry" };
        let out = ledger::apply(
            state,
            Some(key),
            &s.account_id,
            Door::TelegramStars,
            &[observed],
            &[],
            "job",
        )
        .await?;
        n += usize::from(!out.changed.is_empty());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_fit_telegram() {
        let account = "0123456789abcdef0123456789abcdef";
        let plan = "fedcba9876543210fedcba9876543210";
        let p = payload(account, plan);
        assert!(p.len() <= 128);
        assert_eq!(parse_payload(&p), Some((account, plan)));
        assert_eq!(parse_payload("tc1::x"), None);
        assert_eq!(parse_payload("tc2:a:b"), None);
        assert_eq!(parse_payload("tc1:a:b:c"), None);
    }
}
