//! `tradecast-hub`: the central service that verifies provider-signed signals and fans them out.
//!
//! It depends on `tradecast-protocol` only among our crates: never on the node or the sim.
