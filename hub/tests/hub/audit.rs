//! The audit chain: verified through the API, append-only in the database (UPDATE and DELETE
//! raise on both backends), and a tampered entry is found by the verifier.

use crate::helpers::{Backend, TestHub};
use crate::on_both;

on_both!(chain_is_append_only_and_verified);

async fn chain_is_append_only_and_verified(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let _sub = hub.user(&owner, "subscriber").await;
    let v = hub.get("/api/v1/audit/verify", Some(&owner.token)).await;
    let n = v.ok(200)["n_entries"].as_i64().unwrap();
    assert!(n >= 4, "user.create ×2 and auth.login ×2 at least: {n}");
    let list = hub.get("/api/v1/audit?limit=1000", Some(&owner.token)).await;
    let entries = list.ok(200).as_array().unwrap().clone();
    assert_eq!(entries.len() as i64, n);
    assert_eq!(entries[0]["hash"], v.body["head_hash"]);
    assert_eq!(entries.last().unwrap()["prev_hash"], tradecast_hub::audit::GENESIS_HASH);
    assert!(entries.iter().all(|e| !e["detail"].as_str().unwrap().contains("password")));

    for sql in [
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 1",
    ] {
        let err = sqlx::query(sql).execute(hub.db.pool()).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    if b == Backend::Postgres {
        let err =
            sqlx::query("TRUNCATE audit_log").execute(hub.db.pool()).await.expect_err("truncate");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    tradecast_hub::audit::verify(&hub.db).await.unwrap();

    // Someone with the power to drop the protection alters history: the verifier notices.
    let (disable, enable) = match b {
        // (This test's database is thrown away after it: no need to put the trigger back.)
        Backend::Sqlite => (vec!["DROP TRIGGER audit_log_no_update"], vec![]),
        Backend::Postgres => (
            vec!["ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete"],
            vec!["ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete"],
        ),
    };
    for s in disable {
        sqlx::raw_sql(s).execute(hub.db.pool()).await.unwrap();
    }
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        .execute(hub.db.pool())
        .await
        .unwrap();
    for s in enable {
        sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string())).execute(hub.db.pool()).await.unwrap();
    }
    match tradecast_hub::audit::verify(&hub.db).await {
        Err(tradecast_hub::audit::AuditError::Broken { seq, .. }) => assert_eq!(seq, 2),
        other => panic!("tampering not detected: {other:?}"),
    }
    hub.get("/api/v1/audit/verify", Some(&owner.token)).await.problem(500, "internal");
    let sub = hub.user(&owner, "subscriber").await;
    hub.get("/api/v1/audit", Some(&sub.token)).await.problem(403, "forbidden");
    hub.stop().await;
}

on_both!(two_instances_append_one_chain);

/// Two hub instances on one database (the multi-instance deployment) append concurrently: the
/// chain stays contiguous and verifies.
async fn two_instances_append_one_chain(b: Backend) {
    let hub = TestHub::start_with(b, |c| c.rate_limits.per_account.burst = 10_000).await;
    let owner = hub.owner().await;
    let mut config = hub.state().config.clone();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let url = config.database_url.as_ref().unwrap().expose().to_string();
    let db2 = tradecast_hub::db::Db::connect(&url, 4).await.unwrap();
    let second = tradecast_hub::start_with(
        config,
        tradecast_hub::secrets::HubSecrets::generate_ephemeral(),
        db2,
        Default::default(),
    )
    .await
    .unwrap();
    let base2 = format!("http://{}", second.addr);
    let login2: serde_json::Value = hub
        .http
        .post(format!("{base2}/api/v1/auth/login"))
        .json(&serde_json::json!({ "email": owner.email, "password": owner.password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token2 = login2["access_token"].as_str().unwrap().to_string();
    let before = tradecast_hub::audit::verify(&hub.db).await.unwrap().n_entries;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (http, url, token) = if i % 2 == 0 {
            (hub.http.clone(), hub.url("/api/v1/devices/enrolment-codes"), owner.token.clone())
        } else {
            (hub.http.clone(), format!("{base2}/api/v1/devices/enrolment-codes"), token2.clone())
        };
        tasks.push(tokio::spawn(async move {
            http.post(url).bearer_auth(token).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let report = tradecast_hub::audit::verify(&hub.db).await.unwrap();
    assert_eq!(report.n_entries, before + 40);
    second.stop().await.unwrap();
    hub.stop().await;
}
