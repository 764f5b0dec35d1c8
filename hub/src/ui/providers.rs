//! `/providers`: plans and prices with the accounts entitled to each (`plans::list`,
//! `entitlements::history`), the provider accounts, and the quarantine list (streams quarantined
//! after an equivocation, `quic::store::quarantined`) with release for owners
//! (`quic::store::release`, what `POST /api/v1/sync/quarantines/{author}/{stream}/release`
//! does, audited `sync.release`). `/providers/{id}`: one provider's plans and latest signals,
//! each with its per-device outcomes (`quic::store::outcomes`, what
//! `GET /api/v1/signals/{id}/outcomes` answers), and what the provider's plans took in.
//!
//! A provider sees their own part at `/provider` (the same page, for the signed-in provider:
//! plans, subscribers entitled, revenue, signals and outcomes, links to the public record);
//! subscribers' devices show there by a short id only, never by the name their owner gave them.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::PageError;
use super::fmt;
use super::layout::{self, Frame, Notice};
use super::session::{Console, Member, Signed, csrf_ok};
use crate::accounts::{self, Role};
use crate::api::extract::RequestId;
use crate::entitlements;
use crate::error::ApiError;
use crate::plans::{self, Plan};
use crate::quic::store;
use crate::state::AppState;

/// Signals a provider's page lists.
pub const SIGNALS_SHOWN: i64 = 20;

fn store_err(e: store::StoreError) -> PageError {
    PageError(ApiError::internal(e))
}

fn price(p: &Plan) -> String {
    format!("{} / {} d", fmt::money(p.price_minor, &p.currency), p.period_days)
}

fn plans_table(
    plans: &[Plan],
    ents: &[entitlements::Entitlement],
    now: i64,
    with_provider: &dyn Fn(&str) -> Markup,
) -> Markup {
    html! {
        table #plans {
            thead { tr { th { "Plan" } th { "Provider" } th { "Price" } th { "Created (UTC)" } th { "State" } th.num { "Entitled now" } th.num { "Granted ever" } } }
            tbody {
                @for p in plans {
                    @let of_plan: Vec<_> = ents.iter().filter(|e| e.plan_id == p.id).collect();
                    @let active = of_plan.iter().filter(|e| e.active_at(now)).count();
                    tr {
                        td { (p.name) }
                        td { (with_provider(&p.provider_user_id)) }
                        td.nowrap { (price(p)) }
                        td.nowrap { (fmt::when(Some(p.created_at_ms))) }
                        td { @if p.archived_at_ms.is_some() { span.tag { "archived" } } @else { span.tag.ok { "offered" } } }
                        td.num { (active) }
                        td.num { (of_plan.len()) }
                    }
                }
                @if plans.is_empty() { (fmt::none_row(7, "No plan.")) }
            }
        }
    }
}

/// `GET /providers`.
pub async fn show(
    State(state): State<AppState>,
    Console(signed): Console,
    axum::extract::Query(q): axum::extract::Query<DoneQuery>,
) -> Result<Response, PageError> {
    let now = state.now_ms();
    let all_plans = plans::list(&state.db, None, true).await?;
    let ents = entitlements::history(&state.db, None).await?;
    let users = accounts::list_users(&state.db, 10_000, 0).await?;
    let providers: Vec<_> = users.iter().filter(|u| u.role == Role::Provider).collect();
    let email =
        |id: &str| users.iter().find(|u| u.id == id).map_or(id.to_string(), |u| u.email.clone());
    let provider_link = |id: &str| html! { a href=(format!("/providers/{id}")) { (email(id)) } };
    let quarantined = store::quarantined(&state.db).await.map_err(store_err)?;
    let owner = signed.user.role == Role::Owner;
    let body = html! {
        h2 { "Plans and prices" }
        (plans_table(&all_plans, &ents, now, &provider_link))
        h2 { "Providers" }
        table #providers {
            thead { tr { th { "Provider" } th { "Status" } th.num { "Plans offered" } } }
            tbody {
                @for u in &providers {
                    tr {
                        td { a href=(format!("/providers/{}", u.id)) { (u.email) } }
                        td { @if u.disabled_at_ms.is_some() { span.tag.bad { "disabled" } } @else { span.tag.ok { "enabled" } } }
                        td.num { (all_plans.iter().filter(|p| p.provider_user_id == u.id && p.archived_at_ms.is_none()).count()) }
                    }
                }
                @if providers.is_empty() { (fmt::none_row(3, "No provider account.")) }
            }
        }
        h2 { "Quarantine" }
        p.mute { "Streams the hub stopped taking after an equivocation (two records signed for one seq). Releasing accepts the node's next session again; a record that still conflicts is refused again." }
        table #quarantine {
            thead { tr { th { "Since (UTC)" } th { "Author device" } th { "Device" } th { "Account" } th { "Stream" } th {} } }
            tbody {
                @for qd in &quarantined {
                    tr {
                        td.nowrap { (fmt::when(Some(qd.at_ms))) }
                        td { (fmt::short(&qd.author)) }
                        td { (qd.device_name.as_deref().unwrap_or("—")) }
                        td { @if let Some(u) = &qd.user_id { (provider_link(u)) } @else { "—" } }
                        td.num { (qd.stream) }
                        td {
                            @if owner {
                                form.inline method="post" action="/providers/quarantine/release" {
                                    input type="hidden" name="csrf" value=(signed.csrf);
                                    input type="hidden" name="author" value=(qd.author);
                                    input type="hidden" name="stream" value=(qd.stream);
                                    button.link type="submit" { "Release" }
                                }
                            } @else { span.mute { "an owner releases" } }
                        }
                    }
                }
                @if quarantined.is_empty() { (fmt::none_row(6, "Nothing quarantined.")) }
            }
        }
    };
    let notice =
        (q.done.as_deref() == Some("released")).then(|| Notice::Ok("Quarantine released.".into()));
    let frame = Frame {
        signed: &signed,
        title: "Providers and plans",
        active: "/providers",
        notice: notice.as_ref(),
    };
    Ok(layout::html(layout::page(&frame, body)))
}

/// `?done=` after an action.
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

/// `GET /providers/{id}` (owners and admins).
pub async fn provider(
    State(state): State<AppState>,
    Console(signed): Console,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    provider_page(&state, &signed, &id, "/providers").await
}

/// `GET /provider`: the signed-in provider's own page (owners and admins are sent to
/// `/providers`; subscribers are refused, 403).
pub async fn own(
    State(state): State<AppState>,
    Member(signed): Member,
) -> Result<Response, PageError> {
    match signed.user.role {
        Role::Provider => {
            let id = signed.user.id.clone();
            provider_page(&state, &signed, &id, "/provider").await
        }
        Role::Owner | Role::Admin => {
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, "/providers")]).into_response())
        }
        Role::Subscriber => Err(PageError(ApiError::Forbidden(
            "this page is for signal providers; your plan and devices are on /account".into(),
        ))),
    }
}

/// What a provider's plans took in, by currency: paid minus refunded over the paid invoices of
/// subscriptions to those plans (minor units).
async fn revenue_of(
    db: &crate::db::Db,
    provider_user_id: &str,
) -> Result<Vec<(String, i64)>, crate::db::DbError> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT i.currency, CAST(SUM(i.amount_paid_minor - i.amount_refunded_minor - i.amount_disputed_minor) AS BIGINT) \
         FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id \
         JOIN plans p ON p.id = s.plan_id \
         WHERE i.status = 'paid' AND p.provider_user_id = $1 \
         GROUP BY i.currency ORDER BY i.currency",
    )
    .bind(provider_user_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(crate::db::DbError::from)
}

async fn provider_page(
    state: &AppState,
    signed: &Signed,
    id: &str,
    active: &'static str,
) -> Result<Response, PageError> {
    let user = accounts::user_by_id(&state.db, id)
        .await?
        .filter(|u| u.role == Role::Provider)
        .ok_or_else(|| PageError(ApiError::NotFound(format!("no provider {id}"))))?;
    // Subscribers' device names are their own: the console shows them, a provider does not.
    let names_shown = signed.user.role.is_admin();
    let now = state.now_ms();
    let own_plans = plans::list(&state.db, Some(&user.id), true).await?;
    let ents = entitlements::history(&state.db, None).await?;
    let revenue = revenue_of(&state.db, &user.id).await?;
    let entitled_now: std::collections::BTreeSet<&str> = ents
        .iter()
        .filter(|e| e.active_at(now) && own_plans.iter().any(|p| p.id == e.plan_id))
        .map(|e| e.user_id.as_str())
        .collect();
    let ids =
        crate::signals::list_ids(&state.db, &user.id, Role::Provider, now, SIGNALS_SHOWN).await?;
    let mut signals = Vec::with_capacity(ids.len());
    for sid in &ids {
        if let Some((stored, _)) =
            crate::signals::stored_by_id(&state.db, &state.hub_identity, sid).await?
        {
            let outcomes = store::outcomes(&state.db, sid).await.map_err(store_err)?;
            signals.push((stored, outcomes));
        }
    }
    let devices =
        if names_shown { crate::devices::list(&state.db, None).await? } else { Vec::new() };
    let device_name =
        |did: &str| devices.iter().find(|d| d.id == did).map_or(String::new(), |d| d.name.clone());
    let field = |v: &serde_json::Value, k: &str| {
        v.get(k).map(|x| x.as_str().map_or(x.to_string(), str::to_owned)).unwrap_or_default()
    };
    let me = user.email.clone();
    let body = html! {
        div.cards {
            div.card { div.k { "Subscribers entitled now" } span.v #fig-entitled { (entitled_now.len()) } div.hint { "accounts with an active plan of this provider" } }
            div.card {
                div.k { "Revenue" }
                span.v #fig-revenue {
                    @if revenue.is_empty() { "—" }
                    @for (i, (cur, minor)) in revenue.iter().enumerate() {
                        @if i > 0 { br; }
                        (fmt::money(*minor, cur))
                    }
                }
                div.hint { "paid invoices of this provider's plans, net of refunds" }
            }
            div.card {
                div.k { "Public track record" }
                span.v { a href=(format!("/p/{}", user.id)) { "/p/…" } }
                div.hint { a href=(format!("/public/v1/providers/{}/export", user.id)) { "export for tradecast-verify" } }
            }
        }
        h2 { "Plans" }
        (plans_table(&own_plans, &ents, now, &|_| html! { (me) }))
        h2 { "Latest signals" }
        table #signals {
            thead { tr { th { "Received (UTC)" } th { "Signal" } th { "Symbol" } th { "Entry / stop / TP1" } th.num { "Queued" } th.num { "Delivered" } th.num { "Approved" } th.num { "Filled" } } }
            tbody {
                @for (s, outs) in &signals {
                    tr {
                        td.nowrap { (fmt::when(Some(s.received_at_ms))) }
                        td { (fmt::short(&s.signal_id)) }
                        td { (field(&s.signal, "symbol")) " " span.mute { (field(&s.signal, "side")) } }
                        td.nowrap { (field(&s.signal, "entry")) " / " (field(&s.signal, "stop")) " / " (field(&s.signal, "tp1")) }
                        td.num { (outs.len()) }
                        td.num { (outs.iter().filter(|o| o.delivered_at_ms.is_some()).count()) }
                        td.num { (outs.iter().filter(|o| o.decision.as_deref() == Some("approved")).count()) }
                        td.num { (outs.iter().filter(|o| o.fill_price.is_some()).count()) }
                    }
                    @if !outs.is_empty() {
                        tr.detail {
                            td colspan="8" {
                                details {
                                    summary { "Per device" }
                                    table.inner {
                                        thead { tr { th { "Device" } th { "Queued" } th { "Delivered" } th { "Decision" } th { "Retcode" } th { "Fill" } } }
                                        tbody {
                                            @for o in outs {
                                                tr {
                                                    td { @if names_shown { (device_name(&o.device_id)) " " } (fmt::short(&o.device_id)) }
                                                    td.nowrap { (fmt::when(Some(o.queued_at_ms))) }
                                                    td.nowrap { (fmt::when(o.delivered_at_ms)) }
                                                    td { (o.decision.as_deref().unwrap_or("—")) }
                                                    td { (o.retcode.map_or("—".to_string(), |r| r.to_string())) }
                                                    td.nowrap { @if let (Some(p), Some(v)) = (&o.fill_price, &o.fill_volume) { (v) " @ " (p) " " (fmt::when(o.filled_at_ms)) } @else { "—" } }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if signals.is_empty() { (fmt::none_row(8, "No signal yet.")) }
            }
        }
    };
    let title = if active == "/provider" {
        "Your signals and subscribers".to_string()
    } else {
        format!("Provider {}", user.email)
    };
    let frame = Frame { signed, title: &title, active, notice: None };
    Ok(layout::html(layout::page(&frame, body)))
}

/// The release form.
#[derive(Debug, Default, Deserialize)]
pub struct ReleaseForm {
    csrf: Option<String>,
    author: String,
    stream: i64,
}

/// `POST /providers/quarantine/release` (owners, as the API).
pub async fn release(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Form(form): Form<ReleaseForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    if signed.user.role != Role::Owner {
        return Err(PageError(ApiError::Forbidden("only an owner releases a quarantine".into())));
    }
    let released = store::release(
        &state.db,
        &form.author,
        form.stream,
        &signed.user.id,
        &request_id,
        state.now_ms(),
    )
    .await
    .map_err(store_err)?;
    if !released {
        return Err(PageError(ApiError::NotFound(format!(
            "no quarantine of {} stream {}",
            form.author, form.stream
        ))));
    }
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, "/providers?done=released")]).into_response())
}
