//! `tradecast_sim::conformance` against a real node, every check including the order checks
//! (the trigger submits a signal with `execute` and a close-all through the local API).

use std::sync::Arc;

use tradecast_sim::conformance::{self, CheckOutcome, Options, Trigger, TriggerRequest};

use crate::TestNode;

fn trigger(api: String, token: String) -> Trigger {
    Arc::new(move |req: TriggerRequest| {
        let api = api.clone();
        let token = token.clone();
        Box::pin(async move {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_conformance_suite_passes_against_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), |_| {}).await;
    let options = Options {
        trigger: Some(trigger(node.api_url(""), node.token.clone())),
        ..Options::default()
    };
    let report =
        match conformance::run_with(&node.ea_url(), &node.key_id, &node.secret, options).await {
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
    node.shutdown.trigger();
}
