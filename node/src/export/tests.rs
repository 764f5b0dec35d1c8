//! The export in tables: deals paired into trades (one trade, partial closes, a reversal, a
//! position built in steps, open trades left out, costs of entry and exit summed, exits with no
//! entry counted), the balance before a close, the CSV's fields (pips, durations, dates in
//! server time, quoting and formula guards), the query's days, and snapshots of both files for a
//! small fixed history.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use tradecast_protocol::ea::{Deal, DealEntry, DealKind, DealReason};
use tradecast_protocol::{DeviceId, EquityPoint, Identity, SignalId};

use super::file::{DateRange, Format, QueryError};
use super::gain::{Balances, gain_pct};
use super::{Account, ClosedTrade, PositionFacts, json, myfxbook, pair};

/// Monday 2026-03-02 08:00 UTC.
const T0: i64 = 1_772_438_400_000;
const MIN: i64 = 60_000;

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal literal")
}

use DealEntry::{In, Inout, Out, OutBy};
use DealKind::{Buy, Sell};

/// A trade deal at `T0 + minute` minutes, no costs.
fn deal(
    ticket: u64,
    position: u64,
    kind: DealKind,
    entry: DealEntry,
    lots: &str,
    price: &str,
    minute: i64,
) -> Deal {
    Deal {
        deal_ticket: ticket,
        order_ticket: ticket,
        position_id: position,
        symbol: "EURUSD".into(),
        kind,
        entry,
        reason: DealReason::Expert,
        volume: d(lots),
        price: d(price),
        commission: Decimal::ZERO,
        swap: Decimal::ZERO,
        profit: Decimal::ZERO,
        fee: Decimal::ZERO,
        magic: 0,
        comment: String::new(),
        time_ms: T0 + minute * MIN,
    }
}

/// The deal with its money: commission, swap, fee, profit.
fn money(mut x: Deal, commission: &str, swap: &str, fee: &str, profit: &str) -> Deal {
    x.commission = d(commission);
    x.swap = d(swap);
    x.fee = d(fee);
    x.profit = d(profit);
    x
}

fn on(mut x: Deal, symbol: &str) -> Deal {
    x.symbol = symbol.into();
    x
}

/// A trade in one line: `position side lots open→close c= s= f= p=`.
fn line(t: &ClosedTrade) -> String {
    format!(
        "{} {} {} {}→{} c={} s={} f={} p={}",
        t.position_id,
        t.side.as_str(),
        t.lots,
        t.open_price,
        t.close_price,
        t.commission,
        t.swap,
        t.fee,
        t.profit
    )
}

fn check(deals: Vec<Deal>, want: &[&str], want_left_out: usize) {
    let book = pair(&deals, &BTreeMap::new());
    let got: Vec<String> = book.trades.iter().map(line).collect();
    assert_eq!(got, want, "{deals:#?}");
    assert_eq!(book.n_left_out, want_left_out, "left out");
    // Every row reversed in input order pairs the same (the pairing sorts by time and ticket).
    let mut reversed = deals.clone();
    reversed.reverse();
    assert_eq!(pair(&reversed, &BTreeMap::new()), book, "order of the input");
}

#[test]
fn one_trade_sums_the_commission_of_entry_and_exit() {
    check(
        vec![
            money(deal(1, 5001, Buy, In, "0.10", "1.08500", 0), "-0.35", "0", "0", "0"),
            money(
                deal(2, 5001, Sell, Out, "0.10", "1.08750", 150),
                "-0.35",
                "-0.12",
                "-0.05",
                "25.00",
            ),
        ],
        &["5001 buy 0.10 1.08500→1.08750 c=-0.70 s=-0.12 f=-0.05 p=25.00"],
        0,
    );
}

#[test]
fn a_sell_and_a_close_by_an_opposite_position() {
    check(
        vec![
            deal(1, 7, Sell, In, "1.00", "1.10000", 0),
            deal(2, 8, Buy, In, "1.00", "1.09900", 1),
            money(deal(3, 7, Buy, OutBy, "1.00", "1.09950", 2), "0", "0", "0", "50.00"),
            money(deal(4, 8, Sell, OutBy, "1.00", "1.09950", 2), "0", "0", "0", "50.00"),
        ],
        &[
            "7 sell 1.00 1.10000→1.09950 c=0 s=0 f=0 p=50.00",
            "8 buy 1.00 1.09900→1.09950 c=0 s=0 f=0 p=50.00",
        ],
        0,
    );
}

#[test]
fn partial_closes_are_a_row_each_with_their_share_of_the_entry_costs() {
    // A third of -1.00 is -0.33 twice, and the last close carries the rest (-0.34): the rows
    // add up to the deals.
    check(
        vec![
            money(deal(1, 9, Buy, In, "0.30", "1.10000", 0), "-1.00", "0", "-0.10", "0"),
            money(deal(2, 9, Sell, Out, "0.10", "1.10100", 10), "-0.20", "0", "0", "10.00"),
            money(deal(3, 9, Sell, Out, "0.10", "1.10200", 20), "-0.20", "0", "0", "20.00"),
            money(deal(4, 9, Sell, Out, "0.10", "1.09900", 30), "-0.20", "-0.30", "0", "-10.00"),
        ],
        &[
            "9 buy 0.10 1.10000→1.10100 c=-0.53 s=0 f=-0.03 p=10.00",
            "9 buy 0.10 1.10000→1.10200 c=-0.53 s=0 f=-0.03 p=20.00",
            "9 buy 0.10 1.10000→1.09900 c=-0.54 s=-0.30 f=-0.04 p=-10.00",
        ],
        0,
    );
}

#[test]
fn an_open_trade_and_the_open_rest_of_a_partial_close_are_not_listed() {
    check(
        vec![
            deal(1, 10, Buy, In, "1.00", "1.10000", 0),
            money(deal(2, 11, Sell, In, "1.00", "1.10000", 1), "-7.00", "0", "0", "0"),
            money(deal(3, 11, Buy, Out, "0.40", "1.09900", 2), "-2.80", "0", "0", "40.00"),
        ],
        &["11 sell 0.40 1.10000→1.09900 c=-5.60 s=0 f=0 p=40.00"],
        0,
    );
}

#[test]
fn a_reversal_closes_the_position_and_opens_the_rest_the_other_way() {
    // Long 1.00, then a sell of 1.50 in one deal (netting): 1.00 closed with all of the deal's
    // profit and swap and two thirds of its commission; short 0.50 opened with the last third.
    check(
        vec![
            money(deal(1, 12, Buy, In, "1.00", "1.10000", 0), "-7.00", "0", "0", "0"),
            money(
                deal(2, 12, Sell, Inout, "1.50", "1.10500", 60),
                "-10.50",
                "-1.00",
                "0",
                "500.00",
            ),
            money(deal(3, 12, Buy, Out, "0.50", "1.10000", 120), "-3.50", "0", "0", "250.00"),
        ],
        &[
            "12 buy 1.00 1.10000→1.10500 c=-14.00 s=-1.00 f=0 p=500.00",
            "12 sell 0.50 1.10500→1.10000 c=-7.00 s=0 f=0 p=250.00",
        ],
        0,
    );
}

#[test]
fn a_position_built_in_steps_opens_at_the_volume_weighted_price() {
    check(
        vec![
            money(deal(1, 13, Buy, In, "0.10", "1.10000", 0), "-0.70", "0", "0", "0"),
            money(deal(2, 13, Buy, In, "0.20", "1.10030", 5), "-1.40", "0", "0", "0"),
            money(deal(3, 13, Sell, Out, "0.30", "1.10120", 60), "-2.10", "0", "0", "30.00"),
            // (1.1 × 1 + 1.1001 × 2) / 3 = 1.10006666… to three more decimals.
            deal(4, 14, Buy, In, "1", "1.1000", 0),
            deal(5, 14, Buy, In, "2", "1.1001", 1),
            deal(6, 14, Sell, Out, "3", "1.1002", 2),
        ],
        &[
            "14 buy 3 1.1000667→1.1002 c=0 s=0 f=0 p=0",
            "13 buy 0.30 1.10020→1.10120 c=-4.20 s=0 f=0 p=30.00",
        ],
        0,
    );
}

#[test]
fn exits_the_pairing_cannot_place_are_counted_not_guessed() {
    check(
        vec![
            // Opened before the node's history began: no entry.
            deal(1, 20, Sell, Out, "0.10", "1.10000", 0),
            // More closed than was open.
            deal(2, 21, Buy, In, "0.10", "1.10000", 0),
            deal(3, 21, Sell, Out, "0.20", "1.10100", 1),
            // A reversal with nothing open.
            deal(4, 22, Sell, Inout, "0.20", "1.10100", 1),
            // Balance and commission deals are not trades.
            money(
                deal(5, 0, DealKind::Balance, DealEntry::None, "0", "0", 0),
                "0",
                "0",
                "0",
                "1000",
            ),
            money(
                deal(6, 23, DealKind::Commission, DealEntry::None, "0", "0", 0),
                "-1",
                "0",
                "0",
                "0",
            ),
        ],
        &[],
        3,
    );
}

#[test]
fn a_position_whose_figures_overflow_is_left_out_whole() {
    let mut entry = deal(1, 30, Buy, In, "1", "1.1", 0);
    entry.profit = Decimal::MAX;
    let mut exit = deal(2, 30, Sell, Out, "1", "1.2", 1);
    exit.profit = Decimal::MAX;
    check(
        vec![
            entry,
            exit,
            deal(3, 31, Buy, In, "1", "1.1", 0),
            deal(4, 31, Sell, Out, "1", "1.1", 1),
        ],
        &["31 buy 1 1.1→1.1 c=0 s=0 f=0 p=0"],
        1,
    );
}

#[test]
fn what_the_node_remembers_of_a_position_goes_with_its_trades() {
    let facts = PositionFacts {
        sl: Some(d("1.08300")),
        tp: Some(d("1.08900")),
        signal_id: Some(SignalId([9; 16])),
    };
    let deals = vec![
        deal(1, 40, Buy, In, "0.10", "1.08500", 0),
        deal(2, 40, Sell, Out, "0.10", "1.08900", 1),
    ];
    let book = pair(&deals, &BTreeMap::from([(40, facts)]));
    let t = &book.trades[0];
    assert_eq!((t.sl, t.tp, t.signal_id), (facts.sl, facts.tp, facts.signal_id));
    assert_eq!((t.open_time_ms, t.close_time_ms, t.close_deal), (T0, T0 + MIN, 2));
}

fn point(device: DeviceId, minute: i64, balance: &str) -> EquityPoint {
    EquityPoint { device, at_ms: T0 + minute * MIN, balance: d(balance), equity: d(balance) }
}

fn device() -> DeviceId {
    Identity::from_secret_bytes(&[1; 32], &[2; 32]).device_id()
}

#[test]
fn the_balance_before_a_close_is_an_anchor_point_plus_the_deals_since() {
    let dev = device();
    let deals = vec![
        money(deal(1, 50, Buy, In, "0.10", "1.10000", 10), "-0.35", "0", "0", "0"),
        money(deal(2, 50, Sell, Out, "0.10", "1.10100", 20), "-0.35", "0", "0", "10.00"),
        money(deal(3, 0, DealKind::Balance, DealEntry::None, "0", "0", 30), "0", "0", "0", "500"),
        money(deal(4, 51, Buy, In, "0.10", "1.10000", 40), "0", "0", "0", "0"),
        money(deal(5, 51, Sell, Out, "0.10", "1.10000", 50), "0", "0", "0", "-5.00"),
        money(deal(6, 0, DealKind::Credit, DealEntry::None, "0", "0", 60), "0", "0", "0", "100"),
        deal(7, 52, Buy, In, "0.10", "1.10000", 70),
        deal(8, 52, Sell, Out, "0.10", "1.10000", 80),
    ];
    let points = vec![point(dev, 0, "10000.00"), point(dev, 45, "10509.30")];
    let b = Balances::new(&points, &deals);
    // The entry's commission is already booked at the close.
    assert_eq!(b.before(T0 + 20 * MIN, 2), Some(d("9999.65")));
    // The later point is nearer; what its balance holds is not added again.
    assert_eq!(b.before(T0 + 50 * MIN, 5), Some(d("10509.30")));
    // A credit in between: its effect on the balance is not known here.
    assert_eq!(b.before(T0 + 80 * MIN, 8), None);
    // Before any deal since the point: the point's balance.
    assert_eq!(b.before(T0 + 10 * MIN, 1), Some(d("10000.00")));
    assert_eq!(Balances::new(&[], &deals).before(T0 + 20 * MIN, 2), None);

    // A point within a second of a deal cannot tell whether its balance holds the deal: an
    // earlier one is the anchor.
    let near = vec![
        point(dev, 0, "10000.00"),
        EquityPoint { at_ms: T0 + 20 * MIN + 1_000, ..point(dev, 0, "123456.78") },
    ];
    assert_eq!(Balances::new(&near, &deals).before(T0 + 50 * MIN, 5), Some(d("10509.30")));
    // And one taken less than the settling time before the close is no anchor either.
    let late = vec![EquityPoint { at_ms: T0 + 20 * MIN - 1_500, ..point(dev, 0, "1") }];
    assert_eq!(Balances::new(&late, &deals).before(T0 + 20 * MIN, 2), None);
}

#[test]
fn gain_is_the_net_result_over_the_balance_before_to_the_hundredth() {
    let deals = vec![
        money(deal(1, 60, Buy, In, "0.10", "1.10000", 0), "-0.35", "0", "0", "0"),
        money(deal(2, 60, Sell, Out, "0.10", "1.10250", 60), "-0.35", "-0.15", "0", "25.00"),
    ];
    let mut t = pair(&deals, &BTreeMap::new()).trades.remove(0);
    for (before, want) in [
        (Some("10000"), Some("0.24")), // 24.15 / 10,000
        (Some("4830"), Some("0.50")),  // exactly half a percent
        (Some("2415"), Some("1.00")),
        (Some("9660.00"), Some("0.25")), // 0.25 exactly
        (Some("0"), None),
        (Some("-10"), None),
        (None, None),
    ] {
        t.balance_before = before.map(d);
        assert_eq!(gain_pct(&t), want.map(d), "{before:?}");
    }
}

#[test]
fn pips_come_from_the_symbols_digits_or_stay_empty() {
    let mut t = pair(
        &[deal(1, 70, Sell, In, "1", "1.10000", 0), deal(2, 70, Buy, Out, "1", "1.09787", 1)],
        &BTreeMap::new(),
    )
    .trades
    .remove(0);
    assert_eq!(myfxbook::pips(&t, Some(5)), Some(d("21.3")));
    // A 4-digit quote's pip is its point, a 5-digit quote's ten points: the same 0.0001.
    assert_eq!(myfxbook::pips(&t, Some(4)), Some(d("21.3")));
    for unknown in [None, Some(0), Some(1), Some(6)] {
        assert_eq!(myfxbook::pips(&t, unknown), None, "{unknown:?}");
    }
    (t.open_price, t.close_price) = (d("150.000"), d("150.255"));
    assert_eq!(myfxbook::pips(&t, Some(3)), Some(d("-25.5")));
    (t.open_price, t.close_price) = (d("2000.00"), d("1995.50"));
    assert_eq!(myfxbook::pips(&t, Some(2)), Some(d("450")));
}

#[test]
fn durations_and_server_times() {
    for (ms, want) in [
        (0, "00:00:00:00"),
        (59_999, "00:00:00:59"),
        (3_386_000, "00:00:56:26"),
        (90_061_000, "01:01:01:01"),
        (100 * 86_400_000, "100:00:00:00"),
        (-5_000, "00:00:00:00"),
    ] {
        assert_eq!(myfxbook::duration(ms), want, "{ms}");
    }
    assert_eq!(myfxbook::server_time(T0, 0), "03/02/2026 08:00");
    assert_eq!(myfxbook::server_time(T0, 7_200), "03/02/2026 10:00");
    assert_eq!(myfxbook::server_time(T0 - 9 * 3_600_000, -3 * 3_600), "03/01/2026 20:00");
    assert_eq!(myfxbook::server_time(i64::MAX, 0), "");
    assert_eq!(json::utc(T0 + 1_500), "2026-03-02T08:00:01.5Z");
    assert_eq!(json::utc(i64::MIN), "");
}

#[test]
fn a_text_field_is_quoted_and_guarded_against_formulas() {
    for (symbol, want) in [
        ("EURUSD", "EURUSD"),
        ("EURUSD.m", "EURUSD.m"),
        ("US30,cash", "\"US30,cash\""),
        ("say \"hi\"", "\"say \"\"hi\"\"\""),
        ("two\nlines", "\"two\nlines\""),
        ("cr\rhere", "\"cr\rhere\""),
        ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tTAB", "'\tTAB"),
        ("=1,2", "\"'=1,2\""),
        ("", ""),
        ("a=b", "a=b"),
    ] {
        assert_eq!(myfxbook::field(symbol), want, "{symbol:?}");
    }
}

#[test]
fn a_row_with_an_odd_symbol_keeps_fifteen_columns() {
    let deals = vec![
        on(deal(1, 80, Buy, In, "1", "100", 0), "=cmd|' /C calc'!A0,x"),
        on(deal(2, 80, Sell, Out, "1", "101", 1), "=cmd|' /C calc'!A0,x"),
    ];
    let book = pair(&deals, &BTreeMap::new());
    let account = Account { currency: "USD".into(), server: None, server_utc_offset_s: 0 };
    let csv = myfxbook::write(&book.trades, &account, &BTreeMap::new());
    let row = csv.lines().nth(1).expect("a row");
    assert!(row.contains(",\"'=cmd|' /C calc'!A0,x\",Buy,"), "{row}");
    // The header's fifteen fields, and the row's once the quoted one is taken as one.
    assert_eq!(myfxbook::HEADER.split(',').count(), 15);
    assert_eq!(row.replace("\"'=cmd|' /C calc'!A0,x\"", "S").split(',').count(), 15);
}

#[test]
fn query_days_are_strict_and_in_order() {
    let day = |s: &str| s.parse::<jiff::civil::Date>().expect("day");
    assert_eq!(DateRange::parse(None, None), Ok(DateRange::default()));
    assert_eq!(
        DateRange::parse(Some("2026-03-01"), Some("2026-03-31")),
        Ok(DateRange { from: Some(day("2026-03-01")), to: Some(day("2026-03-31")) })
    );
    assert_eq!(
        DateRange::parse(Some("2026-03-02"), Some("2026-03-02")).map(|r| r.from),
        Ok(Some(day("2026-03-02")))
    );
    for bad in [
        "2026-13-01",
        "2026-02-30",
        "2026-3-1",
        "20260301",
        "yesterday",
        "",
        "2026-03-01T00:00",
        "２０２６-03-01",
    ] {
        let e = DateRange::parse(Some(bad), None).expect_err(bad);
        assert_eq!(e.code(), "invalid-date", "{bad}");
        assert!(matches!(e, QueryError::Date { field: "from", .. }), "{bad}: {e:?}");
    }
    let e = DateRange::parse(None, Some("2026-02-29")).expect_err("no 29th");
    assert_eq!(e.to_string(), "to: `2026-02-29` is not a date (YYYY-MM-DD)");
    let e = DateRange::parse(Some("2026-03-02"), Some("2026-03-01")).expect_err("backwards");
    assert_eq!(
        (e.code(), e.to_string().as_str()),
        ("invalid-date", "from 2026-03-02 is after to 2026-03-01")
    );
    assert_eq!(Format::parse(None), Ok(Format::Json));
    assert_eq!(Format::parse(Some("csv")), Ok(Format::Csv));
    assert_eq!(Format::parse(Some("xml")).map_err(|e| e.code()), Err("invalid-format"));
}

#[test]
fn the_days_are_the_brokers_server_days() {
    let march = DateRange::parse(Some("2026-03-02"), Some("2026-03-02")).expect("range");
    // 23:30 UTC on the 1st is 01:30 on the 2nd for a UTC+2 server.
    let late = T0 - 8 * 3_600_000 - 30 * MIN;
    assert!(march.holds(late, 7_200));
    assert!(!march.holds(late, 0));
    assert!(march.holds(T0, 0));
    assert!(!march.holds(T0 + 16 * 3_600_000, 0));
    assert!(!march.holds(i64::MAX, 0));
    assert!(DateRange::default().holds(i64::MAX, 0));
}

/// A small fixed history of one account: a EURUSD buy Tradecast opened (SL/TP, signal), a
/// GBPUSD sell closed in two parts, a USDJPY buy held over a night (swap), a gold trade, an
/// index whose pips are unknown, a trade on a symbol without a spec, and one still open.
fn fixture() -> (Vec<super::ClosedTrade>, Account, BTreeMap<String, u32>) {
    let deals = vec![
        money(deal(101, 5001, Buy, In, "0.10", "1.08500", 60), "-0.35", "0.00", "0.00", "0.00"),
        money(deal(102, 5001, Sell, Out, "0.10", "1.08750", 210), "-0.35", "0.00", "0.00", "25.00"),
        on(
            money(
                deal(103, 5002, Sell, In, "0.30", "1.26400", 240),
                "-1.05",
                "0.00",
                "0.00",
                "0.00",
            ),
            "GBPUSD",
        ),
        on(
            money(
                deal(104, 5002, Buy, Out, "0.10", "1.26250", 300),
                "-0.35",
                "0.00",
                "0.00",
                "15.00",
            ),
            "GBPUSD",
        ),
        on(
            money(
                deal(105, 5002, Buy, Out, "0.20", "1.26480", 420),
                "-0.70",
                "0.00",
                "0.00",
                "-16.00",
            ),
            "GBPUSD",
        ),
        on(
            money(
                deal(106, 5003, Buy, In, "0.50", "150.120", 480),
                "-1.75",
                "0.00",
                "0.00",
                "0.00",
            ),
            "USDJPY",
        ),
        on(
            money(
                deal(107, 5003, Sell, Out, "0.50", "149.870", 1_500),
                "-1.75",
                "-2.40",
                "-0.10",
                "-83.41",
            ),
            "USDJPY",
        ),
        on(
            money(
                deal(108, 5004, Sell, In, "0.05", "2315.40", 1_560),
                "0.00",
                "0.00",
                "0.00",
                "0.00",
            ),
            "XAUUSD",
        ),
        on(
            money(
                deal(109, 5004, Buy, Out, "0.05", "2309.15", 1_620),
                "0.00",
                "0.00",
                "0.00",
                "31.25",
            ),
            "XAUUSD",
        ),
        on(
            money(
                deal(110, 5005, Buy, In, "1.00", "18250.5", 1_680),
                "0.00",
                "0.00",
                "0.00",
                "0.00",
            ),
            "GER40.cash",
        ),
        on(
            money(
                deal(111, 5005, Sell, Out, "1.00", "18261.0", 1_700),
                "0.00",
                "0.00",
                "0.00",
                "10.50",
            ),
            "GER40.cash",
        ),
        on(
            money(
                deal(112, 5006, Buy, In, "0.01", "0.65500", 1_710),
                "0.00",
                "0.00",
                "0.00",
                "0.00",
            ),
            "AUDUSD.x",
        ),
        on(
            money(
                deal(113, 5006, Sell, Out, "0.01", "0.65600", 1_720),
                "0.00",
                "0.00",
                "0.00",
                "1.00",
            ),
            "AUDUSD.x",
        ),
        on(deal(114, 5007, Buy, In, "0.10", "1.26500", 1_730), "GBPUSD"),
    ];
    let facts = PositionFacts {
        sl: Some(d("1.08300")),
        tp: Some(d("1.08900")),
        signal_id: Some(SignalId([0xab; 16])),
    };
    let mut book = pair(&deals, &BTreeMap::from([(5001, facts)]));
    assert_eq!(book.n_left_out, 0);
    let dev = device();
    Balances::new(&[point(dev, 0, "10000.00")], &deals).fill(&mut book.trades);
    let account = Account {
        currency: "USD".into(),
        server: Some("Broker-Demo".into()),
        server_utc_offset_s: 7_200,
    };
    let digits = BTreeMap::from([
        ("EURUSD".to_owned(), 5),
        ("GBPUSD".to_owned(), 5),
        ("USDJPY".to_owned(), 3),
        ("XAUUSD".to_owned(), 2),
        ("GER40.cash".to_owned(), 1),
    ]);
    (book.trades, account, digits)
}

#[test]
fn the_myfxbook_csv_of_a_small_history() {
    let (trades, account, digits) = fixture();
    let csv = myfxbook::write(&trades, &account, &digits);
    assert!(
        csv.ends_with("\r\n") && !csv.replace("\r\n", "").contains('\n'),
        "CRLF lines: {csv:?}"
    );
    assert!(csv.starts_with(&format!("{}\r\n", myfxbook::HEADER)));
    insta::assert_snapshot!("myfxbook_csv", csv.replace("\r\n", "\n"));
}

#[test]
fn the_json_of_a_small_history() {
    let (trades, account, _) = fixture();
    let text = json::write(&trades, &account).expect("json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("parses");
    assert_eq!(v["format"], "tradecast-trades/v1");
    assert_eq!(v["account"], serde_json::json!({"currency": "USD", "server": "Broker-Demo"}));
    assert_eq!(v["trades"][0]["lots"], "0.10", "decimals are strings");
    insta::assert_snapshot!("trades_json", text);
    // No server known: the field is left out, not empty.
    let bare = Account { server: None, ..account };
    let v: serde_json::Value =
        serde_json::from_str(&json::write(&[], &bare).expect("json")).expect("parses");
    assert_eq!(
        v,
        serde_json::json!({
            "format": "tradecast-trades/v1",
            "account": {"currency": "USD"},
            "trades": [],
        })
    );
}
