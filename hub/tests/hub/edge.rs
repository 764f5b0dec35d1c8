//! The HTTP edge: health, readiness, metrics, OpenAPI and docs, request ids, and the generic
//! problem kinds (unknown route, wrong method, malformed JSON, wrong types, wrong media type,
//! oversized body, timeout).

use serde_json::json;

use crate::helpers::{Backend, TestDb, TestHub, test_config};
use crate::on_both;

on_both!(
    load_is_shed_beyond_max_in_flight,
    ops_routes_answer,
    request_ids_propagate,
    generic_problems,
    unmigrated_database_is_not_ready,
    handlers_time_out
);

async fn ops_routes_answer(b: Backend) {
    let hub = TestHub::start(b).await;
    assert_eq!(hub.get("/health", None).await.ok(200)["status"], "ok");
    assert_eq!(hub.get("/ready", None).await.ok(200)["status"], "ready");
    if b == Backend::Sqlite {
        let mode: String =
            sqlx::query_scalar("PRAGMA journal_mode").fetch_one(hub.db.pool()).await.unwrap();
        assert_eq!(mode, "wal");
    }

    let doc = hub.get("/api/v1/openapi.json", None).await;
    let paths = doc.ok(200)["paths"].as_object().unwrap().clone();
    for p in [
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/users",
        "/api/v1/devices/enrol",
        "/api/v1/signals",
        "/api/v1/approvals",
        "/api/v1/plans",
        "/api/v1/entitlements",
        "/api/v1/audit/verify",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
    assert!(doc.body["components"]["schemas"]["Problem"].is_object());
    assert!(doc.body["components"]["securitySchemes"]["hmac"].is_object());

    let docs = hub.get("/api/v1/docs", None).await;
    assert_eq!(docs.status, 200);
    assert!(
        docs.text.contains("<code>/api/v1/signals</code>") && docs.text.contains("StoredSignal"),
        "{}",
        docs.text
    );

    // One request that errors, so the counter has a 4xx series too.
    hub.get("/api/v1/me", None).await.problem(401, "unauthenticated");
    let m = hub.get("/metrics", None).await;
    assert_eq!(m.status, 200);
    for needle in [
        "tradecast_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"}",
        "tradecast_http_requests_total{method=\"GET\",route=\"/api/v1/me\",status=\"401\"}",
        "tradecast_http_request_duration_seconds_bucket{method=\"GET\",route=\"/ready\"",
        "tradecast_devices_connected 0",
        "tradecast_devices_active 0",
        "tradecast_fanout_lag_seconds 0",
    ] {
        assert!(m.text.contains(needle), "{needle} not in /metrics:\n{}", m.text);
    }
    hub.stop().await;
}

async fn request_ids_propagate(b: Backend) {
    let hub = TestHub::start(b).await;
    let r = hub.http.get(hub.url("/health")).send().await.unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 24, "{generated}");
    let r = hub
        .http
        .get(hub.url("/health"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-42");
    // Errors carry it too, and the audit entries of a request record it.
    let admin = hub.owner().await;
    let r = hub
        .http
        .post(hub.url("/api/v1/devices/enrolment-codes"))
        .bearer_auth(&admin.token)
        .header("x-request-id", "req-audited-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let audit = hub.get("/api/v1/audit?action=device.code_create", Some(&admin.token)).await;
    assert_eq!(audit.ok(200)[0]["request_id"], "req-audited-1");
    hub.stop().await;
}

async fn generic_problems(b: Backend) {
    let hub = TestHub::start(b).await;
    hub.get("/nope", None).await.problem(404, "route-not-found");
    hub.send("DELETE", "/health", None, None).await.problem(405, "method-not-allowed");
    hub.post_raw("/api/v1/auth/login", "application/json", b"{\"email\": ".to_vec())
        .await
        .problem(400, "malformed-json");
    hub.post("/api/v1/auth/login", None, json!({ "email": 5, "password": "x" }))
        .await
        .problem(422, "invalid-body");
    hub.post("/api/v1/auth/login", None, json!({ "email": "a@b.c" }))
        .await
        .problem(422, "invalid-body");
    hub.post("/api/v1/auth/login", None, json!({ "email": "a@b.c", "password": "x", "extra": 1 }))
        .await
        .problem(422, "invalid-body");
    hub.post_raw("/api/v1/auth/login", "text/plain", b"{}".to_vec())
        .await
        .problem(415, "unsupported-media-type");
    let big = format!("{{\"email\": \"{}\", \"password\": \"x\"}}", "a".repeat(70 * 1024));
    hub.post_raw("/api/v1/auth/login", "application/json", big.into_bytes())
        .await
        .problem(413, "payload-too-large");
    // NUL in any string (PostgreSQL cannot store it) is the client's error, never a 500; the
    // escaped backslash before `u0000` is six ordinary characters and passes.
    let nul = br#"{"email": "a\u0000@b.c", "password": "x"}"#.to_vec();
    hub.post_raw("/api/v1/auth/login", "application/json", nul).await.problem(422, "validation");
    let nul_key = br#"{"email": "a@b.c", "password": "x", "\u0000": 1}"#.to_vec();
    hub.post_raw("/api/v1/auth/login", "application/json", nul_key)
        .await
        .problem(422, "validation");
    let not_nul = br#"{"email": "a\\u0000@b.c", "password": "x"}"#.to_vec();
    hub.post_raw("/api/v1/auth/login", "application/problem+json", not_nul)
        .await
        .problem(401, "invalid-credentials");
    let admin = hub.owner().await;
    hub.get("/api/v1/signals/ab%00cd", Some(&admin.token)).await.problem(400, "invalid-parameter");
    hub.get("/api/v1/devices/ab%00cd/approval-requests", Some(&admin.token))
        .await
        .problem(400, "invalid-parameter");
    hub.get("/api/v1/users?limit=%00", Some(&admin.token)).await.problem(400, "invalid-parameter");
    hub.get("/api/v1/users?limit=0", Some(&admin.token)).await.problem(400, "invalid-parameter");
    hub.get("/api/v1/users?limit=abc", Some(&admin.token)).await.problem(400, "invalid-parameter");
    hub.stop().await;
}

async fn unmigrated_database_is_not_ready(b: Backend) {
    let test_db = TestDb::new(b).await;
    let config = test_config(&test_db.url);
    let db = tradecast_hub::db::Db::connect(&test_db.url, 2).await.unwrap();
    let started = tradecast_hub::start_with(
        config,
        tradecast_hub::secrets::HubSecrets::generate_ephemeral(),
        db.clone(),
        Default::default(),
    )
    .await
    .unwrap();
    let url = format!("http://{}/ready", started.addr);
    let r = crate::helpers::Resp::from(reqwest::get(&url).await.unwrap()).await;
    r.problem(503, "unavailable");
    db.migrate().await.unwrap();
    let r = crate::helpers::Resp::from(reqwest::get(&url).await.unwrap()).await;
    assert_eq!(r.ok(200)["status"], "ready");
    started.stop().await.unwrap();
}

async fn handlers_time_out(b: Backend) {
    // The limit must pass a cheap login (the owner's, below) on a loaded CI machine and cut a
    // heavy one: 500 ms against a hash that takes seconds to verify.
    let hub = TestHub::start_with(b, |c| c.http.request_timeout_ms = 500).await;
    let owner = hub.owner().await;
    // A hash of 128 MiB with 10 passes takes over a second to verify (argon2 is built
    // optimised in test builds too: Cargo.toml's profile).
    let mut heavy = hub.state().config.auth.clone();
    heavy.argon2_memory_kib = 131_072;
    heavy.argon2_iterations = 10;
    let hash = tradecast_hub::accounts::hash_password(&heavy, "heavy password 1").await.unwrap();
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(&owner.user_id)
        .execute(hub.db.pool())
        .await
        .unwrap();
    let r = hub
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "email": owner.email, "password": "heavy password 1" }),
        )
        .await;
    r.problem(503, "timeout");
    hub.stop().await;
}

async fn load_is_shed_beyond_max_in_flight(b: Backend) {
    let hub = TestHub::start_with(b, |c| c.http.max_in_flight = 1).await;
    let owner = hub.owner().await;
    // A login against a hash of 128 MiB with 6 passes takes about a second (argon2 is built
    // optimised in test builds too): it holds the only slot.
    let mut heavy = hub.state().config.auth.clone();
    heavy.argon2_memory_kib = 131_072;
    heavy.argon2_iterations = 6;
    let hash = tradecast_hub::accounts::hash_password(&heavy, "heavy password 1").await.unwrap();
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(&owner.user_id)
        .execute(hub.db.pool())
        .await
        .unwrap();
    let slow = hub.post(
        "/api/v1/auth/login",
        None,
        json!({ "email": owner.email, "password": "heavy password 1" }),
    );
    let probe = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let shed = hub.get("/api/v1/auth/jwks.json", None).await;
        let health = hub.get("/health", None).await;
        (shed, health)
    };
    let (login, (shed, health)) = tokio::join!(slow, probe);
    login.ok(200);
    shed.problem(503, "overloaded");
    assert_eq!(shed.headers["retry-after"], "1");
    health.ok(200);
    // The slot is free again.
    hub.get("/api/v1/auth/jwks.json", None).await.ok(200);
    hub.stop().await;
}
