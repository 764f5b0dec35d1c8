//! What happens on a trader's account reaches their Telegram chat (issue 17, notifications): a
//! fill and a broker's refusal, a signal skipped by the trader's rules, a closed trade's P&L —
//! only when it is on the published stream, never when sealed —, the risk guard's close-all,
//! the node offline for `telegram.offline_after_s` and back (also when the hub process holding
//! its session was killed), its EA silent as long and back, and fan-out lag as an owner's alarm. Records are committed through
//! the sync store as a QUIC session commits them; messages go through the outbox to the strict
//! Bot API stand-in.

use std::time::Duration;

use rust_decimal::Decimal;
use tradecast_protocol::{
    Approval, Body, ChainHash, Command, DecidedBy, Decision, Execution, HeaderFields, Heartbeat,
    Identity, Record, Side, StreamId, TradeClosed,
};
use tradecast_standins::telegram::{TelegramStandin, TelegramStandinConfig};

use crate::helpers::{Backend, TestHub, post_signal, provider_kit, signal};
use crate::miniapp::{hub_with_miniapp, link};
use crate::on_both;

on_both!(
    account_events_reach_the_traders_chat,
    an_offline_node_is_told_once_and_back_once,
    a_killed_hubs_session_reads_offline_from_its_last_touch,
    a_silent_ea_is_told_once_and_back_once,
    fan_out_lag_to_a_connected_device_is_an_alarm
);

const WAIT: Duration = Duration::from_secs(15);

/// One node's streams, each signed in chain order.
pub(crate) struct Node<'a> {
    pub(crate) identity: &'a Identity,
    pub(crate) tips: Vec<(StreamId, u64, ChainHash)>,
}

impl Node<'_> {
    fn sign(&mut self, stream: StreamId, body: &Body, now_ms: i64) -> Record {
        let tip = match self.tips.iter_mut().find(|t| t.0 == stream) {
            Some(t) => t,
            None => {
                self.tips.push((stream, 0, ChainHash::GENESIS));
                self.tips.last_mut().expect("pushed")
            }
        };
        tip.1 += 1;
        let fields = HeaderFields { stream, seq: tip.1, prev_hash: tip.2, created_at_ms: now_ms };
        let r = Record::sign(self.identity, fields, body);
        tip.2 = r.header_hash();
        r
    }

    pub(crate) async fn commit(&mut self, hub: &TestHub, stream: StreamId, body: Body) {
        let now = hub.clock.now_ms();
        let r = self.sign(stream, &body, now);
        tradecast_hub::quic::store::commit(&hub.db, &hub.state().hub_identity, &r, now)
            .await
            .expect("committed");
    }
}

fn texts(sb: &TelegramStandin, chat: i64) -> Vec<String> {
    sb.messages_to(chat)
        .into_iter()
        .filter(|m| m.from_user.is_none())
        .filter_map(|m| m.text)
        .collect()
}

async fn wait_for(sb: &TelegramStandin, chat: i64, needle: &str) -> String {
    let n = needle.to_string();
    sb.wait_for_message(chat, move |m| m.text.as_deref().is_some_and(|t| t.contains(&n)), WAIT)
        .await
        .and_then(|m| m.text)
        .unwrap_or_else(|| panic!("no message with {needle:?}: {:#?}", texts(sb, chat)))
}

async fn account_events_reach_the_traders_chat(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.expect("stand-in");
    let hub = hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let alice = hub.user(&owner, "subscriber").await;
    link(&hub, &sb, &alice, 601).await;
    let (node, node_id) = hub.enrol(&alice, "alice-vps").await;
    let mut n = Node { identity: &node, tips: Vec::new() };
    let s = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s, 1).await.1.ok(201);
    let now = hub.clock.now_ms();
    let me = node.device_id();

    // A fill of the signal, and a second copy the broker refused.
    let exec = |order_id, retcode, price: Option<&str>| {
        Body::Execution(Execution {
            order_id,
            signal_id: s.id,
            device: me,
            retcode,
            ticket: Some(order_id),
            fill_price: price.map(|p| p.parse().expect("dec")),
            volume: Decimal::new(10, 2),
            at_ms: now,
        })
    };
    n.commit(&hub, StreamId::SHARED, exec(7, 10_009, Some("1.08512"))).await;
    let filled = wait_for(&sb, 601, "Filled").await;
    assert!(filled.contains("EURUSD buy, 0.10 lots at 1.08512"), "{filled}");
    assert!(filled.contains("alice-vps"), "{filled}");
    n.commit(&hub, StreamId::SHARED, exec(8, 10_019, None)).await;
    let refused = wait_for(&sb, 601, "Not filled").await;
    assert!(refused.contains("10019") && refused.contains("Nothing is open"), "{refused}");

    // A signal the trader's rules skipped, with the reason in words.
    let skip = Body::Approval(Approval {
        signal_id: s.id,
        device: me,
        decision: Decision::Rejected,
        decided_by: DecidedBy::Policy,
        consent_version: 1,
        reason: "max open positions (3) reached".into(),
        decided_at_ms: now,
        lots: None,
    });
    n.commit(&hub, StreamId::SHARED, skip).await;
    let skipped = wait_for(&sb, 601, "Skipped by your rules").await;
    assert!(skipped.contains("max open positions (3) reached"), "{skipped}");

    // A closed trade is told only from the published stream: sealed, the hub cannot read it.
    let closed = |ticket| TradeClosed {
        signal_id: Some(s.id),
        device: me,
        ticket,
        symbol: "EURUSD".into(),
        side: Side::Buy,
        volume: Decimal::new(10, 2),
        open_price: "1.08512".parse().expect("dec"),
        close_price: "1.08762".parse().expect("dec"),
        opened_at_ms: now,
        closed_at_ms: now + 1,
        profit: "25.00".parse().expect("dec"),
        commission: "-0.70".parse().expect("dec"),
        swap: "0".parse().expect("dec"),
    };
    // On the private stream (whether the hub could open it or not) it is the trader's alone.
    let private = n.sign(StreamId::PRIVATE, &Body::TradeClosed(closed(90)), now);
    let _ =
        tradecast_hub::quic::store::commit(&hub.db, &hub.state().hub_identity, &private, now).await;
    n.commit(&hub, StreamId::PUBLISHED, Body::TradeClosed(closed(91))).await;
    let told = wait_for(&sb, 601, "Closed: EURUSD buy").await;
    assert!(told.contains("<b>+24.30</b>") || told.contains("+24.30"), "{told}");
    let closes = texts(&sb, 601).iter().filter(|t| t.contains("Closed: EURUSD")).count();
    assert_eq!(closes, 1, "the sealed close is not told: {:#?}", texts(&sb, 601));

    // The risk guard closed everything.
    let guard = Body::Command(Command::CloseAll {
        symbol: None,
        reason: "drawdown guard: equity 7,900.00 is below the floor 8,000.00".into(),
        at_ms: now,
    });
    n.commit(&hub, StreamId::COMMANDS, guard).await;
    let g = wait_for(&sb, 601, "closed by your risk guard").await;
    assert!(g.contains("Auto-copy stays paused"), "{g}");

    // A backlog from a node that was offline for hours is not told one by one.
    let before = texts(&sb, 601).len();
    hub.clock.advance_ms(2 * 3_600_000);
    let old = n.sign(StreamId::SHARED, &exec(9, 10_009, Some("1.0")), now);
    tradecast_hub::quic::store::commit(
        &hub.db,
        &hub.state().hub_identity,
        &old,
        hub.clock.now_ms(),
    )
    .await
    .expect("committed");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(texts(&sb, 601).len(), before, "{:#?}", texts(&sb, 601));
    let _ = node_id;
}

async fn an_offline_node_is_told_once_and_back_once(b: Backend) {
    use tradecast_hub::telegram::account::{session_ended, session_started, tell_offline, touch};
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.expect("stand-in");
    let hub = hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let bob = hub.user(&owner, "subscriber").await;
    link(&hub, &sb, &bob, 602).await;
    let (_node, node_id) = hub.enrol(&bob, "bob-desktop").await;
    let after = 600_000;
    let clock = &hub.clock;
    let t0 = clock.now_ms();
    session_started(&hub.db, &node_id, t0).await.expect("online");
    clock.advance_ms(3_600_000);
    // (A live session's instance touches its row every minute.)
    touch(&hub.db, &node_id, t0, clock.now_ms()).await.expect("touch");
    assert_eq!(tell_offline(&hub.db, clock.now_ms(), after).await.expect("job"), 0, "online");
    // The node moves to another instance: that session starts before the first one's end is
    // written; the late end does not mark it offline.
    let t1 = clock.now_ms();
    session_started(&hub.db, &node_id, t1).await.expect("online");
    session_ended(&hub.db, &node_id, t0, t1 + 10).await.expect("stale end");
    clock.advance_ms(3_600_000);
    touch(&hub.db, &node_id, t1, clock.now_ms()).await.expect("touch");
    assert_eq!(tell_offline(&hub.db, clock.now_ms(), after).await.expect("job"), 0);
    // It really goes: told once the threshold has passed, and only once.
    let gone = clock.now_ms();
    session_ended(&hub.db, &node_id, t1, gone).await.expect("offline");
    // (The clock runs in real time too: the boundary is checked at exact instants.)
    assert_eq!(tell_offline(&hub.db, gone + after - 1, after).await.expect("job"), 0, "too soon");
    clock.advance_ms(after);
    assert_eq!(tell_offline(&hub.db, clock.now_ms(), after).await.expect("job"), 1);
    clock.advance_ms(after);
    assert_eq!(tell_offline(&hub.db, clock.now_ms(), after).await.expect("job"), 0, "once");
    let off = wait_for(&sb, 602, "has been offline for 10 min").await;
    assert!(off.contains("bob-desktop"), "{off}");
    let back = clock.now_ms();
    session_started(&hub.db, &node_id, back).await.expect("back");
    wait_for(&sb, 602, "bob-desktop is back online").await;
    // A short restart (shorter than the threshold) tells nothing.
    clock.advance_ms(60_000);
    session_ended(&hub.db, &node_id, back, clock.now_ms()).await.expect("off");
    clock.advance_ms(60_000);
    let on = clock.now_ms();
    session_started(&hub.db, &node_id, on).await.expect("on");
    clock.advance_ms(2 * after);
    touch(&hub.db, &node_id, on, clock.now_ms()).await.expect("touch");
    assert_eq!(tell_offline(&hub.db, clock.now_ms(), after).await.expect("job"), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = texts(&sb, 602);
    assert_eq!(all.iter().filter(|t| t.contains("offline for")).count(), 1, "{all:#?}");
    assert_eq!(all.iter().filter(|t| t.contains("back online")).count(), 1, "{all:#?}");
}

/// The hub process holding a session is killed: its end is never written, but the row stops
/// being touched; the job reads it as offline since it was last seen (told after the threshold),
/// and a session that turns out alive marks it back.
async fn a_killed_hubs_session_reads_offline_from_its_last_touch(b: Backend) {
    use tradecast_hub::telegram::account::{
        SESSION_STALE_MS, session_started, tell_offline, touch,
    };
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.expect("stand-in");
    let hub = hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let carol = hub.user(&owner, "subscriber").await;
    link(&hub, &sb, &carol, 603).await;
    let (_node, node_id) = hub.enrol(&carol, "carol-vps").await;
    let (after, clock) = (600_000, &hub.clock);
    let t0 = clock.now_ms();
    session_started(&hub.db, &node_id, t0).await.expect("online");
    clock.advance_ms(60_000);
    let seen = clock.now_ms();
    touch(&hub.db, &node_id, t0, seen).await.expect("touch");
    // Killed here. Within the stale limit it is still online; past it and the threshold, told.
    clock.advance_ms(SESSION_STALE_MS - 1_000);
    assert_eq!(tell_offline(&hub.db, clock.now_ms(), after).await.expect("job"), 0);
    clock.advance_ms(after);
    let at = clock.now_ms();
    assert_eq!(tell_offline(&hub.db, at, after).await.expect("job"), 1);
    assert_eq!(tell_offline(&hub.db, clock.now_ms(), after).await.expect("job"), 0, "once");
    let off = wait_for(&sb, 603, "carol-vps has been offline").await;
    let minutes = (at - seen) / 60_000;
    assert!(off.contains(&format!("offline for {minutes} min")), "since last seen: {off}");
    // The session was alive after all (a stalled instance): its touch marks it back.
    touch(&hub.db, &node_id, t0, clock.now_ms()).await.expect("touch");
    wait_for(&sb, 603, "carol-vps is back online").await;
}

/// The node signs a `Heartbeat` when its EA stops polling and when it is back: told once after
/// `telegram.offline_after_s` while the node is online, once back; never while the node itself
/// is offline (that has its own message).
async fn a_silent_ea_is_told_once_and_back_once(b: Backend) {
    use tradecast_hub::telegram::account::{session_ended, session_started, tell_ea_offline};
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.expect("stand-in");
    let hub = hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let dave = hub.user(&owner, "subscriber").await;
    link(&hub, &sb, &dave, 604).await;
    let (node, node_id) = hub.enrol(&dave, "dave-desktop").await;
    // The node's DEVICE stream as it syncs it: its keys first, then its heartbeats.
    let mut n = Node { identity: &node, tips: Vec::new() };
    let keys = tradecast_protocol::DeviceKeys {
        identity: node.identity_key(),
        sealing: node.sealing_public_key(),
        label: "dave-desktop".into(),
        at_ms: hub.clock.now_ms(),
        account_fingerprint: None,
    };
    n.commit(&hub, StreamId::DEVICE, Body::DeviceKeys(keys)).await;
    let (after, clock) = (600_000, &hub.clock);
    let t0 = clock.now_ms();
    session_started(&hub.db, &node_id, t0).await.expect("online");
    let beat = |up: bool, at_ms: i64| {
        Body::Heartbeat(Heartbeat {
            device: node.device_id(),
            at_ms,
            ea_connected: up,
            terminal_time_ms: None,
        })
    };
    let down = clock.now_ms();
    n.commit(&hub, StreamId::DEVICE, beat(false, down)).await;
    assert_eq!(tell_ea_offline(&hub.db, down + after - 1, after).await.expect("job"), 0, "soon");
    // The same state signed again (a restarted node) does not restart the count.
    clock.advance_ms(after / 2);
    n.commit(&hub, StreamId::DEVICE, beat(false, clock.now_ms())).await;
    clock.advance_ms(after / 2);
    assert_eq!(tell_ea_offline(&hub.db, clock.now_ms(), after).await.expect("job"), 1);
    assert_eq!(tell_ea_offline(&hub.db, clock.now_ms(), after).await.expect("job"), 0, "once");
    let told = wait_for(&sb, 604, "Expert Advisor has not polled dave-desktop").await;
    assert!(told.contains("for 10 min") && told.contains("cannot be executed"), "{told}");
    n.commit(&hub, StreamId::DEVICE, beat(true, clock.now_ms())).await;
    wait_for(&sb, 604, "polling dave-desktop again").await;
    // The EA goes silent while the node itself goes offline: only the node's message applies.
    n.commit(&hub, StreamId::DEVICE, beat(false, clock.now_ms())).await;
    session_ended(&hub.db, &node_id, t0, clock.now_ms()).await.expect("offline");
    clock.advance_ms(2 * after);
    assert_eq!(tell_ea_offline(&hub.db, clock.now_ms(), after).await.expect("job"), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = texts(&sb, 604);
    assert_eq!(all.iter().filter(|t| t.contains("has not polled")).count(), 1, "{all:#?}");
    assert_eq!(all.iter().filter(|t| t.contains("polling dave-desktop again")).count(), 1);
}

/// A signal that has not reached a device connected for over a minute is the owner's
/// `fanout-lag` alarm (the console's overview, and the Telegram alarms job); an offline device's
/// backlog is not.
async fn fan_out_lag_to_a_connected_device_is_an_alarm(b: Backend) {
    use tradecast_hub::telegram::account::{session_ended, session_started, touch};
    use tradecast_hub::ui::overview::{FANOUT_LAG_MS, alarms};
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.expect("stand-in");
    let hub = hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let erin = hub.user(&owner, "subscriber").await;
    let (_node, node_id) = hub.enrol(&erin, "erin-vps").await;
    let lag = |alarms: &[tradecast_hub::ui::overview::Alarm]| {
        alarms.iter().find(|a| a.id == "fanout-lag").map(|a| a.n)
    };
    let clock = &hub.clock;
    let t0 = clock.now_ms();
    session_started(&hub.db, &node_id, t0).await.expect("online");
    // The subscriber's device is expected to receive the signal (its fan-out row).
    hub.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        serde_json::json!({ "user_id": erin.user_id, "plan_id": kit.plan_id }),
    )
    .await
    .ok(201);
    let s = signal(&kit.identity, clock.now_ms());
    assert_eq!(post_signal(&hub, &kit, &s, 1).await.1.ok(201)["n_devices_queued"], 1);
    let state = hub.state();
    assert_eq!(lag(&alarms(state, clock.now_ms()).await.expect("alarms")), None, "fresh");
    clock.advance_ms(FANOUT_LAG_MS + 1_000);
    touch(&hub.db, &node_id, t0, clock.now_ms()).await.expect("touch");
    assert_eq!(lag(&alarms(state, clock.now_ms()).await.expect("alarms")), Some(1));
    // Offline, its backlog waits for it: no alarm.
    session_ended(&hub.db, &node_id, t0, clock.now_ms()).await.expect("offline");
    assert_eq!(lag(&alarms(state, clock.now_ms()).await.expect("alarms")), None);
}
