//! Fuzz target: see `tradecast_protocol::fuzzing::sealed_open`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tradecast_protocol::fuzzing::sealed_open(data));
