//! The account fingerprint on the node's DEVICE stream: an EA's hello signs a `DeviceKeys`
//! record with the fingerprint of its trading account under the hub's key, once per account
//! change (a second hello or a restart on the same account appends nothing), nothing without
//! the key, and a key learned after the hello fingerprints the account heard from last.

use std::path::Path;
use std::sync::Arc;

use rust_decimal::Decimal;
use tradecast_node::clock::{ManualClock, MarketMs, Now, SeededIds, WallMs};
use tradecast_node::runtime::{Node, Settings, init_store};
use tradecast_node::store::Store;
use tradecast_protocol::ea::{self, MarginMode};
use tradecast_protocol::{
    AccountFingerprint, Body, DeviceKeys, Heartbeat, Identity, Kind, Record, StreamId,
};

/// Wednesday 2026-03-04 12:00 UTC.
const T0: i64 = 1_772_625_600_000;
const KEY: [u8; 32] = [0x5a; 32];

fn open(dir: &Path) -> (Arc<Node>, ManualClock) {
    let store = Store::open(&dir.join("node.redb")).expect("store");
    let clock = ManualClock::at(T0);
    let node = Node::with_sources(
        store,
        Settings::default(),
        T0,
        Box::new(clock.clone()),
        Box::new(SeededIds::new(7)),
    )
    .expect("node");
    (node, clock)
}

/// A fresh data dir whose node signed its enrolment keys (no fingerprint), as `enrol` does.
fn enrolled(dir: &Path) -> Identity {
    let store = Store::open(&dir.join("node.redb")).expect("store");
    init_store(&store).expect("identity");
    let identity = store.read().unwrap().identity().unwrap().unwrap();
    let keys = DeviceKeys {
        identity: identity.identity_key(),
        sealing: identity.sealing_public_key(),
        label: "office PC".into(),
        at_ms: T0 - 1_000,
        account_fingerprint: None,
    };
    store
        .write(|tx| {
            tx.append_record(&identity, StreamId::DEVICE, &Body::DeviceKeys(keys), T0 - 1_000)
        })
        .unwrap();
    identity
}

fn with_key(node: &Node) {
    node.store().write(|tx| tradecast_node::store::hub_pin::set_fingerprint_key(tx, &KEY)).unwrap();
}

fn hello(node: &Node, clock: &ManualClock, login: u64, server: &str) {
    let h = ea::Hello {
        login,
        server: server.into(),
        company: "Test".into(),
        currency: "USD".into(),
        leverage: 100,
        margin_mode: MarginMode::Hedging,
        terminal_build: 1,
        ea_version: "test".into(),
        server_utc_offset_s: 7_200,
        terminal_time_ms: T0,
        symbols: vec![ea::SymbolSpec {
            symbol: "EURUSD".into(),
            digits: 5,
            point: Decimal::new(1, 5),
            tick_size: Decimal::new(1, 5),
            tick_value_profit: Decimal::ONE,
            tick_value_loss: Decimal::ONE,
            contract_size: Decimal::from(100_000),
            volume_min: Decimal::new(1, 2),
            volume_max: Decimal::from(100),
            volume_step: Decimal::new(1, 2),
            stops_level: 0,
            freeze_level: 0,
            trade_mode: ea::TradeMode::Full,
            currency_base: "EUR".into(),
            currency_profit: "USD".into(),
            currency_margin: "EUR".into(),
            sessions: Vec::new(),
        }],
        floor_breach: None,
        instance: None,
    };
    use tradecast_node::clock::Clock;
    let now = Now { wall_ms: WallMs(clock.wall_ms()), market_ms: MarketMs(T0) };
    node.handle_hello(now, h).expect("hello");
}

/// The `DeviceKeys` records of the DEVICE stream, in order, each checked against the identity.
fn device_keys(node: &Node, identity: &Identity) -> Vec<DeviceKeys> {
    let records: Vec<Record> = node.store().read().unwrap().outbox(StreamId::DEVICE).unwrap();
    records
        .iter()
        .filter(|r| r.header().kind == Kind::DeviceKeys)
        .map(|r| {
            r.verify(&identity.identity_key()).expect("signed by the device");
            match r.body().unwrap() {
                Body::DeviceKeys(k) => k,
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

#[test]
fn a_hello_signs_the_fingerprint_once_per_account() {
    let dir = tempfile::tempdir().unwrap();
    let identity = enrolled(dir.path());
    let (node, clock) = open(dir.path());
    // Without the hub's key: nothing to sign.
    hello(&node, &clock, 42, "Test-Server");
    assert_eq!(device_keys(&node, &identity).len(), 1);

    with_key(&node);
    clock.set(T0 + 1_000);
    hello(&node, &clock, 42, "Test-Server");
    let keys = device_keys(&node, &identity);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let expect = AccountFingerprint::compute(&KEY, "Test-Server", 42);
    assert_eq!(keys[1].account_fingerprint, Some(expect));
    assert_eq!(keys[1].identity, identity.identity_key());
    assert_eq!(keys[1].sealing, identity.sealing_public_key());
    assert_eq!(keys[1].label, "office PC");
    assert_eq!(keys[1].at_ms, T0 + 1_000);

    // The same account again, with a heartbeat between: nothing more.
    let beat = Heartbeat {
        device: identity.device_id(),
        at_ms: T0 + 2_000,
        ea_connected: true,
        terminal_time_ms: None,
    };
    node.store()
        .write(|tx| {
            tx.append_record(&identity, StreamId::DEVICE, &Body::Heartbeat(beat), T0 + 2_000)
        })
        .unwrap();
    clock.set(T0 + 3_000);
    hello(&node, &clock, 42, "Test-Server");
    assert_eq!(device_keys(&node, &identity).len(), 2);

    // A restart on the same account: nothing more either.
    drop(node);
    let (node, clock) = open(dir.path());
    clock.set(T0 + 4_000);
    hello(&node, &clock, 42, "Test-Server");
    assert_eq!(device_keys(&node, &identity).len(), 2);

    // Another account appends one; back to the first appends one more.
    hello(&node, &clock, 43, "Test-Server");
    hello(&node, &clock, 43, "Test-Server");
    let keys = device_keys(&node, &identity);
    assert_eq!(keys.len(), 3);
    assert_eq!(
        keys[2].account_fingerprint,
        Some(AccountFingerprint::compute(&KEY, "Test-Server", 43))
    );
    hello(&node, &clock, 42, "Test-Server");
    let keys = device_keys(&node, &identity);
    assert_eq!(keys.len(), 4);
    assert_eq!(keys[3].account_fingerprint, Some(expect));
    // The chain stays one chain: seq 1.. without gaps, each linked to the one before.
    let records = node.store().read().unwrap().outbox(StreamId::DEVICE).unwrap();
    for (i, pair) in records.windows(2).enumerate() {
        assert_eq!(pair[1].header().seq, i as u64 + 2);
        assert_eq!(pair[1].header().prev_hash, pair[0].header_hash());
    }
}

#[test]
fn a_key_learned_after_the_hello_fingerprints_the_account_heard_last() {
    {
        let dir = tempfile::tempdir().unwrap();
        let identity = enrolled(dir.path());
        let (node, _) = open(dir.path());
        // Before any EA: the key is kept, nothing signed.
        assert!(!node.learn_fingerprint_key(&KEY, T0).unwrap());
        assert!(tradecast_node::store::hub_pin::has_fingerprint_key(node.store()).unwrap());
        assert_eq!(device_keys(&node, &identity).len(), 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let identity = enrolled(dir.path());
    let (node, clock) = open(dir.path());
    hello(&node, &clock, 5_012_345, "Demo-Server");
    assert!(!tradecast_node::store::hub_pin::has_fingerprint_key(node.store()).unwrap());
    assert_eq!(device_keys(&node, &identity).len(), 1);
    assert!(node.learn_fingerprint_key(&KEY, T0 + 500).unwrap());
    let keys = device_keys(&node, &identity);
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[1].account_fingerprint,
        Some(AccountFingerprint::compute(&KEY, "Demo-Server", 5_012_345))
    );
    // Learning it again (a second read) appends nothing; the next hello neither.
    assert!(!node.learn_fingerprint_key(&KEY, T0 + 600).unwrap());
    hello(&node, &clock, 5_012_345, "Demo-Server");
    assert_eq!(device_keys(&node, &identity).len(), 2);
}

#[test]
fn an_unenrolled_node_signs_nothing_even_with_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("node.redb")).unwrap();
    init_store(&store).unwrap();
    drop(store);
    let (node, clock) = open(dir.path());
    with_key(&node);
    hello(&node, &clock, 42, "Test-Server");
    let records = node.store().read().unwrap().outbox(StreamId::DEVICE).unwrap();
    assert!(records.iter().all(|r| r.header().kind != Kind::DeviceKeys), "{records:?}");
}
