//! Plans (money in minor units + currency) and entitlements granted by admins.

use serde_json::json;

use crate::helpers::{Backend, TestHub};
use crate::on_both;

on_both!(plans_and_entitlements);

async fn plans_and_entitlements(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let sub = hub.user(&owner, "subscriber").await;

    let plan = hub
        .post(
            "/api/v1/plans",
            Some(&provider.token),
            json!({ "name": "Gold", "price_minor": 4999, "currency": "EUR", "period_days": 30 }),
        )
        .await;
    let plan = plan.ok(201).clone();
    assert_eq!(plan["price_minor"], 4999);
    assert_eq!(plan["currency"], "EUR");
    assert_eq!(plan["provider_user_id"], provider.user_id);
    for (body, kind) in [
        (
            json!({ "name": "X", "price_minor": 1, "currency": "eur", "period_days": 30 }),
            "validation",
        ),
        (
            json!({ "name": "X", "price_minor": -1, "currency": "EUR", "period_days": 30 }),
            "validation",
        ),
        (
            json!({ "name": "", "price_minor": 1, "currency": "EUR", "period_days": 30 }),
            "validation",
        ),
        (
            json!({ "name": "X", "price_minor": 1, "currency": "EUR", "period_days": 0 }),
            "validation",
        ),
    ] {
        hub.post("/api/v1/plans", Some(&provider.token), body).await.problem(422, kind);
    }
    hub.post(
        "/api/v1/plans",
        Some(&provider.token),
        json!({ "name": "X", "price_minor": 1.5, "currency": "EUR", "period_days": 30 }),
    )
    .await
    .problem(422, "invalid-body");
    hub.post(
        "/api/v1/plans",
        Some(&sub.token),
        json!({ "name": "X", "price_minor": 1, "currency": "EUR", "period_days": 30 }),
    )
    .await
    .problem(403, "forbidden");
    // Admin creates one for the provider; must name it and it must be a provider.
    hub.post(
        "/api/v1/plans",
        Some(&owner.token),
        json!({ "name": "Y", "price_minor": 0, "currency": "USD", "period_days": 7 }),
    )
    .await
    .problem(422, "validation");
    hub.post("/api/v1/plans", Some(&owner.token), json!({ "provider_user_id": sub.user_id, "name": "Y", "price_minor": 0, "currency": "USD", "period_days": 7 }))
        .await
        .problem(422, "validation");
    let free = hub
        .post("/api/v1/plans", Some(&owner.token), json!({ "provider_user_id": provider.user_id, "name": "Trial", "price_minor": 0, "currency": "USD", "period_days": 7 }))
        .await;
    let free_id = free.ok(201)["id"].as_str().unwrap().to_string();
    assert_eq!(
        hub.get("/api/v1/plans", Some(&sub.token)).await.ok(200).as_array().unwrap().len(),
        2
    );

    // Grants: admins only, valid plan and account.
    let grant = json!({ "user_id": sub.user_id, "plan_id": plan["id"] });
    hub.post("/api/v1/entitlements", Some(&provider.token), grant.clone())
        .await
        .problem(403, "forbidden");
    let e = hub.post("/api/v1/entitlements", Some(&owner.token), grant).await;
    let e_id = e.ok(201)["id"].as_str().unwrap().to_string();
    hub.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        json!({ "user_id": "nobody", "plan_id": plan["id"] }),
    )
    .await
    .problem(422, "validation");
    hub.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        json!({ "user_id": sub.user_id, "plan_id": "nope" }),
    )
    .await
    .problem(422, "validation");
    hub.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        json!({ "user_id": sub.user_id, "plan_id": free_id, "expires_at_ms": 1 }),
    )
    .await
    .problem(422, "validation");
    let mine = hub.get("/api/v1/entitlements", Some(&sub.token)).await;
    assert_eq!(mine.ok(200).as_array().unwrap().len(), 1);
    assert_eq!(
        hub.get("/api/v1/entitlements", Some(&provider.token))
            .await
            .ok(200)
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Archive: provider's own plan; another provider sees not-found.
    let other = hub.user(&owner, "provider").await;
    hub.post(&format!("/api/v1/plans/{free_id}/archive"), Some(&other.token), json!({}))
        .await
        .problem(404, "not-found");
    let a = hub
        .post(&format!("/api/v1/plans/{free_id}/archive"), Some(&provider.token), json!({}))
        .await;
    assert!(a.ok(200)["archived_at_ms"].is_i64());
    assert_eq!(
        hub.get("/api/v1/plans", Some(&sub.token)).await.ok(200).as_array().unwrap().len(),
        1
    );
    assert_eq!(
        hub.get("/api/v1/plans?include_archived=true", Some(&sub.token))
            .await
            .ok(200)
            .as_array()
            .unwrap()
            .len(),
        2
    );
    hub.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        json!({ "user_id": sub.user_id, "plan_id": free_id }),
    )
    .await
    .problem(422, "validation");
    // Revoke.
    hub.post(&format!("/api/v1/entitlements/{e_id}/revoke"), Some(&owner.token), json!({}))
        .await
        .ok(204);
    hub.post(&format!("/api/v1/entitlements/{e_id}/revoke"), Some(&owner.token), json!({}))
        .await
        .problem(404, "not-found");
    hub.stop().await;
}
