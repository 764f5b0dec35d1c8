//! `tradecast`: the root package — the one-command local demo ([`demo`]), the seeded node +
//! terminal simulation ([`node_sim`]) and, in `tests/`, the cross-crate end-to-end tests. The only crate that may depend on the hub, the node and the
//! simulated terminal together.

pub mod demo;
pub mod lossy;
pub mod node_sim;
pub mod procs;
