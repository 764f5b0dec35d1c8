//! `/broadcasts`: the owner's Telegram broadcasts — a text, an optional button, a segment —
//! and each one's recipients, deliveries, failures and clicks; and the signal channels
//! ([`crate::telegram::channels`]: add, turn on or off, delete). `/b/<token>` is a broadcast
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
use crate::telegram::channels::{self, NewChannel};
use crate::telegram::guides;

/// `?sent=N` after a broadcast, `?channel=added|on|off|deleted` after a channel change.
#[derive(Debug, Default, Deserialize)]
pub struct SentQuery {
    sent: Option<usize>,
    channel: Option<String>,
}

/// The channel form.
#[derive(Debug, Default, Deserialize)]
pub struct ChannelForm {
    csrf: Option<String>,
    chat_id: Option<String>,
    title: Option<String>,
    provider: Option<String>,
    symbols: Option<String>,
    delay_min: Option<String>,
}

/// The guide form.
#[derive(Debug, Default, Deserialize)]
pub struct GuideForm {
    csrf: Option<String>,
    title: Option<String>,
    body: Option<String>,
    position: Option<String>,
}

/// The tip form.
#[derive(Debug, Default, Deserialize)]
pub struct TipForm {
    csrf: Option<String>,
    body: Option<String>,
    schedule: Option<String>,
    time_zone: Option<String>,
    segment: Option<String>,
}

/// A channel action's form (the token only).
#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
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
    let chans = channels::list(&state.db).await?;
    let guide_list = guides::list(&state.db).await?;
    let tip_list = guides::tips(&state.db).await?;
    let users = crate::accounts::list_users(&state.db, 10_000, 0).await?;
    let providers: Vec<_> =
        users.iter().filter(|u| u.role == crate::accounts::Role::Provider).collect();
    let name_of =
        |id: &str| users.iter().find(|u| u.id == id).map_or(id.to_owned(), |u| u.email.clone());
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
        h2 #channels { "Signal channels" }
        p.mute {
            "Channels or groups that get signals as they arrive, or later: a channel for one "
            "provider or some symbols (XAUUSD to a gold channel), a free channel an hour behind. "
            "Add the bot to the channel as an administrator, then its chat id here (a negative "
            "number such as -1001234567890). Each post links to the provider's public track record "
            "when the hub has a public_url."
        }
        table #channel-list {
            thead { tr {
                th { "Name" } th { "Chat" } th { "Provider" } th { "Symbols" } th { "Delay" }
                th { "State" } th {}
            } }
            tbody {
                @for c in &chans {
                    tr {
                        td { (c.title) }
                        td { code { (c.chat_id) } }
                        td { @match &c.provider_user_id { Some(p) => (name_of(p)), None => span.mute { "every provider" } } }
                        td { @if c.symbols.is_empty() { span.mute { "every symbol" } } @else { (c.symbols.join(", ")) } }
                        td.nowrap { @if c.delay_s == 0 { "none" } @else { (channels::delay_words(c.delay_s)) } }
                        td { @if c.enabled { span.tag.ok { "on" } } @else { span.tag { "off" } } }
                        td.nowrap {
                            form.inline method="post" action=(format!("/broadcasts/channels/{}/{}", c.id, if c.enabled { "off" } else { "on" })) {
                                input type="hidden" name="csrf" value=(signed.csrf);
                                button.link type="submit" { @if c.enabled { "Turn off" } @else { "Turn on" } }
                            }
                            " "
                            form.inline method="post" action=(format!("/broadcasts/channels/{}/delete", c.id)) {
                                input type="hidden" name="csrf" value=(signed.csrf);
                                button.link type="submit" { "Delete" }
                            }
                        }
                    }
                }
                @if chans.is_empty() { (fmt::none_row(7, "No channel.")) }
            }
        }
        form #channel method="post" action="/broadcasts/channels" {
            input type="hidden" name="csrf" value=(signed.csrf);
            label { "Name " input type="text" name="title" maxlength="100" required placeholder="Gold signals"; }
            label { "Chat id " input type="text" name="chat_id" required placeholder="-1001234567890"; }
            label { "Provider " select name="provider" {
                option value="" { "every provider" }
                @for p in &providers { option value=(p.id) { (p.email) } }
            } }
            label { "Symbols (optional) " input type="text" name="symbols" placeholder="XAUUSD, XAGUSD"; }
            label { "Delay, minutes " input type="number" name="delay_min" min="0" max="10080" value="0"; }
            button.primary type="submit" { "Add the channel" }
        }
        h2 #guides { "Guides" }
        p.mute { "What /guides lists, one button per guide (by position, then title); a press sends the guide. Plain text." }
        table #guide-list {
            thead { tr { th.num { "Position" } th { "Title" } th { "Text" } th {} } }
            tbody {
                @for g in &guide_list {
                    tr {
                        td.num { (g.position) }
                        td { (g.title) }
                        td { (g.body.chars().take(120).collect::<String>()) }
                        td { form.inline method="post" action=(format!("/broadcasts/guides/{}/delete", g.id)) {
                            input type="hidden" name="csrf" value=(signed.csrf);
                            button.link type="submit" { "Delete" }
                        } }
                    }
                }
                @if guide_list.is_empty() { (fmt::none_row(4, "No guide.")) }
            }
        }
        form #guide method="post" action="/broadcasts/guides" {
            input type="hidden" name="csrf" value=(signed.csrf);
            label { "Title " input type="text" name="title" maxlength="60" required placeholder="Connect MetaTrader 5"; }
            label { "Text " textarea name="body" rows="4" cols="60" maxlength="3500" required {} }
            label { "Position " input type="number" name="position" value="0"; }
            button.primary type="submit" { "Add the guide" }
        }
        h2 #tips { "Scheduled tips" }
        p.mute {
            "A text sent to a segment on a schedule in your time zone: daily 09:00, weekdays 08:30 or "
            "weekly mon 18:00. Each due time once; a tip missed while the hub was down is sent once when it is back."
        }
        table #tip-list {
            thead { tr { th { "Text" } th { "Schedule" } th { "To" } th { "Next (UTC)" } th { "Last sent (UTC)" } th.num { "Messages" } th {} } }
            tbody {
                @for t in &tip_list {
                    tr {
                        td { (t.body.chars().take(100).collect::<String>()) }
                        td.nowrap { (t.schedule) " " span.mute { (t.time_zone) } }
                        td { (t.segment) }
                        td.nowrap { @if t.enabled { (fmt::when(Some(t.next_run_at_ms))) } @else { span.tag.bad { "stopped" } } }
                        td.nowrap { (fmt::when(t.last_sent_at_ms)) }
                        td.num { (t.sent) }
                        td { form.inline method="post" action=(format!("/broadcasts/tips/{}/delete", t.id)) {
                            input type="hidden" name="csrf" value=(signed.csrf);
                            button.link type="submit" { "Delete" }
                        } }
                    }
                }
                @if tip_list.is_empty() { (fmt::none_row(7, "No tip.")) }
            }
        }
        form #tip method="post" action="/broadcasts/tips" {
            input type="hidden" name="csrf" value=(signed.csrf);
            label { "Text " textarea name="body" rows="3" cols="60" maxlength="3500" required {} }
            label { "Schedule " input type="text" name="schedule" required placeholder="weekdays 08:30"; }
            label { "Time zone " input type="text" name="time_zone" required value="UTC" placeholder="Europe/London"; }
            label { "To " select name="segment" {
                option value="all" { "every linked account" }
                option value="active" { "paying subscribers" }
                option value="trial" { "subscribers in a free trial" }
                option value="expired" { "former subscribers (no plan now)" }
                @for p in &plans { option value=(format!("plan:{}", p.id)) { "holders of " (p.name) } }
            } }
            button.primary type="submit" { "Schedule the tip" }
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
    let notice = q.sent.map(|n| Notice::Ok(format!("Queued for {n} account(s)."))).or_else(|| {
        q.channel.as_deref().and_then(|c| match c {
            "added" => Some(Notice::Ok("Channel added: new signals go to it.".into())),
            "on" => Some(Notice::Ok("Channel on.".into())),
            "off" => Some(Notice::Ok("Channel off: new signals no longer go to it.".into())),
            "deleted" => Some(Notice::Ok("Channel deleted.".into())),
            "guide" => Some(Notice::Ok("Guide added: /guides lists it.".into())),
            "tip" => Some(Notice::Ok("Tip scheduled.".into())),
            "removed" => Some(Notice::Ok("Deleted.".into())),
            _ => None,
        })
    });
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

/// After a form's action: 303 to `to` when it worked; the page again with the reason when the
/// input was refused; the error page when the hub failed.
async fn done_or_refused<T>(
    state: &AppState,
    signed: &super::session::Signed,
    outcome: Result<T, ApiError>,
    to: &str,
) -> Result<Response, PageError> {
    match outcome {
        Ok(_) => Ok((StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()),
        Err(e) if e.status().is_server_error() => Err(PageError(e)),
        Err(e) => render(state, signed, Some(&Notice::Err(e.to_string()))).await,
    }
}

/// `POST /broadcasts/channels`: adds a signal channel.
pub async fn add_channel(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Form(form): Form<ChannelForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let delay = form.delay_min.as_deref().map(str::trim).filter(|d| !d.is_empty()).unwrap_or("0");
    let Some(delay_s) = delay.parse::<i64>().ok().and_then(|m| m.checked_mul(60)) else {
        let n = Notice::Err("the delay is a whole number of minutes".into());
        return render(&state, &signed, Some(&n)).await;
    };
    let new = NewChannel {
        chat_id: form.chat_id.unwrap_or_default(),
        title: form.title.unwrap_or_default(),
        provider_user_id: form.provider.unwrap_or_default(),
        symbols: form.symbols.unwrap_or_default(),
        delay_s,
    };
    let added = channels::create(&state, &signed.user.id, &new, &request_id).await;
    done_or_refused(&state, &signed, added, "/broadcasts?channel=added#channels").await
}

/// `POST /broadcasts/channels/{id}/{on|off|delete}`.
pub async fn channel_action(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let actor = &signed.user.id;
    let (done, outcome) = match action.as_str() {
        "on" => ("on", channels::set_enabled(&state, actor, &id, true, &request_id).await),
        "off" => ("off", channels::set_enabled(&state, actor, &id, false, &request_id).await),
        "delete" => ("deleted", channels::delete(&state, actor, &id, &request_id).await),
        _ => return Err(PageError(ApiError::NotFound(format!("no action {action}")))),
    };
    if !outcome.map_err(PageError)? {
        return Err(PageError(ApiError::NotFound(format!("no channel {id}"))));
    }
    let to = format!("/broadcasts?channel={done}#channels");
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
}

/// `POST /broadcasts/guides`: adds a guide.
pub async fn add_guide(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Form(form): Form<GuideForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let pos = form.position.as_deref().map(str::trim).filter(|p| !p.is_empty()).unwrap_or("0");
    let Ok(position) = pos.parse::<i64>() else {
        let n = Notice::Err("the position is a whole number".into());
        return render(&state, &signed, Some(&n)).await;
    };
    let (title, body) = (form.title.unwrap_or_default(), form.body.unwrap_or_default());
    let added = guides::add(&state, &signed.user.id, &title, &body, position, &request_id).await;
    done_or_refused(&state, &signed, added, "/broadcasts?channel=guide#guides").await
}

/// `POST /broadcasts/tips`: schedules a tip.
pub async fn add_tip(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Form(form): Form<TipForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let added = guides::add_tip(
        &state,
        &signed.user.id,
        &form.body.unwrap_or_default(),
        &form.schedule.unwrap_or_default(),
        &form.time_zone.unwrap_or_default(),
        &form.segment.unwrap_or_default(),
        &request_id,
    )
    .await;
    done_or_refused(&state, &signed, added, "/broadcasts?channel=tip#tips").await
}

/// `POST /broadcasts/{guides|tips}/{id}/delete`.
pub async fn delete_content(
    State(state): State<AppState>,
    Console(signed): Console,
    RequestId(request_id): RequestId,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    let done = match kind.as_str() {
        "guides" => guides::delete(&state, &signed.user.id, &id, &request_id).await,
        "tips" => guides::delete_tip(&state, &signed.user.id, &id, &request_id).await,
        _ => return Err(PageError(ApiError::NotFound(format!("no {kind}")))),
    };
    if !done.map_err(PageError)? {
        return Err(PageError(ApiError::NotFound(format!("no such item {id}"))));
    }
    let to = format!("/broadcasts?channel=removed#{kind}");
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
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
