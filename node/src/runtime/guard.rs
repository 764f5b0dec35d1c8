//! The drawdown guard and the daily loss limit: the equity floor below the peak, and unlocking
//! auto mode after a trip.

use rust_decimal::Decimal;

use crate::store::{self, StoreError};

use super::rows::AccountRow;
use super::{Node, NodeError};

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
}
