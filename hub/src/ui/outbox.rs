//! `/outbox`: what the hub owes outside services (`outbox`) and its background jobs (`jobs`).
//! Messages per channel and state; the queued messages and the dead letters with their kind,
//! route, cause, attempts, last error, times and payload (escaped, cut to
//! [`PAYLOAD_CHARS`]); Retry and Discard on each dead letter (POST forms with the session's
//! CSRF token, audited `outbox.retry` / `outbox.discard`); the jobs with their last run and next
//! due time. For owners and admins.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::PageError;
use super::fmt;
use super::layout::{self, Frame, Notice};
use super::session::{Console, Signed, csrf_ok};
use crate::api::extract::RequestId;
use crate::outbox::{self, Channel, Message};
use crate::state::AppState;

/// Messages each list shows at most.
pub const LIST_LIMIT: i64 = 100;
/// Characters of a payload shown.
pub const PAYLOAD_CHARS: usize = 200;

/// `?done=` after an action.
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

/// The action forms' fields.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
}

const STATES: [&str; 5] = ["queued", "sending", "sent", "dead", "discarded"];

fn payload(m: &Message) -> String {
    let text = m.payload.to_string();
    let cut: String = text.chars().take(PAYLOAD_CHARS).collect();
    if cut.len() < text.len() { format!("{cut}…") } else { cut }
}

fn csrf_field(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

fn messages(id: &str, list: &[Message], signed: Option<&Signed>, empty: &str) -> Markup {
    let cols = if signed.is_some() { 9 } else { 8 };
    html! {
        table id=(id) {
            thead { tr {
                th { "Id" } th { "Channel" } th { "Kind" } th { "Route" } th { "Cause" }
                th.num { "Attempts" } th { "Times (UTC)" } th { "Last error and payload" }
                @if signed.is_some() { th { "Action" } }
            } }
            tbody {
                @for m in list {
                    tr {
                        td.nowrap { (fmt::short(&m.id)) }
                        td { (m.channel.as_str()) }
                        td.nowrap { code { (m.kind) } }
                        td { (m.route.as_deref().unwrap_or("—")) }
                        td { (m.cause.as_deref().unwrap_or("—")) }
                        td.num {
                            (m.attempts)
                            @if m.redelivered > 0 { " " span.tag.warn title="delivered again after a lease expired" { "redelivered " (m.redelivered) } }
                        }
                        td.nowrap {
                            "enqueued " (fmt::when(Some(m.created_at_ms))) br;
                            @if m.state == "queued" { "due " (fmt::when(Some(m.not_before_ms))) }
                            @else { "changed " (fmt::when(Some(m.updated_at_ms))) }
                        }
                        td {
                            @if let Some(e) = &m.last_error { (e) br; }
                            code.mute { (payload(m)) }
                        }
                        @if let Some(s) = signed {
                            td.nowrap {
                                form.inline method="post" action=(format!("/outbox/{}/retry", m.id)) {
                                    (csrf_field(s)) button type="submit" { "Retry" }
                                }
                                " "
                                form.inline method="post" action=(format!("/outbox/{}/discard", m.id)) {
                                    (csrf_field(s)) button type="submit" { "Discard" }
                                }
                            }
                        }
                    }
                }
                @if list.is_empty() { (fmt::none_row(cols, empty)) }
            }
        }
    }
}

/// `GET /outbox`.
pub async fn show(
    State(state): State<AppState>,
    Console(signed): Console,
    Query(q): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let counts = outbox::counts(&state.db).await?;
    let queued = outbox::list(&state.db, Some("queued"), LIST_LIMIT).await?;
    let sending = outbox::list(&state.db, Some("sending"), LIST_LIMIT).await?;
    let dead = outbox::list(&state.db, Some("dead"), LIST_LIMIT).await?;
    let jobs = crate::jobs::list(&state.db).await?;
    let count = |c: Channel, s: &str| {
        counts.iter().find(|(cc, ss, _)| *cc == c && ss == s).map_or(0, |(_, _, n)| *n)
    };
    let now = state.now_ms();
    let body = html! {
        p.mute {
            "Messages to outside services, committed with the change that caused them and sent by each instance's runner "
            "within the services' limits (per instance). A message whose sender died in flight is sent again and counted as redelivered."
        }
        table #counts {
            thead { tr { th { "Channel" } @for s in STATES { th.num { (s) } } } }
            tbody {
                @for c in Channel::ALL {
                    tr {
                        td { (c.as_str()) }
                        @for s in STATES { td.num { (count(c, s)) } }
                    }
                }
            }
        }
        h2 { "Dead letters" }
        (messages("dead", &dead, Some(&signed), "No dead letter."))
        h2 { "Queued" }
        (messages("queued", &queued, None, "Nothing queued."))
        @if !sending.is_empty() {
            h2 { "Sending" }
            (messages("sending", &sending, None, ""))
        }
        h2 { "Jobs" }
        table #jobs {
            thead { tr {
                th { "Job" } th { "Schedule" } th { "Last run (UTC)" } th { "Outcome" }
                th.num { "Runs" } th.num { "Failures" } th { "Next due (UTC)" }
            } }
            tbody {
                @for j in &jobs {
                    tr {
                        td { code { (j.name) } }
                        td { (j.schedule) }
                        td.nowrap {
                            (fmt::when(j.last_started_at_ms))
                            @if j.lease_owner.is_some() && j.lease_until_ms.is_some_and(|u| u > now) { " " span.tag.warn { "running" } }
                        }
                        td {
                            @match j.last_outcome.as_deref() {
                                Some("ok") => span.tag.ok { "ok" },
                                Some(o) => span.tag.bad { (o) },
                                None => "—",
                            }
                            @if let Some(s) = &j.last_summary { " " (s) }
                        }
                        td.num { (j.runs) }
                        td.num { (j.failures) }
                        td.nowrap { (fmt::when(Some(j.next_run_at_ms))) }
                    }
                }
                @if jobs.is_empty() { (fmt::none_row(7, "No job registered.")) }
            }
        }
    };
    let notice = match q.done.as_deref() {
        Some("retried") => {
            Some(Notice::Ok("Queued again: the runner sends it at its next poll.".into()))
        }
        Some("discarded") => Some(Notice::Ok("Dead letter discarded.".into())),
        _ => None,
    };
    let frame = Frame {
        signed: &signed,
        title: "Outbox and jobs",
        active: "/outbox",
        notice: notice.as_ref(),
    };
    Ok(layout::html(layout::page(&frame, body)))
}

fn back(done: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, format!("/outbox?done={done}"))]).into_response()
}

/// `POST /outbox/{id}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    outbox::retry(&state, &id, &signed.user.id, &request_id).await?;
    Ok(back("retried"))
}

/// `POST /outbox/{id}/discard`.
pub async fn discard(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    outbox::discard(&state, &id, &signed.user.id, &request_id).await?;
    Ok(back("discarded"))
}
