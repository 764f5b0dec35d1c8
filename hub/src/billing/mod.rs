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
