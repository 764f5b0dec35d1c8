//! The price stream: closed bars from any file the protocol's bar reader takes
//! ([`tradecast_protocol::bars::parse_bars`]) or from a seeded generator, and a spread model that
//! turns each bid bar into bid/ask. Deterministic: the same file or seed and the same spread seed
//! give the same stream on every run.

use rust_decimal::Decimal;
use tradecast_protocol::bars::{self, Bar, BarFileError};
use tradecast_protocol::ea::Session;

/// A small seeded PRNG (SplitMix64): the sim's only source of randomness, so every run replays.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// How wide the spread is, in points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpreadModel {
    /// The usual spread.
    pub base_points: u32,
    /// Up to this many points added at random to each bar.
    pub jitter_points: u32,
    /// Extra points in the hour after the server-day rollover (spreads widen there).
    pub rollover_extra_points: u32,
}

impl Default for SpreadModel {
    fn default() -> Self {
        SpreadModel { base_points: 10, jitter_points: 0, rollover_extra_points: 0 }
    }
}

impl SpreadModel {
    /// The spread of a bar opening at `time_ms`, server offset `offset_s`.
    pub fn spread(&self, time_ms: i64, offset_s: i32, rng: &mut Rng) -> u32 {
        let server_s = time_ms.div_euclid(1_000) + i64::from(offset_s);
        let rollover = server_s.rem_euclid(86_400) < 3_600;
        let jitter = rng.below(u64::from(self.jitter_points) + 1) as u32;
        self.base_points + jitter + if rollover { self.rollover_extra_points } else { 0 }
    }
}

/// Why a feed could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The bar reader refused the file.
    #[error("bar file: {0}")]
    File(#[from] BarFileError),
    /// Fewer than two bars: the timeframe cannot be inferred.
    #[error("the file has fewer than two bars")]
    TooShort,
}

/// One symbol's bars, replayed one at a time.
#[derive(Debug, Clone)]
pub struct Feed {
    /// The symbol the bars are for.
    pub symbol: String,
    bars: Vec<Bar>,
    bar_seconds: i64,
    next: usize,
    spread: SpreadModel,
    rng: Rng,
}

impl Feed {
    /// A feed from a bar file's bytes (MT5 export or CSV, see the bar reader). The timeframe is
    /// the shortest gap between two bars.
    pub fn from_file(
        symbol: &str,
        bytes: &[u8],
        options: &bars::ParseOptions,
        spread: SpreadModel,
        seed: u64,
    ) -> Result<Feed, FeedError> {
        let bars = bars::parse_bars_with(bytes, options)?;
        Feed::from_bars(symbol, bars, spread, seed)
    }

    /// A feed from bars already read.
    pub fn from_bars(
        symbol: &str,
        bars: Vec<Bar>,
        spread: SpreadModel,
        seed: u64,
    ) -> Result<Feed, FeedError> {
        let bar_seconds = bars
            .windows(2)
            .map(|w| (w[1].time_unix_ms - w[0].time_unix_ms) / 1_000)
            .filter(|s| *s > 0)
            .min()
            .ok_or(FeedError::TooShort)?;
        Ok(Feed {
            symbol: symbol.to_owned(),
            bars,
            bar_seconds,
            next: 0,
            spread,
            rng: Rng::new(seed),
        })
    }

    /// A seeded random walk: `n` bars of `bar_seconds` from `start_ms` (only inside `sessions`,
    /// all times when empty), starting at `start_price` with `digits` digits, each close moving
    /// up to `step_points` from the open.
    #[allow(clippy::too_many_arguments)]
    pub fn generated(
        symbol: &str,
        seed: u64,
        n: usize,
        start_ms: i64,
        bar_seconds: i64,
        start_price: Decimal,
        digits: u32,
        step_points: u32,
        sessions: &[Session],
    ) -> Feed {
        let mut rng = Rng::new(seed);
        let point = Decimal::new(1, digits);
        let mut price = start_price;
        let mut t = start_ms;
        let mut bars = Vec::with_capacity(n);
        let step = u64::from(step_points.max(1));
        while bars.len() < n {
            let open_now = sessions.is_empty() || sessions.iter().any(|s| s.contains(t));
            if open_now {
                let mv = |rng: &mut Rng| {
                    Decimal::from(rng.below(2 * step + 1) as i64 - step as i64) * point
                };
                let open = price;
                let close = (open + mv(&mut rng)).max(point);
                let up = Decimal::from(rng.below(step) as i64) * point;
                let down = Decimal::from(rng.below(step) as i64) * point;
                let high = open.max(close) + up;
                let low = (open.min(close) - down).max(point);
                bars.push(Bar { time_unix_ms: t, open, high, low, close });
                price = close;
            }
            t += bar_seconds * 1_000;
        }
        Feed {
            symbol: symbol.to_owned(),
            bars,
            bar_seconds: bar_seconds.max(1),
            next: 0,
            spread: SpreadModel::default(),
            rng,
        }
    }

    /// Sets the spread model.
    pub fn with_spread(mut self, spread: SpreadModel) -> Feed {
        self.spread = spread;
        self
    }

    /// The bar length, seconds.
    pub fn bar_seconds(&self) -> i64 {
        self.bar_seconds
    }

    /// Bars in the feed.
    pub fn len(&self) -> usize {
        self.bars.len()
    }

    /// Whether the feed holds no bars.
    pub fn is_empty(&self) -> bool {
        self.bars.is_empty()
    }

    /// Bars not yet replayed.
    pub fn remaining(&self) -> usize {
        self.bars.len() - self.next
    }

    /// The next bar and its spread (points), or `None` at the end.
    pub fn next_bar(&mut self, server_utc_offset_s: i32) -> Option<(Bar, u32)> {
        let bar = *self.bars.get(self.next)?;
        self.next += 1;
        let spread = self.spread.spread(bar.time_unix_ms, server_utc_offset_s, &mut self.rng);
        Some((bar, spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shared_csv_and_infers_h1() {
        let csv = "time,open,high,low,close,volume\n\
                   2017-04-19 09:00:00,1.0716,1.0722,1.07083,1.07219,1413\n\
                   2017-04-19 10:00:00,1.07214,1.07296,1.07214,1.0726,1241\n\
                   2017-04-19 12:00:00,1.0726,1.0730,1.0720,1.0725,1000\n";
        let mut f = Feed::from_file(
            "EURUSD",
            csv.as_bytes(),
            &bars::ParseOptions::default(),
            SpreadModel::default(),
            1,
        )
        .expect("valid csv");
        assert_eq!((f.len(), f.bar_seconds()), (3, 3_600));
        let (b, spread) = f.next_bar(0).expect("bar");
        assert_eq!((b.time_unix_ms, spread), (1_492_592_400_000, 10));
        assert_eq!(f.remaining(), 2);
    }

    #[test]
    fn refuses_bad_files_without_panicking() {
        let check = |bytes: &[u8]| {
            let r = Feed::from_file(
                "X",
                bytes,
                &bars::ParseOptions::default(),
                SpreadModel::default(),
                0,
            );
            assert!(r.is_err(), "{:?}", String::from_utf8_lossy(bytes));
        };
        check(b"");
        check(b"time,open,high,low,close\n");
        check(b"time,open,high,low,close\n2017-04-19 09:00:00,1,1,1,1\n");
        check(b"time,open,high,low,close\n2017-04-19 09:00:00,1,0.5,1,1\n2017-04-19 10:00:00,1,1,1,1\n");
        check(&[0xff, 0xfe, 0x00]);
    }

    #[test]
    fn generator_and_spread_are_seeded() {
        let week = crate::broker::forex_week();
        let a = Feed::generated(
            "EURUSD",
            7,
            200,
            1_492_905_600_000,
            3_600,
            Decimal::new(107_000, 5),
            5,
            20,
            &week,
        );
        let b = Feed::generated(
            "EURUSD",
            7,
            200,
            1_492_905_600_000,
            3_600,
            Decimal::new(107_000, 5),
            5,
            20,
            &week,
        );
        let c = Feed::generated(
            "EURUSD",
            8,
            200,
            1_492_905_600_000,
            3_600,
            Decimal::new(107_000, 5),
            5,
            20,
            &week,
        );
        assert_eq!(a.bars, b.bars);
        assert_ne!(a.bars, c.bars);
        for w in a.bars.windows(2) {
            assert!(w[0].time_unix_ms < w[1].time_unix_ms);
        }
        for bar in &a.bars {
            assert!(bar.low <= bar.open && bar.low <= bar.close);
            assert!(bar.high >= bar.open && bar.high >= bar.close);
            assert!(week.iter().any(|s| s.contains(bar.time_unix_ms)));
        }
        let model = SpreadModel { base_points: 10, jitter_points: 4, rollover_extra_points: 30 };
        let mut r = Rng::new(3);
        // 21:30 UTC with the server at UTC+2 is 23:30 server time; 22:30 UTC is 00:30: rollover.
        let before = model.spread(1_492_983_000_000, 7_200, &mut r);
        let after = model.spread(1_492_986_600_000, 7_200, &mut r);
        assert!((10..=14).contains(&before), "{before}");
        assert!((40..=44).contains(&after), "{after}");
    }
}
