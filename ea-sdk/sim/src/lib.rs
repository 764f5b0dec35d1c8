//! `tradecast-sim`: MT5's stand-in. A simulated terminal and broker that drives a node over the
//! real EA link exactly as the MQL5 Expert Advisor does. Depends on `tradecast-protocol` only.
