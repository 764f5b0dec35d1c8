//! The UI over a store that fails: every page is a failure the trader sees (500 and the
//! store-failure page, the equity series a 500 problem), never an empty table. The store is
//! real (redb in memory) and made to fail the honest way: a row that no longer decodes.

use std::net::SocketAddr;

use zeroize::Zeroizing;

use super::{Ui, pages};
use crate::runtime::tests::in_memory_node;
use crate::runtime::{Node, NodeError};
use crate::store::{self, StoreError};

/// Writes bytes that are not an account row under an account key, below the runtime.
fn corrupt_accounts(node: &Node) {
    let tx = node.store().db().begin_write().expect("write");
    {
        let mut t = tx.open_table(store::ACCOUNTS).expect("accounts table");
        t.insert("1234@Demo", b"\xff not json".as_slice()).expect("insert");
    }
    tx.commit().expect("commit");
}

fn is_store_failure<T: std::fmt::Debug>(r: Result<T, NodeError>) -> bool {
    matches!(r, Err(NodeError::Store(StoreError::Row { table: "accounts", .. })))
}

#[test]
fn every_page_is_an_error_when_the_store_fails() {
    let node = in_memory_node();
    assert!(pages::dashboard(&node, "t", None).is_ok());
    assert!(pages::equity_series(&node).is_ok_and(|s| s.t.is_empty()));
    corrupt_accounts(&node);
    assert!(is_store_failure(pages::dashboard(&node, "t", None)));
    assert!(is_store_failure(pages::copy_log(&node, "t")));
    assert!(is_store_failure(pages::history(&node, "t")));
    assert!(is_store_failure(pages::settings(&node, "t", None, &pages::PlanView::NotEnrolled)));
    assert!(is_store_failure(pages::equity_series(&node)));
    assert!(is_store_failure(pages::fill_times_ms(&node, 20)));
}

/// The real router on 127.0.0.1:0, signed in through `/login`: a page over a failing store is
/// 500 and says the store failed.
#[tokio::test]
async fn a_store_failure_is_served_as_a_failure_not_an_empty_page() {
    let node = in_memory_node();
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = Ui::new(node.clone(), Zeroizing::new("token-1".to_owned()), addr).router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login =
        client.get(format!("http://{addr}/login?token=token-1")).send().await.expect("login");
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let get = |path: &str| {
        client.get(format!("http://{addr}{path}")).header(reqwest::header::COOKIE, &cookie).send()
    };
    let ok = get("/").await.expect("dashboard");
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.expect("body").contains("No open position."));

    corrupt_accounts(&node);
    for path in ["/", "/copy-log", "/history", "/settings"] {
        let resp = get(path).await.expect("page");
        assert_eq!(resp.status(), 500, "{path}");
        let body = resp.text().await.expect("body");
        assert!(body.contains("The node could not read its store"), "{path}: {body}");
        assert!(!body.contains("No open position.") && !body.contains("<table"), "{path}: {body}");
    }
    let resp = get("/ui/equity.json").await.expect("equity");
    assert_eq!(resp.status(), 500);
    let ct = resp.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    assert_eq!(ct.as_ref().and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    server.abort();
}
