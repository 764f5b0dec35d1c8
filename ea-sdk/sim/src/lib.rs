//! `tradecast-sim`: MT5's stand-in. A simulated terminal and broker that drives a node over the
//! real EA link exactly as the MQL5 Expert Advisor does. Depends on `tradecast-protocol` only.
//!
//! - [`broker`]: the pure broker model (symbols, one price stream, accounts, retcodes).
//! - [`feed`]: the price stream: bars from any file the protocol's bar reader takes, or a seeded
//!   generator, with a spread model.
//! - [`link`]: the signed HTTP client of the EA link (both signatures), and the [`link::Transport`]
//!   a terminal speaks over (that client, or an in-process one on a simulated clock).
//! - [`terminal`]: one terminal (one account) speaking the link as the MQL5 EA does, with fault
//!   controls (crash and restart, silence, forced retcodes, requotes, timeouts, partial fills).
//! - [`replay`]: feeds bars into the broker and runs terminals, at `--speed max` in lockstep.
//! - [`conformance`]: the suite any node implementation must pass.
//!
//! It never depends on `tradecast-node` or `tradecast-hub`.

pub mod app;
pub mod broker;
pub mod conformance;
pub mod feed;
pub mod link;
pub mod replay;
pub mod retcode;
pub mod terminal;
