//! `/revenue`: the owner's revenue page (owner and admin), and its JSON twin
//! `GET /api/v1/console/revenue` (bearer token of an owner or admin): MRR, ARR, net new MRR and
//! its movements per month, churn, ARPA, LTV, cohorts, gross and net revenue, by plan and door,
//! one block per currency. The figures are [`crate::analytics::revenue`]'s; this module reads
//! the query, renders them and writes the definitions on the page.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{Markup, html};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PageError;
use super::layout::{self, Frame};
use super::session::Console;
use crate::analytics::revenue::{
    self, CurrencyFigures, DEFINITIONS, Filter, Month, MonthFigures, Report, RevenueDoor,
};
use crate::api::extract::Admin;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// The page's and the API's query.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct RevenueQuery {
    /// First month, `YYYY-MM` (default: 11 months before `to`).
    pub from: Option<String>,
    /// Last month, `YYYY-MM` (default: this month).
    pub to: Option<String>,
    /// One plan's id only.
    pub plan: Option<String>,
    /// One door only: `stripe`, `stars` or `manual`.
    pub door: Option<String>,
}

struct Asked {
    from: Month,
    to: Month,
    filter: Filter,
}

fn read_query(q: &RevenueQuery, now_ms: i64) -> Result<Asked, ApiError> {
    let month = |v: &Option<String>, name: &str| -> Result<Option<Month>, ApiError> {
        match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(t) => Month::parse(t).map(Some).ok_or_else(|| {
                ApiError::InvalidParameter(format!("{name} must be a YYYY-MM month"))
            }),
        }
    };
    let to = month(&q.to, "to")?.unwrap_or_else(|| Month::of(now_ms));
    let from = month(&q.from, "from")?.unwrap_or_else(|| to.minus(11));
    if from > to || to.minus(119) > from {
        return Err(ApiError::InvalidParameter(
            "from must be at or before to, at most 120 months apart".into(),
        ));
    }
    let door = match q.door.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(t) => Some(RevenueDoor::parse(t).ok_or_else(|| {
            ApiError::InvalidParameter("door must be stripe, stars or manual".into())
        })?),
    };
    let plan = q.plan.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    Ok(Asked { from, to, filter: Filter { plan, door } })
}

/// Loads the ledger and computes the figures asked for. The affiliate commissions plug in
/// here: today none are passed (the affiliates module is not merged yet).
async fn report(state: &AppState, asked: &Asked) -> Result<(Report, revenue::Ledger), ApiError> {
    let billing = &state.config.billing;
    let ledger = revenue::load(&state.db, &billing.currency, billing.xtr_rate).await?;
    let commissions = revenue::commissions(&state.db).await?;
    let now = state.now_ms();
    let r = revenue::compute(&ledger, asked.from, asked.to, now, &asked.filter, &commissions);
    Ok((r, ledger))
}

/// Two decimals, always written (`345.00`).
fn money(v: Decimal) -> String {
    let mut v = v.round_dp(2);
    v.rescale(2);
    v.to_string()
}

/// Four decimals, always written (`0.2500`).
fn rate(v: Option<Decimal>) -> Option<String> {
    v.map(|v| {
        let mut v = v.round_dp(4);
        v.rescale(4);
        v.to_string()
    })
}

fn pct(v: Option<Decimal>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{}%", (v * Decimal::from(100)).round_dp(1)))
}

// ---------------------------------------------------------------------------------------------
// JSON

/// One month's figures (decimals as strings, major units of the currency).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MonthJson {
    /// `YYYY-MM`.
    pub month: String,
    /// MRR at the previous month's end.
    pub mrr_start: String,
    /// MRR at this month's end (this month: now).
    pub mrr: String,
    /// MRR × 12.
    pub arr: String,
    /// new + expansion + reactivation − contraction − churn.
    pub net_new: String,
    /// New MRR.
    pub new: String,
    /// Expansion MRR.
    pub expansion: String,
    /// Reactivation MRR.
    pub reactivation: String,
    /// Contraction MRR (positive).
    pub contraction: String,
    /// Churned MRR (positive).
    pub churn: String,
    /// Customers at the start.
    pub customers_start: u64,
    /// Customers at the end.
    pub customers: u64,
    /// New customers.
    pub new_customers: u64,
    /// Reactivated customers.
    pub reactivated_customers: u64,
    /// Churned customers.
    pub churned_customers: u64,
    /// Churned customers / customers at the start (none when 0 at the start).
    pub logo_churn: Option<String>,
    /// (Churn + contraction) / MRR at the start.
    pub revenue_churn: Option<String>,
    /// MRR / customers.
    pub arpa: Option<String>,
    /// ARPA / revenue churn (none when churn is 0).
    pub ltv: Option<String>,
    /// Paid invoices.
    pub gross: String,
    /// Refunds recorded.
    pub refunds: String,
    /// Chargebacks: disputes lost.
    pub chargebacks: String,
    /// Processor fees (processing and dispute fees).
    pub processor_fees: String,
    /// Affiliate commissions.
    pub affiliate: String,
    /// gross − refunds − chargebacks − processor fees − affiliate.
    pub net: String,
}

/// One cohort.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CohortJson {
    /// The month of its customers' first MRR.
    pub month: String,
    /// Customers in it.
    pub size: u64,
    /// From that month on: customers still with MRR at each month's end.
    pub customers: Vec<u64>,
    /// Their MRR at each month's end.
    pub mrr: Vec<String>,
}

/// One currency's figures.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CurrencyJson {
    /// ISO 4217 (Stars are converted into the account currency).
    pub currency: String,
    /// MRR now.
    pub mrr: String,
    /// ARR now.
    pub arr: String,
    /// Customers now.
    pub customers: u64,
    /// Month by month.
    pub months: Vec<MonthJson>,
    /// Cohorts starting in the range.
    pub cohorts: Vec<CohortJson>,
}

/// The revenue figures.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevenueJson {
    /// "Now", unix ms.
    pub as_of_ms: i64,
    /// First month.
    pub from: String,
    /// Last month.
    pub to: String,
    /// The plan filter.
    pub plan: Option<String>,
    /// The door filter.
    pub door: Option<RevenueDoor>,
    /// One entry per currency.
    pub currencies: Vec<CurrencyJson>,
}

fn month_json(m: &MonthFigures) -> MonthJson {
    MonthJson {
        month: m.month.clone(),
        mrr_start: money(m.mrr_start),
        mrr: money(m.mrr_end),
        arr: money(m.arr()),
        net_new: money(m.net_new()),
        new: money(m.new),
        expansion: money(m.expansion),
        reactivation: money(m.reactivation),
        contraction: money(m.contraction),
        churn: money(m.churn),
        customers_start: m.customers_start,
        customers: m.customers_end,
        new_customers: m.new_customers,
        reactivated_customers: m.reactivated_customers,
        churned_customers: m.churned_customers,
        logo_churn: rate(m.logo_churn()),
        revenue_churn: rate(m.revenue_churn()),
        arpa: m.arpa().map(money),
        ltv: m.ltv().map(money),
        gross: money(m.gross),
        refunds: money(m.refunds),
        chargebacks: money(m.chargebacks),
        processor_fees: money(m.fees),
        affiliate: money(m.affiliate),
        net: money(m.net()),
    }
}

fn to_json(r: &Report, asked: &Asked) -> RevenueJson {
    RevenueJson {
        as_of_ms: r.as_of_ms,
        from: asked.from.label(),
        to: asked.to.label(),
        plan: asked.filter.plan.clone(),
        door: asked.filter.door,
        currencies: r
            .currencies
            .iter()
            .map(|(cur, c)| CurrencyJson {
                currency: cur.clone(),
                mrr: money(c.mrr_now),
                arr: money(c.mrr_now * Decimal::from(12)),
                customers: c.customers_now,
                months: c.months.iter().map(month_json).collect(),
                cohorts: c
                    .cohorts
                    .iter()
                    .map(|k| CohortJson {
                        month: k.month.clone(),
                        size: k.size,
                        customers: k.cells.iter().map(|c| c.0).collect(),
                        mrr: k.cells.iter().map(|c| money(c.1)).collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub(crate) fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(api))
}

/// The console's revenue figures (owner or admin).
#[utoipa::path(get, path = "/api/v1/console/revenue", tag = "console", params(RevenueQuery), security(("bearer" = [])), responses(
    (status = 200, body = RevenueJson),
    (status = 400, description = "bad month or door", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "not an owner or admin", body = Problem, content_type = "application/problem+json"),
))]
async fn api(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<RevenueQuery>,
) -> Result<axum::Json<RevenueJson>, ApiError> {
    let asked = read_query(&q, state.now_ms())?;
    let (r, _) = report(&state, &asked).await?;
    Ok(axum::Json(to_json(&r, &asked)))
}

// ---------------------------------------------------------------------------------------------
// The page

fn tile(id: &str, label: &str, value: &str, hint: &str) -> Markup {
    html! {
        div.card {
            div.k { (label) }
            span.v id=(id) { (value) }
            div.hint { (hint) }
        }
    }
}

fn opt_money(v: Option<Decimal>, cur: &str) -> String {
    v.map_or_else(|| "undefined".into(), |v| format!("{} {cur}", money(v)))
}

/// The MRR line and the movements as bars, one slot per month, as SVG (no script: CSP-safe).
fn chart(c: &CurrencyFigures, cur: &str) -> Markup {
    let (w, h, pad) = (960i64, 260i64, 30i64);
    let n = c.months.len().max(1) as i64;
    let slot = (w - 2 * pad) / n;
    let mut hi = Decimal::ZERO;
    let mut lo = Decimal::ZERO;
    for m in &c.months {
        hi = hi.max(m.mrr_end).max(m.new + m.expansion + m.reactivation);
        lo = lo.min(-(m.contraction + m.churn));
    }
    let span = if hi > lo { hi - lo } else { Decimal::ONE };
    let y = |v: Decimal| -> i64 {
        let frac = (hi - v).checked_div(span).unwrap_or_default();
        let px = frac * Decimal::from(h - 2 * pad) + Decimal::from(pad);
        px.round().try_into().unwrap_or(pad)
    };
    let zero = y(Decimal::ZERO);
    let line: Vec<String> = c
        .months
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{},{}", pad + slot * i as i64 + slot / 2, y(m.mrr_end)))
        .collect();
    html! {
        svg #mrr-chart viewBox=(format!("0 0 {w} {h}")) width="100%" role="img"
            aria-label=(format!("MRR and its movements per month, {cur}")) {
            line x1=(pad) x2=(w - pad) y1=(zero) y2=(zero) stroke="#243040" {}
            @for (i, m) in c.months.iter().enumerate() {
                @let x = pad + slot * i as i64 + slot / 4;
                @let bw = (slot / 2).max(2);
                @let up = m.new + m.expansion + m.reactivation;
                @let down = m.contraction + m.churn;
                rect x=(x) y=(y(up)) width=(bw) height=((zero - y(up)).max(0)) fill="#2fbf71" {
                    title { (m.month) ": +" (money(up)) " " (cur) " (new, expansion, reactivation)" }
                }
                rect x=(x) y=(zero) width=(bw) height=((y(-down) - zero).max(0)) fill="#ef5b5b" {
                    title { (m.month) ": −" (money(down)) " " (cur) " (contraction, churn)" }
                }
                text x=(x) y=(h - 8) fill="#8b98a8" font-size="11" { (m.month) }
            }
            polyline points=(line.join(" ")) fill="none" stroke="#4aa3ff" stroke-width="2" {}
            text x=(pad) y="16" fill="#8b98a8" font-size="11" {
                "MRR (line, top " (money(hi)) " " (cur) ") and its movements (bars: green in, red out)"
            }
        }
    }
}

fn currency_block(cur: &str, c: &CurrencyFigures) -> Markup {
    let last = c.months.last();
    let key = cur.to_ascii_lowercase();
    html! {
        h2 { "MRR in " (cur) }
        div.cards {
            (tile(&format!("fig-mrr-{key}"), "MRR", &format!("{} {cur}", money(c.mrr_now)), "now, normalised to 30 days"))
            (tile(&format!("fig-arr-{key}"), "ARR", &format!("{} {cur}", money(c.mrr_now * Decimal::from(12))), "MRR × 12"))
            (tile(&format!("fig-net-new-{key}"), "Net new MRR", &last.map_or_else(|| "—".into(), |m| format!("{} {cur}", money(m.net_new()))), "the last month of the range"))
            (tile(&format!("fig-arpa-{key}"), "ARPA", &opt_money(last.and_then(MonthFigures::arpa), cur), "MRR per customer"))
            (tile(&format!("fig-churn-{key}"), "Revenue churn", &pct(last.and_then(MonthFigures::revenue_churn)), &format!("logo churn {}", pct(last.and_then(MonthFigures::logo_churn)))))
            (tile(&format!("fig-ltv-{key}"), "LTV", &opt_money(last.and_then(MonthFigures::ltv), cur), "ARPA / revenue churn"))
            (tile(&format!("fig-customers-{key}"), "Customers", &c.customers_now.to_string(), "with MRR now"))
        }
        section { (chart(c, cur)) }
        table #(format!("movements-{key}")) {
            thead { tr {
                th { "Month" } th.num { "MRR" } th.num { "New" } th.num { "Expansion" } th.num { "Reactivation" }
                th.num { "Contraction" } th.num { "Churn" } th.num { "Net new" } th.num { "Customers" }
                th.num { "Logo churn" } th.num { "Revenue churn" } th.num { "ARPA" } th.num { "LTV" }
            } }
            tbody {
                @for m in &c.months {
                    tr data-month=(m.month) {
                        td.nowrap { (m.month) }
                        td.num { (money(m.mrr_end)) }
                        td.num { (money(m.new)) }
                        td.num { (money(m.expansion)) }
                        td.num { (money(m.reactivation)) }
                        td.num { (money(m.contraction)) }
                        td.num { (money(m.churn)) }
                        td.num { (money(m.net_new())) }
                        td.num { (m.customers_end) }
                        td.num { (pct(m.logo_churn())) }
                        td.num { (pct(m.revenue_churn())) }
                        td.num { (m.arpa().map_or_else(|| "—".into(), money)) }
                        td.num { (m.ltv().map_or_else(|| "undefined".into(), money)) }
                    }
                }
            }
        }
        h2 { "Gross and net revenue in " (cur) }
        table #(format!("money-{key}")) {
            thead { tr {
                th { "Month" } th.num { "Gross (paid invoices)" } th.num { "Refunds" }
                th.num { "Chargebacks" } th.num { "Processor fees" }
                th.num { "Affiliate commissions" } th.num { "Net" }
            } }
            tbody {
                @for m in &c.months {
                    tr data-money=(m.month) {
                        td.nowrap { (m.month) }
                        td.num { (money(m.gross)) }
                        td.num { (money(m.refunds)) }
                        td.num { (money(m.chargebacks)) }
                        td.num { (money(m.fees)) }
                        td.num { (money(m.affiliate)) }
                        td.num { (money(m.net())) }
                    }
                }
            }
        }
        h2 { "Cohorts in " (cur) }
        table #(format!("cohorts-{key}")) {
            thead { tr {
                th { "First MRR" } th.num { "Customers" }
                @for k in 0..c.months.len() { th.num { "+" (k) } }
            } }
            tbody {
                @for k in &c.cohorts {
                    tr data-cohort=(k.month) {
                        td.nowrap { (k.month) }
                        td.num { (k.size) }
                        @for (n, m) in &k.cells {
                            td.num { (n) " · " (money(*m)) }
                        }
                    }
                }
                @if c.cohorts.is_empty() { (super::fmt::none_row(2, "No customer's first MRR in this range.")) }
            }
        }
    }
}

/// `GET /revenue`.
pub async fn show(
    State(state): State<AppState>,
    Console(signed): Console,
    Query(q): Query<RevenueQuery>,
) -> Result<Response, PageError> {
    let asked = read_query(&q, state.now_ms())?;
    let (r, ledger) = report(&state, &asked).await?;
    let mut plans: Vec<_> = ledger.plans.values().collect();
    plans.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let plan_sel = asked.filter.plan.clone().unwrap_or_default();
    let door_sel = asked.filter.door.map(RevenueDoor::as_str).unwrap_or("");
    let body = html! {
        form.filters method="get" action="/revenue" {
            div { label for="from" { "From (YYYY-MM)" } input #from name="from" value=(asked.from.label()); }
            div { label for="to" { "To (YYYY-MM)" } input #to name="to" value=(asked.to.label()); }
            div {
                label for="plan" { "Plan" }
                select #plan name="plan" {
                    option value="" selected[plan_sel.is_empty()] { "All plans" }
                    @for p in &plans {
                        option value=(p.id) selected[p.id == plan_sel] { (p.name) " (" (p.currency) ")" }
                    }
                }
            }
            div {
                label for="door" { "Door" }
                select #door name="door" {
                    option value="" selected[door_sel.is_empty()] { "All doors" }
                    @for d in RevenueDoor::ALL {
                        option value=(d.as_str()) selected[d.as_str() == door_sel] { (d.as_str()) }
                    }
                }
            }
            div { button.primary type="submit" { "Show" } }
        }
        p.mute {
            "As of " (super::fmt::when(Some(r.as_of_ms))) " UTC. Telegram Stars at "
            (ledger.xtr_rate) " " (ledger.account_currency) " each."
        }
        @for (cur, c) in &r.currencies { (currency_block(cur, c)) }
        h2 { "Definitions" }
        section #definitions {
            dl.facts {
                @for (term, text) in DEFINITIONS { dt { (term) } dd { (text) } }
            }
        }
    };
    let frame = Frame { signed: &signed, title: "Revenue", active: "/revenue", notice: None };
    Ok(layout::html(layout::page(&frame, body)))
}
