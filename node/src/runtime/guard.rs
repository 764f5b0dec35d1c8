//! The drawdown guard and the daily loss limit: the equity floor below the peak, and unlocking
//! auto mode after a trip.

use rust_decimal::Decimal;
use tradecast_protocol::ea::{CloseAllScope, State};
use tradecast_protocol::{Body, StreamId};

use crate::store::{self, StoreError};

use super::rows::{AccountRow, OrderAction};
use super::{Node, NodeError, new_order_id};

impl Node {
    pub(super) fn floor(&self, row: &AccountRow) -> Option<Decimal> {
        let peak = row.peak_equity?;
        let keep = Decimal::ONE_HUNDRED.checked_sub(self.settings.drawdown_max_pct)?;
        peak.checked_mul(keep)?.checked_div(Decimal::ONE_HUNDRED).map(|d| d.round_dp(2))
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

    /// The drawdown guard and the daily loss limit on a state push (called by
    /// [`Node::state`](super::Node::state) in its transaction): the peak follows equity while
    /// unlocked, the daily base moves with the broker's server day, and a trip locks auto mode,
    /// queues a close-all and signs a `CloseAll` command. The lock reason when this push
    /// tripped it.
    pub(super) fn guard_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        acc: &mut AccountRow,
        s: &State,
        market: i64,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
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
        if let Some(floor) = self.floor(acc)
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
            tx.put_json(store::ACCOUNTS, "accounts", account, &*acc)?;
            self.queue_in(
                tx,
                account,
                &order_id,
                |_, _| OrderAction::CloseAll { scope: CloseAllScope::Tradecast },
                None,
                None,
            )?;
            if let Some(stored) = tx.get_json(store::ACCOUNTS, "accounts", account)? {
                *acc = stored;
            }
            let cmd = tradecast_protocol::Command::CloseAll {
                symbol: None,
                reason: acc.lock_reason.clone(),
                at_ms: market,
            };
            tx.append_record(&self.identity, StreamId::COMMANDS, &Body::Command(cmd), now_ms)?;
            return Ok(Some(acc.lock_reason.clone()));
        }
        Ok(None)
    }
}
