//! `/`: the console's overview for a signed-in owner or admin (without a session, the login
//! form in its place): enabled accounts by role, devices (enrolled and connected), signals
//! received today (UTC) with their fan-out (deliveries acknowledged, p99 from queueing to the
//! node's ack), active plans and the undelivered fan-out, subscriptions by state, MRR (the
//! `/metrics` definition, [`crate::scrape::mrr`]), new and churned this month, money taken, and
//! the alarms that want a person (quarantined streams, payments failing, dead or overdue outbox
//! messages, affiliate commissions held for review, failing jobs), each read through the same domain function the API, `/metrics` or
//! the account rules use.
//!
//! The figures stay live: `GET /events/overview` (server-sent events, the same session) sends
//! the figures' HTML again whenever they change (checked every [`LIVE_EVERY`]), and
//! `assets/console.js` swaps it in.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use rust_decimal::Decimal;
use sqlx::Row;

use super::PageError;
use super::layout::{self, Frame};
use super::session::Console;
use crate::accounts::{self, Role};
use crate::billing::ledger::Status;
use crate::db::{Db, DbError};
use crate::state::AppState;

const DAY_MS: i64 = 86_400_000;

/// How often the live overview looks for changed figures.
pub const LIVE_EVERY: Duration = Duration::from_secs(5);

/// An outbox message queued this long past its due time counts as overdue (an alarm).
pub const OUTBOX_OVERDUE_MS: i64 = 5 * 60_000;

/// Today's fan-out: what was queued for devices since 00:00 UTC and how fast it was acked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FanoutToday {
    /// Deliveries queued today.
    pub queued: i64,
    /// Of those, acknowledged by their device.
    pub delivered: i64,
    /// p99 of queueing → the node's ack over the delivered ones, ms (`None` when none).
    pub p99_ms: Option<i64>,
}

/// Something that wants a person, with the page that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// Stable id (`fig-alarm-<id>` on the page).
    pub id: &'static str,
    /// How many.
    pub n: i64,
    /// What it is, in words.
    pub what: &'static str,
    /// Where to look.
    pub href: &'static str,
}

#[cfg(test)]
mod tests {
    use super::month_start_ms;

    #[test]
    fn a_month_starts_on_the_first_at_midnight_utc() {
        // 2026-12-06T15:04:05.678Z → 2026-12-01T00:00:00Z.
        assert_eq!(month_start_ms(1_796_569_445_678), 1_796_083_200_000);
        assert_eq!(month_start_ms(1_796_083_200_000), 1_796_083_200_000);
        assert_eq!(month_start_ms(0), 0);
    }
}

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
    /// Subscriptions per state.
    pub by_status: Vec<(Status, i64)>,
    /// MRR in `billing.currency` (major units, exact), and the subscriptions left out of it
    /// (a currency with no rate).
    pub mrr: (Decimal, i64),
    /// The account currency MRR is in.
    pub currency: String,
    /// Subscriptions started since the 1st of this month (UTC).
    pub new_this_month: i64,
    /// Subscriptions that ended (expired or refunded) since the 1st of this month (UTC).
    pub churned_this_month: i64,
    /// Today's fan-out.
    pub fanout_today: FanoutToday,
    /// The alarms with a count above zero.
    pub alarms: Vec<Alarm>,
}

/// 00:00 UTC of the 1st of `now_ms`'s month.
pub fn month_start_ms(now_ms: i64) -> i64 {
    let utc = jiff::tz::Offset::UTC;
    let ts = jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let first =
        utc.to_datetime(ts).first_of_month().date().to_datetime(jiff::civil::Time::midnight());
    utc.to_timestamp(first).map_or(now_ms - now_ms.rem_euclid(DAY_MS), |t| t.as_millisecond())
}

async fn count(db: &Db, sql: &'static str, binds: &[i64]) -> Result<i64, DbError> {
    let mut q = sqlx::query_scalar::<_, i64>(sql);
    for b in binds {
        q = q.bind(*b);
    }
    Ok(q.fetch_one(db.pool()).await?)
}

/// Today's fan-out at `now_ms`: counts, and the p99 delivery delay read as one row at its rank.
pub async fn fanout_today(db: &Db, now_ms: i64) -> Result<FanoutToday, DbError> {
    let day_start = now_ms - now_ms.rem_euclid(DAY_MS);
    let row = sqlx::query(
        "SELECT COUNT(*), COUNT(delivered_at_ms) FROM fanout_queue WHERE enqueued_at_ms >= $1",
    )
    .bind(day_start)
    .fetch_one(db.pool())
    .await?;
    let (queued, delivered): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    let p99_ms = if delivered == 0 {
        None
    } else {
        // The nearest-rank p99: the ceil(0.99 n)-th smallest delay.
        let rank = ((delivered * 99 + 99) / 100).max(1);
        sqlx::query_scalar::<_, i64>(
            "SELECT delivered_at_ms - enqueued_at_ms FROM fanout_queue              WHERE enqueued_at_ms >= $1 AND delivered_at_ms IS NOT NULL              ORDER BY delivered_at_ms - enqueued_at_ms LIMIT 1 OFFSET $2",
        )
        .bind(day_start)
        .bind(rank - 1)
        .fetch_optional(db.pool())
        .await?
    };
    Ok(FanoutToday { queued, delivered, p99_ms })
}

/// A signal not delivered to a device connected for longer than this is fan-out lag (the target
/// is 150 ms; a minute means something is stuck).
pub const FANOUT_LAG_MS: i64 = 60_000;

/// The alarms at `now_ms`, only those above zero.
pub async fn alarms(state: &AppState, now_ms: i64) -> Result<Vec<Alarm>, DbError> {
    let db = &state.db;
    let quarantined = crate::quic::store::quarantined(db)
        .await
        .map_err(|e| DbError::Corrupt(format!("quarantine list: {e}")))?;
    let all = [
        Alarm {
            id: "quarantined",
            n: i64::try_from(quarantined.len()).unwrap_or(i64::MAX),
            what: "streams quarantined after an equivocation",
            href: "/providers#quarantine",
        },
        Alarm {
            id: "past-due",
            n: count(db, "SELECT COUNT(*) FROM subscriptions WHERE status = 'past_due'", &[])
                .await?,
            what: "subscriptions with a failed payment, in their grace period",
            href: "/subscribers",
        },
        Alarm {
            id: "outbox-dead",
            n: count(db, "SELECT COUNT(*) FROM outbox WHERE state = 'dead'", &[]).await?,
            what: "outbox messages that gave up (retry or discard them)",
            href: "/outbox?state=dead",
        },
        Alarm {
            id: "outbox-overdue",
            n: count(
                db,
                "SELECT COUNT(*) FROM outbox WHERE state IN ('queued', 'sending')                  AND not_before_ms < $1",
                &[now_ms - OUTBOX_OVERDUE_MS],
            )
            .await?,
            what: "outbox messages due more than 5 minutes ago and not sent",
            href: "/outbox",
        },
        Alarm {
            id: "held-commissions",
            n: count(db, "SELECT COUNT(*) FROM affiliate_commissions WHERE status = 'held'", &[])
                .await?,
            what: "affiliate commissions held for review (self-referral, bursts, refund rate)",
            href: "/affiliates#holds",
        },
        Alarm {
            id: "fanout-lag",
            n: count(
                db,
                "SELECT COUNT(DISTINCT f.device_id) FROM fanout_queue f \
                 JOIN device_presence p ON p.device_id = f.device_id \
                 WHERE f.delivered_at_ms IS NULL AND f.enqueued_at_ms < $1 \
                 AND p.online = 1 AND p.since_ms < $1",
                &[now_ms - FANOUT_LAG_MS],
            )
            .await?,
            what: "connected subscriber devices a signal has not reached for over a minute (fan-out lag)",
            href: "/operations",
        },
        Alarm {
            id: "jobs-failed",
            n: count(db, "SELECT COUNT(*) FROM jobs WHERE last_outcome = 'failed'", &[]).await?,
            what: "background jobs whose last run failed",
            href: "/outbox#jobs",
        },
    ];
    Ok(all.into_iter().filter(|a| a.n > 0).collect())
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
        by_status: crate::scrape::subscriptions_by_status(&state.db).await?,
        mrr: crate::scrape::mrr(
            &crate::scrape::price_groups(&state.db).await?,
            &state.config.billing.currency,
            state.config.billing.xtr_rate,
        ),
        currency: state.config.billing.currency.clone(),
        new_this_month: count(
            &state.db,
            "SELECT COUNT(*) FROM subscriptions WHERE created_at_ms >= $1",
            &[month_start_ms(now_ms)],
        )
        .await?,
        churned_this_month: count(
            &state.db,
            "SELECT COUNT(*) FROM subscriptions WHERE status IN ('expired', 'refunded') \
             AND COALESCE(ended_at_ms, updated_at_ms) >= $1",
            &[month_start_ms(now_ms)],
        )
        .await?,
        fanout_today: fanout_today(&state.db, now_ms).await?,
        alarms: alarms(state, now_ms).await?,
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

fn status_label(s: Status) -> &'static str {
    match s {
        Status::Trialing => "Trialing",
        Status::Active => "Active",
        Status::PastDue => "Past due",
        Status::Canceled => "Cancelled, paid to period end",
        Status::Expired => "Expired",
        Status::Refunded => "Refunded",
        Status::Incomplete => "Incomplete",
    }
}

/// The figures' HTML: the page's body, and what the live stream sends again.
pub fn figures_html(f: &Figures) -> Markup {
    let fo = &f.fanout_today;
    html! {
        h2 { "Alarms" }
        @if f.alarms.is_empty() {
            p.mute #alarms-none { "Nothing needs you." }
        } @else {
            ul.alarms #alarms {
                @for a in &f.alarms {
                    li { span.tag.bad id=(format!("fig-alarm-{}", a.id)) { (a.n) } " " a href=(a.href) { (a.what) } }
                }
            }
        }
        h2 { "Accounts" }
        div.cards {
            @for (role, n) in &f.accounts {
                (card(&format!("accounts-{}", role.as_str()), plural(*role), *n, "enabled accounts"))
            }
        }
        h2 { "Signals and devices" }
        div.cards {
            (card("signals-today", "Signals today", f.signals_today, "received since 00:00 UTC"))
            div.card {
                div.k { "Fan-out today" }
                span.v #fig-fanout-delivered { (fo.delivered) " / " (fo.queued) }
                div.hint { "deliveries acknowledged by the nodes / queued" }
            }
            div.card {
                div.k { "Fan-out p99" }
                span.v #fig-fanout-p99 { @match fo.p99_ms { Some(ms) => { (ms) " ms" }, None => "—" } }
                div.hint { "queued → the node's durable ack, today" }
            }
            (card("devices-active", "Devices", f.devices_active, "enrolled, not revoked"))
            (card("devices-connected", "Connected", f.devices_connected, "live QUIC sessions on this hub instance"))
            (card("fanout-queued", "Fan-out queued", f.fanout_queued, "deliveries to devices not yet acknowledged"))
            (card("plans-active", "Plans", f.plans_active, "offered, not archived"))
        }
        h2 { "Billing" }
        div.cards {
            div.card {
                div.k { "MRR" }
                span.v #fig-mrr { (format!("{:.2}", f.mrr.0)) " " (f.currency) }
                div.hint {
                    "monthly recurring revenue, 30-day normalised, Stars at billing.xtr_rate"
                    @if f.mrr.1 > 0 { "; " (f.mrr.1) " in a currency without a rate left out" }
                }
            }
            (card("subscriptions-live", "Subscriptions", f.subscriptions_live, "paid up or in their grace period"))
            (card("new-month", "New this month", f.new_this_month, "subscriptions started since the 1st (UTC)"))
            (card("churned-month", "Churned this month", f.churned_this_month, "subscriptions expired or refunded since the 1st"))
            @for (currency, minor) in &f.revenue {
                div.card {
                    div.k { "Revenue " (currency) }
                    span.v id=(format!("fig-revenue-{}", currency.to_ascii_lowercase())) { (super::fmt::money(*minor, currency)) }
                    div.hint { "paid minus refunded and charged back, all time" }
                }
            }
        }
        table #by-status {
            thead { tr { th { "Subscription state" } th.num { "Subscriptions" } } }
            tbody {
                @for (s, n) in &f.by_status {
                    tr { td { (status_label(*s)) } td.num id=(format!("fig-status-{}", s.as_str())) { (n) } }
                }
            }
        }
    }
}

/// `GET /`.
pub async fn show(
    State(state): State<AppState>,
    Console(signed): Console,
) -> Result<Response, PageError> {
    let f = figures(&state, state.now_ms()).await?;
    let body = html! {
        div #figures data-live="/events/overview" { (figures_html(&f)) }
        script src=(super::assets::url("console.js")) defer {}
    };
    let frame = Frame { signed: &signed, title: "Overview", active: "/", notice: None };
    Ok(layout::html(layout::page(&frame, body)))
}

/// `GET /events/overview`: the figures' HTML as a server-sent event `figures` at once and
/// whenever it changes (checked every [`LIVE_EVERY`]); the session is checked on connect and
/// again at each check, so a signed-out or demoted account's stream ends.
pub async fn live(State(state): State<AppState>, Console(signed): Console) -> Response {
    let stream = futures::stream::unfold(
        (state, signed, None::<String>, true),
        |(state, signed, last, first)| async move {
            loop {
                if !first {
                    tokio::time::sleep(LIVE_EVERY).await;
                }
                if !super::session::still_console(&state, &signed).await.unwrap_or(false) {
                    return None;
                }
                let html = match figures(&state, state.now_ms()).await {
                    Ok(f) => figures_html(&f).into_string(),
                    Err(e) => {
                        tracing::warn!(error = %e, "overview: figures unavailable");
                        if first {
                            return None;
                        }
                        continue;
                    }
                };
                if last.as_deref() != Some(html.as_str()) {
                    let event = Event::default().event("figures").data(html.clone());
                    return Some((Ok::<_, Infallible>(event), (state, signed, Some(html), false)));
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
