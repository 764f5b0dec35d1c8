//! Plans (money in minor units + currency) and entitlements granted by admins.

use serde_json::json;

use crate::helpers::{Backend, TestHub};
use crate::on_both;

on_both!(plans_and_entitlements, products_group_their_plans);

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

/// A product and the plans that sell it: a month by card, a year by card, a month in Stars;
/// a plan without a product is its own product; a plan cannot join another provider's product
/// or a withdrawn one; withdrawing a product withdraws its plans; the public catalog and the
/// subscriber's page show each plan under its product.
async fn products_group_their_plans(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let other = hub.user(&owner, "provider").await;
    let sub = hub.user(&owner, "subscriber").await;
    let body =
        json!({ "name": "Fib-RSI EURUSD", "description": "Every Fib-RSI signal on EURUSD H1." });
    let product = hub.post("/api/v1/products", Some(&provider.token), body).await.ok(201).clone();
    let pid = product["id"].as_str().unwrap().to_string();
    assert_eq!(product["plans"], json!([]));
    hub.post("/api/v1/products", Some(&sub.token), json!({ "name": "X" }))
        .await
        .problem(403, "forbidden");
    hub.post("/api/v1/products", Some(&provider.token), json!({ "name": " " }))
        .await
        .problem(422, "validation");
    let mut plan_ids = Vec::new();
    for (name, price, currency, days) in
        [("Monthly", 4900, "USD", 30), ("Yearly", 49_000, "USD", 365), ("Stars", 250, "XTR", 30)]
    {
        let body = json!({ "name": name, "price_minor": price, "currency": currency,
                           "period_days": days, "product_id": pid });
        let plan = hub.post("/api/v1/plans", Some(&provider.token), body).await.ok(201).clone();
        assert_eq!(plan["product_id"], pid.as_str());
        plan_ids.push(plan["id"].as_str().unwrap().to_string());
    }
    // Without a product: its own, named like the plan.
    let body = json!({ "name": "Solo", "price_minor": 900, "currency": "USD", "period_days": 7 });
    let solo = hub.post("/api/v1/plans", Some(&provider.token), body).await.ok(201).clone();
    assert_ne!(solo["product_id"], pid.as_str());
    // Another provider's product: refused.
    let body = json!({ "name": "Theirs", "price_minor": 100, "currency": "USD", "period_days": 30,
                       "product_id": pid });
    hub.post("/api/v1/plans", Some(&other.token), body).await.problem(422, "validation");

    let listed = hub
        .get(&format!("/api/v1/products?provider_user_id={}", provider.user_id), Some(&sub.token))
        .await
        .ok(200)
        .clone();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let fib = listed.iter().find(|p| p["id"] == pid.as_str()).unwrap();
    let names: Vec<&str> =
        fib["plans"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Monthly", "Yearly", "Stars"]);

    // The public catalog names each plan's product; the account page groups them.
    let catalog = hub.get("/api/v1/billing/plans", None).await.ok(200).clone();
    let monthly =
        catalog.as_array().unwrap().iter().find(|o| o["id"] == plan_ids[0].as_str()).unwrap();
    assert_eq!(monthly["product_name"], "Fib-RSI EURUSD");
    assert_eq!(monthly["product_description"], "Every Fib-RSI signal on EURUSD H1.");
    let cookie = crate::console::console_cookie(&hub, &sub.email, &sub.password).await;
    let page = crate::console::page(&hub, "GET", "/account", Some(&cookie), &[], None).await;
    let article = page.text.split(&format!("id=\"product-{pid}\"")).nth(1).unwrap();
    let article = article.split("</article>").next().unwrap();
    assert!(
        article.contains("Fib-RSI EURUSD") && article.contains("Every Fib-RSI signal"),
        "{article}"
    );
    for (id, name) in plan_ids.iter().zip(["Monthly", "Yearly", "Stars"]) {
        assert!(article.contains(&format!("id=\"plan-{id}\"")), "{article}");
        assert!(article.contains(&format!("<h4>{name}</h4>")), "{article}");
    }
    assert!(!article.contains("Solo"), "another product's plan is not under this one");

    // Withdrawn: the product and every plan of it; no new plan joins it.
    let archived = hub
        .post(&format!("/api/v1/products/{pid}/archive"), Some(&provider.token), json!({}))
        .await
        .ok(200)
        .clone();
    assert!(archived["archived_at_ms"].is_i64());
    assert!(archived["plans"].as_array().unwrap().iter().all(|p| p["archived_at_ms"].is_i64()));
    let catalog = hub.get("/api/v1/billing/plans", None).await.ok(200).clone();
    assert!(catalog.as_array().unwrap().iter().all(|o| o["product_id"] != pid.as_str()));
    let body = json!({ "name": "Late", "price_minor": 100, "currency": "USD", "period_days": 30,
                       "product_id": pid });
    hub.post("/api/v1/plans", Some(&provider.token), body).await.problem(422, "validation");
    hub.post(&format!("/api/v1/products/{pid}/archive"), Some(&other.token), json!({}))
        .await
        .problem(404, "not-found");
    let audit = hub.get("/api/v1/audit?action=product.archive", Some(&owner.token)).await;
    assert_eq!(audit.ok(200).as_array().map(Vec::len), Some(1));
}
