//! Billing: the catalog, sign-up, subscriptions and their ledger, and the two doors money comes
//! through (Stripe, Telegram Stars). A payment becomes rows of one ledger; the fan-out reads only
//! the [`crate::entitlements`] the ledger derives, so a lapsed payment stops new signals and never
//! closes a trader's open copies.
//!
//! Outside services are events, never truth: a webhook is verified, stored by its id in the
//! transaction that applies it (a duplicate is a no-op), and used as a trigger to re-read the
//! state from the service, so duplicated, reordered and missed events converge.

pub mod api;
pub mod ledger;
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
