//! The hub's Stripe client against the Stripe stand-in (`tradecast-standins`) over real HTTP:
//! every object the stand-in returns is deserialized by async-stripe's types of the pinned API
//! version, which is what shows the stand-in's objects are complete. Webhooks are received by
//! a tiny axum server and verified with `signature::verify`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use secrecy::SecretString;
use tradecast_hub::billing::stripe::signature::{self, EventRef};
use tradecast_hub::billing::stripe::{
    CheckoutRequest, DisputeState, InvoiceStatus, PlanPrice, StripeClient, StripeError,
    SubscriptionStatus,
};
use tradecast_standins::stripe::{StripeStandin, StripeStandinConfig};

const DAY: u64 = 86_400;

#[derive(Default)]
struct Hooks {
    secret: Mutex<String>,
    verified: Mutex<Vec<EventRef>>,
    refused: Mutex<Vec<signature::SignatureError>>,
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn hook(State(h): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    let secret = h.secret.lock().unwrap().clone();
    match signature::verify(&secret, sig, &body, now_s()) {
        Ok(()) => {
            h.verified.lock().unwrap().push(signature::parse_event(&body).unwrap());
            StatusCode::OK
        }
        Err(e) => {
            h.refused.lock().unwrap().push(e);
            StatusCode::BAD_REQUEST
        }
    }
}

async fn success(uri: Uri) -> String {
    format!("welcome back: {}", uri.query().unwrap_or_default())
}

/// The test's own server: the webhook endpoint and the success page.
async fn site() -> (Arc<Hooks>, String) {
    let h = Arc::new(Hooks::default());
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .route("/success", get(success))
        .with_state(h.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (h, base)
}

/// What a browser does with the Checkout page: GET it, POST its form with a card, follow the
/// redirect. Returns the final URL and body.
async fn pay_in_browser(url: &str, card: &str) -> (String, String) {
    let browser = reqwest::Client::new();
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let action =
        html.split("action=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().to_owned();
    assert!(
        html.contains("name=\"card_number\"")
            && html.contains("name=\"exp\"")
            && html.contains("name=\"cvc\"")
    );
    let target = reqwest::Url::parse(url).unwrap().join(&action).unwrap();
    let r = browser
        .post(target)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("card_number={card}&exp=12%2F34&cvc=123"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let final_url = r.url().to_string();
    (final_url, r.text().await.unwrap())
}

#[tokio::test]
async fn stripe_client_journey_against_the_standin() {
    let (hooks, site) = site().await;
    let sb = StripeStandin::start(StripeStandinConfig {
        webhook_url: Some(format!("{site}/hook")),
        retry_base: Duration::from_millis(20),
        ..Default::default()
    })
    .await
    .unwrap();
    *hooks.secret.lock().unwrap() = sb.webhook_secret().to_owned();
    let key = SecretString::from(sb.secret_key().to_owned());
    let stripe = StripeClient::new(sb.base_url(), &key).unwrap().with_page_size(2);
    assert!(!format!("{stripe:?}").contains(sb.secret_key()));

    // A wrong key is Stripe's 401, typed, without the key.
    let wrong =
        StripeClient::new(sb.base_url(), &SecretString::from("sk_test_wrong_0000".to_owned()))
            .unwrap();
    match wrong.create_customer("acc_x", "x@example.com").await {
        Err(e @ StripeError::Api { status: 401, .. }) => {
            assert!(!format!("{e} {e:?}").contains("sk_test_wrong_0000"))
        }
        other => panic!("{other:?}"),
    }

    // ensure_price is idempotent: one Product and one Price, found again by lookup key.
    let plan = PlanPrice {
        plan_id: "pro",
        name: "Pro signals",
        amount_minor: 2900,
        currency: "EUR",
        period_days: 30,
    };
    let price = stripe.ensure_price(&plan).await.unwrap();
    assert_eq!(stripe.ensure_price(&plan).await.unwrap(), price);
    let created = |t: &str| sb.events().iter().filter(|e| e["type"] == t).count();
    assert_eq!((created("price.created"), created("product.created")), (1, 1));
    let weekly = stripe
        .ensure_price(&PlanPrice {
            plan_id: "weekly",
            name: "Weekly",
            amount_minor: 900,
            currency: "EUR",
            period_days: 7,
        })
        .await
        .unwrap();
    assert_ne!(weekly, price);
    // A changed plan price is a new Price that takes the lookup key over; changed back (within
    // Stripe's 24 h of idempotency keys) it is another new one, not an idempotency conflict.
    let dearer = stripe.ensure_price(&PlanPrice { amount_minor: 3900, ..plan }).await.unwrap();
    assert_ne!(dearer, price);
    assert_eq!(
        stripe.ensure_price(&PlanPrice { amount_minor: 3900, ..plan }).await.unwrap(),
        dearer
    );
    let back = stripe.ensure_price(&plan).await.unwrap();
    assert!(back != dearer && back != price);
    assert_eq!(stripe.ensure_price(&plan).await.unwrap(), back);

    // A customer per account (idempotent by the account id).
    let cus = stripe.create_customer("acc_1", "trader@example.com").await.unwrap();
    assert_eq!(stripe.create_customer("acc_1", "trader@example.com").await.unwrap(), cus);

    // Checkout, completed in a browser.
    let req = CheckoutRequest {
        customer: &cus,
        price_id: &price,
        trial_days: None,
        success_url: &format!("{site}/success?session={{CHECKOUT_SESSION_ID}}"),
        cancel_url: &format!("{site}/cancel"),
        account_id: "acc_1",
        plan_id: "pro",
        referral: Some("friend7"),
        idempotency_key: "checkout-acc_1-1",
    };
    let session = stripe.create_checkout_session(&req).await.unwrap();
    assert!(session.id.starts_with("cs_") && session.url.starts_with(sb.base_url()), "{session:?}");
    assert_eq!(
        stripe.create_checkout_session(&req).await.unwrap(),
        session,
        "a replayed key is the same session"
    );
    let (final_url, body) = pay_in_browser(&session.url, "4242424242424242").await;
    assert_eq!(final_url, format!("{site}/success?session={}", session.id));
    assert!(body.contains(&session.id));

    let subs = stripe.subscriptions_of(&cus).await.unwrap();
    assert_eq!(subs.len(), 1);
    let s = &subs[0];
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert_eq!((s.customer.as_str(), s.price_id.as_deref()), (cus.as_str(), Some(price.as_str())));
    assert_eq!(
        (s.plan_id.as_deref(), s.account_id.as_deref(), s.referral.as_deref()),
        (Some("pro"), Some("acc_1"), Some("friend7"))
    );
    let days = (s.current_period_end_ms - s.current_period_start_ms) / 86_400_000;
    assert!((28..=31).contains(&days), "a month: {days} days");
    assert_eq!(s.current_period_start_ms, sb.now_s() * 1000);
    assert!(!s.cancel_at_period_end && s.canceled_at_ms.is_none() && s.trial_end_ms.is_none());

    let inv = stripe.invoices_of(&cus).await.unwrap();
    assert_eq!(inv.len(), 1);
    let first = &inv[0];
    assert_eq!(first.status, InvoiceStatus::Paid);
    assert_eq!((first.amount_due, first.amount_paid, first.amount_refunded), (2900, 2900, 0));
    assert_eq!(first.currency, "EUR");
    assert_eq!(first.subscription.as_deref(), Some(s.id.as_str()));
    assert_eq!(first.billing_reason.as_deref(), Some("subscription_create"));
    assert_eq!(s.latest_invoice.as_deref(), Some(first.id.as_str()));
    assert!(first.paid_at_ms.is_some() && first.hosted_invoice_url.is_some());
    assert_eq!(first.payment_intents.len(), 1);

    // Renewals: every page of invoices is read (page size 2 here).
    sb.advance_clock(Duration::from_secs(3 * 31 * DAY));
    let inv = stripe.invoices_of(&cus).await.unwrap();
    assert_eq!(inv.len(), 4, "{inv:#?}");
    assert!(inv.iter().all(|i| i.status == InvoiceStatus::Paid));
    assert_eq!(
        inv.iter().filter(|i| i.billing_reason.as_deref() == Some("subscription_cycle")).count(),
        3
    );

    // A card whose charges fail, after a trial: past_due once the trial ends.
    let cus2 = stripe.create_customer("acc_2", "late@example.com").await.unwrap();
    let s2 = stripe
        .create_checkout_session(&CheckoutRequest {
            customer: &cus2,
            trial_days: Some(7),
            account_id: "acc_2",
            referral: None,
            idempotency_key: "checkout-acc_2-1",
            ..req
        })
        .await
        .unwrap();
    pay_in_browser(&s2.url, "4000000000000341").await;
    let sub2 = stripe.subscriptions_of(&cus2).await.unwrap();
    assert_eq!(sub2[0].status, SubscriptionStatus::Trialing);
    assert!(sub2[0].trial_end_ms.is_some());
    assert!(stripe.invoices_of(&cus2).await.unwrap().is_empty());
    sb.advance_clock(Duration::from_secs(8 * DAY));
    let sub2 = stripe.subscriptions_of(&cus2).await.unwrap();
    assert_eq!(sub2[0].status, SubscriptionStatus::PastDue);
    let inv2 = stripe.invoices_of(&cus2).await.unwrap();
    assert_eq!(
        (inv2[0].status.clone(), inv2[0].attempt_count, inv2[0].amount_paid),
        (InvoiceStatus::Open, 1, 0)
    );

    // The portal: a URL on the stand-in that shows the customer's state.
    let portal = stripe.create_portal_session(&cus2, &format!("{site}/account")).await.unwrap();
    let page = reqwest::get(&portal).await.unwrap().text().await.unwrap();
    assert!(page.contains("past_due") && page.contains(&format!("{site}/account")), "{page}");

    // A refund of the first paid invoice, in full; the same key replays it.
    let refund = stripe.refund_invoice(&first.id, "refund-1").await.unwrap();
    assert_eq!((refund.amount, refund.currency.as_str()), (2900, "EUR"));
    assert_eq!(stripe.refund_invoice(&first.id, "refund-1").await.unwrap(), refund);
    let again = stripe.refund_invoice(&first.id, "refund-2").await;
    assert!(
        matches!(again, Err(StripeError::Api { status: 400, ref code, .. }) if code.as_deref() == Some("charge_already_refunded")),
        "{again:?}"
    );
    let inv = stripe.invoices_of(&cus).await.unwrap();
    let refunded = inv.iter().find(|i| i.id == first.id).unwrap();
    assert_eq!(refunded.amount_refunded, 2900);

    // Cancel now; again (a retry after a lost answer) is fine too.
    stripe.cancel_subscription_now(&s.id, "cancel-1").await.unwrap();
    stripe.cancel_subscription_now(&s.id, "cancel-2").await.unwrap();
    let subs = stripe.subscriptions_of(&cus).await.unwrap();
    assert_eq!(subs[0].status, SubscriptionStatus::Canceled);
    assert!(subs[0].canceled_at_ms.is_some() && subs[0].ended_at_ms.is_some());

    // Every webhook arrived signed and verified; none refused.
    assert!(sb.settle(Duration::from_secs(10)).await);
    assert!(hooks.refused.lock().unwrap().is_empty());
    let got = hooks.verified.lock().unwrap().clone();
    assert_eq!(got.len(), sb.events().len());
    let has = |t: &str, c: &str| {
        got.iter().any(|e| e.event_type == t && e.customer.as_deref() == Some(c))
    };
    for t in [
        "checkout.session.completed",
        "customer.subscription.created",
        "invoice.paid",
        "charge.refunded",
        "customer.subscription.deleted",
    ] {
        assert!(has(t, &cus), "{t} for {cus}");
    }
    assert!(has("invoice.payment_failed", &cus2));
    assert!(has("customer.subscription.updated", &cus2));
    let ev = got
        .iter()
        .find(|e| {
            e.event_type == "customer.subscription.created"
                && e.customer.as_deref() == Some(cus.as_str())
        })
        .unwrap();
    assert_eq!((ev.object_type.as_str(), ev.object_id.as_str()), ("subscription", s.id.as_str()));
    sb.shutdown().await;
}

#[tokio::test]
async fn a_forged_or_replayed_webhook_is_refused() {
    let (hooks, site) = site().await;
    *hooks.secret.lock().unwrap() = "whsec_the_real_one".into();
    let sb = StripeStandin::start(StripeStandinConfig {
        webhook_url: Some(format!("{site}/hook")),
        webhook_secret: Some("whsec_another_one".into()),
        retry_base: Duration::from_millis(5),
        max_attempts: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let stripe =
        StripeClient::new(sb.base_url(), &SecretString::from(sb.secret_key().to_owned())).unwrap();
    stripe.create_customer("acc_9", "a@example.com").await.unwrap();
    assert!(sb.settle(Duration::from_secs(10)).await);
    assert!(hooks.verified.lock().unwrap().is_empty());
    assert_eq!(*hooks.refused.lock().unwrap(), vec![signature::SignatureError::Mismatch; 2]);
    assert!(sb.deliveries().iter().all(|d| d.status == Some(400)));
    sb.shutdown().await;
}

/// What Stripe took and gave back, read by the client as the ledger needs it: every paying
/// charge's processing fee (its balance transaction), the card's fingerprint (one card, one
/// value across customers), and a disputed payment's dispute with its fee — open, then lost.
#[tokio::test]
async fn fees_card_fingerprints_and_disputes_against_the_standin() {
    let (hooks, site) = site().await;
    let sb = StripeStandin::start(StripeStandinConfig {
        webhook_url: Some(format!("{site}/hook")),
        retry_base: Duration::from_millis(20),
        ..Default::default()
    })
    .await
    .unwrap();
    *hooks.secret.lock().unwrap() = sb.webhook_secret().to_owned();
    let key = SecretString::from(sb.secret_key().to_owned());
    let stripe = StripeClient::new(sb.base_url(), &key).unwrap();
    let plan = PlanPrice {
        plan_id: "gold",
        name: "Gold",
        amount_minor: 2900,
        currency: "USD",
        period_days: 30,
    };
    let price = stripe.ensure_price(&plan).await.unwrap();
    let mut paid = Vec::new();
    for (n, card) in
        ["4242424242424242", "4242 4242 4242 4242", "5555555555554444", "4000000000000259"]
            .iter()
            .enumerate()
    {
        let account = format!("acc_{n}");
        let cus = stripe.create_customer(&account, "t@example.com").await.unwrap();
        let req = CheckoutRequest {
            customer: &cus,
            price_id: &price,
            trial_days: None,
            success_url: &format!("{site}/success"),
            cancel_url: &format!("{site}/cancel"),
            account_id: &account,
            plan_id: "gold",
            referral: None,
            idempotency_key: &format!("checkout-{account}"),
        };
        let session = stripe.create_checkout_session(&req).await.unwrap();
        pay_in_browser(&session.url, card).await;
        let inv = stripe.invoices_of(&cus).await.unwrap();
        assert_eq!(inv.len(), 1);
        paid.push((cus, inv.into_iter().next().unwrap()));
    }
    // Stripe's standard pricing, by hand: 2.9 % of 29.00 = 0.841 → 0.84, + 0.30 = 1.14.
    for (_, i) in &paid[..3] {
        assert_eq!((i.fees, i.fees_currency.as_deref()), (114, Some("USD")), "{i:?}");
        assert!(i.disputes.is_empty());
    }
    let fp: Vec<&str> = paid.iter().map(|(_, i)| i.card_fingerprint.as_deref().unwrap()).collect();
    assert_eq!(fp[0], fp[1], "one card number, one fingerprint on two customers");
    assert_ne!(fp[0], fp[2], "another card, another fingerprint");
    // The disputing card: paid, then disputed in full at once (15.00 dispute fee).
    let (cus, i) = &paid[3];
    assert_eq!(i.status, InvoiceStatus::Paid);
    assert_eq!((i.fees, i.disputes.len()), (114 + 1500, 1));
    let d = &i.disputes[0];
    assert_eq!((d.amount, d.state), (2900, DisputeState::Open));
    assert!(
        sb.close_dispute(&d.id, true).is_ok() && sb.close_dispute(&d.id, false).is_err(),
        "closed once"
    );
    let again = stripe.invoices_of(cus).await.unwrap();
    assert_eq!(again[0].disputes[0].state, DisputeState::Won);
    assert_eq!(again[0].fees, 114 + 1500, "a won dispute's fee is not returned");

    // Another disputed customer whose dispute is lost.
    let cus5 = stripe.create_customer("acc_5", "t@example.com").await.unwrap();
    let req = CheckoutRequest {
        customer: &cus5,
        price_id: &price,
        trial_days: None,
        success_url: &format!("{site}/success"),
        cancel_url: &format!("{site}/cancel"),
        account_id: "acc_5",
        plan_id: "gold",
        referral: None,
        idempotency_key: "checkout-acc_5",
    };
    let session = stripe.create_checkout_session(&req).await.unwrap();
    pay_in_browser(&session.url, "4000000000000259").await;
    let charge = sb
        .events()
        .iter()
        .rev()
        .find(|e| e["type"] == "charge.dispute.created")
        .and_then(|e| e["data"]["object"]["charge"].as_str().map(str::to_owned))
        .unwrap();
    sb.close_dispute(&charge, false).unwrap();
    let lost = stripe.invoices_of(&cus5).await.unwrap();
    assert_eq!(lost[0].disputes[0].state, DisputeState::Lost);
    assert_eq!(stripe.customer_of_charge(&charge).await.unwrap().as_deref(), Some(cus5.as_str()));

    // The dispute's events name the charge, not the customer.
    assert!(sb.settle(Duration::from_secs(10)).await);
    let got = hooks.verified.lock().unwrap().clone();
    let dispute_events: Vec<&EventRef> =
        got.iter().filter(|e| e.event_type.starts_with("charge.dispute.")).collect();
    let types: Vec<&str> = dispute_events.iter().map(|e| e.event_type.as_str()).collect();
    for t in [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    assert!(dispute_events.iter().all(|e| e.customer.is_none() && e.charge.is_some()));
    sb.shutdown().await;
}
