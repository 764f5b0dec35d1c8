//! The entitlements module: append-only intervals, ends never earlier than now, as-of queries,
//! change events (table and broadcast), plan features, and the 0006 migration over rows written
//! before it.

use serde_json::json;
use tradecast_hub::entitlements::{
    self, ChangeKind, EndReason, Ending, NewEntitlement, Source, entitled_devices,
};
use tradecast_hub::error::ApiError;

use crate::helpers::{Backend, TestDb, TestHub};
use crate::on_both;

on_both!(
    intervals_ends_and_as_of_queries,
    plan_features,
    migration_0006_keeps_old_rows,
    feature_grants_reach_every_device_signed_by_the_hub
);

const HOUR: i64 = 3_600_000;

async fn intervals_ends_and_as_of_queries(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let sub = hub.user(&owner, "subscriber").await;
    let (_device_key, device) = hub.enrol(&sub, "pc").await;
    let plan = hub
        .post(
            "/api/v1/plans",
            Some(&provider.token),
            json!({ "name": "Gold", "price_minor": 4999, "currency": "EUR", "period_days": 30 }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let state = hub.state();
    let mut events = state.entitlement_changes.subscribe();
    let t0 = hub.clock.now_ms();

    // A Stripe grant for 30 days, found again by its subscription id.
    let new = NewEntitlement {
        user_id: &sub.user_id,
        plan_id: &plan,
        source: Source::Stripe,
        external_ref: Some("sub_123"),
        starts_at_ms: Some(t0 - 10 * HOUR), // a start in the past means now
        expires_at_ms: Some(t0 + 720 * HOUR),
    };
    let e = entitlements::grant(state, t0, "billing", &new, "r1").await.unwrap();
    assert_eq!(e.starts_at_ms, t0, "an interval never starts in the past");
    assert_eq!(e.source, Source::Stripe);
    let found = entitlements::by_external_ref(&hub.db, Source::Stripe, "sub_123").await.unwrap();
    assert_eq!(found, vec![e.clone()]);
    let granted = events.recv().await.unwrap();
    assert_eq!(granted.kind, ChangeKind::Granted);
    assert_eq!(granted.entitlement_id, e.id);
    assert_eq!(granted.provider_user_id, provider.user_id);
    assert_eq!(granted.ends_at_ms, Some(t0 + 720 * HOUR));

    // As-of queries: before the start, during, after the scheduled end.
    for (at, expect) in
        [(t0 - 1, false), (t0, true), (t0 + 719 * HOUR, true), (t0 + 720 * HOUR, false)]
    {
        assert_eq!(
            entitlements::is_entitled(&hub.db, &sub.user_id, &provider.user_id, at).await.unwrap(),
            expect,
            "entitled at t0{:+}h",
            (at - t0) / HOUR
        );
        assert_eq!(
            entitled_devices(&hub.db, &provider.user_id, at).await.unwrap(),
            if expect { vec![device.clone()] } else { vec![] }
        );
    }

    // A renewal is a second interval starting at the first one's end.
    let renewal = NewEntitlement {
        starts_at_ms: Some(t0 + 720 * HOUR),
        expires_at_ms: Some(t0 + 1440 * HOUR),
        ..new.clone()
    };
    let e2 = entitlements::grant(state, t0, "billing", &renewal, "r2").await.unwrap();
    assert_eq!(e2.starts_at_ms, t0 + 720 * HOUR, "a future start is kept");
    assert!(
        entitlements::is_entitled(&hub.db, &sub.user_id, &provider.user_id, t0 + 1000 * HOUR)
            .await
            .unwrap()
    );
    assert_eq!(events.recv().await.unwrap().entitlement_id, e2.id);

    // Ending asks for an instant in the past: the end is now, never earlier.
    hub.clock.advance_ms(2 * HOUR);
    let now = hub.clock.now_ms();
    let ending = Ending { id: &e.id, at_ms: Some(t0 - HOUR), reason: EndReason::Refunded };
    let ended = entitlements::end(state, now, "billing", &ending, "r3").await.unwrap();
    assert_eq!(ended.revoked_at_ms, Some(now));
    assert_eq!(ended.end_reason, Some(EndReason::Refunded));
    assert_eq!(ended.ends_at_ms(), Some(now));
    // The past is unchanged: it was entitled an hour ago, and is not now.
    assert!(
        entitlements::is_entitled(&hub.db, &sub.user_id, &provider.user_id, now - HOUR)
            .await
            .unwrap()
    );
    assert!(
        !entitlements::is_entitled(&hub.db, &sub.user_id, &provider.user_id, now).await.unwrap()
    );
    let change = events.recv().await.unwrap();
    assert_eq!((change.kind, change.ends_at_ms), (ChangeKind::Ended, Some(now)));

    // Ending an interval that has ended is not found (nothing is rewritten).
    let again = entitlements::end(state, now, "x", &ending, "r4").await;
    assert!(matches!(again, Err(ApiError::NotFound(_))), "{again:?}");

    // A cancellation at period end moves the renewal's end earlier, to a future instant, once:
    // a later request for a later end does not move it back.
    let at_period_end = t0 + 1200 * HOUR;
    let cancel = Ending { id: &e2.id, at_ms: Some(at_period_end), reason: EndReason::Cancelled };
    let c = entitlements::end(state, now, "billing", &cancel, "r5").await.unwrap();
    assert_eq!(c.ends_at_ms(), Some(at_period_end));
    let later = Ending { id: &e2.id, at_ms: Some(t0 + 1300 * HOUR), reason: EndReason::Cancelled };
    let unchanged = entitlements::end(state, now, "billing", &later, "r6").await.unwrap();
    assert_eq!(unchanged.ends_at_ms(), Some(at_period_end), "an end never moves later");
    assert!(
        entitlements::is_entitled(&hub.db, &sub.user_id, &provider.user_id, at_period_end - 1)
            .await
            .unwrap()
    );
    assert!(
        !entitlements::is_entitled(&hub.db, &sub.user_id, &provider.user_id, at_period_end)
            .await
            .unwrap()
    );

    // The history keeps every interval; the events table holds the four changes in order.
    let history = entitlements::history(&hub.db, Some(&sub.user_id)).await.unwrap();
    assert_eq!(history.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [&e.id, &e2.id]);
    let log = entitlements::events_since(&hub.db, 0, 100).await.unwrap();
    let kinds: Vec<_> = log.iter().map(|c| (c.entitlement_id.as_str(), c.kind)).collect();
    assert_eq!(
        kinds,
        [
            (e.id.as_str(), ChangeKind::Granted),
            (e2.id.as_str(), ChangeKind::Granted),
            (e.id.as_str(), ChangeKind::Ended),
            (e2.id.as_str(), ChangeKind::Ended),
        ]
    );
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    let tail = entitlements::events_since(&hub.db, log[1].seq, 100).await.unwrap();
    assert_eq!(tail, log[2..]);

    // The admin API revokes through the same module and says why (a fresh login: the clock
    // moved past the first access token's life).
    let owner = hub.login(&owner.email, &owner.password).await;
    let via_api = hub
        .post(
            "/api/v1/entitlements",
            Some(&owner.token),
            json!({ "user_id": sub.user_id, "plan_id": plan }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    hub.post(&format!("/api/v1/entitlements/{via_api}/revoke"), Some(&owner.token), json!({}))
        .await
        .ok(204);
    let listed =
        hub.get(&format!("/api/v1/entitlements?user_id={}", sub.user_id), Some(&owner.token)).await;
    let row =
        listed.ok(200).as_array().unwrap().iter().find(|r| r["id"] == via_api.as_str()).cloned();
    let row = row.expect("the revoked entitlement is still listed");
    assert_eq!(row["source"], "admin");
    assert_eq!(row["end_reason"], "revoked");
    assert!(row["revoked_at_ms"].is_i64());
    hub.stop().await;
}

async fn plan_features(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let sub = hub.user(&owner, "subscriber").await;
    let basic = hub
        .post(
            "/api/v1/plans",
            Some(&provider.token),
            json!({ "name": "Basic", "price_minor": 0, "currency": "USD", "period_days": 30 }),
        )
        .await;
    assert_eq!(basic.ok(201)["features"], json!(["auto_copy", "signals"]));
    let pro = hub
        .post(
            "/api/v1/plans",
            Some(&provider.token),
            json!({ "name": "Pro", "price_minor": 9900, "currency": "USD", "period_days": 30,
                    "features": ["telegram", "signals", "analytics", "telegram"] }),
        )
        .await;
    assert_eq!(pro.ok(201)["features"], json!(["analytics", "signals", "telegram"]));
    hub.post(
        "/api/v1/plans",
        Some(&provider.token),
        json!({ "name": "Bad", "price_minor": 0, "currency": "USD", "period_days": 30,
                "features": ["teleport"] }),
    )
    .await
    .problem(422, "validation");

    let now = hub.clock.now_ms();
    assert!(entitlements::features_at(&hub.db, &sub.user_id, now).await.unwrap().is_empty());
    for plan in [&basic, &pro] {
        hub.post(
            "/api/v1/entitlements",
            Some(&owner.token),
            json!({ "user_id": sub.user_id, "plan_id": plan.ok(201)["id"] }),
        )
        .await
        .ok(201);
    }
    let now = hub.clock.now_ms();
    assert_eq!(
        entitlements::features_at(&hub.db, &sub.user_id, now).await.unwrap(),
        ["analytics", "auto_copy", "signals", "telegram"]
    );
    hub.stop().await;
}

/// A database migrated to 0005 with plans, a live and a revoked entitlement, then migrated to
/// the end: the old rows read as admin grants (of every feature, since 0010), with their events.
async fn migration_0006_keeps_old_rows(b: Backend) {
    let test_db = TestDb::new(b).await;
    let db = tradecast_hub::db::Db::connect(&test_db.url, 2).await.unwrap();
    let full = db.migrator();
    let upto_0005 = sqlx::migrate::Migrator::with_migrations(
        full.iter().filter(|m| m.version <= 5).cloned().collect(),
    );
    upto_0005.run(db.pool()).await.unwrap();
    let not_ready = db.ready().await;
    assert!(
        matches!(not_ready, Err(tradecast_hub::db::DbError::NotMigrated { .. })),
        "{not_ready:?}"
    );
    for sql in [
        "INSERT INTO users (id, email, password_hash, role, display_name, created_at_ms) \
         VALUES ('p', 'p@example.com', '!', 'provider', 'p', 0), \
                ('s', 's@example.com', '!', 'subscriber', 's', 0)",
        "INSERT INTO plans (id, provider_user_id, name, price_minor, currency, period_days, \
         created_at_ms) VALUES ('plan', 'p', 'Gold', 100, 'EUR', 30, 1)",
        "INSERT INTO entitlements (id, user_id, plan_id, granted_by, starts_at_ms, \
         expires_at_ms, revoked_at_ms, created_at_ms) VALUES \
         ('live', 's', 'plan', 'owner', 10, NULL, NULL, 10), \
         ('gone', 's', 'plan', 'owner', 20, 5000, 30, 20)",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(db.pool()).await.unwrap();
    }
    db.migrate().await.unwrap();
    db.ready().await.unwrap();

    let history = entitlements::history(&db, Some("s")).await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|e| e.source == Source::Admin && e.external_ref.is_none()));
    assert_eq!(history[1].ends_at_ms(), Some(30));
    assert!(entitlements::is_entitled(&db, "s", "p", 25).await.unwrap());
    // 0010 (billing) gives the plans granted by hand every feature: nobody loses automatic
    // copying when features start to be sold separately.
    assert_eq!(
        entitlements::features_at(&db, "s", 25).await.unwrap(),
        ["analytics", "auto_copy", "mini_app", "signals", "telegram"]
    );
    let events = entitlements::events_since(&db, 0, 10).await.unwrap();
    let kinds: Vec<_> =
        events.iter().map(|c| (c.entitlement_id.as_str(), c.kind, c.ends_at_ms)).collect();
    assert_eq!(
        kinds,
        [
            ("live", ChangeKind::Granted, None),
            ("gone", ChangeKind::Granted, Some(5000)),
            ("gone", ChangeKind::Ended, Some(30)),
        ]
    );
    db.close().await;
}

/// The hub-signed FeatureGrants in `device`'s feed, verified as the node verifies them.
async fn grants_in_feed(hub: &TestHub, device: &str) -> Vec<tradecast_protocol::FeatureGrant> {
    let me = tradecast_protocol::DeviceId::parse(device).unwrap();
    let hub_key = hub.state().hub_identity.identity_key();
    let items = tradecast_hub::feed::items(&hub.db, device, 1, 1000).await.unwrap();
    items
        .iter()
        .filter(|i| i.record.header().kind == tradecast_protocol::Kind::FeatureGrant)
        .map(|i| {
            match tradecast_protocol::verify_hub_request(
                &i.record,
                &hub_key,
                me,
                hub.clock.now_ms(),
            ) {
                Ok(tradecast_protocol::HubRequest::Grant(g)) => g,
                other => panic!("a grant the node would refuse: {other:?}"),
            }
        })
        .collect()
}

async fn feature_grants_reach_every_device_signed_by_the_hub(b: Backend) {
    use tradecast_protocol::Feature;
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let sub = hub.user(&owner, "subscriber").await;
    let (_k1, laptop) = hub.enrol(&sub, "laptop").await;
    assert!(grants_in_feed(&hub, &laptop).await.is_empty(), "no plan, no grant");
    let plan = hub
        .post(
            "/api/v1/plans",
            Some(&provider.token),
            json!({ "name": "Pro", "price_minor": 100, "currency": "EUR", "period_days": 30,
                    "features": ["signals", "telegram"] }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t0 = hub.clock.now_ms();
    let e = hub
        .post(
            "/api/v1/entitlements",
            Some(&owner.token),
            json!({ "user_id": sub.user_id, "plan_id": plan, "expires_at_ms": t0 + 30 * 24 * HOUR }),
        )
        .await
        .ok(201)
        .clone();
    let e_id = e["id"].as_str().unwrap().to_string();

    // The grant is in the laptop's feed, signed by the hub, for this device, with the plan's
    // features and the entitlement's interval.
    let grants = grants_in_feed(&hub, &laptop).await;
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!(g.grant_id.to_hex(), e_id);
    assert_eq!(g.device.to_text(), laptop);
    assert_eq!(g.plan_id, plan);
    assert_eq!(g.features, [Feature::Signals, Feature::Telegram]);
    assert_eq!(
        (g.valid_from_ms, g.valid_until_ms),
        (e["starts_at_ms"].as_i64().unwrap(), Some(t0 + 30 * 24 * HOUR))
    );
    assert!(g.in_force_at(hub.clock.now_ms()));

    // A device enrolled later starts its feed with the account's grants.
    let (_k2, phone) = hub.enrol(&sub, "phone").await;
    let phone_grants = grants_in_feed(&hub, &phone).await;
    assert_eq!(phone_grants.len(), 1);
    assert_eq!(phone_grants[0].grant_id.to_hex(), e_id);

    // Revoked: both devices get the same grant id again, ended now (not earlier).
    hub.post(&format!("/api/v1/entitlements/{e_id}/revoke"), Some(&owner.token), json!({}))
        .await
        .ok(204);
    for device in [&laptop, &phone] {
        let grants = grants_in_feed(&hub, device).await;
        let last = grants.last().unwrap();
        assert_eq!(last.grant_id.to_hex(), e_id);
        let until = last.valid_until_ms.expect("an end");
        assert!(until >= t0 && until <= hub.clock.now_ms(), "{until}");
        assert!(!last.in_force_at(hub.clock.now_ms()));
        assert!(last.issued_at_ms >= grants[0].issued_at_ms);
    }
    // Each grant is a record of the hub's own chain (one chain, in order, for every device).
    let hub_id = hub.state().hub_identity.device_id();
    let mut seqs: Vec<u64> = Vec::new();
    for device in [&laptop, &phone] {
        for i in tradecast_hub::feed::items(&hub.db, device, 1, 1000).await.unwrap() {
            let h = i.record.header();
            if h.kind == tradecast_protocol::Kind::FeatureGrant {
                assert_eq!(h.author, hub_id);
                assert_eq!(h.stream, tradecast_protocol::StreamId::HUB_REQUESTS);
                seqs.push(h.seq);
            }
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3, 4], "one hub chain, no gaps");
    hub.stop().await;
}
