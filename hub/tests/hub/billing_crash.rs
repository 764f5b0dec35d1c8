//! A hub killed with SIGKILL between storing a Stripe event and sending the Telegram message it
//! caused: the event's transaction (the ledger, the entitlements and the outbox row) is whole
//! after the restart, the message goes out once, and Stripe's event delivered again is a
//! duplicate. A slow test (a hub process started twice).
//!
//! The first hub process cannot reach Telegram (its Bot API address is a closed port), so the
//! message stays in the outbox after its first failed attempt; the second one can.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tradecast_hub::billing::ledger::{self, Status};
use tradecast_hub::billing::stripe::signature;
use tradecast_hub::config::{Config, Overrides};
use tradecast_hub::ids::Clock;
use tradecast_standins::stripe::{StripeStandin, StripeStandinConfig};
use tradecast_standins::telegram::{TelegramStandin, TelegramStandinConfig};

use crate::helpers::{Backend, TestDb, free_port};
use crate::on_both;

on_both!(slow_a_stripe_event_and_its_message_survive_a_sigkill);

const BIN: &str = env!("CARGO_BIN_EXE_tradecast-hub");
const ALICE_TG: i64 = 70_001;
const WEBHOOK: &str = "/api/v1/billing/stripe/webhook";

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

/// Kills the hub process when the test ends, a failing one too.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `check` came true within `limit`.
async fn wait_until(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !check().await {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

fn write_config(
    path: &std::path::Path,
    port: u16,
    dir: &std::path::Path,
    db: &str,
    tg: &str,
    stripe: &str,
) {
    std::fs::write(
        path,
        format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             data_dir = {data}\ndatabase_url = \"{db}\"\n\n\
             [auth]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n\n\
             [telegram]\nmode = \"webhook\"\napi_base_url = \"{tg}\"\n\n\
             [stripe]\napi_base_url = \"{stripe}\"\n\n\
             [outbox]\npoll_interval_ms = 50\nlease_ms = 2000\nbackoff_base_ms = 300\nbackoff_cap_ms = 600\nmax_attempts = 50\n",
            data = toml::Value::String(dir.display().to_string()),
        ),
    )
    .unwrap();
}

async fn slow_a_stripe_event_and_its_message_survive_a_sigkill(b: Backend) {
    let tg = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    tg.user(ALICE_TG, "Alice", Some("alice")).unwrap();
    // She opened the bot (Telegram lets a bot write to users who did); her "hi" dropped so the
    // hub's only traffic to her is the billing message.
    tg.user_says(ALICE_TG, "hi").unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/bot{}/deleteWebhook", tg.base_url(), tg.token()))
        .json(&serde_json::json!({ "drop_pending_updates": true }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let stripe = StripeStandin::start(StripeStandinConfig::default()).await.unwrap();
    let db = TestDb::new(b).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_file = dir.path().join("hub.toml");
    // Nothing listens there: Telegram is unreachable for the first process.
    let dead = format!("http://127.0.0.1:{}", free_port());
    write_config(&config_file, port, dir.path(), &db.url, &dead, stripe.base_url());
    let env = vec![
        ("TRADECAST_HUB_SECRET_TELEGRAM_BOT_TOKEN".to_string(), tg.token().to_string()),
        ("TRADECAST_HUB_SECRET_TELEGRAM_WEBHOOK_SECRET".to_string(), "crash-test-secret".into()),
        ("TRADECAST_HUB_SECRET_STRIPE_SECRET_KEY".to_string(), stripe.secret_key().to_string()),
        ("TRADECAST_HUB_SECRET_STRIPE_WEBHOOK_SECRET".to_string(), stripe.webhook_secret().into()),
    ];
    let base = format!("http://127.0.0.1:{port}");
    stripe.set_webhook_url(format!("{base}{WEBHOOK}"));
    let up = || async {
        let ok = wait_until(Duration::from_secs(60), async || {
            reqwest::get(format!("{base}/health")).await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ok, "the hub did not come up");
    };
    let hub = Killed(spawn(&config_file, &env));
    up().await;

    // The accounts, the plan, alice's Telegram link and her checkout, made from this process on
    // the hub's database and Stripe (the hub process applies what Stripe then sends it).
    let config = Config::load(Some(&config_file), env.clone(), &Overrides::default()).unwrap();
    let store = tradecast_hub::open_db(&config).await.unwrap();
    let secrets = tradecast_hub::load_secrets(&config, env.clone()).unwrap();
    let state =
        tradecast_hub::build_state(config, secrets, store.clone(), Clock::default()).await.unwrap();
    let mk = async |email: &str, role| {
        let new = tradecast_hub::accounts::NewUser {
            email,
            password: "a password 12345",
            role,
            display_name: "",
        };
        tradecast_hub::accounts::create_user(&state.db, &state.config.auth, 0, &new, "t", "t")
            .await
            .unwrap()
            .id
    };
    use tradecast_hub::accounts::Role;
    let provider = mk("provider@example.com", Role::Provider).await;
    let alice = mk("alice@example.com", Role::Subscriber).await;
    sqlx::query(
        "INSERT INTO telegram_links (user_id, telegram_user_id, chat_id, username, first_name, linked_at_ms) \
         VALUES ($1, $2, $2, 'alice', 'Alice', 0)",
    )
    .bind(&alice)
    .bind(ALICE_TG)
    .execute(store.pool())
    .await
    .unwrap();
    let new = tradecast_hub::plans::NewPlan {
        provider_user_id: None,
        name: "Gold".into(),
        price_minor: 4900,
        currency: "USD".into(),
        period_days: 30,
        ..Default::default()
    };
    let plan = tradecast_hub::plans::create(&state.db, 0, &provider, Role::Provider, &new, "t")
        .await
        .unwrap();
    let url =
        tradecast_hub::billing::stripe_door::checkout(&state, &alice, &plan.id).await.unwrap();
    stripe.complete_checkout(url.rsplit('/').next().unwrap(), "4242424242424242").unwrap();

    // The hub applied Stripe's events: alice is active, and her "active" message is in the
    // outbox, tried once against the unreachable Bot API. SIGKILL now.
    let message = async || -> Option<(String, String, i64)> {
        sqlx::query_as(
            "SELECT id, state, attempts FROM outbox WHERE cause LIKE 'subscription:%' \
             AND channel = 'telegram'",
        )
        .fetch_optional(store.pool())
        .await
        .unwrap()
    };
    let tried = wait_until(Duration::from_secs(30), async || {
        message().await.is_some_and(|(_, s, attempts)| s != "sent" && attempts >= 1)
    })
    .await;
    assert!(tried, "no failed first attempt: {:?}", message().await);
    let subs = ledger::subscriptions_of(&store, &alice).await.unwrap();
    assert_eq!(subs.iter().map(|s| s.status).collect::<Vec<_>>(), [Status::Active]);
    drop(hub);
    assert!(tg.messages_to(ALICE_TG).is_empty(), "nothing reached Telegram before the kill");

    // Started again, Telegram reachable: the message goes out once.
    write_config(&config_file, port, dir.path(), &db.url, tg.base_url(), stripe.base_url());
    let hub = Killed(spawn(&config_file, &env));
    up().await;
    let active = |m: &tradecast_standins::telegram::ChatMessage| {
        m.from_user.is_none()
            && m.text.as_deref().is_some_and(|t| t.contains("is active and renews"))
    };
    let sent =
        wait_until(Duration::from_secs(30), async || tg.messages_to(ALICE_TG).iter().any(active))
            .await;
    assert!(sent, "outbox: {:?}; Telegram: {:?}", message().await, tg.messages_to(ALICE_TG));
    // Stripe delivers one of its events again (a retry after the hub's answer was lost): a
    // duplicate, nothing applied twice.
    let event = stripe.events().into_iter().find(|e| e["type"] == "invoice.paid").unwrap();
    let body = serde_json::to_vec(&event).unwrap();
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let t = i64::try_from(t).unwrap();
    let r = reqwest::Client::new()
        .post(format!("{base}{WEBHOOK}"))
        .header(
            "stripe-signature",
            format!("t={t},v1={}", signature::sign(stripe.webhook_secret(), t, &body)),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["outcome"], "duplicate");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(tg.messages_to(ALICE_TG).iter().filter(|m| active(m)).count(), 1, "once");
    let (_, state_after, _) = message().await.unwrap();
    assert_eq!(state_after, "sent");
    // Every event Stripe made is stored once (those in flight at the kill were retried by
    // Stripe and applied after the restart).
    assert!(stripe.settle(Duration::from_secs(20)).await);
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM billing_events WHERE door = 'stripe'")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let made: Vec<String> =
        stripe.events().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert!(
        made.iter().all(|id| stored.iter().filter(|s| *s == id).count() == 1),
        "{made:?} {stored:?}"
    );
    let subs = ledger::subscriptions_of(&store, &alice).await.unwrap();
    assert_eq!(subs.len(), 1);
    drop(hub);
    store.close().await;
    stripe.shutdown().await;
    tg.shutdown().await;
}
