//! The schema upgrade steps ([`UPGRADES`]): each runs inside the opening transaction, and
//! [`super::create_tables`] runs after the last one, so a step only moves or rewrites rows.

use redb::{ReadableTable, WriteTransaction};

use super::symbol_specs;
use super::{
    ACCOUNTS, FEATURE_GRANTS, HUB_REFUSALS, HUB_REQUESTS, SETTINGS, StoreError, Upgrade, from_row,
    to_row,
};

/// The upgrade steps, oldest first: `UPGRADES[i]` turns version `i + 1` into `i + 2`. The
/// mechanism is also tested with synthetic steps ([`super::Store::open_db_with_upgrades`]).
pub const UPGRADES: &[Upgrade] = &[upgrade_1_to_2, upgrade_2_to_3, upgrade_3_to_4];

/// The setting that marks a drawdown cap still to merge (written by the upgrade to schema 2,
/// removed by the node's start, which knows the old cap from `config.toml`).
pub const DRAWDOWN_MERGE_PENDING: &str = "upgrade.drawdown_merge_pending";

/// Schema 1 → 2: an account's day start becomes one `day_start` ([`crate::policy::risk::DayStart`]:
/// the server day's start in unix ms and the equity then) instead of `day` (days since the epoch
/// in server time) and `day_start_equity`; and the guard's drawdown cap (`drawdown_max_pct` in
/// `config.toml`) is to be merged into the policy's `risk.drawdown_lock_pct`, the stricter
/// winning, when the node next starts ([`DRAWDOWN_MERGE_PENDING`]).
pub fn upgrade_1_to_2(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    {
        let t = tx.open_table(ACCOUNTS)?;
        for e in t.iter()? {
            let (k, v) = e?;
            let row: serde_json::Value = from_row("accounts", v.value())?;
            rows.push((k.value().to_owned(), row));
        }
    }
    let mut t = tx.open_table(ACCOUNTS)?;
    for (key, mut row) in rows {
        let Some(obj) = row.as_object_mut() else {
            return Err(StoreError::Row {
                table: "accounts",
                message: format!("{key}: not an object"),
            });
        };
        let day = obj.remove("day").and_then(|d| d.as_i64());
        let equity = obj.remove("day_start_equity").filter(|e| !e.is_null());
        let offset_s = obj.get("server_utc_offset_s").and_then(|o| o.as_i64()).unwrap_or(0);
        let day_start = match (day, equity) {
            (Some(day), Some(equity)) => {
                let ms = day
                    .checked_mul(86_400_000)
                    .and_then(|d| d.checked_sub(offset_s.checked_mul(1_000)?))
                    .ok_or_else(|| StoreError::Row {
                        table: "accounts",
                        message: format!("{key}: day {day} is out of range"),
                    })?;
                serde_json::json!({ "day_start_ms": ms, "equity": equity })
            }
            _ => serde_json::Value::Null,
        };
        obj.insert("day_start".into(), day_start);
        t.insert(key.as_str(), to_row("accounts", &row)?.as_slice())?;
    }
    tx.open_table(SETTINGS)?.insert(DRAWDOWN_MERGE_PENDING, "true")?;
    Ok(())
}

/// Schema 2 → 3 (record version 2): the tables of the hub's requests and feature grants and of
/// the refused hub-signed items (`hub_requests`, `feature_grants`, `hub_refusals`) are created
/// empty. Nothing older changes shape: stored `Approval` rows (JSON) read with `lots` absent as
/// `None`, and outbox records of record version 1 keep verifying under their own header. The
/// `publish` setting is absent, so off.
pub fn upgrade_2_to_3(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(HUB_REQUESTS)?;
    tx.open_table(FEATURE_GRANTS)?;
    tx.open_table(HUB_REFUSALS)?;
    Ok(())
}

/// Schema 3 → 4: the broker's symbol specs leave the account row. Every `accounts` row's
/// `symbols` array (the Market Watch from hello and the `RequestSpec` answers) moves to the new
/// `symbol_specs` table, one row per (account, symbol) keyed `"{account}\u{0}{symbol}"`, and the
/// row is rewritten without it: the row every EA push reads and writes stays small. A row
/// without `symbols` (or with `null`) has no specs; a spec that does not decode refuses the
/// upgrade ([`StoreError::Row`]) as it would have refused the row.
pub fn upgrade_3_to_4(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    {
        let t = tx.open_table(ACCOUNTS)?;
        for e in t.iter()? {
            let (k, v) = e?;
            let row: serde_json::Value = from_row("accounts", v.value())?;
            rows.push((k.value().to_owned(), row));
        }
    }
    for (key, mut row) in rows {
        let Some(obj) = row.as_object_mut() else {
            return Err(StoreError::Row {
                table: "accounts",
                message: format!("{key}: not an object"),
            });
        };
        let Some(symbols) = obj.remove("symbols") else { continue };
        let specs: Vec<tradecast_protocol::ea::SymbolSpec> = if symbols.is_null() {
            Vec::new()
        } else {
            serde_json::from_value(symbols).map_err(|e| StoreError::Row {
                table: "accounts",
                message: format!("{key}: symbols: {e}"),
            })?
        };
        symbol_specs::replace_in(tx, &key, &specs)?;
        tx.open_table(ACCOUNTS)?.insert(key.as_str(), to_row("accounts", &row)?.as_slice())?;
    }
    Ok(())
}
