//! Affiliates: attribution (web cookie, sign-up `ref`, Telegram touch, first touch inside the
//! window), commissions booked from the billing ledger to the cent (renewals, an upgrade, refunds
//! before and after payout, a chargeback, a tier crossed, Stars at `billing.xtr_rate`), the fraud
//! rules (each one tripped and one not), payout runs (idempotent) and their CSV.

use serde_json::{Value, json};
use tradecast_hub::affiliates::store::{self, Channel, NotAttributed};
use tradecast_hub::billing::ledger::{
    self, Door, EventKey, Observed, ObservedInvoice, ObservedStatus, ProcessorFacts,
};

use crate::console::{console_cookie, csrf_of, page};
use crate::helpers::{Backend, Session, TestHub};
use crate::on_both;

on_both!(
    a_year_of_renewals_with_an_upgrade_then_a_payout,
    refunds_before_and_after_payout_and_a_chargeback,
    a_tier_crossed_mid_month,
    web_links_first_touch_wins_and_the_window_expires,
    stars_and_card_in_one_statement,
    self_referral_rules_hold_and_spare,
    burst_and_refund_rate_hold_and_spare,
    programme_api_is_for_the_owner,
    pages_for_the_affiliate_and_the_owner,
    telegram_start_ref_attributes_at_first_payment,
    disputes_wait_then_a_lost_one_reverses_through_the_ledger,
    the_affiliates_own_card_holds_and_another_spares,
    the_affiliates_trading_account_holds_and_another_spares,
    scheduled_payout_runs_start_once_on_their_day,
);

const DAY: i64 = 86_400_000;

struct World {
    hub: TestHub,
    owner: Session,
    /// The affiliate's account.
    aff: Session,
    aff_id: String,
    code: String,
    gold: String,
    platinum: String,
    stars: String,
}

async fn world(b: Backend, scheme: Value) -> World {
    let hub = TestHub::start_with(b, |c| {
        c.rate_limits.login_per_ip.burst = 500;
        c.rate_limits.login_per_ip.per_minute = 500;
    })
    .await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let gold = hub.plan(&provider, "Gold", "USD").await;
    let body =
        json!({ "name": "Platinum", "price_minor": 9900, "currency": "USD", "period_days": 30 });
    let platinum = hub.post("/api/v1/plans", Some(&provider.token), body).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stars = hub.plan(&provider, "Stars", "XTR").await;
    settings(&hub, &owner, scheme).await;
    let aff = hub.user(&owner, "subscriber").await;
    // Joined without an address (the tests all come from 127.0.0.1: the address rule has its
    // own test).
    let a = store::join(hub.state(), &aff.user_id, None, "t").await.unwrap();
    assert_eq!(a.status, "pending");
    let r = hub
        .post(
            &format!("/api/v1/affiliates/{}/decision", a.id),
            Some(&owner.token),
            json!({ "approve": true }),
        )
        .await;
    let code = r.ok(200)["codes"][0].as_str().unwrap().to_string();
    World { hub, owner, aff, aff_id: a.id, code, gold, platinum, stars }
}

/// Fresh tokens after the clock moved past their lifetime.
async fn relog(w: &mut World) {
    w.owner.token = w.hub.login(&w.owner.email, &w.owner.password).await.token;
    w.aff.token = w.hub.login(&w.aff.email, &w.aff.password).await.token;
}

/// The programme: `scheme` for every plan, holding 30 days, window 60, no threshold but USD 50.
async fn settings(hub: &TestHub, owner: &Session, scheme: Value) {
    let mut s = json!({
        "approval_required": true, "window_days": 60, "holding_days": 30,
        "refund_rate_bp": 5000, "refund_min_invoices": 100, "burst_signups": 50,
        "burst_minutes": 60, "schemes": [scheme], "tiers": [],
        "thresholds": [{ "currency": "USD", "min_minor": 5000 }],
    });
    if let Some(tiers) = scheme.get("tiers") {
        s["tiers"] = tiers.clone();
        s["schemes"][0].as_object_mut().unwrap().remove("tiers");
    }
    hub.send("PUT", "/api/v1/affiliates/settings", Some(&owner.token), Some(s)).await.ok(200);
}

fn percent(bp: i64, months: Option<i64>) -> Value {
    json!({ "plan_id": "*", "kind": "percent", "percent_bp": bp, "months": months })
}

/// A referred account (made by the owner, attributed to the world's code now).
async fn referred(w: &World) -> String {
    // The owner's token may have expired while the clock moved.
    let owner = w.hub.login(&w.owner.email, &w.owner.password).await;
    let s = w.hub.user(&owner, "subscriber").await;
    let now = w.hub.clock.now_ms();
    let r = store::attribute(w.hub.state(), &s.user_id, &w.code, now, Channel::Signup, None).await;
    assert!(r.unwrap().is_ok());
    s.user_id
}

struct Pay<'a> {
    account: &'a str,
    sub: &'a str,
    plan: &'a str,
    invoice: &'a str,
    paid: i64,
    refunded: i64,
    currency: &'a str,
    door: Door,
    processor: ProcessorFacts,
}

impl<'a> Pay<'a> {
    fn card(account: &'a str, sub: &'a str, plan: &'a str, invoice: &'a str, paid: i64) -> Pay<'a> {
        Pay {
            account,
            sub,
            plan,
            invoice,
            paid,
            refunded: 0,
            currency: "USD",
            door: Door::Stripe,
            processor: ProcessorFacts::default(),
        }
    }
}

/// The processor reports `p` paid now (a period of 30 days from now).
async fn pay(w: &World, p: &Pay<'_>) {
    let now = w.hub.clock.now_ms();
    let o = Observed {
        external_id: p.sub.into(),
        account_id: p.account.into(),
        plan_id: p.plan.into(),
        status: ObservedStatus::Active,
        period_start_ms: now,
        period_end_ms: now + 30 * DAY,
        cancel_at_period_end: false,
        trial_end_ms: None,
        ended_at_ms: None,
        unpaid_since_ms: None,
        refunded: false,
        referral: None,
        created_ms: now,
    };
    let inv = ObservedInvoice {
        external_id: p.invoice.into(),
        subscription_external_id: Some(p.sub.into()),
        status: "paid".into(),
        amount_due_minor: p.paid,
        amount_paid_minor: p.paid,
        amount_refunded_minor: p.refunded,
        currency: p.currency.into(),
        period_start_ms: now,
        period_end_ms: now + 30 * DAY,
        billing_reason: Some("subscription_cycle".into()),
        hosted_url: None,
        created_ms: now,
        paid_at_ms: Some(now),
        processor: p.processor.clone(),
    };
    let event = format!(
        "evt_{}_{}_{}_{}_{}",
        p.invoice, p.refunded, p.processor.amount_disputed_minor, p.processor.dispute_open, now
    );
    let key = EventKey { door: p.door, event_id: &event, kind: "test" };
    ledger::apply(w.hub.state(), Some(key), p.account, p.door, &[o], &[inv], "t").await.unwrap();
}

async fn invoice_id(w: &World, external: &str) -> String {
    sqlx::query_scalar("SELECT id FROM invoices WHERE external_id = $1")
        .bind(external)
        .fetch_one(w.hub.db.pool())
        .await
        .unwrap()
}

/// The affiliate's entries, oldest first: (kind, status, amount, currency, basis).
async fn entries(w: &World) -> Vec<(String, String, i64, String, i64)> {
    let s = store::statement(w.hub.state(), &w.aff_id).await.unwrap();
    let v: Vec<_> = s
        .entries
        .iter()
        .rev()
        .map(|e| {
            (e.kind.clone(), e.status.clone(), e.amount_minor, e.currency.clone(), e.basis_minor)
        })
        .collect();
    v
}

fn row(kind: &str, status: &str, amount: i64, basis: i64) -> (String, String, i64, String, i64) {
    (kind.into(), status.into(), amount, "USD".into(), basis)
}

async fn balance(w: &World) -> (i64, i64, i64, i64) {
    let s = store::statement(w.hub.state(), &w.aff_id).await.unwrap();
    s.balances
        .iter()
        .find(|b| b.currency == "USD")
        .map_or((0, 0, 0, 0), |b| (b.pending_minor, b.payable_minor, b.paid_minor, b.held_minor))
}

async fn a_year_of_renewals_with_an_upgrade_then_a_payout(b: Backend) {
    let mut w = world(b, percent(2000, Some(12))).await;
    let alice = referred(&w).await;
    let mut expected = Vec::new();
    // Months 0-5 on Gold (49.00), an upgrade with its proration (25.00) at month 6, then
    // Platinum (99.00) for months 6-11, renewed on the same day of each calendar month; month
    // 12 is outside the 12 recurring months.
    let mut start = 0;
    for m in 0..13i64 {
        if m > 0 {
            // The first payment's instant plus m calendar months (the wall clock runs on: the
            // payment is at or just after it, so month 12 is never inside).
            let due = tradecast_hub::affiliates::money::months_after(start, m);
            w.hub.clock.advance_ms(due - w.hub.clock.now_ms());
        }
        let inv = format!("in_{m}");
        if m < 6 {
            pay(&w, &Pay::card(&alice, "sub_a", &w.gold, &inv, 4900)).await;
            expected.push(row("commission", "pending", 980, 4900));
            if m == 0 {
                start = sqlx::query_scalar(
                    "SELECT paid_at_ms FROM invoices WHERE external_id = 'in_0'",
                )
                .fetch_one(w.hub.db.pool())
                .await
                .unwrap();
            }
        } else {
            if m == 6 {
                pay(&w, &Pay::card(&alice, "sub_a", &w.platinum, "in_up", 2500)).await;
                expected.push(row("commission", "pending", 500, 2500));
                w.hub.clock.advance_ms(1);
            }
            pay(&w, &Pay::card(&alice, "sub_a", &w.platinum, &inv, 9900)).await;
            if m < 12 {
                expected.push(row("commission", "pending", 1980, 9900));
            }
        }
    }
    // The same event again, and the same invoice observed again: nothing more.
    pay(&w, &Pay::card(&alice, "sub_a", &w.platinum, "in_11", 9900)).await;
    assert_eq!(entries(&w).await.len(), 13);
    // Matured: everything paid 30 days or more ago is payable (month 11 was paid a calendar
    // month ago — 28 days when it was February: three days more cover it).
    w.hub.clock.advance_ms(3 * DAY);
    let n = store::mature(w.hub.state()).await.unwrap();
    assert_eq!(n, 13);
    for e in &mut expected {
        e.1 = "payable".into();
    }
    assert_eq!(entries(&w).await, expected);
    // 6 × 9.80 + 5.00 + 6 × 19.80 = 182.60
    assert_eq!(balance(&w).await, (0, 18_260, 0, 0));

    // A payout run: the same run id twice is the same run.
    relog(&mut w).await;
    let run = w
        .hub
        .post("/api/v1/affiliates/payouts", Some(&w.owner.token), json!({ "run_id": "2027-01" }))
        .await;
    let run = run.ok(200).clone();
    assert_eq!(run["payouts"].as_array().unwrap().len(), 1);
    assert_eq!(run["payouts"][0]["amount_minor"], 18_260);
    let again = w
        .hub
        .post("/api/v1/affiliates/payouts", Some(&w.owner.token), json!({ "run_id": "2027-01" }))
        .await;
    assert_eq!(again.ok(200), &run);
    // A second run finds nothing left.
    let next = w
        .hub
        .post("/api/v1/affiliates/payouts", Some(&w.owner.token), json!({ "run_id": "2027-02" }))
        .await;
    assert_eq!(next.ok(200)["payouts"], json!([]));
    // The CSV: PayPal mass pay's columns first.
    let csv = w.hub.get("/api/v1/affiliates/payouts/2027-01/csv", Some(&w.owner.token)).await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    let prefix = w.aff_id[..12].to_string();
    assert_eq!(
        csv.text,
        format!(
            "email,amount,currency,unique_id,note,affiliate_id,amount_minor,reference,paid_at\r\n\
             {},182.60,USD,2027-01-{prefix}-USD,\"Tradecast affiliate commissions, run 2027-01\",{},18260,,\r\n",
            w.aff.email, w.aff_id
        )
    );
    // Marked paid with the bank's reference (again: the same; another reference: a conflict).
    let paid = json!({ "affiliate_id": w.aff_id, "currency": "USD", "reference": "SEPA-7781" });
    let r = w
        .hub
        .post("/api/v1/affiliates/payouts/2027-01/paid", Some(&w.owner.token), paid.clone())
        .await;
    assert_eq!(r.ok(200)["reference"], "SEPA-7781");
    w.hub.post("/api/v1/affiliates/payouts/2027-01/paid", Some(&w.owner.token), paid).await.ok(200);
    let other = json!({ "affiliate_id": w.aff_id, "currency": "USD", "reference": "other" });
    w.hub
        .post("/api/v1/affiliates/payouts/2027-01/paid", Some(&w.owner.token), other)
        .await
        .problem(409, "conflict");
    assert_eq!(balance(&w).await, (0, 0, 18_260, 0));
    // Every step is in the audit log.
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE action LIKE 'affiliate.%'")
            .fetch_all(w.hub.db.pool())
            .await
            .unwrap();
    for a in [
        "affiliate.settings",
        "affiliate.join",
        "affiliate.decide",
        "affiliate.commission",
        "affiliate.payout_run",
        "affiliate.payout_paid",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
    }
    // The affiliate's own statement agrees.
    let me = w.hub.get("/api/v1/affiliates/me", Some(&w.aff.token)).await;
    let me = me.ok(200);
    assert_eq!(me["signups"], 1);
    assert_eq!(me["conversions"], 1);
    assert_eq!(me["balances"][0]["paid_minor"], 18_260);
    w.hub.stop().await;
}

async fn refunds_before_and_after_payout_and_a_chargeback(b: Backend) {
    let w = world(b, percent(2000, None)).await;
    let bob = referred(&w).await;
    let st = w.hub.state();
    let mut s = store::settings(st).await.unwrap();
    s.thresholds[0].min_minor = 1000;
    store::save_settings(st, &w.owner.user_id, &s, "t").await.unwrap();
    // Paid, then refunded in full before any payout: the commission is cancelled.
    pay(&w, &Pay::card(&bob, "sub_b", &w.gold, "in_1", 4900)).await;
    pay(&w, &Pay { refunded: 4900, ..Pay::card(&bob, "sub_b", &w.gold, "in_1", 4900) }).await;
    assert_eq!(entries(&w).await, vec![row("commission", "cancelled", 980, 4900)]);
    // Paid twice more (in_2, in_3); both mature; run r1 pays 19.60; marked paid.
    w.hub.clock.advance_ms(30 * DAY);
    pay(&w, &Pay::card(&bob, "sub_b", &w.gold, "in_2", 4900)).await;
    w.hub.clock.advance_ms(30 * DAY);
    pay(&w, &Pay::card(&bob, "sub_b", &w.gold, "in_3", 4900)).await;
    w.hub.clock.advance_ms(30 * DAY);
    store::mature(st).await.unwrap();
    let r1 = store::run_payout(st, &w.owner.user_id, "r1", "t").await.unwrap();
    assert_eq!(r1.payouts[0].amount_minor, 1960);
    store::mark_paid(st, &w.owner.user_id, "r1", &w.aff_id, "USD", "PP-1", "t").await.unwrap();
    // After the payout: half of in_2 refunded → -4.90, payable at once (deducted next time).
    pay(&w, &Pay { refunded: 2450, ..Pay::card(&bob, "sub_b", &w.gold, "in_2", 4900) }).await;
    // A chargeback of in_3 after payout: -9.80.
    let in3 = invoice_id(&w, "in_3").await;
    store::on_chargeback(st, &in3, 4900, "t").await.unwrap();
    // The same chargeback again changes nothing.
    store::on_chargeback(st, &in3, 4900, "t").await.unwrap();
    assert_eq!(
        entries(&w).await,
        vec![
            row("commission", "cancelled", 980, 4900),
            row("commission", "paid", 980, 4900),
            row("commission", "paid", 980, 4900),
            row("reversal", "payable", -490, -2450),
            row("reversal", "payable", -980, -4900),
        ]
    );
    assert_eq!(balance(&w).await, (0, -1470, 1960, 0));
    // A negative balance is carried, never paid.
    let r2 = store::run_payout(st, &w.owner.user_id, "r2", "t").await.unwrap();
    assert!(r2.payouts.is_empty());
    // Seven more invoices, matured: the reversals are deducted from them.
    for n in 4..=10 {
        w.hub.clock.advance_ms(30 * DAY);
        pay(&w, &Pay::card(&bob, "sub_b", &w.gold, &format!("in_{n}"), 4900)).await;
    }
    w.hub.clock.advance_ms(30 * DAY);
    store::mature(st).await.unwrap();
    // 7 × 9.80 = 68.60 - 14.70 = 53.90 ≥ 10.00.
    let r3 = store::run_payout(st, &w.owner.user_id, "r3", "t").await.unwrap();
    assert_eq!(r3.payouts[0].amount_minor, 5390);
    // A chargeback of an invoice in r3 before r3 is marked paid: a negative entry, not a cancel.
    let in10 = invoice_id(&w, "in_10").await;
    store::on_chargeback(st, &in10, 4900, "t").await.unwrap();
    let last = entries(&w).await.pop().unwrap();
    assert_eq!(last, row("reversal", "payable", -980, -4900));
    w.hub.stop().await;
}

async fn a_tier_crossed_mid_month(b: Backend) {
    let tiered = json!({ "plan_id": "*", "kind": "percent", "percent_bp": 2000, "tiers": [{ "min_paying": 3, "percent_bp": 2500 }] });
    let w = world(b, tiered).await;
    let (r1, r2, r3) = (referred(&w).await, referred(&w).await, referred(&w).await);
    pay(&w, &Pay::card(&r1, "s1", &w.gold, "i1", 4900)).await; // 1 paying: 20 %
    w.hub.clock.advance_ms(9 * DAY);
    pay(&w, &Pay::card(&r2, "s2", &w.gold, "i2", 4900)).await; // 2 paying: 20 %
    w.hub.clock.advance_ms(5 * DAY);
    pay(&w, &Pay::card(&r3, "s3", &w.platinum, "i3", 9900)).await; // 3 paying: 25 % from here
    w.hub.clock.advance_ms(16 * DAY);
    pay(&w, &Pay::card(&r1, "s1", &w.gold, "i4", 4900)).await; // r1's renewal at 25 %
    assert_eq!(
        entries(&w).await,
        vec![
            row("commission", "pending", 980, 4900),
            row("commission", "pending", 980, 4900),
            row("commission", "pending", 2475, 9900),
            row("commission", "pending", 1225, 4900),
        ]
    );
    let rates: Vec<Option<i64>> = store::statement(w.hub.state(), &w.aff_id)
        .await
        .unwrap()
        .entries
        .iter()
        .rev()
        .map(|e| e.rate_bp)
        .collect();
    assert_eq!(rates, vec![Some(2000), Some(2000), Some(2500), Some(2500)]);
    w.hub.stop().await;
}

fn cookie_of(r: &crate::helpers::Resp) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("tc_ref="))
        .map(str::to_string)
}

async fn signup_form(
    w: &World,
    email: &str,
    form_ref: &str,
    cookie: Option<&str>,
) -> reqwest::StatusCode {
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let body = format!(
        "email={}&password=correct+horse+battery&ref={form_ref}",
        email.replace('@', "%40")
    );
    let mut r = client
        .post(w.hub.url("/signup"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.send().await.unwrap().status()
}

async fn referral_of(w: &World, email: &str) -> Option<(String, String)> {
    sqlx::query_as(
        "SELECT r.code, r.channel FROM affiliate_referrals r JOIN users u ON u.id = r.account_id WHERE u.email = $1",
    )
    .bind(email)
    .fetch_optional(w.hub.db.pool())
    .await
    .unwrap()
}

async fn web_links_first_touch_wins_and_the_window_expires(b: Backend) {
    let w = world(b, percent(2000, None)).await;
    // A second affiliate with its own code.
    let other = w.hub.user(&w.owner, "subscriber").await;
    let o = store::join(w.hub.state(), &other.user_id, None, "t").await.unwrap();
    let o =
        store::decide_affiliate(w.hub.state(), &w.owner.user_id, &o.id, true, "t").await.unwrap();
    let second = o.codes[0].clone();

    // The first link sets the cookie (Lax, HttpOnly, the window as Max-Age) and counts a click.
    let first = w.hub.get(&format!("/?ref={}", w.code), None).await;
    let set = cookie_of(&first).expect("a ref cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Max-Age=5184000"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    // The second code's link, with the first cookie: counted, the cookie kept.
    let r = w
        .hub
        .http
        .get(w.hub.url(&format!("/signup?ref={second}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let r = crate::helpers::Resp::from(r).await;
    assert_eq!(r.status, 200);
    assert!(cookie_of(&r).is_none(), "first touch wins");
    // An unknown code: no cookie, no click.
    let unknown = w.hub.get("/?ref=nosuchcode", None).await;
    assert!(cookie_of(&unknown).is_none());
    let pool = w.hub.db.pool().clone();
    let clicks = |code: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM affiliate_clicks WHERE code = $1")
                .bind(code)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(clicks(w.code.clone()).await, 1);
    assert_eq!(clicks(second.clone()).await, 1);
    let ip: Option<String> = sqlx::query_scalar("SELECT ip_hash FROM affiliate_clicks LIMIT 1")
        .fetch_one(w.hub.db.pool())
        .await
        .unwrap();
    assert_eq!(ip.as_deref().map(str::len), Some(32), "a keyed hash, never the address");
    // The keyed hash of the client's address (a random 32-hex string may well contain "127":
    // compare with the hash itself).
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    assert_eq!(ip, Some(tradecast_hub::affiliates::ip_hash(w.hub.state(), loopback)));

    // Carol signs up on the form carrying the second code, with the first cookie: the first wins.
    assert_eq!(signup_form(&w, "carol@example.com", &second, Some(&cookie)).await, 303);
    assert_eq!(referral_of(&w, "carol@example.com").await, Some((w.code.clone(), "web".into())));
    // Dave: the API's `ref`.
    let body =
        json!({ "email": "dave@example.com", "password": "correct horse battery", "ref": second });
    w.hub.post("/api/v1/signup", None, body).await.ok(201);
    assert_eq!(referral_of(&w, "dave@example.com").await, Some((second.clone(), "signup".into())));
    // Erin's cookie is 61 days old at sign-up: outside the 60-day window, not attributed.
    w.hub.clock.advance_ms(61 * DAY);
    assert_eq!(signup_form(&w, "erin@example.com", "", Some(&cookie)).await, 303);
    assert_eq!(referral_of(&w, "erin@example.com").await, None);
    // Fay's cookie is as old, but her form carries the second code (touched now): that one.
    assert_eq!(signup_form(&w, "fay@example.com", &second, Some(&cookie)).await, 303);
    assert_eq!(referral_of(&w, "fay@example.com").await, Some((second.clone(), "signup".into())));
    // Attributed once: a later touch does not move an account.
    let carol: String =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'carol@example.com'")
            .fetch_one(w.hub.db.pool())
            .await
            .unwrap();
    let now = w.hub.clock.now_ms();
    let again =
        store::attribute(w.hub.state(), &carol, &second, now, Channel::Signup, None).await.unwrap();
    assert_eq!(again, Err(NotAttributed::Already));
    // The window, directly: a touch 59 days old is in, 61 is out.
    let owner = w.hub.login(&w.owner.email, &w.owner.password).await;
    let fresh = w.hub.user(&owner, "subscriber").await;
    let old = store::attribute(
        w.hub.state(),
        &fresh.user_id,
        &w.code,
        now - 61 * DAY,
        Channel::Web,
        None,
    )
    .await
    .unwrap();
    assert_eq!(old, Err(NotAttributed::WindowExpired));
    let ok = store::attribute(
        w.hub.state(),
        &fresh.user_id,
        &w.code,
        now - 59 * DAY,
        Channel::Web,
        None,
    )
    .await
    .unwrap();
    assert!(ok.is_ok());
    w.hub.stop().await;
}

async fn stars_and_card_in_one_statement(b: Backend) {
    let w = world(b, percent(2000, None)).await;
    let frank = referred(&w).await;
    pay(&w, &Pay::card(&frank, "sub_card", &w.gold, "in_card", 4900)).await;
    let stars = Pay {
        currency: "XTR",
        door: Door::TelegramStars,
        ..Pay::card(&frank, "charge_1", &w.stars, "in_stars", 250)
    };
    pay(&w, &stars).await;
    let s = store::statement(w.hub.state(), &w.aff_id).await.unwrap();
    assert_eq!(s.xtr_rate, "0.013");
    assert_eq!(s.account_currency, "USD");
    let rows: Vec<(i64, String, i64, String, Option<String>)> = s
        .entries
        .iter()
        .rev()
        .map(|e| {
            (
                e.amount_minor,
                e.currency.clone(),
                e.basis_minor,
                e.basis_currency.clone(),
                e.xtr_rate.clone(),
            )
        })
        .collect();
    // 20 % of 49.00 USD = 9.80; 250 Stars × 0.013 = 3.25 USD, 20 % = 0.65 USD (rate stated).
    assert_eq!(
        rows,
        vec![
            (980, "USD".into(), 4900, "USD".into(), None),
            (65, "USD".into(), 250, "XTR".into(), Some("0.013".into())),
        ]
    );
    assert_eq!(balance(&w).await, (1045, 0, 0, 0));
    // The console's revenue figures count them as a cost: net = gross − refunds − 10.45.
    let r = w.hub.get("/api/v1/console/revenue", Some(&w.owner.token)).await;
    let body = r.ok(200);
    let usd = body["currencies"].as_array().unwrap().iter().find(|c| c["currency"] == "USD");
    let months = usd.expect("USD figures")["months"].as_array().unwrap().clone();
    let sum = |k: &str| -> rust_decimal::Decimal {
        months
            .iter()
            .map(|m| m[k].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap())
            .sum()
    };
    assert_eq!(sum("affiliate"), rust_decimal::Decimal::new(1045, 2), "{months:?}");
    assert_eq!(sum("net"), sum("gross") - sum("refunds") - rust_decimal::Decimal::new(1045, 2));
    w.hub.stop().await;
}

async fn holds_of(w: &World) -> Vec<String> {
    store::holds(w.hub.state(), true).await.unwrap().into_iter().map(|h| h.reason).collect()
}

async fn link_telegram(w: &World, account: &str, tg: i64) {
    sqlx::query("INSERT INTO telegram_links (user_id, telegram_user_id, chat_id, first_name, linked_at_ms) VALUES ($1, $2, $2, 'T', 0)")
        .bind(account)
        .bind(tg)
        .execute(w.hub.db.pool())
        .await
        .unwrap();
}

async fn self_referral_rules_hold_and_spare(b: Backend) {
    let w = world(b, percent(2000, None)).await;
    let st = w.hub.state();
    // Same account: the affiliate attributed to its own code.
    let now = w.hub.clock.now_ms();
    store::attribute(st, &w.aff.user_id, &w.code, now, Channel::Signup, None)
        .await
        .unwrap()
        .unwrap();
    pay(&w, &Pay::card(&w.aff.user_id, "s_self", &w.gold, "i_self", 4900)).await;
    assert_eq!(holds_of(&w).await, vec!["self-referral: the affiliate's own account"]);
    // The console's overview raises it as an alarm, linking to the held items.
    let cookie = crate::console::console_cookie(&w.hub, &w.owner.email, &w.owner.password).await;
    let r = crate::console::page(&w.hub, "GET", "/", Some(&cookie), &[], None).await;
    assert!(r.text.contains("id=\"fig-alarm-held-commissions\">1<"), "{}", r.text);
    assert!(r.text.contains("href=\"/affiliates#holds\""), "{}", r.text);
    // Spared: another account.
    let clean = referred(&w).await;
    pay(&w, &Pay::card(&clean, "s_clean", &w.gold, "i_clean", 4900)).await;
    assert_eq!(holds_of(&w).await.len(), 1);

    // Same Telegram user: the affiliate's Telegram user touches its own link, unlinks, links a
    // new account, which pays.
    link_telegram(&w, &w.aff.user_id, 777).await;
    assert!(store::telegram_touch(st, 777, &w.code).await.unwrap());
    sqlx::query("DELETE FROM telegram_links WHERE user_id = $1")
        .bind(&w.aff.user_id)
        .execute(w.hub.db.pool())
        .await
        .unwrap();
    let sock = w.hub.user(&w.owner, "subscriber").await;
    link_telegram(&w, &sock.user_id, 777).await;
    pay(&w, &Pay::card(&sock.user_id, "s_tg", &w.gold, "i_tg", 4900)).await;
    let referral: (String, String) =
        sqlx::query_as("SELECT code, channel FROM affiliate_referrals WHERE account_id = $1")
            .bind(&sock.user_id)
            .fetch_one(w.hub.db.pool())
            .await
            .unwrap();
    assert_eq!(referral, (w.code.clone(), "telegram".into()), "attributed at first payment");
    assert!(holds_of(&w).await.contains(&"self-referral: the same Telegram user".to_string()));
    // Spared: another Telegram user's touch.
    assert!(store::telegram_touch(st, 888, &w.code).await.unwrap());
    let tg_clean = w.hub.user(&w.owner, "subscriber").await;
    link_telegram(&w, &tg_clean.user_id, 888).await;
    pay(&w, &Pay::card(&tg_clean.user_id, "s_tg2", &w.gold, "i_tg2", 4900)).await;
    assert_eq!(holds_of(&w).await.len(), 2);

    // Same address at sign-up: an affiliate who applied from 127.0.0.1 (the API) and a sign-up
    // from it.
    let ipaff = w.hub.user(&w.owner, "subscriber").await;
    let joined = w.hub.post("/api/v1/affiliates/me", Some(&ipaff.token), json!({})).await;
    let ipaff_id = joined.ok(201)["id"].as_str().unwrap().to_string();
    let a = store::decide_affiliate(st, &w.owner.user_id, &ipaff_id, true, "t").await.unwrap();
    let body = json!({ "email": "ip@example.com", "password": "correct horse battery", "ref": a.codes[0] });
    let user = w.hub.post("/api/v1/signup", None, body).await.ok(201)["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    pay(&w, &Pay::card(&user, "s_ip", &w.gold, "i_ip", 4900)).await;
    assert!(
        holds_of(&w)
            .await
            .contains(&"self-referral: signed up from the affiliate's address".to_string())
    );
    // Spared: the world's affiliate applied without an address; a sign-up from 127.0.0.1.
    let body =
        json!({ "email": "ip2@example.com", "password": "correct horse battery", "ref": w.code });
    let user2 = w.hub.post("/api/v1/signup", None, body).await.ok(201)["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    pay(&w, &Pay::card(&user2, "s_ip2", &w.gold, "i_ip2", 4900)).await;
    assert_eq!(holds_of(&w).await.len(), 3);

    // Held commissions never mature; the owner releases one and rejects another.
    w.hub.clock.advance_ms(31 * DAY);
    let owner = w.hub.login(&w.owner.email, &w.owner.password).await;
    store::mature(st).await.unwrap();
    let held = store::holds(st, true).await.unwrap();
    assert_eq!(held.len(), 3);
    let pool = w.hub.db.pool().clone();
    let statuses = |id: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT status FROM affiliate_commissions WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    for h in &held {
        assert_eq!(statuses(h.commission_id.clone()).await, "held");
    }
    let release = w
        .hub
        .post(
            &format!("/api/v1/affiliates/holds/{}/decision", held[0].id),
            Some(&owner.token),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(release.status, 204);
    assert_eq!(statuses(held[0].commission_id.clone()).await, "pending");
    store::decide_hold(st, &w.owner.user_id, &held[1].id, false, "t").await.unwrap();
    assert_eq!(statuses(held[1].commission_id.clone()).await, "rejected");
    // A rejected hold cannot be released afterwards.
    let late = w
        .hub
        .post(
            &format!("/api/v1/affiliates/holds/{}/decision", held[1].id),
            Some(&owner.token),
            json!({ "approve": true }),
        )
        .await;
    late.problem(409, "conflict");
    assert_eq!(store::holds(st, true).await.unwrap().len(), 1);
    w.hub.stop().await;
}

async fn burst_and_refund_rate_hold_and_spare(b: Backend) {
    let w = world(b, percent(2000, None)).await;
    let st = w.hub.state();
    let mut s = store::settings(st).await.unwrap();
    s.burst_signups = 3;
    s.burst_minutes = 60;
    s.refund_rate_bp = 3000;
    s.refund_min_invoices = 3;
    store::save_settings(st, &w.owner.user_id, &s, "t").await.unwrap();
    // Spared: three sign-ups from one address two hours apart.
    let mut users = Vec::new();
    for n in 0..3 {
        let body = json!({ "email": format!("slow{n}@example.com"), "password": "correct horse battery", "ref": w.code });
        users.push(
            w.hub.post("/api/v1/signup", None, body).await.ok(201)["user"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        w.hub.clock.advance_ms(2 * 3600 * 1000);
    }
    for (n, u) in users.iter().enumerate() {
        pay(&w, &Pay::card(u, &format!("slow_s{n}"), &w.gold, &format!("slow_i{n}"), 4900)).await;
    }
    assert!(holds_of(&w).await.is_empty());
    // Tripped: three within a few minutes.
    let mut fast = Vec::new();
    for n in 0..3 {
        let body = json!({ "email": format!("fast{n}@example.com"), "password": "correct horse battery", "ref": w.code });
        fast.push(
            w.hub.post("/api/v1/signup", None, body).await.ok(201)["user"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        w.hub.clock.advance_ms(60_000);
    }
    pay(&w, &Pay::card(&fast[2], "fast_s", &w.gold, "fast_i", 4900)).await;
    assert_eq!(holds_of(&w).await, vec!["burst: 3 sign-ups from one address within 60 minutes"]);

    // Refund rate: 4 commissions so far (1 held), none refunded: a new one is spared.
    let clean = referred(&w).await;
    pay(&w, &Pay::card(&clean, "clean_s", &w.gold, "clean_i", 4900)).await;
    assert_eq!(holds_of(&w).await.len(), 1);
    // Two of the five refunded (40 % > 30 %): the next commission is held for the rate.
    for (u, sub, inv) in [(&users[0], "slow_s0", "slow_i0"), (&users[1], "slow_s1", "slow_i1")] {
        pay(&w, &Pay { refunded: 4900, ..Pay::card(u, sub, &w.gold, inv, 4900) }).await;
    }
    w.hub.clock.advance_ms(30 * DAY);
    pay(&w, &Pay::card(&users[2], "slow_s2", &w.gold, "slow_i2b", 4900)).await;
    let reasons = holds_of(&w).await;
    assert!(
        reasons.contains(&"refund rate: 2 of 5 commissions refunded, above 30%".to_string()),
        "{reasons:?}"
    );
    w.hub.stop().await;
}

async fn programme_api_is_for_the_owner(b: Backend) {
    let w = world(b, percent(2000, None)).await;
    let sub = w.hub.user(&w.owner, "subscriber").await;
    // Reads and changes of the programme are refused to a subscriber.
    w.hub.get("/api/v1/affiliates/settings", Some(&sub.token)).await.problem(403, "forbidden");
    w.hub.get("/api/v1/affiliates", Some(&sub.token)).await.problem(403, "forbidden");
    w.hub
        .post("/api/v1/affiliates/payouts", Some(&sub.token), json!({ "run_id": "x" }))
        .await
        .problem(403, "forbidden");
    // Not an affiliate yet: 404; joining (approval required: pending, no code); twice: 409.
    w.hub.get("/api/v1/affiliates/me", Some(&sub.token)).await.problem(404, "not-found");
    let j = w.hub.post("/api/v1/affiliates/me", Some(&sub.token), json!({})).await;
    assert_eq!(j.ok(201)["status"], "pending");
    assert_eq!(j.body["codes"], json!([]));
    w.hub.post("/api/v1/affiliates/me", Some(&sub.token), json!({})).await.problem(409, "conflict");
    w.hub
        .post("/api/v1/affiliates/me/codes", Some(&sub.token), json!({ "code": "mine" }))
        .await
        .problem(403, "forbidden");
    // The world's affiliate adds its own code; a taken or bad one is refused.
    let c = w
        .hub
        .post("/api/v1/affiliates/me/codes", Some(&w.aff.token), json!({ "code": "gold-trader" }))
        .await;
    assert_eq!(c.ok(201)["code"], "gold-trader");
    w.hub
        .post("/api/v1/affiliates/me/codes", Some(&w.aff.token), json!({ "code": "gold-trader" }))
        .await
        .problem(409, "conflict");
    w.hub
        .post("/api/v1/affiliates/me/codes", Some(&w.aff.token), json!({ "code": "a b" }))
        .await
        .problem(422, "validation");
    // Bad settings are refused with the reason.
    let bad = json!({
        "approval_required": false, "window_days": 0, "holding_days": 30, "refund_rate_bp": 1,
        "refund_min_invoices": 1, "burst_signups": 5, "burst_minutes": 60, "schemes": [],
        "tiers": [], "thresholds": [],
    });
    w.hub
        .send("PUT", "/api/v1/affiliates/settings", Some(&w.owner.token), Some(bad))
        .await
        .problem(422, "validation");
    // The owner's list shows both affiliates.
    let list = w.hub.get("/api/v1/affiliates", Some(&w.owner.token)).await;
    assert_eq!(list.ok(200).as_array().unwrap().len(), 2);
    w.hub.stop().await;
}

async fn pages_for_the_affiliate_and_the_owner(b: Backend) {
    let w = world(b, percent(2000, None)).await;
    let alice = referred(&w).await;
    pay(&w, &Pay::card(&alice, "sub_p", &w.gold, "in_p", 4900)).await;
    // The affiliate's page: its code, figures and the pending commission.
    let cookie = console_cookie(&w.hub, &w.aff.email, &w.aff.password).await;
    let r = page(&w.hub, "GET", "/affiliate", Some(&cookie), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains(&format!("/signup?ref={}", w.code)));
    assert!(r.text.contains("id=\"fig-signups\">1<"), "{}", r.text);
    assert!(r.text.contains("id=\"fig-conversions\">1<"));
    assert!(r.text.contains("9.80 USD") && r.text.contains("pending"));
    // A code added from the page (the CSRF token required).
    let csrf = csrf_of(&r);
    let no =
        page(&w.hub, "POST", "/affiliate/codes", Some(&cookie), &[], Some(&[("code", "nope")]))
            .await;
    assert_eq!(no.status, 403);
    let form = [("csrf", csrf.as_str()), ("code", "alice-friends")];
    let r = page(&w.hub, "POST", "/affiliate/codes", Some(&cookie), &[], Some(&form)).await;
    assert_eq!(r.status, 303);
    // The console: a subscriber is refused; the owner sees the affiliate and saves the programme.
    let r = page(&w.hub, "GET", "/affiliates", Some(&cookie), &[], None).await;
    assert_eq!(r.status, 403);
    let owner = console_cookie(&w.hub, &w.owner.email, &w.owner.password).await;
    let r = page(&w.hub, "GET", "/affiliates", Some(&owner), &[], None).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains(&w.aff.email) && r.text.contains("alice-friends"));
    let one =
        page(&w.hub, "GET", &format!("/affiliates/{}", w.aff_id), Some(&owner), &[], None).await;
    assert_eq!(one.status, 200);
    assert!(one.text.contains("9.80 USD") && one.text.contains("id=\"fig-conversions\">1<"));
    let none = page(&w.hub, "GET", "/affiliates/nosuch", Some(&owner), &[], None).await;
    assert_eq!(none.status, 404);
    let csrf = csrf_of(&r);
    let form = [
        ("csrf", csrf.as_str()),
        ("s.*.kind", "percent"),
        ("s.*.percent_bp", "3000"),
        ("s.*.months", ""),
        ("s.*.fixed_minor", "0"),
        ("s.*.fixed_currency", ""),
        ("tiers", ""),
        ("thresholds", "USD:500"),
        ("window_days", "30"),
        ("holding_days", "14"),
        ("refund_rate_bp", "3000"),
        ("refund_min_invoices", "5"),
        ("burst_signups", "5"),
        ("burst_minutes", "60"),
    ];
    let r = page(&w.hub, "POST", "/affiliates/settings", Some(&owner), &[], Some(&form)).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let s = store::settings(w.hub.state()).await.unwrap();
    assert_eq!((s.window_days, s.holding_days, s.approval_required), (30, 14, false));
    assert_eq!(s.schemes[0].percent_bp, 3000);
    // A payout run from the page, its CSV.
    w.hub.clock.advance_ms(31 * DAY);
    store::mature(w.hub.state()).await.unwrap();
    let owner = console_cookie(&w.hub, &w.owner.email, &w.owner.password).await;
    let r = page(&w.hub, "GET", "/affiliates", Some(&owner), &[], None).await;
    let csrf = csrf_of(&r);
    let form = [("csrf", csrf.as_str()), ("run_id", "page-run")];
    let r = page(&w.hub, "POST", "/affiliates/payouts", Some(&owner), &[], Some(&form)).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let r = page(&w.hub, "GET", "/affiliates/payouts/page-run/csv", Some(&owner), &[], None).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains(&format!("{},9.80,USD,page-run-", w.aff.email)), "{}", r.text);
    w.hub.stop().await;
}

async fn telegram_start_ref_attributes_at_first_payment(b: Backend) {
    use tradecast_standins::telegram::{TelegramStandin, TelegramStandinConfig};
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub =
        crate::telegram_bot::hub_with_bot(b, &sb, tradecast_hub::config::TelegramMode::Webhook)
            .await;
    let owner = hub.owner().await;
    let provider = hub.user(&owner, "provider").await;
    let gold = hub.plan(&provider, "Gold", "USD").await;
    settings(&hub, &owner, percent(2000, None)).await;
    let aff = hub.user(&owner, "subscriber").await;
    let a = store::join(hub.state(), &aff.user_id, None, "t").await.unwrap();
    let a = store::decide_affiliate(hub.state(), &owner.user_id, &a.id, true, "t").await.unwrap();
    let code = a.codes[0].clone();
    // Bob opens t.me/<bot>?start=ref_<code>: the usual welcome, the touch kept.
    sb.user(601, "Bob", Some("bob")).unwrap();
    sb.user_says(601, &format!("/start ref_{code}")).unwrap();
    crate::telegram_bot::reply(&sb, 601, "Welcome to Tradecast").await;
    let touch: (String,) =
        sqlx::query_as("SELECT code FROM affiliate_telegram_touches WHERE telegram_user_id = 601")
            .fetch_one(hub.db.pool())
            .await
            .unwrap();
    assert_eq!(touch.0, code);
    // An unknown code: the welcome too, nothing kept.
    sb.user(602, "Eve", None).unwrap();
    sb.user_says(602, "/start ref_nosuch").unwrap();
    crate::telegram_bot::reply(&sb, 602, "Welcome to Tradecast").await;
    let none: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM affiliate_telegram_touches WHERE telegram_user_id = 602",
    )
    .fetch_one(hub.db.pool())
    .await
    .unwrap();
    assert_eq!(none, 0);
    // Bob's account links that Telegram user, then pays: attributed (telegram) and commissioned.
    let bob = hub.user(&owner, "subscriber").await;
    let link = crate::telegram_bot::link_code(&hub, &bob, sb.bot_username()).await;
    sb.user_says(601, &format!("/start {link}")).unwrap();
    crate::telegram_bot::reply(&sb, 601, "Linked to").await;
    let now = hub.clock.now_ms();
    let o = Observed {
        external_id: "sub_tg".into(),
        account_id: bob.user_id.clone(),
        plan_id: gold.clone(),
        status: ObservedStatus::Active,
        period_start_ms: now,
        period_end_ms: now + 30 * DAY,
        cancel_at_period_end: false,
        trial_end_ms: None,
        ended_at_ms: None,
        unpaid_since_ms: None,
        refunded: false,
        referral: None,
        created_ms: now,
    };
    let inv = ObservedInvoice {
        external_id: "in_tg".into(),
        subscription_external_id: Some("sub_tg".into()),
        status: "paid".into(),
        amount_due_minor: 4900,
        amount_paid_minor: 4900,
        amount_refunded_minor: 0,
        currency: "USD".into(),
        period_start_ms: now,
        period_end_ms: now + 30 * DAY,
        billing_reason: Some("subscription_create".into()),
        hosted_url: None,
        created_ms: now,
        paid_at_ms: Some(now),
        processor: Default::default(),
    };
    let key = EventKey { door: Door::Stripe, event_id: "evt_tg", kind: "test" };
    ledger::apply(hub.state(), Some(key), &bob.user_id, Door::Stripe, &[o], &[inv], "t")
        .await
        .unwrap();
    let r: (String, String) =
        sqlx::query_as("SELECT code, channel FROM affiliate_referrals WHERE account_id = $1")
            .bind(&bob.user_id)
            .fetch_one(hub.db.pool())
            .await
            .unwrap();
    assert_eq!(r, (code, "telegram".into()));
    let st = store::statement(hub.state(), &a.id).await.unwrap();
    assert_eq!(st.clicks, 1);
    assert_eq!(
        (st.entries.len(), st.entries[0].amount_minor, st.entries[0].status.as_str()),
        (1, 980, "pending")
    );
    hub.stop().await;
}

/// A disputed payment's commission waits while the dispute is open (past its holding period
/// too); a dispute won lets it mature, a dispute lost (a chargeback) cancels it — both as the
/// processor reports them through the ledger.
async fn disputes_wait_then_a_lost_one_reverses_through_the_ledger(b: Backend) {
    let w = world(b, percent(2000, None)).await;
    let st = w.hub.state();
    let open = ProcessorFacts {
        fee_minor: 172 + 1500,
        fee_currency: Some("USD".into()),
        dispute_open: true,
        ..ProcessorFacts::default()
    };
    let won_acc = referred(&w).await;
    let lost_acc = referred(&w).await;
    for (acc, sub, inv) in [(&won_acc, "s_won", "i_won"), (&lost_acc, "s_lost", "i_lost")] {
        let p = Pay { processor: open.clone(), ..Pay::card(acc, sub, &w.gold, inv, 4900) };
        pay(&w, &p).await;
    }
    assert_eq!(entries(&w).await, vec![row("commission", "pending", 980, 4900); 2]);
    let fees: (i64, Option<String>, i64) = sqlx::query_as(
        "SELECT fee_minor, fee_currency, dispute_open FROM invoices WHERE external_id = 'i_won'",
    )
    .fetch_one(w.hub.db.pool())
    .await
    .unwrap();
    assert_eq!(fees, (1672, Some("USD".into()), 1));
    w.hub.clock.advance_ms(31 * DAY);
    assert_eq!(store::mature(st).await.unwrap(), 0, "open disputes hold both past 30 days");
    // Won: the dispute closes, the payment stays; lost: 49.00 back to the cardholder.
    let won = Pay {
        processor: ProcessorFacts { dispute_open: false, ..open.clone() },
        ..Pay::card(&won_acc, "s_won", &w.gold, "i_won", 4900)
    };
    pay(&w, &won).await;
    let lost = ProcessorFacts { dispute_open: false, amount_disputed_minor: 4900, ..open.clone() };
    let lost = Pay { processor: lost, ..Pay::card(&lost_acc, "s_lost", &w.gold, "i_lost", 4900) };
    pay(&w, &lost).await;
    pay(&w, &lost).await;
    assert_eq!(store::mature(st).await.unwrap(), 1);
    assert_eq!(
        entries(&w).await,
        vec![row("commission", "payable", 980, 4900), row("commission", "cancelled", 980, 4900)]
    );
    let audit: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'affiliate.cancel' AND detail LIKE '%chargeback%'",
    )
    .fetch_one(w.hub.db.pool())
    .await
    .unwrap();
    assert_eq!(audit, 1, "the cancellation says why, once");
    let disputed: i64 = sqlx::query_scalar(
        "SELECT amount_disputed_minor FROM invoices WHERE external_id = 'i_lost'",
    )
    .fetch_one(w.hub.db.pool())
    .await
    .unwrap();
    assert_eq!(disputed, 4900);
}

/// The processor's card fingerprint: the referred account paid with the card the affiliate
/// paid their own plan with — held; a different card — spared.
async fn the_affiliates_own_card_holds_and_another_spares(b: Backend) {
    let w = world(b, percent(2000, None)).await;
    let card = |f: &str| ProcessorFacts {
        payment_fingerprint: Some(f.into()),
        ..ProcessorFacts::default()
    };
    // The affiliate pays their own subscription (nobody referred them: no commission).
    let own = Pay {
        processor: card("fpAFFILIATE01"),
        ..Pay::card(&w.aff.user_id, "s_own", &w.gold, "i_own", 4900)
    };
    pay(&w, &own).await;
    assert!(entries(&w).await.is_empty());
    let same = referred(&w).await;
    let p = Pay {
        processor: card("fpAFFILIATE01"),
        ..Pay::card(&same, "s_same", &w.gold, "i_same", 4900)
    };
    pay(&w, &p).await;
    assert_eq!(holds_of(&w).await, vec!["self-referral: paid with the affiliate's card"]);
    let other = referred(&w).await;
    let p = Pay {
        processor: card("fpSOMEONEELSE"),
        ..Pay::card(&other, "s_other", &w.gold, "i_other", 4900)
    };
    pay(&w, &p).await;
    let no_card = referred(&w).await;
    pay(&w, &Pay::card(&no_card, "s_none", &w.gold, "i_none", 4900)).await;
    assert_eq!(holds_of(&w).await.len(), 1, "another card and no card are spared");
    assert_eq!(
        entries(&w).await,
        vec![
            row("commission", "held", 980, 4900),
            row("commission", "pending", 980, 4900),
            row("commission", "pending", 980, 4900),
        ]
    );
}

/// A weekly schedule starts the run of the latest scheduled day once, only when something is
/// payable, and never for a day before the schedule was set.
async fn scheduled_payout_runs_start_once_on_their_day(b: Backend) {
    let mut w = world(b, percent(2000, None)).await;
    let st = &w.hub.state().clone();
    let acc = referred(&w).await;
    pay(&w, &Pay::card(&acc, "s1", &w.gold, "i1", 30_000)).await;
    w.hub.clock.advance_ms(31 * DAY);
    assert_eq!(store::mature(st).await.unwrap(), 1);
    // Manual: nothing starts by itself.
    assert!(store::run_scheduled(st, "t").await.unwrap().is_none());
    // Weekly on today's weekday, set now (after today's 00:00): the first run is next week's.
    relog(&mut w).await;
    let weekday = {
        let now = jiff::Timestamp::from_millisecond(w.hub.clock.now_ms()).unwrap();
        i64::from(jiff::tz::Offset::UTC.to_datetime(now).weekday().to_monday_one_offset())
    };
    let mut s =
        w.hub.get("/api/v1/affiliates/settings", Some(&w.owner.token)).await.ok(200).clone();
    s["payout_schedule"] = json!("weekly");
    s["payout_day"] = json!(weekday);
    w.hub
        .send("PUT", "/api/v1/affiliates/settings", Some(&w.owner.token), Some(s.clone()))
        .await
        .ok(200);
    assert!(store::run_scheduled(st, "t").await.unwrap().is_none(), "set after today's 00:00");
    w.hub.clock.advance_ms(7 * DAY);
    let run = store::run_scheduled(st, "t").await.unwrap().expect("a run a week later");
    assert!(run.id.starts_with("scheduled-20"), "{}", run.id);
    assert_eq!((run.created_by.as_str(), run.payouts.len()), ("schedule", 1));
    assert_eq!(run.payouts[0].amount_minor, 6000);
    // The same day again (the next hour, another instance): the same run, not a second one.
    w.hub.clock.advance_ms(3_600_000);
    assert!(store::run_scheduled(st, "t").await.unwrap().is_none());
    assert_eq!(store::payout_runs(st).await.unwrap().len(), 1);
    // Nothing payable on the next scheduled day: no empty run.
    w.hub.clock.advance_ms(7 * DAY);
    assert!(store::run_scheduled(st, "t").await.unwrap().is_none());
    // Saving the same schedule again does not move its start.
    relog(&mut w).await;
    w.hub.send("PUT", "/api/v1/affiliates/settings", Some(&w.owner.token), Some(s)).await.ok(200);
    let acc2 = referred(&w).await;
    pay(&w, &Pay::card(&acc2, "s2", &w.gold, "i2", 30_000)).await;
    w.hub.clock.advance_ms(31 * DAY);
    store::mature(st).await.unwrap();
    assert!(store::run_scheduled(st, "t").await.unwrap().is_some());
}

/// The trading-account rule: a device of the referred account trades the MT5 account a device
/// of the affiliate's trades (the fingerprint their nodes signed: set here as the sync commit
/// sets it, `account_fingerprint::*` tests that path) — held; another account, a revoked device
/// — spared.
async fn the_affiliates_trading_account_holds_and_another_spares(b: Backend) {
    let w = world(b, percent(2000, None)).await;
    let fingerprint = |device: String, f: &'static str| {
        let pool = w.hub.db.pool().clone();
        async move {
            sqlx::query("UPDATE devices SET account_fingerprint = $1 WHERE id = $2")
                .bind(f)
                .bind(device)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let (aff_device, _) = w.hub.enrol(&w.aff, "affiliate's PC").await;
    fingerprint(aff_device.device_id().to_text(), "aa11").await;
    let owner = w.hub.login(&w.owner.email, &w.owner.password).await;
    let mut held_accounts = Vec::new();
    for (n, f) in ["aa11", "bb22", "aa11"].into_iter().enumerate() {
        let s = w.hub.user(&owner, "subscriber").await;
        let now = w.hub.clock.now_ms();
        store::attribute(w.hub.state(), &s.user_id, &w.code, now, Channel::Signup, None)
            .await
            .unwrap()
            .unwrap();
        let (device, _) = w.hub.enrol(&s, "VPS").await;
        fingerprint(device.device_id().to_text(), f).await;
        if n == 2 {
            // Revoked: the device no longer trades for this account.
            sqlx::query("UPDATE devices SET revoked_at_ms = 1 WHERE id = $1")
                .bind(device.device_id().to_text())
                .execute(w.hub.db.pool())
                .await
                .unwrap();
        }
        let (sub, inv) = (format!("s_ta{n}"), format!("i_ta{n}"));
        pay(&w, &Pay::card(&s.user_id, &sub, &w.gold, &inv, 4900)).await;
        held_accounts.push(s.user_id);
    }
    assert_eq!(
        holds_of(&w).await,
        vec!["self-referral: the same trading account as the affiliate"]
    );
    let statuses: Vec<String> = entries(&w).await.into_iter().map(|e| e.1).collect();
    assert_eq!(statuses, ["held", "pending", "pending"]);
}
