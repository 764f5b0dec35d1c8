//! `tradecast-protocol`: the contract between every node, the hub, the EA link and any future
//! implementation.
//!
//! It is pure: no sockets, no clocks, no randomness it was not handed, no tokio, no `std::fs`.
//! Drivers in the node and the hub feed it bytes, time and random numbers; tests feed it a
//! seeded simulator.

pub mod bars;
pub mod ea;
pub mod link_auth;
pub mod trade;
