//! `tradecast-node`: the product on every trader's machine.
//!
//! It owns the trader's local state and every decision about the trader's account. It depends on
//! `tradecast-protocol` only among our crates: never on the hub, never on the simulated terminal.
//!
//! Modules so far: [`strategy`] (Fib-RSI v1, streaming and batch).

pub mod orders;
pub mod strategy;
pub mod synthetic;
