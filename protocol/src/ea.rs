//! The JSON bodies of every EA-link call (`ea-link.md`), used by the node and the simulated
//! terminal alike so the two ends cannot drift.
//!
//! Wire rules, all enforced by the types: field names are snake_case; prices, volumes and money
//! are decimal strings (`"1.09128"`, `"0.10"`; a JSON number there is refused, never rounded
//! through a float); times are unix ms UTC as integers (the EA converts broker server time with
//! its `server_utc_offset_s`); tickets are `order_ticket`, `deal_ticket`, `position_id`; unknown
//! fields are ignored (forward compatibility) and enums that MT5 may grow carry an `other`
//! variant. Every call is a POST under [`PATH_PREFIX`]; [`Call`] names them.
//!
//! A server decodes a body with [`decode`], which refuses a trailing NUL (MQL5's
//! `StringToCharArray` appends one), an oversized body, and names the missing or malformed field
//! by its JSON path (`orders[0].volume`) in [`BodyError::field`], ready for the 400 problem+json
//! ([`Problem`]).
//!
//! This module owns no I/O and no clock; it must not import tokio, axum or reqwest.

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// All calls live under this prefix (`/ea/v1/hello`, `/ea/v1/poll`, …), all POST.
pub const PATH_PREFIX: &str = "/ea/v1/";
/// Largest request body a node accepts (413 beyond).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The default long-poll wait.
pub const DEFAULT_POLL_WAIT_MS: u32 = 500;
/// A node answers a poll within `wait_ms` plus this.
pub const POLL_ANSWER_SLACK_MS: u32 = 100;
/// The EA's `WebRequest` timeout is `wait_ms` plus this.
pub const EA_TIMEOUT_SLACK_MS: u32 = 2_000;
/// The magic number's high 32 bits are the EA's `input_magic`, its low 32 bits the `order_no`.
pub const MAGIC_SHIFT: u32 = 32;
/// Prefix of the comment the EA puts on every order it sends (`tc:<order id>`).
pub const COMMENT_PREFIX: &str = "tc:";

/// The EA-link calls, each a POST to [`Call::path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// [`Hello`] → [`HelloAnswer`].
    Hello,
    /// [`Poll`] → [`PollAnswer`].
    Poll,
    /// [`Ack`] → [`AckAnswer`].
    Ack,
    /// [`State`] → [`StateAnswer`].
    State,
    /// [`Deals`] → [`DealsAnswer`].
    Deals,
    /// [`Bars`] → [`BarsAnswer`].
    Bars,
}

impl Call {
    /// Every call, in the order an EA first makes them.
    pub const ALL: [Call; 6] =
        [Call::Hello, Call::Poll, Call::Ack, Call::State, Call::Deals, Call::Bars];

    /// The call's path, e.g. `/ea/v1/hello`.
    pub fn path(self) -> &'static str {
        match self {
            Call::Hello => "/ea/v1/hello",
            Call::Poll => "/ea/v1/poll",
            Call::Ack => "/ea/v1/ack",
            Call::State => "/ea/v1/state",
            Call::Deals => "/ea/v1/deals",
            Call::Bars => "/ea/v1/bars",
        }
    }

    /// The call for a path (query ignored), if it is one.
    pub fn from_path(path: &str) -> Option<Call> {
        let path = path.split('?').next().unwrap_or(path);
        Call::ALL.into_iter().find(|c| c.path() == path)
    }
}

/// The magic number of an order: `(input_magic << 32) | order_no`.
pub fn magic(input_magic: u32, order_no: u32) -> u64 {
    (u64::from(input_magic) << MAGIC_SHIFT) | u64::from(order_no)
}

/// Splits a magic number into `(input_magic, order_no)`.
pub fn split_magic(magic: u64) -> (u32, u32) {
    // Both halves fit in 32 bits by construction of the shifts and masks.
    ((magic >> MAGIC_SHIFT) as u32, (magic & 0xFFFF_FFFF) as u32)
}

/// Whether a magic number is Tradecast's for this EA (its high 32 bits are `input_magic`).
pub fn is_tradecast_magic(magic: u64, input_magic: u32) -> bool {
    split_magic(magic).0 == input_magic
}

/// The comment the EA puts on an order: `tc:<order id>` (12 + 3 characters, well within MT5's 31).
pub fn order_comment(order_id: &str) -> String {
    format!("{COMMENT_PREFIX}{order_id}")
}

// ---------------------------------------------------------------------------------------------
// Shared pieces.

/// The account's margin mode (MT5 `ACCOUNT_MARGIN_MODE`). On a netting account a second order
/// on a symbol merges into the open position, so the EA's look-up goes by deals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarginMode {
    /// `ACCOUNT_MARGIN_MODE_RETAIL_NETTING` (and exchange netting): one position per symbol.
    Netting,
    /// `ACCOUNT_MARGIN_MODE_RETAIL_HEDGING`: any number of positions per symbol.
    Hedging,
}

/// A bar timeframe, written as MT5 names it (`"H1"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timeframe {
    /// One minute.
    M1,
    /// Five minutes.
    M5,
    /// Fifteen minutes.
    M15,
    /// Thirty minutes.
    M30,
    /// One hour.
    H1,
    /// Four hours.
    H4,
    /// One day.
    D1,
    /// One week.
    W1,
    /// One month (its length varies; [`Timeframe::seconds`] gives none).
    MN1,
}

impl Timeframe {
    /// Every timeframe, shortest first.
    pub const ALL: [Timeframe; 9] = [
        Timeframe::M1,
        Timeframe::M5,
        Timeframe::M15,
        Timeframe::M30,
        Timeframe::H1,
        Timeframe::H4,
        Timeframe::D1,
        Timeframe::W1,
        Timeframe::MN1,
    ];

    /// The bar length in seconds; `None` for MN1 (months differ).
    pub fn seconds(self) -> Option<i64> {
        Some(match self {
            Timeframe::M1 => 60,
            Timeframe::M5 => 300,
            Timeframe::M15 => 900,
            Timeframe::M30 => 1_800,
            Timeframe::H1 => 3_600,
            Timeframe::H4 => 14_400,
            Timeframe::D1 => 86_400,
            Timeframe::W1 => 604_800,
            Timeframe::MN1 => return None,
        })
    }

    /// MT5's name, as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Timeframe::M1 => "M1",
            Timeframe::M5 => "M5",
            Timeframe::M15 => "M15",
            Timeframe::M30 => "M30",
            Timeframe::H1 => "H1",
            Timeframe::H4 => "H4",
            Timeframe::D1 => "D1",
            Timeframe::W1 => "W1",
            Timeframe::MN1 => "MN1",
        }
    }

    /// Parses MT5's name (`"H1"`).
    pub fn parse(s: &str) -> Option<Timeframe> {
        Timeframe::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// What a symbol allows (MT5 `SYMBOL_TRADE_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradeMode {
    /// Trading disabled.
    Disabled,
    /// Only buys.
    LongOnly,
    /// Only sells.
    ShortOnly,
    /// Only closing existing positions.
    CloseOnly,
    /// No restrictions.
    Full,
}

/// One trading session window in the UTC week: seconds since Sunday 00:00 UTC,
/// `from_week_s < to_week_s ≤ 604800`. The EA converts MT5's server-time sessions
/// (`SymbolInfoSessionTrade`) with its UTC offset and splits a window that crosses Sunday 00:00
/// UTC in two, so a window never wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Start, seconds since Sunday 00:00 UTC, inclusive.
    pub from_week_s: u32,
    /// End, seconds since Sunday 00:00 UTC, exclusive.
    pub to_week_s: u32,
}

/// Seconds in a week.
pub const WEEK_S: u32 = 7 * 86_400;

impl Session {
    /// Whether a UTC instant falls in this window. Unix time 0 was a Thursday, so Sunday 00:00
    /// UTC is 4 days (345,600 s) after the epoch modulo a week.
    pub fn contains(&self, time_ms: i64) -> bool {
        let s = week_second(time_ms);
        self.from_week_s <= s && s < self.to_week_s
    }
}

/// Seconds since Sunday 00:00 UTC of a UTC instant.
pub fn week_second(time_ms: i64) -> u32 {
    let secs = time_ms.div_euclid(1_000);
    // In 0..WEEK_S by rem_euclid, so the cast cannot truncate.
    (secs - 3 * 86_400).rem_euclid(i64::from(WEEK_S)) as u32
}

/// A symbol's specification as the Market Watch shows it; sent at hello for every allowed symbol
/// and in [`State::specs`] when the node asks with [`Command::RequestSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolSpec {
    /// The broker's symbol name (`"EURUSD"`, `"EURUSD.r"`).
    pub symbol: String,
    /// Digits after the point of a price.
    pub digits: u32,
    /// The point (`SYMBOL_POINT`).
    pub point: Decimal,
    /// The smallest price change (`SYMBOL_TRADE_TICK_SIZE`).
    pub tick_size: Decimal,
    /// Profit in account currency of one tick for one lot, for a winning position
    /// (`SYMBOL_TRADE_TICK_VALUE_PROFIT`); moves with price on cross pairs.
    pub tick_value_profit: Decimal,
    /// Loss in account currency of one tick for one lot, for a losing position
    /// (`SYMBOL_TRADE_TICK_VALUE_LOSS`).
    pub tick_value_loss: Decimal,
    /// Units of the base per lot (`SYMBOL_TRADE_CONTRACT_SIZE`).
    pub contract_size: Decimal,
    /// Smallest volume in lots.
    pub volume_min: Decimal,
    /// Largest volume in lots.
    pub volume_max: Decimal,
    /// Volume step in lots.
    pub volume_step: Decimal,
    /// Minimum distance of SL/TP and pending prices from the market, in points.
    pub stops_level: u32,
    /// Distance from the market within which orders and SL/TP cannot be changed, in points.
    pub freeze_level: u32,
    /// What the symbol allows.
    pub trade_mode: TradeMode,
    /// The base currency (`SYMBOL_CURRENCY_BASE`).
    pub currency_base: String,
    /// The profit currency (`SYMBOL_CURRENCY_PROFIT`).
    pub currency_profit: String,
    /// The margin currency (`SYMBOL_CURRENCY_MARGIN`).
    pub currency_margin: String,
    /// The trading sessions in the UTC week; empty means the broker reported none.
    #[serde(default)]
    pub sessions: Vec<Session>,
}

/// A bar subscription the node sets: the EA pushes closed bars of this symbol and timeframe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BarSubscription {
    /// The broker's symbol name.
    pub symbol: String,
    /// The timeframe.
    pub timeframe: Timeframe,
}

/// A bars cursor: the EA pushes closed bars of this symbol and timeframe whose open time is at
/// or after `from_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BarCursor {
    /// The broker's symbol name.
    pub symbol: String,
    /// The timeframe.
    pub timeframe: Timeframe,
    /// Open time (unix ms UTC) of the first bar wanted.
    pub from_ms: i64,
}

// ---------------------------------------------------------------------------------------------
// hello

/// `POST /ea/v1/hello`: the EA introduces the account and its symbols. Sent at start, after
/// a 409 `hello-required`, and after the EA enforced the equity floor on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The account number (`ACCOUNT_LOGIN`).
    pub login: u64,
    /// The trade server's name (`ACCOUNT_SERVER`).
    pub server: String,
    /// The broker (`ACCOUNT_COMPANY`).
    pub company: String,
    /// The deposit currency (`ACCOUNT_CURRENCY`).
    pub currency: String,
    /// The account leverage, e.g. 100 for 1:100.
    pub leverage: u32,
    /// Netting or hedging.
    pub margin_mode: MarginMode,
    /// The terminal build (`TERMINAL_BUILD`).
    pub terminal_build: u32,
    /// The EA's version string.
    pub ea_version: String,
    /// Broker server time minus UTC, in seconds (`TimeTradeServer() - TimeGMT()`, rounded to
    /// the quarter hour).
    pub server_utc_offset_s: i32,
    /// The terminal's clock now, UTC: the market clock (system.md, Time).
    pub terminal_time_ms: i64,
    /// The allowed Market Watch symbols with their specs.
    pub symbols: Vec<SymbolSpec>,
    /// Set when the EA closed Tradecast's positions on its own because equity fell below the
    /// floor while the node was silent; reported once, at the next hello.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_breach: Option<FloorBreach>,
    /// Which EA this is: the same for one chart of one terminal installation across re-inits
    /// and restarts (the MQL5 EA hashes `TERMINAL_DATA_PATH` and `ChartID()`), another for an
    /// EA on another chart or terminal. The node refuses a second instance on an account while
    /// the first still polls ([`PROBLEM_ANOTHER_EA`]): two would both execute what it offers.
    /// 1 to [`MAX_INSTANCE_LEN`] characters of `[A-Za-z0-9_-]`; absent from EAs before 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// The longest [`Hello::instance`].
pub const MAX_INSTANCE_LEN: usize = 64;

/// Whether `s` is a well-formed [`Hello::instance`].
pub fn valid_instance(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_INSTANCE_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What the EA did on its own when equity fell below the node's floor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloorBreach {
    /// When the EA saw the breach (terminal clock, UTC).
    pub time_ms: i64,
    /// Equity at that moment.
    pub equity: Decimal,
    /// The floor in force.
    pub floor: Decimal,
    /// Positions closed.
    pub n_closed: u32,
    /// Positions whose close MT5 refused (they are still open).
    pub n_failed: u32,
}

/// The answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAnswer {
    /// The session id the EA puts in every later call until the next hello.
    pub session_id: String,
    /// The long-poll wait the EA asks for in [`Poll::wait_ms`].
    pub poll_wait_ms: u32,
    /// The bar subscriptions (symbol × timeframe).
    pub subscriptions: Vec<BarSubscription>,
    /// The equity floor: below it the EA closes Tradecast's positions on its own when the
    /// node is silent. `None`: no floor.
    pub equity_floor: Option<Decimal>,
    /// Push deals whose time is at or after this (unix ms UTC).
    pub deals_from_ms: i64,
    /// Push closed bars from these cursors, one per subscription.
    pub bars_from: Vec<BarCursor>,
}

// ---------------------------------------------------------------------------------------------
// poll

/// `POST /ea/v1/poll`: the EA asks for what is due. The node holds it open until something is
/// due or `wait_ms` passes, and answers within `wait_ms` + 100 ms. One poll per session in
/// flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    /// The session id from [`HelloAnswer::session_id`]. Absent or `null` before a hello, read
    /// as no session: the node answers 409 `hello-required` (never 400: a poll before hello is
    /// the EA link's documented way to learn it must say hello).
    #[serde(default, deserialize_with = "no_session_as_empty")]
    pub session_id: String,
    /// How long the node may hold the poll.
    pub wait_ms: u32,
    /// The terminal's clock now, UTC: the market clock.
    pub terminal_time_ms: i64,
}

/// A session id that may be absent or `null`: no session, the empty id.
fn no_session_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// The answer to [`Poll`]: orders and commands due now (both may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollAnswer {
    /// New orders to send, oldest first.
    #[serde(default)]
    pub orders: Vec<Order>,
    /// Commands to carry out, oldest first.
    #[serde(default)]
    pub commands: Vec<Command>,
    /// The equity floor in force now (`None`: no floor); the EA keeps the latest.
    #[serde(default)]
    pub equity_floor: Option<Decimal>,
}

/// What an order does (MT5's `ORDER_TYPE_*` that Tradecast uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// Market buy, filled at ask.
    Buy,
    /// Market sell, filled at bid.
    Sell,
    /// Buy limit (below the ask).
    BuyLimit,
    /// Sell limit (above the bid).
    SellLimit,
    /// Buy stop (above the ask).
    BuyStop,
    /// Sell stop (below the bid).
    SellStop,
}

impl OrderKind {
    /// Whether it buys.
    pub fn is_buy(self) -> bool {
        matches!(self, OrderKind::Buy | OrderKind::BuyLimit | OrderKind::BuyStop)
    }

    /// Whether it is a market order (filled now) rather than a pending one.
    pub fn is_market(self) -> bool {
        matches!(self, OrderKind::Buy | OrderKind::Sell)
    }
}

/// An order to send. The EA first looks its magic up (positions, pending orders, the last day's
/// deals); if found it acks what it finds instead of sending again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order id: 12 characters of Crockford base32; the comment is `tc:<order_id>`.
    pub order_id: String,
    /// The per-account order number: the magic's low 32 bits.
    pub order_no: u32,
    /// The broker's symbol name.
    pub symbol: String,
    /// Market or pending, buy or sell.
    pub kind: OrderKind,
    /// Volume in lots, already on the symbol's volume step.
    pub volume: Decimal,
    /// The pending order's price; for a market order the price the node expected (the EA
    /// sends at the market and uses this only for the deviation).
    #[serde(default)]
    pub price: Option<Decimal>,
    /// Stop loss.
    #[serde(default)]
    pub sl: Option<Decimal>,
    /// Take profit.
    #[serde(default)]
    pub tp: Option<Decimal>,
    /// The most slippage accepted, in points; `None`: the EA's input.
    #[serde(default)]
    pub max_slippage_points: Option<u32>,
    /// A pending order's expiry (unix ms UTC); `None`: good till cancelled.
    #[serde(default)]
    pub expiration_ms: Option<i64>,
}

/// What the node asks the EA to do besides sending new orders. Each trading command carries an
/// `order_id`/`order_no` of its own, so it is acked and looked up like an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Close a position (wholly, or `volume` of it). Refused with 10018 it stays due.
    Close {
        /// This close's id; the closing deal carries `tc:<order_id>`.
        order_id: String,
        /// The close's number: the closing deal's magic's low 32 bits.
        order_no: u32,
        /// The position to close.
        position_id: u64,
        /// The broker's symbol name.
        symbol: String,
        /// Lots to close; `None`: all of it.
        #[serde(default)]
        volume: Option<Decimal>,
    },
    /// Change a position's (or a pending order's) stop loss and take profit.
    Modify {
        /// This modification's id.
        order_id: String,
        /// This modification's number.
        order_no: u32,
        /// The position to modify, if it is a position.
        #[serde(default)]
        position_id: Option<u64>,
        /// The pending order to modify, if it is a pending order.
        #[serde(default)]
        order_ticket: Option<u64>,
        /// The new stop loss (`None`: none).
        #[serde(default)]
        sl: Option<Decimal>,
        /// The new take profit (`None`: none).
        #[serde(default)]
        tp: Option<Decimal>,
    },
    /// Close the positions and delete the pending orders that carry Tradecast's magic (its high
    /// 32 bits), and nothing else unless `scope` is `everything`.
    CloseAll {
        /// This command's id.
        order_id: String,
        /// What to close.
        scope: CloseAllScope,
    },
    /// Send the spec of these symbols in the next [`State::specs`].
    RequestSpec {
        /// The broker's symbol names.
        symbols: Vec<String>,
    },
    /// Push the closed bars of this range again (the node saw a gap).
    Backfill {
        /// The broker's symbol name.
        symbol: String,
        /// The timeframe.
        timeframe: Timeframe,
        /// First bar's open time wanted (unix ms UTC), inclusive.
        from_ms: i64,
        /// Last bar's open time wanted (unix ms UTC), inclusive.
        to_ms: i64,
    },
}

/// What `CloseAll` touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseAllScope {
    /// Only positions and pending orders with Tradecast's magic.
    Tradecast,
    /// Everything on the account: only when the trader asked for it.
    Everything,
}

// ---------------------------------------------------------------------------------------------
// ack

/// How a send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// MT5 placed or filled it (10008, 10009, 10010), or the look-up found it.
    Done,
    /// MT5 refused it (any other retcode).
    Rejected,
    /// No answer, 10012 (timeout) or 10031 (no connection) and the look-up found nothing: the
    /// node keeps it unresolved until an ack or reconciliation settles it.
    Unknown,
}

/// `POST /ea/v1/ack`: how an order or a trading command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The session id.
    pub session_id: String,
    /// The order (or command) id acked.
    pub order_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// MT5's trade return code (`MqlTradeResult.retcode`; 0 when there was no result).
    pub retcode: u32,
    /// `MqlTradeResult.comment` or the EA's own words.
    #[serde(default)]
    pub message: String,
    /// Whether the EA found this in its look-up rather than sending it now.
    #[serde(default)]
    pub found_by_lookup: bool,
    /// The order ticket (`MqlTradeResult.order`).
    #[serde(default)]
    pub order_ticket: Option<u64>,
    /// The deal ticket, if a deal was made.
    #[serde(default)]
    pub deal_ticket: Option<u64>,
    /// The position it opened or touched.
    #[serde(default)]
    pub position_id: Option<u64>,
    /// The fill price.
    #[serde(default)]
    pub price: Option<Decimal>,
    /// The volume filled (less than asked on a partial fill).
    #[serde(default)]
    pub volume: Option<Decimal>,
    /// The fill (or placement) time, UTC.
    #[serde(default)]
    pub time_ms: Option<i64>,
}

/// The answer to [`Ack`]: sent only after the ack is committed durably.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckAnswer {
    /// Always true in a 200 answer.
    pub ok: bool,
}

// ---------------------------------------------------------------------------------------------
// state

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Long.
    Buy,
    /// Short.
    Sell,
}

/// An open position as the terminal shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// `POSITION_IDENTIFIER`.
    pub position_id: u64,
    /// The broker's symbol name.
    pub symbol: String,
    /// Long or short.
    pub side: Side,
    /// Lots open.
    pub volume: Decimal,
    /// Average open price.
    pub open_price: Decimal,
    /// Open time, UTC.
    pub open_time_ms: i64,
    /// Stop loss.
    #[serde(default)]
    pub sl: Option<Decimal>,
    /// Take profit.
    #[serde(default)]
    pub tp: Option<Decimal>,
    /// The current close price (bid for a buy, ask for a sell).
    pub price_current: Decimal,
    /// Accumulated swap.
    pub swap: Decimal,
    /// Floating profit in account currency.
    pub profit: Decimal,
    /// `POSITION_MAGIC`.
    pub magic: u64,
    /// `POSITION_COMMENT` (brokers may rewrite it: the magic is what counts).
    #[serde(default)]
    pub comment: String,
}

/// A pending order as the terminal shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOrder {
    /// `ORDER_TICKET`.
    pub order_ticket: u64,
    /// The broker's symbol name.
    pub symbol: String,
    /// The pending kind.
    pub kind: OrderKind,
    /// Lots still to fill.
    pub volume: Decimal,
    /// The trigger price.
    pub price: Decimal,
    /// Stop loss.
    #[serde(default)]
    pub sl: Option<Decimal>,
    /// Take profit.
    #[serde(default)]
    pub tp: Option<Decimal>,
    /// When it was placed, UTC.
    pub time_setup_ms: i64,
    /// Its expiry, UTC.
    #[serde(default)]
    pub expiration_ms: Option<i64>,
    /// `ORDER_MAGIC`.
    pub magic: u64,
    /// `ORDER_COMMENT`.
    #[serde(default)]
    pub comment: String,
}

/// The current tick values of a traded symbol (they move with price on cross pairs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickValue {
    /// The broker's symbol name.
    pub symbol: String,
    /// `SYMBOL_TRADE_TICK_VALUE_PROFIT`.
    pub tick_value_profit: Decimal,
    /// `SYMBOL_TRADE_TICK_VALUE_LOSS`.
    pub tick_value_loss: Decimal,
}

/// `POST /ea/v1/state`: the account and its open book, pushed after every trade action and on
/// a period the EA chooses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The session id.
    pub session_id: String,
    /// The terminal's clock now, UTC.
    pub terminal_time_ms: i64,
    /// `ACCOUNT_BALANCE`.
    pub balance: Decimal,
    /// `ACCOUNT_EQUITY`.
    pub equity: Decimal,
    /// `ACCOUNT_MARGIN`.
    pub margin: Decimal,
    /// `ACCOUNT_MARGIN_FREE`.
    pub free_margin: Decimal,
    /// `ACCOUNT_CREDIT`.
    pub credit: Decimal,
    /// Every open position (Tradecast's and others').
    pub positions: Vec<Position>,
    /// Every pending order.
    pub pending: Vec<PendingOrder>,
    /// Current tick values of every symbol with a position or pending order.
    #[serde(default)]
    pub tick_values: Vec<TickValue>,
    /// Specs the node asked for with [`Command::RequestSpec`].
    #[serde(default)]
    pub specs: Vec<SymbolSpec>,
}

/// Something in the state the node does not agree with (informational: the node acts through
/// commands, the EA prints these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfLine {
    /// The position concerned, if any.
    #[serde(default)]
    pub position_id: Option<u64>,
    /// The pending order concerned, if any.
    #[serde(default)]
    pub order_ticket: Option<u64>,
    /// In words.
    pub reason: String,
}

/// The answer to [`State`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateAnswer {
    /// Always true in a 200 answer.
    pub ok: bool,
    /// What is out of line, if anything.
    #[serde(default)]
    pub out_of_line: Vec<OutOfLine>,
}

// ---------------------------------------------------------------------------------------------
// deals

/// A deal's type (MT5 `DEAL_TYPE_*`); types this version does not know read as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DealKind {
    /// A buy.
    Buy,
    /// A sell.
    Sell,
    /// A deposit or withdrawal.
    Balance,
    /// A credit.
    Credit,
    /// A charge.
    Charge,
    /// A correction.
    Correction,
    /// A bonus.
    Bonus,
    /// A commission booked as its own deal.
    Commission,
    /// Anything else.
    #[serde(other)]
    Other,
}

/// A deal's direction (MT5 `DEAL_ENTRY_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DealEntry {
    /// Opens or adds to a position.
    In,
    /// Closes or reduces a position.
    Out,
    /// Reverses a position (netting).
    Inout,
    /// Closed by an opposite position.
    OutBy,
    /// Balance deals and others have no direction.
    #[serde(other)]
    None,
}

/// Why a deal happened (MT5 `DEAL_REASON_*`), what reconciliation needs to tell SL/TP hits and
/// manual closes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DealReason {
    /// The trader, in the desktop terminal.
    Client,
    /// The trader, on mobile.
    Mobile,
    /// The trader, on the web.
    Web,
    /// An Expert Advisor (ours or another).
    Expert,
    /// The stop loss.
    Sl,
    /// The take profit.
    Tp,
    /// A stop out.
    StopOut,
    /// A rollover.
    Rollover,
    /// Variation margin.
    Vmargin,
    /// A split.
    Split,
    /// Anything else.
    #[serde(other)]
    Other,
}

/// A deal from the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    /// `DEAL_TICKET`: the node deduplicates by it.
    pub deal_ticket: u64,
    /// `DEAL_ORDER`: the order that made it (0 for balance deals).
    pub order_ticket: u64,
    /// `DEAL_POSITION_ID`.
    pub position_id: u64,
    /// The broker's symbol name (empty for balance deals).
    pub symbol: String,
    /// What it is.
    pub kind: DealKind,
    /// In or out.
    pub entry: DealEntry,
    /// Why it happened.
    pub reason: DealReason,
    /// Lots.
    pub volume: Decimal,
    /// Price.
    pub price: Decimal,
    /// Commission (negative is a cost).
    pub commission: Decimal,
    /// Swap.
    pub swap: Decimal,
    /// Profit.
    pub profit: Decimal,
    /// Fee.
    #[serde(default)]
    pub fee: Decimal,
    /// `DEAL_MAGIC`.
    pub magic: u64,
    /// `DEAL_COMMENT`.
    #[serde(default)]
    pub comment: String,
    /// Deal time, UTC.
    pub time_ms: i64,
}

/// `POST /ea/v1/deals`: deals whose time is at or after the cursor, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deals {
    /// The session id.
    pub session_id: String,
    /// The cursor these deals start at (the node's last `deals_from_ms`).
    pub from_ms: i64,
    /// The deals.
    pub deals: Vec<Deal>,
}

/// The answer to [`Deals`]: the new cursor, after the deals are committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealsAnswer {
    /// Always true in a 200 answer.
    pub ok: bool,
    /// Push deals at or after this next time.
    pub deals_from_ms: i64,
}

// ---------------------------------------------------------------------------------------------
// bars

/// A closed bar of a subscribed symbol and timeframe. Prices at the symbol's digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkBar {
    /// The broker's symbol name.
    pub symbol: String,
    /// The timeframe.
    pub timeframe: Timeframe,
    /// The bar's open time, UTC. (symbol, timeframe, time_ms) is the node's dedup key.
    pub time_ms: i64,
    /// Open (bid).
    pub open: Decimal,
    /// High (bid).
    pub high: Decimal,
    /// Low (bid).
    pub low: Decimal,
    /// Close (bid).
    pub close: Decimal,
    /// Tick volume.
    #[serde(default)]
    pub tick_volume: u64,
    /// Spread in points at the bar's close, if known.
    #[serde(default)]
    pub spread_points: Option<u32>,
}

/// `POST /ea/v1/bars`: closed bars since the cursors (or a backfill range), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bars {
    /// The session id.
    pub session_id: String,
    /// The bars.
    pub bars: Vec<LinkBar>,
}

/// The answer to [`Bars`]: the new cursors, after the bars are committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarsAnswer {
    /// Always true in a 200 answer.
    pub ok: bool,
    /// Where each subscription continues.
    pub bars_from: Vec<BarCursor>,
}

// ---------------------------------------------------------------------------------------------
// Problems (RFC 9457) and decoding.

/// The problem+json body of every 4xx/5xx answer on the link (RFC 9457). `code` is the stable
/// machine-readable reason (`hello-required`, `trailing-nul`, `stale-timestamp`, …) and `type`
/// is `urn:tradecast:problem:<code>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:tradecast:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short, human.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What was wrong, for a person.
    #[serde(default)]
    pub detail: String,
    /// The stable reason.
    pub code: String,
    /// For a 400, the JSON path of the missing or malformed field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// A problem with `type` derived from `code`.
    pub fn new(status: u16, code: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            problem_type: format!("urn:tradecast:problem:{code}"),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            code: code.to_owned(),
            field: None,
        }
    }

    /// The 400 for a body [`decode`] refused.
    pub fn from_body_error(e: &BodyError) -> Problem {
        let status = match e.kind {
            BodyErrorKind::TooLarge => 413,
            _ => 400,
        };
        Problem {
            field: e.field.clone(),
            ..Problem::new(status, e.code(), "invalid request body", e.to_string())
        }
    }
}

/// Problem code of a poll (or any call but hello) without a current session.
pub const PROBLEM_HELLO_REQUIRED: &str = "hello-required";

/// The problem code (409) of a hello from a second EA instance on an account whose first
/// instance still polls ([`Hello::instance`]).
pub const PROBLEM_ANOTHER_EA: &str = "another-ea";
/// Problem code of a body ending in 0x00.
pub const PROBLEM_TRAILING_NUL: &str = "trailing-nul";

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyErrorKind {
    /// The body ends in a NUL byte (MQL5's `StringToCharArray` without a count).
    TrailingNul,
    /// The body is over [`MAX_BODY_BYTES`].
    TooLarge,
    /// Not UTF-8 or not JSON at all.
    Syntax,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or value (a float where a decimal string belongs, …).
    InvalidField,
}

/// A refused body, naming the field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BodyError {
    /// What kind of refusal.
    pub kind: BodyErrorKind,
    /// The JSON path of the missing or malformed field (`orders[0].volume`); for a missing field
    /// the path ends in the missing field's name.
    pub field: Option<String>,
    /// serde's words.
    pub message: String,
}

impl BodyError {
    /// The problem code for this refusal.
    pub fn code(&self) -> &'static str {
        match self.kind {
            BodyErrorKind::TrailingNul => PROBLEM_TRAILING_NUL,
            BodyErrorKind::TooLarge => "body-too-large",
            BodyErrorKind::Syntax => "malformed-json",
            BodyErrorKind::MissingField => "missing-field",
            BodyErrorKind::InvalidField => "invalid-field",
        }
    }
}

/// Decodes a request or answer body, refusing a trailing NUL and an oversized body, and naming
/// the missing or malformed field by its JSON path.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BodyError {
            kind: BodyErrorKind::TooLarge,
            field: None,
            message: format!("body of {} bytes is over {MAX_BODY_BYTES}", body.len()),
        });
    }
    if body.last() == Some(&0) {
        return Err(BodyError {
            kind: BodyErrorKind::TrailingNul,
            field: None,
            message: "body ends in a NUL byte (use StringToCharArray with a count)".to_owned(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let kind = if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            BodyErrorKind::Syntax
        } else if message.starts_with("missing field") {
            BodyErrorKind::MissingField
        } else {
            BodyErrorKind::InvalidField
        };
        let field = match kind {
            BodyErrorKind::Syntax => None,
            BodyErrorKind::MissingField => Some(join_path(&path, missing_field_name(&message))),
            _ => Some(path),
        };
        BodyError { kind, field, message }
    })?;
    de.end().map_err(|e| BodyError {
        kind: BodyErrorKind::Syntax,
        field: None,
        message: e.to_string(),
    })?;
    Ok(value)
}

/// `missing field `volume` at line 1 column 9` → `volume`.
fn missing_field_name(message: &str) -> &str {
    message.split('`').nth(1).unwrap_or("")
}

fn join_path(path: &str, name: &str) -> String {
    match (path, name) {
        (".", n) | ("", n) => n.to_owned(),
        (p, "") => p.to_owned(),
        (p, n) => format!("{p}.{n}"),
    }
}

/// Encodes a body: compact JSON, UTF-8, no trailing NUL.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs (string keys, no maps with non-string keys, no
    // fallible Serialize impls) cannot fail; an empty object is the harmless fallback.
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("test decimal")
    }

    fn spec() -> SymbolSpec {
        SymbolSpec {
            symbol: "EURUSD".into(),
            digits: 5,
            point: d("0.00001"),
            tick_size: d("0.00001"),
            tick_value_profit: d("1.00"),
            tick_value_loss: d("1.00"),
            contract_size: d("100000"),
            volume_min: d("0.01"),
            volume_max: d("100.00"),
            volume_step: d("0.01"),
            stops_level: 10,
            freeze_level: 5,
            trade_mode: TradeMode::Full,
            currency_base: "EUR".into(),
            currency_profit: "USD".into(),
            currency_margin: "EUR".into(),
            sessions: vec![Session { from_week_s: 79_200, to_week_s: 597_600 }],
        }
    }

    fn order() -> Order {
        Order {
            order_id: "01HZX7Q2M3N4".into(),
            order_no: 7,
            symbol: "EURUSD".into(),
            kind: OrderKind::Sell,
            volume: d("0.10"),
            price: Some(d("1.09128")),
            sl: Some(d("1.09179")),
            tp: Some(d("1.08900")),
            max_slippage_points: None,
            expiration_ms: None,
        }
    }

    #[test]
    fn decimals_are_strings_and_keep_their_scale() {
        let json = String::from_utf8(encode(&order())).expect("utf8");
        assert!(json.contains(r#""volume":"0.10""#), "{json}");
        assert!(json.contains(r#""price":"1.09128""#), "{json}");
        let back: Order = decode(json.as_bytes()).expect("roundtrip");
        assert_eq!(back, order());
        assert_eq!(back.volume.to_string(), "0.10");
    }

    #[test]
    fn floats_are_refused_with_the_field_named() {
        let check = |body: &str, kind: BodyErrorKind, field: Option<&str>| {
            let e = decode::<PollAnswer>(body.as_bytes()).expect_err(body);
            assert_eq!(e.kind, kind, "{body}: {e}");
            assert_eq!(e.field.as_deref(), field, "{body}: {e}");
        };
        let mut v = serde_json::to_value(order()).expect("value");
        v["volume"] = serde_json::json!(0.1);
        let body = serde_json::json!({"orders": [v]}).to_string();
        check(&body, BodyErrorKind::InvalidField, Some("orders[0].volume"));
        let mut v = serde_json::to_value(order()).expect("value");
        v.as_object_mut().expect("object").remove("symbol");
        let body = serde_json::json!({"orders": [v]}).to_string();
        check(&body, BodyErrorKind::MissingField, Some("orders[0].symbol"));
        check(
            r#"{"orders": [], "commands": [{"type":"nope"}]}"#,
            BodyErrorKind::InvalidField,
            Some("commands[0].type"),
        );
        check(r#"{"orders": 3}"#, BodyErrorKind::InvalidField, Some("orders"));
        check(r#"{"orders": ["#, BodyErrorKind::Syntax, None);
        check(r#"{} {}"#, BodyErrorKind::Syntax, None);
        check("", BodyErrorKind::Syntax, None);
    }

    #[test]
    fn missing_top_level_field_is_named() {
        let e = decode::<Poll>(br#"{"session_id":"s","terminal_time_ms":1}"#).expect_err("missing");
        assert_eq!(e.kind, BodyErrorKind::MissingField);
        assert_eq!(e.field.as_deref(), Some("wait_ms"));
        let p = Problem::from_body_error(&e);
        assert_eq!(
            (p.status, p.code.as_str(), p.field.as_deref()),
            (400, "missing-field", Some("wait_ms"))
        );
    }

    #[test]
    fn trailing_nul_and_size() {
        let e = decode::<Poll>(b"{\"session_id\":\"s\",\"wait_ms\":1,\"terminal_time_ms\":1}\0")
            .expect_err("nul");
        assert_eq!(e.kind, BodyErrorKind::TrailingNul);
        assert_eq!(Problem::from_body_error(&e).code, "trailing-nul");
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let e = decode::<Poll>(&big).expect_err("big");
        assert_eq!(e.kind, BodyErrorKind::TooLarge);
        assert_eq!(Problem::from_body_error(&e).status, 413);
    }

    #[test]
    fn unknown_fields_and_enum_values_are_tolerated() {
        let body = br#"{"session_id":"s","wait_ms":500,"terminal_time_ms":5,"future":{"x":[1]}}"#;
        let p: Poll = decode(body).expect("unknown field ignored");
        assert_eq!(p.wait_ms, 500);
        let mut deal = serde_json::to_value(Deal {
            deal_ticket: 1,
            order_ticket: 2,
            position_id: 3,
            symbol: "EURUSD".into(),
            kind: DealKind::Buy,
            entry: DealEntry::In,
            reason: DealReason::Expert,
            volume: d("0.10"),
            price: d("1.1"),
            commission: d("-0.70"),
            swap: d("0"),
            profit: d("0"),
            fee: d("0"),
            magic: magic(42, 7),
            comment: "tc:01HZX7Q2M3N4".into(),
            time_ms: 1,
        })
        .expect("value");
        deal["kind"] = serde_json::json!("interest");
        deal["entry"] = serde_json::json!("sideways");
        deal["reason"] = serde_json::json!("corporate_action");
        let back: Deal = serde_json::from_value(deal).expect("other variants");
        assert_eq!(
            (back.kind, back.entry, back.reason),
            (DealKind::Other, DealEntry::None, DealReason::Other)
        );
    }

    #[test]
    fn commands_are_tagged() {
        let c =
            Command::CloseAll { order_id: "ABCDEFGHJKMN".into(), scope: CloseAllScope::Tradecast };
        assert_eq!(
            String::from_utf8(encode(&c)).expect("utf8"),
            r#"{"type":"close_all","order_id":"ABCDEFGHJKMN","scope":"tradecast"}"#
        );
        let b: Command = decode(br#"{"type":"backfill","symbol":"EURUSD","timeframe":"H1","from_ms":0,"to_ms":3600000}"#)
            .expect("backfill");
        assert!(matches!(b, Command::Backfill { timeframe: Timeframe::H1, .. }));
    }

    #[test]
    fn magic_packs_and_unpacks() {
        let check = |input: u32, no: u32, expect: u64| {
            let m = magic(input, no);
            assert_eq!(m, expect);
            assert_eq!(split_magic(m), (input, no));
            assert!(is_tradecast_magic(m, input));
        };
        check(0, 0, 0);
        check(1, 2, 0x1_0000_0002);
        check(20_260_101, 7, (20_260_101u64 << 32) | 7);
        check(u32::MAX, u32::MAX, u64::MAX);
        assert!(!is_tradecast_magic(magic(5, 1), 6));
        assert_eq!(order_comment("01HZX7Q2M3N4"), "tc:01HZX7Q2M3N4");
        assert!(order_comment("01HZX7Q2M3N4").len() <= 31);
    }

    #[test]
    fn week_seconds_and_sessions() {
        // 2017-04-23 is a Sunday; 2017-04-23T00:00:00Z = 1492905600.
        assert_eq!(week_second(1_492_905_600_000), 0);
        assert_eq!(week_second(1_492_905_600_000 + 3_600_000), 3_600);
        assert_eq!(week_second(1_492_905_600_000 - 1_000), WEEK_S - 1);
        assert_eq!(week_second(0), 4 * 86_400); // Thursday
        let s = spec().sessions[0];
        assert!(!s.contains(1_492_905_600_000)); // Sunday 00:00
        assert!(s.contains(1_492_905_600_000 + 86_400_000)); // Monday 00:00
    }

    #[test]
    fn paths_and_timeframes() {
        for c in Call::ALL {
            assert_eq!(Call::from_path(c.path()), Some(c));
            assert!(c.path().starts_with(PATH_PREFIX));
        }
        assert_eq!(Call::from_path("/ea/v1/poll?x=1"), Some(Call::Poll));
        assert_eq!(Call::from_path("/ea/v2/poll"), None);
        for t in Timeframe::ALL {
            assert_eq!(Timeframe::parse(t.name()), Some(t));
            let json = serde_json::to_string(&t).expect("tf");
            assert_eq!(json, format!("\"{}\"", t.name()));
        }
        assert_eq!(Timeframe::H1.seconds(), Some(3600));
        assert_eq!(Timeframe::MN1.seconds(), None);
    }

    #[test]
    fn hello_roundtrip_and_optional_breach() {
        let h = Hello {
            login: 5_012_345,
            server: "Demo-Server".into(),
            company: "Broker Ltd".into(),
            currency: "USD".into(),
            leverage: 100,
            margin_mode: MarginMode::Hedging,
            terminal_build: 4_755,
            ea_version: "1.0.0".into(),
            server_utc_offset_s: 7_200,
            terminal_time_ms: 1_700_000_000_000,
            symbols: vec![spec()],
            floor_breach: None,
            instance: None,
        };
        let bytes = encode(&h);
        assert!(!String::from_utf8_lossy(&bytes).contains("floor_breach"));
        assert!(!String::from_utf8_lossy(&bytes).contains("instance"));
        assert_eq!(decode::<Hello>(&bytes).expect("hello"), h);
        let h = Hello { instance: Some("3f9a0c1d2e4b5a67".into()), ..h };
        assert_eq!(decode::<Hello>(&encode(&h)).expect("hello"), h);
    }

    #[test]
    fn instances_are_short_plain_tokens() {
        assert!(valid_instance("3f9a0c1d2e4b5a67"));
        assert!(valid_instance("6000001-chart-1"));
        assert!(valid_instance(&"a".repeat(MAX_INSTANCE_LEN)));
        for bad in ["", "a b", "chart/1", "é", &"a".repeat(MAX_INSTANCE_LEN + 1)] {
            assert!(!valid_instance(bad), "{bad:?}");
        }
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// No body, however broken, panics the decoder; every refusal names a kind.
            #[test]
            fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = decode::<Hello>(&bytes);
                let _ = decode::<PollAnswer>(&bytes);
                let _ = decode::<Ack>(&bytes);
                let _ = decode::<State>(&bytes);
                let _ = decode::<Deals>(&bytes);
                let _ = decode::<Bars>(&bytes);
            }

            /// Decimals survive the wire exactly, scale included.
            #[test]
            fn order_roundtrips(mantissa in -1_000_000_000i64..1_000_000_000, scale in 0u32..10,
                                order_no: u32, expiry in proptest::option::of(any::<i64>())) {
                let v = Decimal::new(mantissa, scale);
                let o = Order {
                    order_id: "ABCDEFGHJKMN".into(),
                    order_no,
                    symbol: "EURUSD".into(),
                    kind: OrderKind::BuyStop,
                    volume: v,
                    price: Some(v),
                    sl: None,
                    tp: Some(v),
                    max_slippage_points: None,
                    expiration_ms: expiry,
                };
                let back: Order = decode(&encode(&o)).expect("roundtrip");
                prop_assert_eq!(back.volume.to_string(), v.to_string());
                prop_assert_eq!(back, o);
            }
        }
    }
}
