//! The affiliates' pages: `/affiliate` (any signed-in account: become an affiliate, its links and
//! codes, clicks, sign-ups, conversions, balances and statement) and `/affiliates` (the console,
//! owners and admins: the programme's settings, affiliates to approve, held commissions, payout
//! runs with their CSV). Changes are the owner's; every form carries the session's CSRF token.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::store::{self, SchemeRow, Settings, Threshold, Tier};
use super::{AffiliateError, ip_hash};
use crate::accounts::Role;
use crate::api::extract::{ClientIp, RequestId};
use crate::state::AppState;
use crate::ui::PageError;
use crate::ui::fmt;
use crate::ui::layout::{self, Frame, Notice};
use crate::ui::session::{Console, Member, Signed, csrf_ok};

/// `?done=…` after an action.
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    done: Option<String>,
}

fn notice_of(q: &Done) -> Option<Notice> {
    let words = match q.done.as_deref()? {
        "joined" => "You applied: the hub's owner approves new affiliates.",
        "approved" => "Your affiliate account is ready: share a link below.",
        "code" => "Code added.",
        "settings" => "Programme saved.",
        "decided" => "Decision recorded.",
        "run" => "Payout run made: download its CSV, pay, then mark each payout paid.",
        "paid" => "Payout marked paid.",
        _ => return None,
    };
    Some(Notice::Ok(words.into()))
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// The plain form of every action: the CSRF token and optional fields.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    code: Option<String>,
    run_id: Option<String>,
    affiliate_id: Option<String>,
    currency: Option<String>,
    reference: Option<String>,
}

fn base_url(state: &AppState) -> String {
    state
        .config
        .public_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .unwrap_or_default()
}

/// A QR code of `text` as an SVG `data:` URI (an `<img>` the CSP allows: `img-src 'self' data:`).
pub fn qr_data_uri(text: &str) -> Option<String> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(144, 144)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    Some(format!("data:image/svg+xml;base64,{}", data_encoding::BASE64.encode(image.as_bytes())))
}

fn rate_line(s: &Settings) -> Markup {
    html! {
        @for r in &s.schemes {
            li {
                @if r.plan_id == "*" { "Every plan: " } @else { "Plan " code { (r.plan_id) } ": " }
                @if r.kind == "fixed" {
                    (fmt::money(r.fixed_minor, r.fixed_currency.as_deref().unwrap_or(""))) " on the first payment"
                } @else {
                    (store::rate_text(r.percent_bp)) " of each payment"
                    @match r.months { Some(m) => { " for " (m) " months" } None => { " for life" } }
                }
            }
        }
        @for t in &s.tiers {
            li { "From " (t.min_paying) " paying referrals: " (store::rate_text(t.percent_bp)) }
        }
    }
}

async fn render_mine(
    state: &AppState,
    signed: &Signed,
    notice: Option<&Notice>,
) -> Result<Response, PageError> {
    let s = store::settings(state).await?;
    let me = store::affiliate_of(state, &signed.user.id).await?;
    let statement = match &me {
        Some(a) if a.status == "approved" => Some(store::statement(state, &a.id).await?),
        _ => None,
    };
    let base = base_url(state);
    let bot = state.config.telegram.bot_username.clone();
    let body = html! {
        section #programme {
            h2 { "Refer and earn" }
            ul { (rate_line(&s)) }
            p.mute {
                "A referral counts when someone opens your link (or your Telegram link) and signs up within "
                (s.window_days) " days; the first link they opened wins. A commission stays pending "
                (s.holding_days) " days (refunds cancel it), then it is payable and paid in the next payout run."
            }
            @match &me {
                None => {
                    form method="post" action="/affiliate/join" {
                        input type="hidden" name="csrf" value=(signed.csrf);
                        button.primary type="submit" { "Become an affiliate" }
                    }
                }
                Some(a) if a.status == "pending" => { p { span.tag.warn { "Waiting for the owner's approval" } } }
                Some(a) if a.status == "rejected" => { p { span.tag.bad { "The owner declined your application" } } }
                Some(_) => {}
            }
        }
        @if let Some(st) = &statement {
            div.cards {
                div.card { div.k { "Clicks" } span.v #fig-clicks { (st.clicks) } div.hint { "visits of your links" } }
                div.card { div.k { "Sign-ups" } span.v #fig-signups { (st.signups) } div.hint { "accounts you referred" } }
                div.card { div.k { "Conversions" } span.v #fig-conversions { (st.conversions) } div.hint { "of them, paying" } }
            }
            section #links {
                h2 { "Your links" }
                table {
                    thead { tr { th { "Code" } th { "Web link" } th { "Telegram" } th { "QR code (web link)" } } }
                    tbody {
                        @for c in &st.affiliate.codes {
                            @let web = format!("{base}/signup?ref={c}");
                            tr {
                                td { code { (c) } }
                                td { code { (web) } }
                                td { @if let Some(b) = &bot { code { "https://t.me/" (b) "?start=ref_" (c) } } @else { span.mute { "no bot" } } }
                                td { @match (base.is_empty(), qr_data_uri(&web)) {
                                    (false, Some(uri)) => { img.qr src=(uri) width="144" height="144" alt=(format!("QR code of {web}")); }
                                    _ => { span.mute { "needs the hub's public_url" } }
                                } }
                            }
                        }
                    }
                }
                form.actions method="post" action="/affiliate/codes" {
                    input type="hidden" name="csrf" value=(signed.csrf);
                    label { "New code " input type="text" name="code" maxlength="64" placeholder="3-64 letters, digits, _ or -"; }
                    button type="submit" { "Add" }
                }
            }
            (balances_and_statement(st))
        }
    };
    let frame = Frame { signed, title: "Affiliate", active: "/affiliate", notice };
    Ok(layout::html(layout::page(&frame, body)))
}

/// An affiliate's balances per currency and statement (their own page and the console's).
fn balances_and_statement(st: &store::Statement) -> Markup {
    html! {
        section #balances {
            h2 { "Balances" }
            table {
                thead { tr { th { "Currency" } th.num { "Pending" } th.num { "Payable" } th.num { "Paid" } th.num { "Held for review" } } }
                tbody {
                    @for b in &st.balances {
                        tr {
                            td { (b.currency) }
                            td.num { (fmt::money(b.pending_minor, &b.currency)) }
                            td.num { (fmt::money(b.payable_minor, &b.currency)) }
                            td.num { (fmt::money(b.paid_minor, &b.currency)) }
                            td.num { (fmt::money(b.held_minor, &b.currency)) }
                        }
                    }
                    @if st.balances.is_empty() { (fmt::none_row(5, "No commission yet.")) }
                }
            }
        }
        section #statement {
            h2 { "Statement" }
            p.mute { "Telegram Stars convert at " (st.xtr_rate) " " (st.account_currency) " per Star (billing.xtr_rate). Rounding: half to even, once, to a whole minor unit." }
            (entries_table(&st.entries))
        }
    }
}

fn entries_table(entries: &[store::Entry]) -> Markup {
    html! {
        table #entries {
            thead { tr {
                th { "Booked (UTC)" } th { "Entry" } th { "State" } th.num { "Invoice paid" }
                th.num { "Rate" } th.num { "Amount" } th { "Payable from (UTC)" }
            } }
            tbody {
                @for e in entries {
                    tr {
                        td.nowrap { (fmt::when(Some(e.created_at_ms))) }
                        td { (e.reason) }
                        td { span class=(format!("tag {}", tag_of(&e.status))) { (e.status) } }
                        td.num { (fmt::money(e.basis_minor, &e.basis_currency))
                            @if let Some(x) = &e.xtr_rate { br; span.mute { "at " (x) } } }
                        td.num { (e.rate_bp.map(store::rate_text).unwrap_or_default()) }
                        td.num { (fmt::money(e.amount_minor, &e.currency)) }
                        td.nowrap { (fmt::when(Some(e.available_at_ms))) }
                    }
                }
                @if entries.is_empty() { (fmt::none_row(7, "No entry yet.")) }
            }
        }
    }
}

fn tag_of(status: &str) -> &'static str {
    match status {
        "paid" | "payable" | "approved" => "ok",
        "held" | "pending" => "warn",
        "rejected" | "cancelled" => "bad",
        _ => "",
    }
}

/// `GET /affiliate`.
pub async fn mine(
    State(state): State<AppState>,
    Member(signed): Member,
    Query(q): Query<Done>,
) -> Result<Response, PageError> {
    render_mine(&state, &signed, notice_of(&q).as_ref()).await
}

/// `POST /affiliate/join`.
pub async fn join(
    State(state): State<AppState>,
    Member(signed): Member,
    ClientIp(ip): ClientIp,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let hash = ip_hash(&state, ip);
    match store::join(&state, &signed.user.id, Some(&hash), &request_id).await {
        Ok(a) => Ok(see_other(if a.status == "approved" {
            "/affiliate?done=approved"
        } else {
            "/affiliate?done=joined"
        })),
        Err(AffiliateError::Db(e)) => Err(PageError::from(e)),
        Err(e) => render_mine(&state, &signed, Some(&Notice::Err(e.to_string()))).await,
    }
}

/// `POST /affiliate/codes`.
pub async fn add_code(
    State(state): State<AppState>,
    Member(signed): Member,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let code = form.code.as_deref().map(str::trim).filter(|c| !c.is_empty());
    match store::add_code(&state, &signed.user.id, code, &request_id).await {
        Ok(_) => Ok(see_other("/affiliate?done=code")),
        Err(AffiliateError::Db(e)) => Err(PageError::from(e)),
        Err(e) => render_mine(&state, &signed, Some(&Notice::Err(e.to_string()))).await,
    }
}

// ---------------------------------------------------------------------------------------------
// The console

fn scheme_fields(plan_id: &str, label: &str, row: Option<&SchemeRow>) -> Markup {
    let kind = row.map_or("none", |r| r.kind.as_str());
    let f = |name: &str| format!("s.{plan_id}.{name}");
    html! {
        tr {
            td { (label) }
            td { select name=(f("kind")) {
                option value="none" selected[kind == "none"] { "none" }
                option value="percent" selected[kind == "percent"] { "percent" }
                option value="fixed" selected[kind == "fixed"] { "fixed" }
            } }
            td { input type="number" name=(f("percent_bp")) min="0" max="10000" value=(row.map_or(0, |r| r.percent_bp)); }
            td { input type="number" name=(f("months")) min="1" max="1200" placeholder="life" value=[row.and_then(|r| r.months)]; }
            td { input type="number" name=(f("fixed_minor")) min="0" value=(row.map_or(0, |r| r.fixed_minor)); }
            td { input type="text" name=(f("fixed_currency")) maxlength="3" value=[row.and_then(|r| r.fixed_currency.clone())]; }
        }
    }
}

async fn render_console(
    state: &AppState,
    signed: &Signed,
    notice: Option<&Notice>,
) -> Result<Response, PageError> {
    let s = store::settings(state).await?;
    let plans = crate::plans::list(&state.db, None, false).await?;
    let affiliates = store::list(state).await?;
    let holds = store::holds(state, true).await?;
    let runs = store::payout_runs(state).await?;
    let owner = signed.user.role == Role::Owner;
    let email_of = |id: &str| {
        affiliates
            .iter()
            .find(|l| l.affiliate.id == id)
            .map_or_else(|| id.to_string(), |l| l.email.clone())
    };
    let tiers = s
        .tiers
        .iter()
        .map(|t| format!("{}:{}", t.min_paying, t.percent_bp))
        .collect::<Vec<_>>()
        .join(", ");
    let thresholds = s
        .thresholds
        .iter()
        .map(|t| format!("{}:{}", t.currency, t.min_minor))
        .collect::<Vec<_>>()
        .join(", ");
    let next_run = format!("run-{}", fmt::when(Some(state.now_ms())).replace([' ', ':'], "-"));
    let body = html! {
        @if !owner { p.mute { "Only the owner changes the programme, decides and pays; you see it as it is." } }
        section #top {
            h2 { "Affiliates" }
            table #affiliates {
                thead { tr { th { "Account" } th { "State" } th { "Codes" } th.num { "Sign-ups" } th.num { "Earned" } th { "" } } }
                tbody {
                    @for l in &affiliates {
                        tr {
                            td { a href=(format!("/affiliates/{}", l.affiliate.id)) { (l.email) } }
                            td { span class=(format!("tag {}", tag_of(&l.affiliate.status))) { (l.affiliate.status) } }
                            td { @for c in &l.affiliate.codes { code { (c) } " " } }
                            td.num { (l.signups) }
                            td.num { @for (cur, v) in &l.earned { (fmt::money(*v, cur)) br; } }
                            td { @if owner && l.affiliate.status != "approved" {
                                form.inline method="post" action=(format!("/affiliates/{}/approve", l.affiliate.id)) {
                                    input type="hidden" name="csrf" value=(signed.csrf);
                                    button type="submit" { "Approve" }
                                }
                            }
                            " "
                            @if owner && l.affiliate.status == "pending" {
                                form.inline method="post" action=(format!("/affiliates/{}/reject", l.affiliate.id)) {
                                    input type="hidden" name="csrf" value=(signed.csrf);
                                    button.danger type="submit" { "Reject" }
                                }
                            } }
                        }
                    }
                    @if affiliates.is_empty() { (fmt::none_row(6, "No affiliate yet.")) }
                }
            }
        }
        section #holds {
            h2 { "Held for review" }
            table {
                thead { tr { th { "Since (UTC)" } th { "Affiliate" } th { "Reason" } th.num { "Commission" } th { "" } } }
                tbody {
                    @for h in &holds {
                        tr {
                            td.nowrap { (fmt::when(Some(h.created_at_ms))) }
                            td { (email_of(&h.affiliate_id)) }
                            td { (h.reason) }
                            td.num { (fmt::money(h.amount_minor, &h.currency)) }
                            td { @if owner {
                                form.inline method="post" action=(format!("/affiliates/holds/{}/release", h.id)) {
                                    input type="hidden" name="csrf" value=(signed.csrf);
                                    button type="submit" { "Release" }
                                }
                                " "
                                form.inline method="post" action=(format!("/affiliates/holds/{}/reject", h.id)) {
                                    input type="hidden" name="csrf" value=(signed.csrf);
                                    button.danger type="submit" { "Reject" }
                                }
                            } }
                        }
                    }
                    @if holds.is_empty() { (fmt::none_row(5, "Nothing held.")) }
                }
            }
        }
        section #payouts {
            h2 { "Payout runs" }
            @if owner {
                form.actions method="post" action="/affiliates/payouts" {
                    input type="hidden" name="csrf" value=(signed.csrf);
                    label { "Run id " input type="text" name="run_id" value=(next_run) maxlength="64"; }
                    button.primary type="submit" { "Run a payout" }
                }
            }
            @for r in &runs {
                h3 { "Run " code { (r.id) } " · " (fmt::when(Some(r.created_at_ms))) " · "
                    a href=(format!("/affiliates/payouts/{}/csv", r.id)) { "CSV" } }
                table {
                    thead { tr { th { "Affiliate" } th.num { "Amount" } th { "Reference" } th { "Paid (UTC)" } } }
                    tbody {
                        @for p in &r.payouts {
                            tr {
                                td { (p.email) }
                                td.num { (fmt::money(p.amount_minor, &p.currency)) }
                                td { @match (&p.reference, owner) {
                                    (Some(x), _) => { (x) }
                                    (None, true) => {
                                        form.inline method="post" action=(format!("/affiliates/payouts/{}/paid", r.id)) {
                                            input type="hidden" name="csrf" value=(signed.csrf);
                                            input type="hidden" name="affiliate_id" value=(p.affiliate_id);
                                            input type="hidden" name="currency" value=(p.currency);
                                            input type="text" name="reference" placeholder="bank or PayPal reference" maxlength="200" required;
                                            button type="submit" { "Mark paid" }
                                        }
                                    }
                                    (None, false) => { span.mute { "unpaid" } }
                                } }
                                td.nowrap { (fmt::when(p.paid_at_ms)) }
                            }
                        }
                        @if r.payouts.is_empty() { (fmt::none_row(4, "No balance reached its threshold.")) }
                    }
                }
            }
        }
        section #settings {
            h2 { "Programme" }
            form method="post" action="/affiliates/settings" {
                input type="hidden" name="csrf" value=(signed.csrf);
                table {
                    thead { tr { th { "Plan" } th { "Scheme" } th { "Percent (basis points)" } th { "Months (empty: life)" } th { "Fixed (minor units)" } th { "Fixed currency" } } }
                    tbody {
                        (scheme_fields("*", "Every plan (default)", s.schemes.iter().find(|r| r.plan_id == "*")))
                        @for p in &plans {
                            (scheme_fields(&p.id, &p.name, s.schemes.iter().find(|r| r.plan_id == p.id)))
                        }
                    }
                }
                label { input type="checkbox" name="approval_required" value="1" checked[s.approval_required]; " New affiliates wait for approval" }
                label { "Tiers (paying referrals:basis points, comma-separated) " input type="text" name="tiers" value=(tiers) placeholder="3:2500, 10:3000"; }
                label { "Payout thresholds (currency:minor units) " input type="text" name="thresholds" value=(thresholds) placeholder="USD:5000"; }
                label { "Payout runs "
                    select name="payout_schedule" {
                        option value="manual" selected[s.payout_schedule == "manual"] { "started by the owner" }
                        option value="weekly" selected[s.payout_schedule == "weekly"] { "weekly" }
                        option value="monthly" selected[s.payout_schedule == "monthly"] { "monthly" }
                    }
                }
                label { "…on day (weekly: 1 Monday – 7 Sunday; monthly: 1–28), 00:00 UTC " input type="number" name="payout_day" min="1" max="28" value=(s.payout_day); }
                label { "Attribution window (days) " input type="number" name="window_days" min="1" max="3650" value=(s.window_days); }
                label { "Holding period (days, the refund window) " input type="number" name="holding_days" min="0" max="3650" value=(s.holding_days); }
                label { "Hold above this refund rate (basis points) " input type="number" name="refund_rate_bp" min="0" max="10000" value=(s.refund_rate_bp); }
                label { "…over at least this many commissions " input type="number" name="refund_min_invoices" min="1" value=(s.refund_min_invoices); }
                label { "Hold bursts: sign-ups from one address " input type="number" name="burst_signups" min="2" value=(s.burst_signups); }
                label { "…within minutes " input type="number" name="burst_minutes" min="1" value=(s.burst_minutes); }
                @if owner { button.primary type="submit" { "Save the programme" } }
            }
        }
    };
    let frame = Frame { signed, title: "Affiliates", active: "/affiliates", notice };
    Ok(layout::html(layout::page(&frame, body)))
}

/// `GET /affiliates`.
pub async fn console(
    State(state): State<AppState>,
    Console(signed): Console,
    Query(q): Query<Done>,
) -> Result<Response, PageError> {
    render_console(&state, &signed, notice_of(&q).as_ref()).await
}

/// `GET /affiliates/{id}`: one affiliate's statement (owners and admins).
pub async fn statement(
    State(state): State<AppState>,
    Console(signed): Console,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let st = store::statement(&state, &id).await?;
    let email = crate::accounts::user_by_id(&state.db, &st.affiliate.account_id)
        .await?
        .map(|u| u.email)
        .unwrap_or_default();
    let body = html! {
        p { a href="/affiliates" { "← Affiliates" } }
        div.cards {
            div.card { div.k { "Clicks" } span.v #fig-clicks { (st.clicks) } }
            div.card { div.k { "Sign-ups" } span.v #fig-signups { (st.signups) } }
            div.card { div.k { "Conversions" } span.v #fig-conversions { (st.conversions) } }
        }
        (balances_and_statement(&st))
    };
    let title = format!("Affiliate {email}");
    let frame = Frame { signed: &signed, title: &title, active: "/affiliates", notice: None };
    Ok(layout::html(layout::page(&frame, body)))
}

fn owner_only(signed: &Signed) -> Result<(), AffiliateError> {
    if signed.user.role == Role::Owner {
        Ok(())
    } else {
        Err(AffiliateError::Forbidden("only the owner changes the affiliate programme".into()))
    }
}

async fn outcome(
    state: &AppState,
    signed: &Signed,
    r: Result<(), AffiliateError>,
    done: &str,
) -> Result<Response, PageError> {
    match r {
        Ok(()) => Ok(see_other(&format!("/affiliates?done={done}"))),
        Err(AffiliateError::Db(e)) => Err(PageError::from(e)),
        Err(e) => render_console(state, signed, Some(&Notice::Err(e.to_string()))).await,
    }
}

fn parse_pairs<T>(
    text: &str,
    what: &str,
    make: impl Fn(&str, i64) -> Option<T>,
) -> Result<Vec<T>, AffiliateError> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once(':').and_then(|(k, v)| make(k.trim(), v.trim().parse().ok()?)).ok_or_else(
                || AffiliateError::Validation(format!("{what}: `{p}` is not key:number")),
            )
        })
        .collect()
}

/// The settings form as [`Settings`].
pub fn settings_of_form(fields: &[(String, String)]) -> Result<Settings, AffiliateError> {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim());
    let num = |k: &str| -> Result<i64, AffiliateError> {
        get(k)
            .unwrap_or("")
            .parse()
            .map_err(|_| AffiliateError::Validation(format!("{k} must be a whole number")))
    };
    let mut plans: Vec<&str> =
        fields.iter().filter_map(|(n, _)| n.strip_prefix("s.")?.strip_suffix(".kind")).collect();
    plans.dedup();
    let mut schemes = Vec::new();
    for p in plans {
        let kind = get(&format!("s.{p}.kind")).unwrap_or("none");
        if kind == "none" {
            continue;
        }
        let opt = |name: &str| get(&format!("s.{p}.{name}")).filter(|v| !v.is_empty());
        let int = |name: &str| -> Result<i64, AffiliateError> {
            opt(name).map_or(Ok(0), |v| {
                v.parse().map_err(|_| {
                    AffiliateError::Validation(format!("{name} must be a whole number"))
                })
            })
        };
        schemes.push(SchemeRow {
            plan_id: p.to_string(),
            kind: kind.to_string(),
            percent_bp: int("percent_bp")?,
            months: opt("months").map(|_| int("months")).transpose()?,
            fixed_minor: int("fixed_minor")?,
            fixed_currency: opt("fixed_currency").map(str::to_uppercase),
        });
    }
    Ok(Settings {
        approval_required: get("approval_required").is_some(),
        window_days: num("window_days")?,
        holding_days: num("holding_days")?,
        refund_rate_bp: num("refund_rate_bp")?,
        refund_min_invoices: num("refund_min_invoices")?,
        burst_signups: num("burst_signups")?,
        burst_minutes: num("burst_minutes")?,
        schemes,
        tiers: parse_pairs(get("tiers").unwrap_or(""), "tiers", |k, v| {
            Some(Tier { min_paying: k.parse().ok()?, percent_bp: v })
        })?,
        thresholds: parse_pairs(get("thresholds").unwrap_or(""), "thresholds", |k, v| {
            Some(Threshold { currency: k.to_uppercase(), min_minor: v })
        })?,
        payout_schedule: get("payout_schedule").unwrap_or("manual").to_string(),
        payout_day: get("payout_day")
            .filter(|v| !v.is_empty())
            .map_or(Ok(1), |_| num("payout_day"))?,
    })
}

/// `POST /affiliates/settings`.
pub async fn save_settings(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let csrf = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str());
    if !csrf_ok(&signed, &headers, csrf) {
        return Err(PageError::csrf());
    }
    let r = async {
        owner_only(&signed)?;
        let s = settings_of_form(&fields)?;
        store::save_settings(&state, &signed.user.id, &s, &request_id).await
    }
    .await;
    outcome(&state, &signed, r, "settings").await
}

/// `POST /affiliates/{id}/{approve|reject}`.
pub async fn decide(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    Path((id, verb)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let r = async {
        owner_only(&signed)?;
        let approve = match verb.as_str() {
            "approve" => true,
            "reject" => false,
            _ => return Err(AffiliateError::NotFound("no such action".into())),
        };
        store::decide_affiliate(&state, &signed.user.id, &id, approve, &request_id)
            .await
            .map(|_| ())
    }
    .await;
    outcome(&state, &signed, r, "decided").await
}

/// `POST /affiliates/holds/{id}/{release|reject}`.
pub async fn decide_hold(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    Path((id, verb)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let r = async {
        owner_only(&signed)?;
        let release = match verb.as_str() {
            "release" => true,
            "reject" => false,
            _ => return Err(AffiliateError::NotFound("no such action".into())),
        };
        store::decide_hold(&state, &signed.user.id, &id, release, &request_id).await
    }
    .await;
    outcome(&state, &signed, r, "decided").await
}

/// `POST /affiliates/payouts`.
pub async fn run_payout(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let r = async {
        owner_only(&signed)?;
        let run = form.run_id.as_deref().unwrap_or("").trim();
        store::run_payout(&state, &signed.user.id, run, &request_id).await.map(|_| ())
    }
    .await;
    outcome(&state, &signed, r, "run").await
}

/// `POST /affiliates/payouts/{run}/paid`.
pub async fn mark_paid(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    Path(run): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let r = async {
        owner_only(&signed)?;
        store::mark_paid(
            &state,
            &signed.user.id,
            &run,
            form.affiliate_id.as_deref().unwrap_or(""),
            form.currency.as_deref().unwrap_or(""),
            form.reference.as_deref().unwrap_or(""),
            &request_id,
        )
        .await
        .map(|_| ())
    }
    .await;
    outcome(&state, &signed, r, "paid").await
}

/// `GET /affiliates/payouts/{run}/csv`.
pub async fn csv(
    State(state): State<AppState>,
    Console(_): Console,
    Path(run): Path<String>,
) -> Result<Response, PageError> {
    match store::payout_run(&state, &run).await? {
        Some(r) => Ok(super::api::csv_response(&r)),
        None => Err(PageError::from(AffiliateError::NotFound("no such payout run".into()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qr_code_is_an_svg_data_uri() {
        let uri = qr_data_uri("https://hub.example.com/signup?ref=abc").unwrap();
        let b64 = uri.strip_prefix("data:image/svg+xml;base64,").unwrap();
        let svg = String::from_utf8(data_encoding::BASE64.decode(b64.as_bytes()).unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");
        assert!(!svg.contains("style="), "no inline style (CSP)");
    }

    #[test]
    fn the_settings_form_reads_schemes_tiers_and_thresholds() {
        let f = |k: &str, v: &str| (k.to_string(), v.to_string());
        let fields = vec![
            f("csrf", "x"),
            f("s.*.kind", "percent"),
            f("s.*.percent_bp", "2000"),
            f("s.*.months", "12"),
            f("s.*.fixed_minor", "0"),
            f("s.*.fixed_currency", ""),
            f("s.p1.kind", "fixed"),
            f("s.p1.percent_bp", "0"),
            f("s.p1.months", ""),
            f("s.p1.fixed_minor", "1500"),
            f("s.p1.fixed_currency", "eur"),
            f("s.p2.kind", "none"),
            f("approval_required", "1"),
            f("tiers", "3:2500, 10:3000"),
            f("thresholds", "USD:5000"),
            f("window_days", "60"),
            f("holding_days", "30"),
            f("refund_rate_bp", "3000"),
            f("refund_min_invoices", "5"),
            f("burst_signups", "5"),
            f("burst_minutes", "60"),
            f("payout_schedule", "weekly"),
            f("payout_day", "5"),
        ];
        let s = settings_of_form(&fields).unwrap();
        assert!(s.validate().is_ok());
        assert_eq!((s.payout_schedule.as_str(), s.payout_day), ("weekly", 5));
        assert_eq!(s.schemes.len(), 2);
        assert_eq!(s.schemes[0].months, Some(12));
        assert_eq!(s.schemes[1].fixed_currency.as_deref(), Some("EUR"));
        assert_eq!(
            s.tiers,
            vec![
                Tier { min_paying: 3, percent_bp: 2500 },
                Tier { min_paying: 10, percent_bp: 3000 }
            ]
        );
        assert_eq!(s.thresholds[0].min_minor, 5000);
        let mut bad = fields.clone();
        bad.retain(|(k, _)| k != "tiers");
        bad.push(f("tiers", "three:2500"));
        assert!(settings_of_form(&bad).is_err());
    }
}
