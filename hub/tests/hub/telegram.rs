//! The Telegram bot inside the hub, without the Bot API: the webhook's answers to every bad
//! delivery, linking through the account page and `/start <code>`, commands and buttons per
//! role, HTML escaping, and the alerts a new signal and a failed payment queue. What the bot
//! would send is read from the outbox (the stand-in tests cover sending it).

use reqwest::StatusCode;
use serde_json::{Value, json};
use tradecast_hub::outbox;
use tradecast_hub::telegram::{self, notify};

use crate::console::{csrf_of, page};
use crate::helpers::{Backend, Session, TestHub, free_port, post_signal, provider_kit, signal};
use crate::on_both;

on_both!(
    webhook_answers,
    linking_commands_and_roles,
    settings_buttons_and_presses_by_others,
    new_signal_alerts_follow_plan_and_levels,
    signal_channels_route_by_provider_and_symbol_with_delays,
    guides_and_scheduled_tips,
    renewal_reminders_once_per_period,
    hub_alarms_reach_linked_owners_when_raised_and_cleared
);

const HOOK: &str = "/api/v1/telegram/webhook";
const SECRET: &str = "hook-secret_123";
const BOT: &str = "tradecast_test_bot";

/// A hub with the bot on (webhook mode) whose Bot API is a closed port: what it would send
/// stays in the outbox for the test to read.
async fn bot_hub(b: Backend) -> TestHub {
    let port = free_port();
    let api = format!("http://127.0.0.1:{}", free_port());
    TestHub::start_with_secrets(
        b,
        |c| {
            c.listen = ([127, 0, 0, 1], port).into();
            c.public_url = Some(
                tradecast_hub::config::PublicUrl::parse(&format!("http://127.0.0.1:{port}"))
                    .unwrap(),
            );
            c.telegram.mode = tradecast_hub::config::TelegramMode::Webhook;
            c.telegram.api_base_url = api;
            c.telegram.bot_username = Some(BOT.into());
            c.rate_limits.login_per_ip.burst = 50;
        },
        |s| {
            s.integrations.telegram_bot_token = Some("123456:TEST-token".to_string().into());
            s.integrations.telegram_webhook_secret = Some(SECRET.to_string().into());
        },
    )
    .await
}

async fn deliver(hub: &TestHub, secret: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut r = hub.http.post(hub.url(HOOK)).header("content-type", "application/json").body(body);
    if let Some(s) = secret {
        r = r.header("X-Telegram-Bot-Api-Secret-Token", s);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

static NEXT_UPDATE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1000);

fn next_id() -> i64 {
    NEXT_UPDATE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn user(id: i64, name: &str) -> Value {
    json!({ "id": id, "is_bot": false, "first_name": name, "username": format!("u{id}") })
}

/// A text message from Telegram user `from` in chat `chat` (private when equal).
fn text_update(from: i64, chat: i64, text: &str) -> Value {
    let chat_obj = if chat == from {
        json!({ "id": chat, "type": "private", "first_name": "T" })
    } else {
        json!({ "id": chat, "type": "group", "title": "Traders" })
    };
    let mut msg = json!({
        "message_id": next_id(), "date": 1_800_000_000, "chat": chat_obj,
        "from": user(from, "T"), "text": text,
    });
    if text.starts_with('/') {
        let len = text.split_whitespace().next().unwrap().encode_utf16().count();
        msg["entities"] = json!([{ "type": "bot_command", "offset": 0, "length": len }]);
    }
    json!({ "update_id": next_id(), "message": msg })
}

async fn say(hub: &TestHub, from: i64, chat: i64, text: &str) -> Value {
    let (status, body) =
        deliver(hub, Some(SECRET), text_update(from, chat, text).to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Every queued Telegram call to `chat` (`None`: any), oldest first: (method, params).
async fn calls(hub: &TestHub, chat: Option<i64>) -> Vec<(String, Value)> {
    let mut all = outbox::list(&hub.db, None, 1000).await.unwrap();
    all.sort_by_key(|m| m.seq);
    all.into_iter()
        .filter(|m| m.channel == outbox::Channel::Telegram)
        .filter(|m| chat.is_none_or(|c| m.route.as_deref() == Some(c.to_string().as_str())))
        .map(|m| {
            let method = m.payload["method"].as_str().unwrap().to_string();
            (method, m.payload["params"].clone())
        })
        .collect()
}

/// The text of the last message queued to `chat`.
async fn last_text(hub: &TestHub, chat: i64) -> String {
    calls(hub, Some(chat))
        .await
        .into_iter()
        .rev()
        .find(|(m, _)| m == "sendMessage")
        .map(|(_, p)| p["text"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Signs `who` in on the account page; the cookie and a CSRF token.
async fn account_session(hub: &TestHub, who: &Session) -> (String, String) {
    let form = [("email", who.email.as_str()), ("password", who.password.as_str())];
    let r = page(hub, "POST", "/login", None, &[], Some(&form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let cookie = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let account = page(hub, "GET", "/account", Some(&cookie), &[], None).await;
    assert_eq!(account.status, StatusCode::OK);
    let csrf = csrf_of(&account);
    (cookie, csrf)
}

/// A one-time link from the account page; its code.
async fn link_code(hub: &TestHub, who: &Session) -> String {
    let (cookie, csrf) = account_session(hub, who).await;
    let account = page(hub, "GET", "/account", Some(&cookie), &[], None).await;
    assert!(account.text.contains("Link Telegram"), "{}", account.text);
    let form = [("csrf", csrf.as_str())];
    let r = page(hub, "POST", "/account/telegram-link", Some(&cookie), &[], Some(&form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let to = r.headers.get("location").unwrap().to_str().unwrap();
    let code = to.strip_prefix(&format!("https://t.me/{BOT}?start=")).expect(to);
    assert!(
        code.len() <= 64
            && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    code.to_string()
}

async fn webhook_answers(b: Backend) {
    let hub = bot_hub(b).await;
    let update = text_update(7, 7, "/help").to_string().into_bytes();
    // No secret, a wrong one, the right one with a different length: 401, nothing processed.
    for secret in [None, Some("wrong"), Some("hook-secret_1234")] {
        let (status, body) = deliver(&hub, secret, update.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["type"].as_str().unwrap().rsplit(':').next(), Some("unauthenticated"));
    }
    let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM telegram_updates")
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
    assert_eq!(seen, 0);
    assert!(calls(&hub, None).await.is_empty());
    // Malformed JSON: 400; JSON that is not an update: 422; over 256 KiB: 413.
    let (status, body) = deliver(&hub, Some(SECRET), b"{\"update_id\": 1,".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["type"].as_str().unwrap().ends_with("malformed-json"));
    let (status, _) = deliver(&hub, Some(SECRET), b"{\"message\": {}}".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let big = format!("{{\"update_id\": 5, \"pad\": \"{}\"}}", "x".repeat(1 << 20));
    // The hub answers 413 as soon as the length is known and closes the connection without
    // reading the body (the client may report a reset: ask again until it reads the answer).
    // A client of its own, so the closed connection is never reused by the next request.
    let mut status = None;
    for _ in 0..10 {
        let r = reqwest::Client::new()
            .post(hub.url(HOOK))
            .header("content-type", "application/json")
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .body(big.clone())
            .send()
            .await;
        if let Ok(r) = r {
            status = Some(r.status());
            break;
        }
    }
    assert_eq!(status, Some(StatusCode::PAYLOAD_TOO_LARGE));
    // Applied once; the same update again is a duplicate and queues nothing more.
    let (status, body) = deliver(&hub, Some(SECRET), update.clone()).await;
    assert_eq!((status, body["outcome"].as_str()), (StatusCode::OK, Some("applied")));
    let (status, body) = deliver(&hub, Some(SECRET), update.clone()).await;
    assert_eq!((status, body["outcome"].as_str()), (StatusCode::OK, Some("duplicate")));
    let sent = calls(&hub, Some(7)).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].1["text"].as_str().unwrap().contains("/start"));
    // An update kind the bot does not follow: recorded, answered 200.
    let poll = json!({ "update_id": next_id(), "poll": { "id": "1" } }).to_string();
    let (status, body) = deliver(&hub, Some(SECRET), poll.into_bytes()).await;
    assert_eq!((status, body["outcome"].as_str()), (StatusCode::OK, Some("ignored")));
    hub.stop().await;
}

async fn linking_commands_and_roles(b: Backend) {
    let hub = bot_hub(b).await;
    let owner = hub.owner().await;
    let alice = hub.user(&owner, "subscriber").await;
    // Alice's display name carries HTML's special characters.
    sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
        .bind("Alice <&> Co")
        .bind(&alice.user_id)
        .execute(hub.db.pool())
        .await
        .unwrap();

    // Unlinked: /start explains how to link, account commands are refused.
    say(&hub, 501, 501, "/start").await;
    assert!(last_text(&hub, 501).await.contains("Link Telegram"));
    say(&hub, 501, 501, "/status").await;
    assert!(last_text(&hub, 501).await.contains("Link your Tradecast account first"));

    // The account page's link, redeemed by /start <code>.
    let code = link_code(&hub, &alice).await;
    say(&hub, 501, 501, &format!("/start {code}")).await;
    let text = last_text(&hub, 501).await;
    assert!(text.contains("Linked to <b>Alice &lt;&amp;&gt; Co</b>"), "{text}");
    let menu = calls(&hub, Some(501)).await;
    let (_, set) = menu.iter().find(|(m, _)| m == "setMyCommands").expect("menu set");
    let names: Vec<&str> = set["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"status") && !names.contains(&"stats"), "{names:?}");
    assert_eq!(set["scope"]["type"], "chat");
    assert_eq!(set["scope"]["chat_id"], 501);
    // The code works once; another Telegram user cannot reuse it.
    say(&hub, 502, 502, &format!("/start {code}")).await;
    assert!(last_text(&hub, 502).await.contains("used already"));
    say(&hub, 503, 503, "/start not-a-code").await;
    assert!(last_text(&hub, 503).await.contains("not valid"));
    let linked = telegram::link::of_user(&hub.db, &alice.user_id).await.unwrap().unwrap();
    assert_eq!((linked.telegram_user_id, linked.chat_id), (501, 501));
    // The console's subscriber page shows the link.
    let cookie = crate::console::console_cookie(&hub, &owner.email, &owner.password).await;
    let path = format!("/subscribers/{}", alice.user_id);
    let r = crate::console::page(&hub, "GET", &path, Some(&cookie), &[], None).await;
    assert!(r.text.contains("<dd id=\"telegram\">@u501 · linked "), "{}", r.text);

    // Commands for a subscriber; owner-only ones refused; account matters never in a group.
    say(&hub, 501, 501, "/status").await;
    let status = last_text(&hub, 501).await;
    assert!(status.contains("Alice &lt;&amp;&gt; Co") && status.contains("Devices"), "{status}");
    say(&hub, 501, 501, "/plan").await;
    assert!(last_text(&hub, 501).await.contains("none"));
    say(&hub, 501, 501, "/pnl week").await;
    assert!(last_text(&hub, 501).await.contains("Tradecast app"));
    say(&hub, 501, 501, "/stats").await;
    assert!(last_text(&hub, 501).await.contains("owner"));
    say(&hub, 501, -900, "/status").await;
    let group = last_text(&hub, -900).await;
    assert!(group.contains("private chat") && !group.contains("Devices"), "{group}");
    say(&hub, 501, -900, "/status@other_bot").await;
    assert_eq!(calls(&hub, Some(-900)).await.len(), 1, "a command for another bot is ignored");

    // The owner, linked, gets the owner's commands.
    let code = link_code(&hub, &owner).await;
    say(&hub, 600, 600, &format!("/start {code}")).await;
    say(&hub, 600, 600, "/stats").await;
    let stats = last_text(&hub, 600).await;
    assert!(stats.contains("subscribers: 1") && stats.contains("Linked to Telegram: 2"), "{stats}");
    say(&hub, 600, 600, "/health").await;
    assert!(last_text(&hub, 600).await.contains("Database: ok"));

    // The account page shows the link and ends it; the chat is told.
    let (cookie, csrf) = account_session(&hub, &alice).await;
    let account = page(&hub, "GET", "/account", Some(&cookie), &[], None).await;
    assert!(account.text.contains("@u501"), "{}", account.text);
    let form = [("csrf", csrf.as_str())];
    let r = page(&hub, "POST", "/account/telegram-unlink", Some(&cookie), &[], Some(&form)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("Telegram unlinked"));
    assert!(last_text(&hub, 501).await.contains("Unlinked"));
    assert!(telegram::link::of_user(&hub.db, &alice.user_id).await.unwrap().is_none());
    say(&hub, 501, 501, "/status").await;
    assert!(last_text(&hub, 501).await.contains("Link your Tradecast account first"));
    // Every queued message parses as Telegram's HTML would: no raw `<`/`&` from a value.
    for (method, p) in calls(&hub, None).await {
        if let Some(t) = p["text"].as_str()
            && method == "sendMessage"
        {
            assert!(!t.contains("<&>"), "unescaped: {t}");
        }
    }
    hub.stop().await;
}

fn press(from: i64, chat: i64, message_id: i64, data: &str) -> Value {
    json!({
        "update_id": next_id(),
        "callback_query": {
            "id": format!("cb{}", next_id()), "from": user(from, "P"), "chat_instance": "ci",
            "data": data,
            "message": {
                "message_id": message_id, "date": 1_800_000_000,
                "chat": { "id": chat, "type": "private", "first_name": "T" }, "text": "Notifications",
            },
        }
    })
}

async fn settings_buttons_and_presses_by_others(b: Backend) {
    let hub = bot_hub(b).await;
    let owner = hub.owner().await;
    let bob = hub.user(&owner, "subscriber").await;
    let code = link_code(&hub, &bob).await;
    say(&hub, 701, 701, &format!("/start {code}")).await;
    say(&hub, 701, 701, "/settings").await;
    let (_, settings) =
        calls(&hub, Some(701)).await.into_iter().rev().find(|(m, _)| m == "sendMessage").unwrap();
    let rows = settings["reply_markup"]["inline_keyboard"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        5,
        "a subscriber sees signals, their trades, node health, billing and news, not the owner's alarms"
    );
    for b in rows.iter().flat_map(|r| r.as_array().unwrap()) {
        assert!(b["callback_data"].as_str().unwrap().len() <= 64);
    }
    assert!(rows[0][0]["text"].as_str().unwrap().starts_with("✓ "));

    // Bob turns new-signal alerts off: stored, the press answered, the message redrawn.
    let (status, _) =
        deliver(&hub, Some(SECRET), press(701, 701, 44, "n:signal:off").to_string().into_bytes())
            .await;
    assert_eq!(status, StatusCode::OK);
    let levels = notify::levels(&hub.db, &bob.user_id).await.unwrap();
    assert!(levels.contains(&(notify::Event::Signal, notify::Level::Off)));
    let all = calls(&hub, None).await;
    let answer = all.iter().rev().find(|(m, _)| m == "answerCallbackQuery").unwrap();
    assert!(answer.1["text"].as_str().unwrap().contains("off"));
    let edit = all.iter().rev().find(|(m, _)| m == "editMessageText").unwrap();
    assert_eq!(edit.1["message_id"], 44);
    assert!(edit.1["text"].as_str().unwrap().contains("New signals: off"));
    // The account's own events have levels too: fills, skips and closes silent.
    deliver(&hub, Some(SECRET), press(701, 701, 44, "n:trades:silent").to_string().into_bytes())
        .await;
    let levels = notify::levels(&hub.db, &bob.user_id).await.unwrap();
    assert!(levels.contains(&(notify::Event::Trades, notify::Level::Silent)), "{levels:?}");
    assert!(levels.contains(&(notify::Event::Health, notify::Level::On)), "{levels:?}");

    // An unlinked user pressing, and a linked one pressing another's buttons: refused.
    deliver(&hub, Some(SECRET), press(999, 701, 44, "n:signal:on").to_string().into_bytes()).await;
    let answer = calls(&hub, None)
        .await
        .into_iter()
        .rev()
        .find(|(m, _)| m == "answerCallbackQuery")
        .unwrap();
    assert_eq!(answer.1["show_alert"], true);
    assert!(answer.1["text"].as_str().unwrap().contains("Link"));
    let carol = hub.user(&owner, "subscriber").await;
    let code = link_code(&hub, &carol).await;
    say(&hub, 702, 702, &format!("/start {code}")).await;
    deliver(&hub, Some(SECRET), press(702, 701, 44, "n:signal:on").to_string().into_bytes()).await;
    let answer = calls(&hub, None)
        .await
        .into_iter()
        .rev()
        .find(|(m, _)| m == "answerCallbackQuery")
        .unwrap();
    assert!(answer.1["text"].as_str().unwrap().contains("not yours"));
    // A forged button: answered, nothing changed.
    deliver(&hub, Some(SECRET), press(701, 701, 44, "n:alarm:on").to_string().into_bytes()).await;
    deliver(&hub, Some(SECRET), press(701, 701, 44, "x").to_string().into_bytes()).await;
    let levels = notify::levels(&hub.db, &bob.user_id).await.unwrap();
    assert!(levels.contains(&(notify::Event::Signal, notify::Level::Off)));
    hub.stop().await;
}

async fn new_signal_alerts_follow_plan_and_levels(b: Backend) {
    let hub = bot_hub(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    // A plan with Telegram alerts, granted to dave; erin's plan lacks them.
    let with_tg = hub
        .post(
            "/api/v1/plans",
            Some(&kit.session.token),
            json!({ "name": "Gold + Telegram", "price_minor": 5900, "currency": "USD",
                    "period_days": 30, "features": ["signals", "telegram"] }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dave = hub.user(&owner, "subscriber").await;
    let erin = hub.user(&owner, "subscriber").await;
    for (who, plan) in [(&dave, &with_tg), (&erin, &kit.plan_id)] {
        hub.post(
            "/api/v1/entitlements",
            Some(&owner.token),
            json!({ "user_id": who.user_id, "plan_id": plan }),
        )
        .await
        .ok(201);
    }
    for (who, tg) in [(&dave, 801), (&erin, 802)] {
        let code = link_code(&hub, who).await;
        say(&hub, tg, tg, &format!("/start {code}")).await;
    }
    // The alerts start from the first pass: nothing before it is announced.
    notify::signal_alerts(hub.state()).await.unwrap();
    // The provider's name carries HTML's special characters.
    sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
        .bind("Fib & <Co>")
        .bind(&kit.session.user_id)
        .execute(hub.db.pool())
        .await
        .unwrap();
    let mut s = signal(&kit.identity, hub.clock.now_ms());
    s.symbol = "XAUUSD".into();
    let (_, r) = post_signal(&hub, &kit, &s, 1).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (read, queued) = notify::signal_alerts(hub.state()).await.unwrap();
    assert_eq!((read, queued), (1, 1), "dave only: erin's plan has no Telegram alerts");
    // The alert is the setup's picture with the text as its caption: the row names the
    // signal (the PNG is rendered when sent) and keeps the text as its fallback.
    let rows = outbox::list(&hub.db, None, 1000).await.unwrap();
    let alert = rows.iter().find(|m| m.route.as_deref() == Some("801")).unwrap();
    assert_eq!(alert.payload["method"], "sendPhoto");
    assert_eq!(alert.payload["setup_of"], s.id.to_hex());
    assert_eq!(alert.payload["fallback"]["method"], "sendMessage");
    let text = alert.payload["params"]["caption"].as_str().unwrap();
    assert!(
        text.contains("BUY XAUUSD</b> from Fib &amp; &lt;Co&gt;") && text.contains("1.09128"),
        "{text}"
    );
    assert_eq!(alert.payload["fallback"]["params"]["text"], text);
    assert_eq!(alert.payload["params"]["parse_mode"], "HTML");
    // A second pass finds nothing new; a repeated pass after a crash queues nothing twice.
    assert_eq!(notify::signal_alerts(hub.state()).await.unwrap(), (0, 0));

    // Dave silences signals: the next alert comes without sound; off: none.
    let mut tx = hub.db.begin_write().await.unwrap();
    notify::set_level_in(&mut tx, &dave.user_id, notify::Event::Signal, notify::Level::Silent, 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let s = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s, 2).await.1.ok(201);
    assert_eq!(notify::signal_alerts(hub.state()).await.unwrap(), (1, 1));
    let last = calls(&hub, Some(801)).await.pop().unwrap();
    assert_eq!(last.1["disable_notification"], true);
    let mut tx = hub.db.begin_write().await.unwrap();
    notify::set_level_in(&mut tx, &dave.user_id, notify::Event::Signal, notify::Level::Off, 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let s = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s, 3).await.1.ok(201);
    assert_eq!(notify::signal_alerts(hub.state()).await.unwrap(), (1, 0));
    hub.stop().await;
}

/// The outbox rows queued to `chat`: (not before, text).
async fn channel_posts(hub: &TestHub, chat: i64) -> Vec<(i64, String)> {
    let mut all = outbox::list(&hub.db, None, 1000).await.unwrap();
    all.sort_by_key(|m| m.seq);
    all.into_iter()
        .filter(|m| m.route.as_deref() == Some(chat.to_string().as_str()))
        .map(|m| (m.not_before_ms, m.payload["params"]["text"].as_str().unwrap().to_string()))
        .collect()
}

async fn signal_channels_route_by_provider_and_symbol_with_delays(b: Backend) {
    let hub = bot_hub(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let other = hub.user(&owner, "provider").await;
    let cookie = crate::console::console_cookie(&hub, &owner.email, &owner.password).await;
    let r = page(&hub, "GET", "/broadcasts", Some(&cookie), &[], None).await;
    assert!(r.text.contains("Signal channels") && r.text.contains("No channel."), "{}", r.text);
    let csrf = csrf_of(&r);
    let origin = format!("http://{}", hub.addr);
    let same = [("origin", origin.as_str())];
    let add = |title: &'static str,
               chat: &'static str,
               provider: String,
               symbols: &'static str,
               delay: &'static str| {
        let csrf = csrf.clone();
        let cookie = cookie.clone();
        let hub = &hub;
        async move {
            let form = [
                ("csrf", csrf.as_str()),
                ("title", title),
                ("chat_id", chat),
                ("provider", provider.as_str()),
                ("symbols", symbols),
                ("delay_min", delay),
            ];
            page(hub, "POST", "/broadcasts/channels", Some(&cookie), &same, Some(&form)).await
        }
    };
    // Refused with the reason, nothing stored: a private chat's id, a bad symbol.
    let r = add("Mine", "12345", String::new(), "", "0").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("negative number"), "{}", r.text);
    let r = add("Bad", "-1001", String::new(), "EUR/USD", "0").await;
    assert!(r.text.contains("is not a symbol"), "{}", r.text);
    // A gold channel (every provider), a free channel an hour late, one for the other provider.
    for (title, chat, provider, symbols, delay) in [
        ("Gold", "-1001", String::new(), "xauusd", "0"),
        ("Free", "-1002", String::new(), "", "60"),
        ("Other", "-1003", other.user_id.clone(), "", "0"),
    ] {
        let r = add(title, chat, provider, symbols, delay).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    }
    let r = page(&hub, "GET", "/broadcasts?channel=added", Some(&cookie), &[], None).await;
    assert!(r.text.contains("Channel added"), "{}", r.text);
    assert!(r.text.contains("<code>-1002</code>") && r.text.contains("1 h"), "{}", r.text);
    let audit = hub.get("/api/v1/audit?action=telegram.channel.create", Some(&owner.token)).await;
    assert_eq!(audit.ok(200).as_array().map(Vec::len), Some(3));

    notify::signal_alerts(hub.state()).await.unwrap();
    let mut gold = signal(&kit.identity, hub.clock.now_ms());
    gold.symbol = "XAUUSD".into();
    post_signal(&hub, &kit, &gold, 1).await.1.ok(201);
    let received = hub.clock.now_ms();
    assert_eq!(notify::signal_alerts(hub.state()).await.unwrap(), (1, 2), "gold and free");
    let g = channel_posts(&hub, -1001).await;
    assert_eq!(g.len(), 1);
    assert!(g[0].0 <= hub.clock.now_ms(), "the gold channel at once");
    assert!(g[0].1.contains("BUY XAUUSD") && !g[0].1.contains("Posted"), "{}", g[0].1);
    let record = format!("/p/{}\">Track record", kit.session.user_id);
    assert!(g[0].1.contains(&record), "{}", g[0].1);
    let f = channel_posts(&hub, -1002).await;
    assert_eq!(f.len(), 1);
    assert!(f[0].0 >= received + 3_600_000 - 5_000, "an hour late: {} vs {received}", f[0].0);
    assert!(f[0].1.contains("Posted 1 h after subscribers received it"), "{}", f[0].1);
    assert!(channel_posts(&hub, -1003).await.is_empty(), "another provider's channel");

    // EURUSD: the free channel only; a repeated pass queues nothing twice.
    post_signal(&hub, &kit, &signal(&kit.identity, hub.clock.now_ms()), 2).await.1.ok(201);
    assert_eq!(notify::signal_alerts(hub.state()).await.unwrap(), (1, 1));
    assert_eq!(notify::signal_alerts(hub.state()).await.unwrap(), (0, 0));
    assert_eq!(channel_posts(&hub, -1001).await.len(), 1);
    assert_eq!(channel_posts(&hub, -1002).await.len(), 2);

    // Turned off, then deleted: no new post; audited.
    let free_id = tradecast_hub::telegram::channels::list(&hub.db)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.chat_id == -1002)
        .unwrap()
        .id;
    let form = [("csrf", csrf.as_str())];
    let off = format!("/broadcasts/channels/{free_id}/off");
    let r = page(&hub, "POST", &off, Some(&cookie), &same, Some(&[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF token: {}", r.text);
    let r = page(&hub, "POST", &off, Some(&cookie), &same, Some(&form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    post_signal(&hub, &kit, &signal(&kit.identity, hub.clock.now_ms()), 3).await.1.ok(201);
    assert_eq!(notify::signal_alerts(hub.state()).await.unwrap(), (1, 0));
    let del = format!("/broadcasts/channels/{free_id}/delete");
    let r = page(&hub, "POST", &del, Some(&cookie), &same, Some(&form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = page(&hub, "POST", &del, Some(&cookie), &same, Some(&form)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    for action in ["telegram.channel.disable", "telegram.channel.delete"] {
        let a = hub.get(&format!("/api/v1/audit?action={action}"), Some(&owner.token)).await;
        assert_eq!(a.ok(200).as_array().map(Vec::len), Some(1), "{action}");
    }
    assert_eq!(channel_posts(&hub, -1002).await.len(), 2, "queued posts stay");
    hub.stop().await;
}

async fn guides_and_scheduled_tips(b: Backend) {
    use tradecast_hub::telegram::guides;
    let hub = bot_hub(b).await;
    let owner = hub.owner().await;
    let cookie = crate::console::console_cookie(&hub, &owner.email, &owner.password).await;
    let r = page(&hub, "GET", "/broadcasts", Some(&cookie), &[], None).await;
    assert!(r.text.contains("No guide.") && r.text.contains("No tip."), "{}", r.text);
    let csrf = csrf_of(&r);
    let origin = format!("http://{}", hub.addr);
    let same = [("origin", origin.as_str())];
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let mut form: Vec<(&str, String)> = vec![("csrf", csrf.clone())];
        form.extend(fields);
        let cookie = cookie.clone();
        let hub = &hub;
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            page(hub, "POST", path, Some(&cookie), &same, Some(&pairs)).await
        }
    };
    // Guides: refused without a title; two added, listed by position.
    let r = post("/broadcasts/guides", vec![("title", " ".into()), ("body", "x".into())]).await;
    assert!(r.text.contains("title must be 1-60"), "{}", r.text);
    for (title, body, pos) in
        [("Risk <rules>", "Your node & its caps.", "2"), ("Connect MT5", "Install the EA.", "1")]
    {
        let fields = vec![("title", title.into()), ("body", body.into()), ("position", pos.into())];
        assert_eq!(post("/broadcasts/guides", fields).await.status, StatusCode::SEE_OTHER);
    }
    let all = guides::list(&hub.db).await.unwrap();
    assert_eq!(
        all.iter().map(|g| g.title.as_str()).collect::<Vec<_>>(),
        ["Connect MT5", "Risk <rules>"]
    );

    // A linked subscriber asks for /guides and presses one.
    let sub = hub.user(&owner, "subscriber").await;
    let code = link_code(&hub, &sub).await;
    say(&hub, 901, 901, &format!("/start {code}")).await;
    say(&hub, 901, 901, "/guides").await;
    let (_, menu) =
        calls(&hub, Some(901)).await.into_iter().rev().find(|(m, _)| m == "sendMessage").unwrap();
    let rows = menu["reply_markup"]["inline_keyboard"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][0]["text"], "Risk <rules>");
    let data = rows[1][0]["callback_data"].as_str().unwrap().to_string();
    assert!(data.starts_with("g:") && data.len() <= 64, "{data}");
    let (status, _) =
        deliver(&hub, Some(SECRET), press(901, 901, 5, &data).to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    let text = last_text(&hub, 901).await;
    assert!(
        text.contains("<b>Risk &lt;rules&gt;</b>") && text.contains("Your node &amp; its caps."),
        "{text}"
    );
    assert!(calls(&hub, None).await.iter().any(|(m, _)| m == "answerCallbackQuery"));
    // An unlinked user gets no guides.
    say(&hub, 902, 902, "/guides").await;
    assert!(last_text(&hub, 902).await.contains("Link your Tradecast account first"));

    // A tip every weekday at 08:30 New York time, to every linked account.
    let bad = vec![
        ("body", "Tip".into()),
        ("schedule", "hourly".into()),
        ("time_zone", "UTC".into()),
        ("segment", "all".into()),
    ];
    assert!(post("/broadcasts/tips", bad).await.text.contains("weekdays 08:30"));
    let bad = vec![
        ("body", "Tip".into()),
        ("schedule", "daily 09:00".into()),
        ("time_zone", "Mars/Base".into()),
        ("segment", "all".into()),
    ];
    assert!(post("/broadcasts/tips", bad).await.text.contains("is not a time zone"));
    let tip = vec![
        ("body", "Check your drawdown cap & lot size.".into()),
        ("schedule", "weekdays 08:30".into()),
        ("time_zone", "America/New_York".into()),
        ("segment", "all".into()),
    ];
    assert_eq!(post("/broadcasts/tips", tip).await.status, StatusCode::SEE_OTHER);
    let t = guides::tips(&hub.db).await.unwrap().remove(0);
    let now = hub.clock.now_ms();
    assert!(t.next_run_at_ms > now && t.next_run_at_ms <= now + 4 * 86_400_000, "{t:?}");
    // Not due yet: nothing. Due (the clock moved past it, a day missed too): sent once.
    assert_eq!(guides::send_due(hub.state()).await.unwrap(), (0, 0));
    let due = t.next_run_at_ms;
    hub.clock.advance_ms(due - now + 86_400_000 + 60_000);
    assert_eq!(guides::send_due(hub.state()).await.unwrap(), (1, 1), "the one linked account");
    let text = last_text(&hub, 901).await;
    assert_eq!(text, "Check your drawdown cap &amp; lot size.");
    assert_eq!(guides::send_due(hub.state()).await.unwrap(), (0, 0), "once per due time");
    let t2 = guides::tips(&hub.db).await.unwrap().remove(0);
    assert!(t2.next_run_at_ms > hub.clock.now_ms() && t2.sent == 1, "{t2:?}");
    // The next one: 08:30 on a weekday, New York's own clock (whatever its offset that day).
    let at = jiff::Timestamp::from_millisecond(t2.next_run_at_ms).unwrap();
    let local = jiff::tz::TimeZone::get("America/New_York").unwrap().to_datetime(at);
    assert_eq!((local.hour(), local.minute()), (8, 30), "{at}");
    assert!(!matches!(
        local.weekday(),
        jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
    ));

    // Deleted from the console (signed in again: a day went by), audited.
    let cookie = crate::console::console_cookie(&hub, &owner.email, &owner.password).await;
    let r = page(&hub, "GET", "/broadcasts", Some(&cookie), &[], None).await;
    assert!(r.text.contains("weekdays 08:30") && r.text.contains("America/New_York"));
    let csrf = csrf_of(&r);
    let del = format!("/broadcasts/tips/{}/delete", t.id);
    let r = page(&hub, "POST", &del, Some(&cookie), &same, Some(&[("csrf", csrf.as_str())])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert!(guides::tips(&hub.db).await.unwrap().is_empty());
    for action in ["telegram.guide.create", "telegram.tip.create", "telegram.tip.delete"] {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = $1")
            .bind(action)
            .fetch_one(hub.db.pool())
            .await
            .unwrap();
        assert!(n >= 1, "{action}");
    }
    hub.stop().await;
}

async fn renewal_reminders_once_per_period(b: Backend) {
    use tradecast_hub::billing::{ledger, reminders};
    let hub = bot_hub(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let day = 86_400_000;
    let now = hub.clock.now_ms();
    // dave renews in 2 days, erin's cancelled plan ends in 2 days, frank's in 10 (not yet).
    let mut people = Vec::new();
    for (tg, end, cancel) in [(811, 2 * day, false), (812, 2 * day, true), (813, 10 * day, false)] {
        let who = hub.user(&owner, "subscriber").await;
        let code = link_code(&hub, &who).await;
        say(&hub, tg, tg, &format!("/start {code}")).await;
        let observed = ledger::Observed {
            external_id: format!("sub_{tg}"),
            account_id: who.user_id.clone(),
            plan_id: kit.plan_id.clone(),
            status: ledger::ObservedStatus::Active,
            period_start_ms: now - 28 * day,
            period_end_ms: now + end,
            cancel_at_period_end: cancel,
            trial_end_ms: None,
            ended_at_ms: None,
            unpaid_since_ms: None,
            refunded: false,
            referral: None,
            created_ms: now - 28 * day,
        };
        ledger::apply(hub.state(), None, &who.user_id, ledger::Door::Stripe, &[observed], &[], "t")
            .await
            .unwrap();
        people.push((tg, who));
    }
    let before: Vec<usize> = {
        let mut v = Vec::new();
        for (tg, _) in &people {
            v.push(calls(&hub, Some(*tg)).await.len());
        }
        v
    };
    assert_eq!(reminders::remind(hub.state()).await.unwrap(), 2);
    let dave = last_text(&hub, 811).await;
    assert!(dave.contains("<b>Gold</b> renews") && dave.contains("49.00 USD"), "{dave}");
    assert!(dave.contains("/account"), "a link to manage it: {dave}");
    let erin = last_text(&hub, 812).await;
    assert!(
        erin.contains("<b>Gold</b> ends") && erin.contains("Renew from your account page"),
        "{erin}"
    );
    assert_eq!(calls(&hub, Some(813)).await.len(), before[2], "frank: not yet");
    // Once per period, however often the job runs.
    assert_eq!(reminders::remind(hub.state()).await.unwrap(), 0);
    // Billing news turned off: no reminder for the next period.
    let mut tx = hub.db.begin_write().await.unwrap();
    notify::set_level_in(
        &mut tx,
        &people[2].1.user_id,
        notify::Event::Billing,
        notify::Level::Off,
        0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    hub.clock.advance_ms(8 * day);
    assert_eq!(reminders::remind(hub.state()).await.unwrap(), 0, "frank turned billing news off");
    hub.stop().await;
}

async fn hub_alarms_reach_linked_owners_when_raised_and_cleared(b: Backend) {
    use tradecast_hub::telegram::alarms;
    let hub = bot_hub(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let sub = hub.user(&owner, "subscriber").await;
    for (who, tg) in [(&owner, 951), (&sub, 952)] {
        let code = link_code(&hub, who).await;
        say(&hub, tg, tg, &format!("/start {code}")).await;
    }
    assert_eq!(alarms::tell(hub.state()).await.unwrap(), (0, 0), "a healthy hub: nothing");
    let before = calls(&hub, Some(952)).await.len();
    let author = kit.identity.device_id();
    tradecast_hub::quic::store::quarantine(
        &hub.db,
        &author,
        tradecast_protocol::StreamId::SIGNALS,
        hub.clock.now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(alarms::tell(hub.state()).await.unwrap(), (1, 1), "the owner only");
    let text = last_text(&hub, 951).await;
    assert!(text.contains("Hub alarms") && text.contains("<b>1</b> streams quarantined"), "{text}");
    assert!(text.contains("/providers#quarantine"), "{text}");
    assert_eq!(calls(&hub, Some(952)).await.len(), before, "a subscriber gets no hub alarm");
    assert_eq!(alarms::tell(hub.state()).await.unwrap(), (0, 0), "told once");
    sqlx::query("DELETE FROM sync_quarantine").execute(hub.db.pool()).await.unwrap();
    assert_eq!(alarms::tell(hub.state()).await.unwrap(), (0, 1));
    assert!(last_text(&hub, 951).await.contains("cleared: quarantined"));
    hub.stop().await;
}
