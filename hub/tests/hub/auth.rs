//! Login, tokens, refresh rotation and reuse detection, logout, expiry, and the brute-force
//! throttle (delays, then a lock) — each refusal with its exact status and problem type.

use serde_json::json;

use crate::helpers::{Backend, TestHub};
use crate::on_both;

on_both!(
    login_refresh_logout,
    token_refusals,
    brute_force_is_throttled_then_locked,
    unknown_emails_are_throttled_too,
    login_attempts_per_ip_are_limited,
    concurrent_failures_are_all_counted
);

async fn login_refresh_logout(b: Backend) {
    let hub = TestHub::start_with(b, |c| c.rate_limits.login_per_ip.burst = 100).await;
    let owner = hub.owner().await;
    let me = hub.get("/api/v1/me", Some(&owner.token)).await;
    assert_eq!(me.ok(200)["role"], "owner");
    assert_eq!(me.body["email"], owner.email);
    assert!(me.body.get("password_hash").is_none());

    let jwks = hub.get("/api/v1/auth/jwks.json", None).await;
    assert_eq!(jwks.ok(200)["keys"][0]["crv"], "Ed25519");

    // Refresh rotates: the new pair works, the old refresh token is spent.
    let r1 =
        hub.post("/api/v1/auth/refresh", None, json!({ "refresh_token": owner.refresh })).await;
    let refresh2 = r1.ok(200)["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, owner.refresh);
    hub.get("/api/v1/me", Some(r1.body["access_token"].as_str().unwrap())).await.ok(200);
    // Reusing the spent token is refused and revokes the whole family, the fresh token too.
    hub.post("/api/v1/auth/refresh", None, json!({ "refresh_token": owner.refresh }))
        .await
        .problem(401, "invalid-refresh-token");
    hub.post("/api/v1/auth/refresh", None, json!({ "refresh_token": refresh2 }))
        .await
        .problem(401, "invalid-refresh-token");

    // Logout revokes.
    let s = hub.login(&owner.email, &owner.password).await;
    hub.post("/api/v1/auth/logout", Some(&s.token), json!({ "refresh_token": s.refresh }))
        .await
        .ok(204);
    hub.post("/api/v1/auth/refresh", None, json!({ "refresh_token": s.refresh }))
        .await
        .problem(401, "invalid-refresh-token");
    for bad in ["", "nodot", "a.b", &"x".repeat(300)] {
        hub.post("/api/v1/auth/refresh", None, json!({ "refresh_token": bad }))
            .await
            .problem(401, "invalid-refresh-token");
    }

    // Expired refresh token.
    let s = hub.login(&owner.email, &owner.password).await;
    hub.clock.advance_ms(31 * 24 * 3600 * 1000);
    hub.post("/api/v1/auth/refresh", None, json!({ "refresh_token": s.refresh }))
        .await
        .problem(401, "invalid-refresh-token");

    let audit = hub
        .get(
            "/api/v1/audit?action=auth.refresh_reuse",
            Some(&hub.login(&owner.email, &owner.password).await.token),
        )
        .await;
    assert_eq!(audit.ok(200).as_array().unwrap().len(), 1);
    hub.stop().await;
}

async fn token_refusals(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let sub = hub.user(&owner, "subscriber").await;
    hub.get("/api/v1/me", None).await.problem(401, "unauthenticated");
    let r = hub
        .http
        .get(hub.url("/api/v1/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    crate::helpers::Resp::from(r).await.problem(401, "unauthenticated");
    hub.get("/api/v1/me", Some("not.a.jwt")).await.problem(401, "invalid-token");
    // A token from another hub (other keys) is refused.
    let other = tradecast_hub::tokens::JwtKeys::new(
        &tradecast_hub::secrets::HubSecrets::generate_ephemeral(),
    );
    let (foreign, _) = other
        .issue(&owner.user_id, tradecast_hub::accounts::Role::Owner, hub.clock.now_ms(), 60)
        .unwrap();
    hub.get("/api/v1/me", Some(&foreign)).await.problem(401, "invalid-token");
    // Wrong role.
    hub.get("/api/v1/users", Some(&sub.token)).await.problem(403, "forbidden");
    hub.post("/api/v1/api-keys", Some(&sub.token), json!({})).await.problem(403, "forbidden");
    // Expired: access tokens live 900 s.
    hub.clock.advance_ms(901_000);
    hub.get("/api/v1/me", Some(&owner.token)).await.problem(401, "token-expired");
    hub.stop().await;
}

async fn brute_force_is_throttled_then_locked(b: Backend) {
    let hub = TestHub::start_with(b, |c| {
        c.auth.login_free_failures = 3;
        c.auth.login_lock_failures = 6;
        c.auth.login_lock_s = 900;
        c.rate_limits.login_per_ip.burst = 1000;
    })
    .await;
    let owner = hub.owner().await;
    let wrong = json!({ "email": owner.email, "password": "wrong password!!" });
    for _ in 0..3 {
        hub.post("/api/v1/auth/login", None, wrong.clone())
            .await
            .problem(401, "invalid-credentials");
    }
    // Fourth attempt right away: a 1 s delay applies (base 1 s × 2^0).
    let r = hub.post("/api/v1/auth/login", None, wrong.clone()).await;
    r.problem(429, "login-throttled");
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.body["retry_after_s"], 1);
    // Even the right password waits.
    hub.post(
        "/api/v1/auth/login",
        None,
        json!({ "email": owner.email, "password": owner.password }),
    )
    .await
    .problem(429, "login-throttled");
    hub.clock.advance_ms(1_000);
    hub.post("/api/v1/auth/login", None, wrong.clone()).await.problem(401, "invalid-credentials");
    // The delay doubled: 2 s.
    let r = hub.post("/api/v1/auth/login", None, wrong.clone()).await;
    r.problem(429, "login-throttled");
    assert_eq!(r.headers["retry-after"], "2");
    hub.clock.advance_ms(2_000);
    hub.post("/api/v1/auth/login", None, wrong.clone()).await.problem(401, "invalid-credentials");
    hub.clock.advance_ms(4_000);
    // Sixth failure locks.
    hub.post("/api/v1/auth/login", None, wrong.clone()).await.problem(401, "invalid-credentials");
    let r = hub
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "email": owner.email, "password": owner.password }),
        )
        .await;
    r.problem(423, "account-locked");
    assert_eq!(r.headers["retry-after"], "900");
    hub.clock.advance_ms(900_000);
    // After the lock the right password works and clears the count.
    hub.login(&owner.email, &owner.password).await;
    hub.post("/api/v1/auth/login", None, wrong.clone()).await.problem(401, "invalid-credentials");
    let audit = hub
        .get(
            "/api/v1/audit?action=auth.login_failed",
            Some(&hub.login(&owner.email, &owner.password).await.token),
        )
        .await;
    assert_eq!(audit.ok(200).as_array().unwrap().len(), 7);
    hub.stop().await;
}

async fn unknown_emails_are_throttled_too(b: Backend) {
    let hub = TestHub::start_with(b, |c| c.rate_limits.login_per_ip.burst = 1000).await;
    let probe = json!({ "email": "nobody@example.com", "password": "whatever pass" });
    for _ in 0..3 {
        hub.post("/api/v1/auth/login", None, probe.clone())
            .await
            .problem(401, "invalid-credentials");
    }
    hub.post("/api/v1/auth/login", None, probe).await.problem(429, "login-throttled");
    hub.stop().await;
}

async fn login_attempts_per_ip_are_limited(b: Backend) {
    // 10 attempts per IP, whatever the emails: spraying many accounts is bounded too.
    let hub = TestHub::start(b).await;
    for i in 0..10 {
        hub.post(
            "/api/v1/auth/login",
            None,
            json!({ "email": format!("u{i}@example.com"), "password": "whatever pass" }),
        )
        .await
        .problem(401, "invalid-credentials");
    }
    let r = hub
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "email": "u99@example.com", "password": "whatever pass" }),
        )
        .await;
    r.problem(429, "rate-limited");
    assert_eq!(r.headers["retry-after"], "2");
    hub.stop().await;
}

async fn concurrent_failures_are_all_counted(b: Backend) {
    let hub = TestHub::start_with(b, |c| {
        c.auth.login_free_failures = 50;
        c.auth.login_lock_failures = 51;
        c.rate_limits.login_per_ip.burst = 1000;
    })
    .await;
    let owner = hub.owner().await;
    let attempts = (0..12).map(|_| {
        hub.post(
            "/api/v1/auth/login",
            None,
            json!({ "email": owner.email, "password": "wrong password!!" }),
        )
    });
    for r in futures_join(attempts).await {
        r.problem(401, "invalid-credentials");
    }
    let n: i64 = sqlx::query_scalar("SELECT failures FROM login_failures WHERE email = $1")
        .bind(&owner.email)
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 12, "every concurrent failure is counted");
    hub.stop().await;
}

/// Runs the futures concurrently on this task (no extra dependency).
async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}
