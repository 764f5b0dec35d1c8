//! What the long-poll offers: orders due (or to offer again) marked sent durably before the
//! answer leaves, backfill and spec requests; and queueing orders (`queue`, `close_all`).

use tradecast_protocol::ea::{self, CloseAllScope, PollAnswer};
use tradecast_protocol::{Body, SignalId, StreamId};

use crate::store::{self, StoreError};

use super::mt5::request_stale_specs;
use super::rows::{AccountRow, OrderAction, OrderRow, OrderState};
use super::{Node, NodeError};

/// An order offered in a session and not acked is offered again after this (wall clock): an ack
/// lost on the way is harmless, the EA's look-up finds what it did.
const REOFFER_AFTER_MS: i64 = 10_000;

impl Node {
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
        let policy = self.policy_of(&view)?;
        let mut rows: Vec<OrderRow> = view.orders(account)?;
        let mut specs = Vec::new();
        if row.is_some() {
            for (sym, _) in &self.settings.subscriptions {
                specs.extend(view.symbol_spec(account, sym)?);
            }
        }
        drop(view);
        if let Some(acc) = &row
            && let Some(cmd) = request_stale_specs(
                acc,
                &specs,
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
        let floor = row.as_ref().and_then(|r| self.floor(r, &policy));
        let mut all = trade_cmds;
        all.append(&mut commands);
        Ok(PollAnswer { orders, commands: all, equity_floor: floor })
    }

    /// Queues an order (or a trading command) for the account; committed before it returns.
    /// The EA's next poll gets it.
    pub fn queue(
        &self,
        account: &str,
        action: impl FnOnce(&str, u32) -> OrderAction,
        signal_id: Option<SignalId>,
        expires_at_ms: Option<i64>,
    ) -> Result<OrderRow, NodeError> {
        let order_id = self.new_order_id()?;
        let _inner = self.lock();
        let row = self
            .store
            .write(|tx| self.queue_in(tx, account, &order_id, action, signal_id, expires_at_ms))?;
        drop(_inner);
        self.wake();
        Ok(row)
    }

    pub(super) fn queue_in(
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
            created_at_ms: self.clock.wall_ms(),
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
    /// The order and its signed `CloseAll` command commit in one transaction: both or neither.
    pub fn close_all(&self, account: &str, reason: &str) -> Result<OrderRow, NodeError> {
        let order_id = self.new_order_id()?;
        let inner = self.lock();
        let mem = inner.accounts.get(account).map(|m| m.market_ms).unwrap_or(0);
        let row = self.store.write(|tx| {
            let row = self.queue_in(
                tx,
                account,
                &order_id,
                |_, _| OrderAction::CloseAll { scope: CloseAllScope::Tradecast },
                None,
                None,
            )?;
            let stored = tx.get_json::<AccountRow>(store::ACCOUNTS, "accounts", account)?;
            let market = stored.map(|a| a.market_ms).unwrap_or(0).max(mem);
            let cmd = tradecast_protocol::Command::CloseAll {
                symbol: None,
                reason: reason.to_owned(),
                at_ms: market,
            };
            tx.append_record(
                &self.identity,
                StreamId::COMMANDS,
                &Body::Command(cmd),
                self.clock.wall_ms(),
            )?;
            Ok(row)
        })?;
        drop(inner);
        self.wake();
        Ok(row)
    }
}
