//! The "Smaller:" items of issue 23 that the EA fixed, each against the logic before its fix:
//! the look-up reads 30 days of deals (an order merged into a netting position more than a day
//! ago was sent twice), the equity floor deletes Tradecast's pending orders too (one left would
//! open a position after the floor), a magic of 0 or a negative silence is refused at start, and
//! a price change alone no longer pushes a state at every cycle.

use rust_decimal::Decimal;
use tradecast_protocol::ea::{self, DealEntry, MarginMode, Order, OrderKind, Outcome};
use tradecast_sim::broker::BrokerConfig;
use tradecast_sim::link::LinkError;
use tradecast_sim::terminal::{Faults, STATE_EVERY_MS, Terminal, TerminalConfig, lock};

use super::{DAY_MS, KEY, LOGIN, MONDAY_10, SECRET, d, market, rig};

#[tokio::test]
async fn an_order_merged_into_a_netting_position_days_ago_is_found_not_sent_twice() {
    let mut r = rig(BrokerConfig::default(), MarginMode::Netting).await;
    // Only the EA's look-up settles the order here (a node that has not reconciled yet).
    r.node.lock().reconcile = false;
    r.node.add_order(market(OrderKind::Buy, "0.10"));
    r.steps(2).await;
    // The second order merges into the position (which keeps the first order's magic); its ack
    // is lost.
    r.node.lock().broken.drop_acks = true;
    let (id, no) = r.node.add_order(market(OrderKind::Buy, "0.10"));
    let _ = r.t.step().await;
    assert_eq!(r.positions()[0].volume, d("0.20"));
    r.node.lock().broken.drop_acks = false;
    // Two days later (a long outage) the EA restarts and the node offers the order again.
    lock(&r.b)
        .set_quote("EURUSD", d("1.07300"), d("1.07310"), MONDAY_10 + 2 * DAY_MS)
        .expect("quote");
    r.t.faults().crash();
    r.steps(3).await;
    let a = r.last_ack(&id);
    assert_eq!((a.outcome, a.found_by_lookup), (Outcome::Done, true), "{a:?}");
    let magic = ea::magic(r.t.config().input_magic, no);
    let entries = lock(&r.b)
        .deals(LOGIN, 0, i64::MAX)
        .expect("account")
        .into_iter()
        .filter(|x| x.magic == magic && x.entry == DealEntry::In)
        .count();
    assert_eq!(entries, 1, "sent once");
    assert_eq!(r.positions()[0].volume, d("0.20"));
}

#[tokio::test]
async fn the_floor_deletes_tradecasts_pending_orders_too() {
    let mut r = rig(BrokerConfig::default(), MarginMode::Hedging).await;
    r.node.lock().equity_floor = Some(d("9990"));
    r.node.add_order(market(OrderKind::Buy, "1.00"));
    let limit = Order { price: Some(d("1.07000")), ..market(OrderKind::BuyLimit, "0.10") };
    r.node.add_order(limit);
    r.steps(2).await;
    assert_eq!((r.positions().len(), lock(&r.b).orders(LOGIN).expect("account").len()), (1, 1));
    lock(&r.b).set_quote("EURUSD", d("1.07100"), d("1.07110"), MONDAY_10 + 1_000).expect("quote");
    let mut cfg = r.t.config().clone();
    cfg.floor_silence_ms = 0;
    let mut t2 = Terminal::new(cfg, r.b.clone(), Faults::default()).expect("terminal");
    t2.step().await.expect("hello");
    t2.step().await.expect("enforce");
    assert!(r.positions().is_empty());
    assert!(lock(&r.b).orders(LOGIN).expect("account").is_empty(), "the pending order was left");
}

#[test]
fn a_magic_of_zero_or_a_negative_silence_is_refused_at_start() {
    let b = super::broker(BrokerConfig::default(), MarginMode::Hedging, &[]);
    let mut tc = TerminalConfig::new("http://127.0.0.1:9", KEY, SECRET, LOGIN);
    assert!(Terminal::new(tc.clone(), b.clone(), Faults::default()).is_ok());
    tc.input_magic = 0;
    let e = Terminal::new(tc.clone(), b.clone(), Faults::default()).expect_err("magic 0");
    assert!(matches!(e, LinkError::Inputs(_)), "{e}");
    tc.input_magic = 7;
    tc.floor_silence_ms = -1;
    let e = Terminal::new(tc, b, Faults::default()).expect_err("negative silence");
    assert!(matches!(e, LinkError::Inputs(_)), "{e}");
}

/// State pushes follow what changed, not every price: before, the fingerprint held live profit,
/// current prices and equity, so a held position pushed a state at nearly every cycle (here
/// 19 pushes in 20 cycles). Now a push goes when positions, orders or the balance change, when
/// equity moved 0.1 % since the last push (the node's equity points sample the same move), and
/// otherwise every 5 s on the terminal's clock.
#[tokio::test]
async fn a_price_change_alone_does_not_push_a_state_every_cycle() {
    let mut r = rig(BrokerConfig::default(), MarginMode::Hedging).await;
    r.node.add_order(market(OrderKind::Buy, "1.00"));
    r.steps(2).await;
    assert_eq!(r.positions().len(), 1);
    let pushed = r.t.stats().state_pushes;
    assert!(pushed >= 1, "the fill is pushed at once");
    // 20 cycles, each after a one-point tick, 100 ms apart: $1 moves on $10,000 of equity.
    let mut t = MONDAY_10;
    for i in 0..20 {
        t += 100;
        let bid = d("1.07200") + Decimal::new(i % 2, 5);
        lock(&r.b).set_quote("EURUSD", bid, bid + d("0.00010"), t).expect("quote");
        r.t.step().await.expect("step");
    }
    assert_eq!(r.t.stats().state_pushes, pushed, "no push for prices alone within 5 s");
    // 5 s on the terminal's clock: the state goes again, with the profit of now.
    t += STATE_EVERY_MS;
    lock(&r.b).set_quote("EURUSD", d("1.07201"), d("1.07211"), t).expect("quote");
    r.t.step().await.expect("step");
    assert_eq!(r.t.stats().state_pushes, pushed + 1);
    let equity = |r: &super::Rig| r.node.lock().last_state.as_ref().map(|s| s.equity);
    assert_eq!(equity(&r), Some(lock(&r.b).account_info(LOGIN).expect("account").equity));
    // Equity moves 0.1 % (20 points on a lot: $20 of $10,000) within a second: pushed at once,
    // so the node's drawdown guard sees it without waiting for the period.
    t += 500;
    lock(&r.b).set_quote("EURUSD", d("1.07181"), d("1.07191"), t).expect("quote");
    r.t.step().await.expect("step");
    assert_eq!(r.t.stats().state_pushes, pushed + 2);
    assert_eq!(equity(&r), Some(lock(&r.b).account_info(LOGIN).expect("account").equity));
    // A change of the book (a stop loss set) goes at once whatever the prices did.
    let position_id = r.positions()[0].position_id;
    let (order_id, order_no) = r.node.next_ids();
    r.node.add_command(ea::Command::Modify {
        order_id,
        order_no,
        position_id: Some(position_id),
        order_ticket: None,
        sl: Some(d("1.06000")),
        tp: None,
    });
    t += 100;
    lock(&r.b).set_quote("EURUSD", d("1.07181"), d("1.07191"), t).expect("quote");
    r.steps(1).await;
    assert!(r.t.stats().state_pushes >= pushed + 3);
    let sl = r.node.lock().last_state.as_ref().and_then(|s| s.positions.first().and_then(|p| p.sl));
    assert_eq!(sl, Some(d("1.06000")));
}
