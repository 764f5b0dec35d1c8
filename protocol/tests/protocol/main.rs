//! Integration tests of `tradecast-protocol`: one test binary (link time), one module per area.
//! Tests whose names start with `slow_` run only in the slow suite (`TRADECAST_SLOW=1`).

mod chain;
mod fuzz_corpus;
mod hub_requests;
mod identity;
mod json;
mod proptests;
mod proptests_v2;
mod records;
mod seal;
mod session;
mod sim;
mod support;
mod track_verify;
mod vectors;
mod vectors_v2;
