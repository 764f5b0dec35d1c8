//! The backtest on the EURUSD sample: each trade re-followed here by a plain loop over the bars,
//! money adding up, spread, commission and the tp1/tp2 split doing what they say.

use rust_decimal::Decimal;
use tradecast_node::backtest::{self, Backtest, CloseReason, Config, Outcome, Split};
use tradecast_node::orders::Skip;
use tradecast_node::strategy::{self, Params, Side};
use tradecast_node::synthetic;
use tradecast_protocol::bars::Bar;
use tradecast_protocol::trade::Part;

use crate::{eurusd, to_f64};

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal literal")
}

fn run(config: &Config) -> (Vec<Bar>, Backtest) {
    let bars = eurusd();
    let result = backtest::run(&bars, config).expect("the backtest runs");
    (bars, result)
}

/// The first bar after `from` that reaches the stop or the target, written out for a whole
/// position: (bar, reason, price). Buy levels compare with bids, sell levels with asks.
fn first_exit(
    bars: &[Bar],
    from: usize,
    side: Side,
    stop: Decimal,
    target: Decimal,
    spread: Decimal,
) -> Option<(usize, CloseReason, Decimal)> {
    for (i, b) in bars.iter().enumerate().skip(from + 1) {
        let (open, high, low) = match side {
            Side::Buy => (b.open, b.high, b.low),
            Side::Sell => (b.open + spread, b.high + spread, b.low + spread),
        };
        let (hit_stop, hit_target) = match side {
            Side::Buy => (low <= stop, high >= target),
            Side::Sell => (high >= stop, low <= target),
        };
        if hit_stop {
            let gap = if side == Side::Buy { open < stop } else { open > stop };
            return Some((i, CloseReason::Stop, if gap { open } else { stop }));
        }
        if hit_target {
            let gap = if side == Side::Buy { open > target } else { open < target };
            return Some((i, CloseReason::Target, if gap { open } else { target }));
        }
    }
    None
}

fn check_trades_by_hand(config: &Config) {
    let (bars, result) = run(config);
    let mut n = 0;
    for row in &result.rows {
        let Outcome::Traded(t) = &row.outcome else { continue };
        n += 1;
        let o = &t.order;
        let spread = config.spread;
        let fill = if o.side == Side::Buy {
            bars[row.signal.bar].close + spread
        } else {
            bars[row.signal.bar].close
        };
        assert_eq!(o.fill_ref, fill, "bar {}", row.signal.bar);
        let want = first_exit(&bars, row.signal.bar, o.side, o.stop, o.tp1, spread);
        let got = t.fills.first().map(|f| (f.bar, f.reason, f.price));
        match want {
            Some(w) => assert_eq!(got, Some(w), "signal at bar {}", row.signal.bar),
            None => assert_eq!(t.close_reason(), CloseReason::EndOfData),
        }
        let dir = if o.side == Side::Buy { Decimal::ONE } else { Decimal::NEGATIVE_ONE };
        let ticks = (t.fills[0].price - o.fill_ref) * dir / config.spec.tick_size;
        assert_eq!(t.fills[0].pnl_money, ticks * config.spec.tick_value_loss * o.volume);
        assert_eq!(t.commission, config.commission_per_lot * o.volume);
        assert_eq!(t.pnl_money, t.fills[0].pnl_money - t.commission);
    }
    assert!(n >= 15, "only {n} trades");
}

#[test]
fn each_trade_matches_a_plain_walk_over_the_bars() {
    check_trades_by_hand(&Config::fx_defaults());
}

#[test]
fn spread_and_commission() {
    let config =
        Config { spread: d("0.00015"), commission_per_lot: d("7"), ..Config::fx_defaults() };
    check_trades_by_hand(&config);
    let (_, with_costs) = run(&config);
    let (_, without) = run(&Config::fx_defaults());
    assert!(with_costs.summary.commission_money > 0.0);
    assert!(with_costs.summary.expectancy_r < without.summary.expectancy_r);
}

#[test]
fn signals_are_the_strategy_signals_and_money_adds_up() {
    let (bars, result) = run(&Config::fx_defaults());
    let signals = strategy::run(&to_f64(&bars), &Params::default()).expect("valid params");
    let ours: Vec<_> = result.rows.iter().map(|r| r.signal).collect();
    assert_eq!(ours, signals);
    let s = &result.summary;
    assert_eq!(s.n_signals, 20);
    assert_eq!(s.n_trades + s.n_skipped, 20);
    // Skips on the sample come from the one-position default only.
    for row in &result.rows {
        if let Outcome::Skipped(why) = &row.outcome {
            assert!(matches!(why, Skip::PositionOpen { .. }), "{why}");
        }
    }
    let net: Decimal = result.trades().map(|t| t.pnl_money).sum();
    let last = result.trades().last().expect("trades").equity_after;
    assert_eq!(last, Decimal::from(10_000) + net);
    assert!((s.final_equity - (10_000.0 + s.net_profit_money)).abs() < 1e-6);

    // The summary's figures recomputed from the trade list.
    let rs: Vec<f64> = result.trades().map(|t| t.r).collect();
    let wins = rs.iter().filter(|r| **r > 0.0).count();
    assert_eq!(s.n_wins, wins);
    assert!((s.win_rate - wins as f64 / rs.len() as f64).abs() < 1e-12);
    assert!((s.expectancy_r - rs.iter().sum::<f64>() / rs.len() as f64).abs() < 1e-12);
    let mut streak = 0;
    let mut longest = 0;
    for r in &rs {
        streak = if *r < 0.0 { streak + 1 } else { 0 };
        longest = longest.max(streak);
    }
    assert_eq!(s.longest_losing_streak, longest);
    let (mut cum, mut peak, mut dd) = (0.0_f64, 0.0_f64, 0.0_f64);
    for r in &rs {
        cum += r;
        peak = peak.max(cum);
        dd = dd.max(peak - cum);
    }
    assert!((s.max_drawdown_r - dd).abs() < 1e-12);
    let won: f64 = rs.iter().filter(|r| **r > 0.0).sum();
    let lost: f64 = -rs.iter().filter(|r| **r < 0.0).sum::<f64>();
    assert!((s.profit_factor_r.expect("losses") - won / lost).abs() < 1e-12);
    // With a 1 % risk, a full loss is about −1 R and about −1 % of equity.
    for t in result.trades().filter(|t| t.close_reason() == CloseReason::Stop) {
        assert!((t.r + 1.0).abs() < 0.01, "a stop is −1 R: {}", t.r);
    }
    assert!(s.avg_holding_hours >= 1.0);
}

#[test]
fn split_halves_follow_tp1_then_tp2_or_break_even() {
    let config = Config { split: Split::Halves, ..Config::fx_defaults() };
    let (_, result) = run(&config);
    let mut seen_tp1 = 0;
    for t in result.trades() {
        assert_eq!(t.order.legs.len(), 2);
        match t.fills.as_slice() {
            [whole] => {
                assert_eq!(whole.part, Part::Whole);
                assert!(matches!(whole.reason, CloseReason::Stop | CloseReason::EndOfData));
            }
            [first, second] => {
                seen_tp1 += 1;
                assert_eq!(
                    (first.part, first.reason, first.price),
                    (Part::First, CloseReason::Target, t.order.tp1)
                );
                assert_eq!(second.part, Part::Second);
                match second.reason {
                    CloseReason::Target => assert_eq!(second.price, t.order.tp2),
                    CloseReason::BreakEven => assert!(second.bar > first.bar),
                    CloseReason::EndOfData => {}
                    CloseReason::Stop => panic!("the second half's stop is at the entry after tp1"),
                }
                assert_eq!(first.volume, second.volume);
            }
            other => panic!("unexpected fills {other:?}"),
        }
    }
    assert!(seen_tp1 > 0, "no trade reached tp1 with halves");
}

#[test]
fn overlap_allowed_trades_every_signal() {
    let config = Config { one_position: false, ..Config::fx_defaults() };
    let (_, result) = run(&config);
    assert_eq!(result.summary.n_trades, 20);
}

#[test]
fn a_long_generated_series_runs_and_adds_up() {
    let bars = synthetic::bars(200_000, 11, 5);
    let result = backtest::run(&bars, &Config::fx_defaults()).expect("runs");
    let s = &result.summary;
    assert!(s.n_trades > 100, "{} trades", s.n_trades);
    let net: f64 =
        result.trades().map(|t| t.pnl_money.to_string().parse::<f64>().expect("decimal")).sum();
    assert!((s.net_profit_money - net).abs() < 1e-6);
    assert!(s.max_drawdown_pct >= 0.0 && s.max_drawdown_pct <= 100.0);
}

#[test]
fn absurd_prices_are_an_error_not_a_panic() {
    // A generated series scaled to ~10^28, near rust_decimal's limit: the strategy still sees
    // legs (f64 keeps the shape), and every money and price step must fail cleanly.
    let scale = Decimal::from_i128_with_scale(10_i128.pow(23), 0);
    let bars: Vec<Bar> = synthetic::bars(5_000, 3, 2)
        .into_iter()
        .map(|b| {
            let up = |p: Decimal| (p * Decimal::ONE_HUNDRED).trunc() * scale;
            Bar { open: up(b.open), high: up(b.high), low: up(b.low), close: up(b.close), ..b }
        })
        .collect();
    let signals = strategy::run(&to_f64(&bars), &Params::default()).expect("valid params");
    assert!(!signals.is_empty(), "the scaled series must still give signals");
    // Ticks of 0.00001 on 10^28 prices overflow in the order builder: each signal is skipped
    // with that reason, and no trade is invented.
    let plain = backtest::run(&bars, &Config::fx_defaults()).expect("skips, not errors");
    assert_eq!(plain.rows.len(), signals.len());
    for row in &plain.rows {
        match &row.outcome {
            Outcome::Skipped(Skip::Overflow { .. }) => {}
            other => panic!("expected an overflow skip, got {other:?}"),
        }
    }
    assert_eq!(plain.summary.expectancy_r.to_bits(), 0.0_f64.to_bits(), "no -0.0 in the summary");
    let config = Config { spread: d("70000000000000000000000000000"), ..Config::fx_defaults() };
    let err = backtest::run(&bars, &config).expect_err("the ask overflows");
    assert_eq!(err.to_string(), "arithmetic overflow in the backtest (a price or the equity)");
}
