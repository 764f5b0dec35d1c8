//! Telegram broadcast benchmark: an in-process hub (SQLite in a temporary data dir, or
//! PostgreSQL in a fresh database) with its bot pointed at the in-process Bot API stand-in,
//! which enforces Telegram's limits (30 messages a second overall, one a second per chat) and
//! answers 429 over them. N linked accounts whose users opened the bot; the owner broadcasts
//! to all of them; the bench measures how long the broadcast takes to commit (the broadcast,
//! N recipients and N outbox rows in one transaction) and to be delivered, and counts the
//! retries and 429s.
//!
//! `cargo bench -p tradecast-hub --bench telegram -- [--users N] [--per-s R]
//! [--backend sqlite|postgres]`, or `BENCH_USERS`, `BENCH_PER_S`, `BENCH_BACKEND`. `--per-s`
//! sets both the hub's `outbox.telegram_per_s` and the stand-in's limit (Telegram's is 30; paid
//! broadcasts reach 1,000). Prints `RESULT <name> <value> <unit>` lines at the end.

use std::time::{Duration, Instant};

use serde_json::json;
use tradecast_hub::accounts::{self, NewUser, Role};
use tradecast_hub::config::{Config, PublicUrl, RedactedUrl, TelegramMode};
use tradecast_hub::ids::Clock;
use tradecast_hub::secrets::HubSecrets;
use tradecast_hub::telegram::broadcast::{self, NewBroadcast, Segment};
use tradecast_standins::telegram::{Limits, TelegramStandin, TelegramStandinConfig};

#[allow(dead_code)]
mod common;
use common::{drop_pg, pg_database};

const BASE: i64 = 1_000_000;
const TEXT: &str = "Weekly outlook: the week's levels & events";

struct Args {
    users: i64,
    per_s: u32,
    backend: String,
}

fn args() -> Args {
    let env = |k: &str| std::env::var(k).ok();
    let mut a = Args {
        users: env("BENCH_USERS").map_or(10_000, |v| v.parse().expect("BENCH_USERS")),
        per_s: env("BENCH_PER_S").map_or(30, |v| v.parse().expect("BENCH_PER_S")),
        backend: env("BENCH_BACKEND").unwrap_or_else(|| "sqlite".into()),
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--users" => a.users = next.parse().expect("--users N"),
            "--per-s" => a.per_s = next.parse().expect("--per-s R"),
            "--backend" => a.backend = next,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    assert!(a.users > 0 && a.per_s > 0, "N and R must be > 0");
    a
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let limits = Limits { overall_per_s: a.per_s, ..Limits::default() };
    let sb = TelegramStandin::start(TelegramStandinConfig { limits, ..Default::default() })
        .await
        .unwrap();
    // Users who opened the bot; their first messages dropped before the hub starts.
    for i in 0..a.users {
        sb.user(BASE + i, "Reader", None).unwrap();
        sb.user_says(BASE + i, "hi").unwrap();
    }
    reqwest::Client::new()
        .post(format!("{}/bot{}/deleteWebhook", sb.base_url(), sb.token()))
        .json(&json!({ "drop_pending_updates": true }))
        .send()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (db_url, pg) = match a.backend.as_str() {
        "postgres" => {
            let (url, name) = pg_database().await;
            (url, Some(name))
        }
        _ => (tradecast_hub::db::Db::sqlite_url_in(dir.path()), None),
    };
    let port = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
    let mut config = Config {
        listen: ([127, 0, 0, 1], port).into(),
        database_url: Some(RedactedUrl::new(&db_url)),
        ..Default::default()
    };
    config.public_url = Some(PublicUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap());
    config.telegram.mode = TelegramMode::Webhook;
    config.telegram.api_base_url = sb.base_url().to_string();
    config.outbox.telegram_per_s = a.per_s;
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    config.validate().expect("bench config is valid");
    let db = tradecast_hub::open_db(&config).await.unwrap();
    let mut secrets = HubSecrets::generate_ephemeral();
    secrets.integrations.telegram_bot_token = Some(sb.token().to_string().into());
    secrets.integrations.telegram_webhook_secret = Some("bench-secret".to_string().into());
    let started =
        tradecast_hub::start_with(config, secrets, db.clone(), Clock::default()).await.unwrap();
    let state = started.state.clone();

    let setup = Instant::now();
    let auth = &state.config.auth;
    let mk = |email: String, role| {
        let db = db.clone();
        async move {
            let new =
                NewUser { email: &email, password: "bench password 123", role, display_name: "" };
            accounts::create_user(&db, auth, 0, &new, "bench", "bench").await.unwrap().id
        }
    };
    let owner = mk("owner@bench.local".into(), Role::Owner).await;
    for i in 0..a.users {
        let id = mk(format!("r{i}@bench.local"), Role::Subscriber).await;
        sqlx::query(
            "INSERT INTO telegram_links (user_id, telegram_user_id, chat_id, username, first_name, linked_at_ms) \
             VALUES ($1, $2, $2, NULL, 'Reader', 0)",
        )
        .bind(&id)
        .bind(BASE + i)
        .execute(db.pool())
        .await
        .unwrap();
    }
    println!("setup: {} linked accounts in {:.1} s", a.users, setup.elapsed().as_secs_f64());

    let t0 = Instant::now();
    let b = NewBroadcast { segment: Segment::All, body: TEXT.into(), cta: None };
    let (id, n) = broadcast::send(&state, &owner, &b, "bench").await.unwrap();
    let commit = t0.elapsed();
    println!("broadcast {id}: {n} recipients committed in {} ms", commit.as_millis());
    let want = usize::try_from(a.users).unwrap();
    let mut last_print = Instant::now();
    loop {
        let delivered = sb.sends().len();
        if delivered >= want {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!("  {delivered} of {want} delivered after {:.0} s", t0.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = t0.elapsed().as_secs_f64();
    let (retries,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END), 0) AS BIGINT) \
         FROM outbox WHERE cause = $1",
    )
    .bind(format!("broadcast:{id}"))
    .fetch_one(db.pool())
    .await
    .unwrap();
    let n429 = sb.n_too_many();
    let peak = sb.max_rate_observed(None, Duration::from_secs(1));
    let rate = want as f64 / took;
    println!(
        "delivered {want} in {took:.1} s: {rate:.1} messages/s (limit {}/s, 10 % margin), peak {peak} in one second, {retries} retries, {n429} answered 429",
        a.per_s
    );
    started.stop().await.unwrap();
    sb.shutdown().await;
    if let Some(name) = pg {
        drop_pg(&name).await;
    }
    println!("RESULT telegram_broadcast_commit_{} {} ms", a.backend, commit.as_millis());
    println!("RESULT telegram_broadcast_messages_per_s_{} {rate:.1} msg/s", a.backend);
    println!("RESULT telegram_broadcast_duration_{} {took:.1} s", a.backend);
    println!("RESULT telegram_broadcast_retries_{} {retries} count", a.backend);
    println!("RESULT telegram_broadcast_429_{} {n429} count", a.backend);
}
