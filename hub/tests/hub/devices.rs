//! Enrolment codes (single use, expiring), enrolment with self-signed keys and the hub key to
//! pin, list / rename / revoke, and who may touch which device.

use serde_json::json;
use tradecast_protocol::IdentityKey;

use crate::helpers::{Backend, TestHub, b64, keys_record, new_identity};
use crate::on_both;

on_both!(enrolment_and_management);

async fn enrolment_and_management(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let alice = hub.user(&owner, "subscriber").await;
    let bob = hub.user(&owner, "subscriber").await;

    let code = hub.post("/api/v1/devices/enrolment-codes", Some(&alice.token), json!({})).await;
    let code = code.ok(201)["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 11, "{code}");
    let node = new_identity();
    let now = hub.clock.now_ms();
    let r = hub
        .post(
            "/api/v1/devices/enrol",
            None,
            json!({ "code": code, "keys_record": keys_record(&node, "office PC", now) }),
        )
        .await;
    let body = r.ok(201).clone();
    assert_eq!(body["device"]["id"], node.device_id().to_text());
    assert_eq!(body["device"]["name"], "office PC");
    assert_eq!(body["device"]["user_id"], alice.user_id);
    // The hub key to pin is the hub's identity, and its device id matches.
    let hub_key = IdentityKey::from_hex(body["hub_identity_key"].as_str().unwrap()).unwrap();
    assert_eq!(hub_key, hub.state().hub_identity.identity_key());
    assert_eq!(body["hub_device_id"], hub_key.device_id().to_text());

    // Single use; lowercase and without the dash is the same code.
    let again = new_identity();
    let r = hub
        .post("/api/v1/devices/enrol", None, json!({ "code": code.to_lowercase().replace('-', ""), "keys_record": keys_record(&again, "x", now) }))
        .await;
    r.problem(401, "invalid-enrolment-code");
    // Unknown and malformed codes.
    for bad in ["ZZZZZ-ZZZZZ", "short", ""] {
        hub.post(
            "/api/v1/devices/enrol",
            None,
            json!({ "code": bad, "keys_record": keys_record(&again, "x", now) }),
        )
        .await
        .problem(401, "invalid-enrolment-code");
    }
    // Expired.
    let code2 = hub
        .post("/api/v1/devices/enrolment-codes", Some(&alice.token), json!({}))
        .await
        .body["code"]
        .clone();
    hub.clock.advance_ms(601_000);
    hub.post(
        "/api/v1/devices/enrol",
        None,
        json!({ "code": code2, "keys_record": keys_record(&again, "x", now) }),
    )
    .await
    .problem(401, "invalid-enrolment-code");
    // Bad records: not base64, garbage bytes, a keys record whose signature was not made by
    // the key it announces.
    let code3 = hub
        .post("/api/v1/devices/enrolment-codes", Some(&alice.token), json!({}))
        .await
        .body["code"]
        .clone();
    hub.post("/api/v1/devices/enrol", None, json!({ "code": code3, "keys_record": "***" }))
        .await
        .problem(422, "invalid-record");
    hub.post(
        "/api/v1/devices/enrol",
        None,
        json!({ "code": code3, "keys_record": b64(b"garbage") }),
    )
    .await
    .problem(422, "invalid-record");
    let forged = {
        let keys = tradecast_protocol::DeviceKeys {
            identity: again.identity_key(),
            sealing: again.sealing_public_key(),
            label: "forged".into(),
            at_ms: now,
            account_fingerprint: None,
        };
        let fields = crate::helpers::fields(1, now);
        // Signed by another identity than the one announced.
        b64(&tradecast_protocol::Record::sign(
            &new_identity(),
            fields,
            &tradecast_protocol::Body::DeviceKeys(keys),
        )
        .encode())
    };
    hub.post("/api/v1/devices/enrol", None, json!({ "code": code3, "keys_record": forged }))
        .await
        .problem(422, "invalid-record");
    // The same device cannot enrol twice.
    hub.post(
        "/api/v1/devices/enrol",
        None,
        json!({ "code": code3, "keys_record": keys_record(&node, "again", now) }),
    )
    .await
    .problem(409, "conflict");
    hub.post("/api/v1/devices/enrolment-codes", None, json!({}))
        .await
        .problem(401, "unauthenticated");

    // List, rename, revoke.
    let id = node.device_id().to_text();
    let list = hub.get("/api/v1/devices", Some(&alice.token)).await;
    assert_eq!(list.ok(200).as_array().unwrap().len(), 1);
    assert_eq!(
        hub.get("/api/v1/devices", Some(&bob.token)).await.ok(200).as_array().unwrap().len(),
        0
    );
    assert_eq!(
        hub.get("/api/v1/devices", Some(&owner.token)).await.ok(200).as_array().unwrap().len(),
        1
    );
    let path = format!("/api/v1/devices/{id}");
    let r = hub.send("PATCH", &path, Some(&alice.token), Some(json!({ "name": "laptop" }))).await;
    assert_eq!(r.ok(200)["name"], "laptop");
    hub.send("PATCH", &path, Some(&alice.token), Some(json!({ "name": "" })))
        .await
        .problem(422, "validation");
    hub.send("PATCH", &path, Some(&bob.token), Some(json!({ "name": "mine" })))
        .await
        .problem(404, "not-found");
    hub.post(&format!("{path}/revoke"), Some(&bob.token), json!({}))
        .await
        .problem(404, "not-found");
    let r = hub.post(&format!("{path}/revoke"), Some(&alice.token), json!({})).await;
    assert!(r.ok(200)["revoked_at_ms"].is_i64());
    // A revoked device is refused from then on.
    let err = tradecast_hub::devices::active_device(&hub.db, &node.device_id())
        .await
        .expect_err("revoked");
    assert_eq!(err.kind(), "device-refused");

    let audit = hub.get("/api/v1/audit?limit=1000", Some(&owner.token)).await;
    let actions: Vec<String> = audit
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for a in ["device.enrol", "device.rename", "device.revoke", "device.code_create"] {
        assert!(actions.iter().any(|x| x == a), "{a} not audited: {actions:?}");
    }
    hub.stop().await;
}
