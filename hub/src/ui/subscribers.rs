//! `/subscribers`: accounts found by e-mail, and one page per account: the account (role,
//! status), the plans it holds (entitlements, through `entitlements::history`), its devices with
//! their link health (connected to this instance now, inbox marks and relay log cursors, last heard from), and the
//! signals queued for its devices with what each device did (`quic::store::received_by_account`,
//! the rows `GET /api/v1/signals/{id}/outcomes` gives per signal).
//!
//! The owner's and admins' actions are POST forms carrying the session's CSRF token, each
//! through the function the JSON API calls, so each is audited the same way: disable / enable
//! the account (`accounts::set_disabled`), revoke a device (`api::devices::revoke_device`: the
//! device is refused and its QUIC connections here closed), grant a plan, or extend one by
//! granting it again with a later end (`entitlements::grant`), revoke an entitlement (`entitlements::end`).
//! After an action the page is shown again (303) with a fixed notice.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::PageError;
use super::fmt::{self, DAY_MS};
use super::layout::{self, Frame, Notice};
use super::session::{Console, Signed, csrf_ok};
use crate::accounts::{self, User};
use crate::api::extract::RequestId;
use crate::entitlements::{self, Grant};
use crate::error::ApiError;
use crate::plans;
use crate::state::AppState;

/// Accounts a search shows at most.
pub const SEARCH_LIMIT: i64 = 100;
/// Signals an account's page lists at most.
pub const RECEIVED_LIMIT: i64 = 50;

/// `?email=` of the search, `?done=` after an action.
#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    email: Option<String>,
    done: Option<String>,
}

fn role_and_status(u: &User) -> Markup {
    html! {
        span.tag { (u.role.as_str()) } " "
        @if u.disabled_at_ms.is_some() { span.tag.bad { "disabled" } } @else { span.tag.ok { "enabled" } }
    }
}

/// `GET /subscribers`.
pub async fn search(
    State(state): State<AppState>,
    Console(signed): Console,
    Query(q): Query<SearchQuery>,
) -> Result<Response, PageError> {
    let email = q.email.clone().unwrap_or_default();
    let found = accounts::search_users(&state.db, &email, SEARCH_LIMIT, 0).await?;
    let body = html! {
        form.filters method="get" action="/subscribers" {
            div { label for="email" { "E-mail contains" } input #email name="email" value=(email) placeholder="name@example.com" autofocus; }
            div { button.primary type="submit" { "Search" } }
        }
        table #accounts {
            thead { tr { th { "E-mail" } th { "Name" } th { "Role and status" } th { "Since (UTC)" } } }
            tbody {
                @for u in &found {
                    tr {
                        td { a href=(format!("/subscribers/{}", u.id)) { (u.email) } }
                        td { (u.display_name) }
                        td { (role_and_status(u)) }
                        td.nowrap { (fmt::when(Some(u.created_at_ms))) }
                    }
                }
                @if found.is_empty() { (fmt::none_row(4, "No account matches.")) }
            }
        }
        @if found.len() as i64 == SEARCH_LIMIT { p.mute { "The first " (SEARCH_LIMIT) " matches; narrow the search." } }
    };
    let frame =
        Frame { signed: &signed, title: "Subscribers", active: "/subscribers", notice: None };
    Ok(layout::html(layout::page(&frame, body)))
}

fn done_notice(done: Option<&str>) -> Option<Notice> {
    let text = match done? {
        "disabled" => "Account disabled: its sign-ins, tokens and console sessions end now.",
        "enabled" => "Account enabled.",
        "revoked" => "Device revoked: it is refused from now on and its connections here closed.",
        "granted" => "Plan granted.",
        "ent-revoked" => "Entitlement revoked.",
        "refunded" => {
            "Refunded and ended now at its processor (Stripe or Telegram Stars); the ledger shows it."
        }
        _ => return None,
    };
    Some(Notice::Ok(text.into()))
}

fn csrf_field(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

/// `GET /subscribers/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Console(signed): Console,
    Path(id): Path<String>,
    Query(q): Query<SearchQuery>,
) -> Result<Response, PageError> {
    let user = accounts::user_by_id(&state.db, &id)
        .await?
        .ok_or_else(|| PageError(ApiError::NotFound(format!("no account {id}"))))?;
    let now = state.now_ms();
    let all_plans = plans::list(&state.db, None, true).await?;
    let plan_of = |pid: &str| all_plans.iter().find(|p| p.id == pid);
    let ents = entitlements::history(&state.db, Some(&user.id)).await?;
    let devices = crate::devices::list(&state.db, Some(&user.id)).await?;
    let mut health = Vec::with_capacity(devices.len());
    for d in &devices {
        let connected = tradecast_protocol::DeviceId::parse(&d.id)
            .is_ok_and(|dev| state.quic_peers.is_connected(&dev));
        let mut logs = Vec::new();
        for (log, seen) in crate::relay::visible_tips(&state.db, &d.id).await? {
            logs.push((log.to_text(), crate::relay::cursor(&state.db, &d.id, &log).await?, seen));
        }
        health.push((connected, crate::feed::link_health(&state.db, &d.id).await?, logs));
    }
    let received = crate::quic::store::received_by_account(&state.db, &user.id, RECEIVED_LIMIT)
        .await
        .map_err(|e| PageError(ApiError::internal(e)))?;
    let device_name = |did: &str| {
        devices.iter().find(|d| d.id == did).map(|d| d.name.clone()).unwrap_or_default()
    };
    let base = format!("/subscribers/{}", user.id);
    let subs = crate::billing::ledger::subscriptions_of(&state.db, &user.id).await?;
    let invoices = crate::billing::ledger::invoices_of(&state.db, &user.id).await?;
    let telegram = crate::telegram::link::of_user(&state.db, &user.id).await?;
    let offered: Vec<_> = all_plans.iter().filter(|p| p.archived_at_ms.is_none()).collect();
    let body = html! {
        section {
            dl.facts {
                dt { "E-mail" } dd #email { (user.email) }
                dt { "Name" } dd { (user.display_name) }
                dt { "Account id" } dd { code { (user.id) } }
                dt { "Role and status" } dd #status { (role_and_status(&user)) }
                dt { "Since (UTC)" } dd { (fmt::when(Some(user.created_at_ms))) }
                @if let Some(at) = user.disabled_at_ms { dt { "Disabled (UTC)" } dd { (fmt::when(Some(at))) } }
                dt { "Telegram" }
                @match &telegram {
                    Some(t) => dd #telegram {
                        @if let Some(u) = &t.username { "@" (u) } @else { (t.first_name) }
                        " · linked " (fmt::when(Some(t.linked_at_ms)))
                        @if let Some(at) = t.blocked_at_ms { " · " span.tag.bad { "blocked the bot " (fmt::when(Some(at))) } }
                    },
                    None => dd.mute #telegram { "not linked" },
                }
            }
            div.actions {
                @if user.disabled_at_ms.is_some() {
                    form method="post" action=(format!("{base}/enable")) { (csrf_field(&signed)) button type="submit" { "Enable the account" } }
                } @else {
                    form method="post" action=(format!("{base}/disable")) { (csrf_field(&signed)) button.danger type="submit" { "Disable the account" } }
                }
            }
        }
        h2 { "Subscriptions" }
        table #subscriptions {
            thead { tr { th { "Plan" } th { "Paid by" } th { "State" } th { "Period end (UTC)" } th { "Access until (UTC)" } th { "Processor id" } th {} } }
            tbody {
                @for sub in &subs {
                    tr {
                        td { (plan_of(&sub.plan_id).map_or(sub.plan_id.as_str(), |p| p.name.as_str())) }
                        td { (sub.door.as_str()) }
                        td { (sub.status.describe()) }
                        td.nowrap { (fmt::when(Some(sub.current_period_end_ms))) }
                        td.nowrap { (fmt::when(Some(sub.covered_until_ms))) }
                        td { code { (sub.external_id) } }
                        td {
                            @if sub.door == crate::billing::ledger::Door::Stripe && !matches!(sub.status, crate::billing::ledger::Status::Refunded | crate::billing::ledger::Status::Expired) {
                                form.inline method="post" action=(format!("{base}/subscriptions/{}/refund", sub.id)) { (csrf_field(&signed)) button.link.danger type="submit" { "Refund and end now" } }
                            }
                        }
                    }
                }
                @if subs.is_empty() { (fmt::none_row(7, "No paid subscription.")) }
            }
        }
        h2 { "Invoices" }
        table #invoices {
            thead { tr { th { "Issued (UTC)" } th { "Amount" } th { "Paid" } th { "Refunded" } th { "State" } th { "Processor id" } } }
            tbody {
                @for i in &invoices {
                    tr {
                        td.nowrap { (fmt::when(Some(i.created_at_ms))) }
                        td { (fmt::money(i.amount_due_minor, &i.currency)) }
                        td { (fmt::money(i.amount_paid_minor, &i.currency)) }
                        td { (fmt::money(i.amount_refunded_minor, &i.currency)) }
                        td { (i.status) }
                        td { code { (i.external_id) } }
                    }
                }
                @if invoices.is_empty() { (fmt::none_row(6, "No invoice.")) }
            }
        }
        h2 { "Plans held" }
        table #entitlements {
            thead { tr { th { "Plan" } th { "Price" } th { "Granted by" } th { "From (UTC)" } th { "Until (UTC)" } th { "State" } th {} } }
            tbody {
                @for e in &ents {
                    @let active = e.active_at(now);
                    @let ended = e.ends_at_ms().is_some_and(|end| end <= now);
                    tr {
                        td { (plan_of(&e.plan_id).map_or(e.plan_id.as_str(), |p| p.name.as_str())) }
                        td.nowrap { (plan_of(&e.plan_id).map(|p| format!("{} / {} d", fmt::money(p.price_minor, &p.currency), p.period_days)).unwrap_or_default()) }
                        td { (fmt::short(&e.granted_by)) }
                        td.nowrap { (fmt::when(Some(e.starts_at_ms))) }
                        td.nowrap { @if e.ends_at_ms().is_some() { (fmt::when(e.ends_at_ms())) } @else { "no end" } }
                        td {
                            @if let (true, Some(reason)) = (ended, e.end_reason) { span.tag.bad { (reason.as_str().replace('_', " ")) } }
                            @else if active { span.tag.ok { "active" } @if let Some(reason) = e.end_reason { " " span.tag.warn { "ends: " (reason.as_str().replace('_', " ")) } } }
                            @else if ended { span.tag.warn { "ended" } }
                            @else { span.tag.warn { "starts later" } }
                        }
                        td {
                            @if !ended {
                                form.inline method="post" action=(format!("{base}/entitlements/{}/revoke", e.id)) { (csrf_field(&signed)) button.link type="submit" { "Revoke" } }
                            }
                        }
                    }
                }
                @if ents.is_empty() { (fmt::none_row(7, "No plan granted.")) }
            }
        }
        div.actions {
            form #grant method="post" action=(format!("{base}/grant")) {
                (csrf_field(&signed))
                div { label for="plan_id" { "Plan" }
                    select #plan_id name="plan_id" required {
                        @for p in &offered { option value=(p.id) { (p.name) " — " (fmt::money(p.price_minor, &p.currency)) " / " (p.period_days) " d" } }
                    }
                }
                div { label for="days" { "Days from now (empty: no end)" } input #days name="days" type="number" min="1" max="3650" placeholder="30"; }
                button.primary type="submit" disabled[offered.is_empty()] { "Grant or extend" }
            }
        }
        p.mute { "Extending grants the plan again with a later end; the earlier entitlement stays in the history." }
        h2 { "Devices" }
        table #devices {
            thead { tr { th { "Name" } th { "Device" } th { "Enrolled (UTC)" } th { "Link" } th { "Inbox (acked / tip)" } th title="Each provider device's relay log this device follows: what its node acknowledged, and the last entry it may see" { "Relay logs (acked / last)" } th { "Last heard (UTC)" } th {} } }
            tbody {
                @for (d, (connected, h, logs)) in devices.iter().zip(&health) {
                    tr {
                        td { (d.name) }
                        td { (fmt::short(&d.id)) }
                        td.nowrap { (fmt::when(Some(d.enrolled_at_ms))) }
                        td {
                            @if d.revoked_at_ms.is_some() { span.tag.bad { "revoked " (fmt::when(d.revoked_at_ms)) } }
                            @else if *connected { span.tag.ok { "connected here" } }
                            @else { span.tag { "not connected here" } }
                        }
                        td.num { (h.acked) " / " (h.tip) @if h.tip > h.acked { " " span.tag.warn { (h.tip - h.acked) " pending" } } }
                        td.num {
                            @for (log, acked, seen) in logs {
                                div { span.mute { (fmt::short(log)) " " } (acked) " / " (seen) @if seen > acked { " " span.tag.warn { "behind" } } }
                            }
                            @if logs.is_empty() { "—" }
                        }
                        td.nowrap { (fmt::when(h.last_ack_ms.max(h.last_record_ms))) }
                        td {
                            @if d.revoked_at_ms.is_none() {
                                form.inline method="post" action=(format!("{base}/devices/{}/revoke", d.id)) { (csrf_field(&signed)) button.link type="submit" { "Revoke" } }
                            }
                        }
                    }
                }
                @if devices.is_empty() { (fmt::none_row(8, "No device enrolled.")) }
            }
        }
        h2 { "Signals received" }
        table #received {
            thead { tr { th { "Queued (UTC)" } th { "Signal" } th { "Symbol" } th { "Device" } th { "Delivered" } th { "Decision" } th { "Fill" } } }
            tbody {
                @for r in &received {
                    @let o = &r.outcome;
                    tr {
                        td.nowrap { (fmt::when(Some(o.queued_at_ms))) }
                        td { (fmt::short(&r.signal_id)) }
                        td { (r.symbol) " " span.mute { (r.side) } }
                        td { (device_name(&o.device_id)) }
                        td.nowrap { (fmt::when(o.delivered_at_ms)) }
                        td { (o.decision.as_deref().unwrap_or("—")) }
                        td.nowrap {
                            @match (&o.fill_price, &o.fill_volume) {
                                (Some(p), Some(v)) => { (v) " @ " (p) @if let Some(rc) = o.retcode { " " span.mute { "(" (rc) ")" } } }
                                _ => @if let Some(rc) = o.retcode { "retcode " (rc) } @else { "—" },
                            }
                        }
                    }
                }
                @if received.is_empty() { (fmt::none_row(7, "No signal queued for this account's devices.")) }
            }
        }
    };
    let notice = done_notice(q.done.as_deref());
    let title = format!("Account {}", user.email);
    let frame =
        Frame { signed: &signed, title: &title, active: "/subscribers", notice: notice.as_ref() };
    Ok(layout::html(layout::page(&frame, body)))
}

/// The fields of the action forms.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    plan_id: Option<String>,
    days: Option<String>,
}

fn checked(signed: &Signed, headers: &HeaderMap, form: &ActionForm) -> Result<(), PageError> {
    if csrf_ok(signed, headers, form.csrf.as_deref()) { Ok(()) } else { Err(PageError::csrf()) }
}

fn back(id: &str, done: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, format!("/subscribers/{id}?done={done}"))])
        .into_response()
}

/// `POST /subscribers/{id}/disable` and `…/enable`.
async fn set_disabled(
    state: &AppState,
    signed: &Signed,
    request_id: &str,
    id: &str,
    disabled: bool,
) -> Result<Response, PageError> {
    accounts::set_disabled(&state.db, state.now_ms(), &signed.user, id, disabled, request_id)
        .await?;
    if disabled {
        crate::cluster::account_disabled(state, id).await;
    }
    Ok(back(id, if disabled { "disabled" } else { "enabled" }))
}

/// `POST /subscribers/{id}/disable`.
pub async fn disable(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    checked(&signed, &headers, &form)?;
    set_disabled(&state, &signed, &request_id, &id, true).await
}

/// `POST /subscribers/{id}/enable`.
pub async fn enable(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    checked(&signed, &headers, &form)?;
    set_disabled(&state, &signed, &request_id, &id, false).await
}

/// `POST /subscribers/{id}/devices/{device}/revoke`.
pub async fn revoke_device(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Path((id, device)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    checked(&signed, &headers, &form)?;
    let d = crate::devices::by_id(&state.db, &device).await?;
    if d.is_none_or(|d| d.user_id != id) {
        return Err(PageError(ApiError::NotFound(format!("no device {device} of account {id}"))));
    }
    crate::api::devices::revoke_device(&state, &device, &signed.user.id, true, &request_id).await?;
    Ok(back(&id, "revoked"))
}

/// `POST /subscribers/{id}/grant` (`plan_id`, `days`: empty for no end).
pub async fn grant(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    checked(&signed, &headers, &form)?;
    let now = state.now_ms();
    let days = match form.days.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => match d.parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => Some(n),
            _ => return Err(PageError(ApiError::Validation("`days` must be 1-3650".into()))),
        },
    };
    let g = Grant {
        user_id: id.clone(),
        plan_id: form.plan_id.clone().unwrap_or_default(),
        expires_at_ms: days.map(|d| now + d * DAY_MS),
    };
    entitlements::grant_by_admin(&state, now, &signed.user.id, &g, &request_id).await?;
    Ok(back(&id, "granted"))
}

/// `POST /subscribers/{id}/subscriptions/{subscription}/refund`: as `POST
/// /api/v1/billing/subscriptions/{id}/refund` (audited `billing.refund`).
pub async fn refund(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Path((id, sub)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    checked(&signed, &headers, &form)?;
    let owned = crate::billing::ledger::subscription(&state.db, &sub)
        .await?
        .is_some_and(|s| s.account_id == id);
    if !owned {
        return Err(PageError(ApiError::NotFound(format!(
            "no subscription {sub} of account {id}"
        ))));
    }
    crate::billing::stripe_door::refund(&state, &signed.user.id, &sub, &request_id).await?;
    Ok(back(&id, "refunded"))
}

/// `POST /subscribers/{id}/entitlements/{entitlement}/revoke`.
pub async fn revoke_entitlement(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Path((id, ent)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    checked(&signed, &headers, &form)?;
    let owned = entitlements::history(&state.db, Some(&id)).await?.iter().any(|e| e.id == ent);
    if !owned {
        return Err(PageError(ApiError::NotFound(format!("no entitlement {ent} of account {id}"))));
    }
    let ending =
        entitlements::Ending { id: &ent, at_ms: None, reason: entitlements::EndReason::Revoked };
    entitlements::end(&state, state.now_ms(), &signed.user.id, &ending, &request_id).await?;
    Ok(back(&id, "ent-revoked"))
}
