//! The node's durable state: one redb file in the data dir (`node.redb`).
//!
//! Tables (state is keyed by account, `login@server`, so a second account needs no migration):
//! `meta` (schema version), `secrets` (the device identity), `settings`, `ea_keys` (EA secrets,
//! sealed), `accounts`, `signals`, `orders` (with their state machine), `executions`,
//! `positions`, `deals`, `equity`, `bars`, `outbox` (the signed, chained records for the hub,
//! keyed by stream and `seq`), `cursors` (deals, bars, the inbox watermark, order numbers),
//! `copy_log` (every policy evaluation with its steps, in time order) and `approvals` (each
//! signal's approval: waiting or decided).
//!
//! Every write goes through [`Store::write`], one redb transaction committed with
//! `Durability::Immediate` (fsync) before the closure's result is handed back: a caller that
//! tells another party something (an ack to the EA, later to the hub) does so only after
//! `write` returned `Ok`. Rows are JSON (serde) so that an upgrade can read an older row with
//! `#[serde(default)]` fields; the outbox holds the records' own encoding.
//!
//! Schema upgrades are [`UPGRADES`]: step `i` turns version `i + 1` into `i + 2`. Opening runs the
//! missing steps in one transaction; a file from a newer node is refused with
//! [`StoreError::NewerSchema`] and never written to.
//!
//! This module owns no network and no clock; times are arguments.

pub mod hub_pin;

use std::path::Path;

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageBackend, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tradecast_protocol::{
    Body, ChainHash, DeviceId, HeaderFields, Identity, Record, StreamId, StreamKey,
};

/// The schema this node writes.
pub const SCHEMA_VERSION: u64 = 2;

/// The store's file name in the data dir.
pub const FILE_NAME: &str = "node.redb";

/// The store setting holding the EA link's URL as bound (`http://127.0.0.1:7341`), written at
/// every start (by [`crate::serve`], read by the UI's setup page).
pub const EA_URL_SETTING: &str = "ea.link_url";

pub(crate) const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
pub(crate) const SECRETS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("secrets");
pub(crate) const SETTINGS: TableDefinition<'static, &str, &str> = TableDefinition::new("settings");
pub(crate) const EA_KEYS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("ea_keys");
pub(crate) const ACCOUNTS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("accounts");
pub(crate) const SIGNALS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("signals");
pub(crate) const ORDERS: TableDefinition<'static, (&str, &str), &[u8]> =
    TableDefinition::new("orders");
pub(crate) const EXECUTIONS: TableDefinition<'static, (&str, &str), &[u8]> =
    TableDefinition::new("executions");
pub(crate) const POSITIONS: TableDefinition<'static, (&str, u64), &[u8]> =
    TableDefinition::new("positions");
pub(crate) const DEALS: TableDefinition<'static, (&str, u64), &[u8]> =
    TableDefinition::new("deals");
pub(crate) const EQUITY: TableDefinition<'static, (&str, i64), &[u8]> =
    TableDefinition::new("equity");
pub(crate) const BARS: TableDefinition<'static, (&str, &str, i64), &[u8]> =
    TableDefinition::new("bars");
pub(crate) const OUTBOX: TableDefinition<'static, (u32, u64), &[u8]> =
    TableDefinition::new("outbox");
pub(crate) const CURSORS: TableDefinition<'static, (&str, &str), i64> =
    TableDefinition::new("cursors");
/// The copy log: one policy evaluation per row, keyed `{at_ms:020}:{signal hex}` (time order).
pub(crate) const COPY_LOG: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("copy_log");
/// Each signal's approval (`PendingApproval`), keyed by the signal's hex id.
pub(crate) const APPROVALS: TableDefinition<'static, &str, &[u8]> =
    TableDefinition::new("approvals");
/// The downstream feed as committed: feed `seq` → the record's bytes, unchanged (the inbox
/// watermark is its highest key).
pub(crate) const FEED: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("feed");
/// The hub's receipts for this node's own records: (stream, seq) → the receipt (JSON).
pub(crate) const RECEIPTS: TableDefinition<'static, (u32, u64), &[u8]> =
    TableDefinition::new("receipts");
/// Authors whose feed records this node accepts: device id (text) → JSON [`PinnedAuthor`].
pub(crate) const AUTHORS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("authors");

const KEY_SCHEMA: &str = "schema_version";
/// Cursors of the device rather than of an account live under this account key.
const DEVICE_KEY: &str = "";
const INBOX_CURSOR: &str = "inbox";
const KEY_IDENTITY: &str = "identity";

/// A feed author this node pinned: the provider key it verifies records against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedAuthor {
    /// The author's Ed25519 identity key (its device id derives from it).
    pub key: tradecast_protocol::IdentityKey,
    /// The label of its `DeviceKeys` record.
    pub label: String,
    /// Feed `seq` of the `DeviceKeys` record that pinned it.
    pub pinned_at_seq: u64,
    /// Wall clock, unix ms.
    pub pinned_at_ms: i64,
    /// Whether its signals are acted on. The first provider key is trusted on first sight; a
    /// later, different key is an alarm and waits for the trader (`tradecast-node trust`).
    pub trusted: bool,
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb failed (I/O, corruption, a full disk).
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// The file was written by a newer node; it is left untouched.
    #[error("the store has schema version {found}, this node knows up to {SCHEMA_VERSION}")]
    NewerSchema {
        /// The version in the file.
        found: u64,
    },
    /// The file's version is older than this node's but no upgrade step leads from it.
    #[error("no upgrade from schema version {from}")]
    NoUpgrade {
        /// The version without a step.
        from: u64,
    },
    /// A row does not decode (written by a bug or a foreign tool).
    #[error("store row in {table} does not decode: {message}")]
    Row {
        /// The table.
        table: &'static str,
        /// serde's words.
        message: String,
    },
    /// The store has no identity: `init` was not run.
    #[error("the data dir has no identity: run `tradecast-node init` first")]
    NotInitialized,
    /// The store already has an identity (`init` twice).
    #[error("the data dir already has an identity")]
    AlreadyInitialized,
    /// The OS random source failed (sealing a private record needs a fresh nonce).
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    /// A sealed value does not open (wrong identity or tampering).
    #[error("a sealed value in the store does not open")]
    Unseal,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// A schema upgrade step: runs inside the opening transaction.
pub type Upgrade = fn(&WriteTransaction) -> Result<(), StoreError>;

/// The upgrade steps, oldest first: `UPGRADES[i]` turns version `i + 1` into `i + 2`. The
/// mechanism is also tested with synthetic steps ([`Store::open_db_with_upgrades`]).
pub const UPGRADES: &[Upgrade] = &[upgrade_1_to_2];

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

/// The node's redb store.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

fn row_err(table: &'static str, e: serde_json::Error) -> StoreError {
    StoreError::Row { table, message: e.to_string() }
}

pub(crate) fn to_row<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| row_err(table, e))
}

pub(crate) fn from_row<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| row_err(table, e))
}

impl Store {
    /// Opens (or creates) the store file, upgrading an older schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        Store::open_db_with_upgrades(db, UPGRADES, SCHEMA_VERSION)
    }

    /// Opens a store on any redb backend (tests: in memory, or failing on purpose).
    pub fn open_backend(backend: impl StorageBackend) -> Result<Store, StoreError> {
        let db = Database::builder().create_with_backend(backend)?;
        Store::open_db_with_upgrades(db, UPGRADES, SCHEMA_VERSION)
    }

    /// Opens `db` whose current schema is `current`, running `upgrades` (step `i`: version
    /// `i + 1` → `i + 2`) on an older file. Public so the upgrade mechanism is testable with
    /// synthetic steps; the node itself calls [`Store::open`].
    pub fn open_db_with_upgrades(
        db: Database,
        upgrades: &[Upgrade],
        current: u64,
    ) -> Result<Store, StoreError> {
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        let found = {
            let meta = tx.open_table(META)?;
            meta.get(KEY_SCHEMA)?.map(|v| v.value())
        };
        match found {
            None => {
                create_tables(&tx)?;
                tx.open_table(META)?.insert(KEY_SCHEMA, current)?;
            }
            Some(v) if v > current => return Err(StoreError::NewerSchema { found: v }),
            Some(v) => {
                for version in v..current {
                    let step = usize::try_from(version - 1)
                        .ok()
                        .and_then(|i| upgrades.get(i))
                        .ok_or(StoreError::NoUpgrade { from: version })?;
                    step(&tx)?;
                    tx.open_table(META)?.insert(KEY_SCHEMA, version + 1)?;
                }
                create_tables(&tx)?;
            }
        }
        tx.commit()?;
        Ok(Store { db })
    }

    /// The redb database itself (upgrade tests and maintenance tools).
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The schema version in the file.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(KEY_SCHEMA)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Runs `f` in one write transaction and commits it durably (fsync) before returning. If
    /// `f` fails, nothing is written.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut wtx = self.db.begin_write()?;
        wtx.set_durability(Durability::Immediate)?;
        let out = {
            let mut tx = Tx { tx: &wtx };
            f(&mut tx)?
        };
        wtx.commit()?;
        Ok(out)
    }

    /// A consistent read view.
    pub fn read(&self) -> Result<View, StoreError> {
        Ok(View { tx: self.db.begin_read()? })
    }
}

fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(META)?;
    tx.open_table(SECRETS)?;
    tx.open_table(SETTINGS)?;
    tx.open_table(EA_KEYS)?;
    tx.open_table(ACCOUNTS)?;
    tx.open_table(SIGNALS)?;
    tx.open_table(ORDERS)?;
    tx.open_table(EXECUTIONS)?;
    tx.open_table(POSITIONS)?;
    tx.open_table(DEALS)?;
    tx.open_table(EQUITY)?;
    tx.open_table(BARS)?;
    tx.open_table(OUTBOX)?;
    tx.open_table(CURSORS)?;
    tx.open_table(COPY_LOG)?;
    tx.open_table(APPROVALS)?;
    tx.open_table(FEED)?;
    tx.open_table(AUTHORS)?;
    tx.open_table(RECEIPTS)?;
    Ok(())
}

/// One write transaction; committed by [`Store::write`].
pub struct Tx<'a> {
    tx: &'a WriteTransaction,
}

/// Stored identity: the Ed25519 seed and the X25519 secret.
fn identity_from_bytes(bytes: &[u8]) -> Option<Identity> {
    let seed: [u8; 32] = bytes.get(..32)?.try_into().ok()?;
    let x: [u8; 32] = bytes.get(32..64)?.try_into().ok()?;
    Some(Identity::from_secret_bytes(&seed, &x))
}

/// The tip of one outbox stream: `(seq, header hash)` of its last record.
fn stream_tip(
    table: &impl ReadableTable<(u32, u64), &'static [u8]>,
    stream: StreamId,
) -> Result<(u64, ChainHash), StoreError> {
    let last = table.range((stream.0, 0)..=(stream.0, u64::MAX))?.next_back();
    match last {
        None => Ok((0, ChainHash::GENESIS)),
        Some(entry) => {
            let (k, v) = entry?;
            let record = Record::decode(v.value())
                .map_err(|e| StoreError::Row { table: "outbox", message: e.to_string() })?;
            Ok((k.value().1, record.header_hash()))
        }
    }
}

impl Tx<'_> {
    /// Stores the device identity once.
    pub fn put_identity(&mut self, identity: &Identity) -> Result<(), StoreError> {
        let mut t = self.tx.open_table(SECRETS)?;
        if t.get(KEY_IDENTITY)?.is_some() {
            return Err(StoreError::AlreadyInitialized);
        }
        let s = identity.to_secret_bytes();
        let mut bytes = zeroize::Zeroizing::new([0u8; 64]);
        bytes[..32].copy_from_slice(&s.ed25519_seed[..]);
        bytes[32..].copy_from_slice(&s.x25519_secret[..]);
        t.insert(KEY_IDENTITY, &bytes[..])?;
        Ok(())
    }

    /// A JSON row of a string-keyed table.
    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        def: TableDefinition<'static, &str, &[u8]>,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let t = self.tx.open_table(def)?;
        let v = t.get(key)?;
        v.map(|v| from_row(name, v.value())).transpose()
    }

    pub(crate) fn put_json<T: Serialize>(
        &mut self,
        def: TableDefinition<'static, &str, &[u8]>,
        name: &'static str,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = to_row(name, value)?;
        self.tx.open_table(def)?.insert(key, bytes.as_slice())?;
        Ok(())
    }

    /// Every row of a string-keyed JSON table.
    pub(crate) fn all_json<T: DeserializeOwned>(
        &self,
        def: TableDefinition<'static, &str, &[u8]>,
        name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let t = self.tx.open_table(def)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (_, v) = e?;
            out.push(from_row(name, v.value())?);
        }
        Ok(out)
    }

    /// A setting (JSON text).
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let t = self.tx.open_table(SETTINGS)?;
        Ok(t.get(key)?.map(|v| v.value().to_owned()))
    }

    /// Sets a setting (JSON text).
    pub fn set_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.tx.open_table(SETTINGS)?.insert(key, value)?;
        Ok(())
    }

    /// Removes a setting; whether it was there.
    pub fn remove_setting(&mut self, key: &str) -> Result<bool, StoreError> {
        Ok(self.tx.open_table(SETTINGS)?.remove(key)?.is_some())
    }

    /// Stores an EA key's sealed secret.
    pub fn put_ea_key(&mut self, key_id: &str, sealed: &[u8]) -> Result<(), StoreError> {
        self.tx.open_table(EA_KEYS)?.insert(key_id, sealed)?;
        Ok(())
    }

    /// Removes an EA key; whether it existed.
    pub fn remove_ea_key(&mut self, key_id: &str) -> Result<bool, StoreError> {
        Ok(self.tx.open_table(EA_KEYS)?.remove(key_id)?.is_some())
    }

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

    /// The inbox watermark: the highest downstream `seq` committed (the sync client acks it
    /// to the hub only after this commit).
    pub fn set_inbox_watermark(&mut self, seq: u64) -> Result<(), StoreError> {
        let v = i64::try_from(seq).unwrap_or(i64::MAX);
        self.set_cursor(DEVICE_KEY, INBOX_CURSOR, v)
    }

    /// The inbox watermark (0 before any downstream record).
    pub fn inbox_watermark(&self) -> Result<u64, StoreError> {
        let v = self.cursor(DEVICE_KEY, INBOX_CURSOR)?.unwrap_or(0);
        Ok(u64::try_from(v).unwrap_or(0))
    }

    /// Stores feed item `seq` (the record unchanged) and moves the inbox watermark to it.
    pub fn put_feed(&mut self, seq: u64, record: &Record) -> Result<(), StoreError> {
        self.tx.open_table(FEED)?.insert(seq, record.encode().as_slice())?;
        self.set_inbox_watermark(seq)
    }

    /// This node's outbox record at (`stream`, `seq`).
    pub fn outbox_record(&self, stream: StreamId, seq: u64) -> Result<Option<Record>, StoreError> {
        let t = self.tx.open_table(OUTBOX)?;
        let v = t.get((stream.0, seq))?;
        v.map(|v| {
            Record::decode(v.value())
                .map_err(|e| StoreError::Row { table: "outbox", message: e.to_string() })
        })
        .transpose()
    }

    /// Keeps the hub's receipt for this node's record (`stream`, `seq`).
    pub fn put_receipt(&mut self, receipt: &tradecast_protocol::Receipt) -> Result<(), StoreError> {
        let bytes = to_row("receipts", receipt)?;
        let key = (receipt.fields.stream.0, receipt.fields.seq);
        self.tx.open_table(RECEIPTS)?.insert(key, bytes.as_slice())?;
        Ok(())
    }

    /// A pinned author, if any.
    pub fn author(&self, device: &DeviceId) -> Result<Option<PinnedAuthor>, StoreError> {
        self.get_json(AUTHORS, "authors", &device.to_text())
    }

    /// Pins (or updates) an author.
    pub fn put_author(&mut self, author: &PinnedAuthor) -> Result<(), StoreError> {
        self.put_json(AUTHORS, "authors", &author.key.device_id().to_text(), author)
    }

    /// Every pinned author.
    pub fn authors(&self) -> Result<Vec<PinnedAuthor>, StoreError> {
        self.all_json(AUTHORS, "authors")
    }

    /// Signs `body` as the next record of `stream` (seq = tip + 1, prev_hash = tip's header
    /// hash) and appends it to the outbox in this transaction. On the private stream the body
    /// is sealed (XChaCha20-Poly1305 under the device's own stream key).
    pub fn append_record(
        &mut self,
        identity: &Identity,
        stream: StreamId,
        body: &Body,
        created_at_ms: i64,
    ) -> Result<Record, StoreError> {
        let mut t = self.tx.open_table(OUTBOX)?;
        let (seq, prev_hash) = stream_tip(&t, stream)?;
        let seq = seq + 1;
        let fields = HeaderFields { stream, seq, prev_hash, created_at_ms };
        let record = if stream == StreamId::PRIVATE {
            // What the trader shares with nobody is sealed to the trader's own devices.
            let seed =
                crate::keys::random_bytes::<32>().map_err(|e| StoreError::Random(e.to_string()))?;
            let mut rng = <chacha20::ChaCha20Rng as rand_core::SeedableRng>::from_seed(*seed);
            let key = StreamKey::derive(identity, &identity.device_id(), stream);
            Record::sign_sealed(identity, fields, body, &key, &mut rng)
        } else {
            Record::sign(identity, fields, body)
        };
        t.insert((stream.0, seq), record.encode().as_slice())?;
        Ok(record)
    }
}

fn collect_range<K: redb::Key + 'static, T: DeserializeOwned>(
    range: redb::Range<'_, K, &'static [u8]>,
    name: &'static str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for entry in range {
        let (_, v) = entry?;
        out.push(from_row(name, v.value())?);
    }
    Ok(out)
}

/// A consistent read view of the store.
pub struct View {
    tx: ReadTransaction,
}

impl View {
    /// The device identity, if `init` ran.
    pub fn identity(&self) -> Result<Option<Identity>, StoreError> {
        let t = self.tx.open_table(SECRETS)?;
        let v = t.get(KEY_IDENTITY)?;
        match v {
            None => Ok(None),
            Some(v) => identity_from_bytes(v.value()).map(Some).ok_or(StoreError::Row {
                table: "secrets",
                message: "identity is not 64 bytes".into(),
            }),
        }
    }

    /// A setting (JSON text).
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let t = self.tx.open_table(SETTINGS)?;
        Ok(t.get(key)?.map(|v| v.value().to_owned()))
    }

    /// Every EA key: `(key id, sealed secret)`.
    pub fn ea_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let t = self.tx.open_table(EA_KEYS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// A JSON row of a string-keyed table.
    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        def: TableDefinition<'static, &str, &[u8]>,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let t = self.tx.open_table(def)?;
        let v = t.get(key)?;
        v.map(|v| from_row(name, v.value())).transpose()
    }

    /// Every row of a string-keyed JSON table.
    pub(crate) fn all_json<T: DeserializeOwned>(
        &self,
        def: TableDefinition<'static, &str, &[u8]>,
        name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let t = self.tx.open_table(def)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (_, v) = e?;
            out.push(from_row(name, v.value())?);
        }
        Ok(out)
    }

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

    /// The inbox watermark (0 before any downstream record).
    pub fn inbox_watermark(&self) -> Result<u64, StoreError> {
        let v = self.cursor(DEVICE_KEY, INBOX_CURSOR)?.unwrap_or(0);
        Ok(u64::try_from(v).unwrap_or(0))
    }

    /// The outbox records of a stream from `seq` on (a resend from the hub's mark).
    pub fn outbox_from(&self, stream: StreamId, seq: u64) -> Result<Vec<Record>, StoreError> {
        self.outbox_page(stream, seq, usize::MAX)
    }

    /// Every pinned author.
    pub fn authors(&self) -> Result<Vec<PinnedAuthor>, StoreError> {
        let t = self.tx.open_table(AUTHORS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (_, v) = e?;
            out.push(from_row("authors", v.value())?);
        }
        Ok(out)
    }

    /// The hub's receipts this node holds for its records of `stream`, in `seq` order.
    pub fn receipts(
        &self,
        stream: StreamId,
    ) -> Result<Vec<tradecast_protocol::Receipt>, StoreError> {
        let t = self.tx.open_table(RECEIPTS)?;
        let mut out = Vec::new();
        for e in t.range((stream.0, 0)..=(stream.0, u64::MAX))? {
            let (_, v) = e?;
            out.push(from_row("receipts", v.value())?);
        }
        Ok(out)
    }

    /// (seq, header hash) of the last `n` committed feed items, in `seq` order.
    pub fn feed_recent(&self, n: usize) -> Result<Vec<(u64, ChainHash)>, StoreError> {
        let t = self.tx.open_table(FEED)?;
        let mut out = Vec::new();
        for e in t.iter()?.rev().take(n) {
            let (k, v) = e?;
            let record = Record::decode(v.value())
                .map_err(|e| StoreError::Row { table: "feed", message: e.to_string() })?;
            out.push((k.value(), record.header_hash()));
        }
        out.reverse();
        Ok(out)
    }

    /// The committed feed items from `seq` on, in order.
    pub fn feed_from(&self, seq: u64) -> Result<Vec<(u64, Record)>, StoreError> {
        let t = self.tx.open_table(FEED)?;
        let mut out = Vec::new();
        for e in t.range(seq..)? {
            let (k, v) = e?;
            let record = Record::decode(v.value())
                .map_err(|e| StoreError::Row { table: "feed", message: e.to_string() })?;
            out.push((k.value(), record));
        }
        Ok(out)
    }

    /// At most `limit` outbox records of a stream from `seq` on, in `seq` order.
    pub fn outbox_page(
        &self,
        stream: StreamId,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let t = self.tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for e in t.range((stream.0, seq)..=(stream.0, u64::MAX))?.take(limit) {
            let (_, v) = e?;
            out.push(
                Record::decode(v.value())
                    .map_err(|e| StoreError::Row { table: "outbox", message: e.to_string() })?,
            );
        }
        Ok(out)
    }

    /// The last `seq` this node signed on a stream (0 before the first record).
    pub fn outbox_tip(&self, stream: StreamId) -> Result<u64, StoreError> {
        Ok(stream_tip(&self.tx.open_table(OUTBOX)?, stream)?.0)
    }

    /// How many of the hub's receipts this node holds for its records of `stream`, and the
    /// highest `seq` they cover (0 without any).
    pub fn receipts_held(&self, stream: StreamId) -> Result<(u64, u64), StoreError> {
        let t = self.tx.open_table(RECEIPTS)?;
        let (mut n, mut last) = (0, 0);
        for e in t.range((stream.0, 0)..=(stream.0, u64::MAX))? {
            let (k, _) = e?;
            n += 1;
            last = k.value().1;
        }
        Ok((n, last))
    }

    /// The outbox records of a stream, in `seq` order.
    pub fn outbox(&self, stream: StreamId) -> Result<Vec<Record>, StoreError> {
        self.outbox_page(stream, 0, usize::MAX)
    }
}
