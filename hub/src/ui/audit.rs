//! `/audit`: the audit log for owners and admins, filtered by actor, action and days (UTC),
//! newest first, [`PAGE`] entries a page (older pages by seq), with the chain's verification
//! ([`crate::audit::verify`], recomputed at every load) above it. The entries come from
//! [`crate::audit::search`], the function `GET /api/v1/audit` reads.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::PageError;
use super::fmt::{self, DAY_MS};
use super::layout::{self, Frame, Notice};
use super::session::Console;
use crate::audit::{self, AuditError, Filter};
use crate::error::ApiError;
use crate::state::AppState;

/// Entries per page.
pub const PAGE: i64 = 50;

/// The filter form's fields (empty means any).
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// Last day, included.
    to: Option<String>,
    /// Entries older than this seq.
    before: Option<i64>,
}

fn text(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// `GET /audit`.
pub async fn show(
    State(state): State<AppState>,
    Console(signed): Console,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    let bad = |e: String| PageError(ApiError::InvalidParameter(e));
    let filter = Filter {
        actor: text(&q.actor),
        action: text(&q.action),
        from_ms: fmt::day_start_ms(q.from.as_deref()).map_err(bad)?,
        to_ms: fmt::day_start_ms(q.to.as_deref()).map_err(bad)?.map(|d| d + DAY_MS),
        before_seq: q.before,
    };
    let entries = audit::search(&state.db, &filter, PAGE).await?;
    let notice = match audit::verify(&state.db).await {
        Ok(r) => {
            Notice::Ok(format!("Chain verified: {} entries, head {}.", r.n_entries, r.head_hash))
        }
        Err(AuditError::Broken { seq, reason }) => {
            Notice::Err(format!("The audit chain is BROKEN at seq {seq}: {reason}."))
        }
        Err(AuditError::Db(e)) => return Err(e.into()),
    };
    let (actor, action) =
        (filter.actor.clone().unwrap_or_default(), filter.action.clone().unwrap_or_default());
    let (from, to) = (text(&q.from).unwrap_or_default(), text(&q.to).unwrap_or_default());
    let older = (entries.len() as i64 == PAGE).then(|| {
        let last = entries.last().map(|e| e.seq.to_string()).unwrap_or_default();
        fmt::query(&[
            ("actor", &actor),
            ("action", &action),
            ("from", &from),
            ("to", &to),
            ("before", &last),
        ])
    });
    let body = html! {
        form.filters method="get" action="/audit" {
            div { label for="actor" { "Actor" } input #actor name="actor" value=(actor) placeholder="user id, device:…, system"; }
            div { label for="action" { "Action" } input #action name="action" value=(action) placeholder="auth.login"; }
            div { label for="from" { "From (UTC)" } input #from type="date" name="from" value=(from); }
            div { label for="to" { "To (UTC, included)" } input #to type="date" name="to" value=(to); }
            div { button.primary type="submit" { "Filter" } " " a href="/audit" { "Clear" } }
        }
        table #audit {
            thead { tr { th { "Seq" } th { "When (UTC)" } th { "Actor" } th { "Action" } th { "Subject" } th { "Detail" } th { "Request" } } }
            tbody {
                @for e in &entries {
                    tr {
                        td.num { (e.seq) }
                        td.nowrap { (fmt::when(Some(e.at_ms))) }
                        td { a href=(format!("/audit?{}", fmt::query(&[("actor", &e.actor)]))) title="only this actor" { (fmt::short(&e.actor)) } }
                        td { (e.action) }
                        td { (fmt::short(&e.subject)) }
                        td { code { (e.detail) } }
                        td.mute { (e.request_id) }
                    }
                }
                @if entries.is_empty() { (fmt::none_row(7, "No entries match.")) }
            }
        }
        p.pager {
            @if q.before.is_some() {
                a href=(format!("/audit?{}", fmt::query(&[("actor", &actor), ("action", &action), ("from", &from), ("to", &to)]))) { "Newest" }
                " "
            }
            @if let Some(older) = older { a #older href=(format!("/audit?{older}")) { "Older entries →" } }
        }
    };
    let frame =
        Frame { signed: &signed, title: "Audit log", active: "/audit", notice: Some(&notice) };
    Ok(layout::html(layout::page(&frame, body)))
}
