//! The public track record under load: starts the real `tradecast-hub serve` as a child process
//! (SQLite in a temporary data dir, or PostgreSQL in a fresh database), sets up a provider
//! through the API, commits its signals chain of N trades (a signal and its close each, received
//! two hours ago so all of it is past the public delay) through the hub's own store calls, then
//! asks `/p/{provider}` from this process over loopback at a fixed rate (open loop: each
//! request's latency counts from when it was due, so a slow answer cannot hide the ones queued
//! behind it). Prints the first view after a cutoff (the record built and the page rendered),
//! then p50, p99 and max under the rate, for the page and for the JSON API (at most 64 requests
//! in flight: the JSON carries every trade, tens of MB at 100,000).
//!
//! `cargo bench -p tradecast-hub --bench public_page -- [--trades N] [--rate R] [--seconds S]
//! [--backend sqlite|postgres|both]`. PostgreSQL from `TRADECAST_TEST_PG`.

use std::time::{Duration, Instant};

use tradecast_hub::config::{Config, RedactedUrl};
use tradecast_hub::signals::IngestRules;
use tradecast_protocol::{
    Body, ChainHash, Close, EntryKind, HeaderFields, Identity, Record, Side, Signal, SignalId,
    StreamId, Timeframe,
};

#[allow(dead_code)]
mod common;
use common::{drop_pg, now_ms, pg_database, rss_kib, setup, start_hub};

struct Args {
    trades: usize,
    rate: u32,
    seconds: u64,
    backends: Vec<&'static str>,
}

fn args() -> Args {
    let mut a = Args { trades: 10_000, rate: 500, seconds: 10, backends: vec!["sqlite"] };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--trades" => a.trades = next.parse().expect("--trades N"),
            "--rate" => a.rate = next.parse().expect("--rate R"),
            "--seconds" => a.seconds = next.parse().expect("--seconds S"),
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

/// The provider's signals chain: `trades` signals, each closed an hour later at +2 R or −1 R.
fn chain(provider: &Identity, trades: usize, start_ms: i64) -> Vec<Record> {
    let mut prev = ChainHash::GENESIS;
    let mut seq = 0;
    let mut out = Vec::with_capacity(trades * 2);
    let mut sign = |body: Body, at: i64, out: &mut Vec<Record>| {
        seq += 1;
        let f = HeaderFields { stream: StreamId::SIGNALS, seq, prev_hash: prev, created_at_ms: at };
        let r = Record::sign(provider, f, &body);
        prev = r.header_hash();
        out.push(r);
    };
    for i in 0..trades {
        let at = start_ms + i as i64 * 1_000;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let signal = Signal {
            id: SignalId(id),
            provider: provider.device_id(),
            strategy_id: "fib-rsi".into(),
            strategy_version: 1,
            symbol: "EURUSD".into(),
            timeframe: Timeframe::H1,
            side: Side::Buy,
            entry_kind: EntryKind::Market,
            entry: "1.1000".parse().expect("price"),
            stop: "1.0950".parse().expect("price"),
            tp1: "1.1100".parse().expect("price"),
            tp2: None,
            bar_time_ms: at - 3_600_000,
            expires_at_ms: at + 600_000,
            leg: 1,
            indicators: vec![],
            rr: "2".parse().expect("rr"),
        };
        sign(Body::Signal(signal), at, &mut out);
        let price = if i % 3 == 0 { "1.0950" } else { "1.1100" };
        let close = Close {
            signal_id: SignalId(id),
            fraction: "1".parse().expect("fraction"),
            price: Some(price.parse().expect("price")),
            reason: "bench".into(),
            at_ms: at + 500,
        };
        sign(Body::Close(close), at + 500, &mut out);
    }
    out
}

struct Figures {
    achieved_rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: usize,
}

/// At most this many requests in flight (each reads its whole answer): a later one waits for a
/// place, its wait counted in its latency.
const IN_FLIGHT: usize = 64;

/// `rate` requests a second of `url` for `seconds`, open loop.
async fn load(url: &str, rate: u32, seconds: u64) -> Figures {
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(IN_FLIGHT).build().expect("client");
    let places = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let n = rate as u64 * seconds;
    let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let due = start + every.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let (http, url, places) = (http.clone(), url.to_owned(), places.clone());
        tasks.push(tokio::spawn(async move {
            let _place = places.acquire_owned().await;
            let ok = match http.get(&url).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (due.elapsed(), ok)
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        let (d, ok) = t.await.expect("request task");
        if !ok {
            errors += 1;
        }
        lat.push(d);
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Figures {
        achieved_rps: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: ms(pct(0.50)),
        p99_ms: ms(pct(0.99)),
        max_ms: ms(lat.last().copied().unwrap_or_default()),
        errors,
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "public track record: {} trades ({} records), {} requests/s for {} s; {cpus} CPUs, load average {} at start; hub and load generator share them",
        a.trades,
        a.trades * 2,
        a.rate,
        a.seconds,
        loadavg.split_whitespace().next().unwrap_or("?")
    );
    for backend in &a.backends {
        let data = tempfile::tempdir().expect("tempdir");
        let (url, pg) = if *backend == "postgres" {
            let (u, n) = pg_database().await;
            (Some(u), Some(n))
        } else {
            (None, None)
        };
        let hub = start_hub(data.path(), url.as_deref());
        let http = reqwest::Client::new();
        let kit = setup(&http, &hub.base).await;

        // The chain, committed through the hub's store as its QUIC session would, received
        // two hours ago (past the default one-hour delay).
        let config = Config {
            data_dir: Some(data.path().to_owned()),
            database_url: url.clone().map(RedactedUrl::new),
            ..Config::default()
        };
        let db = tradecast_hub::open_db(&config).await.expect("the hub's database");
        let secrets = tradecast_hub::load_secrets(&config, Vec::new()).expect("the hub's secrets");
        let hub_id = tradecast_hub::hub_identity(&secrets);
        let received = now_ms() - 2 * 3_600_000;
        let records = chain(&kit.provider, a.trades, received - a.trades as i64 * 1_000 - 1_000);
        let t = Instant::now();
        let rules = IngestRules { max_age_ms: i64::MAX / 4 };
        for part in records.chunks(500) {
            let batch: Vec<(Record, i64)> = part.iter().map(|r| (r.clone(), received)).collect();
            tradecast_hub::quic::store::commit_batch(&db, &hub_id, rules, &batch)
                .await
                .expect("commit");
        }
        println!(
            "{backend}: {} records committed in {:.1} s",
            records.len(),
            t.elapsed().as_secs_f64()
        );

        let page = format!("{}/p/{}", hub.base, kit.provider_user);
        let json = format!("{}/public/v1/providers/{}", hub.base, kit.provider_user);
        let t = Instant::now();
        let first = http.get(&page).send().await.expect("page");
        assert!(first.status().is_success(), "{}", first.status());
        let body = first.text().await.expect("page body");
        let first_ms = t.elapsed().as_secs_f64() * 1000.0;
        assert!(body.contains(&format!("{}", a.trades)), "the page shows the trades");
        let t = Instant::now();
        let json_bytes = http.get(&json).send().await.expect("json").bytes().await.map(|b| b.len());
        let json_first_ms = t.elapsed().as_secs_f64() * 1000.0;
        println!(
            "{backend}: the page is {} KiB, the JSON {} KiB",
            body.len() / 1024,
            json_bytes.unwrap_or(0) / 1024
        );
        let (rss_before, _) = rss_kib(hub.child.id());
        let p = load(&page, a.rate, a.seconds).await;
        let j = load(&json, a.rate, a.seconds).await;
        let (rss, peak) = rss_kib(hub.child.id());
        println!(
            "{backend}: first view {first_ms:.0} ms (page), {json_first_ms:.0} ms (JSON, its record already built); RSS {:.1} MiB before the load, {:.1} MiB after, peak {:.1} MiB",
            rss_before as f64 / 1024.0,
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        for (name, f) in [("page", &p), ("json", &j)] {
            println!(
                "{backend} {name}: {:.0} requests/s achieved, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
                f.achieved_rps, f.p50_ms, f.p99_ms, f.max_ms, f.errors
            );
        }
        println!("RESULT public_page_first_view_{backend}_ms {first_ms:.0} ms");
        println!("RESULT public_page_p50_{backend}_ms {:.2} ms", p.p50_ms);
        println!("RESULT public_page_p99_{backend}_ms {:.2} ms", p.p99_ms);
        println!("RESULT public_json_p99_{backend}_ms {:.2} ms", j.p99_ms);
        println!("RESULT public_page_errors_{backend} {} requests", p.errors + j.errors);
        drop(hub);
        db.close().await;
        if let Some(n) = pg {
            drop_pg(&n).await;
        }
    }
}
