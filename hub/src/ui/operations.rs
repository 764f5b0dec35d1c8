//! `/operations`: the hub instance answering this page: its version and uptime, the database
//! backend with its migration version (applied and embedded, `Db::migration_versions`, what
//! `/ready` checks), and the QUIC sessions connected to this instance (`quic::Peers`, what
//! `/metrics` counts) with their device and account, and a summary of the outbox and the jobs
//! (messages waiting and dead letters, jobs and their failures) linking to `/outbox`.

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::PageError;
use super::fmt;
use super::layout::{self, Frame};
use super::session::Console;
use crate::db::Backend;
use crate::state::AppState;

fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d} d {h} h {m} min")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min {s} s")
    }
}

/// `GET /operations`.
pub async fn show(
    State(state): State<AppState>,
    Console(signed): Console,
) -> Result<Response, PageError> {
    let now = state.now_ms();
    let (applied, embedded) = state.db.migration_versions().await?;
    let mut sessions = Vec::new();
    for id in state.quic_peers.connected() {
        let text = id.to_text();
        let device = crate::devices::by_id(&state.db, &text).await?;
        let owner = match &device {
            Some(d) => crate::accounts::user_by_id(&state.db, &d.user_id).await?,
            None => None,
        };
        sessions.push((text, device, owner));
    }
    sessions.sort_by(|a, b| a.0.cmp(&b.0));
    let mut waiting = 0;
    let mut dead = 0;
    for (_, st, n) in crate::outbox::counts(&state.db).await? {
        match st.as_str() {
            "queued" | "sending" => waiting += n,
            "dead" => dead += n,
            _ => {}
        }
    }
    let jobs = crate::jobs::list(&state.db).await?;
    let failing = jobs.iter().filter(|j| j.last_outcome.as_deref() == Some("failed")).count();
    let backend = match state.db.backend() {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    let body = html! {
        section {
            dl.facts {
                dt { "Hub version" } dd #version { (env!("CARGO_PKG_VERSION")) }
                dt { "Started (UTC)" } dd { (fmt::when(Some(state.started_at_ms))) }
                dt { "Uptime" } dd #uptime { (duration(now - state.started_at_ms)) }
                dt { "Database" } dd #backend { (backend) }
                dt { "Migrations" } dd #migrations {
                    "applied " (applied.map_or("none".to_string(), |v| format!("{v:04}")))
                    ", this binary's " (format!("{embedded:04}")) " "
                    @if applied == Some(embedded) { span.tag.ok { "up to date" } }
                    @else { span.tag.bad { "not migrated" } }
                }
                dt { "Hub device id" } dd { code { (state.hub_identity.device_id().to_text()) } }
            }
        }
        h2 { "QUIC sessions on this instance" }
        table #sessions {
            thead { tr { th { "Device" } th { "Name" } th { "Account" } } }
            tbody {
                @for (id, device, owner) in &sessions {
                    tr {
                        td { code { (id) } }
                        td { (device.as_ref().map_or("—", |d| d.name.as_str())) }
                        td {
                            @if let Some(u) = owner { a href=(format!("/subscribers/{}", u.id)) { (u.email) } " " span.tag { (u.role.as_str()) } }
                            @else { "—" }
                        }
                    }
                }
                @if sessions.is_empty() { (fmt::none_row(3, "No node is connected to this instance.")) }
            }
        }
        p.mute { "Other hub instances hold their own sessions; each instance's page shows its own." }
        h2 { "Outbox and jobs" }
        p #jobs {
            (waiting) " message(s) waiting to be sent, "
            @if dead > 0 { span.tag.bad { (dead) " dead letter(s)" } } @else { "no dead letter" }
            "; " (jobs.len()) " job(s)"
            @if failing > 0 { ", " span.tag.bad { (failing) " failed at their last run" } }
            ". " a href="/outbox" { "Outbox and jobs" }
        }
    };
    let frame = Frame { signed: &signed, title: "Operations", active: "/operations", notice: None };
    Ok(layout::html(layout::page(&frame, body)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_plainly() {
        assert_eq!(super::duration(61_000), "1 min 1 s");
        assert_eq!(super::duration(3_600_000 * 25 + 60_000), "1 d 1 h 1 min");
    }
}
