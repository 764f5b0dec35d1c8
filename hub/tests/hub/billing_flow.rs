//! Billing through the hub's own pages and webhook, against the Stripe stand-in: a subscriber
//! signs up, subscribes by card in the stand-in's Checkout (driven as a browser drives it),
//! renews, fails a renewal, recovers, cancels at period end in the portal and is refunded — the
//! ledger and the entitlements (what the fan-out reads) checked at each step — and the webhook
//! answers every bad delivery as system.md fixes it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tradecast_hub::billing::ledger::{self, Status};
use tradecast_hub::billing::stripe::{StripeClient, signature};
use tradecast_hub::entitlements;
use tradecast_standins::stripe::{StripeStandin, StripeStandinConfig};

use crate::console::{csrf_of, form_body, page};
use crate::helpers::{Backend, TestHub, free_port};
use crate::on_both;

on_both!(
    card_subscription_lifecycle_through_the_stand_in,
    stripe_webhook_answers,
    missed_events_converge_at_the_nightly_reconciliation,
    console_shows_billing_and_refunds,
    upgrade_in_the_portal_and_a_trial,
    a_lost_dispute_ends_the_plan_and_fees_reach_the_revenue_page
);

const DAY_MS: i64 = 86_400_000;
const WEBHOOK: &str = "/api/v1/billing/stripe/webhook";

async fn stripe_hub(b: Backend, per_ip_burst: u32) -> (TestHub, StripeStandin) {
    let sb = StripeStandin::start(StripeStandinConfig::default()).await.unwrap();
    let port = free_port();
    let (api, key, whsec) =
        (sb.base_url().to_string(), sb.secret_key().to_string(), sb.webhook_secret().to_string());
    let hub = TestHub::start_with_secrets(
        b,
        |c| {
            c.listen = ([127, 0, 0, 1], port).into();
            c.public_url = Some(
                tradecast_hub::config::PublicUrl::parse(&format!("http://127.0.0.1:{port}"))
                    .unwrap(),
            );
            c.stripe.api_base_url = api;
            c.rate_limits.per_ip.burst = per_ip_burst;
            c.rate_limits.login_per_ip.burst = 50;
        },
        |s| {
            s.integrations.stripe_secret_key = Some(key.into());
            s.integrations.stripe_webhook_secret = Some(whsec.into());
        },
    )
    .await;
    sb.set_webhook_url(hub.url(WEBHOOK));
    (hub, sb)
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").unwrap().to_str().unwrap().to_string()
}

/// Re-reads are triggered by the stand-in's webhooks: wait until every event was delivered.
async fn settle(sb: &StripeStandin) {
    assert!(sb.settle(Duration::from_secs(20)).await, "webhooks not delivered in time");
    let failed: Vec<_> = sb.deliveries().into_iter().filter(|d| !d.ok).collect();
    assert!(failed.is_empty(), "the hub refused deliveries: {failed:?}");
}

async fn status_of(hub: &TestHub, account: &str) -> ledger::Subscription {
    let subs = ledger::subscriptions_of(&hub.db, account).await.unwrap();
    assert_eq!(subs.len(), 1, "{subs:?}");
    subs.into_iter().next().unwrap()
}

async fn card_subscription_lifecycle_through_the_stand_in(b: Backend) {
    let (hub, sb) = stripe_hub(b, 1000).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let plan = hub.plan(&provider, "Gold", "USD").await;

    // Sign up on the hub's page: signed in at once, on the account page.
    let form = [("email", "alice@example.com"), ("password", "alice password 123")];
    let r = page(&hub, "POST", "/signup", None, &[], Some(&form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let cookie = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let account = page(&hub, "GET", "/account", Some(&cookie), &[], None).await;
    assert_eq!(account.status, StatusCode::OK);
    assert!(
        account.text.contains("You have no plan yet") && account.text.contains("Subscribe by card")
    );
    let csrf = csrf_of(&account);
    let alice: String = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind("alice@example.com")
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
    assert!(
        !entitlements::is_entitled(&hub.db, &alice, &provider.user_id, hub.clock.now_ms())
            .await
            .unwrap()
    );

    // Subscribe by card: the hub sends the browser to Checkout, the card is typed there, Stripe
    // sends it back to the hub, which re-reads the customer at once.
    let form = [("csrf", csrf.as_str()), ("plan_id", plan.as_str())];
    let r = page(&hub, "POST", "/account/checkout", Some(&cookie), &[], Some(&form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let checkout_url = r.headers.get("location").unwrap().to_str().unwrap().to_string();
    assert!(checkout_url.starts_with(sb.base_url()), "{checkout_url}");
    let web = browser();
    let form_page = web.get(&checkout_url).send().await.unwrap();
    assert_eq!(form_page.status(), StatusCode::OK);
    assert!(form_page.text().await.unwrap().contains("alice@example.com"));
    let declined = web
        .post(&checkout_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("card_number", "4000000000000002"), ("exp", "12/34"), ("cvc", "123")]))
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), StatusCode::OK, "a declined card shows the form again");
    assert!(declined.text().await.unwrap().contains("declined"));
    let paid = web
        .post(&checkout_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("card_number", "4242 4242 4242 4242"),
            ("exp", "12/34"),
            ("cvc", "123"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    let back = location(&paid);
    assert!(back.starts_with(&hub.url("/billing/return?session_id=cs_")), "{back}");
    let r = web.get(&back).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/account?checkout=done");
    let s = status_of(&hub, &alice).await;
    assert_eq!(s.status, Status::Active);
    let subscribed_at = hub.clock.now_ms();
    assert!(
        entitlements::is_entitled(&hub.db, &alice, &provider.user_id, hub.clock.now_ms())
            .await
            .unwrap()
    );
    let account = page(&hub, "GET", "/account?checkout=done", Some(&cookie), &[], None).await;
    assert!(account.text.contains("your payment went through") && account.text.contains("renews"));
    assert!(account.text.contains("49.00 USD"));
    settle(&sb).await;
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM billing_events WHERE door = 'stripe'")
            .fetch_one(hub.db.pool())
            .await
            .unwrap();
    assert!(stored >= 3, "checkout, subscription and invoice events stored: {stored}");

    // A renewal a month later: a second paid invoice, covered for the new period.
    let month = Duration::from_secs(31 * 86_400);
    // (Stripe's test clock moves; webhooks are signed with the wall clock, as Stripe signs them,
    // so the hub's clock stays: the times below are the stand-in's.)
    let first_end = s.current_period_end_ms;
    sb.advance_clock(month);
    settle(&sb).await;
    let s = status_of(&hub, &alice).await;
    assert_eq!(s.status, Status::Active);
    assert!(s.current_period_end_ms > first_end + 25 * DAY_MS, "{s:?}");
    let invoices = ledger::invoices_of(&hub.db, &alice).await.unwrap();
    assert_eq!(invoices.iter().filter(|i| i.status == "paid").count(), 2, "{invoices:?}");
    assert!(
        entitlements::is_entitled(
            &hub.db,
            &alice,
            &provider.user_id,
            s.current_period_end_ms - DAY_MS
        )
        .await
        .unwrap()
    );

    // The card starts failing: the next renewal leaves it past due, entitled through the grace
    // period (7 days) only.
    let customer: String = sqlx::query_scalar(
        "SELECT stripe_customer_id FROM billing_customers WHERE account_id = $1",
    )
    .bind(&alice)
    .fetch_one(hub.db.pool())
    .await
    .unwrap();
    sb.update_card(&customer, "4000000000000341").unwrap();
    sb.advance_clock(month);
    settle(&sb).await;
    let s = status_of(&hub, &alice).await;
    assert_eq!(s.status, Status::PastDue, "{s:?}");
    let since = s.past_due_since_ms.expect("when the renewal failed");
    assert_eq!(s.covered_until_ms, since + 7 * DAY_MS, "the grace period");
    assert!(
        entitlements::is_entitled(&hub.db, &alice, &provider.user_id, since + DAY_MS)
            .await
            .unwrap()
    );
    assert!(
        !entitlements::is_entitled(&hub.db, &alice, &provider.user_id, s.covered_until_ms)
            .await
            .unwrap()
    );

    // A working card pays the open invoice: active again to the period's end.
    sb.update_card(&customer, "4242424242424242").unwrap();
    settle(&sb).await;
    let s = status_of(&hub, &alice).await;
    assert_eq!(s.status, Status::Active, "{s:?}");
    assert!(
        entitlements::is_entitled(&hub.db, &alice, &provider.user_id, s.current_period_end_ms - 1)
            .await
            .unwrap()
    );

    // Cancel at period end in the portal: covered exactly to it.
    let account = page(&hub, "GET", "/account", Some(&cookie), &[], None).await;
    assert!(account.text.contains("Manage card, plan or cancellation"));
    let form = [("csrf", csrf.as_str())];
    let r = page(&hub, "POST", "/account/portal", Some(&cookie), &[], Some(&form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let portal_url = r.headers.get("location").unwrap().to_str().unwrap().to_string();
    let portal = web.get(&portal_url).send().await.unwrap().text().await.unwrap();
    assert!(portal.contains("Cancel at period end"), "{portal}");
    let cancel_action = format!("{portal_url}/cancel");
    let r = web
        .post(&cancel_action)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("subscription", s.external_id.as_str()), ("on", "true")]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success() || r.status().is_redirection(), "{}", r.status());
    settle(&sb).await;
    let s = status_of(&hub, &alice).await;
    assert_eq!(s.status, Status::Canceled, "{s:?}");
    assert_eq!(s.covered_until_ms, s.current_period_end_ms);
    assert!(
        !entitlements::is_entitled(&hub.db, &alice, &provider.user_id, s.current_period_end_ms)
            .await
            .unwrap()
    );

    // Refunded (the owner refunds the last invoice and ends it now): access ends now; the
    // paid past keeps its entitlements.
    let client = StripeClient::new(sb.base_url(), &sb.secret_key().to_string().into()).unwrap();
    let last = ledger::invoices_of(&hub.db, &alice)
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.status == "paid")
        .unwrap();
    client.refund_invoice(&last.external_id, "refund-test").await.unwrap();
    client.cancel_subscription_now(&s.external_id, "cancel-test").await.unwrap();
    settle(&sb).await;
    let s = status_of(&hub, &alice).await;
    assert_eq!(s.status, Status::Refunded, "{s:?}");
    let now = hub.clock.now_ms();
    assert!(
        !entitlements::is_entitled(&hub.db, &alice, &provider.user_id, now + 1000).await.unwrap()
    );
    assert!(
        entitlements::is_entitled(&hub.db, &alice, &provider.user_id, subscribed_at).await.unwrap()
    );
    let revenue = ledger::revenue(&hub.db).await.unwrap();
    assert_eq!(revenue, vec![("USD".to_string(), 3 * 4900 - last.amount_paid_minor)]);
    sb.shutdown().await;
    hub.stop().await;
}

async fn stripe_webhook_answers(b: Backend) {
    let (hub, sb) = stripe_hub(b, 5).await;
    let secret = sb.webhook_secret().to_string();
    let post = |body: Vec<u8>, sig: Option<String>| {
        let mut r =
            hub.http.post(hub.url(WEBHOOK)).header("content-type", "application/json").body(body);
        if let Some(s) = sig {
            r = r.header("stripe-signature", s);
        }
        async move { crate::helpers::Resp::from(r.send().await.unwrap()).await }
    };
    let now_s = hub.clock.now_ms() / 1000;
    let sign = |secret: &str, t: i64, body: &[u8]| {
        format!("t={t},v1={}", signature::sign(secret, t, body))
    };
    let event = |id: &str| {
        json!({
            "id": id, "object": "event", "type": "balance.available", "created": now_s,
            "data": { "object": { "object": "balance" } }, "livemode": false,
        })
        .to_string()
        .into_bytes()
    };
    let body = event("evt_unknown_type");
    // Missing, malformed, wrong and stale signatures: 400 invalid-signature.
    post(body.clone(), None).await.problem(400, "invalid-signature");
    post(body.clone(), Some("t=abc".into())).await.problem(400, "invalid-signature");
    post(body.clone(), Some(sign("whsec_wrong", now_s, &body)))
        .await
        .problem(400, "invalid-signature");
    post(body.clone(), Some(sign(&secret, now_s - 301, &body)))
        .await
        .problem(400, "invalid-signature");
    // Several v1 values, one of them right: accepted; a type the hub does not follow: 200.
    let good = sign(&secret, now_s, &body);
    let v1 = good.split("v1=").nth(1).unwrap();
    let header = format!("t={now_s},v1={},v1={v1}", "0".repeat(64));
    let r = post(body.clone(), Some(header)).await;
    assert_eq!(r.ok(200)["outcome"], "ignored");
    // The same event again: a duplicate, still 200.
    let r = post(body.clone(), Some(good.clone())).await;
    assert_eq!(r.ok(200)["outcome"], "duplicate");
    // Over 256 KiB: 413.
    let big = vec![b' '; 300 * 1024];
    post(big.clone(), Some(sign(&secret, now_s, &big))).await.problem(413, "payload-too-large");
    // A burst of 200 from one address (the per-IP bucket here holds 5): never 429.
    for i in 0..200 {
        let body = event(&format!("evt_burst_{i}"));
        let sig = sign(&secret, now_s, &body);
        let r = post(body, Some(sig)).await;
        assert_eq!(r.status, StatusCode::OK, "delivery {i}: {}", r.text);
    }
    // An ordinary API route from the same address is limited as before.
    let mut limited = false;
    for _ in 0..20 {
        limited |=
            hub.get("/api/v1/billing/plans", None).await.status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "the per-IP bucket still applies elsewhere");
    sb.shutdown().await;
    hub.stop().await;
}

/// Missed webhooks (Stripe gave up, or the hub was down for days): the ledger is behind until
/// the next event of that customer or the nightly reconciliation, which re-reads everyone.
async fn missed_events_converge_at_the_nightly_reconciliation(b: Backend) {
    use tradecast_hub::jobs::Job;
    let (hub, sb) = stripe_hub(b, 1000).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let alice = hub.user(&owner, "subscriber").await;
    let plan = hub.plan(&provider, "Gold", "USD").await;
    let r =
        hub.post("/api/v1/billing/checkout", Some(&alice.token), json!({ "plan_id": plan })).await;
    let url = r.ok(201)["url"].as_str().unwrap().to_string();
    // Every webhook from now on is lost.
    sb.set_delivery(tradecast_standins::stripe::Delivery { drop: true, ..Default::default() });
    let session = url.rsplit('/').next().unwrap();
    sb.complete_checkout(session, "4242424242424242").unwrap();
    assert!(!sb.dropped().is_empty());
    assert!(ledger::subscriptions_of(&hub.db, &alice.user_id).await.unwrap().is_empty());
    // The same checkout again is refused only once the ledger knows: the reconciliation.
    let summary = tradecast_hub::billing::StripeReconcile.run(hub.state()).await.unwrap();
    assert!(summary.starts_with("1 customers re-read: 1 subscriptions corrected"), "{summary}");
    let s = status_of(&hub, &alice.user_id).await;
    assert_eq!(s.status, Status::Active);
    assert!(
        entitlements::is_entitled(&hub.db, &alice.user_id, &provider.user_id, hub.clock.now_ms())
            .await
            .unwrap()
    );
    // Nothing left to correct the second time; a second checkout of the same plan is refused.
    let again = tradecast_hub::billing::StripeReconcile.run(hub.state()).await.unwrap();
    assert!(again.contains(": 0 subscriptions corrected"), "{again}");
    hub.post("/api/v1/billing/checkout", Some(&alice.token), json!({ "plan_id": plan }))
        .await
        .problem(409, "conflict");
    sb.shutdown().await;
    hub.stop().await;
}

/// The owner sees subscriptions, invoices and revenue in the console and refunds from there;
/// the API's refund is for owners and admins only.
async fn console_shows_billing_and_refunds(b: Backend) {
    let (hub, sb) = stripe_hub(b, 1000).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let alice = hub.user(&owner, "subscriber").await;
    let plan = hub.plan(&provider, "Gold", "USD").await;
    let url = hub
        .post("/api/v1/billing/checkout", Some(&alice.token), json!({ "plan_id": plan }))
        .await
        .ok(201)["url"]
        .as_str()
        .unwrap()
        .to_string();
    sb.complete_checkout(url.rsplit('/').next().unwrap(), "4242424242424242").unwrap();
    settle(&sb).await;
    let s = status_of(&hub, &alice.user_id).await;
    assert_eq!(s.status, Status::Active);

    let cookie = crate::console::console_cookie(&hub, &owner.email, &owner.password).await;
    let overview = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    assert!(overview.text.contains("id=\"fig-subscriptions-live\">1<"), "{}", overview.text);
    assert!(overview.text.contains("id=\"fig-revenue-usd\">49.00 USD<"), "{}", overview.text);
    // The business at a glance: one active subscription worth 49 USD a month, new this month.
    for fig in
        ["id=\"fig-mrr\">49.00 USD<", "id=\"fig-new-month\">1<", "id=\"fig-status-active\">1<"]
    {
        assert!(overview.text.contains(fig), "{fig}: {}", overview.text);
    }
    let path = format!("/subscribers/{}", alice.user_id);
    let r = page(&hub, "GET", &path, Some(&cookie), &[], None).await;
    assert!(r.text.contains("Refund and end now") && r.text.contains(&s.external_id), "{}", r.text);
    let csrf = csrf_of(&r);

    // Not for a subscriber through the API.
    let api = format!("/api/v1/billing/subscriptions/{}/refund", s.id);
    hub.post(&api, Some(&alice.token), json!({})).await.problem(403, "forbidden");
    // The owner refunds from the console: refunded at Stripe, the ledger follows, audited.
    let action = format!("{path}/subscriptions/{}/refund", s.id);
    let r = page(&hub, "POST", &action, Some(&cookie), &[], Some(&[("csrf", csrf.as_str())])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let s = status_of(&hub, &alice.user_id).await;
    assert_eq!(s.status, Status::Refunded, "{s:?}");
    assert!(
        !entitlements::is_entitled(
            &hub.db,
            &alice.user_id,
            &provider.user_id,
            hub.clock.now_ms() + 1
        )
        .await
        .unwrap()
    );
    let audit = hub.get("/api/v1/audit?action=billing.refund", Some(&owner.token)).await;
    assert_eq!(audit.ok(200).as_array().map(Vec::len), Some(1), "{}", audit.body);
    // Again through the API: already refunded, nothing moves.
    let again = hub.post(&api, Some(&owner.token), json!({})).await;
    assert_eq!(again.ok(200)["status"], "refunded");
    let overview = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    assert!(overview.text.contains("id=\"fig-subscriptions-live\">0<"));
    assert!(overview.text.contains("id=\"fig-revenue-usd\">0.00 USD<"), "{}", overview.text);
    for fig in
        ["id=\"fig-mrr\">0.00 USD<", "id=\"fig-churned-month\">1<", "id=\"fig-status-refunded\">1<"]
    {
        assert!(overview.text.contains(fig), "{fig}: {}", overview.text);
    }
    sb.shutdown().await;
    hub.stop().await;
}

/// A plan change in the portal (with proration at Stripe): the subscription now names the new
/// plan, the old plan's interval ends now and the new plan's starts now; a trial plan starts
/// trialing, covered to the trial's end, nothing charged.
async fn upgrade_in_the_portal_and_a_trial(b: Backend) {
    let (hub, sb) = stripe_hub(b, 1000).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let alice = hub.user(&owner, "subscriber").await;
    let gold = hub.plan(&provider, "Gold", "USD").await;
    let platinum = hub
        .post(
            "/api/v1/plans",
            Some(&provider.token),
            json!({ "name": "Platinum", "price_minor": 7900, "currency": "USD", "period_days": 30,
                    "features": ["signals", "auto_copy", "analytics"] }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = hub
        .post("/api/v1/billing/checkout", Some(&alice.token), json!({ "plan_id": gold }))
        .await
        .ok(201)["url"]
        .as_str()
        .unwrap()
        .to_string();
    sb.complete_checkout(url.rsplit('/').next().unwrap(), "4242424242424242").unwrap();
    settle(&sb).await;
    let s = status_of(&hub, &alice.user_id).await;
    assert_eq!((s.status, s.plan_id.as_str()), (Status::Active, gold.as_str()));

    // The portal offers Platinum (its Stripe Price made when the portal opens); switch to it.
    let portal = hub.post("/api/v1/billing/portal", Some(&alice.token), json!({})).await;
    let portal_url = portal.ok(201)["url"].as_str().unwrap().to_string();
    let web = browser();
    let page_text = web.get(&portal_url).send().await.unwrap().text().await.unwrap();
    let price: String = sqlx::query_scalar("SELECT stripe_price_id FROM plans WHERE id = $1")
        .bind(&platinum)
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
    assert!(page_text.contains(&price), "{page_text}");
    let r = web
        .post(format!("{portal_url}/switch"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("subscription", s.external_id.as_str()), ("price", price.as_str())]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success() || r.status().is_redirection(), "{}", r.status());
    settle(&sb).await;
    let s = status_of(&hub, &alice.user_id).await;
    assert_eq!((s.status, s.plan_id.as_str()), (Status::Active, platinum.as_str()), "{s:?}");
    let now = hub.clock.now_ms();
    let held: Vec<String> = entitlements::active_at(&hub.db, &alice.user_id, now + 1)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.plan_id)
        .collect();
    assert_eq!(held, std::slice::from_ref(&platinum), "only the new plan is held from now");
    let features = entitlements::features_at(&hub.db, &alice.user_id, now + 1).await.unwrap();
    assert!(features.contains(&"analytics".to_string()), "{features:?}");
    let invoices = ledger::invoices_of(&hub.db, &alice.user_id).await.unwrap();
    assert!(invoices.len() >= 2, "the proration is invoiced: {invoices:?}");

    // A trial plan: trialing, covered to the trial's end, no money taken.
    let bob = hub.user(&owner, "subscriber").await;
    let trial = hub
        .post(
            "/api/v1/plans",
            Some(&provider.token),
            json!({ "name": "Try", "price_minor": 1900, "currency": "USD", "period_days": 30, "trial_days": 7 }),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = hub
        .post("/api/v1/billing/checkout", Some(&bob.token), json!({ "plan_id": trial }))
        .await
        .ok(201)["url"]
        .as_str()
        .unwrap()
        .to_string();
    sb.complete_checkout(url.rsplit('/').next().unwrap(), "4242424242424242").unwrap();
    settle(&sb).await;
    let s = status_of(&hub, &bob.user_id).await;
    assert_eq!(s.status, Status::Trialing, "{s:?}");
    let trial_end = s.trial_end_ms.expect("a trial end");
    assert!(
        entitlements::is_entitled(&hub.db, &bob.user_id, &provider.user_id, trial_end - 1)
            .await
            .unwrap()
    );
    let paid: i64 = ledger::invoices_of(&hub.db, &bob.user_id)
        .await
        .unwrap()
        .iter()
        .map(|i| i.amount_paid_minor)
        .sum();
    assert_eq!(paid, 0, "nothing charged during the trial");
    sb.shutdown().await;
    hub.stop().await;
}

/// Two instances on one PostgreSQL, a burst of webhooks for one customer spread over both: every
/// one applied (the per-customer advisory lock serialises the re-reads; the pool is not
/// exhausted), the ledger right at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_apply_one_customers_webhooks_in_turn() {
    let (hub, sb) = stripe_hub(Backend::Postgres, 1000).await;
    let (api, public) = (sb.base_url().to_string(), hub.state().config.public_url.clone());
    let other = hub
        .start_instance(|c| {
            c.stripe.api_base_url = api;
            c.public_url = public;
        })
        .await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let alice = hub.user(&owner, "subscriber").await;
    let plan = hub.plan(&provider, "Gold", "USD").await;
    let url = hub
        .post("/api/v1/billing/checkout", Some(&alice.token), json!({ "plan_id": plan }))
        .await
        .ok(201)["url"]
        .as_str()
        .unwrap()
        .to_string();
    sb.complete_checkout(url.rsplit('/').next().unwrap(), "4242424242424242").unwrap();
    settle(&sb).await;
    let customer: String = sqlx::query_scalar(
        "SELECT stripe_customer_id FROM billing_customers WHERE account_id = $1",
    )
    .bind(&alice.user_id)
    .fetch_one(hub.db.pool())
    .await
    .unwrap();
    let secret = sb.webhook_secret().to_string();
    let now_s = hub.clock.now_ms() / 1000;
    let mut sends = Vec::new();
    for i in 0..40 {
        let target = if i % 2 == 0 { &hub } else { &other };
        let body = json!({
            "id": format!("evt_burst_{i}"), "object": "event", "type": "customer.subscription.updated",
            "created": now_s, "livemode": false,
            "data": { "object": { "id": "sub_x", "object": "subscription", "customer": customer } },
        })
        .to_string();
        let sig = format!("t={now_s},v1={}", signature::sign(&secret, now_s, body.as_bytes()));
        sends.push(
            target
                .http
                .post(target.url(WEBHOOK))
                .header("content-type", "application/json")
                .header("stripe-signature", sig)
                .body(body)
                .send(),
        );
    }
    for r in futures::future::join_all(sends).await {
        let r = r.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["outcome"], "applied");
    }
    let s = status_of(&hub, &alice.user_id).await;
    assert_eq!(s.status, Status::Active);
    let burst: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM billing_events WHERE event_id LIKE 'evt_burst_%'")
            .fetch_one(hub.db.pool())
            .await
            .unwrap();
    assert_eq!(burst, 40);
    let live = entitlements::active_at(&hub.db, &alice.user_id, hub.clock.now_ms()).await.unwrap();
    assert_eq!(live.len(), 1, "one interval, not one per re-read: {live:?}");
    other.started.unwrap().stop().await.unwrap();
    sb.shutdown().await;
    hub.stop().await;
}

/// A card payment disputed by the cardholder, through the hub's webhook: the dispute's events
/// name only the charge (the hub asks Stripe whose it is), the invoice carries Stripe's fees
/// (processing 2.9 % + 0.30 and the 15.00 dispute fee) and the open dispute; lost, the hub
/// cancels the subscription at Stripe, the plan ends like a refund, and the revenue figures
/// show the chargeback and the fees.
async fn a_lost_dispute_ends_the_plan_and_fees_reach_the_revenue_page(b: Backend) {
    let (hub, sb) = stripe_hub(b, 1000).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let alice = hub.user(&owner, "subscriber").await;
    let plan = hub.plan(&provider, "Gold", "USD").await;
    let url = hub
        .post("/api/v1/billing/checkout", Some(&alice.token), json!({ "plan_id": plan }))
        .await
        .ok(201)["url"]
        .as_str()
        .unwrap()
        .to_string();
    sb.complete_checkout(url.rsplit('/').next().unwrap(), "4000000000000259").unwrap();
    settle(&sb).await;
    let s = status_of(&hub, &alice.user_id).await;
    assert_eq!(s.status, Status::Active, "paid: the dispute is not decided yet");
    let facts = || async {
        sqlx::query_as::<_, (i64, i64, Option<String>, i64, i64, Option<String>)>(
            "SELECT amount_paid_minor, fee_minor, fee_currency, amount_disputed_minor, \
             dispute_open, payment_fingerprint FROM invoices WHERE account_id = $1",
        )
        .bind(&alice.user_id)
        .fetch_one(hub.db.pool())
        .await
        .unwrap()
    };
    // 49.00: 2.9 % = 1.421 → 1.42, + 0.30 = 1.72; the dispute fee 15.00.
    let (paid, fee, cur, disputed, open, fp) = facts().await;
    assert_eq!((paid, fee, cur.as_deref(), disputed, open), (4900, 172 + 1500, Some("USD"), 0, 1));
    assert!(fp.is_some_and(|f| !f.is_empty()));
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM billing_events WHERE door = 'stripe' AND kind LIKE 'charge.dispute.%'",
    )
    .fetch_all(hub.db.pool())
    .await
    .unwrap();
    assert!(stored.contains(&"charge.dispute.created".to_string()), "{stored:?}");

    // The card network decides for the cardholder.
    let charge = sb
        .events()
        .iter()
        .find(|e| e["type"] == "charge.dispute.created")
        .and_then(|e| e["data"]["object"]["charge"].as_str().map(str::to_owned))
        .unwrap();
    sb.close_dispute(&charge, false).unwrap();
    settle(&sb).await;
    let (_, fee, _, disputed, open, _) = facts().await;
    assert_eq!((fee, disputed, open), (1672, 4900, 0));
    let s = status_of(&hub, &alice.user_id).await;
    assert_eq!(s.status, Status::Refunded, "{s:?}");
    let cancelled =
        sb.events().iter().filter(|e| e["type"] == "customer.subscription.deleted").count();
    assert_eq!(cancelled, 1, "cancelled at Stripe once");
    assert!(
        !entitlements::is_entitled(
            &hub.db,
            &alice.user_id,
            &provider.user_id,
            hub.clock.now_ms() + 1
        )
        .await
        .unwrap()
    );
    // The revenue: gross 49.00, chargeback 49.00, processor fees 16.72, net −16.72.
    let r = hub.get("/api/v1/console/revenue", Some(&owner.token)).await.ok(200).clone();
    let usd = r["currencies"].as_array().unwrap().iter().find(|c| c["currency"] == "USD").unwrap();
    let months = usd["months"].as_array().unwrap();
    let m = months.iter().find(|m| m["gross"] != "0.00").unwrap_or_else(|| panic!("{usd}"));
    assert_eq!(
        (&m["gross"], &m["chargebacks"], &m["processor_fees"], &m["refunds"], &m["net"]),
        (&json!("49.00"), &json!("49.00"), &json!("16.72"), &json!("0.00"), &json!("-16.72")),
        "{m}"
    );
    let cookie = crate::console::console_cookie(&hub, &owner.email, &owner.password).await;
    let r = page(&hub, "GET", "/revenue", Some(&cookie), &[], None).await;
    assert!(r.text.contains("Chargebacks") && r.text.contains("Processor fees"), "{}", r.text);
    let overview = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    assert!(overview.text.contains("id=\"fig-revenue-usd\">0.00 USD<"), "{}", overview.text);
    sb.shutdown().await;
    hub.stop().await;
}
