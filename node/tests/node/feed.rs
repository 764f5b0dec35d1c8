//! The feed's effects in the node without a hub (the end-to-end path with a real hub is the
//! root package's `tests/demo`): provider keys pinned on first sight, a second key held back
//! until the trader trusts it, a signal without an account skipped in words, an item committed
//! once, a receipt that does not match the node's record refused.

use clap::Parser;
use rust_decimal::Decimal;
use tradecast_node::cli::{Cli, run};
use tradecast_node::runtime::{FeedOutcome, Node, Settings};
use tradecast_node::store::Store;
use tradecast_protocol::{
    Body, ChainHash, DeviceKeys, EntryKind, HeaderFields, Identity, Receipt, Record, Side, Signal,
    SignalId, StreamId, Timeframe,
};

fn identity(seed: u8) -> Identity {
    Identity::from_secret_bytes(&[seed; 32], &[seed.wrapping_add(1); 32])
}

fn record(author: &Identity, stream: StreamId, seq: u64, body: &Body) -> Record {
    let fields = HeaderFields { stream, seq, prev_hash: ChainHash::GENESIS, created_at_ms: 1_000 };
    Record::sign(author, fields, body)
}

fn keys(author: &Identity, label: &str) -> Record {
    let body = Body::DeviceKeys(DeviceKeys {
        identity: author.identity_key(),
        sealing: author.sealing_public_key(),
        label: label.into(),
        at_ms: 1_000,
        account_fingerprint: None,
    });
    record(author, StreamId::DEVICE, 1, &body)
}

fn signal(author: &Identity, id: u8) -> Record {
    let s = Signal {
        id: SignalId([id; 16]),
        provider: author.device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 1,
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        side: Side::Buy,
        entry_kind: EntryKind::Market,
        entry: "1.10000".parse().unwrap(),
        stop: "1.09800".parse().unwrap(),
        tp1: "1.10400".parse().unwrap(),
        tp2: None,
        bar_time_ms: 0,
        expires_at_ms: 7_200_000,
        leg: 1,
        indicators: vec![],
        rr: Decimal::TWO,
    };
    record(author, StreamId::SIGNALS, u64::from(id), &Body::Signal(s))
}

#[test]
fn feed_pins_keys_holds_back_a_second_provider_and_commits_each_item_once() {
    let dir = tempfile::tempdir().unwrap();
    tradecast_node::serve::init(dir.path()).unwrap();
    let store = Store::open(&dir.path().join(tradecast_node::store::FILE_NAME)).unwrap();
    let node = Node::new(store, Settings::default(), 1_000).unwrap();
    let (a, b) = (identity(1), identity(9));

    let out = node.receive_feed(1, &keys(&a, "provider pc")).unwrap();
    assert_eq!(out, FeedOutcome::Pinned { device: a.device_id(), trusted: true });
    let out = node.receive_feed(2, &signal(&a, 1)).unwrap();
    assert_eq!(
        out,
        FeedOutcome::Signal {
            signal_id: SignalId([1; 16]),
            line: "skipped: no MT5 account has connected to this node yet".into()
        }
    );
    // The same item again (a resend after a lost ack): nothing happens twice.
    assert!(matches!(node.receive_feed(2, &signal(&a, 1)).unwrap(), FeedOutcome::Ignored(_)));
    assert_eq!(node.signals().unwrap().len(), 1);
    assert_eq!(node.store().read().unwrap().inbox_watermark().unwrap(), 2);

    // Another provider key: an alarm, its signals skipped until the trader trusts it.
    let out = node.receive_feed(3, &keys(&b, "somebody")).unwrap();
    assert_eq!(out, FeedOutcome::Pinned { device: b.device_id(), trusted: false });
    match node.receive_feed(4, &signal(&b, 2)).unwrap() {
        FeedOutcome::Signal { line, .. } => {
            assert!(line.contains("provider key you have not trusted"), "{line}")
        }
        other => panic!("{other:?}"),
    }
    // A receipt for a record this node never signed is refused, not kept.
    let forged = Receipt::sign(&b, &signal(&a, 3), 5);
    let r = record(&b, StreamId::RECEIPTS, 1, &Body::Receipt(forged));
    assert!(matches!(node.receive_feed(5, &r).unwrap(), FeedOutcome::Ignored(_)));
    assert!(node.store().read().unwrap().receipts(StreamId::SIGNALS).unwrap().is_empty());
    drop(node);

    // `providers` lists both keys; `--trust` trusts the second.
    let providers = |extra: &[&str]| {
        let mut args = vec!["tradecast-node", "providers", "--data", dir.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        run(Cli::parse_from(args), &mut out, &mut err).unwrap();
        String::from_utf8(out).unwrap()
    };
    let listed = providers(&[]);
    assert!(listed.contains(&format!("{}  trusted", a.device_id().to_text())), "{listed}");
    assert!(listed.contains(&format!("{}  NOT TRUSTED", b.device_id().to_text())), "{listed}");
    let b_text = b.device_id().to_text();
    let trusted = providers(&["--trust", &b_text]);
    assert!(trusted.contains(&format!("trusted {b_text}")), "{trusted}");
    assert!(!providers(&[]).contains("NOT TRUSTED"));
}
