//! The conformance suite fails against deliberately broken links and passes against the
//! reference node that follows `ea-link.md`.

use tradecast_protocol::ea::{BarSubscription, Timeframe};
use tradecast_sim::conformance::{self, CheckOutcome, Options};

use crate::refnode::{Broken, RefNode};

const KEY: &str = "ea-key-conf";
const SECRET: &str = "tcs_conformance_Secret_0123456789";

async fn node(broken: Broken) -> RefNode {
    let n = RefNode::start(KEY, SECRET, broken).await;
    n.lock().subscriptions =
        vec![BarSubscription { symbol: "EURUSD".into(), timeframe: Timeframe::H1 }];
    n
}

#[tokio::test]
async fn a_correct_node_passes_every_check() {
    let n = node(Broken::default()).await;
    let options = Options { trigger: Some(n.trigger()), ..Options::default() };
    let report =
        conformance::run_with(&n.url, KEY, SECRET, options).await.unwrap_or_else(|r| panic!("{r}"));
    assert!(report.not_run().is_empty(), "{report}");
    assert_eq!(report.checks.len(), 24, "{report}");
    assert!(report.checks.iter().all(|c| c.outcome == CheckOutcome::Passed), "{report}");
}

#[tokio::test]
async fn without_a_trigger_the_order_checks_are_not_run_not_passed() {
    let n = node(Broken::default()).await;
    let report = conformance::run(&n.url, KEY, SECRET).await.unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(
        report.not_run(),
        ["order-reoffered-until-acked", "unknown-settled-by-lookup", "close-all-scope"],
        "{report}"
    );
}

#[tokio::test]
async fn a_link_that_skips_signature_checks_fails() {
    let n = node(Broken { skip_auth: true, ..Broken::default() }).await;
    let report = conformance::run(&n.url, KEY, SECRET).await.expect_err("a broken link must fail");
    let failures = report.failures();
    for name in [
        "auth-stale",
        "auth-future",
        "auth-replayed",
        "auth-unknown-key",
        "auth-wrong-secret",
        "auth-unsigned",
        "auth-malformed-nonce",
        "auth-malformed-timestamp",
        "auth-malformed-signature",
        "auth-nothing-processed",
    ] {
        assert!(failures.contains(&name), "{name} should fail:\n{report}");
    }
    // What the broken node still does right is not reported as failed.
    assert_eq!(report.outcome("hello-required"), Some(&CheckOutcome::Passed), "{report}");
    assert_eq!(report.outcome("body-trailing-nul"), Some(&CheckOutcome::Passed), "{report}");
}

#[tokio::test]
async fn a_link_with_wrongly_signed_answers_fails() {
    let n = node(Broken { bad_answer_signature: true, ..Broken::default() }).await;
    let report = conformance::run(&n.url, KEY, SECRET).await.expect_err("must fail");
    assert!(report.failures().contains(&"answer-signatures"), "{report}");
    let n = node(Broken { unsigned_answers: true, ..Broken::default() }).await;
    let report = conformance::run(&n.url, KEY, SECRET).await.expect_err("must fail");
    assert!(report.failures().contains(&"answer-signatures"), "{report}");
}

#[tokio::test]
async fn a_node_that_loses_acks_fails_the_order_checks() {
    let n = node(Broken { drop_acks: true, ..Broken::default() }).await;
    let options = Options { trigger: Some(n.trigger()), ..Options::default() };
    let report = conformance::run_with(&n.url, KEY, SECRET, options).await.expect_err("must fail");
    assert!(report.failures().contains(&"order-reoffered-until-acked"), "{report}");
}

#[tokio::test]
async fn nothing_listening_fails_without_panicking() {
    let report = conformance::run("http://127.0.0.1:9", KEY, SECRET).await.expect_err("must fail");
    assert!(!report.passed());
}
