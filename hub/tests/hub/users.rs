//! Account administration and the rules on who may grant which role.

use serde_json::json;

use crate::helpers::{Backend, TestHub};
use crate::on_both;

on_both!(roles_are_enforced, disabled_accounts_are_refused_at_once);

async fn roles_are_enforced(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let admin = hub.user(&owner, "admin").await;
    // An admin cannot create owners or admins, but can create providers and subscribers.
    for role in ["owner", "admin"] {
        hub.post("/api/v1/users", Some(&admin.token), json!({ "email": format!("x-{role}@example.com"), "password": "long enough pw", "role": role }))
            .await
            .problem(403, "forbidden");
    }
    let provider = hub.user(&admin, "provider").await;
    // Validation and conflicts.
    hub.post(
        "/api/v1/users",
        Some(&admin.token),
        json!({ "email": provider.email, "password": "long enough pw", "role": "subscriber" }),
    )
    .await
    .problem(409, "conflict");
    hub.post(
        "/api/v1/users",
        Some(&admin.token),
        json!({ "email": "short@example.com", "password": "short", "role": "subscriber" }),
    )
    .await
    .problem(422, "validation");
    hub.post(
        "/api/v1/users",
        Some(&admin.token),
        json!({ "email": "not-an-email", "password": "long enough pw", "role": "subscriber" }),
    )
    .await
    .problem(422, "validation");
    hub.post(
        "/api/v1/users",
        Some(&admin.token),
        json!({ "email": "r@example.com", "password": "long enough pw", "role": "emperor" }),
    )
    .await
    .problem(422, "invalid-body");
    // Listing.
    let list = hub.get("/api/v1/users", Some(&admin.token)).await;
    assert_eq!(list.ok(200).as_array().unwrap().len(), 3);
    hub.get("/api/v1/users", Some(&provider.token)).await.problem(403, "forbidden");

    // Role changes: admin may move provider ↔ subscriber, not touch owners or make admins.
    let path = format!("/api/v1/users/{}/role", provider.user_id);
    let r = hub.send("PUT", &path, Some(&admin.token), Some(json!({ "role": "subscriber" }))).await;
    assert_eq!(r.ok(200)["role"], "subscriber");
    hub.send("PUT", &path, Some(&admin.token), Some(json!({ "role": "admin" })))
        .await
        .problem(403, "forbidden");
    let owner_path = format!("/api/v1/users/{}/role", owner.user_id);
    hub.send("PUT", &owner_path, Some(&admin.token), Some(json!({ "role": "subscriber" })))
        .await
        .problem(403, "forbidden");
    // The last owner cannot be demoted, even by itself.
    hub.send("PUT", &owner_path, Some(&owner.token), Some(json!({ "role": "admin" })))
        .await
        .problem(409, "conflict");
    hub.send(
        "PUT",
        "/api/v1/users/nope/role",
        Some(&owner.token),
        Some(json!({ "role": "admin" })),
    )
    .await
    .problem(404, "not-found");
    // A demoted admin's stale token no longer changes roles.
    let admin_path = format!("/api/v1/users/{}/role", admin.user_id);
    hub.send("PUT", &admin_path, Some(&owner.token), Some(json!({ "role": "subscriber" })))
        .await
        .ok(200);
    hub.send("PUT", &path, Some(&admin.token), Some(json!({ "role": "provider" })))
        .await
        .problem(403, "forbidden");

    let audit = hub.get("/api/v1/audit?action=user.role_change", Some(&owner.token)).await;
    let entries = audit.ok(200).as_array().unwrap().clone();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["actor"], admin.user_id);
    assert_eq!(entries[1]["detail"], r#"{"from":"provider","to":"subscriber"}"#);
    hub.stop().await;
}

async fn disabled_accounts_are_refused_at_once(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let admin = hub.user(&owner, "admin").await;
    let sub = hub.user(&owner, "subscriber").await;
    hub.post(&format!("/api/v1/users/{}/disable", owner.user_id), Some(&admin.token), json!({}))
        .await
        .problem(403, "forbidden");
    hub.post(&format!("/api/v1/users/{}/disable", owner.user_id), Some(&owner.token), json!({}))
        .await
        .problem(409, "conflict");
    hub.post("/api/v1/users/nobody/disable", Some(&admin.token), json!({}))
        .await
        .problem(404, "not-found");
    hub.post(&format!("/api/v1/users/{}/disable", sub.user_id), Some(&sub.token), json!({}))
        .await
        .problem(403, "forbidden");
    let r = hub
        .post(&format!("/api/v1/users/{}/disable", sub.user_id), Some(&admin.token), json!({}))
        .await;
    assert!(r.ok(200)["disabled_at_ms"].is_i64());
    // Its live access token, its refresh token and its password are all refused now.
    hub.get("/api/v1/me", Some(&sub.token)).await.problem(403, "account-disabled");
    hub.post("/api/v1/auth/refresh", None, json!({ "refresh_token": sub.refresh }))
        .await
        .problem(401, "invalid-refresh-token");
    hub.post("/api/v1/auth/login", None, json!({ "email": sub.email, "password": sub.password }))
        .await
        .problem(403, "account-disabled");
    hub.post(&format!("/api/v1/users/{}/enable", sub.user_id), Some(&admin.token), json!({}))
        .await
        .ok(200);
    hub.login(&sub.email, &sub.password).await;
    let audit = hub.get("/api/v1/audit?action=user.disable", Some(&owner.token)).await;
    assert_eq!(audit.ok(200).as_array().unwrap().len(), 1);
    hub.stop().await;
}
