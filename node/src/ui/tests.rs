//! The UI over a store that fails: every page is a failure the trader sees (500 and the
//! store-failure page, the equity series a 500 problem), never an empty table. The store is
//! real (redb in memory) and made to fail the honest way: a row that no longer decodes.

use std::net::SocketAddr;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::{Ui, pages};
use crate::runtime::tests::in_memory_node;
use crate::runtime::{Node, NodeError};
use crate::store::{self, StoreError};

/// Writes bytes that are not an account row under an account key, below the runtime.
fn corrupt_accounts(node: &Node) {
    let tx = node.store().db().begin_write().expect("write");
    {
        let mut t = tx.open_table(store::ACCOUNTS).expect("accounts table");
        t.insert("1234@Demo", b"\xff not json".as_slice()).expect("insert");
    }
    tx.commit().expect("commit");
}

fn is_store_failure<T: std::fmt::Debug>(r: Result<T, NodeError>) -> bool {
    matches!(r, Err(NodeError::Store(StoreError::Row { table: "accounts", .. })))
}

#[test]
fn every_page_is_an_error_when_the_store_fails() {
    let node = in_memory_node();
    assert!(pages::dashboard(&node, "t", None).is_ok());
    assert!(pages::equity_series(&node).is_ok_and(|s| s.t.is_empty()));
    corrupt_accounts(&node);
    assert!(is_store_failure(pages::dashboard(&node, "t", None)));
    assert!(is_store_failure(pages::copy_log(&node, "t")));
    assert!(is_store_failure(pages::history(&node, "t")));
    assert!(is_store_failure(pages::settings(&node, "t", None, &pages::PlanView::NotEnrolled)));
    assert!(is_store_failure(pages::equity_series(&node)));
    assert!(is_store_failure(pages::fill_times_ms(&node, 20)));
}

/// The real router on 127.0.0.1:0, signed in through `/login`: a page over a failing store is
/// 500 and says the store failed.
#[tokio::test]
async fn a_store_failure_is_served_as_a_failure_not_an_empty_page() {
    let node = in_memory_node();
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = Ui::new(node.clone(), Zeroizing::new("token-1".to_owned()), addr).router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login =
        client.get(format!("http://{addr}/login?token=token-1")).send().await.expect("login");
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let get = |path: &str| {
        client.get(format!("http://{addr}{path}")).header(reqwest::header::COOKIE, &cookie).send()
    };
    let ok = get("/").await.expect("dashboard");
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.expect("body").contains("No open position."));

    corrupt_accounts(&node);
    for path in ["/", "/copy-log", "/history", "/settings"] {
        let resp = get(path).await.expect("page");
        assert_eq!(resp.status(), 500, "{path}");
        let body = resp.text().await.expect("body");
        assert!(body.contains("The node could not read its store"), "{path}: {body}");
        assert!(!body.contains("No open position.") && !body.contains("<table"), "{path}: {body}");
    }
    // The History page's downloads: the same page, never an empty file.
    for path in ["/history/export.csv", "/history/export.json"] {
        let resp = get(path).await.expect("download");
        assert_eq!(resp.status(), 500, "{path}");
        assert!(resp.headers().get(reqwest::header::CONTENT_DISPOSITION).is_none(), "{path}");
        let body = resp.text().await.expect("body");
        assert!(body.contains("The node could not read its store"), "{path}: {body}");
    }
    let resp = get("/ui/equity.json").await.expect("equity");
    assert_eq!(resp.status(), 500);
    let ct = resp.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    assert_eq!(ct.as_ref().and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    server.abort();
}

/// A stand-in for the hub's billing read (the node may not depend on the hub): it checks the
/// device signature the documented way and answers the documented JSON.
/// The identity of the stand-in hub below (its key is what the tests pin).
fn fake_hub_identity() -> tradecast_protocol::Identity {
    tradecast_protocol::Identity::from_secret_bytes(&[5; 32], &[6; 32])
}

async fn fake_hub(node: Arc<Node>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::extract::Path;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let key = node.identity_key();
    let device = node.device_id().to_text();
    let app = axum::Router::new().route(
        "/api/v1/devices/{id}/billing",
        axum::routing::get(move |Path(id): Path<String>, headers: HeaderMap| {
            let (key, device, base) = (key, device.clone(), base.clone());
            async move {
                let path = format!("/api/v1/devices/{id}/billing");
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                let now = crate::clock::wall_ms();
                let verified =
                    tradecast_protocol::device_link::verify_request(&key, "GET", &path, auth, now);
                let (true, Ok(request_ts)) = (id == device, verified) else {
                    let body = serde_json::json!({ "type": "urn:tradecast:problem:unauthenticated",
                        "title": "unauthenticated", "status": 401, "detail": "device signature refused" });
                    return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                };
                let answer = serde_json::json!({
                    "device": device,
                    "subscriptions": [{
                        "plan_id": "plan_gold", "plan_name": "Gold", "status": "active",
                        "status_words": "active", "door": "stripe",
                        "current_period_end_ms": 1_893_456_000_000_i64, "cancel_at_period_end": false,
                        "trial_end_ms": null, "covered_until_ms": 1_893_477_600_000_i64,
                    }],
                    "offers": [
                        { "id": "plan_gold", "name": "Gold", "price_minor": 4900, "currency": "USD",
                          "period_days": 30, "trial_days": 7, "features": ["auto_copy", "signals"],
                          "provider_name": "Fib Provider", "door": "stripe", "created_at_ms": 1,
                          "provider_user_id": "u1", "archived_at_ms": null, "device_limit": null,
                          "description": "" },
                        { "id": "plan_stars", "name": "Starry", "price_minor": 250, "currency": "XTR",
                          "period_days": 30, "trial_days": 0, "features": ["signals"],
                          "provider_name": "Fib Provider", "door": "telegram_stars" },
                    ],
                    "stripe": true,
                    "public_url": base,
                });
                // Signed as the hub signs, by the key the test pins for this hub.
                let body = serde_json::to_vec(&answer).expect("json");
                let sig = tradecast_protocol::device_link::sign_answer(
                    &fake_hub_identity(),
                    &path,
                    request_ts,
                    &body,
                );
                (
                    [
                        ("content-type", "application/json".to_owned()),
                        (tradecast_protocol::device_link::ANSWER_HEADER, sig),
                    ],
                    body,
                )
                    .into_response()
            }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, server)
}

fn query_parts(url: &str) -> std::collections::HashMap<String, String> {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":")))
        .collect()
}

/// The settings page reads the plan from the hub with a device-signed request, shows it with
/// its buttons, and a button's POST answers 303 to a fresh device link the hub would accept; a
/// hub that cannot be reached is said, and the grants shown instead.
#[tokio::test]
async fn the_settings_page_shows_the_plan_and_mints_device_links_per_click() {
    let node = in_memory_node();
    let (hub_addr, hub) = fake_hub(node.clone()).await;
    let hub_key = fake_hub_identity().identity_key();
    node.store()
        .write(|tx| {
            tx.set_setting(crate::store::hub_pin::SETTING_HUB_ADDR, &hub_addr.to_string())?;
            tx.set_setting(crate::store::hub_pin::SETTING_HUB_KEY, &hex::encode(hub_key.to_bytes()))
        })
        .expect("pin");

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = Ui::new(node.clone(), Zeroizing::new("token-1".to_owned()), addr).router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login =
        client.get(format!("http://{addr}/login?token=token-1")).send().await.expect("login");
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();

    let resp = client
        .get(format!("http://{addr}/settings"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("settings");
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().expect("csp").to_owned();
    assert!(csp.contains("form-action 'self';"), "the strict policy: {csp}");
    let body = resp.text().await.expect("body");
    let section = body.split("id=\"plan\"").nth(1).expect("a plan section");
    assert!(
        section.contains("<td>Gold</td><td>active</td><td>Renews 2030-01-01 00:00:00 UTC</td>"),
        "{section}"
    );
    assert!(section.contains("id=\"plan-portal\""), "{section}");
    // The plan held is marked on its offer instead of a Subscribe button.
    assert!(section.contains("id=\"held-plan_gold\">your plan<"), "{section}");
    assert!(!section.contains("value=\"checkout:plan_gold\""), "{section}");
    assert!(
        section.contains("49.00 USD / 30 days") && section.contains("7 days free"),
        "{section}"
    );
    assert!(
        !section.contains("checkout:plan_stars") && section.contains("Telegram Stars"),
        "{section}"
    );
    // Enrolled and no grant with auto_copy: the page says why signals wait.
    assert!(body.contains(crate::policy::approval::NO_AUTO_COPY), "{body}");
    // No link sits in the page: only the POST that mints one.
    assert!(!body.contains("/device-link?"), "{body}");
    // The public URL the hub answered is kept (the base of later reads and of links).
    let stored =
        node.store().read().expect("view").setting(crate::sync::billing::SETTING_HUB_PUBLIC_URL);
    assert_eq!(stored.expect("setting"), Some(format!("http://{hub_addr}")));

    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a csrf field")
        .to_owned();
    let post = |fields: Vec<(&'static str, String)>| {
        client
            .post(format!("http://{addr}/ui/plan/link"))
            .header(reqwest::header::COOKIE, &cookie)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(
                fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.replace(':', "%3A")))
                    .collect::<Vec<_>>()
                    .join("&"),
            )
            .send()
    };
    let r = post(vec![("csrf", csrf.clone()), ("action", "checkout:plan_gold".into())])
        .await
        .expect("post");
    // A page that opens the link (not a 303: `form-action` would block the hub's redirect on
    // to the payment processor).
    assert_eq!(r.status(), 200);
    let opening = r.text().await.expect("body");
    let location = opening
        .split("id=\"continue\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the link to press")
        .replace("&amp;", "&");
    assert!(opening.contains(&format!("0;url={}", location.replace('&', "&amp;"))), "{opening}");
    assert!(location.starts_with(&format!("http://{hub_addr}/device-link?device=")), "{location}");
    let q = query_parts(&location);
    let ts: i64 = q["ts"].parse().expect("ts");
    let verified = tradecast_protocol::device_link::verify(
        &node.identity_key(),
        &q["action"],
        ts,
        &q["sig"],
        crate::clock::wall_ms(),
    );
    assert_eq!(verified, Ok(tradecast_protocol::device_link::Action::Checkout("plan_gold".into())));
    // Another click, another link (fresh signature or time).
    let again =
        post(vec![("csrf", csrf.clone()), ("action", "portal".into())]).await.expect("post");
    assert_eq!(again.status(), 200);
    assert!(again.text().await.expect("body").contains("action=portal"));
    // No CSRF token, or an unknown action: refused.
    let r = post(vec![("action", "portal".into())]).await.expect("post");
    assert_eq!(r.status(), 403);
    let r = post(vec![("csrf", csrf.clone()), ("action", "delete".into())]).await.expect("post");
    assert_eq!(r.status(), 422);

    // Pinned to another hub key: the same answer is not this hub's, and nothing of it shows.
    let other = tradecast_protocol::Identity::from_secret_bytes(&[7; 32], &[8; 32]);
    node.store()
        .write(|tx| {
            tx.set_setting(
                crate::store::hub_pin::SETTING_HUB_KEY,
                &hex::encode(other.identity_key().to_bytes()),
            )
        })
        .expect("re-pin");
    let body = client
        .get(format!("http://{addr}/settings"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("settings")
        .text()
        .await
        .expect("body");
    assert!(body.contains("not signed by the pinned hub key"), "{body}");
    assert!(!body.contains("<td>Gold</td><td>active</td>"), "{body}");
    node.store()
        .write(|tx| {
            tx.set_setting(crate::store::hub_pin::SETTING_HUB_KEY, &hex::encode(hub_key.to_bytes()))
        })
        .expect("pin again");

    // The hub goes away: the page says so and still renders.
    hub.abort();
    let _ = hub.await;
    let body = client
        .get(format!("http://{addr}/settings"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("settings")
        .text()
        .await
        .expect("body");
    assert!(body.contains("id=\"plan-unreachable\""), "{body}");
    assert!(body.contains("No plan in force that the hub has granted."), "{body}");
    // The dashboard says why signals wait, too.
    let dash = client
        .get(format!("http://{addr}/"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("dashboard")
        .text()
        .await
        .expect("body");
    assert!(dash.contains(crate::policy::approval::NO_AUTO_COPY), "{dash}");
    server.abort();
}
