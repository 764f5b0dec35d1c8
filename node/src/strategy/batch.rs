//! The batch transcription of Fib-RSI v1: the spec read literally over whole arrays, written
//! apart from the streaming engine so that each checks the other (fib-rsi.md, Check). It is
//! O(n · lookback) and keeps every series in memory: a reference, not what runs live.
//!
//! Only the final conditions (`decide`, fib-rsi.md's "Rules" lines) are shared with the engine;
//! indicators, swing detection, the swing search, the pullback and the leg bookkeeping are each
//! computed here from their definitions.

use std::collections::HashSet;

use super::indicators::{atr_series, rsi_series};
use super::{Params, ParamsError, Signal, decide};
use tradecast_protocol::bars::BarF64;

/// Every signal of `bars` under `params`, computed from whole series.
pub fn signals(bars: &[BarF64], params: &Params) -> Result<Vec<Signal>, ParamsError> {
    params.validate()?;
    let p = params;
    let n = bars.len();
    let high: Vec<f64> = bars.iter().map(|b| b.high).collect();
    let low: Vec<f64> = bars.iter().map(|b| b.low).collect();
    let close: Vec<f64> = bars.iter().map(|b| b.close).collect();
    let rsi = rsi_series(&close, p.rsi_period);
    let atr = atr_series(&high, &low, &close, p.atr_period);
    let k = p.swing_strength;

    // Swing high at i: high[i] strictly above every other high in i−k ..= i+k (all must exist).
    let is_swing = |i: usize, v: &[f64], above: bool| {
        i >= k
            && i + k < n
            && (i - k..=i + k)
                .filter(|&j| j != i)
                .all(|j| if above { v[j] < v[i] } else { v[j] > v[i] })
    };
    let swing_high: Vec<bool> = (0..n).map(|i| is_swing(i, &high, true)).collect();
    let swing_low: Vec<bool> = (0..n).map(|i| is_swing(i, &low, false)).collect();

    let mut signalled: HashSet<(usize, usize)> = HashSet::new();
    let mut out = Vec::new();
    for t in 1..n {
        let (Some(rsi_prev), Some(rsi_t), Some(atr_t)) = (rsi[t - 1], rsi[t], atr[t]) else {
            continue;
        };
        if t < k {
            continue;
        }
        // The largest i with max(k, t − lookback) ≤ i ≤ t − k that is a swing.
        let lowest = k.max(t.saturating_sub(p.swing_lookback));
        let latest = |flags: &[bool]| (lowest..=t - k).rev().find(|&i| flags[i]);
        let (Some(sh), Some(sl)) = (latest(&swing_high), latest(&swing_low)) else {
            continue;
        };
        if signalled.contains(&(sl, sh)) {
            continue;
        }
        let pullback = if sl < sh {
            (sh + 1..=t).map(|j| low[j]).reduce(f64::min)
        } else {
            (sl + 1..=t).map(|j| high[j]).reduce(f64::max)
        };
        if let Some(s) =
            decide(p, t, &bars[t], (sl, low[sl]), (sh, high[sh]), pullback, rsi_prev, rsi_t, atr_t)
        {
            signalled.insert((sl, sh));
            out.push(s);
        }
    }
    Ok(out)
}
