//! The store upgrade of protocol v2 (schema 2 → 3), from a store written by the node before it:
//! `node/tests/fixtures/schema2/node.redb`, written by [`write_schema_2_fixture`] on the commit
//! that added it (store schema 2, record version 1), then never rewritten. Regenerating it with a
//! later node would defeat its purpose; the function stays as the record of how it was made.

use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use tradecast_node::policy::approval::{Channel, Decider, DecisionRequest, Verdict};
use tradecast_node::runtime::{Node, Settings};
use tradecast_node::store::Store;
use tradecast_protocol::ea;
use tradecast_protocol::{
    Body, ChainHash, DeviceKeys, EntryKind, HeaderFields, Identity, Record, Side, Signal, SignalId,
    StreamId, Timeframe,
};

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

fn hello() -> ea::Hello {
    let spec = ea::SymbolSpec {
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
    };
    ea::Hello {
        login: 42,
        server: "Test-Server".into(),
        company: "Test".into(),
        currency: "USD".into(),
        leverage: 100,
        margin_mode: ea::MarginMode::Hedging,
        terminal_build: 1,
        ea_version: "test".into(),
        server_utc_offset_s: 0,
        terminal_time_ms: T,
        symbols: vec![spec],
        floor_breach: None,
    }
}

fn relayed(author: &Identity, stream: StreamId, seq: u64, body: &Body) -> Record {
    let fields = HeaderFields { stream, seq, prev_hash: ChainHash::GENESIS, created_at_ms: T };
    Record::sign(author, fields, body)
}

/// Writes the fixture into `dir` (a data dir: `node.redb` and nothing else is kept): an
/// account, a pinned provider and hub, a relayed signal decided by the trader (its `Approval`
/// record in the shared outbox and its row in `approvals`), the node's own signal, device keys.
pub fn write_schema_2_fixture(dir: &Path) {
    let data = tempfile::tempdir().expect("tempdir");
    tradecast_node::serve::init(data.path()).expect("init");
    let path = data.path().join(tradecast_node::store::FILE_NAME);
    let store = Store::open(&path).expect("open");
    let node = Node::new(store, Settings::default(), T).expect("node");
    node.hello(hello(), T).expect("hello");
    let account = node.pick_account(None).expect("account");
    let (provider, hub) = (provider(), hub());
    node.store()
        .write(|tx| {
            tx.set_setting("hub.addr", "127.0.0.1:7443")?;
            tx.set_setting("hub.identity_key", &hex::encode(hub.identity_key().to_bytes()))?;
            tx.set_setting("hub.device_id", &hub.device_id().to_text())
        })
        .expect("pin");
    let keys = Body::DeviceKeys(DeviceKeys {
        identity: provider.identity_key(),
        sealing: provider.sealing_public_key(),
        label: "provider pc".into(),
        at_ms: T,
        account_fingerprint: None,
    });
    node.receive_feed(1, &relayed(&provider, StreamId::DEVICE, 1, &keys)).expect("keys");
    let signal = feed_signal(&provider);
    let record = relayed(&provider, StreamId::SIGNALS, 1, &Body::Signal(signal.clone()));
    node.receive_feed(2, &record).expect("signal");
    let by = Decider::Trader { user: "alice".into(), channel: Channel::Ui };
    let approve =
        DecisionRequest { verdict: Verdict::Approve, by: by.clone(), reason: "fixture".into() };
    // Without quotes the policy has already refused it (an `Approval` decided by the policy);
    // otherwise the trader decides.
    if node.decide(&signal.id.to_hex(), &approve).is_err() {
        let reject = DecisionRequest { verdict: Verdict::Reject, by, reason: "fixture".into() };
        let _ = node.decide(&signal.id.to_hex(), &reject);
    }
    let shared = node.store().read().expect("read").outbox(StreamId::SHARED).expect("outbox");
    assert!(!shared.is_empty(), "the approval is signed into the shared stream");
    let mut own = feed_signal(&provider);
    own.id = SignalId([0x6b; 16]);
    own.provider = node.device_id();
    node.submit_signal(&account, own, false, None).expect("own signal");
    let me = node.store().read().expect("read").identity().expect("identity").expect("init ran");
    let own_keys = Body::DeviceKeys(DeviceKeys {
        identity: me.identity_key(),
        sealing: me.sealing_public_key(),
        label: "trader pc".into(),
        at_ms: T,
        account_fingerprint: None,
    });
    node.store()
        .write(|tx| tx.append_record(&me, StreamId::DEVICE, &own_keys, T).map(|_| ()))
        .expect("device keys");
    drop(node);
    std::fs::create_dir_all(dir).expect("fixture dir");
    std::fs::copy(&path, dir.join(tradecast_node::store::FILE_NAME)).expect("copy");
}

#[test]
fn the_schema_2_fixture_can_be_written_again_on_its_commit() {
    if std::env::var_os("TRADECAST_WRITE_SCHEMA2_FIXTURE").is_some() {
        write_schema_2_fixture(&fixture_dir());
    }
    let path = fixture_dir().join(tradecast_node::store::FILE_NAME);
    let len = std::fs::metadata(&path).expect("the fixture exists").len();
    assert!(len < 200 * 1024, "the fixture stays small ({len} bytes)");
}
