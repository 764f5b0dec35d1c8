//! Unit tests of the broker's rules, each with the retcode a real MT5 server answers.

use std::str::FromStr;

use super::*;

/// Monday 2017-04-24 10:00 UTC.
const MONDAY_10: i64 = 1_493_028_000_000;
const HOUR: i64 = 3_600_000;
const HEDGING: u64 = 1001;
const NETTING: u64 = 1002;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("test decimal")
}

fn broker_with(cfg: BrokerConfig) -> Broker {
    let mut b = Broker::new(cfg);
    b.add_symbol(SymbolConfig {
        commission_per_lot: d("7"),
        swap_long_per_lot: d("-5"),
        swap_short_per_lot: d("2"),
        ..SymbolConfig::forex("EURUSD", 5)
    });
    b.add_symbol(SymbolConfig::forex("USDJPY", 3));
    for (login, mode) in [(HEDGING, MarginMode::Hedging), (NETTING, MarginMode::Netting)] {
        b.open_account(AccountConfig {
            login,
            currency: "USD".into(),
            leverage: 100,
            margin_mode: mode,
            balance: d("10000"),
        })
        .expect("fresh login");
    }
    b.set_quote("EURUSD", d("1.07200"), d("1.07210"), MONDAY_10).expect("symbol");
    b.set_quote("USDJPY", d("110.000"), d("110.010"), MONDAY_10).expect("symbol");
    b
}

fn broker() -> Broker {
    broker_with(BrokerConfig::default())
}

fn buy(volume: &str) -> TradeRequest {
    TradeRequest::market("EURUSD", OrderKind::Buy, d(volume))
}

fn sell(volume: &str) -> TradeRequest {
    TradeRequest::market("EURUSD", OrderKind::Sell, d(volume))
}

fn bar(t: i64, o: &str, h: &str, l: &str, c: &str) -> Bar {
    Bar { time_unix_ms: t, open: d(o), high: d(h), low: d(l), close: d(c) }
}

/// One request, one expected retcode.
fn check(b: &mut Broker, login: u64, req: TradeRequest, expect: u32) -> TradeResult {
    let r = b.send(login, &req);
    assert_eq!(r.retcode, expect, "{req:?} → {r:?}");
    r
}

#[test]
fn market_orders_fill_at_ask_and_bid_with_slippage() {
    let mut b = broker_with(BrokerConfig { slippage_points: 2, ..BrokerConfig::default() });
    let r = check(&mut b, HEDGING, buy("0.10"), retcode::DONE);
    assert_eq!(r.price, d("1.07212"));
    assert_eq!(r.volume, d("0.10"));
    assert_eq!(r.position_id, r.order);
    assert_ne!(r.deal, 0);
    let r = check(&mut b, HEDGING, sell("0.10"), retcode::DONE);
    assert_eq!(r.price, d("1.07198"));
    let deals = b.deals(HEDGING, 0, i64::MAX).expect("account");
    assert_eq!(deals.len(), 2);
    assert!(deals.iter().all(|d| d.entry == DealEntry::In && d.reason == DealReason::Expert));
    assert_eq!(b.positions(HEDGING).expect("account").len(), 2);
}

#[test]
fn volume_limits_answer_10014() {
    let mut b = broker();
    for v in ["0.001", "0.015", "100.01", "0", "-0.1"] {
        check(&mut b, HEDGING, buy(v), retcode::INVALID_VOLUME);
    }
    check(&mut b, HEDGING, buy("0.01"), retcode::DONE);
    check(&mut b, HEDGING, buy("0.37"), retcode::DONE);
}

#[test]
fn stops_level_and_grid_answer_10016() {
    let mut b = broker();
    let with = |sl: Option<&str>, tp: Option<&str>| TradeRequest {
        sl: sl.map(d),
        tp: tp.map(d),
        ..buy("0.10")
    };
    // Bid 1.07200, stops level 10 points = 0.00010.
    check(&mut b, HEDGING, with(Some("1.07300"), None), retcode::INVALID_STOPS); // SL above bid
    check(&mut b, HEDGING, with(Some("1.07195"), None), retcode::INVALID_STOPS); // 5 points
    check(&mut b, HEDGING, with(Some("1.071905"), None), retcode::INVALID_STOPS); // off grid
    check(&mut b, HEDGING, with(None, Some("1.07205")), retcode::INVALID_STOPS); // TP too close
    check(&mut b, HEDGING, with(None, Some("1.07100")), retcode::INVALID_STOPS); // TP below
    check(&mut b, HEDGING, with(Some("1.07190"), Some("1.07210")), retcode::DONE); // exactly 10
    // A sell's stops are measured from the ask (1.07210).
    let s = TradeRequest { sl: Some(d("1.07215")), ..sell("0.10") };
    check(&mut b, HEDGING, s, retcode::INVALID_STOPS);
    let s = TradeRequest { sl: Some(d("1.07220")), tp: Some(d("1.07000")), ..sell("0.10") };
    check(&mut b, HEDGING, s, retcode::DONE);
}

#[test]
fn outside_sessions_answers_10018_even_for_a_close() {
    let mut b = broker();
    let r = check(&mut b, HEDGING, buy("0.10"), retcode::DONE);
    // Saturday 2017-04-29 12:00 UTC.
    b.set_quote("EURUSD", d("1.07200"), d("1.07210"), MONDAY_10 + 5 * 24 * HOUR + 2 * HOUR)
        .expect("symbol");
    check(&mut b, HEDGING, buy("0.10"), retcode::MARKET_CLOSED);
    let close = TradeRequest { position: Some(r.position_id), ..sell("0.10") };
    check(&mut b, HEDGING, close.clone(), retcode::MARKET_CLOSED);
    assert_eq!(b.positions(HEDGING).expect("account").len(), 1);
    // Sunday 22:00 UTC the week opens again and the same close goes through.
    b.set_quote("EURUSD", d("1.07200"), d("1.07210"), MONDAY_10 + 6 * 24 * HOUR + 12 * HOUR)
        .expect("symbol");
    check(&mut b, HEDGING, close, retcode::DONE);
}

#[test]
fn trade_modes_answer_their_retcodes() {
    let mut b = broker();
    let r = check(&mut b, HEDGING, buy("0.10"), retcode::DONE);
    let set_mode = |b: &mut Broker, mode| {
        let cfg = SymbolConfig { trade_mode: mode, ..b.symbol("EURUSD").expect("symbol").clone() };
        b.add_symbol(cfg);
    };
    set_mode(&mut b, TradeMode::Disabled);
    check(&mut b, HEDGING, buy("0.10"), retcode::TRADE_DISABLED);
    set_mode(&mut b, TradeMode::LongOnly);
    check(&mut b, HEDGING, sell("0.10"), retcode::LONG_ONLY);
    set_mode(&mut b, TradeMode::ShortOnly);
    check(&mut b, HEDGING, buy("0.10"), retcode::SHORT_ONLY);
    set_mode(&mut b, TradeMode::CloseOnly);
    check(&mut b, HEDGING, buy("0.10"), retcode::CLOSE_ONLY);
    let close = TradeRequest { position: Some(r.position_id), ..sell("0.10") };
    check(&mut b, HEDGING, close, retcode::DONE);
}

#[test]
fn margin_beyond_free_margin_answers_10019() {
    let mut b = broker();
    // 1 lot EURUSD at 1:100 needs 100,000 × 1.07210 / 100 = 1072.10 USD.
    let info = b.account_info(HEDGING).expect("account");
    assert_eq!(info.free_margin, d("10000"));
    check(&mut b, HEDGING, buy("9.00"), retcode::DONE);
    let info = b.account_info(HEDGING).expect("account");
    // The spread costs 10 points × 1 USD × 9 lots at once, the commission 7 USD × 9 lots.
    assert_eq!((info.margin, info.equity), (d("9648.90"), d("9847.00")));
    assert_eq!(info.free_margin, d("198.10"));
    check(&mut b, HEDGING, buy("0.20"), retcode::NO_MONEY); // needs 214.42
    check(&mut b, HEDGING, buy("0.18"), retcode::DONE); // needs 192.98
}

#[test]
fn instant_execution_requotes_with_10004() {
    let mut b =
        broker_with(BrokerConfig { execution: Execution::Instant, ..BrokerConfig::default() });
    let at = |price: &str, dev: u32| TradeRequest {
        price: Some(d(price)),
        deviation_points: dev,
        ..buy("0.10")
    };
    let r = check(&mut b, HEDGING, at("1.07190", 10), retcode::REQUOTE);
    assert_eq!((r.bid, r.ask), (d("1.07200"), d("1.07210")));
    check(&mut b, HEDGING, at("1.07190", 20), retcode::DONE);
    check(&mut b, HEDGING, at("1.07210", 0), retcode::DONE);
    // Market execution ignores the deviation.
    let mut m = broker();
    check(&mut m, HEDGING, at("1.07000", 0), retcode::DONE);
}

#[test]
fn freeze_level_answers_10029() {
    let mut b = broker();
    let r = check(
        &mut b,
        HEDGING,
        TradeRequest { sl: Some(d("1.07180")), ..buy("0.10") },
        retcode::DONE,
    );
    // Bid falls to 1.07184: the SL is 4 points away, inside the freeze level of 5.
    b.set_quote("EURUSD", d("1.07184"), d("1.07194"), MONDAY_10 + 1_000).expect("symbol");
    let modify = TradeRequest {
        action: TradeAction::Sltp,
        position: Some(r.position_id),
        sl: Some(d("1.07100")),
        ..buy("0.10")
    };
    check(&mut b, HEDGING, modify.clone(), retcode::FROZEN);
    let close = TradeRequest { position: Some(r.position_id), ..sell("0.10") };
    check(&mut b, HEDGING, close, retcode::FROZEN);
    b.set_quote("EURUSD", d("1.07200"), d("1.07210"), MONDAY_10 + 2_000).expect("symbol");
    check(&mut b, HEDGING, modify.clone(), retcode::DONE);
    check(&mut b, HEDGING, modify, retcode::NO_CHANGES);
}

#[test]
fn pending_orders_prices_expiry_and_trigger() {
    let mut b = broker();
    let pending = |kind, price: &str| TradeRequest {
        action: TradeAction::Pending,
        kind,
        price: Some(d(price)),
        ..buy("0.10")
    };
    check(&mut b, HEDGING, pending(OrderKind::BuyLimit, "1.07300"), retcode::INVALID_PRICE);
    check(&mut b, HEDGING, pending(OrderKind::BuyLimit, "1.07205"), retcode::INVALID_PRICE);
    check(&mut b, HEDGING, pending(OrderKind::SellStop, "1.07300"), retcode::INVALID_PRICE);
    check(&mut b, HEDGING, pending(OrderKind::BuyStop, "1.073001"), retcode::INVALID_PRICE);
    check(&mut b, HEDGING, pending(OrderKind::Buy, "1.07000"), retcode::INVALID);
    let bad_sl = TradeRequest { sl: Some(d("1.06995")), ..pending(OrderKind::BuyLimit, "1.07000") };
    check(&mut b, HEDGING, bad_sl, retcode::INVALID_STOPS);
    let past = TradeRequest {
        type_time: TypeTime::Specified,
        expiration_ms: Some(MONDAY_10),
        ..pending(OrderKind::BuyLimit, "1.07000")
    };
    check(&mut b, HEDGING, past, retcode::INVALID_EXPIRATION);
    let limit = TradeRequest {
        sl: Some(d("1.06900")),
        magic: 77,
        comment: "tc:ABCDEFGHJKMN".into(),
        ..pending(OrderKind::BuyLimit, "1.07000")
    };
    let placed = check(&mut b, HEDGING, limit, retcode::PLACED);
    let expiring = TradeRequest {
        type_time: TypeTime::Specified,
        expiration_ms: Some(MONDAY_10 + 2 * HOUR),
        ..pending(OrderKind::SellLimit, "1.08000")
    };
    let exp = check(&mut b, HEDGING, expiring, retcode::PLACED);
    assert_eq!(b.orders(HEDGING).expect("account").len(), 2);
    // The next bar's ask low (bid low 1.06985 + 1 point of spread) reaches the limit.
    let events = b
        .on_bar("EURUSD", &bar(MONDAY_10, "1.07200", "1.07220", "1.06985", "1.07010"), 1, 3_600)
        .expect("bar");
    let deal = events
        .iter()
        .find_map(|e| match e {
            BrokerEvent::Deal { deal, .. } => Some(deal.clone()),
            BrokerEvent::OrderRemoved { .. } => None,
        })
        .expect("the limit filled");
    assert_eq!((deal.order_ticket, deal.price, deal.magic), (placed.order, d("1.07000"), 77));
    assert_eq!(deal.comment, "tc:ABCDEFGHJKMN");
    let pos = b.positions(HEDGING).expect("account");
    assert_eq!((pos.len(), pos[0].position_id, pos[0].sl), (1, placed.order, Some(d("1.06900"))));
    // The next bar starts at the expiry: the sell limit goes without a deal.
    let events = b
        .on_bar(
            "EURUSD",
            &bar(MONDAY_10 + HOUR, "1.07010", "1.07050", "1.07000", "1.07020"),
            1,
            3_600,
        )
        .expect("bar");
    assert_eq!(
        events,
        vec![BrokerEvent::OrderRemoved { login: HEDGING, order_ticket: exp.order, retcode: 0 }]
    );
    assert!(b.orders(HEDGING).expect("account").is_empty());
}

#[test]
fn sl_and_tp_follow_the_shared_intrabar_rule() {
    let mut b = broker();
    let long = TradeRequest { sl: Some(d("1.07100")), tp: Some(d("1.07300")), ..buy("0.10") };
    let r = check(&mut b, HEDGING, long, retcode::DONE);
    // A bar touching both the stop and the target: the stop wins.
    let events = b
        .on_bar("EURUSD", &bar(MONDAY_10, "1.07200", "1.07350", "1.07050", "1.07200"), 10, 3_600)
        .expect("bar");
    let [BrokerEvent::Deal { deal, .. }] = events.as_slice() else {
        panic!("expected one deal, got {events:?}");
    };
    assert_eq!(
        (deal.reason, deal.price, deal.entry),
        (DealReason::Sl, d("1.07100"), DealEntry::Out)
    );
    assert_eq!(deal.position_id, r.position_id);
    // (1.07100 − 1.07212... entry was the ask 1.07210) → −11 pips × 0.1 lot = −11.00 USD.
    assert_eq!(deal.profit, d("-11.00"));
    assert!(b.positions(HEDGING).expect("account").is_empty());
}

#[test]
fn a_gap_through_the_stop_fills_at_the_open_and_a_sell_uses_the_ask() {
    let mut b = broker();
    let short = TradeRequest { sl: Some(d("1.07300")), tp: Some(d("1.07000")), ..sell("0.10") };
    check(&mut b, HEDGING, short, retcode::DONE);
    // Bid high 1.07295 + spread 10 points = ask high 1.07305 ≥ SL: hit, although the bid never was.
    let events = b
        .on_bar("EURUSD", &bar(MONDAY_10, "1.07200", "1.07295", "1.07150", "1.07250"), 10, 3_600)
        .expect("bar");
    let [BrokerEvent::Deal { deal, .. }] = events.as_slice() else {
        panic!("expected one deal, got {events:?}");
    };
    assert_eq!((deal.reason, deal.price), (DealReason::Sl, d("1.07300")));
    let long = TradeRequest { sl: Some(d("1.07100")), ..buy("0.10") };
    check(&mut b, HEDGING, long, retcode::DONE);
    // The next bar opens below the stop: filled at the open.
    let events = b
        .on_bar(
            "EURUSD",
            &bar(MONDAY_10 + HOUR, "1.07000", "1.07050", "1.06950", "1.07000"),
            10,
            3_600,
        )
        .expect("bar");
    let [BrokerEvent::Deal { deal, .. }] = events.as_slice() else {
        panic!("expected one deal, got {events:?}");
    };
    assert_eq!((deal.reason, deal.price), (DealReason::Sl, d("1.07000")));
}

#[test]
fn commission_and_swap_with_a_triple_wednesday() {
    let mut b = broker_with(BrokerConfig { server_utc_offset_s: 0, ..BrokerConfig::default() });
    let r = check(&mut b, HEDGING, buy("0.10"), retcode::DONE);
    let open = b.deals(HEDGING, 0, i64::MAX).expect("account");
    assert_eq!(open[0].commission, d("-0.70"));
    // Rollovers: Mon→Tue (−0.50), Tue→Wed (−0.50), Wed→Thu (×3: −1.50).
    for day in 1..=3 {
        b.set_quote("EURUSD", d("1.07210"), d("1.07220"), MONDAY_10 + day * 24 * HOUR)
            .expect("symbol");
    }
    let pos = b.positions(HEDGING).expect("account");
    assert_eq!(pos[0].swap, d("-2.50"));
    let close = TradeRequest { position: Some(r.position_id), ..sell("0.10") };
    check(&mut b, HEDGING, close, retcode::DONE);
    let deals = b.deals(HEDGING, 0, i64::MAX).expect("account");
    let out = deals.last().expect("closing deal");
    assert_eq!((out.swap, out.commission, out.profit), (d("-2.50"), d("-0.70"), d("0.00")));
    assert_eq!(b.account_info(HEDGING).expect("account").balance, d("9996.10"));
}

#[test]
fn netting_merges_reduces_and_reverses_one_position() {
    let mut b = broker();
    let first = check(&mut b, NETTING, buy("0.10"), retcode::DONE);
    b.set_quote("EURUSD", d("1.07300"), d("1.07310"), MONDAY_10 + 1_000).expect("symbol");
    let second = check(&mut b, NETTING, buy("0.10"), retcode::DONE);
    assert_eq!(second.position_id, first.position_id);
    let pos = b.positions(NETTING).expect("account");
    assert_eq!((pos.len(), pos[0].volume, pos[0].open_price), (1, d("0.20"), d("1.0726")));
    let part = check(&mut b, NETTING, sell("0.05"), retcode::DONE);
    assert_eq!(part.position_id, first.position_id);
    let rev = check(&mut b, NETTING, sell("0.25"), retcode::DONE);
    assert_eq!(rev.position_id, first.position_id);
    let pos = b.positions(NETTING).expect("account");
    assert_eq!((pos[0].side, pos[0].volume), (Side::Sell, d("0.10")));
    let entries: Vec<_> =
        b.deals(NETTING, 0, i64::MAX).expect("account").iter().map(|d| d.entry).collect();
    assert_eq!(entries, [DealEntry::In, DealEntry::In, DealEntry::Out, DealEntry::Inout]);
}

#[test]
fn hedging_keeps_positions_apart_and_checks_closes() {
    let mut b = broker();
    let a = check(&mut b, HEDGING, buy("0.10"), retcode::DONE);
    let c = check(&mut b, HEDGING, buy("0.20"), retcode::DONE);
    assert_ne!(a.position_id, c.position_id);
    let too_much = TradeRequest { position: Some(a.position_id), ..sell("0.20") };
    check(&mut b, HEDGING, too_much, retcode::INVALID_CLOSE_VOLUME);
    let same_side = TradeRequest { position: Some(a.position_id), ..buy("0.10") };
    check(&mut b, HEDGING, same_side, retcode::INVALID);
    let close = TradeRequest { position: Some(a.position_id), ..sell("0.10") };
    check(&mut b, HEDGING, close.clone(), retcode::DONE);
    check(&mut b, HEDGING, close, retcode::POSITION_CLOSED);
    let pos = b.positions(HEDGING).expect("account");
    assert_eq!((pos.len(), pos[0].position_id), (1, c.position_id));
}

#[test]
fn tick_value_moves_with_price_on_a_cross() {
    let mut b = broker();
    let (eur_p, eur_l) = b.tick_values("EURUSD", "USD").expect("tv");
    assert_eq!((eur_p, eur_l), (d("1.00000"), d("1.00000")));
    let (p110, l110) = b.tick_values("USDJPY", "USD").expect("tv");
    b.set_quote("USDJPY", d("120.000"), d("120.010"), MONDAY_10 + 1_000).expect("symbol");
    let (p120, _) = b.tick_values("USDJPY", "USD").expect("tv");
    // 0.001 × 100,000 JPY = 100 JPY per tick per lot ≈ 0.909 USD at 110, 0.833 at 120.
    assert_eq!(p110.round_dp(5), d("0.90901"));
    assert_eq!(l110.round_dp(5), d("0.90909"));
    assert_eq!(p120.round_dp(5), d("0.83326"));
    let spec = b.symbol_spec("USDJPY", "USD").expect("spec");
    assert_eq!(spec.tick_value_profit, p120.round_dp(8).normalize());
    // Profit of a USDJPY long in USD: 1 lot, +100 points, the profit tick value at 1/ask:
    // 100 × 100 JPY / 120.120 = 83.25 USD.
    let r = check(
        &mut b,
        HEDGING,
        TradeRequest::market("USDJPY", OrderKind::Buy, d("1")),
        retcode::DONE,
    );
    b.set_quote("USDJPY", d("120.110"), d("120.120"), MONDAY_10 + 2_000).expect("symbol");
    let pos = b.positions(HEDGING).expect("account");
    assert_eq!((pos[0].position_id, pos[0].profit), (r.position_id, d("83.25")));
}

#[test]
fn several_accounts_share_one_price_stream() {
    let mut b = broker();
    let long = TradeRequest { sl: Some(d("1.07100")), ..buy("0.10") };
    check(&mut b, HEDGING, long.clone(), retcode::DONE);
    check(&mut b, NETTING, long, retcode::DONE);
    let events = b
        .on_bar("EURUSD", &bar(MONDAY_10, "1.07200", "1.07210", "1.07000", "1.07050"), 10, 3_600)
        .expect("bar");
    let logins: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            BrokerEvent::Deal { login, .. } => Some(*login),
            BrokerEvent::OrderRemoved { .. } => None,
        })
        .collect();
    assert_eq!(logins, [HEDGING, NETTING]);
    assert_eq!(b.quote("EURUSD").expect("quote").bid, d("1.07050"));
    assert_eq!(b.time_ms(), MONDAY_10 + HOUR);
    assert_eq!(
        b.on_bar("EURUSD", &bar(MONDAY_10, "1", "1", "1", "1"), 10, 3_600),
        Err(BrokerError::BarOutOfOrder(MONDAY_10))
    );
}

#[test]
fn partial_fill_answers_10010() {
    let mut b = broker();
    let r = b.send_partial(HEDGING, &buy("1.00"), d("0.337"));
    assert_eq!((r.retcode, r.volume), (retcode::DONE_PARTIAL, d("0.33")));
    let r = b.send_partial(HEDGING, &buy("1.00"), d("0.001"));
    assert_eq!(r.retcode, retcode::REJECT);
    let r = b.send_partial(HEDGING, &buy("0.10"), d("5"));
    assert_eq!((r.retcode, r.volume), (retcode::DONE, d("0.10")));
}

#[test]
fn unknown_symbol_account_and_missing_quotes() {
    let mut b = broker();
    check(
        &mut b,
        HEDGING,
        TradeRequest::market("XAUUSD", OrderKind::Buy, d("1")),
        retcode::INVALID,
    );
    check(&mut b, 9_999, buy("0.10"), retcode::INVALID);
    b.add_symbol(SymbolConfig::forex("GBPUSD", 5));
    check(
        &mut b,
        HEDGING,
        TradeRequest::market("GBPUSD", OrderKind::Buy, d("1")),
        retcode::PRICE_OFF,
    );
    assert_eq!(b.account_info(9_999), Err(BrokerError::NoAccount(9_999)));
    assert!(
        b.open_account(AccountConfig {
            login: HEDGING,
            currency: "USD".into(),
            leverage: 1,
            margin_mode: MarginMode::Hedging,
            balance: d("1"),
        })
        .is_err()
    );
}

#[test]
fn bars_aggregate_to_longer_timeframes_once_closed() {
    let mut b = broker();
    // Monday 2017-04-24 08:00 .. 15:00 UTC, eight H1 bars.
    let start = MONDAY_10 - 2 * HOUR;
    for i in 0..8 {
        let o = format!("1.07{}00", i);
        let h = format!("1.07{}90", i);
        let l = format!("1.07{}10", i);
        let c = format!("1.07{}50", i);
        b.on_bar("EURUSD", &bar(start + i * HOUR, &o, &h, &l, &c), 10, 3_600).expect("bar");
    }
    let h1 = b.bars("EURUSD", Timeframe::H1, start, i64::MAX).expect("H1");
    assert_eq!(h1.len(), 8);
    let h4 = b.bars("EURUSD", Timeframe::H4, 0, i64::MAX).expect("H4");
    assert_eq!(h4.len(), 2);
    assert_eq!(h4[0], bar(start, "1.07000", "1.07390", "1.07010", "1.07350"));
    assert_eq!(h4[1].time_unix_ms, start + 4 * HOUR);
    // The D1 bar of that server day is not closed yet.
    assert_eq!(b.bars("EURUSD", Timeframe::D1, 0, i64::MAX), Some(Vec::new()));
    assert_eq!(b.bars("EURUSD", Timeframe::M30, 0, i64::MAX), None);
}

#[test]
fn balance_operations_are_balance_deals() {
    let mut b = broker();
    let deal = b.balance_operation(HEDGING, d("-500")).expect("account");
    assert_eq!((deal.kind, deal.profit), (DealKind::Balance, d("-500")));
    assert_eq!(b.account_info(HEDGING).expect("account").balance, d("9500"));
}

#[test]
fn stop_out_closes_the_most_losing_position_below_the_level() {
    let mut b = broker();
    b.open_account(AccountConfig {
        login: 1003,
        currency: "USD".into(),
        leverage: 100,
        margin_mode: MarginMode::Hedging,
        balance: d("1000"),
    })
    .expect("fresh login");
    // 0.90 lot: margin 964.89 USD; the spread costs 9 USD and the commission 6.30 USD.
    check(&mut b, 1003, buy("0.50"), retcode::DONE);
    check(&mut b, 1003, buy("0.40"), retcode::DONE);
    // 50 points down: equity 534.70, margin level 55 %: nothing happens.
    b.set_quote("EURUSD", d("1.06700"), d("1.06710"), MONDAY_10 + 1_000).expect("quote");
    assert_eq!(b.positions(1003).expect("account").len(), 2);
    // 60 points down: equity 444.70, level 46 % < 50 %: the bigger loser (0.50 lot) goes.
    let events = b
        .on_bar(
            "EURUSD",
            &bar(MONDAY_10 + HOUR, "1.06700", "1.06700", "1.06600", "1.06600"),
            10,
            3_600,
        )
        .expect("bar");
    let closed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            BrokerEvent::Deal { login: 1003, deal } => Some(deal.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 1, "{events:?}");
    assert_eq!((closed[0].reason, closed[0].volume), (DealReason::StopOut, d("0.50")));
    let info = b.account_info(1003).expect("account");
    assert!(info.equity * Decimal::from(100) >= d("50") * info.margin, "{info:?}");
    // The other accounts had no positions and are untouched.
    assert!(b.positions(HEDGING).expect("account").is_empty());
}

#[test]
fn bar_queries_with_hostile_cursors_do_not_panic() {
    let mut b = broker();
    b.on_bar("EURUSD", &bar(MONDAY_10, "1.07200", "1.07300", "1.07100", "1.07250"), 10, 3_600)
        .expect("bar");
    for tf in Timeframe::ALL {
        for (from, to) in
            [(i64::MIN, i64::MAX), (i64::MAX, i64::MIN), (i64::MIN, i64::MIN), (i64::MAX, i64::MAX)]
        {
            let _ = b.bars("EURUSD", tf, from, to);
        }
    }
    assert_eq!(b.bars("EURUSD", Timeframe::H1, i64::MIN, i64::MAX).map(|v| v.len()), Some(1));
    assert_eq!(b.bars("EURUSD", Timeframe::H1, i64::MAX, i64::MIN), Some(Vec::new()));
}

#[test]
fn a_position_named_by_its_old_ticket_answers_10036() {
    let cfg = BrokerConfig {
        new_ticket_on_reversal: true,
        reopen_on_rollover: true,
        ..BrokerConfig::default()
    };
    let mut b = broker_with(cfg);
    let id = check(&mut b, NETTING, buy("0.10"), retcode::DONE).position_id;
    assert_eq!(b.position_ticket(NETTING, id), Some(id));
    // A netting reversal: the identifier stays, the ticket is the reversing order's.
    let rev = check(&mut b, NETTING, sell("0.30"), retcode::DONE);
    assert_eq!(rev.position_id, id);
    assert_eq!(b.position_ticket(NETTING, id), Some(rev.order));
    let by_id = TradeRequest { position: Some(id), ..buy("0.20") };
    check(&mut b, NETTING, by_id, retcode::POSITION_CLOSED);
    // A rollover that re-opens: a new ticket again.
    b.set_quote("EURUSD", d("1.07200"), d("1.07210"), MONDAY_10 + 24 * HOUR).expect("symbol");
    let ticket = b.position_ticket(NETTING, id).expect("open");
    assert_ne!(ticket, rev.order);
    let by_old = TradeRequest { position: Some(rev.order), sl: Some(d("1.08000")), ..buy("0.20") };
    check(
        &mut b,
        NETTING,
        TradeRequest { action: TradeAction::Sltp, ..by_old },
        retcode::POSITION_CLOSED,
    );
    check(&mut b, NETTING, TradeRequest { position: Some(ticket), ..buy("0.20") }, retcode::DONE);
    assert!(b.positions(NETTING).expect("account").is_empty());
    // Off (the default): the ticket is the identifier for life.
    let mut b = broker();
    let id = check(&mut b, NETTING, buy("0.10"), retcode::DONE).position_id;
    check(&mut b, NETTING, sell("0.30"), retcode::DONE);
    assert_eq!(b.position_ticket(NETTING, id), Some(id));
}

#[test]
fn a_filling_the_execution_mode_does_not_allow_answers_10030() {
    use Execution::{Exchange, Instant, Market, Request};
    use Filling::{Fok, Ioc, Return};
    const BOTH: u32 = SYMBOL_FILLING_FOK | SYMBOL_FILLING_IOC;
    // (execution, flags, kind, filling, allowed)
    let cases = [
        (Instant, 0, OrderKind::Buy, Fok, true),
        (Instant, 0, OrderKind::Buy, Return, false),
        (Request, 0, OrderKind::Sell, Return, false),
        (Instant, SYMBOL_FILLING_IOC, OrderKind::Buy, Ioc, true),
        (Market, BOTH, OrderKind::Buy, Return, false),
        (Market, SYMBOL_FILLING_IOC, OrderKind::Buy, Fok, false),
        (Market, SYMBOL_FILLING_IOC, OrderKind::Buy, Ioc, true),
        (Market, 0, OrderKind::Buy, Return, true),
        (Market, BOTH, OrderKind::BuyStop, Return, false),
        (Market, BOTH, OrderKind::SellStop, Fok, true),
        (Instant, 0, OrderKind::BuyStop, Fok, true),
        (Market, BOTH, OrderKind::BuyLimit, Return, true),
        (Instant, 0, OrderKind::SellLimit, Fok, false),
        (Exchange, BOTH, OrderKind::Buy, Return, true),
    ];
    for (execution, modes, kind, filling, allowed) in cases {
        assert_eq!(
            filling_allowed(execution, modes, kind, filling),
            allowed,
            "{execution:?} {modes} {kind:?} {filling:?}"
        );
    }
    let mut b = broker_with(BrokerConfig {
        execution: Market,
        check_filling: true,
        ..BrokerConfig::default()
    });
    check(&mut b, HEDGING, TradeRequest { filling: Return, ..buy("0.10") }, retcode::INVALID_FILL);
    check(&mut b, HEDGING, TradeRequest { filling: Ioc, ..buy("0.10") }, retcode::DONE);
    let stop = TradeRequest {
        action: TradeAction::Pending,
        kind: OrderKind::BuyStop,
        price: Some(d("1.07500")),
        filling: Return,
        ..buy("0.10")
    };
    check(&mut b, HEDGING, stop.clone(), retcode::INVALID_FILL);
    check(&mut b, HEDGING, TradeRequest { filling: Fok, ..stop }, retcode::PLACED);
    // Off (the default): any filling goes.
    let mut b = broker();
    check(&mut b, HEDGING, TradeRequest { filling: Return, ..buy("0.10") }, retcode::DONE);
}

#[test]
fn a_dst_change_moves_the_server_offset_and_the_rollover() {
    let change = MONDAY_10 + 4 * HOUR;
    let mut b = broker_with(BrokerConfig {
        server_utc_offset_s: 7_200,
        dst_change: Some((change, 10_800)),
        ..BrokerConfig::default()
    });
    assert_eq!(b.server_utc_offset_at(change - 1), 7_200);
    assert_eq!(b.server_utc_offset_at(change), 10_800);
    // A long (swap -5 a lot) held across server midnight: 21:00 UTC is midnight at UTC+3.
    check(&mut b, HEDGING, buy("1.00"), retcode::DONE);
    let at = |h: i64| MONDAY_10 - 10 * HOUR + h * HOUR; // Monday 00:00 UTC + h hours
    b.set_quote("EURUSD", d("1.07200"), d("1.07210"), at(20) + HOUR / 2).expect("quote");
    assert_eq!(b.positions(HEDGING).expect("account")[0].swap, d("0"));
    b.set_quote("EURUSD", d("1.07200"), d("1.07210"), at(21) + HOUR / 2).expect("quote");
    assert_eq!(b.positions(HEDGING).expect("account")[0].swap, d("-5"));
}

#[test]
fn a_dealer_that_requotes_closes_answers_10004_then_fills() {
    let mut b = broker_with(BrokerConfig { requote_closes: 2, ..BrokerConfig::default() });
    let open = check(&mut b, HEDGING, buy("0.10"), retcode::DONE);
    let close = TradeRequest { position: Some(open.position_id), ..sell("0.10") };
    check(&mut b, HEDGING, close.clone(), retcode::REQUOTE);
    check(&mut b, HEDGING, close.clone(), retcode::REQUOTE);
    assert_eq!(b.positions(HEDGING).expect("account").len(), 1, "a requote closes nothing");
    check(&mut b, HEDGING, close, retcode::DONE);
    assert!(b.positions(HEDGING).expect("account").is_empty());
    // Opening is never requoted by this option.
    check(&mut b, HEDGING, buy("0.10"), retcode::DONE);
}

#[test]
fn a_lifetime_the_symbol_does_not_allow_answers_10022() {
    let mut b = broker_with(BrokerConfig { check_expiration: true, ..BrokerConfig::default() });
    b.add_symbol(SymbolConfig {
        expiration_modes: SYMBOL_EXPIRATION_GTC | SYMBOL_EXPIRATION_DAY,
        ..SymbolConfig::forex("EURUSD", 5)
    });
    let limit = |type_time, expiration_ms| TradeRequest {
        action: TradeAction::Pending,
        kind: OrderKind::BuyLimit,
        price: Some(d("1.07000")),
        type_time,
        expiration_ms,
        ..buy("0.10")
    };
    let later = Some(MONDAY_10 + 2 * HOUR);
    check(&mut b, HEDGING, limit(TypeTime::Specified, later), retcode::INVALID_EXPIRATION);
    check(&mut b, HEDGING, limit(TypeTime::SpecifiedDay, later), retcode::INVALID_EXPIRATION);
    let day = check(&mut b, HEDGING, limit(TypeTime::Day, None), retcode::PLACED);
    check(&mut b, HEDGING, limit(TypeTime::Gtc, None), retcode::PLACED);
    // DAY expires at the end of the server day (UTC+2: 22:00 UTC).
    let orders = b.orders(HEDGING).expect("account");
    let o = orders.iter().find(|o| o.order_ticket == day.order).expect("placed");
    assert_eq!(o.expiration_ms, Some(MONDAY_10 + 12 * HOUR));
}
