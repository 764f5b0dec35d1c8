//! The node's rows in the store (JSON values in redb): accounts with the guard's memory,
//! orders and their states, followed positions, signals and approvals. Their serde shape is the
//! store's schema: a field added here needs `#[serde(default)]`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tradecast_protocol::SignalId;
use tradecast_protocol::ea::{self, CloseAllScope};

use crate::policy::approval::PendingApproval;
use crate::policy::risk::DayStart;

/// An account as the EA introduced it, and the guard's memory. Its symbol specs (the Market
/// Watch) are rows of their own (`symbol_specs`, schema 4: [`crate::store::Tx::symbol_spec`]),
/// not part of this row, which every EA push reads and rewrites.
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
    /// The start of the broker's server day and the equity then (the first state push of the
    /// day), rolled by the guard on every state push ([`DayStart::roll`]): the daily loss
    /// rules' base. Schema 1 stored it as `day` (days since the epoch in server time) and
    /// `day_start_equity`; the upgrade to schema 2 converts them.
    #[serde(default)]
    pub day_start: Option<DayStart>,
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
    /// The state's stable snake-case name (the same as its serde name in the store).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Due => "due",
            OrderState::Sent => "sent",
            OrderState::Acked => "acked",
            OrderState::Rejected => "rejected",
            OrderState::Unknown => "unknown",
            OrderState::Expired => "expired",
        }
    }

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
    /// Market clock: not offered before this (a close refused with 10018, or requoted).
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
    /// Requotes so far: an open is sent again up to [`super::REQUOTE_RETRIES`] times, a close
    /// (or close-all) every time, after [`super::close_requote_backoff_ms`].
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
    /// When the provider closed the signal in full (wall ms): an order of it still in flight
    /// then (sent, its end unknown) that fills later is closed at once.
    #[serde(default)]
    pub provider_closed_at_ms: Option<i64>,
}

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
