//! Billing: the catalog, sign-up, subscriptions and their ledger, and the two doors money comes
//! through (Stripe, Telegram Stars). A payment becomes rows of one ledger; the fan-out reads only
//! the [`crate::entitlements`] the ledger derives, so a lapsed payment stops new signals and never
//! closes a trader's open copies.
//!
//! Outside services are events, never truth: a webhook is verified, stored by its id in the
//! transaction that applies it (a duplicate is a no-op), and used as a trigger to re-read the
//! state from the service, so duplicated, reordered and missed events converge.

pub mod api;
pub mod device_api;
pub mod ledger;
pub mod reminders;
pub mod stars_door;
pub mod stripe;
pub mod stripe_door;

/// Billing's share of the hub's state: the doors as configured.
#[derive(Debug, Clone, Default)]
pub struct Billing {
    /// Stripe (off without `stripe_secret_key`; its webhook check without
    /// `stripe_webhook_secret`).
    pub stripe: stripe_door::StripeDoor,
}

impl Billing {
    /// The doors for `config` and the integration secrets.
    pub fn new(
        config: &crate::config::Config,
        secrets: &crate::secrets::IntegrationSecrets,
    ) -> Result<Billing, stripe::StripeError> {
        Ok(Billing { stripe: stripe_door::StripeDoor::new(config, secrets)? })
    }
}

/// The nightly reconciliation: every Stripe customer re-read and the ledger converged on what
/// Stripe says; the differences it had to correct are its summary (the console's jobs table).
#[derive(Debug, Default)]
pub struct StripeReconcile;

impl crate::jobs::Job for StripeReconcile {
    fn run<'a>(
        &'a self,
        state: &'a crate::state::AppState,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if !state.billing.stripe.is_on() {
                return Ok("skipped: Stripe is off".into());
            }
            let r = stripe_door::reconcile_all(state).await.map_err(|e| e.to_string())?;
            if r.changed > 0 {
                tracing::warn!(
                    changed = r.changed,
                    granted = r.granted,
                    ended = r.ended,
                    "stripe reconciliation corrected the ledger"
                );
            }
            let summary = format!(
                "{} customers re-read: {} subscriptions corrected ({} intervals opened, {} ended), {} not reachable",
                r.customers, r.changed, r.granted, r.ended, r.failed
            );
            if r.failed > 0 { Err(summary) } else { Ok(summary) }
        })
    }
}

/// Registers billing's jobs: the nightly Stripe reconciliation at 03:17 UTC, the Stars one at
/// 03:41 UTC, the hourly renewal reminders, and the hourly end of Stars subscriptions that were
/// not renewed.
pub fn register_jobs(jobs: &mut crate::jobs::Scheduler) {
    let daily = crate::jobs::Schedule::DailyAt { hour: 3, minute: 17 };
    if let Err(e) =
        jobs.register("billing.stripe_reconcile", daily, std::sync::Arc::new(StripeReconcile))
    {
        tracing::error!(error = %e, "billing jobs not registered");
    }
    let nightly = crate::jobs::Schedule::DailyAt { hour: 3, minute: 41 };
    if let Err(e) = jobs.register(
        "billing.stars_reconcile",
        nightly,
        std::sync::Arc::new(stars_door::StarsReconcile),
    ) {
        tracing::error!(error = %e, "billing jobs not registered");
    }
    let hourly = crate::jobs::Schedule::Every(std::time::Duration::from_secs(3600));
    if let Err(e) = jobs.register(
        "billing.renewal_reminders",
        hourly,
        std::sync::Arc::new(reminders::RenewalReminders),
    ) {
        tracing::error!(error = %e, "billing jobs not registered");
    }
    if let Err(e) =
        jobs.register("billing.stars_expiry", hourly, std::sync::Arc::new(stars_door::StarsExpiry))
    {
        tracing::error!(error = %e, "billing jobs not registered");
    }
}
