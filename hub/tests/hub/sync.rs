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
    let node = new_identity();
    let r1 = heartbeat(&node, 1, ChainHash::GENESIS, 1_000);
    let r2 = heartbeat(&node, 2, r1.header_hash(), 2_000);

    let receipt = store::commit(db, hub_id, &r1, 1_500).await.unwrap();
    receipt.verify(&hub_id.identity_key()).unwrap();
    assert!(receipt.covers(&r1));
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
