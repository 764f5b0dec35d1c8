//! The account's tables: orders, executions, positions, deals, bars, equity and cursors (rows
//! keyed by account, `login@server`).

use redb::{ReadableTable, ReadableTableMetadata};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    BARS, CURSORS, DEALS, EQUITY, EXECUTIONS, ORDERS, POSITIONS, StoreError, Tx, View,
    collect_range, from_row, to_row,
};

impl Tx<'_> {
    /// An order row.
    pub fn order<T: DeserializeOwned>(
        &self,
        account: &str,
        order_id: &str,
    ) -> Result<Option<T>, StoreError> {
        let t = self.tx.open_table(ORDERS)?;
        let v = t.get((account, order_id))?;
        v.map(|v| from_row("orders", v.value())).transpose()
    }

    /// Writes an order row.
    pub fn put_order<T: Serialize>(
        &mut self,
        account: &str,
        order_id: &str,
        row: &T,
    ) -> Result<(), StoreError> {
        let bytes = to_row("orders", row)?;
        self.tx.open_table(ORDERS)?.insert((account, order_id), bytes.as_slice())?;
        Ok(())
    }

    /// Every order row of an account.
    pub fn orders<T: DeserializeOwned>(&self, account: &str) -> Result<Vec<T>, StoreError> {
        let t = self.tx.open_table(ORDERS)?;
        collect_range(t.range((account, "")..(account, "\u{10FFFF}"))?, "orders")
    }

    /// Writes an execution row, keyed by order id.
    pub fn put_execution<T: Serialize>(
        &mut self,
        account: &str,
        order_id: &str,
        row: &T,
    ) -> Result<(), StoreError> {
        let bytes = to_row("executions", row)?;
        self.tx.open_table(EXECUTIONS)?.insert((account, order_id), bytes.as_slice())?;
        Ok(())
    }

    /// A position row.
    pub fn position<T: DeserializeOwned>(
        &self,
        account: &str,
        position_id: u64,
    ) -> Result<Option<T>, StoreError> {
        let t = self.tx.open_table(POSITIONS)?;
        let v = t.get((account, position_id))?;
        v.map(|v| from_row("positions", v.value())).transpose()
    }

    /// Writes a position row.
    pub fn put_position<T: Serialize>(
        &mut self,
        account: &str,
        position_id: u64,
        row: &T,
    ) -> Result<(), StoreError> {
        let bytes = to_row("positions", row)?;
        self.tx.open_table(POSITIONS)?.insert((account, position_id), bytes.as_slice())?;
        Ok(())
    }

    /// Every position row of an account.
    pub fn positions<T: DeserializeOwned>(&self, account: &str) -> Result<Vec<T>, StoreError> {
        let t = self.tx.open_table(POSITIONS)?;
        collect_range(t.range((account, 0)..=(account, u64::MAX))?, "positions")
    }

    /// Whether a deal is known (deduplication by deal ticket).
    pub fn has_deal(&self, account: &str, ticket: u64) -> Result<bool, StoreError> {
        Ok(self.tx.open_table(DEALS)?.get((account, ticket))?.is_some())
    }

    /// Stores a deal.
    pub fn put_deal<T: Serialize>(
        &mut self,
        account: &str,
        ticket: u64,
        row: &T,
    ) -> Result<(), StoreError> {
        let bytes = to_row("deals", row)?;
        self.tx.open_table(DEALS)?.insert((account, ticket), bytes.as_slice())?;
        Ok(())
    }

    /// Every deal of an account, by ticket.
    pub fn deals<T: DeserializeOwned>(&self, account: &str) -> Result<Vec<T>, StoreError> {
        let t = self.tx.open_table(DEALS)?;
        collect_range(t.range((account, 0)..=(account, u64::MAX))?, "deals")
    }

    /// Whether a bar is known (deduplication by symbol, timeframe, time).
    pub fn has_bar(&self, account: &str, series: &str, time_ms: i64) -> Result<bool, StoreError> {
        Ok(self.tx.open_table(BARS)?.get((account, series, time_ms))?.is_some())
    }

    /// Stores a bar of `series` (`EURUSD:H1`) for an account.
    pub fn put_bar<T: Serialize>(
        &mut self,
        account: &str,
        series: &str,
        time_ms: i64,
        row: &T,
    ) -> Result<(), StoreError> {
        let bytes = to_row("bars", row)?;
        self.tx.open_table(BARS)?.insert((account, series, time_ms), bytes.as_slice())?;
        Ok(())
    }

    /// The stored bars of `series` for an account, oldest first: `(open time, row)`.
    pub fn bars<T: DeserializeOwned>(
        &self,
        account: &str,
        series: &str,
    ) -> Result<Vec<(i64, T)>, StoreError> {
        let t = self.tx.open_table(BARS)?;
        let mut out = Vec::new();
        for e in t.range((account, series, i64::MIN)..=(account, series, i64::MAX))? {
            let (k, v) = e?;
            out.push((k.value().2, from_row("bars", v.value())?));
        }
        Ok(out)
    }

    /// Appends an equity point.
    pub fn put_equity<T: Serialize>(
        &mut self,
        account: &str,
        at_ms: i64,
        row: &T,
    ) -> Result<(), StoreError> {
        let bytes = to_row("equity", row)?;
        self.tx.open_table(EQUITY)?.insert((account, at_ms), bytes.as_slice())?;
        Ok(())
    }

    /// A cursor (deals, bars per series, the inbox watermark, the order-number counter).
    pub fn cursor(&self, account: &str, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.tx.open_table(CURSORS)?.get((account, name))?.map(|v| v.value()))
    }

    /// Sets a cursor.
    pub fn set_cursor(&mut self, account: &str, name: &str, value: i64) -> Result<(), StoreError> {
        self.tx.open_table(CURSORS)?.insert((account, name), value)?;
        Ok(())
    }
}

impl View {
    /// Every order row of an account.
    pub fn orders<T: DeserializeOwned>(&self, account: &str) -> Result<Vec<T>, StoreError> {
        let t = self.tx.open_table(ORDERS)?;
        collect_range(t.range((account, "")..(account, "\u{10FFFF}"))?, "orders")
    }

    /// Every execution row of an account.
    pub fn executions<T: DeserializeOwned>(&self, account: &str) -> Result<Vec<T>, StoreError> {
        let t = self.tx.open_table(EXECUTIONS)?;
        collect_range(t.range((account, "")..(account, "\u{10FFFF}"))?, "executions")
    }

    /// Every position row of an account.
    pub fn positions<T: DeserializeOwned>(&self, account: &str) -> Result<Vec<T>, StoreError> {
        let t = self.tx.open_table(POSITIONS)?;
        collect_range(t.range((account, 0)..=(account, u64::MAX))?, "positions")
    }

    /// Every deal of an account, by ticket.
    pub fn deals<T: DeserializeOwned>(&self, account: &str) -> Result<Vec<T>, StoreError> {
        let t = self.tx.open_table(DEALS)?;
        collect_range(t.range((account, 0)..=(account, u64::MAX))?, "deals")
    }

    /// Every equity point of an account, oldest first.
    pub fn equity<T: DeserializeOwned>(&self, account: &str) -> Result<Vec<T>, StoreError> {
        let t = self.tx.open_table(EQUITY)?;
        collect_range(t.range((account, i64::MIN)..=(account, i64::MAX))?, "equity")
    }

    /// A cursor.
    pub fn cursor(&self, account: &str, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.tx.open_table(CURSORS)?.get((account, name))?.map(|v| v.value()))
    }

    /// Number of bars stored.
    pub fn n_bars(&self) -> Result<u64, StoreError> {
        Ok(self.tx.open_table(BARS)?.len()?)
    }
}
