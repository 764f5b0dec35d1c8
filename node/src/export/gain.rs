//! The account's balance just before each close, for the Myfxbook CSV's Gain column (the
//! trade's result as a percentage of it).
//!
//! The node knows the balance at each equity point (the `balance` of an EA state push, taken at
//! the terminal's clock) and every deal since its first look at the account. The balance before
//! a close is an anchor point's balance plus the effect of every deal between the anchor and the
//! close. An anchor counts only when no deal lies within [`SETTLE_MS`] of it either side: the
//! terminal's clock has whole seconds and the push is read a moment after, so a deal that close
//! to a point may or may not be in its balance. Credits, bonuses and unknown deal kinds between
//! the anchor and the close make the balance unknown (MT5 brokers book them differently), and
//! an unknown balance leaves the Gain empty: never a guess.

use rust_decimal::{Decimal, RoundingStrategy};
use tradecast_protocol::EquityPoint;
use tradecast_protocol::ea::{Deal, DealKind};

use super::ClosedTrade;

/// How far (ms) a deal must be from an equity point for the point's balance to tell whether it
/// includes the deal.
pub const SETTLE_MS: i64 = 2_000;

/// How many earlier points are tried when the latest before a close has a deal too close.
const ANCHOR_TRIES: usize = 64;

/// The balances the node can tell, from its equity points and the account's deals.
#[derive(Debug, Clone, Default)]
pub struct Balances {
    /// (time, balance), by time.
    points: Vec<(i64, Decimal)>,
    /// Every deal's (time, ticket), in that order.
    deals: Vec<(i64, u64)>,
    /// `sums[i]`: the summed balance effect of `deals[..i]`, `None` from an overflow on.
    sums: Vec<Option<Decimal>>,
    /// `unknown[i]`: how many of `deals[..i]` move the balance by an amount not known here.
    unknown: Vec<usize>,
}

/// What a deal does to the balance: profit and every cost, or `None` when the kind's effect is
/// not known (credit, bonus, other).
fn effect(d: &Deal) -> Option<Decimal> {
    match d.kind {
        DealKind::Buy
        | DealKind::Sell
        | DealKind::Balance
        | DealKind::Charge
        | DealKind::Correction
        | DealKind::Commission => {
            d.profit.checked_add(d.commission)?.checked_add(d.swap)?.checked_add(d.fee)
        }
        DealKind::Credit | DealKind::Bonus | DealKind::Other => None,
    }
}

impl Balances {
    /// The balances of an account with these equity points and deals (any order).
    pub fn new(points: &[EquityPoint], deals: &[Deal]) -> Balances {
        let mut pts: Vec<(i64, Decimal)> = points.iter().map(|p| (p.at_ms, p.balance)).collect();
        pts.sort_by_key(|p| p.0);
        let mut ds: Vec<&Deal> = deals.iter().collect();
        ds.sort_by_key(|d| (d.time_ms, d.deal_ticket));
        let mut b = Balances {
            points: pts,
            deals: ds.iter().map(|d| (d.time_ms, d.deal_ticket)).collect(),
            sums: vec![Some(Decimal::ZERO)],
            unknown: vec![0],
        };
        for d in ds {
            let (sum, unknown) = (b.sums.last().copied().flatten(), b.unknown.last().copied());
            let e = effect(d);
            b.sums.push(sum.and_then(|s| s.checked_add(e.unwrap_or_default())));
            b.unknown.push(unknown.unwrap_or(0) + usize::from(e.is_none()));
        }
        b
    }

    /// Whether a deal lies within [`SETTLE_MS`] of `at_ms`.
    fn deal_near(&self, at_ms: i64) -> bool {
        let lo = self.deals.partition_point(|d| d.0 < at_ms.saturating_sub(SETTLE_MS));
        let hi = self.deals.partition_point(|d| d.0 <= at_ms.saturating_add(SETTLE_MS));
        lo < hi
    }

    /// The balance just before the deal `(time_ms, ticket)`, if the node can tell it.
    pub fn before(&self, time_ms: i64, ticket: u64) -> Option<Decimal> {
        let end = self.deals.partition_point(|d| *d < (time_ms, ticket));
        let latest = self.points.partition_point(|p| p.0 <= time_ms.saturating_sub(SETTLE_MS));
        let (at_ms, balance) = self.points[..latest]
            .iter()
            .rev()
            .take(ANCHOR_TRIES)
            .find(|p| !self.deal_near(p.0))
            .copied()?;
        let start = self.deals.partition_point(|d| d.0 <= at_ms);
        if start > end || self.unknown.get(end)? != self.unknown.get(start)? {
            return None;
        }
        let moved = self.sums.get(end).copied()??.checked_sub(self.sums.get(start).copied()??)?;
        balance.checked_add(moved)
    }

    /// Sets each trade's [`ClosedTrade::balance_before`].
    pub fn fill(&self, trades: &mut [ClosedTrade]) {
        for t in trades {
            t.balance_before = self.before(t.close_time_ms, t.close_deal);
        }
    }
}

/// The trade's net result as a percentage of the balance before its close, to two decimals
/// (half away from zero); `None` without a positive balance before it.
pub fn gain_pct(t: &ClosedTrade) -> Option<Decimal> {
    let before = t.balance_before.filter(|b| *b > Decimal::ZERO)?;
    let pct = t.net()?.checked_mul(Decimal::ONE_HUNDRED)?.checked_div(before)?;
    Some(pct.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
}
