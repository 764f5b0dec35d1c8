//! Deterministic generated bars (a seeded random walk with trends and volatility bursts), for the
//! benchmark and the long-series tests: the same seed gives the same bars on every machine.
//! Prices are whole ticks of `10^-digits` held as exact decimals, like a real feed.

use rust_decimal::Decimal;
use tradecast_protocol::bars::Bar;

/// SplitMix64: small, fast and good enough to drive a random walk; seeded, never from the OS.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` hourly bars from 2020-01-01 00:00 UTC, prices with `digits` decimals (2 makes exact ties
/// common, 5 is FX-like), starting near 1.0 (5 digits) or 1000 (2 digits).
pub fn bars(n: usize, seed: u64, digits: u32) -> Vec<Bar> {
    let mut rng = SplitMix64(seed);
    let base: i64 = if digits >= 4 { 10i64.pow(digits) } else { 1000 * 10i64.pow(digits) };
    // One "pip" worth of ticks: volatility scales with the price level.
    let vol = (base as f64) * 0.0015;
    let mut close = base;
    let mut drift = 0.0;
    let mut burst = 1.0;
    let start_ms = 1_577_836_800_000i64;
    let mut out = Vec::with_capacity(n);
    for t in 0..n {
        if rng.unit() < 0.01 {
            drift = (rng.unit() - 0.5) * 0.6 * vol;
        }
        if rng.unit() < 0.005 {
            burst = 1.0 + 3.0 * rng.unit();
        }
        burst = 1.0 + (burst - 1.0) * 0.98;
        // Sum of four uniforms: a cheap bell curve in [-2, 2).
        let shock = (0..4).map(|_| rng.unit()).sum::<f64>() - 2.0;
        // Mean reversion towards the base keeps long series positive and bounded.
        let pull = (base - close) as f64 * 0.0005;
        let open = close;
        let step = (drift + pull + shock * vol * burst).round() as i64;
        close = (open + step).max(base / 10);
        let wick_up = (rng.unit() * vol * burst).round() as i64;
        let wick_down = (rng.unit() * vol * burst).round() as i64;
        let high = open.max(close) + wick_up;
        let low = (open.min(close) - wick_down).max(1);
        let d = |ticks: i64| Decimal::new(ticks, digits);
        out.push(Bar {
            time_unix_ms: start_ms + t as i64 * 3_600_000,
            open: d(open),
            high: d(high),
            low: d(low),
            close: d(close),
        });
    }
    out
}
