//! The hub's sync store (migration 0004) on both backends: idempotent commits, equivocation
//! refused by the table's key, stream marks and quarantine as the session loads them.

use tradecast_hub::quic::store::{self, StoreError};
use tradecast_protocol::{Body, ChainHash, HeaderFields, Heartbeat, Identity, Record, StreamId};

use crate::helpers::{Backend, TestHub, new_identity};
use crate::on_both;

fn heartbeat(node: &Identity, seq: u64, prev: ChainHash, at_ms: i64) -> Record {
    let fields =
        HeaderFields { stream: StreamId::DEVICE, seq, prev_hash: prev, created_at_ms: at_ms };
    let body = Body::Heartbeat(Heartbeat {
        device: node.device_id(),
        at_ms,
        ea_connected: false,
        terminal_time_ms: None,
    });
    Record::sign(node, fields, &body)
}

async fn sync_store_commits_once_and_refuses_equivocation(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let db = &hub.state().db;
    let hub_id = &hub.state().hub_identity;
    // An enrolled device: the hub's receipts go back into its feed.
    let owner = hub.owner().await;
    let (node, _) = hub.enrol(&owner, "node").await;
    let r1 = heartbeat(&node, 1, ChainHash::GENESIS, 1_000);
    let r2 = heartbeat(&node, 2, r1.header_hash(), 2_000);

    let receipt = store::commit(db, hub_id, &r1, 1_500).await.unwrap();
    receipt.verify(&hub_id.identity_key()).unwrap();
    assert!(receipt.covers(&r1));
    // The author's feed holds the hub's receipt for the batch's last record (here r1),
    // signed by the hub.
    let feed = tradecast_hub::feed::items(db, &node.device_id().to_text(), 1, 100).await.unwrap();
    let back: Vec<_> = feed
        .iter()
        .filter_map(|i| match i.record.body() {
            Ok(Body::Receipt(r)) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(back.len(), 1, "{feed:?}");
    assert!(back[0].covers(&r1) && back[0].verify(&hub_id.identity_key()).is_ok());
    // The same record again (a resend after a lost ack or a restart): success, no second row.
    store::commit(db, hub_id, &r1, 1_600).await.unwrap();
    store::commit(db, hub_id, &r2, 2_500).await.unwrap();
    let held = store::records(db, &node.device_id(), StreamId::DEVICE).await.unwrap();
    assert_eq!(held, vec![r1.clone(), r2.clone()]);

    // Another validly signed record at seq 2: refused, the stored one stays.
    let forged = heartbeat(&node, 2, r1.header_hash(), 2_001);
    assert_ne!(forged.header_hash(), r2.header_hash());
    let e = store::commit(db, hub_id, &forged, 2_600).await.unwrap_err();
    assert!(matches!(e, StoreError::Equivocation { seq: 2, .. }), "{e}");
    assert_eq!(store::records(db, &node.device_id(), StreamId::DEVICE).await.unwrap().len(), 2);

    let streams = store::load_streams(db, &node.device_id(), 4096).await.unwrap();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].stream, StreamId::DEVICE);
    assert_eq!(streams[0].committed, 2);
    assert_eq!(streams[0].recent, vec![(1, r1.header_hash()), (2, r2.header_hash())]);
    assert!(!streams[0].quarantined);
    // Only the last `recent` hashes are loaded.
    let streams = store::load_streams(db, &node.device_id(), 1).await.unwrap();
    assert_eq!(streams[0].recent, vec![(2, r2.header_hash())]);

    store::quarantine(db, &node.device_id(), StreamId::DEVICE, 3_000).await.unwrap();
    store::quarantine(db, &node.device_id(), StreamId::DEVICE, 3_001).await.unwrap();
    store::quarantine(db, &node.device_id(), StreamId::SIGNALS, 3_002).await.unwrap();
    let streams = store::load_streams(db, &node.device_id(), 4096).await.unwrap();
    assert_eq!(streams.len(), 2);
    assert!(streams.iter().all(|s| s.quarantined));
    let signals = streams.iter().find(|s| s.stream == StreamId::SIGNALS).unwrap();
    assert_eq!(signals.committed, 0);
    // Another node's streams are its own.
    assert!(store::load_streams(db, &new_identity().device_id(), 4096).await.unwrap().is_empty());
    hub.stop().await;
}

on_both!(sync_store_commits_once_and_refuses_equivocation);

on_both!(sync_outcomes_for_the_provider_and_quarantine_alarms_for_the_owner);

fn shared(node: &Identity, seq: u64, prev: ChainHash, body: Body, at_ms: i64) -> Record {
    let fields =
        HeaderFields { stream: StreamId::SHARED, seq, prev_hash: prev, created_at_ms: at_ms };
    Record::sign(node, fields, &body)
}

async fn sync_outcomes_for_the_provider_and_quarantine_alarms_for_the_owner(backend: Backend) {
    use serde_json::json;
    use tradecast_protocol::{Approval, DecidedBy, Decision, Execution};
    let hub = TestHub::start(backend).await;
    let owner = hub.owner().await;
    let kit = crate::helpers::provider_kit(&hub, &owner).await;
    let sub = hub.user(&owner, "subscriber").await;
    let (node, dev) = hub.enrol(&sub, "pc").await;
    hub.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        json!({ "user_id": sub.user_id, "plan_id": kit.plan_id }),
    )
    .await
    .ok(201);
    let s = crate::helpers::signal(&kit.identity, hub.clock.now_ms());
    crate::helpers::post_signal(&hub, &kit, &s, 1).await.1.ok(201);
    let path = format!("/api/v1/signals/{}/outcomes", s.id.to_hex());
    let o = hub.get(&path, Some(&kit.session.token)).await;
    assert_eq!(o.ok(200).as_array().unwrap().len(), 1);
    assert_eq!(o.body[0]["device_id"], dev);
    assert!(o.body[0]["decision"].is_null() && o.body[0]["delivered_at_ms"].is_null());

    // The subscriber's node syncs its signed approval and execution: the provider sees them.
    let now = hub.clock.now_ms();
    let approval = Body::Approval(Approval {
        signal_id: s.id,
        device: node.device_id(),
        decision: Decision::Approved,
        decided_by: DecidedBy::Policy,
        consent_version: 1,
        reason: "auto".into(),
        decided_at_ms: now,
        lots: None,
    });
    let r1 = shared(&node, 1, ChainHash::GENESIS, approval, now);
    let execution = Body::Execution(Execution {
        order_id: 7,
        signal_id: s.id,
        device: node.device_id(),
        retcode: 10009,
        ticket: Some(42),
        fill_price: Some("1.09130".parse().unwrap()),
        volume: "0.35".parse().unwrap(),
        at_ms: now + 5,
    });
    let r2 = shared(&node, 2, r1.header_hash(), execution, now + 5);
    let db = &hub.state().db;
    store::commit(db, &hub.state().hub_identity, &r1, now).await.unwrap();
    store::commit(db, &hub.state().hub_identity, &r2, now + 6).await.unwrap();
    // The node acks the provider's relay log (its keys, the signal) through the cursor writer.
    let log = tradecast_protocol::DeviceId::parse(&kit.device_id).unwrap();
    assert_eq!(tradecast_hub::relay::tip(db, &log).await.unwrap(), 2);
    let ack = tradecast_hub::relay::CursorMove {
        device: dev.clone(),
        provider_device: kit.device_id.clone(),
        from: 0,
        to: 2,
        at_ms: now + 7,
    };
    tradecast_hub::relay::write_batch(db, &[ack]).await.unwrap();
    let o = hub.get(&path, Some(&kit.session.token)).await;
    let row = &o.ok(200)[0];
    assert_eq!(row["decision"], "approved");
    assert_eq!(row["retcode"], 10009);
    assert_eq!(row["fill_price"], "1.09130");
    assert_eq!(row["fill_volume"], "0.35");
    assert_eq!(row["delivered_at_ms"], now + 7);
    // Nobody else sees them: the subscriber, another provider.
    hub.get(&path, Some(&sub.token)).await.problem(404, "not-found");
    let other = crate::helpers::provider_kit(&hub, &owner).await;
    hub.get(&path, Some(&other.session.token)).await.problem(404, "not-found");
    hub.get(&path, Some(&owner.token)).await.ok(200);

    // Equivocation: the quarantine is an alarm on the owner's list until an owner releases it.
    let list = hub.get("/api/v1/sync/quarantines", Some(&owner.token)).await;
    assert!(list.ok(200).as_array().unwrap().is_empty());
    store::quarantine(db, &node.device_id(), StreamId::SHARED, now).await.unwrap();
    store::quarantine(db, &node.device_id(), StreamId::SHARED, now + 1).await.unwrap();
    let list = hub.get("/api/v1/sync/quarantines", Some(&owner.token)).await;
    let q = list.ok(200).as_array().unwrap().clone();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["author"], dev);
    assert_eq!(q[0]["device_name"], "pc");
    assert_eq!(q[0]["stream"], 2);
    hub.get("/api/v1/sync/quarantines", Some(&sub.token)).await.problem(403, "forbidden");
    let audit = hub.get("/api/v1/audit?action=sync.quarantine", Some(&owner.token)).await;
    assert_eq!(audit.ok(200).as_array().unwrap().len(), 1, "one alarm, audited once");
    let release = format!("/api/v1/sync/quarantines/{dev}/2/release");
    hub.post(&release, Some(&sub.token), json!({})).await.problem(403, "forbidden");
    hub.post(&release, Some(&owner.token), json!({})).await.ok(204);
    hub.post(&release, Some(&owner.token), json!({})).await.problem(404, "not-found");
    assert!(
        store::load_streams(db, &node.device_id(), 16)
            .await
            .unwrap()
            .iter()
            .all(|s| !s.quarantined)
    );
    hub.stop().await;
}
