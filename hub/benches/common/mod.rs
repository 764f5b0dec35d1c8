//! What the hub benchmarks share: the real `tradecast-hub serve` as a child process (SQLite in
//! a temporary data dir, or a fresh PostgreSQL database), and a provider set up through its API
//! (device, plan, API key) with a subscriber entitled on 10 devices.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tradecast_protocol::{Body, ChainHash, DeviceKeys, HeaderFields, Identity, Record, StreamId};

pub const BIN: &str = env!("CARGO_BIN_EXE_tradecast-hub");

pub fn identity() -> Identity {
    let seed: [u8; 32] = tradecast_hub::ids::random_bytes(32).try_into().unwrap();
    let x: [u8; 32] = tradecast_hub::ids::random_bytes(32).try_into().unwrap();
    Identity::from_secret_bytes(&seed, &x)
}

pub fn keys_record(id: &Identity, label: &str, now: i64) -> String {
    let keys = DeviceKeys {
        identity: id.identity_key(),
        sealing: id.sealing_public_key(),
        label: label.into(),
        at_ms: now,
        account_fingerprint: None,
    };
    let f = HeaderFields {
        stream: StreamId::DEVICE,
        seq: 1,
        prev_hash: ChainHash::GENESIS,
        created_at_ms: now,
    };
    data_encoding::BASE64.encode(&Record::sign(id, f, &Body::DeviceKeys(keys)).encode())
}

pub fn now_ms() -> i64 {
    tradecast_hub::ids::Clock::default().now_ms()
}

pub struct Hub {
    pub child: Child,
    pub base: String,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cli(args: &[&str], data: &std::path::Path, db_url: Option<&str>, stdin: Option<&str>) {
    let mut c = Command::new(BIN);
    c.args(args)
        .arg("--data")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::piped());
    if let Some(u) = db_url {
        c.args(["--database-url", u]);
    }
    let mut child = c.spawn().unwrap();
    if let Some(s) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    assert!(child.wait().unwrap().success(), "tradecast-hub {args:?} failed");
}

pub fn start_hub(data: &std::path::Path, db_url: Option<&str>) -> Hub {
    cli(
        &["admin", "create-owner", "--email", "owner@bench.local"],
        data,
        db_url,
        Some("bench owner password\n"),
    );
    let mut c = Command::new(BIN);
    c.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(data);
    if let Some(u) = db_url {
        c.args(["--database-url", u]);
    }
    // Limits high enough not to be what is measured; logs as in production (JSON, info).
    c.env("TRADECAST_HUB_RATE_LIMITS__PER_IP__BURST", "1000000")
        .env("TRADECAST_HUB_RATE_LIMITS__PER_IP__PER_MINUTE", "100000000")
        .env("TRADECAST_HUB_RATE_LIMITS__SIGNALS_PER_KEY__BURST", "1000000")
        .env("TRADECAST_HUB_RATE_LIMITS__SIGNALS_PER_KEY__PER_MINUTE", "100000000")
        .env("TRADECAST_HUB_RATE_LIMITS__LOGIN_PER_IP__BURST", "1000")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(t) = &tx
                && let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "hub listening"
            {
                let _ = t.send(v["addr"].as_str().unwrap_or_default().to_string());
                tx = None;
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("hub did not start");
    Hub { child, base: format!("http://{addr}") }
}

pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut r = http.request(method, url).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {v}");
    v
}

pub async fn enrol(http: &reqwest::Client, base: &str, token: &str, id: &Identity, label: &str) {
    let code = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/v1/devices/enrolment-codes"),
        Some(token),
        json!({}),
    )
    .await;
    let body = json!({ "code": code["code"], "keys_record": keys_record(id, label, now_ms()) });
    call(http, reqwest::Method::POST, format!("{base}/api/v1/devices/enrol"), None, body).await;
}

pub struct Kit {
    pub provider: Identity,
    pub key_id: String,
    pub secret: String,
    /// The provider's account id.
    pub provider_user: String,
}

pub async fn setup(http: &reqwest::Client, base: &str) -> Kit {
    let post = reqwest::Method::POST;
    let login = |email: &'static str, pw: &'static str| {
        call(
            http,
            reqwest::Method::POST,
            format!("{base}/api/v1/auth/login"),
            None,
            json!({ "email": email, "password": pw }),
        )
    };
    let owner = login("owner@bench.local", "bench owner password").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for (email, role) in [("provider@bench.local", "provider"), ("sub@bench.local", "subscriber")] {
        call(
            http,
            post.clone(),
            format!("{base}/api/v1/users"),
            Some(&owner),
            json!({ "email": email, "password": "bench password 123", "role": role }),
        )
        .await;
    }
    let provider = login("provider@bench.local", "bench password 123").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let sub = login("sub@bench.local", "bench password 123").await;
    let sub_token = sub["access_token"].as_str().unwrap().to_string();
    let provider_id = identity();
    enrol(http, base, &provider, &provider_id, "provider").await;
    for _ in 0..10 {
        enrol(http, base, &sub_token, &identity(), "subscriber device").await;
    }
    let plan = call(
        http,
        post.clone(),
        format!("{base}/api/v1/plans"),
        Some(&provider),
        json!({ "name": "Bench", "price_minor": 1000, "currency": "USD", "period_days": 30 }),
    )
    .await;
    let me = call(
        http,
        reqwest::Method::GET,
        format!("{base}/api/v1/me"),
        Some(&sub_token),
        Value::Null,
    )
    .await;
    call(
        http,
        post.clone(),
        format!("{base}/api/v1/entitlements"),
        Some(&owner),
        json!({ "user_id": me["id"], "plan_id": plan["id"] }),
    )
    .await;
    let key = call(
        http,
        post,
        format!("{base}/api/v1/api-keys"),
        Some(&provider),
        json!({ "label": "bench" }),
    )
    .await;
    let provider_me =
        call(http, reqwest::Method::GET, format!("{base}/api/v1/me"), Some(&provider), Value::Null)
            .await;
    Kit {
        provider: provider_id,
        key_id: key["id"].as_str().unwrap().into(),
        secret: key["secret"].as_str().unwrap().into(),
        provider_user: provider_me["id"].as_str().unwrap().into(),
    }
}

pub async fn pg_database() -> (String, String) {
    use sqlx::Connection;
    let admin = std::env::var("TRADECAST_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("tc_hub_bench_{}", tradecast_hub::ids::random_hex(6));
    let mut c = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL for the benchmark");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    (format!("{}/{name}", admin.rsplit_once('/').unwrap().0), name)
}

pub async fn drop_pg(name: &str) {
    use sqlx::Connection;
    let admin = std::env::var("TRADECAST_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut c)
        .await
        .unwrap();
}
