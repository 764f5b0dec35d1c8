//! Time and randomness, injected. The wall clock (unix ms from the OS) is read by [`wall_ms`] and
//! [`SystemClock`] and nowhere else in the node's library (link health, request freshness,
//! created and filled times, record stamps). The market clock is a different thing: the terminal
//! time the EA reports, carried in the link's bodies. Ids (orders, sessions, signals) come from an
//! [`IdSource`]: the OS CSPRNG in a running node, a seeded generator in the simulation.
//!
//! The node's core ([`crate::runtime::Node`]'s synchronous methods) takes the wall clock from
//! the [`Clock`] it was built with or as an argument, and ids from its [`IdSource`]: given the
//! same inputs, clock and seed it makes the same rows and answers.

/// Unix milliseconds on the node's own (wall) clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WallMs(pub i64);

/// Unix milliseconds on the market clock: the terminal time the EA reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MarketMs(pub i64);

/// The two clocks at the moment of a call into the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// The node's wall clock.
    pub wall_ms: WallMs,
    /// The market clock, when the caller knows it (the EA's terminal time), else 0.
    pub market_ms: MarketMs,
}

impl Now {
    /// A moment on the wall clock with no market time known.
    pub fn wall(wall_ms: i64) -> Now {
        Now { wall_ms: WallMs(wall_ms), market_ms: MarketMs(0) }
    }
}

/// The wall clock, unix ms.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Where the core reads the wall clock when a caller does not pass it.
pub trait Clock: Send + Sync {
    /// Unix ms now.
    fn wall_ms(&self) -> i64;
}

/// The OS clock ([`wall_ms`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_ms(&self) -> i64 {
        wall_ms()
    }
}

/// A clock the caller moves by hand (the simulation, tests): shared, so the driver of a
/// simulation and the core read the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    /// A clock at `ms`.
    pub fn at(ms: i64) -> ManualClock {
        ManualClock(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(ms)))
    }

    /// Sets the time.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn wall_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Where ids come from: unguessable in a running node (order ids appear in the terminal's
/// comments, session ids authorize nothing on their own but must not repeat), reproducible in a
/// simulation.
pub trait IdSource: Send {
    /// Fills `out` with fresh bytes.
    fn fill(&mut self, out: &mut [u8]) -> Result<(), crate::keys::KeyError>;
}

/// The OS CSPRNG (`getrandom`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsIds;

impl IdSource for OsIds {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), crate::keys::KeyError> {
        getrandom::fill(out).map_err(crate::keys::KeyError::Random)
    }
}

/// A seeded generator (SplitMix64): the same seed gives the same ids. Not for a real node.
#[derive(Debug, Clone)]
pub struct SeededIds(u64);

impl SeededIds {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SeededIds {
        SeededIds(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl IdSource for SeededIds {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), crate::keys::KeyError> {
        for chunk in out.chunks_mut(8) {
            let b = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_source_repeats_its_ids_and_two_seeds_differ() {
        let (mut a, mut b, mut c) = (SeededIds::new(7), SeededIds::new(7), SeededIds::new(8));
        let (mut x, mut y, mut z) = ([0u8; 12], [0u8; 12], [0u8; 12]);
        for _ in 0..3 {
            a.fill(&mut x).expect("seeded");
            b.fill(&mut y).expect("seeded");
            c.fill(&mut z).expect("seeded");
            assert_eq!(x, y);
            assert_ne!(x, z);
        }
    }

    #[test]
    fn a_manual_clock_is_shared_by_its_clones() {
        let c = ManualClock::at(1_000);
        let d = c.clone();
        c.advance(500);
        assert_eq!(d.wall_ms(), 1_500);
        d.set(7);
        assert_eq!(c.wall_ms(), 7);
    }
}
