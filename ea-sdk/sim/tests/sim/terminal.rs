//! Terminals driving the reference node over real HTTP: execution, the look-up, every fault
//! control, CloseAll's scope, the equity floor, ignored answers and a lockstep replay.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use tradecast_protocol::ea::{
    self, BarSubscription, CloseAllScope, Command, MarginMode, Order, OrderKind, Outcome, Timeframe,
};
use tradecast_sim::broker::{AccountConfig, Broker, BrokerConfig, SymbolConfig, TradeRequest};
use tradecast_sim::feed::Feed;
use tradecast_sim::replay::{Replay, Speed};
use tradecast_sim::retcode;
use tradecast_sim::terminal::{Faults, SharedBroker, Terminal, TerminalConfig, lock};

use crate::refnode::{Broken, RefNode};

const KEY: &str = "ea-key-1";
const SECRET: &str = "tcs_terminal_Secret_abcdef";
const LOGIN: u64 = 5_000_001;
/// Monday 2017-04-24 10:00 UTC.
const MONDAY_10: i64 = 1_493_028_000_000;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("test decimal")
}

fn broker(mode: MarginMode) -> SharedBroker {
    let mut b = Broker::new(BrokerConfig::default());
    b.add_symbol(SymbolConfig::forex("EURUSD", 5));
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

async fn setup(broken: Broken, mode: MarginMode) -> (RefNode, SharedBroker, Terminal) {
    let node = RefNode::start(KEY, SECRET, broken).await;
    let b = broker(mode);
    let mut cfg = TerminalConfig::new(&node.url, KEY, SECRET, LOGIN);
    cfg.poll_wait_override_ms = Some(50);
    let t = Terminal::new(cfg, b.clone(), Faults::default()).expect("terminal");
    (node, b, t)
}

fn market(kind: OrderKind, volume: &str) -> Order {
    Order {
        order_id: String::new(),
        order_no: 0,
        symbol: "EURUSD".into(),
        kind,
        volume: d(volume),
        price: None,
        sl: Some(d("1.07000")),
        tp: None,
        max_slippage_points: None,
        expiration_ms: None,
    }
}

async fn steps(t: &mut Terminal, n: usize) {
    for _ in 0..n {
        t.step().await.expect("step against a healthy node");
    }
}

#[tokio::test]
async fn an_order_is_sent_once_with_its_magic_and_comment() {
    let (node, b, mut t) = setup(Broken::default(), MarginMode::Hedging).await;
    let (id, no) = node.add_order(market(OrderKind::Buy, "0.10"));
    steps(&mut t, 3).await;
    let acks = node.acks_for(&id);
    assert_eq!(acks.len(), 1, "{acks:?}");
    let a = &acks[0];
    assert_eq!((a.outcome, a.retcode, a.found_by_lookup), (Outcome::Done, retcode::DONE, false));
    assert_eq!((a.price, a.volume), (Some(d("1.07210")), Some(d("0.10"))));
    let pos = lock(&b).positions(LOGIN).expect("account");
    assert_eq!(pos.len(), 1);
    assert_eq!(pos[0].magic, ea::magic(20_260_101, no));
    assert_eq!(pos[0].comment, format!("tc:{id}"));
    assert_eq!(Some(pos[0].position_id), a.position_id);
    // The node saw the state and the deal.
    let s = node.lock();
    assert_eq!(s.last_state.as_ref().map(|st| st.positions.len()), Some(1));
    assert!(s.deals.values().any(|dl| dl.magic == pos[0].magic));
    assert_eq!(s.hellos.len(), 1);
}

#[tokio::test]
async fn a_crash_before_the_ack_never_sends_twice() {
    let (node, b, mut t) =
        setup(Broken { drop_acks: true, ..Broken::default() }, MarginMode::Hedging).await;
    // Without reconciliation the node can only learn of the fill from the EA's look-up.
    node.lock().reconcile = false;
    let (id, _) = node.add_order(market(OrderKind::Buy, "0.10"));
    // The fill happens, the ack is refused: the step fails.
    let mut failed = false;
    for _ in 0..3 {
        failed |= t.step().await.is_err();
    }
    assert!(failed);
    assert_eq!(lock(&b).positions(LOGIN).expect("account").len(), 1);
    node.lock().broken.drop_acks = false;
    t.faults().crash();
    steps(&mut t, 3).await;
    assert_eq!(t.stats().restarts, 1);
    let acks = node.acks_for(&id);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert!(acks[0].found_by_lookup && acks[0].outcome == Outcome::Done, "{acks:?}");
    assert_eq!(lock(&b).positions(LOGIN).expect("account").len(), 1, "sent once only");
    assert_eq!(t.stats().sends, 1);
}

#[tokio::test]
async fn netting_look_up_goes_by_deals() {
    let (node, b, mut t) = setup(Broken::default(), MarginMode::Netting).await;
    node.lock().reconcile = false;
    // Another EA's order already holds the netting position's magic.
    let mut other = TradeRequest::market("EURUSD", OrderKind::Buy, d("0.10"));
    other.magic = 42;
    lock(&b).send(LOGIN, &other);
    // Ours merged into it in a previous life of the EA (its deal carries our magic).
    let (id, no) = node.add_order(market(OrderKind::Buy, "0.20"));
    let mut ours = TradeRequest::market("EURUSD", OrderKind::Buy, d("0.20"));
    ours.magic = ea::magic(20_260_101, no);
    ours.comment = ea::order_comment(&id);
    lock(&b).send(LOGIN, &ours);
    steps(&mut t, 3).await;
    let acks = node.acks_for(&id);
    assert_eq!(acks.len(), 1);
    assert!(acks[0].found_by_lookup, "{acks:?}");
    let pos = lock(&b).positions(LOGIN).expect("account");
    assert_eq!((pos.len(), pos[0].volume, pos[0].magic), (1, d("0.30"), 42));
}

#[tokio::test]
async fn a_timeout_after_the_fill_is_unknown_then_found() {
    let (node, b, mut t) = setup(Broken::default(), MarginMode::Hedging).await;
    t.faults().timeout_after_fill(false);
    let (id, _) = node.add_order(market(OrderKind::Buy, "0.10"));
    steps(&mut t, 2).await;
    let acks = node.acks_for(&id);
    assert_eq!(
        (acks[0].outcome, acks[0].retcode),
        (Outcome::Unknown, retcode::TIMEOUT),
        "{acks:?}"
    );
    assert_eq!(lock(&b).positions(LOGIN).expect("account").len(), 1, "the server did fill it");
    // Visible to the look-up: settled at once.
    t.faults().timeout_after_fill(true);
    let (id2, _) = node.add_order(market(OrderKind::Buy, "0.10"));
    steps(&mut t, 2).await;
    let acks = node.acks_for(&id2);
    assert_eq!(acks.len(), 1);
    assert!(acks[0].found_by_lookup && acks[0].outcome == Outcome::Done, "{acks:?}");
    assert_eq!(lock(&b).positions(LOGIN).expect("account").len(), 2);
}

#[tokio::test]
async fn forced_retcodes_requotes_and_partial_fills() {
    let (node, b, mut t) = setup(Broken::default(), MarginMode::Hedging).await;
    let check = |node: &RefNode, id: &str, outcome: Outcome, code: u32| {
        let acks = node.acks_for(id);
        let last = acks.last().unwrap_or_else(|| panic!("no ack for {id}"));
        assert_eq!((last.outcome, last.retcode), (outcome, code), "{acks:?}");
    };
    t.faults().requote_next(1);
    let (id, _) = node.add_order(market(OrderKind::Buy, "0.10"));
    steps(&mut t, 2).await;
    check(&node, &id, Outcome::Rejected, retcode::REQUOTE);
    t.faults().force_retcode(retcode::NO_MONEY);
    let (id, _) = node.add_order(market(OrderKind::Buy, "0.10"));
    steps(&mut t, 2).await;
    check(&node, &id, Outcome::Rejected, retcode::NO_MONEY);
    t.faults().force_retcode(retcode::CONNECTION);
    let (id, _) = node.add_order(market(OrderKind::Buy, "0.10"));
    steps(&mut t, 2).await;
    check(&node, &id, Outcome::Unknown, retcode::CONNECTION);
    assert!(lock(&b).positions(LOGIN).expect("account").is_empty());
    t.faults().partial_fill(d("0.5"));
    let (id, _) = node.add_order(market(OrderKind::Buy, "0.10"));
    steps(&mut t, 2).await;
    check(&node, &id, Outcome::Done, retcode::DONE_PARTIAL);
    assert_eq!(node.acks_for(&id)[0].volume, Some(d("0.05")));
    // A real broker rule: volume off the step.
    let (id, _) = node.add_order(market(OrderKind::Buy, "0.015"));
    steps(&mut t, 2).await;
    check(&node, &id, Outcome::Rejected, retcode::INVALID_VOLUME);
}

#[tokio::test]
async fn a_close_refused_when_the_market_is_closed_succeeds_when_it_opens() {
    let (node, b, mut t) = setup(Broken::default(), MarginMode::Hedging).await;
    node.add_order(market(OrderKind::Buy, "0.10"));
    steps(&mut t, 2).await;
    let position_id = lock(&b).positions(LOGIN).expect("account")[0].position_id;
    // Saturday.
    lock(&b)
        .set_quote("EURUSD", d("1.07200"), d("1.07210"), MONDAY_10 + 5 * 86_400_000)
        .expect("quote");
    let (cid, cno) = node.next_ids();
    node.add_command(Command::Close {
        order_id: cid.clone(),
        order_no: cno,
        position_id,
        symbol: "EURUSD".into(),
        volume: None,
    });
    steps(&mut t, 2).await;
    assert!(node.acks_for(&cid).iter().all(|a| a.retcode == retcode::MARKET_CLOSED));
    assert!(!node.acks_for(&cid).is_empty());
    // Monday again: the same close, still due, goes through.
    lock(&b)
        .set_quote("EURUSD", d("1.07300"), d("1.07310"), MONDAY_10 + 7 * 86_400_000)
        .expect("quote");
    steps(&mut t, 2).await;
    let last = node.acks_for(&cid).last().cloned().expect("ack");
    assert_eq!((last.outcome, last.retcode), (Outcome::Done, retcode::DONE));
    assert!(lock(&b).positions(LOGIN).expect("account").is_empty());
    let closing = lock(&b).deals(LOGIN, 0, i64::MAX).expect("account").pop().expect("deal");
    assert_eq!((closing.magic, closing.profit), (ea::magic(20_260_101, cno), d("9.00")));
}

#[tokio::test]
async fn close_all_touches_only_tradecast_magic() {
    let (node, b, mut t) = setup(Broken::default(), MarginMode::Hedging).await;
    node.add_order(market(OrderKind::Buy, "0.10"));
    let mut pending = market(OrderKind::BuyLimit, "0.10");
    pending.price = Some(d("1.06900"));
    pending.sl = None;
    node.add_order(pending);
    steps(&mut t, 2).await;
    // The trader's own trades (another magic).
    let mut manual = TradeRequest::market("EURUSD", OrderKind::Sell, d("0.20"));
    manual.magic = ea::magic(7, 1);
    lock(&b).send(LOGIN, &manual);
    assert_eq!(lock(&b).positions(LOGIN).expect("account").len(), 2);
    assert_eq!(lock(&b).orders(LOGIN).expect("account").len(), 1);
    let (id, _) = node.next_ids();
    node.add_command(Command::CloseAll { order_id: id.clone(), scope: CloseAllScope::Tradecast });
    steps(&mut t, 2).await;
    assert_eq!(node.acks_for(&id).last().map(|a| a.outcome), Some(Outcome::Done));
    let pos = lock(&b).positions(LOGIN).expect("account");
    assert_eq!(pos.len(), 1);
    assert_eq!(pos[0].magic, ea::magic(7, 1));
    assert!(lock(&b).orders(LOGIN).expect("account").is_empty());
}

#[tokio::test]
async fn the_equity_floor_is_enforced_when_the_node_is_silent_and_reported_at_hello() {
    let (node, b, mut t) = setup(Broken::default(), MarginMode::Hedging).await;
    node.lock().equity_floor = Some(d("9950"));
    node.add_order(market(OrderKind::Buy, "1.00"));
    steps(&mut t, 2).await;
    assert_eq!(t.equity_floor(), Some(d("9950")));
    // Equity falls 60 USD below: the node is still talking, so the EA leaves it to the node.
    lock(&b).set_quote("EURUSD", d("1.07150"), d("1.07160"), MONDAY_10 + 1_000).expect("quote");
    steps(&mut t, 1).await;
    assert_eq!(lock(&b).positions(LOGIN).expect("account").len(), 1);
    // A terminal whose node went silent long ago (silence threshold 0): it closes on its own.
    let mut cfg = t.config().clone();
    cfg.floor_silence_ms = 0;
    let mut t2 = Terminal::new(cfg, b.clone(), Faults::default()).expect("terminal");
    steps(&mut t2, 1).await; // hello: learns the floor
    steps(&mut t2, 1).await; // enforces, then hellos with the report
    assert_eq!(t2.stats().floor_breaches, 1);
    assert!(lock(&b).positions(LOGIN).expect("account").is_empty());
    let breach =
        node.lock().hellos.iter().rev().find_map(|h| h.floor_breach.clone()).expect("reported");
    assert_eq!((breach.floor, breach.n_closed, breach.n_failed), (d("9950"), 1, 0));
}

#[tokio::test]
async fn answers_with_a_wrong_signature_are_ignored() {
    for broken in [
        Broken { bad_answer_signature: true, ..Broken::default() },
        Broken { unsigned_answers: true, ..Broken::default() },
    ] {
        let (node, b, mut t) = setup(broken, MarginMode::Hedging).await;
        node.add_order(market(OrderKind::Buy, "0.10"));
        // The first hello's answer is ignored; the next cycles wait out the hello's backoff.
        assert!(t.step().await.is_err());
        for _ in 0..2 {
            let _ = t.step().await;
        }
        assert!(t.session_id().is_none());
        assert!(t.stats().ignored_answers >= 1);
        assert!(
            lock(&b).positions(LOGIN).expect("account").is_empty(),
            "nothing traded on a forged answer"
        );
    }
}

#[tokio::test]
async fn a_silent_terminal_makes_no_calls() {
    let (node, _b, mut t) = setup(Broken::default(), MarginMode::Hedging).await;
    steps(&mut t, 1).await;
    let polls = node.lock().polls;
    t.faults().set_silent(true);
    steps(&mut t, 3).await;
    assert_eq!(node.lock().polls, polls);
    t.faults().set_silent(false);
    steps(&mut t, 1).await;
    assert_eq!(node.lock().polls, polls + 1);
}

#[tokio::test]
async fn a_lockstep_replay_pushes_every_closed_bar_and_backfills() {
    let (node, b, t) = setup(Broken::default(), MarginMode::Hedging).await;
    node.lock().subscriptions = vec![
        BarSubscription { symbol: "EURUSD".into(), timeframe: Timeframe::H1 },
        BarSubscription { symbol: "EURUSD".into(), timeframe: Timeframe::H4 },
    ];
    // Second terminal, second account, its own node: one broker, one price stream.
    let node2 = RefNode::start(KEY, SECRET, Broken::default()).await;
    lock(&b)
        .open_account(AccountConfig {
            login: LOGIN + 1,
            currency: "USD".into(),
            leverage: 100,
            margin_mode: MarginMode::Netting,
            balance: d("5000"),
        })
        .expect("account");
    let mut cfg2 = TerminalConfig::new(&node2.url, KEY, SECRET, LOGIN + 1);
    cfg2.poll_wait_override_ms = Some(0);
    let t2 = Terminal::new(cfg2, b.clone(), Faults::default()).expect("terminal");
    let unprotected = Order { sl: None, ..market(OrderKind::Buy, "0.10") };
    node.add_order(unprotected.clone());
    node2.add_order(unprotected);
    let feed = Feed::generated(
        "EURUSD",
        11,
        48,
        MONDAY_10 + 3_600_000 * 2,
        3_600,
        d("1.07200"),
        5,
        15,
        &[],
    );
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let (terminals, summary) = Replay::new(b.clone(), vec![feed])
        .run(vec![t, t2], Speed::Max, stop)
        .await
        .expect("replay");
    assert_eq!(summary.bars, 48);
    assert_eq!(summary.link_errors, 0);
    assert!(terminals.iter().all(Terminal::caught_up));
    let s = node.lock();
    let h1 = s.bars.keys().filter(|k| k.1 == Timeframe::H1).count();
    let h4 = s.bars.keys().filter(|k| k.1 == Timeframe::H4).count();
    assert_eq!((h1, h4), (48, 12));
    drop(s);
    // Both accounts filled at the same price from the one stream.
    let p1 = lock(&b).positions(LOGIN).expect("account");
    let p2 = lock(&b).positions(LOGIN + 1).expect("account");
    assert_eq!(p1.len() + p2.len(), 2);
    assert_eq!(lock(&b).time_ms(), MONDAY_10 + 3_600_000 * 50);
}

#[tokio::test]
async fn a_fill_after_the_latency_takes_the_price_of_then() {
    let (node, b, _) = setup(Broken::default(), MarginMode::Hedging).await;
    let mut cfg = TerminalConfig::new(&node.url, KEY, SECRET, LOGIN);
    cfg.poll_wait_override_ms = Some(50);
    cfg.send_latency_ms = 300;
    let mut t = Terminal::new(cfg, b.clone(), Faults::default()).expect("terminal");
    steps(&mut t, 1).await;
    let (id, _) = node.add_order(Order { sl: None, ..market(OrderKind::Buy, "0.10") });
    let mover = b.clone();
    let moved = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        lock(&mover)
            .set_quote("EURUSD", d("1.07250"), d("1.07260"), MONDAY_10 + 1_000)
            .expect("quote");
    });
    steps(&mut t, 1).await;
    moved.await.expect("mover");
    let acks = node.acks_for(&id);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].price, Some(d("1.07260")), "filled at the ask after the latency");
}

#[tokio::test]
async fn the_command_line_library_runs_a_generated_replay_against_a_node() {
    use tradecast_sim::app::{self, SimConfig, Source};
    let node = RefNode::start(KEY, SECRET, Broken::default()).await;
    node.lock().subscriptions =
        vec![BarSubscription { symbol: "EURUSD".into(), timeframe: Timeframe::H1 }];
    let cfg = SimConfig {
        node_url: node.url.clone(),
        keys: vec![(KEY.into(), SECRET.into())],
        source: Source::Generated { seed: 5, n: 60 },
        symbol: "EURUSD".into(),
        digits: 5,
        speed: Speed::Max,
        first_login: LOGIN,
        balance: d("10000"),
        leverage: 100,
        margin_mode: MarginMode::Hedging,
        input_magic: 20_260_101,
        spread_points: 10,
        slippage_points: 0,
        instant_execution: false,
        server_utc_offset_s: 7_200,
        file_utc_offset_s: 0,
        send_latency_ms: 0,
    };
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let summary = app::run(cfg, rx).await.expect("run");
    assert_eq!(summary.replay.bars, 60);
    assert_eq!(summary.replay.link_errors, 0);
    assert_eq!(summary.terminals.len(), 1);
    assert_eq!(node.lock().bars.len(), 60);
    let bad = SimConfig {
        keys: Vec::new(),
        ..SimConfig {
            node_url: node.url.clone(),
            keys: Vec::new(),
            source: Source::File("/nonexistent/bars.csv".into()),
            symbol: "EURUSD".into(),
            digits: 5,
            speed: Speed::Max,
            first_login: LOGIN,
            balance: d("1"),
            leverage: 1,
            margin_mode: MarginMode::Netting,
            input_magic: 1,
            spread_points: 1,
            slippage_points: 0,
            instant_execution: false,
            server_utc_offset_s: 0,
            file_utc_offset_s: 0,
            send_latency_ms: 0,
        }
    };
    let (_tx2, rx2) = tokio::sync::watch::channel(false);
    assert!(matches!(app::run(bad, rx2).await, Err(app::SimError::NoKeys)));
}

/// The shared real data replays through the broker: 5,000 EURUSD H1 bars with a position
/// protected by SL and TP, closed by the intrabar rule at one of its levels.
#[test]
fn the_shared_eurusd_file_replays_through_the_broker() {
    use tradecast_sim::feed::SpreadModel;
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/EURUSD-H1.csv");
    let bytes = std::fs::read(&path).expect("testdata/EURUSD-H1.csv");
    let mut feed =
        Feed::from_file("EURUSD", &bytes, &Default::default(), SpreadModel::default(), 1)
            .expect("the shared file reads");
    assert_eq!((feed.len(), feed.bar_seconds()), (5_000, 3_600));
    let mut b = Broker::new(BrokerConfig::default());
    b.add_symbol(SymbolConfig::forex("EURUSD", 5));
    b.open_account(AccountConfig {
        login: LOGIN,
        currency: "USD".into(),
        leverage: 100,
        margin_mode: MarginMode::Hedging,
        balance: d("10000"),
    })
    .expect("account");
    let mut n = 0;
    let mut sl_tp_deals = 0;
    while let Some((bar, spread)) = feed.next_bar(7_200) {
        let events = b.on_bar("EURUSD", &bar, spread, 3_600).expect("bars in order");
        sl_tp_deals += events.len();
        n += 1;
        if n == 10 {
            let q = b.quote("EURUSD").expect("quote");
            let mut req = TradeRequest::market("EURUSD", OrderKind::Buy, d("0.10"));
            req.sl = Some(q.bid - d("0.00500"));
            req.tp = Some(q.bid + d("0.00500"));
            assert_eq!(b.send(LOGIN, &req).retcode, retcode::DONE);
        }
    }
    assert_eq!(n, 5_000);
    assert_eq!(sl_tp_deals, 1);
    let deals = b.deals(LOGIN, 0, i64::MAX).expect("account");
    let out = deals.last().expect("closing deal");
    assert!(matches!(out.reason, ea::DealReason::Sl | ea::DealReason::Tp), "{out:?}");
    // Entry at the ask (bid + 10 points): the target is 49 points away, the stop 51.
    let expect = if out.reason == ea::DealReason::Tp { d("49.00") } else { d("-51.00") };
    assert_eq!(out.profit, expect, "{out:?}");
    assert_eq!(out.commission.to_string(), "0", "no negative zero");
}

#[tokio::test]
async fn after_a_crash_bars_continue_from_the_nodes_cursor() {
    let (node, b, mut t) = setup(Broken::default(), MarginMode::Hedging).await;
    node.lock().subscriptions =
        vec![BarSubscription { symbol: "EURUSD".into(), timeframe: Timeframe::H1 }];
    let feed =
        Feed::generated("EURUSD", 3, 24, MONDAY_10 + 3_600_000, 3_600, d("1.07200"), 5, 15, &[]);
    let mut replay = Replay::new(b.clone(), vec![feed]);
    for i in 0..24 {
        assert!(replay.advance().expect("bar"));
        steps(&mut t, 1).await;
        if i == 11 {
            t.faults().crash();
        }
    }
    steps(&mut t, 1).await;
    assert!(!replay.advance().expect("end"));
    assert_eq!(t.stats().restarts, 1);
    assert_eq!(t.stats().hellos, 2);
    let s = node.lock();
    assert_eq!(s.bars.len(), 24);
    assert_eq!(s.bars_received, 24, "nothing pushed twice: the restart resumed at the cursor");
}
