//! `tradecast-standins`: strict local stand-ins for the outside services the hub calls, for
//! tests and the demo. [`stripe`] is Stripe's API, Checkout and Portal pages, test clock and
//! webhooks; [`telegram`] is the Telegram Bot API with a simulated world of users, chats and
//! Stars payments.
//!
//! This crate never depends on the hub: the hub has it as a dev-dependency, the demo as a
//! dependency.

// serde_json's json! of whole Stripe objects nests deeper than the default limit.
#![recursion_limit = "256"]

pub mod stripe;
pub mod telegram;
