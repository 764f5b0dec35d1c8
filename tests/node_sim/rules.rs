//! Every copy-policy rule in the running node, against the simulated terminal over the real EA
//! link: for each rule a signal is submitted through the local API under a policy saved through
//! the API, and the test checks the copy log's line (what a trader reads, e.g. "skipped:
//! EURUSD.m market closed (Saturday)"), the rule that failed, and for an accepted signal what
//! reached the simulated broker (volume, side, stop and target, pending order). The quotes,
//! specs, tick values, equity and market clock the rules read all come from the sim's EA.
//!
//! `policy/tests.rs` (in the node crate) holds the unit tests of the same rules; `policy.rs` here
//! the approvals (manual, expiry, remote) and the holiday file.

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tradecast_node::policy::sizing::LotMode;
use tradecast_node::policy::{PolicySettings, Rule};
use tradecast_node::runtime::OrderAction;
use tradecast_protocol::ea::{self, Session, TradeMode};
use tradecast_sim::broker::SymbolConfig;
use tradecast_sim::terminal::{Terminal, lock};

use crate::TestNode;
use crate::rig::{Broking, LOGIN, Rig};

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

struct Scene {
    node: TestNode,
    rig: Rig,
    /// The broker's name of the file's EURUSD.
    symbol: String,
    _dir: tempfile::TempDir,
}

/// A node in auto mode (consent given) beside the sim, `bars` bars in; the broker names EURUSD
/// as `broking` says and the node subscribes to that name.
async fn scene(broking: Broking, bars: usize) -> Scene {
    let dir = tempfile::tempdir().expect("tempdir");
    let symbol = broking.symbol.clone();
    let sub = format!("{symbol}:H1");
    let node = TestNode::start(dir.path(), |c| c.subscriptions = vec![sub]).await;
    let mut rig = Rig::at_broker(&node.ea_url(), &node.key_id, &node.secret, 900, &broking, |_| {});
    for _ in 0..bars {
        rig.replay.advance().expect("advance");
        rig.catch_up(20).await;
    }
    Scene { node, rig, symbol, _dir: dir }
}

/// What the test submits: a buy at the live ask by default, stop 20 pips below, target 30
/// above, the provider's lot 0.10.
struct Submit {
    side: &'static str,
    /// Entry relative to the live ask (buy) or bid (sell).
    entry_offset: Decimal,
    stop_distance: Decimal,
    tp_distance: Decimal,
    /// A second target this far from the entry.
    tp2_distance: Option<Decimal>,
    volume: &'static str,
    entry_kind: &'static str,
    /// `bar_time_ms` relative to the market clock.
    bar_age_ms: i64,
    /// `expires_at_ms` relative to the market clock.
    expires_in_ms: i64,
}

impl Default for Submit {
    fn default() -> Self {
        Submit {
            side: "buy",
            entry_offset: Decimal::ZERO,
            stop_distance: d("0.0020"),
            tp_distance: d("0.0030"),
            tp2_distance: None,
            volume: "0.10",
            entry_kind: "market",
            bar_age_ms: 0,
            expires_in_ms: 3_600_000,
        }
    }
}

impl Scene {
    fn account(&self) -> String {
        self.node.running.node.pick_account(None).expect("account")
    }

    /// Saves `edit` of the tests' base policy through `PUT /api/v1/policy`.
    async fn policy(&self, edit: impl FnOnce(&mut PolicySettings)) {
        let mut p = crate::auto_policy();
        edit(&mut p);
        let body = serde_json::to_value(&p).expect("json");
        let (status, v) = self.node.api(reqwest::Method::PUT, "/api/v1/policy", Some(body)).await;
        assert_eq!(status, 200, "{v}");
    }

    /// Submits a signal for EURUSD (the provider's name) for execution; the API's answer.
    async fn submit(&self, s: Submit) -> Value {
        let q = lock(&self.rig.broker).quote(&self.symbol).expect("quote");
        let market = self.node.running.node.market_ms(&self.account()).expect("market");
        let buy = s.side == "buy";
        let entry = if buy { q.ask } else { q.bid } + s.entry_offset;
        let (stop, tp) = if buy {
            (entry - s.stop_distance, entry + s.tp_distance)
        } else {
            (entry + s.stop_distance, entry - s.tp_distance)
        };
        let tp2 = s.tp2_distance.map(|x| if buy { entry + x } else { entry - x }.to_string());
        let body = json!({
            "symbol": "EURUSD", "timeframe": "H1", "side": s.side, "tp2": tp2,
            "entry": entry.to_string(), "stop": stop.to_string(), "tp1": tp.to_string(),
            "volume": s.volume, "execute": true, "entry_kind": s.entry_kind,
            "bar_time_ms": market - s.bar_age_ms, "expires_at_ms": market + s.expires_in_ms,
        });
        let (status, v) = self.node.api(reqwest::Method::POST, "/api/v1/signals", Some(body)).await;
        assert_eq!(status, 201, "{v}");
        v
    }

    /// Submits and expects a skip by `rule` whose line starts with `line`; checks the copy log
    /// says the same and no order was made.
    async fn skipped(&self, s: Submit, rule: Rule, line: &str) -> String {
        let v = self.submit(s).await;
        let got = v["skipped"].as_str().unwrap_or_default().to_owned();
        assert!(got.starts_with(line), "expected a line starting {line:?}, got {v}");
        assert!(v["order_id"].is_null(), "{v}");
        let log = self.node.running.node.copy_log().expect("copy log");
        let e = log.iter().rfind(|e| e.signal_id.to_hex() == v["signal"]["id"]).expect("entry");
        assert_eq!((e.accepted, e.failed_rule), (false, Some(rule)), "{e:?}");
        assert_eq!(e.line, got);
        // Every rule before the failing one passed and says what it saw.
        let failing = e.steps.iter().position(|st| !st.passed).expect("a failed step");
        assert!(e.steps[..failing].iter().all(|st| st.passed && !st.detail.is_empty()), "{e:?}");
        got
    }

    /// Submits and expects an accepted signal; lets the EA execute it; the node's orders made.
    async fn accepted(&mut self, s: Submit) -> Vec<ea::Order> {
        let v = self.submit(s).await;
        assert_eq!(v["skipped"], "", "{v}");
        let id = v["signal"]["id"].as_str().expect("id").to_owned();
        for _ in 0..4 {
            let _ = self.rig.terminal.step().await;
        }
        self.node
            .running
            .node
            .orders(&self.account())
            .expect("orders")
            .into_iter()
            .filter(|o| o.signal_id.is_some_and(|s| s.to_hex() == id))
            .filter_map(|o| match o.action {
                OrderAction::Open(x) => Some(x),
                _ => None,
            })
            .collect()
    }

    fn broker_position(&self, order_no: u32) -> Option<ea::Position> {
        self.rig.open_positions().into_iter().find(|p| ea::split_magic(p.magic).1 == order_no)
    }

    /// Replaces the broker's symbol configuration; the EA is restarted (as a trader reattaches
    /// it) and its hello brings the new spec.
    async fn broker_changes_symbol(&mut self, edit: impl FnOnce(&mut SymbolConfig)) {
        {
            let mut b = lock(&self.rig.broker);
            let mut cfg = b.symbol(&self.symbol).expect("symbol").clone();
            edit(&mut cfg);
            b.add_symbol(cfg);
        }
        let cfg = self.rig.terminal.config().clone();
        self.rig.terminal =
            Terminal::new(cfg, self.rig.broker.clone(), self.rig.faults.clone()).expect("terminal");
        self.rig.replay.advance().expect("advance");
        self.rig.catch_up(20).await;
        for _ in 0..4 {
            let _ = self.rig.terminal.step().await;
        }
    }

    async fn close_everything(&mut self) {
        let (status, v) = self.node.api(reqwest::Method::POST, "/api/v1/close-all", None).await;
        assert!(status < 300, "{v}");
        for _ in 0..6 {
            let _ = self.rig.terminal.step().await;
        }
        assert!(self.rig.open_positions().is_empty(), "flat");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_skips_with_its_line_or_shapes_the_order_at_the_broker() {
    let broking = Broking { unquoted: vec!["GBPUSD".into()], ..Broking::default() };
    let mut s = scene(broking, 30).await;

    // settings: a policy that does not validate is refused where it is saved, naming the key.
    let mut bad = crate::auto_policy();
    bad.lot = LotMode::RiskPercent { percent: d("1") };
    bad.copy_sl = false;
    let (status, p) = s
        .node
        .api(reqwest::Method::PUT, "/api/v1/policy", Some(serde_json::to_value(&bad).expect("j")))
        .await;
    assert_eq!((status, p["code"].as_str()), (422, Some("invalid-policy")), "{p}");
    assert!(p["detail"].as_str().is_some_and(|t| t.contains("copy_sl")), "{p}");

    // copying
    s.policy(|p| p.copying = false).await;
    s.skipped(Submit::default(), Rule::Copying, "skipped: copying is switched off").await;

    // symbol: include list, per-symbol switch, a map to a name the broker does not have, a
    // suffix the broker does not use.
    s.policy(|p| p.symbols.include = vec!["GBPUSD".into()]).await;
    s.skipped(Submit::default(), Rule::Symbol, "skipped: EURUSD is not in the include list").await;
    s.policy(|p| {
        p.symbols.per_symbol.entry("EURUSD".into()).or_default().enabled = false;
    })
    .await;
    s.skipped(Submit::default(), Rule::Symbol, "skipped: EURUSD is switched off").await;
    s.policy(|p| {
        p.symbols.map.insert("EURUSD".into(), "EURUSD.pro".into());
    })
    .await;
    s.skipped(
        Submit::default(),
        Rule::Symbol,
        "skipped: EURUSD maps to EURUSD.pro, which is not in the broker's Market Watch",
    )
    .await;
    s.policy(|p| p.symbols.suffix = ".m".into()).await;
    s.skipped(
        Submit::default(),
        Rule::Symbol,
        "skipped: EURUSD maps to EURUSD.m, which is not in the broker's Market Watch",
    )
    .await;

    // price: a symbol at the broker with no closed bar pushed yet has no current price.
    s.policy(|p| {
        p.symbols.map.insert("EURUSD".into(), "GBPUSD".into());
    })
    .await;
    s.skipped(Submit::default(), Rule::Price, "skipped: no current price for GBPUSD").await;

    // expiry and age, on the market clock.
    s.policy(|_| {}).await;
    s.skipped(
        Submit { expires_in_ms: -120_000, ..Submit::default() },
        Rule::Expiry,
        "skipped: signal expired 120 s ago",
    )
    .await;
    s.skipped(
        Submit { bar_age_ms: 2 * 3_600_000, ..Submit::default() },
        Rule::Age,
        "skipped: signal 3600 s old, limit 60 s",
    )
    .await;

    // price: moved too far in points, and as a fraction of the stop distance.
    s.policy(|p| p.max_price_move_points = Some(20)).await;
    s.skipped(
        Submit { entry_offset: d("-0.0050"), stop_distance: d("0.0100"), ..Submit::default() },
        Rule::Price,
        "skipped: EURUSD price moved",
    )
    .await;
    s.policy(|p| p.max_price_move_stop_fraction = d("0.25")).await;
    let line = s
        .skipped(
            Submit { entry_offset: d("-0.0050"), stop_distance: d("0.0100"), ..Submit::default() },
            Rule::Price,
            "skipped: EURUSD price moved",
        )
        .await;
    assert!(line.contains("of the stop distance, limit 0.25"), "{line}");

    // pending entries: not copied, wrong side, too close to the market.
    s.policy(|p| p.copy_pending = false).await;
    s.skipped(
        Submit { entry_kind: "limit", entry_offset: d("-0.0030"), ..Submit::default() },
        Rule::Price,
        "skipped: limit entries are not copied (copy_pending is off)",
    )
    .await;
    s.policy(|_| {}).await;
    let line = s
        .skipped(
            Submit { entry_kind: "limit", entry_offset: d("0.0030"), ..Submit::default() },
            Rule::Price,
            "skipped: EURUSD buy limit at",
        )
        .await;
    // The node's ask: the last closed bar's close plus its spread (the link carries no ticks).
    let (_, market) = line.split_once("is on the wrong side of the market ").expect("market");
    let node_ask = d(market);
    let live_ask = lock(&s.rig.broker).quote("EURUSD").expect("quote").ask;
    s.skipped(
        Submit {
            entry_kind: "limit",
            entry_offset: node_ask - d("0.00005") - live_ask,
            ..Submit::default()
        },
        Rule::Price,
        "skipped: EURUSD pending price is 5 points from the market, the broker's stops level is 10",
    )
    .await;

    // order: reward/risk floor, the risk cap, the broker's minimum lot, the stops level.
    s.policy(|p| p.min_rr = d("2")).await;
    let line = s.skipped(Submit::default(), Rule::Order, "skipped: EURUSD: ").await;
    assert!(line.contains("reward/risk"), "{line}");
    s.policy(|p| {
        p.lot = LotMode::Fixed { lots: d("5") };
        p.max_risk_pct = d("1");
    })
    .await;
    let line = s.skipped(Submit::default(), Rule::Order, "skipped: EURUSD: the trade risks").await;
    assert!(line.ends_with("limit 1 %"), "{line}");
    s.policy(|p| p.lot = LotMode::Fixed { lots: d("0.001") }).await;
    let line = s.skipped(Submit::default(), Rule::Order, "skipped: EURUSD: lot ").await;
    assert!(line.contains("is below the broker's minimum 0.01"), "{line}");
    // Risk %: a lot below the trader's own minimum is skipped, never raised to it.
    s.policy(|p| {
        p.lot = LotMode::RiskPercent { percent: d("0.5") };
        p.lot_min = Some(d("0.50"));
    })
    .await;
    let line = s.skipped(Submit::default(), Rule::Order, "skipped: EURUSD: the risk allows").await;
    assert!(line.contains("below your minimum 0.50 (raising it would risk more)"), "{line}");
    let line = s
        .skipped(
            Submit {
                entry_offset: node_ask - live_ask,
                stop_distance: d("0.00005"),
                tp_distance: d("0.0030"),
                ..Submit::default()
            },
            Rule::Order,
            "skipped: EURUSD: ",
        )
        .await;
    assert!(line.contains("the broker's stops level is 10"), "{line}");

    // Accepted: lot modes and clamps, as the broker filled them.
    s.policy(|p| p.lot = LotMode::Multiplier { factor: d("0.5") }).await;
    let o = s.accepted(Submit { volume: "0.40", ..Submit::default() }).await;
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].volume, d("0.20"), "half the provider's 0.40");
    assert_eq!(s.broker_position(o[0].order_no).map(|p| p.volume), Some(d("0.20")));
    s.policy(|p| {
        p.lot = LotMode::Fixed { lots: d("3") };
        p.lot_max = Some(d("0.30"));
    })
    .await;
    let o = s.accepted(Submit::default()).await;
    assert_eq!(s.broker_position(o[0].order_no).map(|p| p.volume), Some(d("0.30")), "lot_max");
    s.policy(|p| {
        p.lot = LotMode::Fixed { lots: d("0.01") };
        p.lot_min = Some(d("0.07"));
    })
    .await;
    let o = s.accepted(Submit::default()).await;
    assert_eq!(s.broker_position(o[0].order_no).map(|p| p.volume), Some(d("0.07")), "lot_min");
    s.policy(|p| p.lot = LotMode::RiskPercent { percent: d("0.5") }).await;
    let o = s.accepted(Submit::default()).await;
    let equity = s.node.running.node.account(&s.account()).expect("row").expect("acc").equity;
    let equity = equity.expect("equity");
    let price = o[0].price.expect("price");
    let sl = o[0].sl.expect("sl");
    // 0.5 % of equity over the loss of one lot at the stop (ticks × 1 USD), down to the step.
    let lots = (equity * d("0.005") / ((price - sl) / d("0.00001")))
        .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero);
    assert_eq!(o[0].volume, lots, "equity {equity}, price {price}, stop {sl}");
    assert!(s.broker_position(o[0].order_no).is_some(), "filled");

    // reverse: the buy becomes a sell with the stop and the target swapped; copy SL/TP off.
    s.policy(|p| p.reverse = true).await;
    let o = s.accepted(Submit::default()).await;
    let pos = s.broker_position(o[0].order_no).expect("reversed position");
    assert_eq!(pos.side, ea::Side::Sell);
    let (sl, tp) = (pos.sl.expect("sl"), pos.tp.expect("tp"));
    assert!(sl > pos.open_price && tp < pos.open_price, "{pos:?}");
    s.policy(|p| {
        p.copy_sl = false;
        p.copy_tp = false;
        p.lot = LotMode::Fixed { lots: d("0.10") };
    })
    .await;
    let o = s.accepted(Submit::default()).await;
    let pos = s.broker_position(o[0].order_no).expect("position");
    assert_eq!((pos.sl, pos.tp), (None, None), "neither stop nor target sent");

    // max slippage: the deviation the EA is given.
    s.policy(|p| p.max_slippage_points = 3).await;
    let o = s.accepted(Submit::default()).await;
    assert_eq!(o[0].max_slippage_points, Some(3));

    // Two halves, to tp1 and tp2: two positions at the broker.
    s.policy(|p| {
        p.split = tradecast_node::orders::Split::Halves;
        p.lot = LotMode::Fixed { lots: d("0.20") };
    })
    .await;
    let o = s.accepted(Submit { tp2_distance: Some(d("0.0060")), ..Submit::default() }).await;
    assert_eq!(o.len(), 2, "{o:?}");
    assert_eq!((o[0].volume, o[1].volume), (d("0.10"), d("0.10")));
    assert!(o[0].tp < o[1].tp, "the first half to tp1, the second to tp2: {o:?}");
    for leg in &o {
        assert!(s.broker_position(leg.order_no).is_some(), "{leg:?} filled");
    }

    // A pending entry is a pending order at the broker.
    s.policy(|_| {}).await;
    let o = s
        .accepted(Submit { entry_kind: "limit", entry_offset: d("-0.0030"), ..Submit::default() })
        .await;
    assert_eq!(o[0].kind, ea::OrderKind::BuyLimit);
    let pending = lock(&s.rig.broker).orders(LOGIN).expect("orders");
    assert!(pending.iter().any(|p| ea::split_magic(p.magic).1 == o[0].order_no), "{pending:?}");

    // open positions: per symbol and in total.
    let open = s.rig.open_positions().len() + pending.len();
    s.policy(|p| {
        p.risk.max_open_per_symbol = 2;
        p.risk.max_open_positions = 20;
    })
    .await;
    s.skipped(
        Submit::default(),
        Rule::OpenPositions,
        &format!("skipped: {open} positions open on EURUSD, limit 2 per symbol"),
    )
    .await;
    s.policy(|p| p.risk.max_open_positions = 3).await;
    s.skipped(
        Submit::default(),
        Rule::OpenPositions,
        &format!("skipped: {open} positions open, limit 3"),
    )
    .await;

    // drawdown lock and daily loss: the open positions' spread is a floating loss.
    let acc = s.node.running.node.account(&s.account()).expect("row").expect("acc");
    let (equity, peak) = (acc.equity.expect("equity"), acc.peak_equity.expect("peak"));
    assert!(equity < peak, "the spread shows as a loss: {equity} < {peak}");
    s.policy(|p| p.risk.drawdown_lock_pct = d("0.001")).await;
    s.skipped(Submit::default(), Rule::Drawdown, &format!("skipped: equity {equity} is")).await;
    s.policy(|p| p.risk.daily_loss_limit_money = Some(d("0.5"))).await;
    s.skipped(Submit::default(), Rule::DailyLoss, "skipped: today's loss").await;
    s.close_everything().await;

    // trade mode: the broker makes EURUSD long-only; the node takes the new spec from the EA.
    s.broker_changes_symbol(|c| c.trade_mode = TradeMode::LongOnly).await;
    let specs = s.node.running.node.symbol_specs(&s.account()).expect("specs");
    let spec = specs.iter().find(|x| x.symbol == "EURUSD").expect("spec");
    assert_eq!(spec.trade_mode, TradeMode::LongOnly, "the node took the new spec");
    s.policy(|_| {}).await;
    s.skipped(
        Submit { side: "sell", ..Submit::default() },
        Rule::TradeMode,
        "skipped: EURUSD allows no new sell (long only)",
    )
    .await;

    // market hours: the broker's own session for the symbol.
    s.broker_changes_symbol(|c| {
        c.trade_mode = TradeMode::Full;
        // One hour on Saturdays only: closed at every time of this replay's bars.
        c.sessions = vec![Session { from_week_s: 6 * 86_400, to_week_s: 6 * 86_400 + 3_600 }];
    })
    .await;
    s.skipped(
        Submit::default(),
        Rule::MarketHours,
        "skipped: EURUSD market closed (outside the broker's trading session)",
    )
    .await;
}

/// The next Saturday 12:00 UTC after `ms` (1970-01-01 was a Thursday).
fn next_saturday_noon(ms: i64) -> i64 {
    let day = ms.div_euclid(86_400_000);
    let weekday = (day + 4).rem_euclid(7); // 0 = Sunday
    let ahead = (6 - weekday).rem_euclid(7);
    let ahead = if ahead == 0 { 7 } else { ahead };
    (day + ahead) * 86_400_000 + 12 * 3_600_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suffixed_broker_symbol_is_closed_on_saturday_in_the_trader_s_words() {
    let mut s = scene(Broking { symbol: "EURUSD.m".into(), ..Broking::default() }, 30).await;
    // Without the suffix the provider's EURUSD is not at this broker.
    s.policy(|_| {}).await;
    s.skipped(
        Submit::default(),
        Rule::Symbol,
        "skipped: EURUSD is not in the broker's Market Watch (map it, or set a prefix/suffix)",
    )
    .await;
    // With it, the signal trades on EURUSD.m.
    s.policy(|p| p.symbols.suffix = ".m".into()).await;
    let o = s.accepted(Submit::default()).await;
    assert_eq!(o[0].symbol, "EURUSD.m");
    assert!(s.broker_position(o[0].order_no).is_some(), "filled on EURUSD.m");
    // The terminal's clock moves to a Saturday (the market clock, not the wall clock).
    {
        let mut b = lock(&s.rig.broker);
        let q = b.quote("EURUSD.m").expect("quote");
        let saturday = next_saturday_noon(b.time_ms());
        b.set_quote("EURUSD.m", q.bid, q.ask, saturday).expect("quote on Saturday");
    }
    for _ in 0..4 {
        let _ = s.rig.terminal.step().await;
    }
    s.skipped(Submit::default(), Rule::MarketHours, "skipped: EURUSD.m market closed (Saturday)")
        .await;
    // A symbol the trader marks as open around the clock (crypto) is exempt from the FX week,
    // and with the market-hours rule off nothing is checked: the market-hours step passes and
    // says why (the broker still refuses what its own session does not allow).
    for (edit, says) in [
        (
            (|p: &mut PolicySettings| {
                p.symbols.suffix = ".m".into();
                p.market_hours.always_open = vec!["EURUSD".into()];
                p.market_hours.broker_sessions = false;
            }) as fn(&mut PolicySettings),
            "open",
        ),
        (
            |p: &mut PolicySettings| {
                p.symbols.suffix = ".m".into();
                p.market_hours.enabled = false;
            },
            "not checked",
        ),
    ] {
        s.policy(edit).await;
        let v = s.submit(Submit::default()).await;
        let log = s.node.running.node.copy_log().expect("copy log");
        let e = log.iter().rfind(|e| e.signal_id.to_hex() == v["signal"]["id"]).expect("entry");
        let step = e.steps.iter().find(|st| st.rule == Rule::MarketHours).expect("market step");
        assert!(step.passed, "{says}: {e:?}");
        assert!(step.detail.contains(says), "{says}: {}", step.detail);
        assert_ne!(e.failed_rule, Some(Rule::MarketHours), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_percent_sizes_with_the_broker_s_current_tick_value_not_the_hello_one() {
    // A EUR account: a EURUSD lot's tick value is 1 USD in EUR, so it moves with the rate.
    let mut s = scene(Broking { currency: "EUR".into(), ..Broking::default() }, 1).await;
    let account = s.account();
    let at_hello = {
        let specs = s.node.running.node.symbol_specs(&account).expect("specs");
        specs.iter().find(|x| x.symbol == "EURUSD").expect("spec").tick_value_loss
    };
    for _ in 0..400 {
        s.rig.replay.advance().expect("advance");
        s.rig.catch_up(20).await;
    }
    for _ in 0..3 {
        let _ = s.rig.terminal.step().await;
    }
    let broker_now = {
        let b = lock(&s.rig.broker);
        b.tick_values("EURUSD", "EUR").expect("tick values").1.round_dp(8).normalize()
    };
    let acc = s.node.running.node.account(&account).expect("row").expect("acc");
    let (_, tv) = acc.tick_values.get("EURUSD").expect("a current tick value from the EA");
    assert_eq!(tv.tick_value_loss, broker_now, "the node holds the broker's current value");
    assert_ne!(tv.tick_value_loss, at_hello, "the rate moved since hello");

    s.policy(|p| p.lot = LotMode::RiskPercent { percent: d("1") }).await;
    let o = s
        .accepted(Submit {
            stop_distance: d("0.0003"),
            tp_distance: d("0.0006"),
            ..Submit::default()
        })
        .await;
    let equity = acc.equity.expect("equity");
    let (price, sl) = (o[0].price.expect("price"), o[0].sl.expect("sl"));
    let ticks = (price - sl) / d("0.00001");
    let lots = |tv: Decimal| {
        (equity * d("0.01") / (ticks * tv))
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero)
    };
    assert_eq!(o[0].volume, lots(broker_now), "sized on the current tick value");
    assert_ne!(o[0].volume, lots(at_hello), "the hello value would have sized another lot");
    let log = s.node.running.node.copy_log().expect("log");
    let order_step = log
        .last()
        .and_then(|e| e.steps.iter().find(|st| st.rule == Rule::Order).cloned())
        .expect("order step");
    assert!(
        order_step.detail.contains(&format!("loss tick value {broker_now} (current)")),
        "{order_step:?}"
    );
}
