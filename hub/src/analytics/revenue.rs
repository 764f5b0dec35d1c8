//! The owner's revenue figures, computed from the billing ledger: MRR and its movements per
//! month, churn, ARPA, LTV, cohort retention, gross and net revenue — by plan, by door and in
//! total, one set of figures per currency (never summed across currencies).
//!
//! The rows are loaded once ([`load`]: plans, subscriptions, their plan intervals from the
//! entitlements the ledger grants, paid invoices); everything else is a pure function of them
//! ([`compute`]), unit-tested without a database.
//!
//! **Definitions** (after ChartMogul's and Baremetrics' published ones; shown on the page as
//! [`DEFINITIONS`]):
//! - *MRR* of a subscription at an instant: its plan's price normalised to 30 days, the one
//!   definition of [`crate::scrape::mrr`] (`price × 30 / period_days`, so a yearly plan counts
//!   `price × 30 / 365`, about 1/12). It counts from the end of a free trial (a trial counts 0)
//!   until the end of what was paid for (`covered_until_ms` of the ledger: a cancelled
//!   subscription keeps its MRR to its period's end, a past-due one through its grace period, a
//!   refunded one stops at the refund). The plan at an instant is the one of the entitlement
//!   interval the ledger granted for the subscription then (an upgrade or downgrade ends one
//!   plan's interval and opens the next). Stars (`XTR`) are converted to the account currency at
//!   `billing.xtr_rate`; other currencies stay in their own currency.
//! - A *customer* is an account with MRR > 0 in that currency. A month's MRR is the MRR at its
//!   last millisecond (the current month: now).
//! - *Movements* of a month compare each customer's MRR at the end of the previous month with
//!   the end of this one: 0 → >0 is *new* (first MRR ever) or *reactivation*; >0 → 0 is
//!   *churn*; up is *expansion*, down is *contraction*. Their sum is exactly the change in MRR
//!   (*net new MRR*). **A sign-up and a churn within the same month count neither as new nor as
//!   churn** (the customer's MRR is 0 at both ends): it is in that month's gross revenue only.
//! - *Logo churn* = customers churned in the month / customers at its start. *Revenue churn* =
//!   (churn + contraction MRR) / MRR at its start. *ARPA* = MRR / customers at the month's end.
//!   *LTV* = ARPA / revenue churn, undefined when revenue churn is 0.
//! - *Cohorts*: customers by the month of their first MRR; each later month's end, how many of
//!   them still have MRR and how much.
//! - *Gross revenue* = paid invoices by payment date; *refunds* and *chargebacks* (disputes
//!   lost) reverse revenue in the month the ledger recorded them (dated by the invoice's last
//!   update); *processor fees* (Stripe's processing and dispute fees, from its balance
//!   transactions) count in the month of the payment, in the currency Stripe settled them in;
//!   *net* = gross − refunds − chargebacks − processor fees − affiliate commissions
//!   ([`Commission`], an input). Telegram Stars carry no fee in the ledger: `billing.xtr_rate`
//!   is already what a Star brings.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::billing::ledger::{Door, Status};
use crate::db::{Db, DbError};
use crate::scrape::{self, PriceGroup};

const DAY_MS: i64 = 86_400_000;

/// The definitions, as the page writes them.
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "MRR",
        "Each subscription's plan price normalised to 30 days (price × 30 / period days: a yearly \
         plan counts price × 30 / 365). It counts from the end of a free trial (trials count 0) \
         until the end of what was paid for: a cancelled subscription keeps its MRR until its \
         paid period ends, a past-due one through its grace period, a refunded one stops at the \
         refund. A month's MRR is the MRR at its last instant (this month: now).",
    ),
    ("ARR", "MRR × 12."),
    (
        "Customers",
        "Accounts with MRR above 0 in that currency. Manual grants carry no price in the ledger \
         and count no MRR.",
    ),
    (
        "Net new MRR",
        "MRR at the month's end − MRR at the previous month's end = new + expansion + \
         reactivation − contraction − churn, each customer compared between the two month ends: \
         from 0 is new (first MRR ever) or reactivation, to 0 is churn, up is expansion, down is \
         contraction. A sign-up and a churn within the same month count neither as new nor as \
         churn: that customer shows in the month's gross revenue only.",
    ),
    ("Logo churn", "Customers churned in the month / customers at its start."),
    ("Revenue churn", "(Churn + contraction MRR) / MRR at the month's start."),
    ("ARPA", "MRR / customers, at the month's end."),
    ("LTV", "ARPA / revenue churn; undefined while revenue churn is 0."),
    (
        "Cohorts",
        "Customers grouped by the month of their first MRR; for each later month's end, how many \
         still have MRR and how much.",
    ),
    (
        "Gross and net",
        "Gross = paid invoices, by payment date. Refunds and chargebacks (disputes lost) reverse \
         revenue in the month the ledger recorded them. Processor fees are what Stripe took \
         (processing fees, and the fee of every dispute, won or lost), from its balance \
         transactions, counted in the month of the payment and in the currency Stripe settled \
         them in. Net = gross − refunds − chargebacks − processor fees − affiliate commissions. \
         Telegram Stars carry no fee here: billing.xtr_rate is already what a Star brings once \
         withdrawn.",
    ),
    (
        "Currencies",
        "Telegram Stars are converted to the account currency at billing.xtr_rate; every other \
         currency has its own figures, never summed with another.",
    ),
];

/// Where a customer pays, as the revenue page splits it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RevenueDoor {
    /// Stripe.
    Stripe,
    /// Telegram Stars.
    Stars,
    /// Granted by an owner or admin (no price in the ledger: no MRR).
    Manual,
}

impl RevenueDoor {
    /// Every door, in display order.
    pub const ALL: [RevenueDoor; 3] =
        [RevenueDoor::Stripe, RevenueDoor::Stars, RevenueDoor::Manual];

    /// Stable text for query strings and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RevenueDoor::Stripe => "stripe",
            RevenueDoor::Stars => "stars",
            RevenueDoor::Manual => "manual",
        }
    }

    /// Parses [`RevenueDoor::as_str`]'s text.
    pub fn parse(text: &str) -> Option<RevenueDoor> {
        RevenueDoor::ALL.into_iter().find(|d| d.as_str() == text)
    }

    /// The door of a ledger subscription.
    pub fn of(door: Door) -> RevenueDoor {
        match door {
            Door::Stripe => RevenueDoor::Stripe,
            Door::TelegramStars => RevenueDoor::Stars,
        }
    }
}

/// A plan's price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPrice {
    /// Our id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Minor units of `currency` per period.
    pub price_minor: i64,
    /// ISO 4217 or `XTR`.
    pub currency: String,
    /// Days per period.
    pub period_days: i64,
}

/// The plan a subscription was on from `from_ms` (inclusive) to `to_ms` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInterval {
    /// The plan.
    pub plan_id: String,
    /// Start.
    pub from_ms: i64,
    /// End (`i64::MAX`: open).
    pub to_ms: i64,
}

/// A subscription with its plan history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubHistory {
    /// Our id.
    pub id: String,
    /// The customer.
    pub account_id: String,
    /// Its door.
    pub door: RevenueDoor,
    /// Its free trial's end (MRR 0 before).
    pub trial_end_ms: Option<i64>,
    /// The end of what was paid for, once it ended (expired, refunded, or cancelled at period
    /// end): no MRR from here. `None` while it renews.
    pub paid_until_ms: Option<i64>,
    /// The plans it was on.
    pub intervals: Vec<PlanInterval>,
}

/// A paid invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidInvoice {
    /// Its door.
    pub door: RevenueDoor,
    /// The plan it billed, when known.
    pub plan_id: Option<String>,
    /// ISO 4217 or `XTR`.
    pub currency: String,
    /// Paid, minor units.
    pub paid_minor: i64,
    /// Refunded, minor units.
    pub refunded_minor: i64,
    /// When it was paid.
    pub paid_at_ms: i64,
    /// When the refund was recorded (if any).
    pub refunded_at_ms: Option<i64>,
    /// Lost to disputes (chargebacks), minor units; recorded at `refunded_at_ms`.
    pub disputed_minor: i64,
    /// What the processor took (processing and dispute fees), minor units of `fee_currency`.
    pub fee_minor: i64,
    /// The fees' currency (the processor's settlement currency), when any was read.
    pub fee_currency: Option<String>,
}

/// An affiliate commission owed on a payment: the input from the affiliates module (none by
/// default), subtracted from net revenue in the month of `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commission {
    /// The door of the payment it is on.
    pub door: RevenueDoor,
    /// The plan of the payment, when known.
    pub plan_id: Option<String>,
    /// ISO 4217 or `XTR`.
    pub currency: String,
    /// Minor units.
    pub amount_minor: i64,
    /// When it was earned.
    pub at_ms: i64,
}

/// Everything the figures are computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    /// `billing.currency`.
    pub account_currency: String,
    /// `billing.xtr_rate`: one Star in the account currency.
    pub xtr_rate: Decimal,
    /// Plans by id.
    pub plans: HashMap<String, PlanPrice>,
    /// Every subscription.
    pub subs: Vec<SubHistory>,
    /// Every paid invoice.
    pub invoices: Vec<PaidInvoice>,
}

/// Which part of the business.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// One plan only.
    pub plan: Option<String>,
    /// One door only.
    pub door: Option<RevenueDoor>,
}

/// One month's figures in one currency (major units).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonthFigures {
    /// `YYYY-MM`.
    pub month: String,
    /// MRR at the previous month's end.
    pub mrr_start: Decimal,
    /// MRR at this month's end (or now).
    pub mrr_end: Decimal,
    /// New MRR.
    pub new: Decimal,
    /// Expansion MRR.
    pub expansion: Decimal,
    /// Reactivation MRR.
    pub reactivation: Decimal,
    /// Contraction MRR (positive).
    pub contraction: Decimal,
    /// Churned MRR (positive).
    pub churn: Decimal,
    /// Customers at the start.
    pub customers_start: u64,
    /// Customers at the end.
    pub customers_end: u64,
    /// New customers.
    pub new_customers: u64,
    /// Reactivated customers.
    pub reactivated_customers: u64,
    /// Churned customers.
    pub churned_customers: u64,
    /// Gross revenue: paid invoices.
    pub gross: Decimal,
    /// Refunds recorded.
    pub refunds: Decimal,
    /// Chargebacks: disputes lost.
    pub chargebacks: Decimal,
    /// Processor fees.
    pub fees: Decimal,
    /// Affiliate commissions.
    pub affiliate: Decimal,
}

impl MonthFigures {
    /// Net new MRR (= `mrr_end − mrr_start`).
    pub fn net_new(&self) -> Decimal {
        self.new + self.expansion + self.reactivation - self.contraction - self.churn
    }

    /// ARR at the end.
    pub fn arr(&self) -> Decimal {
        self.mrr_end * Decimal::from(12)
    }

    /// Churned customers / customers at the start.
    pub fn logo_churn(&self) -> Option<Decimal> {
        ratio(Decimal::from(self.churned_customers), Decimal::from(self.customers_start))
    }

    /// (Churn + contraction) / MRR at the start.
    pub fn revenue_churn(&self) -> Option<Decimal> {
        ratio(self.churn + self.contraction, self.mrr_start)
    }

    /// MRR / customers at the end.
    pub fn arpa(&self) -> Option<Decimal> {
        ratio(self.mrr_end, Decimal::from(self.customers_end))
    }

    /// ARPA / revenue churn; `None` when either is undefined or churn is 0.
    pub fn ltv(&self) -> Option<Decimal> {
        let churn = self.revenue_churn().filter(|c| !c.is_zero())?;
        ratio(self.arpa()?, churn)
    }

    /// Gross − refunds − chargebacks − processor fees − affiliate commissions.
    pub fn net(&self) -> Decimal {
        self.gross - self.refunds - self.chargebacks - self.fees - self.affiliate
    }
}

fn ratio(a: Decimal, b: Decimal) -> Option<Decimal> {
    if b.is_zero() { None } else { a.checked_div(b) }
}

/// One cohort: the customers whose first MRR fell in `month`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cohort {
    /// `YYYY-MM`.
    pub month: String,
    /// Customers in it.
    pub size: u64,
    /// From its month on, at each month's end: customers still with MRR, and their MRR.
    pub cells: Vec<(u64, Decimal)>,
}

/// All the figures of one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyFigures {
    /// MRR now.
    pub mrr_now: Decimal,
    /// Customers now.
    pub customers_now: u64,
    /// One row per month of the range.
    pub months: Vec<MonthFigures>,
    /// Cohorts starting in the range.
    pub cohorts: Vec<Cohort>,
}

/// The figures, by currency (the account currency always present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The instant of "now".
    pub as_of_ms: i64,
    /// Currency → figures.
    pub currencies: BTreeMap<String, CurrencyFigures>,
}

/// A month as `YYYY-MM` and its first instant (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    /// Year.
    pub year: i16,
    /// 1..=12.
    pub month: i8,
}

impl Month {
    /// The month holding `ms` (UTC).
    pub fn of(ms: i64) -> Month {
        // Civil from days (H. Hinnant's algorithm), UTC.
        let z = ms.div_euclid(DAY_MS) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Month { year: year.clamp(0, 9999) as i16, month: month as i8 }
    }

    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Option<Month> {
        let (y, m) = text.trim().split_once('-')?;
        let (year, month) = (y.parse::<i16>().ok()?, m.parse::<i8>().ok()?);
        ((1970..=9998).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// The next month.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month { year: self.year + 1, month: 1 }
        } else {
            Month { year: self.year, month: self.month + 1 }
        }
    }

    /// Months ahead.
    pub fn plus(self, n: u32) -> Month {
        let idx = i64::from(self.year) * 12 + i64::from(self.month - 1) + i64::from(n);
        Month { year: (idx.div_euclid(12)) as i16, month: (idx.rem_euclid(12) + 1) as i8 }
    }

    /// Months back.
    pub fn minus(self, n: u32) -> Month {
        let idx = i64::from(self.year) * 12 + i64::from(self.month - 1) - i64::from(n);
        Month { year: (idx.div_euclid(12)) as i16, month: (idx.rem_euclid(12) + 1) as i8 }
    }

    /// Its first instant, unix ms.
    pub fn start_ms(self) -> i64 {
        // Days from civil (H. Hinnant's algorithm), UTC.
        let (m, y) = (i64::from(self.month), i64::from(self.year) - i64::from(self.month <= 2));
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        (era * 146_097 + doe - 719_468) * DAY_MS
    }

    /// `YYYY-MM`.
    pub fn label(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
}

impl Ledger {
    fn key_currency(&self, currency: &str) -> String {
        if currency == "XTR" { self.account_currency.clone() } else { currency.to_owned() }
    }

    /// `minor` units of `currency` in major units of its reporting currency: the conversion of
    /// [`scrape::mrr`] (a 30-day group is its price), so there is one rule for units and Stars.
    fn major(&self, minor: i64, currency: &str) -> Option<(String, Decimal)> {
        let key = self.key_currency(currency);
        let g = PriceGroup { price_minor: minor, currency: currency.into(), period_days: 30, n: 1 };
        let (v, left) = scrape::mrr(&[g], &key, self.xtr_rate);
        (left == 0).then_some((key, v))
    }

    /// A plan's MRR (currency, major units), `None` for a free or unconvertible plan.
    fn plan_mrr(&self, plan_id: &str) -> Option<(String, Decimal)> {
        let p = self.plans.get(plan_id)?;
        let key = self.key_currency(&p.currency);
        let g = PriceGroup {
            price_minor: p.price_minor,
            currency: p.currency.clone(),
            period_days: p.period_days,
            n: 1,
        };
        let (v, left) = scrape::mrr(&[g], &key, self.xtr_rate);
        (left == 0 && v > Decimal::ZERO).then_some((key, v))
    }

    fn sub_in(&self, s: &SubHistory, f: &Filter) -> bool {
        s.door != RevenueDoor::Manual && f.door.is_none_or(|d| d == s.door)
    }

    /// The paid spans of a subscription (plan, from, to), trial and end cut off, filtered.
    fn paid_spans<'a>(
        &'a self,
        s: &'a SubHistory,
        f: &'a Filter,
    ) -> impl Iterator<Item = (&'a str, i64, i64)> + 'a {
        let from_floor = s.trial_end_ms.unwrap_or(i64::MIN);
        let to_cap = s.paid_until_ms.unwrap_or(i64::MAX);
        s.intervals
            .iter()
            .filter(move |_| self.sub_in(s, f))
            .filter(move |i| f.plan.as_ref().is_none_or(|p| *p == i.plan_id))
            .map(move |i| (i.plan_id.as_str(), i.from_ms.max(from_floor), i.to_ms.min(to_cap)))
            .filter(|(_, a, b)| a < b)
    }

    /// MRR per currency and account at instant `t`.
    pub fn snapshot(&self, t: i64, f: &Filter) -> BTreeMap<String, BTreeMap<String, Decimal>> {
        let mut out: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
        for s in &self.subs {
            for (plan, a, b) in self.paid_spans(s, f) {
                if a <= t
                    && t < b
                    && let Some((cur, m)) = self.plan_mrr(plan)
                {
                    *out.entry(cur).or_default().entry(s.account_id.clone()).or_default() += m;
                }
            }
        }
        out
    }

    /// Each customer's first instant with MRR, per currency.
    fn first_paid(&self, f: &Filter) -> BTreeMap<(String, String), i64> {
        let mut out: BTreeMap<(String, String), i64> = BTreeMap::new();
        for s in &self.subs {
            for (plan, a, _) in self.paid_spans(s, f) {
                if let Some((cur, _)) = self.plan_mrr(plan) {
                    let e = out.entry((cur, s.account_id.clone())).or_insert(a);
                    *e = (*e).min(a);
                }
            }
        }
        out
    }
}

/// One month's money in one currency, as it is summed.
#[derive(Debug, Clone, Copy, Default)]
struct Money {
    gross: Decimal,
    refunds: Decimal,
    chargebacks: Decimal,
    fees: Decimal,
    affiliate: Decimal,
}

/// The figures for the months `from..=to` (the last one up to `now_ms`), filtered, with the
/// affiliate commissions to subtract (`&[]`: none).
pub fn compute(
    ledger: &Ledger,
    from: Month,
    to: Month,
    now_ms: i64,
    filter: &Filter,
    commissions: &[Commission],
) -> Report {
    let mut months = Vec::new();
    let mut m = from;
    while m <= to && months.len() < 240 {
        months.push(m);
        m = m.next();
    }
    // The instant each month's MRR is read: its last ms, or now.
    let end_of = |m: Month| (m.next().start_ms() - 1).min(now_ms);
    let first = ledger.first_paid(filter);
    let mut snaps = Vec::with_capacity(months.len() + 1);
    if let Some(m0) = months.first() {
        snaps.push(ledger.snapshot(m0.start_ms() - 1, filter));
    }
    for m in &months {
        snaps.push(ledger.snapshot(end_of(*m), filter));
    }
    let now_snap = ledger.snapshot(now_ms, filter);
    let mut currencies: BTreeSet<String> = BTreeSet::from([ledger.account_currency.clone()]);
    currencies.extend(snaps.iter().flat_map(|s| s.keys().cloned()));
    currencies.extend(now_snap.keys().cloned());
    let in_filter = |door: RevenueDoor, plan: &Option<String>| {
        filter.door.is_none_or(|d| d == door)
            && filter.plan.as_ref().is_none_or(|p| plan.as_ref() == Some(p))
    };
    let mut money: BTreeMap<(String, usize), Money> = BTreeMap::new();
    let month_index =
        |t: i64| months.iter().position(|m| m.start_ms() <= t && t < m.next().start_ms());
    for inv in ledger.invoices.iter().filter(|i| in_filter(i.door, &i.plan_id)) {
        if let (Some(k), Some((cur, v))) =
            (month_index(inv.paid_at_ms), ledger.major(inv.paid_minor, &inv.currency))
        {
            money.entry((cur.clone(), k)).or_default().gross += v;
            currencies.insert(cur);
        }
        let given_back = month_index(inv.refunded_at_ms.unwrap_or(inv.paid_at_ms));
        if inv.refunded_minor > 0
            && let (Some(k), Some((cur, v))) =
                (given_back, ledger.major(inv.refunded_minor, &inv.currency))
        {
            money.entry((cur.clone(), k)).or_default().refunds += v;
            currencies.insert(cur);
        }
        if inv.disputed_minor > 0
            && let (Some(k), Some((cur, v))) =
                (given_back, ledger.major(inv.disputed_minor, &inv.currency))
        {
            money.entry((cur.clone(), k)).or_default().chargebacks += v;
            currencies.insert(cur);
        }
        if inv.fee_minor != 0
            && let (Some(k), Some((cur, v))) = (
                month_index(inv.paid_at_ms),
                ledger.major(inv.fee_minor, inv.fee_currency.as_deref().unwrap_or(&inv.currency)),
            )
        {
            money.entry((cur.clone(), k)).or_default().fees += v;
            currencies.insert(cur);
        }
    }
    for c in commissions.iter().filter(|c| in_filter(c.door, &c.plan_id)) {
        if let (Some(k), Some((cur, v))) =
            (month_index(c.at_ms), ledger.major(c.amount_minor, &c.currency))
        {
            money.entry((cur.clone(), k)).or_default().affiliate += v;
            currencies.insert(cur);
        }
    }
    let empty = BTreeMap::new();
    let mut out = BTreeMap::new();
    for cur in currencies {
        let snap = |i: usize| snaps.get(i).and_then(|s| s.get(&cur)).unwrap_or(&empty);
        let mut rows = Vec::with_capacity(months.len());
        for (k, m) in months.iter().enumerate() {
            let (before, after) = (snap(k), snap(k + 1));
            let mut r = MonthFigures { month: m.label(), ..MonthFigures::default() };
            r.mrr_start = before.values().copied().sum();
            r.mrr_end = after.values().copied().sum();
            r.customers_start = before.len() as u64;
            r.customers_end = after.len() as u64;
            let accounts: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
            for a in accounts {
                let (x, y) = (before.get(a).copied(), after.get(a).copied());
                match (x, y) {
                    (None, Some(y)) => {
                        let since = first.get(&(cur.clone(), a.clone())).copied();
                        if since.is_some_and(|t| t < m.start_ms()) {
                            r.reactivation += y;
                            r.reactivated_customers += 1;
                        } else {
                            r.new += y;
                            r.new_customers += 1;
                        }
                    }
                    (Some(x), None) => {
                        r.churn += x;
                        r.churned_customers += 1;
                    }
                    (Some(x), Some(y)) if y > x => r.expansion += y - x,
                    (Some(x), Some(y)) if y < x => r.contraction += x - y,
                    _ => {}
                }
            }
            let m = money.get(&(cur.clone(), k)).copied().unwrap_or_default();
            (r.gross, r.refunds, r.chargebacks, r.fees, r.affiliate) =
                (m.gross, m.refunds, m.chargebacks, m.fees, m.affiliate);
            rows.push(r);
        }
        // Cohorts: customers by the month of their first MRR, within the range.
        let mut cohorts = Vec::new();
        for (k, m) in months.iter().enumerate() {
            let members: Vec<&String> = first
                .iter()
                .filter(|((c, _), t)| *c == cur && m.start_ms() <= **t && **t < m.next().start_ms())
                .map(|((_, a), _)| a)
                .collect();
            if members.is_empty() {
                continue;
            }
            let cells = (k..months.len())
                .map(|j| {
                    let s = snap(j + 1);
                    let held: Vec<Decimal> =
                        members.iter().filter_map(|a| s.get(*a).copied()).collect();
                    (held.len() as u64, held.iter().copied().sum())
                })
                .collect();
            cohorts.push(Cohort { month: m.label(), size: members.len() as u64, cells });
        }
        let now = now_snap.get(&cur).unwrap_or(&empty);
        out.insert(
            cur.clone(),
            CurrencyFigures {
                mrr_now: now.values().copied().sum(),
                customers_now: now.len() as u64,
                months: rows,
                cohorts,
            },
        );
    }
    Report { as_of_ms: now_ms, currencies: out }
}

/// Reads the ledger's rows once: plans, subscriptions with their plan intervals (the
/// entitlements the ledger granted for each, by door and processor id), paid invoices.
/// The affiliate commissions booked on the ledger's invoices, as costs against net revenue:
/// every entry the hub owes or paid (pending, held for review, payable, paid) and the reversals
/// of them (negative); a commission rejected or cancelled (refunded before it was paid) was
/// never owed. Each is dated when it was booked and carries its invoice's door and plan.
pub async fn commissions(db: &Db) -> Result<Vec<Commission>, DbError> {
    let rows = sqlx::query(
        "SELECT i.door, s.plan_id, c.currency, c.amount_minor, c.created_at_ms \
         FROM affiliate_commissions c JOIN invoices i ON i.id = c.invoice_id \
         LEFT JOIN subscriptions s ON s.id = i.subscription_id \
         WHERE c.status IN ('pending', 'held', 'payable', 'paid') ORDER BY c.created_at_ms, c.id",
    )
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let door: String = r.try_get(0)?;
        let door = match Door::parse(&door) {
            Some(Door::Stripe) => RevenueDoor::Stripe,
            Some(Door::TelegramStars) => RevenueDoor::Stars,
            None => return Err(DbError::Corrupt(format!("invoice door {door:?}"))),
        };
        out.push(Commission {
            door,
            plan_id: r.try_get(1)?,
            currency: r.try_get(2)?,
            amount_minor: r.try_get(3)?,
            at_ms: r.try_get(4)?,
        });
    }
    Ok(out)
}

pub async fn load(db: &Db, account_currency: &str, xtr_rate: Decimal) -> Result<Ledger, DbError> {
    let mut plans = HashMap::new();
    for r in sqlx::query("SELECT id, name, price_minor, currency, period_days FROM plans")
        .fetch_all(db.pool())
        .await?
    {
        let p = PlanPrice {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            price_minor: r.try_get(2)?,
            currency: r.try_get(3)?,
            period_days: r.try_get(4)?,
        };
        plans.insert(p.id.clone(), p);
    }
    let mut intervals: HashMap<(String, String), Vec<PlanInterval>> = HashMap::new();
    for r in sqlx::query(
        "SELECT source, external_ref, plan_id, starts_at_ms, expires_at_ms, revoked_at_ms \
         FROM entitlements WHERE source IN ('stripe', 'telegram_stars') \
         AND external_ref IS NOT NULL ORDER BY starts_at_ms, id",
    )
    .fetch_all(db.pool())
    .await?
    {
        let (exp, rev): (Option<i64>, Option<i64>) = (r.try_get(4)?, r.try_get(5)?);
        let to = match (exp, rev) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => i64::MAX,
        };
        intervals.entry((r.try_get(0)?, r.try_get(1)?)).or_default().push(PlanInterval {
            plan_id: r.try_get(2)?,
            from_ms: r.try_get(3)?,
            to_ms: to,
        });
    }
    let mut subs = Vec::new();
    let mut plan_of_sub: HashMap<String, String> = HashMap::new();
    for r in sqlx::query(
        "SELECT id, account_id, plan_id, door, external_id, status, trial_end_ms, \
         covered_until_ms FROM subscriptions",
    )
    .fetch_all(db.pool())
    .await?
    {
        let door_text: String = r.try_get(3)?;
        let door = Door::parse(&door_text)
            .ok_or_else(|| DbError::Corrupt(format!("door {door_text:?}")))?;
        let status_text: String = r.try_get(5)?;
        let status = Status::parse(&status_text)
            .ok_or_else(|| DbError::Corrupt(format!("subscription status {status_text:?}")))?;
        let external: String = r.try_get(4)?;
        let covered: i64 = r.try_get(7)?;
        let id: String = r.try_get(0)?;
        plan_of_sub.insert(id.clone(), r.try_get(2)?);
        let paid_until_ms = match status {
            Status::Canceled | Status::Expired | Status::Refunded | Status::Incomplete => {
                Some(covered)
            }
            Status::Trialing | Status::Active | Status::PastDue => None,
        };
        subs.push(SubHistory {
            id,
            account_id: r.try_get(1)?,
            door: RevenueDoor::of(door),
            trial_end_ms: r.try_get(6)?,
            paid_until_ms,
            intervals: intervals
                .remove(&(door.source().as_str().to_owned(), external))
                .unwrap_or_default(),
        });
    }
    let by_id: HashMap<&str, &SubHistory> = subs.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut invoices = Vec::new();
    for r in sqlx::query(
        "SELECT subscription_id, door, currency, amount_paid_minor, amount_refunded_minor, \
         paid_at_ms, updated_at_ms, period_start_ms, amount_disputed_minor, fee_minor, \
         fee_currency FROM invoices WHERE status = 'paid' AND paid_at_ms IS NOT NULL",
    )
    .fetch_all(db.pool())
    .await?
    {
        let sub_id: Option<String> = r.try_get(0)?;
        let door_text: String = r.try_get(1)?;
        let door = Door::parse(&door_text)
            .ok_or_else(|| DbError::Corrupt(format!("door {door_text:?}")))?;
        let period_start: i64 = r.try_get(7)?;
        // The plan billed: the subscription's plan at the period's start, else its plan now.
        let plan_id = sub_id.as_ref().and_then(|id| {
            by_id
                .get(id.as_str())
                .and_then(|s| {
                    s.intervals
                        .iter()
                        .find(|i| i.from_ms <= period_start && period_start < i.to_ms)
                        .map(|i| i.plan_id.clone())
                })
                .or_else(|| plan_of_sub.get(id).cloned())
        });
        let refunded: i64 = r.try_get(4)?;
        let disputed: i64 = r.try_get(8)?;
        invoices.push(PaidInvoice {
            door: RevenueDoor::of(door),
            plan_id,
            currency: r.try_get(2)?,
            paid_minor: r.try_get(3)?,
            refunded_minor: refunded,
            paid_at_ms: r.try_get::<Option<i64>, _>(5)?.unwrap_or_default(),
            refunded_at_ms: (refunded > 0 || disputed > 0).then(|| r.try_get(6)).transpose()?,
            disputed_minor: disputed,
            fee_minor: r.try_get(9)?,
            fee_currency: r.try_get(10)?,
        });
    }
    Ok(Ledger { account_currency: account_currency.to_owned(), xtr_rate, plans, subs, invoices })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// 2026-`m`-`day` 00:00 UTC, ms.
    fn at(m: i8, day: i64) -> i64 {
        Month { year: 2026, month: m }.start_ms() + (day - 1) * DAY_MS
    }

    fn plan(id: &str, price_minor: i64, currency: &str, period_days: i64) -> (String, PlanPrice) {
        let p = PlanPrice {
            id: id.into(),
            name: id.into(),
            price_minor,
            currency: currency.into(),
            period_days,
        };
        (id.into(), p)
    }

    fn sub(
        id: &str,
        account: &str,
        door: RevenueDoor,
        trial_end_ms: Option<i64>,
        paid_until_ms: Option<i64>,
        intervals: &[(&str, i64, i64)],
    ) -> SubHistory {
        SubHistory {
            id: id.into(),
            account_id: account.into(),
            door,
            trial_end_ms,
            paid_until_ms,
            intervals: intervals
                .iter()
                .map(|(p, a, b)| PlanInterval { plan_id: (*p).into(), from_ms: *a, to_ms: *b })
                .collect(),
        }
    }

    fn paid(
        door: RevenueDoor,
        cur: &str,
        minor: i64,
        at_ms: i64,
        refund: Option<(i64, i64)>,
    ) -> PaidInvoice {
        PaidInvoice {
            door,
            plan_id: Some("basic".into()),
            currency: cur.into(),
            paid_minor: minor,
            refunded_minor: refund.map_or(0, |r| r.0),
            paid_at_ms: at_ms,
            refunded_at_ms: refund.map(|r| r.1),
            disputed_minor: 0,
            fee_minor: 0,
            fee_currency: None,
        }
    }

    /// The hand-computed ledger (USD account, 1 Star = 0.02 USD). Plans and their MRR:
    /// basic 30.00 USD / 30 d = 30; pro 90.00 / 30 d = 90; yearly 365.00 / 365 d
    /// = 365 × 30 / 365 = 30; stars 1500 XTR / 30 d = 1500 × 0.02 = 30 USD; euro 20.00 EUR /
    /// 30 d = 20 EUR (its own currency).
    fn ledger() -> Ledger {
        use RevenueDoor::{Stars, Stripe};
        const OPEN: i64 = i64::MAX;
        let subs = vec![
            // a: basic from Jan 10, upgraded to pro on Feb 15 (expansion).
            sub(
                "a1",
                "a",
                Stripe,
                None,
                None,
                &[("basic", at(1, 10), at(2, 15)), ("pro", at(2, 15), OPEN)],
            ),
            // b: pro from Jan 5, downgraded to basic on Mar 3 (contraction).
            sub(
                "b1",
                "b",
                Stripe,
                None,
                None,
                &[("pro", at(1, 5), at(3, 3)), ("basic", at(3, 3), OPEN)],
            ),
            // c: basic from Jan 20, cancelled: MRR until its paid period ends (Feb 19: churn in
            // February), back on Apr 2 (reactivation).
            sub("c1", "c", Stripe, None, Some(at(2, 19)), &[("basic", at(1, 20), at(2, 19))]),
            sub("c2", "c", Stripe, None, None, &[("basic", at(4, 2), OPEN)]),
            // d: a trial from Mar 25 to Apr 8, then paid (0 in March, new in April).
            sub("d1", "d", Stripe, Some(at(4, 8)), None, &[("basic", at(3, 25), OPEN)]),
            // e: Stars from Jan 3.
            sub("e1", "e", Stars, None, None, &[("stars", at(1, 3), OPEN)]),
            // f: yearly from Feb 10.
            sub("f1", "f", Stripe, None, None, &[("yearly", at(2, 10), OPEN)]),
            // g: signed up Mar 5, refunded Mar 20: same-month sign-up and churn.
            sub("g1", "g", Stripe, None, Some(at(3, 20)), &[("basic", at(3, 5), at(3, 20))]),
            // h: a euro customer from Feb 1.
            sub("h1", "h", Stripe, None, None, &[("euro", at(2, 1), OPEN)]),
        ];
        let invoices = vec![
            paid(Stripe, "USD", 3000, at(1, 10), None),
            paid(Stars, "XTR", 1500, at(1, 3), None),
            paid(Stripe, "USD", 3000, at(3, 5), Some((3000, at(3, 20)))),
            paid(Stripe, "EUR", 2000, at(2, 1), None),
        ];
        Ledger {
            account_currency: "USD".into(),
            xtr_rate: d("0.02"),
            plans: [
                plan("basic", 3000, "USD", 30),
                plan("pro", 9000, "USD", 30),
                plan("yearly", 36500, "USD", 365),
                plan("stars", 1500, "XTR", 30),
                plan("euro", 2000, "EUR", 30),
            ]
            .into_iter()
            .collect(),
            subs,
            invoices,
        }
    }

    fn report(f: &Filter, commissions: &[Commission]) -> Report {
        let now = at(4, 30) + DAY_MS / 2;
        compute(
            &ledger(),
            Month { year: 2026, month: 1 },
            Month { year: 2026, month: 4 },
            now,
            f,
            commissions,
        )
    }

    #[test]
    fn processor_fees_and_chargebacks_come_off_net() {
        // One 30.00 USD card payment in January (Stripe's fee 2.9 % + 0.30 = 1.17), disputed
        // and lost in February (30.00 back to the cardholder, dispute fee 15.00): the fees
        // count with the payment, the chargeback when it was recorded.
        let mut l = ledger();
        l.invoices = vec![PaidInvoice {
            disputed_minor: 3000,
            fee_minor: 117 + 1500,
            fee_currency: Some("USD".into()),
            refunded_at_ms: Some(at(2, 12)),
            ..paid(RevenueDoor::Stripe, "USD", 3000, at(1, 10), None)
        }];
        let jan_to_feb = |f: &Filter| {
            compute(
                &l,
                Month { year: 2026, month: 1 },
                Month { year: 2026, month: 2 },
                at(2, 28),
                f,
                &[],
            )
        };
        let r = jan_to_feb(&Filter::default());
        let m = &r.currencies["USD"].months;
        assert_eq!(
            (m[0].gross, m[0].fees, m[0].chargebacks, m[0].net()),
            (d("30"), d("16.17"), d("0"), d("13.83"))
        );
        assert_eq!(
            (m[1].gross, m[1].fees, m[1].chargebacks, m[1].refunds, m[1].net()),
            (d("0"), d("0"), d("30"), d("0"), d("-30"))
        );
        // Only Stars: no fee, no chargeback.
        let stars = jan_to_feb(&Filter { door: Some(RevenueDoor::Stars), plan: None });
        assert!(
            stars.currencies["USD"]
                .months
                .iter()
                .all(|x| x.fees.is_zero() && x.chargebacks.is_zero())
        );
    }

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(Month { year: 2026, month: 1 }.start_ms(), 1_767_225_600_000);
        assert_eq!(Month::of(1_767_225_600_000), Month { year: 2026, month: 1 });
        assert_eq!(Month::of(1_767_225_600_000 - 1), Month { year: 2025, month: 12 });
        assert_eq!(Month::of(Month { year: 2024, month: 3 }.start_ms()).label(), "2024-03");
        assert_eq!(Month { year: 2026, month: 1 }.minus(13).label(), "2024-12");
        assert_eq!(Month::parse("2026-02"), Some(Month { year: 2026, month: 2 }));
        assert_eq!(Month::parse("2026-13"), None);
        assert_eq!(Month::parse("x"), None);
    }

    #[test]
    fn movements_churn_arpa_and_ltv_by_hand() {
        let commission = Commission {
            door: RevenueDoor::Stripe,
            plan_id: Some("basic".into()),
            currency: "USD".into(),
            amount_minor: 500,
            at_ms: at(3, 10),
        };
        let r = report(&Filter::default(), &[commission]);
        let usd = &r.currencies["USD"];
        let m = &usd.months;
        let row = |i: usize| {
            let x = &m[i];
            [x.mrr_start, x.mrr_end, x.new, x.expansion, x.reactivation, x.contraction, x.churn]
        };
        // January: a 30 + b 90 + c 30 + e (1500 × 0.02 =) 30 = 180, all new.
        assert_eq!(row(0), [d("0"), d("180"), d("180"), d("0"), d("0"), d("0"), d("0")]);
        assert_eq!((m[0].customers_end, m[0].new_customers), (4, 4));
        // February: a 30 → 90 (+60 expansion), c 30 → 0 (churn, its period ended Feb 19),
        // f new 30 (yearly: 365 × 30 / 365): 180 + 60 − 30 + 30 = 240.
        assert_eq!(row(1), [d("180"), d("240"), d("30"), d("60"), d("0"), d("0"), d("30")]);
        assert_eq!(m[1].net_new(), d("60"));
        // Logo churn 1 / 4; revenue churn 30 / 180 = 1/6; ARPA 240 / 4 = 60; LTV 60 / (1/6) = 360.
        assert_eq!(m[1].logo_churn(), Some(d("0.25")));
        assert_eq!(m[1].revenue_churn().unwrap().round_dp(4), d("0.1667"));
        assert_eq!(m[1].arpa(), Some(d("60")));
        assert_eq!(m[1].ltv().unwrap().round_dp(2), d("360"));
        // March: b 90 → 30 (contraction 60); g signed up Mar 5 and was refunded Mar 20: neither
        // new nor churn; d in trial counts 0: 240 − 60 = 180.
        assert_eq!(row(2), [d("240"), d("180"), d("0"), d("0"), d("0"), d("60"), d("0")]);
        assert_eq!((m[2].new_customers, m[2].churned_customers, m[2].customers_end), (0, 0, 4));
        // Revenue churn 60 / 240 = 0.25; ARPA 180 / 4 = 45; LTV 45 / 0.25 = 180.
        assert_eq!(m[2].revenue_churn(), Some(d("0.25")));
        assert_eq!(m[2].ltv(), Some(d("180")));
        // Gross 30.00 (g's invoice), refunded 30.00, commission 5.00: net 30 − 30 − 5 = −5.
        assert_eq!(
            (m[2].gross, m[2].refunds, m[2].affiliate, m[2].net()),
            (d("30"), d("30"), d("5"), d("-5"))
        );
        // January's gross: 30.00 USD + 1500 XTR × 0.02 = 60.
        assert_eq!(m[0].gross, d("60"));
        // April (to now): d's trial ended Apr 8 (new 30), c back (reactivation 30): 240.
        assert_eq!(row(3), [d("180"), d("240"), d("30"), d("0"), d("30"), d("0"), d("0")]);
        assert_eq!((m[3].new_customers, m[3].reactivated_customers), (1, 1));
        // No churn: LTV undefined; ARPA 240 / 6 = 40; ARR 240 × 12.
        assert_eq!((m[3].revenue_churn(), m[3].ltv()), (Some(d("0")), None));
        assert_eq!((m[3].arpa(), m[3].arr()), (Some(d("40")), d("2880")));
        assert_eq!((usd.mrr_now, usd.customers_now), (d("240"), 6));
        for x in m {
            assert_eq!(x.net_new(), x.mrr_end - x.mrr_start, "{}", x.month);
        }
        // Euros are never summed with dollars: h alone, 20 EUR from February.
        let eur = &r.currencies["EUR"];
        assert_eq!(eur.months[1].new, d("20"));
        assert_eq!((eur.mrr_now, eur.months[1].gross), (d("20"), d("20")));
        assert!(!r.currencies.contains_key("XTR"));
    }

    #[test]
    fn cohorts_retain_customers_and_mrr() {
        let r = report(&Filter::default(), &[]);
        let c = &r.currencies["USD"].cohorts;
        let cells = |i: usize| (c[i].month.clone(), c[i].size, c[i].cells.clone());
        // January: a, b, c, e. Feb: a 90 + b 90 + e 30 (c gone); Mar: b down to 30; Apr: c back.
        let jan = vec![(4, d("180")), (3, d("210")), (3, d("150")), (4, d("180"))];
        assert_eq!(cells(0), ("2026-01".into(), 4, jan));
        assert_eq!(cells(1), ("2026-02".into(), 1, vec![(1, d("30")); 3]));
        // g: first MRR in March, gone by its end.
        assert_eq!(cells(2), ("2026-03".into(), 1, vec![(0, d("0")); 2]));
        assert_eq!(cells(3), ("2026-04".into(), 1, vec![(1, d("30"))]));
    }

    #[test]
    fn filters_by_door_and_plan() {
        let stars = report(&Filter { door: Some(RevenueDoor::Stars), plan: None }, &[]);
        let m = &stars.currencies["USD"].months;
        assert_eq!((m[0].new, m[3].mrr_end, m[0].gross), (d("30"), d("30"), d("30")));
        // Pro: b from January (90); a counts as new on pro on Feb 15; b leaves pro in March.
        let pro = report(&Filter { door: None, plan: Some("pro".into()) }, &[]);
        let m = &pro.currencies["USD"].months;
        assert_eq!((m[0].mrr_end, m[1].new, m[1].mrr_end), (d("90"), d("90"), d("180")));
        assert_eq!((m[2].churn, m[2].mrr_end), (d("90"), d("90")));
        let manual = report(&Filter { door: Some(RevenueDoor::Manual), plan: None }, &[]);
        assert_eq!(manual.currencies["USD"].mrr_now, d("0"));
    }
}
