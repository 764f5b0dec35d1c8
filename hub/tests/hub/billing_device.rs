//! The device-authenticated billing read (`GET /api/v1/devices/{id}/billing`): a node signs the
//! request with its identity key and reads its account's subscriptions, the offers, whether
//! Stripe sells and the hub's public URL; a wrong key, a stale or missing signature is 401, a
//! revoked device 403.

use serde_json::json;
use tradecast_hub::billing::ledger::{self, Door, EventKey, Observed, ObservedStatus};
use tradecast_protocol::Identity;
use tradecast_protocol::device_link::{VALID_MS, sign_request};

use crate::helpers::{Backend, Resp, TestHub, new_identity};
use crate::on_both;

on_both!(a_device_reads_its_plan_with_its_own_key, bad_signatures_and_revoked_devices_are_refused);

const DAY: i64 = 86_400_000;

fn path(device: &str) -> String {
    format!("/api/v1/devices/{device}/billing")
}

async fn signed_get(hub: &TestHub, identity: &Identity, device: &str, ts: i64) -> Resp {
    let p = path(device);
    let auth = sign_request(identity, "GET", &p, ts);
    let r =
        reqwest::Client::new().get(hub.url(&p)).header("authorization", auth).send().await.unwrap();
    Resp::from(r).await
}

async fn a_device_reads_its_plan_with_its_own_key(b: Backend) {
    let hub = TestHub::start_with(b, |c| {
        c.public_url =
            Some(tradecast_hub::config::PublicUrl::parse("https://hub.example.com").unwrap());
    })
    .await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let trader = hub.user(&owner, "subscriber").await;
    let plan = hub
        .post(
            "/api/v1/plans",
            Some(&provider.token),
            json!({ "name": "Gold", "price_minor": 4900, "currency": "USD", "period_days": 30,
                    "features": ["signals"] }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (identity, device) = hub.enrol(&trader, "laptop").await;
    let now = hub.clock.now_ms();

    // Before any subscription: none, the offer, Stripe off (no secret), the public URL — the
    // answer signed by the hub's identity key over this request's path and time.
    let r = signed_get(&hub, &identity, &device, now).await;
    let sig = r.headers[tradecast_protocol::device_link::ANSWER_HEADER].to_str().unwrap();
    let hub_key = hub.state().hub_identity.identity_key();
    let body = r.text.as_bytes();
    assert!(tradecast_protocol::device_link::verify_answer(
        &hub_key,
        &path(&device),
        now,
        body,
        sig
    ));
    assert!(!tradecast_protocol::device_link::verify_answer(
        &hub_key,
        &path(&device),
        now - 1,
        body,
        sig
    ));
    let v = r.ok(200).clone();
    assert_eq!(v["device"], device.as_str());
    assert_eq!(v["subscriptions"], json!([]));
    assert_eq!(v["stripe"], false);
    assert_eq!(v["public_url"], "https://hub.example.com");
    let offers = v["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0]["id"], plan.as_str());
    assert_eq!(offers[0]["name"], "Gold");
    assert_eq!(offers[0]["door"], "stripe");

    // A Stripe subscription set to cancel at its period's end.
    let end = now + 30 * DAY;
    let observed = Observed {
        external_id: "sub_dev".into(),
        account_id: trader.user_id.clone(),
        plan_id: plan.clone(),
        status: ObservedStatus::Active,
        period_start_ms: now,
        period_end_ms: end,
        cancel_at_period_end: true,
        trial_end_ms: None,
        ended_at_ms: None,
        unpaid_since_ms: None,
        refunded: false,
        referral: None,
        created_ms: now,
    };
    let key = EventKey { door: Door::Stripe, event_id: "evt_dev_1", kind: "test" };
    ledger::apply(hub.state(), Some(key), &trader.user_id, Door::Stripe, &[observed], &[], "t")
        .await
        .unwrap();
    let v = signed_get(&hub, &identity, &device, now + 1).await.ok(200).clone();
    let subs = v["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{v}");
    let s = &subs[0];
    assert_eq!(s["plan_id"], plan.as_str());
    assert_eq!(s["plan_name"], "Gold");
    assert_eq!(s["status"], "canceled");
    assert_eq!(s["status_words"], "cancelled at period end");
    assert_eq!(s["door"], "stripe");
    assert_eq!(s["current_period_end_ms"], end);
    assert_eq!(s["cancel_at_period_end"], true);
    assert_eq!(s["covered_until_ms"], end);
    // The same header again within the window reads again (read-only: replay accepted).
    signed_get(&hub, &identity, &device, now + 1).await.ok(200);

    // Another account's device sees only its own (nothing).
    let other = hub.user(&owner, "subscriber").await;
    let (id2, dev2) = hub.enrol(&other, "phone").await;
    let v2 = signed_get(&hub, &id2, &dev2, now).await.ok(200).clone();
    assert_eq!(v2["subscriptions"], json!([]));
    // Documented: the route, its answer's schema, its 401 and 403.
    let doc = hub.get("/api/v1/openapi.json", None).await.ok(200).clone();
    let op = &doc["paths"]["/api/v1/devices/{id}/billing"]["get"];
    assert!(op["responses"]["401"].is_object() && op["responses"]["403"].is_object(), "{op}");
    assert!(doc["components"]["schemas"]["DeviceBilling"].is_object());
    hub.stop().await;
}

async fn bad_signatures_and_revoked_devices_are_refused(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let trader = hub.user(&owner, "subscriber").await;
    let (identity, device) = hub.enrol(&trader, "laptop").await;
    let now = hub.clock.now_ms();

    // No header, another scheme, a wrong key, a stale or future time, another device's path.
    hub.get(&path(&device), None).await.problem(401, "unauthenticated");
    hub.get(&path(&device), Some(&trader.token)).await.problem(401, "unauthenticated");
    signed_get(&hub, &new_identity(), &device, now).await.problem(401, "unauthenticated");
    signed_get(&hub, &identity, &device, now - VALID_MS - 1_000)
        .await
        .problem(401, "unauthenticated");
    signed_get(&hub, &identity, &device, now + VALID_MS + 1_000)
        .await
        .problem(401, "unauthenticated");
    let (id2, dev2) = hub.enrol(&trader, "phone").await;
    let cross = sign_request(&id2, "GET", &path(&dev2), now);
    let r = reqwest::Client::new()
        .get(hub.url(&path(&device)))
        .header("authorization", cross)
        .send()
        .await
        .unwrap();
    Resp::from(r).await.problem(401, "unauthenticated");
    // An unknown device and a malformed id.
    let stranger = new_identity();
    let sd = stranger.device_id().to_text();
    signed_get(&hub, &stranger, &sd, now).await.problem(401, "unauthenticated");
    signed_get(&hub, &identity, "not-a-device", now).await.problem(401, "unauthenticated");
    // Fine until revoked; then 403 with a valid signature.
    signed_get(&hub, &identity, &device, now).await.ok(200);
    hub.post(&format!("/api/v1/devices/{device}/revoke"), Some(&trader.token), json!({}))
        .await
        .ok(200);
    signed_get(&hub, &identity, &device, now).await.problem(403, "device-refused");
    // A revoked device with a bad signature learns nothing more than 401.
    signed_get(&hub, &new_identity(), &device, now).await.problem(401, "unauthenticated");
    hub.stop().await;
}
