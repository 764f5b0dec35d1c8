//! `/`: the console's overview for a signed-in owner or admin (without a session, the login
//! form in its place): enabled accounts by role, devices (enrolled and connected), signals
//! received today (UTC), active plans and the undelivered fan-out, each read through the same
//! domain function the API, `/metrics` or the account rules use.

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::PageError;
use super::layout::{self, Frame};
use super::session::Console;
use crate::accounts::{self, Role};
use crate::db::DbError;
use crate::state::AppState;

const DAY_MS: i64 = 86_400_000;

/// The overview's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    /// Enabled accounts per role, in [`ROLES`] order.
    pub accounts: Vec<(Role, i64)>,
    /// Enrolled, unrevoked devices.
    pub devices_active: i64,
    /// Devices with a live QUIC connection to this hub instance.
    pub devices_connected: i64,
    /// Signals received since 00:00 UTC.
    pub signals_today: i64,
    /// Plans not archived.
    pub plans_active: i64,
    /// Fan-out entries not yet acknowledged by their device.
    pub fanout_queued: i64,
    /// Subscriptions paying now (trialing, active, past due in grace, cancelled to period end).
    pub subscriptions_live: i64,
    /// Money taken, by currency, minor units (paid minus refunded, every invoice).
    pub revenue: Vec<(String, i64)>,
}

/// The roles, as the overview lists them.
pub const ROLES: [Role; 4] = [Role::Owner, Role::Admin, Role::Provider, Role::Subscriber];

/// Reads the figures at `now_ms`.
pub async fn figures(state: &AppState, now_ms: i64) -> Result<Figures, DbError> {
    let mut accounts = Vec::with_capacity(ROLES.len());
    for role in ROLES {
        accounts.push((role, accounts::count_role(&state.db, role).await?));
    }
    let gauges = crate::devices::gauges(&state.db, now_ms).await?;
    let day_start = now_ms - now_ms.rem_euclid(DAY_MS);
    let plans = crate::plans::list(&state.db, None, false).await?;
    let subscriptions_live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM subscriptions WHERE covered_until_ms > $1 \
         AND status IN ('trialing', 'active', 'past_due', 'canceled')",
    )
    .bind(now_ms)
    .fetch_one(state.db.pool())
    .await?;
    Ok(Figures {
        accounts,
        devices_active: gauges.devices_active,
        devices_connected: i64::try_from(state.quic_peers.connected().len()).unwrap_or(i64::MAX),
        signals_today: crate::signals::count_received_since(&state.db, day_start).await?,
        plans_active: i64::try_from(plans.len()).unwrap_or(i64::MAX),
        fanout_queued: gauges.fanout_queued,
        subscriptions_live,
        revenue: crate::billing::ledger::revenue(&state.db).await?,
    })
}

fn card(id: &str, label: &str, value: i64, hint: &str) -> maud::Markup {
    html! {
        div.card {
            div.k { (label) }
            span.v id=(format!("fig-{id}")) { (value) }
            div.hint { (hint) }
        }
    }
}

fn plural(role: Role) -> &'static str {
    match role {
        Role::Owner => "Owners",
        Role::Admin => "Admins",
        Role::Provider => "Providers",
        Role::Subscriber => "Subscribers",
    }
}

/// `GET /`.
pub async fn show(
    State(state): State<AppState>,
    Console(signed): Console,
) -> Result<Response, PageError> {
    let f = figures(&state, state.now_ms()).await?;
    let body = html! {
        h2 { "Accounts" }
        div.cards {
            @for (role, n) in &f.accounts {
                (card(&format!("accounts-{}", role.as_str()), plural(*role), *n, "enabled accounts"))
            }
        }
        h2 { "Signals and devices" }
        div.cards {
            (card("signals-today", "Signals today", f.signals_today, "received since 00:00 UTC"))
            (card("devices-active", "Devices", f.devices_active, "enrolled, not revoked"))
            (card("devices-connected", "Connected", f.devices_connected, "live QUIC sessions on this hub instance"))
            (card("fanout-queued", "Fan-out queued", f.fanout_queued, "deliveries to devices not yet acknowledged"))
            (card("plans-active", "Plans", f.plans_active, "offered, not archived"))
        }
        h2 { "Billing" }
        div.cards {
            (card("subscriptions-live", "Subscriptions", f.subscriptions_live, "paid up or in their grace period"))
            @for (currency, minor) in &f.revenue {
                div.card {
                    div.k { "Revenue " (currency) }
                    span.v id=(format!("fig-revenue-{}", currency.to_ascii_lowercase())) { (super::fmt::money(*minor, currency)) }
                    div.hint { "paid minus refunded, all time" }
                }
            }
        }
    };
    let frame = Frame { signed: &signed, title: "Overview", active: "/", notice: None };
    Ok(layout::html(layout::page(&frame, body)))
}
