//! Orders from signals: the one pure function that turns a signal into the order(s) a trader's
//! account sends, or a reason not to send any. It is where the strategy's f64 world ends:
//! everything here is an exact `Decimal` (ARCHITECTURE.md: prices and money are never f64).
//!
//! # Public API
//!
//! - [`SignalLevels`]: side, entry, stop, tp1, tp2 and expiry as decimals;
//!   [`SignalLevels::from_signal`] rounds the strategy's f64 values to 8 places (fib-rsi.md,
//!   Arithmetic: the wire carries 8-place decimals).
//! - [`SymbolSpec`]: the broker's contract for the symbol, as MT5 reports it (tick size, the
//!   loss tick value in account currency, volume min/max/step, stops level in points).
//! - [`build_order`]`(&signal, &spec, &quote, &account, &policy) -> Result<Order, Skip>`.
//!
//! What it does, in order, each step a [`Skip`] when it fails (never a silent adjustment that adds
//! risk):
//! 1. inputs make sense (positive tick size, volumes, equity, risk); the signal has not expired
//!    (market clock); the one-position default: no order while a position on the symbol is open;
//! 2. prices rounded to the tick size: the stop away from the entry (down for a buy, up for a
//!    sell), the targets toward it (down for a buy, up for a sell), so rounding never widens a
//!    target or tightens the risk the lot was sized for;
//! 3. the fill is the current ask (buy) or bid (sell); the stop and tp1 must lie on their sides of
//!    it and at least the broker's stops level away (MT5 measures a buy's levels from the bid, a
//!    sell's from the ask);
//! 4. reward/risk to tp1 from the fill, after rounding, not below the minimum;
//! 5. the lot: risk % of equity over the loss of one lot at the rounded stop, with the broker's
//!    *current* loss tick value (on a cross pair it moves with the quote currency's rate, so the
//!    caller passes today's, not a constant), rounded *down* to the volume step and clamped down
//!    to the maximum; below the minimum it is skipped with a reason, never rounded up into more
//!    risk than the trader allowed;
//! 6. the split option: two halves (tp1 and tp2), each rounded down to the step and each at least
//!    the minimum, or skipped.

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use std::fmt;

use crate::strategy::{Side, Signal};
pub use tradecast_protocol::trade::Split;

/// A signal's levels as exact decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalLevels {
    pub side: Side,
    /// The price the signal was computed at (the signal bar's close).
    pub entry: Decimal,
    pub stop: Decimal,
    pub tp1: Decimal,
    pub tp2: Decimal,
    /// When the signal stops being actionable: unix ms, market clock.
    pub expires_unix_ms: i64,
}

/// A strategy value that has no decimal (NaN or out of range).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{field} = {value} has no decimal representation")]
pub struct NotDecimal {
    /// Which level.
    pub field: &'static str,
    pub value: f64,
}

/// `value` rounded to 8 decimal places (half to even, on the exact binary value), the form the
/// wire carries strategy prices in.
pub fn decimal_8(field: &'static str, value: f64) -> Result<Decimal, NotDecimal> {
    // `Decimal::from_f64` is exact-enough only for short values; going through the 8-place
    // rendering of the exact binary value gives the same decimal on every platform.
    if !value.is_finite() {
        return Err(NotDecimal { field, value });
    }
    format!("{value:.8}")
        .parse::<Decimal>()
        .ok()
        .or_else(|| Decimal::from_f64(value).map(|d| d.round_dp(8)))
        .ok_or(NotDecimal { field, value })
}

impl SignalLevels {
    /// The signal's levels rounded to 8 decimal places, as the wire carries them.
    pub fn from_signal(signal: &Signal, expires_unix_ms: i64) -> Result<Self, NotDecimal> {
        Ok(Self {
            side: signal.side,
            entry: decimal_8("entry", signal.entry)?,
            stop: decimal_8("stop", signal.stop)?,
            tp1: decimal_8("tp1", signal.tp1)?,
            tp2: decimal_8("tp2", signal.tp2)?,
            expires_unix_ms,
        })
    }
}

/// The broker's contract for one symbol (MT5's `SYMBOL_*` properties).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SymbolSpec {
    /// `SYMBOL_POINT`: the unit of the stops level (10^-digits).
    pub point: Decimal,
    /// `SYMBOL_TRADE_TICK_SIZE`: the smallest price change; prices are multiples of it. Equal to
    /// the point on FX, larger on many indices (0.25 on a US500 CFD quoted to 0.01).
    pub tick_size: Decimal,
    /// `SYMBOL_TRADE_TICK_VALUE_LOSS`: account currency lost per tick per 1.0 lot. It changes
    /// with the exchange rate when the profit currency is not the account currency (EURJPY on a
    /// USD account), so pass the broker's current value.
    pub tick_value_loss: Decimal,
    /// `SYMBOL_VOLUME_MIN`, `SYMBOL_VOLUME_MAX`, `SYMBOL_VOLUME_STEP`, in lots.
    pub volume_min: Decimal,
    pub volume_max: Decimal,
    pub volume_step: Decimal,
    /// `SYMBOL_TRADE_STOPS_LEVEL`: the minimum distance of a stop or target from the price, in
    /// points.
    pub stops_level_points: u32,
}

/// The current quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub bid: Decimal,
    pub ask: Decimal,
}

/// The account and the trader's rules the order is built under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderPolicy {
    /// Equity in account currency.
    pub equity: Decimal,
    /// Percent of equity risked at the stop (1 = 1 %).
    pub risk_pct: Decimal,
    /// Minimum reward/risk to tp1, measured from the fill after rounding.
    pub min_rr: Decimal,
    pub split: Split,
    /// The one-position default: no new order while one on the symbol is open.
    pub one_position: bool,
    /// Positions Tradecast holds on this symbol now.
    pub open_positions: usize,
    /// Now, market clock, unix ms.
    pub now_unix_ms: i64,
}

/// One market order to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderLeg {
    /// Lots, a multiple of the volume step, at least the minimum.
    pub volume: Decimal,
    pub stop: Decimal,
    pub take_profit: Decimal,
}

/// The order(s) for one signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub side: Side,
    /// The price the lot was sized at: the ask for a buy, the bid for a sell.
    pub fill_ref: Decimal,
    /// Rounded levels.
    pub stop: Decimal,
    pub tp1: Decimal,
    pub tp2: Decimal,
    /// One leg ([`Split::Whole`]) or two ([`Split::Halves`]: tp1 then tp2).
    pub legs: Vec<OrderLeg>,
    /// Total lots over the legs.
    pub volume: Decimal,
    /// Account currency lost if the stop is hit at its price: volume × ticks × loss tick value.
    pub risk_money: Decimal,
    /// Reward/risk to tp1 from the fill.
    pub rr: Decimal,
    pub expires_unix_ms: i64,
}

/// Why a signal gives no order. Every skip names the numbers that decided it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Skip {
    /// A spec or policy value that cannot be right (zero tick size, negative equity, …).
    #[error("invalid {field}: {value}")]
    Invalid { field: &'static str, value: String },
    /// The signal's expiry has passed (market clock).
    #[error("expired at {expires_unix_ms} ms, now {now_unix_ms} ms")]
    Expired { expires_unix_ms: i64, now_unix_ms: i64 },
    /// The one-position default and a position is open.
    #[error("a position on the symbol is already open ({open} open)")]
    PositionOpen { open: usize },
    /// The market has already moved through the stop or the target.
    #[error("{level} {price} is on the wrong side of the fill {fill}")]
    WrongSide { level: &'static str, price: Decimal, fill: Decimal },
    /// A level closer to the price than the broker's stops level.
    #[error(
        "{level} is {distance_points} points from the price, the broker's stops level is {stops_level_points}"
    )]
    TooClose { level: &'static str, distance_points: Decimal, stops_level_points: u32 },
    /// Reward/risk to tp1 below the minimum after rounding and spread.
    #[error("reward/risk {rr} is below the minimum {min_rr}")]
    RewardRisk { rr: Decimal, min_rr: Decimal },
    /// The lot the risk allows is below the broker's minimum (or the halves are).
    #[error(
        "{what} {lots} lots is below the broker's minimum {volume_min} (risk {risk_money} allows no more)"
    )]
    BelowMinimumVolume {
        what: &'static str,
        lots: Decimal,
        volume_min: Decimal,
        risk_money: Decimal,
    },
    /// A computation overflowed the decimal range: absurd inputs.
    #[error("arithmetic overflow computing {what}")]
    Overflow { what: &'static str },
}

/// Rounds `x` down (toward −∞) to a multiple of `step > 0`.
fn floor_to(x: Decimal, step: Decimal) -> Option<Decimal> {
    x.checked_div(step)?.floor().checked_mul(step)
}

/// Rounds `x` up (toward +∞) to a multiple of `step > 0`.
fn ceil_to(x: Decimal, step: Decimal) -> Option<Decimal> {
    x.checked_div(step)?.ceil().checked_mul(step)
}

fn positive(field: &'static str, value: Decimal) -> Result<(), Skip> {
    if value > Decimal::ZERO {
        Ok(())
    } else {
        Err(Skip::Invalid { field, value: value.to_string() })
    }
}

/// Builds the order for `signal` on `spec` at `quote` under `policy` (see the module comment).
pub fn build_order(
    signal: &SignalLevels,
    spec: &SymbolSpec,
    quote: &Quote,
    policy: &OrderPolicy,
) -> Result<Order, Skip> {
    let overflow = |what| Skip::Overflow { what };
    positive("tick_size", spec.tick_size)?;
    positive("point", spec.point)?;
    positive("tick_value_loss", spec.tick_value_loss)?;
    positive("volume_step", spec.volume_step)?;
    positive("volume_min", spec.volume_min)?;
    positive("equity", policy.equity)?;
    positive("risk_pct", policy.risk_pct)?;
    positive("bid", quote.bid)?;
    positive("ask", quote.ask)?;
    if spec.volume_max < spec.volume_min {
        return Err(Skip::Invalid { field: "volume_max", value: spec.volume_max.to_string() });
    }
    if policy.risk_pct > Decimal::ONE_HUNDRED {
        return Err(Skip::Invalid { field: "risk_pct", value: policy.risk_pct.to_string() });
    }
    if quote.ask < quote.bid {
        return Err(Skip::Invalid {
            field: "ask",
            value: format!("{} below bid {}", quote.ask, quote.bid),
        });
    }
    if policy.now_unix_ms >= signal.expires_unix_ms {
        return Err(Skip::Expired {
            expires_unix_ms: signal.expires_unix_ms,
            now_unix_ms: policy.now_unix_ms,
        });
    }
    if policy.one_position && policy.open_positions > 0 {
        return Err(Skip::PositionOpen { open: policy.open_positions });
    }

    // 2. Ticks: stop away from the entry, targets toward it.
    let tick = spec.tick_size;
    let (stop, tp1, tp2) = match signal.side {
        Side::Buy => {
            (floor_to(signal.stop, tick), floor_to(signal.tp1, tick), floor_to(signal.tp2, tick))
        }
        Side::Sell => {
            (ceil_to(signal.stop, tick), ceil_to(signal.tp1, tick), ceil_to(signal.tp2, tick))
        }
    };
    let (stop, tp1, tp2) = (
        stop.ok_or(overflow("the stop"))?,
        tp1.ok_or(overflow("tp1"))?,
        tp2.ok_or(overflow("tp2"))?,
    );

    // 3. Sides and the stops level.
    let (fill, level_ref) = match signal.side {
        Side::Buy => (quote.ask, quote.bid),
        Side::Sell => (quote.bid, quote.ask),
    };
    // Signed distances in the position's favour: positive when the level is where it belongs.
    let dir = match signal.side {
        Side::Buy => Decimal::ONE,
        Side::Sell => Decimal::NEGATIVE_ONE,
    };
    let diff = |a: Decimal, b: Decimal| {
        a.checked_sub(b).map(|d| d * dir).ok_or(overflow("a price distance"))
    };
    let risk_per_unit = diff(fill, stop)?;
    let reward_per_unit = diff(tp1, fill)?;
    if risk_per_unit <= Decimal::ZERO {
        return Err(Skip::WrongSide { level: "stop", price: stop, fill });
    }
    if reward_per_unit <= Decimal::ZERO {
        return Err(Skip::WrongSide { level: "tp1", price: tp1, fill });
    }
    let min_distance = spec
        .point
        .checked_mul(Decimal::from(spec.stops_level_points))
        .ok_or(overflow("the stops level"))?;
    // MT5 measures a buy's levels from the bid, a sell's from the ask; `dir` makes each distance
    // positive when the level lies where it belongs.
    let mut distances = vec![("stop", diff(level_ref, stop)?), ("tp1", diff(tp1, level_ref)?)];
    if policy.split == Split::Halves {
        distances.push(("tp2", diff(tp2, level_ref)?));
    }
    for (level, distance) in distances {
        if distance < min_distance {
            let distance_points = distance.checked_div(spec.point).ok_or(overflow("a distance"))?;
            return Err(Skip::TooClose {
                level,
                distance_points,
                stops_level_points: spec.stops_level_points,
            });
        }
    }

    // 4. Reward/risk after rounding and spread.
    let rr = reward_per_unit.checked_div(risk_per_unit).ok_or(overflow("reward/risk"))?;
    if rr < policy.min_rr {
        return Err(Skip::RewardRisk { rr: rr.round_dp(4), min_rr: policy.min_rr });
    }

    // 5. The lot, on the rounded stop with the current loss tick value.
    let risk_money = policy
        .equity
        .checked_mul(policy.risk_pct)
        .and_then(|m| m.checked_div(Decimal::ONE_HUNDRED))
        .ok_or(overflow("the risk money"))?;
    let ticks = risk_per_unit.checked_div(tick).ok_or(overflow("ticks to the stop"))?;
    let loss_per_lot =
        ticks.checked_mul(spec.tick_value_loss).ok_or(overflow("the loss per lot"))?;
    let raw_lots = risk_money.checked_div(loss_per_lot).ok_or(overflow("the lot"))?;
    let lots =
        floor_to(raw_lots, spec.volume_step).ok_or(overflow("the lot"))?.min(spec.volume_max);
    if lots < spec.volume_min {
        return Err(Skip::BelowMinimumVolume {
            what: "the lot",
            lots: raw_lots.round_dp(4).normalize(),
            volume_min: spec.volume_min,
            risk_money,
        });
    }

    // 6. Legs.
    let legs = match policy.split {
        Split::Whole => vec![OrderLeg { volume: lots, stop, take_profit: tp1 }],
        Split::Halves => {
            let half = floor_to(lots / Decimal::TWO, spec.volume_step).ok_or(overflow("a half"))?;
            if half < spec.volume_min {
                return Err(Skip::BelowMinimumVolume {
                    what: "half the lot",
                    lots: (lots / Decimal::TWO).round_dp(4).normalize(),
                    volume_min: spec.volume_min,
                    risk_money,
                });
            }
            vec![
                OrderLeg { volume: half, stop, take_profit: tp1 },
                OrderLeg { volume: half, stop, take_profit: tp2 },
            ]
        }
    };
    let volume: Decimal = legs.iter().map(|l| l.volume).sum();
    let risk_money =
        volume.checked_mul(loss_per_lot).ok_or(overflow("the risk money"))?.round_dp(8);
    Ok(Order {
        side: signal.side,
        fill_ref: fill,
        stop,
        tp1,
        tp2,
        legs,
        volume,
        risk_money,
        rr: rr.round_dp(8),
        expires_unix_ms: signal.expires_unix_ms,
    })
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} lots at {} stop {} tp1 {} tp2 {} risk {} rr {}",
            self.side.as_str(),
            self.volume,
            self.fill_ref,
            self.stop,
            self.tp1,
            self.tp2,
            self.risk_money,
            self.rr.round_dp(2)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().expect("decimal literal")
    }

    /// EURUSD at a 5-digit broker, USD account: one tick of one lot (100,000) is 1 USD.
    fn eurusd() -> SymbolSpec {
        SymbolSpec {
            point: d("0.00001"),
            tick_size: d("0.00001"),
            tick_value_loss: d("1"),
            volume_min: d("0.01"),
            volume_max: d("100"),
            volume_step: d("0.01"),
            stops_level_points: 0,
        }
    }

    fn policy() -> OrderPolicy {
        OrderPolicy {
            equity: d("10000"),
            risk_pct: d("1"),
            min_rr: d("1"),
            split: Split::Whole,
            one_position: true,
            open_positions: 0,
            now_unix_ms: 0,
        }
    }

    fn sig(side: Side, entry: &str, stop: &str, tp1: &str, tp2: &str) -> SignalLevels {
        SignalLevels {
            side,
            entry: d(entry),
            stop: d(stop),
            tp1: d(tp1),
            tp2: d(tp2),
            expires_unix_ms: 7_200_000,
        }
    }

    fn quote(bid: &str, ask: &str) -> Quote {
        Quote { bid: d(bid), ask: d(ask) }
    }

    /// The EURUSD sample's first signal, f64 values from the strategy.
    fn first_signal() -> SignalLevels {
        let s = Signal {
            bar: 211,
            time_unix_ms: 1_493_697_600_000,
            side: Side::Sell,
            entry: 1.09128,
            stop: 1.091_793_64,
            tp1: 1.088,
            tp2: 1.087,
            swing_low: 190,
            swing_low_price: 1.088,
            swing_high: 205,
            swing_high_price: 1.0925,
            rsi: 55.0,
            rr: 6.3,
        };
        SignalLevels::from_signal(&s, 7_200_000).expect("finite levels")
    }

    #[test]
    fn signal_levels_are_the_f64_values_rounded_to_8_places() {
        let s = first_signal();
        assert_eq!(s.stop, d("1.09179364"));
        assert_eq!(s.entry, d("1.09128"));
        let mut bad = Signal { rr: 1.0, ..signal_from(&s) };
        bad.stop = f64::NAN;
        let err = SignalLevels::from_signal(&bad, 0).expect_err("NaN stop");
        assert_eq!(err.to_string(), "stop = NaN has no decimal representation");
    }

    fn signal_from(s: &SignalLevels) -> Signal {
        let f = |x: Decimal| x.to_string().parse::<f64>().expect("decimal");
        Signal {
            bar: 0,
            time_unix_ms: 0,
            side: s.side,
            entry: f(s.entry),
            stop: f(s.stop),
            tp1: f(s.tp1),
            tp2: f(s.tp2),
            swing_low: 0,
            swing_low_price: 0.0,
            swing_high: 0,
            swing_high_price: 0.0,
            rsi: 50.0,
            rr: 1.0,
        }
    }

    #[test]
    fn eurusd_sell_rounds_the_stop_up_and_sizes_on_it() {
        let o = build_order(&first_signal(), &eurusd(), &quote("1.09128", "1.09130"), &policy())
            .expect("an order");
        // 1.09179364 → 1.09180 (away from the entry); 52 ticks of 1 USD; 100 USD risk → 1.923 → 1.92.
        assert_eq!(o.stop, d("1.09180"));
        assert_eq!(o.tp1, d("1.08800"));
        assert_eq!(o.fill_ref, d("1.09128"));
        assert_eq!(o.volume, d("1.92"));
        assert_eq!(
            o.legs,
            [OrderLeg { volume: d("1.92"), stop: d("1.09180"), take_profit: d("1.088") }]
        );
        assert_eq!(o.risk_money, d("99.84"));
        assert_eq!(o.rr.round_dp(4), d("6.3077"));
        assert_eq!(
            o.to_string(),
            "sell 1.92 lots at 1.09128 stop 1.09180 tp1 1.08800 tp2 1.08700 risk 99.84 rr 6.31"
        );
    }

    #[test]
    fn eurjpy_on_a_usd_account_uses_the_current_loss_tick_value() {
        let spec = |tick_value_loss: &str| SymbolSpec {
            point: d("0.001"),
            tick_size: d("0.001"),
            tick_value_loss: d(tick_value_loss),
            ..eurusd()
        };
        let s = sig(Side::Buy, "160.123", "159.8765", "160.9", "161.2");
        let q = quote("160.120", "160.125");
        // USDJPY 150: 100,000 × 0.001 / 150 = 0.66667 USD per tick. 249 ticks → 166.0 USD a lot.
        let at_150 = build_order(&s, &spec("0.66667"), &q, &policy()).expect("an order");
        assert_eq!(at_150.stop, d("159.876"));
        assert_eq!(at_150.volume, d("0.60"));
        assert_eq!(at_150.risk_money, d("99.600498"));
        // USDJPY 125: the same signal is worth fewer lots, the risk stays within 1 %.
        let at_125 = build_order(&s, &spec("0.8"), &q, &policy()).expect("an order");
        assert_eq!(at_125.volume, d("0.50"));
        assert_eq!(at_125.risk_money, d("99.6"));
    }

    #[test]
    fn gold_with_two_digits_rounds_targets_toward_the_entry() {
        let spec = SymbolSpec {
            point: d("0.01"),
            tick_size: d("0.01"),
            tick_value_loss: d("1"),
            stops_level_points: 50,
            ..eurusd()
        };
        let s = sig(Side::Buy, "1870.25", "1862.3456", "1885.678", "1890.005");
        let o = build_order(&s, &spec, &quote("1870.25", "1870.55"), &policy()).expect("an order");
        assert_eq!((o.stop, o.tp1, o.tp2), (d("1862.34"), d("1885.67"), d("1890.00")));
        // From the ask: 8.21 = 821 ticks of 1 USD → 0.1218 → 0.12 lots.
        assert_eq!(o.volume, d("0.12"));
        assert_eq!(o.risk_money, d("98.52"));
    }

    /// A US500 CFD quoted to 0.01 (the point) that trades in 0.25 ticks, 12.5 USD a tick a lot.
    fn us500(step: &str) -> SymbolSpec {
        SymbolSpec {
            point: d("0.01"),
            tick_size: d("0.25"),
            tick_value_loss: d("12.5"),
            volume_min: d(step),
            volume_max: d("50"),
            volume_step: d(step),
            stops_level_points: 40,
        }
    }

    #[test]
    fn index_with_tick_size_not_the_point_rounds_to_ticks() {
        let s = sig(Side::Sell, "4500.25", "4512.13", "4480.10", "4474.9");
        let p = OrderPolicy { equity: d("100000"), ..policy() };
        let o =
            build_order(&s, &us500("0.01"), &quote("4500.25", "4500.75"), &p).expect("an order");
        // Stop up to the next 0.25 (not 4512.13, which no order may carry), targets up too.
        assert_eq!((o.stop, o.tp1, o.tp2), (d("4512.25"), d("4480.25"), d("4475.00")));
        // 12.00 = 48 ticks × 12.5 = 600 USD a lot; 1,000 USD risk → 1.6667 → 1.66.
        assert_eq!(o.volume, d("1.66"));
        assert_eq!(o.risk_money, d("996"));
    }

    #[test]
    fn volume_step_one_rounds_down_to_whole_lots() {
        let s = sig(Side::Sell, "4500.25", "4512.13", "4480.10", "4474.9");
        let p = OrderPolicy { equity: d("100000"), ..policy() };
        let o = build_order(&s, &us500("1"), &quote("4500.25", "4500.75"), &p).expect("an order");
        assert_eq!(o.volume, d("1"));
        assert_eq!(o.risk_money, d("600"));
    }

    #[test]
    fn a_lot_below_the_minimum_is_skipped_not_rounded_up() {
        let p = OrderPolicy { equity: d("50"), ..policy() };
        let err = build_order(&first_signal(), &eurusd(), &quote("1.09128", "1.09130"), &p)
            .expect_err("0.0096 lots");
        assert_eq!(
            err.to_string(),
            "the lot 0.0096 lots is below the broker's minimum 0.01 (risk 0.50 allows no more)"
        );
        let s = sig(Side::Sell, "4500.25", "4512.13", "4480.10", "4474.9");
        let err = build_order(&s, &us500("1"), &quote("4500.25", "4500.75"), &policy())
            .expect_err("0.1667 lots at step 1");
        assert!(matches!(err, Skip::BelowMinimumVolume { .. }), "{err}");
    }

    #[test]
    fn the_maximum_volume_clamps_down() {
        let spec = SymbolSpec { volume_max: d("1.5"), ..eurusd() };
        let o = build_order(&first_signal(), &spec, &quote("1.09128", "1.09130"), &policy())
            .expect("an order");
        assert_eq!(o.volume, d("1.5"));
    }

    #[test]
    fn stops_level_refuses_a_stop_too_close() {
        let spec = SymbolSpec { stops_level_points: 100, ..eurusd() };
        let err = build_order(&first_signal(), &spec, &quote("1.09128", "1.09130"), &policy())
            .expect_err("50 points < 100");
        assert_eq!(
            err.to_string(),
            "stop is 50 points from the price, the broker's stops level is 100"
        );
    }

    #[test]
    fn reward_risk_is_checked_after_rounding_and_spread() {
        let s = sig(Side::Buy, "1.10000", "1.09900", "1.10110", "1.10200");
        // At the signal's close rr is 1.1; a 20-point spread makes it (1.10110−1.10020)/0.00120 = 0.75.
        let err = build_order(&s, &eurusd(), &quote("1.10000", "1.10020"), &policy())
            .expect_err("rr 0.75");
        assert_eq!(err.to_string(), "reward/risk 0.75 is below the minimum 1");
        assert!(build_order(&s, &eurusd(), &quote("1.10000", "1.10000"), &policy()).is_ok());
    }

    #[test]
    fn a_market_already_through_the_stop_is_skipped() {
        let s = sig(Side::Buy, "1.10000", "1.09900", "1.10200", "1.10300");
        let err = build_order(&s, &eurusd(), &quote("1.09880", "1.09890"), &policy())
            .expect_err("ask below the stop");
        assert_eq!(err.to_string(), "stop 1.09900 is on the wrong side of the fill 1.09890");
    }

    #[test]
    fn expiry_and_the_one_position_default() {
        let q = quote("1.09128", "1.09130");
        let late = OrderPolicy { now_unix_ms: 7_200_000, ..policy() };
        let err = build_order(&first_signal(), &eurusd(), &q, &late).expect_err("expired");
        assert_eq!(err.to_string(), "expired at 7200000 ms, now 7200000 ms");
        let busy = OrderPolicy { open_positions: 1, ..policy() };
        let err = build_order(&first_signal(), &eurusd(), &q, &busy).expect_err("position open");
        assert_eq!(err.to_string(), "a position on the symbol is already open (1 open)");
        let allowed = OrderPolicy { one_position: false, ..busy };
        assert!(build_order(&first_signal(), &eurusd(), &q, &allowed).is_ok());
    }

    #[test]
    fn split_makes_two_halves_or_skips() {
        let halves = OrderPolicy { split: Split::Halves, ..policy() };
        let o = build_order(&first_signal(), &eurusd(), &quote("1.09128", "1.09130"), &halves)
            .expect("an order");
        assert_eq!(
            o.legs,
            [
                OrderLeg { volume: d("0.96"), stop: d("1.09180"), take_profit: d("1.08800") },
                OrderLeg { volume: d("0.96"), stop: d("1.09180"), take_profit: d("1.08700") },
            ]
        );
        assert_eq!(o.volume, d("1.92"));
        let small = OrderPolicy { equity: d("100"), ..halves };
        let err = build_order(&first_signal(), &eurusd(), &quote("1.09128", "1.09130"), &small)
            .expect_err("0.01 lot cannot be halved");
        assert_eq!(
            err.to_string(),
            "half the lot 0.005 lots is below the broker's minimum 0.01 (risk 1 allows no more)"
        );
    }

    #[test]
    fn nonsense_inputs_are_refused_not_divided_by() {
        let q = quote("1.09128", "1.09130");
        let spec = SymbolSpec { tick_size: Decimal::ZERO, ..eurusd() };
        let err = build_order(&first_signal(), &spec, &q, &policy()).expect_err("zero tick");
        assert_eq!(err.to_string(), "invalid tick_size: 0");
        let p = OrderPolicy { equity: d("-5"), ..policy() };
        let err = build_order(&first_signal(), &eurusd(), &q, &p).expect_err("negative equity");
        assert_eq!(err.to_string(), "invalid equity: -5");
        let p = OrderPolicy { risk_pct: d("150"), ..policy() };
        assert!(build_order(&first_signal(), &eurusd(), &q, &p).is_err());
        let huge = sig(
            Side::Sell,
            "79228162514264337593543950000",
            "79228162514264337593543950335",
            "1",
            "0.5",
        );
        let q_huge = quote("79228162514264337593543950000", "79228162514264337593543950335");
        let err = build_order(&huge, &eurusd(), &q_huge, &policy()).expect_err("no panic");
        assert!(
            matches!(err, Skip::Overflow { .. } | Skip::RewardRisk { .. } | Skip::TooClose { .. }),
            "{err}"
        );
        let far = sig(
            Side::Buy,
            "1",
            "-79228162514264337593543950335",
            "79228162514264337593543950335",
            "79228162514264337593543950335",
        );
        let err = build_order(&far, &eurusd(), &quote("1", "1"), &policy()).expect_err("no panic");
        assert!(matches!(err, Skip::Overflow { .. }), "{err}");
        let spec = SymbolSpec { tick_value_loss: d("0.0000000000000000000000001"), ..eurusd() };
        let p = OrderPolicy { equity: Decimal::MAX, ..policy() };
        assert!(build_order(&first_signal(), &spec, &q, &p).is_err());
    }
}
