//! Billing: sign-up, the catalog, and the ledger converging on what a processor reports —
//! renewals, failed payments and the grace period, cancellation at period end, refunds,
//! duplicated and reordered events — with the entitlements (what the fan-out reads) checked at
//! every step.

use serde_json::json;
use tradecast_hub::billing::ledger::{
    self, Door, EventKey, Observed, ObservedInvoice, ObservedStatus, Status,
};
use tradecast_hub::entitlements::{self, EndReason, Source};

use crate::helpers::{Backend, TestHub};
use crate::on_both;

on_both!(
    signup_makes_a_subscriber_who_can_log_in,
    catalog_lists_plans_with_their_door,
    ledger_lifecycle_moves_entitlements_forward_only,
    duplicate_and_reordered_events_converge,
    refund_ends_coverage_now_and_keeps_the_past,
    device_limit_holds_at_enrolment
);

const DAY: i64 = 86_400_000;

async fn signup_makes_a_subscriber_who_can_log_in(b: Backend) {
    let hub = TestHub::start(b).await;
    let body = json!({
        "email": "Alice@Example.com", "password": "correct horse battery", "ref": "aff_42",
    });
    let r = hub.post("/api/v1/signup", None, body.clone()).await;
    let v = r.ok(201);
    assert_eq!(v["user"]["role"], "subscriber");
    assert_eq!(v["user"]["email"], "alice@example.com");
    let token = v["tokens"]["access_token"].as_str().unwrap().to_string();
    let me = hub.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.ok(200)["email"], "alice@example.com");
    let stored: Option<String> =
        sqlx::query_scalar("SELECT signup_ref FROM users WHERE email = $1")
            .bind("alice@example.com")
            .fetch_one(hub.db.pool())
            .await
            .unwrap();
    assert_eq!(stored.as_deref(), Some("aff_42"));
    // The same e-mail again is a conflict, a weak password and a bad referral are refused.
    hub.post("/api/v1/signup", None, body).await.problem(409, "conflict");
    let weak = json!({ "email": "bob@example.com", "password": "short" });
    hub.post("/api/v1/signup", None, weak).await.problem(422, "validation");
    let bad_ref =
        json!({ "email": "bob@example.com", "password": "correct horse battery", "ref": "a b" });
    hub.post("/api/v1/signup", None, bad_ref).await.problem(422, "validation");
    let unknown =
        json!({ "email": "c@example.com", "password": "correct horse battery", "role": "owner" });
    hub.post("/api/v1/signup", None, unknown).await.problem(422, "invalid-body");
    // A signed-up subscriber has no billing yet.
    let mine = hub.get("/api/v1/billing/me", Some(&token)).await;
    assert_eq!(mine.ok(200)["subscriptions"], json!([]));
    hub.stop().await;
}

async fn catalog_lists_plans_with_their_door(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let card = json!({
        "name": "Gold", "price_minor": 4900, "currency": "USD", "period_days": 30,
        "trial_days": 7, "description": "EURUSD and gold, H1", "device_limit": 2,
        "features": ["signals", "auto_copy", "telegram"],
    });
    hub.post("/api/v1/plans", Some(&provider.token), card).await.ok(201);
    let stars =
        json!({ "name": "Stars", "price_minor": 250, "currency": "XTR", "period_days": 30 });
    hub.post("/api/v1/plans", Some(&provider.token), stars).await.ok(201);
    let stars_weekly =
        json!({ "name": "Weekly", "price_minor": 100, "currency": "XTR", "period_days": 7 });
    hub.post("/api/v1/plans", Some(&provider.token), stars_weekly).await.problem(422, "validation");
    let too_long = json!({ "name": "Trial", "price_minor": 1, "currency": "USD", "period_days": 30, "trial_days": 91 });
    hub.post("/api/v1/plans", Some(&provider.token), too_long).await.problem(422, "validation");

    let list = hub.get("/api/v1/billing/plans", None).await;
    let list = list.ok(200).as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let gold = list.iter().find(|p| p["name"] == "Gold").unwrap();
    assert_eq!(gold["door"], "stripe");
    assert_eq!(gold["trial_days"], 7);
    assert_eq!(gold["device_limit"], 2);
    assert_eq!(gold["description"], "EURUSD and gold, H1");
    let star = list.iter().find(|p| p["name"] == "Stars").unwrap();
    assert_eq!(star["door"], "telegram_stars");
    assert_eq!(star["price_minor"], 250);
    // This hub has no Stripe secret: buying by card is refused as the hub's state, not a failure.
    let buyer = hub.user(&owner, "subscriber").await;
    let body = json!({ "plan_id": gold["id"] });
    hub.post("/api/v1/billing/checkout", Some(&buyer.token), body)
        .await
        .problem(409, "not-configured");
    hub.stop().await;
}

struct World {
    hub: TestHub,
    account: String,
    provider: String,
    plan: String,
}

async fn world(b: Backend) -> World {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let sub = hub.user(&owner, "subscriber").await;
    let plan = hub.plan(&provider, "Gold", "USD").await;
    World { hub, account: sub.user_id.clone(), provider: provider.user_id.clone(), plan }
}

fn sub(w: &World, status: ObservedStatus, start: i64, end: i64) -> Observed {
    Observed {
        external_id: "sub_A".into(),
        account_id: w.account.clone(),
        plan_id: w.plan.clone(),
        status,
        period_start_ms: start,
        period_end_ms: end,
        cancel_at_period_end: false,
        trial_end_ms: None,
        ended_at_ms: None,
        unpaid_since_ms: None,
        refunded: false,
        referral: None,
        created_ms: start,
    }
}

fn invoice(id: &str, status: &str, start: i64, end: i64) -> ObservedInvoice {
    ObservedInvoice {
        external_id: id.into(),
        subscription_external_id: Some("sub_A".into()),
        status: status.into(),
        amount_due_minor: 4900,
        amount_paid_minor: if status == "paid" { 4900 } else { 0 },
        amount_refunded_minor: 0,
        currency: "USD".into(),
        period_start_ms: start,
        period_end_ms: end,
        billing_reason: Some("subscription_cycle".into()),
        hosted_url: None,
        created_ms: start,
        paid_at_ms: (status == "paid").then_some(start),
        processor: Default::default(),
    }
}

async fn apply(
    w: &World,
    event: &str,
    subs: &[Observed],
    invoices: &[ObservedInvoice],
) -> ledger::Outcome {
    let key = EventKey { door: Door::Stripe, event_id: event, kind: "test" };
    ledger::apply(w.hub.state(), Some(key), &w.account, Door::Stripe, subs, invoices, "t")
        .await
        .unwrap()
}

async fn entitled_at(w: &World, at: i64) -> bool {
    entitlements::is_entitled(&w.hub.db, &w.account, &w.provider, at).await.unwrap()
}

async fn stripe_intervals(w: &World) -> Vec<(i64, Option<i64>)> {
    let mut v: Vec<(i64, Option<i64>)> =
        entitlements::by_external_ref(&w.hub.db, Source::Stripe, "sub_A")
            .await
            .unwrap()
            .iter()
            .map(|e| (e.starts_at_ms, e.ends_at_ms()))
            .collect();
    v.sort();
    v
}

async fn ledger_lifecycle_moves_entitlements_forward_only(b: Backend) {
    let w = world(b).await;
    let t0 = w.hub.clock.now_ms();
    let p1 = t0 + 30 * DAY;
    // Subscribed: covered to the period's end plus the renewal slack.
    let out = apply(
        &w,
        "evt_1",
        &[sub(&w, ObservedStatus::Active, t0, p1)],
        &[invoice("in_1", "paid", t0, p1)],
    )
    .await;
    assert_eq!((out.granted, out.ended, out.duplicate), (1, 0, false));
    assert!(entitled_at(&w, t0 + DAY).await);
    assert!(entitled_at(&w, p1 + 1).await, "the renewal slack covers the renewal's payment");
    assert!(!entitled_at(&w, p1 + ledger::RENEWAL_SLACK_MS + 1).await);
    let subs = ledger::subscriptions_of(&w.hub.db, &w.account).await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].status, Status::Active);

    // Renewed at the period's end: a new interval from the old end, the old one untouched.
    w.hub.clock.advance_ms(30 * DAY);
    let p2 = p1 + 30 * DAY;
    let out = apply(
        &w,
        "evt_2",
        &[sub(&w, ObservedStatus::Active, p1, p2)],
        &[invoice("in_1", "paid", t0, p1), invoice("in_2", "paid", p1, p2)],
    )
    .await;
    assert_eq!((out.granted, out.ended), (1, 0));
    let iv = stripe_intervals(&w).await;
    assert_eq!(iv.len(), 2);
    assert_eq!(iv[1].0, iv[0].1.unwrap(), "the renewal starts where the last interval ended");
    assert!(entitled_at(&w, p2).await);

    // The next renewal fails: past due, covered for the grace period (7 days) from the failure.
    w.hub.clock.advance_ms(30 * DAY);
    let p3 = p2 + 30 * DAY;
    let mut due = sub(&w, ObservedStatus::PastDue, p2, p3);
    due.unpaid_since_ms = Some(p2);
    let out = apply(&w, "evt_3", &[due.clone()], &[invoice("in_3", "open", p2, p3)]).await;
    assert_eq!(
        (out.granted, out.ended),
        (1, 0),
        "the grace period extends coverage from the renewal slack"
    );
    let subs = ledger::subscriptions_of(&w.hub.db, &w.account).await.unwrap();
    assert_eq!(subs[0].status, Status::PastDue);
    assert_eq!(subs[0].covered_until_ms, p2 + 7 * DAY);
    let now = w.hub.clock.now_ms();
    assert!(entitled_at(&w, now + DAY).await);
    assert!(!entitled_at(&w, p2 + 7 * DAY + 1).await);

    // Recovered: the card is updated, the invoice paid: covered to the period's end again.
    w.hub.clock.advance_ms(2 * DAY);
    let out = apply(
        &w,
        "evt_4",
        &[sub(&w, ObservedStatus::Active, p2, p3)],
        &[invoice("in_3", "paid", p2, p3)],
    )
    .await;
    assert_eq!((out.granted, out.ended), (1, 0));
    assert!(entitled_at(&w, p3).await);
    let invoices = ledger::invoices_of(&w.hub.db, &w.account).await.unwrap();
    assert_eq!(invoices.len(), 3);
    assert!(invoices.iter().all(|i| i.status == "paid"));

    // Cancelled at period end: covered exactly to it, then expired by the processor.
    let mut cancel = sub(&w, ObservedStatus::Active, p2, p3);
    cancel.cancel_at_period_end = true;
    let out = apply(&w, "evt_5", &[cancel], &[]).await;
    assert_eq!(out.ended, 1);
    assert_eq!(
        ledger::subscriptions_of(&w.hub.db, &w.account).await.unwrap()[0].status,
        Status::Canceled
    );
    assert!(entitled_at(&w, p3 - 1).await);
    assert!(!entitled_at(&w, p3).await);
    w.hub.clock.advance_ms(30 * DAY);
    let mut ended = sub(&w, ObservedStatus::Ended, p2, p3);
    ended.ended_at_ms = Some(p3);
    let out = apply(&w, "evt_6", &[ended], &[]).await;
    assert_eq!((out.granted, out.ended), (0, 0), "nothing left to end");
    assert_eq!(
        ledger::subscriptions_of(&w.hub.db, &w.account).await.unwrap()[0].status,
        Status::Expired
    );

    // Every interval's end is at or after the moment it was written: history never changes.
    let all = entitlements::history(&w.hub.db, Some(&w.account)).await.unwrap();
    assert!(all.iter().all(|e| e.source == Source::Stripe));
    assert!(
        all.iter()
            .filter(|e| e.end_reason.is_some())
            .all(|e| e.end_reason == Some(EndReason::Cancelled))
    );
    w.hub.stop().await;
}

async fn duplicate_and_reordered_events_converge(b: Backend) {
    let w = world(b).await;
    let t0 = w.hub.clock.now_ms();
    let p1 = t0 + 30 * DAY;
    let active = sub(&w, ObservedStatus::Active, t0, p1);
    let first = apply(&w, "evt_a", std::slice::from_ref(&active), &[]).await;
    assert_eq!(first.granted, 1);
    // The same event again is a no-op, however its contents differ.
    let dup = apply(&w, "evt_a", &[], &[]).await;
    assert!(dup.duplicate);
    // Another event re-reading the same state changes nothing.
    let same = apply(&w, "evt_b", std::slice::from_ref(&active), &[]).await;
    assert_eq!((same.granted, same.ended, same.changed.len()), (0, 0, 0));
    let before = stripe_intervals(&w).await;

    // Events arriving out of order each trigger a re-read of the *current* state, so applying
    // the current state under any event order ends in the same ledger.
    let mut cancel = active.clone();
    cancel.cancel_at_period_end = true;
    apply(&w, "evt_d", std::slice::from_ref(&cancel), &[]).await;
    apply(&w, "evt_c", std::slice::from_ref(&cancel), &[]).await;
    let subs = ledger::subscriptions_of(&w.hub.db, &w.account).await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].status, Status::Canceled);
    assert_eq!(subs[0].covered_until_ms, p1);
    let after = stripe_intervals(&w).await;
    assert_eq!(after.len(), before.len());
    assert_eq!(after[0].1, Some(p1));
    // Resumed (the subscriber changed their mind): covered again past the period's end.
    apply(&w, "evt_e", std::slice::from_ref(&active), &[]).await;
    assert!(entitled_at(&w, p1 + 1).await);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM billing_events")
        .fetch_one(w.hub.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 5, "each distinct event is stored once");
    w.hub.stop().await;
}

async fn refund_ends_coverage_now_and_keeps_the_past(b: Backend) {
    let w = world(b).await;
    let t0 = w.hub.clock.now_ms();
    let p1 = t0 + 30 * DAY;
    apply(
        &w,
        "evt_1",
        &[sub(&w, ObservedStatus::Active, t0, p1)],
        &[invoice("in_1", "paid", t0, p1)],
    )
    .await;
    w.hub.clock.advance_ms(3 * DAY);
    let refund_at = w.hub.clock.now_ms();
    let mut refunded = sub(&w, ObservedStatus::Ended, t0, p1);
    refunded.refunded = true;
    refunded.ended_at_ms = Some(refund_at);
    let mut inv = invoice("in_1", "paid", t0, p1);
    inv.amount_refunded_minor = 4900;
    let out = apply(&w, "evt_2", &[refunded], &[inv]).await;
    assert_eq!(out.ended, 1);
    let subs = ledger::subscriptions_of(&w.hub.db, &w.account).await.unwrap();
    assert_eq!(subs[0].status, Status::Refunded);
    // Entitled during the three paid days (a device keeps the Close of what it received then),
    // not after the refund.
    assert!(entitled_at(&w, t0 + DAY).await);
    assert!(!entitled_at(&w, w.hub.clock.now_ms() + 1).await);
    let e = &entitlements::by_external_ref(&w.hub.db, Source::Stripe, "sub_A").await.unwrap()[0];
    assert_eq!(e.end_reason, Some(EndReason::Refunded));
    assert!(
        e.ends_at_ms().unwrap() >= refund_at,
        "an end is never earlier than when it is written"
    );
    // Revenue nets the refund.
    let revenue = ledger::revenue(&w.hub.db).await.unwrap();
    assert_eq!(revenue, vec![("USD".to_string(), 0)]);
    w.hub.stop().await;
}

/// A plan's device limit holds at enrolment: the code is not used by a refused enrolment, so
/// the trader revokes a device and enrols with the same code.
async fn device_limit_holds_at_enrolment(b: Backend) {
    use crate::helpers::{keys_record, new_identity};
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let trader = hub.user(&owner, "subscriber").await;
    let body = json!({ "name": "Solo", "price_minor": 900, "currency": "USD", "period_days": 30, "device_limit": 1 });
    let plan = hub.post("/api/v1/plans", Some(&provider.token), body).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    hub.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        json!({ "user_id": trader.user_id, "plan_id": plan }),
    )
    .await
    .ok(201);
    let (_first, first_id) = hub.enrol(&trader, "laptop").await;
    let code = hub.post("/api/v1/devices/enrolment-codes", Some(&trader.token), json!({})).await;
    let code = code.ok(201)["code"].as_str().unwrap().to_string();
    let second = new_identity();
    let enrol = |code: String| {
        let record = keys_record(&second, "vps", hub.clock.now_ms());
        hub.post("/api/v1/devices/enrol", None, json!({ "code": code, "keys_record": record }))
    };
    let refused = enrol(code.clone()).await;
    refused.problem(409, "conflict");
    assert!(
        refused.body["detail"].as_str().unwrap().contains("allows 1 device"),
        "{}",
        refused.body
    );
    hub.post(&format!("/api/v1/devices/{first_id}/revoke"), Some(&trader.token), json!({}))
        .await
        .ok(200);
    enrol(code).await.ok(201);
    hub.stop().await;
}
