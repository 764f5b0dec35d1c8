//! Renewal reminders: `billing.reminder_days` (3) before a subscription's paid period or trial
//! ends, its holder is told on Telegram (when linked, at their "Billing" level) what happens then —
//! a renewal and its price (Stripe), a renewal in Stars (keep enough in the balance), the end of a
//! cancelled plan (renew from the account page), the first payment after a trial. The hourly
//! `billing.renewal_reminders` job queues each reminder once per period (outbox dedupe key
//! `tg:remind:<subscription>:<period end>`), so it runs as often as it likes.

use super::ledger::{self, Door, Status};
use crate::db::DbError;
use crate::error::ApiError;
use crate::state::AppState;
use crate::telegram::html::esc;
use crate::telegram::notify::{self, Event};

/// A reminder's text for `s` on `plan`, `None` when nothing is about to happen.
pub fn text(
    s: &ledger::Subscription,
    plan: &crate::plans::Plan,
    account_url: Option<&str>,
) -> Option<String> {
    let day = crate::telegram::fmt_day(s.current_period_end_ms);
    let name = esc(&plan.name);
    let price = esc(&crate::ui::fmt::money(plan.price_minor, &plan.currency));
    let manage =
        account_url.map(|u| format!("\n<a href=\"{0}\">{0}</a>", esc(u))).unwrap_or_default();
    Some(match (s.status, s.door) {
        (Status::Trialing, _) => format!(
            "🔔 Your free trial of <b>{name}</b> ends {day}: the first payment of {price} is then due.{manage}"
        ),
        (Status::Active, Door::TelegramStars) if !s.cancel_at_period_end => format!(
            "🔔 <b>{name}</b> renews {day} for {price} through Telegram: keep enough Stars in your balance."
        ),
        (Status::Active, _) if !s.cancel_at_period_end => {
            format!("🔔 <b>{name}</b> renews {day} for {price}.{manage}")
        }
        (Status::Active | Status::Canceled, _) => format!(
            "🔔 <b>{name}</b> ends {day}: after that no new signals reach your devices (your open trades stay under your app's own rules). Renew from your account page.{manage}"
        ),
        _ => return None,
    })
}

/// Queues the reminders due at now; how many were new.
pub async fn remind(state: &AppState) -> Result<usize, ApiError> {
    let days = i64::from(state.config.billing.reminder_days);
    if days == 0 {
        return Ok(0);
    }
    let now = state.now_ms();
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM subscriptions WHERE status IN ('trialing', 'active', 'canceled') \
         AND current_period_end_ms > $1 AND current_period_end_ms <= $2 ORDER BY id",
    )
    .bind(now)
    .bind(now.saturating_add(days.saturating_mul(86_400_000)))
    .fetch_all(state.db.pool())
    .await
    .map_err(DbError::from)?;
    let account_url = state
        .config
        .public_url
        .as_ref()
        .map(|u| format!("{}/account", u.as_str().trim_end_matches('/')));
    let mut queued = 0;
    for id in ids {
        let Some(s) = ledger::subscription(&state.db, &id).await? else { continue };
        let Some(plan) = crate::plans::by_id(&state.db, &s.plan_id).await? else { continue };
        let Some(text) = text(&s, &plan, account_url.as_deref()) else { continue };
        let mut tx = state.db.begin_write().await?;
        let dedupe = format!("tg:remind:{}:{}", s.id, s.current_period_end_ms);
        let cause = format!("reminder:{}", s.id);
        if notify::tell_in(&mut tx, &s.account_id, Event::Billing, text, &dedupe, &cause, now)
            .await?
        {
            queued += 1;
        }
        tx.commit().await.map_err(DbError::from)?;
    }
    if queued > 0 {
        crate::outbox::wake(state);
    }
    Ok(queued)
}

/// The hourly [`remind`].
#[derive(Debug, Default)]
pub struct RenewalReminders;

impl crate::jobs::Job for RenewalReminders {
    fn run<'a>(
        &'a self,
        state: &'a AppState,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if !state.telegram.is_on() {
                return Ok("skipped: Telegram is off".into());
            }
            let n = remind(state).await.map_err(|e| e.to_string())?;
            Ok(format!("{n} renewal reminders queued"))
        })
    }
}
