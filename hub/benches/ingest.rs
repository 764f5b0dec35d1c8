//! Signal ingest benchmark: starts the real `tradecast-hub serve` as a child process (SQLite in
//! a temporary data dir, and PostgreSQL in a fresh database), sets up a provider (device, plan,
//! API key) and a subscriber with 10 entitled devices, then posts pre-signed signal records
//! with HMAC-authenticated requests from this process over loopback. Prints requests/s, p50 and
//! p99 latency, and the hub's RSS (current and peak) for each backend.
//!
//! `cargo bench -p tradecast-hub --bench ingest -- [--requests N] [--concurrency C]
//! [--backend sqlite|postgres|both]`. PostgreSQL from `TRADECAST_TEST_PG`.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tradecast_hub::signals::client;
use tradecast_protocol::{
    Body, ChainHash, DeviceKeys, EntryKind, HeaderFields, Identity, Record, Side, Signal, SignalId,
    StreamId, Timeframe,
};

const BIN: &str = env!("CARGO_BIN_EXE_tradecast-hub");

struct Args {
    requests: usize,
    concurrency: usize,
    backends: Vec<&'static str>,
}

fn args() -> Args {
    let mut a = Args { requests: 5000, concurrency: 16, backends: vec!["sqlite", "postgres"] };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--requests" => a.requests = next.parse().expect("--requests N"),
            "--concurrency" => a.concurrency = next.parse().expect("--concurrency C"),
            "--backend" => {
                a.backends = match next.as_str() {
                    "sqlite" => vec!["sqlite"],
                    "postgres" => vec!["postgres"],
                    _ => vec!["sqlite", "postgres"],
                }
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn identity() -> Identity {
    let seed: [u8; 32] = tradecast_hub::ids::random_bytes(32).try_into().unwrap();
    let x: [u8; 32] = tradecast_hub::ids::random_bytes(32).try_into().unwrap();
    Identity::from_secret_bytes(&seed, &x)
}

fn keys_record(id: &Identity, label: &str, now: i64) -> String {
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

fn now_ms() -> i64 {
    tradecast_hub::ids::Clock::default().now_ms()
}

struct Hub {
    child: Child,
    base: String,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(args: &[&str], data: &std::path::Path, db_url: Option<&str>, stdin: Option<&str>) {
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

fn start_hub(data: &std::path::Path, db_url: Option<&str>) -> Hub {
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

fn rss_kib(pid: u32) -> (u64, u64) {
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

async fn call(
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

async fn enrol(http: &reqwest::Client, base: &str, token: &str, id: &Identity, label: &str) {
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

struct Kit {
    provider: Identity,
    key_id: String,
    secret: String,
}

async fn setup(http: &reqwest::Client, base: &str) -> Kit {
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
    Kit {
        provider: provider_id,
        key_id: key["id"].as_str().unwrap().into(),
        secret: key["secret"].as_str().unwrap().into(),
    }
}

fn signal(provider: &Identity, now: i64, i: usize) -> Signal {
    let d = |s: &str| s.parse().unwrap();
    Signal {
        id: SignalId(tradecast_hub::ids::random_bytes(16).try_into().unwrap()),
        provider: provider.device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 1,
        symbol: if i.is_multiple_of(2) { "EURUSD".into() } else { "XAUUSD".into() },
        timeframe: Timeframe::H1,
        side: Side::Buy,
        entry_kind: EntryKind::Market,
        entry: d("1.09128"),
        stop: d("1.08900"),
        tp1: d("1.09500"),
        tp2: None,
        bar_time_ms: now - 3_600_000,
        expires_at_ms: now + 600_000,
        leg: 1,
        indicators: vec![],
        rr: d("1.63"),
    }
}

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_kib: u64,
    peak_kib: u64,
}

async fn load(
    hub: &Hub,
    kit: &Kit,
    requests: usize,
    concurrency: usize,
    first_seq: u64,
) -> Figures {
    let now = now_ms();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..requests)
            .map(|i| {
                let f = HeaderFields {
                    stream: StreamId::SIGNALS,
                    seq: first_seq + i as u64,
                    prev_hash: ChainHash::GENESIS,
                    created_at_ms: now,
                };
                client::signal_body(&kit.provider, f, &signal(&kit.provider, now, i)).1
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let url = format!("{}{}", hub.base, client::SIGNALS_PATH);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (bodies, next, http, url) = (bodies.clone(), next.clone(), http.clone(), url.clone());
        let (key_id, secret) = (kit.key_id.clone(), kit.secret.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    return lat;
                }
                let t = Instant::now();
                let nonce = tradecast_hub::ids::random_hex(16);
                let mut r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[i].clone());
                for (k, v) in client::auth_headers(
                    &key_id,
                    &secret,
                    client::SIGNALS_PATH,
                    &bodies[i],
                    now_ms(),
                    &nonce,
                ) {
                    r = r.header(k, v);
                }
                let resp = r.send().await.unwrap();
                let status = resp.status();
                let _ = resp.bytes().await;
                assert_eq!(status, 201, "signal {i}");
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    let (rss_kib, peak_kib) = rss_kib(hub.child.id());
    Figures {
        rps: requests as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        rss_kib,
        peak_kib,
    }
}

async fn pg_database() -> (String, String) {
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

async fn drop_pg(name: &str) {
    use sqlx::Connection;
    let admin = std::env::var("TRADECAST_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut c)
        .await
        .unwrap();
}

#[tokio::main]
async fn main() {
    let a = args();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "signal ingest: {} requests, {} concurrent, HMAC + Ed25519 verify + dedupe + audit + fan-out to 10 devices",
        a.requests, a.concurrency
    );
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg = loadavg.split_whitespace().next().unwrap_or("?");
    println!(
        "machine: {cpus} CPUs, load average {loadavg} at start; hub and load generator share them"
    );
    println!(
        "{:<10} {:>10} {:>9} {:>9} {:>12} {:>10} {:>11}",
        "backend", "req/s", "p50 ms", "p99 ms", "RSS idle MiB", "RSS MiB", "peak MiB"
    );
    for backend in &a.backends {
        let data = tempfile::tempdir().unwrap();
        let (url, pg) = if *backend == "postgres" {
            let (u, n) = pg_database().await;
            (Some(u), Some(n))
        } else {
            (None, None)
        };
        let hub = start_hub(data.path(), url.as_deref());
        let idle_kib = rss_kib(hub.child.id()).0;
        let http = reqwest::Client::new();
        let kit = setup(&http, &hub.base).await;
        // Warm-up (connections, caches), not counted; the measured run continues the stream.
        let warm = 200.min(a.requests);
        let _ = load(&hub, &kit, warm, a.concurrency, 1).await;
        let f = load(&hub, &kit, a.requests, a.concurrency, warm as u64 + 1).await;
        println!(
            "{:<10} {:>10.0} {:>9.2} {:>9.2} {:>12.1} {:>10.1} {:>11.1}",
            backend,
            f.rps,
            f.p50_ms,
            f.p99_ms,
            idle_kib as f64 / 1024.0,
            f.rss_kib as f64 / 1024.0,
            f.peak_kib as f64 / 1024.0
        );
        drop(hub);
        if let Some(n) = pg {
            drop_pg(&n).await;
        }
    }
}
