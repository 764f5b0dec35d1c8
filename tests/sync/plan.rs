//! The trader's plan on the node's settings page, from a real hub: a node enrolled through its
//! CLI reads its account's subscription with a device-signed request
//! (`GET /api/v1/devices/{id}/billing`), a plan button answers a page that opens a device link
//! the hub accepts, and the plan's features reach the node as hub-signed grants: without `auto_copy`
//! the page says signals wait for approval; once a plan with it is in force, it does not.

use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use tradecast_hub::billing::ledger::{self, Door, EventKey, Observed, ObservedStatus};
use tradecast_node::policy::approval::NO_AUTO_COPY;
use tradecast_node::serve::{self, tokio_util_shutdown::Shutdown};
use tradecast_protocol::Feature;

use super::{Hub, enrol_by_cli, node_dir, now_ms};

const DAY: i64 = 86_400_000;

async fn make_plan(hub: &Hub, provider: &str, name: &str, features: &[&str]) -> String {
    let state = &hub.started.state;
    tradecast_hub::plans::create(
        &state.db,
        now_ms(),
        provider,
        tradecast_hub::accounts::Role::Provider,
        &tradecast_hub::plans::NewPlan {
            name: name.into(),
            price_minor: 4900,
            currency: "USD".into(),
            period_days: 30,
            features: Some(features.iter().map(|f| f.to_string()).collect()),
            ..Default::default()
        },
        "t",
    )
    .await
    .unwrap()
    .id
}

/// Records a Stripe subscription of `plan` for `account`, as a (made-up) Stripe re-read would.
async fn subscribe(hub: &Hub, account: &str, plan: &str, external: &str, event: &str) -> i64 {
    let now = now_ms();
    let end = now + 30 * DAY;
    let observed = Observed {
        external_id: external.into(),
        account_id: account.into(),
        plan_id: plan.into(),
        status: ObservedStatus::Active,
        period_start_ms: now,
        period_end_ms: end,
        cancel_at_period_end: false,
        trial_end_ms: None,
        ended_at_ms: None,
        unpaid_since_ms: None,
        refunded: false,
        referral: None,
        created_ms: now,
    };
    let key =
        EventKey { door: Door::Stripe, event_id: event, kind: "customer.subscription.updated" };
    ledger::apply(&hub.started.state, Some(key), account, Door::Stripe, &[observed], &[], "t")
        .await
        .unwrap();
    end
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_the_settings_page_shows_the_hub_plan_and_opens_device_links() {
    let hub = Hub::start().await;
    let (dir, _) = node_dir();
    enrol_by_cli(&dir, &hub).await;
    let state = &hub.started.state;
    // The node is enrolled under the owner's account: that account subscribes.
    let owner: String = sqlx::query_scalar("SELECT id FROM users WHERE role = 'owner'")
        .fetch_one(state.db.pool())
        .await
        .unwrap();
    let provider = tradecast_hub::accounts::create_user(
        &state.db,
        &state.config.auth,
        now_ms(),
        &tradecast_hub::accounts::NewUser {
            email: "provider@example.com",
            password: "provider password 123",
            role: tradecast_hub::accounts::Role::Provider,
            display_name: "Fib Provider",
        },
        "t",
        "t",
    )
    .await
    .unwrap();
    let basic = make_plan(&hub, &provider.id, "Basic", &["signals"]).await;
    let renews = subscribe(&hub, &owner, &basic, "sub_basic", "evt_1").await;
    let gold = make_plan(&hub, &provider.id, "Gold", &["auto_copy", "signals"]).await;

    let config = tradecast_node::config::Config {
        ea_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    };
    let shutdown = Shutdown::new();
    let running = serve::start(dir.path(), &config, shutdown.clone()).await.unwrap();
    let node = running.node.clone();
    // The plan's grant (signals, no auto_copy) reaches the node, hub-signed.
    let held = |f: Feature| {
        node.feature_grants_at(now_ms()).unwrap().iter().any(|g| g.features.contains(&f))
    };
    let start = Instant::now();
    while !held(Feature::Signals) {
        assert!(start.elapsed() < Duration::from_secs(20), "no grant reached the node");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!held(Feature::AutoCopy));

    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let token = serve::api_token(dir.path()).unwrap().to_string();
    let login =
        http.get(tradecast_node::ui::login_url(running.api_addr, &token)).send().await.unwrap();
    let cookie =
        login.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = |path: &'static str| {
        let (http, cookie) = (http.clone(), cookie.clone());
        let url = format!("http://{}{path}", running.api_addr);
        async move { http.get(url).header(COOKIE, cookie).send().await.unwrap().text().await.unwrap() }
    };

    let body = page("/settings").await;
    let section = body.split("id=\"plan\"").nth(1).expect("a plan section");
    let date = tradecast_node::policy::fmt_utc(renews);
    assert!(
        section.contains(&format!("<td>Basic</td><td>active</td><td>Renews {date}</td>")),
        "{section}"
    );
    // The plan held is marked, not offered again; Stripe is off on this hub: no Subscribe or
    // portal button for the other, the account link is there.
    assert!(section.contains(&format!("id=\"held-{basic}\">your plan<")), "{section}");
    assert!(section.contains("card payments are not open on this hub"), "{section}");
    assert!(!section.contains("checkout:") && !section.contains("plan-portal"), "{section}");
    assert!(section.contains("value=\"telegram-link\""), "{section}");
    // Without auto_copy in the plan, the page and the dashboard say why signals wait.
    assert!(body.contains(NO_AUTO_COPY), "{body}");
    assert!(page("/").await.contains(NO_AUTO_COPY));

    // A button's POST answers a page opening a fresh device link, which the hub accepts once.
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("http://{}/ui/plan/link", running.api_addr))
        .header(COOKIE, &cookie)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&action=telegram-link"))
        .send()
        .await
        .unwrap();
    // The node answers with a page that opens the link (a meta refresh and the link itself).
    assert_eq!(r.status(), 200);
    let opening = r.text().await.unwrap();
    let link = opening
        .split("id=\"continue\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(link.starts_with(&format!("http://{}/device-link?device=", hub.http_addr())), "{link}");
    let opened = http.get(&link).send().await.unwrap();
    assert_eq!(opened.status(), 303, "the hub accepts the node's link");
    // This hub runs no Telegram bot: the account page's Telegram section says so.
    assert_eq!(opened.headers()[LOCATION], "/account#telegram");
    assert!(opened.headers().contains_key(SET_COOKIE), "the hub signs the account in");
    let again = http.get(&link).send().await.unwrap();
    assert_eq!(again.status(), 410, "a link opens once");

    // A plan with auto_copy: once its grant is in force the words go.
    subscribe(&hub, &owner, &gold, "sub_gold", "evt_2").await;
    let start = Instant::now();
    while !held(Feature::AutoCopy) {
        assert!(start.elapsed() < Duration::from_secs(20), "the auto_copy grant never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = page("/settings").await;
    assert!(body.contains("<td>Gold</td><td>active</td>"), "{body}");
    assert!(!body.contains(NO_AUTO_COPY), "{body}");

    shutdown.trigger();
    running.join().await.unwrap();
    hub.started.stop().await.unwrap();
}
