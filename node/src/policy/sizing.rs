//! Lot sizing: the four lot modes around [`crate::orders::build_order`], which stays the one place
//! that rounds prices to ticks, checks the sides, the broker's stops level and reward/risk, and
//! sizes the risk-% lot on the broker's current loss tick value.
//!
//! - [`LotMode::RiskPercent`]: `build_order` sizes it (rounded down to the step, clamped down to
//!   the broker's maximum); the trader's `lot_max` clamps it down further; below the trader's
//!   `lot_min` it is skipped, never raised (raising it would risk more than the percent).
//! - [`LotMode::Fixed`], [`LotMode::Multiplier`], [`LotMode::Proportional`]: `build_order` checks
//!   the geometry at 100 % risk (so a minimum lot that would lose more than the whole equity at the
//!   stop is refused), then the lot is the mode's, raised to the trader's `lot_min`, clamped to
//!   `lot_max`, rounded down to the broker's step and clamped down to its maximum; below the
//!   broker's minimum it is skipped.
//!
//! In every mode the money lost at the stop may not exceed `max_risk_pct` of equity.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::orders::{
    Order, OrderLeg, OrderPolicy, Quote, SignalLevels, Skip, Split, SymbolSpec, build_order,
};

/// How the lot is chosen. In TOML: `lot = { mode = "risk_percent", percent = "1" }`; decimals are
/// strings, as everywhere in Tradecast, so no value goes through a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum LotMode {
    /// The same lot on every trade.
    Fixed {
        /// Lots.
        lots: Decimal,
    },
    /// The provider's lot times a factor (1 = the same lot as the provider).
    Multiplier {
        /// Factor, > 0.
        factor: Decimal,
    },
    /// `lots` for every `per_balance` of account balance (0.01 per 1000: a 5,000 balance trades
    /// 0.05).
    Proportional {
        /// Lots per step of balance.
        lots: Decimal,
        /// The step of balance, account currency.
        per_balance: Decimal,
    },
    /// Risk this percent of equity at the stop, sized with the broker's current loss tick value.
    RiskPercent {
        /// Percent of equity (1 = 1 %), in (0, 100].
        percent: Decimal,
    },
}

impl Default for LotMode {
    /// 1 % of equity at risk.
    fn default() -> Self {
        LotMode::RiskPercent { percent: Decimal::ONE }
    }
}

impl fmt::Display for LotMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LotMode::Fixed { lots } => write!(f, "fixed {lots} lots"),
            LotMode::Multiplier { factor } => write!(f, "{factor} × the provider's lot"),
            LotMode::Proportional { lots, per_balance } => {
                write!(f, "{lots} lots per {per_balance} of balance")
            }
            LotMode::RiskPercent { percent } => write!(f, "{percent} % of equity at risk"),
        }
    }
}

/// The trader's clamps, the risk cap and the reward/risk floor (from [`super::PolicySettings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotLimits {
    pub lot_min: Option<Decimal>,
    pub lot_max: Option<Decimal>,
    /// The most equity lost at the stop, percent.
    pub max_risk_pct: Decimal,
    /// The least reward/risk to tp1, measured from the fill after rounding (`build_order`'s).
    pub min_rr: Decimal,
}

/// What the lot modes need to know about the account and the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub balance: Decimal,
    pub equity: Decimal,
}

/// Why no lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeSkip {
    /// `build_order` refused (geometry, stops level, reward/risk, expiry, risk-% lot below the
    /// broker's minimum, …).
    Order(Skip),
    /// A setting that cannot size anything (a lot ≤ 0, …).
    Setting { what: &'static str, value: String },
    /// Multiplier mode and the signal carries no provider lot.
    NoProviderLot,
    /// Not risk-% mode: even the broker's minimum lot loses more than the equity at the stop.
    MinimumLotTooRisky { volume_min: Decimal, equity: Decimal },
    /// The lot is below the broker's minimum after rounding.
    BelowBrokerMinimum { lots: Decimal, volume_min: Decimal },
    /// Risk-% mode: the lot is below the trader's `lot_min`.
    BelowTraderMinimum { lots: Decimal, lot_min: Decimal },
    /// The money lost at the stop is above the cap.
    RiskAboveCap { risk_money: Decimal, risk_pct: Decimal, max_risk_pct: Decimal },
    /// Absurd numbers.
    Overflow,
}

impl fmt::Display for SizeSkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeSkip::Order(skip) => write!(f, "{skip}"),
            SizeSkip::Setting { what, value } => {
                write!(f, "the setting {what} = {value} cannot size a lot")
            }
            SizeSkip::NoProviderLot => {
                f.write_str("the signal carries no provider lot for the multiplier lot mode")
            }
            SizeSkip::MinimumLotTooRisky { volume_min, equity } => write!(
                f,
                "even the broker's minimum {volume_min} lots would lose more than the equity {equity} at the stop"
            ),
            SizeSkip::BelowBrokerMinimum { lots, volume_min } => {
                write!(f, "lot {lots} is below the broker's minimum {volume_min}")
            }
            SizeSkip::BelowTraderMinimum { lots, lot_min } => write!(
                f,
                "the risk allows {lots} lots, below your minimum {lot_min} (raising it would risk more)"
            ),
            SizeSkip::RiskAboveCap { risk_money, risk_pct, max_risk_pct } => write!(
                f,
                "the trade risks {risk_money} ({risk_pct} % of equity) at the stop, limit {max_risk_pct} %"
            ),
            SizeSkip::Overflow => f.write_str("arithmetic overflow sizing the lot"),
        }
    }
}

fn floor_to(x: Decimal, step: Decimal) -> Option<Decimal> {
    x.checked_div(step)?.floor().checked_mul(step)
}

/// Sizes the order for `levels` (the levels actually sent: reversed already if the trader
/// reverses) on `spec` at `quote` (see the module doc).
#[allow(clippy::too_many_arguments)]
pub fn size_order(
    levels: &SignalLevels,
    spec: &SymbolSpec,
    quote: &Quote,
    mode: &LotMode,
    provider_lots: Option<Decimal>,
    account: Account,
    limits: LotLimits,
    split: Split,
    now_ms: i64,
) -> Result<Order, SizeSkip> {
    let setting = |what: &'static str, value: Decimal| {
        if value > Decimal::ZERO {
            Ok(value)
        } else {
            Err(SizeSkip::Setting { what, value: value.to_string() })
        }
    };
    setting("max_risk_pct", limits.max_risk_pct)?;
    if let Some(min) = limits.lot_min {
        setting("lot_min", min)?;
    }
    if let Some(max) = limits.lot_max {
        setting("lot_max", max)?;
        if limits.lot_min.is_some_and(|min| min > max) {
            return Err(SizeSkip::Setting { what: "lot_min", value: "above lot_max".into() });
        }
    }
    let policy = |risk_pct: Decimal, split: Split| OrderPolicy {
        equity: account.equity,
        risk_pct,
        min_rr: limits.min_rr,
        split,
        // Position counts are the risk module's rule.
        one_position: false,
        open_positions: 0,
        now_unix_ms: now_ms,
    };

    let order = match mode {
        LotMode::RiskPercent { percent } => {
            let percent = setting("percent", *percent)?;
            let mut order = build_order(levels, spec, quote, &policy(percent, split))
                .map_err(SizeSkip::Order)?;
            if let Some(min) = limits.lot_min
                && order.volume < min
            {
                return Err(SizeSkip::BelowTraderMinimum { lots: order.volume, lot_min: min });
            }
            if let Some(max) = limits.lot_max
                && order.volume > max
            {
                order = with_volume(order, max, spec, split)?;
            }
            order
        }
        _ => {
            // With the split asked for, so tp2 is checked against the stops level too.
            let geometry = build_order(levels, spec, quote, &policy(Decimal::ONE_HUNDRED, split))
                .map_err(|skip| match skip {
                Skip::BelowMinimumVolume { .. } => SizeSkip::MinimumLotTooRisky {
                    volume_min: spec.volume_min,
                    equity: account.equity,
                },
                other => SizeSkip::Order(other),
            })?;
            let raw = match mode {
                LotMode::Fixed { lots } => setting("lots", *lots)?,
                LotMode::Multiplier { factor } => {
                    let factor = setting("factor", *factor)?;
                    let provider = provider_lots
                        .filter(|l| *l > Decimal::ZERO)
                        .ok_or(SizeSkip::NoProviderLot)?;
                    provider.checked_mul(factor).ok_or(SizeSkip::Overflow)?
                }
                LotMode::Proportional { lots, per_balance } => {
                    let lots = setting("lots", *lots)?;
                    let per = setting("per_balance", *per_balance)?;
                    if account.balance <= Decimal::ZERO {
                        return Err(SizeSkip::Order(Skip::Invalid {
                            field: "balance",
                            value: account.balance.to_string(),
                        }));
                    }
                    account
                        .balance
                        .checked_div(per)
                        .and_then(|n| n.checked_mul(lots))
                        .ok_or(SizeSkip::Overflow)?
                }
                LotMode::RiskPercent { .. } => unreachable!("handled above"),
            };
            let mut lots = raw;
            if let Some(min) = limits.lot_min {
                lots = lots.max(min);
            }
            if let Some(max) = limits.lot_max {
                lots = lots.min(max);
            }
            with_volume(geometry, lots, spec, split)?
        }
    };

    // The cap, on the volume actually sent.
    let cap = account
        .equity
        .checked_mul(limits.max_risk_pct)
        .and_then(|m| m.checked_div(Decimal::ONE_HUNDRED))
        .ok_or(SizeSkip::Overflow)?;
    if order.risk_money > cap {
        let risk_pct = order
            .risk_money
            .checked_mul(Decimal::ONE_HUNDRED)
            .and_then(|m| m.checked_div(account.equity))
            .ok_or(SizeSkip::Overflow)?
            .round_dp(2);
        return Err(SizeSkip::RiskAboveCap {
            risk_money: order.risk_money.round_dp(2).normalize(),
            risk_pct: risk_pct.normalize(),
            max_risk_pct: limits.max_risk_pct,
        });
    }
    Ok(order)
}

/// `order` with its volume replaced by `lots`: rounded down to the step, clamped down to the
/// broker's maximum, split into halves if asked, and the risk money recomputed.
fn with_volume(
    order: Order,
    lots: Decimal,
    spec: &SymbolSpec,
    split: Split,
) -> Result<Order, SizeSkip> {
    let wanted = lots;
    let lots = floor_to(lots, spec.volume_step).ok_or(SizeSkip::Overflow)?.min(spec.volume_max);
    if lots < spec.volume_min {
        return Err(SizeSkip::BelowBrokerMinimum {
            lots: wanted.normalize(),
            volume_min: spec.volume_min,
        });
    }
    let legs = match split {
        Split::Whole => vec![OrderLeg { volume: lots, stop: order.stop, take_profit: order.tp1 }],
        Split::Halves => {
            let half = floor_to(lots / Decimal::TWO, spec.volume_step).ok_or(SizeSkip::Overflow)?;
            if half < spec.volume_min {
                return Err(SizeSkip::BelowBrokerMinimum {
                    lots: (lots / Decimal::TWO).normalize(),
                    volume_min: spec.volume_min,
                });
            }
            vec![
                OrderLeg { volume: half, stop: order.stop, take_profit: order.tp1 },
                OrderLeg { volume: half, stop: order.stop, take_profit: order.tp2 },
            ]
        }
    };
    let volume: Decimal = legs.iter().map(|l| l.volume).sum();
    let ticks = order
        .fill_ref
        .checked_sub(order.stop)
        .ok_or(SizeSkip::Overflow)?
        .abs()
        .checked_div(spec.tick_size)
        .ok_or(SizeSkip::Overflow)?;
    let risk_money = volume
        .checked_mul(ticks)
        .and_then(|x| x.checked_mul(spec.tick_value_loss))
        .ok_or(SizeSkip::Overflow)?
        .round_dp(8);
    Ok(Order { legs, volume, risk_money, ..order })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Side;

    fn d(s: &str) -> Decimal {
        s.parse().expect("decimal literal")
    }

    /// EURUSD, 5 digits, USD account: a tick of one lot is 1 USD.
    fn eurusd() -> SymbolSpec {
        SymbolSpec {
            point: d("0.00001"),
            tick_size: d("0.00001"),
            tick_value_loss: d("1"),
            volume_min: d("0.01"),
            volume_max: d("50"),
            volume_step: d("0.01"),
            stops_level_points: 0,
        }
    }

    /// Buy at 1.10000, stop 1.09900 (100 ticks: 100 USD a lot), tp1 1.10200, tp2 1.10300.
    fn levels() -> SignalLevels {
        SignalLevels {
            side: Side::Buy,
            entry: d("1.10000"),
            stop: d("1.09900"),
            tp1: d("1.10200"),
            tp2: d("1.10300"),
            expires_unix_ms: 1_000,
        }
    }

    fn quote() -> Quote {
        Quote { bid: d("1.10000"), ask: d("1.10000") }
    }

    fn limits() -> LotLimits {
        LotLimits { lot_min: None, lot_max: None, max_risk_pct: d("5"), min_rr: d("1") }
    }

    fn account() -> Account {
        Account { balance: d("10000"), equity: d("9000") }
    }

    /// (volume, risk money) or the skip's text.
    fn check(
        mode: LotMode,
        provider: Option<&str>,
        limits: LotLimits,
        split: Split,
        expect: Result<(&str, &str), &str>,
    ) {
        let got = size_order(
            &levels(),
            &eurusd(),
            &quote(),
            &mode,
            provider.map(d),
            account(),
            limits,
            split,
            0,
        )
        .map(|o| (o.volume, o.risk_money))
        .map_err(|e| e.to_string());
        let expect = expect.map(|(v, r)| (d(v), d(r))).map_err(str::to_string);
        assert_eq!(got, expect, "{mode} provider {provider:?} {limits:?} {split:?}");
    }

    #[test]
    fn each_lot_mode() {
        let w = Split::Whole;
        // 1 % of 9,000 equity = 90 USD over 100 USD a lot.
        check(LotMode::RiskPercent { percent: d("1") }, None, limits(), w, Ok(("0.9", "90")));
        check(LotMode::Fixed { lots: d("0.25") }, None, limits(), w, Ok(("0.25", "25")));
        check(LotMode::Fixed { lots: d("0.257") }, None, limits(), w, Ok(("0.25", "25")));
        check(
            LotMode::Multiplier { factor: d("0.5") },
            Some("1.3"),
            limits(),
            w,
            Ok(("0.65", "65")),
        );
        check(LotMode::Multiplier { factor: d("1") }, Some("0.2"), limits(), w, Ok(("0.2", "20")));
        check(
            LotMode::Multiplier { factor: d("1") },
            None,
            limits(),
            w,
            Err("the signal carries no provider lot for the multiplier lot mode"),
        );
        // 0.01 per 1,000 of a 10,000 balance.
        check(
            LotMode::Proportional { lots: d("0.01"), per_balance: d("1000") },
            None,
            limits(),
            w,
            Ok(("0.10", "10")),
        );
        check(
            LotMode::Proportional { lots: d("0.01"), per_balance: d("3000") },
            None,
            limits(),
            w,
            Ok(("0.03", "3")),
        );
    }

    #[test]
    fn clamps_to_the_trader_and_the_broker() {
        let w = Split::Whole;
        let clamp = LotLimits { lot_min: Some(d("0.05")), lot_max: Some(d("0.5")), ..limits() };
        check(LotMode::Fixed { lots: d("0.01") }, None, clamp, w, Ok(("0.05", "5")));
        check(LotMode::Fixed { lots: d("2") }, None, clamp, w, Ok(("0.5", "50")));
        check(LotMode::RiskPercent { percent: d("1") }, None, clamp, w, Ok(("0.5", "50")));
        // Risk %: below the trader's minimum it is skipped, not raised.
        let high_min = LotLimits { lot_min: Some(d("1")), ..limits() };
        check(
            LotMode::RiskPercent { percent: d("1") },
            None,
            high_min,
            w,
            Err("the risk allows 0.90 lots, below your minimum 1 (raising it would risk more)"),
        );
        // Below the broker's minimum after rounding down to the step.
        check(
            LotMode::Fixed { lots: d("0.009") },
            None,
            limits(),
            w,
            Err("lot 0.009 is below the broker's minimum 0.01"),
        );
        // The broker's maximum clamps down.
        let big_cap = LotLimits { max_risk_pct: d("100"), ..limits() };
        check(LotMode::Fixed { lots: d("80") }, None, big_cap, w, Ok(("50", "5000")));
        // Not risk %: a minimum lot that loses more than the whole equity at the stop.
        let poor = Account { balance: d("0.5"), equity: d("0.5") };
        let err = size_order(
            &levels(),
            &eurusd(),
            &quote(),
            &LotMode::Fixed { lots: d("0.01") },
            None,
            poor,
            big_cap,
            w,
            0,
        )
        .expect_err("1 USD at the stop, 0.5 equity");
        assert_eq!(
            err.to_string(),
            "even the broker's minimum 0.01 lots would lose more than the equity 0.5 at the stop"
        );
    }

    #[test]
    fn the_broker_maximum_and_the_risk_cap() {
        let spec = SymbolSpec { volume_max: d("0.3"), ..eurusd() };
        let o = size_order(
            &levels(),
            &spec,
            &quote(),
            &LotMode::Fixed { lots: d("2") },
            None,
            account(),
            limits(),
            Split::Whole,
            0,
        )
        .expect("an order");
        assert_eq!((o.volume, o.risk_money), (d("0.3"), d("30")));
        // 5 lots lose 500 = 5.56 % of 9,000 equity: above the 5 % cap.
        check(
            LotMode::Fixed { lots: d("5") },
            None,
            limits(),
            Split::Whole,
            Err("the trade risks 500 (5.56 % of equity) at the stop, limit 5 %"),
        );
        check(LotMode::Fixed { lots: d("4.5") }, None, limits(), Split::Whole, Ok(("4.5", "450")));
    }

    #[test]
    fn halves_in_every_mode() {
        let h = Split::Halves;
        check(LotMode::Fixed { lots: d("0.25") }, None, limits(), h, Ok(("0.24", "24")));
        check(LotMode::RiskPercent { percent: d("1") }, None, limits(), h, Ok(("0.9", "90")));
        check(
            LotMode::Fixed { lots: d("0.01") },
            None,
            limits(),
            h,
            Err("lot 0.005 is below the broker's minimum 0.01"),
        );
        // tp2 is held to the broker's stops level in every lot mode: tp1 200 points from the
        // price (and the stop 100) pass a stops level of 80, a tp2 50 points away does not.
        let tp2_close = SignalLevels { tp2: d("1.10050"), ..levels() };
        let spec = SymbolSpec { stops_level_points: 80, ..eurusd() };
        let err = size_order(
            &tp2_close,
            &spec,
            &quote(),
            &LotMode::Fixed { lots: d("0.25") },
            None,
            account(),
            limits(),
            h,
            0,
        )
        .expect_err("tp2 too close");
        assert_eq!(
            err.to_string(),
            "tp2 is 50 points from the price, the broker's stops level is 80"
        );
        let whole = size_order(
            &tp2_close,
            &spec,
            &quote(),
            &LotMode::Fixed { lots: d("0.25") },
            None,
            account(),
            limits(),
            Split::Whole,
            0,
        );
        assert_eq!(whole.map(|o| o.volume), Ok(d("0.25")), "one position does not carry tp2");
        let o = size_order(
            &levels(),
            &eurusd(),
            &quote(),
            &LotMode::Fixed { lots: d("0.25") },
            None,
            account(),
            limits(),
            h,
            0,
        )
        .expect("an order");
        assert_eq!(
            o.legs,
            [
                OrderLeg { volume: d("0.12"), stop: d("1.09900"), take_profit: d("1.10200") },
                OrderLeg { volume: d("0.12"), stop: d("1.09900"), take_profit: d("1.10300") },
            ]
        );
    }

    #[test]
    fn settings_that_cannot_size_and_geometry_from_build_order() {
        let w = Split::Whole;
        check(
            LotMode::Fixed { lots: d("0") },
            None,
            limits(),
            w,
            Err("the setting lots = 0 cannot size a lot"),
        );
        check(
            LotMode::Multiplier { factor: d("-1") },
            Some("1"),
            limits(),
            w,
            Err("the setting factor = -1 cannot size a lot"),
        );
        check(
            LotMode::Proportional { lots: d("0.01"), per_balance: d("0") },
            None,
            limits(),
            w,
            Err("the setting per_balance = 0 cannot size a lot"),
        );
        check(
            LotMode::RiskPercent { percent: d("0") },
            None,
            limits(),
            w,
            Err("the setting percent = 0 cannot size a lot"),
        );
        let inverted = LotLimits { lot_min: Some(d("2")), lot_max: Some(d("1")), ..limits() };
        check(
            LotMode::Fixed { lots: d("1") },
            None,
            inverted,
            w,
            Err("the setting lot_min = above lot_max cannot size a lot"),
        );
        // Geometry is build_order's: a stop the market has passed.
        let o = size_order(
            &levels(),
            &eurusd(),
            &Quote { bid: d("1.09800"), ask: d("1.09810") },
            &LotMode::Fixed { lots: d("1") },
            None,
            account(),
            limits(),
            w,
            0,
        )
        .expect_err("through the stop");
        assert_eq!(o.to_string(), "stop 1.09900 is on the wrong side of the fill 1.09810");
    }

    #[test]
    fn lot_mode_reads_from_toml_with_decimal_strings() {
        #[derive(Deserialize)]
        struct W {
            lot: LotMode,
        }
        let parse = |t: &str| toml::from_str::<W>(t).map(|w| w.lot).map_err(|e| e.to_string());
        assert_eq!(
            parse("lot = { mode = \"fixed\", lots = \"0.1\" }"),
            Ok(LotMode::Fixed { lots: d("0.1") })
        );
        assert_eq!(
            parse("lot = { mode = \"proportional\", lots = \"0.01\", per_balance = \"1000\" }"),
            Ok(LotMode::Proportional { lots: d("0.01"), per_balance: d("1000") })
        );
        assert_eq!(
            parse("[lot]\nmode = \"risk_percent\"\npercent = \"1.5\""),
            Ok(LotMode::RiskPercent { percent: d("1.5") })
        );
        assert!(parse("lot = { mode = \"martingale\" }").is_err());
        assert!(parse("lot = { mode = \"fixed\", lots = \"0.1\", extra = 1 }").is_err());
        assert_eq!(LotMode::default(), LotMode::RiskPercent { percent: d("1") });
    }
}
