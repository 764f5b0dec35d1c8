//! `/broadcasts`: the owner's Telegram broadcasts — a text, an optional button, a segment —
//! and each one's recipients, deliveries, failures and clicks. `/b/<token>` is a broadcast
//! button's link: it counts the click once and redirects. For owners and admins.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::PageError;
use super::fmt;
use super::layout::{self, Frame, Notice};
use super::session::{Console, csrf_ok};
use crate::api::extract::RequestId;
use crate::error::ApiError;
use crate::state::AppState;
use crate::telegram::broadcast::{self, NewBroadcast, Segment};

/// `?sent=N` after a broadcast.
#[derive(Debug, Default, Deserialize)]
pub struct SentQuery {
    sent: Option<usize>,
}

/// The broadcast form.
#[derive(Debug, Default, Deserialize)]
pub struct BroadcastForm {
    csrf: Option<String>,
    segment: Option<String>,
    body: Option<String>,
    cta_label: Option<String>,
    cta_url: Option<String>,
}

async fn render(
    state: &AppState,
    signed: &super::session::Signed,
    notice: Option<&Notice>,
) -> Result<Response, PageError> {
    let list = broadcast::list(state, 50).await?;
    let plans = crate::plans::list(&state.db, None, false).await?;
    let on = state.telegram.is_on();
    let body = html! {
        p.mute {
            "A message from the bot to the linked accounts of a segment, each once. Accounts that turned "
            "\"News and offers\" off in /settings, or blocked the bot, get nothing. Messages go out within "
            "Telegram's limits (about 30 a second); the counts below follow them."
        }
        @if !on { p { span.tag.warn { "Telegram is not set up on this hub: nothing can be sent." } } }
        form #broadcast method="post" action="/broadcasts" {
            input type="hidden" name="csrf" value=(signed.csrf);
            label { "To " select name="segment" {
                option value="all" { "every linked account" }
                option value="active" { "paying subscribers" }
                option value="trial" { "subscribers in a free trial" }
                option value="expired" { "former subscribers (no plan now)" }
                @for p in &plans { option value=(format!("plan:{}", p.id)) { "holders of " (p.name) } }
            } }
            label { "Text " textarea name="body" rows="5" cols="60" maxlength="3500" required {} }
            label { "Button label (optional) " input type="text" name="cta_label" maxlength="64"; }
            label { "Button link " input type="url" name="cta_url" placeholder="https://…"; }
            button.primary type="submit" disabled[!on] { "Send" }
        }
        h2 { "Sent" }
        table #broadcasts {
            thead { tr {
                th { "When (UTC)" } th { "Segment" } th { "Text" } th.num { "Recipients" }
                th.num { "Delivered" } th.num { "Failed" } th.num { "Clicks" }
            } }
            tbody {
                @for b in &list {
                    tr {
                        td.nowrap { (fmt::when(Some(b.created_at_ms))) }
                        td { (b.segment) }
                        td { (b.body.chars().take(120).collect::<String>())
                             @if let Some(l) = &b.cta_label { " " span.tag { (l) } } }
                        td.num { (b.recipients) }
                        td.num { (b.delivered) }
                        td.num { (b.failed) }
                        td.num { (b.clicks) }
                    }
                }
                @if list.is_empty() { (fmt::none_row(7, "No broadcast yet.")) }
            }
        }
    };
    let frame = Frame { signed, title: "Broadcasts", active: "/broadcasts", notice };
    Ok(layout::html(layout::page(&frame, body)))
}

/// `GET /broadcasts`.
pub async fn show(
    State(state): State<AppState>,
    Console(signed): Console,
    Query(q): Query<SentQuery>,
) -> Result<Response, PageError> {
    let notice = q.sent.map(|n| Notice::Ok(format!("Queued for {n} account(s).")));
    render(&state, &signed, notice.as_ref()).await
}

/// `POST /broadcasts`.
pub async fn send(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Form(form): Form<BroadcastForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let refuse = |e: ApiError| Notice::Err(e.to_string());
    let Some(segment) = form.segment.as_deref().and_then(Segment::parse) else {
        let n = refuse(ApiError::Validation("choose who gets it".into()));
        return render(&state, &signed, Some(&n)).await;
    };
    let label = form.cta_label.unwrap_or_default();
    let url = form.cta_url.unwrap_or_default();
    let cta = match (label.trim().is_empty(), url.trim().is_empty()) {
        (true, true) => None,
        _ => Some((label.trim().to_owned(), url.trim().to_owned())),
    };
    let b = NewBroadcast { segment, body: form.body.unwrap_or_default(), cta };
    match broadcast::send(&state, &signed.user.id, &b, &request_id).await {
        Ok((_, n)) => {
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, format!("/broadcasts?sent={n}"))])
                .into_response())
        }
        Err(e) if e.status().is_server_error() && !matches!(e, ApiError::NotConfigured(_)) => {
            Err(PageError(e))
        }
        Err(e) => render(&state, &signed, Some(&refuse(e))).await,
    }
}

/// `GET /b/{token}`: a broadcast button's click.
pub async fn click(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    match broadcast::click(&state, &token).await? {
        Some(url) => Ok(Redirect::to(&url).into_response()),
        None => Err(PageError(ApiError::NotFound("no such link".into()))),
    }
}
