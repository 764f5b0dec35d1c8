//! The bot end to end against the strict Bot API stand-in (`tradecast-standins`): the hub sets
//! its webhook and menu at start, a user links from the account page and `/start <code>`, uses
//! commands and `/settings` buttons, Telegram's duplicate deliveries change nothing, a blocked
//! user is recorded, and polling mode (one poller across instances) gets the same answers.

use std::time::Duration;

use reqwest::StatusCode;
use tradecast_hub::config::TelegramMode;
use tradecast_hub::telegram::{self, notify};
use tradecast_standins::telegram::{TelegramStandin, TelegramStandinConfig};

use crate::console::{csrf_of, page};
use crate::helpers::{Backend, Session, TestHub, free_port, post_signal, provider_kit, signal};
use crate::on_both;

on_both!(
    webhook_bot_end_to_end,
    polling_bot_and_its_single_poller,
    stars_subscription_through_the_stand_in,
    broadcast_to_a_segment_each_once_within_the_limits,
    stars_reconciliation_recovers_a_lost_payment_and_an_outside_refund,
    a_new_signal_alert_is_a_photo_of_its_setup
);

const SECRET: &str = "tg-hook-secret";
const WAIT: Duration = Duration::from_secs(15);

pub(crate) async fn hub_with_bot(b: Backend, sb: &TelegramStandin, mode: TelegramMode) -> TestHub {
    hub_with_bot_and(b, sb, mode, |_| {}).await
}

async fn hub_with_bot_and(
    b: Backend,
    sb: &TelegramStandin,
    mode: TelegramMode,
    tweak: impl FnOnce(&mut tradecast_hub::config::Config),
) -> TestHub {
    let port = free_port();
    let (api, token) = (sb.base_url().to_string(), sb.token().to_string());
    TestHub::start_with_secrets(
        b,
        |c| {
            tweak(c);
            c.listen = ([127, 0, 0, 1], port).into();
            c.public_url = Some(
                tradecast_hub::config::PublicUrl::parse(&format!("http://127.0.0.1:{port}"))
                    .unwrap(),
            );
            c.telegram.mode = mode;
            c.telegram.api_base_url = api;
            c.rate_limits.login_per_ip.burst = 50;
            c.outbox.poll_interval_ms = 50;
        },
        |s| {
            s.integrations.telegram_bot_token = Some(token.into());
            s.integrations.telegram_webhook_secret = Some(SECRET.to_string().into());
        },
    )
    .await
}

/// The account page's Telegram link for `who`; its `start` code.
pub(crate) async fn link_code(hub: &TestHub, who: &Session, bot: &str) -> String {
    let form = [("email", who.email.as_str()), ("password", who.password.as_str())];
    let r = page(hub, "POST", "/login", None, &[], Some(&form)).await;
    let cookie = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    // The username is learnt from getMe at start: wait for it.
    for _ in 0..100 {
        if !hub.state().telegram.username().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let account = page(hub, "GET", "/account", Some(&cookie), &[], None).await;
    let csrf = csrf_of(&account);
    let form = [("csrf", csrf.as_str())];
    let r = page(hub, "POST", "/account/telegram-link", Some(&cookie), &[], Some(&form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let to = r.headers.get("location").unwrap().to_str().unwrap();
    to.strip_prefix(&format!("https://t.me/{bot}?start=")).expect(to).to_string()
}

pub(crate) async fn reply(
    sb: &TelegramStandin,
    chat: i64,
    needle: &str,
) -> tradecast_standins::telegram::ChatMessage {
    let n = needle.to_string();
    sb.wait_for_message(chat, move |m| m.text.as_deref().is_some_and(|t| t.contains(&n)), WAIT)
        .await
        .unwrap_or_else(|| {
            panic!("no message containing {needle:?} in {chat}: {:#?}", sb.messages_to(chat))
        })
}

async fn webhook_bot_end_to_end(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_bot(b, &sb, TelegramMode::Webhook).await;
    let owner = hub.owner().await;
    let alice = hub.user(&owner, "subscriber").await;
    sb.user(501, "Alice", Some("alice")).unwrap();

    // At start the hub set its webhook (so this update reaches it) and the default menu.
    sb.user_says(501, "/start").unwrap();
    reply(&sb, 501, "Welcome to Tradecast").await;
    let menu: Vec<String> = sb
        .commands("default|")
        .iter()
        .map(|c| c["command"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(menu, ["start", "help"]);

    // Linked from the account page; the chat's menu becomes a subscriber's.
    let code = link_code(&hub, &alice, sb.bot_username()).await;
    sb.user_says(501, &format!("/start {code}")).unwrap();
    reply(&sb, 501, "Linked to").await;
    for _ in 0..100 {
        if !sb.commands("chat:501|").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chat_menu: Vec<String> = sb
        .commands("chat:501|")
        .iter()
        .map(|c| c["command"].as_str().unwrap().to_string())
        .collect();
    assert!(chat_menu.contains(&"status".to_string()) && !chat_menu.contains(&"stats".to_string()));

    // Telegram delivering every update twice: answered once.
    sb.set_duplicate(true);
    sb.user_says(501, "/plan").unwrap();
    reply(&sb, 501, "Plan: none").await;
    assert!(sb.settle(WAIT).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let plans = sb
        .messages_to(501)
        .iter()
        .filter(|m| m.text.as_deref().unwrap_or("").starts_with("Plan: none"))
        .count();
    assert_eq!(plans, 1, "{:#?}", sb.messages_to(501));
    sb.set_duplicate(false);

    // /settings, then a press: answered, the message redrawn, the level stored.
    sb.user_says(501, "/settings").unwrap();
    let settings = reply(&sb, 501, "Notifications").await;
    sb.press(501, 501, settings.message_id, "n:signal:silent").unwrap();
    for _ in 0..200 {
        if !sb.answered_callbacks().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered = sb.answered_callbacks();
    assert_eq!(answered.len(), 1);
    assert!(answered[0].text.as_deref().unwrap().contains("silent"));
    let redrawn = sb
        .wait_for_message(501, |m| m.message_id == settings.message_id && !m.edits.is_empty(), WAIT)
        .await
        .expect("settings redrawn");
    assert!(redrawn.text.unwrap().contains("New signals: silent"));
    let levels = notify::levels(&hub.db, &alice.user_id).await.unwrap();
    assert!(levels.contains(&(notify::Event::Signal, notify::Level::Silent)));

    // Alice blocks the bot: the next message is refused (403), recorded, and not retried.
    sb.block(501).unwrap();
    let mut tx = hub.db.begin_write().await.unwrap();
    let told = notify::tell_in(
        &mut tx,
        &alice.user_id,
        notify::Event::Billing,
        "renewed".into(),
        "t1",
        "test",
        hub.clock.now_ms(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(told);
    tradecast_hub::outbox::wake(hub.state());
    // The deliverer marks the link blocked, then the outbox records the dead letter.
    let mut blocked = None;
    let mut dead = Vec::new();
    for _ in 0..200 {
        blocked =
            telegram::link::of_user(&hub.db, &alice.user_id).await.unwrap().unwrap().blocked_at_ms;
        dead = tradecast_hub::outbox::list(&hub.db, Some("dead"), 10).await.unwrap();
        if blocked.is_some() && !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(blocked.is_some(), "the 403 was recorded");
    assert_eq!(dead.len(), 1);
    assert!(dead[0].last_error.as_deref().unwrap().contains("403"));
    // Every message the hub sent passed the stand-in's HTML parser and limits.
    assert_eq!(sb.n_too_many(), 0);
    hub.stop().await;
    sb.shutdown().await;
}

async fn polling_bot_and_its_single_poller(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_bot(b, &sb, TelegramMode::Polling).await;
    sb.user(601, "Pat", None).unwrap();
    sb.user_says(601, "/help").unwrap();
    reply(&sb, 601, "Tradecast bot").await;
    sb.user_says(601, "hello").unwrap();
    reply(&sb, 601, "I answer commands").await;
    // One poller: this instance holds the lease, another is refused until it lapses.
    let state = hub.state();
    let mine: String = sqlx::query_scalar("SELECT owner FROM telegram_poller WHERE id = 1")
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
    assert!(telegram::poll_lease(state, &mine).await.unwrap(), "the holder renews");
    assert!(!telegram::poll_lease(state, "another-instance").await.unwrap());
    // Past the lease's minute (the hub's own poller, renewing only between long polls, may
    // race for it once more: then it lapses again).
    let mut taken = false;
    for _ in 0..3 {
        hub.clock.advance_ms(61_000);
        if telegram::poll_lease(state, "another-instance").await.unwrap() {
            taken = true;
            break;
        }
    }
    assert!(taken, "a lapsed lease is taken over");
    hub.stop().await;
    sb.shutdown().await;
}

/// The account page's Stars button for `plan`: the invoice link it redirects to.
async fn stars_link(hub: &TestHub, who: &Session, plan: &str) -> String {
    let form = [("email", who.email.as_str()), ("password", who.password.as_str())];
    let r = page(hub, "POST", "/login", None, &[], Some(&form)).await;
    let cookie = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let account = page(hub, "GET", "/account", Some(&cookie), &[], None).await;
    assert!(account.text.contains("Pay with Telegram Stars"), "{}", account.text);
    let csrf = csrf_of(&account);
    let form = [("csrf", csrf.as_str()), ("plan_id", plan)];
    let r = page(hub, "POST", "/account/stars", Some(&cookie), &[], Some(&form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    r.headers.get("location").unwrap().to_str().unwrap().to_string()
}

async fn stars_subscription_through_the_stand_in(b: Backend) {
    use tradecast_hub::billing::{ledger, stars_door};
    use tradecast_standins::telegram::PayOutcome;
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_bot(b, &sb, TelegramMode::Webhook).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let plan = |name: &str| {
        serde_json::json!({ "name": name, "price_minor": 250, "currency": "XTR", "period_days": 30,
                            "features": ["signals", "telegram"] })
    };
    let gold =
        hub.post("/api/v1/plans", Some(&provider.token), plan("Gold Stars")).await.ok(201)["id"]
            .as_str()
            .unwrap()
            .to_string();
    let old =
        hub.post("/api/v1/plans", Some(&provider.token), plan("Old Stars")).await.ok(201)["id"]
            .as_str()
            .unwrap()
            .to_string();
    let alice = hub.user(&owner, "subscriber").await;
    sb.user(901, "Alice", Some("alice")).unwrap();
    sb.user_says(901, "/start").unwrap();
    reply(&sb, 901, "Welcome").await;

    // A plan archived after its invoice was made: the pre-checkout is refused, nothing paid.
    let stale = stars_link(&hub, &alice, &old).await;
    hub.post(&format!("/api/v1/plans/{old}/archive"), Some(&provider.token), serde_json::json!({}))
        .await
        .ok(200);
    match sb.pay(901, &stale).await.unwrap() {
        PayOutcome::Declined(why) => assert!(why.contains("Not sold now"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The account page's button → Telegram's invoice → paid: one ledger subscription, one
    // invoice in XTR, the provider's signals entitled, the payer thanked.
    let link = stars_link(&hub, &alice, &gold).await;
    assert!(link.starts_with("https://t.me/$"), "{link}");
    let invoice = sb.invoices().into_iter().last().unwrap();
    assert_eq!((invoice.amount, invoice.subscription_period), (250, Some(2_592_000)));
    assert!(matches!(sb.pay(901, &link).await.unwrap(), PayOutcome::Paid(_)));
    reply(&sb, 901, "Payment received").await;
    let subs = ledger::subscriptions_of(&hub.db, &alice.user_id).await.unwrap();
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(
        (subs[0].door, subs[0].status),
        (ledger::Door::TelegramStars, ledger::Status::Active)
    );
    assert_eq!(subs[0].plan_id, gold);
    let invoices = ledger::invoices_of(&hub.db, &alice.user_id).await.unwrap();
    assert_eq!(invoices.len(), 1);
    assert_eq!((invoices[0].currency.as_str(), invoices[0].amount_paid_minor), ("XTR", 250));
    let now = hub.clock.now_ms();
    assert!(
        tradecast_hub::entitlements::is_entitled(&hub.db, &alice.user_id, &provider.user_id, now)
            .await
            .unwrap()
    );
    // Telegram redelivering the payment's update changes nothing.
    assert!(sb.settle(WAIT).await);
    assert_eq!(ledger::invoices_of(&hub.db, &alice.user_id).await.unwrap().len(), 1);

    // No renewal came: past the period (and the renewal slack) the hourly job ends it.
    assert_eq!(stars_door::expire(hub.state()).await.unwrap(), 0, "not yet");
    hub.clock.advance_ms(31 * 86_400_000);
    assert_eq!(stars_door::expire(hub.state()).await.unwrap(), 1);
    let s = ledger::subscriptions_of(&hub.db, &alice.user_id).await.unwrap().remove(0);
    assert_eq!(s.status, ledger::Status::Expired);
    let later = hub.clock.now_ms();
    assert!(
        !tradecast_hub::entitlements::is_entitled(
            &hub.db,
            &alice.user_id,
            &provider.user_id,
            later
        )
        .await
        .unwrap()
    );
    assert_eq!(stars_door::expire(hub.state()).await.unwrap(), 0, "once");

    // bob pays, then the owner refunds him: Telegram refunds the charge, the ledger says
    // refunded with the Stars given back, the entitlement ends now; a second refund changes
    // nothing.
    let owner = hub.login(&owner.email, &owner.password).await;
    let bob = hub.user(&owner, "subscriber").await;
    sb.user(902, "Bob", None).unwrap();
    sb.user_says(902, "/start").unwrap();
    let link = stars_link(&hub, &bob, &gold).await;
    assert!(matches!(sb.pay(902, &link).await.unwrap(), PayOutcome::Paid(_)));
    reply(&sb, 902, "Payment received").await;
    let s = ledger::subscriptions_of(&hub.db, &bob.user_id).await.unwrap().remove(0);
    for _ in 0..2 {
        let r = hub
            .post(
                &format!("/api/v1/billing/subscriptions/{}/refund", s.id),
                Some(&owner.token),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(r.ok(200)["status"], "refunded", "{}", r.body);
    }
    assert!(sb.payments().iter().any(|p| p.user_id == 902 && p.refunded), "{:?}", sb.payments());
    // ... and its renewals cancelled at Telegram (through the outbox), once.
    for _ in 0..200 {
        if sb.payments().iter().any(|p| p.user_id == 902 && p.subscription_canceled) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sb.payments().iter().any(|p| p.user_id == 902 && p.subscription_canceled));
    let cancels = sb.calls().iter().filter(|c| c.method == "editUserStarSubscription").count();
    assert_eq!(cancels, 1);
    let inv = ledger::invoices_of(&hub.db, &bob.user_id).await.unwrap().remove(0);
    assert_eq!((inv.amount_paid_minor, inv.amount_refunded_minor), (250, 250));
    let now = hub.clock.now_ms();
    assert!(
        !tradecast_hub::entitlements::is_entitled(
            &hub.db,
            &bob.user_id,
            &provider.user_id,
            now + 1
        )
        .await
        .unwrap()
    );
    hub.stop().await;
    sb.shutdown().await;
}

/// `n` subscriber accounts linked to Telegram users `base + i` who opened the bot (a fixture:
/// the links are written as `/start <code>` writes them).
async fn linked_crowd(hub: &TestHub, sb: &TelegramStandin, n: i64, base: i64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let tg = base + i;
        let new = tradecast_hub::accounts::NewUser {
            email: &format!("crowd{tg}@example.com"),
            password: "crowd password 123",
            role: tradecast_hub::accounts::Role::Subscriber,
            display_name: "",
        };
        let user = tradecast_hub::accounts::create_user(
            &hub.db,
            &hub.state().config.auth,
            hub.clock.now_ms(),
            &new,
            "test",
            "test",
        )
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO telegram_links (user_id, telegram_user_id, chat_id, username, first_name, linked_at_ms) \
             VALUES ($1, $2, $2, NULL, 'Crowd', 0)",
        )
        .bind(&user.id)
        .bind(tg)
        .execute(hub.db.pool())
        .await
        .unwrap();
        sb.user(tg, "Crowd", None).unwrap();
        ids.push(user.id);
    }
    ids
}

async fn broadcast_to_a_segment_each_once_within_the_limits(b: Backend) {
    use tradecast_hub::telegram::broadcast::{self, NewBroadcast, Segment};
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_bot(b, &sb, TelegramMode::Webhook).await;
    let owner = hub.owner().await;
    let n = 40;
    let ids = linked_crowd(&hub, &sb, n, 10_000).await;
    // Each opens the chat (the bot answers them: part of the traffic the limits cover).
    for i in 0..n {
        sb.user_says(10_000 + i, "/help").unwrap();
    }
    // One opted out of news, one blocked the bot.
    let mut tx = hub.db.begin_write().await.unwrap();
    notify::set_level_in(&mut tx, &ids[0], notify::Event::News, notify::Level::Off, 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for i in 0..n {
        reply(&sb, 10_000 + i, "Tradecast bot").await;
    }
    sb.block(10_001).unwrap();

    let b1 = NewBroadcast {
        segment: Segment::All,
        body: "New guide: <how to> size & risk".into(),
        cta: Some(("Read it".into(), "https://example.com/guide?a=1".into())),
    };
    let (id, recipients) = broadcast::send(hub.state(), &owner.user_id, &b1, "test").await.unwrap();
    assert_eq!(recipients, usize::try_from(n).unwrap() - 1, "the opted-out account is left out");
    let sent_to = |chat: i64| {
        sb.messages_to(chat)
            .into_iter()
            .filter(|m| {
                m.from_user.is_none()
                    && m.text.as_deref() == Some("New guide: <how to> size & risk")
            })
            .count()
    };
    for _ in 0..400 {
        let dead = tradecast_hub::outbox::list(&hub.db, Some("dead"), 10).await.unwrap().len();
        if (2..n).all(|i| sent_to(10_000 + i) == 1) && dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..n {
        let want = usize::from(i >= 2);
        assert_eq!(sent_to(10_000 + i), want, "user {i}");
    }
    // Never above Telegram's limits, no 429 drawn.
    assert!(sb.max_rate_observed(None, Duration::from_secs(1)) <= 30);
    for i in 0..n {
        assert!(sb.max_rate_observed(Some(10_000 + i), Duration::from_secs(1)) <= 1);
    }
    let refused: Vec<(i64, usize)> = (0..n)
        .map(|i| (10_000 + i, sb.n_too_many_to(10_000 + i)))
        .filter(|(_, k)| *k > 0)
        .collect();
    assert_eq!(sb.n_too_many(), 0, "429s per chat: {refused:?}");

    // The button counts one click per recipient and redirects.
    let msg = sb.messages_to(10_005).into_iter().find(|m| m.reply_markup.is_some()).unwrap();
    let url =
        msg.reply_markup.unwrap()["inline_keyboard"][0][0]["url"].as_str().unwrap().to_string();
    let path = url.split_once("/b/").map(|(_, t)| format!("/b/{t}")).unwrap();
    for _ in 0..2 {
        let r = page(&hub, "GET", &path, None, &[], None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.headers.get("location").unwrap(), "https://example.com/guide?a=1");
    }
    assert_eq!(
        page(&hub, "GET", "/b/00000000000000000000000000000000", None, &[], None).await.status,
        StatusCode::NOT_FOUND
    );
    let list = broadcast::list(hub.state(), 10).await.unwrap();
    let s = list.iter().find(|s| s.id == id).unwrap();
    assert_eq!((s.recipients, s.delivered, s.failed, s.clicks), (n - 1, n - 2, 1, 1));

    // A plan's holders only.
    let provider = hub.user(&owner, "provider").await;
    let plan = hub.plan(&provider, "Gold", "USD").await;
    for id in &ids[2..5] {
        hub.post(
            "/api/v1/entitlements",
            Some(&owner.token),
            serde_json::json!({ "user_id": id, "plan_id": plan }),
        )
        .await
        .ok(201);
    }
    let b2 = NewBroadcast {
        segment: Segment::Plan(plan),
        body: "Gold members: webinar at 18:00".into(),
        cta: None,
    };
    let (_, recipients) = broadcast::send(hub.state(), &owner.user_id, &b2, "test").await.unwrap();
    assert_eq!(recipients, 3);

    // The console page shows both with their counts; bad input is refused with a reason.
    let form = [("email", owner.email.as_str()), ("password", owner.password.as_str())];
    let r = page(&hub, "POST", "/login", None, &[], Some(&form)).await;
    let cookie = r
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let console = page(&hub, "GET", "/broadcasts", Some(&cookie), &[], None).await;
    assert_eq!(console.status, StatusCode::OK);
    assert!(
        console.text.contains("Gold members: webinar") && console.text.contains("Read it"),
        "{}",
        console.text
    );
    let csrf = csrf_of(&console);
    let bad = [
        ("csrf", csrf.as_str()),
        ("segment", "all"),
        ("body", "x"),
        ("cta_label", "Go"),
        ("cta_url", "javascript:alert(1)"),
    ];
    let r = page(&hub, "POST", "/broadcasts", Some(&cookie), &[], Some(&bad)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("http(s) URL"), "{}", r.text);
    let ok = [("csrf", csrf.as_str()), ("segment", "trial"), ("body", "Trial tips")];
    let r = page(&hub, "POST", "/broadcasts", Some(&cookie), &[], Some(&ok)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers.get("location").unwrap(), "/broadcasts?sent=0");
    hub.stop().await;
    sb.shutdown().await;
}

/// Two hub instances on one PostgreSQL and one Redis send one backlog of replies between them
/// (each claims its share of the outbox) and together never exceed Telegram's overall rate: the
/// 30/s budget is one bucket in Redis, not 30/s per instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_telegram_rate_through_redis() {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let prefix = format!("tc-test-{}:", tradecast_hub::ids::random_hex(6));
    let redis = tradecast_hub::config::RedactedUrl::new(crate::helpers::redis_url());
    let (r1, p1) = (redis.clone(), prefix.clone());
    let hub = hub_with_bot_and(Backend::Postgres, &sb, TelegramMode::Webhook, move |c| {
        c.redis_url = Some(r1);
        c.redis_key_prefix = p1;
    })
    .await;
    let (api, public) = (sb.base_url().to_string(), hub.state().config.public_url.clone());
    let other = hub
        .start_instance(|c| {
            c.telegram.mode = TelegramMode::Webhook;
            c.telegram.api_base_url = api;
            c.public_url = public;
            c.outbox.poll_interval_ms = 50;
            c.redis_url = Some(redis);
            c.redis_key_prefix = prefix;
        })
        .await;
    // Which instances hold messages in flight, sampled while the backlog drains.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let pool = hub.db.pool().clone();
    let sampler = tokio::spawn(async move {
        let mut seen = std::collections::BTreeSet::new();
        while !*stop_rx.borrow() {
            let owners: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT lease_owner FROM outbox WHERE state = 'sending' AND lease_owner IS NOT NULL",
            )
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            seen.extend(owners);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = stop_rx.changed() => {}
            }
        }
        seen
    });
    // 90 people write to the bot at once: 90 replies to send.
    let n: i64 = 90;
    for i in 0..n {
        sb.user(20_000 + i, "T", None).unwrap();
        sb.user_says(20_000 + i, "hello").unwrap();
    }
    for i in 0..n {
        reply(&sb, 20_000 + i, "I answer commands").await;
    }
    stop_tx.send(true).unwrap();
    let owners = sampler.await.unwrap();
    assert_eq!(owners.len(), 2, "both instances sent their share: {owners:?}");
    for i in 0..n {
        let replies = sb.messages_to(20_000 + i).into_iter().filter(|m| m.from_user.is_none());
        assert_eq!(replies.count(), 1, "user {i}: one reply");
    }
    let max = sb.max_rate_observed(None, Duration::from_secs(1));
    assert!(max <= 30, "at most 30 in any second across both instances: {max}");
    assert_eq!(sb.n_too_many(), 0, "no 429");
    other.stop().await;
    hub.stop().await;
}

/// The nightly Stars reconciliation: a payment whose update never reached the hub is applied
/// from `getStarTransactions` (dated when paid, once however often it runs), and a refund made
/// outside the hub (another tool calling `refundStarPayment`) ends the subscription.
async fn stars_reconciliation_recovers_a_lost_payment_and_an_outside_refund(b: Backend) {
    use tradecast_hub::billing::{ledger, stars_door};
    use tradecast_standins::telegram::PayOutcome;
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_bot(b, &sb, TelegramMode::Webhook).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let gold = hub
        .post(
            "/api/v1/plans",
            Some(&provider.token),
            serde_json::json!({ "name": "Gold Stars", "price_minor": 250, "currency": "XTR",
                                "period_days": 30, "features": ["signals"] }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let alice = hub.user(&owner, "subscriber").await;
    sb.user(905, "Alice", Some("alice5")).unwrap();
    sb.user_says(905, "/start").unwrap();
    reply(&sb, 905, "Welcome").await;
    let empty = stars_door::reconcile(hub.state()).await.unwrap();
    assert_eq!(empty, stars_door::Reconciled::default(), "nothing to reconcile yet");

    // Paid, but the update is lost: the ledger knows nothing.
    sb.lose_payment_updates(true);
    let link = stars_link(&hub, &alice, &gold).await;
    let PayOutcome::Paid(payment) = sb.pay(905, &link).await.unwrap() else { panic!("not paid") };
    assert!(sb.settle(WAIT).await);
    assert!(ledger::subscriptions_of(&hub.db, &alice.user_id).await.unwrap().is_empty());

    // The reconciliation finds it: one active subscription, its invoice dated when paid, the
    // provider's signals entitled; a second run changes nothing.
    let r = stars_door::reconcile(hub.state()).await.unwrap();
    assert_eq!((r.seen, r.recovered, r.refunds, r.foreign), (1, 1, 0, 0), "{r:?}");
    let subs = ledger::subscriptions_of(&hub.db, &alice.user_id).await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].status, ledger::Status::Active);
    let invoices = ledger::invoices_of(&hub.db, &alice.user_id).await.unwrap();
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0].external_id, payment.charge_id);
    assert_eq!(invoices[0].amount_paid_minor, 250);
    let paid_ms = i64::try_from(payment.date).unwrap() * 1000;
    assert_eq!(invoices[0].paid_at_ms, Some(paid_ms), "dated when paid");
    let now = hub.clock.now_ms();
    assert!(
        tradecast_hub::entitlements::is_entitled(&hub.db, &alice.user_id, &provider.user_id, now)
            .await
            .unwrap()
    );
    let again = stars_door::reconcile(hub.state()).await.unwrap();
    assert_eq!((again.seen, again.recovered, again.refunds), (1, 0, 0));
    assert_eq!(ledger::invoices_of(&hub.db, &alice.user_id).await.unwrap().len(), 1);

    // Refunded with another tool: the next run ends the subscription as a refund.
    let url = format!("{}/bot{}/refundStarPayment", sb.base_url(), sb.token());
    let refunded: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(
            &serde_json::json!({ "user_id": 905, "telegram_payment_charge_id": payment.charge_id }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refunded["ok"], true, "{refunded}");
    let r = stars_door::reconcile(hub.state()).await.unwrap();
    assert_eq!((r.seen, r.recovered, r.refunds), (2, 0, 1), "{r:?}");
    let s = ledger::subscriptions_of(&hub.db, &alice.user_id).await.unwrap().remove(0);
    assert_eq!(s.status, ledger::Status::Refunded);
    let inv = ledger::invoices_of(&hub.db, &alice.user_id).await.unwrap().remove(0);
    assert_eq!(inv.amount_refunded_minor, 250);
    let later = hub.clock.now_ms() + 1;
    assert!(
        !tradecast_hub::entitlements::is_entitled(
            &hub.db,
            &alice.user_id,
            &provider.user_id,
            later
        )
        .await
        .unwrap()
    );
    let r = stars_door::reconcile(hub.state()).await.unwrap();
    assert_eq!((r.recovered, r.refunds), (0, 0), "nothing twice");
    let audit = hub.get("/api/v1/audit?action=billing.stars_reconcile", Some(&owner.token)).await;
    assert_eq!(audit.ok(200).as_array().map(Vec::len), Some(2));
    sb.shutdown().await;
    hub.stop().await;
}

/// The new-signal alert through the stand-in: a `sendPhoto` upload of the setup (a PNG of
/// 800 × 450, checked by the stand-in as Telegram checks it) with the alert's text as caption;
/// an alert whose picture cannot be rendered arrives as the text alone.
async fn a_new_signal_alert_is_a_photo_of_its_setup(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_bot(b, &sb, TelegramMode::Webhook).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let plan = hub
        .post(
            "/api/v1/plans",
            Some(&kit.session.token),
            serde_json::json!({ "name": "Gold + Telegram", "price_minor": 5900, "currency": "USD",
                    "period_days": 30, "features": ["signals", "telegram"] }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Two subscribers: the second alert reuses the first one's rendering.
    for (tg, name) in [(811, "Dave"), (812, "Fay")] {
        let who = hub.user(&owner, "subscriber").await;
        hub.post(
            "/api/v1/entitlements",
            Some(&owner.token),
            serde_json::json!({ "user_id": who.user_id, "plan_id": plan }),
        )
        .await
        .ok(201);
        sb.user(tg, name, None).unwrap();
        let code = link_code(&hub, &who, sb.bot_username()).await;
        sb.user_says(tg, &format!("/start {code}")).unwrap();
        reply(&sb, tg, "Linked to").await;
    }
    notify::signal_alerts(hub.state()).await.unwrap();

    let s = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s, 1).await.1.ok(201);
    assert_eq!(notify::signal_alerts(hub.state()).await.unwrap(), (1, 2));
    for chat in [811, 812] {
        let photo = sb
            .wait_for_message(chat, |m| m.photo.is_some(), WAIT)
            .await
            .unwrap_or_else(|| panic!("no photo: {:#?}", sb.messages_to(chat)));
        let size = &photo.photo.as_ref().unwrap()[0];
        assert_eq!((size["width"].as_u64(), size["height"].as_u64()), (Some(800), Some(450)));
        let caption = photo.caption.as_deref().unwrap();
        assert!(caption.contains("BUY EURUSD") && caption.contains("1.09128"), "{caption}");
        assert!(photo.entities.iter().any(|e| e["type"] == "bold"), "the caption's HTML parsed");
    }

    // A row whose signal the hub cannot draw: its text arrives instead of a picture.
    let text = notify::html(811, "📈 <b>fallback</b> text".into(), false);
    let payload = telegram::bot::photo_payload(&text, &"00".repeat(16));
    let mut tx = hub.db.begin_write().await.unwrap();
    let now = hub.clock.now_ms();
    notify::enqueue_payload(
        &mut tx,
        "sendPhoto",
        &payload,
        Some(811),
        "t:fallback",
        "test",
        now,
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    tradecast_hub::outbox::wake(hub.state());
    let m = reply(&sb, 811, "fallback text").await;
    assert!(m.photo.is_none());
    hub.stop().await;
}
