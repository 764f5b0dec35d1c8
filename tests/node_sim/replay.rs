//! A provider node with `--self-trade` beside the simulated terminal replaying the whole
//! EURUSD H1 file at `--speed max`: the node computes Fib-RSI on the bars the EA pushes, signs
//! every signal, executes those the one-position rule allows and reconciles every close.

use std::path::PathBuf;

use rust_decimal::Decimal;
use tradecast_node::config::Mode;
use tradecast_node::runtime::{OrderAction, OrderState};
use tradecast_protocol::ea::MarginMode;
use tradecast_protocol::{Body, StreamId};
use tradecast_sim::app::{self, SimConfig, Source};
use tradecast_sim::replay::Speed;

use crate::TestNode;

pub fn eurusd() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join("EURUSD-H1.csv")
}

pub fn sim_config(node: &TestNode, login: u64) -> SimConfig {
    SimConfig {
        node_url: node.ea_url(),
        keys: vec![(node.key_id.clone(), node.secret.clone())],
        source: Source::File(eurusd()),
        symbol: "EURUSD".into(),
        digits: 5,
        speed: Speed::Max,
        first_login: login,
        balance: Decimal::from(10_000),
        leverage: 100,
        margin_mode: MarginMode::Hedging,
        input_magic: 20_260_101,
        spread_points: 10,
        slippage_points: 0,
        instant_execution: false,
        server_utc_offset_s: 0,
        file_utc_offset_s: 0,
        send_latency_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_trading_provider_executes_its_signals_and_reconciles_every_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), |c| {
        c.mode = Mode::Provider;
        c.self_trade = true;
        c.policy = crate::self_trade_policy();
    })
    .await;
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = std::time::Instant::now();
    let summary = app::run(sim_config(&node, 7_000_001), stop_rx).await.expect("replay");
    let elapsed = started.elapsed();
    println!("replay: {} bars in {elapsed:?}", summary.replay.bars);
    let n = &node.running.node;
    let account = n.pick_account(None).expect("account");
    let signals = n.signals().expect("signals");
    let orders = n.orders(&account).expect("orders");
    let positions = n.positions(&account).expect("positions");
    // The streaming engine on the link's bars finds the same 20 signals as the backtest.
    assert_eq!(signals.len(), 20, "signals: {signals:#?}");
    let executed: Vec<_> = signals.iter().filter(|s| s.order_id.is_some()).collect();
    for s in &signals {
        assert!(
            s.order_id.is_some() || s.skipped.contains("open on EURUSD, limit 1 per symbol"),
            "a signal neither executed nor skipped by the one-position rule: {s:?}"
        );
    }
    // The backtest's count: the other two come while a position is open.
    assert_eq!(executed.len(), 18, "executed under the self-trading policy");
    // Every order the node made was filled exactly once, and none is left open.
    let opens: Vec<_> =
        orders.iter().filter(|o| matches!(o.action, OrderAction::Open(_))).collect();
    assert_eq!(opens.len(), executed.len());
    for o in &opens {
        assert_eq!(o.state, OrderState::Acked, "{o:?}");
    }
    let acks = &summary.terminals[0].1.acks;
    let mut ids: Vec<&str> = acks.iter().map(|a| a.order_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), opens.len(), "one accepted ack per order");
    // Every position but possibly the last is closed, each close became a TradeClosed record.
    let view = n.store().read().expect("read");
    let private = view.outbox(StreamId::PRIVATE).expect("outbox");
    let closed_tickets: Vec<u64> = private
        .iter()
        .filter_map(|r| {
            assert!(r.header().sealed, "private records are sealed");
            assert!(r.body().is_err(), "a sealed body does not read without the key");
            match n.open_record(r) {
                Some(Body::TradeClosed(t)) => Some(t.ticket),
                _ => None,
            }
        })
        .collect();
    // Equity points: one a minute of market time at least, or on a 0.1 % move.
    let points = n.equity(&account).expect("equity");
    assert!(points.len() > 100, "{} equity points", points.len());
    for w in points.windows(2) {
        let moved = (w[1].equity - w[0].equity).abs() / w[0].equity >= Decimal::new(1, 3);
        assert!(w[1].at_ms - w[0].at_ms >= 60_000 || moved, "{:?}", w);
    }
    assert_eq!(positions.len(), opens.len(), "one position per fill");
    let n_open = positions.iter().filter(|p| p.open).count();
    assert!(n_open <= 1, "{n_open} positions still open");
    for p in positions.iter().filter(|p| !p.open) {
        assert!(closed_tickets.contains(&p.position_id), "no TradeClosed for {}", p.position_id);
    }
    // Signals are a signed chain.
    let chain = view.outbox(StreamId::SIGNALS).expect("signals chain");
    tradecast_protocol::verify_chain(&chain, &n.identity_key(), StreamId::SIGNALS)
        .expect("the provider's chain verifies");
    // The provider's own closes are published, keyed by signal id: one per closed position.
    let n_close_records = chain.iter().filter(|r| matches!(r.body(), Ok(Body::Close(_)))).count();
    assert!(n_close_records >= closed_tickets.len(), "{n_close_records} Close records");
    tradecast_protocol::verify_chain(&private, &n.identity_key(), StreamId::PRIVATE)
        .expect("the private chain verifies without opening it");
    println!(
        "{} signals, {} executed, {} skipped (one position), {} closes reconciled",
        signals.len(),
        executed.len(),
        signals.len() - executed.len(),
        closed_tickets.len()
    );
    node.shutdown.trigger();
}
