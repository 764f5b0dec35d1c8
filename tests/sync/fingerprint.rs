//! The account fingerprint end to end over real HTTP and QUIC: a node enrolled through its CLI
//! keeps the hub's fingerprint key from the enrolment answer; its EA's hello signs a
//! `DeviceKeys` record with the account's fingerprint, the sync driver uploads it, and the hub's
//! device row carries it. A node enrolled before the answer carried the key reads it at start
//! from the device-signed route and fingerprints the EA that already said hello.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tradecast_node::clock::{MarketMs, Now, WallMs};
use tradecast_node::runtime::Node;
use tradecast_node::serve::{self, tokio_util_shutdown::Shutdown};
use tradecast_node::store::hub_pin;
use tradecast_protocol::AccountFingerprint;
use tradecast_protocol::ea::{self, MarginMode};

use super::{Hub, enrol_by_cli, node_dir, now_ms, open_store};

fn hello(node: &Node, login: u64, server: &str) {
    let h = ea::Hello {
        login,
        server: server.into(),
        company: "Demo".into(),
        currency: "USD".into(),
        leverage: 100,
        margin_mode: MarginMode::Hedging,
        terminal_build: 1,
        ea_version: "test".into(),
        server_utc_offset_s: 7_200,
        terminal_time_ms: now_ms(),
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
    let now = Now { wall_ms: WallMs(now_ms()), market_ms: MarketMs(now_ms()) };
    node.handle_hello(now, h).expect("hello");
}

fn node_config() -> tradecast_node::config::Config {
    tradecast_node::config::Config {
        ea_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    }
}

/// Waits until the hub's row of `device` carries `expect`.
async fn hub_row_carries(hub: &Hub, device: &str, expect: AccountFingerprint) {
    let start = Instant::now();
    loop {
        let row = tradecast_hub::devices::account_fingerprint(&hub.started.state.db, device)
            .await
            .unwrap();
        if row.as_ref().map(|(f, _)| f.as_str()) == Some(expect.to_hex().as_str()) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the hub's row holds {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_an_ea_hello_puts_the_account_fingerprint_on_the_hub_device_row() {
    let hub = Hub::start().await;
    let (dir, device) = node_dir();
    enrol_by_cli(&dir, &hub).await;
    let key = *hub.started.state.secrets.account_fingerprint_key();

    let shutdown = Shutdown::new();
    let running = serve::start(dir.path(), &node_config(), shutdown.clone()).await.unwrap();
    let node = running.node.clone();
    assert!(hub_pin::has_fingerprint_key(node.store()).unwrap(), "kept from the enrolment");
    hello(&node, 5_012_345, "Demo-Server");
    hub_row_carries(&hub, &device, AccountFingerprint::compute(&key, "Demo-Server", 5_012_345))
        .await;
    // The EA moves to another account: the row follows.
    hello(&node, 5_012_346, "Demo-Server");
    hub_row_carries(&hub, &device, AccountFingerprint::compute(&key, "Demo-Server", 5_012_346))
        .await;

    shutdown.trigger();
    running.join().await.unwrap();
    hub.started.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_a_node_enrolled_before_the_key_reads_it_at_start() {
    let hub = Hub::start().await;
    let (dir, device) = node_dir();
    enrol_by_cli(&dir, &hub).await;
    let key = *hub.started.state.secrets.account_fingerprint_key();
    // As a node enrolled before the enrolment answer carried the key.
    {
        let store = open_store(&dir);
        store.write(|tx| tx.remove_setting(hub_pin::SETTING_HUB_FINGERPRINT_KEY)).unwrap();
        assert!(!hub_pin::has_fingerprint_key(&store).unwrap());
    }
    let shutdown = Shutdown::new();
    let running = serve::start(dir.path(), &node_config(), shutdown.clone()).await.unwrap();
    let node = running.node.clone();
    // The EA says hello at once, before or after the key arrives: either way its account ends
    // up fingerprinted.
    hello(&node, 7_000_001, "Other-Broker-Live");
    hub_row_carries(
        &hub,
        &device,
        AccountFingerprint::compute(&key, "Other-Broker-Live", 7_000_001),
    )
    .await;
    assert!(hub_pin::has_fingerprint_key(node.store()).unwrap());
    let keys = node
        .store()
        .read()
        .unwrap()
        .outbox(tradecast_protocol::StreamId::DEVICE)
        .unwrap()
        .into_iter()
        .filter(|r| r.header().kind == tradecast_protocol::Kind::DeviceKeys)
        .count();
    assert_eq!(keys, 2, "the enrolment record and one fingerprint");

    shutdown.trigger();
    running.join().await.unwrap();
    hub.started.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_a_fingerprint_key_not_signed_by_the_pinned_hub_is_not_kept() {
    let hub = Hub::start().await;
    let (dir, _) = node_dir();
    enrol_by_cli(&dir, &hub).await;
    let store = open_store(&dir);
    store.write(|tx| tx.remove_setting(hub_pin::SETTING_HUB_FINGERPRINT_KEY)).unwrap();
    // Another hub (another identity) that knows this device, at the pinned address: it answers
    // with its own key, signed by itself.
    let impostor = Hub::start().await;
    {
        // A copy of this node's identity enrols there.
        let twin_dir = tempfile::tempdir().unwrap();
        let twin = open_store(&twin_dir);
        let me = store.read().unwrap().identity().unwrap().unwrap();
        twin.write(|tx| tx.put_identity(&me)).unwrap();
        let code = impostor.code().await;
        tradecast_node::sync::enrol::enrol(&twin, &impostor.http_addr(), &code, "twin", now_ms())
            .await
            .unwrap();
    }
    hub_pin::move_hub(&store, &impostor.http_addr()).unwrap();
    let node = Node::new(store, tradecast_node::runtime::Settings::default(), now_ms()).unwrap();
    let e = tradecast_node::sync::enrol::fetch_fingerprint_key(&node, now_ms()).await.unwrap_err();
    assert!(e.to_string().contains("not signed by the pinned hub key"), "{e}");
    assert!(!hub_pin::has_fingerprint_key(node.store()).unwrap());
    // Back at the pinned hub: kept.
    hub_pin::move_hub(node.store(), &hub.http_addr()).unwrap();
    tradecast_node::sync::enrol::fetch_fingerprint_key(&node, now_ms()).await.unwrap();
    assert!(hub_pin::has_fingerprint_key(node.store()).unwrap());
    impostor.started.stop().await.unwrap();
    hub.started.stop().await.unwrap();
}
