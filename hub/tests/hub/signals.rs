//! The signals API: HMAC-authenticated ingest of provider-signed records, every check with its
//! exact status and problem type, dedupe, fan-out queueing to entitled devices only, receipts.

use serde_json::json;
use tradecast_hub::relay;
use tradecast_protocol::{Body, IdentityKey, Receipt, Record};

use crate::helpers::{
    Backend, TestHub, b64, fields, nonce, post_signal, post_signal_raw, provider_kit, signal,
};
use crate::on_both;

on_both!(
    ingest_dedupe_and_fanout,
    ingest_refusals,
    hmac_refusals,
    provider_conditions,
    a_signal_queued_before_the_relay_log_is_closed_through_the_inbox
);

async fn ingest_dedupe_and_fanout(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    // Two subscribers: one entitled with two devices (one revoked), one not entitled.
    let sub = hub.user(&owner, "subscriber").await;
    let (_, dev1) = hub.enrol(&sub, "pc").await;
    let (_, dev2) = hub.enrol(&sub, "vps").await;
    hub.post(&format!("/api/v1/devices/{dev2}/revoke"), Some(&sub.token), json!({})).await.ok(200);
    let outsider = hub.user(&owner, "subscriber").await;
    let (_, outsider_dev) = hub.enrol(&outsider, "pc").await;
    hub.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        json!({ "user_id": sub.user_id, "plan_id": kit.plan_id }),
    )
    .await
    .ok(201);

    let s = signal(&kit.identity, hub.clock.now_ms());
    let (record, r) = post_signal(&hub, &kit, &s, 1).await;
    let stored = r.ok(201).clone();
    assert_eq!(stored["signal_id"], s.id.to_hex());
    assert_eq!(stored["author"], kit.device_id);
    assert_eq!(stored["n_devices_queued"], 1);
    assert_eq!(stored["signal"]["entry"], "1.09128");
    assert_eq!(stored["signal"]["symbol"], "EURUSD");
    assert_eq!(stored["record"], b64(&record.encode()));
    // The receipt is the hub's signature over this exact record.
    let receipt: Receipt = serde_json::from_value(stored["receipt"].clone()).unwrap();
    receipt.verify(&hub.state().hub_identity.identity_key()).unwrap();
    assert!(receipt.covers(&record));
    // The record the hub returns verifies against the provider's key, unchanged.
    let back = Record::decode(
        &data_encoding::BASE64.decode(stored["record"].as_str().unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    back.verify(&kit.identity.identity_key()).unwrap();
    assert!(matches!(back.body().unwrap(), Body::Signal(x) if x == s));

    // Same record again (a retry with a fresh nonce): 200 with the stored signal.
    let r = post_signal_raw(
        &hub,
        &kit.key_id,
        &kit.secret,
        serde_json::to_vec(&json!({ "record": stored["record"] })).unwrap(),
        hub.clock.now_ms(),
        &nonce(),
    )
    .await;
    let again = r.ok(200).clone();
    assert_eq!(again["received_at_ms"], stored["received_at_ms"]);
    assert_eq!(again["receipt"], stored["receipt"]);
    // Same id, another record (different stop): 409.
    let mut changed = s.clone();
    changed.stop = "1.08000".parse().unwrap();
    post_signal(&hub, &kit, &changed, 2).await.1.problem(409, "signal-conflict");
    // Another signal at a seq already used: 409 conflict (equivocation).
    post_signal(&hub, &kit, &signal(&kit.identity, hub.clock.now_ms()), 1)
        .await
        .1
        .problem(409, "conflict");

    // Fan-out queue: only the entitled, unrevoked device.
    let queued: Vec<String> =
        sqlx::query_scalar("SELECT device_id FROM fanout_queue WHERE signal_id = $1")
            .bind(s.id.to_hex())
            .fetch_all(hub.db.pool())
            .await
            .unwrap();
    assert_eq!(queued, vec![dev1.clone()]);
    // The device's inbox holds the hub-signed grant of its plan (issued with the entitlement)
    // only: the signal is in the provider device's relay log, after the provider's self-signed
    // keys (pinned on first sight), unchanged, once for every subscriber.
    let inbox = tradecast_hub::feed::items(&hub.db, &dev1, 1, 100).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert!(matches!(inbox[0].record.body().unwrap(), Body::FeatureGrant(_)));
    let following = relay::following(&hub.db, &sub.user_id, &dev1).await.unwrap();
    assert_eq!(following.logs.len(), 1, "{following:?}");
    let (log, provider, cursor, tip) = following.logs[0].clone();
    assert_eq!(
        (log.to_text(), provider.as_str(), cursor, tip),
        (kit.device_id.clone(), kit.session.user_id.as_str(), 0, 2)
    );
    let viewer = following.viewers[&provider].clone();
    let (entries, scanned) = relay::load(&hub.db, &log, 0, 100, &viewer).await.unwrap();
    assert_eq!(scanned, 2);
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    let keys = Record::decode(&entries[0].record).unwrap();
    assert!(
        matches!(keys.body().unwrap(), Body::DeviceKeys(k) if k.identity == kit.identity.identity_key())
    );
    assert_eq!(&*entries[1].record, &record.encode()[..]);
    // The outsider follows no log; one who subscribes after the signal sees the keys only.
    let f = relay::following(&hub.db, &outsider.user_id, &outsider_dev).await.unwrap();
    assert!(f.logs.is_empty() && f.viewers.is_empty());
    let late = relay::Viewer { enrolled_at_ms: 0, intervals: vec![(hub.clock.now_ms() + 1, None)] };
    let (seen, scanned) = relay::load(&hub.db, &log, 0, 100, &late).await.unwrap();
    assert_eq!((seen.iter().map(|e| e.seq).collect::<Vec<_>>(), scanned), (vec![1], 2));
    // The provider's close of that signal, arriving over sync, follows it in the same log, to
    // the devices that saw the signal (no second copy of the keys); a close of an unknown
    // signal stays in the chain only.
    let close = |signal_id, seq| {
        let body = Body::Close(tradecast_protocol::Close {
            signal_id,
            fraction: rust_decimal::Decimal::ONE,
            price: None,
            reason: "provider closed".into(),
            at_ms: hub.clock.now_ms(),
        });
        Record::sign(&kit.identity, fields(seq, hub.clock.now_ms()), &body)
    };
    let hub_id = &hub.state().hub_identity;
    let c = close(s.id, 2);
    tradecast_hub::quic::store::commit(&hub.db, hub_id, &c, hub.clock.now_ms()).await.unwrap();
    let stray = close(tradecast_protocol::SignalId([9; 16]), 3);
    tradecast_hub::quic::store::commit(&hub.db, hub_id, &stray, hub.clock.now_ms()).await.unwrap();
    let (entries, _) = relay::load(&hub.db, &log, 2, 100, &viewer).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(&*entries[0].record, &c.encode()[..]);
    assert_eq!(
        relay::load(&hub.db, &log, 0, 100, &late).await.unwrap().1,
        3,
        "the close is not the late subscriber's"
    );
    let entitled = tradecast_hub::entitlements::entitled_devices(
        &hub.db,
        &kit.session.user_id,
        hub.clock.now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(entitled, vec![dev1.clone()]);
    hub.clock.advance_ms(5_000);
    let m = hub.get("/metrics", None).await;
    assert!(m.text.contains("tradecast_fanout_queued 1"), "{}", m.text);
    assert!(m.text.contains("tradecast_fanout_lag_seconds 5"), "{}", m.text);
    assert!(m.text.contains("tradecast_signals_ingested_total 1"), "{}", m.text);
    // The node's ack (through the batched cursor writer) marks the signal delivered (the
    // queue gauge drops); an older ack never moves the cursor back.
    let acked_at = hub.clock.now_ms();
    let ack = |from, to, at_ms| relay::CursorMove {
        device: dev1.clone(),
        provider_device: log.to_text(),
        from,
        to,
        at_ms,
    };
    relay::write_batch(&hub.db, &[ack(0, 3, acked_at)]).await.unwrap();
    relay::write_batch(&hub.db, &[ack(0, 1, acked_at + 9)]).await.unwrap();
    assert_eq!(relay::cursor(&hub.db, &dev1, &log).await.unwrap(), 3);
    let delivered: Option<i64> = sqlx::query_scalar(
        "SELECT delivered_at_ms FROM fanout_queue WHERE signal_id = $1 AND device_id = $2",
    )
    .bind(s.id.to_hex())
    .bind(&dev1)
    .fetch_one(hub.db.pool())
    .await
    .unwrap();
    assert_eq!(delivered, Some(acked_at));
    let m = hub.get("/metrics", None).await;
    assert!(m.text.contains("tradecast_fanout_queued 0"), "{}", m.text);

    // Who sees it.
    assert_eq!(
        hub.get("/api/v1/signals", Some(&sub.token)).await.ok(200).as_array().unwrap().len(),
        1
    );
    assert_eq!(
        hub.get("/api/v1/signals", Some(&outsider.token)).await.ok(200).as_array().unwrap().len(),
        0
    );
    assert_eq!(
        hub.get("/api/v1/signals", Some(&kit.session.token))
            .await
            .ok(200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let path = format!("/api/v1/signals/{}", s.id.to_hex());
    assert_eq!(hub.get(&path, Some(&sub.token)).await.ok(200)["signal_id"], s.id.to_hex());
    hub.get(&path, Some(&outsider.token)).await.problem(404, "not-found");
    assert_eq!(
        hub.get("/api/v1/signals", Some(&owner.token)).await.ok(200).as_array().unwrap().len(),
        1
    );
    hub.get(&path, Some(&owner.token)).await.ok(200);
    hub.get("/api/v1/signals/ffff", Some(&owner.token)).await.problem(404, "not-found");
    // An entitlement revoked: the subscriber no longer sees the provider's signals.
    let ents =
        hub.get(&format!("/api/v1/entitlements?user_id={}", sub.user_id), Some(&owner.token)).await;
    let e_id = ents.ok(200)[0]["id"].as_str().unwrap().to_string();
    hub.post(&format!("/api/v1/entitlements/{e_id}/revoke"), Some(&owner.token), json!({}))
        .await
        .ok(204);
    hub.get(&path, Some(&sub.token)).await.problem(404, "not-found");

    let audit = hub.get("/api/v1/audit?action=signal.ingest", Some(&owner.token)).await;
    assert_eq!(audit.ok(200).as_array().unwrap().len(), 1);
    hub.stop().await;
}

async fn ingest_refusals(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let now = hub.clock.now_ms();
    let post = |body: Vec<u8>| {
        let (hub, kit) = (&hub, &kit);
        async move { post_signal_raw(hub, &kit.key_id, &kit.secret, body, now, &nonce()).await }
    };

    post(b"{\"record\": ".to_vec()).await.problem(400, "malformed-json");
    post(br#"{"record": 5}"#.to_vec()).await.problem(422, "invalid-body");
    post(br#"{"recrd": "AA=="}"#.to_vec()).await.problem(422, "invalid-body");
    post(br#"{"record": "@@@"}"#.to_vec()).await.problem(422, "invalid-record");
    post(format!(r#"{{"record": "{}"}}"#, b64(b"not a record")).into_bytes())
        .await
        .problem(422, "invalid-record");
    // Over 32 KiB.
    post(format!(r#"{{"record": "{}"}}"#, "A".repeat(33 * 1024)).into_bytes())
        .await
        .problem(413, "payload-too-large");

    // A record of another kind.
    let keys = crate::helpers::keys_record(&kit.identity, "x", now);
    post(format!(r#"{{"record": "{keys}"}}"#).into_bytes()).await.problem(422, "invalid-record");
    // Signed by a device that is not enrolled.
    let stranger = crate::helpers::new_identity();
    let (_, body) = tradecast_hub::signals::client::signal_body(
        &stranger,
        fields(1, now),
        &signal(&stranger, now),
    );
    post(body).await.problem(403, "device-refused");
    // signal.provider is not the author.
    let mut s = signal(&kit.identity, now);
    s.provider = stranger.device_id();
    let (_, body) = tradecast_hub::signals::client::signal_body(&kit.identity, fields(1, now), &s);
    post(body).await.problem(422, "invalid-record");
    // Schema: prices out of order, empty symbol, expiry before its bar.
    for mutate in [
        (|s: &mut tradecast_protocol::Signal| s.stop = "1.1".parse().unwrap())
            as fn(&mut tradecast_protocol::Signal),
        |s| s.symbol = String::new(),
        |s| s.expires_at_ms = 0,
        |s| s.leg = 0,
        |s| s.entry = "-1".parse().unwrap(),
    ] {
        let mut s = signal(&kit.identity, now);
        mutate(&mut s);
        let (_, body) =
            tradecast_hub::signals::client::signal_body(&kit.identity, fields(1, now), &s);
        post(body).await.problem(422, "invalid-record");
    }
    // A tampered record: signature no longer verifies (flip a byte of the body).
    let (record, _) = tradecast_hub::signals::client::signal_body(
        &kit.identity,
        fields(1, now),
        &signal(&kit.identity, now),
    );
    let mut bytes = record.encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    post(format!(r#"{{"record": "{}"}}"#, b64(&bytes)).into_bytes())
        .await
        .problem(422, "invalid-record");
    // Stale: created 61 s before reception (the request itself is fresh).
    let old = now - 61_000;
    let (_, body) = tradecast_hub::signals::client::signal_body(
        &kit.identity,
        fields(1, old),
        &signal(&kit.identity, old),
    );
    let r = post(body).await;
    r.problem(422, "stale-signal");
    // From the future by more than the limit as well.
    let future = now + 61_000;
    let (_, body) = tradecast_hub::signals::client::signal_body(
        &kit.identity,
        fields(1, future),
        &signal(&kit.identity, future),
    );
    post(body).await.problem(422, "stale-signal");
    // 59 s old is accepted.
    let ok = now - 59_000;
    let (_, body) = tradecast_hub::signals::client::signal_body(
        &kit.identity,
        fields(1, ok),
        &signal(&kit.identity, ok),
    );
    post(body).await.ok(201);
    // Wrong content type with a valid signature.
    let (_, body) = tradecast_hub::signals::client::signal_body(
        &kit.identity,
        fields(2, now),
        &signal(&kit.identity, now),
    );
    let path = tradecast_hub::signals::client::SIGNALS_PATH;
    let mut req =
        hub.http.post(hub.url(path)).header("content-type", "text/plain").body(body.clone());
    for (k, v) in tradecast_hub::signals::client::auth_headers(
        &kit.key_id,
        &kit.secret,
        path,
        &body,
        now,
        &nonce(),
    ) {
        req = req.header(k, v);
    }
    crate::helpers::Resp::from(req.send().await.unwrap())
        .await
        .problem(415, "unsupported-media-type");
    hub.stop().await;
}

async fn hmac_refusals(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let now = hub.clock.now_ms();
    let (_, body) = tradecast_hub::signals::client::signal_body(
        &kit.identity,
        fields(1, now),
        &signal(&kit.identity, now),
    );
    let path = tradecast_hub::signals::client::SIGNALS_PATH;

    // No headers at all.
    hub.post_raw(path, "application/json", body.clone()).await.problem(401, "missing-header");
    // Wrong secret, unknown key, malformed nonce, stale and future timestamps.
    post_signal_raw(&hub, &kit.key_id, "not the secret", body.clone(), now, &nonce())
        .await
        .problem(401, "bad-signature");
    post_signal_raw(&hub, "tck_unknown", &kit.secret, body.clone(), now, &nonce())
        .await
        .problem(401, "unknown-key");
    post_signal_raw(&hub, &kit.key_id, &kit.secret, body.clone(), now, "short")
        .await
        .problem(401, "malformed-nonce");
    post_signal_raw(&hub, &kit.key_id, &kit.secret, body.clone(), now - 31_000, &nonce())
        .await
        .problem(401, "stale-timestamp");
    post_signal_raw(&hub, &kit.key_id, &kit.secret, body.clone(), now + 31_000, &nonce())
        .await
        .problem(401, "future-timestamp");
    // The signature covers the body: another body under the same headers is refused.
    let headers = tradecast_hub::signals::client::auth_headers(
        &kit.key_id,
        &kit.secret,
        path,
        &body,
        now,
        &nonce(),
    );
    let mut req = hub
        .http
        .post(hub.url(path))
        .header("content-type", "application/json")
        .body(b"{}".to_vec());
    for (k, v) in headers.clone() {
        req = req.header(k, v);
    }
    crate::helpers::Resp::from(req.send().await.unwrap()).await.problem(401, "bad-signature");
    // A replayed nonce: the first use succeeds, the exact same request again is refused.
    let n = nonce();
    post_signal_raw(&hub, &kit.key_id, &kit.secret, body.clone(), now, &n).await.ok(201);
    post_signal_raw(&hub, &kit.key_id, &kit.secret, body.clone(), now, &n)
        .await
        .problem(401, "replayed-nonce");
    // Nonces outside the freshness window are pruned (requests that old are refused anyway).
    let pruned = tradecast_hub::signals::prune_nonces(&hub.db, now + 61_000).await.unwrap();
    assert!(pruned >= 1, "{pruned}");
    // A bad signature does not burn a nonce.
    let n2 = nonce();
    post_signal_raw(&hub, &kit.key_id, "wrong", body.clone(), now, &n2)
        .await
        .problem(401, "bad-signature");
    post_signal_raw(&hub, &kit.key_id, &kit.secret, body.clone(), now, &n2).await.ok(200);
    // A revoked key is unknown from then on.
    hub.post(
        &format!("/api/v1/api-keys/{}/revoke", kit.key_id),
        Some(&kit.session.token),
        json!({}),
    )
    .await
    .ok(204);
    post_signal_raw(&hub, &kit.key_id, &kit.secret, body.clone(), now, &nonce())
        .await
        .problem(401, "unknown-key");
    let keys = hub.get("/api/v1/api-keys", Some(&kit.session.token)).await;
    assert!(keys.ok(200)[0]["revoked_at_ms"].is_i64());
    assert!(!keys.text.contains(&kit.secret), "a listed key must not show its secret");
    // Secrets are sealed at rest.
    let sealed: String = sqlx::query_scalar("SELECT secret_sealed FROM api_keys WHERE id = $1")
        .bind(&kit.key_id)
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
    assert!(!sealed.contains(&kit.secret));
    hub.stop().await;
}

async fn provider_conditions(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    // No active plan: refused.
    hub.post(
        &format!("/api/v1/plans/{}/archive", kit.plan_id),
        Some(&kit.session.token),
        json!({}),
    )
    .await
    .ok(200);
    let s = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s, 1).await.1.problem(403, "no-active-plan");
    hub.post(
        "/api/v1/plans",
        Some(&kit.session.token),
        json!({ "name": "B", "price_minor": 100, "currency": "USD", "period_days": 30 }),
    )
    .await
    .ok(201);
    // A record by another provider's device, posted with this provider's key.
    let other = provider_kit(&hub, &owner).await;
    let now = hub.clock.now_ms();
    let (_, body) = tradecast_hub::signals::client::signal_body(
        &other.identity,
        fields(1, now),
        &signal(&other.identity, now),
    );
    post_signal_raw(&hub, &kit.key_id, &kit.secret, body, now, &nonce())
        .await
        .problem(403, "device-refused");
    // The provider's device revoked: refused.
    hub.post(
        &format!("/api/v1/devices/{}/revoke", kit.device_id),
        Some(&kit.session.token),
        json!({}),
    )
    .await
    .ok(200);
    post_signal(&hub, &kit, &s, 1).await.1.problem(403, "device-refused");
    // A provider demoted to subscriber: its key no longer publishes.
    let (_, r) = post_signal(&hub, &other, &signal(&other.identity, now), 1).await;
    r.ok(201);
    hub.send(
        "PUT",
        &format!("/api/v1/users/{}/role", other.session.user_id),
        Some(&owner.token),
        Some(json!({ "role": "subscriber" })),
    )
    .await
    .ok(200);
    post_signal(&hub, &other, &signal(&other.identity, now), 2).await.1.problem(403, "forbidden");
    // The hub key that signs receipts is the one enrolment pins.
    let k = IdentityKey::from_hex(&hex::encode(hub.state().hub_identity.identity_key().to_bytes()))
        .unwrap();
    assert_eq!(k.device_id(), hub.state().hub_identity.device_id());
    hub.stop().await;
}

/// A signal accepted before migration 0007 sits in its subscribers' inboxes (`feed_items`,
/// `fanout_queue`, as the hub wrote it then); the provider's later `Close` of it follows it
/// there, not into the relay log, so a node that has not acknowledged it yet gets both in order.
async fn a_signal_queued_before_the_relay_log_is_closed_through_the_inbox(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let sub = hub.user(&owner, "subscriber").await;
    let (_, dev1) = hub.enrol(&sub, "pc").await;
    hub.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        json!({ "user_id": sub.user_id, "plan_id": kit.plan_id }),
    )
    .await
    .ok(201);
    // The hub of yesterday: the signal stored, queued for the device and appended to its feed
    // (the provider's keys first) in one transaction.
    let now = hub.clock.now_ms();
    let s = signal(&kit.identity, now);
    let record = Record::sign(&kit.identity, fields(1, now), &Body::Signal(s.clone()));
    let mut tx = hub.db.begin_write().await.unwrap();
    sqlx::query(
        "INSERT INTO signals (id, provider_user_id, author, stream, seq, record, record_hash, symbol, \
         side, entry, stop, tp1, created_at_ms, expires_at_ms, received_at_ms) \
         VALUES ($1, $2, $3, 1, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11)",
    )
    .bind(s.id.to_hex())
    .bind(&kit.session.user_id)
    .bind(&kit.device_id)
    .bind(record.encode())
    .bind(record.header_hash().to_hex())
    .bind(&s.symbol)
    .bind(s.side.as_str())
    .bind(s.entry.to_string())
    .bind(s.stop.to_string())
    .bind(s.tp1.to_string())
    .bind(now)
    .bind(s.expires_at_ms)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO fanout_queue (signal_id, device_id, enqueued_at_ms) VALUES ($1, $2, $3)",
    )
    .bind(s.id.to_hex())
    .bind(&dev1)
    .bind(now)
    .execute(&mut *tx)
    .await
    .unwrap();
    let touched = tradecast_hub::feed::append_for_signal(&mut tx, &s.id.to_hex(), &record, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(touched, vec![dev1.clone()]);
    let before = tradecast_hub::feed::items(&hub.db, &dev1, 1, 100).await.unwrap();
    assert_eq!(before.len(), 3, "the grant, the provider's keys, the signal");

    // Today's hub receives the provider's close over sync: it follows the signal into the inbox.
    let close = Record::sign(
        &kit.identity,
        fields(2, hub.clock.now_ms()),
        &Body::Close(tradecast_protocol::Close {
            signal_id: s.id,
            fraction: rust_decimal::Decimal::ONE,
            price: None,
            reason: "provider closed".into(),
            at_ms: hub.clock.now_ms(),
        }),
    );
    let hub_id = &hub.state().hub_identity;
    tradecast_hub::quic::store::commit(&hub.db, hub_id, &close, hub.clock.now_ms()).await.unwrap();
    let after = tradecast_hub::feed::items(&hub.db, &dev1, 1, 100).await.unwrap();
    assert_eq!(after.len(), 4);
    assert_eq!((&after[2].record, &after[3].record), (&record, &close));
    let log = tradecast_protocol::DeviceId::parse(&kit.device_id).unwrap();
    assert_eq!(relay::tip(&hub.db, &log).await.unwrap(), 0, "nothing of it in the relay log");
    // A signal accepted now takes the relay log (the keys first), not the inbox.
    hub.clock.advance_ms(10);
    let s2 = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s2, 3).await.1.ok(201);
    assert_eq!(relay::tip(&hub.db, &log).await.unwrap(), 2);
    assert_eq!(tradecast_hub::feed::items(&hub.db, &dev1, 1, 100).await.unwrap().len(), 4);
    hub.stop().await;
}
