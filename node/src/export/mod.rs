//! The trader's own trade history, exported for the trackers and journals they already use
//! (issue 18): the account's deals paired into closed trades ([`mod@pair`]), each with the balance
//! before its close where the node can tell it ([`gain`]), written as the Myfxbook CSV that
//! journals import ([`myfxbook`]) or as Tradecast's JSON ([`json`]). [`file`] reads one
//! account from the node's store and answers the UI's and the local API's routes with the same
//! file.
//!
//! Everything here but [`file`] is pure: deals, positions, specs and equity points in, rows
//! and text out; no store, no clock. Nothing here panics on stored data: a deal the pairing
//! cannot place, or whose figures overflow, is left out and counted ([`Book::n_left_out`]).
//!
//! What a shared file must not carry: the account's login, the broker's account number, EA key
//! ids, names. The [`Account`] handed to the writers holds only the currency, the server's name
//! and its UTC offset, so the writers cannot leak what they never see.

pub mod file;
pub mod gain;
pub mod json;
pub mod myfxbook;
pub mod pair;
#[cfg(test)]
mod tests;

use rust_decimal::Decimal;
use tradecast_protocol::{Side, SignalId};

pub use file::{DateRange, Download, ExportError, ExportQuery, Format, QueryError, download};
pub use pair::pair;

/// What the export says about the account: nothing that identifies the trader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account currency (`USD`); empty when the EA never said it.
    pub currency: String,
    /// The broker's trade server (`ICMarkets-Demo`), if known.
    pub server: Option<String>,
    /// The broker server's offset from UTC at the EA's last hello, seconds: the CSV's dates are
    /// written in server time, as MT5 shows them.
    pub server_utc_offset_s: i32,
}

/// What the node remembers of a position it followed (a Tradecast position): its last SL/TP
/// and the signal it came from. Positions the node did not open have none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PositionFacts {
    /// The stop loss last seen while it was open.
    pub sl: Option<Decimal>,
    /// The take profit last seen while it was open.
    pub tp: Option<Decimal>,
    /// The signal it was opened from.
    pub signal_id: Option<SignalId>,
}

/// One closed trade: one exit deal (a partial close is a trade of its own, with its share of
/// the volume and of the entry's costs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedTrade {
    /// `DEAL_POSITION_ID`.
    pub position_id: u64,
    /// The broker's symbol, as MT5 names it.
    pub symbol: String,
    /// The position's side (its entry deal's), not the exit deal's.
    pub side: Side,
    /// The lots this exit closed.
    pub lots: Decimal,
    /// The entry's time, UTC ms (the first entry's, when the position was built in steps).
    pub open_time_ms: i64,
    /// The exit's time, UTC ms.
    pub close_time_ms: i64,
    /// The entry price (volume-weighted when the position was built in steps).
    pub open_price: Decimal,
    /// The exit deal's price.
    pub close_price: Decimal,
    /// The stop loss the node last saw on the position, if it followed it.
    pub sl: Option<Decimal>,
    /// The take profit the node last saw on the position, if it followed it.
    pub tp: Option<Decimal>,
    /// Commission: the exit deal's and this exit's share of the entry's (negative is a cost).
    pub commission: Decimal,
    /// Swap booked on the exit (and this exit's share of any booked on the entry).
    pub swap: Decimal,
    /// MT5's `DEAL_FEE`: the exit's and this exit's share of the entry's.
    pub fee: Decimal,
    /// The profit MT5 booked on the exit deal, before costs.
    pub profit: Decimal,
    /// The signal the position was opened from, if Tradecast opened it.
    pub signal_id: Option<SignalId>,
    /// The exit deal's ticket (orders trades that close in the same millisecond).
    pub close_deal: u64,
    /// The account's balance just before this exit, when the node can tell it ([`gain`]).
    pub balance_before: Option<Decimal>,
}

impl ClosedTrade {
    /// The trade's result after every cost: what it moved the balance by. `None` only when the
    /// sum overflows, which no real account reaches.
    pub fn net(&self) -> Option<Decimal> {
        self.profit.checked_add(self.commission)?.checked_add(self.swap)?.checked_add(self.fee)
    }
}

/// An account's closed trades, by close time, and how many exits could not be paired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    /// The closed trades, oldest close first.
    pub trades: Vec<ClosedTrade>,
    /// Exit deals left out: no entry in the node's history (the position was opened before the
    /// node's first look at the account's deals), or figures that do not add up (an exit larger
    /// than the position, an overflow).
    pub n_left_out: usize,
}
