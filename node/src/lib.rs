//! `tradecast-node`: the product on every trader's machine.
//!
//! It owns the trader's local state and every decision about the trader's account. It depends on
//! `tradecast-protocol` only among our crates: never on the hub, never on the simulated terminal.
//!
//! Modules: [`strategy`] (Fib-RSI v1, streaming and batch), [`orders`] (orders from signals),
//! [`backtest`] (trade simulation and summary), [`report`] (HTML/SVG), [`display`] (times and
//! prices for tables), [`cli`] (the command line) and [`commands`] (its verbs), [`timeframe`],
//! [`synthetic`] (generated bars); the running node: [`store`] (redb, the hub pin), [`keys`]
//! (identity, EA keys, sealing), [`config`], [`clock`] (the wall clock), [`runtime`] (orders,
//! reconciliation, drawdown guard, provider mode: one file per responsibility), [`link`] (the
//! EA link server), [`api`] (the local API) and [`serve`] (init, start, run); [`policy`] (copy
//! policy, market hours, sizing, approvals); [`sync`] (enrolment with the hub, the QUIC
//! connection to it); [`export`] (the trader's closed trades as the Myfxbook CSV journals
//! import, or as JSON). The modules import each other without a circle (checked by the root
//! package's `tests/workspace`).
//!
//! # The API other crates call
//!
//! - [`serve::init`]`(data)`, [`serve::start`]`(data, &config, shutdown) -> Running { ea_addr,
//!   api_addr, node }`, [`serve::run`]; [`config::Config`] (TOML, `deny_unknown_fields`).
//! - For the desktop shell: a started node writes `running.json` into its data dir
//!   ([`serve::RUNNING_FILE`]; [`serve::running_node`] reads it) so another process attaches
//!   through the local API instead of opening the store twice; `/setup` ([`ui::setup`]) is the
//!   first-run flow and `/login?token=…&next=/ui/start` opens it until setup is done.
//! - [`runtime::Node`]: `hello`/`poll`/`ack`/`state`/`deals`/`bars` (the EA link's calls, each
//!   committed before it returns), `submit_signal`, `queue`, `close_all`, `unlock`, `status`,
//!   `orders`/`positions`/`deal_list`/`equity`/`signals`, `open_record` (a private record
//!   opened with the device's own stream key).
//! - For the sync client: the outbox is `node.store().read()?.outbox(stream)` /
//!   `.outbox_from(stream, seq)` (records signed and chained, `seq` from 1 per stream, the
//!   private stream sealed); new records are appended inside a `store.write(|tx| …)` with
//!   `tx.append_record(identity, stream, &body, now)`; the inbox watermark is
//!   `tx.set_inbox_watermark(seq)` / `view.inbox_watermark()`, committed before the hub is acked.

// No `unwrap`/`expect` outside tests: a failure is a typed error, and where a local invariant
// truly holds the one item says so with an `#[allow]` and a comment. Here, not in the
// workspace's lints: the other crates are not there yet. Tests may use both (`clippy.toml`).
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod backtest;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod display;
pub mod export;
pub mod keys;
pub mod link;
pub mod orders;
pub mod policy;
pub mod report;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod strategy;
pub mod sync;
pub mod synthetic;
pub mod timeframe;
pub mod ui;
