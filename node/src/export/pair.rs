//! Pairing deals into closed trades. Each position's deals (`DEAL_POSITION_ID`) are replayed
//! in time order: an entry opens (or adds to) the position, each exit deal closes part or all
//! of it and is one [`ClosedTrade`] with its share of the volume and of the entry's costs, and
//! a reversal (`Inout`, netting accounts) closes what was open and opens the rest of its volume
//! the other way. What is still open at the end is not a trade yet and is not listed.
//!
//! Entry costs are shared by volume: an exit of a third of the lots entered carries a third of
//! the entries' commission and fee, rounded to the cent (or to the entry figure's own decimals
//! when it has more); the exit that closes the rest carries what is left, so the rows of a
//! closed position add up to its deals exactly.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use tradecast_protocol::Side;
use tradecast_protocol::ea::{Deal, DealEntry, DealKind};

use super::{Book, ClosedTrade, PositionFacts};

/// Digits an averaged entry price carries beyond the entry deals' own (a position built in
/// steps: its open price is their volume-weighted mean, rarely a whole number of points).
const AVERAGE_EXTRA_DP: u32 = 3;

/// The money figures of a deal, or the part of an entry's not yet carried by an exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Costs {
    commission: Decimal,
    swap: Decimal,
    fee: Decimal,
    profit: Decimal,
}

impl Costs {
    fn of(d: &Deal) -> Costs {
        Costs { commission: d.commission, swap: d.swap, fee: d.fee, profit: d.profit }
    }

    fn zip(self, o: Costs, f: impl Fn(Decimal, Decimal) -> Option<Decimal>) -> Option<Costs> {
        Some(Costs {
            commission: f(self.commission, o.commission)?,
            swap: f(self.swap, o.swap)?,
            fee: f(self.fee, o.fee)?,
            profit: f(self.profit, o.profit)?,
        })
    }

    fn add(self, o: Costs) -> Option<Costs> {
        self.zip(o, |a, b| keep_dp(a, b, a.checked_add(b)?))
    }

    fn sub(self, o: Costs) -> Option<Costs> {
        self.zip(o, |a, b| keep_dp(a, b, a.checked_sub(b)?))
    }

    /// `part / whole` of each figure, rounded to the cent or the figure's own decimals.
    fn share(self, part: Decimal, whole: Decimal) -> Option<Costs> {
        let one = |v: Decimal| {
            let dp = v.scale().max(2);
            Some(
                v.checked_mul(part)?
                    .checked_div(whole)?
                    .round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero),
            )
        };
        Some(Costs {
            commission: one(self.commission)?,
            swap: one(self.swap)?,
            fee: one(self.fee)?,
            profit: one(self.profit)?,
        })
    }

    /// The costs without swap and profit: what a reversal's new leg takes of its deal (the
    /// swap and the profit belong to the volume it closed).
    fn entry_part(self) -> Costs {
        Costs { swap: Decimal::ZERO, profit: Decimal::ZERO, ..self }
    }
}

/// The open part of a position while its deals are replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leg {
    side: Side,
    /// Lots open now.
    volume: Decimal,
    open_price: Decimal,
    open_time_ms: i64,
    /// Lots entered (the shares of the entry costs are of this).
    volume_in: Decimal,
    /// The entries' costs.
    costs_in: Costs,
    /// What of `costs_in` earlier exits carried.
    carried: Costs,
}

impl Leg {
    fn open(side: Side, d: &Deal, volume: Decimal, costs: Costs) -> Leg {
        Leg {
            side,
            volume,
            open_price: d.price,
            open_time_ms: d.time_ms,
            volume_in: volume,
            costs_in: costs,
            carried: Costs::default(),
        }
    }

    /// Another entry on the same side: the volume-weighted open price, the costs summed.
    fn add(self, d: &Deal) -> Option<Leg> {
        let volume = self.volume.checked_add(d.volume)?;
        let basis = self
            .open_price
            .checked_mul(self.volume)?
            .checked_add(d.price.checked_mul(d.volume)?)?;
        let min_dp = self.open_price.scale().max(d.price.scale());
        let mean = basis.checked_div(volume)?.round_dp_with_strategy(
            min_dp + AVERAGE_EXTRA_DP,
            RoundingStrategy::MidpointAwayFromZero,
        );
        Some(Leg {
            volume,
            open_price: at_least_dp(mean, min_dp),
            volume_in: self.volume_in.checked_add(d.volume)?,
            costs_in: self.costs_in.add(Costs::of(d))?,
            ..self
        })
    }

    /// Closes `lots` (at most what is open) at `exit`, which carries `exit_costs`: the trade,
    /// and what stays open (`None` once nothing does).
    fn close(
        self,
        exit: &Deal,
        lots: Decimal,
        exit_costs: Costs,
        facts: PositionFacts,
    ) -> Option<(ClosedTrade, Option<Leg>)> {
        let carried = if lots >= self.volume {
            self.costs_in.sub(self.carried)?
        } else {
            self.costs_in.share(lots, self.volume_in)?
        };
        let c = exit_costs.add(carried)?;
        let trade = ClosedTrade {
            position_id: exit.position_id,
            symbol: exit.symbol.clone(),
            side: self.side,
            lots,
            open_time_ms: self.open_time_ms,
            close_time_ms: exit.time_ms,
            open_price: self.open_price,
            close_price: exit.price,
            sl: facts.sl,
            tp: facts.tp,
            commission: c.commission,
            swap: c.swap,
            fee: c.fee,
            profit: c.profit,
            signal_id: facts.signal_id,
            close_deal: exit.deal_ticket,
            balance_before: None,
        };
        let volume = self.volume.checked_sub(lots)?;
        let rest = if volume > Decimal::ZERO {
            Some(Leg { volume, carried: self.carried.add(carried)?, ..self })
        } else {
            None
        };
        Some((trade, rest))
    }
}

/// `sum` of `a` and `b` written with as many decimals as the longer of them (`0.00 + 0.00` is
/// `0.00`, as MT5 wrote it, not `0`).
fn keep_dp(a: Decimal, b: Decimal, sum: Decimal) -> Option<Decimal> {
    let dp = a.scale().max(b.scale());
    let mut v = sum;
    if v.scale() < dp {
        v.rescale(dp);
    }
    Some(v)
}

/// `v` with at least `dp` decimals and no trailing zeros beyond them.
fn at_least_dp(v: Decimal, dp: u32) -> Decimal {
    let mut n = v.normalize();
    if n.scale() < dp {
        n.rescale(dp);
    }
    n
}

fn side_of(kind: DealKind) -> Option<Side> {
    match kind {
        DealKind::Buy => Some(Side::Buy),
        DealKind::Sell => Some(Side::Sell),
        _ => None,
    }
}

/// What one deal did to a position's replay.
enum Step {
    /// It opened, added to or closed (part of) the position, or was no trade.
    Applied,
    /// An exit that cannot be placed (no entry, larger than the position): counted, and the
    /// position's state is unknown from here on.
    Lost,
}

/// Applies one deal to the position's open `leg`, the trade it closes going to `trades`;
/// `None` when a figure overflows.
fn step(
    leg: &mut Option<Leg>,
    d: &Deal,
    facts: PositionFacts,
    trades: &mut Vec<ClosedTrade>,
) -> Option<Step> {
    let Some(side) = side_of(d.kind) else { return Some(Step::Applied) };
    let costs = Costs::of(d);
    let (next, trade) = match (d.entry, leg.take()) {
        _ if d.volume <= Decimal::ZERO => return Some(Step::Lost),
        (DealEntry::In, None) => (Some(Leg::open(side, d, d.volume, costs)), None),
        (DealEntry::In, Some(l)) if l.side == side => (Some(l.add(d)?), None),
        (DealEntry::Out | DealEntry::OutBy | DealEntry::Inout, Some(l))
            if l.side != side && d.volume <= l.volume =>
        {
            let (trade, rest) = l.close(d, d.volume, costs, facts)?;
            (rest, Some(trade))
        }
        (DealEntry::Inout, Some(l)) if l.side != side => {
            // A reversal: the closed volume takes its share of the deal's commission and fee
            // and all of its swap and profit; the new leg the rest.
            let closed = l.volume;
            let opened = d.volume.checked_sub(closed)?;
            let new_leg_costs = costs.entry_part().share(opened, d.volume)?;
            let exit_costs = costs.sub(new_leg_costs)?;
            let (trade, _) = l.close(d, closed, exit_costs, facts)?;
            (Some(Leg::open(side, d, opened, new_leg_costs)), Some(trade))
        }
        (DealEntry::None, l) => (l, None),
        _ => return Some(Step::Lost),
    };
    *leg = next;
    trades.extend(trade);
    Some(Step::Applied)
}

/// One position's trades, replayed from its deals in time order, and the exits left out. A
/// figure that overflows leaves the whole position out: its rows would not add up.
fn replay(deals: &[&Deal], facts: PositionFacts) -> (Vec<ClosedTrade>, usize) {
    let mut trades = Vec::new();
    let mut lost = 0;
    let mut leg: Option<Leg> = None;
    for d in deals {
        match step(&mut leg, d, facts, &mut trades) {
            Some(Step::Applied) => {}
            Some(Step::Lost) => lost += usize::from(is_exit(d)),
            None => return (Vec::new(), deals.iter().filter(|d| is_exit(d)).count()),
        }
    }
    (trades, lost)
}

fn is_exit(d: &Deal) -> bool {
    matches!(d.entry, DealEntry::Out | DealEntry::OutBy | DealEntry::Inout)
}

/// The account's closed trades from its deals (in any order; balance and other non-trade deals
/// are skipped), with what the node remembers of each position, oldest close first.
pub fn pair(deals: &[Deal], positions: &BTreeMap<u64, PositionFacts>) -> Book {
    let mut by_position: BTreeMap<u64, BTreeMap<(i64, u64), &Deal>> = BTreeMap::new();
    for d in deals {
        if d.position_id != 0 && side_of(d.kind).is_some() {
            by_position.entry(d.position_id).or_default().insert((d.time_ms, d.deal_ticket), d);
        }
    }
    let mut book = Book::default();
    for (id, deals) in &by_position {
        let deals: Vec<&Deal> = deals.values().copied().collect();
        let facts = positions.get(id).copied().unwrap_or_default();
        let (trades, lost) = replay(&deals, facts);
        book.trades.extend(trades);
        book.n_left_out += lost;
    }
    book.trades.sort_by_key(|t| (t.close_time_ms, t.close_deal));
    book
}
