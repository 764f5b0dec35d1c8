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
