//! The simulated broker: a pure model of an MT5 trade server. It owns symbols, one price stream,
//! accounts (netting or hedging), positions, pending orders and the deals history, and answers
//! trade requests with the retcode a real server gives. No I/O, no clock, no randomness: time
//! moves only when bars are replayed ([`Broker::on_bar`]) or a quote is set, so the replay time is
//! the market clock (system.md, Time).
//!
//! Rules, each with a unit test naming its retcode:
//! - symbol trade mode (10017 disabled, 10042 long only, 10043 short only, 10044 close only) and
//!   sessions (10018 outside them);
//! - volume min/max/step (10014), close volume above the position's (10038);
//! - prices on the tick size (10015 for an order price, 10016 for SL/TP), the stops level for
//!   SL/TP (10016) and for pending prices (10015), the freeze level (10029);
//! - instant execution requotes when the fill would be beyond the deviation (10004);
//! - margin = lots × contract size ÷ leverage in the margin currency, converted; equity − margin
//!   after the trade must stay ≥ 0 (10019);
//! - commission per lot on every deal, swap per lot at each server-day rollover (triple on
//!   Wednesday), profit with the tick value in account currency, which moves with price when the
//!   profit currency is not the account's (cross pairs);
//! - SL/TP and pending triggers through the shared intrabar rule
//!   ([`tradecast_protocol::trade::intrabar_exit`]): bid prices for a buy, ask for a sell;
//! - stop-out: when equity / margin falls below the stop-out level, the most losing position is
//!   closed (deal reason `stop_out`) until the level holds again.
//!
//! Simplifications (documented, not hidden): a position opened by a pending order that triggers
//! inside a bar is checked for SL/TP from the next bar on; hedged margin is not reduced; the
//! stop-out level is checked at each new price (a bar's close, a set quote), not inside a bar;
//! deals inside a bar carry the bar's open time.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use tradecast_protocol::bars::Bar;
use tradecast_protocol::ea::{
    self, Deal, DealEntry, DealKind, DealReason, MarginMode, OrderKind, Session, Side, SymbolSpec,
    Timeframe, TradeMode,
};
use tradecast_protocol::trade::{self, BarRange, ExitReason};

use crate::retcode;

mod expiration;
pub use expiration::{
    SYMBOL_EXPIRATION_ALL, SYMBOL_EXPIRATION_DAY, SYMBOL_EXPIRATION_GTC,
    SYMBOL_EXPIRATION_SPECIFIED, SYMBOL_EXPIRATION_SPECIFIED_DAY, TypeTime, end_of_server_day,
};

/// Seconds in a day.
const DAY_S: i64 = 86_400;

/// A tradable symbol's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolConfig {
    /// The broker's name.
    pub symbol: String,
    /// Digits of a price; the point and the tick size are `10^-digits`.
    pub digits: u32,
    /// Units of the base per lot.
    pub contract_size: Decimal,
    /// Smallest volume.
    pub volume_min: Decimal,
    /// Largest volume.
    pub volume_max: Decimal,
    /// Volume step.
    pub volume_step: Decimal,
    /// Stops level, points.
    pub stops_level: u32,
    /// Freeze level, points.
    pub freeze_level: u32,
    /// What is allowed.
    pub trade_mode: TradeMode,
    /// Base currency.
    pub currency_base: String,
    /// Profit currency.
    pub currency_profit: String,
    /// Margin currency.
    pub currency_margin: String,
    /// Trading sessions in the UTC week; empty: always open.
    pub sessions: Vec<Session>,
    /// Commission per lot per deal, in account currency, booked as a cost.
    pub commission_per_lot: Decimal,
    /// Swap per lot per rollover for a long, account currency (negative is a cost).
    pub swap_long_per_lot: Decimal,
    /// Swap per lot per rollover for a short, account currency.
    pub swap_short_per_lot: Decimal,
    /// `SYMBOL_FILLING_MODE`: [`SYMBOL_FILLING_FOK`] | [`SYMBOL_FILLING_IOC`] flags.
    pub filling_modes: u32,
    /// `SYMBOL_EXPIRATION_MODE`: [`SYMBOL_EXPIRATION_GTC`] | `_DAY` | `_SPECIFIED` |
    /// `_SPECIFIED_DAY` flags: the pending-order lifetimes the broker accepts when
    /// [`BrokerConfig::check_expiration`] is on (10022 otherwise).
    pub expiration_modes: u32,
}

impl SymbolConfig {
    /// A forex pair named like `EURUSD`: base and margin currency the first three letters,
    /// profit currency the next three; 100,000 per lot, 0.01–100 lots by 0.01, stops level 10,
    /// freeze level 5, open all week except Saturday, no commission, no swap.
    pub fn forex(symbol: &str, digits: u32) -> SymbolConfig {
        let base = symbol.get(0..3).unwrap_or("XXX").to_owned();
        let profit = symbol.get(3..6).unwrap_or("XXX").to_owned();
        SymbolConfig {
            symbol: symbol.to_owned(),
            digits,
            contract_size: Decimal::from(100_000),
            volume_min: Decimal::new(1, 2),
            volume_max: Decimal::from(100),
            volume_step: Decimal::new(1, 2),
            stops_level: 10,
            freeze_level: 5,
            trade_mode: TradeMode::Full,
            currency_margin: base.clone(),
            currency_base: base,
            currency_profit: profit,
            sessions: forex_week(),
            commission_per_lot: Decimal::ZERO,
            swap_long_per_lot: Decimal::ZERO,
            swap_short_per_lot: Decimal::ZERO,
            filling_modes: SYMBOL_FILLING_FOK | SYMBOL_FILLING_IOC,
            expiration_modes: SYMBOL_EXPIRATION_ALL,
        }
    }

    /// The point (and tick size): `10^-digits`.
    pub fn point(&self) -> Decimal {
        Decimal::new(1, self.digits)
    }
}

/// A Market Watch of `n` symbols as brokers show it (issue 23: 250 to 400 is common), each a
/// USD-quoted CFD-like symbol named `Qnn_USD.nnn` whose sessions are set day by day with a daily
/// break (ten windows a week), so its spec is as long as a real one.
pub fn market_watch(n: usize) -> Vec<SymbolConfig> {
    let day = 86_400;
    let sessions: Vec<Session> = (1..=5)
        .flat_map(|d| {
            [
                Session { from_week_s: d * day + 300, to_week_s: d * day + 79_200 },
                Session { from_week_s: d * day + 82_800, to_week_s: d * day + 86_100 },
            ]
        })
        .collect();
    (0..n)
        .map(|i| SymbolConfig {
            sessions: sessions.clone(),
            ..SymbolConfig::forex(&format!("Q{:02}USD.{i:03}", i % 100), 5)
        })
        .collect()
}

/// Forex hours in the UTC week: Sunday 21:00 to Friday 22:00 (Saturday closed).
pub fn forex_week() -> Vec<Session> {
    vec![Session { from_week_s: 21 * 3_600, to_week_s: 5 * 86_400 + 22 * 3_600 }]
}

/// How market orders execute (MT5 `SYMBOL_TRADE_EXEMODE`; here one mode for every symbol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Execution {
    /// Market execution: fills at the current price whatever the deviation.
    #[default]
    Market,
    /// Instant execution: requotes (10004) when the fill would be beyond the deviation from the
    /// request's price.
    Instant,
    /// Request execution: like instant here (the dealer requotes beyond the deviation).
    Request,
    /// Exchange execution: fills at the current price whatever the deviation.
    Exchange,
}

impl Execution {
    /// Whether the dealer compares the fill with the request's price (and requotes).
    pub fn requotes(self) -> bool {
        matches!(self, Execution::Instant | Execution::Request)
    }
}

/// `SYMBOL_FILLING_FOK`: fill-or-kill allowed.
pub const SYMBOL_FILLING_FOK: u32 = 1;
/// `SYMBOL_FILLING_IOC`: immediate-or-cancel allowed.
pub const SYMBOL_FILLING_IOC: u32 = 2;

/// A request's filling policy (MT5 `ORDER_FILLING_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filling {
    /// `ORDER_FILLING_FOK`.
    #[default]
    Fok,
    /// `ORDER_FILLING_IOC`.
    Ioc,
    /// `ORDER_FILLING_RETURN`.
    Return,
}

/// Whether MT5 accepts `filling` for an order of `kind` on a symbol with execution mode
/// `execution` and `SYMBOL_FILLING_MODE` flags `modes`. Market and stop orders (a stop becomes
/// a market order when it triggers): FOK when its flag is set, and always under instant or
/// request execution; IOC when its flag is set; RETURN only under exchange execution or when
/// the symbol sets no flag (outside instant and request execution). Limit orders: RETURN always,
/// FOK and IOC by their flags.
pub fn filling_allowed(
    execution: Execution,
    modes: u32,
    kind: OrderKind,
    filling: Filling,
) -> bool {
    let fok = modes & SYMBOL_FILLING_FOK != 0;
    let ioc = modes & SYMBOL_FILLING_IOC != 0;
    let limit = matches!(kind, OrderKind::BuyLimit | OrderKind::SellLimit);
    match filling {
        Filling::Fok => fok || (!limit && execution.requotes()),
        Filling::Ioc => ioc,
        Filling::Return => {
            limit
                || execution == Execution::Exchange
                || (modes & (SYMBOL_FILLING_FOK | SYMBOL_FILLING_IOC) == 0 && !execution.requotes())
        }
    }
}

/// The broker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Market, instant, request or exchange execution (every symbol's `SYMBOL_TRADE_EXEMODE`).
    pub execution: Execution,
    /// Refuse a filling policy the execution mode and the symbol's `filling_modes` do not allow
    /// with 10030, as MT5 does ([`filling_allowed`]). Off: any filling is taken.
    pub check_filling: bool,
    /// Adverse slippage on every market fill, in points.
    pub slippage_points: u32,
    /// Server time minus UTC, seconds (the server day, hence rollover, follows it).
    pub server_utc_offset_s: i32,
    /// A daylight-saving change of the server's clock: from `.0` (unix ms UTC) on, server time
    /// minus UTC is `.1` seconds (e.g. 7200 → 10800 when New York springs forward). None: the
    /// offset never changes.
    pub dst_change: Option<(i64, i32)>,
    /// The trade server's name.
    pub server: String,
    /// The broker's name.
    pub company: String,
    /// Stop-out level: margin level (equity ÷ margin, percent) below which positions are closed,
    /// the most losing first. Zero disables it.
    pub stop_out_level_pct: Decimal,
    /// A netting reversal gives the position a new ticket (`POSITION_TICKET`, the reversing
    /// order's) while its identifier (`POSITION_IDENTIFIER`) stays, as MT5 does. Off: the
    /// ticket stays the identifier.
    pub new_ticket_on_reversal: bool,
    /// Swap is rolled over by closing and re-opening every position at the rollover: each gets
    /// a new ticket, its identifier stays (brokers that do this exist).
    pub reopen_on_rollover: bool,
    /// Refuse a pending order whose `type_time` the symbol's `expiration_modes` do not allow
    /// with 10022 (invalid expiration), as MT5 does. Off: any lifetime is taken.
    pub check_expiration: bool,
    /// The dealer requotes (10004) the first `requote_closes` requests to close each position
    /// (a deal naming the position) before it fills one: a fast market at a dealing-desk
    /// broker. 0: closes are never requoted.
    pub requote_closes: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            execution: Execution::Market,
            slippage_points: 0,
            server_utc_offset_s: 7_200,
            server: "Tradecast-Sim".to_owned(),
            company: "Tradecast Simulated Broker".to_owned(),
            stop_out_level_pct: Decimal::from(50),
            dst_change: None,
            new_ticket_on_reversal: false,
            reopen_on_rollover: false,
            check_filling: false,
            check_expiration: false,
            requote_closes: 0,
        }
    }
}

/// An account to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// The login.
    pub login: u64,
    /// Deposit currency.
    pub currency: String,
    /// Leverage (100 for 1:100).
    pub leverage: u32,
    /// Netting or hedging.
    pub margin_mode: MarginMode,
    /// Initial deposit.
    pub balance: Decimal,
}

/// A current quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// Bid.
    pub bid: Decimal,
    /// Ask.
    pub ask: Decimal,
    /// When, UTC.
    pub time_ms: i64,
}

/// What a trade request does (MT5 `TRADE_ACTION_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeAction {
    /// A market deal: opens, adds to, reduces or closes (with `position`) a position.
    Deal,
    /// Places a pending order.
    Pending,
    /// Changes a position's SL/TP.
    Sltp,
    /// Changes a pending order's SL/TP.
    Modify,
    /// Deletes a pending order.
    Remove,
}

/// A trade request (MT5 `MqlTradeRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeRequest {
    /// What to do.
    pub action: TradeAction,
    /// The symbol.
    pub symbol: String,
    /// Volume in lots.
    pub volume: Decimal,
    /// Order type.
    pub kind: OrderKind,
    /// Pending price, or for instant execution the price the requote compares against.
    pub price: Option<Decimal>,
    /// Stop loss.
    pub sl: Option<Decimal>,
    /// Take profit.
    pub tp: Option<Decimal>,
    /// Accepted deviation, points.
    pub deviation_points: u32,
    /// Magic number.
    pub magic: u64,
    /// Comment (cut to 31 characters as MT5 does).
    pub comment: String,
    /// The position to close or modify.
    pub position: Option<u64>,
    /// The pending order to modify or remove.
    pub order: Option<u64>,
    /// A pending order's lifetime (`type_time`).
    pub type_time: TypeTime,
    /// A pending order's expiry, UTC (`expiration`: the time for [`TypeTime::Specified`], the
    /// day for [`TypeTime::SpecifiedDay`], ignored otherwise).
    pub expiration_ms: Option<i64>,
    /// The filling policy (`type_filling`).
    pub filling: Filling,
}

impl TradeRequest {
    /// A market order with nothing else set.
    pub fn market(symbol: &str, kind: OrderKind, volume: Decimal) -> TradeRequest {
        TradeRequest {
            action: TradeAction::Deal,
            symbol: symbol.to_owned(),
            volume,
            kind,
            price: None,
            sl: None,
            tp: None,
            deviation_points: 0,
            magic: 0,
            comment: String::new(),
            position: None,
            order: None,
            type_time: TypeTime::Gtc,
            expiration_ms: None,
            filling: Filling::Fok,
        }
    }
}

/// A trade result (MT5 `MqlTradeResult`, plus the position it touched).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TradeResult {
    /// The retcode.
    pub retcode: u32,
    /// The deal ticket, 0 if none.
    pub deal: u64,
    /// The order ticket, 0 if none.
    pub order: u64,
    /// The position opened or touched, 0 if none.
    pub position_id: u64,
    /// Volume done.
    pub volume: Decimal,
    /// Fill price.
    pub price: Decimal,
    /// Current bid.
    pub bid: Decimal,
    /// Current ask.
    pub ask: Decimal,
    /// MT5's words.
    pub comment: String,
    /// When, UTC.
    pub time_ms: i64,
}

impl TradeResult {
    fn code(retcode: u32) -> TradeResult {
        TradeResult {
            retcode,
            comment: retcode::describe(retcode).to_owned(),
            ..TradeResult::default()
        }
    }
}

/// An open position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPosition {
    /// Identifier (`POSITION_IDENTIFIER`: the opening order's ticket, for life).
    pub position_id: u64,
    /// Ticket (`POSITION_TICKET`): what `PositionSelectByTicket` and a request's `position`
    /// name. The identifier at first; a new one after a reversal or a re-opening rollover when
    /// the broker's options say so.
    pub ticket: u64,
    /// Symbol.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Lots.
    pub volume: Decimal,
    /// Average open price.
    pub open_price: Decimal,
    /// Open time, UTC.
    pub open_time_ms: i64,
    /// Stop loss.
    pub sl: Option<Decimal>,
    /// Take profit.
    pub tp: Option<Decimal>,
    /// Accumulated swap.
    pub swap: Decimal,
    /// Magic.
    pub magic: u64,
    /// Comment.
    pub comment: String,
    /// Bars opening at or before this time do not check its SL/TP (opened inside that bar).
    checked_after_ms: i64,
}

/// A pending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Ticket.
    pub order_ticket: u64,
    /// Symbol.
    pub symbol: String,
    /// Kind (a pending kind).
    pub kind: OrderKind,
    /// Lots.
    pub volume: Decimal,
    /// Trigger price.
    pub price: Decimal,
    /// Stop loss.
    pub sl: Option<Decimal>,
    /// Take profit.
    pub tp: Option<Decimal>,
    /// Placed, UTC.
    pub time_setup_ms: i64,
    /// Expiry, UTC.
    pub expiration_ms: Option<i64>,
    /// Magic.
    pub magic: u64,
    /// Comment.
    pub comment: String,
}

/// The account figures (MT5 `ACCOUNT_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// Login.
    pub login: u64,
    /// Deposit currency.
    pub currency: String,
    /// Leverage.
    pub leverage: u32,
    /// Netting or hedging.
    pub margin_mode: MarginMode,
    /// Balance.
    pub balance: Decimal,
    /// Credit.
    pub credit: Decimal,
    /// Equity: balance + credit + floating profit + swap.
    pub equity: Decimal,
    /// Margin in use.
    pub margin: Decimal,
    /// Equity − margin.
    pub free_margin: Decimal,
}

#[derive(Debug, Clone)]
struct Account {
    cfg: AccountConfig,
    balance: Decimal,
    credit: Decimal,
    positions: BTreeMap<u64, OpenPosition>,
    orders: BTreeMap<u64, Pending>,
    deals: Vec<Deal>,
}

#[derive(Debug, Clone)]
struct SymbolState {
    cfg: SymbolConfig,
    quote: Option<Quote>,
    /// Closed bars replayed so far (bid), oldest first, with their timeframe length.
    bars: Vec<Bar>,
    bar_seconds: i64,
}

/// Why the broker refused a set-up call (not a trade: trades answer with retcodes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The login is taken.
    #[error("account {0} exists already")]
    AccountExists(u64),
    /// No such login.
    #[error("no account {0}")]
    NoAccount(u64),
    /// No such symbol.
    #[error("no symbol {0}")]
    NoSymbol(String),
    /// A bar is not after the previous one.
    #[error("bar at {0} is not after the previous bar")]
    BarOutOfOrder(i64),
}

/// Something the broker did on its own during a bar (SL/TP, pending trigger, expiry, rollover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// A deal was made (SL, TP, pending trigger).
    Deal {
        /// The account.
        login: u64,
        /// The deal.
        deal: Deal,
    },
    /// A pending order expired or could not be filled (no money) and was removed.
    OrderRemoved {
        /// The account.
        login: u64,
        /// The ticket.
        order_ticket: u64,
        /// 10019 when it triggered without margin, 0 when it expired.
        retcode: u32,
    },
}

/// The simulated trade server.
#[derive(Debug, Clone)]
pub struct Broker {
    cfg: BrokerConfig,
    symbols: BTreeMap<String, SymbolState>,
    accounts: BTreeMap<u64, Account>,
    time_ms: i64,
    next_order: u64,
    next_deal: u64,
    /// Close requests requoted so far per (login, position identifier)
    /// ([`BrokerConfig::requote_closes`]).
    close_requotes: BTreeMap<(u64, u64), u32>,
}

fn money(d: Decimal) -> Decimal {
    let mut m = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    // No "-0.00" on the wire: a zero is a zero.
    if m.is_zero() {
        m.set_sign_positive(true);
    }
    m
}

fn on_grid(value: Decimal, step: Decimal) -> bool {
    step > Decimal::ZERO && (value % step).is_zero()
}

fn opposite(side: Side) -> Side {
    match side {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    }
}

fn trade_side(side: Side) -> trade::Side {
    match side {
        Side::Buy => trade::Side::Buy,
        Side::Sell => trade::Side::Sell,
    }
}

fn kind_side(kind: OrderKind) -> Side {
    if kind.is_buy() { Side::Buy } else { Side::Sell }
}

impl Broker {
    /// A broker with no symbols and no accounts, its clock at 0.
    pub fn new(cfg: BrokerConfig) -> Broker {
        Broker {
            cfg,
            symbols: BTreeMap::new(),
            accounts: BTreeMap::new(),
            time_ms: 0,
            next_order: 1_000_001,
            next_deal: 5_000_001,
            close_requotes: BTreeMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.cfg
    }

    /// The settings, to change mid-run (a test turning a real-MT5 behaviour on).
    pub fn config_mut(&mut self) -> &mut BrokerConfig {
        &mut self.cfg
    }

    /// Adds (or replaces the configuration of) a symbol.
    pub fn add_symbol(&mut self, cfg: SymbolConfig) {
        let name = cfg.symbol.clone();
        match self.symbols.get_mut(&name) {
            Some(s) => s.cfg = cfg,
            None => {
                self.symbols.insert(
                    name,
                    SymbolState { cfg, quote: None, bars: Vec::new(), bar_seconds: 0 },
                );
            }
        }
    }

    /// Opens an account.
    pub fn open_account(&mut self, cfg: AccountConfig) -> Result<(), BrokerError> {
        if self.accounts.contains_key(&cfg.login) {
            return Err(BrokerError::AccountExists(cfg.login));
        }
        let login = cfg.login;
        let balance = cfg.balance;
        self.accounts.insert(
            login,
            Account {
                cfg,
                balance,
                credit: Decimal::ZERO,
                positions: BTreeMap::new(),
                orders: BTreeMap::new(),
                deals: Vec::new(),
            },
        );
        Ok(())
    }

    /// The logins, ascending.
    pub fn logins(&self) -> Vec<u64> {
        self.accounts.keys().copied().collect()
    }

    /// Server time minus UTC at `time_ms` (UTC), seconds: what `TimeTradeServer() - TimeGMT()`
    /// reads then, with the configured daylight-saving change.
    pub fn server_utc_offset_at(&self, time_ms: i64) -> i32 {
        match self.cfg.dst_change {
            Some((at_ms, offset)) if time_ms >= at_ms => offset,
            _ => self.cfg.server_utc_offset_s,
        }
    }

    /// The market clock: the replay time, UTC.
    pub fn time_ms(&self) -> i64 {
        self.time_ms
    }

    /// The symbol names.
    pub fn symbol_names(&self) -> Vec<String> {
        self.symbols.keys().cloned().collect()
    }

    /// The symbol's configuration.
    pub fn symbol(&self, symbol: &str) -> Option<&SymbolConfig> {
        self.symbols.get(symbol).map(|s| &s.cfg)
    }

    /// The symbol's current quote.
    pub fn quote(&self, symbol: &str) -> Option<Quote> {
        self.symbols.get(symbol).and_then(|s| s.quote)
    }

    /// Whether the symbol trades at `time_ms` (its sessions; none configured: always).
    pub fn is_open(&self, symbol: &str, time_ms: i64) -> bool {
        self.symbols.get(symbol).is_some_and(|s| {
            s.cfg.sessions.is_empty() || s.cfg.sessions.iter().any(|w| w.contains(time_ms))
        })
    }

    fn server_day(&self, time_ms: i64) -> i64 {
        (time_ms.div_euclid(1_000) + i64::from(self.server_utc_offset_at(time_ms)))
            .div_euclid(DAY_S)
    }

    /// Moves the clock (never backwards) and books swap at each server-day change.
    fn advance_to(&mut self, time_ms: i64) {
        if time_ms <= self.time_ms {
            return;
        }
        let (from_day, to_day) = (self.server_day(self.time_ms), self.server_day(time_ms));
        if self.time_ms > 0 && to_day > from_day {
            // One rollover per replayed day change; Wednesday's (day after Tuesday) is triple.
            // 1970-01-01 was a Thursday: weekday = (day + 4) mod 7, 0 = Sunday.
            let weekday = (from_day + 4).rem_euclid(7);
            let mult = if weekday == 3 { Decimal::from(3) } else { Decimal::ONE };
            let symbols = &self.symbols;
            for acc in self.accounts.values_mut() {
                for p in acc.positions.values_mut() {
                    if let Some(s) = symbols.get(&p.symbol) {
                        let per_lot = match p.side {
                            Side::Buy => s.cfg.swap_long_per_lot,
                            Side::Sell => s.cfg.swap_short_per_lot,
                        };
                        p.swap += money(per_lot * p.volume * mult);
                    }
                }
            }
            if self.cfg.reopen_on_rollover {
                let mut next = self.next_order;
                for acc in self.accounts.values_mut() {
                    for p in acc.positions.values_mut() {
                        p.ticket = next;
                        next += 1;
                    }
                }
                self.next_order = next;
            }
        }
        self.time_ms = time_ms;
    }

    /// Sets a symbol's quote and moves the clock to `time_ms` (for tests and tick replays; bars
    /// go through [`Broker::on_bar`]).
    pub fn set_quote(
        &mut self,
        symbol: &str,
        bid: Decimal,
        ask: Decimal,
        time_ms: i64,
    ) -> Result<(), BrokerError> {
        if !self.symbols.contains_key(symbol) {
            return Err(BrokerError::NoSymbol(symbol.to_owned()));
        }
        self.advance_to(time_ms);
        if let Some(s) = self.symbols.get_mut(symbol) {
            s.quote = Some(Quote { bid, ask, time_ms });
        }
        let mut events = Vec::new();
        // Pending orders of the symbol whose expiry has come go (the server expires them on
        // time, not at the next bar).
        for login in self.logins() {
            self.expire_orders(login, symbol, self.time_ms, &mut events);
        }
        self.stop_out(&mut events);
        Ok(())
    }

    /// Closes the most losing position of every account whose margin level is below the
    /// stop-out level, until it is not (MT5's stop-out; deal reason `stop_out`).
    fn stop_out(&mut self, events: &mut Vec<BrokerEvent>) {
        let level = self.cfg.stop_out_level_pct;
        if level <= Decimal::ZERO {
            return;
        }
        for login in self.logins() {
            // Each pass closes one position, so the loop ends within the number of positions.
            while let Some(acc) = self.accounts.get(&login) {
                let margin = self.margin_of(acc);
                if margin <= Decimal::ZERO
                    || self.equity_of(acc) * Decimal::from(100) >= level * margin
                {
                    break;
                }
                let currency = acc.cfg.currency.clone();
                let Some(worst) = acc
                    .positions
                    .values()
                    .min_by_key(|p| self.position_profit(p, &currency))
                    .cloned()
                else {
                    break;
                };
                let Some(q) = self.quote(&worst.symbol) else { break };
                let price = match worst.side {
                    Side::Buy => q.bid,
                    Side::Sell => q.ask,
                };
                let order = self.take_order_ticket();
                let deal = self.execute(
                    login,
                    Fill {
                        symbol: worst.symbol.clone(),
                        side: opposite(worst.side),
                        volume: worst.volume,
                        price,
                        order,
                        target: Some(worst.position_id),
                        sl: None,
                        tp: None,
                        magic: worst.magic,
                        comment: format!("[so {}]", price),
                        reason: DealReason::StopOut,
                        time_ms: self.time_ms,
                    },
                );
                events.push(BrokerEvent::Deal { login, deal });
            }
        }
    }

    /// Conversion rate from `from` to `to` currency using the symbols' quotes: a direct pair
    /// `FROMTO` at its bid (`use_ask`: ask), or an inverse pair `TOFROM` as 1/ask (1/bid).
    fn rate(&self, from: &str, to: &str, use_ask: bool) -> Option<Decimal> {
        if from == to {
            return Some(Decimal::ONE);
        }
        for s in self.symbols.values() {
            let Some(q) = s.quote else { continue };
            if s.cfg.currency_base == from && s.cfg.currency_profit == to {
                return Some(if use_ask { q.ask } else { q.bid });
            }
            if s.cfg.currency_base == to && s.cfg.currency_profit == from {
                let p = if use_ask { q.bid } else { q.ask };
                if p.is_zero() {
                    return None;
                }
                return Some(Decimal::ONE / p);
            }
        }
        None
    }

    /// Tick values (profit, loss) of one lot in `currency`, from the current quotes: they move
    /// with price when the profit currency is not `currency`.
    pub fn tick_values(&self, symbol: &str, currency: &str) -> Option<(Decimal, Decimal)> {
        let s = self.symbols.get(symbol)?;
        let per_tick = s.cfg.point() * s.cfg.contract_size;
        let profit = self.rate(&s.cfg.currency_profit, currency, false)?;
        let loss = self.rate(&s.cfg.currency_profit, currency, true)?;
        Some((per_tick * profit, per_tick * loss))
    }

    /// The spec the EA would send for this symbol, tick values in `currency`.
    pub fn symbol_spec(&self, symbol: &str, currency: &str) -> Option<SymbolSpec> {
        let s = self.symbols.get(symbol)?;
        let (tvp, tvl) = self.tick_values(symbol, currency).unwrap_or_default();
        let c = &s.cfg;
        Some(SymbolSpec {
            symbol: c.symbol.clone(),
            digits: c.digits,
            point: c.point(),
            tick_size: c.point(),
            tick_value_profit: tvp.round_dp(8).normalize(),
            tick_value_loss: tvl.round_dp(8).normalize(),
            contract_size: c.contract_size,
            volume_min: c.volume_min,
            volume_max: c.volume_max,
            volume_step: c.volume_step,
            stops_level: c.stops_level,
            freeze_level: c.freeze_level,
            trade_mode: c.trade_mode,
            currency_base: c.currency_base.clone(),
            currency_profit: c.currency_profit.clone(),
            currency_margin: c.currency_margin.clone(),
            sessions: c.sessions.clone(),
        })
    }

    fn account(&self, login: u64) -> Result<&Account, BrokerError> {
        self.accounts.get(&login).ok_or(BrokerError::NoAccount(login))
    }

    /// Floating profit of a position at the current quote, account currency (rounded to cents).
    fn position_profit(&self, p: &OpenPosition, currency: &str) -> Decimal {
        let Some(s) = self.symbols.get(&p.symbol) else { return Decimal::ZERO };
        let Some(q) = s.quote else { return Decimal::ZERO };
        let close = match p.side {
            Side::Buy => q.bid,
            Side::Sell => q.ask,
        };
        self.profit_at(&p.symbol, p.side, p.volume, p.open_price, close, currency)
    }

    fn profit_at(
        &self,
        symbol: &str,
        side: Side,
        volume: Decimal,
        open: Decimal,
        close: Decimal,
        currency: &str,
    ) -> Decimal {
        let Some(s) = self.symbols.get(symbol) else { return Decimal::ZERO };
        let diff = match side {
            Side::Buy => close - open,
            Side::Sell => open - close,
        };
        let ticks = diff / s.cfg.point();
        let (tvp, tvl) = self.tick_values(symbol, currency).unwrap_or_default();
        let tv = if ticks >= Decimal::ZERO { tvp } else { tvl };
        money(ticks * tv * volume)
    }

    /// Margin of `volume` lots of `symbol` in account currency.
    fn margin_for(&self, symbol: &str, volume: Decimal, acc: &AccountConfig) -> Option<Decimal> {
        let s = self.symbols.get(symbol)?;
        let rate = self.rate(&s.cfg.currency_margin, &acc.currency, true)?;
        let lev = Decimal::from(acc.leverage.max(1));
        Some(money(volume * s.cfg.contract_size * rate / lev))
    }

    fn margin_of(&self, acc: &Account) -> Decimal {
        acc.positions
            .values()
            .map(|p| self.margin_for(&p.symbol, p.volume, &acc.cfg).unwrap_or_default())
            .sum()
    }

    fn equity_of(&self, acc: &Account) -> Decimal {
        let floating: Decimal = acc
            .positions
            .values()
            .map(|p| self.position_profit(p, &acc.cfg.currency) + p.swap)
            .sum();
        acc.balance + acc.credit + floating
    }

    /// The account figures now.
    pub fn account_info(&self, login: u64) -> Result<AccountInfo, BrokerError> {
        let acc = self.account(login)?;
        let equity = self.equity_of(acc);
        let margin = self.margin_of(acc);
        Ok(AccountInfo {
            login,
            currency: acc.cfg.currency.clone(),
            leverage: acc.cfg.leverage,
            margin_mode: acc.cfg.margin_mode,
            balance: acc.balance,
            credit: acc.credit,
            equity,
            margin,
            free_margin: equity - margin,
        })
    }

    /// The open positions as the EA reports them.
    pub fn positions(&self, login: u64) -> Result<Vec<ea::Position>, BrokerError> {
        let acc = self.account(login)?;
        Ok(acc
            .positions
            .values()
            .map(|p| {
                let q = self.quote(&p.symbol);
                let price_current = q
                    .map(|q| match p.side {
                        Side::Buy => q.bid,
                        Side::Sell => q.ask,
                    })
                    .unwrap_or(p.open_price);
                ea::Position {
                    position_id: p.position_id,
                    symbol: p.symbol.clone(),
                    side: p.side,
                    volume: p.volume,
                    open_price: p.open_price,
                    open_time_ms: p.open_time_ms,
                    sl: p.sl,
                    tp: p.tp,
                    price_current,
                    swap: p.swap,
                    profit: self.position_profit(p, &acc.cfg.currency),
                    magic: p.magic,
                    comment: p.comment.clone(),
                }
            })
            .collect())
    }

    /// The ticket (`POSITION_TICKET`) of the open position with identifier `position_id`
    /// (`POSITION_IDENTIFIER`), if it is open.
    pub fn position_ticket(&self, login: u64, position_id: u64) -> Option<u64> {
        self.accounts.get(&login)?.positions.get(&position_id).map(|p| p.ticket)
    }

    /// The pending orders as the EA reports them.
    pub fn orders(&self, login: u64) -> Result<Vec<ea::PendingOrder>, BrokerError> {
        let acc = self.account(login)?;
        Ok(acc
            .orders
            .values()
            .map(|o| ea::PendingOrder {
                order_ticket: o.order_ticket,
                symbol: o.symbol.clone(),
                kind: o.kind,
                volume: o.volume,
                price: o.price,
                sl: o.sl,
                tp: o.tp,
                time_setup_ms: o.time_setup_ms,
                expiration_ms: o.expiration_ms,
                magic: o.magic,
                comment: o.comment.clone(),
            })
            .collect())
    }

    /// The deals with `from_ms ≤ time < to_ms`, oldest first (`HistorySelect`).
    pub fn deals(&self, login: u64, from_ms: i64, to_ms: i64) -> Result<Vec<Deal>, BrokerError> {
        let acc = self.account(login)?;
        Ok(acc
            .deals
            .iter()
            .filter(|d| d.time_ms >= from_ms && d.time_ms < to_ms)
            .cloned()
            .collect())
    }

    /// The closed bars of `symbol` aggregated to `timeframe` with open time in
    /// `[from_ms, to_ms]`, oldest first; only whole bars (every replayed bar of the period seen
    /// and the period over). `None` when the timeframe is shorter than, or not a multiple of,
    /// the replayed one, or is W1/MN1.
    pub fn bars(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        from_ms: i64,
        to_ms: i64,
    ) -> Option<Vec<Bar>> {
        // Cursors come from the node: clamp them so no arithmetic below can overflow.
        let from_ms = from_ms.clamp(0, i64::MAX / 4);
        let to_ms = to_ms.clamp(-1, i64::MAX / 4);
        let s = self.symbols.get(symbol)?;
        let tf_s = timeframe.seconds()?;
        if s.bar_seconds == 0 {
            return Some(Vec::new());
        }
        if matches!(timeframe, Timeframe::W1 | Timeframe::MN1) || tf_s % s.bar_seconds != 0 {
            return None;
        }
        let offset_ms = if timeframe == Timeframe::D1 {
            i64::from(self.server_utc_offset_at(self.time_ms)) * 1_000
        } else {
            0
        };
        let period_ms = tf_s * 1_000;
        let start_of = |t: i64| (t + offset_ms).div_euclid(period_ms) * period_ms - offset_ms;
        let mut out: Vec<Bar> = Vec::new();
        let first = s.bars.partition_point(|b| b.time_unix_ms < start_of(from_ms));
        for b in &s.bars[first..] {
            let start = start_of(b.time_unix_ms);
            if start > to_ms {
                break;
            }
            match out.last_mut() {
                Some(last) if last.time_unix_ms == start => {
                    last.high = last.high.max(b.high);
                    last.low = last.low.min(b.low);
                    last.close = b.close;
                }
                _ => out.push(Bar { time_unix_ms: start, ..*b }),
            }
        }
        // A period is closed once the replay clock has passed its end.
        out.retain(|b| b.time_unix_ms >= from_ms && b.time_unix_ms + period_ms <= self.time_ms);
        Some(out)
    }

    fn take_order_ticket(&mut self) -> u64 {
        let t = self.next_order;
        self.next_order += 1;
        t
    }

    fn take_deal_ticket(&mut self) -> u64 {
        let t = self.next_deal;
        self.next_deal += 1;
        t
    }

    /// Sends a trade request for `login` (`OrderSend`), answering as an MT5 server would.
    pub fn send(&mut self, login: u64, req: &TradeRequest) -> TradeResult {
        self.send_filling(login, req, None)
    }

    /// As [`Broker::send`], but a market deal fills at most `max_volume` (rounded down to the
    /// volume step), answering 10010 when that is less than asked: the partial fill of an IOC
    /// order.
    pub fn send_partial(
        &mut self,
        login: u64,
        req: &TradeRequest,
        max_volume: Decimal,
    ) -> TradeResult {
        self.send_filling(login, req, Some(max_volume))
    }

    fn send_filling(
        &mut self,
        login: u64,
        req: &TradeRequest,
        cap: Option<Decimal>,
    ) -> TradeResult {
        let mut r = match self.accounts.get(&login) {
            None => TradeResult::code(retcode::INVALID),
            Some(_) => match req.action {
                TradeAction::Deal => self.deal(login, req, cap),
                TradeAction::Pending => self.place(login, req),
                TradeAction::Sltp => self.sltp(login, req),
                TradeAction::Modify => self.modify_order(login, req),
                TradeAction::Remove => self.remove(login, req),
            },
        };
        if let Some(q) = self.quote(&req.symbol) {
            r.bid = q.bid;
            r.ask = q.ask;
        }
        if r.time_ms == 0 {
            r.time_ms = self.time_ms;
        }
        r
    }

    /// Symbol, quote, session and trade-mode checks shared by every trade action.
    fn gate(&self, req: &TradeRequest, opening: bool) -> Result<(&SymbolConfig, Quote), u32> {
        let s = self.symbols.get(&req.symbol).ok_or(retcode::INVALID)?;
        let q = s.quote.ok_or(retcode::PRICE_OFF)?;
        match s.cfg.trade_mode {
            TradeMode::Disabled => return Err(retcode::TRADE_DISABLED),
            TradeMode::CloseOnly if opening => return Err(retcode::CLOSE_ONLY),
            TradeMode::LongOnly if opening && !req.kind.is_buy() => return Err(retcode::LONG_ONLY),
            TradeMode::ShortOnly if opening && req.kind.is_buy() => {
                return Err(retcode::SHORT_ONLY);
            }
            _ => {}
        }
        if !self.is_open(&req.symbol, self.time_ms) {
            return Err(retcode::MARKET_CLOSED);
        }
        Ok((&s.cfg, q))
    }

    /// 10030 for a filling policy MT5 would refuse, when the broker checks it.
    fn check_filling(&self, cfg: &SymbolConfig, req: &TradeRequest) -> Result<(), u32> {
        if self.cfg.check_filling
            && !filling_allowed(self.cfg.execution, cfg.filling_modes, req.kind, req.filling)
        {
            return Err(retcode::INVALID_FILL);
        }
        Ok(())
    }

    fn check_volume(cfg: &SymbolConfig, volume: Decimal) -> Result<(), u32> {
        if volume < cfg.volume_min || volume > cfg.volume_max || !on_grid(volume, cfg.volume_step) {
            return Err(retcode::INVALID_VOLUME);
        }
        Ok(())
    }

    /// SL/TP of a `side` position against `reference` (bid for a buy, ask for a sell, or the
    /// pending price): on the tick grid, on the right side, at least the stops level away.
    fn check_stops(
        cfg: &SymbolConfig,
        side: Side,
        reference: Decimal,
        sl: Option<Decimal>,
        tp: Option<Decimal>,
    ) -> Result<(), u32> {
        let min = cfg.point() * Decimal::from(cfg.stops_level);
        let ok = |level: Decimal, below: bool| {
            let dist = if below { reference - level } else { level - reference };
            on_grid(level, cfg.point()) && dist > Decimal::ZERO && dist >= min
        };
        let (sl_below, tp_below) = match side {
            Side::Buy => (true, false),
            Side::Sell => (false, true),
        };
        if sl.is_some_and(|l| !ok(l, sl_below)) || tp.is_some_and(|l| !ok(l, tp_below)) {
            return Err(retcode::INVALID_STOPS);
        }
        Ok(())
    }

    /// Whether a level lies within the freeze distance of the market (no change allowed).
    fn frozen(cfg: &SymbolConfig, market: Decimal, level: Option<Decimal>) -> bool {
        let freeze = cfg.point() * Decimal::from(cfg.freeze_level);
        cfg.freeze_level > 0 && level.is_some_and(|l| (market - l).abs() <= freeze)
    }

    fn deal(&mut self, login: u64, req: &TradeRequest, cap: Option<Decimal>) -> TradeResult {
        let Some(acc) = self.accounts.get(&login) else {
            return TradeResult::code(retcode::INVALID);
        };
        let mode = acc.cfg.margin_mode;
        let side = kind_side(req.kind);
        if !req.kind.is_market() {
            return TradeResult::code(retcode::INVALID);
        }
        // Which position this deal reduces, if any.
        let target = match (mode, req.position) {
            (_, Some(ticket)) => match acc.positions.values().find(|p| p.ticket == ticket) {
                None => return TradeResult::code(retcode::POSITION_CLOSED),
                Some(p) if p.side == side || p.symbol != req.symbol => {
                    return TradeResult::code(retcode::INVALID);
                }
                Some(p) => Some(p.clone()),
            },
            (MarginMode::Netting, None) => {
                acc.positions.values().find(|p| p.symbol == req.symbol).cloned()
            }
            (MarginMode::Hedging, None) => None,
        };
        let reducing = target.as_ref().is_some_and(|p| p.side != side);
        let opening = !reducing || target.as_ref().is_some_and(|p| req.volume > p.volume);
        let (cfg, q) = match self.gate(req, opening) {
            Ok((c, q)) => (c.clone(), q),
            Err(code) => return TradeResult::code(code),
        };
        if let Err(code) = self.check_filling(&cfg, req) {
            return TradeResult::code(code);
        }
        if let Err(code) = Self::check_volume(&cfg, req.volume) {
            return TradeResult::code(code);
        }
        if let Some(p) = &target {
            if reducing && req.position.is_some() && req.volume > p.volume {
                return TradeResult::code(retcode::INVALID_CLOSE_VOLUME);
            }
            let market = match p.side {
                Side::Buy => q.bid,
                Side::Sell => q.ask,
            };
            if reducing && (Self::frozen(&cfg, market, p.sl) || Self::frozen(&cfg, market, p.tp)) {
                return TradeResult::code(retcode::FROZEN);
            }
        }
        // A dealer that requotes closes: the first `requote_closes` requests to close each
        // position are answered 10004.
        if let Some(p) = target.as_ref().filter(|_| reducing && req.position.is_some())
            && self.cfg.requote_closes > 0
        {
            let n = self.close_requotes.entry((login, p.position_id)).or_insert(0);
            if *n < self.cfg.requote_closes {
                *n += 1;
                return TradeResult::code(retcode::REQUOTE);
            }
        }
        let reference = match side {
            Side::Buy => q.bid,
            Side::Sell => q.ask,
        };
        if !reducing && let Err(code) = Self::check_stops(&cfg, side, reference, req.sl, req.tp) {
            return TradeResult::code(code);
        }
        let slip = cfg.point() * Decimal::from(self.cfg.slippage_points);
        let price = match side {
            Side::Buy => q.ask + slip,
            Side::Sell => q.bid - slip,
        };
        if self.cfg.execution.requotes()
            && let Some(asked) = req.price
            && (price - asked).abs() > cfg.point() * Decimal::from(req.deviation_points)
        {
            return TradeResult::code(retcode::REQUOTE);
        }
        let mut volume = req.volume;
        if let Some(cap) = cap {
            let steps = (cap / cfg.volume_step).floor();
            volume = volume.min(steps * cfg.volume_step);
            if volume < cfg.volume_min {
                return TradeResult::code(retcode::REJECT);
            }
        }
        // Margin after the trade: the resulting position's margin replaces the target's.
        let Some(acc) = self.accounts.get(&login) else {
            return TradeResult::code(retcode::INVALID);
        };
        let net_after = match &target {
            Some(p) if p.side == side => p.volume + volume,
            Some(p) => (volume - p.volume).abs(),
            None => volume,
        };
        let margin_before_target = target
            .as_ref()
            .and_then(|p| self.margin_for(&p.symbol, p.volume, &acc.cfg))
            .unwrap_or_default();
        let Some(margin_new) = self.margin_for(&req.symbol, net_after, &acc.cfg) else {
            return TradeResult::code(retcode::PRICE_OFF);
        };
        let margin_after = self.margin_of(acc) - margin_before_target + margin_new;
        if opening && self.equity_of(acc) - margin_after < Decimal::ZERO {
            return TradeResult::code(retcode::NO_MONEY);
        }
        let order = self.take_order_ticket();
        let deal = self.execute(
            login,
            Fill {
                symbol: req.symbol.clone(),
                side,
                volume,
                price,
                order,
                target: target.map(|p| p.position_id),
                sl: req.sl,
                tp: req.tp,
                magic: req.magic,
                comment: req.comment.chars().take(31).collect(),
                reason: DealReason::Expert,
                time_ms: self.time_ms,
            },
        );
        let code = if volume < req.volume { retcode::DONE_PARTIAL } else { retcode::DONE };
        TradeResult {
            retcode: code,
            deal: deal.deal_ticket,
            order,
            position_id: deal.position_id,
            volume,
            price,
            comment: retcode::describe(code).to_owned(),
            ..TradeResult::default()
        }
    }

    /// Books a fill: the deal, commission, realized profit, and the position change (netting
    /// merges, reduces or reverses; hedging opens or reduces `target`).
    fn execute(&mut self, login: u64, f: Fill) -> Deal {
        let deal_ticket = self.take_deal_ticket();
        let currency =
            self.accounts.get(&login).map(|a| a.cfg.currency.clone()).unwrap_or_default();
        let commission_per_lot =
            self.symbols.get(&f.symbol).map(|s| s.cfg.commission_per_lot).unwrap_or_default();
        let commission = money(-(commission_per_lot * f.volume));
        let target = f
            .target
            .and_then(|id| self.accounts.get(&login).and_then(|a| a.positions.get(&id)).cloned());
        let mut deal = Deal {
            deal_ticket,
            order_ticket: f.order,
            position_id: f.order,
            symbol: f.symbol.clone(),
            kind: match f.side {
                Side::Buy => DealKind::Buy,
                Side::Sell => DealKind::Sell,
            },
            entry: DealEntry::In,
            reason: f.reason,
            volume: f.volume,
            price: f.price,
            commission,
            swap: Decimal::ZERO,
            profit: Decimal::ZERO,
            fee: Decimal::ZERO,
            magic: f.magic,
            comment: f.comment.clone(),
            time_ms: f.time_ms,
        };
        let new_position = |id: u64, volume: Decimal| OpenPosition {
            position_id: id,
            ticket: id,
            symbol: f.symbol.clone(),
            side: f.side,
            volume,
            open_price: f.price,
            open_time_ms: f.time_ms,
            sl: f.sl,
            tp: f.tp,
            swap: Decimal::ZERO,
            magic: f.magic,
            comment: f.comment.clone(),
            checked_after_ms: i64::MIN,
        };
        let mut realized = Decimal::ZERO;
        let mut swap_realized = Decimal::ZERO;
        let mut update: Option<OpenPosition> = None;
        let mut remove: Option<u64> = None;
        match target {
            None => update = Some(new_position(f.order, f.volume)),
            Some(p) if p.side == f.side => {
                deal.position_id = p.position_id;
                let vol = p.volume + f.volume;
                let avg = ((p.open_price * p.volume + f.price * f.volume) / vol).round_dp(8);
                update = Some(OpenPosition {
                    volume: vol,
                    open_price: avg,
                    sl: f.sl.or(p.sl),
                    tp: f.tp.or(p.tp),
                    ..p
                });
            }
            Some(p) => {
                deal.position_id = p.position_id;
                let closed = f.volume.min(p.volume);
                realized =
                    self.profit_at(&p.symbol, p.side, closed, p.open_price, f.price, &currency);
                let swap_share =
                    if closed == p.volume { p.swap } else { money(p.swap * closed / p.volume) };
                swap_realized = swap_share;
                if f.volume < p.volume {
                    deal.entry = DealEntry::Out;
                    update = Some(OpenPosition {
                        volume: p.volume - f.volume,
                        swap: p.swap - swap_share,
                        ..p
                    });
                } else if f.volume == p.volume {
                    deal.entry = DealEntry::Out;
                    remove = Some(p.position_id);
                } else {
                    deal.entry = DealEntry::Inout;
                    let mut reversed = new_position(p.position_id, f.volume - p.volume);
                    reversed.open_time_ms = p.open_time_ms;
                    reversed.ticket =
                        if self.cfg.new_ticket_on_reversal { f.order } else { p.ticket };
                    update = Some(reversed);
                }
            }
        }
        deal.profit = realized;
        deal.swap = swap_realized;
        if let Some(acc) = self.accounts.get_mut(&login) {
            acc.balance += realized + swap_realized + commission;
            if let Some(id) = remove {
                acc.positions.remove(&id);
            }
            if let Some(p) = update {
                acc.positions.insert(p.position_id, p);
            }
            acc.deals.push(deal.clone());
        }
        deal
    }

    fn place(&mut self, login: u64, req: &TradeRequest) -> TradeResult {
        if req.kind.is_market() {
            return TradeResult::code(retcode::INVALID);
        }
        let (cfg, q) = match self.gate(req, true) {
            Ok((c, q)) => (c.clone(), q),
            Err(code) => return TradeResult::code(code),
        };
        if let Err(code) = self.check_filling(&cfg, req) {
            return TradeResult::code(code);
        }
        if let Err(code) = Self::check_volume(&cfg, req.volume) {
            return TradeResult::code(code);
        }
        let Some(price) = req.price else { return TradeResult::code(retcode::INVALID_PRICE) };
        let min = cfg.point() * Decimal::from(cfg.stops_level);
        let dist = match req.kind {
            OrderKind::BuyLimit => q.ask - price,
            OrderKind::SellLimit => price - q.bid,
            OrderKind::BuyStop => price - q.ask,
            OrderKind::SellStop => q.bid - price,
            OrderKind::Buy | OrderKind::Sell => Decimal::ZERO,
        };
        if !on_grid(price, cfg.point()) || dist <= Decimal::ZERO || dist < min {
            return TradeResult::code(retcode::INVALID_PRICE);
        }
        if let Err(code) = Self::check_stops(&cfg, kind_side(req.kind), price, req.sl, req.tp) {
            return TradeResult::code(code);
        }
        let Ok(expires) = expiration::effective_expiration(
            req.type_time,
            req.expiration_ms,
            cfg.expiration_modes,
            self.cfg.check_expiration,
            self.time_ms,
            self.server_utc_offset_at(self.time_ms),
        ) else {
            return TradeResult::code(retcode::INVALID_EXPIRATION);
        };
        let ticket = self.take_order_ticket();
        let time_ms = self.time_ms;
        if let Some(acc) = self.accounts.get_mut(&login) {
            acc.orders.insert(
                ticket,
                Pending {
                    order_ticket: ticket,
                    symbol: req.symbol.clone(),
                    kind: req.kind,
                    volume: req.volume,
                    price,
                    sl: req.sl,
                    tp: req.tp,
                    time_setup_ms: time_ms,
                    expiration_ms: expires,
                    magic: req.magic,
                    comment: req.comment.chars().take(31).collect(),
                },
            );
        }
        TradeResult {
            retcode: retcode::PLACED,
            order: ticket,
            volume: req.volume,
            price,
            comment: retcode::describe(retcode::PLACED).to_owned(),
            ..TradeResult::default()
        }
    }

    fn sltp(&mut self, login: u64, req: &TradeRequest) -> TradeResult {
        let Some(p) = req
            .position
            .and_then(|ticket| {
                self.accounts
                    .get(&login)
                    .and_then(|a| a.positions.values().find(|p| p.ticket == ticket))
            })
            .cloned()
        else {
            return TradeResult::code(retcode::POSITION_CLOSED);
        };
        let gate_req = TradeRequest { symbol: p.symbol.clone(), ..req.clone() };
        let (cfg, q) = match self.gate(&gate_req, false) {
            Ok((c, q)) => (c.clone(), q),
            Err(code) => return TradeResult::code(code),
        };
        let market = match p.side {
            Side::Buy => q.bid,
            Side::Sell => q.ask,
        };
        if req.sl == p.sl && req.tp == p.tp {
            return TradeResult::code(retcode::NO_CHANGES);
        }
        if Self::frozen(&cfg, market, p.sl) || Self::frozen(&cfg, market, p.tp) {
            return TradeResult::code(retcode::FROZEN);
        }
        if let Err(code) = Self::check_stops(&cfg, p.side, market, req.sl, req.tp) {
            return TradeResult::code(code);
        }
        if let Some(pos) =
            self.accounts.get_mut(&login).and_then(|a| a.positions.get_mut(&p.position_id))
        {
            pos.sl = req.sl;
            pos.tp = req.tp;
        }
        TradeResult {
            retcode: retcode::DONE,
            position_id: p.position_id,
            comment: retcode::describe(retcode::DONE).to_owned(),
            ..TradeResult::default()
        }
    }

    fn pending_of(&self, login: u64, req: &TradeRequest) -> Option<Pending> {
        req.order.and_then(|t| self.accounts.get(&login).and_then(|a| a.orders.get(&t))).cloned()
    }

    fn modify_order(&mut self, login: u64, req: &TradeRequest) -> TradeResult {
        let Some(o) = self.pending_of(login, req) else {
            return TradeResult::code(retcode::INVALID_ORDER);
        };
        let gate_req = TradeRequest { symbol: o.symbol.clone(), kind: o.kind, ..req.clone() };
        let (cfg, q) = match self.gate(&gate_req, false) {
            Ok((c, q)) => (c.clone(), q),
            Err(code) => return TradeResult::code(code),
        };
        let market = if o.kind.is_buy() { q.ask } else { q.bid };
        if req.sl == o.sl && req.tp == o.tp {
            return TradeResult::code(retcode::NO_CHANGES);
        }
        if Self::frozen(&cfg, market, Some(o.price)) {
            return TradeResult::code(retcode::FROZEN);
        }
        if let Err(code) = Self::check_stops(&cfg, kind_side(o.kind), o.price, req.sl, req.tp) {
            return TradeResult::code(code);
        }
        if let Some(ord) =
            self.accounts.get_mut(&login).and_then(|a| a.orders.get_mut(&o.order_ticket))
        {
            ord.sl = req.sl;
            ord.tp = req.tp;
        }
        TradeResult {
            retcode: retcode::DONE,
            order: o.order_ticket,
            comment: retcode::describe(retcode::DONE).to_owned(),
            ..TradeResult::default()
        }
    }

    fn remove(&mut self, login: u64, req: &TradeRequest) -> TradeResult {
        let Some(o) = self.pending_of(login, req) else {
            return TradeResult::code(retcode::INVALID_ORDER);
        };
        let gate_req = TradeRequest { symbol: o.symbol.clone(), kind: o.kind, ..req.clone() };
        let (cfg, q) = match self.gate(&gate_req, false) {
            Ok((c, q)) => (c.clone(), q),
            Err(code) => return TradeResult::code(code),
        };
        let market = if o.kind.is_buy() { q.ask } else { q.bid };
        if Self::frozen(&cfg, market, Some(o.price)) {
            return TradeResult::code(retcode::FROZEN);
        }
        if let Some(acc) = self.accounts.get_mut(&login) {
            acc.orders.remove(&o.order_ticket);
        }
        TradeResult {
            retcode: retcode::DONE,
            order: o.order_ticket,
            comment: retcode::describe(retcode::DONE).to_owned(),
            ..TradeResult::default()
        }
    }

    /// Replays one closed bar (bid prices) of `symbol`, `bar_seconds` long, with a spread of
    /// `spread_points`: pending orders trigger, SL/TP are hit by the shared intrabar rule, expired
    /// orders go, and the clock moves to the bar's close with bid = close, ask = close + spread.
    pub fn on_bar(
        &mut self,
        symbol: &str,
        bar: &Bar,
        spread_points: u32,
        bar_seconds: i64,
    ) -> Result<Vec<BrokerEvent>, BrokerError> {
        let Some(s) = self.symbols.get(symbol) else {
            return Err(BrokerError::NoSymbol(symbol.to_owned()));
        };
        if s.bars.last().is_some_and(|b| b.time_unix_ms >= bar.time_unix_ms) {
            return Err(BrokerError::BarOutOfOrder(bar.time_unix_ms));
        }
        let spread = s.cfg.point() * Decimal::from(spread_points);
        self.advance_to(bar.time_unix_ms);
        // Inside the bar the quote is the open, so margin checks of triggers see a price.
        if let Some(s) = self.symbols.get_mut(symbol) {
            s.quote =
                Some(Quote { bid: bar.open, ask: bar.open + spread, time_ms: bar.time_unix_ms });
        }
        let bid = BarRange { open: bar.open, high: bar.high, low: bar.low };
        let ask =
            BarRange { open: bar.open + spread, high: bar.high + spread, low: bar.low + spread };
        let mut events = Vec::new();
        let logins = self.logins();
        for login in logins {
            self.expire_orders(login, symbol, bar.time_unix_ms, &mut events);
            self.trigger_orders(login, symbol, bar, &bid, &ask, &mut events);
            self.hit_stops(login, symbol, bar, &bid, &ask, &mut events);
        }
        let close_ms = bar.time_unix_ms + bar_seconds * 1_000;
        for login in self.logins() {
            self.expire_orders(login, symbol, close_ms, &mut events);
        }
        if let Some(s) = self.symbols.get_mut(symbol) {
            s.bars.push(*bar);
            s.bar_seconds = bar_seconds;
        }
        self.advance_to(close_ms);
        if let Some(s) = self.symbols.get_mut(symbol) {
            s.quote = Some(Quote { bid: bar.close, ask: bar.close + spread, time_ms: close_ms });
        }
        self.stop_out(&mut events);
        Ok(events)
    }

    fn expire_orders(&mut self, login: u64, symbol: &str, now: i64, events: &mut Vec<BrokerEvent>) {
        let Some(acc) = self.accounts.get_mut(&login) else { return };
        let expired: Vec<u64> = acc
            .orders
            .values()
            .filter(|o| o.symbol == symbol && o.expiration_ms.is_some_and(|e| e <= now))
            .map(|o| o.order_ticket)
            .collect();
        for t in expired {
            acc.orders.remove(&t);
            events.push(BrokerEvent::OrderRemoved { login, order_ticket: t, retcode: 0 });
        }
    }

    fn trigger_orders(
        &mut self,
        login: u64,
        symbol: &str,
        bar: &Bar,
        bid: &BarRange<Decimal>,
        ask: &BarRange<Decimal>,
        events: &mut Vec<BrokerEvent>,
    ) {
        let Some(acc) = self.accounts.get(&login) else { return };
        let orders: Vec<Pending> =
            acc.orders.values().filter(|o| o.symbol == symbol).cloned().collect();
        for o in orders {
            let fill = match o.kind {
                OrderKind::BuyLimit => (ask.low <= o.price).then(|| o.price.min(ask.open)),
                OrderKind::BuyStop => (ask.high >= o.price).then(|| o.price.max(ask.open)),
                OrderKind::SellLimit => (bid.high >= o.price).then(|| o.price.max(bid.open)),
                OrderKind::SellStop => (bid.low <= o.price).then(|| o.price.min(bid.open)),
                OrderKind::Buy | OrderKind::Sell => None,
            };
            let Some(price) = fill else { continue };
            let Some(acc) = self.accounts.get(&login) else { return };
            let side = kind_side(o.kind);
            let target = match acc.cfg.margin_mode {
                MarginMode::Netting => acc.positions.values().find(|p| p.symbol == symbol).cloned(),
                MarginMode::Hedging => None,
            };
            let need = self.margin_for(symbol, o.volume, &acc.cfg).unwrap_or_default();
            let opening = target.as_ref().is_none_or(|p| p.side == side || o.volume > p.volume);
            if let Some(a) = self.accounts.get_mut(&login) {
                a.orders.remove(&o.order_ticket);
            }
            let Some(acc) = self.accounts.get(&login) else { return };
            if opening && self.equity_of(acc) - self.margin_of(acc) - need < Decimal::ZERO {
                events.push(BrokerEvent::OrderRemoved {
                    login,
                    order_ticket: o.order_ticket,
                    retcode: retcode::NO_MONEY,
                });
                continue;
            }
            let deal = self.execute(
                login,
                Fill {
                    symbol: symbol.to_owned(),
                    side,
                    volume: o.volume,
                    price,
                    order: o.order_ticket,
                    target: target.map(|p| p.position_id),
                    sl: o.sl,
                    tp: o.tp,
                    magic: o.magic,
                    comment: o.comment.clone(),
                    reason: DealReason::Expert,
                    time_ms: bar.time_unix_ms,
                },
            );
            // Opened inside this bar: its SL/TP are checked from the next bar on.
            if let Some(p) = self
                .accounts
                .get_mut(&login)
                .and_then(|a| a.positions.get_mut(&deal.position_id))
                .filter(|p| p.open_time_ms == bar.time_unix_ms)
            {
                p.checked_after_ms = bar.time_unix_ms;
            }
            events.push(BrokerEvent::Deal { login, deal });
        }
    }

    fn hit_stops(
        &mut self,
        login: u64,
        symbol: &str,
        bar: &Bar,
        bid: &BarRange<Decimal>,
        ask: &BarRange<Decimal>,
        events: &mut Vec<BrokerEvent>,
    ) {
        let Some(acc) = self.accounts.get(&login) else { return };
        let positions: Vec<OpenPosition> = acc
            .positions
            .values()
            .filter(|p| p.symbol == symbol && p.checked_after_ms < bar.time_unix_ms)
            .cloned()
            .collect();
        for p in positions {
            if p.sl.is_none() && p.tp.is_none() {
                continue;
            }
            // A missing stop is one the bar can never reach.
            let (range, never) = match p.side {
                Side::Buy => (bid, Decimal::MIN),
                Side::Sell => (ask, Decimal::MAX),
            };
            let Some(exit) =
                trade::intrabar_exit(trade_side(p.side), range, p.sl.unwrap_or(never), p.tp)
            else {
                continue;
            };
            let reason = match exit.reason {
                ExitReason::Target => DealReason::Tp,
                ExitReason::Stop | ExitReason::BreakEven => DealReason::Sl,
            };
            let order = self.take_order_ticket();
            let deal = self.execute(
                login,
                Fill {
                    symbol: symbol.to_owned(),
                    side: opposite(p.side),
                    volume: p.volume,
                    price: exit.price,
                    order,
                    target: Some(p.position_id),
                    sl: None,
                    tp: None,
                    magic: p.magic,
                    comment: match reason {
                        DealReason::Tp => format!("[tp {}]", exit.price),
                        _ => format!("[sl {}]", exit.price),
                    },
                    reason,
                    time_ms: bar.time_unix_ms,
                },
            );
            events.push(BrokerEvent::Deal { login, deal });
        }
    }

    /// Books a balance operation (deposit > 0, withdrawal < 0) as a balance deal.
    pub fn balance_operation(&mut self, login: u64, amount: Decimal) -> Result<Deal, BrokerError> {
        if !self.accounts.contains_key(&login) {
            return Err(BrokerError::NoAccount(login));
        }
        let ticket = self.take_deal_ticket();
        let deal = Deal {
            deal_ticket: ticket,
            order_ticket: 0,
            position_id: 0,
            symbol: String::new(),
            kind: DealKind::Balance,
            entry: DealEntry::None,
            reason: DealReason::Client,
            volume: Decimal::ZERO,
            price: Decimal::ZERO,
            commission: Decimal::ZERO,
            swap: Decimal::ZERO,
            profit: amount,
            fee: Decimal::ZERO,
            magic: 0,
            comment: if amount >= Decimal::ZERO { "deposit".into() } else { "withdrawal".into() },
            time_ms: self.time_ms,
        };
        if let Some(acc) = self.accounts.get_mut(&login) {
            acc.balance += amount;
            acc.deals.push(deal.clone());
        }
        Ok(deal)
    }
}

/// One fill to book.
struct Fill {
    symbol: String,
    side: Side,
    volume: Decimal,
    price: Decimal,
    order: u64,
    target: Option<u64>,
    sl: Option<Decimal>,
    tp: Option<Decimal>,
    magic: u64,
    comment: String,
    reason: DealReason,
    time_ms: i64,
}

#[cfg(test)]
mod tests;
