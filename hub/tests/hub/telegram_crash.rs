//! A broadcast to 300 Telegram users survives a `kill -9` of the hub process mid-way: after a
//! restart every user has it, at most the messages in flight at the kill twice (counted by the
//! outbox as redelivered), and never above Telegram's limits — checked by the strict stand-in.
//! A slow test (a hub process started twice, 300 messages at Telegram's pace).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tradecast_hub::config::{Config, Overrides};
use tradecast_hub::ids::Clock;
use tradecast_hub::telegram::broadcast::{self, NewBroadcast, Segment};
use tradecast_standins::telegram::{TelegramStandin, TelegramStandinConfig};

use crate::helpers::{Backend, TestDb, free_port};
use crate::on_both;

on_both!(slow_broadcast_survives_a_sigkill);

const BIN: &str = env!("CARGO_BIN_EXE_tradecast-hub");
const USERS: i64 = 300;
const BASE: i64 = 50_000;
const TEXT: &str = "Weekly outlook: EURUSD & gold";

fn spawn(config: &std::path::Path, env: &[(String, String)]) -> Child {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .args(["--config".as_ref(), config.as_os_str(), "serve".as_ref()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

async fn wait_up(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the hub did not come up at {url}");
}

fn got(sb: &TelegramStandin, chat: i64) -> usize {
    sb.messages_to(chat)
        .iter()
        .filter(|m| m.from_user.is_none() && m.text.as_deref() == Some(TEXT))
        .count()
}

async fn slow_broadcast_survives_a_sigkill(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    // 300 users who opened the bot; their "hi"s dropped (deleteWebhook drop_pending_updates)
    // so the hub's only traffic is the broadcast.
    for i in 0..USERS {
        sb.user(BASE + i, "Reader", None).unwrap();
        sb.user_says(BASE + i, "hi").unwrap();
    }
    let http = reqwest::Client::new();
    let api = format!("{}/bot{}", sb.base_url(), sb.token());
    let r = http
        .post(format!("{api}/deleteWebhook"))
        .json(&json!({ "drop_pending_updates": true }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let db = TestDb::new(b).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_file = dir.path().join("hub.toml");
    std::fs::write(
        &config_file,
        format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             data_dir = {data}\ndatabase_url = \"{url}\"\n\n\
             [auth]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n\n\
             [telegram]\nmode = \"webhook\"\napi_base_url = \"{api}\"\n\n\
             [outbox]\npoll_interval_ms = 50\nlease_ms = 2000\n",
            data = toml::Value::String(dir.path().display().to_string()),
            url = db.url,
            api = sb.base_url(),
        ),
    )
    .unwrap();
    let env = vec![
        ("TRADECAST_HUB_SECRET_TELEGRAM_BOT_TOKEN".to_string(), sb.token().to_string()),
        (
            "TRADECAST_HUB_SECRET_TELEGRAM_WEBHOOK_SECRET".to_string(),
            "crash-test-secret".to_string(),
        ),
    ];
    let health = format!("http://127.0.0.1:{port}/health");
    let mut hub = spawn(&config_file, &env);
    wait_up(&health).await;

    // The owner's broadcast, committed from this process on the hub's database (its runner
    // finds the rows at its next poll).
    let config = Config::load(Some(&config_file), env.clone(), &Overrides::default()).unwrap();
    let store = tradecast_hub::open_db(&config).await.unwrap();
    let secrets = tradecast_hub::load_secrets(&config, env.clone()).unwrap();
    let state =
        tradecast_hub::build_state(config, secrets, store.clone(), Clock::default()).await.unwrap();
    let mk = |email: String, role| {
        let state = state.clone();
        async move {
            let new = tradecast_hub::accounts::NewUser {
                email: &email,
                password: "reader password 123",
                role,
                display_name: "",
            };
            tradecast_hub::accounts::create_user(&state.db, &state.config.auth, 0, &new, "t", "t")
                .await
                .unwrap()
                .id
        }
    };
    let owner = mk("owner@example.com".into(), tradecast_hub::accounts::Role::Owner).await;
    for i in 0..USERS {
        let id = mk(format!("r{i}@example.com"), tradecast_hub::accounts::Role::Subscriber).await;
        sqlx::query(
            "INSERT INTO telegram_links (user_id, telegram_user_id, chat_id, username, first_name, linked_at_ms) \
             VALUES ($1, $2, $2, NULL, 'Reader', 0)",
        )
        .bind(&id)
        .bind(BASE + i)
        .execute(store.pool())
        .await
        .unwrap();
    }
    let b1 = NewBroadcast { segment: Segment::All, body: TEXT.into(), cta: None };
    let (id, n) = broadcast::send(&state, &owner, &b1, "test").await.unwrap();
    assert_eq!(n, usize::try_from(USERS).unwrap());

    // kill -9 once about a third has gone out.
    let delivered = |sb: &TelegramStandin| (0..USERS).filter(|i| got(sb, BASE + i) > 0).count();
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered(&sb) < 100 {
        assert!(Instant::now() < deadline, "the broadcast did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.kill().unwrap();
    hub.wait().unwrap();
    let at_kill = delivered(&sb);
    assert!(at_kill < usize::try_from(USERS).unwrap(), "killed after the end");

    // Started again: the rest goes out, the ones in flight at the kill once more at most.
    let mut hub = spawn(&config_file, &env);
    wait_up(&health).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered(&sb) < usize::try_from(USERS).unwrap() {
        assert!(Instant::now() < deadline, "{} of {USERS} after the restart", delivered(&sb));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = Command::new("kill").arg("-TERM").arg(hub.id().to_string()).status();
    hub.wait().unwrap();

    let twice: Vec<i64> = (0..USERS).filter(|i| got(&sb, BASE + i) > 1).map(|i| BASE + i).collect();
    assert!((0..USERS).all(|i| got(&sb, BASE + i) <= 2));
    let cause = format!("broadcast:{id}");
    let (redelivered, sent): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(redelivered), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN state = 'sent' THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM outbox WHERE cause = $1",
    )
    .bind(&cause)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(sent, USERS, "every message is recorded sent");
    assert!(
        i64::try_from(twice.len()).unwrap() <= redelivered,
        "{} users got it twice, {redelivered} redelivered: {twice:?}",
        twice.len()
    );
    // Never above a limit: 30 a second overall, one a second per chat.
    assert!(sb.max_rate_observed(None, Duration::from_secs(1)) <= 30);
    assert!((0..USERS).all(|i| sb.max_rate_observed(Some(BASE + i), Duration::from_secs(1)) <= 1));
    assert_eq!(sb.n_too_many(), 0);
    eprintln!(
        "broadcast to {USERS}: {at_kill} delivered before the kill, {} twice, {redelivered} redelivered",
        twice.len()
    );
    store.close().await;
    sb.shutdown().await;
}
