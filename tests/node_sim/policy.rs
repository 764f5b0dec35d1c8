//! The copy policy and approvals in the running node, against the simulated terminal: a signal
//! in manual mode waits for the trader and fills once approved (a second decision, a decision
//! after expiry and a remote one while remote approval is off are refused with problem+json); a
//! skip is one line in the copy log (an excluded symbol, a holiday from the data dir's
//! `holidays.toml`); a lot mode saved through the API sizes the next order.

use rust_decimal::Decimal;
use tradecast_node::config::Config;
use tradecast_node::policy::approval::ApprovalMode;
use tradecast_node::policy::sizing::LotMode;
use tradecast_node::policy::{PolicySettings, Rule};
use tradecast_node::runtime::{OrderAction, OrderState};
use tradecast_protocol::{Body, Decision, StreamId};
use tradecast_sim::terminal::lock;

use crate::TestNode;
use crate::rig::Rig;

struct Scene {
    node: TestNode,
    rig: Rig,
    _dir: tempfile::TempDir,
}

/// A node (its config edited; `before_start` runs on the data dir first) and the sim, 30 bars in.
async fn scene(
    edit: impl FnOnce(&mut Config),
    before_start: impl FnOnce(&std::path::Path),
) -> Scene {
    let dir = tempfile::tempdir().expect("tempdir");
    before_start(dir.path());
    let node = TestNode::start(dir.path(), edit).await;
    let mut rig = Rig::new(&node.ea_url(), &node.key_id, &node.secret, 800);
    for _ in 0..30 {
        rig.replay.advance().expect("advance");
        rig.catch_up(20).await;
    }
    Scene { node, rig, _dir: dir }
}

impl Scene {
    /// Submits a buy for execution at the live ask (the provider's lot `volume`); the answer.
    async fn buy(&mut self, volume: &str, expires_in_ms: Option<i64>) -> serde_json::Value {
        let ask = lock(&self.rig.broker).quote("EURUSD").expect("quote").ask;
        let market = self.node.running.node.market_ms(&self.account()).expect("market");
        let mut body = serde_json::json!({
            "symbol": "EURUSD", "timeframe": "H1", "side": "buy",
            "entry": ask.to_string(),
            "stop": (ask - Decimal::new(200, 4)).to_string(),
            "tp1": (ask + Decimal::new(300, 4)).to_string(),
            "volume": volume, "execute": true
        });
        if let Some(ms) = expires_in_ms {
            body["expires_at_ms"] = serde_json::json!(market + ms);
        }
        let (status, v) = self.node.api(reqwest::Method::POST, "/api/v1/signals", Some(body)).await;
        assert_eq!(status, 201, "{v}");
        v
    }

    fn account(&self) -> String {
        self.node.running.node.pick_account(None).expect("account")
    }

    async fn steps(&mut self, n: usize) {
        for _ in 0..n {
            let _ = self.rig.terminal.step().await;
        }
    }

    async fn decide(
        &self,
        id: &str,
        verdict: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let path = format!("/api/v1/signals/{id}/{verdict}");
        self.node.api(reqwest::Method::POST, &path, Some(body)).await
    }

    fn open_volumes(&self) -> Vec<Decimal> {
        self.node
            .running
            .node
            .orders(&self.account())
            .expect("orders")
            .into_iter()
            .filter_map(|o| match o.action {
                OrderAction::Open(x) => Some(x.volume),
                _ => None,
            })
            .collect()
    }
}

fn manual(c: &mut Config) {
    c.policy.approval.mode = ApprovalMode::Manual;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_mode_waits_for_the_trader_and_the_approved_signal_fills() {
    let mut s = scene(manual, |_| {}).await;
    let v = s.buy("0.10", None).await;
    let id = v["signal"]["id"].as_str().expect("id").to_owned();
    assert!(v["order_id"].is_null() && v["skipped"] == "", "accepted, waiting: {v}");
    // Nothing reaches the EA while it waits.
    s.steps(3).await;
    assert!(s.rig.open_positions().is_empty());
    let (_, approvals) = s.node.api(reqwest::Method::GET, "/api/v1/approvals", None).await;
    let waiting = approvals
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["pending"]["signal_id"] == id.as_str())
        .expect("its approval");
    assert_eq!(waiting["pending"]["state"], "waiting", "{waiting}");

    // A remote request while remote approval is off is refused.
    let (status, p) =
        s.decide(&id, "approve", serde_json::json!({"user": "tg:42", "via": "telegram"})).await;
    assert_eq!((status, p["code"].as_str()), (409, Some("remote-approval-disabled")), "{p}");

    // The trader approves: signed, queued, filled.
    let (status, a) = s.decide(&id, "approve", serde_json::json!({"reason": "looks good"})).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["decision"], "approved", "{a}");
    assert!(a["reason"].as_str().is_some_and(|r| r.contains("through the local API")), "{a}");
    s.steps(4).await;
    let open = s.rig.open_positions();
    assert_eq!(open.len(), 1, "the approved signal filled");
    assert_eq!(open[0].volume, Decimal::new(10, 2));
    let node = &s.node.running.node;
    let row = node.signals().expect("signals").into_iter().find(|r| r.signal.id.to_hex() == id);
    let order_id = row.and_then(|r| r.order_id).expect("the signal's order");
    let o = node.orders(&s.account()).expect("orders");
    let o = o.iter().find(|o| o.order_id == order_id).expect("order row");
    assert_eq!(o.state, OrderState::Acked, "{o:?}");

    // The approval is a signed record in the shared stream.
    let shared = node.store().read().expect("read").outbox(StreamId::SHARED).expect("outbox");
    let approved: Vec<_> = shared
        .iter()
        .filter_map(|r| match node.open_record(r) {
            Some(Body::Approval(a)) if a.signal_id.to_hex() == id => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(approved.len(), 1, "one approval record");
    assert_eq!(approved[0].decision, Decision::Approved);
    // It carries the lots actually chosen (record version 2), as the API's answer did.
    assert_eq!(approved[0].lots, Some(open[0].volume));
    assert_eq!(a["lots"], "0.10", "{a}");
    assert!(shared.iter().all(|r| r.verify(&node.identity_key()).is_ok()), "signed by the node");

    // A second decision is refused.
    let (status, p) = s.decide(&id, "reject", serde_json::json!({})).await;
    assert_eq!((status, p["code"].as_str()), (409, Some("already-decided")), "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("approved")), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_after_the_expiry_is_refused_and_the_signal_never_trades() {
    let mut s = scene(manual, |_| {}).await;
    // Expires within the next bar on the market clock.
    let v = s.buy("0.10", Some(60_000)).await;
    let id = v["signal"]["id"].as_str().expect("id").to_owned();
    for _ in 0..3 {
        s.rig.replay.advance().expect("advance");
        s.rig.catch_up(20).await;
    }
    // The EA's state pushes moved the market clock past the expiry: recorded, signed.
    let a = s.node.running.node.approvals().expect("approvals");
    let a = a.iter().find(|a| a.pending.signal_id.to_hex() == id).expect("approval");
    assert_eq!(a.pending.decided().map(|d| d.decision), Some(Decision::Expired), "{a:?}");
    let (status, p) = s.decide(&id, "approve", serde_json::json!({})).await;
    assert_eq!((status, p["code"].as_str()), (409, Some("already-decided")), "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("expired")), "{p}");
    let a = s.node.running.node.approvals().expect("approvals");
    let a = a.iter().find(|a| a.pending.signal_id.to_hex() == id).expect("approval");
    assert_eq!(a.pending.decided().map(|d| d.decision), Some(Decision::Expired), "{a:?}");
    s.steps(3).await;
    assert!(s.rig.open_positions().is_empty(), "an expired signal never trades");
    assert!(s.open_volumes().is_empty(), "no order was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excluded_symbol_is_one_skip_line_in_the_copy_log() {
    let mut s = scene(|c| c.policy.symbols.exclude = vec!["EURUSD".into()], |_| {}).await;
    let v = s.buy("0.10", None).await;
    assert_eq!(v["skipped"], "skipped: EURUSD is in the exclude list", "{v}");
    assert!(v["order_id"].is_null());
    let (status, log) = s.node.api(reqwest::Method::GET, "/api/v1/copy-log", None).await;
    assert_eq!(status, 200);
    let e = log.as_array().and_then(|l| l.last()).expect("an entry").clone();
    assert_eq!(e["line"], "skipped: EURUSD is in the exclude list", "{e}");
    assert_eq!((e["accepted"].as_bool(), e["failed_rule"].as_str()), (Some(false), Some("symbol")));
    s.steps(3).await;
    assert!(s.rig.open_positions().is_empty());
    // The skip is also a signed rejection by rule.
    let a = s.node.running.node.approvals().expect("approvals");
    let d = a[0].pending.decided().expect("decided");
    assert_eq!(d.decision, Decision::Rejected);
    assert_eq!(d.reason, "skipped: EURUSD is in the exclude list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holiday_in_the_data_dirs_calendar_closes_the_market() {
    // The replay's first days (April 2017) declared a broker holiday for EURUSD.
    let mut s = scene(
        |_| {},
        |dir| {
            std::fs::create_dir_all(dir).expect("dir");
            let mut text = String::new();
            for d in ["2017-04-19", "2017-04-20", "2017-04-21"] {
                text.push_str(&format!(
                    "[[holiday]]\nname = \"Broker holiday {d}\"\ndate = \"{d}\"\nsymbols = [\"EURUSD\"]\n\n"
                ));
            }
            std::fs::write(dir.join("holidays.toml"), text).expect("holidays");
        },
    )
    .await;
    let v = s.buy("0.10", None).await;
    let line = v["skipped"].as_str().expect("skipped").to_owned();
    assert!(line.starts_with("skipped: EURUSD market closed (Broker holiday 2017-04-"), "{line}");
    let log = s.node.running.node.copy_log().expect("copy log");
    let e = log.last().expect("entry");
    assert_eq!(e.failed_rule, Some(Rule::MarketHours));
    assert_eq!(e.line, line);
    // The steps before it passed and say what they saw.
    assert!(
        e.steps
            .iter()
            .any(|st| st.rule == Rule::Symbol && st.passed && st.detail.contains("EURUSD"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lot_mode_saved_through_the_api_sizes_the_next_order() {
    let mut s =
        scene(|c| c.policy.lot = LotMode::Fixed { lots: Decimal::new(10, 2) }, |_| {}).await;
    let _ = s.buy("1.00", None).await;
    s.steps(3).await;
    assert_eq!(
        s.open_volumes(),
        vec![Decimal::new(10, 2)],
        "fixed 0.10 lots, not the provider's 1.00"
    );

    let (_, current) = s.node.api(reqwest::Method::GET, "/api/v1/policy", None).await;
    let mut p: PolicySettings = serde_json::from_value(current).expect("policy json");
    p.lot = LotMode::Proportional { lots: Decimal::new(3, 2), per_balance: Decimal::from(1_000) };
    let (status, saved) = s
        .node
        .api(reqwest::Method::PUT, "/api/v1/policy", Some(serde_json::to_value(&p).expect("json")))
        .await;
    assert_eq!(status, 200, "{saved}");
    let _ = s.buy("1.00", None).await;
    s.steps(3).await;
    let vols = s.open_volumes();
    assert_eq!(vols.len(), 2, "{vols:?}");
    let account = s.account();
    let balance = s.node.running.node.account(&account).expect("row").expect("account").balance;
    let balance = balance.expect("the EA reported the balance");
    // 0.03 × balance / 1,000, down to the 0.01 volume step.
    let raw = balance / Decimal::from(1_000) * Decimal::new(3, 2);
    let expected = (raw * Decimal::ONE_HUNDRED).floor() / Decimal::ONE_HUNDRED;
    assert_eq!(vols[1], expected, "balance {balance}");
    assert_ne!(vols[1], vols[0]);
    let open = s.rig.open_positions();
    assert!(open.iter().any(|p| p.volume == expected), "the broker filled the new size: {open:?}");

    // A policy that does not validate is refused and changes nothing.
    let mut bad = p.clone();
    bad.lot_min = Some(Decimal::from(2));
    bad.lot_max = Some(Decimal::ONE);
    let (status, problem) = s
        .node
        .api(
            reqwest::Method::PUT,
            "/api/v1/policy",
            Some(serde_json::to_value(&bad).expect("json")),
        )
        .await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid-policy")), "{problem}");
    assert_eq!(s.node.running.node.policy().expect("policy"), p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_approval_is_a_request_honoured_only_when_enabled_and_within_the_policy() {
    let remote = |c: &mut Config| {
        c.policy.approval.mode = ApprovalMode::Manual;
        c.policy.approval.remote_approval = true;
    };
    let mut s = scene(remote, |_| {}).await;
    let v = s.buy("0.10", None).await;
    let id = v["signal"]["id"].as_str().expect("id").to_owned();
    let policy = s.node.running.node.policy().expect("policy");

    // The trader excludes EURUSD while the signal waits: a remote approval is now outside the
    // policy, refused, and the signal still waits (only the trader's rules decide).
    let mut excluded = policy.clone();
    excluded.symbols.exclude = vec!["EURUSD".into()];
    let body = serde_json::to_value(&excluded).expect("json");
    let (status, _) = s.node.api(reqwest::Method::PUT, "/api/v1/policy", Some(body)).await;
    assert_eq!(status, 200);
    let (status, p) =
        s.decide(&id, "approve", serde_json::json!({"user": "tg:42", "via": "telegram"})).await;
    assert_eq!((status, p["code"].as_str()), (409, Some("outside-policy")), "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("exclude list")), "{p}");
    s.steps(3).await;
    assert!(s.rig.open_positions().is_empty());

    // Back within the policy, the same remote request is honoured, signed, and executed.
    let body = serde_json::to_value(&policy).expect("json");
    let (status, _) = s.node.api(reqwest::Method::PUT, "/api/v1/policy", Some(body)).await;
    assert_eq!(status, 200);
    let (status, a) =
        s.decide(&id, "approve", serde_json::json!({"user": "tg:42", "via": "telegram"})).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["decision"], "approved", "{a}");
    assert!(
        a["reason"].as_str().is_some_and(|r| r.contains("by remote request via telegram")),
        "{a}"
    );
    s.steps(4).await;
    assert_eq!(s.rig.open_positions().len(), 1, "filled once approved");
    // The copy log's decision column and the approval record name the channel.
    let approvals = s.node.running.node.approvals().expect("approvals");
    let row = approvals.iter().find(|r| r.pending.signal_id.to_hex() == id).expect("approval");
    let d = row.pending.decided().expect("decided");
    assert_eq!(d.decision, Decision::Approved);
    assert!(d.reason.contains("telegram"), "{d:?}");
}
