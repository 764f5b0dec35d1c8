//! The EA's ack of an order: its state (requoted opens sent again, requoted closes kept due with
//! a backoff, a 10018 close retried at the next open, a close filled in part followed by a close
//! of the rest) and, for a fill, the position row and the `Execution` record; committed before
//! the answer.

use rust_decimal::Decimal;
use tradecast_protocol::ea::{self, Ack, AckAnswer, Outcome};
use tradecast_protocol::{Body, DeviceId, Execution, StreamId};

use crate::store::{self, StoreError};

use super::mt5::{explain_retcode, next_open};
use super::rows::{
    AccountRow, AckFacts, OrderAction, OrderRow, OrderState, PositionRow, SignalRow,
};
use super::{Node, NodeError};

/// How often an order refused by a requote (10004, 10020, 10021) is sent again.
pub const REQUOTE_RETRIES: u32 = 3;

/// The first wait (market clock) before a close the dealer requoted (10004, 10020, 10021) is
/// offered again; it doubles with each requote of that close, up to [`CLOSE_REQUOTE_MAX_MS`].
pub const CLOSE_REQUOTE_FIRST_MS: i64 = 1_000;
/// The longest wait between the offers of a requoted close: a requote is not a decision, so a
/// close (or close-all) is never given up on, but a dealer requoting for minutes is asked once a
/// minute, not in a tight loop.
pub const CLOSE_REQUOTE_MAX_MS: i64 = 60_000;

/// 10004 requote, 10020 prices changed, 10021 off quotes: the price moved, nothing was done.
pub fn is_requote(retcode: u32) -> bool {
    matches!(retcode, 10004 | 10020 | 10021)
}

/// 10010: only part of the request was done.
const DONE_PARTIAL: u32 = 10_010;

/// What is left to do after a close (or close-all) filled in part with `filled` lots: the same
/// close for the rest; `None` for an open, or a partial close whose filled volume is unknown.
fn rest_of_close(action: &OrderAction, filled: Option<Decimal>) -> Option<OrderAction> {
    match action {
        OrderAction::Close { position_id, symbol, volume: None } => Some(OrderAction::Close {
            position_id: *position_id,
            symbol: symbol.clone(),
            volume: None,
        }),
        OrderAction::Close { position_id, symbol, volume: Some(v) } => {
            let rest = *v - filled?;
            (rest > Decimal::ZERO).then(|| OrderAction::Close {
                position_id: *position_id,
                symbol: symbol.clone(),
                volume: Some(rest),
            })
        }
        OrderAction::CloseAll { scope } => Some(OrderAction::CloseAll { scope: *scope }),
        OrderAction::Open(_) | OrderAction::Modify { .. } => None,
    }
}

/// The wait before the `n`th re-offer (1-based) of a requoted close: 1 s, 2 s, 4 s … 60 s.
pub fn close_requote_backoff_ms(n: u32) -> i64 {
    let doublings = n.saturating_sub(1).min(16);
    CLOSE_REQUOTE_FIRST_MS.saturating_mul(1i64 << doublings).min(CLOSE_REQUOTE_MAX_MS)
}

impl Node {
    /// How an order ended; committed before the answer.
    pub fn ack(&self, a: Ack, now_ms: i64) -> Result<AckAnswer, NodeError> {
        let inner = self.lock();
        let account = self.session_account(&inner, &a.session_id)?;
        let mem_market = inner.accounts.get(&account).map(|m| m.market_ms).unwrap_or(0);
        let device = self.identity.device_id();
        self.store.write(|tx| {
            // An order the node does not have is the EA's mistake (404), told apart by type,
            // not by words; a row that does not decode stays a store failure (500).
            let Some(mut o) = tx.order::<OrderRow>(&account, &a.order_id)? else {
                return Ok(Err(NodeError::UnknownOrder(a.order_id.clone())));
            };
            let proves_fill = a.outcome == Outcome::Done && o.state == OrderState::Expired;
            if o.state.is_final() && !proves_fill {
                // A repeated ack (the answer to the first was lost): already committed.
                return Ok(Ok(()));
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
                    if a.retcode == DONE_PARTIAL
                        && let Some(rest) = rest_of_close(&o.action, a.volume)
                    {
                        // A close the dealer filled in part: the decision was to close, so the
                        // rest is a new order (a new magic: the EA's look-up finds the part
                        // already done under the old one and would ack it again).
                        let order_id = self.new_order_id().map_err(|e| StoreError::Row {
                            table: "orders",
                            message: e.to_string(),
                        })?;
                        let next = self.queue_in(
                            tx,
                            &account,
                            &order_id,
                            move |_, _| rest,
                            o.signal_id,
                            None,
                        )?;
                        o.explained = format!(
                            "only part of the close was filled: the rest is closed by order {}",
                            next.order_id
                        );
                    }
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
                        (OrderAction::Close { symbol, .. }, Some(_)) => tx
                            .symbol_spec(&account, symbol)?
                            .map(|sp| sp.sessions)
                            .unwrap_or_default(),
                        _ => Vec::new(),
                    };
                    o.not_before_ms = Some(next_open(&sessions, market));
                    o.explained =
                        "the market is closed: the close is sent again when it opens".into();
                }
                Outcome::Rejected
                    if is_requote(a.retcode)
                        && matches!(
                            o.action,
                            OrderAction::Close { .. } | OrderAction::CloseAll { .. }
                        ) =>
                {
                    // The EA sent the close again itself and the dealer still requoted: the
                    // position is open and the decision to close stands. It stays due and is
                    // offered again after a backoff on the market clock (never given up; a
                    // close done in the meantime is found by the EA's look-up, a position
                    // closed by SL/TP answers 10036 and settles it).
                    o.n_requotes = o.n_requotes.saturating_add(1);
                    o.state = OrderState::Due;
                    let wait = close_requote_backoff_ms(o.n_requotes);
                    o.not_before_ms = Some(market.saturating_add(wait));
                    o.explained = format!(
                        "{}: the close is sent again in {} s (requote {})",
                        explain_retcode(a.retcode),
                        wait / 1_000,
                        o.n_requotes
                    );
                }
                Outcome::Rejected
                    if is_requote(a.retcode)
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
            Ok(Ok(()))
        })??;
        drop(inner);
        self.wake();
        Ok(AckAnswer { ok: true })
    }

    /// A copy that filled after its provider had closed the signal in full (the open order was
    /// already with the EA when the close arrived): its close is queued at once, with a copy-log
    /// line, so no position outlives the provider's.
    fn close_if_provider_closed(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        pos: &PositionRow,
    ) -> Result<(), StoreError> {
        let Some(signal_id) = pos.signal_id else { return Ok(()) };
        if pos.own_signal {
            return Ok(());
        }
        let hex = signal_id.to_hex();
        let Some(srow) = tx.get_json::<SignalRow>(store::SIGNALS, "signals", &hex)? else {
            return Ok(());
        };
        let Some(closed_at_ms) = srow.provider_closed_at_ms else { return Ok(()) };
        let order_id = self
            .new_order_id()
            .map_err(|e| StoreError::Row { table: "orders", message: e.to_string() })?;
        let (position_id, symbol) = (pos.position_id, pos.symbol.clone());
        self.queue_in(
            tx,
            account,
            &order_id,
            move |_, _| OrderAction::Close { position_id, symbol, volume: None },
            Some(signal_id),
            None,
        )?;
        let line = format!(
            "followed: the provider had closed before this copy filled → closing {} #{position_id} ({} lots)",
            pos.symbol, pos.volume
        );
        tracing::info!(target: "tradecast::policy", %account, signal_id = %hex, closed_at_ms,
            line = %line, "copy log");
        let entry = crate::policy::copy_log::CopyLogEntry {
            at_ms: closed_at_ms.max(pos.open_time_ms),
            signal_id,
            canonical_symbol: srow.signal.symbol.clone(),
            accepted: true,
            failed_rule: None,
            line,
            steps: Vec::new(),
        };
        let key = format!("{:020}:{hex}:late-fill:{position_id}", pos.open_time_ms.max(0));
        tx.put_json(store::COPY_LOG, "copy_log", &key, &entry)
    }

    /// A filled open order: the position row and the execution record.
    pub(super) fn record_fill(
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
            self.close_if_provider_closed(tx, account, &row)?;
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
}
