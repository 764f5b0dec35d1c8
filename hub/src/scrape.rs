//! The business and operations gauges that `/metrics` refreshes from the database at scrape
//! time, before it renders: subscriptions by status, MRR, outbox messages per channel and
//! state, and the build-info gauge. Counters (signals, webhooks, job runs, outbox outcomes) are
//! incremented where things happen; this module only reads.
//!
//! **Cost per scrape** (three aggregate queries): `GROUP BY status` over the index
//! `subscriptions_status_plan` (migration 0051), the live subscriptions joined with their plans
//! through the same index, and `outbox` grouped by channel and state. Each is proportional to
//! the rows it counts, never a per-row round trip; measured in hub/README.md ("Metrics").
//!
//! **MRR** (`tradecast_mrr`, in `billing.currency`): the sum, over subscriptions whose status
//! is `active`, `past_due` or `canceled` (cancelled at period end: MRR stays until the paid
//! period ends; past due: still owed, counted until it expires), of the plan's price normalised
//! to 30 days (`price × 30 / period_days`), in major units of the account currency. Trials,
//! incomplete, expired and refunded subscriptions count 0. Stars (`XTR`) are converted at
//! `billing.xtr_rate`; a plan priced in another currency cannot be converted without a rate and
//! is left out, counted by `tradecast_mrr_unconverted_subscriptions`. The sum is exact
//! (`rust_decimal`); only the exported gauge is a float.

use std::collections::HashMap;

use rust_decimal::Decimal;
use sqlx::Row;

use crate::billing::ledger::Status;
use crate::db::{Db, DbError};

/// Subscriptions in the ledger, by `status`.
pub const SUBSCRIPTIONS: &str = "tradecast_subscriptions";
/// Monthly recurring revenue in the account currency (`currency` label).
pub const MRR: &str = "tradecast_mrr";
/// Live subscriptions whose plan's currency has no rate to the account currency.
pub const MRR_UNCONVERTED: &str = "tradecast_mrr_unconverted_subscriptions";
/// Outbox messages per channel and state.
pub const OUTBOX_MESSAGES: &str = "tradecast_outbox_messages";
/// Always 1, labelled with the hub's version.
pub const BUILD_INFO: &str = "tradecast_build_info";
/// Signal deliveries: accepted (fanned out) to the node's durable acknowledgement, seconds.
pub const FANOUT_DELIVERY: &str = "tradecast_fanout_delivery_seconds";

const ALL_STATUSES: [Status; 7] = [
    Status::Trialing,
    Status::Active,
    Status::PastDue,
    Status::Canceled,
    Status::Expired,
    Status::Refunded,
    Status::Incomplete,
];

const OUTBOX_STATES: [&str; 5] = ["queued", "sending", "sent", "dead", "discarded"];

/// Describes this module's metrics with their units (called once by the recorder's setup).
pub fn describe() {
    metrics::describe_gauge!(SUBSCRIPTIONS, metrics::Unit::Count, "Subscriptions by status");
    metrics::describe_gauge!(
        MRR,
        "Monthly recurring revenue, major units of the account currency (price normalised to 30 days)"
    );
    metrics::describe_gauge!(
        MRR_UNCONVERTED,
        metrics::Unit::Count,
        "Live subscriptions left out of MRR: their currency has no rate"
    );
    metrics::describe_gauge!(
        OUTBOX_MESSAGES,
        metrics::Unit::Count,
        "Outbox messages per channel and state"
    );
    metrics::describe_gauge!(BUILD_INFO, "Always 1, labelled with the hub's version");
    metrics::describe_histogram!(
        FANOUT_DELIVERY,
        metrics::Unit::Seconds,
        "Signal delivery time, from fan-out to the node's durable acknowledgement"
    );
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Minor units per major unit of an ISO 4217 currency (`XTR`: whole stars).
fn minor_per_major(currency: &str) -> Decimal {
    match currency {
        "JPY" | "KRW" | "XTR" | "ISK" | "CLP" | "VND" => Decimal::ONE,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => Decimal::from(1000),
        _ => Decimal::from(100),
    }
}

/// A live plan price group: `n` subscriptions on a plan priced `price_minor` per `period_days`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceGroup {
    /// The plan's price, minor units of `currency`.
    pub price_minor: i64,
    /// ISO 4217 or `XTR`.
    pub currency: String,
    /// The plan's billing period, days (> 0).
    pub period_days: i64,
    /// Live subscriptions on it.
    pub n: i64,
}

/// MRR of `groups` in `account_currency` (major units), and the subscriptions left out because
/// their currency has no rate (or whose amount would overflow). Exact decimal arithmetic.
pub fn mrr(groups: &[PriceGroup], account_currency: &str, xtr_rate: Decimal) -> (Decimal, i64) {
    let mut total = Decimal::ZERO;
    let mut unconverted = 0i64;
    for g in groups {
        if g.period_days <= 0 || g.n <= 0 {
            continue;
        }
        let rate = if g.currency == account_currency {
            Decimal::ONE
        } else if g.currency == "XTR" {
            xtr_rate
        } else {
            unconverted = unconverted.saturating_add(g.n);
            continue;
        };
        let monthly = Decimal::from(g.price_minor)
            .checked_mul(Decimal::from(30))
            .and_then(|v| v.checked_div(Decimal::from(g.period_days)))
            .and_then(|v| v.checked_div(minor_per_major(&g.currency)))
            .and_then(|v| v.checked_mul(rate))
            .and_then(|v| v.checked_mul(Decimal::from(g.n)));
        match monthly.and_then(|m| total.checked_add(m)) {
            Some(t) => total = t,
            None => unconverted = unconverted.saturating_add(g.n),
        }
    }
    (total, unconverted)
}

/// The live subscriptions grouped by their plan's price.
pub async fn price_groups(db: &Db) -> Result<Vec<PriceGroup>, DbError> {
    let rows = sqlx::query(
        "SELECT p.price_minor, p.currency, p.period_days, COUNT(*) \
         FROM subscriptions s JOIN plans p ON p.id = s.plan_id \
         WHERE s.status IN ('active', 'past_due', 'canceled') \
         GROUP BY p.id, p.price_minor, p.currency, p.period_days",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PriceGroup {
                price_minor: r.try_get(0)?,
                currency: r.try_get(1)?,
                period_days: r.try_get(2)?,
                n: r.try_get(3)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// Subscriptions per status (every status present, 0 when none).
pub async fn subscriptions_by_status(db: &Db) -> Result<Vec<(Status, i64)>, DbError> {
    let rows = sqlx::query("SELECT status, COUNT(*) FROM subscriptions GROUP BY status")
        .fetch_all(db.pool())
        .await?;
    let mut by: HashMap<String, i64> = HashMap::new();
    for r in &rows {
        by.insert(r.try_get(0)?, r.try_get(1)?);
    }
    Ok(ALL_STATUSES.iter().map(|s| (*s, by.get(s.as_str()).copied().unwrap_or(0))).collect())
}

/// Refreshes every gauge of this module from the database.
pub async fn refresh(db: &Db, account_currency: &str, xtr_rate: Decimal) -> Result<(), DbError> {
    for (status, n) in subscriptions_by_status(db).await? {
        metrics::gauge!(SUBSCRIPTIONS, "status" => status.as_str()).set(n as f64);
    }
    let (total, unconverted) = mrr(&price_groups(db).await?, account_currency, xtr_rate);
    use rust_decimal::prelude::ToPrimitive;
    metrics::gauge!(MRR, "currency" => account_currency.to_owned())
        .set(total.to_f64().unwrap_or(f64::NAN));
    metrics::gauge!(MRR_UNCONVERTED).set(unconverted as f64);
    let mut by: HashMap<(&'static str, String), i64> = HashMap::new();
    for (channel, state, n) in crate::outbox::counts(db).await? {
        by.insert((channel.as_str(), state), n);
    }
    for channel in crate::outbox::Channel::ALL {
        for state in OUTBOX_STATES {
            let n = by.remove(&(channel.as_str(), state.to_owned())).unwrap_or(0);
            metrics::gauge!(OUTBOX_MESSAGES, "channel" => channel.as_str(), "state" => state)
                .set(n as f64);
        }
    }
    for ((channel, state), n) in by {
        metrics::gauge!(OUTBOX_MESSAGES, "channel" => channel, "state" => state).set(n as f64);
    }
    crate::outbox::update_gauge(db).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(price_minor: i64, currency: &str, period_days: i64, n: i64) -> PriceGroup {
        PriceGroup { price_minor, currency: currency.into(), period_days, n }
    }

    fn check(groups: &[PriceGroup], expect: &str, unconverted: i64) {
        let (total, left) = mrr(groups, "USD", Decimal::new(13, 3));
        assert_eq!((total.normalize().to_string(), left), (expect.to_string(), unconverted));
    }

    #[test]
    fn mrr_normalises_to_30_days_and_converts_stars() {
        check(&[], "0", 0);
        // 2 × 49.00 USD per 30 days.
        check(&[g(4900, "USD", 30, 2)], "98", 0);
        // 120.00 USD per 365 days: 120 × 30 / 365 = 9.8630136986...
        let (t, _) = mrr(&[g(12000, "USD", 365, 1)], "USD", Decimal::ONE);
        assert_eq!(t.round_dp(4).to_string(), "9.8630");
        // 500 stars per 30 days at 0.013 USD each: 6.5 USD.
        check(&[g(500, "XTR", 30, 1)], "6.5", 0);
        // 100 stars per 7 days: 100 × 30 / 7 × 0.013 = 5.5714...
        let (t, _) = mrr(&[g(100, "XTR", 7, 1)], "USD", Decimal::new(13, 3));
        assert_eq!(t.round_dp(4).to_string(), "5.5714");
        // A currency without a rate is left out and counted; a free plan counts 0.
        check(&[g(4900, "EUR", 30, 3), g(0, "USD", 30, 5), g(1000, "USD", 30, 1)], "10", 3);
        // Three-digit currencies are not the account currency here: left out.
        check(&[g(1000, "KWD", 30, 1)], "0", 1);
    }
}
