//! `tradecast_sim::conformance` against a real node, every check including the order checks
//! (the trigger submits a signal with `execute` and a close-all through the local API).

use std::sync::Arc;

use tradecast_sim::conformance::{
    self, CheckOutcome, MarketClock, Options, Trigger, TriggerRequest,
};

use crate::TestNode;

/// What a running EA reports before the trader's first signal: the account's balance and
/// equity (the suite's scripted EA never pushes a state, and the copy policy does not size a trade
/// on an account whose equity it has not seen). Pushed in-process through a session of its own,
/// on the suite's market clock (the node's market clock never moves back, so the trigger and the
/// suite must read the same one).
fn report_equity(node: &tradecast_node::runtime::Node, market: MarketClock) -> Result<(), String> {
    use tradecast_protocol::ea::{Hello, State};
    let account = node.pick_account(None).map_err(|e| e.to_string())?;
    let acc = node.account(&account).map_err(|e| e.to_string())?.ok_or("no account")?;
    if acc.equity.is_some() {
        return Ok(());
    }
    let now = market.now_ms();
    let hello = Hello {
        login: acc.login,
        server: acc.server.clone(),
        company: acc.company.clone(),
        currency: acc.currency.clone(),
        leverage: 100,
        margin_mode: acc.margin_mode,
        terminal_build: 4_755,
        ea_version: "conformance trigger".into(),
        server_utc_offset_s: acc.server_utc_offset_s,
        terminal_time_ms: now,
        symbols: node.symbol_specs(&account).map_err(|e| e.to_string())?,
        floor_breach: None,
        instance: None,
    };
    let h = node.hello(hello, now).map_err(|e| e.to_string())?;
    let ten_k = rust_decimal::Decimal::from(10_000);
    let state = State {
        session_id: h.session_id,
        terminal_time_ms: now,
        balance: ten_k,
        equity: ten_k,
        margin: rust_decimal::Decimal::ZERO,
        free_margin: ten_k,
        credit: rust_decimal::Decimal::ZERO,
        positions: Vec::new(),
        pending: Vec::new(),
        tick_values: Vec::new(),
        specs: Vec::new(),
    };
    node.state(state, now).map(|_| ()).map_err(|e| e.to_string())
}

fn trigger(
    api: String,
    token: String,
    node: Arc<tradecast_node::runtime::Node>,
    market: MarketClock,
) -> Trigger {
    Arc::new(move |req: TriggerRequest| {
        let api = api.clone();
        let token = token.clone();
        let node = node.clone();
        Box::pin(async move {
            if matches!(req, TriggerRequest::MarketOrder { .. }) {
                report_equity(&node, market)?;
            }
            let client = reqwest::Client::new();
            let (path, body) = match req {
                TriggerRequest::MarketOrder { symbol } => (
                    "/api/v1/signals",
                    serde_json::json!({
                        "symbol": symbol, "timeframe": "H1", "side": "buy",
                        "entry": "1.07000", "stop": "1.06000", "tp1": "1.09000",
                        "volume": "0.01", "execute": true
                    }),
                ),
                TriggerRequest::CloseAll => ("/api/v1/close-all", serde_json::json!({})),
            };
            let resp = client
                .post(format!("{api}{path}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let v: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
            if !(200..300).contains(&status) {
                return Err(format!("{path} answered {status}: {v}"));
            }
            if path == "/api/v1/signals" && v["order_id"].is_null() {
                return Err(format!("the node made no order: {}", v["skipped"]));
            }
            Ok(())
        })
    })
}

/// Runs the suite against a fresh node whose terminal reports `market` as its clock.
async fn run_suite(market: MarketClock) -> Result<conformance::Report, conformance::Report> {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), |_| {}).await;
    let trigger = trigger(node.api_url(""), node.token.clone(), node.running.node.clone(), market);
    let options = Options { trigger: Some(trigger), market, ..Options::default() };
    let report = conformance::run_with(&node.ea_url(), &node.key_id, &node.secret, options).await;
    node.shutdown.trigger();
    report
}

/// The suite's terminal reports a market clock of its own (a Wednesday noon), so the order
/// checks pass whatever day the wall clock says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_conformance_suite_passes_against_the_node() {
    let report = match run_suite(MarketClock::default()).await {
        Ok(r) => r,
        Err(r) => panic!("conformance failed:\n{r}"),
    };
    println!("{report}");
    assert!(report.not_run().is_empty(), "checks not run:\n{report}");
    for name in [
        "hello-required",
        "auth-replayed",
        "auth-nothing-processed",
        "body-trailing-nul",
        "poll-bounded",
        "bar-gap-backfill",
        "order-reoffered-until-acked",
        "unknown-settled-by-lookup",
        "close-all-scope",
        "answer-signatures",
    ] {
        assert_eq!(report.outcome(name), Some(&CheckOutcome::Passed), "{name}:\n{report}");
    }
}

/// On purpose, the weekend: with the terminal's clock on a Saturday the node's market-hours
/// rule refuses the trigger's signal, so the order checks fail saying why, and nothing else does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_on_a_saturday_gets_no_order() {
    // Saturday 2026-03-07 12:00 UTC: three days after the default Wednesday noon.
    let saturday_noon_ms = MarketClock::WEEKDAY_NOON_MS + 3 * 86_400_000;
    let report = run_suite(MarketClock::starting_at(saturday_noon_ms))
        .await
        .expect_err("no order can be made on a Saturday");
    for name in ["order-reoffered-until-acked", "unknown-settled-by-lookup"] {
        match report.outcome(name) {
            Some(CheckOutcome::Failed(why)) => assert!(
                why.contains("market closed (Saturday)"),
                "{name} failed for another reason: {why}\n{report}"
            ),
            other => panic!("{name}: expected the weekend refusal, got {other:?}\n{report}"),
        }
    }
    assert_eq!(report.outcome("hello-required"), Some(&CheckOutcome::Passed), "{report}");
    assert_eq!(report.outcome("answer-signatures"), Some(&CheckOutcome::Passed), "{report}");
}
