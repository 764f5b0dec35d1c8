//! The policy's evaluation, one rule at a time: a scenario that passes every rule, then one change
//! per case and the copy-log line it must produce.

use super::*;
use rust_decimal::Decimal;
use tradecast_protocol::ea::Session;
use tradecast_protocol::{IndicatorValue, Side as WireSide};

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal literal")
}

/// 2026-11-25 15:00:30 UTC, a Wednesday (10:00 New York).
const NOW: i64 = 1_795_618_830_000;
const H: i64 = 3_600_000;

fn eurusd_spec(symbol: &str) -> ea::SymbolSpec {
    ea::SymbolSpec {
        symbol: symbol.into(),
        digits: 5,
        point: d("0.00001"),
        tick_size: d("0.00001"),
        tick_value_profit: d("1"),
        tick_value_loss: d("1"),
        contract_size: d("100000"),
        volume_min: d("0.01"),
        volume_max: d("50"),
        volume_step: d("0.01"),
        stops_level: 0,
        freeze_level: 0,
        trade_mode: TradeMode::Full,
        currency_base: "EUR".into(),
        currency_profit: "USD".into(),
        currency_margin: "EUR".into(),
        sessions: vec![],
    }
}

fn signal() -> Signal {
    Signal {
        id: SignalId([9; 16]),
        provider: tradecast_protocol::Identity::from_secret_bytes(&[1; 32], &[2; 32]).device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 1,
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        side: WireSide::Buy,
        entry_kind: EntryKind::Market,
        entry: d("1.10000"),
        stop: d("1.09900"),
        tp1: d("1.10200"),
        tp2: Some(d("1.10300")),
        // The 14:00 UTC bar, closed at 15:00:00.
        bar_time_ms: NOW - 30_000 - H,
        expires_at_ms: NOW + H,
        leg: 1,
        indicators: vec![IndicatorValue { name: "rsi".into(), value: d("27.4") }],
        rr: d("2"),
    }
}

/// Everything an evaluation reads, owned, so each case changes one thing.
#[derive(Clone, Debug)]
struct Scenario {
    settings: PolicySettings,
    signal: Signal,
    provider_lots: Option<Decimal>,
    specs: Vec<ea::SymbolSpec>,
    tick_values: Vec<ea::TickValue>,
    quotes: BTreeMap<String, Quote>,
    balance: Decimal,
    equity: Decimal,
    peak_equity: Decimal,
    guard_locked: bool,
    day_start: Option<DayStart>,
    open_symbols: Vec<String>,
    now_ms: i64,
    server_utc_offset_s: i32,
    calendar: HolidayCalendar,
}

fn base() -> Scenario {
    let settings = PolicySettings {
        symbols: SymbolSettings { suffix: ".m".into(), ..Default::default() },
        ..Default::default()
    };
    Scenario {
        settings,
        signal: signal(),
        provider_lots: None,
        specs: vec![eurusd_spec("EURUSD.m"), eurusd_spec("GBPUSD.m")],
        tick_values: vec![],
        quotes: [("EURUSD.m".to_string(), Quote { bid: d("1.10000"), ask: d("1.10002") })].into(),
        balance: d("10000"),
        equity: d("10000"),
        peak_equity: d("10000"),
        guard_locked: false,
        day_start: Some(DayStart {
            day_start_ms: risk::server_day_start_ms(NOW, 7_200),
            equity: d("10000"),
        }),
        open_symbols: vec![],
        now_ms: NOW,
        server_utc_offset_s: 7_200,
        calendar: HolidayCalendar::default_calendar(),
    }
}

impl Scenario {
    fn run(&self) -> Evaluation {
        let input = EvaluationInput {
            signal: &self.signal,
            provider_lots: self.provider_lots,
            specs: &self.specs,
            tick_values: &self.tick_values,
            quotes: &self.quotes,
            balance: self.balance,
            equity: self.equity,
            peak_equity: self.peak_equity,
            guard_locked: self.guard_locked,
            day_start: self.day_start,
            open_symbols: &self.open_symbols,
            now_ms: self.now_ms,
            server_utc_offset_s: self.server_utc_offset_s,
            calendar: &self.calendar,
        };
        evaluate(&self.settings, &input)
    }
}

/// Runs the scenario after `change` and compares the copy-log line.
fn check(change: impl FnOnce(&mut Scenario), expect: &str) {
    let mut s = base();
    change(&mut s);
    let e = s.run();
    assert_eq!(e.log_line(), expect);
    // The last step carries the verdict; every earlier one passed.
    let (last, earlier) = e.steps.split_last().expect("at least one step");
    assert!(earlier.iter().all(|st| st.passed), "{:?}", e.steps);
    match &e.outcome {
        Outcome::Skip(reason) => {
            assert!(!last.passed);
            assert_eq!(last.detail, reason.to_string());
        }
        Outcome::Accept(_) => {
            assert!(last.passed);
            assert_eq!(last.rule, Rule::Order);
        }
    }
}

fn plan(s: &Scenario) -> OrderPlan {
    match s.run().outcome {
        Outcome::Accept(plan) => plan,
        Outcome::Skip(reason) => panic!("expected an order, got {reason}"),
    }
}

#[test]
fn the_base_scenario_is_accepted_with_every_step_recorded() {
    let e = base().run();
    let rules: Vec<Rule> = e.steps.iter().map(|s| s.rule).collect();
    assert_eq!(
        rules,
        [
            Rule::Settings,
            Rule::Copying,
            Rule::Symbol,
            Rule::TradeMode,
            Rule::MarketHours,
            Rule::Expiry,
            Rule::Age,
            Rule::Drawdown,
            Rule::DailyLoss,
            Rule::OpenPositions,
            Rule::Price,
            Rule::Order,
        ]
    );
    let details: Vec<&str> = e.steps.iter().map(|s| s.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "consistent",
            "on",
            "EURUSD → EURUSD.m",
            "buy allowed",
            "open",
            "expires in 3600 s",
            "30 s old, limit 60 s",
            "equity 10000 of peak 10000",
            "within the limit",
            "0 open",
            "fill 1.10002, 2 points from the entry 1.10000",
            "buy 0.98 lots (1 % of equity at risk), stop 1.09900 tp 1.10200, risk 99.96, reward/risk 1.94, loss tick value 1 (from the symbol's spec)",
        ]
    );
    assert_eq!(e.log_line(), "accepted: EURUSD.m buy 0.98 lots at 1.10002");
    let p = plan(&base());
    assert_eq!(
        p,
        OrderPlan {
            signal_id: SignalId([9; 16]),
            canonical_symbol: "EURUSD".into(),
            symbol: "EURUSD.m".into(),
            kind: OrderKind::Buy,
            price: d("1.10002"),
            legs: vec![PlannedLeg {
                volume: d("0.98"),
                sl: Some(d("1.09900")),
                tp: Some(d("1.10200"))
            }],
            volume: d("0.98"),
            risk_money: d("99.96"),
            rr: p.rr,
            max_slippage_points: Some(10),
            expires_at_ms: NOW + H,
            reversed: false,
            lot_mode: LotMode::RiskPercent { percent: d("1") },
        }
    );
    assert_eq!(p.rr.round_dp(4), d("1.9412"));
}

#[test]
fn settings_copying_and_symbols() {
    check(|s| s.settings.copying = false, "skipped: copying is switched off");
    check(
        |s| s.settings.lot_min = Some(d("-1")),
        "skipped: policy setting lot_min: -1 must be above 0",
    );
    check(
        |s| s.settings.symbols.suffix = String::new(),
        "skipped: EURUSD is not in the broker's Market Watch (map it, or set a prefix/suffix)",
    );
    check(
        |s| s.settings.symbols.exclude = vec!["EURUSD".into()],
        "skipped: EURUSD is in the exclude list",
    );
    check(
        |s| s.settings.symbols.include = vec!["GBPUSD".into()],
        "skipped: EURUSD is not in the include list",
    );
    check(
        |s| {
            s.settings
                .symbols
                .per_symbol
                .insert("EURUSD".into(), symbols::SymbolRule { enabled: false, lot: None });
        },
        "skipped: EURUSD is switched off",
    );
    check(
        |s| {
            s.settings.symbols.map.insert("EURUSD".into(), "EURUSD.pro".into());
        },
        "skipped: EURUSD maps to EURUSD.pro, which is not in the broker's Market Watch",
    );
}

#[test]
fn the_broker_trade_mode() {
    check(
        |s| s.specs[0].trade_mode = TradeMode::CloseOnly,
        "skipped: EURUSD.m allows no new buy (close only)",
    );
    check(
        |s| s.specs[0].trade_mode = TradeMode::ShortOnly,
        "skipped: EURUSD.m allows no new buy (short only)",
    );
    check(
        |s| s.specs[0].trade_mode = TradeMode::Disabled,
        "skipped: EURUSD.m allows no new buy (trading disabled)",
    );
    check(
        |s| s.specs[0].trade_mode = TradeMode::LongOnly,
        "accepted: EURUSD.m buy 0.98 lots at 1.10002",
    );
}

/// Moves the market clock and the signal with it (same age, same expiry distance).
fn at(s: &mut Scenario, now_ms: i64) {
    let shift = now_ms - s.now_ms;
    s.now_ms = now_ms;
    s.signal.bar_time_ms += shift;
    s.signal.expires_at_ms += shift;
    s.day_start = Some(DayStart {
        day_start_ms: risk::server_day_start_ms(now_ms, s.server_utc_offset_s),
        equity: d("10000"),
    });
}

#[test]
fn market_hours_on_the_market_clock() {
    // Saturday 2026-11-28 15:00:30 UTC.
    check(|s| at(s, NOW + 72 * H), "skipped: EURUSD.m market closed (Saturday)");
    // Friday 2026-11-27 22:30 UTC = 17:30 New York.
    check(
        |s| at(s, NOW + 55 * H + 1_800_000),
        "skipped: EURUSD.m market closed (Friday after 17:00 New York)",
    );
    // Christmas Day 2026 (a Friday), 15:00 UTC.
    check(|s| at(s, NOW + 30 * 24 * H), "skipped: EURUSD.m market closed (Christmas Day)");
    // The broker's session for the symbol ends at 14:00 UTC on Wednesdays.
    check(
        |s| {
            s.specs[0].sessions =
                vec![Session { from_week_s: 3 * 86_400, to_week_s: 3 * 86_400 + 14 * 3_600 }]
        },
        "skipped: EURUSD.m market closed (outside the broker's trading session)",
    );
    check(
        |s| {
            at(s, NOW + 72 * H);
            s.settings.market_hours.enabled = false;
        },
        "accepted: EURUSD.m buy 0.98 lots at 1.10002",
    );
    // A replay of 2017: the market clock, not the wall clock, decides. 2017-05-06 was a Saturday.
    check(|s| at(s, 1_494_082_800_000), "skipped: EURUSD.m market closed (Saturday)");
}

#[test]
fn expiry_and_age() {
    check(
        |s| s.signal.expires_at_ms = NOW - 12_000,
        "skipped: signal expired 12 s ago (at 2026-11-25 15:00:18 UTC)",
    );
    check(
        |s| s.signal.expires_at_ms = NOW,
        "skipped: signal expired 0 s ago (at 2026-11-25 15:00:30 UTC)",
    );
    check(|s| s.signal.bar_time_ms -= 63_000, "skipped: signal 93 s old, limit 60 s");
    check(|s| s.settings.max_signal_age_s = 20, "skipped: signal 30 s old, limit 20 s");
    // A signal from the future of a lagging terminal clock counts as fresh.
    check(|s| s.signal.bar_time_ms += 10 * 60_000, "accepted: EURUSD.m buy 0.98 lots at 1.10002");
}

#[test]
fn signal_issue_time_is_the_bar_close() {
    let mut s = signal();
    s.bar_time_ms = 1_000;
    for (tf, expect) in [
        (Timeframe::M1, 61_000),
        (Timeframe::M15, 901_000),
        (Timeframe::H4, 14_401_000),
        (Timeframe::D1, 86_401_000),
        (Timeframe::W1, 604_801_000),
    ] {
        s.timeframe = tf;
        assert_eq!(signal_issued_ms(&s), Some(expect), "{tf:?}");
    }
    // MN1: a calendar month (February 2026 has 28 days).
    s.timeframe = Timeframe::MN1;
    s.bar_time_ms = 1_769_904_000_000; // 2026-02-01 00:00 UTC
    assert_eq!(signal_issued_ms(&s), Some(1_769_904_000_000 + 28 * 86_400_000));
    s.bar_time_ms = i64::MAX;
    assert_eq!(signal_issued_ms(&s), None);
    s.timeframe = Timeframe::H1;
    assert_eq!(signal_issued_ms(&s), None);
}

#[test]
fn account_risk_gates() {
    // The guard's lock does not skip: it suspends auto mode (the approval waits for the trader).
    let mut s = base();
    s.guard_locked = true;
    let e = s.run();
    assert!(e.auto_suspended);
    assert_eq!(e.log_line(), "accepted: EURUSD.m buy 0.98 lots at 1.10002");
    assert_eq!(
        e.steps.iter().find(|st| st.rule == Rule::Drawdown).map(|st| st.detail.as_str()),
        Some("equity 10000 of peak 10000; the drawdown guard locked auto mode, the trader decides")
    );
    assert!(!base().run().auto_suspended);
    check(
        |s| {
            s.peak_equity = d("12500");
            s.equity = d("10000");
        },
        "skipped: equity 10000 is 20 % below its peak 12500, the drawdown lock is at 20 %",
    );
    check(
        |s| s.equity = d("9500"),
        "skipped: today's loss 500 reached the daily limit 500 (equity 10000 at the server day's start)",
    );
    check(
        |s| s.day_start = None,
        "skipped: the equity at the start of the broker's server day is not known yet (daily loss limit)",
    );
    check(
        |s| {
            s.day_start = None;
            s.settings.risk.daily_loss_limit_pct = Decimal::ZERO;
        },
        "accepted: EURUSD.m buy 0.98 lots at 1.10002",
    );
    check(
        |s| s.open_symbols = vec!["EURUSD.m".into()],
        "skipped: 1 positions open on EURUSD.m, limit 1 per symbol",
    );
    check(|s| s.open_symbols = vec!["GBPUSD.m".into(); 5], "skipped: 5 positions open, limit 5");
    check(
        |s| {
            s.open_symbols = vec!["EURUSD.m".into()];
            s.settings.risk.max_open_per_symbol = 2;
        },
        "accepted: EURUSD.m buy 0.98 lots at 1.10002",
    );
}

#[test]
fn price_moved_from_the_entry() {
    check(
        |s| {
            s.quotes.clear();
        },
        "skipped: no current price for EURUSD.m",
    );
    // 30 points up on a 100-point stop: 0.3 of the stop distance, the default limit is 0.25.
    check(
        |s| {
            s.quotes.insert("EURUSD.m".into(), Quote { bid: d("1.10028"), ask: d("1.10030") });
        },
        "skipped: EURUSD.m price moved 30 points from the entry, 0.3 of the stop distance, limit 0.25",
    );
    check(
        |s| s.settings.max_price_move_points = Some(1),
        "skipped: EURUSD.m price moved 2 points from the entry 1.10000, limit 1",
    );
    check(
        |s| {
            s.settings.max_price_move_points = Some(2);
            s.settings.max_price_move_stop_fraction = Decimal::ZERO;
        },
        "accepted: EURUSD.m buy 0.98 lots at 1.10002",
    );
    // A sell fills at the bid: 20 points below the entry is 0.2 of the stop.
    check(
        |s| {
            s.signal.side = WireSide::Sell;
            s.signal.stop = d("1.10100");
            s.signal.tp1 = d("1.09700");
            s.signal.tp2 = None;
            s.quotes.insert("EURUSD.m".into(), Quote { bid: d("1.09980"), ask: d("1.09982") });
        },
        "accepted: EURUSD.m sell 0.83 lots at 1.09980",
    );
}

#[test]
fn the_order_rules_from_build_order() {
    check(
        |s| s.settings.min_rr = d("2"),
        "skipped: EURUSD.m: reward/risk 1.9412 is below the minimum 2",
    );
    check(
        |s| s.specs[0].stops_level = 150,
        "skipped: EURUSD.m: stop is 100 points from the price, the broker's stops level is 150",
    );
    check(
        |s| {
            s.equity = d("50");
            s.balance = d("50");
            s.peak_equity = d("50");
            s.day_start = Some(DayStart {
                day_start_ms: risk::server_day_start_ms(NOW, 7_200),
                equity: d("50"),
            });
        },
        "skipped: EURUSD.m: the lot 0.0049 lots is below the broker's minimum 0.01 (risk 0.50 allows no more)",
    );
    // The broker's current loss tick value (EURJPY-like cross) changes the lot.
    check(
        |s| {
            s.tick_values = vec![ea::TickValue {
                symbol: "EURUSD.m".into(),
                tick_value_profit: d("2"),
                tick_value_loss: d("2"),
            }];
        },
        "accepted: EURUSD.m buy 0.49 lots at 1.10002",
    );
    // A current tick value of another symbol, or one of zero, leaves the spec's in use.
    for (symbol, value) in [("GBPUSD", "2"), ("EURUSD.m", "0")] {
        let mut s = base();
        s.tick_values = vec![ea::TickValue {
            symbol: symbol.into(),
            tick_value_profit: d(value),
            tick_value_loss: d(value),
        }];
        let e = s.run();
        let order = e.steps.iter().find(|st| st.rule == Rule::Order).expect("order step");
        assert!(order.detail.contains("0.98 lots"), "{order:?}");
        assert!(order.detail.ends_with("loss tick value 1 (from the symbol's spec)"), "{order:?}");
    }
    let mut s = base();
    s.tick_values = vec![ea::TickValue {
        symbol: "EURUSD.m".into(),
        tick_value_profit: d("2"),
        tick_value_loss: d("2"),
    }];
    let e = s.run();
    let order = e.steps.iter().find(|st| st.rule == Rule::Order).expect("order step");
    assert!(order.detail.ends_with("loss tick value 2 (current)"), "{order:?}");
}

#[test]
fn lot_modes_and_clamps() {
    let with = |f: &dyn Fn(&mut Scenario)| {
        let mut s = base();
        f(&mut s);
        s
    };
    let p = plan(&with(&|s| s.settings.lot = LotMode::Fixed { lots: d("0.3") }));
    assert_eq!((p.volume, p.risk_money), (d("0.3"), d("30.6")));
    let p = plan(&with(&|s| {
        s.settings.lot = LotMode::Multiplier { factor: d("2") };
        s.provider_lots = Some(d("0.15"));
    }));
    assert_eq!(p.volume, d("0.30"));
    check(
        |s| s.settings.lot = LotMode::Multiplier { factor: d("2") },
        "skipped: EURUSD.m: the signal carries no provider lot for the multiplier lot mode",
    );
    let p = plan(&with(&|s| {
        s.settings.lot = LotMode::Proportional { lots: d("0.01"), per_balance: d("500") };
    }));
    assert_eq!(p.volume, d("0.20"));
    let p = plan(&with(&|s| s.settings.lot_max = Some(d("0.5"))));
    assert_eq!(p.volume, d("0.5"));
    // A per-symbol lot mode wins.
    let p = plan(&with(&|s| {
        s.settings.symbols.per_symbol.insert(
            "EURUSD".into(),
            symbols::SymbolRule { enabled: true, lot: Some(LotMode::Fixed { lots: d("0.07") }) },
        );
    }));
    assert_eq!((p.volume, p.lot_mode.clone()), (d("0.07"), LotMode::Fixed { lots: d("0.07") }));
    check(
        |s| s.settings.lot = LotMode::Fixed { lots: d("6") },
        "skipped: EURUSD.m: the trade risks 612 (6.12 % of equity) at the stop, limit 5 %",
    );
    // Halves to tp1 and tp2.
    let p = plan(&with(&|s| s.settings.split = Split::Halves));
    assert_eq!(
        p.legs,
        [
            PlannedLeg { volume: d("0.49"), sl: Some(d("1.09900")), tp: Some(d("1.10200")) },
            PlannedLeg { volume: d("0.49"), sl: Some(d("1.09900")), tp: Some(d("1.10300")) },
        ]
    );
    // Without a tp2 the split falls back to one position.
    let p = plan(&with(&|s| {
        s.settings.split = Split::Halves;
        s.signal.tp2 = None;
    }));
    assert_eq!(p.legs.len(), 1);
}

#[test]
fn reverse_and_copy_sl_tp() {
    let mut s = base();
    s.settings.reverse = true;
    s.settings.min_rr = d("0.1");
    // Reversed: a sell at the bid 1.10000, stop at the provider's tp1, target the provider's stop.
    let p = plan(&s);
    assert_eq!((p.kind, p.price, p.reversed), (OrderKind::Sell, d("1.10000"), true));
    assert_eq!(
        p.legs,
        [PlannedLeg { volume: d("0.5"), sl: Some(d("1.10200")), tp: Some(d("1.09900")) }]
    );
    assert_eq!(s.run().log_line(), "accepted: EURUSD.m sell 0.50 lots at 1.10000 (reversed)");
    // The default reward/risk floor refuses the reversed trade (1/1.94 < 1).
    check(
        |s| s.settings.reverse = true,
        "skipped: EURUSD.m: reward/risk 0.50 is below the minimum 1",
    );
    let mut s = base();
    s.settings.copy_tp = false;
    assert_eq!(plan(&s).legs[0].tp, None);
    assert_eq!(plan(&s).legs[0].sl, Some(d("1.09900")));
    let mut s = base();
    s.settings.copy_sl = false;
    s.settings.lot = LotMode::Fixed { lots: d("0.1") };
    assert_eq!(plan(&s).legs, [PlannedLeg { volume: d("0.1"), sl: None, tp: Some(d("1.10200")) }]);
    check(
        |s| s.settings.copy_sl = false,
        "skipped: policy setting lot: risk % sizing needs the stop: turn copy_sl on or pick another lot mode",
    );
}

#[test]
fn pending_entries() {
    let limit = |s: &mut Scenario| {
        s.signal.entry_kind = EntryKind::Limit;
        s.signal.entry = d("1.09950");
        s.signal.stop = d("1.09850");
        s.signal.tp1 = d("1.10150");
    };
    let mut s = base();
    limit(&mut s);
    let p = plan(&s);
    // Sized at its own price: 100 points to the stop, 1 % of 10,000 → 1 lot.
    assert_eq!(
        (p.kind, p.price, p.volume, p.max_slippage_points),
        (OrderKind::BuyLimit, d("1.09950"), d("1"), None)
    );
    check(
        |s| {
            limit(s);
            s.settings.copy_pending = false;
        },
        "skipped: limit entries are not copied (copy_pending is off)",
    );
    check(
        |s| {
            limit(s);
            s.quotes.insert("EURUSD.m".into(), Quote { bid: d("1.09940"), ask: d("1.09942") });
        },
        "skipped: EURUSD.m buy limit at 1.09950 is on the wrong side of the market 1.09942",
    );
    check(
        |s| {
            limit(s);
            s.specs[0].stops_level = 80;
        },
        "skipped: EURUSD.m pending price is 52 points from the market, the broker's stops level is 80",
    );
    // A stop entry above the market; reversed it becomes a sell limit at the same price.
    let mut s = base();
    s.signal.entry_kind = EntryKind::Stop;
    s.signal.entry = d("1.10100");
    s.signal.stop = d("1.10000");
    s.signal.tp1 = d("1.10400");
    assert_eq!(plan(&s).kind, OrderKind::BuyStop);
    s.settings.reverse = true;
    s.settings.min_rr = d("0.1");
    assert_eq!(plan(&s).kind, OrderKind::SellLimit);
}

#[test]
fn settings_defaults_toml_and_validation() {
    let s = PolicySettings::default();
    assert!(s.copying);
    assert_eq!(s.approval.mode, approval::ApprovalMode::Manual);
    assert!(!s.approval.remote_approval);
    assert_eq!(s.approval.consent_version, 0);
    assert_eq!(s.max_signal_age_s, 60);
    assert_eq!(s.max_price_move_points, None);
    assert_eq!(s.max_price_move_stop_fraction, d("0.25"));
    assert_eq!(s.max_slippage_points, 10);
    assert_eq!(s.lot, LotMode::RiskPercent { percent: d("1") });
    assert_eq!((s.lot_min, s.lot_max), (None, None));
    assert_eq!((s.max_risk_pct, s.min_rr), (d("5"), d("1")));
    assert_eq!(s.split, Split::Whole);
    assert!(!s.reverse);
    assert!(
        s.copy_sl && s.copy_tp && s.copy_modifications && s.copy_partial_closes && s.copy_pending
    );
    assert_eq!(s.validate(), Ok(()));
    assert_eq!(PolicySettings::from_toml(""), Ok(PolicySettings::default()));

    let text = r#"
max_signal_age_s = 30
max_price_move_points = 15
lot = { mode = "fixed", lots = "0.05" }
lot_max = "1"
reverse = false
copy_tp = false
[approval]
mode = "auto"
remote_approval = true
consent_version = 2
[symbols]
suffix = ".m"
exclude = ["USDTRY"]
[symbols.map]
DAX = "GER40.cash"
[symbols.per_symbol.XAUUSD]
enabled = false
[market_hours]
always_open = ["BTCUSD"]
[risk]
max_open_positions = 3
daily_loss_limit_money = "250"
"#;
    let s = PolicySettings::from_toml(text).expect("settings");
    assert_eq!(s.max_signal_age_s, 30);
    assert_eq!(s.lot, LotMode::Fixed { lots: d("0.05") });
    assert_eq!(s.approval.mode, approval::ApprovalMode::Auto);
    assert_eq!(s.symbols.broker_name("DAX"), "GER40.cash");
    assert!(!s.symbols.rule("XAUUSD").enabled);
    assert_eq!(s.risk.max_open_positions, 3);
    assert_eq!(s.risk.daily_loss_limit_money, Some(d("250")));
    assert_eq!(s.risk.daily_loss_limit_pct, d("5"));
    // A round trip through TOML keeps every value.
    let written = toml::to_string(&s).expect("serialise");
    assert_eq!(PolicySettings::from_toml(&written), Ok(s));

    let refuse = |text: &str, expect: &str| {
        let got = PolicySettings::from_toml(text).map_err(|e| e.to_string());
        assert_eq!(got, Err(expect.to_string()), "{text}");
    };
    refuse(
        "lot = { mode = \"risk_percent\", percent = \"150\" }",
        "policy setting lot.percent: 150 is above 100",
    );
    refuse(
        "lot = { mode = \"fixed\", lots = \"0\" }",
        "policy setting lot.lots: 0 must be above 0",
    );
    refuse("lot_min = \"2\"\nlot_max = \"1\"", "policy setting lot_min: 2 is above lot_max 1");
    refuse(
        "max_risk_pct = \"0\"",
        "policy setting max_risk_pct: 0 is not a percentage in (0, 100]",
    );
    refuse(
        "[risk]\ndrawdown_lock_pct = \"101\"",
        "policy setting risk.drawdown_lock_pct: 101 is not a percentage in (0, 100]",
    );
    refuse(
        "[risk]\ndaily_loss_limit_money = \"-5\"",
        "policy setting risk.daily_loss_limit_money: -5 must be above 0",
    );
    refuse(
        "max_price_move_stop_fraction = \"-0.1\"",
        "policy setting max_price_move_stop_fraction: -0.1 must not be negative",
    );
    refuse(
        "[risk]\ndaily_loss_limit_pct = \"-1\"",
        "policy setting risk.daily_loss_limit_pct: -1 is not a percentage in (0, 100]",
    );
    // Off is a value that survives a round trip (a missing key would mean the default).
    let off = PolicySettings::from_toml(
        "max_price_move_stop_fraction = \"0\"\n[risk]\ndaily_loss_limit_pct = \"0\"",
    )
    .expect("off");
    assert_eq!(off.risk.daily_loss_limit_pct, Decimal::ZERO);
    let again = toml::to_string(&off).expect("serialise");
    assert_eq!(PolicySettings::from_toml(&again), Ok(off));
    refuse("min_rr = \"-1\"", "policy setting min_rr: -1 must not be negative");
    refuse(
        "[risk]\nmax_open_positions = 0",
        "policy setting risk.max_open_positions: 0 would copy nothing: set copying = false",
    );
    refuse(
        "reverse = true\nsplit = \"halves\"",
        "policy setting split: halves need tp2, which a reversed trade does not have",
    );
    refuse(
        "[symbols.per_symbol.EURUSD]\nlot = { mode = \"multiplier\", factor = \"0\" }",
        "policy setting symbols.per_symbol.EURUSD.lot.factor: 0 must be above 0",
    );
    let unknown = PolicySettings::from_toml("max_signal_age = 30").expect_err("misspelt key");
    assert!(unknown.to_string().contains("max_signal_age"), "{unknown}");
}

#[test]
fn skip_lines_a_trader_reads() {
    // The two lines from the issue, verbatim.
    check(|s| at(s, NOW + 72 * H), "skipped: EURUSD.m market closed (Saturday)");
    check(|s| s.signal.bar_time_ms -= 63_000, "skipped: signal 93 s old, limit 60 s");
    assert_eq!(fmt_utc(i64::MAX), format!("{} ms", i64::MAX));
    assert_eq!(fmt_utc(0), "1970-01-01 00:00:00 UTC");
}

#[test]
fn plans_become_ea_orders() {
    let p = plan(&base());
    assert_eq!(
        p.ea_order(0, "0123456789AB".into(), 7),
        Some(ea::Order {
            order_id: "0123456789AB".into(),
            order_no: 7,
            symbol: "EURUSD.m".into(),
            kind: OrderKind::Buy,
            volume: d("0.98"),
            price: Some(d("1.10002")),
            sl: Some(d("1.09900")),
            tp: Some(d("1.10200")),
            max_slippage_points: Some(10),
            expiration_ms: None,
        })
    );
    assert_eq!(p.ea_order(1, "X".into(), 8), None);
    let mut s = base();
    s.signal.entry_kind = EntryKind::Limit;
    s.signal.entry = d("1.09950");
    s.signal.stop = d("1.09850");
    s.signal.tp1 = d("1.10150");
    s.settings.copy_tp = false;
    let o = plan(&s).ea_order(0, "P".into(), 9).expect("a leg");
    assert_eq!(
        (o.kind, o.price, o.tp, o.max_slippage_points, o.expiration_ms),
        (OrderKind::BuyLimit, Some(d("1.09950")), None, None, Some(NOW + H))
    );
}

#[test]
fn quotes_from_the_last_bar() {
    let q = quote_from_bar(d("1.10000"), Some(12), d("0.00001"));
    assert_eq!((q.bid, q.ask), (d("1.10000"), d("1.10012")));
    let q = quote_from_bar(d("1.10000"), None, d("0.00001"));
    assert_eq!((q.bid, q.ask), (d("1.10000"), d("1.10000")));
    let q = quote_from_bar(Decimal::MAX, Some(u32::MAX), Decimal::MAX);
    assert_eq!((q.bid, q.ask), (Decimal::MAX, Decimal::MAX));
}

#[test]
fn copy_log_entries_from_real_evaluations() {
    let s = base();
    let ok = copy_log::CopyLogEntry::new(&s.signal, &s.run(), NOW);
    assert!(ok.accepted);
    assert_eq!(ok.failed_rule, None);
    assert_eq!(ok.line, "accepted: EURUSD.m buy 0.98 lots at 1.10002");
    assert_eq!(ok.steps.len(), 12);
    let mut s = base();
    at(&mut s, NOW + 72 * H);
    let skipped = copy_log::CopyLogEntry::new(&s.signal, &s.run(), s.now_ms);
    assert!(!skipped.accepted);
    assert_eq!(skipped.failed_rule, Some(Rule::MarketHours));
    assert_eq!(skipped.line, "skipped: EURUSD.m market closed (Saturday)");
}

mod properties {
    //! Any figures the EA or a provider could send: no panic, and an accepted plan always keeps
    //! the broker's volume rules, the risk cap and its own legs consistent.

    use super::*;
    use proptest::prelude::*;

    fn decimal() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            // Realistic: up to 6 places, positive.
            (1i64..10_000_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s)),
            // Anything, including zero, negatives and extremes.
            (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
            Just(Decimal::MAX),
            Just(Decimal::MIN),
            Just(Decimal::ZERO),
        ]
    }

    fn lot_mode() -> impl Strategy<Value = LotMode> {
        prop_oneof![
            decimal().prop_map(|lots| LotMode::Fixed { lots }),
            decimal().prop_map(|factor| LotMode::Multiplier { factor }),
            (decimal(), decimal())
                .prop_map(|(lots, per_balance)| LotMode::Proportional { lots, per_balance }),
            decimal().prop_map(|percent| LotMode::RiskPercent { percent }),
        ]
    }

    prop_compose! {
        fn wild_scenario()(
            prices in proptest::collection::vec(decimal(), 6),
            spec_figures in proptest::collection::vec(decimal(), 6),
            account in proptest::collection::vec(decimal(), 4),
            stops_level in prop_oneof![Just(0u32), any::<u32>()],
            times in (any::<i64>(), any::<i64>(), any::<i64>()),
            near in (-(2 * H)..(2 * H), -(2 * H)..(2 * H)),
            realistic_time in any::<bool>(),
            offset in any::<i32>(),
            entry_kind in prop_oneof![Just(EntryKind::Market), Just(EntryKind::Limit), Just(EntryKind::Stop)],
            sell in any::<bool>(),
            reverse in any::<bool>(),
            halves in any::<bool>(),
            lot in lot_mode(),
            provider_lots in proptest::option::of(decimal()),
            lot_max in proptest::option::of(decimal()),
        ) -> Scenario {
            let mut s = base();
            s.quotes.insert("EURUSD.m".into(), Quote { bid: prices[0], ask: prices[1] });
            s.signal.entry = prices[2];
            s.signal.stop = prices[3];
            s.signal.tp1 = prices[4];
            s.signal.tp2 = Some(prices[5]);
            s.signal.entry_kind = entry_kind;
            if sell {
                s.signal.side = WireSide::Sell;
            }
            let spec = &mut s.specs[0];
            spec.point = spec_figures[0];
            spec.tick_size = spec_figures[1];
            spec.tick_value_loss = spec_figures[2];
            spec.volume_min = spec_figures[3];
            spec.volume_max = spec_figures[4];
            spec.volume_step = spec_figures[5];
            spec.stops_level = stops_level;
            s.balance = account[0];
            s.equity = account[1];
            s.peak_equity = account[2];
            s.day_start = Some(DayStart { day_start_ms: risk::server_day_start_ms(NOW, 7_200), equity: account[3] });
            if realistic_time {
                s.signal.bar_time_ms = NOW - H + near.0;
                s.signal.expires_at_ms = NOW + near.1;
            } else {
                s.now_ms = times.0;
                s.signal.bar_time_ms = times.1;
                s.signal.expires_at_ms = times.2;
                s.server_utc_offset_s = offset;
            }
            s.settings.reverse = reverse;
            s.settings.split = if halves && !reverse { Split::Halves } else { Split::Whole };
            s.settings.lot = lot;
            s.settings.lot_max = lot_max;
            s.settings.min_rr = Decimal::ZERO;
            s.settings.max_price_move_stop_fraction = Decimal::ZERO;
            s.provider_lots = provider_lots;
            s
        }
    }

    /// Points (0.00001) as a decimal.
    fn pts(n: i64) -> Decimal {
        Decimal::new(n, 5)
    }

    prop_compose! {
        /// Figures a real EURUSD-like account could show: most of these are accepted, so the
        /// plan's invariants are exercised, not only the skips.
        fn realistic_scenario()(
            base_pts in 100_000i64..200_000,
            spread in 0i64..30,
            offset in -40i64..40,
            stop_pts in 20i64..500,
            tp_pts in 20i64..1_000,
            tp2_extra in 0i64..500,
            sell in any::<bool>(),
            entry_kind in prop_oneof![4 => Just(EntryKind::Market), 1 => Just(EntryKind::Limit), 1 => Just(EntryKind::Stop)],
            tick_value_cents in 50i64..300,
            coarse in any::<bool>(),
            volume_max in 1i64..100,
            stops_level in 0u32..60,
            equity in 100i64..1_000_000,
            peak_extra_pct in 0i64..30,
            day_extra_pct in -5i64..5,
            lot in prop_oneof![
                (1i64..500).prop_map(|c| LotMode::Fixed { lots: Decimal::new(c, 2) }),
                (1i64..300).prop_map(|c| LotMode::Multiplier { factor: Decimal::new(c, 2) }),
                (1i64..10, 100i64..10_000).prop_map(|(c, per)| LotMode::Proportional { lots: Decimal::new(c, 2), per_balance: Decimal::from(per) }),
                (1i64..300).prop_map(|c| LotMode::RiskPercent { percent: Decimal::new(c, 2) }),
            ],
            provider_cents in 1i64..1_000,
            lot_max in proptest::option::of((1i64..1_000).prop_map(|c| Decimal::new(c, 2))),
            reverse in any::<bool>(),
            halves in any::<bool>(),
            age_s in 0i64..90,
        ) -> Scenario {
            let mut s = base();
            let entry = base_pts;
            let (bid, ask) = (entry + offset, entry + offset + spread);
            s.quotes.insert("EURUSD.m".into(), Quote { bid: pts(bid), ask: pts(ask) });
            let dir = if sell { -1 } else { 1 };
            // A pending entry sits away from the market on its own side.
            let entry = match entry_kind {
                EntryKind::Market => entry,
                EntryKind::Limit => entry - dir * 100,
                EntryKind::Stop => entry + dir * 100,
            };
            s.signal.side = if sell { WireSide::Sell } else { WireSide::Buy };
            s.signal.entry_kind = entry_kind;
            s.signal.entry = pts(entry);
            s.signal.stop = pts(entry - dir * stop_pts);
            s.signal.tp1 = pts(entry + dir * tp_pts);
            s.signal.tp2 = Some(pts(entry + dir * (tp_pts + tp2_extra)));
            s.signal.bar_time_ms = NOW - H - age_s * 1_000 + 30_000;
            let spec = &mut s.specs[0];
            spec.tick_value_loss = Decimal::new(tick_value_cents, 2);
            if coarse {
                spec.volume_min = Decimal::new(1, 1);
                spec.volume_step = Decimal::new(1, 1);
            }
            spec.volume_max = Decimal::from(volume_max);
            spec.stops_level = stops_level;
            let equity = Decimal::from(equity);
            s.equity = equity;
            s.balance = equity;
            s.peak_equity = equity * (Decimal::ONE_HUNDRED + Decimal::from(peak_extra_pct)) / Decimal::ONE_HUNDRED;
            s.day_start = Some(DayStart {
                day_start_ms: risk::server_day_start_ms(NOW, 7_200),
                equity: equity * (Decimal::ONE_HUNDRED + Decimal::from(day_extra_pct)) / Decimal::ONE_HUNDRED,
            });
            s.settings.lot = lot;
            s.settings.lot_max = lot_max;
            s.settings.reverse = reverse;
            s.settings.split = if halves && !reverse { Split::Halves } else { Split::Whole };
            s.settings.min_rr = Decimal::new(5, 1);
            s.provider_lots = Some(Decimal::new(provider_cents, 2));
            s
        }
    }

    fn scenario() -> impl Strategy<Value = Scenario> {
        prop_oneof![realistic_scenario(), wild_scenario()]
    }

    #[test]
    fn realistic_scenarios_are_mostly_accepted() {
        // The property below means something only if plans are built: count them.
        use proptest::strategy::ValueTree;
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
        );
        let strategy = realistic_scenario();
        let n = 1_000;
        let accepted = (0..n)
            .filter(|_| {
                let s = strategy.new_tree(&mut runner).expect("a scenario").current();
                matches!(s.run().outcome, Outcome::Accept(_))
            })
            .count();
        assert!(accepted * 4 >= n, "only {accepted} of {n} accepted");
    }

    proptest! {
        // Failures print their minimal input; no regression file is written into the tree.
        #![proptest_config(ProptestConfig {
            cases: 2_000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn evaluation_never_panics_and_plans_keep_the_rules(s in scenario()) {
            let e = s.run();
            let (last, earlier) = e.steps.split_last().expect("a step");
            prop_assert!(earlier.iter().all(|st| st.passed));
            match &e.outcome {
                Outcome::Skip(reason) => {
                    prop_assert!(!last.passed);
                    prop_assert!(reason.to_string().starts_with("skipped: "));
                }
                Outcome::Accept(plan) => {
                    let spec = &s.specs[0];
                    prop_assert!(last.passed);
                    prop_assert!(plan.volume >= spec.volume_min && plan.volume <= spec.volume_max);
                    prop_assert_eq!(plan.legs.iter().map(|l| l.volume).sum::<Decimal>(), plan.volume);
                    for leg in &plan.legs {
                        prop_assert!(leg.volume >= spec.volume_min);
                        prop_assert!((leg.volume / spec.volume_step).fract().is_zero());
                    }
                    let cap = s.equity * s.settings.max_risk_pct / Decimal::ONE_HUNDRED;
                    prop_assert!(plan.risk_money <= cap, "{} > {}", plan.risk_money, cap);
                    if let Some(max) = s.settings.lot_max {
                        prop_assert!(plan.volume <= max);
                    }
                    prop_assert!(s.now_ms < s.signal.expires_at_ms);
                }
            }
        }

        #[test]
        fn following_never_panics_and_never_closes_more_than_the_copy(
            fraction in decimal(),
            volume in decimal(),
            min in decimal(),
            step in decimal(),
            tick in decimal(),
            stop in proptest::option::of(decimal()),
        ) {
            let settings = PolicySettings::default();
            let copy = follow::CopiedPosition {
                side: Side::Buy,
                reversed: false,
                target: follow::Target::Tp1,
                volume,
                sl: None,
                tp: None,
            };
            let rules = follow::VolumeRules { tick_size: tick, volume_min: min, volume_step: step };
            let close = tradecast_protocol::Close {
                signal_id: SignalId([1; 16]),
                fraction,
                price: None,
                reason: String::new(),
                at_ms: 0,
            };
            if let follow::FollowAction::Close { volume: Some(part) } =
                follow::follow_close(&settings, &close, &copy, &rules)
            {
                prop_assert!(part <= volume && part >= min);
            }
            let modify = tradecast_protocol::Modify {
                signal_id: SignalId([1; 16]),
                stop,
                tp1: None,
                tp2: None,
                reason: String::new(),
                at_ms: 0,
            };
            let _ = follow::follow_modify(&settings, &modify, &copy, &rules);
        }

        #[test]
        fn approvals_decide_once_and_never_approve_after_expiry(
            decisions in proptest::collection::vec((any::<bool>(), any::<bool>(), -H..H), 1..6),
            remote_on in any::<bool>(),
            auto in any::<bool>(),
        ) {
            let settings = approval::ApprovalSettings {
                mode: if auto { approval::ApprovalMode::Auto } else { approval::ApprovalMode::Manual },
                remote_approval: remote_on,
                consent_version: 1,
            };
            let e = base().run();
            let expires = NOW + H;
            let mut p = approval::PendingApproval::start(SignalId([9; 16]), signal().provider, expires, &e, &settings, NOW);
            let mut first: Option<tradecast_protocol::Approval> = p.decided().cloned();
            for (approve, remote, dt) in decisions {
                let at = expires + dt;
                let by = if remote {
                    approval::Decider::Remote { user: "bob".into(), via: "telegram".into() }
                } else {
                    approval::Decider::Trader { user: "bob".into(), channel: approval::Channel::Ui }
                };
                let verdict = if approve { approval::Verdict::Approve } else { approval::Verdict::Reject };
                let req = approval::DecisionRequest { verdict, by, reason: String::new() };
                let result = p.decide(&req, &e.outcome, &settings, at).cloned();
                if let Ok(a) = &result {
                    prop_assert!(first.is_none(), "decided twice");
                    prop_assert!(at < expires);
                    prop_assert!(!remote || remote_on);
                    first = Some(a.clone());
                }
                if first.is_none() {
                    first = p.decided().cloned();
                }
                prop_assert_eq!(p.decided(), first.as_ref());
                if let Some(a) = &first {
                    prop_assert!(a.decision != tradecast_protocol::Decision::Approved || a.decided_at_ms < expires);
                }
            }
        }
    }
}
