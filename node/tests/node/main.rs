//! The node's integration tests, one binary (link time): the strategy on real and generated
//! data, the indicators against TA-Lib, the order builder, the backtest and its command line;
//! the store (crashes, upgrades), the runtime (orders, reconciliation, guard, the account
//! fingerprint an EA's hello signs) and the EA link.

mod account_fingerprint;
mod backtest;
mod cli;
mod core_tables;
mod feed;
mod hub_requests;
mod indicators;
mod link;
mod node_cli;
mod remote_approvals;
mod store;
mod strategy;
mod sync;
mod upgrade;

use std::path::PathBuf;

use tradecast_protocol::bars::{Bar, BarF64, parse_bars};

/// The repository's test data folder (never anything outside the repository).
pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("testdata").join(name)
}

/// The EURUSD H1 sample, parsed.
pub fn eurusd() -> Vec<Bar> {
    let bytes = std::fs::read(testdata("EURUSD-H1.csv")).expect("testdata/EURUSD-H1.csv");
    parse_bars(&bytes).expect("the sample parses")
}

pub fn to_f64(bars: &[Bar]) -> Vec<BarF64> {
    bars.iter().map(Bar::to_f64).collect()
}
