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
//! 2. `copying`: copying is switched on.
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

/// The trader's copy policy (see the module doc for every field, its default and unit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySettings {
    pub copying: bool,
    pub approval: ApprovalSettings,
    pub market_hours: MarketHoursSettings,
    pub max_signal_age_s: u32,
    pub max_price_move_points: Option<u32>,
    pub max_price_move_stop_fraction: Decimal,
    pub max_slippage_points: u32,
    pub copy_pending: bool,
    pub symbols: SymbolSettings,
    pub lot: LotMode,
    pub lot_min: Option<Decimal>,
    pub lot_max: Option<Decimal>,
    pub max_risk_pct: Decimal,
    pub min_rr: Decimal,
    pub split: Split,
    pub reverse: bool,
    pub copy_sl: bool,
    pub copy_tp: bool,
    pub copy_modifications: bool,
    pub copy_partial_closes: bool,
    pub risk: RiskSettings,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            copying: true,
            approval: ApprovalSettings::default(),
            market_hours: MarketHoursSettings::default(),
            max_signal_age_s: 60,
            max_price_move_points: None,
            max_price_move_stop_fraction: Decimal::new(25, 2),
            max_slippage_points: 10,
            copy_pending: true,
            symbols: SymbolSettings::default(),
            lot: LotMode::default(),
            lot_min: None,
            lot_max: None,
            max_risk_pct: Decimal::from(5),
            min_rr: Decimal::ONE,
            split: Split::Whole,
            reverse: false,
            copy_sl: true,
            copy_tp: true,
            copy_modifications: true,
            copy_partial_closes: true,
            risk: RiskSettings::default(),
        }
    }
}

/// Settings that cannot work together or a value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Not TOML of the documented shape.
    #[error("policy settings: {0}")]
    Toml(String),
    /// One setting is out of range or conflicts with another.
    #[error("policy setting {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid { key: key.into(), message: message.into() }
}

fn check_lot_mode(key: &str, mode: &LotMode, copy_sl: bool) -> Result<(), SettingsError> {
    let positive = |name: &str, v: Decimal| {
        if v > Decimal::ZERO {
            Ok(())
        } else {
            Err(invalid(format!("{key}.{name}"), format!("{v} must be above 0")))
        }
    };
    match mode {
        LotMode::Fixed { lots } => positive("lots", *lots),
        LotMode::Multiplier { factor } => positive("factor", *factor),
        LotMode::Proportional { lots, per_balance } => {
            positive("lots", *lots)?;
            positive("per_balance", *per_balance)
        }
        LotMode::RiskPercent { percent } => {
            positive("percent", *percent)?;
            if *percent > Decimal::ONE_HUNDRED {
                return Err(invalid(format!("{key}.percent"), format!("{percent} is above 100")));
            }
            if !copy_sl {
                return Err(invalid(
                    key,
                    "risk % sizing needs the stop: turn copy_sl on or pick another lot mode",
                ));
            }
            Ok(())
        }
    }
}

impl PolicySettings {
    /// Parses and validates a settings file.
    pub fn from_toml(text: &str) -> Result<PolicySettings, SettingsError> {
        let settings: PolicySettings =
            toml::from_str(text).map_err(|e| SettingsError::Toml(e.message().to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks ranges and combinations; the first problem found, naming its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_lot_mode("lot", &self.lot, self.copy_sl)?;
        for (symbol, rule) in &self.symbols.per_symbol {
            if let Some(mode) = &rule.lot {
                check_lot_mode(&format!("symbols.per_symbol.{symbol}.lot"), mode, self.copy_sl)?;
            }
        }
        let pct = |key: &str, v: Decimal| {
            if v > Decimal::ZERO && v <= Decimal::ONE_HUNDRED {
                Ok(())
            } else {
                Err(invalid(key, format!("{v} is not a percentage in (0, 100]")))
            }
        };
        pct("max_risk_pct", self.max_risk_pct)?;
        pct("risk.drawdown_lock_pct", self.risk.drawdown_lock_pct)?;
        if self.risk.daily_loss_limit_pct != Decimal::ZERO {
            pct("risk.daily_loss_limit_pct", self.risk.daily_loss_limit_pct)?;
        }
        if let Some(m) = self.risk.daily_loss_limit_money
            && m <= Decimal::ZERO
        {
            return Err(invalid("risk.daily_loss_limit_money", format!("{m} must be above 0")));
        }
        if self.max_price_move_stop_fraction < Decimal::ZERO {
            return Err(invalid(
                "max_price_move_stop_fraction",
                format!("{} must not be negative", self.max_price_move_stop_fraction),
            ));
        }
        if self.min_rr < Decimal::ZERO {
            return Err(invalid("min_rr", format!("{} must not be negative", self.min_rr)));
        }
        for (key, v) in [("lot_min", self.lot_min), ("lot_max", self.lot_max)] {
            if let Some(v) = v
                && v <= Decimal::ZERO
            {
                return Err(invalid(key, format!("{v} must be above 0")));
            }
        }
        if let (Some(min), Some(max)) = (self.lot_min, self.lot_max)
            && min > max
        {
            return Err(invalid("lot_min", format!("{min} is above lot_max {max}")));
        }
        if self.risk.max_open_positions == 0 || self.risk.max_open_per_symbol == 0 {
            return Err(invalid(
                "risk.max_open_positions",
                "0 would copy nothing: set copying = false",
            ));
        }
        if self.reverse && self.split == Split::Halves {
            return Err(invalid("split", "halves need tp2, which a reversed trade does not have"));
        }
        Ok(())
    }
}

/// Everything one evaluation reads, from the EA's latest hello and state push and the node's
/// own records.
#[derive(Debug, Clone, Copy)]
pub struct EvaluationInput<'a> {
    /// The provider's signal (verified, stored).
    pub signal: &'a Signal,
    /// The provider's own lot, when the feed carries it (the multiplier lot mode needs it).
    pub provider_lots: Option<Decimal>,
    /// The broker's Market Watch: the specs from hello (and later `RequestSpec` answers).
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
    CopyingOff,
    Symbol(Unmapped),
    TradeMode { symbol: String, side: Side, mode: TradeMode },
    MarketClosed { symbol: String, closed: Closed },
    Expired { expires_at_ms: i64, now_ms: i64 },
    TooOld { age_s: i64, limit_s: u32 },
    Risk(RiskStop),
    NoQuote { symbol: String },
    PriceMovedPoints { symbol: String, moved_points: Decimal, entry: Decimal, limit_points: u32 },
    PriceMovedFraction { symbol: String, moved_points: Decimal, fraction: Decimal, limit: Decimal },
    PendingNotCopied { kind: EntryKind },
    PendingWrongSide { symbol: String, kind: OrderKind, price: Decimal, market: Decimal },
    PendingTooClose { symbol: String, distance_points: Decimal, stops_level_points: u32 },
    Order { symbol: String, skip: SizeSkip },
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
    /// The drawdown guard has locked auto mode: even in auto mode the trader decides.
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

/// When the signal was issued on the market clock: the close of its bar (`bar_time_ms` plus the
/// timeframe; a month for MN1, in UTC). `None` when out of range.
pub fn signal_issued_ms(signal: &Signal) -> Option<i64> {
    let secs: i64 = match signal.timeframe {
        Timeframe::M1 => 60,
        Timeframe::M5 => 300,
        Timeframe::M15 => 900,
        Timeframe::M30 => 1_800,
        Timeframe::H1 => 3_600,
        Timeframe::H4 => 14_400,
        Timeframe::D1 => 86_400,
        Timeframe::W1 => 604_800,
        Timeframe::MN1 => {
            let ts = jiff::Timestamp::from_millisecond(signal.bar_time_ms).ok()?;
            let next = ts
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .checked_add(jiff::Span::new().months(1))
                .ok()?;
            return Some(next.timestamp().as_millisecond());
        }
    };
    signal.bar_time_ms.checked_add(secs * 1_000)
}

fn side_of(side: tradecast_protocol::Side) -> Side {
    match side {
        tradecast_protocol::Side::Buy => Side::Buy,
        tradecast_protocol::Side::Sell => Side::Sell,
    }
}

fn flip(side: Side) -> Side {
    match side {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    }
}

/// The order kind for a side and entry (after reversing).
fn order_kind(side: Side, entry: EntryKind, reversed: bool) -> OrderKind {
    match (side, entry) {
        (Side::Buy, EntryKind::Market) => OrderKind::Buy,
        (Side::Sell, EntryKind::Market) => OrderKind::Sell,
        // Reversing a pending entry keeps its price: a buy limit (below the market) becomes a
        // sell stop there, a buy stop a sell limit.
        (Side::Buy, EntryKind::Limit) if !reversed => OrderKind::BuyLimit,
        (Side::Buy, EntryKind::Limit) => OrderKind::BuyStop,
        (Side::Sell, EntryKind::Limit) if !reversed => OrderKind::SellLimit,
        (Side::Sell, EntryKind::Limit) => OrderKind::SellStop,
        (Side::Buy, EntryKind::Stop) if !reversed => OrderKind::BuyStop,
        (Side::Buy, EntryKind::Stop) => OrderKind::BuyLimit,
        (Side::Sell, EntryKind::Stop) if !reversed => OrderKind::SellStop,
        (Side::Sell, EntryKind::Stop) => OrderKind::SellLimit,
    }
}

struct Recorder {
    steps: Vec<Step>,
    auto_suspended: bool,
}

impl Recorder {
    fn pass(&mut self, rule: Rule, detail: impl Into<String>) {
        self.steps.push(Step { rule, passed: true, detail: detail.into() });
    }

    fn fail(mut self, rule: Rule, reason: SkipReason) -> Evaluation {
        self.steps.push(Step { rule, passed: false, detail: reason.to_string() });
        Evaluation {
            outcome: Outcome::Skip(reason),
            steps: self.steps,
            auto_suspended: self.auto_suspended,
        }
    }
}

/// Evaluates one signal (see the module doc for the steps).
pub fn evaluate(settings: &PolicySettings, input: &EvaluationInput<'_>) -> Evaluation {
    let mut rec = Recorder { steps: Vec::new(), auto_suspended: input.guard_locked };
    let signal = input.signal;

    if let Err(e) = settings.validate() {
        return rec.fail(Rule::Settings, SkipReason::Settings(e));
    }
    rec.pass(Rule::Settings, "consistent");

    if !settings.copying {
        return rec.fail(Rule::Copying, SkipReason::CopyingOff);
    }
    rec.pass(Rule::Copying, "on");

    let canonical = signal.symbol.as_str();
    let mapped =
        settings.symbols.map_symbol(canonical, input.specs.iter().map(|s| s.symbol.as_str()));
    // map_symbol only returns names from `specs`, so the look-up finds one; if it ever did not,
    // the symbol is treated as missing at the broker rather than trusted.
    let spec = match mapped.map(|name| input.specs.iter().find(|s| s.symbol == name)) {
        Ok(Some(spec)) => spec,
        Ok(None) => {
            let broker = settings.symbols.broker_name(canonical);
            let u = Unmapped::NotAtBroker { canonical: canonical.to_string(), broker };
            return rec.fail(Rule::Symbol, SkipReason::Symbol(u));
        }
        Err(u) => return rec.fail(Rule::Symbol, SkipReason::Symbol(u)),
    };
    let symbol = spec.symbol.clone();
    rec.pass(Rule::Symbol, format!("{canonical} → {symbol}"));

    let reversed = settings.reverse;
    let side = if reversed { flip(side_of(signal.side)) } else { side_of(signal.side) };
    let allowed = match spec.trade_mode {
        TradeMode::Full => true,
        TradeMode::LongOnly => side == Side::Buy,
        TradeMode::ShortOnly => side == Side::Sell,
        TradeMode::Disabled | TradeMode::CloseOnly => false,
    };
    if !allowed {
        return rec
            .fail(Rule::TradeMode, SkipReason::TradeMode { symbol, side, mode: spec.trade_mode });
    }
    rec.pass(Rule::TradeMode, format!("{} allowed", side.as_str()));

    if let Err(closed) = market_hours::check_open(
        input.now_ms,
        canonical,
        &spec.sessions,
        input.calendar,
        &settings.market_hours,
    ) {
        return rec.fail(Rule::MarketHours, SkipReason::MarketClosed { symbol, closed });
    }
    rec.pass(Rule::MarketHours, if settings.market_hours.enabled { "open" } else { "not checked" });

    if input.now_ms >= signal.expires_at_ms {
        return rec.fail(
            Rule::Expiry,
            SkipReason::Expired { expires_at_ms: signal.expires_at_ms, now_ms: input.now_ms },
        );
    }
    rec.pass(
        Rule::Expiry,
        format!("expires in {} s", signal.expires_at_ms.saturating_sub(input.now_ms) / 1_000),
    );

    // A signal from the market clock's future (a lagging terminal clock) counts as fresh.
    let issued = signal_issued_ms(signal).unwrap_or(i64::MIN);
    let age_s = input.now_ms.saturating_sub(issued).max(0) / 1_000;
    if age_s > i64::from(settings.max_signal_age_s) {
        return rec
            .fail(Rule::Age, SkipReason::TooOld { age_s, limit_s: settings.max_signal_age_s });
    }
    rec.pass(Rule::Age, format!("{age_s} s old, limit {} s", settings.max_signal_age_s));

    let account = AccountRisk {
        equity: input.equity,
        peak_equity: input.peak_equity,
        day_start: input.day_start,
        now_ms: input.now_ms,
        server_utc_offset_s: input.server_utc_offset_s,
    };
    if let Err(stop) = risk::check_drawdown(&settings.risk, &account) {
        return rec.fail(Rule::Drawdown, SkipReason::Risk(stop));
    }
    rec.pass(
        Rule::Drawdown,
        if input.guard_locked {
            format!(
                "equity {} of peak {}; the drawdown guard locked auto mode, the trader decides",
                input.equity, input.peak_equity
            )
        } else {
            format!("equity {} of peak {}", input.equity, input.peak_equity)
        },
    );
    if let Err(stop) = risk::check_daily_loss(&settings.risk, &account) {
        return rec.fail(Rule::DailyLoss, SkipReason::Risk(stop));
    }
    rec.pass(Rule::DailyLoss, "within the limit");
    if let Err(stop) = risk::check_open_positions(
        &settings.risk,
        &symbol,
        input.open_symbols.iter().map(String::as_str),
    ) {
        return rec.fail(Rule::OpenPositions, SkipReason::Risk(stop));
    }
    rec.pass(Rule::OpenPositions, format!("{} open", input.open_symbols.len()));

    // Price.
    let Some(quote) = input.quotes.get(&symbol).copied() else {
        return rec.fail(Rule::Price, SkipReason::NoQuote { symbol });
    };
    let kind = order_kind(side, signal.entry_kind, reversed);
    let point = spec.point;
    if point <= Decimal::ZERO {
        return rec.fail(
            Rule::Order,
            SkipReason::Order {
                symbol,
                skip: SizeSkip::Order(crate::orders::Skip::Invalid {
                    field: "point",
                    value: point.to_string(),
                }),
            },
        );
    }
    let in_points = |x: Decimal| x.checked_div(point).map(|p| p.round_dp(1).normalize());
    // Prices come from the EA and the provider: a difference that overflows is a skip, not a
    // panic.
    let distance = |a: Decimal, b: Decimal| a.checked_sub(b).map(|x| x.abs());
    let overflow = |symbol: String| SkipReason::Order { symbol, skip: SizeSkip::Overflow };
    let sizing_quote = match signal.entry_kind {
        EntryKind::Market => {
            let fill = if side == Side::Buy { quote.ask } else { quote.bid };
            let Some(moved) = distance(fill, signal.entry) else {
                return rec.fail(Rule::Price, overflow(symbol));
            };
            let moved_points = in_points(moved).unwrap_or(Decimal::MAX);
            if let Some(limit) = settings.max_price_move_points
                && moved_points > Decimal::from(limit)
            {
                return rec.fail(
                    Rule::Price,
                    SkipReason::PriceMovedPoints {
                        symbol,
                        moved_points,
                        entry: signal.entry,
                        limit_points: limit,
                    },
                );
            }
            let limit = settings.max_price_move_stop_fraction;
            if limit > Decimal::ZERO {
                let Some(stop_distance) = distance(signal.entry, signal.stop) else {
                    return rec.fail(Rule::Price, overflow(symbol));
                };
                let fraction = moved.checked_div(stop_distance).unwrap_or(Decimal::MAX);
                if fraction > limit {
                    return rec.fail(
                        Rule::Price,
                        SkipReason::PriceMovedFraction {
                            symbol,
                            moved_points,
                            fraction: fraction.round_dp(2).normalize(),
                            limit,
                        },
                    );
                }
            }
            rec.pass(
                Rule::Price,
                format!("fill {fill}, {moved_points} points from the entry {}", signal.entry),
            );
            quote
        }
        EntryKind::Limit | EntryKind::Stop => {
            if !settings.copy_pending {
                return rec
                    .fail(Rule::Price, SkipReason::PendingNotCopied { kind: signal.entry_kind });
            }
            // MT5: a buy limit below the ask, a buy stop above it; a sell limit above the bid, a
            // sell stop below it; at least the stops level away.
            let (market, below) = match kind {
                OrderKind::BuyLimit => (quote.ask, true),
                OrderKind::BuyStop => (quote.ask, false),
                OrderKind::SellLimit => (quote.bid, false),
                OrderKind::SellStop => (quote.bid, true),
                OrderKind::Buy | OrderKind::Sell => unreachable!("pending entry kinds only"),
            };
            let price = signal.entry;
            let gap = if below { market.checked_sub(price) } else { price.checked_sub(market) };
            let Some(distance) = gap else {
                return rec.fail(Rule::Price, overflow(symbol));
            };
            if distance <= Decimal::ZERO {
                return rec.fail(
                    Rule::Price,
                    SkipReason::PendingWrongSide { symbol, kind, price, market },
                );
            }
            let distance_points = in_points(distance).unwrap_or(Decimal::MAX);
            if distance_points < Decimal::from(spec.stops_level) {
                return rec.fail(
                    Rule::Price,
                    SkipReason::PendingTooClose {
                        symbol,
                        distance_points,
                        stops_level_points: spec.stops_level,
                    },
                );
            }
            rec.pass(
                Rule::Price,
                format!(
                    "{} at {price}, {distance_points} points from the market {market}",
                    kind_name(kind)
                ),
            );
            // The order is sized and checked as if filled at its own price.
            Quote { bid: price, ask: price }
        }
    };

    // The order: levels (reversed if asked), the spec with today's tick value, the lot.
    let tp2 = signal.tp2.unwrap_or(signal.tp1);
    let levels = if reversed {
        SignalLevels {
            side,
            entry: signal.entry,
            stop: signal.tp1,
            tp1: signal.stop,
            tp2: signal.stop,
            expires_unix_ms: signal.expires_at_ms,
        }
    } else {
        SignalLevels {
            side,
            entry: signal.entry,
            stop: signal.stop,
            tp1: signal.tp1,
            tp2,
            expires_unix_ms: signal.expires_at_ms,
        }
    };
    // The broker's current loss tick value (a state push) over the spec's (hello), which goes
    // stale on a cross pair; a value that cannot size anything is not used.
    let (tick_value_loss, tick_value_source) = input
        .tick_values
        .iter()
        .find(|t| t.symbol == symbol && t.tick_value_loss > Decimal::ZERO)
        .map(|t| (t.tick_value_loss, "current"))
        .unwrap_or((spec.tick_value_loss, "from the symbol's spec"));
    let order_spec = SymbolSpec {
        point: spec.point,
        tick_size: spec.tick_size,
        tick_value_loss,
        volume_min: spec.volume_min,
        volume_max: spec.volume_max,
        volume_step: spec.volume_step,
        stops_level_points: spec.stops_level,
    };
    let rule = settings.symbols.rule(canonical);
    let lot_mode = rule.lot.unwrap_or_else(|| settings.lot.clone());
    // Halves need a distinct tp2.
    let split = if signal.tp2.is_some() && !reversed { settings.split } else { Split::Whole };
    let limits = LotLimits {
        lot_min: settings.lot_min,
        lot_max: settings.lot_max,
        max_risk_pct: settings.max_risk_pct,
        min_rr: settings.min_rr,
    };
    let order = match sizing::size_order(
        &levels,
        &order_spec,
        &sizing_quote,
        &lot_mode,
        input.provider_lots,
        Account { balance: input.balance, equity: input.equity },
        limits,
        split,
        input.now_ms,
    ) {
        Ok(o) => o,
        Err(skip) => return rec.fail(Rule::Order, SkipReason::Order { symbol, skip }),
    };
    rec.pass(
        Rule::Order,
        format!(
            "{} {} lots ({lot_mode}), stop {} tp {}, risk {}, reward/risk {}, loss tick value {} ({tick_value_source})",
            kind_name(kind),
            order.volume,
            order.stop,
            order.tp1,
            order.risk_money,
            order.rr.round_dp(2),
            tick_value_loss.normalize()
        ),
    );
    let legs = order
        .legs
        .iter()
        .map(|l| PlannedLeg {
            volume: l.volume,
            sl: settings.copy_sl.then_some(l.stop),
            tp: settings.copy_tp.then_some(l.take_profit),
        })
        .collect();
    let plan = OrderPlan {
        signal_id: signal.id,
        canonical_symbol: canonical.to_string(),
        symbol,
        kind,
        price: order.fill_ref,
        legs,
        volume: order.volume,
        risk_money: order.risk_money,
        rr: order.rr,
        max_slippage_points: kind.is_market().then_some(settings.max_slippage_points),
        expires_at_ms: signal.expires_at_ms,
        reversed,
        lot_mode,
    };
    Evaluation {
        outcome: Outcome::Accept(plan),
        steps: rec.steps,
        auto_suspended: input.guard_locked,
    }
}

#[cfg(test)]
mod tests;
