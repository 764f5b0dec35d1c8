//! Billing webhook benchmark: starts a hub in-process (SQLite in a temporary data dir, and
//! PostgreSQL in a fresh database) with Stripe pointed at an in-process Stripe stand-in, creates
//! N customers with an active card subscription through the stand-in (checkout sessions made by
//! the hub, completed with a test card; no webhook is delivered during setup), then posts M
//! signed webhook events (`invoice.paid` and `customer.subscription.updated`, with fresh ids,
//! naming those customers, signed with the stand-in's secret as Stripe signs them) to the hub's
//! webhook over loopback HTTP with C concurrent senders. Each one is a re-read of the customer's
//! subscriptions and invoices from the stand-in plus one ledger transaction. Then the same M
//! events again (duplicates), the same re-reads called from the bench without the hub (what a
//! webhook costs before the database), and the nightly reconciliation over the N customers.
//!
//! Prints webhooks/s, p50 and p99 latency for both passes, the reconciliation's customers/s, and
//! `RESULT <name> <value> <unit>` lines at the end.
//!
//! `cargo bench -p tradecast-hub --bench billing -- [--customers N] [--events M]
//! [--concurrency C] [--backend sqlite|postgres|both]`, or `BENCH_CUSTOMERS`, `BENCH_EVENTS`,
//! `BENCH_CONCURRENCY`, `BENCH_BACKEND`. PostgreSQL from `TRADECAST_TEST_PG` (skipped with a
//! note when it cannot be reached).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tradecast_hub::accounts::{self, NewUser, Role};
use tradecast_hub::billing::stripe::StripeClient;
use tradecast_hub::billing::stripe_door;
use tradecast_hub::config::{Config, PublicUrl, RedactedUrl};
use tradecast_hub::db::Db;
use tradecast_hub::ids::Clock;
use tradecast_hub::plans::{self, NewPlan};
use tradecast_hub::secrets::HubSecrets;
use tradecast_hub::state::AppState;
use tradecast_standins::stripe::webhook::signature_header;
use tradecast_standins::stripe::{StripeStandin, StripeStandinConfig};

const WEBHOOK: &str = "/api/v1/billing/stripe/webhook";

struct Args {
    customers: usize,
    events: usize,
    concurrency: usize,
    backends: Vec<&'static str>,
}

fn backends(s: &str) -> Vec<&'static str> {
    match s {
        "sqlite" => vec!["sqlite"],
        "postgres" => vec!["postgres"],
        _ => vec!["sqlite", "postgres"],
    }
}

fn args() -> Args {
    let env = |k: &str| std::env::var(k).ok();
    let num = |k: &str, d: usize| env(k).map(|v| v.parse().expect(k)).unwrap_or(d);
    let mut a = Args {
        customers: num("BENCH_CUSTOMERS", 200),
        events: num("BENCH_EVENTS", 2000),
        concurrency: num("BENCH_CONCURRENCY", 8),
        backends: backends(env("BENCH_BACKEND").as_deref().unwrap_or("both")),
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--customers" => a.customers = next.parse().expect("--customers N"),
            "--events" => a.events = next.parse().expect("--events M"),
            "--concurrency" => a.concurrency = next.parse().expect("--concurrency C"),
            "--backend" => a.backends = backends(&next),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    assert!(a.customers > 0 && a.events > 0 && a.concurrency > 0, "N, M and C must be > 0");
    a
}

fn pg_admin_url() -> String {
    std::env::var("TRADECAST_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database (url, name), or why not.
async fn pg_database() -> Result<(String, String), String> {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let name = format!("tc_hub_bench_{}", tradecast_hub::ids::random_hex(6));
    let connect = sqlx::PgConnection::connect(&admin);
    let mut c = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("connection timed out".into()),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
    Ok((format!("{base}/{name}"), name))
}

async fn drop_pg(name: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut c)
        .await
        .unwrap();
}

/// A loopback port free now (the hub's `public_url` must be known before it starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

struct Bench {
    started: tradecast_hub::Started,
    sb: StripeStandin,
    base: String,
}

async fn start(db_url: &str) -> Bench {
    let sb = StripeStandin::start(StripeStandinConfig::default()).await.unwrap();
    let port = free_port();
    let mut config = Config {
        listen: ([127, 0, 0, 1], port).into(),
        database_url: Some(RedactedUrl::new(db_url)),
        ..Default::default()
    };
    config.public_url = Some(PublicUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap());
    config.stripe.api_base_url = sb.base_url().to_string();
    // Setup accounts are made here, not logged into: cheap hashing keeps setup short.
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    config.validate().expect("bench config is valid");
    let db = tradecast_hub::open_db(&config).await.unwrap();
    let mut secrets = HubSecrets::generate_ephemeral();
    secrets.integrations.stripe_secret_key = Some(sb.secret_key().to_string().into());
    secrets.integrations.stripe_webhook_secret = Some(sb.webhook_secret().to_string().into());
    let started = tradecast_hub::start_with(config, secrets, db, Clock::default()).await.unwrap();
    let base = format!("http://{}", started.addr);
    Bench { started, sb, base }
}

/// N subscribers with an active card subscription at the stand-in (the hub's ledger does not
/// know them yet: no webhook was delivered).
async fn setup(state: &AppState, sb: &StripeStandin, customers: usize) -> Vec<String> {
    let db: &Db = &state.db;
    let now = state.now_ms();
    let auth = &state.config.auth;
    let password = "bench password 123";
    let new = |email: &'static str, role| NewUser { email, password, role, display_name: "" };
    let provider = accounts::create_user(
        db,
        auth,
        now,
        &new("provider@bench.local", Role::Provider),
        "bench",
        "bench",
    )
    .await
    .unwrap();
    let plan = NewPlan {
        provider_user_id: None,
        name: "Bench".into(),
        price_minor: 4900,
        currency: "USD".into(),
        period_days: 30,
        ..Default::default()
    };
    let plan = plans::create(db, now, &provider.id, Role::Provider, &plan, "bench").await.unwrap();
    let mut accounts = Vec::with_capacity(customers);
    for i in 0..customers {
        let email = format!("sub{i}@bench.local");
        let user = NewUser { email: &email, password, role: Role::Subscriber, display_name: "" };
        let user = accounts::create_user(db, auth, now, &user, "bench", "bench").await.unwrap();
        let url = stripe_door::checkout(state, &user.id, &plan.id).await.unwrap();
        let session = url.rsplit('/').next().unwrap().to_string();
        sb.complete_checkout(&session, "4242424242424242").unwrap();
        accounts.push(user.id);
    }
    accounts
}

/// Event templates (`invoice.paid`, and the subscription's event as
/// `customer.subscription.updated`) for each customer, from what the stand-in recorded.
fn templates(sb: &StripeStandin) -> Vec<Value> {
    let mut out = Vec::new();
    for mut e in sb.events() {
        let t = e["type"].as_str().unwrap_or_default().to_string();
        if t == "invoice.paid" {
            out.push(e);
        } else if t == "customer.subscription.created" {
            e["type"] = "customer.subscription.updated".into();
            out.push(e);
        }
    }
    out
}

/// M event bodies with fresh ids, spread over the customers.
fn bodies(templates: &[Value], events: usize, tag: &str) -> Vec<Vec<u8>> {
    let now_s = tradecast_hub::ids::Clock::default().now_ms() / 1000;
    (0..events)
        .map(|i| {
            let mut e = templates[i % templates.len()].clone();
            e["id"] = format!("evt_bench_{tag}_{i}").into();
            e["created"] = now_s.into();
            serde_json::to_vec(&e).unwrap()
        })
        .collect()
}

struct Figures {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Posts every body (signed at send time) with `concurrency` senders; each answer must be 200
/// with `outcome` = `expect`.
async fn load(
    base: &str,
    secret: &str,
    bodies: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    expect: &'static str,
) -> Figures {
    let next = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let url = format!("{base}{WEBHOOK}");
    let secret: Arc<str> = secret.into();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (bodies, next, http, url, secret) =
            (bodies.clone(), next.clone(), http.clone(), url.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    return lat;
                }
                let t = Instant::now();
                let now_s = Clock::default().now_ms() / 1000;
                let resp = http
                    .post(&url)
                    .header("content-type", "application/json; charset=utf-8")
                    .header("stripe-signature", signature_header(&secret, now_s, &bodies[i]))
                    .body(bodies[i].clone())
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                assert!(status == 200 && v["outcome"] == expect, "event {i}: {status} {v}");
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    figures(all, started.elapsed())
}

/// The re-read alone, as the hub does it for one event (subscriptions, invoices with their
/// payments, refunds of each payment), `events` times over the customers with `concurrency`
/// callers: what a webhook costs before the database.
async fn reread(
    sb: &StripeStandin,
    customers: &[String],
    events: usize,
    concurrency: usize,
) -> Figures {
    let client = StripeClient::new(sb.base_url(), &sb.secret_key().to_string().into()).unwrap();
    let customers: Arc<Vec<String>> = Arc::new(customers.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, customers, next) = (client.clone(), customers.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return lat;
                }
                let c = &customers[i % customers.len()];
                let t = Instant::now();
                let subs = client.subscriptions_of(c).await.unwrap();
                let invoices = client.invoices_of(c).await.unwrap();
                assert!(!subs.is_empty() && !invoices.is_empty(), "customer {c}");
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    figures(all, started.elapsed())
}

fn figures(mut all: Vec<Duration>, elapsed: Duration) -> Figures {
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    Figures {
        per_s: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

struct Row {
    backend: &'static str,
    reread: Figures,
    first_reconcile_per_s: f64,
    applied: Figures,
    duplicates: Figures,
    reconcile_per_s: f64,
}

async fn reconcile(state: &AppState, customers: usize) -> f64 {
    let t = Instant::now();
    let r = stripe_door::reconcile_all(state).await.unwrap();
    let elapsed = t.elapsed();
    assert_eq!((r.customers, r.failed), (customers, 0), "{r:?}");
    r.customers as f64 / elapsed.as_secs_f64()
}

async fn run(backend: &'static str, db_url: &str, a: &Args) -> Row {
    let b = start(db_url).await;
    let state = b.started.state.clone();
    let accounts = setup(&state, &b.sb, a.customers).await;
    let templates = templates(&b.sb);
    assert_eq!(templates.len(), 2 * a.customers, "one invoice.paid and one subscription each");
    // Now, and only now, the stand-in would deliver: nothing it sends is measured, but a
    // webhook URL makes the setup realistic for anything that happens later.
    b.sb.set_webhook_url(format!("{}{WEBHOOK}", b.base));
    // The first reconciliation brings every subscription into the ledger (N changes).
    let first = reconcile(&state, a.customers).await;
    let secret = b.sb.webhook_secret().to_string();
    // Warm-up (connections, caches), not counted.
    let warm = Arc::new(bodies(&templates, 100.min(a.events), "warm"));
    let _ = load(&b.base, &secret, warm, a.concurrency, "applied").await;
    let measured = Arc::new(bodies(&templates, a.events, "run"));
    let applied = load(&b.base, &secret, measured.clone(), a.concurrency, "applied").await;
    let duplicates = load(&b.base, &secret, measured, a.concurrency, "duplicate").await;
    let customers: Vec<String> = templates
        .iter()
        .filter_map(|e| e["data"]["object"]["customer"].as_str().map(str::to_owned))
        .collect();
    let reread = reread(&b.sb, &customers, a.events, a.concurrency).await;
    let reconcile_per_s = reconcile(&state, a.customers).await;
    // The ledger agrees with the stand-in: every subscriber active, every event stored once.
    let active: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM subscriptions WHERE status = 'active'")
            .fetch_one(state.db.pool())
            .await
            .unwrap();
    assert_eq!(active as usize, accounts.len(), "every subscriber active in the ledger");
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM billing_events WHERE door = 'stripe' AND event_id LIKE 'evt_bench_%'",
    )
    .fetch_one(state.db.pool())
    .await
    .unwrap();
    assert_eq!(stored as usize, a.events + 100.min(a.events), "each event stored once");
    b.started.stop().await.unwrap();
    b.sb.shutdown().await;
    Row { backend, reread, first_reconcile_per_s: first, applied, duplicates, reconcile_per_s }
}

#[tokio::main]
async fn main() {
    let a = args();
    // Logs as in production (JSON, info), written nowhere: their cost is in the figures.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .json()
        .with_writer(std::io::sink)
        .try_init();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "billing webhooks: {} customers, {} events, {} concurrent; each event = verify + re-read of the customer from the Stripe stand-in + one ledger transaction",
        a.customers, a.events, a.concurrency
    );
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg = loadavg.split_whitespace().next().unwrap_or("?").to_string();
    println!(
        "machine: {cpus} CPUs, load average {loadavg} at start; hub, stand-in and load generator share them (one process)"
    );
    let mut rows = Vec::new();
    for backend in &a.backends {
        let data = tempfile::tempdir().unwrap();
        if *backend == "postgres" {
            match pg_database().await {
                Ok((url, name)) => {
                    rows.push(run("postgres", &url, &a).await);
                    drop_pg(&name).await;
                }
                Err(e) => println!("postgres: skipped, not reachable at TRADECAST_TEST_PG ({e})"),
            }
        } else {
            rows.push(run("sqlite", &Db::sqlite_url_in(data.path()), &a).await);
        }
    }
    println!(
        "{:<10} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>14} {:>14}",
        "backend",
        "applied/s",
        "p50 ms",
        "p99 ms",
        "dup/s",
        "p50 ms",
        "p99 ms",
        "re-read/s",
        "p50 ms",
        "p99 ms",
        "1st recon c/s",
        "reconcile c/s"
    );
    for r in &rows {
        println!(
            "{:<10} {:>10.0} {:>9.2} {:>9.2} {:>10.0} {:>9.2} {:>9.2} {:>10.0} {:>9.2} {:>9.2} {:>14.0} {:>14.0}",
            r.backend,
            r.applied.per_s,
            r.applied.p50_ms,
            r.applied.p99_ms,
            r.duplicates.per_s,
            r.duplicates.p50_ms,
            r.duplicates.p99_ms,
            r.reread.per_s,
            r.reread.p50_ms,
            r.reread.p99_ms,
            r.first_reconcile_per_s,
            r.reconcile_per_s
        );
    }
    for r in &rows {
        let b = r.backend;
        println!("RESULT billing_webhooks_{b} {:.0} per_s", r.applied.per_s);
        println!("RESULT billing_webhook_p50_{b} {:.2} ms", r.applied.p50_ms);
        println!("RESULT billing_webhook_p99_{b} {:.2} ms", r.applied.p99_ms);
        println!("RESULT billing_duplicates_{b} {:.0} per_s", r.duplicates.per_s);
        println!("RESULT billing_duplicate_p99_{b} {:.2} ms", r.duplicates.p99_ms);
        println!("RESULT billing_reread_{b} {:.0} per_s", r.reread.per_s);
        println!("RESULT billing_reconcile_{b} {:.0} per_s", r.reconcile_per_s);
    }
}
