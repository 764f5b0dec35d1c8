//! Identifiers, random tokens and the hub's clock.
//!
//! Ids are random 128-bit values in lowercase hex (TEXT in SQL on both backends). The clock is
//! wall-clock unix milliseconds plus an offset that only tests move, so expiry and freshness
//! rules are tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// `n` random bytes from the operating system, as lowercase hex.
pub fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

/// `n` random bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The OS CSPRNG failing is not a condition the hub can run under: there is no safe fallback
    // for key and token generation, so this is an invariant, not an input error.
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

/// A fresh 128-bit id.
pub fn new_id() -> String {
    random_hex(16)
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Wall clock in unix milliseconds UTC, plus a test-only offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The current time in unix ms UTC.
    pub fn now_ms(&self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        wall.saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward; tests only.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}
