//! Fuzz target: see `tradecast_protocol::fuzzing::record_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tradecast_protocol::fuzzing::record_decode(data));
