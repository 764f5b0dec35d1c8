//! Integration tests of `tradecast-protocol`: one test binary (link time), one module per area.
//! Tests whose names start with `slow_` run only in the slow suite (`TRADECAST_SLOW=1`).

mod identity;
mod json;
mod records;
mod support;
