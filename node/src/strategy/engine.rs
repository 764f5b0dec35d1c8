//! The streaming Fib-RSI engine: one closed bar in, at most one signal out, O(1) amortised work
//! and memory bounded by the swing window (`2k + 1` bars), so provider mode can run it for years.
//!
//! State it keeps, and why that is enough (fib-rsi.md, Swings and Rules):
//! - the last `2k + 1` highs and lows: a swing at `i` is decided at bar `i + k` from them;
//! - the latest confirmed swing high and low: swings are confirmed in index order, so the largest
//!   `i ≤ t − k` is the latest one, and when it is older than `t − lookback` every other is too;
//! - the lowest low since the swing high and the highest high since the swing low (the
//!   pullbacks), recomputed from the window when a swing is confirmed, then extended bar by bar;
//! - the last leg that signalled: the current leg `(sl, sh)` only ever moves forward, so a leg
//!   that is not the current one can never come back, and one remembered leg enforces "one
//!   signal per leg".

use super::indicators::{Atr, Rsi};
use super::{Params, ParamsError, Signal, decide};
use tradecast_protocol::bars::BarF64;

/// The streaming engine. Feed it closed bars of one symbol and timeframe, oldest first.
#[derive(Debug, Clone)]
pub struct Engine {
    params: Params,
    /// Index of the next bar.
    t: usize,
    rsi: Rsi,
    atr: Atr,
    rsi_prev: Option<f64>,
    /// Highs and lows of the last `2k + 1` bars, bar `i` at `i % window`.
    highs: Vec<f64>,
    lows: Vec<f64>,
    /// Latest confirmed swing high / low: (index, price).
    swing_high: Option<(usize, f64)>,
    swing_low: Option<(usize, f64)>,
    /// Lowest low of bars after the swing high, highest high of bars after the swing low.
    low_since_high: Option<f64>,
    high_since_low: Option<f64>,
    /// The leg (sl, sh) that produced the last signal.
    last_leg: Option<(usize, usize)>,
    /// The last bar's open time.
    last_time_unix_ms: Option<i64>,
}

/// A bar that is not after the previous one: a duplicate (an EA resending after a reconnect)
/// or a step back in time. The engine's state is left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bar at {time_unix_ms} ms is not after the previous bar at {previous_unix_ms} ms")]
pub struct OutOfOrder {
    pub time_unix_ms: i64,
    pub previous_unix_ms: i64,
}

impl Engine {
    /// A fresh engine, before bar 0.
    pub fn new(params: Params) -> Result<Self, ParamsError> {
        params.validate()?;
        let window = 2 * params.swing_strength + 1;
        Ok(Self {
            params,
            t: 0,
            rsi: Rsi::new(params.rsi_period),
            atr: Atr::new(params.atr_period),
            rsi_prev: None,
            highs: vec![0.0; window],
            lows: vec![0.0; window],
            swing_high: None,
            swing_low: None,
            low_since_high: None,
            high_since_low: None,
            last_leg: None,
            last_time_unix_ms: None,
        })
    }

    /// The parameters this engine runs with.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// How many bars it has taken.
    pub fn n_bars(&self) -> usize {
        self.t
    }

    /// Takes the next closed bar after checking that it is later than the last one: what a live
    /// feed calls, where a bar can arrive twice.
    pub fn try_push(&mut self, bar: &BarF64) -> Result<Option<Signal>, OutOfOrder> {
        match self.last_time_unix_ms {
            Some(previous_unix_ms) if bar.time_unix_ms <= previous_unix_ms => {
                Err(OutOfOrder { time_unix_ms: bar.time_unix_ms, previous_unix_ms })
            }
            _ => Ok(self.push(bar)),
        }
    }

    /// Takes the next closed bar; returns the signal it produces, if any. The caller guarantees
    /// the order (the bar-file reader does); see [`Engine::try_push`] otherwise.
    pub fn push(&mut self, bar: &BarF64) -> Option<Signal> {
        self.last_time_unix_ms = Some(bar.time_unix_ms);
        let t = self.t;
        self.t += 1;
        let k = self.params.swing_strength;
        let window = self.highs.len();
        self.highs[t % window] = bar.high;
        self.lows[t % window] = bar.low;

        let rsi = self.rsi.push(bar.close);
        let atr = self.atr.push(bar.high, bar.low, bar.close);
        let rsi_prev = std::mem::replace(&mut self.rsi_prev, rsi);

        // Extend the pullbacks with this bar, then confirm the swing at t − k (which resets the
        // pullback after it from the window: bars t−k+1 ..= t, this one included).
        if let Some(m) = &mut self.low_since_high {
            *m = m.min(bar.low);
        }
        if let Some(m) = &mut self.high_since_low {
            *m = m.max(bar.high);
        }
        if t >= 2 * k {
            let i = t - k;
            let hi = self.highs[i % window];
            let lo = self.lows[i % window];
            let others = (t - 2 * k..=t).filter(|&j| j != i);
            let (mut is_high, mut is_low) = (true, true);
            for j in others {
                is_high &= self.highs[j % window] < hi;
                is_low &= self.lows[j % window] > lo;
            }
            if is_high {
                self.swing_high = Some((i, hi));
                self.low_since_high = (i + 1..=t).map(|j| self.lows[j % window]).reduce(f64::min);
            }
            if is_low {
                self.swing_low = Some((i, lo));
                self.high_since_low = (i + 1..=t).map(|j| self.highs[j % window]).reduce(f64::max);
            }
        }

        let (rsi_prev, rsi, atr) = (rsi_prev?, rsi?, atr?);
        let oldest = t.saturating_sub(self.params.swing_lookback);
        let sh = self.swing_high.filter(|&(i, _)| i >= oldest)?;
        let sl = self.swing_low.filter(|&(i, _)| i >= oldest)?;
        let leg = (sl.0, sh.0);
        if self.last_leg == Some(leg) {
            return None;
        }
        let pullback = if sl.0 < sh.0 { self.low_since_high } else { self.high_since_low };
        let signal = decide(&self.params, t, bar, sl, sh, pullback, rsi_prev, rsi, atr)?;
        self.last_leg = Some(leg);
        Some(signal)
    }
}
