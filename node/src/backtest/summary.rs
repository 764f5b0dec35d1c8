//! The backtest's summary: the figures a trader asks first, in R (multiples of the risk at the
//! stop) and in account currency. Computed from the trades alone, so it can be recomputed from a
//! saved list.
//!
//! Definitions: a win is a trade with positive net P&L, a loss one with negative (a trade at
//! exactly 0 is neither); profit factor is gross wins over gross losses (`None` without a loss);
//! expectancy is the mean net result per trade; max drawdown is the largest fall from a running
//! peak of the cumulative R (starting at 0) and of realised equity (starting at the initial
//! equity), after each trade; holding time runs from the signal bar's close to the close of the
//! bar of the last fill.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::{Outcome, SignalRow};

/// The figures of one backtest.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub n_bars: usize,
    pub n_signals: usize,
    pub n_trades: usize,
    /// Signals the order builder skipped (position open, lot below minimum, …).
    pub n_skipped: usize,
    pub n_wins: usize,
    pub n_losses: usize,
    /// Wins over trades, 0..=1.
    pub win_rate: f64,
    pub profit_factor_r: Option<f64>,
    pub profit_factor_money: Option<f64>,
    pub expectancy_r: f64,
    pub expectancy_money: f64,
    pub total_r: f64,
    pub net_profit_money: f64,
    pub commission_money: f64,
    pub initial_equity: f64,
    pub final_equity: f64,
    pub max_drawdown_r: f64,
    pub max_drawdown_money: f64,
    /// The money drawdown as a percentage of the peak it fell from.
    pub max_drawdown_pct: f64,
    pub longest_losing_streak: usize,
    pub avg_holding_hours: f64,
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// The largest peak-to-trough fall of `start` followed by the running sum of `steps`, and the
/// peak it fell from.
fn max_drawdown(start: f64, steps: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut level, mut peak, mut worst, mut worst_peak) = (start, start, 0.0_f64, start);
    for s in steps {
        level += s;
        peak = peak.max(level);
        if peak - level > worst {
            worst = peak - level;
            worst_peak = peak;
        }
    }
    (worst, worst_peak)
}

impl Summary {
    /// The summary of `rows` over `n_bars` bars, from `initial_equity`.
    pub fn of(n_bars: usize, rows: &[SignalRow], initial_equity: Decimal) -> Self {
        let trades: Vec<_> = rows
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Traded(t) => Some(t),
                Outcome::Skipped(_) => None,
            })
            .collect();
        let n = trades.len();
        let nf = n.max(1) as f64;
        let rs: Vec<f64> = trades.iter().map(|t| t.r).collect();
        let money: Vec<f64> = trades.iter().map(|t| f(t.pnl_money)).collect();
        let pf = |xs: &[f64]| {
            let won = xs.iter().filter(|x| **x > 0.0).fold(0.0, |a, x| a + x);
            let lost = -xs.iter().filter(|x| **x < 0.0).fold(0.0, |a, x| a + x);
            (lost > 0.0).then(|| won / lost)
        };
        let mut streak = 0;
        let mut longest = 0;
        for m in &money {
            streak = if *m < 0.0 { streak + 1 } else { 0 };
            longest = longest.max(streak);
        }
        let initial = f(initial_equity);
        let (dd_r, _) = max_drawdown(0.0, rs.iter().copied());
        let (dd_money, dd_peak) = max_drawdown(initial, money.iter().copied());
        let held_ms: i64 = trades.iter().map(|t| t.close_time_unix_ms - t.open_time_unix_ms).sum();
        // Folds from +0.0: `Sum` for f64 starts at −0.0, which prints as "-0.00".
        let sum = |xs: &[f64]| xs.iter().fold(0.0, |a, x| a + x);
        let net = sum(&money);
        Self {
            n_bars,
            n_signals: rows.len(),
            n_trades: n,
            n_skipped: rows.len() - n,
            n_wins: money.iter().filter(|m| **m > 0.0).count(),
            n_losses: money.iter().filter(|m| **m < 0.0).count(),
            win_rate: money.iter().filter(|m| **m > 0.0).count() as f64 / nf,
            profit_factor_r: pf(&rs),
            profit_factor_money: pf(&money),
            expectancy_r: sum(&rs) / nf,
            expectancy_money: net / nf,
            total_r: sum(&rs),
            net_profit_money: net,
            commission_money: trades.iter().fold(0.0, |a, t| a + f(t.commission)),
            initial_equity: initial,
            final_equity: initial + net,
            max_drawdown_r: dd_r,
            max_drawdown_money: dd_money,
            max_drawdown_pct: if dd_peak > 0.0 { dd_money / dd_peak * 100.0 } else { 0.0 },
            longest_losing_streak: longest,
            avg_holding_hours: held_ms as f64 / 3_600_000.0 / nf,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawdown_from_a_running_peak() {
        assert_eq!(max_drawdown(0.0, [1.0, -1.0, 2.0, -1.5, -1.0, 3.0].into_iter()), (2.5, 2.0));
        assert_eq!(max_drawdown(100.0, [-10.0].into_iter()), (10.0, 100.0));
        assert_eq!(max_drawdown(100.0, [5.0, 5.0].into_iter()), (0.0, 100.0));
    }
}
