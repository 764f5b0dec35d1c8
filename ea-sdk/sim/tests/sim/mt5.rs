//! The terminal against brokers that behave like real MT5 servers in ways the default sim does
//! not (issue 23): each option of the broker or the terminal models one, and each test here
//! failed against the EA logic before its fix.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use tradecast_protocol::ea::{self, Command, MarginMode, Order, OrderKind, Outcome};
use tradecast_sim::broker::{
    AccountConfig, Broker, BrokerConfig, Execution, SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC,
    SymbolConfig, TradeRequest, market_watch,
};
use tradecast_sim::retcode;
use tradecast_sim::terminal::{Faults, SharedBroker, Terminal, TerminalConfig, lock};

use crate::refnode::{Broken, RefNode};

mod expiry;
mod smaller;

const KEY: &str = "ea-key-mt5";
const SECRET: &str = "tcs_mt5_Secret_abcdef";
const LOGIN: u64 = 6_000_001;
/// Monday 2017-04-24 10:00 UTC.
const MONDAY_10: i64 = 1_493_028_000_000;
const DAY_MS: i64 = 86_400_000;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("test decimal")
}

fn broker(cfg: BrokerConfig, mode: MarginMode, symbols: &[SymbolConfig]) -> SharedBroker {
    let mut b = Broker::new(cfg);
    b.add_symbol(SymbolConfig::forex("EURUSD", 5));
    for s in symbols {
        b.add_symbol(s.clone());
    }
    b.open_account(AccountConfig {
        login: LOGIN,
        currency: "USD".into(),
        leverage: 100,
        margin_mode: mode,
        balance: d("10000"),
    })
    .expect("account");
    b.set_quote("EURUSD", d("1.07200"), d("1.07210"), MONDAY_10).expect("quote");
    Arc::new(Mutex::new(b))
}

struct Rig {
    node: RefNode,
    b: SharedBroker,
    t: Terminal,
}

async fn rig(cfg: BrokerConfig, mode: MarginMode) -> Rig {
    rig_with(cfg, mode, &[], |_| {}).await
}

async fn rig_with(
    cfg: BrokerConfig,
    mode: MarginMode,
    symbols: &[SymbolConfig],
    tune: impl FnOnce(&mut TerminalConfig),
) -> Rig {
    let node = RefNode::start(KEY, SECRET, Broken::default()).await;
    let b = broker(cfg, mode, symbols);
    let mut tc = TerminalConfig::new(&node.url, KEY, SECRET, LOGIN);
    tc.poll_wait_override_ms = Some(20);
    tune(&mut tc);
    let t = Terminal::new(tc, b.clone(), Faults::default()).expect("terminal");
    Rig { node, b, t }
}

impl Rig {
    async fn steps(&mut self, n: usize) {
        for _ in 0..n {
            self.t.step().await.expect("step against a healthy node");
        }
    }

    fn positions(&self) -> Vec<ea::Position> {
        lock(&self.b).positions(LOGIN).expect("account")
    }

    /// The node asks for a close of `position_id`; returns the close's order id.
    fn close(&self, position_id: u64) -> String {
        let (id, no) = self.node.next_ids();
        self.node.add_command(Command::Close {
            order_id: id.clone(),
            order_no: no,
            position_id,
            symbol: "EURUSD".into(),
            volume: None,
        });
        id
    }

    fn last_ack(&self, id: &str) -> ea::Ack {
        self.node.acks_for(id).last().cloned().unwrap_or_else(|| panic!("no ack for {id}"))
    }
}

fn market(kind: OrderKind, volume: &str) -> Order {
    Order {
        order_id: String::new(),
        order_no: 0,
        symbol: "EURUSD".into(),
        kind,
        volume: d(volume),
        price: None,
        sl: None,
        tp: None,
        max_slippage_points: None,
        expiration_ms: None,
    }
}

// 1. Ticket vs identifier.

#[tokio::test]
async fn a_close_after_a_netting_reversal_uses_the_positions_ticket() {
    let cfg = BrokerConfig { new_ticket_on_reversal: true, ..BrokerConfig::default() };
    let mut r = rig(cfg, MarginMode::Netting).await;
    r.node.add_order(market(OrderKind::Buy, "0.10"));
    r.steps(2).await;
    let id = r.positions()[0].position_id;
    // The trader reverses it by hand: same identifier, a new ticket.
    lock(&r.b).send(LOGIN, &TradeRequest::market("EURUSD", OrderKind::Sell, d("0.30")));
    let pos = r.positions();
    assert_eq!((pos.len(), pos[0].position_id, pos[0].volume), (1, id, d("0.20")));
    assert_ne!(lock(&r.b).position_ticket(LOGIN, id), Some(id), "the ticket changed");
    let cid = r.close(id);
    r.steps(2).await;
    let a = r.last_ack(&cid);
    assert_eq!((a.outcome, a.retcode), (Outcome::Done, retcode::DONE), "{a:?}");
    assert!(r.positions().is_empty());
}

#[tokio::test]
async fn modify_and_the_floor_close_work_after_a_reopening_swap_rollover() {
    let cfg = BrokerConfig { reopen_on_rollover: true, ..BrokerConfig::default() };
    let mut r = rig(cfg, MarginMode::Hedging).await;
    r.node.lock().equity_floor = Some(d("9950"));
    r.node.add_order(market(OrderKind::Buy, "1.00"));
    r.steps(2).await;
    let id = r.positions()[0].position_id;
    // Tuesday: the rollover re-opened the position under a new ticket.
    lock(&r.b).set_quote("EURUSD", d("1.07200"), d("1.07210"), MONDAY_10 + DAY_MS).expect("quote");
    assert_ne!(lock(&r.b).position_ticket(LOGIN, id), Some(id));
    let (mid, mno) = r.node.next_ids();
    r.node.add_command(Command::Modify {
        order_id: mid.clone(),
        order_no: mno,
        position_id: Some(id),
        order_ticket: None,
        sl: Some(d("1.06000")),
        tp: None,
    });
    r.steps(2).await;
    let a = r.last_ack(&mid);
    assert_eq!((a.outcome, a.retcode), (Outcome::Done, retcode::DONE), "{a:?}");
    assert_eq!(r.positions()[0].sl, Some(d("1.06000")));
    // Equity falls below the floor while the node is silent: the EA's own close goes through.
    lock(&r.b)
        .set_quote("EURUSD", d("1.07100"), d("1.07110"), MONDAY_10 + DAY_MS + 1_000)
        .expect("quote");
    let mut cfg = r.t.config().clone();
    cfg.floor_silence_ms = 0;
    let mut t2 = Terminal::new(cfg, r.b.clone(), Faults::default()).expect("terminal");
    t2.step().await.expect("hello");
    t2.step().await.expect("enforce");
    assert!(r.positions().is_empty(), "the floor close was refused");
    let breach =
        r.node.lock().hellos.iter().rev().find_map(|h| h.floor_breach.clone()).expect("reported");
    assert_eq!((breach.n_closed, breach.n_failed), (1, 0));
}

// 4. Filling mode by execution mode.

#[tokio::test]
async fn the_filling_follows_the_execution_mode_and_the_symbols_flags() {
    // (execution, SYMBOL_FILLING_MODE): market orders, a buy stop and a close must all pass.
    for (execution, modes) in [
        (Execution::Instant, 0),
        (Execution::Request, 0),
        (Execution::Instant, SYMBOL_FILLING_IOC),
        (Execution::Market, SYMBOL_FILLING_FOK),
        (Execution::Market, SYMBOL_FILLING_IOC),
        (Execution::Market, SYMBOL_FILLING_FOK | SYMBOL_FILLING_IOC),
        (Execution::Market, 0),
        (Execution::Exchange, 0),
    ] {
        let cfg = BrokerConfig { execution, check_filling: true, ..BrokerConfig::default() };
        let sym = SymbolConfig { filling_modes: modes, ..SymbolConfig::forex("EURUSD", 5) };
        let mut r = rig_with(cfg, MarginMode::Hedging, &[sym], |_| {}).await;
        let (buy, _) = r.node.add_order(market(OrderKind::Buy, "0.10"));
        let mut stop = market(OrderKind::BuyStop, "0.10");
        stop.price = Some(d("1.07500"));
        let (stop, _) = r.node.add_order(stop);
        let mut limit = market(OrderKind::SellLimit, "0.10");
        limit.price = Some(d("1.07500"));
        let (limit, _) = r.node.add_order(limit);
        r.steps(2).await;
        for id in [&buy, &stop, &limit] {
            let a = r.last_ack(id);
            assert_eq!(a.outcome, Outcome::Done, "{execution:?} {modes}: {a:?}");
        }
        let cid = r.close(r.positions()[0].position_id);
        r.steps(2).await;
        let a = r.last_ack(&cid);
        assert_eq!((a.outcome, a.retcode), (Outcome::Done, retcode::DONE), "{execution:?} {modes}");
    }
}

// 7. Only a successful answer means the node is alive.

#[tokio::test]
async fn a_node_that_refuses_everything_counts_as_silent_for_the_floor() {
    for status in [401, 413, 500] {
        let mut r = rig_with(BrokerConfig::default(), MarginMode::Hedging, &[], |c| {
            c.floor_silence_ms = 300;
        })
        .await;
        r.node.lock().equity_floor = Some(d("9950"));
        r.node.add_order(market(OrderKind::Buy, "1.00"));
        r.steps(2).await;
        assert_eq!(r.t.equity_floor(), Some(d("9950")));
        lock(&r.b)
            .set_quote("EURUSD", d("1.07100"), d("1.07110"), MONDAY_10 + 1_000)
            .expect("quote");
        // Signed refusals from now on: they prove a process holds the key, not that the node
        // is doing its job.
        r.node.lock().broken.refuse_all = Some(status);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while !r.positions().is_empty() && std::time::Instant::now() < deadline {
            let _ = r.t.step().await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(r.positions().is_empty(), "{status}: the EA never enforced the floor");
        assert_eq!(r.t.stats().floor_breaches, 1);
    }
}

// 2. A hello within the node's body limit.

#[tokio::test]
async fn a_market_watch_of_400_symbols_connects_and_every_spec_reaches_the_node() {
    let watch = market_watch(400);
    let full: usize = {
        let mut b = Broker::new(BrokerConfig::default());
        for s in &watch {
            b.add_symbol(s.clone());
        }
        watch
            .iter()
            .filter_map(|s| b.symbol_spec(&s.symbol, "USD"))
            .map(|x| ea::encode(&x).len())
            .sum()
    };
    assert!(full > ea::MAX_BODY_BYTES, "the specs alone are {full} bytes: not a real test");
    let mut r = rig_with(BrokerConfig::default(), MarginMode::Hedging, &watch, |_| {}).await;
    r.steps(3).await;
    {
        let s = r.node.lock();
        assert_eq!(s.hellos.len(), 1, "connected at the first hello");
        let in_hello = s.hellos[0].symbols.len();
        assert!(in_hello > 0 && in_hello < 401, "{in_hello}");
        assert!(ea::encode(&s.hellos[0]).len() < ea::MAX_BODY_BYTES);
    }
    // The rest follow in the state pushes; the node has every one after a few cycles.
    let known = |r: &Rig| {
        let s = r.node.lock();
        let mut names: std::collections::BTreeSet<String> =
            s.hellos[0].symbols.iter().map(|x| x.symbol.clone()).collect();
        names.extend(s.specs_seen.iter().cloned());
        names.len()
    };
    for _ in 0..5 {
        if known(&r) == 401 {
            break;
        }
        r.steps(1).await;
    }
    assert_eq!(known(&r), 401, "every Market Watch symbol's spec reached the node");
}

// 9. The look-up acks with the opening deal, not an SL/TP close.

#[tokio::test]
async fn a_reoffer_after_a_lost_ack_and_a_stop_loss_is_acked_with_the_fill() {
    let mut r = rig(BrokerConfig::default(), MarginMode::Hedging).await;
    r.node.lock().reconcile = false;
    r.node.lock().broken.drop_acks = true;
    let mut o = market(OrderKind::Buy, "0.10");
    o.sl = Some(d("1.07000"));
    let (id, _) = r.node.add_order(o);
    for _ in 0..2 {
        let _ = r.t.step().await; // the fill happens, the ack is refused
    }
    assert_eq!(r.positions().len(), 1);
    let fill = lock(&r.b).deals(LOGIN, 0, i64::MAX).expect("account")[0].clone();
    // The stop loss closes it before the ack gets through (the closing deal keeps the magic).
    let bar = tradecast_protocol::bars::Bar {
        time_unix_ms: MONDAY_10 + 3_600_000,
        open: d("1.07200"),
        high: d("1.07250"),
        low: d("1.06900"),
        close: d("1.06950"),
    };
    lock(&r.b).on_bar("EURUSD", &bar, 10, 3_600).expect("bar");
    assert!(r.positions().is_empty());
    r.node.lock().broken.drop_acks = false;
    r.t.faults().crash();
    r.steps(2).await;
    let a = r.last_ack(&id);
    assert!(a.found_by_lookup, "{a:?}");
    assert_eq!((a.deal_ticket, a.price), (Some(fill.deal_ticket), Some(d("1.07210"))), "{a:?}");
    assert_eq!(fill.price, d("1.07210"));
}

// 10. No hello before the terminal is connected and logged in.

#[tokio::test]
async fn a_terminal_that_starts_disconnected_says_hello_only_once_logged_in() {
    let mut r = rig(BrokerConfig::default(), MarginMode::Hedging).await;
    r.t.faults().set_disconnected(true);
    r.steps(3).await;
    assert!(r.node.lock().hellos.is_empty(), "a hello before login: {:?}", r.node.lock().hellos);
    r.t.faults().set_disconnected(false);
    r.steps(2).await;
    let s = r.node.lock();
    assert_eq!(s.hellos.len(), 1);
    assert_eq!(s.hellos[0].login, LOGIN);
    assert!(s.hellos[0].symbols.iter().all(|x| x.tick_value_loss > Decimal::ZERO));
}

// 8. A requoted close is sent again.

#[tokio::test]
async fn a_requoted_close_is_sent_again_at_the_new_price() {
    let mut r = rig(BrokerConfig::default(), MarginMode::Hedging).await;
    r.node.add_order(market(OrderKind::Buy, "0.10"));
    r.steps(2).await;
    let id = r.positions()[0].position_id;
    // The dealer requotes the close twice (a fast market), then fills it.
    r.t.faults().requote_next(2);
    let cid = r.close(id);
    r.steps(2).await;
    let a = r.last_ack(&cid);
    assert_eq!((a.outcome, a.retcode), (Outcome::Done, retcode::DONE), "{a:?}");
    assert!(r.positions().is_empty());
    // The equity floor's own closes too.
    r.node.lock().equity_floor = Some(d("9990"));
    r.node.add_order(market(OrderKind::Buy, "1.00"));
    r.steps(2).await;
    lock(&r.b).set_quote("EURUSD", d("1.07100"), d("1.07110"), MONDAY_10 + 1_000).expect("quote");
    let mut cfg = r.t.config().clone();
    cfg.floor_silence_ms = 0;
    let mut t2 = Terminal::new(cfg, r.b.clone(), Faults::default()).expect("terminal");
    t2.step().await.expect("hello");
    t2.faults().requote_next(2);
    t2.step().await.expect("enforce");
    assert!(r.positions().is_empty(), "the floor close was requoted and given up");
}

// 3. Backoff with jitter, and a journal that does not flood.

#[tokio::test]
async fn a_refused_hello_backs_off_and_the_journal_stays_short() {
    let mut r = rig(BrokerConfig::default(), MarginMode::Hedging).await;
    r.node.lock().broken.refuse_all = Some(413);
    // About 1.5 s of 100 ms timer cycles.
    let start = std::time::Instant::now();
    let mut cycles = 0;
    while start.elapsed() < std::time::Duration::from_millis(1_500) {
        let _ = r.t.step().await;
        cycles += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(cycles >= 10, "{cycles}");
    let st = r.t.stats();
    // 1 s, then 2 s (each jittered to at least half): at most 3 hellos in 1.5 s.
    assert!(st.hello_attempts <= 3, "{} hellos in {cycles} cycles", st.hello_attempts);
    assert!(st.journal_lines <= 1, "{} journal lines in {cycles} cycles", st.journal_lines);
    // The node comes back: the EA connects at its next try, within the backoff.
    r.node.lock().broken.refuse_all = None;
    let start = std::time::Instant::now();
    while r.t.session_id().is_none() && start.elapsed() < std::time::Duration::from_secs(5) {
        let _ = r.t.step().await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(r.t.session_id().is_some(), "never reconnected");
}

#[tokio::test]
async fn floor_closes_refused_all_weekend_are_not_sent_every_cycle() {
    let mut r = rig_with(BrokerConfig::default(), MarginMode::Hedging, &[], |c| {
        c.floor_silence_ms = 0;
    })
    .await;
    r.node.lock().equity_floor = Some(d("9950"));
    r.node.add_order(market(OrderKind::Buy, "1.00"));
    r.steps(2).await;
    // Saturday, price down, node gone: every close answers 10018.
    lock(&r.b)
        .set_quote("EURUSD", d("1.07100"), d("1.07110"), MONDAY_10 + 5 * DAY_MS)
        .expect("quote");
    r.t.faults().set_silent(true);
    let sends = r.t.stats().sends;
    for _ in 0..20 {
        let _ = r.t.step().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(r.positions().len(), 1, "the market is closed");
    let tries = r.t.stats().sends - sends;
    assert!(tries <= 1, "{tries} closes sent in 20 cycles");
}

// 6. The server's UTC offset is read every cycle: bars and deals across a DST change.

#[tokio::test]
async fn bars_and_deals_across_a_server_dst_change_keep_their_utc_times() {
    const H: i64 = 3_600_000;
    let change = MONDAY_10 + 5 * H + H / 2;
    let cfg = BrokerConfig {
        server_utc_offset_s: 7_200,
        dst_change: Some((change, 10_800)),
        ..BrokerConfig::default()
    };
    let mut r = rig(cfg, MarginMode::Hedging).await;
    r.node.lock().subscriptions =
        vec![ea::BarSubscription { symbol: "EURUSD".into(), timeframe: ea::Timeframe::H1 }];
    r.steps(1).await;
    assert_eq!(r.node.lock().hellos[0].server_utc_offset_s, 7_200);
    let mut truth = Vec::new();
    for i in 1..=10 {
        let t = MONDAY_10 + i * H;
        let bar = tradecast_protocol::bars::Bar {
            time_unix_ms: t,
            open: d("1.07200"),
            high: d("1.07250"),
            low: d("1.07150"),
            close: d("1.07200"),
        };
        lock(&r.b).on_bar("EURUSD", &bar, 10, 3_600).expect("bar");
        truth.push(t);
        if i == 8 {
            r.node.add_order(market(OrderKind::Buy, "0.10"));
        }
        r.steps(2).await;
    }
    let s = r.node.lock();
    let got: Vec<i64> = s.bars.keys().map(|k| k.2).collect();
    assert_eq!(got, truth, "bar times at the node (shifted by the DST change?)");
    let fill = lock(&r.b).deals(LOGIN, 0, i64::MAX).expect("account")[0].clone();
    assert!(fill.time_ms > change);
    let at_node = s.deals.get(&fill.deal_ticket).expect("the deal reached the node");
    assert_eq!(at_node.time_ms, fill.time_ms, "the deal's time at the node");
}
