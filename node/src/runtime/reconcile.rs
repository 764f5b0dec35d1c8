//! Reconciliation with the terminal: `deals` pushes (fills proven by deals, closes into
//! `TradeClosed` and, in provider mode, `Close` records) and `state` pushes (positions, stale
//! orders, snapshots, equity points, then the guard).

use std::collections::HashSet;

use rust_decimal::Decimal;
use tradecast_protocol::ea::{
    self, Deal, DealEntry, DealKind, Deals, DealsAnswer, State, StateAnswer,
};
use tradecast_protocol::{
    BalanceKind, BalanceOperation, Body, EquityPoint, PositionSnapshot, StreamId, Summary,
    TradeClosed,
};

use crate::policy::risk::DayStart;
use crate::store::{self, StoreError};

use super::mt5::{domain_side, merge_tick_values};
use super::rows::{AccountRow, AckFacts, OrderAction, OrderRow, OrderState, PositionRow};
use super::{Node, NodeError};

/// An order that reached the EA but shows no fill this long (market clock) after its expiry
/// was never executed.
const STALE_AFTER_EXPIRY_MS: i64 = 300_000;
/// An equity point at least this often (market clock) …
const EQUITY_EVERY_MS: i64 = 60_000;
/// … or when equity moves by this fraction.
const EQUITY_MOVE: Decimal = Decimal::from_parts(1, 0, 0, false, 3);

impl Node {
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
        if let Some(kind) = balance_kind(deal) {
            // Account history: sealed in the private stream, or published with consent.
            let acc: Option<AccountRow> = tx.get_json(store::ACCOUNTS, "accounts", account)?;
            let op = BalanceOperation {
                device,
                deal: deal.deal_ticket,
                kind,
                amount: deal.profit,
                currency: acc.map(|a| a.currency).unwrap_or_default(),
                at_ms: deal.time_ms,
                comment: deal.comment.clone(),
            };
            tx.append_history(&self.identity, &Body::BalanceOperation(op), now_ms)?;
        }
        if deal.kind == DealKind::Balance {
            // A deposit or withdrawal moves the peak with it, so it is not a drawdown.
            let mut acc: Option<AccountRow> = tx.get_json(store::ACCOUNTS, "accounts", account)?;
            if let Some(a) = acc.as_mut() {
                if let Some(p) = a.peak_equity {
                    a.peak_equity = p.checked_add(deal.profit).or(Some(p));
                }
                if let Some(d) = a.day_start.as_mut() {
                    d.equity = d.equity.checked_add(deal.profit).unwrap_or(d.equity);
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
                // Sealed in the private stream, or published when the trader opted in.
                tx.append_history(&self.identity, &Body::TradeClosed(tc), now_ms)?;
                tracing::info!(target: "tradecast::reconcile", %account, position_id = p.position_id,
                    reason = ?deal.reason, volume = %closed, "position closed");
                if p.own_signal
                    && let Some(signal_id) = p.signal_id
                {
                    let c = tradecast_protocol::Close {
                        signal_id,
                        fraction,
                        price: Some(deal.price),
                        reason: super::mt5::deal_reason_name(deal.reason).to_owned(),
                        at_ms: deal.time_ms,
                    };
                    tx.append_record(&self.identity, StreamId::SIGNALS, &Body::Close(c), now_ms)?;
                }
            }
            DealEntry::None => {}
        }
        Ok(())
    }

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
            for spec in &s.specs {
                tx.put_symbol_spec(&account, spec)?;
            }
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
            // The broker day that this push ends: its summary (account history).
            if market > 0
                && let Some(day) = acc.day_start
                && !day.is_day_of(market, acc.server_utc_offset_s)
            {
                let summary = day_summary(device, &acc, day, &s, market);
                tx.append_history(&self.identity, &Body::Summary(summary), now_ms)?;
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
                tx.append_history(&self.identity, &Body::EquityPoint(ep), now_ms)?;
                acc.last_point = Some((market, s.equity));
            }
            acc.balance = Some(s.balance);
            acc.equity = Some(s.equity);
            acc.margin = Some(s.margin);
            acc.free_margin = Some(s.free_margin);
            // The drawdown guard and the daily loss limit.
            if let Some(reason) = self.guard_in(tx, &account, &mut acc, &s, market, now_ms)? {
                breached = Some(reason);
            }
            tx.put_json(store::ACCOUNTS, "accounts", &account, &acc)?;
            self.expire_in(tx, &account, market, now_ms)?;
            Ok(out)
        })?;
        drop(inner);
        if let Some(reason) = breached {
            self.note_guard_trip(&account, &reason);
            tracing::error!(target: "tradecast::guard", %account, %reason, "GUARD TRIPPED: closing everything Tradecast opened, auto mode locked");
            self.wake();
        }
        Ok(StateAnswer { ok: true, out_of_line })
    }
}

/// The balance operation a deal is, if it is one: a balance deal is a deposit or a withdrawal by
/// its sign; credits, bonuses and corrections are their own kinds. Charges and commission deals
/// are costs of trading (they count as performance), and trades are not balance operations.
fn balance_kind(deal: &Deal) -> Option<BalanceKind> {
    match deal.kind {
        DealKind::Balance if deal.profit < Decimal::ZERO => Some(BalanceKind::Withdrawal),
        DealKind::Balance => Some(BalanceKind::Deposit),
        DealKind::Credit => Some(BalanceKind::Credit),
        DealKind::Bonus => Some(BalanceKind::Bonus),
        DealKind::Correction => Some(BalanceKind::Correction),
        DealKind::Buy
        | DealKind::Sell
        | DealKind::Charge
        | DealKind::Commission
        | DealKind::Other => None,
    }
}

/// The summary of the broker day that began at `day` (its start and opening equity), written at
/// the first state push `s` of a later day: the day's closing figures are that push's (the close
/// of one day is the next one's open, so the days' P&L add up), `day_pnl` is its equity less the
/// day's opening equity, which deposits and withdrawals during the day moved with them.
fn day_summary(
    device: tradecast_protocol::DeviceId,
    acc: &AccountRow,
    day: DayStart,
    s: &State,
    market: i64,
) -> Summary {
    let offset_ms = i64::from(acc.server_utc_offset_s) * 1_000;
    let date = jiff::Timestamp::from_millisecond(day.day_start_ms.saturating_add(offset_ms))
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default();
    Summary {
        device,
        day: date,
        at_ms: market,
        balance: s.balance,
        equity: s.equity,
        open_positions: u32::try_from(s.positions.len()).unwrap_or(u32::MAX),
        floating_pnl: s.equity.checked_sub(s.balance).unwrap_or_default(),
        day_pnl: s.equity.checked_sub(day.equity).unwrap_or_default(),
        currency: (!acc.currency.is_empty()).then(|| acc.currency.clone()),
    }
}
