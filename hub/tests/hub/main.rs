//! The hub's integration tests: one binary. Every test that touches storage runs twice, on a
//! fresh SQLite file and on a fresh PostgreSQL database (created per test on the local server
//! and dropped after), against the real app on 127.0.0.1:0 over real HTTP.
//!
//! `TEST_LOG=1` prints the hub's logs. PostgreSQL: `TRADECAST_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); Redis: `TRADECAST_TEST_REDIS` (default
//! `redis://127.0.0.1:6379`).

mod helpers;

mod account_events;
mod account_fingerprint;
mod affiliates;
mod approvals;
mod audit;
mod auth;
mod backup;
mod billing;
mod billing_crash;
mod billing_device;
mod billing_flow;
mod billing_stripe;
mod binary;
mod charts;
mod cluster;
mod console;
mod console_pages;
mod copy_fidelity;
mod dashboards;
mod devices;
mod edge;
mod entitlements;
mod metrics;
mod miniapp;
mod outbox;
mod plans;
mod quic;
mod ratelimit;
mod relay_crash;
mod remote_approvals;
mod revenue;
mod schemathesis;
mod share_links;
mod signals;
mod sync;
mod telegram;
mod telegram_bot;
mod telegram_crash;
mod track_money;
mod track_record;
mod users;
