//! Account fingerprints (issue 20): the deployment's key handed out at enrolment and on the
//! device-signed read, the sync commit keeping the fingerprint of a `DeviceKeys` record with the
//! enrolled keys on the device's row (and ignoring one with other keys), the relayed keys
//! record staying the enrolment one, and `accounts_share_trading_account`.

use serde_json::json;
use tradecast_hub::devices;
use tradecast_hub::quic::store;
use tradecast_protocol::device_link::{self, VALID_MS, sign_request};
use tradecast_protocol::{
    AccountFingerprint, Body, ChainHash, DeviceKeys, HeaderFields, Heartbeat, Identity, Record,
    StreamId,
};

use crate::helpers::{Backend, Resp, Session, TestHub, b64, new_identity};
use crate::on_both;

on_both!(
    enrolment_hands_out_the_deployment_key,
    a_device_reads_the_key_with_its_own_signature,
    synced_device_keys_with_the_enrolled_keys_set_the_fingerprint,
    accounts_sharing_a_trading_account,
);

fn keys_record(
    identity: &Identity,
    seq: u64,
    prev: ChainHash,
    fingerprint: Option<AccountFingerprint>,
    at_ms: i64,
) -> Record {
    let keys = DeviceKeys {
        identity: identity.identity_key(),
        sealing: identity.sealing_public_key(),
        label: "office PC".into(),
        at_ms,
        account_fingerprint: fingerprint,
    };
    let fields =
        HeaderFields { stream: StreamId::DEVICE, seq, prev_hash: prev, created_at_ms: at_ms };
    Record::sign(identity, fields, &Body::DeviceKeys(keys))
}

/// Enrols a fresh identity for `who` with its DEVICE stream's first record; returns the
/// identity, that record and the enrolment answer.
async fn enrol(hub: &TestHub, who: &Session) -> (Identity, Record, serde_json::Value) {
    let identity = new_identity();
    let record = keys_record(&identity, 1, ChainHash::GENESIS, None, hub.clock.now_ms());
    let code = hub.post("/api/v1/devices/enrolment-codes", Some(&who.token), json!({})).await;
    let body = json!({ "code": code.ok(201)["code"], "keys_record": b64(&record.encode()) });
    let r = hub.post("/api/v1/devices/enrol", None, body).await;
    let answer = r.ok(201).clone();
    (identity, record, answer)
}

fn deployment_key(hub: &TestHub) -> [u8; 32] {
    *hub.state().secrets.account_fingerprint_key()
}

async fn fingerprint_of(hub: &TestHub, identity: &Identity) -> Option<(String, i64)> {
    devices::account_fingerprint(&hub.state().db, &identity.device_id().to_text()).await.unwrap()
}

async fn enrolment_hands_out_the_deployment_key(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let alice = hub.user(&owner, "subscriber").await;
    let (_, _, answer) = enrol(&hub, &alice).await;
    let key = answer["account_fingerprint_key"].as_str().unwrap();
    assert_eq!(key, hex::encode(deployment_key(&hub)));
    assert_ne!(key, hex::encode(*hub.secrets.hub_identity_key), "derived, not the seed");
    // Every instance of the hub (several share one PostgreSQL) hands out the same key: they
    // share the identity seed.
    if b == Backend::Postgres {
        let second = hub.start_instance(|_| {}).await;
        let (_, _, answer) = enrol(&second, &alice).await;
        assert_eq!(answer["account_fingerprint_key"].as_str().unwrap(), key);
        second.stop().await;
    }
    hub.stop().await;
}

fn path(device: &str) -> String {
    format!("/api/v1/devices/{device}/account-fingerprint-key")
}

async fn signed_get(hub: &TestHub, identity: &Identity, device: &str, ts: i64) -> Resp {
    let p = path(device);
    let auth = sign_request(identity, "GET", &p, ts);
    let r =
        reqwest::Client::new().get(hub.url(&p)).header("authorization", auth).send().await.unwrap();
    Resp::from(r).await
}

async fn a_device_reads_the_key_with_its_own_signature(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let alice = hub.user(&owner, "subscriber").await;
    let (identity, _, _) = enrol(&hub, &alice).await;
    let device = identity.device_id().to_text();
    let now = hub.clock.now_ms();

    let r = signed_get(&hub, &identity, &device, now).await;
    let body = r.ok(200).clone();
    assert_eq!(body["device"], device);
    assert_eq!(body["account_fingerprint_key"], hex::encode(deployment_key(&hub)));
    // Signed by the hub's identity key over this request's path and time.
    let sig = r.headers[device_link::ANSWER_HEADER].to_str().unwrap();
    let hub_key = hub.state().hub_identity.identity_key();
    assert!(device_link::verify_answer(&hub_key, &path(&device), now, r.text.as_bytes(), sig));
    assert!(!device_link::verify_answer(&hub_key, &path(&device), now + 1, r.text.as_bytes(), sig));

    // Another key, a stale signature, no signature, an unknown device: 401.
    signed_get(&hub, &new_identity(), &device, now).await.problem(401, "unauthenticated");
    signed_get(&hub, &identity, &device, now - VALID_MS - 1).await.problem(401, "unauthenticated");
    hub.get(&path(&device), None).await.problem(401, "unauthenticated");
    let stranger = new_identity();
    let unknown = stranger.device_id().to_text();
    signed_get(&hub, &stranger, &unknown, now).await.problem(401, "unauthenticated");
    // A revoked device: 403.
    hub.post(&format!("/api/v1/devices/{device}/revoke"), Some(&alice.token), json!({}))
        .await
        .ok(200);
    signed_get(&hub, &identity, &device, now).await.problem(403, "device-refused");
    hub.stop().await;
}

async fn synced_device_keys_with_the_enrolled_keys_set_the_fingerprint(b: Backend) {
    let hub = TestHub::start(b).await;
    let db = &hub.state().db;
    let hub_id = &hub.state().hub_identity;
    let owner = hub.owner().await;
    let alice = hub.user(&owner, "subscriber").await;
    let (node, first, _) = enrol(&hub, &alice).await;
    let key = deployment_key(&hub);
    let f1 = AccountFingerprint::compute(&key, "Demo-Server", 5_012_345);
    let f2 = AccountFingerprint::compute(&key, "Demo-Server", 5_012_346);

    // The enrolment record itself (no fingerprint): nothing on the row.
    store::commit(db, hub_id, &first, 1_000).await.unwrap();
    assert_eq!(fingerprint_of(&hub, &node).await, None);
    // The EA said hello: the fingerprint and when the node signed it.
    let r2 = keys_record(&node, 2, first.header_hash(), Some(f1), 2_000);
    store::commit(db, hub_id, &r2, 2_100).await.unwrap();
    assert_eq!(fingerprint_of(&hub, &node).await, Some((f1.to_hex(), 2_000)));

    // A DeviceKeys announcing another sealing key (signed by the device): kept in the chain,
    // its fingerprint not used.
    let foreign = {
        let other = new_identity();
        let keys = DeviceKeys {
            identity: node.identity_key(),
            sealing: other.sealing_public_key(),
            label: "office PC".into(),
            at_ms: 3_000,
            account_fingerprint: Some(f2),
        };
        let fields = HeaderFields {
            stream: StreamId::DEVICE,
            seq: 3,
            prev_hash: r2.header_hash(),
            created_at_ms: 3_000,
        };
        Record::sign(&node, fields, &Body::DeviceKeys(keys))
    };
    store::commit(db, hub_id, &foreign, 3_100).await.unwrap();
    assert_eq!(fingerprint_of(&hub, &node).await, Some((f1.to_hex(), 2_000)));
    // And one announcing another identity key.
    let foreign_identity = {
        let other = new_identity();
        let keys = DeviceKeys {
            identity: other.identity_key(),
            sealing: node.sealing_public_key(),
            label: "office PC".into(),
            at_ms: 3_500,
            account_fingerprint: Some(f2),
        };
        let fields = HeaderFields {
            stream: StreamId::DEVICE,
            seq: 4,
            prev_hash: foreign.header_hash(),
            created_at_ms: 3_500,
        };
        Record::sign(&node, fields, &Body::DeviceKeys(keys))
    };
    store::commit(db, hub_id, &foreign_identity, 3_600).await.unwrap();
    assert_eq!(fingerprint_of(&hub, &node).await, Some((f1.to_hex(), 2_000)));

    // A heartbeat, then the account changed: a batch of both, the latest wins.
    let beat = {
        let fields = HeaderFields {
            stream: StreamId::DEVICE,
            seq: 5,
            prev_hash: foreign_identity.header_hash(),
            created_at_ms: 4_000,
        };
        let body = Body::Heartbeat(Heartbeat {
            device: node.device_id(),
            at_ms: 4_000,
            ea_connected: true,
            terminal_time_ms: None,
        });
        Record::sign(&node, fields, &body)
    };
    let r6 = keys_record(&node, 6, beat.header_hash(), Some(f2), 5_000);
    let r7 = keys_record(&node, 7, r6.header_hash(), Some(f1), 6_000);
    let rules = tradecast_hub::signals::IngestRules { max_age_ms: 60_000 };
    store::commit_batch(db, hub_id, rules, &[(beat.clone(), 4_100), (r6.clone(), 5_100)])
        .await
        .unwrap();
    assert_eq!(fingerprint_of(&hub, &node).await, Some((f2.to_hex(), 5_000)));
    // A resend of an older record changes nothing.
    store::commit(db, hub_id, &r2, 5_200).await.unwrap();
    assert_eq!(fingerprint_of(&hub, &node).await, Some((f2.to_hex(), 5_000)));
    store::commit(db, hub_id, &r7, 6_100).await.unwrap();
    assert_eq!(fingerprint_of(&hub, &node).await, Some((f1.to_hex(), 6_000)));
    let held = store::records(db, &node.device_id(), StreamId::DEVICE).await.unwrap();
    assert_eq!(held.len(), 7, "every record stays in the chain");

    // Followers are still sent the enrolment record.
    let mut tx = db.begin_write().await.unwrap();
    let relayed = tradecast_hub::feed::keys_record(&mut tx, &node.device_id().to_text())
        .await
        .unwrap()
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(relayed, first);
    hub.stop().await;
}

async fn accounts_sharing_a_trading_account(b: Backend) {
    let hub = TestHub::start(b).await;
    let db = &hub.state().db;
    let hub_id = &hub.state().hub_identity;
    let owner = hub.owner().await;
    let (alice, bob, carol, dave) = (
        hub.user(&owner, "subscriber").await,
        hub.user(&owner, "subscriber").await,
        hub.user(&owner, "subscriber").await,
        hub.user(&owner, "subscriber").await,
    );
    let key = deployment_key(&hub);
    let shared = AccountFingerprint::compute(&key, "Demo-Server", 1);
    let own = AccountFingerprint::compute(&key, "Demo-Server", 2);
    // Alice: a device without fingerprint and one on the shared account; Bob: one on the shared
    // account; Carol: one on her own account; Dave: none.
    let fingerprinted = |who: &Session, f: Option<AccountFingerprint>| {
        let hub = &hub;
        let who = who.clone();
        async move {
            let (node, first, _) = enrol(hub, &who).await;
            store::commit(db, hub_id, &first, 1_000).await.unwrap();
            if let Some(f) = f {
                let r = keys_record(&node, 2, first.header_hash(), Some(f), 2_000);
                store::commit(db, hub_id, &r, 2_000).await.unwrap();
            }
            node.device_id().to_text()
        }
    };
    fingerprinted(&alice, None).await;
    fingerprinted(&alice, Some(shared)).await;
    let bob_device = fingerprinted(&bob, Some(shared)).await;
    fingerprinted(&carol, Some(own)).await;

    let share = |a: String, b: String| async move {
        let mut tx = db.begin_write().await.unwrap();
        let r = devices::accounts_share_trading_account(&mut tx, &a, &b).await.unwrap();
        tx.rollback().await.unwrap();
        r
    };
    let id = |s: &Session| s.user_id.clone();
    assert!(share(id(&alice), id(&bob)).await);
    assert!(share(id(&bob), id(&alice)).await);
    assert!(!share(id(&alice), id(&carol)).await);
    assert!(!share(id(&carol), id(&bob)).await);
    assert!(!share(id(&alice), id(&dave)).await);
    assert!(!share(id(&dave), id(&dave)).await);
    assert!(!share(id(&alice), "no-such-account".into()).await);
    // A revoked device no longer counts.
    hub.post(&format!("/api/v1/devices/{bob_device}/revoke"), Some(&bob.token), json!({}))
        .await
        .ok(200);
    assert!(!share(id(&alice), id(&bob)).await);
    hub.stop().await;
}
