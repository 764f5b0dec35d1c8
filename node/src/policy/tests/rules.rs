//! The evaluation rule by rule: settings and symbols, trade modes, market hours, expiry and
//! age, account risk, price moves, order sizing, lot modes, reversal and pending entries.

use super::*;

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
fn a_plan_without_auto_copy_keeps_auto_mode_waiting_for_the_trader() {
    use super::approval::{
        ApprovalMode, ApprovalSettings, ApprovalState, NO_AUTO_COPY, PendingApproval, PlanGate,
    };
    let auto =
        ApprovalSettings { mode: ApprovalMode::Auto, consent_version: 1, ..Default::default() };
    let start = |e: &Evaluation| PendingApproval::start(e_id(), s_device(), NOW + H, e, &auto, NOW);
    // A signal from the hub, no grant in force with `auto_copy`: accepted, but it waits.
    let mut s = base();
    s.plan = PlanGate::ManualOnly;
    let e = s.run();
    assert!(matches!(e.outcome, Outcome::Accept(_)));
    assert!(e.auto_suspended);
    assert_eq!(
        e.steps.iter().find(|st| st.rule == Rule::Copying).map(|st| st.detail.clone()),
        Some(format!("on; {}", NO_AUTO_COPY.to_lowercase()))
    );
    assert_eq!(start(&e).state, ApprovalState::Waiting);
    // With `auto_copy` granted, or for a local signal, auto mode approves by rule.
    for plan in [PlanGate::AutoCopy, PlanGate::NotApplicable] {
        let mut s = base();
        s.plan = plan;
        let e = s.run();
        assert!(!e.auto_suspended, "{plan:?}");
        assert!(start(&e).decided().is_some(), "{plan:?}");
    }
}

fn e_id() -> tradecast_protocol::SignalId {
    tradecast_protocol::SignalId([3; 16])
}

fn s_device() -> tradecast_protocol::DeviceId {
    signal().provider
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
