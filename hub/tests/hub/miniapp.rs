//! The Telegram Mini App against the Bot API stand-in: initData exchanged for a bearer session
//! (linked and unlinked users, every refusal), the views reachable by bearer only, actions
//! refused without the session's CSRF token, the session ending 24 h after `auth_date`, a Stars
//! upgrade from the Mini App paid in the stand-in and then shown on the plan view, and the
//! pages' CSP. initData is signed here the way Telegram signs it (HMAC under the bot token, an
//! Ed25519 signature under the test's own key, configured as `telegram.miniapp_public_key`).

use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use sha2::Sha256;
use tradecast_hub::config::TelegramMode;
use tradecast_standins::telegram::{PayOutcome, TelegramStandin, TelegramStandinConfig};

use crate::helpers::{Backend, Resp, TestHub, free_port};
use crate::on_both;
use crate::telegram_bot::{link_code, reply};

on_both!(
    miniapp_session_for_linked_and_unlinked_users,
    miniapp_session_refusals,
    miniapp_views_by_bearer_only_with_csrf_on_actions,
    miniapp_session_ends_24_hours_after_auth_date,
    miniapp_stars_upgrade_then_the_plan_view_shows_it,
    miniapp_is_off_without_telegram,
    miniapp_accepts_what_the_stand_in_hands_a_web_app,
    miniapp_analytics_shows_what_the_traders_node_publishes
);

const WAIT: Duration = Duration::from_secs(15);

/// The test's stand-in for Telegram's Mini App signing key.
fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// initData for Telegram user `user` at `auth_date_s`, signed as Telegram signs it for the bot
/// with `token` (and with `key`'s Ed25519 signature when given).
pub(crate) fn init_data(
    token: &str,
    user: i64,
    auth_date_s: i64,
    key: Option<&SigningKey>,
) -> String {
    let mut fields = vec![
        ("auth_date".to_string(), auth_date_s.to_string()),
        ("chat_type".to_string(), "private".to_string()),
        ("query_id".to_string(), "AAH-test-query".to_string()),
        (
            "user".to_string(),
            format!(
                r#"{{"id":{user},"first_name":"Alice","username":"alice","photo_url":"https:\/\/t.me\/i\/a.svg"}}"#
            ),
        ),
    ];
    let dcs = |fields: &[(String, String)], skip: &[&str]| {
        let mut f: Vec<_> = fields.iter().filter(|(k, _)| !skip.contains(&k.as_str())).collect();
        f.sort();
        f.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n")
    };
    if let Some(key) = key {
        let bot_id = token.split(':').next().unwrap();
        let msg = format!("{bot_id}:WebAppData\n{}", dcs(&fields, &[]));
        let sig = data_encoding::BASE64URL_NOPAD.encode(&key.sign(msg.as_bytes()).to_bytes());
        fields.push(("signature".into(), sig));
    }
    let secret = hmac(b"WebAppData", token.as_bytes());
    let hash = hex::encode(hmac(&secret, dcs(&fields, &[]).as_bytes()));
    fields.push(("hash".into(), hash));
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

pub(crate) async fn hub_with_miniapp(b: Backend, sb: &TelegramStandin) -> TestHub {
    let port = free_port();
    let (api, token) = (sb.base_url().to_string(), sb.token().to_string());
    let public = hex::encode(signing_key().verifying_key().to_bytes());
    TestHub::start_with_secrets(
        b,
        |c| {
            c.listen = ([127, 0, 0, 1], port).into();
            c.public_url = Some(
                tradecast_hub::config::PublicUrl::parse(&format!("http://127.0.0.1:{port}"))
                    .unwrap(),
            );
            c.telegram.mode = TelegramMode::Webhook;
            c.telegram.api_base_url = api;
            c.telegram.miniapp_public_key = Some(public);
            c.rate_limits.login_per_ip.burst = 50;
            c.outbox.poll_interval_ms = 50;
        },
        |s| {
            s.integrations.telegram_bot_token = Some(token.into());
            s.integrations.telegram_webhook_secret = Some("tg-hook-secret".to_string().into());
        },
    )
    .await
}

async fn exchange(hub: &TestHub, authorization: Option<&str>) -> Resp {
    let mut r = hub.http.post(hub.url("/api/v1/miniapp/session"));
    if let Some(a) = authorization {
        r = r.header("authorization", a);
    }
    Resp::from(r.send().await.unwrap()).await
}

pub(crate) async fn session(hub: &TestHub, sb: &TelegramStandin, user: i64) -> serde_json::Value {
    let now_s = hub.clock.now_ms() / 1000;
    let data = init_data(sb.token(), user, now_s, Some(&signing_key()));
    exchange(hub, Some(&format!("tma {data}"))).await.ok(201).clone()
}

pub(crate) async fn mini(
    hub: &TestHub,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    csrf: Option<&str>,
    form: Option<&str>,
) -> Resp {
    let mut r = hub.http.request(method.parse().unwrap(), hub.url(path));
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    if let Some(c) = csrf {
        r = r.header("x-csrf-token", c);
    }
    if let Some(f) = form {
        r = r.header("content-type", "application/x-www-form-urlencoded").body(f.to_string());
    }
    Resp::from(r.send().await.unwrap()).await
}

pub(crate) fn csrf_in(view: &Resp) -> String {
    let at = view.text.find("data-csrf=\"").expect("a view with its CSRF token") + 11;
    view.text[at..at + 64].to_string()
}

/// A provider's plan "Everything" (49.00 USD / 30 days) with `features`; its id.
pub(crate) async fn features_plan(
    hub: &TestHub,
    owner: &crate::helpers::Session,
    features: &[&str],
) -> String {
    let provider = hub.user(owner, "provider").await;
    let name = if features.contains(&"analytics") { "Everything" } else { "App only" };
    let body = serde_json::json!({ "name": name, "price_minor": 4900, "currency": "USD",
                                   "period_days": 30, "features": features });
    hub.post("/api/v1/plans", Some(&provider.token), body).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The owner grants `plan_id` to `user_id` by hand.
pub(crate) async fn grant(
    hub: &TestHub,
    owner: &crate::helpers::Session,
    user_id: &str,
    plan_id: &str,
) {
    let body = serde_json::json!({ "user_id": user_id, "plan_id": plan_id });
    hub.post("/api/v1/entitlements", Some(&owner.token), body).await.ok(201);
}

/// Links stand-in user `tg` to `who` through the account page and `/start <code>`.
pub(crate) async fn link(
    hub: &TestHub,
    sb: &TelegramStandin,
    who: &crate::helpers::Session,
    tg: i64,
) {
    sb.user(tg, "Alice", Some("alice")).unwrap();
    let code = link_code(hub, who, sb.bot_username()).await;
    sb.user_says(tg, &format!("/start {code}")).unwrap();
    reply(sb, tg, "Linked to").await;
}

async fn miniapp_session_for_linked_and_unlinked_users(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let alice = hub.user(&owner, "subscriber").await;

    // Unlinked: 201, linked false, the page that starts linking.
    let s = session(&hub, &sb, 601).await;
    assert_eq!(s["telegram_user_id"], 601);
    assert_eq!(s["linked"], false);
    let url = s["link_url"].as_str().unwrap();
    assert_eq!(url, format!("{}/account#telegram", hub.url("")), "{s}");
    let auth_s = hub.clock.now_ms() / 1000;
    assert_eq!(s["expires_at_ms"].as_i64().unwrap(), auth_s * 1000 + 86_400_000);
    assert_eq!(s["token"].as_str().unwrap().len(), 64);
    // Its views say how to link (no plan, no action).
    let v = mini(&hub, "GET", "/miniapp/app/plan", s["token"].as_str(), None, None).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    assert!(v.text.contains("Link your account") && v.text.contains(url), "{}", v.text);

    // Linked: 201, linked true, no link_url; the same initData again is another session.
    link(&hub, &sb, &alice, 601).await;
    let data = init_data(sb.token(), 601, hub.clock.now_ms() / 1000, Some(&signing_key()));
    let first = exchange(&hub, Some(&format!("tma {data}"))).await.ok(201).clone();
    let again = exchange(&hub, Some(&format!("tma {data}"))).await.ok(201).clone();
    assert_eq!(first["linked"], true);
    assert!(first.get("link_url").is_none(), "{first}");
    assert_ne!(first["token"], again["token"]);
    assert_eq!(first["expires_at_ms"], again["expires_at_ms"]);
    // Without a signature (older clients) the hash alone is enough.
    let unsigned = init_data(sb.token(), 601, hub.clock.now_ms() / 1000, None);
    exchange(&hub, Some(&format!("tma {unsigned}"))).await.ok(201);
    // Only hashes are stored.
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM miniapp_sessions")
        .fetch_all(hub.db.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 4);
    assert!(!stored.iter().any(|h| *h == first["token"].as_str().unwrap()));
}

async fn miniapp_session_refusals(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_miniapp(b, &sb).await;
    let now_s = hub.clock.now_ms() / 1000;
    let key = signing_key();
    let good = init_data(sb.token(), 602, now_s, Some(&key));

    exchange(&hub, None).await.problem(401, "missing-header");
    exchange(&hub, Some(&format!("Bearer {good}"))).await.problem(401, "missing-header");
    exchange(&hub, Some("tma")).await.problem(401, "missing-header");
    // (HTTP drops a value's trailing blanks: `tma ` arrives as `tma`, a header without data.)
    exchange(&hub, Some("tma ")).await.problem(401, "missing-header");
    exchange(&hub, Some("tma x")).await.problem(401, "invalid-init-data");
    let tampered = good.replace("602", "603");
    exchange(&hub, Some(&format!("tma {tampered}"))).await.problem(401, "invalid-init-data");
    let added = format!("{good}&is_admin=true");
    exchange(&hub, Some(&format!("tma {added}"))).await.problem(401, "invalid-init-data");
    let no_hash = good.split('&').filter(|p| !p.starts_with("hash=")).collect::<Vec<_>>();
    exchange(&hub, Some(&format!("tma {}", no_hash.join("&"))))
        .await
        .problem(401, "invalid-init-data");
    let stale = init_data(sb.token(), 602, now_s - 86_401, Some(&key));
    let r = exchange(&hub, Some(&format!("tma {stale}"))).await;
    r.problem(401, "invalid-init-data");
    assert!(r.body["detail"].as_str().unwrap().contains("older than 24 hours"), "{}", r.text);
    let other_bot = init_data("999:another-bots-token", 602, now_s, Some(&key));
    exchange(&hub, Some(&format!("tma {other_bot}"))).await.problem(401, "invalid-init-data");
    // Hash right for the bot, signature by another key: refused.
    let forged = init_data(sb.token(), 602, now_s, Some(&SigningKey::from_bytes(&[9u8; 32])));
    let r = exchange(&hub, Some(&format!("tma {forged}"))).await;
    r.problem(401, "invalid-init-data");
    assert!(r.body["detail"].as_str().unwrap().contains("signature"), "{}", r.text);
    // Nothing was opened by any of them.
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM miniapp_sessions")
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
}

async fn miniapp_views_by_bearer_only_with_csrf_on_actions(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let alice = hub.user(&owner, "subscriber").await;
    link(&hub, &sb, &alice, 604).await;
    let s = session(&hub, &sb, 604).await;
    let token = s["token"].as_str().unwrap();

    // No bearer, a console cookie instead of it, or an unknown token: refused.
    mini(&hub, "GET", "/miniapp/app/plan", None, None, None).await.problem(401, "unauthenticated");
    let form = [("email", alice.email.as_str()), ("password", alice.password.as_str())];
    let login = crate::console::page(&hub, "POST", "/login", None, &[], Some(&form)).await;
    let cookie = crate::console::set_cookie(&login).unwrap();
    let cookie = cookie.split(';').next().unwrap();
    let r = crate::console::page(&hub, "GET", "/miniapp/app/plan", Some(cookie), &[], None).await;
    r.problem(401, "unauthenticated");
    let unknown = "ab".repeat(32);
    mini(&hub, "GET", "/miniapp/app/plan", Some(&unknown), None, None)
        .await
        .problem(401, "invalid-token");
    mini(&hub, "GET", "/miniapp/app/nope", Some(token), None, None).await.problem(404, "not-found");

    // Without a plan: the plan view answers; approvals and analytics say what is missing (402,
    // the plans on offer that include it); the decision route refuses as a problem.
    let offered = features_plan(&hub, &owner, &["signals", "mini_app", "analytics"]).await;
    for (view, feature) in [("approvals", "mini_app"), ("analytics", "mini_app")] {
        let v = mini(&hub, "GET", &format!("/miniapp/app/{view}"), Some(token), None, None).await;
        assert_eq!(v.status, StatusCode::PAYMENT_REQUIRED, "{view}: {}", v.text);
        assert!(v.text.contains(&format!("data-plan-required=\"{feature}\"")), "{}", v.text);
        assert!(
            v.text.contains("Not in your plan") && v.text.contains("Everything (49.00 USD)"),
            "{}",
            v.text
        );
    }
    let csrf = csrf_in(&mini(&hub, "GET", "/miniapp/app/plan", Some(token), None, None).await);
    let body = format!("signal_id={}&device_id=x&decision=approved", "ab".repeat(16));
    let r = mini(&hub, "POST", "/miniapp/app/decide", Some(token), Some(&csrf), Some(&body)).await;
    r.problem(402, "plan-required");
    assert_eq!(r.body["plans"], serde_json::json!([offered.clone()]), "{}", r.body);
    // With a plan of the Mini App but not analytics: the analytics view names what is missing.
    let app_only = features_plan(&hub, &owner, &["signals", "mini_app"]).await;
    grant(&hub, &owner, &alice.user_id, &app_only).await;
    let v = mini(&hub, "GET", "/miniapp/app/analytics", Some(token), None, None).await;
    assert_eq!(v.status, StatusCode::PAYMENT_REQUIRED, "{}", v.text);
    assert!(v.text.contains("data-plan-required=\"analytics\""), "{}", v.text);
    grant(&hub, &owner, &alice.user_id, &offered).await;

    // Every view answers with the bearer.
    for view in ["plan", "approvals", "analytics"] {
        let v = mini(&hub, "GET", &format!("/miniapp/app/{view}"), Some(token), None, None).await;
        assert_eq!(v.status, StatusCode::OK, "{view}: {}", v.text);
        assert!(v.text.contains(&format!("data-view=\"{view}\"")), "{}", v.text);
    }
    let approvals = mini(&hub, "GET", "/miniapp/app/approvals", Some(token), None, None).await;
    assert!(approvals.text.contains("Nothing is waiting"), "{}", approvals.text);
    assert!(!approvals.text.contains("data-action=\"decide"), "{}", approvals.text);

    // An action without the CSRF token, or with another session's, is refused.
    let plan = hub.plan(&hub.user(&owner, "provider").await, "Gold", "USD").await;
    let body = format!("plan_id={plan}");
    let r = mini(&hub, "POST", "/miniapp/app/checkout", Some(token), None, Some(&body)).await;
    r.problem(403, "forbidden");
    let other = session(&hub, &sb, 604).await;
    let other_view =
        mini(&hub, "GET", "/miniapp/app/plan", other["token"].as_str(), None, None).await;
    let other_csrf = csrf_in(&other_view);
    let r =
        mini(&hub, "POST", "/miniapp/app/checkout", Some(token), Some(&other_csrf), Some(&body))
            .await;
    r.problem(403, "forbidden");
    // With its own token it reaches billing (Stripe is off on this hub: 409 not-configured).
    let view = mini(&hub, "GET", "/miniapp/app/plan", Some(token), None, None).await;
    let csrf = csrf_in(&view);
    let r =
        mini(&hub, "POST", "/miniapp/app/checkout", Some(token), Some(&csrf), Some(&body)).await;
    r.problem(409, "not-configured");
}

async fn miniapp_session_ends_24_hours_after_auth_date(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_miniapp(b, &sb).await;
    // initData signed an hour ago: its session ends 23 h from now.
    let auth_s = hub.clock.now_ms() / 1000 - 3_600;
    let data = init_data(sb.token(), 605, auth_s, Some(&signing_key()));
    let s = exchange(&hub, Some(&format!("tma {data}"))).await.ok(201).clone();
    assert_eq!(s["expires_at_ms"].as_i64().unwrap(), auth_s * 1000 + 86_400_000);
    let token = s["token"].as_str().unwrap();
    // (The test clock runs on from real time: a minute's margin either side.)
    hub.clock.advance_ms(23 * 3_600_000 - 60_000);
    let v = mini(&hub, "GET", "/miniapp/app/plan", Some(token), None, None).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    hub.clock.advance_ms(60_000);
    mini(&hub, "GET", "/miniapp/app/plan", Some(token), None, None)
        .await
        .problem(401, "invalid-token");
    // The same initData can no longer open one either.
    exchange(&hub, Some(&format!("tma {data}"))).await.problem(401, "invalid-init-data");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM miniapp_sessions")
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0, "the ended session's row is deleted when met");
}

async fn miniapp_stars_upgrade_then_the_plan_view_shows_it(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let body = serde_json::json!({ "name": "Gold Stars", "price_minor": 250, "currency": "XTR",
                                   "period_days": 30, "features": ["signals", "mini_app", "analytics"] });
    let gold = hub.post("/api/v1/plans", Some(&provider.token), body).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let alice = hub.user(&owner, "subscriber").await;
    link(&hub, &sb, &alice, 606).await;
    let s = session(&hub, &sb, 606).await;
    let token = s["token"].as_str().unwrap();

    let view = mini(&hub, "GET", "/miniapp/app/plan", Some(token), None, None).await;
    assert!(view.text.contains("You have no plan yet"), "{}", view.text);
    assert!(view.text.contains(&format!("data-action=\"stars\" data-plan=\"{gold}\"")));
    assert!(view.text.contains("data-main=\"Pay Gold Stars with Stars\""), "{}", view.text);
    let csrf = csrf_in(&view);
    let r = mini(
        &hub,
        "POST",
        "/miniapp/app/stars",
        Some(token),
        Some(&csrf),
        Some(&format!("plan_id={gold}")),
    )
    .await;
    let opened = r.ok(200);
    assert_eq!(opened["kind"], "invoice");
    let link = opened["url"].as_str().unwrap();
    assert!(link.starts_with("https://t.me/$"), "{link}");
    assert!(matches!(sb.pay(606, link).await.unwrap(), PayOutcome::Paid(_)));
    reply(&sb, 606, "Payment received").await;

    // The plan view shows the subscription, its state and renewal, and the invoice.
    let deadline = tokio::time::Instant::now() + WAIT;
    let view = loop {
        let v = mini(&hub, "GET", "/miniapp/app/plan", Some(token), None, None).await;
        if v.text.contains("Telegram Stars ·") || tokio::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(view.text.contains("<b>Gold Stars</b>"), "{}", view.text);
    assert!(view.text.contains("Telegram Stars · renews"), "{}", view.text);
    assert!(view.text.contains("tag ok"), "{}", view.text);
    assert!(view.text.contains("your plan"), "{}", view.text);
    assert!(view.text.contains("250"), "{}", view.text);
    assert!(!view.text.contains("You have no plan yet"), "{}", view.text);
    // And the analytics view links the provider's public record.
    let a = mini(&hub, "GET", "/miniapp/app/analytics", Some(token), None, None).await;
    assert!(a.text.contains(&format!("/p/{}", provider.user_id)), "{}", a.text);
}

async fn miniapp_is_off_without_telegram(b: Backend) {
    let hub = TestHub::start(b).await;
    let now_s = hub.clock.now_ms() / 1000;
    let data = init_data("123:abc", 607, now_s, None);
    exchange(&hub, Some(&format!("tma {data}"))).await.problem(404, "not-found");
    let r = hub.http.get(hub.url("/miniapp")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// The entry page and the views carry the Mini App's CSP (framed by Telegram Web only); the
/// console keeps its own.
async fn csp_of(hub: &TestHub, path: &str, bearer: Option<&str>) -> (StatusCode, String, bool) {
    let r = mini(hub, "GET", path, bearer, None, None).await;
    let csp = r.headers["content-security-policy"].to_str().unwrap().to_string();
    (r.status, csp, r.headers.contains_key("x-frame-options"))
}

on_both!(miniapp_pages_may_be_framed_by_telegram_web_only);

async fn miniapp_pages_may_be_framed_by_telegram_web_only(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_miniapp(b, &sb).await;
    let s = session(&hub, &sb, 608).await;
    let (status, csp, xfo) = csp_of(&hub, "/miniapp", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(csp.contains("frame-ancestors https://web.telegram.org;"), "{csp}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(!xfo);
    let (status, csp, xfo) = csp_of(&hub, "/miniapp/app/plan", s["token"].as_str()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(csp.contains("frame-ancestors https://web.telegram.org;") && !xfo, "{csp}");
    // The console is not framable at all.
    let (_, csp, xfo) = csp_of(&hub, "/login", None).await;
    assert!(csp.contains("frame-ancestors 'none'") && xfo, "{csp}");
    // The entry page loads Telegram's vendored script, htmx and the app's script, all local.
    let page = mini(&hub, "GET", "/miniapp", None, None, None).await;
    for asset in ["vendor/telegram-web-app.js", "vendor/htmx.min.js", "miniapp.js", "miniapp.css"] {
        assert!(page.text.contains(&format!("/assets/{asset}?v=")), "{asset}: {}", page.text);
    }
    let script = hub.http.get(hub.url("/assets/vendor/telegram-web-app.js")).send().await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.text().await.unwrap().contains("window.Telegram.WebApp"));
}

on_both!(miniapp_button_on_start_when_the_hub_is_served_over_https);

/// `/start` offers the Mini App (a `web_app` button, which the stand-in accepts for https only)
/// when `public_url` is https; over plain http it does not.
async fn miniapp_button_on_start_when_the_hub_is_served_over_https(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let (api, token) = (sb.base_url().to_string(), sb.token().to_string());
    // Polling: Telegram needs no way in to a hub whose https address is not real here.
    let hub = TestHub::start_with_secrets(
        b,
        |c| {
            c.public_url =
                Some(tradecast_hub::config::PublicUrl::parse("https://hub.example.test").unwrap());
            c.telegram.mode = TelegramMode::Polling;
            c.telegram.api_base_url = api;
            c.outbox.poll_interval_ms = 50;
        },
        |s| s.integrations.telegram_bot_token = Some(token.into()),
    )
    .await;
    sb.user(701, "Bob", Some("bob")).unwrap();
    sb.user_says(701, "/start").unwrap();
    let m = reply(&sb, 701, "Welcome to Tradecast").await;
    let markup = m.reply_markup.expect("a keyboard");
    let button = &markup["inline_keyboard"][0][0];
    assert_eq!(button["web_app"]["url"], "https://hub.example.test/miniapp", "{markup}");
    assert_eq!(button["text"], "Open Tradecast");
    hub.stop().await;

    // Over http: the welcome alone.
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_miniapp(b, &sb).await;
    sb.user(702, "Carol", None).unwrap();
    sb.user_says(702, "/start").unwrap();
    let m = reply(&sb, 702, "Welcome to Tradecast").await;
    assert!(m.reply_markup.is_none(), "{:?}", m.reply_markup);
    hub.stop().await;
}

/// The Telegram stand-in's own initData (its Ed25519 key configured as the hub's) opens a
/// session; the same string under Telegram's production key (the default) does not.
async fn miniapp_accepts_what_the_stand_in_hands_a_web_app(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_miniapp(b, &sb).await;
    sb.user(703, "Dana / D", Some("dana")).unwrap();
    let now_s = hub.clock.now_ms() / 1000;
    let data = sb.web_app_init_data(703, now_s, Some("approve_x")).unwrap();
    // Our key is not the stand-in's: its signature is refused.
    exchange(&hub, Some(&format!("tma {data}"))).await.problem(401, "invalid-init-data");
    hub.stop().await;
    let port = free_port();
    let hub = TestHub::start_with_secrets(
        b,
        |c| {
            c.listen = ([127, 0, 0, 1], port).into();
            c.telegram.mode = TelegramMode::Polling;
            c.telegram.api_base_url = sb.base_url().to_string();
            c.telegram.miniapp_public_key = Some(sb.web_app_public_key());
        },
        |s| s.integrations.telegram_bot_token = Some(sb.token().to_string().into()),
    )
    .await;
    let s = exchange(&hub, Some(&format!("tma {data}"))).await.ok(201).clone();
    assert_eq!((s["telegram_user_id"].as_i64(), s["linked"].as_bool()), (Some(703), Some(false)));
    hub.stop().await;
}

on_both!(miniapp_session_route_is_under_the_per_ip_limit);

/// The exchange is an ordinary `/api` route: the per-IP bucket applies (429 `rate-limited`).
async fn miniapp_session_route_is_under_the_per_ip_limit(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let (api, token) = (sb.base_url().to_string(), sb.token().to_string());
    let hub = TestHub::start_with_secrets(
        b,
        |c| {
            c.telegram.mode = TelegramMode::Polling;
            c.telegram.api_base_url = api;
            c.telegram.miniapp_public_key =
                Some(hex::encode(signing_key().verifying_key().to_bytes()));
            c.rate_limits.per_ip = tradecast_hub::config::BucketConfig { burst: 3, per_minute: 1 };
        },
        |s| s.integrations.telegram_bot_token = Some(token.into()),
    )
    .await;
    let data = init_data(sb.token(), 609, hub.clock.now_ms() / 1000, Some(&signing_key()));
    for _ in 0..3 {
        exchange(&hub, Some(&format!("tma {data}"))).await.ok(201);
    }
    let r = exchange(&hub, Some(&format!("tma {data}"))).await;
    r.problem(429, "rate-limited");
    assert!(r.headers.contains_key("retry-after"));
    hub.stop().await;
}

/// The trader's own figures in the Mini App: nothing published — the view says how to publish;
/// then their node publishes a deposit, equity points and a closed trade — the view shows the
/// same money section the public page computes, without the public delay.
async fn miniapp_analytics_shows_what_the_traders_node_publishes(b: Backend) {
    use tradecast_protocol::{BalanceKind, ChainHash};
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let alice = hub.user(&owner, "subscriber").await;
    link(&hub, &sb, &alice, 605).await;
    let everything = features_plan(&hub, &owner, &["signals", "mini_app", "analytics"]).await;
    grant(&hub, &owner, &alice.user_id, &everything).await;
    let (node, _) = hub.enrol(&alice, "alice-pc").await;
    let s = session(&hub, &sb, 605).await;
    let token = s["token"].as_str().unwrap();
    let view = mini(&hub, "GET", "/miniapp/app/analytics", Some(token), None, None).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    assert!(
        view.text.contains("id=\"own-none\"") && view.text.contains("Publishing"),
        "{}",
        view.text
    );

    let mut published = crate::track_money::Publisher {
        hub: &hub,
        identity: &node,
        seq: 0,
        prev: ChainHash::GENESIS,
        records: vec![],
    };
    published.balance(1, BalanceKind::Deposit, "1000").await;
    published.equity("1000", "1000").await;
    hub.clock.advance_ms(86_400_000);
    published.trade(9, "50", "-1").await;
    published.equity("1049", "1049").await;
    let expected =
        tradecast_protocol::track_money::money_figures(node.device_id(), &published.records)
            .unwrap();
    // A day later: the app opened again (a new session).
    let s = session(&hub, &sb, 605).await;
    let token = s["token"].as_str().unwrap();
    let view = mini(&hub, "GET", "/miniapp/app/analytics", Some(token), None, None).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    assert!(!view.text.contains("id=\"own-none\""), "{}", view.text);
    assert!(view.text.contains("Your node publishes"), "{}", view.text);
    for (label, value) in tradecast_protocol::track_money::headline(&expected) {
        let row = format!(
            "<th>{label}</th><td class=\"num\">{}</td>",
            maud::html! { (value) }.into_string()
        );
        assert!(view.text.contains(&row), "{row}: {}", view.text);
    }
    assert!(view.text.contains("class=\"equity\""), "the equity curve: {}", view.text);
    assert!(view.text.contains("<td>EURUSD</td>"), "by symbol: {}", view.text);
    // By UTC day and ISO week: the one trade (ticket 9, net 50 − 1 = 49) once.
    let days = view
        .text
        .split("id=\"pnl-days\"")
        .nth(1)
        .expect("by day")
        .split("</table>")
        .next()
        .unwrap();
    assert!(days.contains("<td class=\"num\">1</td><td class=\"num\">49</td>"), "{days}");
    let weeks = view
        .text
        .split("id=\"pnl-weeks\"")
        .nth(1)
        .expect("by week")
        .split("</table>")
        .next()
        .unwrap();
    assert!(weeks.contains("-W") && weeks.contains("<td class=\"num\">49</td>"), "{weeks}");

    // The downloads: a link Telegram fetches without the session (its own signature, 5 minutes).
    let csrf = csrf_in(&view);
    let export = |kind: &'static str| {
        let csrf = csrf.clone();
        let hub = &hub;
        async move {
            let r = mini(
                hub,
                "POST",
                "/miniapp/app/export",
                Some(token),
                Some(&csrf),
                Some(&format!("kind={kind}")),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.body["url"].as_str().unwrap().to_string()
        }
    };
    let csv_url = export("csv").await;
    let csv = hub.http.get(hub.url(&csv_url)).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.headers()["content-disposition"].to_str().unwrap().contains("tradecast-trades.csv")
    );
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "the header and the one trade: {text}");
    assert!(lines[0].starts_with("device,ticket,symbol,side,volume,open_time_utc"), "{text}");
    let row = format!("{},9,EURUSD,buy,0.1,", node.device_id().to_text());
    assert!(lines[1].starts_with(&row) && lines[1].ends_with(",50,-1,0,49"), "{text}");
    let png_url = export("png").await;
    let png = hub.http.get(hub.url(&png_url)).send().await.unwrap();
    assert_eq!(
        (png.status().as_u16(), png.headers()["content-type"].to_str().unwrap()),
        (200, "image/png")
    );
    assert_eq!(&png.bytes().await.unwrap()[..4], b"\x89PNG");
    // A changed account or signature: refused; the link expires.
    let forged = csv_url.replace(&format!("u={}", alice.user_id), "u=someone-else");
    let r = hub.http.get(hub.url(&forged)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let mut bad = csv_url.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == '0' { '1' } else { '0' });
    assert_eq!(hub.http.get(hub.url(&bad)).send().await.unwrap().status(), 401);
    hub.clock.advance_ms(5 * 60_000 + 1_000);
    assert_eq!(hub.http.get(hub.url(&csv_url)).send().await.unwrap().status(), 401, "expired");
    // Unknown kind: 422; without CSRF: 403.
    let r =
        mini(&hub, "POST", "/miniapp/app/export", Some(token), Some(&csrf), Some("kind=xls")).await;
    r.problem(422, "validation");
    let r = mini(&hub, "POST", "/miniapp/app/export", Some(token), None, Some("kind=csv")).await;
    r.problem(403, "forbidden");

    // "Share a redacted link": a new share link for Telegram's share sheet, which opens without
    // an account and names nobody; without the CSRF token, refused.
    let r = mini(&hub, "POST", "/miniapp/app/share", Some(token), Some(&csrf), Some("")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["kind"], "share");
    let url = r.body["url"].as_str().unwrap().to_owned();
    let path = url.find("/s/").map(|i| url[i..].to_owned()).expect("a share link");
    let shared = hub.get(&path, None).await;
    assert_eq!(shared.status, StatusCode::OK, "{}", shared.text);
    assert!(shared.text.contains("id=\"redacted\""), "{}", shared.text);
    assert!(!shared.text.contains(&node.device_id().to_text()), "{}", shared.text);
    let r = mini(&hub, "POST", "/miniapp/app/share", Some(token), None, Some("")).await;
    r.problem(403, "forbidden");
}
