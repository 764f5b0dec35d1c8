//! Metrics: the business gauges `/metrics` refreshes at scrape time (subscriptions by status,
//! MRR, outbox messages, build info) read this hub's ledger; every metric is described.
//!
//! The recorder is process-wide and the tests of this binary run side by side, each hub
//! refreshing the same gauges from its own database: values are checked through the functions
//! that compute them from this hub's store, and `/metrics` for the series and their help.

use rust_decimal::Decimal;
use tradecast_hub::billing::ledger::{self, Door, EventKey, Observed, ObservedStatus, Status};
use tradecast_hub::scrape;

use crate::helpers::{Backend, TestHub, post_signal, provider_kit, signal};
use crate::on_both;

on_both!(metrics_count_subscriptions_and_mrr_from_the_ledger);

const DAY: i64 = 86_400_000;

fn observed(
    external_id: &str,
    account: &str,
    plan: &str,
    status: ObservedStatus,
    now: i64,
) -> Observed {
    Observed {
        external_id: external_id.into(),
        account_id: account.into(),
        plan_id: plan.into(),
        status,
        period_start_ms: now - DAY,
        period_end_ms: now + 29 * DAY,
        cancel_at_period_end: false,
        trial_end_ms: (status == ObservedStatus::Trialing).then_some(now + 6 * DAY),
        ended_at_ms: None,
        unpaid_since_ms: None,
        refunded: false,
        referral: None,
        created_ms: now - DAY,
    }
}

async fn metrics_count_subscriptions_and_mrr_from_the_ledger(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let stars = hub
        .post(
            "/api/v1/plans",
            Some(&kit.session.token),
            serde_json::json!({ "name": "Stars", "price_minor": 500, "currency": "XTR", "period_days": 30 }),
        )
        .await;
    let stars = stars.ok(201)["id"].as_str().unwrap().to_string();
    let now = hub.clock.now_ms();
    // Alice pays 49.00 USD a month by card; Bob is on a trial; Carol pays 500 stars a month.
    let cases = [
        ("sub_alice", kit.plan_id.as_str(), ObservedStatus::Active, Door::Stripe),
        ("sub_bob", kit.plan_id.as_str(), ObservedStatus::Trialing, Door::Stripe),
        ("sub_carol", stars.as_str(), ObservedStatus::Active, Door::TelegramStars),
    ];
    for (ext, plan, status, door) in cases {
        let who = hub.user(&owner, "subscriber").await;
        let key = EventKey { door, event_id: ext, kind: "test" };
        let o = observed(ext, &who.user_id, plan, status, now);
        ledger::apply(hub.state(), Some(key), &who.user_id, door, &[o], &[], "t").await.unwrap();
    }

    let by = scrape::subscriptions_by_status(&hub.db).await.unwrap();
    let count = |s: Status| by.iter().find(|(x, _)| *x == s).map(|(_, n)| *n);
    assert_eq!(count(Status::Active), Some(2));
    assert_eq!(count(Status::Trialing), Some(1));
    assert_eq!(count(Status::PastDue), Some(0), "every status is present");
    // 49.00 USD + 500 stars × 0.013 USD (the default rate) = 55.50 USD; the trial counts 0.
    let groups = scrape::price_groups(&hub.db).await.unwrap();
    let (mrr, unconverted) = scrape::mrr(&groups, "USD", hub.state().config.billing.xtr_rate);
    assert_eq!((mrr.normalize(), unconverted), (Decimal::new(5550, 2).normalize(), 0));

    // A signal, so its counter has a series.
    let (_, r) = post_signal(&hub, &kit, &signal(&kit.identity, now), 2).await;
    assert!(r.status.is_success(), "{}", r.body);

    let text = reqwest::get(hub.url("/metrics")).await.unwrap().text().await.unwrap();
    for series in [
        "tradecast_subscriptions{status=\"active\"}",
        "tradecast_subscriptions{status=\"past_due\"}",
        "tradecast_mrr{currency=\"USD\"}",
        "tradecast_mrr_unconverted_subscriptions",
        "tradecast_outbox_messages{channel=\"telegram\",state=\"dead\"}",
        "tradecast_outbox_queued{channel=\"stripe\"}",
        "tradecast_build_info{version=\"",
        "tradecast_signals_ingested_total",
        "# HELP tradecast_mrr ",
        "# HELP tradecast_subscriptions ",
        "# HELP tradecast_outbox_messages ",
        "# HELP tradecast_build_info ",
    ] {
        assert!(text.contains(series), "/metrics lacks {series}:\n{text}");
    }

    // The scrape's cost on this small store: 200 scrapes over real HTTP, one after another.
    let client = reqwest::Client::new();
    let mut ms = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = std::time::Instant::now();
        let r = client.get(hub.url("/metrics")).send().await.unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let p99 = ms[ms.len() * 99 / 100 - 1];
    println!("RESULT metrics_scrape_p99 {p99:.2} ms ({b:?}, p50 {:.2} ms)", ms[ms.len() / 2]);
    hub.stop().await;
}
