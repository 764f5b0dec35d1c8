//! The EA link served by the real node on 127.0.0.1:0, spoken to by a minimal signed client
//! (the sim's full conformance suite runs in the root package): one poll in flight per session,
//! a long-poll woken by a new order, answers signed, 413 and `trailing-nul`, a close refused with
//! 10018 waiting for the market, retcodes in words, and the secret never in the logs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tradecast_node::config::Config;
use tradecast_node::runtime::{OrderAction, OrderRow, OrderState, explain_retcode};
use tradecast_node::serve::{self, Running, tokio_util_shutdown::Shutdown};
use tradecast_protocol::ea::{self, Call, Hello, HelloAnswer, MarginMode, Poll, PollAnswer};
use tradecast_protocol::link_auth;

mod export;
mod publishing;
mod requotes;

struct Link {
    running: std::sync::Arc<Running>,
    shutdown: Shutdown,
    key_id: String,
    secret: String,
    client: reqwest::Client,
    n: u64,
    prefix: String,
    /// The broker's UTC offset the next hello reports.
    offset_s: i32,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

fn now() -> i64 {
    tradecast_node::runtime::wall_ms()
}

impl Link {
    async fn start() -> Link {
        Link::start_with(|_| {}).await
    }

    async fn start_with(edit: impl FnOnce(&mut Config)) -> Link {
        let dir = tempfile::tempdir().expect("tempdir");
        serve::init(dir.path()).expect("init");
        let key = serve::new_ea_key(dir.path()).expect("key");
        let mut config = Config {
            ea_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        edit(&mut config);
        let shutdown = Shutdown::new();
        let running = serve::start(dir.path(), &config, shutdown.clone()).await.expect("start");
        Link {
            running: std::sync::Arc::new(running),
            shutdown,
            key_id: key.key_id.clone(),
            secret: key.secret.to_string(),
            client: reqwest::Client::new(),
            n: 0,
            prefix: "a".into(),
            offset_s: 0,
            _dir: std::sync::Arc::new(dir),
        }
    }

    /// Another client of the same node (its own nonces).
    fn another(&self, prefix: &str) -> Link {
        Link {
            running: self.running.clone(),
            shutdown: self.shutdown.clone(),
            key_id: self.key_id.clone(),
            secret: self.secret.clone(),
            client: reqwest::Client::new(),
            n: 0,
            prefix: prefix.into(),
            offset_s: self.offset_s,
            _dir: self._dir.clone(),
        }
    }

    /// A signed POST; (status, body, answer signature valid).
    async fn raw(&mut self, call: Call, body: Vec<u8>) -> (u16, Vec<u8>, bool) {
        self.n += 1;
        let nonce = format!("test-nonce-{}-{:016}", self.prefix, self.n);
        let ts = now().to_string();
        let sig = link_auth::sign_request(
            self.secret.as_bytes(),
            "POST",
            call.path(),
            &ts,
            &nonce,
            &body,
        );
        let resp = self
            .client
            .post(format!("http://{}{}", self.running.ea_addr, call.path()))
            .header(link_auth::HEADER_KEY, &self.key_id)
            .header(link_auth::HEADER_TIMESTAMP, &ts)
            .header(link_auth::HEADER_NONCE, &nonce)
            .header(link_auth::HEADER_SIGNATURE, sig)
            .body(body)
            .send()
            .await
            .expect("the node answers");
        let status = resp.status().as_u16();
        let answer_sig = resp
            .headers()
            .get(link_auth::HEADER_SIGNATURE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.expect("body").to_vec();
        let ok = link_auth::verify_response(
            self.secret.as_bytes(),
            status,
            &nonce,
            &bytes,
            answer_sig.as_deref(),
        )
        .is_ok();
        (status, bytes, ok)
    }

    async fn call<T: serde::Serialize, A: serde::de::DeserializeOwned>(
        &mut self,
        call: Call,
        req: &T,
    ) -> A {
        let (status, body, signed) = self.raw(call, ea::encode(req)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(signed, "the answer is signed");
        ea::decode(&body).expect("answer decodes")
    }

    async fn hello(&mut self, terminal_time_ms: i64) -> HelloAnswer {
        self.hello_sessions(terminal_time_ms, Vec::new()).await
    }

    async fn hello_sessions(
        &mut self,
        terminal_time_ms: i64,
        sessions: Vec<ea::Session>,
    ) -> HelloAnswer {
        let spec = ea::SymbolSpec {
            symbol: "EURUSD".into(),
            digits: 5,
            point: Decimal::new(1, 5),
            tick_size: Decimal::new(1, 5),
            tick_value_profit: Decimal::ONE,
            tick_value_loss: Decimal::ONE,
            contract_size: Decimal::from(100_000),
            volume_min: Decimal::new(1, 2),
            volume_max: Decimal::from(100),
            volume_step: Decimal::new(1, 2),
            stops_level: 0,
            freeze_level: 0,
            trade_mode: ea::TradeMode::Full,
            currency_base: "EUR".into(),
            currency_profit: "USD".into(),
            currency_margin: "EUR".into(),
            sessions,
        };
        let h = Hello {
            login: 42,
            server: "Test-Server".into(),
            company: "Test".into(),
            currency: "USD".into(),
            leverage: 100,
            margin_mode: MarginMode::Hedging,
            terminal_build: 1,
            ea_version: "test".into(),
            server_utc_offset_s: self.offset_s,
            terminal_time_ms,
            symbols: vec![spec],
            floor_breach: None,
            instance: None,
        };
        self.call(Call::Hello, &h).await
    }

    /// A poll; the node's periodic spec requests (fresh tick values for sizing, tested in the
    /// root `node_sim rules`) are left out of the answer's commands.
    async fn poll(&mut self, session: &str, wait_ms: u32, terminal_time_ms: i64) -> PollAnswer {
        let p = Poll { session_id: session.to_owned(), wait_ms, terminal_time_ms };
        let mut a: PollAnswer = self.call(Call::Poll, &p).await;
        a.commands.retain(|c| !matches!(c, ea::Command::RequestSpec { .. }));
        a
    }
}

/// An EA ack of `order_id` that reports nothing found (no ticket, price, volume or time).
fn bare_ack(
    session: &str,
    order_id: &str,
    outcome: ea::Outcome,
    retcode: u32,
    message: &str,
) -> ea::Ack {
    ea::Ack {
        session_id: session.to_owned(),
        order_id: order_id.to_owned(),
        outcome,
        retcode,
        message: message.to_owned(),
        found_by_lookup: false,
        order_ticket: None,
        deal_ticket: None,
        position_id: None,
        price: None,
        volume: None,
        time_ms: None,
    }
}

/// Queues `action` for the node's only account, as the runtime does for a signal or a command.
fn queue(node: &tradecast_node::runtime::Node, action: OrderAction) -> OrderRow {
    let account = node.pick_account(None).expect("account");
    node.queue(&account, move |_, _| action, None, None).expect("queue")
}

/// Queues a close of position `position_id` on EURUSD.
fn queue_close(node: &tradecast_node::runtime::Node, position_id: u64) -> OrderRow {
    queue(node, OrderAction::Close { position_id, symbol: "EURUSD".into(), volume: None })
}

fn problem_code(body: &[u8]) -> String {
    ea::decode::<ea::Problem>(body).map(|p| p.code).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poll_in_flight_per_session_and_a_new_order_wakes_the_poll() {
    let mut link = Link::start().await;
    let t = now();
    let h = link.hello(t).await;
    // A long poll is held …
    let mut second = link.another("b");
    let session = h.session_id.clone();
    let held = tokio::spawn({
        let mut l = link.another("c");
        let session = session.clone();
        async move {
            let start = Instant::now();
            let a = l.poll(&session, 3_000, t).await;
            (a, start.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // … a second one in the same session is refused with 409 …
    let p = Poll { session_id: session.clone(), wait_ms: 0, terminal_time_ms: t };
    let (status, body, signed) = second.raw(Call::Poll, ea::encode(&p)).await;
    assert_eq!((status, problem_code(&body).as_str(), signed), (409, "poll-in-flight", true));
    // … and an order queued meanwhile answers the held poll at once.
    let node = link.running.node.clone();
    let row = queue_close(&node, 7);
    let (answer, elapsed) = held.await.expect("poll task");
    assert!(elapsed < Duration::from_millis(1_500), "woken after {elapsed:?}");
    assert!(
        matches!(&answer.commands[..], [ea::Command::Close { order_id, .. }] if *order_id == row.order_id),
        "{answer:?}"
    );
    link.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_poll_answers_within_wait_plus_100_ms() {
    let mut link = Link::start().await;
    let h = link.hello(now()).await;
    for wait in [0u32, 50, 300] {
        let start = Instant::now();
        let a = link.poll(&h.session_id, wait, now()).await;
        let ms = start.elapsed().as_millis();
        assert!(a.orders.is_empty() && a.commands.is_empty());
        assert!(ms >= u128::from(wait), "answered early: {ms} ms for {wait}");
        assert!(ms <= u128::from(wait) + 100, "answered late: {ms} ms for {wait}");
    }
    link.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_256_kib_and_trailing_nuls_are_refused_signed() {
    let mut link = Link::start().await;
    let (status, body, signed) = link.raw(Call::Hello, vec![b' '; ea::MAX_BODY_BYTES + 1]).await;
    assert_eq!((status, signed), (413, true), "{}", String::from_utf8_lossy(&body));
    let (status, body, signed) = link.raw(Call::Poll, b"{}\0".to_vec()).await;
    assert_eq!((status, problem_code(&body).as_str(), signed), (400, "trailing-nul", true));
    let (status, body, _) = link.raw(Call::Ack, b"{\"session_id\":\"x\"}".to_vec()).await;
    let p: ea::Problem = ea::decode(&body).expect("problem");
    assert_eq!((status, p.field.as_deref()), (400, Some("order_id")));
    link.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_refused_with_10018_waits_for_the_market() {
    let mut link = Link::start().await;
    let t0 = 1_700_000_000_000;
    let h = link.hello(t0).await;
    let node = link.running.node.clone();
    let row = queue_close(&node, 9);
    let a = link.poll(&h.session_id, 0, t0).await;
    assert_eq!(a.commands.len(), 1);
    let ack =
        bare_ack(&h.session_id, &row.order_id, ea::Outcome::Rejected, 10_018, "Market closed");
    let _: ea::AckAnswer = link.call(Call::Ack, &ack).await;
    let o = node.orders(&row.account).expect("orders").remove(0);
    assert_eq!(o.state, OrderState::Due, "a close refused with 10018 stays due");
    assert!(o.explained.contains("market is closed"), "{}", o.explained);
    // Not offered while the market clock has not moved on …
    let a = link.poll(&h.session_id, 0, t0 + 1_000).await;
    assert!(a.commands.is_empty(), "{a:?}");
    // … offered again once it has.
    let a = link.poll(&h.session_id, 0, t0 + 61_000).await;
    assert_eq!(a.commands.len(), 1, "{a:?}");
    link.shutdown.trigger();
}

#[test]
fn retcodes_are_explained_in_words() {
    let check = |code: u32, words: &str| assert_eq!(explain_retcode(code), words, "{code}");
    check(10_009, "done: the order was filled");
    check(10_004, "requote: the price changed before the order was filled");
    check(10_018, "the market is closed");
    check(10_019, "not enough money to open the position");
    check(10_016, "the stop loss or take profit is too close to the price or invalid");
    check(10_012, "the request timed out: whether it was filled is not known yet");
    check(99_999, "the terminal reported an unlisted error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_not_opened_by_tradecast_are_left_alone_and_reported() {
    let mut link = Link::start().await;
    let h = link.hello(now()).await;
    let foreign = ea::Position {
        position_id: 555,
        symbol: "EURUSD".into(),
        side: ea::Side::Buy,
        volume: Decimal::ONE,
        open_price: Decimal::new(107_000, 5),
        open_time_ms: now(),
        sl: None,
        tp: None,
        price_current: Decimal::new(107_100, 5),
        swap: Decimal::ZERO,
        profit: Decimal::from(100),
        magic: 0,
        comment: "manual".into(),
    };
    let state = ea::State {
        session_id: h.session_id.clone(),
        terminal_time_ms: now(),
        balance: Decimal::from(10_000),
        equity: Decimal::from(10_100),
        margin: Decimal::from(1_070),
        free_margin: Decimal::from(9_030),
        credit: Decimal::ZERO,
        positions: vec![foreign],
        pending: Vec::new(),
        tick_values: Vec::new(),
        specs: Vec::new(),
    };
    let a: ea::StateAnswer = link.call(Call::State, &state).await;
    assert!(
        matches!(&a.out_of_line[..], [o] if o.position_id == Some(555) && o.reason.contains("not opened by Tradecast")),
        "{a:?}"
    );
    let node = link.running.node.clone();
    let account = node.pick_account(None).expect("account");
    assert!(node.positions(&account).expect("positions").is_empty(), "not adopted");
    assert!(node.orders(&account).expect("orders").is_empty(), "nothing sent against it");
    // The account's equity is followed: the first state writes an equity point and sets the peak.
    let st = node.status(now()).expect("status");
    assert_eq!(st.accounts[0].peak_equity, Some(Decimal::from(10_100)));
    assert_eq!(st.accounts[0].equity_floor, Some(Decimal::from(8_080)));
    assert_eq!(node.equity(&account).expect("equity").len(), 1);
    link.shutdown.trigger();
}

fn state(
    session: &str,
    t: i64,
    balance: i64,
    equity: i64,
    positions: Vec<ea::Position>,
) -> ea::State {
    ea::State {
        session_id: session.to_owned(),
        terminal_time_ms: t,
        balance: Decimal::from(balance),
        equity: Decimal::from(equity),
        margin: Decimal::ZERO,
        free_margin: Decimal::from(equity),
        credit: Decimal::ZERO,
        positions,
        pending: Vec::new(),
        tick_values: Vec::new(),
        specs: Vec::new(),
    }
}

fn deal(ticket: u64, kind: ea::DealKind, entry: ea::DealEntry, t: i64) -> ea::Deal {
    ea::Deal {
        deal_ticket: ticket,
        order_ticket: ticket,
        position_id: 0,
        symbol: String::new(),
        kind,
        entry,
        reason: ea::DealReason::Client,
        volume: Decimal::ZERO,
        price: Decimal::ZERO,
        commission: Decimal::ZERO,
        swap: Decimal::ZERO,
        profit: Decimal::ZERO,
        fee: Decimal::ZERO,
        magic: 0,
        comment: String::new(),
        time_ms: t,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_moves_the_peak_and_is_no_drawdown() {
    let mut link = Link::start().await;
    let t = now();
    let h = link.hello(t).await;
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, t, 10_000, 10_000, vec![])).await;
    let mut w = deal(1, ea::DealKind::Balance, ea::DealEntry::None, t + 1);
    w.profit = Decimal::from(-5_000);
    let deals =
        ea::Deals { session_id: h.session_id.clone(), from_ms: h.deals_from_ms, deals: vec![w] };
    let _: ea::DealsAnswer = link.call(Call::Deals, &deals).await;
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, t + 2, 5_000, 5_000, vec![])).await;
    let node = link.running.node.clone();
    let a = &node.status(now()).expect("status").accounts[0];
    assert!(!a.locked, "a withdrawal is not a drawdown: {a:?}");
    assert_eq!(
        (a.peak_equity, a.equity_floor),
        (Some(Decimal::from(5_000)), Some(Decimal::from(4_000)))
    );
    // A real loss below the floor does trip it.
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, t + 3, 5_000, 3_900, vec![])).await;
    let a = &node.status(now()).expect("status").accounts[0];
    assert!(a.locked && a.lock_reason.contains("drawdown guard"), "{a:?}");
    let p = link.poll(&h.session_id, 0, t + 4).await;
    assert!(
        matches!(
            &p.commands[..],
            [ea::Command::CloseAll { scope: ea::CloseAllScope::Tradecast, .. }]
        ),
        "{p:?}"
    );
    assert_eq!(p.equity_floor, Some(Decimal::from(4_000)));
    link.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_publishes_modify_and_close_of_its_own_position() {
    use tradecast_protocol::{Body, StreamId};
    let mut link = Link::start_with(|c| {
        c.mode = tradecast_node::config::Mode::Provider;
        // Auto mode at the provider's lot, any day of the week (the terminal clock is the wall
        // clock here).
        c.policy.approval.mode = tradecast_node::policy::approval::ApprovalMode::Auto;
        c.policy.approval.consent_version = 1;
        c.policy.lot = tradecast_node::policy::sizing::LotMode::Multiplier { factor: Decimal::ONE };
        c.policy.market_hours.enabled = false;
    })
    .await;
    let t = now();
    let h = link.hello(t).await;
    // The account's equity and a closed bar (the quote) before the signal.
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, t, 10_000, 10_000, vec![])).await;
    let hour = t - t.rem_euclid(3_600_000) - 3_600_000;
    let bar = ea::LinkBar {
        symbol: "EURUSD".into(),
        timeframe: ea::Timeframe::H1,
        time_ms: hour,
        open: Decimal::new(107_000, 5),
        high: Decimal::new(107_050, 5),
        low: Decimal::new(106_950, 5),
        close: Decimal::new(107_000, 5),
        tick_volume: 1,
        spread_points: Some(10),
    };
    let bars = ea::Bars { session_id: h.session_id.clone(), bars: vec![bar] };
    let _: ea::BarsAnswer = link.call(Call::Bars, &bars).await;
    let node = link.running.node.clone();
    let account = node.pick_account(None).expect("account");
    let id = tradecast_node::keys::random_bytes::<16>().expect("rng");
    let signal = tradecast_protocol::Signal {
        id: tradecast_protocol::SignalId(*id),
        provider: node.device_id(),
        strategy_id: "test".into(),
        strategy_version: 1,
        symbol: "EURUSD".into(),
        timeframe: tradecast_protocol::Timeframe::H1,
        side: tradecast_protocol::Side::Buy,
        entry_kind: tradecast_protocol::EntryKind::Market,
        entry: Decimal::new(107_000, 5),
        stop: Decimal::new(106_000, 5),
        tp1: Decimal::new(109_000, 5),
        tp2: None,
        bar_time_ms: t,
        expires_at_ms: t + 3_600_000,
        leg: 1,
        indicators: Vec::new(),
        rr: Decimal::TWO,
    };
    node.submit_signal(&account, signal.clone(), true, Some(Decimal::new(10, 2))).expect("signal");
    let p = link.poll(&h.session_id, 0, t).await;
    let o = p.orders.first().expect("the order").clone();
    let ack = ea::Ack {
        session_id: h.session_id.clone(),
        order_id: o.order_id.clone(),
        outcome: ea::Outcome::Done,
        retcode: 10_009,
        message: String::new(),
        found_by_lookup: false,
        order_ticket: Some(77),
        deal_ticket: Some(78),
        position_id: Some(77),
        price: Some(Decimal::new(107_010, 5)),
        volume: Some(o.volume),
        time_ms: Some(t),
    };
    let _: ea::AckAnswer = link.call(Call::Ack, &ack).await;
    let pos = |sl: i64| ea::Position {
        position_id: 77,
        symbol: "EURUSD".into(),
        side: ea::Side::Buy,
        volume: o.volume,
        open_price: Decimal::new(107_010, 5),
        open_time_ms: t,
        sl: Some(Decimal::new(sl, 5)),
        tp: o.tp,
        price_current: Decimal::new(107_100, 5),
        swap: Decimal::ZERO,
        profit: Decimal::ZERO,
        magic: ea::magic(20_260_101, o.order_no),
        comment: ea::order_comment(&o.order_id),
    };
    // The provider moves its stop to break-even …
    let _: ea::StateAnswer = link
        .call(Call::State, &state(&h.session_id, t + 1, 10_000, 10_000, vec![pos(106_000)]))
        .await;
    let _: ea::StateAnswer = link
        .call(Call::State, &state(&h.session_id, t + 2, 10_000, 10_000, vec![pos(107_010)]))
        .await;
    // … then closes half.
    let mut out = deal(79, ea::DealKind::Sell, ea::DealEntry::Out, t + 3);
    out.position_id = 77;
    out.symbol = "EURUSD".into();
    out.volume = o.volume / Decimal::TWO;
    out.price = Decimal::new(107_500, 5);
    out.profit = Decimal::from(24);
    let deals =
        ea::Deals { session_id: h.session_id.clone(), from_ms: h.deals_from_ms, deals: vec![out] };
    let _: ea::DealsAnswer = link.call(Call::Deals, &deals).await;
    let chain = node.store().read().expect("read").outbox(StreamId::SIGNALS).expect("signals");
    let bodies: Vec<Body> = chain.iter().map(|r| r.body().expect("public body")).collect();
    assert!(matches!(&bodies[0], Body::Signal(s) if s.id == signal.id));
    assert!(
        bodies.iter().any(|b| matches!(b, Body::Modify(m) if m.signal_id == signal.id && m.stop == Some(Decimal::new(107_010, 5)))),
        "{bodies:?}"
    );
    assert!(
        bodies.iter().any(|b| matches!(b, Body::Close(c) if c.signal_id == signal.id && c.fraction == Decimal::new(5, 1))),
        "{bodies:?}"
    );
    let positions = node.positions(&account).expect("positions");
    assert_eq!(positions[0].volume, o.volume / Decimal::TWO);
    assert!(positions[0].open);
    link.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_loss_limit_counts_from_the_start_of_the_brokers_day() {
    let mut link = Link::start_with(|c| c.daily_loss_max_pct = Some(Decimal::TWO)).await;
    // 2023-11-14 22:13:20 UTC; the hello says server time is UTC+0.
    let t = 1_700_000_000_000;
    let h = link.hello(t).await;
    let node = link.running.node.clone();
    let locked = |node: &tradecast_node::runtime::Node| {
        node.status(now()).expect("status").accounts[0].locked
    };
    let push = |eq: i64, at: i64| state(&h.session_id, at, 10_000, eq, vec![]);
    let _: ea::StateAnswer = link.call(Call::State, &push(10_000, t)).await;
    let _: ea::StateAnswer = link.call(Call::State, &push(9_850, t + 60_000)).await;
    assert!(!locked(&node), "1.5 % down: within the day's limit");
    // A new server day starts from that day's first equity.
    let next_day = t + 2 * 3_600_000;
    let _: ea::StateAnswer = link.call(Call::State, &push(9_700, next_day)).await;
    assert!(!locked(&node), "3 % below yesterday's start, but a new day");
    let _: ea::StateAnswer = link.call(Call::State, &push(9_500, next_day + 60_000)).await;
    let a = &node.status(now()).expect("status").accounts[0];
    assert!(a.locked && a.lock_reason.starts_with("daily loss limit"), "{a:?}");
    let p = link.poll(&h.session_id, 0, next_day + 61_000).await;
    assert!(matches!(&p.commands[..], [ea::Command::CloseAll { .. }]), "{p:?}");
    link.shutdown.trigger();
}

const H: i64 = 3_600_000;
const D: i64 = 24 * H;

fn eurusd_signal(
    node: &tradecast_node::runtime::Node,
    bar_close: i64,
) -> tradecast_protocol::Signal {
    let id = tradecast_node::keys::random_bytes::<16>().expect("rng");
    tradecast_protocol::Signal {
        id: tradecast_protocol::SignalId(*id),
        provider: node.device_id(),
        strategy_id: "test".into(),
        strategy_version: 1,
        symbol: "EURUSD".into(),
        timeframe: tradecast_protocol::Timeframe::H1,
        side: tradecast_protocol::Side::Buy,
        entry_kind: tradecast_protocol::EntryKind::Market,
        entry: Decimal::new(107_000, 5),
        stop: Decimal::new(106_000, 5),
        tp1: Decimal::new(109_000, 5),
        tp2: None,
        bar_time_ms: bar_close - H,
        expires_at_ms: bar_close + H,
        leg: 1,
        indicators: Vec::new(),
        rr: Decimal::TWO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_loss_rule_refuses_yesterdays_day_start_and_uses_the_new_days() {
    let mut link = Link::start().await;
    // Wednesday 2023-11-15 10:00 UTC, server time UTC+0.
    let wed = 1_700_042_400_000;
    let h = link.hello(wed).await;
    let node = link.running.node.clone();
    let account = node.pick_account(None).expect("account");
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, wed, 10_000, 10_000, vec![])).await;
    // Thursday: the terminal's clock moved on, no state push yet this server day.
    let thu = wed + D;
    link.poll(&h.session_id, 0, thu).await;
    let row = node.submit_signal(&account, eurusd_signal(&node, thu), true, None).expect("signal");
    assert!(
        row.skipped.contains("start of the broker's server day is not known yet"),
        "yesterday's day start is not today's: {row:?}"
    );
    // The first push of Thursday is the new day's start: 10 % below Wednesday's, no loss today.
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, thu, 9_000, 9_000, vec![])).await;
    let row = node.submit_signal(&account, eurusd_signal(&node, thu), true, None).expect("signal");
    assert!(!row.skipped.contains("daily"), "measured from Thursday's start: {row:?}");
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, thu + 60_000, 9_000, 8_550, vec![])).await;
    let row = node
        .submit_signal(&account, eurusd_signal(&node, thu + 60_000), true, None)
        .expect("signal");
    assert!(
        row.skipped.contains("today's loss 450 reached the daily limit 450 (equity 9000"),
        "5 % below Thursday's start: {row:?}"
    );
    link.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_closes_at_the_policys_drawdown_cap() {
    let mut link = Link::start().await;
    let t = 1_700_042_400_000;
    let h = link.hello(t).await;
    let node = link.running.node.clone();
    let mut policy = node.policy().expect("policy");
    policy.risk.drawdown_lock_pct = Decimal::ONE;
    node.set_policy(&policy).expect("save");
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, t, 10_000, 10_000, vec![])).await;
    let p = link.poll(&h.session_id, 0, t).await;
    assert_eq!(p.equity_floor, Some(Decimal::from(9_900)), "the EA keeps the policy's floor");
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, t + 60_000, 10_000, 9_900, vec![])).await;
    let a = &node.status(now()).expect("status").accounts[0];
    assert!(a.locked && a.lock_reason.starts_with("drawdown guard"), "{a:?}");
    assert_eq!(a.equity_floor, Some(Decimal::from(9_900)));
    let p = link.poll(&h.session_id, 0, t + 61_000).await;
    assert!(matches!(&p.commands[..], [ea::Command::CloseAll { .. }]), "{p:?}");
    link.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guards_day_survives_a_dst_change_and_rolls_at_the_new_server_midnight() {
    let mut link = Link::start_with(|c| c.daily_loss_max_pct = Some(Decimal::TWO)).await;
    let node = link.running.node.clone();
    let locked = |node: &tradecast_node::runtime::Node| {
        node.status(now()).expect("status").accounts[0].locked
    };
    // Sunday 2023-10-29 (the EU's end of summer time): the broker's server time goes from
    // UTC+3 to UTC+2. 05:00 UTC is 08:00 server time before the change.
    let sun = 1_698_555_600_000;
    link.offset_s = 10_800;
    let h = link.hello(sun).await;
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, sun, 10_000, 10_000, vec![])).await;
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, sun + H, 10_000, 9_850, vec![])).await;
    // The EA says hello again with the new offset: the same server day, its losses still count.
    link.offset_s = 7_200;
    let h = link.hello(sun + 2 * H).await;
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, sun + 2 * H, 10_000, 9_850, vec![])).await;
    assert!(!locked(&node), "1.5 % down");
    // 21:30 UTC is 23:30 at UTC+2: still Sunday on the server (it would be Monday at UTC+3).
    let _: ea::StateAnswer = link
        .call(Call::State, &state(&h.session_id, sun + 16 * H + 1_800_000, 10_000, 9_850, vec![]))
        .await;
    assert!(!locked(&node), "still 1.5 % down");
    // Server midnight at UTC+2 is 22:00 UTC: Monday starts from its first equity.
    let mon = sun + 17 * H;
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, mon, 10_000, 9_700, vec![])).await;
    assert!(!locked(&node), "3 % below Sunday's start, but a new day");
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, mon + 60_000, 10_000, 9_500, vec![])).await;
    let a = &node.status(now()).expect("status").accounts[0];
    assert!(a.locked && a.lock_reason.starts_with("daily loss limit"), "{a:?}");
    link.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guards_day_after_a_weekend_starts_on_monday() {
    let mut link = Link::start_with(|c| c.daily_loss_max_pct = Some(Decimal::TWO)).await;
    let node = link.running.node.clone();
    let locked = |node: &tradecast_node::runtime::Node| {
        node.status(now()).expect("status").accounts[0].locked
    };
    // Friday 2023-11-17 20:00 UTC at UTC+2 (22:00 server), then Monday 2023-11-20 00:30 UTC.
    link.offset_s = 7_200;
    let fri = 1_700_251_200_000;
    let h = link.hello(fri).await;
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, fri, 10_000, 10_000, vec![])).await;
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, fri + H, 10_000, 9_850, vec![])).await;
    let mon = fri + 2 * D + 4 * H + 1_800_000;
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, mon, 10_000, 9_700, vec![])).await;
    assert!(!locked(&node), "3 % below Friday's start: Monday is a new day");
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, mon + 60_000, 10_000, 9_600, vec![])).await;
    assert!(!locked(&node), "1.03 % below Monday's start");
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, mon + 120_000, 10_000, 9_500, vec![])).await;
    let a = &node.status(now()).expect("status").accounts[0];
    assert!(a.locked && a.lock_reason.contains("9700 at the server day's start"), "{a:?}");
    link.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_refused_on_a_weekend_is_sent_again_when_the_session_opens() {
    let mut link = Link::start().await;
    // Saturday 2023-11-18 12:00 UTC; the FX week runs Sunday 22:00 to Friday 22:00 UTC.
    let saturday = 1_700_308_800_000;
    let sunday_open = 1_700_431_200_000;
    let week = vec![ea::Session { from_week_s: 79_200, to_week_s: 511_200 }];
    let h = link.hello_sessions(saturday, week.clone()).await;
    assert_eq!(tradecast_node::runtime::next_open(&week, saturday), sunday_open);
    let node = link.running.node.clone();
    let row = queue_close(&node, 3);
    assert_eq!(link.poll(&h.session_id, 0, saturday).await.commands.len(), 1);
    let ack =
        bare_ack(&h.session_id, &row.order_id, ea::Outcome::Rejected, 10_018, "Market closed");
    let _: ea::AckAnswer = link.call(Call::Ack, &ack).await;
    let o = node.orders(&row.account).expect("orders").remove(0);
    assert_eq!((o.state, o.not_before_ms), (OrderState::Due, Some(sunday_open)));
    assert!(link.poll(&h.session_id, 0, saturday + 3_600_000).await.commands.is_empty());
    assert!(link.poll(&h.session_id, 0, sunday_open - 1_000).await.commands.is_empty());
    assert_eq!(link.poll(&h.session_id, 0, sunday_open).await.commands.len(), 1);
    link.shutdown.trigger();
}

#[test]
fn a_weekend_is_no_gap_in_the_bars() {
    use tradecast_node::runtime::gap_in_session;
    let week = vec![ea::Session { from_week_s: 79_200, to_week_s: 511_200 }];
    let h1 = 3_600_000;
    // Friday 2023-11-17 21:00 UTC is the last H1 bar; Sunday 22:00 the next.
    let friday_22 = 1_700_258_400_000;
    let sunday_22 = 1_700_431_200_000;
    assert!(!gap_in_session(&week, friday_22, sunday_22, h1), "the weekend");
    assert!(gap_in_session(&week, friday_22 - 2 * h1, sunday_22, h1), "Friday's last bars missing");
    assert!(
        gap_in_session(&week, sunday_22, sunday_22 + 2 * h1, h1),
        "Sunday night's bars missing"
    );
    assert!(gap_in_session(&[], friday_22, sunday_22, h1), "without sessions every gap counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_without_a_session_gets_409_hello_required() {
    let mut link = Link::start().await;
    let t = now();
    for body in [
        format!(r#"{{"wait_ms":0,"terminal_time_ms":{t}}}"#),
        format!(r#"{{"session_id":null,"wait_ms":0,"terminal_time_ms":{t}}}"#),
        format!(r#"{{"session_id":"","wait_ms":0,"terminal_time_ms":{t}}}"#),
        format!(r#"{{"session_id":"s_gone","wait_ms":0,"terminal_time_ms":{t}}}"#),
    ] {
        let (status, answer, signed) = link.raw(Call::Poll, body.clone().into_bytes()).await;
        assert_eq!(
            (status, problem_code(&answer).as_str()),
            (409, "hello-required"),
            "{body}: {}",
            String::from_utf8_lossy(&answer)
        );
        assert!(signed);
    }
    // A poll missing another field is still a malformed body.
    let (status, answer, _) = link
        .raw(Call::Poll, format!(r#"{{"session_id":"x","terminal_time_ms":{t}}}"#).into_bytes())
        .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&answer));
    link.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_for_an_order_the_node_does_not_have_gets_404_unknown_order() {
    let mut link = Link::start().await;
    let h = link.hello(now()).await;
    let ack = bare_ack(&h.session_id, "NOSUCHORDER0", ea::Outcome::Done, 10_009, "done");
    let (status, body, signed) = link.raw(Call::Ack, ea::encode(&ack)).await;
    assert_eq!((status, problem_code(&body).as_str(), signed), (404, "unknown-order", true));
    link.shutdown.trigger();
}
