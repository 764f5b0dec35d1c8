//! The drawdown guard and the daily loss limit: the equity floor below the peak, and unlocking
//! auto mode after a trip.

use rust_decimal::Decimal;
use tradecast_protocol::ea::{CloseAllScope, State};
use tradecast_protocol::{Body, StreamId};

use crate::policy::PolicySettings;
use crate::policy::risk::{self, AccountRisk, DayStart, RiskSettings, RiskStop};
use crate::store::{self, StoreError};

use super::rows::{AccountRow, OrderAction};
use super::{Node, NodeError};

impl Node {
    /// The equity floor the EA keeps on its own: the policy's drawdown rule
    /// ([`risk::drawdown_floor`]) below the account's peak.
    pub(super) fn floor(&self, row: &AccountRow, policy: &PolicySettings) -> Option<Decimal> {
        risk::drawdown_floor(&policy.risk, row.peak_equity?)
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
    /// unlocked, the day start rolls at the broker's server midnight on the market clock
    /// ([`DayStart::roll`], stored in the account row), and the policy's rules decide
    /// ([`risk::check_drawdown`] with the policy's `risk.drawdown_lock_pct`,
    /// [`risk::check_daily_loss`] with the guard's `daily_loss_max_pct`). A trip locks auto
    /// mode, queues a close-all and signs a `CloseAll` command. The lock reason when this push
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
        let day_start = DayStart::roll(acc.day_start, market, acc.server_utc_offset_s, s.equity);
        acc.day_start = Some(day_start);
        let policy = self.policy_in(tx)?;
        let figures = AccountRisk {
            equity: s.equity,
            peak_equity: acc.peak_equity.unwrap_or(s.equity),
            day_start: Some(day_start),
            now_ms: market,
            server_utc_offset_s: acc.server_utc_offset_s,
        };
        let mut trip = None;
        match risk::check_drawdown(&policy.risk, &figures) {
            Ok(()) => {}
            Err(stop @ RiskStop::Drawdown { .. }) => trip = Some(format!("drawdown guard: {stop}")),
            Err(other) => {
                tracing::warn!(target: "tradecast::guard", %account, reason = %other, "drawdown guard: no verdict")
            }
        }
        if trip.is_none()
            && let Some(pct) = self.settings.daily_loss_max_pct
        {
            // The guard's own daily limit (it closes everything), measured by the policy's rule.
            let daily = RiskSettings {
                daily_loss_limit_pct: pct,
                daily_loss_limit_money: None,
                ..policy.risk.clone()
            };
            match risk::check_daily_loss(&daily, &figures) {
                Ok(()) => {}
                Err(stop @ RiskStop::DailyLoss { .. }) => {
                    trip = Some(format!("daily loss limit: {stop} (the guard's {pct} %)"))
                }
                Err(other) => {
                    tracing::warn!(target: "tradecast::guard", %account, reason = %other, "daily loss limit: no verdict")
                }
            }
        }
        if let Some(reason) = trip
            && !acc.locked
        {
            acc.locked = true;
            acc.lock_reason = reason;
            let order_id = self
                .new_order_id()
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
