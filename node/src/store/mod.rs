//! The node's durable state: one redb file in the data dir (`node.redb`).
//!
//! Tables (state is keyed by account, `login@server`, so a second account needs no migration):
//! `meta` (schema version), `secrets` (the device identity), `settings`, `ea_keys` (EA secrets,
//! sealed), `accounts`, `signals`, `orders` (with their state machine), `executions`,
//! `positions`, `deals`, `equity`, `bars`, `outbox` (the signed, chained records for the hub,
//! keyed by stream and `seq`), `cursors` (deals, bars, the inbox watermark, order numbers),
//! `copy_log` (every policy evaluation with its steps, in time order), `approvals` (each
//! signal's approval: waiting or decided), `feed` (the downstream records as committed),
//! `receipts`, `authors`, and since schema 3 `hub_requests` (the hub's approval requests for
//! this device, by request id), `feature_grants` (its plan's grants, by grant id) and
//! `hub_refusals` (hub-signed feed items refused, by feed seq, with the reason), and since schema
//! 4 `symbol_specs` (the broker's symbol specs, one row per account and symbol, out of the
//! `accounts` row that every EA push rewrites).
//!
//! The code is split by table group: `account` (orders, executions, positions, deals, bars,
//! equity, cursors), `sync` (outbox, feed, receipts, authors), `hub_requests` (the schema-3
//! tables), `symbol_specs` (the schema-4 table), `upgrade` (the steps), [`hub_pin`] (the
//! enrolled hub and its account-fingerprint key in `settings`) and `device_keys` (this device's
//! `DeviceKeys` records in the outbox, a new one when the EA's account changes).
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

mod account;
mod device_keys;
pub mod hub_pin;
mod hub_requests;
mod symbol_specs;
mod sync;
mod upgrade;

pub use hub_requests::{HubRefusalRow, StoredGrant, StoredRequest};
pub use sync::{AUTHORED_STREAMS, HeldSource, PUBLISH_SETTING, PublishConsent};
pub use upgrade::{
    DRAWDOWN_MERGE_PENDING, UPGRADES, upgrade_1_to_2, upgrade_2_to_3, upgrade_3_to_4,
};

use symbol_specs::SYMBOL_SPECS;

use std::path::Path;

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, StorageBackend,
    TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tradecast_protocol::Identity;

/// The schema this node writes.
pub const SCHEMA_VERSION: u64 = 4;

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
/// Items of the providers' relay logs (protocol v2 sources other than the inbox): (source text,
/// seq) → the record's bytes, unchanged; each source's cursor is `cursors["", source text]`.
pub(crate) const RELAY: TableDefinition<'static, (&str, u64), &[u8]> =
    TableDefinition::new("relay");
/// The hub's receipts for this node's own records: (stream, seq) → the receipt (JSON).
pub(crate) const RECEIPTS: TableDefinition<'static, (u32, u64), &[u8]> =
    TableDefinition::new("receipts");
/// Authors whose feed records this node accepts: device id (text) → JSON [`PinnedAuthor`].
pub(crate) const AUTHORS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("authors");
/// The hub's approval requests for this device: request id (hex) → JSON [`StoredRequest`].
pub(crate) const HUB_REQUESTS: TableDefinition<'static, &str, &[u8]> =
    TableDefinition::new("hub_requests");
/// The feature grants of this device's plan: grant id (hex) → JSON [`StoredGrant`] (the grant
/// issued last under that id).
pub(crate) const FEATURE_GRANTS: TableDefinition<'static, &str, &[u8]> =
    TableDefinition::new("feature_grants");
/// Hub-signed feed items this node refused: feed seq → JSON [`HubRefusalRow`].
pub(crate) const HUB_REFUSALS: TableDefinition<'static, u64, &[u8]> =
    TableDefinition::new("hub_refusals");

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
    /// Only account history (closed trades, equity points, balance operations, summaries) goes
    /// through [`Tx::append_history`].
    #[error("a {kind} record is not account history")]
    NotHistory {
        /// The record kind's name.
        kind: &'static str,
    },
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
    tx.open_table(RELAY)?;
    tx.open_table(AUTHORS)?;
    tx.open_table(RECEIPTS)?;
    tx.open_table(HUB_REQUESTS)?;
    tx.open_table(FEATURE_GRANTS)?;
    tx.open_table(HUB_REFUSALS)?;
    tx.open_table(SYMBOL_SPECS)?;
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
}
