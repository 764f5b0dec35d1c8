//! Each failure the EA link must survive, against the sim's fault controls, ending in the state a
//! trader expects: a short requote storm fills once, a long one is refused in words; a timeout
//! after the fill stays `unknown` until the deal proves the fill; 10019 is refused and never
//! retried; a silent EA shows the link down, expired signals never reach it and the rest is
//! delivered when it is back; the drawdown guard flattens the book within one poll cycle and
//! locks auto mode, and the EA flattens on its own when the node is gone.

use std::time::Duration;

use rust_decimal::Decimal;
use tradecast_node::config::Config;
use tradecast_node::runtime::{OrderAction, OrderRow, OrderState};
use tradecast_protocol::ea;
use tradecast_sim::terminal::{CLOSE_ATTEMPTS, lock};

use crate::TestNode;
use crate::rig::Rig;

struct Scene {
    node: TestNode,
    rig: Rig,
    _dir: tempfile::TempDir,
}

async fn scene(edit: impl FnOnce(&mut Config), floor_silence_ms: i64) -> Scene {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), edit).await;
    let mut rig = Rig::with(&node.ea_url(), &node.key_id, &node.secret, 800, |tc| {
        tc.floor_silence_ms = floor_silence_ms;
    });
    for _ in 0..30 {
        rig.replay.advance().expect("advance");
        rig.catch_up(20).await;
    }
    Scene { node, rig, _dir: dir }
}

impl Scene {
    /// A buy through the local API, executed at `volume` lots; its order id.
    async fn buy(&mut self, volume: &str, expires_in_ms: Option<i64>) -> String {
        let ask = lock(&self.rig.broker).quote("EURUSD").expect("quote").ask;
        let market = self.node.running.node.market_ms(&self.account()).expect("market");
        let mut body = serde_json::json!({
            "symbol": "EURUSD", "timeframe": "H1", "side": "buy",
            "entry": ask.to_string(),
            "stop": (ask - Decimal::new(200, 4)).to_string(),
            "tp1": (ask + Decimal::new(200, 4)).to_string(),
            "volume": volume, "execute": true
        });
        if let Some(ms) = expires_in_ms {
            body["expires_at_ms"] = serde_json::json!(market + ms);
        }
        let (status, v) = self.node.api(reqwest::Method::POST, "/api/v1/signals", Some(body)).await;
        assert_eq!(status, 201, "{v}");
        v["order_id"].as_str().unwrap_or_else(|| panic!("no order: {v}")).to_owned()
    }

    fn account(&self) -> String {
        self.node.running.node.pick_account(None).expect("account")
    }

    fn order(&self, id: &str) -> OrderRow {
        let orders = self.node.running.node.orders(&self.account()).expect("orders");
        orders.into_iter().find(|o| o.order_id == id).expect("the order")
    }

    async fn steps(&mut self, n: usize) {
        for _ in 0..n {
            let _ = self.rig.terminal.step().await;
        }
    }

    async fn bars(&mut self, n: usize) {
        for _ in 0..n {
            self.rig.replay.advance().expect("advance");
            self.rig.catch_up(20).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_requote_storm_fills_once() {
    let mut s = scene(|_| {}, 10_000).await;
    s.rig.faults.requote_next(2);
    let id = s.buy("0.10", None).await;
    s.steps(6).await;
    let o = s.order(&id);
    assert_eq!(o.state, OrderState::Acked, "{o:?}");
    assert_eq!(o.n_requotes, 2);
    assert_eq!(s.rig.entries_by_order_no().get(&o.order_no), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_requote_storm_is_refused_in_words() {
    let mut s = scene(|_| {}, 10_000).await;
    s.rig.faults.requote_next(50);
    let id = s.buy("0.10", None).await;
    s.steps(10).await;
    let o = s.order(&id);
    assert_eq!((o.state, o.retcode), (OrderState::Rejected, Some(10004)), "{o:?}");
    assert!(o.explained.contains("requote"), "{}", o.explained);
    assert!(s.rig.entries_by_order_no().is_empty());
}

/// Issue 23, item 8: a dealer that requotes every one of the EA's attempts to close. The node
/// used to take the EA's `rejected 10004` as final and the position stayed open; now the close
/// stays due, is not offered again before its backoff (on the market clock: not in this bar),
/// and the next offer closes the position, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_the_dealer_requotes_stays_due_and_the_position_ends_closed() {
    let mut s = scene(|_| {}, 10_000).await;
    let id = s.buy("0.10", None).await;
    s.steps(3).await;
    let pid = s.order(&id).ack.and_then(|a| a.position_id).expect("filled");
    lock(&s.rig.broker).config_mut().requote_closes = CLOSE_ATTEMPTS;
    let close = s
        .node
        .running
        .node
        .queue(
            &s.account(),
            |_, _| OrderAction::Close { position_id: pid, symbol: "EURUSD".into(), volume: None },
            None,
            None,
        )
        .expect("queue");
    s.steps(5).await;
    let c = s.order(&close.order_id);
    assert_eq!(
        (c.state, c.retcode, c.n_requotes, c.n_offers),
        (OrderState::Due, Some(10_004), 1, 1),
        "{c:?}"
    );
    assert!(c.explained.contains("sent again"), "{}", c.explained);
    let open = |s: &Scene| lock(&s.rig.broker).positions(crate::rig::LOGIN).expect("account").len();
    assert_eq!(open(&s), 1, "the requoted close left the position open");
    s.bars(1).await;
    let c = s.order(&close.order_id);
    assert_eq!((c.state, c.n_offers), (OrderState::Acked, 2), "{c:?}");
    assert_eq!(open(&s), 0, "closed");
    let outs = lock(&s.rig.broker)
        .deals(crate::rig::LOGIN, i64::MIN, i64::MAX)
        .expect("deals")
        .into_iter()
        .filter(|d| d.entry == ea::DealEntry::Out)
        .count();
    assert_eq!(outs, 1, "closed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_after_the_fill_stays_unknown_until_the_deal_proves_it() {
    let mut s = scene(|_| {}, 10_000).await;
    s.rig.faults.timeout_after_fill(false);
    let id = s.buy("0.10", None).await;
    // One step: poll, send (filled, but 10012 and invisible to the look-up), ack unknown. The
    // deals push of the next step proves the fill.
    s.steps(1).await;
    let after_ack = s.order(&id);
    s.steps(3).await;
    let o = s.order(&id);
    assert!(
        matches!(after_ack.state, OrderState::Unknown | OrderState::Acked),
        "after the timeout: {after_ack:?}"
    );
    assert_eq!(o.state, OrderState::Acked, "{o:?}");
    assert_eq!(o.settled_by, "reconciliation", "{o:?}");
    assert_eq!(s.rig.entries_by_order_no().get(&o.order_no), Some(&1), "filled once");
    let positions = s.node.running.node.positions(&s.account()).expect("positions");
    assert!(positions.iter().any(|p| p.open && p.order_id.as_deref() == Some(&id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_money_is_refused_and_never_sent_again() {
    let mut s = scene(|_| {}, 10_000).await;
    s.rig.faults.force_retcode(10_019);
    let id = s.buy("0.10", None).await;
    s.steps(5).await;
    let o = s.order(&id);
    assert_eq!((o.state, o.retcode), (OrderState::Rejected, Some(10_019)), "{o:?}");
    assert_eq!(o.explained, "not enough money to open the position");
    assert_eq!(o.n_offers, 1, "refused orders are not offered again");
    assert!(s.rig.entries_by_order_no().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_ea_shows_the_link_down_and_expired_signals_never_reach_it() {
    let mut s = scene(|c| c.link_down_after_s = 1, 10_000).await;
    let node = s.node.running.node.clone();
    let now = tradecast_node::runtime::wall_ms;
    assert!(node.status(now()).expect("status").link_up);
    s.rig.faults.set_silent(true);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(!node.status(now()).expect("status").link_up, "the link shows down");
    let short = s.buy("0.10", Some(2 * 3_600_000)).await;
    let long = s.buy("0.10", Some(48 * 3_600_000)).await;
    // The market moves on while the EA says nothing.
    s.bars(5).await;
    s.rig.faults.set_silent(false);
    s.steps(4).await;
    assert!(node.status(now()).expect("status").link_up);
    let o = s.order(&short);
    assert_eq!((o.state, o.n_offers), (OrderState::Expired, 0), "{o:?}");
    assert!(!s.rig.entries_by_order_no().contains_key(&o.order_no));
    let o = s.order(&long);
    assert_eq!(o.state, OrderState::Acked, "delivered when the EA is back: {o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drawdown_guard_flattens_the_book_within_one_poll_and_locks_auto_mode() {
    let mut s = scene(|c| c.policy.risk.drawdown_lock_pct = Decimal::ONE, 10_000).await;
    let _ = s.buy("3.00", None).await;
    s.steps(2).await;
    assert_eq!(s.rig.open_positions().len(), 1);
    let node = s.node.running.node.clone();
    let account = s.account();
    let mut locked = false;
    for _ in 0..400 {
        s.rig.replay.advance().expect("advance");
        // One EA cycle: pushes state (the guard trips), then polls (the close-all).
        let _ = s.rig.terminal.step().await;
        if node.account(&account).expect("account").expect("row").locked {
            locked = true;
            break;
        }
    }
    assert!(locked, "the guard never tripped");
    // Within one poll cycle: the close-all reached the EA in the same step or the next one.
    let _ = s.rig.terminal.step().await;
    assert!(s.rig.open_positions().is_empty(), "Tradecast's book is flat");
    let status = node.status(tradecast_node::runtime::wall_ms()).expect("status");
    let a = &status.accounts[0];
    assert!(a.locked && a.lock_reason.contains("drawdown guard"), "{a:?}");
    // Auto mode stays locked: a new signal makes no order.
    let ask = lock(&s.rig.broker).quote("EURUSD").expect("quote").ask;
    let (_, v) = s
        .node
        .api(
            reqwest::Method::POST,
            "/api/v1/signals",
            Some(serde_json::json!({
                "symbol": "EURUSD", "timeframe": "H1", "side": "buy",
                "entry": ask.to_string(), "stop": (ask - Decimal::new(200, 4)).to_string(),
                "tp1": (ask + Decimal::new(200, 4)).to_string(), "volume": "0.10", "execute": true
            })),
        )
        .await;
    // The guard's cap is the policy's drawdown rule: below it a new signal is skipped by that
    // rule (it does not wait for the trader: no position is taken at the cap in any mode).
    assert!(v["order_id"].is_null(), "{v}");
    let id = v["signal"]["id"].as_str().expect("signal id").to_owned();
    let approvals = node.approvals().expect("approvals");
    let a = approvals.iter().find(|a| a.pending.signal_id.to_hex() == id).expect("its approval");
    let decided = a.pending.decided().expect("decided by rule");
    assert_eq!(decided.decision, tradecast_protocol::Decision::Rejected, "{a:?}");
    assert!(decided.reason.contains("the drawdown lock is at 1 %"), "{a:?}");
    let log = node.copy_log().expect("copy log");
    let entry = log.iter().find(|e| e.signal_id.to_hex() == id).expect("its copy-log entry");
    assert!(
        entry.steps.iter().any(|s| s.rule == tradecast_node::policy::Rule::Drawdown),
        "the drawdown step refused it: {entry:?}"
    );
    // Until the trader unlocks it.
    let (status, _) = s.node.api(reqwest::Method::POST, "/api/v1/unlock", None).await;
    assert_eq!(status, 204);
    let (_, st) = s.node.api(reqwest::Method::GET, "/api/v1/status", None).await;
    assert_eq!(st["accounts"][0]["locked"], serde_json::json!(false), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_node_gone_the_ea_keeps_the_floor_on_its_own() {
    let mut s = scene(|c| c.policy.risk.drawdown_lock_pct = Decimal::ONE, 300).await;
    let _ = s.buy("3.00", None).await;
    s.steps(3).await;
    assert_eq!(s.rig.open_positions().len(), 1);
    assert!(s.rig.terminal.equity_floor().is_some(), "the node handed the EA a floor");
    // The node goes away (as if killed): the EA is on its own.
    s.node.shutdown.trigger();
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..400 {
        s.rig.replay.advance().expect("advance");
        let _ = s.rig.terminal.step().await;
        if s.rig.open_positions().is_empty() {
            break;
        }
    }
    assert!(s.rig.open_positions().is_empty(), "the EA flattened Tradecast's book itself");
    assert!(s.rig.terminal.stats().floor_breaches >= 1);
}
