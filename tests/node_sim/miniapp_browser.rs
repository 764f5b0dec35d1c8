//! The hub's Telegram Mini App in a real browser at a phone's size (390 × 844; the slow suite).
//! The Telegram stand-in plays Telegram: it signs the initData of its user, which the page gets
//! the way Telegram's clients hand it over (the launch parameters in the URL's fragment:
//! `tgWebAppData`, `tgWebAppThemeParams`, `tgWebAppVersion`), read by the vendored WebApp
//! script itself; a `TelegramWebviewProxy` object stands in for the client's native bridge and
//! records what the page asks of Telegram (main button, back button, invoice). The trader sees
//! their plan, pays a plan in Telegram Stars (the invoice paid in the stand-in, then Telegram's
//! `invoice_closed` event), sees it on the plan view, and opens the approvals and analytics
//! views, in a light and a dark theme. Screenshots: `test-artifacts/ui-miniapp-*.png`.

use std::time::Duration;

use serde_json::{Value, json};
use tradecast_hub::config::TelegramMode;
use tradecast_standins::telegram::{PayOutcome, TelegramStandin, TelegramStandinConfig};

use crate::browser::Driver;

const TG_USER: i64 = 801;

fn now_ms() -> i64 {
    tradecast_node::runtime::wall_ms()
}

fn light() -> Value {
    json!({"bg_color": "#ffffff", "text_color": "#000000", "hint_color": "#999999",
           "link_color": "#2481cc", "button_color": "#2481cc", "button_text_color": "#ffffff",
           "secondary_bg_color": "#efeff3", "section_bg_color": "#ffffff",
           "section_header_text_color": "#6d6d71", "accent_text_color": "#2481cc",
           "destructive_text_color": "#ff3b30", "subtitle_text_color": "#999999"})
}

fn dark() -> Value {
    json!({"bg_color": "#212121", "text_color": "#ffffff", "hint_color": "#aaaaaa",
           "link_color": "#8774e1", "button_color": "#8774e1", "button_text_color": "#ffffff",
           "secondary_bg_color": "#0f0f0f", "section_bg_color": "#2a2a2a",
           "section_header_text_color": "#aaaaaa", "accent_text_color": "#8774e1",
           "destructive_text_color": "#e53935", "subtitle_text_color": "#aaaaaa"})
}

/// encodeURIComponent.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The Mini App's URL as Telegram opens it: launch parameters in the fragment.
fn launch_url(base: &str, init_data: &str, theme: &Value) -> String {
    format!(
        "{base}/miniapp#tgWebAppData={}&tgWebAppVersion=8.0&tgWebAppPlatform=android&tgWebAppThemeParams={}",
        enc(init_data),
        enc(&theme.to_string())
    )
}

/// Records what the page asks of Telegram from now on (the client's native bridge).
const BRIDGE: &str = "window.__tg = []; window.TelegramWebviewProxy = { postEvent: function (t, d) { \
     window.__tg.push([t, d ? JSON.parse(d) : null]); } }; return true;";

async fn api(
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
    let r = r.send().await.expect("api");
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    assert!(status.is_success(), "{status}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_miniapp_plan_payment_approvals_analytics_at_phone_size_light_and_dark() {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.expect("stand-in");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = tradecast_hub::config::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    config.telegram.mode = TelegramMode::Polling;
    config.telegram.api_base_url = sb.base_url().to_string();
    config.telegram.miniapp_public_key = Some(sb.web_app_public_key());
    config.outbox.poll_interval_ms = 50;
    let mut secrets = tradecast_hub::load_secrets(&config, std::iter::empty()).expect("secrets");
    secrets.integrations.telegram_bot_token = Some(sb.token().to_string().into());
    let started = tradecast_hub::start(config, secrets).await.expect("hub");
    let base = format!("http://{}", started.addr);
    let state = started.state.clone();

    // The owner, a provider with a plan sold for Stars, a subscriber linked to the stand-in's user.
    let owner = tradecast_hub::accounts::NewUser {
        email: "owner@example.com",
        password: "owner password 123",
        role: tradecast_hub::accounts::Role::Owner,
        display_name: "Owner",
    };
    tradecast_hub::accounts::create_user(&state.db, &state.config.auth, now_ms(), &owner, "t", "t")
        .await
        .expect("owner");
    let http = reqwest::Client::new();
    let login = |email: &'static str, password: &'static str| {
        let http = http.clone();
        let url = format!("{base}/api/v1/auth/login");
        async move {
            api(
                &http,
                reqwest::Method::POST,
                url,
                None,
                json!({"email": email, "password": password}),
            )
            .await["access_token"]
                .as_str()
                .expect("token")
                .to_owned()
        }
    };
    let owner_token = login("owner@example.com", "owner password 123").await;
    let mut ids = Vec::new();
    for (email, role) in
        [("provider@example.com", "provider"), ("trader@example.com", "subscriber")]
    {
        let body = json!({"email": email, "password": "a password 12345", "role": role,
                          "display_name": if role == "provider" { "Fib Signals" } else { "Trader" }});
        let made = api(
            &http,
            reqwest::Method::POST,
            format!("{base}/api/v1/users"),
            Some(&owner_token),
            body,
        )
        .await;
        ids.push(made["id"].as_str().unwrap_or_else(|| panic!("{made}")).to_owned());
    }
    let provider = login("provider@example.com", "a password 12345").await;
    let plan = json!({"name": "Gold Stars", "price_minor": 250, "currency": "XTR", "period_days": 30,
                      "features": ["signals", "telegram", "mini_app"], "description": "Every signal, in Telegram too."});
    api(&http, reqwest::Method::POST, format!("{base}/api/v1/plans"), Some(&provider), plan).await;
    sb.user(TG_USER, "Alice", Some("alice")).expect("user");
    let mut name = String::new();
    for _ in 0..100 {
        name = state.telegram.username();
        if !name.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let code =
        tradecast_hub::telegram::link::new_code(&state.db, &ids[1], &name, now_ms(), 600_000)
            .await
            .expect("code");
    sb.user_says(TG_USER, &format!("/start {}", code.code)).expect("start");
    let linked = sb
        .wait_for_message(
            TG_USER,
            |m| m.text.as_deref().is_some_and(|t| t.contains("Linked to")),
            Duration::from_secs(15),
        )
        .await;
    assert!(linked.is_some(), "linked: {:#?}", sb.messages_to(TG_USER));

    let b = Driver::start().await;
    b.resize(390, 844).await;
    let init_data = sb.web_app_init_data(TG_USER, now_ms() / 1000, None).expect("initData");

    // Light theme: the plan view, Telegram's colours on the page.
    b.go(&launch_url(&base, &init_data, &light())).await;
    assert!(
        b.until("return !!document.querySelector('#view [data-view=\"plan\"]')").await,
        "plan view"
    );
    b.js(BRIDGE).await;
    let bg = b.js("return getComputedStyle(document.body).backgroundColor").await;
    assert_eq!(bg, json!("rgb(239, 239, 243)"), "secondary_bg_color drives the page");
    assert_eq!(
        b.js("return document.documentElement.classList.contains('dark')").await,
        json!(false)
    );
    assert_eq!(
        b.js("return document.documentElement.scrollWidth <= 390").await,
        json!(true),
        "no sideways scroll at 390 px"
    );
    b.screenshot_sized("miniapp-plan-light", 390, 844).await;

    // Stars: the page asks Telegram to open the invoice; the trader pays it in Telegram.
    b.click("[data-action=\"stars\"]").await;
    let asked = b
        .until("return window.__tg.some(function (e) { return e[0] === 'web_app_open_invoice'; })")
        .await;
    assert!(asked, "openInvoice: {}", b.js("return JSON.stringify(window.__tg)").await);
    let slug = b
        .js("return window.__tg.filter(function (e) { return e[0] === 'web_app_open_invoice'; })[0][1].slug")
        .await;
    let slug = slug.as_str().expect("slug").to_owned();
    let paid = sb.pay(TG_USER, &format!("https://t.me/${slug}")).await.expect("pay");
    assert!(matches!(paid, PayOutcome::Paid(_)), "{paid:?}");
    let thanked = sb
        .wait_for_message(
            TG_USER,
            |m| m.text.as_deref().is_some_and(|t| t.contains("Payment received")),
            Duration::from_secs(15),
        )
        .await;
    assert!(thanked.is_some());
    b.js(&format!(
        "window.Telegram.WebView.receiveEvent('invoice_closed', {{slug: '{slug}', status: 'paid'}}); return true;"
    ))
    .await;
    assert!(
        b.until(
            "return document.querySelector('#view').textContent.indexOf('Telegram Stars ·') >= 0"
        )
        .await,
        "the plan view shows the paid plan"
    );
    assert!(b.until("return document.querySelector('#view .tag.ok') !== null").await);
    b.screenshot_sized("miniapp-plan-paid-light", 390, 844).await;

    // Approvals: the back button appears; it returns to the plan.
    b.click(".tab[data-view=\"approvals\"]").await;
    assert!(b.until("return !!document.querySelector('#view [data-view=\"approvals\"]')").await);
    let back = b
        .until("return window.__tg.some(function (e) { return e[0] === 'web_app_setup_back_button' && e[1].is_visible; })")
        .await;
    assert!(back, "{}", b.js("return JSON.stringify(window.__tg)").await);
    b.screenshot_sized("miniapp-approvals-light", 390, 844).await;
    b.click(".tab[data-view=\"analytics\"]").await;
    assert!(b.until("return !!document.querySelector('#view [data-view=\"analytics\"]')").await);
    b.screenshot_sized("miniapp-analytics-light", 390, 844).await;
    b.js("window.Telegram.WebView.receiveEvent('back_button_pressed'); return true;").await;
    assert!(
        b.until("return !!document.querySelector('#view [data-view=\"approvals\"]')").await,
        "back"
    );

    // Dark theme, switched in Telegram while the app is open (Telegram's `theme_changed`; the
    // script keeps the theme of the session, as in Telegram): the views in its dark colours.
    b.js(&format!(
        "window.Telegram.WebView.receiveEvent('theme_changed', {{theme_params: {}}}); return true;",
        dark()
    ))
    .await;
    assert!(b.until("return document.documentElement.classList.contains('dark')").await, "dark");
    let bg = b.js("return getComputedStyle(document.body).backgroundColor").await;
    assert_eq!(bg, json!("rgb(15, 15, 15)"));
    b.click(".tab[data-view=\"plan\"]").await;
    assert!(b.until("return !!document.querySelector('#view [data-view=\"plan\"]')").await);
    b.screenshot_sized("miniapp-plan-dark", 390, 844).await;
    for view in ["approvals", "analytics"] {
        b.click(&format!(".tab[data-view=\"{view}\"]")).await;
        assert!(
            b.until(&format!("return !!document.querySelector('#view [data-view=\"{view}\"]')"))
                .await
        );
        b.screenshot_sized(&format!("miniapp-{view}-dark"), 390, 844).await;
    }

    // Nothing refused by the CSP, no script error.
    let errors: Vec<String> = b
        .console()
        .await
        .into_iter()
        .filter(|m| m.contains("Content Security Policy") || m.contains("Uncaught"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    b.quit();
    started.stop().await.expect("stop");
}
