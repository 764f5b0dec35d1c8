//! The hub's Telegram Mini App in a real browser at a phone's size (390 × 844; the slow suite).
//! The Telegram stand-in plays Telegram: it signs the initData of its user, which the page gets
//! the way Telegram's clients hand it over (the launch parameters in the URL's fragment:
//! `tgWebAppData`, `tgWebAppThemeParams`, `tgWebAppVersion`), read by the vendored WebApp
//! script itself; a `TelegramWebviewProxy` object stands in for the client's native bridge and
//! records what the page asks of Telegram (main button, back button, invoice). The trader sees
//! their plan, pays a plan in Telegram Stars (the invoice paid in the stand-in, then Telegram's
//! `invoice_closed` event), sees it on the plan view, and opens the approvals and analytics
//! views, in a light and a dark theme, and approves a pending signal of their node at another
//! size, seeing the node's signed answer arrive. Screenshots: `test-artifacts/ui-miniapp-*.png`.

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
    // Her plan has no analytics: the view says so (402) and shows the plans that include it.
    assert!(
        b.until("return !!document.querySelector('#view [data-plan-required=\"analytics\"]')")
            .await,
        "the analytics view names what her plan lacks"
    );
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

    // Remote approval: the trader's node (a real identity enrolled on this hub) signs a Pending
    // for a provider's signal; the Approvals view lists it with its range, risk and countdown;
    // the trader approves another size; the view waits for the node's signed answer (it polls)
    // and shows it.
    let pending = pending_signal(
        &http,
        &base,
        &state,
        &provider,
        &login("trader@example.com", "a password 12345").await,
    )
    .await;
    b.click(".tab[data-view=\"plan\"]").await;
    b.click(".tab[data-view=\"approvals\"]").await;
    assert!(
        b.until("return !!document.querySelector('#view [data-action=\"decide\"]')").await,
        "the pending signal: {}",
        b.js("return document.querySelector('#view').innerHTML").await
    );
    let view = b.js("return document.querySelector('#view').textContent").await;
    let view = view.as_str().unwrap_or_default().to_owned();
    for needle in ["Waiting for you", "0.01 – 0.5", "12.50 USD (1.25 % of equity)", " s left"] {
        assert!(view.contains(needle), "{needle}: {view}");
    }
    assert!(
        b.until("return window.__tg.some(function (e) { return e[0] === 'web_app_setup_main_button' && /Approve BUY EURUSD/.test(e[1].text); })").await,
        "the main button approves: {}",
        b.js("return JSON.stringify(window.__tg)").await
    );
    b.screenshot_sized("miniapp-approvals-pending-dark", 390, 844).await;
    let input = format!("lots-{}-{}", pending.signal_hex, pending.device);
    b.js(&format!("document.getElementById('{input}').value = '0.2'; return true;")).await;
    b.click("[data-lots-from]").await;
    assert!(
        b.until("return document.querySelector('#view').textContent.indexOf('Waiting for its answer') >= 0").await,
        "sent: {}",
        b.js("return document.querySelector('#view').textContent").await
    );
    let request = pending.answer(&state).await;
    assert_eq!(request.lots.as_deref(), Some("0.2"));
    assert_eq!(request.channel, "mini_app");
    assert_eq!(request.telegram_user_id, Some(TG_USER));
    assert!(
        b.until("return document.querySelector('#view').textContent.indexOf('Applied: your app did it (approve 0.2 lots)') >= 0").await,
        "the node's answer shown: {}",
        b.js("return document.querySelector('#view').textContent").await
    );
    b.screenshot_sized("miniapp-approvals-applied-dark", 390, 844).await;

    // Analytics with a plan that includes it, once the trader's node published its account:
    // their equity, drawdown, figures and periods, in the app's dark theme.
    let plan = json!({"name": "Everything", "price_minor": 0, "currency": "USD", "period_days": 30,
                      "features": ["signals", "mini_app", "analytics"]});
    let everything =
        api(&http, reqwest::Method::POST, format!("{base}/api/v1/plans"), Some(&provider), plan)
            .await;
    let owner_token = login("owner@example.com", "owner password 123").await;
    api(
        &http,
        reqwest::Method::POST,
        format!("{base}/api/v1/entitlements"),
        Some(&owner_token),
        json!({"user_id": ids[1], "plan_id": everything["id"]}),
    )
    .await;
    publish_account(&state, &pending.node).await;
    b.click(".tab[data-view=\"analytics\"]").await;
    assert!(
        b.until("return !!document.querySelector('#view #own .money') && !!document.querySelector('#view #pnl-days')").await,
        "the trader's own figures: {}",
        b.js("return document.querySelector('#view').textContent").await
    );
    b.screenshot_sized("miniapp-analytics-own-dark", 390, 844).await;

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

/// The trader's node publishes its account: a deposit, equity points over three days and two
/// closed trades, committed as its sync session commits them.
async fn publish_account(
    state: &tradecast_hub::state::AppState,
    node: &tradecast_protocol::Identity,
) {
    use rust_decimal::Decimal;
    use tradecast_protocol::{
        BalanceKind, BalanceOperation, Body, ChainHash, EquityPoint, HeaderFields, Record, Side,
        StreamId, TradeClosed,
    };
    let d = |s: &str| s.parse::<Decimal>().expect("decimal");
    let day = 86_400_000;
    let start = now_ms() - 3 * day;
    let me = node.device_id();
    let trade = |ticket, at: i64, profit: &str| {
        Body::TradeClosed(TradeClosed {
            signal_id: None,
            device: me,
            ticket,
            symbol: "EURUSD".into(),
            side: Side::Buy,
            volume: d("0.10"),
            open_price: d("1.0900"),
            close_price: d("1.0950"),
            opened_at_ms: at - 3_600_000,
            closed_at_ms: at,
            profit: d(profit),
            commission: d("-0.70"),
            swap: Decimal::ZERO,
        })
    };
    let equity = |at: i64, value: &str| {
        Body::EquityPoint(EquityPoint {
            device: me,
            at_ms: at,
            balance: d(value),
            equity: d(value),
        })
    };
    let bodies = [
        Body::BalanceOperation(BalanceOperation {
            device: me,
            deal: 1,
            kind: BalanceKind::Deposit,
            amount: d("1000"),
            currency: "USD".into(),
            at_ms: start,
            comment: String::new(),
        }),
        equity(start, "1000"),
        trade(11, start + day, "50"),
        equity(start + day, "1049.30"),
        trade(12, start + 2 * day, "-20"),
        equity(start + 2 * day, "1028.60"),
    ];
    let mut prev = ChainHash::GENESIS;
    for (i, body) in bodies.iter().enumerate() {
        let seq = u64::try_from(i).expect("small") + 1;
        let fields = HeaderFields {
            stream: StreamId::PUBLISHED,
            seq,
            prev_hash: prev,
            created_at_ms: now_ms(),
        };
        let record = Record::sign(node, fields, body);
        prev = record.header_hash();
        tradecast_hub::quic::store::commit(&state.db, &state.hub_identity, &record, now_ms())
            .await
            .expect("commit");
    }
}

/// A signal waiting for the trader on their node, as the hub holds it.
struct PendingSignal {
    node: tradecast_protocol::Identity,
    device: String,
    signal_hex: String,
    signal: tradecast_protocol::SignalId,
}

fn identity() -> tradecast_protocol::Identity {
    let seed: [u8; 32] = tradecast_hub::ids::random_bytes(32).try_into().expect("32");
    let x: [u8; 32] = tradecast_hub::ids::random_bytes(32).try_into().expect("32");
    tradecast_protocol::Identity::from_secret_bytes(&seed, &x)
}

/// Enrols a fresh node identity for the account of `token`; its device id (text).
async fn enrol(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    node: &tradecast_protocol::Identity,
) -> String {
    use tradecast_protocol::{Body, ChainHash, DeviceKeys, HeaderFields, Record, StreamId};
    let code = api(
        http,
        reqwest::Method::POST,
        format!("{base}/api/v1/devices/enrolment-codes"),
        Some(token),
        json!({}),
    )
    .await;
    let keys = DeviceKeys {
        identity: node.identity_key(),
        sealing: node.sealing_public_key(),
        label: "trader's pc".into(),
        at_ms: now_ms(),
        account_fingerprint: None,
    };
    let fields = HeaderFields {
        stream: StreamId::DEVICE,
        seq: 1,
        prev_hash: ChainHash::GENESIS,
        created_at_ms: now_ms(),
    };
    let record = b64(&Record::sign(node, fields, &Body::DeviceKeys(keys)).encode());
    let r = api(
        http,
        reqwest::Method::POST,
        format!("{base}/api/v1/devices/enrol"),
        None,
        json!({ "code": code["code"], "keys_record": record }),
    )
    .await;
    r["device"]["id"].as_str().expect("device id").to_owned()
}

/// The provider posts a signal (its node enrolled, an API key); the trader's node signs a
/// `Pending` for it, committed as the sync session commits it.
async fn pending_signal(
    http: &reqwest::Client,
    base: &str,
    state: &tradecast_hub::state::AppState,
    provider_token: &str,
    trader_token: &str,
) -> PendingSignal {
    use tradecast_protocol::{
        Body, ChainHash, EntryKind, HeaderFields, Pending, Record, RiskPreview, Side, Signal,
        SignalId, StreamId, Timeframe,
    };
    let provider = identity();
    enrol(http, base, provider_token, &provider).await;
    let key = api(
        http,
        reqwest::Method::POST,
        format!("{base}/api/v1/api-keys"),
        Some(provider_token),
        json!({ "label": "script" }),
    )
    .await;
    let (key_id, secret) = (
        key["id"].as_str().expect("key").to_owned(),
        key["secret"].as_str().expect("secret").to_owned(),
    );
    let now = now_ms();
    let d = |s: &str| s.parse::<rust_decimal::Decimal>().expect("decimal");
    let signal = Signal {
        id: SignalId(tradecast_hub::ids::random_bytes(16).try_into().expect("16")),
        provider: provider.device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 1,
        symbol: "EURUSD".into(),
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
    };
    let fields = HeaderFields {
        stream: StreamId::SIGNALS,
        seq: 1,
        prev_hash: ChainHash::GENESIS,
        created_at_ms: now,
    };
    let (_, body) = tradecast_hub::signals::client::signal_body(&provider, fields, &signal);
    let path = tradecast_hub::signals::client::SIGNALS_PATH;
    let nonce = tradecast_hub::ids::random_hex(16);
    let mut r = http
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.clone());
    for (k, v) in
        tradecast_hub::signals::client::auth_headers(&key_id, &secret, path, &body, now, &nonce)
    {
        r = r.header(k, v);
    }
    let r = r.send().await.expect("signal");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());

    let node = identity();
    let device = enrol(http, base, trader_token, &node).await;
    let p = Pending {
        signal_id: signal.id,
        device: node.device_id(),
        expires_at_ms: now + 600_000,
        min_lots: d("0.01"),
        max_lots: d("0.50"),
        risk_preview: Some(RiskPreview {
            lots: d("0.10"),
            risk_money: d("12.50"),
            risk_percent: d("1.25"),
            currency: "USD".into(),
        }),
        blocking: vec![],
        at_ms: now,
    };
    let fields = HeaderFields {
        stream: StreamId::SHARED,
        seq: 1,
        prev_hash: ChainHash::GENESIS,
        created_at_ms: now,
    };
    let record = Record::sign(&node, fields, &Body::Pending(p));
    tradecast_hub::quic::store::commit(&state.db, &state.hub_identity, &record, now)
        .await
        .expect("commit");
    PendingSignal { signal_hex: signal.id.to_hex(), signal: signal.id, device, node }
}

impl PendingSignal {
    /// The trader's node answers the request the hub put in its inbox: applied.
    async fn answer(
        &self,
        state: &tradecast_hub::state::AppState,
    ) -> tradecast_hub::approvals::ApprovalRequest {
        use tradecast_protocol::{
            AnswerOutcome, Body, HeaderFields, Record, RequestAnswer, StreamId,
        };
        let items =
            tradecast_hub::feed::items(&state.db, &self.device, 1, 100).await.expect("inbox");
        let request = items
            .iter()
            .find_map(|i| match i.record.body() {
                Ok(Body::ApprovalRequest(r)) => Some(r),
                _ => None,
            })
            .expect("a hub-signed request in the node's inbox");
        let stored =
            tradecast_hub::approvals::request_by_id(&state.db, &request.request_id.to_hex())
                .await
                .expect("db")
                .expect("stored");
        let now = now_ms();
        let held = tradecast_hub::quic::store::records(
            &state.db,
            &self.node.device_id(),
            StreamId::SHARED,
        )
        .await
        .expect("records");
        let prev = held.last().expect("the Pending").header_hash();
        let fields =
            HeaderFields { stream: StreamId::SHARED, seq: 2, prev_hash: prev, created_at_ms: now };
        let body = Body::RequestAnswer(RequestAnswer {
            request_id: request.request_id,
            signal_id: self.signal,
            device: self.node.device_id(),
            outcome: AnswerOutcome::Applied,
            at_ms: now,
        });
        let record = Record::sign(&self.node, fields, &body);
        tradecast_hub::quic::store::commit(&state.db, &state.hub_identity, &record, now)
            .await
            .expect("commit");
        stored
    }
}

/// Standard base64 with padding (what the enrolment API takes).
fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
