//! The Stripe stand-in over real HTTP: its strictness, its test clock, its pages and its
//! webhooks (signatures checked by an independent HMAC computation); the Telegram stand-in in
//! [`telegram`].

mod telegram;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tradecast_standins::stripe::{Delivery, StripeStandin, StripeStandinConfig};

const DAY: u64 = 86_400;

/// A webhook endpoint: records every request; answers 500 to the first `fail` ones.
#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<(String, Bytes)>>,
    fail: AtomicUsize,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    r.got.lock().unwrap().push((sig, body));
    if r.fail.load(Ordering::SeqCst) > 0 {
        r.fail.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

async fn receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    let app = axum::Router::new().route("/hook", post(receive)).with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (r, url)
}

async fn standin(webhook_url: Option<String>) -> StripeStandin {
    StripeStandin::start(StripeStandinConfig {
        webhook_url,
        retry_base: Duration::from_millis(20),
        max_attempts: 4,
        ..Default::default()
    })
    .await
    .unwrap()
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn new(sb: &StripeStandin) -> Api {
        Api {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: sb.base_url().to_owned(),
            key: sb.secret_key().to_owned(),
        }
    }
    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        key: Option<&str>,
    ) -> (u16, Value, HeaderMap) {
        let body: String =
            form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        let r = r.send().await.unwrap();
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, r.json().await.unwrap(), h)
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
    async fn ok_post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let (s, v, _) = self.post(path, form, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }
    async fn ok_get(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }

    async fn price(&self, amount: &str, key: &str) -> String {
        let v = self
            .ok_post(
                "/v1/prices",
                &[
                    ("currency", "usd"),
                    ("unit_amount", amount),
                    ("product_data[name]", "Signals"),
                    ("recurring[interval]", "month"),
                    ("lookup_key", key),
                ],
            )
            .await;
        v["id"].as_str().unwrap().to_owned()
    }

    /// A customer subscribed through Checkout with `card` (trial days if given).
    async fn subscribed(
        &self,
        sb: &StripeStandin,
        price: &str,
        card: &str,
        trial: Option<&str>,
    ) -> (String, String) {
        let c = self
            .ok_post(
                "/v1/customers",
                &[("email", "t@example.com"), ("metadata[account_id]", "acc_1")],
            )
            .await;
        let cus = c["id"].as_str().unwrap().to_owned();
        let mut form = vec![
            ("mode", "subscription"),
            ("customer", cus.as_str()),
            ("line_items[0][price]", price),
            ("line_items[0][quantity]", "1"),
            ("success_url", "https://hub.example/ok?s={CHECKOUT_SESSION_ID}"),
            ("subscription_data[metadata][plan_id]", "pro"),
        ];
        if let Some(t) = trial {
            form.push(("subscription_data[trial_period_days]", t));
        }
        let s = self.ok_post("/v1/checkout/sessions", &form).await;
        let id = s["id"].as_str().unwrap();
        let to = sb.complete_checkout(id, card).unwrap();
        assert_eq!(to, format!("https://hub.example/ok?s={id}"));
        let subs = self.ok_get(&format!("/v1/subscriptions?customer={cus}&status=all")).await;
        (cus, subs["data"][0]["id"].as_str().unwrap().to_owned())
    }
}

fn types(sb: &StripeStandin) -> Vec<String> {
    sb.events().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn auth_is_checked_like_stripe() {
    let sb = standin(None).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/prices", sb.base_url());
    for req in [http.get(&url), http.get(&url).bearer_auth("sk_test_wrong_key_1234")] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("API key")
                || v["error"]["message"].as_str().unwrap().contains("API Key")
        );
        assert!(!v.to_string().contains(sb.secret_key()));
    }
    let r = http.get(&url).bearer_auth(sb.secret_key()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(&url).basic_auth(sb.secret_key(), Some("")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/v1/nothing", sb.base_url()))
        .bearer_auth(sb.secret_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    sb.shutdown().await;
}

#[tokio::test]
async fn parameters_are_checked_like_stripe() {
    let sb = standin(None).await;
    let api = Api::new(&sb);
    let (s, v, _) = api.post("/v1/customers", &[("email", "a@b.c"), ("colour", "red")], None).await;
    assert_eq!(
        (s, &v["error"]["code"], &v["error"]["message"]),
        (400, &json!("parameter_unknown"), &json!("Received unknown parameter: colour"))
    );
    assert_eq!(v["error"]["param"], "colour");
    let (s, v, _) = api.post("/v1/customers", &[("metadata[a][b]", "x")], None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("parameter_unknown")), "{v}");
    let (s, v, _) = api
        .post(
            "/v1/prices",
            &[
                ("unit_amount", "100"),
                ("product_data[name]", "x"),
                ("recurring[interval]", "month"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str(), v["error"]["param"].as_str()),
        (400, Some("parameter_missing"), Some("currency")),
        "{v}"
    );
    let price = api.price("1000", "k1").await;
    let (s, v, _) = api
        .post(
            "/v1/checkout/sessions",
            &[("mode", "subscription"), ("line_items[0][price]", &price)],
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str(), v["error"]["param"].as_str()),
        (400, Some("parameter_missing"), Some("success_url")),
        "{v}"
    );
    let (s, v, _) = api
        .post(
            "/v1/checkout/sessions",
            &[
                ("mode", "subscription"),
                ("line_items[0][prise]", &price),
                ("success_url", "https://x/"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (400, Some("Received unknown parameter: line_items[0][prise]")),
        "{v}"
    );
    let (s, v, _) = api
        .post(
            "/v1/prices",
            &[
                ("currency", "usd"),
                ("unit_amount", "ten"),
                ("product_data[name]", "x"),
                ("recurring[interval]", "month"),
            ],
            None,
        )
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("parameter_invalid_integer")), "{v}");
    let (s, v) = api.get("/v1/subscriptions/sub_nope").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("resource_missing")), "{v}");
    let (s, v) = api.get("/v1/invoices?expand[]=data.customer").await;
    assert_eq!(s, 400, "{v}");
    // A lookup key is unique unless transferred.
    let (s, _, _) = api
        .post(
            "/v1/prices",
            &[
                ("currency", "usd"),
                ("unit_amount", "5"),
                ("product_data[name]", "x"),
                ("recurring[interval]", "month"),
                ("lookup_key", "k1"),
            ],
            None,
        )
        .await;
    assert_eq!(s, 400);
    sb.shutdown().await;
}

#[tokio::test]
async fn idempotency_keys_replay_and_refuse_other_parameters() {
    let sb = standin(None).await;
    let api = Api::new(&sb);
    let form = [("email", "a@example.com"), ("metadata[account_id]", "acc_1")];
    let (s1, v1, h1) = api.post("/v1/customers", &form, Some("key-1")).await;
    let (s2, v2, h2) = api.post("/v1/customers", &form, Some("key-1")).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(v1, v2);
    assert!(h1.get("idempotent-replayed").is_none());
    assert_eq!(h2.get("idempotent-replayed").unwrap(), "true");
    let (s3, v3, _) = api.post("/v1/customers", &[("email", "b@example.com")], Some("key-1")).await;
    assert_eq!((s3, v3["error"]["type"].as_str()), (400, Some("idempotency_error")), "{v3}");
    // One customer was made, and its creation event once.
    assert_eq!(types(&sb).iter().filter(|t| *t == "customer.created").count(), 1);
    let (_, v4, _) = api.post("/v1/customers", &form, Some("key-2")).await;
    assert_ne!(v4["id"], v1["id"]);
    sb.shutdown().await;
}

#[tokio::test]
async fn lists_paginate() {
    let sb = standin(None).await;
    let api = Api::new(&sb);
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(api.price(&format!("{}", 100 + i), &format!("p{i}")).await);
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("/v1/prices?limit=2&starting_after={a}"),
            None => "/v1/prices?limit=2".into(),
        };
        let page = api.ok_get(&q).await;
        assert_eq!(page["object"], "list");
        assert_eq!(page["url"], "/v1/prices");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|p| p["id"].as_str().unwrap().to_owned()));
        after = data.last().map(|p| p["id"].as_str().unwrap().to_owned());
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
    }
    made.reverse(); // newest first, as Stripe lists
    assert_eq!(seen, made);
    let one = api.ok_get("/v1/prices?lookup_keys[]=p3&lookup_keys[]=p1").await;
    assert_eq!(one["data"].as_array().unwrap().len(), 2);
    let (s, _) = api.get("/v1/prices?limit=101").await;
    assert_eq!(s, 400);
    sb.shutdown().await;
}

#[tokio::test]
async fn renewal_charges_and_moves_the_period() {
    let sb = standin(None).await;
    let api = Api::new(&sb);
    let price = api.price("1500", "m").await;
    let (cus, sub) = api.subscribed(&sb, &price, "4242 4242 4242 4242", None).await;
    let s0 = api.ok_get(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(s0["status"], "active");
    assert_eq!(s0["metadata"]["plan_id"], "pro");
    let end0 = s0["items"]["data"][0]["current_period_end"].as_i64().unwrap();
    assert!(
        end0 - s0["items"]["data"][0]["current_period_start"].as_i64().unwrap() >= 28 * DAY as i64
    );
    sb.advance_clock(Duration::from_secs(31 * DAY));
    let s1 = api.ok_get(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(s1["status"], "active");
    assert_eq!(s1["items"]["data"][0]["current_period_start"].as_i64().unwrap(), end0);
    let inv = api.ok_get(&format!("/v1/invoices?customer={cus}")).await;
    let inv = inv["data"].as_array().unwrap();
    assert_eq!(inv.len(), 2);
    assert_eq!(
        (
            inv[0]["status"].as_str(),
            inv[0]["billing_reason"].as_str(),
            inv[0]["amount_paid"].as_i64()
        ),
        (Some("paid"), Some("subscription_cycle"), Some(1500))
    );
    assert_eq!(inv[0]["parent"]["subscription_details"]["subscription"], sub.as_str());
    let t = types(&sb);
    assert_eq!(t.iter().filter(|t| *t == "invoice.paid").count(), 2, "{t:?}");
    assert!(t.contains(&"customer.subscription.updated".to_owned()));
    for w in ["checkout.session.completed", "customer.subscription.created"] {
        assert!(t.contains(&w.to_owned()), "{w} in {t:?}");
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn failed_renewal_goes_past_due_retries_then_cancels() {
    let sb = standin(None).await;
    let api = Api::new(&sb);
    let price = api.price("900", "w").await;
    let (cus, sub) = api.subscribed(&sb, &price, "4000000000000341", Some("7")).await;
    let s = api.ok_get(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(s["status"], "trialing");
    assert!(!types(&sb).contains(&"invoice.paid".to_owned()), "no invoice.paid on a trial");
    sb.advance_clock(Duration::from_secs(7 * DAY));
    let s = api.ok_get(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(s["status"], "past_due");
    let inv = api.ok_get(&format!("/v1/invoices?customer={cus}")).await;
    assert_eq!(
        (inv["data"][0]["status"].as_str(), inv["data"][0]["attempt_count"].as_i64()),
        (Some("open"), Some(1))
    );
    assert!(inv["data"][0]["next_payment_attempt"].as_i64().is_some());
    sb.advance_clock(Duration::from_secs(3 * DAY));
    assert_eq!(api.ok_get(&format!("/v1/subscriptions/{sub}")).await["status"], "past_due");
    sb.advance_clock(Duration::from_secs(2 * DAY));
    let s = api.ok_get(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(s["status"], "canceled");
    assert!(s["ended_at"].as_i64().is_some());
    let inv = api.ok_get(&format!("/v1/invoices?customer={cus}")).await;
    assert_eq!(inv["data"][0]["attempt_count"].as_i64(), Some(3));
    let t = types(&sb);
    assert_eq!(t.iter().filter(|t| *t == "invoice.payment_failed").count(), 3, "{t:?}");
    assert_eq!(t.last().map(String::as_str), Some("customer.subscription.deleted"));
    // A canceled subscription is listed only with status=all or ended.
    assert_eq!(
        api.ok_get(&format!("/v1/subscriptions?customer={cus}")).await["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        api.ok_get(&format!("/v1/subscriptions?customer={cus}&status=ended")).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    sb.shutdown().await;
}

/// The portal's pages as a browser uses them: update the card (recovery), cancel at period
/// end, switch price.
#[tokio::test]
async fn portal_recovers_cancels_at_period_end_and_switches() {
    let sb = standin(None).await;
    let api = Api::new(&sb);
    let price = api.price("1000", "basic").await;
    let bigger = api.price("3000", "pro").await;
    let (cus, sub) = api.subscribed(&sb, &price, "4000000000000341", Some("3")).await;
    sb.advance_clock(Duration::from_secs(3 * DAY + 60));
    assert_eq!(api.ok_get(&format!("/v1/subscriptions/{sub}")).await["status"], "past_due");
    let ps = api
        .ok_post(
            "/v1/billing_portal/sessions",
            &[("customer", &cus), ("return_url", "https://hub.example/account")],
        )
        .await;
    let url = ps["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(sb.base_url()));
    let page = api.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("past_due") && page.contains("https://hub.example/account"), "{page}");
    // A declined card is refused with Stripe's text.
    let r = api
        .http
        .post(format!("{url}/card"))
        .form(&[("card_number", "4000000000000002"), ("exp", "12 / 34"), ("cvc", "123")])
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Your card was declined."));
    let r = api
        .http
        .post(format!("{url}/card"))
        .form(&[("card_number", "4242424242424242"), ("exp", "12 / 34"), ("cvc", "123")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(api.ok_get(&format!("/v1/subscriptions/{sub}")).await["status"], "active");
    let inv = api.ok_get(&format!("/v1/invoices?customer={cus}")).await;
    assert_eq!(inv["data"][0]["status"], "paid");
    // Switch to the bigger price: a prorated invoice, paid now.
    let r = api
        .http
        .post(format!("{url}/switch"))
        .form(&[("subscription", sub.as_str()), ("price", bigger.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let s = api.ok_get(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(s["items"]["data"][0]["price"]["id"], bigger.as_str());
    let inv = api.ok_get(&format!("/v1/invoices?customer={cus}")).await;
    let prorated = &inv["data"][0];
    assert_eq!(prorated["billing_reason"], "subscription_update");
    let amount = prorated["amount_paid"].as_i64().unwrap();
    assert!(amount > 0 && amount <= 2000, "{amount}");
    // Cancel at period end: still active until the end, then canceled with ended_at = end.
    let r = api
        .http
        .post(format!("{url}/cancel"))
        .form(&[("subscription", sub.as_str()), ("on", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let s = api.ok_get(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(
        (s["status"].as_str(), s["cancel_at_period_end"].as_bool()),
        (Some("active"), Some(true))
    );
    let end = s["items"]["data"][0]["current_period_end"].as_i64().unwrap();
    sb.advance_clock(Duration::from_secs(32 * DAY));
    let s = api.ok_get(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!((s["status"].as_str(), s["ended_at"].as_i64()), (Some("canceled"), Some(end)));
    assert_eq!(types(&sb).last().map(String::as_str), Some("customer.subscription.deleted"));
    sb.shutdown().await;
}

#[tokio::test]
async fn checkout_page_declines_and_completes() {
    let sb = standin(None).await;
    let api = Api::new(&sb);
    let price = api.price("2000", "x").await;
    let c = api.ok_post("/v1/customers", &[("email", "shown@example.com")]).await;
    let s = api
        .ok_post(
            "/v1/checkout/sessions",
            &[
                ("mode", "subscription"),
                ("customer", c["id"].as_str().unwrap()),
                ("line_items[0][price]", &price),
                ("success_url", "https://hub.example/done/{CHECKOUT_SESSION_ID}"),
            ],
        )
        .await;
    let url = s["url"].as_str().unwrap();
    let page = api.http.get(url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("shown@example.com") && page.contains("card_number"), "{page}");
    for (card, text) in [
        ("4000000000000002", "Your card was declined."),
        ("4000000000000341", "Your card was declined."),
        ("4242424242424242x", "invalid"),
    ] {
        let r = api
            .http
            .post(url)
            .form(&[("card_number", card), ("exp", "12/34"), ("cvc", "123")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains(text), "{card}");
    }
    let r = api
        .http
        .post(url)
        .form(&[("card_number", "4242424242424242"), ("exp", "13/34"), ("cvc", "123")])
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("expiration month"));
    let r = api
        .http
        .post(url)
        .form(&[("card_number", "4242424242424242"), ("exp", "12/34"), ("cvc", "123")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let id = s["id"].as_str().unwrap();
    assert_eq!(r.headers()["location"], format!("https://hub.example/done/{id}").as_str());
    let done = api.ok_get(&format!("/v1/checkout/sessions/{id}")).await;
    assert_eq!(
        (done["status"].as_str(), done["payment_status"].as_str()),
        (Some("complete"), Some("paid"))
    );
    assert!(done["subscription"].as_str().unwrap().starts_with("sub_"));
    // A completed session's page is no longer a form.
    let page = api.http.get(url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("no longer active"));
    // An open session expires after 24 h on the clock.
    let s2 = api
        .ok_post(
            "/v1/checkout/sessions",
            &[
                ("mode", "subscription"),
                ("line_items[0][price]", &price),
                ("success_url", "https://hub.example/"),
            ],
        )
        .await;
    sb.advance_clock(Duration::from_secs(DAY + 1));
    let id2 = s2["id"].as_str().unwrap();
    assert_eq!(api.ok_get(&format!("/v1/checkout/sessions/{id2}")).await["status"], "expired");
    assert!(sb.complete_checkout(id2, "4242424242424242").is_err());
    assert_eq!(types(&sb).last().map(String::as_str), Some("checkout.session.expired"));
    sb.shutdown().await;
}

fn independent_hmac(secret: &str, t: &str, body: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    let mut payload = format!("{t}.").into_bytes();
    payload.extend_from_slice(body);
    m.update(&payload);
    hex::encode(m.finalize().into_bytes())
}

fn check_signed(secret: &str, sig: &str, body: &[u8]) {
    let parts: Vec<(&str, &str)> = sig.split(',').filter_map(|p| p.split_once('=')).collect();
    let t = parts.iter().find(|(k, _)| *k == "t").unwrap().1;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    assert!((now - t.parse::<i64>().unwrap()).abs() < 60, "t is the wall clock");
    let v1 = parts.iter().find(|(k, _)| *k == "v1").unwrap().1;
    assert_eq!(v1, independent_hmac(secret, t, body));
}

#[tokio::test]
async fn webhooks_are_signed_as_stripe_signs_and_shaped_as_events() {
    let (rx, url) = receiver().await;
    let sb = standin(Some(url)).await;
    let api = Api::new(&sb);
    let price = api.price("1000", "m").await;
    api.subscribed(&sb, &price, "4242424242424242", None).await;
    assert!(sb.settle(Duration::from_secs(10)).await);
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), sb.events().len());
    for (sig, body) in &got {
        check_signed(sb.webhook_secret(), sig, body);
        let e: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(e["object"], "event");
        assert!(e["id"].as_str().unwrap().starts_with("evt_"));
        for k in
            ["api_version", "created", "data", "livemode", "pending_webhooks", "request", "type"]
        {
            assert!(e.get(k).is_some(), "{k} in {e}");
        }
        assert!(e["data"]["object"]["id"].is_string());
    }
    let delivered: Vec<String> = sb.delivered().iter().map(|d| d.event_type.clone()).collect();
    for t in ["customer.subscription.created", "invoice.paid", "checkout.session.completed"] {
        assert!(delivered.contains(&t.to_owned()), "{t} in {delivered:?}");
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn a_500_is_retried_with_backoff() {
    let (rx, url) = receiver().await;
    rx.fail.store(2, Ordering::SeqCst);
    let sb = standin(Some(url)).await;
    let api = Api::new(&sb);
    api.ok_post("/v1/customers", &[("email", "r@example.com")]).await;
    assert!(sb.settle(Duration::from_secs(10)).await);
    let d = sb.deliveries();
    let attempts: Vec<(u32, Option<u16>, bool)> =
        d.iter().map(|d| (d.attempt, d.status, d.ok)).collect();
    assert_eq!(attempts, vec![(1, Some(500), false), (2, Some(500), false), (3, Some(200), true)]);
    assert!(d.iter().all(|x| x.event_id == d[0].event_id));
    // The same signed body each time (re-signed with the time of the attempt).
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|(_, b)| *b == got[0].1));
    // An endpoint that never answers 2xx gets max_attempts tries, then nothing.
    rx.fail.store(100, Ordering::SeqCst);
    api.ok_post("/v1/customers", &[("email", "s@example.com")]).await;
    assert!(sb.settle(Duration::from_secs(10)).await);
    assert_eq!(sb.deliveries().len(), 3 + 4);
    // A connection failure is retried the same way.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    sb.set_webhook_url(dead);
    api.ok_post("/v1/customers", &[("email", "t@example.com")]).await;
    assert!(sb.settle(Duration::from_secs(10)).await);
    let d = sb.deliveries();
    assert_eq!(d.len(), 3 + 4 + 4);
    assert!(d[7..].iter().all(|x| x.status.is_none() && !x.ok), "{d:?}");
    assert_eq!(d[7..].iter().map(|x| x.attempt).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    sb.shutdown().await;
}

#[tokio::test]
async fn duplicate_reorder_and_drop_switches() {
    let (rx, url) = receiver().await;
    let sb = standin(Some(url)).await;
    let api = Api::new(&sb);
    let price = api.price("1000", "m").await;
    assert!(sb.settle(Duration::from_secs(10)).await);
    rx.got.lock().unwrap().clear();
    let before = sb.events().len();

    sb.set_delivery(Delivery { duplicate: true, reorder: false, drop: false });
    api.subscribed(&sb, &price, "4242424242424242", None).await;
    assert!(sb.settle(Duration::from_secs(10)).await);
    let made: Vec<String> =
        sb.events()[before..].iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let ids = |rx: &Receiver| -> Vec<String> {
        rx.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| {
                serde_json::from_slice::<Value>(b).unwrap()["id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let got = ids(&rx);
    assert_eq!(got.len(), made.len() * 2);
    for id in &made {
        assert_eq!(got.iter().filter(|g| *g == id).count(), 2);
    }

    rx.got.lock().unwrap().clear();
    let before = sb.events().len();
    sb.set_delivery(Delivery { duplicate: false, reorder: true, drop: false });
    api.subscribed(&sb, &price, "4242424242424242", None).await;
    assert!(sb.settle(Duration::from_secs(10)).await);
    let mut made: Vec<String> = sb.events()[before..]
        .iter()
        .filter(|e| e["type"] != "customer.created")
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    made.reverse();
    let got: Vec<String> = ids(&rx).into_iter().filter(|id| made.contains(id)).collect();
    assert_eq!(got, made, "the checkout's events arrive in reverse order");

    rx.got.lock().unwrap().clear();
    sb.set_delivery(Delivery { duplicate: false, reorder: false, drop: true });
    let before = sb.events().len();
    api.subscribed(&sb, &price, "4242424242424242", None).await;
    assert!(sb.settle(Duration::from_secs(10)).await);
    assert!(rx.got.lock().unwrap().is_empty());
    assert_eq!(sb.dropped().len(), sb.events().len() - before);
    sb.shutdown().await;
}

#[tokio::test]
async fn refunds_and_immediate_cancel() {
    let sb = standin(None).await;
    let api = Api::new(&sb);
    let price = api.price("1200", "m").await;
    let (cus, sub) = api.subscribed(&sb, &price, "4242424242424242", None).await;
    let inv = api.ok_get(&format!("/v1/invoices?customer={cus}&expand[]=data.payments")).await;
    let pi = inv["data"][0]["payments"]["data"][0]["payment"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v, _) =
        api.post("/v1/refunds", &[("payment_intent", &pi), ("amount", "5000")], None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("amount_too_large")), "{v}");
    let r = api.ok_post("/v1/refunds", &[("payment_intent", &pi)]).await;
    assert_eq!((r["amount"].as_i64(), r["status"].as_str()), (Some(1200), Some("succeeded")));
    let (s, v, _) = api.post("/v1/refunds", &[("payment_intent", &pi)], None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("charge_already_refunded")), "{v}");
    let refunded = sb.events().into_iter().find(|e| e["type"] == "charge.refunded").unwrap();
    assert_eq!(refunded["data"]["object"]["amount_refunded"], 1200);
    assert_eq!(refunded["data"]["object"]["customer"], cus.as_str());
    let r = api
        .http
        .delete(format!("{}/v1/subscriptions/{sub}", api.base))
        .bearer_auth(&api.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "canceled");
    let r = api
        .http
        .delete(format!("{}/v1/subscriptions/{sub}", api.base))
        .bearer_auth(&api.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    sb.shutdown().await;
}
