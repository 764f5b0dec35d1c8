//! The HMAC-SHA256 request and answer signatures of the EA link (`ea-link.md`, Authentication),
//! also used by the hub's signals API. Pure functions: the callers bring the clock and nonces.
