//! Wilder's RSI and ATR as fib-rsi.md defines them (and TA-Lib computes them), in two shapes:
//! streaming ([`Rsi`], [`Atr`]: one value per pushed bar, O(1) memory) for the engine, and whole
//! series ([`rsi_series`], [`atr_series`]) for the batch transcription. The two are written
//! separately on purpose: the streaming = batch test checks one against the other.
//!
//! Arithmetic, in this order: the seed is the sum of the first `n` values (gains, losses, true
//! ranges) divided by `n`; after it `avg = (avg·(n−1) + x) / n`; RSI is 100 when the average loss
//! is 0, else `100 − 100/(1 + avg_gain/avg_loss)`. (TA-Lib gives 0, not 100, for a perfectly flat
//! series; fib-rsi.md says 100, and we follow fib-rsi.md.)

fn rsi_value(avg_gain: f64, avg_loss: f64) -> f64 {
    if avg_loss == 0.0 { 100.0 } else { 100.0 - 100.0 / (1.0 + avg_gain / avg_loss) }
}

/// Streaming Wilder RSI over closes.
#[derive(Debug, Clone)]
pub struct Rsi {
    n: usize,
    /// Closes seen so far (saturates once the seed is done).
    seen: usize,
    prev_close: f64,
    sum_gain: f64,
    sum_loss: f64,
    avg_gain: f64,
    avg_loss: f64,
}

impl Rsi {
    /// An RSI of period `n ≥ 1`.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            seen: 0,
            prev_close: 0.0,
            sum_gain: 0.0,
            sum_loss: 0.0,
            avg_gain: 0.0,
            avg_loss: 0.0,
        }
    }

    /// Takes the next close; returns the RSI at this bar, `None` before bar `n`.
    pub fn push(&mut self, close: f64) -> Option<f64> {
        let t = self.seen;
        self.seen = self.seen.saturating_add(1);
        if t == 0 {
            self.prev_close = close;
            return None;
        }
        let change = close - self.prev_close;
        self.prev_close = close;
        let (gain, loss) = if change > 0.0 { (change, 0.0) } else { (0.0, -change) };
        let n = self.n as f64;
        if t < self.n {
            self.sum_gain += gain;
            self.sum_loss += loss;
            None
        } else if t == self.n {
            self.avg_gain = (self.sum_gain + gain) / n;
            self.avg_loss = (self.sum_loss + loss) / n;
            Some(rsi_value(self.avg_gain, self.avg_loss))
        } else {
            self.avg_gain = (self.avg_gain * (n - 1.0) + gain) / n;
            self.avg_loss = (self.avg_loss * (n - 1.0) + loss) / n;
            Some(rsi_value(self.avg_gain, self.avg_loss))
        }
    }
}

/// Streaming Wilder ATR over bars.
#[derive(Debug, Clone)]
pub struct Atr {
    n: usize,
    seen: usize,
    prev_close: f64,
    sum_tr: f64,
    atr: f64,
}

impl Atr {
    /// An ATR of period `n ≥ 1`.
    pub fn new(n: usize) -> Self {
        Self { n, seen: 0, prev_close: 0.0, sum_tr: 0.0, atr: 0.0 }
    }

    /// Takes the next bar; returns the ATR at this bar, `None` before bar `n`.
    pub fn push(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let t = self.seen;
        self.seen = self.seen.saturating_add(1);
        let prev = self.prev_close;
        self.prev_close = close;
        if t == 0 {
            return None;
        }
        let tr = (high - low).max((high - prev).abs()).max((low - prev).abs());
        let n = self.n as f64;
        if t < self.n {
            self.sum_tr += tr;
            None
        } else if t == self.n {
            self.atr = (self.sum_tr + tr) / n;
            Some(self.atr)
        } else {
            self.atr = (self.atr * (n - 1.0) + tr) / n;
            Some(self.atr)
        }
    }
}

/// Wilder RSI of period `n ≥ 1` for every bar (`None` before bar `n`).
pub fn rsi_series(closes: &[f64], n: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; closes.len()];
    if closes.len() <= n {
        return out;
    }
    let changes: Vec<f64> = closes.windows(2).map(|w| w[1] - w[0]).collect();
    let gain = |c: f64| if c > 0.0 { c } else { 0.0 };
    let loss = |c: f64| if c > 0.0 { 0.0 } else { -c };
    let nf = n as f64;
    let mut avg_gain = changes[..n].iter().fold(0.0, |s, &c| s + gain(c)) / nf;
    let mut avg_loss = changes[..n].iter().fold(0.0, |s, &c| s + loss(c)) / nf;
    out[n] = Some(rsi_value(avg_gain, avg_loss));
    for t in n + 1..closes.len() {
        let c = changes[t - 1];
        avg_gain = (avg_gain * (nf - 1.0) + gain(c)) / nf;
        avg_loss = (avg_loss * (nf - 1.0) + loss(c)) / nf;
        out[t] = Some(rsi_value(avg_gain, avg_loss));
    }
    out
}

/// Wilder ATR of period `n ≥ 1` for every bar (`None` before bar `n`); the slices are the bars'
/// highs, lows and closes and must have one length.
pub fn atr_series(high: &[f64], low: &[f64], close: &[f64], n: usize) -> Vec<Option<f64>> {
    let len = high.len().min(low.len()).min(close.len());
    let mut out = vec![None; len];
    if len <= n {
        return out;
    }
    let tr = |t: usize| {
        let c = close[t - 1];
        (high[t] - low[t]).max((high[t] - c).abs()).max((low[t] - c).abs())
    };
    let nf = n as f64;
    let mut atr = (1..=n).fold(0.0, |s, t| s + tr(t)) / nf;
    out[n] = Some(atr);
    for (t, slot) in out.iter_mut().enumerate().skip(n + 1) {
        atr = (atr * (nf - 1.0) + tr(t)) / nf;
        *slot = Some(atr);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_equals_series_bit_for_bit() {
        let closes: Vec<f64> = (0..200).map(|i| 1.0 + ((i * 37 % 23) as f64) * 0.001).collect();
        let highs: Vec<f64> = closes.iter().map(|c| c + 0.0007).collect();
        let lows: Vec<f64> = closes.iter().map(|c| c - 0.0009).collect();
        for n in [1, 2, 14, 50] {
            let mut rsi = Rsi::new(n);
            let mut atr = Atr::new(n);
            let streamed_rsi: Vec<_> = closes.iter().map(|&c| rsi.push(c)).collect();
            let streamed_atr: Vec<_> =
                (0..closes.len()).map(|t| atr.push(highs[t], lows[t], closes[t])).collect();
            assert_eq!(streamed_rsi, rsi_series(&closes, n), "rsi n={n}");
            assert_eq!(streamed_atr, atr_series(&highs, &lows, &closes, n), "atr n={n}");
            assert_eq!(streamed_rsi.iter().position(Option::is_some), Some(n));
        }
    }

    #[test]
    fn rsi_edges() {
        // Only gains: the average loss is 0, RSI is 100 (fib-rsi.md).
        let up: Vec<f64> = (0..20).map(f64::from).collect();
        assert_eq!(rsi_series(&up, 14)[14], Some(100.0));
        // Only losses: 0.
        let down: Vec<f64> = (0..20).map(|i| f64::from(-i)).collect();
        assert_eq!(rsi_series(&down, 14)[19], Some(0.0));
        // Too short for a value.
        assert!(rsi_series(&up[..14], 14).iter().all(Option::is_none));
    }
}
