//! The wall clock: unix ms from the OS, read here and nowhere else in the node's library (link
//! health, request freshness, created and filled times, record stamps). The market clock is a
//! different thing: the terminal time the EA reports, carried in the link's bodies.

/// The wall clock, unix ms.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
