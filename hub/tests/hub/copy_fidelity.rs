//! Copy fidelity on the public track record (issue 18), both backends: a signal reaches two
//! subscribers' devices; one node signs its approval and a fill 2 pips above the entry, the
//! other its rules' rejection; past the publication delay the JSON API and the page show the
//! deliveries, the fill rate, the latency from the hub's receipt to the fill and the slippage
//! — and nothing before the delay.

use rust_decimal::Decimal;
use serde_json::json;
use tradecast_protocol::{Approval, Body, DecidedBy, Decision, Execution, StreamId};

use crate::account_events::Node;
use crate::helpers::{Backend, TestHub, post_signal, provider_kit, signal};
use crate::on_both;

on_both!(copy_fidelity_from_subscribers_signed_records);

async fn copy_fidelity_from_subscribers_signed_records(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let pid = kit.session.user_id.clone();
    let mut devices = Vec::new();
    for name in ["alice", "bob"] {
        let who = hub.user(&owner, "subscriber").await;
        let grant = json!({ "user_id": who.user_id, "plan_id": kit.plan_id });
        hub.post("/api/v1/entitlements", Some(&owner.token), grant).await.ok(201);
        devices.push(hub.enrol(&who, name).await.0);
    }
    let s = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s, 1).await.1.ok(201);
    let received: i64 = sqlx::query_scalar("SELECT received_at_ms FROM signals WHERE id = $1")
        .bind(s.id.to_hex())
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
    let delay_ms = i64::try_from(hub.state().config.public.delay_s).unwrap() * 1000;
    let j = hub.get(&format!("/public/v1/providers/{pid}"), None).await.ok(200).clone();
    assert_eq!(j["copy_fidelity"]["deliveries"], 0, "nothing before the delay");

    // alice's node approves and fills 150 ms after the hub's receipt, 2 pips above the entry.
    let mut alice = Node { identity: &devices[0], tips: Vec::new() };
    let approval = |device: &tradecast_protocol::Identity, decision, by| Approval {
        signal_id: s.id,
        device: device.device_id(),
        decision,
        decided_by: by,
        consent_version: 1,
        reason: String::new(),
        decided_at_ms: received + 50,
        lots: None,
    };
    alice
        .commit(
            &hub,
            StreamId::SHARED,
            Body::Approval(approval(&devices[0], Decision::Approved, DecidedBy::Policy)),
        )
        .await;
    let fill = Execution {
        order_id: 1,
        signal_id: s.id,
        device: devices[0].device_id(),
        retcode: 10_009,
        ticket: Some(1),
        fill_price: Some("1.09148".parse().unwrap()),
        volume: Decimal::new(10, 2),
        at_ms: received + 150,
    };
    alice.commit(&hub, StreamId::SHARED, Body::Execution(fill)).await;
    // bob's rules reject it.
    let mut bob = Node { identity: &devices[1], tips: Vec::new() };
    bob.commit(
        &hub,
        StreamId::SHARED,
        Body::Approval(approval(&devices[1], Decision::Rejected, DecidedBy::Policy)),
    )
    .await;

    hub.clock.advance_ms(delay_ms + 2 * 60_000);
    let j = hub.get(&format!("/public/v1/providers/{pid}"), None).await.ok(200).clone();
    let f = &j["copy_fidelity"];
    assert_eq!(
        (&f["deliveries"], &f["filled"], &f["declined"], &f["no_answer"], &f["fill_rate"]),
        (&json!(2), &json!(1), &json!(1), &json!(0), &json!("0.5")),
        "{f}"
    );
    assert_eq!((&f["latency_ms_p50"], &f["latency_ms_p90"]), (&json!(150), &json!(150)), "{f}");
    assert_eq!((&f["slippage_n"], &f["slippage_pips_p50"]), (&json!(1), &json!("2.0")), "{f}");
    let page = hub.get(&format!("/p/{pid}"), None).await;
    assert!(
        page.text.contains("Copy fidelity") && page.text.contains("id=\"fidelity-figures\""),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("150 ms / 150 ms") && page.text.contains("2.0 pips"),
        "{}",
        page.text
    );
}

on_both!(a_traders_own_copy_fidelity_in_the_mini_app);

/// The trader's side of the same figures: the Mini App's analytics counts what their own
/// devices signed (no publication delay: it is their own record).
async fn a_traders_own_copy_fidelity_in_the_mini_app(b: Backend) {
    use tradecast_standins::telegram::{TelegramStandin, TelegramStandinConfig};
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = crate::miniapp::hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let alice = hub.user(&owner, "subscriber").await;
    crate::miniapp::link(&hub, &sb, &alice, 606).await;
    crate::miniapp::grant(&hub, &owner, &alice.user_id, &kit.plan_id).await;
    let app =
        crate::miniapp::features_plan(&hub, &owner, &["signals", "mini_app", "analytics"]).await;
    crate::miniapp::grant(&hub, &owner, &alice.user_id, &app).await;
    let (device, _) = hub.enrol(&alice, "alice-pc").await;
    let s = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s, 1).await.1.ok(201);
    let received: i64 = sqlx::query_scalar("SELECT received_at_ms FROM signals WHERE id = $1")
        .bind(s.id.to_hex())
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
    let mut node = Node { identity: &device, tips: Vec::new() };
    let fill = Execution {
        order_id: 1,
        signal_id: s.id,
        device: device.device_id(),
        retcode: 10_009,
        ticket: Some(1),
        fill_price: Some("1.09138".parse().unwrap()),
        volume: Decimal::new(10, 2),
        at_ms: received + 320,
    };
    node.commit(&hub, StreamId::SHARED, Body::Execution(fill)).await;
    let session = crate::miniapp::session(&hub, &sb, 606).await;
    let token = session["token"].as_str().unwrap();
    let view =
        crate::miniapp::mini(&hub, "GET", "/miniapp/app/analytics", Some(token), None, None).await;
    assert_eq!(view.status, 200, "{}", view.text);
    let card = view.text.split("id=\"copied\"").nth(1).expect("the copy card");
    assert!(
        card.contains("<b>1/1</b>") && card.contains("320 ms") && card.contains("<b>1.0</b>"),
        "{card}"
    );
}
