//! The JSON bodies of every EA-link call (`ea-link.md`), used by the node and the simulated
//! terminal alike so the two ends cannot drift.
