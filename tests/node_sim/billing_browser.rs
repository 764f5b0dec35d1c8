//! Buying a plan from the node, in a real browser (the slow suite): the trader's node settings
//! page shows the hub's plans; "Subscribe" opens the hub through the device-signed link (no
//! hub password), the hub sends the browser on to Stripe's Checkout (the stand-in's page), the
//! test card is typed there, Stripe sends the browser back to the hub, and the plan is active —
//! on the hub's account page and then on the node's settings page. Screenshots go to
//! `test-artifacts/ui-billing-*.png`.

use tradecast_node::config::Config;
use tradecast_node::serve::{self, tokio_util_shutdown::Shutdown};
use tradecast_standins::stripe::{StripeStandin, StripeStandinConfig};

use crate::browser::Driver;

fn now_ms() -> i64 {
    tradecast_node::runtime::wall_ms()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_browser_buys_a_plan_from_the_node_through_the_device_link_and_checkout() {
    let stripe = StripeStandin::start(StripeStandinConfig::default()).await.expect("stripe");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut config = tradecast_hub::config::Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        data_dir: Some(dir.path().to_owned()),
        public_url: Some(
            tradecast_hub::config::PublicUrl::parse(&format!("http://127.0.0.1:{port}"))
                .expect("url"),
        ),
        ..Default::default()
    };
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    config.stripe.api_base_url = stripe.base_url().to_owned();
    let env = [
        ("TRADECAST_HUB_SECRET_STRIPE_SECRET_KEY".to_owned(), stripe.secret_key().to_owned()),
        (
            "TRADECAST_HUB_SECRET_STRIPE_WEBHOOK_SECRET".to_owned(),
            stripe.webhook_secret().to_owned(),
        ),
    ];
    let secrets = tradecast_hub::load_secrets(&config, env).expect("secrets");
    let hub = tradecast_hub::start(config, secrets).await.expect("hub");
    let base = format!("http://127.0.0.1:{port}");
    stripe.set_webhook_url(format!("{base}/api/v1/billing/stripe/webhook"));
    let state = &hub.state;
    let user = |email: &'static str, role| tradecast_hub::accounts::NewUser {
        email,
        password: "a password 12345",
        role,
        display_name: "",
    };
    use tradecast_hub::accounts::{Role, create_user};
    let provider = create_user(
        &state.db,
        &state.config.auth,
        now_ms(),
        &user("p@example.com", Role::Provider),
        "t",
        "t",
    )
    .await
    .expect("provider");
    create_user(
        &state.db,
        &state.config.auth,
        now_ms(),
        &user("trader@example.com", Role::Subscriber),
        "t",
        "t",
    )
    .await
    .expect("trader");
    let new = tradecast_hub::plans::NewPlan {
        name: "Gold".into(),
        price_minor: 4900,
        currency: "USD".into(),
        period_days: 30,
        features: Some(vec!["signals".into(), "auto_copy".into()]),
        ..Default::default()
    };
    let gold =
        tradecast_hub::plans::create(&state.db, now_ms(), &provider.id, Role::Provider, &new, "t")
            .await
            .expect("plan")
            .id;

    // The trader's node, enrolled with a code from their account.
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "trader@example.com", "password": "a password 12345"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("token").to_owned();
    let code: serde_json::Value = http
        .post(format!("{base}/api/v1/devices/enrolment-codes"))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("code")
        .json()
        .await
        .expect("json");
    let node_dir = tempfile::tempdir().expect("tempdir");
    serve::init(node_dir.path()).expect("init");
    {
        let store = tradecast_node::store::Store::open(
            &node_dir.path().join(tradecast_node::store::FILE_NAME),
        )
        .expect("store");
        tradecast_node::sync::enrol::enrol(
            &store,
            &hub.addr.to_string(),
            code["code"].as_str().expect("code"),
            "trader's PC",
            now_ms(),
        )
        .await
        .expect("enrolled");
    }
    let node_config = Config {
        ea_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    let shutdown = Shutdown::new();
    let running =
        serve::start(node_dir.path(), &node_config, shutdown.clone()).await.expect("node");
    let ui_token = serve::api_token(node_dir.path()).expect("token").to_string();

    // In the browser: the node's settings, the plan on offer, Subscribe.
    let b = Driver::start().await;
    b.go(&tradecast_node::ui::login_url(running.api_addr, &ui_token)).await;
    b.go(&format!("http://{}/settings", running.api_addr)).await;
    let button = format!("subscribe-{gold}");
    assert!(
        b.until(&format!("return !!document.getElementById('{button}')")).await,
        "the node's settings offer the hub's plan: {}",
        b.js("return document.body.innerText").await
    );
    b.screenshot("billing-node-settings-offer").await;
    b.click(&format!("#{button}")).await;
    // The hub accepted the device link and sent the browser on to Checkout.
    assert!(
        b.until("return !!document.querySelector('input[name=card_number]')").await,
        "Stripe's Checkout page: {} {:?}",
        b.js("return location.href").await,
        b.console().await
    );
    assert!(
        b.js("return location.href").await.as_str().unwrap_or("").starts_with(stripe.base_url())
    );
    b.js("document.querySelector('input[name=card_number]').value = '4242 4242 4242 4242';
          document.querySelector('input[name=exp]').value = '12 / 34';
          document.querySelector('input[name=cvc]').value = '123';
          document.querySelector('form').submit(); return true;")
        .await;
    // Back on the hub's account page, signed in by the device link, the plan active.
    assert!(
        b.until("return location.pathname === '/account' && document.body.innerText.includes('your payment went through')").await,
        "back on the hub: {} {}",
        b.js("return location.href").await,
        b.js("return document.body.innerText").await
    );
    b.screenshot("billing-hub-account-paid").await;
    // And on the node's settings page: the plan, active (read from the hub at each view).
    let mut shown = false;
    for _ in 0..20 {
        b.go(&format!("http://{}/settings", running.api_addr)).await;
        if b.until("return !!document.querySelector('#plan') && document.querySelector('#plan').innerText.includes('Gold') && document.querySelector('#plan').innerText.includes('active')").await {
            shown = true;
            break;
        }
    }
    assert!(shown, "the node shows the plan: {}", b.js("return document.body.innerText").await);
    assert!(
        b.until(&format!("return !!document.getElementById('held-{gold}') && !document.getElementById('{button}')")).await,
        "the plan held is marked, not offered again"
    );
    b.screenshot("billing-node-settings-active").await;
    let errors: Vec<String> =
        b.console().await.into_iter().filter(|e| !e.contains("favicon.ico")).collect();
    assert!(errors.is_empty(), "no script or CSP error: {errors:?}");
    b.quit();

    shutdown.trigger();
    running.join().await.expect("node stopped");
    hub.stop().await.expect("hub stopped");
    stripe.shutdown().await;
}
