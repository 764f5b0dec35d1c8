//! The trader's copy policy: every incoming signal is evaluated against the trader's
//! [`PolicySettings`] on the market clock, step by step, each step recorded with its reason, and
//! ends in [`Outcome::Accept`] with an [`OrderPlan`] or [`Outcome::Skip`] with a [`SkipReason`]
//! that renders as one line of the copy log ("skipped: EURUSD.m market closed (Saturday)").
//! Approvals ([`approval`]) then decide, by rule or by the trader, whether an accepted plan is
//! sent; [`follow`] decides how the provider's modifications and closes apply to a copy.
//!
//! Everything here is pure and deterministic: no I/O, no clock (the market time is an argument,
//! system.md "Time"), no randomness. The node core stores the settings and the calendar file,
//! feeds the EA's hello/state figures in, signs the resulting `Approval` and turns an
//! [`OrderPlan`] into EA orders. Prices and money are `Decimal`, never f64.
//!
//! # Public API
//!
//! - [`PolicySettings`] (serde, TOML, `deny_unknown_fields`, safe defaults),
//!   [`PolicySettings::from_toml`], [`PolicySettings::validate`].
//! - [`evaluate`]`(&settings, &EvaluationInput) -> Evaluation { outcome, steps }`;
//!   [`signal_issued_ms`]; [`SkipReason`] (`Display`: the copy-log line).
//! - [`calendar::HolidayCalendar::parse`], [`calendar::default_calendar_toml`] (write it to the
//!   data dir at init), [`market_hours::check_open`].
//! - [`approval::PendingApproval`]: `start`, `decide`, `expire`; [`approval::DecisionRequest`].
//! - [`follow::follow_modify`], [`follow::follow_close`].
//! - [`risk::DayStart::roll`] on every state push (the equity at the start of the broker's server
//!   day, [`risk::server_day_start_ms`]), stored by the node and passed back in.
//! - [`copy_log::CopyLogEntry::new`]: the stored, serde form of an evaluation for the copy log.
//! - [`OrderPlan::ea_order`]: one leg as the EA's order; [`quote_from_bar`]: a quote from the
//!   last closed bar and its spread.
//! - [`symbols::candidates`]: broker names that could be a canonical symbol (for the settings
//!   page); [`approval::PendingApproval`] is serde, for the store.
//!
//! # The steps, in order (the first that fails is the skip)
//!
//! 1. `settings`: the settings are consistent ([`PolicySettings::validate`]).
//! 2. `copying`: copying is switched on. When the signal came from the hub and no plan in force
//!    includes `auto_copy` ([`approval::PlanGate`]) the step says so and
//!    [`Evaluation::auto_suspended`] makes the signal wait for the trader even in auto mode.
//! 3. `symbol`: exclude list, include list, per-symbol switch, then the mapped name (explicit
//!    map, else prefix + name + suffix) must be in the broker's Market Watch.
//! 4. `trade_mode`: the broker allows this direction on the symbol (not disabled, close-only,
//!    long-only for a sell, short-only for a buy).
//! 5. `market_hours`: the FX week (Sunday 17:00 to Friday 17:00 New York, DST from the bundled tz
//!    database), the holiday calendar, the broker's sessions for the symbol.
//! 6. `expiry`: the market clock is before the signal's `expires_at_ms`.
//! 7. `age`: the signal was issued (its bar's close: `bar_time_ms` + the timeframe) at most
//!    `max_signal_age_s` ago on the market clock.
//! 8. `drawdown`: equity is less than `risk.drawdown_lock_pct` below its peak (in any approval
//!    mode). When the drawdown guard has locked auto mode the step passes but says so, and
//!    [`Evaluation::auto_suspended`] makes the signal wait for the trader even in auto mode.
//! 9. `daily_loss`: the loss since the start of the broker's server day is below the limit.
//! 10. `open_positions`: fewer than `risk.max_open_positions` in total and
//!     `risk.max_open_per_symbol` on the symbol, counting Tradecast's open positions, pending
//!     orders and orders sent but not settled.
//! 11. `price`: a current quote exists; for a market entry the fill price (ask for a buy, bid for a
//!     sell) has moved at most `max_price_move_points` and at most `max_price_move_stop_fraction`
//!     of the stop distance from the signal's entry; a pending entry lies on its side of the
//!     market and at least the stops level from it.
//! 12. `order`: [`crate::orders::build_order`] rounds the levels to ticks, checks the sides, the
//!     broker's stops level and `min_rr` (after rounding and the spread); the lot mode sizes the
//!     lot ([`sizing`]), clamped to `lot_min`/`lot_max`, the volume step and the broker's
//!     min/max; the money lost at the stop is at most `max_risk_pct` of equity. The loss tick
//!     value is the broker's current one from [`EvaluationInput::tick_values`] (the EA's state
//!     pushes and the specs the node asks for), else the spec's; the step says which.
//!
//! `reverse` swaps the side and the stop with tp1 before steps 11–12, so every check applies to
//! the order actually sent. `copy_sl`/`copy_tp` decide whether the legs carry the stop and the
//! target; the checks always use the provider's levels (they define the trade idea and the risk).
//!
//! # Settings (TOML; decimals as strings, e.g. `"1.5"`; every key optional, a missing key is its default)
//!
//! | key | default | unit / meaning |
//! | --- | --- | --- |
//! | `copying` | `true` | copy signals at all |
//! | `approval.mode` | `"manual"` | `"manual"`: wait for the trader until expiry; `"auto"`: approve by rule |
//! | `approval.remote_approval` | `false` | honour approve/reject requests relayed by the hub (Telegram, Mini App) |
//! | `approval.consent_version` | `0` | the terms version the trader accepted (set by the UI); auto mode needs ≥ 1 |
//! | `market_hours.enabled` | `true` | skip outside market hours |
//! | `market_hours.broker_sessions` | `true` | respect the symbol's sessions from the EA |
//! | `market_hours.always_open` | `[]` | canonical symbols exempt from the FX week and holidays (crypto) |
//! | `max_signal_age_s` | `60` | seconds, market clock, since the signal's bar closed |
//! | `max_price_move_points` | none | points between the signal's entry and the fill price |
//! | `max_price_move_stop_fraction` | `"0.25"` | the same move as a fraction of the entry–stop distance; `"0"`: off |
//! | `max_slippage_points` | `10` | points, the deviation the EA accepts when it sends |
//! | `copy_pending` | `true` | copy limit/stop entries as pending orders |
//! | `symbols.map` | `{}` | canonical → broker name (`EURUSD = "EURUSD.m"`) |
//! | `symbols.prefix`, `symbols.suffix` | `""` | broker name = prefix + canonical + suffix when not mapped |
//! | `symbols.include` | `[]` | only these canonical symbols (empty: all) |
//! | `symbols.exclude` | `[]` | never these |
//! | `symbols.per_symbol.<SYM>.enabled` | `true` | the per-symbol switch; `<SYM>` is the canonical name (`EURUSD`, not `EURUSD.m`) |
//! | `symbols.per_symbol.<SYM>.lot` | none | a lot mode for this symbol, same form as `lot` |
//! | `lot` | `{ mode = "risk_percent", percent = "1" }` | `fixed` (`lots`), `multiplier` (`factor` × the provider's lot), `proportional` (`lots` per `per_balance` of balance), `risk_percent` (`percent` of equity at the stop, broker's current loss tick value) |
//! | `lot_min`, `lot_max` | none | lots; clamp (risk %: below `lot_min` is skipped, never raised) |
//! | `max_risk_pct` | `"5"` | percent of equity lost at the stop, any lot mode |
//! | `min_rr` | `"1"` | reward/risk to tp1 from the fill, after rounding and spread |
//! | `split` | `"whole"` | `"whole"`: one position to tp1; `"halves"`: two, to tp1 and tp2 |
//! | `reverse` | `false` | trade against the provider: side flipped, stop ↔ tp1 |
//! | `copy_sl`, `copy_tp` | `true` | send the stop / target with the order (risk % needs `copy_sl`) |
//! | `copy_modifications` | `true` | apply the provider's stop/target changes |
//! | `copy_partial_closes` | `true` | apply the provider's partial closes in proportion (a full close is always applied) |
//! | `risk.max_open_positions` | `5` | positions Tradecast holds at once |
//! | `risk.max_open_per_symbol` | `1` | per broker symbol |
//! | `risk.daily_loss_limit_pct` | `"5"` | percent of the equity at the server day's start; `"0"`: off |
//! | `risk.daily_loss_limit_money` | none | account currency |
//! | `risk.drawdown_lock_pct` | `"20"` | percent below peak equity |
//!
//! # The holiday file (`holidays.toml` in the data dir)
//!
//! A list of `[[holiday]]` tables: `name` (shown in the copy log), exactly one of `date =
//! "YYYY-MM-DD"` or `annual = "MM-DD"`, optional `early_close = "HH:MM"` (New York time: open
//! until then, closed until the next FX day opens at 17:00; without it the whole FX day — 17:00 the
//! evening before to 17:00 on the date — is closed), optional `symbols = ["XAUUSD", …]`
//! (canonical names; absent: all). Unknown keys are refused. The default
//! ([`calendar::default_calendar_toml`]) closes Christmas Day and New Year's Day and closes early
//! at 13:00 on 24 and 31 December.

pub mod approval;
pub mod calendar;
pub mod copy_log;
pub mod follow;
pub mod market_hours;
pub mod risk;
pub mod sizing;
pub mod symbols;

mod evaluate;
mod settings;

pub use evaluate::{evaluate, signal_issued_ms};
pub use settings::{PolicySettings, SettingsError};

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tradecast_protocol::ea::{self, OrderKind, TradeMode};
use tradecast_protocol::{EntryKind, Signal, SignalId, Timeframe};

use crate::orders::{Quote, SignalLevels, Split, SymbolSpec};
use crate::strategy::Side;
use approval::ApprovalSettings;
use calendar::HolidayCalendar;
use market_hours::{Closed, MarketHoursSettings};
use risk::{AccountRisk, DayStart, RiskSettings, RiskStop};
use sizing::{Account, LotLimits, LotMode, SizeSkip};
use symbols::{SymbolSettings, Unmapped};

/// Everything one evaluation reads, from the EA's latest hello and state push and the node's
/// own records.
#[derive(Debug, Clone, Copy)]
pub struct EvaluationInput<'a> {
    /// The provider's signal (verified, stored).
    pub signal: &'a Signal,
    /// The provider's own lot, when the feed carries it (the multiplier lot mode needs it).
    pub provider_lots: Option<Decimal>,
    /// The broker's specs from hello (and later `RequestSpec` answers): at least the one of the
    /// signal's broker symbol, the only one looked up (the node passes just that one).
    pub specs: &'a [ea::SymbolSpec],
    /// Current tick values from the latest state push; they override the spec's for sizing.
    pub tick_values: &'a [ea::TickValue],
    /// Current quotes by broker symbol.
    pub quotes: &'a BTreeMap<String, Quote>,
    pub balance: Decimal,
    pub equity: Decimal,
    /// Peak equity, deposits and withdrawals adjusted (the drawdown guard's).
    pub peak_equity: Decimal,
    /// The drawdown guard has locked auto mode: accepted signals wait for the trader.
    pub guard_locked: bool,
    /// What the trader's plan allows (a signal from the hub without `auto_copy` in force waits
    /// for the trader).
    pub plan: approval::PlanGate,
    /// The equity recorded at the start of the current server day.
    pub day_start: Option<DayStart>,
    /// Tradecast's exposure by broker symbol: one entry per open position (magic is
    /// Tradecast's), pending order, and order sent but not yet settled.
    pub open_symbols: &'a [String],
    /// Now, market clock, unix ms UTC.
    pub now_ms: i64,
    /// Broker server time minus UTC, seconds (from hello).
    pub server_utc_offset_s: i32,
    pub calendar: &'a HolidayCalendar,
}

/// One planned position of an [`OrderPlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedLeg {
    /// Lots, on the volume step.
    pub volume: Decimal,
    /// `None` when `copy_sl` is off.
    pub sl: Option<Decimal>,
    /// `None` when `copy_tp` is off.
    pub tp: Option<Decimal>,
}

/// What to send for an accepted signal; the node core gives each leg an order id and number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlan {
    pub signal_id: SignalId,
    /// The provider's name.
    pub canonical_symbol: String,
    /// The broker's name.
    pub symbol: String,
    pub kind: OrderKind,
    /// A market order's expected fill (ask for a buy, bid for a sell); a pending order's price.
    pub price: Decimal,
    pub legs: Vec<PlannedLeg>,
    /// Total lots.
    pub volume: Decimal,
    /// Account currency lost at the (provider's, rounded) stop.
    pub risk_money: Decimal,
    /// Reward/risk to tp1 from `price`.
    pub rr: Decimal,
    /// For a market order; `None` for a pending one.
    pub max_slippage_points: Option<u32>,
    /// The signal's expiry: a market order is not sent after it, a pending one expires then.
    pub expires_at_ms: i64,
    pub reversed: bool,
    /// The lot mode that sized it.
    pub lot_mode: LotMode,
}

impl OrderPlan {
    /// The EA order for leg `leg` (0-based), with the id and number the node core allocated;
    /// `None` when there is no such leg. A pending order expires at the signal's expiry; a
    /// market order carries the price the node expected and the slippage limit.
    pub fn ea_order(&self, leg: usize, order_id: String, order_no: u32) -> Option<ea::Order> {
        let l = self.legs.get(leg)?;
        Some(ea::Order {
            order_id,
            order_no,
            symbol: self.symbol.clone(),
            kind: self.kind,
            volume: l.volume,
            price: Some(self.price),
            sl: l.sl,
            tp: l.tp,
            max_slippage_points: self.max_slippage_points,
            expiration_ms: (!self.kind.is_market()).then_some(self.expires_at_ms),
        })
    }
}

/// A quote from the last closed bar the EA pushed (the link carries no ticks): the bid is the
/// bar's close, the ask the bid plus the spread at the close (`spread_points` × point; no
/// spread known: the bid, which under-states a buy's cost by the spread).
pub fn quote_from_bar(close_bid: Decimal, spread_points: Option<u32>, point: Decimal) -> Quote {
    let spread = point.checked_mul(Decimal::from(spread_points.unwrap_or(0))).unwrap_or_default();
    Quote { bid: close_bid, ask: close_bid.checked_add(spread).unwrap_or(close_bid) }
}

/// The policy's rules, in evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Settings,
    Copying,
    Symbol,
    TradeMode,
    MarketHours,
    Expiry,
    Age,
    Drawdown,
    DailyLoss,
    OpenPositions,
    Price,
    Order,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Settings => "settings",
            Rule::Copying => "copying",
            Rule::Symbol => "symbol",
            Rule::TradeMode => "trade_mode",
            Rule::MarketHours => "market_hours",
            Rule::Expiry => "expiry",
            Rule::Age => "age",
            Rule::Drawdown => "drawdown",
            Rule::DailyLoss => "daily_loss",
            Rule::OpenPositions => "open_positions",
            Rule::Price => "price",
            Rule::Order => "order",
        }
    }
}

/// One evaluated rule: passed with what it saw, or failed with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub rule: Rule,
    pub passed: bool,
    /// In words: what passed ("EURUSD → EURUSD.m") or why it failed.
    pub detail: String,
}

/// Why a signal was skipped. `Display` is the copy-log line, starting with "skipped: ".
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    Settings(SettingsError),
    /// The account the signal would trade on has no row on this node (never said hello, or
    /// its row is gone): nothing to evaluate against.
    UnknownAccount {
        account: String,
    },
    CopyingOff,
    Symbol(Unmapped),
    TradeMode {
        symbol: String,
        side: Side,
        mode: TradeMode,
    },
    MarketClosed {
        symbol: String,
        closed: Closed,
    },
    Expired {
        expires_at_ms: i64,
        now_ms: i64,
    },
    TooOld {
        age_s: i64,
        limit_s: u32,
    },
    Risk(RiskStop),
    NoQuote {
        symbol: String,
    },
    PriceMovedPoints {
        symbol: String,
        moved_points: Decimal,
        entry: Decimal,
        limit_points: u32,
    },
    PriceMovedFraction {
        symbol: String,
        moved_points: Decimal,
        fraction: Decimal,
        limit: Decimal,
    },
    PendingNotCopied {
        kind: EntryKind,
    },
    PendingWrongSide {
        symbol: String,
        kind: OrderKind,
        price: Decimal,
        market: Decimal,
    },
    PendingTooClose {
        symbol: String,
        distance_points: Decimal,
        stops_level_points: u32,
    },
    Order {
        symbol: String,
        skip: SizeSkip,
    },
}

/// `ms` as `2026-11-25 14:00:00 UTC`.
pub fn fmt_utc(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("{ms} ms"),
    }
}

fn kind_name(kind: OrderKind) -> &'static str {
    match kind {
        OrderKind::Buy => "buy",
        OrderKind::Sell => "sell",
        OrderKind::BuyLimit => "buy limit",
        OrderKind::SellLimit => "sell limit",
        OrderKind::BuyStop => "buy stop",
        OrderKind::SellStop => "sell stop",
    }
}

fn trade_mode_name(mode: TradeMode) -> &'static str {
    match mode {
        TradeMode::Disabled => "trading disabled",
        TradeMode::LongOnly => "long only",
        TradeMode::ShortOnly => "short only",
        TradeMode::CloseOnly => "close only",
        TradeMode::Full => "full",
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("skipped: ")?;
        match self {
            SkipReason::Settings(e) => write!(f, "{e}"),
            SkipReason::UnknownAccount { account } => write!(f, "no account {account}"),
            SkipReason::CopyingOff => f.write_str("copying is switched off"),
            SkipReason::Symbol(u) => write!(f, "{u}"),
            SkipReason::TradeMode { symbol, side, mode } => {
                write!(f, "{symbol} allows no new {} ({})", side.as_str(), trade_mode_name(*mode))
            }
            SkipReason::MarketClosed { symbol, closed } => {
                write!(f, "{symbol} market closed ({closed})")
            }
            SkipReason::Expired { expires_at_ms, now_ms } => write!(
                f,
                "signal expired {} s ago (at {})",
                (now_ms.saturating_sub(*expires_at_ms)) / 1_000,
                fmt_utc(*expires_at_ms)
            ),
            SkipReason::TooOld { age_s, limit_s } => {
                write!(f, "signal {age_s} s old, limit {limit_s} s")
            }
            SkipReason::Risk(stop) => write!(f, "{stop}"),
            SkipReason::NoQuote { symbol } => write!(f, "no current price for {symbol}"),
            SkipReason::PriceMovedPoints { symbol, moved_points, entry, limit_points } => write!(
                f,
                "{symbol} price moved {moved_points} points from the entry {entry}, limit {limit_points}"
            ),
            SkipReason::PriceMovedFraction { symbol, moved_points, fraction, limit } => write!(
                f,
                "{symbol} price moved {moved_points} points from the entry, {fraction} of the stop distance, limit {limit}"
            ),
            SkipReason::PendingNotCopied { kind } => write!(
                f,
                "{} entries are not copied (copy_pending is off)",
                match kind {
                    EntryKind::Market => "market",
                    EntryKind::Limit => "limit",
                    EntryKind::Stop => "stop",
                }
            ),
            SkipReason::PendingWrongSide { symbol, kind, price, market } => write!(
                f,
                "{symbol} {} at {price} is on the wrong side of the market {market}",
                kind_name(*kind)
            ),
            SkipReason::PendingTooClose { symbol, distance_points, stops_level_points } => write!(
                f,
                "{symbol} pending price is {distance_points} points from the market, the broker's stops level is {stops_level_points}"
            ),
            SkipReason::Order { symbol, skip } => write!(f, "{symbol}: {skip}"),
        }
    }
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accept(OrderPlan),
    Skip(SkipReason),
}

/// The verdict and the steps that led to it (every step until the first failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub outcome: Outcome,
    pub steps: Vec<Step>,
    /// The drawdown guard has locked auto mode, or the plan does not include `auto_copy`
    /// ([`approval::PlanGate::ManualOnly`]): even in auto mode the trader decides.
    pub auto_suspended: bool,
}

impl Evaluation {
    /// The copy-log line: "skipped: …" or "accepted: …".
    pub fn log_line(&self) -> String {
        match &self.outcome {
            Outcome::Skip(reason) => reason.to_string(),
            Outcome::Accept(plan) => format!(
                "accepted: {} {} {} lots at {}{}",
                plan.symbol,
                kind_name(plan.kind),
                plan.volume,
                plan.price,
                if plan.reversed { " (reversed)" } else { "" }
            ),
        }
    }
}

#[cfg(test)]
mod tests;
