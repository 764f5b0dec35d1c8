//! The account history a trader may publish (record version 2): balance operations and daily
//! summaries, beside [`TradeClosed`](super::TradeClosed) and
//! [`EquityPoint`](super::EquityPoint). They go to the unsealed
//! [`StreamId::PUBLISHED`](crate::StreamId::PUBLISHED) only when the trader opted in; otherwise
//! they are sealed in [`StreamId::PRIVATE`](crate::StreamId::PRIVATE). No I/O.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::identity::DeviceId;

/// What kind of balance deal the EA reported (MT5 `DEAL_TYPE_BALANCE`, `_CREDIT`, `_BONUS`,
/// `_CORRECTION`; the sign of a balance deal tells a deposit from a withdrawal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceKind {
    Deposit,
    Withdrawal,
    Credit,
    Bonus,
    Correction,
}

impl BalanceKind {
    pub const ALL: [BalanceKind; 5] = [
        BalanceKind::Deposit,
        BalanceKind::Withdrawal,
        BalanceKind::Credit,
        BalanceKind::Bonus,
        BalanceKind::Correction,
    ];

    /// The stable wire/SQL text.
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceKind::Deposit => "deposit",
            BalanceKind::Withdrawal => "withdrawal",
            BalanceKind::Credit => "credit",
            BalanceKind::Bonus => "bonus",
            BalanceKind::Correction => "correction",
        }
    }
}

/// A deposit, withdrawal, credit, bonus or correction on the account: what makes an equity
/// curve's jumps explainable (a withdrawal is no loss).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceOperation {
    pub device: DeviceId,
    /// The MT5 deal ticket (unique per account; the idempotency key).
    pub deal: u64,
    pub kind: BalanceKind,
    /// Signed as MT5 reports it: a withdrawal is negative.
    pub amount: Decimal,
    /// The account's deposit currency (ISO 4217).
    pub currency: String,
    pub at_ms: i64,
    /// The broker's comment on the deal.
    pub comment: String,
}

/// The account at the end of one server day (or at `at_ms` during it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub device: DeviceId,
    /// The broker's server day, `YYYY-MM-DD`.
    pub day: String,
    pub at_ms: i64,
    pub balance: Decimal,
    pub equity: Decimal,
    pub open_positions: u32,
    /// Unrealised P&L of the open positions.
    pub floating_pnl: Decimal,
    /// Equity change since the day's start, deposits and withdrawals excluded.
    pub day_pnl: Decimal,
    /// The account's deposit currency (ISO 4217), when known.
    pub currency: Option<String>,
}
