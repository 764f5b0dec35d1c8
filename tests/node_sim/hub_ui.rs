//! The hub connection in the node's UI, with a real hub (SQLite in a temporary dir) on loopback:
//! after `enrol`, the settings page shows the hub's address and key fingerprint, and the header
//! and the settings show the QUIC session connected; with the hub stopped, offline.

use std::time::Duration;

use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use tradecast_node::config::Config;
use tradecast_node::serve::{self, tokio_util_shutdown::Shutdown};

fn now_ms() -> i64 {
    tradecast_node::runtime::wall_ms()
}

/// A hub on loopback with an owner; its HTTP client, the owner's token.
pub(crate) async fn hub(
    dir: &std::path::Path,
) -> (tradecast_hub::Started, reqwest::Client, String) {
    let mut config = tradecast_hub::config::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: Some(dir.to_owned()),
        ..Default::default()
    };
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    let secrets = tradecast_hub::load_secrets(&config, std::iter::empty()).expect("secrets");
    let started = tradecast_hub::start(config, secrets).await.expect("hub");
    let state = &started.state;
    let new = tradecast_hub::accounts::NewUser {
        email: "owner@example.com",
        password: "owner password 123",
        role: tradecast_hub::accounts::Role::Owner,
        display_name: "Owner",
    };
    tradecast_hub::accounts::create_user(&state.db, &state.config.auth, now_ms(), &new, "t", "t")
        .await
        .expect("owner");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login: Value = http
        .post(format!("http://{}/api/v1/auth/login", started.addr))
        .json(&json!({"email": "owner@example.com", "password": "owner password 123"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("token").to_owned();
    (started, http, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_page_shows_the_enrolled_hub_and_its_link() {
    let hub_dir = tempfile::tempdir().expect("tempdir");
    let (hub, http, token) = hub(hub_dir.path()).await;
    let code: Value = http
        .post(format!("http://{}/api/v1/devices/enrolment-codes", hub.addr))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .expect("code")
        .json()
        .await
        .expect("json");
    let code = code["code"].as_str().expect("code").to_owned();

    let dir = tempfile::tempdir().expect("tempdir");
    serve::init(dir.path()).expect("init");
    let hub_fingerprint = {
        let store =
            tradecast_node::store::Store::open(&dir.path().join(tradecast_node::store::FILE_NAME))
                .expect("store");
        let e = tradecast_node::sync::enrol::enrol(
            &store,
            &hub.addr.to_string(),
            &code,
            "ui",
            now_ms(),
        )
        .await
        .expect("enrolled");
        e.hub_device_id.to_text()
    };
    let config = Config {
        ea_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    let shutdown = Shutdown::new();
    let running = serve::start(dir.path(), &config, shutdown.clone()).await.expect("node");
    let node = running.node.clone();
    let mut connected = false;
    for _ in 0..100 {
        if node.hub_connected() == Some(true) {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(connected, "the node's sync client connected to the hub");

    let ui_token = serve::api_token(dir.path()).expect("token").to_string();
    let r = http
        .get(tradecast_node::ui::login_url(running.api_addr, &ui_token))
        .send()
        .await
        .expect("login");
    let cookie = r.headers()[SET_COOKIE]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let page = |path: &'static str| {
        let http = http.clone();
        let cookie = cookie.clone();
        let url = format!("http://{}{path}", running.api_addr);
        async move {
            http.get(url)
                .header(COOKIE, cookie)
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("body")
        }
    };
    let body = page("/settings").await;
    assert!(body.contains(&hub.addr.to_string()), "the hub's address: {body}");
    assert!(body.contains(&hub_fingerprint), "the pinned key's fingerprint: {body}");
    assert!(body.contains("connected"), "{body}");
    let dash = page("/").await;
    assert!(dash.contains("Hub connected"), "the header's health: {dash}");

    // The hub goes away: the link shows offline.
    hub.stop().await.expect("hub stopped");
    let mut offline = false;
    for _ in 0..100 {
        if node.hub_connected() == Some(false) {
            offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(offline, "the link went down");
    let dash = page("/").await;
    assert!(dash.contains("Hub offline"), "{dash}");
    let body = page("/settings").await;
    assert!(body.contains("offline: reconnecting"), "{body}");
    shutdown.trigger();
    running.join().await.expect("stopped");
}
