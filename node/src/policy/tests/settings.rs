//! Settings (defaults, TOML, validation), the copy-log lines a trader reads, plans as EA
//! orders, quotes from bars and copy-log entries from real evaluations.

use super::*;

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
