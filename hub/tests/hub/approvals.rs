//! Approvals: node-signed records stored unique per (signal, device), audited, listed; remote
//! decisions stored as requests for the node and consumed by its approval.

use serde_json::json;
use tradecast_protocol::{
    Approval, Body, ChainHash, DecidedBy, Decision, HeaderFields, Identity, Record, SignalId,
    StreamId,
};

use crate::helpers::{Backend, TestHub, b64, post_signal, provider_kit, signal};
use crate::on_both;

on_both!(approvals_are_stored_not_made);

fn approval_record(
    node: &Identity,
    signal_id: SignalId,
    decision: Decision,
    seq: u64,
    now_ms: i64,
) -> String {
    let a = Approval {
        signal_id,
        device: node.device_id(),
        decision,
        decided_by: DecidedBy::Trader("alice".into()),
        consent_version: 3,
        reason: String::new(),
        decided_at_ms: now_ms,
        lots: None,
    };
    let fields = HeaderFields {
        stream: StreamId::SHARED,
        seq,
        prev_hash: ChainHash::GENESIS,
        created_at_ms: now_ms,
    };
    b64(&Record::sign(node, fields, &Body::Approval(a)).encode())
}

async fn approvals_are_stored_not_made(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let alice = hub.user(&owner, "subscriber").await;
    let bob = hub.user(&owner, "subscriber").await;
    let (node, node_id) = hub.enrol(&alice, "pc").await;
    let (bob_node, _) = hub.enrol(&bob, "pc").await;
    hub.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        json!({ "user_id": alice.user_id, "plan_id": kit.plan_id }),
    )
    .await
    .ok(201);
    let s = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s, 1).await.1.ok(201);
    let now = hub.clock.now_ms();

    // A remote decision is stored as a request for the node, not as an approval.
    let req = hub
        .post("/api/v1/approval-requests", Some(&alice.token), json!({ "signal_id": s.id.to_hex(), "device_id": node_id, "decision": "approved", "channel": "telegram" }))
        .await;
    req.ok(201);
    let pending =
        hub.get(&format!("/api/v1/devices/{node_id}/approval-requests"), Some(&alice.token)).await;
    assert_eq!(pending.ok(200).as_array().unwrap().len(), 1);
    assert_eq!(
        hub.get("/api/v1/approvals", Some(&alice.token)).await.ok(200).as_array().unwrap().len(),
        0
    );
    hub.get(&format!("/api/v1/devices/{node_id}/approval-requests"), Some(&bob.token))
        .await
        .problem(404, "not-found");
    hub.post("/api/v1/approval-requests", Some(&bob.token), json!({ "signal_id": s.id.to_hex(), "device_id": node_id, "decision": "approved", "channel": "telegram" }))
        .await
        .problem(403, "device-refused");
    hub.post("/api/v1/approval-requests", Some(&alice.token), json!({ "signal_id": s.id.to_hex(), "device_id": node_id, "decision": "maybe", "channel": "telegram" }))
        .await
        .problem(422, "validation");

    // The node's own signed approval.
    let rec = approval_record(&node, s.id, Decision::Approved, 1, now);
    let r = hub.post("/api/v1/approvals", Some(&alice.token), json!({ "record": rec })).await;
    let stored = r.ok(201).clone();
    assert_eq!(stored["decision"], "approved");
    assert_eq!(stored["consent_version"], 3);
    assert_eq!(stored["device_id"], node_id);
    // Same record: 200; a different decision for the same (signal, device): 409.
    hub.post("/api/v1/approvals", Some(&alice.token), json!({ "record": rec })).await.ok(200);
    hub.post(
        "/api/v1/approvals",
        Some(&alice.token),
        json!({ "record": approval_record(&node, s.id, Decision::Rejected, 2, now) }),
    )
    .await
    .problem(409, "approval-conflict");
    // The remote request was consumed by the node's answer.
    let pending =
        hub.get(&format!("/api/v1/devices/{node_id}/approval-requests"), Some(&alice.token)).await;
    assert_eq!(pending.ok(200).as_array().unwrap().len(), 0);
    // Unknown signal, someone else's device, a signal record instead of an approval.
    hub.post(
        "/api/v1/approvals",
        Some(&alice.token),
        json!({ "record": approval_record(&node, SignalId([9; 16]), Decision::Approved, 3, now) }),
    )
    .await
    .problem(404, "not-found");
    hub.post(
        "/api/v1/approvals",
        Some(&alice.token),
        json!({ "record": approval_record(&bob_node, s.id, Decision::Approved, 1, now) }),
    )
    .await
    .problem(403, "device-refused");
    hub.post("/api/v1/approvals", Some(&alice.token), json!({ "record": "AAAA" }))
        .await
        .problem(422, "invalid-record");
    hub.post("/api/v1/approvals", None, json!({ "record": rec }))
        .await
        .problem(401, "unauthenticated");

    // Who sees it: the device owner, the signal's provider, admins; not another subscriber.
    let q = format!("/api/v1/approvals?signal_id={}", s.id.to_hex());
    assert_eq!(hub.get(&q, Some(&alice.token)).await.ok(200).as_array().unwrap().len(), 1);
    assert_eq!(hub.get(&q, Some(&kit.session.token)).await.ok(200).as_array().unwrap().len(), 1);
    assert_eq!(hub.get(&q, Some(&owner.token)).await.ok(200).as_array().unwrap().len(), 1);
    assert_eq!(hub.get(&q, Some(&bob.token)).await.ok(200).as_array().unwrap().len(), 0);

    // A revoked device's approvals are refused.
    hub.post(&format!("/api/v1/devices/{node_id}/revoke"), Some(&alice.token), json!({}))
        .await
        .ok(200);
    let s2 = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s2, 2).await.1.ok(201);
    hub.post(
        "/api/v1/approvals",
        Some(&alice.token),
        json!({ "record": approval_record(&node, s2.id, Decision::Approved, 4, now) }),
    )
    .await
    .problem(403, "device-refused");

    let audit = hub.get("/api/v1/audit?action=approval.store", Some(&owner.token)).await;
    assert_eq!(audit.ok(200).as_array().unwrap().len(), 1);
    hub.stop().await;
}
