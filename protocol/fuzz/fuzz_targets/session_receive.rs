//! Fuzz target: see `tradecast_protocol::fuzzing::session_receive`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tradecast_protocol::fuzzing::session_receive(data));
