//! Writes one example of every EA-link request and answer to `ea-sdk/vectors/messages/` from
//! the protocol crate's `ea` types (so the MQL5 EA and any port are written against real bytes),
//! and checks every file there decodes as its type.

use std::path::PathBuf;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tradecast_protocol::ea::*;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("example decimal")
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("vectors").join("messages")
}

const T: i64 = 1_700_000_000_000;
const ORDER_ID: &str = "01HZX7Q2M3N4";

fn spec() -> SymbolSpec {
    SymbolSpec {
        symbol: "EURUSD".into(),
        digits: 5,
        point: d("0.00001"),
        tick_size: d("0.00001"),
        tick_value_profit: d("1"),
        tick_value_loss: d("1"),
        contract_size: d("100000"),
        volume_min: d("0.01"),
        volume_max: d("100.00"),
        volume_step: d("0.01"),
        stops_level: 10,
        freeze_level: 5,
        trade_mode: TradeMode::Full,
        currency_base: "EUR".into(),
        currency_profit: "USD".into(),
        currency_margin: "EUR".into(),
        sessions: vec![Session { from_week_s: 75_600, to_week_s: 511_200 }],
    }
}

fn order() -> Order {
    Order {
        order_id: ORDER_ID.into(),
        order_no: 7,
        symbol: "EURUSD".into(),
        kind: OrderKind::Sell,
        volume: d("0.10"),
        price: Some(d("1.09128")),
        sl: Some(d("1.09180")),
        tp: Some(d("1.08900")),
        max_slippage_points: Some(10),
        expiration_ms: None,
    }
}

fn deal() -> Deal {
    Deal {
        deal_ticket: 5_000_001,
        order_ticket: 1_000_001,
        position_id: 1_000_001,
        symbol: "EURUSD".into(),
        kind: DealKind::Sell,
        entry: DealEntry::In,
        reason: DealReason::Expert,
        volume: d("0.10"),
        price: d("1.09127"),
        commission: d("-0.70"),
        swap: d("0.00"),
        profit: d("0.00"),
        fee: d("0.00"),
        magic: magic(20_260_101, 7),
        comment: order_comment(ORDER_ID),
        time_ms: T,
    }
}

fn bar() -> LinkBar {
    LinkBar {
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        time_ms: 1_493_690_400_000,
        open: d("1.09150"),
        high: d("1.09179"),
        low: d("1.09100"),
        close: d("1.09128"),
        tick_volume: 1_413,
        spread_points: Some(10),
    }
}

/// Every example: file name, JSON value, and a check that the bytes decode as the type.
type Example = (&'static str, serde_json::Value, fn(&[u8]) -> Result<(), BodyError>);

fn examples() -> Vec<Example> {
    fn v<T: Serialize>(x: &T) -> serde_json::Value {
        serde_json::to_value(x).expect("examples serialize")
    }
    fn c<T: DeserializeOwned>(b: &[u8]) -> Result<(), BodyError> {
        decode::<T>(b).map(|_| ())
    }
    let session = "s-3f9c2a".to_owned();
    let position = Position {
        position_id: 1_000_001,
        symbol: "EURUSD".into(),
        side: Side::Sell,
        volume: d("0.10"),
        open_price: d("1.09127"),
        open_time_ms: T,
        sl: Some(d("1.09180")),
        tp: Some(d("1.08900")),
        price_current: d("1.09110"),
        swap: d("0.00"),
        profit: d("1.70"),
        magic: magic(20_260_101, 7),
        comment: order_comment(ORDER_ID),
    };
    let pending = PendingOrder {
        order_ticket: 1_000_002,
        symbol: "EURUSD".into(),
        kind: OrderKind::BuyLimit,
        volume: d("0.05"),
        price: d("1.08500"),
        sl: Some(d("1.08300")),
        tp: None,
        time_setup_ms: T,
        expiration_ms: Some(T + 3_600_000),
        magic: magic(20_260_101, 8),
        comment: order_comment("01HZX7Q2M3N5"),
    };
    vec![
        (
            "hello.request.json",
            v(&Hello {
                login: 5_012_345,
                server: "Broker-Demo".into(),
                company: "Broker Ltd".into(),
                currency: "USD".into(),
                leverage: 100,
                margin_mode: MarginMode::Hedging,
                terminal_build: 4_755,
                ea_version: "1.0.0".into(),
                server_utc_offset_s: 7_200,
                terminal_time_ms: T,
                symbols: vec![spec()],
                floor_breach: Some(FloorBreach {
                    time_ms: T - 60_000,
                    equity: d("7990.00"),
                    floor: d("8000.00"),
                    n_closed: 2,
                    n_failed: 0,
                }),
                instance: Some("3f9a0c1d2e4b5a67".into()),
            }),
            c::<Hello>,
        ),
        (
            "hello.answer.json",
            v(&HelloAnswer {
                session_id: session.clone(),
                poll_wait_ms: 500,
                subscriptions: vec![BarSubscription {
                    symbol: "EURUSD".into(),
                    timeframe: Timeframe::H1,
                }],
                equity_floor: Some(d("8000.00")),
                deals_from_ms: T - 86_400_000,
                bars_from: vec![BarCursor {
                    symbol: "EURUSD".into(),
                    timeframe: Timeframe::H1,
                    from_ms: 1_493_690_400_000,
                }],
            }),
            c::<HelloAnswer>,
        ),
        (
            "poll.request.json",
            v(&Poll { session_id: session.clone(), wait_ms: 500, terminal_time_ms: T }),
            c::<Poll>,
        ),
        (
            "poll.answer.json",
            v(&PollAnswer {
                orders: vec![order()],
                commands: vec![
                    Command::Close {
                        order_id: "01HZX7Q2M3N6".into(),
                        order_no: 9,
                        position_id: 1_000_001,
                        symbol: "EURUSD".into(),
                        volume: Some(d("0.05")),
                    },
                    Command::Modify {
                        order_id: "01HZX7Q2M3N7".into(),
                        order_no: 10,
                        position_id: Some(1_000_001),
                        order_ticket: None,
                        sl: Some(d("1.09127")),
                        tp: Some(d("1.08900")),
                    },
                    Command::CloseAll {
                        order_id: "01HZX7Q2M3N8".into(),
                        scope: CloseAllScope::Tradecast,
                    },
                    Command::RequestSpec { symbols: vec!["EURUSD".into()] },
                    Command::Backfill {
                        symbol: "EURUSD".into(),
                        timeframe: Timeframe::H1,
                        from_ms: 1_493_686_800_000,
                        to_ms: 1_493_690_400_000,
                    },
                ],
                equity_floor: Some(d("8000.00")),
            }),
            c::<PollAnswer>,
        ),
        (
            "ack.request.json",
            v(&Ack {
                session_id: session.clone(),
                order_id: ORDER_ID.into(),
                outcome: Outcome::Done,
                retcode: 10_009,
                message: "Request completed".into(),
                found_by_lookup: false,
                order_ticket: Some(1_000_001),
                deal_ticket: Some(5_000_001),
                position_id: Some(1_000_001),
                price: Some(d("1.09127")),
                volume: Some(d("0.10")),
                time_ms: Some(T),
            }),
            c::<Ack>,
        ),
        (
            "ack-unknown.request.json",
            v(&Ack {
                session_id: session.clone(),
                order_id: ORDER_ID.into(),
                outcome: Outcome::Unknown,
                retcode: 10_012,
                message: "Request canceled by timeout".into(),
                found_by_lookup: false,
                order_ticket: None,
                deal_ticket: None,
                position_id: None,
                price: None,
                volume: None,
                time_ms: None,
            }),
            c::<Ack>,
        ),
        ("ack.answer.json", v(&AckAnswer { ok: true }), c::<AckAnswer>),
        (
            "state.request.json",
            v(&State {
                session_id: session.clone(),
                terminal_time_ms: T,
                balance: d("10000.00"),
                equity: d("10001.70"),
                margin: d("109.13"),
                free_margin: d("9892.57"),
                credit: d("0.00"),
                positions: vec![position],
                pending: vec![pending],
                tick_values: vec![TickValue {
                    symbol: "EURUSD".into(),
                    tick_value_profit: d("1"),
                    tick_value_loss: d("1"),
                }],
                specs: vec![spec()],
            }),
            c::<State>,
        ),
        (
            "state.answer.json",
            v(&StateAnswer {
                ok: true,
                out_of_line: vec![OutOfLine {
                    position_id: Some(1_000_009),
                    order_ticket: None,
                    reason: "position not opened by Tradecast".into(),
                }],
            }),
            c::<StateAnswer>,
        ),
        (
            "deals.request.json",
            v(&Deals { session_id: session.clone(), from_ms: T - 86_400_000, deals: vec![deal()] }),
            c::<Deals>,
        ),
        ("deals.answer.json", v(&DealsAnswer { ok: true, deals_from_ms: T }), c::<DealsAnswer>),
        ("bars.request.json", v(&Bars { session_id: session, bars: vec![bar()] }), c::<Bars>),
        (
            "bars.answer.json",
            v(&BarsAnswer {
                ok: true,
                bars_from: vec![BarCursor {
                    symbol: "EURUSD".into(),
                    timeframe: Timeframe::H1,
                    from_ms: 1_493_694_000_000,
                }],
            }),
            c::<BarsAnswer>,
        ),
        (
            "problem.hello-required.json",
            v(&Problem::new(409, PROBLEM_HELLO_REQUIRED, "hello required", "send hello first")),
            c::<Problem>,
        ),
        (
            "problem.missing-field.json",
            v(&Problem {
                field: Some("orders[0].volume".into()),
                ..Problem::new(
                    400,
                    "missing-field",
                    "invalid request body",
                    "missing field `volume`",
                )
            }),
            c::<Problem>,
        ),
    ]
}

#[test]
fn every_call_has_an_example_written_from_the_types() {
    let dir = dir();
    std::fs::create_dir_all(&dir).expect("messages dir");
    for (name, value, check) in examples() {
        let mut text = serde_json::to_string_pretty(&value).expect("pretty");
        text.push('\n');
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, &text).expect("write example");
        }
        check(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for call in Call::ALL {
        let stem = call.path().trim_start_matches(PATH_PREFIX);
        for side in ["request", "answer"] {
            let path = dir.join(format!("{stem}.{side}.json"));
            assert!(path.exists(), "{} missing", path.display());
        }
    }
    // Decimals are strings in every example, never JSON numbers.
    let poll = std::fs::read_to_string(dir.join("poll.answer.json")).expect("poll answer");
    assert!(poll.contains("\"volume\": \"0.10\""), "{poll}");
}
