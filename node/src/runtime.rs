//! The node's state machine behind the EA link and the local API: accounts and EA sessions,
//! orders (due → sent → acked / rejected / unknown / expired), reconciliation of `state` and
//! `deals` pushes, bars with cursors and backfill requests, the drawdown guard, provider mode
//! (the streaming Fib-RSI engine on the EA's closed bars) and the records for the hub.
//!
//! Every method that changes state commits it in one durable store transaction before it returns,
//! so the HTTP layer ([`crate::link`], [`crate::api`]) answers only facts that are on disk. One
//! mutex serializes those transactions with the in-memory session table, so an ack and a poll
//! can never interleave on the same order. Times: `now_ms` is the wall clock (freshness, link
//! health); the market clock is the terminal time the EA reports (expiry, 10018 retries, equity
//! minutes, signals).
//!
//! It owns no socket; [`crate::link`] and [`crate::api`] are the edges.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tradecast_protocol::ea::{
    self, Ack, AckAnswer, Bars, BarsAnswer, CloseAllScope, Deal, DealEntry, DealKind, Deals,
    DealsAnswer, Hello, HelloAnswer, Outcome, Poll, PollAnswer, State, StateAnswer,
};
use tradecast_protocol::link_auth::NonceCache;
use tradecast_protocol::{
    Body, DeviceId, EntryKind, EquityPoint, Execution, Identity, PositionSnapshot, SignalId,
    StreamId, TradeClosed,
};
use zeroize::Zeroizing;

use crate::keys;
use crate::policy::approval::{DecisionRequest, PendingApproval, Refused};
use crate::policy::calendar::HolidayCalendar;
use crate::policy::copy_log::CopyLogEntry;
use crate::policy::{self, PolicySettings};
use crate::store::{self, Store, StoreError};
use crate::strategy::{Engine, Params};

/// How many bars before the terminal's clock a new subscription starts (engine warm-up).
const WARMUP_BARS: i64 = 300;
/// How far back the deals cursor starts for a new account.
const DEALS_LOOKBACK_MS: i64 = 86_400_000;
/// How many sessions of one account stay valid at once.
const SESSIONS_PER_ACCOUNT: usize = 4;
/// A poll is held at most this long, whatever the EA asks.
pub const POLL_WAIT_MAX_MS: u32 = 30_000;
/// An order offered in a session and not acked is offered again after this (wall clock): an ack
/// lost on the way is harmless, the EA's look-up finds what it did.
const REOFFER_AFTER_MS: i64 = 10_000;
/// How often an order refused by a requote (10004, 10020, 10021) is sent again.
pub const REQUOTE_RETRIES: u32 = 3;
/// A close refused with 10018 (market closed) is offered again after this much market time.
const MARKET_CLOSED_RETRY_MS: i64 = 60_000;
/// An order that reached the EA but shows no fill this long (market clock) after its expiry
/// was never executed.
const STALE_AFTER_EXPIRY_MS: i64 = 300_000;
/// An equity point at least this often (market clock) …
const EQUITY_EVERY_MS: i64 = 60_000;
/// … or when equity moves by this fraction.
const EQUITY_MOVE: Decimal = Decimal::from_parts(1, 0, 0, false, 3);

/// The node's settings that the runtime needs (parsed from [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The long-poll wait the EA is told to ask for.
    pub poll_wait_ms: u32,
    /// The link is down after this much silence (wall clock).
    pub link_down_after_ms: i64,
    /// Bar subscriptions: (broker symbol, timeframe).
    pub subscriptions: Vec<(String, ea::Timeframe)>,
    /// Provider mode: run Fib-RSI on the subscribed bars and publish signals.
    pub provider: bool,
    /// Also execute the signals this node makes.
    pub self_trade: bool,
    /// The drawdown cap: percent below peak equity.
    pub drawdown_max_pct: Decimal,
    /// The optional daily loss limit: percent below the equity at the start of the broker's
    /// server day.
    pub daily_loss_max_pct: Option<Decimal>,
    /// Percent of equity risked per trade when the node sizes an order.
    pub risk_pct: Decimal,
    /// The EA's `input_magic` (the magic's high 32 bits), to tell Tradecast's positions apart.
    pub ea_magic: u32,
    /// The copy policy in force until the trader saves another ([`Node::set_policy`]).
    pub policy: PolicySettings,
    /// The holiday calendar (`holidays.toml` in the data dir).
    pub calendar: HolidayCalendar,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            poll_wait_ms: ea::DEFAULT_POLL_WAIT_MS,
            link_down_after_ms: 10_000,
            subscriptions: vec![("EURUSD".to_owned(), ea::Timeframe::H1)],
            provider: false,
            self_trade: false,
            drawdown_max_pct: Decimal::from(20),
            daily_loss_max_pct: None,
            risk_pct: Decimal::ONE,
            ea_magic: 20_260_101,
            policy: PolicySettings::default(),
            calendar: HolidayCalendar::default_calendar(),
        }
    }
}

/// Why a link or API call was refused; the edges map each to a status and a problem code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No current session with this id: the EA must say hello (409 `hello-required`).
    #[error("no session {0:?}: say hello first")]
    HelloRequired(String),
    /// A second poll while one is in flight in the session (409 `poll-in-flight`).
    #[error("a poll is already in flight in this session")]
    PollInFlight,
    /// The ack names an order the node does not have (404 `unknown-order`).
    #[error("no order {0:?} on this account")]
    UnknownOrder(String),
    /// The request is well formed but cannot be done (422, with words).
    #[error("{0}")]
    Refused(String),
    /// The store failed (500; nothing was told to the peer).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A secret could not be made or opened.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// No signal with this id waits for, or had, an approval on this node (404).
    #[error("no signal {0} to decide")]
    UnknownSignal(String),
    /// A decision the approval refused: after expiry, a second one, remote while disabled,
    /// outside the policy (409, the trader's words).
    #[error("{0}")]
    Decision(Refused),
    /// Policy settings that do not validate (422).
    #[error(transparent)]
    Policy(#[from] policy::SettingsError),
}

// ---------------------------------------------------------------------------------------------
// Rows.

/// An account as the EA introduced it, and the guard's memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountRow {
    /// `login@server`.
    pub account: String,
    pub login: u64,
    pub server: String,
    pub company: String,
    pub currency: String,
    pub margin_mode: ea::MarginMode,
    pub server_utc_offset_s: i32,
    #[serde(default)]
    pub symbols: Vec<ea::SymbolSpec>,
    /// Peak equity, adjusted for deposits and withdrawals.
    #[serde(default)]
    pub peak_equity: Option<Decimal>,
    /// Auto mode locked by the guard until the trader unlocks it.
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub lock_reason: String,
    #[serde(default)]
    pub balance: Option<Decimal>,
    #[serde(default)]
    pub equity: Option<Decimal>,
    /// Margin in use and free margin, from the last state push.
    #[serde(default)]
    pub margin: Option<Decimal>,
    #[serde(default)]
    pub free_margin: Option<Decimal>,
    /// The last equity point written: (market ms, equity).
    #[serde(default)]
    pub last_point: Option<(i64, Decimal)>,
    /// What the last position snapshot showed, to write one only on change.
    #[serde(default)]
    pub last_snapshot: String,
    /// The next `order_no`.
    #[serde(default = "one")]
    pub next_order_no: u32,
    /// The terminal's clock at the last call (market clock).
    #[serde(default)]
    pub market_ms: i64,
    /// The broker's server day (days since the epoch in server time) of `day_start_equity`.
    #[serde(default)]
    pub day: i64,
    /// Equity at the first state of the broker's server day (the daily loss limit's base).
    #[serde(default)]
    pub day_start_equity: Option<Decimal>,
    /// The broker's current tick values by broker symbol, with the market time the EA reported
    /// them (state pushes: symbols with a position or order, and the specs the node asks for).
    /// Risk-% sizing uses these over the hello spec's, which go stale on cross pairs.
    #[serde(default)]
    pub tick_values: BTreeMap<String, (i64, ea::TickValue)>,
    /// Tradecast's pending orders in the terminal at the last state push (they count as
    /// exposure for the open-position limits until they fill or go).
    #[serde(default)]
    pub pending_orders: Vec<ea::PendingOrder>,
}

fn one() -> u32 {
    1
}

/// How old (market clock) a subscribed symbol's tick value may be before the node asks the EA
/// for its spec again: tick values of cross pairs move with the rate.
const TICK_VALUE_REFRESH_MS: i64 = 5 * 60 * 1_000;

/// Takes the tick values and specs of a state push into the account row: a spec replaces the
/// hello's (and is a current tick value), a tick value is kept with the market time it came.
fn merge_tick_values(acc: &mut AccountRow, s: &State, market_ms: i64) {
    for spec in &s.specs {
        match acc.symbols.iter_mut().find(|x| x.symbol == spec.symbol) {
            Some(known) => *known = spec.clone(),
            None => acc.symbols.push(spec.clone()),
        }
        let tv = ea::TickValue {
            symbol: spec.symbol.clone(),
            tick_value_profit: spec.tick_value_profit,
            tick_value_loss: spec.tick_value_loss,
        };
        acc.tick_values.insert(spec.symbol.clone(), (market_ms, tv));
    }
    for tv in &s.tick_values {
        // A zero or negative tick value cannot size anything: the spec's stays in use.
        if tv.tick_value_loss > Decimal::ZERO {
            acc.tick_values.insert(tv.symbol.clone(), (market_ms, tv.clone()));
        }
    }
}

/// A `RequestSpec` for the subscribed broker symbols (the ones the node has quotes for, so the
/// ones it can trade) quoted in another currency than the account's (their tick value moves with
/// a rate) whose tick value is missing or older than [`TICK_VALUE_REFRESH_MS`] on the market
/// clock and not asked for within that time: their next state push carries the broker's current
/// values.
fn request_stale_specs(
    acc: &AccountRow,
    market_ms: i64,
    subscriptions: &[(String, ea::Timeframe)],
    asked_ms: &mut HashMap<String, i64>,
) -> Option<ea::Command> {
    let old = |at: i64| market_ms.saturating_sub(at) >= TICK_VALUE_REFRESH_MS;
    let mut symbols: Vec<String> = Vec::new();
    for (sym, _) in subscriptions {
        // A symbol whose profit currency is the account's has a fixed tick value: no need.
        let known =
            acc.symbols.iter().any(|x| &x.symbol == sym && x.currency_profit != acc.currency);
        let stale = acc.tick_values.get(sym).is_none_or(|(at, _)| old(*at));
        let asked = asked_ms.get(sym).is_some_and(|at| !old(*at));
        if known && stale && !asked && !symbols.contains(sym) {
            symbols.push(sym.clone());
        }
    }
    for sym in &symbols {
        asked_ms.insert(sym.clone(), market_ms);
    }
    (!symbols.is_empty()).then_some(ea::Command::RequestSpec { symbols })
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Waiting for the EA's next poll.
    Due,
    /// In a poll answer, no ack committed yet: offered again after a restart or a while.
    Sent,
    /// Done, ack committed.
    Acked,
    /// MT5 refused it (retcode and words stored).
    Rejected,
    /// The send's end is unknown (timeout, no connection): open until an ack or reconciliation.
    Unknown,
    /// Its signal expired before it reached the EA; it never will.
    Expired,
}

impl OrderState {
    /// Whether the order is settled for good.
    pub fn is_final(self) -> bool {
        matches!(self, OrderState::Acked | OrderState::Rejected | OrderState::Expired)
    }
}

/// What an order does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderAction {
    /// Open a position (or place a pending order).
    Open(ea::Order),
    /// Close a position, wholly or partly.
    Close { position_id: u64, symbol: String, volume: Option<Decimal> },
    /// Change a position's SL/TP.
    Modify { position_id: u64, sl: Option<Decimal>, tp: Option<Decimal> },
    /// Close everything Tradecast opened.
    CloseAll { scope: CloseAllScope },
}

/// What the EA's ack said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckFacts {
    pub found_by_lookup: bool,
    pub order_ticket: Option<u64>,
    pub deal_ticket: Option<u64>,
    pub position_id: Option<u64>,
    pub price: Option<Decimal>,
    pub volume: Option<Decimal>,
    pub time_ms: Option<i64>,
}

/// An order and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRow {
    pub order_id: String,
    pub order_no: u32,
    pub account: String,
    pub action: OrderAction,
    #[serde(default)]
    pub signal_id: Option<SignalId>,
    pub state: OrderState,
    /// Wall clock.
    pub created_at_ms: i64,
    /// Market clock: never sent after this.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    /// Market clock: not offered before this (a close refused with 10018).
    #[serde(default)]
    pub not_before_ms: Option<i64>,
    #[serde(default)]
    pub sent_session: Option<String>,
    #[serde(default)]
    pub sent_at_ms: Option<i64>,
    #[serde(default)]
    pub n_offers: u32,
    #[serde(default)]
    pub retcode: Option<u32>,
    /// MT5's words.
    #[serde(default)]
    pub message: String,
    /// The retcode in a trader's words.
    #[serde(default)]
    pub explained: String,
    #[serde(default)]
    pub ack: Option<AckFacts>,
    /// `ack` or `reconciliation`.
    #[serde(default)]
    pub settled_by: String,
    /// Requotes so far (the order is sent again up to [`REQUOTE_RETRIES`] times).
    #[serde(default)]
    pub n_requotes: u32,
    /// Wall clock when the EA's fill ack was committed (the UI's order → fill time).
    #[serde(default)]
    pub filled_at_ms: Option<i64>,
}

/// A position the node follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionRow {
    pub position_id: u64,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub signal_id: Option<SignalId>,
    pub symbol: String,
    pub side: ea::Side,
    /// Lots open now.
    pub volume: Decimal,
    /// Lots at the open.
    pub volume_opened: Decimal,
    pub open_price: Decimal,
    pub open_time_ms: i64,
    #[serde(default)]
    pub sl: Option<Decimal>,
    #[serde(default)]
    pub tp: Option<Decimal>,
    #[serde(default)]
    pub profit: Decimal,
    /// Still open.
    pub open: bool,
    /// Opened by this node from its own signal (provider mode: its changes become records).
    #[serde(default)]
    pub own_signal: bool,
}

/// A signal the node made, received or was handed, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRow {
    pub signal: tradecast_protocol::Signal,
    /// Where it came from: `strategy`, `api`.
    pub source: String,
    /// The order made from it, if any.
    #[serde(default)]
    pub order_id: Option<String>,
    /// Why no order was made, if none.
    #[serde(default)]
    pub skipped: String,
}

/// The settings key of the trader's saved policy (JSON).
const POLICY_KEY: &str = "policy";

/// A signal's approval on this node, with what re-evaluating it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRow {
    /// `login@server` it would trade on.
    pub account: String,
    /// The provider's lot, if the signal carried one.
    #[serde(default)]
    pub provider_lots: Option<Decimal>,
    pub pending: PendingApproval,
    /// The copy-log line of the evaluation that started it.
    pub line: String,
}

/// One leg of a plan as the EA's order (what [`policy::OrderPlan::ea_order`] does, for a leg
/// already in hand).
fn leg_order(plan: &policy::OrderPlan, leg: policy::PlannedLeg, id: &str, no: u32) -> ea::Order {
    ea::Order {
        order_id: id.to_owned(),
        order_no: no,
        symbol: plan.symbol.clone(),
        kind: plan.kind,
        volume: leg.volume,
        price: Some(plan.price),
        sl: leg.sl,
        tp: leg.tp,
        max_slippage_points: plan.max_slippage_points,
        expiration_ms: (!plan.kind.is_market()).then_some(plan.expires_at_ms),
    }
}

/// A stored bar.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BarRow {
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
}

fn sessions_of(symbols: &[ea::SymbolSpec], symbol: &str) -> Vec<ea::Session> {
    symbols.iter().find(|s| s.symbol == symbol).map(|s| s.sessions.clone()).unwrap_or_default()
}

/// Whether a bar could have been missed between `from_ms` (inclusive) and `to_ms` (exclusive):
/// some bar open time in the range falls in a trading session. Without sessions every gap
/// counts; a weekend or a holiday the sessions know is no gap.
pub fn gap_in_session(sessions: &[ea::Session], from_ms: i64, to_ms: i64, tf_ms: i64) -> bool {
    if sessions.is_empty() {
        return true;
    }
    let mut t = from_ms;
    let mut n = 0;
    while t < to_ms && n < 10_000 {
        if sessions.iter().any(|s| s.contains(t)) {
            return true;
        }
        t = t.saturating_add(tf_ms.max(60_000));
        n += 1;
    }
    // A gap too long to walk is asked for.
    n >= 10_000
}

/// When a market closed at `market_ms` opens again: the next session start in the symbol's UTC
/// week, or a minute later when the broker reported no sessions (or says it is open now, a
/// holiday the sessions do not know).
pub fn next_open(sessions: &[ea::Session], market_ms: i64) -> i64 {
    let ws = i64::from(ea::week_second(market_ms));
    let open_now = sessions.iter().any(|s| s.contains(market_ms));
    let next = sessions
        .iter()
        .map(|s| {
            let from = i64::from(s.from_week_s);
            if from > ws { from - ws } else { from + i64::from(ea::WEEK_S) - ws }
        })
        .min();
    match next {
        Some(wait_s) if !open_now => market_ms - market_ms.rem_euclid(1_000) + wait_s * 1_000,
        _ => market_ms + MARKET_CLOSED_RETRY_MS,
    }
}

fn bar_f64(time_ms: i64, b: &BarRow) -> tradecast_protocol::bars::BarF64 {
    let f =
        |d: Decimal| -> f64 { rust_decimal::prelude::ToPrimitive::to_f64(&d).unwrap_or(f64::NAN) };
    tradecast_protocol::bars::BarF64 {
        time_unix_ms: time_ms,
        open: f(b.open),
        high: f(b.high),
        low: f(b.low),
        close: f(b.close),
    }
}

/// MT5 trade return codes in words a trader understands.
pub fn explain_retcode(retcode: u32) -> &'static str {
    match retcode {
        0 => "no answer from the trade server",
        10004 => "requote: the price changed before the order was filled",
        10006 => "the broker rejected the order",
        10007 => "the order was cancelled",
        10008 => "the order was placed",
        10009 => "done: the order was filled",
        10010 => "only part of the order was filled",
        10011 => "the trade server could not process the request",
        10012 => "the request timed out: whether it was filled is not known yet",
        10013 => "the request was invalid",
        10014 => "the volume is not allowed for this symbol",
        10015 => "the price is not valid",
        10016 => "the stop loss or take profit is too close to the price or invalid",
        10017 => "trading is disabled for this account or symbol",
        10018 => "the market is closed",
        10019 => "not enough money to open the position",
        10020 => "prices changed",
        10021 => "no quotes to process the request",
        10024 => "too many requests",
        10026 => "auto trading is disabled on the server",
        10027 => "auto trading is disabled in the terminal (the Algo Trading button)",
        10030 => "the fill type is not supported by the broker",
        10031 => "no connection to the trade server: whether it was filled is not known yet",
        10033 => "the limit of pending orders is reached",
        10034 => "the volume limit for this symbol is reached",
        10036 => "the position is already closed",
        10038 => "the close volume is larger than the position",
        _ => "the terminal reported an unlisted error",
    }
}

/// 12 characters of Crockford base32 from 60 random bits.
fn new_order_id() -> Result<String, keys::KeyError> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let b = keys::random_bytes::<8>()?;
    let n = u64::from_le_bytes(*b);
    Ok((0..12).map(|i| char::from(ALPHABET[((n >> (i * 5)) & 31) as usize])).collect())
}

fn new_session_id() -> Result<String, keys::KeyError> {
    let b = keys::random_bytes::<12>()?;
    Ok(format!("s_{}", hex::encode(&b[..])))
}

/// The wall clock, unix ms.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn series_name(symbol: &str, tf: ea::Timeframe) -> String {
    format!("{symbol}:{}", tf.name())
}

fn to_domain_tf(tf: ea::Timeframe) -> tradecast_protocol::Timeframe {
    use tradecast_protocol::Timeframe as T;
    match tf {
        ea::Timeframe::M1 => T::M1,
        ea::Timeframe::M5 => T::M5,
        ea::Timeframe::M15 => T::M15,
        ea::Timeframe::M30 => T::M30,
        ea::Timeframe::H1 => T::H1,
        ea::Timeframe::H4 => T::H4,
        ea::Timeframe::D1 => T::D1,
        ea::Timeframe::W1 => T::W1,
        ea::Timeframe::MN1 => T::MN1,
    }
}

fn domain_side(s: ea::Side) -> tradecast_protocol::Side {
    match s {
        ea::Side::Buy => tradecast_protocol::Side::Buy,
        ea::Side::Sell => tradecast_protocol::Side::Sell,
    }
}

// ---------------------------------------------------------------------------------------------
// In memory.

#[derive(Debug)]
struct Session {
    account: String,
    poll_in_flight: bool,
}

#[derive(Default)]
struct AccountMem {
    /// Commands that need no ack (backfill), offered at the next poll.
    commands: Vec<ea::Command>,
    /// Gaps already asked for: (series, from).
    asked: HashSet<(String, i64)>,
    /// Provider mode: one engine per series, and the last bar fed.
    engines: HashMap<String, (Engine, i64)>,
    /// The terminal's clock at the last poll (market clock).
    market_ms: i64,
    /// The latest quote per broker symbol, from the last closed bar the EA pushed.
    quotes: BTreeMap<String, (i64, crate::orders::Quote)>,
    /// When (market clock) the node last asked the EA for a symbol's spec.
    spec_asked_ms: HashMap<String, i64>,
}

struct Inner {
    secrets: Secrets,
    nonces: NonceCache,
    sessions: HashMap<String, Session>,
    /// Live session ids per account, oldest first.
    current: HashMap<String, Vec<String>>,
    accounts: HashMap<String, AccountMem>,
    last_seen_ms: Option<i64>,
}

/// What `status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub device_id: String,
    pub mode: String,
    pub self_trade: bool,
    pub started_at_ms: i64,
    pub ea_last_seen_ms: Option<i64>,
    pub link_up: bool,
    pub accounts: Vec<AccountStatus>,
    pub outbox_len: u64,
    /// What this node signed and took in, and its hub link.
    #[serde(default)]
    pub sync: SyncStatus,
}

/// The sync side of [`Status`]: enough for anyone holding the local token to check, against
/// the hub, that nothing this node signed is missing there and nothing sent to it is pending.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncStatus {
    /// This node's identity key, hex: every record it signed verifies against it.
    pub identity_key: String,
    /// Whether the hub session is up; `None` when no sync client runs (not enrolled).
    pub hub_connected: Option<bool>,
    /// The last feed item committed (the hub's feed for this device).
    pub inbox_watermark: u64,
    /// Per stream this node writes: the last `seq` signed and the hub receipts held.
    pub streams: Vec<StreamStatus>,
}

/// One stream in [`SyncStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStatus {
    pub stream: u32,
    /// The last `seq` this node signed.
    pub tip: u64,
    /// The hub's receipts held (one per record on the signals stream, one per commit batch on
    /// the others).
    pub receipts: u64,
    /// The highest `seq` a hub receipt covers: through the hash chain, it vouches for every
    /// record up to it. Equal to `tip` when the hub holds everything.
    #[serde(default)]
    pub receipted_to: u64,
}

/// One account in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountStatus {
    pub account: String,
    pub balance: Option<Decimal>,
    pub equity: Option<Decimal>,
    pub peak_equity: Option<Decimal>,
    pub equity_floor: Option<Decimal>,
    pub locked: bool,
    pub lock_reason: String,
    pub n_open_positions: usize,
    pub n_open_orders: usize,
}

/// The node: store, identity, settings and the in-memory session state.
pub struct Node {
    store: Store,
    identity: Identity,
    settings: Settings,
    start_ms: i64,
    inner: Mutex<Inner>,
    work: tokio::sync::watch::Sender<u64>,
    /// The sync driver's connected flag, once one runs ([`Node::set_hub_link`]).
    hub_link: std::sync::OnceLock<tokio::sync::watch::Receiver<bool>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("device", &self.identity.device_id().fmt_short()).finish()
    }
}

/// Reads the identity and opens the EA secrets of a store.
type Secrets = HashMap<String, Zeroizing<Vec<u8>>>;

fn load(store: &Store) -> Result<(Identity, Secrets), NodeError> {
    let view = store.read()?;
    let identity = view.identity()?.ok_or(StoreError::NotInitialized)?;
    let mut secrets = HashMap::new();
    for (key_id, sealed) in view.ea_keys()? {
        let secret = keys::open_secret(&identity, &key_id, &sealed)?;
        secrets.insert(key_id, secret);
    }
    Ok((identity, secrets))
}

impl Node {
    /// A node over an initialized store. `start_ms` is the wall clock at start: EA requests
    /// stamped earlier are refused (the nonce cache is memory only).
    pub fn new(store: Store, settings: Settings, start_ms: i64) -> Result<Arc<Node>, NodeError> {
        let (identity, secrets) = load(&store)?;
        let (work, _) = tokio::sync::watch::channel(0);
        Ok(Arc::new(Node {
            store,
            identity,
            settings,
            start_ms,
            inner: Mutex::new(Inner {
                secrets,
                nonces: NonceCache::new(100_000),
                sessions: HashMap::new(),
                current: HashMap::new(),
                accounts: HashMap::new(),
                last_seen_ms: None,
            }),
            work,
            hub_link: std::sync::OnceLock::new(),
        }))
    }

    /// The device id.
    pub fn device_id(&self) -> DeviceId {
        self.identity.device_id()
    }

    /// The device's public identity key (to verify its records).
    pub fn identity_key(&self) -> tradecast_protocol::IdentityKey {
        self.identity.identity_key()
    }

    /// The body of one of this node's records, opened if it is sealed.
    pub fn open_record(&self, record: &tradecast_protocol::Record) -> Option<Body> {
        if record.header().sealed {
            let key = tradecast_protocol::StreamKey::derive(
                &self.identity,
                &self.identity.device_id(),
                record.header().stream,
            );
            record.open(&key).ok()
        } else {
            record.body().ok()
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Wakes on every change the node commits that the EA or the UI should see.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.work.subscribe()
    }

    /// The store (read views for the API).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// When the node started (wall clock).
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug; the state it guards is rebuilt from the
        // store on restart, so recovering the guard is safe.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        self.work.send_modify(|v| *v = v.wrapping_add(1));
    }

    // -----------------------------------------------------------------------------------------
    // Authentication support for the link.

    /// The secret of an EA key, if known.
    pub fn ea_secret(&self, key_id: &str) -> Option<Zeroizing<Vec<u8>>> {
        self.lock().secrets.get(key_id).cloned()
    }

    /// Remembers a nonce of a verified request; refuses a replay.
    pub fn check_nonce(
        &self,
        nonce: &str,
        timestamp_ms: i64,
        now_ms: i64,
    ) -> Result<(), tradecast_protocol::link_auth::AuthError> {
        self.lock().nonces.check_and_insert(nonce, timestamp_ms, now_ms)
    }

    /// Notes an authenticated EA call (link health).
    pub fn seen(&self, now_ms: i64) {
        self.lock().last_seen_ms = Some(now_ms);
    }

    /// Makes an EA key; the secret is returned once and stored sealed.
    pub fn new_ea_key(&self) -> Result<keys::EaKey, NodeError> {
        let key = keys::new_ea_key()?;
        let sealed = keys::seal_secret(&self.identity, &key.key_id, &key.secret)?;
        self.store.write(|tx| tx.put_ea_key(&key.key_id, &sealed))?;
        self.lock()
            .secrets
            .insert(key.key_id.clone(), Zeroizing::new(key.secret.as_bytes().to_vec()));
        tracing::info!(target: "tradecast::keys", key_id = %key.key_id, "EA key created");
        Ok(key)
    }

    /// Revokes an EA key: removed from the store and from memory, so the EA's next call signed
    /// with it is refused. Whether the key existed.
    pub fn revoke_ea_key(&self, key_id: &str) -> Result<bool, NodeError> {
        let stored = self.store.write(|tx| tx.remove_ea_key(key_id))?;
        let live = self.lock().secrets.remove(key_id).is_some();
        if stored || live {
            tracing::info!(target: "tradecast::keys", %key_id, "EA key revoked");
        }
        Ok(stored || live)
    }

    /// Hands the node the hub session's connected flag (the sync driver's), for status and UI.
    pub fn set_hub_link(&self, connected: tokio::sync::watch::Receiver<bool>) {
        let _ = self.hub_link.set(connected);
    }

    /// Whether the hub session is connected; `None` when no sync driver runs in this process.
    pub fn hub_connected(&self) -> Option<bool> {
        self.hub_link.get().map(|rx| *rx.borrow())
    }

    /// The EA key ids.
    pub fn ea_key_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().secrets.keys().cloned().collect();
        v.sort();
        v
    }

    // -----------------------------------------------------------------------------------------
    // hello

    /// The EA introduces the account: a new session (the previous one of this account ends).
    pub fn hello(&self, h: Hello, now_ms: i64) -> Result<HelloAnswer, NodeError> {
        let account = format!("{}@{}", h.login, h.server);
        let session_id = new_session_id()?;
        let mut inner = self.lock();
        let subs = self.settings.subscriptions.clone();
        let device = self.identity.device_id();
        let identity = &self.identity;
        let (row, deals_from, bars_from) = self.store.write(|tx| {
            let prev: Option<AccountRow> = tx.get_json(store::ACCOUNTS, "accounts", &account)?;
            let mut row = prev.unwrap_or(AccountRow {
                account: account.clone(),
                login: h.login,
                server: h.server.clone(),
                company: String::new(),
                currency: String::new(),
                margin_mode: h.margin_mode,
                server_utc_offset_s: 0,
                symbols: Vec::new(),
                peak_equity: None,
                locked: false,
                lock_reason: String::new(),
                balance: None,
                equity: None,
                margin: None,
                free_margin: None,
                last_point: None,
                last_snapshot: String::new(),
                next_order_no: 1,
                market_ms: 0,
                day: 0,
                day_start_equity: None,
                tick_values: BTreeMap::new(),
                pending_orders: Vec::new(),
            });
            row.company = h.company.clone();
            row.currency = h.currency.clone();
            row.margin_mode = h.margin_mode;
            row.server_utc_offset_s = h.server_utc_offset_s;
            row.symbols = h.symbols.clone();
            row.market_ms = row.market_ms.max(h.terminal_time_ms);
            // The hello's specs carry the tick values of this moment.
            row.tick_values = h
                .symbols
                .iter()
                .map(|x| {
                    let tv = ea::TickValue {
                        symbol: x.symbol.clone(),
                        tick_value_profit: x.tick_value_profit,
                        tick_value_loss: x.tick_value_loss,
                    };
                    (x.symbol.clone(), (h.terminal_time_ms, tv))
                })
                .collect();
            if let Some(b) = &h.floor_breach {
                // The EA closed Tradecast's positions on its own while the node was silent.
                row.locked = true;
                row.lock_reason = format!(
                    "the EA closed {} position(s) on its own: equity {} fell below the floor {} \
                     while the node was silent",
                    b.n_closed, b.equity, b.floor
                );
                let cmd = tradecast_protocol::Command::CloseAll {
                    symbol: None,
                    reason: row.lock_reason.clone(),
                    at_ms: b.time_ms,
                };
                tx.append_record(identity, StreamId::COMMANDS, &Body::Command(cmd), now_ms)?;
            }
            let deals_from = match tx.cursor(&account, "deals")? {
                Some(c) => c,
                None => {
                    let c = h.terminal_time_ms.saturating_sub(DEALS_LOOKBACK_MS);
                    tx.set_cursor(&account, "deals", c)?;
                    c
                }
            };
            let mut bars_from = Vec::new();
            for (symbol, tf) in &subs {
                let name = format!("bars:{}", series_name(symbol, *tf));
                let from = match tx.cursor(&account, &name)? {
                    Some(c) => c,
                    None => {
                        let tf_ms = tf.seconds().unwrap_or(3_600) * 1_000;
                        let c =
                            (h.terminal_time_ms - WARMUP_BARS * tf_ms).div_euclid(tf_ms) * tf_ms;
                        tx.set_cursor(&account, &name, c)?;
                        c
                    }
                };
                bars_from.push(ea::BarCursor {
                    symbol: symbol.clone(),
                    timeframe: *tf,
                    from_ms: from,
                });
            }
            tx.put_json(store::ACCOUNTS, "accounts", &account, &row)?;
            Ok((row, deals_from, bars_from))
        })?;
        let _ = device;
        // The newest sessions of an account stay valid (an EA's hello does not cut off a poll
        // of the one before it already in flight); the oldest beyond the bound end.
        let live = inner.current.entry(account.clone()).or_default();
        live.push(session_id.clone());
        let ended: Vec<String> =
            if live.len() > SESSIONS_PER_ACCOUNT { live.drain(..1).collect() } else { Vec::new() };
        for old in ended {
            inner.sessions.remove(&old);
        }
        inner.sessions.insert(
            session_id.clone(),
            Session { account: account.clone(), poll_in_flight: false },
        );
        inner.accounts.entry(account.clone()).or_default();
        drop(inner);
        self.wake();
        tracing::info!(target: "tradecast::link", %account, session = %session_id, "EA hello");
        Ok(HelloAnswer {
            session_id,
            poll_wait_ms: self.settings.poll_wait_ms,
            subscriptions: self
                .settings
                .subscriptions
                .iter()
                .map(|(s, t)| ea::BarSubscription { symbol: s.clone(), timeframe: *t })
                .collect(),
            equity_floor: self.floor(&row),
            deals_from_ms: deals_from,
            bars_from,
        })
    }

    fn floor(&self, row: &AccountRow) -> Option<Decimal> {
        let peak = row.peak_equity?;
        let keep = Decimal::ONE_HUNDRED.checked_sub(self.settings.drawdown_max_pct)?;
        peak.checked_mul(keep)?.checked_div(Decimal::ONE_HUNDRED).map(|d| d.round_dp(2))
    }

    fn session_account(&self, inner: &Inner, session_id: &str) -> Result<String, NodeError> {
        inner
            .sessions
            .get(session_id)
            .map(|s| s.account.clone())
            .ok_or_else(|| NodeError::HelloRequired(session_id.to_owned()))
    }

    // -----------------------------------------------------------------------------------------
    // poll

    /// The long-poll: answers as soon as something is due, or after `wait_ms` (at most
    /// [`POLL_WAIT_MAX_MS`]) with nothing. One poll per session in flight.
    pub async fn poll(&self, p: Poll) -> Result<PollAnswer, NodeError> {
        let account = {
            let mut inner = self.lock();
            let account = self.session_account(&inner, &p.session_id)?;
            let s = inner
                .sessions
                .get_mut(&p.session_id)
                .ok_or_else(|| NodeError::HelloRequired(p.session_id.clone()))?;
            if s.poll_in_flight {
                return Err(NodeError::PollInFlight);
            }
            s.poll_in_flight = true;
            account
        };
        let _flag = InFlight { node: self, session_id: &p.session_id };
        let wait = Duration::from_millis(u64::from(p.wait_ms.min(POLL_WAIT_MAX_MS)));
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.work.subscribe();
        loop {
            rx.borrow_and_update();
            let answer = self.take_due(&account, &p.session_id, p.terminal_time_ms, wall_ms())?;
            if !answer.orders.is_empty()
                || !answer.commands.is_empty()
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(answer);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                // Deadline: one last look, then answer.
                continue;
            }
        }
    }

    /// What is due now for the session, marked sent (committed) before it is returned.
    pub fn take_due(
        &self,
        account: &str,
        session_id: &str,
        market_ms: i64,
        now_ms: i64,
    ) -> Result<PollAnswer, NodeError> {
        let mut inner = self.lock();
        if !inner.sessions.contains_key(session_id) {
            // The session ended while the poll waited.
            return Ok(PollAnswer { orders: Vec::new(), commands: Vec::new(), equity_floor: None });
        }
        let mut commands: Vec<ea::Command> = inner
            .accounts
            .get_mut(account)
            .map(|m| std::mem::take(&mut m.commands))
            .unwrap_or_default();
        let mem = inner.accounts.entry(account.to_owned()).or_default();
        mem.market_ms = mem.market_ms.max(market_ms);
        let view = self.store.read()?;
        let row: Option<AccountRow> = view.get_json(store::ACCOUNTS, "accounts", account)?;
        let mut rows: Vec<OrderRow> = view.orders(account)?;
        drop(view);
        if let Some(acc) = &row
            && let Some(cmd) = request_stale_specs(
                acc,
                mem.market_ms,
                &self.settings.subscriptions,
                &mut mem.spec_asked_ms,
            )
        {
            commands.push(cmd);
        }
        rows.retain(|o| !o.state.is_final());
        rows.sort_by_key(|o| o.order_no);
        let mut orders = Vec::new();
        let mut trade_cmds = Vec::new();
        let mut changed = Vec::new();
        for mut o in rows {
            let offer = match o.state {
                OrderState::Due => {
                    if o.expires_at_ms.is_some_and(|e| market_ms > e) {
                        o.state = OrderState::Expired;
                        o.explained = "the signal expired before it reached the terminal".into();
                        tracing::info!(target: "tradecast::orders", order_id = %o.order_id, "expired");
                        changed.push(o);
                        continue;
                    }
                    o.not_before_ms.is_none_or(|t| market_ms >= t)
                }
                // Past its expiry an order that reached the EA is not offered again (the EA
                // would send a stale order if its look-up finds nothing): reconciliation
                // settles it from the deals and positions.
                _ if o.expires_at_ms.is_some_and(|e| market_ms > e) => false,
                OrderState::Sent => {
                    o.sent_session.as_deref() != Some(session_id)
                        || o.sent_at_ms.is_some_and(|t| now_ms - t >= REOFFER_AFTER_MS)
                }
                OrderState::Unknown => o.sent_session.as_deref() != Some(session_id),
                _ => false,
            };
            if !offer {
                continue;
            }
            if o.state == OrderState::Due {
                o.state = OrderState::Sent;
            }
            o.sent_session = Some(session_id.to_owned());
            o.sent_at_ms = Some(now_ms);
            o.n_offers += 1;
            match &o.action {
                OrderAction::Open(order) => orders.push(order.clone()),
                OrderAction::Close { position_id, symbol, volume } => {
                    trade_cmds.push(ea::Command::Close {
                        order_id: o.order_id.clone(),
                        order_no: o.order_no,
                        position_id: *position_id,
                        symbol: symbol.clone(),
                        volume: *volume,
                    })
                }
                OrderAction::Modify { position_id, sl, tp } => {
                    trade_cmds.push(ea::Command::Modify {
                        order_id: o.order_id.clone(),
                        order_no: o.order_no,
                        position_id: Some(*position_id),
                        order_ticket: None,
                        sl: *sl,
                        tp: *tp,
                    })
                }
                OrderAction::CloseAll { scope } => trade_cmds
                    .push(ea::Command::CloseAll { order_id: o.order_id.clone(), scope: *scope }),
            }
            changed.push(o);
        }
        if !changed.is_empty() {
            // Offered orders are marked sent (and expired ones expired) durably before the
            // answer leaves.
            self.store.write(|tx| {
                for o in &changed {
                    tx.put_order(account, &o.order_id, o)?;
                }
                Ok(())
            })?;
        }
        let floor = row.as_ref().and_then(|r| self.floor(r));
        let mut all = trade_cmds;
        all.append(&mut commands);
        Ok(PollAnswer { orders, commands: all, equity_floor: floor })
    }

    fn poll_done(&self, session_id: &str) {
        if let Some(s) = self.lock().sessions.get_mut(session_id) {
            s.poll_in_flight = false;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Orders.

    /// Queues an order (or a trading command) for the account; committed before it returns.
    /// The EA's next poll gets it.
    pub fn queue(
        &self,
        account: &str,
        action: impl FnOnce(&str, u32) -> OrderAction,
        signal_id: Option<SignalId>,
        expires_at_ms: Option<i64>,
    ) -> Result<OrderRow, NodeError> {
        let order_id = new_order_id()?;
        let _inner = self.lock();
        let row = self
            .store
            .write(|tx| self.queue_in(tx, account, &order_id, action, signal_id, expires_at_ms))?;
        drop(_inner);
        self.wake();
        Ok(row)
    }

    fn queue_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        order_id: &str,
        action: impl FnOnce(&str, u32) -> OrderAction,
        signal_id: Option<SignalId>,
        expires_at_ms: Option<i64>,
    ) -> Result<OrderRow, StoreError> {
        let mut acc: AccountRow =
            tx.get_json(store::ACCOUNTS, "accounts", account)?.ok_or(StoreError::Row {
                table: "accounts",
                message: format!("no account {account}"),
            })?;
        let order_no = acc.next_order_no;
        acc.next_order_no = acc.next_order_no.wrapping_add(1).max(1);
        tx.put_json(store::ACCOUNTS, "accounts", account, &acc)?;
        let row = OrderRow {
            order_id: order_id.to_owned(),
            order_no,
            account: account.to_owned(),
            action: action(order_id, order_no),
            signal_id,
            state: OrderState::Due,
            created_at_ms: wall_ms(),
            expires_at_ms,
            not_before_ms: None,
            sent_session: None,
            sent_at_ms: None,
            n_offers: 0,
            retcode: None,
            message: String::new(),
            explained: String::new(),
            ack: None,
            settled_by: String::new(),
            n_requotes: 0,
            filled_at_ms: None,
        };
        tx.put_order(account, order_id, &row)?;
        tracing::info!(target: "tradecast::orders", %account, order_id, order_no, "order due");
        Ok(row)
    }

    /// The trader's (or the guard's) close-all: Tradecast's magic only.
    pub fn close_all(&self, account: &str, reason: &str) -> Result<OrderRow, NodeError> {
        let row = self.queue(
            account,
            |_, _| OrderAction::CloseAll { scope: CloseAllScope::Tradecast },
            None,
            None,
        )?;
        let market = self.market_ms(account)?;
        let cmd = tradecast_protocol::Command::CloseAll {
            symbol: None,
            reason: reason.to_owned(),
            at_ms: market,
        };
        let _inner = self.lock();
        self.store.write(|tx| {
            tx.append_record(&self.identity, StreamId::COMMANDS, &Body::Command(cmd), wall_ms())
        })?;
        Ok(row)
    }

    /// Unlocks auto mode after the guard locked it.
    pub fn unlock(&self, account: &str) -> Result<(), NodeError> {
        let _inner = self.lock();
        self.store.write(|tx| {
            let mut acc: AccountRow =
                tx.get_json(store::ACCOUNTS, "accounts", account)?.ok_or(StoreError::Row {
                    table: "accounts",
                    message: format!("no account {account}"),
                })?;
            acc.locked = false;
            acc.lock_reason.clear();
            // The cap restarts from today's equity.
            acc.peak_equity = acc.equity;
            tx.put_json(store::ACCOUNTS, "accounts", account, &acc)
        })?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // ack

    /// How an order ended; committed before the answer.
    pub fn ack(&self, a: Ack, now_ms: i64) -> Result<AckAnswer, NodeError> {
        let inner = self.lock();
        let account = self.session_account(&inner, &a.session_id)?;
        let mem_market = inner.accounts.get(&account).map(|m| m.market_ms).unwrap_or(0);
        let device = self.identity.device_id();
        self.store
            .write(|tx| {
                let mut o: OrderRow = tx
                    .order(&account, &a.order_id)?
                    .ok_or(StoreError::Row { table: "orders", message: String::new() })
                    .map_err(|_| StoreError::Row {
                        table: "orders",
                        message: format!("no order {}", a.order_id),
                    })?;
                let proves_fill = a.outcome == Outcome::Done && o.state == OrderState::Expired;
                if o.state.is_final() && !proves_fill {
                    // A repeated ack (the answer to the first was lost): already committed.
                    return Ok(());
                }
                let acc: Option<AccountRow> = tx.get_json(store::ACCOUNTS, "accounts", &account)?;
                let market = acc.as_ref().map(|r| r.market_ms).unwrap_or(0).max(mem_market);
                o.retcode = Some(a.retcode);
                o.message = a.message.clone();
                o.explained = explain_retcode(a.retcode).to_owned();
                o.ack = Some(AckFacts {
                    found_by_lookup: a.found_by_lookup,
                    order_ticket: a.order_ticket,
                    deal_ticket: a.deal_ticket,
                    position_id: a.position_id,
                    price: a.price,
                    volume: a.volume,
                    time_ms: a.time_ms,
                });
                match a.outcome {
                    Outcome::Done => {
                        o.state = OrderState::Acked;
                        o.settled_by = "ack".into();
                        o.filled_at_ms = Some(now_ms);
                        self.record_fill(tx, &account, &o, device, now_ms)?;
                    }
                    Outcome::Rejected
                        if a.retcode == 10018
                            && matches!(
                                o.action,
                                OrderAction::Close { .. } | OrderAction::CloseAll { .. }
                            ) =>
                    {
                        o.state = OrderState::Due;
                        let sessions = match (&o.action, &acc) {
                            (OrderAction::Close { symbol, .. }, Some(acc)) => acc
                                .symbols
                                .iter()
                                .find(|sp| sp.symbol == *symbol)
                                .map(|sp| sp.sessions.clone())
                                .unwrap_or_default(),
                            _ => Vec::new(),
                        };
                        o.not_before_ms = Some(next_open(&sessions, market));
                        o.explained =
                            "the market is closed: the close is sent again when it opens".into();
                    }
                    Outcome::Rejected
                        if matches!(a.retcode, 10004 | 10020 | 10021)
                            && matches!(o.action, OrderAction::Open(_))
                            && o.n_requotes < REQUOTE_RETRIES =>
                    {
                        // The price moved before the fill: nothing was opened, send it again
                        // (the signal's expiry still bounds it).
                        o.n_requotes += 1;
                        o.state = OrderState::Due;
                        o.explained = format!(
                            "{}: sent again ({} of {REQUOTE_RETRIES})",
                            explain_retcode(a.retcode),
                            o.n_requotes
                        );
                    }
                    Outcome::Rejected => {
                        o.state = OrderState::Rejected;
                        o.settled_by = "ack".into();
                    }
                    Outcome::Unknown => {
                        o.state = OrderState::Unknown;
                    }
                }
                tx.put_order(&account, &o.order_id, &o)?;
                tracing::info!(target: "tradecast::orders", %account, order_id = %o.order_id,
                retcode = a.retcode, state = ?o.state, "ack committed");
                Ok(())
            })
            .map_err(|e| match e {
                StoreError::Row { table: "orders", message } if message.starts_with("no order") => {
                    NodeError::UnknownOrder(a.order_id.clone())
                }
                e => NodeError::Store(e),
            })?;
        drop(inner);
        self.wake();
        Ok(AckAnswer { ok: true })
    }

    /// A filled open order: the position row and the execution record.
    fn record_fill(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        o: &OrderRow,
        device: DeviceId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let OrderAction::Open(order) = &o.action else { return Ok(()) };
        let Some(ack) = &o.ack else { return Ok(()) };
        if let Some(pid) = ack.position_id
            && tx.position::<PositionRow>(account, pid)?.is_none()
        {
            let volume = ack.volume.unwrap_or(order.volume);
            let row = PositionRow {
                position_id: pid,
                order_id: Some(o.order_id.clone()),
                signal_id: o.signal_id,
                symbol: order.symbol.clone(),
                side: if order.kind.is_buy() { ea::Side::Buy } else { ea::Side::Sell },
                volume,
                volume_opened: volume,
                open_price: ack.price.or(order.price).unwrap_or_default(),
                open_time_ms: ack.time_ms.unwrap_or(0),
                sl: order.sl,
                tp: order.tp,
                profit: Decimal::ZERO,
                open: true,
                own_signal: self.settings.provider && o.signal_id.is_some(),
            };
            tx.put_position(account, pid, &row)?;
        }
        if let Some(signal_id) = o.signal_id {
            let e = Execution {
                order_id: u64::from(o.order_no),
                signal_id,
                device,
                retcode: o.retcode.unwrap_or(0),
                ticket: ack.position_id.or(ack.order_ticket),
                fill_price: ack.price,
                volume: ack.volume.unwrap_or(order.volume),
                at_ms: ack.time_ms.unwrap_or(now_ms),
            };
            tx.put_execution(account, &o.order_id, &e)?;
            tx.append_record(&self.identity, StreamId::SHARED, &Body::Execution(e), now_ms)?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // deals

    /// Deals since the cursor: deduplicated by ticket, reconciled, cursor moved; committed.
    pub fn deals(&self, d: Deals, now_ms: i64) -> Result<DealsAnswer, NodeError> {
        let inner = self.lock();
        let account = self.session_account(&inner, &d.session_id)?;
        let cursor = self.store.write(|tx| {
            let mut cursor = tx.cursor(&account, "deals")?.unwrap_or(i64::MIN);
            let mut deals = d.deals.clone();
            deals.sort_by_key(|x| (x.time_ms, x.deal_ticket));
            for deal in &deals {
                if tx.has_deal(&account, deal.deal_ticket)? {
                    continue;
                }
                tx.put_deal(&account, deal.deal_ticket, deal)?;
                cursor = cursor.max(deal.time_ms);
                self.reconcile_deal(tx, &account, deal, now_ms)?;
            }
            tx.set_cursor(&account, "deals", cursor)?;
            Ok(cursor)
        })?;
        drop(inner);
        self.wake();
        Ok(DealsAnswer { ok: true, deals_from_ms: cursor })
    }

    fn is_ours(&self, magic: u64, comment: &str) -> bool {
        ea::is_tradecast_magic(magic, self.settings.ea_magic)
            || comment.starts_with(ea::COMMENT_PREFIX)
    }

    /// The order a magic/comment points to, if it is ours.
    fn order_of(
        &self,
        tx: &store::Tx<'_>,
        account: &str,
        magic: u64,
        comment: &str,
    ) -> Result<Option<OrderRow>, StoreError> {
        if let Some(id) = comment.strip_prefix(ea::COMMENT_PREFIX)
            && let Some(o) = tx.order::<OrderRow>(account, id)?
        {
            return Ok(Some(o));
        }
        if !ea::is_tradecast_magic(magic, self.settings.ea_magic) {
            return Ok(None);
        }
        let (_, no) = ea::split_magic(magic);
        let rows: Vec<OrderRow> = tx.orders(account)?;
        Ok(rows.into_iter().find(|o| o.order_no == no))
    }

    fn reconcile_deal(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        deal: &Deal,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let device = self.identity.device_id();
        if deal.kind == DealKind::Balance {
            // A deposit or withdrawal moves the peak with it, so it is not a drawdown.
            let mut acc: Option<AccountRow> = tx.get_json(store::ACCOUNTS, "accounts", account)?;
            if let Some(a) = acc.as_mut() {
                if let Some(p) = a.peak_equity {
                    a.peak_equity = p.checked_add(deal.profit).or(Some(p));
                }
                if let Some(d) = a.day_start_equity {
                    a.day_start_equity = d.checked_add(deal.profit).or(Some(d));
                }
                tx.put_json(store::ACCOUNTS, "accounts", account, a)?;
            }
            return Ok(());
        }
        match deal.entry {
            DealEntry::In => {
                if !self.is_ours(deal.magic, &deal.comment) {
                    return Ok(());
                }
                if let Some(mut o) = self.order_of(tx, account, deal.magic, &deal.comment)?
                    && matches!(
                        o.state,
                        OrderState::Sent
                            | OrderState::Unknown
                            | OrderState::Due
                            | OrderState::Expired
                    )
                    && matches!(o.action, OrderAction::Open(_))
                {
                    // The fill is proven by the deal: settle the order by reconciliation.
                    o.state = OrderState::Acked;
                    o.settled_by = "reconciliation".into();
                    o.retcode = Some(o.retcode.unwrap_or(10009));
                    o.explained = "filled (found in the terminal's deals)".into();
                    o.ack = Some(AckFacts {
                        found_by_lookup: true,
                        order_ticket: Some(deal.order_ticket),
                        deal_ticket: Some(deal.deal_ticket),
                        position_id: Some(deal.position_id),
                        price: Some(deal.price),
                        volume: Some(deal.volume),
                        time_ms: Some(deal.time_ms),
                    });
                    tx.put_order(account, &o.order_id, &o)?;
                    self.record_fill(tx, account, &o, device, now_ms)?;
                    tracing::info!(target: "tradecast::orders", %account, order_id = %o.order_id, "settled by reconciliation");
                }
            }
            DealEntry::Out | DealEntry::OutBy | DealEntry::Inout => {
                let Some(mut p) = tx.position::<PositionRow>(account, deal.position_id)? else {
                    return Ok(());
                };
                let closed = deal.volume.min(p.volume);
                let fraction = if p.volume > Decimal::ZERO {
                    closed.checked_div(p.volume).unwrap_or(Decimal::ONE)
                } else {
                    Decimal::ONE
                };
                p.volume = (p.volume - closed).max(Decimal::ZERO);
                if p.volume.is_zero() {
                    p.open = false;
                }
                tx.put_position(account, p.position_id, &p)?;
                let tc = TradeClosed {
                    signal_id: p.signal_id,
                    device,
                    ticket: p.position_id,
                    symbol: p.symbol.clone(),
                    side: domain_side(p.side),
                    volume: closed,
                    open_price: p.open_price,
                    close_price: deal.price,
                    opened_at_ms: p.open_time_ms,
                    closed_at_ms: deal.time_ms,
                    profit: deal.profit,
                    commission: deal.commission,
                    swap: deal.swap,
                };
                tx.append_record(
                    &self.identity,
                    StreamId::PRIVATE,
                    &Body::TradeClosed(tc),
                    now_ms,
                )?;
                tracing::info!(target: "tradecast::reconcile", %account, position_id = p.position_id,
                    reason = ?deal.reason, volume = %closed, "position closed");
                if p.own_signal
                    && let Some(signal_id) = p.signal_id
                {
                    let c = tradecast_protocol::Close {
                        signal_id,
                        fraction,
                        price: Some(deal.price),
                        reason: format!("{:?}", deal.reason).to_lowercase(),
                        at_ms: deal.time_ms,
                    };
                    tx.append_record(&self.identity, StreamId::SIGNALS, &Body::Close(c), now_ms)?;
                }
            }
            DealEntry::None => {}
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // state

    /// The account and its book: reconciliation, equity points, the drawdown guard.
    pub fn state(&self, s: State, now_ms: i64) -> Result<StateAnswer, NodeError> {
        let inner = self.lock();
        let account = self.session_account(&inner, &s.session_id)?;
        let device = self.identity.device_id();
        let mut breached = None;
        let out_of_line = self.store.write(|tx| {
            let mut acc: AccountRow =
                tx.get_json(store::ACCOUNTS, "accounts", &account)?.ok_or(StoreError::Row {
                    table: "accounts",
                    message: format!("no account {account}"),
                })?;
            acc.market_ms = acc.market_ms.max(s.terminal_time_ms);
            let market = acc.market_ms;
            merge_tick_values(&mut acc, &s, market);
            acc.pending_orders =
                s.pending.iter().filter(|o| self.is_ours(o.magic, &o.comment)).cloned().collect();
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            for p in &s.positions {
                if !self.is_ours(p.magic, &p.comment) {
                    out.push(ea::OutOfLine {
                        position_id: Some(p.position_id),
                        order_ticket: None,
                        reason: "not opened by Tradecast: left alone".into(),
                    });
                    continue;
                }
                seen.insert(p.position_id);
                let known: Option<PositionRow> = tx.position(&account, p.position_id)?;
                let mut row = match known {
                    Some(r) => r,
                    None => {
                        // A Tradecast position the node has no ack for: settle its order.
                        let order = self.order_of(tx, &account, p.magic, &p.comment)?;
                        // A fill proves the order ran, even one settled as expired.
                        if let Some(mut o) = order.clone()
                            && (!o.state.is_final() || o.state == OrderState::Expired)
                        {
                            o.state = OrderState::Acked;
                            o.settled_by = "reconciliation".into();
                            o.explained = "filled (found among the terminal's positions)".into();
                            o.ack = Some(AckFacts {
                                found_by_lookup: true,
                                order_ticket: None,
                                deal_ticket: None,
                                position_id: Some(p.position_id),
                                price: Some(p.open_price),
                                volume: Some(p.volume),
                                time_ms: Some(p.open_time_ms),
                            });
                            tx.put_order(&account, &o.order_id, &o)?;
                            self.record_fill(tx, &account, &o, device, now_ms)?;
                        }
                        let existing: Option<PositionRow> = tx.position(&account, p.position_id)?;
                        existing.unwrap_or(PositionRow {
                            position_id: p.position_id,
                            order_id: order.as_ref().map(|o| o.order_id.clone()),
                            signal_id: order.as_ref().and_then(|o| o.signal_id),
                            symbol: p.symbol.clone(),
                            side: p.side,
                            volume: p.volume,
                            volume_opened: p.volume,
                            open_price: p.open_price,
                            open_time_ms: p.open_time_ms,
                            sl: p.sl,
                            tp: p.tp,
                            profit: p.profit,
                            open: true,
                            own_signal: false,
                        })
                    }
                };
                if row.own_signal
                    && (row.sl != p.sl || row.tp != p.tp)
                    && let Some(signal_id) = row.signal_id
                {
                    let m = tradecast_protocol::Modify {
                        signal_id,
                        stop: p.sl,
                        tp1: p.tp,
                        tp2: None,
                        reason: "the provider changed its position".into(),
                        at_ms: market,
                    };
                    tx.append_record(&self.identity, StreamId::SIGNALS, &Body::Modify(m), now_ms)?;
                }
                row.volume = p.volume;
                row.sl = p.sl;
                row.tp = p.tp;
                row.profit = p.profit;
                row.open = true;
                tx.put_position(&account, p.position_id, &row)?;
            }
            for p in tx.positions::<PositionRow>(&account)? {
                if p.open && !seen.contains(&p.position_id) {
                    // Gone from the terminal: its closing deal comes with the deals push; the
                    // TradeClosed record is written from that deal.
                    out.push(ea::OutOfLine {
                        position_id: Some(p.position_id),
                        order_ticket: None,
                        reason: "closed in the terminal: waiting for its deal".into(),
                    });
                }
            }
            // Orders that reached the EA, expired, and left no trace well after their expiry:
            // never executed.
            let with_magic: HashSet<u32> = s
                .positions
                .iter()
                .filter(|p| ea::is_tradecast_magic(p.magic, self.settings.ea_magic))
                .map(|p| ea::split_magic(p.magic).1)
                .collect();
            for mut o in tx.orders::<OrderRow>(&account)? {
                let stale = matches!(o.state, OrderState::Sent | OrderState::Unknown)
                    && o.expires_at_ms
                        .is_some_and(|e| market > e.saturating_add(STALE_AFTER_EXPIRY_MS))
                    && matches!(o.action, OrderAction::Open(_))
                    && !with_magic.contains(&o.order_no);
                if !stale {
                    continue;
                }
                let filled = tx.deals::<Deal>(&account)?.iter().any(|d| {
                    d.entry == DealEntry::In
                        && (d.comment == ea::order_comment(&o.order_id)
                            || (ea::is_tradecast_magic(d.magic, self.settings.ea_magic)
                                && ea::split_magic(d.magic).1 == o.order_no))
                });
                if filled {
                    continue;
                }
                o.state = OrderState::Expired;
                o.settled_by = "reconciliation".into();
                o.explained =
                    "not executed: the signal expired and the terminal shows no fill".into();
                tx.put_order(&account, &o.order_id, &o)?;
            }
            // Snapshot on change.
            let mut snap: Vec<tradecast_protocol::Position> = Vec::new();
            for p in tx.positions::<PositionRow>(&account)? {
                if p.open && seen.contains(&p.position_id) {
                    snap.push(tradecast_protocol::Position {
                        ticket: p.position_id,
                        signal_id: p.signal_id,
                        symbol: p.symbol.clone(),
                        side: domain_side(p.side),
                        volume: p.volume,
                        open_price: p.open_price,
                        stop: p.sl,
                        tp: p.tp,
                        profit: Decimal::ZERO,
                        opened_at_ms: p.open_time_ms,
                    });
                }
            }
            let key = serde_json::to_string(&snap).unwrap_or_default();
            if key != acc.last_snapshot {
                acc.last_snapshot = key;
                let ps = PositionSnapshot {
                    device,
                    at_ms: market,
                    balance: s.balance,
                    equity: s.equity,
                    margin: s.margin,
                    positions: snap,
                };
                tx.append_record(
                    &self.identity,
                    StreamId::PRIVATE,
                    &Body::PositionSnapshot(ps),
                    now_ms,
                )?;
            }
            // Equity points (on the market clock: none before the terminal has one).
            let due = market > 0
                && match acc.last_point {
                    None => true,
                    Some((at, eq)) => {
                        market - at >= EQUITY_EVERY_MS
                            || (eq > Decimal::ZERO
                                && (s.equity - eq)
                                    .abs()
                                    .checked_div(eq)
                                    .is_some_and(|m| m >= EQUITY_MOVE))
                    }
                };
            if due {
                let ep =
                    EquityPoint { device, at_ms: market, balance: s.balance, equity: s.equity };
                tx.put_equity(&account, market, &ep)?;
                tx.append_record(
                    &self.identity,
                    StreamId::PRIVATE,
                    &Body::EquityPoint(ep),
                    now_ms,
                )?;
                acc.last_point = Some((market, s.equity));
            }
            acc.balance = Some(s.balance);
            acc.equity = Some(s.equity);
            acc.margin = Some(s.margin);
            acc.free_margin = Some(s.free_margin);
            // The drawdown guard.
            if !acc.locked {
                acc.peak_equity = Some(acc.peak_equity.map_or(s.equity, |p| p.max(s.equity)));
            }
            // The daily loss limit, on the broker's server day.
            let offset_ms = i64::from(acc.server_utc_offset_s) * 1_000;
            let day = market.saturating_add(offset_ms).div_euclid(86_400_000);
            if acc.day != day || acc.day_start_equity.is_none() {
                acc.day = day;
                acc.day_start_equity = Some(s.equity);
            }
            let mut trip = None;
            if let Some(floor) = self.floor(&acc)
                && s.equity < floor
            {
                trip = Some(format!(
                    "drawdown guard: equity {} fell below {} ({} % below the peak {})",
                    s.equity,
                    floor,
                    self.settings.drawdown_max_pct,
                    acc.peak_equity.unwrap_or_default()
                ));
            } else if let (Some(pct), Some(start)) =
                (self.settings.daily_loss_max_pct, acc.day_start_equity)
                && let Some(limit) = Decimal::ONE_HUNDRED
                    .checked_sub(pct)
                    .and_then(|k| start.checked_mul(k))
                    .and_then(|v| v.checked_div(Decimal::ONE_HUNDRED))
                && s.equity < limit
            {
                trip = Some(format!(
                    "daily loss limit: equity {} fell below {} ({} % below {} at the start of \
                     the broker's day)",
                    s.equity,
                    limit.round_dp(2),
                    pct,
                    start
                ));
            }
            if let Some(reason) = trip
                && !acc.locked
            {
                acc.locked = true;
                acc.lock_reason = reason;
                let order_id = new_order_id()
                    .map_err(|e| StoreError::Row { table: "orders", message: e.to_string() })?;
                tx.put_json(store::ACCOUNTS, "accounts", &account, &acc)?;
                self.queue_in(
                    tx,
                    &account,
                    &order_id,
                    |_, _| OrderAction::CloseAll { scope: CloseAllScope::Tradecast },
                    None,
                    None,
                )?;
                acc = tx.get_json(store::ACCOUNTS, "accounts", &account)?.unwrap_or(acc);
                let cmd = tradecast_protocol::Command::CloseAll {
                    symbol: None,
                    reason: acc.lock_reason.clone(),
                    at_ms: market,
                };
                tx.append_record(&self.identity, StreamId::COMMANDS, &Body::Command(cmd), now_ms)?;
                breached = Some(acc.lock_reason.clone());
            }
            tx.put_json(store::ACCOUNTS, "accounts", &account, &acc)?;
            self.expire_in(tx, &account, market, now_ms)?;
            Ok(out)
        })?;
        drop(inner);
        if let Some(reason) = breached {
            tracing::error!(target: "tradecast::guard", %account, %reason, "GUARD TRIPPED: closing everything Tradecast opened, auto mode locked");
            self.wake();
        }
        Ok(StateAnswer { ok: true, out_of_line })
    }

    // -----------------------------------------------------------------------------------------
    // bars

    /// Closed bars: deduplicated, cursors moved, gaps asked for, and in provider mode fed to
    /// the engine (its signals committed with the bars).
    pub fn bars(&self, b: Bars, now_ms: i64) -> Result<BarsAnswer, NodeError> {
        let mut inner = self.lock();
        let account = self.session_account(&inner, &b.session_id)?;
        let mut bars = b.bars.clone();
        bars.sort_by_key(|x| (x.symbol.clone(), x.timeframe, x.time_ms));
        let subs: Vec<(String, ea::Timeframe)> = self.settings.subscriptions.clone();
        let mut new_cmds = Vec::new();
        let mut fresh: BTreeMap<String, Vec<ea::LinkBar>> = BTreeMap::new();
        let cursors = self.store.write(|tx| {
            let symbols = tx
                .get_json::<AccountRow>(store::ACCOUNTS, "accounts", &account)?
                .map(|a| a.symbols)
                .unwrap_or_default();
            let mem = inner.accounts.entry(account.clone()).or_default();
            for bar in &bars {
                let Some(tf_ms) = bar.timeframe.seconds().map(|s| s * 1_000) else { continue };
                let series = series_name(&bar.symbol, bar.timeframe);
                if tx.has_bar(&account, &series, bar.time_ms)? {
                    continue;
                }
                let cname = format!("bars:{series}");
                let cursor = tx.cursor(&account, &cname)?;
                if let Some(c) = cursor
                    && bar.time_ms > c
                    && gap_in_session(&sessions_of(&symbols, &bar.symbol), c, bar.time_ms, tf_ms)
                    && mem.asked.insert((series.clone(), c))
                {
                    new_cmds.push(ea::Command::Backfill {
                        symbol: bar.symbol.clone(),
                        timeframe: bar.timeframe,
                        from_ms: c,
                        to_ms: bar.time_ms - tf_ms,
                    });
                }
                let row = BarRow { open: bar.open, high: bar.high, low: bar.low, close: bar.close };
                tx.put_bar(&account, &series, bar.time_ms, &row)?;
                let next = bar.time_ms.saturating_add(tf_ms);
                if cursor.is_none_or(|c| next > c) {
                    tx.set_cursor(&account, &cname, next)?;
                }
                fresh.entry(series).or_default().push(bar.clone());
            }
            for (series, list) in &fresh {
                for bar in list {
                    // The bar's close is the quote a signal made on it is evaluated against.
                    let tf_ms = bar.timeframe.seconds().unwrap_or(0) * 1_000;
                    let close_ms = bar.time_ms.saturating_add(tf_ms);
                    if let Some(spec) = symbols.iter().find(|s| s.symbol == bar.symbol)
                        && mem.quotes.get(&bar.symbol).is_none_or(|(t, _)| close_ms >= *t)
                    {
                        let q = policy::quote_from_bar(bar.close, bar.spread_points, spec.point);
                        mem.quotes.insert(bar.symbol.clone(), (close_ms, q));
                    }
                    if self.settings.provider {
                        self.feed_engine(tx, mem, &account, series, bar, now_ms)?;
                    }
                }
            }
            // The market clock moved: signals waiting past their expiry are recorded expired.
            let market = self.account_market_in(tx, &account, Some(&*mem))?;
            self.expire_in(tx, &account, market, now_ms)?;
            let mut out = Vec::new();
            for (symbol, tf) in &subs {
                let name = format!("bars:{}", series_name(symbol, *tf));
                if let Some(c) = tx.cursor(&account, &name)? {
                    out.push(ea::BarCursor { symbol: symbol.clone(), timeframe: *tf, from_ms: c });
                }
            }
            Ok(out)
        })?;
        if !new_cmds.is_empty() {
            inner.accounts.entry(account.clone()).or_default().commands.extend(new_cmds);
        }
        drop(inner);
        self.wake();
        Ok(BarsAnswer { ok: true, bars_from: cursors })
    }

    fn feed_engine(
        &self,
        tx: &mut store::Tx<'_>,
        mem: &mut AccountMem,
        account: &str,
        series: &str,
        bar: &ea::LinkBar,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let entry = match mem.engines.entry(series.to_owned()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                // After a restart the engine is rebuilt from the stored bars, silently: the
                // signals of those bars were committed with them.
                let mut engine = Engine::new(Params::default())
                    .map_err(|e| StoreError::Row { table: "bars", message: e.to_string() })?;
                let mut last = i64::MIN;
                for (time_ms, row) in tx.bars::<BarRow>(account, series)? {
                    if time_ms >= bar.time_ms {
                        break;
                    }
                    let _ = engine.try_push(&bar_f64(time_ms, &row));
                    last = time_ms;
                }
                v.insert((engine, last))
            }
        };
        if bar.time_ms <= entry.1 {
            return Ok(());
        }
        let row = BarRow { open: bar.open, high: bar.high, low: bar.low, close: bar.close };
        let b64 = bar_f64(bar.time_ms, &row);

        entry.1 = bar.time_ms;
        let Ok(Some(sig)) = entry.0.try_push(&b64) else { return Ok(()) };
        let tf_ms = bar.timeframe.seconds().unwrap_or(3_600) * 1_000;
        let expires = sig.time_unix_ms + 2 * tf_ms;
        let levels = match crate::orders::SignalLevels::from_signal(&sig, expires) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(target: "tradecast::strategy", error = %e, "signal without decimals skipped");
                return Ok(());
            }
        };
        let id_bytes = keys::random_bytes::<16>()
            .map_err(|e| StoreError::Row { table: "signals", message: e.to_string() })?;
        let signal = tradecast_protocol::Signal {
            id: SignalId(*id_bytes),
            provider: self.identity.device_id(),
            strategy_id: crate::strategy::STRATEGY_ID.to_owned(),
            strategy_version: 1,
            symbol: bar.symbol.clone(),
            timeframe: to_domain_tf(bar.timeframe),
            side: match sig.side {
                crate::strategy::Side::Buy => tradecast_protocol::Side::Buy,
                crate::strategy::Side::Sell => tradecast_protocol::Side::Sell,
            },
            entry_kind: EntryKind::Market,
            entry: levels.entry,
            stop: levels.stop,
            tp1: levels.tp1,
            tp2: Some(levels.tp2),
            bar_time_ms: sig.time_unix_ms,
            expires_at_ms: expires,
            leg: 1,
            indicators: vec![tradecast_protocol::IndicatorValue {
                name: "rsi".into(),
                value: crate::orders::decimal_8("rsi", sig.rsi).unwrap_or_default(),
            }],
            rr: crate::orders::decimal_8("rr", sig.rr).unwrap_or_default(),
        };
        tracing::info!(target: "tradecast::strategy", %account, series, bar_time_ms = sig.time_unix_ms, side = ?sig.side, "signal");
        self.publish_in(
            tx,
            account,
            signal,
            "strategy",
            self.settings.self_trade,
            None,
            Some(&*mem),
            now_ms,
        )?;
        Ok(())
    }

    /// Signs and appends a signal; when `execute`, the copy policy evaluates it on the account
    /// (the copy log records every step), its approval starts (auto mode decides at once, manual
    /// mode waits until the expiry) and an approved plan is queued. `volume` is the provider's
    /// lot (the multiplier lot mode scales it).
    #[allow(clippy::too_many_arguments)]
    fn publish_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        signal: tradecast_protocol::Signal,
        source: &str,
        execute: bool,
        volume: Option<Decimal>,
        mem: Option<&AccountMem>,
        now_ms: i64,
    ) -> Result<SignalRow, StoreError> {
        tx.append_record(&self.identity, StreamId::SIGNALS, &Body::Signal(signal.clone()), now_ms)?;
        self.take_in(tx, account, signal, source, execute, volume, mem, now_ms)
    }

    /// Stores a signal (made here or received) and, when `execute`, runs the policy on it for
    /// `account`: the copy log, the approval, and on approval the orders.
    #[allow(clippy::too_many_arguments)]
    fn take_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        signal: tradecast_protocol::Signal,
        source: &str,
        execute: bool,
        volume: Option<Decimal>,
        mem: Option<&AccountMem>,
        now_ms: i64,
    ) -> Result<SignalRow, StoreError> {
        let mut row = SignalRow {
            signal: signal.clone(),
            source: source.to_owned(),
            order_id: None,
            skipped: String::new(),
        };
        tx.put_json(store::SIGNALS, "signals", &signal.id.to_hex(), &row)?;
        if execute {
            let policy = self.policy_in(tx)?;
            match self.evaluate_in(tx, account, &signal, volume, &policy, mem)? {
                None => row.skipped = format!("skipped: no account {account}"),
                Some((evaluation, market)) => {
                    let pending = PendingApproval::start(
                        signal.id,
                        self.identity.device_id(),
                        signal.expires_at_ms,
                        &evaluation,
                        &policy.approval,
                        market,
                    );
                    let mut arow = ApprovalRow {
                        account: account.to_owned(),
                        provider_lots: volume,
                        pending,
                        line: evaluation.log_line(),
                    };
                    if let policy::Outcome::Skip(_) = &evaluation.outcome {
                        row.skipped = evaluation.log_line();
                    }
                    tracing::info!(target: "tradecast::policy", %account, signal_id = %signal.id.to_hex(), line = %arow.line, "copy log");
                    self.settle_in(tx, &mut arow, &evaluation, now_ms)?;
                    row =
                        tx.get_json(store::SIGNALS, "signals", &signal.id.to_hex())?.unwrap_or(row);
                    if let policy::Outcome::Skip(_) = &evaluation.outcome {
                        row.skipped = evaluation.log_line();
                    }
                }
            }
        }
        tx.put_json(store::SIGNALS, "signals", &signal.id.to_hex(), &row)?;
        Ok(row)
    }

    /// The policy in force: the one the trader saved, else the configured one.
    fn policy_in(&self, tx: &store::Tx<'_>) -> Result<PolicySettings, StoreError> {
        match tx.setting(POLICY_KEY)? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Row { table: "settings", message: e.to_string() }),
            None => Ok(self.settings.policy.clone()),
        }
    }

    /// Evaluates `signal` for `account` now (market clock) and writes the copy-log entry; `None`
    /// when the account is unknown.
    fn evaluate_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        signal: &tradecast_protocol::Signal,
        provider_lots: Option<Decimal>,
        settings: &PolicySettings,
        mem: Option<&AccountMem>,
    ) -> Result<Option<(policy::Evaluation, i64)>, StoreError> {
        let Some(acc) = tx.get_json::<AccountRow>(store::ACCOUNTS, "accounts", account)? else {
            return Ok(None);
        };
        let market = acc.market_ms.max(mem.map(|m| m.market_ms).unwrap_or(0));
        let mut open_symbols: Vec<String> = tx
            .positions::<PositionRow>(account)?
            .into_iter()
            .filter(|p| p.open)
            .map(|p| p.symbol)
            .collect();
        for o in tx.orders::<OrderRow>(account)? {
            if let OrderAction::Open(x) = &o.action
                && !o.state.is_final()
            {
                open_symbols.push(x.symbol.clone());
            }
        }
        open_symbols.extend(acc.pending_orders.iter().map(|o| o.symbol.clone()));
        let quotes: BTreeMap<String, crate::orders::Quote> = mem
            .map(|m| m.quotes.iter().map(|(k, (_, q))| (k.clone(), *q)).collect())
            .unwrap_or_default();
        let equity = acc.equity.unwrap_or_default();
        let tick_values: Vec<ea::TickValue> =
            acc.tick_values.values().map(|(_, tv)| tv.clone()).collect();
        let day_start = acc.day_start_equity.map(|e| policy::risk::DayStart {
            day_start_ms: policy::risk::server_day_start_ms(market, acc.server_utc_offset_s),
            equity: e,
        });
        let input = policy::EvaluationInput {
            signal,
            provider_lots,
            specs: &acc.symbols,
            tick_values: &tick_values,
            quotes: &quotes,
            balance: acc.balance.unwrap_or_default(),
            equity,
            peak_equity: acc.peak_equity.unwrap_or(equity),
            guard_locked: acc.locked,
            day_start,
            open_symbols: &open_symbols,
            now_ms: market,
            server_utc_offset_s: acc.server_utc_offset_s,
            calendar: &self.settings.calendar,
        };
        let evaluation = policy::evaluate(settings, &input);
        let entry = CopyLogEntry::new(signal, &evaluation, market);
        let key = format!("{:020}:{}", market.max(0), signal.id.to_hex());
        tx.put_json(store::COPY_LOG, "copy_log", &key, &entry)?;
        Ok(Some((evaluation, market)))
    }

    /// After an approval step: a new decision is signed into the outbox (shared stream); an
    /// approval queues the plan's orders. Stores the approval row.
    fn settle_in(
        &self,
        tx: &mut store::Tx<'_>,
        arow: &mut ApprovalRow,
        evaluation: &policy::Evaluation,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let hex = arow.pending.signal_id.to_hex();
        if let Some(a) = arow.pending.decided() {
            let a = a.clone();
            tx.append_record(&self.identity, StreamId::SHARED, &Body::Approval(a.clone()), now_ms)?;
            tracing::info!(target: "tradecast::policy", account = %arow.account, signal_id = %hex, decision = ?a.decision, reason = %a.reason, "approval");
            if a.decision == tradecast_protocol::Decision::Approved
                && let policy::Outcome::Accept(plan) = &evaluation.outcome
            {
                let mut first = None;
                for (i, leg) in plan.legs.iter().enumerate() {
                    let order_id = new_order_id()
                        .map_err(|e| StoreError::Row { table: "orders", message: e.to_string() })?;
                    let (signal_id, expires) = (plan.signal_id, plan.expires_at_ms);
                    let (plan, leg) = (plan.clone(), *leg);
                    let o = self.queue_in(
                        tx,
                        &arow.account,
                        &order_id,
                        move |id, no| OrderAction::Open(leg_order(&plan, leg, id, no)),
                        Some(signal_id),
                        Some(expires),
                    )?;
                    tracing::debug!(target: "tradecast::orders", leg = i, order_id = %o.order_id, "leg queued");
                    first.get_or_insert(o.order_id);
                }
                if let Some(mut srow) = tx.get_json::<SignalRow>(store::SIGNALS, "signals", &hex)? {
                    srow.order_id = first;
                    tx.put_json(store::SIGNALS, "signals", &hex, &srow)?;
                }
            }
        }
        tx.put_json(store::APPROVALS, "approvals", &hex, &*arow)?;
        Ok(())
    }

    /// Records `Expired` for every signal of `account` still waiting past its expiry (market
    /// clock), each signed into the outbox.
    fn expire_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        market: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let policy = self.policy_in(tx)?;
        let rows: Vec<ApprovalRow> = tx.all_json(store::APPROVALS, "approvals")?;
        for mut r in rows {
            if r.account != account || r.pending.decided().is_some() {
                continue;
            }
            if r.pending.expire(market, &policy.approval).is_some() {
                let none = policy::Evaluation {
                    outcome: policy::Outcome::Skip(policy::SkipReason::Expired {
                        expires_at_ms: r.pending.expires_at_ms,
                        now_ms: market,
                    }),
                    steps: Vec::new(),
                    auto_suspended: false,
                };
                self.settle_in(tx, &mut r, &none, now_ms)?;
            }
        }
        Ok(())
    }

    /// The trader's (or a relayed) decision on a waiting signal: re-evaluated under the policy
    /// now, signed, and on approval its orders queued. A refused decision is an error with the
    /// trader's words; an expiry found on the way is still recorded.
    pub fn decide(
        &self,
        signal_hex: &str,
        request: &DecisionRequest,
    ) -> Result<tradecast_protocol::Approval, NodeError> {
        let inner = self.lock();
        let now_ms = wall_ms();
        let result = self.store.write(|tx| {
            let Some(mut arow) =
                tx.get_json::<ApprovalRow>(store::APPROVALS, "approvals", signal_hex)?
            else {
                return Ok(Err(NodeError::UnknownSignal(signal_hex.to_owned())));
            };
            let Some(srow) = tx.get_json::<SignalRow>(store::SIGNALS, "signals", signal_hex)?
            else {
                return Ok(Err(NodeError::UnknownSignal(signal_hex.to_owned())));
            };
            let policy = self.policy_in(tx)?;
            let mem = inner.accounts.get(&arow.account);
            let was_waiting = arow.pending.decided().is_none();
            let evaluation = if was_waiting {
                self.evaluate_in(
                    tx,
                    &arow.account.clone(),
                    &srow.signal,
                    arow.provider_lots,
                    &policy,
                    mem,
                )?
            } else {
                None
            };
            let market = match &evaluation {
                Some((_, m)) => *m,
                None => self.account_market_in(tx, &arow.account, mem)?,
            };
            let outcome = evaluation.as_ref().map(|(e, _)| e.outcome.clone()).unwrap_or(
                policy::Outcome::Skip(policy::SkipReason::Settings(policy::SettingsError::Toml(
                    "no account".into(),
                ))),
            );
            let decided = arow.pending.decide(request, &outcome, &policy.approval, market).cloned();
            let newly = was_waiting && arow.pending.decided().is_some();
            if newly {
                let ev = evaluation.map(|(e, _)| e).unwrap_or(policy::Evaluation {
                    outcome,
                    steps: Vec::new(),
                    auto_suspended: false,
                });
                self.settle_in(tx, &mut arow, &ev, now_ms)?;
            }
            Ok(decided.map_err(NodeError::Decision))
        })?;
        drop(inner);
        self.wake();
        result
    }

    fn account_market_in(
        &self,
        tx: &store::Tx<'_>,
        account: &str,
        mem: Option<&AccountMem>,
    ) -> Result<i64, StoreError> {
        let acc = tx.get_json::<AccountRow>(store::ACCOUNTS, "accounts", account)?;
        Ok(acc.map(|a| a.market_ms).unwrap_or(0).max(mem.map(|m| m.market_ms).unwrap_or(0)))
    }

    /// The policy in force.
    pub fn policy(&self) -> Result<PolicySettings, NodeError> {
        let text = self.store.read()?.setting(POLICY_KEY)?;
        match text {
            Some(t) => serde_json::from_str(&t).map_err(|e| {
                NodeError::Store(StoreError::Row { table: "settings", message: e.to_string() })
            }),
            None => Ok(self.settings.policy.clone()),
        }
    }

    /// Saves the trader's policy (validated first); it applies to the next evaluation.
    pub fn set_policy(&self, settings: &PolicySettings) -> Result<(), NodeError> {
        settings.validate()?;
        let text = serde_json::to_string(settings)
            .map_err(|e| NodeError::Refused(format!("policy settings: {e}")))?;
        let _inner = self.lock();
        self.store.write(|tx| tx.set_setting(POLICY_KEY, &text))?;
        Ok(())
    }

    /// The copy log, oldest first.
    pub fn copy_log(&self) -> Result<Vec<CopyLogEntry>, NodeError> {
        Ok(self.store.read()?.all_json(store::COPY_LOG, "copy_log")?)
    }

    /// Every signal's approval.
    pub fn approvals(&self) -> Result<Vec<ApprovalRow>, NodeError> {
        Ok(self.store.read()?.all_json(store::APPROVALS, "approvals")?)
    }

    /// A signal handed in through the local API: signed by this node, and executed on the
    /// account when `execute`.
    pub fn submit_signal(
        &self,
        account: &str,
        signal: tradecast_protocol::Signal,
        execute: bool,
        volume: Option<Decimal>,
    ) -> Result<SignalRow, NodeError> {
        let inner = self.lock();
        let mem = inner.accounts.get(account);
        let row = self.store.write(|tx| {
            self.publish_in(tx, account, signal, "api", execute, volume, mem, wall_ms())
        })?;
        drop(inner);
        self.wake();
        Ok(row)
    }

    // -----------------------------------------------------------------------------------------
    // Reading.

    /// An account row.
    pub fn account(&self, account: &str) -> Result<Option<AccountRow>, NodeError> {
        Ok(self.store.read()?.get_json(store::ACCOUNTS, "accounts", account)?)
    }

    /// The market clock of an account: the latest terminal time the EA reported.
    pub fn market_ms(&self, account: &str) -> Result<i64, NodeError> {
        let mem = self.lock().accounts.get(account).map(|m| m.market_ms).unwrap_or(0);
        Ok(self.account(account)?.map(|a| a.market_ms).unwrap_or(0).max(mem))
    }

    /// Every account.
    pub fn accounts(&self) -> Result<Vec<AccountRow>, NodeError> {
        Ok(self.store.read()?.all_json(store::ACCOUNTS, "accounts")?)
    }

    /// The only account, or the one named (the API's default).
    pub fn pick_account(&self, name: Option<&str>) -> Result<String, NodeError> {
        let all = self.accounts()?;
        match name {
            Some(n) if all.iter().any(|a| a.account == n) => Ok(n.to_owned()),
            Some(n) => Err(NodeError::Refused(format!("no account {n}"))),
            None => all
                .first()
                .map(|a| a.account.clone())
                .ok_or_else(|| NodeError::Refused("no EA has said hello yet".into())),
        }
    }

    /// Orders of an account, by order number.
    pub fn orders(&self, account: &str) -> Result<Vec<OrderRow>, NodeError> {
        let mut v: Vec<OrderRow> = self.store.read()?.orders(account)?;
        v.sort_by_key(|o| o.order_no);
        Ok(v)
    }

    /// Positions of an account.
    pub fn positions(&self, account: &str) -> Result<Vec<PositionRow>, NodeError> {
        Ok(self.store.read()?.positions(account)?)
    }

    /// Deals of an account.
    pub fn deal_list(&self, account: &str) -> Result<Vec<Deal>, NodeError> {
        Ok(self.store.read()?.deals(account)?)
    }

    /// Equity points of an account.
    pub fn equity(&self, account: &str) -> Result<Vec<EquityPoint>, NodeError> {
        Ok(self.store.read()?.equity(account)?)
    }

    /// Every signal.
    pub fn signals(&self) -> Result<Vec<SignalRow>, NodeError> {
        let mut v: Vec<SignalRow> = self.store.read()?.all_json(store::SIGNALS, "signals")?;
        v.sort_by_key(|s| s.signal.bar_time_ms);
        Ok(v)
    }

    /// Whether the EA link is up: an authenticated call within the silence limit.
    pub fn link_up(&self, now_ms: i64) -> bool {
        self.lock().last_seen_ms.is_some_and(|t| now_ms - t < self.settings.link_down_after_ms)
    }

    /// The status.
    pub fn status(&self, now_ms: i64) -> Result<Status, NodeError> {
        let last = self.lock().last_seen_ms;
        let view = self.store.read()?;
        let mut accounts = Vec::new();
        for a in view.all_json::<AccountRow>(store::ACCOUNTS, "accounts")? {
            let pos: Vec<PositionRow> = view.positions(&a.account)?;
            let ord: Vec<OrderRow> = view.orders(&a.account)?;
            accounts.push(AccountStatus {
                account: a.account.clone(),
                balance: a.balance,
                equity: a.equity,
                peak_equity: a.peak_equity,
                equity_floor: self.floor(&a),
                locked: a.locked,
                lock_reason: a.lock_reason.clone(),
                n_open_positions: pos.iter().filter(|p| p.open).count(),
                n_open_orders: ord.iter().filter(|o| !o.state.is_final()).count(),
            });
        }
        // An outbox stream holds seq 1..=tip and is never pruned: its tip is its length, read
        // without decoding every record (status is polled).
        let (mut streams, mut outbox_len) = (Vec::new(), 0);
        for stream in [
            StreamId::SIGNALS,
            StreamId::SHARED,
            StreamId::PRIVATE,
            StreamId::DEVICE,
            StreamId::COMMANDS,
        ] {
            let tip = view.outbox_tip(stream)?;
            if stream != StreamId::DEVICE {
                outbox_len += tip;
            }
            if tip > 0 {
                let (receipts, receipted_to) = view.receipts_held(stream)?;
                streams.push(StreamStatus { stream: stream.0, tip, receipts, receipted_to });
            }
        }
        let sync = SyncStatus {
            identity_key: hex::encode(self.identity.identity_key().to_bytes()),
            hub_connected: self.hub_connected(),
            inbox_watermark: view.inbox_watermark()?,
            streams,
        };
        Ok(Status {
            device_id: self.identity.device_id().to_text(),
            mode: if self.settings.provider { "provider" } else { "subscriber" }.into(),
            self_trade: self.settings.self_trade,
            started_at_ms: self.start_ms,
            ea_last_seen_ms: last,
            link_up: last.is_some_and(|t| now_ms - t < self.settings.link_down_after_ms),
            accounts,
            outbox_len,
            sync,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The downstream feed (issue 9): records relayed by the hub, committed with what they cause.

/// What one committed feed item did (for the sync driver's log and the demo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedOutcome {
    /// An author's key was pinned (trusted, or waiting for the trader).
    Pinned { device: DeviceId, trusted: bool },
    /// A provider's signal was taken in: the copy-log line says what the policy decided.
    Signal { signal_id: SignalId, line: String },
    /// A provider's modification or close was applied to the copies (one line per copy).
    Followed { signal_id: SignalId, lines: Vec<String> },
    /// The hub's receipt for one of this node's records, verified and kept.
    Receipt { stream: StreamId, seq: u64 },
    /// Kept in the feed only, and why.
    Ignored(String),
}

impl Node {
    /// Commits feed item `seq` (the hub's relay of `record`, verified by the session against
    /// the author's pinned key) together with everything it causes, in one durable write: a
    /// `DeviceKeys` pins its author; a `Signal` runs the policy (copy log, approval, orders); a
    /// `Modify` or `Close` is applied to this node's copies of that signal. Only after this
    /// returns does the sync driver acknowledge `seq` to the hub, so a crash at any point either
    /// redoes the whole item after the hub resends it or finds it done (seq at or below the
    /// watermark is a duplicate the session drops).
    pub fn receive_feed(
        &self,
        seq: u64,
        record: &tradecast_protocol::Record,
    ) -> Result<FeedOutcome, NodeError> {
        let inner = self.lock();
        let account = inner.accounts.keys().min().cloned();
        let stored_account = match &account {
            Some(a) => Some(a.clone()),
            None => self.accounts()?.into_iter().map(|a| a.account).min(),
        };
        let mem = stored_account.as_ref().and_then(|a| inner.accounts.get(a));
        let now_ms = wall_ms();
        let outcome = self.store.write(|tx| {
            if seq <= tx.inbox_watermark()? {
                return Ok(FeedOutcome::Ignored(format!("feed item {seq} already committed")));
            }
            tx.put_feed(seq, record)?;
            self.feed_item_in(tx, seq, record, stored_account.as_deref(), mem, now_ms)
        })?;
        drop(inner);
        self.wake();
        Ok(outcome)
    }

    fn feed_item_in(
        &self,
        tx: &mut store::Tx<'_>,
        seq: u64,
        record: &tradecast_protocol::Record,
        account: Option<&str>,
        mem: Option<&AccountMem>,
        now_ms: i64,
    ) -> Result<FeedOutcome, StoreError> {
        let author = record.header().author;
        let body = match record.body() {
            Ok(b) => b,
            Err(e) => return Ok(FeedOutcome::Ignored(format!("body does not open: {e}"))),
        };
        if let Body::Receipt(receipt) = &body {
            // The hub's receipt for one of this node's records: kept when it is the pinned
            // hub's signature over exactly that record.
            let hub_key = crate::sync::pinned_hub_key(tx)?;
            let f = receipt.fields;
            let own = tx.outbox_record(f.stream, f.seq)?;
            let ok = hub_key.is_some_and(|k| receipt.verify(&k).is_ok())
                && f.author == self.identity.device_id()
                && own.as_ref().is_some_and(|r| receipt.covers(r));
            if ok {
                tx.put_receipt(receipt)?;
                return Ok(FeedOutcome::Receipt { stream: f.stream, seq: f.seq });
            }
            tracing::error!(target: "tradecast::feed", stream = f.stream.0, seq = f.seq,
                "ALARM: a receipt that does not match this node's record (or the pinned hub)");
            return Ok(FeedOutcome::Ignored(format!(
                "receipt for stream {} seq {} does not match the record this node signed",
                f.stream.0, f.seq
            )));
        }
        if let Body::DeviceKeys(keys) = &body {
            if tx.author(&author)?.is_some() {
                return Ok(FeedOutcome::Ignored("author already pinned".into()));
            }
            // The first provider key is trusted on first sight; another one later is an
            // alarm: its signals wait until the trader trusts it.
            let others = tx.authors()?;
            let trusted = others.is_empty();
            tx.put_author(&store::PinnedAuthor {
                key: keys.identity,
                label: keys.label.clone(),
                pinned_at_seq: seq,
                pinned_at_ms: now_ms,
                trusted,
            })?;
            if trusted {
                tracing::info!(target: "tradecast::feed", author = %author.fmt_short(), label = %keys.label, "provider key pinned");
            } else {
                tracing::warn!(target: "tradecast::feed", author = %author.fmt_short(), label = %keys.label,
                    "ALARM: a new provider key; its signals are skipped until you trust it (tradecast-node providers --trust ID)");
            }
            return Ok(FeedOutcome::Pinned { device: author, trusted });
        }
        let trusted = tx.author(&author)?.is_some_and(|a| a.trusted);
        match body {
            Body::Signal(signal) => {
                let signal_id = signal.id;
                let hex = signal_id.to_hex();
                if tx.get_json::<SignalRow>(store::SIGNALS, "signals", &hex)?.is_some() {
                    return Ok(FeedOutcome::Ignored(format!("signal {hex} already taken in")));
                }
                let skip = if !trusted {
                    Some(format!(
                        "skipped: signal signed by a provider key you have not trusted ({})",
                        author.fmt_short()
                    ))
                } else if signal.provider != author {
                    Some("skipped: the signal names another provider than its signer".to_string())
                } else if account.is_none() {
                    Some("skipped: no MT5 account has connected to this node yet".to_string())
                } else {
                    None
                };
                let row = match (skip, account) {
                    (None, Some(account)) => {
                        self.take_in(tx, account, signal, "hub", true, None, mem, now_ms)?
                    }
                    (why, _) => {
                        let row = SignalRow {
                            signal,
                            source: "hub".into(),
                            order_id: None,
                            skipped: why.unwrap_or_default(),
                        };
                        tx.put_json(store::SIGNALS, "signals", &hex, &row)?;
                        row
                    }
                };
                let line = if row.skipped.is_empty() {
                    tx.get_json::<ApprovalRow>(store::APPROVALS, "approvals", &hex)?
                        .map(|a| a.line)
                        .unwrap_or_default()
                } else {
                    row.skipped.clone()
                };
                Ok(FeedOutcome::Signal { signal_id, line })
            }
            Body::Modify(m) if trusted => {
                let signal_id = m.signal_id;
                let lines = match account {
                    Some(a) => self.follow_in(tx, a, &Body::Modify(m), now_ms)?,
                    None => Vec::new(),
                };
                Ok(FeedOutcome::Followed { signal_id, lines })
            }
            Body::Close(c) if trusted => {
                let signal_id = c.signal_id;
                let lines = match account {
                    Some(a) => self.follow_in(tx, a, &Body::Close(c), now_ms)?,
                    None => Vec::new(),
                };
                Ok(FeedOutcome::Followed { signal_id, lines })
            }
            Body::Modify(_) | Body::Close(_) => {
                Ok(FeedOutcome::Ignored("a provider key you have not trusted".into()))
            }
            other => {
                Ok(FeedOutcome::Ignored(format!("nothing to do with a {:?} record", other.kind())))
            }
        }
    }

    /// Applies a provider's `Modify` or `Close` to this node's copies of its signal (positions
    /// opened from it and still open), queueing one order per copy; orders of the signal not
    /// yet sent are withdrawn by a full close. Returns the copy-log lines.
    fn follow_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        body: &Body,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let (signal_id, what) = match body {
            Body::Modify(m) => (m.signal_id, "modification"),
            Body::Close(c) => (c.signal_id, "close"),
            _ => return Ok(Vec::new()),
        };
        let hex = signal_id.to_hex();
        let Some(srow) = tx.get_json::<SignalRow>(store::SIGNALS, "signals", &hex)? else {
            return Ok(vec![format!("provider {what} of an unknown signal {hex}: nothing to do")]);
        };
        let policy = self.policy_in(tx)?;
        let specs = tx
            .get_json::<AccountRow>(store::ACCOUNTS, "accounts", account)?
            .map(|a| a.symbols)
            .unwrap_or_default();
        // Legs in the order they were queued: the first carries tp1, a second tp2.
        let mut legs: Vec<OrderRow> = tx
            .orders::<OrderRow>(account)?
            .into_iter()
            .filter(|o| o.signal_id == Some(signal_id) && matches!(o.action, OrderAction::Open(_)))
            .collect();
        legs.sort_by_key(|o| o.order_no);
        let mut lines = Vec::new();
        let full_close = matches!(body, Body::Close(c) if c.fraction >= Decimal::ONE);
        if full_close {
            for o in &legs {
                if o.state == OrderState::Due {
                    let mut o = o.clone();
                    o.state = OrderState::Expired;
                    o.explained = "withdrawn: the provider closed before it was sent".into();
                    tx.put_order(account, &o.order_id.clone(), &o)?;
                    lines.push(format!(
                        "withdrawn: order {} (the provider closed first)",
                        o.order_id
                    ));
                }
            }
        }
        let copies: Vec<PositionRow> = tx
            .positions::<PositionRow>(account)?
            .into_iter()
            .filter(|p| p.open && p.signal_id == Some(signal_id) && !p.own_signal)
            .collect();
        if copies.is_empty() && lines.is_empty() {
            lines.push(format!("provider {what} of {}: no open copy here", srow.signal.symbol));
        }
        for pos in copies {
            let Some(spec) = specs.iter().find(|s| s.symbol == pos.symbol) else {
                lines.push(format!("not applied: no symbol spec for {}", pos.symbol));
                continue;
            };
            let side = match pos.side {
                ea::Side::Buy => crate::strategy::Side::Buy,
                ea::Side::Sell => crate::strategy::Side::Sell,
            };
            let provider_buy = srow.signal.side == tradecast_protocol::Side::Buy;
            let reversed = (side == crate::strategy::Side::Buy) != provider_buy;
            let leg_index = legs.iter().position(|o| Some(&o.order_id) == pos.order_id.as_ref());
            let target = if leg_index == Some(1) {
                policy::follow::Target::Tp2
            } else {
                policy::follow::Target::Tp1
            };
            let copy = policy::follow::CopiedPosition {
                side,
                reversed,
                target,
                volume: pos.volume,
                sl: pos.sl,
                tp: pos.tp,
            };
            let rules = policy::follow::VolumeRules {
                tick_size: spec.tick_size,
                volume_min: spec.volume_min,
                volume_step: spec.volume_step,
            };
            let action = match body {
                Body::Modify(m) => policy::follow::follow_modify(&policy, m, &copy, &rules),
                Body::Close(c) => policy::follow::follow_close(&policy, c, &copy, &rules),
                _ => continue,
            };
            let order_id = new_order_id().map_err(|e| StoreError::Random(e.to_string()))?;
            let (position_id, symbol) = (pos.position_id, pos.symbol.clone());
            let line = match action {
                policy::follow::FollowAction::Modify { sl, tp } => {
                    self.queue_in(
                        tx,
                        account,
                        &order_id,
                        move |_, _| OrderAction::Modify { position_id, sl, tp },
                        Some(signal_id),
                        None,
                    )?;
                    format!(
                        "followed: provider {what} → {symbol} #{position_id} sl {} tp {}",
                        sl.map_or("none".into(), |v| v.to_string()),
                        tp.map_or("none".into(), |v| v.to_string())
                    )
                }
                policy::follow::FollowAction::Close { volume } => {
                    let v = volume;
                    self.queue_in(
                        tx,
                        account,
                        &order_id,
                        move |_, _| OrderAction::Close {
                            position_id,
                            symbol: symbol.clone(),
                            volume: v,
                        },
                        Some(signal_id),
                        None,
                    )?;
                    match volume {
                        None => format!(
                            "followed: provider closed → closing {} #{position_id} ({} lots)",
                            pos.symbol, pos.volume
                        ),
                        Some(v) => format!(
                            "followed: provider closed part → closing {v} of {} lots of {} #{position_id}",
                            pos.volume, pos.symbol
                        ),
                    }
                }
                policy::follow::FollowAction::Ignore { reason } => reason,
            };
            tracing::info!(target: "tradecast::policy", %account, signal_id = %hex, line = %line, "copy log");
            lines.push(line);
        }
        for line in &lines {
            let entry = CopyLogEntry {
                at_ms: now_ms,
                signal_id,
                canonical_symbol: srow.signal.symbol.clone(),
                accepted: line.starts_with("followed") || line.starts_with("withdrawn"),
                failed_rule: None,
                line: line.clone(),
                steps: Vec::new(),
            };
            let market = self.account_market_in(tx, account, None)?;
            let key = format!(
                "{:020}:{}:{}",
                market.max(0),
                hex,
                lines.iter().position(|l| l == line).unwrap_or(0)
            );
            tx.put_json(store::COPY_LOG, "copy_log", &key, &entry)?;
        }
        Ok(lines)
    }

    /// Pinned feed authors (provider keys) and whether each is trusted.
    pub fn authors(&self) -> Result<Vec<store::PinnedAuthor>, NodeError> {
        Ok(self.store.read()?.authors()?)
    }

    /// Trusts a pinned provider key (after the trader checked it with the provider): its
    /// signals from now on are taken in. Those skipped before stay skipped.
    pub fn trust_author(&self, device: &DeviceId) -> Result<store::PinnedAuthor, NodeError> {
        let _inner = self.lock();
        let pinned = self.store.write(|tx| {
            let Some(mut a) = tx.author(device)? else { return Ok(None) };
            a.trusted = true;
            tx.put_author(&a)?;
            Ok(Some(a))
        })?;
        pinned
            .ok_or_else(|| NodeError::UnknownSignal(format!("no pinned key {}", device.to_text())))
    }
}

/// Clears a session's poll-in-flight flag when the poll ends (answered, failed or dropped).
struct InFlight<'a> {
    node: &'a Node,
    session_id: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.node.poll_done(self.session_id);
    }
}

/// Initializes a data dir's store: a fresh identity from the OS CSPRNG. Returns the device id.
pub fn init_store(store: &Store) -> Result<DeviceId, NodeError> {
    let identity = keys::new_identity()?;
    let id = identity.device_id();
    store.write(|tx| tx.put_identity(&identity))?;
    Ok(id)
}
