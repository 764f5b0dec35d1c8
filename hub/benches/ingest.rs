//! Signal ingest benchmark: starts the real `tradecast-hub serve` as a child process (SQLite in
//! a temporary data dir, and PostgreSQL in a fresh database), sets up a provider (device, plan,
//! API key) and a subscriber with 10 entitled devices, then posts pre-signed signal records
//! with HMAC-authenticated requests from this process over loopback. Prints requests/s, p50 and
//! p99 latency, and the hub's RSS (current and peak) for each backend.
//!
//! `cargo bench -p tradecast-hub --bench ingest -- [--requests N] [--concurrency C]
//! [--backend sqlite|postgres|both]`. PostgreSQL from `TRADECAST_TEST_PG`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tradecast_hub::signals::client;
use tradecast_protocol::{
    ChainHash, EntryKind, HeaderFields, Identity, Side, Signal, SignalId, StreamId, Timeframe,
};

#[allow(dead_code)]
mod common;
use common::{Hub, Kit, drop_pg, now_ms, pg_database, rss_kib, setup, start_hub};

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
