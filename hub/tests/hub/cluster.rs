//! Two hub instances on one PostgreSQL, sharing the hub identity: what one commits, the other
//! applies at once, over each cluster bus (`postgres` LISTEN/NOTIFY, `nats` JetStream on
//! 127.0.0.1:4222). A device connected to instance A is cut off when it is revoked, or its
//! account disabled, at instance B; an entitlement granted at B is broadcast at A.

use std::time::Duration;

use tradecast_hub::config::{BusKind, Config, RedactedUrl};
use tradecast_hub::entitlements::ChangeKind;
use tradecast_hub::quic::{self, close_code};

use crate::helpers::{Backend, TestHub};
use crate::quic::{closed_with, connect, hello_streams, hub_key, wait_until};

fn nats_url() -> String {
    std::env::var("TRADECAST_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Both instances' configuration for `bus` (a fresh JetStream stream per test for NATS).
fn bus_config(bus: BusKind, stream: &str) -> impl Fn(&mut Config) + Clone {
    let stream = stream.to_string();
    move |c: &mut Config| {
        c.cluster.bus = Some(bus);
        if bus == BusKind::Nats {
            c.cluster.nats_url = Some(RedactedUrl::new(nats_url()));
            c.cluster.nats_stream = stream.clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_postgres_bus() {
    // Boxed: the future holds two hubs' configs (clippy::large_futures).
    Box::pin(two_instances(BusKind::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nats_bus() {
    Box::pin(two_instances(BusKind::Nats)).await;
}

async fn two_instances(bus: BusKind) {
    let stream = format!("TC_TEST_{}", tradecast_hub::ids::random_hex(6).to_uppercase());
    let tweak = bus_config(bus, &stream);
    let a = TestHub::start_with(Backend::Postgres, tweak.clone()).await;
    let b = a.start_instance(tweak).await;
    assert_eq!(a.state().cluster.bus_kind(), Some(bus.as_str()));
    assert_ne!(a.state().cluster.instance(), b.state().cluster.instance());
    assert_eq!(
        a.state().hub_identity.identity_key(),
        b.state().hub_identity.identity_key(),
        "one deployment, one hub key"
    );

    // The owner's APIs answer from either instance (one store).
    let owner = a.owner().await;
    let sub_at_b = b.user(&owner, "subscriber").await;
    let provider = a.user(&owner, "provider").await;

    // A device connected to A, revoked at B: A closes it.
    let (node, device) = a.enrol(&sub_at_b, "laptop").await;
    let (_ep, conn) = connect(&a, &node, hub_key(&a)).await.expect("handshake at A");
    let (answer, _streams) = hello_streams(&conn, quic::PROTOCOL_VERSION).await.unwrap();
    assert_eq!(answer.0, quic::HELLO_ACCEPTED);
    let peers_a = a.state().quic_peers.clone();
    wait_until("registration at A", || peers_a.is_connected(&node.device_id())).await;
    b.post(&format!("/api/v1/devices/{device}/revoke"), Some(&owner.token), serde_json::json!({}))
        .await
        .ok(200);
    let (code, reason) = closed_with(&conn).await;
    assert_eq!((code, reason.as_str()), (u64::from(close_code::DEVICE_REFUSED), "device revoked"));
    wait_until("A forgets the device", || !peers_a.is_connected(&node.device_id())).await;

    // A second device of the account at A; the account is disabled at B: A closes it.
    let (node2, _) = a.enrol(&sub_at_b, "desktop").await;
    let (_ep2, conn2) = connect(&a, &node2, hub_key(&a)).await.expect("handshake at A");
    let (_, _streams2) = hello_streams(&conn2, quic::PROTOCOL_VERSION).await.unwrap();
    wait_until("registration at A", || peers_a.is_connected(&node2.device_id())).await;

    // Meanwhile an entitlement granted at B is broadcast at A.
    let mut changes_at_a = a.state().entitlement_changes.subscribe();
    let plan = b
        .post(
            "/api/v1/plans",
            Some(&provider.token),
            serde_json::json!({ "name": "Gold", "price_minor": 100, "currency": "EUR", "period_days": 30 }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let granted = b
        .post(
            "/api/v1/entitlements",
            Some(&owner.token),
            serde_json::json!({ "user_id": sub_at_b.user_id, "plan_id": plan }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let change = tokio::time::timeout(Duration::from_secs(5), changes_at_a.recv())
        .await
        .expect("A hears of B's grant within 5 s")
        .unwrap();
    assert_eq!(
        (change.entitlement_id.as_str(), change.kind),
        (granted.as_str(), ChangeKind::Granted)
    );
    assert_eq!(change.provider_user_id, provider.user_id);

    b.post(
        &format!("/api/v1/users/{}/disable", sub_at_b.user_id),
        Some(&owner.token),
        serde_json::json!({}),
    )
    .await
    .ok(200);
    let (code, reason) = closed_with(&conn2).await;
    assert_eq!(
        (code, reason.as_str()),
        (u64::from(close_code::DEVICE_REFUSED), "account disabled")
    );

    b.stop().await;
    a.stop().await;
    if bus == BusKind::Nats {
        let client = async_nats::connect(nats_url()).await.unwrap();
        async_nats::jetstream::new(client).delete_stream(&stream).await.unwrap();
    }
}

/// Drives a node's side of the session (`NodeSession`) on `(send, recv)` until `want` items of
/// `source` are committed (kept in memory, acked after), returning them in order.
async fn receive_items(
    node: &tradecast_protocol::Identity,
    hub: tradecast_protocol::IdentityKey,
    (mut send, mut recv): (quinn::SendStream, quinn::RecvStream),
    source: tradecast_protocol::session::Source,
    want: usize,
) -> Vec<(u64, tradecast_protocol::Record)> {
    use tradecast_protocol::session::{
        NodeAction, NodeEvent, NodeSession, NodeSetup, SessionConfig, SignatureCheck,
    };
    let setup = NodeSetup {
        identity: node.identity_key(),
        hub,
        streams: vec![],
        sources: vec![],
        authors: vec![],
        restored: false,
    };
    let now = || tradecast_hub::ids::Clock::default().now_ms();
    let mut session = NodeSession::new(SessionConfig::default(), setup, SignatureCheck);
    let _ = session.handle(now(), NodeEvent::Connected);
    let mut got = Vec::new();
    loop {
        while let Some(action) = session.poll_action() {
            match action {
                NodeAction::Send(frame) => {
                    let mut buf = (frame.len() as u32).to_be_bytes().to_vec();
                    buf.extend_from_slice(&frame);
                    send.write_all(&buf).await.unwrap();
                }
                NodeAction::CommitFeed { source: s, item } => {
                    if s == source {
                        got.push((item.seq, item.record.clone()));
                    }
                    let _ = session
                        .handle(now(), NodeEvent::FeedCommitted { source: s, seq: item.seq });
                }
                NodeAction::Close(reason) => panic!("session closed: {reason}"),
                NodeAction::Alarm(alarm) => panic!("alarm: {alarm:?}"),
                _ => {}
            }
        }
        if got.len() >= want {
            return got;
        }
        let mut len = [0u8; 4];
        recv.read_exact(&mut len).await.unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        recv.read_exact(&mut frame).await.unwrap();
        let _ = session.handle(now(), NodeEvent::BytesReceived(&frame));
    }
}

/// A signal posted to instance A reaches a subscriber's session at instance B (the relay log's
/// `(source, seq)` on the bus, the entry read from the one store by B), unchanged and verified
/// by the node's session; a subscriber granted at A while connected to B starts following the
/// provider mid-session and sees what was accepted after its grant only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_signal_posted_at_one_instance_reaches_a_node_at_the_other() {
    use tradecast_protocol::session::Source;
    let tweak = bus_config(BusKind::Postgres, "unused");
    let a = TestHub::start_with(Backend::Postgres, tweak.clone()).await;
    let b = Box::pin(a.start_instance(tweak)).await;
    let owner = a.owner().await;
    let kit = crate::helpers::provider_kit(&a, &owner).await;
    let sub = a.user(&owner, "subscriber").await;
    let (node, _) = a.enrol(&sub, "vps").await;
    a.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        serde_json::json!({ "user_id": sub.user_id, "plan_id": kit.plan_id }),
    )
    .await
    .ok(201);
    let (_ep, conn) = connect(&b, &node, hub_key(&b)).await.expect("handshake at B");
    let (answer, streams) = hello_streams(&conn, quic::PROTOCOL_VERSION).await.unwrap();
    assert_eq!(answer.0, quic::HELLO_ACCEPTED);
    let peers_b = b.state().quic_peers.clone();
    wait_until("registration at B", || peers_b.is_connected(&node.device_id())).await;
    wait_until("B's session follows the provider", || b.state().relay.sessions() == 1).await;

    // A second subscriber connected to B before it holds any plan.
    let late = a.user(&owner, "subscriber").await;
    let (node2, _) = a.enrol(&late, "laptop").await;
    let (_ep2, conn2) = connect(&b, &node2, hub_key(&b)).await.expect("handshake at B");
    let (_, streams2) = hello_streams(&conn2, quic::PROTOCOL_VERSION).await.unwrap();
    wait_until("both sessions at B", || b.state().relay.sessions() == 2).await;

    let log = tradecast_protocol::DeviceId::parse(&kit.device_id).unwrap();
    let key = hub_key(&b);
    let (dev1, dev2) = (node.device_id(), node2.device_id());
    let first =
        tokio::spawn(
            async move { receive_items(&node, key, streams, Source::Relay(log), 3).await },
        );
    let second =
        tokio::spawn(
            async move { receive_items(&node2, key, streams2, Source::Relay(log), 2).await },
        );
    let s = crate::helpers::signal(&kit.identity, a.clock.now_ms());
    let (record, r) = crate::helpers::post_signal(&a, &kit, &s, 1).await;
    r.ok(201);
    // Granted at A while connected to B: B's session starts following the provider.
    a.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        serde_json::json!({ "user_id": late.user_id, "plan_id": kit.plan_id }),
    )
    .await
    .ok(201);
    a.clock.advance_ms(1);
    let s2 = crate::helpers::signal(&kit.identity, a.clock.now_ms());
    let (record2, r) = crate::helpers::post_signal(&a, &kit, &s2, 2).await;
    r.ok(201);
    let items = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("both signals reach the node at B")
        .unwrap();
    assert_eq!(items.iter().map(|i| i.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(matches!(items[0].1.body().unwrap(), tradecast_protocol::Body::DeviceKeys(_)));
    assert_eq!((&items[1].1, &items[2].1), (&record, &record2));
    // The late subscriber sees the keys and the signal accepted after its grant only.
    let items = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second signal reaches the late subscriber at B")
        .unwrap();
    assert_eq!(items.iter().map(|i| i.0).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(items[1].1, record2);
    // B persists the nodes' cursors (batched), readable from A's side of the one store.
    let cursor = |d: tradecast_protocol::DeviceId| {
        let db = a.db.clone();
        async move { tradecast_hub::relay::cursor(&db, &d.to_text(), &log).await.unwrap() }
    };
    let start = std::time::Instant::now();
    while (cursor(dev1).await, cursor(dev2).await) != (3, 3) {
        assert!(start.elapsed() < Duration::from_secs(10), "cursors not persisted");
        b.state().relay_cursors.flush().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.stop().await;
    a.stop().await;
}
