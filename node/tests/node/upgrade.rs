//! The store upgrade of protocol v2 (schema 2 → 3), from a store written by the node before it:
//! `node/tests/fixtures/schema2/node.redb` (store schema 2, record version 1: an account, a
//! pinned provider and hub, a relayed signal refused by the policy with its signed `Approval`,
//! the node's own signal and its `DeviceKeys`). It was written by `write_schema_2_fixture` in
//! this file at commit 9eb9e08 (`TRADECAST_WRITE_SCHEMA2_FIXTURE=1 cargo nextest run -p
//! tradecast-node the_schema_2_fixture` on that commit) and is never rewritten: a later node
//! would write a later schema.

use std::path::PathBuf;

use rust_decimal::Decimal;
use tradecast_node::runtime::{Node, Settings};
use tradecast_node::store::Store;
use tradecast_protocol::{Body, EntryKind, Identity, Side, Signal, SignalId, StreamId, Timeframe};

/// Wednesday 2023-11-15 10:00 UTC, server time UTC+0.
const T: i64 = 1_700_042_400_000;
const H: i64 = 3_600_000;

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema2")
}

/// The provider whose records the fixture's feed holds.
pub fn provider() -> Identity {
    Identity::from_secret_bytes(&[21; 32], &[22; 32])
}

/// The hub the fixture's node pinned.
pub fn hub() -> Identity {
    Identity::from_secret_bytes(&[31; 32], &[32; 32])
}

pub fn feed_signal(author: &Identity) -> Signal {
    Signal {
        id: SignalId([0x5a; 16]),
        provider: author.device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 1,
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        side: Side::Buy,
        entry_kind: EntryKind::Market,
        entry: Decimal::new(107_000, 5),
        stop: Decimal::new(106_000, 5),
        tp1: Decimal::new(109_000, 5),
        tp2: None,
        bar_time_ms: T - H,
        expires_at_ms: T + H,
        leg: 1,
        indicators: Vec::new(),
        rr: Decimal::TWO,
    }
}

/// A copy of the fixture's data dir to open (the committed file is never written).
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = fixture_dir().join(tradecast_node::store::FILE_NAME);
    let len = std::fs::metadata(&from).expect("the fixture exists").len();
    assert!(len < 200 * 1024, "the fixture stays small ({len} bytes)");
    std::fs::copy(&from, dir.path().join(tradecast_node::store::FILE_NAME)).expect("copy");
    dir
}

#[test]
fn a_schema_2_store_from_the_previous_node_upgrades_to_3_and_reads_back_whole() {
    let dir = fixture_copy();
    let path = dir.path().join(tradecast_node::store::FILE_NAME);
    {
        use redb::{ReadableDatabase, TableDefinition};
        let db = redb::Database::open(&path).expect("redb");
        let read = db.begin_read().expect("read");
        let meta = read.open_table(TableDefinition::<&str, u64>::new("meta")).expect("meta");
        let version = meta.get("schema_version").expect("get").expect("a version").value();
        assert_eq!(version, 2, "the fixture is schema 2");
        assert!(
            read.open_table(TableDefinition::<&str, &[u8]>::new("hub_requests")).is_err(),
            "schema 2 has no hub_requests table"
        );
    }
    let store = Store::open(&path).expect("upgrade");
    // Through schema 3 to the current one (4: the symbol specs in their own table).
    assert_eq!(store.schema_version().expect("version"), 4);
    assert_eq!(tradecast_node::store::SCHEMA_VERSION, 4);
    let view = store.read().expect("read");
    let me = view.identity().expect("identity").expect("init ran");
    // The outbox: every record keeps verifying under its version-1 header; the approval and the
    // device keys decode with their old layout.
    let shared = view.outbox(StreamId::SHARED).expect("shared");
    assert!(!shared.is_empty(), "the fixture holds a signed approval");
    tradecast_protocol::verify_chain(&shared, &me.identity_key(), StreamId::SHARED)
        .expect("the v1 chain verifies");
    for r in &shared {
        assert_eq!(r.header().version, 1);
        let Ok(Body::Approval(a)) = r.body() else { panic!("an approval: {r:?}") };
        assert_eq!(a.signal_id, feed_signal(&provider()).id);
        assert_eq!(a.lots, None, "a v1 approval has no lots");
        assert!(!matches!(a.decided_by, tradecast_protocol::DecidedBy::Remote { .. }));
    }
    let device = view.outbox(StreamId::DEVICE).expect("device");
    assert_eq!(device.len(), 1);
    let Ok(Body::DeviceKeys(keys)) = device[0].body() else { panic!("device keys") };
    assert_eq!((keys.label.as_str(), keys.account_fingerprint), ("trader pc", None));
    let signals = view.outbox(StreamId::SIGNALS).expect("signals");
    assert_eq!(signals.len(), 1);
    signals[0].verify(&me.identity_key()).expect("own signal verifies");
    // The feed as committed: the provider's keys and signal, pinned.
    let feed = view.feed_from(1).expect("feed");
    assert_eq!(feed.len(), 2);
    assert_eq!(view.inbox_watermark().expect("watermark"), 2);
    assert_eq!(view.authors().expect("authors")[0].key, provider().identity_key());
    // The schema-3 tables exist, empty.
    assert!(view.hub_requests().expect("requests").is_empty());
    assert!(view.feature_grants().expect("grants").is_empty());
    assert!(view.hub_refusals().expect("refusals").is_empty());
    drop(view);

    // The node starts on it: account, signals and the approval row (JSON without `lots`).
    let node = Node::new(store, Settings::default(), T).expect("node");
    let account = node.pick_account(None).expect("the account");
    assert_eq!(account, "42@Test-Server");
    // Schema 4: the row's Market Watch moved to `symbol_specs`.
    assert_eq!(node.symbol_names(&account).expect("specs"), ["EURUSD"]);
    assert_eq!(node.signals().expect("signals").len(), 2);
    let approvals = node.approvals().expect("approvals");
    assert_eq!(approvals.len(), 1);
    let decided = approvals[0].pending.decided().expect("decided");
    assert_eq!(decided.lots, None);
    assert_eq!(Ok(Body::Approval(decided.clone())), shared[shared.len() - 1].body());
    assert_eq!(
        tradecast_node::store::hub_pin::hub_pin(node.store()).expect("pin").expect("pinned").key,
        hub().identity_key()
    );
    assert!(!node.publish_consent().expect("publish").any(), "publishing is off after the upgrade");
    // New records chain on after the v1 ones, in version 2.
    let point = Body::EquityPoint(tradecast_protocol::EquityPoint {
        device: me.device_id(),
        at_ms: T,
        balance: Decimal::from(100),
        equity: Decimal::from(100),
    });
    node.record_history(&point).expect("history");
    let pending = tradecast_protocol::Pending {
        signal_id: feed_signal(&provider()).id,
        device: me.device_id(),
        expires_at_ms: T + H,
        min_lots: Decimal::new(1, 2),
        max_lots: Decimal::ONE,
        risk_preview: None,
        blocking: vec![],
        at_ms: T,
    };
    node.record_pending(&pending).expect("pending");
    let shared = node.store().read().expect("read").outbox(StreamId::SHARED).expect("shared");
    tradecast_protocol::verify_chain(&shared, &me.identity_key(), StreamId::SHARED)
        .expect("a v2 record chains after v1 ones");
    assert_eq!(shared.last().expect("last").header().version, 2);
    drop(node);
    // Reopening is a no-op.
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.schema_version().expect("version"), 4);
}
