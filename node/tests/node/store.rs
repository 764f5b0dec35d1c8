//! The store: rows survive a reopen, the schema upgrade mechanism runs every step from every
//! older version and refuses a newer file, and a crash at any sync (or a write that fails
//! mid-commit) leaves exactly a prefix of the committed operations, checked against a model
//! (the model of cberner/redb `tests/crash_consistency.rs`).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableTable, StorageBackend, TableDefinition, WriteTransaction};
use tradecast_node::keys;
use tradecast_node::store::{SCHEMA_VERSION, Store, StoreError, Upgrade};
use tradecast_protocol::{Body, Heartbeat, Identity, StreamId, verify_chain};

const ACCOUNT: &str = "5012345@Demo-Server";

#[derive(Debug, Default)]
struct CrashState {
    live: Vec<u8>,
    durable: Vec<u8>,
    last_header: Vec<u8>,
    /// The last header write before the frozen sync: it may have reached the disk unsynced.
    crash_header: Vec<u8>,
    syncs: u64,
    writes: u64,
    /// From this sync on, syncs no longer make anything durable (the crash point).
    freeze_from: Option<u64>,
    /// Writes after this many fail with an I/O error (a full disk, a dying drive).
    fail_writes_after: Option<u64>,
}

/// A backend that remembers what a crash would leave: what the last completed sync made durable,
/// optionally with the header written just before the crash overlaid (it may reach the disk
/// without its sync). The process goes on after the frozen sync, but nothing it does counts.
#[derive(Clone, Debug, Default)]
struct CrashBackend {
    state: Arc<Mutex<CrashState>>,
}

impl CrashBackend {
    fn with_image(image: Vec<u8>) -> CrashBackend {
        let b = CrashBackend::default();
        {
            let mut s = b.state.lock().expect("lock");
            s.live = image.clone();
            s.durable = image;
        }
        b
    }

    fn syncs(&self) -> u64 {
        self.state.lock().expect("lock").syncs
    }

    fn images(&self) -> [Vec<u8>; 2] {
        let s = self.state.lock().expect("lock");
        let mut overlaid = s.durable.clone();
        if !s.crash_header.is_empty() && overlaid.len() >= s.crash_header.len() {
            overlaid[..s.crash_header.len()].copy_from_slice(&s.crash_header);
        }
        [s.durable.clone(), overlaid]
    }
}

impl StorageBackend for CrashBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.state.lock().expect("lock").live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let s = self.state.lock().expect("lock");
        let offset = usize::try_from(offset).expect("offset fits");
        if offset + out.len() > s.live.len() {
            return Err(std::io::Error::from(ErrorKind::UnexpectedEof));
        }
        out.copy_from_slice(&s.live[offset..offset + out.len()]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.state.lock().expect("lock").live.resize(usize::try_from(len).expect("len"), 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut s = self.state.lock().expect("lock");
        s.syncs += 1;
        if s.freeze_from.is_none_or(|f| s.syncs < f) {
            s.durable = s.live.clone();
        }
        if s.freeze_from == Some(s.syncs) {
            s.crash_header = s.last_header.clone();
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut s = self.state.lock().expect("lock");
        s.writes += 1;
        if s.fail_writes_after.is_some_and(|n| s.writes > n) {
            return Err(std::io::Error::other("injected write failure"));
        }
        let offset = usize::try_from(offset).expect("offset");
        if offset + data.len() > s.live.len() {
            s.live.resize(offset + data.len(), 0);
        }
        s.live[offset..offset + data.len()].copy_from_slice(data);
        if offset == 0 {
            s.last_header = data.to_vec();
        }
        Ok(())
    }
}

/// What the store holds, as the model sees it.
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    orders: BTreeMap<String, serde_json::Value>,
    deals_cursor: Option<i64>,
    n_records: usize,
}

fn identity() -> Identity {
    Identity::from_secret_bytes(&[7u8; 32], &[9u8; 32])
}

/// Operation `i`: overwrite one of 7 orders (some rows padded to grow the file), move the deals
/// cursor, append a signed record: one transaction, as an ack is.
fn op(store: &Store, id: &Identity, i: usize, model: &mut Model) -> Result<(), StoreError> {
    let order_id = format!("ORDER{:07}", i % 7);
    let pad = if i % 5 == 4 { "x".repeat(6_000) } else { String::new() };
    let row = serde_json::json!({ "n": i, "state": if i.is_multiple_of(2) { "sent" } else { "acked" }, "pad": pad });
    store.write(|tx| {
        tx.put_order(ACCOUNT, &order_id, &row)?;
        tx.set_cursor(ACCOUNT, "deals", i as i64)?;
        let hb = Heartbeat {
            device: id.device_id(),
            at_ms: i as i64,
            ea_connected: true,
            terminal_time_ms: None,
        };
        tx.append_record(id, StreamId::DEVICE, &Body::Heartbeat(hb), i as i64)?;
        Ok(())
    })?;
    model.orders.insert(order_id, row);
    model.deals_cursor = Some(i as i64);
    model.n_records += 1;
    Ok(())
}

fn read_model(store: &Store, id: &Identity) -> Model {
    let view = store.read().expect("read");
    let rows: Vec<serde_json::Value> = view.orders(ACCOUNT).expect("orders");
    let orders = rows
        .into_iter()
        .map(|r| (format!("ORDER{:07}", r["n"].as_u64().expect("n") % 7), r))
        .collect();
    let records = view.outbox(StreamId::DEVICE).expect("outbox");
    // The chain is whole: seq 1.. without a gap, each linked and signed.
    verify_chain(&records, &id.identity_key(), StreamId::DEVICE).expect("the outbox chain holds");
    Model {
        orders,
        deals_cursor: view.cursor(ACCOUNT, "deals").expect("cursor"),
        n_records: records.len(),
    }
}

const N_OPS: usize = 12;

/// Runs the workload on `backend`; the model after each successful op (index 0: before any).
fn run(backend: CrashBackend, id: &Identity) -> (Vec<Model>, Vec<u64>, bool) {
    let mut models = vec![Model::default()];
    let mut syncs_after = Vec::new();
    let Ok(store) = Store::open_backend(backend.clone()) else {
        return (models, syncs_after, true);
    };
    // Sync count once the (empty) store exists.
    syncs_after.push(backend.syncs());
    let mut model = Model::default();
    let mut failed = false;
    for i in 0..N_OPS {
        match op(&store, id, i, &mut model) {
            Ok(()) => {
                models.push(model.clone());
                syncs_after.push(backend.syncs());
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    // Keep the store from syncing more at drop time in the images: they were taken by the caller
    // from the backend's state, which is frozen or failing by now.
    drop(store);
    (models, syncs_after, failed)
}

#[test]
fn a_crash_at_any_sync_leaves_a_prefix_of_the_committed_operations() {
    let id = identity();
    // Pass 1: how many syncs the whole workload takes.
    let probe = CrashBackend::default();
    let (models, syncs_after, failed) = run(probe.clone(), &id);
    assert!(!failed);
    assert_eq!(syncs_after.len(), N_OPS + 1);
    assert_eq!(models.len(), N_OPS + 1);
    let total = *syncs_after.last().expect("ops ran");
    assert!(total >= N_OPS as u64, "every commit syncs: {total} syncs for {N_OPS} ops");
    let mut n_checked = 0;
    for freeze in 1..=total + 1 {
        let backend = CrashBackend::default();
        backend.state.lock().expect("lock").freeze_from = Some(freeze);
        let (models, syncs_after, failed) = run(backend.clone(), &id);
        assert!(!failed, "a frozen disk still accepts writes");
        // Whether the empty store was complete before the frozen sync, and how many ops'
        // commits finished before it (those are durable).
        let created = syncs_after[0] < freeze;
        let n_durable = syncs_after[1..].iter().filter(|s| **s < freeze).count();
        for image in backend.images() {
            let store = match Store::open_backend(CrashBackend::with_image(image)) {
                Ok(s) => s,
                // A crash while the file itself was being created (during `init`, before any
                // state existed) may leave a file redb does not recognise; nothing was lost.
                Err(_) if !created => continue,
                Err(e) => panic!("freeze at sync {freeze}: the crash image does not open: {e}"),
            };
            let got = read_model(&store, &id);
            let j = models.iter().position(|m| *m == got).unwrap_or_else(|| {
                panic!("freeze at sync {freeze}: recovered state is no prefix: {got:?}")
            });
            assert!(
                j >= n_durable,
                "freeze at sync {freeze}: {n_durable} ops were committed, only {j} survived"
            );
            n_checked += 1;
        }
    }
    assert!(n_checked > N_OPS, "{n_checked} crash images checked");
}

#[test]
fn a_write_that_fails_mid_commit_loses_nothing_committed_and_commits_nothing_half() {
    let id = identity();
    let probe = CrashBackend::default();
    let _ = run(probe.clone(), &id);
    let total_writes = probe.state.lock().expect("lock").writes;
    let mut n_failed_runs = 0;
    for fail_after in (0..total_writes).step_by(3) {
        let backend = CrashBackend::default();
        backend.state.lock().expect("lock").fail_writes_after = Some(fail_after);
        let (models, syncs_after, failed) = run(backend.clone(), &id);
        if failed {
            n_failed_runs += 1;
        }
        let n_ok = models.len() - 1;
        let [durable, _] = backend.images();
        let store = match Store::open_backend(CrashBackend::with_image(durable)) {
            Ok(s) => s,
            // The failure hit the file's creation: no store ever existed, nothing was lost.
            Err(_) if syncs_after.is_empty() => continue,
            Err(e) => panic!("fail after {fail_after} writes: image does not open: {e}"),
        };
        let got = read_model(&store, &id);
        // Exactly the ops that returned Ok (the failed one did not half-happen).
        let j = models.iter().position(|m| *m == got).unwrap_or_else(|| {
            panic!("fail after {fail_after} writes: recovered state is no prefix: {got:?}")
        });
        assert_eq!(j, n_ok, "fail after {fail_after} writes: {n_ok} ops returned Ok");
    }
    assert!(n_failed_runs > 3, "the injected failures were hit ({n_failed_runs} runs)");
}

#[test]
fn rows_identity_and_keys_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.redb");
    let id = keys::new_identity().expect("rng");
    {
        let store = Store::open(&path).expect("open");
        store.write(|tx| tx.put_identity(&id)).expect("identity");
        assert!(matches!(
            store.write(|tx| tx.put_identity(&id)),
            Err(StoreError::AlreadyInitialized)
        ));
        store
            .write(|tx| {
                tx.put_ea_key("ea_1", b"sealed")?;
                tx.set_cursor(ACCOUNT, "bars:EURUSD:H1", 42)?;
                tx.put_order(ACCOUNT, "A", &serde_json::json!({"x": 1}))
            })
            .expect("write");
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let view = store.read().expect("read");
    assert_eq!(view.identity().expect("id").expect("present").device_id(), id.device_id());
    assert_eq!(view.ea_keys().expect("keys"), vec![("ea_1".to_owned(), b"sealed".to_vec())]);
    assert_eq!(view.cursor(ACCOUNT, "bars:EURUSD:H1").expect("cursor"), Some(42));
    assert_eq!(view.cursor("other@acct", "bars:EURUSD:H1").expect("cursor"), None);
    let orders: Vec<serde_json::Value> = view.orders(ACCOUNT).expect("orders");
    assert_eq!(orders, vec![serde_json::json!({"x": 1})]);
    assert!(view.orders::<serde_json::Value>("other@acct").expect("orders").is_empty());
}

const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
const LEGACY: TableDefinition<'static, &str, &str> = TableDefinition::new("legacy_v1");
const STEPS: TableDefinition<'static, u64, u64> = TableDefinition::new("steps_run");

fn mark(tx: &WriteTransaction, step: u64) -> Result<(), StoreError> {
    let mut t = tx.open_table(STEPS).map_err(redb::Error::from)?;
    t.insert(step, step).map_err(redb::Error::from)?;
    Ok(())
}

fn step_1_to_2(tx: &WriteTransaction) -> Result<(), StoreError> {
    // A real-looking step: rewrite a version-1 table into its version-2 shape.
    let v = {
        let t = tx.open_table(LEGACY).map_err(redb::Error::from)?;
        let got = t.get("greeting").map_err(redb::Error::from)?;
        got.map(|g| g.value().to_owned())
    };
    if let Some(v) = v {
        let mut t = tx.open_table(LEGACY).map_err(redb::Error::from)?;
        t.insert("greeting", format!("{v} (v2)").as_str()).map_err(redb::Error::from)?;
    }
    mark(tx, 1)
}

fn step_2_to_3(tx: &WriteTransaction) -> Result<(), StoreError> {
    mark(tx, 2)
}

/// A file at `version` as that version's node wrote it.
fn file_at(version: u64) -> Database {
    let db = Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .expect("db");
    let tx = db.begin_write().expect("tx");
    {
        tx.open_table(META).expect("meta").insert("schema_version", version).expect("insert");
        tx.open_table(LEGACY).expect("legacy").insert("greeting", "hello").expect("insert");
    }
    tx.commit().expect("commit");
    db
}

#[test]
fn upgrades_run_every_missing_step_from_every_older_version() {
    let steps: &[Upgrade] = &[step_1_to_2, step_2_to_3];
    let current = 3;
    for from in 1..=current {
        let store = Store::open_db_with_upgrades(file_at(from), steps, current)
            .unwrap_or_else(|e| panic!("from version {from}: {e}"));
        assert_eq!(store.schema_version().expect("version"), current, "from {from}");
    }
    // The real schema: every older version (none yet) opens, the current one reopens as is.
    let store = Store::open_backend(redb::backends::InMemoryBackend::new()).expect("fresh");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    assert!(tradecast_node::store::UPGRADES.len() as u64 == SCHEMA_VERSION - 1);
}

#[test]
fn upgrade_steps_run_once_each_and_transform_the_rows() {
    use redb::ReadableDatabase;
    let steps: &[Upgrade] = &[step_1_to_2, step_2_to_3];
    let check = |from: u64, want_steps: &[u64], want_greeting: &str| {
        let store = Store::open_db_with_upgrades(file_at(from), steps, 3).expect("upgrade");
        let tx = store.db().begin_read().expect("read");
        let ran: Vec<u64> = match tx.open_table(STEPS) {
            Ok(t) => t.iter().expect("iter").map(|e| e.expect("row").0.value()).collect(),
            Err(_) => Vec::new(),
        };
        assert_eq!(ran, want_steps, "from version {from}");
        let t = tx.open_table(LEGACY).expect("legacy");
        let g = t.get("greeting").expect("get").expect("row").value().to_owned();
        assert_eq!(g, want_greeting, "from version {from}");
    };
    check(1, &[1, 2], "hello (v2)");
    check(2, &[2], "hello");
    check(3, &[], "hello");
}

#[test]
fn a_newer_file_is_refused_and_left_untouched() {
    let steps: &[Upgrade] = &[];
    match Store::open_db_with_upgrades(file_at(SCHEMA_VERSION + 1), steps, SCHEMA_VERSION) {
        Err(StoreError::NewerSchema { found }) => assert_eq!(found, SCHEMA_VERSION + 1),
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    // A version with no step to reach the current one is refused too (never half-upgraded).
    assert!(matches!(
        Store::open_db_with_upgrades(file_at(1), &[], 2),
        Err(StoreError::NoUpgrade { from: 1 })
    ));
}

#[test]
fn the_inbox_watermark_and_a_resend_from_the_mark() {
    let store = Store::open_backend(redb::backends::InMemoryBackend::new()).expect("store");
    let id = identity();
    assert_eq!(store.read().expect("read").inbox_watermark().expect("mark"), 0);
    store
        .write(|tx| {
            tx.set_inbox_watermark(41)?;
            for i in 0..5 {
                let hb = Heartbeat {
                    device: id.device_id(),
                    at_ms: i,
                    ea_connected: false,
                    terminal_time_ms: None,
                };
                tx.append_record(&id, StreamId::DEVICE, &Body::Heartbeat(hb), i)?;
            }
            Ok(())
        })
        .expect("write");
    let view = store.read().expect("read");
    assert_eq!(view.inbox_watermark().expect("mark"), 41);
    let from3: Vec<u64> = view
        .outbox_from(StreamId::DEVICE, 3)
        .expect("outbox")
        .iter()
        .map(|r| r.header().seq)
        .collect();
    assert_eq!(from3, vec![3, 4, 5]);
    assert!(view.outbox_from(StreamId::SIGNALS, 1).expect("other stream").is_empty());
}

/// A data dir's store as schema 1 wrote it: an account whose day start is `day` (days since the
/// epoch in server time) and `day_start_equity`, and the trader's saved policy, if any, with
/// `drawdown_lock_pct`.
fn schema_1_store(path: &std::path::Path, saved_lock: Option<&str>) {
    const ACCOUNTS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("accounts");
    let store = Store::open_db_with_upgrades(Database::create(path).expect("create"), &[], 1)
        .expect("a schema 1 file");
    tradecast_node::runtime::init_store(&store).expect("init");
    // 2023-11-15 at UTC+2: day 19676 in server time started 2023-11-14 22:00 UTC.
    let row = serde_json::json!({
        "account": ACCOUNT, "login": 5012345, "server": "Demo-Server", "company": "Demo",
        "currency": "USD", "margin_mode": "hedging", "server_utc_offset_s": 7200,
        "symbols": [], "peak_equity": "10000", "locked": false, "lock_reason": "",
        "balance": "10000", "equity": "9850", "margin": null, "free_margin": null,
        "last_point": null, "last_snapshot": "", "next_order_no": 3, "market_ms": 1700042400000_i64,
        "day": 19676, "day_start_equity": "10000", "tick_values": {}, "pending_orders": []
    });
    let tx = store.db().begin_write().expect("tx");
    tx.open_table(ACCOUNTS)
        .expect("accounts")
        .insert(ACCOUNT, serde_json::to_vec(&row).expect("json").as_slice())
        .expect("insert");
    tx.commit().expect("commit");
    if let Some(lock) = saved_lock {
        let mut p = tradecast_node::policy::PolicySettings::default();
        p.risk.drawdown_lock_pct = lock.parse().expect("pct");
        let text = serde_json::to_string(&p).expect("json");
        store.write(|tx| tx.set_setting("policy", &text)).expect("save");
    }
}

/// Opens a schema 1 store as this node does with the old guard cap (`drawdown_max_pct` in
/// `config.toml`); the drawdown cap in force afterwards.
fn upgraded_cap(saved_lock: Option<&str>, old_cap: &str, config_lock: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(tradecast_node::store::FILE_NAME);
    schema_1_store(&path, saved_lock);
    let store = Store::open(&path).expect("upgrade");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let mut settings = tradecast_node::runtime::Settings {
        upgrade_drawdown_max_pct: old_cap.parse().expect("pct"),
        ..Default::default()
    };
    settings.policy.risk.drawdown_lock_pct = config_lock.parse().expect("pct");
    let node = tradecast_node::runtime::Node::new(store, settings, 0).expect("node");
    let lock = node.policy().expect("policy").risk.drawdown_lock_pct.to_string();
    // The account's day start survived as one `DayStart`.
    let acc = node.account(ACCOUNT).expect("read").expect("account");
    assert_eq!(
        acc.day_start,
        Some(tradecast_node::policy::risk::DayStart {
            day_start_ms: 1_699_999_200_000,
            equity: rust_decimal::Decimal::from(10_000),
        }),
    );
    assert_eq!(acc.next_order_no, 3);
    drop(node);
    // Merged once: a later start with a looser old cap changes nothing.
    let store = Store::open(&path).expect("reopen");
    let mut settings = tradecast_node::runtime::Settings {
        upgrade_drawdown_max_pct: rust_decimal::Decimal::from(99),
        ..Default::default()
    };
    settings.policy.risk.drawdown_lock_pct = config_lock.parse().expect("pct");
    let node = tradecast_node::runtime::Node::new(store, settings, 0).expect("node");
    assert_eq!(node.policy().expect("policy").risk.drawdown_lock_pct.to_string(), lock);
    lock
}

#[test]
fn the_upgrade_to_schema_2_keeps_the_day_start_and_the_stricter_drawdown_cap() {
    // The trader's saved lock was looser than the guard's cap: the guard's wins.
    assert_eq!(upgraded_cap(Some("30"), "15", "20"), "15");
    // The saved lock was stricter: it stays.
    assert_eq!(upgraded_cap(Some("10"), "20", "20"), "10");
    // No saved policy: the configured one, with the guard's cap when that is stricter (saved).
    assert_eq!(upgraded_cap(None, "12.5", "20"), "12.5");
    assert_eq!(upgraded_cap(None, "25", "20"), "20");
}

/// A spec as a schema-3 account row held it (JSON).
fn spec_json(symbol: &str) -> serde_json::Value {
    serde_json::json!({
        "symbol": symbol, "digits": 5, "point": "0.00001", "tick_size": "0.00001",
        "tick_value_profit": "1", "tick_value_loss": "1", "contract_size": "100000",
        "volume_min": "0.01", "volume_max": "100", "volume_step": "0.01", "stops_level": 0,
        "freeze_level": 0, "trade_mode": "full", "currency_base": "EUR", "currency_profit": "USD",
        "currency_margin": "EUR", "sessions": []
    })
}

#[test]
fn the_upgrade_to_schema_4_moves_the_specs_out_of_the_account_rows() {
    const ACCOUNTS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("accounts");
    const SPECS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("symbol_specs");
    let other = "5012345@Demo-Server2";
    // A schema-3 file as that node wrote it: no `symbol_specs` table, the specs in the rows.
    let db = Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .expect("db");
    let tx = db.begin_write().expect("tx");
    {
        tx.open_table(META).expect("meta").insert("schema_version", 3).expect("insert");
        let mut t = tx.open_table(ACCOUNTS).expect("accounts");
        let row = |account: &str, symbols: serde_json::Value| {
            serde_json::to_vec(&serde_json::json!({
                "account": account, "login": 5012345, "server": "Demo-Server",
                "company": "Demo", "currency": "USD", "margin_mode": "hedging",
                "server_utc_offset_s": 0, "symbols": symbols, "peak_equity": "10000",
                "next_order_no": 7, "market_ms": 1700042400000_i64, "tick_values": {},
                "pending_orders": []
            }))
            .expect("json")
        };
        let mine = row(ACCOUNT, serde_json::json!([spec_json("EURUSD"), spec_json("GBPUSD")]));
        t.insert(ACCOUNT, mine.as_slice()).expect("insert");
        let theirs = row(other, serde_json::json!([spec_json("XAUUSD")]));
        t.insert(other, theirs.as_slice()).expect("insert");
    }
    tx.commit().expect("commit");

    let store = Store::open_db_with_upgrades(
        db,
        tradecast_node::store::UPGRADES,
        tradecast_node::store::SCHEMA_VERSION,
    )
    .expect("upgrade");
    assert_eq!(store.schema_version().expect("version"), 4);
    let view = store.read().expect("read");
    let names = |account: &str| -> Vec<String> {
        view.symbol_specs(account).expect("specs").into_iter().map(|s| s.symbol).collect()
    };
    assert_eq!(names(ACCOUNT), ["EURUSD", "GBPUSD"]);
    assert_eq!(names(other), ["XAUUSD"]);
    let eurusd = view.symbol_spec(ACCOUNT, "EURUSD").expect("get").expect("moved");
    assert_eq!(eurusd.volume_min, rust_decimal::Decimal::new(1, 2));
    drop(view);
    {
        use redb::ReadableDatabase;
        let read = store.db().begin_read().expect("read");
        let t = read.open_table(ACCOUNTS).expect("accounts");
        for account in [ACCOUNT, other] {
            let bytes = t.get(account).expect("get").expect("row").value().to_vec();
            let row: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            assert!(row.get("symbols").is_none(), "{account}: the row keeps no specs");
            assert_eq!(row["next_order_no"], 7, "{account}: the rest of the row stays");
        }
        let n = read.open_table(SPECS).expect("specs").iter().expect("iter").count();
        assert_eq!(n, 3);
    }
    // The node reads the account as before.
    tradecast_node::runtime::init_store(&store).expect("init");
    let node = tradecast_node::runtime::Node::new(store, Default::default(), 0).expect("node");
    let acc = node.account(ACCOUNT).expect("read").expect("account");
    assert_eq!((acc.next_order_no, acc.currency.as_str()), (7, "USD"));
    assert_eq!(node.symbol_names(ACCOUNT).expect("names"), ["EURUSD", "GBPUSD"]);

    // A fresh store starts at schema 4 with the table there.
    let fresh = Store::open_backend(redb::backends::InMemoryBackend::new()).expect("fresh");
    assert_eq!(fresh.schema_version().expect("version"), 4);
    assert!(fresh.read().expect("read").symbol_specs(ACCOUNT).expect("specs").is_empty());
}

fn hello_for_close_all() -> tradecast_protocol::ea::Hello {
    use tradecast_protocol::ea;
    ea::Hello {
        login: 5012345,
        server: "Demo-Server".into(),
        company: "Demo".into(),
        currency: "USD".into(),
        leverage: 100,
        margin_mode: ea::MarginMode::Hedging,
        terminal_build: 1,
        ea_version: "test".into(),
        server_utc_offset_s: 0,
        terminal_time_ms: 1_700_042_400_000,
        symbols: Vec::new(),
        floor_breach: None,
        instance: None,
    }
}

/// The close-all's order and its signed `CloseAll` command: both or neither.
fn close_all_counts(store: &Store) -> (usize, usize) {
    use tradecast_node::runtime::{OrderAction, OrderRow};
    let view = store.read().expect("read");
    let orders: Vec<OrderRow> = view.orders(ACCOUNT).expect("orders");
    let n_orders =
        orders.iter().filter(|o| matches!(o.action, OrderAction::CloseAll { .. })).count();
    (n_orders, view.outbox(StreamId::COMMANDS).expect("commands").len())
}

#[test]
fn close_all_commits_its_order_and_its_signed_command_in_one_transaction() {
    let setup = || {
        let backend = CrashBackend::default();
        let store = Store::open_backend(backend.clone()).expect("store");
        tradecast_node::runtime::init_store(&store).expect("init");
        let node = tradecast_node::runtime::Node::new(store, Default::default(), 0).expect("node");
        node.hello(hello_for_close_all(), 0).expect("hello");
        (backend, node)
    };
    let (probe, node) = setup();
    let w0 = probe.state.lock().expect("lock").writes;
    node.close_all(ACCOUNT, "test").expect("close all");
    let n = probe.state.lock().expect("lock").writes - w0;
    let mut n_failed = 0;
    for k in 0..n {
        let (backend, node) = setup();
        let w0 = backend.state.lock().expect("lock").writes;
        backend.state.lock().expect("lock").fail_writes_after = Some(w0 + k);
        if node.close_all(ACCOUNT, "test").is_err() {
            n_failed += 1;
        }
        drop(node);
        let [durable, _] = backend.images();
        let store = Store::open_backend(CrashBackend::with_image(durable)).expect("reopen");
        let (orders, commands) = close_all_counts(&store);
        assert_eq!(
            orders, commands,
            "a failure after {k} writes: {orders} close-all orders, {commands} commands"
        );
    }
    assert!(n_failed > 0, "the injected failures were hit");
}
