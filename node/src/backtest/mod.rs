//! The backtest: the streaming engine over a bar file, each signal turned into an order by
//! [`crate::orders::build_order`] and followed from the next bar with the protocol's one intrabar
//! rule ([`tradecast_protocol::trade`]), exactly as the simulated terminal will follow it.
//!
//! # Public API
//!
//! - [`Config`] (strategy parameters, timeframe, symbol spec, equity, risk %, split, spread,
//!   commission, the one-position default) and [`run`]`(&bars, &config) -> Result<Backtest, _>`.
//! - [`Backtest`]: every signal with its outcome ([`Outcome::Traded`] with its fills and P&L, or
//!   [`Outcome::Skipped`] with the order builder's reason), the equity curve, and the
//!   [`Summary`] (see [`summary`]).
//!
//! Model, and its limits:
//! - bars are bid prices; the ask is bid + `spread` (constant). A buy fills at the signal bar's
//!   close + spread and closes on bids; a sell fills at the close and closes on asks;
//! - the order is sized on the equity realised so far (closed trades), on the rounded stop, with
//!   the spec's loss tick value, which the backtest also uses for profits (a constant: on a cross
//!   pair the real value drifts with the rate);
//! - commission is account currency per lot, round turn, charged when the trade is done;
//! - a trade still open after the last bar is closed at the last close (`end_of_data`);
//! - times: a trade opens at the signal bar's close and a fill is dated by the close of the bar
//!   it happened in (the bar does not say when inside it), so holding times are upper bounds by
//!   at most one bar.

pub mod summary;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tradecast_protocol::bars::Bar;
use tradecast_protocol::trade::{BarRange, ExitReason, OpenTrade, Part, TradePlan};

use crate::orders::{
    NotDecimal, Order, OrderPolicy, Quote, SignalLevels, Skip, SymbolSpec, build_order,
};
use crate::strategy::{Engine, Params, ParamsError, Side, Signal};
use crate::timeframe::Timeframe;
pub use summary::Summary;
pub use tradecast_protocol::trade::Split;

/// Everything a backtest runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub params: Params,
    pub timeframe: Timeframe,
    pub spec: SymbolSpec,
    /// Starting equity, account currency.
    pub equity: Decimal,
    /// Percent of equity risked per trade.
    pub risk_pct: Decimal,
    pub split: Split,
    /// Ask − bid, in price units (0 by default: the file's prices are taken as fills).
    pub spread: Decimal,
    /// Account currency per lot, round turn.
    pub commission_per_lot: Decimal,
    /// The one-position default: a signal while a trade is open is skipped.
    pub one_position: bool,
}

impl Config {
    /// The defaults for a 5-digit FX pair on a USD account (EURUSD): tick 0.00001 worth 1 USD a
    /// lot, 0.01 lot steps, 10,000 USD equity, 1 % risk, no spread, no commission.
    pub fn fx_defaults() -> Self {
        let d = |m: i64, s: u32| Decimal::new(m, s);
        Self {
            params: Params::default(),
            timeframe: Timeframe::H1,
            spec: SymbolSpec {
                point: d(1, 5),
                tick_size: d(1, 5),
                tick_value_loss: Decimal::ONE,
                volume_min: d(1, 2),
                volume_max: d(100, 0),
                volume_step: d(1, 2),
                stops_level_points: 0,
            },
            equity: d(10_000, 0),
            risk_pct: Decimal::ONE,
            split: Split::Whole,
            spread: Decimal::ZERO,
            commission_per_lot: Decimal::ZERO,
            one_position: true,
        }
    }
}

/// Why a backtest could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BacktestError {
    /// The strategy parameters are unusable.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// A signal level has no decimal (cannot happen with finite prices).
    #[error(transparent)]
    NotDecimal(#[from] NotDecimal),
    /// A money computation overflowed: absurd spec or equity.
    #[error("arithmetic overflow in the backtest ({0})")]
    Overflow(&'static str),
}

/// Why a part of a trade closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    Stop,
    Target,
    BreakEven,
    /// Still open after the last bar: closed at the last close.
    EndOfData,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Stop => "stop",
            CloseReason::Target => "target",
            CloseReason::BreakEven => "break-even",
            CloseReason::EndOfData => "end of data",
        }
    }
}

/// One part of a trade closing.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    /// The bar it happened in.
    pub bar: usize,
    /// That bar's close, unix ms UTC.
    pub time_unix_ms: i64,
    pub part: Part,
    pub reason: CloseReason,
    pub price: Decimal,
    pub volume: Decimal,
    /// Gross P&L of this part, account currency.
    pub pnl_money: Decimal,
}

/// A signal that became a trade, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub order: Order,
    /// Opened at the signal bar's close, unix ms UTC.
    pub open_time_unix_ms: i64,
    pub fills: Vec<Fill>,
    pub commission: Decimal,
    /// Net of commission, account currency.
    pub pnl_money: Decimal,
    /// Net P&L in units of the risk at the stop (`order.risk_money`).
    pub r: f64,
    /// The bar of the last fill and that bar's close.
    pub close_bar: usize,
    pub close_time_unix_ms: i64,
    /// Equity after the trade.
    pub equity_after: Decimal,
}

impl Trade {
    /// The reason of the last fill: how the trade ended.
    pub fn close_reason(&self) -> CloseReason {
        self.fills.last().map_or(CloseReason::EndOfData, |f| f.reason)
    }

    /// The average exit price over the parts, weighted by volume.
    pub fn exit_price(&self) -> Decimal {
        let volume: Decimal = self.fills.iter().map(|f| f.volume).sum();
        if volume.is_zero() {
            return Decimal::ZERO;
        }
        let notional = self.fills.iter().try_fold(Decimal::ZERO, |acc, f| {
            f.price.checked_mul(f.volume).and_then(|x| acc.checked_add(x))
        });
        notional.and_then(|n| n.checked_div(volume)).unwrap_or(Decimal::ZERO)
    }
}

/// What became of a signal.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Traded(Trade),
    Skipped(Skip),
}

/// A signal and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRow {
    pub signal: Signal,
    /// The close of bar t+1, unix ms UTC (fib-rsi.md, The signal).
    pub expires_unix_ms: i64,
    pub outcome: Outcome,
}

/// Realised equity after each fill (and at the start).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EquityPoint {
    pub bar: usize,
    pub time_unix_ms: i64,
    pub equity: f64,
}

/// A finished backtest.
#[derive(Debug, Clone, PartialEq)]
pub struct Backtest {
    pub n_bars: usize,
    pub rows: Vec<SignalRow>,
    pub equity: Vec<EquityPoint>,
    pub summary: Summary,
}

impl Backtest {
    /// The trades, in order.
    pub fn trades(&self) -> impl Iterator<Item = &Trade> {
        self.rows.iter().filter_map(|r| match &r.outcome {
            Outcome::Traded(t) => Some(t),
            Outcome::Skipped(_) => None,
        })
    }
}

/// A trade being followed.
struct Live {
    row: usize,
    order: Order,
    follow: OpenTrade<Decimal>,
    fills: Vec<Fill>,
    open_time_unix_ms: i64,
}

/// `a + b`, or an error instead of rust_decimal's panic when absurd prices overflow.
fn add(a: Decimal, b: Decimal) -> Result<Decimal, BacktestError> {
    a.checked_add(b).ok_or(BacktestError::Overflow("a price or the equity"))
}

fn dec_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// Runs the backtest over `bars` (oldest first, as the reader returns them).
pub fn run(bars: &[Bar], config: &Config) -> Result<Backtest, BacktestError> {
    let mut engine = Engine::new(config.params)?;
    let tf_ms = config.timeframe.duration_ms();
    let min_rr = crate::orders::decimal_8("min_rr", config.params.min_rr)?;
    let spread = config.spread;
    let spec = &config.spec;
    let mut balance = config.equity;
    let mut rows: Vec<SignalRow> = Vec::new();
    let mut live: Vec<Live> = Vec::new();
    let mut equity = vec![EquityPoint {
        bar: 0,
        time_unix_ms: bars.first().map_or(0, |b| b.time_unix_ms),
        equity: dec_f64(balance),
    }];

    let pnl = |side: Side,
               entry: Decimal,
               price: Decimal,
               volume: Decimal|
     -> Result<Decimal, BacktestError> {
        let dir = if side == Side::Buy { Decimal::ONE } else { Decimal::NEGATIVE_ONE };
        price
            .checked_sub(entry)
            .map(|d| d * dir)
            .and_then(|d| d.checked_div(spec.tick_size))
            .and_then(|ticks| ticks.checked_mul(spec.tick_value_loss))
            .and_then(|per_lot| per_lot.checked_mul(volume))
            .ok_or(BacktestError::Overflow("P&L"))
    };
    let part_volume = |order: &Order, part: Part| match part {
        Part::Whole => order.volume,
        Part::First => order.legs.first().map_or(order.volume, |l| l.volume),
        Part::Second => order.legs.get(1).map_or(order.volume, |l| l.volume),
    };

    let finish =
        |l: Live, balance: &mut Decimal, rows: &mut Vec<SignalRow>| -> Result<(), BacktestError> {
            let commission = config
                .commission_per_lot
                .checked_mul(l.order.volume)
                .ok_or(BacktestError::Overflow("commission"))?;
            *balance = balance.checked_sub(commission).ok_or(BacktestError::Overflow("equity"))?;
            let gross = l
                .fills
                .iter()
                .try_fold(Decimal::ZERO, |acc, f| acc.checked_add(f.pnl_money))
                .ok_or(BacktestError::Overflow("P&L"))?;
            let net = gross.checked_sub(commission).ok_or(BacktestError::Overflow("P&L"))?;
            let risk = l.order.risk_money;
            let r = if risk.is_zero() { 0.0 } else { dec_f64(net) / dec_f64(risk) };
            let last = l.fills.last().map_or((0, 0), |f| (f.bar, f.time_unix_ms));
            rows[l.row].outcome = Outcome::Traded(Trade {
                order: l.order,
                open_time_unix_ms: l.open_time_unix_ms,
                fills: l.fills,
                commission,
                pnl_money: net,
                r,
                close_bar: last.0,
                close_time_unix_ms: last.1,
                equity_after: *balance,
            });
            Ok(())
        };

    for (i, bar) in bars.iter().enumerate() {
        let close_ms = bar.time_unix_ms + tf_ms;
        // 1. Follow the open trades through this bar.
        let mut k = 0;
        while k < live.len() {
            let l = &mut live[k];
            let shift = if l.order.side == Side::Sell { spread } else { Decimal::ZERO };
            let range = BarRange {
                open: add(bar.open, shift)?,
                high: add(bar.high, shift)?,
                low: add(bar.low, shift)?,
            };
            let step = l.follow.on_bar(&range);
            for e in step.exits() {
                let volume = part_volume(&l.order, e.part);
                let money = pnl(l.order.side, l.order.fill_ref, e.price, volume)?;
                balance = add(balance, money)?;
                l.fills.push(Fill {
                    bar: i,
                    time_unix_ms: close_ms,
                    part: e.part,
                    reason: match e.reason {
                        ExitReason::Stop => CloseReason::Stop,
                        ExitReason::Target => CloseReason::Target,
                        ExitReason::BreakEven => CloseReason::BreakEven,
                    },
                    price: e.price,
                    volume,
                    pnl_money: money,
                });
            }
            if l.follow.is_closed() {
                let done = live.swap_remove(k);
                finish(done, &mut balance, &mut rows)?;
            } else {
                k += 1;
            }
            if !step.is_empty() {
                equity.push(EquityPoint {
                    bar: i,
                    time_unix_ms: close_ms,
                    equity: dec_f64(balance),
                });
            }
        }

        // 2. The strategy at this bar's close.
        let Some(signal) = engine.push(&bar.to_f64()) else { continue };
        let expires_unix_ms = signal.expires_unix_ms(config.timeframe);
        let levels = SignalLevels::from_signal(&signal, expires_unix_ms)?;
        let quote = Quote { bid: bar.close, ask: add(bar.close, spread)? };
        let policy = OrderPolicy {
            equity: balance,
            risk_pct: config.risk_pct,
            min_rr,
            split: config.split,
            one_position: config.one_position,
            open_positions: live.len(),
            now_unix_ms: close_ms,
        };
        let row = rows.len();
        match build_order(&levels, spec, &quote, &policy) {
            Ok(order) => {
                let plan = TradePlan {
                    side: order.side,
                    entry: order.fill_ref,
                    stop: order.stop,
                    tp1: order.tp1,
                    tp2: order.tp2,
                    split: config.split,
                };
                rows.push(SignalRow {
                    signal,
                    expires_unix_ms,
                    // Replaced when the trade is done.
                    outcome: Outcome::Skipped(Skip::PositionOpen { open: 0 }),
                });
                live.push(Live {
                    row,
                    order,
                    follow: OpenTrade::new(plan),
                    fills: Vec::new(),
                    open_time_unix_ms: close_ms,
                });
            }
            Err(skip) => {
                rows.push(SignalRow { signal, expires_unix_ms, outcome: Outcome::Skipped(skip) })
            }
        }
    }

    // 3. Whatever is still open closes at the last close.
    if let Some((last_i, last)) = bars.iter().enumerate().next_back() {
        let close_ms = last.time_unix_ms + tf_ms;
        for mut l in std::mem::take(&mut live) {
            let price =
                if l.order.side == Side::Sell { add(last.close, spread)? } else { last.close };
            let parts: Vec<Part> = match (config.split, l.fills.is_empty()) {
                (Split::Whole, _) => vec![Part::Whole],
                (Split::Halves, true) => vec![Part::First, Part::Second],
                (Split::Halves, false) => vec![Part::Second],
            };
            for part in parts {
                let volume = part_volume(&l.order, part);
                let money = pnl(l.order.side, l.order.fill_ref, price, volume)?;
                balance = add(balance, money)?;
                l.fills.push(Fill {
                    bar: last_i,
                    time_unix_ms: close_ms,
                    part,
                    reason: CloseReason::EndOfData,
                    price,
                    volume,
                    pnl_money: money,
                });
            }
            finish(l, &mut balance, &mut rows)?;
            equity.push(EquityPoint {
                bar: last_i,
                time_unix_ms: close_ms,
                equity: dec_f64(balance),
            });
        }
    }

    // The curve runs to the end of the data, so it lines up with the price chart.
    if let Some(last) = bars.last() {
        let end_ms = last.time_unix_ms + tf_ms;
        if equity.last().is_some_and(|p| p.time_unix_ms < end_ms) {
            equity.push(EquityPoint {
                bar: bars.len() - 1,
                time_unix_ms: end_ms,
                equity: dec_f64(balance),
            });
        }
    }
    let summary = Summary::of(bars.len(), &rows, config.equity);
    Ok(Backtest { n_bars: bars.len(), rows, equity, summary })
}
