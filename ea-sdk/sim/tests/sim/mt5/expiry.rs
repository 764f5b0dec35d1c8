//! Expiration modes (issue 23, "Smaller": `SYMBOL_EXPIRATION_MODE` unchecked): a symbol flags the
//! pending-order lifetimes its broker takes and MT5 refuses any other with 10022. The EA used to
//! send `ORDER_TIME_SPECIFIED` for every order with an expiry, so on a symbol without it every
//! pending order of a signal was refused; it now picks an allowed lifetime (`TcTypeTime`) and,
//! when that outlives the node's expiry, removes the order then itself (`TcExpireOwn`). And the
//! dealer that requotes closes (`BrokerConfig::requote_closes`).

use tradecast_protocol::ea::{DealEntry, MarginMode, Order, OrderKind, Outcome};
use tradecast_sim::broker::{
    BrokerConfig, SYMBOL_EXPIRATION_ALL, SYMBOL_EXPIRATION_DAY, SYMBOL_EXPIRATION_GTC,
    SYMBOL_EXPIRATION_SPECIFIED_DAY, SymbolConfig,
};
use tradecast_sim::retcode;
use tradecast_sim::terminal::{CLOSE_ATTEMPTS, lock};

use super::{LOGIN, MONDAY_10, d, market, rig, rig_with};

const HOUR: i64 = 3_600_000;

fn limit(expiration_ms: Option<i64>) -> Order {
    Order { price: Some(d("1.07000")), expiration_ms, ..market(OrderKind::BuyLimit, "0.10") }
}

fn eurusd(expiration_modes: u32) -> SymbolConfig {
    SymbolConfig { expiration_modes, ..SymbolConfig::forex("EURUSD", 5) }
}

#[tokio::test]
async fn a_pending_order_gets_a_lifetime_the_symbol_allows_and_ends_at_the_nodes_expiry() {
    let cfg = BrokerConfig { check_expiration: true, ..BrokerConfig::default() };
    let want = MONDAY_10 + 2 * HOUR;
    // (the symbol's flags, the expiry the broker keeps: SPECIFIED exactly, SPECIFIED_DAY and
    // DAY the end of the server day at UTC+2, 22:00 UTC; GTC none)
    let end_of_day = MONDAY_10 + 12 * HOUR;
    let cases = [
        (SYMBOL_EXPIRATION_ALL, Some(want)),
        (SYMBOL_EXPIRATION_GTC | SYMBOL_EXPIRATION_SPECIFIED_DAY, Some(end_of_day)),
        (SYMBOL_EXPIRATION_GTC | SYMBOL_EXPIRATION_DAY, Some(end_of_day)),
        (SYMBOL_EXPIRATION_GTC, None),
    ];
    for (modes, kept) in cases {
        let mut r = rig_with(cfg.clone(), MarginMode::Hedging, &[eurusd(modes)], |_| {}).await;
        let (id, _) = r.node.add_order(limit(Some(want)));
        r.steps(2).await;
        let a = r.last_ack(&id);
        // Before the fix: ORDER_TIME_SPECIFIED whatever the flags, 10022 without it.
        assert_eq!((a.outcome, a.retcode), (Outcome::Done, retcode::PLACED), "{modes}: {a:?}");
        let orders = lock(&r.b).orders(LOGIN).expect("account");
        assert_eq!(orders.len(), 1, "{modes}");
        assert_eq!(orders[0].expiration_ms, kept, "{modes}");
        // At the node's expiry the order is gone: the broker's own expiry or the EA's removal.
        lock(&r.b).set_quote("EURUSD", d("1.07200"), d("1.07210"), want - 1).expect("quote");
        r.steps(1).await;
        assert_eq!(lock(&r.b).orders(LOGIN).expect("account").len(), 1, "{modes}: too early");
        lock(&r.b).set_quote("EURUSD", d("1.07200"), d("1.07210"), want).expect("quote");
        r.steps(1).await;
        assert!(lock(&r.b).orders(LOGIN).expect("account").is_empty(), "{modes}: outlived");
    }
    // Without an expiry: GTC, or DAY where GTC is not allowed.
    let mut r = rig_with(cfg, MarginMode::Hedging, &[eurusd(SYMBOL_EXPIRATION_DAY)], |_| {}).await;
    let (id, _) = r.node.add_order(limit(None));
    r.steps(2).await;
    assert_eq!(r.last_ack(&id).retcode, retcode::PLACED);
    let orders = lock(&r.b).orders(LOGIN).expect("account");
    assert_eq!(orders[0].expiration_ms, Some(end_of_day));
}

#[tokio::test]
async fn a_dealer_that_requotes_every_attempt_leaves_the_close_due_at_the_node() {
    // The EA's own attempts are all requoted: it acks rejected 10004, the node keeps the close
    // due and offers it again (the real node after a backoff, `tests/node_sim/faults.rs`), and
    // that offer fills. One close deal, the position closed.
    let cfg = BrokerConfig { requote_closes: CLOSE_ATTEMPTS, ..BrokerConfig::default() };
    let mut r = rig(cfg, MarginMode::Hedging).await;
    r.node.add_order(market(OrderKind::Buy, "0.10"));
    r.steps(2).await;
    let id = r.positions()[0].position_id;
    let cid = r.close(id);
    r.steps(1).await;
    let acks = r.node.acks_for(&cid);
    assert_eq!(acks.len(), 1);
    assert_eq!((acks[0].outcome, acks[0].retcode), (Outcome::Rejected, retcode::REQUOTE));
    assert_eq!(r.positions().len(), 1, "a requote closes nothing");
    r.steps(2).await;
    let a = r.last_ack(&cid);
    assert_eq!((a.outcome, a.retcode), (Outcome::Done, retcode::DONE), "{a:?}");
    assert!(r.positions().is_empty());
    let deals = lock(&r.b).deals(LOGIN, 0, i64::MAX).expect("account");
    assert_eq!(deals.iter().filter(|d| d.entry == DealEntry::Out).count(), 1, "closed once");
}
