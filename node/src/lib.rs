//! `tradecast-node`: the product on every trader's machine.
//!
//! It owns the trader's local state and every decision about the trader's account. It depends on
//! `tradecast-protocol` only among our crates: never on the hub, never on the simulated terminal.
//!
//! Modules so far: [`strategy`] (Fib-RSI v1, streaming and batch), [`orders`] (orders from
//! signals), [`backtest`] (trade simulation and summary), [`report`] (HTML/SVG), [`cli`] (the
//! command line), [`timeframe`], [`synthetic`] (generated bars).

pub mod backtest;
pub mod cli;
pub mod orders;
pub mod report;
pub mod strategy;
pub mod synthetic;
pub mod timeframe;
