//! The console's revenue page and its JSON twin on a year of generated subscriptions, written
//! through the ledger's real `apply` at the instants the processor would report them (the
//! hub's clock advanced to each), checked against figures computed by hand for chosen months;
//! the page for each role.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tradecast_hub::analytics::revenue::Month;
use tradecast_hub::billing::ledger::{
    self, Door, EventKey, Observed, ObservedInvoice, ObservedStatus,
};

use crate::console::{console_cookie, is_login_page, page};
use crate::helpers::{Backend, TestHub, provider_kit};
use crate::on_both;

on_both!(revenue_page_on_a_year_of_subscriptions);

const DAY: i64 = 86_400_000;

/// Customer `k` (0..12) subscribes on day 5 of month `k + 1` of the year (Gold, 49.00 USD per
/// 30 days), billed by calendar month and renewed each month. `k % 3 == 1` upgrades to Pro
/// (99.00) at its second period; `k % 3 == 2` cancels during its second period (MRR until that
/// period ends, on day 5 of month `k + 3`).
struct Plan<'a> {
    gold: &'a str,
    pro: &'a str,
}

fn observed(
    k: usize,
    account: &str,
    plan: &str,
    start: i64,
    end: i64,
    cancel: bool,
    ended: bool,
) -> Observed {
    Observed {
        external_id: format!("sub_{k}"),
        account_id: account.into(),
        plan_id: plan.into(),
        status: if ended { ObservedStatus::Ended } else { ObservedStatus::Active },
        period_start_ms: start,
        period_end_ms: end,
        cancel_at_period_end: cancel,
        trial_end_ms: None,
        ended_at_ms: ended.then_some(end),
        unpaid_since_ms: None,
        refunded: false,
        referral: None,
        created_ms: start,
    }
}

fn invoice(k: usize, n: usize, amount: i64, start: i64, end: i64) -> ObservedInvoice {
    ObservedInvoice {
        external_id: format!("in_{k}_{n}"),
        subscription_external_id: Some(format!("sub_{k}")),
        status: "paid".into(),
        amount_due_minor: amount,
        amount_paid_minor: amount,
        amount_refunded_minor: 0,
        currency: "USD".into(),
        period_start_ms: start,
        period_end_ms: end,
        billing_reason: Some(
            if n == 1 { "subscription_create" } else { "subscription_cycle" }.into(),
        ),
        hosted_url: None,
        created_ms: start,
        paid_at_ms: Some(start),
        processor: Default::default(),
    }
}

fn month_row<'a>(j: &'a Value, label: &str) -> &'a Value {
    j["currencies"][0]["months"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["month"] == label)
        .unwrap_or_else(|| panic!("no {label} in {j}"))
}

async fn revenue_page_on_a_year_of_subscriptions(b: Backend) {
    let hub = TestHub::start_with(b, |c| c.rate_limits.login_per_ip.burst = 100).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let pro = hub
        .post(
            "/api/v1/plans",
            Some(&kit.session.token),
            json!({ "name": "Pro", "price_minor": 9900, "currency": "USD", "period_days": 30 }),
        )
        .await;
    let pro = pro.ok(201)["id"].as_str().unwrap().to_string();
    let plans = Plan { gold: &kit.plan_id, pro: &pro };
    let stars = hub
        .post(
            "/api/v1/plans",
            Some(&kit.session.token),
            json!({ "name": "Stars", "price_minor": 500, "currency": "XTR", "period_days": 30 }),
        )
        .await;
    let stars = stars.ok(201)["id"].as_str().unwrap().to_string();
    let mut customers = Vec::new();
    // 0..12: the year's Stripe customers; 12: Stars; 13: a trial.
    for _ in 0..14 {
        customers.push(hub.user(&owner, "subscriber").await);
    }
    let admin = hub.user(&owner, "admin").await;
    // Month 1 of the year is the month after the clock's.
    let m1 = Month::of(hub.clock.now_ms()).next();
    let month = |n: usize| m1.plus(n as u32 - 1);
    let day5 = |n: usize| month(n).start_ms() + 4 * DAY + 3_600_000;
    // Every observation, at the instant the processor reports it.
    let mut events: Vec<(i64, usize, Door, Observed, Vec<ObservedInvoice>)> = Vec::new();
    for (k, who) in customers.iter().enumerate().take(12) {
        let first = k + 1;
        let last = if k % 3 == 2 { first + 1 } else { 12 };
        for n in first..=last {
            let (start, end) = (day5(n), day5(n + 1));
            let plan = if k % 3 == 1 && n > first { plans.pro } else { plans.gold };
            let price = if plan == plans.pro { 9900 } else { 4900 };
            let cancel = k % 3 == 2 && n == last;
            let o = observed(k, &who.user_id, plan, start, end, cancel, false);
            let inv = vec![invoice(k, n - first + 1, price, start, end)];
            events.push((start, k, Door::Stripe, o, inv));
            if cancel {
                let o = observed(k, &who.user_id, plan, start, end, true, true);
                events.push((end + 3_600_000, k, Door::Stripe, o, vec![]));
            }
        }
    }
    // 12 pays 500 Stars a month (at the default 0.013 USD: 6.50 USD of MRR) from day 10 of
    // month 6, and is refunded on day 12 of month 9 (its fourth payment: the refund is
    // recorded then, and its MRR ends then).
    let day = |n: usize, d: i64| month(n).start_ms() + (d - 1) * DAY + 3_600_000;
    for n in 6..=9 {
        let (start, end) = (day(n, 10), day(n + 1, 10));
        let o = observed(12, &customers[12].user_id, &stars, start, end, false, false);
        let mut inv = invoice(12, n - 5, 500, start, end);
        inv.currency = "XTR".into();
        events.push((start, 12, Door::TelegramStars, o.clone(), vec![inv.clone()]));
        if n == 9 {
            inv.amount_refunded_minor = 500;
            let o = Observed { refunded: true, ..o };
            events.push((day(9, 12), 12, Door::TelegramStars, o, vec![inv]));
        }
    }
    // 13 starts a trial of Gold on day 1 of month 7, paid from day 15 on, monthly.
    let trial_end = day(7, 15);
    let mut o =
        observed(13, &customers[13].user_id, plans.gold, day(7, 1), trial_end, false, false);
    (o.status, o.trial_end_ms) = (ObservedStatus::Trialing, Some(trial_end));
    events.push((day(7, 1), 13, Door::Stripe, o, vec![]));
    for n in 7..=12 {
        let (start, end) = (day(n, 15), day(n + 1, 15));
        let mut o = observed(13, &customers[13].user_id, plans.gold, start, end, false, false);
        o.trial_end_ms = Some(trial_end);
        events.push((start, 13, Door::Stripe, o, vec![invoice(13, n - 6, 4900, start, end)]));
    }
    // Now: day 28 of month 12; what the processor would say later is not said yet.
    let end = month(12).start_ms() + 27 * DAY;
    events.retain(|e| e.0 <= end);
    events.sort_by_key(|e| (e.0, e.1));
    for (i, (at, k, door, o, invoices)) in events.into_iter().enumerate() {
        let now = hub.clock.now_ms();
        if at > now {
            hub.clock.advance_ms(at - now);
        }
        let id = format!("evt_{i}");
        let key = EventKey { door, event_id: &id, kind: "test" };
        ledger::apply(hub.state(), Some(key), &customers[k].user_id, door, &[o], &invoices, "t")
            .await
            .unwrap();
    }
    assert!(hub.clock.now_ms() < end);
    hub.clock.advance_ms(end - hub.clock.now_ms());

    let owner = hub.login(&owner.email, &owner.password).await;
    let admin = hub.login(&admin.email, &admin.password).await;
    let q = format!("/api/v1/console/revenue?from={}&to={}", month(1).label(), month(12).label());
    let j = hub.get(&q, Some(&owner.token)).await.ok(200).clone();
    assert_eq!(hub.get(&q, Some(&admin.token)).await.ok(200)["currencies"], j["currencies"]);
    assert_eq!(j["currencies"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(j["currencies"][0]["currency"], "USD");

    // Month 5: start (end of month 4) = k0 49 + k1 99 (upgraded in month 3) + k2 49 (paid to
    // day 5 of month 5) + k3 49 = 246. In month 5: k4 new 49, k2 churns 49: end 246.
    let m5 = month_row(&j, &month(5).label());
    assert_eq!((&m5["mrr_start"], &m5["mrr"]), (&json!("246.00"), &json!("246.00")));
    assert_eq!(
        (&m5["new"], &m5["churn"], &m5["net_new"]),
        (&json!("49.00"), &json!("49.00"), &json!("0.00"))
    );
    // Logo churn 1 / 4; revenue churn 49 / 246 = 0.19918…; ARPA 246 / 4 = 61.50;
    // LTV 61.50 / (49 / 246) = 61.50 × 246 / 49 = 308.76…
    assert_eq!((&m5["logo_churn"], &m5["revenue_churn"]), (&json!("0.2500"), &json!("0.1992")));
    assert_eq!((&m5["arpa"], &m5["ltv"]), (&json!("61.50"), &json!("308.76")));
    // Month 6: k4 upgrades (+50 expansion), k5 new 49, the Stars customer new 500 × 0.013 =
    // 6.50: 246 + 105.50 = 351.50 over 6 customers; no churn: LTV undefined. Gross: the month's
    // invoices, k0 49 + k1 99 + k3 49 + k4 99 + k5 49 + 6.50 (500 Stars) = 351.50.
    let m6 = month_row(&j, &month(6).label());
    assert_eq!(
        (&m6["mrr"], &m6["new"], &m6["expansion"]),
        (&json!("351.50"), &json!("55.50"), &json!("50.00"))
    );
    assert_eq!(
        (&m6["customers"], &m6["ltv"], &m6["gross"]),
        (&json!(6), &Value::Null, &json!("351.50"))
    );
    // Month 7: k6 new 49 and the trial, paid from day 15, new 49.
    let m7 = month_row(&j, &month(7).label());
    assert_eq!((&m7["new"], &m7["new_customers"]), (&json!("98.00"), &json!(2)));
    // Month 9: the Stars customer refunded on day 12: churn 6.50, refunds 6.50; k8 new 49,
    // k7 up 50 (Pro from its second period). Start (end of month 8): k0 49 + k1 99 + k3 49 +
    // k4 99 + k6 49 + k7 49 + Stars 6.50 + the trial 49 = 449.50 (k2 and k5 churned); end
    // 449.50 + 49 + 50 − 6.50 = 542. Gross: the month's invoices, k0 49, k1 99, k3 49, k4 99,
    // k6 49, k7 99, k8 49, Stars 6.50, the former trial 49 = 548.50; net 548.50 − 6.50 = 542.
    let m9 = month_row(&j, &month(9).label());
    assert_eq!((&m9["mrr_start"], &m9["mrr"]), (&json!("449.50"), &json!("542.00")));
    assert_eq!((&m9["churn"], &m9["refunds"]), (&json!("6.50"), &json!("6.50")));
    assert_eq!((&m9["gross"], &m9["net"]), (&json!("548.50"), &json!("542.00")));
    // Month 12 (to now): k0, k3, k6, k9 at 49, k1, k4, k7, k10 at 99 (k10 upgraded this month:
    // +50), k11 new 49, the former trial 49; k2, k5, k8 and the Stars customer churned:
    // 4 × 49 + 4 × 99 + 49 + 49 = 690, from 591.
    let m12 = month_row(&j, &month(12).label());
    assert_eq!((&m12["mrr_start"], &m12["mrr"]), (&json!("591.00"), &json!("690.00")));
    assert_eq!(
        (&m12["new"], &m12["expansion"], &m12["churn"]),
        (&json!("49.00"), &json!("50.00"), &json!("0.00"))
    );
    assert_eq!(
        (&j["currencies"][0]["mrr"], &j["currencies"][0]["arr"]),
        (&json!("690.00"), &json!("8280.00"))
    );
    assert_eq!(j["currencies"][0]["customers"], json!(10));
    // The same MRR as `/metrics` (`scrape::mrr`, the one definition).
    let groups = tradecast_hub::scrape::price_groups(&hub.db).await.unwrap();
    let (gauge, _) =
        tradecast_hub::scrape::mrr(&groups, "USD", hub.state().config.billing.xtr_rate);
    assert_eq!(gauge.round_dp(2).normalize().to_string(), "690");
    // Cohort of month 3 (k2): 1 customer, still there at the end of months 3 and 4, gone after.
    let cohort = &j["currencies"][0]["cohorts"][2];
    assert_eq!(cohort["month"], json!(month(3).label()));
    assert_eq!(&cohort["customers"].as_array().unwrap()[..3], &[json!(1), json!(1), json!(0)]);
    // The Pro plan alone: k1 arrives in month 3 as new Pro MRR (99).
    let pq = format!("{q}&plan={pro}");
    let jp = hub.get(&pq, Some(&owner.token)).await.ok(200).clone();
    assert_eq!(month_row(&jp, &month(3).label())["new"], json!("99.00"));
    assert_eq!(jp["currencies"][0]["mrr"], json!("396.00"));
    // Stars alone: new in month 6, refunded and churned in month 9, nothing now.
    let js = hub.get(&format!("{q}&door=stars"), Some(&owner.token)).await.ok(200).clone();
    assert_eq!(js["currencies"][0]["mrr"], json!("0.00"));
    assert_eq!(month_row(&js, &month(6).label())["new"], json!("6.50"));
    assert_eq!(month_row(&js, &month(9).label())["churn"], json!("6.50"));
    assert_eq!(month_row(&js, &month(9).label())["net"], json!("0.00"));
    hub.get(&format!("{q}&door=cash"), Some(&owner.token)).await.problem(400, "invalid-parameter");
    hub.get("/api/v1/console/revenue?from=2026-13", Some(&owner.token))
        .await
        .problem(400, "invalid-parameter");
    let doc = hub.get("/api/v1/openapi.json", None).await;
    assert!(doc.ok(200)["paths"].get("/api/v1/console/revenue").is_some(), "not in the OpenAPI");

    // The page: the same figures, for an owner and an admin; refused to others.
    let path = format!("/revenue?from={}&to={}", month(1).label(), month(12).label());
    let cookie = console_cookie(&hub, &owner.email, &owner.password).await;
    let admin_cookie = console_cookie(&hub, &admin.email, &admin.password).await;
    let r = page(&hub, "GET", &path, Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // `REVENUE_SCREENSHOT=DIR`: the page saved with its assets pointing at this hub, and
    // Chromium's screenshot of it (the page needs a session cookie; the file does not).
    if let Some(dir) = std::env::var_os("REVENUE_SCREENSHOT") {
        let dir = std::path::Path::new(&dir);
        let html = dir.join(format!("revenue-{b:?}.html"));
        let text = r.text.replace("\"/assets/", &format!("\"{}", hub.url("/assets/")));
        std::fs::write(&html, text).unwrap();
        let status = std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2200"])
            .arg(format!("--screenshot={}", dir.join(format!("revenue-{b:?}.png")).display()))
            .arg(format!("file://{}", html.display()))
            .status()
            .unwrap();
        assert!(status.success(), "chromium: {status}");
    }
    assert!(r.text.contains("<a href=\"/revenue\" class=\"on\">Revenue</a>"), "{}", r.text);
    assert!(
        r.text.contains("<span class=\"v\" id=\"fig-mrr-usd\">690.00 USD</span>"),
        "{}",
        r.text
    );
    let row = |m: Month| {
        let start = r.text.find(&format!("data-month=\"{}\"", m.label())).unwrap();
        r.text[start..start + r.text[start..].find("</tr>").unwrap()].to_string()
    };
    let m6 = row(month(6));
    for cell in ["351.50", "50.00", "105.50"] {
        assert!(m6.contains(&format!("<td class=\"num\">{cell}</td>")), "{cell}: {m6}");
    }
    assert!(row(month(5)).contains("<td class=\"num\">308.76</td>"));
    let gross = r.text.find(&format!("data-money=\"{}\"", month(6).label())).unwrap();
    assert!(r.text[gross..].starts_with(&format!(
        "data-money=\"{}\"><td class=\"nowrap\">{}</td><td class=\"num\">351.50</td>",
        month(6).label(),
        month(6).label()
    )));
    assert!(r.text.contains("id=\"mrr-chart\""));
    assert!(r.text.contains("count neither as new nor as churn"));
    let r = page(&hub, "GET", &path, Some(&admin_cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = page(&hub, "GET", "/revenue?door=cash", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = page(&hub, "GET", &path, None, &[], None).await;
    assert!(is_login_page(&r), "{}", r.text);
    let sub = hub.login(&customers[0].email, &customers[0].password).await;
    let provider = hub.login(&kit.session.email, &kit.session.password).await;
    for who in [&sub, &provider] {
        hub.get(&q, Some(&who.token)).await.problem(403, "forbidden");
        let c = console_cookie(&hub, &who.email, &who.password).await;
        let r = page(&hub, "GET", &path, Some(&c), &[], None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
}
