//! Fib-RSI v1 (fib-rsi.md, locked): parameters, the `Signal` it emits, and its two forms.
//!
//! # Public API
//!
//! - [`Params`] (defaults = fib-rsi.md's table), checked by [`Params::validate`].
//! - [`Engine`] (streaming, what provider mode runs live): `Engine::new(params)?`, then
//!   `engine.push(&bar_f64) -> Option<Signal>` once per closed bar, oldest first
//!   (`try_push` refuses a bar not after the last one, for live feeds). O(1) amortised
//!   work per bar (O(k) for the swing check, k = swing strength) and memory bounded by `2k + 1`
//!   bars, whatever the length of the series.
//! - [`batch::signals`]`(&bars, &params)`: an independent, whole-array transcription of the spec
//!   (every indicator as a full series, swings searched back over the lookback, a set of signalled
//!   legs). It exists to check the streaming engine bar for bar; [`run`] is the convenience that
//!   streams a whole slice through an [`Engine`], which is what the backtest uses.
//! - [`indicators`]: Wilder RSI and ATR, streaming and as series (both match TA-Lib to 1e-9).
//!
//! Everything here computes in f64 in the order fib-rsi.md writes it ("Arithmetic"), so that
//! ties break as in every other implementation; decimals start at the order builder.

pub mod batch;
mod engine;
pub mod indicators;

pub use engine::{Engine, OutOfOrder};
pub use tradecast_protocol::trade::Side;

use tradecast_protocol::bars::BarF64;

/// The strategy's identifier on the wire.
pub const STRATEGY_ID: &str = "fib-rsi/1";

/// Fib-RSI v1's parameters; `Default` is the locked table of fib-rsi.md.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    /// Wilder RSI period, bars (14).
    pub rsi_period: usize,
    /// Wilder ATR period, bars (14).
    pub atr_period: usize,
    /// Swing strength `k`: bars on each side a swing must dominate strictly (5).
    pub swing_strength: usize,
    /// How far back a swing may lie, bars (120).
    pub swing_lookback: usize,
    /// The zone's shallow edge as a fraction of the leg (0.5).
    pub zone_shallow: f64,
    /// The zone's deep edge, also the stop (0.786).
    pub zone_deep: f64,
    /// RSI level a long needs crossed upwards (40).
    pub long_cross: f64,
    /// RSI level a short needs crossed downwards (60).
    pub short_cross: f64,
    /// Minimum leg range in ATRs (1.5).
    pub min_range_atr: f64,
    /// tp2's extension beyond the leg, as a fraction of it (0.272).
    pub extension: f64,
    /// Minimum reward/risk to tp1 (1.0).
    pub min_rr: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            rsi_period: 14,
            atr_period: 14,
            swing_strength: 5,
            swing_lookback: 120,
            zone_shallow: 0.5,
            zone_deep: 0.786,
            long_cross: 40.0,
            short_cross: 60.0,
            min_range_atr: 1.5,
            extension: 0.272,
            min_rr: 1.0,
        }
    }
}

/// A parameter set the strategy cannot run with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// A period, the swing strength or the lookback is zero.
    #[error("{name} must be at least 1, got {value}")]
    Zero {
        /// The parameter's name.
        name: &'static str,
        value: usize,
    },
    /// A real-valued parameter is NaN or infinite.
    #[error("{name} must be a finite number, got {value}")]
    NotFinite {
        /// The parameter's name.
        name: &'static str,
        value: f64,
    },
}

impl Params {
    /// Checks that every period is at least 1 and every level is finite.
    pub fn validate(&self) -> Result<(), ParamsError> {
        for (name, value) in [
            ("rsi_period", self.rsi_period),
            ("atr_period", self.atr_period),
            ("swing_strength", self.swing_strength),
            ("swing_lookback", self.swing_lookback),
        ] {
            if value == 0 {
                return Err(ParamsError::Zero { name, value });
            }
        }
        for (name, value) in [
            ("zone_shallow", self.zone_shallow),
            ("zone_deep", self.zone_deep),
            ("long_cross", self.long_cross),
            ("short_cross", self.short_cross),
            ("min_range_atr", self.min_range_atr),
            ("extension", self.extension),
            ("min_rr", self.min_rr),
        ] {
            if !value.is_finite() {
                return Err(ParamsError::NotFinite { name, value });
            }
        }
        Ok(())
    }
}

/// One Fib-RSI signal, with the f64 values the rules computed.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Signal {
    /// The signal bar's 0-based index in the series.
    pub bar: usize,
    /// The signal bar's open time, unix ms UTC.
    pub time_unix_ms: i64,
    pub side: Side,
    /// `close[t]`: the market entry the signal was computed for.
    pub entry: f64,
    pub stop: f64,
    pub tp1: f64,
    pub tp2: f64,
    /// The leg's swing low: index and low.
    pub swing_low: usize,
    pub swing_low_price: f64,
    /// The leg's swing high: index and high.
    pub swing_high: usize,
    pub swing_high_price: f64,
    /// RSI at the signal bar.
    pub rsi: f64,
    /// Reward/risk to tp1.
    pub rr: f64,
}

impl Signal {
    /// When the signal stops being actionable: the close of bar t+1 (fib-rsi.md, The signal),
    /// on the market clock, for bars of `timeframe`.
    pub fn expires_unix_ms(&self, timeframe: crate::timeframe::Timeframe) -> i64 {
        self.time_unix_ms + 2 * timeframe.duration_ms()
    }
}

/// Streams `bars` through a fresh [`Engine`] and collects its signals.
pub fn run(bars: &[BarF64], params: &Params) -> Result<Vec<Signal>, ParamsError> {
    let mut engine = Engine::new(*params)?;
    Ok(bars.iter().filter_map(|b| engine.push(b)).collect())
}

/// What the rules decide at bar `t` once the leg, the indicators and the pullback are known:
/// shared by the streaming engine and the batch transcription so that the conditions are written
/// once, in fib-rsi.md's order. Returns the signal's levels or `None`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decide(
    p: &Params,
    t: usize,
    bar: &BarF64,
    (sl, low_sl): (usize, f64),
    (sh, high_sh): (usize, f64),
    pullback: Option<f64>,
    rsi_prev: f64,
    rsi: f64,
    atr: f64,
) -> Option<Signal> {
    let h = high_sh;
    let l = low_sl;
    let r = h - l;
    if r < p.min_range_atr * atr {
        return None;
    }
    let pullback = pullback?;
    let signal = |side, entry, stop, tp1, tp2, rr| Signal {
        bar: t,
        time_unix_ms: bar.time_unix_ms,
        side,
        entry,
        stop,
        tp1,
        tp2,
        swing_low: sl,
        swing_low_price: l,
        swing_high: sh,
        swing_high_price: h,
        rsi,
        rr,
    };
    if sl < sh {
        let level = |x: f64| h - x * r;
        if !(level(p.zone_deep) <= pullback && pullback <= level(p.zone_shallow)) {
            return None;
        }
        if !(rsi_prev < p.long_cross && p.long_cross <= rsi) {
            return None;
        }
        let entry = bar.close;
        if entry >= h {
            return None;
        }
        let stop = level(p.zone_deep);
        let tp1 = h;
        let tp2 = h + p.extension * r;
        if entry <= stop {
            return None;
        }
        let rr = (tp1 - entry) / (entry - stop);
        (rr >= p.min_rr).then(|| signal(Side::Buy, entry, stop, tp1, tp2, rr))
    } else if sh < sl {
        let level = |x: f64| l + x * r;
        if !(level(p.zone_shallow) <= pullback && pullback <= level(p.zone_deep)) {
            return None;
        }
        if !(rsi_prev > p.short_cross && p.short_cross >= rsi) {
            return None;
        }
        let entry = bar.close;
        if entry <= l {
            return None;
        }
        let stop = level(p.zone_deep);
        let tp1 = l;
        let tp2 = l - p.extension * r;
        if entry >= stop {
            return None;
        }
        let rr = (entry - tp1) / (stop - entry);
        (rr >= p.min_rr).then(|| signal(Side::Sell, entry, stop, tp1, tp2, rr))
    } else {
        None
    }
}
